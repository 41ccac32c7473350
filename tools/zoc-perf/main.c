/* SPDX-License-Identifier: MIT */
/*
 * zoc-perf - driver-side load generator.
 *
 *   zoc-perf nvme --socket PATH [--rw randread|randwrite|read|write|verify]
 *                 [--bs 4096] [--qd 32] [--time 10] [--queues 1] [--nsid 1]
 *                 [--size-mb N] [--cpu N] [--irq poll|eventfd] [--json] ...
 *
 * Connects to a vfio-user socket as QEMU would, drives the NVMe controller
 * behind it with its own user-space driver (nvme_drv.h) and prints IOPS,
 * MiB/s, latency and the client's CPU use. Exit status 1 on any error
 * completion, verify mismatch, timeout or protocol error (with a message),
 * 2 on bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "conn.h"
#include "core/util.h"
#include "nvme_drv.h"
#include "wake.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define PAGE 4096u
#define REAP_BATCH 64
#define HIST_SUB_BITS 5
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (64 * HIST_SUB)

enum rw { RW_RANDREAD, RW_RANDWRITE, RW_READ, RW_WRITE, RW_VERIFY };
static const char *const rw_names[] = { "randread", "randwrite", "read", "write", "verify" };

struct opts {
	const char *socket;
	enum rw rw;
	uint32_t bs, qd, queues, nsid;
	double time_s;
	uint64_t size_mb;
	int cpu;
	bool irq_eventfd, json, no_mmap, wait_writes, dma_nofd, queues_nofd, verbose;
	int timeout_ms;
	uint64_t seed;
	uint32_t mem_mb;
};

struct slot {
	uint64_t t_submit;
	uint64_t unit;     /* I/O unit index (offset / bs) */
	uint8_t *buf;
	uint8_t busy, opc;
};

struct jobq {
	struct zoc_nvmed_qpair *qp;
	struct nvme_sqe *tmpl; /* per slot: cid, nsid, PRPs, NLB */
	struct slot *slots;
	uint16_t *free;
	uint32_t nfree, outstanding;
	uint64_t last_progress;
};

struct hist {
	uint64_t b[HIST_BUCKETS];
	uint64_t n, sum, max, min;
};

static volatile sig_atomic_t g_stop;
static const char *g_prog = "zoc-perf";

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

/* ------------------------------------------------------------ helpers */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s nvme --socket PATH [options]\n"
		"       %s conn --target switch|ifaces|none [options] (see conn --help)\n"
		"       %s wake [--rounds N] (a sleeping server's CPU floor; see wake --help)\n"
		"\n"
		"Drives the NVMe controller behind a vfio-user socket with a user-space\n"
		"driver and reports IOPS, MiB/s, latency and client CPU use.\n"
		"\n"
		"  --socket PATH       vfio-user socket of the controller (required)\n"
		"  --rw MODE           randread (default), randwrite, read, write, verify\n"
		"                      (verify: write every block of the range with a pattern of\n"
		"                      its offset and a seed, read it back and compare; repeats\n"
		"                      with a new seed while time remains; needs a back end that\n"
		"                      stores data)\n"
		"  --bs BYTES          I/O size (default 4096; a multiple of the LBA size)\n"
		"  --qd N              commands in flight per queue (default 32)\n"
		"  --time SEC          run time (default 10)\n"
		"  --queues N          I/O queue pairs, all driven by this one thread (default 1)\n"
		"  --nsid N            namespace (default 1)\n"
		"  --size-mb N         use only the first N MiB of the namespace\n"
		"  --cpu N             pin this process to CPU N\n"
		"  --irq poll|eventfd  poll the CQs (default; no interrupts, no system calls per\n"
		"                      I/O when doorbells are mmapped) or wait on MSI-X eventfds\n"
		"  --json              one JSON object on stdout instead of text\n"
		"  --timeout-ms N      a command or message that takes longer is an error\n"
		"                      (default 5000)\n"
		"  --no-mmap           write doorbells with REGION_WRITE even if mmap is offered\n"
		"  --wait-writes       doorbell REGION_WRITEs wait for the server's reply (default:\n"
		"                      posted with No_reply, like QEMU's vfio-user-pci)\n"
		"  --mem-mb N          DMA memory to share (default: 64, or what the job needs)\n"
		"  --seed N            seed for offsets and verify patterns (default 1)\n"
		"  --dma-nofd          put data buffers and PRP lists in a second region mapped\n"
		"                      without an fd (as QEMU maps unshared guest RAM): the server\n"
		"                      copies them with DMA_READ/DMA_WRITE, served by this client\n"
		"  --queues-nofd       put the admin and I/O queues and the admin data buffer there\n"
		"                      too (the server keeps shadow rings, moved with copies)\n"
		"  -v, --verbose       describe the controller on stderr\n",
		g_prog, g_prog, g_prog);
}

__attribute__((format(printf, 1, 2), noreturn)) static void die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", g_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(try '%s nvme --help')\n", g_prog);
	exit(EXIT_USAGE);
}

static uint64_t parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
		die_usage("%s: '%s' is not a number in %" PRIu64 "..%" PRIu64, opt, s, min, max);
	return v;
}

static inline uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The verify pattern: every 8-byte word depends on its byte offset on the
 * device and the pass's seed. */
static inline uint64_t pattern_word(uint64_t dev_off, uint64_t seed)
{
	return mix64(dev_off ^ (seed * 0x9e3779b97f4a7c15ull));
}

static void pattern_fill(uint8_t *buf, uint32_t bs, uint64_t dev_off, uint64_t seed)
{
	for (uint32_t i = 0; i < bs; i += 8) {
		uint64_t w = pattern_word(dev_off + i, seed);

		memcpy(buf + i, &w, 8);
	}
}

/* Returns -1 if buf matches, else the offset of the first bad word. */
static int64_t pattern_check(const uint8_t *buf, uint32_t bs, uint64_t dev_off, uint64_t seed)
{
	for (uint32_t i = 0; i < bs; i += 8) {
		uint64_t w;

		memcpy(&w, buf + i, 8);
		if (w != pattern_word(dev_off + i, seed))
			return i;
	}
	return -1;
}

static inline void hist_add(struct hist *h, uint64_t v)
{
	unsigned idx;

	if (v < HIST_SUB) {
		idx = (unsigned)v;
	} else {
		unsigned msb = 63u - (unsigned)__builtin_clzll(v);

		idx = (msb - HIST_SUB_BITS + 1) * HIST_SUB +
		      (unsigned)((v >> (msb - HIST_SUB_BITS)) & (HIST_SUB - 1));
	}
	h->b[idx]++;
	h->n++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
	if (v < h->min)
		h->min = v;
}

/* Lower bound of bucket idx and its width. */
static void hist_bucket(unsigned idx, uint64_t *lo, uint64_t *width)
{
	if (idx < HIST_SUB) {
		*lo = idx;
		*width = 1;
	} else {
		unsigned msb = idx / HIST_SUB + HIST_SUB_BITS - 1, sub = idx % HIST_SUB;

		*width = 1ull << (msb - HIST_SUB_BITS);
		*lo = (1ull << msb) + sub * *width;
	}
}

static double hist_pct(const struct hist *h, double p)
{
	uint64_t want, acc = 0, lo, w;

	if (!h->n)
		return 0;
	want = (uint64_t)(p / 100.0 * (double)h->n);
	if (want >= h->n)
		want = h->n - 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		acc += h->b[i];
		if (acc > want) {
			hist_bucket(i, &lo, &w);
			return (double)lo + (double)(w - 1) / 2.0;
		}
	}
	return (double)h->max;
}

static void json_str(const char *str)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* ------------------------------------------------------------ the run */

struct run {
	const struct opts *o;
	struct zoc_nvmed *d;
	uint64_t dma_served; /* --dma-nofd: DMA_READ/DMA_WRITE the client served */
	const struct zoc_nvmed_info *info;
	struct zoc_nvmed_info info_copy;
	struct jobq *q;
	uint32_t nq;
	uint64_t nunits;     /* I/O units in the range */
	uint64_t rng;
	uint64_t seq_next;
	/* verify */
	bool v_reading;
	uint64_t v_limit, v_pass, v_written;
	/* results */
	struct hist lat;
	uint64_t ios, reads, writes, verified;
	uint64_t t_start, t_end, doorbell_writes;
	bool stopping, failed, fatal; /* fatal: stop at once, no draining */
	char err[1024];
};

__attribute__((format(printf, 2, 3))) static void run_fail(struct run *r, const char *fmt, ...)
{
	va_list ap;

	if (r->failed)
		return; /* keep the first error */
	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
	r->failed = true;
	r->stopping = true;
}

static int setup_job(struct run *r)
{
	const struct opts *o = r->o;
	uint32_t lba = r->info->lba_size;
	uint64_t ns_bytes = r->info->nsze * lba, range;
	uint32_t pages = (o->bs + PAGE - 1) / PAGE;

	/* Usage errors that depend on the controller: -EINVAL with r->err. */
	if (o->bs % lba) {
		snprintf(r->err, sizeof(r->err), "--bs %u is not a multiple of the namespace's LBA size %u",
			 o->bs, lba);
		return -EINVAL;
	}
	if (r->info->mdts_bytes && o->bs > r->info->mdts_bytes) {
		snprintf(r->err, sizeof(r->err),
			 "--bs %u exceeds the controller's maximum data transfer size %u (MDTS)",
			 o->bs, r->info->mdts_bytes);
		return -EINVAL;
	}
	range = ns_bytes;
	if (o->size_mb && o->size_mb * 1048576ull < range)
		range = o->size_mb * 1048576ull;
	r->nunits = range / o->bs;
	if (r->nunits == 0) {
		snprintf(r->err, sizeof(r->err), "the range (%" PRIu64 " bytes) holds no %u-byte block",
			 range, o->bs);
		return -EINVAL;
	}
	r->q = calloc(r->nq, sizeof(*r->q));
	if (!r->q)
		return -ENOMEM;
	for (uint32_t qi = 0; qi < r->nq; qi++) {
		struct jobq *jq = &r->q[qi];

		jq->qp = zoc_nvmed_qpair(r->d, qi);
		jq->tmpl = aligned_alloc(64, sizeof(struct nvme_sqe) * o->qd);
		jq->slots = calloc(o->qd, sizeof(*jq->slots));
		jq->free = calloc(o->qd, sizeof(*jq->free));
		if (!jq->qp || !jq->tmpl || !jq->slots || !jq->free)
			return -ENOMEM;
		for (uint32_t s = 0; s < o->qd; s++) {
			struct nvme_sqe *t = &jq->tmpl[s];
			uint64_t iova, list_iova = 0;
			uint8_t *buf = zoc_nvmed_data_alloc(r->d, (size_t)pages * PAGE, &iova);
			uint64_t *list = NULL;

			if (!buf)
				return -ENOSPC;
			if (pages > 2) {
				list = zoc_nvmed_data_alloc(r->d, PAGE, &list_iova);
				if (!list || pages - 1 > PAGE / 8)
					return -ENOSPC;
				for (uint32_t p = 1; p < pages; p++)
					list[p - 1] = iova + (uint64_t)p * PAGE;
			}
			memset(t, 0, sizeof(*t));
			t->cid = (uint16_t)s;
			t->nsid = o->nsid;
			t->prp1 = iova;
			t->prp2 = pages == 2 ? iova + PAGE : pages > 2 ? list_iova : 0;
			t->cdw12 = o->bs / lba - 1;
			jq->slots[s].buf = buf;
			jq->free[jq->nfree++] = (uint16_t)(o->qd - 1 - s);
		}
	}
	return 0;
}

/* Picks the next unit, or returns false when nothing should be submitted. */
static inline bool next_unit(struct run *r, uint64_t *unit, uint8_t *opc)
{
	switch (r->o->rw) {
	case RW_RANDREAD:
		*opc = NVME_OPC_READ;
		*unit = (uint64_t)(((unsigned __int128)rng_next(&r->rng) * r->nunits) >> 64);
		return true;
	case RW_RANDWRITE:
		*opc = NVME_OPC_WRITE;
		*unit = (uint64_t)(((unsigned __int128)rng_next(&r->rng) * r->nunits) >> 64);
		return true;
	case RW_READ:
	case RW_WRITE:
		*opc = r->o->rw == RW_READ ? NVME_OPC_READ : NVME_OPC_WRITE;
		*unit = r->seq_next;
		if (++r->seq_next == r->nunits)
			r->seq_next = 0;
		return true;
	case RW_VERIFY:
		if (r->seq_next >= r->v_limit)
			return false;
		*opc = r->v_reading ? NVME_OPC_READ : NVME_OPC_WRITE;
		*unit = r->seq_next++;
		return true;
	}
	return false;
}

static uint32_t total_outstanding(const struct run *r)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < r->nq; i++)
		n += r->q[i].outstanding;
	return n;
}

/* Verify: switch phases when one is done and nothing is in flight. */
static void verify_advance(struct run *r, uint64_t now)
{
	if (r->seq_next < r->v_limit || total_outstanding(r))
		return;
	if (!r->v_reading) {
		r->v_written = r->v_limit;
		r->v_reading = true;
		r->seq_next = 0;
		return;
	}
	/* a read pass is done */
	if (r->stopping || now >= r->t_end || g_stop) {
		r->stopping = true;
		return;
	}
	r->v_pass++;
	r->v_reading = false;
	r->seq_next = 0;
	r->v_limit = r->nunits;
}

static inline int complete_one(struct run *r, struct jobq *jq, const struct zoc_nvmed_cpl *c,
			       uint64_t now)
{
	struct slot *s = &jq->slots[c->cid];
	const struct opts *o = r->o;

	if (__builtin_expect(!s->busy, 0)) {
		run_fail(r, "queue %u: completion for command id %u, which is not outstanding (duplicate or invented completion)",
			 jq->qp->qid, c->cid);
		r->fatal = true;
		return -EPROTO;
	}
	s->busy = 0;
	jq->outstanding--;
	jq->free[jq->nfree++] = c->cid;
	hist_add(&r->lat, now - s->t_submit);
	r->ios++;
	if (__builtin_expect(c->status != 0, 0)) {
		uint64_t off = s->unit * o->bs;

		run_fail(r, "queue %u: %s of %u bytes at offset %" PRIu64 " (LBA %" PRIu64 ") failed: %s",
			 jq->qp->qid, s->opc == NVME_OPC_READ ? "Read" : "Write", o->bs, off,
			 off / r->info->lba_size, zoc_nvmed_status_str(c->status));
		return -EIO;
	}
	if (s->opc == NVME_OPC_READ)
		r->reads++;
	else
		r->writes++;
	if (o->rw == RW_VERIFY && s->opc == NVME_OPC_READ) {
		uint64_t off = s->unit * o->bs;
		int64_t bad = pattern_check(s->buf, o->bs, off, o->seed + r->v_pass);

		if (bad >= 0) {
			uint64_t got, want = pattern_word(off + (uint64_t)bad, o->seed + r->v_pass);

			memcpy(&got, s->buf + bad, 8);
			run_fail(r, "verify: data read back at offset %" PRIu64 " (LBA %" PRIu64 ", pass %" PRIu64 ") differs at byte %" PRId64 ": expected 0x%016" PRIx64 ", got 0x%016" PRIx64,
				 off, (off + (uint64_t)bad) / r->info->lba_size, r->v_pass, bad, want, got);
			return -EIO;
		}
		r->verified++;
	}
	return 0;
}

static int poll_queue(struct run *r, struct jobq *jq, uint64_t now)
{
	struct zoc_nvmed_cpl c[REAP_BATCH];
	struct zoc_nvmed_qpair *qp = jq->qp;
	const struct opts *o = r->o;
	uint32_t submitted = 0;
	int n, ret;

	n = zoc_nvmed_cq_reap(qp, c, REAP_BATCH);
	if (__builtin_expect(n < 0, 0)) {
		run_fail(r, "%s", qp->err);
		r->fatal = true;
		return n;
	}
	if (n) {
		/* An error completion still frees its slot: keep going, the
		 * first error is kept and stops new submissions. */
		for (int i = 0; i < n; i++)
			if (complete_one(r, jq, &c[i], now) == -EPROTO)
				return -EPROTO;
		jq->last_progress = now;
		ret = zoc_nvmed_cq_ring(qp);
		if (ret) {
			run_fail(r, "%s", qp->err);
			r->fatal = true;
			return ret;
		}
		if (o->rw == RW_VERIFY)
			verify_advance(r, now);
	}
	if (r->stopping)
		return n;
	while (jq->nfree) {
		struct nvme_sqe cmd;
		uint64_t unit;
		uint8_t opc;
		uint16_t sid;
		struct slot *s;

		if (!next_unit(r, &unit, &opc))
			break;
		sid = jq->free[--jq->nfree];
		s = &jq->slots[sid];
		s->busy = 1;
		s->opc = opc;
		s->unit = unit;
		s->t_submit = now;
		if (o->rw == RW_VERIFY && opc == NVME_OPC_WRITE)
			pattern_fill(s->buf, o->bs, unit * o->bs, o->seed + r->v_pass);
		cmd = jq->tmpl[sid];
		cmd.opc = opc;
		{
			uint64_t slba = unit * (o->bs / r->info->lba_size);

			cmd.cdw10 = (uint32_t)slba;
			cmd.cdw11 = (uint32_t)(slba >> 32);
		}
		zoc_nvmed_sq_put(qp, &cmd);
		submitted++;
	}
	if (submitted) {
		if (!jq->outstanding)
			jq->last_progress = now;
		jq->outstanding += submitted;
		ret = zoc_nvmed_sq_ring(qp);
		if (ret) {
			run_fail(r, "%s", qp->err);
			r->fatal = true;
			return ret;
		}
	}
	return n;
}

/* --irq eventfd: sleep until a queue's vector fires. */
static int wait_irq(struct run *r, int timeout_ms)
{
	struct pollfd pfd[64];
	uint32_t n = ZOC_MIN(r->nq, 64u);
	int pr;

	for (uint32_t i = 0; i < n; i++)
		pfd[i] = (struct pollfd){ .fd = r->q[i].qp->irq_fd, .events = POLLIN };
	if ((r->o->dma_nofd || r->o->queues_nofd) && n < 64) {
		/* the server's DMA requests wake us too (served by the loop) */
		pfd[n] = (struct pollfd){ .fd = zoc_nvmed_socket_fd(r->d), .events = POLLIN };
		pr = poll(pfd, n + 1, timeout_ms);
		if (pr > 0 && (pfd[n].revents & (POLLIN | POLLHUP | POLLERR)))
			pr--;
	} else {
		pr = poll(pfd, n, timeout_ms);
	}
	if (pr < 0 && errno != EINTR) {
		run_fail(r, "poll on the interrupt eventfds: %s", strerror(errno));
		return -errno;
	}
	for (uint32_t i = 0; pr > 0 && i < n; i++)
		if (pfd[i].revents & POLLIN) {
			uint64_t cnt;

			if (read(pfd[i].fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN) {
				run_fail(r, "reading an interrupt eventfd: %s", strerror(errno));
				return -errno;
			}
		}
	return 0;
}

static void run_loop(struct run *r)
{
	const struct opts *o = r->o;
	uint64_t timeout_ns = (uint64_t)o->timeout_ms * 1000000ull;
	uint64_t now = zoc_now_ns();

	r->t_start = now;
	r->t_end = now + (uint64_t)(o->time_s * 1e9);
	for (uint32_t i = 0; i < r->nq; i++)
		r->q[i].last_progress = now;
	if (o->rw == RW_VERIFY)
		r->v_limit = r->nunits;
	for (;;) {
		int reaped = 0;

		if (!r->stopping && (now >= r->t_end || g_stop)) {
			if (o->rw == RW_VERIFY) {
				/* stop writing; read back what was written */
				if (!r->v_reading)
					r->v_limit = r->seq_next;
				else if (g_stop)
					r->stopping = true;
				verify_advance(r, now);
			} else {
				r->stopping = true;
			}
		}
		if ((o->dma_nofd || o->queues_nofd) && zoc_nvmed_service(r->d)) {
			r->failed = false;
			r->fatal = true;
			run_fail(r, "%s", zoc_nvmed_error(r->d));
			break;
		}
		for (uint32_t i = 0; i < r->nq && !r->fatal; i++) {
			int n = poll_queue(r, &r->q[i], now);

			if (n > 0)
				reaped += n;
		}
		if (r->fatal || (r->stopping && total_outstanding(r) == 0))
			break;
		now = zoc_now_ns();
		if (!reaped) {
			for (uint32_t i = 0; i < r->nq; i++) {
				struct jobq *jq = &r->q[i];

				if (jq->outstanding && now - jq->last_progress > timeout_ns) {
					uint32_t csts = zoc_nvmed_csts(r->d);

					r->failed = false; /* this error wins: nothing more will complete */
					r->fatal = true;
					run_fail(r, "queue %u: no completion for %d ms with %u commands outstanding (CSTS 0x%x%s)",
						 jq->qp->qid, o->timeout_ms, jq->outstanding, csts,
						 csts == 0xffffffffu ? ": unreadable" :
						 (csts & 2) ? ": controller fatal status" : "");
					r->t_end = now;
					return;
				}
			}
			if (o->irq_eventfd && total_outstanding(r)) {
				if (wait_irq(r, 100) < 0) {
					r->fatal = true;
					r->t_end = now;
					return;
				}
				now = zoc_now_ns();
			}
		}
	}
	r->t_end = now;
}

static void print_results(const struct run *r, double cpu_user, double cpu_sys, int rc)
{
	const struct opts *o = r->o;
	const struct zoc_nvmed_info *in = r->info;
	double secs = (double)(r->t_end - r->t_start) / 1e9;
	double iops = secs > 0 ? (double)r->ios / secs : 0;
	double mibs = iops * o->bs / 1048576.0;
	double mean = r->lat.n ? (double)r->lat.sum / (double)r->lat.n / 1000.0 : 0;
	double cpu = secs > 0 ? (cpu_user + cpu_sys) / secs : 0;
	uint64_t dbw = r->doorbell_writes;
	if (o->json) {
		printf("{\"ok\": %s, \"rw\": \"%s\", \"bs\": %u, \"qd\": %u, \"queues\": %u, "
		       "\"irq\": \"%s\", \"doorbells\": \"%s\", \"nsid\": %u, \"lba_size\": %u, "
		       "\"range_bytes\": %" PRIu64 ", \"seconds\": %.6f, \"ios\": %" PRIu64 ", "
		       "\"reads\": %" PRIu64 ", \"writes\": %" PRIu64 ", \"verified\": %" PRIu64 ", "
		       "\"iops\": %.1f, \"mib_s\": %.2f, "
		       "\"lat_us\": {\"mean\": %.3f, \"p50\": %.3f, \"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f}, "
		       "\"cpu\": {\"user_s\": %.3f, \"sys_s\": %.3f, \"util\": %.4f}, "
		       "\"doorbell_writes\": %" PRIu64 ", \"controller\": {\"mn\": \"%s\", \"sn\": \"%s\", \"fr\": \"%s\"}",
		       rc ? "false" : "true", rw_names[o->rw], o->bs, o->qd, r->nq,
		       o->irq_eventfd ? "eventfd" : "poll", in->doorbells_mmapped ? "mmap" : "message",
		       o->nsid, in->lba_size, r->nunits * o->bs, secs, r->ios, r->reads, r->writes,
		       r->verified, iops, mibs, mean, hist_pct(&r->lat, 50) / 1000.0,
		       hist_pct(&r->lat, 99) / 1000.0, hist_pct(&r->lat, 99.9) / 1000.0,
		       (double)r->lat.max / 1000.0, cpu_user, cpu_sys, cpu, dbw, in->mn, in->sn, in->fr);
		if (o->dma_nofd || o->queues_nofd)
			printf(", \"dma_served\": %" PRIu64, r->dma_served);
		if (rc) {
			printf(", \"error\": ");
			json_str(r->err);
		}
		printf("}\n");
		return;
	}
	printf("zoc-perf nvme: %s bs=%u qd=%u queues=%u irq=%s doorbells=%s; %s %s (fw %s), ns %u: %u-byte LBAs, range %" PRIu64 " MiB\n",
	       rw_names[o->rw], o->bs, o->qd, r->nq, o->irq_eventfd ? "eventfd" : "poll",
	       in->doorbells_mmapped ? "mmap" : "message", in->mn, in->sn, in->fr, o->nsid,
	       in->lba_size, r->nunits * o->bs >> 20);
	printf("  %" PRIu64 " I/Os in %.3f s: %.0f IOPS, %.1f MiB/s", r->ios, secs, iops, mibs);
	if (o->rw == RW_VERIFY)
		printf(" (%" PRIu64 " writes, %" PRIu64 " reads verified, %" PRIu64 " passes)",
		       r->writes, r->verified, r->v_pass + 1);
	printf("\n  latency us: mean %.2f  p50 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n", mean,
	       hist_pct(&r->lat, 50) / 1000.0, hist_pct(&r->lat, 99) / 1000.0,
	       hist_pct(&r->lat, 99.9) / 1000.0, (double)r->lat.max / 1000.0);
	printf("  client CPU: %.1f%% (user %.2f s, sys %.2f s)%s; doorbell writes %.3f per I/O\n",
	       100 * cpu, cpu_user, cpu_sys, o->cpu >= 0 ? "" : " unpinned",
	       r->ios ? (double)dbw / (double)r->ios : 0);
	if (o->dma_nofd || o->queues_nofd)
		printf("  %s without an fd: %" PRIu64 " DMA_READ/DMA_WRITE requests served\n",
		       o->dma_nofd && o->queues_nofd ? "data and queues" :
		       o->dma_nofd ? "data" : "queues", r->dma_served);
}

/* What setup_job() allocated (any part of it), and r itself. */
static void run_free(struct run *r)
{
	for (uint32_t i = 0; r->q && i < r->nq; i++) {
		free(r->q[i].tmpl);
		free(r->q[i].slots);
		free(r->q[i].free);
	}
	free(r->q);
	free(r);
}

static int cmd_nvme(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "rw", required_argument, NULL, 'r' },
		{ "bs", required_argument, NULL, 'b' },
		{ "qd", required_argument, NULL, 'q' },
		{ "time", required_argument, NULL, 't' },
		{ "queues", required_argument, NULL, 'Q' },
		{ "nsid", required_argument, NULL, 'n' },
		{ "size-mb", required_argument, NULL, 'S' },
		{ "cpu", required_argument, NULL, 'c' },
		{ "irq", required_argument, NULL, 'i' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout-ms", required_argument, NULL, 'T' },
		{ "no-mmap", no_argument, NULL, 'N' },
		{ "wait-writes", no_argument, NULL, 'W' },
		{ "mem-mb", required_argument, NULL, 'm' },
		{ "seed", required_argument, NULL, 'e' },
		{ "dma-nofd", no_argument, NULL, 'D' },
		{ "queues-nofd", no_argument, NULL, 'R' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct opts o = { .rw = RW_RANDREAD, .bs = 4096, .qd = 32, .queues = 1, .nsid = 1,
			  .time_s = 10, .cpu = -1, .timeout_ms = 5000, .seed = 1, .mem_mb = 64 };
	struct zoc_nvmed_opts dopts;
	struct rusage ru0, ru1;
	struct run *r;
	const char *why = NULL;
	int c, rc = 0, ret;

	while ((c = getopt_long(argc, argv, "vh", lo, NULL)) != -1) {
		switch (c) {
		case 's': o.socket = optarg; break;
		case 'r': {
			unsigned i;

			for (i = 0; i < ZOC_ARRAY_SIZE(rw_names); i++)
				if (!strcmp(optarg, rw_names[i]))
					break;
			if (i == ZOC_ARRAY_SIZE(rw_names))
				die_usage("--rw: '%s' is not randread, randwrite, read, write or verify", optarg);
			o.rw = (enum rw)i;
			break;
		}
		case 'b': o.bs = (uint32_t)parse_u64("--bs", optarg, 512, 1u << 20); break;
		case 'q': o.qd = (uint32_t)parse_u64("--qd", optarg, 1, 4096); break;
		case 't': {
			char *end;

			o.time_s = strtod(optarg, &end);
			if (end == optarg || *end || !(o.time_s > 0) || o.time_s > 86400)
				die_usage("--time: '%s' is not a number of seconds in (0, 86400]", optarg);
			break;
		}
		case 'Q': o.queues = (uint32_t)parse_u64("--queues", optarg, 1, 64); break;
		case 'n': o.nsid = (uint32_t)parse_u64("--nsid", optarg, 1, 0xfffffffe); break;
		case 'S': o.size_mb = parse_u64("--size-mb", optarg, 1, 1ull << 40); break;
		case 'c': o.cpu = (int)parse_u64("--cpu", optarg, 0, CPU_SETSIZE - 1); break;
		case 'i':
			if (!strcmp(optarg, "poll"))
				o.irq_eventfd = false;
			else if (!strcmp(optarg, "eventfd"))
				o.irq_eventfd = true;
			else
				die_usage("--irq: '%s' is not poll or eventfd", optarg);
			break;
		case 'j': o.json = true; break;
		case 'T': o.timeout_ms = (int)parse_u64("--timeout-ms", optarg, 1, 3600000); break;
		case 'N': o.no_mmap = true; break;
		case 'D': o.dma_nofd = true; break;
		case 'R': o.queues_nofd = true; break;
		case 'W': o.wait_writes = true; break;
		case 'm': o.mem_mb = (uint32_t)parse_u64("--mem-mb", optarg, 1, 4095); break;
		case 'e': o.seed = parse_u64("--seed", optarg, 0, UINT64_MAX); break;
		case 'v': o.verbose = true; break;
		case 'h': usage(stdout); return 0;
		default: die_usage("unknown option");
		}
	}
	if (optind < argc)
		die_usage("unexpected argument '%s'", argv[optind]);
	if (!o.socket)
		die_usage("--socket PATH is required");
	if (o.cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(o.cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) < 0) {
			fprintf(stderr, "%s: cannot pin to CPU %d: %s\n", g_prog, o.cpu, strerror(errno));
			return EXIT_FAIL;
		}
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);

	memset(&dopts, 0, sizeof(dopts));
	dopts.socket = o.socket;
	dopts.timeout_ms = o.timeout_ms;
	dopts.nsid = o.nsid;
	dopts.io_queues = (uint16_t)o.queues;
	dopts.queue_slots = (uint16_t)o.qd;
	dopts.irq_eventfd = o.irq_eventfd;
	dopts.no_mmap = o.no_mmap;
	dopts.wait_writes = o.wait_writes;
	dopts.data_nofd = o.dma_nofd;
	dopts.queues_nofd = o.queues_nofd;
	dopts.verbose = o.verbose;
	{
		uint64_t per_slot = ((uint64_t)(o.bs + PAGE - 1) / PAGE) * PAGE + (o.bs > 2 * PAGE ? PAGE : 0);
		uint64_t need = zoc_nvmed_mem_needed(&dopts) + per_slot * o.qd * o.queues;
		uint64_t want = ZOC_MAX(need, (uint64_t)o.mem_mb << 20);

		if (want > (4095ull << 20))
			die_usage("the job needs %" PRIu64 " MiB of DMA memory: lower --qd, --bs or --queues",
				  need >> 20);
		dopts.mem_bytes = (uint32_t)want;
	}

	r = calloc(1, sizeof(*r));
	if (!r)
		return EXIT_FAIL;
	r->o = &o;
	r->nq = o.queues;
	r->rng = o.seed ? mix64(o.seed) | 1 : 0x9e3779b97f4a7c15ull;
	r->lat.min = UINT64_MAX;
	r->d = zoc_nvmed_open(&dopts, &why);
	if (!r->d) {
		fprintf(stderr, "%s: %s: %s\n", g_prog, o.socket, why);
		if (o.json) {
			printf("{\"ok\": false, \"error\": ");
			json_str(why);
			printf("}\n");
		}
		free(r);
		return EXIT_FAIL;
	}
	r->info_copy = *zoc_nvmed_info(r->d); /* outlives the driver (closed before printing) */
	r->info = &r->info_copy;
	if (o.verbose) {
		const struct zoc_nvmed_info *in = r->info;

		fprintf(stderr,
			"%s: controller %04x:%04x \"%s\" sn \"%s\" fw \"%s\", NVMe %u.%u.%u, CAP 0x%016" PRIx64
			", MDTS %u bytes, %u namespaces; ns %u: %" PRIu64 " x %u bytes; %u I/O queues of %u entries; doorbells %s; irq %s\n",
			g_prog, in->vid, in->ssvid, in->mn, in->sn, in->fr, in->vs >> 16,
			(in->vs >> 8) & 0xff, in->vs & 0xff, in->cap, in->mdts_bytes, in->nn, o.nsid,
			in->nsze, in->lba_size, in->io_queues, in->queue_size,
			in->doorbells_mmapped ? "mmapped" : "by REGION_WRITE",
			in->irq_eventfd ? "MSI-X eventfds" : "none (polling)");
	}
	ret = setup_job(r);
	if (ret) {
		if (ret == -EINVAL)
			fprintf(stderr, "%s: %s\n(try '%s nvme --help')\n", g_prog, r->err, g_prog);
		else
			fprintf(stderr, "%s: setting up the job: %s (DMA memory too small? try --mem-mb)\n",
				g_prog, strerror(-ret));
		if (o.json) {
			printf("{\"ok\": false, \"error\": ");
			json_str(ret == -EINVAL ? r->err : strerror(-ret));
			printf("}\n");
		}
		zoc_nvmed_close(r->d, NULL);
		run_free(r);
		return ret == -EINVAL ? EXIT_USAGE : EXIT_FAIL;
	}
	getrusage(RUSAGE_SELF, &ru0);
	run_loop(r);
	getrusage(RUSAGE_SELF, &ru1);
	for (uint32_t i = 0; i < r->nq; i++)
		r->doorbell_writes += r->q[i].qp->doorbell_writes;
	r->dma_served = zoc_nvmed_dma_served(r->d);
	if (r->failed)
		rc = EXIT_FAIL;
	if (!r->failed && o.rw == RW_VERIFY && r->verified == 0) {
		snprintf(r->err, sizeof(r->err), "verify: nothing was read back (run too short?)");
		rc = EXIT_FAIL;
	}
	ret = zoc_nvmed_close(r->d, &why);
	if (ret && !rc) {
		snprintf(r->err, sizeof(r->err), "tearing down: %s", why);
		rc = EXIT_FAIL;
	} else if (ret && o.verbose) {
		fprintf(stderr, "%s: also, tearing down: %s\n", g_prog, why);
	}
	print_results(r, tv_s(ru1.ru_utime) - tv_s(ru0.ru_utime),
		      tv_s(ru1.ru_stime) - tv_s(ru0.ru_stime), rc);
	if (rc)
		fprintf(stderr, "%s: error: %s\n", g_prog, r->err);
	run_free(r);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	if (!strcmp(argv[1], "nvme"))
		return cmd_nvme(argc - 1, argv + 1);
	if (!strcmp(argv[1], "conn"))
		return zoc_perf_cmd_conn(argc - 1, argv + 1);
	if (!strcmp(argv[1], "wake"))
		return zoc_perf_cmd_wake(argc - 1, argv + 1);
	die_usage("unknown command '%s' (known: nvme, conn, wake)", argv[1]);
}
