#!/usr/bin/env bash
# make demo: start the Docker demo cluster (docker-compose.yml), wait until
# both keepers report "connected", and print their status.
set -euo pipefail
cd "$(dirname "$0")/.."
export PG_MAJOR=${PG_MAJOR:-15}

docker-compose up -d
echo "waiting for node2 to clone node1 and both keepers to connect..."
deadline=$((SECONDS + 180))
for node in node1 node2; do
	until [[ $(docker-compose exec -T "$node" psql -X -A -t -c "select state from pg_keeper_status()" 2>/dev/null) == connected ]]; do
		if ((SECONDS > deadline)); then
			echo "error: the keeper of $node did not connect within 180 s; see: docker-compose logs $node" >&2
			exit 1
		fi
		sleep 0.5
	done
done
for node in node1 node2; do
	echo "== $node"
	docker-compose exec -T "$node" psql -X -x -c "select role, state, partner, consecutive_failures, last_success, timeline, keepalive_time, keepalive_count, failover_after from pg_keeper_status()"
done
echo "== app"
docker-compose logs --no-color --tail 3 app
cat <<'EOT'
The cluster is up. Fail the primary and watch the application switch,
then bring node1 back as the standby and switch over to it again:

  docker-compose logs -f app          # in a second terminal
  docker-compose stop node1           # node2 is promoted within keepalive_time x keepalive_count
  docker-compose exec node2 psql -x -c "select * from pg_keeper_status()"
  docker-compose exec node2 psql -d pg_state -c "select * from failover_log"
  docker-compose start node1          # the old primary comes back fenced
  docker-compose exec node1 pg_keeper_go rejoin --primary 'host=node2-repl user=postgres dbname=postgres'
  docker-compose exec app pg_keeper_go switchover --node host=node1-repl --node host=node2-repl

Remove everything with: make demo-stop
EOT
