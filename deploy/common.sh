# Shared by deploy/kafka.sh, deploy/redis.sh and deploy/clickhouse.sh (sourced; not run on its own).
# Expects SERVICE (for log and status lines) and HOST to be set by the caller.

T0="${EPOCHREALTIME/[.,]/}"
elapsed() { local now="${EPOCHREALTIME/[.,]/}"; printf '%d.%d' $(( (now - T0) / 1000000 )) $(( (now - T0) / 100000 % 10 )); }
log() { printf '[%s +%ss] %s\n' "$SERVICE" "$(elapsed)" "$*" >&2; }

# alive PID: exists and is not a zombie (PID 1 in containers may reap exited daemons late)
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  ! grep -qE '^State:[[:space:]]+Z' "/proc/$1/status" 2>/dev/null
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") >/dev/null 2>&1; }

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  local sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  # DPkg::Lock::Timeout waits for a concurrent apt/dpkg instead of failing; an old package
  # list is refreshed once.
  if ! $sudo apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$@" >&2; then
    $sudo apt-get -o DPkg::Lock::Timeout=600 update >&2
    $sudo apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$@" >&2
  fi
}

# Nothing of ours runs (stale or no pid file): say whether someone else serves the port.
# Expects PIDFILE and PORT.
report_not_running() {
  rm -f "$PIDFILE"
  if port_open "$PORT"; then
    log "not started by this script, but $HOST:$PORT is served by something else; leaving it alone"
  else
    log "not running"
  fi
}

# Our service is running: the pid file names a live process whose command line matches
# PROCESS_PATTERN (guards against a reused pid). Expects PIDFILE and PROCESS_PATTERN.
pid_alive() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid; pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ -n "$pid" ]] && alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$PROCESS_PATTERN" || return 1
}

# Run COMMAND... as the server, detached, with stdout/stderr appended to OUT (emptied first) and
# DIR as working directory; record its pid in PIDFILE and PORT in PORTFILE, then wait_ready (the
# caller's). Its own session (setsid): the server must outlive whatever started it, even when
# that caller's process group is killed (a test runner, a CI step, a shell job that timed out).
# setsid execs in place here (a background job is no group leader), so $! is the server's pid.
# Expects OUT, PIDFILE, PORTFILE, PORT and a wait_ready PID function.
spawn_server() {
  local dir="$1"; shift
  : >"$OUT"
  (cd "$dir" && exec setsid nohup "$@" >>"$OUT" 2>&1 </dev/null) &
  local pid=$!
  echo "$pid" >"$PIDFILE"
  echo "$PORT" >"$PORTFILE"
  disown "$pid" 2>/dev/null || true
  wait_ready "$pid"
}

# Wait up to TIMEOUT seconds (polling every POLL) for PID, already asked to exit, to be gone;
# SIGKILL it after that.
await_exit() {
  local pid="$1" timeout="$2" poll="$3"
  local deadline=$(( $(date +%s) + timeout ))
  while alive "$pid"; do
    if (( $(date +%s) >= deadline )); then
      log "still alive after ${timeout}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep "$poll"
  done
}

# Stop the server in PIDFILE: SIGTERM, SIGKILL after STOP_TIMEOUT seconds (polling every POLL),
# then wait up to 5 s for the listener sockets on PORTS... to be released so an immediate start
# can bind again. WHAT names the server in the log. Expects PIDFILE, PORTFILE, STOP_TIMEOUT.
stop_server() {
  local what="$1" poll="$2"; shift 2
  if ! pid_alive; then
    report_not_running
    return 0
  fi
  local pid; pid="$(cat "$PIDFILE")"
  log "stopping $what (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  await_exit "$pid" "$STOP_TIMEOUT" "$poll"
  local i p open
  for i in $(seq 1 50); do
    open=""
    for p in "$@"; do port_open "$p" && { open=1; break; }; done
    [[ -n "$open" ]] || break
    sleep 0.1
  done
  rm -f "$PIDFILE" "$PORTFILE"
  log "stopped"
}

# Status when no server of ours runs: someone else's on PORT (exit 0), or stopped (exit 3).
status_not_ours() {
  if port_open "$PORT"; then
    echo "$SERVICE: $HOST:$PORT is served by a process not started by this script"
    return 0
  fi
  echo "$SERVICE: stopped"
  return 3
}

# The commands every deploy script has: install, start, stop, restart, status (the caller's
# cmd_* functions).
service_command() {
  case "$1" in
    restart) cmd_stop; cmd_start ;;
    *) "cmd_$1" ;;
  esac
}
