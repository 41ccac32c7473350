/* SPDX-License-Identifier: MIT */
/*
 * fuzz_virtqueue.c - libFuzzer target for the device side of a virtqueue.
 *
 * Input:
 *   byte 0    flags: bit0 packed, bit1 indirect, bit2 event_idx, bit3 inflight
 *             region, bit4 reverse completion order, bits5-6 rounds-1,
 *             bit7 notify after every push
 *   byte 1    queue size (split: 1 << (b % 9); packed: 1 + b)
 *   byte 2-3  base (vhost-user SET_VRING_BASE value, low 16 bits)
 *   rest      per round: the descriptor table / ring, then the driver area
 *             (split avail ring / packed driver event suppression); what is
 *             left fills the data area (indirect tables live there) and,
 *             with bit3, the start of the inflight region.
 *
 * With an inflight region, every round completes only half of what it took
 * and then "crashes": a new queue is made on the same rings and region, and
 * (packed: exactly) the rest must come back as resubmitted buffers.
 *
 * Guest memory: region A = 64 KiB at gpa 0 (rings + data), region B = 4 KiB
 * read-only right after it, so buffers can straddle and hit read-only
 * memory. Every iovec pop returns must lie inside them.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/log.h"
#include "link/dma.h"
#include "virtio/virtio.h"
#include "virtio/virtqueue.h"

#define MEM_A 0x10000u
#define MEM_B 0x1000u
#define OFF_DESC 0x0
#define OFF_DRIVER 0x1000 /* after a 256-entry descriptor table */
#define OFF_DEVICE 0x1400
#define OFF_DATA 0x2000
#define MAX_SIZE 256
#define MAX_HELD (MAX_SIZE + 8)

static uint8_t *g_a, *g_b;
static struct zoc_mem *g_mem;
static int g_callfd = -1;
static struct zoc_vq_elem g_elems[MAX_HELD];
static uint8_t g_inflight[32 + MAX_SIZE * 32 + 64] __attribute__((aligned(64)));

static void init_once(void)
{
	if (g_mem)
		return;
	zoc_log_set_level(ZOC_LOG_ERR);
	g_a = aligned_alloc(4096, MEM_A);
	g_b = aligned_alloc(4096, MEM_B);
	if (!g_a || !g_b)
		abort();
	g_mem = zoc_mem_create();
	if (!g_mem || zoc_mem_add_region_hva(g_mem, 0, MEM_A, 0, g_a, true) ||
	    zoc_mem_add_region_hva(g_mem, MEM_A, MEM_B, 0, g_b, false))
		abort();
	g_callfd = eventfd(0, EFD_NONBLOCK);
}

static bool inside(const void *p, size_t len, const uint8_t *base, size_t size)
{
	const uint8_t *q = p;

	return q >= base && len <= size && (size_t)(q - base) <= size - len;
}

static void check_elem(const struct zoc_vq_elem *e, int rc, uint16_t size, bool packed)
{
	uint32_t out = 0, in = 0;

	if (e->out_num + e->in_num > ZOC_VQ_MAX_IOV)
		abort();
	if (!packed && e->id >= size)
		abort();
	if (e->ndescs == 0 || e->ndescs > size)
		abort();
	for (unsigned i = 0; i < (unsigned)(e->out_num + e->in_num); i++) {
		const struct iovec *v = &e->iov[i];

		if (v->iov_len == 0)
			abort(); /* never produced */
		if (!v->iov_base) {
			if (rc != -EFAULT)
				abort();
			continue;
		}
		if (!inside(v->iov_base, v->iov_len, g_a, MEM_A) &&
		    !inside(v->iov_base, v->iov_len, g_b, MEM_B))
			abort();
		/* device-writable iovecs never point at read-only memory */
		if (i >= e->out_num && inside(v->iov_base, 1, g_b, MEM_B))
			abort();
		if (i < e->out_num)
			out += (uint32_t)v->iov_len;
		else
			in += (uint32_t)v->iov_len;
		/* touch the memory: ASan checks it is really there */
		volatile uint8_t x = *(volatile uint8_t *)v->iov_base;
		volatile uint8_t y = ((volatile uint8_t *)v->iov_base)[v->iov_len - 1];
		(void)x;
		(void)y;
	}
	if (rc == 1 && (out != e->out_len || in != e->in_len))
		abort();
}

static size_t take(uint8_t *dst, size_t want, const uint8_t **p, size_t *left)
{
	size_t n = want < *left ? want : *left;

	memcpy(dst, *p, n);
	*p += n;
	*left -= n;
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size_in);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size_in)
{
	struct zoc_vq_config cfg = {0};
	const uint8_t *p = data;
	size_t left = size_in;
	struct zoc_vq *vq;
	uint8_t flags;
	uint16_t qsize;
	uint64_t dsz, drvsz, devsz;
	int rounds;

	init_once();
	if (left < 4)
		return 0;
	flags = p[0];
	cfg.packed = flags & 1;
	cfg.indirect = flags & 2;
	cfg.event_idx = flags & 4;
	qsize = cfg.packed ? (uint16_t)(1 + p[1]) : (uint16_t)(1u << (p[1] % 9));
	if (qsize > MAX_SIZE)
		qsize = MAX_SIZE;
	cfg.size = qsize;
	cfg.base = (uint32_t)p[2] | ((uint32_t)p[3] << 8);
	rounds = 1 + ((flags >> 5) & 3);
	p += 4;
	left -= 4;

	memset(g_a, 0, MEM_A);
	memset(g_b, 0xee, MEM_B);
	zoc_vq_ring_sizes(qsize, cfg.packed, &dsz, &drvsz, &devsz);
	cfg.desc = g_a + OFF_DESC;
	cfg.driver = g_a + OFF_DRIVER;
	cfg.device = g_a + OFF_DEVICE;
	cfg.mem = g_mem;
	cfg.callfd = g_callfd;

	/* first round's rings, then the data area, then the inflight region */
	take(g_a + OFF_DESC, dsz, &p, &left);
	take(g_a + OFF_DRIVER, drvsz, &p, &left);
	if (flags & 8) {
		uint64_t isz = zoc_vq_inflight_queue_size(qsize);

		if (isz > sizeof(g_inflight))
			abort();
		memset(g_inflight, 0, sizeof(g_inflight));
		/* header + a few entries */
		take(g_inflight, isz > 320 ? 320 : isz, &p, &left);
		/* let the fuzzer reach the recovery path often */
		if (!cfg.packed) {
			struct zoc_vq_inflight *inf = (void *)g_inflight;

			if (inf->version)
				inf->desc_num = qsize;
		} else {
			struct zoc_vq_inflight_packed *inf = (void *)g_inflight;

			if (inf->version)
				inf->desc_num = qsize;
		}
		cfg.inflight = (void *)g_inflight;
	}
	take(g_a + OFF_DATA, MEM_A - OFF_DATA, &p, &left);

	vq = zoc_vq_create(&cfg);
	if (!vq)
		return 0;

	for (int r = 0; r < rounds; r++) {
		unsigned held = 0;
		int rc = 0;

		if (r > 0) {
			/* the driver adds more: new ring contents (the device's
			 * used entries stay where they are in the split case) */
			if (!left)
				break;
			if (cfg.packed)
				take(g_a + OFF_DESC, dsz, &p, &left);
			else
				take(g_a + OFF_DRIVER, drvsz, &p, &left);
		}
		zoc_vq_disable_notify(vq);
		for (unsigned n = 0; n < MAX_HELD && held < MAX_HELD; n++) {
			rc = zoc_vq_pop(vq, &g_elems[held]);
			if (rc <= 0 && rc != -EFAULT)
				break;
			check_elem(&g_elems[held], rc, qsize, cfg.packed);
			held++;
		}
		if (rc == -EIO && !zoc_vq_broken(vq))
			abort();
		if (held != zoc_vq_inflight_count(vq))
			abort();
		unsigned done = cfg.inflight ? held / 2 : held;

		for (unsigned k = 0; k < done; k++) {
			unsigned i = (flags & 16) ? held - 1 - k : k;

			zoc_vq_push(vq, &g_elems[i], g_elems[i].in_len);
			if (flags & 128)
				zoc_vq_notify(vq);
		}
		if (zoc_vq_inflight_count(vq) != held - done)
			abort();
		if (cfg.inflight) {
			/* crash; a new back end takes the rest from the region */
			unsigned resub = 0, n = 0;

			zoc_vq_destroy(vq);
			vq = zoc_vq_create(&cfg);
			if (!vq)
				abort(); /* the same config was accepted before */
			for (; n < MAX_HELD; n++) {
				rc = zoc_vq_pop(vq, &g_elems[n]);
				if (rc <= 0 && rc != -EFAULT)
					break;
				check_elem(&g_elems[n], rc, qsize, cfg.packed);
				if (g_elems[n].resubmitted) {
					if (resub != n)
						abort(); /* resubmitted ones come first */
					resub++;
				}
			}
			if (cfg.packed && !zoc_vq_broken(vq) && resub != held - done)
				abort();
			for (unsigned k = 0; k < n; k++)
				zoc_vq_push(vq, &g_elems[k], g_elems[k].in_len);
		}
		if (zoc_vq_inflight_count(vq) != 0)
			abort();
		zoc_vq_notify(vq);
		(void)zoc_vq_enable_notify(vq);
		(void)zoc_vq_has_work(vq);
		(void)zoc_vq_get_base(vq);
	}
	if (g_callfd >= 0) {
		uint64_t v;

		if (read(g_callfd, &v, sizeof(v)) < 0) {
			/* nothing signalled */
		}
	}
	zoc_vq_destroy(vq);
	return 0;
}
