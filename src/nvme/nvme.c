/* SPDX-License-Identifier: MIT */
/*
 * nvme.c - the NVMe controller as a PCI function: registers and their state
 * machine (enable, disable, shutdown, reset), doorbells, queue ownership by
 * reactors, fetching, completion posting and interrupts, namespaces.
 *
 * Every reactor has a "group" of this controller: its poller, the CQs given
 * to it (with their SQs), its bdev channels. Reactor 0 (control plane) owns
 * the registers and admin commands; it talks to the groups with messages
 * (create/delete queues, quiesce, disable, destroy), and they answer with
 * messages. See docs/nvme.md.
 */
#include "nvme/nvme.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pool.h"
#include "core/util.h"
#include "link/dma.h"
#include "nvme/nvme_internal.h"
#include "pci/pci.h"

/* --------------------------------------------------------------- helpers */

unsigned zoc_nvme_fail_alloc;

/* Control-path allocations: callers fail their operation on NULL. */
static void *nvme_calloc(size_t n, size_t size)
{
	if (ZOC_UNLIKELY(zoc_nvme_fail_alloc) && --zoc_nvme_fail_alloc == 0)
		return NULL;
	return calloc(n, size);
}

static inline uint32_t db_load(struct zoc_nvme_ctrlr *c, unsigned idx)
{
	/* I/O queues read the driver's shadow doorbell once it gave one
	 * (Doorbell Buffer Config); the admin queue never has one. */
	if (idx >= 2) {
		uint32_t *s = __atomic_load_n(&c->dbbuf_db, __ATOMIC_ACQUIRE);

		if (s)
			return __atomic_load_n(&s[idx], __ATOMIC_ACQUIRE);
	}
	return __atomic_load_n(&c->db[idx], __ATOMIC_ACQUIRE);
}

static inline void db_store(struct zoc_nvme_ctrlr *c, unsigned idx, uint32_t v)
{
	__atomic_store_n(&c->db[idx], v, __ATOMIC_RELEASE);
}

/* PCI: a function whose bus mastering is off does not DMA (no fetch, no
 * completion entry, no MSI/MSI-X write). */
static inline bool may_dma(struct zoc_nvme_ctrlr *c)
{
	return __atomic_load_n(&c->bus_master, __ATOMIC_RELAXED);
}

/* A message for a step that can still fail (its command gets an error). */
static int send_msg(struct zoc_reactor *r, zoc_msg_fn fn, void *arg)
{
	if (ZOC_UNLIKELY(zoc_nvme_fail_alloc) && --zoc_nvme_fail_alloc == 0)
		return -ENOMEM;
	return zoc_reactor_send_msg(r, fn, arg);
}

/* A message for a step that cannot be undone (an answer to reactor 0, a
 * broadcast under way): a message is 24 bytes, the retry waits for memory. */
static void send_msg_retry(struct zoc_reactor *r, zoc_msg_fn fn, void *arg)
{
	while (zoc_reactor_send_msg(r, fn, arg))
		usleep(1000); /* out of memory for a message: retry, never lose a step */
}

static bool on_reactor0(void)
{
	struct zoc_reactor *cur = zoc_reactor_current();

	return !cur || cur == zoc_reactor_get(0);
}

/* ------------------------------------------------------------ broadcasts */

enum nvme_op { OP_QUIESCE, OP_STOP, OP_DISABLE, OP_DESTROY, OP_NS_DRAIN };

struct nvme_bcast;

struct nvme_waiter {
	struct nvme_bcast *b;
	struct nvme_group *g;
	struct nvme_waiter *next;
};

struct nvme_bcast {
	struct zoc_nvme_ctrlr *c;
	enum nvme_op op;
	uint32_t nsid;
	unsigned pending;
	void (*done)(struct zoc_nvme_ctrlr *c, struct nvme_bcast *b);
	void (*user_fn)(void *);
	void *user_arg;
	void (*ns_fn)(void *, int);
	struct nvme_ns *ns;
	bool heap;                 /* freed when done (else the controller's) */
	struct nvme_waiter w[];
};

static void cq_drop_held(struct nvme_cq *cq);

static void bcast_ack(void *arg)
{
	struct nvme_waiter *w = arg;
	struct nvme_bcast *b = w->b;

	if (--b->pending == 0) {
		bool heap = b->heap;

		b->done(b->c, b);
		if (heap)
			free(b);
	}
}

static void group_detach_all(struct nvme_group *g)
{
	for (struct nvme_cq *cq = g->cqs; cq; cq = cq->next) {
		cq->g = NULL;
		cq->sqs = NULL;
	}
	g->cqs = NULL;
}

static void group_put_channels(struct nvme_group *g)
{
	for (unsigned i = 0; i < ZOC_NVME_MAX_NS; i++) {
		if (g->ns[i].ch)
			zoc_bdev_put_channel(g->ns[i].ch);
		g->ns[i].ch = NULL;
	}
}

static bool waiter_ready(struct nvme_waiter *w)
{
	struct nvme_group *g = w->g;

	if (w->b->op == OP_NS_DRAIN)
		return g->ns[w->b->nsid - 1].inflight == 0;
	return g->busy == 0;
}

static void waiter_finish(struct nvme_waiter *w)
{
	struct nvme_group *g = w->g;

	switch (w->b->op) {
	case OP_DISABLE:
		group_detach_all(g);
		g->discard = false;
		g->stopped = false;
		break;
	case OP_DESTROY:
		group_detach_all(g);
		if (g->poller)
			zoc_poller_unregister(g->poller);
		g->poller = NULL;
		if (g->efd_registered)
			zoc_reactor_del_fd(g->r, g->efd);
		g->efd_registered = false;
		group_put_channels(g);
		break;
	case OP_NS_DRAIN: {
		struct nvme_group_ns *gn = &g->ns[w->b->nsid - 1];

		if (gn->ch)
			zoc_bdev_put_channel(gn->ch);
		gn->ch = NULL;
		break;
	}
	default:
		break;
	}
}

void nvme_group_check(struct nvme_group *g)
{
	struct nvme_waiter *w;

	while ((w = g->waiters) && waiter_ready(w)) {
		g->waiters = w->next;
		if (!g->waiters)
			g->waiters_tail = &g->waiters;
		waiter_finish(w);
		send_msg_retry(zoc_reactor_get(0), bcast_ack, w);
	}
}

static void group_op_msg(void *arg)
{
	struct nvme_waiter *w = arg;
	struct nvme_group *g = w->g;

	switch (w->b->op) {
	case OP_QUIESCE:
		g->quiesced = true;
		break;
	case OP_STOP:
		g->stopped = true;
		break;
	case OP_DISABLE:
	case OP_DESTROY:
		g->stopped = true;
		g->discard = true;
		for (struct nvme_cq *cq = g->cqs; cq; cq = cq->next)
			cq_drop_held(cq);
		break;
	case OP_NS_DRAIN:
		break;
	}
	w->next = NULL;
	*g->waiters_tail = w;
	g->waiters_tail = &w->next;
	nvme_group_check(g);
}

static size_t bcast_size(const struct zoc_nvme_ctrlr *c)
{
	return sizeof(struct nvme_bcast) + sizeof(struct nvme_waiter) * c->ngroups;
}

static void bcast_init(struct zoc_nvme_ctrlr *c, struct nvme_bcast *b, enum nvme_op op,
		       void (*done)(struct zoc_nvme_ctrlr *, struct nvme_bcast *))
{
	bool heap = b->heap;

	memset(b, 0, bcast_size(c));
	b->heap = heap;
	b->c = c;
	b->op = op;
	b->done = done;
	for (unsigned i = 0; i < c->ngroups; i++) {
		b->w[i].b = b;
		b->w[i].g = &c->groups[i];
	}
}

/* A broadcast freed when done; NULL when out of memory. */
static struct nvme_bcast *bcast_new(struct zoc_nvme_ctrlr *c, enum nvme_op op,
				    void (*done)(struct zoc_nvme_ctrlr *, struct nvme_bcast *))
{
	struct nvme_bcast *b = nvme_calloc(1, bcast_size(c));

	if (!b)
		return NULL;
	b->heap = true;
	bcast_init(c, b, op, done);
	return b;
}

/* Runs op on every group; b->done on reactor 0 when all are through. */
static void bcast_send(struct nvme_bcast *b)
{
	struct zoc_nvme_ctrlr *c = b->c;

	b->pending = c->ngroups;
	for (unsigned i = 0; i < c->ngroups; i++)
		send_msg_retry(c->groups[i].r, group_op_msg, &b->w[i]);
}

/* On the controller's own storage b (see struct zoc_nvme_ctrlr). */
static void bcast(struct zoc_nvme_ctrlr *c, struct nvme_bcast *b, enum nvme_op op,
		  void (*done)(struct zoc_nvme_ctrlr *, struct nvme_bcast *), void (*user_fn)(void *),
		  void *user_arg)
{
	bcast_init(c, b, op, done);
	b->user_fn = user_fn;
	b->user_arg = user_arg;
	bcast_send(b);
}

/* --------------------------------------------------------- interrupts */

static void cq_raise(struct zoc_nvme_ctrlr *c, struct nvme_cq *cq)
{
	if (zoc_pci_msix_enabled(c->f)) {
		zoc_pci_irq_raise(c->f, cq->iv);
		return;
	}
	/* INTx or single MSI: one vector, masked by INTMS bit 0. */
	if (__atomic_load_n(&c->intms, __ATOMIC_ACQUIRE) & 1u) {
		__atomic_store_n(&c->intx_pending, 1, __ATOMIC_RELEASE);
		return;
	}
	zoc_pci_irq_raise(c->f, 0);
}

static void cq_signal(struct zoc_nvme_ctrlr *c, struct nvme_cq *cq, uint64_t *now)
{
	if (!cq->unsig)
		return;
	if (!cq->ien) {
		cq->unsig = 0;
		return;
	}
	if (cq->qid != 0 && cq->iv < c->msix_vectors &&
	    !__atomic_load_n(&c->iv_cd[cq->iv], __ATOMIC_RELAXED)) {
		uint32_t co = __atomic_load_n(&c->feat_coalesce, __ATOMIC_RELAXED);
		uint32_t thr = (co & 0xff) + 1, time = (co >> 8) & 0xff;

		if (time && cq->unsig < thr) {
			if (!*now)
				*now = zoc_now_ns();
			if (*now - cq->first_unsig_ns < (uint64_t)time * 100000)
				return; /* held back: arm() keeps the reactor awake */
		}
	}
	cq->unsig = 0;
	cq_raise(c, cq);
}

/* ----------------------------------------------------------- completions */

static uint16_t status_word(uint16_t status)
{
	uint16_t sct = (status >> 8) & 0x7;

	if (status && !(sct == NVME_SCT_MEDIA || status == NVME_SC_INTERNAL))
		status |= NVME_STATUS_DNR;
	return status;
}

static inline bool cq_full(const struct nvme_cq *cq)
{
	uint32_t next = cq->tail + 1 == cq->size ? 0 : cq->tail + 1;

	return next == cq->head;
}

static void sq_delete_finish(struct nvme_sq *sq);

static void stats_account(struct nvme_sq *sq, struct nvme_req *r)
{
	struct zoc_io_stats *s = &sq->stats;

	if (sq->qid == 0)
		return;
	if (r->status) {
		if (r->status == NVME_SC_INVALID_OPCODE)
			s->unsupported++;
		else if ((r->status >> 8) == NVME_SCT_MEDIA || r->status == NVME_SC_INTERNAL)
			s->errors++;
		else
			s->invalid++;
	} else {
		switch (r->opc) {
		case NVME_CMD_READ:
			s->read_ops++;
			s->read_bytes += r->bytes;
			break;
		case NVME_CMD_WRITE:
			s->write_ops++;
			s->write_bytes += r->bytes;
			break;
		case NVME_CMD_FLUSH:
			s->flush_ops++;
			break;
		case NVME_CMD_DSM:
			s->discard_ops++;
			break;
		case NVME_CMD_WRITE_ZEROES:
			s->write_zeroes_ops++;
			break;
		default:
			s->other_ops++;
			break;
		}
	}
	zoc_stats_record_latency(s, zoc_now_ns() - r->start_ns);
}

/* Returns a finished request to its SQ's pool. */
static void req_release(struct nvme_req *r)
{
	struct nvme_sq *sq = r->sq;
	struct nvme_group *g = sq->cq ? sq->cq->g : NULL;

	zoc_pool_put(sq->pool, r);
	sq->inflight--;
	if (ZOC_UNLIKELY(sq->deleting) && sq->inflight == 0 && !sq->fbusy)
		sq_delete_finish(sq);
	if (g && ZOC_UNLIKELY(g->waiters != NULL))
		nvme_group_check(g);
}

static void cq_post(struct nvme_cq *cq, struct nvme_req *r)
{
	struct nvme_cqe *e = &cq->ring[cq->tail];
	uint32_t last = (uint32_t)r->cid |
			((uint32_t)((status_word(r->status) << 1) | cq->phase) << 16);

	e->dw0 = r->dw0;
	e->dw1 = 0;
	e->sqhd = (uint16_t)r->sq->head;
	e->sqid = r->sq->qid;
	__atomic_store_n((uint32_t *)&e->cid, last, __ATOMIC_RELEASE);
	if (++cq->tail == cq->size) {
		cq->tail = 0;
		cq->phase ^= 1;
	}
	if (!cq->unsig++ && ZOC_UNLIKELY(__atomic_load_n(&cq->c->feat_coalesce, __ATOMIC_RELAXED)))
		cq->first_unsig_ns = zoc_now_ns(); /* only coalescing looks at it */
	if (!cq->outstanding) {
		cq->outstanding = true;
		__atomic_add_fetch(&cq->c->cq_outstanding, 1, __ATOMIC_RELAXED);
	}
}

static void cq_drop_held(struct nvme_cq *cq)
{
	struct nvme_req *r = cq->held;

	cq->held = NULL;
	cq->held_tail = &cq->held;
	while (r) {
		struct nvme_req *next = r->next;

		req_release(r);
		r = next;
	}
}

/* Posts held completions while there is room. Returns how many. */
static int cq_flush_held(struct nvme_cq *cq)
{
	int n = 0;

	while (cq->held && !cq_full(cq)) {
		struct nvme_req *r = cq->held;

		cq->held = r->next;
		if (!cq->held)
			cq->held_tail = &cq->held;
		cq_post(cq, r);
		req_release(r);
		n++;
	}
	return n;
}

void nvme_req_complete(struct nvme_req *r, uint16_t status)
{
	struct nvme_sq *sq = r->sq;
	struct nvme_cq *cq = sq->cq;
	struct nvme_group *g = cq ? cq->g : NULL;

	r->status = status;
	stats_account(sq, r);
	if (!g || g->discard) {
		req_release(r);
		return;
	}
	if (g->quiesced || !cq->ring || cq->held || cq_full(cq) || !may_dma(cq->c)) {
		r->next = NULL;
		*cq->held_tail = r;
		cq->held_tail = &r->next;
		return;
	}
	cq_post(cq, r);
	req_release(r);
}

/* ------------------------------------------------------------- doorbells */

struct bad_db_msg {
	struct zoc_nvme_ctrlr *c;
	uint8_t info;
	uint16_t qid;
};

static void bad_db_on_r0(void *arg)
{
	struct bad_db_msg *m = arg;

	nvme_error_log(m->c, m->qid, 0xffff, NVME_SC_INVALID_FIELD, 0);
	nvme_aen_post(m->c, NVME_AER_TYPE_ERROR, m->info, NVME_LOG_ERROR);
	__atomic_store_n(&m->c->bad_db_msg_pending, false, __ATOMIC_RELEASE);
	free(m);
}

static void report_bad_db(struct zoc_nvme_ctrlr *c, uint16_t qid, uint8_t info)
{
	struct bad_db_msg *m;

	ZOC_WARN_RL("%s: invalid doorbell write (queue %u, %s)", c->name, qid,
		    info == NVME_AER_ERR_INVALID_DB ? "no such queue" : "value out of range");
	if (on_reactor0()) {
		nvme_error_log(c, qid, 0xffff, NVME_SC_INVALID_FIELD, 0);
		nvme_aen_post(c, NVME_AER_TYPE_ERROR, info, NVME_LOG_ERROR);
		return;
	}
	/* one report in flight at a time: a driver flipping a doorbell between
	 * bad values cannot flood reactor 0 with messages */
	if (__atomic_exchange_n(&c->bad_db_msg_pending, true, __ATOMIC_ACQ_REL))
		return;
	m = malloc(sizeof(*m));
	if (!m) {
		__atomic_store_n(&c->bad_db_msg_pending, false, __ATOMIC_RELEASE);
		return;
	}
	m->c = c;
	m->info = info;
	m->qid = qid;
	if (zoc_reactor_send_msg(zoc_reactor_get(0), bad_db_on_r0, m)) {
		free(m);
		__atomic_store_n(&c->bad_db_msg_pending, false, __ATOMIC_RELEASE);
	}
}

static void cq_update_head(struct zoc_nvme_ctrlr *c, struct nvme_cq *cq)
{
	uint32_t db = db_load(c, 2u * cq->qid + 1);
	uint32_t used, k;

	if (db == cq->head)
		goto check;
	used = cq->tail >= cq->head ? cq->tail - cq->head : cq->tail + cq->size - cq->head;
	k = db >= cq->head ? db - cq->head : db + cq->size - cq->head;
	if (db >= cq->size || k > used) {
		if (db != cq->bad_db) {
			cq->bad_db = db;
			report_bad_db(c, cq->qid, NVME_AER_ERR_INVALID_DB_VALUE);
		}
		goto check;
	}
	if (ZOC_UNLIKELY(cq->remote)) {
		/* A remote CQ's entries count once their write is answered: the
		 * client may see them (and ring) before the answer reaches us;
		 * such a head is taken when it comes. */
		uint32_t w = cq->wtail >= cq->head ? cq->wtail - cq->head
						    : cq->wtail + cq->size - cq->head;

		if (k > w)
			goto check;
	}
	cq->head = db;
check:
	if (cq->outstanding && cq->head == cq->tail) {
		cq->outstanding = false;
		if (__atomic_sub_fetch(&c->cq_outstanding, 1, __ATOMIC_ACQ_REL) == 0 &&
		    !zoc_pci_msix_enabled(c->f) && !zoc_pci_msi_active(c->f))
			zoc_pci_intx_lower(c->f);
	}
}

static void sq_update_tail(struct zoc_nvme_ctrlr *c, struct nvme_sq *sq)
{
	uint32_t db = db_load(c, 2u * sq->qid);

	if (db == sq->tail)
		return;
	if (db >= sq->size) {
		if (db != sq->bad_db) {
			sq->bad_db = db;
			report_bad_db(c, sq->qid, NVME_AER_ERR_INVALID_DB_VALUE);
		}
		return;
	}
	sq->tail = db;
}

/* ---------------------------------------------------------------- fetch */

/* Executes the entries [head, end) of the ring (at most budget). */
static inline __attribute__((always_inline)) int sq_consume(struct nvme_group *g,
							   struct nvme_sq *sq, uint32_t end,
							   int budget)
{
	struct zoc_nvme_ctrlr *c = g->c;
	uint64_t now = 0;
	int n = 0;

	while (sq->head != end && n < budget) {
		struct nvme_req *r = zoc_pool_get(sq->pool);
		struct nvme_sqe cmd;

		if (ZOC_UNLIKELY(!r))
			break; /* every slot busy: the ring holds the rest */
		memcpy(&cmd, &sq->ring[sq->head], sizeof(cmd));
		if (++sq->head == sq->size)
			sq->head = 0;
		sq->inflight++;
		if (!now)
			now = zoc_now_ns();
		r->sq = sq;
		r->next = NULL;
		r->start_ns = now;
		r->dw0 = 0;
		r->cid = cmd.cid;
		r->opc = cmd.opc;
		r->nsid = cmd.nsid;
		r->status = 0;
		r->fua = false;
		r->ns_counted = false;
		r->in_bdev = false;
		r->bytes = 0;
		r->iovcnt = 0;
		r->gen = c->gen;
		if (sq->qid == 0)
			nvme_admin_exec(c, r, &cmd);
		else
			nvme_io_exec(g, r, &cmd);
		n++;
	}
	return n;
}

static int sq_fetch(struct nvme_group *g, struct nvme_sq *sq, int budget)
{
	sq_update_tail(g->c, sq);
	return sq_consume(g, sq, sq->tail, budget);
}

/* ------------------------------------------- queues in remote memory */

/*
 * A queue whose ring lies in memory the link reaches only with messages
 * (src/link/dma.h remote regions) has a local shadow ring, chosen once at
 * creation (the fast path above never looks at it):
 *   SQ: when the tail doorbell moves, the new entries are fetched into the
 *       shadow with one copy (up to the ring's end; the rest with the next
 *       one); the poller executes only entries that have arrived.
 *   CQ: entries are built in the shadow as usual (phase bit, head
 *       accounting) and written to the client with a copy; the vector is
 *       signalled only once the write is answered. The head doorbell may not
 *       pass the entries written so far.
 * One copy per queue in flight, counted in the group's busy, so a quiesce,
 * disable or destroy waits for it (the link fails copies at a quiesce with
 * -EAGAIN: the queue retries after the resume). Any other failure (the
 * client answered with an error, a timeout, the link gone) is fatal to the
 * controller (CSTS.CFS): the commands or completions cannot be moved.
 */
#define SQ_FETCH_MAX 256           /* entries per fetch (16 KiB) */

static void queue_copy_failed(struct zoc_nvme_ctrlr *c, const char *what, uint16_t qid,
			      int status)
{
	ZOC_WARN_RL("%s: %s %u in memory without an fd: copy through the link failed (%s): "
		    "controller fatal status", c->name, what, qid, strerror(-status));
	__atomic_or_fetch(&c->csts, NVME_CSTS_CFS, __ATOMIC_RELEASE);
}

static void sq_fetch_done(struct zoc_mem_io *io, int status)
{
	struct nvme_sq *sq = io->arg;
	struct nvme_group *g = sq->fg;
	uint32_t got = (uint32_t)(io->done / sizeof(struct nvme_sqe));

	sq->fbusy = false;
	g->busy--;
	if (!status) {
		sq->avail = sq->fend == sq->size ? 0 : sq->fend;
	} else {
		/* keep what arrived whole (a quiesce may cut a copy) */
		sq->avail = (sq->avail + got) % sq->size;
		if (status != -EAGAIN && !g->discard && !g->quiesced) {
			sq->dead = true;
			queue_copy_failed(g->c, "SQ", sq->qid, status);
		}
	}
	if (ZOC_UNLIKELY(sq->deleting) && sq->inflight == 0)
		sq_delete_finish(sq);
	if (ZOC_UNLIKELY(g->waiters != NULL))
		nvme_group_check(g);
}

static void sq_fetch_start(struct nvme_group *g, struct nvme_sq *sq)
{
	uint32_t end = sq->tail > sq->avail ? sq->tail : sq->size;
	int rc;

	if (end - sq->avail > SQ_FETCH_MAX)
		end = sq->avail + SQ_FETCH_MAX;
	sq->fend = end;
	sq->fbusy = true;
	sq->fg = g;
	g->busy++;
	sq->fio = (struct zoc_mem_io){
		.gpa = sq->gpa + (uint64_t)sq->avail * sizeof(struct nvme_sqe),
		.buf = &sq->shadow[sq->avail],
		.len = (uint64_t)(end - sq->avail) * sizeof(struct nvme_sqe),
		.to_guest = false,
		.cb = sq_fetch_done,
		.arg = sq,
	};
	rc = zoc_mem_io_submit(g->c->mem, &sq->fio);
	if (rc) {
		sq->fbusy = false;
		g->busy--;
		sq->dead = true;
		queue_copy_failed(g->c, "SQ", sq->qid, rc);
	}
}

static int sq_fetch_remote(struct nvme_group *g, struct nvme_sq *sq, int budget)
{
	if (sq->dead)
		return 0;
	sq_update_tail(g->c, sq);
	if (!sq->fbusy && sq->avail != sq->tail) {
		uint32_t size = sq->size;
		uint32_t na = (sq->avail + size - sq->head) % size;
		uint32_t nt = (sq->tail + size - sq->head) % size;

		if (nt <= na)
			sq->avail = sq->tail; /* the tail went back: those are here */
		else
			sq_fetch_start(g, sq);
	}
	return sq_consume(g, sq, sq->avail, budget);
}

static void cq_remote_sync(struct nvme_group *g, struct nvme_cq *cq, uint64_t *now);

static void cq_deleted_on_r0(void *arg);

static void cq_write_done(struct zoc_mem_io *io, int status)
{
	struct nvme_cq *cq = io->arg;
	struct nvme_group *g = cq->wg;
	uint32_t put = (uint32_t)(io->done / sizeof(struct nvme_cqe));

	cq->wbusy = false;
	g->busy--;
	if (cq->wdel) {
		/* deleted meanwhile: unlinked already, reactor 0 may free it now */
		cq->wdel = false;
		send_msg_retry(zoc_reactor_get(0), cq_deleted_on_r0, cq);
	} else if (!status) {
		cq->wtail = cq->wend == cq->size ? 0 : cq->wend;
		if (!g->discard && !g->quiesced) {
			uint64_t now = 0;

			cq_remote_sync(g, cq, &now);
		}
	} else {
		cq->wtail = (cq->wtail + put) % cq->size;
		if (status != -EAGAIN && !g->discard && !g->quiesced) {
			cq->dead = true;
			queue_copy_failed(g->c, "CQ", cq->qid, status);
		}
	}
	if (ZOC_UNLIKELY(g->waiters != NULL))
		nvme_group_check(g);
}

static void cq_write_start(struct nvme_group *g, struct nvme_cq *cq)
{
	uint32_t end = cq->tail > cq->wtail ? cq->tail : cq->size;
	int rc;

	cq->wend = end;
	cq->wbusy = true;
	cq->wg = g;
	g->busy++;
	cq->wio = (struct zoc_mem_io){
		.gpa = cq->gpa + (uint64_t)cq->wtail * sizeof(struct nvme_cqe),
		.buf = &cq->shadow[cq->wtail],
		.len = (uint64_t)(end - cq->wtail) * sizeof(struct nvme_cqe),
		.to_guest = true,
		.cb = cq_write_done,
		.arg = cq,
	};
	rc = zoc_mem_io_submit(g->c->mem, &cq->wio);
	if (rc) {
		cq->wbusy = false;
		g->busy--;
		cq->dead = true;
		queue_copy_failed(g->c, "CQ", cq->qid, rc);
	}
}

/* Writes what was posted, then signals. */
static void cq_remote_sync(struct nvme_group *g, struct nvme_cq *cq, uint64_t *now)
{
	if (cq->wbusy || cq->dead || !cq->ring || !may_dma(g->c))
		return;
	if (cq->wtail != cq->tail)
		cq_write_start(g, cq);
	if (!cq->wbusy && cq->wtail == cq->tail && cq->unsig)
		cq_signal(g->c, cq, now);
}

#define DB_SCAN_EVERY 64          /* polls of reactor 0 */
#define DB_SCAN_SLOTS 16          /* a sweep of the page: 64 * 64 polls */

/* Stores in the mmap'd page to doorbells of queues that do not exist are
 * not trapped: reactor 0 looks at a few slots now and then, reports a
 * non-zero one as an invalid doorbell register and clears it. (Slots are
 * zeroed when a queue is created or deleted and at enable and disable.) */
static void db_scan(struct zoc_nvme_ctrlr *c)
{
	unsigned idx = c->db_scan_next;

	c->db_scan_next = (idx + DB_SCAN_SLOTS) % (NVME_DB_PAGE / 4);
	for (unsigned end = idx + DB_SCAN_SLOTS; idx < end; idx++) {
		unsigned qid = idx / 2;

		if (qid <= NVME_MAX_QID && (idx & 1 ? c->cq[qid].exists : c->sq[qid].exists))
			continue;
		if (db_load(c, idx)) {
			db_store(c, idx, 0);
			report_bad_db(c, (uint16_t)qid, NVME_AER_ERR_INVALID_DB);
		}
	}
}

static void admin_tick(struct zoc_nvme_ctrlr *c)
{
	if (c->db_offered && ++c->db_scan_tick % DB_SCAN_EVERY == 0 && c->enabled &&
	    !(__atomic_load_n(&c->csts, __ATOMIC_RELAXED) & NVME_CSTS_CFS))
		db_scan(c);
	if (ZOC_UNLIKELY(c->feat_kato) && c->enabled && c->ka_deadline_ns &&
	    zoc_now_ns() > c->ka_deadline_ns) {
		ZOC_WARN("%s: keep alive timer expired: controller fatal status", c->name);
		nvme_error_log(c, 0, 0xffff, NVME_ST(0, 0x19), 0);
		__atomic_or_fetch(&c->csts, NVME_CSTS_CFS, __ATOMIC_RELEASE);
		c->ka_deadline_ns = 0;
	}
}

static int group_poll(void *arg)
{
	struct nvme_group *g = arg;
	struct zoc_nvme_ctrlr *c = g->c;
	uint64_t now = 0;
	int work = 0;

	if (ZOC_UNLIKELY(g->quiesced || !may_dma(c)))
		return 0;
	for (struct nvme_cq *cq = g->cqs; cq; cq = cq->next) {
		if (ZOC_UNLIKELY(!cq->ring))
			continue;
		cq_update_head(c, cq);
		if (cq->held)
			work += cq_flush_held(cq);
		if (!g->stopped) {
			for (struct nvme_sq *sq = cq->sqs; sq; sq = sq->next)
				if (!sq->deleting && sq->ring)
					work += ZOC_UNLIKELY(sq->remote)
							? sq_fetch_remote(g, sq, NVME_BATCH)
							: sq_fetch(g, sq, NVME_BATCH);
		}
		if (ZOC_UNLIKELY(cq->remote))
			cq_remote_sync(g, cq, &now);
		else if (cq->unsig)
			cq_signal(c, cq, &now);
	}
	if (g->idx == 0)
		admin_tick(c);
	return work;
}

static int group_arm(void *arg)
{
	struct nvme_group *g = arg;
	struct zoc_nvme_ctrlr *c = g->c;

	if (g->quiesced || !may_dma(c))
		return 0;
	for (struct nvme_cq *cq = g->cqs; cq; cq = cq->next) {
		if (!cq->ring)
			continue;
		if (cq->remote) {
			/* a write in flight wakes us with its reply */
			if (!cq->wbusy && !cq->dead && (cq->unsig || cq->wtail != cq->tail))
				return 1;
		} else if (cq->unsig) {
			return 1;
		}
		if (cq->held && db_load(c, 2u * cq->qid + 1) != cq->head)
			return 1;
		if (g->stopped)
			continue;
		for (struct nvme_sq *sq = cq->sqs; sq; sq = sq->next) {
			uint32_t db = db_load(c, 2u * sq->qid);

			if (sq->deleting || !sq->ring)
				continue;
			if (sq->remote) {
				if (sq->dead)
					continue;
				if (sq->head != sq->avail ||
				    (!sq->fbusy && (sq->avail != sq->tail ||
						    (db != sq->tail && db < sq->size))))
					return 1;
				continue;
			}
			if (sq->head != sq->tail || (db != sq->tail && db < sq->size))
				return 1;
		}
	}
	return 0;
}

/* Doorbell kicks are edge-triggered and never read: waking the reactor is
 * all a kick does; the poller does the work. */
static void group_kick(void *arg, uint32_t events)
{
	(void)arg;
	(void)events;
}

static const struct zoc_poller_ops group_poller_ops = {
	.poll = group_poll,
	.arm = group_arm,
};

static void group_start_msg(void *arg)
{
	struct nvme_group *g = arg;
	char name[32];

	snprintf(name, sizeof(name), "nvme-%u", g->idx);
	g->poller = zoc_poller_register(g->r, &group_poller_ops, g, 0, name);
	if (!g->poller)
		ZOC_ERR("%s: no poller on reactor %u: its queues will not run", g->c->name, g->idx);
	if (g->efd >= 0)
		g->efd_registered =
			zoc_reactor_add_fd(g->r, g->efd, EPOLLIN | EPOLLET, group_kick, g) == 0;
}

struct nvme_group_ns *nvme_group_ns_get(struct nvme_group *g, uint32_t nsid)
{
	struct nvme_group_ns *gn = &g->ns[nsid - 1];
	struct nvme_ns *ns;

	if (ZOC_LIKELY(gn->ch))
		return gn;
	ns = nvme_ns_get(g->c, nsid);
	if (!ns)
		return NULL;
	gn->ch = zoc_bdev_get_channel(ns->bdev, g->r);
	return gn->ch ? gn : NULL;
}

/* ------------------------------------------------------ queue ownership */

struct q_msg {
	struct zoc_nvme_ctrlr *c;
	uint16_t qid;
};

static void cq_attach_msg(void *arg)
{
	struct nvme_cq *cq = arg;
	struct nvme_group *g = cq->g;

	cq->next = g->cqs;
	g->cqs = cq;
}

static void sq_attach_msg(void *arg)
{
	struct nvme_sq *sq = arg;
	struct nvme_cq *cq = sq->cq;

	sq->next = NULL;
	/* append: SQs are served in creation order */
	{
		struct nvme_sq **pp = &cq->sqs;

		while (*pp)
			pp = &(*pp)->next;
		*pp = sq;
	}
}

static void cq_reset_owner_state(struct nvme_cq *cq)
{
	cq->tail = 0;
	cq->head = 0;
	cq->phase = 1;
	cq->bad_db = UINT32_MAX;
	cq->outstanding = false;
	cq->held = NULL;
	cq->held_tail = &cq->held;
	cq->unsig = 0;
	cq->first_unsig_ns = 0;
	cq->sqs = NULL;
	cq->next = NULL;
	cq->wtail = 0;
	cq->wend = 0;
	cq->wbusy = false;
	cq->wdel = false;
	cq->dead = false;
}

/* Reactor 0: a remote ring's shadow, or NULL (queue outside guest memory,
 * or no memory for it). */
static void *shadow_new(struct zoc_nvme_ctrlr *c, const char *what, uint16_t qid, uint64_t gpa,
			uint64_t bytes, bool write)
{
	void *p;

	if (!c->mem || !zoc_mem_is_remote(c->mem, gpa, bytes, write))
		return NULL;
	p = nvme_calloc(1, bytes);
	if (p)
		ZOC_LOG_RL(ZOC_LOG_INFO, "%s: %s %u at 0x%llx lies in memory without an fd: "
			   "served through copies", c->name, what, qid, (unsigned long long)gpa);
	return p;
}

/* Reactor 0 (set_dma): can a remote ring be reached in this space? */
static bool remote_reachable(const struct zoc_mem *m, uint64_t gpa, uint64_t bytes, bool write)
{
	return m && (zoc_mem_gpa_to_hva(m, gpa, bytes, write) ||
		     zoc_mem_is_remote(m, gpa, bytes, write));
}

int nvme_cq_create(struct zoc_nvme_ctrlr *c, uint16_t qid, uint64_t gpa, uint32_t size,
		   uint16_t iv, bool ien)
{
	struct nvme_cq *cq = &c->cq[qid];
	void *ring = c->mem ? zoc_mem_gpa_to_hva(c->mem, gpa, (uint64_t)size * 16, true) : NULL;
	void *shadow = NULL;

	if (!ring) {
		shadow = shadow_new(c, "CQ", qid, gpa, (uint64_t)size * 16, true);
		if (!shadow)
			return -EFAULT;
		ring = shadow;
	}
	free(cq->shadow); /* NULL: freed when it was deleted */
	cq->shadow = shadow;
	cq->remote = shadow != NULL;
	cq_reset_owner_state(cq);
	cq->c = c;
	cq->qid = qid;
	cq->size = size;
	cq->gpa = gpa;
	cq->ring = ring;
	cq->iv = iv;
	cq->ien = ien;
	cq->exists = true;
	cq->nsq = 0;
	cq->del_req = NULL;
	if (qid == 0)
		cq->g = &c->groups[0];
	else
		cq->g = &c->groups[c->next_reactor++ % c->ngroups];
	db_store(c, 2u * qid + 1, 0);
	if (cq->g == &c->groups[0] && on_reactor0()) {
		cq_attach_msg(cq);
	} else if (send_msg(cq->g->r, cq_attach_msg, cq)) {
		cq->exists = false;
		cq->ring = NULL;
		cq->g = NULL;
		free(cq->shadow);
		cq->shadow = NULL;
		cq->remote = false;
		return -ENOMEM;
	}
	return 0;
}

int nvme_sq_create(struct zoc_nvme_ctrlr *c, uint16_t qid, uint64_t gpa, uint32_t size,
		   uint16_t cqid, uint16_t qprio)
{
	struct nvme_sq *sq = &c->sq[qid];
	struct nvme_cq *cq = &c->cq[cqid];
	void *ring = c->mem ? zoc_mem_gpa_to_hva(c->mem, gpa, (uint64_t)size * 64, false) : NULL;
	void *shadow = NULL;
	char name[32];

	if (!ring) {
		shadow = shadow_new(c, "SQ", qid, gpa, (uint64_t)size * 64, false);
		if (!shadow)
			return -EFAULT;
		ring = shadow;
	}
	snprintf(name, sizeof(name), "nvme-sq%u", qid);
	sq->pool = zoc_pool_create(name, size, sizeof(struct nvme_req));
	if (!sq->pool) {
		free(shadow);
		return -ENOMEM;
	}
	free(sq->shadow); /* NULL: freed when it was deleted */
	sq->shadow = shadow;
	sq->remote = shadow != NULL;
	sq->avail = 0;
	sq->fend = 0;
	sq->fbusy = false;
	sq->dead = false;
	sq->fg = NULL;
	sq->c = c;
	sq->qid = qid;
	sq->cqid = cqid;
	sq->size = size;
	sq->gpa = gpa;
	sq->ring = ring;
	sq->cq = cq;
	sq->head = 0;
	sq->tail = 0;
	sq->bad_db = UINT32_MAX;
	sq->inflight = 0;
	sq->deleting = false;
	sq->del_req = NULL;
	sq->next = NULL;
	memset(&sq->stats, 0, sizeof(sq->stats));
	sq->exists = true;
	sq->qprio = qprio;
	cq->nsq++;
	db_store(c, 2u * qid, 0);
	if (cq->g == &c->groups[0] && on_reactor0()) {
		sq_attach_msg(sq);
	} else if (send_msg(cq->g->r, sq_attach_msg, sq)) {
		cq->nsq--;
		sq->exists = false;
		sq->ring = NULL;
		sq->cq = NULL;
		zoc_pool_destroy(sq->pool);
		sq->pool = NULL;
		free(sq->shadow);
		sq->shadow = NULL;
		sq->remote = false;
		return -ENOMEM;
	}
	return 0;
}

static void sq_free_r0(struct zoc_nvme_ctrlr *c, struct nvme_sq *sq)
{
	if (sq->qid != 0)
		zoc_stats_add(&c->retired, &sq->stats);
	zoc_pool_destroy(sq->pool);
	sq->pool = NULL;
	sq->ring = NULL;
	free(sq->shadow);
	sq->shadow = NULL;
	sq->remote = false;
	sq->exists = false;
	sq->del_req = NULL;
	if (sq->cq && sq->cq->nsq)
		sq->cq->nsq--;
	sq->cq = NULL;
	db_store(c, 2u * sq->qid, 0);
}

static void sq_deleted_on_r0(void *arg)
{
	struct nvme_sq *sq = arg;
	struct zoc_nvme_ctrlr *c = sq->c;
	struct nvme_req *r = sq->del_req;

	if (!r)
		return;
	if (r->gen == c->gen) {
		sq_free_r0(c, sq);
		nvme_req_complete(r, NVME_SC_SUCCESS);
	} else {
		/* a disable overtook it: its clean-up frees the queue */
		sq->del_req = NULL;
		nvme_req_complete(r, NVME_SC_SUCCESS);
	}
}

/* Owner: the SQ is idle; unlink it and tell reactor 0. */
static void sq_delete_finish(struct nvme_sq *sq)
{
	struct nvme_cq *cq = sq->cq;

	sq->deleting = false;
	for (struct nvme_sq **pp = &cq->sqs; *pp; pp = &(*pp)->next) {
		if (*pp == sq) {
			*pp = sq->next;
			break;
		}
	}
	sq->next = NULL;
	send_msg_retry(zoc_reactor_get(0), sq_deleted_on_r0, sq);
}

static void sq_delete_msg(void *arg)
{
	struct nvme_sq *sq = arg;
	struct nvme_cq *cq = sq->cq;

	if (!cq->g) {
		/* detached by a disable already */
		send_msg_retry(zoc_reactor_get(0), sq_deleted_on_r0, sq);
		return;
	}
	sq->deleting = true;
	if (sq->inflight == 0 && !sq->fbusy)
		sq_delete_finish(sq); /* else the last request's or the fetch's end */
}

int nvme_sq_delete(struct zoc_nvme_ctrlr *c, uint16_t qid, struct nvme_req *r)
{
	struct nvme_sq *sq = &c->sq[qid];

	if (send_msg(sq->cq->g ? sq->cq->g->r : zoc_reactor_get(0), sq_delete_msg, sq))
		return -ENOMEM;
	sq->del_req = r;
	return 0;
}

static void cq_deleted_on_r0(void *arg)
{
	struct nvme_cq *cq = arg;
	struct zoc_nvme_ctrlr *c = cq->c;
	struct nvme_req *r = cq->del_req;

	cq->del_req = NULL;
	if (r && r->gen == c->gen) {
		cq->exists = false;
		cq->ring = NULL;
		free(cq->shadow);
		cq->shadow = NULL;
		cq->remote = false;
		db_store(c, 2u * cq->qid + 1, 0);
	}
	if (r)
		nvme_req_complete(r, NVME_SC_SUCCESS);
}

static void cq_delete_msg(void *arg)
{
	struct nvme_cq *cq = arg;
	struct nvme_group *g = cq->g;

	if (g) {
		for (struct nvme_cq **pp = &g->cqs; *pp; pp = &(*pp)->next) {
			if (*pp == cq) {
				*pp = cq->next;
				break;
			}
		}
		if (cq->outstanding) {
			cq->outstanding = false;
			__atomic_sub_fetch(&cq->c->cq_outstanding, 1, __ATOMIC_ACQ_REL);
		}
		cq->g = NULL;
		cq->next = NULL;
		if (cq->wbusy) {
			/* its write's end tells reactor 0 (the shadow stays till then) */
			cq->wdel = true;
			return;
		}
	}
	send_msg_retry(zoc_reactor_get(0), cq_deleted_on_r0, cq);
}

int nvme_cq_delete(struct zoc_nvme_ctrlr *c, uint16_t qid, struct nvme_req *r)
{
	struct nvme_cq *cq = &c->cq[qid];

	if (send_msg(cq->g ? cq->g->r : zoc_reactor_get(0), cq_delete_msg, cq))
		return -ENOMEM;
	cq->del_req = r;
	return 0;
}

/* ------------------------------------------------------ controller state */

static void ctrl_reconcile(struct zoc_nvme_ctrlr *c);

static void set_csts(struct zoc_nvme_ctrlr *c, uint32_t v)
{
	__atomic_store_n(&c->csts, v, __ATOMIC_RELEASE);
}

static uint32_t get_csts(struct zoc_nvme_ctrlr *c)
{
	return __atomic_load_n(&c->csts, __ATOMIC_ACQUIRE);
}

static void regs_power_on(struct zoc_nvme_ctrlr *c)
{
	c->cc = 0;
	c->aqa = 0;
	c->asq = 0;
	c->acq = 0;
	set_csts(c, 0);
	__atomic_store_n(&c->intms, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&c->intx_pending, 0, __ATOMIC_RELEASE);
}

static bool ctrl_enable(struct zoc_nvme_ctrlr *c)
{
	uint32_t cc = c->cc;
	uint32_t mps = NVME_CC_MPS(cc);
	uint32_t sqs = NVME_AQA_ASQS(c->aqa) + 1, cqs = NVME_AQA_ACQS(c->aqa) + 1;
	uint64_t ps = 4096ull << mps;
	const char *why = NULL;

	if (NVME_CC_CSS(cc) != 0)
		why = "CC.CSS is not the NVM command set";
	else if (NVME_CC_AMS(cc) != 0)
		why = "CC.AMS is not round robin";
	else if (mps > NVME_MPSMAX)
		why = "CC.MPS over CAP.MPSMAX";
	else if (NVME_CC_IOSQES(cc) != NVME_SQES || NVME_CC_IOCQES(cc) != NVME_CQES)
		why = "CC.IOSQES/IOCQES are not 6/4";
	else if (sqs < 2 || cqs < 2)
		why = "admin queue sizes under 2";
	else if ((c->asq & (ps - 1)) || (c->acq & (ps - 1)))
		why = "admin queues not page aligned";
	else if (!c->mem)
		why = "no DMA space";
	if (!why) {
		c->page_size = (uint32_t)ps;
		memset(c->db, 0, NVME_DB_PAGE); /* stores made while disabled mean nothing */
		if (nvme_cq_create(c, 0, c->acq, cqs, 0, true)) {
			why = "admin completion queue outside guest memory";
		} else if (nvme_sq_create(c, 0, c->asq, sqs, 0, 0)) {
			why = "admin submission queue outside guest memory";
			/* the CQ is attached to group 0 already: the next disable removes it */
		}
	}
	if (why) {
		ZOC_WARN_RL("%s: enable failed: %s (CC 0x%x AQA 0x%x ASQ 0x%llx ACQ 0x%llx)",
			    c->name, why, cc, c->aqa, (unsigned long long)c->asq,
			    (unsigned long long)c->acq);
		set_csts(c, NVME_CSTS_CFS);
		return false;
	}
	c->enabled = true;
	c->nq_set = false;
	c->nsqa = c->max_io_queues;
	c->ncqa = c->max_io_queues;
	c->nchanged = 0;
	c->changed_overflow = false;
	c->aen_masked = 0;
	c->naen = 0;
	c->ka_deadline_ns = 0;
	set_csts(c, NVME_CSTS_RDY);
	ZOC_INFO("%s: enabled (admin queues %u/%u, page %llu)", c->name, sqs, cqs,
		 (unsigned long long)ps);
	return true;
}

/* All groups dropped their queues: free them and forget the state. */
static void disable_done(struct zoc_nvme_ctrlr *c, struct nvme_bcast *b)
{
	(void)b;
	nvme_aer_drop_all(c);
	for (unsigned q = 0; q <= NVME_MAX_QID; q++) {
		struct nvme_sq *sq = &c->sq[q];

		if (sq->exists || sq->pool)
			sq_free_r0(c, sq);
		sq->del_req = NULL;
	}
	for (unsigned q = 0; q <= NVME_MAX_QID; q++) {
		c->cq[q].exists = false;
		c->cq[q].ring = NULL;
		free(c->cq[q].shadow);
		c->cq[q].shadow = NULL;
		c->cq[q].remote = false;
		c->cq[q].g = NULL;
		c->cq[q].nsq = 0;
		c->cq[q].del_req = NULL;
	}
	memset(c->db, 0, NVME_DB_PAGE);
	__atomic_store_n(&c->dbbuf_db, NULL, __ATOMIC_RELEASE);
	c->dbbuf_ei = NULL;
	c->gen++;
	c->enabled = false;
	c->op_busy = false;
	c->next_reactor = 0;
	nvme_features_reset(c);
	set_csts(c, 0);
	__atomic_store_n(&c->intx_pending, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&c->cq_outstanding, 0, __ATOMIC_RELEASE);
	if (c->nreset_w) {
		struct nvme_reset_waiter w[NVME_RESET_WAITERS];
		unsigned n = c->nreset_w;

		memcpy(w, c->reset_w, sizeof(w));
		c->nreset_w = 0;
		regs_power_on(c);
		ZOC_INFO("%s: reset", c->name);
		for (unsigned i = 0; i < n; i++)
			w[i].fn(w[i].arg);
	} else {
		ZOC_INFO("%s: disabled", c->name);
	}
	ctrl_reconcile(c);
}

static void shutdown_done(struct zoc_nvme_ctrlr *c, struct nvme_bcast *b)
{
	(void)b;
	c->op_busy = false;
	set_csts(c, (get_csts(c) & ~NVME_CSTS_SHST_MASK) | NVME_CSTS_SHST_COMPLETE);
	ZOC_INFO("%s: shut down", c->name);
	ctrl_reconcile(c);
}

static bool g_reset_requested(struct zoc_nvme_ctrlr *c)
{
	return c->nreset_w != 0;
}

static void ctrl_reconcile(struct zoc_nvme_ctrlr *c)
{
	bool want = c->cc & NVME_CC_EN;
	uint32_t csts = get_csts(c);

	if (c->op_busy || c->destroying)
		return;
	if (g_reset_requested(c) || (!want && (c->enabled || (csts & NVME_CSTS_CFS)))) {
		if (!c->enabled && !(csts & NVME_CSTS_CFS) && !g_reset_requested(c))
			return;
		c->op_busy = true;
		bcast(c, c->bc_state, OP_DISABLE, disable_done, NULL, NULL);
		return;
	}
	if (want && !c->enabled && !(csts & NVME_CSTS_CFS)) {
		ctrl_enable(c);
		csts = get_csts(c);
	}
	if (NVME_CC_SHN(c->cc) && !(csts & NVME_CSTS_SHST_MASK)) {
		if (!c->enabled) {
			set_csts(c, csts | NVME_CSTS_SHST_COMPLETE);
			return;
		}
		set_csts(c, csts | NVME_CSTS_SHST_OCCURRING);
		c->op_busy = true;
		bcast(c, c->bc_state, OP_STOP, shutdown_done, NULL, NULL);
	}
}

/* ------------------------------------------------------------- registers */

static uint32_t reg_read32(struct zoc_nvme_ctrlr *c, uint64_t off)
{
	if (off >= NVME_REG_DBS) {
		if (off < NVME_REG_DBS + NVME_DB_PAGE)
			return db_load(c, (unsigned)((off - NVME_REG_DBS) / 4));
		return 0;
	}
	switch (off) {
	case NVME_REG_CAP:
		return (uint32_t)c->cap;
	case NVME_REG_CAP + 4:
		return (uint32_t)(c->cap >> 32);
	case NVME_REG_VS:
		return NVME_VS_1_4;
	case NVME_REG_INTMS:
	case NVME_REG_INTMC:
		return __atomic_load_n(&c->intms, __ATOMIC_ACQUIRE);
	case NVME_REG_CC:
		return c->cc;
	case NVME_REG_CSTS:
		return get_csts(c);
	case NVME_REG_AQA:
		return c->aqa;
	case NVME_REG_ASQ:
		return (uint32_t)c->asq;
	case NVME_REG_ASQ + 4:
		return (uint32_t)(c->asq >> 32);
	case NVME_REG_ACQ:
		return (uint32_t)c->acq;
	case NVME_REG_ACQ + 4:
		return (uint32_t)(c->acq >> 32);
	default:
		return 0; /* CMBLOC, CMBSZ, BPINFO, PMRCAP ...: not implemented */
	}
}

static void kick_owner(struct zoc_nvme_ctrlr *c, struct nvme_group *g)
{
	uint64_t one = 1;

	if (!g || g->idx == 0 || g->efd < 0)
		return;
	if (write(g->efd, &one, sizeof(one)) < 0)
		ZOC_WARN_RL("%s: doorbell kick: %s", c->name, strerror(errno));
}

static void doorbell_write(struct zoc_nvme_ctrlr *c, uint64_t off, uint32_t v)
{
	unsigned idx = (unsigned)((off - NVME_REG_DBS) / 4);
	unsigned qid = idx / 2;
	bool is_cq = idx & 1;
	struct nvme_group *g;
	uint32_t size;

	if (!c->enabled || (get_csts(c) & NVME_CSTS_CFS))
		return;
	if (qid > NVME_MAX_QID || (is_cq ? !c->cq[qid].exists : !c->sq[qid].exists)) {
		report_bad_db(c, (uint16_t)qid, NVME_AER_ERR_INVALID_DB);
		return;
	}
	size = is_cq ? c->cq[qid].size : c->sq[qid].size;
	if (v >= size) {
		report_bad_db(c, (uint16_t)qid, NVME_AER_ERR_INVALID_DB_VALUE);
		return;
	}
	db_store(c, idx, v);
	g = is_cq ? c->cq[qid].g : (c->sq[qid].cq ? c->sq[qid].cq->g : NULL);
	kick_owner(c, g);
}

/* One half of ASQ or ACQ (the low half is page aligned). */
static void admin_base_write(uint64_t *reg, bool high, uint32_t v)
{
	if (high)
		*reg = (*reg & 0xffffffffull) | ((uint64_t)v << 32);
	else
		*reg = (*reg & 0xffffffff00000000ull) | (v & ~0xfffu);
}

static void reg_write32(struct zoc_nvme_ctrlr *c, uint64_t off, uint32_t v)
{
	if (off >= NVME_REG_DBS) {
		if (off < NVME_REG_DBS + NVME_DB_PAGE)
			doorbell_write(c, off, v);
		return;
	}
	switch (off) {
	case NVME_REG_INTMS:
		__atomic_or_fetch(&c->intms, v, __ATOMIC_ACQ_REL);
		return;
	case NVME_REG_INTMC: {
		uint32_t old = __atomic_fetch_and(&c->intms, ~v, __ATOMIC_ACQ_REL);

		if ((old & v & 1u) && __atomic_exchange_n(&c->intx_pending, 0, __ATOMIC_ACQ_REL))
			zoc_pci_irq_raise(c->f, 0);
		return;
	}
	case NVME_REG_CC: {
		uint32_t old = c->cc;

		v &= NVME_CC_WRITABLE;
		if ((old & NVME_CC_EN) && (v & NVME_CC_EN)) {
			/* while enabled only SHN may change */
			v = (old & ~(3u << 14)) | (v & (3u << 14));
		}
		c->cc = v;
		if (!(v & NVME_CC_EN) || ((v ^ old) & NVME_CC_EN) || NVME_CC_SHN(v))
			ctrl_reconcile(c);
		return;
	}
	case NVME_REG_NSSR:
		return; /* CAP.NSSRS is 0 */
	case NVME_REG_AQA:
		if (!(c->cc & NVME_CC_EN))
			c->aqa = v & NVME_AQA_WRITABLE;
		return;
	case NVME_REG_ASQ:
	case NVME_REG_ASQ + 4:
	case NVME_REG_ACQ:
	case NVME_REG_ACQ + 4:
		if (!(c->cc & NVME_CC_EN))
			admin_base_write(off < NVME_REG_ACQ ? &c->asq : &c->acq, off & 4, v);
		return;
	default:
		return; /* read-only or reserved */
	}
}

static int nvme_bar_access(struct zoc_pci_func *f, unsigned bar, uint64_t off, void *buf,
			   uint32_t len, bool is_write)
{
	struct zoc_nvme_ctrlr *c = zoc_pci_func_ctx(f);

	if (bar != 0) {
		if (!is_write)
			memset(buf, 0, len);
		return 0;
	}
	if (zoc_range_bad(off, len, NVME_BAR0_SIZE))
		return -EINVAL;
	if (is_write) {
		uint32_t v[2] = {0, 0};

		if ((len != 4 && len != 8) || (off & (len - 1))) {
			ZOC_WARN_RL("%s: %u-byte register write at 0x%llx ignored", c->name, len,
				    (unsigned long long)off);
			return 0;
		}
		memcpy(v, buf, len);
		reg_write32(c, off, v[0]);
		if (len == 8)
			reg_write32(c, off + 4, v[1]);
		return 0;
	}
	/* reads of any size: from the dwords that hold the bytes */
	for (uint32_t i = 0; i < len;) {
		uint64_t a = off + i;
		uint32_t dw = reg_read32(c, a & ~3ull);
		uint32_t k = ZOC_MIN(4 - (uint32_t)(a & 3), len - i);

		memcpy((uint8_t *)buf + i, (uint8_t *)&dw + (a & 3), k);
		i += k;
	}
	return 0;
}

static int nvme_bar_mmap_areas(struct zoc_pci_func *f, unsigned bar,
			       struct zoc_pci_mmap_area *areas, int max)
{
	struct zoc_nvme_ctrlr *c = zoc_pci_func_ctx(f);

	/* A reactor asleep in interrupt mode would not see stores to the page:
	 * doorbells then come as BAR writes, which wake it. */
	if (bar != 0 || !c->mmap_doorbells || max < 1 || zoc_reactor_interrupt_mode())
		return 0;
	c->db_offered = true;
	areas[0].offset = NVME_REG_DBS;
	areas[0].size = NVME_DB_PAGE;
	areas[0].fd = c->db_fd;
	areas[0].fd_offset = NVME_REG_DBS;
	return 1;
}

static void bus_master_update(struct zoc_nvme_ctrlr *c)
{
	bool on = zoc_pci_bus_master(c->f);

	if (__atomic_exchange_n(&c->bus_master, on, __ATOMIC_RELEASE) == on)
		return;
	ZOC_DEBUG("%s: bus mastering %s", c->name, on ? "on" : "off");
	if (on) /* reactors asleep in interrupt mode: look at the queues again */
		for (unsigned i = 0; i < c->ngroups; i++)
			kick_owner(c, &c->groups[i]);
}

static void nvme_cfg_written(struct zoc_pci_func *f, uint32_t off, uint32_t len)
{
	if (off < 0x06 && off + len > 0x04) /* the command register */
		bus_master_update(zoc_pci_func_ctx(f));
}

static void nvme_reset(struct zoc_pci_func *f, zoc_pci_done_fn done, void *arg)
{
	struct zoc_nvme_ctrlr *c = zoc_pci_func_ctx(f);

	bus_master_update(c); /* config space is back at power-on values */
	/* a reset already waiting is answered by the same disable */
	if (c->nreset_w == NVME_RESET_WAITERS) {
		ZOC_ERR("%s: more than %u resets pending: one is not answered", c->name,
			NVME_RESET_WAITERS);
	} else {
		c->reset_w[c->nreset_w].fn = done;
		c->reset_w[c->nreset_w].arg = arg;
		c->nreset_w++;
	}
	c->cc = 0;
	ctrl_reconcile(c);
}

static void quiesce_done(struct zoc_nvme_ctrlr *c, struct nvme_bcast *b)
{
	(void)c;
	if (b->user_fn)
		b->user_fn(b->user_arg);
}

static void nvme_quiesce(struct zoc_pci_func *f, zoc_pci_done_fn done, void *arg)
{
	struct zoc_nvme_ctrlr *c = zoc_pci_func_ctx(f);
	struct nvme_bcast *b = c->bc_quiesce;

	if (ZOC_UNLIKELY(b->pending)) {
		/* not expected: the link waits for done before the next one */
		b = bcast_new(c, OP_QUIESCE, quiesce_done);
		if (!b) {
			ZOC_ERR("%s: quiesce: out of memory (one is still running)", c->name);
			return;
		}
	}
	c->link_quiesced = true;
	bcast(c, b, OP_QUIESCE, quiesce_done, done, arg);
}

/* Needs no answer: a resume only lets the group fetch and post again. */
static void group_resume_msg(void *arg)
{
	struct nvme_group *g = arg;

	g->quiesced = false;
}

static void nvme_resume(struct zoc_pci_func *f)
{
	struct zoc_nvme_ctrlr *c = zoc_pci_func_ctx(f);

	c->link_quiesced = false;
	for (unsigned i = 0; i < c->ngroups; i++)
		send_msg_retry(c->groups[i].r, group_resume_msg, &c->groups[i]);
}

/* Only while quiesced: every group is idle, so the rings can move. A queue
 * whose memory is not in the new space is paused (not fetched, completions
 * held) until a later space maps it again: a VMM rebuilds its memory map in
 * steps (unmap, then map), and a firmware driver's queues live through it. */
static void nvme_set_dma(struct zoc_pci_func *f, struct zoc_mem *mem)
{
	struct zoc_nvme_ctrlr *c = zoc_pci_func_ctx(f);
	unsigned lost = 0;

	if (mem)
		zoc_mem_get(mem);
	if (c->mem)
		zoc_mem_put(c->mem);
	c->mem = mem;
	/* the shadow doorbells pointed into the old space: the driver sets
	 * them again after its next reset; until then its doorbell writes count */
	__atomic_store_n(&c->dbbuf_db, NULL, __ATOMIC_RELEASE);
	c->dbbuf_ei = NULL;
	for (unsigned q = 0; q <= NVME_MAX_QID; q++) {
		struct nvme_sq *sq = &c->sq[q];
		struct nvme_cq *cq = &c->cq[q];

		if (cq->exists && cq->remote) {
			/* stays remote (copies reach mapped bytes too) */
			cq->ring = remote_reachable(mem, cq->gpa, (uint64_t)cq->size * 16, true)
					   ? cq->shadow
					   : NULL;
			lost += !cq->ring;
		} else if (cq->exists) {
			cq->ring = mem ? zoc_mem_gpa_to_hva(mem, cq->gpa, (uint64_t)cq->size * 16,
							    true)
				       : NULL;
			lost += !cq->ring;
		}
		if (sq->exists && sq->remote) {
			sq->ring = remote_reachable(mem, sq->gpa, (uint64_t)sq->size * 64, false)
					   ? sq->shadow
					   : NULL;
			lost += !sq->ring;
		} else if (sq->exists) {
			sq->ring = mem ? zoc_mem_gpa_to_hva(mem, sq->gpa, (uint64_t)sq->size * 64,
							    false)
				       : NULL;
			lost += !sq->ring;
		}
	}
	if (lost && c->enabled)
		ZOC_LOG_RL(ZOC_LOG_INFO,
			   "%s: %u queue(s) not in guest memory any more: paused until mapped again",
			   c->name, lost);
}

static const struct zoc_pci_ops nvme_pci_ops = {
	.bar_access = nvme_bar_access,
	.cfg_written = nvme_cfg_written,
	.bar_mmap_areas = nvme_bar_mmap_areas,
	.reset = nvme_reset,
	.quiesce = nvme_quiesce,
	.resume = nvme_resume,
	.set_dma = nvme_set_dma,
};

/* ------------------------------------------------------ async events */

void nvme_error_log(struct zoc_nvme_ctrlr *c, uint16_t sqid, uint16_t cid, uint16_t status,
		    uint32_t nsid)
{
	struct nvme_error_entry *e = &c->errlog[c->err_next];

	c->err_next = (c->err_next + 1) % (NVME_ELPE + 1);
	memset(e, 0, sizeof(*e));
	e->error_count = ++c->err_count;
	e->sqid = sqid;
	e->cid = cid;
	e->status = (uint16_t)(status << 1);
	e->param_loc = 0xffff;
	e->nsid = nsid;
}

static void aen_deliver(struct zoc_nvme_ctrlr *c)
{
	while (c->naer) {
		unsigned i;

		for (i = 0; i < c->naen; i++)
			if (!(c->aen_masked & (1u << c->aen_q[i].type)))
				break;
		if (i == c->naen)
			return;
		{
			struct nvme_aen e = c->aen_q[i];
			struct nvme_req *r = c->aer[--c->naer];

			memmove(&c->aen_q[i], &c->aen_q[i + 1], (c->naen - i - 1) * sizeof(e));
			c->naen--;
			c->aen_masked |= 1u << e.type;
			r->dw0 = NVME_AER_DW0(e.type, e.info, e.lid);
			nvme_req_complete(r, NVME_SC_SUCCESS);
		}
	}
}

void nvme_aen_post(struct zoc_nvme_ctrlr *c, uint8_t type, uint8_t info, uint8_t lid)
{
	if (!c->enabled)
		return;
	for (unsigned i = 0; i < c->naen; i++)
		if (c->aen_q[i].type == type && c->aen_q[i].info == info)
			goto deliver; /* already queued */
	if (c->naen < NVME_AEN_QUEUE)
		c->aen_q[c->naen++] = (struct nvme_aen){type, info, lid};
deliver:
	aen_deliver(c);
}

void nvme_aen_kick(struct zoc_nvme_ctrlr *c)
{
	aen_deliver(c);
}

/* ------------------------------------------------------------ namespaces */

static uint64_t fnv1a(const void *p, size_t n, uint64_t h)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static void ns_ids(const struct zoc_nvme_ctrlr *c, struct nvme_ns *ns)
{
	uint64_t h1 = fnv1a(c->name, strlen(c->name), 0xcbf29ce484222325ull);
	uint64_t h2, h3, h4;

	h1 = fnv1a(&ns->nsid, sizeof(ns->nsid), h1);
	h2 = fnv1a("nguid", 5, h1);
	h3 = fnv1a("uuid", 4, h1);
	h4 = fnv1a("uuid2", 5, h1);
	memcpy(ns->nguid, &h1, 8);
	memcpy(ns->nguid + 8, &h2, 8);
	memcpy(ns->uuid, &h3, 8);
	memcpy(ns->uuid + 8, &h4, 8);
	ns->uuid[6] = (uint8_t)((ns->uuid[6] & 0x0f) | 0x80); /* version 8: custom */
	ns->uuid[8] = (uint8_t)((ns->uuid[8] & 0x3f) | 0x80); /* RFC 4122 variant */
}

static void ns_changed(struct zoc_nvme_ctrlr *c, uint32_t nsid)
{
	if (!c->enabled)
		return;
	for (unsigned i = 0; i < c->nchanged; i++)
		if (c->changed_ns[i] == nsid)
			goto aen;
	if (c->nchanged < ZOC_NVME_MAX_NS)
		c->changed_ns[c->nchanged++] = nsid;
	else
		c->changed_overflow = true;
aen:
	if (c->feat_aec & NVME_OAES_NS_ATTR)
		nvme_aen_post(c, NVME_AER_TYPE_NOTICE, NVME_AER_NOTICE_NS_CHANGED,
			      NVME_LOG_CHANGED_NS);
}

int zoc_nvme_ns_add(struct zoc_nvme_ctrlr *c, struct zoc_bdev *bdev, uint32_t nsid,
		    uint32_t *nsid_out)
{
	struct nvme_ns *ns;
	uint32_t bs;
	int rc;

	if (!c || !bdev || nsid > ZOC_NVME_MAX_NS)
		return -EINVAL;
	bs = bdev->block_size;
	if (bs < 512 || bs > 4096 || (bs & (bs - 1)) || bdev->num_blocks == 0)
		return -EINVAL;
	if (nsid == 0) {
		for (nsid = 1; nsid <= ZOC_NVME_MAX_NS; nsid++)
			if (!c->ns[nsid - 1] && !(c->ns_removing & (1ull << (nsid - 1))))
				break;
		if (nsid > ZOC_NVME_MAX_NS)
			return -ENOSPC;
	} else if (c->ns[nsid - 1] || (c->ns_removing & (1ull << (nsid - 1)))) {
		return -EEXIST;
	}
	rc = zoc_bdev_claim(bdev);
	if (rc)
		return rc;
	ns = nvme_calloc(1, sizeof(*ns));
	if (!ns) {
		zoc_bdev_release(bdev);
		return -ENOMEM;
	}
	ns->nsid = nsid;
	ns->bdev = bdev;
	ns->lbads = (uint32_t)__builtin_ctz(bs);
	ns->nsze = bdev->num_blocks;
	ns_ids(c, ns);
	__atomic_store_n(&c->ns[nsid - 1], ns, __ATOMIC_RELEASE);
	if (nsid_out)
		*nsid_out = nsid;
	ZOC_INFO("%s: namespace %u on bdev %s (%llu blocks of %u)", c->name, nsid, bdev->name,
		 (unsigned long long)ns->nsze, bs);
	ns_changed(c, nsid);
	return 0;
}

static void ns_drained(struct zoc_nvme_ctrlr *c, struct nvme_bcast *b)
{
	struct nvme_ns *ns = b->ns;

	zoc_bdev_release(ns->bdev);
	c->ns_removing &= ~(1ull << (ns->nsid - 1));
	ZOC_INFO("%s: namespace %u removed", c->name, ns->nsid);
	ns_changed(c, ns->nsid);
	free(ns);
	if (b->ns_fn)
		b->ns_fn(b->user_arg, 0);
}

void zoc_nvme_ns_remove(struct zoc_nvme_ctrlr *c, uint32_t nsid,
			void (*done)(void *arg, int status), void *arg)
{
	struct nvme_ns *ns = nvme_ns_get(c, nsid);
	struct nvme_bcast *b;

	if (!ns) {
		if (done)
			done(arg, -ENOENT);
		return;
	}
	b = bcast_new(c, OP_NS_DRAIN, ns_drained);
	if (!b) {
		if (done)
			done(arg, -ENOMEM);
		return;
	}
	__atomic_store_n(&c->ns[nsid - 1], NULL, __ATOMIC_RELEASE);
	c->ns_removing |= 1ull << (nsid - 1);
	b->nsid = nsid;
	b->ns_fn = done;
	b->user_arg = arg;
	b->ns = ns;
	bcast_send(b);
}

/* --------------------------------------------------- create / destroy */

static void ctrlr_free(struct zoc_nvme_ctrlr *c)
{
	for (unsigned i = 0; c->groups && i < c->ngroups; i++)
		nvme_bounce_free(&c->groups[i]);
	for (unsigned q = 0; q <= NVME_MAX_QID; q++) {
		free(c->sq[q].shadow);
		free(c->cq[q].shadow);
	}
	free(c->iv_cd);
	free(c->groups);
	free(c->bc_state);
	free(c->bc_quiesce);
	free(c->bc_destroy);
	free(c);
}

int zoc_nvme_ctrlr_create(const struct zoc_nvme_ctrlr_opts *opts, struct zoc_nvme_ctrlr **out)
{
	static uint16_t next_cntlid = 1;
	struct zoc_pci_desc d = {0};
	struct zoc_nvme_ctrlr *c;
	uint32_t qs;
	unsigned n;

	if (!opts || !out || !opts->name || !*opts->name ||
	    strlen(opts->name) >= ZOC_NVME_NAME_MAX || opts->max_io_queues > ZOC_NVME_MAX_IO_QUEUES)
		return -EINVAL;
	qs = opts->max_queue_size ? opts->max_queue_size : 1024;
	if (qs < 2 || qs > 65536)
		return -EINVAL;
	n = zoc_reactor_count();
	if (n == 0)
		n = 1;
	c = nvme_calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	snprintf(c->name, sizeof(c->name), "%s", opts->name);
	c->max_io_queues = opts->max_io_queues ? opts->max_io_queues : 16;
	c->max_queue_size = qs;
	c->mmap_doorbells = opts->mmap_doorbells;
	c->dbbuf_ok = opts->dbbuf && !zoc_reactor_interrupt_mode();
	c->cntlid = next_cntlid++;
	if (next_cntlid >= 0xfff0)
		next_cntlid = 1;
	c->msix_vectors = (uint16_t)(c->max_io_queues + 1);
	c->cap = NVME_CAP_MQES(qs - 1) | NVME_CAP_CQR | ((uint64_t)NVME_CAP_TO << NVME_CAP_TO_SHIFT) |
		 NVME_CAP_CSS_NVM | ((uint64_t)0 << NVME_CAP_MPSMIN_SHIFT) |
		 ((uint64_t)NVME_MPSMAX << NVME_CAP_MPSMAX_SHIFT);
	/* The memfd mirrors BAR0 up to the doorbell page, so that its file
	 * offset equals its BAR offset (vfio-user sparse mmap areas are offsets
	 * of one region-wide mapping); only the doorbell page is used. */
	c->db_fd = memfd_create("zoc-nvme-db", MFD_CLOEXEC);
	if (c->db_fd < 0 || ftruncate(c->db_fd, NVME_REG_DBS + NVME_DB_PAGE)) {
		int e = errno;

		if (c->db_fd >= 0)
			close(c->db_fd);
		free(c);
		return -e;
	}
	c->db = mmap(NULL, NVME_DB_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, c->db_fd,
		     NVME_REG_DBS);
	c->ngroups = n;
	c->iv_cd = nvme_calloc(c->msix_vectors, sizeof(*c->iv_cd));
	c->groups = nvme_calloc(n, sizeof(*c->groups));
	c->bc_state = nvme_calloc(1, bcast_size(c));
	c->bc_quiesce = nvme_calloc(1, bcast_size(c));
	c->bc_destroy = nvme_calloc(1, bcast_size(c));
	if (c->db == MAP_FAILED || !c->iv_cd || !c->groups || !c->bc_state || !c->bc_quiesce ||
	    !c->bc_destroy) {
		if (c->db != MAP_FAILED)
			munmap(c->db, NVME_DB_PAGE);
		close(c->db_fd);
		ctrlr_free(c);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++) {
		struct nvme_group *g = &c->groups[i];

		g->c = c;
		g->idx = i;
		g->r = zoc_reactor_get(i);
		g->waiters_tail = &g->waiters;
		g->efd = -1;
		if (i > 0 && zoc_reactor_interrupt_mode())
			g->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	}
	for (unsigned q = 0; q <= NVME_MAX_QID; q++) {
		c->sq[q].c = c;
		c->sq[q].qid = (uint16_t)q;
		c->cq[q].c = c;
		c->cq[q].qid = (uint16_t)q;
	}
	nvme_features_reset(c);
	regs_power_on(c);

	d.vendor_id = NVME_VENDOR_ID;
	d.device_id = NVME_DEVICE_ID;
	d.subsys_vendor_id = NVME_VENDOR_ID;
	d.subsys_id = NVME_DEVICE_ID;
	d.revision = 1;
	d.class_code = NVME_CLASS;
	d.bars[0].size = NVME_BAR0_SIZE;
	d.bars[0].flags = ZOC_PCI_BAR_MEM64;
	d.bars[4].size = NVME_BAR4_SIZE;
	d.bars[4].flags = 0;
	d.msix_vectors = c->msix_vectors;
	d.msix_bar = 4;
	d.msix_table_offset = 0;
	d.msix_pba_offset = NVME_MSIX_PBA;
	d.msi = false;
	d.pcie = true;
	d.intx_pin = 1;
	d.ops = &nvme_pci_ops;
	c->f = zoc_pci_func_create(&d, c);
	if (!c->f) {
		int e = errno ? errno : EINVAL;

		for (unsigned i = 0; i < n; i++)
			if (c->groups[i].efd >= 0)
				close(c->groups[i].efd);
		munmap(c->db, NVME_DB_PAGE);
		close(c->db_fd);
		ctrlr_free(c);
		return -e;
	}
	for (unsigned i = 0; i < n; i++) {
		if (c->groups[i].r)
			send_msg_retry(c->groups[i].r, group_start_msg, &c->groups[i]);
	}
	ZOC_INFO("%s: NVMe controller created (%u I/O queues of up to %u entries, %u reactors)",
		 c->name, c->max_io_queues, qs, n);
	*out = c;
	return 0;
}

static void destroy_free(void *arg)
{
	struct zoc_nvme_ctrlr *c = arg;
	void (*fn)(void *) = c->destroy_fn;
	void *fn_arg = c->destroy_arg;

	ctrlr_free(c);
	if (fn)
		fn(fn_arg);
}

static void destroy_done(struct zoc_nvme_ctrlr *c, struct nvme_bcast *b)
{
	void (*fn)(void *) = b->user_fn;
	void *arg = b->user_arg;

	nvme_aer_drop_all(c);
	c->nreset_w = 0; /* the link is gone: nobody waits for them */
	for (unsigned q = 0; q <= NVME_MAX_QID; q++)
		if (c->sq[q].pool)
			zoc_pool_destroy(c->sq[q].pool);
	for (unsigned i = 0; i < ZOC_NVME_MAX_NS; i++) {
		struct nvme_ns *ns = c->ns[i];

		if (ns) {
			zoc_bdev_release(ns->bdev);
			free(ns);
		}
	}
	for (unsigned i = 0; i < c->ngroups; i++)
		if (c->groups[i].efd >= 0)
			close(c->groups[i].efd);
	if (c->mem)
		zoc_mem_put(c->mem);
	zoc_pci_func_destroy(c->f);
	munmap(c->db, NVME_DB_PAGE);
	close(c->db_fd);
	ZOC_INFO("%s: destroyed", c->name);
	c->destroy_fn = fn;
	c->destroy_arg = arg;
	/* A reactor that sent its last acknowledgement may still be reading its
	 * group (and the controller) until the end of its iteration. */
	while (zoc_reactors_barrier(destroy_free, c))
		usleep(1000);
}

void zoc_nvme_ctrlr_destroy(struct zoc_nvme_ctrlr *c, void (*done)(void *arg), void *arg)
{
	if (!c) {
		if (done)
			done(arg);
		return;
	}
	c->destroying = true;
	bcast(c, c->bc_destroy, OP_DESTROY, destroy_done, done, arg);
}

struct zoc_pci_func *zoc_nvme_ctrlr_pci(struct zoc_nvme_ctrlr *c)
{
	return c->f;
}

const char *zoc_nvme_ctrlr_name(const struct zoc_nvme_ctrlr *c)
{
	return c->name;
}

/* ------------------------------------------------------------ info/stats */

void nvme_sum_stats(struct zoc_nvme_ctrlr *c, struct zoc_io_stats *out)
{
	memset(out, 0, sizeof(*out));
	zoc_stats_add(out, &c->retired);
	for (unsigned q = 1; q <= NVME_MAX_QID; q++)
		if (c->sq[q].exists)
			zoc_stats_add(out, &c->sq[q].stats);
}

json_t *zoc_nvme_ctrlr_info(struct zoc_nvme_ctrlr *c)
{
	json_t *nss = json_array();
	unsigned nio = 0;

	for (unsigned q = 1; q <= NVME_MAX_QID; q++)
		nio += c->sq[q].exists;
	for (unsigned i = 0; i < ZOC_NVME_MAX_NS; i++) {
		struct nvme_ns *ns = c->ns[i];

		if (!ns)
			continue;
		json_array_append_new(
			nss, json_pack("{s:i, s:s, s:I, s:i}", "nsid", (int)ns->nsid, "bdev",
				       ns->bdev->name, "num_blocks", (json_int_t)ns->nsze,
				       "block_size", (int)(1u << ns->lbads)));
	}
	return json_pack("{s:s, s:b, s:i, s:i, s:i, s:i, s:b, s:o}", "name", c->name, "enabled",
			 c->enabled, "csts", (int)get_csts(c), "cc", (int)c->cc, "io_queues",
			 (int)nio, "max_io_queues", (int)c->max_io_queues, "mmap_doorbells",
			 c->mmap_doorbells, "namespaces", nss);
}

json_t *zoc_nvme_ctrlr_stats(struct zoc_nvme_ctrlr *c)
{
	struct zoc_io_stats total;
	json_t *qs = json_array();

	nvme_sum_stats(c, &total);
	for (unsigned q = 1; q <= NVME_MAX_QID; q++) {
		struct nvme_sq *sq = &c->sq[q];
		struct zoc_io_stats s = {0};
		json_t *o;

		if (!sq->exists)
			continue;
		zoc_stats_add(&s, &sq->stats);
		o = zoc_stats_to_json(&s);
		json_object_set_new(o, "sqid", json_integer(q));
		json_object_set_new(o, "cqid", json_integer(sq->cqid));
		json_object_set_new(o, "reactor",
				    sq->cq && sq->cq->g ? json_integer(sq->cq->g->idx)
							: json_null());
		json_object_set_new(o, "size", json_integer(sq->size));
		json_object_set_new(
			o, "inflight",
			json_integer(__atomic_load_n(&sq->inflight, __ATOMIC_RELAXED)));
		json_array_append_new(qs, o);
	}
	return json_pack("{s:s, s:o, s:o}", "name", c->name, "totals", zoc_stats_to_json(&total),
			 "queues", qs);
}
