#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# libblkio.sh - end-to-end test: a second real vhost-user-blk client, libblkio (through
# QEMU 11's qemu-io and qemu-img in the Debian 13 root of scripts/trixie-root.sh), against
# the block server under test.
#
#   run 1: an io_uring file back end (a 128 MiB file)
#     - qemu-io, connection A: device length; pattern writes at several offsets and sizes
#       (1 MiB, 128 KiB, 4 KiB, 512-aligned but not 4 KiB-aligned offsets and lengths,
#       the last MiB of the device); flush
#     - qemu-io, connection B: read every pattern back with -P, read never-written
#       ranges as zeros, overwrite 4 KiB inside the first pattern and read around it
#     - qemu-img bench: 20000 reads, then 20000 writes (--pattern 0xa5), queue depth 32;
#       read back the bench's first and last block, the block after it, the patterns above
#     - server stopped; the file itself is checked on the host side (the data really went
#       to the right offsets of the back-end file)
#   run 2: a null back end (1 GiB): length, a write and a read, qemu-img bench reads and
#       writes at queue depth 32 must complete
#
# Usage: tests/e2e/libblkio.sh [--server zocd|qsd|qsd11]
#   zocd   build/src/zocd/zocd (the test proper; the default)
#   qsd    the host's qemu-storage-daemon (Debian 12, QEMU 7.2): proves the harness
#   qsd11  qemu-storage-daemon of the Debian 13 root (QEMU 11)
#
# Environment: ZOC_E2E_SERVER (as --server), ZOC_BUILD (default <repo>/build), ZOCD, ZOCCTL,
# ZOC_ZOCD_ARGS (extra zocd arguments), ZOC_TMP (parent of the work dir, default /var/tmp),
# ZOC_KEEP_WORK=1 (keep it), ZOC_CACHE (where the root lives, see scripts/trixie-root.sh).
#
# Exit status: 0 pass; 77 skip (the machine cannot provide the root, root privileges or
# libblkio); 1 fail, with what went wrong.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ZOC_BUILD=${ZOC_BUILD:-$REPO/build}
ZOCD=${ZOCD:-$ZOC_BUILD/src/zocd/zocd}
ZOCCTL=${ZOCCTL:-$ZOC_BUILD/src/zocctl/zocctl}
SERVER=${ZOC_E2E_SERVER:-zocd}
NAME=libblkio
ROOTSH=$REPO/scripts/trixie-root.sh

while [ $# -gt 0 ]; do
	case $1 in
	--server) SERVER=$2; shift 2 ;;
	--server=*) SERVER=${1#--server=}; shift ;;
	-h|--help) sed -n '3,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	*) echo "usage: $0 [--server zocd|qsd|qsd11]" >&2; exit 1 ;;
	esac
done

T0=${EPOCHREALTIME/[.,]/}
elapsed() { local d=$(( (${EPOCHREALTIME/[.,]/} - T0) / 100000 )); printf '%d.%d' $((d / 10)) $((d % 10)); }
log() { printf '[%s %5ss] %s\n' "$NAME" "$(elapsed)" "$*"; }
fail() { printf '[%s %5ss] FAIL: %s\n' "$NAME" "$(elapsed)" "$*"; exit 1; }
skip() { printf 'SKIP: %s\n' "$*"; exit 77; }

case $SERVER in zocd|qsd|qsd11) ;; *) fail "unknown server '$SERVER' (zocd, qsd or qsd11)" ;; esac

# ------------------------------------------------------------------ prerequisites
[ "$(id -u)" = 0 ] || skip "needs root (chroot into the Debian 13 root for libblkio)"
if ! command -v unshare >/dev/null || ! command -v chroot >/dev/null; then skip "unshare/chroot missing"; fi
log "preparing the Debian 13 root (cached; first run ~1 min) ..."
ROOTDIR=$("$ROOTSH" ensure)
rc=$?
[ $rc = 77 ] && skip "no Debian 13 root: scripts/trixie-root.sh could not create it (see above)"
[ $rc = 0 ] || fail "scripts/trixie-root.sh ensure failed (exit $rc, see above)"
if ! "$ROOTSH" run -- qemu-img --help 2>/dev/null | grep -q 'virtio-blk-vhost-user'; then
	skip "qemu-img in $ROOTDIR has no virtio-blk-vhost-user driver (libblkio/qemu-block-extra missing)"
fi
if [ "$SERVER" = zocd ]; then
	[ -x "$ZOCD" ] || fail "zocd not built ($ZOCD missing): run 'make build' (or --server qsd to test the harness)"
	[ -x "$ZOCCTL" ] || fail "zocctl not built ($ZOCCTL missing): run 'make build'"
elif [ "$SERVER" = qsd ]; then
	command -v qemu-storage-daemon >/dev/null || skip "host has no qemu-storage-daemon (apt-get install qemu-system-x86)"
fi

WORK=$(mktemp -d "${ZOC_TMP:-/var/tmp}/zoc-$NAME.XXXXXX") || fail "cannot make a work dir under ${ZOC_TMP:-/var/tmp}"
chmod 755 "$WORK"
ARTS=${ZOC_ARTIFACTS:-$ZOC_BUILD/test-logs/e2e-$NAME}
mkdir -p "$ARTS" 2>/dev/null || ARTS=$WORK
SERVER_PID=""
SERVER_LOG=""

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
	local rc=$?
	trap - EXIT
	if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -TERM "$SERVER_PID" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$SERVER_PID" 2>/dev/null
	fi
	if [ "$rc" != 0 ] && [ "$rc" != 77 ] && [ -n "$SERVER_LOG" ] && [ -s "$SERVER_LOG" ]; then
		echo "----- last lines of $SERVER_LOG -----"
		tail -n 20 "$SERVER_LOG" | sed 's/^/  server| /'
	fi
	if [ "${ZOC_KEEP_WORK:-0}" = 1 ]; then
		echo "keeping work dir $WORK (ZOC_KEEP_WORK=1)"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# CPUs: the server on the first allowed CPU, the client on the second (when there is one).
mapfile -t CPUS < <(taskset -pc $$ | sed 's/.*: //' | tr ',' '\n' |
	awk -F- '{ if (NF == 2) for (i = $1; i <= $2; i++) print i; else print $1 }')
SRV_CPU=${CPUS[0]}
CLI_CPU=${CPUS[1]:-${CPUS[0]}}
log "server $SERVER on CPU $SRV_CPU, libblkio client on CPU $CLI_CPU, work dir $WORK, logs $ARTS"

# Inside the root, $WORK is /tmp/zoc.
SOCK_IN=/tmp/zoc/vb0.sock
IMG=$WORK/disk.img
IMG_IN=/tmp/zoc/disk.img
BLKIO_OPTS="driver=virtio-blk-vhost-user,path=$SOCK_IN,cache.direct=on"

IN_ROOT=(taskset -c "$CLI_CPU" "$ROOTSH" run --share "$WORK" --)

wait_sock() { # PATH SECONDS WHAT

	for _ in $(seq $(($2 * 10))); do
		[ -S "$1" ] && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || fail "$3 exited before creating $1 (log: $SERVER_LOG)"
		sleep 0.1
	done
	fail "$3 did not create $1 within $2 s (log: $SERVER_LOG)"
}

ctl() { # METHOD key=value...
	local out
	out=$("$ZOCCTL" -s "$WORK/zocd.sock" "$@" 2>&1) || fail "zocctl $* failed: $out"
	printf '%s\n' "$out" >>"$SERVER_LOG"
}

# server_start uring FILE | null SIZE_MB: serve one vhost-user-blk device at $WORK/vb0.sock.
server_start() {
	local kind=$1 arg=$2 tag
	tag=$SERVER-$kind
	SERVER_LOG=$ARTS/$tag.log
	: >"$SERVER_LOG"
	rm -f "$WORK/vb0.sock" "$WORK/zocd.sock"
	case $SERVER in
	zocd)
		local mode=()
		[ ${#CPUS[@]} -lt 2 ] && mode=(--interrupt-mode) # one CPU: do not starve the client
		# shellcheck disable=SC2086
		taskset -c "$SRV_CPU" "$ZOCD" --rpc "$WORK/zocd.sock" --cores "$SRV_CPU" "${mode[@]}" \
			${ZOC_ZOCD_ARGS:-} >>"$SERVER_LOG" 2>&1 &
		SERVER_PID=$!
		wait_sock "$WORK/zocd.sock" 15 zocd
		if [ "$kind" = uring ]; then
			ctl bdev_uring_create name=d0 filename="$arg"
		else
			ctl bdev_null_create name=d0 size_mb="$arg" block_size=512
		fi
		ctl vhost_blk_create name=vb0 socket="$WORK/vb0.sock" bdev=d0 num_queues=1
		;;
	qsd|qsd11)
		local bd file=$arg sock=$WORK/vb0.sock
		local run=(taskset -c "$SRV_CPU")
		if [ "$SERVER" = qsd11 ]; then
			run+=("$ROOTSH" run --share "$WORK" --)
			file=$IMG_IN
			sock=$SOCK_IN
		fi
		if [ "$kind" = uring ]; then
			bd="driver=file,node-name=d0,filename=$file,aio=io_uring,cache.direct=on"
		else
			bd="driver=null-co,node-name=d0,size=$((arg * 1024 * 1024))"
		fi
		"${run[@]}" qemu-storage-daemon --blockdev "$bd" \
			--export "type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path=$sock,writable=on,num-queues=1" \
			>>"$SERVER_LOG" 2>&1 &
		SERVER_PID=$!
		;;
	esac
	wait_sock "$WORK/vb0.sock" 15 "$SERVER"
	log "$SERVER (pid $SERVER_PID) serves a $kind back end at $WORK/vb0.sock"
}

server_stop() {
	local rc
	kill -0 "$SERVER_PID" 2>/dev/null || { wait "$SERVER_PID"; fail "$SERVER died during the test (exit $?; log: $SERVER_LOG)"; }
	if [ "$SERVER" = zocd ]; then
		"$ZOCCTL" -s "$WORK/zocd.sock" zocd_shutdown >>"$SERVER_LOG" 2>&1 || log "zocctl zocd_shutdown failed"
	else
		kill -TERM "$SERVER_PID"
	fi
	for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -KILL "$SERVER_PID"
		wait "$SERVER_PID" 2>/dev/null
		SERVER_PID=""
		fail "$SERVER did not exit within 10 s of being asked to; killed (log: $SERVER_LOG)"
	fi
	wait "$SERVER_PID"
	rc=$?
	SERVER_PID=""
	if [ "$SERVER" = zocd ] && [ $rc != 0 ]; then
		fail "zocd exited with status $rc after zocd_shutdown (log: $SERVER_LOG)"
	fi
	if grep -qE 'AddressSanitizer|UndefinedBehaviorSanitizer|runtime error:|Segmentation fault' "$SERVER_LOG"; then
		fail "the server log shows a crash or sanitizer report (log: $SERVER_LOG)"
	fi
	log "$SERVER stopped"
}

# qemu_io WHAT OPEN-ARGS -- CMD...: one qemu-io process (one connection), every CMD a -c.
# Fails unless qemu-io exits 0, prints no failure, and every read/write reports its bytes.
qemu_io() {
	local what=$1; shift
	local open=() cmds=() c out rc nio=0 ndone
	while [ "$1" != -- ]; do open+=("$1"); shift; done
	shift
	for c in "$@"; do
		cmds+=(-c "$c")
		case $c in read\ *|write\ *) nio=$((nio + 1)) ;; esac
	done
	out=$(timeout 120 "${QEMU_IO[@]}" "${open[@]}" "${cmds[@]}" 2>&1)
	rc=$?
	printf '## qemu-io %s\n%s\n' "$what" "$out" >>"$ARTS/client.log"
	if grep -q 'Pattern verification failed' <<<"$out"; then
		grep 'Pattern verification failed' <<<"$out" | head -5
		fail "$what: data read back differs from what was written (qemu-io: Pattern verification failed)"
	fi
	if [ $rc != 0 ] || grep -qiE 'failed|error|cannot|could not' <<<"$out"; then
		printf '%s\n' "$out" | tail -n 15
		[ $rc = 124 ] && fail "$what: qemu-io timed out after 120 s"
		fail "$what: qemu-io exit status $rc (output above)"
	fi
	ndone=$(grep -cE '^(read|wrote) [0-9]+/[0-9]+ bytes' <<<"$out")
	[ "$ndone" = "$nio" ] || fail "$what: $nio reads/writes asked, qemu-io reported $ndone done"
	local line f
	while read -r line; do
		read -r -a f <<<"${line//\// }"
		[ "${f[1]}" = "${f[2]}" ] || fail "$what: short transfer: $line"
	done < <(grep -E '^(read|wrote) [0-9]+/[0-9]+ bytes' <<<"$out")
	log "ok - $what ($nio I/Os verified)"
	QEMU_IO_OUT=$out
}

client_io() { # WHAT CMD...
	local what=$1; shift
	QEMU_IO=("${IN_ROOT[@]}" qemu-io)
	qemu_io "$what" --image-opts "$BLKIO_OPTS" -- "$@"
}

bench() { # WHAT ARGS...
	local what=$1 out rc secs; shift
	out=$(timeout 300 "${IN_ROOT[@]}" qemu-img bench --image-opts "$BLKIO_OPTS" -t none "$@" 2>&1)
	rc=$?
	printf '## qemu-img bench %s: %s\n%s\n' "$what" "$*" "$out" >>"$ARTS/client.log"
	[ $rc = 124 ] && fail "$what: qemu-img bench did not complete within 300 s"
	if [ $rc != 0 ]; then
		printf '%s\n' "$out" | tail -n 10
		fail "$what: qemu-img bench exit status $rc (output above)"
	fi
	secs=$(sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p' <<<"$out")
	[ -n "$secs" ] || { printf '%s\n' "$out"; fail "$what: qemu-img bench printed no 'Run completed' line"; }
	log "ok - $what: $(awk -v s="$secs" -v c="$COUNT" 'BEGIN { printf "%d I/Os in %s s, %.0f IOPS", c, s, (s > 0 ? c / s : 0) }')"
}

COUNT=20000
DEPTH=32
: >"$ARTS/client.log"

# ------------------------------------------------------------ run 1: io_uring file
SIZE_MB=128
truncate -s ${SIZE_MB}M "$IMG" || fail "cannot create $IMG"
log "run 1: ${SIZE_MB} MiB file $IMG on an io_uring back end"
server_start uring "$IMG"

M=$((1024 * 1024))
# offset length pattern (offsets/lengths 512-aligned; some deliberately not 4 KiB-aligned)
PATTERNS=(
	"0 $M 0xab"
	"$((4 * M + 512)) 1536 0xcd"
	"$((8 * M)) 4096 0x5a"
	"$((12 * M + 3584)) 8704 0x11"
	"$((32 * M)) $((128 * 1024)) 0x3c"
	"$((96 * M + 512)) 66048 0x96"
	"$(((SIZE_MB - 1) * M)) $M 0xe7"
)
ZEROES=(
	"$M $((3 * M))"
	"$((4 * M)) 512"
	"$((4 * M + 2048)) 2048"
	"$((12 * M)) 3584"
	"$((12 * M + 3584 + 8704)) 512"
	"$((64 * M)) $M"
	"$((96 * M + 512 + 66048)) 3584"
)

cmds=(length)
for p in "${PATTERNS[@]}"; do read -r -a f <<<"$p"; set -- "${f[@]}"; cmds+=("write -P $3 $1 $2"); done
cmds+=(flush)
client_io "connection A: length, ${#PATTERNS[@]} pattern writes, flush" "${cmds[@]}"
grep -qx "$SIZE_MB MiB" <<<"$QEMU_IO_OUT" || fail "connection A: device length is '$(head -1 <<<"$QEMU_IO_OUT")', expected $SIZE_MB MiB"

cmds=()
for p in "${PATTERNS[@]}"; do read -r -a f <<<"$p"; set -- "${f[@]}"; cmds+=("read -P $3 $1 $2"); done
for z in "${ZEROES[@]}"; do read -r -a f <<<"$z"; set -- "${f[@]}"; cmds+=("read -P 0 $1 $2"); done
cmds+=("write -P 0x77 $((512 * 1024)) 4096" "read -P 0xab 0 $((512 * 1024))"
	"read -P 0x77 $((512 * 1024)) 4096" "read -P 0xab $((516 * 1024)) $((508 * 1024))")
client_io "connection B: read back ${#PATTERNS[@]} patterns and ${#ZEROES[@]} unwritten ranges, overwrite inside a pattern" "${cmds[@]}"

bench "bench read -c $COUNT -d $DEPTH" -c $COUNT -d $DEPTH
bench "bench write -c $COUNT -d $DEPTH --pattern 0xa5" -c $COUNT -d $DEPTH -w --pattern 0xa5
END=$((COUNT * 4096))
after=("read -P 0xa5 0 $M" "read -P 0xa5 $((END - 4096)) 4096" "read -P 0 $END 4096")
for p in "${PATTERNS[@]}"; do
	read -r -a f <<<"$p"; set -- "${f[@]}"
	[ "$1" -ge "$END" ] && after+=("read -P $3 $1 $2")
done
client_io "connection C: the bench's writes landed on [0, $END) and nowhere else" "${after[@]}"
server_stop

# The back-end file itself, read on the host side (raw, read-only, no server involved).
QEMU_IO=("${IN_ROOT[@]}" qemu-io)
hostcmds=("read -P 0xa5 0 $END" "read -P 0 $END 4096")
for p in "${PATTERNS[@]}"; do
	read -r -a f <<<"$p"; set -- "${f[@]}"
	[ "$1" -ge "$END" ] && hostcmds+=("read -P $3 $1 $2")
done
qemu_io "back-end file: the data is at the right offsets in $IMG" -f raw -r "$IMG_IN" -- "${hostcmds[@]}"
[ "$(stat -c %s "$IMG")" = $((SIZE_MB * M)) ] || fail "the back-end file changed size: $(stat -c %s "$IMG") bytes"
rm -f "$IMG"

# ------------------------------------------------------------- run 2: null bdev
log "run 2: 1 GiB null back end"
server_start null 1024
client_io "null: length, write, read, flush" length "write -P 0x42 $((5 * M + 512)) 65536" \
	"read $((5 * M + 512)) 65536" "read $((1023 * M)) $M" flush
grep -qx "1 GiB" <<<"$QEMU_IO_OUT" || fail "null: device length is '$(head -1 <<<"$QEMU_IO_OUT")', expected 1 GiB"
bench "null: bench read -c $COUNT -d $DEPTH" -c $COUNT -d $DEPTH
bench "null: bench write -c $COUNT -d $DEPTH" -c $COUNT -d $DEPTH -w
server_stop

log "PASS: libblkio (qemu-io + qemu-img bench over virtio-blk-vhost-user) against $SERVER"
exit 0
