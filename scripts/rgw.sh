#!/usr/bin/env bash
# Ceph RADOS Gateway on one machine, for the tests: one monitor, one OSD (bluestore on a sparse
# file) and radosgw on loopback. Started and stopped by PID, never by process name.
#
#   scripts/rgw.sh start DIR   prints export lines (S3_RGW_URL, S3_RGW_ACCESS_KEY, S3_RGW_SECRET_KEY)
#   scripts/rgw.sh stop DIR
#
# Needs Debian's ceph-mon ceph-osd radosgw ceph-common. Ports: RGW_PORT (default 7480), monitor
# RGW_MON_PORT (default 16789), daemons RGW_MSGR_PORTS (default 16800-16899).
set -euo pipefail

cmd=${1:?usage: rgw.sh start|stop DIR}
dir=${2:?usage: rgw.sh start|stop DIR}
port=${RGW_PORT:-7480}
mon_port=${RGW_MON_PORT:-16789}
msgr=${RGW_MSGR_PORTS:-16800-16899}
conf="$dir/ceph.conf"
access_key=TESTRGWACCESSKEY
secret_key=testrgwsecretkey0123456789
# Debian builds Ceph on glibc's malloc, which hands large buffers back to the kernel and takes fresh
# ones for the next requests; Ceph's own packages use tcmalloc, which keeps them. Where first
# touching memory is dear (virtual machines), RGW then spends far more CPU per byte, and a different
# amount from run to run as glibc's thresholds move. These settings keep the memory, as tcmalloc would.
keep_memory=(MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296)

stop() {
  for name in rgw osd mon; do
    local pidfile="$dir/run/$name.pid"
    [ -f "$pidfile" ] || continue
    local pid
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

wait_for() { # what, seconds, command...
  local what=$1 secs=$2; shift 2
  for _ in $(seq 1 $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "rgw.sh: timed out waiting for $what" >&2
  tail -n 20 "$dir"/log/*.log >&2 || true
  return 1
}

start() {
  stop
  rm -rf "$dir"
  mkdir -p "$dir"/{mon,osd,run,log}
  local fsid osd_uuid
  fsid=$(cat /proc/sys/kernel/random/uuid)
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  cat > "$conf" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$mon_port
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
ms bind port min = ${msgr%-*}
ms bind port max = ${msgr#*-}
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon max pg per osd = 1000
run dir = $dir/run
log file = $dir/log/\$name.log
admin socket = $dir/run/\$name.asok
[mon.a]
mon data = $dir/mon
pid file = $dir/run/mon.pid
[osd.0]
osd data = $dir/osd
osd objectstore = bluestore
bluestore block path = $dir/osd-block.img
bluestore block create = false
osd memory target = 1073741824
pid file = $dir/run/osd.pid
[client.rgw.test]
rgw frontends = beast endpoint=127.0.0.1:$port tcp_nodelay=1
ms mon client mode = crc secure
rgw data = $dir/rgw
pid file = $dir/run/rgw.pid
rgw dns name = 127.0.0.1
CONF
  monmaptool --create --fsid "$fsid" --addv a "[v1:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null
  ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" >/dev/null
  ceph-mon -c "$conf" -i a 2>>"$dir/log/mon-start.log"
  wait_for "the monitor" 30 ceph -c "$conf" --connect-timeout 2 mon stat

  truncate -s 10G "$dir/osd-block.img"
  local id
  id=$(ceph -c "$conf" osd new "$osd_uuid")
  [ "$id" = 0 ] || { echo "rgw.sh: unexpected OSD id $id" >&2; return 1; }
  ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$dir/log/osd-mkfs.log" 2>&1
  env "${keep_memory[@]}" ceph-osd -c "$conf" -i 0 2>>"$dir/log/osd-start.log"
  wait_for "the OSD" 60 sh -c "ceph -c '$conf' osd stat | grep -q '1 up'"

  mkdir -p "$dir/rgw"
  env "${keep_memory[@]}" radosgw -c "$conf" -n client.rgw.test 2>>"$dir/log/rgw-start.log"
  wait_for "radosgw" 90 curl -sf -o /dev/null "http://127.0.0.1:$port/"
  radosgw-admin -c "$conf" user create --uid=test --display-name=test \
    --access-key="$access_key" --secret-key="$secret_key" >/dev/null
  echo "export S3_RGW_URL=http://127.0.0.1:$port/ S3_RGW_ACCESS_KEY=$access_key S3_RGW_SECRET_KEY=$secret_key"
}

# A step that fails says which, with the daemons' logs (CI deletes DIR afterwards).
explain() {
  echo "rgw.sh: '$1' failed (exit $2)" >&2
  tail -n 20 "$dir"/log/*.log >&2 2>/dev/null || true
}

case "$cmd" in
  start)
    # Once seen here: a start right after another cluster's stop failed at one step; a second
    # attempt, on a clean directory, is the one that counts.
    for attempt in 1 2; do
      if bash "$0" start-once "$dir"; then exit 0; fi
      echo "rgw.sh: start attempt $attempt failed" >&2
      stop
      sleep 2
    done
    exit 1
    ;;
  start-once)
    set -E
    trap 'explain "$BASH_COMMAND" $?' ERR
    start
    ;;
  stop) stop ;;
  *) echo "usage: rgw.sh start|stop DIR" >&2; exit 2 ;;
esac
