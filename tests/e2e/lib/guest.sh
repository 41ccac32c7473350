# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# guest.sh - library for end-to-end tests: a Linux guest under QEMU (TCG) whose
# devices are served by zocd (or, for comparison, qemu-storage-daemon).
#
# Source it from a test script, then call zoc_init:
#
#   . "$(dirname "$0")/lib/guest.sh"
#   zoc_init                       # work dir, log dir, traps, CPU choice
#   zoc_guest_prepare              # kernel + base initramfs (cached)
#   zoc_zocd_start                 # or zoc_qsd_start_blk ...
#   zoc_guest_run NAME SCRIPT [--smp N] [--timeout S] -- QEMU-DEVICE-ARGS...
#
# The guest: Debian 12's cloud kernel (version from `apt-cache depends
# linux-image-cloud-amd64`, fetched with apt-get download, cached), a busybox
# initramfs with the virtio modules and fio, and a per-run overlay whose /init
# runs the test's guest script. The guest reports with lines that start with
# "ZOC-"; the host prints them and judges from them.
#
# Environment (all optional):
#   ZOC_E2E_SERVER=zocd|qsd   block server the tests use (default zocd)
#   ZOC_BUILD                 build directory (default <repo>/build)
#   ZOC_CACHE                 download/initramfs cache (default ~/.cache/zoc)
#   ZOC_TMP                   parent of the per-test work dir (default /var/tmp)
#   ZOC_KEEP_WORK=1           keep the work dir (disk images, sockets) after the test
#   ZOC_KERNEL_PKG            e.g. linux-image-6.1.0-56-cloud-amd64 (default: resolved with apt-cache)
#   ZOC_QEMU_CPU, ZOC_ZOCD_CPU  host CPUs for QEMU and zocd (default: first and second allowed CPU)
#   ZOC_GUEST_MEM_MB          guest RAM (default 512)
#   ZOC_GUEST_MEM_SHARED=0    guest RAM not shared (memory-backend-ram: vfio-user DMA_MAP
#                             without an fd); default 1 (a shared memfd)
#   ZOC_ZOCD_ARGS             extra zocd arguments
#   ZOC_VHOST_BLK_PROPS       extra vhost-user-blk-pci properties (e.g. packed=on)
#   ZOC_GUEST_BINS            extra host programs (names on PATH or absolute paths) copied with
#                             their shared libraries into the base initramfs, e.g. "nvme"; set
#                             it before zoc_guest_prepare (part of the cache key)
#   ZOC_GUEST_OVERLAY         a directory whose contents are copied into each guest's
#                             per-run overlay (e.g. a kernel module built for the guest)
#
# QEMU from the Debian 13 root (scripts/trixie-root.sh, QEMU 11: vfio-user-pci):
#   zoc_guest_use_root             ensure the root (skips the test if the machine cannot),
#                                  then every zoc_guest_start runs the root's QEMU with
#                                  ZOC_WORK shared as /tmp/zoc and the RAM as the machine's
#                                  memory-backend
#   zoc_guest_path HOSTPATH        the path QEMU sees for a file or socket under ZOC_WORK

ZOC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
ZOC_BUILD=${ZOC_BUILD:-$ZOC_ROOT/build}
ZOC_CACHE=${ZOC_CACHE:-${HOME:-/root}/.cache/zoc}
ZOC_GUEST_CACHE=$ZOC_CACHE/guest
ZOC_E2E_SERVER=${ZOC_E2E_SERVER:-zocd}
ZOCD=${ZOCD:-$ZOC_BUILD/src/zocd/zocd}
ZOCCTL=${ZOCCTL:-$ZOC_BUILD/src/zocctl/zocctl}
ZOC_GUEST_MEM_MB=${ZOC_GUEST_MEM_MB:-512}
# Bump when the base initramfs recipe changes, so cached images are rebuilt.
ZOC_INITRAMFS_RECIPE=4

ZOC_PIDS=()
ZOC_CLEANUP_HOOKS=()

# ------------------------------------------------------------------ messages
zoc__now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }
ZOC_T0=$(zoc__now_ms)
zoc_elapsed() { # seconds since ARG (ms timestamp; default test start), one decimal
	local d=$(($(zoc__now_ms) - ${1:-$ZOC_T0}))
	printf '%d.%d' $((d / 1000)) $(((d % 1000) / 100))
}
zoc_log() { printf '[%s %6ss] %s\n' "${ZOC_TEST_NAME:-e2e}" "$(zoc_elapsed)" "$*"; }
# zoc_die MESSAGE: the test failed; MESSAGE says what went wrong and what to do.
zoc_die() {
	printf '[%s %6ss] FAIL: %s\n' "${ZOC_TEST_NAME:-e2e}" "$(zoc_elapsed)" "$*"
	exit 1
}
# zoc_skip REASON: the machine cannot give what the test needs.
zoc_skip() {
	printf 'SKIP: %s\n' "$*"
	exit 77
}

# --------------------------------------------------------------- life cycle
zoc_cleanup() {
	local rc=$? p h i alive
	trap - EXIT
	for h in "${ZOC_CLEANUP_HOOKS[@]}"; do eval "$h" || true; done
	for p in "${ZOC_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for i in $(seq 30); do
		alive=0
		for p in "${ZOC_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	for p in "${ZOC_PIDS[@]}"; do
		if kill -0 "$p" 2>/dev/null; then
			echo "cleanup: pid $p did not stop on SIGTERM, sending SIGKILL"
			kill -KILL "$p" 2>/dev/null || true
		fi
	done
	if [ -n "${ZOC_WORK:-}" ] && [ -d "$ZOC_WORK" ]; then
		if [ "${ZOC_KEEP_WORK:-0}" = 1 ]; then
			echo "cleanup: keeping work dir $ZOC_WORK (ZOC_KEEP_WORK=1)"
		else
			rm -rf "$ZOC_WORK"
		fi
	fi
	if [ -n "${ZOC_DISK_DIR:-}" ] && [ "$ZOC_DISK_DIR" != "${ZOC_WORK:-}" ] && [ "${ZOC_KEEP_WORK:-0}" != 1 ]; then
		rm -rf "$ZOC_DISK_DIR"
	fi
	exit "$rc"
}

# zoc_track PID: kill PID (TERM, then KILL) when the test ends.
zoc_track() { ZOC_PIDS+=("$1"); }
zoc_untrack() {
	local p keep=()
	for p in "${ZOC_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	ZOC_PIDS=("${keep[@]}")
}

# zoc__cpus: the CPU ids this process may run on, one per line.
zoc__cpus() {
	local list r a b
	list=$(awk '/^Cpus_allowed_list:/{print $2}' /proc/self/status)
	for r in ${list//,/ }; do
		a=${r%-*}
		b=${r#*-}
		seq "$a" "$b"
	done
}

# zoc_init [NAME]: sets ZOC_TEST_NAME, ZOC_WORK (work dir: sockets, disks), ZOC_ARTIFACTS
# (logs kept after the test), CPUs, traps. Checks the tools every test needs.
zoc_init() {
	ZOC_TEST_NAME=${1:-$(basename "$0" .sh)}
	trap zoc_cleanup EXIT
	trap 'echo "interrupted"; exit 130' INT
	trap 'echo "terminated"; exit 143' TERM

	ZOC_ARTIFACTS=${ZOC_ARTIFACTS:-$ZOC_BUILD/test-logs/e2e-$ZOC_TEST_NAME}
	rm -rf "$ZOC_ARTIFACTS"
	mkdir -p "$ZOC_ARTIFACTS" || zoc_die "cannot create log dir $ZOC_ARTIFACTS"
	# Sockets live here: a short path (unix socket paths are limited to 108 bytes).
	mkdir -p "${ZOC_TMP:-/var/tmp}"
	ZOC_WORK=$(mktemp -d "${ZOC_TMP:-/var/tmp}/zoc-$ZOC_TEST_NAME.XXXXXX") ||
		zoc_die "cannot create a work dir under ${ZOC_TMP:-/var/tmp}; set ZOC_TMP to a writable directory"
	# Disk images must be on a real disk (O_DIRECT, realistic I/O), not tmpfs.
	ZOC_DISK_DIR=$ZOC_WORK
	if [ "$(stat -f -c %T "$ZOC_WORK")" = tmpfs ]; then
		mkdir -p "$ZOC_BUILD/e2e-tmp"
		ZOC_DISK_DIR=$(mktemp -d "$ZOC_BUILD/e2e-tmp/$ZOC_TEST_NAME.XXXXXX")
	fi

	local cpus
	mapfile -t cpus < <(zoc__cpus)
	if [ ${#cpus[@]} -ge 2 ]; then
		ZOC_QEMU_CPU=${ZOC_QEMU_CPU:-${cpus[0]}}
		ZOC_ZOCD_CPU=${ZOC_ZOCD_CPU:-${cpus[1]}}
		ZOC_ZOCD_MODE=()
	else
		# One CPU: a busy-polling zocd would starve QEMU; share it and sleep when idle.
		ZOC_QEMU_CPU=${ZOC_QEMU_CPU:-${cpus[0]}}
		ZOC_ZOCD_CPU=${ZOC_ZOCD_CPU:-${cpus[0]}}
		ZOC_ZOCD_MODE=(--interrupt-mode)
	fi

	# 'make check' installs these first (scripts/deps.sh); if one is still missing, this
	# machine cannot give it: skip, saying what is missing.
	local t
	for t in qemu-system-x86_64 apt-get apt-cache dpkg-deb cpio taskset timeout fallocate fio jq; do
		command -v "$t" >/dev/null 2>&1 ||
			zoc_skip "'$t' is not installed (scripts/deps.sh installs it, as root)"
	done
	[ -x /bin/busybox ] || zoc_skip "/bin/busybox is missing (scripts/deps.sh installs busybox-static, as root)"
	zoc_log "server $ZOC_E2E_SERVER, work dir $ZOC_WORK, logs $ZOC_ARTIFACTS, qemu on CPU $ZOC_QEMU_CPU, server on CPU $ZOC_ZOCD_CPU"
}

# zoc_disk_create PATH_VAR NAME SIZE_MB: an (allocated, zero) raw disk image on disk.
zoc_disk_create() {
	local var=$1 path=$ZOC_DISK_DIR/$2 mb=$3
	fallocate -l "${mb}M" "$path" 2>/dev/null || truncate -s "${mb}M" "$path" ||
		zoc_die "cannot create disk image $path (${mb} MiB): is $ZOC_DISK_DIR full?"
	printf -v "$var" '%s' "$path"
}

# zoc_wait_sock PATH PID TIMEOUT_S WHAT LOG: wait until PATH is a socket; fail if PID exits.
zoc_wait_sock() {
	local path=$1 pid=$2 tmo=$3 what=$4 log=${5:-} i n=$(($3 * 10))
	for ((i = 0; i < n; i++)); do
		[ -S "$path" ] && return 0
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			local rc=0
			wait "$pid" 2>/dev/null || rc=$?
			if [ -n "$log" ]; then
				echo "----- last 20 lines of $log -----"
				tail -n 20 "$log"
				echo "-----"
			fi
			zoc_die "$what (pid $pid) exited with status $rc before creating $path${log:+; its log is above (full: $log)}"
		fi
		sleep 0.1
	done
	[ -n "$log" ] && tail -n 20 "$log"
	zoc_die "$what did not create socket $path within ${tmo}s${log:+ (log: $log)}"
}

# ------------------------------------------------------------------- kernel
# zoc_guest_kernel: sets ZOC_KVER, ZOC_VMLINUZ, ZOC_MODDIR (download + extract once).
zoc_guest_kernel() {
	local pkg=${ZOC_KERNEL_PKG:-}
	mkdir -p "$ZOC_GUEST_CACHE/debs" || zoc_die "cannot create cache dir $ZOC_GUEST_CACHE (set ZOC_CACHE)"
	if [ -z "$pkg" ]; then
		pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
			awk '/Depends: linux-image-[0-9]/{print $2; exit}')
		if [ -z "$pkg" ] && [ "$(id -u)" = 0 ]; then
			zoc_log "apt-cache does not know linux-image-cloud-amd64 yet: apt-get update"
			apt-get update -q >"$ZOC_ARTIFACTS/apt-update.log" 2>&1 || true
			pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
				awk '/Depends: linux-image-[0-9]/{print $2; exit}')
		fi
		if [ -z "$pkg" ]; then
			# Offline: use the newest kernel already in the cache.
			local k
			k=$(find "$ZOC_GUEST_CACHE" -maxdepth 1 -name 'kroot-*' -type d 2>/dev/null | sort -V | tail -1)
			[ -n "$k" ] || zoc_die "cannot find the Debian cloud kernel package: 'apt-cache depends linux-image-cloud-amd64' names none; run 'apt-get update' (as root) or set ZOC_KERNEL_PKG=linux-image-<version>-cloud-amd64"
			pkg=linux-image-${k##*/kroot-}
			zoc_log "apt cannot resolve the kernel; using cached $pkg"
		fi
	fi
	ZOC_KVER=${pkg#linux-image-}
	local kroot=$ZOC_GUEST_CACHE/kroot-$ZOC_KVER
	if [ ! -f "$kroot/boot/vmlinuz-$ZOC_KVER" ]; then
		local deb
		deb=$(find "$ZOC_GUEST_CACHE/debs" -maxdepth 1 -name "${pkg}_*.deb" | head -1)
		if [ -z "$deb" ]; then
			zoc_log "downloading $pkg (apt-get download, once; cached in $ZOC_GUEST_CACHE)"
			(cd "$ZOC_GUEST_CACHE/debs" && apt-get download "$pkg") >"$ZOC_ARTIFACTS/apt-download.log" 2>&1 || {
				tail -n 5 "$ZOC_ARTIFACTS/apt-download.log"
				# No network / no mirror: the machine cannot give the guest kernel.
				zoc_skip "cannot download the guest kernel $pkg (apt-get download failed, above): needs the Debian mirror; run 'apt-get update' or set ZOC_CACHE to a cache that has it"
			}
			deb=$(find "$ZOC_GUEST_CACHE/debs" -maxdepth 1 -name "${pkg}_*.deb" | head -1)
		fi
		rm -rf "$kroot.tmp.$$"
		mkdir -p "$kroot.tmp.$$"
		dpkg-deb -x "$deb" "$kroot.tmp.$$" || zoc_die "dpkg-deb -x $deb failed: delete it and retry (download may be corrupt)"
		rm -rf "$kroot"
		mv "$kroot.tmp.$$" "$kroot"
	fi
	ZOC_VMLINUZ=$kroot/boot/vmlinuz-$ZOC_KVER
	ZOC_MODDIR=$kroot/lib/modules/$ZOC_KVER
	[ -f "$ZOC_VMLINUZ" ] || zoc_die "no kernel image at $ZOC_VMLINUZ: delete $kroot and retry"
}

zoc__modcat() {
	case "$1" in
	*.xz) xz -dc "$1" ;;
	*.zst) zstd -dcq "$1" ;;
	*.gz) gzip -dc "$1" ;;
	*) cat "$1" ;;
	esac
}

# ------------------------------------------------------------ initramfs
# zoc_guest_base: sets ZOC_BASE_INITRD, the cached base initramfs (busybox, virtio modules,
# fio and its libraries). Rebuilt when the kernel, fio, busybox or the recipe change.
ZOC_GUEST_MODULES="virtio_pci virtio_blk"
zoc_guest_base() {
	local key
	local bins=() x p
	for x in ${ZOC_GUEST_BINS:-}; do
		p=$(command -v "$x" 2>/dev/null) || zoc_skip "'$x' (needed in the guest) is not installed (scripts/deps.sh installs it, as root)"
		bins+=("$(readlink -f "$p")")
	done
	key=$(printf '%s\n' "$ZOC_KVER" "$ZOC_INITRAMFS_RECIPE" "$ZOC_GUEST_MODULES" \
		"$(dpkg-query -W -f='${Version}' fio busybox-static 2>/dev/null)" | md5sum | cut -c1-10)
	# Extra programs change the key only when there are some (the base image of the tests
	# that need none stays the same).
	if [ ${#bins[@]} -gt 0 ]; then
		key=$(for p in "${bins[@]}"; do stat -L -c '%n %s %Y' "$p"; done | cat <(echo "$key") - |
			md5sum | cut -c1-10)
	fi
	ZOC_BASE_INITRD=$ZOC_GUEST_CACHE/base-$ZOC_KVER-$key.cpio
	[ -s "$ZOC_BASE_INITRD" ] && return 0

	zoc_log "building base initramfs (once; cached as $ZOC_BASE_INITRD)"
	local b=$ZOC_WORK/base
	rm -rf "$b"
	mkdir -p "$b"/{bin,dev,proc,sys,tmp,mods,etc,run,mnt,lib64}
	cp /bin/busybox "$b/bin/busybox"
	local a
	for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$b/bin/$a"; done
	ln -s bin "$b/sbin"
	mkdir -p "$b/usr"
	ln -s ../bin "$b/usr/sbin"
	[ -e "$b/bin/blkdiscard" ] || zoc_die "this busybox has no blkdiscard applet; install busybox-static from Debian 12 or newer"

	# Modules in dependency order, from each module's modinfo "depends=".
	declare -A mp=() seen=()
	local order=() f n
	while IFS= read -r f; do
		n=$(basename "$f")
		n=${n%%.ko*}
		mp[${n//-/_}]=$f
	done < <(find "$ZOC_MODDIR/kernel" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')
	zoc__resolve() {
		local m=${1//-/_} d
		[ -n "${seen[$m]:-}" ] && return 0
		seen[$m]=1
		[ -n "${mp[$m]:-}" ] || return 0 # built in
		for d in $(zoc__modcat "${mp[$m]}" | tr '\0' '\n' | grep -a '^depends=' | head -1 | cut -d= -f2 | tr ',' ' '); do
			zoc__resolve "$d"
		done
		order+=("$m")
	}
	for n in $ZOC_GUEST_MODULES; do zoc__resolve "$n"; done
	for n in "${order[@]}"; do zoc__modcat "${mp[$n]}" >"$b/mods/$n.ko"; done
	printf '%s\n' "${order[@]}" >"$b/mods/order"
	zoc_log "guest modules: ${order[*]:-(all built in)}"

	# fio, the extra programs, and the libraries they link.
	zoc__initrd_add_bin "$b" "$(command -v fio)"
	for p in "${bins[@]}"; do zoc__initrd_add_bin "$b" "$p"; done
	[ ${#bins[@]} -gt 0 ] && zoc_log "guest programs: fio ${ZOC_GUEST_BINS}"
	cp -L /lib64/ld-linux-x86-64.so.2 "$b/lib64/"
	echo 'root:x:0:0:root:/:/bin/sh' >"$b/etc/passwd"

	# Uncompressed: under TCG, unpacking a gzip'ed initramfs costs the guest seconds.
	(cd "$b" && find . | cpio -o -H newc --quiet) >"$ZOC_BASE_INITRD.tmp.$$" ||
		zoc_die "building the initramfs failed (cpio); is $ZOC_GUEST_CACHE full?"
	mv "$ZOC_BASE_INITRD.tmp.$$" "$ZOC_BASE_INITRD"
	rm -rf "$b"
	zoc_log "base initramfs $(du -h "$ZOC_BASE_INITRD" | cut -f1)"
}

# zoc__initrd_add_bin DIR PROGRAM: copy PROGRAM (same path) and the shared libraries it links
# (ldd) into the initramfs tree DIR.
zoc__initrd_add_bin() {
	local b=$1 prog=$2 lib
	if [ -z "$prog" ] || [ ! -x "$prog" ]; then zoc_die "cannot add '$prog' to the initramfs: not an executable"; fi
	cp -L --parents "$prog" "$b/" || zoc_die "cannot copy $prog into the initramfs"
	for lib in $(ldd "$prog" | awk '/=> \//{print $3} /^[ \t]*\//{print $1}'); do
		cp -L --parents "$lib" "$b/" || zoc_die "cannot copy $lib (needed by $prog) into the initramfs"
	done
}

# zoc_guest_prepare: kernel + base initramfs.
zoc_guest_prepare() {
	local t0
	t0=$(zoc__now_ms)
	zoc_guest_kernel
	zoc_guest_base
	zoc_log "guest kernel $ZOC_KVER ready ($(zoc_elapsed "$t0") s)"
}

# The guest's /init. Helpers for guest scripts (busybox ash):
#   zoc_up                    guest uptime in seconds
#   zoc_wait_blk DEV [SECS]   wait until /dev/DEV exists (default 20 s); 1 if not
#   zoc_fail MSG              print "ZOC-FAIL MSG" and remember the failure
#   zoc_failed                true if zoc_fail was called
# The guest script's exit status (or any zoc_fail) decides ZOC-DONE rc=.
zoc__init_script() {
	cat <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu/ceph
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
zoc_up() { cut -d' ' -f1 /proc/uptime; }
echo "ZOC-INIT uptime=$(zoc_up) kernel=$(uname -r) cpus=$(nproc)"
for m in $(cat /mods/order); do insmod /mods/$m.ko || echo "ZOC-FAIL insmod $m failed"; done
zoc_wait_blk() {
	i=0; n=$(( ${2:-20} * 10 ))
	while [ ! -b /dev/$1 ] && [ $i -lt $n ]; do sleep 0.1; i=$((i+1)); done
	[ -b /dev/$1 ]
}
zoc_fail() { echo "ZOC-FAIL $*"; : > /tmp/zoc.failed; }
zoc_failed() { [ -e /tmp/zoc.failed ]; }
# zoc_check_dmesg: prints the kernel's error lines (ZOC-DMESG) and fails on I/O errors.
zoc_check_dmesg() {
	errs=$(dmesg | grep -i error)
	echo "ZOC-DMESG-ERRORS count=$(printf '%s' "$errs" | grep -c .)"
	[ -n "$errs" ] && echo "$errs" | sed 's/^/ZOC-DMESG /'
	if dmesg | grep -qiE 'I/O error|blk_update_request|critical (medium|target) error|Buffer I/O'; then
		zoc_fail "the guest kernel logged I/O errors (ZOC-DMESG lines)"
	fi
}
[ -f /zoc.env ] && . /zoc.env
( . /guest.sh ); rc=$?
[ $rc = 0 ] && zoc_failed && rc=1
echo "ZOC-DONE rc=$rc uptime=$(zoc_up)"
sync
poweroff -f
EOF
}

# zoc_guest_initrd OUT SCRIPT [KEY=VALUE...]: OUT = base + overlay with /init, /guest.sh
# (copied from SCRIPT) and /zoc.env (the KEY=VALUE pairs, for the guest script).
zoc_guest_initrd() {
	local out=$1 script=$2
	shift 2
	[ -f "$script" ] || zoc_die "guest script $script not found"
	local o
	o=$(mktemp -d "$ZOC_WORK/overlay.XXXXXX")
	zoc__init_script >"$o/init"
	chmod +x "$o/init"
	cp "$script" "$o/guest.sh"
	if [ -n "${ZOC_GUEST_OVERLAY:-}" ]; then
		cp -a "$ZOC_GUEST_OVERLAY/." "$o/" || zoc_die "cannot copy $ZOC_GUEST_OVERLAY into the overlay initramfs"
	fi
	local kv
	: >"$o/zoc.env"
	for kv in "$@"; do
		[[ $kv == *=* ]] || zoc_die "zoc_guest_initrd: '$kv' is not KEY=VALUE"
		printf "%s='%s'\n" "${kv%%=*}" "${kv#*=}" >>"$o/zoc.env"
	done
	(cd "$o" && find . | cpio -o -H newc --quiet) >"$o.cpio" || zoc_die "cannot build the overlay initramfs"
	cat "$ZOC_BASE_INITRD" "$o.cpio" >"$out" || zoc_die "cannot write $out: is $ZOC_WORK full?"
	rm -rf "$o" "$o.cpio"
}

# ------------------------------------------------------------------ guest
# zoc_guest_start NAME SCRIPT [--smp N] [--timeout S] [--env K=V]... -- QEMU-ARGS...
#   boots the guest in the background; console (and QEMU's stderr) to
#   $ZOC_ARTIFACTS/NAME.console.log. Sets ZOC_GUEST_PID, ZOC_GUEST_LOG, ZOC_GUEST_T0.
zoc_guest_start() {
	local name=$1 script=$2 smp=1 tmo=300 envs=()
	shift 2
	while [ $# -gt 0 ]; do
		case "$1" in
		--smp) smp=$2; shift 2 ;;
		--timeout) tmo=$2; shift 2 ;;
		--env) envs+=("$2"); shift 2 ;;
		--) shift; break ;;
		*) zoc_die "zoc_guest_start: unknown option $1" ;;
		esac
	done
	[ -n "${ZOC_BASE_INITRD:-}" ] || zoc_guest_prepare
	local initrd=$ZOC_WORK/$name.initrd.cpio
	zoc_guest_initrd "$initrd" "$script" "${envs[@]}"
	ZOC_GUEST_NAME=$name
	ZOC_GUEST_LOG=$ZOC_ARTIFACTS/$name.console.log
	ZOC_GUEST_TIMEOUT=$tmo
	ZOC_GUEST_UP=0
	local mem=$ZOC_GUEST_MEM_MB memobj="memory-backend-memfd,id=mem,size=${ZOC_GUEST_MEM_MB}M,share=on"
	local memdesc="shared memfd RAM"
	if [ "${ZOC_GUEST_MEM_SHARED:-1}" = 0 ]; then
		memobj="memory-backend-ram,id=mem,size=${mem}M"
		memdesc="unshared RAM"
	fi
	# The host's QEMU, or the root's (zoc_guest_use_root): there it sees ZOC_WORK as
	# /tmp/zoc, so the kernel is copied into ZOC_WORK once.
	local qemu=(qemu-system-x86_64) machine=(-machine q35 -numa "node,memdev=mem")
	local kernel=$ZOC_VMLINUZ where="host QEMU"
	if [ "${ZOC_GUEST_ROOT:-0}" = 1 ]; then
		[ -f "$ZOC_WORK/vmlinuz" ] || cp "$ZOC_VMLINUZ" "$ZOC_WORK/vmlinuz" ||
			zoc_die "cannot copy the kernel into $ZOC_WORK"
		kernel=$(zoc_guest_path "$ZOC_WORK/vmlinuz")
		initrd=$(zoc_guest_path "$initrd")
		qemu=("$ZOC_ROOT/scripts/trixie-root.sh" run --share "$ZOC_WORK" -- qemu-system-x86_64)
		machine=(-machine "q35,memory-backend=mem")
		where="QEMU $ZOC_GUEST_ROOT_QEMU_VERSION of the Debian 13 root"
	fi
	# maxcpus >= 2 even for one vCPU: multi-threaded TCG marks its code parallel only
	# then, and the QEMU of Debian 12 drops the guest's memory barriers from code that
	# is not (tcg_gen_mb; later QEMU always emits them). zocd is another CPU on the
	# rings: without host fences the guest's
	# re-arm of the used-event / off_wrap and its re-check of the used ring can pass
	# zocd's used write and event read, and an interrupt is lost (zocd's watchdog then
	# sends it 100 ms late).
	local smp_arg="$smp,maxcpus=$((smp < 2 ? 2 : smp))"
	zoc_log "booting guest $name ($where, TCG, $smp vCPU, $mem MiB $memdesc, timeout ${tmo}s)..."
	{
		echo "# qemu-system-x86_64 (${where}) -smp $smp_arg -m $mem $*"
	} >"$ZOC_GUEST_LOG"
	ZOC_GUEST_T0=$(zoc__now_ms)
	timeout -k 5 "$tmo" taskset -c "$ZOC_QEMU_CPU" "${qemu[@]}" \
		-accel tcg "${machine[@]}" -cpu max -smp "$smp_arg" -m "${mem}M" \
		-object "$memobj" \
		-nodefaults -no-user-config -display none -vga none -monitor none -serial stdio -no-reboot \
		-kernel "$kernel" -initrd "$initrd" \
		-append "console=ttyS0 panic=-1 quiet loglevel=4 ${ZOC_GUEST_APPEND:-}" \
		"$@" </dev/null >>"$ZOC_GUEST_LOG" 2>&1 &
	ZOC_GUEST_PID=$!
	zoc_track "$ZOC_GUEST_PID"
}

# zoc_guest_use_root: later guests run under the QEMU of the Debian 13 root
# (scripts/trixie-root.sh; created once and cached, ~1 min). Skips the test (exit 77) when
# the machine cannot provide the root. Sets ZOC_GUEST_ROOT=1, ZOC_GUEST_ROOT_QEMU_VERSION.
zoc_guest_use_root() {
	local rs=$ZOC_ROOT/scripts/trixie-root.sh rc=0 dir v
	[ "$(id -u)" = 0 ] || zoc_skip "QEMU 11 runs from the Debian 13 root, which needs root (chroot, unshare)"
	command -v unshare >/dev/null 2>&1 || zoc_skip "unshare (util-linux) missing: cannot enter the Debian 13 root"
	zoc_log "preparing the Debian 13 root with QEMU 11 (cached; the first run takes minutes) ..."
	dir=$("$rs" ensure) || rc=$?
	[ $rc = 77 ] && zoc_skip "no Debian 13 root: scripts/trixie-root.sh could not create it (reason above)"
	[ $rc = 0 ] || zoc_die "scripts/trixie-root.sh ensure failed (exit $rc, above)"
	v=$("$rs" run -- qemu-system-x86_64 --version 2>&1 | awk '/version/{print $4; exit}')
	[ -n "$v" ] || zoc_die "qemu-system-x86_64 --version in the root $dir printed no version"
	ZOC_GUEST_ROOT=1
	ZOC_GUEST_ROOT_QEMU_VERSION=$v
	zoc_log "guests run under QEMU $v from $dir"
}

# zoc_guest_path HOSTPATH: the path of a file under ZOC_WORK as the guest's QEMU sees it
# (itself for the host's QEMU, /tmp/zoc/... inside the root).
zoc_guest_path() {
	if [ "${ZOC_GUEST_ROOT:-0}" != 1 ]; then printf '%s\n' "$1"; return 0; fi
	case $1 in
	"$ZOC_WORK"/*) printf '/tmp/zoc/%s\n' "${1#"$ZOC_WORK"/}" ;;
	*) zoc_die "zoc_guest_path: $1 is not under $ZOC_WORK, the only directory the root's QEMU sees" ;;
	esac
}

# zoc__guest_poll: prints "guest up" once; returns 1 when QEMU has exited.
zoc__guest_poll() {
	if [ "$ZOC_GUEST_UP" = 0 ] && grep -q 'ZOC-INIT' "$ZOC_GUEST_LOG" 2>/dev/null; then
		ZOC_GUEST_UP=1
		zoc_log "guest up after $(zoc_elapsed "$ZOC_GUEST_T0") s"
	fi
	kill -0 "$ZOC_GUEST_PID" 2>/dev/null
}

# zoc_guest_wait_line REGEX [TIMEOUT_S]: wait until the console shows a line matching
# REGEX (extended). Returns 1 if QEMU exits or the time runs out first.
zoc_guest_wait_line() {
	local re=$1 tmo=${2:-$ZOC_GUEST_TIMEOUT} i n
	n=$((tmo * 10))
	for ((i = 0; i < n; i++)); do
		grep -qE "$re" "$ZOC_GUEST_LOG" 2>/dev/null && { zoc__guest_poll || true; return 0; }
		zoc__guest_poll || { grep -qE "$re" "$ZOC_GUEST_LOG"; return; }
		sleep 0.1
	done
	return 1
}

# zoc_guest_results [LOG]: the guest's ZOC- lines (without \r).
# shellcheck disable=SC2120
zoc_guest_results() { tr -d '\r' <"${1:-$ZOC_GUEST_LOG}" | grep -a '^ZOC-' || true; }

# zoc_guest_wait: wait for QEMU to exit, print the guest's result lines.
# Returns 0 if the guest script reported ZOC-DONE rc=0, else 1 (with a reason).
zoc_guest_wait() {
	while zoc__guest_poll; do sleep 0.2; done
	local rc=0
	wait "$ZOC_GUEST_PID" 2>/dev/null || rc=$?
	zoc_untrack "$ZOC_GUEST_PID"
	zoc_log "guest $ZOC_GUEST_NAME ended after $(zoc_elapsed "$ZOC_GUEST_T0") s (qemu exit status $rc); its report:"
	zoc_guest_results | sed 's/^/    guest| /'
	local log=$ZOC_GUEST_LOG
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		tr -d '\r' <"$log" | tail -n 25 | sed 's/^/    console| /'
		zoc_log "guest $ZOC_GUEST_NAME timed out after ${ZOC_GUEST_TIMEOUT}s (console tail above; full: $log): the guest hung, probably waiting for an I/O the server never completed"
		return 1
	fi
	if grep -q 'Kernel panic' "$log"; then
		tr -d '\r' <"$log" | grep -a -B 20 'Kernel panic' | sed 's/^/    console| /'
		zoc_log "guest kernel panicked (above; full console: $log)"
		return 1
	fi
	if ! grep -aq 'ZOC-INIT' "$log"; then
		tr -d '\r' <"$log" | tail -n 25 | sed 's/^/    console| /'
		zoc_log "guest never reached /init (qemu exit status $rc; console tail above, full: $log): check the QEMU arguments and that the device server (vhost-user or vfio-user) accepted the connection"
		return 1
	fi
	if ! grep -aq 'ZOC-DONE rc=0' "$log"; then
		if ! grep -aq 'ZOC-DONE' "$log"; then
			tr -d '\r' <"$log" | tail -n 25 | sed 's/^/    console| /'
			zoc_log "guest stopped before its script finished (qemu exit status $rc; console tail above, full: $log)"
		else
			zoc_log "guest script reported failure (ZOC-FAIL lines above; full console: $log)"
		fi
		return 1
	fi
	return 0
}

# zoc_guest_run NAME SCRIPT [options] -- QEMU-ARGS : start + wait.
zoc_guest_run() {
	zoc_guest_start "$@"
	zoc_guest_wait
}

# zoc_vhost_blk_args ID SOCK NUM_QUEUES [RECONNECT_S]: QEMU args for a vhost-user-blk-pci.
zoc_vhost_blk_args() {
	local id=$1 sock=$2 nq=$3 rc=${4:-}
	printf '%s\n' -chardev "socket,id=$id,path=$sock${rc:+,reconnect=$rc}" \
		-device "vhost-user-blk-pci,chardev=$id,num-queues=$nq${ZOC_VHOST_BLK_PROPS:+,$ZOC_VHOST_BLK_PROPS}"
}

# ------------------------------------------------------------------- zocd
# zoc_zocd_start [ZOCD-ARGS...]: start zocd (RPC socket $ZOC_WORK/zocd.sock, log
# $ZOC_ARTIFACTS/zocd.log, appended), wait for its socket. Sets ZOC_ZOCD_PID, ZOC_ZOCD_SOCK.
zoc_zocd_start() {
	[ -x "$ZOCD" ] || zoc_die "zocd not built ($ZOCD missing): run 'make build' (or set ZOC_E2E_SERVER=qsd to test the harness against qemu-storage-daemon)"
	[ -x "$ZOCCTL" ] || zoc_die "zocctl not built ($ZOCCTL missing): run 'make build'"
	ZOC_ZOCD_SOCK=$ZOC_WORK/zocd.sock
	ZOC_ZOCD_LOG=$ZOC_ARTIFACTS/zocd.log
	rm -f "$ZOC_ZOCD_SOCK"
	# shellcheck disable=SC2206
	local extra=(${ZOC_ZOCD_ARGS:-})
	local args=(--rpc "$ZOC_ZOCD_SOCK" --cores "$ZOC_ZOCD_CPU" "${ZOC_ZOCD_MODE[@]}" --log-level info "${extra[@]}" "$@")
	echo "===== $(date -Is) zocd ${args[*]}" >>"$ZOC_ZOCD_LOG"
	taskset -c "$ZOC_ZOCD_CPU" "$ZOCD" "${args[@]}" </dev/null >>"$ZOC_ZOCD_LOG" 2>&1 &
	ZOC_ZOCD_PID=$!
	zoc_track "$ZOC_ZOCD_PID"
	zoc_wait_sock "$ZOC_ZOCD_SOCK" "$ZOC_ZOCD_PID" 15 zocd "$ZOC_ZOCD_LOG"
	zoc_log "zocd pid $ZOC_ZOCD_PID up (rpc $ZOC_ZOCD_SOCK, CPU $ZOC_ZOCD_CPU${ZOC_ZOCD_MODE[*]:+, ${ZOC_ZOCD_MODE[*]}})"
}

# zoc_ctl METHOD [key=value...] [--json]: zocctl against the test's zocd; prints its output.
# On failure prints what failed and returns zocctl's status.
zoc_ctl() {
	local out rc=0
	out=$("$ZOCCTL" -s "$ZOC_ZOCD_SOCK" "$@" 2>&1) || rc=$?
	printf '%s\n' "$out" >>"$ZOC_ARTIFACTS/zocctl.log"
	if [ $rc != 0 ]; then
		printf '%s\n' "$out" | sed 's/^/    zocctl| /' >&2
		echo "zocctl $* failed with status $rc (output above)" >&2
		return $rc
	fi
	printf '%s\n' "$out"
}

# zoc_zocd_alive: true if the zocd we started still runs.
zoc_zocd_alive() { [ -n "${ZOC_ZOCD_PID:-}" ] && kill -0 "$ZOC_ZOCD_PID" 2>/dev/null; }

# zoc_zocd_kill9: SIGKILL zocd (a crash), reap it.
zoc_zocd_kill9() {
	kill -KILL "$ZOC_ZOCD_PID" 2>/dev/null || zoc_die "zocd (pid $ZOC_ZOCD_PID) was already gone before SIGKILL; see $ZOC_ZOCD_LOG"
	wait "$ZOC_ZOCD_PID" 2>/dev/null || true
	zoc_untrack "$ZOC_ZOCD_PID"
	zoc_log "zocd pid $ZOC_ZOCD_PID killed with SIGKILL"
}

# zoc_zocd_stop: zocctl zocd_shutdown, wait up to 10 s. Returns 1 (with a message)
# if zocd had to be killed or exited with a nonzero status.
zoc_zocd_stop() {
	zoc_zocd_alive || { zoc_log "zocd already stopped"; return 1; }
	zoc_ctl zocd_shutdown >/dev/null || true
	local i rc=0
	for i in $(seq 100); do zoc_zocd_alive || break; sleep 0.1; done
	if zoc_zocd_alive; then
		kill -KILL "$ZOC_ZOCD_PID" 2>/dev/null
		wait "$ZOC_ZOCD_PID" 2>/dev/null
		zoc_untrack "$ZOC_ZOCD_PID"
		zoc_log "zocd did not exit within 10 s of zocd_shutdown; killed it (log: $ZOC_ZOCD_LOG)"
		return 1
	fi
	wait "$ZOC_ZOCD_PID" 2>/dev/null || rc=$?
	zoc_untrack "$ZOC_ZOCD_PID"
	if [ $rc != 0 ]; then
		tail -n 10 "$ZOC_ZOCD_LOG" | sed 's/^/    zocd| /'
		zoc_log "zocd exited with status $rc after zocd_shutdown (log tail above; full: $ZOC_ZOCD_LOG)"
		return 1
	fi
	zoc_log "zocd stopped (zocd_shutdown, exit status 0)"
}

# zoc_zocd_check_log: fail on sanitizer reports / crashes in the zocd log.
zoc_zocd_check_log() {
	if grep -qE 'ERROR: AddressSanitizer|runtime error:|Segmentation fault|Assertion .* failed' "$ZOC_ZOCD_LOG" 2>/dev/null; then
		grep -E -A5 'ERROR: AddressSanitizer|runtime error:|Segmentation fault|Assertion .* failed' "$ZOC_ZOCD_LOG" | head -20
		zoc_die "zocd log shows a crash or sanitizer report (above; full: $ZOC_ZOCD_LOG)"
	fi
}

# ------------------------------------------------------ qemu-storage-daemon
# zoc_qsd_start_blk ID BACKING SOCK NUM_QUEUES: qemu-storage-daemon exporting one
# vhost-user-blk. BACKING is a file path or "null:SIZE_MB". Sets ZOC_QSD_PID[ID],
# ZOC_QSD_CMD[ID] (for a restart with the same arguments).
declare -A ZOC_QSD_PID=() ZOC_QSD_CMD=()
zoc_qsd_start_blk() {
	local id=$1 backing=$2 sock=$3 nq=$4
	command -v qemu-storage-daemon >/dev/null ||
		zoc_die "qemu-storage-daemon not found: install qemu-system-x86 / qemu-utils (scripts/deps.sh)"
	local bd
	if [[ $backing == null:* ]]; then
		bd="--blockdev driver=null-co,node-name=$id,size=$((${backing#null:} << 20)),read-zeroes=on"
	else
		bd="--blockdev driver=file,node-name=${id}f,filename=$backing,cache.direct=on,aio=io_uring,discard=unmap --blockdev driver=raw,node-name=$id,file=${id}f,discard=unmap"
	fi
	ZOC_QSD_CMD[$id]="$bd --export type=vhost-user-blk,id=e$id,node-name=$id,addr.type=unix,addr.path=$sock,writable=on,num-queues=$nq"
	zoc__qsd_launch "$id" "$sock"
}
zoc__qsd_launch() {
	local id=$1 sock=$2 log=$ZOC_ARTIFACTS/qsd-$1.log
	rm -f "$sock"
	echo "===== $(date -Is) qemu-storage-daemon ${ZOC_QSD_CMD[$id]}" >>"$log"
	# shellcheck disable=SC2086
	taskset -c "$ZOC_ZOCD_CPU" qemu-storage-daemon ${ZOC_QSD_CMD[$id]} </dev/null >>"$log" 2>&1 &
	ZOC_QSD_PID[$id]=$!
	zoc_track "${ZOC_QSD_PID[$id]}"
	zoc_wait_sock "$sock" "${ZOC_QSD_PID[$id]}" 15 qemu-storage-daemon "$log"
	zoc_log "qemu-storage-daemon $id pid ${ZOC_QSD_PID[$id]} serving $sock"
}
zoc_qsd_kill9() {
	local id=$1
	kill -KILL "${ZOC_QSD_PID[$id]}" 2>/dev/null || zoc_die "qemu-storage-daemon $id was already gone before SIGKILL"
	wait "${ZOC_QSD_PID[$id]}" 2>/dev/null || true
	zoc_untrack "${ZOC_QSD_PID[$id]}"
	zoc_log "qemu-storage-daemon $id pid ${ZOC_QSD_PID[$id]} killed with SIGKILL"
}
zoc_qsd_restart() { zoc__qsd_launch "$1" "$2"; }

# --------------------------------------------------------------- host checks
# zoc_stat JSON DEVICE KEY [QUEUE]: a counter from `zocctl device_stats --json`
# (an array of {name, total: {...}, queues: [{index, ...}]}): the device's total,
# or queue QUEUE's. Prints the number, or nothing if absent.
zoc_stat() {
	local json=$1 dev=$2 key=$3 q=${4:-}
	if [ -z "$q" ]; then
		jq -r --arg d "$dev" --arg k "$key" \
			'[.[]? | select(.name == $d) | .total[$k] // empty] | first // empty' <<<"$json"
	else
		jq -r --arg d "$dev" --arg k "$key" --argjson q "$q" \
			'[.[]? | select(.name == $d) | .queues[]? | select(.index == $q) | .[$k] // empty] | first // empty' <<<"$json"
	fi
}
# zoc_stats_summary JSON: one line per queue of every device.
zoc_stats_summary() {
	jq -r '.[]? | .name as $n | (.queues // [])[] |
		"\($n) queue \(.index): reads \(.read_ops) writes \(.write_ops) flushes \(.flush_ops) discards \(.discard_ops) errors \(.errors) invalid \(.invalid) p50 \(.latency_ns.p50 // "?") ns p99 \(.latency_ns.p99 // "?") ns"' <<<"$1"
}
