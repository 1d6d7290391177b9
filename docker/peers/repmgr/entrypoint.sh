#!/bin/bash
# repmgr 5.3 / PostgreSQL 15 peer node: tini (PID 1) -> this script, as postgres.
# PostgreSQL runs in the background (pg_ctl, re-parented to tini); repmgrd runs in the
# foreground in a restart loop, logging to stderr (docker logs). So a postmaster
# SIGKILL leaves the container and repmgrd running, and repmgr can stop, start or
# rewind PostgreSQL itself (node rejoin).
#
# Env: NODE_ROLE   primary | standby | witness (what an EMPTY data directory becomes)
#      NODE_ID     1, 2, 3
#      TIMING_PROFILE  default | tuned (see repmgr.conf.template)
#      NODE_NAME, NODE_HOST  default: hostname;  DATA_PEERS  default "node1 node2"
set -euo pipefail

: "${NODE_ROLE:?NODE_ROLE=primary|standby|witness}"
: "${NODE_ID:?NODE_ID=1|2|3}"
TIMING_PROFILE=${TIMING_PROFILE:-default}
NODE_NAME=${NODE_NAME:-$(hostname)}
NODE_HOST=${NODE_HOST:-$(hostname)}
DATA_PEERS=${DATA_PEERS:-"node1 node2"}
PGDATA=/var/lib/postgresql/data
PGBIN=/usr/lib/postgresql/15/bin
REPMGR=$PGBIN/repmgr                 # not /usr/bin/repmgr (pg_wrapper)
REPMGRD=$PGBIN/repmgrd
CONF=/etc/repmgr/repmgr.conf
PGLOG=/var/log/postgresql/postgresql.log
SRC=/opt/repmgr
export PATH="$PGBIN:$PATH" PGDATA

log() { echo "[entrypoint $(date +%T)] $*" >&2; }

case "$NODE_ROLE" in primary|standby|witness) ;; *) log "bad NODE_ROLE=$NODE_ROLE"; exit 2 ;; esac
case "$TIMING_PROFILE" in default|tuned) ;; *) log "bad TIMING_PROFILE=$TIMING_PROFILE"; exit 2 ;; esac

render() {
	sed -e "s|^#$TIMING_PROFILE:||" \
	    -e "s|@NODE_ID@|$NODE_ID|g" -e "s|@NODE_NAME@|$NODE_NAME|g" \
	    -e "s|@NODE_HOST@|$NODE_HOST|g" "$1"
}

pg_start() {
	rm -f "$PGDATA/postmaster.pid"
	pg_ctl -D "$PGDATA" -l "$PGLOG" -w -t 120 start >/dev/null
}

q() {  # q HOST SQL -> one value, empty on error
	psql -X -At "host=$1 user=repmgr dbname=repmgr connect_timeout=2" -c "$2" 2>/dev/null || true
}

find_primary() {  # first data node other than $1 that is not in recovery
	local h
	for h in $DATA_PEERS; do
		[ "$h" = "${1:-}" ] && continue
		[ "$(q "$h" 'select pg_is_in_recovery()')" = f ] && { echo "$h"; return 0; }
	done
	return 1
}

wait_registered_primary() {  # a writable data node with an active primary record
	local p
	while true; do
		if p=$(find_primary "${1:-}") &&
		   [ "$(q "$p" "select count(*) from repmgr.nodes where type='primary' and active")" = 1 ]; then
			echo "$p"; return 0
		fi
		sleep 0.5
	done
}

init_local_cluster() {  # initdb for the primary or the witness
	initdb -D "$PGDATA" -U postgres --auth-local=trust --auth-host=trust -E UTF8 --no-locale >/dev/null
	cp "$SRC/postgresql.repmgr.conf" "$SRC/pg_hba.conf" "$PGDATA/"
	echo "include 'postgresql.repmgr.conf'" >> "$PGDATA/postgresql.conf"
	pg_start
	psql -X -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
CREATE ROLE repmgr SUPERUSER LOGIN;
CREATE DATABASE repmgr OWNER repmgr;
ALTER ROLE repmgr SET search_path TO repmgr, "$user", public;
SQL
}

clone_from() {  # $1 = primary host
	"$REPMGR" -h "$1" -U repmgr -d repmgr -f "$CONF" standby clone --fast-checkpoint -F
	pg_start
	"$REPMGR" -f "$CONF" standby register -F
}

render "$SRC/repmgr.conf.template" > "$CONF"
touch "$PGLOG"
tail -n0 -F "$PGLOG" >&2 &            # PostgreSQL's log -> docker logs
log "node $NODE_ID ($NODE_NAME) role=$NODE_ROLE timing=$TIMING_PROFILE"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	case "$NODE_ROLE" in
	primary)
		init_local_cluster
		"$REPMGR" -f "$CONF" primary register
		;;
	standby)
		p=$(wait_registered_primary "$NODE_HOST")
		log "cloning from $p"
		clone_from "$p"
		;;
	witness)
		init_local_cluster
		# Register only once every standby is registered: the witness copies
		# repmgr.nodes at registration and then only every witness_sync_interval,
		# and it cannot follow a new primary whose record it lacks.
		p=$(wait_registered_primary)
		want=$(( $(wc -w <<<"$DATA_PEERS") - 1 ))
		until [ "$(q "$p" "select count(*) from repmgr.nodes where type='standby' and active")" -ge "$want" ] 2>/dev/null; do
			sleep 0.5
			p=$(wait_registered_primary)
		done
		"$REPMGR" -f "$CONF" witness register -h "$p" -F
		;;
	esac
else
	# Restarted container with data: never come back as a second primary blindly.
	if [ "$NODE_ROLE" = witness ]; then
		pg_start
		p=$(wait_registered_primary)
		"$REPMGR" -f "$CONF" witness register -h "$p" -F
	elif other=$(find_primary "$NODE_HOST"); then
		log "$other is writable: rejoining it as a standby"
		# A freshly promoted primary has not checkpointed yet: its control file still
		# shows the old timeline and pg_rewind would wrongly find nothing to rewind.
		q "$other" CHECKPOINT >/dev/null
		if ! "$REPMGR" -f "$CONF" node rejoin \
			-d "host=$other user=repmgr dbname=repmgr connect_timeout=2" \
			--force-rewind --config-files=postgresql.conf,postgresql.repmgr.conf,pg_hba.conf; then
			log "rejoin failed: cloning again from $other"
			pg_ctl -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
			find "$PGDATA" -mindepth 1 -delete
			clone_from "$other"
		fi
	else
		pg_start
		[ -f "$PGDATA/standby.signal" ] || "$REPMGR" -f "$CONF" primary register -F || true
	fi
fi

# repmgrd in the foreground, restarted when it exits (it does so on a standby whose
# upstream is unreachable at start, for instance).
RPID=""
term() {
	log "stopping"
	[ -n "$RPID" ] && kill "$RPID" 2>/dev/null || true
	pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
	exit 0
}
trap term TERM INT
while true; do
	log "starting repmgrd"
	"$REPMGRD" -f "$CONF" --daemonize=false --no-pid-file &
	RPID=$!
	rc=0; wait "$RPID" || rc=$?
	RPID=""
	log "repmgrd exited rc=$rc; restarting in 2 s"
	sleep 2
done
