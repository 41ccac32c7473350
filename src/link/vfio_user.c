/* SPDX-License-Identifier: MIT */
/*
 * vfio-user server (QEMU docs/interop/vfio-user.rst) for one PCI function.
 *
 * The commands are one table (VFU_COMMANDS) from which the dispatcher, the
 * names, the payload size bounds and the fd limits are generated. Every
 * message is checked before use. Two kinds of failure:
 *  - a bad request in a well-framed message (a region index out of range,
 *    an overlapping DMA map, an argsz too small ...) fails that request: an
 *    error reply with an errno, the connection stays;
 *  - a malformed message (bad size, a reply or unknown type, a payload size
 *    the command cannot have, more fds than we advertised, anything before
 *    VERSION, a bad VERSION) closes the connection.
 *
 * Messages are handled on reactor 0, in order, one at a time. DMA_MAP /
 * DMA_UNMAP (the function is quiesced while the new DMA table is installed)
 * and DEVICE_RESET are asynchronous: reading stops until the model calls
 * back, then the reply is sent and reading resumes.
 *
 * A closed connection (hang-up, malformed message, server destroyed) is torn
 * down asynchronously: function reset, quiesce, set_dma(NULL), resume, irq
 * eventfds dropped, DMA regions unmapped; then the server listens again and
 * the next client gets the device back.
 */
#include "link/vfio_user.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"
#include "link/dma.h"
#include "link/usock.h"
#include "link/vfio_user_proto.h"
#include "pci/pci.h"

#define VFU_MAJOR 0
#define VFU_MINOR 0 /* QEMU proposes 0.0 and refuses a higher minor */

/* What we advertise in VERSION. */
#define VFU_MAX_FDS 16                    /* max_msg_fds (QEMU accepts <= 16) */
_Static_assert(VFU_MAX_FDS <= ZOC_USOCK_MAX_FDS, "zoc_usock_recv() takes at most ZOC_USOCK_MAX_FDS fds");
#define VFU_MAX_XFER (1u << 20)           /* max_data_xfer_size */
#define VFU_PGSIZES 4096u                 /* pgsizes */
#define VFU_MAX_DMA_MAPS ZOC_MEM_MAX_REGIONS /* max_dma_maps */

#define VFU_PAGE 4096u
#define VFU_MAX_PAYLOAD (sizeof(struct vfu_region_rw) + VFU_MAX_XFER)
#define VFU_MAX_MSG (sizeof(struct vfu_hdr) + VFU_MAX_PAYLOAD)
#define VFU_MAX_SPARSE_AREAS 16
#define VFU_VAR UINT32_MAX /* variable payload size, checked by the handler */

/* A reply to a client that does not read is given up after this long (the
 * connection is then closed): replies are at most one region read. */
#define VFU_SEND_TIMEOUT_MS 200

/* Server -> client DMA_READ / DMA_WRITE (memory mapped without an fd):
 * messages in flight at once, how long the client has to answer one (then
 * the copy fails and the connection is reset), and how many of the ids we
 * issued last are still recognised as late replies (dropped, not fatal). */
#define VFU_DMA_SLOTS 16
#define VFU_DMA_TIMEOUT_MS 2000
#define VFU_DMA_TICK_MS 100
#define VFU_DMA_LATE_WINDOW 1024

/*
 * Command table: name, id, min payload, max payload (VFU_VAR: up to
 * VFU_MAX_PAYLOAD), max fds. Commands not listed (DMA_READ / DMA_WRITE go the
 * other way, GET_REGION_IO_FDS, DEVICE_FEATURE) get an ENOTSUP error reply.
 */
#define VFU_COMMANDS(X)                                                           \
	X(VERSION, 1, sizeof(struct vfu_version), VFU_VAR, 0)                     \
	X(DMA_MAP, 2, sizeof(struct vfu_dma_map), sizeof(struct vfu_dma_map), 1)  \
	X(DMA_UNMAP, 3, sizeof(struct vfu_dma_unmap), VFU_VAR, 0)                 \
	X(DEVICE_GET_INFO, 4, sizeof(struct vfu_device_info),                     \
	  sizeof(struct vfu_device_info), 0)                                      \
	X(DEVICE_GET_REGION_INFO, 5, sizeof(struct vfu_region_info),              \
	  sizeof(struct vfu_region_info), 0)                                      \
	X(DEVICE_GET_IRQ_INFO, 7, sizeof(struct vfu_irq_info),                    \
	  sizeof(struct vfu_irq_info), 0)                                         \
	X(DEVICE_SET_IRQS, 8, sizeof(struct vfu_irq_set), VFU_VAR, VFU_MAX_FDS)   \
	X(REGION_READ, 9, sizeof(struct vfu_region_rw), sizeof(struct vfu_region_rw), 0) \
	X(REGION_WRITE, 10, sizeof(struct vfu_region_rw), VFU_VAR, 0)             \
	X(DEVICE_RESET, 13, 0, 0, 0)                                              \
	X(REGION_WRITE_MULTI, 15, sizeof(uint64_t), VFU_VAR, 0)

struct zoc_vfu_conn;

/* Handler results: 0 = done (the handler replied, or the reply was not
 * wanted), VFU_ASYNC = a continuation finishes the message, VFU_CLOSE = close
 * the connection, <0 = error reply with that errno. */
#define VFU_ASYNC 1
#define VFU_CLOSE 2

struct vfu_msg {
	struct vfu_hdr hdr;
	uint8_t *payload; /* VFU_MAX_PAYLOAD bytes */
	int fds[VFU_MAX_FDS];
	size_t nfds;
};

typedef int (*vfu_handler)(struct zoc_vfu_conn *c, struct vfu_msg *m);
typedef void (*vfu_cont_fn)(struct zoc_vfu_conn *c);

/* One DMA_MAP the client made. */
struct vfu_dma {
	uint64_t iova;
	uint64_t size;
	uint64_t offset;
	uint32_t prot; /* VFU_DMA_READ | VFU_DMA_WRITE */
	int fd;        /* ours (received); -1: no fd (not accessible) */
};

struct zoc_vfu_server {
	char path[108];
	int listen_fd;
	bool listening;
	struct zoc_pci_func *f;
	struct zoc_vfu_conn *conn;
	uint64_t connections;
	bool destroying;
	void (*destroy_done)(void *arg);
	void *destroy_arg;
};

/* One DMA_READ / DMA_WRITE we sent and wait for. */
struct vfu_dma_req {
	struct zoc_mem_io *io; /* NULL: free slot */
	uint16_t id;
	uint16_t cmd;
	uint64_t addr, count;
	uint64_t deadline_ns;
};

struct zoc_vfu_conn {
	struct zoc_vfu_server *srv; /* NULL in test mode */
	struct zoc_pci_func *f;
	const struct zoc_pci_ops *ops;
	int fd;
	bool test_mode;
	int reply_fd;

	/* negotiated */
	bool versioned;
	uint16_t minor;
	uint32_t client_max_fds;  /* fds the client takes in one message */
	uint64_t client_max_xfer;
	bool write_multi;

	/* DMA: the client's maps, and the table built from those with an fd */
	struct vfu_dma maps[VFU_MAX_DMA_MAPS];
	unsigned nmaps;
	struct zoc_mem *mem;     /* installed in the function (our reference) */
	struct zoc_mem *new_mem; /* being installed */

	/* Server -> client copies for maps without an fd (reactor 0) */
	struct zoc_mem_remote *ep;
	struct vfu_dma_req dreq[VFU_DMA_SLOTS];
	unsigned ndreq;
	struct zoc_mem_io *dq_head, **dq_tail; /* waiting for a slot */
	uint16_t next_id;
	uint32_t ids_issued;
	bool dma_blocked; /* a quiesce / reset runs: copies fail at once */
	int tfd;          /* timerfd while copies are in flight (-1: none) */
	bool tfd_armed;
	uint64_t dma_reads, dma_writes, dma_errors, dma_late;

	/* receive state */
	struct vfu_msg msg;
	size_t got;

	/* asynchronous message in progress */
	bool pending;
	bool in_dispatch;
	vfu_cont_fn cont;
	struct vfu_hdr ahdr;
	uint8_t areply[sizeof(struct vfu_dma_unmap)];
	uint32_t areply_len;

	bool closing;
	bool dead; /* close when idle */

	uint64_t nmsgs;
	uint64_t nerrors;
};

static void conn_close(struct zoc_vfu_conn *c);
static void conn_resume(struct zoc_vfu_conn *c);
static void server_listen(struct zoc_vfu_server *s);

static const char *cmd_name(uint32_t cmd)
{
	switch (cmd) {
#define X(name, id, min, max, fds) \
	case id:                   \
		return #name;
		VFU_COMMANDS(X)
#undef X
	case VFU_CMD_DEVICE_GET_REGION_IO_FDS:
		return "DEVICE_GET_REGION_IO_FDS";
	case VFU_CMD_DMA_READ:
		return "DMA_READ";
	case VFU_CMD_DMA_WRITE:
		return "DMA_WRITE";
	case VFU_CMD_DEVICE_FEATURE:
		return "DEVICE_FEATURE";
	default:
		return "UNKNOWN";
	}
}

static const char *conn_name(const struct zoc_vfu_conn *c)
{
	return c->srv ? c->srv->path : "vfio-user(test)";
}

static void msg_close_fds(struct vfu_msg *m)
{
	zoc_fds_close(m->fds, &m->nfds);
}

static int msg_take_fd(struct vfu_msg *m, size_t i)
{
	return zoc_fds_take(m->fds, m->nfds, i);
}

/* ---------------------------------------------------------------- replies */

/* Writes the whole message, waiting a little for room in the socket. */
static int send_all(int out, struct msghdr *mh, size_t total)
{
	size_t sent = 0;
	int waited = 0;

	while (sent < total) {
		ssize_t n = sendmsg(out, mh, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			struct pollfd p = {.fd = out, .events = POLLOUT};

			if (errno == EINTR)
				continue;
			if (errno != EAGAIN || waited >= VFU_SEND_TIMEOUT_MS)
				return -(errno == EAGAIN ? ETIMEDOUT : errno);
			if (poll(&p, 1, 10) < 0 && errno != EINTR)
				return -errno;
			waited += 10;
			continue;
		}
		sent += (size_t)n;
		/* The fd (if any) went with the first bytes. */
		mh->msg_control = NULL;
		mh->msg_controllen = 0;
		while (n > 0 && mh->msg_iovlen) {
			size_t k = ZOC_MIN((size_t)n, mh->msg_iov->iov_len);

			mh->msg_iov->iov_base = (uint8_t *)mh->msg_iov->iov_base + k;
			mh->msg_iov->iov_len -= k;
			n -= (ssize_t)k;
			if (!mh->msg_iov->iov_len) {
				mh->msg_iov++;
				mh->msg_iovlen--;
			}
		}
	}
	return 0;
}

/*
 * Sends the reply to req: error 0 = success with payload p1 + p2 (either may
 * be empty) and fd (-1 none); error > 0 = an error reply (header only).
 * Nothing is sent for a NO_REPLY command. A failed send marks the
 * connection dead.
 */
static int send_reply(struct zoc_vfu_conn *c, const struct vfu_hdr *req, int error,
		      const void *p1, size_t l1, const void *p2, size_t l2, int fd)
{
	struct vfu_hdr h = {.msg_id = req->msg_id, .cmd = req->cmd,
			    .flags = VFU_F_TYPE_REPLY};
	struct iovec iov[3];
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = {.msg_iov = iov};
	int out = c->test_mode ? c->reply_fd : c->fd;
	int rc;

	if (error)
		c->nerrors++;
	if (req->flags & VFU_F_NO_REPLY) {
		if (error)
			ZOC_WARN_RL("%s: %s (no reply wanted) failed: %s", conn_name(c),
				    cmd_name(req->cmd), strerror(error));
		return 0;
	}
	if (out < 0)
		return 0;
	if (error) {
		h.flags |= VFU_F_ERROR;
		h.error = (uint32_t)error;
		l1 = l2 = 0;
		fd = -1;
	}
	h.size = (uint32_t)(sizeof(h) + l1 + l2);
	iov[mh.msg_iovlen++] = (struct iovec){&h, sizeof(h)};
	if (l1)
		iov[mh.msg_iovlen++] = (struct iovec){(void *)p1, l1};
	if (l2)
		iov[mh.msg_iovlen++] = (struct iovec){(void *)p2, l2};
	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	rc = send_all(out, &mh, h.size);
	if (rc) {
		ZOC_WARN_RL("%s: vfio-user reply to %s failed: %s", conn_name(c),
			    cmd_name(req->cmd), strerror(-rc));
		c->dead = true;
	}
	return rc;
}

static int reply_ok(struct zoc_vfu_conn *c, const struct vfu_hdr *req, const void *p,
		    size_t len)
{
	send_reply(c, req, 0, p, len, NULL, 0, -1);
	return 0;
}

/* ------------------------------------------------------------------- DMA */

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static void maps_clear(struct zoc_vfu_conn *c)
{
	for (unsigned i = 0; i < c->nmaps; i++)
		zoc_fd_close(&c->maps[i].fd);
	c->nmaps = 0;
}

static void map_remove(struct zoc_vfu_conn *c, unsigned i)
{
	zoc_fd_close(&c->maps[i].fd);
	c->maps[i] = c->maps[c->nmaps - 1];
	c->nmaps--;
}

static unsigned maps_with_fd(const struct zoc_vfu_conn *c)
{
	unsigned n = 0;

	for (unsigned i = 0; i < c->nmaps; i++)
		n += c->maps[i].fd >= 0;
	return n;
}

/* Builds a DMA table from every map that has an fd (NULL if there is none).
 * gpa = uva = IOVA. 0 or -errno. */
static int mem_build(struct zoc_vfu_conn *c, struct zoc_mem **out)
{
	struct zoc_mem *mem;

	*out = NULL;
	if (!c->nmaps)
		return 0;
	mem = zoc_mem_create();
	if (!mem)
		return -ENOMEM;
	if (c->ep)
		zoc_mem_set_remote(mem, c->ep);
	for (unsigned i = 0; i < c->nmaps; i++) {
		const struct vfu_dma *d = &c->maps[i];
		int fd, rc;

		if (d->fd < 0) {
			/* Reached through DMA_READ / DMA_WRITE only. */
			rc = zoc_mem_add_remote(mem, d->iova, d->size, d->prot & VFU_DMA_WRITE);
			if (rc) {
				zoc_mem_put(mem);
				return rc;
			}
			continue;
		}
		fd = fcntl(d->fd, F_DUPFD_CLOEXEC, 0);
		if (fd < 0) {
			rc = -errno;
		} else {
			rc = zoc_mem_add_region(mem, d->iova, d->size, d->iova, d->offset, fd,
						d->prot & VFU_DMA_WRITE);
		}
		if (rc) {
			ZOC_WARN_RL("%s: DMA region [0x%llx, +0x%llx) cannot be mapped: %s",
				    conn_name(c), (unsigned long long)d->iova,
				    (unsigned long long)d->size, strerror(-rc));
			zoc_mem_put(mem);
			return rc;
		}
	}
	*out = mem;
	return 0;
}

/* ------------------------------------------ server -> client DMA copies */

/*
 * A device copies to or from memory the client mapped without an fd
 * (zoc_mem_io_submit); dma.c brings the request to reactor 0 and calls
 * vfu_remote_rw() for each run of remote bytes. We cut a run into messages
 * of at most the client's max_data_xfer_size, keep up to VFU_DMA_SLOTS in
 * flight (more wait in a queue), and finish each when its reply (matched by
 * msg id) arrives. Nothing waits: reactor 0 goes on serving the client's
 * own requests meanwhile, which is what QEMU needs (it services our
 * requests in a bottom half of its main loop, so it cannot answer while one
 * of its threads holds the BQL waiting for a reply from us).
 */
static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t dma_xfer_max(const struct zoc_vfu_conn *c)
{
	return ZOC_MIN(c->client_max_xfer, (uint64_t)VFU_MAX_XFER);
}

static void dma_tick(void *arg, uint32_t events);

static void dma_timer_arm(struct zoc_vfu_conn *c, bool on)
{
	struct itimerspec its = {0};

	if (c->test_mode || c->tfd_armed == on)
		return;
	if (c->tfd < 0) {
		if (!on)
			return;
		c->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (c->tfd < 0)
			return;
		if (zoc_reactor_add_fd(zoc_reactor_get(0), c->tfd, EPOLLIN, dma_tick, c)) {
			zoc_fd_close(&c->tfd);
			return;
		}
	}
	if (on) {
		its.it_interval.tv_nsec = VFU_DMA_TICK_MS * 1000000l;
		its.it_value = its.it_interval;
	}
	timerfd_settime(c->tfd, 0, &its, NULL);
	c->tfd_armed = on;
}

/* Ends slot i's copy step with status (0: the chunk is done). */
static void dma_slot_done(struct zoc_vfu_conn *c, unsigned i, int status)
{
	struct zoc_mem_io *io = c->dreq[i].io;

	c->dreq[i].io = NULL;
	c->ndreq--;
	if (status)
		c->dma_errors++;
	if (!c->ndreq)
		dma_timer_arm(c, false);
	zoc_mem_io_remote_done(io, status);
}

static int dma_send(struct zoc_vfu_conn *c, unsigned slot, struct zoc_mem_io *io)
{
	struct vfu_dma_req *q = &c->dreq[slot];
	struct vfu_hdr h = {0};
	struct vfu_dma_rw rw;
	struct iovec iov[3];
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
	int out = c->test_mode ? c->reply_fd : c->fd;

	io->chunk = ZOC_MIN(io->chunk, dma_xfer_max(c));
	q->io = io;
	q->id = c->next_id++;
	q->cmd = io->to_guest ? VFU_CMD_DMA_WRITE : VFU_CMD_DMA_READ;
	q->addr = io->gpa + io->done;
	q->count = io->chunk;
	q->deadline_ns = now_ns() + VFU_DMA_TIMEOUT_MS * 1000000ull;
	c->ndreq++;
	if (c->ids_issued < VFU_DMA_LATE_WINDOW)
		c->ids_issued++;
	h.msg_id = q->id;
	h.cmd = q->cmd;
	h.flags = VFU_F_TYPE_COMMAND;
	h.size = (uint32_t)(sizeof(h) + sizeof(rw) + (io->to_guest ? q->count : 0));
	rw.addr = q->addr;
	rw.count = q->count;
	iov[0] = (struct iovec){&h, sizeof(h)};
	iov[1] = (struct iovec){&rw, sizeof(rw)};
	if (io->to_guest) {
		iov[2] = (struct iovec){(uint8_t *)io->buf + io->done, (size_t)q->count};
		mh.msg_iovlen = 3;
	}
	if (io->to_guest)
		c->dma_writes++;
	else
		c->dma_reads++;
	dma_timer_arm(c, true);
	if (out < 0)
		return 0; /* test mode without a peer: never answered */
	return send_all(out, &mh, h.size);
}

/* Starts queued copies while slots are free. */
static void dma_pump(struct zoc_vfu_conn *c)
{
	while (c->dq_head && c->ndreq < VFU_DMA_SLOTS && !c->dead && !c->closing) {
		struct zoc_mem_io *io = c->dq_head;
		unsigned i;
		int rc;

		c->dq_head = io->next;
		if (!c->dq_head)
			c->dq_tail = &c->dq_head;
		for (i = 0; i < VFU_DMA_SLOTS && c->dreq[i].io; i++)
			;
		rc = dma_send(c, i, io);
		if (rc) {
			ZOC_WARN_RL("%s: sending a DMA request to the client failed: %s",
				    conn_name(c), strerror(-rc));
			c->dead = true;
			dma_slot_done(c, i, -EIO);
		}
	}
}

/* Fails every copy in flight or queued (the connection goes, or a quiesce
 * must not wait for a client that cannot answer). */
static void dma_fail_all(struct zoc_vfu_conn *c, int status)
{
	struct zoc_mem_io *q = c->dq_head;

	c->dq_head = NULL;
	c->dq_tail = &c->dq_head;
	for (unsigned i = 0; i < VFU_DMA_SLOTS; i++)
		if (c->dreq[i].io)
			dma_slot_done(c, i, status);
	while (q) {
		struct zoc_mem_io *n = q->next;

		c->dma_errors++;
		zoc_mem_io_remote_done(q, status);
		q = n;
	}
}

static void dma_block(struct zoc_vfu_conn *c)
{
	c->dma_blocked = true;
	if (c->ndreq || c->dq_head)
		ZOC_DEBUG("%s: failing %u DMA copies in flight for a quiesce", conn_name(c),
			  c->ndreq);
	dma_fail_all(c, -EAGAIN);
}

static void vfu_remote_rw(void *ctx, struct zoc_mem_io *io)
{
	struct zoc_vfu_conn *c = ctx;

	if (c->dead || c->closing) {
		zoc_mem_io_remote_done(io, -ENOTCONN);
		return;
	}
	if (c->dma_blocked) {
		zoc_mem_io_remote_done(io, -EAGAIN);
		return;
	}
	io->next = NULL;
	*c->dq_tail = io;
	c->dq_tail = &io->next;
	dma_pump(c);
	if (c->dead && !c->pending && !c->closing && !c->in_dispatch && !c->test_mode)
		conn_close(c);
}

static const struct zoc_mem_remote_ops vfu_remote_ops = {
	.rw = vfu_remote_rw,
};

/* Copies older than now fail and the client is dropped. */
static void dma_expire(struct zoc_vfu_conn *c, uint64_t now)
{
	bool expired = false;

	for (unsigned i = 0; i < VFU_DMA_SLOTS; i++) {
		if (c->dreq[i].io && c->dreq[i].deadline_ns <= now) {
			ZOC_WARN_RL("%s: the client did not answer %s id %u of %llu bytes in %d ms; "
				    "resetting the connection",
				    conn_name(c), c->dreq[i].cmd == VFU_CMD_DMA_READ ? "DMA_READ" : "DMA_WRITE",
				    c->dreq[i].id, (unsigned long long)c->dreq[i].count,
				    VFU_DMA_TIMEOUT_MS);
			expired = true;
			break;
		}
	}
	if (!expired)
		return;
	c->dead = true;
	dma_fail_all(c, -ETIMEDOUT);
	if (!c->pending && !c->closing && !c->test_mode)
		conn_close(c);
}

static void dma_tick(void *arg, uint32_t events)
{
	struct zoc_vfu_conn *c = arg;
	uint64_t v;

	(void)events;
	if (read(c->tfd, &v, sizeof(v)) < 0) {
		/* spurious wake-up */
	}
	dma_expire(c, now_ns());
}

/* A reply from the client. 0, or VFU_CLOSE for a reply we cannot accept. */
static int dma_reply(struct zoc_vfu_conn *c, struct vfu_msg *m)
{
	uint32_t plen = m->hdr.size - (uint32_t)sizeof(m->hdr);
	struct vfu_dma_req *q = NULL;
	struct vfu_dma_rw rw;
	unsigned i;

	for (i = 0; i < VFU_DMA_SLOTS; i++) {
		if (c->dreq[i].io && c->dreq[i].id == m->hdr.msg_id) {
			q = &c->dreq[i];
			break;
		}
	}
	if (!q) {
		uint16_t age = (uint16_t)(c->next_id - m->hdr.msg_id);

		if (age >= 1 && age <= c->ids_issued && !m->nfds) {
			/* An answer to a copy we gave up (quiesce, timeout). */
			c->dma_late++;
			ZOC_DEBUG("%s: late reply id %u dropped", conn_name(c), m->hdr.msg_id);
			return 0;
		}
		ZOC_WARN_RL("%s: vfio-user reply id %u (cmd %u) to nothing we sent", conn_name(c),
			    m->hdr.msg_id, m->hdr.cmd);
		return VFU_CLOSE;
	}
	if (m->nfds || m->hdr.cmd != q->cmd ||
	    (m->hdr.flags & ~(VFU_F_TYPE_MASK | VFU_F_ERROR))) {
		ZOC_WARN_RL("%s: malformed reply to %s id %u (cmd %u, flags 0x%x, %zu fds)",
			    conn_name(c), cmd_name(q->cmd), q->id, m->hdr.cmd, m->hdr.flags,
			    m->nfds);
		dma_slot_done(c, i, -EIO);
		return VFU_CLOSE;
	}
	if (m->hdr.flags & VFU_F_ERROR) {
		/* The client refused (an address it does not know ...): that
		 * copy fails, the connection stays. */
		ZOC_WARN_RL("%s: client failed %s of %llu bytes at 0x%llx: %s", conn_name(c),
			    cmd_name(q->cmd), (unsigned long long)q->count,
			    (unsigned long long)q->addr, strerror((int)m->hdr.error));
		dma_slot_done(c, i, -EIO);
		return 0;
	}
	if (q->cmd == VFU_CMD_DMA_WRITE && (plen == 0 || plen == 12)) {
		/* Clients that answer a DMA_WRITE with the header only or with
		 * address + a 4-byte count (early drafts; QEMU 11.1 sends the
		 * spec's 16 bytes): accepted, the address checked when
		 * present. */
		uint64_t a = q->addr;
		uint32_t c32 = (uint32_t)q->count;

		if (plen == 12) {
			memcpy(&a, m->payload, 8);
			memcpy(&c32, m->payload + 8, 4);
		}
		if (a != q->addr || c32 != (uint32_t)q->count) {
			ZOC_WARN_RL("%s: DMA_WRITE reply answers [0x%llx, +%u), not [0x%llx, +%llu)",
				    conn_name(c), (unsigned long long)a, c32,
				    (unsigned long long)q->addr, (unsigned long long)q->count);
			dma_slot_done(c, i, -EIO);
			return VFU_CLOSE;
		}
		dma_slot_done(c, i, 0);
		dma_pump(c);
		return 0;
	}
	if (plen < sizeof(rw)) {
		ZOC_WARN_RL("%s: %s reply of %u bytes", conn_name(c), cmd_name(q->cmd), plen);
		dma_slot_done(c, i, -EIO);
		return VFU_CLOSE;
	}
	memcpy(&rw, m->payload, sizeof(rw));
	if (rw.addr != q->addr || rw.count != q->count ||
	    plen != sizeof(rw) + (q->cmd == VFU_CMD_DMA_READ ? q->count : 0)) {
		bool short_ok = rw.addr == q->addr && rw.count < q->count &&
				plen == sizeof(rw) + (q->cmd == VFU_CMD_DMA_READ ? rw.count : 0);

		/* A consistent short transfer fails the copy (we asked for no
		 * more than the client takes) but is no protocol error. */
		ZOC_WARN_RL("%s: %s reply for [0x%llx, +%llu) with %u bytes answers [0x%llx, +%llu)",
			    conn_name(c), cmd_name(q->cmd), (unsigned long long)rw.addr,
			    (unsigned long long)rw.count, plen, (unsigned long long)q->addr,
			    (unsigned long long)q->count);
		dma_slot_done(c, i, -EIO);
		return short_ok ? 0 : VFU_CLOSE;
	}
	if (q->cmd == VFU_CMD_DMA_READ)
		memcpy((uint8_t *)q->io->buf + q->io->done, m->payload + sizeof(rw), (size_t)q->count);
	dma_slot_done(c, i, 0);
	dma_pump(c);
	return 0;
}

/* ------------------------------------------------------- async machinery */

/* The model finished an asynchronous step: run the continuation (it sends
 * the reply), then read on. */
static void async_done(void *arg)
{
	struct zoc_vfu_conn *c = arg;
	vfu_cont_fn fn = c->cont;

	c->cont = NULL;
	if (fn)
		fn(c);
	c->pending = false;
	if (c->in_dispatch)
		return; /* completed synchronously: the dispatcher goes on */
	conn_resume(c);
}

/* Installs c->new_mem while the function is quiesced. */
static void dma_swap_cont(struct zoc_vfu_conn *c)
{
	if (c->ops && c->ops->set_dma)
		c->ops->set_dma(c->f, c->new_mem);
	if (c->ops && c->ops->quiesce && c->ops->resume)
		c->ops->resume(c->f);
	if (c->mem)
		zoc_mem_put(c->mem);
	c->mem = c->new_mem;
	c->new_mem = NULL;
	c->dma_blocked = false;
	send_reply(c, &c->ahdr, 0, c->areply, c->areply_len, NULL, 0, -1);
}

/* Quiesces the function, installs new_mem, resumes, then replies with
 * reply[0, len). */
static int dma_install(struct zoc_vfu_conn *c, const struct vfu_hdr *h, struct zoc_mem *new_mem,
		       const void *reply, uint32_t len)
{
	c->new_mem = new_mem;
	c->ahdr = *h;
	if (len)
		memcpy(c->areply, reply, len);
	c->areply_len = len;
	c->cont = dma_swap_cont;
	c->pending = true;
	dma_block(c);
	if (c->ops && c->ops->quiesce)
		c->ops->quiesce(c->f, async_done, c);
	else
		async_done(c);
	return VFU_ASYNC;
}

static void reset_cont(struct zoc_vfu_conn *c)
{
	/* A function reset drops the model's DMA space; the client's maps
	 * stay valid (they belong to its container), so give it back. */
	if (c->ops && c->ops->set_dma)
		c->ops->set_dma(c->f, c->mem);
	ZOC_INFO("%s: device reset", conn_name(c));
	c->dma_blocked = false;
	send_reply(c, &c->ahdr, 0, NULL, 0, NULL, 0, -1);
}

/* --------------------------------------------------------------- handlers */

static int version_parse_caps(struct zoc_vfu_conn *c, const char *data, size_t len)
{
	json_error_t err;
	json_t *root, *caps, *v;
	const char *key;

	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &err);
	if (!root) {
		ZOC_WARN_RL("%s: VERSION capabilities are not JSON: %s", conn_name(c), err.text);
		return -EINVAL;
	}
	if (!json_is_object(root))
		goto bad;
	caps = json_object_get(root, "capabilities");
	if (!caps)
		goto ok;
	if (!json_is_object(caps))
		goto bad;
	json_object_foreach(caps, key, v) {
		if (!strcmp(key, "max_msg_fds")) {
			if (!json_is_integer(v) || json_integer_value(v) < 0)
				goto bad;
			c->client_max_fds = (uint32_t)ZOC_MIN(json_integer_value(v), 1024);
		} else if (!strcmp(key, "max_data_xfer_size")) {
			if (!json_is_integer(v) || json_integer_value(v) <= 0)
				goto bad;
			c->client_max_xfer = (uint64_t)json_integer_value(v);
		} else if (!strcmp(key, "pgsizes") || !strcmp(key, "max_dma_maps")) {
			if (!json_is_integer(v) || json_integer_value(v) < 0)
				goto bad;
		} else if (!strcmp(key, "write_multiple")) {
			if (!json_is_boolean(v))
				goto bad;
			c->write_multi = json_is_true(v);
		}
		/* anything else (migration, twin_socket, newer keys): ignored */
	}
ok:
	json_decref(root);
	return 0;
bad:
	ZOC_WARN_RL("%s: malformed VERSION capabilities", conn_name(c));
	json_decref(root);
	return -EINVAL;
}

static int h_VERSION(struct zoc_vfu_conn *c, struct vfu_msg *m)
{
	struct vfu_version v;
	size_t dlen = m->hdr.size - sizeof(m->hdr) - sizeof(v);
	const char *data = (const char *)m->payload + sizeof(v);
	char caps[256];
	json_t *o;
	char *s;
	int rc;

	memcpy(&v, m->payload, sizeof(v));
	if (c->versioned) {
		ZOC_WARN_RL("%s: second VERSION refused", conn_name(c));
		return -EINVAL;
	}
	if (v.major != VFU_MAJOR) {
		ZOC_WARN_RL("%s: client speaks vfio-user %u.%u, we speak %u.%u", conn_name(c),
			    v.major, v.minor, VFU_MAJOR, VFU_MINOR);
		send_reply(c, &m->hdr, ENOTSUP, NULL, 0, NULL, 0, -1);
		return VFU_CLOSE;
	}
	/* Defaults when the client says nothing. */
	c->client_max_fds = 1;
	c->client_max_xfer = VFU_MAX_XFER;
	c->write_multi = false;
	if (dlen && data[dlen - 1] == '\0')
		dlen--; /* the terminating NUL */
	if (dlen) {
		if (memchr(data, '\0', dlen) || version_parse_caps(c, data, dlen)) {
			send_reply(c, &m->hdr, EINVAL, NULL, 0, NULL, 0, -1);
			return VFU_CLOSE;
		}
	}
	c->minor = ZOC_MIN(v.minor, VFU_MINOR);
	o = json_pack("{s:{s:i, s:I, s:I, s:i}}", "capabilities", "max_msg_fds", VFU_MAX_FDS,
		      "max_data_xfer_size", (json_int_t)VFU_MAX_XFER, "pgsizes",
		      (json_int_t)VFU_PGSIZES, "max_dma_maps", VFU_MAX_DMA_MAPS);
	if (!o)
		return VFU_CLOSE;
	if (c->write_multi)
		json_object_set_new(json_object_get(o, "capabilities"), "write_multiple",
				    json_true());
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s || strlen(s) >= sizeof(caps)) {
		free(s);
		return VFU_CLOSE;
	}
	snprintf(caps, sizeof(caps), "%s", s);
	free(s);
	v.major = VFU_MAJOR;
	v.minor = c->minor;
	c->versioned = true;
	ZOC_INFO("%s: vfio-user %u.%u negotiated (client takes %u fds per message%s)",
		 conn_name(c), v.major, v.minor, c->client_max_fds,
		 c->write_multi ? ", write_multiple" : "");
	rc = send_reply(c, &m->hdr, 0, &v, sizeof(v), caps, strlen(caps) + 1, -1);
	return rc ? VFU_CLOSE : 0;
}

static int h_DMA_MAP(struct zoc_vfu_conn *c, struct vfu_msg *m)
{
	struct vfu_dma_map r;
	struct vfu_dma *d;
	struct zoc_mem *mem;
	uint64_t end;
	int fd, rc;

	memcpy(&r, m->payload, sizeof(r));
	if (r.argsz < sizeof(r) || (r.flags & ~(VFU_DMA_READ | VFU_DMA_WRITE)) || !r.size ||
	    __builtin_add_overflow(r.addr, r.size - 1, &end) || ((r.addr | r.size) & (VFU_PAGE - 1))) {
		ZOC_WARN_RL("%s: DMA_MAP [0x%llx, +0x%llx) flags 0x%x argsz %u refused",
			    conn_name(c), (unsigned long long)r.addr, (unsigned long long)r.size,
			    r.flags, r.argsz);
		return -EINVAL;
	}
	for (unsigned i = 0; i < c->nmaps; i++) {
		if (ranges_overlap(r.addr, r.size, c->maps[i].iova, c->maps[i].size)) {
			ZOC_WARN_RL("%s: DMA_MAP [0x%llx, +0x%llx) overlaps [0x%llx, +0x%llx)",
				    conn_name(c), (unsigned long long)r.addr,
				    (unsigned long long)r.size,
				    (unsigned long long)c->maps[i].iova,
				    (unsigned long long)c->maps[i].size);
			return -EEXIST;
		}
	}
	if (c->nmaps >= VFU_MAX_DMA_MAPS) {
		ZOC_WARN_RL("%s: DMA_MAP beyond the %d maps we advertised", conn_name(c),
			    VFU_MAX_DMA_MAPS);
		return -ENOSPC;
	}
	fd = msg_take_fd(m, 0);
	if (fd >= 0) {
		rc = zoc_fd_covers(fd, r.offset, r.size);
		if (rc) {
			ZOC_WARN_RL("%s: DMA_MAP fd does not cover [0x%llx, +0x%llx)",
				    conn_name(c), (unsigned long long)r.offset,
				    (unsigned long long)r.size);
			close(fd);
			return rc;
		}
	}
	d = &c->maps[c->nmaps++];
	*d = (struct vfu_dma){.iova = r.addr, .size = r.size, .offset = r.offset,
			      .prot = r.flags, .fd = fd};
	if (fd < 0)
		ZOC_LOG_RL(ZOC_LOG_INFO, "%s: DMA region [0x%llx, +0x%llx) has no fd: devices reach it "
			 "through DMA_READ/DMA_WRITE messages (slow path)",
			 conn_name(c), (unsigned long long)r.addr, (unsigned long long)r.size);
	rc = mem_build(c, &mem);
	if (rc) {
		map_remove(c, c->nmaps - 1);
		return rc;
	}
	ZOC_DEBUG("%s: DMA_MAP [0x%llx, +0x%llx) %s", conn_name(c), (unsigned long long)r.addr,
		  (unsigned long long)r.size, (r.flags & VFU_DMA_WRITE) ? "rw" : "ro");
	return dma_install(c, &m->hdr, mem, NULL, 0);
}

static int h_DMA_UNMAP(struct zoc_vfu_conn *c, struct vfu_msg *m)
{
	struct vfu_dma_unmap r;
	bool found = false;
	struct zoc_mem *mem;
	int rc;

	memcpy(&r, m->payload, sizeof(r));
	if (r.flags & VFU_DMA_UNMAP_GET_DIRTY_BITMAP) {
		ZOC_WARN_RL("%s: DMA_UNMAP with a dirty bitmap: no migration support",
			    conn_name(c));
		return -ENOTSUP;
	}
	if ((r.flags & ~VFU_DMA_UNMAP_ALL) || r.argsz < sizeof(r) ||
	    ((r.flags & VFU_DMA_UNMAP_ALL) && (r.addr || r.size)) ||
	    m->hdr.size != sizeof(m->hdr) + sizeof(r)) {
		ZOC_WARN_RL("%s: malformed DMA_UNMAP (flags 0x%x, argsz %u)", conn_name(c),
			    r.flags, r.argsz);
		return -EINVAL;
	}
	for (unsigned i = 0; i < c->nmaps;) {
		struct vfu_dma *d = &c->maps[i];

		if ((r.flags & VFU_DMA_UNMAP_ALL) || (d->iova == r.addr && d->size == r.size)) {
			found = true;
			map_remove(c, i);
			continue;
		}
		i++;
	}
	if (!found && !(r.flags & VFU_DMA_UNMAP_ALL)) {
		ZOC_WARN_RL("%s: DMA_UNMAP [0x%llx, +0x%llx) matches no map", conn_name(c),
			    (unsigned long long)r.addr, (unsigned long long)r.size);
		return -ENOENT;
	}
	rc = mem_build(c, &mem);
	if (rc) {
		/* Rebuilding maps every remaining region again; if that fails
		 * the old table must still go: install none. */
		mem = NULL;
	}
	return dma_install(c, &m->hdr, mem, &r, sizeof(r));
}

static int h_DEVICE_GET_INFO(struct zoc_vfu_conn *c, struct vfu_msg *m)
{
	struct vfu_device_info r;

	memcpy(&r, m->payload, sizeof(r));
	if (r.argsz < sizeof(r))
		return -EINVAL;
	r = (struct vfu_device_info){.argsz = sizeof(r),
				     .flags = VFU_DEVICE_FLAGS_RESET | VFU_DEVICE_FLAGS_PCI,
				     .num_regions = VFU_PCI_NUM_REGIONS,
				     .num_irqs = VFU_PCI_NUM_IRQS};
	return reply_ok(c, &m->hdr, &r, sizeof(r));
}

/* Size of region idx (0: absent). */
static uint64_t region_size(struct zoc_vfu_conn *c, uint32_t idx)
{
	if (idx <= VFU_PCI_BAR5_REGION_INDEX)
		return zoc_pci_bar_size(c->f, idx);
	if (idx == VFU_PCI_CONFIG_REGION_INDEX)
		return ZOC_PCI_CFG_SIZE;
	return 0;
}

/*
 * The model's mmap areas of a BAR, checked: page-aligned, inside the BAR,
 * not overlapping, all in one fd at one fixed distance from their BAR offset
 * (one fd per region is all vfio-user carries). Returns the count (0: no
 * mmap), the fd and the region's mmap offset: the client maps area i at
 * region offset + area offset, so an area's fd offset must not be below its
 * BAR offset (QEMU refuses a region whose offset wrapped around: "failed to
 * get region info: Invalid argument"). A model with a doorbell page at BAR
 * offset 0x1000 puts it at fd offset 0x1000 (or more) of its memfd.
 */
static int bar_mmap_areas(struct zoc_vfu_conn *c, unsigned bar, uint64_t bar_size,
			  struct zoc_pci_mmap_area *a, int *fd, uint64_t *base)
{
	int n;

	if (!c->ops || !c->ops->bar_mmap_areas || c->client_max_fds < 1)
		return 0;
	n = c->ops->bar_mmap_areas(c->f, bar, a, VFU_MAX_SPARSE_AREAS);
	if (n <= 0)
		return 0;
	n = ZOC_MIN(n, VFU_MAX_SPARSE_AREAS);
	for (int i = 0; i < n; i++) {
		if (a[i].fd < 0 || a[i].fd != a[0].fd || !a[i].size ||
		    ((a[i].offset | a[i].size | a[i].fd_offset) & (VFU_PAGE - 1)) ||
		    zoc_range_bad(a[i].offset, a[i].size, bar_size) ||
		    zoc_range_bad(a[i].fd_offset, a[i].size, (uint64_t)INT64_MAX) ||
		    a[i].fd_offset < a[i].offset ||
		    a[i].fd_offset - a[i].offset != a[0].fd_offset - a[0].offset)
			goto bad;
		for (int j = 0; j < i; j++)
			if (ranges_overlap(a[i].offset, a[i].size, a[j].offset, a[j].size))
				goto bad;
	}
	*fd = a[0].fd;
	*base = a[0].fd_offset - a[0].offset;
	return n;
bad:
	ZOC_WARN_RL("%s: BAR%u mmap areas are not usable with vfio-user (one fd, fd offset >= BAR "
		    "offset at one distance for all, page-aligned, inside the BAR); the client traps every access",
		    conn_name(c), bar);
	return 0;
}

static int h_DEVICE_GET_REGION_INFO(struct zoc_vfu_conn *c, struct vfu_msg *m)
{
	struct vfu_region_info r;
	struct zoc_pci_mmap_area areas[VFU_MAX_SPARSE_AREAS];
	struct {
		struct vfu_cap_sparse_mmap cap;
		struct vfu_sparse_mmap_area a[VFU_MAX_SPARSE_AREAS];
	} __attribute__((packed)) sp;
	uint32_t argsz, index, need, caplen = 0;
	uint64_t base = 0;
	int n = 0, fd = -1;

	memcpy(&r, m->payload, sizeof(r));
	argsz = r.argsz;
	index = r.index;
	if (argsz < sizeof(r) || index >= VFU_PCI_NUM_REGIONS) {
		ZOC_WARN_RL("%s: GET_REGION_INFO for region %u with argsz %u refused",
			    conn_name(c), index, argsz);
		return -EINVAL;
	}
	memset(&r, 0, sizeof(r));
	memset(&sp, 0, sizeof(sp));
	r.index = index;
	r.size = region_size(c, index);
	if (r.size)
		r.flags = VFU_REGION_INFO_FLAG_READ | VFU_REGION_INFO_FLAG_WRITE;
	if (r.size && index <= VFU_PCI_BAR5_REGION_INDEX)
		n = bar_mmap_areas(c, index, r.size, areas, &fd, &base);
	if (n > 0) {
		sp.cap.hdr.id = VFU_REGION_INFO_CAP_SPARSE_MMAP;
		sp.cap.hdr.version = VFU_REGION_INFO_CAP_SPARSE_MMAP_VERSION;
		sp.cap.nr_areas = (uint32_t)n;
		for (int i = 0; i < n; i++) {
			sp.a[i].offset = areas[i].offset;
			sp.a[i].size = areas[i].size;
		}
		caplen = (uint32_t)(sizeof(sp.cap) + (size_t)n * sizeof(sp.a[0]));
		r.flags |= VFU_REGION_INFO_FLAG_MMAP | VFU_REGION_INFO_FLAG_CAPS;
		r.offset = base;
	}
	need = (uint32_t)sizeof(r) + caplen;
	r.argsz = need;
	if (argsz < need) {
		/* Too small for the capability: the fixed part tells how much
		 * is needed and the client asks again with a larger argsz. No
		 * CAPS flag with cap_offset 0 (QEMU's vfio-user refuses that
		 * with EINVAL, unlike the kernel's ioctl), no MMAP, no fd. */
		caplen = 0;
		r.flags &= ~(VFU_REGION_INFO_FLAG_CAPS | VFU_REGION_INFO_FLAG_MMAP);
		r.offset = 0;
		fd = -1;
	} else if (caplen) {
		r.cap_offset = sizeof(r);
	}
	send_reply(c, &m->hdr, 0, &r, sizeof(r), &sp, caplen, fd);
	return 0;
}

static int h_DEVICE_GET_IRQ_INFO(struct zoc_vfu_conn *c, struct vfu_msg *m)
{
	struct vfu_irq_info r;

	memcpy(&r, m->payload, sizeof(r));
	if (r.argsz < sizeof(r) || r.index >= VFU_PCI_NUM_IRQS) {
		ZOC_WARN_RL("%s: GET_IRQ_INFO for index %u with argsz %u refused", conn_name(c),
			    r.index, r.argsz);
		return -EINVAL;
	}
	r.argsz = sizeof(r);
	r.count = zoc_pci_irq_count(c->f, (enum zoc_pci_irq_type)r.index);
	r.flags = 0;
	if (r.count) {
		r.flags = VFU_IRQ_INFO_EVENTFD;
		if (r.index == ZOC_PCI_IRQ_INTX)
			r.flags |= VFU_IRQ_INFO_MASKABLE | VFU_IRQ_INFO_AUTOMASKED;
		else if (r.index == ZOC_PCI_IRQ_MSI)
			r.flags |= VFU_IRQ_INFO_NORESIZE;
		/* MSI-X vectors are set one by one (no NORESIZE). */
	}
	return reply_ok(c, &m->hdr, &r, sizeof(r));
}

/*
 * vfio-user clients emulate the MSI-X table themselves (QEMU's vfio-pci
 * overlays it with its own msix emulation and forwards only PBA reads), so
 * the guest's per-vector mask bits never reach the function: the client
 * masks a vector by withdrawing or redirecting its eventfd. The function's
 * table would keep every vector masked as after reset, and no interrupt
 * would ever be signalled. So the link keeps that table in step with what
 * the client says: a vector that gets an eventfd is unmasked there, one
 * whose eventfd is withdrawn is masked. (A client that writes the table
 * itself through REGION_WRITE still can.)
 */
static void msix_table_mask(struct zoc_vfu_conn *c, uint32_t start, uint32_t count, bool mask)
{
	const struct zoc_pci_desc *d = zoc_pci_func_desc(c->f);
	uint32_t ctrl = mask ? 1 : 0;

	for (uint32_t v = start; v < start + count && v < d->msix_vectors; v++)
		zoc_pci_bar_access(c->f, d->msix_bar, d->msix_table_offset + 16ull * v + 12, &ctrl,
				   4, true);
}

/* Removes the eventfds of vectors [start, start + count). */
static int irq_clear_fds(struct zoc_vfu_conn *c, enum zoc_pci_irq_type t, uint32_t start,
			 uint32_t count)
{
	int none[64];

	for (size_t i = 0; i < ZOC_ARRAY_SIZE(none); i++)
		none[i] = -1;
	while (count) {
		uint32_t k = ZOC_MIN(count, (uint32_t)ZOC_ARRAY_SIZE(none));
		int rc = zoc_pci_irq_set_fds(c->f, t, start, k, none);

		if (rc)
			return rc;
		start += k;
		count -= k;
	}
	return 0;
}

static int h_DEVICE_SET_IRQS(struct zoc_vfu_conn *c, struct vfu_msg *m)
{
	struct vfu_irq_set r;
	uint32_t data_len = m->hdr.size - (uint32_t)(sizeof(m->hdr) + sizeof(r));
	const uint8_t *data = m->payload + sizeof(r);
	uint32_t dtype, action, nvec, end;
	enum zoc_pci_irq_type t;
	int rc = 0;

	memcpy(&r, m->payload, sizeof(r));
	dtype = r.flags & VFU_IRQ_SET_DATA_MASK;
	action = r.flags & VFU_IRQ_SET_ACTION_MASK_ALL;
	if (r.argsz < sizeof(r) || r.index >= VFU_PCI_NUM_IRQS ||
	    (r.flags & ~(VFU_IRQ_SET_DATA_MASK | VFU_IRQ_SET_ACTION_MASK_ALL)) ||
	    __builtin_popcount(dtype) != 1 || __builtin_popcount(action) != 1)
		goto bad;
	t = (enum zoc_pci_irq_type)r.index;
	nvec = zoc_pci_irq_count(c->f, t);
	/* Payload: nothing after the header for NONE; count booleans for
	 * BOOL; for EVENTFD the fds come as SCM_RIGHTS (clients that copy the
	 * ioctl layout may add count ints, which are ignored). */
	if ((dtype == VFU_IRQ_SET_DATA_NONE && data_len) ||
	    (dtype == VFU_IRQ_SET_DATA_BOOL && data_len != r.count) ||
	    (dtype == VFU_IRQ_SET_DATA_EVENTFD && data_len &&
	     (uint64_t)data_len != (uint64_t)r.count * sizeof(int32_t)) ||
	    (dtype != VFU_IRQ_SET_DATA_EVENTFD && m->nfds))
		goto bad;
	/* count 0 (start 0) with DATA_NONE + TRIGGER: disable the whole index. */
	if (!r.count) {
		if (r.start || dtype != VFU_IRQ_SET_DATA_NONE ||
		    action != VFU_IRQ_SET_ACTION_TRIGGER)
			goto bad;
		rc = zoc_pci_irq_set_fds(c->f, t, 0, 0, NULL);
		if (rc)
			return rc;
		if (t == ZOC_PCI_IRQ_MSIX)
			msix_table_mask(c, 0, nvec, true);
		return reply_ok(c, &m->hdr, NULL, 0);
	}
	if (__builtin_add_overflow(r.start, r.count, &end) || end > nvec)
		goto bad;
	switch (dtype) {
	case VFU_IRQ_SET_DATA_EVENTFD:
		if (action != VFU_IRQ_SET_ACTION_TRIGGER) {
			/* Mask/unmask notification fds (KVM's INTx resampler)
			 * are not supported; the client falls back. */
			ZOC_DEBUG("%s: SET_IRQS eventfd for mask/unmask refused", conn_name(c));
			return -ENOTSUP;
		}
		if (m->nfds == 0) {
			rc = irq_clear_fds(c, t, r.start, r.count);
			if (!rc && t == ZOC_PCI_IRQ_MSIX)
				msix_table_mask(c, r.start, r.count, true);
		} else if (m->nfds == r.count) {
			rc = zoc_pci_irq_set_fds(c->f, t, r.start, r.count, m->fds);
			m->nfds = 0; /* the function owns them now, success or not */
			if (!rc && t == ZOC_PCI_IRQ_MSIX)
				msix_table_mask(c, r.start, r.count, false);
		} else {
			ZOC_WARN_RL("%s: SET_IRQS for %u vectors with %zu fds", conn_name(c),
				    r.count, m->nfds);
			return -EINVAL;
		}
		break;
	case VFU_IRQ_SET_DATA_NONE:
		if (action == VFU_IRQ_SET_ACTION_TRIGGER)
			rc = zoc_pci_irq_trigger(c->f, t, r.start, r.count);
		else
			rc = zoc_pci_irq_mask(c->f, t, r.start, r.count,
					      action == VFU_IRQ_SET_ACTION_MASK);
		break;
	case VFU_IRQ_SET_DATA_BOOL:
		for (uint32_t i = 0; i < r.count && !rc; i++) {
			if (!data[i])
				continue;
			if (action == VFU_IRQ_SET_ACTION_TRIGGER)
				rc = zoc_pci_irq_trigger(c->f, t, r.start + i, 1);
			else
				rc = zoc_pci_irq_mask(c->f, t, r.start + i, 1,
						      action == VFU_IRQ_SET_ACTION_MASK);
		}
		break;
	}
	if (rc)
		return rc;
	return reply_ok(c, &m->hdr, NULL, 0);
bad:
	ZOC_WARN_RL("%s: SET_IRQS index %u flags 0x%x start %u count %u (%u data bytes, %zu fds) "
		    "refused",
		    conn_name(c), r.index, r.flags, r.start, r.count, data_len, m->nfds);
	return -EINVAL;
}

/* One access to a region: config space or a BAR. */
static int region_access(struct zoc_vfu_conn *c, uint32_t idx, uint64_t off, void *buf,
			 uint32_t count, bool is_write)
{
	uint64_t size = region_size(c, idx);

	if (!size || !count || count > VFU_MAX_XFER || zoc_range_bad(off, count, size)) {
		ZOC_WARN_RL("%s: %s of %u bytes at 0x%llx of region %u (size 0x%llx) refused",
			    conn_name(c), is_write ? "write" : "read", count,
			    (unsigned long long)off, idx, (unsigned long long)size);
		return -EINVAL;
	}
	if (idx == VFU_PCI_CONFIG_REGION_INDEX)
		return zoc_pci_cfg_access(c->f, (uint32_t)off, buf, count, is_write);
	return zoc_pci_bar_access(c->f, idx, off, buf, count, is_write);
}

static int h_REGION_READ(struct zoc_vfu_conn *c, struct vfu_msg *m)
{
	struct vfu_region_rw r;
	int rc;

	memcpy(&r, m->payload, sizeof(r));
	if (r.count > VFU_MAX_XFER)
		return -EINVAL;
	/* The data goes right after the request in the payload buffer. */
	rc = region_access(c, r.region, r.offset, m->payload + sizeof(r), r.count, false);
	if (rc)
		return rc;
	send_reply(c, &m->hdr, 0, &r, sizeof(r), m->payload + sizeof(r), r.count, -1);
	return 0;
}

static int h_REGION_WRITE(struct zoc_vfu_conn *c, struct vfu_msg *m)
{
	struct vfu_region_rw r;
	int rc;

	memcpy(&r, m->payload, sizeof(r));
	if ((uint64_t)r.count + sizeof(r) + sizeof(m->hdr) != m->hdr.size) {
		ZOC_WARN_RL("%s: REGION_WRITE of %u bytes in a %u-byte message", conn_name(c),
			    r.count, m->hdr.size);
		return -EINVAL;
	}
	rc = region_access(c, r.region, r.offset, m->payload + sizeof(r), r.count, true);
	if (rc)
		return rc;
	return reply_ok(c, &m->hdr, &r, sizeof(r));
}

static int h_REGION_WRITE_MULTI(struct zoc_vfu_conn *c, struct vfu_msg *m)
{
	uint64_t n;
	int rc;

	memcpy(&n, m->payload, sizeof(n));
	if (!c->write_multi || n > VFU_WRITE_MULTI_MAX ||
	    m->hdr.size != sizeof(m->hdr) + sizeof(n) + n * sizeof(struct vfu_write_one)) {
		ZOC_WARN_RL("%s: malformed REGION_WRITE_MULTI (%llu writes, %u bytes%s)",
			    conn_name(c), (unsigned long long)n, m->hdr.size,
			    c->write_multi ? "" : ", not negotiated");
		return -EINVAL;
	}
	for (uint64_t i = 0; i < n; i++) {
		struct vfu_write_one w;

		memcpy(&w, m->payload + sizeof(n) + i * sizeof(w), sizeof(w));
		if (!w.count || w.count > VFU_WRITE_MULTI_DATA)
			return -EINVAL;
		rc = region_access(c, w.region, w.offset, w.data, w.count, true);
		if (rc)
			return rc;
	}
	return reply_ok(c, &m->hdr, &n, sizeof(n));
}

static int h_DEVICE_RESET(struct zoc_vfu_conn *c, struct vfu_msg *m)
{
	c->ahdr = m->hdr;
	c->areply_len = 0;
	c->cont = reset_cont;
	c->pending = true;
	dma_block(c);
	zoc_pci_func_reset(c->f, async_done, c);
	return VFU_ASYNC;
}

struct vfu_cmd_desc {
	const char *name;
	uint32_t min, max;
	unsigned max_fds;
	vfu_handler fn;
};

static const struct vfu_cmd_desc *cmd_desc(uint32_t cmd)
{
	static const struct vfu_cmd_desc table[] = {
#define X(name, id, mn, mx, fds) [id] = {#name, (uint32_t)(mn), (uint32_t)(mx), fds, h_##name},
		VFU_COMMANDS(X)
#undef X
	};

	if (cmd >= ZOC_ARRAY_SIZE(table) || !table[cmd].fn)
		return NULL;
	return &table[cmd];
}

/* Validates and runs one whole message. Closes its fds whatever happens.
 * Returns 0, or VFU_CLOSE when the connection must go. */
static int vfu_dispatch(struct zoc_vfu_conn *c, struct vfu_msg *m)
{
	const struct vfu_cmd_desc *d = cmd_desc(m->hdr.cmd);
	uint32_t plen = m->hdr.size - (uint32_t)sizeof(m->hdr);
	int rc;

	c->nmsgs++;
	if ((m->hdr.flags & VFU_F_TYPE_MASK) == VFU_F_TYPE_REPLY && c->versioned) {
		/* An answer to one of our DMA_READ / DMA_WRITE. */
		c->in_dispatch = true;
		rc = dma_reply(c, m);
		c->in_dispatch = false;
		goto out;
	}
	if ((m->hdr.flags & VFU_F_TYPE_MASK) != VFU_F_TYPE_COMMAND) {
		ZOC_WARN_RL("%s: vfio-user message of type %u (flags 0x%x) from the client",
			    conn_name(c), m->hdr.flags & VFU_F_TYPE_MASK, m->hdr.flags);
		rc = VFU_CLOSE;
		goto out;
	}
	if (!c->versioned && m->hdr.cmd != VFU_CMD_VERSION) {
		ZOC_WARN_RL("%s: %s before VERSION", conn_name(c), cmd_name(m->hdr.cmd));
		rc = VFU_CLOSE;
		goto out;
	}
	if (m->hdr.flags & ~(VFU_F_TYPE_MASK | VFU_F_NO_REPLY)) {
		ZOC_WARN_RL("%s: %s with unknown flags 0x%x", conn_name(c), cmd_name(m->hdr.cmd),
			    m->hdr.flags);
		rc = -EINVAL;
		goto reply;
	}
	if (!d) {
		ZOC_WARN_RL("%s: unsupported vfio-user command %u (%s)", conn_name(c),
			    m->hdr.cmd, cmd_name(m->hdr.cmd));
		rc = -ENOTSUP;
		goto reply;
	}
	if (plen < d->min || (d->max != VFU_VAR && plen > d->max)) {
		ZOC_WARN_RL("%s: malformed %s: %u payload bytes (want %u..%u)", conn_name(c),
			    d->name, plen, d->min, d->max == VFU_VAR ? (unsigned)VFU_MAX_PAYLOAD : d->max);
		rc = m->hdr.cmd == VFU_CMD_VERSION ? VFU_CLOSE : -EINVAL;
		goto reply;
	}
	if (m->nfds > d->max_fds) {
		ZOC_WARN_RL("%s: %s with %zu fds (takes %u)", conn_name(c), d->name, m->nfds,
			    d->max_fds);
		rc = -EINVAL;
		goto reply;
	}
	ZOC_DEBUG("%s: %s id %u", conn_name(c), d->name, m->hdr.msg_id);
	c->in_dispatch = true;
	rc = d->fn(c, m);
	c->in_dispatch = false;
reply:
	if (rc < 0) {
		if (!c->versioned)
			rc = VFU_CLOSE;
		else
			send_reply(c, &m->hdr, -rc, NULL, 0, NULL, 0, -1);
	}
out:
	msg_close_fds(m);
	if (rc == VFU_CLOSE || c->dead) {
		c->dead = true;
		/* No answer will come on a connection we are closing. */
		dma_fail_all(c, -ENOTCONN);
		return VFU_CLOSE;
	}
	return 0;
}

/* --------------------------------------------------------------- socket */

/* Reads from the socket. 1 = a whole message in c->msg, 0 = more bytes
 * needed, <0 = EOF / error / malformed framing. */
static int conn_read(struct zoc_vfu_conn *c)
{
	struct vfu_msg *m = &c->msg;

	if (c->got < sizeof(m->hdr)) {
		ssize_t n = zoc_usock_recv(c->fd, (uint8_t *)&m->hdr + c->got,
					   sizeof(m->hdr) - c->got, m->fds, &m->nfds, VFU_MAX_FDS);

		if (n == -EMSGSIZE) {
			ZOC_WARN_RL("%s: more than %d fds in one message", conn_name(c),
				    VFU_MAX_FDS);
			return -EINVAL;
		}
		if (n <= 0)
			return (int)n;
		c->got += (size_t)n;
		if (c->got < sizeof(m->hdr))
			return 0;
		if (m->hdr.size < sizeof(m->hdr) || m->hdr.size > VFU_MAX_MSG) {
			ZOC_WARN_RL("%s: vfio-user message %u of %u bytes (%zu..%zu)",
				    conn_name(c), m->hdr.cmd, m->hdr.size, sizeof(m->hdr),
				    (size_t)VFU_MAX_MSG);
			return -EINVAL;
		}
	}
	if (c->got < m->hdr.size) {
		size_t off = c->got - sizeof(m->hdr);
		/* recv() without a control buffer: the kernel drops fds sent
		 * with payload bytes. */
		ssize_t n = recv(c->fd, m->payload + off, m->hdr.size - c->got, MSG_DONTWAIT);

		if (n == 0)
			return -ECONNRESET;
		if (n < 0)
			return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
		c->got += (size_t)n;
		if (c->got < m->hdr.size)
			return 0;
	}
	return 1;
}

static void conn_process(struct zoc_vfu_conn *c)
{
	while (!c->pending && !c->closing && !c->dead) {
		int rc = conn_read(c);

		if (rc == 0)
			return;
		if (rc < 0) {
			if (rc != -ECONNRESET)
				ZOC_WARN_RL("%s: vfio-user connection error: %s", conn_name(c),
					    strerror(-rc));
			msg_close_fds(&c->msg);
			c->dead = true;
			break;
		}
		c->got = 0;
		if (vfu_dispatch(c, &c->msg) == VFU_CLOSE)
			ZOC_WARN_RL("%s: closing the vfio-user connection after %s",
				    conn_name(c), cmd_name(c->msg.hdr.cmd));
	}
	if (c->dead && !c->pending && !c->closing)
		conn_close(c); /* may free c */
}

static void conn_on_fd(void *arg, uint32_t events)
{
	struct zoc_vfu_conn *c = arg;

	if (c->pending) {
		/* Reading is paused; epoll reports HUP/ERR whatever the mask, so
		 * stop watching the fd then, or the reactor would spin. */
		if (events & (EPOLLHUP | EPOLLERR)) {
			c->dead = true;
			zoc_reactor_del_fd(zoc_reactor_get(0), c->fd);
		} else {
			zoc_reactor_mod_fd(zoc_reactor_get(0), c->fd, 0);
		}
		return;
	}
	conn_process(c);
}

static void conn_resume(struct zoc_vfu_conn *c)
{
	if (c->closing)
		return;
	if (c->test_mode) {
		if (c->dead)
			conn_close(c);
		return;
	}
	if (!c->dead)
		zoc_reactor_mod_fd(zoc_reactor_get(0), c->fd, EPOLLIN);
	conn_process(c);
}

static struct zoc_vfu_conn *conn_alloc(struct zoc_pci_func *f)
{
	struct zoc_vfu_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->msg.payload = malloc(VFU_MAX_PAYLOAD);
	if (!c->msg.payload) {
		free(c);
		return NULL;
	}
	c->f = f;
	c->ops = zoc_pci_func_desc(f)->ops;
	c->fd = -1;
	c->reply_fd = -1;
	c->client_max_fds = 1;
	c->client_max_xfer = VFU_MAX_XFER;
	c->tfd = -1;
	c->dq_tail = &c->dq_head;
	c->ep = zoc_mem_remote_create(&vfu_remote_ops, c);
	if (!c->ep) {
		free(c->msg.payload);
		free(c);
		return NULL;
	}
	return c;
}

static void conn_free(struct zoc_vfu_conn *c)
{
	dma_fail_all(c, -ENOTCONN);
	zoc_mem_remote_detach(c->ep);
	zoc_mem_remote_put(c->ep);
	if (c->tfd >= 0) {
		zoc_reactor_del_fd(zoc_reactor_get(0), c->tfd);
		zoc_fd_close(&c->tfd);
	}
	maps_clear(c);
	if (c->mem)
		zoc_mem_put(c->mem);
	if (c->new_mem)
		zoc_mem_put(c->new_mem);
	msg_close_fds(&c->msg);
	free(c->msg.payload);
	free(c);
}

/* Last step of a close: the function is reset and quiet and uses no DMA
 * space; drop the client's fds and memory, and serve the next client. */
static void close_finish(struct zoc_vfu_conn *c)
{
	struct zoc_vfu_server *s = c->srv;

	for (unsigned t = 0; t < ZOC_PCI_IRQ_TYPES; t++)
		if (zoc_pci_irq_count(c->f, (enum zoc_pci_irq_type)t))
			zoc_pci_irq_set_fds(c->f, (enum zoc_pci_irq_type)t, 0, 0, NULL);
	conn_free(c);
	if (!s)
		return;
	s->conn = NULL;
	ZOC_INFO("%s: vfio-user client gone; device reset", s->path);
	if (s->destroying) {
		void (*done)(void *) = s->destroy_done;
		void *darg = s->destroy_arg;

		unlink(s->path);
		free(s);
		if (done)
			done(darg);
		return;
	}
	server_listen(s);
}

static void close_quiesced(void *arg)
{
	struct zoc_vfu_conn *c = arg;

	if (c->ops && c->ops->set_dma)
		c->ops->set_dma(c->f, NULL);
	if (c->ops && c->ops->quiesce && c->ops->resume)
		c->ops->resume(c->f);
	close_finish(c);
}

/* The function is reset (its queues are gone, so taking its DMA space away
 * is no fatal error to it); now make sure nothing is in flight. */
static void close_reset_done(void *arg)
{
	struct zoc_vfu_conn *c = arg;

	if (c->ops && c->ops->quiesce)
		c->ops->quiesce(c->f, close_quiesced, c);
	else
		close_quiesced(c);
}

/* Tears the connection down (asynchronously; frees c): function reset,
 * quiesce, set_dma(NULL), resume, irq eventfds dropped, DMA unmapped. */
static void conn_close(struct zoc_vfu_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	c->dead = true;
	dma_fail_all(c, -ENOTCONN);
	zoc_mem_remote_detach(c->ep);
	if (c->fd >= 0) {
		zoc_reactor_del_fd(zoc_reactor_get(0), c->fd);
		zoc_fd_close(&c->fd);
	}
	zoc_pci_func_reset(c->f, close_reset_done, c);
}

static void server_on_accept(void *arg, uint32_t events)
{
	struct zoc_vfu_server *s = arg;
	struct zoc_vfu_conn *c;
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (s->conn || s->destroying) {
		ZOC_WARN_RL("%s: a second vfio-user client tried to connect; refused", s->path);
		close(fd);
		return;
	}
	c = conn_alloc(s->f);
	if (!c) {
		close(fd);
		return;
	}
	c->srv = s;
	c->fd = fd;
	if (zoc_reactor_add_fd(zoc_reactor_get(0), fd, EPOLLIN, conn_on_fd, c)) {
		c->fd = -1;
		close(fd);
		conn_free(c);
		return;
	}
	s->conn = c;
	s->connections++;
	ZOC_INFO("%s: vfio-user client connected", s->path);
}

static void server_listen(struct zoc_vfu_server *s)
{
	if (!s->listening &&
	    zoc_reactor_add_fd(zoc_reactor_get(0), s->listen_fd, EPOLLIN, server_on_accept, s) == 0)
		s->listening = true;
}

struct zoc_vfu_server *zoc_vfu_server_create(const char *path, struct zoc_pci_func *f)
{
	struct zoc_vfu_server *s;
	int fd;

	if (!f) {
		errno = EINVAL;
		return NULL;
	}
	/* 0600 before anyone can connect. */
	fd = zoc_usock_listen(path, 0600);
	if (fd < 0) {
		errno = -fd;
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		unlink(path);
		errno = ENOMEM;
		return NULL;
	}
	snprintf(s->path, sizeof(s->path), "%s", path);
	s->f = f;
	s->listen_fd = fd;
	server_listen(s);
	if (!s->listening) {
		close(fd);
		unlink(path);
		free(s);
		errno = ENOMEM;
		return NULL;
	}
	ZOC_INFO("%s: vfio-user server listening", s->path);
	return s;
}

void zoc_vfu_server_destroy(struct zoc_vfu_server *s, void (*done)(void *arg), void *arg)
{
	if (!s) {
		if (done)
			done(arg);
		return;
	}
	if (s->listening)
		zoc_reactor_del_fd(zoc_reactor_get(0), s->listen_fd);
	s->listening = false;
	close(s->listen_fd);
	s->listen_fd = -1;
	s->destroying = true;
	s->destroy_done = done;
	s->destroy_arg = arg;
	if (s->conn) {
		struct zoc_vfu_conn *c = s->conn;

		c->dead = true;
		if (!c->pending && !c->closing)
			conn_close(c);
		/* else: closed when the pending step ends; frees s then */
		return;
	}
	unlink(s->path);
	free(s);
	if (done)
		done(arg);
}

const char *zoc_vfu_server_path(const struct zoc_vfu_server *s)
{
	return s->path;
}

json_t *zoc_vfu_server_info(const struct zoc_vfu_server *s)
{
	const struct zoc_vfu_conn *c = s->conn;
	json_t *o = json_pack("{s:s, s:b, s:I}", "socket", s->path, "connected",
			      c != NULL && !c->closing, "connections",
			      (json_int_t)s->connections);

	if (!o)
		return NULL;
	if (c && !c->closing) {
		char ver[16];
		unsigned nfd = maps_with_fd(c);

		if (c->versioned) {
			snprintf(ver, sizeof(ver), "%u.%u", VFU_MAJOR, c->minor);
			json_object_set_new(o, "version", json_string(ver));
		} else {
			json_object_set_new(o, "version", json_null());
		}
		json_object_set_new(o, "dma_regions", json_integer(c->nmaps));
		json_object_set_new(o, "dma_regions_mapped", json_integer(nfd));
		json_object_set_new(o, "write_multiple", json_boolean(c->write_multi));
		json_object_set_new(o, "messages", json_integer((json_int_t)c->nmsgs));
		json_object_set_new(o, "errors", json_integer((json_int_t)c->nerrors));
		json_object_set_new(o, "dma_reads", json_integer((json_int_t)c->dma_reads));
		json_object_set_new(o, "dma_writes", json_integer((json_int_t)c->dma_writes));
		json_object_set_new(o, "dma_errors", json_integer((json_int_t)c->dma_errors));
		json_object_set_new(o, "dma_late_replies", json_integer((json_int_t)c->dma_late));
	} else {
		json_object_set_new(o, "version", json_null());
		json_object_set_new(o, "dma_regions", json_integer(0));
	}
	return o;
}

/* ------------------------------------------------------------ test hooks */

struct zoc_vfu_conn *zoc_vfu_conn_create_test(struct zoc_pci_func *f, int reply_fd)
{
	struct zoc_vfu_conn *c;

	if (!f)
		return NULL;
	c = conn_alloc(f);
	if (!c)
		return NULL;
	c->test_mode = true;
	c->reply_fd = reply_fd;
	return c;
}

int zoc_vfu_conn_feed(struct zoc_vfu_conn *c, const void *msg, size_t len, const int *fds,
		      size_t nfds)
{
	struct vfu_msg *m = &c->msg;

	m->nfds = 0;
	for (size_t i = 0; i < nfds; i++) {
		if (m->nfds < VFU_MAX_FDS)
			m->fds[m->nfds++] = fds[i];
		else if (fds[i] >= 0)
			close(fds[i]);
	}
	if (c->dead || c->closing) {
		msg_close_fds(m);
		return -EPIPE;
	}
	if (c->pending) {
		msg_close_fds(m);
		return -EBUSY;
	}
	/* As on the socket: more fds than fit, or bad framing, closes it. */
	if (nfds > VFU_MAX_FDS || !msg || len < sizeof(m->hdr)) {
		msg_close_fds(m);
		c->dead = true;
		return -EINVAL;
	}
	memcpy(&m->hdr, msg, sizeof(m->hdr));
	if (m->hdr.size < sizeof(m->hdr) || m->hdr.size > VFU_MAX_MSG || m->hdr.size != len) {
		msg_close_fds(m);
		c->dead = true;
		return -EINVAL;
	}
	memcpy(m->payload, (const uint8_t *)msg + sizeof(m->hdr), len - sizeof(m->hdr));
	if (vfu_dispatch(c, m) == VFU_CLOSE)
		return -ECONNRESET;
	return 0;
}

void zoc_vfu_conn_dma_expire_test(struct zoc_vfu_conn *c)
{
	dma_expire(c, UINT64_MAX);
}

void zoc_vfu_conn_destroy_test(struct zoc_vfu_conn *c)
{
	if (!c)
		return;
	if (c->pending) {
		/* finished (and freed) when the model calls back */
		c->dead = true;
		return;
	}
	conn_close(c);
}
