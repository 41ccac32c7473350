/* SPDX-License-Identifier: MIT */
/*
 * virtqueue.c - device side of split (virtio 1.2 section 2.7) and packed
 * (section 2.8) virtqueues.
 *
 * Ring memory is shared with a hostile driver: every descriptor is copied
 * into a local before any field is checked or used (no double fetch), every
 * index is range-checked, chains are bounded, and buffers are translated
 * through the domain's memory table with their whole length.
 *
 * Memory ordering (the driver runs on another CPU):
 *  - acquire load of avail->idx (split) / the head descriptor's flags
 *    (packed) before reading what they publish;
 *  - release store of used->idx (split) / the used descriptor's flags
 *    (packed) after writing the used element;
 *  - a full fence between publishing used entries and reading the driver's
 *    suppression state (used_event / driver event flags), and between
 *    enabling kicks and re-checking the ring.
 *
 * Inflight tracking (vhost-user INFLIGHT_SHMFD), split and packed rings,
 * in the layouts of QEMU's docs/interop/vhost-user.rst. The region is only
 * written on the data path (a local mirror holds the packed free list), and
 * read back, checked, on create after a crash. Stores to it are ordered for
 * a crash of this process (compiler barriers): the next back end reads the
 * same memory.
 */
#include "virtio/virtqueue.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"
#include "virtio/virtio.h"

#define DESC_SIZE 16u /* split and packed descriptors alike */

/* What we trust about one packed inflight entry: ours, never read back
 * from the shared region on the data path. */
struct pk_ent {
	uint16_t next;
	uint16_t last; /* head: its chain's last entry */
	uint16_t num;  /* head: entries in its chain */
	uint8_t busy;  /* head of a buffer in flight */
	uint8_t pad;
};

_Static_assert(sizeof(struct zoc_vq_inflight_packed) == 32, "QueueRegionPacked layout");
_Static_assert(sizeof(struct zoc_vq_inflight_desc_packed) == 32, "DescStatePacked layout");
_Static_assert(sizeof(struct zoc_vq_inflight) == 16, "QueueRegionSplit layout");
_Static_assert(sizeof(struct zoc_vq_inflight_desc) == 16, "DescStateSplit layout");

struct zoc_vq {
	/* --- hot: the first cache line holds all a pop/push/notify needs --- */
	uint8_t *desc;          /* struct virtq_desc[] or struct virtq_packed_desc[] */
	union {
		struct virtq_avail *avail;          /* split */
		struct virtq_packed_event *drv_evt; /* packed: driver event suppression */
	};
	union {
		struct virtq_used *used;            /* split */
		struct virtq_packed_event *dev_evt; /* packed: device event suppression */
	};
	const struct zoc_mem *mem;
	uint32_t pending_used;  /* split: pushes, packed: slots since last notify */
	uint32_t inflight_cnt;  /* popped, not yet pushed */
	uint16_t size;
	uint16_t mask;          /* split: size - 1 */
	uint16_t last_avail;    /* split: free running; packed: slot index */
	uint16_t shadow_avail;  /* split: last avail->idx read */
	uint16_t used_idx;      /* split: free running; packed: slot index */
	uint16_t signalled_used; /* used position at the last notify decision */
	uint16_t resubmit_num;
	uint16_t resubmit_pos;
	bool avail_wrap;        /* packed */
	bool used_wrap;         /* packed */
	bool signalled_wrap;    /* packed: used_wrap at the last notify decision */
	bool signalled_valid;   /* false: next notify decision always signals */
	bool packed;
	bool event_idx;
	bool indirect;
	bool broken;
	/* --- second line --- */
	struct zoc_vq_inflight *inflight; /* split only */
	struct zoc_vq_inflight_packed *pinflight; /* packed only */
	struct pk_ent *pk;      /* packed: local mirror of the region's entries */
	uint32_t mem_hint;      /* last memory region a buffer was found in */
	bool in_order;          /* VIRTIO_F_IN_ORDER: a prefetch hint only */
	uint16_t pk_free;       /* packed: local free_head (size: list empty) */
	uint64_t counter;       /* inflight fetch order */
	uint16_t *resubmit;     /* heads (packed: region entries) to return first */
	int callfd;
	void (*notify_fn)(void *arg);
	void (*broken_fn)(void *arg);
	void *fn_arg;
	bool kick_enabled;      /* what we last told the driver */
	bool restored;          /* created from a used inflight region */
	bool kick_state_known;
	bool used_unpublished;  /* split: push_deferred ran since the last notify */
	bool notify_deferred;   /* on this thread's t_defer list */
	/* --- cold --- */
	bool owed;              /* a decision suppressed since the last signal */
	uint64_t wd_pops;       /* stats.pops at the last zoc_vq_watchdog() */
	struct zoc_vq_stats stats;
};

_Static_assert(offsetof(struct zoc_vq, inflight) <= ZOC_CACHELINE,
	       "hot virtqueue fields must fit one cache line");

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static inline uint16_t load_acq16(const uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline uint16_t load16(const uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void store16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static inline void store_rel16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline void store32(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* Copies one 16-byte descriptor out of shared memory, exactly once. The
 * source may be unaligned (indirect tables are anywhere in guest memory). */
static inline void read_desc(void *dst, const void *src)
{
	memcpy(dst, src, DESC_SIZE);
	/* The copy is what we check and use: keep the compiler from going back
	 * to the shared memory for any of its fields. */
	__asm__ __volatile__("" ::: "memory");
}

static inline uint16_t *used_event_ptr(struct zoc_vq *vq)
{
	return &vq->avail->ring[vq->size];
}

static inline uint16_t *avail_event_ptr(struct zoc_vq *vq)
{
	return (uint16_t *)(void *)&vq->used->ring[vq->size];
}

static inline bool packed_desc_avail(uint16_t flags, bool wrap)
{
	return !!(flags & VIRTQ_DESC_F_AVAIL) == wrap && !!(flags & VIRTQ_DESC_F_USED) != wrap;
}

static int mark_broken(struct zoc_vq *vq, const char *why, unsigned a, unsigned b)
{
	bool was = vq->broken;

	if (!was)
		ZOC_WARN_RL("virtqueue %p (size %u, %s): broken: %s (%u, %u)", (void *)vq,
			    vq->size, vq->packed ? "packed" : "split", why, a, b);
	vq->broken = true;
	if (!was && vq->broken_fn)
		vq->broken_fn(vq->fn_arg);
	vq->stats.bad_chains++;
	return -EIO;
}

/* ------------------------------------------------------------------ */
/* sizes                                                               */

void zoc_vq_ring_sizes(uint16_t size, bool packed, uint64_t *desc, uint64_t *driver,
		       uint64_t *device)
{
	uint64_t d = (uint64_t)size * DESC_SIZE, drv, dev;

	if (packed) {
		drv = sizeof(struct virtq_packed_event);
		dev = sizeof(struct virtq_packed_event);
	} else {
		/* flags, idx, ring[size], used_event */
		drv = 4 + 2ull * size + 2;
		/* flags, idx, ring[size], avail_event */
		dev = 4 + 8ull * size + 2;
	}
	if (desc)
		*desc = d;
	if (driver)
		*driver = drv;
	if (device)
		*device = dev;
}

uint64_t zoc_vq_inflight_queue_size(uint16_t queue_size)
{
	uint64_t split = sizeof(struct zoc_vq_inflight) +
			 (uint64_t)queue_size * sizeof(struct zoc_vq_inflight_desc);
	uint64_t packed = sizeof(struct zoc_vq_inflight_packed) +
			  (uint64_t)queue_size * sizeof(struct zoc_vq_inflight_desc_packed);
	uint64_t sz = packed > split ? packed : split;

	return (sz + 63) & ~63ull;
}

/* ------------------------------------------------------------------ */
/* descriptor chain walking                                            */

/* The lengths add up in the element itself (zeroed by the pop): kept here
 * as two 4-byte fields and copied out at the end, they were reloaded as one
 * 8-byte word the two stores could not forward to (a stall per chain). */
struct walk {
	uint32_t niov;
	bool seen_write;
	bool fault;
};

/* Adds [addr, addr+len) to elem. Failure to translate fails the request
 * (fault), never the queue. */
static inline void add_buf(struct zoc_vq *vq, struct zoc_vq_elem *elem, struct walk *w,
			   uint64_t addr, uint32_t len, bool write)
{
	uint32_t room, *tot = write ? &elem->in_len : &elem->out_len;
	int n;

	if (len == 0)
		return;
	if (__builtin_add_overflow(*tot, len, tot)) {
		w->fault = true;
		elem->in_truncated |= write;
		return;
	}
	room = ZOC_VQ_MAX_IOV - w->niov;
	if (ZOC_UNLIKELY(room == 0)) {
		w->fault = true;
		elem->in_truncated |= write;
		return;
	}
	n = zoc_mem_gpa_to_iov(vq->mem, addr, len, write, &elem->iov[w->niov], (int)room);
	if (ZOC_LIKELY(n > 0)) {
		w->niov += (uint32_t)n;
		if (write) {
			elem->in_num += (uint16_t)n;
			elem->in_truncated = false; /* the last writable one is recorded */
		}
		else
			elem->out_num += (uint16_t)n;
		return;
	}
	w->fault = true;
	if (n != -EFAULT)
		elem->in_truncated |= write; /* -ENOBUFS: not recorded */
	if (n == -EFAULT) {
		/* Mark the hole so the caller sees which buffer failed. */
		elem->iov[w->niov].iov_base = NULL;
		elem->iov[w->niov].iov_len = len;
		w->niov++;
		if (write) {
			elem->in_num++;
			elem->in_truncated = false;
		}
		else
			elem->out_num++;
	}
}

/* Checks the readable-before-writable order and adds the buffer. */
static inline int chain_buf(struct zoc_vq *vq, struct zoc_vq_elem *elem, struct walk *w,
			    uint64_t addr, uint32_t len, uint16_t flags)
{
	bool write = flags & VIRTQ_DESC_F_WRITE;

	if (write)
		w->seen_write = true;
	else if (ZOC_UNLIKELY(w->seen_write))
		return mark_broken(vq, "device-readable descriptor after a writable one", 0, 0);
	add_buf(vq, elem, w, addr, len, write);
	return 0;
}

/* Validates an indirect descriptor and returns its table (NULL: not
 * mapped, fault set), or sets *rc to -EIO. */
static const uint8_t *indirect_table(struct zoc_vq *vq, struct walk *w, uint64_t addr,
				     uint32_t len, uint32_t *count, int *rc)
{
	const uint8_t *t;

	*rc = 0;
	if (ZOC_UNLIKELY(!vq->indirect)) {
		*rc = mark_broken(vq, "indirect descriptor without VIRTIO_F_INDIRECT_DESC", 0, 0);
		return NULL;
	}
	if (ZOC_UNLIKELY(len == 0 || (len & (DESC_SIZE - 1)) ||
			 len / DESC_SIZE > ZOC_VIRTQ_MAX_SIZE)) {
		*rc = mark_broken(vq, "bad indirect table length", len, 0);
		return NULL;
	}
	*count = len / DESC_SIZE;
	t = zoc_mem_gpa_to_hva(vq->mem, addr, len, false);
	if (!t)
		w->fault = true;
	return t;
}

/* Split: walks the chain at head. 0, or -EIO (queue broken). */
static int split_walk(struct zoc_vq *vq, uint16_t head, struct zoc_vq_elem *elem)
{
	const uint8_t *table = vq->desc;
	uint32_t table_size = vq->size, budget = vq->size, ndescs = 0;
	bool in_indirect = false;
	struct walk w = {0};
	uint16_t i = head;
	int rc;

	for (;;) {
		struct virtq_desc d;

		if (ZOC_UNLIKELY(budget == 0))
			return mark_broken(vq, in_indirect ? "indirect chain loops" :
					   "chain longer than the queue (loop)", head, table_size);
		budget--;
		read_desc(&d, table + (size_t)i * DESC_SIZE);
		if (!in_indirect)
			ndescs++;

		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			const uint8_t *t;
			uint32_t count = 0;

			if (ZOC_UNLIKELY(in_indirect))
				return mark_broken(vq, "nested indirect table", head, i);
			if (ZOC_UNLIKELY(d.flags & VIRTQ_DESC_F_NEXT))
				return mark_broken(vq, "indirect descriptor with NEXT", head, i);
			t = indirect_table(vq, &w, d.addr, d.len, &count, &rc);
			if (rc)
				return rc;
			if (!t)
				break; /* table not mapped: fail the request */
			table = t;
			table_size = count;
			budget = count;
			in_indirect = true;
			i = 0;
			continue;
		}

		rc = chain_buf(vq, elem, &w, d.addr, d.len, d.flags);
		if (rc)
			return rc;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		i = d.next;
		if (ZOC_UNLIKELY(i >= table_size))
			return mark_broken(vq, "next index out of range", i, table_size);
	}
	elem->ndescs = (uint16_t)ndescs;
	return w.fault ? -EFAULT : 0;
}

/* ------------------------------------------------------------------ */
/* split ring                                                          */

/* An element about to be filled by a walk: nothing in it yet. */
static inline void elem_reset(struct zoc_vq_elem *elem, bool resub)
{
	elem->out_num = 0;
	elem->in_truncated = false;
	elem->in_num = 0;
	elem->out_len = 0;
	elem->in_len = 0;
	elem->resubmitted = resub;
}

/* The common chain: one direct descriptor in one memory region. Fills elem
 * and returns true, or false for anything else (zoc_vq_pop then walks the
 * chain the general way, reading the descriptor again: what it finds then
 * is what counts). */
static inline bool split_single(struct zoc_vq *vq, uint16_t head, struct zoc_vq_elem *elem)
{
	struct virtq_desc d;
	uint8_t *hva;
	bool write;

	read_desc(&d, vq->desc + (size_t)head * DESC_SIZE);
	if ((d.flags & (VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT)) || d.len == 0 || !vq->mem)
		return false;
	write = d.flags & VIRTQ_DESC_F_WRITE;
	hva = zoc_mem_translate(vq->mem, &vq->mem_hint, d.addr, d.len, write);
	if (!hva)
		return false;
	elem->iov[0].iov_base = hva;
	elem->iov[0].iov_len = d.len;
	if (write) {
		elem->in_num = 1;
		elem->in_len = d.len;
	} else {
		elem->out_num = 1;
		elem->out_len = d.len;
	}
	elem->ndescs = 1;
	return true;
}

/* Chain `head` (index checked) into elem, with its bookkeeping. 1, -EFAULT
 * (a buffer outside memory: fail the request) or -EIO (queue broken).
 * Inlined into both callers: the burst loop is the data path. */
static inline __attribute__((always_inline)) int split_take(struct zoc_vq *vq, uint16_t head,
							   struct zoc_vq_elem *elem, bool resub)
{
	int rc;

	elem->id = head;
	elem_reset(elem, resub);
	rc = split_single(vq, head, elem) ? 0 : split_walk(vq, head, elem);
	if (rc == -EIO)
		return rc;

	if (vq->inflight) {
		struct zoc_vq_inflight_desc *s = &vq->inflight->desc[head];

		s->counter = ++vq->counter;
		__atomic_store_n(&s->inflight, 1, __ATOMIC_RELAXED);
	}
	vq->inflight_cnt++;
	vq->stats.pops++;
	if (resub)
		vq->stats.resubmitted++;
	if (rc) {
		vq->stats.bad_addrs++;
		ZOC_WARN_RL("virtqueue %p: request %u refers to unmapped memory", (void *)vq, head);
		return rc;
	}
	return 1;
}

static int split_pop(struct zoc_vq *vq, struct zoc_vq_elem *elem)
{
	bool resub = false;
	uint16_t head;

	if (ZOC_UNLIKELY(vq->resubmit_pos < vq->resubmit_num)) {
		head = vq->resubmit[vq->resubmit_pos++];
		resub = true;
	} else {
		if (vq->last_avail == vq->shadow_avail) {
			uint16_t idx = load_acq16(&vq->avail->idx);

			if (idx == vq->last_avail)
				return 0;
			if (ZOC_UNLIKELY((uint16_t)(idx - vq->last_avail) > vq->size))
				return mark_broken(vq, "avail index jumped", vq->last_avail, idx);
			vq->shadow_avail = idx;
		}
		head = load16(&vq->avail->ring[vq->last_avail & vq->mask]);
		vq->last_avail++;
		if (ZOC_UNLIKELY(head >= vq->size))
			return mark_broken(vq, "head index out of range", head, vq->size);
	}

	return split_take(vq, head, elem, resub);
}

static bool split_push(struct zoc_vq *vq, const struct zoc_vq_elem *elem, uint32_t len,
		       bool defer)
{
	struct zoc_vq_inflight *inf = vq->inflight;
	struct virtq_used_elem *ue;
	uint16_t id = elem->id, idx = vq->used_idx;

	if (ZOC_UNLIKELY(id >= vq->size)) {
		ZOC_ERR("virtqueue %p: push of id %u >= size %u", (void *)vq, id, vq->size);
		return false;
	}
	if (inf) {
		store16(&inf->last_batch_head, id);
		/* The inflight region must reflect program order if we crash. */
		atomic_signal_fence(memory_order_seq_cst);
	}
	ue = &vq->used->ring[idx & vq->mask];
	store32(&ue->id, id);
	store32(&ue->len, len);
	idx++;
	vq->used_idx = idx;
	if (defer && !inf) {
		/* zoc_vq_notify() publishes the index once for the batch: one
		 * store to the line the driver polls instead of one per entry. */
		vq->used_unpublished = true;
		return true;
	}
	store_rel16(&vq->used->idx, idx);
	if (inf) {
		atomic_signal_fence(memory_order_seq_cst);
		__atomic_store_n(&inf->desc[id].inflight, 0, __ATOMIC_RELAXED);
		store16(&inf->used_idx, idx);
	}
	return true;
}

static bool split_need_notify(struct zoc_vq *vq)
{
	if (vq->event_idx) {
		uint16_t ev = load16(used_event_ptr(vq));
		uint16_t nw = vq->used_idx, old = vq->signalled_used;

		if (!vq->signalled_valid || vq->pending_used >= 0x8000)
			return true;
		/* Did the entry at used_event get written in (old, new]? */
		return (uint16_t)(nw - ev - 1) < (uint16_t)(nw - old);
	}
	return !(load16(&vq->avail->flags) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

/* ------------------------------------------------------------------ */
/* packed ring                                                         */

/* Adds one packed descriptor, the n-th (from 1) of its chain, to elem:
 * its buffer, or the buffers of the indirect table it points to. Returns 0
 * or -EIO. */
static int packed_desc_add(struct zoc_vq *vq, struct zoc_vq_elem *elem, struct walk *w,
			   const struct virtq_packed_desc *d, uint32_t n, uint16_t at)
{
	const uint8_t *t;
	uint32_t count = 0;
	int rc;

	if (!(d->flags & VIRTQ_DESC_F_INDIRECT))
		return chain_buf(vq, elem, w, d->addr, d->len, d->flags);
	if (ZOC_UNLIKELY(n != 1 || (d->flags & VIRTQ_DESC_F_NEXT)))
		return mark_broken(vq, "indirect descriptor in a chain", at, n);
	t = indirect_table(vq, w, d->addr, d->len, &count, &rc);
	if (rc)
		return rc;
	/* Entries are sequential; only WRITE is meaningful in them (the
	 * others, NEXT and INDIRECT included, are ignored). */
	for (uint32_t k = 0; t && k < count; k++) {
		struct virtq_packed_desc e;

		read_desc(&e, t + (size_t)k * DESC_SIZE);
		rc = chain_buf(vq, elem, w, e.addr, e.len, e.flags & VIRTQ_DESC_F_WRITE);
		if (rc)
			return rc;
	}
	return 0;
}

static int packed_pop_done(struct zoc_vq *vq, struct zoc_vq_elem *elem, const struct walk *w)
{
	vq->inflight_cnt++;
	vq->stats.pops++;
	if (elem->resubmitted)
		vq->stats.resubmitted++;
	if (w->fault) {
		vq->stats.bad_addrs++;
		ZOC_WARN_RL("virtqueue %p: buffer %u refers to unmapped memory", (void *)vq,
			    elem->id);
		return -EFAULT;
	}
	return 1;
}

/* Packed: the next buffer recorded in the inflight region by an earlier
 * back end. Its chain structure is our own (checked at create); the
 * descriptors are read from the shared region once each. */
static int packed_resubmit(struct zoc_vq *vq, struct zoc_vq_elem *elem)
{
	uint16_t h = vq->resubmit[vq->resubmit_pos++], j = h, num = vq->pk[h].num;
	struct walk w = {0};
	int rc;

	elem_reset(elem, true);
	elem->inflight_slot = h;
	elem->ndescs = num;
	for (uint32_t k = 0; k < num; k++) {
		struct zoc_vq_inflight_desc_packed e;
		struct virtq_packed_desc d;

		memcpy(&e, &vq->pinflight->desc[j], sizeof(e));
		__asm__ __volatile__("" ::: "memory");
		d.addr = e.addr;
		d.len = e.len;
		d.id = e.id;
		d.flags = e.flags;
		if (ZOC_UNLIKELY((d.flags & VIRTQ_DESC_F_INDIRECT) && num != 1))
			return mark_broken(vq, "resubmitted indirect descriptor in a chain", h, num);
		rc = packed_desc_add(vq, elem, &w, &d, k + 1, h);
		if (rc)
			return rc;
		elem->id = d.id; /* the buffer id lives in the last descriptor */
		j = vq->pk[j].next;
	}
	return packed_pop_done(vq, elem, &w);
}

static int packed_pop(struct zoc_vq *vq, struct zoc_vq_elem *elem)
{
	struct zoc_vq_inflight_packed *inf = vq->pinflight;
	const uint8_t *ring = vq->desc;
	uint16_t idx = vq->last_avail, id = 0, flags, slot = vq->pk_free, cur = slot;
	uint32_t n = 0;
	bool wrap = vq->avail_wrap;
	struct walk w = {0};
	int rc;

	if (ZOC_UNLIKELY(vq->resubmit_pos < vq->resubmit_num))
		return packed_resubmit(vq, elem);

	flags = load_acq16((const uint16_t *)(const void *)(ring + (size_t)idx * DESC_SIZE + 14));
	if (!packed_desc_avail(flags, wrap))
		return 0;

	elem_reset(elem, false);
	elem->inflight_slot = 0;
	for (;;) {
		struct virtq_packed_desc d;
		bool last;

		if (ZOC_UNLIKELY(n >= vq->size))
			return mark_broken(vq, "chain longer than the queue", vq->last_avail, n);
		read_desc(&d, ring + (size_t)idx * DESC_SIZE);
		n++;
		if (++idx == vq->size) {
			idx = 0;
			wrap = !wrap;
		}
		rc = packed_desc_add(vq, elem, &w, &d, n, vq->last_avail);
		if (rc)
			return rc;
		last = (d.flags & VIRTQ_DESC_F_INDIRECT) || !(d.flags & VIRTQ_DESC_F_NEXT);
		if (inf) {
			/* Record the descriptor in the next free entry; nothing
			 * counts until the free head moves (below). */
			struct zoc_vq_inflight_desc_packed *e;

			if (ZOC_UNLIKELY(cur >= vq->size))
				return mark_broken(vq, "more descriptors in flight than the ring holds",
						   vq->last_avail, n);
			e = &inf->desc[cur];
			e->addr = d.addr;
			e->len = d.len;
			e->flags = d.flags;
			e->id = d.id;
			if (n > 1)
				e->inflight = 0;
			if (!last)
				cur = vq->pk[cur].next;
		}
		if (last) {
			id = d.id; /* the buffer id lives in the last descriptor */
			break;
		}
	}

	if (inf) {
		struct zoc_vq_inflight_desc_packed *e = &inf->desc[slot];
		uint16_t nf = vq->pk[cur].next;

		e->num = (uint16_t)n;
		e->last = cur;
		e->counter = ++vq->counter;
		atomic_signal_fence(memory_order_seq_cst);
		e->inflight = 1;
		atomic_signal_fence(memory_order_seq_cst);
		store16(&inf->free_head, nf);
		atomic_signal_fence(memory_order_seq_cst);
		store16(&inf->old_free_head, nf);
		vq->pk[slot].num = (uint16_t)n;
		vq->pk[slot].last = cur;
		vq->pk[slot].busy = 1;
		vq->pk_free = nf;
		elem->inflight_slot = slot;
	}
	vq->last_avail = idx;
	vq->avail_wrap = wrap;
	elem->id = id;
	elem->ndescs = (uint16_t)n;
	return packed_pop_done(vq, elem, &w);
}

/* The commit of a packed completion: old_free_head, old_used_idx and
 * old_used_wrap_counter take the new state in one store instruction, so a
 * back end killed at any instruction leaves all three old or all three new.
 * (Written one by one, a kill between the index and the wrap counter of a
 * push that wrapped left a position a lap off: recovery then waited for
 * descriptors the driver had made available a lap before.) Bytes 14..21 of
 * the header: old_free_head, used_idx, old_used_idx, used_wrap_counter,
 * old_used_wrap_counter; used_idx and used_wrap_counter already hold these
 * values and are rewritten unchanged. Host byte order, as the region is. */
typedef uint64_t __attribute__((aligned(1), may_alias)) pk_u64_unaligned;
_Static_assert(offsetof(struct zoc_vq_inflight_packed, old_free_head) == 14 &&
		       offsetof(struct zoc_vq_inflight_packed, old_used_wrap_counter) == 21,
	       "QueueRegionPacked commit bytes");

static inline void pk_commit_old(struct zoc_vq_inflight_packed *inf, uint16_t free_head,
				 uint16_t used_idx, bool wrap)
{
	uint8_t b[8];
	uint64_t v;

	memcpy(b, &free_head, 2);
	memcpy(b + 2, &used_idx, 2);
	memcpy(b + 4, &used_idx, 2);
	b[6] = wrap;
	b[7] = wrap;
	memcpy(&v, b, 8);
	*(volatile pk_u64_unaligned *)(void *)&inf->old_free_head = v;
}

static bool packed_push(struct zoc_vq *vq, const struct zoc_vq_elem *elem, uint32_t len)
{
	uint8_t *slot = vq->desc + (size_t)vq->used_idx * DESC_SIZE;
	struct virtq_packed_desc *d = (struct virtq_packed_desc *)(void *)slot;
	uint16_t flags = vq->used_wrap ? (VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED) : 0;
	uint32_t nu;

	struct zoc_vq_inflight_packed *inf = vq->pinflight;
	uint16_t h = elem->inflight_slot;
	bool nwrap = vq->used_wrap;

	if (ZOC_UNLIKELY(elem->ndescs == 0 || elem->ndescs > vq->size)) {
		ZOC_ERR("virtqueue %p: push of a buffer with %u descriptors", (void *)vq,
			elem->ndescs);
		return false;
	}
	if (inf && ZOC_UNLIKELY(h >= vq->size || !vq->pk[h].busy ||
				vq->pk[h].num != elem->ndescs)) {
		ZOC_ERR("virtqueue %p: push of buffer %u that is not in flight (entry %u)",
			(void *)vq, elem->id, h);
		return false;
	}
	nu = (uint32_t)vq->used_idx + elem->ndescs;
	if (nu >= vq->size) {
		nu -= vq->size;
		nwrap = !nwrap;
	}
	if (inf) {
		/* Give the chain back to the free list and move the used
		 * position; old_* still hold the state before this push. */
		uint16_t last = vq->pk[h].last;

		store16(&inf->desc[last].next, vq->pk_free);
		vq->pk[last].next = vq->pk_free;
		vq->pk_free = h;
		store16(&inf->free_head, h);
		store16(&inf->used_idx, (uint16_t)nu);
		inf->used_wrap_counter = nwrap;
		atomic_signal_fence(memory_order_seq_cst);
	}
	if (len)
		flags |= VIRTQ_DESC_F_WRITE;
	store16(&d->id, elem->id);
	store32(&d->len, len);
	store_rel16(&d->flags, flags);
	if (inf) {
		/* Published: commit. */
		atomic_signal_fence(memory_order_seq_cst);
		inf->desc[h].inflight = 0;
		vq->pk[h].busy = 0;
		atomic_signal_fence(memory_order_seq_cst);
		pk_commit_old(inf, h, (uint16_t)nu, nwrap);
	}
	vq->used_idx = (uint16_t)nu;
	vq->used_wrap = nwrap;
	return true;
}

/* Distance from b forward to a in the 2*size cycle of (index, wrap). */
static inline uint32_t packed_dist(uint32_t a, uint32_t b, uint32_t cycle)
{
	return a >= b ? a - b : a + cycle - b;
}

static inline uint32_t packed_pos(uint16_t idx, bool wrap, uint16_t size)
{
	/* Wrap counters start at 1: the first lap is [0, size). */
	return wrap ? idx : (uint32_t)idx + size;
}

static bool packed_need_notify(struct zoc_vq *vq)
{
	uint16_t flags = load16(&vq->drv_evt->flags) & 3;
	uint16_t off_wrap, off;
	uint32_t cycle, old, nw, ev;

	if (flags == VIRTQ_EVENT_F_DISABLE)
		return false;
	if (flags != VIRTQ_EVENT_F_DESC || !vq->event_idx)
		return true; /* ENABLE, reserved, or DESC without EVENT_IDX */
	if (!vq->signalled_valid || vq->pending_used >= vq->size)
		return true;
	off_wrap = load16(&vq->drv_evt->off_wrap);
	off = off_wrap & 0x7fff;
	if (off >= vq->size)
		return true; /* nonsense: better a spurious interrupt than a hang */
	cycle = 2u * vq->size;
	old = packed_pos(vq->signalled_used, vq->signalled_wrap, vq->size);
	nw = packed_pos(vq->used_idx, vq->used_wrap, vq->size);
	ev = packed_pos(off, off_wrap >> 15, vq->size);
	/* Was the slot at the event offset written in [old, new)? */
	return packed_dist(ev, old, cycle) < packed_dist(nw, old, cycle);
}

/* ------------------------------------------------------------------ */
/* inflight (split)                                                    */

struct resub_ent {
	uint64_t counter;
	uint16_t head;
};

static int resub_cmp(const void *a, const void *b)
{
	const struct resub_ent *x = a, *y = b;

	if (x->counter != y->counter)
		return x->counter < y->counter ? -1 : 1;
	return (int)x->head - (int)y->head;
}

/* Queues the n in-flight heads of ents (freed here) for pop to return
 * first, oldest counter first; the fetch counter continues after maxc. */
static int resubmit_set(struct zoc_vq *vq, struct resub_ent *ents, uint16_t n, uint64_t maxc)
{
	if (n) {
		qsort(ents, n, sizeof(*ents), resub_cmp);
		vq->resubmit = malloc((size_t)n * sizeof(uint16_t));
		if (!vq->resubmit) {
			free(ents);
			return -ENOMEM;
		}
		for (uint16_t k = 0; k < n; k++)
			vq->resubmit[k] = ents[k].head;
	}
	free(ents);
	vq->resubmit_num = n;
	vq->resubmit_pos = 0;
	vq->counter = maxc;
	return 0;
}

static void inflight_init(struct zoc_vq *vq)
{
	struct zoc_vq_inflight *inf = vq->inflight;

	memset(inf->desc, 0, (size_t)vq->size * sizeof(inf->desc[0]));
	inf->features = 0;
	inf->desc_num = vq->size;
	inf->last_batch_head = 0;
	inf->used_idx = vq->used_idx;
	atomic_signal_fence(memory_order_seq_cst);
	inf->version = 1;
}

static int inflight_recover(struct zoc_vq *vq)
{
	struct zoc_vq_inflight *inf = vq->inflight;
	struct resub_ent *ents;
	uint16_t used = vq->used_idx, n = 0;
	uint64_t maxc = 0;

	if (inf->desc_num != vq->size) {
		ZOC_WARN("virtqueue: inflight region for %u descriptors, queue has %u; "
			 "in-flight requests are lost", inf->desc_num, vq->size);
		inflight_init(vq);
		return 0;
	}
	if (inf->used_idx != used) {
		/* We crashed between publishing used->idx and retiring the
		 * entry: that one completed. */
		if (inf->last_batch_head < vq->size)
			inf->desc[inf->last_batch_head].inflight = 0;
		inf->used_idx = used;
	}
	ents = malloc((size_t)vq->size * sizeof(*ents));
	if (!ents)
		return -ENOMEM;
	for (uint32_t i = 0; i < vq->size; i++) {
		if (!inf->desc[i].inflight)
			continue;
		inf->desc[i].inflight = 1;
		ents[n].counter = inf->desc[i].counter;
		ents[n].head = (uint16_t)i;
		if (ents[n].counter > maxc)
			maxc = ents[n].counter;
		n++;
	}
	if (resubmit_set(vq, ents, n, maxc))
		return -ENOMEM;
	vq->last_avail = (uint16_t)(used + n);
	vq->shadow_avail = vq->last_avail;
	if (n)
		ZOC_INFO("virtqueue: %u in-flight request(s) to resubmit, last_avail %u", n,
			 vq->last_avail);
	return 0;
}

/* ------------------------------------------------------------------ */
/* inflight (packed)                                                   */

/* A fresh region: every entry free, linked in index order; positions from
 * the queue. */
static void pk_inflight_init(struct zoc_vq *vq)
{
	struct zoc_vq_inflight_packed *inf = vq->pinflight;

	inf->version = 0;
	atomic_signal_fence(memory_order_seq_cst);
	memset(inf->desc, 0, (size_t)vq->size * sizeof(inf->desc[0]));
	for (uint32_t i = 0; i < vq->size; i++) {
		inf->desc[i].next = (uint16_t)(i + 1);
		vq->pk[i] = (struct pk_ent){.next = (uint16_t)(i + 1)};
	}
	vq->pk_free = 0;
	inf->features = 0;
	inf->desc_num = vq->size;
	inf->free_head = inf->old_free_head = 0;
	inf->used_idx = inf->old_used_idx = vq->used_idx;
	inf->used_wrap_counter = inf->old_used_wrap_counter = vq->used_wrap;
	memset(inf->padding, 0, sizeof(inf->padding));
	vq->counter = 0;
	atomic_signal_fence(memory_order_seq_cst);
	inf->version = 1;
}

/* Where recovery puts each entry. */
enum { PK_UNSEEN = 0, PK_FREE, PK_OWNED };

/* Reads a region left by an earlier back end (see the header for the
 * protocol). Returns 0 (recovered, or the region was unusable and has been
 * re-initialised: its requests are lost), or -ENOMEM. The region is shared
 * with the front end: every index is checked, every walk bounded. */
static int pk_inflight_recover(struct zoc_vq *vq)
{
	struct zoc_vq_inflight_packed *inf = vq->pinflight;
	uint16_t size = vq->size, fh, ui, n = 0, prev;
	uint32_t slots = 0, pos;
	bool uw, bad = false;
	struct resub_ent *ents = NULL;
	uint8_t *state = NULL;
	const char *why = NULL;
	uint64_t maxc = 0;

	if (inf->desc_num != size) {
		ZOC_WARN("virtqueue: packed inflight region for %u descriptors, queue has %u; "
			 "in-flight requests are lost", inf->desc_num, size);
		pk_inflight_init(vq);
		return 0;
	}
	fh = load16(&inf->free_head);
	ui = load16(&inf->used_idx);
	uw = inf->used_wrap_counter != 0;
	if (load16(&inf->used_idx) != load16(&inf->old_used_idx) ||
	    (inf->used_wrap_counter != 0) != (inf->old_used_wrap_counter != 0)) {
		/* A crash inside a completion. If the used descriptor at the
		 * old position was written, the completion happened: commit
		 * it; else roll it back. */
		uint16_t oui = load16(&inf->old_used_idx);
		bool ouw = inf->old_used_wrap_counter != 0;

		if (oui < size) {
			uint16_t f = load16((const uint16_t *)(const void *)(vq->desc +
						(size_t)oui * DESC_SIZE + 14));
			uint16_t avail_form = ouw ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED;

			if ((f & (VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED)) != avail_form)
				goto have_state; /* commit: keep the new values */
		}
	}
	fh = load16(&inf->old_free_head);
	ui = load16(&inf->old_used_idx);
	uw = inf->old_used_wrap_counter != 0;
have_state:
	if (ui >= size || fh > size) {
		why = "position out of range";
		goto invalid;
	}
	state = calloc(size, 1);
	ents = malloc((size_t)size * sizeof(*ents));
	if (!state || !ents) {
		free(state);
		free(ents);
		return -ENOMEM;
	}
	/* The free list (bounded: a loop just ends the walk). */
	for (uint32_t k = 0, j = fh; k < size && j < size && state[j] == PK_UNSEEN; k++) {
		state[j] = PK_FREE;
		j = load16(&inf->desc[j].next);
	}
	/* Heads of buffers in flight, and their chains. */
	for (uint32_t i = 0; i < size && !bad; i++) {
		uint16_t num, j = (uint16_t)i;

		if (state[i] != PK_UNSEEN || !inf->desc[i].inflight)
			continue;
		num = load16(&inf->desc[i].num);
		if (num == 0 || num > size) {
			why = "bad chain length";
			bad = true;
			break;
		}
		for (uint32_t k = 0; k < num; k++) {
			if (j >= size || state[j] != PK_UNSEEN || (k && j == i)) {
				why = "chains overlap or leave the region";
				bad = true;
				break;
			}
			state[j] = PK_OWNED;
			vq->pk[j].busy = 0;
			vq->pk[j].next = load16(&inf->desc[j].next);
			if (k + 1 < num)
				j = vq->pk[j].next;
		}
		if (bad)
			break;
		vq->pk[i].num = num;
		vq->pk[i].last = j;
		inf->desc[i].last = j;
		vq->pk[i].busy = 1;
		ents[n].counter = inf->desc[i].counter;
		ents[n].head = (uint16_t)i;
		if (ents[n].counter > maxc)
			maxc = ents[n].counter;
		n++;
		slots += num;
	}
	if (bad)
		goto invalid;

	/* Rebuild the free list from everything not in flight, in index
	 * order: the region becomes consistent again whatever it held. */
	prev = size;
	vq->pk_free = size;
	for (uint32_t i = 0; i < size; i++) {
		if (state[i] == PK_OWNED) {
			if (!vq->pk[i].busy)
				inf->desc[i].inflight = 0; /* not a head */
			else
				inf->desc[i].inflight = 1;
			continue;
		}
		inf->desc[i].inflight = 0;
		vq->pk[i] = (struct pk_ent){.next = size};
		inf->desc[i].next = size;
		if (prev == size)
			vq->pk_free = (uint16_t)i;
		else {
			vq->pk[prev].next = (uint16_t)i;
			inf->desc[prev].next = (uint16_t)i;
		}
		prev = (uint16_t)i;
	}
	atomic_signal_fence(memory_order_seq_cst);
	inf->free_head = inf->old_free_head = vq->pk_free;
	inf->used_idx = inf->old_used_idx = ui;
	inf->used_wrap_counter = inf->old_used_wrap_counter = uw;
	free(state);
	state = NULL;

	if (resubmit_set(vq, ents, n, maxc))
		return -ENOMEM;
	/* Every slot popped is either used or in flight. */
	vq->used_idx = ui;
	vq->used_wrap = uw;
	pos = (uint32_t)ui + slots;
	vq->avail_wrap = uw;
	if (pos >= size) {
		pos -= size;
		vq->avail_wrap = !uw;
	}
	vq->last_avail = (uint16_t)pos;
	if (n)
		ZOC_INFO("virtqueue: %u in-flight buffer(s) to resubmit, avail %u wrap %u, "
			 "used %u wrap %u", n, vq->last_avail, vq->avail_wrap, ui, uw);
	return 0;

invalid:
	free(state);
	free(ents);
	ZOC_WARN("virtqueue: packed inflight region is inconsistent (%s); in-flight "
		 "requests are lost", why);
	/* Only trust what the front end told us. */
	pk_inflight_init(vq);
	return 0;
}

/* ------------------------------------------------------------------ */
/* life cycle                                                          */

static bool aligned(const void *p, uintptr_t a)
{
	return ((uintptr_t)p & (a - 1)) == 0;
}

struct zoc_vq *zoc_vq_create(const struct zoc_vq_config *cfg)
{
	struct zoc_vq *vq;
	int rc;

	if (!cfg || !cfg->desc || !cfg->driver || !cfg->device || !cfg->mem ||
	    cfg->size == 0 || cfg->size > ZOC_VIRTQ_MAX_SIZE)
		goto einval;
	if (cfg->packed) {
		uint16_t avail = cfg->base & 0xffff, usedst = cfg->base >> 16;

		if (!aligned(cfg->desc, 16) || !aligned(cfg->driver, 4) || !aligned(cfg->device, 4))
			goto einval;
		if (usedst == 0)
			usedst = avail;
		if ((avail & 0x7fff) >= cfg->size || (usedst & 0x7fff) >= cfg->size)
			goto einval;
	} else {
		if (cfg->size & (cfg->size - 1))
			goto einval;
		if (!aligned(cfg->desc, 16) || !aligned(cfg->driver, 2) || !aligned(cfg->device, 4))
			goto einval;
		if (cfg->base > 0xffff)
			goto einval;
	}
	if (cfg->inflight && !aligned(cfg->inflight, 8))
		goto einval;

	if (posix_memalign((void **)&vq, ZOC_CACHELINE, sizeof(*vq))) {
		errno = ENOMEM;
		return NULL;
	}
	memset(vq, 0, sizeof(*vq));
	vq->desc = cfg->desc;
	vq->mem = cfg->mem;
	vq->size = cfg->size;
	vq->mask = (uint16_t)(cfg->size - 1);
	vq->packed = cfg->packed;
	vq->event_idx = cfg->event_idx;
	vq->indirect = cfg->indirect;
	vq->in_order = cfg->in_order;
	vq->callfd = cfg->callfd;
	vq->notify_fn = cfg->notify_fn;
	vq->broken_fn = cfg->broken_fn;
	vq->fn_arg = cfg->fn_arg;

	if (cfg->packed) {
		uint16_t avail = cfg->base & 0xffff, usedst = cfg->base >> 16;

		if (usedst == 0)
			usedst = avail;
		vq->drv_evt = cfg->driver;
		vq->dev_evt = cfg->device;
		vq->last_avail = avail & 0x7fff;
		vq->avail_wrap = avail >> 15;
		vq->used_idx = usedst & 0x7fff;
		vq->used_wrap = usedst >> 15;
		if (cfg->inflight) {
			vq->pinflight = (struct zoc_vq_inflight_packed *)(void *)cfg->inflight;
			vq->pk = calloc(cfg->size, sizeof(*vq->pk));
			if (!vq->pk) {
				free(vq);
				errno = ENOMEM;
				return NULL;
			}
			if (vq->pinflight->version == 0) {
				pk_inflight_init(vq);
			} else {
				vq->restored = true;
				rc = pk_inflight_recover(vq);
				if (rc) {
					free(vq->pk);
					free(vq);
					errno = -rc;
					return NULL;
				}
			}
		}
	} else {
		vq->avail = cfg->driver;
		vq->used = cfg->device;
		vq->last_avail = (uint16_t)cfg->base;
		vq->shadow_avail = vq->last_avail;
		/* The ring's used index is the truth after a restart. */
		vq->used_idx = load16(&vq->used->idx);
		vq->inflight = cfg->inflight;
		if (vq->inflight) {
			if (vq->inflight->version == 0) {
				inflight_init(vq);
			} else {
				vq->restored = true;
				rc = inflight_recover(vq);
				if (rc) {
					free(vq);
					errno = -rc;
					return NULL;
				}
			}
		}
	}
	vq->signalled_used = vq->used_idx;
	vq->signalled_wrap = vq->used_wrap;
	vq->signalled_valid = false;
	return vq;

einval:
	errno = EINVAL;
	return NULL;
}

static void defer_forget(struct zoc_vq *vq);

void zoc_vq_destroy(struct zoc_vq *vq)
{
	if (!vq)
		return;
	if (vq->notify_deferred)
		defer_forget(vq);
	free(vq->resubmit);
	free(vq->pk);
	free(vq);
}

/* ------------------------------------------------------------------ */
/* data path                                                           */

int zoc_vq_pop(struct zoc_vq *vq, struct zoc_vq_elem *elem)
{
	if (ZOC_UNLIKELY(vq->broken))
		return -EIO;
	return vq->packed ? packed_pop(vq, elem) : split_pop(vq, elem);
}

static inline void vq_push(struct zoc_vq *vq, const struct zoc_vq_elem *elem, uint32_t len,
			   bool defer)
{
	/* More pushes than pops would hand the driver slots it still owns. */
	if (ZOC_UNLIKELY(vq->inflight_cnt == 0)) {
		ZOC_ERR("virtqueue %p: push without a matching pop (id %u)", (void *)vq,
			elem->id);
		return;
	}
	if (vq->packed) {
		if (!packed_push(vq, elem, len))
			return;
		vq->pending_used += elem->ndescs;
	} else {
		if (!split_push(vq, elem, len, defer))
			return;
		vq->pending_used++;
	}
	vq->inflight_cnt--;
	vq->stats.pushes++;
}

void zoc_vq_push(struct zoc_vq *vq, const struct zoc_vq_elem *elem, uint32_t len)
{
	vq_push(vq, elem, len, false);
}

void zoc_vq_push_deferred(struct zoc_vq *vq, const struct zoc_vq_elem *elem, uint32_t len)
{
	vq_push(vq, elem, len, true);
}

unsigned zoc_vq_pop_burst(struct zoc_vq *vq, struct zoc_vq_elem *elems, int *rcs, unsigned n)
{
	unsigned i = 0;

	if (ZOC_LIKELY(!vq->packed && !vq->broken && !vq->inflight &&
		       vq->resubmit_pos >= vq->resubmit_num)) {
		/* Split without an inflight region: the ring state is read and
		 * checked once, then each chain as split_pop() does. */
		uint16_t idx = load_acq16(&vq->avail->idx), avail = (uint16_t)(idx - vq->last_avail);

		if (ZOC_UNLIKELY(avail > vq->size)) {
			mark_broken(vq, "avail index jumped", vq->last_avail, idx);
			return 0;
		}
		vq->shadow_avail = idx;
		n = ZOC_MIN(n, avail);
		for (; i < n; i++) {
			uint16_t head = load16(&vq->avail->ring[vq->last_avail & vq->mask]);
			int rc;

			vq->last_avail++;
			if (ZOC_UNLIKELY(head >= vq->size)) {
				mark_broken(vq, "head index out of range", head, vq->size);
				break;
			}
			rc = split_take(vq, head, &elems[i], false);
			if (rc == -EIO)
				break;
			rcs[i] = rc;
		}
		return i;
	}
	for (; i < n; i++) {
		int rc = zoc_vq_pop(vq, &elems[i]);

		if (rc == 0 || rc == -EIO)
			break;
		rcs[i] = rc;
	}
	return i;
}

void zoc_vq_push_burst(struct zoc_vq *vq, const struct zoc_vq_elem *elems, const uint32_t *lens,
		       unsigned n)
{
	if (ZOC_LIKELY(!vq->packed && !vq->inflight && n <= vq->inflight_cnt)) {
		uint16_t idx = vq->used_idx;
		unsigned i;

		for (i = 0; i < n; i++) {
			struct virtq_used_elem *ue = &vq->used->ring[(uint16_t)(idx + i) & vq->mask];
			uint16_t id = elems[i].id;

			if (ZOC_UNLIKELY(id >= vq->size)) {
				ZOC_ERR("virtqueue %p: push of id %u >= size %u", (void *)vq, id,
					vq->size);
				break;
			}
			store32(&ue->id, id);
			store32(&ue->len, lens ? lens[i] : 0);
		}
		/* zoc_vq_notify() publishes the index once for the batch. */
		vq->used_idx = (uint16_t)(idx + i);
		vq->used_unpublished |= i > 0;
		vq->pending_used += i;
		vq->inflight_cnt -= i;
		vq->stats.pushes += i;
		return;
	}
	for (unsigned i = 0; i < n; i++)
		vq_push(vq, &elems[i], lens ? lens[i] : 0, true);
}

void zoc_vq_prefetch(const struct zoc_vq *vq, unsigned n)
{
	if (vq->broken || vq->resubmit_pos < vq->resubmit_num)
		return;
	if (vq->packed) {
		/* Descriptors are read in ring order: one prefetch per line. */
		uint32_t pos = vq->last_avail;

		n = ZOC_MIN(n, vq->size);
		for (unsigned i = 0; i < n; i += ZOC_CACHELINE / DESC_SIZE) {
			__builtin_prefetch(vq->desc + (size_t)pos * DESC_SIZE);
			pos += ZOC_CACHELINE / DESC_SIZE;
			if (pos >= vq->size)
				pos -= vq->size;
		}
		return;
	}
	/* Split: the heads of the next n available chains. A hint only: an
	 * out-of-range head is skipped here and caught by pop. */
	if (vq->in_order) {
		/* In-order drivers (DPDK's) put the next chains in the next
		 * descriptors: fetch those now, beside the avail ring, instead
		 * of after it (one cross-CPU latency less per burst); and the
		 * avail ring's lines that pop reads the heads from. */
		uint16_t pos = vq->last_avail & vq->mask;
		const unsigned per_line = ZOC_CACHELINE / sizeof(vq->avail->ring[0]);

		n = ZOC_MIN(n, vq->size);
		for (unsigned i = 0; i < n; i += ZOC_CACHELINE / DESC_SIZE) {
			__builtin_prefetch(vq->desc + (size_t)pos * DESC_SIZE);
			pos = (uint16_t)(pos + ZOC_CACHELINE / DESC_SIZE) & vq->mask;
		}
		pos = vq->last_avail & vq->mask;
		for (unsigned i = 0; i < n; i += per_line) {
			__builtin_prefetch(&vq->avail->ring[pos]);
			pos = (uint16_t)(pos + per_line) & vq->mask;
		}
		return;
	}
	uint16_t avail = (uint16_t)(load16(&vq->avail->idx) - vq->last_avail);

	n = ZOC_MIN(n, ZOC_MIN(avail, vq->size));
	for (unsigned i = 0; i < n; i++) {
		uint16_t head = load16(&vq->avail->ring[(uint16_t)(vq->last_avail + i) & vq->mask]);

		if (head < vq->size)
			__builtin_prefetch(vq->desc + (size_t)head * DESC_SIZE);
	}
}

static int notify_decide(struct zoc_vq *vq);

/* First half of a notification: the batch's used index goes out. Returns
 * true when a decision is due (after a full fence: notify_decide()). */
static bool notify_publish(struct zoc_vq *vq)
{
	if (vq->pending_used == 0)
		return false;
	if (vq->used_unpublished) {
		vq->used_unpublished = false;
		store_rel16(&vq->used->idx, vq->used_idx);
	}
	if (!vq->notify_fn && vq->callfd < 0) {
		/* Nobody to signal (a polling driver gave no call fd): no
		 * decision, so no full fence, which would wait for every store
		 * of the burst (the copies into receive buffers) to drain. */
		vq->signalled_valid = false;
		vq->pending_used = 0;
		return false;
	}
	return true;
}

/* Used entries must be visible before we read what the driver wants. */
static int notify_fence_decide(struct zoc_vq *vq)
{
	atomic_thread_fence(memory_order_seq_cst);
	return notify_decide(vq);
}

int zoc_vq_notify(struct zoc_vq *vq)
{
	if (!notify_publish(vq))
		return 0;
	return notify_fence_decide(vq);
}

/* Queues of this thread waiting for the end of the reactor's round. */
#define DEFER_MAX 64
static __thread struct zoc_vq *t_defer[DEFER_MAX];
static __thread unsigned t_ndefer;

static void defer_flush(void *arg)
{
	unsigned n = t_ndefer;

	(void)arg;
	t_ndefer = 0;
	atomic_thread_fence(memory_order_seq_cst);
	for (unsigned i = 0; i < n; i++) {
		t_defer[i]->notify_deferred = false;
		notify_decide(t_defer[i]);
	}
}

void zoc_vq_notify_defer(struct zoc_vq *vq)
{
	if (!notify_publish(vq) || vq->notify_deferred)
		return;
	if (t_ndefer == DEFER_MAX ||
	    (t_ndefer == 0 && zoc_reactor_at_round_end(defer_flush, NULL) < 0)) {
		notify_fence_decide(vq);
		return;
	}
	vq->notify_deferred = true;
	t_defer[t_ndefer++] = vq;
}

/* A queue going away takes itself off the list (its owner destroys it). */
static void defer_forget(struct zoc_vq *vq)
{
	for (unsigned i = 0; i < t_ndefer; i++) {
		if (t_defer[i] == vq) {
			t_defer[i] = t_defer[--t_ndefer];
			vq->notify_deferred = false;
			return;
		}
	}
	ZOC_ERR("virtqueue %p: destroyed off its owner thread with a notification pending",
		(void *)vq);
}

/* Second half: after the fence, signal if the driver wants it. Nothing to
 * decide if a zoc_vq_notify() came in between. */
static int notify_decide(struct zoc_vq *vq)
{
	bool need;

	if (vq->pending_used == 0)
		return 0;
	need = vq->packed ? packed_need_notify(vq) : split_need_notify(vq);
	vq->signalled_used = vq->used_idx;
	vq->signalled_wrap = vq->used_wrap;
	vq->signalled_valid = true;
	vq->pending_used = 0;
	if (!need) {
		vq->stats.suppressed++;
		vq->owed = true;
		return 0;
	}
	return zoc_vq_signal(vq);
}

/* Does the driver wait for an interrupt for a used entry already written?
 * (After a full fence.) */
static bool split_driver_behind(const struct zoc_vq *vq)
{
	if (!vq->event_idx)
		return !(load16(&vq->avail->flags) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	/* used_event names the entry it wants an interrupt for: one of the
	 * last `size` written means it has not seen them. */
	return (uint16_t)(vq->used_idx - load16(&vq->avail->ring[vq->size]) - 1) < vq->size;
}

static bool packed_driver_behind(const struct zoc_vq *vq)
{
	uint16_t flags = load16(&vq->drv_evt->flags) & 3;
	uint16_t off_wrap, off;
	uint32_t d;

	if (flags == VIRTQ_EVENT_F_DISABLE)
		return false;
	if (flags != VIRTQ_EVENT_F_DESC || !vq->event_idx)
		return true;
	off_wrap = load16(&vq->drv_evt->off_wrap);
	off = off_wrap & 0x7fff;
	if (off >= vq->size)
		return false;
	d = packed_dist(packed_pos(vq->used_idx, vq->used_wrap, vq->size),
			packed_pos(off, off_wrap >> 15, vq->size), 2u * vq->size);
	return d >= 1 && d <= vq->size;
}

int zoc_vq_watchdog(struct zoc_vq *vq)
{
	bool idle = vq->stats.pops == vq->wd_pops;

	vq->wd_pops = vq->stats.pops;
	if (!idle || !vq->owed || vq->pending_used || vq->broken)
		return 0;
	atomic_thread_fence(memory_order_seq_cst);
	if (!(vq->packed ? packed_driver_behind(vq) : split_driver_behind(vq)))
		return 0;
	if (!zoc_vq_signal(vq))
		return 0;
	vq->stats.rescued++;
	return 1;
}

int zoc_vq_watchdog_log(struct zoc_vq *vq, const char *dev, unsigned qidx)
{
	if (!zoc_vq_watchdog(vq))
		return 0;
	ZOC_WARN_RL("%s: queue %u: the driver waited for an interrupt that was suppressed; "
		    "sent one", dev, qidx);
	return 1;
}

bool zoc_vq_restored(const struct zoc_vq *vq)
{
	return vq->restored;
}

int zoc_vq_signal(struct zoc_vq *vq)
{
	if (vq->notify_fn) {
		vq->notify_fn(vq->fn_arg);
		vq->stats.notifies++;
		vq->owed = false;
		return 1;
	}
	if (vq->callfd < 0)
		return 0;
	for (;;) {
		uint64_t one = 1;
		ssize_t rc = write(vq->callfd, &one, sizeof(one));

		if (rc == (ssize_t)sizeof(one))
			break;
		if (rc < 0 && errno == EINTR)
			continue;
		ZOC_WARN_RL("virtqueue %p: signalling callfd %d failed: %s", (void *)vq,
			    vq->callfd, rc < 0 ? strerror(errno) : "short write");
		return 0;
	}
	vq->stats.notifies++;
	vq->owed = false;
	return 1;
}

int zoc_vq_enable_notify(struct zoc_vq *vq)
{
	return zoc_vq_enable_notify_after(vq, 1);
}

int zoc_vq_enable_notify_after(struct zoc_vq *vq, uint16_t n)
{
	if (n <= 1 || !zoc_vq_can_batch(vq))
		n = 1;
	if (vq->packed) {
		if (vq->event_idx) {
			store16(&vq->dev_evt->off_wrap,
				(uint16_t)(vq->last_avail | ((unsigned)vq->avail_wrap << 15)));
			store16(&vq->dev_evt->flags, VIRTQ_EVENT_F_DESC);
		} else if (!vq->kick_state_known || !vq->kick_enabled) {
			store16(&vq->dev_evt->flags, VIRTQ_EVENT_F_ENABLE);
		}
	} else {
		/* EVENT_IDX: the driver kicks when its avail index passes
		 * avail_event, i.e. once n more buffers are there. */
		if (vq->event_idx)
			store16(avail_event_ptr(vq), (uint16_t)(vq->last_avail + n - 1));
		else if (!vq->kick_state_known || !vq->kick_enabled)
			store16(&vq->used->flags, 0);
	}
	vq->kick_enabled = true;
	vq->kick_state_known = true;
	/* Publish the request before looking at the ring again, or a buffer
	 * added in between would never be kicked. */
	atomic_thread_fence(memory_order_seq_cst);
	if (!zoc_vq_has_work(vq))
		return 0;
	return n == 1 || vq->broken || vq->resubmit_pos < vq->resubmit_num ||
	       zoc_vq_avail_count(vq) >= n;
}

bool zoc_vq_can_batch(const struct zoc_vq *vq)
{
	return !vq->packed && vq->event_idx;
}

uint16_t zoc_vq_avail_count(const struct zoc_vq *vq)
{
	if (vq->packed)
		return zoc_vq_has_work(vq) ? 1 : 0;
	return (uint16_t)(load_acq16(&vq->avail->idx) - vq->last_avail);
}

void zoc_vq_disable_notify(struct zoc_vq *vq)
{
	if (vq->kick_state_known && !vq->kick_enabled)
		return;
	if (vq->packed)
		store16(&vq->dev_evt->flags, VIRTQ_EVENT_F_DISABLE);
	else if (!vq->event_idx)
		store16(&vq->used->flags, VIRTQ_USED_F_NO_NOTIFY);
	/* With EVENT_IDX, avail_event stays where it was: the driver kicks at
	 * most once more, which the poller ignores. */
	vq->kick_enabled = false;
	vq->kick_state_known = true;
}

bool zoc_vq_has_work(const struct zoc_vq *vq)
{
	if (vq->broken)
		return true;
	if (vq->resubmit_pos < vq->resubmit_num)
		return true;
	if (vq->packed) {
		const uint16_t *f = (const uint16_t *)(const void *)(vq->desc +
			(size_t)vq->last_avail * DESC_SIZE + 14);

		return packed_desc_avail(load_acq16(f), vq->avail_wrap);
	}
	return load_acq16(&vq->avail->idx) != vq->last_avail;
}

bool zoc_vq_broken(const struct zoc_vq *vq)
{
	return vq->broken;
}

uint16_t zoc_vq_size(const struct zoc_vq *vq)
{
	return vq->size;
}

uint32_t zoc_vq_inflight_count(const struct zoc_vq *vq)
{
	return vq->inflight_cnt;
}

uint32_t zoc_vq_get_base(const struct zoc_vq *vq)
{
	if (vq->packed) {
		uint32_t avail = vq->last_avail | ((uint32_t)vq->avail_wrap << 15);
		uint32_t used = vq->used_idx | ((uint32_t)vq->used_wrap << 15);

		return avail | (used << 16);
	}
	return vq->last_avail;
}

const struct zoc_vq_stats *zoc_vq_get_stats(const struct zoc_vq *vq)
{
	return &vq->stats;
}

void zoc_vq_set_callfd(struct zoc_vq *vq, int callfd)
{
	vq->callfd = callfd;
}
