#!/usr/bin/env bash
# Installs the kustomize that test/deploy/kubernetes.test.ts renders the overlays with, into
# <repo>/.tools/bin (gitignored), built from its Go module (the Go module proxy; no binary
# download). Idempotent: prints the binary's path on stdout and exits 0 when it is there.
# Without Go it says so on stderr and exits 1 (the test then falls back to `kubectl kustomize`,
# else skips the overlays loudly, or fails under CI=true).
set -euo pipefail
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
