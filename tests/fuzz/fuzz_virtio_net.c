/* SPDX-License-Identifier: MIT */
/*
 * fuzz_virtio_net.c - libFuzzer target for the virtio-net TX path into the
 * switch (src/virtio/virtio_net.c on the real virtqueue, vswitch and packet
 * pools).
 *
 * One reactor (interrupt mode) on a thread started in LLVMFuzzerInitialize(),
 * one switch "fz" with two vNICs: A, whose TX queue (queue 1) reads the
 * fuzzer's descriptor chains, headers and frames, and B, whose RX queue
 * (queue 0, a well-formed split ring of 16 x 2 KiB buffers the harness
 * builds) receives whatever the switch forwards (B is promiscuous, so every
 * valid frame reaches it, through the checksum and mergeable paths).
 *
 * Input:
 *   byte 0   flags: bit0 packed, bit1 indirect, bit2 A negotiates CSUM,
 *            bit3 B negotiates MRG_RXBUF, bit4 B negotiates GUEST_CSUM,
 *            bit5 raw addresses/lengths (no steering), bit6 A negotiates
 *            HOST_TSO4/TSO6/ECN/USO (with CSUM), bit7 B negotiates
 *            GUEST_CSUM/TSO4/TSO6/ECN/USO4/USO6 (GSO headers are then
 *            checked, super-frames carried whole to B or segmented)
 *   byte 1   queue size (split: 1 << (b % 5); packed: 1 + b % 16)
 *   byte 2   split: avail->idx; packed: how many descriptors are marked
 *            available (the rest not)
 *   then     the descriptor table (size * 16), the split avail ring
 *            (2 * size), then guest memory (64 KiB: headers, frames,
 *            indirect tables); short inputs are zero-filled.
 *
 * Checks besides the sanitizers: the queue drains or turns broken (no hang),
 * every packet buffer returns to the pool, B's receive ring only ever gets
 * well-formed completions (the virtqueue code checks ids).
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"
#include "core/reactor.h"
#include "link/dma.h"
#include "net/pkt.h"
#include "net/vswitch.h"
#include "virtio/virtio.h"
#include "virtio/virtio_net.h"
#include "virtio/virtqueue.h"

#define PAGE 4096u
#define MAX_Q 16
#define RW_GPA 0x10000ull
#define RW_SIZE 0x10000u
#define RX_GPA 0x100000ull
#define RX_BUF 2048u
#define RX_N 16u

#define R_DESC 0x0
#define R_AVAIL 0x800
#define R_USED 0x1000
#define R_PDESC 0x2000
#define RINGS_SIZE (3 * PAGE)

static uint8_t *g_rw, *g_rx, *g_rings, *g_rxrings;
static struct zoc_mem *g_mem;
static struct zoc_vswitch *g_sw;
static struct zoc_vnet *g_a, *g_b;
static pthread_t g_thread;

struct call {
	void (*fn)(struct call *);
	sem_t done;
	uint64_t fa, fb;
	struct zoc_vq_config txc, rxc;
	struct zoc_vq *txq;
	bool quiet;
	int rc;
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
	struct zoc_vnet_opts o = {.name = "fa", .num_queue_pairs = 1, .mtu = 9000};

	c->rc = zoc_vswitch_create("fz", NULL, &g_sw);
	if (c->rc)
		return;
	o.sw = g_sw;
	g_a = zoc_vnet_create(&o);
	o.name = "fb";
	g_b = zoc_vnet_create(&o);
	if (!g_a || !g_b)
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
	g_rw = mmap(NULL, RW_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	g_rx = mmap(NULL, RX_BUF * RX_N, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		    0);
	g_rings = mmap(NULL, RINGS_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	g_rxrings = mmap(NULL, RINGS_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	if (g_rw == MAP_FAILED || g_rx == MAP_FAILED || g_rings == MAP_FAILED ||
	    g_rxrings == MAP_FAILED)
		abort();
	g_mem = zoc_mem_create();
	if (!g_mem || zoc_mem_add_region_hva(g_mem, RW_GPA, RW_SIZE, 0, g_rw, true) ||
	    zoc_mem_add_region_hva(g_mem, RX_GPA, RX_BUF * RX_N, 0x1000000, g_rx, true))
		abort();
	sem_init(&g_call.done, 0, 0);
	sem_init(&g_call.stopped, 0, 0);
	if (zoc_reactors_init(&o) || zoc_pktpools_init(256, 32))
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
	struct zoc_virtio_dev *a = zoc_vnet_to_virtio(g_a), *b = zoc_vnet_to_virtio(g_b);
	struct zoc_vq *rxq;

	if (a->ops->set_features(a, c->fa) || b->ops->set_features(b, c->fb))
		abort();
	rxq = zoc_vq_create(&c->rxc);
	if (!rxq || b->ops->queue_start(b, 0, rxq, -1))
		abort();
	c->txq = zoc_vq_create(&c->txc);
	if (!c->txq) {
		c->rc = -errno;
		return;
	}
	c->rc = 0;
	if (a->ops->queue_start(a, 1, c->txq, -1))
		abort();
}

static void quiet_fn(struct call *c)
{
	c->quiet = zoc_vq_broken(c->txq) || !zoc_vq_has_work(c->txq);
}

static void stop_done(void *arg)
{
	sem_post(&((struct call *)arg)->stopped);
}

static void stop_fn(struct call *c)
{
	struct zoc_virtio_dev *a = zoc_vnet_to_virtio(g_a), *b = zoc_vnet_to_virtio(g_b);

	if (c->txq && a->ops->queue_stop(a, 1, NULL, stop_done, c))
		abort();
	if (b->ops->queue_stop(b, 0, NULL, stop_done, c))
		abort();
}

static void pool_fn(struct call *c)
{
	uint32_t s, l;

	zoc_pktpool_available(zoc_pktpool_local(), &s, &l);
	c->rc = s == 256 && l == 32 &&
			zoc_pktpool_available_giant(zoc_pktpool_local()) == ZOC_PKT_GIANT_DEFAULT
		? 0
		: -1;
}

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

static void steer(uint8_t *d)
{
	uint64_t addr;
	uint32_t len, off;

	memcpy(&addr, d, 8);
	memcpy(&len, d + 8, 4);
	off = (uint32_t)(addr % RW_SIZE);
	addr = RW_GPA + off;
	len = len % (RW_SIZE - off + 1);
	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {data, size};
	uint8_t hdr[3];
	bool packed, raw;
	uint16_t qsize;
	unsigned spins = 0;

	take(&in, hdr, 3);
	packed = hdr[0] & 1;
	raw = hdr[0] & 0x20;
	qsize = packed ? (uint16_t)(1 + hdr[1] % MAX_Q) : (uint16_t)(1u << (hdr[1] % 5));
	memset(g_rings, 0, RINGS_SIZE);
	memset(g_rxrings, 0, RINGS_SIZE);

	/* A's TX ring from the input */
	{
		uint8_t *desc = g_rings + (packed ? R_PDESC : R_DESC);

		take(&in, desc, (size_t)qsize * 16);
		for (unsigned i = 0; i < qsize; i++) {
			uint8_t *d = desc + i * 16;

			if (!raw)
				steer(d);
			if (packed && !raw) {
				uint16_t fl;

				memcpy(&fl, d + 14, 2);
				fl &= (uint16_t)~((1u << 7) | (1u << 15));
				if (i < (unsigned)(hdr[2] % (qsize + 1)))
					fl |= 1u << 7; /* available in wrap 1 */
				memcpy(d + 14, &fl, 2);
			}
		}
		if (!packed) {
			uint16_t idx = hdr[2];

			take(&in, g_rings + R_AVAIL + 4, (size_t)qsize * 2);
			memcpy(g_rings + R_AVAIL + 2, &idx, 2);
		}
	}
	take(&in, g_rw, RW_SIZE);

	/* B's RX ring: RX_N buffers of RX_BUF bytes */
	{
		struct {
			uint64_t addr;
			uint32_t len;
			uint16_t flags, next;
		} d;
		uint16_t idx = RX_N;

		for (uint16_t i = 0; i < RX_N; i++) {
			d.addr = RX_GPA + (uint64_t)i * RX_BUF;
			d.len = RX_BUF;
			d.flags = 2; /* WRITE */
			d.next = 0;
			memcpy(g_rxrings + R_DESC + i * 16, &d, 16);
			memcpy(g_rxrings + R_AVAIL + 4 + i * 2, &i, 2);
		}
		memcpy(g_rxrings + R_AVAIL + 2, &idx, 2);
	}

	g_call.fa = ZOC_BIT(VIRTIO_F_VERSION_1) | ZOC_BIT(VIRTIO_NET_F_MAC) |
		    ((hdr[0] & 4) ? ZOC_BIT(VIRTIO_NET_F_CSUM) : 0) |
		    ((hdr[0] & 0x40) ? ZOC_BIT(VIRTIO_NET_F_CSUM) | ZOC_BIT(VIRTIO_NET_F_HOST_TSO4) |
					       ZOC_BIT(VIRTIO_NET_F_HOST_TSO6) |
					       ZOC_BIT(VIRTIO_NET_F_HOST_ECN) |
					       ZOC_BIT(VIRTIO_NET_F_HOST_USO)
				     : 0) |
		    (packed ? ZOC_BIT(VIRTIO_F_RING_PACKED) : 0) |
		    ((hdr[0] & 2) ? ZOC_BIT(VIRTIO_F_RING_INDIRECT_DESC) : 0);
	g_call.fb = ZOC_BIT(VIRTIO_F_VERSION_1) | ZOC_BIT(VIRTIO_NET_F_MAC) |
		    ((hdr[0] & 8) ? ZOC_BIT(VIRTIO_NET_F_MRG_RXBUF) : 0) |
		    ((hdr[0] & 16) ? ZOC_BIT(VIRTIO_NET_F_GUEST_CSUM) : 0) |
		    ((hdr[0] & 0x80) ? ZOC_BIT(VIRTIO_NET_F_GUEST_CSUM) |
					       ZOC_BIT(VIRTIO_NET_F_GUEST_TSO4) |
					       ZOC_BIT(VIRTIO_NET_F_GUEST_TSO6) |
					       ZOC_BIT(VIRTIO_NET_F_GUEST_ECN) |
					       ZOC_BIT(VIRTIO_NET_F_GUEST_USO4) |
					       ZOC_BIT(VIRTIO_NET_F_GUEST_USO6)
				     : 0);
	g_call.txc = (struct zoc_vq_config){
		.size = qsize, .packed = packed, .indirect = hdr[0] & 2,
		.desc = g_rings + (packed ? R_PDESC : R_DESC),
		.driver = g_rings + R_AVAIL, .device = g_rings + R_USED,
		.base = packed ? 0x8000 : 0, .mem = g_mem, .callfd = -1};
	g_call.rxc = (struct zoc_vq_config){
		.size = RX_N, .desc = g_rxrings + R_DESC, .driver = g_rxrings + R_AVAIL,
		.device = g_rxrings + R_USED, .mem = g_mem, .callfd = -1};
	g_call.txq = NULL;
	on_reactor(start_fn);
	if (g_call.txq) {
		do {
			if (++spins > 100000)
				abort(); /* the queue never drains: a hang */
			on_reactor(quiet_fn);
		} while (!g_call.quiet);
	}
	on_reactor(stop_fn);
	for (int k = g_call.txq ? 2 : 1; k > 0; k--)
		while (sem_wait(&g_call.stopped))
			;
	on_reactor(pool_fn);
	if (g_call.rc)
		abort(); /* a packet buffer leaked */
	return 0;
}
