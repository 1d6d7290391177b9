#!/bin/sh
# Patroni node entrypoint (runs as postgres).  Renders /etc/patroni/patroni.yml.tmpl
# from the environment, then execs Patroni so that it is PID 1: Patroni 3.0
# reaps children only when it is PID 1, and without that a SIGKILLed
# postmaster stays a zombie that Patroni takes for a running server.
#
#   NODE_NAME       member name and host name (default: the host name)
#   TIMING_PROFILE  default | tuned                       (default: default)
#   SYNC_MODE       true | false  -> synchronous_mode     (default: false)
#   ETCD_HOSTS      host:port[,...]                       (default: etcd:2379)
#   WAIT_FOR_PRIMARY host:port of a REST API: wait until its GET /primary
#                   answers 200 before starting (node2 waits for node1, so
#                   that node1 is always the first leader)
set -eu
NODE_NAME="${NODE_NAME:-$(hostname)}"
NODE_HOST="${NODE_HOST:-$NODE_NAME}"
ETCD_HOSTS="${ETCD_HOSTS:-etcd:2379}"
SYNC_MODE="${SYNC_MODE:-false}"
TIMING_PROFILE="${TIMING_PROFILE:-default}"

case "$TIMING_PROFILE" in
  # Patroni's documented defaults.
  default) TTL=30 LOOP_WAIT=10 RETRY_TIMEOUT=10 ;;
  # The closest to a 6 s detection budget: Patroni 3.0 enforces no minimum
  # (3.2 would clamp ttl to >= 20 and retry_timeout to >= 3); the documented
  # rule loop_wait + 2 * retry_timeout <= ttl holds (1 + 2*2 = 5 <= 6).
  tuned)   TTL=6  LOOP_WAIT=1  RETRY_TIMEOUT=2 ;;
  *) echo "TIMING_PROFILE must be default or tuned, not '$TIMING_PROFILE'" >&2; exit 2 ;;
esac
case "$SYNC_MODE" in
  true|false) ;;
  *) echo "SYNC_MODE must be true or false, not '$SYNC_MODE'" >&2; exit 2 ;;
esac
# primary_start_timeout stays at Patroni's default (300) in both profiles:
# with it a killed postmaster is restarted in place, not failed over.
PRIMARY_START_TIMEOUT=300

sed -e "s|@NODE_NAME@|$NODE_NAME|g" -e "s|@NODE_HOST@|$NODE_HOST|g" \
    -e "s|@ETCD_HOSTS@|$ETCD_HOSTS|g" \
    -e "s|@TTL@|$TTL|g" -e "s|@LOOP_WAIT@|$LOOP_WAIT|g" -e "s|@RETRY_TIMEOUT@|$RETRY_TIMEOUT|g" \
    -e "s|@PRIMARY_START_TIMEOUT@|$PRIMARY_START_TIMEOUT|g" -e "s|@SYNC_MODE@|$SYNC_MODE|g" \
    /etc/patroni/patroni.yml.tmpl > /tmp/patroni.yml

# Patroni would take PATRONI_* variables over the file: none must leak in.
for v in $(env | sed -n 's/^\(PATRONI_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done

# etcd first (Patroni would retry, but more slowly), then the first leader.
etcd1="${ETCD_HOSTS%%,*}"
until curl -fsS -m 1 -o /dev/null "http://$etcd1/health"; do sleep 0.2; done
if [ -n "${WAIT_FOR_PRIMARY:-}" ]; then
  echo "waiting for $WAIT_FOR_PRIMARY to answer GET /primary 200"
  until curl -fsS -m 1 -o /dev/null "http://$WAIT_FOR_PRIMARY/primary"; do sleep 0.2; done
fi

echo "patroni: $NODE_NAME, profile $TIMING_PROFILE (ttl $TTL, loop_wait $LOOP_WAIT, retry_timeout $RETRY_TIMEOUT), synchronous_mode $SYNC_MODE"
exec /usr/bin/patroni /tmp/patroni.yml
