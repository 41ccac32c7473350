#!/bin/bash
# SPDX-License-Identifier: MIT
#
# nvme_vfio_user_noshm.sh - zocd's NVMe controller with client memory that is NOT shared:
# vfio-user DMA_MAP without an fd, reached only with DMA_READ / DMA_WRITE messages
# (docs/vfio-user.md "Memory without an fd", docs/nvme.md).
#
# zocd: bdev_uring_create Disk0 (a 64 MiB file), nvme_ctrlr_create nvme0, nvme_ns_add.
#
# Part 1 - a real client over the socket: tools/zoc-perf --dma-nofd puts its data buffers
#   and PRP lists in anonymous memory mapped without an fd (queues stay in its memfd) and
#   serves zocd's DMA_READ / DMA_WRITE. `--rw verify` (write every block with a pattern,
#   read back, compare): 4 KiB at QD 8 on one polled queue (PRP1 only), then 64 KiB at QD 4
#   on two queues with MSI-X eventfds and trapped doorbells (PRP lists in fd-less memory).
#   Each run must pass and must have served DMA requests (else the slow path was not used).
#   Then `--queues-nofd` too: the admin and I/O queues and the Identify buffer live in
#   fd-less memory (zocd's shadow rings, docs/nvme.md): 4 KiB at QD 8, polled; 64 KiB at
#   QD 4 on two queues with eventfds and trapped doorbells.
# Part 2 - QEMU 11.1 (Debian 13 root) with RAM that is not shared (-m, no memory backend),
#   paused (-S): its vfio-user-pci sends DMA_MAP without an fd for guest RAM; zocd lists the
#   regions (dma_regions > 0, dma_regions_mapped 0) and stays healthy. QEMU is stopped; the
#   connection ends cleanly.
# Part 4 - a Linux guest booted by that QEMU with unshared RAM (memory-backend-ram, 512 MiB,
#   1 vCPU): every queue entry, PRP list and data byte goes through DMA_READ/DMA_WRITE. Its
#   nvme driver enables the controller, /dev/nvme0n1 appears with the file's size, `nvme
#   id-ctrl` and `nvme smart-log` answer (admin data bounced), fio 4 KiB random writes
#   (16 MiB, QD 8) pass --verify=crc32c, 2 MiB of 1 MiB direct writes (PRP lists) read
#   back, a blkdiscard (DSM range list) succeeds, the guest powers off cleanly (CC.SHN) and
#   QEMU exits 0; zocd logged the fd-less queues.
# Part 3 - the controller comes back for the next client: a short zoc-perf verify (shared
#   memory). zocd_shutdown exits 0; no sanitizer report, no crash in zocd's log.
#
# Skips (77) only when the machine cannot provide the Debian 13 root (part 2), after
# parts 1 and 3 have passed.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/guest.sh"
zoc_init

ZOC_PERF=${ZOC_PERF:-$ZOC_BUILD/tools/zoc-perf/zoc-perf}
[ -x "$ZOC_PERF" ] || zoc_die "zoc-perf not built ($ZOC_PERF missing): run 'make build'"
DISK_MB=64

zoc_disk_create DISK disk0.img "$DISK_MB"
NVME_SOCK=$ZOC_WORK/nvme0.sock
zoc_zocd_start
zoc_ctl bdev_uring_create name=Disk0 filename="$DISK" >/dev/null || zoc_die "bdev_uring_create failed (above)"
zoc_ctl nvme_ctrlr_create name=nvme0 socket="$NVME_SOCK" >/dev/null || zoc_die "nvme_ctrlr_create failed (above)"
zoc_ctl nvme_ns_add ctrlr=nvme0 bdev=Disk0 >/dev/null || zoc_die "nvme_ns_add failed (above)"
zoc_wait_sock "$NVME_SOCK" "$ZOC_ZOCD_PID" 10 zocd "$ZOC_ZOCD_LOG"

# perf NAME ARGS...: zoc-perf verify; fails the test on an error; prints the output.
perf() {
	local name=$1 out rc=0
	shift
	out=$(timeout -k 5 120 "$ZOC_PERF" nvme --socket "$NVME_SOCK" --rw verify --size-mb 16 \
		--timeout-ms 20000 "$@" 2>&1) || rc=$?
	printf '%s\n' "$out" >"$ZOC_ARTIFACTS/zoc-perf-$name.log"
	printf '%s\n' "$out" | sed "s/^/    $name| /"
	[ $rc = 0 ] || zoc_die "zoc-perf $name ($*) failed with status $rc (output above; zocd log: $ZOC_ZOCD_LOG)"
	zoc_zocd_alive || zoc_die "zocd died during zoc-perf $name (log: $ZOC_ZOCD_LOG)"
	PERF_OUT=$out
}

# served: the number of DMA requests zoc-perf served in the last run.
served() { printf '%s\n' "$PERF_OUT" | sed -n 's/.* without an fd: \([0-9]*\) DMA_READ.*/\1/p'; }

# ---- part 1: a real client with its data in fd-less memory
zoc_log "part 1: zoc-perf --dma-nofd --rw verify (data and PRP lists without an fd)"
perf nofd-4k --dma-nofd --bs 4096 --qd 8 --time 3
n=$(served)
[ -n "$n" ] && [ "$n" -gt 0 ] || zoc_die "zoc-perf nofd-4k served no DMA_READ/DMA_WRITE: zocd did not use the slow path (or zoc-perf lacks --dma-nofd)"
zoc_log "part 1a ok: 4 KiB verify through DMA_READ/DMA_WRITE ($n requests served)"
perf nofd-64k --dma-nofd --bs 65536 --qd 4 --queues 2 --irq eventfd --no-mmap --time 3
n=$(served)
[ -n "$n" ] && [ "$n" -gt 0 ] || zoc_die "zoc-perf nofd-64k served no DMA_READ/DMA_WRITE"
zoc_log "part 1b ok: 64 KiB verify, PRP lists without an fd, 2 queues, eventfds ($n requests served)"
perf nofdq-4k --dma-nofd --queues-nofd --bs 4096 --qd 8 --time 3
n=$(served)
[ -n "$n" ] && [ "$n" -gt 0 ] || zoc_die "zoc-perf nofdq-4k served no DMA_READ/DMA_WRITE"
zoc_log "part 1c ok: 4 KiB verify with the queues in fd-less memory too ($n requests served)"
perf nofdq-64k --dma-nofd --queues-nofd --bs 65536 --qd 4 --queues 2 --irq eventfd --no-mmap --time 3
n=$(served)
[ -n "$n" ] && [ "$n" -gt 0 ] || zoc_die "zoc-perf nofdq-64k served no DMA_READ/DMA_WRITE"
zoc_log "part 1d ok: 64 KiB verify, queues in fd-less memory, 2 queues, eventfds, trapped doorbells ($n requests served)"

# ---- part 3 first (no root needed): the controller is back for a client with shared memory
zoc_log "part 3: the next client (shared memory) gets the controller back"
perf shared --bs 4096 --qd 8 --time 2
zoc_log "part 3 ok"

# ---- part 2: QEMU 11.1 with unshared RAM sends DMA_MAP without an fd
zoc_log "part 2: QEMU 11.1 with unshared RAM (-m 128M, no memory backend), paused"
zoc_guest_use_root
QLOG=$ZOC_ARTIFACTS/qemu-noshm.log
LOG_MARK=$(wc -l <"$ZOC_ZOCD_LOG")
"$ZOC_ROOT/scripts/trixie-root.sh" run --share "$ZOC_WORK" -- qemu-system-x86_64 \
	-accel tcg -machine q35 -m 128M -S -nodefaults -no-user-config -display none \
	-monitor none -serial none \
	-device "{\"driver\": \"vfio-user-pci\", \"id\": \"nvme0\", \"socket\": {\"path\": \"$(zoc_guest_path "$NVME_SOCK")\", \"type\": \"unix\"}}" \
	</dev/null >"$QLOG" 2>&1 &
QPID=$!
zoc_track "$QPID"
info=""
for _ in $(seq 100); do
	kill -0 "$QPID" 2>/dev/null || { cat "$QLOG"; zoc_die "QEMU exited early (log above: $QLOG)"; }
	info=$(zoc_ctl device_list --json) || zoc_die "device_list failed (above)"
	regions=$(printf '%s\n' "$info" | jq '[.[] | select(.name == "nvme0") | .link.dma_regions // 0] | first')
	[ "${regions:-0}" -ge 2 ] && break
	sleep 0.2
done
printf '%s\n' "$info" >"$ZOC_ARTIFACTS/device_list-qemu-noshm.json"
mapped=$(printf '%s\n' "$info" | jq '[.[] | select(.name == "nvme0") | .link.dma_regions_mapped // 0] | first')
connected=$(printf '%s\n' "$info" | jq '[.[] | select(.name == "nvme0") | .link.connected] | first')
zoc_log "zocd sees QEMU: connected=$connected dma_regions=$regions dma_regions_mapped=$mapped"
[ "$connected" = true ] || zoc_die "QEMU did not connect to $NVME_SOCK (QEMU log: $QLOG, zocd log: $ZOC_ZOCD_LOG)"
[ "${regions:-0}" -ge 2 ] || zoc_die "QEMU mapped ${regions:-0} DMA regions within 20 s (expected RAM and ROM maps)"
[ "$mapped" = 0 ] || zoc_die "$mapped of QEMU's DMA maps carried an fd: the guest RAM was shared after all?"
tail -n +"$((LOG_MARK + 1))" "$ZOC_ZOCD_LOG" >"$ZOC_ARTIFACTS/zocd-during-qemu.log"
grep -q 'has no fd: devices reach it through DMA_READ/DMA_WRITE' "$ZOC_ARTIFACTS/zocd-during-qemu.log" ||
	zoc_die "zocd did not log QEMU's fd-less DMA maps (log: $ZOC_ZOCD_LOG)"
grep 'has no fd' "$ZOC_ARTIFACTS/zocd-during-qemu.log" | sed 's/^[0-9:.]* INFO *\[[0-9]*\] //; s|/[^ :]*\.sock|SOCK|' | sort -u | sed 's/^/    zocd| /'
kill -TERM "$QPID" 2>/dev/null || true
wait "$QPID" 2>/dev/null || true
zoc_untrack "$QPID"
for _ in $(seq 50); do
	c=$(zoc_ctl device_list --json | jq '[.[] | select(.name == "nvme0") | .link.connected] | first')
	[ "$c" = false ] && break
	sleep 0.1
done
[ "$c" = false ] || zoc_die "zocd still lists QEMU's connection 5 s after QEMU exited"
zoc_zocd_alive || zoc_die "zocd died while QEMU was attached (log: $ZOC_ZOCD_LOG)"
zoc_log "part 2 ok: QEMU 11.1 maps unshared RAM without an fd; zocd stays healthy"

perf after-qemu --bs 4096 --qd 4 --time 1

# ---- part 4: a Linux guest with unshared RAM uses the controller
zoc_log "part 4: a Linux guest (QEMU 11.1, unshared RAM) drives the controller through messages"
cat >"$ZOC_WORK/guest.sh" <<'EOF'
if ! zoc_wait_blk nvme0n1 90; then
	zoc_fail "no /dev/nvme0n1 90 s after boot: the nvme driver did not bring the namespace up"
	for c in /sys/class/nvme/nvme*; do [ -e "$c" ] && echo "ZOC-DEBUG $c state=$(cat $c/state 2>/dev/null)"; done
	dmesg | grep -iE 'nvme|vfio' | tail -30 | sed 's/^/ZOC-DEBUG dmesg /'
	exit 1
fi
C=/sys/class/nvme/nvme0
size=$(blockdev --getsize64 /dev/nvme0n1)
echo "ZOC-NVME up uptime=$(zoc_up) state=$(cat $C/state) model='$(cat $C/model | sed 's/ *$//')' size=$size mq=$(ls /sys/block/nvme0n1/mq | wc -l)"
[ "$size" = $((DISK_MB * 1048576)) ] || zoc_fail "/dev/nvme0n1 is $size bytes, expected $((DISK_MB * 1048576))"
if nvme id-ctrl /dev/nvme0 >/tmp/idctrl 2>&1; then
	echo "ZOC-ID-CTRL $(grep -E '^(vid|mn|mdts|nn) ' /tmp/idctrl | tr -s ' ' | tr '\n' ' ')"
else
	zoc_fail "nvme id-ctrl failed: $(head -3 /tmp/idctrl)"
fi
nvme smart-log /dev/nvme0 >/tmp/smart 2>&1 || zoc_fail "nvme smart-log failed: $(head -3 /tmp/smart)"
fio --name=noshm --filename=/dev/nvme0n1 --rw=randwrite --bs=4k --iodepth=8 --ioengine=libaio \
	--direct=1 --verify=crc32c --do_verify=1 --size=16M >/tmp/fio 2>&1
frc=$?
echo "ZOC-FIO rc=$frc uptime=$(zoc_up) $(grep -o 'write: IOPS=[^,]*' /tmp/fio | head -1) $(grep -o 'read: IOPS=[^,]*' /tmp/fio | head -1)"
if [ $frc != 0 ] || grep -qiE 'verify: bad|crc32c: verify failed|io_u error' /tmp/fio; then
	zoc_fail "fio randwrite + crc32c verify (16 MiB, QD 8) failed (rc=$frc)"
	grep -iE 'error|bad|verify|fio:' /tmp/fio | head -20
fi
# 2 MiB at 40 MiB in 1 MiB direct writes (128 KiB commands: PRP lists in unshared memory),
# read back; then a discard (DSM range list in unshared memory)
dd if=/dev/urandom of=/tmp/pat bs=1M count=2 2>/dev/null
want=$(md5sum </tmp/pat | cut -d' ' -f1)
dd if=/tmp/pat of=/dev/nvme0n1 bs=1M seek=40 oflag=direct 2>/tmp/dd.err || zoc_fail "dd write: $(cat /tmp/dd.err)"
got=$(dd if=/dev/nvme0n1 bs=1M skip=40 count=2 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
echo "ZOC-PATTERN want=$want got=$got"
[ "$got" = "$want" ] || zoc_fail "2 MiB written with 1 MiB direct writes read back as md5 $got, expected $want"
if blkdiscard -o $((48 << 20)) -l $((1 << 20)) /dev/nvme0n1 2>/tmp/bd.err; then
	echo "ZOC-DISCARD ok"
else
	zoc_fail "blkdiscard of 1 MiB failed: $(cat /tmp/bd.err)"
fi
zoc_check_dmesg
if dmesg | grep -iE 'nvme' | grep -iE 'timeout|abort|controller is down|failed|Removing after|Device not ready|I/O [0-9]+ QID'; then
	zoc_fail "the nvme driver logged trouble (lines above)"
fi
echo "ZOC-POWEROFF uptime=$(zoc_up)"
EOF
# shellcheck disable=SC2034 # read by lib/guest.sh
ZOC_GUEST_BINS=nvme
# shellcheck disable=SC2034 # read by lib/guest.sh
ZOC_GUEST_MEM_SHARED=0
# shellcheck disable=SC2034 # read by lib/guest.sh
ZOC_GUEST_MEM_MB=512
# shellcheck disable=SC2034 # read by lib/guest.sh
ZOC_GUEST_APPEND="loglevel=5"
zoc_guest_prepare
LOG_MARK=$(wc -l <"$ZOC_ZOCD_LOG")
DEV_ARGS=(-device "{\"driver\": \"vfio-user-pci\", \"id\": \"nvme0\", \"socket\": {\"path\": \"$(zoc_guest_path "$NVME_SOCK")\", \"type\": \"unix\"}}")
rc=0
zoc_guest_run noshm "$ZOC_WORK/guest.sh" --smp 1 --timeout 240 --env DISK_MB=$DISK_MB -- "${DEV_ARGS[@]}" || rc=$?
tail -n +"$((LOG_MARK + 1))" "$ZOC_ZOCD_LOG" >"$ZOC_ARTIFACTS/zocd-during-guest.log"
[ $rc = 0 ] || zoc_die "the guest with unshared RAM failed (reasons above; console: $ZOC_GUEST_LOG; zocd log: $ZOC_ARTIFACTS/zocd-during-guest.log)"
if tr -d '\r' <"$ZOC_GUEST_LOG" | sed -n '/ZOC-POWEROFF/,$p' | grep -aiE 'nvme|shutdown|timeout'; then
	zoc_die "the guest's power-off was not clean (console lines above, after ZOC-POWEROFF; full: $ZOC_GUEST_LOG)"
fi
grep -aq 'reboot: Power down' "$ZOC_GUEST_LOG" ||
	zoc_die "the console has no 'reboot: Power down' line: the guest did not power off by itself (full: $ZOC_GUEST_LOG)"
grep -q 'served through copies' "$ZOC_ARTIFACTS/zocd-during-guest.log" ||
	zoc_die "zocd did not log queues in fd-less memory: was the guest's RAM shared after all? (log: $ZOC_ARTIFACTS/zocd-during-guest.log)"
zoc_zocd_alive || zoc_die "zocd died while the guest ran (log: $ZOC_ZOCD_LOG)"
zoc_log "part 4 ok: the guest's nvme driver used the controller through messages; fio verify passed; clean power-off"

zoc_zocd_stop || zoc_die "zocd did not shut down cleanly (above)"
zoc_zocd_check_log
zoc_log "PASS"
