#!/usr/bin/env bash
# The application side of the demo, as our users run it without a virtual
# IP: an application that reads its database host from a YAML file when it
# starts (and again on SIGHUP, its "restart"), and pg_keeper_go watch, which
# keeps that file pointing at the primary and restarts the application once
# per change; it replaces the cron loop that rewrote the file every 5 s.
#
# Settings (environment):
#   DB_NODES      the nodes, host:port, comma-separated (default node1-repl:5432,node2-repl:5432)
#   APP_CONFIG    the application's YAML file (default /tmp/app/app.yaml)
#   POLL_INTERVAL seconds between two writes of the application (default 0.5)
set -euo pipefail
IFS=, read -r -a nodes <<<"${DB_NODES:-node1-repl:5432,node2-repl:5432}"
conf=${APP_CONFIG:-/tmp/app/app.yaml}
mkdir -p "$(dirname "$conf")"
first=${nodes[0]}
cat >"$conf" <<EOF
# app.yaml: the demo application's configuration, written by hand.
server:
  name: demo-app

database:
  # host and port are kept pointing at the primary by pg_keeper_go watch
  host: ${first%:*}   # the primary
  port: ${first##*:}
  name: postgres
EOF

ts() { date +%T.%3N; }

# The application: it writes a row every POLL_INTERVAL to the database
# named in its configuration, read at start and on SIGHUP, and says where
# its writes go whenever that changes.
app() {
	local host port reload=0 last=""
	read_config() {
		host=$(sed -n 's/^  host: *\([^ #]*\).*/\1/p' "$conf")
		port=$(sed -n 's/^  port: *\([^ #]*\).*/\1/p' "$conf")
		echo "$(ts) app: configuration read: database ${host}:${port}"
	}
	trap 'reload=1' HUP
	read_config
	while :; do
		if ((reload)); then
			reload=0
			echo "$(ts) app: restarted by pg_keeper_go watch"
			read_config
			last=""
		fi
		now=$(PGOPTIONS='-c client_min_messages=warning' psql -X -q -A -t \
			"host=$host port=$port user=postgres dbname=postgres connect_timeout=1" \
			-c "create table if not exists app_writes (at timestamptz default clock_timestamp(), by text);
			    insert into app_writes (by) values ('demo-app') returning current_setting('cluster_name')" 2>&1 | head -n 1) || true
		[[ $now == node* ]] && now="writes go to $now" || now="cannot write: $now"
		if [[ $now != "$last" ]]; then
			echo "$(ts) app: $now"
			last=$now
		fi
		if ((!reload)); then
			sleep "${POLL_INTERVAL:-0.5}" &
			wait $! || true # a SIGHUP ends the wait at once
		fi
	done
}

app &
app_pid=$!

args=()
for n in "${nodes[@]}"; do
	args+=(--node "host=${n%:*} port=${n##*:} user=postgres dbname=postgres")
done
exec pg_keeper_go watch "${args[@]}" --file "$conf" \
	--set 'database.host={{.Host}}' --set 'database.port={{.Port}}' \
	--command "kill -HUP $app_pid" --command-timeout 10s
