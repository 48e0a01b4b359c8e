#!/usr/bin/env bash
# Install, then run the demo: the engine simulator as vLLM, the runtime in front of it, adapter load/list/unload.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh sim
exec .venv/bin/python scripts/demo.py "$@"
