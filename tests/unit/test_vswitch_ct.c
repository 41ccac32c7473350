/* SPDX-License-Identifier: MIT */
/*
 * test_vswitch_ct.c - security groups and connection tracking in the
 * switch's data path (src/net/vswitch.c): TCP allowed / denied both ways
 * through two ports, replies without rules, RST injection, rule changes
 * for new connections only, detach, the flow cache, a full table keeping
 * established flows, non-IP and malformed frames, and two reactors
 * (frames steered to the reactor that owns their session's partition).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/reactor.h"
#include "core/util.h"
#include "net/conntrack.h"
#include "net/pkt.h"
#include "net/secgroup.h"
#include "net/vswitch.h"

#define MAXREC 4096

static const uint8_t MAC_A[6] = {0x02, 0, 0, 0, 0, 0xa}; /* the VM (group) */
static const uint8_t MAC_B[6] = {0x02, 0, 0, 0, 0, 0xb}; /* the other side */
static const uint8_t IP_A[4] = {10, 0, 0, 1};
static const uint8_t IP_B[4] = {10, 0, 0, 2};

struct fport {
	struct zoc_port *port;
	int expect_reactor;
	atomic_int wrong_thread;
	atomic_uint total;
	unsigned n;
	uint8_t flags[MAXREC];   /* TCP flags of what arrived */
	uint16_t sport[MAXREC];
	uint32_t seq[MAXREC];
	atomic_int removed;
};

static unsigned fake_tx(struct zoc_port *port, struct zoc_pkt **pkts, unsigned n)
{
	struct fport *f = zoc_port_ctx(port);
	struct zoc_reactor *cur = zoc_reactor_current();

	if (f->expect_reactor >= 0 && (!cur || (int)zoc_reactor_index(cur) != f->expect_reactor))
		atomic_fetch_add(&f->wrong_thread, 1);
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *d = zoc_pkt_data(pkts[i]);

		if (f->n < MAXREC) {
			if (pkts[i]->len >= 54 && d[12] == 0x08 && d[13] == 0 && d[23] == 6) {
				f->flags[f->n] = d[47];
				f->sport[f->n] = (uint16_t)(d[34] << 8 | d[35]);
				f->seq[f->n] = (uint32_t)d[38] << 24 | (uint32_t)d[39] << 16 |
					       (uint32_t)d[40] << 8 | d[41];
			} else {
				f->flags[f->n] = 0;
			}
			f->n++;
		}
		zoc_pkt_free(pkts[i]);
	}
	atomic_fetch_add(&f->total, n);
	return n;
}

static const struct zoc_port_ops g_ops = {.type = "test", .tx_burst = fake_tx};

static uint64_t g_now;

static uint64_t fake_clock(void *arg)
{
	return g_now;
}

/* An Ethernet + IPv4 + TCP frame (60 bytes). */
static struct zoc_pkt *tcp_frame(const uint8_t *dmac, const uint8_t *smac, const uint8_t *sip,
				 const uint8_t *dip, uint16_t sport, uint16_t dport, uint8_t flags,
				 uint32_t seq, uint32_t ack)
{
	struct zoc_pkt *p = zoc_pkt_alloc(zoc_pktpool_local(), 60);
	uint8_t *d;

	assert_non_null(p);
	d = zoc_pkt_data(p);
	memset(d, 0, 60);
	memcpy(d, dmac, 6);
	memcpy(d + 6, smac, 6);
	d[12] = 0x08;
	d[14] = 0x45;
	d[17] = 40; /* total length */
	d[22] = 64;
	d[23] = 6;
	memcpy(d + 26, sip, 4);
	memcpy(d + 30, dip, 4);
	d[34] = (uint8_t)(sport >> 8);
	d[35] = (uint8_t)sport;
	d[36] = (uint8_t)(dport >> 8);
	d[37] = (uint8_t)dport;
	for (int i = 0; i < 4; i++) {
		d[38 + i] = (uint8_t)(seq >> (24 - 8 * i));
		d[42 + i] = (uint8_t)(ack >> (24 - 8 * i));
	}
	d[46] = 0x50;
	d[47] = flags;
	d[48] = 0xff; /* window 65535 */
	d[49] = 0xff;
	return p;
}

struct env {
	struct zoc_vswitch *sw;
	struct fport *a, *b;
	struct zoc_sg *sg;
};

static struct fport *add_port(struct zoc_vswitch *sw, const char *name, const uint8_t *mac,
			      enum zoc_port_kind kind, unsigned owner)
{
	struct fport *f = calloc(1, sizeof(*f));
	struct zoc_port_config cfg;

	assert_non_null(f);
	f->expect_reactor = -1;
	zoc_port_config_init(&cfg, name);
	cfg.kind = kind;
	cfg.owner = owner;
	cfg.has_mac = true;
	memcpy(cfg.mac, mac, 6);
	assert_int_equal(zoc_vswitch_port_add(sw, &cfg, &g_ops, f, &f->port), 0);
	return f;
}

static void removed_cb(void *arg)
{
	atomic_store(&((struct fport *)arg)->removed, 1);
}

static void add_rule(struct zoc_sg *sg, const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	struct zoc_sg_rule r;
	char err[256];
	uint32_t id;

	assert_non_null(j);
	assert_int_equal(zoc_sg_rule_from_json(j, &r, err, sizeof(err)), 0);
	assert_int_equal(zoc_sg_rule_add(sg, &r, &id), 0);
	json_decref(j);
}

static int setup_opts(void **state, const struct zoc_vswitch_opts *o)
{
	static struct env e;
	struct zoc_reactor_opts ro = {0};

	memset(&e, 0, sizeof(e));
	assert_int_equal(zoc_reactors_init(&ro), 0);
	assert_int_equal(zoc_pktpools_init(512, 16), 0);
	assert_int_equal(zoc_vswitch_create("ct0", o, &e.sw), 0);
	g_now = 1000ull * 1000000000ull;
	zoc_vswitch_set_clock(e.sw, fake_clock, NULL);
	e.a = add_port(e.sw, "vm-a", MAC_A, ZOC_PORT_VNIC, 0);
	e.b = add_port(e.sw, "up-b", MAC_B, ZOC_PORT_UPLINK, 0);
	e.sg = zoc_sg_create("web");
	assert_non_null(e.sg);
	*state = &e;
	return 0;
}

static int setup(void **state)
{
	return setup_opts(state, NULL);
}

static int setup_small(void **state)
{
	struct zoc_vswitch_opts o = {.ct_capacity = 64, .ct_max_capacity = 64};

	return setup_opts(state, &o);
}

static int teardown(void **state)
{
	struct env *e = *state;
	uint32_t s, l;

	assert_int_equal(zoc_vswitch_port_remove(e->a->port, removed_cb, e->a), 0);
	assert_int_equal(zoc_vswitch_port_remove(e->b->port, removed_cb, e->b), 0);
	assert_true(atomic_load(&e->a->removed) && atomic_load(&e->b->removed));
	free(e->a);
	free(e->b);
	zoc_sg_destroy(e->sg);
	assert_int_equal(zoc_vswitch_destroy(e->sw), 0);
	zoc_pktpool_available(zoc_pktpool_local(), &s, &l);
	assert_int_equal(s, 512);
	assert_int_equal(l, 16);
	zoc_pktpools_fini();
	zoc_reactors_fini();
	return 0;
}

static void send1(struct env *e, struct fport *from, struct zoc_pkt *p)
{
	zoc_vswitch_rx_burst(e->sw, from->port, &p, 1);
}

/* A -> B (the VM's egress). */
static void a2b(struct env *e, uint16_t sport, uint16_t dport, uint8_t fl, uint32_t seq,
		uint32_t ack)
{
	send1(e, e->a, tcp_frame(MAC_B, MAC_A, IP_A, IP_B, sport, dport, fl, seq, ack));
}

/* B -> A (the VM's ingress). */
static void b2a(struct env *e, uint16_t sport, uint16_t dport, uint8_t fl, uint32_t seq,
		uint32_t ack)
{
	send1(e, e->b, tcp_frame(MAC_A, MAC_B, IP_B, IP_A, sport, dport, fl, seq, ack));
}

static uint64_t drops(struct fport *f, enum zoc_drop_reason r)
{
	struct zoc_port_stats st;

	zoc_port_get_stats(f->port, &st);
	return st.drops[r];
}

static void sum_stats(struct zoc_ct *ct, unsigned part, void *arg)
{
	struct zoc_ct_stats *acc = arg, st;

	zoc_ct_get_stats(ct, &st);
	acc->used += st.used;
	acc->fc_hits += st.fc_hits;
	acc->fc_misses += st.fc_misses;
	acc->per_state[ZOC_CT_S_ESTABLISHED] += st.per_state[ZOC_CT_S_ESTABLISHED];
}

static struct zoc_ct_stats ct_stats(struct env *e)
{
	struct zoc_ct_stats st;

	memset(&st, 0, sizeof(st));
	assert_int_equal(zoc_vswitch_ct_foreach(e->sw, sum_stats, NULL, &st), 0);
	return st;
}

#define S ZOC_TCP_SYN
#define A ZOC_TCP_ACK
#define R ZOC_TCP_RST
#define F ZOC_TCP_FIN

/* A handshake A:sport -> B:dport; returns with the connection established
 * (A's next seq 1001, B's 5001). */
static void handshake_out(struct env *e, uint16_t sport, uint16_t dport)
{
	unsigned na = e->a->n, nb = e->b->n;

	a2b(e, sport, dport, S, 1000, 0);
	b2a(e, dport, sport, S | A, 5000, 1001);
	a2b(e, sport, dport, A, 1001, 5001);
	assert_int_equal(e->b->n, nb + 2);
	assert_int_equal(e->a->n, na + 1);
}

static void test_allowed_denied_both_ways(void **state)
{
	struct env *e = *state;

	add_rule(e->sg, "{\"direction\": \"ingress\", \"protocol\": \"tcp\", \"port_min\": 22, "
			"\"port_max\": 22}");
	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, e->sg), 0);
	assert_ptr_equal(zoc_vswitch_port_secgroup(e->a->port), e->sg);
	/* Uplinks take no group. */
	assert_int_equal(zoc_vswitch_port_set_secgroup(e->b->port, e->sg), -EINVAL);
	/* Egress (no egress rule: allowed) and its reply (no rule needed). */
	handshake_out(e, 40000, 80);
	a2b(e, 40000, 80, A | ZOC_TCP_PSH, 1001, 5001);
	b2a(e, 80, 40000, A, 5001, 1001);
	assert_int_equal(e->b->n, 3);
	assert_int_equal(e->a->n, 2);
	/* Ingress to 80: denied; to 22: allowed, with its reply. */
	b2a(e, 50000, 80, S, 7000, 0);
	assert_int_equal(e->a->n, 2);
	assert_int_equal(drops(e->a, ZOC_DROP_SECGROUP), 1);
	b2a(e, 50001, 22, S, 7000, 0);
	assert_int_equal(e->a->n, 3);
	a2b(e, 22, 50001, S | A, 9000, 7001);
	assert_int_equal(e->b->n, 4);
	b2a(e, 50001, 22, A, 7001, 9001);
	assert_int_equal(e->a->n, 4);
	/* A mid-stream segment without a session: no_session on A. */
	b2a(e, 50002, 22, A, 1, 1);
	assert_int_equal(drops(e->a, ZOC_DROP_CT_NO_SESSION), 1);
	/* Two established sessions, both in zone A. */
	assert_int_equal(ct_stats(e).per_state[ZOC_CT_S_ESTABLISHED], 2);
	/* Port JSON names the group and the new drop reasons. */
	{
		json_t *j = zoc_port_to_json(e->a->port);

		assert_string_equal(json_string_value(json_object_get(j, "secgroup")), "web");
		assert_int_equal(json_integer_value(json_object_get(
					 json_object_get(json_object_get(j, "stats"), "drops"),
					 "secgroup")),
				 1);
		json_decref(j);
	}
	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, NULL), 0);
}

static void test_egress_rules_and_change(void **state)
{
	struct env *e = *state;

	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, e->sg), 0);
	handshake_out(e, 40000, 80);
	/* From now on egress is allow-listed to 443 only. */
	add_rule(e->sg, "{\"direction\": \"egress\", \"protocol\": \"tcp\", \"port_min\": 443, "
			"\"port_max\": 443}");
	/* The existing connection keeps going both ways. */
	a2b(e, 40000, 80, A | ZOC_TCP_PSH, 1001, 5001);
	b2a(e, 80, 40000, A, 5001, 1001);
	assert_int_equal(e->b->n, 3);
	assert_int_equal(e->a->n, 2);
	/* A new one to 80 is refused at A's egress; 443 opens. */
	a2b(e, 40001, 80, S, 1000, 0);
	assert_int_equal(e->b->n, 3);
	assert_int_equal(drops(e->a, ZOC_DROP_SECGROUP), 1);
	handshake_out(e, 40002, 443);
	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, NULL), 0);
}

static void test_rst_injection(void **state)
{
	struct env *e = *state;

	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, e->sg), 0);
	handshake_out(e, 40000, 80);
	/* A blind RST far outside the window: dropped as invalid on A. */
	b2a(e, 80, 40000, R, 5001 + 0x40000000u, 0);
	assert_int_equal(e->a->n, 1);
	assert_int_equal(drops(e->a, ZOC_DROP_CT_INVALID), 1);
	/* A blind SYN-ACK for a connection that does not exist. */
	b2a(e, 81, 40000, S | A, 1, 1);
	assert_int_equal(e->a->n, 1);
	/* The connection still works; an in-window RST closes it. */
	a2b(e, 40000, 80, A, 1001, 5001);
	assert_int_equal(e->b->n, 3);
	b2a(e, 80, 40000, R, 5001, 0);
	assert_int_equal(e->a->n, 2);
	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, NULL), 0);
}

static void test_detach_and_untracked(void **state)
{
	struct env *e = *state;
	struct zoc_pkt *p;
	uint8_t *d;

	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, e->sg), 0);
	/* ARP passes untracked both ways. */
	p = tcp_frame(MAC_A, MAC_B, IP_B, IP_A, 1, 2, S, 0, 0);
	d = zoc_pkt_data(p);
	d[12] = 0x08;
	d[13] = 0x06;
	send1(e, e->b, p);
	assert_int_equal(e->a->n, 1);
	/* Malformed IP (total length beyond the frame): invalid at A's
	 * ingress, and at its egress. */
	p = tcp_frame(MAC_A, MAC_B, IP_B, IP_A, 1, 22, S, 0, 0);
	zoc_pkt_data(p)[16] = 0x10;
	send1(e, e->b, p);
	p = tcp_frame(MAC_B, MAC_A, IP_A, IP_B, 1, 22, S, 0, 0);
	zoc_pkt_data(p)[16] = 0x10;
	send1(e, e->a, p);
	assert_int_equal(e->a->n, 1);
	assert_int_equal(e->b->n, 0);
	assert_int_equal(drops(e->a, ZOC_DROP_CT_INVALID), 2);
	/* Ingress denied while attached... */
	handshake_out(e, 40000, 80);
	b2a(e, 50000, 80, S, 7000, 0);
	assert_int_equal(drops(e->a, ZOC_DROP_SECGROUP), 1);
	assert_int_equal(ct_stats(e).used, 1);
	/* ... detached: everything passes, and its sessions are gone. */
	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, NULL), 0);
	assert_null(zoc_vswitch_port_secgroup(e->a->port));
	assert_int_equal(ct_stats(e).used, 0);
	b2a(e, 50000, 80, S, 7000, 0);
	b2a(e, 50000, 80, A, 1, 1);
	assert_int_equal(e->a->n, 4);
	assert_int_equal(drops(e->a, ZOC_DROP_SECGROUP), 1);
	/* Re-attached: the old connection has no session any more. */
	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, e->sg), 0);
	b2a(e, 80, 40000, A, 5001, 1001);
	assert_int_equal(e->a->n, 4);
	assert_int_equal(drops(e->a, ZOC_DROP_CT_NO_SESSION), 1);
	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, NULL), 0);
}

static void test_flow_cache(void **state)
{
	struct env *e = *state;
	struct zoc_ct_stats st;

	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, e->sg), 0);
	handshake_out(e, 40000, 80);
	st = ct_stats(e);
	for (unsigned i = 0; i < 100; i++) {
		a2b(e, 40000, 80, A, 1001, 5001);
		b2a(e, 80, 40000, A, 5001, 1001);
	}
	assert_int_equal(e->b->n, 102);
	assert_int_equal(e->a->n, 101);
	{
		struct zoc_ct_stats st2 = ct_stats(e);

		/* Every one of the 200 segments hit the cache. */
		assert_int_equal(st2.fc_hits - st.fc_hits, 200);
		assert_int_equal(st2.fc_misses, st.fc_misses);
	}
	/* Closed and reopened on the same tuple: the entry is new, the cache
	 * must not serve the old one (generation) and the new one works. */
	b2a(e, 80, 40000, R, 5001, 0);
	g_now += 11ull * 1000000000ull; /* CLOSE times out after 10 s */
	a2b(e, 40000, 80, S, 90000, 0);
	b2a(e, 80, 40000, S | A, 70000, 90001);
	a2b(e, 40000, 80, A, 90001, 70001);
	/* An old-sequence segment is out of the new connection's window. */
	b2a(e, 80, 40000, A, 5001, 1001);
	assert_int_equal(drops(e->a, ZOC_DROP_CT_INVALID), 1);
	assert_int_equal(ct_stats(e).per_state[ZOC_CT_S_ESTABLISHED], 1);
	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, NULL), 0);
}

static void test_table_full_keeps_established(void **state)
{
	struct env *e = *state;

	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, e->sg), 0);
	for (uint16_t i = 0; i < 64; i++)
		handshake_out(e, (uint16_t)(40000 + i), 80);
	assert_int_equal(ct_stats(e).used, 64);
	/* Full of established sessions: a new connection is refused... */
	a2b(e, 50000, 80, S, 1000, 0);
	assert_int_equal(drops(e->a, ZOC_DROP_CT_FULL), 1);
	/* ... and every established one keeps passing. */
	for (uint16_t i = 0; i < 64; i++) {
		a2b(e, (uint16_t)(40000 + i), 80, A, 1001, 5001);
		b2a(e, 80, (uint16_t)(40000 + i), A, 5001, 1001);
	}
	assert_int_equal(e->b->n, 128 + 64);
	assert_int_equal(e->a->n, 64 + 64);
	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, NULL), 0);
}

static void test_replace_and_remove_with_group(void **state)
{
	struct env *e = *state;
	struct zoc_sg *strict = zoc_sg_create("strict");
	json_t *j;

	assert_non_null(strict);
	add_rule(strict, "{\"direction\": \"egress\", \"protocol\": \"udp\", \"port_min\": 53, "
			 "\"port_max\": 53}");
	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, e->sg), 0);
	handshake_out(e, 40000, 80);
	/* Replacing the group keeps the sessions: the connection goes on,
	 * a new one follows the new group's rules. */
	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, strict), 0);
	assert_int_equal(ct_stats(e).used, 1);
	a2b(e, 40000, 80, A, 1001, 5001);
	b2a(e, 80, 40000, A, 5001, 1001);
	assert_int_equal(e->b->n, 3);
	assert_int_equal(e->a->n, 2);
	a2b(e, 40001, 80, S, 1000, 0);
	assert_int_equal(e->b->n, 3);
	assert_int_equal(drops(e->a, ZOC_DROP_SECGROUP), 1);
	/* Removing the port with its group attached flushes its sessions and
	 * detaches the group; a new port that gets the same id starts clean. */
	assert_int_equal(zoc_vswitch_port_remove(e->a->port, removed_cb, e->a), 0);
	assert_true(atomic_load(&e->a->removed));
	free(e->a);
	assert_int_equal(ct_stats(e).used, 0);
	j = zoc_vswitch_to_json(e->sw);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "conntrack"),
							    "ports_with_secgroup")),
			 0);
	json_decref(j);
	e->a = add_port(e->sw, "vm-a", MAC_A, ZOC_PORT_VNIC, 0);
	assert_int_equal(zoc_port_id(e->a->port), 0);
	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, e->sg), 0);
	b2a(e, 80, 40000, A, 5001, 1001);
	assert_int_equal(e->a->n, 0);
	assert_int_equal(drops(e->a, ZOC_DROP_CT_NO_SESSION), 1);
	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, NULL), 0);
	zoc_sg_destroy(strict);
}

/* 64 B TCP segments of 32 established connections, A -> B in bursts of 32,
 * with A's group (egress tracked, flow-cache hits) and without; packet
 * alloc/fill/free included. Printed, not asserted. */
static double bench_mpps(struct env *e)
{
	uint64_t t0 = zoc_now_ns(), n = 0;

	while (zoc_now_ns() - t0 < 200000000ull) {
		for (unsigned r = 0; r < 64; r++) {
			struct zoc_pkt *v[32];

			for (uint16_t i = 0; i < 32; i++)
				v[i] = tcp_frame(MAC_B, MAC_A, IP_A, IP_B, (uint16_t)(40000 + i), 80, A,
						 1001, 5001);
			zoc_vswitch_rx_burst(e->sw, e->a->port, v, 32);
			n += 32;
		}
	}
	return (double)n / (double)(zoc_now_ns() - t0) * 1000.0;
}

static void test_bench_tracked(void **state)
{
	struct env *e = *state;
	double with, without;
	struct zoc_ct_stats st;

	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, e->sg), 0);
	for (uint16_t i = 0; i < 32; i++)
		handshake_out(e, (uint16_t)(40000 + i), 80);
	with = bench_mpps(e);
	st = ct_stats(e);
	assert_int_equal(drops(e->a, ZOC_DROP_CT_INVALID), 0);
	assert_int_equal(zoc_vswitch_port_set_secgroup(e->a->port, NULL), 0);
	without = bench_mpps(e);
	printf("# bench: rx_burst 64 B TCP, 32 flows, bursts of 32: %.2f Mpps with the port's "
	       "group (egress tracked, flow cache %llu hits / %llu misses), %.2f Mpps without "
	       "(1 core)\n",
	       with, (unsigned long long)st.fc_hits, (unsigned long long)st.fc_misses, without);
}

/* ---- two reactors -------------------------------------------------------- */

#define XR_CONNS 1500

struct xr {
	struct zoc_vswitch *sw;
	struct zoc_sg *sg;
	struct fport *a, *b;    /* a (group) on reactor 1, b on reactor 0 */
	atomic_uint sent;       /* SYNs from a */
	unsigned replied;       /* SYN-ACKs from b (reactor 0) */
	int phase;
	struct zoc_ct_stats part[2];
	uint64_t deadline;
	atomic_int timed_out;
};

/* Reactor 1: a's SYNs, each a new connection, paced. */
static int xr_send(void *arg)
{
	struct xr *x = arg;
	struct zoc_pkt *v[16];
	unsigned s = atomic_load(&x->sent), n = 0;

	/* Paced on the whole round trip (SYN to b, SYN-ACK back to a): the
	 * cross-reactor rings never hold more than ~80 frames. */
	if (s >= XR_CONNS || s - atomic_load(&x->a->total) > 64)
		return 0;
	for (; n < 16 && s + n < XR_CONNS; n++)
		v[n] = tcp_frame(MAC_B, MAC_A, IP_A, IP_B, (uint16_t)(10000 + s + n), 80, S, 1000,
				 0);
	zoc_vswitch_rx_burst(x->sw, x->a->port, v, n);
	atomic_fetch_add(&x->sent, n);
	return (int)n;
}

static void xr_part_stats(struct zoc_ct *ct, unsigned part, void *arg)
{
	struct xr *x = arg;

	/* Runs on the partition's own reactor. */
	assert_int_equal(zoc_reactor_index(zoc_reactor_current()), part);
	zoc_ct_get_stats(ct, &x->part[part]);
}

static void xr_stats_done(void *arg)
{
	struct xr *x = arg;

	x->phase = 2;
}

static void xr_removed(void *arg)
{
	struct fport *f = arg;

	atomic_store(&f->removed, 1);
}

/* Reactor 0: b answers every SYN it got with a SYN-ACK, then the control
 * steps. */
static int xr_watch(void *arg)
{
	struct xr *x = arg;
	unsigned got = atomic_load(&x->b->total), work = 0;

	if (zoc_now_ns() > x->deadline) {
		atomic_store(&x->timed_out, 1);
		zoc_reactors_stop();
		return 0;
	}
	while (x->replied < got && x->replied < MAXREC) {
		uint16_t sport = x->b->sport[x->replied];

		zoc_vswitch_rx_burst(x->sw, x->b->port,
				     (struct zoc_pkt *[]){tcp_frame(MAC_A, MAC_B, IP_B, IP_A, 80, sport,
								    S | A, 5000, 1001)},
				     1);
		x->replied++;
		work++;
	}
	switch (x->phase) {
	case 0:
		if (x->replied == XR_CONNS && atomic_load(&x->a->total) == XR_CONNS) {
			x->phase = 1;
			assert_int_equal(zoc_vswitch_ct_foreach(x->sw, xr_part_stats, xr_stats_done, x),
					 0);
		}
		break;
	case 2:
		x->phase = 3;
		assert_int_equal(zoc_vswitch_port_remove(x->a->port, xr_removed, x->a), 0);
		assert_int_equal(zoc_vswitch_port_remove(x->b->port, xr_removed, x->b), 0);
		break;
	case 3:
		if (atomic_load(&x->a->removed) && atomic_load(&x->b->removed)) {
			assert_int_equal(zoc_vswitch_destroy(x->sw), 0);
			x->phase = 4;
			zoc_reactors_stop();
		}
		break;
	}
	return (int)work;
}

static void run_two(bool interrupt_mode)
{
	unsigned cores[2] = {0, 1};
	struct zoc_reactor_opts o = {.cores = cores, .num_cores = 2,
				     .interrupt_mode = interrupt_mode};
	static struct zoc_poller_ops sops = {.poll = xr_send}, wops = {.poll = xr_watch};
	struct xr x;
	uint32_t s, l;

	memset(&x, 0, sizeof(x));
	assert_int_equal(zoc_reactors_init(&o), 0);
	assert_int_equal(zoc_pktpools_init(1024, 4), 0);
	assert_int_equal(zoc_vswitch_create("x2", NULL, &x.sw), 0);
	assert_int_equal(zoc_vswitch_ct_partitions(x.sw), 2);
	x.a = add_port(x.sw, "vm-a", MAC_A, ZOC_PORT_VNIC, 1);
	x.a->expect_reactor = 1;
	x.b = add_port(x.sw, "up-b", MAC_B, ZOC_PORT_UPLINK, 0);
	x.b->expect_reactor = 0;
	x.sg = zoc_sg_create("x2");
	assert_non_null(x.sg);
	/* Before the reactors run: reactor 1's part of the attach is a
	 * message it runs when it starts. */
	assert_int_equal(zoc_vswitch_port_set_secgroup(x.a->port, x.sg), 0);
	x.deadline = zoc_now_ns() + 60ull * 1000000000ull;
	assert_non_null(zoc_poller_register(zoc_reactor_get(1), &sops, &x,
					    interrupt_mode ? 50 : 0, "send"));
	assert_non_null(zoc_poller_register(zoc_reactor_get(0), &wops, &x,
					    interrupt_mode ? 50 : 0, "watch"));
	assert_int_equal(zoc_reactors_run(), 0);
	if (atomic_load(&x.timed_out)) {
		printf("# timed out in phase %d: %u sent, b got %u, replied %u, a got %u\n",
		       x.phase, atomic_load(&x.sent), atomic_load(&x.b->total), x.replied,
		       atomic_load(&x.a->total));
		/* where the missing frames went */
		for (int r = 0; r < ZOC_DROP__COUNT && x.phase < 3; r++)
			if (drops(x.a, (enum zoc_drop_reason)r) || drops(x.b, (enum zoc_drop_reason)r))
				printf("# drops %s: a %llu, b %llu\n",
				       zoc_drop_reason_name((enum zoc_drop_reason)r),
				       (unsigned long long)drops(x.a, (enum zoc_drop_reason)r),
				       (unsigned long long)drops(x.b, (enum zoc_drop_reason)r));
	}
	assert_false(atomic_load(&x.timed_out));
	assert_int_equal(x.phase, 4);
	/* Every SYN reached b and every SYN-ACK reached a, on their owners. */
	assert_int_equal(atomic_load(&x.b->total), XR_CONNS);
	assert_int_equal(atomic_load(&x.a->total), XR_CONNS);
	assert_int_equal(atomic_load(&x.a->wrong_thread), 0);
	assert_int_equal(atomic_load(&x.b->wrong_thread), 0);
	/* One session per connection, spread over both partitions (each
	 * created and updated only on its own reactor). */
	assert_int_equal(x.part[0].used + x.part[1].used, XR_CONNS);
	assert_true(x.part[0].used > XR_CONNS / 4 && x.part[1].used > XR_CONNS / 4);
	assert_int_equal(x.part[0].per_state[ZOC_CT_S_SYN_RECV] +
				 x.part[1].per_state[ZOC_CT_S_SYN_RECV],
			 XR_CONNS);
	printf("# two reactors (%s): %u connections, partitions %llu + %llu sessions\n",
	       interrupt_mode ? "interrupt" : "polling", XR_CONNS,
	       (unsigned long long)x.part[0].used, (unsigned long long)x.part[1].used);
	for (unsigned r = 0; r < 2; r++) {
		zoc_pktpool_available(zoc_pktpool_of(r), &s, &l);
		assert_int_equal(s, 1024);
		assert_int_equal(l, 4);
	}
	free(x.a);
	free(x.b);
	zoc_pktpools_fini();
	zoc_reactors_fini();
	/* No reactor runs now: the group's grace period is immediate. */
	zoc_sg_destroy(x.sg);
}

static void test_two_reactors_steering(void **state)
{
	run_two(false);
}

static void test_two_reactors_interrupt_mode(void **state)
{
	run_two(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_allowed_denied_both_ways, setup, teardown),
		cmocka_unit_test_setup_teardown(test_egress_rules_and_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rst_injection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_detach_and_untracked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flow_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_table_full_keeps_established, setup_small,
						teardown),
		cmocka_unit_test_setup_teardown(test_replace_and_remove_with_group, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bench_tracked, setup, teardown),
		cmocka_unit_test(test_two_reactors_steering),
		cmocka_unit_test(test_two_reactors_interrupt_mode),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
