#!/usr/bin/env bash
# Runs the regress suite (tests/regress, what "make installcheck" runs) with
# pg_regress against the installed extension: a throwaway cluster that
# preloads pg_keeper_go, whose partner does not exist (so the keeper runs,
# and fails its checks, during the tests).  Used inside a pg_keeper_go-build
# image (make regress) and in a clean container where the Debian packages
# were installed with apt (the package test); it needs only the
# postgresql-NN and postgresql-client-NN packages.
#
#   PG_MAJOR=15 REGRESS_DIR=/src/tests/regress regress.sh
set -euo pipefail
regress_dir=${REGRESS_DIR:-/src/tests/regress}
bindir=/usr/lib/postgresql/$PG_MAJOR/bin
PATH=$bindir:$PATH
data=$(mktemp -d /tmp/regress-XXXX)
chown postgres "$data"
as_pg() { runuser -u postgres -- "$@"; }
as_pg initdb -D "$data/db" -U postgres -A trust --locale=C -E UTF8 >/dev/null
cat >>"$data/db/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$data'
shared_preload_libraries = 'pg_keeper_go'
pg_keeper.my_conninfo = 'host=$data dbname=postgres user=postgres'
pg_keeper.partner_conninfo = 'host=127.0.0.1 port=1 dbname=postgres user=postgres password=regress_secret connect_timeout=1'
pg_keeper.keepalive_time = 1
pg_keeper.keepalive_count = 3
CONF
as_pg pg_ctl -D "$data/db" -l "$data/log" -w start >/dev/null
# A configured primary takes no write until its keeper has checked the
# partner once (the write guard is "pending"): retry until it has.
for _ in $(seq 100); do
	as_pg psql -X -q -h "$data" -d postgres -c "create extension if not exists pg_keeper_go" 2>/dev/null && break
	sleep 0.1
done
# The keeper publishes its first status after its first check.
for _ in $(seq 100); do
	[[ $(psql -X -A -t -h "$data" -U postgres -d postgres -c "select state from pg_keeper_status()" 2>/dev/null) =~ ^(failing|alone|connected)$ ]] && break
	sleep 0.1
done
rc=0
# The suite runs \i sql/pg_state.sql: the installed copy, as users run it.
mkdir -p "$data/work/sql"
ln -s "/usr/share/postgresql/$PG_MAJOR/extension/pg_state.sql" "$data/work/sql/pg_state.sql"
chown -R postgres "$data"
cd "$data/work"
as_pg "/usr/lib/postgresql/$PG_MAJOR/lib/pgxs/src/test/regress/pg_regress" --inputdir="$regress_dir" --outputdir="$data/out" \
	--bindir="$bindir" --host="$data" --user=postgres --dbname=contrib_regression pg_keeper_go || rc=$?
if ((rc)); then
	cat "$data/out/regression.diffs" 2>/dev/null || true
	grep -i "pg_keeper\|error\|fatal" "$data/log" | tail -20 || true
fi
as_pg pg_ctl -D "$data/db" -m fast -w stop >/dev/null
exit $rc
