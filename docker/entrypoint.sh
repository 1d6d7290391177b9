#!/usr/bin/env bash
# Entry point of a pg_keeper_go node container (runs as postgres).
#
# First start, with an empty $PGDATA:
#   NODE_ROLE=primary   initdb and the pg_state database, as pg_keeper's users
#                       set it up (no CREATE EXTENSION: the keeper creates
#                       the extension itself)
#   NODE_ROLE=standby   pg_basebackup from $PRIMARY_HOST (retried until it answers)
#   NODE_ROLE=witness   initdb only: a plain server both keepers keep their
#                       lease rows on (pg_keeper.witness_conninfo)
# Every start: run postgres.  If postgres dies on its own (a crash), the
# container stays up, as a host does when its server crashes: connections
# are refused rather than lost with the container's address.  docker stop
# (SIGINT or SIGTERM) makes a fast shutdown.
#
# Settings (environment):
#   MY_HOST, PARTNER_HOST    this node and its partner on the heartbeat network
#   PRIMARY_HOST             the first primary on the replication network (standby only)
#   KEEPALIVE_TIME           pg_keeper.keepalive_time (default 2)
#   KEEPALIVE_COUNT          pg_keeper.keepalive_count (default 3)
#   AFTER_COMMAND            pg_keeper.after_command (default: a line in the log)
#   WITNESS_HOST             the witness (pg_keeper.witness_conninfo); empty: none
#   HTTP_ADDRESS             pg_keeper.http_address (default :8008); empty: no HTTP API
#   EXTRA_CONF               more postgresql.conf lines
#
# The demo trusts the Docker networks in pg_hba.conf; a real deployment uses
# scram-sha-256 and a ~/.pgpass.
set -euo pipefail
: "${NODE_ROLE:?set NODE_ROLE to primary or standby}"
[[ $NODE_ROLE == witness ]] || : "${PARTNER_HOST:?set PARTNER_HOST}"
KEEPALIVE_TIME=${KEEPALIVE_TIME:-2}
KEEPALIVE_COUNT=${KEEPALIVE_COUNT:-3}
AFTER_COMMAND=${AFTER_COMMAND:-echo "pg_keeper_go promoted $(hostname): timeline \$PG_KEEPER_TIMELINE"}

log() { echo "entrypoint: $*" >&2; }

keeper_conf() {
	cat <<EOF

# --- pg_keeper_go node $(hostname) ---
listen_addresses = '*'
cluster_name = '$(hostname)'
wal_level = replica
wal_log_hints = on
hot_standby = on
wal_keep_size = '128MB'
log_line_prefix = '%m [%p] '
shared_preload_libraries = 'pg_keeper_go'
pg_keeper.my_conninfo = 'host=127.0.0.1 port=5432 user=postgres dbname=postgres'
pg_keeper.partner_conninfo = 'host=$PARTNER_HOST port=5432 user=postgres dbname=postgres connect_timeout=2'
pg_keeper.keepalive_time = $KEEPALIVE_TIME
pg_keeper.keepalive_count = $KEEPALIVE_COUNT
pg_keeper.after_command = '${AFTER_COMMAND//\'/\'\'}'
pg_keeper.witness_conninfo = '${WITNESS_HOST:+host=$WITNESS_HOST port=5432 user=postgres dbname=postgres connect_timeout=2}'
pg_keeper.http_address = '${HTTP_ADDRESS-:8008}'
${EXTRA_CONF:-}
EOF
}

if [[ ! -s $PGDATA/PG_VERSION ]]; then
	case $NODE_ROLE in
	primary)
		log "initialising a new primary"
		initdb -D "$PGDATA" -U postgres -A trust --locale=C -E UTF8 >/dev/null
		keeper_conf >>"$PGDATA/postgresql.conf"
		printf 'host all all all trust\nhost replication all all trust\n' >>"$PGDATA/pg_hba.conf"
		# No partner for this first start: the write guard starts open.
		pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -c pg_keeper.partner_conninfo=''" start >/dev/null
		psql -X -q -v ON_ERROR_STOP=1 -d postgres -f "/usr/share/postgresql/$PG_MAJOR/extension/pg_state.sql" >/dev/null
		pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
		;;
	standby)
		: "${PRIMARY_HOST:?set PRIMARY_HOST for a standby}"
		log "cloning $PRIMARY_HOST with pg_basebackup"
		deadline=$((SECONDS + ${BASEBACKUP_TIMEOUT:-120}))
		until pg_basebackup -D "$PGDATA" -R -X stream -c fast -h "$PRIMARY_HOST" -U postgres 2>/tmp/basebackup.err; do
			((SECONDS < deadline)) || { cat /tmp/basebackup.err >&2; exit 1; }
			rm -rf "${PGDATA:?}"/*
			sleep 1
		done
		# The copied postgresql.conf is the primary's: later lines win.
		keeper_conf >>"$PGDATA/postgresql.conf"
		;;
	witness)
		log "initialising the witness"
		initdb -D "$PGDATA" -U postgres -A trust --locale=C -E UTF8 >/dev/null
		printf "\nlisten_addresses = '*'\nlog_line_prefix = '%%m [%%p] '\n" >>"$PGDATA/postgresql.conf"
		printf 'host all all all trust\n' >>"$PGDATA/pg_hba.conf"
		;;
	*)
		log "NODE_ROLE must be primary, standby or witness, not '$NODE_ROLE'"
		exit 2
		;;
	esac
fi

postgres -D "$PGDATA" &
pid=$!
stopping=
trap 'stopping=1; kill -INT "$pid" 2>/dev/null' INT TERM
while kill -0 "$pid" 2>/dev/null; do
	wait "$pid" || true
done
[[ -n $stopping ]] && exit 0
log "postgres exited by itself; the container stays up (docker restart to start it again)"
while [[ -z $stopping ]]; do
	sleep 1 &
	wait $! || true
done
