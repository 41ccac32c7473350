/* SPDX-License-Identifier: MIT */
/*
 * flowkey.h - parse an Ethernet frame into a compact connection key.
 *
 * NAME
 *   struct zoc_flowkey, zoc_flowkey_parse, zoc_flowkey_hash,
 *   zoc_flowkey_sym_hash - what connection tracking and security groups
 *   need from a frame, in one 64-byte struct.
 *
 * PARSING
 *   Ethernet, up to two VLAN tags (802.1Q / 802.1ad), then IPv4 (options
 *   skipped by IHL) or IPv6 (up to ZOC_FLOWKEY_MAX_EXT extension headers:
 *   hop-by-hop, routing, destination options, fragment, AH), then TCP, UDP,
 *   ICMP or ICMPv6. Every length is checked against the frame and the IP
 *   total / payload length (trailing Ethernet padding is ignored); a frame
 *   that lies about a length is -EINVAL, a frame that is not IP is
 *   -ENOENT (ARP, LLDP...: the switch passes those without tracking).
 *   TCP: flags, seq, ack, window, payload length and, on a SYN, the window
 *   scale option (options walked with bounds; a malformed option list
 *   makes the segment -EINVAL).
 *   ICMP/ICMPv6 echo request/reply: the identifier is both sport and dport
 *   (so the reply's swapped key is the same connection). ICMP errors
 *   (unreachable, time exceeded, parameter problem, packet too big): the
 *   key is the *inner* packet's 5-tuple (as the inner packet was sent),
 *   with ZOC_FLOWKEY_F_RELATED; conntrack admits the error only if that
 *   session exists. Other ICMP types: ports 0.
 *
 * FRAGMENTS (conservative)
 *   A first fragment (offset 0, more fragments) carries the L4 header and
 *   is parsed normally, with ZOC_FLOWKEY_F_FRAG. A later fragment has no L4
 *   header: ports 0, ZOC_FLOWKEY_F_FRAG | ZOC_FLOWKEY_F_LATER_FRAG;
 *   conntrack drops it (counted) unless configured to pass it untracked.
 *   There is no reassembly.
 *
 * ADDRESSES
 *   IPv4 addresses occupy src[0..3] / dst[0..3], the rest is zero; family
 *   tells them apart. Ports are host order.
 */
#ifndef ZOC_NET_FLOWKEY_H
#define ZOC_NET_FLOWKEY_H

#include <stdbool.h>
#include <stdint.h>

#define ZOC_FLOWKEY_MAX_EXT 8

#define ZOC_FLOWKEY_F_FRAG 0x01       /* IP fragment (first or later) */
#define ZOC_FLOWKEY_F_LATER_FRAG 0x02 /* not the first fragment: no L4 header */
#define ZOC_FLOWKEY_F_RELATED 0x04    /* ICMP error: tuple is the inner packet's */
#define ZOC_FLOWKEY_F_WSCALE 0x08     /* TCP SYN carried a window scale option */

/* TCP flag bits as on the wire. */
#define ZOC_TCP_FIN 0x01
#define ZOC_TCP_SYN 0x02
#define ZOC_TCP_RST 0x04
#define ZOC_TCP_PSH 0x08
#define ZOC_TCP_ACK 0x10
#define ZOC_TCP_URG 0x20

#define ZOC_IPPROTO_ICMP 1
#define ZOC_IPPROTO_TCP 6
#define ZOC_IPPROTO_UDP 17
#define ZOC_IPPROTO_ICMPV6 58

struct zoc_flowkey {
	uint8_t src[16];
	uint8_t dst[16];
	uint16_t sport;
	uint16_t dport;
	uint8_t proto;
	uint8_t family;    /* 4 or 6 */
	uint8_t flags;     /* ZOC_FLOWKEY_F_* */
	uint8_t tcp_flags; /* ZOC_TCP_* */
	uint32_t seq;
	uint32_t ack;
	uint16_t win;      /* TCP window as on the wire (unscaled) */
	uint8_t wscale;    /* window scale option (valid with F_WSCALE), <= 14 */
	uint8_t icmp_type; /* ICMP/ICMPv6 type of the packet itself */
	uint8_t icmp_code;
	uint8_t pad_;
	uint16_t l4_len;   /* TCP/UDP payload bytes */
	uint16_t vlan;     /* outer VID (0 = untagged) */
	uint16_t pad2_[3];
};

_Static_assert(sizeof(struct zoc_flowkey) == 64, "flow key is one cache line");

/* 0 (key filled), -ENOENT (not IPv4/IPv6), -EINVAL (malformed / truncated).
 * Reads only frame[0..len). */
int zoc_flowkey_parse(const uint8_t *frame, uint32_t len, struct zoc_flowkey *k);

/* Hash of the key's direction (src, dst, sport, dport, proto, family) mixed
 * with zone; the swapped key hashes differently. */
uint64_t zoc_flowkey_hash(const struct zoc_flowkey *k, uint16_t zone);
/* Same value for both directions of a connection: use it to pick the
 * conntrack partition (reactor) a session belongs to. Never 0. */
uint32_t zoc_flowkey_sym_hash(const struct zoc_flowkey *k);

/* "a.b.c.d" / RFC 5952 text of an address of the given family. */
void zoc_flowkey_addr_str(const uint8_t addr[16], uint8_t family, char *buf, unsigned size);

#endif
