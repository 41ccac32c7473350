#!/bin/bash
# SPDX-License-Identifier: MIT
#
# vbus_nvme.sh - the Virtual Bus (kernel/vbus/zoc-vbus.ko) in a TCG guest that plays the
# bare-metal host: booted with memmap=16M$0x18000000 (the BAR window), the module built
# here against linux-headers-<guest kernel> and loaded with that window.
#
# Part 1, without zocd: kernel/vbus/tools/zoc_vbus_probe drives /dev/zoc-vbus directly:
#   - hostile: bad CREATE images, BAR sizes, vector counts, DMA pool sizes, pointers, irq
#     fds, config stores and mmaps are refused with the documented errno, no oops;
#   - nvme: an NVMe-looking function (zocd's IDs and class, BAR0 16 KiB 64-bit, MSI-X in
#     BAR4) is created and started; lspci shows it in the module's private PCI domain, the
#     kernel's nvme driver binds, enables MSI-X (the config write reaches user space
#     through the event ring; the kernel's MSI message is in the table), programs the
#     admin queue with bus addresses inside the per-function DMA pool (the module's
#     bounce DMA ops) and sets CC.EN; a signal on a masked vector sets its PBA bit; the
#     probe sets CSTS.RDY, reads the driver's Identify from the SQ in the pool, posts an
#     Internal Error completion and signals vector 0's eventfd: the module sends the MSI
#     as an IPI, the driver's handler consumes the entry (CQ head doorbell 1, "Identify
#     Controller failed (6)") and gives up; REMOVE takes the function off the bus;
#   - the function is created again (second run), then the module is unloaded and loaded
#     again and the nvme run repeated; dmesg must show no oops, BUG or WARNING;
#   - revoke: BAR0 and the DMA pool mapped; UNPLUG keeps the mappings, REMOVE revokes
#     them: stores and loads get SIGBUS, also after a new function took the same window.
# Part 2, zocd inside the guest (its binaries and libraries copied in; one reactor, in
#   interrupt mode unless ZOC_VBUS_ZOCD_MODE=poll): bdev_uring_create on
#   a tmpfs file, nvme_ctrlr_create transport=vbus, nvme_ns_add: /dev/nvme0n1 appears with the
#   file's size, `nvme id-ctrl` answers (vid 5a4f), fio 4k random writes + crc32c verify
#   pass, a controller reset (reset_controller) comes back live and the data verifies
#   (with polling reactors the controller offers Doorbell Buffer Config and the driver's
#   shadow doorbells in its own memory carry the I/O queues' doorbells: checked);
#   a Function Level Reset from sysfs (reset_method must offer flr; the module restores
#   its config image and holds the host until zocd reset the controller) is followed by
#   nvme id-ctrl and a short fio verify; device_delete removes the function
#   (/dev/nvme0n1 goes), a second nvme_ctrlr_create brings it back and the data still
#   verifies; zocd_shutdown.
# Part 3, zocd again with polling reactors (Doorbell Buffer Config in use):
#   ZOC_VBUS_LOOPS (default 3, 2 in the ASan pass) device_delete + re-create rounds, each up within 20 s
#   with the data readable, an FLR, no nvme timeout in dmesg; then zocd is killed
#   (SIGKILL) under fio: the module turns the function into a surprise-removed one
#   (reads all ones) and removes it; the driver gives up, fio ends, no hung task or
#   oops; the module still unloads.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/guest.sh"
zoc_init

WIN_BASE=0x18000000
# ZOC_VBUS_ZOCD_MODE=interrupt (default: sleeping reactor, timed BAR poller) or poll
case ${ZOC_VBUS_ZOCD_MODE:-interrupt} in
interrupt) ZOCD_MODE=--interrupt-mode ;;
poll) ZOCD_MODE= ;;
*) zoc_die "ZOC_VBUS_ZOCD_MODE=$ZOC_VBUS_ZOCD_MODE: interrupt or poll" ;;
esac
WIN_SIZE=0x1000000
# Part 1 has no zocd in it: the runner's ASan pass (ZOC_E2E_PASS=asan) runs part 2 only.
PART1=1
[ "${ZOC_E2E_PASS:-}" = asan ] && PART1=0
# polling-mode delete + re-create rounds (part 3); fewer in the slower ASan pass
LOOPS=${ZOC_VBUS_LOOPS:-3}
[ "${ZOC_E2E_PASS:-}" = asan ] && LOOPS=${ZOC_VBUS_LOOPS:-2}
# MiB of fio write + verify in part 2 (zocd runs inside the TCG guest: ASan's is slow)
FIO_MB=8
[ "${ZOC_E2E_PASS:-}" = asan ] && FIO_MB=2
# shellcheck disable=SC2034 # read by lib/guest.sh
ZOC_GUEST_BINS="lspci nvme"

zoc_guest_prepare
HDR=/usr/src/linux-headers-$ZOC_KVER
[ -d "$HDR" ] || zoc_skip "no kernel headers for the guest kernel ($HDR): install linux-headers-$ZOC_KVER (scripts/deps.sh installs linux-headers-cloud-amd64, as root)"
command -v lspci >/dev/null || zoc_skip "lspci missing: install pciutils (scripts/deps.sh)"

# The module, built out of tree in the work dir (the source tree stays clean).
OVL=$ZOC_WORK/overlay
mkdir -p "$OVL/vbus" "$ZOC_WORK/kbuild"
cp "$ZOC_ROOT"/kernel/vbus/{Kbuild,Makefile,zoc_vbus.c,zoc_vbus_uapi.h} "$ZOC_WORK/kbuild/"
zoc_log "building zoc-vbus.ko against $HDR"
make -C "$ZOC_WORK/kbuild" KDIR="$HDR" >"$ZOC_ARTIFACTS/kbuild.log" 2>&1 ||
	{ tail -n 30 "$ZOC_ARTIFACTS/kbuild.log"; zoc_die "building the module failed (above; full log $ZOC_ARTIFACTS/kbuild.log)"; }
if grep -E 'warning:|error:' "$ZOC_ARTIFACTS/kbuild.log"; then
	zoc_die "the module build printed warnings (above): fix kernel/vbus/zoc_vbus.c"
fi
cp "$ZOC_WORK/kbuild/zoc-vbus.ko" "$OVL/vbus/"
gcc -std=gnu17 -O2 -Wall -Wextra -Wno-unused-parameter -Werror -static \
	-o "$OVL/vbus/zoc_vbus_probe" "$ZOC_ROOT/kernel/vbus/tools/zoc_vbus_probe.c" ||
	zoc_die "building kernel/vbus/tools/zoc_vbus_probe.c (static) failed: is libc6-dev installed?"
# zocd and zocctl with their libraries
if [ ! -x "$ZOCD" ] || [ ! -x "$ZOCCTL" ]; then zoc_die "zocd/zocctl not built ($ZOCD): run 'make build'"; fi
zoc__initrd_add_bin "$OVL" "$(readlink -f "$ZOCD")"
zoc__initrd_add_bin "$OVL" "$(readlink -f "$ZOCCTL")"
# The programs themselves in /vbus: their build path may lie under /tmp, which the guest's
# init mounts a tmpfs over.
cp -L "$ZOCD" "$OVL/vbus/zocd" && cp -L "$ZOCCTL" "$OVL/vbus/zocctl" ||
	zoc_die "cannot copy zocd/zocctl into the guest overlay"
# shellcheck disable=SC2034
ZOC_GUEST_OVERLAY=$OVL

cat >"$ZOC_WORK/guest.sh" <<'EOF'
load() {
	insmod /vbus/zoc-vbus.ko window_base=$WIN_BASE window_size=$WIN_SIZE || { zoc_fail "insmod zoc-vbus failed"; return 1; }
	i=0; while [ ! -c /dev/zoc-vbus ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
	[ -c /dev/zoc-vbus ] || { zoc_fail "no /dev/zoc-vbus after insmod"; return 1; }
	echo "ZOC-VBUS loaded: $(dmesg | grep 'zoc_vbus: PCI domain' | tail -1)"
}
# run_nvme TAG: the probe in the background; meanwhile lspci and the driver binding.
run_nvme() {
	: >/tmp/probe.log # here, not in the child: the loop below must not read the last run's log
	/vbus/zoc_vbus_probe nvme 60 >/tmp/probe.log 2>&1 &
	pid=$!
	i=0; while ! grep -q 'ZOC-VBUS BAR0' /tmp/probe.log && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
	dev=$(grep -o 'created [0-9a-f:.]*' /tmp/probe.log | cut -d' ' -f2)
	i=0; while [ ! -e /sys/bus/pci/devices/$dev/driver ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
	drv=$(basename "$(readlink /sys/bus/pci/devices/$dev/driver 2>/dev/null)" 2>/dev/null)
	l=$(lspci -Dn 2>/dev/null | grep "^$dev ")
	echo "ZOC-VBUS $1 device=$dev driver=$drv lspci='$l'"
	echo "$l" | grep -q '0108: 5a4f:4e56' || zoc_fail "$1: lspci does not show $dev as 5a4f:4e56 class 0108"
	[ "$drv" = nvme ] || zoc_fail "$1: the nvme driver did not bind to $dev"
	wait $pid; rc=$?
	cat /tmp/probe.log
	[ $rc = 0 ] || zoc_fail "$1: zoc_vbus_probe nvme failed (ZOC-VBUS FAIL lines)"
	[ -e /sys/bus/pci/devices/$dev ] && zoc_fail "$1: $dev still on the bus after REMOVE"
	return 0
}
load || exit 1
if [ "$PART1" = 1 ]; then
	/vbus/zoc_vbus_probe hostile || zoc_fail "hostile input not refused as expected (ZOC-VBUS FAIL lines)"
	run_nvme first
	run_nvme recreated
	rmmod zoc_vbus || zoc_fail "rmmod zoc_vbus failed"
	load || exit 1
	run_nvme reloaded
	/vbus/zoc_vbus_probe revoke || zoc_fail "revoke: stale mappings not revoked (ZOC-VBUS FAIL lines)"
else
	echo "ZOC-VBUS part 1 (module without zocd) skipped: ASan pass"
fi

# ---- zocd serves the function: nvme_ctrlr_create transport=vbus
ctl() { /vbus/zocctl -s /tmp/zocd.sock "$@"; }
# an ASan/UBSan zocd (run-all's e2e-asan pass) gets the runner's options
[ -n "$ASAN_OPTIONS" ] && export ASAN_OPTIONS
[ -n "$UBSAN_OPTIONS" ] && export UBSAN_OPTIONS
zocd_up() {
	# shellcheck disable=SC2086
	/vbus/zocd --rpc /tmp/zocd.sock --cores 1 $ZOCD_MODE --log-level info >>/tmp/zocd.log 2>&1 &
	ZPID=$!
	i=0; while [ ! -S /tmp/zocd.sock ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
	[ -S /tmp/zocd.sock ] || { zoc_fail "zocd did not come up"; sed 's/^/ZOC-ZOCD /' /tmp/zocd.log; return 1; }
}
ctrl_up() { # TAG [SECS]
	ctl nvme_ctrlr_create name=nvme0 transport=vbus max_io_queues=2 >/dev/null || { zoc_fail "$1: nvme_ctrlr_create transport=vbus failed"; return 1; }
	ctl nvme_ns_add ctrlr=nvme0 bdev=Disk0 >/dev/null || { zoc_fail "$1: nvme_ns_add failed"; return 1; }
	if ! zoc_wait_blk nvme0n1 "${2:-60}"; then
		zoc_fail "$1: no /dev/nvme0n1 ${2:-60} s after nvme_ctrlr_create"
		dmesg | grep -E 'nvme|zoc' | tail -20 | sed 's/^/ZOC-DEBUG /'
		tail -20 /tmp/zocd.log | sed 's/^/ZOC-ZOCD /'
		return 1
	fi
	echo "ZOC-VBUS $1: /dev/nvme0n1 size=$(blockdev --getsize64 /dev/nvme0n1) state=$(cat /sys/class/nvme/nvme0/state) uptime=$(zoc_up)"
}
# recreate TAG: device_delete, nvme_ctrlr_create again; up within 20 s (a lost admin
# interrupt or doorbell shows as the driver's 60 s admin timeout), the data reads back.
recreate() {
	ctl device_delete name=nvme0 >/dev/null || { zoc_fail "$1: device_delete failed"; return 1; }
	i=0; while [ -b /dev/nvme0n1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
	[ -b /dev/nvme0n1 ] && { zoc_fail "$1: /dev/nvme0n1 still there after device_delete"; return 1; }
	ctrl_up "$1" 20 || return 1
	dd if=/dev/nvme0n1 of=/dev/null bs=64k count=64 iflag=direct 2>/dev/null ||
		{ zoc_fail "$1: reading /dev/nvme0n1 failed"; return 1; }
}
# flr TAG: Function Level Reset from sysfs while no I/O runs, then id-ctrl and fio verify
flr() {
	fdev=$(basename "$(readlink -f /sys/class/nvme/nvme0/device)")
	m=$(cat /sys/bus/pci/devices/$fdev/reset_method 2>/dev/null)
	case " $m " in
	*" flr "*) ;;
	*) zoc_fail "$1: $fdev does not offer FLR (reset_method '$m')"; return 1 ;;
	esac
	t0=$(zoc_up)
	echo 1 >/sys/bus/pci/devices/$fdev/reset || { zoc_fail "$1: echo 1 > $fdev/reset failed"; return 1; }
	i=0; while [ "$(cat /sys/class/nvme/nvme0/state)" != live ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
	st=$(cat /sys/class/nvme/nvme0/state)
	echo "ZOC-VBUS $1: FLR of $fdev (reset_method '$m') at $t0 s, state=$st at $(zoc_up) s"
	[ "$st" = live ] || { zoc_fail "$1: controller not live after FLR"; return 1; }
	nvme id-ctrl /dev/nvme0 >/dev/null 2>&1 || zoc_fail "$1: nvme id-ctrl failed after FLR"
	fio --name=f --filename=/dev/nvme0n1 --direct=1 --ioengine=psync --rw=randwrite --bs=4k \
		--offset=32m --size=1m --verify=crc32c --do_verify=1 --output=/tmp/fio-flr.txt >/dev/null 2>&1 ||
		{ zoc_fail "$1: fio write + verify failed after FLR"; tail -5 /tmp/fio-flr.txt | sed 's/^/ZOC-FIO /'; }
	grep -q 'function level reset by the host' /tmp/zocd.log ||
		zoc_fail "$1: zocd's log does not show the function level reset"
}
rm -f /tmp/zocd.sock
dd if=/dev/zero of=/tmp/disk0.img bs=1M count=64 2>/dev/null
mkdir -p /var/tmp/zoc
ok=0
if zocd_up; then
	if ctl bdev_uring_create name=Disk0 filename=/tmp/disk0.img buffered=true >/dev/null; then
		ctrl_up zocd && ok=1
	else
		zoc_fail "bdev_uring_create failed"
	fi
fi
if [ $ok = 1 ]; then
	if command -v nvme >/dev/null; then
		nvme id-ctrl /dev/nvme0 >/tmp/idctrl.txt 2>&1 || zoc_fail "nvme id-ctrl failed"
		echo "ZOC-VBUS id-ctrl: $(grep -E '^(vid|mn|oacs) ' /tmp/idctrl.txt | tr -s ' ' | tr '\n' ';')"
	fi
	fio --name=w --filename=/dev/nvme0n1 --direct=1 --ioengine=psync --rw=randwrite --bs=4k \
		--size=${FIO_MB}m --verify=crc32c --do_verify=1 --output=/tmp/fio.txt >/dev/null 2>&1 ||
		{ zoc_fail "fio write + crc32c verify failed"; tail -20 /tmp/fio.txt | sed 's/^/ZOC-FIO /'; }
	echo "ZOC-VBUS fio: $(grep -E 'WRITE:|READ:' /tmp/fio.txt | tr -s ' ' | tr '\n' ';')"
	echo 1 >/sys/class/nvme/nvme0/reset_controller
	i=0; while [ "$(cat /sys/class/nvme/nvme0/state)" != live ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
	st=$(cat /sys/class/nvme/nvme0/state)
	echo "ZOC-VBUS after reset_controller: state=$st"
	[ "$st" = live ] || zoc_fail "controller not live after reset_controller"
	fio --name=w --filename=/dev/nvme0n1 --direct=1 --ioengine=psync --rw=randwrite --bs=4k \
		--size=${FIO_MB}m --verify=crc32c --verify_only --output=/tmp/fio2.txt >/dev/null 2>&1 ||
		zoc_fail "data written before the reset does not verify after it"
	flr flr
	if recreate recreated; then
		fio --name=w --filename=/dev/nvme0n1 --direct=1 --ioengine=psync --rw=randwrite --bs=4k \
			--size=${FIO_MB}m --verify=crc32c --verify_only --output=/tmp/fio3.txt >/dev/null 2>&1 ||
			zoc_fail "data does not verify on the re-created function"
	fi
	ctl device_delete name=nvme0 >/dev/null || zoc_fail "second device_delete failed"
	ctl zocd_shutdown >/dev/null 2>&1
	wait $ZPID || zoc_fail "zocd exited with status $?"
	# Part 3: polling reactors (Doorbell Buffer Config): re-create rounds and an FLR,
	# then zocd killed under I/O: the function goes (surprise removal), the driver gives
	# up on it, fio ends with errors, the kernel stays responsive.
	rm -f /tmp/zocd.sock
	ZOCD_MODE=
	if zocd_up && ctl bdev_uring_create name=Disk0 filename=/tmp/disk0.img buffered=true >/dev/null &&
		ctrl_up poll 20; then
		for n in $(seq 1 "$LOOPS"); do recreate "poll-recreate$n" || break; done
		[ -b /dev/nvme0n1 ] && flr poll-flr
		echo "ZOC-VBUS poll: $(ctl device_list --json 2>/dev/null | tr -d ' \n' | grep -oE '"(config_writes_before_bar|function_resets)":[0-9]+' | tr '\n' ' ')"
		if dmesg | grep -E 'nvme.*QID [0-9]+ timeout'; then
			zoc_fail "the nvme driver timed out on a command (lines above): a lost doorbell or interrupt"
		fi
		[ -b /dev/nvme0n1 ] || { zoc_fail "no /dev/nvme0n1 left for the kill test"; exit 1; }
		dev=$(basename "$(readlink -f /sys/class/nvme/nvme0/device)")
		fio --name=k --filename=/dev/nvme0n1 --direct=1 --ioengine=psync --rw=randrw --bs=4k \
			--size=16m --time_based --runtime=120 --output=/tmp/fio4.txt >/dev/null 2>&1 &
		FPID=$!
		sleep 3
		t0=$(zoc_up)
		kill -9 $ZPID
		wait $ZPID 2>/dev/null
		i=0; while [ -e /sys/bus/pci/devices/$dev ] && [ $i -lt 900 ]; do sleep 0.1; i=$((i+1)); done
		[ -e /sys/bus/pci/devices/$dev ] && zoc_fail "$dev still on the bus 90 s after zocd was killed"
		i=0; while kill -0 $FPID 2>/dev/null && [ $i -lt 900 ]; do sleep 0.1; i=$((i+1)); done
		if kill -0 $FPID 2>/dev/null; then
			zoc_fail "fio still running 90 s after zocd was killed (I/O hung)"
			kill -9 $FPID
		fi
		wait $FPID 2>/dev/null
		echo "ZOC-VBUS zocd killed at $t0 s: function gone and fio ended by $(zoc_up) s; /dev/nvme0n1 $( [ -b /dev/nvme0n1 ] && echo present || echo gone)"
		if dmesg | grep -E 'blocked for more than|hung_task|BUG:|Oops|general protection|Call Trace'; then
			zoc_fail "after zocd was killed the kernel logged a hung task or an oops (lines above)"
		fi
	else
		zoc_fail "could not set the controller up again for the kill test"
	fi
fi
grep -E 'ERROR|WARN|vbus|shadow' /tmp/zocd.log | tail -20 | sed 's/^/ZOC-ZOCD /'
# polling reactors (part 3) offer Doorbell Buffer Config: the driver must have taken it
if [ $ok = 1 ] && ! grep -q 'shadow doorbells at' /tmp/zocd.log; then
	zoc_fail "zocd (polling) offered Doorbell Buffer Config but the driver never set shadow doorbells"
fi
if grep -qE 'ERROR: AddressSanitizer|runtime error:|Segmentation fault' /tmp/zocd.log; then
	grep -E -A12 'ERROR: AddressSanitizer|runtime error:' /tmp/zocd.log | head -40 | sed 's/^/ZOC-ZOCD /'
	zoc_fail "zocd's log shows a sanitizer report or crash (ZOC-ZOCD lines)"
fi
rmmod zoc_vbus || zoc_fail "second rmmod zoc_vbus failed"
dmesg | grep -E 'zoc_vbus|zoc-vbus|nvme|10000:|x86/PAT|ioremap' | tail -60 | sed 's/^/ZOC-DMESG /'
if dmesg | grep -qE 'BUG:|Oops|WARNING:|general protection|Call Trace'; then
	dmesg | grep -A 30 -E 'BUG:|Oops|WARNING:|general protection' | head -60 | sed 's/^/ZOC-OOPS /'
	zoc_fail "the kernel logged an oops, BUG or WARNING (ZOC-OOPS lines)"
fi
EOF

# shellcheck disable=SC2034 # read by lib/guest.sh
ZOC_GUEST_APPEND="memmap=16M\$$WIN_BASE loglevel=5"
zoc_guest_run vbus "$ZOC_WORK/guest.sh" --smp 2 --timeout 300 \
	--env WIN_BASE=$WIN_BASE --env WIN_SIZE=$WIN_SIZE --env "ZOCD_MODE=$ZOCD_MODE" --env "PART1=$PART1" \
	--env "LOOPS=$LOOPS" --env "FIO_MB=$FIO_MB" \
	--env "ASAN_OPTIONS=${ASAN_OPTIONS:-}" --env "UBSAN_OPTIONS=${UBSAN_OPTIONS:-}" || zoc_die "the vbus guest failed (above)"
zoc_log "PASS: zoc-vbus: hostile input refused; the nvme driver bound, removed, recreated, module reloaded; stale mappings revoked; zocd served /dev/nvme0n1 through it (id-ctrl, fio crc32c verify, reset, FLR, delete + recreate, polling re-create x$LOOPS, killed)"
