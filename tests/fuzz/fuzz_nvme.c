/* SPDX-License-Identifier: MIT */
/*
 * fuzz_nvme.c - libFuzzer target for the NVMe controller (src/nvme/): admin
 * and I/O command streams, doorbell and register writes from the fuzzer.
 *
 * One reactor (interrupt mode, so it sleeps between inputs) runs on a thread
 * started in LLVMFuzzerInitialize(), with one controller (2 I/O queue pairs
 * of up to 16 entries) over namespaces on two null bdevs (512 and 4096-byte
 * blocks) and a 64 KiB guest memory region between two PROT_NONE guard
 * pages. Per input the harness enables the controller, creates I/O queue
 * pairs 1 and 2 with well-formed admin commands, then plays the input:
 *
 *   op byte: bits 0-2 the operation, bit 7 "raw" (no steering)
 *     0 admin command: 64 bytes, the next admin SQ slot, doorbell
 *     1 I/O command: 1 byte queue (1 + b % 2), 64 bytes, doorbell
 *     2 doorbell write: 2 bytes index (% 1024 unless raw), 4 bytes value
 *     3 guest memory write: 2 bytes offset, 16 bytes (PRP lists, SGLs,
 *       DSM ranges, queue entries)
 *     4 register write: 1 byte offset (4-aligned, < 0x40), 4 bytes value
 *     5 consume completions on every CQ (head doorbells)
 *     6 let the reactor run (message round trips); raw: the fake link's
 *       next mode (answer, fail every copy, hold copies until the mode
 *       changes, a function reset or the end of the input)
 *     7 function reset; raw: flip the PCI command register's bus master bit
 *       (no DMA while it is off; set again at the end of the input)
 *
 * Memory without an fd: a second 64 KiB region at GPA_R is "remote", reached
 * only through a fake link (zoc_mem_io_submit copies, answered on reactor 0
 * from its own buffer between guard pages). The input's size picks where
 * the queues live: size % 3 == 0 all in mapped memory, 1 I/O pair 2 in
 * remote memory, 2 the admin queues and both I/O pairs there (the shadow
 * rings of src/nvme/nvme.c).
 *
 * Steering (unless raw): PRP1/PRP2 and SGL addresses are folded into guest
 * memory or the remote region (with a chance of the hole after each), the
 * NSID into 0..3. At the end
 * the harness disables the controller and waits for CSTS.RDY to clear: a
 * controller that does not quiesce in 5 s is a hang (abort). The guard
 * pages catch device accesses next to guest memory; ASan the rest.
 *
 * The seeds in tests/fuzz/corpus/nvme/ are small scripts made by hand:
 * identify, queue creation and deletion, reads/writes with PRP lists and
 * SGL segments, bad doorbells; remote_hold and remote_fail put queues in
 * the remote region with copies held, then failing.
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
#include "nvme/nvme.h"
#include "nvme/nvme_spec.h"
#include "pci/pci.h"

#define PAGE 4096u
#define GPA 0x100000ull
#define MEM_SIZE 0x10000u
#define ASQ_OFF 0x0000u
#define ACQ_OFF 0x1000u
#define SQ_OFF(q) (0x2000u + 0x2000u * ((q) - 1)) /* CQ at +0x1000 */
#define ADM_SIZE 8
#define IO_SIZE 16
#define MAX_OPS 64
#define GPA_R 0x400000ull /* the remote region, MEM_SIZE bytes */

static uint8_t *g_map, *g_mem;
static uint8_t *g_rmap, *g_rmem; /* the remote region's "client memory" */
static struct zoc_mem *g_zm;
static struct zoc_nvme_ctrlr *g_c;
static struct zoc_pci_func *g_f;
static pthread_t g_thread;

struct q {
	uint8_t *base; /* g_mem or g_rmem */
	uint64_t gpa;  /* of base */
	uint16_t qid;
	uint32_t size;
	uint32_t sq_off, cq_off;
	uint32_t tail, head;
	uint16_t phase;
};

static struct q g_adm, g_io[3];
static uint16_t g_cid;
static bool g_bm_off; /* bus mastering cleared by the input */

/* ---- the fake link (reactor 0) ---- */

#define HELD_MAX 64
static int g_rmode; /* 0 answer, 1 fail (-EIO), 2 hold */
static struct zoc_mem_io *g_held[HELD_MAX];
static unsigned g_nheld;

static void fake_answer(struct zoc_mem_io *io, int mode)
{
	uint64_t gpa = io->gpa + io->done, n = io->chunk;

	if (gpa < GPA_R || n > MEM_SIZE || gpa - GPA_R > MEM_SIZE - n) {
		fprintf(stderr, "fuzz_nvme: a copy outside the remote region\n");
		abort();
	}
	if (mode == 1) {
		zoc_mem_io_remote_done(io, -EIO);
		return;
	}
	if (io->to_guest)
		memcpy(g_rmem + (gpa - GPA_R), (uint8_t *)io->buf + io->done, n);
	else
		memcpy((uint8_t *)io->buf + io->done, g_rmem + (gpa - GPA_R), n);
	zoc_mem_io_remote_done(io, 0);
}

static void fake_rw(void *ctx, struct zoc_mem_io *io)
{
	(void)ctx;
	if (io->chunk > 4096)
		io->chunk = 4096;
	if (g_rmode == 2 && g_nheld < HELD_MAX) {
		g_held[g_nheld++] = io;
		return;
	}
	fake_answer(io, g_rmode == 2 ? 0 : g_rmode);
}

static const struct zoc_mem_remote_ops g_fake_ops = {.rw = fake_rw};

/* ---- reactor 0 calls ---- */

struct call {
	void (*fn)(struct call *);
	sem_t done;
	uint64_t off;
	uint32_t val;
	bool is_write, cfg;
	int rc;
};

static void trampoline(void *arg)
{
	struct call *c = arg;

	c->fn(c);
	sem_post(&c->done);
}

static void on_reactor(struct call *c)
{
	sem_init(&c->done, 0, 0);
	if (zoc_reactor_send_msg(zoc_reactor_get(0), trampoline, c))
		abort();
	while (sem_wait(&c->done))
		;
	sem_destroy(&c->done);
}

static void bar_fn(struct call *c)
{
	if (c->cfg)
		c->rc = zoc_pci_cfg_access(g_f, (uint32_t)c->off, &c->val, 2, c->is_write);
	else
		c->rc = zoc_pci_bar_access(g_f, 0, c->off, &c->val, 4, c->is_write);
}

static uint32_t reg_rd(uint64_t off)
{
	struct call c = {.fn = bar_fn, .off = off};

	on_reactor(&c);
	return c.val;
}

static void reg_wr(uint64_t off, uint32_t v)
{
	struct call c = {.fn = bar_fn, .off = off, .val = v, .is_write = true};

	on_reactor(&c);
}

static void noop_fn(struct call *c)
{
	(void)c;
}

/* Sets the fake link's mode (val); leaving "hold" answers what was held. */
static void rmode_fn(struct call *c)
{
	struct zoc_mem_io *held[HELD_MAX];
	unsigned n = 0;

	g_rmode = (int)c->val;
	if (g_rmode != 2) {
		n = g_nheld;
		memcpy(held, g_held, sizeof(held[0]) * n);
		g_nheld = 0;
	}
	for (unsigned i = 0; i < n; i++)
		fake_answer(held[i], g_rmode);
}

static void rmode_set(int mode)
{
	struct call c = {.fn = rmode_fn, .val = (uint32_t)mode};

	on_reactor(&c);
}

struct reset_wait {
	sem_t sem;
};

static sem_t g_reset_sem;

static void reset_done(void *arg)
{
	(void)arg;
	sem_post(&g_reset_sem);
}

static void reset_fn(struct call *c)
{
	(void)c;
	zoc_pci_func_reset(g_f, reset_done, NULL);
}

static void wait_sem_or_die(sem_t *s, const char *what)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	while (sem_timedwait(s, &ts)) {
		if (errno != EINTR) {
			fprintf(stderr, "fuzz_nvme: %s did not finish\n", what);
			abort();
		}
	}
}

/* ---- set-up ---- */

static void *reactor_main(void *arg)
{
	(void)arg;
	zoc_reactors_run();
	return NULL;
}

static void create_fn(struct call *c)
{
	struct zoc_nvme_ctrlr_opts o = {.name = "fuzz", .max_io_queues = 2, .max_queue_size = IO_SIZE};
	const struct zoc_pci_ops *ops;

	c->rc = zoc_bdev_null_create("n512", 1, 512);
	c->rc |= zoc_bdev_null_create("n4k", 1, 4096);
	c->rc |= zoc_nvme_ctrlr_create(&o, &g_c);
	if (c->rc)
		return;
	g_f = zoc_nvme_ctrlr_pci(g_c);
	c->rc |= zoc_nvme_ns_add(g_c, zoc_bdev_find("n512"), 1, NULL);
	c->rc |= zoc_nvme_ns_add(g_c, zoc_bdev_find("n4k"), 2, NULL);
	ops = zoc_pci_func_desc(g_f)->ops;
	/* no I/O yet: quiesce is immediate enough; set_dma needs it done */
	ops->set_dma(g_f, g_zm);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const unsigned cores[1] = {0};
	struct zoc_reactor_opts o = {.cores = cores, .num_cores = 1, .interrupt_mode = true};
	struct call c = {.fn = create_fn};
	struct call cmd = {.fn = bar_fn, .off = 4, .val = 0x6, .is_write = true, .cfg = true};

	(void)argc;
	(void)argv;
	zoc_log_set_level(getenv("ZOC_FUZZ_LOG") ? ZOC_LOG_DEBUG : ZOC_LOG_ERR);
	g_map = mmap(NULL, MEM_SIZE + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (g_map == MAP_FAILED)
		abort();
	g_mem = g_map + PAGE;
	if (mprotect(g_mem, MEM_SIZE, PROT_READ | PROT_WRITE))
		abort();
	g_rmap = mmap(NULL, MEM_SIZE + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (g_rmap == MAP_FAILED)
		abort();
	g_rmem = g_rmap + PAGE;
	if (mprotect(g_rmem, MEM_SIZE, PROT_READ | PROT_WRITE))
		abort();
	g_zm = zoc_mem_create();
	if (!g_zm || zoc_mem_add_region_hva(g_zm, GPA, MEM_SIZE, GPA, g_mem, true) ||
	    zoc_mem_add_remote(g_zm, GPA_R, MEM_SIZE, true))
		abort();
	{
		struct zoc_mem_remote *ep = zoc_mem_remote_create(&g_fake_ops, (void *)1);

		if (!ep)
			abort();
		zoc_mem_set_remote(g_zm, ep);
		zoc_mem_remote_put(ep); /* the table holds it */
	}
	sem_init(&g_reset_sem, 0, 0);
	if (zoc_reactors_init(&o) || pthread_create(&g_thread, NULL, reactor_main, NULL))
		abort();
	on_reactor(&c);
	if (c.rc)
		abort();
	on_reactor(&cmd); /* memory space + bus master */
	return 0;
}

/* ---- the driver side ---- */

static void db(unsigned idx, uint32_t v)
{
	reg_wr(NVME_REG_DBS + 4ull * idx, v);
}

static void push(struct q *q, const void *sqe)
{
	memcpy(q->base + q->sq_off + 64u * q->tail, sqe, 64);
	q->tail = (q->tail + 1) % q->size;
	db(2u * q->qid, q->tail);
}

static void consume(struct q *q)
{
	unsigned n = 0;

	for (;;) {
		struct nvme_cqe *e = (struct nvme_cqe *)(q->base + q->cq_off + 16u * q->head);

		if ((__atomic_load_n(&e->status, __ATOMIC_ACQUIRE) & 1) != q->phase || n++ > q->size)
			break;
		if (++q->head == q->size) {
			q->head = 0;
			q->phase ^= 1;
		}
	}
	db(2u * q->qid + 1, q->head);
}

static void settle(void)
{
	struct call c = {.fn = noop_fn};

	for (int i = 0; i < 4; i++)
		on_reactor(&c);
}

static void admin_setup_cmd(uint8_t opc, uint32_t cdw10, uint32_t cdw11, uint64_t prp1)
{
	struct nvme_sqe s = {.opc = opc, .cid = ++g_cid, .prp1 = prp1, .cdw10 = cdw10,
			     .cdw11 = cdw11};

	push(&g_adm, &s);
}

/* layout: 0 all mapped, 1 I/O pair 2 remote, 2 admin and I/O queues remote */
static bool enable(unsigned layout)
{
	uint8_t *abase = layout == 2 ? g_rmem : g_mem;
	uint64_t agpa = layout == 2 ? GPA_R : GPA;

	memset(g_mem, 0, MEM_SIZE);
	memset(g_rmem, 0, MEM_SIZE);
	g_adm = (struct q){.base = abase, .gpa = agpa, .qid = 0, .size = ADM_SIZE,
			   .sq_off = ASQ_OFF, .cq_off = ACQ_OFF, .phase = 1};
	reg_wr(NVME_REG_AQA, ((ADM_SIZE - 1) << 16) | (ADM_SIZE - 1));
	reg_wr(NVME_REG_ASQ, (uint32_t)(agpa + ASQ_OFF));
	reg_wr(NVME_REG_ASQ + 4, 0);
	reg_wr(NVME_REG_ACQ, (uint32_t)(agpa + ACQ_OFF));
	reg_wr(NVME_REG_ACQ + 4, 0);
	reg_wr(NVME_REG_CC, NVME_CC_EN | (6u << 16) | (4u << 20));
	for (int i = 0; i < 1000; i++) {
		if (reg_rd(NVME_REG_CSTS) & NVME_CSTS_RDY)
			break;
		usleep(10);
	}
	if (!(reg_rd(NVME_REG_CSTS) & NVME_CSTS_RDY))
		return false;
	for (uint16_t q = 1; q <= 2; q++) {
		bool r = layout == 2 || (layout == 1 && q == 2);

		g_io[q] = (struct q){.base = r ? g_rmem : g_mem, .gpa = r ? GPA_R : GPA, .qid = q,
				     .size = IO_SIZE, .sq_off = SQ_OFF(q),
				     .cq_off = SQ_OFF(q) + 0x1000, .phase = 1};
		admin_setup_cmd(NVME_ADM_CREATE_CQ, q | ((IO_SIZE - 1u) << 16), 3 | ((uint32_t)q << 16),
				g_io[q].gpa + g_io[q].cq_off);
		admin_setup_cmd(NVME_ADM_CREATE_SQ, q | ((IO_SIZE - 1u) << 16), 1 | ((uint32_t)q << 16),
				g_io[q].gpa + g_io[q].sq_off);
	}
	settle();
	consume(&g_adm);
	return true;
}

static void disable(void)
{
	reg_wr(NVME_REG_CC, 0);
	for (int i = 0; i < 50000; i++) {
		if (!(reg_rd(NVME_REG_CSTS) & NVME_CSTS_RDY))
			return;
		usleep(100);
	}
	fprintf(stderr, "fuzz_nvme: the controller did not disable\n");
	abort();
}

static uint64_t steer(uint64_t a)
{
	/* mostly inside guest memory or the remote region, sometimes just
	 * after one of them (the hole) */
	uint64_t span = MEM_SIZE + PAGE;

	return ((a / span) & 3) == 3 ? GPA_R + (a % span) : GPA + (a % span);
}

static void steer_cmd(struct nvme_sqe *s)
{
	s->nsid %= 4;
	if (NVME_SQE_PSDT(s->flags) == NVME_PSDT_PRP) {
		s->prp1 = steer(s->prp1);
		s->prp2 = steer(s->prp2);
	} else {
		s->prp1 = steer(s->prp1); /* SGL1 address; length/type stay raw */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t pos = 0;
	unsigned ops = 0;

#define NEED(n)                     \
	do {                        \
		if (pos + (n) > size) \
			goto done;  \
	} while (0)

	g_rmode = 0;
	if (!enable((unsigned)(size % 3))) {
		disable();
		return 0;
	}
	while (pos < size && ops++ < MAX_OPS) {
		uint8_t op = data[pos++];
		bool raw = op & 0x80;

		switch (op & 7) {
		case 0:
		case 1: {
			struct nvme_sqe s;
			struct q *q = &g_adm;

			if ((op & 7) == 1) {
				NEED(1);
				q = &g_io[1 + data[pos++] % 2];
			}
			NEED(64);
			memcpy(&s, data + pos, 64);
			pos += 64;
			if (!raw)
				steer_cmd(&s);
			s.cid = ++g_cid;
			push(q, &s);
			break;
		}
		case 2: {
			uint16_t idx;
			uint32_t v;

			NEED(6);
			memcpy(&idx, data + pos, 2);
			memcpy(&v, data + pos + 2, 4);
			pos += 6;
			if (!raw)
				idx %= 8;
			db(idx % 1024, v);
			break;
		}
		case 3: {
			uint16_t off;

			NEED(18);
			memcpy(&off, data + pos, 2);
			off %= MEM_SIZE - 16;
			memcpy(g_mem + off, data + pos + 2, 16);
			pos += 18;
			break;
		}
		case 4: {
			uint32_t v;
			uint8_t off;

			NEED(5);
			off = (uint8_t)((data[pos] & 0x3c));
			memcpy(&v, data + pos + 1, 4);
			pos += 5;
			reg_wr(off, v);
			break;
		}
		case 5:
			consume(&g_adm);
			consume(&g_io[1]);
			consume(&g_io[2]);
			break;
		case 6:
			if (raw)
				rmode_set((g_rmode + 1) % 3);
			settle();
			break;
		case 7: {
			struct call c = {.fn = reset_fn};

			if (raw) {
				struct call cmd = {.fn = bar_fn, .off = 4, .is_write = true, .cfg = true};

				g_bm_off = !g_bm_off;
				cmd.val = g_bm_off ? 0x2 : 0x6;
				on_reactor(&cmd);
				break;
			}

			rmode_set(0); /* the reset waits for held copies */
			on_reactor(&c);
			wait_sem_or_die(&g_reset_sem, "function reset");
			{
				struct call cmd = {.fn = bar_fn, .off = 4, .val = 0x6, .is_write = true,
						   .cfg = true};

				on_reactor(&cmd);
			}
			goto done;
		}
		}
	}
done:
	rmode_set(0); /* answers the held copies: the disable waits for them */
	if (g_bm_off) {
		struct call cmd = {.fn = bar_fn, .off = 4, .val = 0x6, .is_write = true, .cfg = true};

		g_bm_off = false;
		on_reactor(&cmd);
	}
	settle();
	consume(&g_adm);
	consume(&g_io[1]);
	consume(&g_io[2]);
	disable();
	return 0;
}
