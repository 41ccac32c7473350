/* SPDX-License-Identifier: MIT */
#include "net/gso.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "core/util.h"

#define ETH_HLEN 14u
#define TAG_HLEN 4u
#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_CWR 0x80

static inline uint16_t rd16(const uint8_t *b)
{
	return (uint16_t)(b[0] << 8 | b[1]);
}

static inline void wr16(uint8_t *b, uint16_t v)
{
	b[0] = (uint8_t)(v >> 8);
	b[1] = (uint8_t)v;
}

uint64_t zoc_inet_sum(const void *buf, uint32_t len, uint64_t sum)
{
	const uint8_t *b = buf;

	while (len >= 4) {
		uint32_t v;

		memcpy(&v, b, 4);
		sum += v;
		b += 4;
		len -= 4;
	}
	if (len >= 2) {
		uint16_t v;

		memcpy(&v, b, 2);
		sum += v;
		b += 2;
		len -= 2;
	}
	if (len) {
		uint16_t v = 0;

		memcpy(&v, b, 1);
		sum += v;
	}
	return sum;
}

uint16_t zoc_inet_fold(uint64_t sum)
{
	sum = (sum & 0xffffffffu) + (sum >> 32);
	sum = (sum & 0xffffffffu) + (sum >> 32);
	sum = (sum & 0xffffu) + (sum >> 16);
	sum = (sum & 0xffffu) + (sum >> 16);
	return ntohs((uint16_t)~sum);
}

/* Offset of the L3 header and its ethertype, skipping up to two tags. */
static int l2_parse(const uint8_t *f, uint32_t len, uint16_t *et_out)
{
	uint32_t off = ETH_HLEN;
	uint16_t et;

	if (len < ETH_HLEN)
		return -EINVAL;
	et = rd16(f + 12);
	for (int tags = 0; (et == 0x8100 || et == 0x88a8) && tags < 2; tags++) {
		if (len < off + TAG_HLEN)
			return -EINVAL;
		et = rd16(f + off + 2);
		off += TAG_HLEN;
	}
	*et_out = et;
	return (int)off;
}

int zoc_gso_parse(const uint8_t *f, uint32_t len, uint8_t gso_type, struct zoc_gso_info *gi)
{
	uint8_t base = gso_type & (uint8_t)~ZOC_PKT_GSO_ECN;
	uint32_t l2, l3, l4, iplen, end;
	uint16_t et;
	int off;

	memset(gi, 0, sizeof(*gi));
	off = l2_parse(f, len, &et);
	if (off < 0)
		return -EINVAL;
	l2 = (uint32_t)off;
	if (et == 0x0800) {
		if (len < l2 + 20 || (f[l2] >> 4) != 4)
			return -EINVAL;
		l3 = (f[l2] & 0xfu) * 4u;
		iplen = rd16(f + l2 + 2);
		if (l3 < 20 || iplen < l3 || l2 + iplen > len)
			return -EINVAL;
		if (rd16(f + l2 + 6) & 0x3fff) /* MF or a fragment offset */
			return -EINVAL;
		gi->proto = f[l2 + 9];
	} else if (et == 0x86dd) {
		if (len < l2 + 40 || (f[l2] >> 4) != 6)
			return -EINVAL;
		l3 = 40;
		iplen = 40u + rd16(f + l2 + 4);
		if (iplen == 40 || l2 + iplen > len) /* 0: jumbogram */
			return -EINVAL;
		gi->proto = f[l2 + 6];
		gi->ipv6 = true;
	} else {
		return -EINVAL;
	}
	switch (base) {
	case ZOC_PKT_GSO_TCPV4:
		if (gi->ipv6 || gi->proto != 6)
			return -EINVAL;
		break;
	case ZOC_PKT_GSO_TCPV6:
		if (!gi->ipv6 || gi->proto != 6)
			return -EINVAL;
		break;
	case ZOC_PKT_GSO_UDP_L4:
		if (gi->proto != 17 || (gso_type & ZOC_PKT_GSO_ECN))
			return -EINVAL;
		break;
	default:
		return -EINVAL;
	}
	end = l2 + iplen;
	if (gi->proto == 6) {
		if (end < l2 + l3 + 20)
			return -EINVAL;
		l4 = (uint32_t)(f[l2 + l3 + 12] >> 4) * 4u;
		if (l4 < 20 || end < l2 + l3 + l4)
			return -EINVAL;
		gi->l4_csum_off = 16;
	} else {
		l4 = 8;
		if (end < l2 + l3 + l4)
			return -EINVAL;
		gi->l4_csum_off = 6;
	}
	if (end == l2 + l3 + l4)
		return -EINVAL; /* nothing to segment */
	gi->l2_len = (uint16_t)l2;
	gi->l3_len = (uint16_t)l3;
	gi->l4_len = (uint16_t)l4;
	gi->hdr_len = (uint16_t)(l2 + l3 + l4);
	gi->payload = end - gi->hdr_len;
	gi->frame_len = end;
	return 0;
}

bool zoc_gso_accepts(uint32_t caps, const struct zoc_pkt *p)
{
	uint8_t base = p->gso_type & (uint8_t)~ZOC_PKT_GSO_ECN;
	uint16_t et = 0;
	bool ok;

	switch (base) {
	case ZOC_PKT_GSO_TCPV4:
		ok = caps & ZOC_GSO_CAP_TCPV4;
		break;
	case ZOC_PKT_GSO_TCPV6:
		ok = caps & ZOC_GSO_CAP_TCPV6;
		break;
	case ZOC_PKT_GSO_UDP_L4:
		if (l2_parse(zoc_pkt_cdata(p), p->len, &et) < 0)
			return false;
		ok = (et == 0x86dd) ? (caps & ZOC_GSO_CAP_USO6) : (caps & ZOC_GSO_CAP_USO4);
		break;
	default:
		return false;
	}
	if (ok && (p->gso_type & ZOC_PKT_GSO_ECN) && !(caps & ZOC_GSO_CAP_ECN))
		ok = false;
	return ok;
}

/* The pseudo-header sum for an L4 segment of l4len bytes. */
static uint64_t pseudo_sum(const uint8_t *ip, bool v6, uint8_t proto, uint32_t l4len)
{
	uint8_t ph[8] = {0};
	uint64_t s;

	if (v6) {
		s = zoc_inet_sum(ip + 8, 32, 0);
		ph[0] = (uint8_t)(l4len >> 24);
		ph[1] = (uint8_t)(l4len >> 16);
		ph[2] = (uint8_t)(l4len >> 8);
		ph[3] = (uint8_t)l4len;
		ph[7] = proto;
		return zoc_inet_sum(ph, 8, s);
	}
	s = zoc_inet_sum(ip + 12, 8, 0);
	ph[1] = proto;
	ph[2] = (uint8_t)(l4len >> 8);
	ph[3] = (uint8_t)l4len;
	return zoc_inet_sum(ph, 4, s);
}

int zoc_gso_segment(const struct zoc_pkt *p, uint32_t max_l3, struct zoc_pktpool *pool,
		    struct zoc_pkt **out, unsigned max_out)
{
	const uint8_t *src = zoc_pkt_cdata(p);
	struct zoc_gso_info gi;
	uint32_t mss = p->gso_size, nseg, seq0 = 0, off = 0;
	uint16_t id0 = 0;
	uint8_t tflags = 0;

	if (!pool || zoc_gso_parse(src, p->len, p->gso_type, &gi) || mss == 0)
		return -EINVAL;
	if (max_l3) {
		uint32_t hl = (uint32_t)gi.l3_len + gi.l4_len;

		if (hl + mss > max_l3) {
			if (gi.proto == 17 || max_l3 <= hl)
				return -EMSGSIZE;
			mss = max_l3 - hl;
		}
	}
	nseg = (gi.payload + mss - 1) / mss;
	if (nseg > max_out || nseg > ZOC_GSO_MAX_SEGS)
		return -E2BIG;
	if (gi.proto == 6) {
		const uint8_t *th = src + gi.l2_len + gi.l3_len;

		seq0 = (uint32_t)th[4] << 24 | (uint32_t)th[5] << 16 | (uint32_t)th[6] << 8 | th[7];
		tflags = th[13];
	}
	if (!gi.ipv6)
		id0 = rd16(src + gi.l2_len + 4);
	for (uint32_t i = 0; i < nseg; i++) {
		uint32_t seg = ZOC_MIN(mss, gi.payload - off);
		uint32_t l4len = gi.l4_len + seg;
		struct zoc_pkt *q = zoc_pkt_alloc(pool, gi.hdr_len + seg);
		uint8_t *d, *ip, *l4;
		uint16_t c;

		if (!q) {
			zoc_pkt_free_bulk(out, i);
			return -ENOBUFS;
		}
		q->in_port = p->in_port;
		q->vlan_tci = p->vlan_tci;
		q->hash = p->hash;
		q->flags |= ZOC_PKT_F_CSUM_VALID;
		d = zoc_pkt_data(q);
		memcpy(d, src, gi.hdr_len);
		memcpy(d + gi.hdr_len, src + gi.hdr_len + off, seg);
		ip = d + gi.l2_len;
		l4 = ip + gi.l3_len;
		if (gi.ipv6) {
			wr16(ip + 4, (uint16_t)l4len);
		} else {
			wr16(ip + 2, (uint16_t)(gi.l3_len + l4len));
			wr16(ip + 4, (uint16_t)(id0 + i));
			wr16(ip + 10, 0);
			wr16(ip + 10, zoc_inet_fold(zoc_inet_sum(ip, gi.l3_len, 0)));
		}
		if (gi.proto == 6) {
			uint32_t seq = seq0 + off;
			uint8_t fl = tflags;

			l4[4] = (uint8_t)(seq >> 24);
			l4[5] = (uint8_t)(seq >> 16);
			l4[6] = (uint8_t)(seq >> 8);
			l4[7] = (uint8_t)seq;
			if (i > 0)
				fl &= (uint8_t)~TCP_CWR;
			if (i + 1 < nseg)
				fl &= (uint8_t)~(TCP_FIN | TCP_PSH);
			l4[13] = fl;
		} else {
			wr16(l4 + 4, (uint16_t)l4len);
		}
		wr16(l4 + gi.l4_csum_off, 0);
		c = zoc_inet_fold(zoc_inet_sum(l4, l4len, pseudo_sum(ip, gi.ipv6, gi.proto, l4len)));
		if (gi.proto == 17 && c == 0)
			c = 0xffff;
		wr16(l4 + gi.l4_csum_off, c);
		out[i] = q;
		off += seg;
	}
	return (int)nseg;
}
