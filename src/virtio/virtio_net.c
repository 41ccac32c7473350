/* SPDX-License-Identifier: MIT */
/*
 * virtio-net device model. Control calls (virtio_dev ops) run on reactor 0;
 * every queue runs on the port's owner reactor, which alone touches the
 * rings, the receive filter state and the per-queue statistics.
 *
 * TX (guest -> switch): a poller per TX queue pops chains, checks the
 * virtio-net header (GSO headers against the negotiated HOST_TSO/USO and
 * the frame itself), copies the frame into a packet of the local pool (a
 * giant one for a super-frame) and hands bursts of up to 32 to
 * zoc_vswitch_rx_burst(). A chain is always returned to the guest (length
 * 0), accepted or dropped.
 * RX (switch -> guest): the port's tx_burst picks a receive queue by flow
 * hash among the active pairs, filters by the receive mode, and copies the
 * frame with its header into one buffer (or several with MRG_RXBUF); a
 * super-frame goes whole with a GSO header when the guest offloads in force
 * allow (the port's GSO caps follow them), else it is segmented.
 * Control queue: RX mode, MAC table / address, MQ pairs; anything else is
 * answered VIRTIO_NET_ERR.
 */
#include "virtio/virtio_net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"
#include "net/gso.h"
#include "net/pkt.h"
#include "net/port.h"
#include "net/vswitch.h"
#include "virtio/virtio.h"
#include "virtio/virtqueue.h"

#define VNET_HDR_LEN ((uint32_t)sizeof(struct virtio_net_hdr))
#define VNET_ETH_HLEN 14u
#define VNET_VLAN_HLEN 4u
#define VNET_RX_MAX_BUFS 64 /* mergeable buffers per frame */

enum vq_kind { VQ_RX, VQ_TX, VQ_CTRL };

struct vnet_qstats {
	uint64_t packets, bytes;
	uint64_t rescued; /* interrupts sent by the lost-interrupt watchdog */
	uint64_t drops[ZOC_VNET_DROP__COUNT];
};

struct vnet_queue {
	struct zoc_vnet *vn;
	uint16_t idx;
	enum vq_kind kind;
	/* control plane (reactor 0) view */
	bool running;
	bool stop_pending;
	/* owner reactor state */
	struct zoc_vq *vq; /* non-NULL while serving (owner reactor) */
	int kickfd;
	bool kick_registered;
	struct zoc_poller *poller;
	struct zoc_poller *watchdog; /* lost-interrupt rescue (zoc_vq_watchdog) */
	bool need_notify;
	bool broken_logged;
	uint32_t *base_out;
	zoc_virtio_done_fn done;
	void *done_arg;
	struct vnet_qstats stats;
	struct zoc_vq_elem elem; /* scratch (owner reactor), large */
};

struct zoc_vnet {
	struct zoc_virtio_dev vdev; /* first */
	char name[64];
	struct zoc_vswitch *sw;
	struct zoc_port *port;
	struct zoc_reactor *owner;
	uint16_t max_pairs;
	uint32_t mtu;
	uint16_t vlan;
	uint64_t features;
	/* Guest offloads in force (GUEST_CSUM/TSO/ECN/USO feature bits):
	 * the negotiated ones, narrowed by CTRL_GUEST_OFFLOADS. Atomic. */
	uint64_t guest_offloads;
	struct virtio_net_config config;
	/* receive filter, owner reactor */
	uint16_t cur_pairs;
	bool promisc, allmulti, uni_overflow, multi_overflow;
	uint32_t n_uc, n_mc;
	uint8_t uc[ZOC_VNET_MAC_TABLE_MAX][6];
	uint8_t mc[ZOC_VNET_MAC_TABLE_MAX][6];
	uint8_t mac[6]; /* current, owner reactor copy */
	zoc_virtio_done_fn destroy_done;
	void *destroy_arg;
	struct vnet_queue *queues; /* 2 * max_pairs + 1 */
	struct zoc_vq_elem *rx_elems; /* mergeable RX scratch, owner reactor */
	struct zoc_vq_elem *tx_elems; /* a TX burst (ZOC_PKT_BURST), owner reactor */
};

static const struct zoc_virtio_dev_ops vnet_ops;

static const char *const drop_names[ZOC_VNET_DROP__COUNT] = {
	"short_hdr", "bad_hdr", "zero_len", "oversize", "fault",
	"no_pktbuf", "short_rxbuf", "no_rxbuf", "filtered", "offload", "bad_gso",
};

#define F(b) ZOC_BIT(VIRTIO_NET_F_##b)
/* The feature bits CTRL_GUEST_OFFLOADS may switch (UFO is never offered). */
#define GUEST_OFFLOAD_BITS \
	(F(GUEST_CSUM) | F(GUEST_TSO4) | F(GUEST_TSO6) | F(GUEST_ECN) | F(GUEST_USO4) | \
	 F(GUEST_USO6))

const char *zoc_vnet_drop_name(enum zoc_vnet_drop why)
{
	return (unsigned)why < ZOC_VNET_DROP__COUNT ? drop_names[why] : "?";
}

static struct zoc_vnet *to_vnet(struct zoc_virtio_dev *dev)
{
	return (struct zoc_vnet *)dev;
}

struct zoc_vnet *zoc_vnet_from_virtio(struct zoc_virtio_dev *dev)
{
	return dev && dev->ops == &vnet_ops ? to_vnet(dev) : NULL;
}

struct zoc_virtio_dev *zoc_vnet_to_virtio(struct zoc_vnet *vn)
{
	return &vn->vdev;
}

struct zoc_port *zoc_vnet_port(struct zoc_vnet *vn)
{
	return vn->port;
}

static bool has_feat(const struct zoc_vnet *vn, unsigned bit)
{
	return vn->features & ZOC_BIT(bit);
}

static uint16_t ctrl_idx(const struct zoc_vnet *vn)
{
	return (uint16_t)(2 * vn->max_pairs);
}

/* ------------------------------------------------------------ iov helpers */

/* Copies len bytes starting `skip` bytes into iov[0..n) to buf; returns the
 * bytes copied. */
static size_t iov_read_slow(const struct iovec *iov, unsigned n, size_t skip, void *buf,
			    size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t l = iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		size_t k = ZOC_MIN(l - skip, len - done);
		memcpy((uint8_t *)buf + done, (const uint8_t *)iov[i].iov_base + skip, k);
		done += k;
		skip = 0;
	}
	return done;
}

static size_t iov_write_slow(const struct iovec *iov, unsigned n, size_t skip, const void *buf,
			     size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t l = iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		size_t k = ZOC_MIN(l - skip, len - done);
		memcpy((uint8_t *)iov[i].iov_base + skip, (const uint8_t *)buf + done, k);
		done += k;
		skip = 0;
	}
	return done;
}

/* The common case inline: the bytes lie in the first buffer (a frame and
 * its header in one descriptor, as Linux and DPDK drivers post them). */
static inline size_t iov_read(const struct iovec *iov, unsigned n, size_t skip, void *buf,
			      size_t len)
{
	if (ZOC_LIKELY(n && skip + len <= iov[0].iov_len)) {
		memcpy(buf, (const uint8_t *)iov[0].iov_base + skip, len);
		return len;
	}
	return iov_read_slow(iov, n, skip, buf, len);
}

static inline size_t iov_write(const struct iovec *iov, unsigned n, size_t skip, const void *buf,
			       size_t len)
{
	if (ZOC_LIKELY(n && skip + len <= iov[0].iov_len)) {
		memcpy((uint8_t *)iov[0].iov_base + skip, buf, len);
		return len;
	}
	return iov_write_slow(iov, n, skip, buf, len);
}

/* The used-buffer notification of q's completions so far: the index is
 * published now, the decision (a fence and a look at the driver's flags)
 * taken at the end of the reactor's round, once for all queues; or now,
 * before the reactor sleeps (a decision deferred then would wait for the
 * end of the round after the sleep). */
static void notify_now_or_at_round_end(struct vnet_queue *q, bool now)
{
	if (q->need_notify && q->vq) {
		q->need_notify = false;
		if (now)
			zoc_vq_notify(q->vq);
		else
			zoc_vq_notify_defer(q->vq);
	}
}

static void flush_notify(struct vnet_queue *q)
{
	notify_now_or_at_round_end(q, false);
}

static void note_broken(struct vnet_queue *q)
{
	if (!q->broken_logged) {
		q->broken_logged = true;
		ZOC_WARN("%s: queue %u is broken (malformed ring from the driver); it stays "
			 "stopped until the device is reset",
			 q->vn->name, q->idx);
	}
}

/* ------------------------------------------------------------------- TX */

/* Checks a TX header against the frame length; returns a drop reason or -1.
 * A GSO header is checked against the negotiated features here and against
 * the frame bytes by tx_check_gso(). */
static int tx_check(const struct zoc_vnet *vn, const struct virtio_net_hdr *h, uint32_t len)
{
	if (len == 0)
		return ZOC_VNET_DROP_ZERO_LEN;
	if (h->gso_type != VIRTIO_NET_HDR_GSO_NONE) {
		uint8_t base = h->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
		unsigned need;

		if (len > ZOC_PKT_GSO_MAX_FRAME)
			return ZOC_VNET_DROP_OVERSIZE;
		if (base == VIRTIO_NET_HDR_GSO_TCPV4)
			need = VIRTIO_NET_F_HOST_TSO4;
		else if (base == VIRTIO_NET_HDR_GSO_TCPV6)
			need = VIRTIO_NET_F_HOST_TSO6;
		else if (base == VIRTIO_NET_HDR_GSO_UDP_L4)
			need = VIRTIO_NET_F_HOST_USO;
		else
			return ZOC_VNET_DROP_BAD_GSO; /* UFO or unknown */
		if (!has_feat(vn, need))
			return ZOC_VNET_DROP_BAD_GSO;
		if ((h->gso_type & VIRTIO_NET_HDR_GSO_ECN) &&
		    (base == VIRTIO_NET_HDR_GSO_UDP_L4 || !has_feat(vn, VIRTIO_NET_F_HOST_ECN)))
			return ZOC_VNET_DROP_BAD_GSO;
		/* 5.1.6.2.1: a GSO packet also asks for the checksum. */
		if (!(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) || h->gso_size == 0 ||
		    h->gso_size > vn->mtu || h->hdr_len > len)
			return ZOC_VNET_DROP_BAD_GSO;
	} else if (len > vn->mtu + VNET_ETH_HLEN + 2 * VNET_VLAN_HLEN || len > ZOC_PKT_MAX_FRAME) {
		return ZOC_VNET_DROP_OVERSIZE;
	}
	if (h->flags & ~(VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID))
		return ZOC_VNET_DROP_BAD_HDR;
	if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		if (!has_feat(vn, VIRTIO_NET_F_CSUM))
			return ZOC_VNET_DROP_BAD_HDR;
		if ((uint32_t)h->csum_start + h->csum_offset + 2 > len)
			return ZOC_VNET_DROP_BAD_HDR;
	}
	return -1;
}

/* The frame of a GSO header (already in p): TCP/UDP over IPv4/IPv6 as
 * gso_type says, the checksum request pointing at that L4 header's
 * checksum field, each segment's IP datagram within the MTU. */
static int tx_check_gso(const struct zoc_vnet *vn, const struct virtio_net_hdr *h,
			const struct zoc_pkt *p)
{
	struct zoc_gso_info gi;

	if (zoc_gso_parse(zoc_pkt_cdata(p), p->len, h->gso_type, &gi))
		return ZOC_VNET_DROP_BAD_GSO;
	if (h->csum_start != (uint32_t)gi.l2_len + gi.l3_len || h->csum_offset != gi.l4_csum_off)
		return ZOC_VNET_DROP_BAD_GSO;
	if ((uint32_t)gi.l3_len + gi.l4_len + h->gso_size > vn->mtu)
		return ZOC_VNET_DROP_BAD_GSO;
	return -1;
}

static int tx_poll(struct vnet_queue *q)
{
	struct zoc_vnet *vn = q->vn;
	struct zoc_pktpool *pool = zoc_pktpool_local();
	struct zoc_pkt *pkts[ZOC_PKT_BURST];
	struct zoc_vq_elem *el = vn->tx_elems;
	int rcs[ZOC_PKT_BURST];
	unsigned n = 0, m = 0;
	/* Without VIRTIO_NET_F_CSUM (which every other transmit offload
	 * needs, vnet_set_features) the header has nothing for the device:
	 * it is ignored, not read. Drivers put it in the line before the
	 * frame, so that is one cache miss less per frame. */
	bool hdr_used = has_feat(vn, VIRTIO_NET_F_CSUM);

	/* Take the whole burst off the ring first and start fetching every
	 * frame: descriptors and buffers are lines the driver's CPU just
	 * wrote, and misses taken one chain at a time queue up; then copy. */
	zoc_vq_prefetch(q->vq, ZOC_PKT_BURST);
	m = zoc_vq_pop_burst(q->vq, el, rcs, ZOC_PKT_BURST);
	if (ZOC_UNLIKELY(m < ZOC_PKT_BURST) && zoc_vq_broken(q->vq))
		note_broken(q);
	for (unsigned i = 0; i < m; i++) {
		if (rcs[i] > 0 && el[i].out_num) {
			const uint8_t *b = el[i].iov[0].iov_base;

			if (hdr_used)
				__builtin_prefetch(b);
			if (el[i].iov[0].iov_len > VNET_HDR_LEN)
				__builtin_prefetch(b + VNET_HDR_LEN);
		}
	}
	if (m)
		q->need_notify = true;
	for (unsigned i = 0; i < m; i++) {
		struct zoc_vq_elem *e = &el[i];
		struct virtio_net_hdr h;
		struct zoc_pkt *p;
		uint32_t len;
		int why;

		if (rcs[i] < 0) {
			why = ZOC_VNET_DROP_FAULT;
			goto drop;
		}
		if (e->out_len < VNET_HDR_LEN) {
			why = ZOC_VNET_DROP_SHORT_HDR;
			goto drop;
		}
		if (hdr_used)
			iov_read(e->iov, e->out_num, 0, &h, VNET_HDR_LEN);
		else
			memset(&h, 0, sizeof(h));
		len = e->out_len - VNET_HDR_LEN;
		why = tx_check(vn, &h, len);
		if (why >= 0)
			goto drop;
		p = pool ? zoc_pkt_alloc(pool, len) : NULL;
		if (!p) {
			why = ZOC_VNET_DROP_NO_PKTBUF;
			goto drop;
		}
		iov_read(e->iov, e->out_num, VNET_HDR_LEN, zoc_pkt_data(p), len);
		if (h.gso_type != VIRTIO_NET_HDR_GSO_NONE) {
			why = tx_check_gso(vn, &h, p);
			if (why >= 0) {
				zoc_pkt_free(p);
				goto drop;
			}
			p->gso_type = h.gso_type; /* same values, ECN flag included */
			p->gso_size = h.gso_size;
		}
		if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
			p->flags |= ZOC_PKT_F_CSUM_NEEDED;
			p->csum_start = h.csum_start;
			p->csum_offset = h.csum_offset;
		}
		p->hdr_len = h.hdr_len;
		q->stats.packets++;
		q->stats.bytes += len;
		pkts[n++] = p;
		continue;
drop:
		q->stats.drops[why]++;
		ZOC_WARN_RL("%s: tx queue %u: frame dropped (%s)", vn->name, q->idx,
			    drop_names[why]);
	}
	/* Return the chains (all copied or dropped, in ring order) before the
	 * switch runs: it may call our tx_burst. */
	zoc_vq_push_burst(q->vq, el, NULL, m);
	flush_notify(q);
	if (n)
		zoc_vswitch_rx_burst(vn->sw, vn->port, pkts, n);
	return (int)m;
}

/* ------------------------------------------------------------------- RX */

static bool mac_in(const uint8_t (*tab)[6], uint32_t n, const uint8_t *mac)
{
	for (uint32_t i = 0; i < n; i++)
		if (!memcmp(tab[i], mac, 6))
			return true;
	return false;
}

static bool rx_accept(const struct zoc_vnet *vn, const uint8_t *dst)
{
	static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

	if (vn->promisc)
		return true;
	if (dst[0] & 1) {
		if (!memcmp(dst, bcast, 6) || vn->allmulti || vn->multi_overflow)
			return true;
		return mac_in(vn->mc, vn->n_mc, dst);
	}
	if (!memcmp(dst, vn->mac, 6) || vn->uni_overflow)
		return true;
	return mac_in(vn->uc, vn->n_uc, dst);
}

/* Completes a partial checksum (virtio NEEDS_CSUM): the field at start + off
 * holds the pseudo-header sum the sender seeded; the Internet checksum of
 * [start, len), field included, replaces it. */
static void fill_csum(uint8_t *f, uint32_t len, uint32_t start, uint32_t off)
{
	uint64_t sum = 0;
	uint32_t i;
	uint16_t c;

	if (start >= len || (uint64_t)start + off + 2 > len)
		return;
	for (i = start; i + 1 < len; i += 2)
		sum += (uint32_t)(f[i] << 8 | f[i + 1]);
	if (i < len)
		sum += (uint32_t)f[i] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	c = (uint16_t)~sum;
	f[start + off] = (uint8_t)(c >> 8);
	f[start + off + 1] = (uint8_t)c;
}

/* The receive header, stored only where the buffer does not already hold
 * the same bytes. Drivers recycle their buffers, and the header of the
 * frame a buffer carried last time is mostly what this one gets (no
 * offload, one buffer): a line left unchanged stays shared between the
 * driver's CPU and ours, instead of coming over for our store and going
 * back for the driver's read of num_buffers. */
static inline void rx_hdr_store(struct iovec *iov, unsigned n, const struct virtio_net_hdr *h)
{
	_Static_assert(VNET_HDR_LEN == 12, "an 8- and a 4-byte word");
	if (ZOC_LIKELY(n && iov[0].iov_len >= VNET_HDR_LEN)) {
		uint8_t *d = iov[0].iov_base;
		uint64_t have8, want8;
		uint32_t have4, want4;

		memcpy(&have8, d, 8);
		memcpy(&have4, d + 8, 4);
		memcpy(&want8, h, 8);
		memcpy(&want4, (const uint8_t *)h + 8, 4);
		if (have8 != want8)
			memcpy(d, &want8, 8);
		if (have4 != want4)
			memcpy(d + 8, &want4, 4);
		return;
	}
	iov_write(iov, n, 0, h, VNET_HDR_LEN);
}

/* Writes header h and frame p into el[0..nb) (together big enough, the
 * first one holding at least the header); lens[i]: the bytes el[i] got.
 * Inlined: rx_burst's call (nb = 1) is the data path. */
static inline __attribute__((always_inline)) void
rx_fill(struct vnet_queue *q, struct zoc_vq_elem *el, unsigned nb, const struct virtio_net_hdr *h,
	const struct zoc_pkt *p, uint32_t *lens)
{
	const uint8_t *src = zoc_pkt_cdata(p);
	uint32_t left = p->len, off = 0;

	for (unsigned i = 0; i < nb; i++) {
		struct zoc_vq_elem *e = &el[i];
		struct iovec *iov = e->iov + e->out_num;
		uint32_t skip = 0, room = e->in_len, k;

		if (i == 0) {
			rx_hdr_store(iov, e->in_num, h);
			skip = VNET_HDR_LEN;
			room -= VNET_HDR_LEN;
		}
		k = ZOC_MIN(room, left);
		iov_write(iov, e->in_num, skip, src + off, k);
		off += k;
		left -= k;
		lens[i] = skip + k;
	}
	q->stats.packets++;
	q->stats.bytes += p->len;
}

/* rx_fill, then completes the buffers. */
static void rx_write(struct vnet_queue *q, struct zoc_vq_elem *el, unsigned nb,
		     const struct virtio_net_hdr *h, const struct zoc_pkt *p)
{
	uint32_t lens[VNET_RX_MAX_BUFS];

	rx_fill(q, el, nb, h, p, lens);
	zoc_vq_push_burst(q->vq, el, lens, nb);
}

/* A super-frame did not fit the mergeable buffers popped so far
 * (rx_elems[0..nb), the ring ran dry): rather than return them all empty,
 * cut the frame and fill whole segments into them; buffers left over go
 * back empty, segments that did not fit are dropped (one short_rxbuf). */
static void rx_gso_partial(struct vnet_queue *q, struct zoc_pkt *p, unsigned nb)
{
	struct zoc_vnet *vn = q->vn;
	struct zoc_vq_elem *el = vn->rx_elems;
	struct zoc_pkt *segs[ZOC_GSO_MAX_SEGS];
	bool gcsum = __atomic_load_n(&vn->guest_offloads, __ATOMIC_RELAXED) & F(GUEST_CSUM);
	int k = zoc_gso_segment(p, vn->mtu, zoc_pktpool_local(), segs, ZOC_GSO_MAX_SEGS);
	unsigned i = 0, s = 0;

	for (; k > 0 && s < (unsigned)k && i < nb; s++) {
		struct virtio_net_hdr h = {0};
		uint64_t need = VNET_HDR_LEN + segs[s]->len, have = 0;
		unsigned j = i;

		if (el[i].in_len < VNET_HDR_LEN)
			break;
		while (j < nb && have < need)
			have += el[j++].in_len;
		if (have < need)
			break;
		if (gcsum)
			h.flags = VIRTIO_NET_HDR_F_DATA_VALID;
		h.num_buffers = (uint16_t)(j - i);
		rx_write(q, el + i, j - i, &h, segs[s]);
		i = j;
	}
	if (k > 0)
		zoc_pkt_free_bulk(segs, (unsigned)k);
	for (; i < nb; i++)
		zoc_vq_push_deferred(q->vq, &el[i], 0);
	if (k <= 0 || s < (unsigned)k)
		q->stats.drops[ZOC_VNET_DROP_SHORT_RXBUF]++;
}

/* The receive header of frame p (gi: a super-frame the guest takes whole);
 * completes a partial checksum the guest did not offer to take. */
static void rx_hdr(const struct zoc_vnet *vn, struct zoc_pkt *p, const struct zoc_gso_info *gi,
		   struct virtio_net_hdr *h)
{
	bool gcsum = __atomic_load_n(&vn->guest_offloads, __ATOMIC_RELAXED) & F(GUEST_CSUM);

	memset(h, 0, sizeof(*h));
	if (gi) {
		/* The checksum stays partial (the field holds the sender's
		 * pseudo-header seed). */
		h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
		h->gso_type = p->gso_type;
		h->gso_size = p->gso_size;
		h->hdr_len = gi->hdr_len;
		h->csum_start = (uint16_t)(gi->l2_len + gi->l3_len);
		h->csum_offset = gi->l4_csum_off;
	} else if (p->flags & ZOC_PKT_F_CSUM_NEEDED) {
		if (gcsum) {
			h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
			h->csum_start = p->csum_start;
			h->csum_offset = p->csum_offset;
		} else {
			fill_csum(zoc_pkt_data(p), p->len, p->csum_start, p->csum_offset);
		}
	} else if ((p->flags & ZOC_PKT_F_CSUM_VALID) && gcsum) {
		h->flags = VIRTIO_NET_HDR_F_DATA_VALID;
	}
}

/* Returns receive buffers el[0, nb) unused (length 0) and counts the drop. */
static void rx_return(struct vnet_queue *q, struct zoc_vq_elem *el, unsigned nb,
		      enum zoc_vnet_drop why)
{
	for (unsigned i = 0; i < nb; i++)
		zoc_vq_push_deferred(q->vq, &el[i], 0);
	q->stats.drops[why]++;
	if (why == ZOC_VNET_DROP_SHORT_RXBUF)
		ZOC_WARN_RL("%s: rx queue %u: receive buffers too short for a frame", q->vn->name,
			    q->idx);
}

/* Delivers one frame on q; el[0..nb0) are buffers already popped for it
 * (device-writable only). Returns false when the queue had no buffer (the
 * caller stops the burst); the packet is never freed here. */
static bool rx_one_from(struct vnet_queue *q, struct zoc_pkt *p, const struct zoc_gso_info *gi,
			unsigned nb0)
{
	struct zoc_vnet *vn = q->vn;
	struct virtio_net_hdr h;
	uint32_t need = VNET_HDR_LEN + p->len;
	bool mrg = has_feat(vn, VIRTIO_NET_F_MRG_RXBUF);
	struct zoc_vq_elem *el = vn->rx_elems;
	unsigned nb = 0;
	uint32_t have = 0;
	int rc;

	rx_hdr(vn, p, gi, &h);
	for (; nb < nb0; nb++)
		have += el[nb].in_len;
	/* Gather buffers until the frame fits. */
	while (have < need) {
		struct zoc_vq_elem *e = &el[nb];

		if (nb == (mrg ? VNET_RX_MAX_BUFS : 1))
			break;
		rc = zoc_vq_pop(q->vq, e);
		if (rc == 0 || rc == -EIO) {
			if (rc == -EIO)
				note_broken(q);
			if (nb == 0) {
				q->stats.drops[ZOC_VNET_DROP_NO_RXBUF]++;
				return false;
			}
			break;
		}
		nb++;
		q->need_notify = true;
		if (rc < 0 || e->out_num) {
			/* unmapped buffer or device-readable parts: unusable */
			rx_return(q, el, nb, ZOC_VNET_DROP_FAULT);
			return true;
		}
		have += e->in_len;
		if (have < e->in_len) /* overflow */
			have = UINT32_MAX;
	}
	if (gi && mrg && have < need && el[0].in_len >= VNET_HDR_LEN) {
		rx_gso_partial(q, p, nb);
		return true;
	}
	if (have < need || (nb > 0 && el[0].in_len < VNET_HDR_LEN)) {
		rx_return(q, el, nb, ZOC_VNET_DROP_SHORT_RXBUF);
		return true;
	}
	h.num_buffers = (uint16_t)nb;
	/* The header goes at the start of the first buffer, then the frame. */
	rx_write(q, el, nb, &h, p);
	return true;
}

static bool rx_one(struct vnet_queue *q, struct zoc_pkt *p, const struct zoc_gso_info *gi)
{
	return rx_one_from(q, p, gi, 0);
}

/* Copies a popped element's fields and the iovecs it uses. */
static void elem_move(struct zoc_vq_elem *dst, const struct zoc_vq_elem *src)
{
	memcpy(dst, src, offsetof(struct zoc_vq_elem, iov));
	memcpy(dst->iov, src->iov, (size_t)(src->out_num + src->in_num) * sizeof(src->iov[0]));
}

/* A burst of ordinary frames to queue q, in two passes: a receive buffer
 * for each frame first (starting the fetch of every buffer line for
 * writing: the driver's CPU last touched them), then the copies. Frames
 * that need more than one buffer, or carry GSO, end the fast pass and go
 * through rx_one. Returns the frames taken (freed or delivered) from the
 * start of pkts; stops early when the queue has no buffer left (*dry_out)
 * or before a GSO frame (which passed the receive filter). */
static unsigned rx_burst(struct vnet_queue *q, struct zoc_pkt **pkts, unsigned n, bool *dry_out)
{
	struct zoc_vnet *vn = q->vn;
	struct zoc_vq_elem *el = vn->rx_elems;
	unsigned slot[ZOC_PKT_BURST];
	uint32_t lens[ZOC_PKT_BURST];
	unsigned i, nel = 0, nfit = 0;
	bool mrg = has_feat(vn, VIRTIO_NET_F_MRG_RXBUF), pending = false, dry = false;

	_Static_assert(ZOC_PKT_BURST < VNET_RX_MAX_BUFS, "rx_elems holds a burst and one more");
	zoc_vq_prefetch(q->vq, n);
	for (i = 0; i < n; i++) {
		struct zoc_pkt *p = pkts[i];
		struct zoc_vq_elem *e = &el[nel];
		uint32_t need = VNET_HDR_LEN + p->len;
		int rc;

		if (p->len < VNET_ETH_HLEN || !rx_accept(vn, zoc_pkt_cdata(p))) {
			q->stats.drops[ZOC_VNET_DROP_FILTERED]++;
			zoc_pkt_free(p);
			pkts[i] = NULL;
			continue;
		}
		if (p->gso_type != ZOC_PKT_GSO_NONE)
			break;
		rc = zoc_vq_pop(q->vq, e);
		if (rc == 0 || rc == -EIO) {
			if (rc == -EIO)
				note_broken(q);
			q->stats.drops[ZOC_VNET_DROP_NO_RXBUF]++;
			dry = true;
			break;
		}
		q->need_notify = true;
		if (rc < 0 || e->out_num || e->in_len < need) {
			if (rc > 0 && !e->out_num && mrg && e->in_len >= VNET_HDR_LEN) {
				pending = true; /* more buffers: rx_one_from */
				break;
			}
			/* Unusable: returned empty, in ring order with the rest
			 * (IN_ORDER drivers match used entries by position). */
			q->stats.drops[rc < 0 || e->out_num ? ZOC_VNET_DROP_FAULT :
				       ZOC_VNET_DROP_SHORT_RXBUF]++;
			if (rc > 0 && !e->out_num)
				ZOC_WARN_RL("%s: rx queue %u: receive buffer too short for %u bytes",
					    vn->name, q->idx, need);
			lens[nel++] = 0;
			zoc_pkt_free(p);
			pkts[i] = NULL;
			continue;
		}
		{
			/* The header's line for reading (rx_hdr_store mostly
			 * finds the same bytes there and leaves the line shared
			 * with the driver: fetching it for writing would take it
			 * away all the same), the frame's first and last lines
			 * for writing (the hardware prefetcher follows between). */
			const uint8_t *b0 = e->iov[0].iov_base;
			const uint8_t *f0 = b0 + ZOC_MIN((size_t)VNET_HDR_LEN, e->iov[0].iov_len - 1);
			const uint8_t *b1 = b0 + ZOC_MIN((size_t)need, e->iov[0].iov_len) - 1;

			__builtin_prefetch(b0);
			zoc_prefetchw(f0);
			if (((uintptr_t)f0 ^ (uintptr_t)b1) >= ZOC_CACHELINE)
				zoc_prefetchw(b1);
		}
		slot[i] = nel++;
		nfit = i + 1;
	}
	/* Second pass: frames [0, nfit) that got a buffer; one buffer each,
	 * the header at its start, then the frame. */
	for (unsigned j = 0; j < nfit; j++) {
		struct zoc_pkt *p = pkts[j];
		struct virtio_net_hdr h;

		if (!p)
			continue;
		rx_hdr(vn, p, NULL, &h);
		h.num_buffers = 1;
		rx_fill(q, &el[slot[j]], 1, &h, p, &lens[slot[j]]);
		zoc_pkt_free(p);
	}
	zoc_vq_push_burst(q->vq, el, lens, nel);
	*dry_out = dry;
	if (dry)
		return i;
	if (pending) {
		/* frame i has its first buffer in el[nel]; the others are done */
		if (nel)
			elem_move(&el[0], &el[nel]);
		rx_one_from(q, pkts[i], NULL, 1);
		zoc_pkt_free(pkts[i]);
		i++;
	}
	return i;
}

/* The ZOC_GSO_CAP_* a guest with these offloads takes whole. */
static uint32_t gso_caps_of(uint64_t off)
{
	uint32_t caps = 0;

	if (!(off & F(GUEST_CSUM)))
		return 0;
	if (off & F(GUEST_TSO4))
		caps |= ZOC_GSO_CAP_TCPV4;
	if (off & F(GUEST_TSO6))
		caps |= ZOC_GSO_CAP_TCPV6;
	if ((off & F(GUEST_ECN)) && (off & (F(GUEST_TSO4) | F(GUEST_TSO6))))
		caps |= ZOC_GSO_CAP_ECN;
	if (off & F(GUEST_USO4))
		caps |= ZOC_GSO_CAP_USO4;
	if (off & F(GUEST_USO6))
		caps |= ZOC_GSO_CAP_USO6;
	return caps;
}

/* A super-frame for the guest: whole when its offloads allow (the switch
 * already segmented it otherwise, unless the offloads changed on the way),
 * else segmented here to the device MTU. false: no receive buffer (the
 * caller stops and the switch frees p). */
static bool rx_gso(struct vnet_queue *q, struct zoc_pkt *p)
{
	struct zoc_vnet *vn = q->vn;
	uint32_t caps = gso_caps_of(__atomic_load_n(&vn->guest_offloads, __ATOMIC_RELAXED));
	struct zoc_pkt *segs[ZOC_GSO_MAX_SEGS];
	struct zoc_gso_info gi;
	int k;

	if (zoc_gso_accepts(caps, p) && !zoc_gso_parse(zoc_pkt_cdata(p), p->len, p->gso_type, &gi))
		return rx_one(q, p, &gi);
	k = zoc_gso_segment(p, vn->mtu, zoc_pktpool_local(), segs, ZOC_GSO_MAX_SEGS);
	if (k < 0) {
		q->stats.drops[ZOC_VNET_DROP_OFFLOAD]++;
		return true;
	}
	for (int i = 0; i < k; i++) {
		if (!rx_one(q, segs[i], NULL)) {
			q->stats.drops[ZOC_VNET_DROP_NO_RXBUF] += (uint64_t)(k - i - 1);
			zoc_pkt_free_bulk(segs + i, (unsigned)(k - i));
			return i > 0; /* the first went nowhere: stop like rx_one */
		}
		zoc_pkt_free(segs[i]);
	}
	return true;
}

static unsigned vnet_tx_burst(struct zoc_port *port, struct zoc_pkt **pkts, unsigned n)
{
	struct zoc_vnet *vn = zoc_port_ctx(port);
	unsigned pairs = vn->cur_pairs ? vn->cur_pairs : 1;
	unsigned k = 0;

	/* One queue pair in use: the two-pass burst, with the one-frame path
	 * for the GSO frames it leaves. */
	if (pairs == 1 && vn->queues[0].vq) {
		struct vnet_queue *q = &vn->queues[0];

		while (k < n) {
			bool dry = false;

			k += rx_burst(q, pkts + k, n - k, &dry);
			if (dry || k == n)
				break;
			if (pkts[k]->gso_type == ZOC_PKT_GSO_NONE)
				continue; /* after a frame that took several buffers */
			if (!rx_gso(q, pkts[k]))
				break;
			zoc_pkt_free(pkts[k++]);
		}
		goto out;
	}
	for (; k < n; k++) {
		struct zoc_pkt *p = pkts[k];
		struct vnet_queue *q;
		unsigned qp = 0;

		if (pairs > 1)
			qp = (p->hash ? p->hash : zoc_pkt_flow_hash(p)) % pairs;
		q = &vn->queues[2 * qp];
		if (!q->vq) {
			q->stats.drops[ZOC_VNET_DROP_NO_RXBUF]++;
			break;
		}
		if (p->len < VNET_ETH_HLEN || !rx_accept(vn, zoc_pkt_cdata(p))) {
			q->stats.drops[ZOC_VNET_DROP_FILTERED]++;
			zoc_pkt_free(p);
			continue;
		}
		if (p->gso_type != ZOC_PKT_GSO_NONE) {
			if (!rx_gso(q, p))
				break;
			zoc_pkt_free(p);
			continue;
		}
		if (!rx_one(q, p, NULL))
			break;
		zoc_pkt_free(p);
	}
out:
	for (unsigned i = 0; i < vn->max_pairs; i++)
		flush_notify(&vn->queues[2 * i]);
	return k;
}

static void vnet_dump_info(struct zoc_port *port, json_t *obj)
{
	struct zoc_vnet *vn = zoc_port_ctx(port);

	json_object_set_new(obj, "device", json_string(vn->name));
}

static const struct zoc_port_ops vnet_port_ops = {
	.type = "virtio-net",
	.tx_burst = vnet_tx_burst,
	.dump_info = vnet_dump_info,
};

/* -------------------------------------------------------------- control */

struct mac_msg {
	struct zoc_vnet *vn;
	uint8_t mac[6];
};

static void apply_mac_on_control(void *arg)
{
	struct mac_msg *m = arg;
	struct zoc_port_config cfg;

	memcpy(m->vn->config.mac, m->mac, 6);
	if (m->vn->port) {
		zoc_port_get_config(m->vn->port, &cfg);
		cfg.has_mac = true;
		memcpy(cfg.mac, m->mac, 6);
		if (zoc_port_set_config(m->vn->port, &cfg))
			ZOC_WARN("%s: port MAC not updated", m->vn->name);
	}
	free(m);
}

/* Reads a MAC table (le32 entries + entries * 6) at *off. */
static int read_mac_table(const struct zoc_vq_elem *e, uint32_t len, uint32_t *off,
			  uint8_t (*tab)[6], uint32_t *n, bool *overflow)
{
	uint32_t cnt;

	if (*off + 4 > len)
		return -EINVAL;
	iov_read(e->iov, e->out_num, *off, &cnt, 4);
	*off += 4;
	if (cnt > (len - *off) / 6)
		return -EINVAL;
	*overflow = cnt > ZOC_VNET_MAC_TABLE_MAX;
	*n = *overflow ? 0 : cnt;
	if (!*overflow)
		iov_read(e->iov, e->out_num, *off, tab, (size_t)cnt * 6);
	*off += cnt * 6;
	return 0;
}

static uint8_t ctrl_cmd(struct zoc_vnet *vn, const struct zoc_vq_elem *e, uint32_t len)
{
	uint8_t cls_cmd[2];
	uint32_t dlen;

	if (len < 2)
		return VIRTIO_NET_ERR;
	iov_read(e->iov, e->out_num, 0, cls_cmd, 2);
	dlen = len - 2;
	switch (cls_cmd[0]) {
	case VIRTIO_NET_CTRL_RX: {
		uint8_t on;

		if (!has_feat(vn, VIRTIO_NET_F_CTRL_RX) || dlen != 1)
			return VIRTIO_NET_ERR;
		iov_read(e->iov, e->out_num, 2, &on, 1);
		if (cls_cmd[1] == VIRTIO_NET_CTRL_RX_PROMISC)
			vn->promisc = on != 0;
		else if (cls_cmd[1] == VIRTIO_NET_CTRL_RX_ALLMULTI)
			vn->allmulti = on != 0;
		else
			return VIRTIO_NET_ERR;
		return VIRTIO_NET_OK;
	}
	case VIRTIO_NET_CTRL_MAC:
		if (cls_cmd[1] == VIRTIO_NET_CTRL_MAC_ADDR_SET) {
			struct mac_msg *m;
			uint8_t mac[6];

			if (!has_feat(vn, VIRTIO_NET_F_CTRL_MAC_ADDR) || dlen != 6)
				return VIRTIO_NET_ERR;
			iov_read(e->iov, e->out_num, 2, mac, 6);
			if (mac[0] & 1)
				return VIRTIO_NET_ERR;
			m = malloc(sizeof(*m));
			if (!m)
				return VIRTIO_NET_ERR;
			m->vn = vn;
			memcpy(m->mac, mac, 6);
			if (zoc_reactor_send_msg(zoc_reactor_get(0), apply_mac_on_control, m)) {
				free(m);
				return VIRTIO_NET_ERR;
			}
			memcpy(vn->mac, mac, 6);
			return VIRTIO_NET_OK;
		}
		if (cls_cmd[1] == VIRTIO_NET_CTRL_MAC_TABLE_SET) {
			uint8_t uc[ZOC_VNET_MAC_TABLE_MAX][6], mc[ZOC_VNET_MAC_TABLE_MAX][6];
			uint32_t off = 2, nu, nm;
			bool ou, om;

			if (!has_feat(vn, VIRTIO_NET_F_CTRL_RX))
				return VIRTIO_NET_ERR;
			if (read_mac_table(e, len, &off, uc, &nu, &ou) ||
			    read_mac_table(e, len, &off, mc, &nm, &om) || off != len)
				return VIRTIO_NET_ERR;
			memcpy(vn->uc, uc, sizeof(uc));
			memcpy(vn->mc, mc, sizeof(mc));
			vn->n_uc = nu;
			vn->n_mc = nm;
			vn->uni_overflow = ou;
			vn->multi_overflow = om;
			return VIRTIO_NET_OK;
		}
		return VIRTIO_NET_ERR;
	case VIRTIO_NET_CTRL_MQ: {
		uint16_t pairs;

		if (!has_feat(vn, VIRTIO_NET_F_MQ) || cls_cmd[1] != VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET ||
		    dlen != 2)
			return VIRTIO_NET_ERR;
		iov_read(e->iov, e->out_num, 2, &pairs, 2);
		if (pairs < 1 || pairs > vn->max_pairs)
			return VIRTIO_NET_ERR;
		vn->cur_pairs = pairs;
		return VIRTIO_NET_OK;
	}
	case VIRTIO_NET_CTRL_GUEST_OFFLOADS: {
		uint64_t off;

		if (!has_feat(vn, VIRTIO_NET_F_CTRL_GUEST_OFFLOADS) ||
		    cls_cmd[1] != VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET || dlen != 8)
			return VIRTIO_NET_ERR;
		iov_read(e->iov, e->out_num, 2, &off, 8);
		/* Only negotiated offload bits, with the same dependencies. */
		if (off & ~(vn->features & GUEST_OFFLOAD_BITS))
			return VIRTIO_NET_ERR;
		if (!(off & F(GUEST_CSUM)) &&
		    (off & (F(GUEST_TSO4) | F(GUEST_TSO6) | F(GUEST_USO4) | F(GUEST_USO6))))
			return VIRTIO_NET_ERR;
		if ((off & F(GUEST_ECN)) && !(off & (F(GUEST_TSO4) | F(GUEST_TSO6))))
			return VIRTIO_NET_ERR;
		__atomic_store_n(&vn->guest_offloads, off, __ATOMIC_RELAXED);
		zoc_port_set_gso_caps(vn->port, gso_caps_of(off));
		return VIRTIO_NET_OK;
	}
	default:
		return VIRTIO_NET_ERR;
	}
}

static int ctrl_poll(struct vnet_queue *q)
{
	struct zoc_vq_elem *e = &q->elem;
	int done = 0;

	while (done < 16) {
		uint8_t ack = VIRTIO_NET_ERR;
		int rc = zoc_vq_pop(q->vq, e);
		int last;

		if (rc == 0)
			break;
		if (rc == -EIO) {
			note_broken(q);
			break;
		}
		done++;
		q->need_notify = true;
		/* The ack is the last device-writable byte. */
		struct iovec *in = e->iov + e->out_num;
		for (last = (int)e->in_num - 1; last >= 0 && in[last].iov_len == 0; last--)
			;
		if (rc < 0 || last < 0 || !in[last].iov_base || e->in_truncated) {
			q->stats.drops[ZOC_VNET_DROP_FAULT]++;
			ZOC_WARN_RL("%s: control command %u without a usable ack byte", q->vn->name,
				    e->id);
			zoc_vq_push(q->vq, e, 0);
			continue;
		}
		ack = ctrl_cmd(q->vn, e, e->out_len);
		if (ack != VIRTIO_NET_OK) {
			q->stats.drops[ZOC_VNET_DROP_BAD_HDR]++;
			ZOC_WARN_RL("%s: control command refused", q->vn->name);
		} else {
			q->stats.packets++;
		}
		*((uint8_t *)in[last].iov_base + in[last].iov_len - 1) = ack;
		zoc_vq_push(q->vq, e, e->in_len);
	}
	flush_notify(q);
	return done;
}

/* ---------------------------------------------------------------- pollers */

static int vnet_poll(void *arg)
{
	struct vnet_queue *q = arg;

	if (!q->vq)
		return 0;
	flush_notify(q);
	return q->kind == VQ_TX ? tx_poll(q) : ctrl_poll(q);
}

static int vnet_arm(void *arg)
{
	struct vnet_queue *q = arg;

	notify_now_or_at_round_end(q, true); /* about to sleep */
	if (!q->vq || zoc_vq_broken(q->vq))
		return 0;
	return zoc_vq_enable_notify(q->vq);
}

static void vnet_disarm(void *arg)
{
	struct vnet_queue *q = arg;

	if (q->vq)
		zoc_vq_disable_notify(q->vq);
}

static void vnet_kick(void *arg, uint32_t events)
{
	(void)arg;
	(void)events;
}

static const struct zoc_poller_ops vnet_poller_ops = {
	.poll = vnet_poll,
	.arm = vnet_arm,
	.disarm = vnet_disarm,
};

/* ------------------------------------------------------- queue life cycle */

struct start_msg {
	struct vnet_queue *q;
	struct zoc_vq *vq;
};

/* How often a queue checks for a driver waiting on a suppressed interrupt. */
#define VNET_WATCHDOG_US 100000

static int vnet_watchdog(void *arg)
{
	struct vnet_queue *q = arg;

	if (q->vq && zoc_vq_watchdog_log(q->vq, q->vn->name, q->idx))
		q->stats.rescued++;
	return 0; /* not work */
}

static const struct zoc_poller_ops vnet_watchdog_ops = {.poll = vnet_watchdog};

static void queue_start_on_owner(void *arg)
{
	struct start_msg *m = arg;
	struct vnet_queue *q = m->q;
	struct zoc_reactor *r = zoc_reactor_current();
	char name[32];

	q->vq = m->vq;
	free(m);
	q->need_notify = false;
	q->broken_logged = false;
	snprintf(name, sizeof(name), "vnet-%u", q->idx);
	q->watchdog = zoc_poller_register(r, &vnet_watchdog_ops, q, VNET_WATCHDOG_US, name);
	if (!q->watchdog)
		ZOC_WARN("%s: queue %u: no lost-interrupt watchdog (no memory)", q->vn->name,
			 q->idx);
	if (q->kind == VQ_RX) {
		/* Filled from tx_burst; the driver need not kick. */
		zoc_vq_disable_notify(q->vq);
		return;
	}
	q->poller = zoc_poller_register(r, &vnet_poller_ops, q, 0, name);
	if (!q->poller) {
		ZOC_ERR("%s: queue %u cannot start (no memory)", q->vn->name, q->idx);
		return;
	}
	zoc_vq_disable_notify(q->vq);
	if (q->kickfd >= 0 && zoc_reactor_interrupt_mode())
		q->kick_registered =
			zoc_reactor_add_fd(r, q->kickfd, EPOLLIN | EPOLLET, vnet_kick, q) == 0;
}

static void queue_stopped_on_control(void *arg)
{
	struct vnet_queue *q = arg;
	zoc_virtio_done_fn done = q->done;
	void *done_arg = q->done_arg;

	q->done = NULL;
	q->stop_pending = false;
	if (done)
		done(done_arg);
}

static void queue_stop_on_owner(void *arg)
{
	struct vnet_queue *q = arg;
	struct zoc_reactor *r = zoc_reactor_current();

	if (q->poller)
		zoc_poller_unregister(q->poller);
	if (q->watchdog)
		zoc_poller_unregister(q->watchdog);
	q->poller = q->watchdog = NULL;
	if (q->kick_registered)
		zoc_reactor_del_fd(r, q->kickfd);
	q->kick_registered = false;
	/* Nothing is held across calls: every popped chain is already back. */
	if (q->vq) {
		if (q->base_out)
			*q->base_out = zoc_vq_get_base(q->vq);
		zoc_vq_notify(q->vq);
		zoc_vq_destroy(q->vq);
		q->vq = NULL;
	}
	while (zoc_reactor_send_msg(zoc_reactor_get(0), queue_stopped_on_control, q))
		usleep(1000);
}

static int vnet_queue_start(struct zoc_virtio_dev *dev, uint16_t qidx, struct zoc_vq *vq,
			    int kickfd)
{
	struct zoc_vnet *vn = to_vnet(dev);
	struct vnet_queue *q;
	struct start_msg *m;

	if (qidx > ctrl_idx(vn))
		return -EINVAL;
	q = &vn->queues[qidx];
	if (q->running || q->stop_pending)
		return -EBUSY;
	m = malloc(sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->q = q;
	m->vq = vq;
	q->kickfd = kickfd;
	q->running = true;
	if (zoc_reactor_send_msg(vn->owner, queue_start_on_owner, m)) {
		free(m);
		q->running = false;
		return -ENOMEM;
	}
	return 0;
}

static int vnet_queue_stop(struct zoc_virtio_dev *dev, uint16_t qidx, uint32_t *base_out,
			   zoc_virtio_done_fn done, void *arg)
{
	struct zoc_vnet *vn = to_vnet(dev);
	struct vnet_queue *q;

	if (qidx > ctrl_idx(vn) || !vn->queues[qidx].running)
		return -ENOENT;
	q = &vn->queues[qidx];
	q->running = false;
	q->stop_pending = true;
	q->base_out = base_out;
	q->done = done;
	q->done_arg = arg;
	while (zoc_reactor_send_msg(vn->owner, queue_stop_on_owner, q))
		usleep(1000);
	return 0;
}

static bool vnet_queue_running(struct zoc_virtio_dev *dev, uint16_t qidx)
{
	struct zoc_vnet *vn = to_vnet(dev);

	return qidx <= ctrl_idx(vn) && vn->queues[qidx].running;
}

/* ------------------------------------------------------- features, config */

static uint64_t vnet_get_features(struct zoc_virtio_dev *dev)
{
	struct zoc_vnet *vn = to_vnet(dev);
	uint64_t f = ZOC_BIT(VIRTIO_F_VERSION_1) | ZOC_BIT(VIRTIO_F_RING_INDIRECT_DESC) |
		     ZOC_BIT(VIRTIO_F_RING_EVENT_IDX) | ZOC_BIT(VIRTIO_F_RING_PACKED) |
		     ZOC_BIT(VIRTIO_NET_F_MAC) | ZOC_BIT(VIRTIO_NET_F_STATUS) |
		     ZOC_BIT(VIRTIO_NET_F_MRG_RXBUF) | ZOC_BIT(VIRTIO_NET_F_MTU) |
		     ZOC_BIT(VIRTIO_NET_F_CTRL_VQ) | ZOC_BIT(VIRTIO_NET_F_CTRL_RX) |
		     ZOC_BIT(VIRTIO_NET_F_CTRL_MAC_ADDR) | ZOC_BIT(VIRTIO_NET_F_CSUM) |
		     ZOC_BIT(VIRTIO_NET_F_GUEST_CSUM) | F(CTRL_GUEST_OFFLOADS) | F(HOST_TSO4) |
		     F(HOST_TSO6) | F(HOST_ECN) | F(HOST_USO) | F(GUEST_TSO4) | F(GUEST_TSO6) |
		     F(GUEST_ECN) | F(GUEST_USO4) | F(GUEST_USO6);

	/* Every queue returns its buffers in the order it took them: a TX
	 * chain is done (or dropped) before the next is popped, RX buffers
	 * are filled (or returned empty) in ring order, the control queue
	 * answers one command at a time. So IN_ORDER costs nothing here, and
	 * drivers that have an in-order path (DPDK's) take it. */
	f |= ZOC_BIT(VIRTIO_F_IN_ORDER);
	if (vn->max_pairs > 1)
		f |= ZOC_BIT(VIRTIO_NET_F_MQ);
	return f;
}

/* Runs on the owner reactor: the receive filter state is the owner's. */
static void reset_filter_on_owner(void *arg)
{
	struct zoc_vnet *vn = arg;

	vn->cur_pairs = 1;
	vn->promisc = true; /* until the driver says otherwise (CTRL_RX) */
	vn->allmulti = false;
	vn->uni_overflow = vn->multi_overflow = false;
	vn->n_uc = vn->n_mc = 0;
}

static int vnet_set_features(struct zoc_virtio_dev *dev, uint64_t f)
{
	struct zoc_vnet *vn = to_vnet(dev);

	if (f & ~vnet_get_features(dev))
		return -EINVAL;
	/* Control-queue features need the control queue. */
	if (!(f & ZOC_BIT(VIRTIO_NET_F_CTRL_VQ)) &&
	    (f & (ZOC_BIT(VIRTIO_NET_F_CTRL_RX) | ZOC_BIT(VIRTIO_NET_F_CTRL_MAC_ADDR) |
		  ZOC_BIT(VIRTIO_NET_F_MQ) | F(CTRL_GUEST_OFFLOADS))))
		return -EINVAL;
	/* 5.1.3.1: segmentation offloads need the checksum offload of the same
	 * direction, ECN needs TSO. */
	if (!(f & F(CSUM)) && (f & (F(HOST_TSO4) | F(HOST_TSO6) | F(HOST_USO))))
		return -EINVAL;
	if ((f & F(HOST_ECN)) && !(f & (F(HOST_TSO4) | F(HOST_TSO6))))
		return -EINVAL;
	if (!(f & F(GUEST_CSUM)) &&
	    (f & (F(GUEST_TSO4) | F(GUEST_TSO6) | F(GUEST_USO4) | F(GUEST_USO6))))
		return -EINVAL;
	if ((f & F(GUEST_ECN)) && !(f & (F(GUEST_TSO4) | F(GUEST_TSO6))))
		return -EINVAL;
	vn->features = f;
	__atomic_store_n(&vn->guest_offloads, f & GUEST_OFFLOAD_BITS, __ATOMIC_RELAXED);
	if (vn->port)
		zoc_port_set_gso_caps(vn->port, gso_caps_of(f & GUEST_OFFLOAD_BITS));
	zoc_reactor_send_msg(vn->owner, reset_filter_on_owner, vn);
	return 0;
}

static int vnet_get_config(struct zoc_virtio_dev *dev, uint8_t *buf, uint32_t off, uint32_t len)
{
	struct zoc_vnet *vn = to_vnet(dev);

	if (zoc_range_bad(off, len, sizeof(vn->config)))
		return -EINVAL;
	memcpy(buf, (const uint8_t *)&vn->config + off, len);
	return 0;
}

static int vnet_set_config(struct zoc_virtio_dev *dev, const uint8_t *buf, uint32_t off,
			   uint32_t len)
{
	(void)dev;
	(void)buf;
	(void)off;
	(void)len;
	return -ENOTSUP; /* VERSION_1: the MAC changes through the control queue */
}

static const struct zoc_virtio_dev_ops vnet_ops = {
	.get_features = vnet_get_features,
	.set_features = vnet_set_features,
	.get_config = vnet_get_config,
	.set_config = vnet_set_config,
	.queue_start = vnet_queue_start,
	.queue_stop = vnet_queue_stop,
	.queue_running = vnet_queue_running,
};

/* ----------------------------------------------------------- life cycle */

static void vnet_free(struct zoc_vnet *vn)
{
	free(vn->rx_elems);
	free(vn->tx_elems);
	free(vn->queues);
	free(vn);
}

struct zoc_vnet *zoc_vnet_create(const struct zoc_vnet_opts *o)
{
	struct zoc_port_config cfg;
	struct zoc_vnet *vn;
	uint16_t pairs = o && o->num_queue_pairs ? o->num_queue_pairs : 1;
	uint32_t mtu = o && o->mtu ? o->mtu : ZOC_PORT_MTU_DEFAULT;
	unsigned nq;
	int rc;

	if (!o || !o->name || !*o->name || strlen(o->name) >= sizeof(vn->name) || !o->sw ||
	    pairs > ZOC_VNET_MAX_PAIRS || mtu < ZOC_PORT_MTU_MIN || mtu > ZOC_PORT_MTU_MAX ||
	    o->vlan > 4094 || o->owner >= ZOC_MAX(zoc_reactor_count(), 1u) ||
	    (o->has_mac && (o->mac[0] & 1))) {
		errno = EINVAL;
		return NULL;
	}
	vn = calloc(1, sizeof(*vn));
	nq = 2u * pairs + 1;
	if (!vn || !(vn->queues = calloc(nq, sizeof(*vn->queues))) ||
	    !(vn->rx_elems = calloc(VNET_RX_MAX_BUFS, sizeof(*vn->rx_elems))) ||
	    !(vn->tx_elems = calloc(ZOC_PKT_BURST, sizeof(*vn->tx_elems)))) {
		if (vn)
			vnet_free(vn);
		errno = ENOMEM;
		return NULL;
	}
	snprintf(vn->name, sizeof(vn->name), "%s", o->name);
	vn->sw = o->sw;
	vn->max_pairs = pairs;
	vn->mtu = mtu;
	vn->vlan = o->vlan;
	vn->owner = zoc_reactor_get(o->owner);
	for (unsigned i = 0; i < nq; i++) {
		vn->queues[i].vn = vn;
		vn->queues[i].idx = (uint16_t)i;
		vn->queues[i].kind = i == nq - 1 ? VQ_CTRL : (i & 1) ? VQ_TX : VQ_RX;
		vn->queues[i].kickfd = -1;
	}
	if (o->has_mac) {
		memcpy(vn->mac, o->mac, 6);
	} else {
		if (getrandom(vn->mac, 6, 0) != 6)
			for (int i = 0; i < 6; i++)
				vn->mac[i] = (uint8_t)rand();
		vn->mac[0] = (uint8_t)((vn->mac[0] & 0xfe) | 0x02);
	}
	reset_filter_on_owner(vn);
	memcpy(vn->config.mac, vn->mac, 6);
	vn->config.status = VIRTIO_NET_S_LINK_UP;
	vn->config.max_virtqueue_pairs = pairs;
	vn->config.mtu = (uint16_t)mtu;

	zoc_port_config_init(&cfg, o->name);
	cfg.kind = ZOC_PORT_VNIC;
	cfg.owner = o->owner;
	cfg.mtu = mtu;
	cfg.has_mac = true;
	memcpy(cfg.mac, vn->mac, 6);
	if (o->vlan) {
		cfg.vlan_mode = ZOC_VLAN_ACCESS;
		cfg.vid = o->vlan;
	}
	rc = zoc_vswitch_port_add(o->sw, &cfg, &vnet_port_ops, vn, &vn->port);
	if (rc) {
		vnet_free(vn);
		errno = -rc;
		return NULL;
	}
	vn->vdev.name = vn->name;
	vn->vdev.device_id = 1;
	vn->vdev.max_queues = (uint16_t)nq;
	vn->vdev.max_queue_size = ZOC_VNET_QUEUE_SIZE_MAX;
	vn->vdev.config_size = sizeof(vn->config);
	vn->vdev.ops = &vnet_ops;
	return vn;
}

static void port_removed(void *arg)
{
	struct zoc_vnet *vn = arg;
	zoc_virtio_done_fn done = vn->destroy_done;
	void *done_arg = vn->destroy_arg;

	vnet_free(vn);
	if (done)
		done(done_arg);
}

void zoc_vnet_destroy(struct zoc_vnet *vn, zoc_virtio_done_fn done, void *arg)
{
	if (!vn) {
		if (done)
			done(arg);
		return;
	}
	for (unsigned i = 0; i <= ctrl_idx(vn); i++)
		if (vn->queues[i].running || vn->queues[i].stop_pending)
			ZOC_ERR("%s: destroyed with queue %u %s", vn->name, i,
				vn->queues[i].running ? "running" : "still stopping");
	vn->destroy_done = done;
	vn->destroy_arg = arg;
	if (zoc_vswitch_port_remove(vn->port, port_removed, vn))
		port_removed(vn);
}

void zoc_vnet_get_opts(struct zoc_vnet *vn, struct zoc_vnet_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->name = vn->name;
	o->sw = vn->sw;
	o->has_mac = true;
	memcpy(o->mac, vn->config.mac, 6);
	o->num_queue_pairs = vn->max_pairs;
	o->mtu = vn->mtu;
	o->vlan = vn->vlan;
	o->owner = zoc_reactor_index(vn->owner);
}

void zoc_vnet_set_link(struct zoc_vnet *vn, bool up)
{
	uint16_t st = up ? VIRTIO_NET_S_LINK_UP : 0;

	if (vn->config.status == st)
		return;
	vn->config.status = st;
	zoc_virtio_dev_config_changed(&vn->vdev);
}

json_t *zoc_vnet_stats(struct zoc_vnet *vn)
{
	json_t *qs = json_array();
	char mac[18];
	const uint8_t *m = vn->config.mac;

	for (unsigned i = 0; i <= ctrl_idx(vn); i++) {
		struct vnet_queue *q = &vn->queues[i];
		json_t *o, *d = json_object();

		for (unsigned r = 0; r < ZOC_VNET_DROP__COUNT; r++)
			json_object_set_new(d, drop_names[r],
					    json_integer((json_int_t)__atomic_load_n(
						    &q->stats.drops[r], __ATOMIC_RELAXED)));
		o = json_pack("{s:i, s:s, s:b, s:I, s:I, s:I, s:o}", "index", (int)i, "type",
			      q->kind == VQ_RX ? "rx" : q->kind == VQ_TX ? "tx" : "ctrl",
			      "running", q->running, "packets",
			      (json_int_t)__atomic_load_n(&q->stats.packets, __ATOMIC_RELAXED),
			      "bytes", (json_int_t)__atomic_load_n(&q->stats.bytes, __ATOMIC_RELAXED),
			      "rescued_notifies",
			      (json_int_t)__atomic_load_n(&q->stats.rescued, __ATOMIC_RELAXED),
			      "drops", d);
		json_array_append_new(qs, o);
	}
	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4],
		 m[5]);
	return json_pack("{s:s, s:s, s:b, s:I, s:i, s:o}", "port", zoc_port_name(vn->port), "mac",
			 mac, "link_up", vn->config.status & VIRTIO_NET_S_LINK_UP, "features",
			 (json_int_t)vn->features, "queue_pairs", (int)vn->max_pairs, "queues", qs);
}
