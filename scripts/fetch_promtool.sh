#!/usr/bin/env bash
# Put Prometheus and its validator at .tools/prometheus and .tools/promtool, from Debian's prometheus package
# (extracted, not installed: no service, no postinst). Tests use promtool to check that /metrics is what Prometheus
# itself accepts, and a real Prometheus (started by the test on loopback) to evaluate the dashboard and the alerts.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .tools/promtool ] && [ -x .tools/prometheus ] && exit 0
command -v apt-get >/dev/null || { echo "fetch_promtool: no apt-get; promtool checks will be skipped" >&2; exit 0; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download prometheus >/dev/null 2>&1); then
  apt-get update -qq >/dev/null 2>&1 || true
  (cd "$work" && apt-get download prometheus >/dev/null 2>&1) || {
    echo "fetch_promtool: could not download Debian's prometheus package; promtool checks will be skipped" >&2
    exit 0
  }
fi
dpkg-deb -x "$work"/prometheus_*.deb "$work/x"
mkdir -p .tools
cp "$work/x/usr/bin/promtool" .tools/promtool
cp "$work/x/usr/bin/prometheus" .tools/prometheus
.tools/promtool --version | head -1
