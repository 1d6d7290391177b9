# shellcheck shell=sh
# Sourced by entrypoint-monitor.sh and entrypoint-node.sh (they run as user postgres).
# PGDATA and XDG_* come from the image ENV, so `docker exec <c> pg_autoctl ...` finds the
# same pg_autoctl.cfg / pg_autoctl.state / pid files as the running service.
set -eu
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export PGCTL=/usr/lib/postgresql/15/bin/pg_ctl
export XDG_CONFIG_HOME="${XDG_CONFIG_HOME:-/var/lib/postgresql/.config}"
export XDG_DATA_HOME="${XDG_DATA_HOME:-/var/lib/postgresql/.local/share}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/pgaf-run}"
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-2}"   # keeper -> monitor connect timeout (s)

PGAF_CFG="$XDG_CONFIG_HOME/pg_autoctl$PGDATA/pg_autoctl.cfg"
TIMING_PROFILE="${TIMING_PROFILE:-default}"
case "$TIMING_PROFILE" in
default|tuned) ;;
*) echo "TIMING_PROFILE must be default or tuned, not '$TIMING_PROFILE'" >&2; exit 2 ;;
esac

log() { echo "$(date +%H:%M:%S.%3N) [entrypoint] $*" >&2; }

# After `docker kill` + `docker start` the container keeps /tmp and PGDATA: drop pid files
# whose process is gone (pids restart from 1 and would fool the "already running" checks).
clean_stale_pidfiles() {
	rm -rf "$XDG_RUNTIME_DIR/pg_autoctl" /tmp/pg_autoctl 2>/dev/null || true
	mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
	if [ -f "$PGDATA/postmaster.pid" ]; then
		pid=$(head -n1 "$PGDATA/postmaster.pid" 2>/dev/null || echo 0)
		if [ "$(cat "/proc/$pid/comm" 2>/dev/null || echo none)" != postgres ]; then
			log "removing stale postmaster.pid (pid $pid)"
			rm -f "$PGDATA/postmaster.pid"
		fi
	fi
}

# BENCHMARK ONLY: trust every connection (no passwords anywhere). We pass --skip-pg-hba
# because pg_autoctl's own rules name peers by --hostname, which Postgres only matches
# through reverse DNS of the client address (Docker answers <container>.<network>).
ensure_trust_hba() {
	f="$PGDATA/pg_hba.conf"
	grep -q pgaf-bench "$f" && return 0
	cat >>"$f" <<'HBA'
# pgaf-bench: BENCHMARK ONLY, trust everything (added by the entrypoint)
host    all             all             0.0.0.0/0               trust
host    all             all             ::/0                    trust
host    replication     all             0.0.0.0/0               trust
host    replication     all             ::/0                    trust
HBA
}

# pgaf-bench.conf is included at the end of postgresql.conf, after pg_autoctl's
# postgresql-auto-failover.conf, so it wins over it (ALTER SYSTEM would win over both).
# pg_autoctl sizes shared_buffers at 25% of the host RAM (6 GB here, x3 instances):
# use PostgreSQL's default instead, like the other peers.
write_bench_conf() {
	printf '%s\n' "# pgaf-bench (entrypoint, TIMING_PROFILE=$TIMING_PROFILE)" \
		"shared_buffers = '128MB'" "$@" >"$PGDATA/pgaf-bench.conf"
	grep -q "pgaf-bench.conf" "$PGDATA/postgresql.conf" ||
		printf "\n# pgaf-bench\ninclude_if_exists 'pgaf-bench.conf'\n" >>"$PGDATA/postgresql.conf"
}
