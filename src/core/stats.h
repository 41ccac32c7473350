/* SPDX-License-Identifier: MIT */
/*
 * stats.h - per-queue I/O statistics: counters and a latency histogram.
 *
 * Written only by the owning reactor (plain stores); read by the control
 * plane with relaxed loads, which may see a slightly stale snapshot.
 * Histogram buckets are log2 of nanoseconds: bucket i counts latencies in
 * [2^i, 2^(i+1)) ns; bucket 0 also counts 0 and 1 ns.
 */
#ifndef ZOC_CORE_STATS_H
#define ZOC_CORE_STATS_H

#include <stdint.h>

#include <jansson.h>

#define ZOC_HIST_BUCKETS 40

struct zoc_io_stats {
	uint64_t read_ops, write_ops, flush_ops, discard_ops, write_zeroes_ops, other_ops;
	uint64_t read_bytes, write_bytes;
	uint64_t errors;       /* requests completed with an error status */
	uint64_t unsupported;  /* requests of an unknown type */
	uint64_t invalid;      /* malformed requests */
	uint64_t hist[ZOC_HIST_BUCKETS];
};

void zoc_stats_record_latency(struct zoc_io_stats *s, uint64_t ns);
/* Adds b into a (for device totals). */
void zoc_stats_add(struct zoc_io_stats *a, const struct zoc_io_stats *b);
/* Latency at quantile q (0..1) from the histogram, in ns (bucket upper bound). */
uint64_t zoc_stats_quantile(const struct zoc_io_stats *s, double q);
/* JSON object: counters, "latency_ns": {p50, p99, p999, buckets: {"<lo>": n}}. */
json_t *zoc_stats_to_json(const struct zoc_io_stats *s);

#endif
