#!/usr/bin/env bash
# Install the project with its test dependencies and run the whole test suite.
# Arguments go to pytest: `scripts/test.sh -m real_vllm` runs only the tests against real vLLM.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh test
# Lint and formatting first: a style error fails the run in seconds, before anything slow starts.
.venv/bin/ruff check src tests scripts bench plugins
.venv/bin/ruff format --check --quiet src tests scripts bench plugins
.venv/bin/mypy  # strict, on src/ (pyproject [tool.mypy])
scripts/fetch_promtool.sh
scripts/install_services.sh
# vLLM's CPU build in an environment of its own, and the tiny model it serves (both cached per machine).
AIBRIX_VLLM_PYTHON=$(scripts/install_vllm.sh | tail -1)
AIBRIX_TINY_MODELS=$(scripts/make_tiny_model.sh "$AIBRIX_VLLM_PYTHON" | tail -1)
# A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kubectl) built with Go (cached).
AIBRIX_KUBE_BIN=$(scripts/build_kube.sh | tail -1)
# The image, built without a registry (debootstrap base + buildah; cached by a hash of its inputs).
AIBRIX_IMAGE=$(scripts/build_image.sh | tail -1)
export AIBRIX_VLLM_PYTHON AIBRIX_TINY_MODELS AIBRIX_KUBE_BIN AIBRIX_IMAGE
# The tests run in a network namespace of their own: nothing they do can reach another machine.
# The slowest tests are listed at the end: the suite must stay under 15 minutes.
if [ $# -eq 0 ]; then
  # Everything but tests/e2e/ on six workers, as scripts/test_fast.sh runs it (most of these tests wait on the
  # processes they start); then the end-to-end tests one at a time: they time engines, API servers and failovers,
  # and share session-wide services (Ceph, real vLLM, the control plane).
  scripts/in_netns.sh .venv/bin/python -m pytest -q --ignore=tests/e2e -n 6 --durations=10
  exec scripts/in_netns.sh .venv/bin/python -m pytest -q --durations=25 tests/e2e
fi
exec scripts/in_netns.sh .venv/bin/python -m pytest -q --durations=25 "$@"
