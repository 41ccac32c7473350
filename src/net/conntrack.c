/* SPDX-License-Identifier: MIT */
#include "net/conntrack.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>

#include "core/log.h"
#include "core/util.h"
#include "net/secgroup.h"

#define TICK_SHIFT 20 /* 1 tick = 2^20 ns */
#define CHUNK_SHIFT 16
#define CHUNK_SIZE (1u << CHUNK_SHIFT)
#define WAYS 8
#define SLOT_DIR 0x80000000u
#define SLOT_IDX 0x7fffffffu
#define MAX_PATH 48
#define NO_IDX 0xffffffffu
#define MIN_WIN 66000u

/* Entry flags. */
#define EF_ORIG_INGRESS 0x01 /* the first packet went toward the VM */
#define EF_REPLY_SEEN 0x02
#define EF_ASSURED 0x04
#define EF_FIN0 0x08
#define EF_FIN1 0x10
#define EF_FACK0 0x20 /* orig's FIN acked by reply */
#define EF_FACK1 0x40

/* The original direction's tuple; the reply tuple is its swap. */
struct tuple {
	uint8_t a[16], b[16];
	uint16_t pa, pb;
	uint8_t proto, family;
	uint16_t zone;
};
_Static_assert(sizeof(struct tuple) == 40, "tuple is 40 bytes");

/* One session, both directions. */
struct entry {
	struct tuple t;      /* 40 */
	uint32_t expires;    /* ticks; next free index + 1 when free */
	uint8_t state;       /* enum zoc_ct_state, 0 = free */
	uint8_t flags;       /* EF_* */
	uint8_t wscale;      /* low nibble orig, high reply; 15 = not offered */
	uint8_t gen;         /* bumped when the entry is freed (flow cache) */
	uint32_t end[2];     /* TCP: highest seq + len sent per direction */
	uint32_t maxend[2];  /* TCP: highest ack + window the peer allowed */
};
_Static_assert(sizeof(struct entry) == 64, "a session is one cache line");

struct bucket {
	uint16_t tag[WAYS];  /* 0 = empty */
	uint32_t slot[WAYS]; /* entry index | SLOT_DIR for the reply tuple */
	uint32_t pad_[4];
} __attribute__((aligned(ZOC_CACHELINE)));
_Static_assert(sizeof(struct bucket) == 64, "bucket is one cache line");

/* Flow cache: a direct-mapped exact-match cache of the tuple hash -> slot,
 * checked against the entry's generation and tuple (so a freed or reused
 * entry, or a hash collision, is a miss). */
struct fc_ent {
	uint64_t h;
	uint32_t slot; /* NO_IDX = empty */
	uint8_t gen;
	uint8_t pad_[3];
};

struct index {
	struct bucket *b;
	uint32_t mask;
	size_t bytes;
};

struct zoc_ct {
	struct index cur, old;
	bool migrating;
	uint32_t mig_cursor;
	struct entry **chunks;
	uint32_t n_chunks;
	uint32_t hwm;       /* entries ever touched */
	uint32_t free_head; /* index + 1 of the first free entry, 0 none */
	uint32_t capacity, max_capacity, used;
	uint32_t sweep_cursor, evict_cursor;
	uint32_t rnd;
	bool auto_grow, frag_pass;
	uint16_t max_ports;
	uint32_t *port_count, *port_cap;
	uint32_t to_tcp[ZOC_CT_S_COUNT];
	uint32_t to_udp[2], to_icmp, to_other[2];
	struct fc_ent *fc;
	uint32_t fc_mask;
	struct zoc_ct_stats st;
};

static const struct zoc_ct_timeouts g_default_to = {
	.tcp = {
		[ZOC_CT_S_SYN_SENT] = 120,
		[ZOC_CT_S_SYN_RECV] = 60,
		[ZOC_CT_S_ESTABLISHED] = 432000,
		[ZOC_CT_S_FIN_WAIT] = 120,
		[ZOC_CT_S_CLOSE_WAIT] = 60,
		[ZOC_CT_S_LAST_ACK] = 30,
		[ZOC_CT_S_TIME_WAIT] = 120,
		[ZOC_CT_S_CLOSE] = 10,
	},
	.udp_unreplied = 30,
	.udp_replied = 180,
	.icmp = 30,
	.other_unreplied = 30,
	.other_replied = 600,
};

static const char *const g_state_names[ZOC_CT_S_COUNT] = {
	"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
	"LAST_ACK", "TIME_WAIT", "CLOSE", "UNREPLIED", "REPLIED",
};

static const char *const g_drop_names[ZOC_CT_N_DROPS] = {
	"secgroup", "invalid", "no_session", "direction", "table_full", "port_cap", "fragment",
};

const char *zoc_ct_state_name(enum zoc_ct_state s)
{
	return (unsigned)s < ZOC_CT_S_COUNT ? g_state_names[s] : "?";
}

int zoc_ct_state_parse(const char *name)
{
	for (int i = 1; i < ZOC_CT_S_COUNT; i++)
		if (!strcasecmp(name, g_state_names[i]))
			return i;
	return -1;
}

const char *zoc_ct_verdict_name(enum zoc_ct_verdict v)
{
	static const char *const acc[] = {"new", "established", "related", "untracked"};

	if (v >= ZOC_CT_DROP && v < ZOC_CT_DROP_END)
		return g_drop_names[v - ZOC_CT_DROP];
	if ((unsigned)v < ZOC_ARRAY_SIZE(acc))
		return acc[v];
	return "?";
}

unsigned zoc_ct_entry_size(void)
{
	return sizeof(struct entry);
}

/* ---- hashing ---- */

static inline uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v;
	h *= 0x9e3779b97f4a7c15ull;
	return h ^ (h >> 31);
}

static inline uint64_t ld64(const void *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static inline uint64_t thash(const struct tuple *t)
{
	const uint8_t *p = (const uint8_t *)t;
	uint64_t h = 0x243f6a8885a308d3ull;

	h = mix(h, ld64(p));
	h = mix(h, ld64(p + 8) + 0x452821e638d01377ull);
	h = mix(h, ld64(p + 16));
	h = mix(h, ld64(p + 24) + 0xbe5466cf34e90c6cull);
	h = mix(h, ld64(p + 32));
	return h;
}

static inline void tswap(struct tuple *d, const struct tuple *s)
{
	memcpy(d->a, s->b, 16);
	memcpy(d->b, s->a, 16);
	d->pa = s->pb;
	d->pb = s->pa;
	d->proto = s->proto;
	d->family = s->family;
	d->zone = s->zone;
}

static inline uint16_t tag_of(uint64_t h)
{
	uint16_t t = (uint16_t)(h >> 48);

	return t ? t : 1;
}

static inline uint32_t alt_of(uint32_t b, uint16_t tag, uint32_t mask)
{
	return (b ^ (tag * 0x5bd1e995u)) & mask;
}

/* ---- arena ---- */

static inline struct entry *E(const struct zoc_ct *ct, uint32_t idx)
{
	return &ct->chunks[idx >> CHUNK_SHIFT][idx & (CHUNK_SIZE - 1)];
}

static void *map_zero(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static uint32_t ent_alloc(struct zoc_ct *ct)
{
	uint32_t idx;

	if (ct->used >= ct->capacity)
		return NO_IDX;
	if (ct->free_head) {
		idx = ct->free_head - 1;
		ct->free_head = E(ct, idx)->expires;
		return idx;
	}
	idx = ct->hwm;
	if ((idx >> CHUNK_SHIFT) >= ct->n_chunks)
		return NO_IDX;
	if (!ct->chunks[idx >> CHUNK_SHIFT]) {
		ct->chunks[idx >> CHUNK_SHIFT] = map_zero((size_t)CHUNK_SIZE * sizeof(struct entry));
		if (!ct->chunks[idx >> CHUNK_SHIFT])
			return NO_IDX;
	}
	ct->hwm++;
	return idx;
}

/* ---- index ---- */

static uint32_t buckets_for(uint32_t capacity)
{
	uint64_t slots = (uint64_t)capacity * 2 * 10 / 9 + WAYS;
	uint32_t nb = 1;

	while ((uint64_t)nb * WAYS < slots)
		nb <<= 1;
	return nb;
}

static int index_init(struct index *ix, uint32_t nb)
{
	ix->bytes = (size_t)nb * sizeof(struct bucket);
	ix->b = map_zero(ix->bytes);
	if (!ix->b)
		return -ENOMEM;
	ix->mask = nb - 1;
	return 0;
}

static void index_free(struct index *ix)
{
	if (ix->b)
		munmap(ix->b, ix->bytes);
	memset(ix, 0, sizeof(*ix));
}

static inline int bucket_free_way(const struct bucket *b)
{
	for (int w = 0; w < WAYS; w++)
		if (!b->tag[w])
			return w;
	return -1;
}

static bool path_has(const uint32_t *pb, const uint8_t *pw, unsigned n, uint32_t b, unsigned w)
{
	for (unsigned i = 0; i < n; i++)
		if (pb[i] == b && pw[i] == w)
			return true;
	return false;
}

/* Insert (tag, slot) with hash h; a bounded cuckoo walk when both buckets
 * are full. 0 or -ENOSPC. */
static int index_insert(struct zoc_ct *ct, struct index *ix, uint64_t h, uint32_t slot)
{
	uint16_t tag = tag_of(h);
	uint32_t b1 = (uint32_t)h & ix->mask, b2 = alt_of(b1, tag, ix->mask);
	struct bucket *B1 = &ix->b[b1], *B2 = &ix->b[b2];
	int w1 = bucket_free_way(B1), w2 = bucket_free_way(B2);
	uint32_t pb[MAX_PATH];
	uint8_t pw[MAX_PATH];
	unsigned n = 0;
	uint32_t cb;

	if (w1 >= 0 || w2 >= 0) {
		struct bucket *B = w1 >= 0 ? B1 : B2;
		int w = w1 >= 0 ? w1 : w2;

		B->tag[w] = tag;
		B->slot[w] = slot;
		return 0;
	}
	/* Random walk, recorded, no slot visited twice; then shift back. */
	cb = (ct->rnd & 1) ? b2 : b1;
	while (n < MAX_PATH) {
		unsigned w;
		uint32_t nb;
		int fw;

		ct->rnd = ct->rnd * 1103515245u + 12345u;
		w = (ct->rnd >> 16) % WAYS;
		for (unsigned k = 0; k < WAYS && path_has(pb, pw, n, cb, w); k++)
			w = (w + 1) % WAYS;
		if (path_has(pb, pw, n, cb, w))
			return -ENOSPC;
		pb[n] = cb;
		pw[n] = (uint8_t)w;
		n++;
		nb = alt_of(cb, ix->b[cb].tag[w], ix->mask);
		fw = bucket_free_way(&ix->b[nb]);
		if (fw >= 0) {
			uint32_t fb = nb;
			unsigned fway = (unsigned)fw;

			for (unsigned i = n; i-- > 0;) {
				ix->b[fb].tag[fway] = ix->b[pb[i]].tag[pw[i]];
				ix->b[fb].slot[fway] = ix->b[pb[i]].slot[pw[i]];
				fb = pb[i];
				fway = pw[i];
			}
			ix->b[fb].tag[fway] = tag;
			ix->b[fb].slot[fway] = slot;
			return 0;
		}
		cb = nb;
	}
	return -ENOSPC;
}

static bool index_remove(struct index *ix, uint64_t h, uint32_t slot)
{
	uint16_t tag = tag_of(h);
	uint32_t b1 = (uint32_t)h & ix->mask, b2 = alt_of(b1, tag, ix->mask);

	for (int i = 0; i < 2; i++) {
		struct bucket *B = &ix->b[i ? b2 : b1];

		for (int w = 0; w < WAYS; w++)
			if (B->tag[w] == tag && B->slot[w] == slot) {
				B->tag[w] = 0;
				return true;
			}
	}
	return false;
}

static inline bool tmatch(const struct entry *e, const struct tuple *q)
{
	return !memcmp(&e->t, q, sizeof(*q));
}

/* Finds q (hash h; qs is q swapped). Returns the slot (index | dir) or
 * NO_IDX. */
static uint32_t index_find(const struct zoc_ct *ct, const struct index *ix, uint64_t h,
			   const struct tuple *q, const struct tuple *qs)
{
	uint16_t tag = tag_of(h);
	uint32_t b1 = (uint32_t)h & ix->mask, b2 = alt_of(b1, tag, ix->mask);

	for (int i = 0; i < 2; i++) {
		const struct bucket *B = &ix->b[i ? b2 : b1];

		for (int w = 0; w < WAYS; w++) {
			uint32_t s;

			if (B->tag[w] != tag)
				continue;
			s = B->slot[w];
			if (tmatch(E(ct, s & SLOT_IDX), (s & SLOT_DIR) ? qs : q))
				return s;
		}
		if (b2 == b1)
			break;
	}
	return NO_IDX;
}

static uint32_t lookup(const struct zoc_ct *ct, uint64_t h, const struct tuple *q,
		       const struct tuple *qs)
{
	uint32_t s = index_find(ct, &ct->cur, h, q, qs);

	if (s == NO_IDX && ct->migrating)
		s = index_find(ct, &ct->old, h, q, qs);
	return s;
}

/* Moves one old bucket into the new index. */
static bool migrate_one(struct zoc_ct *ct)
{
	struct bucket *B;

	if (!ct->migrating)
		return false;
	B = &ct->old.b[ct->mig_cursor];
	for (int w = 0; w < WAYS; w++) {
		uint32_t s;
		struct entry *e;
		struct tuple sw;
		uint64_t h;

		if (!B->tag[w])
			continue;
		s = B->slot[w];
		e = E(ct, s & SLOT_IDX);
		if (s & SLOT_DIR) {
			tswap(&sw, &e->t);
			h = thash(&sw);
		} else {
			h = thash(&e->t);
		}
		if (index_insert(ct, &ct->cur, h, s)) {
			ZOC_WARN_RL("conntrack: index migration stalled (new index full)");
			return false;
		}
		B->tag[w] = 0;
	}
	if (++ct->mig_cursor > ct->old.mask) {
		index_free(&ct->old);
		ct->migrating = false;
		ct->st.migrating = 0;
	}
	return true;
}

/* ---- sessions ---- */

static inline bool expired(const struct entry *e, uint32_t now_t)
{
	return (int32_t)(now_t - e->expires) >= 0;
}

static inline uint32_t secs_to_ticks(uint32_t s)
{
	uint64_t t = (uint64_t)s * 1000000000ull >> TICK_SHIFT;

	return t > 0x3fffffffu ? 0x3fffffffu : (uint32_t)t + 1;
}

static void set_state(struct zoc_ct *ct, struct entry *e, uint8_t s)
{
	ct->st.per_state[e->state]--;
	ct->st.per_state[s]++;
	e->state = s;
}

static void set_timer(struct zoc_ct *ct, struct entry *e, uint32_t now_t)
{
	uint32_t to;

	switch (e->t.proto) {
	case ZOC_IPPROTO_TCP:
		to = ct->to_tcp[e->state];
		break;
	case ZOC_IPPROTO_UDP:
		to = ct->to_udp[e->state == ZOC_CT_S_REPLIED];
		break;
	case ZOC_IPPROTO_ICMP:
	case ZOC_IPPROTO_ICMPV6:
		to = ct->to_icmp;
		break;
	default:
		to = ct->to_other[e->state == ZOC_CT_S_REPLIED];
		break;
	}
	e->expires = now_t + to;
}

static void ent_delete(struct zoc_ct *ct, uint32_t idx)
{
	struct entry *e = E(ct, idx);
	struct tuple sw;
	uint64_t h0 = thash(&e->t), h1;

	tswap(&sw, &e->t);
	h1 = thash(&sw);
	if (!index_remove(&ct->cur, h0, idx) && ct->migrating)
		index_remove(&ct->old, h0, idx);
	if (!index_remove(&ct->cur, h1, idx | SLOT_DIR) && ct->migrating)
		index_remove(&ct->old, h1, idx | SLOT_DIR);
	ct->st.per_state[e->state]--;
	if (e->t.zone < ct->max_ports && ct->port_count[e->t.zone])
		ct->port_count[e->t.zone]--;
	e->state = ZOC_CT_S_NONE;
	e->gen++;
	e->expires = ct->free_head;
	ct->free_head = idx + 1;
	ct->used--;
	ct->st.deleted++;
}

/* Evictable under pressure: embryonic (half-open TCP, unreplied UDP /
 * other) and closing sessions whose connection is over (TIME_WAIT,
 * CLOSE). */
static bool embryonic(const struct entry *e)
{
	return e->state == ZOC_CT_S_SYN_SENT || e->state == ZOC_CT_S_SYN_RECV ||
	       e->state == ZOC_CT_S_TIME_WAIT || e->state == ZOC_CT_S_CLOSE ||
	       e->state == ZOC_CT_S_UNREPLIED;
}

/* Under pressure: evict an embryonic session (the key's own buckets first,
 * then a bounded scan of the arena). */
static bool early_drop(struct zoc_ct *ct, uint64_t h, uint32_t now_t)
{
	uint32_t b1 = (uint32_t)h & ct->cur.mask;
	uint32_t b2 = alt_of(b1, tag_of(h), ct->cur.mask);
	uint32_t victim = NO_IDX;

	for (int i = 0; i < 2 && victim == NO_IDX; i++) {
		const struct bucket *B = &ct->cur.b[i ? b2 : b1];

		for (int w = 0; w < WAYS; w++)
			if (B->tag[w] && embryonic(E(ct, B->slot[w] & SLOT_IDX))) {
				victim = B->slot[w] & SLOT_IDX;
				break;
			}
	}
	for (unsigned n = 0; n < 64 && victim == NO_IDX && ct->hwm; n++) {
		uint32_t i = ct->evict_cursor++ % ct->hwm;
		struct entry *e = E(ct, i);

		if (e->state && (embryonic(e) || expired(e, now_t)))
			victim = i;
	}
	if (victim == NO_IDX)
		return false;
	ent_delete(ct, victim);
	ct->st.early_drops++;
	return true;
}

/* Index space for a new session: frees expired sessions in the key's
 * buckets (lazy aging). */
static void reclaim_buckets(struct zoc_ct *ct, uint64_t h, uint32_t now_t)
{
	uint32_t b1 = (uint32_t)h & ct->cur.mask;
	uint32_t b2 = alt_of(b1, tag_of(h), ct->cur.mask);

	for (int i = 0; i < 2; i++) {
		struct bucket *B = &ct->cur.b[i ? b2 : b1];

		for (int w = 0; w < WAYS; w++)
			if (B->tag[w] && expired(E(ct, B->slot[w] & SLOT_IDX), now_t)) {
				ent_delete(ct, B->slot[w] & SLOT_IDX);
				ct->st.expired++;
			}
	}
}

static int start_grow(struct zoc_ct *ct, uint32_t new_cap)
{
	uint32_t nb = buckets_for(new_cap);

	if (nb > ct->cur.mask + 1) {
		struct index nix;

		if (ct->migrating)
			return -EBUSY;
		if (index_init(&nix, nb))
			return -ENOMEM;
		ct->old = ct->cur;
		ct->cur = nix;
		ct->migrating = true;
		ct->mig_cursor = 0;
		ct->st.migrating = 1;
	}
	ct->capacity = new_cap;
	ct->st.growths++;
	return 0;
}

int zoc_ct_grow(struct zoc_ct *ct, uint32_t new_capacity)
{
	if (new_capacity <= ct->capacity)
		return 0;
	if (new_capacity > ct->max_capacity)
		return -EINVAL;
	return start_grow(ct, new_capacity);
}

static uint32_t new_session(struct zoc_ct *ct, const struct tuple *q, uint64_t h,
			    uint32_t now_t, enum zoc_ct_verdict *why)
{
	struct tuple sw;
	uint64_t h1;
	uint32_t idx;
	struct entry *e;
	uint8_t gen;

	if (q->zone < ct->max_ports && ct->port_cap[q->zone] &&
	    ct->port_count[q->zone] >= ct->port_cap[q->zone]) {
		*why = ZOC_CT_DROP_PORT_CAP;
		return NO_IDX;
	}
	if (ct->used >= ct->capacity && ct->auto_grow && ct->capacity < ct->max_capacity) {
		uint64_t nc = (uint64_t)ct->capacity * 2;

		/* Filled again before the last migration ended: finish it
		 * now (rare: migration moves two buckets per packet). */
		while (ct->migrating && migrate_one(ct))
			;
		start_grow(ct, nc > ct->max_capacity ? ct->max_capacity : (uint32_t)nc);
	}
	if (ct->used >= ct->capacity && !early_drop(ct, h, now_t)) {
		*why = ZOC_CT_DROP_FULL;
		return NO_IDX;
	}
	idx = ent_alloc(ct);
	if (idx == NO_IDX) {
		*why = ZOC_CT_DROP_FULL;
		return NO_IDX;
	}
	e = E(ct, idx);
	gen = e->gen;
	memset(e, 0, sizeof(*e));
	e->gen = gen;
	e->t = *q;
	tswap(&sw, q);
	h1 = thash(&sw);
	if (index_insert(ct, &ct->cur, h, idx)) {
		reclaim_buckets(ct, h, now_t);
		if (index_insert(ct, &ct->cur, h, idx) &&
		    (!early_drop(ct, h, now_t) || index_insert(ct, &ct->cur, h, idx)))
			goto fail;
	}
	if (index_insert(ct, &ct->cur, h1, idx | SLOT_DIR)) {
		reclaim_buckets(ct, h1, now_t);
		if (index_insert(ct, &ct->cur, h1, idx | SLOT_DIR) &&
		    (!early_drop(ct, h1, now_t) || index_insert(ct, &ct->cur, h1, idx | SLOT_DIR))) {
			index_remove(&ct->cur, h, idx);
			goto fail;
		}
	}
	ct->used++;
	ct->st.created++;
	ct->st.per_state[ZOC_CT_S_NONE]++; /* set_state moves it */
	if (q->zone < ct->max_ports)
		ct->port_count[q->zone]++;
	return idx;
fail:
	e->state = ZOC_CT_S_NONE;
	e->gen++;
	e->expires = ct->free_head;
	ct->free_head = idx + 1;
	*why = ZOC_CT_DROP_FULL;
	if (ct->auto_grow && ct->capacity < ct->max_capacity && !ct->migrating) {
		uint64_t nc = (uint64_t)ct->capacity * 2;

		start_grow(ct, nc > ct->max_capacity ? ct->max_capacity : (uint32_t)nc);
	}
	return NO_IDX;
}

/* ---- TCP ---- */

static inline bool before(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

static inline bool after(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) > 0;
}

static inline unsigned ws_get(const struct entry *e, int d)
{
	return d ? e->wscale >> 4 : e->wscale & 0xf;
}

static void tcp_init_orig(struct entry *e, const struct zoc_flowkey *k)
{
	e->end[0] = k->seq + 1 + k->l4_len;
	e->maxend[0] = e->end[0];
	e->end[1] = 0;
	e->maxend[1] = k->win; /* the SYN's window until the reply's ISN is known */
	e->wscale = (uint8_t)(0xf0 | ((k->flags & ZOC_FLOWKEY_F_WSCALE) ? k->wscale : 0xf));
	e->flags &= EF_ORIG_INGRESS;
}

/* The reply's SYN (with or without ACK): its ISN and window scale. */
static void tcp_init_reply(struct entry *e, const struct zoc_flowkey *k)
{
	unsigned ws0 = e->wscale & 0xf, ws1 = (k->flags & ZOC_FLOWKEY_F_WSCALE) ? k->wscale : 0xf;

	if (ws0 == 0xf || ws1 == 0xf)
		ws0 = ws1 = 0;
	e->wscale = (uint8_t)(ws1 << 4 | ws0);
	e->end[1] = k->seq + 1 + k->l4_len;
	e->maxend[1] = e->end[1] + (e->maxend[1] ? e->maxend[1] : 1);
	e->maxend[0] = (k->tcp_flags & ZOC_TCP_ACK ? k->ack : e->end[0]) + (k->win ? k->win : 1);
	e->flags |= EF_REPLY_SEEN;
}

static inline uint32_t win_of(const struct entry *e, int d)
{
	uint32_t w = e->maxend[d] - e->end[d];

	return (int32_t)w > (int32_t)MIN_WIN ? w : MIN_WIN;
}

/* d: 0 orig, 1 reply. Returns a verdict; *reopen asks the caller to
 * replace the session with a new one (SYN after TIME_WAIT / CLOSE). */
static enum zoc_ct_verdict tcp_track(struct zoc_ct *ct, struct entry *e, int d,
				     const struct zoc_flowkey *k, uint32_t now_t, bool *reopen)
{
	uint8_t fl = k->tcp_flags, st = e->state;
	int r = !d;

	if ((fl & (ZOC_TCP_SYN | ZOC_TCP_FIN)) == (ZOC_TCP_SYN | ZOC_TCP_FIN) ||
	    (fl & (ZOC_TCP_SYN | ZOC_TCP_RST)) == (ZOC_TCP_SYN | ZOC_TCP_RST))
		return ZOC_CT_DROP_INVALID;
	if (fl & ZOC_TCP_SYN) {
		if (!(fl & ZOC_TCP_ACK)) {
			if (d == 0) {
				if (st == ZOC_CT_S_TIME_WAIT || st == ZOC_CT_S_CLOSE) {
					*reopen = true;
					return ZOC_CT_NEW;
				}
				if (st != ZOC_CT_S_SYN_SENT)
					return ZOC_CT_DROP_INVALID;
				if (k->seq + 1 + k->l4_len != e->end[0])
					tcp_init_orig(e, k); /* new ISN: the client restarted */
			} else {
				/* Simultaneous open. */
				if (st != ZOC_CT_S_SYN_SENT)
					return ZOC_CT_DROP_INVALID;
				tcp_init_reply(e, k);
				set_state(ct, e, ZOC_CT_S_SYN_RECV);
			}
		} else {
			if (d != 1 || (st != ZOC_CT_S_SYN_SENT && st != ZOC_CT_S_SYN_RECV))
				return ZOC_CT_DROP_INVALID;
			if (k->ack != e->end[0])
				return ZOC_CT_DROP_INVALID; /* does not ack our SYN: blind */
			if (e->flags & EF_REPLY_SEEN) {
				if (k->seq + 1 + k->l4_len != e->end[1])
					return ZOC_CT_DROP_INVALID;
			} else {
				tcp_init_reply(e, k);
			}
			if (st == ZOC_CT_S_SYN_SENT)
				set_state(ct, e, ZOC_CT_S_SYN_RECV);
		}
		set_timer(ct, e, now_t);
		return ZOC_CT_EST;
	}
	if (fl & ZOC_TCP_RST) {
		if (!(e->flags & EF_REPLY_SEEN)) {
			/* Refused: only the reply, acking exactly our SYN. */
			if (d != 1 || !(fl & ZOC_TCP_ACK) || k->ack != e->end[0])
				return ZOC_CT_DROP_INVALID;
		} else if (after(k->seq, e->maxend[d]) || before(k->seq, e->end[d] - win_of(e, d))) {
			return ZOC_CT_DROP_INVALID;
		}
		if (st != ZOC_CT_S_CLOSE)
			set_state(ct, e, ZOC_CT_S_CLOSE);
		set_timer(ct, e, now_t);
		return ZOC_CT_EST;
	}
	if (!(fl & ZOC_TCP_ACK) || !(e->flags & EF_REPLY_SEEN))
		return ZOC_CT_DROP_INVALID;
	{
		uint32_t s = k->seq, a = k->ack;
		uint32_t endseg = s + k->l4_len + ((fl & ZOC_TCP_FIN) ? 1 : 0);
		uint32_t w;

		if (after(s, e->maxend[d]) || before(endseg, e->end[d] - win_of(e, d)))
			return ZOC_CT_DROP_INVALID;
		if (after(a, e->end[r]) || before(a, e->end[r] - win_of(e, r)))
			return ZOC_CT_DROP_INVALID;
		if (after(endseg, e->end[d]))
			e->end[d] = endseg;
		w = (uint32_t)k->win << ws_get(e, d);
		if (after(a + w, e->maxend[r]))
			e->maxend[r] = a + w;
		if (fl & ZOC_TCP_FIN)
			e->flags |= d ? EF_FIN1 : EF_FIN0;
		if ((e->flags & (r ? EF_FIN1 : EF_FIN0)) && !before(a, e->end[r]))
			e->flags |= r ? EF_FACK1 : EF_FACK0;
		if (st == ZOC_CT_S_SYN_RECV && d == 0 && a == e->end[1]) {
			e->flags |= EF_ASSURED;
			st = ZOC_CT_S_ESTABLISHED;
		}
		if ((e->flags & (EF_FIN0 | EF_FIN1)) && st >= ZOC_CT_S_SYN_RECV &&
		    st != ZOC_CT_S_CLOSE) {
			uint8_t f = e->flags;

			if ((f & EF_FACK0) && (f & EF_FACK1))
				st = ZOC_CT_S_TIME_WAIT;
			else if ((f & EF_FIN0) && (f & EF_FIN1))
				st = ZOC_CT_S_LAST_ACK;
			else if ((f & EF_FACK0) || (f & EF_FACK1))
				st = ZOC_CT_S_CLOSE_WAIT;
			else
				st = ZOC_CT_S_FIN_WAIT;
		}
		if (st != e->state)
			set_state(ct, e, st);
	}
	set_timer(ct, e, now_t);
	return ZOC_CT_EST;
}

/* ---- the per-packet entry point ---- */

static inline void make_tuple(struct tuple *q, const struct zoc_flowkey *k, uint16_t zone)
{
	memcpy(q->a, k->src, 16);
	memcpy(q->b, k->dst, 16);
	q->pa = k->sport;
	q->pb = k->dport;
	q->proto = k->proto;
	q->family = k->family;
	q->zone = zone;
}

/* Two-way sets (two entries of 16 B, a 32 B pair): the set from the hash,
 * the way that already holds h, else an empty one, else one picked by
 * another bit of the hash (two flows that share a set do not evict each
 * other on every packet). */
static inline struct fc_ent *fc_set(const struct zoc_ct *ct, uint64_t h)
{
	return &ct->fc[(uint32_t)(h >> 24) & ct->fc_mask & ~1u];
}

static inline struct fc_ent *fc_victim(struct fc_ent *set, uint64_t h)
{
	if (set[0].h == h || set[0].slot == NO_IDX)
		return &set[0];
	if (set[1].h == h || set[1].slot == NO_IDX)
		return &set[1];
	return &set[(h >> 40) & 1];
}

static inline void fc_fill(struct zoc_ct *ct, uint64_t h, uint32_t s, const struct entry *e)
{
	struct fc_ent *c;

	if (!ct->fc)
		return;
	c = fc_victim(fc_set(ct, h), h);
	c->h = h;
	c->slot = s;
	c->gen = e->gen;
}

/* The flow cache in front of the index: a hit (same hash, entry live with
 * the generation it had when cached, same tuple) skips the bucket reads. */
static inline uint32_t fc_lookup(struct zoc_ct *ct, uint64_t h, const struct tuple *q,
				 const struct tuple *qs)
{
	struct fc_ent *set;
	uint32_t s;

	if (!ct->fc)
		return lookup(ct, h, q, qs);
	set = fc_set(ct, h);
	for (int w = 0; w < 2; w++) {
		struct fc_ent *c = &set[w];
		const struct entry *e;

		if (c->h != h || c->slot == NO_IDX)
			continue;
		e = E(ct, c->slot & SLOT_IDX);
		if (e->state && e->gen == c->gen && tmatch(e, (c->slot & SLOT_DIR) ? qs : q)) {
			ct->st.fc_hits++;
			return c->slot;
		}
	}
	ct->st.fc_misses++;
	s = lookup(ct, h, q, qs);
	if (s != NO_IDX)
		fc_fill(ct, h, s, E(ct, s & SLOT_IDX));
	return s;
}

static inline bool icmp_echo_req(const struct zoc_flowkey *k)
{
	return (k->proto == ZOC_IPPROTO_ICMP && k->icmp_type == 8) ||
	       (k->proto == ZOC_IPPROTO_ICMPV6 && k->icmp_type == 128);
}

static inline bool icmp_echo_rep(const struct zoc_flowkey *k)
{
	return (k->proto == ZOC_IPPROTO_ICMP && k->icmp_type == 0) ||
	       (k->proto == ZOC_IPPROTO_ICMPV6 && k->icmp_type == 129);
}

static enum zoc_ct_verdict process_one(struct zoc_ct *ct, const struct zoc_sg_ruleset *rs,
				       uint16_t zone, enum zoc_ct_dir dir,
				       const struct zoc_flowkey *k, const struct tuple *q, uint64_t h,
				       uint32_t now_t)
{
	struct tuple qs;
	uint32_t s, idx;
	struct entry *e = NULL;
	int d = 0;
	bool is_icmp = k->proto == ZOC_IPPROTO_ICMP || k->proto == ZOC_IPPROTO_ICMPV6;
	enum zoc_ct_verdict why;

	if (k->flags & ZOC_FLOWKEY_F_LATER_FRAG)
		return ct->frag_pass ? ZOC_CT_UNTRACKED : ZOC_CT_DROP_FRAG;
	if (ct->migrating && migrate_one(ct))
		migrate_one(ct);
	tswap(&qs, q);
	s = fc_lookup(ct, h, q, &qs);
	if (s != NO_IDX) {
		e = E(ct, s & SLOT_IDX);
		d = (s & SLOT_DIR) ? 1 : 0;
		if (expired(e, now_t)) {
			ent_delete(ct, s & SLOT_IDX);
			ct->st.expired++;
			e = NULL;
		}
	}
	if (k->flags & ZOC_FLOWKEY_F_RELATED) {
		/* An ICMP error quoting a packet of direction d: it travels the
		 * other way. */
		if (!e)
			return ZOC_CT_DROP_NO_SESSION;
		if ((unsigned)dir != (unsigned)(((e->flags & EF_ORIG_INGRESS) ? 1 : 0) ^ d ^ 1))
			return ZOC_CT_DROP_DIRECTION;
		return ZOC_CT_RELATED;
	}
	if (e) {
		bool reopen = false;
		enum zoc_ct_verdict v;

		if ((unsigned)dir != (unsigned)(((e->flags & EF_ORIG_INGRESS) ? 1 : 0) ^ d))
			return ZOC_CT_DROP_DIRECTION;
		if (k->proto == ZOC_IPPROTO_TCP) {
			v = tcp_track(ct, e, d, k, now_t, &reopen);
			if (!reopen)
				return v;
			ent_delete(ct, s & SLOT_IDX);
			ct->st.reopened++;
			e = NULL;
		} else {
			if (is_icmp && (d ? !icmp_echo_rep(k) : !icmp_echo_req(k)))
				return ZOC_CT_DROP_INVALID;
			if (d && e->state == ZOC_CT_S_UNREPLIED) {
				set_state(ct, e, ZOC_CT_S_REPLIED);
				e->flags |= EF_REPLY_SEEN | EF_ASSURED;
			}
			set_timer(ct, e, now_t);
			return ZOC_CT_EST;
		}
	}
	/* No session: may this packet open one? */
	if (k->proto == ZOC_IPPROTO_TCP) {
		if ((k->tcp_flags & (ZOC_TCP_SYN | ZOC_TCP_ACK | ZOC_TCP_RST | ZOC_TCP_FIN)) !=
		    ZOC_TCP_SYN)
			return ZOC_CT_DROP_NO_SESSION;
	} else if (is_icmp && !icmp_echo_req(k)) {
		if (icmp_echo_rep(k))
			return ZOC_CT_DROP_NO_SESSION;
		/* Neighbour discovery passes as OpenStack's implicit rules do. */
		if (k->proto == ZOC_IPPROTO_ICMPV6 && k->icmp_type >= 133 && k->icmp_type <= 137)
			return ZOC_CT_UNTRACKED;
		if (rs && !zoc_sg_allows(rs, dir, k))
			return ZOC_CT_DROP_SG;
		return ZOC_CT_UNTRACKED;
	}
	if (rs && !zoc_sg_allows(rs, dir, k))
		return ZOC_CT_DROP_SG;
	idx = new_session(ct, q, h, now_t, &why);
	if (idx == NO_IDX)
		return why;
	e = E(ct, idx);
	fc_fill(ct, h, idx, e);
	if (dir == ZOC_CT_INGRESS)
		e->flags |= EF_ORIG_INGRESS;
	if (k->proto == ZOC_IPPROTO_TCP) {
		tcp_init_orig(e, k);
		set_state(ct, e, ZOC_CT_S_SYN_SENT);
	} else {
		set_state(ct, e, ZOC_CT_S_UNREPLIED);
	}
	set_timer(ct, e, now_t);
	return ZOC_CT_NEW;
}

static inline void count(struct zoc_ct *ct, enum zoc_ct_verdict v)
{
	if (v >= ZOC_CT_DROP && v < ZOC_CT_DROP_END)
		ct->st.drops[v - ZOC_CT_DROP]++;
}

enum zoc_ct_verdict zoc_ct_process(struct zoc_ct *ct, const struct zoc_sg_ruleset *rs,
				   uint16_t zone, enum zoc_ct_dir dir,
				   const struct zoc_flowkey *k, uint64_t now)
{
	struct tuple q;
	enum zoc_ct_verdict v;

	make_tuple(&q, k, zone);
	v = process_one(ct, rs, zone, dir, k, &q, thash(&q), (uint32_t)(now >> TICK_SHIFT));
	count(ct, v);
	return v;
}

void zoc_ct_process_burst(struct zoc_ct *ct, const struct zoc_sg_ruleset *rs, uint16_t zone,
			  enum zoc_ct_dir dir, const struct zoc_flowkey *const *keys, unsigned n,
			  uint64_t now, uint8_t *verdicts)
{
	struct tuple q[32];
	uint64_t h[32];
	uint32_t now_t = (uint32_t)(now >> TICK_SHIFT);

	while (n) {
		unsigned m = n < 32 ? n : 32;

		for (unsigned i = 0; i < m; i++) {
			make_tuple(&q[i], keys[i], zone);
			h[i] = thash(&q[i]);
			__builtin_prefetch(&ct->cur.b[(uint32_t)h[i] & ct->cur.mask]);
		}
		for (unsigned i = 0; i < m; i++) {
			enum zoc_ct_verdict v = process_one(ct, rs, zone, dir, keys[i], &q[i], h[i], now_t);

			count(ct, v);
			verdicts[i] = (uint8_t)v;
		}
		keys += m;
		verdicts += m;
		n -= m;
	}
}

unsigned zoc_ct_poll(struct zoc_ct *ct, uint64_t now, unsigned budget)
{
	uint32_t now_t = (uint32_t)(now >> TICK_SHIFT);
	unsigned work = 0;

	for (unsigned i = 0; ct->migrating && i < budget / 8 + 1; i++)
		work += migrate_one(ct);
	for (unsigned i = 0; i < budget && ct->hwm; i++) {
		uint32_t idx = ct->sweep_cursor++;
		struct entry *e;

		if (idx >= ct->hwm) {
			ct->sweep_cursor = 0;
			break;
		}
		e = E(ct, idx);
		if (e->state && expired(e, now_t)) {
			ent_delete(ct, idx);
			ct->st.expired++;
			work++;
		}
	}
	return work;
}

/* ---- life cycle ---- */

struct zoc_ct *zoc_ct_create(const struct zoc_ct_config *cfg)
{
	const struct zoc_ct_timeouts *to = cfg->timeouts ? cfg->timeouts : &g_default_to;
	struct zoc_ct *ct;
	uint32_t maxcap;

	if (!cfg || cfg->capacity < 64 || cfg->capacity > (1u << 30) ||
	    (cfg->max_capacity && cfg->max_capacity < cfg->capacity) ||
	    cfg->max_capacity > (1u << 30)) {
		errno = EINVAL;
		return NULL;
	}
	maxcap = cfg->max_capacity ? cfg->max_capacity : cfg->capacity;
	ct = calloc(1, sizeof(*ct));
	if (!ct)
		return NULL;
	ct->capacity = cfg->capacity;
	ct->max_capacity = maxcap;
	ct->auto_grow = cfg->auto_grow;
	ct->frag_pass = cfg->frag_pass;
	ct->max_ports = cfg->max_ports ? cfg->max_ports : 4096;
	ct->n_chunks = (maxcap + CHUNK_SIZE - 1) >> CHUNK_SHIFT;
	ct->chunks = calloc(ct->n_chunks, sizeof(*ct->chunks));
	ct->port_count = calloc(ct->max_ports, sizeof(uint32_t));
	ct->port_cap = calloc(ct->max_ports, sizeof(uint32_t));
	ct->rnd = 0x2545f491;
	if (cfg->flow_cache) {
		if ((cfg->flow_cache & (cfg->flow_cache - 1)) || cfg->flow_cache < 2 ||
		    cfg->flow_cache > (1u << 22)) {
			zoc_ct_destroy(ct);
			errno = EINVAL;
			return NULL;
		}
		ct->fc = malloc((size_t)cfg->flow_cache * sizeof(*ct->fc));
		if (ct->fc) {
			for (uint32_t i = 0; i < cfg->flow_cache; i++)
				ct->fc[i] = (struct fc_ent){.slot = NO_IDX};
			ct->fc_mask = cfg->flow_cache - 1;
		}
	}
	if (!ct->chunks || !ct->port_count || !ct->port_cap || (cfg->flow_cache && !ct->fc) ||
	    index_init(&ct->cur, buckets_for(cfg->capacity))) {
		zoc_ct_destroy(ct);
		errno = ENOMEM;
		return NULL;
	}
	for (unsigned i = 0; i < ct->max_ports; i++)
		ct->port_cap[i] = cfg->port_cap;
	for (unsigned i = 0; i < ZOC_CT_S_COUNT; i++)
		ct->to_tcp[i] = secs_to_ticks(to->tcp[i] ? to->tcp[i] : 1);
	ct->to_udp[0] = secs_to_ticks(to->udp_unreplied);
	ct->to_udp[1] = secs_to_ticks(to->udp_replied);
	ct->to_icmp = secs_to_ticks(to->icmp);
	ct->to_other[0] = secs_to_ticks(to->other_unreplied);
	ct->to_other[1] = secs_to_ticks(to->other_replied);
	return ct;
}

void zoc_ct_destroy(struct zoc_ct *ct)
{
	if (!ct)
		return;
	index_free(&ct->cur);
	index_free(&ct->old);
	if (ct->chunks)
		for (uint32_t i = 0; i < ct->n_chunks; i++)
			if (ct->chunks[i])
				munmap(ct->chunks[i], (size_t)CHUNK_SIZE * sizeof(struct entry));
	free(ct->chunks);
	free(ct->port_count);
	free(ct->port_cap);
	free(ct->fc);
	free(ct);
}

int zoc_ct_set_port_cap(struct zoc_ct *ct, uint16_t zone, uint32_t cap)
{
	if (zone >= ct->max_ports)
		return -EINVAL;
	ct->port_cap[zone] = cap;
	return 0;
}

uint32_t zoc_ct_port_count(const struct zoc_ct *ct, uint16_t zone)
{
	return zone < ct->max_ports ? ct->port_count[zone] : 0;
}

unsigned zoc_ct_flush_zone(struct zoc_ct *ct, uint16_t zone)
{
	unsigned n = 0;

	for (uint32_t i = 0; i < ct->hwm; i++) {
		struct entry *e = E(ct, i);

		if (e->state && e->t.zone == zone) {
			ent_delete(ct, i);
			n++;
		}
	}
	return n;
}

void zoc_ct_flush(struct zoc_ct *ct)
{
	for (uint32_t i = 0; i < ct->hwm; i++)
		if (E(ct, i)->state)
			ent_delete(ct, i);
}

void zoc_ct_get_stats(const struct zoc_ct *ct, struct zoc_ct_stats *st)
{
	*st = ct->st;
	st->per_state[ZOC_CT_S_NONE] = 0;
	st->capacity = ct->capacity;
	st->max_capacity = ct->max_capacity;
	st->used = ct->used;
	st->index_buckets = (uint64_t)ct->cur.mask + 1;
	st->arena_entries = ct->hwm;
	st->bytes = ct->cur.bytes + ct->old.bytes + (uint64_t)ct->hwm * sizeof(struct entry);
}

/* ---- listing and JSON ---- */

static bool filter_ok(const struct entry *e, const struct zoc_ct_filter *f)
{
	if (f->state >= 0 && e->state != f->state)
		return false;
	if (f->proto && e->t.proto != f->proto)
		return false;
	if (f->zone >= 0 && e->t.zone != f->zone)
		return false;
	if (f->port && e->t.pa != f->port && e->t.pb != f->port)
		return false;
	if (f->family) {
		unsigned n = f->family == 4 ? 4 : 16;

		if (e->t.family != f->family ||
		    (memcmp(e->t.a, f->addr, n) && memcmp(e->t.b, f->addr, n)))
			return false;
	}
	return true;
}

unsigned zoc_ct_walk(struct zoc_ct *ct, const struct zoc_ct_filter *f, uint64_t now,
		     int (*fn)(void *arg, const struct zoc_ct_session *s), void *arg)
{
	uint32_t now_t = (uint32_t)(now >> TICK_SHIFT);
	uint32_t max = f->max ? f->max : 1000;
	unsigned n = 0;

	for (uint32_t i = 0; i < ct->hwm && n < max; i++) {
		const struct entry *e = E(ct, i);
		struct zoc_ct_session s;
		int32_t left;

		if (!e->state || expired(e, now_t) || !filter_ok(e, f))
			continue;
		memset(&s, 0, sizeof(s));
		memcpy(s.key.src, e->t.a, 16);
		memcpy(s.key.dst, e->t.b, 16);
		s.key.sport = e->t.pa;
		s.key.dport = e->t.pb;
		s.key.proto = e->t.proto;
		s.key.family = e->t.family;
		s.zone = e->t.zone;
		s.state = e->state;
		s.orig_dir = (e->flags & EF_ORIG_INGRESS) ? ZOC_CT_INGRESS : ZOC_CT_EGRESS;
		s.assured = !!(e->flags & EF_ASSURED);
		left = (int32_t)(e->expires - now_t);
		s.expires_ms = (uint32_t)(((uint64_t)left << TICK_SHIFT) / 1000000u);
		n++;
		if (fn(arg, &s))
			break;
	}
	return n;
}

json_t *zoc_ct_stats_json(const struct zoc_ct *ct)
{
	struct zoc_ct_stats st;
	json_t *o, *states = json_object(), *drops = json_object();

	zoc_ct_get_stats(ct, &st);
	for (int i = 1; i < ZOC_CT_S_COUNT; i++)
		json_object_set_new(states, g_state_names[i], json_integer((json_int_t)st.per_state[i]));
	for (int i = 0; i < ZOC_CT_N_DROPS; i++)
		json_object_set_new(drops, g_drop_names[i], json_integer((json_int_t)st.drops[i]));
	o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
		      "capacity", (json_int_t)st.capacity, "used", (json_int_t)st.used,
		      "max_capacity", (json_int_t)st.max_capacity, "growths", (json_int_t)st.growths,
		      "migrating", (json_int_t)st.migrating, "created", (json_int_t)st.created,
		      "deleted", (json_int_t)st.deleted, "expired", (json_int_t)st.expired,
		      "early_drops", (json_int_t)st.early_drops, "reopened", (json_int_t)st.reopened,
		      "bytes", (json_int_t)st.bytes, "entry_bytes", (json_int_t)sizeof(struct entry));
	if (o) {
		json_object_set_new(o, "flow_cache_hits", json_integer((json_int_t)st.fc_hits));
		json_object_set_new(o, "flow_cache_misses", json_integer((json_int_t)st.fc_misses));
	}
	if (!o) {
		json_decref(states);
		json_decref(drops);
		return NULL;
	}
	json_object_set_new(o, "states", states);
	json_object_set_new(o, "drops", drops);
	return o;
}

static void add_num(json_t *acc, const char *key, json_t *v)
{
	json_t *a = json_object_get(acc, key);

	if (json_is_integer(v) && strcmp(key, "entry_bytes"))
		json_object_set_new(acc, key,
				    json_integer((a ? json_integer_value(a) : 0) + json_integer_value(v)));
	else if (!a)
		json_object_set(acc, key, v);
}

void zoc_ct_stats_json_add(json_t *acc, const json_t *part)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)part, key, v) {
		if (json_is_object(v)) {
			json_t *sub = json_object_get(acc, key);
			const char *k2;
			json_t *v2;

			if (!sub) {
				sub = json_object();
				json_object_set_new(acc, key, sub);
			}
			json_object_foreach(v, k2, v2)
				add_num(sub, k2, v2);
		} else {
			add_num(acc, key, v);
		}
	}
}

static const struct {
	const char *name;
	uint8_t proto;
} g_protos[] = {
	{"tcp", ZOC_IPPROTO_TCP}, {"udp", ZOC_IPPROTO_UDP},
	{"icmp", ZOC_IPPROTO_ICMP}, {"icmpv6", ZOC_IPPROTO_ICMPV6},
};

int zoc_ct_filter_from_json(const json_t *params, struct zoc_ct_filter *f, char *err,
			    unsigned errlen)
{
	json_t *v;

	memset(f, 0, sizeof(*f));
	f->state = -1;
	f->zone = -1;
	if (!params || json_is_null(params))
		return 0;
	if (!json_is_object(params)) {
		snprintf(err, errlen, "params must be an object");
		return -EINVAL;
	}
	if ((v = json_object_get(params, "state"))) {
		if (!json_is_string(v) || (f->state = zoc_ct_state_parse(json_string_value(v))) < 0) {
			snprintf(err, errlen, "state must be one of SYN_SENT, SYN_RECV, ESTABLISHED, "
					      "FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, "
					      "UNREPLIED, REPLIED");
			return -EINVAL;
		}
	}
	if ((v = json_object_get(params, "protocol"))) {
		const char *p = json_string_value(v);

		for (unsigned i = 0; p && i < ZOC_ARRAY_SIZE(g_protos); i++)
			if (!strcmp(p, g_protos[i].name))
				f->proto = g_protos[i].proto;
		if (!f->proto) {
			snprintf(err, errlen, "protocol must be tcp, udp, icmp or icmpv6");
			return -EINVAL;
		}
	}
	if ((v = json_object_get(params, "address"))) {
		const char *a = json_string_value(v);

		if (a && inet_pton(AF_INET, a, f->addr) == 1)
			f->family = 4;
		else if (a && inet_pton(AF_INET6, a, f->addr) == 1)
			f->family = 6;
		else {
			snprintf(err, errlen, "address must be an IPv4 or IPv6 address");
			return -EINVAL;
		}
	}
	if ((v = json_object_get(params, "port"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535) {
			snprintf(err, errlen, "port must be an integer 1..65535");
			return -EINVAL;
		}
		f->port = (uint16_t)json_integer_value(v);
	}
	if ((v = json_object_get(params, "zone"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 65535) {
			snprintf(err, errlen, "zone must be a port id 0..65535");
			return -EINVAL;
		}
		f->zone = (int)json_integer_value(v);
	}
	if ((v = json_object_get(params, "count"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > 100000) {
			snprintf(err, errlen, "count must be an integer 1..100000");
			return -EINVAL;
		}
		f->max = (uint32_t)json_integer_value(v);
	}
	return 0;
}

static const char *proto_name(uint8_t p, char *buf, size_t n)
{
	for (unsigned i = 0; i < ZOC_ARRAY_SIZE(g_protos); i++)
		if (g_protos[i].proto == p)
			return g_protos[i].name;
	snprintf(buf, n, "%u", p);
	return buf;
}

static int list_one(void *arg, const struct zoc_ct_session *s)
{
	char src[48], dst[48], pb[8];
	json_t *o;

	zoc_flowkey_addr_str(s->key.src, s->key.family, src, sizeof(src));
	zoc_flowkey_addr_str(s->key.dst, s->key.family, dst, sizeof(dst));
	o = json_pack("{s:i, s:s, s:i, s:s, s:s, s:i, s:i, s:s, s:s, s:b, s:I}", "zone", s->zone,
		      "protocol", proto_name(s->key.proto, pb, sizeof(pb)), "family",
		      s->key.family, "src", src, "dst", dst, "sport", s->key.sport, "dport",
		      s->key.dport, "state", zoc_ct_state_name(s->state), "direction",
		      s->orig_dir == ZOC_CT_INGRESS ? "ingress" : "egress", "assured", s->assured,
		      "expires_ms", (json_int_t)s->expires_ms);
	if (o)
		json_array_append_new(arg, o);
	return 0;
}

unsigned zoc_ct_list_json(struct zoc_ct *ct, const struct zoc_ct_filter *f, uint64_t now,
			  json_t *out)
{
	return zoc_ct_walk(ct, f, now, list_one, out);
}
