#!/bin/bash
# SPDX-License-Identifier: MIT
#
# virtio_vfio_user_guest.sh - a Linux guest's own virtio_pci, virtio_blk and virtio_net
# drivers against two of zocd's virtio devices exposed as native virtio-pci functions
# (src/virtio/virtio_pci.c), both reached over vfio-user by QEMU 11's vfio-user-pci (from the
# Debian 13 root of scripts/trixie-root.sh), served by one zocd (issue 4, e2e (c)):
#   vb0  virtio-blk on an io_uring file bdev (256 MiB on disk), 2 queues;
#   vn0  virtio-net with 2 queue pairs on switch sw0, whose AF_PACKET uplink up0 is the root
#        end of a veth pair; the other end is in a network namespace with 10.78.0.1/24.
#
# QEMU: -accel tcg, RAM in a shared memfd (the machine's memory-backend: zocd maps it for DMA),
# two -device vfio-user-pci,socket={unix: zocd's sockets}. QEMU knows nothing of virtio here:
# the guest's virtio_pci driver finds the vendor capabilities in config space and drives the
# registers, each access a vfio-user message to zocd.
#
# Boot 1 (-smp 2): virtio_pci binds 1af4:1041 and 1af4:1042 (revision 1, non-transitional).
#   net: eth0 (mac from virtio_net_create, 2 combined channels) comes up, carrier on, the
#   MSI-X vectors (config, input.N, output.N) are in /proc/interrupts; 10.78.0.2 pings the
#   namespace 5/5, also with 1472-byte payloads (full 1500-byte frames); the input vectors
#   count interrupts.
#   blk: /dev/vda has the file's size and 2 queues (/sys/block/vda/mq); MSI-X in use (config +
#   per-queue vectors, the queues' counts grow with I/O); fio 4k random writes at QD 32
#   (2 jobs, one per CPU) then crc32c verify, while the guest pings the namespace (10/10);
#   a flush reaches the device; a 1 MiB pattern; the blk driver is unbound and bound again
#   (device reset: device_status 0 until the queues stopped), the data verifies and fio
#   write + verify passes again; no I/O errors in dmesg.
# Boot 2: a new QEMU (new vfio-user connections to the same functions): ping 5/5 again, the
#   pattern of boot 1 reads back, a short fio verify.
# Host: the pattern is in the backing file; device_stats shows the I/O on both blk queues;
#   the switch learned the guest's and the namespace's MACs, the uplink counted frames both
#   ways; no notification came as a vfio-user message in polling mode (the notify pages
#   are mapped into the guest), some did in interrupt mode; uplink_delete, device_delete,
#   switch_delete, zocd_shutdown.
#
# ZOC_VPCI_ZOCD_MODE=poll (default: one busy-polling reactor, the notify pages mapped into
# the guest) or interrupt (two sleeping reactors, notifications trapped as vfio-user
# messages that kick the queues' eventfds).
# ZOC_VPCI_IRQ=msix (default: the drivers use MSI-X, a vector per queue) or intx (the guest
# boots with pci=nomsi: INTx# with the ISR register, QEMU's vfio-user INTx path).
# Skips (77) when the machine cannot give the Debian 13 root, a network namespace or a veth.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/guest.sh"
zoc_init
# QEMU 11 from the Debian 13 root comes with the e2e library's zoc_guest_use_root.
declare -F zoc_guest_use_root >/dev/null ||
	zoc_skip "this lib/guest.sh cannot run QEMU from the Debian 13 root (no zoc_guest_use_root)"

DISK_MB=256
PAT_MB=200 # pattern offset (MiB), outside what fio touches
FIO_MB=${ZOC_VPCI_FIO_MB:-64} # MiB each fio run writes and verifies (boot 2: half)
SMP=2
[ "$ZOC_E2E_SERVER" = zocd ] ||
	zoc_die "ZOC_E2E_SERVER=$ZOC_E2E_SERVER: this test needs zocd (vfio-user virtio-pci has no other server here)"
# shellcheck disable=SC2034 # read by lib/guest.sh
ZOC_GUEST_MODULES="virtio_pci virtio_blk virtio_net"
IRQ=${ZOC_VPCI_IRQ:-msix}
case $IRQ in
msix) ;;
intx)
	# INTx is several times slower under QEMU 11 TCG (docs/virtio-pci.md): less I/O.
	ZOC_GUEST_APPEND="${ZOC_GUEST_APPEND:-} pci=nomsi"
	FIO_MB=${ZOC_VPCI_FIO_MB:-16}
	;;
*) zoc_die "ZOC_VPCI_IRQ=$IRQ: msix or intx" ;;
esac
# The runner's ASan pass (ZOC_E2E_PASS=asan): the same server paths with less guest I/O.
[ "${ZOC_E2E_PASS:-}" = asan ] && FIO_MB=${ZOC_VPCI_FIO_MB:-16}
GMAC=52:54:00:78:00:02
NPAIRS=2

# ---- the host behind the uplink: a namespace with 10.78.0.1 at the end of a veth pair
for t in ip ethtool; do
	command -v $t >/dev/null 2>&1 || zoc_skip "'$t' is not installed (scripts/deps.sh installs it, as root)"
done
NS=vfunet$$
VH=vfunh$$ # root namespace end: the uplink's interface
VN=vfunn$$ # namespace end: 10.78.0.1
vfunet_cleanup() {
	ip link del "$VH" 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
}
ZOC_CLEANUP_HOOKS+=(vfunet_cleanup)
ip netns add "$NS" 2>"$ZOC_ARTIFACTS/netns.err" ||
	zoc_skip "cannot create a network namespace (needs root / CAP_SYS_ADMIN): $(cat "$ZOC_ARTIFACTS/netns.err")"
ip link add "$VH" type veth peer name "$VN" netns "$NS" 2>"$ZOC_ARTIFACTS/netns.err" ||
	zoc_skip "cannot create a veth pair (veth module?): $(cat "$ZOC_ARTIFACTS/netns.err")"
ip -n "$NS" link set lo up
ip -n "$NS" addr add 10.78.0.1/24 dev "$VN"
ip -n "$NS" link set "$VN" up
ip link set "$VH" up
NS_MAC=$(ip -n "$NS" -o link show "$VN" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
# The uplink drops GSO super-frames and a veth with TX checksum offload hands AF_PACKET
# frames whose checksum is not filled in (docs/uplinks.md): offloads off on both ends.
ethtool -K "$VH" tx off tso off gso off gro off >/dev/null 2>&1 ||
	zoc_die "ethtool -K $VH tx off tso off gso off gro off failed"
ip netns exec "$NS" ethtool -K "$VN" tx off tso off gso off gro off >/dev/null 2>&1 ||
	zoc_die "ethtool -K $VN (in $NS) tx off tso off gso off gro off failed"
zoc_log "veth $VH <-> $NS:$VN (10.78.0.1, mac $NS_MAC), offloads off"

cat >"$ZOC_WORK/guest.sh" <<'EOF'
# ---- probe
debug_pci() {
	echo "ZOC-DEBUG pci devices (vendor device class):"
	for d in /sys/bus/pci/devices/*; do echo "ZOC-DEBUG   ${d##*/} $(cat $d/vendor $d/device $d/class | tr '\n' ' ') driver=$(basename "$(readlink $d/driver 2>/dev/null)" 2>/dev/null)"; done
	dmesg | grep -iE 'virtio|pci 0000:00:0|vfio' | tail -40 | sed 's/^/ZOC-DEBUG dmesg /'
}
# check_pci SYSFS-VIRTIO-DEVICE DEVICE-ID CLASS: the virtio device's PCI function; sets P, PCI
check_pci() {
	P=$(dirname "$(readlink -f "$1")")
	PCI=${P##*/}
	echo "ZOC-PCI $PCI $(basename "$(readlink -f "$1")") vendor=$(cat $P/vendor) device=$(cat $P/device) revision=$(cat $P/revision) subsys=$(cat $P/subsystem_vendor):$(cat $P/subsystem_device) class=$(cat $P/class) driver=$(basename "$(readlink $P/driver)") irq=$(cat $P/irq) msi_irqs=$(ls $P/msi_irqs 2>/dev/null | wc -l)"
	[ "$(cat $P/vendor):$(cat $P/device)" = "0x1af4:$2" ] || zoc_fail "$PCI is $(cat $P/vendor):$(cat $P/device), expected 0x1af4:$2"
	[ "$(cat $P/class)" = "$3" ] || zoc_fail "$PCI has class $(cat $P/class), expected $3"
	[ "$(basename "$(readlink $P/driver)")" = virtio-pci ] || zoc_fail "$PCI is not bound to virtio-pci"
	[ "$(cat $P/revision)" = 0x01 ] || zoc_fail "$PCI: revision $(cat $P/revision), expected 0x01 (non-transitional)"
}
# check_irq_mode VIRTIO NVEC: MSI-X with NVEC vectors named VIRTIO-..., or (IRQ=intx) INTx
check_irq_mode() {
	if [ "$IRQ" = intx ]; then
		[ "$(ls $P/msi_irqs 2>/dev/null | wc -l)" = 0 ] || zoc_fail "$PCI uses MSI/MSI-X although the guest booted with pci=nomsi"
		grep -qE "[ ,]$1(,|\$)" /proc/interrupts || zoc_fail "/proc/interrupts has no INTx line of $1"
	else
		nvec=$(grep -cE "$1-(config|req|input|output)" /proc/interrupts)
		[ "$nvec" = "$2" ] || zoc_fail "/proc/interrupts has $nvec vectors of $1, expected $2 (MSI-X: config + one per queue with a callback)"
	fi
}
# irq_pat VIRTIO QUEUE-NAME: the /proc/interrupts name of the queue's interrupt
irq_pat() { if [ "$IRQ" = intx ]; then echo "[ ,]$1(,|\$)"; else echo "$1-$2"; fi; }
# vec_sum PATTERN: the interrupts of the /proc/interrupts lines whose name matches PATTERN
vec_sum() { grep -E "$1" /proc/interrupts | awk '{for (i=2; i<=NF; i++) if ($i ~ /^[0-9]+$/) s+=$i; else break} END {print s+0}'; }
# vec_list PATTERN: name=count of each matching line
vec_list() { grep -E "$1" /proc/interrupts | awk '{s=0; for (i=2; i<=NF; i++) if ($i ~ /^[0-9]+$/) s+=$i; else break; print $NF "=" s}' | tr '\n' ' '; }

# -- virtio-net
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 60 ]; do sleep 1; i=$((i + 1)); done
if [ ! -e /sys/class/net/eth0 ]; then
	zoc_fail "no eth0 60 s after boot: virtio_pci/virtio_net did not bring the function up"
	debug_pci
	exit 1
fi
check_pci /sys/class/net/eth0/device 0x1041 0x020000
NET_PCI=$PCI
VNET=$(basename "$(readlink -f /sys/class/net/eth0/device)")
ip link set lo up
ip addr add 10.78.0.2/24 dev eth0
ip link set eth0 up
sleep 1
echo "ZOC-NET eth0 up: mac=$(cat /sys/class/net/eth0/address) mtu=$(cat /sys/class/net/eth0/mtu) carrier=$(cat /sys/class/net/eth0/carrier 2>/dev/null) rx-queues=$(ls -d /sys/class/net/eth0/queues/rx-* | wc -l) tx-queues=$(ls -d /sys/class/net/eth0/queues/tx-* | wc -l) features=$(cat /sys/class/net/eth0/device/features) uptime=$(zoc_up)"
[ "$(cat /sys/class/net/eth0/address)" = "$GMAC" ] || zoc_fail "eth0 has mac $(cat /sys/class/net/eth0/address), expected $GMAC (virtio_net_create mac=)"
[ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ] || zoc_fail "eth0 has no carrier"
n=$(ls -d /sys/class/net/eth0/queues/rx-* | wc -l)
[ "$n" = "$NPAIRS" ] || zoc_fail "eth0 has $n rx queues, expected $NPAIRS (num_queue_pairs)"
echo "ZOC-IRQ net $(vec_list "$(irq_pat "$VNET" '')")"
check_irq_mode "$VNET" $((2 * NPAIRS + 1))
n0=$(vec_sum "$(irq_pat "$VNET" input)")
ok=0
i=0
while [ $i -lt 60 ]; do
	if ping -c 1 -W 1 10.78.0.1 >/dev/null 2>&1; then ok=1; break; fi
	i=$((i + 1))
done
[ $ok = 1 ] || { zoc_fail "10.78.0.1 (the namespace behind the AF_PACKET uplink) did not answer within 60 pings"; exit 1; }
ping_check() { # label count [ping args]
	l=$1; c=$2; shift 2
	ping -c "$c" -i 0.2 -W 2 "$@" 10.78.0.1 >/tmp/ping.$l 2>&1 || true
	echo "ZOC-PING $l $(grep -E 'transmitted' /tmp/ping.$l) $(grep -E 'round-trip' /tmp/ping.$l) uptime=$(zoc_up)"
	grep -qE "$c packets transmitted, $c (packets )?received" /tmp/ping.$l ||
		zoc_fail "ping $l: not $c/$c replies from 10.78.0.1: $(tail -2 /tmp/ping.$l | tr '\n' ' ')"
}
ping_check first 5
ping_check full-frames 3 -s 1472
n1=$(vec_sum "$(irq_pat "$VNET" input)")
echo "ZOC-IRQ net after-ping $(vec_list "$(irq_pat "$VNET" '')")"
[ $((n1 - n0)) -gt 0 ] || zoc_fail "the rx queues' interrupts ($IRQ) got no interrupt while pinging ($n0 -> $n1)"

# -- virtio-blk
if ! zoc_wait_blk vda 60; then
	zoc_fail "no /dev/vda 60 s after boot: virtio_pci/virtio_blk did not bring the function up"
	debug_pci
	exit 1
fi
check_pci /sys/block/vda/device 0x1042 0x010000
VBLK=$(basename "$(readlink -f /sys/block/vda/device)")
[ "$PCI" != "$NET_PCI" ] || zoc_fail "vda and eth0 on the same PCI function $PCI"
size=$(blockdev --getsize64 /dev/vda)
mq=$(ls /sys/block/vda/mq 2>/dev/null | wc -l)
echo "ZOC-BLK size=$size mq=$mq lbs=$(cat /sys/block/vda/queue/logical_block_size) write_cache='$(cat /sys/block/vda/queue/write_cache)' features=$(cat /sys/block/vda/device/features) uptime=$(zoc_up)"
[ "$size" = $((DISK_MB * 1048576)) ] || zoc_fail "/dev/vda is $size bytes, expected $((DISK_MB * 1048576)) (the backing file)"
[ "$mq" = "$NQ" ] || zoc_fail "/sys/block/vda/mq has $mq entries, expected $NQ"

# interrupts of the function: "virtioN-config", "virtioN-req.I" (MSI-X, one vector each)
irqs() { vec_list "$(irq_pat "$VBLK" '(config|req)')"; }
req_irqs() { vec_sum "$(irq_pat "$VBLK" req)"; }
echo "ZOC-IRQ before $(irqs)"
check_irq_mode "$VBLK" $((NQ + 1))

run_fio() { # name, extra args...
	n=$1; shift
	fio --name="$n" --filename=/dev/vda --rw=randwrite --bs=4k --iodepth=32 --ioengine=libaio \
		--direct=1 --verify=crc32c --do_verify=1 --group_reporting \
		--numjobs=$(nproc) --cpus_allowed_policy=split --cpus_allowed=0-$(( $(nproc) - 1 )) \
		--size=$((FIO_MB / $(nproc)))M --offset_increment=$((FIO_MB / $(nproc)))M "$@" >/tmp/fio.$n 2>&1
	frc=$?
	echo "ZOC-FIO $n rc=$frc uptime=$(zoc_up) $(grep -o 'write: IOPS=[^,]*' /tmp/fio.$n | head -1) $(grep -o 'read: IOPS=[^,]*' /tmp/fio.$n | head -1) $(grep -oE 'err= *[0-9]+' /tmp/fio.$n | tr -d ' ' | sort -u | tr '\n' ' ')"
	if [ $frc != 0 ] || grep -qiE 'verify: bad|crc32c: verify failed|io_u error' /tmp/fio.$n; then
		zoc_fail "fio $n failed (rc=$frc): random write + crc32c verify, QD 32, $(nproc) jobs"
		grep -iE 'error|bad|verify|fio:' /tmp/fio.$n | head -20
	fi
}
pattern_check() { # label
	got=$(dd if=/dev/vda bs=1M skip=$PAT_MB count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
	echo "ZOC-PATTERN $1 readback md5=$got"
	[ "$got" = "$PAT_MD5" ] || zoc_fail "$1: the pattern reads back as md5 $got, expected $PAT_MD5"
}

if [ "$PHASE" = 1 ]; then
	i0=$(req_irqs)
	# the network keeps working while both functions are busy
	ping -c 10 -i 0.5 -W 5 10.78.0.1 >/tmp/ping.during-fio 2>&1 &
	ppid=$!
	run_fio randwrite-verify
	wait $ppid
	echo "ZOC-PING during-fio $(grep -E 'transmitted' /tmp/ping.during-fio)"
	grep -qE '10 packets transmitted, 10 (packets )?received' /tmp/ping.during-fio ||
		zoc_fail "ping during fio: not 10/10 replies: $(tail -2 /tmp/ping.during-fio | tr '\n' ' ')"
	i1=$(req_irqs)
	echo "ZOC-IRQ after-fio $(irqs)"
	[ $((i1 - i0)) -gt 0 ] || zoc_fail "the queues' interrupts ($IRQ) got none during fio ($i0 -> $i1)"
	# flush (the io_uring bdev offers VIRTIO_BLK_F_FLUSH)
	f0=$(awk '{print $16}' /sys/block/vda/stat)
	dd if=/dev/urandom of=/dev/vda bs=4096 count=16 seek=$((100 * 256)) oflag=direct conv=fsync 2>/tmp/dd.err ||
		zoc_fail "dd conv=fsync to /dev/vda failed: $(cat /tmp/dd.err)"
	f1=$(awk '{print $16}' /sys/block/vda/stat)
	echo "ZOC-FLUSH flushes=$((f1 - f0))"
	[ $((f1 - f0)) -gt 0 ] || zoc_fail "no flush reached /dev/vda (disk stats flush count $f0 -> $f1)"
	dd if=/dev/urandom of=/tmp/pat bs=1M count=1 2>/dev/null
	PAT_MD5=$(md5sum </tmp/pat | cut -d' ' -f1)
	dd if=/tmp/pat of=/dev/vda bs=1M seek=$PAT_MB oflag=direct conv=fsync 2>/tmp/dd.err ||
		zoc_fail "writing the pattern failed: $(cat /tmp/dd.err)"
	echo "ZOC-PATTERN md5=$PAT_MD5"
	# The host reads zocd's statistics now, while the queues run.
	echo "ZOC-STATS-NOW hold=${HOLD}s"
	sleep "$HOLD"

	# ---- device reset: unbind (virtio_pci resets the device: status 0, waits for 0) and bind
	t0=$(zoc_up)
	echo "$PCI" >/sys/bus/pci/drivers/virtio-pci/unbind 2>/tmp/unbind.err ||
		zoc_fail "unbinding $PCI from virtio-pci failed: $(cat /tmp/unbind.err)"
	i=0
	while [ -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	[ -b /dev/vda ] && zoc_fail "/dev/vda still there 10 s after the unbind"
	echo "$PCI" >/sys/bus/pci/drivers/virtio-pci/bind 2>/tmp/bind.err ||
		zoc_fail "binding $PCI to virtio-pci again failed: $(cat /tmp/bind.err)"
	if zoc_wait_blk vda 30; then
		VBLK=$(basename "$(readlink -f /sys/block/vda/device)")
		echo "ZOC-RESET ok: unbind + bind, /dev/vda back (started at uptime $t0, now $(zoc_up)); $(irqs)"
	else
		zoc_fail "/dev/vda did not come back 30 s after binding virtio-pci again"
		dmesg | grep -iE 'virtio' | tail -20 | sed 's/^/ZOC-DEBUG dmesg /'
		exit 1
	fi
	mq=$(ls /sys/block/vda/mq 2>/dev/null | wc -l)
	[ "$mq" = "$NQ" ] || zoc_fail "after the rebind /sys/block/vda/mq has $mq entries, expected $NQ"
	run_fio randwrite-verify --verify_only
	pattern_check after-reset
	run_fio after-reset-randwrite-verify --offset=96M
else
	pattern_check boot2
	run_fio boot2-randwrite-verify --offset=128M
fi

ping_check last 5
zoc_check_dmesg
if dmesg | grep -iE 'virtio|eth0' | grep -iE 'timeout|fail|error|broken|needs reset'; then
	zoc_fail "the virtio drivers logged trouble (lines above)"
fi
dmesg | grep -iE 'virtio|vda|eth0' | tail -10 | sed 's/^/ZOC-DMESG-VIRTIO /'
echo "ZOC-POWEROFF uptime=$(zoc_up)"
EOF

zoc_guest_use_root
zoc_guest_prepare

zoc_disk_create DISK disk0.img "$DISK_MB"
VB_SOCK=$ZOC_WORK/vb0.sock
case ${ZOC_VPCI_ZOCD_MODE:-poll} in
poll) ;; # one polling reactor: the notify page is mapped into the guest (no exits)
interrupt)
	# Two reactors (one shares its CPU with QEMU) that sleep: notifications trapped.
	if [[ $ZOC_ZOCD_CPU != *,* ]] && [ "$(zoc__cpus | wc -l)" -ge 2 ]; then
		ZOC_ZOCD_CPU=$(zoc__cpus | head -2 | paste -sd,)
	fi
	# shellcheck disable=SC2034 # read by lib/guest.sh
	ZOC_ZOCD_MODE=(--interrupt-mode)
	;;
*) zoc_die "ZOC_VPCI_ZOCD_MODE=$ZOC_VPCI_ZOCD_MODE: poll or interrupt" ;;
esac
zoc_zocd_start
zoc_ctl bdev_uring_create name=Disk0 filename="$DISK" >/dev/null || zoc_die "bdev_uring_create failed (above)"
zoc_ctl virtio_blk_create name=vb0 transport=vfio-user socket="$VB_SOCK" bdev=Disk0 num_queues=$SMP >/dev/null ||
	zoc_die "virtio_blk_create transport=vfio-user failed (above)"
zoc_wait_sock "$VB_SOCK" "$ZOC_ZOCD_PID" 10 zocd "$ZOC_ZOCD_LOG"
zoc_log "zocd serves virtio-blk vb0 as a virtio-pci function (io_uring file $DISK, ${DISK_MB} MiB) on $VB_SOCK"
VN_SOCK=$ZOC_WORK/vn0.sock
zoc_ctl switch_create name=sw0 >/dev/null || zoc_die "switch_create failed (above)"
zoc_ctl uplink_create name=up0 switch=sw0 type=af_packet ifname="$VH" >/dev/null ||
	zoc_die "uplink_create af_packet on $VH failed (above)"
zoc_ctl virtio_net_create name=vn0 transport=vfio-user socket="$VN_SOCK" switch=sw0 mac=$GMAC \
	num_queue_pairs=$NPAIRS >/dev/null || zoc_die "virtio_net_create transport=vfio-user failed (above)"
zoc_wait_sock "$VN_SOCK" "$ZOC_ZOCD_PID" 10 zocd "$ZOC_ZOCD_LOG"
zoc_log "zocd serves virtio-net vn0 ($NPAIRS queue pairs) as a virtio-pci function on $VN_SOCK, port of sw0 with uplink up0 (af_packet on $VH)"
vfu_dev() { # id socket
	printf '{"driver": "vfio-user-pci", "id": "%s", "socket": {"path": "%s", "type": "unix"}}' "$1" "$(zoc_guest_path "$2")"
}
DEV_ARGS=(-device "$(vfu_dev vn0 "$VN_SOCK")" -device "$(vfu_dev vb0 "$VB_SOCK")")
printf '%s\n' "${DEV_ARGS[@]}" >"$ZOC_ARTIFACTS/qemu-device-args.txt"

check_stats_now() {
	local stats n
	stats=$(zoc_ctl device_stats --json) || zoc_die "zocctl device_stats --json failed (above)"
	printf '%s\n' "$stats" >"$ZOC_ARTIFACTS/device_stats.boot1.json"
	jq -r '.[]? | select(.name == "vb0") | .queues[] | "vb0 queue \(.index) reactor \(.reactor) running \(.running): reads \(.read_ops) writes \(.write_ops) flushes \(.flush_ops) errors \(.errors) invalid \(.invalid)"' \
		<<<"$stats" | sed 's/^/    device_stats| /'
	n=$(jq -r '[.[]? | select(.name == "vb0") | .queues[] | select(.running and .write_ops > 0)] | length' <<<"$stats")
	[ "${n:-0}" -ge $SMP ] ||
		zoc_die "only ${n:-0} queue(s) of vb0 run and saw writes, expected $SMP (one fio job per CPU; saved in $ZOC_ARTIFACTS/device_stats.boot1.json)"
	zoc_log "host: device_stats shows writes on $n running queues"
	# Notifications that reached zocd as vfio-user messages: none when the notify page is
	# mapped into the guest (polling), many when they are trapped (interrupt mode).
	zoc_ctl device_list --json >"$ZOC_ARTIFACTS/device_list.boot1.json" ||
		zoc_die "zocctl device_list --json failed (above)"
	local d
	for d in vb0 vn0; do
		n=$(jq -r --arg d $d '.[]? | select(.name == $d) | .virtio_pci.notifications' "$ZOC_ARTIFACTS/device_list.boot1.json")
		zoc_log "host: $d: $n queue notifications trapped (mode ${ZOC_VPCI_ZOCD_MODE:-poll})"
		case ${ZOC_VPCI_ZOCD_MODE:-poll} in
		poll) [ "$n" = 0 ] || zoc_die "$d: $n notifications came as vfio-user writes although the notify page is offered for mmap (did QEMU not map it?)" ;;
		interrupt) [ "${n:-0}" -gt 0 ] || zoc_die "$d: no notification reached zocd in interrupt mode (${n:-none}): how did the sleeping reactors wake?" ;;
		esac
		n=$(jq -r --arg d $d '.[]? | select(.name == $d) | .virtio_pci.pci.msix.enabled' "$ZOC_ARTIFACTS/device_list.boot1.json")
		[ "$n" = "$([ "$IRQ" = msix ] && echo true || echo false)" ] ||
			zoc_die "$d: zocd says MSI-X enabled=$n, the guest should use $IRQ"
	done
}

# ---- boot 1
HOLD=3
zoc_guest_start boot1 "$ZOC_WORK/guest.sh" --smp $SMP --timeout 300 \
	--env PHASE=1 --env NQ=$SMP --env GMAC=$GMAC --env NPAIRS=$NPAIRS --env IRQ="$IRQ" --env DISK_MB=$DISK_MB --env PAT_MB=$PAT_MB --env FIO_MB="$FIO_MB" \
	--env HOLD=$HOLD -- "${DEV_ARGS[@]}"
if zoc_guest_wait_line '^ZOC-STATS-NOW' 260; then
	check_stats_now
fi
rc=0
zoc_guest_wait || rc=$?
[ $rc = 0 ] || zoc_die "boot 1 failed (reasons above; zocd log: $ZOC_ZOCD_LOG)"
grep -aq 'ZOC-STATS-NOW' "$ZOC_GUEST_LOG" || zoc_die "boot 1 never got to the statistics"
PAT_MD5=$(zoc_guest_results | awk '/^ZOC-PATTERN md5=/{sub("md5=","",$2); print $2; exit}')
[ -n "$PAT_MD5" ] || zoc_die "boot 1 did not report its pattern's md5"
HOST_MD5=$(dd if="$DISK" bs=1M skip=$PAT_MB count=1 2>/dev/null | md5sum | cut -d' ' -f1)
[ "$HOST_MD5" = "$PAT_MD5" ] ||
	zoc_die "the backing file holds md5 $HOST_MD5 at ${PAT_MB} MiB, the guest wrote $PAT_MD5: writes did not reach the file"
zoc_log "host: the guest's pattern is in the backing file at ${PAT_MB} MiB (md5 $HOST_MD5)"

# ---- boot 2: a new connection to the same function
rc=0
zoc_guest_run boot2 "$ZOC_WORK/guest.sh" --smp $SMP --timeout 200 \
	--env PHASE=2 --env NQ=$SMP --env GMAC=$GMAC --env NPAIRS=$NPAIRS --env IRQ="$IRQ" --env DISK_MB=$DISK_MB --env PAT_MB=$PAT_MB --env FIO_MB=$((FIO_MB / 2)) \
	--env PAT_MD5="$PAT_MD5" -- "${DEV_ARGS[@]}" || rc=$?
[ $rc = 0 ] ||
	zoc_die "boot 2 (a new vfio-user connection to the same function) failed (reasons above; zocd log: $ZOC_ZOCD_LOG)"

# ---- host side
zoc_zocd_alive || zoc_die "zocd died while the guests ran (log: $ZOC_ZOCD_LOG)"
STATS=$(zoc_ctl device_stats --json) || zoc_die "zocctl device_stats --json failed (above)"
printf '%s\n' "$STATS" >"$ZOC_ARTIFACTS/device_stats.json"
zoc_stats_summary "$(jq '[.[]? | select(.name == "vb0")]' <<<"$STATS")" | sed 's/^/    device_stats| /'
jq -r '.[]? | select(.name == "vn0") | .queues[] | "vn0 queue \(.index) \(.type): packets \(.packets) bytes \(.bytes) drops \([.drops | to_entries[] | select(.value > 0) | "\(.key)=\(.value)"] | join(",") | if . == "" then "none" else . end)"' \
	<<<"$STATS" | sed 's/^/    device_stats| /'
for k in rx tx; do
	n=$(jq -r --arg t $k '[.[]? | select(.name == "vn0") | .queues[] | select(.type == $t) | .packets] | add // 0' <<<"$STATS")
	[ "$n" -ge 20 ] || zoc_die "device_stats says vn0 moved $n packets on its $k queues, expected >= 20 after 33 pings (saved in $ZOC_ARTIFACTS/device_stats.json)"
done
for k in write_ops read_ops flush_ops; do
	n=$(zoc_stat "$STATS" vb0 "$k")
	[ -n "$n" ] || zoc_die "device_stats --json has no total \"$k\" for vb0 (saved in $ZOC_ARTIFACTS/device_stats.json)"
	[ "$n" -gt 0 ] || zoc_die "device_stats says vb0 $k=0 after the guests' I/O (saved in $ZOC_ARTIFACTS/device_stats.json)"
done
n=$(zoc_stat "$STATS" vb0 errors)
[ "${n:-0}" = 0 ] || zoc_die "device_stats says vb0 errors=$n: the guests' requests should all have succeeded"
zoc_log "host: device_stats totals show reads, writes and flushes, no errors"
MACS=$(zoc_ctl switch_mac_table name=sw0 --json) || zoc_die "switch_mac_table failed"
printf '%s\n' "$MACS" >"$ZOC_ARTIFACTS/mac_table.json"
grep -qi "$GMAC" <<<"$MACS" || zoc_die "the switch did not learn the guest's MAC $GMAC (saved in $ZOC_ARTIFACTS/mac_table.json)"
grep -qi "$NS_MAC" <<<"$MACS" || zoc_die "the switch did not learn the namespace's MAC $NS_MAC behind the uplink (saved in $ZOC_ARTIFACTS/mac_table.json)"
UL=$(zoc_ctl uplink_list name=up0 --json) || zoc_die "uplink_list failed"
printf '%s\n' "$UL" >"$ZOC_ARTIFACTS/uplink_list.json"
rx=$(jq '.[0].stats.rx_frames' <<<"$UL")
tx=$(jq '.[0].stats.tx_frames' <<<"$UL")
[ "$rx" -ge 20 ] && [ "$tx" -ge 20 ] ||
	zoc_die "uplink counters too low: rx_frames=$rx tx_frames=$tx (want >= 20 each after 33 pings; $ZOC_ARTIFACTS/uplink_list.json)"
zoc_log "host: the switch learned both MACs; uplink rx_frames=$rx tx_frames=$tx"
zoc_ctl uplink_delete name=up0 >/dev/null || zoc_die "uplink_delete failed (above)"
for d in vb0 vn0; do
	zoc_ctl device_delete name=$d >/dev/null || zoc_die "device_delete name=$d failed (above)"
done
LIST=$(zoc_ctl device_list --json) || zoc_die "device_list failed after device_delete (above)"
if grep -qE '"(vb0|vn0)"' <<<"$LIST"; then zoc_die "device_list still shows vb0 or vn0 after device_delete: $LIST"; fi
zoc_log "host: device_delete removed vb0 and vn0"
ok=0
for _ in $(seq 20); do
	zoc_ctl switch_delete name=sw0 >/dev/null 2>&1 && { ok=1; break; }
	sleep 0.1
done
[ $ok = 1 ] || zoc_die "switch_delete failed 2 s after the uplink and vn0 were deleted"
zoc_zocd_stop || zoc_die "zocd did not shut down cleanly (above)"
zoc_zocd_check_log
if grep -q ' WARN ' "$ZOC_ZOCD_LOG"; then
	zoc_log "note: zocd logged warnings (count, message):"
	grep ' WARN ' "$ZOC_ZOCD_LOG" | sed 's/^[0-9:.]* WARN *\[[0-9]*\] //; s/0x[0-9a-f]*/0x…/g; s|/[^ :]*\.sock|SOCK|g' |
		sort | uniq -c | sort -rn | head -10 | sed 's/^/    zocd| /'
fi
zoc_log "PASS"
