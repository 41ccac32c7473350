#!/usr/bin/env bash
# trixie-root.sh — a cached Debian 13 (trixie) root holding the peers that the host's
# Debian 12 cannot give: QEMU >= 10.1 (vfio-user-pci client, qemu-storage-daemon with
# libblkio), qemu-img / qemu-io with the virtio-blk-vhost-user driver (libblkio), fio.
#
# Usage (as root):
#   scripts/trixie-root.sh ensure              create the root once, print its path
#   scripts/trixie-root.sh path                print the path (no check)
#   scripts/trixie-root.sh install PKG...      add packages to the cached root (idempotent)
#   scripts/trixie-root.sh run [--share HOSTDIR] [--] CMD [ARG...]
#        run CMD inside the root: private mount namespace (unshare -m) with /proc /dev /sys
#        bind-mounted and HOSTDIR (default $ZOC_SHARE_DIR, if set) bind-mounted on
#        ROOT/tmp/zoc; the mounts vanish with the process. The process keeps its PID
#        through unshare → sh → chroot → env → CMD (all exec), so $! of a background
#        `run` is the PID of CMD itself (for /proc/PID/stat, kill, wait).
#   scripts/trixie-root.sh check               exit 0 if the root is complete
#
# Sourcing it (`. scripts/trixie-root.sh`) defines zoc_root_ensure, zoc_root_run,
# zoc_root_path and zoc_root_install without running anything.
#
# Environment:
#   ZOC_CACHE      cache directory (default ~/.cache/zoc); the root is $ZOC_CACHE/trixie-root
#   ZOC_MIRROR     Debian mirror URL (default: the first URIs:/deb line of the host's apt sources)
#   ZOC_SHARE_DIR  host directory shown as /tmp/zoc inside the root by `run`
#
# Exit codes: 0 ok; 77 the machine cannot provide the root (not root, mirror unreachable,
# no debootstrap); 1 anything else. The root is complete only when ROOT/.zoc-root-complete
# exists; an interrupted creation is wiped and redone on the next call.

# shellcheck disable=SC2016 # dpkg-query formats are literal
ZOC_ROOT_PACKAGES_BPO="qemu-system-x86 qemu-utils qemu-block-extra"
ZOC_ROOT_PACKAGES="libblkio1 fio"
ZOC_ROOT_QEMU_MIN="1:10.1~"
ZOC_ROOT_STAMP=.zoc-root-complete

zoc_root__log() { printf 'trixie-root: %s\n' "$*" >&2; }
zoc_root__die() { local rc=$1; shift; printf 'trixie-root: error: %s\n' "$*" >&2; return "$rc"; }

zoc_root_path() {
	printf '%s/trixie-root\n' "${ZOC_CACHE:-$HOME/.cache/zoc}"
}

# The host's own mirror: never a host name written into the repo.
zoc_root__mirror() {
	if [ -n "${ZOC_MIRROR:-}" ]; then printf '%s\n' "${ZOC_MIRROR%/}"; return 0; fi
	local m=""
	if [ -r /etc/apt/sources.list.d/debian.sources ]; then
		m=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
			/etc/apt/sources.list.d/debian.sources)
	fi
	if [ -z "$m" ]; then
		m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|ftp|file):/) { if ($i !~ /security/) { print $i; exit } else break } }')
	fi
	if [ -z "$m" ]; then
		m=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null)
	fi
	[ -n "$m" ] || return 1
	printf '%s\n' "${m%/}"
}

zoc_root__fetch_ok() { # URL
	if command -v curl >/dev/null 2>&1; then
		curl -fsS --max-time 20 -o /dev/null "$1"
	elif command -v wget >/dev/null 2>&1; then
		wget -q -T 20 -t 1 -O /dev/null "$1"
	else
		return 2
	fi
}

# Run in ROOT with the API file systems mounted, in a private mount namespace.
# Uses exec all the way so that the caller's PID is CMD's PID.
zoc_root__exec_in() { # ROOT SHAREDIR CMD...
	local root=$1 share=$2; shift 2
	# shellcheck disable=SC2016
	exec unshare -m --propagation private -- /bin/sh -c '
		set -e
		root=$1; share=$2; shift 2
		mount --rbind /dev "$root/dev"
		mount --bind /proc "$root/proc"
		mount --rbind /sys "$root/sys"
		if [ -n "$share" ]; then
			mkdir -p "$root/tmp/zoc"
			mount --bind "$share" "$root/tmp/zoc"
		fi
		exec chroot "$root" /usr/bin/env -i \
			PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" DEBIAN_FRONTEND=noninteractive \
			"$@"
	' zoc-root "$root" "$share" "$@"
}

zoc_root__in() { # ROOT CMD... (foreground, in a subshell)
	( zoc_root__exec_in "$1" "" "${@:2}" )
}

zoc_root__umount_under() { # DIR: lazily unmount anything left mounted below DIR
	local dir m
	dir=$(readlink -f "$1") || return 0
	awk -v d="$dir/" '{ if (index($5 "/", d) == 1) print $5 }' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

zoc_root__qemu_ok() { # ROOT
	local v
	v=$(chroot "$1" dpkg-query -W -f '${Version}' qemu-system-x86 2>/dev/null) || return 1
	zoc_root__log "qemu-system-x86 $v in the root"
	dpkg --compare-versions "$v" ge "$ZOC_ROOT_QEMU_MIN" && return 0
	zoc_root__die 1 "QEMU $v in trixie-backports is older than ${ZOC_ROOT_QEMU_MIN#1:}: vfio-user-pci needs >= 10.1"
}

zoc_root__create() { # ROOT
	local root=$1 mirror t0
	t0=$(date +%s)
	mirror=$(zoc_root__mirror) || { zoc_root__die 77 "no Debian mirror in /etc/apt/sources.list(.d); set ZOC_MIRROR"; return; }
	zoc_root__log "mirror $mirror"
	if ! zoc_root__fetch_ok "$mirror/dists/trixie/Release"; then
		zoc_root__die 77 "mirror $mirror unreachable (cannot fetch dists/trixie/Release): no network or proxy?"
		return
	fi
	if ! zoc_root__fetch_ok "$mirror/dists/trixie-backports/Release"; then
		zoc_root__die 77 "mirror $mirror has no trixie-backports (needed for QEMU >= 10.1)"
		return
	fi
	if ! command -v debootstrap >/dev/null 2>&1; then
		zoc_root__log "installing debootstrap on the host"
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; } ||
			{ zoc_root__die 77 "debootstrap missing and apt-get install debootstrap failed"; return; }
	fi
	if [ -e "$root" ]; then
		zoc_root__log "removing incomplete root $root (no $ZOC_ROOT_STAMP)"
		zoc_root__umount_under "$root"
		rm -rf --one-file-system "$root" || { zoc_root__die 1 "cannot remove $root"; return; }
	fi
	mkdir -p "$root"
	local dlog="$root.debootstrap.log"
	zoc_root__log "debootstrap --variant=minbase trixie (log: $dlog) ..."
	if ! debootstrap --variant=minbase trixie "$root" "$mirror" >"$dlog" 2>&1; then
		tail -n 15 "$dlog" >&2
		zoc_root__die 1 "debootstrap failed, see $dlog"; return
	fi
	zoc_root__log "debootstrap done ($(( $(date +%s) - t0 )) s)"
	printf 'deb %s trixie main\ndeb %s trixie-backports main\n' "$mirror" "$mirror" >"$root/etc/apt/sources.list"
	rm -f "$root/etc/apt/sources.list.d/debian.sources"
	cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
	# No daemons start inside the root.
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 755 "$root/usr/sbin/policy-rc.d"
	mkdir -p "$root/tmp/zoc"
	local alog="$root.apt.log"
	zoc_root__log "apt-get update ..."
	zoc_root__in "$root" apt-get update >"$alog" 2>&1 ||
		{ tail -n 15 "$alog" >&2; zoc_root__die 1 "apt-get update in the root failed, see $alog"; return; }
	zoc_root__log "apt-get install -t trixie-backports $ZOC_ROOT_PACKAGES_BPO ..."
	# shellcheck disable=SC2086
	zoc_root__in "$root" apt-get install -y --no-install-recommends -t trixie-backports \
		$ZOC_ROOT_PACKAGES_BPO >>"$alog" 2>&1 ||
		{ tail -n 15 "$alog" >&2; zoc_root__die 1 "installing QEMU from trixie-backports failed, see $alog"; return; }
	zoc_root__log "apt-get install $ZOC_ROOT_PACKAGES ..."
	# shellcheck disable=SC2086
	zoc_root__in "$root" apt-get install -y --no-install-recommends $ZOC_ROOT_PACKAGES >>"$alog" 2>&1 ||
		{ tail -n 15 "$alog" >&2; zoc_root__die 1 "installing $ZOC_ROOT_PACKAGES failed, see $alog"; return; }
	zoc_root__in "$root" apt-get clean >/dev/null 2>&1 || true
	zoc_root__qemu_ok "$root" || return
	{
		echo "created=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
		echo "mirror=$mirror"
		echo "packages=$ZOC_ROOT_PACKAGES_BPO $ZOC_ROOT_PACKAGES"
		chroot "$root" dpkg-query -W -f 'version ${Package}=${Version}\n' \
			qemu-system-x86 qemu-utils qemu-block-extra libblkio1 fio 2>/dev/null
	} >"$root/$ZOC_ROOT_STAMP.tmp" && mv "$root/$ZOC_ROOT_STAMP.tmp" "$root/$ZOC_ROOT_STAMP"
	rm -f "$dlog"
	zoc_root__log "root ready in $(( $(date +%s) - t0 )) s: $root"
}

zoc_root_ensure() {
	local root
	root=$(zoc_root_path)
	if [ -f "$root/$ZOC_ROOT_STAMP" ]; then printf '%s\n' "$root"; return 0; fi
	[ "$(id -u)" = 0 ] || { zoc_root__die 77 "creating the Debian 13 root needs root (debootstrap, chroot)"; return; }
	command -v unshare >/dev/null 2>&1 || { zoc_root__die 77 "unshare (util-linux) missing"; return; }
	mkdir -p "$(dirname "$root")" || return 1
	(
		# One creator at a time; the others wait and then find the stamp.
		exec 9>"$root.lock"
		if ! flock -n 9; then
			zoc_root__log "another process is creating $root, waiting ..."
			flock 9
		fi
		[ -f "$root/$ZOC_ROOT_STAMP" ] && exit 0
		zoc_root__create "$root"
	) || return
	printf '%s\n' "$root"
}

zoc_root_install() { # PKG...
	local root rc p missing
	root=$(zoc_root_ensure) || return
	[ $# -gt 0 ] || return 0
	(
		exec 9>"$root.lock"; flock 9
		missing=""
		for p in "$@"; do
			chroot "$root" dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
				missing="$missing $p"
		done
		if [ -n "$missing" ]; then
			zoc_root__log "installing$missing into the root ..."
			# shellcheck disable=SC2086
			{ zoc_root__in "$root" apt-get update && zoc_root__in "$root" apt-get install -y --no-install-recommends $missing; } \
				>"$root.apt.log" 2>&1 || { tail -n 15 "$root.apt.log" >&2; exit 1; }
			zoc_root__in "$root" apt-get clean >/dev/null 2>&1 || true
		fi
	); rc=$?
	[ $rc = 0 ] || zoc_root__die 1 "installing $* into the root failed, see $root.apt.log"
}

# Parse `[--share HOSTDIR] [--] CMD...` and exec CMD in the root (replaces the shell).
zoc_root__run_exec() {
	local share="${ZOC_SHARE_DIR:-}" root
	while [ $# -gt 0 ]; do
		case $1 in
		--share) share=$2; shift 2 ;;
		--share=*) share=${1#--share=}; shift ;;
		--) shift; break ;;
		*) break ;;
		esac
	done
	[ $# -gt 0 ] || { zoc_root__die 1 "run: no command"; return; }
	root=$(zoc_root_path)
	[ -f "$root/$ZOC_ROOT_STAMP" ] || { zoc_root__die 1 "run: $root is not complete; run 'scripts/trixie-root.sh ensure' first"; return; }
	if [ -n "$share" ]; then
		if ! share=$(readlink -e "$share") || [ ! -d "$share" ]; then
			zoc_root__die 1 "run: share dir $share missing"; return
		fi
	fi
	zoc_root__exec_in "$root" "$share" "$@"
}

# zoc_root_run [--share HOSTDIR] [--] CMD...   (a subshell: the PID of a background run is CMD's PID)
zoc_root_run() { ( zoc_root__run_exec "$@" ); }

zoc_root_main() {
	local cmd=${1:-ensure}
	[ $# -gt 0 ] && shift
	case $cmd in
	ensure) zoc_root_ensure ;;
	path) zoc_root_path ;;
	check) [ -f "$(zoc_root_path)/$ZOC_ROOT_STAMP" ] ;;
	install) zoc_root_install "$@" ;;
	run) zoc_root__run_exec "$@" ;; # replaces this shell: the caller's $! is CMD's PID
	-h|--help|help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" ;;
	*) zoc_root__die 1 "unknown command '$cmd' (ensure|path|check|install|run)" ;;
	esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -u
	zoc_root_main "$@"
	exit $?
fi
