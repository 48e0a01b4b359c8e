#!/usr/bin/env bash
# Build a real Kubernetes control plane for the controller's tests from public Go modules (through the Go module
# proxy): kube-apiserver, kube-controller-manager (garbage collection of owned objects) and kubectl from
# k8s.io/kubernetes, and etcd from go.etcd.io/etcd/server/v3 at the version that Kubernetes release depends on.
# Cached per machine, keyed by the versions: a second run prints the folder at once. Test infrastructure only.
# Prints the folder holding the binaries on its last line.
set -euo pipefail
KUBE_VERSION=${KUBE_VERSION:-v1.36.3}
CACHE=${AIBRIX_CACHE_DIR:-/var/cache/aibrix}
OUT=${AIBRIX_KUBE_BIN:-$CACHE/kube-$KUBE_VERSION}
log() { echo "build_kube: $*" >&2; }

if [ -f "$OUT/.complete" ]; then
  echo "$OUT"
  exit 0
fi
command -v go >/dev/null || { log "needs Go (https://go.dev) to build the test control plane"; exit 1; }
started=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod CGO_ENABLED=0

# k8s.io/kubernetes points its staging modules (k8s.io/api, k8s.io/client-go, ...) at local folders; a wrapper
# module requires it and replaces each with its published version of the same release (v1.X.Y -> v0.X.Y).
mod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
staging=$(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$mod")
published=v0.${KUBE_VERSION#v1.}
etcd_version=$(sed -n 's#^\s*go.etcd.io/etcd/server/v3 \(v[0-9.]*\).*#\1#p' "$mod" | head -1)
{
  echo "module aibrix.test/kube"
  echo "go $(sed -n 's/^go \(.*\)/\1/p' "$mod")"
  echo "require k8s.io/kubernetes $KUBE_VERSION"
  for module in $staging; do echo "replace $module => $module $published"; done
} >"$work/go.mod"
cat >"$work/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
mkdir -p "$OUT.tmp"
(
  cd "$work"
  go mod tidy >/dev/null 2>&1 || go mod tidy
  for cmd in kube-apiserver kube-controller-manager kubectl; do
    log "building $cmd $KUBE_VERSION"
    go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION" \
      -o "$OUT.tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd"
  done
)
log "building etcd $etcd_version"
etcd_work=$(mktemp -d)
(
  cd "$etcd_work"
  printf 'module aibrix.test/etcd\ngo 1.24\n' >go.mod
  go get "go.etcd.io/etcd/server/v3@$etcd_version" >/dev/null 2>&1
  go build -trimpath -ldflags "-s -w" -o "$OUT.tmp/etcd" go.etcd.io/etcd/server/v3
  "$OUT.tmp/etcd" --version | grep -q "etcd Version: ${etcd_version#v}" || { log "etcd is not $etcd_version"; exit 1; }
)
rm -rf "$etcd_work"
echo "kubernetes $KUBE_VERSION, etcd $etcd_version, built in $(( $(date +%s) - started )) s" >"$OUT.tmp/.complete"
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
log "$(cat "$OUT/.complete")"
echo "$OUT"
