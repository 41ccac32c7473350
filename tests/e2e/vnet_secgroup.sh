#!/bin/bash
# SPDX-License-Identifier: MIT
#
# vnet_secgroup.sh - security groups and connection tracking end to end (issue 5): a Linux
# guest (QEMU -netdev vhost-user + virtio-net-pci) on a zocd switch port with a security
# group, a host in a network namespace behind an AF_PACKET uplink (as vnet_uplink.sh).
#
# Group sg1: egress allowed only to TCP 8080 and ICMP; no ingress rule. The namespace runs
# busybox nc servers on 8080 and 9090 (both answer ZOCOK). In the guest:
#   - ping 10.77.0.1 (egress ICMP allowed, the reply passes as part of the session);
#   - nc to 8080 gets ZOCOK (egress allowed, the replies pass without any ingress rule);
#   - nc to 9090 gets nothing (its SYN is dropped at the port: drops.secgroup);
#   - a listener on 2222 (nc -ll).
# From the namespace, a connection to the guest's 2222 is dropped (no ingress rule) until
# secgroup_rule_add adds ingress TCP 2222 at run time; then it connects. The host checks the
# port's secgroup drop counter, conntrack_list (a session to 8080 and one from the namespace
# to 2222, none to 9090), conntrack_stats, save_config (port_set_secgroup after the device)
# and that secgroup_delete is refused while attached. Skips (77) if the namespace or the veth
# cannot be created.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/guest.sh"
zoc_init
# shellcheck disable=SC2034 # read by lib/guest.sh
ZOC_GUEST_MODULES="virtio_pci virtio_net"

for t in ip ethtool jq; do
	command -v $t >/dev/null 2>&1 || zoc_die "'$t' is not installed: run scripts/deps.sh as root (it installs iproute2, ethtool, jq)"
done
BB=/bin/busybox
NS=zocsg$$
VH=zsh$$ # root namespace end: the uplink's interface
VN=zsn$$ # namespace end: 10.77.0.1
zoc_netns_cleanup() {
	ip link del "$VH" 2>/dev/null || true
	ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null || true
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
ethtool -K "$VH" tx off tso off gso off gro off >/dev/null 2>&1 ||
	zoc_die "ethtool -K $VH tx off tso off gso off gro off failed: TCP across the uplink needs them off"
ip netns exec "$NS" ethtool -K "$VN" tx off tso off gso off gro off >/dev/null 2>&1 ||
	zoc_die "ethtool -K $VN (in $NS) tx off tso off gso off gro off failed"
zoc_log "veth $VH <-> $NS:$VN (10.77.0.1), offloads off"

# Servers in the namespace: both ports answer, so a failure on 9090 is the switch's doing.
cat >"$ZOC_WORK/ns-greet.sh" <<'EOF'
#!/bin/busybox sh
echo ZOCOK
read -t 5 line || true
EOF
chmod +x "$ZOC_WORK/ns-greet.sh"
for port in 8080 9090; do
	ip netns exec "$NS" $BB nc -ll -p $port -e "$ZOC_WORK/ns-greet.sh" \
		>"$ZOC_ARTIFACTS/ns-server-$port.log" 2>&1 &
	zoc_track $!
done
# The servers answer inside the namespace (so a failure later is not theirs).
for port in 8080 9090; do
	ok=0
	for _ in $(seq 50); do
		if out=$(echo x | ip netns exec "$NS" timeout 5 $BB nc -w 2 10.77.0.1 $port 2>/dev/null) &&
			[[ $out == *ZOCOK* ]]; then
			ok=1
			break
		fi
		sleep 0.1
	done
	[ $ok = 1 ] || zoc_die "the nc server on 10.77.0.1:$port in $NS does not answer ($ZOC_ARTIFACTS/ns-server-$port.log)"
done

cat >"$ZOC_WORK/guest.sh" <<'GEOF'
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 30 ]; do sleep 1; i=$((i + 1)); done
if [ ! -e /sys/class/net/eth0 ]; then
	zoc_fail "no eth0 30 s after boot: virtio-net did not come up"
	exit 1
fi
ip link set lo up
ip addr add 10.77.0.2/24 dev eth0
ip link set eth0 up
echo "ZOC-NET eth0 up: mac=$(cat /sys/class/net/eth0/address) uptime=$(zoc_up)"
ok=0
i=0
while [ $i -lt 60 ]; do
	if ping -c 1 -W 1 10.77.0.1 >/dev/null 2>&1; then ok=1; break; fi
	i=$((i + 1))
done
if [ $ok = 1 ]; then
	echo "ZOC-PING ok uptime=$(zoc_up)"
else
	zoc_fail "10.77.0.1 did not answer 60 pings (egress ICMP is allowed by sg1)"
	exit 0
fi
# Allowed: egress TCP 8080 (a few tries: TCG guests are slow).
ok=0
for t in 1 2 3; do
	out=$(echo hello | timeout 30 nc -w 10 10.77.0.1 8080 2>&1) || true
	case "$out" in *ZOCOK*) ok=1; break ;; esac
done
if [ $ok = 1 ]; then
	echo "ZOC-ALLOWED 8080 ok uptime=$(zoc_up)"
else
	zoc_fail "TCP to the allowed 10.77.0.1:8080 got no ZOCOK: '$out'"
fi
# Denied: egress TCP 9090 (the server is there; the switch drops the SYN).
out=$(echo hello | timeout 10 nc -w 3 10.77.0.1 9090 2>&1) || true
case "$out" in
*ZOCOK*) zoc_fail "TCP to the denied 10.77.0.1:9090 connected: '$out'" ;;
*) echo "ZOC-DENIED 9090 ok (no answer) uptime=$(zoc_up)" ;;
esac
# Ingress: a listener the namespace tries to reach.
cat >/tmp/greet.sh <<'EOF'
#!/bin/sh
echo GUESTOK
read -t 10 line || true
case "$line" in *ZOCDONE*) : >/tmp/done ;; esac
EOF
chmod +x /tmp/greet.sh
nc -ll -p 2222 -e /tmp/greet.sh >/dev/null 2>&1 &
sleep 1
echo "ZOC-LISTEN 2222 uptime=$(zoc_up)"
i=0
while [ ! -e /tmp/done ] && [ $i -lt 240 ]; do sleep 1; i=$((i + 1)); done
if [ -e /tmp/done ]; then
	echo "ZOC-INGRESS 2222 reached uptime=$(zoc_up)"
else
	zoc_fail "nobody completed a connection to 2222 within 240 s of listening"
fi
exit 0
GEOF

zoc_guest_prepare
zoc_zocd_start
zoc_ctl switch_create name=sw0 >/dev/null || zoc_die "switch_create failed (above)"
zoc_ctl uplink_create name=up0 switch=sw0 type=af_packet ifname="$VH" >/dev/null ||
	zoc_die "uplink_create af_packet on $VH failed (above)"
zoc_ctl virtio_net_create name=vn1 socket="$ZOC_WORK/vn1.sock" switch=sw0 >/dev/null ||
	zoc_die "virtio_net_create failed (above)"
zoc_wait_sock "$ZOC_WORK/vn1.sock" "$ZOC_ZOCD_PID" 10 zocd "$ZOC_ZOCD_LOG"
zoc_ctl secgroup_create name=sg1 >/dev/null || zoc_die "secgroup_create failed (above)"
zoc_ctl secgroup_rule_add secgroup=sg1 direction=egress protocol=tcp port_min=8080 port_max=8080 >/dev/null ||
	zoc_die "secgroup_rule_add egress tcp 8080 failed (above)"
zoc_ctl secgroup_rule_add secgroup=sg1 direction=egress protocol=icmp >/dev/null ||
	zoc_die "secgroup_rule_add egress icmp failed (above)"
zoc_ctl port_set_secgroup device=vn1 secgroup=sg1 >/dev/null || zoc_die "port_set_secgroup vn1 sg1 failed (above)"
zoc_ctl secgroup_delete name=sg1 >/dev/null 2>&1 && zoc_die "secgroup_delete succeeded while sg1 was attached to vn1"
zoc_log "zocd: switch sw0 with uplink up0 (af_packet on $VH) and vn1 in group sg1 (egress tcp 8080 + icmp, no ingress)"

# vectors=0 (INTx): see vnet_guest.sh (QEMU 7.2 TCG segfaults with MSI-X on vhost-user net).
GMAC=52:54:00:77:00:02
zoc_guest_start guest "$ZOC_WORK/guest.sh" --timeout 600 -- \
	-chardev "socket,id=c1,path=$ZOC_WORK/vn1.sock" \
	-netdev "vhost-user,chardev=c1,id=n1" \
	-device "virtio-net-pci,netdev=n1,mac=$GMAC,vectors=0"
if ! zoc_guest_wait_line 'ZOC-LISTEN' 500; then
	zoc_guest_wait || true
	zoc_die "the guest never reported its listener on 2222 (report above)"
fi
zoc_log "guest: $(zoc_guest_results | grep -E 'ZOC-(ALLOWED|DENIED)' | tr '\n' ';')"

# From the namespace to the guest: dropped while sg1 has no ingress rule.
out=$(echo ZOCNOTYET | ip netns exec "$NS" timeout 10 $BB nc -w 3 10.77.0.2 2222 2>&1) || true
[[ $out == *GUESTOK* ]] && zoc_die "the namespace reached the guest's 2222 without an ingress rule: '$out'"
drops_before=$(zoc_ctl device_stats name=vn1 --json | jq '.[0].switch_port.stats.drops.secgroup')
zoc_log "namespace -> guest:2222 without an ingress rule: no connection (vn1 drops.secgroup=$drops_before)"
zoc_ctl secgroup_rule_add secgroup=sg1 direction=ingress protocol=tcp port_min=2222 port_max=2222 cidr=10.77.0.0/24 >/dev/null ||
	zoc_die "secgroup_rule_add ingress tcp 2222 failed (above)"
ok=0
for t in 1 2 3; do
	out=$(echo ZOCDONE | ip netns exec "$NS" timeout 40 $BB nc -w 15 10.77.0.2 2222 2>&1) || true
	if [[ $out == *GUESTOK* ]]; then ok=1; break; fi
	zoc_log "try $t: namespace -> guest:2222 after the rule: '$out'"
done
[ $ok = 1 ] || zoc_die "the namespace could not reach the guest's 2222 after the ingress rule was added"
zoc_log "namespace -> guest:2222 after secgroup_rule_add ingress tcp 2222: connected"
# Sessions now (the 8080 one is in TIME_WAIT for 120 s at most).
CL=$(zoc_ctl conntrack_list port=vn1 protocol=tcp --json) || zoc_die "conntrack_list failed"
printf '%s\n' "$CL" >"$ZOC_ARTIFACTS/conntrack_list.json"
jq -e '[.sessions[] | select(.dport == 8080 and .direction == "egress")] | length >= 1' <<<"$CL" >/dev/null ||
	zoc_die "conntrack_list has no egress session to 8080 ($ZOC_ARTIFACTS/conntrack_list.json)"
jq -e '[.sessions[] | select(.dport == 2222 and .direction == "ingress")] | length >= 1' <<<"$CL" >/dev/null ||
	zoc_die "conntrack_list has no ingress session to 2222 ($ZOC_ARTIFACTS/conntrack_list.json)"
jq -e '[.sessions[] | select(.dport == 9090)] | length == 0' <<<"$CL" >/dev/null ||
	zoc_die "conntrack_list has a session to the denied 9090 ($ZOC_ARTIFACTS/conntrack_list.json)"
CS=$(zoc_ctl conntrack_stats --json) || zoc_die "conntrack_stats failed"
printf '%s\n' "$CS" >"$ZOC_ARTIFACTS/conntrack_stats.json"
used=$(jq '.used' <<<"$CS")
[ "$used" -ge 2 ] || zoc_die "conntrack_stats used=$used; want >= 2 ($ZOC_ARTIFACTS/conntrack_stats.json)"
zoc_log "host: sessions $used ($(jq -c '.states | with_entries(select(.value > 0))' <<<"$CS")), flow cache hits $(jq '.flow_cache_hits' <<<"$CS")"

zoc_guest_wait || zoc_die "the guest failed (reasons above)"
zoc_zocd_alive || zoc_die "zocd died while the guest ran (log: $ZOC_ZOCD_LOG)"
zoc_guest_results | grep -q 'ZOC-ALLOWED 8080 ok' || zoc_die "the guest did not report the allowed connection"
zoc_guest_results | grep -q 'ZOC-DENIED 9090 ok' || zoc_die "the guest did not report the denied connection"

ST=$(zoc_ctl device_stats name=vn1 --json) || zoc_die "device_stats failed"
printf '%s\n' "$ST" >"$ZOC_ARTIFACTS/device_stats.json"
sgd=$(jq '.[0].switch_port.stats.drops.secgroup' <<<"$ST")
[ "$sgd" -ge 2 ] || zoc_die "vn1 counted $sgd secgroup drops; want >= 2 (the SYNs to 9090 and to 2222; $ZOC_ARTIFACTS/device_stats.json)"
[ "$(jq -r '.[0].switch_port.secgroup' <<<"$ST")" = sg1 ] || zoc_die "vn1's port JSON does not name sg1"
zoc_log "host: vn1 drops.secgroup=$sgd"
zoc_ctl save_config --json >"$ZOC_ARTIFACTS/save_config.json" || zoc_die "save_config failed"
jq -e '(map(.method) | index("port_set_secgroup")) > (map(.method) | index("virtio_net_create"))' \
	"$ZOC_ARTIFACTS/save_config.json" >/dev/null ||
	zoc_die "save_config does not replay port_set_secgroup after virtio_net_create ($ZOC_ARTIFACTS/save_config.json)"

zoc_ctl port_set_secgroup device=vn1 secgroup:=null >/dev/null || zoc_die "detaching sg1 failed"
zoc_ctl secgroup_delete name=sg1 >/dev/null || zoc_die "secgroup_delete failed after the detach"
zoc_ctl uplink_delete name=up0 >/dev/null || zoc_die "uplink_delete failed"
zoc_ctl device_delete name=vn1 >/dev/null || zoc_die "device_delete vn1 failed"
sleep 0.5
zoc_ctl switch_delete name=sw0 >/dev/null || zoc_die "switch_delete failed after the uplink and the device were deleted"
zoc_zocd_stop || zoc_die "zocd did not shut down cleanly (above)"
zoc_zocd_check_log
zoc_log "PASS"
