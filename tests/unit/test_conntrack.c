/* SPDX-License-Identifier: MIT */
/*
 * test_conntrack.c - flow keys (src/net/flowkey.c) and connection tracking
 * (src/net/conntrack.c): parsing hostile frames, TCP state machine walks
 * (client and server side, simultaneous close, reopen), RST and blind
 * injection in and out of window, timeouts with an injected clock, UDP and
 * ICMP pseudo-connections, ICMP errors, growth while inserting, caps and
 * SYN-flood early drop, memory per session, JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "net/conntrack.h"
#include "net/flowkey.h"
#include "net/secgroup.h"

#define SEC 1000000000ull
#define A4 0x0a000001u /* 10.0.0.1, the VM */
#define B4 0x0a000002u /* 10.0.0.2, a remote */
#define T0 (1000 * SEC)

static struct zoc_flowkey key4(uint8_t proto, uint32_t s, uint32_t d, uint16_t sp, uint16_t dp)
{
	struct zoc_flowkey k;

	memset(&k, 0, sizeof(k));
	k.family = 4;
	k.proto = proto;
	s = htonl(s);
	d = htonl(d);
	memcpy(k.src, &s, 4);
	memcpy(k.dst, &d, 4);
	k.sport = sp;
	k.dport = dp;
	return k;
}

static struct zoc_flowkey tcp(uint32_t s, uint32_t d, uint16_t sp, uint16_t dp, uint8_t fl,
			      uint32_t seq, uint32_t ack, uint16_t len)
{
	struct zoc_flowkey k = key4(ZOC_IPPROTO_TCP, s, d, sp, dp);

	k.tcp_flags = fl;
	k.seq = seq;
	k.ack = ack;
	k.l4_len = len;
	k.win = 65535;
	return k;
}

static struct zoc_ct *mkct(uint32_t cap, uint32_t max, bool grow)
{
	struct zoc_ct_config cfg = {.capacity = cap, .max_capacity = max, .auto_grow = grow};
	struct zoc_ct *ct = zoc_ct_create(&cfg);

	assert_non_null(ct);
	return ct;
}

static uint64_t nstate(struct zoc_ct *ct, enum zoc_ct_state s)
{
	struct zoc_ct_stats st;

	zoc_ct_get_stats(ct, &st);
	return st.per_state[s];
}

static uint64_t ndrop(struct zoc_ct *ct, enum zoc_ct_verdict v)
{
	struct zoc_ct_stats st;

	zoc_ct_get_stats(ct, &st);
	return st.drops[v - ZOC_CT_DROP];
}

/* The state of the one session whose tuple (either direction) is k. */
static int state_of(struct zoc_ct *ct, const struct zoc_flowkey *k, uint64_t now)
{
	struct zoc_ct_filter f = {.state = -1, .zone = -1, .port = k->sport};
	json_t *arr = json_array();
	int st = -1;

	zoc_ct_list_json(ct, &f, now, arr);
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		int sp = (int)json_integer_value(json_object_get(o, "sport"));
		int dp = (int)json_integer_value(json_object_get(o, "dport"));

		if ((sp == k->sport && dp == k->dport) || (sp == k->dport && dp == k->sport))
			st = zoc_ct_state_parse(json_string_value(json_object_get(o, "state")));
	}
	json_decref(arr);
	return st;
}

#define P(ct, dir, k, now) zoc_ct_process((ct), NULL, 1, (dir), &(k), (now))
#define EG ZOC_CT_EGRESS
#define IN ZOC_CT_INGRESS

/* ---- flow keys ---- */

static size_t eth(uint8_t *f, int vlan, uint16_t et)
{
	size_t o = 12;

	memset(f, 0, 12);
	f[0] = 2;
	f[6] = 2;
	if (vlan >= 0) {
		f[o++] = 0x81;
		f[o++] = 0;
		f[o++] = (uint8_t)(vlan >> 8);
		f[o++] = (uint8_t)vlan;
	}
	f[o++] = (uint8_t)(et >> 8);
	f[o++] = (uint8_t)et;
	return o;
}

/* IPv4 header with optlen bytes of options; returns its length. */
static size_t ip4(uint8_t *p, uint8_t proto, uint16_t l4len, unsigned optlen, uint16_t frag)
{
	size_t hl = 20 + optlen;

	memset(p, 0, hl);
	p[0] = (uint8_t)(0x40 | hl / 4);
	p[2] = (uint8_t)((hl + l4len) >> 8);
	p[3] = (uint8_t)(hl + l4len);
	p[6] = (uint8_t)(frag >> 8);
	p[7] = (uint8_t)frag;
	p[8] = 64;
	p[9] = proto;
	p[12] = 10, p[15] = 1;
	p[16] = 10, p[19] = 2;
	for (unsigned i = 0; i < optlen; i++)
		p[20 + i] = 1; /* NOP */
	return hl;
}

static size_t tcph(uint8_t *p, uint8_t flags, bool wscale_opt)
{
	size_t hl = wscale_opt ? 24 : 20;

	memset(p, 0, hl);
	p[0] = 0x9c, p[1] = 0x40; /* 40000 */
	p[2] = 0, p[3] = 80;
	p[4] = 0, p[5] = 0, p[6] = 0x03, p[7] = 0xe8; /* seq 1000 */
	p[12] = (uint8_t)(hl / 4 << 4);
	p[13] = flags;
	p[14] = 0xff, p[15] = 0xff;
	if (wscale_opt) {
		p[20] = 3, p[21] = 3, p[22] = 7, p[23] = 1;
	}
	return hl;
}

static void test_flowkey_v4_tcp(void **state)
{
	uint8_t f[256];
	struct zoc_flowkey k;
	size_t o = eth(f, 100, 0x0800), l;

	o += ip4(f + o, 6, 24 + 10, 8, 0);
	l = tcph(f + o, ZOC_TCP_SYN, true);
	o += l + 10;
	assert_int_equal(zoc_flowkey_parse(f, (uint32_t)o + 4 /* padding */, &k), 0);
	assert_int_equal(k.family, 4);
	assert_int_equal(k.proto, 6);
	assert_int_equal(k.vlan, 100);
	assert_int_equal(k.sport, 40000);
	assert_int_equal(k.dport, 80);
	assert_int_equal(k.seq, 1000);
	assert_int_equal(k.tcp_flags, ZOC_TCP_SYN);
	assert_int_equal(k.l4_len, 10);
	assert_true(k.flags & ZOC_FLOWKEY_F_WSCALE);
	assert_int_equal(k.wscale, 7);
	assert_int_equal(k.src[0], 10);
	assert_int_equal(k.dst[3], 2);
	/* Every truncation is rejected, never read past. */
	for (size_t n = 0; n < o; n++) {
		uint8_t *c = malloc(n ? n : 1);

		memcpy(c, f, n);
		assert_int_equal(zoc_flowkey_parse(c, (uint32_t)n, &k), -EINVAL);
		free(c);
	}
	/* A bad option length. */
	f[18 + 28 + 20 + 1] = 40;
	assert_int_equal(zoc_flowkey_parse(f, (uint32_t)o, &k), -EINVAL);
	/* Not IP. */
	o = eth(f, -1, 0x0806);
	memset(f + o, 0, 28);
	assert_int_equal(zoc_flowkey_parse(f, (uint32_t)o + 28, &k), -ENOENT);
}

static void test_flowkey_v4_frag_and_bad(void **state)
{
	uint8_t f[128];
	struct zoc_flowkey k;
	size_t o = eth(f, -1, 0x0800), ip;

	ip = ip4(f + o, 17, 8, 0, 0x2000); /* MF, offset 0: first fragment */
	memset(f + o + ip, 0, 8);
	/* The UDP length covers the whole datagram, more than this fragment. */
	f[o + ip + 1] = 53, f[o + ip + 3] = 99, f[o + ip + 4] = 0x05, f[o + ip + 5] = 0xdc;
	assert_int_equal(zoc_flowkey_parse(f, (uint32_t)(o + ip + 8), &k), 0);
	assert_true(k.flags & ZOC_FLOWKEY_F_FRAG);
	assert_false(k.flags & ZOC_FLOWKEY_F_LATER_FRAG);
	assert_int_equal(k.sport, 53);
	ip4(f + o, 17, 8, 0, 0x0010); /* offset 16*8 */
	assert_int_equal(zoc_flowkey_parse(f, (uint32_t)(o + ip + 8), &k), 0);
	assert_true(k.flags & ZOC_FLOWKEY_F_LATER_FRAG);
	assert_int_equal(k.sport, 0);
	/* IHL < 5, total length beyond the frame, UDP length lies. */
	ip4(f + o, 17, 8, 0, 0);
	f[o] = 0x44;
	assert_int_equal(zoc_flowkey_parse(f, (uint32_t)(o + 28), &k), -EINVAL);
	ip4(f + o, 17, 8, 0, 0);
	f[o + 3] = 200;
	assert_int_equal(zoc_flowkey_parse(f, (uint32_t)(o + 28), &k), -EINVAL);
	ip4(f + o, 17, 8, 0, 0);
	f[o + ip + 4] = 0;
	f[o + ip + 5] = 9;
	assert_int_equal(zoc_flowkey_parse(f, (uint32_t)(o + 28), &k), -EINVAL);
	/* Three VLAN tags. */
	o = eth(f, 1, 0x8100);
	f[o - 2] = 0x81, f[o - 1] = 0;
	f[o] = 0, f[o + 1] = 2, f[o + 2] = 0x81, f[o + 3] = 0, f[o + 4] = 0, f[o + 5] = 3;
	f[o + 6] = 0x08, f[o + 7] = 0;
	assert_int_equal(zoc_flowkey_parse(f, (uint32_t)(o + 8 + 28), &k), -EINVAL);
}

static void test_flowkey_v6_ext_icmp(void **state)
{
	uint8_t f[256];
	struct zoc_flowkey k;
	size_t o = eth(f, -1, 0x86dd), s;
	uint8_t *ip = f + o;

	memset(ip, 0, 40 + 8 + 8 + 8);
	ip[0] = 0x60;
	ip[5] = 8 + 8 + 8; /* payload: hop-by-hop 8, fragment 8 (offset 0), UDP 8 */
	ip[6] = 0;         /* hop-by-hop */
	ip[8] = 0x20, ip[9] = 0x01, ip[23] = 1;
	ip[24] = 0x20, ip[25] = 0x01, ip[39] = 2;
	ip[40] = 44; /* next: fragment */
	ip[48] = 17; /* next: UDP; offset 0, M=1 */
	ip[48 + 3] = 1;
	ip[56 + 1] = 7, ip[56 + 3] = 9, ip[56 + 5] = 8;
	s = o + 40 + 24;
	assert_int_equal(zoc_flowkey_parse(f, (uint32_t)s, &k), 0);
	assert_int_equal(k.family, 6);
	assert_int_equal(k.proto, 17);
	assert_int_equal(k.sport, 7);
	assert_int_equal(k.dport, 9);
	assert_true(k.flags & ZOC_FLOWKEY_F_FRAG);
	assert_int_equal(k.dst[15], 2);
	/* Extension header longer than the payload. */
	ip[41] = 4;
	assert_int_equal(zoc_flowkey_parse(f, (uint32_t)s, &k), -EINVAL);
	ip[41] = 0;
	/* Payload length beyond the frame. */
	ip[5] = 200;
	assert_int_equal(zoc_flowkey_parse(f, (uint32_t)s, &k), -EINVAL);
	/* ICMPv6 echo request: id in both ports. */
	ip[5] = 8;
	ip[6] = 58;
	memset(ip + 40, 0, 8);
	ip[40] = 128, ip[44] = 0x12, ip[45] = 0x34;
	assert_int_equal(zoc_flowkey_parse(f, (uint32_t)(o + 48), &k), 0);
	assert_int_equal(k.proto, 58);
	assert_int_equal(k.icmp_type, 128);
	assert_int_equal(k.sport, 0x1234);
	assert_int_equal(k.dport, 0x1234);
	/* Nine extension headers: over the bound. */
	ip[5] = 9 * 8;
	ip[6] = 60;
	memset(ip + 40, 0, 9 * 8);
	for (int i = 0; i < 9; i++)
		ip[40 + i * 8] = i < 8 ? 60 : 59;
	assert_int_equal(zoc_flowkey_parse(f, (uint32_t)(o + 40 + 72), &k), -EINVAL);
}

static void test_flowkey_icmp_error(void **state)
{
	uint8_t f[256];
	struct zoc_flowkey k;
	size_t o = eth(f, -1, 0x0800), ip, in;

	/* Port unreachable from 10.0.0.2 about 10.0.0.1:40000 -> 10.0.0.2:80 TCP. */
	ip = ip4(f + o, 1, 8 + 20 + 8, 0, 0);
	memset(f + o + ip, 0, 8);
	f[o + ip] = 3, f[o + ip + 1] = 3;
	in = ip4(f + o + ip + 8, 6, 20, 0, 0);
	tcph(f + o + ip + 8 + in, ZOC_TCP_SYN, false);
	assert_int_equal(zoc_flowkey_parse(f, (uint32_t)(o + ip + 8 + 28), &k), 0);
	assert_true(k.flags & ZOC_FLOWKEY_F_RELATED);
	assert_int_equal(k.proto, 6);
	assert_int_equal(k.sport, 40000);
	assert_int_equal(k.dport, 80);
	assert_int_equal(k.src[3], 1);
}

static void test_hash_symmetry(void **state)
{
	struct zoc_flowkey a = key4(6, A4, B4, 1234, 80), b = key4(6, B4, A4, 80, 1234);

	assert_int_equal(zoc_flowkey_sym_hash(&a), zoc_flowkey_sym_hash(&b));
	assert_int_not_equal(zoc_flowkey_hash(&a, 1), zoc_flowkey_hash(&b, 1));
	assert_true(zoc_ct_partition(0xffffffffu, 4) < 4);
}

/* Two partitions: both directions of every connection land in the same
 * one, and the split is roughly even. */
static void test_partitions(void **state)
{
	unsigned count[2] = {0, 0};

	for (uint32_t i = 0; i < 10000; i++) {
		struct zoc_flowkey a = key4(6, A4 + i, B4, (uint16_t)(1000 + i), 80);
		struct zoc_flowkey b = key4(6, B4, A4 + i, 80, (uint16_t)(1000 + i));
		unsigned pa = zoc_ct_partition(zoc_flowkey_sym_hash(&a), 2);

		assert_int_equal(pa, zoc_ct_partition(zoc_flowkey_sym_hash(&b), 2));
		count[pa]++;
	}
	assert_true(count[0] > 4500 && count[1] > 4500);
}

/* ---- TCP ---- */

static void handshake(struct zoc_ct *ct, uint16_t sp, uint64_t now)
{
	struct zoc_flowkey k;

	k = tcp(A4, B4, sp, 80, ZOC_TCP_SYN, 1000, 0, 0);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_NEW);
	k = tcp(B4, A4, 80, sp, ZOC_TCP_SYN | ZOC_TCP_ACK, 5000, 1001, 0);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_EST);
	k = tcp(A4, B4, sp, 80, ZOC_TCP_ACK, 1001, 5001, 0);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_EST);
}

static void test_tcp_client_walk(void **state)
{
	struct zoc_ct *ct = mkct(1024, 0, false);
	struct zoc_flowkey k;
	uint64_t now = T0;

	k = tcp(A4, B4, 40000, 80, ZOC_TCP_SYN, 1000, 0, 0);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_NEW);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_SYN_SENT);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_EST); /* retransmitted SYN */
	/* ACK before the SYN-ACK: invalid. */
	k = tcp(A4, B4, 40000, 80, ZOC_TCP_ACK, 1001, 5001, 0);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_DROP_INVALID);
	k = tcp(B4, A4, 80, 40000, ZOC_TCP_SYN | ZOC_TCP_ACK, 5000, 1001, 0);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_EST);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_SYN_RECV);
	k = tcp(A4, B4, 40000, 80, ZOC_TCP_ACK, 1001, 5001, 0);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_EST);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_ESTABLISHED);
	assert_int_equal(nstate(ct, ZOC_CT_S_ESTABLISHED), 1);
	/* Data both ways. */
	k = tcp(A4, B4, 40000, 80, ZOC_TCP_ACK | ZOC_TCP_PSH, 1001, 5001, 100);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_EST);
	k = tcp(B4, A4, 80, 40000, ZOC_TCP_ACK, 5001, 1101, 200);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_EST);
	/* Client closes. */
	k = tcp(A4, B4, 40000, 80, ZOC_TCP_ACK | ZOC_TCP_FIN, 1101, 5201, 0);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_EST);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_FIN_WAIT);
	k = tcp(B4, A4, 80, 40000, ZOC_TCP_ACK, 5201, 1102, 0);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_EST);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_CLOSE_WAIT);
	k = tcp(B4, A4, 80, 40000, ZOC_TCP_ACK | ZOC_TCP_FIN, 5201, 1102, 0);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_EST);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_LAST_ACK);
	k = tcp(A4, B4, 40000, 80, ZOC_TCP_ACK, 1102, 5202, 0);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_EST);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_TIME_WAIT);
	assert_int_equal(nstate(ct, ZOC_CT_S_TIME_WAIT), 1);
	assert_int_equal(nstate(ct, ZOC_CT_S_ESTABLISHED), 0);
	/* The port is reused: a new SYN reopens. */
	k = tcp(A4, B4, 40000, 80, ZOC_TCP_SYN, 90000, 0, 0);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_NEW);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_SYN_SENT);
	assert_int_equal(nstate(ct, ZOC_CT_S_TIME_WAIT), 0);
	zoc_ct_destroy(ct);
}

static void test_tcp_server_walk(void **state)
{
	struct zoc_ct *ct = mkct(1024, 0, false);
	struct zoc_sg *sg = zoc_sg_create("web");
	struct zoc_sg_rule r = {.dir = ZOC_CT_INGRESS, .proto = 6, .port_min = 80, .port_max = 80,
				.icmp_type = -1, .icmp_code = -1};
	struct zoc_flowkey k;
	uint64_t now = T0;

	assert_non_null(sg);
	assert_int_equal(zoc_sg_rule_add(sg, &r, NULL), 0);
	/* Remote B connects to the VM A:80. */
	k = tcp(B4, A4, 5555, 80, ZOC_TCP_SYN, 7, 0, 0);
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, IN, &k, now), ZOC_CT_NEW);
	k = tcp(B4, A4, 5555, 81, ZOC_TCP_SYN, 7, 0, 0);
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, IN, &k, now), ZOC_CT_DROP_SG);
	assert_int_equal(ndrop(ct, ZOC_CT_DROP_SG), 1);
	/* The reply passes without evaluation (egress is open anyway); the
	 * SYN-ACK arriving from the wrong side is refused. */
	k = tcp(A4, B4, 80, 5555, ZOC_TCP_SYN | ZOC_TCP_ACK, 900, 8, 0);
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, IN, &k, now),
			 ZOC_CT_DROP_DIRECTION);
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, EG, &k, now), ZOC_CT_EST);
	k = tcp(B4, A4, 5555, 80, ZOC_TCP_ACK, 8, 901, 0);
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, IN, &k, now), ZOC_CT_EST);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_ESTABLISHED);
	/* The server closes first. */
	k = tcp(A4, B4, 80, 5555, ZOC_TCP_ACK | ZOC_TCP_FIN, 901, 8, 0);
	assert_int_equal(zoc_ct_process(ct, NULL, 1, EG, &k, now), ZOC_CT_EST);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_FIN_WAIT);
	k = tcp(B4, A4, 5555, 80, ZOC_TCP_ACK | ZOC_TCP_FIN, 8, 902, 0);
	assert_int_equal(zoc_ct_process(ct, NULL, 1, IN, &k, now), ZOC_CT_EST);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_LAST_ACK);
	k = tcp(A4, B4, 80, 5555, ZOC_TCP_ACK, 902, 9, 0);
	assert_int_equal(zoc_ct_process(ct, NULL, 1, EG, &k, now), ZOC_CT_EST);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_TIME_WAIT);
	zoc_sg_destroy(sg);
	zoc_ct_destroy(ct);
}

static void test_tcp_simultaneous_close(void **state)
{
	struct zoc_ct *ct = mkct(1024, 0, false);
	struct zoc_flowkey k;
	uint64_t now = T0;

	handshake(ct, 41000, now);
	k = tcp(A4, B4, 41000, 80, ZOC_TCP_ACK | ZOC_TCP_FIN, 1001, 5001, 0);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_EST);
	k = tcp(B4, A4, 80, 41000, ZOC_TCP_ACK | ZOC_TCP_FIN, 5001, 1001, 0);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_EST);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_LAST_ACK);
	k = tcp(A4, B4, 41000, 80, ZOC_TCP_ACK, 1002, 5002, 0);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_EST);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_LAST_ACK);
	k = tcp(B4, A4, 80, 41000, ZOC_TCP_ACK, 5002, 1002, 0);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_EST);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_TIME_WAIT);
	zoc_ct_destroy(ct);
}

static void test_tcp_rst_window(void **state)
{
	struct zoc_ct *ct = mkct(1024, 0, false);
	struct zoc_flowkey k;
	uint64_t now = T0;

	handshake(ct, 42000, now);
	/* Blind RSTs: far above and far below the window. */
	k = tcp(B4, A4, 80, 42000, ZOC_TCP_RST, 5001 + 1000000, 0, 0);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_DROP_INVALID);
	k = tcp(B4, A4, 80, 42000, ZOC_TCP_RST, 5001 - 1000000, 0, 0);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_DROP_INVALID);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_ESTABLISHED);
	assert_int_equal(ndrop(ct, ZOC_CT_DROP_INVALID), 2);
	/* In window: closes. */
	k = tcp(B4, A4, 80, 42000, ZOC_TCP_RST, 5001, 0, 0);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_EST);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_CLOSE);
	/* A refused connection: RST|ACK acking the SYN, then a blind one. */
	k = tcp(A4, B4, 42001, 80, ZOC_TCP_SYN, 300, 0, 0);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_NEW);
	k = tcp(B4, A4, 80, 42001, ZOC_TCP_RST | ZOC_TCP_ACK, 0, 999, 0);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_DROP_INVALID);
	k = tcp(B4, A4, 80, 42001, ZOC_TCP_RST | ZOC_TCP_ACK, 0, 301, 0);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_EST);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_CLOSE);
	/* Our own RST out: in window closes too. */
	handshake(ct, 42002, now);
	k = tcp(A4, B4, 42002, 80, ZOC_TCP_RST | ZOC_TCP_ACK, 1001, 5001, 0);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_EST);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_CLOSE);
	zoc_ct_destroy(ct);
}

static void test_tcp_blind_injection(void **state)
{
	struct zoc_ct *ct = mkct(1024, 0, false);
	struct zoc_flowkey k;
	uint64_t now = T0;

	/* A SYN-ACK that does not ack our SYN. */
	k = tcp(A4, B4, 43000, 80, ZOC_TCP_SYN, 1000, 0, 0);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_NEW);
	k = tcp(B4, A4, 80, 43000, ZOC_TCP_SYN | ZOC_TCP_ACK, 5000, 77777, 0);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_DROP_INVALID);
	k = tcp(B4, A4, 80, 43000, ZOC_TCP_SYN | ZOC_TCP_ACK, 5000, 1001, 0);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_EST);
	k = tcp(A4, B4, 43000, 80, ZOC_TCP_ACK, 1001, 5001, 0);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_EST);
	/* Data far outside the window; an ACK of data never sent. */
	k = tcp(B4, A4, 80, 43000, ZOC_TCP_ACK | ZOC_TCP_PSH, 5001 + 0x40000000u, 1001, 10);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_DROP_INVALID);
	k = tcp(B4, A4, 80, 43000, ZOC_TCP_ACK, 5001, 1001 + 500000, 0);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_DROP_INVALID);
	k = tcp(B4, A4, 80, 43000, ZOC_TCP_ACK | ZOC_TCP_FIN, 5001 + 0x80000000u, 1001, 0);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_DROP_INVALID);
	assert_int_equal(state_of(ct, &k, now), ZOC_CT_S_ESTABLISHED);
	/* Retransmitted old data (below the highest seq, within a window) passes. */
	k = tcp(B4, A4, 80, 43000, ZOC_TCP_ACK, 5001, 1001, 1000);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_EST);
	k = tcp(B4, A4, 80, 43000, ZOC_TCP_ACK, 5001, 1001, 1000);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_EST);
	/* Nonsense flags; no session for a mid-stream segment. */
	k = tcp(A4, B4, 43000, 80, ZOC_TCP_SYN | ZOC_TCP_FIN, 1001, 0, 0);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_DROP_INVALID);
	k = tcp(A4, B4, 43001, 80, ZOC_TCP_ACK, 1, 1, 0);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_DROP_NO_SESSION);
	k = tcp(A4, B4, 43001, 80, ZOC_TCP_SYN | ZOC_TCP_ACK, 1, 1, 0);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_DROP_NO_SESSION);
	assert_int_equal(ndrop(ct, ZOC_CT_DROP_INVALID), 5);
	assert_int_equal(ndrop(ct, ZOC_CT_DROP_NO_SESSION), 2);
	zoc_ct_destroy(ct);
}

static void test_tcp_window_scale(void **state)
{
	struct zoc_ct *ct = mkct(1024, 0, false);
	struct zoc_flowkey k;
	uint64_t now = T0;

	k = tcp(A4, B4, 44000, 80, ZOC_TCP_SYN, 1000, 0, 0);
	k.flags |= ZOC_FLOWKEY_F_WSCALE;
	k.wscale = 7;
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_NEW);
	k = tcp(B4, A4, 80, 44000, ZOC_TCP_SYN | ZOC_TCP_ACK, 5000, 1001, 0);
	k.flags |= ZOC_FLOWKEY_F_WSCALE;
	k.wscale = 7;
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_EST);
	k = tcp(A4, B4, 44000, 80, ZOC_TCP_ACK, 1001, 5001, 0);
	k.win = 1000; /* x 128 = 128000 bytes the server may send */
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_EST);
	k = tcp(B4, A4, 80, 44000, ZOC_TCP_ACK, 5001 + 120000, 1001, 1000);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_EST);
	k = tcp(B4, A4, 80, 44000, ZOC_TCP_ACK, 5001 + 200000, 1001, 1000);
	assert_int_equal(P(ct, IN, k, now), ZOC_CT_DROP_INVALID);
	zoc_ct_destroy(ct);
}

/* ---- timeouts ---- */

static void test_timeouts(void **state)
{
	struct zoc_ct *ct = mkct(1024, 0, false);
	struct zoc_flowkey k, u, ur;
	struct zoc_ct_stats st;
	uint64_t now = T0;

	k = tcp(A4, B4, 45000, 80, ZOC_TCP_SYN, 1000, 0, 0);
	assert_int_equal(P(ct, EG, k, now), ZOC_CT_NEW);
	/* SYN_SENT lives 120 s. */
	assert_int_equal(state_of(ct, &k, now + 119 * SEC), ZOC_CT_S_SYN_SENT);
	k = tcp(B4, A4, 80, 45000, ZOC_TCP_SYN | ZOC_TCP_ACK, 5000, 1001, 0);
	assert_int_equal(P(ct, IN, k, now + 121 * SEC), ZOC_CT_DROP_NO_SESSION);
	zoc_ct_get_stats(ct, &st);
	assert_int_equal(st.expired, 1);
	assert_int_equal(st.used, 0);
	/* UDP: 30 s unreplied, 180 s once replied; the sweep expires. */
	u = key4(17, A4, B4, 5000, 53);
	ur = key4(17, B4, A4, 53, 5000);
	now += 200 * SEC;
	assert_int_equal(P(ct, EG, u, now), ZOC_CT_NEW);
	assert_int_equal(zoc_ct_poll(ct, now + 29 * SEC, 64), 0);
	assert_int_equal(zoc_ct_poll(ct, now + 31 * SEC, 64), 1);
	assert_int_equal(P(ct, IN, ur, now + 32 * SEC), ZOC_CT_NEW);
	zoc_ct_flush(ct);
	assert_int_equal(P(ct, EG, u, now), ZOC_CT_NEW);
	assert_int_equal(P(ct, IN, ur, now + SEC), ZOC_CT_EST);
	assert_int_equal(state_of(ct, &u, now + SEC), ZOC_CT_S_REPLIED);
	assert_int_equal(zoc_ct_poll(ct, now + 100 * SEC, 64), 0);
	assert_int_equal(P(ct, EG, u, now + 170 * SEC), ZOC_CT_EST);
	assert_int_equal(zoc_ct_poll(ct, now + 340 * SEC, 64), 0);
	assert_int_equal(zoc_ct_poll(ct, now + 360 * SEC, 64), 1);
	/* ESTABLISHED lasts days, TIME_WAIT 120 s. */
	handshake(ct, 45001, now);
	assert_int_equal(zoc_ct_poll(ct, now + 86400 * SEC, 64), 0);
	zoc_ct_destroy(ct);
}

/* ---- UDP, ICMP ---- */

static void test_udp_icmp(void **state)
{
	struct zoc_ct *ct = mkct(1024, 0, false);
	struct zoc_sg *sg = zoc_sg_create("none");
	struct zoc_flowkey k;
	uint64_t now = T0;

	/* Ingress without a rule: denied, with one: allowed. */
	k = key4(17, B4, A4, 999, 53);
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, IN, &k, now), ZOC_CT_DROP_SG);
	/* Egress open; the reply passes. */
	k = key4(17, A4, B4, 999, 53);
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, EG, &k, now), ZOC_CT_NEW);
	k = key4(17, B4, A4, 53, 999);
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, IN, &k, now), ZOC_CT_EST);
	/* A different zone (port) is another session. */
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 2, IN, &k, now), ZOC_CT_DROP_SG);
	/* Ping out, reply back; an unsolicited reply is dropped. */
	k = key4(1, A4, B4, 77, 77);
	k.icmp_type = 8;
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, EG, &k, now), ZOC_CT_NEW);
	k = key4(1, B4, A4, 77, 77);
	k.icmp_type = 0;
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, IN, &k, now), ZOC_CT_EST);
	k.icmp_type = 8; /* a request the wrong way inside the session */
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, IN, &k, now),
			 ZOC_CT_DROP_INVALID);
	k = key4(1, B4, A4, 78, 78);
	k.icmp_type = 0;
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, IN, &k, now),
			 ZOC_CT_DROP_NO_SESSION);
	/* ICMP error about the UDP session (quoting A->B): related, inbound. */
	k = key4(17, A4, B4, 999, 53);
	k.flags = ZOC_FLOWKEY_F_RELATED;
	k.icmp_type = 3;
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, IN, &k, now), ZOC_CT_RELATED);
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, EG, &k, now),
			 ZOC_CT_DROP_DIRECTION);
	k.sport = 1000;
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, IN, &k, now),
			 ZOC_CT_DROP_NO_SESSION);
	/* Later fragments. */
	k = key4(17, B4, A4, 0, 0);
	k.flags = ZOC_FLOWKEY_F_FRAG | ZOC_FLOWKEY_F_LATER_FRAG;
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, IN, &k, now), ZOC_CT_DROP_FRAG);
	/* Neighbour discovery passes untracked. */
	memset(&k, 0, sizeof(k));
	k.family = 6;
	k.proto = 58;
	k.icmp_type = 135;
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, IN, &k, now), ZOC_CT_UNTRACKED);
	zoc_sg_destroy(sg);
	zoc_ct_destroy(ct);
}

/* ---- growth, caps, pressure ---- */

static struct zoc_flowkey nth(uint32_t i, bool reply)
{
	uint32_t a = 0x0a000000u | (i >> 14), b = 0xc0a80001u;
	uint16_t sp = (uint16_t)(1024 + (i & 0x3fff));

	return reply ? key4(17, b, a, 53, sp) : key4(17, a, b, sp, 53);
}

static void test_growth_under_inserts(void **state)
{
	struct zoc_ct *ct = mkct(1024, 1u << 20, true);
	struct zoc_ct_stats st;
	const uint32_t N = 100000;
	bool saw_migration = false;

	for (uint32_t i = 0; i < N; i++) {
		struct zoc_flowkey k = nth(i, false);

		assert_int_equal(P(ct, EG, k, T0), ZOC_CT_NEW);
		zoc_ct_get_stats(ct, &st);
		if (st.migrating && !saw_migration) {
			/* In the middle of a migration: everything is found, both ways. */
			saw_migration = true;
			for (uint32_t j = 0; j <= i; j++) {
				struct zoc_flowkey r = nth(j, true);

				assert_int_equal(P(ct, IN, r, T0), ZOC_CT_EST);
			}
		}
		if (i % 97 == 0) { /* a sample all along */
			struct zoc_flowkey r = nth(i / 2, true);

			assert_int_equal(P(ct, IN, r, T0), ZOC_CT_EST);
		}
	}
	assert_true(saw_migration);
	for (uint32_t i = 0; i < N; i++) {
		struct zoc_flowkey r = nth(i, true), k = nth(i, false);

		assert_int_equal(P(ct, IN, r, T0), ZOC_CT_EST);
		assert_int_equal(P(ct, EG, k, T0), ZOC_CT_EST);
	}
	zoc_ct_get_stats(ct, &st);
	assert_int_equal(st.used, N);
	assert_true(st.growths >= 6);
	assert_true(st.capacity >= N);
	assert_int_equal(st.drops[ZOC_CT_DROP_FULL - ZOC_CT_DROP], 0);
	/* Explicit grow while running; poll finishes the migration. */
	assert_int_equal(zoc_ct_grow(ct, 1u << 20), 0);
	assert_int_equal(zoc_ct_grow(ct, (1u << 20) + 1), -EINVAL);
	for (uint32_t i = 0; i < N; i += 3) {
		struct zoc_flowkey r = nth(i, true);

		assert_int_equal(P(ct, IN, r, T0), ZOC_CT_EST);
		zoc_ct_poll(ct, T0, 256);
	}
	while (zoc_ct_poll(ct, T0, 4096))
		;
	zoc_ct_get_stats(ct, &st);
	assert_int_equal(st.migrating, 0);
	for (uint32_t i = 0; i < N; i++) {
		struct zoc_flowkey r = nth(i, true);

		assert_int_equal(P(ct, IN, r, T0), ZOC_CT_EST);
	}
	/* Deletion empties it. */
	zoc_ct_flush(ct);
	zoc_ct_get_stats(ct, &st);
	assert_int_equal(st.used, 0);
	for (int s = 1; s < ZOC_CT_S_COUNT; s++)
		assert_int_equal(st.per_state[s], 0);
	zoc_ct_destroy(ct);
}

static void test_caps_and_syn_flood(void **state)
{
	struct zoc_ct *ct = mkct(64, 0, false);
	struct zoc_ct_stats st;
	struct zoc_flowkey k;

	/* Per-port cap. */
	assert_int_equal(zoc_ct_set_port_cap(ct, 3, 5), 0);
	for (uint16_t i = 0; i < 6; i++) {
		k = key4(17, A4, B4, (uint16_t)(100 + i), 53);
		assert_int_equal(zoc_ct_process(ct, NULL, 3, EG, &k, T0),
				 i < 5 ? ZOC_CT_NEW : ZOC_CT_DROP_PORT_CAP);
	}
	assert_int_equal(zoc_ct_port_count(ct, 3), 5);
	assert_int_equal(zoc_ct_flush_zone(ct, 3), 5);
	assert_int_equal(zoc_ct_port_count(ct, 3), 0);
	/* Ten established, then a SYN flood: embryonic sessions are evicted,
	 * the established ones stay. */
	for (uint16_t i = 0; i < 10; i++)
		handshake(ct, (uint16_t)(50000 + i), T0);
	for (uint32_t i = 0; i < 1000; i++) {
		k = tcp(B4 + 1 + i, A4, (uint16_t)(2000 + i), 22, ZOC_TCP_SYN, i, 0, 0);
		assert_int_equal(P(ct, IN, k, T0), ZOC_CT_NEW);
	}
	zoc_ct_get_stats(ct, &st);
	assert_true(st.early_drops >= 1000 - 54);
	assert_int_equal(st.used, 64);
	assert_int_equal(st.per_state[ZOC_CT_S_ESTABLISHED], 10);
	for (uint16_t i = 0; i < 10; i++) {
		k = tcp(A4, B4, (uint16_t)(50000 + i), 80, ZOC_TCP_ACK, 1001, 5001, 0);
		assert_int_equal(P(ct, EG, k, T0), ZOC_CT_EST);
	}
	/* A table of established sessions only: a new one is dropped, counted. */
	zoc_ct_flush(ct);
	for (uint16_t i = 0; i < 64; i++)
		handshake(ct, (uint16_t)(30000 + i), T0);
	k = tcp(A4, B4, 29999, 80, ZOC_TCP_SYN, 1, 0, 0);
	assert_int_equal(P(ct, EG, k, T0), ZOC_CT_DROP_FULL);
	assert_int_equal(ndrop(ct, ZOC_CT_DROP_FULL), 1);
	k = tcp(A4, B4, 30005, 80, ZOC_TCP_ACK, 1001, 5001, 0);
	assert_int_equal(P(ct, EG, k, T0), ZOC_CT_EST);
	/* A closed one (RST) may be evicted again. */
	k = tcp(A4, B4, 30005, 80, ZOC_TCP_RST, 1001, 0, 0);
	assert_int_equal(P(ct, EG, k, T0), ZOC_CT_EST);
	k = tcp(A4, B4, 29999, 80, ZOC_TCP_SYN, 1, 0, 0);
	assert_int_equal(P(ct, EG, k, T0), ZOC_CT_NEW);
	assert_int_equal(nstate(ct, ZOC_CT_S_CLOSE), 0);
	assert_int_equal(nstate(ct, ZOC_CT_S_ESTABLISHED), 63);
	zoc_ct_destroy(ct);
}

static long rss_bytes(void)
{
	long size, res;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &size, &res) != 2)
		res = -1;
	fclose(f);
	return res * sysconf(_SC_PAGESIZE);
}

static void test_memory_per_session(void **state)
{
	const uint32_t N = 1u << 20;
	struct zoc_ct *ct;
	struct zoc_ct_stats st;
	long before, after;
	double per;

	assert_int_equal(zoc_ct_entry_size(), 64);
	ct = mkct(N, 0, false);
	before = rss_bytes();
	for (uint32_t i = 0; i < N; i++) {
		struct zoc_flowkey k = nth(i, false);

		assert_int_equal(P(ct, EG, k, T0), ZOC_CT_NEW);
	}
	after = rss_bytes();
	zoc_ct_get_stats(ct, &st);
	assert_int_equal(st.used, N);
	per = (double)(after - before) / N;
	printf("conntrack: %u sessions, RSS growth %.1f bytes/session (table accounts %.1f)\n", N,
	       per, (double)st.bytes / N);
	assert_true(before > 0);
	assert_true(per <= 128.0);
	assert_true((double)st.bytes / N <= 128.0);
	zoc_ct_destroy(ct);
}

/* ---- burst, JSON ---- */

static void test_burst_and_json(void **state)
{
	struct zoc_ct *ct = mkct(1024, 0, false);
	struct zoc_flowkey keys[40];
	const struct zoc_flowkey *kp[40];
	uint8_t v[40];
	json_t *st, *arr, *params, *acc;
	struct zoc_ct_filter f;
	char err[256];

	for (int i = 0; i < 40; i++) {
		keys[i] = key4(i % 2 ? 17 : 1, A4, B4, (uint16_t)(i / 2 + 1), i % 2 ? 53 : 0);
		if (i % 2 == 0) {
			keys[i].dport = keys[i].sport;
			keys[i].icmp_type = 8;
		}
		kp[i] = &keys[i];
	}
	zoc_ct_process_burst(ct, NULL, 1, EG, kp, 40, T0, v);
	for (int i = 0; i < 40; i++)
		assert_int_equal(v[i], ZOC_CT_NEW);
	zoc_ct_process_burst(ct, NULL, 1, EG, kp, 40, T0, v);
	for (int i = 0; i < 40; i++)
		assert_int_equal(v[i], ZOC_CT_EST);
	st = zoc_ct_stats_json(ct);
	assert_int_equal(json_integer_value(json_object_get(st, "used")), 40);
	assert_int_equal(json_integer_value(json_object_get(
				 json_object_get(st, "states"), "UNREPLIED")), 40);
	assert_non_null(json_object_get(json_object_get(st, "drops"), "secgroup"));
	acc = json_object();
	zoc_ct_stats_json_add(acc, st);
	zoc_ct_stats_json_add(acc, st);
	assert_int_equal(json_integer_value(json_object_get(acc, "used")), 80);
	json_decref(acc);
	json_decref(st);
	params = json_pack("{s:s, s:i}", "protocol", "udp", "count", 5);
	assert_int_equal(zoc_ct_filter_from_json(params, &f, err, sizeof(err)), 0);
	arr = json_array();
	assert_int_equal(zoc_ct_list_json(ct, &f, T0, arr), 5);
	assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "src")),
			    "10.0.0.1");
	assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "state")),
			    "UNREPLIED");
	json_decref(arr);
	json_decref(params);
	params = json_pack("{s:s, s:i}", "address", "192.168.0.1", "port", 53);
	assert_int_equal(zoc_ct_filter_from_json(params, &f, err, sizeof(err)), 0);
	arr = json_array();
	assert_int_equal(zoc_ct_list_json(ct, &f, T0, arr), 0);
	json_decref(arr);
	json_decref(params);
	params = json_pack("{s:s, s:i}", "address", "10.0.0.2", "port", 53);
	assert_int_equal(zoc_ct_filter_from_json(params, &f, err, sizeof(err)), 0);
	arr = json_array();
	assert_int_equal(zoc_ct_list_json(ct, &f, T0, arr), 20);
	json_decref(arr);
	json_decref(params);
	params = json_pack("{s:s}", "state", "BOGUS");
	assert_int_equal(zoc_ct_filter_from_json(params, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "ESTABLISHED"));
	json_decref(params);
	params = json_pack("{s:i}", "port", 70000);
	assert_int_equal(zoc_ct_filter_from_json(params, &f, err, sizeof(err)), -EINVAL);
	json_decref(params);
	zoc_ct_destroy(ct);
}

static void test_create_errors(void **state)
{
	struct zoc_ct_config cfg = {.capacity = 10};

	assert_null(zoc_ct_create(&cfg));
	cfg.capacity = 1000;
	cfg.max_capacity = 500;
	assert_null(zoc_ct_create(&cfg));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flowkey_v4_tcp),
		cmocka_unit_test(test_flowkey_v4_frag_and_bad),
		cmocka_unit_test(test_flowkey_v6_ext_icmp),
		cmocka_unit_test(test_flowkey_icmp_error),
		cmocka_unit_test(test_hash_symmetry),
		cmocka_unit_test(test_partitions),
		cmocka_unit_test(test_tcp_client_walk),
		cmocka_unit_test(test_tcp_server_walk),
		cmocka_unit_test(test_tcp_simultaneous_close),
		cmocka_unit_test(test_tcp_rst_window),
		cmocka_unit_test(test_tcp_blind_injection),
		cmocka_unit_test(test_tcp_window_scale),
		cmocka_unit_test(test_timeouts),
		cmocka_unit_test(test_udp_icmp),
		cmocka_unit_test(test_growth_under_inserts),
		cmocka_unit_test(test_caps_and_syn_flood),
		cmocka_unit_test(test_memory_per_session),
		cmocka_unit_test(test_burst_and_json),
		cmocka_unit_test(test_create_errors),
	};

	zoc_log_set_level(ZOC_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
