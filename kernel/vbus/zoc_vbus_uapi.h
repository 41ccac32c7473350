/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * zoc_vbus_uapi.h - the interface of /dev/zoc-vbus (kernel/vbus/zoc_vbus.c),
 * shared by the module and zocd's vbus link (src/link/vbus.c).
 *
 * One open file serves at most one PCI function on the Virtual Bus:
 *
 *  1. ZOC_VBUS_CREATE: a config-space image with per-byte write masks, the
 *     BAR sizes, the MSI-X vector count and the size of the DMA pool. The
 *     module scans the function and assigns its BARs from the boot-reserved
 *     window, but no driver sees it yet.
 *  2. mmap() the BARs (offset ZOC_VBUS_MMAP_BAR(n), uncached) and the DMA
 *     pool (offset ZOC_VBUS_MMAP_DMA, ordinary memory); write the power-on
 *     register values; ZOC_VBUS_SET_IRQ one eventfd per MSI-X vector.
 *  3. ZOC_VBUS_START: the function is added to the bus; drivers probe it.
 *  4. read() returns struct zoc_vbus_event records: config writes the host
 *     made (already applied to the image with the masks), and REMOVED when a
 *     ZOC_VBUS_REMOVE finished. poll() says when there are some.
 *  5. ZOC_VBUS_REMOVE (or closing the file): the function is removed from the
 *     bus (its driver unbinds first), every mapping of its BARs and pool is
 *     revoked (a later access gets SIGBUS) and its window space is freed.
 *     ZOC_VBUS_UNPLUG does the first part only: the function leaves the bus
 *     while the mappings stay, so user space can serve the driver's shutdown
 *     and stop touching them before it removes (or closes).
 *
 * Function Level Reset: the host's FLR (PCIe capability, Device Control bit
 * 15) puts the image back to its state after CREATE and queues
 * ZOC_VBUS_EV_RESET; config reads return all ones (the device is not ready)
 * until user space has reset its model and answers ZOC_VBUS_RESET_DONE.
 *
 * DMA: the module installs DMA ops on the function that bounce every mapping
 * through the pool (as swiotlb does). The device sees bus addresses
 * ZOC_VBUS_DMA_BASE + offset into the pool and nothing else of host memory.
 */
#ifndef ZOC_VBUS_UAPI_H
#define ZOC_VBUS_UAPI_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define ZOC_VBUS_NUM_BARS 6
#define ZOC_VBUS_CFG_SIZE 4096
#define ZOC_VBUS_MSIX_MAX 2048
#define ZOC_VBUS_DMA_BASE 0x100000000ULL   /* bus address of pool offset 0 */
#define ZOC_VBUS_DMA_MIN (1ULL << 20)
#define ZOC_VBUS_DMA_MAX (256ULL << 20)

/* mmap offsets */
#define ZOC_VBUS_MMAP_BAR(n) ((__u64)(n) << 32)
#define ZOC_VBUS_MMAP_DMA (8ULL << 32)

struct zoc_vbus_create {
	__u64 cfg;              /* user pointer: ZOC_VBUS_CFG_SIZE bytes, power-on config */
	__u64 wmask;            /* user pointer: per-byte writable bits */
	__u64 w1cmask;          /* user pointer: per-byte write-1-to-clear bits */
	__u64 bar_size[ZOC_VBUS_NUM_BARS]; /* 0 unused; power of two, >= 4096;
					    * the upper half of a 64-bit BAR is 0 */
	__u64 dma_size;         /* pool bytes: page multiple in [DMA_MIN, DMA_MAX] */
	__u32 msix_vectors;     /* must match the image's MSI-X capability */
	__u32 flags;            /* 0 */
	/* out */
	__u32 domain;
	__u8 bus;
	__u8 devfn;
	__u16 reserved;
};

struct zoc_vbus_irq {
	__u32 vector;           /* MSI-X vector */
	__s32 fd;               /* eventfd, or -1 to remove */
};

struct zoc_vbus_cfg_store {
	__u32 offset;           /* bytes written into the image as given (no masks) */
	__u32 len;              /* 1..4, within one dword */
	__u32 value;            /* little end first */
	__u32 reserved;
};

struct zoc_vbus_bar_info {
	__u32 bar;              /* in */
	__u32 reserved;
	__u64 addr;             /* out: host physical address */
	__u64 size;             /* out */
};

enum zoc_vbus_event_type {
	ZOC_VBUS_EV_CFG_WRITE = 1,  /* offset, len, value (masked value now in the image) */
	ZOC_VBUS_EV_OVERFLOW = 2,   /* value = events lost: re-read the image */
	ZOC_VBUS_EV_REMOVED = 3,    /* the function left the bus */
	ZOC_VBUS_EV_RESET = 4,      /* FLR: reset the model, then ZOC_VBUS_RESET_DONE */
};

struct zoc_vbus_event {
	__u16 type;
	__u8 len;
	__u8 reserved;
	__u16 offset;
	__u16 reserved2;
	__u32 value;            /* the value the host wrote (before masks) */
	__u32 reserved3;
};

#define ZOC_VBUS_IOC_MAGIC 0xB7
#define ZOC_VBUS_CREATE    _IOWR(ZOC_VBUS_IOC_MAGIC, 1, struct zoc_vbus_create)
#define ZOC_VBUS_START     _IO(ZOC_VBUS_IOC_MAGIC, 2)
#define ZOC_VBUS_REMOVE    _IO(ZOC_VBUS_IOC_MAGIC, 3)
#define ZOC_VBUS_SET_IRQ   _IOW(ZOC_VBUS_IOC_MAGIC, 4, struct zoc_vbus_irq)
#define ZOC_VBUS_CFG_STORE _IOW(ZOC_VBUS_IOC_MAGIC, 5, struct zoc_vbus_cfg_store)
#define ZOC_VBUS_BAR_INFO  _IOWR(ZOC_VBUS_IOC_MAGIC, 6, struct zoc_vbus_bar_info)
#define ZOC_VBUS_RESET_DONE _IO(ZOC_VBUS_IOC_MAGIC, 7)
#define ZOC_VBUS_UNPLUG    _IO(ZOC_VBUS_IOC_MAGIC, 8)

#endif
