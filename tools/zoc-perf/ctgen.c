/* SPDX-License-Identifier: MIT */
/*
 * ctgen.c - frames of whole TCP connections (see ctgen.h).
 */
#include "ctgen.h"

#include <string.h>

#define ETH_LEN 14
#define IP4_LEN 20
#define IP6_LEN 40
#define TCP_LEN 20

static const uint8_t k_flags[CTGEN_STEPS] = {
	0x02, 0x12, 0x10, 0x11, 0x10, 0x11, 0x10, /* SYN, SYN|ACK, ACK, FIN|ACK, ... */
};

uint8_t ctgen_flags(int step)
{
	return k_flags[step];
}

void ctgen_init(struct ctgen *g, bool ipv6)
{
	static const uint8_t a[6] = {0x02, 0xc7, 0, 0, 0, 0x0a}, b[6] = {0x02, 0xc7, 0, 0, 0, 0x0b};
	static const uint8_t s6[16] = {0xfd, 0, 0, 0xc7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

	memset(g, 0, sizeof(*g));
	memcpy(g->mac_a, a, 6);
	memcpy(g->mac_b, b, 6);
	g->ipv6 = ipv6;
	g->dport = 80;
	g->server4 = 0xc0a8c701u; /* 192.168.199.1 */
	memcpy(g->server6, s6, 16);
}

static uint32_t isn_client(uint64_t c)
{
	return (uint32_t)(c * 2654435761u) + 1000u;
}

static uint32_t isn_server(uint64_t c)
{
	return (uint32_t)((c * 0x9e3779b97f4a7c15ull) >> 32) ^ 0x5bd1e995u;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t sum16(const uint8_t *p, unsigned n, uint32_t s)
{
	for (unsigned i = 0; i + 1 < n; i += 2)
		s += get16(p + i);
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static void client_addr(const struct ctgen *g, uint64_t c, uint8_t *a)
{
	uint32_t host = (uint32_t)(c >> 14); /* up to 2^24 client addresses */

	if (!g->ipv6) {
		put32(a, 0x0a000000u + host);
	} else {
		memcpy(a, g->server6, 12);
		put32(a + 12, 0x01000000u + host);
	}
}

unsigned ctgen_frame(const struct ctgen *g, uint64_t c, int step, uint8_t *buf)
{
	const bool fromb = ctgen_side(step) == CTGEN_B;
	const uint32_t ci = isn_client(c), si = isn_server(c);
	uint8_t cli[16], srv[16];
	const unsigned alen = g->ipv6 ? 16 : 4, ip_len = g->ipv6 ? IP6_LEN : IP4_LEN;
	uint8_t *ip = buf + ETH_LEN, *tcp = ip + ip_len;
	uint32_t seq, ack = 0, s;
	uint16_t cport = (uint16_t)(1024 + (c & 0x3fff));

	client_addr(g, c, cli);
	if (g->ipv6)
		memcpy(srv, g->server6, 16);
	else
		put32(srv, g->server4);
	switch (step) {
	case 0: seq = ci; break;
	case 1: seq = si, ack = ci + 1; break;
	case 2: case 3: seq = ci + 1, ack = si + 1; break;
	case 4: case 5: seq = si + 1, ack = ci + 2; break;
	default: seq = ci + 2, ack = si + 2; break;
	}
	memcpy(buf, fromb ? g->mac_a : g->mac_b, 6);
	memcpy(buf + 6, fromb ? g->mac_b : g->mac_a, 6);
	if (!g->ipv6) {
		put16(buf + 12, 0x0800);
		ip[0] = 0x45, ip[1] = 0;
		put16(ip + 2, IP4_LEN + TCP_LEN);
		put16(ip + 4, (uint16_t)c), put16(ip + 6, 0x4000); /* id, DF */
		ip[8] = 64, ip[9] = 6;
		put16(ip + 10, 0);
		memcpy(ip + 12, fromb ? srv : cli, 4);
		memcpy(ip + 16, fromb ? cli : srv, 4);
		put16(ip + 10, fold(sum16(ip, IP4_LEN, 0)));
	} else {
		put16(buf + 12, 0x86dd);
		put32(ip, 0x60000000u);
		put16(ip + 4, TCP_LEN);
		ip[6] = 6, ip[7] = 64;
		memcpy(ip + 8, fromb ? srv : cli, 16);
		memcpy(ip + 24, fromb ? cli : srv, 16);
	}
	put16(tcp, fromb ? g->dport : cport);
	put16(tcp + 2, fromb ? cport : g->dport);
	put32(tcp + 4, seq);
	put32(tcp + 8, ack);
	tcp[12] = (TCP_LEN / 4) << 4;
	tcp[13] = k_flags[step];
	put16(tcp + 14, 65535);
	put16(tcp + 16, 0);
	put16(tcp + 18, 0);
	/* Pseudo header: addresses, protocol, TCP length. */
	s = sum16(ip + (g->ipv6 ? 8 : 12), 2 * alen, 6 + TCP_LEN);
	put16(tcp + 16, fold(sum16(tcp, TCP_LEN, s)));
	return ETH_LEN + ip_len + TCP_LEN;
}

int ctgen_check(const struct ctgen *g, const uint8_t *f, unsigned len, uint64_t *c, int *step)
{
	const unsigned ip_len = g->ipv6 ? IP6_LEN : IP4_LEN, alen = g->ipv6 ? 16 : 4;
	const uint8_t *ip = f + ETH_LEN, *tcp = ip + ip_len, *cli, *srv;
	uint8_t srvref[16], base[16];
	bool fromb;
	uint64_t n;
	uint16_t cport;
	uint32_t seq;

	if (len < ETH_LEN + ip_len + TCP_LEN)
		return -1;
	if (!memcmp(f + 6, g->mac_b, 6) && !memcmp(f, g->mac_a, 6))
		fromb = true;
	else if (!memcmp(f + 6, g->mac_a, 6) && !memcmp(f, g->mac_b, 6))
		fromb = false;
	else
		return -1;
	if (get16(f + 12) != (g->ipv6 ? 0x86dd : 0x0800))
		return -1;
	if (g->ipv6) {
		if (ip[6] != 6)
			return -1;
		memcpy(srvref, g->server6, 16);
		cli = fromb ? ip + 24 : ip + 8;
		srv = fromb ? ip + 8 : ip + 24;
	} else {
		if (ip[0] != 0x45 || ip[9] != 6)
			return -1;
		put32(srvref, g->server4);
		cli = fromb ? ip + 16 : ip + 12;
		srv = fromb ? ip + 12 : ip + 16;
	}
	if (memcmp(srv, srvref, alen))
		return -1;
	client_addr(g, 0, base);
	if (memcmp(cli, base, alen - 4))
		return -1;
	n = get32(cli + alen - 4) - get32(base + alen - 4);
	cport = get16(tcp + (fromb ? 2 : 0));
	if (cport < 1024 || cport >= 1024 + 0x4000 || get16(tcp + (fromb ? 0 : 2)) != g->dport)
		return -1;
	n = n << 14 | (uint64_t)(cport - 1024);
	seq = get32(tcp + 4);
	switch (tcp[13]) {
	case 0x02: *step = 0; break;
	case 0x12: *step = 1; break;
	case 0x11: *step = fromb ? 5 : 3; break;
	case 0x10:
		if (fromb)
			*step = 4;
		else
			*step = seq == isn_client(n) + 2 ? 6 : 2;
		break;
	default: return -1;
	}
	if (ctgen_side(*step) != (fromb ? CTGEN_B : CTGEN_A))
		return -1;
	*c = n;
	return 0;
}
