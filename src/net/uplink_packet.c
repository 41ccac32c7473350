/* SPDX-License-Identifier: MIT */
/*
 * uplink_packet.c - the AF_PACKET uplink: TPACKET_V3 mmap rings on a host
 * interface.
 *
 * RX: a TPACKET_V3 ring of blocks; the kernel fills a block with frames and
 * hands it over (TP_STATUS_USER) when it is full or its retire timer
 * (opts.retire_ms) fires. The poller walks at most ZOC_PKT_BURST frames per
 * iteration, copies each into a packet buffer (the ring is shared with the
 * kernel: a frame must be copied before the block is given back, and the
 * switch keeps packets for longer than a block), and returns the block to
 * the kernel when it has walked all of it. Every offset in a block header
 * and frame header is checked against the block before use.
 *
 * TX: since Linux 4.11 a TPACKET_V3 socket may also have a TX ring of
 * fixed-size frames (block-based transmit is not supported, the header's
 * tp_next_offset must be 0). A frame slot is free when its status is
 * TP_STATUS_AVAILABLE; we copy the frame in, mark it TP_STATUS_SEND_REQUEST
 * and kick the socket with a zero-length send() once per burst. With
 * PACKET_QDISC_BYPASS the kick transmits synchronously. PACKET_LOSS makes
 * the kernel skip a malformed frame instead of stopping the ring. When the
 * kernel refuses the TX ring (or opts.no_tx_ring), frames go out with
 * sendmmsg() in one call per burst.
 *
 * Frames the kernel stripped a VLAN tag from (TP_STATUS_VLAN_VALID) get
 * the tag back in the packet. Our own transmissions are not received back:
 * PACKET_IGNORE_OUTGOING where the kernel has it, else frames of type
 * PACKET_OUTGOING are skipped.
 */
#include "net/uplink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"

#ifndef PACKET_QDISC_BYPASS
#define PACKET_QDISC_BYPASS 20
#endif
#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

#define TX_DATA_OFF TPACKET_ALIGN(sizeof(struct tpacket3_hdr))

struct pkt_uplink {
	struct zoc_uplink u; /* first */
	uint8_t *map;
	size_t map_len;
	/* RX ring */
	uint32_t block_size, block_nr;
	uint32_t rx_block;     /* block being walked */
	uint32_t rx_left;      /* frames left in it (0: not started) */
	uint32_t rx_off;       /* offset of the next frame in it */
	bool rx_started;
	/* TX ring (tx_nr == 0: sendmmsg) */
	uint8_t *tx;
	uint32_t tx_frame_size, tx_nr, tx_head;
	bool tx_kick_pending;
	bool ignore_outgoing;
	bool qdisc_bypass;
	bool promisc;
	int ifindex;
	uint32_t max_frame;
	uint64_t ring_anomalies;
};

static uint32_t pow2_at_least(uint32_t v)
{
	uint32_t p = 1;

	while (p < v)
		p <<= 1;
	return p;
}

static int setopt(int fd, int name, const void *val, socklen_t len)
{
	return setsockopt(fd, SOL_PACKET, name, val, len) < 0 ? -errno : 0;
}

static int pkt_open(const char *ifname, const struct zoc_uplink_opts *o, struct zoc_uplink **out)
{
	struct pkt_uplink *t;
	struct tpacket_req3 rx = {0}, tx = {0};
	struct sockaddr_ll sll = {0};
	int fd, ret, one = 1, ver = TPACKET_V3;
	size_t rx_len, tx_len = 0;
	unsigned ifindex = if_nametoindex(ifname);

	if (!ifindex)
		return -ENODEV;
	if (o->block_size && (o->block_size < 4096 || (o->block_size & (o->block_size - 1)) ||
			      o->block_size > (1u << 26)))
		return -EINVAL;
	if (o->block_count > 1024 || o->tx_frames > 65536)
		return -EINVAL;
	if (o->retire_ms > 10000)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->ifindex = (int)ifindex;
	t->max_frame = o->mtu + 14 + 8;
	/* No frames until bound: protocol 0. */
	fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		free(t);
		return ret;
	}
	t->u.fd = fd;
	ret = setopt(fd, PACKET_VERSION, &ver, sizeof(ver));
	if (ret)
		goto fail;
	setopt(fd, PACKET_LOSS, &one, sizeof(one));
	t->qdisc_bypass = setopt(fd, PACKET_QDISC_BYPASS, &one, sizeof(one)) == 0;
	t->ignore_outgoing = setopt(fd, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) == 0;

	t->block_size = o->block_size ? o->block_size : 1u << 18;
	if (t->block_size < pow2_at_least(t->max_frame + 256))
		t->block_size = pow2_at_least(t->max_frame + 256);
	t->block_nr = o->block_count ? o->block_count : 16;
	rx.tp_block_size = t->block_size;
	rx.tp_block_nr = t->block_nr;
	rx.tp_frame_size = 2048;
	rx.tp_frame_nr = t->block_size / 2048 * t->block_nr;
	rx.tp_retire_blk_tov = o->retire_ms ? o->retire_ms : 1;
	ret = setopt(fd, PACKET_RX_RING, &rx, sizeof(rx));
	if (ret) {
		ZOC_WARN("uplink af_packet %s: RX ring: %s", ifname, strerror(-ret));
		goto fail;
	}
	rx_len = (size_t)t->block_size * t->block_nr;

	if (!o->no_tx_ring) {
		uint32_t fs = pow2_at_least((uint32_t)TX_DATA_OFF + t->max_frame);
		uint32_t bs = fs > 65536 ? fs : 65536;
		uint32_t per = bs / fs;
		uint32_t nr = o->tx_frames ? o->tx_frames : 256;

		tx.tp_block_size = bs;
		tx.tp_block_nr = (nr + per - 1) / per;
		tx.tp_frame_size = fs;
		tx.tp_frame_nr = tx.tp_block_nr * per;
		if (setopt(fd, PACKET_TX_RING, &tx, sizeof(tx)) == 0) {
			t->tx_frame_size = fs;
			t->tx_nr = tx.tp_frame_nr;
			tx_len = (size_t)bs * tx.tp_block_nr;
		} else {
			ZOC_INFO("uplink af_packet %s: no V3 TX ring (%s): sendmmsg", ifname,
				 strerror(errno));
		}
	}
	t->map_len = rx_len + tx_len;
	t->map = mmap(NULL, t->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
	if (t->map == MAP_FAILED) {
		t->map = NULL;
		ret = -errno;
		goto fail;
	}
	if (t->tx_nr)
		t->tx = t->map + rx_len;

	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = (int)ifindex;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		ret = -errno;
		goto fail;
	}
	if (!o->no_promisc) {
		struct packet_mreq mr = {.mr_ifindex = (int)ifindex, .mr_type = PACKET_MR_PROMISC};

		t->promisc = setopt(fd, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr)) == 0;
		if (!t->promisc)
			ZOC_WARN("uplink af_packet %s: promiscuous mode refused", ifname);
	}
	*out = &t->u;
	return 0;
fail:
	if (t->map)
		munmap(t->map, t->map_len);
	close(fd);
	free(t);
	return ret;
}

static struct tpacket_block_desc *block_at(struct pkt_uplink *t, uint32_t i)
{
	return (struct tpacket_block_desc *)(t->map + (size_t)i * t->block_size);
}

static void block_release(struct pkt_uplink *t)
{
	struct tpacket_block_desc *b = block_at(t, t->rx_block);

	__atomic_store_n(&b->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
	t->rx_block = (t->rx_block + 1) % t->block_nr;
	t->rx_started = false;
	t->rx_left = 0;
}

static void ring_anomaly(struct pkt_uplink *t, const char *what)
{
	t->ring_anomalies++;
	ZOC_UPLINK_INC(&t->u, rx_errors, 1);
	ZOC_WARN_RL("uplink af_packet %s: RX ring: %s; block skipped", t->u.ifname, what);
	block_release(t);
}

/* One frame of the current block into a packet (or counted as dropped). */
static struct zoc_pkt *take_frame(struct pkt_uplink *t, const uint8_t *blk,
				  const struct tpacket3_hdr *h, struct zoc_pktpool *pool,
				  uint32_t avail)
{
	struct zoc_uplink *u = &t->u;
	const struct sockaddr_ll *sll;
	uint32_t snap = h->tp_snaplen, len = h->tp_len, extra = 0;
	bool vlan = h->tp_status & TP_STATUS_VLAN_VALID;
	struct zoc_pkt *p;
	uint8_t *d;

	(void)blk;
	if (TX_DATA_OFF + sizeof(*sll) <= avail) {
		sll = (const struct sockaddr_ll *)((const uint8_t *)h + TX_DATA_OFF);
		if (!t->ignore_outgoing && sll->sll_pkttype == PACKET_OUTGOING)
			return NULL;
	}
	if (snap < len) {
		ZOC_UPLINK_INC(u, rx_truncated, 1);
		zoc_port_count_drop(u->port, ZOC_DROP_INVALID, 1);
		return NULL;
	}
	if (vlan)
		extra = 4;
	if (snap < 12 && vlan)
		extra = 0; /* a runt: the switch rejects it */
	if (snap + extra > t->max_frame || snap + extra > ZOC_PKT_MAX_FRAME) {
		ZOC_UPLINK_INC(u, rx_oversize, 1);
		zoc_port_count_drop(u->port, ZOC_DROP_MTU, 1);
		return NULL;
	}
	p = zoc_pkt_alloc(pool, snap + extra);
	if (!p) {
		ZOC_UPLINK_INC(u, rx_nobuf, 1);
		zoc_port_count_drop(u->port, ZOC_DROP_NO_BUFFER, 1);
		return NULL;
	}
	d = zoc_pkt_data(p);
	if (extra) {
		const uint8_t *s = (const uint8_t *)h + h->tp_mac;
		uint16_t tpid = (h->tp_status & TP_STATUS_VLAN_TPID_VALID) && h->hv1.tp_vlan_tpid
					? h->hv1.tp_vlan_tpid
					: ETH_P_8021Q;

		memcpy(d, s, 12);
		d[12] = (uint8_t)(tpid >> 8);
		d[13] = (uint8_t)tpid;
		d[14] = (uint8_t)(h->hv1.tp_vlan_tci >> 8);
		d[15] = (uint8_t)h->hv1.tp_vlan_tci;
		memcpy(d + 16, s + 12, snap - 12);
	} else {
		memcpy(d, (const uint8_t *)h + h->tp_mac, snap);
	}
	ZOC_UPLINK_INC(u, rx_frames, 1);
	ZOC_UPLINK_INC(u, rx_bytes, p->len);
	return p;
}

static int tx_kick(struct pkt_uplink *t);

static int pkt_poll(struct zoc_uplink *u)
{
	struct pkt_uplink *t = (struct pkt_uplink *)u;
	struct zoc_pktpool *pool = zoc_pktpool_local();
	struct zoc_pkt *pkts[ZOC_PKT_BURST];
	unsigned n = 0, walked = 0;

	if (t->tx_kick_pending)
		tx_kick(t);
	if (!pool)
		return 0;
	while (n < ZOC_PKT_BURST && walked < 4 * ZOC_PKT_BURST) {
		struct tpacket_block_desc *b = block_at(t, t->rx_block);
		uint8_t *blk = (uint8_t *)b;
		struct tpacket3_hdr *h;
		uint32_t avail;

		if (!t->rx_started) {
			if (!(__atomic_load_n(&b->hdr.bh1.block_status, __ATOMIC_ACQUIRE) &
			      TP_STATUS_USER))
				break;
			t->rx_started = true;
			t->rx_left = b->hdr.bh1.num_pkts;
			t->rx_off = b->hdr.bh1.offset_to_first_pkt;
			if (t->rx_left == 0) {
				block_release(t);
				continue;
			}
		}
		if (t->rx_off < sizeof(*b) || t->rx_off > t->block_size - sizeof(*h)) {
			ring_anomaly(t, "frame offset outside the block");
			continue;
		}
		h = (struct tpacket3_hdr *)(blk + t->rx_off);
		avail = t->block_size - t->rx_off;
		if (h->tp_mac < sizeof(*h) || h->tp_mac > avail ||
		    h->tp_snaplen > avail - h->tp_mac) {
			ring_anomaly(t, "frame data outside the block");
			continue;
		}
		walked++;
		pkts[n] = take_frame(t, blk, h, pool, avail);
		if (pkts[n])
			n++;
		if (--t->rx_left == 0) {
			block_release(t);
			continue;
		}
		if (h->tp_next_offset == 0 || h->tp_next_offset > avail) {
			ring_anomaly(t, "bad next-frame offset");
			continue;
		}
		t->rx_off += h->tp_next_offset;
	}
	if (n)
		zoc_vswitch_rx_burst(u->sw, u->port, pkts, n);
	return (int)(n ? n : walked);
}

static int pkt_pending(struct zoc_uplink *u)
{
	struct pkt_uplink *t = (struct pkt_uplink *)u;

	if (t->rx_started || t->tx_kick_pending)
		return 1;
	return (__atomic_load_n(&block_at(t, t->rx_block)->hdr.bh1.block_status, __ATOMIC_ACQUIRE) &
		TP_STATUS_USER) != 0;
}

static int tx_kick(struct pkt_uplink *t)
{
	ssize_t r = send(t->u.fd, NULL, 0, MSG_DONTWAIT);

	if (r >= 0) {
		t->tx_kick_pending = false;
		return 0;
	}
	if (errno == EAGAIN || errno == ENOBUFS || errno == EINTR) {
		t->tx_kick_pending = true; /* retried from the poller */
		return 0;
	}
	/* Interface down / gone: frames stay queued in the ring until it
	 * comes back (or the ring fills: counted tx_full). */
	t->tx_kick_pending = false;
	ZOC_UPLINK_INC(&t->u, tx_errors, 1);
	ZOC_WARN_RL("uplink af_packet %s: send: %s", t->u.ifname, strerror(errno));
	return -errno;
}

/* 0: ready to send; else counted and to be freed. */
static int tx_prepare(struct pkt_uplink *t, struct zoc_pkt *p, unsigned *big, unsigned *err)
{
	if (p->len > t->max_frame || p->gso_type != ZOC_PKT_GSO_NONE) {
		(*big)++;
		return -1;
	}
	if (zoc_uplink_csum_complete(p)) {
		(*err)++;
		return -1;
	}
	return 0;
}

static unsigned pkt_tx_burst(struct zoc_port *port, struct zoc_pkt **pkts, unsigned n)
{
	struct pkt_uplink *t = zoc_port_ctx(port);
	struct zoc_uplink *u = &t->u;
	unsigned i, full = 0, err = 0, big = 0, sent = 0;
	uint64_t bytes = 0;

	if (t->tx_nr) {
		for (i = 0; i < n; i++) {
			struct zoc_pkt *p = pkts[i];
			struct tpacket3_hdr *h;
			uint32_t st;

			if (tx_prepare(t, p, &big, &err))
				continue;
			h = (struct tpacket3_hdr *)(t->tx + (size_t)t->tx_head * t->tx_frame_size);
			st = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
			if (st != TP_STATUS_AVAILABLE && st != TP_STATUS_WRONG_FORMAT) {
				full++;
				continue;
			}
			if (st == TP_STATUS_WRONG_FORMAT)
				err++;
			memcpy((uint8_t *)h + TX_DATA_OFF, zoc_pkt_cdata(p), p->len);
			h->tp_len = p->len;
			h->tp_snaplen = p->len;
			h->tp_next_offset = 0;
			__atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
			t->tx_head = (t->tx_head + 1) % t->tx_nr;
			sent++;
			bytes += p->len;
		}
		if (sent)
			tx_kick(t);
	} else {
		struct mmsghdr msgs[ZOC_PKT_BURST];
		struct iovec iov[ZOC_PKT_BURST];
		unsigned m = 0, done = 0;

		for (i = 0; i < n && i < ZOC_PKT_BURST; i++) {
			if (tx_prepare(t, pkts[i], &big, &err))
				continue;
			iov[m].iov_base = zoc_pkt_data(pkts[i]);
			iov[m].iov_len = pkts[i]->len;
			memset(&msgs[m], 0, sizeof(msgs[m]));
			msgs[m].msg_hdr.msg_iov = &iov[m];
			msgs[m].msg_hdr.msg_iovlen = 1;
			m++;
		}
		while (done < m) {
			int r = sendmmsg(u->fd, msgs + done, m - done, MSG_DONTWAIT);

			if (r > 0) {
				for (int k = 0; k < r; k++)
					bytes += iov[done + (unsigned)k].iov_len;
				sent += (unsigned)r;
				done += (unsigned)r;
				continue;
			}
			if (errno == EAGAIN || errno == ENOBUFS) {
				full += m - done; /* the device queue is full: drop the rest */
				break;
			}
			if (errno == EINTR)
				continue;
			ZOC_WARN_RL("uplink af_packet %s: sendmmsg: %s", u->ifname, strerror(errno));
			err++;
			done++; /* skip the frame that failed */
		}
	}
	zoc_pkt_free_bulk(pkts, n);
	if (sent) {
		ZOC_UPLINK_INC(u, tx_frames, sent);
		ZOC_UPLINK_INC(u, tx_bytes, bytes);
	}
	if (full) {
		ZOC_UPLINK_INC(u, tx_full, full);
		zoc_port_count_drop(port, ZOC_DROP_RING_FULL, full);
	}
	if (err) {
		ZOC_UPLINK_INC(u, tx_errors, err);
		zoc_port_count_drop(port, ZOC_DROP_PORT_DOWN, err);
	}
	if (big) {
		ZOC_UPLINK_INC(u, tx_oversize, big);
		zoc_port_count_drop(port, ZOC_DROP_MTU, big);
	}
	return n;
}

static void pkt_close(struct zoc_uplink *u)
{
	struct pkt_uplink *t = (struct pkt_uplink *)u;

	if (t->map)
		munmap(t->map, t->map_len);
	t->map = NULL;
	t->tx = NULL;
	if (u->fd >= 0)
		close(u->fd);
	u->fd = -1;
}

static void pkt_free(struct zoc_uplink *u)
{
	free(u);
}

static void pkt_info(struct zoc_uplink *u, json_t *obj)
{
	struct pkt_uplink *t = (struct pkt_uplink *)u;
	struct tpacket_stats_v3 ks = {0};
	socklen_t len = sizeof(ks);
	json_t *rx = json_object(), *tx = json_object();

	if (!rx || !tx) {
		json_decref(rx);
		json_decref(tx);
		return;
	}
	json_object_set_new(rx, "block_size", json_integer(t->block_size));
	json_object_set_new(rx, "blocks", json_integer(t->block_nr));
	json_object_set_new(rx, "ring_anomalies", json_integer((json_int_t)t->ring_anomalies));
	/* (Reading the kernel's counters resets them; reactor 0 is the only
	 * reader.) */
	if (u->fd >= 0 && getsockopt(u->fd, SOL_PACKET, PACKET_STATISTICS, &ks, &len) == 0) {
		json_object_set_new(rx, "kernel_packets", json_integer(ks.tp_packets));
		json_object_set_new(rx, "kernel_drops", json_integer(ks.tp_drops));
		json_object_set_new(rx, "kernel_freeze_q", json_integer(ks.tp_freeze_q_cnt));
	}
	json_object_set_new(tx, "mode", json_string(t->tx_nr ? "ring" : "sendmmsg"));
	json_object_set_new(tx, "frames", json_integer(t->tx_nr));
	json_object_set_new(tx, "frame_size", json_integer(t->tx_frame_size));
	json_object_set_new(obj, "rx_ring", rx);
	json_object_set_new(obj, "tx", tx);
	json_object_set_new(obj, "ifindex", json_integer(t->ifindex));
	json_object_set_new(obj, "qdisc_bypass", json_boolean(t->qdisc_bypass));
	json_object_set_new(obj, "ignore_outgoing", json_boolean(t->ignore_outgoing));
	json_object_set_new(obj, "promisc", json_boolean(t->promisc));
}

const struct zoc_uplink_type zoc_uplink_af_packet = {
	.name = "af_packet",
	.open = pkt_open,
	.tx_burst = pkt_tx_burst,
	.poll = pkt_poll,
	.pending = pkt_pending,
	.close = pkt_close,
	.free = pkt_free,
	.info = pkt_info,
};
