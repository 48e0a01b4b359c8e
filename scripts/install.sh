#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install aibrix into it, with extras given as $1 (e.g. "test").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    # Debian's python3 ships venv separately.
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      rm -rf .venv && "$PYTHON" -m venv .venv
    else
      echo "install: '$PYTHON -m venv' failed; install python3-venv" >&2
      exit 1
    fi
  fi
fi
extras=${1:+[$1]}
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import aibrix" # fail here, clearly, if the install did not work
