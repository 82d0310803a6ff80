#!/usr/bin/env bash
# Installs the kustomize that test/deploy/kubernetes.test.ts renders the overlays with, into
# <repo>/.tools/bin (gitignored), built from its Go module (the Go module proxy; no binary
# download). Idempotent: prints the binary's path on stdout and exits 0 when it is there.
# Without Go it says so on stderr and exits 1 (the test then falls back to `kubectl kustomize`,
# else skips the overlays loudly, or fails under CI=true).
set -euo pipefail
case "${1:-}" in
  -h|--help)
    cat <<'USAGE'
Usage: bash deploy/kubernetes/tools.sh

Installs the kustomize that test/deploy/kubernetes.test.ts renders the overlays with into
<repo>/.tools/bin, built from its Go module (the Go module proxy), and prints the binary's path
on stdout (progress on stderr). Idempotent: an installed binary of the same version is reused.

Environment:
  KUSTOMIZE_VERSION   the version to build (default v5.5.0)

Example:
  KUSTOMIZE="$(bash deploy/kubernetes/tools.sh)"

Exit status: 0 installed (the path printed), 1 Go is missing or the build failed, 2 bad usage.
USAGE
    exit 0 ;;
  "") ;;
  *) echo "deploy/kubernetes/tools.sh: unexpected argument \"$1\"; it takes none (see bash deploy/kubernetes/tools.sh --help)" >&2; exit 2 ;;
esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VERSION="${KUSTOMIZE_VERSION:-v5.5.0}"
BIN="$ROOT/.tools/bin"
STAMP="$BIN/kustomize.version"
if [[ -x "$BIN/kustomize" && "$(cat "$STAMP" 2>/dev/null)" == "$VERSION" ]]; then
  echo "$BIN/kustomize"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "kustomize: Go is not installed; cannot build sigs.k8s.io/kustomize/kustomize/v5@$VERSION" >&2
  exit 1
fi
mkdir -p "$BIN"
echo "kustomize: building sigs.k8s.io/kustomize/kustomize/v5@$VERSION (about 2 minutes cold)" >&2
GOBIN="$BIN" go install "sigs.k8s.io/kustomize/kustomize/v5@$VERSION" >&2
echo "$VERSION" >"$STAMP"
echo "$BIN/kustomize"
