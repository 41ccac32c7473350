#!/bin/bash
# SPDX-License-Identifier: MIT
#
# vhost_blk_reconnect.sh - zocd crashes (SIGKILL) while a guest writes; it is
# restarted with the same --config and QEMU (chardev reconnect=1) reconnects.
# The guest's fio (128 MiB of 4k random writes at QD 32, then a crc32c verify
# of every block) must finish with no I/O error and a clean verify, and the
# guest kernel must log no I/O error.
#
# ZOC_E2E_SERVER=qsd runs the same against qemu-storage-daemon.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/guest.sh"
zoc_init

DISK_MB=256
KILL_AFTER=${ZOC_KILL_AFTER:-3}      # qsd: seconds of fio writes before the kill
KILL_WRITES=${ZOC_KILL_WRITES:-8192} # zocd: writes it has served before the kill (of 32768)
DOWN_FOR=${ZOC_DOWN_FOR:-1}     # seconds the server stays dead

cat >"$ZOC_WORK/guest.sh" <<'EOF'
if ! zoc_wait_blk vda 30; then
	zoc_fail "no /dev/vda 30 s after boot: the virtio-blk device did not come up"
	exit 1
fi
echo "ZOC-BLK size=$(blockdev --getsize64 /dev/vda) queues=$(ls /sys/block/vda/mq | wc -l) uptime=$(zoc_up)"
echo "ZOC-FIO-START uptime=$(zoc_up)"
fio --name=reconnect --filename=/dev/vda --rw=randwrite --bs=4k --iodepth=32 --ioengine=libaio \
	--direct=1 --size=128M --verify=crc32c --do_verify=1 --group_reporting >/tmp/fio.out 2>&1
frc=$?
echo "ZOC-FIO-END rc=$frc uptime=$(zoc_up)"
echo "ZOC-FIO $(grep -o 'write: IOPS=[^,]*' /tmp/fio.out | head -1) $(grep -o 'read: IOPS=[^,]*' /tmp/fio.out | head -1) $(grep -oE 'err= *[0-9]+' /tmp/fio.out | tr -d ' ' | sort -u | tr '\n' ' ')$(grep -oE 'lat \((u|m)sec\): min=[^,]*, max=[^,]*' /tmp/fio.out | head -1)"
if [ $frc != 0 ] || grep -qiE 'verify: bad|verify failed|io_u error' /tmp/fio.out; then
	zoc_fail "fio failed across the server restart (rc=$frc)"
	grep -iE 'error|bad|verify|fio:' /tmp/fio.out | head -20
fi
zoc_check_dmesg
EOF

zoc_guest_prepare
zoc_disk_create DISK disk0.img "$DISK_MB"
VB_SOCK=$ZOC_WORK/vb0.sock
CONFIG=$ZOC_WORK/zocd.json
cat >"$CONFIG" <<EOF
[
  {"method": "bdev_uring_create", "params": {"name": "d0", "filename": "$DISK"}},
  {"method": "vhost_blk_create", "params": {"name": "vb0", "socket": "$VB_SOCK", "bdev": "d0", "num_queues": 1}}
]
EOF
cp "$CONFIG" "$ZOC_ARTIFACTS/zocd.json"

server_start() {
	if [ "$ZOC_E2E_SERVER" = qsd ]; then
		zoc_qsd_start_blk d0 "$DISK" "$VB_SOCK" 1
	else
		zoc_zocd_start --config "$CONFIG"
		zoc_wait_sock "$VB_SOCK" "$ZOC_ZOCD_PID" 10 "zocd (--config $CONFIG)" "$ZOC_ZOCD_LOG"
	fi
}
server_kill9() {
	if [ "$ZOC_E2E_SERVER" = qsd ]; then zoc_qsd_kill9 d0; else zoc_zocd_kill9; fi
}
server_restart() {
	if [ "$ZOC_E2E_SERVER" = qsd ]; then
		zoc_qsd_restart d0 "$VB_SOCK"
	else
		zoc_zocd_start --config "$CONFIG"
		zoc_wait_sock "$VB_SOCK" "$ZOC_ZOCD_PID" 10 "restarted zocd (--config $CONFIG)" "$ZOC_ZOCD_LOG"
	fi
}

server_start
mapfile -t QA < <(zoc_vhost_blk_args vb0 "$VB_SOCK" 1 1)
zoc_guest_start reconnect "$ZOC_WORK/guest.sh" --timeout 300 -- "${QA[@]}"

zoc_guest_wait_line '^ZOC-FIO-START' 120 || {
	zoc_guest_wait || true
	zoc_die "the guest never started fio (report above)"
}
# The kill must land in fio's write phase. zocd: once it has served KILL_WRITES writes
# (a progress count, not a time: on a loaded machine a 3 s sleep here once took 13.7 s,
# and the kill fell into the verify phase). qsd has no counters: KILL_AFTER seconds.
if [ "$ZOC_E2E_SERVER" = qsd ]; then
	zoc_log "guest started fio; killing the server in ${KILL_AFTER} s"
	sleep "$KILL_AFTER"
else
	zoc_log "guest started fio; killing the server after ${KILL_WRITES} writes"
	T_FIO=$(zoc__now_ms)
	while :; do
		zoc_zocd_alive || zoc_die "zocd died before the kill (log: $ZOC_ZOCD_LOG)"
		n=$(zoc_stat "$(zoc_ctl device_stats --json)" vb0 write_ops) || n=0
		[ "${n:-0}" -ge "$KILL_WRITES" ] && break
		grep -aq 'ZOC-FIO-END' "$ZOC_GUEST_LOG" && break
		[ "$(( $(zoc__now_ms) - T_FIO ))" -lt 120000 ] ||
			zoc_die "zocd served ${n:-0} writes in 120 s, fewer than ${KILL_WRITES}: the guest's fio is stuck (log: $ZOC_GUEST_LOG)"
		sleep 0.1
	done
fi
if grep -aq 'ZOC-FIO-END' "$ZOC_GUEST_LOG"; then
	zoc_guest_wait || true
	zoc_die "fio finished before the kill: the test proves nothing; lower ZOC_KILL_WRITES (zocd) or ZOC_KILL_AFTER (qsd)"
fi
server_kill9
[ "$ZOC_E2E_SERVER" = qsd ] || zoc_log "zocd had served ${n} writes when it was killed"
sleep "$DOWN_FOR"
zoc_log "restarting the server (same configuration) after ${DOWN_FOR} s down"
server_restart
T_UP=$(zoc__now_ms)

zoc_guest_wait_line '^ZOC-FIO-END' 240 || true
zoc_log "guest fio ended $(zoc_elapsed "$T_UP") s after the restart"
GRC=0
zoc_guest_wait || GRC=$?
if grep -aiE 'vhost|reconnect|disconnect' "$ZOC_GUEST_LOG" | grep -v '^#' | head -5 | grep -q .; then
	zoc_log "QEMU said:"
	tr -d '\r' <"$ZOC_GUEST_LOG" | grep -aiE 'vhost|reconnect|disconnect' | grep -v '^#' | head -5 | sed 's/^/    qemu| /'
fi
[ "$GRC" = 0 ] || zoc_die "the guest's I/O did not survive the server restart (report above)"
grep -aq 'ZOC-FIO-END rc=0' "$ZOC_GUEST_LOG" || zoc_die "fio did not report success"

if [ "$ZOC_E2E_SERVER" = qsd ]; then
	zoc_log "server is qemu-storage-daemon: zocctl checks not run"
	exit 0
fi
zoc_zocd_alive || zoc_die "the restarted zocd died (log: $ZOC_ZOCD_LOG)"
STATS=$(zoc_ctl device_stats --json) || zoc_die "zocctl device_stats --json failed (above)"
printf '%s\n' "$STATS" >"$ZOC_ARTIFACTS/device_stats.json"
zoc_stats_summary "$STATS" | sed 's/^/    device_stats| /'
n=$(zoc_stat "$STATS" vb0 write_ops)
[ "${n:-0}" -gt 0 ] || zoc_die "the restarted zocd saw no writes (device_stats vb0 write_ops=${n:-absent}): did QEMU reconnect to it?"
zoc_log "host: the restarted zocd served write_ops=$n read_ops=$(zoc_stat "$STATS" vb0 read_ops)"
zoc_zocd_stop || zoc_die "zocd did not shut down cleanly (above)"
zoc_zocd_check_log
zoc_log "PASS"
