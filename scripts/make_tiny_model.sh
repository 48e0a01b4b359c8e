#!/usr/bin/env bash
# Make the tiny model and LoRA adapters the real-vLLM tests serve (scripts/make_tiny_model.py), once per machine:
# cached under a name keyed by the generator's content. Prints the folder on its last line.
# Usage: scripts/make_tiny_model.sh VLLM_PYTHON   (the python of scripts/install_vllm.sh's environment)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:?usage: make_tiny_model.sh VLLM_PYTHON}
key=$(sha256sum scripts/make_tiny_model.py | cut -c1-12)
out=${AIBRIX_CACHE_DIR:-/var/cache/aibrix}/tiny-models-$key
if [ ! -f "$out/.complete" ]; then
  rm -rf "$out.tmp"
  "$python" scripts/make_tiny_model.py "$out.tmp" >/dev/null 2>"$out.log" || { cat "$out.log" >&2; exit 1; }
  touch "$out.tmp/.complete"
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "$out"
