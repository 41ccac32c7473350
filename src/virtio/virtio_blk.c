/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk device model. Control calls (virtio_dev ops) run on reactor 0;
 * each running queue lives on one reactor, which alone touches its ring,
 * its request pool, its bdev channel and its statistics.
 */
#include "virtio/virtio_blk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "blk/bdev.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/reactor.h"
#include "core/stats.h"
#include "core/util.h"
#include "virtio/virtio.h"
#include "virtio/virtqueue.h"

#define VBLK_BATCH 32
#define VBLK_SECTOR 512u
#define VBLK_MAX_DISCARD_SECTORS (1u << 22) /* 2 GiB per request */
#define VBLK_MAX_WZ_SECTORS (1u << 22)

struct vblk_queue;

struct vblk_req {
	struct vblk_queue *q;
	struct zoc_bdev_io io;
	uint8_t *status;
	uint32_t written;  /* bytes reported in the used element */
	uint32_t type;
	uint64_t start_ns;
	struct zoc_vq_elem elem; /* last: large */
};

struct vblk_queue {
	struct zoc_vblk *vb;
	uint16_t idx;
	/* control plane (reactor 0) view */
	bool running;
	bool stop_pending; /* stop sent, done() not yet called */
	struct zoc_reactor *reactor;
	struct zoc_pool *pool;
	/* owner reactor state */
	struct zoc_vq *vq;
	int kickfd;
	bool kick_registered;
	struct zoc_poller *poller;
	struct zoc_poller *watchdog; /* lost-interrupt rescue, VBLK_WATCHDOG_US */
	struct zoc_bdev_ch *ch;
	uint32_t inflight;
	bool need_notify;
	bool stopping;
	bool broken_logged;
	uint64_t notifies; /* signals sent to the driver (call eventfd / interrupt) */
	uint64_t rescued;  /* of which sent by the lost-interrupt watchdog */
	/* Kick coalescing (interrupt mode, split ring with EVENT_IDX), see
	 * vblk_kick_after(). */
	uint16_t kick_seen; /* requests found at a wake-up: decayed maximum */
	uint16_t kick_n;    /* the sleep in progress asked for a kick after this many, 0: none */
	uint16_t kick_after; /* what the last arm asked for (device_stats) */
	uint64_t kick_t0;   /* when that sleep began */
	uint64_t kick_hold_until; /* a kick per request until then (a wait ended short), 0: none */
	uint64_t kick_timeouts;
	uint32_t *base_out;
	zoc_virtio_done_fn done;
	void *done_arg;
	struct zoc_io_stats stats;
} __attribute__((aligned(ZOC_CACHELINE)));

struct zoc_vblk {
	struct zoc_virtio_dev vdev; /* first: recovered by zoc_vblk_from_virtio */
	char name[64];
	struct zoc_bdev *bdev;
	uint16_t num_queues;
	uint64_t features;   /* negotiated */
	unsigned reactor_base;
	struct virtio_blk_config config;
	struct vblk_queue queues[];
};

static const struct zoc_virtio_dev_ops vblk_ops;

static struct zoc_vblk *to_vblk(struct zoc_virtio_dev *dev)
{
	return (struct zoc_vblk *)dev;
}

struct zoc_vblk *zoc_vblk_from_virtio(struct zoc_virtio_dev *dev)
{
	return dev && dev->ops == &vblk_ops ? to_vblk(dev) : NULL;
}

struct zoc_virtio_dev *zoc_vblk_to_virtio(struct zoc_vblk *vb)
{
	return &vb->vdev;
}

const char *zoc_vblk_bdev_name(const struct zoc_vblk *vb)
{
	return vb->bdev->name;
}

uint16_t zoc_vblk_num_queues(const struct zoc_vblk *vb)
{
	return vb->num_queues;
}

/* ------------------------------------------------------------ iov helpers */

/* Copies up to len bytes from the front of iov[0..n) into buf. */
static size_t iov_gather(const struct iovec *iov, unsigned n, void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t k = ZOC_MIN(iov[i].iov_len, len - done);

		memcpy((uint8_t *)buf + done, iov[i].iov_base, k);
		done += k;
	}
	return done;
}

static size_t iov_scatter(const struct iovec *iov, unsigned n, const void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t k = ZOC_MIN(iov[i].iov_len, len - done);

		memcpy(iov[i].iov_base, (const uint8_t *)buf + done, k);
		done += k;
	}
	return done;
}

/* Drops `skip` bytes from the front of the iovec array, in place. */
static void iov_skip_front(struct iovec **iov, unsigned *n, size_t skip)
{
	while (*n && skip) {
		if ((*iov)->iov_len > skip) {
			(*iov)->iov_base = (uint8_t *)(*iov)->iov_base + skip;
			(*iov)->iov_len -= skip;
			return;
		}
		skip -= (*iov)->iov_len;
		(*iov)++;
		(*n)--;
	}
	/* drop empty leading entries */
	while (*n && (*iov)->iov_len == 0) {
		(*iov)++;
		(*n)--;
	}
}

/* Drops `cut` bytes from the back of iov[0..*n) in place. */
static void iov_trim_back(struct iovec *iov, unsigned *n, size_t cut)
{
	while (*n && cut) {
		struct iovec *last = &iov[*n - 1];

		if (last->iov_len > cut) {
			last->iov_len -= cut;
			return;
		}
		cut -= last->iov_len;
		(*n)--;
	}
	while (*n && iov[*n - 1].iov_len == 0)
		(*n)--;
}

/* -------------------------------------------------------------- data path */

static void queue_finish_stop(struct vblk_queue *q);

/* Signals the driver for everything pushed since the last signal. */
static void vblk_flush_notify(struct vblk_queue *q)
{
	if (q->need_notify) {
		q->need_notify = false;
		q->notifies += (uint64_t)zoc_vq_notify(q->vq);
	}
}

static void vblk_complete(struct vblk_req *r, uint8_t status)
{
	struct vblk_queue *q = r->q;
	struct zoc_io_stats *s = &q->stats;

	if (r->status) {
		*r->status = status;
		zoc_vq_push(q->vq, &r->elem, r->written + 1);
	} else {
		zoc_vq_push(q->vq, &r->elem, 0);
	}
	if (status != VIRTIO_BLK_S_OK) {
		if (status == VIRTIO_BLK_S_UNSUPP)
			s->unsupported++;
		else
			s->errors++;
	} else {
		switch (r->type) {
		case VIRTIO_BLK_T_IN:
			s->read_ops++;
			s->read_bytes += r->io.len;
			break;
		case VIRTIO_BLK_T_OUT:
			s->write_ops++;
			s->write_bytes += r->io.len;
			break;
		case VIRTIO_BLK_T_FLUSH:
			s->flush_ops++;
			break;
		case VIRTIO_BLK_T_DISCARD:
			s->discard_ops++;
			break;
		case VIRTIO_BLK_T_WRITE_ZEROES:
			s->write_zeroes_ops++;
			break;
		default:
			s->other_ops++;
			break;
		}
	}
	uint64_t lat = zoc_now_ns() - r->start_ns;

	zoc_stats_record_latency(s, lat);
	q->inflight--;
	zoc_pool_put(q->pool, r);
	q->need_notify = true;
	if (ZOC_UNLIKELY(q->stopping)) {
		vblk_flush_notify(q);
		if (q->inflight == 0)
			queue_finish_stop(q);
	}
}

static void vblk_io_done(struct zoc_bdev_io *io, int status)
{
	struct vblk_req *r = io->cb_arg;

	if (status)
		ZOC_WARN_RL("%s: queue %u: back-end I/O failed: %s", r->q->vb->name, r->q->idx,
			    strerror(-status));
	vblk_complete(r, status ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
}

static void vblk_submit(struct vblk_req *r, enum zoc_bdev_op op, uint64_t off, uint64_t len,
			struct iovec *iov, unsigned iovcnt)
{
	struct vblk_queue *q = r->q;
	int rc;

	r->io.op = op;
	r->io.offset = off;
	r->io.len = len;
	r->io.iov = iov;
	r->io.iovcnt = (int)iovcnt;
	r->io.cb = vblk_io_done;
	r->io.cb_arg = r;
	rc = zoc_bdev_submit(q->ch, &r->io);
	if (rc) {
		ZOC_WARN_RL("%s: queue %u: request refused by the back end: %s", q->vb->name,
			    q->idx, strerror(-rc));
		vblk_complete(r, rc == -ENOTSUP ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR);
	}
}

/* Checks a [sector, sector + bytes) range against the device. */
static bool range_ok(const struct zoc_vblk *vb, uint64_t sector, uint64_t bytes)
{
	uint64_t bs = vb->bdev->block_size;
	uint64_t cap = zoc_bdev_size(vb->bdev);

	if (sector > cap / VBLK_SECTOR)
		return false;
	if ((sector * VBLK_SECTOR) % bs || bytes % bs)
		return false;
	return !zoc_range_bad(sector * VBLK_SECTOR, bytes, cap);
}

static void vblk_discard_wz(struct vblk_req *r, struct iovec *out, unsigned out_n,
			    size_t out_len)
{
	struct zoc_vblk *vb = r->q->vb;
	struct virtio_blk_discard_write_zeroes seg;
	bool discard = r->type == VIRTIO_BLK_T_DISCARD;
	uint64_t feat = discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES;
	uint32_t max = discard ? VBLK_MAX_DISCARD_SECTORS : VBLK_MAX_WZ_SECTORS;

	if (!(vb->features & ZOC_BIT(feat))) {
		vblk_complete(r, VIRTIO_BLK_S_UNSUPP);
		return;
	}
	/* One segment (max_*_seg = 1). */
	if (out_len != sizeof(seg)) {
		ZOC_WARN_RL("%s: %s with %zu bytes of segments (want %zu)", vb->name,
			    discard ? "discard" : "write-zeroes", out_len, sizeof(seg));
		r->q->stats.invalid++;
		vblk_complete(r, VIRTIO_BLK_S_IOERR);
		return;
	}
	iov_gather(out, out_n, &seg, sizeof(seg));
	if ((seg.flags & ~1u) || (discard && (seg.flags & 1u))) {
		vblk_complete(r, VIRTIO_BLK_S_UNSUPP);
		return;
	}
	if (seg.num_sectors == 0 || seg.num_sectors > max ||
	    !range_ok(vb, seg.sector, (uint64_t)seg.num_sectors * VBLK_SECTOR)) {
		r->q->stats.invalid++;
		vblk_complete(r, VIRTIO_BLK_S_IOERR);
		return;
	}
	vblk_submit(r, discard ? ZOC_BDEV_DISCARD : ZOC_BDEV_WRITE_ZEROES,
		    seg.sector * VBLK_SECTOR, (uint64_t)seg.num_sectors * VBLK_SECTOR, NULL, 0);
}

/* Parses one popped request and starts it. fault: a buffer was unmapped. */
static void vblk_handle(struct vblk_queue *q, struct vblk_req *r, bool fault)
{
	struct zoc_vblk *vb = q->vb;
	struct zoc_vq_elem *e = &r->elem;
	struct virtio_blk_outhdr hdr;
	struct iovec *out = e->iov, *in = e->iov + e->out_num;
	unsigned out_n = e->out_num, in_n = e->in_num;
	size_t out_len = e->out_len, in_len = e->in_len;
	int last;

	r->status = NULL;
	r->written = 0;
	r->type = UINT32_MAX;
	r->io.len = 0; /* vblk_complete() counts it; the pool slot keeps the last one's */
	/* The status byte is the last device-writable byte. */
	for (last = (int)in_n - 1; last >= 0 && in[last].iov_len == 0; last--)
		;
	if (last < 0 || !in[last].iov_base || e->in_truncated) {
		ZOC_WARN_RL("%s: queue %u: request %u has no status byte; dropped", vb->name,
			    q->idx, e->id);
		q->stats.invalid++;
		vblk_complete(r, VIRTIO_BLK_S_IOERR);
		return;
	}
	r->status = (uint8_t *)in[last].iov_base + in[last].iov_len - 1;
	in_n = (unsigned)last + 1;
	iov_trim_back(in, &in_n, 1);
	in_len -= 1;
	if (fault || out_len < sizeof(hdr)) {
		ZOC_WARN_RL("%s: queue %u: request %u %s", vb->name, q->idx, e->id,
			    fault ? "points outside guest memory" : "has a short header");
		q->stats.invalid++;
		vblk_complete(r, VIRTIO_BLK_S_IOERR);
		return;
	}
	iov_gather(out, out_n, &hdr, sizeof(hdr));
	iov_skip_front(&out, &out_n, sizeof(hdr));
	out_len -= sizeof(hdr);
	r->type = hdr.type;

	switch (hdr.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT: {
		bool rd = hdr.type == VIRTIO_BLK_T_IN;
		size_t len = rd ? in_len : out_len;

		if (!rd && vb->bdev->read_only) {
			vblk_complete(r, VIRTIO_BLK_S_IOERR);
			return;
		}
		if (len % VBLK_SECTOR || !range_ok(vb, hdr.sector, len) ||
		    (rd ? in_n : out_n) > vb->bdev->max_iov) {
			ZOC_WARN_RL("%s: queue %u: %s of %zu bytes at sector %llu is out of range "
				    "or misaligned",
				    vb->name, q->idx, rd ? "read" : "write", len,
				    (unsigned long long)hdr.sector);
			q->stats.invalid++;
			vblk_complete(r, VIRTIO_BLK_S_IOERR);
			return;
		}
		if (len == 0) {
			vblk_complete(r, VIRTIO_BLK_S_OK);
			return;
		}
		if (rd)
			r->written = (uint32_t)len;
		vblk_submit(r, rd ? ZOC_BDEV_READ : ZOC_BDEV_WRITE, hdr.sector * VBLK_SECTOR, len,
			    rd ? in : out, rd ? in_n : out_n);
		return;
	}
	case VIRTIO_BLK_T_FLUSH:
		if (!vb->bdev->supports_flush) {
			vblk_complete(r, VIRTIO_BLK_S_OK); /* nothing is cached */
			return;
		}
		vblk_submit(r, ZOC_BDEV_FLUSH, 0, 0, NULL, 0);
		return;
	case VIRTIO_BLK_T_GET_ID: {
		char id[VIRTIO_BLK_ID_BYTES] = {0};

		memcpy(id, vb->name, ZOC_MIN(strlen(vb->name), sizeof(id)));
		r->written = (uint32_t)iov_scatter(in, in_n, id, ZOC_MIN(in_len, sizeof(id)));
		vblk_complete(r, VIRTIO_BLK_S_OK);
		return;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		vblk_discard_wz(r, out, out_n, out_len);
		return;
	default:
		vblk_complete(r, VIRTIO_BLK_S_UNSUPP);
		return;
	}
}

static int vblk_poll(void *arg)
{
	struct vblk_queue *q = arg;
	uint64_t now = 0;
	int n = 0;

	vblk_flush_notify(q);
	/* The common idle case: one load, no request slot taken and returned. */
	if (!zoc_vq_has_work(q->vq))
		return 0;
	while (n < VBLK_BATCH) {
		struct vblk_req *r = zoc_pool_get(q->pool);
		int rc;

		if (ZOC_UNLIKELY(!r))
			break; /* every slot busy: the ring holds the rest */
		rc = zoc_vq_pop(q->vq, &r->elem);
		if (rc == 0 || rc == -EIO) {
			zoc_pool_put(q->pool, r);
			if (rc == -EIO && !q->broken_logged) {
				q->broken_logged = true;
				ZOC_WARN("%s: queue %u is broken (malformed ring from the driver); "
					 "it stays stopped until the device is reset",
					 q->vb->name, q->idx);
			}
			break;
		}
		if (!now)
			now = zoc_now_ns();
		r->q = q;
		r->start_ns = now;
		q->inflight++;
		vblk_handle(q, r, rc == -EFAULT);
		n++;
	}
	return n;
}

/*
 * Kick coalescing. A sleeping reactor is woken by the driver's kick, and a
 * kick into a sleeping reactor is dear on both sides in these VMs (a
 * cross-CPU wake-up: 5-30 us of CPU each). With EVENT_IDX (split rings) the
 * device chooses when the driver kicks: avail_event n - 1 past the last
 * request taken asks for one kick per n requests. A driver that keeps a
 * queue (wake-ups find 8 or more requests) is asked for a kick after a
 * quarter of the most a recent wake-up found (at most VBLK_KICK_MAX): the
 * wake-up's latency still brings the rest, and the driver keeps enough in
 * hand not to run dry while zocd sleeps (asking for half its depth did: the
 * driver submitted all, then waited on an interrupt too). At queue depth 32
 * on a null back end here: 0.5-0.6 us of CPU per I/O and 500-590K IOPS,
 * against 0.68-0.97 us and 340-490K with a kick per request. The sleep is
 * bounded (VBLK_KICK_WAIT_NS) in case the driver stops short; bounds of
 * 0.2-2 ms cost 0.5-1 us of CPU per I/O here (a near timer armed and
 * cancelled per sleep), 5 ms and more nothing measurable. A wait that ends
 * at the bound with fewer requests says the driver is shallower (or stopped
 * with a few in flight, as at the end of a run): back to a kick per request
 * for VBLK_KICK_HOLD_NS, so a driver whose depth keeps changing stalls at
 * most once a second. Only above a back end with nothing in flight (a
 * disk's completion wakes the reactor anyway, and holding requests back
 * would idle it).
 */
#define VBLK_KICK_MIN_SEEN 8 /* a quarter of it: at least 2 */
#define VBLK_KICK_MAX 8
#define VBLK_KICK_WAIT_NS 5000000ull
#define VBLK_KICK_HOLD_NS 1000000000ull

static unsigned vblk_kick_after(struct vblk_queue *q)
{
	if (q->inflight || !zoc_vq_can_batch(q->vq) || q->kick_seen < VBLK_KICK_MIN_SEEN)
		return 1;
	if (q->kick_hold_until) { /* reads the clock only while held */
		if (zoc_now_ns() < q->kick_hold_until)
			return 1;
		q->kick_hold_until = 0;
	}
	return ZOC_MIN(q->kick_seen / 4u, (unsigned)VBLK_KICK_MAX);
}

static int vblk_arm(void *arg)
{
	struct vblk_queue *q = arg;
	unsigned n;
	int rc;

	vblk_flush_notify(q);
	if (zoc_vq_broken(q->vq))
		return 0;
	n = vblk_kick_after(q);
	__atomic_store_n(&q->kick_after, (uint16_t)n, __ATOMIC_RELAXED);
	rc = zoc_vq_enable_notify_after(q->vq, (uint16_t)n);
	if (!rc && n > 1) {
		zoc_reactor_sleep_at_most(VBLK_KICK_WAIT_NS);
		q->kick_n = (uint16_t)n;
		q->kick_t0 = zoc_now_ns();
	}
	return rc;
}

static void vblk_disarm(void *arg)
{
	struct vblk_queue *q = arg;
	unsigned c = zoc_vq_avail_count(q->vq);

	/* Fewer than asked for by the bound (not woken early by a timer, a
	 * message or another queue): a shallower driver. */
	if (q->kick_n && c < q->kick_n) {
		uint64_t now = zoc_now_ns();

		if (now - q->kick_t0 >= VBLK_KICK_WAIT_NS) {
			q->kick_timeouts++;
			q->kick_hold_until = now + VBLK_KICK_HOLD_NS;
			q->kick_seen = (uint16_t)c;
		}
	}
	q->kick_n = 0;
	if (c)
		q->kick_seen = (uint16_t)ZOC_MAX(c, q->kick_seen - q->kick_seen / 8u);
	zoc_vq_disable_notify(q->vq);
}

/* Kick fds are edge-triggered: every write by the driver is an event, so
 * the counter need not be read back (one system call less per wake-up);
 * waking the reactor is all a kick has to do, the poller does the work. */
static void vblk_kick(void *arg, uint32_t events)
{
}

/* How often an idle queue checks for a driver waiting on an interrupt that
 * was suppressed (zoc_vq_watchdog()). */
#define VBLK_WATCHDOG_US 100000

static int vblk_watchdog(void *arg)
{
	struct vblk_queue *q = arg;

	if (q->vq && !q->stopping && zoc_vq_watchdog_log(q->vq, q->vb->name, q->idx)) {
		q->notifies++;
		q->rescued++;
	}
	return 0; /* not work: the reactor's idle accounting is unchanged */
}

static const struct zoc_poller_ops vblk_watchdog_ops = {.poll = vblk_watchdog};

static const struct zoc_poller_ops vblk_poller_ops = {
	.poll = vblk_poll,
	.arm = vblk_arm,
	.disarm = vblk_disarm,
};

/* ------------------------------------------------------- queue life cycle */

static void queue_start_on_owner(void *arg)
{
	struct vblk_queue *q = arg;
	struct zoc_reactor *r = zoc_reactor_current();
	char name[32];

	q->ch = zoc_bdev_get_channel(q->vb->bdev, r);
	snprintf(name, sizeof(name), "vblk-%u", q->idx);
	q->poller = zoc_poller_register(r, &vblk_poller_ops, q, 0, name);
	q->watchdog = zoc_poller_register(r, &vblk_watchdog_ops, q, VBLK_WATCHDOG_US, name);
	if (!q->watchdog) /* a safety net: the queue serves without it */
		ZOC_WARN("%s: queue %u: no lost-interrupt watchdog (no memory)", q->vb->name,
			 q->idx);
	if (!q->ch || !q->poller) {
		/* Cannot serve: leave the queue idle, say so. */
		ZOC_ERR("%s: queue %u cannot start on reactor %u (no memory / channel)",
			q->vb->name, q->idx, zoc_reactor_index(r));
		return;
	}
	zoc_vq_disable_notify(q->vq);
	/* A crash between a completion and its interrupt would leave the
	 * driver waiting for ever: after a reconnect, signal once. */
	if (zoc_vq_restored(q->vq))
		zoc_vq_signal(q->vq);
	if (q->kickfd >= 0 && zoc_reactor_interrupt_mode())
		q->kick_registered = zoc_reactor_add_fd(r, q->kickfd, EPOLLIN | EPOLLET, vblk_kick, q) == 0;
}

static void queue_stopped_on_control(void *arg)
{
	struct vblk_queue *q = arg;
	zoc_virtio_done_fn done = q->done;
	void *done_arg = q->done_arg;

	zoc_pool_destroy(q->pool);
	q->pool = NULL;
	q->done = NULL;
	q->stop_pending = false;
	ZOC_INFO("%s: queue %u stopped", q->vb->name, q->idx);
	if (done)
		done(done_arg);
}

static void queue_finish_stop(struct vblk_queue *q)
{
	q->stopping = false;
	if (q->base_out)
		*q->base_out = zoc_vq_get_base(q->vq);
	zoc_vq_notify(q->vq);
	zoc_vq_destroy(q->vq);
	q->vq = NULL;
	if (q->ch)
		zoc_bdev_put_channel(q->ch);
	q->ch = NULL;
	zoc_reactor_send_msg(zoc_reactor_get(0), queue_stopped_on_control, q);
}

static void queue_stop_on_owner(void *arg)
{
	struct vblk_queue *q = arg;
	struct zoc_reactor *r = zoc_reactor_current();

	if (q->poller)
		zoc_poller_unregister(q->poller);
	if (q->watchdog)
		zoc_poller_unregister(q->watchdog);
	q->poller = q->watchdog = NULL;
	if (q->kick_registered)
		zoc_reactor_del_fd(r, q->kickfd);
	q->kick_registered = false;
	if (q->inflight == 0) {
		queue_finish_stop(q);
		return;
	}
	/* The back end still owns requests: finish when the last completes. */
	q->stopping = true;
}

static int vblk_queue_start(struct zoc_virtio_dev *dev, uint16_t qidx, struct zoc_vq *vq,
			    int kickfd)
{
	struct zoc_vblk *vb = to_vblk(dev);
	struct vblk_queue *q;
	unsigned n = zoc_reactor_count();

	if (qidx >= vb->num_queues)
		return -EINVAL;
	q = &vb->queues[qidx];
	if (q->running || q->stop_pending)
		return -EBUSY; /* a stopping queue still owns its pool, vq and channel */
	q->pool = zoc_pool_create("vblk-req", zoc_vq_size(vq), sizeof(struct vblk_req));
	if (!q->pool)
		return -ENOMEM;
	q->reactor = zoc_reactor_get(n ? (vb->reactor_base + qidx) % n : 0);
	q->vq = vq;
	q->kickfd = kickfd;
	q->inflight = 0;
	q->need_notify = false;
	q->kick_seen = 0;
	q->kick_n = 0;
	q->kick_hold_until = 0;
	q->kick_after = 0;
	q->stopping = false;
	q->broken_logged = false;
	q->running = true;
	if (zoc_reactor_send_msg(q->reactor, queue_start_on_owner, q)) {
		zoc_pool_destroy(q->pool);
		q->pool = NULL;
		q->running = false;
		return -ENOMEM;
	}
	return 0;
}

static int vblk_queue_stop(struct zoc_virtio_dev *dev, uint16_t qidx, uint32_t *base_out,
			   zoc_virtio_done_fn done, void *arg)
{
	struct zoc_vblk *vb = to_vblk(dev);
	struct vblk_queue *q;

	if (qidx >= vb->num_queues || !vb->queues[qidx].running)
		return -ENOENT;
	q = &vb->queues[qidx];
	q->running = false;
	q->stop_pending = true;
	q->base_out = base_out;
	q->done = done;
	q->done_arg = arg;
	while (zoc_reactor_send_msg(q->reactor, queue_stop_on_owner, q))
		usleep(1000); /* out of memory for a message: retry, never leak the queue */
	return 0;
}

static bool vblk_queue_running(struct zoc_virtio_dev *dev, uint16_t qidx)
{
	struct zoc_vblk *vb = to_vblk(dev);

	return qidx < vb->num_queues && vb->queues[qidx].running;
}

/* ------------------------------------------------------- features, config */

static uint64_t vblk_get_features(struct zoc_virtio_dev *dev)
{
	struct zoc_vblk *vb = to_vblk(dev);
	uint64_t f = ZOC_BIT(VIRTIO_F_VERSION_1) | ZOC_BIT(VIRTIO_F_RING_INDIRECT_DESC) |
		     ZOC_BIT(VIRTIO_F_RING_EVENT_IDX) | ZOC_BIT(VIRTIO_F_RING_PACKED) |
		     ZOC_BIT(VIRTIO_BLK_F_SEG_MAX) | ZOC_BIT(VIRTIO_BLK_F_BLK_SIZE) |
		     ZOC_BIT(VIRTIO_BLK_F_TOPOLOGY) | ZOC_BIT(VIRTIO_BLK_F_MQ);

	if (vb->bdev->supports_flush)
		f |= ZOC_BIT(VIRTIO_BLK_F_FLUSH);
	if (vb->bdev->supports_discard)
		f |= ZOC_BIT(VIRTIO_BLK_F_DISCARD);
	if (vb->bdev->supports_write_zeroes)
		f |= ZOC_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
	if (vb->bdev->read_only)
		f |= ZOC_BIT(VIRTIO_BLK_F_RO);
	return f;
}

static int vblk_set_features(struct zoc_virtio_dev *dev, uint64_t f)
{
	struct zoc_vblk *vb = to_vblk(dev);

	if (f & ~vblk_get_features(dev))
		return -EINVAL;
	vb->features = f;
	return 0;
}

static int vblk_get_config(struct zoc_virtio_dev *dev, uint8_t *buf, uint32_t off, uint32_t len)
{
	struct zoc_vblk *vb = to_vblk(dev);

	if (zoc_range_bad(off, len, sizeof(vb->config)))
		return -EINVAL;
	memcpy(buf, (const uint8_t *)&vb->config + off, len);
	return 0;
}

static int vblk_set_config(struct zoc_virtio_dev *dev, const uint8_t *buf, uint32_t off,
			   uint32_t len)
{
	return -ENOTSUP; /* writeback toggling (CONFIG_WCE) is not offered */
}

static const struct zoc_virtio_dev_ops vblk_ops = {
	.get_features = vblk_get_features,
	.set_features = vblk_set_features,
	.get_config = vblk_get_config,
	.set_config = vblk_set_config,
	.queue_start = vblk_queue_start,
	.queue_stop = vblk_queue_stop,
	.queue_running = vblk_queue_running,
};

struct zoc_vblk *zoc_vblk_create(const char *name, struct zoc_bdev *bdev, uint16_t num_queues)
{
	static unsigned next_base;
	struct zoc_vblk *vb;
	struct virtio_blk_config *c;
	uint32_t bs_sectors;

	if (!name || !*name || strlen(name) >= sizeof(vb->name) || !bdev || num_queues == 0 ||
	    num_queues > ZOC_VBLK_MAX_QUEUES) {
		errno = EINVAL;
		return NULL;
	}
	if (zoc_bdev_claim(bdev)) {
		errno = EBUSY;
		return NULL;
	}
	vb = aligned_alloc(ZOC_CACHELINE, ZOC_CACHELINE * ((sizeof(*vb) + sizeof(struct vblk_queue) *
									  num_queues + ZOC_CACHELINE - 1) /
								 ZOC_CACHELINE));
	if (!vb) {
		zoc_bdev_release(bdev);
		return NULL;
	}
	memset(vb, 0, sizeof(*vb) + sizeof(struct vblk_queue) * num_queues);
	snprintf(vb->name, sizeof(vb->name), "%s", name);
	vb->bdev = bdev;
	vb->num_queues = num_queues;
	vb->reactor_base = next_base++;
	for (uint16_t i = 0; i < num_queues; i++) {
		vb->queues[i].vb = vb;
		vb->queues[i].idx = i;
		vb->queues[i].kickfd = -1;
	}
	vb->vdev.name = vb->name;
	vb->vdev.device_id = 2;
	vb->vdev.max_queues = num_queues;
	vb->vdev.max_queue_size = ZOC_VBLK_QUEUE_SIZE_MAX;
	vb->vdev.config_size = sizeof(vb->config);
	vb->vdev.ops = &vblk_ops;

	c = &vb->config;
	bs_sectors = bdev->block_size / VBLK_SECTOR;
	c->capacity = zoc_bdev_size(bdev) / VBLK_SECTOR;
	c->seg_max = ZOC_MIN(ZOC_VBLK_SEG_MAX, bdev->max_iov ? bdev->max_iov : ZOC_VBLK_SEG_MAX);
	c->blk_size = bdev->block_size;
	c->topology.physical_block_exp = 0;
	c->topology.min_io_size = 1;
	c->num_queues = num_queues;
	c->max_discard_sectors = VBLK_MAX_DISCARD_SECTORS;
	c->max_discard_seg = 1;
	c->discard_sector_alignment = bs_sectors ? bs_sectors : 1;
	c->max_write_zeroes_sectors = VBLK_MAX_WZ_SECTORS;
	c->max_write_zeroes_seg = 1;
	c->write_zeroes_may_unmap = 1;
	return vb;
}

void zoc_vblk_destroy(struct zoc_vblk *vb)
{
	if (!vb)
		return;
	for (uint16_t i = 0; i < vb->num_queues; i++)
		if (vb->queues[i].running || vb->queues[i].stop_pending)
			ZOC_ERR("%s: destroyed with queue %u %s", vb->name, i,
				vb->queues[i].running ? "running" : "still stopping");
	zoc_bdev_release(vb->bdev);
	free(vb);
}

json_t *zoc_vblk_stats(struct zoc_vblk *vb)
{
	struct zoc_io_stats total = {0};
	json_t *qs = json_array();

	for (uint16_t i = 0; i < vb->num_queues; i++) {
		struct vblk_queue *q = &vb->queues[i];
		struct zoc_io_stats s = {0};
		json_t *o;

		zoc_stats_add(&s, &q->stats);
		zoc_stats_add(&total, &q->stats);
		o = zoc_stats_to_json(&s);
		json_object_set_new(o, "index", json_integer(i));
		json_object_set_new(o, "running", json_boolean(q->running));
		json_object_set_new(o, "reactor",
				    q->reactor ? json_integer(zoc_reactor_index(q->reactor))
					       : json_null());
		json_object_set_new(o, "inflight",
				    json_integer(__atomic_load_n(&q->inflight, __ATOMIC_RELAXED)));
		json_object_set_new(o, "kick_after",
				    json_integer(__atomic_load_n(&q->kick_after, __ATOMIC_RELAXED)));
		json_object_set_new(o, "kick_timeouts", json_integer((json_int_t)q->kick_timeouts));
		json_object_set_new(o, "notifies",
				    json_integer((json_int_t)__atomic_load_n(&q->notifies, __ATOMIC_RELAXED)));
		json_object_set_new(o, "rescued_notifies",
				    json_integer((json_int_t)__atomic_load_n(&q->rescued, __ATOMIC_RELAXED)));
		json_array_append_new(qs, o);
	}
	return json_pack("{s:o, s:o}", "total", zoc_stats_to_json(&total), "queues", qs);
}
