#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# zoc_perf_conn.sh - smoke test of the connection generator of bench/conntrack.sh
# (`zoc-perf conn --target switch`), so that it cannot rot between bench runs:
#
#   1. IPv4 and IPv6, conntrack on: a few thousand connections (SYN ... last ACK) through
#      the in-process switch with a security group on the vNIC port; every frame must
#      reach the other side as the expected step (--verify) and the table must hold
#      exactly one TIME_WAIT session per connection (created = used = TIME_WAIT = N)
#   2. conntrack off: the same frames through the plain switch
#   3. --hold: sessions opened and kept ESTABLISHED, the memory line printed
#   4. the check can fail: connections to a port the group does not allow (--dport 81)
#      must make zoc-perf exit 1 with "frames lost"
#   5. (as root) --target ifaces over a bare veth pair in a private namespace: every frame
#      written on one end must be read back on the other
#
# Usage: tests/e2e/zoc_perf_conn.sh   (ZOC_BUILD, default <repo>/build; ZOC_PERF; with ZOCD
# set, as in the runner's ASan pass, the zoc-perf of ZOCD's build)
# Exit status: 0 pass, 1 fail with what went wrong. Takes well under a second of CPU.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ZOC_BUILD=${ZOC_BUILD:-$REPO/build}
# The runner's ASan pass sets ZOCD to build-asan's zocd: use that build's zoc-perf then
# (the switch and conntrack run inside zoc-perf).
if [ -z "${ZOC_PERF:-}" ] && [ -n "${ZOCD:-}" ] && [ -x "$(dirname "$ZOCD")/../../tools/zoc-perf/zoc-perf" ]; then
	ZOC_PERF=$(cd "$(dirname "$ZOCD")/../../tools/zoc-perf" && pwd)/zoc-perf
fi
ZOC_PERF=${ZOC_PERF:-$ZOC_BUILD/tools/zoc-perf/zoc-perf}
N=4000

log() { printf '[zoc_perf_conn] %s\n' "$*"; }
fail() { printf '[zoc_perf_conn] FAIL: %s\n' "$*"; exit 1; }

[ -x "$ZOC_PERF" ] || fail "$ZOC_PERF not built (ninja -C $ZOC_BUILD)"
log "using $ZOC_PERF"

run() { # expect-rc args...
	local want=$1 out rc
	shift
	log "zoc-perf conn $*"
	out=$("$ZOC_PERF" conn "$@" 2>&1)
	rc=$?
	printf '%s\n' "$out" | sed 's/^/    /'
	[ "$rc" = "$want" ] || fail "zoc-perf conn $* exited $rc, expected $want"
	OUT=$out
}

for fam in "" --ipv6; do
	run 0 --target switch -n $N --verify $fam
	[[ $OUT == *"table: created=$N used=$N time_wait=$N drops=0"* ]] ||
		fail "conntrack table counts do not match $N connections${fam:+ ($fam)}"
	[[ $OUT == *"completed=$N lost=0"* ]] || fail "not every connection completed${fam:+ ($fam)}"
done
run 0 --target switch --ct off -n $N --verify
[[ $OUT == *"ct=off"*"completed=$N lost=0"* ]] || fail "plain switch: not every connection completed"
run 0 --target switch -n 100 --hold 20000 --verify
[[ $OUT == *"hold: sessions=20000 "* ]] || fail "no hold line for 20000 sessions"
run 1 --target switch -n 500 --dport 81 --verify
[[ $OUT == *"frames lost"* ]] || fail "connections to a denied port were not reported lost"
# 5. the AF_PACKET target (the one that drives OVS in the bench) over a bare veth pair: a
#    wire, every frame written on one end comes out of the other
if [ "$(id -u)" = 0 ] && NS=zpc-$$ && ip netns add "$NS" 2>/dev/null; then
	trap 'ip netns del "$NS" 2>/dev/null' EXIT
	ip -n "$NS" link add zpca type veth peer name zpcb || fail "cannot create a veth pair in $NS"
	for v in zpca zpcb; do
		ip netns exec "$NS" sysctl -qw "net.ipv6.conf.$v.disable_ipv6=1"
		ip -n "$NS" link set "$v" up || fail "cannot bring $v up"
	done
	OUT=$(ip netns exec "$NS" "$ZOC_PERF" conn --target ifaces --if-a zpca --if-b zpcb -n 3000 \
		--hold 1000 --peer-pid $$ 2>&1)
	rc=$?
	printf '%s\n' "$OUT" | sed 's/^/    /'
	[ $rc = 0 ] || fail "zoc-perf conn --target ifaces over a veth pair exited $rc"
	[[ $OUT == *"completed=3000 lost=0"* && $OUT == *"opened=1000"* ]] ||
		fail "not every connection crossed the veth pair"
else
	log "AF_PACKET part not run: needs root and network namespaces"
fi
log "PASS"
exit 0
