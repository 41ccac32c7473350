#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# net.sh - virtio-net packets/s per zocd core through the switch fast path, as a packet loop
# (DPDK's vhost/virtio loopback method; fits 2 CPUs), against DPDK's own vhost PMD.
#
#   client   one dpdk-testpmd on the client CPU with two net_virtio_user ports
#            (--forward-mode=mac, seeded with `start tx_first N`): what port 0 receives it
#            sends out of port 1 with dst = port 0's MAC, and the other way round, so the
#            seeded frames circle for ever
#   servers  zocd   zocd --cores S (busy polling), switch sw0 with two vNICs (one per client
#                   port); every frame is a switch lookup (flow cache, then MAC table)
#            peer   dpdk-testpmd with two net_vhost ports (--vdev net_vhost0,iface=...) in
#                   io-forward mode on the server CPU: what arrives on one port leaves on the
#                   other, no lookup. The same client connects to it
#   sizes    64 and 1500 byte frames (--txpkts)
#
# Per run: after BENCH_WARMUP s the client prints its port statistics twice, BENCH_SECONDS
# apart; the rate is the sum of both ports' Rx-pps over that interval (testpmd measures it
# with the TSC) = frames the server forwarded per second. Server CPU seconds = utime+stime
# delta of /proc/PID/stat over the interval; pps per server core = frames / server CPU s.
# Both servers busy-poll, so that is ~ the rate itself. Each figure is the median of
# BENCH_REPEATS runs; the ratio is zocd's median over the peer's median, per size.
# Target (issue 4): zocd >= 1.0x the peer's 64 B rate, while switching.
#
# Memory: no hugepages; --no-huge --no-shconf gives DPDK memfd-backed memory that the vhost
# side can map (the peer's vhost PMD and zocd both map the client's memory).
#
# Usage: bench/net.sh
# Environment:
#   BENCH_REPEATS=3  BENCH_SECONDS=5  BENCH_WARMUP=2
#   BENCH_SIZES="64 1500"  BENCH_SERVERS="zocd peer"
#   BENCH_SRV_CPU=0  BENCH_CLI_CPU=1
#   BENCH_TX_FIRST=32 (bursts of 32 frames seeded per port)  BENCH_RING=256 (ring entries)
#   BENCH_NICE=-10 (as root; ignored otherwise)
#   BENCH_CLIENT_DEVARGS= extra net_virtio_user devargs, e.g. in_order=0 (both servers offer
#                       VIRTIO_F_IN_ORDER; in_order=0 turns the client's in-order paths off
#                       for both)
#   BENCH_PERF=1 (perf record -g on zocd in the last 64 B run; report in the output dir)
#   BENCH_CALLGRIND=1 instructions per forwarded frame instead of rates: zocd alone under
#                       valgrind's callgrind, counting only the measured interval
#                       (callgrind_control -z / -d), divided by the frames the client counted
#                       in it; repeatable where the rates of this 2-CPU machine are not. The
#                       dump (for callgrind_annotate) is kept in the output dir
#   BENCH_OUT=<build>/bench  (raw runs .tsv, the table .md, logs)
#   ZOC_BUILD, ZOCD, ZOCCTL (default <repo>/build/...)
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ZOC_BUILD=${ZOC_BUILD:-$REPO/build}
ZOCD=${ZOCD:-$ZOC_BUILD/src/zocd/zocd}
ZOCCTL=${ZOCCTL:-$ZOC_BUILD/src/zocctl/zocctl}
REPEATS=${BENCH_REPEATS:-3}
SECS=${BENCH_SECONDS:-5}
WARMUP=${BENCH_WARMUP:-2}
SIZES=${BENCH_SIZES:-64 1500}
SERVERS=${BENCH_SERVERS:-zocd peer}
SRV_CPU=${BENCH_SRV_CPU:-0}
CLI_CPU=${BENCH_CLI_CPU:-1}
TX_FIRST=${BENCH_TX_FIRST:-32}
RING=${BENCH_RING:-256}
NICE=${BENCH_NICE:--10}
PERF=${BENCH_PERF:-0}
CALLGRIND=${BENCH_CALLGRIND:-0}
if [ "$CALLGRIND" = 1 ]; then
	SERVERS=zocd
	SIZES=${BENCH_SIZES:-64}
	REPEATS=${BENCH_REPEATS:-1}
	command -v callgrind_control >/dev/null || { echo "BENCH_CALLGRIND=1 needs valgrind (apt-get install valgrind)" >&2; exit 1; }
fi
CLI_DEVARGS=${BENCH_CLIENT_DEVARGS:+,$BENCH_CLIENT_DEVARGS}
OUT=${BENCH_OUT:-$ZOC_BUILD/bench}
HZ=$(getconf CLK_TCK)
MAC0=02:dd:00:00:01:00
MAC1=02:dd:00:00:01:01

T0=${EPOCHREALTIME/[.,]/}
elapsed() { local d=$(( (${EPOCHREALTIME/[.,]/} - T0) / 100000 )); printf '%d.%d' $((d / 10)) $((d % 10)); }
log() { printf '[net %6ss] %s\n' "$(elapsed)" "$*" >&2; }
die() { printf '[net %6ss] error: %s\n' "$(elapsed)" "$*" >&2; exit 1; }

case ${1:-} in -h|--help) sed -n '3,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;; esac
ncpu=$(nproc)
[ "$SRV_CPU" != "$CLI_CPU" ] || log "warning: server and client share CPU $SRV_CPU: busy polling on both will halve everything"
if [ "$SRV_CPU" -ge "$ncpu" ] || [ "$CLI_CPU" -ge "$ncpu" ]; then die "CPU $SRV_CPU or $CLI_CPU not available ($ncpu CPUs); set BENCH_SRV_CPU/BENCH_CLI_CPU"; fi
command -v dpdk-testpmd >/dev/null || die "dpdk-testpmd not found: install dpdk-dev (scripts/deps.sh)"
NICE_CMD=()
if [ "$(id -u)" = 0 ]; then NICE_CMD=(nice -n "$NICE"); else log "not root: running without 'nice -n $NICE' (figures get less shelter from other work)"; fi

# ----------------------------------------------------------------------- build
if [[ " $SERVERS " == *" zocd "* ]]; then
	if [ ! -d "$ZOC_BUILD" ]; then
		log "configuring $ZOC_BUILD ..."
		meson setup "$ZOC_BUILD" "$REPO" >/dev/null || die "meson setup $ZOC_BUILD failed"
	fi
	log "building (ninja -C $ZOC_BUILD) ..."
	ninja -C "$ZOC_BUILD" >/dev/null || die "build failed: run 'ninja -C $ZOC_BUILD' to see why (after new source files: 'meson setup --reconfigure $ZOC_BUILD')"
	[ -x "$ZOCD" ] && [ -x "$ZOCCTL" ] || die "zocd or zocctl not built ($ZOCD, $ZOCCTL)"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dpdk-net-bench.XXXXXX") || die "cannot make a work dir"
mkdir -p "$OUT" || die "cannot create $OUT"
STAMP=$(date +%Y%m%d-%H%M%S)
RAW=$OUT/net-$STAMP.tsv
TABLE=$OUT/net-$STAMP.md
SERVER_LOG=$OUT/net-$STAMP-server.log
CLIENT_LOG=$OUT/net-$STAMP-client.log
: >"$SERVER_LOG"
: >"$CLIENT_LOG"
SERVER_PID=""
SERVER_FD=""
CLIENT_PID=""
CLIENT_FD=""
CUR_SERVER=""
SOCK0=$WORK/dpdk-p0.sock
SOCK1=$WORK/dpdk-p1.sock

stop_pid() { # PID: TERM, wait 5 s, KILL
	[ -n "$1" ] || return 0
	kill -TERM "$1" 2>/dev/null
	for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
	local rc=$?
	trap - EXIT
	stop_pid "$CLIENT_PID"
	stop_pid "$SERVER_PID"
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ctl() {
	"$ZOCCTL" -s "$WORK/zocd.sock" "$@" >>"$SERVER_LOG" 2>&1 && return 0
	log "error: zocctl $* failed: $(tail -n 2 "$SERVER_LOG" | tr '\n' ' ')(log: $SERVER_LOG)"
	return 1
}

wait_sock() { # PATH PID WHAT LOG
	for _ in $(seq 150); do
		[ -S "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || { log "error: $3 exited before creating $1 (log: $4)"; return 1; }
		sleep 0.1
	done
	log "error: $3 did not create $1 within 15 s (log: $4)"
	return 1
}

# tp_launch VAR_PID VAR_FD LOG CPU EAL-ARGS... -- APP-ARGS...: an interactive testpmd fed from
# a fifo (line-buffered output, so its answers appear in LOG as they are printed).
tp_launch() {
	local vpid=$1 vfd=$2 logf=$3 cpu=$4 fifo fd pid l0
	shift 4
	fifo=$(mktemp -u "$WORK/dpdk-fifo.XXXXXX")
	mkfifo "$fifo" || return 1
	echo "===== $(date -Is) dpdk-testpmd --lcores 0@$cpu,1@$cpu $*" >>"$logf"
	l0=$(wc -l <"$logf")
	"${NICE_CMD[@]}" stdbuf -oL -eL dpdk-testpmd --lcores "0@$cpu,1@$cpu" --no-huge --no-shconf --no-pci \
		--iova-mode va "$@" <"$fifo" >>"$logf" 2>&1 &
	pid=$!
	exec {fd}>"$fifo"
	rm -f "$fifo"
	printf -v "$vpid" '%s' "$pid"
	printf -v "$vfd" '%s' "$fd"
	for _ in $(seq 300); do
		tail -n +"$((l0 + 1))" "$logf" | grep -q '^testpmd> ' && return 0
		kill -0 "$pid" 2>/dev/null || { log "error: testpmd exited at start (log: $logf)"; return 1; }
		sleep 0.1
	done
	log "error: testpmd gave no prompt within 30 s (log: $logf)"
	return 1
}

server_start() { # SERVER
	local srv=$1
	rm -f "$SOCK0" "$SOCK1" "$WORK/zocd.sock"
	echo "===== $(date -Is) $srv" >>"$SERVER_LOG"
	case $srv in
	zocd)
		local wrap=()
		[ "$CALLGRIND" = 1 ] && wrap=(valgrind --tool=callgrind --collect-atstart=yes
			"--callgrind-out-file=$OUT/net-$STAMP-zocd.callgrind")
		"${NICE_CMD[@]}" taskset -c "$SRV_CPU" "${wrap[@]}" "$ZOCD" --rpc "$WORK/zocd.sock" --cores "$SRV_CPU" --log-level warn >>"$SERVER_LOG" 2>&1 &
		SERVER_PID=$!
		wait_sock "$WORK/zocd.sock" "$SERVER_PID" zocd "$SERVER_LOG" || return 1
		ctl switch_create name=sw0 || return 1
		ctl virtio_net_create name=dpdkp0 socket="$SOCK0" switch=sw0 mac=$MAC0 || return 1
		ctl virtio_net_create name=dpdkp1 socket="$SOCK1" switch=sw0 mac=$MAC1 || return 1
		;;
	peer)
		tp_launch SERVER_PID SERVER_FD "$SERVER_LOG" "$SRV_CPU" -m 128 \
			--vdev "net_vhost0,iface=$SOCK0,queues=1" --vdev "net_vhost1,iface=$SOCK1,queues=1" \
			-- -i --forward-mode=io --nb-cores=1 --rxq=1 --txq=1 --rxd="$RING" --txd="$RING" \
			--total-num-mbufs=16384 --no-flush-rx || return 1
		printf 'start\n' >&"$SERVER_FD"
		;;
	*) die "unknown server $srv (known: zocd peer)" ;;
	esac
	wait_sock "$SOCK0" "$SERVER_PID" "$srv" "$SERVER_LOG" && wait_sock "$SOCK1" "$SERVER_PID" "$srv" "$SERVER_LOG"
}

server_stop() {
	[ -n "$SERVER_PID" ] || return 0
	if ! kill -0 "$SERVER_PID" 2>/dev/null; then
		wait "$SERVER_PID" 2>/dev/null
		log "warning: $CUR_SERVER (pid $SERVER_PID) had exited, status $? (log: $SERVER_LOG)"
		SERVER_PID=""
		return 0
	fi
	case $CUR_SERVER in
	zocd) "$ZOCCTL" -s "$WORK/zocd.sock" zocd_shutdown >>"$SERVER_LOG" 2>&1 || kill -TERM "$SERVER_PID" ;;
	peer) printf 'stop\nquit\n' >&"$SERVER_FD" ;;
	esac
	for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$SERVER_PID" 2>/dev/null && log "warning: $CUR_SERVER did not stop within 10 s; killed"
	wait "$SERVER_PID" 2>/dev/null
	[ -n "$SERVER_FD" ] && exec {SERVER_FD}>&-
	SERVER_PID=""
	SERVER_FD=""
}

client_start() {
	local eal=(-m 128
		--vdev "net_virtio_user0,path=$SOCK0,queues=1,queue_size=$RING,mac=$MAC0$CLI_DEVARGS"
		--vdev "net_virtio_user1,path=$SOCK1,queues=1,queue_size=$RING,mac=$MAC1$CLI_DEVARGS")
	local app=(-i --forward-mode=mac --nb-cores=1 --rxq=1 --txq=1 --rxd="$RING" --txd="$RING"
		--total-num-mbufs=16384 --eth-peer=0,$MAC1 --eth-peer=1,$MAC0)
	tp_launch CLIENT_PID CLIENT_FD "$CLIENT_LOG" "$CLI_CPU" "${eal[@]}" -- "${app[@]}" || return 1
	grep -q 'Port 1: ' <(tail -n 40 "$CLIENT_LOG") || { log "error: the client has no port 1 (log: $CLIENT_LOG)"; return 1; }
}

client_stop() {
	[ -n "$CLIENT_PID" ] || return 0
	printf 'stop\nquit\n' >&"$CLIENT_FD" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$CLIENT_PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$CLIENT_PID" 2>/dev/null && log "warning: the client did not quit within 10 s; killed"
	wait "$CLIENT_PID" 2>/dev/null
	[ -n "$CLIENT_FD" ] && exec {CLIENT_FD}>&-
	CLIENT_PID=""
	CLIENT_FD=""
}

# client_stats: print the port statistics, wait for them, echo "rx_pps_sum rx_packets_sum"
client_stats() {
	local n0
	n0=$(grep -c 'NIC statistics for port 1' "$CLIENT_LOG")
	printf 'show port stats all\n' >&"$CLIENT_FD"
	for _ in $(seq 100); do
		[ "$(grep -c 'NIC statistics for port 1' "$CLIENT_LOG")" -gt "$n0" ] &&
			grep -q 'Tx-pps' <(sed -n '/NIC statistics for port 1/,$p' "$CLIENT_LOG" | tail -n 12) && break
		sleep 0.05
	done
	sleep 0.1
	tr -d '\r' <"$CLIENT_LOG" | awk -v n="$n0" '
		/NIC statistics for port [0-9]/ { blk++ }
		blk > 2 * n && /RX-packets:/ { rx += $2 }
		blk > 2 * n && /Rx-pps:/ { pps += $2 }
		END { printf "%d %d\n", pps, rx }'
}

# zocd_busy: "busy_ns idle_ns" of zocd's reactor (empty for the peer): the share of loop
# iterations that found work tells whether zocd or the client limits the loop
zocd_busy() {
	[ "$CUR_SERVER" = zocd ] && [ "$CALLGRIND" != 1 ] || return 0
	"$ZOCCTL" -s "$WORK/zocd.sock" --json reactor_list 2>/dev/null |
		jq -r '.[0] | "\(.busy_ns) \(.idle_ns)"' 2>/dev/null
}

cpu_ticks() { # PID -> utime+stime (all threads) in clock ticks
	local s
	s=$(<"/proc/$1/stat") || return 1
	s=${s##*) }
	set -- $s
	echo $((${12} + ${13}))
}

# one_run SIZE: frames of SIZE bytes circle for WARMUP + SECS s on the running client;
# sets RUN_RESULT="pps frames cpu_s wall_s". Between sizes the client stops and starts again
# (`start` flushes its RX queues, so the previous size's frames do not circle on).
one_run() {
	local size=$1 c0 c1 w0 w1 a b perf_pid=""
	RUN_RESULT=""
	printf 'set txpkts %s\nstart tx_first %s\n' "$size" "$TX_FIRST" >&"$CLIENT_FD"
	sleep "$WARMUP"
	a=$(client_stats)
	ZB0=$(zocd_busy)
	c0=$(cpu_ticks "$SERVER_PID") || { log "error: the server is gone (log: $SERVER_LOG)"; return 1; }
	w0=${EPOCHREALTIME/[.,]/}
	[ "$CALLGRIND" = 1 ] && { callgrind_control -z "$SERVER_PID" >/dev/null 2>&1 || log "warning: callgrind_control -z failed"; }
	if [ "$PERF" = 1 ] && [ "$CUR_SERVER" = zocd ] && [ "$size" = 64 ] && [ "$rep" = "$REPEATS" ]; then
		perf record -g -o "$OUT/net-$STAMP-zocd.perf" -p "$SERVER_PID" -- sleep "$SECS" >>"$SERVER_LOG" 2>&1 &
		perf_pid=$!
	fi
	sleep "$SECS"
	b=$(client_stats)
	c1=$(cpu_ticks "$SERVER_PID") || { log "error: the server died (log: $SERVER_LOG)"; return 1; }
	ZB1=$(zocd_busy)
	if [ "$CALLGRIND" = 1 ]; then
		local before dump
		before=$(ls "$OUT/net-$STAMP-zocd.callgrind".* 2>/dev/null | wc -l)
		callgrind_control -d "$SERVER_PID" >/dev/null 2>&1 || log "warning: callgrind_control -d failed"
		for _ in $(seq 100); do
			[ "$(ls "$OUT/net-$STAMP-zocd.callgrind".* 2>/dev/null | wc -l)" -gt "$before" ] && break
			sleep 0.1
		done
		dump=$(ls -t "$OUT/net-$STAMP-zocd.callgrind".* 2>/dev/null | head -1)
		CG_IR=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump" 2>/dev/null)
		CG_DUMP=$dump
	fi
	w1=${EPOCHREALTIME/[.,]/}
	[ -n "$perf_pid" ] && wait "$perf_pid"
	printf 'stop\n' >&"$CLIENT_FD"
	sleep 0.5
	set -- $a $b
	[ $# = 4 ] || { log "error: no port statistics from the client (log: $CLIENT_LOG)"; return 1; }
	RUN_RESULT=$(awk -v pps="$3" -v n=$(($4 - $2)) -v c=$((c1 - c0)) -v hz="$HZ" -v w=$((w1 - w0)) \
		'BEGIN { printf "%d %d %.3f %.3f\n", pps, n, c / hz, w / 1e6 }')
}

{
	echo "# bench/net.sh $(date -Is) host $(uname -r), $ncpu CPUs, $(dpdk-testpmd -v 2>&1 | grep -o 'DPDK [0-9.]*' | head -1)"
	echo "# load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "# server CPU $SRV_CPU, client CPU $CLI_CPU, tx_first $TX_FIRST, ring $RING, repeats $REPEATS, ${SECS}s per run, client devargs '${CLI_DEVARGS#,}'"
	printf 'server\tsize\trep\tpps\tframes\tsrv_cpu_s\twall_s\n'
} >"$RAW"

log "$ncpu CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); server CPU $SRV_CPU, client CPU $CLI_CPU"
awk '$1 > 0.5 { exit 1 }' /proc/loadavg || log "warning: the machine is busy (load average above): figures will be noisy"
log "servers: $SERVERS; frame sizes $SIZES; $REPEATS repeats of ${SECS} s (after ${WARMUP} s warm-up); tx_first $TX_FIRST"

FAILED=()
for rep in $(seq "$REPEATS"); do
	for srv in $SERVERS; do
		[[ " ${FAILED[*]} " == *" $srv "* ]] && continue
		CUR_SERVER=$srv
		if ! server_start "$srv"; then
			FAILED+=("$srv"); log "  $srv could not be set up: skipping it from now on"; server_stop; continue
		fi
		log "rep $rep/$REPEATS: $srv (pid $SERVER_PID)"
		if ! client_start; then
			client_stop; server_stop
			FAILED+=("$srv"); log "  the client could not attach to $srv: skipping it from now on"; continue
		fi
		for size in $SIZES; do
			if ! one_run "$size"; then
				FAILED+=("$srv"); log "  $srv failed: skipping it from now on"; break
			fi
			read -r pps n cpu wall <<<"$RUN_RESULT"
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$srv" "$size" "$rep" "$pps" "$n" "$cpu" "$wall" >>"$RAW"
			log "$(awk -v s="$srv" -v z="$size" -v p="$pps" -v n="$n" -v c="$cpu" -v w="$wall" \
				'BEGIN { printf "  %-5s %5s B %10.0f pps (%.2f Gbit/s)  server cpu %3.0f%%  %10.0f pps/core", s, z, p, p * z * 8 / 1e9, (w > 0 ? 100 * c / w : 0), (c > 0 ? n / c : 0) }')"
			if [ -n "$ZB0" ] && [ -n "$ZB1" ]; then
				set -- $ZB0 $ZB1
				log "$(awk -v b=$(($3 - $1)) -v i=$(($4 - $2)) 'BEGIN { if (b + i > 0) printf "  zocd: %.0f%% of its reactor loop iterations found work (the rest polled empty queues)", 100 * b / (b + i) }')"
			fi
			[ "$pps" -gt 0 ] || log "  warning: no frames circled: see $CLIENT_LOG and $SERVER_LOG"
			if [ "$CALLGRIND" = 1 ]; then
				if [ -n "${CG_IR:-}" ] && [ "$n" -gt 0 ]; then
					log "$(awk -v i="$CG_IR" -v n="$n" -v z="$size" 'BEGIN { printf "  callgrind: %d instructions in the interval / %d frames = %.0f instructions per %d B frame", i, n, i / n, z }') (dump $CG_DUMP)"
				else
					log "  warning: no callgrind figure (instructions '${CG_IR:-}', frames $n)"
				fi
			fi
		done
		client_stop
		if [ "$srv" = zocd ]; then
			{ "$ZOCCTL" -s "$WORK/zocd.sock" switch_list name=sw0
			  "$ZOCCTL" -s "$WORK/zocd.sock" device_list
			  "$ZOCCTL" -s "$WORK/zocd.sock" device_stats; } >"$OUT/net-$STAMP-zocd-ports-$rep.txt" 2>&1
		fi
		server_stop
	done
done
log "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

awk -F'\t' -v servers="$SERVERS" -v sizes="$SIZES" -v reps="$REPEATS" -v md="$TABLE" -v failed=" ${FAILED[*]} " '
function median(str,   a, n, i, j, t) {
	n = split(str, a, " ")
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
/^#/ || $1 == "server" { next }
{
	k = $1 SUBSEP $2
	pps[k] = pps[k] " " $4
	util[k] = util[k] " " ($7 > 0 ? $6 / $7 : 0)
	ppc[k] = ppc[k] " " ($6 > 0 ? $5 / $6 : 0)
	all[k] = all[k] " " sprintf("%.2f", $4 / 1e6)
	rate[$1 SUBSEP $2 SUBSEP $3] = $4
}
END {
	printf "%-5s %5s %12s %9s %8s %12s  %s\n", "server", "size", "pps", "Gbit/s", "srv_cpu", "pps/core", "runs (Mpps)"
	printf "| server | frame | packets/s | Gbit/s | server CPU s/s | packets/s per server core | runs (Mpps) |\n|---|---|---|---|---|---|---|\n" > md
	ns = split(servers, S, " "); nz = split(sizes, Z, " ")
	for (z = 1; z <= nz; z++) for (s = 1; s <= ns; s++) {
		k = S[s] SUBSEP Z[z]
		if (!(k in pps)) {
			printf "%-5s %5s %12s\n", S[s], Z[z], index(failed, " " S[s] " ") ? "failed" : "n/a"
			printf "| %s | %s B | %s | | | | |\n", S[s], Z[z], index(failed, " " S[s] " ") ? "failed" : "n/a" >> md
			continue
		}
		m[k] = median(pps[k])
		printf "%-5s %5s %12.0f %9.2f %8.2f %12.0f  %s\n", S[s], Z[z], m[k], m[k] * Z[z] * 8 / 1e9, median(util[k]), median(ppc[k]), all[k]
		printf "| %s | %s B | %.0f | %.2f | %.2f | %.0f | %s |\n", S[s], Z[z], m[k], m[k] * Z[z] * 8 / 1e9, median(util[k]), median(ppc[k]), all[k] >> md
	}
	printf "\n"
	print "" >> md
	for (z = 1; z <= nz; z++) {
		kz = "zocd" SUBSEP Z[z]; kp = "peer" SUBSEP Z[z]
		if ((kz in m) && (kp in m) && m[kp] > 0) {
			printf "ratio zocd/peer at %s B: %.2fx%s\n", Z[z], m[kz] / m[kp], Z[z] == 64 ? (m[kz] >= m[kp] ? "  (target >= 1.0x: met)" : "  (target >= 1.0x: NOT met)") : ""
			printf "ratio zocd/peer at %s B: %.2fx  \n", Z[z], m[kz] / m[kp] >> md
			# the servers alternate inside each repeat: a pair ran a minute
			# apart, so its ratio is spared the slow drifts of the machine
			pr = ""; prs = ""
			for (r = 1; r <= reps; r++) {
				a = rate["zocd" SUBSEP Z[z] SUBSEP r]; b = rate["peer" SUBSEP Z[z] SUBSEP r]
				if (a > 0 && b > 0) { pr = pr sprintf(" %.2f", a / b); prs = prs " " a / b }
			}
			if (prs != "") {
				printf "  per repeat (zocd/peer of the same repeat):%s; median %.2fx\n", pr, median(prs)
				printf "per repeat (zocd/peer of the same repeat):%s; median %.2fx  \n", pr, median(prs) >> md
			}
		}
	}
	printf "medians of %d runs; packets/s = frames the server forwarded (sum of the client ports Rx-pps);\n", reps
	printf "pps/core = frames / server CPU s (both servers busy-poll). peer = testpmd net_vhost io-forward, no lookup.\n"
	printf "\nmedians of %d runs; packets/s = sum of the client ports Rx-pps; per server core = frames / server CPU s.\n", reps >> md
}' "$RAW"
log "raw runs: $RAW; markdown table: $TABLE; logs: $SERVER_LOG, $CLIENT_LOG"
[ ${#FAILED[@]} = 0 ] || { log "failed: ${FAILED[*]}"; exit 1; }
