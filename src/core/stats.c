/* SPDX-License-Identifier: MIT */
#include "core/stats.h"

#include <stdio.h>

void zoc_stats_record_latency(struct zoc_io_stats *s, uint64_t ns)
{
	unsigned b = ns > 1 ? 63u - (unsigned)__builtin_clzll(ns) : 0;

	if (b >= ZOC_HIST_BUCKETS)
		b = ZOC_HIST_BUCKETS - 1;
	s->hist[b]++;
}

void zoc_stats_add(struct zoc_io_stats *a, const struct zoc_io_stats *b)
{
	const uint64_t *src = (const uint64_t *)b;
	uint64_t *dst = (uint64_t *)a;

	for (size_t i = 0; i < sizeof(*a) / sizeof(uint64_t); i++)
		dst[i] += __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

uint64_t zoc_stats_quantile(const struct zoc_io_stats *s, double q)
{
	uint64_t total = 0, seen = 0, want;

	for (unsigned i = 0; i < ZOC_HIST_BUCKETS; i++)
		total += s->hist[i];
	if (!total)
		return 0;
	want = (uint64_t)(q * (double)total);
	if (want >= total)
		want = total - 1;
	for (unsigned i = 0; i < ZOC_HIST_BUCKETS; i++) {
		seen += s->hist[i];
		if (seen > want)
			return (2ull << i) - 1;
	}
	return 0;
}

json_t *zoc_stats_to_json(const struct zoc_io_stats *s)
{
	json_t *buckets = json_object();
	json_t *lat;
	char key[24];

	for (unsigned i = 0; i < ZOC_HIST_BUCKETS; i++) {
		if (!s->hist[i])
			continue;
		snprintf(key, sizeof(key), "%llu", i ? 1ull << i : 0ull);
		json_object_set_new(buckets, key, json_integer((json_int_t)s->hist[i]));
	}
	lat = json_pack("{s:I, s:I, s:I, s:o}", "p50", (json_int_t)zoc_stats_quantile(s, 0.5),
			"p99", (json_int_t)zoc_stats_quantile(s, 0.99), "p999",
			(json_int_t)zoc_stats_quantile(s, 0.999), "buckets", buckets);
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
			 "read_ops", (json_int_t)s->read_ops, "write_ops", (json_int_t)s->write_ops,
			 "flush_ops", (json_int_t)s->flush_ops, "discard_ops",
			 (json_int_t)s->discard_ops, "write_zeroes_ops",
			 (json_int_t)s->write_zeroes_ops, "other_ops", (json_int_t)s->other_ops,
			 "read_bytes", (json_int_t)s->read_bytes, "write_bytes",
			 (json_int_t)s->write_bytes, "errors", (json_int_t)s->errors,
			 "unsupported", (json_int_t)s->unsupported, "invalid",
			 (json_int_t)s->invalid, "latency_ns", lat);
}
