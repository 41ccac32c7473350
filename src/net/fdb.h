/* SPDX-License-Identifier: MIT */
/*
 * fdb.h - the forwarding database of a switch: (MAC, VLAN) -> port.
 *
 * A hash table of 4-way buckets (one cache line each: a sequence counter,
 * four keys, four port ids, four last-seen times in seconds). Bounded:
 * at most max_entries entries; a bucket that is full evicts its oldest
 * entry.
 *
 * Threads: lookups are lock-free and may run on any thread concurrently
 * with a writer: each bucket is a seqlock (the reader retries while the
 * bucket's sequence is odd or changed under it; plain loads on x86, no
 * atomic read-modify-write). Changes (insert, move, delete, aging, flush)
 * are serialised by a mutex, taken only when something changes. The
 * last-seen time of an existing entry is refreshed by the reader with a
 * relaxed store at most once per second per entry (outside the seqlock: a
 * refresh racing with a move may keep some entry alive one aging period
 * longer, which is harmless).
 *
 * Keys: mac is 6 bytes, vid 0..4095 (0 = the untagged domain of VLAN-
 * unaware ports). The caller filters what may be learned (the switch never
 * learns multicast or zero sources); the table stores any key.
 * Port ids are 0..65534.
 */
#ifndef ZOC_NET_FDB_H
#define ZOC_NET_FDB_H

#include <stdbool.h>
#include <stdint.h>

struct zoc_fdb;

enum zoc_fdb_learn_result {
	ZOC_FDB_KNOWN = 0,   /* present on that port (maybe refreshed) */
	ZOC_FDB_NEW = 1,     /* inserted */
	ZOC_FDB_MOVED = 2,   /* was on another port (station move) */
	ZOC_FDB_EVICTED = 3, /* inserted, an older entry of the bucket evicted */
};

struct zoc_fdb_stats {
	uint64_t learned, moved, evicted, aged, flushed, full;
};

/* max_entries: 1 .. 1<<22. NULL on EINVAL / ENOMEM. */
struct zoc_fdb *zoc_fdb_create(uint32_t max_entries);
void zoc_fdb_destroy(struct zoc_fdb *fdb);

/* Any thread, lock-free. The port of (mac, vid), or -ENOENT. */
int zoc_fdb_lookup(struct zoc_fdb *fdb, const uint8_t mac[6], uint16_t vid);

/* Any thread. Learns (mac, vid) on port at time now_s (seconds, any
 * monotonic origin). Lock-free when the entry is known on that port;
 * otherwise takes the writer lock. If allow is non-NULL it is called under
 * the lock before a change and may veto it (returns false), e.g. for a port
 * being removed. Returns a zoc_fdb_learn_result, -ENOSPC when the table is
 * full, -EPERM when vetoed. */
int zoc_fdb_learn(struct zoc_fdb *fdb, const uint8_t mac[6], uint16_t vid, uint16_t port,
		  uint32_t now_s, bool (*allow)(void *arg, uint16_t port), void *arg);

/* Removes entries not seen for more than max_age_s at now_s; returns the
 * count removed. */
unsigned zoc_fdb_age(struct zoc_fdb *fdb, uint32_t now_s, uint32_t max_age_s);
/* Removes all entries of port; returns the count. */
unsigned zoc_fdb_flush_port(struct zoc_fdb *fdb, uint16_t port);
/* Removes all entries; returns the count. */
unsigned zoc_fdb_flush(struct zoc_fdb *fdb);
/* Removes one entry: 0 or -ENOENT. */
int zoc_fdb_delete(struct zoc_fdb *fdb, const uint8_t mac[6], uint16_t vid);

uint32_t zoc_fdb_count(struct zoc_fdb *fdb);
uint32_t zoc_fdb_max(const struct zoc_fdb *fdb);
void zoc_fdb_get_stats(struct zoc_fdb *fdb, struct zoc_fdb_stats *st);

/* Calls fn for every entry, under the writer lock (fn must not change the
 * table). Stops early when fn returns nonzero. */
typedef int (*zoc_fdb_iter_fn)(void *arg, const uint8_t mac[6], uint16_t vid, uint16_t port,
			       uint32_t seen_s);
void zoc_fdb_foreach(struct zoc_fdb *fdb, zoc_fdb_iter_fn fn, void *arg);

#endif
