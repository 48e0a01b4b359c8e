#!/usr/bin/env bash
# A throw-away single-node Ceph cluster with an S3 gateway on loopback, for tests and benchmarks.
#   scripts/ceph_rgw.sh start DIR   (env: RGW_PORT, RGW_ACCESS_KEY, RGW_SECRET_KEY, RGW_MEMSTORE_BYTES)
#   scripts/ceph_rgw.sh stop DIR
# One monitor, one OSD on memstore (RAM, no disks), no cephx, pool size 1, radosgw's beast frontend on
# 127.0.0.1:$RGW_PORT, and an S3 user with the given keys. Everything lives in DIR; stop kills it and removes DIR.
set -Eeuo pipefail
cmd=${1:?start|stop}
dir=$(realpath -m "${2:?directory}")
conf="$dir/ceph.conf"

stop() {
  for pidfile in "$dir"/run/*.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  sleep 0.5
  for pidfile in "$dir"/run/*.pid; do
    [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  done
  rm -rf "$dir"
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

on_error() {
  echo "ceph_rgw.sh: '$BASH_COMMAND' failed (line $1)" >&2
  tail -n 20 "$dir"/log/*.log >&2 2>/dev/null || true
}
trap 'on_error $LINENO' ERR

port=${RGW_PORT:-7480}
mon_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rm -rf "$dir"
mkdir -p "$dir"/{run,log,mon,osd/ceph-0,rgw}
fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
cat > "$conf" <<CONF
[global]
fsid = $fsid
mon_host = v1:127.0.0.1:$mon_port
ms_bind_msgr2 = false
public_network = 127.0.0.0/8
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
osd_objectstore = memstore
memstore_device_bytes = ${RGW_MEMSTORE_BYTES:-4294967296}
run_dir = $dir/run
pid_file = $dir/run/\$name.pid
admin_socket = $dir/run/\$name.asok
log_file = $dir/log/\$name.log
log_to_stderr = false
err_to_stderr = true
keyring = $dir/keyring
[mon.a]
mon_data = $dir/mon/ceph-a
[osd.0]
osd_data = $dir/osd/ceph-0
[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:$port
rgw_data = $dir/rgw
rgw_dns_name = 127.0.0.1
CONF
touch "$dir/keyring"
ceph() { command ceph -c "$conf" --connect-timeout 20 "$@"; }
retry() { # daemons just started may refuse a moment longer on a loaded machine
  local attempt
  for attempt in 1 2 3 4 5; do
    "$@" && return 0
    sleep $((attempt))
  done
  "$@"
}

monmaptool --create --addv a "[v1:127.0.0.1:$mon_port]" --fsid "$fsid" "$dir/monmap" >/dev/null
ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" >/dev/null
ceph-mon -c "$conf" -i a
osd_uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
retry ceph osd create "$osd_uuid" >/dev/null  # idempotent with a uuid, so a retry cannot add a second OSD
ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$dir/log/osd-mkfs.log" 2>&1
retry ceph-osd -c "$conf" -i 0 2>>"$dir/log/osd-start.log"
for _ in $(seq 1 100); do
  ceph osd stat 2>/dev/null | grep -q "1 up" && break
  sleep 0.2
done
timeout 60 radosgw -c "$conf" -n client.rgw.a --rgw-init-timeout 60
for _ in $(seq 1 150); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port', timeout=1)" 2>/dev/null && break
  sleep 0.2
done
radosgw-admin -c "$conf" user create --uid aibrix --display-name aibrix \
  --access-key "${RGW_ACCESS_KEY:-aibrix}" --secret-key "${RGW_SECRET_KEY:-aibrix-secret}" >/dev/null
echo "radosgw listening on http://127.0.0.1:$port"
