#!/usr/bin/env bash
# Install upstream aibrix==0.8.0 into its own venv (default /tmp/aibrix-upstream) for side-by-side benchmarks.
set -euo pipefail
dir=${1:-/tmp/aibrix-upstream}
[ -x "$dir/bin/aibrix_runtime" ] || { python3 -m venv "$dir" && "$dir/bin/pip" install -q aibrix==0.8.0; }
echo "$dir/bin/aibrix_runtime"
