#!/usr/bin/env bash
# Run a command inside a network namespace of its own: loopback only, which also holds a pod address
# (10.244.0.1, on lo) that exists nowhere else. The test suite's traffic then cannot leave this machine whatever a test gets wrong, and the
# real-Kubernetes tests get pod addresses the API server accepts (it refuses loopback addresses in EndpointSlices).
# Exports AIBRIX_POD_IP. Without root (or where namespaces are refused) the command runs as it is, with a warning.
set -euo pipefail
if [ "${AIBRIX_IN_NETNS:-}" = 1 ]; then
  exec "$@"
fi
if [ "$(id -u)" != 0 ] || ! unshare -n true 2>/dev/null; then
  echo "in_netns: cannot make a network namespace here (needs root and unshare); running without one" >&2
  exec "$@"
fi
exec unshare -n env AIBRIX_IN_NETNS=1 AIBRIX_POD_IP=10.244.0.1 bash -c '
  set -e
  ip link set lo up
  ip addr add 10.244.0.1/32 dev lo
  exec "$@"' in_netns "$@"
