#!/usr/bin/env bash
# Installs the gateways the bench compares Tollgate with (issue 11, outcome 4), outside the
# project's npm workspaces so `npm install` of the project never pulls them in:
#   - Portkey's gateway (npm @portkey-ai/gateway) into bench/.peers/portkey
#   - LiteLLM's proxy (PyPI litellm[proxy]) into a venv at bench/.peers/litellm-venv
#     (pinned below 1.110: from 1.110 the proxy extra needs a `litellm-proxy` wheel that PyPI does not serve)
# Idempotent: a peer already installed at the pinned version is left alone.
# Usage: bash bench/peers/install.sh [portkey|litellm|all]   (default all)
set -euo pipefail
case "${1:-}" in
  -h|--help)
    cat <<'USAGE'
Usage: bash bench/peers/install.sh [portkey|litellm|all]   (default all)

Installs the gateways the bench compares Tollgate with (npm run bench's peers section), outside
the project's npm workspaces: Portkey's gateway (npm @portkey-ai/gateway) into
bench/.peers/portkey, LiteLLM's proxy (PyPI litellm[proxy]) into a venv at
bench/.peers/litellm-venv. Idempotent: a peer already at the pinned version is left alone.

Environment:
  PORTKEY_VERSION   @portkey-ai/gateway version (default 1.15.2)
  LITELLM_VERSION   litellm version (default 1.106.12)
  PYTHON            the Python that creates the venv (default python3)

Example:
  bash bench/peers/install.sh portkey

Exit status: 0 installed, 1 an install failed, 2 bad usage.
USAGE
    exit 0 ;;
esac
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="$here/.peers"
PORTKEY_VERSION="${PORTKEY_VERSION:-1.15.2}"
LITELLM_VERSION="${LITELLM_VERSION:-1.106.12}"
what="${1:-all}"
mkdir -p "$dir"

install_portkey() {
  local p="$dir/portkey"
  if [ -f "$p/node_modules/@portkey-ai/gateway/package.json" ] &&
     grep -q "\"version\": \"$PORTKEY_VERSION\"" "$p/node_modules/@portkey-ai/gateway/package.json"; then
    echo "portkey $PORTKEY_VERSION: already installed in $p"; return
  fi
  mkdir -p "$p"
  [ -f "$p/package.json" ] || echo '{"name":"bench-peer-portkey","private":true}' > "$p/package.json"
  # --ignore-scripts: the published package is prebuilt (build/start-server.js); nothing to run.
  (cd "$p" && npm install --no-audit --no-fund --ignore-scripts --no-workspaces "@portkey-ai/gateway@$PORTKEY_VERSION")
  echo "portkey $PORTKEY_VERSION: installed in $p"
}

install_litellm() {
  local v="$dir/litellm-venv"
  if [ -x "$v/bin/litellm" ] && "$v/bin/python" -c "import importlib.metadata as m,sys; sys.exit(m.version('litellm')!='$LITELLM_VERSION')" 2>/dev/null; then
    echo "litellm $LITELLM_VERSION: already installed in $v"; return
  fi
  local py="${PYTHON:-python3}"
  "$py" -m venv "$v"
  "$v/bin/pip" install --quiet --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION"
  echo "litellm $LITELLM_VERSION: installed in $v"
}

case "$what" in
  portkey) install_portkey ;;
  litellm) install_litellm ;;
  all) install_portkey; install_litellm ;;
  *) echo "bench/peers/install.sh: unknown peer \"$what\"; expected portkey, litellm or all (see bash bench/peers/install.sh --help)" >&2; exit 2 ;;
esac
