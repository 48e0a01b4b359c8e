#!/usr/bin/env bash
# Install what the storage tests run against, from Debian's packages: Ceph's monitor, OSD and S3 gateway.
# (The GCS emulator comes from PyPI with the test extra; the HuggingFace server is the project's own.)
# Nothing is started here: the tests start a throw-away cluster (scripts/ceph_rgw.sh) and stop it.
set -euo pipefail
if command -v radosgw >/dev/null && command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install_services: need root and apt-get to install Ceph; S3 tests will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq ceph-mon ceph-osd radosgw ceph-common >/dev/null
radosgw --version | head -1
