#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# conntrack.sh - new TCP connections per second per core through a stateful switch, and the
# memory of live sessions: zocd's switch + conntrack + security group against Open vSwitch's
# userspace (netdev) datapath conntrack (Debian 12 openvswitch-switch), on the same generator
# (tools/zoc-perf ctgen: per connection SYN, SYN-ACK, ACK, FIN, ACK, FIN, ACK with correct
# seq/ack and checksums; zoc-perf plays both ends, connections interleaved in windows).
#
#   zocd   `zoc-perf conn --target switch`: zocd's vswitch in process on one reactor (this
#          thread, pinned to BENCH_SRV_CPU), port A a vNIC with a security group of 5 rules
#          (tcp/80 egress allowed) and its conntrack table, port B an uplink; frames injected
#          with zoc_vswitch_rx_burst in bursts of 32. CPU = the thread's CPU time, which
#          includes the generator; the generator alone (--target none) is measured too and
#          subtracted for the "switch only" figure.
#   peer   ovs-vswitchd + ovsdb-server started here (private db, sockets, logs in a tmp dir;
#          no systemd) in a network namespace, bridge datapath_type=netdev, two veth ends as
#          ports (A = ofport 1, B = 2); ovs-vswitchd pinned to BENCH_SRV_CPU. ct on (ipv6,
#          tcp6 with BENCH_IPV6=1):
#            table 0  ip, -trk          -> ct(table=1)
#            table 1  in 1, tcp +new    -> ct(commit), output 2
#                     in 1, ip +est     -> output 2;   in 2, ip +est -> output 1; else drop
#          ct off: in 1 -> output 2, in 2 -> output 1. `zoc-perf conn --target ifaces` on
#          BENCH_CLI_CPU writes the frames into the other veth ends with AF_PACKET and waits
#          for each step to come out of the other side before sending the next. CPU = utime +
#          stime of ovs-vswitchd (all threads) over the run: connections per OVS CPU second.
#          Its AF_PACKET receive/send cost is in that figure (its ports are kernel
#          interfaces); the conntrack-attributable cost (ct on - ct off per connection) is the
#          like-for-like comparison, printed too.
#   live   zocd: one run opening BENCH_LIVE sessions (default 16M) and holding them
#          ESTABLISHED: resident memory growth / sessions (target: 16M in <= 2 GiB). Peer:
#          BENCH_PEER_LIVE sessions (default 500000; OVS's default limit is 3M) held in OVS:
#          growth of ovs-vswitchd's VmRSS / sessions.
#
# Each rate figure is the median of BENCH_REPEATS runs; ratios are zocd's median over the
# peer's. Target (issue 5): >= 200K new connections/s per core; 16M sessions <= 2 GiB.
#
# Usage: bench/conntrack.sh     (as root: namespaces, veths, AF_PACKET)
# Environment:
#   BENCH_REPEATS=3  BENCH_CONNS=1000000 (zocd, per run)  BENCH_PEER_CONNS=200000 (OVS, per run)
#   BENCH_LIVE=16777216  BENCH_PEER_LIVE=500000  (0 = skip the memory part)
#   BENCH_PEERS="ovs" ("" = zocd only)  BENCH_SRV_CPU=0  BENCH_CLI_CPU=1
#   BENCH_IPV6=1 (IPv6 frames instead of IPv4)
#   BENCH_PEER_TIMEOUT_MS=2000 (a step through OVS waits this long for its last frame)
#   BENCH_WINDOW=256 (connections in flight per step through OVS; more overflows the veth
#                    backlog, netdev_max_backlog 1000)
#   BENCH_OUT=<build>/bench (raw runs .tsv, the table .md, logs)   ZOC_BUILD, ZOC_PERF
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ZOC_BUILD=${ZOC_BUILD:-$REPO/build}
ZOC_PERF=${ZOC_PERF:-$ZOC_BUILD/tools/zoc-perf/zoc-perf}
REPEATS=${BENCH_REPEATS:-3}
CONNS=${BENCH_CONNS:-1000000}
PEER_CONNS=${BENCH_PEER_CONNS:-200000}
LIVE=${BENCH_LIVE:-16777216}
PEER_LIVE=${BENCH_PEER_LIVE:-500000}
PEERS=${BENCH_PEERS-ovs}
WINDOW=${BENCH_WINDOW:-256}
PEER_TIMEOUT=${BENCH_PEER_TIMEOUT_MS:-2000}
SRV_CPU=${BENCH_SRV_CPU:-0}
CLI_CPU=${BENCH_CLI_CPU:-1}
FAM=()
[ "${BENCH_IPV6:-0}" = 1 ] && FAM=(--ipv6)
OUT=${BENCH_OUT:-$ZOC_BUILD/bench}
PFX=zoc-ctbench   # unique names: namespace, veths (short), tmp dir
NS=$PFX-ns
BR=wctbr

T0=${EPOCHREALTIME/[.,]/}
elapsed() { local d=$(( (${EPOCHREALTIME/[.,]/} - T0) / 100000 )); printf '%d.%d' $((d / 10)) $((d % 10)); }
log() { printf '[conntrack %6ss] %s\n' "$(elapsed)" "$*" >&2; }
die() { printf '[conntrack %6ss] error: %s\n' "$(elapsed)" "$*" >&2; exit 1; }

case ${1:-} in -h|--help) sed -n '3,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;; esac
[ "$(id -u)" = 0 ] || die "run as root (network namespace, veths, AF_PACKET, OVS)"
ncpu=$(nproc)
if [ "$SRV_CPU" -ge "$ncpu" ] || [ "$CLI_CPU" -ge "$ncpu" ]; then die "CPU $SRV_CPU or $CLI_CPU not available ($ncpu CPUs)"; fi

# ----------------------------------------------------------------------- build
if [ ! -d "$ZOC_BUILD" ]; then
	log "configuring $ZOC_BUILD ..."
	meson setup "$ZOC_BUILD" "$REPO" >/dev/null || die "meson setup $ZOC_BUILD failed"
fi
log "building (ninja -C $ZOC_BUILD) ..."
ninja -C "$ZOC_BUILD" tools/zoc-perf/zoc-perf >/dev/null || die "build failed: run 'ninja -C $ZOC_BUILD' (after new files: 'meson setup --reconfigure $ZOC_BUILD')"
[ -x "$ZOC_PERF" ] || die "$ZOC_PERF not built"

if [[ " $PEERS " == *" ovs "* ]] && ! command -v ovs-vswitchd >/dev/null; then
	log "installing openvswitch-switch (the peer) ..."
	DEBIAN_FRONTEND=noninteractive apt-get install -y openvswitch-switch >/dev/null 2>&1 ||
		die "apt-get install openvswitch-switch failed"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/$PFX.XXXXXX") || die "cannot make a work dir"
mkdir -p "$OUT" || die "cannot create $OUT"
STAMP=$(date +%Y%m%d-%H%M%S)
RAW=$OUT/conntrack-$STAMP.tsv
TABLE=$OUT/conntrack-$STAMP.md
LOGF=$OUT/conntrack-$STAMP.log
: >"$LOGF"
printf 'side\tct\trun\tcps\tcps_per_core\tus_per_conn\n' >"$RAW"
OVS_UP=0
OVS_PID=""
OVSDB_PID=""
PERF_PID=""

# shellcheck disable=SC2317 # invoked by the EXIT trap
ovs_down() {
	[ "$OVS_UP" = 1 ] || return 0
	local p
	# pids kept from start-up: a stopping daemon removes its pidfile before it is gone
	for p in $OVS_PID $OVSDB_PID; do kill -TERM "$p" 2>/dev/null; done
	for _ in $(seq 30); do
		kill -0 "$OVS_PID" 2>/dev/null || kill -0 "$OVSDB_PID" 2>/dev/null || break
		sleep 0.1
	done
	for p in $OVS_PID $OVSDB_PID; do kill -KILL "$p" 2>/dev/null; done
	ip netns del "$NS" 2>/dev/null
	OVS_UP=0
}

# shellcheck disable=SC2317
cleanup() {
	local rc=$?
	trap - EXIT
	[ -n "$PERF_PID" ] && kill -TERM "$PERF_PID" 2>/dev/null && wait "$PERF_PID" 2>/dev/null
	ovs_down
	rm -rf "$WORK"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_perf CMD...: runs zoc-perf in the background and waits, so that a signal reaches the
# trap at once (and the trap stops it); its stdout ends up in $PERF_OUT
run_perf() {
	local rc
	"$@" >"$WORK/perf.out" 2>>"$LOGF" &
	PERF_PID=$!
	wait "$PERF_PID"
	rc=$?
	PERF_PID=""
	PERF_OUT=$(cat "$WORK/perf.out")
	return $rc
}

# key=value field of a zoc-perf line
field() { sed -n "s/.*[ :]$2=\([^ ]*\).*/\1/p" <<<"$1" | head -1; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR + 1) / 2)]; else print "nan"}'; }
fdiv() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.2f", a / b }'; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
rec() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RAW"; }

# ------------------------------------------------------------------- zocd side
declare -A CPS PERCORE US
BASE=0
zoc_runs() { # ct(on|off|none)
	local ct=$1 target=switch line r
	local -a args=(--ct "$ct")
	[ "$ct" = none ] && { target=none; args=(); }
	for r in $(seq "$REPEATS"); do
		run_perf taskset -c "$SRV_CPU" "$ZOC_PERF" conn --target $target "${args[@]}" "${FAM[@]}" \
			-n "$CONNS" --base "$BASE" || die "zoc-perf conn --target $target --ct $ct failed: $(tail -3 "$LOGF")"
		line=$PERF_OUT
		echo "$line" >>"$LOGF"
		BASE=$((BASE + CONNS))
		rec zocd "$ct" "$r" "$(field "$line" cps)" "$(field "$line" cps_per_core)" "$(field "$line" us_per_conn)"
		log "zocd ct=$ct run $r/$REPEATS: $(field "$line" cps) conn/s, $(field "$line" cps_per_core) per core, $(field "$line" us_per_conn) us CPU/conn"
	done
}

meds() { # side ct -> sets CPS/PERCORE/US[side,ct]
	CPS[$1,$2]=$(awk -F'\t' -v s="$1" -v c="$2" '$1 == s && $2 == c {print $4}' "$RAW" | median)
	PERCORE[$1,$2]=$(awk -F'\t' -v s="$1" -v c="$2" '$1 == s && $2 == c {print $5}' "$RAW" | median)
	US[$1,$2]=$(awk -F'\t' -v s="$1" -v c="$2" '$1 == s && $2 == c {print $6}' "$RAW" | median)
}

log "zocd: $REPEATS x $CONNS connections each with conntrack on, off, and the generator alone (CPU $SRV_CPU)"
for ct in on off none; do
	zoc_runs $ct
	meds zocd $ct
done
ZOC_LIVE_LINE=""
if [ "$LIVE" -gt 0 ]; then
	log "zocd: opening $LIVE sessions and holding them ESTABLISHED (once) ..."
	run_perf taskset -c "$SRV_CPU" "$ZOC_PERF" conn --target switch -n 0 --hold "$LIVE" "${FAM[@]}" ||
		die "zoc-perf conn --hold $LIVE failed: $(tail -3 "$LOGF")"
	ZOC_LIVE_LINE=$PERF_OUT
	echo "$ZOC_LIVE_LINE" >>"$LOGF"
	log "zocd live: $ZOC_LIVE_LINE"
fi

# ----------------------------------------------------------------------- peer
ovs_up() {
	local v
	export OVS_RUNDIR=$WORK OVS_LOGDIR=$WORK OVS_DBDIR=$WORK
	ip netns add "$NS" || die "ip netns add $NS failed"
	OVS_UP=1
	ip -n "$NS" link add wctA0 type veth peer name wctA1 &&
		ip -n "$NS" link add wctB0 type veth peer name wctB1 || die "cannot create veths in $NS"
	for v in wctA0 wctA1 wctB0 wctB1; do
		ip netns exec "$NS" sysctl -qw "net.ipv6.conf.$v.disable_ipv6=1"
		ip -n "$NS" link set "$v" up || die "cannot bring $v up"
	done
	ovsdb-tool create "$WORK/conf.db" /usr/share/openvswitch/vswitch.ovsschema || die "ovsdb-tool create failed"
	ip netns exec "$NS" ovsdb-server "$WORK/conf.db" --remote="punix:$WORK/db.sock" \
		--unixctl="$WORK/ovsdb.ctl" --pidfile="$WORK/ovsdb.pid" --log-file="$WORK/ovsdb.log" --detach 2>>"$LOGF" ||
		die "ovsdb-server did not start (see $WORK/ovsdb.log)"
	OVSDB_PID=$(cat "$WORK/ovsdb.pid")
	VSCTL=(ovs-vsctl --db="unix:$WORK/db.sock" --timeout=10)
	"${VSCTL[@]}" --no-wait init || die "ovs-vsctl init failed"
	ip netns exec "$NS" taskset -c "$SRV_CPU" ovs-vswitchd "unix:$WORK/db.sock" --unixctl="$WORK/vswitchd.ctl" \
		--pidfile="$WORK/vswitchd.pid" --log-file="$WORK/vswitchd.log" --detach 2>>"$LOGF" ||
		die "ovs-vswitchd did not start (see $WORK/vswitchd.log)"
	OVS_PID=$(cat "$WORK/vswitchd.pid")
	"${VSCTL[@]}" add-br $BR -- set bridge $BR datapath_type=netdev \
		-- add-port $BR wctA1 -- set interface wctA1 ofport_request=1 \
		-- add-port $BR wctB1 -- set interface wctB1 ofport_request=2 || die "cannot create the OVS bridge"
	# every thread of ovs-vswitchd (handlers, revalidators, pmd) on the server CPU
	taskset -a -p -c "$SRV_CPU" "$OVS_PID" >/dev/null || die "cannot pin ovs-vswitchd"
	OFCTL=(ovs-ofctl -O OpenFlow13)
	MGMT=unix:$WORK/$BR.mgmt
	for _ in $(seq 50); do [ -S "$WORK/$BR.mgmt" ] && break; sleep 0.1; done
	[ -S "$WORK/$BR.mgmt" ] || die "no OpenFlow socket $WORK/$BR.mgmt (see $WORK/vswitchd.log)"
	log "peer: ovs-vswitchd $(ovs-vswitchd --version | head -1 | awk '{print $NF}') pid $OVS_PID, bridge $BR (netdev datapath) in $NS"
}

ovs_flows() { # on|off
	local ip=ip tcp=tcp
	[ ${#FAM[@]} -gt 0 ] && { ip=ipv6; tcp=tcp6; }
	if [ "$1" = on ]; then
		cat >"$WORK/flows" <<-EOF
			table=0,priority=10,$ip,ct_state=-trk,actions=ct(table=1)
			table=0,priority=0,actions=drop
			table=1,priority=10,in_port=1,$tcp,ct_state=+trk+new,actions=ct(commit),output:2
			table=1,priority=10,in_port=1,$ip,ct_state=+trk+est,actions=output:2
			table=1,priority=10,in_port=2,$ip,ct_state=+trk+est,actions=output:1
			table=1,priority=0,actions=drop
		EOF
	else
		cat >"$WORK/flows" <<-'EOF'
			table=0,priority=10,in_port=1,actions=output:2
			table=0,priority=10,in_port=2,actions=output:1
			table=0,priority=0,actions=drop
		EOF
	fi
	"${OFCTL[@]}" replace-flows "$MGMT" "$WORK/flows" || die "ovs-ofctl replace-flows failed"
	ovs-appctl -t "$WORK/vswitchd.ctl" dpctl/flush-conntrack >/dev/null 2>&1
	ovs-appctl -t "$WORK/vswitchd.ctl" dpif/show >>"$LOGF" 2>&1
}

peer_runs() { # ct(on|off)
	local ct=$1 line r rc
	ovs_flows "$ct"
	for r in $(seq "$REPEATS"); do
		# each run starts from an empty table, as zocd's (a fresh process)
		ovs-appctl -t "$WORK/vswitchd.ctl" dpctl/flush-conntrack >/dev/null 2>&1
		run_perf ip netns exec "$NS" taskset -c "$CLI_CPU" "$ZOC_PERF" conn --target ifaces --if-a wctA0 --if-b wctB0 \
			--peer-pid "$OVS_PID" "${FAM[@]}" -n "$PEER_CONNS" --base "$BASE" --window "$WINDOW" \
			--timeout-ms "$PEER_TIMEOUT"
		rc=$?
		line=$PERF_OUT
		if [ $rc != 0 ]; then
			# a connection whose segment did not come out within the timeout counts as
			# not completed; the rates use completed connections only
			[[ $line == conn:* ]] || die "zoc-perf conn --target ifaces (OVS, ct $ct) failed: $(tail -3 "$LOGF")"
			log "warning: OVS ct=$ct run $r: $(field "$line" lost) of $PEER_CONNS connections lost: $(tail -1 "$LOGF")"
		fi
		echo "$line" >>"$LOGF"
		BASE=$((BASE + PEER_CONNS))
		rec ovs "$ct" "$r" "$(field "$line" cps)" "$(field "$line" peer_cps_per_core)" "$(field "$line" peer_us_per_conn)"
		log "OVS ct=$ct run $r/$REPEATS: $(field "$line" cps) conn/s, $(field "$line" peer_cps_per_core) per OVS core, $(field "$line" peer_us_per_conn) us OVS CPU/conn"
	done
	# where OVS's packets went (megaflow hits vs upcalls): for the notes
	{ echo "# OVS ct=$ct after $REPEATS runs:"; ovs-appctl -t "$WORK/vswitchd.ctl" dpif-netdev/pmd-stats-show; ovs-appctl -t "$WORK/vswitchd.ctl" dpctl/dump-flows; } >>"$LOGF" 2>&1
}

PEER_LIVE_LINE=""
if [[ " $PEERS " == *" ovs "* ]]; then
	ovs_up
	# The memory figure first, in the fresh ovs-vswitchd: after the rate runs its
	# allocator would reuse the memory of flushed sessions and hide the growth.
	if [ "$PEER_LIVE" -gt 0 ]; then
		ovs_flows on
		log "peer OVS: opening $PEER_LIVE sessions and holding them ESTABLISHED ..."
		run_perf ip netns exec "$NS" taskset -c "$CLI_CPU" "$ZOC_PERF" conn --target ifaces --if-a wctA0 --if-b wctB0 \
			--peer-pid "$OVS_PID" "${FAM[@]}" -n 0 --hold "$PEER_LIVE" --base "$BASE" --window "$WINDOW" --timeout-ms "$PEER_TIMEOUT" ||
			log "warning: not every OVS session opened: $(tail -1 "$LOGF")"
		PEER_LIVE_LINE=$(grep '^hold:' <<<"$PERF_OUT")
		BASE=$((BASE + PEER_LIVE))
		echo "$PEER_LIVE_LINE" >>"$LOGF"
		log "OVS live: $PEER_LIVE_LINE (OVS says $(ovs-appctl -t "$WORK/vswitchd.ctl" dpctl/ct-get-nconns 2>&1) connections)"
	fi
	log "peer OVS: $REPEATS x $PEER_CONNS connections each with conntrack on and off (OVS on CPU $SRV_CPU, generator on CPU $CLI_CPU)"
	for ct in on off; do
		peer_runs $ct
		meds ovs $ct
	done
	ovs_down
fi

# ----------------------------------------------------------------------- table
zoc_sw_us=$(fsub "${US[zocd,on]}" "${US[zocd,none]}")
zoc_ct_us=$(fsub "${US[zocd,on]}" "${US[zocd,off]}")
zoc_sw_pc=$(awk -v u="$zoc_sw_us" 'BEGIN { if (u > 0) printf "%.0f", 1e6 / u; else print "nan" }')
{
	echo "| conntrack, $(uname -m), $(nproc) CPUs, $(date -u +%F) | zocd | OVS netdev | zocd / OVS |"
	echo "|---|---|---|---|"
	if [[ " $PEERS " == *" ovs "* ]]; then
		ovs_ct_us=$(fsub "${US[ovs,on]}" "${US[ovs,off]}")
		echo "| new conn/s per core, ct on (median of $REPEATS) | ${PERCORE[zocd,on]} (incl. generator); $zoc_sw_pc switch only | ${PERCORE[ovs,on]} | $(fdiv "${PERCORE[zocd,on]}" "${PERCORE[ovs,on]}") ($(fdiv "$zoc_sw_pc" "${PERCORE[ovs,on]}") switch only) |"
		echo "| CPU us per connection, ct on | ${US[zocd,on]} ($zoc_sw_us switch only) | ${US[ovs,on]} | $(fdiv "${US[ovs,on]}" "${US[zocd,on]}")x less |"
		echo "| CPU us per connection, ct off | ${US[zocd,off]} | ${US[ovs,off]} | |"
		echo "| conntrack-attributable us per connection (on - off) | $zoc_ct_us | $ovs_ct_us | $(fdiv "$ovs_ct_us" "$zoc_ct_us")x less |"
		echo "| new conn/s (wall), ct on | ${CPS[zocd,on]} | ${CPS[ovs,on]} | $(fdiv "${CPS[zocd,on]}" "${CPS[ovs,on]}") |"
	else
		echo "| new conn/s per core, ct on (median of $REPEATS) | ${PERCORE[zocd,on]} (incl. generator); $zoc_sw_pc switch only | - | - |"
		echo "| CPU us per connection, ct on / off / generator | ${US[zocd,on]} / ${US[zocd,off]} / ${US[zocd,none]} | - | - |"
	fi
	if [ -n "$ZOC_LIVE_LINE" ]; then
		zb=$(field "$ZOC_LIVE_LINE" bytes_per_session)
		pb=$(field "$PEER_LIVE_LINE" peer_bytes_per_session)
		echo "| live sessions: bytes per session (RSS growth) | $zb ($(field "$ZOC_LIVE_LINE" sessions) sessions: $(field "$ZOC_LIVE_LINE" rss_mib) MiB) | ${pb:--} ($(field "$PEER_LIVE_LINE" sessions) sessions: $(field "$PEER_LIVE_LINE" peer_rss_mib) MiB) | $(fdiv "${pb:-0}" "$zb")x less |"
		echo "| 16M sessions would take (GiB) | $(field "$ZOC_LIVE_LINE" gib_for_16m) | $(awk -v b="${pb:-0}" 'BEGIN { printf "%.2f", b * 16777216 / 1073741824 }') | |"
	fi
} >"$TABLE"
cat "$TABLE"
log "raw runs: $RAW; table: $TABLE; log: $LOGF"
pass=1
awk -v p="${PERCORE[zocd,on]}" 'BEGIN { exit !(p >= 200000) }' || { log "below target: ${PERCORE[zocd,on]} new conn/s per core (< 200000)"; pass=0; }
if [ -n "$ZOC_LIVE_LINE" ]; then
	awk -v g="$(field "$ZOC_LIVE_LINE" gib_for_16m)" 'BEGIN { exit !(g <= 2.0) }' || { log "above target: 16M sessions would take $(field "$ZOC_LIVE_LINE" gib_for_16m) GiB (> 2)"; pass=0; }
fi
if [ "$pass" = 1 ]; then
	if [ -n "$ZOC_LIVE_LINE" ]; then log "targets met: >= 200K new conn/s per core, 16M sessions <= 2 GiB"
	else log "target met: >= 200K new conn/s per core (memory not measured: BENCH_LIVE=0)"; fi
fi
exit 0
