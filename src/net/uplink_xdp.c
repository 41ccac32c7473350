/* SPDX-License-Identifier: MIT */
/*
 * uplink_xdp.c - the AF_XDP uplink: an XDP socket (libxdp) on one queue of
 * a host interface.
 *
 * SET-UP (reactor 0, in open): an anonymous mapping of `frames` 4 KiB
 * frames is registered as the UMEM, with a fill and a completion ring; the
 * socket gets an RX and a TX ring and is bound to (ifname, queue).
 * xsk_socket__create() also loads and attaches libxdp's default program
 * (the xsk map plus bpf_redirect_map() by RX queue index, falling back to
 * XDP_PASS) unless one is attached already for the interface. Mode AUTO
 * attaches in native (driver) mode and falls back to generic (SKB) mode
 * when the driver has no XDP; the bind asks for zero copy only when told
 * to (COPY_ZEROCOPY), forces copy with COPY_FORCE, and otherwise lets the
 * kernel use zero copy if the driver supports it (XDP_OPTIONS tells which
 * one we got). XDP_USE_NEED_WAKEUP is always asked for.
 *
 * FRAMES: the first half of the UMEM is for receiving (always given to the
 * kernel through the fill ring, back to it as soon as the frame is copied
 * out), the second half for sending (a free stack; a frame goes to the TX
 * ring and comes back through the completion ring). A state byte per frame
 * records who has it. Everything the kernel hands back - RX descriptors,
 * completion addresses, ring producer indices - is checked before use: an
 * address outside the UMEM or in the wrong half, a frame the kernel does
 * not own, a length that crosses the frame's end, a multi-buffer flag we did
 * not ask for, a producer more than a ring ahead: counted (rx_errors /
 * tx_errors, and in the type's JSON) and never touched. A frame named by a
 * malformed RX descriptor is kept out of the fill ring until the kernel
 * returns it with a valid one (else it could sit in the fill ring twice).
 *
 * COPY: frames are copied between UMEM and packet buffers from the owner's
 * pool (the switch keeps packets longer than the kernel may go without RX
 * frames, and packets travel to other reactors). Zero copy through the
 * switch would need packet buffers that live in the UMEM: a pool whose
 * buffers are UMEM frames (a zoc_pkt header in the frame's headroom, the
 * XDP headroom reserved by frame_headroom), RX frames handed to the switch
 * as they are and returned to the fill ring from zoc_pkt_free(), including
 * from other reactors (the remote-free list), and TX of a packet that is
 * already a UMEM frame of the same socket without a copy.
 *
 * BATCHING: up to ZOC_PKT_BURST descriptors per poll, one producer update
 * per burst on each ring, one wake-up syscall per burst at most: sendto()
 * when the TX ring has the need-wakeup flag (always, in copy mode), and
 * recvfrom() when the fill ring has it (drivers in zero-copy mode). A
 * wake-up that fails with EAGAIN/EBUSY/ENOBUFS/ENETDOWN (copy-mode TX sends
 * at most a budget of frames per call) is retried from the poller.
 *
 * TEARDOWN (owner reactor): xsk_socket__delete() (libxdp detaches its
 * program when the last socket of the interface goes), xsk_umem__delete(),
 * munmap. zocd runs this for SIGTERM/SIGINT too (zocd_shutdown deletes the
 * uplink devices). After a crash or SIGKILL the program stays attached and,
 * its xsk map entry being gone with the socket, passes frames to the stack;
 * `xdp-loader unload -a <if>` or `ip link set <if> xdp off` removes it.
 */
#include "net/uplink.h"

#include <errno.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/libbpf.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#include "core/log.h"

#define FRAME_SHIFT 12
#define FRAME_SIZE (1u << FRAME_SHIFT)
/* The kernel puts XDP_PACKET_HEADROOM (256) before the data in a frame. */
#define FRAME_DATA_MAX (FRAME_SIZE - 256u)

#ifndef XDP_PKT_CONTD
#define XDP_PKT_CONTD (1 << 0)
#endif

/* FST_SUSPECT: an RX frame named by a malformed descriptor. Not given back
 * to the fill ring (the kernel may still hold it, and a frame in the fill
 * ring twice would be written twice); taken back normally if the kernel
 * returns it later with a valid descriptor. */
enum { FST_OURS = 0, FST_FILL, FST_TX, FST_SUSPECT };

struct xdp_uplink {
	struct zoc_uplink u; /* first */
	struct xsk_ring_prod fill, tx;
	struct xsk_ring_cons comp, rx;
	struct xsk_umem *umem;
	struct xsk_socket *xsk;
	uint8_t *area;
	size_t area_len;
	uint32_t nframes, n_rx;  /* frames [0, n_rx) receive, [n_rx, nframes) send */
	uint8_t *fst;            /* FST_* per frame */
	uint32_t *rx_free;       /* RX frames waiting for the fill ring */
	uint32_t rx_free_n;
	uint32_t *tx_free;       /* TX frames we hold */
	uint32_t tx_free_n;
	uint32_t tx_inflight;
	uint32_t max_frame;
	uint32_t queue;
	int ifindex;
	bool native, zerocopy, kick_pending;
	/* type counters (owner writes, reactor 0 reads for JSON) */
	uint64_t rx_bad_desc, comp_bad_addr, ring_anomalies, tx_kicks, tx_kick_again;
	uint64_t fill_wakeups;
};

__attribute__((format(printf, 2, 0))) static int xdp_log(enum libxdp_print_level level,
							 const char *fmt, va_list ap)
{
	char buf[256];
	size_t n;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	if (n && buf[n - 1] == '\n')
		buf[n - 1] = 0;
	if (level == LIBXDP_WARN)
		ZOC_INFO("libxdp: %s", buf);
	else
		ZOC_DEBUG("libxdp: %s", buf);
	return 0;
}

__attribute__((format(printf, 2, 0))) static int bpf_log(enum libbpf_print_level level,
							 const char *fmt, va_list ap)
{
	return xdp_log(level == LIBBPF_WARN ? LIBXDP_WARN : LIBXDP_DEBUG, fmt, ap);
}

static uint64_t frame_addr(uint32_t i)
{
	return (uint64_t)i << FRAME_SHIFT;
}

static void xdp_free(struct zoc_uplink *u)
{
	struct xdp_uplink *t = (struct xdp_uplink *)u;

	free(t->fst);
	free(t->rx_free);
	free(t->tx_free);
	free(t);
}

static void xdp_release(struct xdp_uplink *t)
{
	if (t->xsk)
		xsk_socket__delete(t->xsk);
	t->xsk = NULL;
	if (t->umem)
		xsk_umem__delete(t->umem);
	t->umem = NULL;
	if (t->area)
		munmap(t->area, t->area_len);
	t->area = NULL;
	t->u.fd = -1;
}

/* Gives every RX frame we hold to the kernel (as many as the fill ring
 * takes); the count given. */
static uint32_t fill_refill(struct xdp_uplink *t)
{
	uint32_t idx = 0, n = t->rx_free_n, got;

	if (!n)
		return 0;
	got = xsk_ring_prod__reserve(&t->fill, n, &idx);
	if (!got) {
		/* all or nothing: try what is free */
		n = xsk_prod_nb_free(&t->fill, n);
		if (!n)
			return 0;
		got = xsk_ring_prod__reserve(&t->fill, n, &idx);
		if (!got)
			return 0;
	}
	for (uint32_t k = 0; k < got; k++) {
		uint32_t f = t->rx_free[--t->rx_free_n];

		t->fst[f] = FST_FILL;
		*xsk_ring_prod__fill_addr(&t->fill, idx + k) = frame_addr(f);
	}
	xsk_ring_prod__submit(&t->fill, got);
	return got;
}

static int try_create(struct xdp_uplink *t, const char *ifname, const struct zoc_uplink_opts *o,
		      bool native)
{
	struct xsk_umem_config uc = {
		.fill_size = t->n_rx,
		.comp_size = t->nframes - t->n_rx,
		.frame_size = FRAME_SIZE,
		.frame_headroom = 0,
		.flags = 0,
	};
	struct xsk_socket_config sc = {
		.rx_size = t->n_rx,
		.tx_size = t->nframes - t->n_rx,
		.xdp_flags = native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE,
		.bind_flags = XDP_USE_NEED_WAKEUP,
	};
	int ret;

	if (o->xdp_copy == ZOC_UPLINK_XDP_COPY_FORCE)
		sc.bind_flags |= XDP_COPY;
	else if (o->xdp_copy == ZOC_UPLINK_XDP_COPY_ZEROCOPY)
		sc.bind_flags |= XDP_ZEROCOPY;
	ret = xsk_umem__create(&t->umem, t->area, t->area_len, &t->fill, &t->comp, &uc);
	if (ret)
		return ret < 0 ? ret : -EINVAL;
	/* A socket closed on this queue a moment ago still holds it until a
	 * kernel work item releases its buffer pool (xp_release_deferred): bind
	 * says EBUSY meanwhile, for milliseconds, longer on a loaded machine.
	 * Retry for up to a second before calling the queue taken. */
	for (int i = 0;; i++) {
		ret = xsk_socket__create(&t->xsk, ifname, t->queue, t->umem, &t->rx, &t->tx, &sc);
		if (ret != -EBUSY || i == 100)
			break;
		usleep(10000);
	}
	if (ret) {
		t->xsk = NULL;
		xsk_umem__delete(t->umem);
		t->umem = NULL;
		return ret < 0 ? ret : -EINVAL;
	}
	t->native = native;
	return 0;
}

static int xdp_open(const char *ifname, const struct zoc_uplink_opts *o, struct zoc_uplink **out)
{
	static bool log_set;
	struct xdp_uplink *t;
	struct xdp_options xo = {0};
	socklen_t xl = sizeof(xo);
	unsigned ifindex = if_nametoindex(ifname);
	uint32_t nframes = o->xdp_frames ? o->xdp_frames : 4096;
	int ret;

	if (!ifindex)
		return -ENODEV;
	if (nframes < 64 || nframes > 65536 || (nframes & (nframes - 1)))
		return -EINVAL;
	if (o->xdp_mode > ZOC_UPLINK_XDP_MODE_SKB || o->xdp_copy > ZOC_UPLINK_XDP_COPY_ZEROCOPY)
		return -EINVAL;
	if (o->mtu + 14 + 8 > FRAME_DATA_MAX) {
		ZOC_WARN("uplink af_xdp %s: MTU %u does not fit a %u-byte UMEM frame (max MTU %u)",
			 ifname, o->mtu, FRAME_SIZE, FRAME_DATA_MAX - 22);
		return -EINVAL;
	}
	if (!log_set) {
		libxdp_set_print(xdp_log);
		libbpf_set_print(bpf_log);
		log_set = true;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->u.fd = -1;
	t->ifindex = (int)ifindex;
	t->queue = o->xdp_queue;
	t->max_frame = o->mtu + 14 + 8;
	t->nframes = nframes;
	t->n_rx = nframes / 2;
	t->fst = calloc(nframes, 1);
	t->rx_free = calloc(t->n_rx, sizeof(uint32_t));
	t->tx_free = calloc(nframes - t->n_rx, sizeof(uint32_t));
	if (!t->fst || !t->rx_free || !t->tx_free) {
		xdp_free(&t->u);
		return -ENOMEM;
	}
	t->area_len = (size_t)nframes * FRAME_SIZE;
	t->area = mmap(NULL, t->area_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (t->area == MAP_FAILED) {
		t->area = NULL;
		xdp_free(&t->u);
		return -ENOMEM;
	}
	ret = -EOPNOTSUPP;
	if (o->xdp_mode != ZOC_UPLINK_XDP_MODE_SKB) {
		ret = try_create(t, ifname, o, true);
		if (ret && o->xdp_mode == ZOC_UPLINK_XDP_MODE_AUTO)
			ZOC_INFO("uplink af_xdp %s: native XDP mode failed (%s): trying generic "
				 "(SKB) mode",
				 ifname, strerror(-ret));
	}
	if (ret && o->xdp_mode != ZOC_UPLINK_XDP_MODE_NATIVE)
		ret = try_create(t, ifname, o, false);
	if (ret) {
		ZOC_WARN("uplink af_xdp %s queue %u: %s", ifname, t->queue, strerror(-ret));
		xdp_release(t);
		xdp_free(&t->u);
		/* EPERM/EACCES: no CAP_NET_ADMIN/CAP_BPF; EOPNOTSUPP/EINVAL:
		 * no AF_XDP or queue id out of range; EBUSY: queue taken. */
		return ret;
	}
	t->u.fd = xsk_socket__fd(t->xsk);
	if (getsockopt(t->u.fd, SOL_XDP, XDP_OPTIONS, &xo, &xl) == 0)
		t->zerocopy = xo.flags & XDP_OPTIONS_ZEROCOPY;
	for (uint32_t i = 0; i < t->n_rx; i++) {
		t->fst[i] = FST_OURS;
		t->rx_free[t->rx_free_n++] = t->n_rx - 1 - i;
	}
	for (uint32_t i = nframes; i > t->n_rx; i--)
		t->tx_free[t->tx_free_n++] = i - 1;
	fill_refill(t);
	ZOC_INFO("uplink af_xdp %s queue %u: %s mode, %s, %u frames of %u B", ifname, t->queue,
		 t->native ? "native" : "generic (SKB)", t->zerocopy ? "zero copy" : "copy",
		 nframes, FRAME_SIZE);
	*out = &t->u;
	return 0;
}

static void anomaly(struct xdp_uplink *t, const char *what)
{
	t->ring_anomalies++;
	ZOC_WARN_RL("uplink af_xdp %s: %s", t->u.ifname, what);
}

/* Entries the kernel produced on a consumer ring (checked: never more than
 * the ring holds), at most max; *idx = the first. */
static uint32_t cons_peek(struct xdp_uplink *t, struct xsk_ring_cons *r, uint32_t max,
			  uint32_t *idx)
{
	uint32_t prod = __atomic_load_n(r->producer, __ATOMIC_ACQUIRE);
	uint32_t avail = prod - r->cached_cons;

	if (avail > r->size) {
		anomaly(t, "ring producer index beyond the ring: ignored");
		return 0;
	}
	if (avail > max)
		avail = max;
	*idx = r->cached_cons;
	r->cached_cons += avail;
	return avail;
}

static void cons_release(struct xsk_ring_cons *r)
{
	__atomic_store_n(r->consumer, r->cached_cons, __ATOMIC_RELEASE);
}

/* Takes back TX frames the kernel completed. */
static void comp_reap(struct xdp_uplink *t)
{
	uint32_t idx, n = cons_peek(t, &t->comp, t->nframes, &idx);

	for (uint32_t k = 0; k < n; k++) {
		uint64_t a = *xsk_ring_cons__comp_addr(&t->comp, idx + k);
		uint64_t f = a >> FRAME_SHIFT;

		if (a >= t->area_len || (a & (FRAME_SIZE - 1)) || f < t->n_rx ||
		    t->fst[f] != FST_TX) {
			t->comp_bad_addr++;
			ZOC_UPLINK_INC(&t->u, tx_errors, 1);
			ZOC_WARN_RL("uplink af_xdp %s: completion of address 0x%llx we did not send: "
				    "ignored",
				    t->u.ifname, (unsigned long long)a);
			continue;
		}
		t->fst[f] = FST_OURS;
		t->tx_free[t->tx_free_n++] = (uint32_t)f;
		t->tx_inflight--;
	}
	if (n)
		cons_release(&t->comp);
}

static void tx_kick(struct xdp_uplink *t)
{
	t->kick_pending = false;
	if (!xsk_ring_prod__needs_wakeup(&t->tx))
		return;
	t->tx_kicks++;
	if (sendto(t->u.fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0)
		return;
	switch (errno) {
	case EAGAIN:
	case EBUSY:
	case ENOBUFS:
	case EINTR:
		/* copy mode sends a budget of frames per call: more to go */
		t->tx_kick_again++;
		t->kick_pending = true;
		break;
	case ENETDOWN:
	case ENXIO:
		/* frames wait in the ring; retried from the poller */
		t->kick_pending = true;
		ZOC_WARN_RL("uplink af_xdp %s: interface down: TX waits", t->u.ifname);
		break;
	default:
		ZOC_UPLINK_INC(&t->u, tx_errors, 1);
		ZOC_WARN_RL("uplink af_xdp %s: sendto: %s", t->u.ifname, strerror(errno));
		break;
	}
}

/* One RX descriptor: a packet, or NULL (counted). The frame is ours again
 * unless the descriptor was bad. */
static struct zoc_pkt *take_desc(struct xdp_uplink *t, const struct xdp_desc *d,
				 struct zoc_pktpool *pool)
{
	struct zoc_uplink *u = &t->u;
	uint64_t a = d->addr, f = a >> FRAME_SHIFT, off = a & (FRAME_SIZE - 1);
	uint32_t len = d->len;
	struct zoc_pkt *p;

	if (a >= t->area_len || f >= t->n_rx ||
	    (t->fst[f] != FST_FILL && t->fst[f] != FST_SUSPECT)) {
		t->rx_bad_desc++;
		ZOC_UPLINK_INC(u, rx_errors, 1);
		ZOC_WARN_RL("uplink af_xdp %s: RX descriptor address 0x%llx is not a frame the "
			    "kernel holds: ignored",
			    u->ifname, (unsigned long long)a);
		return NULL;
	}
	if (len > FRAME_SIZE - off || (d->options & XDP_PKT_CONTD)) {
		t->fst[f] = FST_SUSPECT;
		t->rx_bad_desc++;
		ZOC_UPLINK_INC(u, rx_errors, 1);
		ZOC_WARN_RL("uplink af_xdp %s: RX descriptor length %u at offset %llu crosses the "
			    "frame (or multi-buffer): dropped",
			    u->ifname, len, (unsigned long long)off);
		return NULL;
	}
	t->fst[f] = FST_OURS;
	t->rx_free[t->rx_free_n++] = (uint32_t)f;
	if (len > t->max_frame) {
		ZOC_UPLINK_INC(u, rx_oversize, 1);
		zoc_port_count_drop(u->port, ZOC_DROP_MTU, 1);
		return NULL;
	}
	p = zoc_pkt_alloc(pool, len);
	if (!p) {
		ZOC_UPLINK_INC(u, rx_nobuf, 1);
		zoc_port_count_drop(u->port, ZOC_DROP_NO_BUFFER, 1);
		return NULL;
	}
	memcpy(zoc_pkt_data(p), t->area + a, len);
	ZOC_UPLINK_INC(u, rx_frames, 1);
	ZOC_UPLINK_INC(u, rx_bytes, len);
	return p;
}

static int xdp_poll(struct zoc_uplink *u)
{
	struct xdp_uplink *t = (struct xdp_uplink *)u;
	struct zoc_pktpool *pool = zoc_pktpool_local();
	struct zoc_pkt *pkts[ZOC_PKT_BURST];
	uint32_t idx, n, got = 0, filled;

	if (!t->xsk)
		return 0;
	if (t->kick_pending)
		tx_kick(t);
	if (t->tx_inflight)
		comp_reap(t);
	if (!pool)
		return 0;
	n = cons_peek(t, &t->rx, ZOC_PKT_BURST, &idx);
	for (uint32_t k = 0; k < n; k++) {
		pkts[got] = take_desc(t, xsk_ring_cons__rx_desc(&t->rx, idx + k), pool);
		if (pkts[got])
			got++;
	}
	if (n)
		cons_release(&t->rx);
	filled = fill_refill(t);
	if (filled && xsk_ring_prod__needs_wakeup(&t->fill)) {
		t->fill_wakeups++;
		recvfrom(u->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
	}
	if (got)
		zoc_vswitch_rx_burst(u->sw, u->port, pkts, got);
	return (int)n;
}

static int xdp_pending(struct zoc_uplink *u)
{
	struct xdp_uplink *t = (struct xdp_uplink *)u;

	if (!t->xsk)
		return 0;
	if (t->kick_pending || (t->rx_free_n && xsk_prod_nb_free(&t->fill, 1)))
		return 1;
	return __atomic_load_n(t->rx.producer, __ATOMIC_ACQUIRE) != t->rx.cached_cons;
}

static unsigned xdp_tx_burst(struct zoc_port *port, struct zoc_pkt **pkts, unsigned n)
{
	struct xdp_uplink *t = zoc_port_ctx(port);
	struct zoc_uplink *u = &t->u;
	unsigned full = 0, big = 0, err = 0, sent = 0;
	uint32_t idx = 0, want = 0, got;
	uint64_t bytes = 0;

	if (t->tx_inflight && t->tx_free_n < n)
		comp_reap(t);
	for (unsigned i = 0; i < n; i++) {
		struct zoc_pkt *p = pkts[i];

		if (p->len > t->max_frame || p->len > FRAME_DATA_MAX ||
		    p->gso_type != ZOC_PKT_GSO_NONE) {
			big++;
			pkts[i] = NULL;
			zoc_pkt_free(p);
		} else if (zoc_uplink_csum_complete(p)) {
			err++;
			pkts[i] = NULL;
			zoc_pkt_free(p);
		} else {
			want++;
		}
	}
	if (want > t->tx_free_n)
		want = t->tx_free_n;
	got = want && t->xsk ? xsk_ring_prod__reserve(&t->tx, want, &idx) : 0;
	for (unsigned i = 0; i < n; i++) {
		struct zoc_pkt *p = pkts[i];
		struct xdp_desc *d;
		uint32_t f;

		if (!p)
			continue;
		if (sent == got) {
			full++;
			zoc_pkt_free(p);
			continue;
		}
		f = t->tx_free[--t->tx_free_n];
		t->fst[f] = FST_TX;
		memcpy(t->area + frame_addr(f), zoc_pkt_cdata(p), p->len);
		d = xsk_ring_prod__tx_desc(&t->tx, idx + sent);
		d->addr = frame_addr(f);
		d->len = p->len;
		d->options = 0;
		bytes += p->len;
		sent++;
		zoc_pkt_free(p);
	}
	if (sent) {
		t->tx_inflight += sent;
		xsk_ring_prod__submit(&t->tx, sent);
		tx_kick(t);
		ZOC_UPLINK_INC(u, tx_frames, sent);
		ZOC_UPLINK_INC(u, tx_bytes, bytes);
	}
	if (full) {
		ZOC_UPLINK_INC(u, tx_full, full);
		zoc_port_count_drop(port, ZOC_DROP_RING_FULL, full);
	}
	if (err) {
		ZOC_UPLINK_INC(u, tx_errors, err);
		zoc_port_count_drop(port, ZOC_DROP_INVALID, err);
	}
	if (big) {
		ZOC_UPLINK_INC(u, tx_oversize, big);
		zoc_port_count_drop(port, ZOC_DROP_MTU, big);
	}
	return n;
}

static void xdp_close(struct zoc_uplink *u)
{
	xdp_release((struct xdp_uplink *)u);
}

static const char *attach_mode_name(int ifindex)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, q);

	if (bpf_xdp_query(ifindex, 0, &q))
		return "unknown";
	switch (q.attach_mode) {
	case XDP_ATTACHED_DRV:
		return "native";
	case XDP_ATTACHED_SKB:
		return "skb";
	case XDP_ATTACHED_HW:
		return "hw";
	case XDP_ATTACHED_MULTI:
		return "multi";
	default:
		return "none";
	}
}

static void xdp_info(struct zoc_uplink *u, json_t *obj)
{
	struct xdp_uplink *t = (struct xdp_uplink *)u;
	struct xdp_statistics ks = {0};
	socklen_t len = sizeof(ks);
	json_t *x = json_object(), *k = json_object();

	if (!x || !k) {
		json_decref(x);
		json_decref(k);
		return;
	}
	json_object_set_new(x, "mode", json_string(t->native ? "native" : "skb"));
	json_object_set_new(x, "attached", json_string(attach_mode_name(t->ifindex)));
	json_object_set_new(x, "zerocopy", json_boolean(t->zerocopy));
	json_object_set_new(x, "queue", json_integer(t->queue));
	json_object_set_new(x, "frames", json_integer(t->nframes));
	json_object_set_new(x, "frame_size", json_integer(FRAME_SIZE));
	json_object_set_new(x, "rx_bad_desc",
			    json_integer((json_int_t)__atomic_load_n(&t->rx_bad_desc, __ATOMIC_RELAXED)));
	json_object_set_new(x, "comp_bad_addr",
			    json_integer((json_int_t)__atomic_load_n(&t->comp_bad_addr,
								     __ATOMIC_RELAXED)));
	json_object_set_new(x, "ring_anomalies",
			    json_integer((json_int_t)__atomic_load_n(&t->ring_anomalies,
								     __ATOMIC_RELAXED)));
	json_object_set_new(x, "tx_kicks",
			    json_integer((json_int_t)__atomic_load_n(&t->tx_kicks, __ATOMIC_RELAXED)));
	json_object_set_new(x, "tx_kick_again",
			    json_integer((json_int_t)__atomic_load_n(&t->tx_kick_again,
								     __ATOMIC_RELAXED)));
	json_object_set_new(x, "fill_wakeups",
			    json_integer((json_int_t)__atomic_load_n(&t->fill_wakeups,
								     __ATOMIC_RELAXED)));
	/* The kernel's counters (XDP_STATISTICS; reading does not reset). */
	if (u->fd >= 0 && getsockopt(u->fd, SOL_XDP, XDP_STATISTICS, &ks, &len) == 0) {
		json_object_set_new(k, "rx_dropped", json_integer((json_int_t)ks.rx_dropped));
		json_object_set_new(k, "rx_invalid_descs",
				    json_integer((json_int_t)ks.rx_invalid_descs));
		json_object_set_new(k, "tx_invalid_descs",
				    json_integer((json_int_t)ks.tx_invalid_descs));
		json_object_set_new(k, "rx_ring_full", json_integer((json_int_t)ks.rx_ring_full));
		json_object_set_new(k, "rx_fill_ring_empty_descs",
				    json_integer((json_int_t)ks.rx_fill_ring_empty_descs));
		json_object_set_new(k, "tx_ring_empty_descs",
				    json_integer((json_int_t)ks.tx_ring_empty_descs));
	}
	json_object_set_new(x, "kernel", k);
	json_object_set_new(obj, "xdp", x);
	json_object_set_new(obj, "ifindex", json_integer(t->ifindex));
}

int zoc_uplink_xdp_test_inject(struct zoc_uplink *u, int ring, uint64_t addr, uint32_t len)
{
	struct xdp_uplink *t = (struct xdp_uplink *)u;
	struct xsk_ring_cons *r;
	uint32_t prod;

	if (!u || u->type != &zoc_uplink_af_xdp || !t->xsk || ring < 0 || ring > 2)
		return -EINVAL;
	r = ring == 1 ? &t->comp : &t->rx;
	/* Quiet ring: consumed up to the producer. */
	prod = __atomic_load_n(r->producer, __ATOMIC_ACQUIRE);
	if (prod != r->cached_cons)
		return -EBUSY;
	if (ring == 0) {
		struct xdp_desc *d = (struct xdp_desc *)r->ring + (prod & r->mask);

		d->addr = addr;
		d->len = len;
		d->options = 0;
		__atomic_store_n(r->producer, prod + 1, __ATOMIC_RELEASE);
		xdp_poll(u);
	} else if (ring == 1) {
		((uint64_t *)r->ring)[prod & r->mask] = addr;
		__atomic_store_n(r->producer, prod + 1, __ATOMIC_RELEASE);
		comp_reap(t);
	} else {
		/* a producer index more than a ring ahead */
		__atomic_store_n(r->producer, prod + r->size + 1 + len, __ATOMIC_RELEASE);
		xdp_poll(u);
	}
	/* Undo, so that the kernel's own next entry lands where we look. */
	__atomic_store_n(r->producer, prod, __ATOMIC_RELEASE);
	r->cached_cons = prod;
	__atomic_store_n(r->consumer, prod, __ATOMIC_RELEASE);
	return 0;
}

const struct zoc_uplink_type zoc_uplink_af_xdp = {
	.name = "af_xdp",
	.open = xdp_open,
	.tx_burst = xdp_tx_burst,
	.poll = xdp_poll,
	.pending = xdp_pending,
	.close = xdp_close,
	.free = xdp_free,
	.info = xdp_info,
};
