/* SPDX-License-Identifier: MIT */
/*
 * test_vswitch.c - the embedded switch (src/net): packet pools, FDB,
 * learning, ageing, station moves, flooding, VLANs, drops by reason, the
 * flow cache, cross-reactor delivery and port removal under traffic, JSON.
 * Ends with a micro-benchmark line (not asserted).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"
#include "net/fdb.h"
#include "net/gso.h"
#include "net/pkt.h"
#include "net/ring.h"
#include "net/vswitch.h"

#define MAXREC 256

/* A fake owner: records what tx_burst delivered. */
struct fport {
	struct zoc_port *port;
	unsigned accept;        /* accept at most this many per call (UINT_MAX: all) */
	unsigned calls;
	unsigned n;             /* packets recorded */
	uint16_t len[MAXREC];
	uint16_t csum_start[MAXREC];
	uint8_t frame[MAXREC][64];
	atomic_uint total;
	atomic_int wrong_thread;
	int expect_reactor;     /* -1: any */
	atomic_int removed;     /* set by the removal's done callback */
	atomic_int after_removed; /* tx_burst calls after done */
};

static unsigned fake_tx(struct zoc_port *port, struct zoc_pkt **pkts, unsigned n)
{
	struct fport *f = zoc_port_ctx(port);
	unsigned k = n < f->accept ? n : f->accept;

	f->calls++;
	if (f->expect_reactor >= 0 &&
	    (!zoc_reactor_current() ||
	     (int)zoc_reactor_index(zoc_reactor_current()) != f->expect_reactor))
		atomic_fetch_add(&f->wrong_thread, 1);
	if (atomic_load(&f->removed))
		atomic_fetch_add(&f->after_removed, 1);
	for (unsigned i = 0; i < k; i++) {
		if (f->n < MAXREC) {
			f->len[f->n] = (uint16_t)pkts[i]->len;
			f->csum_start[f->n] = pkts[i]->csum_start;
			memcpy(f->frame[f->n], zoc_pkt_data(pkts[i]),
			       pkts[i]->len < 64 ? pkts[i]->len : 64);
			f->n++;
		}
		zoc_pkt_free(pkts[i]);
	}
	atomic_fetch_add(&f->total, k);
	return k;
}

static const struct zoc_port_ops g_fake_ops = {.type = "test", .tx_burst = fake_tx};

static uint64_t g_now;

static uint64_t fake_clock(void *arg)
{
	return g_now;
}

static const uint8_t MAC_A[6] = {0x02, 0, 0, 0, 0, 0xa};
static const uint8_t MAC_B[6] = {0x02, 0, 0, 0, 0, 0xb};
static const uint8_t MAC_C[6] = {0x02, 0, 0, 0, 0, 0xc};
static const uint8_t MAC_X[6] = {0x02, 0, 0, 0, 0, 0x55};
static const uint8_t BCAST[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

/* A frame dst <- src, tagged with tci when tci >= 0, total length len. */
static struct zoc_pkt *mk(const uint8_t *dst, const uint8_t *src, int tci, uint32_t len)
{
	struct zoc_pkt *p = zoc_pkt_alloc(zoc_pktpool_local(), len);
	uint8_t *d;
	uint32_t off = 12;

	assert_non_null(p);
	d = zoc_pkt_data(p);
	memset(d, 0x5a, len);
	if (len >= 6)
		memcpy(d, dst, 6);
	if (len >= 12)
		memcpy(d + 6, src, 6);
	if (tci >= 0 && len >= 16) {
		d[12] = 0x81;
		d[13] = 0x00;
		d[14] = (uint8_t)(tci >> 8);
		d[15] = (uint8_t)tci;
		off = 16;
	}
	if (len >= off + 2) {
		d[off] = 0x08;
		d[off + 1] = 0x00;
	}
	return p;
}

static void send1(struct zoc_vswitch *sw, struct fport *in, struct zoc_pkt *p)
{
	zoc_vswitch_rx_burst(sw, in->port, &p, 1);
}

static void fport_reset(struct fport *f)
{
	f->calls = 0;
	f->n = 0;
	atomic_store(&f->total, 0);
}

static struct fport *add_port(struct zoc_vswitch *sw, struct zoc_port_config *cfg)
{
	struct fport *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->accept = ~0u;
	f->expect_reactor = -1;
	assert_int_equal(zoc_vswitch_port_add(sw, cfg, &g_fake_ops, f, &f->port), 0);
	return f;
}

static struct fport *add_simple(struct zoc_vswitch *sw, const char *name, enum zoc_vlan_mode mode,
				uint16_t vid)
{
	struct zoc_port_config cfg;

	zoc_port_config_init(&cfg, name);
	cfg.vlan_mode = mode;
	cfg.vid = vid;
	return add_port(sw, &cfg);
}

static void removed_cb(void *arg)
{
	struct fport *f = arg;

	atomic_store(&f->removed, 1);
}

static void remove_port(struct fport *f)
{
	assert_int_equal(zoc_vswitch_port_remove(f->port, removed_cb, f), 0);
	/* One reactor: done runs at once (the barrier completes inline and the
	 * owner step is a message to ourselves only with several reactors). */
	assert_true(atomic_load(&f->removed));
	free(f);
}

static uint64_t drops(struct fport *f, enum zoc_drop_reason r)
{
	struct zoc_port_stats st;

	zoc_port_get_stats(f->port, &st);
	return st.drops[r];
}

struct env {
	struct zoc_vswitch *sw;
};

static int setup1(void **state)
{
	static struct env e;
	struct zoc_reactor_opts o = {0};

	assert_int_equal(zoc_reactors_init(&o), 0);
	assert_int_equal(zoc_pktpools_init(512, 16), 0);
	assert_int_equal(zoc_vswitch_create("sw0", NULL, &e.sw), 0);
	g_now = 1000ull * 1000000000ull;
	zoc_vswitch_set_clock(e.sw, fake_clock, NULL);
	*state = &e;
	return 0;
}

static int teardown1(void **state)
{
	struct env *e = *state;
	uint32_t s, l;

	assert_int_equal(zoc_vswitch_port_count(e->sw), 0);
	assert_int_equal(zoc_vswitch_destroy(e->sw), 0);
	/* Every packet came back. */
	zoc_pktpool_available(zoc_pktpool_local(), &s, &l);
	assert_int_equal(s, 512);
	assert_int_equal(l, 16);
	zoc_pktpools_fini();
	zoc_reactors_fini();
	return 0;
}

/* ---- packet buffers ----------------------------------------------------- */

static void test_pkt_pool(void **state)
{
	struct zoc_pktpool *pp = zoc_pktpool_create("t", 0, 4, 2);
	struct zoc_pkt *p[8];
	uint32_t s, l;

	assert_non_null(pp);
	p[0] = zoc_pkt_alloc(pp, 60);
	assert_non_null(p[0]);
	assert_int_equal(p[0]->room, ZOC_PKT_SMALL_ROOM);
	assert_int_equal(zoc_pkt_headroom(p[0]), ZOC_PKT_HEADROOM);
	p[1] = zoc_pkt_alloc(pp, 9018);
	assert_non_null(p[1]);
	assert_int_equal(p[1]->room, ZOC_PKT_LARGE_ROOM);
	assert_null(zoc_pkt_alloc(pp, ZOC_PKT_MAX_FRAME + 1));
	assert_non_null(zoc_pkt_push(p[0], 4));
	assert_int_equal(p[0]->len, 64);
	assert_null(zoc_pkt_pull(p[0], 65));
	assert_int_equal(zoc_pkt_set_len(p[0], ZOC_PKT_SMALL_ROOM), -ENOSPC);
	/* The small pool runs dry: a small frame falls back to a large buffer. */
	for (int i = 2; i < 5; i++)
		assert_non_null(p[i] = zoc_pkt_alloc(pp, 60));
	p[5] = zoc_pkt_alloc(pp, 60);
	assert_non_null(p[5]);
	assert_int_equal(p[5]->room, ZOC_PKT_LARGE_ROOM);
	assert_null(zoc_pkt_alloc(pp, 60));
	assert_int_equal(zoc_pkt_alloc_bulk(pp, p + 6, 2, 60), -ENOBUFS);
	zoc_pkt_free_bulk(p, 6);
	zoc_pktpool_available(pp, &s, &l);
	assert_int_equal(s, 4);
	assert_int_equal(l, 2);
	zoc_pktpool_destroy(pp);
}

/* A pool owned by another reactor index: frees go to its remote list and
 * come back on the owner's next shortage. */
static void test_pkt_remote_free(void **state)
{
	struct zoc_pktpool *pp = zoc_pktpool_create("r", 7, 2, 0);
	struct zoc_pkt *a, *b;
	struct zoc_pkt *v[2];

	/* We are reactor 0, not 7: allocation is still allowed for the test. */
	a = zoc_pkt_alloc(pp, 100);
	b = zoc_pkt_alloc(pp, 100);
	assert_non_null(a);
	assert_non_null(b);
	assert_null(zoc_pkt_alloc(pp, 100));
	v[0] = a;
	v[1] = b;
	zoc_pkt_free_bulk(v, 2); /* remote: one push of a chain of two */
	a = zoc_pkt_alloc(pp, 100); /* reclaims */
	assert_non_null(a);
	b = zoc_pkt_alloc(pp, 100);
	assert_non_null(b);
	zoc_pkt_free(a);
	zoc_pkt_free(b);
	zoc_pktpool_destroy(pp);
}

static struct zoc_pkt *mk_ip(uint16_t sport, bool v6, int tci, uint32_t trunc)
{
	uint32_t l3 = v6 ? 40 : 20, off = tci >= 0 ? 18 : 14, len = off + l3 + 8;
	struct zoc_pkt *p = zoc_pkt_alloc(zoc_pktpool_local(), len);
	uint8_t *d = zoc_pkt_data(p);

	memset(d, 0, len);
	d[0] = 2;
	if (tci >= 0) {
		d[12] = 0x81;
		d[15] = (uint8_t)tci;
	}
	d[off - 2] = v6 ? 0x86 : 0x08;
	d[off - 1] = v6 ? 0xdd : 0x00;
	if (v6) {
		d[off] = 0x60;
		d[off + 6] = 6;
		d[off + 23] = 1;
		d[off + 39] = 2;
	} else {
		d[off] = 0x45;
		d[off + 9] = 17;
		d[off + 15] = 1;
		d[off + 19] = 2;
	}
	d[off + l3] = (uint8_t)(sport >> 8);
	d[off + l3 + 1] = (uint8_t)sport;
	d[off + l3 + 3] = 80;
	p->len = (uint16_t)(len - trunc);
	return p;
}

static void test_flow_hash(void **state)
{
	struct zoc_reactor_opts o = {0};
	struct zoc_pkt *a, *b, *c, *t;
	uint32_t ha, hb;

	assert_int_equal(zoc_reactors_init(&o), 0);
	assert_int_equal(zoc_pktpools_init(16, 1), 0);
	for (int v6 = 0; v6 < 2; v6++) {
		a = mk_ip(1000, v6, -1, 0);
		b = mk_ip(1000, v6, 5, 0);
		c = mk_ip(1001, v6, -1, 0);
		ha = zoc_pkt_flow_hash(a);
		hb = zoc_pkt_flow_hash(b);
		assert_int_not_equal(ha, 0);
		assert_int_equal(ha, a->hash);
		assert_int_equal(ha, hb); /* a tag does not change the flow */
		assert_int_not_equal(ha, zoc_pkt_flow_hash(c));
		/* Truncated: no ports (or no L3) read; still a nonzero hash. */
		for (uint32_t tr = 1; tr < a->len; tr += 3) {
			t = mk_ip(1000, v6, -1, tr);
			assert_int_not_equal(zoc_pkt_flow_hash(t), 0);
			zoc_pkt_free(t);
		}
		zoc_pkt_free(a);
		zoc_pkt_free(b);
		zoc_pkt_free(c);
	}
	zoc_pktpools_fini();
	zoc_reactors_fini();
}

static void test_spsc_ring(void **state)
{
	struct zoc_spsc *r = zoc_spsc_create(4);
	void *in[6] = {(void *)1, (void *)2, (void *)3, (void *)4, (void *)5, (void *)6};
	void *out[6];

	assert_null(zoc_spsc_create(3));
	assert_non_null(r);
	assert_int_equal(zoc_spsc_enqueue(r, in, 6), 4);
	assert_int_equal(zoc_spsc_count(r), 4);
	assert_int_equal(zoc_spsc_dequeue(r, out, 3), 3);
	assert_ptr_equal(out[2], (void *)3);
	assert_int_equal(zoc_spsc_enqueue(r, in + 4, 2), 2);
	assert_int_equal(zoc_spsc_dequeue(r, out, 6), 3);
	assert_ptr_equal(out[0], (void *)4);
	assert_ptr_equal(out[2], (void *)6);
	assert_int_equal(zoc_spsc_dequeue(r, out, 1), 0);
	free(r);
}

static void test_fdb_basic(void **state)
{
	struct zoc_fdb *f = zoc_fdb_create(8);
	uint8_t m[6] = {2, 0, 0, 0, 0, 0};
	int ok = 0, full = 0;

	assert_null(zoc_fdb_create(0));
	assert_int_equal(zoc_fdb_learn(f, MAC_A, 1, 3, 10, NULL, NULL), ZOC_FDB_NEW);
	assert_int_equal(zoc_fdb_learn(f, MAC_A, 1, 3, 11, NULL, NULL), ZOC_FDB_KNOWN);
	assert_int_equal(zoc_fdb_lookup(f, MAC_A, 1), 3);
	assert_int_equal(zoc_fdb_lookup(f, MAC_A, 2), -ENOENT);
	assert_int_equal(zoc_fdb_learn(f, MAC_A, 1, 4, 12, NULL, NULL), ZOC_FDB_MOVED);
	assert_int_equal(zoc_fdb_lookup(f, MAC_A, 1), 4);
	/* Bounded: never more than max entries. */
	for (int i = 0; i < 100; i++) {
		int rc;

		m[5] = (uint8_t)i;
		m[4] = (uint8_t)(i * 7);
		rc = zoc_fdb_learn(f, m, 5, 1, 12, NULL, NULL);
		if (rc == -ENOSPC)
			full++;
		else if (rc >= 0)
			ok++;
	}
	assert_true(zoc_fdb_count(f) <= 8);
	assert_true(full > 0);
	assert_int_equal(zoc_fdb_age(f, 100, 300), 0);
	assert_int_equal(zoc_fdb_age(f, 400, 300), zoc_fdb_count(f) ? zoc_fdb_count(f) : 0);
	zoc_fdb_destroy(f);
	(void)ok;
}

/* Seqlock readers against a writer: a lookup never sees a torn entry.
 * Key i is only ever on port i or port i + 1000. */
struct fdbc {
	struct zoc_fdb *f;
	atomic_int stop;
	atomic_ulong bad, reads;
};

static void key_mac(uint8_t *m, unsigned i)
{
	m[0] = 2;
	m[1] = 0;
	m[2] = (uint8_t)(i >> 24);
	m[3] = (uint8_t)(i >> 16);
	m[4] = (uint8_t)(i >> 8);
	m[5] = (uint8_t)i;
}

static void *fdbc_reader(void *arg)
{
	struct fdbc *c = arg;
	uint8_t m[6];
	unsigned long n = 0;

	while (!atomic_load(&c->stop)) {
		for (unsigned i = 0; i < 200; i++) {
			int p;

			key_mac(m, i);
			p = zoc_fdb_lookup(c->f, m, (uint16_t)(i % 7));
			if (p != -ENOENT && p != (int)i && p != (int)i + 1000)
				atomic_fetch_add(&c->bad, 1);
			n++;
		}
	}
	atomic_store(&c->reads, n);
	return NULL;
}

static void test_fdb_concurrent(void **state)
{
	struct fdbc c = {.f = zoc_fdb_create(256)};
	pthread_t th;
	uint8_t m[6];
	uint64_t t0 = zoc_now_ns();
	uint32_t now = 0;

	assert_int_equal(pthread_create(&th, NULL, fdbc_reader, &c), 0);
	while (zoc_now_ns() - t0 < 300000000ull) {
		now++;
		for (unsigned i = 0; i < 200; i++) {
			key_mac(m, i);
			zoc_fdb_learn(c.f, m, (uint16_t)(i % 7),
				      (uint16_t)((i + now) % 2 ? i : i + 1000), now, NULL, NULL);
		}
		if (now % 10 == 0)
			zoc_fdb_age(c.f, now, 3);
		if (now % 7 == 0) {
			key_mac(m, now % 200);
			zoc_fdb_delete(c.f, m, (uint16_t)(now % 200 % 7));
		}
	}
	atomic_store(&c.stop, 1);
	pthread_join(th, NULL);
	assert_int_equal(atomic_load(&c.bad), 0);
	assert_true(atomic_load(&c.reads) > 0);
	zoc_fdb_destroy(c.f);
}

/* ---- switching ----------------------------------------------------------- */

static void test_learning_and_forwarding(void **state)
{
	struct env *e = *state;
	struct fport *a = add_simple(e->sw, "a", ZOC_VLAN_NONE, 0);
	struct fport *b = add_simple(e->sw, "b", ZOC_VLAN_NONE, 0);
	struct fport *c = add_simple(e->sw, "c", ZOC_VLAN_NONE, 0);
	json_t *j;

	/* Unknown destination: flooded to b and c, not back to a. */
	send1(e->sw, a, mk(MAC_B, MAC_A, -1, 60));
	assert_int_equal(a->n, 0);
	assert_int_equal(b->n, 1);
	assert_int_equal(c->n, 1);
	assert_ptr_equal(zoc_vswitch_fdb_lookup(e->sw, MAC_A, 0), a->port);
	/* b answers: a is known, only a gets it. */
	send1(e->sw, b, mk(MAC_A, MAC_B, -1, 60));
	assert_int_equal(a->n, 1);
	assert_int_equal(c->n, 1);
	assert_memory_equal(a->frame[0], MAC_A, 6);
	/* Now both are known: a -> b is unicast. */
	send1(e->sw, a, mk(MAC_B, MAC_A, -1, 60));
	assert_int_equal(b->n, 2);
	assert_int_equal(c->n, 1);
	/* The MAC table. */
	j = zoc_vswitch_fdb_to_json(e->sw);
	assert_int_equal(json_array_size(j), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "mac")),
			    "02:00:00:00:00:0a");
	assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "port")), "a");
	json_decref(j);
	remove_port(a);
	remove_port(b);
	remove_port(c);
}

static void test_aging(void **state)
{
	struct env *e = *state;
	struct fport *a = add_simple(e->sw, "a", ZOC_VLAN_NONE, 0);
	struct fport *b = add_simple(e->sw, "b", ZOC_VLAN_NONE, 0);
	struct fport *c = add_simple(e->sw, "c", ZOC_VLAN_NONE, 0);

	send1(e->sw, a, mk(BCAST, MAC_A, -1, 60));
	assert_non_null(zoc_vswitch_fdb_lookup(e->sw, MAC_A, 0));
	g_now += 299ull * 1000000000ull;
	assert_int_equal(zoc_vswitch_age(e->sw), 0);
	/* Traffic to a refreshes nothing (only its own frames do). */
	send1(e->sw, b, mk(MAC_A, MAC_B, -1, 60));
	assert_int_equal(a->n, 1);
	assert_int_equal(c->n, 1); /* the first broadcast only */
	g_now += 2ull * 1000000000ull;
	assert_int_equal(zoc_vswitch_age(e->sw), 1); /* a aged out, b (2 s old) stays */
	assert_null(zoc_vswitch_fdb_lookup(e->sw, MAC_A, 0));
	assert_non_null(zoc_vswitch_fdb_lookup(e->sw, MAC_B, 0));
	/* Unknown again: flooded. */
	send1(e->sw, b, mk(MAC_A, MAC_B, -1, 60));
	assert_int_equal(a->n, 2);
	assert_int_equal(c->n, 2);
	/* A shorter ageing time. */
	zoc_vswitch_set_aging(e->sw, 10);
	g_now += 11ull * 1000000000ull;
	assert_int_equal(zoc_vswitch_age(e->sw), 1);
	remove_port(a);
	remove_port(b);
	remove_port(c);
	zoc_vswitch_set_aging(e->sw, 300);
}

static void test_station_move(void **state)
{
	struct env *e = *state;
	struct fport *a = add_simple(e->sw, "a", ZOC_VLAN_NONE, 0);
	struct fport *b = add_simple(e->sw, "b", ZOC_VLAN_NONE, 0);
	struct fport *c = add_simple(e->sw, "c", ZOC_VLAN_NONE, 0);
	struct zoc_vswitch_cache_stats cs0, cs1;

	send1(e->sw, a, mk(BCAST, MAC_X, -1, 60));
	send1(e->sw, b, mk(MAC_X, MAC_B, -1, 60));
	send1(e->sw, b, mk(MAC_X, MAC_B, -1, 60)); /* cached */
	assert_int_equal(a->n, 2);
	zoc_vswitch_cache_stats(e->sw, &cs0);
	/* X moves to c. */
	send1(e->sw, c, mk(BCAST, MAC_X, -1, 60));
	assert_ptr_equal(zoc_vswitch_fdb_lookup(e->sw, MAC_X, 0), c->port);
	send1(e->sw, b, mk(MAC_X, MAC_B, -1, 60));
	assert_int_equal(c->n, 2); /* the first broadcast and this one */
	assert_int_equal(a->n, 3); /* c's broadcast only */
	zoc_vswitch_cache_stats(e->sw, &cs1);
	/* The move invalidated the cached decision: a miss, not a hit. */
	assert_int_equal(cs1.misses, cs0.misses + 1);
	assert_int_equal(cs1.hits, cs0.hits);
	remove_port(a);
	remove_port(b);
	remove_port(c);
}

static void test_flood_split_horizon_batching(void **state)
{
	struct env *e = *state;
	struct fport *p[4];
	struct zoc_pkt *v[8];
	char nm[8];

	for (int i = 0; i < 4; i++) {
		snprintf(nm, sizeof(nm), "p%d", i);
		p[i] = add_simple(e->sw, nm, ZOC_VLAN_NONE, 0);
	}
	for (int i = 0; i < 8; i++)
		v[i] = mk(BCAST, MAC_A, -1, 60 + i);
	zoc_vswitch_rx_burst(e->sw, p[0]->port, v, 8);
	assert_int_equal(p[0]->n, 0);
	for (int i = 1; i < 4; i++) {
		assert_int_equal(p[i]->n, 8);
		assert_int_equal(p[i]->calls, 1); /* one tx burst per output per input burst */
		for (int k = 0; k < 8; k++)
			assert_int_equal(p[i]->len[k], 60 + k); /* order kept */
	}
	/* Multicast too, and unknown unicast. */
	for (int i = 0; i < 4; i++)
		fport_reset(p[i]);
	{
		uint8_t mc[6] = {0x01, 0x00, 0x5e, 0, 0, 1};

		send1(e->sw, p[1], mk(mc, MAC_B, -1, 60));
		send1(e->sw, p[1], mk(MAC_C, MAC_B, -1, 60));
	}
	assert_int_equal(p[1]->n, 0);
	assert_int_equal(p[0]->n, 2);
	assert_int_equal(p[2]->n, 2);
	/* A disabled port is not flooded to. */
	{
		struct zoc_port_config cfg;

		zoc_port_get_config(p[3]->port, &cfg);
		cfg.enabled = false;
		assert_int_equal(zoc_port_set_config(p[3]->port, &cfg), 0);
		fport_reset(p[3]);
		send1(e->sw, p[1], mk(BCAST, MAC_B, -1, 60));
		assert_int_equal(p[3]->n, 0);
		/* and what it sends is dropped */
		send1(e->sw, p[3], mk(BCAST, MAC_C, -1, 60));
		assert_int_equal(drops(p[3], ZOC_DROP_PORT_DOWN), 1);
	}
	for (int i = 0; i < 4; i++)
		remove_port(p[i]);
}

static void test_vlans(void **state)
{
	struct env *e = *state;
	struct fport *a10 = add_simple(e->sw, "a10", ZOC_VLAN_ACCESS, 10);
	struct fport *b10 = add_simple(e->sw, "b10", ZOC_VLAN_ACCESS, 10);
	struct fport *c20 = add_simple(e->sw, "c20", ZOC_VLAN_ACCESS, 20);
	struct fport *n0 = add_simple(e->sw, "n0", ZOC_VLAN_NONE, 0);
	struct fport *t;
	struct zoc_port_config cfg;

	zoc_port_config_init(&cfg, "trunk");
	cfg.kind = ZOC_PORT_UPLINK;
	cfg.vlan_mode = ZOC_VLAN_TRUNK;
	assert_int_equal(zoc_port_config_trunk_parse(&cfg, "10,20,30-31"), 0);
	t = add_port(e->sw, &cfg);

	/* Access 10 broadcast: b10 untagged, trunk tagged 10; not c20 nor n0. */
	send1(e->sw, a10, mk(BCAST, MAC_A, -1, 60));
	assert_int_equal(b10->n, 1);
	assert_int_equal(b10->len[0], 60);
	assert_int_equal(c20->n, 0);
	assert_int_equal(n0->n, 0);
	assert_int_equal(t->n, 1);
	assert_int_equal(t->len[0], 64);
	assert_int_equal(t->frame[0][12], 0x81);
	assert_int_equal(t->frame[0][13], 0x00);
	assert_int_equal(t->frame[0][15], 10);
	assert_memory_equal(t->frame[0] + 6, MAC_A, 6);
	assert_int_equal(t->frame[0][16], 0x08);
	/* From the trunk, tagged 20 with PCP 5: c20 gets it untagged. */
	send1(e->sw, t, mk(BCAST, MAC_X, (5 << 13) | 20, 64));
	assert_int_equal(c20->n, 1);
	assert_int_equal(c20->len[0], 60);
	assert_int_equal(c20->frame[0][12], 0x08);
	assert_int_equal(a10->n, 0);
	/* X is learned on VLAN 20 only. */
	assert_ptr_equal(zoc_vswitch_fdb_lookup(e->sw, MAC_X, 20), t->port);
	assert_null(zoc_vswitch_fdb_lookup(e->sw, MAC_X, 10));
	/* c20 answers X: tagged 20 on the trunk with PCP 0. */
	send1(e->sw, c20, mk(MAC_X, MAC_C, -1, 60));
	assert_int_equal(t->n, 2);
	assert_int_equal(t->frame[1][14], 0);
	assert_int_equal(t->frame[1][15], 20);
	/* Isolation: a10 cannot reach X (on VLAN 20): flooded in 10 only. */
	fport_reset(t);
	send1(e->sw, a10, mk(MAC_X, MAC_A, -1, 60));
	assert_int_equal(c20->n, 1);
	assert_int_equal(t->n, 1);
	assert_int_equal(t->frame[0][15], 10);
	/* Disallowed VLAN on the trunk, untagged on a trunk without native,
	 * a tag on an access port: dropped, counted VLAN. */
	send1(e->sw, t, mk(BCAST, MAC_X, 40, 64));
	send1(e->sw, t, mk(BCAST, MAC_X, -1, 60));
	assert_int_equal(drops(t, ZOC_DROP_VLAN), 2);
	send1(e->sw, a10, mk(BCAST, MAC_A, 20, 64));
	assert_int_equal(drops(a10, ZOC_DROP_VLAN), 1);
	/* Priority-tagged on an access port: accepted, untagged out. */
	fport_reset(b10);
	send1(e->sw, a10, mk(BCAST, MAC_A, 3 << 13, 64));
	assert_int_equal(b10->n, 1);
	assert_int_equal(b10->len[0], 60);
	/* VLAN-unaware port: tags pass untouched among none ports only. */
	{
		struct fport *n1 = add_simple(e->sw, "n1", ZOC_VLAN_NONE, 0);

		send1(e->sw, n0, mk(BCAST, MAC_B, 10, 64));
		assert_int_equal(n1->n, 1);
		assert_int_equal(n1->len[0], 64);
		assert_int_equal(n1->frame[0][15], 10);
		assert_int_equal(b10->n, 1);
		remove_port(n1);
	}
	/* Native VLAN: untagged on the trunk goes to 10, and 10 leaves it
	 * untagged. */
	zoc_port_get_config(t->port, &cfg);
	cfg.vid = 10;
	assert_int_equal(zoc_port_set_config(t->port, &cfg), 0);
	fport_reset(t);
	fport_reset(b10);
	send1(e->sw, t, mk(BCAST, MAC_X, -1, 60));
	assert_int_equal(b10->n, 1);
	send1(e->sw, b10, mk(BCAST, MAC_B, -1, 60));
	assert_int_equal(t->n, 1);
	assert_int_equal(t->len[0], 60);
	remove_port(a10);
	remove_port(b10);
	remove_port(c20);
	remove_port(n0);
	remove_port(t);
}

static void test_malformed_frames(void **state)
{
	struct env *e = *state;
	struct fport *a = add_simple(e->sw, "a", ZOC_VLAN_ACCESS, 10);
	struct fport *b = add_simple(e->sw, "b", ZOC_VLAN_ACCESS, 10);
	struct zoc_pkt *p;
	struct zoc_port_stats st;

	send1(e->sw, a, mk(BCAST, MAC_A, -1, 0));  /* zero length */
	send1(e->sw, a, mk(BCAST, MAC_A, -1, 13)); /* runt */
	p = mk(BCAST, MAC_A, -1, 16);              /* tag cut short */
	zoc_pkt_data(p)[12] = 0x81;
	zoc_pkt_data(p)[13] = 0x00;
	send1(e->sw, a, p);
	send1(e->sw, a, mk(BCAST, MAC_A, 0xfff, 64)); /* VID 4095 */
	send1(e->sw, a, mk(BCAST, BCAST, -1, 60));    /* broadcast source */
	assert_int_equal(drops(a, ZOC_DROP_INVALID), 5);
	/* Over the MTU: 1500 payload passes, 1501 does not; a tag is not
	 * payload. */
	send1(e->sw, a, mk(BCAST, MAC_A, -1, 1514));
	send1(e->sw, a, mk(BCAST, MAC_A, 0, 1518));
	send1(e->sw, a, mk(BCAST, MAC_A, -1, 1515));
	assert_int_equal(drops(a, ZOC_DROP_MTU), 1);
	assert_int_equal(b->n, 2);
	/* Jumbo: a 9000 MTU port takes 9014-byte frames; egress to a 1500
	 * port drops them (counted on the output). */
	{
		struct zoc_port_config cfg;

		zoc_port_get_config(a->port, &cfg);
		cfg.mtu = 9000;
		assert_int_equal(zoc_port_set_config(a->port, &cfg), 0);
		send1(e->sw, a, mk(BCAST, MAC_A, -1, 9014));
		assert_int_equal(drops(b, ZOC_DROP_MTU), 1);
		send1(e->sw, a, mk(BCAST, MAC_A, -1, 9015));
		assert_int_equal(drops(a, ZOC_DROP_MTU), 2);
		cfg.mtu = 67;
		assert_int_equal(zoc_port_set_config(a->port, &cfg), -EINVAL);
	}
	/* A zero source is forwarded, never learned. */
	{
		uint8_t zero[6] = {0};

		send1(e->sw, a, mk(BCAST, zero, -1, 60));
		assert_int_equal(b->n, 3);
		assert_null(zoc_vswitch_fdb_lookup(e->sw, zero, 10));
	}
	zoc_port_get_stats(a->port, &st);
	assert_int_equal(st.rx_packets, 11);
	remove_port(a);
	remove_port(b);
}

/* A TCP/IPv4 (or UDP) super-frame dst <- src: payload bytes in segments of
 * mss; NEEDS_CSUM as a virtio driver sends it. */
static struct zoc_pkt *mk_gso(const uint8_t *dst, const uint8_t *src, uint32_t payload,
			      uint16_t mss, bool udp)
{
	uint32_t l4 = udp ? 8 : 20, len = 34 + l4 + payload, tl = 20 + l4 + payload;
	struct zoc_pkt *p = mk(dst, src, -1, len);
	uint8_t *d = zoc_pkt_data(p);

	memset(d + 14, 0, 20 + l4);
	d[14] = 0x45;
	d[16] = (uint8_t)(tl >> 8);
	d[17] = (uint8_t)tl;
	d[22] = 64;
	d[23] = udp ? 17 : 6;
	memcpy(d + 26, (uint8_t[8]){10, 0, 0, 1, 10, 0, 0, 2}, 8);
	if (!udp) {
		d[46] = 0x50;
		d[47] = 0x19; /* FIN|PSH|ACK */
	}
	p->gso_type = udp ? ZOC_PKT_GSO_UDP_L4 : ZOC_PKT_GSO_TCPV4;
	p->gso_size = mss;
	p->flags |= ZOC_PKT_F_CSUM_NEEDED;
	p->csum_start = 34;
	p->csum_offset = udp ? 6 : 16;
	return p;
}

static uint32_t seq_of(const uint8_t *f)
{
	return (uint32_t)f[38] << 24 | (uint32_t)f[39] << 16 | (uint32_t)f[40] << 8 | f[41];
}

/* Delivery of GSO super-frames: whole to a port whose caps take them,
 * segmented to the port's MTU for the others, dropped and counted when
 * they cannot be segmented. */
static void test_gso_delivery(void **state)
{
	struct env *e = *state;
	struct fport *a = add_simple(e->sw, "a", ZOC_VLAN_NONE, 0);
	struct fport *b = add_simple(e->sw, "b", ZOC_VLAN_NONE, 0);
	struct fport *c = add_simple(e->sw, "c", ZOC_VLAN_NONE, 0);
	struct zoc_port_config cfg;
	struct fport *d;
	struct zoc_pkt *p;

	zoc_port_config_init(&cfg, "d");
	cfg.mtu = 1000;
	d = add_port(e->sw, &cfg);
	zoc_port_set_gso_caps(b->port, ZOC_GSO_CAP_TCPV4);
	assert_int_equal(zoc_port_gso_caps(b->port), ZOC_GSO_CAP_TCPV4);
	assert_int_equal(zoc_port_gso_caps(c->port), 0);
	/* flooded (unknown destination): one copy per port */
	send1(e->sw, a, mk_gso(MAC_X, MAC_A, 3000, 960, false));
	assert_int_equal(b->n, 1);
	assert_int_equal(b->len[0], 34 + 20 + 3000);
	assert_int_equal(c->n, 4); /* 960 * 3 + 120 */
	for (unsigned i = 0; i < c->n; i++) {
		assert_int_equal(c->len[i], 54 + (i < 3 ? 960 : 120));
		assert_int_equal(seq_of(c->frame[i]), 960 * i);
		assert_int_equal(c->frame[i][47], i < 3 ? 0x10 : 0x19);
	}
	assert_int_equal(d->n, 4);
	/* an MSS over a port's MTU: lowered for TCP (d: 1000 - 40 = 960 max) */
	fport_reset(b);
	fport_reset(c);
	fport_reset(d);
	send1(e->sw, a, mk_gso(MAC_X, MAC_A, 2900, 1460, false));
	assert_int_equal(b->n, 1);
	assert_int_equal(c->n, 2);
	assert_int_equal(d->n, 0); /* gso_size 1460 > d's MTU: egress MTU drop */
	assert_int_equal(drops(d, ZOC_DROP_MTU), 1);
	/* UDP: a segment size the MTU cannot carry cannot be changed */
	zoc_port_set_gso_caps(b->port, 0);
	fport_reset(b);
	send1(e->sw, a, mk_gso(MAC_X, MAC_A, 3000, 1000, true));
	assert_int_equal(b->n, 3);
	assert_int_equal(b->len[0], 34 + 8 + 1000);
	assert_int_equal(drops(d, ZOC_DROP_MTU), 2); /* 20 + 8 + 1000 > 1000 */
	/* malformed super-frames: dropped as invalid where they need cutting */
	zoc_port_set_gso_caps(b->port, ZOC_GSO_CAP_TCPV4);
	fport_reset(b);
	fport_reset(c);
	p = mk_gso(MAC_X, MAC_A, 3000, 1000, false);
	zoc_pkt_data(p)[46] = 0x20; /* doff 2 */
	send1(e->sw, a, p);
	assert_int_equal(b->n, 1); /* b said it takes TCPv4 whole */
	assert_int_equal(c->n, 0);
	assert_int_equal(drops(c, ZOC_DROP_INVALID), 1);
	p = mk_gso(MAC_X, MAC_A, 3000, 1000, false);
	p->gso_type = 0x33;
	send1(e->sw, a, p);
	assert_int_equal(drops(c, ZOC_DROP_INVALID), 2);
	/* an ordinary frame is untouched */
	fport_reset(c);
	send1(e->sw, a, mk(MAC_X, MAC_A, -1, 60));
	assert_int_equal(c->n, 1);
	assert_int_equal(c->len[0], 60);
	remove_port(a);
	remove_port(b);
	remove_port(c);
	remove_port(d);
	assert_int_equal(zoc_pktpool_available_giant(zoc_pktpool_local()), ZOC_PKT_GIANT_DEFAULT);
}

/* 802.1Q on the way: the checksum offset moves with the tag. */
static void test_gso_vlan(void **state)
{
	struct env *e = *state;
	struct fport *a = add_simple(e->sw, "a", ZOC_VLAN_ACCESS, 20);
	struct zoc_port_config cfg;
	struct fport *t;
	struct zoc_pkt *p;

	zoc_port_config_init(&cfg, "t");
	cfg.vlan_mode = ZOC_VLAN_TRUNK;
	assert_int_equal(zoc_port_config_trunk_allow(&cfg, 20, true), 0);
	t = add_port(e->sw, &cfg);
	/* segmented with the tag in front of every segment */
	send1(e->sw, a, mk_gso(MAC_X, MAC_A, 2000, 1000, false));
	assert_int_equal(t->n, 2);
	assert_int_equal(t->len[0], 18 + 40 + 1000);
	assert_int_equal(t->frame[1][12], 0x81);
	assert_int_equal(t->frame[1][15], 20);
	/* a tagged frame into the access port loses its tag: csum_start - 4 */
	fport_reset(a);
	p = mk(MAC_A, MAC_X, 20, 100);
	p->flags |= ZOC_PKT_F_CSUM_NEEDED;
	p->csum_start = 38;
	p->csum_offset = 16;
	send1(e->sw, t, p);
	assert_int_equal(a->n, 1);
	assert_int_equal(a->len[0], 96);
	assert_int_equal(a->csum_start[0], 34);
	/* and an untagged one into the trunk port gains it: + 4 */
	zoc_port_set_gso_caps(t->port, ZOC_GSO_CAP_TCPV4);
	fport_reset(t);
	send1(e->sw, a, mk_gso(MAC_X, MAC_A, 2000, 1000, false));
	assert_int_equal(t->n, 1);
	assert_int_equal(t->len[0], 18 + 40 + 2000);
	assert_int_equal(t->csum_start[0], 38);
	remove_port(a);
	remove_port(t);
}

static void test_drop_reasons(void **state)
{
	struct env *e = *state;
	struct fport *a = add_simple(e->sw, "a", ZOC_VLAN_NONE, 0);
	struct fport *b = add_simple(e->sw, "b", ZOC_VLAN_NONE, 0);
	struct fport *c = add_simple(e->sw, "c", ZOC_VLAN_NONE, 0);
	struct zoc_port_config cfg;
	struct zoc_pkt *v[32];
	struct zoc_pkt *hold[600];
	unsigned nh = 0;
	json_t *j, *d;

	/* Ring full: b accepts 2 of 5. */
	send1(e->sw, b, mk(BCAST, MAC_B, -1, 60));
	b->accept = 2;
	for (int i = 0; i < 5; i++)
		v[i] = mk(MAC_B, MAC_A, -1, 60);
	zoc_vswitch_rx_burst(e->sw, a->port, v, 5);
	assert_int_equal(b->n, 2);
	assert_int_equal(drops(b, ZOC_DROP_RING_FULL), 3);
	b->accept = ~0u;
	/* Filtered: destination on the input port. */
	send1(e->sw, a, mk(MAC_A, MAC_C, -1, 60));
	assert_int_equal(drops(a, ZOC_DROP_FILTERED), 1);
	/* Flood limit: 3 per second. */
	zoc_port_get_config(c->port, &cfg);
	cfg.flood_limit_pps = 3;
	assert_int_equal(zoc_port_set_config(c->port, &cfg), 0);
	for (int i = 0; i < 5; i++)
		send1(e->sw, c, mk(BCAST, MAC_C, -1, 60));
	assert_int_equal(drops(c, ZOC_DROP_FLOOD_LIMIT), 2);
	g_now += 1000000000ull; /* one second later: 3 more */
	for (int i = 0; i < 5; i++)
		send1(e->sw, c, mk(BCAST, MAC_C, -1, 60));
	assert_int_equal(drops(c, ZOC_DROP_FLOOD_LIMIT), 4);
	/* Unicast is not limited. */
	send1(e->sw, c, mk(MAC_A, MAC_C, -1, 60));
	assert_int_equal(drops(c, ZOC_DROP_FLOOD_LIMIT), 4);
	/* No buffer: the pool is empty when a flood needs copies. */
	for (;;) {
		struct zoc_pkt *p = zoc_pkt_alloc(zoc_pktpool_local(), 60);

		if (!p)
			break;
		hold[nh++] = p;
	}
	assert_true(nh >= 2);
	zoc_pkt_free(hold[--nh]); /* one left: the frame itself */
	send1(e->sw, a, mk(BCAST, MAC_A, -1, 60));
	/* One of b, c got the original; the other's copy failed. */
	assert_int_equal(drops(b, ZOC_DROP_NO_BUFFER) + drops(c, ZOC_DROP_NO_BUFFER), 1);
	zoc_pkt_free_bulk(hold, nh);
	/* The JSON carries them. */
	j = zoc_vswitch_to_json(e->sw);
	assert_int_equal(json_array_size(json_object_get(j, "ports")), 3);
	d = json_object_get(json_object_get(json_object_get(json_array_get(json_object_get(j, "ports"),
								       1),
							 "stats"),
				     "drops"),
			    "ring_full");
	assert_int_equal(json_integer_value(d), 3);
	assert_string_equal(json_string_value(json_object_get(j, "name")), "sw0");
	json_decref(j);
	remove_port(a);
	remove_port(b);
	remove_port(c);
}

static struct zoc_vswitch *g_loop_sw;

/* A bad owner: sends what it receives straight back into the switch. */
static unsigned loop_tx(struct zoc_port *port, struct zoc_pkt **pkts, unsigned n)
{
	zoc_vswitch_rx_burst(g_loop_sw, port, pkts, n);
	return n;
}

static const struct zoc_port_ops g_loop_ops = {.type = "loop", .tx_burst = loop_tx};

static void test_nested_rx_refused(void **state)
{
	struct env *e = *state;
	struct fport *a = add_simple(e->sw, "a", ZOC_VLAN_NONE, 0);
	struct fport *b = add_simple(e->sw, "b", ZOC_VLAN_NONE, 0);
	struct zoc_port_config cfg;
	struct zoc_port *lp;

	g_loop_sw = e->sw;
	zoc_port_config_init(&cfg, "loop");
	assert_int_equal(zoc_vswitch_port_add(e->sw, &cfg, &g_loop_ops, NULL, &lp), 0);
	send1(e->sw, a, mk(BCAST, MAC_A, -1, 60));
	assert_int_equal(b->n, 1); /* not a second copy through the loop */
	{
		struct zoc_port_stats st;

		zoc_port_get_stats(lp, &st);
		assert_int_equal(st.tx_packets, 1);
		assert_int_equal(st.drops[ZOC_DROP_RING_FULL], 1);
	}
	/* The switch still works. */
	send1(e->sw, b, mk(MAC_A, MAC_B, -1, 60));
	assert_int_equal(a->n, 1);
	assert_int_equal(zoc_vswitch_port_remove(lp, NULL, NULL), 0);
	remove_port(a);
	remove_port(b);
}

static void test_flow_cache(void **state)
{
	struct env *e = *state;
	struct fport *a = add_simple(e->sw, "a", ZOC_VLAN_NONE, 0);
	struct fport *b = add_simple(e->sw, "b", ZOC_VLAN_NONE, 0);
	struct fport *c;
	struct zoc_vswitch_cache_stats s0, s1;

	send1(e->sw, b, mk(BCAST, MAC_B, -1, 60));
	zoc_vswitch_cache_stats(e->sw, &s0);
	send1(e->sw, a, mk(MAC_B, MAC_A, -1, 60)); /* miss, then cached */
	for (int i = 0; i < 10; i++)
		send1(e->sw, a, mk(MAC_B, MAC_A, -1, 60));
	zoc_vswitch_cache_stats(e->sw, &s1);
	assert_int_equal(s1.misses - s0.misses, 1);
	assert_int_equal(s1.hits - s0.hits, 10);
	/* A port change invalidates everything. */
	c = add_simple(e->sw, "c", ZOC_VLAN_NONE, 0);
	send1(e->sw, a, mk(MAC_B, MAC_A, -1, 60));
	zoc_vswitch_cache_stats(e->sw, &s0);
	assert_int_equal(s0.misses - s1.misses, 1);
	/* Ageing that removes something invalidates too. */
	send1(e->sw, a, mk(MAC_B, MAC_A, -1, 60));
	g_now += 301ull * 1000000000ull;
	send1(e->sw, b, mk(MAC_C, MAC_B, -1, 60)); /* b fresh */
	assert_int_equal(zoc_vswitch_age(e->sw), 1); /* a went */
	send1(e->sw, a, mk(MAC_B, MAC_A, -1, 60));
	zoc_vswitch_cache_stats(e->sw, &s1);
	/* b's frame to the unknown C was a miss too (then flooded). */
	assert_int_equal(s1.misses - s0.misses, 2);
	assert_int_equal(s1.hits - s0.hits, 1);
	/* A removed port's MACs are flushed: b unknown, so flooded to c. */
	remove_port(b);
	fport_reset(c);
	send1(e->sw, a, mk(MAC_B, MAC_A, -1, 60));
	assert_int_equal(c->n, 1);
	remove_port(a);
	remove_port(c);
}

static void test_config_and_registry(void **state)
{
	struct env *e = *state;
	struct zoc_port_config cfg;
	struct zoc_vswitch *sw2;
	struct fport *a, *v;
	struct zoc_port *dummy;
	const char *why;
	json_t *j;

	zoc_port_config_init(&cfg, "");
	assert_int_equal(zoc_port_config_check(&cfg, &why), -EINVAL);
	zoc_port_config_init(&cfg, "x");
	cfg.vlan_mode = ZOC_VLAN_ACCESS;
	cfg.vid = 4095;
	assert_int_equal(zoc_port_config_check(&cfg, NULL), -EINVAL);
	cfg.vlan_mode = ZOC_VLAN_TRUNK;
	cfg.vid = 0;
	assert_int_equal(zoc_port_config_trunk_parse(&cfg, "0"), -EINVAL);
	assert_int_equal(zoc_port_config_trunk_parse(&cfg, "5-3"), -EINVAL);
	assert_int_equal(zoc_port_config_trunk_parse(&cfg, "1,x"), -EINVAL);
	assert_int_equal(zoc_port_config_trunk_parse(&cfg, "1-4094"), 0);
	assert_int_equal(zoc_port_config_check(&cfg, NULL), 0);
	cfg.has_mac = true;
	cfg.mac[0] = 1;
	assert_int_equal(zoc_port_config_check(&cfg, NULL), -EINVAL);
	assert_int_equal(zoc_vswitch_port_add(e->sw, &cfg, &g_fake_ops, NULL, &dummy), -EINVAL);
	zoc_port_config_init(&cfg, "x");
	cfg.owner = 5; /* no such reactor */
	assert_int_equal(zoc_vswitch_port_add(e->sw, &cfg, &g_fake_ops, NULL, &dummy), -EINVAL);

	assert_int_equal(zoc_vswitch_create("sw0", NULL, &sw2), -EEXIST);
	assert_int_equal(zoc_vswitch_create("", NULL, &sw2), -EINVAL);
	assert_int_equal(zoc_vswitch_create("sw1", &(struct zoc_vswitch_opts){.flow_cache = 3},
					    &sw2),
			 -EINVAL);
	assert_int_equal(zoc_vswitch_create("sw1", NULL, &sw2), 0);
	assert_ptr_equal(zoc_vswitch_find("sw1"), sw2);
	assert_int_equal(zoc_vswitch_destroy(sw2), 0);
	assert_null(zoc_vswitch_find("sw1"));

	/* A vNIC with a MAC is known at once on its VLAN. */
	zoc_port_config_init(&cfg, "vnic0");
	cfg.has_mac = true;
	memcpy(cfg.mac, MAC_C, 6);
	cfg.vlan_mode = ZOC_VLAN_ACCESS;
	cfg.vid = 7;
	v = add_port(e->sw, &cfg);
	a = add_simple(e->sw, "a", ZOC_VLAN_ACCESS, 7);
	assert_int_equal(zoc_vswitch_port_add(e->sw, &cfg, &g_fake_ops, NULL, &dummy), -EEXIST);
	assert_ptr_equal(zoc_vswitch_port_find(e->sw, "vnic0"), v->port);
	assert_ptr_equal(zoc_vswitch_fdb_lookup(e->sw, MAC_C, 7), v->port);
	send1(e->sw, a, mk(MAC_C, MAC_A, -1, 60));
	assert_int_equal(v->n, 1);
	j = zoc_port_to_json(v->port);
	assert_string_equal(json_string_value(json_object_get(j, "mac")), "02:00:00:00:00:0c");
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "vlan"), "mode")),
			    "access");
	assert_string_equal(json_string_value(json_object_get(j, "kind")), "vnic");
	json_decref(j);
	/* Changing the VLAN flushes the port's MACs (then relearns its own
	 * on the new VLAN). */
	cfg.vid = 8;
	assert_int_equal(zoc_port_set_config(v->port, &cfg), 0);
	assert_null(zoc_vswitch_fdb_lookup(e->sw, MAC_C, 7));
	assert_ptr_equal(zoc_vswitch_fdb_lookup(e->sw, MAC_C, 8), v->port);
	/* Owner / name changes are refused. */
	cfg.owner = 1;
	assert_int_equal(zoc_port_set_config(v->port, &cfg), -EINVAL);
	/* Trunk JSON lists ranges. */
	zoc_port_config_init(&cfg, "a");
	cfg.vlan_mode = ZOC_VLAN_TRUNK;
	zoc_port_config_trunk_parse(&cfg, "3,5-9,4094");
	assert_int_equal(zoc_port_set_config(a->port, &cfg), 0);
	j = zoc_port_to_json(a->port);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "vlan"),
							      "allowed")),
			    "3,5-9,4094");
	json_decref(j);
	assert_int_equal(zoc_vswitch_destroy(e->sw), -EBUSY);
	remove_port(v);
	remove_port(a);
}

/* ---- two reactors --------------------------------------------------------- */

struct xr {
	struct zoc_vswitch *sw;
	struct fport *a, *b, *c; /* a on reactor 1; b, c on reactor 0 */
	unsigned target;
	atomic_uint sent;
	atomic_int stop_sending;
	unsigned remove_at;      /* remove b once it received this many (0: never) */
	bool paced;              /* sender keeps <= 32 frames in flight to b */
	int phase;
	uint64_t quiet_since;
	unsigned pending;        /* removals not done yet */
	struct zoc_port_stats b_st, c_st;
	uint64_t deadline;
	atomic_int timed_out;
};

/* Reactor 1: bursts from a (to b's MAC, one broadcast in 16). */
static int xr_send(void *arg)
{
	struct xr *x = arg;
	struct zoc_pkt *v[ZOC_PKT_BURST];
	unsigned n = 0;

	if (atomic_load(&x->stop_sending))
		return 0;
	if (x->paced) {
		/* Paced: at most 48 frames in flight towards b (its ring holds
		 * 64), so nothing may be dropped. */
		struct zoc_port_stats st;

		zoc_port_get_stats(x->b->port, &st);
		if (atomic_load(&x->sent) - st.tx_packets - st.drops[ZOC_DROP_RING_FULL] > 32)
			return 0;
	}
	for (; n < 16; n++) {
		v[n] = zoc_pkt_alloc(zoc_pktpool_local(), 60);
		if (!v[n])
			break;
		memset(zoc_pkt_data(v[n]), 0, 60);
		memcpy(zoc_pkt_data(v[n]), n == 15 ? BCAST : MAC_B, 6);
		memcpy(zoc_pkt_data(v[n]) + 6, MAC_A, 6);
	}
	if (n)
		zoc_vswitch_rx_burst(x->sw, x->a->port, v, n);
	atomic_fetch_add(&x->sent, n);
	return (int)n;
}

static void xr_port_done(void *arg)
{
	struct fport *f = arg;

	atomic_store(&f->removed, 1);
}

static void xr_sender_quiet(void *arg)
{
	struct xr *x = arg;

	x->phase = 2;
}

/* Reactor 0: the control side. Phases: 0 traffic (maybe removing b),
 * 1 waiting for the sender to be quiet (barrier), 2 letting the rings
 * drain, 3 removing the ports, 4 done. */
static int xr_watch(void *arg)
{
	struct xr *x = arg;

	if (zoc_now_ns() > x->deadline) {
		atomic_store(&x->timed_out, 1);
		atomic_store(&x->stop_sending, 1);
		zoc_reactors_stop();
		return 0;
	}
	switch (x->phase) {
	case 0:
		if (x->remove_at && x->b && atomic_load(&x->b->total) >= x->remove_at &&
		    !x->pending) {
			x->pending = 1;
			assert_int_equal(zoc_vswitch_port_remove(x->b->port, xr_port_done, x->b), 0);
			assert_int_equal(zoc_vswitch_port_remove(x->b->port, NULL, NULL), -EALREADY);
			return 1;
		}
		if (x->pending && atomic_load(&x->b->removed)) {
			x->pending = 0;
			x->remove_at = 0;
			/* Keep the traffic going a while after the removal. */
			x->target = atomic_load(&x->sent) + 20000;
		}
		if (atomic_load(&x->sent) >= x->target && !x->remove_at) {
			atomic_store(&x->stop_sending, 1);
			x->phase = 1;
			assert_int_equal(zoc_reactors_barrier(xr_sender_quiet, x), 0);
		}
		return 0;
	case 2:
		/* 20 ms for the owner to drain what is left in the rings. */
		if (!x->quiet_since)
			x->quiet_since = zoc_now_ns();
		if (zoc_now_ns() - x->quiet_since < 20000000ull)
			return 0;
		if (!atomic_load(&x->b->removed))
			zoc_port_get_stats(x->b->port, &x->b_st);
		zoc_port_get_stats(x->c->port, &x->c_st);
		x->phase = 3;
		x->pending = 3;
		assert_int_equal(zoc_vswitch_port_remove(x->a->port, xr_port_done, x->a), 0);
		assert_int_equal(zoc_vswitch_port_remove(x->c->port, xr_port_done, x->c), 0);
		if (!atomic_load(&x->b->removed))
			assert_int_equal(zoc_vswitch_port_remove(x->b->port, xr_port_done, x->b), 0);
		return 1;
	case 3:
		if (atomic_load(&x->a->removed) && atomic_load(&x->b->removed) &&
		    atomic_load(&x->c->removed)) {
			assert_int_equal(zoc_vswitch_destroy(x->sw), 0);
			x->phase = 4;
			zoc_reactors_stop();
		}
		return 0;
	default:
		return 0;
	}
}

static void run_two_reactors(bool interrupt_mode, unsigned remove_at)
{
	unsigned cores[2] = {0, 1};
	struct zoc_reactor_opts o = {.cores = cores, .num_cores = 2,
				     .interrupt_mode = interrupt_mode};
	static struct zoc_poller_ops sops = {.poll = xr_send}, wops = {.poll = xr_watch};
	struct xr x = {.target = 40000, .remove_at = remove_at, .paced = !remove_at};
	struct zoc_port_config cfg;
	uint32_t s, l;

	assert_int_equal(zoc_reactors_init(&o), 0);
	assert_int_equal(zoc_pktpools_init(1024, 4), 0);
	assert_int_equal(zoc_vswitch_create("x", &(struct zoc_vswitch_opts){.ring_size = 64},
					    &x.sw),
			 0);
	zoc_port_config_init(&cfg, "a");
	cfg.owner = 1;
	x.a = add_port(x.sw, &cfg);
	x.a->expect_reactor = 1;
	zoc_port_config_init(&cfg, "b");
	cfg.has_mac = true;
	memcpy(cfg.mac, MAC_B, 6);
	x.b = add_port(x.sw, &cfg);
	x.b->expect_reactor = 0;
	zoc_port_config_init(&cfg, "c");
	x.c = add_port(x.sw, &cfg);
	x.c->expect_reactor = 0;
	x.deadline = zoc_now_ns() + 30ull * 1000000000ull;
	/* In interrupt mode the paced sender has nothing to wake it: a timed
	 * poller (reactor 0, the receiver, is woken by the switch's kicks).
	 * The unpaced removal test sends every 20 us, not flat out. */
	assert_non_null(zoc_poller_register(zoc_reactor_get(1), &sops, &x,
					    interrupt_mode || remove_at ? 20 : 0, "send"));
	/* Interrupt mode: reactor 0 sleeps when idle; the watcher must still
	 * run now and then. */
	assert_non_null(zoc_poller_register(zoc_reactor_get(0), &wops, &x,
					    interrupt_mode ? 1000 : 0, "watch"));
	assert_int_equal(zoc_reactors_run(), 0);
	if (atomic_load(&x.timed_out))
		printf("# timed out in phase %d: %u sent, b got %u\n", x.phase, atomic_load(&x.sent),
		       atomic_load(&x.b->total));
	assert_false(atomic_load(&x.timed_out));
	assert_int_equal(x.phase, 4);
	assert_int_equal(atomic_load(&x.b->wrong_thread), 0);
	assert_int_equal(atomic_load(&x.c->wrong_thread), 0);
	assert_int_equal(atomic_load(&x.b->after_removed), 0);
	assert_true(atomic_load(&x.c->total) > 0);
	if (remove_at) {
		/* After b went, its MAC was unknown: a's frames flooded to c. */
		assert_true(atomic_load(&x.b->total) >= remove_at);
		/* (counted whether delivered or dropped for a full ring: not
		 * timing dependent) */
		assert_true(x.c_st.tx_packets + x.c_st.drops[ZOC_DROP_RING_FULL] +
				    x.c_st.drops[ZOC_DROP_NO_BUFFER] >
			    atomic_load(&x.sent) / 16 + 10000);
		printf("# removal under traffic: %u sent, b got %u before removal, c got %u\n",
		       atomic_load(&x.sent), atomic_load(&x.b->total), atomic_load(&x.c->total));
	} else {
		/* Paced below the ring size: every frame reached b, on reactor 0. */
		assert_int_equal(x.b_st.tx_packets, atomic_load(&x.b->total));
		assert_int_equal(x.b_st.drops[ZOC_DROP_RING_FULL], 0);
		assert_int_equal(x.b_st.tx_packets, atomic_load(&x.sent));
		assert_int_equal(x.b_st.tx_packets + x.b_st.drops[ZOC_DROP_RING_FULL] +
					 x.b_st.drops[ZOC_DROP_NO_BUFFER],
				 atomic_load(&x.sent));
		printf("# cross-reactor (%s mode): %u sent, b got %llu, ring-full drops %llu\n",
		       interrupt_mode ? "interrupt" : "polling", atomic_load(&x.sent),
		       (unsigned long long)x.b_st.tx_packets,
		       (unsigned long long)x.b_st.drops[ZOC_DROP_RING_FULL]);
	}
	/* Every packet is back in its pool (remote frees included). */
	for (unsigned r = 0; r < 2; r++) {
		zoc_pktpool_available(zoc_pktpool_of(r), &s, &l);
		assert_int_equal(s, 1024);
		assert_int_equal(l, 4);
	}
	free(x.a);
	free(x.b);
	free(x.c);
	zoc_pktpools_fini();
	zoc_reactors_fini();
}

static void test_cross_reactor_delivery(void **state)
{
	run_two_reactors(false, 0);
}

static void test_cross_reactor_interrupt_mode(void **state)
{
	run_two_reactors(true, 0);
}

static void test_port_removal_under_traffic(void **state)
{
	run_two_reactors(false, 5000);
}

/* ---- micro-benchmark (printed, not asserted) ------------------------------ */

static unsigned bench_tx(struct zoc_port *port, struct zoc_pkt **pkts, unsigned n)
{
	zoc_pkt_free_bulk(pkts, n);
	return n;
}

static const struct zoc_port_ops g_bench_ops = {.type = "bench", .tx_burst = bench_tx};

static void test_bench_fast_path(void **state)
{
	struct zoc_reactor_opts o = {0};
	struct zoc_vswitch *sw;
	struct zoc_port *a, *b;
	struct zoc_port_config cfg;
	struct zoc_vswitch_cache_stats cs;
	struct zoc_pkt *v[ZOC_PKT_BURST];
	uint64_t t0, t, n = 0;

	assert_int_equal(zoc_reactors_init(&o), 0);
	assert_int_equal(zoc_pktpools_init(256, 1), 0);
	assert_int_equal(zoc_vswitch_create("bench", NULL, &sw), 0);
	zoc_port_config_init(&cfg, "a");
	cfg.has_mac = true;
	memcpy(cfg.mac, MAC_A, 6);
	assert_int_equal(zoc_vswitch_port_add(sw, &cfg, &g_bench_ops, NULL, &a), 0);
	zoc_port_config_init(&cfg, "b");
	cfg.has_mac = true;
	memcpy(cfg.mac, MAC_B, 6);
	assert_int_equal(zoc_vswitch_port_add(sw, &cfg, &g_bench_ops, NULL, &b), 0);
	t0 = zoc_now_ns();
	do {
		for (int k = 0; k < 64; k++) {
			assert_int_equal(zoc_pkt_alloc_bulk(zoc_pktpool_local(), v, ZOC_PKT_BURST,
							    64),
					 0);
			for (int i = 0; i < ZOC_PKT_BURST; i++) {
				uint8_t *d = zoc_pkt_data(v[i]);

				memcpy(d, MAC_B, 6);
				memcpy(d + 6, MAC_A, 6);
				d[12] = 0x08;
				d[13] = 0;
			}
			zoc_vswitch_rx_burst(sw, a, v, ZOC_PKT_BURST);
			n += ZOC_PKT_BURST;
		}
		t = zoc_now_ns();
	} while (t - t0 < 300000000ull);
	zoc_vswitch_cache_stats(sw, &cs);
	assert_true(cs.hits >= n - 1);
	printf("# bench: rx_burst 64 B unicast, flow cache hit, incl. alloc/free: %.2f Mpps "
	       "(%llu packets in %.0f ms, 1 core)\n",
	       (double)n * 1000.0 / (double)(t - t0), (unsigned long long)n,
	       (double)(t - t0) / 1e6);
	zoc_vswitch_port_remove(a, NULL, NULL);
	zoc_vswitch_port_remove(b, NULL, NULL);
	assert_int_equal(zoc_vswitch_destroy(sw), 0);
	zoc_pktpools_fini();
	zoc_reactors_fini();
}

int main(void)
{
	zoc_log_set_level(ZOC_LOG_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pkt_pool),
		cmocka_unit_test(test_pkt_remote_free),
		cmocka_unit_test(test_spsc_ring),
		cmocka_unit_test(test_flow_hash),
		cmocka_unit_test(test_fdb_basic),
		cmocka_unit_test(test_fdb_concurrent),
		cmocka_unit_test_setup_teardown(test_learning_and_forwarding, setup1, teardown1),
		cmocka_unit_test_setup_teardown(test_aging, setup1, teardown1),
		cmocka_unit_test_setup_teardown(test_station_move, setup1, teardown1),
		cmocka_unit_test_setup_teardown(test_flood_split_horizon_batching, setup1, teardown1),
		cmocka_unit_test_setup_teardown(test_vlans, setup1, teardown1),
		cmocka_unit_test_setup_teardown(test_malformed_frames, setup1, teardown1),
		cmocka_unit_test_setup_teardown(test_drop_reasons, setup1, teardown1),
		cmocka_unit_test_setup_teardown(test_gso_delivery, setup1, teardown1),
		cmocka_unit_test_setup_teardown(test_gso_vlan, setup1, teardown1),
		cmocka_unit_test_setup_teardown(test_flow_cache, setup1, teardown1),
		cmocka_unit_test_setup_teardown(test_nested_rx_refused, setup1, teardown1),
		cmocka_unit_test_setup_teardown(test_config_and_registry, setup1, teardown1),
		cmocka_unit_test(test_cross_reactor_delivery),
		cmocka_unit_test(test_cross_reactor_interrupt_mode),
		cmocka_unit_test(test_port_removal_under_traffic),
		cmocka_unit_test(test_bench_fast_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
