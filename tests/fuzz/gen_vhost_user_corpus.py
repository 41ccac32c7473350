#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes seed inputs for tests/fuzz/fuzz_vhost_user.c.

Each seed is a valid vhost-user conversation in the fuzzer's record format
(see the comment at the top of fuzz_vhost_user.c): the QEMU start-up sequence
with split and packed rings, inflight regions, memory slots, REPLY_ACK and
asynchronous stops, a legacy front end. Rings live in the fuzzer's guest
memfd so the queues really start, and guest writes put requests on them.

Usage: gen_vhost_user_corpus.py [OUTDIR]   (default: corpus/vhost_user beside this file)
"""
import os
import struct
import sys

# requests
GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE = 1, 2, 3, 4, 5
SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE = 8, 9, 10, 11
SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR = 12, 13, 14
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, SET_VRING_ENABLE = 15, 16, 17, 18
GET_CONFIG, SET_CONFIG, GET_INFLIGHT_FD, SET_INFLIGHT_FD, RESET_DEVICE = 24, 25, 31, 32, 34
GET_MAX_MEM_SLOTS, ADD_MEM_REG, REM_MEM_REG = 36, 37, 38
GUEST_WRITE = 0xFF

# record flags
V1, NEED_REPLY, ASYNC = 0x1, 0x8, 0x40
# fd kinds
FD_GUEST, FD_EVENT, FD_SMALL = 0x00, 0x10, 0x20

F_VERSION_1, F_EVENT_IDX, F_INDIRECT, F_PACKED, F_PROTOCOL = 32, 29, 28, 34, 30
PF_ALL = (1 << 0) | (1 << 3) | (1 << 9) | (1 << 12) | (1 << 13) | (1 << 15)
NOFD = 1 << 8

GPA = 0x40000000
UVA = 0x7F0000000000
GUEST = 256 << 10
QSIZE = 64
DESC, AVAIL, USED, DATA = 0x0, 0x1000, 0x2000, 0x10000
Q1 = 0x4000  # queue 1 rings at +Q1


def bit(*bits):
    v = 0
    for b in bits:
        v |= 1 << b
    return v


class Seq:
    def __init__(self):
        self.out = bytearray()

    def msg(self, req, payload=b"", flags=V1, nfds=0, kind=FD_GUEST):
        self.out += struct.pack("<BBBH", req, flags, kind | nfds, len(payload)) + payload
        return self

    def u64(self, req, v, flags=V1):
        return self.msg(req, struct.pack("<Q", v), flags)

    def state(self, req, idx, num, flags=V1):
        return self.msg(req, struct.pack("<II", idx, num), flags)

    def vring_fd(self, req, idx, kind=FD_EVENT, flags=V1):
        if kind is None:
            return self.msg(req, struct.pack("<Q", idx | NOFD), flags)
        return self.msg(req, struct.pack("<Q", idx), flags, 1, kind)

    def addr(self, idx, base, flags=V1):
        return self.msg(SET_VRING_ADDR, struct.pack("<IIQQQQ", idx, 0, UVA + base + DESC,
                                                    UVA + base + USED, UVA + base + AVAIL, 0),
                        flags)

    def mem_table(self, regions, flags=V1, kind=FD_GUEST):
        body = struct.pack("<II", len(regions), 0)
        for r in regions:
            body += struct.pack("<QQQQ", *r)
        return self.msg(SET_MEM_TABLE, body, flags, len(regions), kind)

    def mem_reg(self, req, region, flags=V1, kind=FD_GUEST, nfds=1):
        return self.msg(req, struct.pack("<QQQQQ", 0, *region), flags, nfds, kind)

    def config(self, req, off, data_or_size, flags=V1):
        if isinstance(data_or_size, int):
            data = bytes(data_or_size)
        else:
            data = data_or_size
        return self.msg(req, struct.pack("<III", off, len(data), 0) + data, flags)

    def inflight(self, req, nq, qsize, mmap_size=0, mmap_off=0, flags=V1, nfds=0):
        return self.msg(req, struct.pack("<QQHHI", mmap_size, mmap_off, nq, qsize, 0), flags,
                        nfds, FD_GUEST)

    def guest(self, off, data):
        return self.msg(GUEST_WRITE, struct.pack("<I", off) + data)

    # guest-side ring contents
    def split_request(self, base, slot, head):
        """A 16-byte readable header + 512-byte writable buffer, chained."""
        d0 = struct.pack("<QIHH", GPA + DATA + head * 0x1000, 16, 1, head + 1)
        d1 = struct.pack("<QIHH", GPA + DATA + head * 0x1000 + 0x100, 512, 2, 0)
        self.guest(base + DESC + head * 16, d0 + d1)
        self.guest(base + AVAIL + 4 + slot * 2, struct.pack("<H", head))
        return self.guest(base + AVAIL, struct.pack("<HH", 0, slot + 1))

    def packed_request(self, base, slot, buf_id):
        flags = (1 << 7) | 2  # AVAIL (wrap 1), WRITE
        d = struct.pack("<QIHH", GPA + DATA + slot * 0x1000, 512, buf_id, flags)
        return self.guest(base + DESC + slot * 16, d)

    def negotiate(self, pf=PF_ALL, flags=V1):
        self.msg(GET_FEATURES)
        self.msg(GET_PROTOCOL_FEATURES)
        self.u64(SET_PROTOCOL_FEATURES, pf, flags)
        return self

    def ring(self, idx, base, num=QSIZE, start=0, call=True, flags=V1):
        self.state(SET_VRING_NUM, idx, num, flags)
        self.state(SET_VRING_BASE, idx, start, flags)
        self.addr(idx, base, flags)
        self.vring_fd(SET_VRING_KICK, idx, FD_EVENT, flags)
        if call:
            self.vring_fd(SET_VRING_CALL, idx, FD_EVENT, flags)
        return self


REGION = (GPA, GUEST, UVA, 0)


def qemu_split():
    s = Seq().negotiate()
    s.msg(GET_QUEUE_NUM)
    s.config(GET_CONFIG, 0, 60)
    s.msg(SET_OWNER)
    s.inflight(GET_INFLIGHT_FD, 2, QSIZE)
    s.u64(SET_FEATURES, bit(F_VERSION_1, F_PROTOCOL, 1, 6))
    s.mem_table([REGION])
    s.split_request(0, 0, 0)
    s.split_request(0, 1, 2)
    s.ring(0, 0).state(SET_VRING_ENABLE, 0, 1)
    s.ring(1, Q1).state(SET_VRING_ENABLE, 1, 1)
    s.state(GET_VRING_BASE, 0, 0)
    s.state(GET_VRING_BASE, 1, 0)
    s.msg(RESET_DEVICE)
    return s


def qemu_packed():
    s = Seq().negotiate()
    s.msg(SET_OWNER)
    s.u64(SET_FEATURES, bit(F_VERSION_1, F_PROTOCOL, F_PACKED, F_EVENT_IDX, F_INDIRECT))
    s.mem_table([REGION])
    s.packed_request(0, 0, 0)
    s.packed_request(0, 1, 1)
    # base: avail index 0 with wrap counter 1 (bit 15)
    s.ring(0, 0, start=1 << 15).state(SET_VRING_ENABLE, 0, 1)
    s.state(GET_VRING_BASE, 0, 0)
    s.state(SET_VRING_BASE, 0, (1 << 15) | 2)
    s.vring_fd(SET_VRING_KICK, 0, None)
    s.state(GET_VRING_BASE, 0, 0)
    return s


def inflight():
    s = Seq().negotiate()
    # the inflight region inside the guest memfd, at 128 KiB
    s.inflight(SET_INFLIGHT_FD, 1, QSIZE, 0x1000, 0x20000, nfds=1)
    s.u64(SET_FEATURES, bit(F_VERSION_1, F_PROTOCOL))
    s.mem_table([REGION])
    s.split_request(0, 0, 0)
    s.ring(0, 0).state(SET_VRING_ENABLE, 0, 1)
    s.state(SET_VRING_ENABLE, 0, 0)
    s.state(SET_VRING_ENABLE, 0, 1)
    s.msg(RESET_OWNER)
    return s


def mem_slots():
    s = Seq().negotiate()
    s.msg(GET_MAX_MEM_SLOTS)
    s.u64(SET_FEATURES, bit(F_VERSION_1, F_PROTOCOL))
    s.mem_reg(ADD_MEM_REG, REGION, V1 | NEED_REPLY)
    s.split_request(0, 0, 0)
    s.ring(0, 0).state(SET_VRING_ENABLE, 0, 1)
    s.mem_reg(ADD_MEM_REG, (GPA + 0x10000000, 0x1000, UVA + 0x10000000, 0), V1 | NEED_REPLY,
              FD_SMALL)
    s.mem_reg(REM_MEM_REG, (GPA + 0x10000000, 0x1000, UVA + 0x10000000, 0), V1 | NEED_REPLY,
              nfds=0)
    s.mem_reg(REM_MEM_REG, REGION, V1 | NEED_REPLY, nfds=0)
    return s


def reply_ack_async():
    f = V1 | NEED_REPLY
    s = Seq().negotiate(flags=f)
    s.msg(SET_OWNER, flags=f)
    s.u64(SET_FEATURES, bit(F_VERSION_1, F_PROTOCOL, F_EVENT_IDX), f)
    s.config(SET_CONFIG, 32, b"\x01", f)
    s.config(GET_CONFIG, 16, 32, f)
    s.mem_table([(GPA, 0x20000, UVA, 0), (GPA + 0x20000, 0x20000, UVA + 0x20000, 0x20000)], f)
    s.split_request(0, 0, 0)
    s.ring(0, 0, flags=f).state(SET_VRING_ENABLE, 0, 1, f)
    s.vring_fd(SET_VRING_ERR, 0, FD_EVENT, f)
    # live changes, the device stopping slowly
    s.vring_fd(SET_VRING_CALL, 0, FD_EVENT, f | ASYNC)
    s.vring_fd(SET_VRING_KICK, 0, None, f | ASYNC)
    s.addr(0, 0, f | ASYNC)
    s.mem_table([REGION], f | ASYNC)
    s.state(GET_VRING_BASE, 0, 0, f | ASYNC)
    s.msg(RESET_DEVICE, flags=f | ASYNC)
    s.msg(40, flags=f)  # unknown request
    return s


def legacy():
    s = Seq()
    s.msg(GET_FEATURES)
    s.msg(SET_OWNER)
    s.u64(SET_FEATURES, bit(F_VERSION_1))
    s.mem_table([REGION])
    s.split_request(Q1, 0, 0)
    s.ring(1, Q1)
    s.state(GET_VRING_BASE, 1, 0)
    s.msg(RESET_OWNER)
    return s


SEEDS = {
    "qemu_split": qemu_split,
    "qemu_packed": qemu_packed,
    "inflight": inflight,
    "mem_slots": mem_slots,
    "reply_ack_async": reply_ack_async,
    "legacy": legacy,
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus", "vhost_user")
    os.makedirs(out, exist_ok=True)
    for name, fn in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes(fn().out))
    print(f"{len(SEEDS)} seeds in {out}")


if __name__ == "__main__":
    main()
