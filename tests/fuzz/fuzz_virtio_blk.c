/* SPDX-License-Identifier: MIT */
/*
 * fuzz_virtio_blk.c - libFuzzer target for the virtio-blk device model
 * (src/virtio/virtio_blk.c) on top of the real virtqueue, reactor and null
 * back end.
 *
 * One reactor (interrupt mode, so it sleeps between inputs) runs on a thread
 * started in LLVMFuzzerInitialize(), with two devices: one on a 512-byte and
 * one on a 4096-byte null bdev (1 MiB each). Per input, the main thread fills
 * the rings and guest memory, then on reactor 0: negotiates features, creates
 * the vq and starts queue 0; it waits (message round trips, which also wake
 * the reactor) until the ring is drained or broken and nothing is in flight,
 * stops the queue and waits for done().
 *
 * Input:
 *   byte 0   flags: bit0 packed, bit1 event_idx, bit2 indirect, bit3 DISCARD,
 *            bit4 WRITE_ZEROES negotiated, bit5 4 KiB device, bit6 raw
 *            addresses/lengths (no steering), bit7 kick before start
 *   byte 1   queue size (split: 1 << (b % 7); packed: 1 + b % 64)
 *   byte 2   split: avail->idx (may jump past the queue size); packed: base
 *            index
 *   then     the descriptor table (size * 16), the driver area (split avail
 *            ring 2 * size, then used_event; packed event suppression 4),
 *            the read-only part of guest memory (indirect tables), the
 *            writable part (headers, data, status bytes); short inputs are
 *            zero-filled.
 *
 * Descriptor addresses and lengths (in the ring and in the read-only
 * indirect area) are steered into guest memory unless bit6 is set, so most
 * chains reach the device model rather than failing translation.
 *
 * Checks besides the sanitizers: the read-only guest region and the
 * driver-owned ring pages are mprotect()ed read-only (a stray write is a
 * crash); every byte that changed in the writable region lies inside some
 * device-writable descriptor of the input; the queue quiesces (no hang);
 * stop reports a base at or before the driver's avail position.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "blk/bdev.h"
#include "core/log.h"
#include "core/reactor.h"
#include "link/dma.h"
#include "virtio/virtio.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtqueue.h"

#define PAGE 4096u
#define MAX_Q 64

/* guest memory: [guard][RO][RW][guard] in one mapping */
#define RO_GPA 0x10000ull
#define RO_SIZE 0x2000u
#define RW_GPA (RO_GPA + RO_SIZE)
#define RW_SIZE 0x4000u
#define STEER_SPAN (RO_SIZE + RW_SIZE + 0x1000u) /* and a hole after */

/* rings (host memory the link would have translated): page 0 read-only for
 * the device (split desc + avail; packed driver event), page 1 written by
 * it (used ring; packed device event), page 2 the packed descriptor ring */
#define R_DESC 0x0
#define R_AVAIL 0x800
#define R_USED 0x1000
#define R_PDESC 0x2000
#define RINGS_SIZE (3 * PAGE)

static uint8_t *g_guest; /* guard page, then RO, then RW */
static uint8_t *g_ro, *g_rw;
static uint8_t *g_rings;
static uint8_t g_rw_orig[RW_SIZE];
static uint8_t g_desc_orig[MAX_Q * 16];
static uint8_t g_writable[RW_SIZE];
static struct zoc_mem *g_mem;
static struct zoc_vblk *g_dev[2];
static int g_kickfd = -1, g_callfd = -1;
static pthread_t g_thread;

/* ---- talking to reactor 0 ---- */

struct call {
	void (*fn)(struct call *);
	sem_t done;
	/* arguments / results */
	int idx;
	uint64_t features;
	struct zoc_vq_config cfg;
	struct zoc_vq *vq;
	int rc;
	bool quiet, broken;
	uint32_t base;
	sem_t stopped;
};

static struct call g_call;

static void trampoline(void *arg)
{
	struct call *c = arg;

	c->fn(c);
	sem_post(&c->done);
}

static void on_reactor(void (*fn)(struct call *))
{
	g_call.fn = fn;
	if (zoc_reactor_send_msg(zoc_reactor_get(0), trampoline, &g_call))
		abort();
	while (sem_wait(&g_call.done))
		;
}

static void *reactor_main(void *arg)
{
	(void)arg;
	zoc_reactors_run();
	return NULL;
}

static void setup_fn(struct call *c)
{
	c->rc = 0;
	if (zoc_bdev_null_create("fz512", 1, 512) || zoc_bdev_null_create("fz4k", 1, 4096)) {
		c->rc = -1;
		return;
	}
	g_dev[0] = zoc_vblk_create("fuzz-blk-512", zoc_bdev_find("fz512"), 1);
	g_dev[1] = zoc_vblk_create("fuzz-blk-4k", zoc_bdev_find("fz4k"), 1);
	if (!g_dev[0] || !g_dev[1])
		c->rc = -1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const unsigned core0 = 0;
	struct zoc_reactor_opts o = {
		.cores = &core0, .num_cores = 1, .interrupt_mode = true, .pin = false};

	(void)argc;
	(void)argv;
	zoc_log_set_level(getenv("ZOC_FUZZ_LOG") ? ZOC_LOG_DEBUG : ZOC_LOG_ERR);
	g_guest = mmap(NULL, PAGE + RO_SIZE + RW_SIZE + PAGE, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	g_rings = mmap(NULL, RINGS_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (g_guest == MAP_FAILED || g_rings == MAP_FAILED)
		abort();
	g_ro = g_guest + PAGE;
	g_rw = g_ro + RO_SIZE;
	if (mprotect(g_ro, RO_SIZE + RW_SIZE, PROT_READ | PROT_WRITE))
		abort();
	g_mem = zoc_mem_create();
	if (!g_mem || zoc_mem_add_region_hva(g_mem, RO_GPA, RO_SIZE, 0, g_ro, false) ||
	    zoc_mem_add_region_hva(g_mem, RW_GPA, RW_SIZE, 0, g_rw, true))
		abort();
	g_kickfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	g_callfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (g_kickfd < 0 || g_callfd < 0)
		abort();
	sem_init(&g_call.done, 0, 0);
	sem_init(&g_call.stopped, 0, 0);
	if (zoc_reactors_init(&o))
		abort();
	if (pthread_create(&g_thread, NULL, reactor_main, NULL))
		abort();
	on_reactor(setup_fn);
	if (g_call.rc)
		abort();
	return 0;
}

static void start_fn(struct call *c)
{
	struct zoc_virtio_dev *vd = zoc_vblk_to_virtio(g_dev[c->idx]);

	c->rc = vd->ops->set_features(vd, c->features);
	if (c->rc) {
		fprintf(stderr, "set_features(0x%llx) refused\n", (unsigned long long)c->features);
		abort();
	}
	c->vq = zoc_vq_create(&c->cfg);
	if (!c->vq) {
		c->rc = -errno;
		return;
	}
	c->rc = vd->ops->queue_start(vd, 0, c->vq, g_kickfd);
	if (c->rc) {
		fprintf(stderr, "queue_start refused: %d\n", c->rc);
		abort();
	}
}

/* The device owns vq, but on its owner reactor we may look at it. */
static void quiet_fn(struct call *c)
{
	c->broken = zoc_vq_broken(c->vq);
	c->quiet = (c->broken || !zoc_vq_has_work(c->vq)) && zoc_vq_inflight_count(c->vq) == 0;
}

static void stop_done(void *arg)
{
	struct call *c = arg;

	if (zoc_reactor_current() != zoc_reactor_get(0))
		abort();
	sem_post(&c->stopped);
}

static void stop_fn(struct call *c)
{
	struct zoc_virtio_dev *vd = zoc_vblk_to_virtio(g_dev[c->idx]);

	c->base = UINT32_MAX;
	c->rc = vd->ops->queue_stop(vd, 0, &c->base, stop_done, c);
}

/* ---- input decoding ---- */

struct input {
	const uint8_t *p;
	size_t n;
};

static void take(struct input *in, void *dst, size_t len)
{
	size_t k = in->n < len ? in->n : len;

	memcpy(dst, in->p, k);
	memset((uint8_t *)dst + k, 0, len - k);
	in->p += k;
	in->n -= k;
}

static uint64_t steer_addr(uint64_t a)
{
	switch (a >> 62) {
	case 0:
	case 1:
		return RW_GPA + a % RW_SIZE;
	case 2:
		return RO_GPA + a % STEER_SPAN;
	default:
		return a; /* anywhere */
	}
}

static uint32_t steer_len(uint32_t l)
{
	return (l & 0x80000000u) ? l : l % 0x1100u;
}

/* Steers the 16-byte descriptors at p (addr at 0, len at 8; both layouts). */
static void steer_descs(uint8_t *p, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		uint64_t a;
		uint32_t l;

		memcpy(&a, p + i * 16, 8);
		memcpy(&l, p + i * 16 + 8, 4);
		a = steer_addr(a);
		l = steer_len(l);
		memcpy(p + i * 16, &a, 8);
		memcpy(p + i * 16 + 8, &l, 4);
	}
}

/* ---- the "device wrote only where it may" check ---- */

static void mark_writable(uint64_t gpa, uint64_t len)
{
	uint64_t s, e;

	if (len == 0)
		return;
	if (gpa >= RW_GPA + RW_SIZE || gpa + len <= RW_GPA || gpa + len < gpa)
		return;
	s = gpa < RW_GPA ? 0 : gpa - RW_GPA;
	e = gpa + len > RW_GPA + RW_SIZE ? RW_SIZE : gpa + len - RW_GPA;
	memset(g_writable + s, 1, e - s);
}

/* Host pointer of [gpa, gpa + len) in guest memory as it was at the start
 * (the read-only part never changes; for the writable part, src picks the
 * snapshot or the current contents). */
static const uint8_t *guest_view(uint64_t gpa, uint64_t len, const uint8_t *rw)
{
	if (gpa >= RO_GPA && gpa + len >= gpa && gpa + len <= RO_GPA + RO_SIZE)
		return g_ro + (gpa - RO_GPA);
	if (gpa >= RW_GPA && gpa + len >= gpa && gpa + len <= RW_GPA + RW_SIZE)
		return rw + (gpa - RW_GPA);
	return NULL;
}

static void mark_table(const uint8_t *t, uint32_t count)
{
	for (uint32_t k = 0; k < count; k++) {
		uint64_t a;
		uint32_t l;
		uint16_t f;

		memcpy(&a, t + k * 16, 8);
		memcpy(&l, t + k * 16 + 8, 4);
		memcpy(&f, t + k * 16 + 12, 2); /* split: flags; packed: id */
		if (f & VIRTQ_DESC_F_WRITE)
			mark_writable(a, l);
		memcpy(&f, t + k * 16 + 14, 2); /* packed: flags */
		if (f & VIRTQ_DESC_F_WRITE)
			mark_writable(a, l);
	}
}

/* Marks every byte any descriptor of the input lets the device write. Over-
 * approximates (all descriptors, both flag positions, tables read before and
 * after), so a hit is a real bug. */
static void compute_writable(bool packed, uint16_t size)
{
	memset(g_writable, 0, sizeof(g_writable));
	for (uint16_t i = 0; i < size; i++) {
		const uint8_t *d = g_desc_orig + (size_t)i * 16;
		uint64_t a;
		uint32_t l;
		uint16_t f;

		memcpy(&a, d, 8);
		memcpy(&l, d + 8, 4);
		memcpy(&f, d + (packed ? 14 : 12), 2);
		if (f & VIRTQ_DESC_F_INDIRECT) {
			const uint8_t *t;

			if (l == 0 || l % 16)
				continue;
			if ((t = guest_view(a, l, g_rw_orig)))
				mark_table(t, l / 16);
			if ((t = guest_view(a, l, g_rw)))
				mark_table(t, l / 16);
		} else if (f & VIRTQ_DESC_F_WRITE) {
			mark_writable(a, l);
		}
	}
}

/* ---- one input ---- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {data, size};
	uint8_t hdr[3];
	bool packed, raw;
	uint16_t qsize;
	uint16_t start_idx = 0;
	struct zoc_virtio_dev *vd;
	uint64_t feat;
	uint64_t one = 1;
	int i;

	take(&in, hdr, sizeof(hdr));
	packed = hdr[0] & 1;
	raw = hdr[0] & 0x40;
	qsize = packed ? (uint16_t)(1 + hdr[1] % MAX_Q) : (uint16_t)(1u << (hdr[1] % 7));

	/* rings */
	if (mprotect(g_rings, PAGE, PROT_READ | PROT_WRITE))
		abort();
	memset(g_rings, 0, RINGS_SIZE);
	take(&in, g_desc_orig, (size_t)qsize * 16);
	if (!raw)
		steer_descs(g_desc_orig, qsize);
	if (!packed) {
		struct virtq_avail *av = (void *)(g_rings + R_AVAIL);

		memcpy(g_rings + R_DESC, g_desc_orig, (size_t)qsize * 16);
		take(&in, av->ring, (size_t)qsize * 2 + 2); /* ring + used_event */
		av->flags = 0;
		av->idx = hdr[2];
		take(&in, &av->flags, 1); /* low byte: NO_INTERRUPT sometimes */
	} else {
		memcpy(g_rings + R_PDESC, g_desc_orig, (size_t)qsize * 16);
		take(&in, g_rings + R_AVAIL, 4); /* driver event suppression */
		start_idx = hdr[2] % qsize;
	}
	if (mprotect(g_rings, PAGE, PROT_READ))
		abort();

	/* guest memory */
	if (mprotect(g_ro, RO_SIZE, PROT_READ | PROT_WRITE))
		abort();
	take(&in, g_ro, RO_SIZE);
	if (!raw)
		steer_descs(g_ro, RO_SIZE / 16);
	if (mprotect(g_ro, RO_SIZE, PROT_READ))
		abort();
	take(&in, g_rw, RW_SIZE);
	memcpy(g_rw_orig, g_rw, RW_SIZE);

	/* features and queue */
	g_call.idx = (hdr[0] >> 5) & 1;
	vd = zoc_vblk_to_virtio(g_dev[g_call.idx]);
	feat = vd->ops->get_features(vd); /* pure: reads the bdev's flags */
	if (!packed)
		feat &= ~ZOC_BIT(VIRTIO_F_RING_PACKED);
	if (!(hdr[0] & 2))
		feat &= ~ZOC_BIT(VIRTIO_F_RING_EVENT_IDX);
	if (!(hdr[0] & 4))
		feat &= ~ZOC_BIT(VIRTIO_F_RING_INDIRECT_DESC);
	if (!(hdr[0] & 8))
		feat &= ~ZOC_BIT(VIRTIO_BLK_F_DISCARD);
	if (!(hdr[0] & 16))
		feat &= ~ZOC_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
	g_call.features = feat;
	g_call.cfg = (struct zoc_vq_config){
		.size = qsize,
		.packed = packed,
		.event_idx = hdr[0] & 2,
		.indirect = hdr[0] & 4,
		.desc = g_rings + (packed ? R_PDESC : R_DESC),
		.driver = g_rings + R_AVAIL,
		.device = g_rings + R_USED,
		.base = packed ? (uint32_t)(start_idx | 0x8000) : 0,
		.mem = g_mem,
		.inflight = NULL,
		.callfd = g_callfd,
	};
	if (hdr[0] & 0x80 && write(g_kickfd, &one, sizeof(one)) < 0)
		abort();
	on_reactor(start_fn);
	if (g_call.rc)
		return 0; /* vq refused (cannot happen with these sizes) */

	/* wait until quiet */
	for (i = 0; i < 200000; i++) {
		on_reactor(quiet_fn);
		if (g_call.quiet)
			break;
	}
	if (i == 200000) {
		fprintf(stderr, "virtio-blk queue never went quiet\n");
		abort();
	}

	on_reactor(stop_fn);
	if (g_call.rc) {
		fprintf(stderr, "queue_stop: %d\n", g_call.rc);
		abort();
	}
	{
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 10;
		while (sem_timedwait(&g_call.stopped, &ts)) {
			if (errno != EINTR) {
				fprintf(stderr, "queue stop never completed\n");
				abort();
			}
		}
	}
	if (!packed && g_call.base > 0xffff)
		abort();
	if (!packed) {
		/* every popped request was completed; a broken ring may have
		 * consumed one avail entry it could not pop */
		const struct virtq_used *u = (const void *)(g_rings + R_USED);
		uint16_t lost = (uint16_t)(g_call.base - u->idx);

		if (lost > (g_call.broken ? 1 : 0)) {
			fprintf(stderr, "used idx %u != base %u after stop\n", u->idx,
				g_call.base);
			abort();
		}
	}
	{
		uint64_t v;

		if (read(g_kickfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			abort();
		if (read(g_callfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			abort();
	}

	/* the device wrote only into device-writable buffers */
	compute_writable(packed, qsize);
	for (i = 0; i < (int)RW_SIZE; i++) {
		if (g_rw[i] != g_rw_orig[i] && !g_writable[i]) {
			fprintf(stderr, "byte at gpa 0x%llx changed (0x%02x -> 0x%02x) outside "
					"every device-writable descriptor\n",
				(unsigned long long)(RW_GPA + (unsigned)i), g_rw_orig[i], g_rw[i]);
			abort();
		}
	}
	return 0;
}
