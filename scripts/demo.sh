#!/usr/bin/env bash
# A local two-node pg_keeper_go cluster on 127.0.0.1 (run as root; the
# servers run as the "postgres" user):
#
#   scripts/demo.sh start    node1 (primary, port 55432) + node2 (standby, 55433)
#   scripts/demo.sh status   pg_keeper_status() of both nodes
#   scripts/demo.sh watch    an application's view: which node is the primary
#   scripts/demo.sh fail     stop node1 with -m immediate (a crash)
#   scripts/demo.sh stop     stop both nodes and remove the cluster
#
# The same postgresql.conf lines as on two VMs (README), with loopback ports.
set -euo pipefail

DEMO_DIR=${DEMO_DIR:-/tmp/pg_keeper_go_demo}
PG_BIN=${PG_BIN:-$(dirname "$(readlink -f "$(${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config} --bindir)/postgres")")}
PG_SHARE=$(${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config} --sharedir)
PORT1=${PORT1:-55432}
PORT2=${PORT2:-55433}
RUN_AS=${RUN_AS:-postgres}

as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u "$RUN_AS" -- "$@"; else "$@"; fi; }
conninfo() { echo "host=127.0.0.1 port=$1 user=postgres dbname=postgres connect_timeout=2"; }
sql() { "$PG_BIN/psql" -X -A -t -q "$(conninfo "$1")" -c "$2"; }

node_conf() { # $1 my port, $2 partner port
	cat <<EOF
listen_addresses = '127.0.0.1'
port = $1
unix_socket_directories = '$DEMO_DIR'
wal_level = replica
hot_standby = on
wal_keep_size = '64MB'
shared_buffers = '32MB'
log_line_prefix = '%m [%p] '

# pg_keeper_go: the pg_keeper settings, with only the library name changed.
shared_preload_libraries = 'pg_keeper_go'
pg_keeper.my_conninfo = '$(conninfo "$1")'
pg_keeper.partner_conninfo = '$(conninfo "$2")'
pg_keeper.keepalive_time = 2
pg_keeper.keepalive_count = 3
pg_keeper.after_command = 'echo "promoted: timeline \$PG_KEEPER_TIMELINE, old primary \$PG_KEEPER_OLD_PRIMARY"'
EOF
}

wait_until() { # $1 seconds, $2 description, rest: command
	local deadline=$((SECONDS + $1)) what=$2
	shift 2
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || { echo "error: timed out waiting for $what" >&2; exit 1; }
		sleep 0.2
	done
}

keeper_connected() { [[ $(sql "$1" "select state from pg_keeper_status()") == connected ]]; }

start() {
	if [[ -d $DEMO_DIR/node1 ]]; then
		echo "a demo cluster exists in $DEMO_DIR: run '$0 stop' first" >&2
		exit 1
	fi
	mkdir -p "$DEMO_DIR"
	chown "$RUN_AS" "$DEMO_DIR" 2>/dev/null || true
	echo "== node1: initdb, start as primary on port $PORT1"
	as_pg "$PG_BIN/initdb" -D "$DEMO_DIR/node1" -U postgres -A trust --locale=C -E UTF8 >/dev/null
	node_conf "$PORT1" "$PORT2" | as_pg tee -a "$DEMO_DIR/node1/postgresql.conf" >/dev/null
	echo "host replication all 127.0.0.1/32 trust" | as_pg tee -a "$DEMO_DIR/node1/pg_hba.conf" >/dev/null
	as_pg "$PG_BIN/pg_ctl" -D "$DEMO_DIR/node1" -l "$DEMO_DIR/node1.log" -w start >/dev/null
	"$PG_BIN/psql" -X -q "$(conninfo "$PORT1")" -f "$PG_SHARE/extension/pg_state.sql" >/dev/null
	sql "$PORT1" "create extension if not exists pg_keeper_go"

	echo "== node2: pg_basebackup from node1, start as standby on port $PORT2"
	as_pg "$PG_BIN/pg_basebackup" -D "$DEMO_DIR/node2" -R -X stream -c fast -h 127.0.0.1 -p "$PORT1" -U postgres
	node_conf "$PORT2" "$PORT1" | as_pg tee -a "$DEMO_DIR/node2/postgresql.conf" >/dev/null
	as_pg "$PG_BIN/pg_ctl" -D "$DEMO_DIR/node2" -l "$DEMO_DIR/node2.log" -w start >/dev/null

	wait_until 30 "both keepers to report connected" bash -c "$(declare -f sql conninfo keeper_connected); PG_BIN=$PG_BIN; keeper_connected $PORT1 && keeper_connected $PORT2"
	status
	cat <<EOF

Both keepers are connected.  Try a failover:
  $0 watch        # in a second terminal: the application's view
  $0 fail         # crash node1; node2 takes over within keepalive_time x keepalive_count
  $0 status
Logs: $DEMO_DIR/node1.log, $DEMO_DIR/node2.log.  Stop with: $0 stop
EOF
}

status() {
	for port in "$PORT1" "$PORT2"; do
		echo "-- 127.0.0.1:$port"
		"$PG_BIN/psql" -X -x "$(conninfo "$port")" -c "select * from pg_keeper_status()" 2>&1 | sed 's/^/   /' || true
	done
	echo "-- newest failover_log row (node2)"
	"$PG_BIN/psql" -X "$(conninfo "$PORT2") dbname=pg_state" -c "select * from failover_log order by unixtime desc limit 1" 2>&1 | sed 's/^/   /' || true
}

# watch is what an application does without a virtual IP: libpq tries both
# hosts and keeps the one that accepts writes.
watch() {
	local target="host=127.0.0.1,127.0.0.1 port=$PORT1,$PORT2 user=postgres dbname=postgres connect_timeout=1 target_session_attrs=read-write"
	while :; do
		printf '%s  primary: %s\n' "$(date +%T.%3N)" "$("$PG_BIN/psql" -X -A -t "$target" -c "select 'port ' || current_setting('port')" 2>/dev/null || echo none)"
		sleep 0.5
	done
}

fail() {
	echo "stopping node1 with -m immediate at $(date +%T.%3N)"
	as_pg "$PG_BIN/pg_ctl" -D "$DEMO_DIR/node1" -m immediate stop >/dev/null
	wait_until 30 "node2 to be promoted" bash -c "$(declare -f sql conninfo); PG_BIN=$PG_BIN; [[ \$(sql $PORT2 'select pg_is_in_recovery()') == f ]]"
	echo "node2 accepts writes at $(date +%T.%3N)"
	grep "pg_keeper_go" "$DEMO_DIR/node2.log" | tail -6
}

stop() {
	for n in node1 node2; do
		[[ -f $DEMO_DIR/$n/postmaster.pid ]] && as_pg "$PG_BIN/pg_ctl" -D "$DEMO_DIR/$n" -m fast stop >/dev/null || true
	done
	rm -rf "$DEMO_DIR"
	echo "demo cluster removed"
}

case "${1:-}" in
start | status | watch | fail | stop) "$1" ;;
*)
	sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
