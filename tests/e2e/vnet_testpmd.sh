#!/bin/bash
# SPDX-License-Identifier: MIT
#
# vnet_testpmd.sh - DPDK testpmd (Debian 12 `dpdk-dev`, net_virtio_user) as a second real
# virtio-net client of zocd's vhost-user back end, next to QEMU/Linux (vnet_guest.sh).
#
#   testpmd A: --vdev net_virtio_user0,path=<vn1 socket>  txonly, 64 B frames to vn2's MAC
#   testpmd B: --vdev net_virtio_user0,path=<vn2 socket>  rxonly
#   zocd: switch sw0 with the vNICs vn1 and vn2 (busy polling on its own CPU)
#
# Checks: B received what A sent through the switch (testpmd port statistics), zocd's port
# statistics agree (vn1 took every frame A queued, vn2 got them by unicast, not flooding,
# every frame is accounted for as delivered or dropped-with-a-reason), then zocd survives
# both testpmds being killed with SIGKILL mid-traffic and a second run works the same.
#
# Memory: no hugepages are needed. `--no-huge --no-shconf` makes DPDK back its memory
# with a memfd (anonymous hugepage-less memory cannot be shared), which net_virtio_user
# passes to the vhost-user server in SET_MEM_TABLE; zocd maps it like QEMU's guest RAM.
# IOVA mode is VA (no physical addresses without privileges/IOMMU), which virtio_user needs.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/guest.sh"
zoc_init
command -v dpdk-testpmd >/dev/null 2>&1 ||
	zoc_skip "dpdk-testpmd is not installed (scripts/deps.sh installs dpdk-dev, as root)"

TP_CPU=$ZOC_QEMU_CPU    # both testpmds share the CPU zocd does not poll on
RUN_S=${ZOC_TESTPMD_RUN_S:-4}
MAC1=02:dd:00:00:00:01
MAC2=02:dd:00:00:00:02

# ------------------------------------------------------------------- testpmd
# tp_start ID SOCK MAC MODE [testpmd app args...]: an interactive testpmd whose commands
# come from a fifo (fd TP_FD[ID]); log in $ZOC_ARTIFACTS/testpmd-ID.log. Waits for the
# prompt, fails if testpmd exits first.
declare -A TP_PID=() TP_FD=() TP_LOG=()
tp_start() {
	local id=$1 sock=$2 mac=$3 mode=$4 fifo=$ZOC_WORK/dpdk-$1.fifo fd
	shift 4
	TP_LOG[$id]=$ZOC_ARTIFACTS/testpmd-$id.log
	rm -f "$fifo"
	mkfifo "$fifo"
	local eal=(--lcores "0@$TP_CPU,1@$TP_CPU" --no-huge -m 128 --no-pci --no-shconf
		--iova-mode va --log-level 'lib.eal:notice'
		--vdev "net_virtio_user0,path=$sock,queues=1,queue_size=256,mac=$mac")
	local app=(-i --forward-mode="$mode" --nb-cores=1 --rxq=1 --txq=1 --total-num-mbufs=8192 "$@")
	echo "===== $(date -Is) dpdk-testpmd ${eal[*]} -- ${app[*]}" >>"${TP_LOG[$id]}"
	stdbuf -oL -eL dpdk-testpmd "${eal[@]}" -- "${app[@]}" <"$fifo" >>"${TP_LOG[$id]}" 2>&1 &
	TP_PID[$id]=$!
	zoc_track "${TP_PID[$id]}"
	exec {fd}>"$fifo"
	TP_FD[$id]=$fd
	local i
	for i in $(seq 300); do
		grep -q '^testpmd> ' "${TP_LOG[$id]}" 2>/dev/null && break
		if ! kill -0 "${TP_PID[$id]}" 2>/dev/null; then
			tail -n 20 "${TP_LOG[$id]}" | sed 's/^/    testpmd| /'
			zoc_die "testpmd $id exited before its prompt (log tail above, full: ${TP_LOG[$id]})"
		fi
		sleep 0.1
	done
	grep -q '^testpmd> ' "${TP_LOG[$id]}" ||
		zoc_die "testpmd $id: no prompt within 30 s (log: ${TP_LOG[$id]})"
	grep -q 'Port 0: ' "${TP_LOG[$id]}" ||
		zoc_die "testpmd $id has no port 0: net_virtio_user did not attach to $sock (log: ${TP_LOG[$id]})"
	zoc_log "testpmd $id pid ${TP_PID[$id]} up ($mode, $sock, CPU $TP_CPU)"
}
tp_cmd() { printf '%s\n' "$2" >&"${TP_FD[$1]}"; }
# tp_stat ID FIELD: the last "FIELD: N" that testpmd printed (e.g. RX-packets of a port block).
tp_stat() {
	local v
	v=$(tr -d '\r' <"${TP_LOG[$1]}" | grep -o "$2: *[0-9]*" | tail -n 1 | grep -o '[0-9]*$') || true
	echo "${v:-0}"
}
# tp_show ID: ask for the port statistics, wait until they are printed.
tp_show() {
	local n0 i
	n0=$(grep -c 'NIC statistics for port 0' "${TP_LOG[$1]}" || true)
	tp_cmd "$1" "show port stats all"
	for i in $(seq 50); do
		[ "$(grep -c 'NIC statistics for port 0' "${TP_LOG[$1]}" || true)" -gt "$n0" ] && return 0
		sleep 0.1
	done
	zoc_die "testpmd $1 did not print port statistics within 5 s (log: ${TP_LOG[$1]})"
}
# tp_quit ID: quit testpmd; it must exit with status 0 within 10 s.
tp_quit() {
	local id=$1 i rc=0
	tp_cmd "$id" "quit"
	local fd=${TP_FD[$id]}
	exec {fd}>&-
	for i in $(seq 100); do kill -0 "${TP_PID[$id]}" 2>/dev/null || break; sleep 0.1; done
	kill -0 "${TP_PID[$id]}" 2>/dev/null && zoc_die "testpmd $id did not quit within 10 s (log: ${TP_LOG[$id]})"
	wait "${TP_PID[$id]}" || rc=$?
	zoc_untrack "${TP_PID[$id]}"
	[ $rc = 0 ] || zoc_die "testpmd $id exited with status $rc on quit (log: ${TP_LOG[$id]})"
}
tp_kill9() {
	local id=$1
	kill -KILL "${TP_PID[$id]}" 2>/dev/null || zoc_die "testpmd $id was already gone before SIGKILL (log: ${TP_LOG[$id]})"
	wait "${TP_PID[$id]}" 2>/dev/null || true
	zoc_untrack "${TP_PID[$id]}"
	local fd=${TP_FD[$id]}
	exec {fd}>&-
}

# port_json NAME: the switch port NAME from switch_list --json.
port_json() {
	zoc_ctl switch_list name=sw0 --json | jq -e --arg n "$1" '.[0].ports[] | select(.name == $n)' ||
		zoc_die "switch_list has no port $1 (zocctl log: $ZOC_ARTIFACTS/zocctl.log)"
}
pstat() { jq -r "$2" <<<"$1"; }

# --------------------------------------------------------------------- run
# one_run TAG: A sends for RUN_S seconds, B receives; check both sides and zocd's counters.
one_run() {
	local tag=$1
	local before1 before2
	before1=$(port_json vn1)
	before2=$(port_json vn2)
	tp_start "rx$tag" "$ZOC_WORK/dpdk-vn2.sock" $MAC2 rxonly
	tp_start "tx$tag" "$ZOC_WORK/dpdk-vn1.sock" $MAC1 txonly --eth-peer=0,$MAC2 --txpkts=64
	tp_cmd "rx$tag" start
	tp_cmd "tx$tag" start
	sleep "$RUN_S"
	tp_cmd "tx$tag" stop
	sleep 0.5
	tp_show "tx$tag"
	local sent recv=0 out i
	sent=$(tp_stat "tx$tag" TX-packets)
	# zocd drains vn1's ring, B takes what reached vn2's: wait (up to 10 s, the CPUs
	# are shared) until B has received everything zocd delivered to vn2.
	for i in $(seq 20); do
		tp_show "rx$tag"
		recv=$(tp_stat "rx$tag" RX-packets)
		out=$(($(pstat "$(port_json vn2)" .stats.tx_packets) - $(pstat "$before2" .stats.tx_packets)))
		[ "$recv" = "$out" ] && break
		sleep 0.5
	done
	tp_cmd "rx$tag" stop
	tp_quit "tx$tag"
	tp_quit "rx$tag"
	zoc_log "run $tag: testpmd A sent $sent frames, testpmd B received $recv"

	local after1 after2
	after1=$(port_json vn1)
	after2=$(port_json vn2)
	printf '%s\n%s\n' "$after1" "$after2" >"$ZOC_ARTIFACTS/ports-$tag.json"
	local in1 out2 fl1 dr2 dr1
	in1=$(($(pstat "$after1" .stats.rx_packets) - $(pstat "$before1" .stats.rx_packets)))
	out2=$(($(pstat "$after2" .stats.tx_packets) - $(pstat "$before2" .stats.tx_packets)))
	fl1=$(($(pstat "$after1" .stats.flooded) - $(pstat "$before1" .stats.flooded)))
	dr2=$(($(pstat "$after2" '[.stats.drops[]] | add') - $(pstat "$before2" '[.stats.drops[]] | add')))
	dr1=$(($(pstat "$after1" '[.stats.drops[]] | add') - $(pstat "$before1" '[.stats.drops[]] | add')))
	zoc_log "run $tag: zocd vn1 took $in1 frames from A (flooded $fl1, dropped $dr1), vn2 gave $out2 to B, dropped $dr2 (ports-$tag.json)"

	[ "$sent" -ge 10000 ] || zoc_die "run $tag: testpmd A sent only $sent frames in ${RUN_S}s: zocd did not take them from vn1's TX ring (logs: ${TP_LOG[tx$tag]}, $ZOC_ZOCD_LOG)"
	[ "$recv" -ge 1000 ] || zoc_die "run $tag: testpmd B received only $recv frames (A sent $sent): the switch did not forward vn1 -> vn2 (see ports-$tag.json, $ZOC_ZOCD_LOG)"
	[ "$in1" = "$sent" ] || zoc_die "run $tag: zocd's vn1 port counted $in1 frames in, testpmd A sent $sent: frames lost or double-counted on vn1's TX ring"
	[ "$fl1" = 0 ] || zoc_die "run $tag: $fl1 frames to vn2's MAC $MAC2 were flooded, not switched by unicast: the switch does not know vn2's MAC"
	[ "$dr1" = 0 ] || zoc_die "run $tag: vn1's port dropped $dr1 frames on the way in (ports-$tag.json)"
	[ $((out2 + dr2)) = "$in1" ] || zoc_die "run $tag: vn1 took $in1 frames but vn2 delivered $out2 and dropped $dr2: frames unaccounted for in the switch (ports-$tag.json)"
	[ "$recv" -le "$out2" ] || zoc_die "run $tag: testpmd B received $recv frames, more than zocd delivered to vn2 ($out2)"
	[ "$recv" = "$out2" ] || zoc_die "run $tag: zocd delivered $out2 frames to vn2 but testpmd B received $recv"
}

zoc_zocd_start
zoc_ctl switch_create name=sw0 >/dev/null || zoc_die "switch_create failed (above)"
zoc_ctl virtio_net_create name=vn1 socket="$ZOC_WORK/dpdk-vn1.sock" switch=sw0 mac=$MAC1 >/dev/null ||
	zoc_die "virtio_net_create vn1 failed (above)"
zoc_ctl virtio_net_create name=vn2 socket="$ZOC_WORK/dpdk-vn2.sock" switch=sw0 mac=$MAC2 >/dev/null ||
	zoc_die "virtio_net_create vn2 failed (above)"
zoc_wait_sock "$ZOC_WORK/dpdk-vn1.sock" "$ZOC_ZOCD_PID" 10 zocd "$ZOC_ZOCD_LOG"
zoc_wait_sock "$ZOC_WORK/dpdk-vn2.sock" "$ZOC_ZOCD_PID" 10 zocd "$ZOC_ZOCD_LOG"
zoc_log "zocd serves vn1 ($MAC1) and vn2 ($MAC2) on switch sw0"

one_run 1
zoc_zocd_alive || zoc_die "zocd died after the testpmds quit (log: $ZOC_ZOCD_LOG)"

# Both clients killed mid-traffic: zocd must notice the disconnects and keep serving.
n_disc=$(grep -c 'front end disconnected' "$ZOC_ZOCD_LOG" || true)
tp_start rxk "$ZOC_WORK/dpdk-vn2.sock" $MAC2 rxonly
tp_start txk "$ZOC_WORK/dpdk-vn1.sock" $MAC1 txonly --eth-peer=0,$MAC2
tp_cmd rxk start
tp_cmd txk start
sleep 2
tp_kill9 txk
tp_kill9 rxk
zoc_log "both testpmds killed with SIGKILL while sending"
for i in $(seq 50); do
	[ "$(grep -c 'front end disconnected' "$ZOC_ZOCD_LOG" || true)" -ge $((n_disc + 2)) ] && break
	sleep 0.1
done
zoc_zocd_alive || zoc_die "zocd died when the testpmds were killed (log: $ZOC_ZOCD_LOG)"
[ "$(grep -c 'front end disconnected' "$ZOC_ZOCD_LOG" || true)" -ge $((n_disc + 2)) ] ||
	zoc_die "zocd did not log both front ends disconnecting within 5 s of SIGKILL (log: $ZOC_ZOCD_LOG)"
zoc_ctl switch_list --json >/dev/null || zoc_die "zocd's JSON-RPC does not answer after the testpmds were killed"

one_run 2
zoc_zocd_alive || zoc_die "zocd died in the second run (log: $ZOC_ZOCD_LOG)"

zoc_ctl device_stats --json >"$ZOC_ARTIFACTS/device_stats.json" || zoc_die "device_stats failed"
for n in 1 2; do zoc_ctl device_delete name=vn$n >/dev/null || zoc_die "device_delete vn$n failed"; done
sleep 0.5
zoc_ctl switch_delete name=sw0 >/dev/null || zoc_die "switch_delete failed after the devices were deleted"
zoc_zocd_stop || zoc_die "zocd did not shut down cleanly (above)"
zoc_zocd_check_log
zoc_log "PASS"
