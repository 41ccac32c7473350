#!/bin/bash
# SPDX-License-Identifier: MIT
#
# vhost_blk_guest.sh - a Linux guest's virtio-blk driver against zocd's vhost-user-blk,
# backed by an io_uring file bdev (256 MiB on disk).
#
# Boot 1 (1 queue):  /dev/vda has the right size, write cache and discard; fio 4k random
#                    writes at QD 32 (64 MiB; 16 in the ASan pass) then crc32c verify; flushes (dd conv=fsync,
#                    fio fsync) and a discard reach the device (guest disk stats); a 1 MiB
#                    pattern is written, and the host finds it in the backing file.
# Boot 2 (2 queues): a new connection to the same device, -smp 2: /sys/block/vda/mq has
#                    2 entries; fio with one job per CPU (both queues) writes and verifies;
#                    the pattern of boot 1 reads back.
# zocd runs two reactors in interrupt mode when there are two CPUs; the two queues must
# land on different reactors.
# Host: zocctl device_stats shows the I/O (reads, writes, flushes, discards), device_delete
# removes the device, zocd_shutdown stops zocd cleanly.
#
# ZOC_E2E_SERVER=qsd runs the same guest side against qemu-storage-daemon (no zocctl checks).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/guest.sh"
zoc_init

DISK_MB=256
PAT_MB=200 # pattern offset (MiB), outside what fio and the discard touch
# fio size of boot 1 (MiB); the runner's ASan pass (ZOC_E2E_PASS=asan) writes less: the
# same server paths, a quarter of the guest time.
FIO_MB=64
[ "${ZOC_E2E_PASS:-}" = asan ] && FIO_MB=16

cat >"$ZOC_WORK/guest.sh" <<'EOF'
if ! zoc_wait_blk vda 30; then
	zoc_fail "no /dev/vda 30 s after boot: the virtio-blk device did not come up (see the console log and the server log)"
	ls /sys/bus/virtio/devices/ 2>&1
	exit 1
fi
q=$(ls /sys/block/vda/mq | wc -l)
size=$(blockdev --getsize64 /dev/vda)
wc=$(cat /sys/block/vda/queue/write_cache)
dmax=$(cat /sys/block/vda/queue/discard_max_bytes)
echo "ZOC-BLK size=$size queues=$q write_cache='$wc' discard_max_bytes=$dmax lbs=$(cat /sys/block/vda/queue/logical_block_size) cache_type='$(cat /sys/block/vda/cache_type 2>/dev/null)' features=$(cat /sys/block/vda/device/features) uptime=$(zoc_up)"
[ "$size" = $((DISK_MB * 1048576)) ] || zoc_fail "/dev/vda is $size bytes, expected $((DISK_MB * 1048576))"
[ "$q" = "$NQ" ] || zoc_fail "/sys/block/vda/mq has $q entries, expected $NQ (num-queues=$NQ, $(nproc) CPUs)"

# fio: 4k random writes at QD 32, then read back and check crc32c of every block.
run_fio() { # name, extra args...
	n=$1; shift
	fio --name="$n" --filename=/dev/vda --rw=randwrite --bs=4k --iodepth=32 --ioengine=libaio \
		--direct=1 --verify=crc32c --do_verify=1 --group_reporting "$@" >/tmp/fio.$n 2>&1
	frc=$?
	echo "ZOC-FIO $n rc=$frc $(grep -o 'write: IOPS=[^,]*' /tmp/fio.$n | head -1) $(grep -o 'read: IOPS=[^,]*' /tmp/fio.$n | head -1) $(grep -oE 'err= *[0-9]+' /tmp/fio.$n | tr -d ' ' | sort -u | tr '\n' ' ')"
	if [ $frc != 0 ] || grep -qiE 'verify: bad|crc32c: verify failed|io_u error' /tmp/fio.$n; then
		zoc_fail "fio $n failed (rc=$frc): random write + crc32c verify"
		grep -iE 'error|bad|verify|fio:' /tmp/fio.$n | head -20
	fi
}

if [ "$PHASE" = 1 ]; then
	run_fio randwrite-verify --size=${FIO_MB}M
	if [ "$wc" != "write back" ] && [ -w /sys/block/vda/cache_type ]; then
		# VIRTIO_BLK_F_CONFIG_WCE: the guest may turn the write cache on (config space wce).
		echo "write back" >/sys/block/vda/cache_type 2>/dev/null
		wc=$(cat /sys/block/vda/queue/write_cache)
		echo "ZOC-WCE guest set cache_type to 'write back': write_cache now '$wc'"
	fi
	[ "$wc" = "write back" ] || zoc_fail "write_cache is '$wc', expected 'write back': the device does not offer VIRTIO_BLK_F_FLUSH, so the guest never sends flushes"
	# Flushes: dd with fsync and fio with fsync; the disk stats' flush count must grow.
	f0=$(awk '{print $16}' /sys/block/vda/stat)
	dd if=/dev/urandom of=/dev/vda bs=4096 count=64 seek=$((96 * 256)) oflag=direct conv=fsync 2>/tmp/dd.err ||
		{ zoc_fail "dd conv=fsync to /dev/vda failed: $(cat /tmp/dd.err)"; }
	fio --name=flush --filename=/dev/vda --rw=write --bs=4k --size=1M --offset=100M --ioengine=psync \
		--direct=1 --fsync=8 >/tmp/fio.flush 2>&1 || zoc_fail "fio with fsync=8 failed: $(tail -3 /tmp/fio.flush)"
	f1=$(awk '{print $16}' /sys/block/vda/stat)
	echo "ZOC-FLUSH flushes=$((f1 - f0))"
	[ $((f1 - f0)) -gt 0 ] || zoc_fail "no flush reached /dev/vda (disk stats flush count $f0 -> $f1)"
	# Discard 64 MiB at 128 MiB.
	[ "$dmax" -gt 0 ] || zoc_fail "discard_max_bytes is 0: the device does not offer VIRTIO_BLK_F_DISCARD"
	d0=$(awk '{print $12}' /sys/block/vda/stat)
	if blkdiscard -o $((128 << 20)) -l $((64 << 20)) /dev/vda 2>/tmp/discard.err; then
		d1=$(awk '{print $12}' /sys/block/vda/stat)
		echo "ZOC-DISCARD ok requests=$((d1 - d0))"
		[ $((d1 - d0)) -gt 0 ] || zoc_fail "blkdiscard returned 0 but no discard reached /dev/vda"
	else
		zoc_fail "blkdiscard -o 128M -l 64M /dev/vda failed: $(cat /tmp/discard.err)"
	fi
	# A pattern for the host (backing file) and for boot 2.
	dd if=/dev/urandom of=/tmp/pat bs=1M count=1 2>/dev/null
	dd if=/tmp/pat of=/dev/vda bs=1M seek=$PAT_MB oflag=direct conv=fsync 2>/tmp/dd.err ||
		zoc_fail "writing the pattern failed: $(cat /tmp/dd.err)"
	echo "ZOC-PATTERN md5=$(md5sum </tmp/pat | cut -d' ' -f1)"
else
	# Two jobs, one per CPU, so both virtqueues carry I/O.
	run_fio two-queues --size=16M --numjobs=2 --offset_increment=32M --cpus_allowed=0,1 --cpus_allowed_policy=split
	got=$(dd if=/dev/vda bs=1M skip=$PAT_MB count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
	echo "ZOC-PATTERN readback md5=$got"
	[ "$got" = "$PAT_MD5" ] || zoc_fail "pattern written in boot 1 reads back as md5 $got, expected $PAT_MD5"
fi

zoc_check_dmesg
EOF

zoc_guest_prepare
zoc_disk_create DISK disk0.img "$DISK_MB"
VB_SOCK=$ZOC_WORK/vb0.sock

if [ "$ZOC_E2E_SERVER" = qsd ]; then
	zoc_qsd_start_blk d0 "$DISK" "$VB_SOCK" 2
else
	# Two reactors when there are two CPUs, so the two queues of boot 2 live on
	# different reactors (one shares its CPU with QEMU: interrupt mode).
	if [[ $ZOC_ZOCD_CPU != *,* ]] && [ "$(zoc__cpus | wc -l)" -ge 2 ]; then
		ZOC_ZOCD_CPU=$(zoc__cpus | head -2 | paste -sd,)
		ZOC_ZOCD_MODE=(--interrupt-mode)
	fi
	zoc_zocd_start
	zoc_ctl bdev_uring_create name=d0 filename="$DISK" >/dev/null || zoc_die "bdev_uring_create failed (above)"
	zoc_ctl vhost_blk_create name=vb0 socket="$VB_SOCK" bdev=d0 num_queues=2 >/dev/null ||
		zoc_die "vhost_blk_create failed (above)"
	zoc_wait_sock "$VB_SOCK" "$ZOC_ZOCD_PID" 10 zocd "$ZOC_ZOCD_LOG"
	zoc_log "zocd serves vb0 (io_uring file $DISK, ${DISK_MB} MiB) on $VB_SOCK"
fi

# ---- boot 1: one queue
mapfile -t QA < <(zoc_vhost_blk_args vb0 "$VB_SOCK" 1)
zoc_guest_run boot1-1queue "$ZOC_WORK/guest.sh" --timeout 240 \
	--env PHASE=1 --env NQ=1 --env DISK_MB=$DISK_MB --env PAT_MB=$PAT_MB --env FIO_MB=$FIO_MB -- "${QA[@]}" ||
	zoc_die "boot 1 (num-queues=1) failed (reasons above)"
PAT_MD5=$(zoc_guest_results | awk '/^ZOC-PATTERN md5=/{sub("md5=","",$2); print $2; exit}')
[ -n "$PAT_MD5" ] || zoc_die "boot 1 did not report its pattern's md5"
HOST_MD5=$(dd if="$DISK" bs=1M skip=$PAT_MB count=1 2>/dev/null | md5sum | cut -d' ' -f1)
[ "$HOST_MD5" = "$PAT_MD5" ] ||
	zoc_die "the backing file holds md5 $HOST_MD5 at ${PAT_MB} MiB, the guest wrote $PAT_MD5: writes did not reach the file"
zoc_log "host: the guest's pattern is in the backing file at ${PAT_MB} MiB (md5 $HOST_MD5)"

# ---- boot 2: two queues, a new connection to the same device
mapfile -t QA < <(zoc_vhost_blk_args vb0 "$VB_SOCK" 2)
zoc_guest_run boot2-2queues "$ZOC_WORK/guest.sh" --smp 2 --timeout 240 \
	--env PHASE=2 --env NQ=2 --env DISK_MB=$DISK_MB --env PAT_MB=$PAT_MB --env PAT_MD5="$PAT_MD5" -- "${QA[@]}" ||
	zoc_die "boot 2 (num-queues=2, smp 2) failed (reasons above)"

# ---- host side
if [ "$ZOC_E2E_SERVER" = qsd ]; then
	zoc_log "server is qemu-storage-daemon: zocctl device_stats / device_delete checks not run"
	exit 0
fi
zoc_zocd_alive || zoc_die "zocd died while the guests ran (log: $ZOC_ZOCD_LOG)"
STATS=$(zoc_ctl device_stats --json) || zoc_die "zocctl device_stats --json failed (above)"
printf '%s\n' "$STATS" >"$ZOC_ARTIFACTS/device_stats.json"
zoc_stats_summary "$STATS" | sed 's/^/    device_stats| /'
for k in write_ops read_ops flush_ops discard_ops; do
	n=$(zoc_stat "$STATS" vb0 "$k")
	[ -n "$n" ] || zoc_die "device_stats --json has no total \"$k\" for vb0 (saved in $ZOC_ARTIFACTS/device_stats.json)"
	[ "$n" -gt 0 ] || zoc_die "device_stats says vb0 $k=0 after the guests' I/O (saved in $ZOC_ARTIFACTS/device_stats.json)"
done
for k in errors invalid; do
	n=$(zoc_stat "$STATS" vb0 "$k")
	[ "${n:-0}" = 0 ] || zoc_die "device_stats says vb0 $k=$n: the guest's requests should all have succeeded"
done
n=$(zoc_stat "$STATS" vb0 write_ops 1)
[ "${n:-0}" -gt 0 ] || zoc_die "queue 1 of vb0 saw no writes (write_ops=${n:-absent}) although the guest ran one fio job per CPU on 2 queues"
if [[ $ZOC_ZOCD_CPU == *,* ]]; then
	r0=$(zoc_stat "$STATS" vb0 reactor 0) r1=$(zoc_stat "$STATS" vb0 reactor 1)
	[ -n "$r0" ] && [ "$r0" != "$r1" ] ||
		zoc_die "queues 0 and 1 of vb0 ran on reactors '$r0' and '$r1': zocd has two reactors, they should differ"
	zoc_log "host: queue 0 ran on reactor $r0, queue 1 on reactor $r1"
fi
zoc_log "host: device_stats shows reads, writes, flushes and discards, and I/O on both queues"
zoc_ctl device_delete name=vb0 >/dev/null || zoc_die "device_delete name=vb0 failed (above)"
LIST=$(zoc_ctl device_list --json) || zoc_die "device_list failed after device_delete (above)"
if grep -q '"vb0"' <<<"$LIST"; then zoc_die "device_list still shows vb0 after device_delete: $LIST"; fi
[ ! -S "$VB_SOCK" ] || zoc_log "note: $VB_SOCK still exists after device_delete"
zoc_log "host: device_delete removed vb0"
zoc_zocd_stop || zoc_die "zocd did not shut down cleanly (above)"
zoc_zocd_check_log
zoc_log "PASS"
