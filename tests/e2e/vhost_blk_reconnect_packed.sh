#!/bin/bash
# SPDX-License-Identifier: MIT
#
# vhost_blk_reconnect_packed.sh - vhost_blk_reconnect.sh on a packed virtqueue
# (vhost-user-blk-pci,packed=on): zocd is SIGKILLed during a verifying fio run and
# restarted; the packed ring's in-flight buffers come back from the inflight region.
export ZOC_VHOST_BLK_PROPS=packed=on
. "$(dirname "${BASH_SOURCE[0]}")/vhost_blk_reconnect.sh"
