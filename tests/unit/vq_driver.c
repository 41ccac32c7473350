/* SPDX-License-Identifier: MIT */
/*
 * vq_driver.c - the driver side of a virtqueue, for unit tests (see
 * vq_driver.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vq_driver.h"

/* ------------------------------------------------------------------ */
/* guest memory                                                        */

void vqd_mem_init(struct vqd_mem *g)
{
	memset(g, 0, sizeof(*g));
	g->mem = zoc_mem_create();
	assert_non_null(g->mem);
}

void vqd_mem_fini(struct vqd_mem *g)
{
	zoc_mem_put(g->mem);
	g->mem = NULL;
	for (unsigned i = 0; i < g->nblocks; i++)
		free(g->block[i].hva);
	g->nblocks = 0;
}

uint8_t *vqd_mem_alloc(struct vqd_mem *g, uint64_t gpa, uint64_t size)
{
	uint8_t *p;

	assert_true(g->nblocks < VQD_MEM_MAX_BLOCKS);
	p = aligned_alloc(4096, size);
	assert_non_null(p);
	memset(p, 0, size);
	g->block[g->nblocks].gpa = gpa;
	g->block[g->nblocks].size = size;
	g->block[g->nblocks].hva = p;
	g->nblocks++;
	return p;
}

/* The block holding [gpa, gpa + len), or NULL. */
static uint8_t *mem_find(const struct vqd_mem *g, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < g->nblocks; i++) {
		uint64_t start = g->block[i].gpa, size = g->block[i].size;

		if (gpa >= start && gpa - start < size && len <= size - (gpa - start))
			return g->block[i].hva + (gpa - start);
	}
	return NULL;
}

void vqd_mem_map(struct vqd_mem *g, uint64_t gpa, uint64_t size, uint64_t uva, bool writable)
{
	uint8_t *hva = mem_find(g, gpa, size);

	assert_non_null(hva);
	assert_int_equal(zoc_mem_add_region_hva(g->mem, gpa, size, uva, hva, writable), 0);
}

void *vqd_mem_ptr(const struct vqd_mem *g, uint64_t gpa)
{
	uint8_t *p = mem_find(g, gpa, 1);

	if (!p)
		fail_msg("gpa 0x%llx is not test memory", (unsigned long long)gpa);
	return p;
}

/* ------------------------------------------------------------------ */
/* one ring                                                            */

void vqd_init(struct vqd *q, struct vqd_mem *g, const struct vqd_layout *lay)
{
	memset(q, 0, sizeof(*q));
	assert_true(lay->size >= 1 && lay->max_segs >= 1);
	q->g = g;
	q->lay = *lay;
	q->size = lay->size;
	q->packed = lay->packed;
	q->desc = vqd_mem_ptr(g, lay->desc);
	q->pdesc = vqd_mem_ptr(g, lay->desc);
	q->avail = vqd_mem_ptr(g, lay->driver);
	q->drv_evt = vqd_mem_ptr(g, lay->driver);
	q->used = vqd_mem_ptr(g, lay->device);
	q->dev_evt = vqd_mem_ptr(g, lay->device);
	q->free_stack = calloc(q->size, sizeof(uint16_t));
	q->chain = calloc((size_t)q->size * lay->max_segs, sizeof(uint16_t));
	q->chain_len = calloc(q->size, sizeof(uint16_t));
	q->id_stack = calloc(q->size, sizeof(uint16_t));
	q->id_slots = calloc(q->size, sizeof(uint16_t));
	assert_true(q->free_stack && q->chain && q->chain_len && q->id_stack && q->id_slots);
	vqd_reset(q);
}

void vqd_fini(struct vqd *q)
{
	free(q->free_stack);
	free(q->chain);
	free(q->chain_len);
	free(q->id_stack);
	free(q->id_slots);
	memset(q, 0, sizeof(*q));
}

void vqd_reset(struct vqd *q)
{
	q->avail_idx = q->last_used = 0;
	q->nfree = 0;
	for (int i = q->size - 1; i >= 0; i--)
		q->free_stack[q->nfree++] = (uint16_t)i;
	memset(q->chain_len, 0, q->size * sizeof(uint16_t));
	q->next_avail = q->next_used = 0;
	q->avail_wrap = q->used_wrap = true;
	q->free_slots = q->size;
	q->nids = 0;
	for (int i = q->size - 1; i >= 0; i--)
		q->id_stack[q->nids++] = (uint16_t)i;
	memset(q->id_slots, 0, q->size * sizeof(uint16_t));
	q->outstanding = 0;
}

void vqd_vq_config(const struct vqd *q, struct zoc_vq_config *c)
{
	c->size = q->size;
	c->packed = q->packed;
	c->desc = q->desc;
	c->driver = q->avail;
	c->device = q->used;
	c->mem = q->g->mem;
}

static void fill_split(struct virtq_desc *x, const struct vqd_seg *s, uint16_t flags,
		       uint16_t next)
{
	x->addr = s->gpa;
	x->len = s->len;
	x->flags = (uint16_t)(flags | (s->write ? VIRTQ_DESC_F_WRITE : 0));
	x->next = next;
}

static uint64_t ind_gpa(const struct vqd *q, uint16_t id)
{
	return q->lay.ind + (uint64_t)id * q->lay.ind_slot;
}

void vqd_split_publish(struct vqd *q, uint16_t head)
{
	q->avail->ring[q->avail_idx & (q->size - 1)] = head;
	q->avail_idx++;
	__atomic_store_n(&q->avail->idx, q->avail_idx, __ATOMIC_RELEASE);
}

static int add_split(struct vqd *q, const struct vqd_seg *segs, int n, bool ind)
{
	uint16_t head = 0, prev = 0;

	if (q->nfree < (ind ? 1 : n))
		return -ENOSPC;
	if (ind) {
		uint64_t tgpa;
		struct virtq_desc *t;

		head = q->free_stack[--q->nfree];
		tgpa = ind_gpa(q, head);
		t = vqd_mem_ptr(q->g, tgpa);
		for (int i = 0; i < n; i++)
			fill_split(&t[i], &segs[i], i + 1 < n ? VIRTQ_DESC_F_NEXT : 0,
				   (uint16_t)(i + 1));
		q->desc[head] =
			(struct virtq_desc){tgpa, (uint32_t)(n * 16), VIRTQ_DESC_F_INDIRECT, 0};
		q->chain[(size_t)head * q->lay.max_segs] = head;
		q->chain_len[head] = 1;
	} else {
		for (int i = 0; i < n; i++) {
			uint16_t x = q->free_stack[--q->nfree];

			if (i == 0)
				head = x;
			else
				q->desc[prev].next = x;
			fill_split(&q->desc[x], &segs[i], i + 1 < n ? VIRTQ_DESC_F_NEXT : 0, 0);
			q->chain[(size_t)head * q->lay.max_segs + i] = x;
			prev = x;
		}
		q->chain_len[head] = (uint16_t)n;
	}
	vqd_split_publish(q, head);
	return head;
}

static int add_packed(struct vqd *q, const struct vqd_seg *segs, int n, bool ind)
{
	int need = ind ? 1 : n;
	uint16_t bid, first = q->next_avail, first_flags = 0;

	if (q->free_slots < need || q->nids == 0)
		return -ENOSPC;
	bid = q->id_stack[--q->nids];
	for (int i = 0; i < need; i++) {
		struct virtq_packed_desc *x = &q->pdesc[q->next_avail];
		uint16_t f = q->avail_wrap ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED;

		if (ind) {
			uint64_t tgpa = ind_gpa(q, bid);
			struct virtq_packed_desc *t = vqd_mem_ptr(q->g, tgpa);

			for (int k = 0; k < n; k++)
				t[k] = (struct virtq_packed_desc){
					segs[k].gpa, segs[k].len, 0,
					segs[k].write ? VIRTQ_DESC_F_WRITE : 0};
			x->addr = tgpa;
			x->len = (uint32_t)(n * 16);
			f |= VIRTQ_DESC_F_INDIRECT;
		} else {
			x->addr = segs[i].gpa;
			x->len = segs[i].len;
			if (segs[i].write)
				f |= VIRTQ_DESC_F_WRITE;
			if (i + 1 < need)
				f |= VIRTQ_DESC_F_NEXT;
		}
		x->id = bid;
		if (i == 0)
			first_flags = f; /* written last: it makes the buffer visible */
		else
			x->flags = f;
		if (++q->next_avail == q->size) {
			q->next_avail = 0;
			q->avail_wrap = !q->avail_wrap;
		}
	}
	__atomic_store_n(&q->pdesc[first].flags, first_flags, __ATOMIC_RELEASE);
	q->free_slots = (uint16_t)(q->free_slots - need);
	q->id_slots[bid] = (uint16_t)need;
	return bid;
}

int vqd_add(struct vqd *q, const struct vqd_seg *segs, int n, bool ind)
{
	int id;

	assert_true(n >= 1 && n <= q->lay.max_segs);
	id = q->packed ? add_packed(q, segs, n, ind) : add_split(q, segs, n, ind);
	if (id >= 0)
		q->outstanding++;
	return id;
}

int vqd_add_split_desc(struct vqd *q, struct virtq_desc x)
{
	uint16_t head;

	assert_false(q->packed);
	if (q->nfree == 0)
		return -ENOSPC;
	head = q->free_stack[--q->nfree];
	q->desc[head] = x;
	q->chain[(size_t)head * q->lay.max_segs] = head;
	q->chain_len[head] = 1;
	vqd_split_publish(q, head);
	q->outstanding++;
	return head;
}

bool vqd_get_used(struct vqd *q, uint16_t *id, uint32_t *len)
{
	if (!q->packed) {
		uint16_t idx = __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE);
		struct virtq_used_elem *e;
		const uint16_t *chain;

		if (idx == q->last_used)
			return false;
		e = &q->used->ring[q->last_used & (q->size - 1)];
		q->last_used++;
		assert_true(e->id < q->size);
		*id = (uint16_t)e->id;
		*len = e->len;
		assert_true(q->chain_len[*id] > 0);
		chain = &q->chain[(size_t)*id * q->lay.max_segs];
		for (int i = 0; i < q->chain_len[*id]; i++)
			q->free_stack[q->nfree++] = chain[i];
		q->chain_len[*id] = 0;
	} else {
		struct virtq_packed_desc *x = &q->pdesc[q->next_used];
		uint16_t f = __atomic_load_n(&x->flags, __ATOMIC_ACQUIRE);
		bool avail = f & VIRTQ_DESC_F_AVAIL, used = f & VIRTQ_DESC_F_USED;

		if (avail != used || used != q->used_wrap)
			return false;
		*id = x->id;
		*len = (f & VIRTQ_DESC_F_WRITE) ? x->len : 0;
		assert_true(*id < q->size);
		assert_true(q->id_slots[*id] > 0);
		q->next_used = (uint16_t)(q->next_used + q->id_slots[*id]);
		if (q->next_used >= q->size) {
			q->next_used = (uint16_t)(q->next_used - q->size);
			q->used_wrap = !q->used_wrap;
		}
		q->free_slots = (uint16_t)(q->free_slots + q->id_slots[*id]);
		q->id_slots[*id] = 0;
		q->id_stack[q->nids++] = *id;
	}
	q->outstanding--;
	return true;
}
