/* SPDX-License-Identifier: MIT */
/*
 * pool.h - fixed-size object pools for the data path.
 *
 * A pool is owned by one reactor and is not thread-safe: get and put are a
 * few instructions on a free-list stack. All memory is allocated at create
 * time; zoc_pool_get() returns NULL when the pool is exhausted, which the
 * caller treats as back-pressure (leave the request in the ring).
 */
#ifndef ZOC_CORE_POOL_H
#define ZOC_CORE_POOL_H

#include <stddef.h>
#include <stdint.h>

/* Private to pool.c; here so that get and put inline into the data path. */
struct zoc_pool {
	char name[32];
	uint32_t count;
	uint32_t top;     /* number of free objects on the stack */
	size_t obj_size;  /* rounded to a cache line */
	uint8_t *mem;
	void **stack;
};

/* count objects of obj_size bytes each, cache-line aligned. NULL on ENOMEM. */
struct zoc_pool *zoc_pool_create(const char *name, uint32_t count, size_t obj_size);
void zoc_pool_destroy(struct zoc_pool *pool);

static inline void *zoc_pool_get(struct zoc_pool *p)
{
	if (__builtin_expect(p->top == 0, 0))
		return NULL;
	return p->stack[--p->top];
}

/* obj must come from this pool and not be in it already. */
static inline void zoc_pool_put(struct zoc_pool *p, void *obj)
{
	p->stack[p->top++] = obj;
}

uint32_t zoc_pool_count(const struct zoc_pool *pool);
uint32_t zoc_pool_available(const struct zoc_pool *pool);

#endif
