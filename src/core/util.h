/* SPDX-License-Identifier: MIT */
/* util.h - small helpers shared by every module. */
#ifndef ZOC_CORE_UTIL_H
#define ZOC_CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define ZOC_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ZOC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define ZOC_MAX(a, b) ((a) > (b) ? (a) : (b))
#define ZOC_CONTAINER_OF(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#define ZOC_LIKELY(x) __builtin_expect(!!(x), 1)
#define ZOC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define ZOC_CACHELINE 64

/* Starts fetching the line at p for writing (exclusive), so that a store
 * to a line another CPU holds does not take a shared copy first and an
 * invalidation after. PREFETCHW is a hint: CPUs without it treat the
 * opcode as a no-op. */
static inline void zoc_prefetchw(const void *p)
{
#if defined(__x86_64__)
	__asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
	__builtin_prefetch(p, 1);
#endif
}

static inline uint64_t zoc_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Returns true when a + b overflows or exceeds limit. */
static inline int zoc_range_bad(uint64_t a, uint64_t b, uint64_t limit)
{
	uint64_t end;

	return __builtin_add_overflow(a, b, &end) || end > limit;
}

#endif
