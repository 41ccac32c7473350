#!/bin/bash
# SPDX-License-Identifier: MIT
#
# demo.sh (make demo) - ZOC in one minute:
#   1. install what is missing, build
#   2. start zocd with two vhost-user-blk devices: vb0 on an io_uring file bdev
#      (256 MiB on disk), vb1 on a null bdev (1 GiB)
#   3. boot a Linux guest (QEMU, TCG) with both; show its disks and run fio
#      (4k random read and write, QD 32) on each
#   4. print the figures and zocd's own per-device stats, shut everything down
#
# Environment: DEMO_RUNTIME=5 (seconds per fio run), ZOC_E2E_SERVER=qsd (serve the
# disks with qemu-storage-daemon instead, for comparison), and those of
# tests/e2e/lib/guest.sh. In-guest figures are bound by the emulated (TCG) CPU: they
# show that the path works, not how fast zocd is (bench/ measures that).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO_RUNTIME=${DEMO_RUNTIME:-5}

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
"$ROOT/scripts/deps.sh"
step "build"
make -C "$ROOT" --no-print-directory build-main

export ZOC_ARTIFACTS=${ZOC_ARTIFACTS:-$ROOT/build/demo-logs}
. "$ROOT/tests/e2e/lib/guest.sh"
zoc_init demo

step "guest kernel and initramfs"
zoc_guest_prepare

step "devices"
zoc_disk_create DISK disk0.img 256
VB0=$ZOC_WORK/vb0.sock
VB1=$ZOC_WORK/vb1.sock
if [ "$ZOC_E2E_SERVER" = qsd ]; then
	zoc_qsd_start_blk d0 "$DISK" "$VB0" 1
	zoc_qsd_start_blk n0 null:1024 "$VB1" 1
else
	zoc_zocd_start
	zoc_ctl bdev_uring_create name=d0 filename="$DISK" >/dev/null || zoc_die "bdev_uring_create failed (above)"
	zoc_ctl bdev_null_create name=n0 size_mb=1024 block_size=512 >/dev/null || zoc_die "bdev_null_create failed (above)"
	zoc_ctl vhost_blk_create name=vb0 socket="$VB0" bdev=d0 num_queues=1 >/dev/null || zoc_die "vhost_blk_create vb0 failed (above)"
	zoc_ctl vhost_blk_create name=vb1 socket="$VB1" bdev=n0 num_queues=1 >/dev/null || zoc_die "vhost_blk_create vb1 failed (above)"
	zoc_wait_sock "$VB0" "$ZOC_ZOCD_PID" 10 zocd "$ZOC_ZOCD_LOG"
	zoc_wait_sock "$VB1" "$ZOC_ZOCD_PID" 10 zocd "$ZOC_ZOCD_LOG"
	echo "\$ zocctl bdev_list"
	zoc_ctl bdev_list || true
	echo "\$ zocctl device_list"
	zoc_ctl device_list || true
fi

cat >"$ZOC_WORK/guest.sh" <<'EOF'
for d in vda vdb; do
	zoc_wait_blk $d 30 || { zoc_fail "no /dev/$d after 30 s"; exit 1; }
done
for d in vda vdb; do
	q=/sys/block/$d/queue
	echo "ZOC-LSBLK $d $(blockdev --getsize64 /dev/$d) $(ls /sys/block/$d/mq | wc -l) $(cat $q/logical_block_size) $(cat $q/discard_max_bytes) $(cat $q/write_cache | tr ' ' '-')"
done
# terse (v3) fields: read iops 8, lat mean 40, clat p50 24, p99 30; write iops 49, lat mean 81, p50 65, p99 71
for d in vda vdb; do
	for rw in randread randwrite; do
		out=$(fio --name=demo --filename=/dev/$d --rw=$rw --bs=4k --iodepth=32 --ioengine=libaio --direct=1 \
			--runtime=$RT --time_based --minimal 2>/tmp/fio.err)
		if [ $? != 0 ] || [ -z "$out" ]; then zoc_fail "fio $rw on /dev/$d failed: $(tail -2 /tmp/fio.err)"; continue; fi
		if [ $rw = randread ]; then f="8 40 24 30"; else f="49 81 65 71"; fi
		echo "$out" | awk -F';' -v d=$d -v rw=$rw -v f="$f" 'BEGIN{split(f, i, " ")}
			{ p50=$(i[3]); sub(/.*=/, "", p50); p99=$(i[4]); sub(/.*=/, "", p99);
			  printf "ZOC-PERF %s %s %d %.0f %s %s err=%s\n", d, rw, $(i[1]), $(i[2]), p50, p99, $5 }'
	done
done
EOF

step "guest: QEMU (TCG) with vb0 and vb1 as vhost-user-blk-pci"
mapfile -t QA0 < <(zoc_vhost_blk_args vb0 "$VB0" 1)
mapfile -t QA1 < <(zoc_vhost_blk_args vb1 "$VB1" 1)
zoc_guest_run demo "$ZOC_WORK/guest.sh" --timeout 300 --env RT="$DEMO_RUNTIME" -- "${QA0[@]}" "${QA1[@]}" >"$ZOC_WORK/guest.out" ||
	{ cat "$ZOC_WORK/guest.out"; zoc_die "the demo guest failed (above)"; }
grep -v 'guest|' "$ZOC_WORK/guest.out" || true

step "results"
RES=$(zoc_guest_results)
echo "Guest disks (virtio-blk, served by $ZOC_E2E_SERVER over vhost-user):"
printf '  %-5s %-22s %8s %7s %8s %13s  %s\n' disk backend size queues "block" discard_max cache
while read -r _ d bytes q lbs dmax wc; do
	case $d in vda) be="vb0: io_uring file" ;; vdb) be="vb1: null" ;; *) be="?" ;; esac
	printf '  %-5s %-22s %7dM %7s %8s %13s  %s\n' "$d" "$be" $((bytes >> 20)) "$q" "$lbs" "$dmax" "${wc//-/ }"
done < <(grep '^ZOC-LSBLK' <<<"$RES")
echo
echo "fio in the guest: 4k, QD 32, libaio, O_DIRECT, ${DEMO_RUNTIME} s each (TCG guest: CPU-bound, not a benchmark):"
printf '  %-5s %-10s %9s %14s %12s %12s\n' disk workload IOPS "avg lat (us)" "p50 (us)" "p99 (us)"
while read -r _ d rw iops lat p50 p99 _; do
	printf '  %-5s %-10s %9s %14s %12s %12s\n' "$d" "$rw" "$iops" "$lat" "$p50" "$p99"
done < <(grep '^ZOC-PERF' <<<"$RES")
if grep -q '^ZOC-FAIL' <<<"$RES"; then grep '^ZOC-FAIL' <<<"$RES"; fi

if [ "$ZOC_E2E_SERVER" != qsd ]; then
	echo
	echo "zocd's own counters (zocctl device_stats --json, per queue; server-side latency):"
	STATS=$(zoc_ctl device_stats --json) || true
	printf '%s\n' "$STATS" >"$ZOC_ARTIFACTS/device_stats.json"
	zoc_stats_summary "$STATS" | sed 's/^/  /'
	step "shutdown"
	zoc_zocd_stop || zoc_die "zocd did not shut down cleanly (above)"
fi
step "done (logs in $ZOC_ARTIFACTS)"
