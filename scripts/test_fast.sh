#!/usr/bin/env bash
# The fast layer: everything but tests/e2e/ (which needs Ceph, real vLLM, a Kubernetes control plane, the image or
# Prometheus). Run it after every change; scripts/test.sh (what CI runs) runs everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh test
.venv/bin/ruff check src tests scripts bench plugins
.venv/bin/ruff format --check --quiet src tests scripts bench plugins
.venv/bin/mypy
# Six workers on two cores: most of these tests wait on the processes they start.
exec scripts/in_netns.sh .venv/bin/python -m pytest -q --ignore=tests/e2e -n 6 "$@"
