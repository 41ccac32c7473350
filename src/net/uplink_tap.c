/* SPDX-License-Identifier: MIT */
/*
 * uplink_tap.c - the TAP uplink: frames through /dev/net/tun.
 *
 * One read() or readv() per frame (the tun character device has no batch
 * read), one writev() per frame on transmit. With IFF_VNET_HDR each frame
 * is preceded by a struct virtio_net_hdr carrying checksum metadata both
 * ways (we advertise TUN_F_CSUM only: no GSO super-frames, which could not
 * fit a packet buffer). Without it, frames that still need a checksum are
 * completed in software before they leave.
 */
#include "net/uplink.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/log.h"
#include "net/gso.h"

struct tap_uplink {
	struct zoc_uplink u; /* first */
	bool vnet_hdr;
	bool caps_set;       /* GSO caps published on the port (owner) */
	bool rx_gso;         /* the kernel may hand us TCP super-frames */
	struct zoc_pkt *spare; /* giant read buffer (owner), rx_gso only */
	bool large;          /* MTU needs large packet buffers */
	uint32_t max_frame;  /* MTU + Ethernet + two tags */
};

static uint32_t frame_limit(uint32_t mtu)
{
	return mtu + 14 + 8;
}

static int tap_open(const char *ifname, const struct zoc_uplink_opts *o, struct zoc_uplink **out)
{
	struct tap_uplink *t;
	struct ifreq ifr;
	int fd, ret, s;
	bool rx_gso = false;

	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (o->vnet_hdr ? IFF_VNET_HDR : 0);
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		ret = -errno;
		ZOC_WARN("uplink tap %s: TUNSETIFF: %s", ifname, strerror(errno));
		close(fd);
		return ret;
	}
	if (o->vnet_hdr) {
		int sz = sizeof(struct virtio_net_hdr);

		if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0 ||
		    ioctl(fd, TUNSETOFFLOAD, (unsigned long)TUN_F_CSUM) < 0) {
			ret = -errno;
			ZOC_WARN("uplink tap %s: vnet header setup: %s", ifname, strerror(errno));
			close(fd);
			return ret;
		}
		/* TCP super-frames from the host stack, kept whole for TSO
		 * guests (segmented by the switch for the others). */
		rx_gso = ioctl(fd, TUNSETOFFLOAD,
			       (unsigned long)(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN)) ==
			 0;
	}
	/* Bring the interface up (best effort: the owner may manage it). */
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s >= 0) {
		struct ifreq f;

		memset(&f, 0, sizeof(f));
		snprintf(f.ifr_name, IFNAMSIZ, "%s", ifname);
		if (ioctl(s, SIOCGIFFLAGS, &f) == 0 && !(f.ifr_flags & IFF_UP)) {
			f.ifr_flags |= IFF_UP;
			if (ioctl(s, SIOCSIFFLAGS, &f) < 0)
				ZOC_WARN("uplink tap %s: cannot bring up: %s", ifname,
					 strerror(errno));
		}
		close(s);
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		close(fd);
		return -ENOMEM;
	}
	t->u.fd = fd;
	t->vnet_hdr = o->vnet_hdr;
	t->rx_gso = rx_gso;
	t->max_frame = frame_limit(o->mtu);
	t->large = t->max_frame > ZOC_PKT_SMALL_ROOM - ZOC_PKT_HEADROOM;
	*out = &t->u;
	return 0;
}

/* vnet header -> packet metadata; -EINVAL if it points outside the frame. */
static int hdr_to_pkt(const struct virtio_net_hdr *h, struct zoc_pkt *p)
{
	if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		if (h->csum_start >= p->len || h->csum_offset > p->len - h->csum_start ||
		    p->len - h->csum_start - h->csum_offset < 2)
			return -EINVAL;
		p->flags |= ZOC_PKT_F_CSUM_NEEDED;
		p->csum_start = h->csum_start;
		p->csum_offset = h->csum_offset;
	} else if (h->flags & VIRTIO_NET_HDR_F_DATA_VALID) {
		p->flags |= ZOC_PKT_F_CSUM_VALID;
	}
	p->gso_type = h->gso_type; /* ECN flag kept: same values in pkt.h */
	p->gso_size = h->gso_size;
	p->hdr_len = h->hdr_len;
	if (p->gso_type != ZOC_PKT_GSO_NONE &&
	    (!p->gso_size || !(p->flags & ZOC_PKT_F_CSUM_NEEDED)))
		return -EINVAL;
	return 0;
}

static int tap_poll(struct zoc_uplink *u)
{
	struct tap_uplink *t = (struct tap_uplink *)u;
	struct zoc_pktpool *pool = zoc_pktpool_local();
	struct zoc_pkt *pkts[ZOC_PKT_BURST];
	unsigned n = 0, i;
	uint32_t room = t->large ? ZOC_PKT_MAX_FRAME : ZOC_PKT_SMALL_ROOM - ZOC_PKT_HEADROOM;

	if (!pool)
		return 0;
	if (!t->caps_set) {
		/* With a vnet header the kernel takes TCP super-frames whole
		 * (virtio_net_hdr_to_skb) and segments them itself. */
		t->caps_set = true;
		if (t->vnet_hdr)
			zoc_port_set_gso_caps(u->port,
					      ZOC_GSO_CAP_TCPV4 | ZOC_GSO_CAP_TCPV6 | ZOC_GSO_CAP_ECN);
	}
	for (i = 0; i < ZOC_PKT_BURST; i++) {
		struct virtio_net_hdr h;
		struct iovec iov[2];
		struct zoc_pkt *p;
		uint32_t rroom = room;
		ssize_t r;
		int niov = 0;

		/* rx_gso: read into a giant buffer, keep it when the frame is a
		 * super-frame, else copy the frame to a packet of its size. */
		if (t->rx_gso && !t->spare)
			t->spare = zoc_pkt_alloc(pool, ZOC_PKT_GSO_MAX_FRAME);
		if (t->rx_gso && t->spare) {
			p = t->spare;
			rroom = ZOC_PKT_GSO_MAX_FRAME;
		} else {
			p = zoc_pkt_alloc(pool, room);
		}

		if (!p) {
			/* Take the frame off the device anyway: it is lost. */
			uint8_t sink[64];

			r = read(u->fd, sink, sizeof(sink));
			if (r < 0 && errno == EAGAIN)
				break; /* (a longer frame fails EFAULT, consumed) */
			ZOC_UPLINK_INC(u, rx_nobuf, 1);
			zoc_port_count_drop(u->port, ZOC_DROP_NO_BUFFER, 1);
			continue;
		}
		if (t->vnet_hdr) {
			iov[niov].iov_base = &h;
			iov[niov++].iov_len = sizeof(h);
		}
		iov[niov].iov_base = zoc_pkt_data(p);
		iov[niov++].iov_len = rroom;
		r = readv(u->fd, iov, niov);
		if (p == t->spare) {
			t->spare = NULL; /* p is ours now; given back below if unused */
			if (r >= (ssize_t)sizeof(h) && (size_t)r - sizeof(h) <= room &&
			    h.gso_type == VIRTIO_NET_HDR_GSO_NONE) {
				struct zoc_pkt *q = zoc_pkt_alloc(pool, (uint32_t)r - sizeof(h));

				if (q) {
					memcpy(zoc_pkt_data(q), zoc_pkt_data(p), (size_t)r - sizeof(h));
					t->spare = p;
					p = q;
				}
			} else if (r < 0) {
				t->spare = p;
				p = NULL;
			}
		}
		if (r < 0) {
			int e = errno;

			zoc_pkt_free(p);
			if (e == EAGAIN || e == EINTR)
				break;
			if (e == EFAULT || e == EMSGSIZE || e == EINVAL) {
				/* Frame larger than our buffer: consumed, dropped. */
				ZOC_UPLINK_INC(u, rx_oversize, 1);
				zoc_port_count_drop(u->port, ZOC_DROP_MTU, 1);
				continue;
			}
			ZOC_UPLINK_INC(u, rx_errors, 1);
			ZOC_WARN_RL("uplink tap %s: read: %s", u->ifname, strerror(e));
			break;
		}
		if (t->vnet_hdr) {
			if ((size_t)r < sizeof(h)) {
				zoc_pkt_free(p);
				ZOC_UPLINK_INC(u, rx_truncated, 1);
				zoc_port_count_drop(u->port, ZOC_DROP_INVALID, 1);
				continue;
			}
			r -= (ssize_t)sizeof(h);
		}
		p->len = (uint32_t)r;
		if ((uint32_t)r > t->max_frame &&
		    !(t->vnet_hdr && h.gso_type != VIRTIO_NET_HDR_GSO_NONE)) {
			zoc_pkt_free(p);
			ZOC_UPLINK_INC(u, rx_oversize, 1);
			zoc_port_count_drop(u->port, ZOC_DROP_MTU, 1);
			continue;
		}
		if (t->vnet_hdr && hdr_to_pkt(&h, p)) {
			zoc_pkt_free(p);
			ZOC_UPLINK_INC(u, rx_truncated, 1);
			zoc_port_count_drop(u->port, ZOC_DROP_INVALID, 1);
			continue;
		}
		ZOC_UPLINK_INC(u, rx_frames, 1);
		ZOC_UPLINK_INC(u, rx_bytes, (uint64_t)r);
		pkts[n++] = p;
	}
	if (n)
		zoc_vswitch_rx_burst(u->sw, u->port, pkts, n);
	return (int)n;
}

static int tap_pending(struct zoc_uplink *u)
{
	(void)u;
	/* The fd is level-triggered in epoll: a frame that is already queued
	 * makes the sleep return at once. */
	return 0;
}

static unsigned tap_tx_burst(struct zoc_port *port, struct zoc_pkt **pkts, unsigned n)
{
	struct tap_uplink *t = zoc_port_ctx(port);
	struct zoc_uplink *u = &t->u;
	unsigned i, full = 0, err = 0, big = 0;

	for (i = 0; i < n; i++) {
		struct zoc_pkt *p = pkts[i];
		struct virtio_net_hdr h;
		struct iovec iov[2];
		int niov = 0;
		ssize_t r;

		if ((p->gso_type == ZOC_PKT_GSO_NONE && p->len > t->max_frame) ||
		    (!t->vnet_hdr && p->gso_type != ZOC_PKT_GSO_NONE)) {
			big++;
			zoc_pkt_free(p);
			continue;
		}
		if (t->vnet_hdr) {
			memset(&h, 0, sizeof(h));
			if (p->flags & ZOC_PKT_F_CSUM_NEEDED) {
				h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
				h.csum_start = p->csum_start;
				h.csum_offset = p->csum_offset;
			} else if (p->flags & ZOC_PKT_F_CSUM_VALID) {
				h.flags = VIRTIO_NET_HDR_F_DATA_VALID;
			}
			h.gso_type = p->gso_type;
			h.gso_size = p->gso_size;
			h.hdr_len = p->hdr_len;
			iov[niov].iov_base = &h;
			iov[niov++].iov_len = sizeof(h);
		} else if (zoc_uplink_csum_complete(p)) {
			err++;
			zoc_pkt_free(p);
			continue;
		}
		iov[niov].iov_base = zoc_pkt_data(p);
		iov[niov++].iov_len = p->len;
		r = writev(u->fd, iov, niov);
		if (r < 0) {
			if (errno == EAGAIN || errno == ENOBUFS)
				full++;
			else
				err++;
			ZOC_WARN_RL("uplink tap %s: write: %s", u->ifname, strerror(errno));
		} else {
			ZOC_UPLINK_INC(u, tx_frames, 1);
			ZOC_UPLINK_INC(u, tx_bytes, p->len);
		}
		zoc_pkt_free(p);
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
	/* All taken (sent or counted and freed). */
	return n;
}

static void tap_close(struct zoc_uplink *u)
{
	struct tap_uplink *t = (struct tap_uplink *)u;

	zoc_pkt_free(t->spare);
	t->spare = NULL;
	if (u->fd >= 0)
		close(u->fd);
	u->fd = -1;
}

static void tap_free(struct zoc_uplink *u)
{
	free(u);
}

static void tap_info(struct zoc_uplink *u, json_t *obj)
{
	struct tap_uplink *t = (struct tap_uplink *)u;

	json_object_set_new(obj, "vnet_hdr", json_boolean(t->vnet_hdr));
	json_object_set_new(obj, "rx_gso", json_boolean(t->rx_gso));
	json_object_set_new(obj, "max_frame", json_integer(t->max_frame));
}

const struct zoc_uplink_type zoc_uplink_tap = {
	.name = "tap",
	.open = tap_open,
	.tx_burst = tap_tx_burst,
	.poll = tap_poll,
	.pending = tap_pending,
	.close = tap_close,
	.free = tap_free,
	.info = tap_info,
};
