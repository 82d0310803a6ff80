#!/usr/bin/env bash
# Tollgate's local backing services: Redis, Kafka (KRaft), a ClickHouse server, then a 3-master
# Redis Cluster (deploy/redis-cluster.sh; the ledger's Cluster tests). Idempotent.
#
#   bash deploy/services.sh up|down|restart|status
#
# `up` prints the environment to use on stdout (everything else goes to stderr), so
#   set -a; eval "$(bash deploy/services.sh up)"; set +a
# exports KAFKA_BROKERS, REDIS_URL and CLICKHOUSE_URL into the calling shell (`set -a`: plain
# assignments alone would not reach the processes started from it).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bash deploy/services.sh up|down|restart|status|env [--no-cluster]

Tollgate's local backing services: Redis, Kafka (KRaft), a ClickHouse server, then a 3-master
Redis Cluster (for the ledger's Cluster tests). Idempotent. Progress goes to stderr.

Commands:
  up        start all four (deploy/redis.sh, kafka.sh, clickhouse.sh, redis-cluster.sh) and print
            KAFKA_BROKERS, REDIS_URL and CLICKHOUSE_URL on stdout
  down      stop all four (exit 1 if one failed to stop)
  restart   down, then up
  status    each one's status (exit: the last non-zero one)
  env       print the variables of `up` without starting anything

Options:
  --no-cluster  leave the Redis Cluster out (up, down, restart, status): Redis, Kafka and the
                ClickHouse server are all a distributed Tollgate needs; the Cluster is for the
                ledger's Cluster tests (npm test skips those, loudly, without it)

Environment: REDIS_PORT, KAFKA_PORT, CLICKHOUSE_PORT, REDIS_CLUSTER_PORTS and the scripts' own
(see bash deploy/<service>.sh --help); TOLLGATE_DEPLOY_DIR for the state (default <repo>/.deploy).

Example:
  set -a; eval "$(bash deploy/services.sh up)"; set +a

Exit status: 0 done, 1 a service failed, 2 bad usage, 3 status: a service stopped.
USAGE
}
case "${1:-}" in -h|--help|help) usage; exit 0 ;; esac
CLUSTER=1
case "${2:-}" in
  "") ;;
  --no-cluster) CLUSTER=0 ;;
  *) echo "deploy/services.sh: unknown option \"$2\"; expected --no-cluster (see bash deploy/services.sh --help)" >&2; exit 2 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

env_lines() {
  echo "KAFKA_BROKERS=127.0.0.1:${KAFKA_PORT:-9092}"
  echo "REDIS_URL=redis://127.0.0.1:${REDIS_PORT:-6379}"
  echo "CLICKHOUSE_URL=http://127.0.0.1:${CLICKHOUSE_PORT:-8123}"
}

# The Redis Cluster is started for the ledger's Cluster tests, which find it on its ports. Its
# REDIS_CLUSTER_NODES is NOT among the variables printed above: exported, it would move every
# process's ledger onto the Cluster (a mode, not a service address). Shown on stderr instead.
cluster_note() {
  local nodes="" p
  local ports="${REDIS_CLUSTER_PORTS:-7001 7002 7003}"
  for p in ${ports//,/ }; do nodes+="${nodes:+,}127.0.0.1:$p"; done
  echo "redis cluster on $nodes (the ledger's Cluster tests find it; REDIS_CLUSTER_NODES=$nodes beside REDIS_URL puts a process's ledger on it)" >&2
}

case "${1:-}" in
  up)
    bash "$HERE/redis.sh" start
    bash "$HERE/kafka.sh" start
    bash "$HERE/clickhouse.sh" start
    if [ "$CLUSTER" = 1 ]; then
      bash "$HERE/redis-cluster.sh" start >/dev/null
      cluster_note
    fi
    env_lines
    ;;
  down)
    rc=0
    if [ "$CLUSTER" = 1 ]; then bash "$HERE/redis-cluster.sh" stop || rc=1; fi
    bash "$HERE/clickhouse.sh" stop || rc=1
    bash "$HERE/kafka.sh" stop || rc=1
    bash "$HERE/redis.sh" stop || rc=1
    exit $rc
    ;;
  restart)
    bash "$0" down ${2:-}
    bash "$0" up ${2:-}
    ;;
  status)
    rc=0
    bash "$HERE/redis.sh" status || rc=$?
    bash "$HERE/kafka.sh" status || rc=$?
    bash "$HERE/clickhouse.sh" status || rc=$?
    if [ "$CLUSTER" = 1 ]; then bash "$HERE/redis-cluster.sh" status || rc=$?; fi
    exit $rc
    ;;
  env) env_lines ;;
  *) echo "deploy/services.sh: unknown command \"${1:-}\"; expected up|down|restart|status|env (see bash deploy/services.sh --help)" >&2; exit 2 ;;
esac
