/* SPDX-License-Identifier: MIT */
/*
 * test_virtqueue.c - device-side virtqueue (src/virtio/virtqueue.c) against
 * the driver simulator of vq_driver.c: it owns split or packed rings in a
 * malloc'd "guest memory" arena registered with zoc_mem_add_region_hva(),
 * adds buffers the way a virtio driver does and reads completions back.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/log.h"
#include "link/dma.h"
#include "virtio/virtio.h"
#include "core/reactor.h"
#include "virtio/virtqueue.h"
#include "vq_driver.h"

/* ------------------------------------------------------------------ */
/* guest memory arena                                                  */

#define ARENA_SIZE (8u << 20)
#define ARENA_GPA 0x40000000ull
#define HALF (ARENA_SIZE / 2) /* registered as two adjacent regions */
#define OFF_DESC 0x0
#define OFF_DRIVER 0x10000
#define OFF_DEVICE 0x20000
#define OFF_INDIRECT 0x40000 /* 512 bytes (32 entries) per buffer id */
#define IND_SLOT 512
#define OFF_DATA (1u << 20) /* 8 KiB of data per buffer id */
#define DATA_SLOT 8192
#define UNMAPPED_GPA 0x1000ull
#define MAX_SEGS 32

struct drv {
	struct vqd_mem g;
	uint8_t *arena;
	struct zoc_mem *mem;
	struct vqd q; /* the rings */
	bool event_idx, indirect;
	struct zoc_vq_config cfg;
	struct zoc_vq *vq;
	int callfd;
	uint32_t *token;
	struct zoc_vq_inflight *inflight;
};

static uint8_t *gpa_ptr(struct drv *d, uint64_t gpa)
{
	return vqd_mem_ptr(&d->g, gpa);
}

static uint64_t data_gpa(uint16_t id)
{
	return ARENA_GPA + OFF_DATA + (uint64_t)id * DATA_SLOT;
}

static struct zoc_vq *drv_create_vq(struct drv *d, uint32_t base)
{
	d->cfg.base = base;
	d->vq = zoc_vq_create(&d->cfg);
	return d->vq;
}

static struct drv *drv_new(uint16_t size, bool packed, bool event_idx, bool indirect)
{
	struct drv *d = calloc(1, sizeof(*d));
	struct vqd_layout lay = {
		.size = size,
		.packed = packed,
		.desc = ARENA_GPA + OFF_DESC,
		.driver = ARENA_GPA + OFF_DRIVER,
		.device = ARENA_GPA + OFF_DEVICE,
		.ind = ARENA_GPA + OFF_INDIRECT,
		.ind_slot = IND_SLOT,
		.max_segs = MAX_SEGS,
	};

	assert_non_null(d);
	assert_true(size <= 512);
	vqd_mem_init(&d->g);
	d->mem = d->g.mem;
	d->arena = vqd_mem_alloc(&d->g, ARENA_GPA, ARENA_SIZE);
	vqd_mem_map(&d->g, ARENA_GPA, HALF, 0, true);
	vqd_mem_map(&d->g, ARENA_GPA + HALF, HALF, 0, true);
	vqd_init(&d->q, &d->g, &lay);
	d->event_idx = event_idx;
	d->indirect = indirect;
	d->token = calloc(size, sizeof(uint32_t));
	d->callfd = eventfd(0, EFD_NONBLOCK);
	assert_true(d->callfd >= 0);

	vqd_vq_config(&d->q, &d->cfg);
	d->cfg.event_idx = event_idx;
	d->cfg.indirect = indirect;
	d->cfg.base = packed ? 0x8000 : 0;
	d->cfg.inflight = NULL;
	d->cfg.callfd = d->callfd;
	return d;
}

static void drv_free(struct drv *d)
{
	zoc_vq_destroy(d->vq);
	close(d->callfd);
	vqd_fini(&d->q);
	free(d->token);
	free(d->inflight);
	vqd_mem_fini(&d->g);
	free(d);
}

static struct drv *drv_start(uint16_t size, bool packed, bool event_idx, bool indirect)
{
	struct drv *d = drv_new(size, packed, event_idx, indirect);

	assert_non_null(drv_create_vq(d, d->cfg.base));
	return d;
}

/* Adds a buffer; returns its id (split head / packed buffer id) or -1 if the
 * ring is full. */
static int drv_add(struct drv *d, const struct vqd_seg *segs, int n, bool use_ind, uint32_t token)
{
	int id = vqd_add(&d->q, segs, n, use_ind);

	if (id < 0)
		return -1;
	d->token[id] = token;
	return id;
}

/* Reads one completion; returns false if there is none. */
static bool drv_get_used(struct drv *d, uint16_t *id, uint32_t *len)
{
	return vqd_get_used(&d->q, id, len);
}

static uint64_t drain_callfd(struct drv *d)
{
	uint64_t v = 0;

	if (read(d->callfd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

/* Copies the device-readable part of elem into buf. */
static size_t elem_read(const struct zoc_vq_elem *e, void *buf, size_t cap)
{
	size_t off = 0;

	for (unsigned i = 0; i < e->out_num && off < cap; i++) {
		size_t n = e->iov[i].iov_len < cap - off ? e->iov[i].iov_len : cap - off;

		memcpy((uint8_t *)buf + off, e->iov[i].iov_base, n);
		off += n;
	}
	return off;
}

/* Writes buf into the device-writable part of elem. */
static size_t elem_write(const struct zoc_vq_elem *e, const void *buf, size_t len)
{
	size_t off = 0;

	for (unsigned i = e->out_num; i < (unsigned)(e->out_num + e->in_num) && off < len; i++) {
		size_t n = e->iov[i].iov_len < len - off ? e->iov[i].iov_len : len - off;

		memcpy(e->iov[i].iov_base, (const uint8_t *)buf + off, n);
		off += n;
	}
	return off;
}

static struct zoc_vq_elem g_elem;

/* ------------------------------------------------------------------ */
/* basic operation, every feature combination                          */

static void check_basic(bool packed, bool event_idx, bool indirect)
{
	struct drv *d = drv_start(packed ? 12 : 16, packed, event_idx, indirect);
	struct zoc_vq_elem *e = &g_elem;
	uint16_t id;
	uint32_t len;
	int rc;

	for (int round = 0; round < 40; round++) { /* wraps the rings a few times */
		uint64_t base = data_gpa((uint16_t)(round % 8));
		struct vqd_seg segs[3] = {
			{base, 16, false},
			{base + 16, 512, true},
			{base + 528, 1, true},
		};
		bool ind = indirect && (round & 1);

		memcpy(gpa_ptr(d, base), "request-header!", 16);
		rc = drv_add(d, segs, 3, ind, (uint32_t)round);
		assert_true(rc >= 0);
		assert_true(zoc_vq_has_work(d->vq));

		assert_int_equal(zoc_vq_pop(d->vq, e), 1);
		assert_int_equal(e->id, rc);
		assert_int_equal(e->out_num, 1);
		assert_int_equal(e->in_num, 2);
		assert_int_equal(e->out_len, 16);
		assert_int_equal(e->in_len, 513);
		assert_false(e->resubmitted);
		assert_int_equal(e->ndescs, ind ? 1 : (packed ? 3 : 3));
		assert_ptr_equal(e->iov[0].iov_base, gpa_ptr(d, base));
		assert_ptr_equal(e->iov[1].iov_base, gpa_ptr(d, base + 16));
		assert_int_equal(e->iov[2].iov_len, 1);
		assert_memory_equal(e->iov[0].iov_base, "request-header!", 16);
		memset(e->iov[1].iov_base, 0xab, 512);
		assert_int_equal(zoc_vq_inflight_count(d->vq), 1);
		assert_int_equal(zoc_vq_pop(d->vq, e), 0);
		assert_false(zoc_vq_has_work(d->vq));

		zoc_vq_push(d->vq, e, 513);
		assert_int_equal(zoc_vq_inflight_count(d->vq), 0);
		assert_true(drv_get_used(d, &id, &len));
		assert_int_equal(id, rc);
		assert_int_equal(len, 513);
		assert_false(drv_get_used(d, &id, &len));
		assert_int_equal(*gpa_ptr(d, base + 100), 0xab);
		zoc_vq_notify(d->vq);
	}
	assert_int_equal(zoc_vq_get_stats(d->vq)->pops, 40);
	assert_int_equal(zoc_vq_get_stats(d->vq)->pushes, 40);
	assert_false(zoc_vq_broken(d->vq));
	drv_free(d);
}

static void test_basic_all(void **state)
{
	(void)state;
	for (int m = 0; m < 8; m++)
		check_basic(m & 1, m & 2, m & 4);
}

/* A buffer that crosses from one memory region into the next. */
static void test_cross_region(void **state)
{
	(void)state;
	for (int packed = 0; packed < 2; packed++) {
		struct drv *d = drv_start(8, packed, false, false);
		struct vqd_seg segs[2] = {
			{ARENA_GPA + HALF - 8, 16, false},
			{ARENA_GPA + HALF - 100, 200, true},
		};

		assert_true(drv_add(d, segs, 2, false, 0) >= 0);
		assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
		assert_int_equal(g_elem.out_num, 2);
		assert_int_equal(g_elem.in_num, 2);
		assert_int_equal(g_elem.iov[0].iov_len, 8);
		assert_int_equal(g_elem.iov[1].iov_len, 8);
		assert_ptr_equal(g_elem.iov[1].iov_base, d->arena + HALF);
		assert_int_equal(g_elem.iov[2].iov_len, 100);
		assert_int_equal(g_elem.iov[3].iov_len, 100);
		assert_int_equal(g_elem.out_len, 16);
		assert_int_equal(g_elem.in_len, 200);
		drv_free(d);
	}
}

/* One-descriptor chains take the inline path when the buffer lies in one
 * region; over two regions, unmapped or writable into read-only memory they
 * must come out exactly as a walked chain would. */
static void test_split_single_desc(void **state)
{
	struct drv *d = drv_start(8, false, false, false);
	static uint8_t ro[4096];

	(void)state;
	assert_int_equal(zoc_mem_add_region_hva(d->mem, 0x100000, sizeof(ro), 0, ro, false), 0);
	struct {
		struct vqd_seg s;
		int rc;
		unsigned niov;
	} cases[] = {
		{{data_gpa(1), 76, false}, 1, 1},
		{{data_gpa(2), 1514, true}, 1, 1},
		{{ARENA_GPA + HALF - 8, 16, false}, 1, 2}, /* over the boundary */
		{{ARENA_GPA + HALF - 8, 16, true}, 1, 2},
		{{UNMAPPED_GPA, 64, false}, -EFAULT, 1},
		{{ARENA_GPA + ARENA_SIZE - 4, 64, true}, -EFAULT, 1},
		{{0x100000, 16, false}, 1, 1},
		{{0x100000, 16, true}, -EFAULT, 1}, /* writable in read-only memory */
		{{0x100000 + 4090, 16, false}, -EFAULT, 1},
	};
	uint16_t id;
	uint32_t len;

	for (unsigned k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		int idr = drv_add(d, &cases[k].s, 1, false, k);

		assert_true(idr >= 0);
		assert_int_equal(zoc_vq_pop(d->vq, &g_elem), cases[k].rc);
		assert_int_equal(g_elem.id, idr);
		assert_int_equal(g_elem.ndescs, 1);
		if (cases[k].s.write) {
			assert_int_equal(g_elem.out_num, 0);
			assert_int_equal(g_elem.in_num, cases[k].niov);
		} else {
			assert_int_equal(g_elem.in_num, 0);
			assert_int_equal(g_elem.out_num, cases[k].niov);
		}
		if (cases[k].rc == 1) {
			size_t sum = 0;

			for (unsigned i = 0; i < cases[k].niov; i++)
				sum += g_elem.iov[i].iov_len;
			assert_int_equal(sum, cases[k].s.len);
			assert_int_equal(cases[k].s.write ? g_elem.in_len : g_elem.out_len,
					 cases[k].s.len);
			assert_int_equal(cases[k].s.write ? g_elem.out_len : g_elem.in_len, 0);
		} else {
			assert_null(g_elem.iov[0].iov_base);
		}
		zoc_vq_push(d->vq, &g_elem, 0);
		assert_true(drv_get_used(d, &id, &len));
		assert_int_equal(id, idr);
	}
	assert_false(zoc_vq_broken(d->vq));
	drv_free(d);
}

/* Out-of-order completion. */
static void check_out_of_order(bool packed, bool indirect)
{
	struct drv *d = drv_start(8, packed, false, indirect);
	struct zoc_vq_elem *elems = calloc(8, sizeof(*elems));
	int ids[8];
	uint16_t id;
	uint32_t len;

	for (int round = 0; round < 10; round++) {
		int n = indirect ? 8 : 4; /* direct: 2 descriptors each */

		for (int i = 0; i < n; i++) {
			struct vqd_seg s[2] = {{data_gpa((uint16_t)i), 8, false},
					   {data_gpa((uint16_t)i) + 8, 64, true}};

			ids[i] = drv_add(d, s, 2, indirect, (uint32_t)i);
			assert_true(ids[i] >= 0);
		}
		assert_int_equal(
			drv_add(d, (struct vqd_seg[]){{data_gpa(0), 1, false}}, 1, false, 0), -1);
		for (int i = 0; i < n; i++) {
			assert_int_equal(zoc_vq_pop(d->vq, &elems[i]), 1);
			assert_int_equal(elems[i].id, ids[i]);
		}
		/* complete odd ones first, then even ones backwards */
		int order[8], k = 0;
		for (int i = 1; i < n; i += 2)
			order[k++] = i;
		for (int i = n - 2; i >= 0; i -= 2)
			order[k++] = i;
		for (int i = 0; i < n; i++)
			zoc_vq_push(d->vq, &elems[order[i]], (uint32_t)(100 + order[i]));
		for (int i = 0; i < n; i++) {
			assert_true(drv_get_used(d, &id, &len));
			assert_int_equal(id, ids[order[i]]);
			assert_int_equal(len, 100 + order[i]);
		}
		assert_false(drv_get_used(d, &id, &len));
	}
	free(elems);
	drv_free(d);
}

static void test_out_of_order(void **state)
{
	(void)state;
	for (int m = 0; m < 4; m++)
		check_out_of_order(m & 1, m & 2);
}

/* Many iterations with random batches, chains and completion order; data is
 * checked end to end. */
static void check_random(uint16_t size, bool packed, bool event_idx, bool indirect,
			 unsigned seed)
{
	struct drv *d = drv_start(size, packed, event_idx, indirect);
	struct zoc_vq_elem *held = calloc(size, sizeof(*held));
	uint64_t *in_gpa = calloc(size, sizeof(uint64_t));
	uint32_t *exp_len = calloc(size, sizeof(uint32_t));
	uint32_t nheld = 0, next_token = 1, completed = 0;
	uint16_t id;
	uint32_t len;

	srand(seed);
	for (int iter = 0; iter < 20000; iter++) {
		int action = rand() % 3;

		if (action == 0) { /* driver adds */
			int nout = 1 + rand() % 3, nin = rand() % 3, n = nout + nin;
			struct vqd_seg s[6];
			bool ind = indirect && (rand() & 1);
			uint32_t tok = next_token;
			int idg;

			/* the data slot depends on the id, unknown before add:
			 * use a scratch slot, then rewrite addresses */
			for (int i = 0; i < n; i++)
				s[i] = (struct vqd_seg){0, (uint32_t)(8 + rand() % 200), i >= nout};
			/* pick the slot of the id the driver will use */
			if (packed ? d->q.nids == 0 : d->q.nfree == 0)
				continue; /* full */
			uint16_t will = packed ? d->q.id_stack[d->q.nids - 1] :
						 d->q.free_stack[d->q.nfree - 1];
			uint64_t g = data_gpa(will);
			exp_len[will] = 0;
			for (int i = 0; i < n; i++) {
				s[i].gpa = g;
				g += s[i].len;
				if (s[i].write)
					exp_len[will] += s[i].len;
			}
			in_gpa[will] = nin ? s[nout].gpa : 0;
			memcpy(gpa_ptr(d, s[0].gpa), &tok, 4);
			idg = drv_add(d, s, n, ind, tok);
			if (idg < 0)
				continue;
			assert_int_equal(idg, will);
			next_token++;
		} else if (action == 1) { /* device pops a batch */
			int r;

			while (nheld < size && (r = zoc_vq_pop(d->vq, &held[nheld])) == 1) {
				uint32_t tok = 0;

				elem_read(&held[nheld], &tok, 4);
				assert_int_equal(tok, d->token[held[nheld].id]);
				nheld++;
				if (rand() % 4 == 0)
					break;
			}
			assert_false(zoc_vq_broken(d->vq));
		} else if (nheld) { /* device completes some, random order */
			int k = 1 + rand() % (int)nheld;

			while (k--) {
				uint32_t pick = (uint32_t)rand() % nheld;
				struct zoc_vq_elem *e = &held[pick];
				uint32_t tok = d->token[e->id] ^ 0x5a5a5a5a;
				uint32_t w = e->in_len >= 4 ? 4 : 0;

				if (w)
					elem_write(e, &tok, 4);
				zoc_vq_push(d->vq, e, e->in_len);
				if (pick != nheld - 1)
					memcpy(e, &held[nheld - 1], sizeof(*e));
				nheld--;
			}
			zoc_vq_notify(d->vq);
			while (drv_get_used(d, &id, &len)) {
				uint32_t want = d->token[id] ^ 0x5a5a5a5a;

				completed++;
				assert_int_equal(len, exp_len[id]);
				if (in_gpa[id])
					assert_memory_equal(gpa_ptr(d, in_gpa[id]), &want, 4);
			}
		}
	}
	/* drain */
	for (;;) {
		int r = zoc_vq_pop(d->vq, &held[nheld]);

		assert_true(r >= 0);
		if (r == 0)
			break;
		nheld++;
	}
	while (nheld)
		zoc_vq_push(d->vq, &held[--nheld], 0);
	while (drv_get_used(d, &id, &len))
		completed++;
	assert_int_equal(d->q.outstanding, 0);
	assert_int_equal(zoc_vq_inflight_count(d->vq), 0);
	assert_int_equal(completed, next_token - 1);
	assert_int_equal(zoc_vq_get_stats(d->vq)->pops, completed);
	assert_true(completed > (size >= 7 ? 3000u : 300u));
	free(held);
	free(in_gpa);
	free(exp_len);
	drv_free(d);
}

static void test_random_wraparound(void **state)
{
	(void)state;
	for (int m = 0; m < 8; m++) {
		bool packed = m & 1;

		check_random(packed ? 13 : 16, packed, m & 2, m & 4, 1000 + (unsigned)m);
		check_random(packed ? 7 : 4, packed, m & 2, m & 4, 2000 + (unsigned)m);
	}
	/* the smallest and a larger queue */
	check_random(1, false, true, false, 7);
	check_random(1, true, true, false, 8);
	check_random(256, false, true, true, 9);
	check_random(300, true, true, true, 10);
}

/* ------------------------------------------------------------------ */
/* hostile drivers: split                                              */

static void publish_split(struct drv *d, uint16_t head)
{
	vqd_split_publish(&d->q, head);
}

static void expect_broken(struct drv *d)
{
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), -EIO);
	assert_true(zoc_vq_broken(d->vq));
	assert_true(zoc_vq_has_work(d->vq));
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), -EIO);
	assert_true(zoc_vq_get_stats(d->vq)->bad_chains >= 1);
}

static void test_split_head_out_of_range(void **state)
{
	struct drv *d = drv_start(8, false, false, false);

	(void)state;
	publish_split(d, 8);
	expect_broken(d);
	drv_free(d);
	d = drv_start(8, false, false, false);
	publish_split(d, 0xffff);
	expect_broken(d);
	drv_free(d);
}

static void test_split_next_out_of_range(void **state)
{
	struct drv *d = drv_start(8, false, false, false);

	(void)state;
	d->q.desc[0] = (struct virtq_desc){data_gpa(0), 8, VIRTQ_DESC_F_NEXT, 8};
	publish_split(d, 0);
	expect_broken(d);
	drv_free(d);
}

static void test_split_loop(void **state)
{
	struct drv *d = drv_start(8, false, false, false);

	(void)state;
	d->q.desc[0] = (struct virtq_desc){data_gpa(0), 8, VIRTQ_DESC_F_NEXT, 1};
	d->q.desc[1] = (struct virtq_desc){data_gpa(0), 8, VIRTQ_DESC_F_NEXT, 0};
	publish_split(d, 0);
	expect_broken(d);
	drv_free(d);

	/* self loop */
	d = drv_start(8, false, false, false);
	d->q.desc[3] = (struct virtq_desc){data_gpa(0), 8, VIRTQ_DESC_F_NEXT, 3};
	publish_split(d, 3);
	expect_broken(d);
	drv_free(d);
}

static void test_split_chain_whole_queue(void **state)
{
	/* A chain using every descriptor exactly once is legal... */
	struct drv *d = drv_start(8, false, false, false);

	(void)state;
	for (int i = 0; i < 8; i++)
		d->q.desc[i] = (struct virtq_desc){data_gpa(0), 8,
						 i < 7 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1)};
	publish_split(d, 0);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
	assert_int_equal(g_elem.ndescs, 8);
	assert_int_equal(g_elem.out_num, 8);
	drv_free(d);
	/* ... one more (back to the start) is a loop. */
	d = drv_start(8, false, false, false);
	for (int i = 0; i < 8; i++)
		d->q.desc[i] = (struct virtq_desc){data_gpa(0), 8, VIRTQ_DESC_F_NEXT,
						 (uint16_t)((i + 1) & 7)};
	publish_split(d, 0);
	expect_broken(d);
	drv_free(d);
}

static struct virtq_desc *ind_table(struct drv *d, uint64_t *gpa)
{
	*gpa = ARENA_GPA + OFF_INDIRECT;
	return (void *)gpa_ptr(d, *gpa);
}

static void test_split_indirect_hostile(void **state)
{
	struct drv *d;
	struct virtq_desc *t;
	uint64_t tg;

	(void)state;
	/* length 0, not a multiple of 16, absurdly large */
	uint32_t bad_lens[] = {0, 17, 24, 0x80000 + 16, 0xfffffff0};
	for (unsigned k = 0; k < sizeof(bad_lens) / sizeof(bad_lens[0]); k++) {
		d = drv_start(8, false, false, true);
		t = ind_table(d, &tg);
		t[0] = (struct virtq_desc){data_gpa(0), 8, 0, 0};
		d->q.desc[0] = (struct virtq_desc){tg, bad_lens[k], VIRTQ_DESC_F_INDIRECT, 0};
		publish_split(d, 0);
		expect_broken(d);
		drv_free(d);
	}

	/* nested */
	d = drv_start(8, false, false, true);
	t = ind_table(d, &tg);
	t[0] = (struct virtq_desc){data_gpa(0), 8, VIRTQ_DESC_F_NEXT, 1};
	t[1] = (struct virtq_desc){tg, 32, VIRTQ_DESC_F_INDIRECT, 0};
	d->q.desc[0] = (struct virtq_desc){tg, 32, VIRTQ_DESC_F_INDIRECT, 0};
	publish_split(d, 0);
	expect_broken(d);
	drv_free(d);

	/* INDIRECT together with NEXT */
	d = drv_start(8, false, false, true);
	t = ind_table(d, &tg);
	t[0] = (struct virtq_desc){data_gpa(0), 8, 0, 0};
	d->q.desc[0] = (struct virtq_desc){tg, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1};
	d->q.desc[1] = (struct virtq_desc){data_gpa(0), 8, 0, 0};
	publish_split(d, 0);
	expect_broken(d);
	drv_free(d);

	/* INDIRECT without the feature */
	d = drv_start(8, false, false, false);
	t = ind_table(d, &tg);
	t[0] = (struct virtq_desc){data_gpa(0), 8, 0, 0};
	d->q.desc[0] = (struct virtq_desc){tg, 16, VIRTQ_DESC_F_INDIRECT, 0};
	publish_split(d, 0);
	expect_broken(d);
	drv_free(d);

	/* loop inside the table */
	d = drv_start(8, false, false, true);
	t = ind_table(d, &tg);
	t[0] = (struct virtq_desc){data_gpa(0), 8, VIRTQ_DESC_F_NEXT, 1};
	t[1] = (struct virtq_desc){data_gpa(0), 8, VIRTQ_DESC_F_NEXT, 0};
	d->q.desc[0] = (struct virtq_desc){tg, 32, VIRTQ_DESC_F_INDIRECT, 0};
	publish_split(d, 0);
	expect_broken(d);
	drv_free(d);

	/* next beyond the table (but inside the queue size) */
	d = drv_start(8, false, false, true);
	t = ind_table(d, &tg);
	t[0] = (struct virtq_desc){data_gpa(0), 8, VIRTQ_DESC_F_NEXT, 2};
	t[1] = (struct virtq_desc){data_gpa(0), 8, 0, 0};
	d->q.desc[0] = (struct virtq_desc){tg, 32, VIRTQ_DESC_F_INDIRECT, 0};
	publish_split(d, 0);
	expect_broken(d);
	drv_free(d);

	/* table outside guest memory: fails the request only */
	d = drv_start(8, false, false, true);
	d->q.desc[0] = (struct virtq_desc){UNMAPPED_GPA, 32, VIRTQ_DESC_F_INDIRECT, 0};
	publish_split(d, 0);
	d->q.desc[1] = (struct virtq_desc){data_gpa(1), 8, 0, 0};
	publish_split(d, 1);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), -EFAULT);
	assert_int_equal(g_elem.id, 0);
	assert_false(zoc_vq_broken(d->vq));
	zoc_vq_push(d->vq, &g_elem, 0);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
	assert_int_equal(g_elem.id, 1);
	assert_int_equal(zoc_vq_get_stats(d->vq)->bad_addrs, 1);
	drv_free(d);

	/* table straddling the end of guest memory */
	d = drv_start(8, false, false, true);
	d->q.desc[0] = (struct virtq_desc){ARENA_GPA + ARENA_SIZE - 16, 32,
					 VIRTQ_DESC_F_INDIRECT, 0};
	publish_split(d, 0);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), -EFAULT);
	assert_false(zoc_vq_broken(d->vq));
	drv_free(d);

	/* direct descriptors followed by an indirect one are legal */
	d = drv_start(8, false, false, true);
	t = ind_table(d, &tg);
	t[0] = (struct virtq_desc){data_gpa(0) + 100, 10, VIRTQ_DESC_F_NEXT, 1};
	t[1] = (struct virtq_desc){data_gpa(0) + 200, 20, VIRTQ_DESC_F_WRITE, 0};
	d->q.desc[5] = (struct virtq_desc){data_gpa(0), 4, VIRTQ_DESC_F_NEXT, 6};
	d->q.desc[6] = (struct virtq_desc){tg, 32, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0};
	publish_split(d, 5);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
	assert_int_equal(g_elem.id, 5);
	assert_int_equal(g_elem.ndescs, 2);
	assert_int_equal(g_elem.out_num, 2);
	assert_int_equal(g_elem.in_num, 1);
	assert_int_equal(g_elem.out_len, 14);
	assert_int_equal(g_elem.in_len, 20);
	drv_free(d);

	/* a table that is not 16-byte aligned still works */
	d = drv_start(8, false, false, true);
	tg = ARENA_GPA + OFF_INDIRECT + 3;
	struct virtq_desc u = {data_gpa(0), 8, 0, 0};
	memcpy(gpa_ptr(d, tg), &u, sizeof(u));
	d->q.desc[0] = (struct virtq_desc){tg, 16, VIRTQ_DESC_F_INDIRECT, 0};
	publish_split(d, 0);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
	assert_int_equal(g_elem.out_len, 8);
	drv_free(d);
}

static void test_split_zero_len(void **state)
{
	struct drv *d = drv_start(8, false, false, false);

	(void)state;
	d->q.desc[0] = (struct virtq_desc){data_gpa(0), 8, VIRTQ_DESC_F_NEXT, 1};
	d->q.desc[1] = (struct virtq_desc){UNMAPPED_GPA, 0, VIRTQ_DESC_F_NEXT, 2};
	d->q.desc[2] = (struct virtq_desc){data_gpa(0) + 8, 1, VIRTQ_DESC_F_WRITE, 0};
	publish_split(d, 0);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
	assert_int_equal(g_elem.ndescs, 3);
	assert_int_equal(g_elem.out_num, 1);
	assert_int_equal(g_elem.in_num, 1);
	assert_int_equal(g_elem.out_len, 8);
	assert_int_equal(g_elem.in_len, 1);
	drv_free(d);
}

static void test_split_readable_after_writable(void **state)
{
	struct drv *d = drv_start(8, false, false, false);

	(void)state;
	d->q.desc[0] =
		(struct virtq_desc){data_gpa(0), 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1};
	d->q.desc[1] = (struct virtq_desc){data_gpa(0), 8, 0, 0};
	publish_split(d, 0);
	expect_broken(d);
	drv_free(d);

	/* ... also across an indirect table */
	d = drv_start(8, false, false, true);
	uint64_t tg;
	struct virtq_desc *t = ind_table(d, &tg);
	t[0] = (struct virtq_desc){data_gpa(0), 8, 0, 0};
	d->q.desc[0] =
		(struct virtq_desc){data_gpa(0), 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1};
	d->q.desc[1] = (struct virtq_desc){tg, 16, VIRTQ_DESC_F_INDIRECT, 0};
	publish_split(d, 0);
	expect_broken(d);
	drv_free(d);
}

static void test_split_bad_buffer(void **state)
{
	struct drv *d = drv_start(8, false, false, false);
	uint16_t id;
	uint32_t len;

	(void)state;
	/* unmapped, partly mapped, wrapping */
	uint64_t bad[] = {UNMAPPED_GPA, ARENA_GPA + ARENA_SIZE - 4, UINT64_MAX - 2};
	for (unsigned k = 0; k < 3; k++) {
		struct vqd_seg s[3] = {{data_gpa(0), 16, false}, {bad[k], 64, true},
				   {data_gpa(0) + 16, 1, true}};
		int idr = drv_add(d, s, 3, false, k);

		assert_int_equal(zoc_vq_pop(d->vq, &g_elem), -EFAULT);
		assert_int_equal(g_elem.id, idr);
		assert_int_equal(g_elem.ndescs, 3);
		assert_int_equal(g_elem.out_num, 1);
		assert_true(g_elem.in_num >= 1);
		assert_null(g_elem.iov[1].iov_base);
		assert_false(zoc_vq_broken(d->vq));
		assert_int_equal(zoc_vq_inflight_count(d->vq), 1);
		zoc_vq_push(d->vq, &g_elem, 0);
		assert_true(drv_get_used(d, &id, &len));
		assert_int_equal(id, idr);
	}
	/* the queue still works */
	struct vqd_seg ok = {data_gpa(0), 16, false};
	assert_true(drv_add(d, &ok, 1, false, 9) >= 0);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
	assert_int_equal(zoc_vq_get_stats(d->vq)->bad_addrs, 3);
	drv_free(d);
}

static void test_readonly_region(void **state)
{
	(void)state;
	for (int packed = 0; packed < 2; packed++) {
		struct drv *d = drv_start(8, packed, false, false);
		static uint8_t ro[4096];

		assert_int_equal(zoc_mem_add_region_hva(d->mem, 0x100000, sizeof(ro), 0, ro, false),
				 0);
		struct vqd_seg s[2] = {{0x100000, 16, false}, {0x100000 + 16, 16, true}};
		assert_true(drv_add(d, s, 2, false, 0) >= 0);
		assert_int_equal(zoc_vq_pop(d->vq, &g_elem), -EFAULT);
		assert_int_equal(g_elem.out_num, 1);
		assert_ptr_equal(g_elem.iov[0].iov_base, ro);
		assert_null(g_elem.iov[1].iov_base);
		drv_free(d);
	}
}

static void test_too_many_segments(void **state)
{
	(void)state;
	/* 300 one-byte readable descriptors: more than ZOC_VQ_MAX_IOV */
	struct drv *d = drv_start(512, false, false, false);
	for (int i = 0; i < 300; i++)
		d->q.desc[i] = (struct virtq_desc){data_gpa(0) + (uint64_t)i, 1,
						 i < 299 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1)};
	publish_split(d, 0);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), -EFAULT);
	assert_int_equal(g_elem.ndescs, 300);
	assert_int_equal(g_elem.out_num, ZOC_VQ_MAX_IOV);
	assert_false(zoc_vq_broken(d->vq));
	drv_free(d);
}

static void test_length_overflow(void **state)
{
	(void)state;
	/* Three 2 GiB readable buffers: out_len would overflow 32 bits. The
	 * memory is not that big, so the request fails, the queue lives. */
	struct drv *d = drv_start(8, false, false, false);
	for (int i = 0; i < 3; i++)
		d->q.desc[i] = (struct virtq_desc){ARENA_GPA, 0x80000000u,
						 i < 2 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1)};
	publish_split(d, 0);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), -EFAULT);
	assert_false(zoc_vq_broken(d->vq));
	drv_free(d);
}

static void test_split_avail_jump(void **state)
{
	struct drv *d = drv_start(8, false, false, false);

	(void)state;
	struct vqd_seg s = {data_gpa(0), 8, false};
	assert_true(drv_add(d, &s, 1, false, 0) >= 0);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
	d->q.avail->idx = (uint16_t)(d->q.avail_idx + 9); /* 9 new > size 8 */
	expect_broken(d);
	drv_free(d);

	/* exactly size new entries is fine */
	d = drv_start(8, false, false, false);
	for (int i = 0; i < 8; i++) {
		d->q.desc[i] = (struct virtq_desc){data_gpa(0), 8, 0, 0};
		d->q.avail->ring[i] = (uint16_t)i;
	}
	d->q.avail->idx = 8;
	for (int i = 0; i < 8; i++)
		assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 0);
	drv_free(d);

	/* going backwards is a jump too */
	d = drv_start(8, false, false, false);
	d->q.avail->idx = 0xffff;
	expect_broken(d);
	drv_free(d);
}

/* ------------------------------------------------------------------ */
/* hostile drivers: packed                                             */

static void publish_packed(struct drv *d, uint16_t slot, struct virtq_packed_desc x, bool wrap)
{
	x.flags = (uint16_t)(x.flags | (wrap ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED));
	d->q.pdesc[slot] = x;
}

static void test_packed_hostile(void **state)
{
	struct drv *d;
	struct virtq_packed_desc *t;
	uint64_t tg = ARENA_GPA + OFF_INDIRECT;

	(void)state;
	/* chain longer than the queue: every descriptor has NEXT */
	d = drv_start(6, true, false, false);
	for (uint16_t i = 0; i < 6; i++)
		publish_packed(d, i, (struct virtq_packed_desc){data_gpa(0), 8, 0,
								VIRTQ_DESC_F_NEXT}, true);
	expect_broken(d);
	drv_free(d);

	/* a chain of exactly the queue size is fine */
	d = drv_start(6, true, false, false);
	for (uint16_t i = 0; i < 6; i++)
		publish_packed(d, i, (struct virtq_packed_desc){data_gpa(0), 8, 5,
			       i < 5 ? VIRTQ_DESC_F_NEXT : 0}, true);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
	assert_int_equal(g_elem.ndescs, 6);
	assert_int_equal(g_elem.id, 5);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 0);
	drv_free(d);

	/* indirect: bad lengths */
	uint32_t bad_lens[] = {0, 17, 0xfffffff0};
	for (unsigned k = 0; k < 3; k++) {
		d = drv_start(8, true, false, true);
		publish_packed(d, 0, (struct virtq_packed_desc){tg, bad_lens[k], 0,
								VIRTQ_DESC_F_INDIRECT}, true);
		expect_broken(d);
		drv_free(d);
	}
	/* indirect without the feature */
	d = drv_start(8, true, false, false);
	publish_packed(d, 0, (struct virtq_packed_desc){tg, 16, 0, VIRTQ_DESC_F_INDIRECT}, true);
	expect_broken(d);
	drv_free(d);
	/* indirect with NEXT, indirect inside a chain */
	d = drv_start(8, true, false, true);
	publish_packed(d, 0, (struct virtq_packed_desc){tg, 16, 0,
			       VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT}, true);
	publish_packed(d, 1, (struct virtq_packed_desc){data_gpa(0), 8, 0, 0}, true);
	expect_broken(d);
	drv_free(d);
	d = drv_start(8, true, false, true);
	publish_packed(d, 0, (struct virtq_packed_desc){data_gpa(0), 8, 0, VIRTQ_DESC_F_NEXT}, true);
	publish_packed(d, 1, (struct virtq_packed_desc){tg, 16, 0, VIRTQ_DESC_F_INDIRECT}, true);
	expect_broken(d);
	drv_free(d);
	/* nested flags inside a packed table are ignored (spec: reserved) */
	d = drv_start(8, true, false, true);
	t = (void *)gpa_ptr(d, tg);
	t[0] = (struct virtq_packed_desc){data_gpa(0), 8, 0, VIRTQ_DESC_F_INDIRECT};
	t[1] = (struct virtq_packed_desc){data_gpa(0), 8, 0, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT};
	publish_packed(d, 0, (struct virtq_packed_desc){tg, 32, 3, VIRTQ_DESC_F_INDIRECT}, true);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
	assert_int_equal(g_elem.id, 3);
	assert_int_equal(g_elem.out_num, 1);
	assert_int_equal(g_elem.in_num, 1);
	drv_free(d);
	/* readable after writable inside the table */
	d = drv_start(8, true, false, true);
	t = (void *)gpa_ptr(d, tg);
	t[0] = (struct virtq_packed_desc){data_gpa(0), 8, 0, VIRTQ_DESC_F_WRITE};
	t[1] = (struct virtq_packed_desc){data_gpa(0), 8, 0, 0};
	publish_packed(d, 0, (struct virtq_packed_desc){tg, 32, 3, VIRTQ_DESC_F_INDIRECT}, true);
	expect_broken(d);
	drv_free(d);
	/* readable after writable in the ring */
	d = drv_start(8, true, false, false);
	publish_packed(d, 0, (struct virtq_packed_desc){data_gpa(0), 8, 0,
			       VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE}, true);
	publish_packed(d, 1, (struct virtq_packed_desc){data_gpa(0), 8, 0, 0}, true);
	expect_broken(d);
	drv_free(d);
	/* table out of memory: request fails, queue lives */
	d = drv_start(8, true, false, true);
	publish_packed(d, 0, (struct virtq_packed_desc){UNMAPPED_GPA, 32, 4,
							VIRTQ_DESC_F_INDIRECT}, true);
	publish_packed(d, 1, (struct virtq_packed_desc){data_gpa(0), 8, 5, 0}, true);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), -EFAULT);
	assert_int_equal(g_elem.id, 4);
	assert_int_equal(g_elem.ndescs, 1);
	zoc_vq_push(d->vq, &g_elem, 0);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
	assert_int_equal(g_elem.id, 5);
	drv_free(d);
	/* buffer out of memory */
	d = drv_start(8, true, false, false);
	publish_packed(d, 0, (struct virtq_packed_desc){data_gpa(0), 8, 2, VIRTQ_DESC_F_NEXT}, true);
	publish_packed(d, 1, (struct virtq_packed_desc){UINT64_MAX - 1, 8, 2, VIRTQ_DESC_F_WRITE},
		       true);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), -EFAULT);
	assert_int_equal(g_elem.id, 2);
	assert_int_equal(g_elem.ndescs, 2);
	assert_null(g_elem.iov[1].iov_base);
	zoc_vq_push(d->vq, &g_elem, 0);
	assert_int_equal(d->q.pdesc[0].id, 2);
	assert_int_equal(d->q.pdesc[0].flags, VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED);
	drv_free(d);
	/* zero-length descriptor */
	d = drv_start(8, true, false, false);
	publish_packed(d, 0, (struct virtq_packed_desc){UNMAPPED_GPA, 0, 1, VIRTQ_DESC_F_NEXT}, true);
	publish_packed(d, 1, (struct virtq_packed_desc){data_gpa(0), 8, 1, VIRTQ_DESC_F_WRITE}, true);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
	assert_int_equal(g_elem.out_num, 0);
	assert_int_equal(g_elem.in_num, 1);
	drv_free(d);
	/* stale descriptors (wrong wrap / both bits) are not available */
	d = drv_start(8, true, false, false);
	publish_packed(d, 0, (struct virtq_packed_desc){data_gpa(0), 8, 1, 0}, false);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 0);
	d->q.pdesc[0].flags = VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED;
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 0);
	assert_false(zoc_vq_has_work(d->vq));
	drv_free(d);
}

/* ------------------------------------------------------------------ */
/* notifications                                                       */

static void push_one(struct drv *d)
{
	struct vqd_seg s = {data_gpa(0), 8, false};
	uint16_t id;
	uint32_t len;

	assert_true(drv_add(d, &s, 1, false, 0) >= 0);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
	zoc_vq_push(d->vq, &g_elem, 0);
	assert_true(drv_get_used(d, &id, &len));
}

static void test_notify_split_flags(void **state)
{
	struct drv *d = drv_start(8, false, false, false);

	(void)state;
	assert_int_equal(zoc_vq_notify(d->vq), 0); /* nothing pushed */
	push_one(d);
	assert_int_equal(zoc_vq_notify(d->vq), 1);
	assert_int_equal(drain_callfd(d), 1);
	assert_int_equal(zoc_vq_notify(d->vq), 0); /* already signalled */

	d->q.avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	push_one(d);
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	assert_int_equal(drain_callfd(d), 0);
	assert_int_equal(zoc_vq_get_stats(d->vq)->suppressed, 1);

	d->q.avail->flags = 0;
	push_one(d);
	push_one(d);
	assert_int_equal(zoc_vq_notify(d->vq), 1);
	assert_int_equal(drain_callfd(d), 1);
	assert_int_equal(zoc_vq_get_stats(d->vq)->notifies, 2);

	/* kicks */
	assert_int_equal(zoc_vq_enable_notify(d->vq), 0);
	assert_int_equal(d->q.used->flags, 0);
	zoc_vq_disable_notify(d->vq);
	assert_int_equal(d->q.used->flags, VIRTQ_USED_F_NO_NOTIFY);
	struct vqd_seg s = {data_gpa(0), 8, false};
	assert_true(drv_add(d, &s, 1, false, 0) >= 0);
	assert_int_equal(zoc_vq_enable_notify(d->vq), 1); /* work slipped in */
	assert_int_equal(d->q.used->flags, 0);

	/* no callfd: decided but not signalled */
	zoc_vq_set_callfd(d->vq, -1);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
	zoc_vq_push(d->vq, &g_elem, 0);
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	drv_free(d);
}

/* zoc_vq_notify_defer(): the used index goes out at once, the signal at
 * the end of the reactor's round (once for the queues of the round); off
 * a reactor it is immediate; a queue destroyed while it waits leaves the
 * list (ASan would see the flush touch it). */
struct defer_ctx {
	struct drv *d[3];
	int round;
	uint64_t got[3]; /* callfd counts read in the poller */
};

static int defer_poll(void *arg)
{
	struct defer_ctx *c = arg;

	switch (c->round++) {
	case 0:
		for (int i = 0; i < 3; i++) {
			struct vqd_seg sg = {data_gpa(0), 8, false};
			uint16_t id;
			uint32_t len;

			assert_true(drv_add(c->d[i], &sg, 1, false, 0) >= 0);
			assert_int_equal(zoc_vq_pop(c->d[i]->vq, &g_elem), 1);
			zoc_vq_push_deferred(c->d[i]->vq, &g_elem, 0);
			zoc_vq_notify_defer(c->d[i]->vq);
			zoc_vq_notify_defer(c->d[i]->vq); /* listed once */
			assert_true(drv_get_used(c->d[i], &id, &len)); /* published */
			c->got[i] = drain_callfd(c->d[i]);
		}
		/* gone before the round ends */
		zoc_vq_destroy(c->d[2]->vq);
		c->d[2]->vq = NULL;
		break;
	case 1:
		for (int i = 0; i < 2; i++)
			c->got[i] += drain_callfd(c->d[i]) * 10;
		zoc_reactors_stop();
		break;
	}
	return 1;
}

static void test_notify_defer(void **state)
{
	struct zoc_reactor_opts o = {0};
	struct zoc_poller_ops ops = {.poll = defer_poll};
	struct defer_ctx c = {0};
	struct drv *d = drv_start(8, false, false, false);

	(void)state;
	push_one(d);
	zoc_vq_notify_defer(d->vq); /* no reactor: now */
	assert_int_equal(drain_callfd(d), 1);
	drv_free(d);

	for (int i = 0; i < 3; i++)
		c.d[i] = drv_start(8, i == 1, false, false);
	assert_int_equal(zoc_reactors_init(&o), 0);
	assert_non_null(zoc_poller_register(zoc_reactor_get(0), &ops, &c, 0, "defer"));
	assert_int_equal(zoc_reactors_run(), 0);
	zoc_reactors_fini();
	/* nothing during the round, one signal each after it, none for the gone one */
	assert_int_equal(c.got[0], 10);
	assert_int_equal(c.got[1], 10);
	assert_int_equal(c.got[2], 0);
	assert_int_equal(drain_callfd(c.d[2]), 0);
	for (int i = 0; i < 3; i++)
		drv_free(c.d[i]);
}

static void test_notify_split_event_idx(void **state)
{
	struct drv *d = drv_start(8, false, true, false);
	uint16_t *used_event = &d->q.avail->ring[8];
	uint16_t *avail_event = (uint16_t *)(void *)&d->q.used->ring[8];

	(void)state;
	/* the first decision always signals */
	*used_event = 100;
	push_one(d); /* used idx 1 */
	assert_int_equal(zoc_vq_notify(d->vq), 1);
	drain_callfd(d);
	/* driver wants an interrupt when entry 3 is used (used idx -> 4) */
	*used_event = 3;
	push_one(d); /* 2 */
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	push_one(d); /* 3 */
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	push_one(d); /* 4 */
	assert_int_equal(zoc_vq_notify(d->vq), 1);
	assert_int_equal(drain_callfd(d), 1);
	/* batch crossing the event */
	*used_event = 5;
	push_one(d); /* 5 */
	push_one(d); /* 6 */
	push_one(d); /* 7 */
	assert_int_equal(zoc_vq_notify(d->vq), 1);
	/* event already behind */
	*used_event = 2;
	push_one(d);
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	/* flags are ignored with EVENT_IDX */
	d->q.avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	*used_event = d->q.last_used;
	push_one(d);
	assert_int_equal(zoc_vq_notify(d->vq), 1);
	/* wrap of the 16-bit index */
	for (int i = 0; i < 70000; i++) {
		*used_event = d->q.last_used; /* the next one */
		push_one(d);
		assert_int_equal(zoc_vq_notify(d->vq), 1);
		if (i % 3 == 0) { /* and one it never reaches */
			*used_event = (uint16_t)(d->q.last_used - 1);
			push_one(d);
			assert_int_equal(zoc_vq_notify(d->vq), 0);
		}
	}

	/* kick side: avail_event follows last_avail, flags untouched */
	assert_int_equal(zoc_vq_enable_notify(d->vq), 0);
	assert_int_equal(*avail_event, d->q.avail_idx);
	zoc_vq_disable_notify(d->vq);
	assert_int_equal(d->q.used->flags, 0);

	/* interrupt moderation: kick after n more (avail_event n - 1 ahead) */
	assert_true(zoc_vq_can_batch(d->vq));
	assert_int_equal(zoc_vq_avail_count(d->vq), 0);
	assert_int_equal(zoc_vq_enable_notify_after(d->vq, 3), 0);
	assert_int_equal(*avail_event, (uint16_t)(d->q.avail_idx + 2));
	struct vqd_seg s = {data_gpa(0), 8, false};
	assert_true(drv_add(d, &s, 1, false, 0) >= 0);
	assert_true(drv_add(d, &s, 1, false, 0) >= 0);
	assert_int_equal(zoc_vq_avail_count(d->vq), 2);
	assert_int_equal(zoc_vq_enable_notify_after(d->vq, 3), 0); /* 2 of 3: sleep */
	assert_true(drv_add(d, &s, 1, false, 0) >= 0);
	assert_int_equal(zoc_vq_enable_notify_after(d->vq, 3), 1); /* all there */
	assert_int_equal(zoc_vq_enable_notify_after(d->vq, 1), 1); /* n <= 1: plain */
	assert_int_equal(*avail_event, (uint16_t)(d->q.avail_idx - 3));
	for (int i = 0; i < 3; i++) {
		assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
		zoc_vq_push(d->vq, &g_elem, 0);
	}
	assert_int_equal(zoc_vq_avail_count(d->vq), 0);
	drv_free(d);
}

/* Moderation needs EVENT_IDX on a split ring; otherwise it is plain enabling. */
static void test_notify_after_fallback(void **state)
{
	struct drv *d = drv_start(8, false, false, false);
	struct drv *p = drv_start(8, true, true, false);

	(void)state;
	assert_false(zoc_vq_can_batch(d->vq));
	assert_false(zoc_vq_can_batch(p->vq));
	zoc_vq_disable_notify(d->vq);
	assert_int_equal(zoc_vq_enable_notify_after(d->vq, 16), 0);
	assert_int_equal(d->q.used->flags, 0);
	assert_int_equal(zoc_vq_enable_notify_after(p->vq, 16), 0);
	assert_int_equal(zoc_vq_avail_count(p->vq), 0);
	drv_free(d);
	drv_free(p);
}

static void test_notify_packed(void **state)
{
	struct drv *d = drv_start(5, true, false, false);

	(void)state;
	/* ENABLE (0) */
	push_one(d);
	assert_int_equal(zoc_vq_notify(d->vq), 1);
	drain_callfd(d);
	d->q.drv_evt->flags = VIRTQ_EVENT_F_DISABLE;
	push_one(d);
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	/* DESC without EVENT_IDX acts as enable */
	d->q.drv_evt->flags = VIRTQ_EVENT_F_DESC;
	push_one(d);
	assert_int_equal(zoc_vq_notify(d->vq), 1);
	drain_callfd(d);

	/* kick side */
	assert_int_equal(zoc_vq_enable_notify(d->vq), 0);
	assert_int_equal(d->q.dev_evt->flags, VIRTQ_EVENT_F_ENABLE);
	zoc_vq_disable_notify(d->vq);
	assert_int_equal(d->q.dev_evt->flags, VIRTQ_EVENT_F_DISABLE);
	struct vqd_seg s = {data_gpa(0), 8, false};
	assert_true(drv_add(d, &s, 1, false, 0) >= 0);
	assert_int_equal(zoc_vq_enable_notify(d->vq), 1);
	drv_free(d);

	/* EVENT_IDX: off_wrap */
	d = drv_start(5, true, true, false);
	d->q.drv_evt->flags = VIRTQ_EVENT_F_DESC;
	d->q.drv_evt->off_wrap = 0x7fff; /* nonsense offset: signal */
	push_one(d);
	assert_int_equal(zoc_vq_notify(d->vq), 1);
	drain_callfd(d);
	/* used position now (1, wrap 1). Ask for slot 3 in this lap. */
	d->q.drv_evt->off_wrap = 3 | 0x8000;
	push_one(d); /* writes slot 1 */
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	push_one(d); /* slot 2 */
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	push_one(d); /* slot 3 */
	assert_int_equal(zoc_vq_notify(d->vq), 1);
	drain_callfd(d);
	/* now at (4, wrap 1); ask for slot 0 of the next lap (wrap 0) */
	d->q.drv_evt->off_wrap = 0;
	push_one(d); /* slot 4 -> (0, wrap 0) */
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	push_one(d); /* slot 0 of lap 2 */
	assert_int_equal(zoc_vq_notify(d->vq), 1);
	/* event in the past lap: no signal */
	d->q.drv_evt->off_wrap = 3 | 0x8000;
	push_one(d);
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	/* many laps: always ask for the next slot */
	for (int i = 0; i < 1000; i++) {
		d->q.drv_evt->off_wrap = (uint16_t)(d->q.next_used | (d->q.used_wrap ? 0x8000 : 0));
		push_one(d);
		assert_int_equal(zoc_vq_notify(d->vq), 1);
	}
	drain_callfd(d);
	/* kick side with EVENT_IDX */
	assert_int_equal(zoc_vq_enable_notify(d->vq), 0);
	assert_int_equal(d->q.dev_evt->flags, VIRTQ_EVENT_F_DESC);
	assert_int_equal(d->q.dev_evt->off_wrap,
			 d->q.next_avail | (d->q.avail_wrap ? 0x8000 : 0));
	drv_free(d);
}

/* The lost-interrupt watchdog: one interrupt for a driver whose event
 * position is a used entry already written after a suppressed decision, on
 * an idle queue only, once; none for a driver that is up to date. */
static void test_watchdog_split(void **state)
{
	struct drv *d = drv_start(8, false, true, false);
	uint16_t *used_event = &d->q.avail->ring[8];

	(void)state;
	push_one(d);
	assert_int_equal(zoc_vq_notify(d->vq), 1); /* first decision signals */
	drain_callfd(d);
	assert_int_equal(zoc_vq_watchdog(d->vq), 0); /* nothing suppressed */
	/* the driver asks for entry 5; entries 1 and 2 are suppressed */
	*used_event = 5;
	push_one(d);
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	push_one(d);
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	/* a driver still ahead of us waits for nothing written: no rescue */
	assert_int_equal(zoc_vq_watchdog(d->vq), 0); /* pops moved: not idle */
	assert_int_equal(zoc_vq_watchdog(d->vq), 0); /* idle, event ahead */
	/* the lost race: it re-armed for entry 1 (written, used idx 3) */
	*used_event = 1;
	push_one(d); /* pops move again, decision suppressed (1 is behind) */
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	assert_int_equal(zoc_vq_watchdog(d->vq), 0); /* not idle yet */
	assert_int_equal(drain_callfd(d), 0);
	assert_int_equal(zoc_vq_watchdog(d->vq), 1);
	assert_int_equal(drain_callfd(d), 1);
	assert_int_equal(zoc_vq_get_stats(d->vq)->rescued, 1);
	assert_int_equal(zoc_vq_watchdog(d->vq), 0); /* once */
	/* an up-to-date driver (event = the next entry) after a suppression */
	*used_event = 100;
	push_one(d);
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	*used_event = d->q.last_used;
	assert_int_equal(zoc_vq_watchdog(d->vq), 0);
	assert_int_equal(zoc_vq_watchdog(d->vq), 0);
	/* a decision not yet taken is the poller's, not the watchdog's */
	*used_event = (uint16_t)(d->q.last_used - 1);
	push_one(d);
	assert_int_equal(zoc_vq_watchdog(d->vq), 0);
	assert_int_equal(zoc_vq_watchdog(d->vq), 0);
	drv_free(d);

	/* without EVENT_IDX: the flags say whether it wants interrupts */
	d = drv_start(8, false, false, false);
	d->q.avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	push_one(d);
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	assert_int_equal(zoc_vq_watchdog(d->vq), 0);
	assert_int_equal(zoc_vq_watchdog(d->vq), 0); /* still polling */
	d->q.avail->flags = 0;
	assert_int_equal(zoc_vq_watchdog(d->vq), 1);
	assert_int_equal(drain_callfd(d), 1);
	assert_int_equal(zoc_vq_watchdog(d->vq), 0);
	drv_free(d);
}

static void test_watchdog_packed(void **state)
{
	struct drv *d = drv_start(5, true, true, false);

	(void)state;
	d->q.drv_evt->flags = VIRTQ_EVENT_F_DESC;
	d->q.drv_evt->off_wrap = 0 | 0x8000;
	push_one(d); /* slot 0: the event */
	assert_int_equal(zoc_vq_notify(d->vq), 1);
	drain_callfd(d);
	/* now at (1, wrap 1); ask for slot 3, suppress slots 1 and 2 */
	d->q.drv_evt->off_wrap = 3 | 0x8000;
	push_one(d);
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	push_one(d);
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	assert_int_equal(zoc_vq_watchdog(d->vq), 0);
	assert_int_equal(zoc_vq_watchdog(d->vq), 0); /* slot 3 not written yet */
	/* lost race: re-armed for slot 2 of this lap, written already */
	d->q.drv_evt->off_wrap = 2 | 0x8000;
	assert_int_equal(zoc_vq_watchdog(d->vq), 1);
	assert_int_equal(drain_callfd(d), 1);
	assert_int_equal(zoc_vq_watchdog(d->vq), 0);
	/* across the wrap: at (0, wrap 0) after two more; event (4, wrap 1) */
	d->q.drv_evt->off_wrap = 0; /* slot 0 of the next lap, not reached */
	push_one(d); /* slot 3 */
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	push_one(d); /* slot 4 -> (0, wrap 0) */
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	d->q.drv_evt->off_wrap = 4 | 0x8000;
	assert_int_equal(zoc_vq_watchdog(d->vq), 0); /* pops moved */
	assert_int_equal(zoc_vq_watchdog(d->vq), 1);
	drain_callfd(d);
	/* DISABLE: a polling driver is never interrupted */
	push_one(d); /* slot 0 of lap 2 */
	d->q.drv_evt->off_wrap = 3; /* not reached */
	assert_int_equal(zoc_vq_notify(d->vq), 0);
	d->q.drv_evt->off_wrap = 0; /* behind, but the driver polls */
	d->q.drv_evt->flags = VIRTQ_EVENT_F_DISABLE;
	assert_int_equal(zoc_vq_watchdog(d->vq), 0);
	assert_int_equal(zoc_vq_watchdog(d->vq), 0);
	assert_int_equal(zoc_vq_get_stats(d->vq)->rescued, 2);
	drv_free(d);
}

/* ------------------------------------------------------------------ */
/* inflight tracking and resubmission                                  */

static void test_inflight_resubmit(void **state)
{
	struct drv *d = drv_new(8, false, false, false);
	struct zoc_vq_elem *el = calloc(8, sizeof(*el));
	uint64_t isz = zoc_vq_inflight_queue_size(8);
	int ids[7];
	uint16_t id;
	uint32_t len;

	(void)state;
	assert_int_equal(isz % 64, 0);
	assert_true(isz >= sizeof(struct zoc_vq_inflight) + 8 * sizeof(struct zoc_vq_inflight_desc));
	d->inflight = aligned_alloc(64, isz);
	memset(d->inflight, 0, isz);
	d->cfg.inflight = d->inflight;
	assert_non_null(drv_create_vq(d, 0));
	assert_int_equal(d->inflight->version, 1);
	assert_int_equal(d->inflight->desc_num, 8);

	for (int i = 0; i < 3; i++)
		push_one(d);
	/* Shuffle the free descriptors so that heads are not in fetch order. */
	static const uint16_t perm[8] = {2, 5, 0, 7, 1, 6, 3, 4};
	assert_int_equal(d->q.nfree, 8);
	memcpy(d->q.free_stack, perm, sizeof(perm));

	for (int i = 0; i < 6; i++) {
		struct vqd_seg s[2] = {{data_gpa((uint16_t)i), 8, false},
				   {data_gpa((uint16_t)i) + 8, 8, true}};

		ids[i] = drv_add(d, s, i == 2 ? 2 : 1, false, (uint32_t)i);
		assert_true(ids[i] >= 0);
	}
	assert_int_equal(ids[0], 4);
	assert_int_equal(ids[2], 6);
	assert_int_equal(ids[5], 5);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(zoc_vq_pop(d->vq, &el[i]), 1);
		assert_int_equal(el[i].id, ids[i]);
		assert_int_equal(d->inflight->desc[ids[i]].inflight, 1);
	}
	/* one more buffer that we never pop */
	struct vqd_seg s7 = {data_gpa(7), 8, false};
	ids[6] = drv_add(d, &s7, 1, false, 7);
	assert_true(ids[6] >= 0);

	/* complete 1 and 3 */
	zoc_vq_push(d->vq, &el[1], 0);
	zoc_vq_push(d->vq, &el[3], 0);
	assert_int_equal(d->inflight->desc[ids[1]].inflight, 0);
	assert_int_equal(d->inflight->used_idx, d->q.used->idx);
	/* complete 4, then "crash" after publishing used->idx but before the
	 * inflight entry was retired */
	zoc_vq_push(d->vq, &el[4], 0);
	d->inflight->desc[ids[4]].inflight = 1;
	d->inflight->used_idx = (uint16_t)(d->q.used->idx - 1);
	assert_int_equal(d->inflight->last_batch_head, ids[4]);
	zoc_vq_destroy(d->vq); /* the old back end is gone */
	d->vq = NULL;

	/* New back end: QEMU sends base = used idx after a crash. */
	assert_non_null(drv_create_vq(d, d->q.used->idx));
	assert_int_equal(d->inflight->used_idx, d->q.used->idx);
	assert_int_equal(d->inflight->desc[ids[4]].inflight, 0);
	/* 3 + 6 popped, 3 + 3 completed: last_avail = used (6) + 3 inflight */
	assert_int_equal(zoc_vq_get_base(d->vq), 9);
	assert_true(zoc_vq_has_work(d->vq));
	int expect[] = {0, 2, 5};
	for (int k = 0; k < 3; k++) {
		assert_int_equal(zoc_vq_pop(d->vq, &el[k]), 1);
		assert_int_equal(el[k].id, ids[expect[k]]);
		assert_true(el[k].resubmitted);
		assert_int_equal(el[k].out_num, 1);
		assert_int_equal(el[k].in_num, expect[k] == 2 ? 1 : 0);
	}
	/* then the one never popped */
	assert_int_equal(zoc_vq_pop(d->vq, &el[3]), 1);
	assert_int_equal(el[3].id, ids[6]);
	assert_false(el[3].resubmitted);
	assert_int_equal(zoc_vq_pop(d->vq, &el[4]), 0);
	assert_int_equal(zoc_vq_get_stats(d->vq)->resubmitted, 3);

	/* The driver sees old completions (1, 3, 4) first, then the rest. */
	for (int k = 0; k < 4; k++)
		zoc_vq_push(d->vq, &el[k], 0);
	int seen[] = {1, 3, 4, 0, 2, 5, 6};
	for (int k = 0; k < 7; k++) {
		assert_true(drv_get_used(d, &id, &len));
		assert_int_equal(id, ids[seen[k]]);
	}
	assert_false(drv_get_used(d, &id, &len));
	for (int i = 0; i < 8; i++)
		assert_int_equal(d->inflight->desc[i].inflight, 0);

	/* A clean restart: nothing to resubmit. */
	uint32_t base = zoc_vq_get_base(d->vq);
	zoc_vq_destroy(d->vq);
	assert_non_null(drv_create_vq(d, base));
	assert_int_equal(zoc_vq_pop(d->vq, &el[0]), 0);
	assert_int_equal(zoc_vq_get_base(d->vq), d->q.avail_idx);
	push_one(d);
	free(el);
	drv_free(d);
}

static void test_inflight_mismatch(void **state)
{
	struct drv *d = drv_new(8, false, false, false);
	uint64_t isz = zoc_vq_inflight_queue_size(16);

	(void)state;
	d->inflight = aligned_alloc(64, isz);
	memset(d->inflight, 0, isz);
	/* a region from a 16-entry queue: ignored, re-initialised */
	d->inflight->version = 1;
	d->inflight->desc_num = 16;
	d->inflight->desc[3].inflight = 1;
	d->inflight->last_batch_head = 0xffff;
	d->cfg.inflight = d->inflight;
	assert_non_null(drv_create_vq(d, 0));
	assert_int_equal(d->inflight->desc_num, 8);
	assert_int_equal(d->inflight->desc[3].inflight, 0);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 0);
	zoc_vq_destroy(d->vq);
	/* hostile last_batch_head with a used_idx mismatch */
	d->inflight->used_idx = 5;
	d->inflight->last_batch_head = 0xffff;
	assert_non_null(drv_create_vq(d, 0));
	assert_int_equal(d->inflight->used_idx, 0);
	drv_free(d);
}

/* ------------------------------------------------------------------ */
/* inflight tracking, packed rings                                     */

static struct zoc_vq_inflight_packed *pk_region(struct drv *d)
{
	uint64_t isz = zoc_vq_inflight_queue_size(d->q.size);

	d->inflight = aligned_alloc(64, isz);
	assert_non_null(d->inflight);
	memset(d->inflight, 0, isz);
	d->cfg.inflight = d->inflight;
	return (struct zoc_vq_inflight_packed *)(void *)d->inflight;
}

/* Every entry of the region is either on its free list or in exactly one
 * chain of a head marked inflight; returns the number of heads. */
static unsigned pk_check_region(const struct zoc_vq_inflight_packed *r, uint16_t size)
{
	uint8_t *seen = calloc(size, 1);
	unsigned heads = 0, nseen = 0;
	uint16_t j = r->free_head;

	assert_non_null(seen);
	assert_int_equal(r->free_head, r->old_free_head);
	assert_int_equal(r->used_idx, r->old_used_idx);
	assert_int_equal(r->used_wrap_counter, r->old_used_wrap_counter);
	while (j < size) {
		assert_false(seen[j]);
		seen[j] = 1;
		nseen++;
		assert_int_equal(r->desc[j].inflight, 0);
		j = r->desc[j].next;
	}
	for (uint16_t i = 0; i < size; i++) {
		if (!r->desc[i].inflight)
			continue;
		heads++;
		j = i;
		for (uint16_t k = 0; k < r->desc[i].num; k++) {
			assert_true(j < size);
			assert_false(seen[j]);
			seen[j] = 1;
			nseen++;
			if (k + 1 < r->desc[i].num)
				j = r->desc[j].next;
		}
		assert_int_equal(r->desc[i].last, j);
	}
	assert_int_equal(nseen, size);
	free(seen);
	return heads;
}

static uint32_t pk_base(uint16_t avail, bool aw, uint16_t used, bool uw)
{
	return (uint32_t)(avail | (aw ? 0x8000 : 0)) |
	       ((uint32_t)(used | (uw ? 0x8000 : 0)) << 16);
}

/* Pop some, complete some out of order, "crash", start a new back end on
 * the same rings and region: the rest comes back first, oldest first. */
static void test_inflight_packed_resubmit(void **state)
{
	struct drv *d = drv_new(8, true, false, true);
	struct zoc_vq_inflight_packed *r = pk_region(d);
	struct zoc_vq_elem *el = calloc(8, sizeof(*el));
	int ids[5];
	uint16_t id;
	uint32_t len;

	(void)state;
	assert_non_null(el);
	assert_non_null(drv_create_vq(d, 0x8000));
	assert_int_equal(r->version, 1);
	assert_int_equal(r->desc_num, 8);
	assert_int_equal(pk_check_region(r, 8), 0);
	for (int i = 0; i < 5; i++)
		push_one(d);
	/* now at slot 5, wrap 1: A (2 descriptors, slots 5-6), B (7), C
	 * (indirect, slot 0 of the next lap), D (1-2), then E (3) never popped */
	struct vqd_seg a[2] = {{data_gpa(0), 16, false}, {data_gpa(0) + 16, 32, true}};
	struct vqd_seg b = {data_gpa(1), 8, false};
	struct vqd_seg c[3] = {{data_gpa(2), 4, false}, {data_gpa(2) + 4, 4, false},
			       {data_gpa(2) + 8, 100, true}};
	struct vqd_seg dd[2] = {{data_gpa(3), 8, false}, {data_gpa(3) + 8, 8, true}};
	struct vqd_seg e = {data_gpa(4), 8, false};

	ids[0] = drv_add(d, a, 2, false, 0);
	ids[1] = drv_add(d, &b, 1, false, 1);
	ids[2] = drv_add(d, c, 3, true, 2);
	ids[3] = drv_add(d, dd, 2, false, 3);
	for (int i = 0; i < 4; i++) {
		assert_true(ids[i] >= 0);
		assert_int_equal(zoc_vq_pop(d->vq, &el[i]), 1);
		assert_int_equal(el[i].id, ids[i]);
	}
	assert_int_equal(pk_check_region(r, 8), 4);
	ids[4] = drv_add(d, &e, 1, false, 4);
	assert_true(ids[4] >= 0);
	/* complete B and D: their used descriptors overwrite A's slots */
	zoc_vq_push(d->vq, &el[1], 0);
	zoc_vq_push(d->vq, &el[3], 8);
	assert_int_equal(pk_check_region(r, 8), 2);
	assert_int_equal(r->used_idx, 0);
	assert_int_equal(r->used_wrap_counter, 0);
	assert_true(drv_get_used(d, &id, &len));
	assert_int_equal(id, ids[1]);
	assert_true(drv_get_used(d, &id, &len));
	assert_int_equal(id, ids[3]);
	assert_int_equal(len, 8);
	zoc_vq_destroy(d->vq); /* crash */
	d->vq = NULL;

	/* The front end's base is stale; the region is the truth. */
	assert_non_null(drv_create_vq(d, 0x8000 | 5));
	assert_int_equal(zoc_vq_get_base(d->vq), pk_base(3, false, 0, false));
	assert_true(zoc_vq_has_work(d->vq));
	assert_int_equal(zoc_vq_pop(d->vq, &el[0]), 1);
	assert_true(el[0].resubmitted);
	assert_int_equal(el[0].id, ids[0]);
	assert_int_equal(el[0].ndescs, 2);
	assert_int_equal(el[0].out_num, 1);
	assert_int_equal(el[0].in_num, 1);
	assert_int_equal(el[0].in_len, 32);
	assert_ptr_equal(el[0].iov[0].iov_base, gpa_ptr(d, data_gpa(0)));
	assert_ptr_equal(el[0].iov[1].iov_base, gpa_ptr(d, data_gpa(0) + 16));
	assert_int_equal(zoc_vq_pop(d->vq, &el[2]), 1);
	assert_true(el[2].resubmitted);
	assert_int_equal(el[2].id, ids[2]);
	assert_int_equal(el[2].ndescs, 1);
	assert_int_equal(el[2].out_num, 2);
	assert_int_equal(el[2].in_len, 100);
	assert_int_equal(zoc_vq_pop(d->vq, &el[4]), 1);
	assert_false(el[4].resubmitted);
	assert_int_equal(el[4].id, ids[4]);
	assert_int_equal(zoc_vq_pop(d->vq, &el[5]), 0);
	assert_false(zoc_vq_has_work(d->vq));
	assert_int_equal(zoc_vq_get_stats(d->vq)->resubmitted, 2);
	assert_int_equal(zoc_vq_inflight_count(d->vq), 3);
	assert_int_equal(pk_check_region(r, 8), 3);

	zoc_vq_push(d->vq, &el[2], 100);
	zoc_vq_push(d->vq, &el[4], 0);
	zoc_vq_push(d->vq, &el[0], 32);
	int seen[] = {2, 4, 0};
	for (int k = 0; k < 3; k++) {
		assert_true(drv_get_used(d, &id, &len));
		assert_int_equal(id, ids[seen[k]]);
	}
	assert_false(drv_get_used(d, &id, &len));
	assert_int_equal(pk_check_region(r, 8), 0);

	/* normal operation across several laps */
	for (int i = 0; i < 30; i++)
		push_one(d);
	assert_int_equal(pk_check_region(r, 8), 0);
	assert_int_equal(r->used_idx, d->q.next_used);
	assert_int_equal(r->used_wrap_counter, d->q.used_wrap);

	/* a clean restart: nothing to resubmit, same positions */
	uint32_t base = zoc_vq_get_base(d->vq);
	zoc_vq_destroy(d->vq);
	assert_non_null(drv_create_vq(d, base));
	assert_int_equal(zoc_vq_get_base(d->vq), base);
	assert_int_equal(zoc_vq_pop(d->vq, &el[0]), 0);
	for (int i = 0; i < 11; i++)
		push_one(d);
	free(el);
	drv_free(d);
}

/* A crash inside a completion: after the used descriptor was written (the
 * completion stands) or before (it is rolled back and resubmitted). */
static void check_inflight_packed_crash_in_push(bool written)
{
	struct drv *d = drv_new(4, true, false, false);
	struct zoc_vq_inflight_packed *r = pk_region(d);
	uint64_t isz = zoc_vq_inflight_queue_size(4);
	struct zoc_vq_inflight_packed *before = malloc(isz);
	struct virtq_packed_desc slot_before;
	struct zoc_vq_elem *el = calloc(3, sizeof(*el));
	struct vqd_seg s = {data_gpa(0), 8, false};
	int ids[3];
	uint16_t id, h, upos;
	uint32_t len;

	assert_non_null(before);
	assert_non_null(el);
	assert_non_null(drv_create_vq(d, 0x8000));
	for (int i = 0; i < 3; i++)
		push_one(d); /* slot 3: the used position wraps in the push below */
	for (int i = 0; i < 3; i++) {
		ids[i] = drv_add(d, &s, 1, false, 0);
		assert_true(ids[i] >= 0);
		assert_int_equal(zoc_vq_pop(d->vq, &el[i]), 1);
	}
	/* push the middle one, crashing in the middle */
	memcpy(before, r, isz);
	upos = r->used_idx;
	assert_int_equal(upos, 3);
	slot_before = d->q.pdesc[upos];
	h = el[1].inflight_slot;
	zoc_vq_push(d->vq, &el[1], 0);
	assert_int_equal(r->used_idx, 0);
	assert_int_equal(r->used_wrap_counter, 0);
	/* undo what comes after the used descriptor */
	r->desc[h].inflight = 1;
	r->old_free_head = before->old_free_head;
	r->old_used_idx = before->old_used_idx;
	r->old_used_wrap_counter = before->old_used_wrap_counter;
	if (!written)
		d->q.pdesc[upos] = slot_before;
	zoc_vq_destroy(d->vq);
	d->vq = NULL;

	assert_non_null(drv_create_vq(d, 0x8000));
	assert_int_equal(pk_check_region(r, 4), written ? 2 : 3);
	if (written) {
		assert_int_equal(zoc_vq_get_base(d->vq), pk_base(2, false, 0, false));
		assert_true(drv_get_used(d, &id, &len));
		assert_int_equal(id, ids[1]);
	} else {
		assert_int_equal(zoc_vq_get_base(d->vq), pk_base(2, false, 3, true));
		assert_false(drv_get_used(d, &id, &len));
	}
	int want[] = {0, 1, 2}, nwant = 0;
	for (int k = 0; k < 3; k++) {
		if (written && k == 1)
			continue;
		want[nwant++] = k;
	}
	for (int k = 0; k < nwant; k++) {
		assert_int_equal(zoc_vq_pop(d->vq, &el[k]), 1);
		assert_true(el[k].resubmitted);
		assert_int_equal(el[k].id, ids[want[k]]);
	}
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 0);
	for (int k = 0; k < nwant; k++)
		zoc_vq_push(d->vq, &el[k], 0);
	for (int k = 0; k < nwant; k++) {
		assert_true(drv_get_used(d, &id, &len));
		assert_int_equal(id, ids[want[k]]);
	}
	assert_false(drv_get_used(d, &id, &len));
	assert_int_equal(pk_check_region(r, 4), 0);
	for (int i = 0; i < 9; i++)
		push_one(d);
	free(before);
	free(el);
	drv_free(d);
}

static void test_inflight_packed_crash_in_push(void **state)
{
	(void)state;
	check_inflight_packed_crash_in_push(true);
	check_inflight_packed_crash_in_push(false);
}

/* A crash in the middle of a fetch: nothing was handed out, the ring has
 * the buffer again. */
static void test_inflight_packed_crash_in_pop(void **state)
{
	struct drv *d = drv_new(8, true, false, false);
	struct zoc_vq_inflight_packed *r = pk_region(d);
	struct vqd_seg s[3] = {{data_gpa(0), 8, false}, {data_gpa(0) + 8, 8, false},
			       {data_gpa(0) + 16, 8, true}};
	uint16_t fh;
	int id;

	(void)state;
	assert_non_null(drv_create_vq(d, 0x8000));
	id = drv_add(d, s, 3, false, 0);
	assert_true(id >= 0);
	fh = r->old_free_head;
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
	/* roll the region back to "head recorded, free head not moved" */
	r->free_head = r->old_free_head = fh;
	zoc_vq_destroy(d->vq);
	d->vq = NULL;
	assert_non_null(drv_create_vq(d, 0x8000));
	assert_int_equal(pk_check_region(r, 8), 0);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
	assert_false(g_elem.resubmitted);
	assert_int_equal(g_elem.id, id);
	assert_int_equal(g_elem.ndescs, 3);
	zoc_vq_push(d->vq, &g_elem, 8);
	assert_int_equal(pk_check_region(r, 8), 0);
	drv_free(d);
}

/* Pops whatever a queue gives (resubmitted or not) and completes it, a
 * bounded number of times; the queue may end up broken, never hung. */
static unsigned drain_bounded(struct drv *d, unsigned max)
{
	unsigned n = 0;

	for (;;) {
		int rc = zoc_vq_pop(d->vq, &g_elem);

		if (rc == 0 || rc == -EIO)
			break;
		assert_true(rc == 1 || rc == -EFAULT);
		zoc_vq_push(d->vq, &g_elem, 0);
		assert_true(++n <= max);
	}
	return n;
}

static void test_inflight_packed_hostile(void **state)
{
	struct drv *d = drv_new(8, true, false, true);
	struct zoc_vq_inflight_packed *r = pk_region(d);
	uint64_t isz = zoc_vq_inflight_queue_size(8);

	(void)state;
	/* a region made for another queue size: re-initialised, base used */
	r->version = 1;
	r->desc_num = 16;
	r->desc[3].inflight = 1;
	r->desc[3].num = 1;
	assert_non_null(drv_create_vq(d, pk_base(2, true, 2, true)));
	assert_int_equal(r->desc_num, 8);
	assert_int_equal(pk_check_region(r, 8), 0);
	assert_int_equal(zoc_vq_get_base(d->vq), pk_base(2, true, 2, true));
	assert_int_equal(r->used_idx, 2);
	zoc_vq_destroy(d->vq);
	d->vq = NULL;

	/* hand-made garbage */
	static const struct {
		uint16_t free_head, old_free_head, used_idx, old_used_idx;
		uint16_t head, num, next;
	} cases[] = {
		{0, 0, 0, 0, 3, 8, 3},          /* chain loops on itself */
		{0, 0, 0, 0, 3, 0, 4},          /* zero length */
		{0, 0, 0, 0, 3, 0xffff, 4},     /* longer than the queue */
		{0, 0, 0, 0, 3, 2, 0xffff},     /* next out of range */
		{0x7777, 0x7777, 0, 0, 3, 1, 0}, /* free head out of range */
		{0, 0, 0xffff, 0xffff, 3, 1, 0}, /* used index out of range */
		{0, 0, 5, 0x9999, 3, 1, 0},     /* old used index out of range */
		{8, 8, 0, 0, 3, 1, 0},          /* empty free list */
	};
	for (unsigned c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		memset(r, 0, isz);
		r->version = 1;
		r->desc_num = 8;
		for (int i = 0; i < 8; i++)
			r->desc[i].next = (uint16_t)(i == 7 ? 0 : i + 1); /* a loop */
		r->free_head = cases[c].free_head;
		r->old_free_head = cases[c].old_free_head;
		r->used_idx = cases[c].used_idx;
		r->old_used_idx = cases[c].old_used_idx;
		r->desc[cases[c].head].inflight = 1;
		r->desc[cases[c].head].num = cases[c].num;
		r->desc[cases[c].head].next = cases[c].next;
		r->desc[cases[c].head].addr = data_gpa(0);
		r->desc[cases[c].head].len = 8;
		assert_non_null(drv_create_vq(d, 0x8000));
		pk_check_region(r, 8);
		drain_bounded(d, 8);
		zoc_vq_destroy(d->vq);
		d->vq = NULL;
	}

	/* random garbage with a plausible header */
	srand(7);
	for (int iter = 0; iter < 500; iter++) {
		uint8_t *p = (uint8_t *)r;

		for (uint64_t i = 0; i < isz; i++)
			p[i] = (uint8_t)rand();
		r->version = 1;
		r->desc_num = 8;
		if (iter & 1) {
			/* small numbers: chains that almost make sense */
			r->free_head = r->old_free_head = (uint16_t)(rand() % 10);
			r->used_idx = r->old_used_idx = (uint16_t)(rand() % 9);
			for (int i = 0; i < 8; i++) {
				r->desc[i].next = (uint16_t)(rand() % 10);
				r->desc[i].num = (uint16_t)(rand() % 4);
				r->desc[i].inflight = rand() & 1;
				if (iter & 2)
					r->desc[i].addr = data_gpa((uint16_t)i);
			}
		}
		memset(d->q.pdesc, 0, 8 * sizeof(*d->q.pdesc));
		vqd_reset(&d->q);
		assert_non_null(drv_create_vq(d, 0x8000));
		assert_true(drain_bounded(d, 8) <= 8);
		zoc_vq_destroy(d->vq);
		d->vq = NULL;
	}
	drv_free(d);
}

/* Random traffic with crashes at random points: after each, the buffers in
 * flight come back exactly once, oldest first, and the driver sees every
 * buffer completed exactly once. */
static void test_inflight_packed_random_crash(void **state)
{
	const uint16_t size = 11;
	struct drv *d = drv_new(size, true, false, true);
	struct zoc_vq_inflight_packed *r = pk_region(d);
	struct zoc_vq_elem *held = calloc(size, sizeof(*held));
	uint32_t *order = calloc(size, sizeof(uint32_t)); /* fetch order by id */
	uint32_t nheld = 0, fetch = 0, completions = 0, adds = 0, crashes = 0, resubs = 0;
	uint16_t id;
	uint32_t len;

	(void)state;
	assert_non_null(held);
	assert_non_null(order);
	assert_non_null(drv_create_vq(d, 0x8000));
	srand(11);
	for (int iter = 0; iter < 20000; iter++) {
		int action = rand() % 8;

		if (action < 3) {
			struct vqd_seg s[3];
			int n = 1 + rand() % 3;

			for (int i = 0; i < n; i++)
				s[i] = (struct vqd_seg){data_gpa((uint16_t)i), 8, i == n - 1};
			if (drv_add(d, s, n, rand() & 1, 0) >= 0)
				adds++;
		} else if (action < 5) {
			if (nheld < size && zoc_vq_pop(d->vq, &held[nheld]) == 1) {
				assert_false(held[nheld].resubmitted);
				order[held[nheld].id] = ++fetch;
				nheld++;
			}
		} else if (action < 7) {
			if (nheld) {
				uint32_t pick = (uint32_t)rand() % nheld;

				zoc_vq_push(d->vq, &held[pick], 0);
				held[pick] = held[--nheld];
				while (drv_get_used(d, &id, &len))
					completions++;
			}
		} else {
			/* crash and restart */
			uint32_t prev = 0, n = nheld;

			zoc_vq_destroy(d->vq);
			assert_non_null(drv_create_vq(d, 0x8000));
			assert_int_equal(pk_check_region(r, size), n);
			for (uint32_t k = 0; k < n; k++) {
				assert_int_equal(zoc_vq_pop(d->vq, &held[k]), 1);
				assert_true(held[k].resubmitted);
				assert_true(order[held[k].id] > prev); /* oldest first */
				prev = order[held[k].id];
			}
			assert_int_equal(zoc_vq_get_stats(d->vq)->resubmitted, n);
			crashes++;
			resubs += n;
			/* then the ring, from where the old back end stopped */
			if (zoc_vq_pop(d->vq, &held[n]) == 1) {
				assert_false(held[n].resubmitted);
				order[held[n].id] = ++fetch;
				nheld++;
			}
		}
	}
	while (nheld) {
		zoc_vq_push(d->vq, &held[--nheld], 0);
	}
	for (;;) {
		int rc = zoc_vq_pop(d->vq, &g_elem);

		assert_true(rc >= 0);
		if (!rc)
			break;
		zoc_vq_push(d->vq, &g_elem, 0);
	}
	while (drv_get_used(d, &id, &len))
		completions++;
	assert_int_equal(completions, adds);
	assert_int_equal(d->q.outstanding, 0);
	assert_true(crashes > 1000 && resubs > 1000); /* the test tests something */
	assert_int_equal(pk_check_region(r, size), 0);
	assert_false(zoc_vq_broken(d->vq));
	free(held);
	free(order);
	drv_free(d);
}

/* ------------------------------------------------------------------ */
/* set-up                                                              */

/* push_deferred: the driver sees nothing until notify publishes the batch
 * (split), or each entry at once (packed); prefetch is a harmless hint,
 * also over hostile heads and a broken queue. */
static void check_push_deferred(bool packed)
{
	struct drv *d = drv_start(16, packed, false, false);
	struct zoc_vq_elem el[4];
	uint16_t id;
	uint32_t len;

	for (int round = 0; round < 12; round++) { /* wraps the ring */
		for (uint16_t i = 0; i < 4; i++) {
			struct vqd_seg seg = {data_gpa(i), 64, true};

			assert_true(drv_add(d, &seg, 1, false, i) >= 0);
		}
		zoc_vq_prefetch(d->vq, 32);
		for (int i = 0; i < 4; i++)
			assert_int_equal(zoc_vq_pop(d->vq, &el[i]), 1);
		for (int i = 0; i < 4; i++)
			zoc_vq_push_deferred(d->vq, &el[i], 10u + (uint32_t)i);
		if (!packed)
			assert_false(drv_get_used(d, &id, &len));
		zoc_vq_notify(d->vq);
		for (int i = 0; i < 4; i++) {
			assert_true(drv_get_used(d, &id, &len));
			assert_int_equal(id, el[i].id);
			assert_int_equal(len, 10u + (uint32_t)i);
		}
		assert_false(drv_get_used(d, &id, &len));
		/* a later plain push needs no notify */
		struct vqd_seg seg = {data_gpa(5), 64, true};

		assert_true(drv_add(d, &seg, 1, false, 5) >= 0);
		assert_int_equal(zoc_vq_pop(d->vq, &el[0]), 1);
		zoc_vq_push(d->vq, &el[0], 1);
		assert_true(drv_get_used(d, &id, &len));
		zoc_vq_notify(d->vq);
		drain_callfd(d);
	}
	if (!packed) {
		/* hostile heads: prefetch skips them, pop breaks the queue */
		publish_split(d, 0xffff);
		zoc_vq_prefetch(d->vq, 32);
		expect_broken(d);
		zoc_vq_prefetch(d->vq, 32);
	}
	drv_free(d);
}

/* pop_burst / push_burst: the same elements, results and used entries as
 * one pop / push_deferred at a time, on split (the batched path) and packed
 * rings (the fallback), with bad buffers in the middle of a burst and a
 * hostile head that breaks the queue mid-burst. */
static void check_burst(bool packed, bool indirect, bool in_order)
{
	struct drv *d = drv_new(16, packed, false, indirect);
	struct zoc_vq_elem el[16];
	uint32_t lens[16];
	int rcs[16], ids[16];
	uint16_t id;
	uint32_t len;

	/* IN_ORDER is a prefetch hint: the chains below are not in order */
	d->cfg.in_order = in_order;
	assert_non_null(drv_create_vq(d, d->cfg.base));
	for (int round = 0; round < 10; round++) { /* wraps the ring */
		unsigned n = 3 + (unsigned)round % 5, got;

		zoc_vq_prefetch(d->vq, 16);

		for (unsigned i = 0; i < n; i++) {
			struct vqd_seg sg[2] = {{data_gpa((uint16_t)i), 16, false},
					       {data_gpa((uint16_t)i) + 16, 48, true}};
			/* one unmapped buffer in the middle of every burst */
			if (i == 1)
				sg[1].gpa = UNMAPPED_GPA;
			ids[i] = drv_add(d, sg, i % 2 ? 2 : 1, indirect && i % 2, i);
			assert_true(ids[i] >= 0);
		}
		/* asking for fewer takes fewer; asking for more stops at empty */
		got = zoc_vq_pop_burst(d->vq, el, rcs, 2);
		assert_int_equal(got, 2);
		got += zoc_vq_pop_burst(d->vq, el + 2, rcs + 2, 16);
		assert_int_equal(got, n);
		assert_int_equal(zoc_vq_pop_burst(d->vq, el + n, rcs + n, 16), 0);
		assert_int_equal(zoc_vq_inflight_count(d->vq), n);
		for (unsigned i = 0; i < n; i++) {
			assert_int_equal(el[i].id, ids[i]);
			assert_int_equal(rcs[i], i == 1 ? -EFAULT : 1);
			assert_int_equal(el[i].out_len, 16);
			if (i != 1)
				assert_int_equal(el[i].in_len, i % 2 ? 48 : 0);
			lens[i] = 100u + i;
		}
		zoc_vq_push_burst(d->vq, el, lens, n);
		assert_int_equal(zoc_vq_inflight_count(d->vq), 0);
		if (!packed)
			assert_false(drv_get_used(d, &id, &len)); /* not before notify */
		zoc_vq_notify(d->vq);
		for (unsigned i = 0; i < n; i++) {
			assert_true(drv_get_used(d, &id, &len));
			assert_int_equal(id, ids[i]);
			assert_int_equal(len, 100u + i);
		}
		assert_false(drv_get_used(d, &id, &len));
		drain_callfd(d);
	}
	/* more pushes than pops: the extra one is refused, only the popped one
	 * reaches the ring */
	struct vqd_seg one = {data_gpa(0), 64, true};
	assert_true(drv_add(d, &one, 1, false, 0) >= 0);
	assert_int_equal(zoc_vq_pop_burst(d->vq, el, rcs, 16), 1);
	el[1] = el[0];
	zoc_vq_push_burst(d->vq, el, NULL, 2);
	zoc_vq_notify(d->vq);
	assert_true(drv_get_used(d, &id, &len));
	assert_int_equal(len, 0);
	assert_false(drv_get_used(d, &id, &len));
	drain_callfd(d);
	if (!packed) {
		/* a good chain, then a head out of range: the good one is
		 * taken, the queue breaks, later bursts take nothing */
		assert_true(drv_add(d, &one, 1, false, 0) >= 0);
		publish_split(d, 0xffff);
		assert_int_equal(zoc_vq_pop_burst(d->vq, el, rcs, 16), 1);
		assert_int_equal(rcs[0], 1);
		assert_true(zoc_vq_broken(d->vq));
		assert_int_equal(zoc_vq_pop_burst(d->vq, el, rcs, 16), 0);
		zoc_vq_push_burst(d->vq, el, NULL, 1);
	}
	drv_free(d);
}

static void test_burst(void **state)
{
	(void)state;
	check_burst(false, false, false);
	check_burst(false, true, false);
	check_burst(false, false, true);
	check_burst(true, false, false);
	check_burst(true, true, true);
}

/* A polling driver without a call fd: notify publishes the used index and
 * signals nothing; once a call fd is set, the next notify decides afresh
 * (and signals: the driver asked for interrupts). */
static void test_notify_without_callfd(void **state)
{
	struct drv *d = drv_new(8, false, true, false);
	struct vqd_seg seg = {data_gpa(0), 64, true};
	uint16_t id;
	uint32_t len;
	uint64_t v;

	(void)state;
	d->cfg.callfd = -1;
	assert_non_null(drv_create_vq(d, d->cfg.base));
	for (int round = 0; round < 3; round++) {
		assert_true(drv_add(d, &seg, 1, false, 0) >= 0);
		assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
		zoc_vq_push_deferred(d->vq, &g_elem, 7);
		assert_int_equal(zoc_vq_notify(d->vq), 0);
		assert_true(drv_get_used(d, &id, &len));
		assert_int_equal(len, 7);
	}
	zoc_vq_set_callfd(d->vq, d->callfd);
	assert_true(drv_add(d, &seg, 1, false, 0) >= 0);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
	zoc_vq_push_deferred(d->vq, &g_elem, 7);
	assert_int_equal(zoc_vq_notify(d->vq), 1);
	assert_int_equal(read(d->callfd, &v, sizeof(v)), (ssize_t)sizeof(v));
	assert_true(drv_get_used(d, &id, &len));
	drv_free(d);
}

/* An avail index that jumps over the ring breaks the queue on a burst too. */
static void test_burst_avail_jump(void **state)
{
	struct drv *d = drv_start(8, false, false, false);
	struct zoc_vq_elem el[4];
	int rcs[4];

	(void)state;
	d->q.avail->idx = (uint16_t)(d->q.avail->idx + 9);
	assert_int_equal(zoc_vq_pop_burst(d->vq, el, rcs, 4), 0);
	assert_true(zoc_vq_broken(d->vq));
	drv_free(d);
}

static void test_push_deferred(void **state)
{
	(void)state;
	check_push_deferred(false);
	check_push_deferred(true);
}

static void test_create_validation(void **state)
{
	struct drv *d = drv_new(8, false, false, false);
	struct zoc_vq_config c;
	struct zoc_vq *vq;

	(void)state;
	c = d->cfg;
	c.size = 0;
	errno = 0;
	assert_null(zoc_vq_create(&c));
	assert_int_equal(errno, EINVAL);
	c = d->cfg;
	c.size = 12; /* split must be a power of two */
	assert_null(zoc_vq_create(&c));
	c.packed = true;
	c.base = 0;
	vq = zoc_vq_create(&c); /* packed need not */
	assert_non_null(vq);
	zoc_vq_destroy(vq);
	c = d->cfg;
	c.desc = (uint8_t *)c.desc + 8;
	assert_null(zoc_vq_create(&c));
	c = d->cfg;
	c.device = (uint8_t *)c.device + 2;
	assert_null(zoc_vq_create(&c));
	c = d->cfg;
	c.driver = (uint8_t *)c.driver + 1;
	assert_null(zoc_vq_create(&c));
	c = d->cfg;
	c.mem = NULL;
	assert_null(zoc_vq_create(&c));
	c = d->cfg;
	c.base = 0x10000;
	assert_null(zoc_vq_create(&c));
	assert_null(zoc_vq_create(NULL));
	c = d->cfg;
	c.packed = true;
	c.base = 8 | 0x8000; /* index >= size */
	assert_null(zoc_vq_create(&c));
	c.base = 7 | ((uint32_t)(9 | 0x8000) << 16); /* used index >= size */
	assert_null(zoc_vq_create(&c));
	c.size = 32768;
	c.base = 0;
	vq = zoc_vq_create(&c);
	assert_non_null(vq);
	zoc_vq_destroy(vq);
	c.size = 0;
	assert_null(zoc_vq_create(&c));
	zoc_vq_destroy(NULL);
	drv_free(d);
}

static void test_sizes(void **state)
{
	uint64_t a, b, c;

	(void)state;
	zoc_vq_ring_sizes(256, false, &a, &b, &c);
	assert_int_equal(a, 4096);
	assert_int_equal(b, 6 + 2 * 256);
	assert_int_equal(c, 6 + 8 * 256);
	zoc_vq_ring_sizes(256, true, &a, &b, &c);
	assert_int_equal(a, 4096);
	assert_int_equal(b, 4);
	assert_int_equal(c, 4);
	zoc_vq_ring_sizes(8, false, NULL, NULL, &c);
	assert_int_equal(c, 70);
	assert_int_equal(sizeof(struct zoc_vq_inflight), 16);
	assert_int_equal(sizeof(struct zoc_vq_inflight_desc), 16);
	assert_int_equal(sizeof(struct zoc_vq_inflight_packed), 32);
	assert_int_equal(sizeof(struct zoc_vq_inflight_desc_packed), 32);
	assert_int_equal(offsetof(struct zoc_vq_inflight_packed, used_wrap_counter), 20);
	assert_int_equal(offsetof(struct zoc_vq_inflight_desc_packed, counter), 8);
	assert_int_equal(offsetof(struct zoc_vq_inflight_desc_packed, addr), 24);
	/* the packed layout is the larger; the split one fits in it */
	assert_int_equal(zoc_vq_inflight_queue_size(256), 32 + 256 * 32 + 32);
	assert_true(zoc_vq_inflight_queue_size(256) >= 16 + 256 * 16);
	assert_true(zoc_vq_inflight_queue_size(32768) >= 32 + 32768ull * 32);
	assert_int_equal(zoc_vq_inflight_queue_size(1), 64);
	assert_int_equal(zoc_vq_inflight_queue_size(32768) % 64, 0);
}

static void test_base_resume(void **state)
{
	(void)state;
	/* split: resume at avail 5 (entries 0-4 consumed earlier) */
	struct drv *d = drv_new(8, false, false, false);
	for (int i = 0; i < 6; i++) {
		d->q.desc[i] = (struct virtq_desc){data_gpa(0), 8, 0, 0};
		d->q.avail->ring[i] = (uint16_t)i;
	}
	d->q.avail->idx = 6;
	d->q.used->idx = 5;
	assert_non_null(drv_create_vq(d, 5));
	assert_int_equal(zoc_vq_get_base(d->vq), 5);
	assert_int_equal(zoc_vq_pop(d->vq, &g_elem), 1);
	assert_int_equal(g_elem.id, 5);
	zoc_vq_push(d->vq, &g_elem, 0);
	assert_int_equal(d->q.used->idx, 6);
	assert_int_equal(d->q.used->ring[5].id, 5);
	assert_int_equal(zoc_vq_get_base(d->vq), 6);
	drv_free(d);

	/* packed: run a few laps, restart from get_base, continue */
	d = drv_start(5, true, true, true);
	for (int i = 0; i < 13; i++)
		push_one(d);
	uint32_t base = zoc_vq_get_base(d->vq);
	assert_int_equal(base & 0x7fff, d->q.next_avail);
	assert_int_equal(!!(base & 0x8000), d->q.avail_wrap);
	assert_int_equal((base >> 16) & 0x7fff, d->q.next_used);
	zoc_vq_destroy(d->vq);
	assert_non_null(drv_create_vq(d, base));
	for (int i = 0; i < 13; i++)
		push_one(d);
	/* old-style base (no used half): used state = avail state */
	base = zoc_vq_get_base(d->vq) & 0xffff;
	zoc_vq_destroy(d->vq);
	assert_non_null(drv_create_vq(d, base));
	for (int i = 0; i < 7; i++)
		push_one(d);
	drv_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_create_validation),
		cmocka_unit_test(test_basic_all),
		cmocka_unit_test(test_cross_region),
		cmocka_unit_test(test_split_single_desc),
		cmocka_unit_test(test_out_of_order),
		cmocka_unit_test(test_random_wraparound),
		cmocka_unit_test(test_split_head_out_of_range),
		cmocka_unit_test(test_split_next_out_of_range),
		cmocka_unit_test(test_split_loop),
		cmocka_unit_test(test_split_chain_whole_queue),
		cmocka_unit_test(test_split_indirect_hostile),
		cmocka_unit_test(test_split_zero_len),
		cmocka_unit_test(test_split_readable_after_writable),
		cmocka_unit_test(test_split_bad_buffer),
		cmocka_unit_test(test_readonly_region),
		cmocka_unit_test(test_too_many_segments),
		cmocka_unit_test(test_length_overflow),
		cmocka_unit_test(test_split_avail_jump),
		cmocka_unit_test(test_packed_hostile),
		cmocka_unit_test(test_notify_split_flags),
		cmocka_unit_test(test_notify_defer),
		cmocka_unit_test(test_notify_split_event_idx),
		cmocka_unit_test(test_notify_after_fallback),
		cmocka_unit_test(test_notify_packed),
		cmocka_unit_test(test_inflight_resubmit),
		cmocka_unit_test(test_inflight_mismatch),
		cmocka_unit_test(test_watchdog_split),
		cmocka_unit_test(test_watchdog_packed),
		cmocka_unit_test(test_inflight_packed_resubmit),
		cmocka_unit_test(test_inflight_packed_crash_in_push),
		cmocka_unit_test(test_inflight_packed_crash_in_pop),
		cmocka_unit_test(test_inflight_packed_hostile),
		cmocka_unit_test(test_inflight_packed_random_crash),
		cmocka_unit_test(test_base_resume),
		cmocka_unit_test(test_push_deferred),
		cmocka_unit_test(test_burst),
		cmocka_unit_test(test_burst_avail_jump),
		cmocka_unit_test(test_notify_without_callfd),
	};

	zoc_log_set_level(ZOC_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
