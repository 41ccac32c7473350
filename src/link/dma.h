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
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define ZOC_MEM_MAX_REGIONS 64
#define ZOC_MEM_MAX_REMOTE 64

struct zoc_mem_io;
struct zoc_reactor;

/*
 * The slow path: memory the client did not share (vfio-user DMA_MAP without
 * an fd) is reached through the link, with messages (DMA_READ / DMA_WRITE).
 * Such a range is a "remote" region: it is kept in its own list, never in
 * the table that translations search, so every translation of it fails as
 * before (the fast path has no extra test) and a device that wants the data
 * anyway copies it with zoc_mem_io_submit().
 *
 * The link provides the copy; the endpoint is reference counted and outlives
 * the link's connection: when the connection goes, the link detaches it and
 * every copy still asking for it fails with -ENOTCONN.
 */
struct zoc_mem_remote_ops {
	/* Reactor 0. Starts the copy of [io->gpa + io->done, io->gpa + io->len)
	 * (all of it inside remote regions) between the client and
	 * io->buf + io->done; calls zoc_mem_io_remote_done(io, status) on
	 * reactor 0 when finished (possibly before returning). */
	void (*rw)(void *ctx, struct zoc_mem_io *io);
};

struct zoc_mem_remote {
	const struct zoc_mem_remote_ops *ops;
	void *ctx;     /* NULL once detached (reactor 0) */
	uint32_t refs; /* atomic */
};

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

struct zoc_mem_remote_region {
	uint64_t gpa;
	uint64_t size;
	bool writable;
};

struct zoc_mem {
	uint32_t nregions;
	uint32_t refs;
	struct zoc_mem_region regions[ZOC_MEM_MAX_REGIONS];
	/* regions without a mapping (slow path only) */
	uint32_t nremote;
	struct zoc_mem_remote_region remote[ZOC_MEM_MAX_REMOTE];
	struct zoc_mem_remote *ep; /* who copies them (a reference), or NULL */
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
/* Index of the region holding gpa, or -1. */
int zoc_mem_find(const struct zoc_mem *m, uint64_t gpa);

/* The fast path of a queue owner: host pointer for [gpa, gpa+len) when it
 * lies in one region (writable when write), else NULL (a range over two
 * regions too: the caller falls back to zoc_mem_gpa_to_iov). *hint is the
 * caller's own last region index (any value is safe: it is checked). */
static inline uint8_t *zoc_mem_translate(const struct zoc_mem *m, uint32_t *hint, uint64_t gpa,
					 uint64_t len, bool write)
{
	const struct zoc_mem_region *r;
	uint32_t i = *hint;
	uint64_t off;

	if (__builtin_expect(i >= m->nregions || gpa - m->regions[i].gpa >= m->regions[i].size, 0)) {
		int k = zoc_mem_find(m, gpa);

		if (k < 0)
			return NULL;
		*hint = i = (uint32_t)k;
	}
	r = &m->regions[i];
	off = gpa - r->gpa;
	if (__builtin_expect(len > r->size - off || (write && !r->writable), 0))
		return NULL;
	return r->hva + off;
}

/* Translates [gpa, gpa+len) into up to max_iov iovecs (a buffer may span
 * adjacent regions). Returns the number used, -EFAULT if some byte is not
 * mapped (or not writable when write), -ENOBUFS if max_iov is too small. */
int zoc_mem_gpa_to_iov(const struct zoc_mem *m, uint64_t gpa, uint64_t len, bool write,
		       struct iovec *iov, int max_iov);

/* ---- slow path: regions without a mapping ---- */

/* Adds [gpa, gpa+size) as reachable only through the endpoint (before
 * publication, like zoc_mem_add_region). Rejects zero size, overflow,
 * overlap with any region, a full list. 0 or -errno. */
int zoc_mem_add_remote(struct zoc_mem *m, uint64_t gpa, uint64_t size, bool writable);
/* The endpoint that copies remote regions (takes a reference). */
void zoc_mem_set_remote(struct zoc_mem *m, struct zoc_mem_remote *ep);
/* Endpoints: created with one reference (the link's); the link detaches it
 * (reactor 0) when its connection goes, then drops its reference. */
struct zoc_mem_remote *zoc_mem_remote_create(const struct zoc_mem_remote_ops *ops, void *ctx);
void zoc_mem_remote_detach(struct zoc_mem_remote *ep);
void zoc_mem_remote_put(struct zoc_mem_remote *ep);

/* Does some byte of [gpa, gpa+len) lie in a remote region, and is every
 * byte either mapped or remote (writable ones when write)? Cheap enough for
 * a failure path (a linear scan of the remote list, empty for clients that
 * share all their memory). */
bool zoc_mem_is_remote(const struct zoc_mem *m, uint64_t gpa, uint64_t len, bool write);

/*
 * An asynchronous copy between buf and guest memory [gpa, gpa + len): the
 * mapped parts are copied at once, the remote parts by the link (reactor 0;
 * a request from another reactor goes there as a message, and its
 * completion comes back to the submitting reactor). cb(io, status) runs on
 * the submitting reactor: 0, -EFAULT (a byte neither mapped nor remote, or
 * not writable), -ENOTCONN (the link is gone), -ETIMEDOUT, -EIO (the client
 * answered with an error or nonsense). The caller owns io (and keeps buf
 * valid) until cb; it holds a reference on m meanwhile.
 */
struct zoc_mem_io {
	uint64_t gpa;
	void *buf;
	uint64_t len;
	bool to_guest; /* true: buf -> guest (device writes); false: guest -> buf */
	void (*cb)(struct zoc_mem_io *io, int status);
	void *arg;
	/* private */
	struct zoc_mem *mem;
	struct zoc_reactor *origin;
	uint64_t done;     /* bytes copied so far */
	uint64_t chunk;    /* link: bytes of the message in flight */
	int status;
	struct zoc_mem_io *next; /* link's queue */
};

/* 0 (cb will run, possibly before this returns) or -errno (cb will not run). */
int zoc_mem_io_submit(struct zoc_mem *m, struct zoc_mem_io *io);
/* Link: a remote step finished (reactor 0). */
void zoc_mem_io_remote_done(struct zoc_mem_io *io, int status);

/* Accesses to guest memory that raised SIGBUS (a front end truncated the
 * file behind a region) and were turned into reads of zeros. */
uint64_t zoc_mem_sigbus_count(void);

#endif
