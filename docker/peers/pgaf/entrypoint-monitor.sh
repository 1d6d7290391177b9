#!/bin/sh
# pg_auto_failover 2.0 monitor (PostgreSQL 15). env TIMING_PROFILE=default|tuned.
. /usr/local/bin/pgaf-common.sh
MON_HOST="${PGAF_HOSTNAME:-$(hostname)}"
clean_stale_pidfiles

if [ ! -f "$PGAF_CFG" ]; then
	log "creating monitor $MON_HOST in $PGDATA"
	# 2.0 wants an explicit SSL choice, and --skip-pg-hba or --auth.
	pg_autoctl create monitor --pgdata "$PGDATA" --pgctl "$PGCTL" --pgport 5432 \
		--hostname "$MON_HOST" --skip-pg-hba --no-ssl
	ensure_trust_hba
	write_bench_conf

	# Failure-detection GUCs: ALTER SYSTEM + reload (all PGC_SIGHUP). Postgres is stopped
	# after `create`; start it on the unix socket only, so no keeper registers meanwhile.
	if [ "$TIMING_PROFILE" = tuned ]; then
		"$PGCTL" -D "$PGDATA" -w -l /tmp/monitor-tuning.log \
			-o "-c listen_addresses='' -c logging_collector=off" start >/dev/null
		psql -X -q -v ON_ERROR_STOP=1 -d pg_auto_failover <<'SQL'
ALTER SYSTEM SET pgautofailover.health_check_period = 2000;            -- default 5000 ms
ALTER SYSTEM SET pgautofailover.health_check_timeout = 1000;           -- default 5000 ms
ALTER SYSTEM SET pgautofailover.health_check_max_retries = 2;          -- default 2
ALTER SYSTEM SET pgautofailover.health_check_retry_delay = 1000;       -- default 2000 ms
ALTER SYSTEM SET pgautofailover.node_considered_unhealthy_timeout = 6000; -- default 20000 ms
ALTER SYSTEM SET pgautofailover.primary_demote_timeout = 6000;         -- default 30000 ms
SELECT pg_reload_conf();
SQL
		"$PGCTL" -D "$PGDATA" -w -m fast stop >/dev/null
		log "tuned monitor settings applied"
	fi
fi

log "starting pg_autoctl run (monitor, TIMING_PROFILE=$TIMING_PROFILE)"
exec pg_autoctl run --pgdata "$PGDATA"
