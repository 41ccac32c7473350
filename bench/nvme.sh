#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# nvme.sh - NVMe over vfio-user: IOPS per zocd core with the null back end, driven by
# tools/zoc-perf (a user-space NVMe driver that connects like QEMU's vfio-user-pci does).
#
#   servers  zocd-poll  zocd --cores C (busy polling; the doorbell page is mmapped by the
#                       client, so an I/O costs the client no system call)
#            zocd-int   zocd --cores C --interrupt-mode (doorbells arrive as REGION_WRITE
#                       messages, completions as MSI-X eventfds)
#            fake       zoc-perf-fake-nvme: a trivial target that completes at once; its row is
#                       the client's own ceiling, not a server figure
#   back end bdev_null_create Null0 size_mb=1024 (no data movement), namespace 1 of nvme0
#   work     4 KiB randread and randwrite at queue depth 1 and 32, one I/O queue
#   client   zoc-perf nvme --json, pinned to the client CPU; the server pinned to the server
#            CPU (taskset, whole process: every thread)
#
# Per run: IOPS and latency (mean, p50, p99) from zoc-perf's own window; server CPU seconds =
# utime+stime delta of /proc/PID/stat (all threads) around the client process; server CPU
# share = cpu / wall time of the client process; IOPS per server core = I/Os / server CPU
# seconds; CPU µs per I/O = server CPU / I/Os. Each figure is the median of BENCH_REPEATS
# runs. zocd busy-polls in polling mode, so its share is ~100% there whatever the load.
# No peer is run: SPDK's published figure (2.14M IOPS on one core of a larger machine) is
# printed as a reference line; the issue's target is >= 1M IOPS on one zocd core.
#
# Usage: bench/nvme.sh
# Environment:
#   BENCH_REPEATS=3  BENCH_SECONDS=5 (length of one run)
#   BENCH_QDS="1 32"  BENCH_RW="randread randwrite"  BENCH_SERVERS="zocd-poll zocd-int fake"
#   BENCH_SRV_CPU=0  BENCH_CLI_CPU=1
#   BENCH_NICE=-10 (server and client niceness, as root; ignored otherwise)
#   BENCH_IRQ_POLL=poll  BENCH_IRQ_INT=eventfd (zoc-perf --irq against zocd-poll / zocd-int)
#   BENCH_OUT=<build>/bench  (raw runs .tsv and the table .md are written there)
#   ZOC_BUILD, ZOCD, ZOCCTL, ZOC_PERF, ZOC_FAKE (default <repo>/build/...)
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ZOC_BUILD=${ZOC_BUILD:-$REPO/build}
ZOCD=${ZOCD:-$ZOC_BUILD/src/zocd/zocd}
ZOCCTL=${ZOCCTL:-$ZOC_BUILD/src/zocctl/zocctl}
ZOC_PERF=${ZOC_PERF:-$ZOC_BUILD/tools/zoc-perf/zoc-perf}
ZOC_FAKE=${ZOC_FAKE:-$ZOC_BUILD/tools/zoc-perf/zoc-perf-fake-nvme}
REPEATS=${BENCH_REPEATS:-3}
SECS=${BENCH_SECONDS:-5}
QDS=${BENCH_QDS:-1 32}
RWS=${BENCH_RW:-randread randwrite}
SERVERS=${BENCH_SERVERS:-zocd-poll zocd-int fake}
SRV_CPU=${BENCH_SRV_CPU:-0}
CLI_CPU=${BENCH_CLI_CPU:-1}
NICE=${BENCH_NICE:--10}
IRQ_POLL=${BENCH_IRQ_POLL:-poll}
IRQ_INT=${BENCH_IRQ_INT:-eventfd}
NULL_MB=1024
BS=4096
OUT=${BENCH_OUT:-$ZOC_BUILD/bench}
HZ=$(getconf CLK_TCK)

T0=${EPOCHREALTIME/[.,]/}
elapsed() { local d=$(( (${EPOCHREALTIME/[.,]/} - T0) / 100000 )); printf '%d.%d' $((d / 10)) $((d % 10)); }
log() { printf '[nvme %6ss] %s\n' "$(elapsed)" "$*" >&2; }
die() { printf '[nvme %6ss] error: %s\n' "$(elapsed)" "$*" >&2; exit 1; }

case ${1:-} in -h|--help) sed -n '3,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;; esac
ncpu=$(nproc)
[ "$SRV_CPU" != "$CLI_CPU" ] || log "warning: server and client share CPU $SRV_CPU: busy polling on both will halve everything"
if [ "$SRV_CPU" -ge "$ncpu" ] || [ "$CLI_CPU" -ge "$ncpu" ]; then die "CPU $SRV_CPU or $CLI_CPU not available ($ncpu CPUs); set BENCH_SRV_CPU/BENCH_CLI_CPU"; fi
NICE_CMD=()
if [ "$(id -u)" = 0 ]; then NICE_CMD=(nice -n "$NICE"); else log "not root: running without 'nice -n $NICE' (figures get less shelter from other work)"; fi

# ----------------------------------------------------------------------- build
if [ ! -d "$ZOC_BUILD" ]; then
	log "configuring $ZOC_BUILD ..."
	meson setup "$ZOC_BUILD" "$REPO" >/dev/null || die "meson setup $ZOC_BUILD failed"
fi
log "building (ninja -C $ZOC_BUILD) ..."
ninja -C "$ZOC_BUILD" >/dev/null || die "build failed: run 'ninja -C $ZOC_BUILD' to see why"
[ -x "$ZOC_PERF" ] || die "$ZOC_PERF was not built (tools/zoc-perf/main.c missing?)"
ZOCD_OK=1
if [[ " $SERVERS " == *" zocd"* ]]; then
	if [ ! -x "$ZOCD" ] || [ ! -x "$ZOCCTL" ]; then
		ZOCD_OK=0
		log "zocd or zocctl not built ($ZOCD): zocd rows will say 'pending'"
	fi
fi
if [[ " $SERVERS " == *" fake "* ]] && [ ! -x "$ZOC_FAKE" ]; then die "$ZOC_FAKE was not built"; fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/zoc-nvme-bench.XXXXXX") || die "cannot make a work dir"
mkdir -p "$OUT" || die "cannot create $OUT"
STAMP=$(date +%Y%m%d-%H%M%S)
RAW=$OUT/nvme-$STAMP.tsv
TABLE=$OUT/nvme-$STAMP.md
SERVER_LOG=$OUT/nvme-$STAMP-server.log
CLIENT_LOG=$OUT/nvme-$STAMP-client.log
: >"$SERVER_LOG"
: >"$CLIENT_LOG"
SERVER_PID=""
CUR_SERVER=""

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
	local rc=$?
	trap - EXIT
	if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -TERM "$SERVER_PID" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$SERVER_PID" 2>/dev/null
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NVME_SOCK=$WORK/nvme0.sock

wait_sock() { # PATH WHAT
	for _ in $(seq 150); do
		[ -S "$1" ] && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || { log "error: $2 exited before creating $1 (log: $SERVER_LOG)"; return 1; }
		sleep 0.1
	done
	log "error: $2 did not create $1 within 15 s (log: $SERVER_LOG)"
	return 1
}

ctl() {
	"$ZOCCTL" -s "$WORK/zocd.sock" "$@" >>"$SERVER_LOG" 2>&1 && return 0
	log "error: zocctl $* failed: $(tail -n 2 "$SERVER_LOG" | tr '\n' ' ')(log: $SERVER_LOG)"
	return 1
}

server_start() { # SERVER -> 0, or 1 with a message
	local srv=$1 mode=()
	rm -f "$NVME_SOCK" "$WORK/zocd.sock"
	echo "===== $(date -Is) $srv" >>"$SERVER_LOG"
	case $srv in
	zocd-poll|zocd-int)
		[ "$srv" = zocd-int ] && mode=(--interrupt-mode)
		"${NICE_CMD[@]}" taskset -c "$SRV_CPU" "$ZOCD" --rpc "$WORK/zocd.sock" --cores "$SRV_CPU" "${mode[@]}" >>"$SERVER_LOG" 2>&1 &
		SERVER_PID=$!
		wait_sock "$WORK/zocd.sock" zocd || return 1
		ctl bdev_null_create name=Null0 size_mb=$NULL_MB || return 1
		if ! ctl nvme_ctrlr_create name=nvme0 socket="$NVME_SOCK"; then
			log "  (does this zocd have issue 3's NVMe RPCs? 'zocctl help' lists what it knows)"
			return 1
		fi
		ctl nvme_ns_add ctrlr=nvme0 bdev=Null0 || return 1
		;;
	fake)
		"${NICE_CMD[@]}" taskset -c "$SRV_CPU" "$ZOC_FAKE" --socket "$NVME_SOCK" --size-mb $NULL_MB >>"$SERVER_LOG" 2>&1 &
		SERVER_PID=$!
		;;
	*) die "unknown server $srv (known: zocd-poll zocd-int fake)" ;;
	esac
	wait_sock "$NVME_SOCK" "$srv"
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
	zocd*) "$ZOCCTL" -s "$WORK/zocd.sock" zocd_shutdown >>"$SERVER_LOG" 2>&1 || kill -TERM "$SERVER_PID" ;;
	*) kill -TERM "$SERVER_PID" ;;
	esac
	for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$SERVER_PID" 2>/dev/null && log "warning: $CUR_SERVER did not stop within 10 s; killed"
	wait "$SERVER_PID" 2>/dev/null
	SERVER_PID=""
}

cpu_ticks() { # PID -> utime+stime (all threads) in clock ticks
	local s
	s=$(<"/proc/$1/stat") || return 1
	s=${s##*) }
	# shellcheck disable=SC2086
	set -- $s
	echo $((${12} + ${13}))
}

jnum() { # JSON KEY -> the number after "KEY": (flat or nested; first match)
	sed -n "s/.*\"$2\": \{0,1\}\([-0-9.e+]*\).*/\1/p" <<<"$1" | head -1
}

# one_run RW QD IRQ -> prints "ios secs iops mean_us p99_us cli_cpu srv_cpu_s wall_s p50_us"
one_run() {
	local rw=$1 qd=$2 irq=$3 c0 c1 w0 w1 out rc
	c0=$(cpu_ticks "$SERVER_PID") || { log "error: the server is gone (log: $SERVER_LOG)"; return 1; }
	w0=${EPOCHREALTIME/[.,]/}
	out=$("${NICE_CMD[@]}" taskset -c "$CLI_CPU" timeout $((SECS + 60)) "$ZOC_PERF" nvme --socket "$NVME_SOCK" \
		--rw "$rw" --bs $BS --qd "$qd" --time "$SECS" --irq "$irq" --cpu "$CLI_CPU" --json 2>>"$CLIENT_LOG")
	rc=$?
	w1=${EPOCHREALTIME/[.,]/}
	echo "$CUR_SERVER $rw QD$qd: $out" >>"$CLIENT_LOG"
	c1=$(cpu_ticks "$SERVER_PID") || { log "error: the server died during $rw QD$qd (log: $SERVER_LOG)"; return 1; }
	if [ $rc != 0 ]; then
		log "error: zoc-perf $rw QD$qd failed (exit $rc): $(tail -n 1 "$CLIENT_LOG" | cut -c1-300) (client log: $CLIENT_LOG)"
		return 1
	fi
	local ios secs iops mean p50 p99 util db
	db=$(sed -n 's/.*"doorbells": "\([a-z]*\)".*/\1/p' <<<"$out")
	if [ "$CUR_SERVER" = zocd-poll ] && [ "$db" != mmap ] && [ -z "${WARNED_DB:-}" ]; then
		WARNED_DB=1
		log "warning: zocd in polling mode did not let the client mmap the doorbells ($db): every doorbell is a REGION_WRITE message, so these are not polling-mode figures (see docs/zoc-perf.md, 'Doorbell mmap offset')"
	fi
	ios=$(jnum "$out" ios); secs=$(jnum "$out" seconds); iops=$(jnum "$out" iops)
	mean=$(jnum "$out" mean); p50=$(jnum "$out" p50); p99=$(jnum "$out" p99); util=$(jnum "$out" util)
	[ -n "$ios" ] && [ -n "$secs" ] || { log "error: no figures in zoc-perf's output: $out"; return 1; }
	awk -v n="$ios" -v s="$secs" -v i="$iops" -v m="$mean" -v p="$p99" -v u="$util" -v h="$p50" \
		-v c=$((c1 - c0)) -v hz="$HZ" -v w=$((w1 - w0)) \
		'BEGIN { printf "%d %.4f %.1f %.3f %.3f %.4f %.4f %.4f %.3f\n", n, s, i, m, p, u, c / hz, w / 1e6, h }'
}

# ----------------------------------------------------------------------- runs
{
	echo "# bench/nvme.sh $(date -Is) host $(uname -r), $ncpu CPUs"
	echo "# load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "# server CPU $SRV_CPU, client CPU $CLI_CPU, block size $BS, repeats $REPEATS, ${SECS}s per run"
	printf 'server\trw\tqd\trep\tios\tsecs\tiops\tmean_us\tp99_us\tcli_util\tsrv_cpu_s\twall_s\tp50_us\n'
} >"$RAW"

log "$ncpu CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); server CPU $SRV_CPU, client CPU $CLI_CPU"
awk '$1 > 0.5 { exit 1 }' /proc/loadavg || log "warning: the machine is busy (load average above): figures will be noisy"
log "servers: $SERVERS; $RWS at QD $QDS, bs $BS; $REPEATS repeats of ${SECS} s"

FAILED=()
for rep in $(seq "$REPEATS"); do
	for srv in $SERVERS; do
		if [[ $srv == zocd* ]] && [ $ZOCD_OK = 0 ]; then continue; fi
		[[ " ${FAILED[*]} " == *" $srv "* ]] && continue
		CUR_SERVER=$srv
		if ! server_start "$srv"; then
			FAILED+=("$srv"); log "  $srv could not be set up: skipping it from now on"; server_stop; continue
		fi
		irq=$IRQ_POLL
		[ "$srv" = zocd-int ] && irq=$IRQ_INT
		log "rep $rep/$REPEATS: $srv (pid $SERVER_PID), client --irq $irq"
		for rw in $RWS; do
			for qd in $QDS; do
				if ! r=$(one_run "$rw" "$qd" "$irq"); then
					FAILED+=("$srv"); log "  $srv failed: skipping it from now on"; break 2
				fi
				read -r ios secs iops mean p99 util cpu wall p50 <<<"$r"
				printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$srv" "$rw" "$qd" "$rep" \
					"$ios" "$secs" "$iops" "$mean" "$p99" "$util" "$cpu" "$wall" "$p50" >>"$RAW"
				log "$(awk -v s="$srv" -v r="$rw" -v q="$qd" -v i="$iops" -v m="$mean" -v p="$p99" -v u="$util" -v c="$cpu" -v w="$wall" -v n="$ios" -v h="$p50" \
					'BEGIN { printf "  %-9s %-9s QD%-3s %9.0f IOPS  lat %7.2f us (p50 %6.2f p99 %7.2f)  server cpu %3.0f%%  %6.2f us/IO  client cpu %3.0f%%", s, r, q, i, m, h, p, (w > 0 ? 100 * c / w : 0), (n > 0 ? c * 1e6 / n : 0), 100 * u }')"
			done
		done
		server_stop
	done
done
log "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

# ----------------------------------------------------------------------- table
awk -F'\t' -v servers="$SERVERS" -v rws="$RWS" -v qds="$QDS" -v zocd_ok="$ZOCD_OK" \
	-v reps="$REPEATS" -v md="$TABLE" -v failed=" ${FAILED[*]} " '
function median(str,   a, n, i, j, t) {
	n = split(str, a, " ")
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
/^#/ || $1 == "server" { next }
{
	k = $1 SUBSEP $2 SUBSEP $3
	iops[k] = iops[k] " " $7
	mean[k] = mean[k] " " $8
	p50[k] = p50[k] " " $13
	p99[k] = p99[k] " " $9
	cli[k] = cli[k] " " 100 * $10
	util[k] = util[k] " " ($12 > 0 ? $11 / $12 : 0)
	ipc[k] = ipc[k] " " ($11 > 0 ? $5 / $11 : 0)
	cus[k] = cus[k] " " ($5 > 0 ? $11 * 1e6 / $5 : 0)
}
function row(srv, rw, qd,   k, why) {
	k = srv SUBSEP rw SUBSEP qd
	if (!(k in iops)) {
		why = (srv ~ /^zocd/ && !zocd_ok) ? "pending" : index(failed, " " srv " ") ? "failed" : "n/a"
		printf "%-10s %-9s %4s %10s\n", srv, rw, qd, why
		printf "| %s | %s | %s | %s | | | | | | | |\n", srv, rw, qd, why >> md
		return
	}
	printf "%-10s %-9s %4s %10.0f %9.2f %9.2f %9.2f %9.2f %11.0f %9.3f %8.0f%%%s\n", srv, rw, qd, median(iops[k]), median(mean[k]), median(p50[k]), median(p99[k]),
		median(util[k]), median(ipc[k]), median(cus[k]), median(cli[k]), (median(cli[k]) >= 90 && srv != "fake") ? "  client-bound" : ""
	if (median(cli[k]) >= 90 && srv != "fake") clientbound = 1
	printf "| %s | %s | %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.0f | %.3f | %.0f%% |\n", srv, rw, qd, median(iops[k]), median(mean[k]), median(p50[k]), median(p99[k]),
		median(util[k]), median(ipc[k]), median(cus[k]), median(cli[k]) >> md
}
END {
	printf "%-10s %-9s %4s %10s %9s %9s %9s %9s %11s %9s %9s\n", "server", "work", "QD", "IOPS", "lat_us", "p50_us", "p99_us", "srv_cpu", "IOPS/core", "cpu_us/IO", "cli_cpu"
	printf "| server | work | QD | IOPS | mean lat µs | p50 µs | p99 µs | server CPU s/s | IOPS per server core | server CPU µs/I/O | client CPU |\n|---|---|---|---|---|---|---|---|---|---|---|\n" > md
	ns = split(servers, S, " "); nr = split(rws, R, " "); nq = split(qds, Q, " ")
	for (r = 1; r <= nr; r++) for (q = 1; q <= nq; q++) for (s = 1; s <= ns; s++) row(S[s], R[r], Q[q])
	printf "\nmedians of %d runs; lat = zoc-perf per-I/O latency (submission to completion seen); srv_cpu = server CPU s per wall s;\n", reps
	printf "IOPS/core = I/Os / server CPU s; the fake row is the client ceiling (a target that completes at once), not a server.\n"
	if (clientbound) printf "client-bound: zoc-perf used its whole CPU, so the server may do more than shown (try --queues on more client CPUs).\n"
	printf "reference: SPDK reports 2.14M IOPS on one core (larger machine); issue 3 target: >= 1M IOPS per zocd core.\n"
	printf "\nmedians of %d runs; IOPS per server core = I/Os / server CPU seconds; fake = client ceiling.\nReference: SPDK 2.14M IOPS on one core (larger machine); target >= 1M IOPS per zocd core.\n", reps >> md
}' "$RAW"
log "raw runs: $RAW; markdown table: $TABLE; logs: $SERVER_LOG, $CLIENT_LOG"
[ ${#FAILED[@]} = 0 ] || { log "failed: ${FAILED[*]}"; exit 1; }
