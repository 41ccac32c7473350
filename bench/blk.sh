#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# blk.sh - vhost-user-blk: zocd against qemu-storage-daemon (QEMU 11, Debian 13 root), on the
# same CPU, the same back end and the same client, with the ratio zocd/qsd.
#
#   servers  qsd        qemu-storage-daemon --object iothread,id=io0, export on io0 (its
#                       default adaptive polling), from scripts/trixie-root.sh's root
#            zocd-int   zocd --cores C --interrupt-mode
#            zocd-poll  zocd --cores C (busy polling, the default)
#   back ends null      qsd: null-co size=1G,read-zeroes=off; zocd: bdev_null_create (no data
#                       movement either)
#            uring      one 1 GiB file on disk, O_DIRECT: qsd: file driver aio=io_uring
#                       cache.direct=on; zocd: bdev_uring_create
#   work     4 KiB randread and randwrite at queue depth 1, 32, 128, one queue
#   client   libblkio: qemu-img bench --image-opts driver=virtio-blk-vhost-user,... -t none
#            (QEMU 11's qemu-img in the root), pinned to the client CPU; the server pinned to
#            the server CPU (taskset, whole process: every thread)
#
# "Random" offsets: qemu-img bench has no random mode, only a start offset (-o) and a
# fixed step (-S) that wraps modulo the device size. This script uses a stride of a
# large prime number of 4 KiB blocks (-S 4096*104729, about 409 MiB) which is coprime
# with the number of 4 KiB slots, so consecutive requests land far apart and a run walks
# the slots in a scattered full-period order: strided, not random. A run that would cover
# more than the whole device wraps and repeats the same order.
#
# Per run: IOPS = count / elapsed (qemu-img's "Run completed in"); server CPU seconds =
# utime+stime delta of /proc/PID/stat (all threads) around the client process; CPU µs per
# I/O = cpu / count; IOPS per server core = IOPS / (cpu_seconds / elapsed) (= count / cpu);
# mean latency = QD / IOPS (Little's law; at QD 1 it is the latency of one I/O).
# Each figure is the median of BENCH_REPEATS runs; ratios are of the medians. Each run has a
# server started for it alone, and the servers take turns case by case. The log line
# of each uring run also gives the disk's mean queue (requests in flight, iostat's aqu-sz).
#
# Usage: bench/blk.sh        (as root; creates the Debian 13 root on first use)
# Environment:
#   BENCH_REPEATS=3  BENCH_SECONDS=3 (target length of one run; count is calibrated per case)
#   BENCH_QDS="1 32 128"  BENCH_BACKENDS="null uring"  BENCH_RW="randread randwrite"
#   BENCH_SERVERS="qsd zocd-int zocd-poll"  BENCH_SRV_CPU=0  BENCH_CLI_CPU=1
#   BENCH_NICE=-10 (server and client niceness: some shelter from other work on the machine)
#   BENCH_FILE_MB=1024  BENCH_DIR=/var/tmp (the file for the uring back end lives there)
#   BENCH_OUT=<build>/bench  (raw runs .tsv and the table .md are written there)
#   ZOC_BUILD, ZOCD, ZOCCTL (default <repo>/build/src/...), ZOC_PERF (<build>/tools/zoc-perf/zoc-perf,
#   for the sleep/wake floor printed with the table), ZOC_CACHE (see scripts/trixie-root.sh)
# zocd rows say "pending" when zocd is not built.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ZOC_BUILD=${ZOC_BUILD:-$REPO/build}
ZOCD=${ZOCD:-$ZOC_BUILD/src/zocd/zocd}
ZOCCTL=${ZOCCTL:-$ZOC_BUILD/src/zocctl/zocctl}
ROOTSH=$REPO/scripts/trixie-root.sh
REPEATS=${BENCH_REPEATS:-3}
SECONDS_PER_RUN=${BENCH_SECONDS:-3}
QDS=${BENCH_QDS:-1 32 128}
BACKENDS=${BENCH_BACKENDS:-null uring}
RWS=${BENCH_RW:-randread randwrite}
SERVERS=${BENCH_SERVERS:-qsd zocd-int zocd-poll}
SRV_CPU=${BENCH_SRV_CPU:-0}
CLI_CPU=${BENCH_CLI_CPU:-1}
NICE=${BENCH_NICE:--10}
FILE_MB=${BENCH_FILE_MB:-1024}
NULL_MB=1024
BS=4096
STRIDE_BLOCKS=104729 # prime
OUT=${BENCH_OUT:-$ZOC_BUILD/bench}
HZ=$(getconf CLK_TCK)

T0=${EPOCHREALTIME/[.,]/}
elapsed() { local d=$(( (${EPOCHREALTIME/[.,]/} - T0) / 100000 )); printf '%d.%d' $((d / 10)) $((d % 10)); }
log() { printf '[blk %6ss] %s\n' "$(elapsed)" "$*" >&2; }
die() { printf '[blk %6ss] error: %s\n' "$(elapsed)" "$*" >&2; exit 1; }

case ${1:-} in -h|--help) sed -n '3,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;; esac
[ "$(id -u)" = 0 ] || die "run as root (chroot into the Debian 13 root)"
ncpu=$(nproc)
[ "$SRV_CPU" != "$CLI_CPU" ] || log "warning: server and client share CPU $SRV_CPU"
if [ "$SRV_CPU" -ge "$ncpu" ] || [ "$CLI_CPU" -ge "$ncpu" ]; then die "CPU $SRV_CPU or $CLI_CPU not available ($ncpu CPUs); set BENCH_SRV_CPU/BENCH_CLI_CPU"; fi

log "preparing the Debian 13 root ..."
"$ROOTSH" ensure >/dev/null || die "scripts/trixie-root.sh ensure failed"
QEMU_VER=$("$ROOTSH" run -- qemu-storage-daemon --version | head -1)
ZOCD_OK=1
if [ ! -x "$ZOCD" ] || [ ! -x "$ZOCCTL" ]; then
	ZOCD_OK=0
	log "zocd not built ($ZOCD): zocd rows will say 'pending'"
fi

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/zoc-bench.XXXXXX") || die "cannot make a work dir"
chmod 755 "$WORK"
mkdir -p "$OUT" || die "cannot create $OUT"
STAMP=$(date +%Y%m%d-%H%M%S)
RAW=$OUT/blk-$STAMP.tsv
TABLE=$OUT/blk-$STAMP.md
SERVER_PID=""
SERVER_LOG=$OUT/blk-$STAMP-server.log
: >"$SERVER_LOG"

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

SOCK_IN=/tmp/zoc/vb0.sock # $WORK inside the root
IMG=$WORK/bench.img
IMG_IN=/tmp/zoc/bench.img

wait_sock() { # PATH WHAT
	for _ in $(seq 150); do
		[ -S "$1" ] && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || die "$2 exited before creating $1 (log: $SERVER_LOG)"
		sleep 0.1
	done
	die "$2 did not create $1 within 15 s (log: $SERVER_LOG)"
}

ctl() { "$ZOCCTL" -s "$WORK/zocd.sock" "$@" >>"$SERVER_LOG" 2>&1 || die "zocctl $* failed (log: $SERVER_LOG)"; }

server_start() { # SERVER BACKEND
	local srv=$1 be=$2
	rm -f "$WORK/vb0.sock" "$WORK/zocd.sock"
	echo "===== $(date -Is) $srv $be" >>"$SERVER_LOG"
	case $srv in
	qsd)
		local bd
		if [ "$be" = null ]; then
			bd="driver=null-co,node-name=d0,size=$((NULL_MB * 1024 * 1024)),read-zeroes=off"
		else
			bd="driver=file,node-name=d0,filename=$IMG_IN,aio=io_uring,cache.direct=on"
		fi
		nice -n "$NICE" taskset -c "$SRV_CPU" "$ROOTSH" run --share "$WORK" -- qemu-storage-daemon \
			--object iothread,id=io0 --blockdev "$bd" \
			--export "type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path=$SOCK_IN,writable=on,num-queues=1,iothread=io0" \
			>>"$SERVER_LOG" 2>&1 &
		SERVER_PID=$!
		;;
	zocd-int|zocd-poll)
		local mode=()
		[ "$srv" = zocd-int ] && mode=(--interrupt-mode)
		nice -n "$NICE" taskset -c "$SRV_CPU" "$ZOCD" --rpc "$WORK/zocd.sock" --cores "$SRV_CPU" "${mode[@]}" >>"$SERVER_LOG" 2>&1 &
		SERVER_PID=$!
		wait_sock "$WORK/zocd.sock" zocd
		if [ "$be" = null ]; then
			ctl bdev_null_create name=d0 size_mb=$NULL_MB block_size=512
		else
			ctl bdev_uring_create name=d0 filename="$IMG"
		fi
		ctl vhost_blk_create name=vb0 socket="$WORK/vb0.sock" bdev=d0 num_queues=1
		;;
	*) die "unknown server $srv" ;;
	esac
	wait_sock "$WORK/vb0.sock" "$srv"
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

# The mean number of requests in flight at the file's disk over a run (iostat's aqu-sz): the
# disk's time_in_queue (ms, weighted by requests in flight) over the wall time. The file back
# end's IOPS at depth are the disk's when both servers keep it equally busy; this shows it.
DISK_STAT=""
disk_queue_ms() { [ -n "$DISK_STAT" ] && awk '{ print $11 }' "$DISK_STAT" 2>/dev/null || echo 0; }

# one_run RW QD COUNT -> prints "elapsed_s cpu_s wall_s disk_queue"; on failure says why and
# returns 1
one_run() {
	local rw=$1 qd=$2 count=$3 c0 c1 w0 w1 q0 q1 out rc secs args=()
	[ "$rw" = randwrite ] && args=(-w)
	c0=$(cpu_ticks "$SERVER_PID") || { log "error: the server is gone (log: $SERVER_LOG)"; return 1; }
	q0=$(disk_queue_ms)
	w0=${EPOCHREALTIME/[.,]/}
	out=$(nice -n "$NICE" taskset -c "$CLI_CPU" timeout 600 "$ROOTSH" run --share "$WORK" -- qemu-img bench \
		--image-opts "driver=virtio-blk-vhost-user,path=$SOCK_IN,cache.direct=on" -t none \
		-c "$count" -d "$qd" -s $BS -S "$STEP" -o 0 "${args[@]}" 2>&1)
	rc=$?
	w1=${EPOCHREALTIME/[.,]/}
	q1=$(disk_queue_ms)
	c1=$(cpu_ticks "$SERVER_PID") || { log "error: the server died during $rw QD$qd (log: $SERVER_LOG)"; return 1; }
	if [ $rc != 0 ]; then log "error: qemu-img bench $rw QD$qd count $count failed (exit $rc): $(tail -n 3 <<<"$out")"; return 1; fi
	secs=$(sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p' <<<"$out")
	[ -n "$secs" ] || { log "error: no 'Run completed' line from qemu-img bench: $out"; return 1; }
	awk -v s="$secs" -v c=$((c1 - c0)) -v hz="$HZ" -v w=$((w1 - w0)) -v q=$((q1 - q0)) \
		'BEGIN { if (s <= 0) s = 0.0005; printf "%s %.4f %.4f %.1f\n", s, c / hz, w / 1e6, q * 1000 / w }'
}

declare -A COUNT
FAILED=()
calibrate() { # SERVER BACKEND RW QD -> sets COUNT[key]
	local key="$1 $2 $3 $4" n=2000 r e
	[ "$4" -gt 1 ] && n=20000
	r=$(one_run "$3" "$4" $n) || return 1
	read -r e _ <<<"$r"
	COUNT[$key]=$(awk -v n=$n -v e="$e" -v t="$SECONDS_PER_RUN" \
		'BEGIN { c = int(n / e * t / 1000 + 0.5) * 1000; if (c < 2000) c = 2000; if (c > 20000000) c = 20000000; print c }')
}

# ----------------------------------------------------------------------- set-up
slots_ok=1
if [[ " $BACKENDS " == *" uring "* ]]; then
	log "writing the ${FILE_MB} MiB back-end file $IMG (O_DIRECT, allocated blocks) ..."
	dd if=/dev/zero of="$IMG" bs=1M count="$FILE_MB" oflag=direct conv=fsync status=none ||
		die "cannot write $IMG (O_DIRECT on $(stat -f -c %T "$WORK")?)"
	disk_src=$(findmnt -n -o SOURCE --target "$WORK" 2>/dev/null)
	disk_src=$(readlink -f "$disk_src" 2>/dev/null)
	if [ -n "$disk_src" ] && [ -r "/sys/class/block/${disk_src##*/}/stat" ]; then
		DISK_STAT=/sys/class/block/${disk_src##*/}/stat
		log "file back end on ${disk_src##*/}: each uring run also logs the disk's mean queue (requests in flight)"
	else
		log "note: no block-device statistics for $WORK (${disk_src:-unknown source}): no disk queue figures"
	fi
fi
[ "$FILE_MB" = "$NULL_MB" ] || log "note: file ${FILE_MB} MiB, null ${NULL_MB} MiB: strides differ per back end"
# The stride must be coprime with the number of 4 KiB slots qemu-img wraps over (size - bs).
for mb in $NULL_MB $FILE_MB; do
	[ $((((mb * 1024 * 1024 - BS) / BS) % STRIDE_BLOCKS)) = 0 ] && slots_ok=0
done
STEP=$((STRIDE_BLOCKS * BS))
[ $slots_ok = 1 ] || { STEP=$BS; log "warning: stride not coprime with the device size: sequential offsets"; }

{
	echo "# bench/blk.sh $(date -Is) host $(uname -r), $ncpu CPUs, $QEMU_VER"
	echo "# load average at start $(cut -d' ' -f1-3 /proc/loadavg), nice $NICE"
	echo "# server CPU $SRV_CPU, client CPU $CLI_CPU, block size $BS, step $STEP, repeats $REPEATS, ~${SECONDS_PER_RUN}s per run"
	printf 'server\tbackend\trw\tqd\trep\tcount\telapsed_s\tcpu_s\twall_s\n'
} >"$RAW"

log "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); server CPU $SRV_CPU, client CPU $CLI_CPU, nice $NICE"
awk '$1 > 0.5 { exit 1 }' /proc/loadavg || log "warning: the machine is busy (load average above): figures will be noisy; ratios within this run still compare like with like"
log "servers: $SERVERS; back ends: $BACKENDS; $RWS at QD $QDS; $REPEATS repeats of ~${SECONDS_PER_RUN} s"
log "client: $("$ROOTSH" run -- qemu-img --version | head -1) (libblkio), step $STEP bytes"

# The floor of a sleeping server's CPU per I/O on this machine: two threads on the server and
# client CPUs ping-pong through eventfds and the "server" does nothing else (zoc-perf wake).
# At QD 1 both servers sleep once per I/O or more; neither can go below this.
ZOC_PERF=${ZOC_PERF:-$ZOC_BUILD/tools/zoc-perf/zoc-perf}
wake_floor() {
	[ -x "$ZOC_PERF" ] || { echo "n/a (zoc-perf not built)"; return; }
	nice -n "$NICE" "$ZOC_PERF" wake --rounds 50000 --server-cpu "$SRV_CPU" --client-cpu "$CLI_CPU" --json 2>/dev/null |
		jq -r '"\(.epoll.server_cpu_us * 100 | round / 100) us sleeping in epoll_wait, \(.read.server_cpu_us * 100 | round / 100) us in a blocking read (round trip \(.epoll.rtt_us * 10 | round / 10) us)"' 2>/dev/null ||
		echo "n/a (zoc-perf wake failed)"
}
FLOOR_START=$(wake_floor)
log "sleep/wake floor (server CPU per round trip, no work): $FLOOR_START"

# Repeats outermost, then the cases; the servers take turns on each case, each one started
# afresh for it: the servers' runs of a case are seconds apart, so the disk's and the
# machine's drifts between minutes hit them alike, and no server carries state (zocd's poll
# tuner, qsd's adaptive polling) from one case into the next.
for rep in $(seq "$REPEATS"); do
	for be in $BACKENDS; do
		for rw in $RWS; do
			for qd in $QDS; do
				for srv in $SERVERS; do
					if [[ $srv == zocd* ]] && [ $ZOCD_OK = 0 ]; then continue; fi
					[[ " ${FAILED[*]} " == *" $srv/$be "* ]] && continue
					key="$srv $be $rw $qd"
					CUR_SERVER=$srv
					server_start "$srv" "$be"
					if [ -z "${COUNT[$key]:-}" ]; then
						# The count for ~BENCH_SECONDS, from a short run on a server of
						# its own, so that every measured run starts on a fresh one.
						if ! calibrate "$srv" "$be" "$rw" "$qd"; then
							server_stop
							FAILED+=("$srv/$be"); log "  $srv on $be failed: skipping it from now on"; continue
						fi
						server_stop
						server_start "$srv" "$be"
					fi
					s0=""
					[ "$srv" = zocd-int ] && s0=$("$ZOCCTL" -s "$WORK/zocd.sock" reactor_list --json 2>/dev/null | jq -r '.[0].sleeps' 2>/dev/null)
					if ! r=$(one_run "$rw" "$qd" "${COUNT[$key]}"); then
						server_stop
						FAILED+=("$srv/$be"); log "  $srv on $be failed: skipping it from now on"; continue
					fi
					read -r e c w dq <<<"$r"
					printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$srv" "$be" "$rw" "$qd" "$rep" \
						"${COUNT[$key]}" "$e" "$c" "$w" >>"$RAW"
					tuned=""
					[ "$be" = uring ] && [ -n "$DISK_STAT" ] && tuned="  disk queue $dq"
					if [ "$srv" = zocd-int ]; then
						# what the reactor chose for this load (see src/core/reactor.c)
						tuned+=$("$ZOCCTL" -s "$WORK/zocd.sock" reactor_list --json 2>/dev/null |
							jq -r --arg s0 "${s0:-0}" --arg n "${COUNT[$key]}" '.[0] | "  poll \(.poll_ns / 1000) us, wake cost \(.wake_cost_ns / 1000 | floor) us, samples to \(.poll_sample_ns / 1000) us (\(.poll_samples // 0) of \(.idle_periods // 0) idle periods), \((.sleeps - ($s0 | tonumber)) / ($n | tonumber) * 100 | floor / 100) sleeps/I/O, poll trials \(.poll_trials // 0) (won \(.poll_trials_won // 0))"' 2>/dev/null)
					fi
					log "$(awk -v rep="$rep/$REPEATS" -v s="$srv" -v b="$be" -v r="$rw" -v q="$qd" -v n="${COUNT[$key]}" -v e="$e" -v c="$c" -v w="$w" \
						'BEGIN { printf "%s %-9s %-5s %-9s QD%-3s %9d I/Os %7.3f s %9.0f IOPS  server cpu %6.3f s (%3.0f%%)", rep, s, b, r, q, n, e, n / e, c, (w > 0 ? 100 * c / w : 0) }')$tuned"
					server_stop
				done
			done
		done
	done
done
log "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
FLOOR_END=$(wake_floor)
log "sleep/wake floor at the end: $FLOOR_END"

# ----------------------------------------------------------------------- table
# Median of each figure per (server, back end, rw, qd); ratios zocd/qsd of the medians.
awk -F'\t' -v servers="$SERVERS" -v backends="$BACKENDS" -v rws="$RWS" -v qds="$QDS" \
	-v zocd_ok="$ZOCD_OK" -v reps="$REPEATS" -v md="$TABLE" -v failed=" ${FAILED[*]} " '
function median(str,   a, n, i, j, t) {
	n = split(str, a, " ")
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
/^#/ || $1 == "server" { next }
{
	k = $1 SUBSEP $2 SUBSEP $3 SUBSEP $4
	iops[k] = iops[k] " " $6 / $7
	cus[k] = cus[k] " " ($8 > 0 ? $8 * 1e6 / $6 : 0)
	ipc[k] = ipc[k] " " ($8 > 0 ? $6 / $8 : 0)
	util[k] = util[k] " " ($9 > 0 ? 100 * $8 / $9 : 0)
}
function fmt_row(srv, be, rw, qd,   k, i, u, p, q, l, rq, rp) {
	k = srv SUBSEP be SUBSEP rw SUBSEP qd
	if (!(k in iops) || index(failed, " " srv "/" be " ")) {
		why = (srv ~ /^zocd/ && !zocd_ok) ? "pending" : index(failed, " " srv "/" be " ") ? "failed" : "n/a"
		printf "%-6s %-9s %4s  %-9s %10s\n", be, rw, qd, srv, why
		printf "| %s | %s | %s | %s | %s | | | | | | |\n", be, rw, qd, srv, why >> md
		return
	}
	i = median(iops[k]); u = median(cus[k]); p = median(ipc[k]); q = median(util[k]); l = 1e6 * qd / i
	kq = "qsd" SUBSEP be SUBSEP rw SUBSEP qd
	rq = rp = "-"
	if (srv != "qsd" && (kq in iops)) {
		rq = sprintf("%.2fx", i / median(iops[kq]))
		rp = (median(ipc[kq]) > 0 && p > 0) ? sprintf("%.2fx", p / median(ipc[kq])) : "-"
	}
	printf "%-6s %-9s %4s  %-9s %10.0f %9.1f %8.0f%% %9.2f %11.0f %9s %9s\n", be, rw, qd, srv, i, l, q, u, p, rq, rp
	printf "| %s | %s | %s | %s | %.0f | %.1f | %.0f%% | %.2f | %.0f | %s | %s |\n", be, rw, qd, srv, i, l, q, u, p, rq, rp >> md
}
END {
	printf "%-6s %-9s %4s  %-9s %10s %9s %9s %9s %11s %9s %9s\n", "back", "work", "QD", "server", "IOPS", "lat_us", "srv_cpu", "cpu_us/IO", "IOPS/core", "IOPS_x", "perCore_x"
	printf "| back end | work | QD | server | IOPS | mean lat µs | server CPU | CPU µs/I/O | IOPS per server core | zocd/qsd IOPS | zocd/qsd IOPS per core |\n|---|---|---|---|---|---|---|---|---|---|---|\n" > md
	nb = split(backends, B, " "); nr = split(rws, R, " "); nq = split(qds, Q, " "); ns = split(servers, S, " ")
	for (b = 1; b <= nb; b++) for (r = 1; r <= nr; r++) for (q = 1; q <= nq; q++)
		for (s = 1; s <= ns; s++) fmt_row(S[s], B[b], R[r], Q[q])
	printf "\nmedians of %d runs; lat_us = QD/IOPS (at QD 1 the latency of one I/O); srv_cpu = server CPU time / wall time;\nIOPS/core = IOPS / (server cpu s / elapsed s); *_x = zocd/qsd of the medians\n", reps
}' "$RAW"
printf 'sleep/wake floor (zoc-perf wake: server CPU per eventfd round trip with no work) at the start: %s; at the end: %s\n' \
	"$FLOOR_START" "$FLOOR_END" | tee -a "$TABLE"
log "raw runs: $RAW; markdown table: $TABLE; server log: $SERVER_LOG"
