/* SPDX-License-Identifier: MIT */
#include "net/flowkey.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/util.h"

static inline uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool icmp4_is_error(uint8_t t)
{
	return t == 3 || t == 4 || t == 5 || t == 11 || t == 12;
}

static bool icmp6_is_error(uint8_t t)
{
	return t >= 1 && t <= 4;
}

/* TCP options of a SYN: the window scale. -EINVAL on a malformed list. */
static int tcp_options(const uint8_t *o, uint32_t n, struct zoc_flowkey *k)
{
	uint32_t i = 0;

	while (i < n) {
		uint8_t kind = o[i];

		if (kind == 0)
			break;
		if (kind == 1) {
			i++;
			continue;
		}
		if (i + 1 >= n || o[i + 1] < 2 || o[i + 1] > n - i)
			return -EINVAL;
		if (kind == 3 && o[i + 1] == 3) {
			k->wscale = o[i + 2] > 14 ? 14 : o[i + 2];
			k->flags |= ZOC_FLOWKEY_F_WSCALE;
		}
		i += o[i + 1];
	}
	return 0;
}

/* L4 of the outer packet (inner = false) or of an ICMP error's quoted
 * packet (inner = true: only the first 8 bytes are guaranteed, and the
 * quoted lengths need not fit). p/n: the L4 bytes available. */
static int parse_l4(const uint8_t *p, uint32_t n, struct zoc_flowkey *k, bool inner);

static int parse_ip(const uint8_t *p, uint32_t n, struct zoc_flowkey *k, bool ipv6, bool inner)
{
	uint8_t proto;
	uint32_t off, end;

	if (!ipv6) {
		uint32_t ihl, tot;
		uint16_t fo;

		if (n < 20 || (p[0] >> 4) != 4)
			return -EINVAL;
		ihl = (uint32_t)(p[0] & 0xf) * 4;
		tot = rd16(p + 2);
		if (ihl < 20 || ihl > n)
			return -EINVAL;
		if (!inner) {
			if (tot < ihl || tot > n)
				return -EINVAL;
			end = tot;
		} else {
			end = n; /* the quoted packet is truncated by design */
		}
		k->family = 4;
		memset(k->src, 0, 16);
		memset(k->dst, 0, 16);
		memcpy(k->src, p + 12, 4);
		memcpy(k->dst, p + 16, 4);
		proto = p[9];
		fo = rd16(p + 6);
		k->proto = proto;
		if (fo & 0x3fff) { /* MF or offset */
			k->flags |= ZOC_FLOWKEY_F_FRAG;
			if (fo & 0x1fff) {
				k->flags |= ZOC_FLOWKEY_F_LATER_FRAG;
				return 0;
			}
		}
		off = ihl;
	} else {
		uint32_t plen;

		if (n < 40 || (p[0] >> 4) != 6)
			return -EINVAL;
		plen = rd16(p + 4);
		if (!inner) {
			if (plen > n - 40)
				return -EINVAL;
			end = 40 + plen;
		} else {
			end = n;
		}
		k->family = 6;
		memcpy(k->src, p + 8, 16);
		memcpy(k->dst, p + 24, 16);
		proto = p[6];
		off = 40;
		for (unsigned i = 0;; i++) {
			if (proto != 0 && proto != 43 && proto != 60 && proto != 44 && proto != 51)
				break;
			if (i >= ZOC_FLOWKEY_MAX_EXT || end - off < 8)
				return -EINVAL;
			if (proto == 44) {
				uint16_t fo = rd16(p + off + 2);

				k->flags |= ZOC_FLOWKEY_F_FRAG;
				proto = p[off];
				off += 8;
				if (fo & 0xfff8) {
					k->proto = proto;
					k->flags |= ZOC_FLOWKEY_F_LATER_FRAG;
					return 0;
				}
				continue;
			}
			{
				uint32_t hl = proto == 51 ? ((uint32_t)p[off + 1] + 2) * 4
							  : ((uint32_t)p[off + 1] + 1) * 8;

				if (hl > end - off)
					return -EINVAL;
				proto = p[off];
				off += hl;
			}
		}
		k->proto = proto;
	}
	return parse_l4(p + off, end - off, k, inner);
}

static int parse_l4(const uint8_t *p, uint32_t n, struct zoc_flowkey *k, bool inner)
{
	switch (k->proto) {
	case ZOC_IPPROTO_TCP: {
		uint32_t doff;

		if (inner) {
			if (n < 8)
				return -EINVAL;
			k->sport = rd16(p);
			k->dport = rd16(p + 2);
			return 0;
		}
		if (n < 20)
			return -EINVAL;
		doff = (uint32_t)(p[12] >> 4) * 4;
		if (doff < 20 || doff > n)
			return -EINVAL;
		k->sport = rd16(p);
		k->dport = rd16(p + 2);
		k->seq = rd32(p + 4);
		k->ack = rd32(p + 8);
		k->tcp_flags = p[13] & 0x3f;
		k->win = rd16(p + 14);
		k->l4_len = (uint16_t)(n - doff);
		if ((k->tcp_flags & ZOC_TCP_SYN) && doff > 20)
			return tcp_options(p + 20, doff - 20, k);
		return 0;
	}
	case ZOC_IPPROTO_UDP:
	case 132: /* SCTP: ports in the same place */
		if (n < 8)
			return -EINVAL;
		k->sport = rd16(p);
		k->dport = rd16(p + 2);
		if (!inner && k->proto == ZOC_IPPROTO_UDP) {
			uint16_t ulen = rd16(p + 4);

			/* A first fragment holds only part of the datagram. */
			if (ulen < 8 || (ulen > n && !(k->flags & ZOC_FLOWKEY_F_FRAG)))
				return -EINVAL;
			k->l4_len = (uint16_t)(ZOC_MIN(ulen, n) - 8);
		}
		return 0;
	case ZOC_IPPROTO_ICMP:
	case ZOC_IPPROTO_ICMPV6: {
		bool v6 = k->proto == ZOC_IPPROTO_ICMPV6;
		uint8_t t;

		if (n < 8)
			return -EINVAL;
		t = p[0];
		if (inner) {
			/* A quoted ICMP (an error about an echo): key by id. */
			if ((!v6 && (t == 8 || t == 0)) || (v6 && (t == 128 || t == 129)))
				k->sport = k->dport = rd16(p + 4);
			return 0;
		}
		k->icmp_type = t;
		k->icmp_code = p[1];
		if ((!v6 && (t == 8 || t == 0)) || (v6 && (t == 128 || t == 129))) {
			k->sport = k->dport = rd16(p + 4);
			return 0;
		}
		if ((!v6 && icmp4_is_error(t)) || (v6 && icmp6_is_error(t))) {
			struct zoc_flowkey in;
			int rc;

			if (k->flags & ZOC_FLOWKEY_F_FRAG)
				return 0; /* no quoted packet to trust */
			memset(&in, 0, sizeof(in));
			rc = parse_ip(p + 8, n - 8, &in, v6, true);
			if (rc)
				return rc;
			if (in.flags & ZOC_FLOWKEY_F_LATER_FRAG)
				return -EINVAL;
			if (in.family != k->family)
				return -EINVAL;
			/* The key becomes the quoted packet's tuple. */
			memcpy(k->src, in.src, 16);
			memcpy(k->dst, in.dst, 16);
			k->sport = in.sport;
			k->dport = in.dport;
			k->proto = in.proto;
			k->flags |= ZOC_FLOWKEY_F_RELATED;
		}
		return 0;
	}
	default:
		return 0;
	}
}

int zoc_flowkey_parse(const uint8_t *frame, uint32_t len, struct zoc_flowkey *k)
{
	uint32_t off = 12;
	uint16_t et;

	memset(k, 0, sizeof(*k));
	if (len < 14)
		return -EINVAL;
	et = rd16(frame + off);
	for (int tags = 0; et == 0x8100 || et == 0x88a8; tags++) {
		if (tags == 2 || len < off + 6)
			return -EINVAL;
		if (tags == 0)
			k->vlan = rd16(frame + off + 2) & 0xfff;
		off += 4;
		et = rd16(frame + off);
	}
	off += 2;
	if (et == 0x0800)
		return parse_ip(frame + off, len - off, k, false, false);
	if (et == 0x86dd)
		return parse_ip(frame + off, len - off, k, true, false);
	return -ENOENT;
}

static inline uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v;
	h *= 0x9e3779b97f4a7c15ull;
	return h ^ (h >> 29);
}

static inline uint64_t ld64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

uint64_t zoc_flowkey_hash(const struct zoc_flowkey *k, uint16_t zone)
{
	uint64_t h = 0x243f6a8885a308d3ull;

	h = mix(h, ld64(k->src) + (ld64(k->dst) << 1));
	if (k->family == 6)
		h = mix(h, ld64(k->src + 8) ^ ld64(k->dst + 8) * 3 ^ ld64(k->src + 8) >> 7 ^
				   (ld64(k->dst) << 17));
	h = mix(h, (uint64_t)k->sport << 48 | (uint64_t)k->dport << 32 | (uint64_t)k->proto << 24 |
			   (uint64_t)k->family << 16 | zone);
	return mix(h, h >> 32);
}

uint32_t zoc_flowkey_sym_hash(const struct zoc_flowkey *k)
{
	uint64_t a = 0, b = 0, h;

	for (unsigned i = 0; i < 16; i += 8) {
		a += ld64(k->src + i) ^ ld64(k->dst + i);
		b += ld64(k->src + i) + ld64(k->dst + i);
	}
	h = mix(mix(0x13198a2e03707344ull, a), b);
	h = mix(h, (uint64_t)(k->sport ^ k->dport) << 32 | (uint32_t)(k->sport + k->dport) << 8 |
			   k->proto);
	return (uint32_t)(h >> 32) | 1;
}

void zoc_flowkey_addr_str(const uint8_t addr[16], uint8_t family, char *buf, unsigned size)
{
	if (!inet_ntop(family == 6 ? AF_INET6 : AF_INET, addr, buf, size) && size)
		snprintf(buf, size, "?");
}
