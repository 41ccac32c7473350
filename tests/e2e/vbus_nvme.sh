#!/bin/bash
# SPDX-License-Identifier: MIT
#
# vbus_nvme.sh - the Virtual Bus (kernel/vbus/zoc-vbus.ko) in a TCG guest that plays the
# bare-metal host: booted with memmap=16M$0x18000000 (the BAR window), the module built
# here against linux-headers-<guest kernel> and loaded with that window.
#
# Today (stage 2 of issue 6) the function is served by kernel/vbus/tools/zoc_vbus_probe,
# not yet by zocd:
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
#     again and the nvme run repeated; dmesg must show no oops, BUG or WARNING.
# Not yet here (issue 6 stages 3-4): zocd's vbus link, /dev/nvme0n1, fio, reset.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/guest.sh"
zoc_init

WIN_BASE=0x18000000
WIN_SIZE=0x1000000
# shellcheck disable=SC2034 # read by lib/guest.sh
ZOC_GUEST_BINS=lspci

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
/vbus/zoc_vbus_probe hostile || zoc_fail "hostile input not refused as expected (ZOC-VBUS FAIL lines)"
run_nvme first
run_nvme recreated
rmmod zoc_vbus || zoc_fail "rmmod zoc_vbus failed"
load || exit 1
run_nvme reloaded
rmmod zoc_vbus || zoc_fail "second rmmod zoc_vbus failed"
dmesg | grep -E 'zoc_vbus|zoc-vbus|nvme|10000:|x86/PAT|ioremap' | tail -60 | sed 's/^/ZOC-DMESG /'
if dmesg | grep -qE 'BUG:|Oops|WARNING:|general protection|Call Trace'; then
	dmesg | grep -A 30 -E 'BUG:|Oops|WARNING:|general protection' | head -60 | sed 's/^/ZOC-OOPS /'
	zoc_fail "the kernel logged an oops, BUG or WARNING (ZOC-OOPS lines)"
fi
EOF

ZOC_GUEST_APPEND="memmap=16M\$$WIN_BASE loglevel=5"
zoc_guest_run vbus "$ZOC_WORK/guest.sh" --smp 2 --timeout 300 \
	--env WIN_BASE=$WIN_BASE --env WIN_SIZE=$WIN_SIZE || zoc_die "the vbus guest failed (above)"
zoc_log "PASS: zoc-vbus module: hostile input refused, NVMe function probed by the nvme driver, removed, recreated, module reloaded"
