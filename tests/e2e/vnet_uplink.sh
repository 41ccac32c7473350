#!/bin/bash
# SPDX-License-Identifier: MIT
#
# vnet_uplink.sh - a Linux guest (QEMU -netdev vhost-user + virtio-net-pci) on a zocd switch
# pings a host in a network namespace across an AF_PACKET uplink (issue 4 (a)).
#
# Host: a veth pair, one end in a namespace with 10.77.0.1/24, the other in the root
# namespace as the uplink's interface (TX checksum and segmentation offloads off where ethtool
# exists: the uplink drops GSO super-frames, see docs/uplinks.md, and a veth with TX checksum
# offload hands AF_PACKET TCP frames whose checksum is not filled in). Guest 10.77.0.2/24:
# 5/5 replies; then a 5 s iperf3 (ZOC_IPERF_S) from the guest (the host's iperf3 and its
# libraries copied into the initramfs) to a one-shot server in the namespace must complete:
# both ends report, the bandwidth is printed. iperf3 and ethtool come from scripts/deps.sh.
# Then: the switch learned the guest's and the namespace's MACs, the uplink counted frames
# both ways, uplink_delete / device_delete / switch_delete clean up. Skips (77) if the
# namespace or the veth cannot be created; both are removed on every exit path.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/guest.sh"
zoc_init
# shellcheck disable=SC2034 # read by lib/guest.sh
ZOC_GUEST_MODULES="virtio_pci virtio_net"

# Tools, not kernel capabilities: missing ones fail (make check installs them).
for t in ip iperf3 ethtool; do
	command -v $t >/dev/null 2>&1 || zoc_die "'$t' is not installed: run scripts/deps.sh as root (it installs iproute2, iperf3, ethtool)"
done
NS=zocup$$
VH=zuh$$ # root namespace end: the uplink's interface
VN=zun$$ # namespace end: 10.77.0.1
zoc_netns_cleanup() {
	ip link del "$VH" 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
}
ZOC_CLEANUP_HOOKS+=(zoc_netns_cleanup)
ip netns add "$NS" 2>"$ZOC_ARTIFACTS/netns.err" ||
	zoc_skip "cannot create a network namespace (needs root / CAP_SYS_ADMIN): $(cat "$ZOC_ARTIFACTS/netns.err")"
ip link add "$VH" type veth peer name "$VN" netns "$NS" 2>"$ZOC_ARTIFACTS/netns.err" ||
	zoc_skip "cannot create a veth pair (veth module?): $(cat "$ZOC_ARTIFACTS/netns.err")"
ip -n "$NS" link set lo up
ip -n "$NS" addr add 10.77.0.1/24 dev "$VN"
ip -n "$NS" link set "$VN" up
ip link set "$VH" up
NS_MAC=$(ip -n "$NS" -o link show "$VN" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
ethtool -K "$VH" tx off tso off gso off gro off >/dev/null 2>&1 ||
	zoc_die "ethtool -K $VH tx off tso off gso off gro off failed: TCP across the uplink needs them off"
ip netns exec "$NS" ethtool -K "$VN" tx off tso off gso off gro off >/dev/null 2>&1 ||
	zoc_die "ethtool -K $VN (in $NS) tx off tso off gso off gro off failed"
zoc_log "veth $VH <-> $NS:$VN (10.77.0.1, mac $NS_MAC), offloads off"

cat >"$ZOC_WORK/guest.sh" <<'GEOF'
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 30 ]; do sleep 1; i=$((i + 1)); done
if [ ! -e /sys/class/net/eth0 ]; then
	zoc_fail "no eth0 30 s after boot: virtio-net did not come up"
	ls /sys/bus/virtio/devices/ 2>&1
	exit 1
fi
ip link set lo up
ip addr add 10.77.0.2/24 dev eth0
ip link set eth0 up
echo "ZOC-NET eth0 up: mac=$(cat /sys/class/net/eth0/address) mtu=$(cat /sys/class/net/eth0/mtu) carrier=$(cat /sys/class/net/eth0/carrier 2>/dev/null) uptime=$(zoc_up)"
ok=0
i=0
while [ $i -lt 60 ]; do
	if ping -c 1 -W 1 10.77.0.1 >/dev/null 2>&1; then ok=1; break; fi
	i=$((i + 1))
done
if [ $ok = 1 ]; then
	ping -c 5 -i 0.2 -W 2 10.77.0.1 >/tmp/ping 2>&1 || true
	echo "ZOC-PING $(grep -E 'transmitted' /tmp/ping) uptime=$(zoc_up)"
	grep -qE '5 packets transmitted, 5 (packets )?received' /tmp/ping ||
		zoc_fail "ping 10.77.0.1 worked once, then not 5/5: $(tail -2 /tmp/ping)"
else
	zoc_fail "10.77.0.1 (the namespace behind the AF_PACKET uplink) did not answer within 60 pings"
	exit 0
fi
t0=$(zoc_up)
if iperf3 -c 10.77.0.1 -t "$IPERF_S" -f m >/tmp/iperf 2>&1 &&
	grep -q 'receiver' /tmp/iperf; then
	echo "ZOC-IPERF $(grep -E 'sender|receiver' /tmp/iperf | tr -s ' ' | tr '\n' ';') (uptime $t0 -> $(zoc_up))"
else
	zoc_fail "iperf3 -c 10.77.0.1 -t $IPERF_S did not complete: $(tail -3 /tmp/iperf | tr '\n' ' ')"
	sed 's/^/ZOC-IPERF-LOG /' /tmp/iperf | tail -20
fi
exit 0
GEOF

# iperf3: a one-shot server in the namespace, the client in the guest.
IPERF_S=${ZOC_IPERF_S:-5}
ZOC_GUEST_BINS="${ZOC_GUEST_BINS:-} iperf3"

zoc_guest_prepare
zoc_zocd_start
zoc_ctl switch_create name=sw0 >/dev/null || zoc_die "switch_create failed (above)"
zoc_ctl uplink_create name=up0 switch=sw0 type=af_packet ifname="$VH" >/dev/null ||
	zoc_die "uplink_create af_packet on $VH failed (above)"
zoc_ctl virtio_net_create name=vn1 socket="$ZOC_WORK/vn1.sock" switch=sw0 >/dev/null ||
	zoc_die "virtio_net_create failed (above)"
zoc_wait_sock "$ZOC_WORK/vn1.sock" "$ZOC_ZOCD_PID" 10 zocd "$ZOC_ZOCD_LOG"
zoc_log "zocd: switch sw0 with uplink up0 (af_packet on $VH) and vn1"

ip netns exec "$NS" iperf3 -s -1 >"$ZOC_ARTIFACTS/iperf3-server.log" 2>&1 &
IPERF_PID=$!
zoc_track $IPERF_PID

# vectors=0 (INTx): see vnet_guest.sh (QEMU 7.2 TCG segfaults with MSI-X on vhost-user net).
GMAC=52:54:00:77:00:02
zoc_guest_run guest "$ZOC_WORK/guest.sh" --timeout 300 --env IPERF_S="$IPERF_S" -- \
	-chardev "socket,id=c1,path=$ZOC_WORK/vn1.sock" \
	-netdev "vhost-user,chardev=c1,id=n1" \
	-device "virtio-net-pci,netdev=n1,mac=$GMAC,vectors=0" ||
	zoc_die "the guest failed (reasons above)"

zoc_zocd_alive || zoc_die "zocd died while the guest ran (log: $ZOC_ZOCD_LOG)"
# The one-shot server ends after the client's test, with status 0 when it completed.
rc=0
for _ in $(seq 50); do kill -0 $IPERF_PID 2>/dev/null || break; sleep 0.1; done
kill -0 $IPERF_PID 2>/dev/null && zoc_die "the iperf3 server in $NS still runs after the guest ended: the test did not complete ($ZOC_ARTIFACTS/iperf3-server.log)"
wait $IPERF_PID || rc=$?
zoc_untrack $IPERF_PID
[ $rc = 0 ] || zoc_die "the iperf3 server in $NS exited with status $rc ($ZOC_ARTIFACTS/iperf3-server.log)"
BW=$(zoc_guest_results | grep -o 'ZOC-IPERF .*' | grep -oE '[0-9.]+ [KMG]bits/sec +receiver' | awk '{print $1 " " $2}')
[ -n "$BW" ] || zoc_die "the guest reported no iperf3 receiver bandwidth"
zoc_log "iperf3 guest -> $NS across the uplink, ${IPERF_S} s: $BW (receiver)"
MACS=$(zoc_ctl switch_mac_table name=sw0 --json) || zoc_die "switch_mac_table failed"
printf '%s\n' "$MACS" >"$ZOC_ARTIFACTS/mac_table.json"
grep -qi "$GMAC" <<<"$MACS" || zoc_die "the switch did not learn the guest's MAC (saved in $ZOC_ARTIFACTS/mac_table.json)"
grep -qi "$NS_MAC" <<<"$MACS" || zoc_die "the switch did not learn the namespace's MAC $NS_MAC behind the uplink (saved in $ZOC_ARTIFACTS/mac_table.json)"
UL=$(zoc_ctl uplink_list name=up0 --json) || zoc_die "uplink_list failed"
printf '%s\n' "$UL" >"$ZOC_ARTIFACTS/uplink_list.json"
rx=$(jq '.[0].stats.rx_frames' <<<"$UL")
tx=$(jq '.[0].stats.tx_frames' <<<"$UL")
[ "$rx" -ge 5 ] && [ "$tx" -ge 5 ] ||
	zoc_die "uplink counters too low: rx_frames=$rx tx_frames=$tx (want >= 5 each; $ZOC_ARTIFACTS/uplink_list.json)"
zoc_ctl device_stats --json >"$ZOC_ARTIFACTS/device_stats.json" || zoc_die "device_stats failed"
zoc_log "host: the switch learned both MACs; uplink rx_frames=$rx tx_frames=$tx"

zoc_ctl switch_delete name=sw0 >/dev/null 2>&1 && zoc_die "switch_delete succeeded while sw0 still had ports"
zoc_ctl uplink_delete name=up0 >/dev/null || zoc_die "uplink_delete failed"
zoc_ctl device_delete name=vn1 >/dev/null || zoc_die "device_delete vn1 failed"
sleep 0.5
zoc_ctl switch_delete name=sw0 >/dev/null || zoc_die "switch_delete failed after the uplink and the device were deleted"
zoc_zocd_stop || zoc_die "zocd did not shut down cleanly (above)"
zoc_zocd_check_log
zoc_log "PASS"
