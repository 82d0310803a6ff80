#!/usr/bin/env bash
# Local Redis for Tollgate dev and CI: Debian's redis-server run as a plain daemon (not systemd).
#
#   bash deploy/redis.sh install|start|stop|restart|status|logs
#
# State (pid, log, working dir): ${TOLLGATE_DEPLOY_DIR:-<repo>/.deploy}/redis
# Port: REDIS_PORT (default 6379), bound to 127.0.0.1 only, no persistence (--save '').
# Every command is idempotent.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bash deploy/redis.sh install|start|stop|restart|status|logs [N]

Local Redis for Tollgate dev and CI: Debian's redis-server as a plain daemon on 127.0.0.1, no
persistence. Every command is idempotent.

Commands:
  install   install redis-server (apt) if missing
  start     start it (install first if needed) and wait until it answers
  stop      stop the one this script started (SIGTERM, then SIGKILL)
  restart   stop, then start
  status    running (exit 0), served by another process (exit 0) or stopped (exit 3)
  logs [N]  the last N lines of its log (default 100)

Environment:
  REDIS_PORT            port (default 6379)
  REDIS_START_TIMEOUT   seconds to wait for it to answer (default 20)
  TOLLGATE_DEPLOY_DIR   state directory (default <repo>/.deploy; Redis under redis/)

Example:
  bash deploy/redis.sh start && bash deploy/redis.sh status

Exit status: 0 done, 1 failed (messages on stderr), 2 bad usage, 3 status: stopped.
USAGE
}
case "${1:-}" in -h|--help|help) usage; exit 0 ;; esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${TOLLGATE_DEPLOY_DIR:-$REPO/.deploy}"
RDIR="$STATE/redis"
PIDFILE="$RDIR/redis.pid"
LOGFILE="$RDIR/redis.log"
HOST=127.0.0.1
PORT="${REDIS_PORT:-6379}"
START_TIMEOUT="${REDIS_START_TIMEOUT:-20}"

PROCESS_PATTERN='redis-server'
SERVICE=redis
# shellcheck source=deploy/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
die() {
  log "ERROR: $*"
  if [[ -s "$LOGFILE" ]]; then
    echo "----- last 40 lines of $LOGFILE -----" >&2; tail -n 40 "$LOGFILE" >&2 || true
  fi
  exit 1
}

ping_ok() { [[ "$(redis-cli -h "$HOST" -p "$PORT" ping 2>/dev/null)" == "PONG" ]]; }

cmd_install() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    log "redis-server already installed ($(redis-server --version | awk '{print $3}'))"
    return 0
  fi
  log "installing redis-server via apt-get"
  apt_install redis-server redis-tools
  command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after apt-get install"
  # the package may have started a systemd/sysv instance on 6379; we run our own, so stop it
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
    log "stopping the distro's redis-server service (we run our own instance)"
    systemctl stop redis-server >/dev/null 2>&1 || true
  fi
  log "installed $(redis-server --version | awk '{print $3}')"
}

cmd_start() {
  cmd_install
  if pid_alive && ping_ok; then
    log "already running (pid $(cat "$PIDFILE")) on $HOST:$PORT"
    return 0
  fi
  if ! pid_alive && port_open "$PORT"; then
    if ping_ok; then
      log "$HOST:$PORT is already served by another Redis (not started by this script); leaving it alone"
      return 0
    fi
    log "ERROR: $HOST:$PORT is in use by something that is not Redis; set REDIS_PORT to use another port"; exit 1
  fi
  if ! pid_alive; then
    mkdir -p "$RDIR"
    rm -f "$PIDFILE"
    log "starting redis-server on $HOST:$PORT, state $RDIR"
    redis-server --port "$PORT" --bind "$HOST" --daemonize yes \
      --dir "$RDIR" --pidfile "$PIDFILE" --logfile "$LOGFILE" \
      --save '' --appendonly no --protected-mode yes \
      || die "redis-server failed to start"
  fi
  local deadline=$(( $(date +%s) + START_TIMEOUT ))
  until ping_ok; do
    (( $(date +%s) < deadline )) || die "redis did not answer PING on $HOST:$PORT within ${START_TIMEOUT}s"
    sleep 0.1
  done
  log "ready: REDIS_URL=redis://$HOST:$PORT (pid $(cat "$PIDFILE" 2>/dev/null || echo '?'))"
}

cmd_stop() {
  if ! pid_alive; then
    report_not_running
    return 0
  fi
  local pid; pid="$(cat "$PIDFILE")"
  log "stopping redis (pid $pid)"
  # SIGTERM to the process this script started (it saves nothing: started with --save ''), never
  # a SHUTDOWN to whatever serves REDIS_PORT: a stop with another REDIS_PORT than the start's
  # shut down someone else's Redis (a new user's finding).
  kill -TERM "$pid" 2>/dev/null || true
  await_exit "$pid" 10 0.1
  rm -f "$PIDFILE"
  log "stopped"
}

cmd_status() {
  if pid_alive && ping_ok; then
    echo "redis: running (pid $(cat "$PIDFILE")) on $HOST:$PORT, state $RDIR"
    return 0
  fi
  status_not_ours
}

case "${1:-}" in
  install|start|stop|restart|status) service_command "$1" ;;
  logs) tail -n "${2:-100}" "$LOGFILE" ;;
  *) echo "deploy/redis.sh: unknown command \"${1:-}\"; expected install|start|stop|restart|status|logs [N] (see bash deploy/redis.sh --help)" >&2; exit 2 ;;
esac
