#!/bin/bash
# SPDX-License-Identifier: MIT
#
# uplink_xdp.sh - two AF_XDP uplinks on one zocd switch carry traffic between two network
# namespaces (no guest: zocd + zocctl only).
#
#   ns A: xdpna<pid> 10.78.0.1/24 <-veth-> xdpa<pid> (root ns) = uplink upa (xdp_mode auto)
#   ns B: xdpnb<pid> 10.78.0.2/24 <-veth-> xdpb<pid> (root ns) = uplink upb (xdp_mode skb)
#
# ping A -> B 5/5 (56 B) and 5/5 (1400 B) through both uplinks and the switch; with iperf3
# and ethtool on the host a TCP run (ZOC_IPERF_S, default 3 s) must complete; the switch
# learned both MACs; uplink_list shows frames both ways, the XDP mode, the kernel's
# XDP_STATISTICS without invalid descriptors; save_config keeps type and xdp_mode. Then
# zocd gets SIGTERM (not zocd_shutdown): it must exit 0 and leave no XDP program on either
# interface.
# Skips (77): no ip / netns / veth, zocd built without AF_XDP, or the kernel refuses AF_XDP
# (no CONFIG_XDP_SOCKETS, no CAP_BPF) - the reason is printed.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/guest.sh"
zoc_init

command -v ip >/dev/null 2>&1 || zoc_skip "'ip' (iproute2) is not installed"
# iputils ping if the host has it, else busybox's (busybox-static is in scripts/deps.sh).
if command -v ping >/dev/null 2>&1; then PING=(ping); else PING=(/bin/busybox ping); fi
NSA=xdpnsa$$
NSB=xdpnsb$$
VA=xdpa$$ # root namespace ends: the uplinks' interfaces
VB=xdpb$$
zoc_xdp_cleanup() {
	ip link del "$VA" 2>/dev/null || true
	ip link del "$VB" 2>/dev/null || true
	ip netns del "$NSA" 2>/dev/null || true
	ip netns del "$NSB" 2>/dev/null || true
}
ZOC_CLEANUP_HOOKS+=(zoc_xdp_cleanup)
for n in A B; do
	ns=NS$n
	v=V$n
	ip netns add "${!ns}" 2>"$ZOC_ARTIFACTS/netns.err" ||
		zoc_skip "cannot create a network namespace (needs root / CAP_SYS_ADMIN): $(cat "$ZOC_ARTIFACTS/netns.err")"
	ip link add "${!v}" type veth peer name "xdpn${n,,}$$" netns "${!ns}" 2>"$ZOC_ARTIFACTS/netns.err" ||
		zoc_skip "cannot create a veth pair (veth module?): $(cat "$ZOC_ARTIFACTS/netns.err")"
	ip -n "${!ns}" link set lo up
	ip -n "${!ns}" link set "xdpn${n,,}$$" up
	ip link set "${!v}" up
done
ip -n "$NSA" addr add 10.78.0.1/24 dev "xdpna$$"
ip -n "$NSB" addr add 10.78.0.2/24 dev "xdpnb$$"
MAC_A=$(ip -n "$NSA" -o link show "xdpna$$" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
MAC_B=$(ip -n "$NSB" -o link show "xdpnb$$" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
if command -v ethtool >/dev/null 2>&1; then
	# A veth with TX checksum offload hands over frames whose checksum is not filled in.
	for ns in "$NSA" "$NSB"; do
		for i in $(ip -n "$ns" -o link show | awk -F': ' '/xdpn/{print $2}' | cut -d@ -f1); do
			ip netns exec "$ns" ethtool -K "$i" tx off tso off gso off >/dev/null 2>&1 || true
		done
	done
fi
zoc_log "ns $NSA:xdpna$$ 10.78.0.1 ($MAC_A) <-> $VA | zocd | $VB <-> ns $NSB:xdpnb$$ 10.78.0.2 ($MAC_B)"

zoc_zocd_start
zoc_ctl switch_create name=sw0 >/dev/null || zoc_die "switch_create failed (above)"
if ! out=$("$ZOCCTL" -s "$ZOC_ZOCD_SOCK" uplink_create name=upa switch=sw0 type=af_xdp ifname="$VA" 2>&1); then
	printf '%s\n' "$out" >>"$ZOC_ARTIFACTS/zocctl.log"
	case $out in
	*"built without AF_XDP"*) zoc_skip "zocd was built without AF_XDP (meson -Daf_xdp=enabled, libxdp-dev + libbpf-dev): $out" ;;
	*"Operation not permitted"* | *"Permission denied"* | *"Address family not supported"*)
		zoc_skip "the kernel refuses AF_XDP here: $out" ;;
	esac
	zoc_die "uplink_create af_xdp on $VA failed: $out (zocd log: $ZOC_ZOCD_LOG)"
fi
zoc_ctl uplink_create name=upb switch=sw0 type=af_xdp ifname="$VB" xdp_mode=skb >/dev/null ||
	zoc_die "uplink_create af_xdp xdp_mode=skb on $VB failed (above; zocd log: $ZOC_ZOCD_LOG)"
for v in "$VA" "$VB"; do
	ip link show "$v" | grep -q 'prog/xdp' || zoc_die "no XDP program attached to $v after uplink_create ($(ip link show "$v" | tr '\n' ' '))"
done
zoc_log "zocd: switch sw0 with AF_XDP uplinks upa ($VA, auto) and upb ($VB, skb)"

ok=0
for i in $(seq 20); do
	if ip netns exec "$NSA" "${PING[@]}" -c 1 -W 1 10.78.0.2 >/dev/null 2>&1; then ok=1; break; fi
done
[ $ok = 1 ] || zoc_die "10.78.0.2 did not answer 10.78.0.1 through the two AF_XDP uplinks within 20 pings (zocd log: $ZOC_ZOCD_LOG; try: zocctl uplink_list)"
for size in 56 1400; do
	ip netns exec "$NSA" "${PING[@]}" -c 5 -i 0.2 -W 2 -s $size 10.78.0.2 >"$ZOC_ARTIFACTS/ping-$size.txt" 2>&1 || true
	grep -qE '5 packets transmitted, 5 (packets )?received' "$ZOC_ARTIFACTS/ping-$size.txt" ||
		zoc_die "ping -s $size 10.78.0.2: not 5/5: $(grep -E 'transmitted' "$ZOC_ARTIFACTS/ping-$size.txt")"
	zoc_log "ping -s $size: $(grep -E 'transmitted' "$ZOC_ARTIFACTS/ping-$size.txt"); $(grep -E '^(rtt|round-trip)' "$ZOC_ARTIFACTS/ping-$size.txt" || true)"
done

# TCP through both uplinks when the host has iperf3 and ethtool (offloads off above): a
# figure, and frames in bursts rather than one at a time.
if command -v iperf3 >/dev/null 2>&1 && command -v ethtool >/dev/null 2>&1; then
	ip netns exec "$NSB" iperf3 -s -1 -B 10.78.0.2 >"$ZOC_ARTIFACTS/iperf3-server.log" 2>&1 &
	zoc_track $!
	sleep 0.5
	ip netns exec "$NSA" timeout 30 iperf3 -c 10.78.0.2 -t "${ZOC_IPERF_S:-3}" -f m >"$ZOC_ARTIFACTS/iperf3.log" 2>&1 ||
		zoc_die "iperf3 from 10.78.0.1 to 10.78.0.2 through the AF_XDP uplinks failed: $(tail -3 "$ZOC_ARTIFACTS/iperf3.log" | tr '\n' ' ')"
	zoc_log "iperf3 A -> B: $(grep -E 'receiver' "$ZOC_ARTIFACTS/iperf3.log" | tr -s ' ')"
else
	zoc_log "no iperf3 or ethtool on the host: ping only"
fi

MACS=$(zoc_ctl switch_mac_table name=sw0 --json) || zoc_die "switch_mac_table failed"
printf '%s\n' "$MACS" >"$ZOC_ARTIFACTS/mac_table.json"
grep -qi "$MAC_A" <<<"$MACS" && grep -qi "$MAC_B" <<<"$MACS" ||
	zoc_die "the switch did not learn both namespaces' MACs (saved in $ZOC_ARTIFACTS/mac_table.json)"
UL=$(zoc_ctl uplink_list --json) || zoc_die "uplink_list failed"
printf '%s\n' "$UL" >"$ZOC_ARTIFACTS/uplink_list.json"
for u in upa upb; do
	q="(.[] | select(.name == \"$u\"))"
	rx=$(jq "$q.stats.rx_frames" <<<"$UL")
	tx=$(jq "$q.stats.tx_frames" <<<"$UL")
	mode=$(jq -r "$q.xdp.mode" <<<"$UL")
	zc=$(jq -r "$q.xdp.zerocopy" <<<"$UL")
	inval=$(jq "$q.xdp.kernel.rx_invalid_descs + $q.xdp.kernel.tx_invalid_descs" <<<"$UL")
	bad=$(jq "$q.stats.rx_errors + $q.stats.tx_errors" <<<"$UL")
	[ "$rx" -ge 10 ] && [ "$tx" -ge 10 ] ||
		zoc_die "$u: counters too low: rx_frames=$rx tx_frames=$tx (want >= 10 each; $ZOC_ARTIFACTS/uplink_list.json)"
	[ "$inval" = 0 ] && [ "$bad" = 0 ] ||
		zoc_die "$u: invalid descriptors ($inval) or ring errors ($bad) (see $ZOC_ARTIFACTS/uplink_list.json)"
	zoc_log "$u: mode $mode, zerocopy $zc, rx_frames $rx, tx_frames $tx"
done
[ "$(jq -r '.[] | select(.name == "upb") | .xdp.mode' <<<"$UL")" = skb ] ||
	zoc_die "upb was asked for xdp_mode=skb but reports $(jq -r '.[] | select(.name == "upb") | .xdp.mode' <<<"$UL")"

CONF=$(zoc_ctl save_config) || zoc_die "save_config failed"
printf '%s\n' "$CONF" >"$ZOC_ARTIFACTS/config.json"
[ "$(jq -r '.[] | select(.method == "uplink_create" and .params.name == "upb") | .params.type + " " + .params.xdp_mode' <<<"$CONF")" = "af_xdp skb" ] ||
	zoc_die "save_config does not carry upb's type af_xdp and xdp_mode skb (see $ZOC_ARTIFACTS/config.json)"

# SIGTERM: zocd deletes its devices (the uplinks: sockets closed, programs detached, UMEM
# freed) and exits 0.
kill -TERM "$ZOC_ZOCD_PID"
rc=0
for i in $(seq 100); do zoc_zocd_alive || break; sleep 0.1; done
zoc_zocd_alive && zoc_die "zocd did not exit within 10 s of SIGTERM (log: $ZOC_ZOCD_LOG)"
wait "$ZOC_ZOCD_PID" 2>/dev/null || rc=$?
zoc_untrack "$ZOC_ZOCD_PID"
[ $rc = 0 ] || zoc_die "zocd exited with status $rc after SIGTERM (log: $ZOC_ZOCD_LOG)"
zoc_zocd_check_log
for v in "$VA" "$VB"; do
	if ip link show "$v" | grep -q 'prog/xdp'; then
		zoc_die "an XDP program is still attached to $v after zocd stopped on SIGTERM: $(ip link show "$v" | tr '\n' ' ')"
	fi
done
zoc_log "SIGTERM: zocd exited 0, no XDP program left on $VA / $VB"
zoc_log "PASS"
