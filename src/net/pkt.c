/* SPDX-License-Identifier: MIT */
#include "net/pkt.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/pool.h"
#include "core/reactor.h"
#include "core/util.h"

struct zoc_pktpool {
	struct zoc_pool *small;
	struct zoc_pool *large;
	struct zoc_pool *giant;
	unsigned owner;
	/* Packets freed on other threads: a push-only stack, taken whole by
	 * the owner (exchange), so there is no ABA problem. */
	_Atomic(struct zoc_pkt *) remote __attribute__((aligned(ZOC_CACHELINE)));
	char name[32] __attribute__((aligned(ZOC_CACHELINE)));
};

static struct zoc_pktpool *g_pools[ZOC_MAX_REACTORS];
static unsigned g_npools;
static uint32_t g_giant = ZOC_PKT_GIANT_DEFAULT;

struct zoc_pktpool *zoc_pktpool_create(const char *name, unsigned owner, uint32_t n_small,
				       uint32_t n_large)
{
	return zoc_pktpool_create_ex(name, owner, n_small, n_large, 0);
}

struct zoc_pktpool *zoc_pktpool_create_ex(const char *name, unsigned owner, uint32_t n_small,
					  uint32_t n_large, uint32_t n_giant)
{
	struct zoc_pktpool *pp;
	char nm[40];

	if (n_small + (uint64_t)n_large + n_giant == 0)
		return NULL;
	pp = aligned_alloc(ZOC_CACHELINE, sizeof(*pp));
	if (!pp)
		return NULL;
	memset(pp, 0, sizeof(*pp));
	snprintf(pp->name, sizeof(pp->name), "%s", name ? name : "pkt");
	pp->owner = owner;
	atomic_init(&pp->remote, NULL);
	if (n_small) {
		snprintf(nm, sizeof(nm), "%.30s-s", pp->name);
		pp->small = zoc_pool_create(nm, n_small, sizeof(struct zoc_pkt) + ZOC_PKT_SMALL_ROOM);
		if (!pp->small)
			goto fail;
	}
	if (n_large) {
		snprintf(nm, sizeof(nm), "%.30s-l", pp->name);
		pp->large = zoc_pool_create(nm, n_large, sizeof(struct zoc_pkt) + ZOC_PKT_LARGE_ROOM);
		if (!pp->large)
			goto fail;
	}
	if (n_giant) {
		snprintf(nm, sizeof(nm), "%.30s-g", pp->name);
		pp->giant = zoc_pool_create(nm, n_giant, sizeof(struct zoc_pkt) + ZOC_PKT_GIANT_ROOM);
		if (!pp->giant)
			goto fail;
	}
	return pp;
fail:
	zoc_pool_destroy(pp->small);
	zoc_pool_destroy(pp->large);
	zoc_pool_destroy(pp->giant);
	free(pp);
	return NULL;
}

static void put_local(struct zoc_pktpool *pp, struct zoc_pkt *p)
{
	uint8_t f = p->flags & ZOC_PKT_F_SIZE_MASK;

	zoc_pool_put(ZOC_LIKELY(!f) ? pp->small : (f & ZOC_PKT_F_LARGE) ? pp->large : pp->giant, p);
}

/* Owner: take back what other threads freed. Returns how many. */
static unsigned reclaim(struct zoc_pktpool *pp)
{
	struct zoc_pkt *p, *next;
	unsigned n = 0;

	if (!atomic_load_explicit(&pp->remote, memory_order_relaxed))
		return 0;
	p = atomic_exchange_explicit(&pp->remote, NULL, memory_order_acquire);
	for (; p; p = next) {
		next = p->next;
		put_local(pp, p);
		n++;
	}
	return n;
}

void zoc_pktpool_destroy(struct zoc_pktpool *pp)
{
	if (!pp)
		return;
	reclaim(pp);
	zoc_pool_destroy(pp->small);
	zoc_pool_destroy(pp->large);
	zoc_pool_destroy(pp->giant);
	free(pp);
}

void zoc_pktpool_available(struct zoc_pktpool *pp, uint32_t *small, uint32_t *large)
{
	reclaim(pp);
	*small = pp->small ? zoc_pool_available(pp->small) : 0;
	*large = pp->large ? zoc_pool_available(pp->large) : 0;
}

uint32_t zoc_pktpool_available_giant(struct zoc_pktpool *pp)
{
	reclaim(pp);
	return pp->giant ? zoc_pool_available(pp->giant) : 0;
}

void zoc_pktpools_set_giant(uint32_t n_giant)
{
	g_giant = n_giant;
}

int zoc_pktpools_init(uint32_t n_small, uint32_t n_large)
{
	unsigned n = zoc_reactor_count();

	if (g_npools)
		return -EBUSY;
	if (n == 0)
		n = 1;
	for (unsigned i = 0; i < n; i++) {
		char nm[32];

		snprintf(nm, sizeof(nm), "pkt%u", i);
		g_pools[i] = zoc_pktpool_create_ex(nm, i, n_small, n_large, g_giant);
		if (!g_pools[i]) {
			g_npools = i;
			zoc_pktpools_fini();
			return -ENOMEM;
		}
	}
	g_npools = n;
	return 0;
}

void zoc_pktpools_fini(void)
{
	for (unsigned i = 0; i < g_npools; i++) {
		zoc_pktpool_destroy(g_pools[i]);
		g_pools[i] = NULL;
	}
	g_npools = 0;
}

static inline int current_idx(void)
{
	struct zoc_reactor *r = zoc_reactor_current();

	return r ? (int)zoc_reactor_index(r) : -1;
}

struct zoc_pktpool *zoc_pktpool_local(void)
{
	int i = current_idx();

	if (!g_npools)
		return NULL;
	return g_pools[i >= 0 && (unsigned)i < g_npools ? (unsigned)i : 0];
}

struct zoc_pktpool *zoc_pktpool_of(unsigned reactor)
{
	return reactor < g_npools ? g_pools[reactor] : NULL;
}

static inline void pkt_init(struct zoc_pkt *p, struct zoc_pktpool *pp, uint32_t room, uint8_t size_flag,
			    uint32_t len)
{
	/* Metadata is one cache line: clear it whole. */
	memset(p, 0, offsetof(struct zoc_pkt, data));
	p->pool = pp;
	p->room = room;
	p->head = ZOC_PKT_HEADROOM;
	p->len = len;
	p->flags = size_flag;
}

struct zoc_pkt *zoc_pkt_alloc(struct zoc_pktpool *pp, uint32_t len)
{
	struct zoc_pkt *p = NULL;

	if (len <= ZOC_PKT_SMALL_ROOM - ZOC_PKT_HEADROOM && pp->small) {
		p = zoc_pool_get(pp->small);
		if (ZOC_UNLIKELY(!p) && reclaim(pp))
			p = zoc_pool_get(pp->small);
		if (ZOC_LIKELY(p)) {
			pkt_init(p, pp, ZOC_PKT_SMALL_ROOM, 0, len);
			return p;
		}
	}
	if (ZOC_UNLIKELY(len > ZOC_PKT_MAX_FRAME)) {
		if (len > ZOC_PKT_GSO_MAX_FRAME || !pp->giant)
			return NULL;
		p = zoc_pool_get(pp->giant);
		if (!p && reclaim(pp))
			p = zoc_pool_get(pp->giant);
		if (p)
			pkt_init(p, pp, ZOC_PKT_GIANT_ROOM, ZOC_PKT_F_GIANT, len);
		return p;
	}
	if (!pp->large)
		return NULL;
	p = zoc_pool_get(pp->large);
	if (!p && reclaim(pp))
		p = zoc_pool_get(pp->large);
	if (p)
		pkt_init(p, pp, ZOC_PKT_LARGE_ROOM, ZOC_PKT_F_LARGE, len);
	return p;
}

int zoc_pkt_alloc_bulk(struct zoc_pktpool *pp, struct zoc_pkt **pkts, unsigned n, uint32_t len)
{
	for (unsigned i = 0; i < n; i++) {
		pkts[i] = zoc_pkt_alloc(pp, len);
		if (!pkts[i]) {
			zoc_pkt_free_bulk(pkts, i);
			return -ENOBUFS;
		}
	}
	return 0;
}

static void push_remote(struct zoc_pktpool *pp, struct zoc_pkt *first, struct zoc_pkt *last)
{
	struct zoc_pkt *old = atomic_load_explicit(&pp->remote, memory_order_relaxed);

	do {
		last->next = old;
	} while (!atomic_compare_exchange_weak_explicit(&pp->remote, &old, first,
							 memory_order_release,
							 memory_order_relaxed));
}

void zoc_pkt_free(struct zoc_pkt *p)
{
	if (!p)
		return;
	if (ZOC_LIKELY((int)p->pool->owner == current_idx()))
		put_local(p->pool, p);
	else
		push_remote(p->pool, p, p);
}

void zoc_pkt_free_bulk(struct zoc_pkt **pkts, unsigned n)
{
	int me = current_idx();
	unsigned i = 0;

	while (i < n) {
		struct zoc_pkt *p = pkts[i++];
		struct zoc_pktpool *pp;
		struct zoc_pkt *last;

		if (!p)
			continue;
		pp = p->pool;
		if ((int)pp->owner == me) {
			put_local(pp, p);
			continue;
		}
		/* A run of packets of the same foreign pool: one CAS. */
		last = p;
		while (i < n && pkts[i] && pkts[i]->pool == pp) {
			last->next = pkts[i];
			last = pkts[i++];
		}
		push_remote(pp, p, last);
	}
}

struct zoc_pkt *zoc_pkt_clone(struct zoc_pktpool *pp, const struct zoc_pkt *src)
{
	struct zoc_pkt *p = zoc_pkt_alloc(pp, src->len);
	uint8_t flags;
	uint32_t room;

	if (!p)
		return NULL;
	flags = p->flags;
	room = p->room;
	memcpy(p, src, offsetof(struct zoc_pkt, data));
	p->pool = pp;
	p->room = room;
	p->flags = (uint8_t)((src->flags & ~ZOC_PKT_F_SIZE_MASK) | (flags & ZOC_PKT_F_SIZE_MASK));
	p->next = NULL;
	/* Keep the source's headroom when it fits (tags pushed later need it). */
	if ((uint64_t)src->head + src->len > room)
		p->head = ZOC_PKT_HEADROOM;
	memcpy(zoc_pkt_data(p), zoc_pkt_cdata(src), src->len);
	return p;
}

static inline uint32_t mix32(uint32_t h, uint32_t v)
{
	h ^= v;
	h *= 0x9e3779b1u;
	return h ^ (h >> 15);
}

static inline uint32_t rd32(const uint8_t *b)
{
	uint32_t v;

	memcpy(&v, b, 4);
	return v;
}

uint32_t zoc_pkt_flow_hash(struct zoc_pkt *p)
{
	const uint8_t *d = zoc_pkt_cdata(p);
	uint32_t len = p->len, off = 14, h = 0x811c9dc5u;
	uint16_t et;
	uint8_t proto = 0;
	bool l4 = false;

	if (len < 14)
		goto out;
	et = (uint16_t)(d[12] << 8 | d[13]);
	while ((et == 0x8100 || et == 0x88a8) && len >= off + 4) {
		et = (uint16_t)(d[off + 2] << 8 | d[off + 3]);
		off += 4;
	}
	if (et == 0x0800 && len >= off + 20 && (d[off] >> 4) == 4) {
		uint32_t ihl = (d[off] & 0xfu) * 4u;
		uint16_t frag = (uint16_t)((d[off + 6] & 0x3f) << 8 | d[off + 7]);

		if (ihl < 20 || len < off + ihl)
			goto macs;
		proto = d[off + 9];
		h = mix32(h, rd32(d + off + 12));
		h = mix32(h, rd32(d + off + 16));
		off += ihl;
		l4 = frag == 0;
	} else if (et == 0x86dd && len >= off + 40) {
		proto = d[off + 6];
		for (unsigned i = 8; i < 40; i += 4)
			h = mix32(h, rd32(d + off + i));
		off += 40;
		l4 = true;
	} else {
		goto macs;
	}
	h = mix32(h, proto);
	if (l4 && (proto == 6 || proto == 17) && len >= off + 4)
		h = mix32(h, rd32(d + off));
	goto out;
macs:
	h = mix32(h, rd32(d));
	h = mix32(h, rd32(d + 4));
	h = mix32(h, rd32(d + 8));
out:
	if (!h)
		h = 1;
	p->hash = h;
	return h;
}
