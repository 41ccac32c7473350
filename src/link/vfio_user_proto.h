/* SPDX-License-Identifier: MIT */
/*
 * vfio_user_proto.h - the vfio-user wire format (QEMU docs/interop/vfio-user.rst),
 * private to src/link/vfio_user.c and its tests / fuzzer. All fields are in
 * host byte order; every structure is packed as on the wire. The payload
 * structures follow the 16-byte header.
 */
#ifndef ZOC_LINK_VFIO_USER_PROTO_H
#define ZOC_LINK_VFIO_USER_PROTO_H

#include <stdint.h>

/* Commands (client -> server unless noted). */
enum vfu_cmd {
	VFU_CMD_VERSION = 1,
	VFU_CMD_DMA_MAP = 2,
	VFU_CMD_DMA_UNMAP = 3,
	VFU_CMD_DEVICE_GET_INFO = 4,
	VFU_CMD_DEVICE_GET_REGION_INFO = 5,
	VFU_CMD_DEVICE_GET_REGION_IO_FDS = 6,
	VFU_CMD_DEVICE_GET_IRQ_INFO = 7,
	VFU_CMD_DEVICE_SET_IRQS = 8,
	VFU_CMD_REGION_READ = 9,
	VFU_CMD_REGION_WRITE = 10,
	VFU_CMD_DMA_READ = 11,  /* server -> client */
	VFU_CMD_DMA_WRITE = 12, /* server -> client */
	VFU_CMD_DEVICE_RESET = 13,
	VFU_CMD_REGION_WRITE_MULTI = 15,
	VFU_CMD_DEVICE_FEATURE = 16,
};

/* Header flags: bits 0-3 message type, bit 4 no-reply, bit 5 error. */
#define VFU_F_TYPE_MASK 0xfu
#define VFU_F_TYPE_COMMAND 0x0u
#define VFU_F_TYPE_REPLY 0x1u
#define VFU_F_NO_REPLY 0x10u
#define VFU_F_ERROR 0x20u

struct vfu_hdr {
	uint16_t msg_id;
	uint16_t cmd;
	uint32_t size; /* whole message, header included */
	uint32_t flags;
	uint32_t error; /* errno in an error reply; reserved in commands */
} __attribute__((packed));

struct vfu_version {
	uint16_t major;
	uint16_t minor;
	/* followed by an optional NUL-terminated JSON object */
} __attribute__((packed));

/* DMA_MAP flags */
#define VFU_DMA_READ 0x1u
#define VFU_DMA_WRITE 0x2u

struct vfu_dma_map {
	uint32_t argsz;
	uint32_t flags;
	uint64_t offset; /* in the fd sent with the message */
	uint64_t addr;   /* IOVA */
	uint64_t size;
} __attribute__((packed));

/* DMA_UNMAP flags (linux/vfio.h) */
#define VFU_DMA_UNMAP_GET_DIRTY_BITMAP 0x1u
#define VFU_DMA_UNMAP_ALL 0x2u

struct vfu_dma_unmap {
	uint32_t argsz;
	uint32_t flags;
	uint64_t addr;
	uint64_t size;
} __attribute__((packed));

/* DEVICE_GET_INFO */
#define VFU_DEVICE_FLAGS_RESET 0x1u
#define VFU_DEVICE_FLAGS_PCI 0x2u

struct vfu_device_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t num_regions;
	uint32_t num_irqs;
} __attribute__((packed));

/* Region indices of a PCI device (linux/vfio.h). */
enum {
	VFU_PCI_BAR0_REGION_INDEX = 0,
	VFU_PCI_BAR5_REGION_INDEX = 5,
	VFU_PCI_ROM_REGION_INDEX = 6,
	VFU_PCI_CONFIG_REGION_INDEX = 7,
	VFU_PCI_VGA_REGION_INDEX = 8,
	VFU_PCI_NUM_REGIONS = 9,
};

/* Irq indices of a PCI device: the values of enum zoc_pci_irq_type. */
#define VFU_PCI_NUM_IRQS 5

#define VFU_REGION_INFO_FLAG_READ 0x1u
#define VFU_REGION_INFO_FLAG_WRITE 0x2u
#define VFU_REGION_INFO_FLAG_MMAP 0x4u
#define VFU_REGION_INFO_FLAG_CAPS 0x8u

struct vfu_region_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t cap_offset; /* from the start of this structure */
	uint64_t size;
	uint64_t offset; /* mmap offset in the fd sent with the reply */
} __attribute__((packed));

#define VFU_REGION_INFO_CAP_SPARSE_MMAP 1
#define VFU_REGION_INFO_CAP_SPARSE_MMAP_VERSION 1

struct vfu_cap_hdr {
	uint16_t id;
	uint16_t version;
	uint32_t next; /* offset of the next capability, 0 = last */
} __attribute__((packed));

struct vfu_sparse_mmap_area {
	uint64_t offset; /* in the region; added to vfu_region_info.offset for mmap */
	uint64_t size;
} __attribute__((packed));

struct vfu_cap_sparse_mmap {
	struct vfu_cap_hdr hdr;
	uint32_t nr_areas;
	uint32_t reserved;
	/* followed by nr_areas struct vfu_sparse_mmap_area */
} __attribute__((packed));

/* DEVICE_GET_IRQ_INFO */
#define VFU_IRQ_INFO_EVENTFD 0x1u
#define VFU_IRQ_INFO_MASKABLE 0x2u
#define VFU_IRQ_INFO_AUTOMASKED 0x4u
#define VFU_IRQ_INFO_NORESIZE 0x8u

struct vfu_irq_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t count;
} __attribute__((packed));

/* DEVICE_SET_IRQS */
#define VFU_IRQ_SET_DATA_NONE 0x1u
#define VFU_IRQ_SET_DATA_BOOL 0x2u
#define VFU_IRQ_SET_DATA_EVENTFD 0x4u
#define VFU_IRQ_SET_DATA_MASK 0x7u
#define VFU_IRQ_SET_ACTION_MASK 0x8u
#define VFU_IRQ_SET_ACTION_UNMASK 0x10u
#define VFU_IRQ_SET_ACTION_TRIGGER 0x20u
#define VFU_IRQ_SET_ACTION_MASK_ALL 0x38u

struct vfu_irq_set {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t start;
	uint32_t count;
	/* DATA_BOOL: count bytes follow */
} __attribute__((packed));

/* REGION_READ / REGION_WRITE (request and reply) */
struct vfu_region_rw {
	uint64_t offset;
	uint32_t region;
	uint32_t count;
	/* write request / read reply: count bytes of data */
} __attribute__((packed));

/* REGION_WRITE_MULTI: a u64 count, then that many entries. */
#define VFU_WRITE_MULTI_DATA 8
#define VFU_WRITE_MULTI_MAX 200

struct vfu_write_one {
	uint64_t offset;
	uint32_t region;
	uint32_t count; /* 1..8 */
	uint8_t data[VFU_WRITE_MULTI_DATA];
} __attribute__((packed));

/* DMA_READ / DMA_WRITE (server -> client), request and reply: address and
 * count; the DMA_WRITE request and the DMA_READ reply carry count bytes of
 * data after them (docs/interop/vfio-user.rst). */
struct vfu_dma_rw {
	uint64_t addr;
	uint64_t count;
} __attribute__((packed));

#endif
