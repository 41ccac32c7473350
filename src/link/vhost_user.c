/* SPDX-License-Identifier: MIT */
/*
 * vhost-user back end. The protocol is one table (VU_REQUESTS) from which
 * the dispatcher, the names, the payload size checks and the fd checks are
 * generated. Everything a front end sends is checked before use; a malformed
 * message closes that connection only.
 *
 * Messages are handled on reactor 0. A message that needs running queues
 * stopped (GET_VRING_BASE, SET_MEM_TABLE, SET_VRING_CALL on a live ring,
 * RESET_DEVICE, ...) becomes asynchronous: the connection stops reading
 * until the device reports every affected queue quiet, then the handler's
 * continuation runs, replies and reading resumes. So messages are always
 * processed in order and one at a time.
 */
#include "link/vhost_user.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"
#include "link/dma.h"
#include "link/usock.h"
#include "virtio/virtio.h"
#include "virtio/virtio_dev.h"
#include "virtio/virtqueue.h"

#define VHOST_USER_VERSION 1
#define VHOST_USER_FLAG_VERSION_MASK 0x3
#define VHOST_USER_FLAG_REPLY (1u << 2)
#define VHOST_USER_FLAG_NEED_REPLY (1u << 3)

#define VHOST_USER_F_PROTOCOL_FEATURES 30
#define VHOST_F_LOG_ALL 26

#define VHOST_USER_PROTOCOL_F_MQ 0
#define VHOST_USER_PROTOCOL_F_REPLY_ACK 3
#define VHOST_USER_PROTOCOL_F_CONFIG 9
#define VHOST_USER_PROTOCOL_F_INFLIGHT_SHMEM 12
#define VHOST_USER_PROTOCOL_F_RESET_DEVICE 13
#define VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS 15

#define VU_PROTOCOL_FEATURES                                                       \
	(ZOC_BIT(VHOST_USER_PROTOCOL_F_MQ) | ZOC_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) | \
	 ZOC_BIT(VHOST_USER_PROTOCOL_F_CONFIG) |                                   \
	 ZOC_BIT(VHOST_USER_PROTOCOL_F_INFLIGHT_SHMEM) |                           \
	 ZOC_BIT(VHOST_USER_PROTOCOL_F_RESET_DEVICE) |                            \
	 ZOC_BIT(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS))

#define VU_MAX_FDS 8
_Static_assert(VU_MAX_FDS <= ZOC_USOCK_MAX_FDS, "zoc_usock_recv() takes at most ZOC_USOCK_MAX_FDS fds");
#define VU_MAX_PAYLOAD 4096
#define VU_MAX_MEM_REGIONS 8   /* per SET_MEM_TABLE message */
#define VU_MAX_MEM_SLOTS 32    /* with ADD_MEM_REG */
#define VU_MAX_QUEUES 64
#define VU_VRING_IDX_MASK 0xff
#define VU_VRING_NOFD_MASK (1u << 8)
#define VU_CONFIG_MAX 256

struct vu_hdr {
	uint32_t request;
	uint32_t flags;
	uint32_t size;
} __attribute__((packed));

struct vu_vring_state {
	uint32_t index;
	uint32_t num;
} __attribute__((packed));

struct vu_vring_addr {
	uint32_t index;
	uint32_t flags;
	uint64_t desc;
	uint64_t used;
	uint64_t avail;
	uint64_t log;
} __attribute__((packed));

struct vu_mem_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t uva;
	uint64_t mmap_offset;
} __attribute__((packed));

struct vu_mem_table {
	uint32_t nregions;
	uint32_t padding;
	struct vu_mem_region regions[];
} __attribute__((packed));

struct vu_mem_reg_msg {
	uint64_t padding;
	struct vu_mem_region region;
} __attribute__((packed));

struct vu_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t payload[];
} __attribute__((packed));

/* Not packed: the front ends send it with its natural 24-byte size. */
struct vu_inflight {
	uint64_t mmap_size;
	uint64_t mmap_offset;
	uint16_t num_queues;
	uint16_t queue_size;
	uint32_t padding;
};

/* Message table: name, id, fixed payload size (-1: variable, checked by the
 * handler), max fds, whether the handler sends its own reply. */
#define VU_REQUESTS(X)                                          \
	X(GET_FEATURES, 1, 0, 0, true)                          \
	X(SET_FEATURES, 2, 8, 0, false)                         \
	X(SET_OWNER, 3, 0, 0, false)                            \
	X(RESET_OWNER, 4, 0, 0, false)                          \
	X(SET_MEM_TABLE, 5, -1, VU_MAX_MEM_REGIONS, false)      \
	X(SET_LOG_BASE, 6, -1, 1, false)                        \
	X(SET_LOG_FD, 7, 0, 1, false)                           \
	X(SET_VRING_NUM, 8, 8, 0, false)                        \
	X(SET_VRING_ADDR, 9, 40, 0, false)                      \
	X(SET_VRING_BASE, 10, 8, 0, false)                      \
	X(GET_VRING_BASE, 11, 8, 0, true)                       \
	X(SET_VRING_KICK, 12, 8, 1, false)                      \
	X(SET_VRING_CALL, 13, 8, 1, false)                      \
	X(SET_VRING_ERR, 14, 8, 1, false)                       \
	X(GET_PROTOCOL_FEATURES, 15, 0, 0, true)                \
	X(SET_PROTOCOL_FEATURES, 16, 8, 0, false)               \
	X(GET_QUEUE_NUM, 17, 0, 0, true)                        \
	X(SET_VRING_ENABLE, 18, 8, 0, false)                    \
	X(GET_CONFIG, 24, -1, 0, true)                          \
	X(SET_CONFIG, 25, -1, 0, false)                         \
	X(GET_INFLIGHT_FD, 31, 24, 0, true)                     \
	X(SET_INFLIGHT_FD, 32, 24, 1, false)                    \
	X(RESET_DEVICE, 34, 0, 0, false)                        \
	X(GET_MAX_MEM_SLOTS, 36, 0, 0, true)                    \
	X(ADD_MEM_REG, 37, 40, 1, false)                        \
	X(REM_MEM_REG, 38, 40, 1, false)

enum vu_request {
#define X(name, id, size, fds, replies) VU_##name = id,
	VU_REQUESTS(X)
#undef X
};

struct zoc_vu_conn;
struct vu_msg {
	struct vu_hdr hdr;
	uint8_t payload[VU_MAX_PAYLOAD];
	int fds[VU_MAX_FDS];
	size_t nfds;
};

/* Handler result: 0 = done (ack if asked), VU_ASYNC = the continuation will
 * finish it, <0 = fatal: close the connection. */
#define VU_ASYNC 1
typedef int (*vu_handler)(struct zoc_vu_conn *c, struct vu_msg *m);

struct vu_vring {
	uint32_t num;
	uint32_t base;
	struct vu_vring_addr addr;
	bool addr_set;
	bool kick_set; /* a SET_VRING_KICK arrived (fd or polling) */
	bool enabled;
	int kickfd;
	int callfd;
	int errfd;
	bool running; /* given to the device */
};

struct zoc_vu_server {
	char path[108];
	int listen_fd;
	bool listening; /* listen_fd registered on reactor 0 */
	struct zoc_virtio_dev *dev;
	struct zoc_vu_conn *conn;
	bool destroying;
	void (*destroy_done)(void *arg);
	void *destroy_arg;
};

typedef void (*vu_cont_fn)(struct zoc_vu_conn *c);

struct zoc_vu_conn {
	struct zoc_vu_server *srv; /* NULL in test mode */
	struct zoc_virtio_dev *dev;
	int fd;
	bool test_mode;
	int reply_fd;

	uint64_t features;
	uint64_t protocol_features;
	bool features_set;
	bool owner;
	struct zoc_mem *mem;
	struct zoc_mem *new_mem; /* next table, waiting for queues to stop */
	/* The front end's regions and our copies of their fds: a table is
	 * immutable, so ADD/REM_MEM_REG build a new one from this list. */
	struct vu_mem_region regs[VU_MAX_MEM_SLOTS];
	int reg_fds[VU_MAX_MEM_SLOTS];
	unsigned nregs;
	struct vu_vring vrings[VU_MAX_QUEUES];
	uint16_t nvrings;

	uint8_t *inflight;
	uint64_t inflight_size;
	uint16_t inflight_queues;
	uint16_t inflight_qsize;

	/* receive state */
	struct vu_msg msg;
	size_t got;

	/* asynchronous message in progress */
	unsigned pending;
	vu_cont_fn cont;
	struct vu_hdr ahdr;  /* header of the message being finished */
	bool areplies;       /* its continuation sends the reply itself */
	int astatus;         /* continuation's result: 0 or -errno (fatal) */
	uint32_t aindex;     /* vring it is about */
	int afd;             /* fd it carries (kick / call), -1 */
	bool closing;
	bool dead; /* fatal error seen: close when idle */
};

static int vu_handle(struct zoc_vu_conn *c, struct vu_msg *m);
static void conn_close(struct zoc_vu_conn *c);
static void conn_resume(struct zoc_vu_conn *c);

static const char *vu_name(uint32_t req)
{
	switch (req) {
#define X(name, id, size, fds, replies) \
	case id:                        \
		return #name;
		VU_REQUESTS(X)
#undef X
	default:
		return "UNKNOWN";
	}
}

static const char *conn_name(const struct zoc_vu_conn *c)
{
	return c->dev && c->dev->name ? c->dev->name : "?";
}

static void msg_close_fds(struct vu_msg *m)
{
	zoc_fds_close(m->fds, &m->nfds);
}

/* Takes fd i of the message (the message no longer owns it). */
static int msg_take_fd(struct vu_msg *m, size_t i)
{
	return zoc_fds_take(m->fds, m->nfds, i);
}

/* ---------------------------------------------------------------- replies */

static int send_reply(struct zoc_vu_conn *c, const struct vu_hdr *req, const void *payload,
		      uint32_t size, int fd)
{
	struct vu_hdr hdr = {.request = req->request,
			     .flags = VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY,
			     .size = size};
	struct iovec iov[2] = {{&hdr, sizeof(hdr)}, {(void *)payload, size}};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = size ? 2 : 1};
	int out = c->test_mode ? c->reply_fd : c->fd;
	ssize_t n;

	if (out < 0)
		return 0;
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
	do {
		n = sendmsg(out, &mh, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n != (ssize_t)(sizeof(hdr) + size)) {
		/* Replies are tiny; a front end that does not read them is broken. */
		ZOC_WARN_RL("%s: vhost-user reply to %s failed: %s", conn_name(c),
			    vu_name(req->request), n < 0 ? strerror(errno) : "short write");
		return -EIO;
	}
	return 0;
}

static int send_u64(struct zoc_vu_conn *c, const struct vu_hdr *req, uint64_t v)
{
	return send_reply(c, req, &v, sizeof(v), -1);
}

static bool want_ack(const struct zoc_vu_conn *c, const struct vu_hdr *h)
{
	return (h->flags & VHOST_USER_FLAG_NEED_REPLY) &&
	       (c->protocol_features & ZOC_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK));
}

/* ------------------------------------------------------------------ rings */

static bool vrings_any_running(const struct zoc_vu_conn *c)
{
	for (unsigned i = 0; i < c->nvrings; i++)
		if (c->vrings[i].running)
			return true;
	return false;
}

static void vring_init(struct vu_vring *v)
{
	memset(v, 0, sizeof(*v));
	v->kickfd = v->callfd = v->errfd = -1;
}

static void vring_release(struct vu_vring *v)
{
	zoc_fd_close(&v->kickfd);
	zoc_fd_close(&v->callfd);
	zoc_fd_close(&v->errfd);
	vring_init(v);
}

static bool vring_enabled(const struct zoc_vu_conn *c, const struct vu_vring *v)
{
	/* Without PROTOCOL_FEATURES a ring is enabled by its kick. */
	if (!(c->features & ZOC_BIT(VHOST_USER_F_PROTOCOL_FEATURES)))
		return v->kick_set;
	return v->enabled;
}

/* The queue's part of the inflight region (split and packed rings alike). */
static struct zoc_vq_inflight *vring_inflight(struct zoc_vu_conn *c, unsigned idx,
					      const struct vu_vring *v)
{
	uint64_t qsz;

	if (!c->inflight || idx >= c->inflight_queues)
		return NULL;
	if (v->num != c->inflight_qsize) {
		ZOC_WARN_RL("%s: vring %u has %u entries but the inflight region was made for %u; "
			    "not tracking it",
			    conn_name(c), idx, v->num, c->inflight_qsize);
		return NULL;
	}
	qsz = zoc_vq_inflight_queue_size(c->inflight_qsize);
	return (struct zoc_vq_inflight *)(c->inflight + qsz * idx);
}

/* Gives vring idx to the device if everything it needs is there.
 * Returns 0 (started or not ready yet) or <0 (fatal). */
static int vring_try_start(struct zoc_vu_conn *c, unsigned idx)
{
	struct vu_vring *v = &c->vrings[idx];
	struct zoc_vq_config cfg = {0};
	uint64_t dsz, drsz, dvsz;
	struct zoc_vq *vq;
	int rc;

	if (v->running || !c->mem || !c->features_set || !v->addr_set || !v->num ||
	    !v->kick_set || !vring_enabled(c, v) || c->pending)
		return 0;
	cfg.size = (uint16_t)v->num;
	cfg.packed = c->features & ZOC_BIT(VIRTIO_F_RING_PACKED);
	cfg.event_idx = c->features & ZOC_BIT(VIRTIO_F_RING_EVENT_IDX);
	cfg.in_order = c->features & ZOC_BIT(VIRTIO_F_IN_ORDER);
	cfg.indirect = c->features & ZOC_BIT(VIRTIO_F_RING_INDIRECT_DESC);
	zoc_vq_ring_sizes(cfg.size, cfg.packed, &dsz, &drsz, &dvsz);
	/* Packed rings write used descriptors back into the descriptor area. */
	cfg.desc = zoc_mem_uva_to_hva(c->mem, v->addr.desc, dsz, cfg.packed);
	cfg.driver = zoc_mem_uva_to_hva(c->mem, v->addr.avail, drsz, false);
	cfg.device = zoc_mem_uva_to_hva(c->mem, v->addr.used, dvsz, true);
	if (!cfg.desc || !cfg.driver || !cfg.device) {
		ZOC_WARN_RL("%s: vring %u addresses (desc 0x%llx avail 0x%llx used 0x%llx, %u "
			    "entries) are not inside the memory table",
			    conn_name(c), idx, (unsigned long long)v->addr.desc,
			    (unsigned long long)v->addr.avail, (unsigned long long)v->addr.used,
			    v->num);
		return -EFAULT;
	}
	cfg.base = v->base;
	cfg.mem = c->mem;
	cfg.inflight = vring_inflight(c, idx, v);
	cfg.callfd = v->callfd;
	vq = zoc_vq_create(&cfg);
	if (!vq) {
		ZOC_WARN_RL("%s: vring %u rejected (%s)", conn_name(c), idx, strerror(errno));
		return -EINVAL;
	}
	rc = c->dev->ops->queue_start(c->dev, (uint16_t)idx, vq, v->kickfd);
	if (rc) {
		zoc_vq_destroy(vq);
		ZOC_WARN("%s: device refused queue %u: %s", conn_name(c), idx, strerror(-rc));
		return rc;
	}
	v->running = true;
	ZOC_INFO("%s: queue %u started (%u entries, %s%s%s)", conn_name(c), idx, v->num,
		 cfg.packed ? "packed" : "split", cfg.event_idx ? ", event_idx" : "",
		 cfg.inflight ? ", inflight tracking" : "");
	return 0;
}

static int vrings_try_start_all(struct zoc_vu_conn *c)
{
	for (unsigned i = 0; i < c->nvrings; i++) {
		int rc = vring_try_start(c, i);

		if (rc)
			return rc;
	}
	return 0;
}

/* -------------------------------------------------------- async machinery */

/* Finishes an asynchronous message: continuation, then its ack, then resume. */
static void async_finish(struct zoc_vu_conn *c)
{
	vu_cont_fn fn = c->cont;

	c->cont = NULL;
	c->astatus = 0;
	if (c->closing) {
		if (fn)
			fn(c); /* may free c */
		return;
	}
	if (fn)
		fn(c);
	if (!c->areplies && want_ack(c, &c->ahdr))
		send_u64(c, &c->ahdr, c->astatus ? 1 : 0);
	if (c->astatus < 0) {
		ZOC_WARN_RL("%s: closing vhost-user connection after failed %s (%s)",
			    conn_name(c), vu_name(c->ahdr.request), strerror(-c->astatus));
		c->dead = true;
	}
	conn_resume(c);
}

static void async_one_done(void *arg)
{
	struct zoc_vu_conn *c = arg;

	if (--c->pending == 0)
		async_finish(c);
}

/* Stops vring idx if running; counts it in c->pending. */
static void vring_stop_async(struct zoc_vu_conn *c, unsigned idx)
{
	struct vu_vring *v = &c->vrings[idx];

	if (!v->running)
		return;
	v->running = false;
	c->pending++;
	if (c->dev->ops->queue_stop(c->dev, (uint16_t)idx, &v->base, async_one_done, c)) {
		c->pending--;
		ZOC_WARN("%s: queue %u was not running in the device", conn_name(c), idx);
	}
}

/*
 * Stops vring idx (all if idx < 0), then runs cont. If every queue was
 * already quiet, cont runs now and the result is c->astatus (which the
 * caller returns; cont may have freed c when closing, so only handlers
 * read it). Otherwise returns VU_ASYNC and async_finish() ends the message.
 */
static int stop_then(struct zoc_vu_conn *c, int idx, vu_cont_fn cont, const struct vu_hdr *h,
		     bool replies)
{
	c->ahdr = *h;
	c->areplies = replies;
	c->cont = cont;
	c->astatus = 0;
	c->pending++; /* hold while the stops are issued */
	if (idx < 0) {
		for (unsigned i = 0; i < c->nvrings; i++)
			vring_stop_async(c, i);
	} else {
		vring_stop_async(c, (unsigned)idx);
	}
	if (--c->pending)
		return VU_ASYNC;
	c->cont = NULL;
	if (cont)
		cont(c);
	return 0;
}

/* --------------------------------------------------------------- handlers */

static uint64_t offered_features(const struct zoc_vu_conn *c)
{
	return c->dev->ops->get_features(c->dev) | ZOC_BIT(VHOST_USER_F_PROTOCOL_FEATURES);
}

static int h_GET_FEATURES(struct zoc_vu_conn *c, struct vu_msg *m)
{
	return send_u64(c, &m->hdr, offered_features(c));
}

static int h_SET_FEATURES(struct zoc_vu_conn *c, struct vu_msg *m)
{
	uint64_t f;

	memcpy(&f, m->payload, sizeof(f));
	if (f & ~offered_features(c)) {
		ZOC_WARN_RL("%s: front end set features 0x%llx we did not offer (0x%llx)",
			    conn_name(c), (unsigned long long)f,
			    (unsigned long long)offered_features(c));
		return -EINVAL;
	}
	if (vrings_any_running(c) && f != c->features) {
		ZOC_WARN_RL("%s: features changed while queues run", conn_name(c));
		return -EINVAL;
	}
	if (c->dev->ops->set_features(c->dev, f & ~ZOC_BIT(VHOST_USER_F_PROTOCOL_FEATURES)))
		return -EINVAL;
	c->features = f;
	c->features_set = true;
	return vrings_try_start_all(c);
}

static int h_SET_OWNER(struct zoc_vu_conn *c, struct vu_msg *m)
{
	c->owner = true;
	return 0;
}

static void reset_cont(struct zoc_vu_conn *c)
{
	for (unsigned i = 0; i < c->nvrings; i++)
		vring_release(&c->vrings[i]);
	c->features = 0;
	c->features_set = false;
}

static int h_RESET_OWNER(struct zoc_vu_conn *c, struct vu_msg *m)
{
	int rc = stop_then(c, -1, reset_cont, &m->hdr, false);

	return rc == VU_ASYNC ? VU_ASYNC : c->astatus;
}

static int h_RESET_DEVICE(struct zoc_vu_conn *c, struct vu_msg *m)
{
	return h_RESET_OWNER(c, m);
}

static void mem_swap_cont(struct zoc_vu_conn *c)
{
	if (c->mem)
		zoc_mem_put(c->mem);
	c->mem = c->new_mem;
	c->new_mem = NULL;
	c->astatus = vrings_try_start_all(c);
}

/* Builds a table from c->regs and swaps it in once the queues are quiet. */
static int mem_rebuild(struct zoc_vu_conn *c, const struct vu_hdr *h)
{
	struct zoc_mem *mem = zoc_mem_create();
	int rc;

	if (!mem)
		return -ENOMEM;
	for (unsigned i = 0; i < c->nregs; i++) {
		const struct vu_mem_region *r = &c->regs[i];
		int fd = fcntl(c->reg_fds[i], F_DUPFD_CLOEXEC, 0);

		rc = fd < 0 ? -errno : zoc_fd_covers(fd, r->mmap_offset, r->size);
		if (rc && fd >= 0)
			close(fd);
		else if (!rc)
			rc = zoc_mem_add_region(mem, r->gpa, r->size, r->uva, r->mmap_offset, fd,
						true);
		if (rc) {
			ZOC_WARN_RL("%s: memory region %u (gpa 0x%llx size 0x%llx) refused: %s",
				    conn_name(c), i, (unsigned long long)r->gpa,
				    (unsigned long long)r->size, strerror(-rc));
			zoc_mem_put(mem);
			return rc;
		}
	}
	if (c->new_mem)
		zoc_mem_put(c->new_mem);
	c->new_mem = mem;
	rc = stop_then(c, -1, mem_swap_cont, h, false);
	return rc == VU_ASYNC ? VU_ASYNC : c->astatus;
}

static void regs_clear(struct zoc_vu_conn *c)
{
	for (unsigned i = 0; i < c->nregs; i++)
		zoc_fd_close(&c->reg_fds[i]);
	c->nregs = 0;
}

static int h_SET_MEM_TABLE(struct zoc_vu_conn *c, struct vu_msg *m)
{
	const struct vu_mem_table *t = (const struct vu_mem_table *)m->payload;

	if (m->hdr.size < sizeof(*t) || t->nregions == 0 || t->nregions > VU_MAX_MEM_REGIONS ||
	    m->hdr.size != sizeof(*t) + t->nregions * sizeof(struct vu_mem_region) ||
	    m->nfds != t->nregions) {
		ZOC_WARN_RL("%s: malformed SET_MEM_TABLE (%u bytes, %zu fds)", conn_name(c),
			    m->hdr.size, m->nfds);
		return -EINVAL;
	}
	regs_clear(c);
	for (uint32_t i = 0; i < t->nregions; i++) {
		c->regs[i] = t->regions[i];
		c->reg_fds[i] = msg_take_fd(m, i);
	}
	c->nregs = t->nregions;
	return mem_rebuild(c, &m->hdr);
}

static int h_GET_MAX_MEM_SLOTS(struct zoc_vu_conn *c, struct vu_msg *m)
{
	return send_u64(c, &m->hdr, VU_MAX_MEM_SLOTS);
}

static int h_ADD_MEM_REG(struct zoc_vu_conn *c, struct vu_msg *m)
{
	const struct vu_mem_reg_msg *r = (const struct vu_mem_reg_msg *)m->payload;
	int rc;

	if (m->nfds != 1 || c->nregs >= VU_MAX_MEM_SLOTS) {
		ZOC_WARN_RL("%s: ADD_MEM_REG with %zu fds, %u regions mapped (max %d)",
			    conn_name(c), m->nfds, c->nregs, VU_MAX_MEM_SLOTS);
		return -EINVAL;
	}
	c->regs[c->nregs] = r->region;
	c->reg_fds[c->nregs] = msg_take_fd(m, 0);
	c->nregs++;
	rc = mem_rebuild(c, &m->hdr);
	if (rc < 0) {
		c->nregs--;
		zoc_fd_close(&c->reg_fds[c->nregs]);
	}
	return rc;
}

static int h_REM_MEM_REG(struct zoc_vu_conn *c, struct vu_msg *m)
{
	const struct vu_mem_reg_msg *r = (const struct vu_mem_reg_msg *)m->payload;

	/* Older front ends attach the region's fd; it is not needed. */
	msg_close_fds(m);
	for (unsigned i = 0; i < c->nregs; i++) {
		if (c->regs[i].gpa != r->region.gpa || c->regs[i].size != r->region.size ||
		    c->regs[i].uva != r->region.uva)
			continue;
		zoc_fd_close(&c->reg_fds[i]);
		c->regs[i] = c->regs[c->nregs - 1];
		c->reg_fds[i] = c->reg_fds[c->nregs - 1];
		c->nregs--;
		return mem_rebuild(c, &m->hdr);
	}
	ZOC_WARN_RL("%s: REM_MEM_REG for a region that is not mapped (gpa 0x%llx)",
		    conn_name(c), (unsigned long long)r->region.gpa);
	return -EINVAL;
}

static int h_SET_LOG_BASE(struct zoc_vu_conn *c, struct vu_msg *m)
{
	ZOC_WARN_RL("%s: dirty logging (migration) is not supported", conn_name(c));
	return -ENOTSUP;
}

static int h_SET_LOG_FD(struct zoc_vu_conn *c, struct vu_msg *m)
{
	msg_close_fds(m);
	return 0;
}

static int vring_index(struct zoc_vu_conn *c, uint32_t idx, const char *what)
{
	if (idx >= c->nvrings) {
		ZOC_WARN_RL("%s: %s for vring %u, the device has %u", conn_name(c), what, idx,
			    c->nvrings);
		return -EINVAL;
	}
	return 0;
}

static int h_SET_VRING_NUM(struct zoc_vu_conn *c, struct vu_msg *m)
{
	struct vu_vring_state s;

	memcpy(&s, m->payload, sizeof(s));
	if (vring_index(c, s.index, "SET_VRING_NUM"))
		return -EINVAL;
	if (s.num == 0 || s.num > c->dev->max_queue_size || s.num > ZOC_VIRTQ_MAX_SIZE) {
		ZOC_WARN_RL("%s: vring %u size %u out of range [1, %u]", conn_name(c), s.index,
			    s.num, c->dev->max_queue_size);
		return -EINVAL;
	}
	if (c->vrings[s.index].running) {
		ZOC_WARN_RL("%s: SET_VRING_NUM on running vring %u", conn_name(c), s.index);
		return -EINVAL;
	}
	c->vrings[s.index].num = s.num;
	return 0;
}

static void restart_cont(struct zoc_vu_conn *c)
{
	c->astatus = vring_try_start(c, c->aindex);
}

static int h_SET_VRING_ADDR(struct zoc_vu_conn *c, struct vu_msg *m)
{
	struct vu_vring_addr a;
	struct vu_vring *v;

	memcpy(&a, m->payload, sizeof(a));
	if (vring_index(c, a.index, "SET_VRING_ADDR"))
		return -EINVAL;
	v = &c->vrings[a.index];
	v->addr = a;
	v->addr_set = true;
	if (v->running) {
		int rc;

		c->aindex = a.index;
		rc = stop_then(c, (int)a.index, restart_cont, &m->hdr, false);
		return rc == VU_ASYNC ? VU_ASYNC : c->astatus;
	}
	return vring_try_start(c, a.index);
}

static int h_SET_VRING_BASE(struct zoc_vu_conn *c, struct vu_msg *m)
{
	struct vu_vring_state s;

	memcpy(&s, m->payload, sizeof(s));
	if (vring_index(c, s.index, "SET_VRING_BASE"))
		return -EINVAL;
	if (c->vrings[s.index].running) {
		ZOC_WARN_RL("%s: SET_VRING_BASE on running vring %u", conn_name(c), s.index);
		return -EINVAL;
	}
	c->vrings[s.index].base = s.num;
	return 0;
}

static void get_base_cont(struct zoc_vu_conn *c)
{
	struct vu_vring *v = &c->vrings[c->aindex];
	struct vu_vring_state s = {.index = c->aindex, .num = v->base};

	/* The ring is stopped; the next start needs a new kick. */
	zoc_fd_close(&v->kickfd);
	v->kick_set = false;
	send_reply(c, &c->ahdr, &s, sizeof(s), -1);
}

static int h_GET_VRING_BASE(struct zoc_vu_conn *c, struct vu_msg *m)
{
	struct vu_vring_state s;

	memcpy(&s, m->payload, sizeof(s));
	if (vring_index(c, s.index, "GET_VRING_BASE"))
		return -EINVAL;
	c->aindex = s.index;
	return stop_then(c, (int)s.index, get_base_cont, &m->hdr, true);
}

/* Common part of SET_VRING_KICK / CALL / ERR: index + optional fd. */
static int vring_fd_msg(struct zoc_vu_conn *c, struct vu_msg *m, const char *what,
			unsigned *idx_out, int *fd_out)
{
	uint64_t u;
	unsigned idx;

	memcpy(&u, m->payload, sizeof(u));
	idx = (unsigned)(u & VU_VRING_IDX_MASK);
	if (u & ~(uint64_t)(VU_VRING_IDX_MASK | VU_VRING_NOFD_MASK)) {
		ZOC_WARN_RL("%s: %s with reserved bits set (0x%llx)", conn_name(c), what,
			    (unsigned long long)u);
		return -EINVAL;
	}
	if (vring_index(c, idx, what))
		return -EINVAL;
	if ((u & VU_VRING_NOFD_MASK) ? m->nfds != 0 : m->nfds != 1) {
		ZOC_WARN_RL("%s: %s with %zu fds (flag says %s)", conn_name(c), what, m->nfds,
			    (u & VU_VRING_NOFD_MASK) ? "none" : "one");
		return -EINVAL;
	}
	*idx_out = idx;
	*fd_out = (u & VU_VRING_NOFD_MASK) ? -1 : msg_take_fd(m, 0);
	return 0;
}

/* Swaps in the kick or call fd carried by the message once the ring is
 * stopped (the device no longer uses the old one), then restarts it. */
static void kick_swap_cont(struct zoc_vu_conn *c)
{
	struct vu_vring *v = &c->vrings[c->aindex];

	zoc_fd_close(&v->kickfd);
	v->kickfd = c->afd;
	v->kick_set = true;
	c->afd = -1;
	restart_cont(c);
}

static void call_swap_cont(struct zoc_vu_conn *c)
{
	struct vu_vring *v = &c->vrings[c->aindex];

	zoc_fd_close(&v->callfd);
	v->callfd = c->afd;
	c->afd = -1;
	restart_cont(c);
}

/* SET_VRING_KICK / SET_VRING_CALL: on a live ring (QEMU swaps call fds when
 * the guest masks vectors) stop the queue, swap, restart where it stopped. */
static int vring_swap_fd(struct zoc_vu_conn *c, struct vu_msg *m, bool kick)
{
	unsigned idx;
	int fd, rc;
	struct vu_vring *v;

	if (vring_fd_msg(c, m, kick ? "SET_VRING_KICK" : "SET_VRING_CALL", &idx, &fd))
		return -EINVAL;
	v = &c->vrings[idx];
	c->aindex = idx;
	c->afd = fd;
	if (v->running) {
		rc = stop_then(c, (int)idx, kick ? kick_swap_cont : call_swap_cont, &m->hdr,
			       false);
		return rc == VU_ASYNC ? VU_ASYNC : c->astatus;
	}
	if (kick) {
		kick_swap_cont(c);
		return c->astatus;
	}
	zoc_fd_close(&v->callfd);
	v->callfd = fd;
	c->afd = -1;
	return 0;
}

static int h_SET_VRING_KICK(struct zoc_vu_conn *c, struct vu_msg *m)
{
	return vring_swap_fd(c, m, true);
}

static int h_SET_VRING_CALL(struct zoc_vu_conn *c, struct vu_msg *m)
{
	return vring_swap_fd(c, m, false);
}

static int h_SET_VRING_ERR(struct zoc_vu_conn *c, struct vu_msg *m)
{
	unsigned idx;
	int fd;

	if (vring_fd_msg(c, m, "SET_VRING_ERR", &idx, &fd))
		return -EINVAL;
	zoc_fd_close(&c->vrings[idx].errfd);
	c->vrings[idx].errfd = fd;
	return 0;
}

static int h_GET_PROTOCOL_FEATURES(struct zoc_vu_conn *c, struct vu_msg *m)
{
	uint64_t f = VU_PROTOCOL_FEATURES;

	if (c->dev->config_size == 0)
		f &= ~ZOC_BIT(VHOST_USER_PROTOCOL_F_CONFIG);
	return send_u64(c, &m->hdr, f);
}

static int h_SET_PROTOCOL_FEATURES(struct zoc_vu_conn *c, struct vu_msg *m)
{
	uint64_t f;

	memcpy(&f, m->payload, sizeof(f));
	if (f & ~VU_PROTOCOL_FEATURES) {
		ZOC_WARN_RL("%s: unknown protocol features 0x%llx", conn_name(c),
			    (unsigned long long)(f & ~VU_PROTOCOL_FEATURES));
		return -EINVAL;
	}
	c->protocol_features = f;
	return 0;
}

static int h_GET_QUEUE_NUM(struct zoc_vu_conn *c, struct vu_msg *m)
{
	return send_u64(c, &m->hdr, c->nvrings);
}

static int h_SET_VRING_ENABLE(struct zoc_vu_conn *c, struct vu_msg *m)
{
	struct vu_vring_state s;

	memcpy(&s, m->payload, sizeof(s));
	if (vring_index(c, s.index, "SET_VRING_ENABLE") || s.num > 1) {
		if (s.num > 1)
			ZOC_WARN_RL("%s: SET_VRING_ENABLE value %u", conn_name(c), s.num);
		return -EINVAL;
	}
	c->vrings[s.index].enabled = s.num;
	if (!s.num && c->vrings[s.index].running) {
		c->aindex = s.index;
		return stop_then(c, (int)s.index, NULL, &m->hdr, false) == VU_ASYNC ? VU_ASYNC : 0;
	}
	return vring_try_start(c, s.index);
}

static int h_GET_CONFIG(struct zoc_vu_conn *c, struct vu_msg *m)
{
	/* The reply: the request's header, then the bytes. */
	uint8_t r[sizeof(struct vu_config) + VU_CONFIG_MAX];
	const struct vu_config *req = (const struct vu_config *)m->payload;

	if (m->hdr.size < sizeof(*req) || req->size > VU_CONFIG_MAX ||
	    m->hdr.size != sizeof(*req) + req->size || req->offset > VU_CONFIG_MAX) {
		ZOC_WARN_RL("%s: malformed GET_CONFIG (%u bytes)", conn_name(c), m->hdr.size);
		return -EINVAL;
	}
	memset(r, 0, sizeof(r));
	memcpy(r, req, sizeof(*req));
	/* Bytes past our config space read as zero. */
	if (req->offset < c->dev->config_size) {
		uint32_t n = ZOC_MIN(req->size, c->dev->config_size - req->offset);

		c->dev->ops->get_config(c->dev, r + sizeof(*req), req->offset, n);
	}
	return send_reply(c, &m->hdr, r, (uint32_t)sizeof(*req) + req->size, -1);
}

static int h_SET_CONFIG(struct zoc_vu_conn *c, struct vu_msg *m)
{
	const struct vu_config *req = (const struct vu_config *)m->payload;

	if (m->hdr.size < sizeof(*req) || req->size > VU_CONFIG_MAX ||
	    m->hdr.size != sizeof(*req) + req->size) {
		ZOC_WARN_RL("%s: malformed SET_CONFIG (%u bytes)", conn_name(c), m->hdr.size);
		return -EINVAL;
	}
	if (!c->dev->ops->set_config ||
	    c->dev->ops->set_config(c->dev, req->payload, req->offset, req->size)) {
		if (want_ack(c, &m->hdr))
			send_u64(c, &m->hdr, 1);
		m->hdr.flags &= ~VHOST_USER_FLAG_NEED_REPLY; /* acked */
	}
	return 0;
}

static void inflight_unmap(struct zoc_vu_conn *c)
{
	if (c->inflight)
		munmap(c->inflight, c->inflight_size);
	c->inflight = NULL;
	c->inflight_size = 0;
	c->inflight_queues = 0;
	c->inflight_qsize = 0;
}

static int inflight_check(struct zoc_vu_conn *c, const struct vu_inflight *in, uint64_t *size)
{
	if (in->num_queues == 0 || in->num_queues > c->nvrings || in->queue_size == 0 ||
	    in->queue_size > c->dev->max_queue_size) {
		ZOC_WARN_RL("%s: inflight region for %u queues of %u entries refused",
			    conn_name(c), in->num_queues, in->queue_size);
		return -EINVAL;
	}
	*size = zoc_vq_inflight_queue_size(in->queue_size) * in->num_queues;
	return 0;
}

static int h_GET_INFLIGHT_FD(struct zoc_vu_conn *c, struct vu_msg *m)
{
	struct vu_inflight in;
	uint64_t size;
	void *p;
	int fd, rc;

	memcpy(&in, m->payload, sizeof(in));
	if (inflight_check(c, &in, &size))
		return -EINVAL;
	if (vrings_any_running(c)) {
		ZOC_WARN_RL("%s: GET_INFLIGHT_FD while queues run", conn_name(c));
		return -EINVAL;
	}
	fd = memfd_create("zoc-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	/* Sealed: the front end must not shrink what we have mapped. */
	if (ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		rc = -errno;
		close(fd);
		return rc;
	}
	memset(p, 0, size);
	inflight_unmap(c);
	c->inflight = p;
	c->inflight_size = size;
	c->inflight_queues = in.num_queues;
	c->inflight_qsize = in.queue_size;
	in.mmap_size = size;
	in.mmap_offset = 0;
	rc = send_reply(c, &m->hdr, &in, sizeof(in), fd);
	close(fd); /* the front end has its copy; our mapping stays */
	return rc;
}

static int h_SET_INFLIGHT_FD(struct zoc_vu_conn *c, struct vu_msg *m)
{
	struct vu_inflight in;
	uint64_t size;
	void *p;
	int fd, rc = 0;

	memcpy(&in, m->payload, sizeof(in));
	if (m->nfds != 1 || inflight_check(c, &in, &size)) {
		ZOC_WARN_RL("%s: malformed SET_INFLIGHT_FD", conn_name(c));
		return -EINVAL;
	}
	if (in.mmap_size > (1ull << 32) || (in.mmap_offset & 4095)) {
		ZOC_WARN_RL("%s: inflight region of %llu bytes at offset %llu refused", conn_name(c),
			    (unsigned long long)in.mmap_size, (unsigned long long)in.mmap_offset);
		return -EINVAL;
	}
	if (in.mmap_size < size) {
		/* Made by another back end (an older zocd) with a smaller layout: serve
		 * without tracking rather than refuse the front end forever. */
		ZOC_WARN_RL("%s: inflight region of %llu bytes, this zocd needs %llu: serving "
			    "without in-flight tracking",
			    conn_name(c), (unsigned long long)in.mmap_size,
			    (unsigned long long)size);
		inflight_unmap(c);
		return 0;
	}
	if (vrings_any_running(c)) {
		ZOC_WARN_RL("%s: SET_INFLIGHT_FD while queues run", conn_name(c));
		return -EINVAL;
	}
	fd = msg_take_fd(m, 0);
	rc = zoc_fd_covers(fd, in.mmap_offset, in.mmap_size);
	p = rc ? MAP_FAILED
	       : mmap(NULL, in.mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		      (off_t)in.mmap_offset);
	if (p == MAP_FAILED && !rc)
		rc = -errno;
	close(fd);
	if (rc) {
		ZOC_WARN_RL("%s: cannot map the inflight region: %s", conn_name(c), strerror(-rc));
		return rc;
	}
	inflight_unmap(c);
	c->inflight = p;
	c->inflight_size = in.mmap_size;
	c->inflight_queues = in.num_queues;
	c->inflight_qsize = in.queue_size;
	return 0;
}

struct vu_req_desc {
	const char *name;
	int size;       /* exact payload size, -1 variable */
	unsigned max_fds;
	bool replies;   /* handler sends its own reply */
	vu_handler fn;
};

static const struct vu_req_desc *vu_desc(uint32_t req)
{
	static const struct vu_req_desc table[] = {
#define X(name, id, size, fds, replies) [id] = {#name, size, fds, replies, h_##name},
		VU_REQUESTS(X)
#undef X
	};

	if (req >= ZOC_ARRAY_SIZE(table) || !table[req].fn)
		return NULL;
	return &table[req];
}

/* Validates and runs one message. Closes its fds whatever happens. */
static int vu_handle(struct zoc_vu_conn *c, struct vu_msg *m)
{
	const struct vu_req_desc *d = vu_desc(m->hdr.request);
	int rc;

	if ((m->hdr.flags & VHOST_USER_FLAG_VERSION_MASK) != VHOST_USER_VERSION) {
		ZOC_WARN_RL("%s: vhost-user message version %u, expected %u", conn_name(c),
			    m->hdr.flags & VHOST_USER_FLAG_VERSION_MASK, VHOST_USER_VERSION);
		rc = -EINVAL;
		goto out;
	}
	if (!d) {
		ZOC_WARN_RL("%s: unsupported vhost-user request %u", conn_name(c),
			    m->hdr.request);
		/* Not fatal: refuse it if the front end waits for an answer. */
		rc = want_ack(c, &m->hdr) ? send_u64(c, &m->hdr, 1) : 0;
		goto out;
	}
	if ((d->size >= 0 && m->hdr.size != (uint32_t)d->size) || m->nfds > d->max_fds) {
		ZOC_WARN_RL("%s: malformed %s: %u payload bytes (want %d), %zu fds (max %u)",
			    conn_name(c), d->name, m->hdr.size, d->size, m->nfds, d->max_fds);
		rc = -EINVAL;
		goto out;
	}
	ZOC_DEBUG("%s: %s", conn_name(c), d->name);
	rc = d->fn(c, m);
	if (rc != VU_ASYNC && !d->replies && want_ack(c, &m->hdr)) {
		int src = send_u64(c, &m->hdr, rc ? 1 : 0);

		if (!rc)
			rc = src;
	}
	if (rc == VU_ASYNC)
		rc = 0;
out:
	msg_close_fds(m);
	return rc;
}

/* --------------------------------------------------------------- socket */

static void conn_on_fd(void *arg, uint32_t events);

/* Reads from the socket. Returns 1 when a whole message is in c->msg, 0 if
 * more bytes are needed, <0 on EOF / error / malformed framing. */
static int conn_read(struct zoc_vu_conn *c)
{
	struct vu_msg *m = &c->msg;

	if (c->got < sizeof(m->hdr)) {
		ssize_t n = zoc_usock_recv(c->fd, (uint8_t *)&m->hdr + c->got,
					   sizeof(m->hdr) - c->got, m->fds, &m->nfds, VU_MAX_FDS);

		if (n == -EMSGSIZE) {
			ZOC_WARN_RL("%s: too many fds in one message", conn_name(c));
			return -EINVAL;
		}
		if (n <= 0)
			return (int)n;
		c->got += (size_t)n;
		if (c->got < sizeof(m->hdr))
			return 0;
		if (m->hdr.size > VU_MAX_PAYLOAD) {
			ZOC_WARN_RL("%s: vhost-user message %u with %u payload bytes (max %d)",
				    conn_name(c), m->hdr.request, m->hdr.size, VU_MAX_PAYLOAD);
			return -EINVAL;
		}
	}
	if (c->got < sizeof(m->hdr) + m->hdr.size) {
		size_t off = c->got - sizeof(m->hdr);
		ssize_t n = recv(c->fd, m->payload + off, m->hdr.size - off, MSG_DONTWAIT);

		if (n == 0)
			return -ECONNRESET;
		if (n < 0)
			return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
		c->got += (size_t)n;
		if (c->got < sizeof(m->hdr) + m->hdr.size)
			return 0;
	}
	return 1;
}

static void conn_process(struct zoc_vu_conn *c)
{
	while (!c->pending && !c->closing && !c->dead) {
		int rc = conn_read(c);

		if (rc == 0)
			return;
		if (rc < 0) {
			if (rc != -ECONNRESET)
				ZOC_WARN_RL("%s: vhost-user connection error: %s", conn_name(c),
					    strerror(-rc));
			msg_close_fds(&c->msg);
			c->dead = true;
			break;
		}
		c->got = 0;
		rc = vu_handle(c, &c->msg);
		if (rc < 0) {
			ZOC_WARN_RL("%s: closing vhost-user connection after bad %s (%s)",
				    conn_name(c), vu_name(c->msg.hdr.request), strerror(-rc));
			c->dead = true;
		}
	}
	if (c->dead && !c->pending)
		conn_close(c);
}

static void conn_on_fd(void *arg, uint32_t events)
{
	struct zoc_vu_conn *c = arg;

	if (c->pending) {
		/* Reading is paused; a hang-up is handled once the pending op ends.
		 * epoll reports HUP/ERR whatever the mask, so stop watching the fd
		 * then, or the reactor would spin on it until the queues stop. */
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

static void conn_resume(struct zoc_vu_conn *c)
{
	if (c->test_mode || c->closing)
		return;
	if (!c->dead)
		zoc_reactor_mod_fd(zoc_reactor_get(0), c->fd, EPOLLIN);
	conn_process(c);
}

static void conn_free(struct zoc_vu_conn *c)
{
	for (unsigned i = 0; i < c->nvrings; i++)
		vring_release(&c->vrings[i]);
	if (c->mem)
		zoc_mem_put(c->mem);
	if (c->new_mem)
		zoc_mem_put(c->new_mem);
	inflight_unmap(c);
	regs_clear(c);
	msg_close_fds(&c->msg);
	zoc_fd_close(&c->afd);
	free(c);
}

static void server_listen(struct zoc_vu_server *s);

static void conn_closed_cont(struct zoc_vu_conn *c)
{
	struct zoc_vu_server *s = c->srv;

	if (c->fd >= 0) {
		zoc_reactor_del_fd(zoc_reactor_get(0), c->fd);
		close(c->fd);
	}
	conn_free(c);
	s->conn = NULL;
	ZOC_INFO("%s: vhost-user front end disconnected", s->dev->name);
	if (s->destroying) {
		void (*done)(void *) = s->destroy_done;
		void *arg = s->destroy_arg;

		unlink(s->path);
		free(s);
		if (done)
			done(arg);
		return;
	}
	server_listen(s);
}

/* Stops every queue, then frees the connection. */
static void conn_close(struct zoc_vu_conn *c)
{
	struct vu_hdr none = {0};

	if (c->closing)
		return;
	c->closing = true;
	if (c->fd >= 0)
		zoc_reactor_mod_fd(zoc_reactor_get(0), c->fd, 0);
	stop_then(c, -1, conn_closed_cont, &none, true); /* frees c when done */
}

static void server_on_accept(void *arg, uint32_t events)
{
	struct zoc_vu_server *s = arg;
	struct zoc_vu_conn *c;
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (s->conn) {
		ZOC_WARN_RL("%s: a second vhost-user front end tried to connect; refused",
			    s->dev->name);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->srv = s;
	c->dev = s->dev;
	c->fd = fd;
	c->reply_fd = -1;
	c->afd = -1;
	c->nvrings = ZOC_MIN(s->dev->max_queues, VU_MAX_QUEUES);
	for (unsigned i = 0; i < VU_MAX_QUEUES; i++)
		vring_init(&c->vrings[i]);
	if (zoc_reactor_add_fd(zoc_reactor_get(0), fd, EPOLLIN, conn_on_fd, c)) {
		close(fd);
		free(c);
		return;
	}
	s->conn = c;
	/* One front end at a time: stop accepting until it leaves. */
	zoc_reactor_del_fd(zoc_reactor_get(0), s->listen_fd);
	s->listening = false;
	ZOC_INFO("%s: vhost-user front end connected on %s", s->dev->name, s->path);
}

static void server_listen(struct zoc_vu_server *s)
{
	if (!s->listening &&
	    zoc_reactor_add_fd(zoc_reactor_get(0), s->listen_fd, EPOLLIN, server_on_accept, s) == 0)
		s->listening = true;
}

struct zoc_vu_server *zoc_vu_server_create(const char *path, struct zoc_virtio_dev *dev)
{
	struct zoc_vu_server *s;
	int fd = zoc_usock_listen(path, 0);

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
	s->dev = dev;
	s->listen_fd = fd;
	server_listen(s);
	if (!s->listening) {
		close(fd);
		unlink(path);
		free(s);
		errno = ENOMEM;
		return NULL;
	}
	return s;
}

void zoc_vu_server_destroy(struct zoc_vu_server *s, void (*done)(void *arg), void *arg)
{
	if (s->listening)
		zoc_reactor_del_fd(zoc_reactor_get(0), s->listen_fd);
	s->listening = false;
	close(s->listen_fd);
	s->destroying = true;
	s->destroy_done = done;
	s->destroy_arg = arg;
	if (s->conn) {
		struct zoc_vu_conn *c = s->conn;

		c->dead = true;
		if (!c->pending)
			conn_close(c);
		/* else: closed when the pending operation ends */
		return;
	}
	unlink(s->path);
	free(s);
	if (done)
		done(arg);
}

const char *zoc_vu_server_path(const struct zoc_vu_server *s)
{
	return s->path;
}

json_t *zoc_vu_server_info(const struct zoc_vu_server *s)
{
	const struct zoc_vu_conn *c = s->conn;
	json_t *o = json_pack("{s:s, s:b}", "socket", s->path, "connected", c != NULL);

	if (c) {
		json_t *qs = json_array();

		json_object_set_new(o, "features", json_integer((json_int_t)c->features));
		json_object_set_new(o, "protocol_features",
				    json_integer((json_int_t)c->protocol_features));
		json_object_set_new(o, "inflight_tracking", json_boolean(c->inflight != NULL));
		for (unsigned i = 0; i < c->nvrings; i++) {
			const struct vu_vring *v = &c->vrings[i];

			if (!v->num && !v->running)
				continue;
			json_array_append_new(qs, json_pack("{s:i, s:i, s:b, s:b}", "index", i,
							    "size", v->num, "enabled",
							    vring_enabled(c, v), "running",
							    v->running));
		}
		json_object_set_new(o, "vrings", qs);
	}
	return o;
}

/* ------------------------------------------------------------ test hooks */

struct zoc_vu_conn *zoc_vu_conn_create_test(struct zoc_virtio_dev *dev, int reply_fd)
{
	struct zoc_vu_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->dev = dev;
	c->fd = -1;
	c->test_mode = true;
	c->reply_fd = reply_fd;
	c->afd = -1;
	c->nvrings = ZOC_MIN(dev->max_queues, VU_MAX_QUEUES);
	for (unsigned i = 0; i < VU_MAX_QUEUES; i++)
		vring_init(&c->vrings[i]);
	return c;
}

int zoc_vu_conn_feed(struct zoc_vu_conn *c, const void *msg, size_t len, const int *fds,
		     size_t nfds)
{
	struct vu_msg *m = &c->msg;
	int rc;

	m->nfds = 0;
	for (size_t i = 0; i < nfds; i++) {
		if (m->nfds < VU_MAX_FDS)
			m->fds[m->nfds++] = fds[i];
		else
			close(fds[i]);
	}
	if (c->dead || c->pending) {
		msg_close_fds(m);
		return -EPIPE;
	}
	/* As on the socket: more fds than fit (MSG_CTRUNC) or bad framing
	 * closes the connection. */
	if (nfds > VU_MAX_FDS || len < sizeof(m->hdr)) {
		msg_close_fds(m);
		c->dead = true;
		return -EINVAL;
	}
	memcpy(&m->hdr, msg, sizeof(m->hdr));
	if (m->hdr.size > VU_MAX_PAYLOAD || len - sizeof(m->hdr) != m->hdr.size) {
		msg_close_fds(m);
		c->dead = true;
		return -EINVAL;
	}
	memcpy(m->payload, (const uint8_t *)msg + sizeof(m->hdr), m->hdr.size);
	rc = vu_handle(c, m);
	if (rc < 0)
		c->dead = true;
	return rc < 0 ? rc : 0;
}

static void test_closed(struct zoc_vu_conn *c)
{
	conn_free(c);
}

void zoc_vu_conn_destroy_test(struct zoc_vu_conn *c)
{
	struct vu_hdr none = {0};

	if (!c)
		return;
	/* Test devices stop synchronously, so this finishes at once. */
	c->closing = true;
	if (stop_then(c, -1, test_closed, &none, true) == VU_ASYNC)
		ZOC_WARN("test connection destroyed with queues still stopping");
}
