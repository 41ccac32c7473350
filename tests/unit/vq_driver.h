/* SPDX-License-Identifier: MIT */
/*
 * vq_driver.h - the driver side of a virtqueue, for unit tests.
 *
 * The tests of the device-side ring code (src/virtio/virtqueue.c) and of the
 * device models on top of it play the guest driver: they own "guest memory"
 * (malloc'd, registered with a struct zoc_mem), lay split or packed rings out
 * in it, make buffers available the way a virtio driver does and read the
 * completions back. This is that driver, shared.
 *
 * Two parts:
 *
 *   struct vqd_mem   guest memory: page-aligned zeroed blocks that stand for
 *                    guest-physical ranges, registered with a zoc_mem as one
 *                    or more regions, and a checked gpa -> host translation.
 *   struct vqd       one ring (split or packed) in such memory: the driver's
 *                    free-descriptor / buffer-id bookkeeping, vqd_add() and
 *                    vqd_get_used().
 *
 * The state is public: hostile-driver tests write descriptors and ring
 * indices by hand through the pointers and counters below.
 *
 * Failures (a bad gpa, an impossible completion) fail the running cmocka
 * test, so this file is for cmocka tests only (link vq_driver.c with them).
 * Not thread-safe: one thread plays the driver of one ring; completions
 * written by a device on another thread are read with acquire loads.
 */
#ifndef ZOC_TESTS_VQ_DRIVER_H
#define ZOC_TESTS_VQ_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "link/dma.h"
#include "virtio/virtio.h"
#include "virtio/virtqueue.h"

/* ------------------------------------------------------------------ */
/* guest memory                                                        */

#define VQD_MEM_MAX_BLOCKS 4

struct vqd_mem {
	struct zoc_mem *mem; /* what the device translates through */
	unsigned nblocks;
	struct {
		uint64_t gpa, size;
		uint8_t *hva;
	} block[VQD_MEM_MAX_BLOCKS];
};

/* Creates g->mem (empty). */
void vqd_mem_init(struct vqd_mem *g);
/* Drops g->mem and frees every block. */
void vqd_mem_fini(struct vqd_mem *g);
/* Allocates size bytes of zeroed, 4 KiB-aligned memory standing for guest
 * [gpa, gpa + size) and returns it. The device does not see it until it is
 * mapped with vqd_mem_map(). */
uint8_t *vqd_mem_alloc(struct vqd_mem *g, uint64_t gpa, uint64_t size);
/* Registers [gpa, gpa + size), which must lie in one allocated block, as
 * one region of g->mem (zoc_mem_add_region_hva() with that uva). A block
 * may be mapped as several adjacent regions. */
void vqd_mem_map(struct vqd_mem *g, uint64_t gpa, uint64_t size, uint64_t uva, bool writable);
/* Host address of gpa; fails the test if gpa is in no allocated block. */
void *vqd_mem_ptr(const struct vqd_mem *g, uint64_t gpa);

/* ------------------------------------------------------------------ */
/* one ring                                                            */

/* A piece of a buffer: len bytes at gpa, device-writable if write. */
struct vqd_seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

/* Where a ring lives (all guest-physical, in vqd_mem blocks). */
struct vqd_layout {
	uint16_t size; /* entries (split: a power of two) */
	bool packed;
	uint64_t desc;   /* descriptor table / packed descriptor ring */
	uint64_t driver; /* split avail ring / packed driver event suppression */
	uint64_t device; /* split used ring / packed device event suppression */
	uint64_t ind;    /* indirect tables: one of ind_slot bytes per buffer id */
	uint32_t ind_slot;
	uint16_t max_segs; /* the longest chain vqd_add() takes */
};

struct vqd {
	struct vqd_mem *g;
	struct vqd_layout lay;
	uint16_t size;
	bool packed;
	/* split */
	struct virtq_desc *desc;
	struct virtq_avail *avail;
	struct virtq_used *used;
	uint16_t avail_idx, last_used; /* the driver's avail idx, next used entry */
	uint16_t *free_stack;          /* free descriptors, next on top */
	uint16_t nfree;
	uint16_t *chain;     /* [head * max_segs + i]: descriptors of each head */
	uint16_t *chain_len; /* [head]: 0 while the head is not in use */
	/* packed */
	struct virtq_packed_desc *pdesc;
	struct virtq_packed_event *drv_evt, *dev_evt;
	uint16_t next_avail, next_used, free_slots;
	bool avail_wrap, used_wrap;
	uint16_t *id_stack; /* free buffer ids, next on top */
	uint16_t nids;
	uint16_t *id_slots; /* [id]: ring slots the buffer uses, 0 if free */
	/* both */
	uint32_t outstanding; /* buffers made available, not yet used */
};

/* Sets q up on the memory of g (which must outlive it) and vqd_reset()s it.
 * The ring memory itself is left as it is. */
void vqd_init(struct vqd *q, struct vqd_mem *g, const struct vqd_layout *lay);
void vqd_fini(struct vqd *q);
/* Back to the state of a fresh ring: every descriptor and id free, indices
 * 0, wrap counters 1. Ring memory is not touched. */
void vqd_reset(struct vqd *q);
/* Fills the fields of a device-side queue config that follow from the ring:
 * size, packed, desc, driver, device, mem. The rest is the caller's. */
void vqd_vq_config(const struct vqd *q, struct zoc_vq_config *c);

/* Makes a buffer of n segments (1..max_segs) available, in an indirect
 * table if ind, else as a chain of n descriptors. Returns its id (split:
 * the head descriptor; packed: the buffer id), or -ENOSPC if the ring has
 * no room for it. */
int vqd_add(struct vqd *q, const struct vqd_seg *segs, int n, bool ind);
/* Split: puts x, as it is, in a free descriptor, makes that a buffer of its
 * own and returns its head (-ENOSPC if none is free). For hand-made
 * (hostile) descriptors that vqd_add() would not write. */
int vqd_add_split_desc(struct vqd *q, struct virtq_desc x);
/* Split: appends head to the avail ring and publishes the new avail idx. */
void vqd_split_publish(struct vqd *q, uint16_t head);
/* Takes the next completion: its id and used length (packed: 0 unless the
 * device set WRITE), frees its descriptors / id. false if there is none. */
bool vqd_get_used(struct vqd *q, uint16_t *id, uint32_t *len);

#endif
