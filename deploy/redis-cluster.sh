#!/usr/bin/env bash
# A local Redis Cluster for Tollgate's Cluster tests: Debian's redis-server (the one
# deploy/redis.sh installs) as 3 masters, no replicas, every slot assigned.
#
#   bash deploy/redis-cluster.sh install|start|stop|restart|status
#
# State (per node: pid, log, nodes.conf): ${TOLLGATE_DEPLOY_DIR:-<repo>/.deploy}/redis-cluster/<port>
# Ports: REDIS_CLUSTER_PORTS (default "7001 7002 7003"), bound to 127.0.0.1, no persistence.
# `start` prints REDIS_CLUSTER_NODES=127.0.0.1:7001,… on stdout (everything else on stderr).
# Every command is idempotent: a running, fully assigned cluster is left as it is.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bash deploy/redis-cluster.sh install|start|stop|restart|status

A local Redis Cluster for Tollgate's Cluster tests: 3 masters of Debian's redis-server on
127.0.0.1, no replicas, every slot assigned, no persistence. Every command is idempotent.

Commands:
  install   install redis-server (apt, through deploy/redis.sh) if missing
  start     start the nodes and assign the slots; prints REDIS_CLUSTER_NODES=… on stdout
  stop      stop the nodes this script started
  restart   stop, then start
  status    running (exit 0), some nodes up but the cluster not ok (exit 1) or stopped (exit 3)

Environment:
  REDIS_CLUSTER_PORTS   the nodes' ports, separated by spaces or commas (default "7001 7002 7003")
  REDIS_START_TIMEOUT   seconds to wait for each node (default 20)
  TOLLGATE_DEPLOY_DIR   state directory (default <repo>/.deploy; nodes under redis-cluster/)

Example:
  bash deploy/redis-cluster.sh start

Exit status: 0 done, 1 failed (messages on stderr), 2 bad usage, 3 status: stopped.
USAGE
}
case "${1:-}" in -h|--help|help) usage; exit 0 ;; esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${TOLLGATE_DEPLOY_DIR:-$REPO/.deploy}"
CDIR="$STATE/redis-cluster"
HOST=127.0.0.1
# spaces, tabs, newlines or commas between ports
ports_text="${REDIS_CLUSTER_PORTS:-7001 7002 7003}"
read -r -d '' -a PORTS <<<"${ports_text//,/ }" || true
START_TIMEOUT="${REDIS_START_TIMEOUT:-20}"

PROCESS_PATTERN='redis-server.*cluster'
SERVICE=redis-cluster
# shellcheck source=deploy/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
die() { log "ERROR: $*"; exit 1; }
[[ ${#PORTS[@]} -gt 0 ]] || die "REDIS_CLUSTER_PORTS: no port given (give ports separated by spaces or commas)"
declare -A seen_ports=()
for p in "${PORTS[@]}"; do
  [[ "$p" =~ ^[0-9]+$ ]] && (( 10#$p >= 1 && 10#$p <= 65535 )) || die "REDIS_CLUSTER_PORTS: \"$p\" is not a port from 1 to 65535 (give ports separated by spaces or commas)"
  [[ -z "${seen_ports[$p]:-}" ]] || die "REDIS_CLUSTER_PORTS: port $p is given twice"
  seen_ports[$p]=1
done

nodes_line() {
  local out="" p
  for p in "${PORTS[@]}"; do out+="${out:+,}$HOST:$p"; done
  echo "REDIS_CLUSTER_NODES=$out"
}
cli() { redis-cli -h "$HOST" -p "$1" "${@:2}"; }
ping_ok() { [[ "$(cli "$1" ping 2>/dev/null)" == "PONG" ]]; }
# pid_alive (common.sh) reads PIDFILE: point it at one node's
node_alive() { PIDFILE="$CDIR/$1/redis.pid"; pid_alive; }
cluster_ok() { cli "${PORTS[0]}" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }

cmd_install() { bash "$REPO/deploy/redis.sh" install; }

cmd_start() {
  cmd_install
  local p
  for p in "${PORTS[@]}"; do
    if node_alive "$p" && ping_ok "$p"; then continue; fi
    PORT=$p
    port_open "$p" && die "$HOST:$p is in use by a process not started by this script; set REDIS_CLUSTER_PORTS"
    mkdir -p "$CDIR/$p"
    # A node restarted without its peers starts over: an old nodes.conf would name a cluster
    # whose other members no longer know it.
    rm -f "$CDIR/$p/nodes.conf" "$CDIR/$p/redis.pid"
    log "starting cluster node on $HOST:$p, state $CDIR/$p"
    redis-server --port "$p" --bind "$HOST" --daemonize yes --cluster-enabled yes \
      --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
      --dir "$CDIR/$p" --pidfile "$CDIR/$p/redis.pid" --logfile "$CDIR/$p/redis.log" \
      --save '' --appendonly no --protected-mode yes || die "redis-server on port $p failed to start"
  done
  local deadline=$(( $(date +%s) + START_TIMEOUT ))
  for p in "${PORTS[@]}"; do
    until ping_ok "$p"; do
      (( $(date +%s) < deadline )) || die "node $HOST:$p did not answer PING within ${START_TIMEOUT}s"
      sleep 0.1
    done
  done
  if ! cluster_ok; then
    local known; known="$(cli "${PORTS[0]}" cluster info | awk -F: '/^cluster_known_nodes/{print $2+0}')"
    if [[ "$known" == "1" ]] && [[ "$(cli "${PORTS[0]}" cluster info | awk -F: '/^cluster_slots_assigned/{print $2+0}')" == "0" ]]; then
      local addrs=() ; for p in "${PORTS[@]}"; do addrs+=("$HOST:$p"); done
      log "creating the cluster: ${addrs[*]} (masters only, all 16384 slots)"
      TERM=dumb redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >&2 \
        || die "redis-cli --cluster create failed"
    fi
    until cluster_ok; do
      (( $(date +%s) < deadline + 20 )) || die "cluster_state did not turn ok (see $CDIR/*/redis.log; try stop then start)"
      sleep 0.2
    done
  fi
  log "ready: $(nodes_line)"
  nodes_line
}

cmd_stop() {
  local p pid
  for p in "${PORTS[@]}"; do
    PIDFILE="$CDIR/$p/redis.pid"; PORT=$p
    if ! pid_alive; then report_not_running; continue; fi
    pid="$(cat "$PIDFILE")"
    log "stopping cluster node $HOST:$p (pid $pid)"
    # SIGTERM to the node this script started (saves nothing: --save ''), not a SHUTDOWN to the port
    kill -TERM "$pid" 2>/dev/null || true
    await_exit "$pid" 10 0.1
    rm -f "$PIDFILE" "$CDIR/$p/nodes.conf"
  done
  log "stopped"
}

cmd_status() {
  local p up=0
  for p in "${PORTS[@]}"; do node_alive "$p" && ping_ok "$p" && up=$((up + 1)); done
  if (( up == ${#PORTS[@]} )) && cluster_ok; then
    echo "redis-cluster: running, ${#PORTS[@]} masters on ${PORTS[*]}, state $CDIR"
    return 0
  fi
  if (( up > 0 )); then echo "redis-cluster: $up of ${#PORTS[@]} nodes up, cluster not ok"; return 1; fi
  echo "redis-cluster: stopped"
  return 3
}

case "${1:-}" in
  install|start|stop|restart|status) service_command "$1" ;;
  *) echo "deploy/redis-cluster.sh: unknown command \"${1:-}\"; expected install|start|stop|restart|status (see bash deploy/redis-cluster.sh --help)" >&2; exit 2 ;;
esac
