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

struct zoc_pool;

/* count objects of obj_size bytes each, cache-line aligned. NULL on ENOMEM. */
struct zoc_pool *zoc_pool_create(const char *name, uint32_t count, size_t obj_size);
void zoc_pool_destroy(struct zoc_pool *pool);

void *zoc_pool_get(struct zoc_pool *pool);
void zoc_pool_put(struct zoc_pool *pool, void *obj);

uint32_t zoc_pool_count(const struct zoc_pool *pool);
uint32_t zoc_pool_available(const struct zoc_pool *pool);

#endif
