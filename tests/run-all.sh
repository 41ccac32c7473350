#!/bin/bash
# SPDX-License-Identifier: MIT
#
# run-all.sh - run every test of the project, one line per test, and count.
#
#   unit  every executable build/tests/unit/test_*
#   asan  the same tests from build-asan/ (AddressSanitizer + UBSan)
#   fuzz  every build-fuzz/tests/fuzz/fuzz_* for FUZZ_SECONDS on a corpus under build-fuzz/
#   e2e   every tests/e2e/*.sh (exit 0 pass, 77 skip, else fail), then again against
#         the ASan/UBSan zocd of build-asan/ (when asan is selected too), except tests
#         whose header has a line "# zoc-e2e-asan: no (why)" (a second run that adds no
#         sanitizer coverage; ZOC_E2E_ASAN_ALL=1 runs them anyway); the pass sets
#         ZOC_E2E_PASS=asan, so a test can leave out parts that do not involve zocd
#
# Environment:
#   ZOC_TESTS=unit,asan,fuzz,e2e   kinds to run (default: all)
#   ZOC_TEST_FILTER=REGEX          run only tests whose name (e.g. e2e/vhost_blk_guest) matches
#   FUZZ_SECONDS=6                 time per fuzzer
#   FUZZ_JOBS=<CPUs>               fuzzers run at the same time (default: one per CPU)
#   ZOC_UNIT_TIMEOUT=300, ZOC_E2E_TIMEOUT=900   seconds before a test is killed (counts as failed)
#   ZOC_TEST_VERBOSE=1             also stream each test's output to the terminal
#
# Logs: build/test-logs/<kind>-<name>.log (e2e tests keep more files in build/test-logs/e2e-<name>/).
# Last line: "N passed, N failed, N skipped"; exit status 1 if anything failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

BUILD=${ZOC_BUILD:-$ROOT/build}
BUILD_ASAN=${ZOC_BUILD_ASAN:-$ROOT/build-asan}
BUILD_FUZZ=${ZOC_BUILD_FUZZ:-$ROOT/build-fuzz}
LOGS=$BUILD/test-logs
ZOC_TESTS=${ZOC_TESTS:-unit,asan,fuzz,e2e}
FILTER=${ZOC_TEST_FILTER:-}
FUZZ_SECONDS=${FUZZ_SECONDS:-6}
FUZZ_JOBS=${FUZZ_JOBS:-$(nproc)}
UNIT_TIMEOUT=${ZOC_UNIT_TIMEOUT:-300}
E2E_TIMEOUT=${ZOC_E2E_TIMEOUT:-900}
VERBOSE=${ZOC_TEST_VERBOSE:-0}
export ZOC_BUILD=$BUILD

mkdir -p "$LOGS"
npass=0 nfail=0 nskip=0
failed=()

want() { [[ ",$ZOC_TESTS," == *",$1,"* ]]; }
note() { printf 'note: %s\n' "$*"; }

now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }

# run_start NAME LOGFILE TIMEOUT CMD... : starts CMD in the background with its output in
# LOGFILE (returns 1 when NAME does not match the filter); run_finish waits for the oldest
# started test and prints its line. run_one NAME ... runs one test to its end.
job_name=() job_log=() job_tmo=() job_pid=() job_t0=()
run_start() {
	local name=$1 log=$2 tmo=$3; shift 3
	if [ -n "$FILTER" ] && ! [[ $name =~ $FILTER ]]; then return 1; fi
	{
		echo "# $name: $*"
		echo "# started $(date -Is)"
	} >"$log"
	job_name+=("$name") job_log+=("$log") job_tmo+=("$tmo") job_t0+=("$(now_ms)")
	if [ "$VERBOSE" = 1 ]; then
		timeout -k 10 "$tmo" "$@" </dev/null > >(tee -a "$log") 2>&1 &
	else
		timeout -k 10 "$tmo" "$@" </dev/null >>"$log" 2>&1 &
	fi
	job_pid+=("$!")
}

run_finish() {
	[ ${#job_pid[@]} -gt 0 ] || return 0
	local name=${job_name[0]} log=${job_log[0]} tmo=${job_tmo[0]} rc dt
	wait "${job_pid[0]}"
	rc=$?
	dt=$(($(now_ms) - job_t0[0]))
	job_name=("${job_name[@]:1}") job_log=("${job_log[@]:1}") job_tmo=("${job_tmo[@]:1}")
	job_pid=("${job_pid[@]:1}") job_t0=("${job_t0[@]:1}")
	echo "# exit status $rc after ${dt} ms" >>"$log"
	local dur
	dur=$(printf '%d.%01ds' $((dt / 1000)) $(((dt % 1000) / 100)))
	if [ "$rc" -eq 0 ]; then
		printf 'PASS  %-40s %8s\n' "$name" "$dur"
		npass=$((npass + 1))
	elif [ "$rc" -eq 77 ]; then
		local why
		why=$(grep -m1 -E '^(SKIP|skip)[: ]' "$log" | cut -c1-120)
		printf 'SKIP  %-40s %8s  %s\n' "$name" "$dur" "${why:-(no reason given)}"
		nskip=$((nskip + 1))
	else
		local what="exit status $rc"
		[ "$rc" -eq 124 ] && what="timed out after ${tmo}s"
		printf 'FAIL  %-40s %8s  (%s; log %s)\n' "$name" "$dur" "$what" "${log#"$ROOT"/}"
		if [ "$VERBOSE" != 1 ]; then
			echo "----- last 40 lines of $log -----"
			tail -n 40 "$log" | sed 's/^/  | /'
			echo "-----"
		fi
		nfail=$((nfail + 1))
		failed+=("$name")
	fi
}

run_one() {
	run_start "$@" || return 0
	run_finish
}

unit_tests() { # kind builddir
	local kind=$1 dir=$2/tests/unit
	if [ ! -d "$2" ]; then
		note "$kind: no ${2#"$ROOT"/}/ (run 'make check' to build it); not run"
		return
	fi
	local t found=0
	for t in "$dir"/test_*; do
		[ -f "$t" ] && [ -x "$t" ] || continue
		found=1
		run_one "$kind/$(basename "$t")" "$LOGS/$kind-$(basename "$t").log" "$UNIT_TIMEOUT" \
			env -C "$2" "$t"
	done
	[ $found = 1 ] || note "$kind: no unit test executables in ${dir#"$ROOT"/}/"
	# tools/zoc-perf's own tests (the client against hostile replies and a fake target).
	if [ -d "$2/tools/zoc-perf" ]; then
		run_one "$kind/zoc-perf" "$LOGS/$kind-zoc-perf.log" "$UNIT_TIMEOUT" \
			meson test -C "$2" --suite zoc-perf --print-errorlogs
	fi
}

if want unit; then
	unit_tests unit "$BUILD"
fi

if want asan; then
	export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_summary=1:detect_leaks=1}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_summary=1:print_stacktrace=1}
	unit_tests asan "$BUILD_ASAN"
fi

if want fuzz; then
	if [ ! -d "$BUILD_FUZZ" ]; then
		note "fuzz: no ${BUILD_FUZZ#"$ROOT"/}/ (run 'make check' to build it); not run"
	else
		found=0
		for f in "$BUILD_FUZZ"/tests/fuzz/fuzz_*; do
			[ -f "$f" ] && [ -x "$f" ] || continue
			found=1
			name=$(basename "$f")
			short=${name#fuzz_}
			if [ -n "$FILTER" ] && ! [[ fuzz/$name =~ $FILTER ]]; then continue; fi
			corpus=$BUILD_FUZZ/corpus/$short
			mkdir -p "$corpus" "$BUILD_FUZZ/artifacts"
			for seed in "$ROOT/tests/fuzz/corpus/$short" "$ROOT/tests/fuzz/corpus/$name"; do
				[ -d "$seed" ] && cp -n "$seed"/* "$corpus"/ 2>/dev/null
			done
			# FUZZ_JOBS fuzzers at a time (each is one thread).
			[ ${#job_pid[@]} -lt "$FUZZ_JOBS" ] || run_finish
			run_start "fuzz/$name" "$LOGS/fuzz-$name.log" $((FUZZ_SECONDS + 120)) \
				"$f" -max_total_time="$FUZZ_SECONDS" -timeout=25 -print_final_stats=1 \
				-artifact_prefix="$BUILD_FUZZ/artifacts/$name-" "$corpus"
		done
		while [ ${#job_pid[@]} -gt 0 ]; do run_finish; done
		[ $found = 1 ] || note "fuzz: no fuzzers in ${BUILD_FUZZ#"$ROOT"/}/tests/fuzz/"
	fi
fi

if want e2e; then
	found=0
	for t in "$ROOT"/tests/e2e/*.sh; do
		[ -f "$t" ] || continue
		found=1
		name=$(basename "$t" .sh)
		run_one "e2e/$name" "$LOGS/e2e-$name.log" "$E2E_TIMEOUT" bash "$t"
	done
	[ $found = 1 ] || note "e2e: no tests in tests/e2e/"
	# The same real clients against the ASan/UBSan zocd: a sanitizer report
	# kills zocd (or fails its exit status at shutdown), which fails the test.
	if want asan && [ -x "$BUILD_ASAN/src/zocd/zocd" ]; then
		for t in "$ROOT"/tests/e2e/*.sh; do
			[ -f "$t" ] || continue
			name=$(basename "$t" .sh)
			if [ -z "${ZOC_E2E_ASAN_ALL:-}" ] && head -n 40 "$t" | grep -q '^# zoc-e2e-asan: no'; then
				continue
			fi
			run_one "e2e-asan/$name" "$LOGS/e2e-asan-$name.log" "$E2E_TIMEOUT" \
				env ZOCD="$BUILD_ASAN/src/zocd/zocd" ZOCCTL="$BUILD_ASAN/src/zocctl/zocctl" \
				ZOC_ARTIFACTS="$LOGS/e2e-asan-$name" ZOC_E2E_PASS=asan \
				ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
				UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 bash "$t"
		done
	fi
fi

[ ${#failed[@]} -eq 0 ] || echo "failed: ${failed[*]}"
echo "$npass passed, $nfail failed, $nskip skipped"
[ "$nfail" -eq 0 ]
