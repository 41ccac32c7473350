/* SPDX-License-Identifier: MIT */
/*
 * dma.h - a domain's DMA address space.
 *
 * L0: each shared memory region the client gives us (an fd + offset) is
 * mmapped once; a guest-physical address inside it translates with a fixed
 * offset (hva = base + (gpa - start)).
 * L1: a table of regions sorted by guest-physical address, searched in
 * O(log n) with a last-hit shortcut; the same table also answers the
 * client's own virtual addresses (vhost-user ring addresses).
 *
 * A table is immutable once built (zoc_mem_add_region() before publication);
 * a new memory layout is a new table, swapped in while the queues that use
 * it are quiesced. Every translation checks the whole [addr, addr+len) range.
 * All devices of one connection share one table; nothing is shared across
 * connections.
 *
 * A front end that truncates the file behind a mapped region cannot kill
 * the daemon: a SIGBUS on a mapped region turns that region into zeros.
 */
#ifndef ZOC_LINK_DMA_H
#define ZOC_LINK_DMA_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#define ZOC_MEM_MAX_REGIONS 64

struct zoc_mem_region {
	uint64_t gpa;   /* guest physical start */
	uint64_t size;  /* bytes */
	uint64_t uva;   /* client (front-end) virtual address of gpa */
	uint8_t *hva;   /* our mapping of gpa */
	void *mmap_base;
	uint64_t mmap_size;
	int fd;         /* -1 once mapped (we do not keep fds) */
	bool writable;
};

struct zoc_mem {
	uint32_t nregions;
	uint32_t refs;
	struct zoc_mem_region regions[ZOC_MEM_MAX_REGIONS];
};

struct zoc_mem *zoc_mem_create(void);
/* Maps [mmap_offset, mmap_offset + size) of fd (shared, RW unless !writable)
 * and adds it. Takes ownership of fd (closes it, success or not). Rejects zero
 * size, overflow, overlap with existing regions, a full table. 0 or -errno. */
int zoc_mem_add_region(struct zoc_mem *m, uint64_t gpa, uint64_t size, uint64_t uva,
		       uint64_t mmap_offset, int fd, bool writable);
/* Adds an already-mapped range (tests, fuzzers, in-process clients). Not unmapped
 * on destroy. */
int zoc_mem_add_region_hva(struct zoc_mem *m, uint64_t gpa, uint64_t size, uint64_t uva,
			   void *hva, bool writable);
void zoc_mem_get(struct zoc_mem *m);
/* Drops a reference; unmaps everything when the last one goes. */
void zoc_mem_put(struct zoc_mem *m);

/* Host pointer for [gpa, gpa+len) if the whole range lies in one region (and
 * that region is writable when write is set), else NULL. len 0 is treated as 1. */
void *zoc_mem_gpa_to_hva(const struct zoc_mem *m, uint64_t gpa, uint64_t len, bool write);
/* Same for client virtual addresses (vhost-user vring addresses). */
void *zoc_mem_uva_to_hva(const struct zoc_mem *m, uint64_t uva, uint64_t len, bool write);
/* Translates [gpa, gpa+len) into up to max_iov iovecs (a buffer may span
 * adjacent regions). Returns the number used, -EFAULT if some byte is not
 * mapped (or not writable when write), -ENOBUFS if max_iov is too small. */
int zoc_mem_gpa_to_iov(const struct zoc_mem *m, uint64_t gpa, uint64_t len, bool write,
		       struct iovec *iov, int max_iov);

/* Accesses to guest memory that raised SIGBUS (a front end truncated the
 * file behind a region) and were turned into reads of zeros. */
uint64_t zoc_mem_sigbus_count(void);

#endif
