#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# selftest.sh - zoc-perf against zoc-perf-fake-nvme: the happy paths (every --rw mode,
# eventfd interrupts, doorbells by message, PRP lists, several queues) and a misbehaving
# target (--fault): each fault must end zoc-perf with exit status 1 and a message that
# names the problem, within its timeout, never a crash or a hang.
#
# Usage: selftest.sh ZOC_PERF ZOC_PERF_FAKE_NVME   (meson test zoc-perf-selftest)
set -uo pipefail

PERF=${1:?usage: selftest.sh ZOC_PERF FAKE}
FAKE=${2:?usage: selftest.sh ZOC_PERF FAKE}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/zoc-perf-selftest.XXXXXX") || exit 1
SOCK=$WORK/nvme.sock
FAKE_PID=""
PASS=0
FAIL=0

cleanup() {
	[ -n "$FAKE_PID" ] && kill "$FAKE_PID" 2>/dev/null && wait "$FAKE_PID" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

fake_start() { # fake options...
	[ -n "$FAKE_PID" ] && { kill "$FAKE_PID" 2>/dev/null; wait "$FAKE_PID" 2>/dev/null; }
	rm -f "$SOCK"
	"$FAKE" --socket "$SOCK" "$@" 2>>"$WORK/fake.log" &
	FAKE_PID=$!
	for _ in $(seq 100); do [ -S "$SOCK" ] && return 0; sleep 0.05; done
	echo "fake target did not start" >&2
	exit 1
}

# check NAME WANT_RC REGEX -- zoc-perf options...
check() {
	local name=$1 want=$2 re=$3 out rc
	shift 4
	out=$(timeout 30 "$PERF" nvme --socket "$SOCK" --timeout-ms 1000 "$@" 2>&1)
	rc=$?
	if [ "$rc" = "$want" ] && grep -Eq -- "$re" <<<"$out"; then
		PASS=$((PASS + 1))
		echo "ok   $name"
	else
		FAIL=$((FAIL + 1))
		echo "FAIL $name: exit $rc (want $want), output:"
		sed 's/^/     /' <<<"$out"
	fi
}

fake_start --ram 16
check randread 0 'IOPS' -- --time 0.3 --qd 8
check randwrite 0 'IOPS' -- --time 0.3 --rw randwrite
check read 0 'IOPS' -- --time 0.3 --rw read --bs 8192
check write 0 'IOPS' -- --time 0.3 --rw write --bs 65536
check verify-4k 0 'reads verified' -- --time 0.3 --rw verify --queues 2
check verify-512 0 'reads verified' -- --time 0.3 --rw verify --bs 512 --qd 64
check verify-prp-list 0 'reads verified' -- --time 0.3 --rw verify --bs 20480 --qd 4
check eventfd 0 'irq=eventfd' -- --time 0.3 --irq eventfd --queues 3 --qd 2
check no-mmap 0 'doorbells=message' -- --time 0.3 --no-mmap
check json 0 '^\{"ok": true, .*"iops": ' -- --time 0.2 --json
check size-mb 0 'range 4 MiB' -- --time 0.2 --size-mb 4
check bad-nsid 1 'namespace 2 does not exist' -- --time 0.2 --nsid 2
check json-error 1 '^\{"ok": false, "error": "namespace 2 does not exist' -- --time 0.2 --nsid 2 --json
check qd-over-mqes 1 'CAP.MQES' -- --time 0.2 --qd 2000
check bs-not-lba 2 'not a multiple' -- --time 0.2 --bs 1000
check bs-over-mdts 2 'MDTS' -- --time 0.2 --bs 262144
check no-socket 1 'cannot connect' -- --socket "$WORK/none.sock" --time 0.2

fake_start --no-mmap --ram 16
check target-no-mmap 0 'doorbells=message' -- --time 0.2 --rw verify
check target-no-mmap-wait 0 'doorbells=message' -- --time 0.2 --rw verify --wait-writes
fake_start --no-mmap --ram 16 --fault reply-posted:0
check target-answers-posted 0 'doorbells=message' -- --time 0.5 --rw verify

# I/O faults
for f in io-error:50 cqe-cid cqe-sqid cqe-dup hang cfs; do
	fake_start --fault "$f"
	case ${f%%:*} in
	io-error) re='Read of 4096 bytes at offset .* failed: LBA Out of Range' ;;
	cqe-cid) re='bad completion .* cid 65520' ;;
	cqe-sqid) re='bad completion .* sqid 8 \(expected 1\)' ;;
	cqe-dup) re='not outstanding \(duplicate' ;;
	hang) re='no completion for 1000 ms with [0-9]+ commands outstanding' ;;
	cfs) re='controller fatal status' ;;
	esac
	check "fault-${f%%:*}" 1 "$re" -- --time 2
done
fake_start --ram 16 --fault corrupt:3000
check fault-corrupt 1 'verify: data read back at offset [0-9]+ .* differs at byte 0' -- --time 2 --rw verify --size-mb 4

# Message faults: message 1 is VERSION, 2 DMA_MAP ... 5+ register accesses.
for f in version-major:0 reply-id:6 reply-cmd:6 reply-short:8 reply-long:8 error-payload:3 extra-fd:3 sparse-bad:0 close:7; do
	fake_start --fault "$f"
	case ${f%%:*} in
	version-major) re='answered version 1\.0' ;;
	reply-id) re='reply id [0-9]+ command [0-9]+ .* does not match request id' ;;
	reply-cmd) re='does not match request' ;;
	reply-short) re='REGION_(READ|WRITE) reply payload of [0-9]+ bytes' ;;
	reply-long) re='REGION_READ reply .* does not match|payload' ;;
	error-payload) re='error reply with|error replies carry only the header' ;;
	extra-fd) re='carried 1 file descriptors' ;;
	sparse-bad) re='sparse area 0 .* outside the region' ;;
	close) re='server closed the connection' ;;
	esac
	check "fault-${f%%:*}" 1 "$re" -- --time 0.5
done

# zoc-perf wake (no target): both sleep kinds measured, JSON well formed, bad usage refused.
wake_check() { # NAME WANT_RC REGEX -- options...
	local name=$1 want=$2 re=$3 out rc
	shift 4
	out=$(timeout 30 "$PERF" wake "$@" 2>&1)
	rc=$?
	if [ "$rc" = "$want" ] && grep -Eq -- "$re" <<<"$out"; then
		PASS=$((PASS + 1)); echo "ok   $name"
	else
		FAIL=$((FAIL + 1)); echo "FAIL $name: exit $rc (want $want), output:"; sed 's/^/     /' <<<"$out"
	fi
}
wake_check wake-text 0 'sleep=read rounds=1000 server_cpu_us=[0-9.]+ rtt_us=[0-9.]+' -- --rounds 1000 --server-cpu -1 --client-cpu -1
wake_check wake-json 0 '^\{"epoll":\{"server_cpu_us":[0-9.]+,"rtt_us":[0-9.]+\},"read":\{' -- --rounds 1000 --json --server-cpu -1 --client-cpu -1
wake_check wake-bad-rounds 2 'not a number in 1000' -- --rounds 5

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
