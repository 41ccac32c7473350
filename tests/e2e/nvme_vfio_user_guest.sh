#!/bin/bash
# SPDX-License-Identifier: MIT
#
# nvme_vfio_user_guest.sh - a Linux guest's own nvme driver against zocd's NVMe controller,
# reached over vfio-user by QEMU 11's vfio-user-pci (from the Debian 13 root of
# scripts/trixie-root.sh), backed by an io_uring file bdev (256 MiB on disk).
#
# QEMU: -accel tcg, RAM in a shared memfd (memory-backend-memfd,share=on as the machine's
# memory-backend: zocd maps it for DMA), -device vfio-user-pci,socket={unix: zocd's socket}.
# zocd: bdev_uring_create Disk0, nvme_ctrlr_create nvme0 (socket), nvme_ns_add nvme0 Disk0.
#
# Boot 1 (-smp 2): the nvme driver probes the controller, /dev/nvme0n1 appears with the
#   file's size, 2 I/O queues (/sys/block/nvme0n1/mq, the driver's "N/0/0 queues" line);
#   `nvme id-ctrl` and `nvme smart-log` answer; fio 4k random writes at QD 32 (2 jobs,
#   one per CPU, 64 MiB in all) then crc32c verify; a 1 MiB pattern; a controller reset
#   (echo 1 > /sys/class/nvme/nvme0/reset_controller) brings the controller back to "live",
#   the data written before it verifies (fio --verify_only) and fio write + verify passes
#   again; smart-log counts the writes; the guest powers off (the driver shuts the
#   controller down: CC.SHN) and QEMU exits 0; no I/O errors or nvme timeouts in dmesg.
# Boot 2: a new QEMU (a new vfio-user connection to the same controller): the namespace
#   comes back and the pattern of boot 1 reads back; a short fio verify.
# Host: the pattern is in the backing file; zocd_shutdown stops zocd cleanly.
#
# ZOC_E2E_SERVER=qemu (or qsd) runs the same guest side against QEMU's own emulated NVMe
# controller (-device nvme) instead of zocd: it proves the harness, not zocd.
#
# Environment (besides lib/guest.sh's): ZOC_NVME_FIO_MB (fio size, default 64; 16 in the ASan pass),
# ZOC_NVME_QUEUE_ARGS (extra nvme_ctrlr_create params, e.g. "max_io_queues=4"),
# ZOC_NVME_ZOCD_MODE=poll (default: one busy-polling reactor, doorbells in shared memory)
# or interrupt (two sleeping reactors, doorbell writes trapped as vfio-user messages).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/guest.sh"
zoc_init

DISK_MB=256
PAT_MB=200 # pattern offset (MiB), outside what fio touches
FIO_MB=${ZOC_NVME_FIO_MB:-64}
# The runner's ASan pass (ZOC_E2E_PASS=asan): the same server paths with less guest I/O.
[ "${ZOC_E2E_PASS:-}" = asan ] && FIO_MB=${ZOC_NVME_FIO_MB:-16}
SMP=2
case $ZOC_E2E_SERVER in
zocd) ;;
qemu | qsd) ZOC_E2E_SERVER=qemu ;;
*) zoc_die "ZOC_E2E_SERVER=$ZOC_E2E_SERVER: this test knows zocd and qemu (QEMU's own NVMe model)" ;;
esac

cat >"$ZOC_WORK/guest.sh" <<'EOF'
# ---- probe
if ! zoc_wait_blk nvme0n1 60; then
	zoc_fail "no /dev/nvme0n1 60 s after boot: the nvme driver did not bring the namespace up"
	echo "ZOC-DEBUG pci devices (vendor device class):"
	for d in /sys/bus/pci/devices/*; do echo "ZOC-DEBUG   ${d##*/} $(cat $d/vendor $d/device $d/class | tr '\n' ' ') driver=$(basename "$(readlink $d/driver 2>/dev/null)" 2>/dev/null)"; done
	for c in /sys/class/nvme/nvme*; do [ -e "$c" ] && echo "ZOC-DEBUG $c state=$(cat $c/state 2>/dev/null)"; done
	dmesg | grep -iE 'nvme|pci 0000:00:0|vfio' | tail -40 | sed 's/^/ZOC-DEBUG dmesg /'
	exit 1
fi
C=/sys/class/nvme/nvme0
echo "ZOC-NVME up uptime=$(zoc_up) state=$(cat $C/state) model='$(cat $C/model | sed 's/ *$//')' serial='$(cat $C/serial | sed 's/ *$//')' firmware='$(cat $C/firmware_rev | sed 's/ *$//')' transport=$(cat $C/transport)"
size=$(blockdev --getsize64 /dev/nvme0n1)
mq=$(ls /sys/block/nvme0n1/mq 2>/dev/null | wc -l)
qline=$(dmesg | grep -o 'nvme nvme0: [0-9]*/[0-9]*/[0-9]* default/read/poll queues' | tail -1)
echo "ZOC-BLK size=$size lbs=$(cat /sys/block/nvme0n1/queue/logical_block_size) mq=$mq write_cache='$(cat /sys/block/nvme0n1/queue/write_cache)' max_hw_sectors_kb=$(cat /sys/block/nvme0n1/queue/max_hw_sectors_kb) queues='$qline'"
[ "$size" = $((DISK_MB * 1048576)) ] || zoc_fail "/dev/nvme0n1 is $size bytes, expected $((DISK_MB * 1048576)) (the backing file)"
[ "$mq" = "$NQ" ] || zoc_fail "/sys/block/nvme0n1/mq has $mq entries, expected $NQ I/O queues ($(nproc) CPUs; driver says '$qline')"

# ---- nvme-cli
nvme version | sed 's/^/ZOC-NVME-CLI /'
if nvme id-ctrl /dev/nvme0 >/tmp/idctrl 2>&1; then
	cat /tmp/idctrl # the whole answer on the console (not in the report)
	echo "ZOC-ID-CTRL $(awk -F'[ \t]*:[ \t]*' '$1 ~ /^(vid|ssvid|sn|mn|fr|ver|mdts|cntlid|sqes|cqes|nn|oncs|vwc|sgls|cmic|aerl|elpe|npss|lpa|acl|frmw) *$/ {gsub(/ +$/, "", $2); gsub(/ +$/, "", $1); printf "%s=%s ", $1, $2}' /tmp/idctrl)"
else
	zoc_fail "nvme id-ctrl /dev/nvme0 failed: $(head -3 /tmp/idctrl)"
fi
if nvme id-ns /dev/nvme0n1 >/tmp/idns 2>&1; then
	echo "ZOC-ID-NS $(awk -F'[ \t]*:[ \t]*' '$1 ~ /^(nsze|ncap|nuse|nsfeat|nlbaf|flbas|dlfeat) *$/ {gsub(/ +$/, "", $1); printf "%s=%s ", $1, $2}' /tmp/idns) $(grep -m1 'in use' /tmp/idns | tr -s ' ')"
else
	zoc_fail "nvme id-ns /dev/nvme0n1 failed: $(head -3 /tmp/idns)"
fi
smart() { # label
	if nvme smart-log /dev/nvme0 >/tmp/smart 2>&1; then
		cat /tmp/smart # the whole log on the console (not in the report)
		echo "ZOC-SMART $1 $(smart_kv | awk '$1 ~ /^(critical_warning|temperature|available_spare|percentage_used|data_units_read|data_units_written|host_read_commands|host_write_commands|media_errors|num_err_log_entries|power_cycles|unsafe_shutdowns)$/ {printf "%s=%s ", $1, $2}')"
	else
		zoc_fail "nvme smart-log /dev/nvme0 failed ($1): $(head -3 /tmp/smart)"
	fi
}
# "Key Name : 1,234 (x MB)" -> "key_name 1234(xMB)" (nvme-cli 2.3 capitalises some keys)
smart_kv() {
	awk -F'[ \t]*:[ \t]*' 'NF >= 2 { k = tolower($1); gsub(/^[ \t]+|[ \t]+$/, "", k); gsub(/ /, "_", k)
		v = $2; gsub(/[ ,]/, "", v); print k, v }' /tmp/smart
}
smart_val() { smart_kv | awk -v k="$1" '$1 == k { sub(/[^0-9].*/, "", $2); print $2; exit }'; }
smart before-io

# ---- fio: 4k random writes at QD 32, one job per CPU (every I/O queue), then crc32c verify
run_fio() { # name, extra args...
	n=$1; shift
	fio --name="$n" --filename=/dev/nvme0n1 --rw=randwrite --bs=4k --iodepth=32 --ioengine=libaio \
		--direct=1 --verify=crc32c --do_verify=1 --group_reporting \
		--numjobs=$(nproc) --cpus_allowed_policy=split --cpus_allowed=0-$(( $(nproc) - 1 )) \
		--size=$((FIO_MB / $(nproc)))M --offset_increment=$((FIO_MB / $(nproc)))M "$@" >/tmp/fio.$n 2>&1
	frc=$?
	echo "ZOC-FIO $n rc=$frc uptime=$(zoc_up) $(grep -o 'write: IOPS=[^,]*' /tmp/fio.$n | head -1) $(grep -o 'read: IOPS=[^,]*' /tmp/fio.$n | head -1) $(grep -oE 'err= *[0-9]+' /tmp/fio.$n | tr -d ' ' | sort -u | tr '\n' ' ')"
	if [ $frc != 0 ] || grep -qiE 'verify: bad|crc32c: verify failed|io_u error' /tmp/fio.$n; then
		zoc_fail "fio $n failed (rc=$frc): random write + crc32c verify, QD 32, $(nproc) jobs"
		grep -iE 'error|bad|verify|fio:' /tmp/fio.$n | head -20
	fi
}
pattern_check() { # label
	got=$(dd if=/dev/nvme0n1 bs=1M skip=$PAT_MB count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
	echo "ZOC-PATTERN $1 readback md5=$got"
	[ "$got" = "$PAT_MD5" ] || zoc_fail "$1: the pattern reads back as md5 $got, expected $PAT_MD5"
}
wait_live() { # seconds: until the controller's state is live
	i=0
	while [ "$(cat $C/state)" != live ] && [ $i -lt $(($1 * 10)) ]; do sleep 0.1; i=$((i + 1)); done
	[ "$(cat $C/state)" = live ]
}

if [ "$PHASE" = 1 ]; then
	run_fio randwrite-verify
	# The host reads zocd's per-queue statistics now, while the I/O queues exist.
	echo "ZOC-STATS-NOW hold=${HOLD}s"
	sleep "$HOLD"
	dd if=/dev/urandom of=/tmp/pat bs=1M count=1 2>/dev/null
	PAT_MD5=$(md5sum </tmp/pat | cut -d' ' -f1)
	dd if=/tmp/pat of=/dev/nvme0n1 bs=1M seek=$PAT_MB oflag=direct conv=fsync 2>/tmp/dd.err ||
		zoc_fail "writing the pattern failed: $(cat /tmp/dd.err)"
	echo "ZOC-PATTERN md5=$PAT_MD5"

	# ---- controller reset
	t0=$(zoc_up)
	if echo 1 >$C/reset_controller 2>/tmp/reset.err; then
		if wait_live 30; then
			echo "ZOC-RESET ok live again (reset started at uptime $t0, now $(zoc_up)); $(dmesg | grep -c 'default/read/poll queues') queue setups so far"
		else
			zoc_fail "after echo 1 > reset_controller the controller is '$(cat $C/state)', not live, 30 s later"
		fi
	else
		zoc_fail "echo 1 > $C/reset_controller failed: $(cat /tmp/reset.err)"
	fi
	zoc_wait_blk nvme0n1 10 || zoc_fail "/dev/nvme0n1 is gone after the controller reset"
	mq=$(ls /sys/block/nvme0n1/mq 2>/dev/null | wc -l)
	[ "$mq" = "$NQ" ] || zoc_fail "after the reset /sys/block/nvme0n1/mq has $mq entries, expected $NQ"
	# The data written before the reset is still there; then I/O resumes: write + verify.
	run_fio randwrite-verify --verify_only
	pattern_check after-reset
	run_fio after-reset-randwrite-verify --offset=96M
	nvme id-ctrl /dev/nvme0 >/dev/null 2>&1 || zoc_fail "nvme id-ctrl /dev/nvme0 failed after the reset"
	smart after-io
	w=$(smart_val data_units_written)
	hw=$(smart_val host_write_commands)
	if [ "${w:-0}" = 0 ] || [ "${hw:-0}" = 0 ]; then
		zoc_fail "smart-log after $((FIO_MB * 2 + 1)) MiB of writes says data_units_written=${w:-?} host_write_commands=${hw:-?}: the SMART log does not count the I/O"
	fi
else
	pattern_check boot2
	run_fio boot2-randwrite-verify --offset=128M
fi

zoc_check_dmesg
# nvme driver trouble: timeouts, aborts, resets we did not ask for, a dead controller.
if dmesg | grep -iE 'nvme' | grep -iE 'timeout|abort|controller is down|failed|Removing after|Device not ready|I/O [0-9]+ QID'; then
	zoc_fail "the nvme driver logged trouble (lines above)"
fi
echo "ZOC-NVME dmesg: $(dmesg | grep -c nvme) nvme lines"
dmesg | grep -i nvme | tail -15 | sed 's/^/ZOC-DMESG-NVME /'
echo "ZOC-POWEROFF uptime=$(zoc_up)"
EOF

# shellcheck disable=SC2034 # read by lib/guest.sh
ZOC_GUEST_BINS=nvme
zoc_guest_use_root
zoc_guest_prepare
# Shut-down warnings of the nvme driver (dev_warn) must reach the console.
# shellcheck disable=SC2034 # read by lib/guest.sh
ZOC_GUEST_APPEND="loglevel=5"

if [ "$ZOC_E2E_SERVER" = zocd ]; then
	zoc_disk_create DISK disk0.img "$DISK_MB"
	NVME_SOCK=$ZOC_WORK/nvme0.sock
	case ${ZOC_NVME_ZOCD_MODE:-poll} in
	poll) ;; # one polling reactor on its own CPU: doorbells in shared memory
	interrupt)
		# Two reactors (one shares its CPU with QEMU) that sleep: doorbells trapped.
		if [[ $ZOC_ZOCD_CPU != *,* ]] && [ "$(zoc__cpus | wc -l)" -ge 2 ]; then
			ZOC_ZOCD_CPU=$(zoc__cpus | head -2 | paste -sd,)
		fi
		# shellcheck disable=SC2034 # read by lib/guest.sh
		ZOC_ZOCD_MODE=(--interrupt-mode)
		;;
	*) zoc_die "ZOC_NVME_ZOCD_MODE=$ZOC_NVME_ZOCD_MODE: poll or interrupt" ;;
	esac
	zoc_zocd_start
	zoc_ctl bdev_uring_create name=Disk0 filename="$DISK" >/dev/null ||
		zoc_die "bdev_uring_create failed (above)"
	# shellcheck disable=SC2086
	zoc_ctl nvme_ctrlr_create name=nvme0 socket="$NVME_SOCK" ${ZOC_NVME_QUEUE_ARGS:-} >/dev/null ||
		zoc_die "nvme_ctrlr_create failed (above): does this zocd have the NVMe controller (issue 3)?"
	zoc_ctl nvme_ns_add ctrlr=nvme0 bdev=Disk0 >/dev/null || zoc_die "nvme_ns_add failed (above)"
	zoc_wait_sock "$NVME_SOCK" "$ZOC_ZOCD_PID" 10 zocd "$ZOC_ZOCD_LOG"
	zoc_log "zocd serves NVMe controller nvme0 (namespace 1: io_uring file $DISK, ${DISK_MB} MiB) on $NVME_SOCK"
	DEV_ARGS=(-device "{\"driver\": \"vfio-user-pci\", \"id\": \"nvme0\", \"socket\": {\"path\": \"$(zoc_guest_path "$NVME_SOCK")\", \"type\": \"unix\"}}")
else
	# QEMU's own NVMe model: the disk must be where the root's QEMU sees it (ZOC_WORK).
	DISK=$ZOC_WORK/disk0.img
	fallocate -l "${DISK_MB}M" "$DISK" 2>/dev/null || truncate -s "${DISK_MB}M" "$DISK" ||
		zoc_die "cannot create $DISK"
	cache=none
	[ "$(stat -f -c %T "$ZOC_WORK")" = tmpfs ] && cache=writeback
	DEV_ARGS=(-drive "file=$(zoc_guest_path "$DISK"),if=none,id=d0,format=raw,cache=$cache"
		-device "nvme,serial=zocqemu0,drive=d0")
	zoc_log "server: QEMU's own NVMe model (-device nvme) on $DISK: a harness check, not zocd"
fi
printf '%s\n' "${DEV_ARGS[@]}" >"$ZOC_ARTIFACTS/qemu-device-args.txt"

# zocd's per-queue statistics of the I/O queues (they are listed while the queues exist):
# each I/O submission queue carried writes; with two reactors, the queues are on both.
check_queue_stats() {
	local stats busy nr
	stats=$(zoc_ctl device_stats --json) || zoc_die "zocctl device_stats --json failed (above)"
	printf '%s\n' "$stats" >"$ZOC_ARTIFACTS/device_stats.boot1.json"
	jq -r '.[]? | select(.name == "nvme0") | (.queues // [])[] |
		"nvme0 sq \(.sqid) cq \(.cqid) reactor \(.reactor) size \(.size): reads \(.read_ops) writes \(.write_ops) errors \(.errors) invalid \(.invalid) inflight \(.inflight // "?") p50 \(.latency_ns.p50 // "?") ns"' \
		<<<"$stats" | sed 's/^/    device_stats| /'
	busy=$(jq -r '[.[]? | select(.name == "nvme0") | (.queues // [])[] | select(.sqid > 0 and .write_ops > 0)] | length' <<<"$stats")
	[ "${busy:-0}" -ge $SMP ] ||
		zoc_die "only ${busy:-0} I/O submission queue(s) of nvme0 saw writes, expected $SMP (one fio job per CPU; device_stats above, saved in $ZOC_ARTIFACTS/device_stats.boot1.json)"
	zoc_log "host: zocd's device_stats shows writes on $busy I/O queues"
	if [[ $ZOC_ZOCD_CPU == *,* ]]; then
		nr=$(jq -r '[.[]? | select(.name == "nvme0") | (.queues // [])[] | select(.sqid > 0) | .reactor] | unique | length' <<<"$stats")
		[ "${nr:-0}" -ge 2 ] || zoc_die "zocd has two reactors but nvme0's I/O queues all run on one (device_stats above)"
		zoc_log "host: the I/O queues run on $nr reactors"
	fi
}

# fw_args NAME: QEMU args that keep the firmware's (SeaBIOS) debug output, which shows how
# it drove the NVMe controller before Linux (fw_log NAME copies it to the logs).
fw_args() {
	printf '%s\n' -chardev "file,id=fwlog,path=$(zoc_guest_path "$ZOC_WORK/$1.firmware.log")" \
		-device isa-debugcon,iobase=0x402,chardev=fwlog
}
fw_log() { cp "$ZOC_WORK/$1.firmware.log" "$ZOC_ARTIFACTS/" 2>/dev/null || true; }

# ---- boot 1
mapfile -t FW < <(fw_args boot1)
HOLD=0
[ "$ZOC_E2E_SERVER" = zocd ] && HOLD=3
zoc_guest_start boot1 "$ZOC_WORK/guest.sh" --smp $SMP --timeout 330 \
	--env PHASE=1 --env NQ=$SMP --env DISK_MB=$DISK_MB --env PAT_MB=$PAT_MB --env FIO_MB="$FIO_MB" \
	--env HOLD=$HOLD -- "${FW[@]}" "${DEV_ARGS[@]}"
if [ "$ZOC_E2E_SERVER" = zocd ] && zoc_guest_wait_line '^ZOC-STATS-NOW' 300; then
	check_queue_stats
fi
rc=0
zoc_guest_wait || rc=$?
fw_log boot1
[ $rc = 0 ] || zoc_die "boot 1 failed (reasons above; zocd log: ${ZOC_ZOCD_LOG:-none}; firmware log: $ZOC_ARTIFACTS/boot1.firmware.log)"
grep -aq 'ZOC-STATS-NOW' "$ZOC_GUEST_LOG" || zoc_die "boot 1 never got to the per-queue statistics"
LOG1=$ZOC_GUEST_LOG
PAT_MD5=$(zoc_guest_results | awk '/^ZOC-PATTERN md5=/{sub("md5=","",$2); print $2; exit}')
[ -n "$PAT_MD5" ] || zoc_die "boot 1 did not report its pattern's md5"
# check_poweroff NAME LOG: the nvme driver's shutdown (CC.SHN) completed: no warnings after
# the guest's last line, and the kernel powered the machine off.
check_poweroff() {
	if tr -d '\r' <"$2" | sed -n '/ZOC-POWEROFF/,$p' | grep -aiE 'nvme|shutdown|timeout'; then
		zoc_die "$1: the guest's power-off was not clean (console lines above, after ZOC-POWEROFF; full: $2)"
	fi
	grep -aq 'reboot: Power down' "$2" ||
		zoc_die "$1: the console has no 'reboot: Power down' line: the guest did not power off by itself (full: $2)"
}
check_poweroff boot1 "$LOG1"
zoc_log "boot 1: the guest powered off cleanly (nvme shutdown, no warnings)"
HOST_MD5=$(dd if="$DISK" bs=1M skip=$PAT_MB count=1 2>/dev/null | md5sum | cut -d' ' -f1)
[ "$HOST_MD5" = "$PAT_MD5" ] ||
	zoc_die "the backing file holds md5 $HOST_MD5 at ${PAT_MB} MiB, the guest wrote $PAT_MD5: writes did not reach the file"
zoc_log "host: the guest's pattern is in the backing file at ${PAT_MB} MiB (md5 $HOST_MD5)"

# ---- boot 2: a new connection to the same controller
mapfile -t FW < <(fw_args boot2)
rc=0
zoc_guest_run boot2 "$ZOC_WORK/guest.sh" --smp $SMP --timeout 240 \
	--env PHASE=2 --env NQ=$SMP --env DISK_MB=$DISK_MB --env PAT_MB=$PAT_MB --env FIO_MB=$((FIO_MB / 2)) \
	--env PAT_MD5="$PAT_MD5" -- "${FW[@]}" "${DEV_ARGS[@]}" || rc=$?
fw_log boot2
[ $rc = 0 ] ||
	zoc_die "boot 2 (a new vfio-user connection to the same controller) failed (reasons above; zocd log: ${ZOC_ZOCD_LOG:-none})"
check_poweroff boot2 "$ZOC_GUEST_LOG"

# ---- host side
if [ "$ZOC_E2E_SERVER" != zocd ]; then
	zoc_log "server is QEMU's NVMe model: zocd checks not run; the harness works"
	zoc_log "PASS"
	exit 0
fi
zoc_zocd_alive || zoc_die "zocd died while the guests ran (log: $ZOC_ZOCD_LOG)"
# device_stats of an NVMe controller (src/nvme/nvme.h): {name, totals, queues: [{sqid, cqid,
# reactor, size, read_ops, write_ops, ...}]}; the guests are gone, so only the totals.
STATS=$(zoc_ctl device_stats --json) || zoc_die "zocctl device_stats --json failed (above)"
printf '%s\n' "$STATS" >"$ZOC_ARTIFACTS/device_stats.json"
jq -r '.[]? | select(.name == "nvme0") | .totals | "nvme0 totals: reads \(.read_ops) writes \(.write_ops) flushes \(.flush_ops) errors \(.errors) invalid \(.invalid) unsupported \(.unsupported)"' \
	<<<"$STATS" | sed 's/^/    device_stats| /'
nst() { jq -r --arg k "$1" '[.[]? | select(.name == "nvme0") | .totals[$k] // empty] | first // empty' <<<"$STATS"; }
for k in write_ops read_ops; do
	n=$(nst "$k")
	[ -n "$n" ] || zoc_die "device_stats --json has no totals.$k for nvme0 (saved in $ZOC_ARTIFACTS/device_stats.json)"
	[ "$n" -gt 0 ] || zoc_die "device_stats says nvme0 $k=0 after the guests' I/O (saved in $ZOC_ARTIFACTS/device_stats.json)"
done
n=$(nst errors)
[ "${n:-0}" = 0 ] || zoc_die "device_stats says nvme0 errors=$n: the guests' commands should all have succeeded"
zoc_log "host: device_stats totals show reads and writes, no errors"
zoc_ctl device_delete name=nvme0 >/dev/null || zoc_die "device_delete name=nvme0 failed (above)"
LIST=$(zoc_ctl device_list --json) || zoc_die "device_list failed after device_delete (above)"
if grep -q '"nvme0"' <<<"$LIST"; then zoc_die "device_list still shows nvme0 after device_delete: $LIST"; fi
zoc_log "host: device_delete removed nvme0"
zoc_zocd_stop || zoc_die "zocd did not shut down cleanly (above)"
zoc_zocd_check_log
# Not failures, but worth a look: zocd's warnings and the firmware's NVMe timeouts.
if grep -q ' WARN ' "$ZOC_ZOCD_LOG"; then
	zoc_log "note: zocd logged warnings (count, message):"
	grep ' WARN ' "$ZOC_ZOCD_LOG" | sed 's/^[0-9:.]* WARN *\[[0-9]*\] //; s/0x[0-9a-f]*/0x…/g; s|/[^ :]*\.sock|SOCK|g' |
		sort | uniq -c | sort -rn | head -10 | sed 's/^/    zocd| /'
fi
n=$(cat "$ZOC_ARTIFACTS"/boot*.firmware.log 2>/dev/null | grep -c 'Timeout at nvme' || true)
[ "${n:-0}" = 0 ] || zoc_log "note: the firmware (SeaBIOS) timed out $n time(s) waiting for the NVMe controller (boot*.firmware.log)"
zoc_log "PASS"
