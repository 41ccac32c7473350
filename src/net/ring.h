/* SPDX-License-Identifier: MIT */
/*
 * ring.h - single-producer single-consumer ring of pointers.
 *
 * One thread enqueues, one (other) thread dequeues; no locks, no atomic
 * read-modify-write: the producer publishes its tail with a release store,
 * the consumer its head; each side caches the other's index and rereads it
 * only when the ring looks full / empty. Size: a power of two; the ring
 * holds up to size entries. Header-only (inline fast path).
 */
#ifndef ZOC_NET_RING_H
#define ZOC_NET_RING_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

struct zoc_spsc {
	/* consumer side */
	uint32_t head __attribute__((aligned(ZOC_CACHELINE)));
	uint32_t tail_cache;
	/* producer side */
	uint32_t tail __attribute__((aligned(ZOC_CACHELINE)));
	uint32_t head_cache;
	uint32_t mask __attribute__((aligned(ZOC_CACHELINE)));
	void *slot[];
};

/* size: power of two, >= 2. NULL on EINVAL/ENOMEM. Free with free(). */
static inline struct zoc_spsc *zoc_spsc_create(uint32_t size)
{
	struct zoc_spsc *r;
	size_t sz;

	if (size < 2 || (size & (size - 1)))
		return NULL;
	sz = sizeof(*r) + sizeof(void *) * size;
	sz = (sz + ZOC_CACHELINE - 1) & ~(size_t)(ZOC_CACHELINE - 1);
	r = aligned_alloc(ZOC_CACHELINE, sz);
	if (!r)
		return NULL;
	memset(r, 0, sz);
	r->mask = size - 1;
	return r;
}

/* Producer. Enqueues up to n; returns how many (the first ones). */
static inline unsigned zoc_spsc_enqueue(struct zoc_spsc *r, void *const *objs, unsigned n)
{
	uint32_t tail = r->tail, free_ = r->mask + 1 - (tail - r->head_cache);

	if (free_ < n) {
		r->head_cache = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
		free_ = r->mask + 1 - (tail - r->head_cache);
		if (n > free_)
			n = free_;
	}
	for (unsigned i = 0; i < n; i++)
		r->slot[(tail + i) & r->mask] = objs[i];
	__atomic_store_n(&r->tail, tail + n, __ATOMIC_RELEASE);
	return n;
}

/* Consumer. Dequeues up to n; returns how many. */
static inline unsigned zoc_spsc_dequeue(struct zoc_spsc *r, void **objs, unsigned n)
{
	uint32_t head = r->head, avail = r->tail_cache - head;

	if (avail < n) {
		r->tail_cache = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
		avail = r->tail_cache - head;
		if (n > avail)
			n = avail;
	}
	for (unsigned i = 0; i < n; i++)
		objs[i] = r->slot[(head + i) & r->mask];
	__atomic_store_n(&r->head, head + n, __ATOMIC_RELEASE);
	return n;
}

/* Either side: a racy hint (exact when the other side is quiet). */
static inline unsigned zoc_spsc_count(const struct zoc_spsc *r)
{
	return __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE) -
	       __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
}

#endif
