/* SPDX-License-Identifier: MIT */
/*
 * test_nvme.c - the NVMe controller (src/nvme/) driven like a driver does:
 * config space and BAR accesses through the PCI function model (on reactor
 * 0, as a link makes them), queues and data buffers in a malloc'd "guest
 * memory" registered with zoc_mem_add_region_hva(), MSI-X interrupts on
 * eventfds. Two polling reactors run on their own thread.
 *
 * Back ends: the null bdev, and a "ram" bdev defined here that keeps its
 * data in memory (read-back checks, deallocation, write zeroes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "blk/bdev.h"
#include "core/log.h"
#include "core/reactor.h"
#include "link/dma.h"
#include "nvme/nvme.h"
#include "nvme/nvme_spec.h"
#include "pci/pci.h"
#include "harness.h"

#define GPA 0x10000000ull
#define MEM_SIZE (16u << 20)
#define GPA_HOLE (GPA + MEM_SIZE + 0x100000) /* never mapped */
#define OFF_ASQ 0x0
#define OFF_ACQ 0x1000
#define OFF_IOQ(q) (0x20000u * (q))        /* SQ; CQ at +0x10000 */
#define OFF_BUF 0x200000                   /* admin data buffer (2 pages) */
#define OFF_LIST 0x210000                  /* PRP lists, SGL segments */
#define OFF_DATA 0x400000                  /* data pages */
#define PAGE 4096u
#define ADM_SIZE 32
#define IOQ_SIZE 64
#define NVEC 5
#define MSIX_OFF 0x70
#define WAIT_MS 10000
/* memory reachable only through the fake link (see drv_add_remote) */
#define RGPA 0x40000000ull
#define RSIZE (1u << 20)
static uint8_t *g_remote;

/* src/nvme/nvme_internal.h: fail the n-th allocation from now */
extern unsigned zoc_nvme_fail_alloc;

#define RAM_BLOCKS 8192 /* 4 MiB of 512-byte blocks */

/* ------------------------------------------------------------------ */
/* reactor harness                                                     */

static pthread_t g_thread;

/* Runs fn(arg) on reactor 0 and waits for it. */
static void on_reactor(void (*fn)(void *), void *arg)
{
	zt_on_reactor(0, fn, arg, WAIT_MS);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the ram bdev ---------------------------------------------------- */

struct ram_ch {
	struct zoc_bdev_ch hdr; /* first */
	struct zoc_poller *poller;
	struct zoc_bdev_io *head, **tailp;
	bool in_poll, dead;
};

static struct zoc_bdev g_ram;
static uint8_t *g_ram_data;
static atomic_int g_ram_flushes, g_ram_discards, g_ram_fail;
static atomic_bool g_ram_hold; /* keep requests queued */
static atomic_int g_ram_queued;

static void ram_free(struct ram_ch *ch)
{
	zoc_poller_unregister(ch->poller);
	free(ch);
}

static void ram_do(struct zoc_bdev_io *io)
{
	uint8_t *p = g_ram_data + io->offset;

	switch (io->op) {
	case ZOC_BDEV_READ:
		for (int i = 0; i < io->iovcnt; i++) {
			memcpy(io->iov[i].iov_base, p, io->iov[i].iov_len);
			p += io->iov[i].iov_len;
		}
		break;
	case ZOC_BDEV_WRITE:
		for (int i = 0; i < io->iovcnt; i++) {
			memcpy(p, io->iov[i].iov_base, io->iov[i].iov_len);
			p += io->iov[i].iov_len;
		}
		break;
	case ZOC_BDEV_DISCARD:
		atomic_fetch_add(&g_ram_discards, 1);
		/* fall through */
	case ZOC_BDEV_WRITE_ZEROES:
		memset(p, 0, io->len);
		break;
	case ZOC_BDEV_FLUSH:
		atomic_fetch_add(&g_ram_flushes, 1);
		break;
	}
}

static int ram_poll(void *arg)
{
	struct ram_ch *ch = arg;
	struct zoc_bdev_io *io = ch->head;
	int n = 0;

	if (!io || atomic_load(&g_ram_hold))
		return 0;
	ch->head = NULL;
	ch->tailp = &ch->head;
	ch->in_poll = true;
	while (io) {
		struct zoc_bdev_io *next = io->next_;

		io->next_ = NULL;
		atomic_fetch_sub(&g_ram_queued, 1);
		ram_do(io);
		io->cb(io, atomic_load(&g_ram_fail));
		io = next;
		n++;
	}
	ch->in_poll = false;
	if (ch->dead && !ch->head)
		ram_free(ch);
	return n;
}

static int ram_arm(void *arg)
{
	return ((struct ram_ch *)arg)->head != NULL && !atomic_load(&g_ram_hold);
}

static const struct zoc_poller_ops ram_poller_ops = {.poll = ram_poll, .arm = ram_arm};

static struct zoc_bdev_ch *ram_channel_create(struct zoc_bdev *bdev, struct zoc_reactor *r)
{
	struct ram_ch *ch = calloc(1, sizeof(*ch));

	(void)bdev;
	if (!ch)
		return NULL;
	ch->tailp = &ch->head;
	ch->poller = zoc_poller_register(r, &ram_poller_ops, ch, 0, "ram");
	return &ch->hdr;
}

static void ram_channel_destroy(struct zoc_bdev_ch *hdr)
{
	struct ram_ch *ch = (struct ram_ch *)hdr;

	ch->dead = true;
	if (!ch->in_poll && !ch->head)
		ram_free(ch);
}

static int ram_submit(struct zoc_bdev_ch *hdr, struct zoc_bdev_io *io)
{
	struct ram_ch *ch = (struct ram_ch *)hdr;

	io->next_ = NULL;
	*ch->tailp = io;
	ch->tailp = &io->next_;
	atomic_fetch_add(&g_ram_queued, 1);
	return 0;
}

static const struct zoc_bdev_ops ram_ops = {
	.type = "ram",
	.channel_create = ram_channel_create,
	.channel_destroy = ram_channel_destroy,
	.submit = ram_submit,
};

static void create_bdevs_fn(void *arg)
{
	int *rc = arg;

	rc[0] = zoc_bdev_null_create("null0", 64, 512);
	snprintf(g_ram.name, sizeof(g_ram.name), "ram0");
	g_ram.block_size = 512;
	g_ram.num_blocks = RAM_BLOCKS;
	g_ram.supports_flush = true;
	g_ram.supports_discard = true;
	g_ram.supports_write_zeroes = true;
	g_ram.max_iov = 1024;
	g_ram.ops = &ram_ops;
	rc[1] = zoc_bdev_register(&g_ram);
}

static int setup_mode(bool interrupt_mode)
{
	static const unsigned cores[2] = {0, 1};
	struct zoc_reactor_opts o = {.cores = cores, .num_cores = 2, .pin = false,
				     .interrupt_mode = interrupt_mode};
	int rc[2] = {-1, -1};

	zoc_log_set_level(getenv("ZOC_TEST_LOG") ? ZOC_LOG_DEBUG : ZOC_LOG_ERR);
	g_ram_data = calloc(1, (size_t)RAM_BLOCKS * 512);
	if (!g_ram_data || zoc_reactors_init(&o))
		return -1;
	if (pthread_create(&g_thread, NULL, zt_reactor_main, NULL))
		return -1;
	on_reactor(create_bdevs_fn, rc);
	return rc[0] || rc[1] ? -1 : 0;
}

static int setup(void **state)
{
	(void)state;
	return setup_mode(false);
}

static int setup_interrupt(void **state)
{
	(void)state;
	return setup_mode(true);
}

static void delete_bdevs_fn(void *arg)
{
	(void)arg;
	zoc_bdev_delete_all();
}

static int teardown(void **state)
{
	bool clean;

	(void)state;
	on_reactor(delete_bdevs_fn, NULL);
	clean = zoc_bdev_next(NULL) == NULL;
	zoc_reactors_stop();
	pthread_join(g_thread, NULL);
	zoc_reactors_fini();
	free(g_ram_data);
	return clean ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* the driver                                                          */

struct q {
	uint16_t qid;
	uint32_t size;
	uint64_t sq_gpa, cq_gpa;
	uint32_t tail, head;
	uint16_t phase;
};

struct drv {
	uint8_t *mem;
	struct zoc_mem *zm;
	struct zoc_nvme_ctrlr *c;
	struct zoc_pci_func *f;
	int irqfd[NVEC];
	uint32_t *dbmap; /* mmap'd doorbell page (NULL: BAR writes) */
	uint32_t *sdb;   /* shadow doorbells (Doorbell Buffer Config): I/O queues' go here */
	struct q adm;
	struct q io[5];
	uint16_t cid;
};

static void *g2h(struct drv *d, uint64_t gpa)
{
	if (g_remote && gpa >= RGPA && gpa < RGPA + RSIZE)
		return g_remote + (gpa - RGPA); /* the fake link's "client memory" */
	assert_true(gpa >= GPA && gpa < GPA + MEM_SIZE);
	return d->mem + (gpa - GPA);
}

struct bar_op {
	struct drv *d;
	unsigned bar;
	uint64_t off;
	uint8_t buf[8];
	uint32_t len;
	bool is_write;
	int rc;
	bool cfg;
};

static void bar_fn(void *arg)
{
	struct bar_op *o = arg;

	if (o->cfg)
		o->rc = zoc_pci_cfg_access(o->d->f, (uint32_t)o->off, o->buf, o->len, o->is_write);
	else
		o->rc = zoc_pci_bar_access(o->d->f, o->bar, o->off, o->buf, o->len, o->is_write);
}

static uint64_t bar_rd(struct drv *d, uint64_t off, uint32_t len)
{
	struct bar_op o = {.d = d, .bar = 0, .off = off, .len = len};
	uint64_t v = 0;

	on_reactor(bar_fn, &o);
	assert_int_equal(o.rc, 0);
	memcpy(&v, o.buf, len);
	return v;
}

static void bar_wr_n(struct drv *d, unsigned bar, uint64_t off, uint64_t v, uint32_t len)
{
	struct bar_op o = {.d = d, .bar = bar, .off = off, .len = len, .is_write = true};

	memcpy(o.buf, &v, len);
	on_reactor(bar_fn, &o);
	assert_int_equal(o.rc, 0);
}

static void bar_wr(struct drv *d, uint64_t off, uint64_t v, uint32_t len)
{
	bar_wr_n(d, 0, off, v, len);
}

static void cfg_wr(struct drv *d, uint32_t off, uint32_t v, uint32_t len)
{
	struct bar_op o = {.d = d, .off = off, .len = len, .is_write = true, .cfg = true};

	memcpy(o.buf, &v, len);
	on_reactor(bar_fn, &o);
	assert_int_equal(o.rc, 0);
}

static void db_write(struct drv *d, unsigned idx, uint32_t v)
{
	if (d->sdb && idx >= 2) {
		/* only the shadow: the MMIO doorbell is never written */
		__atomic_store_n(&d->sdb[idx], v, __ATOMIC_RELEASE);
		return;
	}
	if (d->dbmap)
		__atomic_store_n(&d->dbmap[idx], v, __ATOMIC_RELEASE);
	else
		bar_wr(d, NVME_REG_DBS + 4ull * idx, v, 4);
}

/* ---- controller life cycle -------------------------------------------- */

struct ctl {
	struct drv *d;
	struct zoc_nvme_ctrlr_opts opts;
	const char *bdev;
	uint32_t nsid;
	int rc;
	sem_t sem;
	json_t *j;
};

static void create_fn(void *arg)
{
	struct ctl *c = arg;

	c->rc = zoc_nvme_ctrlr_create(&c->opts, &c->d->c);
	if (!c->rc)
		c->d->f = zoc_nvme_ctrlr_pci(c->d->c);
}

static void post_sem(void *arg)
{
	sem_post(&((struct ctl *)arg)->sem);
}

static void quiesce_fn(void *arg)
{
	struct ctl *c = arg;

	zoc_pci_func_desc(c->d->f)->ops->quiesce(c->d->f, post_sem, c);
}

static void resume_fn(void *arg)
{
	struct ctl *c = arg;

	zoc_pci_func_desc(c->d->f)->ops->resume(c->d->f);
}

static void set_dma_fn(void *arg)
{
	struct ctl *c = arg;

	zoc_pci_func_desc(c->d->f)->ops->set_dma(c->d->f, c->d->zm);
	zoc_pci_func_desc(c->d->f)->ops->resume(c->d->f);
}

static void ns_add_fn(void *arg)
{
	struct ctl *c = arg;

	c->rc = zoc_nvme_ns_add(c->d->c, zoc_bdev_find(c->bdev), c->nsid, &c->nsid);
}

static void ns_removed(void *arg, int status)
{
	struct ctl *c = arg;

	c->rc = status;
	sem_post(&c->sem);
}

static void ns_remove_fn(void *arg)
{
	struct ctl *c = arg;

	zoc_nvme_ns_remove(c->d->c, c->nsid, ns_removed, c);
}

static void destroy_fn(void *arg)
{
	struct ctl *c = arg;

	zoc_nvme_ctrlr_destroy(c->d->c, post_sem, c);
}

static void reset_fn(void *arg)
{
	struct ctl *c = arg;

	zoc_pci_func_reset(c->d->f, post_sem, c);
}

static void info_fn(void *arg)
{
	struct ctl *c = arg;

	c->j = c->rc ? zoc_nvme_ctrlr_stats(c->d->c) : zoc_nvme_ctrlr_info(c->d->c);
}

static void ctl_wait(struct ctl *c)
{
	assert_int_equal(zt_sem_wait_ms(&c->sem, WAIT_MS), 0);
}

static int ns_add(struct drv *d, const char *bdev, uint32_t nsid)
{
	struct ctl c = {.d = d, .bdev = bdev, .nsid = nsid};

	on_reactor(ns_add_fn, &c);
	return c.rc;
}

static void map_doorbells(struct drv *d)
{
	struct zoc_pci_mmap_area a;
	const struct zoc_pci_desc *desc = zoc_pci_func_desc(d->f);

	assert_int_equal(desc->ops->bar_mmap_areas(d->f, 0, &a, 1), 1);
	assert_int_equal(a.offset, NVME_REG_DBS);
	assert_int_equal(a.size, 4096);
	d->dbmap = mmap(NULL, a.size, PROT_READ | PROT_WRITE, MAP_SHARED, a.fd, (off_t)a.fd_offset);
	assert_true(d->dbmap != MAP_FAILED);
}

static bool g_opt_dbbuf; /* the next drv_new_opts() offers Doorbell Buffer Config */

static struct drv *drv_new_opts(const char *name, bool mmap_db)
{
	struct drv *d = calloc(1, sizeof(*d));
	struct ctl c = {.d = d};
	int fds[NVEC];

	assert_non_null(d);
	d->mem = aligned_alloc(PAGE, MEM_SIZE);
	assert_non_null(d->mem);
	memset(d->mem, 0, MEM_SIZE);
	d->zm = zoc_mem_create();
	assert_non_null(d->zm);
	assert_int_equal(zoc_mem_add_region_hva(d->zm, GPA, MEM_SIZE, GPA, d->mem, true), 0);
	c.opts.name = name;
	c.opts.max_io_queues = NVEC - 1;
	c.opts.max_queue_size = 256;
	c.opts.mmap_doorbells = mmap_db;
	c.opts.dbbuf = g_opt_dbbuf;
	on_reactor(create_fn, &c);
	assert_int_equal(c.rc, 0);
	sem_init(&c.sem, 0, 0);
	on_reactor(quiesce_fn, &c);
	ctl_wait(&c);
	on_reactor(set_dma_fn, &c);
	sem_destroy(&c.sem);
	/* memory space + bus master; MSI-X on with every vector unmasked */
	cfg_wr(d, 0x04, 0x6, 2);
	cfg_wr(d, MSIX_OFF + 2, 0x8000, 2);
	for (unsigned v = 0; v < NVEC; v++) {
		bar_wr_n(d, 4, 16ull * v + 12, 0, 4);
		d->irqfd[v] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		fds[v] = dup(d->irqfd[v]);
	}
	assert_int_equal(zoc_pci_irq_set_fds(d->f, ZOC_PCI_IRQ_MSIX, 0, NVEC, fds), 0);
	if (mmap_db)
		map_doorbells(d);
	return d;
}

static struct drv *drv_new(void)
{
	return drv_new_opts("nvme-test", false);
}

static void drv_free(struct drv *d)
{
	struct ctl c = {.d = d};

	sem_init(&c.sem, 0, 0);
	on_reactor(destroy_fn, &c);
	ctl_wait(&c);
	sem_destroy(&c.sem);
	for (unsigned v = 0; v < NVEC; v++)
		close(d->irqfd[v]);
	if (d->dbmap)
		munmap(d->dbmap, 4096);
	zoc_mem_put(d->zm);
	free(d->mem);
	free(d);
}

static uint32_t csts(struct drv *d)
{
	return (uint32_t)bar_rd(d, NVME_REG_CSTS, 4);
}

static bool wait_csts(struct drv *d, uint32_t mask, uint32_t want)
{
	uint64_t end = now_ms() + WAIT_MS;

	while ((csts(d) & mask) != want) {
		if (now_ms() > end)
			return false;
		usleep(100);
	}
	return true;
}

#define CC_OK (NVME_CC_EN | (6u << 16) | (4u << 20))

static void enable_with(struct drv *d, uint32_t cc, uint32_t aqa)
{
	d->adm = (struct q){.qid = 0, .size = ADM_SIZE, .sq_gpa = GPA + OFF_ASQ,
			    .cq_gpa = GPA + OFF_ACQ, .phase = 1};
	memset(g2h(d, GPA + OFF_ACQ), 0, PAGE);
	bar_wr(d, NVME_REG_AQA, aqa, 4);
	bar_wr(d, NVME_REG_ASQ, GPA + OFF_ASQ, 8);
	bar_wr(d, NVME_REG_ACQ, GPA + OFF_ACQ, 8);
	bar_wr(d, NVME_REG_CC, cc, 4);
}

static void enable(struct drv *d)
{
	enable_with(d, CC_OK, ((ADM_SIZE - 1) << 16) | (ADM_SIZE - 1));
	assert_true(wait_csts(d, NVME_CSTS_RDY | NVME_CSTS_CFS, NVME_CSTS_RDY));
}

static void disable(struct drv *d)
{
	bar_wr(d, NVME_REG_CC, 0, 4);
	assert_true(wait_csts(d, NVME_CSTS_RDY | NVME_CSTS_CFS, 0));
}

/* ---- commands ---------------------------------------------------------- */

static void push(struct drv *d, struct q *q, struct nvme_sqe *cmd)
{
	cmd->cid = ++d->cid;
	memcpy(g2h(d, q->sq_gpa + 64ull * q->tail), cmd, 64);
	q->tail = (q->tail + 1) % q->size;
	db_write(d, 2u * q->qid, q->tail);
}

static bool poll_cqe(struct drv *d, struct q *q, struct nvme_cqe *out, int ms)
{
	struct nvme_cqe *e = g2h(d, q->cq_gpa + 16ull * q->head);
	uint64_t end = now_ms() + (uint64_t)ms;

	/* the device publishes an entry with a release store of its last dword */
	while (((__atomic_load_n((uint32_t *)&e->cid, __ATOMIC_ACQUIRE) >> 16) & 1) != q->phase) {
		if (now_ms() > end)
			return false;
		usleep(20);
	}
	memcpy(out, e, sizeof(*out));
	if (++q->head == q->size) {
		q->head = 0;
		q->phase ^= 1;
	}
	db_write(d, 2u * q->qid + 1, q->head);
	return true;
}

static uint16_t st_of(const struct nvme_cqe *e)
{
	return (e->status >> 1) & 0x7ff; /* SCT:SC */
}

/* Submits and waits; returns SCT:SC; *dw0 gets the result. */
static uint16_t run(struct drv *d, struct q *q, struct nvme_sqe *cmd, uint32_t *dw0)
{
	struct nvme_cqe e;

	push(d, q, cmd);
	if (!poll_cqe(d, q, &e, WAIT_MS))
		fail_msg("no completion for opcode 0x%x on queue %u", cmd->opc, q->qid);
	assert_int_equal(e.cid, cmd->cid);
	assert_int_equal(e.sqid, q->qid);
	if (dw0)
		*dw0 = e.dw0;
	return st_of(&e);
}

static uint16_t admin(struct drv *d, struct nvme_sqe *cmd, uint32_t *dw0)
{
	return run(d, &d->adm, cmd, dw0);
}

static uint16_t identify(struct drv *d, uint8_t cns, uint32_t nsid)
{
	struct nvme_sqe c = {.opc = NVME_ADM_IDENTIFY, .nsid = nsid, .prp1 = GPA + OFF_BUF,
			     .prp2 = GPA + OFF_BUF + PAGE, .cdw10 = cns};

	memset(g2h(d, GPA + OFF_BUF), 0xcc, 2 * PAGE);
	return admin(d, &c, NULL);
}

static uint16_t set_feat(struct drv *d, uint32_t fid, uint32_t v, uint32_t *dw0)
{
	struct nvme_sqe c = {.opc = NVME_ADM_SET_FEATURES, .cdw10 = fid, .cdw11 = v};

	return admin(d, &c, dw0);
}

static uint16_t get_feat(struct drv *d, uint32_t fid, uint32_t cdw11, uint32_t *dw0)
{
	struct nvme_sqe c = {.opc = NVME_ADM_GET_FEATURES, .cdw10 = fid, .cdw11 = cdw11};

	return admin(d, &c, dw0);
}

static uint16_t create_cq(struct drv *d, uint16_t qid, uint32_t size, uint16_t iv, uint32_t flags)
{
	struct nvme_sqe c = {.opc = NVME_ADM_CREATE_CQ, .prp1 = GPA + OFF_IOQ(qid) + 0x10000,
			     .cdw10 = qid | ((size - 1) << 16), .cdw11 = flags | ((uint32_t)iv << 16)};

	return admin(d, &c, NULL);
}

static uint16_t create_sq(struct drv *d, uint16_t qid, uint32_t size, uint16_t cqid,
			  uint32_t flags)
{
	struct nvme_sqe c = {.opc = NVME_ADM_CREATE_SQ, .prp1 = GPA + OFF_IOQ(qid),
			     .cdw10 = qid | ((size - 1) << 16), .cdw11 = flags | ((uint32_t)cqid << 16)};

	return admin(d, &c, NULL);
}

static uint16_t delete_q(struct drv *d, uint8_t opc, uint16_t qid)
{
	struct nvme_sqe c = {.opc = opc, .cdw10 = qid};

	return admin(d, &c, NULL);
}

/* Creates I/O queue pair qid (CQ qid with vector qid, SQ qid on it). */
static struct q *io_pair(struct drv *d, uint16_t qid)
{
	struct q *q = &d->io[qid];

	memset(g2h(d, GPA + OFF_IOQ(qid)), 0, 0x20000);
	assert_int_equal(create_cq(d, qid, IOQ_SIZE, qid, 3), 0);
	assert_int_equal(create_sq(d, qid, IOQ_SIZE, qid, 1), 0);
	*q = (struct q){.qid = qid, .size = IOQ_SIZE, .sq_gpa = GPA + OFF_IOQ(qid),
			.cq_gpa = GPA + OFF_IOQ(qid) + 0x10000, .phase = 1};
	return q;
}

static uint16_t rw(struct drv *d, struct q *q, uint8_t opc, uint32_t nsid, uint64_t slba,
		   uint32_t nlb, uint64_t prp1, uint64_t prp2)
{
	struct nvme_sqe c = {.opc = opc, .nsid = nsid, .prp1 = prp1, .prp2 = prp2,
			     .cdw10 = (uint32_t)slba, .cdw11 = (uint32_t)(slba >> 32),
			     .cdw12 = nlb - 1};

	return run(d, q, &c, NULL);
}

static void fill(struct drv *d, uint64_t gpa, size_t len, uint8_t seed)
{
	uint8_t *p = g2h(d, gpa);

	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 7 + i / 512);
}

static uint64_t irq_count(struct drv *d, unsigned v)
{
	uint64_t n = 0;

	if (read(d->irqfd[v], &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}

/* ------------------------------------------------------------------ */
/* tests                                                               */

static void test_registers(void **state)
{
	struct drv *d = drv_new();
	uint64_t cap;

	(void)state;
	cap = bar_rd(d, NVME_REG_CAP, 8);
	assert_int_equal(cap & 0xffff, 255);                   /* MQES */
	assert_true(cap & NVME_CAP_CQR);
	assert_int_equal((cap >> 17) & 3, 0);                  /* AMS */
	assert_true(((cap >> 24) & 0xff) > 0);                 /* TO */
	assert_int_equal((cap >> 32) & 0xf, 0);                /* DSTRD */
	assert_true(cap & NVME_CAP_CSS_NVM);
	assert_int_equal((cap >> 48) & 0xf, 0);                /* MPSMIN */
	assert_int_equal((cap >> 52) & 0xf, 4);                /* MPSMAX */
	assert_int_equal(bar_rd(d, NVME_REG_CAP + 4, 4), cap >> 32);
	assert_int_equal(bar_rd(d, NVME_REG_VS, 4), 0x10400);
	assert_int_equal(bar_rd(d, NVME_REG_VS, 1), 0x00);     /* byte reads work */
	assert_int_equal(bar_rd(d, NVME_REG_VS + 2, 1), 0x01);
	/* read-only registers ignore writes */
	bar_wr(d, NVME_REG_CAP, 0, 8);
	bar_wr(d, NVME_REG_VS, 0, 4);
	bar_wr(d, NVME_REG_CSTS, 0xffffffff, 4);
	assert_int_equal(bar_rd(d, NVME_REG_CAP, 8), cap);
	assert_int_equal(bar_rd(d, NVME_REG_VS, 4), 0x10400);
	assert_int_equal(csts(d), 0);
	/* ASQ/ACQ in two halves, low bits reserved */
	bar_wr(d, NVME_REG_ASQ, 0x12345fff, 4);
	bar_wr(d, NVME_REG_ASQ + 4, 0x1, 4);
	assert_int_equal(bar_rd(d, NVME_REG_ASQ, 8), 0x112345000ull);

	/* bad CC: I/O entry sizes */
	enable_with(d, NVME_CC_EN, ((ADM_SIZE - 1) << 16) | (ADM_SIZE - 1));
	assert_true(wait_csts(d, NVME_CSTS_CFS | NVME_CSTS_RDY, NVME_CSTS_CFS));
	disable(d);
	/* bad CC: command set, MPS over MPSMAX, AMS */
	enable_with(d, CC_OK | (1u << 4), ((ADM_SIZE - 1) << 16) | (ADM_SIZE - 1));
	assert_true(wait_csts(d, NVME_CSTS_CFS | NVME_CSTS_RDY, NVME_CSTS_CFS));
	disable(d);
	enable_with(d, CC_OK | (5u << 7), ((ADM_SIZE - 1) << 16) | (ADM_SIZE - 1));
	assert_true(wait_csts(d, NVME_CSTS_CFS | NVME_CSTS_RDY, NVME_CSTS_CFS));
	disable(d);
	enable_with(d, CC_OK | (1u << 11), ((ADM_SIZE - 1) << 16) | (ADM_SIZE - 1));
	assert_true(wait_csts(d, NVME_CSTS_CFS | NVME_CSTS_RDY, NVME_CSTS_CFS));
	disable(d);
	/* admin queue of one entry */
	enable_with(d, CC_OK, 0);
	assert_true(wait_csts(d, NVME_CSTS_CFS | NVME_CSTS_RDY, NVME_CSTS_CFS));
	disable(d);
	/* 8 KiB pages with a 4 KiB aligned admin queue */
	enable_with(d, CC_OK | (1u << 7), ((ADM_SIZE - 1) << 16) | (ADM_SIZE - 1));
	bar_wr(d, NVME_REG_CC, 0, 4);
	bar_wr(d, NVME_REG_ASQ, GPA + PAGE, 8);
	bar_wr(d, NVME_REG_CC, CC_OK | (1u << 7), 4);
	assert_true(wait_csts(d, NVME_CSTS_CFS | NVME_CSTS_RDY, NVME_CSTS_CFS));
	disable(d);
	/* admin queue outside guest memory */
	enable_with(d, 0, ((ADM_SIZE - 1) << 16) | (ADM_SIZE - 1));
	bar_wr(d, NVME_REG_ASQ, GPA_HOLE, 8);
	bar_wr(d, NVME_REG_CC, CC_OK, 4);
	assert_true(wait_csts(d, NVME_CSTS_CFS | NVME_CSTS_RDY, NVME_CSTS_CFS));
	disable(d);

	/* good enable; registers frozen while enabled */
	enable(d);
	bar_wr(d, NVME_REG_AQA, 0, 4);
	assert_int_equal(bar_rd(d, NVME_REG_AQA, 4), ((ADM_SIZE - 1) << 16) | (ADM_SIZE - 1));
	/* odd-sized writes are ignored */
	bar_wr(d, NVME_REG_CC, 0, 2);
	assert_int_equal(csts(d) & NVME_CSTS_RDY, NVME_CSTS_RDY);
	/* shutdown */
	bar_wr(d, NVME_REG_CC, CC_OK | (1u << 14), 4);
	assert_true(wait_csts(d, NVME_CSTS_SHST_MASK, NVME_CSTS_SHST_COMPLETE));
	disable(d);
	enable(d);
	assert_int_equal(csts(d) & NVME_CSTS_SHST_MASK, 0);
	disable(d);
	drv_free(d);
}

static void test_identify(void **state)
{
	struct drv *d = drv_new();
	uint8_t *b = g2h(d, GPA + OFF_BUF);
	uint8_t nguid[16], nguid2[16], uuid[16];
	uint32_t v32;
	uint64_t v64;

	(void)state;
	assert_int_equal(ns_add(d, "ram0", 1), 0);
	assert_int_equal(ns_add(d, "null0", 0), 0); /* lowest free: 2 */
	assert_int_equal(ns_add(d, "null0", 2), -EEXIST);
	assert_int_equal(ns_add(d, "null0", 33), -EINVAL);
	enable(d);

	assert_int_equal(identify(d, NVME_CNS_CTRL, 0), 0);
	memcpy(&v32, b + NVME_IDC_VER, 4);
	assert_int_equal(v32, 0x10400);
	assert_int_equal(b[NVME_IDC_SQES], 0x66);
	assert_int_equal(b[NVME_IDC_CQES], 0x44);
	assert_int_equal(b[NVME_IDC_MDTS], 5);
	memcpy(&v32, b + NVME_IDC_NN, 4);
	assert_int_equal(v32, ZOC_NVME_MAX_NS);
	assert_memory_equal(b + NVME_IDC_SN, "nvme-test           ", 20);
	assert_memory_equal(b + NVME_IDC_SUBNQN, "nqn.", 4);
	assert_true(b[NVME_IDC_ONCS] & (NVME_ONCS_DSM | NVME_ONCS_WRITE_ZEROES));
	assert_true(b[NVME_IDC_SGLS] & 1);
	assert_int_equal(b[NVME_IDC_AERL], 3);

	assert_int_equal(identify(d, NVME_CNS_NS, 1), 0);
	memcpy(&v64, b + NVME_IDN_NSZE, 8);
	assert_int_equal(v64, RAM_BLOCKS);
	assert_int_equal(b[NVME_IDN_LBAF0 + 2], 9); /* LBADS: 512 */
	memcpy(nguid, b + NVME_IDN_NGUID, 16);
	/* an inactive namespace reads as zeros; out of range ones are refused */
	assert_int_equal(identify(d, NVME_CNS_NS, 7), 0);
	for (unsigned i = 0; i < 4096; i++)
		assert_int_equal(b[i], 0);
	assert_int_equal(identify(d, NVME_CNS_NS, 0), NVME_SC_INVALID_NS);
	assert_int_equal(identify(d, NVME_CNS_NS, 33), NVME_SC_INVALID_NS);
	assert_int_equal(identify(d, NVME_CNS_NS, 0xffffffff), NVME_SC_INVALID_NS);

	assert_int_equal(identify(d, NVME_CNS_ACTIVE_NS, 0), 0);
	memcpy(&v32, b, 4);
	assert_int_equal(v32, 1);
	memcpy(&v32, b + 4, 4);
	assert_int_equal(v32, 2);
	memcpy(&v32, b + 8, 4);
	assert_int_equal(v32, 0);
	assert_int_equal(identify(d, NVME_CNS_ACTIVE_NS, 1), 0);
	memcpy(&v32, b, 4);
	assert_int_equal(v32, 2);
	assert_int_equal(identify(d, NVME_CNS_ACTIVE_NS, 0xfffffffe), NVME_SC_INVALID_NS);

	assert_int_equal(identify(d, NVME_CNS_NS_DESC, 1), 0);
	assert_int_equal(b[0], NVME_NIDT_NGUID);
	assert_int_equal(b[1], 16);
	assert_memory_equal(b + 4, nguid, 16);
	assert_int_equal(b[20], NVME_NIDT_UUID);
	memcpy(uuid, b + 24, 16);
	assert_int_equal(b[40], 0);
	assert_int_equal(identify(d, NVME_CNS_NS_DESC, 5), NVME_SC_INVALID_NS);
	assert_int_equal(identify(d, NVME_CNS_NS_DESC, 2), 0);
	assert_memory_not_equal(b + 4, nguid, 16);
	assert_int_equal(identify(d, 0x1f, 0), NVME_SC_INVALID_FIELD);
	/* identify into memory that is not there */
	{
		struct nvme_sqe c = {.opc = NVME_ADM_IDENTIFY, .prp1 = GPA_HOLE, .cdw10 = 1};

		assert_int_equal(admin(d, &c, NULL), NVME_SC_DATA_XFER_ERROR);
		c.prp1 = GPA + OFF_BUF + 8;
		c.prp2 = GPA + OFF_BUF + PAGE + 8; /* second page with an offset */
		assert_int_equal(admin(d, &c, NULL), NVME_SC_PRP_INVALID_OFFSET);
		c.prp1 = GPA + OFF_BUF + 2;
		assert_int_equal(admin(d, &c, NULL), NVME_SC_PRP_INVALID_OFFSET);
		c.prp1 = GPA + OFF_BUF;
		c.flags = 1u << 6; /* SGL for an admin command */
		assert_int_equal(admin(d, &c, NULL), NVME_SC_INVALID_FIELD);
	}
	disable(d);
	drv_free(d);

	/* the same controller and namespace give the same ids */
	d = drv_new();
	assert_int_equal(ns_add(d, "ram0", 1), 0);
	enable(d);
	b = g2h(d, GPA + OFF_BUF);
	assert_int_equal(identify(d, NVME_CNS_NS, 1), 0);
	memcpy(nguid2, b + NVME_IDN_NGUID, 16);
	assert_memory_equal(nguid, nguid2, 16);
	assert_int_equal(identify(d, NVME_CNS_NS_DESC, 1), 0);
	assert_memory_equal(b + 24, uuid, 16);
	disable(d);
	drv_free(d);
}

static void test_queues(void **state)
{
	struct drv *d = drv_new();
	uint32_t dw0;

	(void)state;
	assert_int_equal(ns_add(d, "null0", 1), 0);
	enable(d);
	/* number of queues: asks for 8, gets the 4 it has */
	assert_int_equal(set_feat(d, NVME_FEAT_NUM_QUEUES, 7 | (7u << 16), &dw0), 0);
	assert_int_equal(dw0, 3 | (3u << 16));
	assert_int_equal(get_feat(d, NVME_FEAT_NUM_QUEUES, 0, &dw0), 0);
	assert_int_equal(dw0, 3 | (3u << 16));
	assert_int_equal(set_feat(d, NVME_FEAT_NUM_QUEUES, 0xffff, &dw0), NVME_SC_INVALID_FIELD);
	assert_int_equal(set_feat(d, NVME_FEAT_NUM_QUEUES, 1 | (1u << 16), &dw0), 0);
	assert_int_equal(dw0, 1 | (1u << 16)); /* 2 and 2 */

	/* CQ checks */
	assert_int_equal(create_cq(d, 0, 16, 1, 3), NVME_SC_QID_INVALID);
	assert_int_equal(create_cq(d, 3, 16, 1, 3), NVME_SC_QID_INVALID); /* over NCQA */
	assert_int_equal(create_cq(d, 1, 257, 1, 3), NVME_SC_QUEUE_SIZE); /* over MQES */
	assert_int_equal(create_cq(d, 1, 1, 1, 3), NVME_SC_QUEUE_SIZE);
	assert_int_equal(create_cq(d, 1, 16, 1, 2), NVME_SC_INVALID_FIELD); /* PC = 0 */
	assert_int_equal(create_cq(d, 1, 16, NVEC, 3), NVME_SC_INVALID_VECTOR);
	{
		struct nvme_sqe c = {.opc = NVME_ADM_CREATE_CQ, .prp1 = GPA + 0x20100,
				     .cdw10 = 1 | (15u << 16), .cdw11 = 3 | (1u << 16)};

		assert_int_equal(admin(d, &c, NULL), NVME_SC_INVALID_FIELD); /* unaligned */
		c.prp1 = GPA_HOLE;
		assert_int_equal(admin(d, &c, NULL), NVME_SC_INVALID_FIELD); /* not memory */
	}
	/* SQ checks */
	assert_int_equal(create_sq(d, 1, 16, 1, 1), NVME_SC_CQ_INVALID); /* no CQ 1 yet */
	assert_int_equal(create_cq(d, 1, 16, 1, 3), 0);
	assert_int_equal(create_cq(d, 1, 16, 1, 3), NVME_SC_QID_INVALID); /* exists */
	assert_int_equal(create_sq(d, 1, 16, 0, 1), NVME_SC_CQ_INVALID);
	assert_int_equal(create_sq(d, 1, 16, 2, 1), NVME_SC_CQ_INVALID);
	assert_int_equal(create_sq(d, 0, 16, 1, 1), NVME_SC_QID_INVALID);
	assert_int_equal(create_sq(d, 3, 16, 1, 1), NVME_SC_QID_INVALID);
	assert_int_equal(create_sq(d, 1, 300, 1, 1), NVME_SC_QUEUE_SIZE);
	assert_int_equal(create_sq(d, 1, 16, 1, 0), NVME_SC_INVALID_FIELD); /* PC = 0 */
	assert_int_equal(create_sq(d, 1, 16, 1, 1), 0);
	assert_int_equal(create_sq(d, 2, 16, 1, 1), 0); /* two SQs on CQ 1 */
	assert_int_equal(create_sq(d, 2, 16, 1, 1), NVME_SC_QID_INVALID);
	/* too late to change the number of queues */
	assert_int_equal(set_feat(d, NVME_FEAT_NUM_QUEUES, 0, &dw0), NVME_SC_CMD_SEQ_ERROR);
	/* CQ in use */
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_CQ, 1), NVME_SC_INVALID_QUEUE_DELETION);
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_SQ, 0), NVME_SC_QID_INVALID);
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_SQ, 3), NVME_SC_QID_INVALID);
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_SQ, 1), 0);
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_SQ, 1), NVME_SC_QID_INVALID);
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_CQ, 1), NVME_SC_INVALID_QUEUE_DELETION);
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_SQ, 2), 0);
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_CQ, 1), 0);
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_CQ, 1), NVME_SC_QID_INVALID);
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_CQ, 0), NVME_SC_QID_INVALID);
	/* unknown admin opcode */
	{
		struct nvme_sqe c = {.opc = 0x7f};

		assert_int_equal(admin(d, &c, NULL), NVME_SC_INVALID_OPCODE);
		c.opc = NVME_ADM_ABORT;
		assert_int_equal(admin(d, &c, &dw0), 0);
		assert_int_equal(dw0 & 1, 1); /* not aborted */
		c.opc = NVME_ADM_KEEP_ALIVE;
		assert_int_equal(admin(d, &c, NULL), 0);
	}
	/* I/O on a recreated queue after deletion works */
	io_pair(d, 1);
	assert_int_equal(rw(d, &d->io[1], NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	disable(d);
	drv_free(d);
}

static void test_features(void **state)
{
	struct drv *d = drv_new();
	uint32_t dw0;

	(void)state;
	enable(d);
	assert_int_equal(get_feat(d, NVME_FEAT_VOLATILE_WC, 0, &dw0), 0);
	assert_int_equal(dw0, 1);
	assert_int_equal(set_feat(d, NVME_FEAT_VOLATILE_WC, 0, NULL), 0);
	assert_int_equal(get_feat(d, NVME_FEAT_VOLATILE_WC, 0, &dw0), 0);
	assert_int_equal(dw0, 0);
	assert_int_equal(set_feat(d, NVME_FEAT_IRQ_COALESCE, 0x0a05, NULL), 0);
	assert_int_equal(get_feat(d, NVME_FEAT_IRQ_COALESCE, 0, &dw0), 0);
	assert_int_equal(dw0, 0x0a05);
	assert_int_equal(set_feat(d, NVME_FEAT_IRQ_CONFIG, 2 | (1u << 16), NULL), 0);
	assert_int_equal(get_feat(d, NVME_FEAT_IRQ_CONFIG, 2, &dw0), 0);
	assert_int_equal(dw0, 2 | (1u << 16));
	assert_int_equal(get_feat(d, NVME_FEAT_IRQ_CONFIG, NVEC, &dw0), NVME_SC_INVALID_FIELD);
	assert_int_equal(set_feat(d, NVME_FEAT_ASYNC_EVENT, 0xffffffff, NULL), 0);
	assert_int_equal(get_feat(d, NVME_FEAT_ASYNC_EVENT, 0, &dw0), 0);
	assert_int_equal(dw0, 0x1ff);
	assert_int_equal(set_feat(d, NVME_FEAT_ARBITRATION, 0x03020103, NULL), 0);
	assert_int_equal(get_feat(d, NVME_FEAT_ARBITRATION, 0, &dw0), 0);
	assert_int_equal(dw0, 0x03020103);
	assert_int_equal(set_feat(d, NVME_FEAT_POWER_MGMT, 1, NULL), NVME_SC_INVALID_FIELD);
	assert_int_equal(set_feat(d, NVME_FEAT_POWER_MGMT, 0, NULL), 0);
	assert_int_equal(set_feat(d, NVME_FEAT_KEEP_ALIVE, 1500, NULL), 0);
	assert_int_equal(get_feat(d, NVME_FEAT_KEEP_ALIVE, 0, &dw0), 0);
	assert_int_equal(dw0, 2000); /* rounded up to KAS (1 s) */
	assert_int_equal(set_feat(d, NVME_FEAT_KEEP_ALIVE, 0, NULL), 0);
	assert_int_equal(set_feat(d, 0x7e, 0, NULL), NVME_SC_INVALID_FIELD);
	/* keep alive: commands keep it alive, silence past KATO is fatal */
	assert_int_equal(set_feat(d, NVME_FEAT_KEEP_ALIVE, 1000, NULL), 0);
	for (int i = 0; i < 4; i++) {
		struct nvme_sqe ka = {.opc = NVME_ADM_KEEP_ALIVE};

		usleep(400000);
		assert_int_equal(admin(d, &ka, NULL), 0);
	}
	assert_int_equal(csts(d) & NVME_CSTS_CFS, 0);
	assert_true(wait_csts(d, NVME_CSTS_CFS, NVME_CSTS_CFS));
	disable(d);
	enable(d);
	assert_int_equal(set_feat(d, NVME_FEAT_VOLATILE_WC | (1u << 31), 1, NULL),
			 NVME_SC_FEATURE_NOT_SAVEABLE);
	/* SEL: default, capabilities */
	assert_int_equal(get_feat(d, NVME_FEAT_VOLATILE_WC | (1u << 8), 0, &dw0), 0);
	assert_int_equal(dw0, 1);
	assert_int_equal(get_feat(d, NVME_FEAT_VOLATILE_WC | (3u << 8), 0, &dw0), 0);
	assert_int_equal(dw0, 4);
	assert_int_equal(get_feat(d, NVME_FEAT_VOLATILE_WC | (4u << 8), 0, &dw0),
			 NVME_SC_INVALID_FIELD);
	/* a controller reset brings the defaults back */
	disable(d);
	enable(d);
	assert_int_equal(get_feat(d, NVME_FEAT_VOLATILE_WC, 0, &dw0), 0);
	assert_int_equal(dw0, 1);
	disable(d);
	drv_free(d);
}

/* Data checks through PRPs on the ram bdev. */
static void test_io_prp(void **state)
{
	struct drv *d = drv_new();
	struct q *q;
	uint64_t *list = g2h(d, GPA + OFF_LIST);
	uint8_t *ram = g_ram_data;

	(void)state;
	assert_int_equal(ns_add(d, "ram0", 1), 0);
	enable(d);
	q = io_pair(d, 1);
	io_pair(d, 2);

	/* one page, with an offset inside it */
	fill(d, GPA + OFF_DATA + 512, 1024, 1);
	assert_int_equal(rw(d, q, NVME_CMD_WRITE, 1, 10, 2, GPA + OFF_DATA + 512, 0), 0);
	assert_memory_equal(ram + 10 * 512, g2h(d, GPA + OFF_DATA + 512), 1024);
	memset(g2h(d, GPA + 0x500000), 0, 1024);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 10, 2, GPA + 0x500000, 0), 0);
	assert_memory_equal(g2h(d, GPA + 0x500000), ram + 10 * 512, 1024);

	/* two pages: PRP1 with an offset, PRP2 a page */
	fill(d, GPA + OFF_DATA + 0x10000 + 2048, 2048, 2);
	fill(d, GPA + OFF_DATA + 0x20000, 2048, 3);
	assert_int_equal(rw(d, q, NVME_CMD_WRITE, 1, 100, 8, GPA + OFF_DATA + 0x10000 + 2048,
			    GPA + OFF_DATA + 0x20000),
			 0);
	assert_memory_equal(ram + 100 * 512, g2h(d, GPA + OFF_DATA + 0x10000 + 2048), 2048);
	assert_memory_equal(ram + 100 * 512 + 2048, g2h(d, GPA + OFF_DATA + 0x20000), 2048);

	/* a PRP list: 64 KiB in 16 scattered pages, read back through another list */
	for (unsigned i = 0; i < 16; i++) {
		list[i] = GPA + OFF_DATA + 0x30000 + (uint64_t)(15 - i) * 2 * PAGE;
		fill(d, list[i], PAGE, (uint8_t)(i + 10));
	}
	assert_int_equal(rw(d, q, NVME_CMD_WRITE, 1, 1000, 128, list[0], GPA + OFF_LIST + 8), 0);
	for (unsigned i = 0; i < 16; i++)
		assert_memory_equal(ram + 1000 * 512 + (size_t)i * PAGE, g2h(d, list[i]), PAGE);
	for (unsigned i = 0; i < 16; i++)
		list[512 + i] = GPA + 0x600000 + (uint64_t)i * PAGE;
	memset(g2h(d, GPA + 0x600000), 0, 16 * PAGE);
	assert_int_equal(rw(d, &d->io[2], NVME_CMD_READ, 1, 1000, 128, list[512],
			    GPA + OFF_LIST + 4096 + 8),
			 0);
	assert_memory_equal(g2h(d, GPA + 0x600000), ram + 1000 * 512, 16 * PAGE);

	/* chained lists: a list starting 3 entries before the page end goes on
	 * in the page its last entry points to */
	{
		uint64_t l1 = GPA + OFF_LIST + 0x2000 - 24; /* 3 slots */
		uint64_t *e1 = g2h(d, l1);
		uint64_t *e2 = g2h(d, GPA + OFF_LIST + 0x3000);

		e1[0] = GPA + 0x700000 + 1 * PAGE;
		e1[1] = GPA + 0x700000 + 2 * PAGE;
		e1[2] = GPA + OFF_LIST + 0x3000; /* next list */
		for (unsigned i = 0; i < 5; i++)
			e2[i] = GPA + 0x700000 + (3 + i) * PAGE;
		fill(d, GPA + 0x700000, 8 * PAGE, 77);
		assert_int_equal(rw(d, q, NVME_CMD_WRITE, 1, 2000, 64, GPA + 0x700000, l1), 0);
		assert_memory_equal(ram + 2000 * 512, g2h(d, GPA + 0x700000), 8 * PAGE);
		/* a list whose entries are all chain pointers runs out: error, no hang */
		e1[2] = l1;
		assert_int_equal(rw(d, q, NVME_CMD_WRITE, 1, 2000, 64, GPA + 0x700000, l1),
				 NVME_SC_PRP_INVALID_OFFSET);
		{
			uint64_t l2 = GPA + OFF_LIST + 0x4000 - 8; /* one slot: always a pointer */
			uint64_t *e = g2h(d, l2);

			*e = l2;
			assert_int_equal(rw(d, q, NVME_CMD_WRITE, 1, 2000, 64, GPA + 0x700000, l2),
					 NVME_SC_DATA_XFER_ERROR);
		}
	}
	/* list entries that follow each other are translated as one run: a run
	 * that leaves guest memory, or ends in an entry with an offset, fails */
	{
		uint64_t *e = g2h(d, GPA + OFF_LIST + 0x5000);

		e[0] = GPA + MEM_SIZE - 2 * PAGE;
		e[1] = GPA + MEM_SIZE - PAGE;
		e[2] = GPA + MEM_SIZE;
		assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 32, GPA + OFF_DATA,
				    GPA + OFF_LIST + 0x5000),
				 NVME_SC_DATA_XFER_ERROR);
		e[2] = GPA + MEM_SIZE - PAGE + 0x200;
		assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 32, GPA + OFF_DATA,
				    GPA + OFF_LIST + 0x5000),
				 NVME_SC_PRP_INVALID_OFFSET);
		e[2] = GPA + 0x700000;
		assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 32, GPA + OFF_DATA,
				    GPA + OFF_LIST + 0x5000),
				 0);
		assert_memory_equal(g2h(d, GPA + MEM_SIZE - 2 * PAGE), ram + PAGE, 2 * PAGE);
	}

	/* flush, write zeroes, deallocate */
	atomic_store(&g_ram_flushes, 0);
	{
		struct nvme_sqe c = {.opc = NVME_CMD_FLUSH, .nsid = 1};

		assert_int_equal(run(d, q, &c, NULL), 0);
		assert_int_equal(atomic_load(&g_ram_flushes), 1);
		c.nsid = 0xffffffff;
		assert_int_equal(run(d, q, &c, NULL), NVME_SC_INVALID_NS);
	}
	memset(ram + 3000 * 512, 0xab, 8 * 512);
	{
		struct nvme_sqe c = {.opc = NVME_CMD_WRITE_ZEROES, .nsid = 1, .cdw10 = 3001,
				     .cdw12 = 3};

		assert_int_equal(run(d, q, &c, NULL), 0);
		assert_int_equal(ram[3000 * 512], 0xab);
		assert_int_equal(ram[3001 * 512], 0);
		assert_int_equal(ram[3004 * 512 + 511], 0);
		assert_int_equal(ram[3005 * 512], 0xab);
		c.cdw10 = RAM_BLOCKS - 2;
		assert_int_equal(run(d, q, &c, NULL), NVME_SC_LBA_RANGE);
	}
	memset(ram + 4000 * 512, 0xcd, 64 * 512);
	{
		struct nvme_dsm_range *r = g2h(d, GPA + OFF_BUF);
		struct nvme_sqe c = {.opc = NVME_CMD_DSM, .nsid = 1, .prp1 = GPA + OFF_BUF,
				     .cdw10 = 2, .cdw11 = NVME_DSM_AD};

		r[0] = (struct nvme_dsm_range){.nlb = 2, .slba = 4000};
		r[1] = (struct nvme_dsm_range){.nlb = 0, .slba = 0};
		r[2] = (struct nvme_dsm_range){.nlb = 4, .slba = 4010};
		atomic_store(&g_ram_discards, 0);
		assert_int_equal(run(d, q, &c, NULL), 0);
		assert_int_equal(atomic_load(&g_ram_discards), 2);
		assert_int_equal(ram[4000 * 512], 0);
		assert_int_equal(ram[4002 * 512], 0xcd);
		assert_int_equal(ram[4013 * 512 + 511], 0);
		assert_int_equal(ram[4014 * 512], 0xcd);
		r[2].slba = RAM_BLOCKS - 1;
		assert_int_equal(run(d, q, &c, NULL), NVME_SC_LBA_RANGE);
		c.cdw11 = 0; /* hints only */
		assert_int_equal(run(d, q, &c, NULL), 0);
	}

	/* out of range, bad namespace, bad opcode, too long */
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, RAM_BLOCKS - 1, 2, GPA + OFF_DATA, 0),
			 NVME_SC_LBA_RANGE);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, ~0ull - 1, 4, GPA + OFF_DATA, 0),
			 NVME_SC_LBA_RANGE);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 2, 0, 1, GPA + OFF_DATA, 0), NVME_SC_INVALID_NS);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 0, 0, 1, GPA + OFF_DATA, 0), NVME_SC_INVALID_NS);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 512, GPA + OFF_DATA, GPA + OFF_LIST),
			 NVME_SC_INVALID_FIELD); /* 256 KiB > MDTS */
	assert_int_equal(rw(d, q, 0x7f, 1, 0, 1, GPA + OFF_DATA, 0), NVME_SC_INVALID_OPCODE);

	/* hostile data pointers */
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 1, GPA_HOLE, 0), NVME_SC_DATA_XFER_ERROR);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 1, GPA + MEM_SIZE - 256, 0),
			 NVME_SC_DATA_XFER_ERROR); /* runs off the end */
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 1, GPA + OFF_DATA + 1, 0),
			 NVME_SC_PRP_INVALID_OFFSET);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 16, GPA + OFF_DATA, GPA + OFF_DATA + 0x100),
			 NVME_SC_PRP_INVALID_OFFSET); /* PRP2 data pointer with an offset */
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 16, GPA + OFF_DATA, GPA_HOLE),
			 NVME_SC_DATA_XFER_ERROR);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 24, GPA + OFF_DATA, GPA_HOLE),
			 NVME_SC_DATA_XFER_ERROR); /* PRP list outside memory */
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 24, GPA + OFF_DATA, GPA + OFF_LIST + 4),
			 NVME_SC_PRP_INVALID_OFFSET); /* list not qword aligned */
	list[0] = GPA + OFF_DATA + 0x40;
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 24, GPA + OFF_DATA, GPA + OFF_LIST),
			 NVME_SC_PRP_INVALID_OFFSET); /* list entry with an offset */
	list[0] = GPA_HOLE;
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 24, GPA + OFF_DATA, GPA + OFF_LIST),
			 NVME_SC_DATA_XFER_ERROR);
	{
		struct nvme_sqe c = {.opc = NVME_CMD_READ, .nsid = 1, .flags = 1, .prp1 = GPA};

		assert_int_equal(run(d, q, &c, NULL), NVME_SC_INVALID_FIELD); /* fused */
	}
	disable(d);
	drv_free(d);
}

static void sgl(struct nvme_sgl_desc *s, uint64_t addr, uint32_t len, uint8_t type)
{
	*s = (struct nvme_sgl_desc){.addr = addr, .len = len, .id = (uint8_t)(type << 4)};
}

static uint16_t rw_sgl(struct drv *d, struct q *q, uint8_t opc, uint64_t slba, uint32_t nlb,
		       const struct nvme_sgl_desc *s1)
{
	struct nvme_sqe c = {.opc = opc, .nsid = 1, .flags = 1u << 6, .cdw10 = (uint32_t)slba,
			     .cdw12 = nlb - 1};

	memcpy(&c.prp1, s1, 16);
	return run(d, q, &c, NULL);
}

static void test_io_sgl(void **state)
{
	struct drv *d = drv_new();
	struct nvme_sgl_desc s1, *seg = g2h(d, GPA + OFF_LIST), *seg2 = g2h(d, GPA + OFF_LIST + 0x1000);
	struct q *q;
	uint8_t *ram = g_ram_data;

	(void)state;
	assert_int_equal(ns_add(d, "ram0", 1), 0);
	enable(d);
	q = io_pair(d, 1);

	/* one data block in the command */
	fill(d, GPA + OFF_DATA + 3, 1024, 5);
	sgl(&s1, GPA + OFF_DATA + 3, 1024, NVME_SGL_DATA_BLOCK);
	assert_int_equal(rw_sgl(d, q, NVME_CMD_WRITE, 50, 2, &s1), 0);
	assert_memory_equal(ram + 50 * 512, g2h(d, GPA + OFF_DATA + 3), 1024);

	/* a segment of three odd-sized blocks, then a last segment of two */
	fill(d, GPA + 0x500000, 8192, 9);
	sgl(&seg[0], GPA + 0x500000, 100, NVME_SGL_DATA_BLOCK);
	sgl(&seg[1], GPA + 0x500000 + 100, 0, NVME_SGL_DATA_BLOCK); /* empty: skipped */
	sgl(&seg[2], GPA + 0x500000 + 100, 3000, NVME_SGL_DATA_BLOCK);
	sgl(&seg[3], GPA + OFF_LIST + 0x1000, 32, NVME_SGL_LAST_SEGMENT);
	sgl(&seg2[0], GPA + 0x500000 + 3100, 1000, NVME_SGL_DATA_BLOCK);
	sgl(&seg2[1], GPA + 0x500000 + 4100, 4092, NVME_SGL_DATA_BLOCK);
	sgl(&s1, GPA + OFF_LIST, 64, NVME_SGL_SEGMENT);
	assert_int_equal(rw_sgl(d, q, NVME_CMD_WRITE, 60, 16, &s1), 0);
	assert_memory_equal(ram + 60 * 512, g2h(d, GPA + 0x500000), 8192);
	memset(g2h(d, GPA + 0x500000), 0, 8192);
	assert_int_equal(rw_sgl(d, q, NVME_CMD_READ, 60, 16, &s1), 0);
	assert_memory_equal(ram + 60 * 512, g2h(d, GPA + 0x500000), 8192);

	/* bad descriptor types */
	sgl(&s1, GPA + OFF_DATA, 512, NVME_SGL_BIT_BUCKET);
	assert_int_equal(rw_sgl(d, q, NVME_CMD_READ, 0, 1, &s1), NVME_SC_SGL_INVALID_TYPE);
	sgl(&s1, GPA + OFF_DATA, 512, 0x4); /* keyed: fabrics only */
	assert_int_equal(rw_sgl(d, q, NVME_CMD_READ, 0, 1, &s1), NVME_SC_SGL_INVALID_TYPE);
	sgl(&s1, GPA + OFF_DATA, 512, 0xf);
	assert_int_equal(rw_sgl(d, q, NVME_CMD_READ, 0, 1, &s1), NVME_SC_SGL_INVALID_TYPE);
	sgl(&s1, GPA + OFF_DATA, 512, NVME_SGL_DATA_BLOCK);
	s1.id |= 1; /* offset subtype */
	assert_int_equal(rw_sgl(d, q, NVME_CMD_READ, 0, 1, &s1), NVME_SC_SGL_INVALID_TYPE);
	sgl(&seg[3], GPA + 0x500000, 512, 0x5);
	sgl(&s1, GPA + OFF_LIST, 64, NVME_SGL_LAST_SEGMENT);
	assert_int_equal(rw_sgl(d, q, NVME_CMD_READ, 60, 16, &s1), NVME_SC_SGL_INVALID_TYPE);
	/* lengths */
	sgl(&s1, GPA + OFF_DATA, 511, NVME_SGL_DATA_BLOCK);
	assert_int_equal(rw_sgl(d, q, NVME_CMD_READ, 0, 1, &s1), NVME_SC_SGL_INVALID_DATA_LEN);
	sgl(&s1, GPA + OFF_DATA, 513, NVME_SGL_DATA_BLOCK);
	assert_int_equal(rw_sgl(d, q, NVME_CMD_READ, 0, 1, &s1), NVME_SC_SGL_INVALID_DATA_LEN);
	/* a segment descriptor that is not the last of its segment, one in a last
	 * segment, segment lengths */
	sgl(&seg[0], GPA + OFF_LIST + 0x1000, 32, NVME_SGL_LAST_SEGMENT);
	sgl(&seg[1], GPA + 0x500000, 512, NVME_SGL_DATA_BLOCK);
	sgl(&s1, GPA + OFF_LIST, 32, NVME_SGL_SEGMENT);
	assert_int_equal(rw_sgl(d, q, NVME_CMD_READ, 0, 1, &s1), NVME_SC_SGL_INVALID_LAST);
	sgl(&s1, GPA + OFF_LIST, 32, NVME_SGL_LAST_SEGMENT);
	assert_int_equal(rw_sgl(d, q, NVME_CMD_READ, 0, 1, &s1), NVME_SC_SGL_INVALID_LAST);
	sgl(&s1, GPA + OFF_LIST, 20, NVME_SGL_SEGMENT);
	assert_int_equal(rw_sgl(d, q, NVME_CMD_READ, 0, 1, &s1), NVME_SC_SGL_INVALID_LAST);
	sgl(&s1, GPA_HOLE, 32, NVME_SGL_SEGMENT);
	assert_int_equal(rw_sgl(d, q, NVME_CMD_READ, 0, 1, &s1), NVME_SC_DATA_XFER_ERROR);
	sgl(&s1, GPA + OFF_LIST, 1u << 20, NVME_SGL_SEGMENT);
	assert_int_equal(rw_sgl(d, q, NVME_CMD_READ, 0, 1, &s1), NVME_SC_SGL_INVALID_COUNT);
	/* a segment that points at itself: bounded */
	sgl(&seg[0], GPA + OFF_LIST, 16, NVME_SGL_SEGMENT);
	sgl(&s1, GPA + OFF_LIST, 16, NVME_SGL_SEGMENT);
	assert_int_equal(rw_sgl(d, q, NVME_CMD_READ, 0, 1, &s1), NVME_SC_SGL_INVALID_COUNT);
	sgl(&s1, GPA_HOLE, 512, NVME_SGL_DATA_BLOCK);
	assert_int_equal(rw_sgl(d, q, NVME_CMD_READ, 0, 1, &s1), NVME_SC_DATA_XFER_ERROR);
	disable(d);
	drv_free(d);
}

static uint16_t get_log(struct drv *d, uint8_t lid, uint32_t numd, uint64_t off, bool rae)
{
	struct nvme_sqe c = {.opc = NVME_ADM_GET_LOG_PAGE, .nsid = 0xffffffff,
			     .prp1 = GPA + OFF_BUF, .prp2 = GPA + OFF_BUF + PAGE,
			     .cdw10 = lid | (rae ? 1u << 15 : 0) | (((numd - 1) & 0xffff) << 16),
			     .cdw11 = (numd - 1) >> 16, .cdw12 = (uint32_t)off,
			     .cdw13 = (uint32_t)(off >> 32)};

	memset(g2h(d, GPA + OFF_BUF), 0xcc, 2 * PAGE);
	return admin(d, &c, NULL);
}

static void test_logs_and_events(void **state)
{
	struct drv *d = drv_new();
	uint8_t *b = g2h(d, GPA + OFF_BUF);
	struct nvme_cqe e;
	struct q *q;
	uint64_t v64;
	uint32_t v32;

	(void)state;
	assert_int_equal(ns_add(d, "null0", 1), 0);
	enable(d);
	q = io_pair(d, 1);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	assert_int_equal(rw(d, q, NVME_CMD_WRITE, 1, 0, 8, GPA + OFF_DATA, 0), 0);

	/* SMART: real counters */
	assert_int_equal(get_log(d, NVME_LOG_SMART, 128, 0, false), 0);
	memcpy(&v64, b + 64, 8);
	assert_int_equal(v64, 3); /* host read commands */
	memcpy(&v64, b + 80, 8);
	assert_int_equal(v64, 1);
	memcpy(&v64, b + 32, 8);
	assert_int_equal(v64, 1); /* data units read (rounded up) */
	assert_int_equal(b[3], 100);
	/* offset, and reading past the end gives zeros */
	assert_int_equal(get_log(d, NVME_LOG_SMART, 256, 64, false), 0);
	memcpy(&v64, b, 8);
	assert_int_equal(v64, 3);
	assert_int_equal(b[600], 0);
	assert_int_equal(b[1024], 0xcc); /* not transferred */
	/* bad NUMD / offsets / log ids */
	assert_int_equal(get_log(d, NVME_LOG_SMART, 0x10001, 0, false), NVME_SC_INVALID_FIELD);
	assert_int_equal(get_log(d, NVME_LOG_SMART, 16, 2, false), NVME_SC_INVALID_FIELD);
	assert_int_equal(get_log(d, NVME_LOG_SMART, 16, 512, false), NVME_SC_INVALID_FIELD);
	assert_int_equal(get_log(d, NVME_LOG_SMART, 16, 1ull << 40, false), NVME_SC_INVALID_FIELD);
	assert_int_equal(get_log(d, 0x70, 16, 0, false), NVME_SC_INVALID_LOG_PAGE);
	/* firmware slot */
	assert_int_equal(get_log(d, NVME_LOG_FW_SLOT, 128, 0, false), 0);
	assert_int_equal(b[0], 1);
	assert_memory_equal(b + 8, "1.0     ", 8);

	/* AERs: four outstanding, the fifth is refused */
	for (unsigned i = 0; i < 4; i++) {
		struct nvme_sqe c = {.opc = NVME_ADM_ASYNC_EVENT};

		push(d, &d->adm, &c);
	}
	{
		struct nvme_sqe c = {.opc = NVME_ADM_ASYNC_EVENT};

		assert_int_equal(admin(d, &c, NULL), NVME_SC_AER_LIMIT);
	}
	assert_false(poll_cqe(d, &d->adm, &e, 50));

	/* a doorbell value over the queue size: error event, write ignored */
	db_write(d, 2, IOQ_SIZE + 5);
	assert_true(poll_cqe(d, &d->adm, &e, WAIT_MS));
	assert_int_equal(st_of(&e), 0);
	assert_int_equal(e.dw0, NVME_AER_DW0(NVME_AER_TYPE_ERROR, NVME_AER_ERR_INVALID_DB_VALUE,
					     NVME_LOG_ERROR));
	/* the queue still works */
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	/* a second error event stays masked until the error log is read */
	db_write(d, 2u * 3, 1); /* SQ 3 does not exist */
	assert_false(poll_cqe(d, &d->adm, &e, 100));
	assert_int_equal(get_log(d, NVME_LOG_ERROR, 16, 0, false), 0);
	assert_true(poll_cqe(d, &d->adm, &e, WAIT_MS));
	assert_int_equal(e.dw0, NVME_AER_DW0(NVME_AER_TYPE_ERROR, NVME_AER_ERR_INVALID_DB,
					     NVME_LOG_ERROR));
	memcpy(&v64, b, 8);
	assert_true(v64 >= 1); /* error count */
	/* CQ head doorbell beyond what was posted */
	assert_int_equal(get_log(d, NVME_LOG_ERROR, 16, 0, false), 0);
	db_write(d, 3, 40);
	assert_true(poll_cqe(d, &d->adm, &e, WAIT_MS));
	assert_int_equal(e.dw0, NVME_AER_DW0(NVME_AER_TYPE_ERROR, NVME_AER_ERR_INVALID_DB_VALUE,
					     NVME_LOG_ERROR));
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);

	/* namespace attribute notices: enabled, a namespace added, the list */
	assert_int_equal(set_feat(d, NVME_FEAT_ASYNC_EVENT, 1u << 8, NULL), 0);
	assert_int_equal(ns_add(d, "ram0", 5), 0);
	assert_true(poll_cqe(d, &d->adm, &e, WAIT_MS));
	assert_int_equal(e.dw0, NVME_AER_DW0(NVME_AER_TYPE_NOTICE, NVME_AER_NOTICE_NS_CHANGED,
					     NVME_LOG_CHANGED_NS));
	assert_int_equal(get_log(d, NVME_LOG_CHANGED_NS, 1024, 0, false), 0);
	memcpy(&v32, b, 4);
	assert_int_equal(v32, 5);
	memcpy(&v32, b + 4, 4);
	assert_int_equal(v32, 0);
	/* removal: in-flight I/O first, then gone */
	{
		struct ctl c = {.d = d, .nsid = 5};

		sem_init(&c.sem, 0, 0);
		/* out of memory: the removal fails, the namespace stays */
		zoc_nvme_fail_alloc = 1;
		on_reactor(ns_remove_fn, &c);
		ctl_wait(&c);
		assert_int_equal(c.rc, -ENOMEM);
		assert_int_equal(rw(d, q, NVME_CMD_READ, 5, 0, 1, GPA + OFF_DATA, 0), 0);
		on_reactor(ns_remove_fn, &c);
		ctl_wait(&c);
		assert_int_equal(c.rc, 0);
		on_reactor(ns_remove_fn, &c);
		ctl_wait(&c);
		assert_int_equal(c.rc, -ENOENT);
		sem_destroy(&c.sem);
	}
	assert_int_equal(rw(d, q, NVME_CMD_READ, 5, 0, 1, GPA + OFF_DATA, 0), NVME_SC_INVALID_NS);
	/* a new AER gets the removal notice */
	{
		struct nvme_sqe c = {.opc = NVME_ADM_ASYNC_EVENT};

		push(d, &d->adm, &c);
	}
	assert_true(poll_cqe(d, &d->adm, &e, WAIT_MS));
	assert_int_equal(e.dw0 & 7, NVME_AER_TYPE_NOTICE);
	disable(d);
	drv_free(d);
}

/* Deleted queues take no commands; doorbells of queues that are gone. */
static void test_deleted_queue(void **state)
{
	struct drv *d = drv_new();
	struct nvme_cqe e;
	struct q *q;

	(void)state;
	assert_int_equal(ns_add(d, "null0", 1), 0);
	enable(d);
	q = io_pair(d, 1);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_SQ, 1), 0);
	{
		struct nvme_sqe c = {.opc = NVME_CMD_READ, .nsid = 1, .prp1 = GPA + OFF_DATA};

		push(d, q, &c); /* to a deleted SQ: nothing comes back */
	}
	assert_false(poll_cqe(d, q, &e, 100));
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_CQ, 1), 0);
	disable(d);
	drv_free(d);
}

static void test_interrupts(void **state)
{
	struct drv *d = drv_new();
	struct q *q;

	(void)state;
	assert_int_equal(ns_add(d, "null0", 1), 0);
	enable(d);
	assert_true(irq_count(d, 0) == 0 || true);
	q = io_pair(d, 1);
	(void)irq_count(d, 0);
	(void)irq_count(d, 1);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	{
		struct pollfd p = {.fd = d->irqfd[1], .events = POLLIN};

		assert_int_equal(poll(&p, 1, WAIT_MS), 1);
		assert_true(irq_count(d, 1) >= 1);
	}
	assert_int_equal(irq_count(d, 2), 0);
	/* admin completions go to vector 0 */
	assert_int_equal(identify(d, NVME_CNS_CTRL, 0), 0);
	{
		struct pollfd p = {.fd = d->irqfd[0], .events = POLLIN};

		assert_int_equal(poll(&p, 1, WAIT_MS), 1);
	}
	/* a CQ without interrupts */
	assert_int_equal(create_cq(d, 2, IOQ_SIZE, 2, 1), 0);
	assert_int_equal(create_sq(d, 2, IOQ_SIZE, 2, 1), 0);
	d->io[2] = (struct q){.qid = 2, .size = IOQ_SIZE, .sq_gpa = GPA + OFF_IOQ(2),
			      .cq_gpa = GPA + OFF_IOQ(2) + 0x10000, .phase = 1};
	memset(g2h(d, d->io[2].cq_gpa), 0, IOQ_SIZE * 16);
	assert_int_equal(rw(d, &d->io[2], NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	usleep(10000);
	assert_int_equal(irq_count(d, 2), 0);
	/* coalescing: threshold 4 with a long time; completions beyond it fire */
	assert_int_equal(set_feat(d, NVME_FEAT_IRQ_COALESCE, 3 | (200u << 8), NULL), 0);
	(void)irq_count(d, 1);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	/* the time bound (20 ms) still delivers it */
	{
		struct pollfd p = {.fd = d->irqfd[1], .events = POLLIN};

		assert_int_equal(poll(&p, 1, WAIT_MS), 1);
	}
	disable(d);
	drv_free(d);
}

static struct zoc_pci_func *g_intx_f;

static void intx_unmask_fn(void *arg)
{
	(void)arg;
	zoc_pci_irq_mask(g_intx_f, ZOC_PCI_IRQ_INTX, 0, 1, false);
}

/* What a link does after the guest's EOI: unmask the automasked INTx (it
 * fires again if the level is still high); then forget what is pending. */
static void intx_rearm(struct drv *d, int fd)
{
	uint64_t n;

	g_intx_f = d->f;
	usleep(5000);
	(void)!read(fd, &n, sizeof(n));
	on_reactor(intx_unmask_fn, NULL);
	usleep(5000);
	(void)!read(fd, &n, sizeof(n));
}

/* Without MSI-X: INTx, masked by INTMS and released by INTMC. */
static void test_intx(void **state)
{
	struct drv *d = drv_new();
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), dfd = dup(fd);
	struct pollfd p = {.fd = fd, .events = POLLIN};
	struct q *q;

	(void)state;
	assert_int_equal(zoc_pci_irq_set_fds(d->f, ZOC_PCI_IRQ_INTX, 0, 1, &dfd), 0);
	cfg_wr(d, MSIX_OFF + 2, 0, 2); /* MSI-X off */
	assert_int_equal(ns_add(d, "null0", 1), 0);
	enable(d);
	q = io_pair(d, 1);
	intx_rearm(d, fd);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	assert_int_equal(poll(&p, 1, WAIT_MS), 1);
	intx_rearm(d, fd);
	assert_int_equal(irq_count(d, 1), 0); /* nothing on the MSI-X vector */
	bar_wr(d, NVME_REG_INTMS, 1, 4);
	intx_rearm(d, fd);
	assert_int_equal(bar_rd(d, NVME_REG_INTMS, 4), 1);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	usleep(10000);
	assert_int_equal(poll(&p, 1, 0), 0); /* masked */
	bar_wr(d, NVME_REG_INTMC, 1, 4);
	assert_int_equal(bar_rd(d, NVME_REG_INTMS, 4), 0);
	assert_int_equal(poll(&p, 1, WAIT_MS), 1); /* held interrupt delivered */
	disable(d);
	close(fd);
	drv_free(d);
}

/* A CQ that the driver does not drain: completions wait, none is lost. */
static void test_cq_full(void **state)
{
	struct drv *d = drv_new();
	struct nvme_cqe e;

	(void)state;
	assert_int_equal(ns_add(d, "null0", 1), 0);
	enable(d);
	/* CQ of 4 entries (3 usable), SQ of 16 */
	assert_int_equal(create_cq(d, 1, 4, 1, 3), 0);
	assert_int_equal(create_sq(d, 1, 16, 1, 1), 0);
	{
		struct q q = {.qid = 1, .size = 16, .sq_gpa = GPA + OFF_IOQ(1),
			      .cq_gpa = GPA + OFF_IOQ(1) + 0x10000, .phase = 1};
		struct q cq = q;
		unsigned got = 0;

		cq.size = 4;
		memset(g2h(d, q.cq_gpa), 0, 64);
		for (unsigned i = 0; i < 10; i++) {
			struct nvme_sqe c = {.opc = NVME_CMD_READ, .nsid = 1, .prp1 = GPA + OFF_DATA};

			c.cid = ++d->cid;
			memcpy(g2h(d, q.sq_gpa + 64ull * q.tail), &c, 64);
			q.tail++;
		}
		db_write(d, 2, q.tail);
		usleep(20000);
		/* 3 posted, the CQ is full: the fourth slot still has the old phase */
		{
			struct nvme_cqe *ring = g2h(d, q.cq_gpa);

			assert_int_equal(ring[3].status & 1, 0);
		}
		while (got < 10) {
			assert_true(poll_cqe(d, &cq, &e, WAIT_MS));
			assert_int_equal(st_of(&e), 0);
			got++;
		}
		assert_false(poll_cqe(d, &cq, &e, 50));
	}
	disable(d);
	drv_free(d);
}

/* Function reset and controller reset with queues and I/O. */
static void test_reset(void **state)
{
	struct drv *d = drv_new();
	struct ctl c = {.d = d};
	struct q *q;

	(void)state;
	sem_init(&c.sem, 0, 0);
	assert_int_equal(ns_add(d, "ram0", 1), 0);
	enable(d);
	q = io_pair(d, 1);
	for (unsigned i = 0; i < 8; i++) {
		struct nvme_sqe cmd = {.opc = NVME_CMD_WRITE, .nsid = 1, .prp1 = GPA + OFF_DATA,
				       .cdw10 = i, .cdw12 = 0};

		push(d, q, &cmd);
	}
	/* controller reset while those run */
	disable(d);
	enable(d);
	q = io_pair(d, 1);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	/* function reset: power-on registers */
	on_reactor(reset_fn, &c);
	ctl_wait(&c);
	assert_int_equal(bar_rd(d, NVME_REG_CC, 4), 0);
	assert_int_equal(csts(d), 0);
	assert_int_equal(bar_rd(d, NVME_REG_AQA, 4), 0);
	cfg_wr(d, 0x04, 0x6, 2);
	cfg_wr(d, MSIX_OFF + 2, 0x8000, 2);
	for (unsigned v = 0; v < NVEC; v++)
		bar_wr_n(d, 4, 16ull * v + 12, 0, 4);
	enable(d);
	q = io_pair(d, 1);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	/* info and stats */
	c.rc = 0;
	on_reactor(info_fn, &c);
	assert_non_null(c.j);
	assert_true(json_is_true(json_object_get(c.j, "enabled")));
	assert_int_equal(json_integer_value(json_object_get(c.j, "io_queues")), 1);
	assert_int_equal(json_array_size(json_object_get(c.j, "namespaces")), 1);
	json_decref(c.j);
	c.rc = 1;
	on_reactor(info_fn, &c);
	assert_non_null(c.j);
	assert_int_equal(json_array_size(json_object_get(c.j, "queues")), 1);
	assert_true(json_integer_value(json_object_get(json_object_get(c.j, "totals"),
						       "read_ops")) >= 2);
	json_decref(c.j);
	sem_destroy(&c.sem);
	drv_free(d); /* destroy while enabled */
}

/* Quiesce waits for in-flight I/O and fetches nothing until resume; a
 * controller reset with I/O held in the back end finishes once it is done. */
static void test_quiesce(void **state)
{
	struct drv *d = drv_new();
	struct ctl c = {.d = d};
	struct nvme_cqe e;
	struct q *q;

	(void)state;
	sem_init(&c.sem, 0, 0);
	assert_int_equal(ns_add(d, "ram0", 1), 0);
	enable(d);
	q = io_pair(d, 1);
	atomic_store(&g_ram_hold, true);
	{
		struct nvme_sqe cmd = {.opc = NVME_CMD_READ, .nsid = 1, .prp1 = GPA + OFF_DATA};

		push(d, q, &cmd);
	}
	for (int i = 0; i < 1000 && atomic_load(&g_ram_queued) == 0; i++)
		usleep(1000);
	assert_int_equal(atomic_load(&g_ram_queued), 1);
	on_reactor(quiesce_fn, &c);
	assert_int_not_equal(zt_sem_wait_ms(&c.sem, 100), 0); /* I/O still in the back end */
	atomic_store(&g_ram_hold, false);
	ctl_wait(&c);
	/* quiesced: the completion is held back, new commands wait */
	assert_false(poll_cqe(d, q, &e, 50));
	{
		struct nvme_sqe cmd = {.opc = NVME_CMD_READ, .nsid = 1, .prp1 = GPA + OFF_DATA};

		push(d, q, &cmd);
	}
	usleep(20000);
	assert_int_equal(atomic_load(&g_ram_queued), 0);
	assert_false(poll_cqe(d, q, &e, 50));
	on_reactor(resume_fn, &c);
	assert_true(poll_cqe(d, q, &e, WAIT_MS));
	assert_int_equal(st_of(&e), 0);
	assert_true(poll_cqe(d, q, &e, WAIT_MS));
	assert_int_equal(st_of(&e), 0);

	/* a DMA space without the queues' memory pauses them; mapping it again
	 * resumes them, nothing lost */
	{
		struct zoc_mem *empty = zoc_mem_create(), *orig = d->zm;
		struct nvme_sqe cmd = {.opc = NVME_CMD_READ, .nsid = 1, .prp1 = GPA + OFF_DATA};

		on_reactor(quiesce_fn, &c);
		ctl_wait(&c);
		d->zm = empty;
		on_reactor(set_dma_fn, &c);
		push(d, q, &cmd);
		assert_false(poll_cqe(d, q, &e, 50));
		assert_int_equal(csts(d) & NVME_CSTS_CFS, 0);
		on_reactor(quiesce_fn, &c);
		ctl_wait(&c);
		d->zm = orig;
		on_reactor(set_dma_fn, &c);
		assert_true(poll_cqe(d, q, &e, WAIT_MS));
		assert_int_equal(st_of(&e), 0);
		zoc_mem_put(empty);
	}

	/* disable with a request held in the back end: RDY stays until it is done */
	atomic_store(&g_ram_hold, true);
	{
		struct nvme_sqe cmd = {.opc = NVME_CMD_WRITE, .nsid = 1, .prp1 = GPA + OFF_DATA};

		push(d, q, &cmd);
	}
	for (int i = 0; i < 1000 && atomic_load(&g_ram_queued) == 0; i++)
		usleep(1000);
	bar_wr(d, NVME_REG_CC, 0, 4);
	usleep(20000);
	assert_int_equal(csts(d) & NVME_CSTS_RDY, NVME_CSTS_RDY);
	atomic_store(&g_ram_hold, false);
	assert_true(wait_csts(d, NVME_CSTS_RDY, 0));
	/* and the queues are gone */
	enable(d);
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_SQ, 1), NVME_SC_QID_INVALID);
	disable(d);
	sem_destroy(&c.sem);
	drv_free(d);
}

/* ---- several driver threads, one queue pair each, on both reactors ---- */

struct worker {
	struct drv *d;
	struct q *q;
	unsigned idx;
	int fails;
	char why[128];
};

#define W_QD 8
#define W_ROUNDS 40

/* Submits without waiting (cid chosen by the caller). */
static void wpush(struct drv *d, struct q *q, struct nvme_sqe *cmd)
{
	memcpy(g2h(d, q->sq_gpa + 64ull * q->tail), cmd, 64);
	q->tail = (q->tail + 1) % q->size;
	db_write(d, 2u * q->qid, q->tail);
}

static bool wcollect(struct drv *d, struct q *q, unsigned n, struct worker *w)
{
	uint32_t seen = 0;

	for (unsigned i = 0; i < n; i++) {
		struct nvme_cqe e;
		struct nvme_cqe *slot = g2h(d, q->cq_gpa + 16ull * q->head);
		uint64_t end = now_ms() + WAIT_MS;

		while (((__atomic_load_n((uint32_t *)&slot->cid, __ATOMIC_ACQUIRE) >> 16) & 1) !=
		       q->phase) {
			if (now_ms() > end) {
				snprintf(w->why, sizeof(w->why), "q%u: no completion", q->qid);
				return false;
			}
			usleep(10);
		}
		memcpy(&e, slot, sizeof(e));
		if (++q->head == q->size) {
			q->head = 0;
			q->phase ^= 1;
		}
		db_write(d, 2u * q->qid + 1, q->head);
		if (st_of(&e) || e.sqid != q->qid || (e.cid & 0xff) >= W_QD ||
		    (seen & (1u << (e.cid & 0xff)))) {
			snprintf(w->why, sizeof(w->why), "q%u: bad completion st %x cid %u", q->qid,
				 st_of(&e), e.cid);
			return false;
		}
		seen |= 1u << (e.cid & 0xff);
	}
	return true;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct drv *d = w->d;
	uint64_t wbuf = GPA + 0x800000 + (uint64_t)w->idx * 0x40000;
	uint64_t rbuf = wbuf + 0x20000;
	uint64_t lba0 = 1000 + (uint64_t)w->idx * 200;

	for (unsigned round = 0; round < W_ROUNDS && !w->fails; round++) {
		for (unsigned i = 0; i < W_QD; i++) {
			struct nvme_sqe c = {.opc = NVME_CMD_WRITE, .nsid = 1,
					     .prp1 = wbuf + i * PAGE, .cdw10 = (uint32_t)(lba0 + i * 8),
					     .cdw12 = 7, .cid = (uint16_t)(round << 8 | i)};

			fill(d, wbuf + i * PAGE, PAGE, (uint8_t)(round * 31 + i + w->idx));
			wpush(d, w->q, &c);
		}
		if (!wcollect(d, w->q, W_QD, w)) {
			w->fails++;
			break;
		}
		for (unsigned i = 0; i < W_QD; i++) {
			struct nvme_sqe c = {.opc = NVME_CMD_READ, .nsid = 1,
					     .prp1 = rbuf + i * PAGE, .cdw10 = (uint32_t)(lba0 + i * 8),
					     .cdw12 = 7, .cid = (uint16_t)(round << 8 | i)};

			memset(g2h(d, rbuf + i * PAGE), 0, PAGE);
			wpush(d, w->q, &c);
		}
		if (!wcollect(d, w->q, W_QD, w)) {
			w->fails++;
			break;
		}
		if (memcmp(g2h(d, wbuf), g2h(d, rbuf), W_QD * PAGE)) {
			snprintf(w->why, sizeof(w->why), "q%u: data mismatch in round %u", w->q->qid,
				 round);
			w->fails++;
		}
	}
	return NULL;
}

static void run_workers(struct drv *d, unsigned nq)
{
	pthread_t th[5];
	struct worker w[5];

	for (unsigned i = 1; i <= nq; i++) {
		w[i] = (struct worker){.d = d, .q = &d->io[i], .idx = i};
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (unsigned i = 1; i <= nq; i++) {
		pthread_join(th[i], NULL);
		if (w[i].fails)
			fail_msg("worker %u: %s", i, w[i].why);
	}
}

static void test_parallel_queues(void **state)
{
	struct drv *d = drv_new();
	struct ctl c = {.d = d, .rc = 1};

	(void)state;
	assert_int_equal(ns_add(d, "ram0", 1), 0);
	enable(d);
	for (unsigned i = 1; i <= 4; i++)
		io_pair(d, (uint16_t)i);
	run_workers(d, 4);
	on_reactor(info_fn, &c);
	{
		json_t *qs = json_object_get(c.j, "queues");
		bool r0 = false, r1 = false;

		assert_int_equal(json_array_size(qs), 4);
		for (size_t i = 0; i < 4; i++) {
			json_int_t r = json_integer_value(json_object_get(json_array_get(qs, i),
									  "reactor"));
			r0 |= r == 0;
			r1 |= r == 1;
			assert_int_equal(json_integer_value(json_object_get(json_array_get(qs, i),
									    "write_ops")),
					 W_ROUNDS * W_QD);
		}
		assert_true(r0 && r1); /* round-robin over both reactors */
	}
	json_decref(c.j);
	disable(d);
	drv_free(d);
}

/* Doorbells in the shared page (polling mode) and queues on both reactors. */
static void test_mmap_doorbells(void **state)
{
	struct drv *d = drv_new_opts("nvme-mmap", true);
	struct q *q[5];

	(void)state;
	assert_int_equal(ns_add(d, "ram0", 1), 0);
	enable(d);
	for (unsigned i = 1; i <= 4; i++)
		q[i] = io_pair(d, (uint16_t)i);
	for (unsigned round = 0; round < 20; round++) {
		for (unsigned i = 1; i <= 4; i++) {
			fill(d, GPA + OFF_DATA + i * PAGE, PAGE, (uint8_t)(round + i));
			assert_int_equal(rw(d, q[i], NVME_CMD_WRITE, 1, i * 8, 8,
					    GPA + OFF_DATA + i * PAGE, 0),
					 0);
			assert_memory_equal(g_ram_data + i * PAGE, g2h(d, GPA + OFF_DATA + i * PAGE),
					    PAGE);
		}
	}
	/* a bad value in the shared page is noticed by the owner reactor */
	{
		struct nvme_sqe c = {.opc = NVME_ADM_ASYNC_EVENT};
		struct nvme_cqe e;

		push(d, &d->adm, &c);
		d->dbmap[2 * 3] = 999;
		assert_true(poll_cqe(d, &d->adm, &e, WAIT_MS));
		assert_int_equal(e.dw0, NVME_AER_DW0(NVME_AER_TYPE_ERROR,
						     NVME_AER_ERR_INVALID_DB_VALUE, NVME_LOG_ERROR));
		d->dbmap[2 * 3] = q[3]->tail;
		assert_int_equal(rw(d, q[3], NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	}
	/* stores to doorbells of queues that do not exist (SQ 5, CQ 4 after its
	 * deletion, a slot past the last queue) are found by reactor 0's sweep */
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_SQ, 4), 0);
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_CQ, 4), 0);
	{
		static const unsigned slots[] = {2 * 5, 2 * 4 + 1, 1001};

		for (unsigned i = 0; i < 3; i++) {
			struct nvme_sqe c = {.opc = NVME_ADM_ASYNC_EVENT};
			struct nvme_cqe e;

			assert_int_equal(get_log(d, NVME_LOG_ERROR, 16, 0, false), 0); /* unmask */
			push(d, &d->adm, &c);
			assert_false(poll_cqe(d, &d->adm, &e, 50));
			__atomic_store_n(&d->dbmap[slots[i]], 7, __ATOMIC_RELEASE);
			assert_true(poll_cqe(d, &d->adm, &e, WAIT_MS));
			assert_int_equal(e.dw0, NVME_AER_DW0(NVME_AER_TYPE_ERROR,
							     NVME_AER_ERR_INVALID_DB,
							     NVME_LOG_ERROR));
			assert_int_equal(__atomic_load_n(&d->dbmap[slots[i]], __ATOMIC_ACQUIRE), 0);
		}
	}
	/* the queues that exist still work */
	assert_int_equal(rw(d, q[2], NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	disable(d);
	drv_free(d);
}

/* ---- Doorbell Buffer Config ---------------------------------------------- */

#define OFF_DBB 0x300000 /* shadow doorbells; event indexes one page up */

static uint16_t dbbuf_cfg(struct drv *d, uint64_t prp1, uint64_t prp2)
{
	struct nvme_sqe c = {.opc = NVME_ADM_DBBUF, .prp1 = prp1, .prp2 = prp2};

	return admin(d, &c, NULL);
}

static uint16_t oacs_of(struct drv *d)
{
	uint8_t *b = g2h(d, GPA + OFF_BUF);

	assert_int_equal(identify(d, 1, 0), 0);
	return (uint16_t)(b[NVME_IDC_OACS] | b[NVME_IDC_OACS + 1] << 8);
}

static struct drv *drv_new_dbbuf(const char *name)
{
	struct drv *d;

	g_opt_dbbuf = true;
	d = drv_new_opts(name, false);
	g_opt_dbbuf = false;
	return d;
}

/* Doorbell Buffer Config (admin 0x7C, OACS bit 8): bad buffers fail with
 * Invalid Field and change nothing; a good one makes the controller read the
 * I/O queues' doorbells from the shadow page (the driver writes no MMIO
 * doorbell at all, across queue wraps), while the event indexes stay as the
 * driver set them (the reactors poll; the driver need not ring); a
 * controller reset forgets the buffers (the BAR doorbells count again). */
static void test_dbbuf(void **state)
{
	struct drv *d = drv_new_dbbuf("nvme-dbbuf");
	uint32_t *sdb = g2h(d, GPA + OFF_DBB), *ei = g2h(d, GPA + OFF_DBB + PAGE);
	static const struct {
		uint64_t prp1, prp2;
		const char *what;
	} bad[] = {
		{0, GPA + OFF_DBB + PAGE, "shadow page 0"},
		{GPA + OFF_DBB, 0, "event index page 0"},
		{GPA + OFF_DBB + 8, GPA + OFF_DBB + PAGE, "shadow page unaligned"},
		{GPA + OFF_DBB, GPA + OFF_DBB + PAGE + 4, "event index page unaligned"},
		{GPA_HOLE, GPA + OFF_DBB + PAGE, "shadow page not mapped"},
		{GPA + OFF_DBB, GPA + MEM_SIZE, "event index page past guest memory"},
		{GPA + MEM_SIZE - PAGE / 2, GPA + OFF_DBB + PAGE, "shadow page across the end"},
	};
	struct q *q;

	(void)state;
	assert_int_equal(ns_add(d, "ram0", 1), 0);
	enable(d);
	assert_true(oacs_of(d) & (1u << 8));
	q = io_pair(d, 1);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint16_t st = dbbuf_cfg(d, bad[i].prp1, bad[i].prp2);

		if (st != NVME_SC_INVALID_FIELD)
			fail_msg("%s: status 0x%x, want Invalid Field", bad[i].what, st);
	}
	/* none was taken: a stale shadow value does not matter */
	sdb[2] = 17;
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);

	/* a good one: the driver's current values in the shadows, event
	 * indexes as it set them */
	memset(sdb, 0, PAGE);
	for (unsigned i = 0; i < PAGE / 4; i++)
		ei[i] = 0x5a5a0000u + i;
	sdb[2] = q->tail;
	sdb[3] = q->head;
	assert_int_equal(dbbuf_cfg(d, GPA + OFF_DBB, GPA + OFF_DBB + PAGE), 0);
	d->sdb = sdb;
	/* a stray MMIO doorbell is not what the controller reads any more */
	bar_wr(d, NVME_REG_DBS + 8, (q->tail + 5) % q->size, 4);
	/* three times around the queues: SQ tails and CQ heads from the shadow
	 * only (a CQ head the controller did not see would fill the CQ) */
	for (unsigned i = 0; i < 3 * IOQ_SIZE; i++) {
		fill(d, GPA + OFF_DATA, PAGE, (uint8_t)i);
		assert_int_equal(rw(d, q, NVME_CMD_WRITE, 1, (i % 16) * 8, 8, GPA + OFF_DATA, 0), 0);
		assert_memory_equal(g_ram_data + (i % 16) * PAGE, g2h(d, GPA + OFF_DATA), PAGE);
	}
	for (unsigned i = 0; i < PAGE / 4; i++)
		if (ei[i] != 0x5a5a0000u + i)
			fail_msg("event index %u changed to 0x%x", i, ei[i]);
	/* a queue created after the config uses its shadow from the start */
	memset(g2h(d, GPA + OFF_IOQ(2)), 0, 0x20000);
	sdb[4] = sdb[5] = 0;
	q = io_pair(d, 2);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);

	/* controller reset: the buffers are forgotten; with the shadows left
	 * at stale values, the MMIO doorbells alone drive the new queues */
	disable(d);
	d->sdb = NULL;
	sdb[2] = 9;
	sdb[3] = 9;
	enable(d);
	q = io_pair(d, 1);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	/* and it takes a new config after the reset */
	sdb[2] = q->tail;
	sdb[3] = q->head;
	assert_int_equal(dbbuf_cfg(d, GPA + OFF_DBB, GPA + OFF_DBB + PAGE), 0);
	d->sdb = sdb;
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	d->sdb = NULL;
	disable(d);
	drv_free(d);

	/* a controller created without it does not offer it */
	d = drv_new();
	enable(d);
	assert_false(oacs_of(d) & (1u << 8));
	assert_int_equal(dbbuf_cfg(d, GPA + OFF_DBB, GPA + OFF_DBB + PAGE), NVME_SC_INVALID_OPCODE);
	disable(d);
	drv_free(d);
}

/* Sleeping reactors would not see shadow doorbells: not offered. */
static void test_dbbuf_interrupt_mode(void **state)
{
	struct drv *d = drv_new_dbbuf("nvme-dbbuf-int");

	(void)state;
	enable(d);
	assert_false(oacs_of(d) & (1u << 8));
	assert_int_equal(dbbuf_cfg(d, GPA + OFF_DBB, GPA + OFF_DBB + PAGE), NVME_SC_INVALID_OPCODE);
	disable(d);
	drv_free(d);
}

/* Interrupt mode: doorbell writes wake the owner reactors (eventfds). */
static void test_interrupt_mode(void **state)
{
	struct drv *d = drv_new_opts("nvme-int", false);
	struct q *q[3];

	(void)state;
	assert_true(zoc_reactor_interrupt_mode());
	assert_int_equal(ns_add(d, "ram0", 1), 0);
	enable(d);
	for (unsigned i = 1; i <= 2; i++)
		q[i] = io_pair(d, (uint16_t)i);
	for (unsigned round = 0; round < 50; round++) {
		for (unsigned i = 1; i <= 2; i++) {
			fill(d, GPA + OFF_DATA + i * PAGE, PAGE, (uint8_t)(round * 3 + i));
			assert_int_equal(rw(d, q[i], NVME_CMD_WRITE, 1, i * 8, 8,
					    GPA + OFF_DATA + i * PAGE, 0),
					 0);
			assert_memory_equal(g_ram_data + i * PAGE, g2h(d, GPA + OFF_DATA + i * PAGE),
					    PAGE);
			usleep(round % 5 == 0 ? 3000 : 0); /* let the reactors fall asleep */
		}
	}
	assert_true(irq_count(d, 1) > 0);
	assert_true(irq_count(d, 2) > 0);
	disable(d);
	drv_free(d);
}

/* Bus mastering off: no command fetched, no completion written, no
 * interrupt; all of it happens once the driver sets it again. */
static void test_bus_master(void **state)
{
	struct drv *d = drv_new();
	struct nvme_cqe e;
	struct q *q;

	(void)state;
	assert_int_equal(ns_add(d, "ram0", 1), 0);
	enable(d);
	q = io_pair(d, 1);
	fill(d, GPA + OFF_DATA, PAGE, 0x5a);
	assert_int_equal(rw(d, q, NVME_CMD_WRITE, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	irq_count(d, 1);
	cfg_wr(d, 0x04, 0x2, 2); /* memory space only */
	memset(g2h(d, GPA + OFF_DATA + PAGE), 0, PAGE);
	{
		struct nvme_sqe c = {.opc = NVME_CMD_READ, .nsid = 1,
				     .prp1 = GPA + OFF_DATA + PAGE, .cdw12 = 7};
		struct nvme_sqe id = {.opc = NVME_ADM_IDENTIFY, .prp1 = GPA + OFF_BUF, .cdw10 = 1};

		push(d, q, &c);
		push(d, &d->adm, &id);
		assert_false(poll_cqe(d, q, &e, 200));
		assert_false(poll_cqe(d, &d->adm, &e, 10));
		/* not fetched: no data moved, no interrupt */
		for (unsigned i = 0; i < PAGE; i++)
			assert_int_equal(((uint8_t *)g2h(d, GPA + OFF_DATA + PAGE))[i], 0);
		assert_int_equal(irq_count(d, 1), 0);
		cfg_wr(d, 0x04, 0x6, 2);
		assert_true(poll_cqe(d, q, &e, WAIT_MS));
		assert_int_equal(e.cid, c.cid);
		assert_int_equal(st_of(&e), 0);
		assert_true(poll_cqe(d, &d->adm, &e, WAIT_MS));
		assert_int_equal(e.cid, id.cid);
	}
	assert_memory_equal(g2h(d, GPA + OFF_DATA + PAGE), g2h(d, GPA + OFF_DATA), PAGE);
	assert_true(irq_count(d, 1) > 0);
	/* a function reset clears the command register: off until set again */
	{
		struct ctl c = {.d = d};

		sem_init(&c.sem, 0, 0);
		on_reactor(reset_fn, &c);
		ctl_wait(&c);
		sem_destroy(&c.sem);
	}
	cfg_wr(d, 0x04, 0x2, 2);
	enable(d);
	{
		struct nvme_sqe id = {.opc = NVME_ADM_IDENTIFY, .prp1 = GPA + OFF_BUF, .cdw10 = 1};

		push(d, &d->adm, &id);
		assert_false(poll_cqe(d, &d->adm, &e, 100));
		cfg_wr(d, 0x04, 0x6, 2);
		assert_true(poll_cqe(d, &d->adm, &e, WAIT_MS));
		assert_int_equal(st_of(&e), 0);
	}
	disable(d);
	drv_free(d);
}

/* Out of memory for a queue's message to its reactor: Create/Delete I/O
 * SQ/CQ fail with Internal Error and change nothing; a retry works. */
static void test_queue_enomem(void **state)
{
	struct drv *d = drv_new();
	struct q *q;

	(void)state;
	assert_int_equal(ns_add(d, "null0", 1), 0);
	enable(d);
	/* I/O CQs go to the reactors in turn: 1 on reactor 0 (no message), 2 on 1 */
	memset(g2h(d, GPA + OFF_IOQ(1)), 0, 0x20000);
	memset(g2h(d, GPA + OFF_IOQ(2)), 0, 0x20000);
	assert_int_equal(create_cq(d, 1, IOQ_SIZE, 1, 3), 0);
	zoc_nvme_fail_alloc = 1;
	assert_int_equal(create_cq(d, 2, IOQ_SIZE, 2, 3), NVME_SC_INTERNAL);
	assert_int_equal(zoc_nvme_fail_alloc, 0);
	assert_int_equal(create_sq(d, 2, IOQ_SIZE, 2, 1), NVME_SC_CQ_INVALID); /* no CQ 2 */
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_CQ, 1), 0);
	/* CQ 2 again: reactor 0; CQ 1: reactor 1 */
	assert_int_equal(create_cq(d, 2, IOQ_SIZE, 2, 3), 0);
	assert_int_equal(create_cq(d, 1, IOQ_SIZE, 1, 3), 0);
	zoc_nvme_fail_alloc = 1;
	assert_int_equal(create_sq(d, 1, IOQ_SIZE, 1, 1), NVME_SC_INTERNAL);
	assert_int_equal(create_sq(d, 1, IOQ_SIZE, 1, 1), 0);
	q = &d->io[1];
	*q = (struct q){.qid = 1, .size = IOQ_SIZE, .sq_gpa = GPA + OFF_IOQ(1),
			.cq_gpa = GPA + OFF_IOQ(1) + 0x10000, .phase = 1};
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	zoc_nvme_fail_alloc = 1;
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_SQ, 1), NVME_SC_INTERNAL);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_SQ, 1), 0);
	zoc_nvme_fail_alloc = 1;
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_CQ, 1), NVME_SC_INTERNAL);
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_CQ, 1), 0);
	assert_int_equal(delete_q(d, NVME_ADM_DELETE_CQ, 2), 0);
	disable(d);
	drv_free(d);
}

static void test_create_args(void **state)
{
	struct zoc_nvme_ctrlr_opts o = {.name = "x", .max_io_queues = ZOC_NVME_MAX_IO_QUEUES + 1};
	struct ctl c = {0};
	struct drv dd = {0};

	(void)state;
	c.d = &dd;
	c.opts = o;
	on_reactor(create_fn, &c);
	assert_int_equal(c.rc, -EINVAL);
	c.opts.max_io_queues = 0;
	c.opts.name = "";
	on_reactor(create_fn, &c);
	assert_int_equal(c.rc, -EINVAL);
	c.opts.name = "x";
	c.opts.max_queue_size = 1;
	on_reactor(create_fn, &c);
	assert_int_equal(c.rc, -EINVAL);
	/* each allocation of the controller (itself, vectors, groups, the three
	 * broadcasts) failing fails the creation; nothing leaks (ASan) */
	c.opts.max_queue_size = 0;
	for (unsigned n = 1; n <= 6; n++) {
		zoc_nvme_fail_alloc = n;
		on_reactor(create_fn, &c);
		assert_int_equal(c.rc, -ENOMEM);
	}
	zoc_nvme_fail_alloc = 0;
}


/* ------------------------------------------------------------------ */
/* memory without a mapping (vfio-user DMA_MAP without an fd)           */

static int g_remote_mode; /* 0: answer, 1: fail every copy, 2: hold, 3: fail -EAGAIN */
static atomic_int g_remote_calls;
#define HELD_MAX 16
static struct zoc_mem_io *g_held[HELD_MAX]; /* reactor 0 */
static atomic_int g_nheld;

/* Answers one message of a copy as mode says (0, 1 or 3). */
static void fake_answer(struct zoc_mem_io *io, int mode)
{
	uint64_t off = io->gpa + io->done - RGPA;
	uint64_t n = io->chunk;

	if (mode == 3) {
		zoc_mem_io_remote_done(io, -EAGAIN);
		return;
	}
	if (mode == 1 || off + n > RSIZE) {
		zoc_mem_io_remote_done(io, -EIO);
		return;
	}
	if (io->to_guest)
		memcpy(g_remote + off, (uint8_t *)io->buf + io->done, n);
	else
		memcpy((uint8_t *)io->buf + io->done, g_remote + off, n);
	zoc_mem_io_remote_done(io, 0);
}

/* A fake link: the "client's" memory is g_remote; 4 KiB per message. */
static void fake_remote_rw(void *ctx, struct zoc_mem_io *io)
{
	int mode = __atomic_load_n(&g_remote_mode, __ATOMIC_ACQUIRE);

	(void)ctx;
	atomic_fetch_add(&g_remote_calls, 1);
	io->chunk = io->chunk > 4096 ? 4096 : io->chunk;
	if (mode == 2) {
		int k = atomic_load(&g_nheld);

		assert_true(k < HELD_MAX);
		g_held[k] = io;
		atomic_store(&g_nheld, k + 1);
		return;
	}
	fake_answer(io, mode);
}

/* Reactor 0: answers the messages held so far (successfully while the mode
 * is 2 = hold, else as the mode says); later ones are held again in mode 2. */
static void release_held_fn(void *arg)
{
	struct zoc_mem_io *held[HELD_MAX];
	int n = atomic_exchange(&g_nheld, 0);
	int mode = __atomic_load_n(&g_remote_mode, __ATOMIC_ACQUIRE);

	(void)arg;
	memcpy(held, g_held, sizeof(held[0]) * (size_t)n);
	for (int i = 0; i < n; i++)
		fake_answer(held[i], mode == 2 ? 0 : mode);
}

static bool wait_held(int n)
{
	for (int i = 0; i < 2000 && atomic_load(&g_nheld) < n; i++)
		usleep(1000);
	return atomic_load(&g_nheld) >= n;
}

static void release_held(void)
{
	__atomic_store_n(&g_remote_mode, 0, __ATOMIC_RELEASE);
	on_reactor(release_held_fn, NULL);
}

static const struct zoc_mem_remote_ops fake_remote_ops = {.rw = fake_remote_rw};

/* Gives d a DMA space with its memory plus [RGPA, +RSIZE) reachable only
 * through the fake link. Returns the endpoint. */
static struct zoc_mem_remote *drv_add_remote(struct drv *d)
{
	struct zoc_mem *old = d->zm;
	struct zoc_mem_remote *ep = zoc_mem_remote_create(&fake_remote_ops, (void *)1);
	struct ctl c = {.d = d};

	assert_non_null(ep);
	d->zm = zoc_mem_create();
	assert_non_null(d->zm);
	assert_int_equal(zoc_mem_add_region_hva(d->zm, GPA, MEM_SIZE, GPA, d->mem, true), 0);
	assert_int_equal(zoc_mem_add_remote(d->zm, RGPA, RSIZE, true), 0);
	zoc_mem_set_remote(d->zm, ep);
	sem_init(&c.sem, 0, 0);
	on_reactor(quiesce_fn, &c);
	ctl_wait(&c);
	on_reactor(set_dma_fn, &c);
	sem_destroy(&c.sem);
	zoc_mem_put(old);
	return ep;
}

static void rfill(uint64_t gpa, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		g_remote[gpa - RGPA + i] = (uint8_t)(seed + i * 13 + i / 512);
}

static void test_io_remote(void **state)
{
	struct drv *d = drv_new();
	struct zoc_mem_remote *ep;
	struct nvme_sgl_desc s1;
	struct q *q;
	uint64_t *list = g2h(d, GPA + OFF_LIST);
	uint8_t *ram = g_ram_data;
	int calls;

	(void)state;
	g_remote = calloc(1, RSIZE);
	assert_non_null(g_remote);
	g_remote_mode = 0;
	assert_int_equal(ns_add(d, "ram0", 1), 0);
	ep = drv_add_remote(d);
	enable(d);
	q = io_pair(d, 1);

	/* the fast path is untouched: mapped data makes no copy */
	calls = atomic_load(&g_remote_calls);
	fill(d, GPA + OFF_DATA, 4096, 1);
	assert_int_equal(rw(d, q, NVME_CMD_WRITE, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	assert_int_equal(atomic_load(&g_remote_calls), calls);

	/* two blocks in remote memory at an odd offset: write, read back elsewhere */
	rfill(RGPA + 512, 1024, 3);
	assert_int_equal(rw(d, q, NVME_CMD_WRITE, 1, 20, 2, RGPA + 512, 0), 0);
	assert_memory_equal(ram + 20 * 512, g_remote + 512, 1024);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 20, 2, RGPA + 0x8000, 0), 0);
	assert_memory_equal(g_remote + 0x8000, ram + 20 * 512, 1024);
	assert_true(atomic_load(&g_remote_calls) > calls);

	/* 64 KiB: PRP1 remote, a mapped PRP list of remote and mapped pages */
	rfill(RGPA + 0x10000, 0x10000, 7);
	fill(d, GPA + OFF_DATA + 0x40000, 0x10000, 8);
	for (unsigned i = 0; i < 15; i++)
		list[i] = (i % 3 == 1) ? GPA + OFF_DATA + 0x40000 + (i + 1) * 4096ull
				       : RGPA + 0x10000 + (i + 1) * 4096ull;
	assert_int_equal(rw(d, q, NVME_CMD_WRITE, 1, 200, 128, RGPA + 0x10000, GPA + OFF_LIST), 0);
	assert_memory_equal(ram + 200 * 512, g_remote + 0x10000, 4096);
	for (unsigned i = 0; i < 15; i++) {
		const uint8_t *src = (i % 3 == 1) ? (uint8_t *)g2h(d, list[i]) : g_remote + (list[i] - RGPA);

		assert_memory_equal(ram + 200 * 512 + (i + 1) * 4096ull, src, 4096);
	}
	/* read it back through a PRP list that itself lies in remote memory */
	{
		uint64_t rl[15];

		for (unsigned i = 0; i < 15; i++)
			rl[i] = (i % 2) ? GPA + OFF_DATA + 0x80000 + i * 4096ull
					: RGPA + 0x40000 + i * 4096ull;
		memcpy(g_remote + 0x30000 + 8, rl, sizeof(rl)); /* list at an offset */
		assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 200, 128, RGPA + 0x20000,
				    RGPA + 0x30000 + 8),
				 0);
		assert_memory_equal(g_remote + 0x20000, ram + 200 * 512, 4096);
		for (unsigned i = 0; i < 15; i++) {
			const uint8_t *dst = (i % 2) ? (uint8_t *)g2h(d, rl[i]) : g_remote + (rl[i] - RGPA);

			assert_memory_equal(dst, ram + 200 * 512 + (i + 1) * 4096ull, 4096);
		}
	}
	/* SGL data block in remote memory */
	rfill(RGPA + 0x60003, 1536, 11);
	sgl(&s1, RGPA + 0x60003, 1536, NVME_SGL_DATA_BLOCK);
	assert_int_equal(rw_sgl(d, q, NVME_CMD_WRITE, 60, 3, &s1), 0);
	assert_memory_equal(ram + 60 * 512, g_remote + 0x60003, 1536);

	/* an SGL whose segment lists lie in remote memory (a segment, then a
	 * last segment), data blocks mapped and remote */
	{
		struct nvme_sgl_desc seg[3], seg2[2];

		rfill(RGPA + 0xa0000, 4096, 17);
		fill(d, GPA + OFF_DATA + 0x8000, 4096, 18);
		sgl(&seg[0], RGPA + 0xa0000, 1000, NVME_SGL_DATA_BLOCK);
		sgl(&seg[1], GPA + OFF_DATA + 0x8000, 2000, NVME_SGL_DATA_BLOCK);
		sgl(&seg[2], RGPA + 0xb1000, 32, NVME_SGL_LAST_SEGMENT);
		sgl(&seg2[0], RGPA + 0xa0000 + 1000, 48, NVME_SGL_DATA_BLOCK);
		sgl(&seg2[1], GPA + OFF_DATA + 0x8000 + 2000, 1048, NVME_SGL_DATA_BLOCK);
		memcpy(g_remote + 0xb0010, seg, sizeof(seg));
		memcpy(g_remote + 0xb1000, seg2, sizeof(seg2));
		sgl(&s1, RGPA + 0xb0010, sizeof(seg), NVME_SGL_SEGMENT);
		assert_int_equal(rw_sgl(d, q, NVME_CMD_WRITE, 70, 8, &s1), 0);
		assert_memory_equal(ram + 70 * 512, g_remote + 0xa0000, 1000);
		assert_memory_equal(ram + 70 * 512 + 1000, g2h(d, GPA + OFF_DATA + 0x8000), 2000);
		assert_memory_equal(ram + 70 * 512 + 3000, g_remote + 0xa0000 + 1000, 48);
		assert_memory_equal(ram + 70 * 512 + 3048, g2h(d, GPA + OFF_DATA + 0x8000 + 2000), 1048);
		/* read back through the same lists */
		memset(g_remote + 0xa0000, 0, 4096);
		memset(g2h(d, GPA + OFF_DATA + 0x8000), 0, 4096);
		assert_int_equal(rw_sgl(d, q, NVME_CMD_READ, 70, 8, &s1), 0);
		assert_memory_equal(g_remote + 0xa0000, ram + 70 * 512, 1000);
		assert_memory_equal(g_remote + 0xa0000 + 1000, ram + 70 * 512 + 3000, 48);
		/* a bad descriptor type in a remote list; a list pointing nowhere */
		seg2[1].id = 0x50;
		memcpy(g_remote + 0xb1000, seg2, sizeof(seg2));
		assert_int_equal(rw_sgl(d, q, NVME_CMD_WRITE, 70, 8, &s1), NVME_SC_SGL_INVALID_TYPE);
		sgl(&s1, GPA_HOLE, 32, NVME_SGL_SEGMENT);
		assert_int_equal(rw_sgl(d, q, NVME_CMD_WRITE, 70, 8, &s1), NVME_SC_DATA_XFER_ERROR);
	}
	/* DSM with its range list in remote memory */
	{
		struct nvme_dsm_range rr[3] = {{.nlb = 2, .slba = 5000}, {.nlb = 0, .slba = 0},
					       {.nlb = 3, .slba = 5010}};
		struct nvme_sqe c = {.opc = NVME_CMD_DSM, .nsid = 1, .prp1 = RGPA + 0xb2000 + 8,
				     .cdw10 = 2, .cdw11 = NVME_DSM_AD};

		memset(ram + 5000 * 512, 0xcd, 16 * 512);
		memcpy(g_remote + 0xb2008, rr, sizeof(rr));
		atomic_store(&g_ram_discards, 0);
		assert_int_equal(run(d, q, &c, NULL), 0);
		assert_int_equal(atomic_load(&g_ram_discards), 2);
		assert_int_equal(ram[5001 * 512 + 511], 0);
		assert_int_equal(ram[5002 * 512], 0xcd);
		assert_int_equal(ram[5012 * 512 + 511], 0);
		assert_int_equal(ram[5013 * 512], 0xcd);
		rr[2].slba = RAM_BLOCKS - 1;
		memcpy(g_remote + 0xb2008, rr, sizeof(rr));
		atomic_store(&g_ram_discards, 0);
		assert_int_equal(run(d, q, &c, NULL), NVME_SC_LBA_RANGE);
		assert_int_equal(atomic_load(&g_ram_discards), 0); /* checked before any */
		g_remote_mode = 1;
		assert_int_equal(run(d, q, &c, NULL), NVME_SC_DATA_XFER_ERROR);
		g_remote_mode = 0;
	}

	/* 10 bounced writes at once (4 slots per group: the rest wait in order),
	 * then 10 reads back */
	{
		struct nvme_cqe e;

		rfill(RGPA + 0x90000, 10 * 8192, 21);
		for (unsigned i = 0; i < 10; i++) {
			struct nvme_sqe c = {.opc = NVME_CMD_WRITE, .nsid = 1,
					     .prp1 = RGPA + 0x90000 + i * 8192ull,
					     .prp2 = RGPA + 0x90000 + i * 8192ull + 4096,
					     .cdw10 = 1000 + i * 16, .cdw12 = 15};

			push(d, q, &c);
		}
		for (unsigned i = 0; i < 10; i++) {
			assert_true(poll_cqe(d, q, &e, WAIT_MS));
			assert_int_equal(st_of(&e), 0);
		}
		for (unsigned i = 0; i < 10; i++)
			assert_memory_equal(ram + (1000 + i * 16) * 512, g_remote + 0x90000 + i * 8192, 8192);
		memset(g_remote + 0x90000, 0, 10 * 8192);
		for (unsigned i = 0; i < 10; i++) {
			struct nvme_sqe c = {.opc = NVME_CMD_READ, .nsid = 1,
					     .prp1 = RGPA + 0x90000 + i * 8192ull,
					     .prp2 = RGPA + 0x90000 + i * 8192ull + 4096,
					     .cdw10 = 1000 + i * 16, .cdw12 = 15};

			push(d, q, &c);
		}
		for (unsigned i = 0; i < 10; i++) {
			assert_true(poll_cqe(d, q, &e, WAIT_MS));
			assert_int_equal(st_of(&e), 0);
		}
		for (unsigned i = 0; i < 10; i++)
			assert_memory_equal(g_remote + 0x90000 + i * 8192, ram + (1000 + i * 16) * 512, 8192);
	}
	/* hostile: data past the remote region, a PRP list entry outside
	 * everything, a misaligned list entry, a remote list pointing nowhere */
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 8, RGPA + RSIZE - 1024, 0),
			 NVME_SC_DATA_XFER_ERROR);
	list[0] = GPA_HOLE;
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 24, RGPA, GPA + OFF_LIST),
			 NVME_SC_DATA_XFER_ERROR);
	list[0] = RGPA + 0x1004;
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 24, RGPA, GPA + OFF_LIST),
			 NVME_SC_PRP_INVALID_OFFSET);
	memset(g_remote + 0x30000, 0xff, 64);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 24, RGPA, RGPA + 0x30000),
			 NVME_SC_PRP_INVALID_OFFSET);
	/* the link fails the copies: Data Transfer Error, then all is well again */
	g_remote_mode = 1;
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 20, 2, RGPA + 0x8000, 0), NVME_SC_DATA_XFER_ERROR);
	assert_int_equal(rw(d, q, NVME_CMD_WRITE, 1, 20, 2, RGPA + 512, 0), NVME_SC_DATA_XFER_ERROR);
	g_remote_mode = 0;
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 20, 2, RGPA + 0x9000, 0), 0);
	assert_memory_equal(g_remote + 0x9000, ram + 20 * 512, 1024);
	/* the link is gone: copies fail */
	zoc_mem_remote_detach(ep);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 20, 2, RGPA + 0x9000, 0), NVME_SC_DATA_XFER_ERROR);
	zoc_mem_remote_put(ep);
	drv_free(d);
	free(g_remote);
	g_remote = NULL;
}

/* Admin queues at RGPA, their data buffer at RGPA + 0x2000 (2 pages). */
#define R_ASQ (RGPA + 0x0)
#define R_ACQ (RGPA + 0x1000)
#define R_BUF (RGPA + 0x2000)
#define R_SQ(q) (RGPA + 0x10000 + 0x20000ull * (q))
#define R_CQ(q) (R_SQ(q) + 0x10000)

static void enable_remote_admin(struct drv *d)
{
	d->adm = (struct q){.qid = 0, .size = ADM_SIZE, .sq_gpa = R_ASQ, .cq_gpa = R_ACQ,
			    .phase = 1};
	memset(g2h(d, R_ACQ), 0, PAGE);
	bar_wr(d, NVME_REG_AQA, ((ADM_SIZE - 1) << 16) | (ADM_SIZE - 1), 4);
	bar_wr(d, NVME_REG_ASQ, R_ASQ, 8);
	bar_wr(d, NVME_REG_ACQ, R_ACQ, 8);
	bar_wr(d, NVME_REG_CC, CC_OK, 4);
	assert_true(wait_csts(d, NVME_CSTS_RDY | NVME_CSTS_CFS, NVME_CSTS_RDY));
}

/* I/O pair qid with both rings in remote memory. */
static struct q *remote_pair(struct drv *d, uint16_t qid)
{
	struct q *q = &d->io[qid];
	struct nvme_sqe cq = {.opc = NVME_ADM_CREATE_CQ, .prp1 = R_CQ(qid),
			      .cdw10 = qid | ((IOQ_SIZE - 1) << 16), .cdw11 = 3 | ((uint32_t)qid << 16)};
	struct nvme_sqe sq = {.opc = NVME_ADM_CREATE_SQ, .prp1 = R_SQ(qid),
			      .cdw10 = qid | ((IOQ_SIZE - 1) << 16), .cdw11 = 1 | ((uint32_t)qid << 16)};

	memset(g2h(d, R_SQ(qid)), 0, 0x20000);
	assert_int_equal(admin(d, &cq, NULL), 0);
	assert_int_equal(admin(d, &sq, NULL), 0);
	*q = (struct q){.qid = qid, .size = IOQ_SIZE, .sq_gpa = R_SQ(qid), .cq_gpa = R_CQ(qid),
			.phase = 1};
	return q;
}

static void put_sqe(struct drv *d, struct q *q, struct nvme_sqe *cmd)
{
	cmd->cid = ++d->cid;
	memcpy(g2h(d, q->sq_gpa + 64ull * q->tail), cmd, 64);
	q->tail = (q->tail + 1) % q->size;
}

static void test_queues_remote(void **state)
{
	struct drv *d = drv_new();
	struct zoc_mem_remote *ep;
	struct nvme_cqe e;
	struct q *q;
	uint8_t *ram = g_ram_data;
	uint32_t dw0;

	(void)state;
	g_remote = calloc(1, RSIZE);
	assert_non_null(g_remote);
	g_remote_mode = 0;
	assert_int_equal(ns_add(d, "ram0", 1), 0);
	ep = drv_add_remote(d);

	/* admin queues and admin data in memory without an fd */
	enable_remote_admin(d);
	{
		struct nvme_sqe c = {.opc = NVME_ADM_IDENTIFY, .prp1 = R_BUF + 0x800,
				     .prp2 = R_BUF + PAGE, .cdw10 = NVME_CNS_CTRL};

		memset(g2h(d, R_BUF), 0xcc, 2 * PAGE);
		assert_int_equal(admin(d, &c, NULL), 0);
		assert_int_equal(*(uint16_t *)g2h(d, R_BUF + 0x800), 0x5a4f);
		assert_int_equal(((uint8_t *)g2h(d, R_BUF + 0x800))[NVME_IDC_MDTS], 5);
		assert_int_equal(((uint8_t *)g2h(d, R_BUF))[0], 0xcc); /* before PRP1: untouched */
	}
	{
		/* SMART log, 512 bytes, and a log page read past its end (zeros) */
		struct nvme_sqe c = {.opc = NVME_ADM_GET_LOG_PAGE, .nsid = NVME_NSID_ALL,
				     .prp1 = R_BUF, .cdw10 = NVME_LOG_SMART | (127u << 16)};

		memset(g2h(d, R_BUF), 0xcc, 2 * PAGE);
		assert_int_equal(admin(d, &c, NULL), 0);
		assert_int_equal(((uint8_t *)g2h(d, R_BUF))[511], 0);
		assert_int_equal(((uint8_t *)g2h(d, R_BUF))[512], 0xcc);
		c.cdw10 = NVME_LOG_FW_SLOT | (1023u << 16);
		c.prp2 = R_BUF + PAGE;
		memset(g2h(d, R_BUF), 0xcc, 2 * PAGE);
		assert_int_equal(admin(d, &c, NULL), 0);
		assert_int_equal(((uint8_t *)g2h(d, R_BUF))[0], 1);
		assert_int_equal(((uint8_t *)g2h(d, R_BUF))[PAGE - 1], 0);
		/* data pointing nowhere: Data Transfer Error, not a hang */
		c.prp1 = GPA_HOLE;
		assert_int_equal(admin(d, &c, NULL), NVME_SC_DATA_XFER_ERROR);
	}
	assert_int_equal(set_feat(d, NVME_FEAT_NUM_QUEUES, 0x00030003, &dw0), 0);

	/* I/O queues there too; data mapped and remote */
	q = remote_pair(d, 1);
	fill(d, GPA + OFF_DATA, 4096, 1);
	assert_int_equal(rw(d, q, NVME_CMD_WRITE, 1, 0, 8, GPA + OFF_DATA, 0), 0);
	assert_memory_equal(ram, g2h(d, GPA + OFF_DATA), 4096);
	rfill(RGPA + 0xc0000, 1024, 5);
	assert_int_equal(rw(d, q, NVME_CMD_WRITE, 1, 30, 2, RGPA + 0xc0000, 0), 0);
	assert_memory_equal(ram + 30 * 512, g_remote + 0xc0000, 1024);
	assert_true(irq_count(d, 1) > 0);

	/* wrap-around, one at a time: both rings go round three times */
	for (unsigned i = 0; i < 3 * IOQ_SIZE + 5; i++)
		assert_int_equal(rw(d, q, NVME_CMD_READ, 1, i % 64, 1, GPA + OFF_DATA, 0), 0);
	/* a batch across the ring's end with one doorbell, then another */
	for (int round = 0; round < 3; round++) {
		unsigned n = round == 2 ? IOQ_SIZE - 1 : 40;

		for (unsigned i = 0; i < n; i++) {
			struct nvme_sqe c = {.opc = NVME_CMD_READ, .nsid = 1,
					     .prp1 = GPA + OFF_DATA + 4096ull * (i % 16),
					     .cdw10 = i};

			put_sqe(d, q, &c);
		}
		db_write(d, 2u * q->qid, q->tail);
		for (unsigned i = 0; i < n; i++) {
			assert_true(poll_cqe(d, q, &e, WAIT_MS));
			assert_int_equal(st_of(&e), 0);
			assert_int_equal(e.sqid, 1);
		}
		assert_false(poll_cqe(d, q, &e, 20)); /* no completion twice */
	}

	/* doorbells in odd orders: the tail rung twice for the same entries,
	 * the CQ head rung late, an SQ tail out of range (ignored: error event) */
	{
		struct nvme_sqe c = {.opc = NVME_CMD_FLUSH, .nsid = 1};

		put_sqe(d, q, &c);
		db_write(d, 2u * q->qid, q->tail);
		db_write(d, 2u * q->qid, q->tail);
		db_write(d, 2u * q->qid, IOQ_SIZE + 3);
		assert_true(poll_cqe(d, q, &e, WAIT_MS));
		assert_int_equal(e.cid, d->cid);
		db_write(d, 2u * q->qid, q->tail);
		/* a CQ head past what was written: ignored */
		db_write(d, 2u * q->qid + 1, (q->head + 5) % IOQ_SIZE);
		db_write(d, 2u * q->qid + 1, q->head);
		assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 1, GPA + OFF_DATA, 0), 0);
		assert_int_equal(csts(d) & NVME_CSTS_CFS, 0);
	}

	/* a quiesce fails copies with -EAGAIN: retried, nothing lost */
	__atomic_store_n(&g_remote_mode, 3, __ATOMIC_RELEASE);
	{
		struct nvme_sqe c = {.opc = NVME_CMD_READ, .nsid = 1, .prp1 = GPA + OFF_DATA};

		push(d, q, &c);
		usleep(20000);
		__atomic_store_n(&g_remote_mode, 0, __ATOMIC_RELEASE);
		assert_true(poll_cqe(d, q, &e, WAIT_MS));
		assert_int_equal(e.cid, c.cid);
		assert_false(poll_cqe(d, q, &e, 20));
	}

	/* delete SQ with its fetch in flight, then CQ with its write in flight */
	{
		struct nvme_sqe c = {.opc = NVME_CMD_READ, .nsid = 1, .prp1 = GPA + OFF_DATA};
		struct q *q2 = remote_pair(d, 2);
		struct nvme_sqe del = {.opc = NVME_ADM_DELETE_SQ, .cdw10 = 2};

		__atomic_store_n(&g_remote_mode, 2, __ATOMIC_RELEASE);
		push(d, q2, &c);
		assert_true(wait_held(1));
		/* the admin queue's own copies are held too: answer them as they come */
		push(d, &d->adm, &del);
		for (int i = 0; i < 3; i++) {
			usleep(20000);
			assert_true(atomic_load(&g_nheld) >= 1);
		}
		release_held();
		assert_true(poll_cqe(d, &d->adm, &e, WAIT_MS));
		assert_int_equal(e.cid, del.cid);
		assert_int_equal(st_of(&e), 0);
		/* CQ 2: a completion's write held */
		{
			struct nvme_sqe sq = {.opc = NVME_ADM_CREATE_SQ, .prp1 = R_SQ(2),
					      .cdw10 = 2 | ((IOQ_SIZE - 1) << 16),
					      .cdw11 = 1 | (2u << 16)};

			assert_int_equal(admin(d, &sq, NULL), 0);
			q2->tail = 0;
		}
		{
			int calls = atomic_load(&g_remote_calls);

			push(d, q2, &c);
			/* fetch, then the CQ write: hold from the second copy on */
			for (int i = 0; i < 2000 && atomic_load(&g_remote_calls) < calls + 1; i++)
				usleep(500);
			__atomic_store_n(&g_remote_mode, 2, __ATOMIC_RELEASE);
		}
		usleep(50000);
		if (atomic_load(&g_nheld) == 0) {
			/* the write came before the hold: just check its result */
			assert_true(poll_cqe(d, q2, &e, WAIT_MS));
			__atomic_store_n(&g_remote_mode, 0, __ATOMIC_RELEASE);
		}
		release_held();
		assert_int_equal(delete_q(d, NVME_ADM_DELETE_SQ, 2), 0);
		__atomic_store_n(&g_remote_mode, 2, __ATOMIC_RELEASE);
		{
			struct nvme_sqe c2 = {.opc = NVME_CMD_FLUSH, .nsid = 1};

			push(d, q, &c2); /* queue 1's fetch held */
			assert_true(wait_held(1));
			release_held();
			assert_true(poll_cqe(d, q, &e, WAIT_MS));
		}
		assert_int_equal(delete_q(d, NVME_ADM_DELETE_CQ, 2), 0);
		assert_int_equal(csts(d) & NVME_CSTS_CFS, 0);
	}

	/* disable with a fetch in flight: RDY drops only after its answer */
	{
		struct nvme_sqe c = {.opc = NVME_CMD_READ, .nsid = 1, .prp1 = GPA + OFF_DATA};

		__atomic_store_n(&g_remote_mode, 2, __ATOMIC_RELEASE);
		push(d, q, &c);
		assert_true(wait_held(1));
		bar_wr(d, NVME_REG_CC, 0, 4);
		usleep(50000);
		assert_int_equal(csts(d) & NVME_CSTS_RDY, NVME_CSTS_RDY);
		release_held();
		assert_true(wait_csts(d, NVME_CSTS_RDY | NVME_CSTS_CFS, 0));
	}

	/* the client answers a queue copy with an error: controller fatal;
	 * a reset brings it back */
	enable_remote_admin(d);
	assert_int_equal(set_feat(d, NVME_FEAT_NUM_QUEUES, 0x00030003, &dw0), 0);
	q = remote_pair(d, 1);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 1, GPA + OFF_DATA, 0), 0);
	__atomic_store_n(&g_remote_mode, 1, __ATOMIC_RELEASE);
	{
		struct nvme_sqe c = {.opc = NVME_CMD_READ, .nsid = 1, .prp1 = GPA + OFF_DATA};

		push(d, q, &c);
		assert_true(wait_csts(d, NVME_CSTS_CFS, NVME_CSTS_CFS));
	}
	__atomic_store_n(&g_remote_mode, 0, __ATOMIC_RELEASE);
	disable(d);
	enable_remote_admin(d);
	assert_int_equal(identify(d, NVME_CNS_CTRL, 0), 0);

	/* a ring partly outside everything is still refused */
	{
		struct nvme_sqe cq = {.opc = NVME_ADM_CREATE_CQ, .prp1 = R_CQ(3),
				      .cdw10 = 3 | (255u << 16), .cdw11 = 1 | (3u << 16)};
		struct nvme_sqe sq = {.opc = NVME_ADM_CREATE_SQ, .prp1 = RGPA + RSIZE - PAGE,
				      .cdw10 = 3 | (255u << 16), .cdw11 = 1 | (3u << 16)};

		assert_int_equal(admin(d, &cq, NULL), 0);
		assert_int_equal(admin(d, &sq, NULL), NVME_SC_INVALID_FIELD);
		sq.prp1 = GPA + MEM_SIZE - PAGE; /* half mapped, half nothing */
		assert_int_equal(admin(d, &sq, NULL), NVME_SC_INVALID_FIELD);
	}
	/* the link goes away with the queues in use: fatal, no hang */
	zoc_mem_remote_detach(ep);
	{
		struct nvme_sqe c = {.opc = NVME_ADM_KEEP_ALIVE};

		push(d, &d->adm, &c);
		assert_true(wait_csts(d, NVME_CSTS_CFS, NVME_CSTS_CFS));
	}
	zoc_mem_remote_put(ep);
	drv_free(d);
	free(g_remote);
	g_remote = NULL;
}

/* Admin queues in shared memory, I/O queues without an fd: deleting a queue
 * waits for its copy in flight; nothing is posted twice or after. */
static void test_queues_remote_delete(void **state)
{
	struct drv *d = drv_new();
	struct zoc_mem_remote *ep;
	struct nvme_cqe e;
	struct q *q;
	uint32_t dw0;

	(void)state;
	g_remote = calloc(1, RSIZE);
	assert_non_null(g_remote);
	g_remote_mode = 0;
	assert_int_equal(ns_add(d, "ram0", 1), 0);
	ep = drv_add_remote(d);
	enable(d);
	assert_int_equal(set_feat(d, NVME_FEAT_NUM_QUEUES, 0x00030003, &dw0), 0);
	q = remote_pair(d, 1);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 1, GPA + OFF_DATA, 0), 0);

	/* Delete SQ while its fetch is held: no completion until the answer */
	{
		struct nvme_sqe c = {.opc = NVME_CMD_READ, .nsid = 1, .prp1 = GPA + OFF_DATA};
		struct nvme_sqe del = {.opc = NVME_ADM_DELETE_SQ, .cdw10 = 1};

		__atomic_store_n(&g_remote_mode, 2, __ATOMIC_RELEASE);
		push(d, q, &c);
		assert_true(wait_held(1));
		push(d, &d->adm, &del);
		assert_false(poll_cqe(d, &d->adm, &e, 100));
		release_held();
		assert_true(poll_cqe(d, &d->adm, &e, WAIT_MS));
		assert_int_equal(e.cid, del.cid);
		assert_int_equal(st_of(&e), 0);
		/* the fetched command of a deleted queue never completes */
		assert_false(poll_cqe(d, q, &e, 50));
	}
	/* Delete CQ while a completion's write is held */
	{
		struct nvme_sqe sq = {.opc = NVME_ADM_CREATE_SQ, .prp1 = R_SQ(1),
				      .cdw10 = 1 | ((IOQ_SIZE - 1) << 16), .cdw11 = 1 | (1u << 16)};
		struct nvme_sqe c = {.opc = NVME_CMD_FLUSH, .nsid = 1};
		struct nvme_sqe del = {.opc = NVME_ADM_DELETE_CQ, .cdw10 = 1};
		int k;

		memset(g2h(d, R_SQ(1)), 0, 0x10000);
		assert_int_equal(admin(d, &sq, NULL), 0);
		q->tail = 0;
		/* hold every copy: the fetch (1), answered; then the CQ write (2) */
		__atomic_store_n(&g_remote_mode, 2, __ATOMIC_RELEASE);
		push(d, q, &c);
		assert_true(wait_held(1));
		on_reactor(release_held_fn, NULL); /* mode stays 2 */
		assert_true(wait_held(1));
		k = atomic_load(&g_nheld);
		assert_int_equal(k, 1);
		assert_true(g_held[0]->to_guest); /* the CQ entry's write */
		assert_int_equal(delete_q(d, NVME_ADM_DELETE_SQ, 1), 0);
		push(d, &d->adm, &del);
		assert_false(poll_cqe(d, &d->adm, &e, 100));
		release_held();
		assert_true(poll_cqe(d, &d->adm, &e, WAIT_MS));
		assert_int_equal(e.cid, del.cid);
		assert_int_equal(st_of(&e), 0);
		/* the entry was written once, before the queue went */
		assert_true(poll_cqe(d, q, &e, 10));
		assert_int_equal(e.cid, c.cid);
		assert_false(poll_cqe(d, q, &e, 20));
	}
	/* a new pair on the same ids works */
	q = remote_pair(d, 1);
	assert_int_equal(rw(d, q, NVME_CMD_READ, 1, 0, 1, GPA + OFF_DATA, 0), 0);
	/* reset (disable) with a CQ write held */
	{
		struct nvme_sqe c = {.opc = NVME_CMD_FLUSH, .nsid = 1};

		__atomic_store_n(&g_remote_mode, 2, __ATOMIC_RELEASE);
		push(d, q, &c);
		assert_true(wait_held(1));
		on_reactor(release_held_fn, NULL);
		assert_true(wait_held(1));
		bar_wr(d, NVME_REG_CC, 0, 4);
		usleep(50000);
		assert_int_equal(csts(d) & NVME_CSTS_RDY, NVME_CSTS_RDY);
		release_held();
		assert_true(wait_csts(d, NVME_CSTS_RDY | NVME_CSTS_CFS, 0));
	}
	/* a quiesce (DMA_MAP/UNMAP) with a copy held: waits; the link fails
	 * copies with -EAGAIN there in real life: the queue retries after */
	enable(d);
	assert_int_equal(set_feat(d, NVME_FEAT_NUM_QUEUES, 0x00030003, &dw0), 0);
	q = remote_pair(d, 1);
	{
		struct ctl cl = {.d = d};
		struct nvme_sqe c = {.opc = NVME_CMD_READ, .nsid = 1, .prp1 = GPA + OFF_DATA};

		sem_init(&cl.sem, 0, 0);
		__atomic_store_n(&g_remote_mode, 2, __ATOMIC_RELEASE);
		push(d, q, &c);
		assert_true(wait_held(1));
		on_reactor(quiesce_fn, &cl);
		assert_int_not_equal(zt_sem_wait_ms(&cl.sem, 100), 0);
		/* fail it like the link does */
		__atomic_store_n(&g_remote_mode, 3, __ATOMIC_RELEASE);
		on_reactor(release_held_fn, NULL);
		ctl_wait(&cl);
		__atomic_store_n(&g_remote_mode, 0, __ATOMIC_RELEASE);
		on_reactor(resume_fn, &cl);
		sem_destroy(&cl.sem);
		assert_true(poll_cqe(d, q, &e, WAIT_MS));
		assert_int_equal(e.cid, c.cid);
		assert_int_equal(st_of(&e), 0);
		assert_false(poll_cqe(d, q, &e, 20));
		assert_int_equal(csts(d) & NVME_CSTS_CFS, 0);
	}
	zoc_mem_remote_detach(ep);
	zoc_mem_remote_put(ep);
	drv_free(d);
	free(g_remote);
	g_remote = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_args),
		cmocka_unit_test(test_registers),
		cmocka_unit_test(test_identify),
		cmocka_unit_test(test_queues),
		cmocka_unit_test(test_features),
		cmocka_unit_test(test_io_prp),
		cmocka_unit_test(test_io_sgl),
		cmocka_unit_test(test_io_remote),
		cmocka_unit_test(test_queues_remote),
		cmocka_unit_test(test_queues_remote_delete),
		cmocka_unit_test(test_logs_and_events),
		cmocka_unit_test(test_deleted_queue),
		cmocka_unit_test(test_interrupts),
		cmocka_unit_test(test_intx),
		cmocka_unit_test(test_cq_full),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_quiesce),
		cmocka_unit_test(test_parallel_queues),
		cmocka_unit_test(test_mmap_doorbells),
		cmocka_unit_test(test_bus_master),
		cmocka_unit_test(test_queue_enomem),
		cmocka_unit_test(test_dbbuf),
	};

	const struct CMUnitTest int_tests[] = {
		cmocka_unit_test(test_interrupt_mode),
		cmocka_unit_test(test_parallel_queues),
		cmocka_unit_test(test_bus_master),
		cmocka_unit_test(test_dbbuf_interrupt_mode),
	};
	int rc = cmocka_run_group_tests(tests, setup, teardown);

	rc |= cmocka_run_group_tests_name("interrupt mode", int_tests, setup_interrupt, teardown);
	return rc;
}
