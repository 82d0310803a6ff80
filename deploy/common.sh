# Shared by deploy/kafka.sh and deploy/redis.sh (sourced; not run on its own).
# Expects SERVICE (for log lines) and HOST to be set by the caller.

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
