#!/bin/bash
# SPDX-License-Identifier: MIT
#
# vhost_blk_reconnect_packed.sh - vhost_blk_reconnect.sh on a packed virtqueue
# (vhost-user-blk-pci,packed=on): zocd is SIGKILLed during a verifying fio run and
# restarted; the packed ring's in-flight buffers come back from the inflight region.
# zoc-e2e-asan: no (the server paths are vhost_blk_reconnect.sh's, which runs under ASan; the
# packed inflight recovery runs under ASan in test_virtqueue's inflight_packed_* tests)
export ZOC_VHOST_BLK_PROPS=packed=on
. "$(dirname "${BASH_SOURCE[0]}")/vhost_blk_reconnect.sh"
