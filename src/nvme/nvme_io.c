/* SPDX-License-Identifier: MIT */
/*
 * nvme_io.c - data pointers (PRP entries and lists, SGLs) and the NVM
 * command set (Read, Write, Flush, Write Zeroes, Dataset Management) on the
 * owner reactor of the submission queue.
 */
#include "nvme/nvme.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "link/dma.h"
#include "nvme/nvme_internal.h"

#define SGL_MAX_DESCS 256 /* descriptors looked at per command */
#define SGL_MAX_SEG_BYTES (SGL_MAX_DESCS * 16)

size_t nvme_iov_copy(struct iovec *iov, int n, size_t off, void *buf, size_t len, bool to_iov)
{
	size_t done = 0;

	for (int i = 0; i < n && done < len; i++) {
		size_t k;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		k = ZOC_MIN(iov[i].iov_len - off, len - done);
		if (to_iov)
			memcpy((uint8_t *)iov[i].iov_base + off, (uint8_t *)buf + done, k);
		else
			memcpy((uint8_t *)buf + done, (uint8_t *)iov[i].iov_base + off, k);
		done += k;
		off = 0;
	}
	return done;
}

/* Appends [gpa, gpa+len) to r->iov, merging with the previous entry when
 * they touch. Returns a status. */
static uint16_t iov_add(const struct zoc_mem *mem, struct nvme_req *r, uint64_t gpa, uint64_t len,
			bool write)
{
	struct iovec tmp[8];
	int rc;

	if (len == 0)
		return NVME_SC_SUCCESS;
	rc = zoc_mem_gpa_to_iov(mem, gpa, len, write, tmp, (int)ZOC_ARRAY_SIZE(tmp));
	if (rc < 0)
		return NVME_SC_DATA_XFER_ERROR;
	for (int i = 0; i < rc; i++) {
		if (r->iovcnt > 0) {
			struct iovec *prev = &r->iov[r->iovcnt - 1];

			if ((uint8_t *)prev->iov_base + prev->iov_len == tmp[i].iov_base) {
				prev->iov_len += tmp[i].iov_len;
				continue;
			}
		}
		if (r->iovcnt >= NVME_REQ_IOV)
			return NVME_SC_DATA_XFER_ERROR;
		r->iov[r->iovcnt++] = tmp[i];
	}
	return NVME_SC_SUCCESS;
}

static uint16_t map_prp(struct zoc_nvme_ctrlr *c, struct nvme_req *r, const struct nvme_sqe *cmd,
			uint64_t len, bool write)
{
	const struct zoc_mem *mem = c->mem;
	uint64_t ps = c->page_size;
	unsigned shift = (unsigned)__builtin_ctzll(ps); /* a power of two */
	uint64_t prp1 = cmd->prp1, list;
	uint64_t first, rem;
	uint64_t run = 0, run_len = 0; /* list entries that follow each other */
	unsigned hops = 0;
	uint16_t st;

	if (prp1 & 3)
		return NVME_SC_PRP_INVALID_OFFSET;
	first = ZOC_MIN(len, ps - (prp1 & (ps - 1)));
	st = iov_add(mem, r, prp1, first, write);
	if (st)
		return st;
	rem = len - first;
	if (rem == 0)
		return NVME_SC_SUCCESS;
	if (rem <= ps) {
		if (cmd->prp2 & (ps - 1))
			return NVME_SC_PRP_INVALID_OFFSET;
		return iov_add(mem, r, cmd->prp2, rem, write);
	}
	list = cmd->prp2;
	while (rem) {
		uint64_t slots, nent, i;
		const uint64_t *ent;

		if (list & 7)
			return NVME_SC_PRP_INVALID_OFFSET;
		if (++hops > (NVME_MAX_XFER / 4096) + 2)
			return NVME_SC_DATA_XFER_ERROR; /* a chain that gives no data */
		slots = (ps - (list & (ps - 1))) / 8;
		/* read only the entries this transfer needs */
		nent = ZOC_MIN(slots, (rem + ps - 1) >> shift);
		ent = zoc_mem_gpa_to_hva(mem, list, nent * 8, false);
		if (!ent)
			return NVME_SC_DATA_XFER_ERROR;
		for (i = 0; i < nent && rem; i++) {
			uint64_t e = __atomic_load_n(&ent[i], __ATOMIC_RELAXED);
			uint64_t k;

			if (i == nent - 1 && rem > ps && nent == slots) {
				/* last slot of the list page with more than a page to go:
				 * a pointer to the next list */
				list = e;
				break;
			}
			if (e & (ps - 1))
				return NVME_SC_PRP_INVALID_OFFSET;
			k = ZOC_MIN(rem, ps);
			rem -= k;
			if (run + run_len == e && run_len) {
				run_len += k; /* one translation for contiguous pages */
				continue;
			}
			st = iov_add(mem, r, run, run_len, write);
			if (st)
				return st;
			run = e;
			run_len = k;
		}
	}
	return iov_add(mem, r, run, run_len, write);
}

static uint16_t sgl_data(const struct zoc_mem *mem, struct nvme_req *r,
			 const struct nvme_sgl_desc *d, uint64_t len, uint64_t *total, bool write)
{
	if (NVME_SGL_SUBTYPE(d->id) != 0)
		return NVME_SC_SGL_INVALID_TYPE;
	if (NVME_SGL_TYPE(d->id) != NVME_SGL_DATA_BLOCK)
		return NVME_SC_SGL_INVALID_TYPE; /* bit bucket, keyed, transport: not here */
	if (*total + d->len > len)
		return NVME_SC_SGL_INVALID_DATA_LEN;
	*total += d->len;
	if (r->iovcnt >= NVME_REQ_IOV && d->len)
		return NVME_SC_SGL_INVALID_COUNT;
	return iov_add(mem, r, d->addr, d->len, write);
}

static uint16_t map_sgl(struct zoc_nvme_ctrlr *c, struct nvme_req *r, const struct nvme_sqe *cmd,
			uint64_t len, bool write)
{
	const struct zoc_mem *mem = c->mem;
	struct nvme_sgl_desc d;
	uint64_t total = 0;
	unsigned seen = 0;
	uint16_t st;

	memcpy(&d, &cmd->prp1, sizeof(d));
	for (;;) {
		uint8_t type = NVME_SGL_TYPE(d.id);
		const struct nvme_sgl_desc *list;
		uint32_t count;
		bool last_seg;

		if (type == NVME_SGL_DATA_BLOCK || type == NVME_SGL_BIT_BUCKET ||
		    (type != NVME_SGL_SEGMENT && type != NVME_SGL_LAST_SEGMENT)) {
			st = sgl_data(mem, r, &d, len, &total, write);
			if (st)
				return st;
			break;
		}
		if (NVME_SGL_SUBTYPE(d.id) != 0)
			return NVME_SC_SGL_INVALID_TYPE;
		last_seg = type == NVME_SGL_LAST_SEGMENT;
		if (d.len == 0 || d.len % 16)
			return NVME_SC_SGL_INVALID_LAST;
		if (d.len > SGL_MAX_SEG_BYTES)
			return NVME_SC_SGL_INVALID_COUNT;
		count = d.len / 16;
		list = zoc_mem_gpa_to_hva(mem, d.addr, d.len, false);
		if (!list)
			return NVME_SC_DATA_XFER_ERROR;
		for (uint32_t i = 0; i < count; i++) {
			struct nvme_sgl_desc e;
			uint8_t t;

			memcpy(&e, &list[i], sizeof(e));
			if (++seen > SGL_MAX_DESCS)
				return NVME_SC_SGL_INVALID_COUNT;
			t = NVME_SGL_TYPE(e.id);
			if (t == NVME_SGL_SEGMENT || t == NVME_SGL_LAST_SEGMENT) {
				if (i != count - 1 || last_seg)
					return NVME_SC_SGL_INVALID_LAST;
				d = e;
				goto next_segment;
			}
			st = sgl_data(mem, r, &e, len, &total, write);
			if (st)
				return st;
		}
		break;
next_segment:;
	}
	if (total != len)
		return NVME_SC_SGL_INVALID_DATA_LEN;
	return NVME_SC_SUCCESS;
}

uint16_t nvme_map_data(struct zoc_nvme_ctrlr *c, struct nvme_req *r, const struct nvme_sqe *cmd,
		       uint64_t len, bool to_guest, bool allow_sgl)
{
	uint8_t psdt = NVME_SQE_PSDT(cmd->flags);

	r->iovcnt = 0;
	if (len == 0)
		return NVME_SC_SUCCESS;
	if (!c->mem)
		return NVME_SC_DATA_XFER_ERROR;
	if (psdt == NVME_PSDT_PRP)
		return map_prp(c, r, cmd, len, to_guest);
	if (!allow_sgl || psdt == 3)
		return NVME_SC_INVALID_FIELD;
	return map_sgl(c, r, cmd, len, to_guest);
}

/* ------------------------------------------------------------ commands */

static void io_finish(struct nvme_req *r, uint16_t st);
static void io_submit_cb(struct nvme_req *r, enum zoc_bdev_op op, uint64_t off, uint64_t len,
			 void (*cb)(struct zoc_bdev_io *, int), struct nvme_bounce *b);
static void io_step(struct nvme_req *r, struct nvme_group *g, int status);
static void bounce_io_done(struct zoc_bdev_io *io, int status);

/* ------------------------------------------------- slow path: bounce */

/*
 * A Read or Write whose data pointer reaches memory without a mapping
 * (nvme_map_data() failed and the DMA space has remote regions) runs here:
 * walk the PRP entries (list pages fetched with copies when they are remote
 * too) or the SGL (its segments must be mapped) into guest segments, then
 *   Write: copy the segments into the bounce buffer, write it to the bdev;
 *   Read: read the bdev into the bounce buffer, copy it to the segments.
 * Every step is asynchronous; the request counts in the group's busy while
 * here, so a quiesce or disable waits for it (the link fails copies in
 * flight when it quiesces, so that wait is short).
 */
enum { BP_LIST, BP_SGL, BP_IN, BP_BDEV, BP_OUT };

/* What the walk needs of the command, kept in the request's iov array
 * (unused on this path) from submission until a slot takes it. */
struct bounce_park {
	uint64_t prp1, prp2; /* prp2 UINT64_MAX: SGL (in cmd) */
	uint64_t bytes, off;
	bool is_read;
	uint8_t kind;        /* BK_* */
	void *src;           /* admin: the data for the guest (malloc'd), else NULL */
	struct nvme_sqe cmd;
};

static void bounce_next(struct nvme_bounce *b);
static bool lba_ok(const struct nvme_ns *ns, uint64_t slba, uint64_t nlb);

static void bounce_release(struct nvme_group *g, struct nvme_bounce *b)
{
	struct nvme_req *w;

	b->r->bounce = NULL;
	b->r = NULL;
	b->next_free = g->bounce_free;
	g->bounce_free = b;
	g->busy--;
	/* the next waiting request takes the slot */
	w = g->bounce_wait;
	if (w) {
		g->bounce_wait = w->next;
		if (!g->bounce_wait)
			g->bounce_wait_tail = &g->bounce_wait;
		w->next = NULL;
		b = g->bounce_free;
		g->bounce_free = b->next_free;
		b->r = w;
		w->bounce = b;
		bounce_next(b);
	}
}

/* Ends the bounced request with st (before the bdev, or after the copy out). */
static void bounce_end(struct nvme_bounce *b, uint16_t st)
{
	struct nvme_group *g = b->g;
	struct nvme_req *r = b->r;

	bounce_release(g, b);
	io_finish(r, st);
	if (ZOC_UNLIKELY(g->waiters != NULL))
		nvme_group_check(g);
}

/* Is [gpa, gpa+len) reachable at all (mapped or remote)? */
static bool reachable(const struct zoc_mem *m, uint64_t gpa, uint64_t len, bool write)
{
	struct iovec tmp[4];
	int rc;

	if (!len)
		return true;
	rc = zoc_mem_gpa_to_iov(m, gpa, len, write, tmp, (int)ZOC_ARRAY_SIZE(tmp));
	return rc > 0 || zoc_mem_is_remote(m, gpa, len, write);
}

static uint16_t seg_add(struct nvme_bounce *b, const struct zoc_mem *m, uint64_t gpa,
			uint64_t len)
{
	if (!len)
		return NVME_SC_SUCCESS;
	if (zoc_range_bad(gpa, len, UINT64_MAX) || !reachable(m, gpa, len, b->is_read))
		return NVME_SC_DATA_XFER_ERROR;
	if (b->nseg && b->seg_gpa[b->nseg - 1] + b->seg_len[b->nseg - 1] == gpa) {
		b->seg_len[b->nseg - 1] += (uint32_t)len;
		return NVME_SC_SUCCESS;
	}
	if (b->nseg >= NVME_BOUNCE_SEGS)
		return NVME_SC_DATA_XFER_ERROR;
	b->seg_gpa[b->nseg] = gpa;
	b->seg_len[b->nseg] = (uint32_t)len;
	b->nseg++;
	return NVME_SC_SUCCESS;
}

static void bounce_copy_done(struct zoc_mem_io *io, int status);

/* Starts a copy of len bytes between gpa and buf. */
static void bounce_copy(struct nvme_bounce *b, uint64_t gpa, void *buf, uint64_t len,
			bool to_guest)
{
	int rc;

	b->io = (struct zoc_mem_io){.gpa = gpa, .buf = buf, .len = len, .to_guest = to_guest,
				    .cb = bounce_copy_done, .arg = b};
	rc = zoc_mem_io_submit(b->g->c->mem, &b->io);
	if (rc)
		bounce_end(b, NVME_SC_DATA_XFER_ERROR);
}

/* Parses the PRP list entries in b->ents (b->nent of them). */
static uint16_t prp_parse(struct nvme_bounce *b, const struct zoc_mem *m, bool *more)
{
	uint64_t ps = b->g->c->page_size;

	*more = false;
	for (unsigned i = 0; i < b->nent && b->rem; i++) {
		uint64_t e = b->ents[i], k;
		uint16_t st;

		if (i == b->nent - 1 && b->rem > ps && b->nent == b->slots) {
			b->list = e;
			*more = true;
			return NVME_SC_SUCCESS;
		}
		if (e & (ps - 1))
			return NVME_SC_PRP_INVALID_OFFSET;
		k = ZOC_MIN(b->rem, ps);
		b->rem -= k;
		st = seg_add(b, m, e, k);
		if (st)
			return st;
	}
	return NVME_SC_SUCCESS;
}

/* Fetches the next PRP list page's entries: 0 = in b->ents now, 1 = a copy
 * was started, else a status. */
static int prp_fetch(struct nvme_bounce *b, const struct zoc_mem *m)
{
	uint64_t ps = b->g->c->page_size;
	unsigned shift = (unsigned)__builtin_ctzll(ps);
	const uint64_t *ent;

	if (b->list & 7)
		return NVME_SC_PRP_INVALID_OFFSET;
	if (++b->hops > (NVME_MAX_XFER / 4096) + 2)
		return NVME_SC_DATA_XFER_ERROR;
	b->slots = (unsigned)((ps - (b->list & (ps - 1))) / 8);
	b->nent = (unsigned)ZOC_MIN((uint64_t)b->slots, (b->rem + ps - 1) >> shift);
	if (b->nent > NVME_BOUNCE_ENTS)
		return NVME_SC_DATA_XFER_ERROR; /* cannot be: rem <= MAX_XFER */
	ent = zoc_mem_gpa_to_hva(m, b->list, (uint64_t)b->nent * 8, false);
	if (ent) {
		memcpy(b->ents, ent, (size_t)b->nent * 8);
		return 0;
	}
	if (!zoc_mem_is_remote(m, b->list, (uint64_t)b->nent * 8, false))
		return NVME_SC_DATA_XFER_ERROR;
	b->phase = BP_LIST;
	bounce_copy(b, b->list, b->ents, (uint64_t)b->nent * 8, false);
	return 1;
}

/* Walks the PRP entries from the command on; 0 = done, 1 = waiting for a
 * list copy, else a status. */
static int prp_walk(struct nvme_bounce *b, const struct zoc_mem *m, bool resume)
{
	uint64_t ps = b->g->c->page_size;
	int rc;

	if (!resume) {
		uint64_t first;
		uint16_t st;

		if (b->prp1 & 3)
			return NVME_SC_PRP_INVALID_OFFSET;
		first = ZOC_MIN(b->bytes, ps - (b->prp1 & (ps - 1)));
		st = seg_add(b, m, b->prp1, first);
		if (st)
			return st;
		b->rem = b->bytes - first;
		if (!b->rem)
			return 0;
		if (b->rem <= ps) {
			if (b->prp2 & (ps - 1))
				return NVME_SC_PRP_INVALID_OFFSET;
			return seg_add(b, m, b->prp2, b->rem);
		}
		b->list = b->prp2;
		rc = prp_fetch(b, m);
		if (rc)
			return rc;
	}
	for (;;) {
		bool more;
		uint16_t st = prp_parse(b, m, &more);

		if (st)
			return st;
		if (!more)
			return 0;
		rc = prp_fetch(b, m);
		if (rc)
			return rc;
	}
}

/* Walks an SGL into data segments; a segment list in memory without a
 * mapping is fetched into the slot's buffer first (unused until the walk
 * ends). 0 = done, 1 = waiting for a list copy, else a status. */
static int sgl_walk(struct nvme_bounce *b, const struct zoc_mem *m, const struct nvme_sqe *cmd,
		    bool resume)
{
	if (!resume) {
		memcpy(&b->sgl_d, &cmd->prp1, sizeof(b->sgl_d));
		b->sgl_total = 0;
		b->sgl_seen = 0;
	}
	for (;;) {
		struct nvme_sgl_desc d = b->sgl_d;
		uint8_t type = NVME_SGL_TYPE(d.id);
		const struct nvme_sgl_desc *list;
		uint32_t count;
		bool last_seg, next = false;

		if (resume) {
			/* d's list arrived in the buffer (checked before the copy) */
			resume = false;
			list = (const struct nvme_sgl_desc *)b->buf;
		} else {
			if (type != NVME_SGL_SEGMENT && type != NVME_SGL_LAST_SEGMENT) {
				if (NVME_SGL_SUBTYPE(d.id) != 0 || type != NVME_SGL_DATA_BLOCK)
					return NVME_SC_SGL_INVALID_TYPE;
				if (b->sgl_total + d.len > b->bytes)
					return NVME_SC_SGL_INVALID_DATA_LEN;
				b->sgl_total += d.len;
				if (seg_add(b, m, d.addr, d.len))
					return NVME_SC_DATA_XFER_ERROR;
				break;
			}
			if (NVME_SGL_SUBTYPE(d.id) != 0)
				return NVME_SC_SGL_INVALID_TYPE;
			if (d.len == 0 || d.len % 16)
				return NVME_SC_SGL_INVALID_LAST;
			if (d.len > SGL_MAX_SEG_BYTES)
				return NVME_SC_SGL_INVALID_COUNT;
			list = zoc_mem_gpa_to_hva(m, d.addr, d.len, false);
			if (!list) {
				if (!zoc_mem_is_remote(m, d.addr, d.len, false))
					return NVME_SC_DATA_XFER_ERROR;
				b->phase = BP_SGL;
				bounce_copy(b, d.addr, b->buf, d.len, false);
				return 1;
			}
		}
		last_seg = type == NVME_SGL_LAST_SEGMENT;
		count = d.len / 16;
		for (uint32_t i = 0; i < count; i++) {
			struct nvme_sgl_desc e;
			uint8_t t;

			memcpy(&e, &list[i], sizeof(e));
			if (++b->sgl_seen > SGL_MAX_DESCS)
				return NVME_SC_SGL_INVALID_COUNT;
			t = NVME_SGL_TYPE(e.id);
			if (t == NVME_SGL_SEGMENT || t == NVME_SGL_LAST_SEGMENT) {
				if (i != count - 1 || last_seg)
					return NVME_SC_SGL_INVALID_LAST;
				b->sgl_d = e;
				next = true;
				break;
			}
			if (NVME_SGL_SUBTYPE(e.id) != 0 || t != NVME_SGL_DATA_BLOCK)
				return NVME_SC_SGL_INVALID_TYPE;
			if (b->sgl_total + e.len > b->bytes)
				return NVME_SC_SGL_INVALID_DATA_LEN;
			b->sgl_total += e.len;
			if (seg_add(b, m, e.addr, e.len))
				return NVME_SC_DATA_XFER_ERROR;
		}
		if (!next)
			break;
	}
	if (b->sgl_total != b->bytes)
		return NVME_SC_SGL_INVALID_DATA_LEN;
	return NVME_SC_SUCCESS;
}

static void bounce_dsm_start(struct nvme_bounce *b);

/* Copies the next segment (in or out), or moves to the next phase. */
static void bounce_data(struct nvme_bounce *b)
{
	if (ZOC_UNLIKELY(b->g->discard)) {
		bounce_end(b, NVME_SC_SUCCESS); /* a disable drops completions anyway */
		return;
	}
	if (b->cur < b->nseg) {
		unsigned i = b->cur++;
		uint8_t *p = b->buf + b->buf_off;

		b->buf_off += b->seg_len[i];
		bounce_copy(b, b->seg_gpa[i], p, b->seg_len[i], b->phase == BP_OUT);
		return;
	}
	if (b->phase == BP_IN && b->kind == BK_DSM) {
		bounce_dsm_start(b);
		return;
	}
	if (b->phase == BP_IN) {
		struct nvme_req *r = b->r;

		b->phase = BP_BDEV;
		r->iov[0] = (struct iovec){b->buf, (size_t)b->bytes};
		r->iovcnt = 1;
		io_submit_cb(r, ZOC_BDEV_WRITE, b->off, b->bytes, bounce_io_done, b);
		return;
	}
	bounce_end(b, NVME_SC_SUCCESS); /* BP_OUT: all copied to the guest */
}

/* The data pointer is walked into segments: start the transfer. */
static void bounce_walked(struct nvme_bounce *b)
{
	struct nvme_req *r = b->r;

	b->cur = 0;
	b->buf_off = 0;
	if (b->kind == BK_ADMIN) {
		b->phase = BP_OUT; /* the data is in the slot already */
		bounce_data(b);
		return;
	}
	if (b->is_read) {
		b->phase = BP_BDEV;
		r->iov[0] = (struct iovec){b->buf, (size_t)b->bytes};
		r->iovcnt = 1;
		io_submit_cb(r, ZOC_BDEV_READ, b->off, b->bytes, bounce_io_done, b);
		return;
	}
	b->phase = BP_IN;
	bounce_data(b);
}

static void bounce_copy_done(struct zoc_mem_io *io, int status)
{
	struct nvme_bounce *b = io->arg;

	if (status) {
		ZOC_WARN_RL("%s: sq %u cid %u: copy through the link failed: %s", b->g->c->name,
			    b->r->sq->qid, b->r->cid, strerror(-status));
		bounce_end(b, NVME_SC_DATA_XFER_ERROR);
		return;
	}
	if (b->phase == BP_LIST || b->phase == BP_SGL) {
		int rc = b->phase == BP_LIST ? prp_walk(b, b->g->c->mem, true)
					     : sgl_walk(b, b->g->c->mem, NULL, true);

		if (rc == 1)
			return;
		if (rc) {
			bounce_end(b, (uint16_t)rc);
			return;
		}
		bounce_walked(b);
		return;
	}
	bounce_data(b);
}

/* The bdev finished a bounced request's I/O. */
static void bounce_io_done(struct zoc_bdev_io *io, int status)
{
	struct nvme_req *r = io->cb_arg;
	struct nvme_bounce *b = r->bounce;
	struct nvme_group *g = b->g;

	g->busy--; /* the bdev's count; the slot keeps its own */

	if (status || !b->is_read) {
		/* write done (or failed): the slot is free; the normal path
		 * finishes (FUA flush, error statuses) */
		bounce_release(g, b);
		io_step(r, g, status);
		return;
	}
	b->phase = BP_OUT;
	b->cur = 0;
	b->buf_off = 0;
	bounce_data(b);
	if (ZOC_UNLIKELY(g->waiters != NULL))
		nvme_group_check(g);
}

/* A slot is b's: walk the data pointer and start. */
static void bounce_next(struct nvme_bounce *b)
{
	struct nvme_req *r = b->r;
	const struct zoc_mem *m = b->g->c->mem;
	struct bounce_park park;
	int rc;

	memcpy(&park, r->iov, sizeof(park));
	b->kind = park.kind;
	if (park.src) {
		memcpy(b->buf, park.src, park.bytes);
		free(park.src);
	}
	b->prp1 = park.prp1;
	b->prp2 = park.prp2;
	b->bytes = park.bytes;
	b->off = park.off;
	b->is_read = park.is_read;
	b->nseg = 0;
	b->cur = 0;
	b->buf_off = 0;
	b->hops = 0;
	b->phase = BP_IN;
	if (!m) {
		bounce_end(b, NVME_SC_DATA_XFER_ERROR);
		return;
	}
	if (b->prp2 == UINT64_MAX) {
		rc = sgl_walk(b, m, &park.cmd, false);
	} else {
		rc = prp_walk(b, m, false);
	}
	if (rc == 1)
		return; /* a list page is on its way */
	if (rc) {
		ZOC_WARN_RL("%s: sq %u cid %u: bad data pointer (status 0x%x)", b->g->c->name,
			    r->sq->qid, r->cid, rc);
		bounce_end(b, (uint16_t)rc);
		return;
	}
	bounce_walked(b);
}

/* DSM (deallocate) whose range list was copied into the slot: the ranges are
 * checked first (LBA Out of Range before any discard), then discarded one at
 * a time; the slot is held until the last one. */
static void bounce_dsm_next(struct nvme_bounce *b);

static void bounce_dsm_done(struct zoc_bdev_io *io, int status)
{
	struct nvme_req *r = io->cb_arg;
	struct nvme_bounce *b = r->bounce;
	struct nvme_group *g = b->g;

	g->busy--; /* the bdev's count; the slot keeps its own */
	if (status) {
		ZOC_WARN_RL("%s: sq %u: back-end I/O failed: %s", g->c->name, r->sq->qid,
			    strerror(-status));
		bounce_end(b, NVME_SC_INTERNAL);
		return;
	}
	bounce_dsm_next(b);
}

static void bounce_dsm_next(struct nvme_bounce *b)
{
	struct nvme_req *r = b->r;
	const struct nvme_ns *ns = r->ns;

	if (ZOC_UNLIKELY(b->g->discard)) {
		bounce_end(b, NVME_SC_SUCCESS);
		return;
	}
	while (r->dsm_idx < r->dsm_nr) {
		struct nvme_dsm_range rg;

		memcpy(&rg, b->buf + (size_t)r->dsm_idx * sizeof(rg), sizeof(rg));
		r->dsm_idx++;
		if (rg.nlb == 0)
			continue;
		b->phase = BP_BDEV;
		io_submit_cb(r, ZOC_BDEV_DISCARD, rg.slba << ns->lbads,
			     (uint64_t)rg.nlb << ns->lbads, bounce_dsm_done, b);
		return;
	}
	bounce_end(b, NVME_SC_SUCCESS);
}

static void bounce_dsm_start(struct nvme_bounce *b)
{
	struct nvme_req *r = b->r;
	const struct nvme_ns *ns = r->ns;

	for (uint32_t i = 0; i < r->dsm_nr; i++) {
		struct nvme_dsm_range rg;

		memcpy(&rg, b->buf + (size_t)i * sizeof(rg), sizeof(rg));
		if (rg.nlb && !lba_ok(ns, rg.slba, rg.nlb)) {
			bounce_end(b, NVME_SC_LBA_RANGE);
			return;
		}
	}
	if (!ns->bdev->supports_discard) {
		bounce_end(b, NVME_SC_SUCCESS); /* deallocation is advisory */
		return;
	}
	r->dsm_idx = 0;
	bounce_dsm_next(b);
}

static int bounce_alloc(struct nvme_group *g)
{
	struct nvme_bounce *bs = calloc(NVME_BOUNCE_SLOTS, sizeof(*bs));

	if (!bs)
		return -ENOMEM;
	for (unsigned i = 0; i < NVME_BOUNCE_SLOTS; i++) {
		bs[i].g = g;
		bs[i].buf = aligned_alloc(4096, NVME_MAX_XFER);
		if (!bs[i].buf) {
			for (unsigned j = 0; j < i; j++)
				free(bs[j].buf);
			free(bs);
			return -ENOMEM;
		}
		bs[i].next_free = g->bounce_free;
		g->bounce_free = &bs[i];
	}
	g->bounce = bs;
	g->bounce_wait = NULL;
	g->bounce_wait_tail = &g->bounce_wait;
	return 0;
}

void nvme_bounce_free(struct nvme_group *g)
{
	if (!g->bounce)
		return;
	for (unsigned i = 0; i < NVME_BOUNCE_SLOTS; i++)
		free(g->bounce[i].buf);
	free(g->bounce);
	g->bounce = NULL;
	g->bounce_free = NULL;
}

/* io_rw's slow path (and io_dsm's: kind BK_DSM, bytes of ranges). */
static void io_rw_bounce(struct nvme_group *g, struct nvme_req *r, const struct nvme_sqe *cmd,
			 const struct nvme_ns *ns, bool is_read, uint64_t slba, uint64_t bytes,
			 uint8_t kind)
{
	struct nvme_bounce *b;
	struct bounce_park *park;
	uint8_t psdt = NVME_SQE_PSDT(cmd->flags);

	_Static_assert(sizeof(struct bounce_park) <= sizeof(r->iov), "park fits");
	if (!g->bounce && bounce_alloc(g)) {
		io_finish(r, NVME_SC_INTERNAL);
		return;
	}
	if (!r->ns_counted) {
		g->ns[r->nsid - 1].inflight++;
		r->ns_counted = true;
	}
	g->busy++; /* until the slot is released */
	g->bounced++;
	r->bytes = kind == BK_RW ? bytes : 0;
	r->fua = kind == BK_RW && !is_read && ns->bdev->supports_flush &&
		 (((cmd->cdw12 >> 30) & 1) || !__atomic_load_n(&g->c->wce, __ATOMIC_RELAXED));
	park = (struct bounce_park *)r->iov; /* unused until the data is bounced */
	park->prp1 = cmd->prp1;
	park->prp2 = psdt == NVME_PSDT_PRP ? cmd->prp2 : UINT64_MAX;
	park->cmd = *cmd;
	park->bytes = bytes;
	park->off = slba << ns->lbads;
	park->is_read = is_read;
	park->kind = kind;
	park->src = NULL;
	b = g->bounce_free;
	if (!b) {
		/* every slot busy: wait in order */
		r->next = NULL;
		*g->bounce_wait_tail = r;
		g->bounce_wait_tail = &r->next;
		return;
	}
	g->bounce_free = b->next_free;
	b->r = r;
	r->bounce = b;
	bounce_next(b);
}

uint16_t nvme_admin_bounce_out(struct zoc_nvme_ctrlr *c, struct nvme_req *r,
			       const struct nvme_sqe *cmd, const void *buf, uint32_t len)
{
	struct nvme_group *g = &c->groups[0];
	struct bounce_park *park;
	struct nvme_bounce *b;
	void *copy;

	if (!c->mem || len == 0 || len > NVME_MAX_XFER)
		return NVME_SC_DATA_XFER_ERROR;
	if (!g->bounce && bounce_alloc(g))
		return NVME_SC_INTERNAL;
	copy = malloc(len); /* the scratch buffer serves the next command */
	if (!copy)
		return NVME_SC_INTERNAL;
	memcpy(copy, buf, len);
	r->g = g;
	r->ns = NULL;
	r->ns_counted = false;
	g->busy++;
	g->bounced++;
	park = (struct bounce_park *)r->iov;
	park->prp1 = cmd->prp1;
	park->prp2 = cmd->prp2; /* admin commands: PRPs only */
	park->cmd = *cmd;
	park->bytes = len;
	park->off = 0;
	park->is_read = true; /* data to the guest */
	park->kind = BK_ADMIN;
	park->src = copy;
	b = g->bounce_free;
	if (!b) {
		r->next = NULL;
		*g->bounce_wait_tail = r;
		g->bounce_wait_tail = &r->next;
		return NVME_SC_ASYNC;
	}
	g->bounce_free = b->next_free;
	b->r = r;
	r->bounce = b;
	bounce_next(b);
	return NVME_SC_ASYNC;
}

/* ------------------------------------------------------ the fast path */

static void io_finish(struct nvme_req *r, uint16_t st)
{
	struct nvme_group *g = r->g;

	if (r->ns_counted) {
		g->ns[r->nsid - 1].inflight--;
		r->ns_counted = false;
	}
	nvme_req_complete(r, st);
	if (ZOC_UNLIKELY(g->waiters != NULL))
		nvme_group_check(g); /* a namespace removal may wait for this one */
}

static void io_done(struct zoc_bdev_io *io, int status);

/* Submits r to the bdev with completion cb; a refusal completes it (b: a
 * bounced request, whose slot goes back). */
static void io_submit_cb(struct nvme_req *r, enum zoc_bdev_op op, uint64_t off, uint64_t len,
			 void (*cb)(struct zoc_bdev_io *, int), struct nvme_bounce *b)
{
	struct nvme_group *g = r->g;
	struct nvme_group_ns *gn = &g->ns[r->nsid - 1];
	uint16_t st;
	int rc;

	r->io.op = op;
	r->io.offset = off;
	r->io.len = len;
	r->io.iov = (op == ZOC_BDEV_READ || op == ZOC_BDEV_WRITE) ? r->iov : NULL;
	r->io.iovcnt = (op == ZOC_BDEV_READ || op == ZOC_BDEV_WRITE) ? r->iovcnt : 0;
	r->io.cb = cb;
	r->io.cb_arg = r;
	if (!r->ns_counted) {
		gn->inflight++;
		r->ns_counted = true;
	}
	g->busy++;
	rc = zoc_bdev_submit(gn->ch, &r->io);
	if (rc) {
		g->busy--;
		ZOC_WARN_RL("%s: sq %u: request refused by the back end: %s", g->c->name,
			    r->sq->qid, strerror(-rc));
		st = rc == -EROFS     ? NVME_SC_NS_WRITE_PROTECTED
		     : rc == -ENOTSUP ? NVME_SC_INVALID_OPCODE
		     : rc == -ERANGE  ? NVME_SC_LBA_RANGE
				      : NVME_SC_INTERNAL;
		if (ZOC_UNLIKELY(b != NULL))
			bounce_end(b, st);
		else
			io_finish(r, st);
	}
}

static inline void io_submit(struct nvme_req *r, enum zoc_bdev_op op, uint64_t off, uint64_t len)
{
	io_submit_cb(r, op, off, len, io_done, NULL);
}

static bool lba_ok(const struct nvme_ns *ns, uint64_t slba, uint64_t nlb)
{
	return !zoc_range_bad(slba, nlb, ns->nsze);
}

static void dsm_next(struct nvme_req *r)
{
	const struct nvme_ns *ns = r->ns;

	while (r->dsm_idx < r->dsm_nr) {
		struct nvme_dsm_range rg;

		nvme_iov_copy(r->iov, r->iovcnt, (size_t)r->dsm_idx * sizeof(rg), &rg, sizeof(rg),
			      false);
		r->dsm_idx++;
		if (rg.nlb == 0)
			continue;
		if (!lba_ok(ns, rg.slba, rg.nlb)) {
			io_finish(r, NVME_SC_LBA_RANGE);
			return;
		}
		io_submit(r, ZOC_BDEV_DISCARD, rg.slba << ns->lbads, (uint64_t)rg.nlb << ns->lbads);
		return;
	}
	io_finish(r, NVME_SC_SUCCESS);
}

static void io_step(struct nvme_req *r, struct nvme_group *g, int status)
{
	if (status) {
		ZOC_WARN_RL("%s: sq %u: back-end I/O failed: %s", g->c->name, r->sq->qid,
			    strerror(-status));
		io_finish(r, r->opc == NVME_CMD_READ    ? NVME_SC_UNRECOVERED_READ
			     : r->opc == NVME_CMD_WRITE ? NVME_SC_WRITE_FAULT
							: NVME_SC_INTERNAL);
		return;
	}
	if (ZOC_UNLIKELY(g->discard)) {
		io_finish(r, NVME_SC_SUCCESS);
		return;
	}
	if (r->opc == NVME_CMD_WRITE && r->fua) {
		r->fua = false;
		io_submit(r, ZOC_BDEV_FLUSH, 0, 0);
		return;
	}
	if (r->opc == NVME_CMD_DSM) {
		dsm_next(r);
		return;
	}
	io_finish(r, NVME_SC_SUCCESS);
}

static void io_done(struct zoc_bdev_io *io, int status)
{
	struct nvme_req *r = io->cb_arg;
	struct nvme_group *g = r->g;

	g->busy--;
	io_step(r, g, status);
	/* a quiesce or disable may be waiting for the back end to be idle */
	if (ZOC_UNLIKELY(g->waiters != NULL))
		nvme_group_check(g);
}

static void io_rw(struct nvme_group *g, struct nvme_req *r, const struct nvme_sqe *cmd,
		  const struct nvme_ns *ns, bool is_read)
{
	struct zoc_nvme_ctrlr *c = g->c;
	uint64_t slba = (uint64_t)cmd->cdw10 | ((uint64_t)cmd->cdw11 << 32);
	uint64_t nlb = (uint64_t)(cmd->cdw12 & 0xffff) + 1;
	uint64_t bytes = nlb << ns->lbads;
	uint16_t st;

	if (!lba_ok(ns, slba, nlb)) {
		io_finish(r, NVME_SC_LBA_RANGE);
		return;
	}
	if (bytes > NVME_MAX_XFER) {
		io_finish(r, NVME_SC_INVALID_FIELD);
		return;
	}
	if (!is_read && ns->bdev->read_only) {
		io_finish(r, NVME_SC_NS_WRITE_PROTECTED);
		return;
	}
	st = nvme_map_data(c, r, cmd, bytes, is_read, true);
	if (ZOC_UNLIKELY(st == NVME_SC_DATA_XFER_ERROR) && c->mem && c->mem->nremote) {
		/* some of it lies in memory without a mapping: the slow path */
		io_rw_bounce(g, r, cmd, ns, is_read, slba, bytes, BK_RW);
		return;
	}
	if (st) {
		ZOC_WARN_RL("%s: sq %u cid %u: bad data pointer (status 0x%x)", c->name, r->sq->qid,
			    r->cid, st);
		io_finish(r, st);
		return;
	}
	if (ns->bdev->max_iov && (uint32_t)r->iovcnt > ns->bdev->max_iov) {
		io_finish(r, NVME_SC_INTERNAL);
		return;
	}
	r->bytes = bytes;
	r->fua = !is_read && ns->bdev->supports_flush &&
		 (((cmd->cdw12 >> 30) & 1) || !__atomic_load_n(&c->wce, __ATOMIC_RELAXED));
	io_submit(r, is_read ? ZOC_BDEV_READ : ZOC_BDEV_WRITE, slba << ns->lbads, bytes);
}

static void io_dsm(struct nvme_group *g, struct nvme_req *r, const struct nvme_sqe *cmd,
		   const struct nvme_ns *ns)
{
	uint32_t nr = (cmd->cdw10 & 0xff) + 1;
	uint16_t st;

	if (!(cmd->cdw11 & NVME_DSM_AD)) {
		io_finish(r, NVME_SC_SUCCESS); /* attributes only: hints */
		return;
	}
	if (ns->bdev->read_only) {
		io_finish(r, NVME_SC_NS_WRITE_PROTECTED);
		return;
	}
	st = nvme_map_data(g->c, r, cmd, (uint64_t)nr * sizeof(struct nvme_dsm_range), false, true);
	if (ZOC_UNLIKELY(st == NVME_SC_DATA_XFER_ERROR) && g->c->mem && g->c->mem->nremote) {
		/* the range list lies in memory without a mapping: copy it */
		r->dsm_nr = (uint16_t)nr;
		io_rw_bounce(g, r, cmd, ns, false, 0, (uint64_t)nr * sizeof(struct nvme_dsm_range),
			     BK_DSM);
		return;
	}
	if (st) {
		io_finish(r, st);
		return;
	}
	for (uint32_t i = 0; i < nr; i++) {
		struct nvme_dsm_range rg;

		nvme_iov_copy(r->iov, r->iovcnt, (size_t)i * sizeof(rg), &rg, sizeof(rg), false);
		if (rg.nlb && !lba_ok(ns, rg.slba, rg.nlb)) {
			io_finish(r, NVME_SC_LBA_RANGE);
			return;
		}
	}
	if (!ns->bdev->supports_discard) {
		io_finish(r, NVME_SC_SUCCESS); /* deallocation is advisory */
		return;
	}
	r->dsm_nr = (uint16_t)nr;
	r->dsm_idx = 0;
	dsm_next(r);
}

void nvme_io_exec(struct nvme_group *g, struct nvme_req *r, const struct nvme_sqe *cmd)
{
	struct zoc_nvme_ctrlr *c = g->c;
	struct nvme_ns *ns;

	r->g = g;
	r->ns = NULL;
	if (NVME_SQE_FUSE(cmd->flags)) {
		nvme_req_complete(r, NVME_SC_INVALID_FIELD);
		return;
	}
	switch (cmd->opc) {
	case NVME_CMD_FLUSH:
	case NVME_CMD_WRITE:
	case NVME_CMD_READ:
	case NVME_CMD_WRITE_ZEROES:
	case NVME_CMD_DSM:
		break;
	default:
		ZOC_WARN_RL("%s: I/O opcode 0x%02x not supported", c->name, cmd->opc);
		nvme_req_complete(r, NVME_SC_INVALID_OPCODE);
		return;
	}
	ns = nvme_ns_get(c, cmd->nsid);
	if (!ns) {
		nvme_req_complete(r, NVME_SC_INVALID_NS);
		return;
	}
	if (!nvme_group_ns_get(g, cmd->nsid)) {
		nvme_req_complete(r, NVME_SC_INTERNAL);
		return;
	}
	r->ns = ns;
	switch (cmd->opc) {
	case NVME_CMD_READ:
	case NVME_CMD_WRITE:
		io_rw(g, r, cmd, ns, cmd->opc == NVME_CMD_READ);
		return;
	case NVME_CMD_FLUSH:
		if (!ns->bdev->supports_flush) {
			io_finish(r, NVME_SC_SUCCESS);
			return;
		}
		io_submit(r, ZOC_BDEV_FLUSH, 0, 0);
		return;
	case NVME_CMD_WRITE_ZEROES: {
		uint64_t slba = (uint64_t)cmd->cdw10 | ((uint64_t)cmd->cdw11 << 32);
		uint64_t nlb = (uint64_t)(cmd->cdw12 & 0xffff) + 1;

		if (!lba_ok(ns, slba, nlb)) {
			io_finish(r, NVME_SC_LBA_RANGE);
			return;
		}
		if (ns->bdev->read_only) {
			io_finish(r, NVME_SC_NS_WRITE_PROTECTED);
			return;
		}
		if (!ns->bdev->supports_write_zeroes) {
			io_finish(r, NVME_SC_INVALID_OPCODE);
			return;
		}
		io_submit(r, ZOC_BDEV_WRITE_ZEROES, slba << ns->lbads, nlb << ns->lbads);
		return;
	}
	case NVME_CMD_DSM:
		io_dsm(g, r, cmd, ns);
		return;
	}
}
