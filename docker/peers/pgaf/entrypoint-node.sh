#!/bin/sh
# pg_auto_failover 2.0 data node (PostgreSQL 15). env:
#   TIMING_PROFILE         default | tuned (applied once, when the node is created)
#   PGAF_MONITOR           default postgres://autoctl_node@monitor:5432/pg_auto_failover
#   PGAF_NAME/PGAF_HOSTNAME node name / address for the peers (default: container hostname)
#   PGAF_WAIT_FOR_PRIMARY  node that must be the primary before this one registers
#                          (node2: "node1"; the first node of an empty group becomes primary)
. /usr/local/bin/pgaf-common.sh
MON="${PGAF_MONITOR:-postgres://autoctl_node@monitor:5432/pg_auto_failover?sslmode=prefer}"
NODE_NAME="${PGAF_NAME:-$(hostname)}"
NODE_HOST="${PGAF_HOSTNAME:-$(hostname)}"
WAIT_FOR="${PGAF_WAIT_FOR_PRIMARY:-}"
clean_stale_pidfiles

monitor_sql() { psql "$MON" -X -qAt -c "$1" 2>/dev/null; }

if [ ! -f "$PGAF_CFG" ]; then
	until monitor_sql "select 1" >/dev/null; do log "waiting for the monitor"; sleep 1; done
	if [ -n "$WAIT_FOR" ]; then
		until [ "$(monitor_sql "select count(*) from pgautofailover.node where nodename = '$WAIT_FOR'
		             and reportedstate in ('single', 'wait_primary', 'primary')")" = 1 ]; do
			log "waiting for $WAIT_FOR to be primary"; sleep 1
		done
		# node1's `create` returns (state single) before its trust rules are live
		until psql "host=$WAIT_FOR port=5432 user=postgres dbname=postgres connect_timeout=2" \
			-X -qAt -c "select 1" >/dev/null 2>&1; do
			log "waiting for $WAIT_FOR to accept connections"; sleep 1
		done
	fi

	log "creating node $NODE_NAME ($NODE_HOST), TIMING_PROFILE=$TIMING_PROFILE"
	# returns when the node is single (first node) or has done its pg_basebackup (standby)
	pg_autoctl create postgres --pgdata "$PGDATA" --pgctl "$PGCTL" --pgport 5432 \
		--name "$NODE_NAME" --hostname "$NODE_HOST" --dbname postgres \
		--monitor "$MON" --skip-pg-hba --no-ssl
	ensure_trust_hba # the standby already has it, through pg_basebackup

	if [ "$TIMING_PROFILE" = tuned ]; then
		# keeper [timeout] (seconds); defaults 20 / 20 / 3
		pg_autoctl config set --pgdata "$PGDATA" timeout.network_partition_timeout 4 >/dev/null
		pg_autoctl config set --pgdata "$PGDATA" timeout.postgresql_restart_failure_timeout 6 >/dev/null
		pg_autoctl config set --pgdata "$PGDATA" timeout.postgresql_restart_failure_max_retries 3 >/dev/null
		# pg_autoctl sets 30s; an isolated primary self-demotes network_partition_timeout
		# after its walsender to the standby is gone.
		write_bench_conf "wal_sender_timeout = '6s'"
	else
		write_bench_conf
	fi
fi

log "starting pg_autoctl run (node $NODE_NAME, TIMING_PROFILE=$TIMING_PROFILE)"
exec pg_autoctl run --pgdata "$PGDATA"
