/* SPDX-License-Identifier: MIT */
/*
 * vfu_client.h - the client side of vfio-user (QEMU docs/interop/vfio-user.rst),
 * as QEMU's vfio-user-pci speaks it: one unix socket, synchronous
 * request/reply, memory shared with the server by DMA_MAP of an fd.
 *
 * The server is not trusted: every reply is checked (message id, command,
 * reply type, error bit, sizes, fds) and anything unexpected ends the call
 * with -EPROTO and a message in zoc_vfuc_error(). Commands the server sends
 * between a request and its reply are served: DMA_READ/DMA_WRITE within
 * the mapped memory, anything else refused with an error reply.
 *
 * Not thread-safe: one thread owns a connection.
 */
#ifndef ZOC_PERF_VFU_CLIENT_H
#define ZOC_PERF_VFU_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Message commands (spec "Commands"). */
enum {
	VFUC_VERSION = 1,
	VFUC_DMA_MAP = 2,
	VFUC_DMA_UNMAP = 3,
	VFUC_DEVICE_GET_INFO = 4,
	VFUC_DEVICE_GET_REGION_INFO = 5,
	VFUC_DEVICE_GET_REGION_IO_FDS = 6,
	VFUC_DEVICE_GET_IRQ_INFO = 7,
	VFUC_DEVICE_SET_IRQS = 8,
	VFUC_REGION_READ = 9,
	VFUC_REGION_WRITE = 10,
	VFUC_DMA_READ = 11,
	VFUC_DMA_WRITE = 12,
	VFUC_DEVICE_RESET = 13,
	VFUC_REGION_WRITE_MULTI = 15,
};

/* VFIO PCI region and irq indices (linux/vfio.h). */
enum {
	VFUC_REGION_BAR0 = 0,
	VFUC_REGION_ROM = 6,
	VFUC_REGION_CONFIG = 7,
	VFUC_IRQ_INTX = 0,
	VFUC_IRQ_MSI = 1,
	VFUC_IRQ_MSIX = 2,
};

#define VFUC_REGION_FLAG_READ (1u << 0)
#define VFUC_REGION_FLAG_WRITE (1u << 1)
#define VFUC_REGION_FLAG_MMAP (1u << 2)
#define VFUC_REGION_FLAG_CAPS (1u << 3)
#define VFUC_DEVICE_FLAGS_RESET (1u << 0)
#define VFUC_DEVICE_FLAGS_PCI (1u << 1)
#define VFUC_IRQ_INFO_EVENTFD (1u << 0)
#define VFUC_IRQ_SET_DATA_NONE (1u << 0)
#define VFUC_IRQ_SET_DATA_BOOL (1u << 1)
#define VFUC_IRQ_SET_DATA_EVENTFD (1u << 2)
#define VFUC_IRQ_SET_ACTION_MASK (1u << 3)
#define VFUC_IRQ_SET_ACTION_UNMASK (1u << 4)
#define VFUC_IRQ_SET_ACTION_TRIGGER (1u << 5)
#define VFUC_DMA_READABLE (1u << 0)
#define VFUC_DMA_WRITEABLE (1u << 1)

#define VFUC_MAX_SPARSE 8
#define VFUC_MAX_IRQ_FDS 64

struct zoc_vfuc;

struct zoc_vfuc_caps { /* negotiated: the server's view, defaults if absent */
	uint16_t major, minor;
	uint32_t max_msg_fds;
	uint64_t max_data_xfer_size;
	uint32_t max_dma_maps;
	uint64_t pgsizes;
	bool write_multiple;
};

struct zoc_vfuc_device_info {
	uint32_t flags, num_regions, num_irqs;
};

struct zoc_vfuc_region_info {
	uint32_t index, flags;
	uint64_t size, offset; /* offset: mmap offset in fd */
	int fd;                /* -1 unless the reply carried one (caller closes it) */
	uint32_t nr_sparse;    /* sparse mmap areas, offsets relative to the region */
	struct {
		uint64_t offset, size;
	} sparse[VFUC_MAX_SPARSE];
};

struct zoc_vfuc_irq_info {
	uint32_t index, flags, count;
};

/* Connects and negotiates VERSION 0.x. timeout_ms bounds every reply wait.
 * NULL with errno set; *why gets a message (static storage). */
struct zoc_vfuc *zoc_vfuc_connect(const char *path, int timeout_ms, const char **why);
/* The same on a connected stream socket (taken over, closed on failure);
 * for tests. */
struct zoc_vfuc *zoc_vfuc_attach(int fd, int timeout_ms, const char **why);
void zoc_vfuc_close(struct zoc_vfuc *v);
/* The last error, in words. */
const char *zoc_vfuc_error(const struct zoc_vfuc *v);
const struct zoc_vfuc_caps *zoc_vfuc_caps(const struct zoc_vfuc *v);
uint64_t zoc_vfuc_messages(const struct zoc_vfuc *v); /* requests sent */

/* Maps [va, va+size) as IOVA [iova, iova+size) from fd at fd_offset; the
 * client serves DMA_READ/WRITE to it as well. fd -1: the map carries no fd
 * (as QEMU sends for guest RAM that is not shared): the server reaches that
 * memory only with DMA_READ/DMA_WRITE, which the caller must let the client
 * serve with zoc_vfuc_poll() while it waits for the device. */
int zoc_vfuc_dma_map(struct zoc_vfuc *v, int fd, uint64_t fd_offset, void *va, uint64_t iova,
		     uint64_t size, uint32_t flags);
int zoc_vfuc_dma_unmap(struct zoc_vfuc *v, uint64_t iova, uint64_t size);
int zoc_vfuc_device_info(struct zoc_vfuc *v, struct zoc_vfuc_device_info *out);
int zoc_vfuc_region_info(struct zoc_vfuc *v, uint32_t index, struct zoc_vfuc_region_info *out);
int zoc_vfuc_irq_info(struct zoc_vfuc *v, uint32_t index, struct zoc_vfuc_irq_info *out);
/* DATA_EVENTFD|ACTION_TRIGGER for [start, start+count) with fds (count fds;
 * -1 entries are sent as... not allowed: every fd must be valid), or with
 * count 0: disable all of the index (DATA_NONE). */
int zoc_vfuc_set_irqs(struct zoc_vfuc *v, uint32_t index, uint32_t start, uint32_t count,
		      const int *fds);
int zoc_vfuc_region_read(struct zoc_vfuc *v, uint32_t region, uint64_t off, void *buf,
			 uint32_t len);
int zoc_vfuc_region_write(struct zoc_vfuc *v, uint32_t region, uint64_t off, const void *buf,
			  uint32_t len);
/* A register write sent with No_reply, like QEMU's posted writes: no wait.
 * The server processes messages in order, so the next request's reply
 * acknowledges it; an error reply to it fails that later call. */
int zoc_vfuc_region_write_posted(struct zoc_vfuc *v, uint32_t region, uint64_t off,
				 const void *buf, uint32_t len);
int zoc_vfuc_reset(struct zoc_vfuc *v);
/* Serves what the server sent meanwhile (DMA_READ / DMA_WRITE, replies to
 * posted writes) without blocking. 0 or -errno (the connection is unusable
 * after -EPROTO / -ETIMEDOUT / -ECONNRESET). */
int zoc_vfuc_poll(struct zoc_vfuc *v);
/* The socket (to wait for it with poll()). */
int zoc_vfuc_fd(const struct zoc_vfuc *v);
/* DMA_READ / DMA_WRITE requests served so far. */
uint64_t zoc_vfuc_dma_served(const struct zoc_vfuc *v);

/* Convenience: naturally aligned 1/2/4/8-byte register accesses. */
int zoc_vfuc_read32(struct zoc_vfuc *v, uint32_t region, uint64_t off, uint32_t *val);
int zoc_vfuc_write32(struct zoc_vfuc *v, uint32_t region, uint64_t off, uint32_t val);
int zoc_vfuc_read16(struct zoc_vfuc *v, uint32_t region, uint64_t off, uint16_t *val);
int zoc_vfuc_write16(struct zoc_vfuc *v, uint32_t region, uint64_t off, uint16_t val);
int zoc_vfuc_read8(struct zoc_vfuc *v, uint32_t region, uint64_t off, uint8_t *val);

#endif
