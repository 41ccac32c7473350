/* SPDX-License-Identifier: MIT */
/*
 * bdev_uring.c - a file or a block device driven through io_uring.
 *
 * One ring per reactor, shared by the channels of every uring bdev on that
 * reactor (struct uring_rctx, refcounted by its channels). Each channel owns a
 * slot of the ring's registered-file table holding its bdev's fd, and every
 * SQE uses IOSQE_FIXED_FILE.
 *
 * zoc_bdev_submit() only fills an SQE; the reactor's uring poller reaps CQEs,
 * then enters the kernel once for everything queued since the last
 * iteration. When the SQ is full, submit pushes out what is there and tries
 * again; if the kernel still takes nothing, the request waits on a software
 * list that the poller drains first. No request is ever dropped.
 *
 * Per-request state lives in io->priv_: [0] = bytes already transferred
 * (short reads/writes are resumed where they stopped), [1] = file slot in
 * the low 32 bits, retry count in the high 32.
 *
 * Completions (kernel 6.1+): the ring is created SINGLE_ISSUER | DEFER_TASKRUN
 * | TASKRUN_FLAG on its reactor's thread, so a finished request does not
 * interrupt the reactor (no task-work signal, no IPI, no epoll_wait cut short
 * by -EINTR); it waits on the ring's work list, the kernel sets
 * IORING_SQ_TASKRUN in the SQ flags (a memory read for the poller) and the
 * poller turns the list into CQEs with the same io_uring_enter() that submits
 * (io_uring_submit_and_get_events). Older kernels: plain rings, as before.
 *
 * In interrupt mode an eventfd is registered with the ring and watched
 * edge-triggered by the reactor, never read: the kernel signals it when the
 * deferred work list goes from empty to non-empty (or, on a plain ring, per
 * CQE batch), which is exactly when a sleeping reactor must wake. It is
 * enabled only from arm to disarm, i.e. while the reactor sleeps (see
 * efd_enable()). The arm callback reports work already in the SQ, CQ,
 * deferred list or overflow list, so no completion can arrive while the
 * reactor sleeps without a signal.
 */
#include "blk/bdev.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <liburing.h>

#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

#define URING_DEPTH 1024        /* SQ entries per reactor ring */
#define URING_MAX_FILES 256     /* uring bdevs per reactor (registered-file slots) */
#define URING_REAP_BATCH 64
#define URING_MAX_RETRIES 32    /* -EAGAIN / -EINTR resubmissions per request */
#define URING_MAX_RW (1u << 30) /* one read/write SQE moves at most this much */

struct uring_bdev {
	struct zoc_bdev bdev; /* first */
	char *filename;
	int fd;
	bool buffered;
	bool is_blkdev;
};

struct uring_ch;

struct uring_rctx {
	struct io_uring ring;
	struct zoc_reactor *reactor;
	unsigned idx;
	uint32_t refs;     /* channels on this ring */
	struct zoc_poller *poller;
	int efd;           /* interrupt mode only, else -1 */
	bool defer;        /* DEFER_TASKRUN ring: the poller must ask for CQEs */
	bool in_poll;
	bool reap_dead;    /* a channel died during poll: free it at the end */
	struct zoc_bdev_io *wait_head; /* waiting for an SQE, in order */
	struct zoc_bdev_io **wait_tailp;
	struct uring_ch *slots[URING_MAX_FILES];
};

struct uring_ch {
	struct zoc_bdev_ch hdr; /* first */
	struct uring_rctx *rc;
	unsigned slot;
	uint32_t inflight; /* accepted by submit, callback not run yet */
	bool dead;         /* put while requests were in flight */
};

/* Each entry is touched only by its reactor's thread. */
static struct uring_rctx *g_rctx[ZOC_MAX_REACTORS];

/* ---- requests ---------------------------------------------------------- */

static inline unsigned io_slot(const struct zoc_bdev_io *io)
{
	return (unsigned)(io->priv_[1] & 0xffffffffu);
}

static inline unsigned io_retries(const struct zoc_bdev_io *io)
{
	return (unsigned)(io->priv_[1] >> 32);
}

static void prep_rw(struct io_uring_sqe *sqe, struct zoc_bdev_io *io, unsigned slot)
{
	bool wr = io->op == ZOC_BDEV_WRITE;
	uint64_t done = io->priv_[0];
	uint64_t off = io->offset + done;
	uint64_t skip = done;
	int k = 0;

	/* Resume after a short transfer: find where it stopped. */
	while (skip && k < io->iovcnt && skip >= io->iov[k].iov_len) {
		skip -= io->iov[k].iov_len;
		k++;
	}
	if (skip || io->iovcnt - k == 1) {
		/* Inside one element (or only one left): a plain read/write of its
		 * remainder needs no rewritten iovec. */
		char *base = (char *)io->iov[k].iov_base + skip;
		uint64_t len = ZOC_MIN((uint64_t)io->iov[k].iov_len - skip, (uint64_t)URING_MAX_RW);

		if (wr)
			io_uring_prep_write(sqe, (int)slot, base, (unsigned)len, off);
		else
			io_uring_prep_read(sqe, (int)slot, base, (unsigned)len, off);
	} else if (wr) {
		io_uring_prep_writev(sqe, (int)slot, &io->iov[k], (unsigned)(io->iovcnt - k), off);
	} else {
		io_uring_prep_readv(sqe, (int)slot, &io->iov[k], (unsigned)(io->iovcnt - k), off);
	}
}

/* Fills an SQE for io; false when the SQ is full. */
static bool io_prep(struct uring_rctx *rc, struct zoc_bdev_io *io)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&rc->ring);
	unsigned slot = io_slot(io);

	if (!sqe)
		return false;
	switch (io->op) {
	case ZOC_BDEV_READ:
	case ZOC_BDEV_WRITE:
		prep_rw(sqe, io, slot);
		break;
	case ZOC_BDEV_FLUSH:
		io_uring_prep_fsync(sqe, (int)slot, IORING_FSYNC_DATASYNC);
		break;
	case ZOC_BDEV_DISCARD:
		/* Files: deallocate (reads return zeroes). Block devices: the kernel
		 * turns this into a write-zeroes-with-unmap, no slow fallback. */
		io_uring_prep_fallocate(sqe, (int)slot, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)io->offset, (off_t)io->len);
		break;
	case ZOC_BDEV_WRITE_ZEROES:
		io_uring_prep_fallocate(sqe, (int)slot, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
					(off_t)io->offset, (off_t)io->len);
		break;
	}
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data(sqe, io);
	return true;
}

static void wait_append(struct uring_rctx *rc, struct zoc_bdev_io *io)
{
	io->next_ = NULL;
	*rc->wait_tailp = io;
	rc->wait_tailp = &io->next_;
}

/* Moves waiting requests into the SQ; returns how many. */
static int wait_drain(struct uring_rctx *rc)
{
	bool pushed = false;
	int n = 0;

	while (rc->wait_head) {
		struct zoc_bdev_io *io = rc->wait_head;

		if (!io_prep(rc, io)) {
			if (pushed)
				break;
			/* SQ full: hand the kernel what is there, then go on. */
			pushed = true;
			if (io_uring_submit(&rc->ring) <= 0)
				break;
			continue;
		}
		rc->wait_head = io->next_;
		if (!rc->wait_head)
			rc->wait_tailp = &rc->wait_head;
		io->next_ = NULL;
		n++;
	}
	return n;
}

static void ch_free(struct uring_ch *ch);

static void io_finish(struct uring_rctx *rc, struct zoc_bdev_io *io, int status)
{
	struct uring_ch *ch = rc->slots[io_slot(io)];

	ch->inflight--;
	io->cb(io, status);
	if (ch->dead && ch->inflight == 0)
		rc->reap_dead = true;
}

static void io_complete(struct uring_rctx *rc, struct zoc_bdev_io *io, int res)
{
	if (res == -EAGAIN || res == -EINTR) {
		unsigned tries = io_retries(io) + 1;

		if (tries > URING_MAX_RETRIES) {
			ZOC_ERR_RL("bdev uring: request at offset %" PRIu64 " still gets %s after %u "
				   "retries",
				   io->offset, strerror(-res), URING_MAX_RETRIES);
			io_finish(rc, io, -EIO);
			return;
		}
		io->priv_[1] = ((uint64_t)tries << 32) | io_slot(io);
		wait_append(rc, io);
		return;
	}
	if (res < 0) {
		io_finish(rc, io, res);
		return;
	}
	if (io->op != ZOC_BDEV_READ && io->op != ZOC_BDEV_WRITE) {
		io_finish(rc, io, 0);
		return;
	}
	if (res == 0 || (uint64_t)res > io->len - io->priv_[0]) {
		/* No progress (past the end of a shrunk file) or nonsense. */
		ZOC_ERR_RL("bdev uring: %s at offset %" PRIu64 " stopped after %" PRIu64
			   " of %" PRIu64 " bytes",
			   io->op == ZOC_BDEV_READ ? "read" : "write", io->offset, io->priv_[0],
			   io->len);
		io_finish(rc, io, -EIO);
		return;
	}
	io->priv_[0] += (uint64_t)res;
	if (io->priv_[0] < io->len) {
		/* Short transfer: send the rest. */
		wait_append(rc, io);
		return;
	}
	io_finish(rc, io, 0);
}

/* ---- per-reactor ring -------------------------------------------------- */

static void rctx_destroy(struct uring_rctx *rc)
{
	zoc_poller_unregister(rc->poller);
	if (rc->efd >= 0) {
		zoc_reactor_del_fd(rc->reactor, rc->efd);
		io_uring_unregister_eventfd(&rc->ring);
		close(rc->efd);
	}
	io_uring_queue_exit(&rc->ring);
	g_rctx[rc->idx] = NULL;
	free(rc);
}

static void rctx_put(struct uring_rctx *rc)
{
	if (--rc->refs == 0 && !rc->in_poll)
		rctx_destroy(rc);
	/* in poll: the poller destroys it on its way out */
}

static void ch_free(struct uring_ch *ch)
{
	struct uring_rctx *rc = ch->rc;
	int none = -1;
	int rc2 = io_uring_register_files_update(&rc->ring, ch->slot, &none, 1);

	if (rc2 < 0)
		ZOC_WARN("bdev uring: cannot clear file slot %u: %s", ch->slot, strerror(-rc2));
	rc->slots[ch->slot] = NULL;
	free(ch);
	rctx_put(rc);
}

/* Submits what is queued; on a DEFER_TASKRUN ring also runs the deferred
 * completions, so they are in the CQ for the next peek. */
static void uring_enter(struct uring_rctx *rc, int *work)
{
	int ret = rc->defer ? io_uring_submit_and_get_events(&rc->ring)
			    : io_uring_submit(&rc->ring);

	if (ret > 0)
		(*work)++;
	else if (ret < 0 && ret != -EAGAIN && ret != -EBUSY && ret != -EINTR)
		ZOC_ERR_RL("bdev uring: io_uring_enter on reactor %u: %s", rc->idx, strerror(-ret));
	/* -EAGAIN/-EBUSY: the SQEs stay queued; next iteration. */
}

static int uring_poll(void *arg)
{
	struct uring_rctx *rc = arg;
	struct io_uring_cqe *cqes[URING_REAP_BATCH];
	struct {
		struct zoc_bdev_io *io;
		int res;
	} done[URING_REAP_BATCH];
	int work = 0;
	unsigned n;

	rc->in_poll = true;
	/* Deferred completions (or an overflowed CQ) waiting: flush them into
	 * the CQ, submitting whatever is queued in the same system call. */
	if (IO_URING_READ_ONCE(*rc->ring.sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW))
		uring_enter(rc, &work);
	do {
		n = io_uring_peek_batch_cqe(&rc->ring, cqes, URING_REAP_BATCH);
		/* Copy and release the CQEs before any callback runs. */
		for (unsigned i = 0; i < n; i++) {
			done[i].io = io_uring_cqe_get_data(cqes[i]);
			done[i].res = cqes[i]->res;
		}
		io_uring_cq_advance(&rc->ring, n);
		for (unsigned i = 0; i < n; i++)
			io_complete(rc, done[i].io, done[i].res);
		work += (int)n;
	} while (n == URING_REAP_BATCH);

	work += wait_drain(rc);
	if (io_uring_sq_ready(&rc->ring))
		uring_enter(rc, &work);
	rc->in_poll = false;

	if (rc->reap_dead) {
		rc->reap_dead = false;
		rc->refs++; /* keep rc while its channels go */
		for (unsigned i = 0; i < URING_MAX_FILES; i++) {
			struct uring_ch *ch = rc->slots[i];

			if (ch && ch->dead && ch->inflight == 0)
				ch_free(ch);
		}
		rc->refs--;
	}
	if (rc->refs == 0)
		rctx_destroy(rc);
	return work;
}

/* Interrupt mode: the ring's eventfd is enabled only while the reactor
 * sleeps. Awake, the poller reads IORING_SQ_TASKRUN and the CQ itself, and a
 * signal would only cost a wake-up later for work already done: the kernel
 * signals when a completion joins the deferred list and again when it turns
 * into a CQE inside our own io_uring_enter(), which left an epoll_wait per
 * I/O that returned at once (at depth one: 3 epoll_waits per request).
 * IORING_CQ_EVENTFD_DISABLED is a flag in the CQ ring, a store, no syscall.
 * DEFER_TASKRUN rings only: there the kernel sets IORING_SQ_TASKRUN with an
 * atomic (a full barrier) before it reads the flag, which arm relies on; a
 * plain ring (kernel before 6.1) signals once per CQE batch anyway. */
static void efd_enable(struct uring_rctx *rc, bool on)
{
	unsigned *flags = rc->ring.cq.kflags;

	if (rc->efd < 0 || !rc->defer || !flags)
		return; /* polling mode, or a plain ring: always enabled */
	if (on)
		__atomic_fetch_and(flags, ~IORING_CQ_EVENTFD_DISABLED, __ATOMIC_SEQ_CST);
	else
		__atomic_fetch_or(flags, IORING_CQ_EVENTFD_DISABLED, __ATOMIC_RELAXED);
}

static int uring_arm(void *arg)
{
	struct uring_rctx *rc = arg;

	/* Enable the eventfd first (a full barrier), then say whether there is
	 * work that no signal would announce. The kernel sets IORING_SQ_TASKRUN
	 * before it reads the disabled flag to decide on a signal: either it
	 * sees the eventfd enabled, or we see the flag here. */
	efd_enable(rc, true);
	return rc->wait_head || io_uring_sq_ready(&rc->ring) || io_uring_cq_ready(&rc->ring) ||
	       (IO_URING_READ_ONCE(*rc->ring.sq.kflags) &
		(IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW));
}

static void uring_disarm(void *arg)
{
	efd_enable(arg, false);
}

static const struct zoc_poller_ops uring_poller_ops = {
	.poll = uring_poll,
	.arm = uring_arm,
	.disarm = uring_disarm,
};

static void uring_efd_handler(void *arg, uint32_t events)
{
	/* Edge-triggered and never read (a read is a system call per wake-up;
	 * the counter cannot reach 2^64 - 1): the poller, which runs next, reaps. */
	(void)arg;
	(void)events;
}

static struct uring_rctx *rctx_get(struct zoc_reactor *r)
{
	unsigned idx = zoc_reactor_index(r);
	struct uring_rctx *rc;
	int ret;

	if (idx >= ZOC_MAX_REACTORS)
		return NULL;
	rc = g_rctx[idx];
	if (rc) {
		rc->refs++;
		return rc;
	}
	rc = calloc(1, sizeof(*rc));
	if (!rc)
		return NULL;
	rc->reactor = r;
	rc->idx = idx;
	rc->efd = -1;
	rc->wait_tailp = &rc->wait_head;
	/* Called on r's thread, which becomes the ring's only issuer. */
	ret = io_uring_queue_init(URING_DEPTH, &rc->ring,
				  IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
					  IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
	rc->defer = ret == 0;
	if (ret == -EINVAL) /* kernel before 6.1 */
		ret = io_uring_queue_init(URING_DEPTH, &rc->ring, IORING_SETUP_SUBMIT_ALL);
	if (ret == -EINVAL) /* kernel before 5.18 */
		ret = io_uring_queue_init(URING_DEPTH, &rc->ring, 0);
	if (ret < 0) {
		ZOC_ERR("bdev uring: io_uring_queue_init on reactor %u: %s", idx, strerror(-ret));
		free(rc);
		return NULL;
	}
	ret = io_uring_register_files_sparse(&rc->ring, URING_MAX_FILES);
	if (ret < 0) {
		ZOC_ERR("bdev uring: cannot register a %u-file table on reactor %u: %s",
			URING_MAX_FILES, idx, strerror(-ret));
		goto fail_ring;
	}
	if (zoc_reactor_interrupt_mode()) {
		rc->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (rc->efd < 0) {
			ZOC_ERR("bdev uring: eventfd: %s", strerror(errno));
			goto fail_ring;
		}
		ret = io_uring_register_eventfd(&rc->ring, rc->efd);
		if (ret < 0) {
			ZOC_ERR("bdev uring: io_uring_register_eventfd: %s", strerror(-ret));
			goto fail_efd;
		}
		ret = zoc_reactor_add_fd(r, rc->efd, EPOLLIN | EPOLLET, uring_efd_handler, rc);
		if (ret < 0) {
			ZOC_ERR("bdev uring: cannot watch the ring's eventfd: %s", strerror(-ret));
			goto fail_efd;
		}
		efd_enable(rc, false); /* until the reactor arms to sleep */
	}
	rc->poller = zoc_poller_register(r, &uring_poller_ops, rc, 0, "bdev_uring");
	if (!rc->poller) {
		if (rc->efd >= 0)
			zoc_reactor_del_fd(r, rc->efd);
		goto fail_efd;
	}
	rc->refs = 1;
	g_rctx[idx] = rc;
	return rc;

fail_efd:
	if (rc->efd >= 0)
		close(rc->efd);
fail_ring:
	io_uring_queue_exit(&rc->ring);
	free(rc);
	return NULL;
}

/* ---- channels ---------------------------------------------------------- */

static struct zoc_bdev_ch *uring_channel_create(struct zoc_bdev *bdev, struct zoc_reactor *r)
{
	struct uring_bdev *ub = ZOC_CONTAINER_OF(bdev, struct uring_bdev, bdev);
	struct uring_rctx *rc = rctx_get(r);
	struct uring_ch *ch;
	unsigned slot;
	int ret;

	if (!rc)
		return NULL;
	for (slot = 0; slot < URING_MAX_FILES; slot++)
		if (!rc->slots[slot])
			break;
	if (slot == URING_MAX_FILES) {
		ZOC_ERR("bdev %s: reactor %u already serves %u uring bdevs", bdev->name, rc->idx,
			URING_MAX_FILES);
		goto fail;
	}
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		goto fail;
	ret = io_uring_register_files_update(&rc->ring, slot, &ub->fd, 1);
	if (ret < 0) {
		ZOC_ERR("bdev %s: cannot register its fd with the ring of reactor %u: %s",
			bdev->name, rc->idx, strerror(-ret));
		free(ch);
		goto fail;
	}
	ch->rc = rc;
	ch->slot = slot;
	rc->slots[slot] = ch;
	return &ch->hdr;

fail:
	rctx_put(rc);
	return NULL;
}

static void uring_channel_destroy(struct zoc_bdev_ch *hdr)
{
	struct uring_ch *ch = ZOC_CONTAINER_OF(hdr, struct uring_ch, hdr);

	ch->dead = true;
	if (ch->inflight == 0 && !ch->rc->in_poll)
		ch_free(ch);
	else if (ch->inflight == 0)
		ch->rc->reap_dead = true;
	/* else: freed by the poller after its last completion */
}

static int uring_submit(struct zoc_bdev_ch *hdr, struct zoc_bdev_io *io)
{
	struct uring_ch *ch = ZOC_CONTAINER_OF(hdr, struct uring_ch, hdr);
	struct uring_rctx *rc = ch->rc;

	io->priv_[0] = 0;
	io->priv_[1] = ch->slot;
	io->next_ = NULL;
	if (rc->wait_head) {
		wait_append(rc, io); /* keep order behind those already waiting */
	} else if (!io_prep(rc, io)) {
		/* SQ full: push it out now (the only syscall in submit) and retry. */
		io_uring_submit(&rc->ring);
		if (!io_prep(rc, io))
			wait_append(rc, io);
	}
	ch->inflight++;
	return 0;
}

/* ---- bdev -------------------------------------------------------------- */

static void uring_destroy(struct zoc_bdev *bdev)
{
	struct uring_bdev *ub = ZOC_CONTAINER_OF(bdev, struct uring_bdev, bdev);

	/* Channels still draining keep the file open through the ring's table. */
	close(ub->fd);
	free(ub->filename);
	free(ub);
}

static void uring_dump_params(const struct zoc_bdev *bdev, json_t *obj)
{
	const struct uring_bdev *ub = ZOC_CONTAINER_OF(bdev, struct uring_bdev, bdev);

	json_object_set_new(obj, "name", json_string(bdev->name));
	json_object_set_new(obj, "filename", json_string(ub->filename));
	json_object_set_new(obj, "block_size", json_integer(bdev->block_size));
	if (ub->buffered)
		json_object_set_new(obj, "buffered", json_true());
}

static const struct zoc_bdev_ops uring_ops = {
	.type = "uring",
	.channel_create = uring_channel_create,
	.channel_destroy = uring_channel_destroy,
	.submit = uring_submit,
	.destroy = uring_destroy,
	.dump_params = uring_dump_params,
};

/* Reads a number from the sysfs queue directory of a block device (or of
 * the disk a partition belongs to); -1 when absent. */
static long long sysfs_queue_value(dev_t rdev, const char *attr)
{
	static const char *const dirs[] = {"queue", "../queue"};
	char path[128];
	long long v = -1;

	for (unsigned i = 0; i < ZOC_ARRAY_SIZE(dirs); i++) {
		FILE *f;

		snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/%s/%s", major(rdev), minor(rdev),
			 dirs[i], attr);
		f = fopen(path, "re");
		if (!f)
			continue;
		if (fscanf(f, "%lld", &v) != 1)
			v = -1;
		fclose(f);
		return v;
	}
	return -1;
}

static bool pow2_in(uint32_t v, uint32_t lo, uint32_t hi)
{
	return v >= lo && v <= hi && (v & (v - 1)) == 0;
}

/* O_DIRECT may open fine and still fail every read: read block 0 once. */
static int probe_direct(int fd, uint32_t bs)
{
	void *buf = NULL;
	ssize_t n;
	int err;

	if (posix_memalign(&buf, 4096, bs))
		return -ENOMEM;
	n = pread(fd, buf, bs, 0);
	err = n < 0 ? -errno : 0;
	free(buf);
	return err;
}

int zoc_bdev_uring_create(const char *name, const char *filename, uint32_t block_size,
			  bool buffered)
{
	struct uring_bdev *ub = NULL;
	uint32_t dio_align = 512, bs;
	uint64_t size;
	struct stat st;
	bool read_only = false, is_blk;
	int fd, flags, rc;

	if (!name || strnlen(name, ZOC_BDEV_NAME_MAX) == 0 ||
	    strnlen(name, ZOC_BDEV_NAME_MAX) >= ZOC_BDEV_NAME_MAX) {
		ZOC_ERR("bdev_uring: name must be 1..%d characters", ZOC_BDEV_NAME_MAX - 1);
		return -EINVAL;
	}
	if (!filename || !filename[0] || strnlen(filename, PATH_MAX) >= PATH_MAX) {
		ZOC_ERR("bdev_uring %s: a filename is required", name);
		return -EINVAL;
	}
	if (block_size && !pow2_in(block_size, 512, 4096)) {
		ZOC_ERR("bdev_uring %s: block_size %u must be 0 (device's) or a power of two in "
			"512..4096",
			name, block_size);
		return -EINVAL;
	}
	if (zoc_bdev_find(name))
		return -EEXIST;

	flags = O_CLOEXEC | (buffered ? 0 : O_DIRECT);
	fd = open(filename, O_RDWR | flags);
	if (fd < 0 && (errno == EROFS || errno == EACCES || errno == EPERM)) {
		fd = open(filename, O_RDONLY | flags);
		if (fd >= 0) {
			read_only = true;
			ZOC_WARN("bdev_uring %s: %s is not writable: serving it read-only", name,
				 filename);
		}
	}
	if (fd < 0) {
		rc = -errno;
		if (rc == -EINVAL && !buffered)
			ZOC_ERR("bdev_uring %s: the filesystem of %s refuses O_DIRECT; create "
				"the bdev with buffered=true",
				name, filename);
		else
			ZOC_ERR("bdev_uring %s: cannot open %s: %s", name, filename,
				strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		ZOC_ERR("bdev_uring %s: fstat %s: %s", name, filename, strerror(-rc));
		goto fail;
	}
	is_blk = S_ISBLK(st.st_mode);
	if (is_blk) {
		int lbs = 0;

		if (ioctl(fd, BLKSSZGET, &lbs) < 0 || ioctl(fd, BLKGETSIZE64, &size) < 0) {
			rc = -errno;
			ZOC_ERR("bdev_uring %s: cannot read the geometry of %s: %s", name,
				filename, strerror(-rc));
			goto fail;
		}
		if (!pow2_in((uint32_t)lbs, 512, 4096)) {
			ZOC_ERR("bdev_uring %s: %s has a logical block size of %d, outside "
				"512..4096",
				name, filename, lbs);
			rc = -EINVAL;
			goto fail;
		}
		dio_align = (uint32_t)lbs;
	} else if (S_ISREG(st.st_mode)) {
		struct statx stx;

		size = (uint64_t)st.st_size;
		if (!buffered && statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
		    (stx.stx_mask & STATX_DIOALIGN)) {
			if (stx.stx_dio_offset_align == 0) {
				ZOC_ERR("bdev_uring %s: the filesystem of %s refuses O_DIRECT; "
					"create the bdev with buffered=true",
					name, filename);
				rc = -EINVAL;
				goto fail;
			}
			if (stx.stx_dio_offset_align > dio_align)
				dio_align = stx.stx_dio_offset_align;
		}
	} else {
		ZOC_ERR("bdev_uring %s: %s is neither a regular file nor a block device", name,
			filename);
		rc = -EINVAL;
		goto fail;
	}

	bs = block_size ? block_size : dio_align;
	if (!buffered && bs < dio_align) {
		ZOC_ERR("bdev_uring %s: block_size %u is below the %u bytes O_DIRECT needs on "
			"%s (use buffered=true or a larger block_size)",
			name, bs, dio_align, filename);
		rc = -EINVAL;
		goto fail;
	}
	if (!pow2_in(bs, 512, 4096)) {
		ZOC_ERR("bdev_uring %s: %s needs %u-byte blocks, outside 512..4096", name, filename,
			bs);
		rc = -EINVAL;
		goto fail;
	}
	if (size / bs == 0) {
		ZOC_ERR("bdev_uring %s: %s is smaller than one %u-byte block", name, filename, bs);
		rc = -EINVAL;
		goto fail;
	}
	if (size % bs)
		ZOC_WARN("bdev_uring %s: the last %" PRIu64 " bytes of %s are not a whole block "
			 "and are not served",
			 name, size % bs, filename);
	if (!buffered) {
		rc = probe_direct(fd, bs);
		if (rc == -EINVAL) {
			ZOC_ERR("bdev_uring %s: O_DIRECT reads of %u bytes fail on %s; create the "
				"bdev with buffered=true",
				name, bs, filename);
			goto fail;
		}
		if (rc < 0) {
			ZOC_ERR("bdev_uring %s: cannot read %s: %s", name, filename, strerror(-rc));
			goto fail;
		}
	}

	ub = calloc(1, sizeof(*ub));
	if (!ub || !(ub->filename = strdup(filename))) {
		rc = -ENOMEM;
		goto fail;
	}
	memcpy(ub->bdev.name, name, strlen(name) + 1);
	ub->fd = fd;
	ub->buffered = buffered;
	ub->is_blkdev = is_blk;
	ub->bdev.block_size = bs;
	ub->bdev.num_blocks = size / bs;
	ub->bdev.read_only = read_only;
	ub->bdev.supports_flush = true;
	if (read_only) {
		ub->bdev.supports_discard = false;
		ub->bdev.supports_write_zeroes = false;
	} else if (is_blk) {
		/* fallocate(PUNCH_HOLE) on a block device is a write-zeroes that
		 * may unmap and never falls back to writing; ZERO_RANGE does fall
		 * back, so it always works. */
		ub->bdev.supports_discard = sysfs_queue_value(st.st_rdev, "write_zeroes_max_bytes") > 0;
		ub->bdev.supports_write_zeroes = true;
	} else {
		ub->bdev.supports_discard = true;
		ub->bdev.supports_write_zeroes = true;
	}
	ub->bdev.max_iov = IOV_MAX;
	ub->bdev.ops = &uring_ops;
	ub->bdev.ctx = ub;
	rc = zoc_bdev_register(&ub->bdev);
	if (rc)
		goto fail;
	ZOC_INFO("bdev_uring %s: %s (%s, %s%s)", name, filename, is_blk ? "block device" : "file",
		 buffered ? "buffered" : "O_DIRECT", ub->bdev.supports_discard ? ", discard" : "");
	return 0;

fail:
	if (ub) {
		free(ub->filename);
		free(ub);
	}
	close(fd);
	return rc;
}
