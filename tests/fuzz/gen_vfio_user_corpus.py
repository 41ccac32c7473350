#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes seed inputs for tests/fuzz/fuzz_vfio_user.c.

Each seed is a vfio-user conversation in the fuzzer's record format (see the
comment at the top of fuzz_vfio_user.c): QEMU's start-up (VERSION, GET_INFO,
region and irq info, DMA_MAP of guest memory, config space and BAR sizing,
MSI-X eventfds), device interrupts and DMA, posted writes and WRITE_MULTI,
asynchronous quiesce/reset, unmap and reset; memory mapped without an fd,
device copies there (DMA_READ / DMA_WRITE to the client) and the client's
replies: right, short, late, wrong id, error.

Usage: gen_vfio_user_corpus.py [OUTDIR]   (default: corpus/vfio_user beside this file)
"""
import os
import struct
import sys

VERSION, DMA_MAP, DMA_UNMAP, GET_INFO, GET_REGION_INFO = 1, 2, 3, 4, 5
GET_IRQ_INFO, SET_IRQS, REGION_READ, REGION_WRITE, RESET, WRITE_MULTI = 7, 8, 9, 10, 13, 15
ACTION = 0xFF
DMA_READ, DMA_WRITE = 11, 12
REPLY, ERROR_FLAG = 0x01, 0x20
ANSWER, BUILT = 0x40, 0x80  # fdspec bits: answer the oldest request; prefix addr/count

NO_REPLY, ASYNC = 0x10, 0x40
FD_GUEST, FD_EVENT, FD_SMALL = 0x00, 0x10, 0x20

DATA_NONE, DATA_BOOL, DATA_EVENTFD = 1, 2, 4
ACT_MASK, ACT_UNMASK, ACT_TRIGGER = 8, 16, 32
INTX, MSI, MSIX = 0, 1, 2
CFG = 7
IOVA = 0x40000000
GUEST = 256 << 10


class Seq:
    def __init__(self):
        self.out = bytearray()

    def msg(self, cmd, payload=b"", flags=0, nfds=0, kind=FD_GUEST):
        self.out += struct.pack("<BBBH", cmd, flags, kind | nfds, len(payload)) + payload
        return self

    def version(self, caps='{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576,'
                          '"pgsizes":4096,"max_dma_maps":65535,"write_multiple":true}}'):
        return self.msg(VERSION, struct.pack("<HH", 0, 0) + caps.encode() + b"\0")

    def dma_map(self, iova=IOVA, size=GUEST, off=0, flags=3, nfds=1, kind=FD_GUEST, fl=0):
        return self.msg(DMA_MAP, struct.pack("<IIQQQ", 32, flags, off, iova, size), fl, nfds, kind)

    def dma_unmap(self, iova=IOVA, size=GUEST, flags=0, fl=0):
        return self.msg(DMA_UNMAP, struct.pack("<IIQQ", 24, flags, iova, size), fl)

    def region_info(self, idx, argsz=32):
        return self.msg(GET_REGION_INFO, struct.pack("<IIIIQQ", argsz, 0, idx, 0, 0, 0))

    def irq_info(self, idx):
        return self.msg(GET_IRQ_INFO, struct.pack("<IIII", 16, 0, idx, 0))

    def set_irqs(self, flags, idx, start, count, data=b"", nfds=0, kind=FD_EVENT):
        return self.msg(SET_IRQS, struct.pack("<IIIII", 20 + len(data), flags, idx, start, count)
                        + data, 0, nfds, kind)

    def rd(self, region, off, count):
        return self.msg(REGION_READ, struct.pack("<QII", off, region, count))

    def wr(self, region, off, data, flags=0):
        return self.msg(REGION_WRITE, struct.pack("<QII", off, region, len(data)) + data, flags)

    def multi(self, writes, flags=NO_REPLY):
        p = struct.pack("<Q", len(writes))
        for region, off, data in writes:
            p += struct.pack("<QII", off, region, len(data)) + data.ljust(8, b"\0")
        return self.msg(WRITE_MULTI, p, flags)

    def action(self, vector, iova=None, copy=None):
        p = bytes([vector])
        if iova is not None:
            p += struct.pack("<Q", iova)
        if copy is not None:
            p += bytes([copy])
        return self.msg(ACTION, p)

    def answer(self, data=b"", built=True, flags=REPLY, cmd=DMA_READ):
        return self.msg(cmd, data, flags, 0, ANSWER | (BUILT if built else 0))


def qemu_start():
    s = Seq().version()
    s.msg(GET_INFO, struct.pack("<IIII", 16, 0, 0, 0))
    for i in range(9):
        s.region_info(i)
    s.region_info(0, 512)
    for i in range(5):
        s.irq_info(i)
    s.dma_map()
    s.rd(CFG, 0, 256)
    s.rd(CFG, 0, 4096)
    # BAR sizing
    s.wr(CFG, 0x10, b"\xff\xff\xff\xff").rd(CFG, 0x10, 4)
    s.wr(CFG, 0x14, b"\xff\xff\xff\xff").rd(CFG, 0x14, 4)
    s.wr(CFG, 0x10, struct.pack("<I", 0xFE000000)).wr(CFG, 0x14, b"\0\0\0\0")
    s.wr(CFG, 0x20, b"\xff\xff\xff\xff").rd(CFG, 0x20, 4)
    s.wr(CFG, 4, struct.pack("<H", 6))
    return s


def msix_on(s):
    # capability list: PM at 0x40, MSI, MSI-X, PCIe (the order pci.c builds)
    s.rd(CFG, 0x34, 1)
    for off in range(0x40, 0x100, 4):
        s.rd(CFG, off, 4)
    s.set_irqs(DATA_EVENTFD | ACT_TRIGGER, MSIX, 0, 4, nfds=4)
    for cap in (0x50, 0x60, 0x70, 0x80, 0x90, 0xA0):
        s.wr(CFG, cap + 2, struct.pack("<H", 0x8000))
    for v in range(4):
        s.wr(4, v * 16 + 12, b"\0\0\0\0")
    return s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus", "vfio_user")
    os.makedirs(out, exist_ok=True)
    seeds = {}

    seeds["qemu_start"] = qemu_start()

    s = msix_on(qemu_start())
    s.action(0, IOVA + 0x1000).action(1, IOVA + GUEST - 8).action(3, IOVA + GUEST - 4)
    s.set_irqs(DATA_NONE | ACT_TRIGGER, MSIX, 1, 1)
    s.set_irqs(DATA_BOOL | ACT_MASK, MSIX, 0, 4, b"\1\0\1\0")
    s.action(2).set_irqs(DATA_NONE | ACT_UNMASK, MSIX, 0, 4)
    s.set_irqs(DATA_EVENTFD | ACT_TRIGGER, MSIX, 2, 1)
    s.set_irqs(DATA_NONE | ACT_TRIGGER, MSIX, 0, 0)
    seeds["msix"] = s

    s = qemu_start()
    s.set_irqs(DATA_EVENTFD | ACT_TRIGGER, INTX, 0, 1, nfds=1)
    s.set_irqs(DATA_EVENTFD | ACT_UNMASK, INTX, 0, 1, nfds=1)
    s.action(0).set_irqs(DATA_NONE | ACT_UNMASK, INTX, 0, 1)
    s.set_irqs(DATA_EVENTFD | ACT_TRIGGER, MSI, 0, 1, nfds=1)
    s.wr(CFG, 0x52, struct.pack("<H", 1)).action(0)
    seeds["intx_msi"] = s

    s = qemu_start()
    s.wr(0, 0x14, struct.pack("<I", 0x460001)).rd(0, 0x1c, 4)
    s.wr(0, 0x1000, struct.pack("<I", 1), NO_REPLY).rd(0, 0, 8)
    s.multi([(0, 0x1000, struct.pack("<I", 2)), (0, 0x1004, struct.pack("<I", 3)),
             (CFG, 4, struct.pack("<H", 6))])
    s.multi([(0, 0x1008, struct.pack("<Q", 5))], 0)
    seeds["bar_writes"] = s

    s = qemu_start()
    s.dma_map(0x100000, 0x10000, 0x10000, 3, 1, FD_GUEST, ASYNC)
    s.action(0, 0x100000)
    s.dma_map(0x200000, 0x1000, 0, 1, 0)  # no fd
    s.dma_unmap(0x100000, 0x10000, 0, ASYNC)
    s.msg(RESET, b"", ASYNC)
    s.action(0, IOVA)
    s.dma_unmap(0, 0, 2)
    s.dma_map(0, 0x1000, 0, 3, 1, FD_SMALL)
    s.msg(RESET)
    seeds["dma_async_reset"] = s

    s = Seq().version('{"capabilities":{"max_msg_fds":0}}').region_info(0, 512)
    s.dma_map(IOVA, GUEST + 4096)
    s.dma_map(IOVA, 4096, 0, 3, 2, FD_GUEST)
    s.dma_map(IOVA, 4096, 0, 3, 1, FD_EVENT)
    s.dma_unmap(IOVA + 4096, 4096)
    s.dma_unmap(IOVA, GUEST, 1)
    s.rd(9, 0, 4).rd(0, 0xFFFFFFFFFFFFFFF0, 32).wr(6, 0, b"x")
    s.set_irqs(DATA_EVENTFD | ACT_TRIGGER, MSIX, 15, 2, nfds=2)
    seeds["errors"] = s

    # memory without an fd: copies become DMA_READ / DMA_WRITE, answered
    NOFD = 0x80000000
    s = qemu_start()
    s.dma_map(NOFD, 0x100000, 0, 3, 0)
    s.action(0, NOFD + 0x1000, 0x00)            # read 512 bytes
    s.answer(b"\xaa" * 512)                      # right
    s.action(0, NOFD + 0x2000, 0x81)            # write 1 KiB
    s.answer(b"")                               # right (address + count)
    s.action(0, IOVA + GUEST - 512, 0x03)       # mapped + beyond: refused
    s.action(0, NOFD + 0xFFE00, 0x01)           # read 1 KiB crossing the end: refused
    s.action(0, NOFD, 0x00)
    s.answer(b"", False, REPLY | ERROR_FLAG)    # error reply: fails, connection stays
    s.action(0, NOFD, 0x1F)                     # read 16 KiB
    s.answer(b"\x55" * 100)                      # too little data: closes
    s.action(0, NOFD, 0x00)
    s.msg(DMA_READ, struct.pack("<QQ", NOFD, 512) + b"\0" * 512, REPLY)  # wrong id
    seeds["dma_rw"] = s

    s = qemu_start()
    s.dma_map(NOFD, 0x100000, 0, 3, 0)
    s.action(0, NOFD, 0x05).action(0, NOFD + 0x4000, 0x85).action(0, NOFD + 0x8000, 0x00)
    s.dma_map(NOFD + 0x200000, 0x1000, 0, 1, 0, FD_GUEST, ASYNC)  # quiesce fails them
    s.answer(b"\0" * 3072)                       # late: dropped
    s.action(0, NOFD, 0x00)
    s.msg(RESET, b"", ASYNC)
    s.action(0, NOFD, 0x80)
    s.answer(b"", True, REPLY, DMA_WRITE)
    seeds["dma_rw_quiesce"] = s

    seeds["before_version"] = Seq().msg(GET_INFO, struct.pack("<IIII", 16, 0, 0, 0)).version()

    for name, seq in seeds.items():
        with open(os.path.join(out, name), "wb") as fh:
            fh.write(bytes(seq.out))
    print("wrote %d seeds to %s" % (len(seeds), out))


if __name__ == "__main__":
    main()
