/* SPDX-License-Identifier: MIT */
/*
 * gso.h - generic segmentation offload in software: TCP (TSO) and UDP
 * (USO, GSO_UDP_L4) super-frames cut into wire-sized frames.
 *
 * NAME
 *   zoc_gso_parse, zoc_gso_segment, zoc_gso_accepts, zoc_inet_csum - the
 *   fallback for a port that cannot take a GSO super-frame whole.
 *
 * SUPER-FRAMES
 *   A packet with gso_type != ZOC_PKT_GSO_NONE (pkt.h) carries one TCP or
 *   UDP payload larger than one segment: Ethernet (up to two 802.1Q /
 *   802.1ad tags), IPv4 (options allowed, not a fragment) or IPv6 (fixed
 *   header directly followed by TCP/UDP: extension headers are refused),
 *   the L4 header, then the payload; gso_size is the payload bytes per
 *   segment (the MSS). The gso_type must match the frame: TCPV4 = TCP over
 *   IPv4, TCPV6 = TCP over IPv6, UDP_L4 = UDP over either; the ECN flag
 *   (ZOC_PKT_GSO_ECN) says the TCP header has CWR set. Bytes after the IP
 *   datagram (Ethernet padding) are ignored.
 *
 * SEGMENTATION
 *   zoc_gso_segment() copies the headers in front of each payload slice:
 *   IPv4 total length, identification (+1 per segment) and header
 *   checksum, IPv6 payload length, TCP sequence number (+ the bytes before
 *   the slice), TCP flags (FIN and PSH only on the last segment, CWR only on
 *   the first), UDP length; the TCP/UDP checksum of every segment is
 *   computed in full (pseudo-header included) whatever the super-frame's
 *   checksum field held, and the segment is marked ZOC_PKT_F_CSUM_VALID.
 *   max_l3 bounds each segment's IP datagram (the output port's MTU): a
 *   TCP MSS larger than that is lowered (still valid TCP); a UDP segment
 *   size is the application's datagram size and cannot change, so such a
 *   super-frame fails with -EMSGSIZE.
 *
 * THREADS
 *   Pure functions; zoc_gso_segment() allocates from pool, so it runs on
 *   the pool's owner reactor. Nothing is kept between calls.
 */
#ifndef ZOC_NET_GSO_H
#define ZOC_NET_GSO_H

#include <stdbool.h>
#include <stdint.h>

#include "net/pkt.h"

/* What a port can take whole (zoc_port_set_gso_caps()). */
#define ZOC_GSO_CAP_TCPV4 0x01u
#define ZOC_GSO_CAP_TCPV6 0x02u
#define ZOC_GSO_CAP_ECN 0x04u  /* TCP super-frames with CWR (GSO_ECN) */
#define ZOC_GSO_CAP_USO4 0x08u
#define ZOC_GSO_CAP_USO6 0x10u

/* Most segments one super-frame may produce (64 KiB at an MSS of 64). */
#define ZOC_GSO_MAX_SEGS 1024u

struct zoc_gso_info {
	uint16_t l2_len;     /* Ethernet + tags */
	uint16_t l3_len;     /* IPv4 header with options, or 40 */
	uint16_t l4_len;     /* TCP header with options, or 8 */
	uint16_t hdr_len;    /* l2 + l3 + l4 */
	uint32_t payload;    /* L4 payload bytes */
	uint32_t frame_len;  /* l2 + IP datagram (<= the frame length) */
	bool ipv6;
	uint8_t proto;       /* 6 (TCP) or 17 (UDP) */
	uint8_t l4_csum_off; /* 16 (TCP) or 6 (UDP): checksum field in L4 */
};

/* Parses frame[0..len) as a super-frame of gso_type (ECN flag allowed).
 * 0, or -EINVAL (not such a frame: wrong type, truncated, fragment, IPv6
 * extension header, lengths that disagree, payload 0). Reads only inside
 * the frame. */
int zoc_gso_parse(const uint8_t *frame, uint32_t len, uint8_t gso_type,
		  struct zoc_gso_info *gi);

/* Can a port with caps take p whole? (false for an unknown gso_type). */
bool zoc_gso_accepts(uint32_t caps, const struct zoc_pkt *p);

/* Cuts p (a super-frame, left untouched: the caller frees it) into
 * out[0..ret) from pool; max_l3 as in SEGMENTATION (0 = no bound). The
 * segments keep in_port, vlan_tci and hash. Returns the number of segments,
 * or -EINVAL (malformed: zoc_gso_parse, gso_size 0), -EMSGSIZE (UDP over
 * max_l3), -E2BIG (more than max_out segments), -ENOBUFS (pool exhausted;
 * nothing is left allocated). */
int zoc_gso_segment(const struct zoc_pkt *p, uint32_t max_l3, struct zoc_pktpool *pool,
		    struct zoc_pkt **out, unsigned max_out);

/* Internet checksum helpers: the ones' complement sum of buf[0..len) added
 * to sum (a partial, unfolded sum; start with 0), and the folded,
 * complemented 16-bit result in network byte order as a host integer. */
uint64_t zoc_inet_sum(const void *buf, uint32_t len, uint64_t sum);
uint16_t zoc_inet_fold(uint64_t sum);

#endif
