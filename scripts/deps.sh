#!/bin/bash
# SPDX-License-Identifier: MIT
#
# deps.sh - install the Debian packages ZOC needs to build and test.
#
# Checks each package with dpkg first; only if something is missing does it
# run `apt-get update` (once) and `apt-get install` (noninteractive), which
# needs root. Extra packages can be named on the command line.
#
#   scripts/deps.sh            # the project's build and test dependencies
#   scripts/deps.sh foo bar    # ... plus foo and bar
set -euo pipefail

PKGS=(
	meson ninja-build pkg-config gcc clang libclang-rt-14-dev  # build, fuzzers
	liburing-dev libjansson-dev libcmocka-dev                  # libraries
	qemu-system-x86 qemu-utils busybox-static fio cpio         # Linux guest tests
	debootstrap                                                # Debian 13 root for newer peers
	linux-perf                                                 # profiling
	util-linux                                                 # taskset, fallocate, flock
	jq                                                         # tests read zocctl --json
	nvme-cli                                                   # nvme id-ctrl / smart-log in the e2e guest
	libxdp-dev libbpf-dev                                      # AF_XDP uplink (meson -Daf_xdp)
	iproute2 ethtool iperf3                                    # netns + veth uplink e2e, iperf3 in the guest
	dpdk-dev                                                   # dpdk-testpmd: vnet_testpmd e2e, bench/net.sh
	linux-headers-cloud-amd64 pciutils libc6-dev               # vbus_nvme e2e: zoc-vbus.ko for the guest kernel, lspci, static probe
)
PKGS+=("$@")

say() { printf 'deps: %s\n' "$*"; }

command -v dpkg-query >/dev/null 2>&1 || {
	say "ERROR: dpkg-query not found: this script installs Debian packages and needs Debian (12 or newer)."
	exit 1
}

missing=()
for p in "${PKGS[@]}"; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$st" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
	say "all ${#PKGS[@]} packages present"
	exit 0
fi

say "missing: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	say "ERROR: installing packages needs root. Run: sudo $0  (or: sudo apt-get install ${missing[*]})"
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
say "apt-get update ..."
if ! apt-get update -q >/tmp/zoc-deps-apt-update.log 2>&1; then
	tail -n 20 /tmp/zoc-deps-apt-update.log
	say "ERROR: apt-get update failed (log above, full log /tmp/zoc-deps-apt-update.log): check the network and /etc/apt/sources.list*"
	exit 1
fi
say "apt-get install ${missing[*]} ..."
if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
	say "ERROR: apt-get install failed (output above). Check that these packages exist for this release: ${missing[*]}"
	exit 1
fi

still=()
for p in "${missing[@]}"; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$st" = "install ok installed" ] || still+=("$p")
done
if [ ${#still[@]} -ne 0 ]; then
	say "ERROR: still not installed after apt-get: ${still[*]}"
	exit 1
fi
say "installed ${#missing[@]} package(s): ${missing[*]}"
