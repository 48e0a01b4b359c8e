#!/usr/bin/env bash
# Install the project with its test dependencies and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh test
scripts/fetch_promtool.sh
scripts/install_services.sh
exec .venv/bin/python -m pytest -q "$@"
