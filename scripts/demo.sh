#!/bin/bash
# SPDX-License-Identifier: MIT
#
# demo.sh (make demo) - ZOC in a few minutes, storage and network:
#   1. install what is missing, build
#   2. the host side of the network: a namespace (DEMO_NETNS, 10.123.0.1/24) and a veth
#      pair, one end in it, the other (DEMO_VETH0) left in the root namespace for zocd
#   3. write a JSON config (the format save_config writes) and start `zocd --config` with:
#      vb0 (vhost-user-blk) on an io_uring file bdev (256 MiB on disk), vb1 on a null bdev
#      (1 GiB), switch sw0, vn0 (virtio-net over vhost-user) on sw0 and up0, an AF_PACKET
#      uplink on DEMO_VETH0
#   4. boot a Linux guest (QEMU, TCG) with the two disks and the NIC; in it: the virtio
#      devices its drivers bound, fio (4k random read and write, QD 32) on each disk, the NIC
#      up as 10.123.0.2, ping to the namespace and a short iperf3 run to it
#   5. print what zocd saw (device_list, device_stats, the switch's MAC table and port
#      counters, the uplink's counters), shut everything down (also on Ctrl-C or failure)
#
# Without root (or without network namespaces / veth) the network half is skipped with the
# reason, and the disks still run. The guest's NIC is then on a switch without uplink.
#
# Environment: DEMO_RUNTIME=5 (seconds per fio run), DEMO_IPERF_S=4 (seconds of iperf3),
# DEMO_NETNS=zoc-demo (namespace), DEMO_VETH=zoc-demo (veth ends DEMO_VETH0 / DEMO_VETH1),
# ZOC_E2E_SERVER=qsd (serve the disks with qemu-storage-daemon instead, for comparison; no
# network then), and those of tests/e2e/lib/guest.sh. In-guest figures are bound by the
# emulated (TCG) CPU: they show that the path works, not how fast zocd is (bench/ measures
# that).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO_RUNTIME=${DEMO_RUNTIME:-5}
DEMO_IPERF_S=${DEMO_IPERF_S:-4}
DEMO_NETNS=${DEMO_NETNS:-zoc-demo}
DEMO_VETH=${DEMO_VETH:-zoc-demo}
DEMO_HOST_IP=10.123.0.1
DEMO_GUEST_IP=10.123.0.2
DEMO_GUEST_MAC=52:54:00:7a:0c:02
DEMO_STEP=start
DEMO_T0=$SECONDS

for v in DEMO_RUNTIME DEMO_IPERF_S; do
	[[ ${!v} =~ ^[1-9][0-9]{0,2}$ ]] || { echo "demo: $v must be a number of seconds, 1 to 999 (got '${!v}')"; exit 2; }
done

step() {
	DEMO_STEP=$*
	printf '\n==> %s\n' "$*"
}

step "dependencies (scripts/deps.sh: installs missing Debian packages, needs root)"
"$ROOT/scripts/deps.sh"
step "build (meson + ninja in build/)"
make -C "$ROOT" --no-print-directory build-main

export ZOC_ARTIFACTS=${ZOC_ARTIFACTS:-$ROOT/build/demo-logs}
. "$ROOT/tests/e2e/lib/guest.sh"
zoc_init demo

# On every exit: say what happened and what to do, then lib/guest.sh's cleanup (hooks:
# namespace and veth; then QEMU, zocd, iperf3; the work dir).
demo_exit() {
	local rc=$?
	trap - INT TERM
	if [ "$rc" = 130 ] || [ "$rc" = 143 ]; then
		printf '\n==> demo interrupted during "%s": cleaning up (QEMU, zocd, namespace, veth)\n' "$DEMO_STEP"
	elif [ "$rc" != 0 ]; then
		printf '\n==> demo FAILED during "%s" (exit status %s)\n' "$DEMO_STEP" "$rc"
		[ -z "$DEMO_ERR" ] ||
			echo "    A command failed unexpectedly: $DEMO_ERR. That is a bug in scripts/demo.sh: please report it with the logs."
		echo "    What went wrong is in the FAIL / ERROR lines above. Logs: $ZOC_ARTIFACTS"
		echo "    (zocd.log, demo.console.log: the guest's console, zocctl.log, demo.config.json)."
		echo "    Fix what they name and run 'make demo' again; ZOC_KEEP_WORK=1 keeps the work dir."
		echo "    Cleaning up (QEMU, zocd, namespace, veth) ..."
	fi
	# zoc_cleanup exits with the status it finds in $?; a bare failing command here would
	# end the script at once (set -e), hence the ||.
	if [ "$rc" = 0 ]; then zoc_cleanup; else (exit "$rc") || zoc_cleanup; fi
}
trap demo_exit EXIT
DEMO_ERR=
trap 'DEMO_ERR="line $LINENO: $BASH_COMMAND (status $?)"' ERR

# ---------------------------------------------------------------- network
# demo_net_setup: namespace + veth. Returns 1 with DEMO_NET_SKIP set when the machine
# cannot give them (the demo then runs without the uplink).
DEMO_NET=0
DEMO_NET_SKIP=
DEMO_NET_MADE=0
DEMO_VH=${DEMO_VETH}0
DEMO_VN=${DEMO_VETH}1
demo_net_cleanup() {
	[ "$DEMO_NET_MADE" = 1 ] || return 0
	ip link del "$DEMO_VH" 2>/dev/null || true
	ip netns del "$DEMO_NETNS" 2>/dev/null || true
	DEMO_NET_MADE=0
	zoc_log "removed namespace $DEMO_NETNS and veth $DEMO_VH"
}
demo_net_setup() {
	local err=$ZOC_ARTIFACTS/netns.err
	if [ "${ZOC_E2E_SERVER}" = qsd ]; then
		DEMO_NET_SKIP="ZOC_E2E_SERVER=qsd serves only the disks; the network needs zocd"
		return 1
	fi
	if [ "$(id -u)" != 0 ]; then
		DEMO_NET_SKIP="not root: a network namespace and a veth pair need root (run 'make demo' as root)"
		return 1
	fi
	command -v ip >/dev/null 2>&1 || {
		DEMO_NET_SKIP="'ip' is not installed (scripts/deps.sh installs iproute2, as root)"
		return 1
	}
	if [ ${#DEMO_VH} -gt 15 ]; then
		DEMO_NET_SKIP="DEMO_VETH=$DEMO_VETH is too long: interface names have at most 15 characters"
		return 1
	fi
	# Leftovers of a run that was killed with SIGKILL (the names are the demo's own).
	if ip netns list 2>/dev/null | grep -qE "^$DEMO_NETNS( |\$)"; then
		zoc_log "removing namespace $DEMO_NETNS left over from an earlier run"
		ip netns del "$DEMO_NETNS" 2>/dev/null || true
	fi
	ip link del "$DEMO_VH" 2>/dev/null || true
	ip netns add "$DEMO_NETNS" 2>"$err" || {
		DEMO_NET_SKIP="cannot create network namespace $DEMO_NETNS: $(cat "$err")"
		return 1
	}
	DEMO_NET_MADE=1
	ZOC_CLEANUP_HOOKS+=(demo_net_cleanup)
	ip link add "$DEMO_VH" type veth peer name "$DEMO_VN" netns "$DEMO_NETNS" 2>"$err" || {
		DEMO_NET_SKIP="cannot create veth pair $DEMO_VH/$DEMO_VN (veth module missing?): $(cat "$err")"
		demo_net_cleanup
		return 1
	}
	ip -n "$DEMO_NETNS" link set lo up
	ip -n "$DEMO_NETNS" addr add "$DEMO_HOST_IP/24" dev "$DEMO_VN"
	ip -n "$DEMO_NETNS" link set "$DEMO_VN" up
	ip link set "$DEMO_VH" up
	# The AF_PACKET uplink takes no GSO super-frames, and a veth with TX checksum offload
	# hands it TCP frames without checksum (docs/uplinks.md): offloads off on both ends.
	if command -v ethtool >/dev/null 2>&1; then
		if ! { ethtool -K "$DEMO_VH" tx off tso off gso off gro off &&
			ip netns exec "$DEMO_NETNS" ethtool -K "$DEMO_VN" tx off tso off gso off gro off; } >/dev/null 2>&1; then
			zoc_log "warning: ethtool -K ... tx off tso off gso off gro off failed: TCP (iperf3) may stall"
		fi
	else
		zoc_log "warning: ethtool missing (scripts/deps.sh installs it): offloads stay on, TCP (iperf3) may stall"
	fi
	DEMO_HOST_MAC=$(ip -n "$DEMO_NETNS" -o link show "$DEMO_VN" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
	DEMO_NET=1
	zoc_log "host side: namespace $DEMO_NETNS, $DEMO_VN = $DEMO_HOST_IP (mac $DEMO_HOST_MAC) <-veth-> $DEMO_VH (zocd's uplink)"
}

step "host side of the network: namespace $DEMO_NETNS, veth $DEMO_VH <-> $DEMO_VN"
demo_net_setup || zoc_log "network part SKIPPED: $DEMO_NET_SKIP"

DEMO_IPERF=0
if [ "$DEMO_NET" = 1 ] && command -v iperf3 >/dev/null 2>&1; then
	DEMO_IPERF=1
	ZOC_GUEST_BINS="${ZOC_GUEST_BINS:-} iperf3"
fi
# shellcheck disable=SC2034 # read by lib/guest.sh
ZOC_GUEST_MODULES="virtio_pci virtio_blk virtio_net"

step "guest kernel and initramfs (downloaded and built once, cached in $ZOC_GUEST_CACHE)"
zoc_guest_prepare

step "devices"
zoc_disk_create DISK disk0.img 256
VB0=$ZOC_WORK/vb0.sock
VB1=$ZOC_WORK/vb1.sock
VN0=$ZOC_WORK/vn0.sock
CONFIG=$ZOC_ARTIFACTS/demo.config.json
if [ "$ZOC_E2E_SERVER" = qsd ]; then
	zoc_qsd_start_blk d0 "$DISK" "$VB0" 1
	zoc_qsd_start_blk n0 null:1024 "$VB1" 1
else
	# The same format save_config writes: an array of {method, params}, replayed in order.
	jq -n --arg disk "$DISK" --arg vb0 "$VB0" --arg vb1 "$VB1" --arg vn0 "$VN0" \
		--arg mac "$DEMO_GUEST_MAC" --arg vh "$DEMO_VH" --argjson net "$DEMO_NET" '
		[{method: "bdev_uring_create", params: {name: "d0", filename: $disk}},
		 {method: "bdev_null_create", params: {name: "n0", size_mb: 1024, block_size: 512}},
		 {method: "vhost_blk_create", params: {name: "vb0", socket: $vb0, bdev: "d0", num_queues: 1}},
		 {method: "vhost_blk_create", params: {name: "vb1", socket: $vb1, bdev: "n0", num_queues: 1}},
		 {method: "switch_create", params: {name: "sw0"}},
		 {method: "virtio_net_create", params: {name: "vn0", transport: "vhost-user", socket: $vn0,
		                                        switch: "sw0", mac: $mac}}]
		+ (if $net == 1 then
		 [{method: "uplink_create", params: {name: "up0", switch: "sw0", type: "af_packet", ifname: $vh}}]
		   else [] end)' >"$CONFIG" || zoc_die "cannot write $CONFIG (jq failed, above)"
	echo "\$ cat $CONFIG"
	jq -c '.[]' "$CONFIG" | sed 's/^/  /'
	echo "\$ zocd --config $CONFIG ..."
	zoc_zocd_start --config "$CONFIG"
	# The replay runs after the socket is up; zocd exits if an entry fails.
	for _ in $(seq 100); do
		grep -q "configuration $CONFIG applied" "$ZOC_ZOCD_LOG" && break
		zoc_zocd_alive || {
			grep -E 'ERROR|ERR ' "$ZOC_ZOCD_LOG" | tail -5 | sed 's/^/    zocd| /'
			zoc_die "zocd refused the config $CONFIG and exited (its error is above; full log: $ZOC_ZOCD_LOG)"
		}
		sleep 0.1
	done
	grep -q "configuration $CONFIG applied" "$ZOC_ZOCD_LOG" ||
		zoc_die "zocd did not apply $CONFIG within 10 s (log: $ZOC_ZOCD_LOG)"
	for s in "$VB0" "$VB1" "$VN0"; do zoc_wait_sock "$s" "$ZOC_ZOCD_PID" 10 zocd "$ZOC_ZOCD_LOG"; done
	zoc_log "zocd applied the config: $(jq length "$CONFIG") objects"
fi

cat >"$ZOC_WORK/guest.sh" <<'EOF'
echo "ZOC-STEP kernel up, drivers loaded"
for d in vda vdb; do
	zoc_wait_blk $d 30 || { zoc_fail "no /dev/$d after 30 s"; exit 1; }
done
if [ "$NET" = 1 ]; then
	i=0
	while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 30 ]; do sleep 1; i=$((i + 1)); done
	[ -e /sys/class/net/eth0 ] || zoc_fail "no eth0 30 s after boot: virtio-net did not come up"
fi
for v in /sys/bus/virtio/devices/*; do
	drv=$(readlink $v/driver); drv=${drv##*/}
	echo "ZOC-VIRTIO ${v##*/} $(cat $v/device) ${drv:-none}"
done
for d in vda vdb; do
	q=/sys/block/$d/queue
	echo "ZOC-LSBLK $d $(blockdev --getsize64 /dev/$d) $(ls /sys/block/$d/mq | wc -l) $(cat $q/logical_block_size) $(cat $q/discard_max_bytes) $(cat $q/write_cache | tr ' ' '-')"
done
# terse (v3) fields: read iops 8, lat mean 40, clat p50 24, p99 30; write iops 49, lat mean 81, p50 65, p99 71
for d in vda vdb; do
	for rw in randread randwrite; do
		echo "ZOC-STEP fio $rw 4k QD32 on /dev/$d ($RT s)"
		out=$(fio --name=demo --filename=/dev/$d --rw=$rw --bs=4k --iodepth=32 --ioengine=libaio --direct=1 \
			--runtime=$RT --time_based --minimal 2>/tmp/fio.err)
		if [ $? != 0 ] || [ -z "$out" ]; then zoc_fail "fio $rw on /dev/$d failed: $(tail -2 /tmp/fio.err)"; continue; fi
		if [ $rw = randread ]; then f="8 40 24 30"; else f="49 81 65 71"; fi
		echo "$out" | awk -F';' -v d=$d -v rw=$rw -v f="$f" 'BEGIN{split(f, i, " ")}
			{ p50=$(i[3]); sub(/.*=/, "", p50); p99=$(i[4]); sub(/.*=/, "", p99);
			  printf "ZOC-PERF %s %s %d %.0f %s %s err=%s\n", d, rw, $(i[1]), $(i[2]), p50, p99, $5 }'
	done
done
[ "$NET" = 1 ] && [ -e /sys/class/net/eth0 ] || exit 0
echo "ZOC-STEP network: eth0 up as $GUEST_IP/24"
ip link set lo up
ip addr add $GUEST_IP/24 dev eth0
ip link set eth0 up
echo "ZOC-IPLINK $(ip -o link show eth0 | tr -d '\\' | tr -s ' ')"
echo "ZOC-IPADDR $(ip -o -4 addr show eth0 | tr -d '\\' | tr -s ' ')"
if [ -z "$HOST_IP" ]; then
	echo "ZOC-NETSKIP no uplink: nothing to ping"
	exit 0
fi
echo "ZOC-STEP network: ping $HOST_IP (the namespace, across zocd's switch and uplink)"
ok=0
i=0
while [ $i -lt 30 ]; do
	if ping -c 1 -W 1 $HOST_IP >/dev/null 2>&1; then ok=1; break; fi
	i=$((i + 1))
done
if [ $ok = 0 ]; then
	zoc_fail "$HOST_IP (the namespace behind the AF_PACKET uplink) did not answer within 30 pings"
	exit 1
fi
ping -c 5 -W 2 $HOST_IP >/tmp/ping 2>&1 || true
echo "ZOC-PING $(grep -E 'transmitted' /tmp/ping)"
echo "ZOC-PINGRTT $(grep -E 'min/avg/max' /tmp/ping)"
grep -qE '5 packets transmitted, 5 (packets )?received' /tmp/ping ||
	zoc_fail "ping $HOST_IP answered once, then not 5/5: $(tail -2 /tmp/ping)"
if [ "$IPERF" != 1 ]; then
	echo "ZOC-NETSKIP iperf3 is not installed on the host (scripts/deps.sh installs it): no throughput figure"
	exit 0
fi
echo "ZOC-STEP network: iperf3 to $HOST_IP for $IPERF_S s"
if iperf3 -c $HOST_IP -t "$IPERF_S" -f m >/tmp/iperf 2>&1 && grep -q receiver /tmp/iperf; then
	grep -E 'sender|receiver' /tmp/iperf | tr -s ' ' | sed 's/^/ZOC-IPERF /'
else
	zoc_fail "iperf3 -c $HOST_IP -t $IPERF_S did not complete: $(tail -3 /tmp/iperf | tr '\n' ' ')"
fi
exit 0
EOF

# demo_guest_follow: while QEMU runs, show the guest's progress (its ZOC-STEP lines) and a
# line every 15 s of silence, so a slow TCG boot does not look like a hang.
demo_guest_follow() {
	local n=0 lines last
	last=$(zoc__now_ms)
	while zoc__guest_poll; do
		mapfile -t lines < <(zoc_guest_results | grep '^ZOC-STEP' || true)
		for (( ; n < ${#lines[@]}; n++)); do
			zoc_log "guest: ${lines[n]#ZOC-STEP }"
			last=$(zoc__now_ms)
		done
		if [ $(($(zoc__now_ms) - last)) -ge 15000 ]; then
			zoc_log "guest: still working ($(zoc_elapsed "$ZOC_GUEST_T0") s since QEMU started; console: $ZOC_GUEST_LOG)"
			last=$(zoc__now_ms)
		fi
		sleep 0.5
	done
}

QARGS=()
mapfile -t QA0 < <(zoc_vhost_blk_args vb0 "$VB0" 1)
mapfile -t QA1 < <(zoc_vhost_blk_args vb1 "$VB1" 1)
QARGS+=("${QA0[@]}" "${QA1[@]}")
GENV=(--env RT="$DEMO_RUNTIME" --env NET=0)
what="vb0 and vb1 as vhost-user-blk-pci"
if [ "$ZOC_E2E_SERVER" != qsd ]; then
	# vectors=0 (INTx): QEMU 7.2 under TCG crashes with MSI-X on vhost-user net (vnet_guest.sh).
	QARGS+=(-chardev "socket,id=vn0,path=$VN0" -netdev "vhost-user,chardev=vn0,id=n0"
		-device "virtio-net-pci,netdev=n0,mac=$DEMO_GUEST_MAC,vectors=0")
	host_ip=
	[ "$DEMO_NET" = 0 ] || host_ip=$DEMO_HOST_IP
	GENV=(--env RT="$DEMO_RUNTIME" --env NET=1 --env GUEST_IP="$DEMO_GUEST_IP" --env HOST_IP="$host_ip"
		--env IPERF="$DEMO_IPERF" --env IPERF_S="$DEMO_IPERF_S")
	what+=", vn0 as virtio-net-pci (vhost-user)"
fi
if [ "$DEMO_IPERF" = 1 ]; then
	# One-shot server on the host side; lib/guest.sh stops it if the guest never connects.
	ip netns exec "$DEMO_NETNS" iperf3 -s -1 >"$ZOC_ARTIFACTS/iperf3-server.log" 2>&1 &
	zoc_track $!
fi

step "guest: QEMU 7.2 (TCG) with $what"
zoc_guest_start demo "$ZOC_WORK/guest.sh" --timeout 240 "${GENV[@]}" -- "${QARGS[@]}"
demo_guest_follow
# On a guest failure, still show what the guest and zocd saw (it helps to see where it
# stopped), then fail at the end.
GUEST_OK=1
zoc_guest_wait >"$ZOC_WORK/guest.out" || GUEST_OK=0
if [ "$GUEST_OK" = 0 ]; then
	cat "$ZOC_WORK/guest.out"
	zoc_log "the guest FAILED (reasons above); what it and zocd saw follows, then the demo stops"
else
	grep -v 'guest|' "$ZOC_WORK/guest.out" || true
fi

step "results in the guest"
RES=$(zoc_guest_results)
echo "Virtio devices the guest's drivers bound (/sys/bus/virtio/devices):"
while read -r _ dev id drv; do
	case $id in 0x0001) kind=net ;; 0x0002) kind=block ;; *) kind="id $id" ;; esac
	printf '  %-8s %-6s driver %s\n' "$dev" "$kind" "$drv"
done < <(grep '^ZOC-VIRTIO' <<<"$RES")
echo
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
echo
if [ "$ZOC_E2E_SERVER" = qsd ]; then
	echo "Guest network: skipped ($DEMO_NET_SKIP)"
else
	echo "Guest network (virtio-net over vhost-user on zocd's switch sw0):"
	if grep -q '^ZOC-IPLINK' <<<"$RES"; then
		echo "  # ip -o link show eth0"
		grep '^ZOC-IPLINK' <<<"$RES" | sed 's/^ZOC-IPLINK /    /'
		echo "  # ip -o -4 addr show eth0"
		grep '^ZOC-IPADDR' <<<"$RES" | sed 's/^ZOC-IPADDR /    /'
	fi
	grep -E '^ZOC-(PING|PINGRTT) ' <<<"$RES" | sed 's/^ZOC-[A-Z]* /  ping: /' || true
	if grep -q '^ZOC-IPERF' <<<"$RES"; then
		echo "  iperf3 guest -> $DEMO_NETNS ($DEMO_HOST_IP), ${DEMO_IPERF_S} s, TCP (TCG guest: CPU-bound):"
		grep '^ZOC-IPERF' <<<"$RES" | awk '{ bw = ""; by = ""
			if (match($0, /[0-9.]+ [KMG]?bits\/sec/)) bw = substr($0, RSTART, RLENGTH)
			if (match($0, /[0-9.]+ [KMG]?Bytes/)) by = substr($0, RSTART, RLENGTH)
			printf "    %-8s %16s  (%s)\n", $NF, bw, by }'
	fi
	if [ "$DEMO_NET" = 1 ]; then
		grep '^ZOC-NETSKIP' <<<"$RES" | sed 's/^ZOC-NETSKIP /  skipped: /' || true
	else
		echo "  ping / iperf3 skipped (eth0 is on a switch without uplink): $DEMO_NET_SKIP"
	fi
fi
if grep -q '^ZOC-FAIL' <<<"$RES"; then grep '^ZOC-FAIL' <<<"$RES"; fi

if [ "$ZOC_E2E_SERVER" != qsd ]; then
	step "what zocd saw (zocctl; full JSON in $ZOC_ARTIFACTS)"
	zoc_zocd_alive || zoc_die "zocd died while the guest ran (log: $ZOC_ZOCD_LOG)"
	ctl_json() { # ctl_json FILE METHOD [ARGS...]: zocctl --json, saved in the logs
		local f=$ZOC_ARTIFACTS/$1
		shift
		zoc_ctl "$@" --json >"$f" || zoc_die "zocctl $* failed (above); is zocd still running? (log: $ZOC_ZOCD_LOG)"
		cat "$f"
	}
	echo "\$ zocctl device_list"
	ctl_json device_list.json device_list | jq -r '.[] | [.name, .type,
		(if .bdev then "bdev " + .bdev elif .ifname then "switch " + .switch + ", on " + .ifname
		 elif .switch then "switch " + .switch + ", mac " + .mac else "" end),
		(if .connected == null then "" elif .connected then "connected" else "not connected" end)] | @tsv' |
		awk -F'\t' '{ printf "  %-5s %-18s %-36s %s\n", $1, $2, $3, $4 }'
	echo
	echo "\$ zocctl device_stats name=vb0 / name=vb1   (server-side counters and latency)"
	STATS=$(ctl_json device_stats.json device_stats)
	zoc_stats_summary "$(jq '[.[] | select(.total.read_ops != null)]' <<<"$STATS")" | sed 's/^/  /'
	echo
	echo "\$ zocctl device_stats name=vn0   (virtio-net queues, as zocd counted them)"
	jq -r '.[] | select(.name == "vn0") | .queues[]? |
		"  queue \(.index) \(.type): packets \(.packets) bytes \(.bytes) drops \([.drops // {} | .[]] | add // 0)" +
		([.drops // {} | to_entries[] | select(.value > 0) | "\(.key) \(.value)"] |
		 if length > 0 then " (" + join(", ") + ")" else "" end)' <<<"$STATS"
	echo
	echo "\$ zocctl switch_mac_table name=sw0"
	zoc_ctl switch_mac_table name=sw0 | sed 's/^/  /' || zoc_die "switch_mac_table failed (above)"
	echo
	echo "\$ zocctl switch_list name=sw0   (per-port counters)"
	ctl_json switch_list.json switch_list name=sw0 | jq -r '.[0].ports[] |
		[.name, .kind, .type, .stats.rx_packets, .stats.rx_bytes, .stats.tx_packets, .stats.tx_bytes,
		 .stats.flooded, ([.stats.drops[]] | add),
		 ([.stats.drops | to_entries[] | select(.value > 0) | "\(.key) \(.value)"] | join(", "))] | @tsv' |
		awk -F'\t' 'BEGIN { printf "  %-5s %-6s %-10s %10s %12s %10s %12s %8s %6s\n", "port", "kind", "type",
			"rx_pkts", "rx_bytes", "tx_pkts", "tx_bytes", "flooded", "drops" }
			{ printf "  %-5s %-6s %-10s %10s %12s %10s %12s %8s %6s%s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9,
				$10 == "" ? "" : "  (" $10 ")" }'
	if [ "$DEMO_NET" = 1 ]; then
		echo
		echo "\$ zocctl uplink_list   (AF_PACKET on $DEMO_VH)"
		ctl_json uplink_list.json uplink_list | jq -r '.[] | "  \(.name) on \(.ifname): rx_frames \(.stats.rx_frames) rx_bytes \(.stats.rx_bytes) tx_frames \(.stats.tx_frames) tx_bytes \(.stats.tx_bytes) errors \(.stats.rx_errors + .stats.tx_errors)"'
		MACS=$(zoc_ctl switch_mac_table name=sw0 --json) || true
		grep -qi "$DEMO_GUEST_MAC" <<<"$MACS" && grep -qi "$DEMO_HOST_MAC" <<<"$MACS" &&
			echo "  -> sw0 learned the guest's MAC ($DEMO_GUEST_MAC, on vn0) and the namespace's ($DEMO_HOST_MAC, behind up0)"
	fi
	step "shutdown"
	zoc_zocd_stop || zoc_die "zocd did not shut down cleanly (above)"
	zoc_zocd_check_log
	demo_net_cleanup
fi
if [ "$GUEST_OK" = 0 ]; then
	DEMO_STEP=guest
	zoc_die "the demo guest failed: see its report and console tail above (full console: $ZOC_GUEST_LOG)"
fi
if grep -q '^ZOC-FAIL' <<<"$RES"; then zoc_die "the guest reported failures (ZOC-FAIL lines above)"; fi
DEMO_STEP="done"
step "done in $((SECONDS - DEMO_T0)) s (logs in $ZOC_ARTIFACTS)"
