#!/usr/bin/env bash
# The application side of the demo: every POLL_INTERVAL seconds it finds the
# primary the way an application can without a virtual IP — libpq tries
# every host in DB_HOSTS and keeps the one that accepts writes
# (target_session_attrs=read-write) — and says when the primary changes.
set -u
hosts=${DB_HOSTS:-node1,node2}
target="host=$hosts user=postgres dbname=postgres connect_timeout=1 target_session_attrs=read-write"
last=""
while :; do
	now=$(psql -X -A -t "$target" -c "show cluster_name" 2>/dev/null || echo "none reachable")
	if [[ $now != "$last" ]]; then
		echo "$(date +%T.%3N) primary: $now"
		last=$now
	fi
	sleep "${POLL_INTERVAL:-0.5}"
done
