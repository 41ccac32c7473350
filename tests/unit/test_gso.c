/* SPDX-License-Identifier: MIT */
/* net/gso.c: TCP/UDP segmentation of GSO super-frames, checked by an
 * independent (byte-pair) checksum routine. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/gso.h"
#include "net/pkt.h"

static struct zoc_pktpool *g_pool;

static int setup(void **state)
{
	(void)state;
	g_pool = zoc_pktpool_create_ex("gso", 0, 2048, 8, 8);
	return g_pool ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	zoc_pktpool_destroy(g_pool);
	return 0;
}

/* Ones' complement sum over 16-bit big-endian words (RFC 1071, slowly). */
static uint32_t ref_sum(const uint8_t *p, uint32_t len, uint32_t sum)
{
	for (uint32_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

static uint16_t rd16(const uint8_t *b)
{
	return (uint16_t)(b[0] << 8 | b[1]);
}

static uint32_t rd32(const uint8_t *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

struct spec {
	bool v6, udp;
	unsigned tags;   /* 802.1Q tags */
	unsigned ipopt;  /* IPv4 option bytes (multiple of 4) */
	unsigned tcpopt; /* TCP option bytes (multiple of 4) */
	uint32_t payload;
	uint8_t tflags;  /* TCP flags */
	uint32_t seq;
	uint16_t ipid;
};

/* Builds a super-frame into p; returns the header length. */
static uint32_t build(struct zoc_pkt *p, const struct spec *s, uint16_t gso_size)
{
	uint8_t *f = zoc_pkt_data(p);
	uint32_t l2 = 14 + 4 * s->tags, l3 = s->v6 ? 40 : 20 + s->ipopt;
	uint32_t l4 = s->udp ? 8 : 20 + s->tcpopt, hdr = l2 + l3 + l4;
	uint8_t *ip = f + l2, *th = ip + l3;

	memset(f, 0, hdr);
	memcpy(f, (uint8_t[12]){2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1}, 12);
	for (unsigned t = 0; t < s->tags; t++) {
		f[12 + 4 * t] = 0x81;
		f[14 + 4 * t] = 0;
		f[15 + 4 * t] = (uint8_t)(10 + t);
	}
	f[l2 - 2] = s->v6 ? 0x86 : 0x08;
	f[l2 - 1] = s->v6 ? 0xdd : 0x00;
	if (s->v6) {
		uint32_t pl = l4 + s->payload;

		ip[0] = 0x60;
		ip[4] = (uint8_t)(pl >> 8);
		ip[5] = (uint8_t)pl;
		ip[6] = s->udp ? 17 : 6;
		ip[7] = 64;
		for (int i = 0; i < 32; i++)
			ip[8 + i] = (uint8_t)(0x20 + i * 7);
	} else {
		uint32_t tl = l3 + l4 + s->payload;

		ip[0] = (uint8_t)(0x40 | (l3 / 4));
		ip[2] = (uint8_t)(tl >> 8);
		ip[3] = (uint8_t)tl;
		ip[4] = (uint8_t)(s->ipid >> 8);
		ip[5] = (uint8_t)s->ipid;
		ip[6] = 0x40; /* DF */
		ip[8] = 64;
		ip[9] = s->udp ? 17 : 6;
		memcpy(ip + 12, (uint8_t[8]){10, 0, 0, 1, 10, 0, 0, 2}, 8);
		for (unsigned i = 20; i < l3; i++)
			ip[i] = 1; /* NOP options */
	}
	th[0] = 0x30;
	th[1] = 0x39;
	th[2] = 0x14;
	th[3] = 0x51;
	if (s->udp) {
		th[4] = 0xde; /* garbage: the segmenter must rewrite it */
		th[6] = 0xad;
	} else {
		th[4] = (uint8_t)(s->seq >> 24);
		th[5] = (uint8_t)(s->seq >> 16);
		th[6] = (uint8_t)(s->seq >> 8);
		th[7] = (uint8_t)s->seq;
		th[12] = (uint8_t)((l4 / 4) << 4);
		th[13] = s->tflags;
		th[16] = 0x12; /* a seed the segmenter ignores */
		for (unsigned i = 20; i < l4; i++)
			th[i] = 1;
	}
	for (uint32_t i = 0; i < s->payload; i++)
		f[hdr + i] = (uint8_t)(i * 7 + 3);
	p->len = hdr + s->payload;
	p->gso_size = gso_size;
	p->gso_type = s->udp ? ZOC_PKT_GSO_UDP_L4 : s->v6 ? ZOC_PKT_GSO_TCPV6 : ZOC_PKT_GSO_TCPV4;
	if (!s->udp && (s->tflags & 0x80))
		p->gso_type |= ZOC_PKT_GSO_ECN;
	p->flags |= ZOC_PKT_F_CSUM_NEEDED;
	p->csum_start = (uint16_t)(l2 + l3);
	p->csum_offset = s->udp ? 6 : 16;
	return hdr;
}

static struct zoc_pkt *mk(const struct spec *s, uint16_t gso_size)
{
	struct zoc_pkt *p = zoc_pkt_alloc(g_pool, 14 + 80 + 60 + s->payload);

	assert_non_null(p);
	build(p, s, gso_size);
	return p;
}

/* Segments and checks everything about the segments; returns the count. */
static int check_segments(const struct spec *s, uint16_t gso_size, uint32_t max_l3)
{
	struct zoc_pkt *p = mk(s, gso_size);
	struct zoc_pkt *out[ZOC_GSO_MAX_SEGS];
	uint32_t l2 = 14 + 4 * s->tags, l3 = s->v6 ? 40 : 20 + s->ipopt;
	uint32_t l4 = s->udp ? 8 : 20 + s->tcpopt, hdr = l2 + l3 + l4, off = 0;
	uint32_t mss = gso_size;
	int n;

	if (max_l3 && l3 + l4 + mss > max_l3)
		mss = max_l3 - l3 - l4;
	n = zoc_gso_segment(p, max_l3, g_pool, out, ZOC_GSO_MAX_SEGS);
	assert_int_equal(n, (int)((s->payload + mss - 1) / mss));
	for (int i = 0; i < n; i++) {
		const uint8_t *f = zoc_pkt_cdata(out[i]), *ip = f + l2, *th = ip + l3;
		uint32_t seg = s->payload - off < mss ? s->payload - off : mss;
		uint32_t sum;
		uint8_t ph[12] = {0};

		assert_int_equal(out[i]->len, hdr + seg);
		assert_int_equal(out[i]->gso_type, 0);
		assert_true(out[i]->flags & ZOC_PKT_F_CSUM_VALID);
		assert_false(out[i]->flags & ZOC_PKT_F_CSUM_NEEDED);
		assert_memory_equal(f, zoc_pkt_cdata(p), l2); /* MACs and tags */
		if (max_l3)
			assert_true(l3 + l4 + seg <= max_l3);
		if (s->v6) {
			assert_int_equal(rd16(ip + 4), l4 + seg);
			sum = ref_sum(ip + 8, 32, 0);
			ph[2] = (uint8_t)((l4 + seg) >> 8);
			ph[3] = (uint8_t)(l4 + seg);
			ph[7] = s->udp ? 17 : 6;
			sum = ref_sum(ph, 8, sum);
		} else {
			assert_int_equal(rd16(ip + 2), l3 + l4 + seg);
			assert_int_equal(rd16(ip + 4), (uint16_t)(s->ipid + i));
			assert_int_equal(ref_sum(ip, l3, 0), 0xffff); /* header checksum */
			sum = ref_sum(ip + 12, 8, 0);
			ph[1] = s->udp ? 17 : 6;
			ph[2] = (uint8_t)((l4 + seg) >> 8);
			ph[3] = (uint8_t)(l4 + seg);
			sum = ref_sum(ph, 4, sum);
		}
		/* L4 checksum over pseudo-header + segment verifies to 0xffff */
		assert_int_equal(ref_sum(th, l4 + seg, sum), 0xffff);
		if (s->udp) {
			assert_int_equal(rd16(th + 4), 8 + seg);
			assert_int_not_equal(rd16(th + 6), 0);
		} else {
			uint8_t want = s->tflags;

			assert_int_equal(rd32(th + 4), s->seq + off);
			if (i > 0)
				want &= (uint8_t)~0x80;
			if (i + 1 < n)
				want &= (uint8_t)~0x09;
			assert_int_equal(th[13], want);
			assert_memory_equal(th + 20, zoc_pkt_cdata(p) + l2 + l3 + 20, l4 - 20);
		}
		assert_memory_equal(f + hdr, zoc_pkt_cdata(p) + hdr + off, seg);
		off += seg;
	}
	assert_int_equal(off, s->payload);
	zoc_pkt_free_bulk(out, (unsigned)n);
	zoc_pkt_free(p);
	return n;
}

static void assert_pool_full(void)
{
	uint32_t sm, lg;

	zoc_pktpool_available(g_pool, &sm, &lg);
	assert_int_equal(sm, 2048);
	assert_int_equal(lg, 8);
	assert_int_equal(zoc_pktpool_available_giant(g_pool), 8);
}

static void test_tcp4(void **state)
{
	struct spec s = {.payload = 4000, .tflags = 0x18 | 0x01 | 0x80, .seq = 0xfffff000u,
			 .ipid = 0xfffe};

	(void)state;
	assert_int_equal(check_segments(&s, 1448, 1500), 3); /* seq and id wrap */
	s.tcpopt = 12;
	s.ipopt = 8;
	s.payload = 1;
	assert_int_equal(check_segments(&s, 1448, 0), 1);
	s.payload = 65000;
	assert_int_equal(check_segments(&s, 1448, 0), 45);
	s.tags = 2;
	s.payload = 2897;
	assert_int_equal(check_segments(&s, 1448, 1500), 3);
	assert_pool_full();
}

static void test_tcp6(void **state)
{
	struct spec s = {.v6 = true, .payload = 3001, .tflags = 0x18, .seq = 77};

	(void)state;
	assert_int_equal(check_segments(&s, 1000, 0), 4);
	s.tcpopt = 12;
	s.tags = 1;
	s.payload = 65400;
	assert_int_equal(check_segments(&s, 1428, 9000), 46);
	assert_pool_full();
}

static void test_udp(void **state)
{
	struct spec s = {.udp = true, .payload = 2500};

	(void)state;
	assert_int_equal(check_segments(&s, 1000, 1500), 3);
	s.v6 = true;
	s.payload = 1473;
	assert_int_equal(check_segments(&s, 1472, 0), 2);
	assert_pool_full();
}

/* The output MTU lowers a TCP MSS; a UDP segment size over it fails. */
static void test_mtu(void **state)
{
	struct spec s = {.payload = 6000, .tflags = 0x10};
	struct zoc_pkt *out[64];
	struct zoc_pkt *p;

	(void)state;
	assert_int_equal(check_segments(&s, 1448, 1000), 7); /* mss 960 */
	s.udp = true;
	p = mk(&s, 1400);
	assert_int_equal(zoc_gso_segment(p, 1000, g_pool, out, 64), -EMSGSIZE);
	/* headers alone over the MTU */
	p->gso_type = ZOC_PKT_GSO_NONE;
	zoc_pkt_free(p);
	s.udp = false;
	p = mk(&s, 1448);
	assert_int_equal(zoc_gso_segment(p, 40, g_pool, out, 64), -EMSGSIZE);
	zoc_pkt_free(p);
	assert_pool_full();
}

static void test_hostile(void **state)
{
	struct spec s = {.payload = 3000, .tflags = 0x10};
	struct zoc_pkt *out[ZOC_GSO_MAX_SEGS];
	struct zoc_pkt *p;
	uint32_t hdr;
	uint8_t *f;

	(void)state;
	p = zoc_pkt_alloc(g_pool, 4000);
	hdr = build(p, &s, 1000);
	f = zoc_pkt_data(p);
	/* every truncation of the headers */
	for (uint32_t l = 0; l <= hdr; l++) {
		p->len = l;
		assert_int_equal(zoc_gso_segment(p, 0, g_pool, out, 64), -EINVAL);
	}
	p->len = hdr + 3000;
	/* type does not match the frame */
	p->gso_type = ZOC_PKT_GSO_TCPV6;
	assert_int_equal(zoc_gso_segment(p, 0, g_pool, out, 64), -EINVAL);
	p->gso_type = ZOC_PKT_GSO_UDP_L4;
	assert_int_equal(zoc_gso_segment(p, 0, g_pool, out, 64), -EINVAL);
	p->gso_type = ZOC_PKT_GSO_UDP; /* UFO: not supported */
	assert_int_equal(zoc_gso_segment(p, 0, g_pool, out, 64), -EINVAL);
	p->gso_type = 0x7f;
	assert_int_equal(zoc_gso_segment(p, 0, g_pool, out, 64), -EINVAL);
	p->gso_type = ZOC_PKT_GSO_TCPV4;
	/* gso_size 0; too many segments */
	p->gso_size = 0;
	assert_int_equal(zoc_gso_segment(p, 0, g_pool, out, 64), -EINVAL);
	p->gso_size = 1;
	assert_int_equal(zoc_gso_segment(p, 0, g_pool, out, ZOC_GSO_MAX_SEGS), -E2BIG);
	p->gso_size = 1000;
	assert_int_equal(zoc_gso_segment(p, 0, g_pool, out, 2), -E2BIG);
	/* IP header fields that lie */
	f[14] = 0x44; /* ihl 4 */
	assert_int_equal(zoc_gso_segment(p, 0, g_pool, out, 64), -EINVAL);
	f[14] = 0x4f; /* ihl 15: options run into the TCP header: parsed in bounds */
	{
		int n = zoc_gso_segment(p, 0, g_pool, out, 64);

		assert_true(n == -EINVAL || n > 0);
		if (n > 0)
			zoc_pkt_free_bulk(out, (unsigned)n);
	}
	f[14] = 0x45;
	f[16] = 0xff; /* total length past the frame */
	assert_int_equal(zoc_gso_segment(p, 0, g_pool, out, 64), -EINVAL);
	f[16] = 0;
	f[17] = 20; /* total length = IP header only */
	assert_int_equal(zoc_gso_segment(p, 0, g_pool, out, 64), -EINVAL);
	build(p, &s, 1000);
	f[20] = 0x20; /* MF: a fragment */
	assert_int_equal(zoc_gso_segment(p, 0, g_pool, out, 64), -EINVAL);
	build(p, &s, 1000);
	f[34 + 12] = 0x40; /* doff 4 */
	assert_int_equal(zoc_gso_segment(p, 0, g_pool, out, 64), -EINVAL);
	f[34 + 12] = 0xf0; /* doff 15 with 3000 bytes behind: fine, fewer payload */
	assert_int_equal(zoc_gso_segment(p, 0, g_pool, out, 64), 3);
	zoc_pkt_free_bulk(out, 3);
	build(p, &s, 1000);
	f[12] = 0x88; /* not IP */
	f[13] = 0x47;
	assert_int_equal(zoc_gso_segment(p, 0, g_pool, out, 64), -EINVAL);
	/* an IPv6 extension header is refused; a jumbogram too */
	s.v6 = true;
	build(p, &s, 1000);
	f[14 + 6] = 0; /* hop-by-hop */
	assert_int_equal(zoc_gso_segment(p, 0, g_pool, out, 64), -EINVAL);
	build(p, &s, 1000);
	f[18] = f[19] = 0;
	assert_int_equal(zoc_gso_segment(p, 0, g_pool, out, 64), -EINVAL);
	/* ECN flag on UDP */
	s.v6 = false;
	s.udp = true;
	build(p, &s, 1000);
	p->gso_type |= ZOC_PKT_GSO_ECN;
	assert_int_equal(zoc_gso_segment(p, 0, g_pool, out, 64), -EINVAL);
	zoc_pkt_free(p);
	assert_pool_full();
}

/* Pool exhaustion in the middle: nothing leaks. */
static void test_nobufs(void **state)
{
	struct zoc_pktpool *small = zoc_pktpool_create_ex("tiny", 0, 4, 0, 1);
	struct spec s = {.payload = 10000, .tflags = 0x10};
	struct zoc_pkt *out[64], *p;
	uint32_t sm, lg;

	(void)state;
	assert_non_null(small);
	p = zoc_pkt_alloc(small, 14 + 40 + 10000);
	assert_non_null(p); /* the giant one */
	assert_true(p->flags & ZOC_PKT_F_GIANT);
	build(p, &s, 1000);
	assert_int_equal(zoc_gso_segment(p, 0, small, out, 64), -ENOBUFS);
	zoc_pktpool_available(small, &sm, &lg);
	assert_int_equal(sm, 4);
	assert_null(zoc_pkt_alloc(small, ZOC_PKT_GSO_MAX_FRAME)); /* giant in use */
	assert_null(zoc_pkt_alloc(small, ZOC_PKT_GSO_MAX_FRAME + 1));
	zoc_pkt_free(p);
	p = zoc_pkt_alloc(small, ZOC_PKT_GSO_MAX_FRAME);
	assert_non_null(p);
	assert_int_equal(p->room, ZOC_PKT_GIANT_ROOM);
	zoc_pkt_free(p);
	assert_int_equal(zoc_pktpool_available_giant(small), 1);
	zoc_pktpool_destroy(small);
}

/* Random corruption of the headers: an error or well-formed segments,
 * never a crash or a leak (ASan build checks the bounds). */
static void test_random(void **state)
{
	struct zoc_pkt *out[ZOC_GSO_MAX_SEGS];
	unsigned seed = 12345;

	(void)state;
	for (int it = 0; it < 3000; it++) {
		struct spec s = {.v6 = it & 1, .udp = (it >> 1) & 1, .tags = (it >> 2) % 3,
				 .payload = 100 + (unsigned)it * 7 % 5000, .tflags = 0x19};
		struct zoc_pkt *p = mk(&s, (uint16_t)(200 + it % 1400));
		int n;

		for (int k = 0; k < 1 + it % 4; k++) {
			uint32_t at = (uint32_t)rand_r(&seed) % 100;

			if (at < p->len)
				zoc_pkt_data(p)[at] = (uint8_t)rand_r(&seed);
		}
		if (it % 5 == 0)
			p->len = (uint32_t)rand_r(&seed) % (p->len + 1);
		n = zoc_gso_segment(p, it % 3 ? 1500 : 0, g_pool, out, ZOC_GSO_MAX_SEGS);
		assert_true(n > 0 || n == -EINVAL || n == -E2BIG || n == -EMSGSIZE);
		for (int i = 0; i < n; i++)
			assert_true(out[i]->len <= p->len);
		if (n > 0)
			zoc_pkt_free_bulk(out, (unsigned)n);
		zoc_pkt_free(p);
	}
	assert_pool_full();
}

/* Which super-frames a port's caps accept whole. */
static void test_accepts(void **state)
{
	struct spec s = {.payload = 3000};
	struct zoc_pkt *p = mk(&s, 1000);

	(void)state;
	assert_true(zoc_gso_accepts(ZOC_GSO_CAP_TCPV4, p));
	assert_false(zoc_gso_accepts(ZOC_GSO_CAP_TCPV6 | ZOC_GSO_CAP_USO4, p));
	p->gso_type |= ZOC_PKT_GSO_ECN;
	assert_false(zoc_gso_accepts(ZOC_GSO_CAP_TCPV4, p));
	assert_true(zoc_gso_accepts(ZOC_GSO_CAP_TCPV4 | ZOC_GSO_CAP_ECN, p));
	s.udp = true;
	s.v6 = true;
	build(p, &s, 1000);
	assert_false(zoc_gso_accepts(ZOC_GSO_CAP_USO4, p));
	assert_true(zoc_gso_accepts(ZOC_GSO_CAP_USO6, p));
	p->gso_type = 9;
	assert_false(zoc_gso_accepts(~0u, p));
	zoc_pkt_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcp4),   cmocka_unit_test(test_tcp6),
		cmocka_unit_test(test_udp),    cmocka_unit_test(test_mtu),
		cmocka_unit_test(test_hostile), cmocka_unit_test(test_nobufs),
		cmocka_unit_test(test_random), cmocka_unit_test(test_accepts),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
