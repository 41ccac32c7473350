/* SPDX-License-Identifier: MIT */
/*
 * test_virtio_pci.c - the virtio-pci modern transport (src/virtio/virtio_pci.c)
 * over the virtio-blk model, driven the way Linux's virtio_pci driver drives
 * a PCI function: config space walks and BAR accesses through
 * zoc_pci_cfg_access() / zoc_pci_bar_access() on reactor 0 (where the
 * vfio-user link makes them), the DMA space installed with the link's
 * quiesce / set_dma / resume, MSI-X vectors and INTx on eventfds, and rings
 * played by vq_driver.c in malloc'd "guest memory".
 *
 * Back ends: the null bdev, and a "gate" bdev whose completions the test
 * holds back (a reset or a quiesce while requests are in flight).
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
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "blk/bdev.h"
#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"
#include "link/dma.h"
#include "pci/pci.h"
#include "virtio/virtio.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtio_dev.h"
#include "virtio/virtio_pci.h"
#include "vq_driver.h"
#include "harness.h"

#define WAIT_MS 30000

#define GPA_BASE 0x200000000ull
#define ARENA_SIZE (4u << 20)
#define QREGION 0x40000 /* per queue: rings, indirect tables */
#define Q_DESC 0x0
#define Q_DRIVER 0x10000
#define Q_DEVICE 0x20000
#define Q_IND 0x30000
#define IND_SLOT 256
#define OFF_HDR 0x100000
#define OFF_STATUS 0x110000
#define OFF_DATA 0x200000
#define QSIZE 128
#define MAX_SEGS 8
#define NQ 2
#define NVEC (NQ + 1)
#define GATE_BLOCKS 2048

#define PCI_COMMAND 0x04
#define PCI_CAP_PTR 0x34
#define PCI_CAP_ID_MSIX 0x11
#define PCI_CAP_ID_VNDR 0x09

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ */
/* reactors                                                            */

static pthread_t g_reactor_thread;

/* Runs fn(arg) on reactor 0 and waits for it. */
static void on_reactor(void (*fn)(void *), void *arg)
{
	zt_on_reactor(0, fn, arg, WAIT_MS);
}

/* ---- the gate bdev: completions held back at will ----------------- */

struct gate_ch {
	struct zoc_bdev_ch hdr; /* first */
	struct zoc_poller *poller;
	struct zoc_bdev_io *head, **tailp;
	bool in_poll, dead;
};

static struct zoc_bdev g_gate;
static atomic_bool g_gate_hold;
static atomic_int g_gate_queued;

static void gate_free(struct gate_ch *ch)
{
	zoc_poller_unregister(ch->poller);
	free(ch);
}

static int gate_poll(void *arg)
{
	struct gate_ch *ch = arg;
	struct zoc_bdev_io *io = ch->head;
	int n = 0;

	if (!io || atomic_load(&g_gate_hold))
		return 0;
	ch->head = NULL;
	ch->tailp = &ch->head;
	ch->in_poll = true;
	while (io) {
		struct zoc_bdev_io *next = io->next_;

		atomic_fetch_sub(&g_gate_queued, 1);
		io->next_ = NULL;
		io->cb(io, 0);
		io = next;
		n++;
	}
	ch->in_poll = false;
	if (ch->dead && !ch->head)
		gate_free(ch);
	return n;
}

static int gate_arm(void *arg)
{
	struct gate_ch *ch = arg;

	return ch->head && !atomic_load(&g_gate_hold);
}

static const struct zoc_poller_ops gate_poller_ops = {.poll = gate_poll, .arm = gate_arm};

static struct zoc_bdev_ch *gate_channel_create(struct zoc_bdev *bdev, struct zoc_reactor *r)
{
	struct gate_ch *ch = calloc(1, sizeof(*ch));

	(void)bdev;
	if (!ch)
		return NULL;
	ch->tailp = &ch->head;
	ch->poller = zoc_poller_register(r, &gate_poller_ops, ch, 0, "gate");
	if (!ch->poller) {
		free(ch);
		return NULL;
	}
	return &ch->hdr;
}

static void gate_channel_destroy(struct zoc_bdev_ch *hdr)
{
	struct gate_ch *ch = (struct gate_ch *)hdr;

	ch->dead = true;
	if (!ch->in_poll && !ch->head)
		gate_free(ch);
}

static int gate_submit(struct zoc_bdev_ch *hdr, struct zoc_bdev_io *io)
{
	struct gate_ch *ch = (struct gate_ch *)hdr;

	io->next_ = NULL;
	*ch->tailp = io;
	ch->tailp = &io->next_;
	atomic_fetch_add(&g_gate_queued, 1);
	return 0;
}

static const struct zoc_bdev_ops gate_ops = {
	.type = "gate",
	.channel_create = gate_channel_create,
	.channel_destroy = gate_channel_destroy,
	.submit = gate_submit,
};

static void create_bdevs_fn(void *arg)
{
	int *rc = arg;

	rc[0] = zoc_bdev_null_create("null", 64, 512);
	snprintf(g_gate.name, sizeof(g_gate.name), "gate");
	g_gate.block_size = 512;
	g_gate.num_blocks = GATE_BLOCKS;
	g_gate.max_iov = 16;
	g_gate.ops = &gate_ops;
	rc[1] = zoc_bdev_register(&g_gate);
}

static int start_reactors(unsigned ncores, bool interrupt_mode)
{
	static const unsigned cores[2] = {0, 1};
	struct zoc_reactor_opts o = {
		.cores = cores, .num_cores = ncores, .interrupt_mode = interrupt_mode,
		.pin = false};
	int rc[2] = {-1, -1};

	zoc_log_set_level(getenv("ZOC_TEST_LOG") ? ZOC_LOG_DEBUG : ZOC_LOG_ERR);
	if (zoc_reactors_init(&o))
		return -1;
	if (pthread_create(&g_reactor_thread, NULL, zt_reactor_main, NULL)) {
		zoc_reactors_fini();
		return -1;
	}
	atomic_store(&g_gate_hold, false);
	on_reactor(create_bdevs_fn, rc);
	return rc[0] || rc[1] ? -1 : 0;
}

static int setup_polling(void **state)
{
	(void)state;
	return start_reactors(2, false);
}

static int setup_interrupt(void **state)
{
	(void)state;
	return start_reactors(2, true);
}

static void delete_bdevs_fn(void *arg)
{
	(void)arg;
	zoc_bdev_delete_all();
}

static int teardown_reactors(void **state)
{
	bool clean;

	(void)state;
	on_reactor(delete_bdevs_fn, NULL);
	clean = zoc_bdev_next(NULL) == NULL;
	zoc_reactors_stop();
	pthread_join(g_reactor_thread, NULL);
	zoc_reactors_fini();
	if (!clean)
		print_error("bdevs left behind (claimed by a device not destroyed?)\n");
	return clean ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* the function: accesses as the link makes them, on reactor 0         */

struct acc {
	struct zoc_pci_func *f;
	bool cfg;
	unsigned bar;
	uint64_t off;
	uint8_t buf[8];
	uint32_t len;
	bool wr;
	int rc;
};

static void acc_fn(void *arg)
{
	struct acc *a = arg;

	if (a->cfg)
		a->rc = zoc_pci_cfg_access(a->f, (uint32_t)a->off, a->buf, a->len, a->wr);
	else
		a->rc = zoc_pci_bar_access(a->f, a->bar, a->off, a->buf, a->len, a->wr);
}

static int raw_access(struct zoc_pci_func *f, bool cfg, unsigned bar, uint64_t off, void *buf,
		      uint32_t len, bool wr)
{
	struct acc a = {.f = f, .cfg = cfg, .bar = bar, .off = off, .len = len, .wr = wr};

	assert_true(len <= 8);
	if (wr)
		memcpy(a.buf, buf, len);
	on_reactor(acc_fn, &a);
	if (!wr)
		memcpy(buf, a.buf, len);
	return a.rc;
}

static uint64_t rd(struct zoc_pci_func *f, unsigned bar, uint64_t off, uint32_t len)
{
	uint64_t v = 0;

	assert_int_equal(raw_access(f, false, bar, off, &v, len, false), 0);
	return v;
}

static void wr(struct zoc_pci_func *f, unsigned bar, uint64_t off, uint64_t v, uint32_t len)
{
	assert_int_equal(raw_access(f, false, bar, off, &v, len, true), 0);
}

static uint32_t cfg_rd(struct zoc_pci_func *f, uint32_t off, uint32_t len)
{
	uint32_t v = 0;

	assert_int_equal(raw_access(f, true, 0, off, &v, len, false), 0);
	return v;
}

static void cfg_wr(struct zoc_pci_func *f, uint32_t off, uint32_t v, uint32_t len)
{
	assert_int_equal(raw_access(f, true, 0, off, &v, len, true), 0);
}

/* ------------------------------------------------------------------ */
/* the device and the driver                                           */

struct vcap {
	bool found;
	uint8_t pos, bar;
	uint32_t off, len;
};

struct t {
	struct zoc_vblk *vb;
	struct zoc_virtio_pci *vp;
	struct zoc_pci_func *f;
	struct vqd_mem g;
	uint8_t *arena;
	/* what the capability walk found */
	struct vcap common, notify, isr, device, pcicfg;
	uint32_t mult;
	uint8_t msix_pos;
	/* interrupts: our ends of the eventfds the function signals */
	int irq[NVEC];
	int intx;
	bool msix;
	/* rings */
	struct vqd q[NQ];
	bool qsetup[NQ];
	bool packed;
	uint64_t features;
};

#define CM(t, field) ((t)->common.off + VIRTIO_PCI_COMMON_##field)

static uint64_t crd(struct t *t, uint32_t reg, uint32_t len)
{
	return rd(t->f, t->common.bar, t->common.off + reg, len);
}

static void cwr(struct t *t, uint32_t reg, uint64_t v, uint32_t len)
{
	wr(t->f, t->common.bar, t->common.off + reg, v, len);
}

static int crd_rc(struct t *t, uint32_t reg, uint32_t len)
{
	uint64_t v;

	return raw_access(t->f, false, t->common.bar, t->common.off + reg, &v, len, false);
}

static int cwr_rc(struct t *t, uint32_t reg, uint64_t v, uint32_t len)
{
	return raw_access(t->f, false, t->common.bar, t->common.off + reg, &v, len, true);
}

static uint8_t status(struct t *t)
{
	return (uint8_t)crd(t, VIRTIO_PCI_COMMON_STATUS, 1);
}

struct mk {
	const char *bdev;
	uint16_t nq;
	struct zoc_vblk *vb;
	struct zoc_virtio_pci *vp;
	int err;
};

static void mk_fn(void *arg)
{
	struct mk *m = arg;

	errno = 0;
	m->vb = zoc_vblk_create("vpci-test", zoc_bdev_find(m->bdev), m->nq);
	if (!m->vb) {
		m->err = errno;
		return;
	}
	m->vp = zoc_virtio_pci_create(zoc_vblk_to_virtio(m->vb));
	m->err = errno;
}

/* The link's part: the DMA space is installed while the function is
 * quiesced. */
struct dma_swap {
	struct zoc_pci_func *f;
	struct zoc_mem *mem;
	sem_t quiet;
	bool quiesced;
};

static void quiet_done(void *arg)
{
	struct dma_swap *s = arg;

	s->quiesced = true;
	sem_post(&s->quiet);
}

static void quiesce_fn(void *arg)
{
	struct dma_swap *s = arg;

	zoc_pci_func_desc(s->f)->ops->quiesce(s->f, quiet_done, s);
}

static void swap_resume_fn(void *arg)
{
	struct dma_swap *s = arg;
	const struct zoc_pci_ops *ops = zoc_pci_func_desc(s->f)->ops;

	ops->set_dma(s->f, s->mem);
	ops->resume(s->f);
}

/* quiesce -> set_dma(mem) -> resume, as vfio-user's DMA_MAP does. */
static void link_set_dma(struct zoc_pci_func *f, struct zoc_mem *mem)
{
	struct dma_swap s = {.f = f, .mem = mem};

	sem_init(&s.quiet, 0, 0);
	on_reactor(quiesce_fn, &s);
	assert_int_equal(zt_sem_wait_ms(&s.quiet, WAIT_MS), 0);
	assert_true(s.quiesced);
	on_reactor(swap_resume_fn, &s);
	sem_destroy(&s.quiet);
}

struct irqs {
	struct zoc_pci_func *f;
	enum zoc_pci_irq_type type;
	int fds[NVEC];
	uint32_t n;
	int rc;
};

static void irqs_fn(void *arg)
{
	struct irqs *s = arg;

	s->rc = zoc_pci_irq_set_fds(s->f, s->type, 0, s->n, s->n ? s->fds : NULL);
}

static struct t *t_new(const char *bdev)
{
	struct t *t = calloc(1, sizeof(*t));
	struct mk m = {.bdev = bdev, .nq = NQ};
	struct irqs s = {.type = ZOC_PCI_IRQ_MSIX, .n = NVEC};
	struct irqs si = {.type = ZOC_PCI_IRQ_INTX, .n = 1};

	assert_non_null(t);
	on_reactor(mk_fn, &m);
	assert_non_null(m.vb);
	assert_non_null(m.vp);
	t->vb = m.vb;
	t->vp = m.vp;
	t->f = zoc_virtio_pci_func(m.vp);
	vqd_mem_init(&t->g);
	t->arena = vqd_mem_alloc(&t->g, GPA_BASE, ARENA_SIZE);
	vqd_mem_map(&t->g, GPA_BASE, ARENA_SIZE, 0, true);
	link_set_dma(t->f, t->g.mem);
	/* the client's eventfds (the function owns the dups) */
	s.f = si.f = t->f;
	for (int i = 0; i < NVEC; i++) {
		t->irq[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		assert_true(t->irq[i] >= 0);
		s.fds[i] = dup(t->irq[i]);
	}
	on_reactor(irqs_fn, &s);
	assert_int_equal(s.rc, 0);
	t->intx = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	si.fds[0] = dup(t->intx);
	on_reactor(irqs_fn, &si);
	assert_int_equal(si.rc, 0);
	return t;
}

struct reset_wait {
	struct zoc_pci_func *f;
	sem_t done;
};

static void reset_done(void *arg)
{
	sem_post(&((struct reset_wait *)arg)->done);
}

static void func_reset_fn(void *arg)
{
	struct reset_wait *w = arg;

	zoc_pci_func_reset(w->f, reset_done, w);
}

/* What the link does for DEVICE_RESET or a client that went away. */
static void link_reset(struct zoc_pci_func *f)
{
	struct reset_wait w = {.f = f};

	sem_init(&w.done, 0, 0);
	on_reactor(func_reset_fn, &w);
	assert_int_equal(zt_sem_wait_ms(&w.done, WAIT_MS), 0);
	sem_destroy(&w.done);
}

static void rm_fn(void *arg)
{
	struct t *t = arg;

	zoc_virtio_pci_destroy(t->vp);
	zoc_vblk_destroy(t->vb);
}

static void t_free(struct t *t)
{
	link_reset(t->f);
	link_set_dma(t->f, NULL);
	on_reactor(rm_fn, t);
	for (int i = 0; i < NQ; i++)
		if (t->qsetup[i])
			vqd_fini(&t->q[i]);
	vqd_mem_fini(&t->g);
	for (int i = 0; i < NVEC; i++)
		close(t->irq[i]);
	close(t->intx);
	free(t);
}

/* Linux's vp_modern_probe(): IDs, then the vendor capabilities. */
static void probe(struct t *t)
{
	uint8_t pos;
	int guard = 0;

	assert_int_equal(cfg_rd(t->f, 0x00, 2), 0x1af4);
	assert_int_equal(cfg_rd(t->f, 0x02, 2), 0x1042);
	assert_int_equal(cfg_rd(t->f, 0x08, 1), 1); /* revision */
	assert_int_equal(cfg_rd(t->f, 0x2c, 2), 0x1af4);
	assert_true(cfg_rd(t->f, 0x2e, 2) >= 0x40);
	assert_int_equal(cfg_rd(t->f, 0x0b, 1), 0x01); /* mass storage */
	assert_true(cfg_rd(t->f, 0x06, 2) & 0x10);     /* capability list */
	memset(&t->common, 0, sizeof(struct vcap) * 5);
	for (pos = (uint8_t)cfg_rd(t->f, PCI_CAP_PTR, 1); pos; pos = (uint8_t)cfg_rd(t->f, pos + 1, 1)) {
		uint8_t id = (uint8_t)cfg_rd(t->f, pos, 1);
		struct vcap *c = NULL;

		assert_true(++guard < 48);
		assert_true(pos >= 0x40 && !(pos & 3));
		if (id == PCI_CAP_ID_MSIX)
			t->msix_pos = pos;
		if (id != PCI_CAP_ID_VNDR)
			continue;
		switch (cfg_rd(t->f, pos + 3, 1)) {
		case VIRTIO_PCI_CAP_COMMON_CFG:
			c = &t->common;
			break;
		case VIRTIO_PCI_CAP_NOTIFY_CFG:
			c = &t->notify;
			t->mult = cfg_rd(t->f, pos + 16, 4);
			break;
		case VIRTIO_PCI_CAP_ISR_CFG:
			c = &t->isr;
			break;
		case VIRTIO_PCI_CAP_DEVICE_CFG:
			c = &t->device;
			break;
		case VIRTIO_PCI_CAP_PCI_CFG:
			c = &t->pcicfg;
			break;
		default:
			fail_msg("unknown virtio capability type");
		}
		assert_false(c->found); /* first of each type */
		c->found = true;
		c->pos = pos;
		c->bar = (uint8_t)cfg_rd(t->f, pos + 4, 1);
		c->off = cfg_rd(t->f, pos + 8, 4);
		c->len = cfg_rd(t->f, pos + 12, 4);
		assert_true(cfg_rd(t->f, pos + 2, 1) >= 16);
	}
	assert_true(t->common.found && t->notify.found && t->isr.found && t->device.found &&
		    t->pcicfg.found);
	assert_true(t->msix_pos);
	assert_true(t->common.len >= 0x38);
	assert_true(t->isr.len >= 1);
	assert_int_equal(t->device.len, sizeof(struct virtio_blk_config));
	assert_true(t->mult >= 2);
	/* the structures lie inside their BAR */
	assert_true(t->common.off + t->common.len <= zoc_pci_bar_size(t->f, t->common.bar));
	assert_true(t->notify.off + t->notify.len <= zoc_pci_bar_size(t->f, t->notify.bar));
	/* memory space and bus mastering, as pci_enable_device + set_master */
	cfg_wr(t->f, PCI_COMMAND, 0x6, 2);
}

static void wait_status(struct t *t, uint8_t want)
{
	uint64_t end = now_ms() + WAIT_MS;

	while (status(t) != want) {
		if (now_ms() > end)
			fail_msg("device_status stays 0x%x (want 0x%x)", status(t), want);
		usleep(100);
	}
}

static void dev_reset(struct t *t)
{
	cwr(t, VIRTIO_PCI_COMMON_STATUS, 0, 1);
	wait_status(t, 0);
}

/* MSI-X on, every vector unmasked (QEMU's vfio keeps the table itself and
 * the link unmasks vectors that get an eventfd; the same end state). */
static void msix_on(struct t *t)
{
	const struct zoc_pci_desc *d = zoc_pci_func_desc(t->f);

	cfg_wr(t->f, t->msix_pos + 2, 0x8000, 2);
	for (unsigned v = 0; v < NVEC; v++)
		wr(t->f, d->msix_bar, d->msix_table_offset + 16 * v + 12, 0, 4);
	t->msix = true;
}

static uint64_t offered(struct t *t)
{
	uint64_t f;

	cwr(t, VIRTIO_PCI_COMMON_DFSELECT, 0, 4);
	f = crd(t, VIRTIO_PCI_COMMON_DF, 4);
	cwr(t, VIRTIO_PCI_COMMON_DFSELECT, 1, 4);
	f |= crd(t, VIRTIO_PCI_COMMON_DF, 4) << 32;
	return f;
}

static void write_features(struct t *t, uint64_t f)
{
	cwr(t, VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	cwr(t, VIRTIO_PCI_COMMON_GF, (uint32_t)f, 4);
	cwr(t, VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
	cwr(t, VIRTIO_PCI_COMMON_GF, f >> 32, 4);
}

/* reset, ACKNOWLEDGE | DRIVER, features, FEATURES_OK. Returns true if the
 * device accepted the features. */
static bool negotiate(struct t *t, uint64_t want)
{
	uint64_t off;

	dev_reset(t);
	cwr(t, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE, 1);
	cwr(t, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	off = offered(t);
	assert_true(off & ZOC_BIT(VIRTIO_F_VERSION_1));
	write_features(t, want);
	cwr(t, VIRTIO_PCI_COMMON_STATUS,
	    VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK, 1);
	t->features = want;
	t->packed = want & ZOC_BIT(VIRTIO_F_RING_PACKED);
	return status(t) & VIRTIO_STATUS_FEATURES_OK;
}

static uint64_t qbase(int qi)
{
	return GPA_BASE + (uint64_t)qi * QREGION;
}

/* Lays a fresh ring out for queue qi and programs it like setup_vq(). */
static void setup_queue(struct t *t, int qi, uint16_t size, uint16_t vector)
{
	struct vqd_layout lay = {
		.size = size,
		.packed = t->packed,
		.desc = qbase(qi) + Q_DESC,
		.driver = qbase(qi) + Q_DRIVER,
		.device = qbase(qi) + Q_DEVICE,
		.ind = qbase(qi) + Q_IND,
		.ind_slot = IND_SLOT,
		.max_segs = MAX_SEGS,
	};

	if (t->qsetup[qi])
		vqd_fini(&t->q[qi]);
	memset(t->arena + (uint64_t)qi * QREGION, 0, QREGION);
	vqd_init(&t->q[qi], &t->g, &lay);
	t->qsetup[qi] = true;
	cwr(t, VIRTIO_PCI_COMMON_Q_SELECT, (uint16_t)qi, 2);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_SIZE, 2), ZOC_VBLK_QUEUE_SIZE_MAX);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	cwr(t, VIRTIO_PCI_COMMON_Q_SIZE, size, 2);
	cwr(t, VIRTIO_PCI_COMMON_Q_DESCLO, (uint32_t)lay.desc, 4);
	cwr(t, VIRTIO_PCI_COMMON_Q_DESCHI, lay.desc >> 32, 4);
	cwr(t, VIRTIO_PCI_COMMON_Q_AVAILLO, (uint32_t)lay.driver, 4);
	cwr(t, VIRTIO_PCI_COMMON_Q_AVAILHI, lay.driver >> 32, 4);
	cwr(t, VIRTIO_PCI_COMMON_Q_USEDLO, (uint32_t)lay.device, 4);
	cwr(t, VIRTIO_PCI_COMMON_Q_USEDHI, lay.device >> 32, 4);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_DESCLO, 8), lay.desc);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_USEDHI, 4), lay.device >> 32);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_NOFF, 2), qi);
	cwr(t, VIRTIO_PCI_COMMON_Q_MSIX, vector, 2);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_MSIX, 2), vector);
}

static void enable_queue(struct t *t, int qi)
{
	cwr(t, VIRTIO_PCI_COMMON_Q_SELECT, (uint16_t)qi, 2);
	cwr(t, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
}

static void driver_ok(struct t *t)
{
	cwr(t, VIRTIO_PCI_COMMON_STATUS,
	    VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
		    VIRTIO_STATUS_DRIVER_OK,
	    1);
}

#define STATUS_ALL                                                                   \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK | \
	 VIRTIO_STATUS_DRIVER_OK)

static const uint64_t FEAT_BASE = ZOC_BIT(VIRTIO_F_VERSION_1) | ZOC_BIT(VIRTIO_BLK_F_SEG_MAX) |
				  ZOC_BIT(VIRTIO_BLK_F_BLK_SIZE) | ZOC_BIT(VIRTIO_BLK_F_MQ);

/* The whole bring-up with MSI-X: config vector 0, queue i on vector i + 1. */
static void bring_up(struct t *t, uint64_t features)
{
	probe(t);
	msix_on(t);
	assert_true(negotiate(t, features));
	cwr(t, VIRTIO_PCI_COMMON_MSIX, 0, 2);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_MSIX, 2), 0);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_NUMQ, 2), NQ);
	for (int i = 0; i < NQ; i++) {
		setup_queue(t, i, QSIZE, (uint16_t)(i + 1));
		enable_queue(t, i);
	}
	driver_ok(t);
	assert_int_equal(status(t), STATUS_ALL);
}

static void kick(struct t *t, int qi)
{
	wr(t->f, t->notify.bar, t->notify.off + (uint64_t)qi * t->mult, (uint16_t)qi, 2);
}

/* Waits up to ms for the eventfd; returns its counter (0: nothing). */
static uint64_t wait_fd(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	uint64_t v = 0;

	if (poll(&p, 1, ms) <= 0)
		return 0;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

static void drain_fd(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) == sizeof(v))
		;
}

static uint64_t hdr_gpa(int qi, unsigned slot)
{
	return GPA_BASE + OFF_HDR + (uint64_t)qi * 0x8000 + slot * 32ull;
}

static uint64_t st_gpa(int qi, unsigned slot)
{
	return GPA_BASE + OFF_STATUS + (uint64_t)qi * 0x8000 + slot * 32ull;
}

static uint64_t data_gpa(int qi, unsigned slot)
{
	return GPA_BASE + OFF_DATA + (uint64_t)qi * 0x80000 + slot * 4096ull;
}

static void *g2h(struct t *t, uint64_t gpa)
{
	return vqd_mem_ptr(&t->g, gpa);
}

/* Makes a request available on qi (slot: its header/status/data slot),
 * returns its id. */
static int submit(struct t *t, int qi, unsigned slot, uint32_t type, uint64_t sector,
		  uint32_t dlen)
{
	struct virtio_blk_outhdr h = {.type = type, .sector = sector};
	struct vqd_seg s[3];
	int n = 0, id;

	memcpy(g2h(t, hdr_gpa(qi, slot)), &h, sizeof(h));
	*(uint8_t *)g2h(t, st_gpa(qi, slot)) = 0xee;
	s[n++] = (struct vqd_seg){hdr_gpa(qi, slot), 16, false};
	if (dlen)
		s[n++] = (struct vqd_seg){data_gpa(qi, slot), dlen, type != VIRTIO_BLK_T_OUT};
	s[n++] = (struct vqd_seg){st_gpa(qi, slot), 1, true};
	id = vqd_add(&t->q[qi], s, n, false);
	assert_true(id >= 0);
	return id;
}

static void wait_used(struct t *t, int qi, uint16_t *id, uint32_t *len)
{
	uint64_t end = now_ms() + WAIT_MS;

	while (!vqd_get_used(&t->q[qi], id, len)) {
		if (now_ms() > end)
			fail_msg("queue %d: no completion within %d ms", qi, WAIT_MS);
		usleep(20);
	}
}

/* One request, start to finish: returns the status byte. */
static uint8_t req(struct t *t, int qi, uint32_t type, uint64_t sector, uint32_t dlen)
{
	uint16_t id;
	uint32_t len;
	int want = submit(t, qi, 0, type, sector, dlen);

	kick(t, qi);
	wait_used(t, qi, &id, &len);
	assert_int_equal(id, want);
	return *(uint8_t *)g2h(t, st_gpa(qi, 0));
}

/* A GET_ID round trip: data the device wrote into guest memory. */
static void get_id_ok(struct t *t, int qi)
{
	char *id = g2h(t, data_gpa(qi, 0));

	memset(id, 0, VIRTIO_BLK_ID_BYTES);
	assert_int_equal(req(t, qi, VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES),
			 VIRTIO_BLK_S_OK);
	assert_memory_equal(id, "vpci-test", 9);
}

static bool q_running(struct t *t, int qi);

/* ------------------------------------------------------------------ */
/* tests                                                               */

static void test_probe_layout(void **state)
{
	struct t *t = t_new("null");
	struct virtio_blk_config bc;
	uint64_t f;

	(void)state;
	probe(t);
	/* device config through BAR0 */
	for (uint32_t i = 0; i < sizeof(bc); i += 4) {
		uint32_t v = (uint32_t)rd(t->f, t->device.bar, t->device.off + i, 4);

		memcpy((uint8_t *)&bc + i, &v, ZOC_MIN(4u, (uint32_t)sizeof(bc) - i));
	}
	assert_int_equal(bc.capacity, 64ull << 11);
	assert_int_equal(bc.blk_size, 512);
	assert_int_equal(bc.num_queues, NQ);
	/* 8-byte read of capacity, past-the-end reads 0 */
	assert_int_equal(rd(t->f, t->device.bar, t->device.off, 8), 64ull << 11);
	assert_int_equal(rd(t->f, t->device.bar, t->device.off + 0x800, 4), 0);
	/* features: the device's plus RING_RESET, VERSION_1 */
	f = offered(t);
	assert_true(f & ZOC_BIT(VIRTIO_F_VERSION_1));
	assert_true(f & ZOC_BIT(VIRTIO_F_RING_RESET));
	assert_true(f & ZOC_BIT(VIRTIO_F_RING_PACKED));
	assert_true(f & ZOC_BIT(VIRTIO_BLK_F_MQ));
	assert_false(f & ZOC_BIT(VIRTIO_F_NOTIFICATION_DATA));
	cwr(t, VIRTIO_PCI_COMMON_DFSELECT, 7, 4);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_DF, 4), 0);
	/* power-on register values */
	assert_int_equal(status(t), 0);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_NUMQ, 2), NQ);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	cwr(t, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_SIZE, 2), ZOC_VBLK_QUEUE_SIZE_MAX);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	cwr(t, VIRTIO_PCI_COMMON_Q_SELECT, NQ, 2); /* no such queue: size 0 */
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
	/* MSI-X: NQ + 1 vectors in BAR2 */
	assert_int_equal((cfg_rd(t->f, t->msix_pos + 2, 2) & 0x7ff) + 1, NVEC);
	assert_int_equal(cfg_rd(t->f, t->msix_pos + 4, 4) & 7, ZOC_VPCI_MSIX_BAR);
	/* the ISR reads 0 */
	assert_int_equal(rd(t->f, t->isr.bar, t->isr.off, 1), 0);
	t_free(t);
}

static void test_blk_io_msix(void **state)
{
	struct t *t = t_new("null");
	uint64_t cnt;

	(void)state;
	bring_up(t, FEAT_BASE | ZOC_BIT(VIRTIO_F_RING_INDIRECT_DESC));
	for (int qi = 0; qi < NQ; qi++) {
		drain_fd(t->irq[qi + 1]);
		get_id_ok(t, qi);
		assert_true(wait_fd(t->irq[qi + 1], 2000) > 0); /* the queue's vector */
		assert_int_equal(req(t, qi, VIRTIO_BLK_T_IN, 8, 4096), VIRTIO_BLK_S_OK);
		assert_int_equal(req(t, qi, VIRTIO_BLK_T_OUT, 16, 512), VIRTIO_BLK_S_OK);
		assert_int_equal(req(t, qi, VIRTIO_BLK_T_IN, 1ull << 40, 512), VIRTIO_BLK_S_IOERR);
	}
	/* a batch of 32 on queue 0 */
	drain_fd(t->irq[1]);
	drain_fd(t->irq[2]);
	for (unsigned i = 0; i < 32; i++)
		submit(t, 0, i, VIRTIO_BLK_T_IN, i * 8, 4096);
	kick(t, 0);
	for (unsigned i = 0; i < 32; i++) {
		uint16_t id;
		uint32_t len;

		wait_used(t, 0, &id, &len);
	}
	cnt = wait_fd(t->irq[1], 2000);
	assert_true(cnt > 0);
	/* no interrupt on the config vector or the other queue's */
	assert_int_equal(wait_fd(t->irq[0], 0), 0);
	assert_int_equal(wait_fd(t->irq[2], 0), 0);
	t_free(t);
}

static void test_packed_event_idx(void **state)
{
	struct t *t = t_new("null");

	(void)state;
	bring_up(t, FEAT_BASE | ZOC_BIT(VIRTIO_F_RING_PACKED) | ZOC_BIT(VIRTIO_F_RING_EVENT_IDX));
	for (int i = 0; i < 3 * QSIZE / 2; i++) /* wrap the ring */
		assert_int_equal(req(t, 1, VIRTIO_BLK_T_IN, 0, 512), VIRTIO_BLK_S_OK);
	get_id_ok(t, 0);
	t_free(t);
}

static void test_intx(void **state)
{
	struct t *t = t_new("null");

	(void)state;
	probe(t); /* no MSI-X: INTx */
	assert_true(negotiate(t, FEAT_BASE));
	setup_queue(t, 0, QSIZE, VIRTIO_MSI_NO_VECTOR);
	enable_queue(t, 0);
	driver_ok(t);
	drain_fd(t->intx);
	get_id_ok(t, 0);
	assert_true(wait_fd(t->intx, 2000) > 0);
	assert_int_equal(rd(t->f, t->isr.bar, t->isr.off, 1), 1); /* used buffer */
	assert_int_equal(rd(t->f, t->isr.bar, t->isr.off, 1), 0); /* read clears */
	/* config change: ISR bit 1 */
	t_free(t);
}

static void cfg_change_fn(void *arg)
{
	zoc_virtio_dev_config_changed(arg);
}

static void test_config_change(void **state)
{
	struct t *t = t_new("null");
	uint8_t gen;

	(void)state;
	bring_up(t, FEAT_BASE);
	gen = (uint8_t)crd(t, VIRTIO_PCI_COMMON_CFGGENERATION, 1);
	drain_fd(t->irq[0]);
	on_reactor(cfg_change_fn, zoc_vblk_to_virtio(t->vb));
	assert_true(wait_fd(t->irq[0], 2000) > 0);
	assert_int_equal((uint8_t)crd(t, VIRTIO_PCI_COMMON_CFGGENERATION, 1), (uint8_t)(gen + 1));
	/* with MSI-X the ISR is not the driver's business, but bit 1 is set */
	assert_true(rd(t->f, t->isr.bar, t->isr.off, 1) & 2);
	t_free(t);
}

/* Reset (status 0) with a request held in the back end: status stays
 * non-zero until the queue is stopped, the request completes, and the
 * device comes back clean. */
static void test_reset_inflight(void **state)
{
	struct t *t = t_new("gate");
	uint64_t end;
	uint16_t id;
	uint32_t len;

	(void)state;
	bring_up(t, FEAT_BASE);
	get_id_ok(t, 0);
	atomic_store(&g_gate_hold, true);
	submit(t, 0, 1, VIRTIO_BLK_T_IN, 0, 4096);
	kick(t, 0);
	end = now_ms() + WAIT_MS;
	while (atomic_load(&g_gate_queued) < 1 && now_ms() < end)
		usleep(100);
	assert_int_equal(atomic_load(&g_gate_queued), 1);
	cwr(t, VIRTIO_PCI_COMMON_STATUS, 0, 1);
	usleep(20000);
	assert_int_not_equal(status(t), 0); /* still resetting */
	/* writes during the reset are ignored */
	cwr(t, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE, 1);
	assert_int_equal(status(t), STATUS_ALL);
	atomic_store(&g_gate_hold, false);
	wait_status(t, 0);
	assert_true(vqd_get_used(&t->q[0], &id, &len)); /* completed, not lost */
	/* register state is back to power-on */
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	cwr(t, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_SIZE, 2), ZOC_VBLK_QUEUE_SIZE_MAX);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_DESCLO, 8), 0);
	assert_false(q_running(t, 0));
	/* and the device works again after a fresh bring-up */
	bring_up(t, FEAT_BASE);
	get_id_ok(t, 0);
	get_id_ok(t, 1);
	t_free(t);
}

/* quiesce / set_dma / resume under traffic: queues resume where they were. */
static void test_quiesce_resume(void **state)
{
	struct t *t = t_new("gate");
	uint64_t end;
	uint16_t id;
	uint32_t len;
	struct dma_swap s;

	(void)state;
	bring_up(t, FEAT_BASE);
	for (int i = 0; i < 5; i++)
		get_id_ok(t, 0);
	link_set_dma(t->f, t->g.mem); /* the same memory, a new installation */
	for (int i = 0; i < 5; i++)
		get_id_ok(t, 0);
	/* quiesce waits for a request held in the back end */
	atomic_store(&g_gate_hold, true);
	submit(t, 0, 1, VIRTIO_BLK_T_IN, 0, 4096);
	kick(t, 0);
	end = now_ms() + WAIT_MS;
	while (atomic_load(&g_gate_queued) < 1 && now_ms() < end)
		usleep(100);
	memset(&s, 0, sizeof(s));
	s.f = t->f;
	s.mem = t->g.mem;
	sem_init(&s.quiet, 0, 0);
	on_reactor(quiesce_fn, &s);
	assert_int_not_equal(zt_sem_wait_ms(&s.quiet, 50), 0); /* not quiet yet */
	atomic_store(&g_gate_hold, false);
	assert_int_equal(zt_sem_wait_ms(&s.quiet, WAIT_MS), 0);
	assert_true(vqd_get_used(&t->q[0], &id, &len));
	/* a request made while quiesced is served after resume */
	submit(t, 0, 2, VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES);
	kick(t, 0);
	usleep(20000);
	assert_false(vqd_get_used(&t->q[0], &id, &len));
	on_reactor(swap_resume_fn, &s);
	sem_destroy(&s.quiet);
	wait_used(t, 0, &id, &len);
	assert_int_equal(*(uint8_t *)g2h(t, st_gpa(0, 2)), VIRTIO_BLK_S_OK);
	get_id_ok(t, 0);
	get_id_ok(t, 1);
	t_free(t);
}

/* The memory goes away under a running device (a client remaps in steps):
 * the queues wait, and start again where they were once it is back. */
static void test_dma_removed(void **state)
{
	struct t *t = t_new("null");
	struct vqd_mem other;
	uint16_t id;
	uint32_t len;

	(void)state;
	bring_up(t, FEAT_BASE);
	get_id_ok(t, 0);
	link_set_dma(t->f, NULL);
	assert_int_equal(status(t), STATUS_ALL);
	assert_false(q_running(t, 0));
	/* a request made meanwhile is served once the memory is back */
	submit(t, 0, 1, VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES);
	kick(t, 0);
	/* memory without the rings: still waiting */
	vqd_mem_init(&other);
	vqd_mem_alloc(&other, 0x1000000, 0x10000);
	vqd_mem_map(&other, 0x1000000, 0x10000, 0, true);
	link_set_dma(t->f, other.mem);
	assert_false(q_running(t, 0));
	assert_int_equal(status(t), STATUS_ALL);
	link_set_dma(t->f, t->g.mem);
	vqd_mem_fini(&other);
	assert_true(q_running(t, 0));
	wait_used(t, 0, &id, &len);
	assert_int_equal(*(uint8_t *)g2h(t, st_gpa(0, 1)), VIRTIO_BLK_S_OK);
	get_id_ok(t, 0);
	get_id_ok(t, 1);
	/* at DRIVER_OK, rings outside memory are the driver's fault */
	probe(t);
	assert_true(negotiate(t, FEAT_BASE));
	setup_queue(t, 0, QSIZE, 1);
	enable_queue(t, 0);
	link_set_dma(t->f, NULL);
	driver_ok(t);
	assert_true(status(t) & VIRTIO_STATUS_NEEDS_RESET);
	link_set_dma(t->f, t->g.mem);
	assert_false(q_running(t, 0)); /* stays failed until reset */
	bring_up(t, FEAT_BASE);
	get_id_ok(t, 0);
	t_free(t);
}

static void test_queue_reset(void **state)
{
	struct t *t = t_new("gate");
	uint64_t end;
	uint16_t id;
	uint32_t len;

	(void)state;
	bring_up(t, FEAT_BASE | ZOC_BIT(VIRTIO_F_RING_RESET));
	get_id_ok(t, 1);
	/* reset queue 1 with a request in flight */
	atomic_store(&g_gate_hold, true);
	submit(t, 1, 1, VIRTIO_BLK_T_IN, 0, 4096);
	kick(t, 1);
	end = now_ms() + WAIT_MS;
	while (atomic_load(&g_gate_queued) < 1 && now_ms() < end)
		usleep(100);
	cwr(t, VIRTIO_PCI_COMMON_Q_SELECT, 1, 2);
	cwr(t, VIRTIO_PCI_COMMON_Q_RESET, 1, 2);
	usleep(10000);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_RESET, 2), 0); /* not yet */
	atomic_store(&g_gate_hold, false);
	end = now_ms() + WAIT_MS;
	while (crd(t, VIRTIO_PCI_COMMON_Q_RESET, 2) != 1 && now_ms() < end)
		usleep(100);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_RESET, 2), 1);
	assert_true(vqd_get_used(&t->q[1], &id, &len));
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_SIZE, 2), ZOC_VBLK_QUEUE_SIZE_MAX);
	/* queue 0 never noticed */
	get_id_ok(t, 0);
	/* set queue 1 up again, smaller, and enable it while DRIVER_OK */
	setup_queue(t, 1, 16, 2);
	enable_queue(t, 1);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_RESET, 2), 0);
	for (int i = 0; i < 40; i++)
		get_id_ok(t, 1);
	assert_int_equal(status(t), STATUS_ALL);
	t_free(t);
}

/* ------------------------------------------------------------------ */
/* hostile drivers                                                     */

struct qr {
	struct t *t;
	int qi;
	bool running;
};

static void q_running_fn(void *arg)
{
	struct qr *r = arg;
	struct zoc_virtio_dev *d = zoc_vblk_to_virtio(r->t->vb);

	r->running = d->ops->queue_running(d, (uint16_t)r->qi);
}

static bool q_running(struct t *t, int qi)
{
	struct qr r = {.t = t, .qi = qi};

	on_reactor(q_running_fn, &r);
	return r.running;
}

static void test_hostile_features(void **state)
{
	struct t *t = t_new("null");
	uint64_t off;

	(void)state;
	probe(t);
	off = offered(t);
	/* a bit outside the offer */
	assert_false(negotiate(t, FEAT_BASE | ZOC_BIT(23)));
	assert_false(negotiate(t, FEAT_BASE | ZOC_BIT(63)));
	assert_false(off & ZOC_BIT(VIRTIO_F_NOTIFICATION_DATA));
	assert_false(negotiate(t, FEAT_BASE | ZOC_BIT(VIRTIO_F_NOTIFICATION_DATA)));
	/* no VERSION_1 */
	assert_false(negotiate(t, FEAT_BASE & ~ZOC_BIT(VIRTIO_F_VERSION_1)));
	/* feature words past 1 */
	dev_reset(t);
	cwr(t, VIRTIO_PCI_COMMON_GFSELECT, 5, 4);
	cwr(t, VIRTIO_PCI_COMMON_GF, 0xffffffff, 4);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_GF, 4), 0);
	/* DRIVER_OK without FEATURES_OK fails the device */
	dev_reset(t);
	cwr(t, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	cwr(t, VIRTIO_PCI_COMMON_STATUS,
	    VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK, 1);
	assert_int_equal(status(t), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					    VIRTIO_STATUS_NEEDS_RESET);
	/* features changed after FEATURES_OK are ignored */
	assert_true(negotiate(t, FEAT_BASE));
	write_features(t, FEAT_BASE | ZOC_BIT(VIRTIO_F_RING_PACKED));
	cwr(t, VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_GF, 4), FEAT_BASE >> 32);
	/* clearing status bits without a reset is ignored */
	cwr(t, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE, 1);
	assert_int_equal(status(t), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					    VIRTIO_STATUS_FEATURES_OK);
	/* NEEDS_RESET cannot be written by the driver */
	cwr(t, VIRTIO_PCI_COMMON_STATUS,
	    VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
		    VIRTIO_STATUS_NEEDS_RESET,
	    1);
	assert_false(status(t) & VIRTIO_STATUS_NEEDS_RESET);
	/* and after all that, a clean bring-up works */
	bring_up(t, FEAT_BASE);
	get_id_ok(t, 0);
	t_free(t);
}

/* Queue set-ups a device must refuse: each fails the device, never more. */
static void hostile_queue(struct t *t, uint16_t size, uint64_t desc, bool packed)
{
	uint64_t f = FEAT_BASE | (packed ? ZOC_BIT(VIRTIO_F_RING_PACKED) : 0);

	probe(t);
	msix_on(t);
	assert_true(negotiate(t, f));
	setup_queue(t, 0, QSIZE, 1);
	cwr(t, VIRTIO_PCI_COMMON_Q_SIZE, size, 2);
	cwr(t, VIRTIO_PCI_COMMON_Q_DESCLO, (uint32_t)desc, 4);
	cwr(t, VIRTIO_PCI_COMMON_Q_DESCHI, desc >> 32, 4);
	enable_queue(t, 0);
	drain_fd(t->irq[0]);
	cwr(t, VIRTIO_PCI_COMMON_MSIX, 0, 2);
	driver_ok(t);
	assert_true(status(t) & VIRTIO_STATUS_NEEDS_RESET);
	assert_false(q_running(t, 0));
	assert_true(wait_fd(t->irq[0], 2000) > 0); /* told through the config vector */
}

static void test_hostile_queue_config(void **state)
{
	struct t *t = t_new("null");
	uint64_t good = qbase(0) + Q_DESC;

	(void)state;
	hostile_queue(t, 100, good, false);             /* split, not a power of two */
	hostile_queue(t, 2048, good, false);            /* over the maximum */
	hostile_queue(t, 2048, good, true);             /* packed, over the maximum */
	hostile_queue(t, 0, good, false);               /* zero */
	hostile_queue(t, QSIZE, 0x1000, false);         /* not mapped */
	hostile_queue(t, QSIZE, GPA_BASE + ARENA_SIZE - 64, false); /* runs off the end */
	hostile_queue(t, QSIZE, ~0ull - 15, false);     /* wraps */
	hostile_queue(t, QSIZE, good + 8, false);       /* misaligned */
	/* packed accepts any size up to the maximum */
	probe(t);
	msix_on(t);
	assert_true(negotiate(t, FEAT_BASE | ZOC_BIT(VIRTIO_F_RING_PACKED)));
	setup_queue(t, 0, 100, 1);
	enable_queue(t, 0);
	driver_ok(t);
	assert_int_equal(status(t), STATUS_ALL);
	get_id_ok(t, 0);
	/* clean again */
	bring_up(t, FEAT_BASE);
	get_id_ok(t, 0);
	t_free(t);
}

static void test_hostile_queue_ops(void **state)
{
	struct t *t = t_new("null");
	uint64_t before;

	(void)state;
	probe(t);
	msix_on(t);
	/* a queue enabled before FEATURES_OK fails the device */
	dev_reset(t);
	cwr(t, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	cwr(t, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	cwr(t, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	assert_true(status(t) & VIRTIO_STATUS_NEEDS_RESET);

	bring_up(t, FEAT_BASE);
	/* enabling twice, writing 0 to queue_enable: ignored */
	enable_queue(t, 0);
	cwr(t, VIRTIO_PCI_COMMON_Q_ENABLE, 0, 2);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
	/* moving a running queue: ignored */
	before = crd(t, VIRTIO_PCI_COMMON_Q_DESCLO, 8);
	cwr(t, VIRTIO_PCI_COMMON_Q_DESCLO, 0x1000, 4);
	cwr(t, VIRTIO_PCI_COMMON_Q_SIZE, 4, 2);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_DESCLO, 8), before);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_SIZE, 2), QSIZE);
	/* vectors out of range read back as NO_VECTOR */
	cwr(t, VIRTIO_PCI_COMMON_Q_MSIX, NVEC, 2);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	cwr(t, VIRTIO_PCI_COMMON_MSIX, 0x7fff, 2);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	/* ... and then nothing is signalled for queue 0 */
	drain_fd(t->irq[1]);
	get_id_ok(t, 0);
	assert_int_equal(wait_fd(t->irq[1], 50), 0);
	cwr(t, VIRTIO_PCI_COMMON_Q_MSIX, 1, 2);
	/* queue registers of a queue that does not exist */
	cwr(t, VIRTIO_PCI_COMMON_Q_SELECT, 0xffff, 2);
	cwr(t, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	cwr(t, VIRTIO_PCI_COMMON_Q_SIZE, 8, 2);
	cwr(t, VIRTIO_PCI_COMMON_Q_RESET, 1, 2);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	/* queue_reset without RING_RESET negotiated: refused */
	cwr(t, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	cwr(t, VIRTIO_PCI_COMMON_Q_RESET, 1, 2);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_RESET, 2), 0);
	assert_true(q_running(t, 0));
	/* notifications that match no queue */
	wr(t->f, t->notify.bar, t->notify.off + NQ * t->mult, 0, 2);
	wr(t->f, t->notify.bar, t->notify.off + 1, 0, 1);
	wr(t->f, t->notify.bar, t->notify.off + 0xffe, 0, 2);
	assert_int_equal(status(t), STATUS_ALL);
	get_id_ok(t, 0);
	get_id_ok(t, 1);
	t_free(t);
}

/* Accesses that fit no register are refused; nothing changes. */
static void test_hostile_accesses(void **state)
{
	struct t *t = t_new("null");
	const struct zoc_pci_desc *d;
	uint64_t v = 0;

	(void)state;
	bring_up(t, FEAT_BASE);
	d = zoc_pci_func_desc(t->f);
	assert_int_equal(crd_rc(t, VIRTIO_PCI_COMMON_STATUS, 4), -EINVAL); /* 3 fields */
	assert_int_equal(crd_rc(t, 0x01, 1), -EINVAL);                     /* inside a dword */
	assert_int_equal(crd_rc(t, VIRTIO_PCI_COMMON_DF, 2), -EINVAL);
	assert_int_equal(crd_rc(t, VIRTIO_PCI_COMMON_NUMQ, 1), -EINVAL);
	assert_int_equal(crd_rc(t, VIRTIO_PCI_COMMON_DFSELECT, 8), -EINVAL); /* two fields */
	assert_int_equal(crd_rc(t, VIRTIO_PCI_COMMON_Q_DESCLO + 2, 2), -EINVAL);
	assert_int_equal(cwr_rc(t, VIRTIO_PCI_COMMON_STATUS, 0, 2), -EINVAL);
	assert_int_equal(cwr_rc(t, VIRTIO_PCI_COMMON_Q_SELECT, 0, 1), -EINVAL);
	assert_int_equal(cwr_rc(t, VIRTIO_PCI_COMMON_Q_USEDLO + 1, 0, 1), -EINVAL);
	/* read-only registers keep their value */
	cwr(t, VIRTIO_PCI_COMMON_NUMQ, 77, 2);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_NUMQ, 2), NQ);
	cwr(t, VIRTIO_PCI_COMMON_DF, 0, 4);
	/* past the common structure, inside the BAR: reads 0, writes dropped */
	assert_int_equal(rd(t->f, 0, 0x100, 4), 0);
	wr(t->f, 0, 0x100, 0xffffffff, 4);
	/* past the BAR, or an unused BAR: refused by the PCI model */
	assert_int_equal(raw_access(t->f, false, 0, ZOC_VPCI_BAR_SIZE - 2, &v, 4, false), -EINVAL);
	assert_int_equal(raw_access(t->f, false, 1, 0, &v, 4, false), -EINVAL);
	assert_int_equal(raw_access(t->f, false, 5, 0, &v, 4, true), -EINVAL);
	/* MSI-X table with odd sizes */
	assert_int_equal(raw_access(t->f, false, d->msix_bar, 2, &v, 2, false), -EINVAL);
	/* device config: writes are refused by virtio-blk, the config is intact */
	wr(t->f, t->device.bar, t->device.off, 0, 4);
	assert_int_equal(rd(t->f, t->device.bar, t->device.off, 8), 64ull << 11);
	/* ISR writes: ignored */
	wr(t->f, t->isr.bar, t->isr.off, 0xff, 1);
	/* config space: capabilities are read-only except the window */
	cfg_wr(t->f, t->common.pos + 4, 3, 1);
	cfg_wr(t->f, t->common.pos + 8, 0x1234, 4);
	cfg_wr(t->f, t->common.pos + 1, 0, 1); /* the next pointer */
	probe(t);
	assert_int_equal(t->common.bar, 0);
	assert_int_equal(t->common.off, 0);
	assert_int_equal(status(t), STATUS_ALL);
	get_id_ok(t, 0);
	t_free(t);
}

/* The PCI configuration access window (VIRTIO_PCI_CAP_PCI_CFG). */
static void win_set(struct t *t, uint8_t bar, uint32_t off, uint32_t len)
{
	cfg_wr(t->f, t->pcicfg.pos + 4, bar, 1);
	cfg_wr(t->f, t->pcicfg.pos + 8, off, 4);
	cfg_wr(t->f, t->pcicfg.pos + 12, len, 4);
}

static void test_pci_cfg_window(void **state)
{
	struct t *t = t_new("null");
	uint32_t lo;

	(void)state;
	probe(t);
	/* read device_feature (select 0) through the window */
	cwr(t, VIRTIO_PCI_COMMON_DFSELECT, 0, 4);
	lo = (uint32_t)crd(t, VIRTIO_PCI_COMMON_DF, 4);
	win_set(t, t->common.bar, t->common.off + VIRTIO_PCI_COMMON_DF, 4);
	assert_int_equal(cfg_rd(t->f, t->pcicfg.pos + 16, 4), lo);
	/* write queue_select through it (2 bytes) */
	win_set(t, t->common.bar, t->common.off + VIRTIO_PCI_COMMON_Q_SELECT, 2);
	cfg_wr(t->f, t->pcicfg.pos + 16, 1, 2);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_SELECT, 2), 1);
	assert_int_equal(cfg_rd(t->f, t->pcicfg.pos + 16, 2), 1);
	/* the status byte */
	win_set(t, t->common.bar, t->common.off + VIRTIO_PCI_COMMON_STATUS, 1);
	cfg_wr(t->f, t->pcicfg.pos + 16, VIRTIO_STATUS_ACKNOWLEDGE, 1);
	assert_int_equal(status(t), VIRTIO_STATUS_ACKNOWLEDGE);
	/* bad windows: nothing happens, reads give 0 */
	win_set(t, t->common.bar, t->common.off + VIRTIO_PCI_COMMON_STATUS, 3);
	cfg_wr(t->f, t->pcicfg.pos + 16, 0, 4);
	assert_int_equal(status(t), VIRTIO_STATUS_ACKNOWLEDGE);
	win_set(t, t->common.bar, t->common.off + VIRTIO_PCI_COMMON_Q_SELECT + 1, 2);
	cfg_wr(t->f, t->pcicfg.pos + 16, 0, 4);
	win_set(t, t->common.bar, ZOC_VPCI_BAR_SIZE, 4);
	assert_int_equal(cfg_rd(t->f, t->pcicfg.pos + 16, 4), 0);
	win_set(t, 5, 0, 4);
	assert_int_equal(cfg_rd(t->f, t->pcicfg.pos + 16, 4), 0);
	win_set(t, 200, 0, 4);
	cfg_wr(t->f, t->pcicfg.pos + 16, 0, 4);
	win_set(t, t->common.bar, 0xfffffffc, 4);
	cfg_wr(t->f, t->pcicfg.pos + 16, 0, 4);
	/* the MSI-X table through the window with a 2-byte length: refused */
	win_set(t, ZOC_VPCI_MSIX_BAR, 0, 2);
	cfg_wr(t->f, t->pcicfg.pos + 16, 0, 2);
	assert_int_equal(status(t), VIRTIO_STATUS_ACKNOWLEDGE);
	assert_int_equal(crd(t, VIRTIO_PCI_COMMON_Q_SELECT, 2), 1);
	/* a reset through the window, then a normal bring-up */
	win_set(t, t->common.bar, t->common.off + VIRTIO_PCI_COMMON_STATUS, 1);
	cfg_wr(t->f, t->pcicfg.pos + 16, 0, 1);
	wait_status(t, 0);
	bring_up(t, FEAT_BASE);
	get_id_ok(t, 0);
	t_free(t);
}

/* A ring the driver breaks: NEEDS_RESET and a config interrupt. */
static void test_hostile_broken_ring(void **state)
{
	struct t *t = t_new("null");
	uint64_t end;

	(void)state;
	bring_up(t, FEAT_BASE);
	get_id_ok(t, 0);
	drain_fd(t->irq[0]);
	/* the avail index jumps by more than the ring size */
	__atomic_store_n(&t->q[0].avail->idx, (uint16_t)(t->q[0].avail_idx + QSIZE + 5),
			 __ATOMIC_RELEASE);
	kick(t, 0);
	end = now_ms() + WAIT_MS;
	while (!(status(t) & VIRTIO_STATUS_NEEDS_RESET) && now_ms() < end)
		usleep(100);
	assert_true(status(t) & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(wait_fd(t->irq[0], 2000) > 0);
	/* the other queue goes on */
	get_id_ok(t, 1);
	/* a reset brings it all back */
	bring_up(t, FEAT_BASE);
	get_id_ok(t, 0);
	t_free(t);
}

/* The link resets the function (DEVICE_RESET, a client gone) while the
 * driver runs, with requests in flight. */
static void test_function_reset(void **state)
{
	struct t *t = t_new("gate");
	struct reset_wait w = {0};
	uint64_t end;
	uint16_t id;
	uint32_t len;

	(void)state;
	bring_up(t, FEAT_BASE);
	get_id_ok(t, 0);
	atomic_store(&g_gate_hold, true);
	submit(t, 0, 1, VIRTIO_BLK_T_IN, 0, 4096);
	submit(t, 0, 2, VIRTIO_BLK_T_IN, 8, 4096);
	kick(t, 0);
	end = now_ms() + WAIT_MS;
	while (atomic_load(&g_gate_queued) < 2 && now_ms() < end)
		usleep(100);
	w.f = t->f;
	sem_init(&w.done, 0, 0);
	on_reactor(func_reset_fn, &w);
	assert_int_not_equal(zt_sem_wait_ms(&w.done, 50), 0);
	/* a driver reset on top of it */
	cwr(t, VIRTIO_PCI_COMMON_STATUS, 0, 1);
	atomic_store(&g_gate_hold, false);
	assert_int_equal(zt_sem_wait_ms(&w.done, WAIT_MS), 0);
	sem_destroy(&w.done);
	assert_int_equal(status(t), 0);
	wait_used(t, 0, &id, &len);
	wait_used(t, 0, &id, &len);
	/* MSI-X is off after a function reset: bring-up turns it on again */
	assert_false(cfg_rd(t->f, t->msix_pos + 2, 2) & 0x8000);
	bring_up(t, FEAT_BASE);
	get_id_ok(t, 0);
	t_free(t);
}

/* ------------------------------------------------------------------ */
/* the PCI model's device capabilities                                 */

static void test_pci_device_caps(void **state)
{
	uint8_t a[8] = {0x09, 0, 8, 1, 2, 3, 4, 5}, b[12] = {0x09, 0, 12, 7};
	uint8_t bw[12] = {0, 0, 0, 0, 0xff, 0xff};
	struct zoc_pci_cap caps[2] = {{0xc0, 8, a, NULL}, {0xd0, 12, b, bw}};
	struct zoc_pci_desc d = {.vendor_id = 0x1234, .device_id = 0x5678};
	struct zoc_pci_func *f;
	uint8_t v[4];

	(void)state;
	d.bars[0].size = 4096;
	d.caps = caps;
	d.ncaps = 2;
	f = zoc_pci_func_create(&d, NULL);
	assert_non_null(f);
	/* chained after PM, in order */
	{
		uint32_t x = 0;

		assert_int_equal(zoc_pci_cfg_read(f, 0x41, &x, 1), 0);
		assert_int_equal(x, 0xc0);
		assert_int_equal(zoc_pci_cfg_read(f, 0xc1, &x, 1), 0);
		assert_int_equal(x, 0xd0);
		assert_int_equal(zoc_pci_cfg_read(f, 0xd1, &x, 1), 0);
		assert_int_equal(x, 0);
		assert_int_equal(zoc_pci_cfg_read(f, 0xc4, &x, 4), 0);
		assert_int_equal(x, 0x05040302);
		/* the writable bytes of the second */
		x = 0xffffffff;
		assert_int_equal(zoc_pci_cfg_write(f, 0xd4, &x, 4), 0);
		assert_int_equal(zoc_pci_cfg_write(f, 0xc4, &x, 4), 0);
		assert_int_equal(zoc_pci_cfg_read(f, 0xd4, &x, 4), 0);
		assert_int_equal(x, 0xffff);
		assert_int_equal(zoc_pci_cfg_read(f, 0xc4, &x, 4), 0);
		assert_int_equal(x, 0x05040302);
	}
	/* the device stores into its capabilities, nowhere else */
	memset(v, 0xab, sizeof(v));
	assert_int_equal(zoc_pci_cfg_store(f, 0xd8, v, 4), 0);
	assert_int_equal(zoc_pci_cfg_store(f, 0xd0, v, 2), -EINVAL); /* ID / next */
	assert_int_equal(zoc_pci_cfg_store(f, 0xdc, v, 1), -EINVAL); /* past it */
	assert_int_equal(zoc_pci_cfg_store(f, 0x10, v, 4), -EINVAL); /* a BAR */
	assert_int_equal(zoc_pci_cfg_store(f, 0xc6, v, 4), -EINVAL); /* crosses */
	assert_int_equal(zoc_pci_cfg_store(f, 0xffff, v, 4), -EINVAL);
	/* a function reset restores them */
	zoc_pci_func_reset(f, NULL, NULL);
	{
		uint32_t x = 0;

		assert_int_equal(zoc_pci_cfg_read(f, 0xd4, &x, 4), 0);
		assert_int_equal(x, 0);
	}
	zoc_pci_func_destroy(f);

	/* bad tables */
	caps[1].offset = 0xc4; /* overlaps the first */
	assert_null(zoc_pci_func_create(&d, NULL));
	caps[1].offset = 0xf8; /* runs past 0x100 */
	assert_null(zoc_pci_func_create(&d, NULL));
	caps[1].offset = 0xd2; /* not dword aligned */
	assert_null(zoc_pci_func_create(&d, NULL));
	caps[1].offset = 0x44; /* inside PM */
	assert_null(zoc_pci_func_create(&d, NULL));
	caps[1].offset = 0x80;
	d.pcie = true; /* inside the PCIe capability */
	assert_null(zoc_pci_func_create(&d, NULL));
	d.pcie = false;
	caps[1].len = 1;
	assert_null(zoc_pci_func_create(&d, NULL));
	caps[1].len = 12;
	caps[1].bytes = NULL;
	assert_null(zoc_pci_func_create(&d, NULL));
	caps[1].bytes = b;
	d.ncaps = ZOC_PCI_MAX_CAPS + 1;
	assert_null(zoc_pci_func_create(&d, NULL));
	d.ncaps = 2;
	f = zoc_pci_func_create(&d, NULL); /* 0x80 is free without PCIe */
	assert_non_null(f);
	zoc_pci_func_destroy(f);
}

static uint64_t nofeat(struct zoc_virtio_dev *d)
{
	(void)d;
	return 0;
}

static void test_create_refused(void **state)
{
	struct zoc_virtio_dev vd = {0};
	struct zoc_virtio_dev_ops ops = {0};
	struct mk m = {.bdev = "null", .nq = NQ};
	struct zoc_virtio_dev *real;

	(void)state;
	errno = 0;
	assert_null(zoc_virtio_pci_create(NULL));
	assert_int_equal(errno, EINVAL);
	assert_null(zoc_virtio_pci_create(&vd)); /* no ops */
	on_reactor(mk_fn, &m);
	assert_non_null(m.vp);
	real = zoc_vblk_to_virtio(m.vb);
	vd = *real;
	vd.max_queues = 0;
	assert_null(zoc_virtio_pci_create(&vd));
	vd = *real;
	vd.max_queues = ZOC_VPCI_MAX_QUEUES + 1;
	assert_null(zoc_virtio_pci_create(&vd));
	vd = *real;
	vd.config_size = 0x1001;
	assert_null(zoc_virtio_pci_create(&vd));
	vd = *real;
	vd.device_id = 0x40;
	assert_null(zoc_virtio_pci_create(&vd));
	vd = *real;
	ops = *real->ops;
	ops.get_features = nofeat; /* no VERSION_1 */
	vd.ops = &ops;
	assert_null(zoc_virtio_pci_create(&vd));
	{
		struct t tt = {.vp = m.vp, .vb = m.vb};

		on_reactor(rm_fn, &tt);
	}
}

/* Polling reactors: the notify page is offered for mmap; interrupt mode:
 * not (the kick must wake the reactor). */
static void test_notify_mmap_polling(void **state)
{
	struct t *t = t_new("null");
	struct zoc_pci_mmap_area a[2];
	const struct zoc_pci_desc *d;

	(void)state;
	d = zoc_pci_func_desc(t->f);
	assert_int_equal(d->ops->bar_mmap_areas(t->f, 0, a, 2), 1);
	assert_int_equal(a[0].offset, ZOC_VPCI_NOTIFY_OFF);
	assert_int_equal(a[0].size, 4096);
	assert_true(a[0].fd >= 0);
	assert_true(a[0].fd_offset >= a[0].offset);
	assert_int_equal(d->ops->bar_mmap_areas(t->f, 2, a, 2), 0);
	/* the driver's stores land in the page; the pollers serve anyway */
	bring_up(t, FEAT_BASE);
	for (int i = 0; i < 10; i++) {
		int id = submit(t, 0, 0, VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES);
		uint16_t got;
		uint32_t len;

		/* no kick at all */
		wait_used(t, 0, &got, &len);
		assert_int_equal(got, id);
	}
	t_free(t);
}

static void test_interrupt_mode(void **state)
{
	struct t *t = t_new("null");
	struct zoc_pci_mmap_area a[2];

	(void)state;
	assert_true(zoc_reactor_interrupt_mode());
	assert_int_equal(zoc_pci_func_desc(t->f)->ops->bar_mmap_areas(t->f, 0, a, 2), 0);
	bring_up(t, FEAT_BASE | ZOC_BIT(VIRTIO_F_RING_EVENT_IDX));
	for (int i = 0; i < 30; i++) {
		get_id_ok(t, i & 1); /* the trapped kick wakes the queue's reactor */
		if (i % 10 == 0)
			usleep(3000); /* let the reactors fall asleep */
	}
	assert_true(wait_fd(t->irq[1], 1000) > 0);
	bring_up(t, FEAT_BASE | ZOC_BIT(VIRTIO_F_RING_PACKED));
	for (int i = 0; i < 10; i++)
		get_id_ok(t, 0);
	t_free(t);
}

struct info_call {
	struct zoc_virtio_pci *vp;
	json_t *o;
};

static void info_fn(void *arg)
{
	struct info_call *c = arg;

	c->o = zoc_virtio_pci_info(c->vp);
}

static void test_info(void **state)
{
	struct t *t = t_new("null");
	struct info_call c;

	(void)state;
	bring_up(t, FEAT_BASE);
	c.vp = t->vp;
	on_reactor(info_fn, &c);
	assert_non_null(c.o);
	assert_int_equal(json_integer_value(json_object_get(c.o, "status")), STATUS_ALL);
	assert_int_equal(json_array_size(json_object_get(c.o, "queues")), NQ);
	assert_non_null(json_object_get(c.o, "pci"));
	json_decref(c.o);
	t_free(t);
}

int main(void)
{
	const struct CMUnitTest polling[] = {
		cmocka_unit_test(test_pci_device_caps),
		cmocka_unit_test(test_create_refused),
		cmocka_unit_test(test_probe_layout),
		cmocka_unit_test(test_blk_io_msix),
		cmocka_unit_test(test_packed_event_idx),
		cmocka_unit_test(test_intx),
		cmocka_unit_test(test_config_change),
		cmocka_unit_test(test_reset_inflight),
		cmocka_unit_test(test_quiesce_resume),
		cmocka_unit_test(test_dma_removed),
		cmocka_unit_test(test_queue_reset),
		cmocka_unit_test(test_hostile_features),
		cmocka_unit_test(test_hostile_queue_config),
		cmocka_unit_test(test_hostile_queue_ops),
		cmocka_unit_test(test_hostile_accesses),
		cmocka_unit_test(test_pci_cfg_window),
		cmocka_unit_test(test_hostile_broken_ring),
		cmocka_unit_test(test_function_reset),
		cmocka_unit_test(test_notify_mmap_polling),
		cmocka_unit_test(test_info),
	};
	const struct CMUnitTest interrupt[] = {
		cmocka_unit_test(test_interrupt_mode),
	};
	int rc;

	rc = cmocka_run_group_tests_name("virtio_pci_polling", polling, setup_polling,
					 teardown_reactors);
	rc += cmocka_run_group_tests_name("virtio_pci_interrupt", interrupt, setup_interrupt,
					  teardown_reactors);
	return rc;
}
