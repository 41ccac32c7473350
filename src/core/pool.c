/* SPDX-License-Identifier: MIT */
#include "core/pool.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "core/util.h"

struct zoc_pool *zoc_pool_create(const char *name, uint32_t count, size_t obj_size)
{
	struct zoc_pool *p;
	size_t sz;

	if (count == 0 || obj_size == 0)
		return NULL;
	sz = (obj_size + ZOC_CACHELINE - 1) & ~(size_t)(ZOC_CACHELINE - 1);
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	snprintf(p->name, sizeof(p->name), "%s", name ? name : "pool");
	p->count = count;
	p->obj_size = sz;
	if (posix_memalign((void **)&p->mem, ZOC_CACHELINE, sz * count) != 0) {
		free(p);
		return NULL;
	}
	memset(p->mem, 0, sz * count);
	p->stack = malloc(sizeof(void *) * count);
	if (!p->stack) {
		free(p->mem);
		free(p);
		return NULL;
	}
	/* Lowest addresses on top: first gets walk memory forward. */
	for (uint32_t i = 0; i < count; i++)
		p->stack[i] = p->mem + (size_t)(count - 1 - i) * sz;
	p->top = count;
	return p;
}

void zoc_pool_destroy(struct zoc_pool *p)
{
	if (!p)
		return;
	free(p->stack);
	free(p->mem);
	free(p);
}

uint32_t zoc_pool_count(const struct zoc_pool *p)
{
	return p->count;
}

uint32_t zoc_pool_available(const struct zoc_pool *p)
{
	return p->top;
}
