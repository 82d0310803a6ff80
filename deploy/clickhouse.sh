#!/usr/bin/env bash
# Local ClickHouse server for Tollgate dev and CI: ClickHouse's own HTTP server, run out of the
# chDB engine (no clickhouse-server package, no Docker), single node.
#
#   bash deploy/clickhouse.sh install|start|stop|restart|status|logs [N]
#
# Engine (CLICKHOUSE_ENGINE):
#   npm  (default) libchdb.so of @chdb/lib-linux-x64-gnu, which `npm ci` already installed for the
#        embedded warehouse, called through Python's ctypes: nothing to download.
#   pypi PyPI chdb-core==${CLICKHOUSE_PYPI_VERSION:-26.9.0} in a venv under the state dir.
# State (config, data, logs, pid): ${TOLLGATE_DEPLOY_DIR:-<repo>/.deploy}/clickhouse
# Port: CLICKHOUSE_PORT (default 8123, HTTP), bound to 127.0.0.1 only; user `default`, no password.
# Every command is idempotent.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bash deploy/clickhouse.sh install|start|stop|restart|status|logs [N]

Local ClickHouse server for Tollgate dev and CI: ClickHouse's own HTTP server run out of the chDB
engine (no clickhouse-server package, no Docker), single node, 127.0.0.1 only, user default
without password. Every command is idempotent.

Commands:
  install   prepare the engine (npm: nothing to download; pypi: a venv with chdb-core)
  start     start the server (install first if needed) and wait until /ping answers
  stop      stop the server this script started (SIGTERM, then SIGKILL)
  restart   stop, then start
  status    running (exit 0; prints its pid), served by another process (exit 0) or stopped (exit 3)
  logs [N]  the last N lines of its logs (default 100)

Environment:
  CLICKHOUSE_PORT            HTTP port (default 8123)
  CLICKHOUSE_ENGINE          npm (default: libchdb.so of @chdb/lib-linux-x64-gnu, through Python's
                             ctypes) or pypi (PyPI chdb-core in a venv)
  CLICKHOUSE_LIBCHDB         the libchdb.so of the npm engine (default the one npm installed)
  CLICKHOUSE_PYPI_VERSION    chdb-core version of the pypi engine (default 26.9.0)
  CLICKHOUSE_START_TIMEOUT   seconds to wait for /ping (default 60)
  CLICKHOUSE_STOP_TIMEOUT    seconds before SIGKILL on stop (default 15)
  TOLLGATE_DEPLOY_DIR        state directory (default <repo>/.deploy; the server under clickhouse/)

Example:
  bash deploy/clickhouse.sh start && curl -s http://127.0.0.1:8123/ping

Exit status: 0 done, 1 failed (messages and the log's tail on stderr), 2 bad usage, 3 status: stopped.
USAGE
}
case "${1:-}" in -h|--help|help) usage; exit 0 ;; esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${TOLLGATE_DEPLOY_DIR:-$REPO/.deploy}"
CDIR="$STATE/clickhouse"
RUNDIR="$CDIR/run"               # working dir of the server: config.xml is read from here
DATA="$CDIR/data"
VENV="$CDIR/venv"
PIDFILE="$CDIR/clickhouse.pid"
PORTFILE="$CDIR/clickhouse.port"
LOGFILE="$CDIR/clickhouse.log"   # the server's own log (config.xml <logger>)
OUT="$CDIR/clickhouse.out"       # stdout/stderr of the process
RUNNER="$REPO/deploy/clickhouse/server.py"

HOST=127.0.0.1
PORT="${CLICKHOUSE_PORT:-8123}"
ENGINE="${CLICKHOUSE_ENGINE:-npm}"
LIBCHDB="${CLICKHOUSE_LIBCHDB:-$REPO/node_modules/@chdb/lib-linux-x64-gnu/libchdb.so}"
PYPI_VERSION="${CLICKHOUSE_PYPI_VERSION:-26.9.0}"
START_TIMEOUT="${CLICKHOUSE_START_TIMEOUT:-60}"
STOP_TIMEOUT="${CLICKHOUSE_STOP_TIMEOUT:-15}"

PROCESS_PATTERN='deploy/clickhouse/server\.py'
SERVICE=clickhouse
# shellcheck source=deploy/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
fail() { log "ERROR: $*"; exit 1; }
die() {
  log "ERROR: $*"
  local f
  for f in "$LOGFILE" "$OUT"; do
    if [[ -s "$f" ]]; then echo "----- last 40 lines of $f -----" >&2; tail -n 40 "$f" >&2 || true; fi
  done
  exit 1
}

# One HTTP/1.0 GET with bash's /dev/tcp (no curl needed); prints the body.
http_get() {
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$3" "$1" >&3
    sed "1,/^\r\{0,1\}$/d" <&3' _ "$HOST" "$PORT" "$1" 2>/dev/null
}
ping_ok() { [[ "$(http_get /ping)" == "Ok." ]]; }
server_version() { http_get '/?query=SELECT%20version()' | tr -d '\r\n'; }

python_for_engine() {
  case "$ENGINE" in
    npm) echo python3 ;;
    pypi) echo "$VENV/bin/python" ;;
    *) fail "CLICKHOUSE_ENGINE must be npm or pypi, got '$ENGINE'" ;;
  esac
}

installed() {
  case "$ENGINE" in
    npm) command -v python3 >/dev/null 2>&1 && [[ -f "$LIBCHDB" ]] ;;
    pypi) [[ -x "$VENV/bin/python" && "$(cat "$VENV/.stamp" 2>/dev/null)" == "chdb-core==$PYPI_VERSION" ]] ;;
    *) fail "CLICKHOUSE_ENGINE must be npm or pypi, got '$ENGINE'" ;;
  esac
}

cmd_install() {
  if installed; then
    case "$ENGINE" in
      npm) log "engine: $LIBCHDB ($(du -h "$LIBCHDB" | cut -f1)) via $(python3 --version)" ;;
      pypi) log "engine: chdb-core==$PYPI_VERSION already installed in $VENV" ;;
    esac
    return 0
  fi
  if ! command -v python3 >/dev/null 2>&1; then
    log "python3 not found; installing it via apt-get"
    if [[ "$ENGINE" == pypi ]]; then apt_install python3 python3-venv; else apt_install python3; fi
  fi
  case "$ENGINE" in
    npm)
      [[ -f "$LIBCHDB" ]] || fail "$LIBCHDB is missing: run \`npm ci\` in $REPO first (it installs chdb's native library), or use CLICKHOUSE_ENGINE=pypi"
      ;;
    pypi)
      log "installing chdb-core==$PYPI_VERSION from PyPI into $VENV"
      rm -rf "$VENV"
      python3 -m venv "$VENV" >&2 || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
      "$VENV/bin/pip" install -q --disable-pip-version-check "chdb-core==$PYPI_VERSION" >&2 || die "pip install chdb-core==$PYPI_VERSION failed"
      echo "chdb-core==$PYPI_VERSION" >"$VENV/.stamp"
      log "installed chdb-core==$PYPI_VERSION ($(du -sh "$VENV" | cut -f1))"
      ;;
  esac
}

write_config() {
  mkdir -p "$RUNDIR" "$DATA"
  cat >"$RUNDIR/config.xml" <<EOF
<!-- Generated by deploy/clickhouse.sh: edits are overwritten on every start. -->
<clickhouse>
  <listen_host>$HOST</listen_host>
  <http_port>$PORT</http_port>
  <logger>
    <level>warning</level>
    <log>$LOGFILE</log>
    <errorlog>$LOGFILE</errorlog>
    <size>20M</size>
    <count>2</count>
  </logger>
</clickhouse>
EOF
}

cmd_start() {
  if pid_alive; then
    local running_port; running_port="$(cat "$PORTFILE" 2>/dev/null || echo "$PORT")"
    [[ "$running_port" == "$PORT" ]] \
      || fail "a server from $CDIR is already running on port $running_port (pid $(cat "$PIDFILE")); stop it first: bash deploy/clickhouse.sh stop"
    if ping_ok; then
      log "already running (pid $(cat "$PIDFILE")) on $HOST:$PORT"
      return 0
    fi
    log "process $(cat "$PIDFILE") is alive but /ping does not answer yet; waiting"
    wait_ready "$(cat "$PIDFILE")"
    return 0
  fi
  rm -f "$PIDFILE"
  if port_open "$PORT"; then
    if ping_ok; then
      log "$HOST:$PORT is already served by another ClickHouse (not started by this script); leaving it alone"
      return 0
    fi
    fail "$HOST:$PORT is in use by something that is not ClickHouse; set CLICKHOUSE_PORT to use another port"
  fi
  cmd_install
  write_config
  local py; py="$(python_for_engine)"
  local args=("$RUNNER" "$ENGINE")
  [[ "$ENGINE" == npm ]] && args+=("$LIBCHDB")
  args+=("$DATA")
  log "starting ClickHouse server ($ENGINE engine) on $HOST:$PORT, state $CDIR"
  spawn_server "$RUNDIR" "$py" "${args[@]}"
}

wait_ready() {
  local pid="$1" deadline=$(( $(date +%s) + START_TIMEOUT ))
  until ping_ok; do
    alive "$pid" || { rm -f "$PIDFILE" "$PORTFILE"; die "server process $pid exited during startup"; }
    (( $(date +%s) < deadline )) || die "server did not answer /ping on $HOST:$PORT within ${START_TIMEOUT}s"
    sleep 0.1
  done
  log "ready: CLICKHOUSE_URL=http://$HOST:$PORT (pid $pid, ClickHouse $(server_version))"
}

# The engine has no graceful shutdown hook here: SIGTERM ends the process; MergeTree parts are
# written whole before an insert is acknowledged, so nothing acknowledged is lost.
cmd_stop() { stop_server server 0.1 "$PORT"; }

cmd_status() {
  if pid_alive; then
    local pid; pid="$(cat "$PIDFILE")"
    if ping_ok; then
      local rss; rss="$(awk '/^VmRSS/ {printf "%d MB", $2 / 1024}' "/proc/$pid/status" 2>/dev/null || echo '?')"
      echo "clickhouse: running (pid $pid, ClickHouse $(server_version), RSS $rss) on $HOST:$PORT, state $CDIR"
      return 0
    fi
    echo "clickhouse: starting (pid $pid), $HOST:$PORT does not answer /ping yet"
    return 3
  fi
  status_not_ours
}

case "${1:-}" in
  install|start|stop|restart|status) service_command "$1" ;;
  logs) touch "$LOGFILE" 2>/dev/null || true; tail -n "${2:-100}" "$LOGFILE" "$OUT" ;;
  *) echo "deploy/clickhouse.sh: unknown command \"${1:-}\"; expected install|start|stop|restart|status|logs [N] (see bash deploy/clickhouse.sh --help)" >&2; exit 2 ;;
esac
