/* SPDX-License-Identifier: MIT */
/*
 * pkt.h - packet buffers for the network data path.
 *
 * NAME
 *   struct zoc_pkt, zoc_pktpool_*, zoc_pkt_alloc, zoc_pkt_free - Ethernet
 *   frames in pre-allocated buffers, one pool per reactor.
 *
 * LAYOUT
 *   A packet is one contiguous buffer: a 64-byte header (struct zoc_pkt,
 *   the metadata), then `room` bytes of which the frame occupies
 *   [head, head + len). A fresh packet has head = ZOC_PKT_HEADROOM (128 B),
 *   enough to prepend a virtio-net header (12 B), 802.1Q tags or an
 *   encapsulation later without moving the frame.
 *
 *   Three buffer sizes, three pools per reactor:
 *     small: ZOC_PKT_SMALL_ROOM (2 KiB incl. headroom: frames up to 1920 B,
 *            i.e. MTU 1500 with tags) - the common case, 64 B and 1500 B;
 *     large: ZOC_PKT_LARGE_ROOM (headroom + 9216 B: MTU 9000 with tags);
 *     giant: ZOC_PKT_GIANT_ROOM (headroom + 64 KiB + 256 B): GSO
 *            super-frames (TSO/USO) only, ZOC_PKT_GSO_MAX_FRAME bytes.
 *   zoc_pkt_alloc(pool, len) takes a small buffer when the frame fits, a
 *   large one otherwise (or when the small pool is empty), a giant one only
 *   for len > ZOC_PKT_MAX_FRAME: the small-frame fast path is unchanged (one
 *   compare more on the miss path only).
 *   Why not 2 KiB buffers chained for jumbo frames: every consumer (the
 *   switch's parser, VLAN push/pop, checksum helpers, the copy into a
 *   virtio receive buffer, an AF_PACKET send) then sees one flat frame, the
 *   header edits never straddle a segment boundary, and a 9 KB frame is one
 *   buffer instead of five. The price of two sizes is only memory for the
 *   (rarer) large pool; a 64 B packet costs a 2 KiB buffer, not 9 KiB.
 *   Frames larger than ZOC_PKT_MAX_FRAME are GSO super-frames (gso_type
 *   set): a giant buffer holds one flat, so the header parsers and
 *   net/gso.c see contiguous bytes. The giant pool is small (a few MiB per
 *   reactor): a super-frame stays in it only until its output port took
 *   it whole or net/gso.c cut it into MTU-sized segments (small buffers).
 *
 * OWNERSHIP AND THREADS
 *   A pool belongs to one reactor: zoc_pkt_alloc() only on that reactor's
 *   thread (not thread-safe, a few instructions). A packet may travel to
 *   another reactor (the switch hands it to the output port's owner);
 *   zoc_pkt_free() is callable on any thread: on the owner it is a plain
 *   put, elsewhere the packet goes onto the pool's remote-free list (a
 *   lock-free stack: one compare-and-swap per zoc_pkt_free_bulk() run of
 *   packets of the same pool), which the owner takes back in one exchange
 *   when its free stack runs low. Whoever holds a packet owns it: exactly
 *   one party frees it.
 *
 * METADATA
 *   in_port, vlan_tci: set by the switch (in_port = port id of ingress,
 *     vlan_tci = the VLAN the frame is switched in, 0 = none; on egress the
 *     tag is already applied to the frame bytes, vlan_tci is informational).
 *   hash: flow hash (0 = not computed); zoc_pkt_flow_hash() computes a
 *     5-tuple hash (IPv4/IPv6, TCP/UDP) for queue selection.
 *   offload: ZOC_PKT_F_CSUM_NEEDED (csum_start/csum_offset as in
 *     virtio_net_hdr: the checksum is still to be filled in),
 *     ZOC_PKT_F_CSUM_VALID (checksum verified), gso_type/gso_size as in
 *     virtio_net_hdr (ZOC_PKT_GSO_*). The switch passes them through; the
 *     receiving port either honours them (a vNIC that negotiated the
 *     offload) or completes them itself.
 *   user: free for the current owner (e.g. a vNIC's descriptor index).
 */
#ifndef ZOC_NET_PKT_H
#define ZOC_NET_PKT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ZOC_PKT_HEADROOM 128u
#define ZOC_PKT_SMALL_ROOM 2048u
#define ZOC_PKT_LARGE_ROOM (ZOC_PKT_HEADROOM + 9216u)
/* Largest frame a packet can hold (MTU 9000 + Ethernet + two tags fit). */
#define ZOC_PKT_MAX_FRAME (ZOC_PKT_LARGE_ROOM - ZOC_PKT_HEADROOM)
/* GSO super-frames (TSO/USO, up to 64 KiB of IP datagram + L2 headers). */
#define ZOC_PKT_GIANT_ROOM (ZOC_PKT_HEADROOM + 65536u + 256u)
#define ZOC_PKT_GSO_MAX_FRAME (ZOC_PKT_GIANT_ROOM - ZOC_PKT_HEADROOM)
/* Giant buffers per reactor pool made by zoc_pktpools_init(). */
#define ZOC_PKT_GIANT_DEFAULT 128u
#define ZOC_PKT_BURST 32

#define ZOC_PKT_F_CSUM_NEEDED 0x01
#define ZOC_PKT_F_CSUM_VALID 0x02
#define ZOC_PKT_F_GIANT 0x40 /* internal: buffer from the giant pool */
#define ZOC_PKT_F_LARGE 0x80 /* internal: buffer from the large pool */
#define ZOC_PKT_F_SIZE_MASK (ZOC_PKT_F_GIANT | ZOC_PKT_F_LARGE)

/* Same values as VIRTIO_NET_HDR_GSO_*. */
#define ZOC_PKT_GSO_NONE 0
#define ZOC_PKT_GSO_TCPV4 1
#define ZOC_PKT_GSO_UDP 3
#define ZOC_PKT_GSO_TCPV6 4
#define ZOC_PKT_GSO_UDP_L4 5
#define ZOC_PKT_GSO_ECN 0x80 /* flag: the TCP header has CWR set */

struct zoc_pktpool;

struct zoc_pkt {
	struct zoc_pkt *next;      /* owner's use (lists); the pool uses it when free */
	struct zoc_pktpool *pool;  /* origin */
	uint32_t head;             /* offset of the frame in data[] */
	uint32_t len;              /* frame length */
	uint32_t room;             /* size of data[] */
	uint16_t in_port;
	uint16_t vlan_tci;
	uint8_t flags;             /* ZOC_PKT_F_* */
	uint8_t gso_type;          /* ZOC_PKT_GSO_* (| ZOC_PKT_GSO_ECN) */
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t hdr_len;          /* virtio_net_hdr.hdr_len, passed through */
	uint32_t hash;
	uint64_t user;
	uint8_t data[] __attribute__((aligned(64)));
};

_Static_assert(offsetof(struct zoc_pkt, data) == 64, "zoc_pkt header is one cache line");

/* Pools. create: on any thread before use, owner = reactor index whose
 * thread allocates. 0 counts are allowed for one size (then every packet
 * comes from the other). NULL on ENOMEM / EINVAL. destroy: every packet must
 * be back (pending remote frees are taken back first). */
struct zoc_pktpool *zoc_pktpool_create(const char *name, unsigned owner, uint32_t n_small,
				       uint32_t n_large);
/* Same with n_giant buffers of ZOC_PKT_GIANT_ROOM (zoc_pktpool_create has
 * none: super-frames then fail to allocate). */
struct zoc_pktpool *zoc_pktpool_create_ex(const char *name, unsigned owner, uint32_t n_small,
					  uint32_t n_large, uint32_t n_giant);
void zoc_pktpool_destroy(struct zoc_pktpool *pool);
/* Free buffers of each size (owner thread; includes remote frees taken back). */
void zoc_pktpool_available(struct zoc_pktpool *pool, uint32_t *small, uint32_t *large);
uint32_t zoc_pktpool_available_giant(struct zoc_pktpool *pool);

/* One pool per reactor, for device models and the switch: create with
 * zoc_pktpools_init() after zoc_reactors_init() (count per reactor), destroy
 * with zoc_pktpools_fini() after the reactors stopped. 0 or -errno. Each
 * pool also gets the giant count set by zoc_pktpools_set_giant() (default
 * ZOC_PKT_GIANT_DEFAULT; 0 = no super-frames). */
int zoc_pktpools_init(uint32_t n_small, uint32_t n_large);
void zoc_pktpools_set_giant(uint32_t n_giant);
void zoc_pktpools_fini(void);
/* The calling reactor's pool (reactor 0's on a non-reactor thread); NULL if
 * zoc_pktpools_init() was not called. */
struct zoc_pktpool *zoc_pktpool_local(void);
struct zoc_pktpool *zoc_pktpool_of(unsigned reactor);

/* Owner thread. A packet with room for a len-byte frame (len 0 allowed, up
 * to ZOC_PKT_MAX_FRAME, or ZOC_PKT_GSO_MAX_FRAME from the giant pool), head = ZOC_PKT_HEADROOM, pkt->len = len, metadata
 * zeroed; the frame bytes are not initialised. NULL when exhausted or len
 * too large. */
struct zoc_pkt *zoc_pkt_alloc(struct zoc_pktpool *pool, uint32_t len);
/* Fills pkts[0..n) (all or nothing): 0 or -ENOBUFS. */
int zoc_pkt_alloc_bulk(struct zoc_pktpool *pool, struct zoc_pkt **pkts, unsigned n, uint32_t len);
/* Any thread. NULL is ignored. */
void zoc_pkt_free(struct zoc_pkt *pkt);
void zoc_pkt_free_bulk(struct zoc_pkt **pkts, unsigned n);
/* Owner of pool: a copy of pkt (frame and metadata) from pool, NULL if
 * exhausted. */
struct zoc_pkt *zoc_pkt_clone(struct zoc_pktpool *pool, const struct zoc_pkt *pkt);

static inline uint8_t *zoc_pkt_data(struct zoc_pkt *p)
{
	return p->data + p->head;
}

static inline const uint8_t *zoc_pkt_cdata(const struct zoc_pkt *p)
{
	return p->data + p->head;
}

static inline uint32_t zoc_pkt_headroom(const struct zoc_pkt *p)
{
	return p->head;
}

static inline uint32_t zoc_pkt_tailroom(const struct zoc_pkt *p)
{
	return p->room - p->head - p->len;
}

/* Grow the frame at the front by n bytes; NULL if no headroom. */
static inline uint8_t *zoc_pkt_push(struct zoc_pkt *p, uint32_t n)
{
	if (n > p->head)
		return NULL;
	p->head -= n;
	p->len += n;
	return zoc_pkt_data(p);
}

/* Drop n bytes from the front; NULL if the frame is shorter. */
static inline uint8_t *zoc_pkt_pull(struct zoc_pkt *p, uint32_t n)
{
	if (n > p->len)
		return NULL;
	p->head += n;
	p->len -= n;
	return zoc_pkt_data(p);
}

/* Set the frame length; -ENOSPC past the buffer. */
static inline int zoc_pkt_set_len(struct zoc_pkt *p, uint32_t len)
{
	if (len > p->room - p->head)
		return -28; /* -ENOSPC */
	p->len = len;
	return 0;
}

/* A 5-tuple hash (Toeplitz-free, symmetric-free; stable per flow) of an
 * Ethernet frame with optional 802.1Q tag: IPv4/IPv6 addresses and, when
 * not a fragment, TCP/UDP ports; other frames hash their MAC addresses.
 * Never 0. Reads only inside the frame. Stores it in p->hash. */
uint32_t zoc_pkt_flow_hash(struct zoc_pkt *p);

#endif
