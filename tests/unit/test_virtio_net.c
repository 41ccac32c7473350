/* SPDX-License-Identifier: MIT */
/*
 * test_virtio_net.c - the virtio-net device model (src/virtio/virtio_net.c)
 * on a real switch: one reactor thread (polling), two vNICs on one switch,
 * each with rx0/tx0/ctrl rings played by the driver of vq_driver.c over a
 * malloc'd guest memory registered with zoc_mem_add_region_hva().
 *
 * Cases: frames both ways (split, packed + indirect), hostile TX headers,
 * too-short receive buffers, a mergeable 9000-byte frame, checksum offload
 * both ways, control-queue commands good and bad, link status.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "core/log.h"
#include "core/reactor.h"
#include "net/gso.h"
#include "net/pkt.h"
#include "net/port.h"
#include "net/vswitch.h"
#include "virtio/virtio.h"
#include "virtio/virtio_net.h"
#include "virtio/virtqueue.h"
#include "vq_driver.h"
#include "harness.h"

#define GPA_BASE 0x100000000ull
#define ARENA_SIZE (4u << 20)
#define QSIZE 64
#define MAX_SEGS 16
#define IND_SLOT (MAX_SEGS * 16)
/* per ring r (0 rx, 1 tx, 2 ctrl): 0x20000 bytes of ring + indirect tables */
#define RING_OFF(r) ((uint64_t)(r) * 0x20000)
#define OFF_TXBUF 0x80000  /* 16 KiB per TX slot, 8 slots */
#define OFF_RXBUF 0x100000 /* 16 KiB per RX slot, 64 slots */
#define OFF_CTRL 0x60000
#define WAIT_MS 20000

#define HDR 12u

/* ------------------------------------------------------------------ */
/* reactor harness                                                     */

static pthread_t g_thread;
static struct zoc_vswitch *g_sw;
static unsigned g_owner_b; /* reactor of the second vNIC ("b") */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs fn(arg) on reactor idx and waits for it (and for everything sent to
 * that reactor before). */
static void on_reactor_idx(unsigned idx, void (*fn)(void *), void *arg)
{
	zt_on_reactor(idx, fn, arg, WAIT_MS);
}

static void on_reactor(void (*fn)(void *), void *arg)
{
	on_reactor_idx(0, fn, arg);
}

static void noop(void *arg)
{
	(void)arg;
}

static void sw_create(void *arg)
{
	(void)arg;
	assert_int_equal(zoc_vswitch_create("sw0", NULL, &g_sw), 0);
}

static void sw_destroy(void *arg)
{
	(void)arg;
	assert_int_equal(zoc_vswitch_destroy(g_sw), 0);
}

static int setup_n(unsigned ncores)
{
	static const unsigned cores[2] = {0, 1};
	struct zoc_reactor_opts o = {.cores = cores, .num_cores = ncores, .pin = false};

	zoc_log_set_level(getenv("ZOC_TEST_LOG") ? ZOC_LOG_DEBUG : ZOC_LOG_ERR);
	if (zoc_reactors_init(&o) || zoc_pktpools_init(1024, 64))
		return -1;
	if (pthread_create(&g_thread, NULL, zt_reactor_main, NULL))
		return -1;
	on_reactor(sw_create, NULL);
	g_owner_b = ncores - 1;
	return 0;
}

static int setup(void **state)
{
	(void)state;
	return setup_n(1);
}

/* Two reactors: vNIC b lives on reactor 1, frames cross the switch's rings. */
static int setup_two(void **state)
{
	(void)state;
	return setup_n(2);
}

static int teardown(void **state)
{
	(void)state;
	on_reactor(sw_destroy, NULL);
	zoc_reactors_stop();
	pthread_join(g_thread, NULL);
	zoc_pktpools_fini();
	zoc_reactors_fini();
	return 0;
}

/* ------------------------------------------------------------------ */
/* a vNIC and its driver                                               */

struct nic {
	struct vqd_mem g;
	uint8_t *arena;
	struct vqd q[3]; /* rx0, tx0, ctrl */
	struct zoc_vnet *vn;
	struct zoc_vnet_opts o;
	uint64_t features;
	bool packed, indirect;
	int err;
	sem_t gone;
};

static void *g2h(struct nic *n, uint64_t gpa)
{
	return vqd_mem_ptr(&n->g, gpa);
}

static void nic_create_fn(void *arg)
{
	struct nic *n = arg;

	n->vn = zoc_vnet_create(&n->o);
	n->err = n->vn ? 0 : -errno;
}

struct qstart {
	struct nic *n;
	uint16_t idx;
	struct zoc_vq *vq;
	int rc;
};

static void feat_fn(void *arg)
{
	struct nic *n = arg;
	struct zoc_virtio_dev *d = zoc_vnet_to_virtio(n->vn);

	n->err = d->ops->set_features(d, n->features);
}

static void qstart_fn(void *arg)
{
	struct qstart *s = arg;
	struct zoc_virtio_dev *d = zoc_vnet_to_virtio(s->n->vn);

	s->rc = d->ops->queue_start(d, s->idx, s->vq, -1);
}

struct qrun {
	struct nic *n;
	bool all;
};

static void qrunning_fn(void *arg)
{
	struct qrun *q = arg;
	struct zoc_virtio_dev *d = zoc_vnet_to_virtio(q->n->vn);

	q->all = d->ops->queue_running(d, 0) && d->ops->queue_running(d, 1) &&
		 d->ops->queue_running(d, 2);
}

static void stopped(void *arg)
{
	sem_post(arg);
}

static void nic_stop_fn(void *arg)
{
	struct nic *n = arg;
	struct zoc_virtio_dev *d = zoc_vnet_to_virtio(n->vn);
	uint16_t ctrl = (uint16_t)(d->max_queues - 1);

	for (uint16_t i = 0; i < 2; i++)
		if (d->ops->queue_running(d, i))
			assert_int_equal(d->ops->queue_stop(d, i, NULL, stopped, &n->gone), 0);
	if (d->ops->queue_running(d, ctrl))
		assert_int_equal(d->ops->queue_stop(d, ctrl, NULL, stopped, &n->gone), 0);
}

static void nic_destroy_fn(void *arg)
{
	struct nic *n = arg;

	zoc_vnet_destroy(n->vn, stopped, &n->gone);
}

static void sem_wait_n(sem_t *s, int k)
{
	uint64_t end = now_ms() + WAIT_MS;

	while (k > 0) {
		if (sem_trywait(s) == 0) {
			k--;
			continue;
		}
		if (now_ms() > end)
			fail_msg("timeout");
		usleep(50);
	}
}

/* Features nic_new() leaves out (test_tx_hdr_ignored: no VIRTIO_NET_F_CSUM). */
static uint64_t g_nic_without;

static struct nic *nic_new(const char *name, uint8_t last, uint32_t mtu, uint64_t extra,
			   bool packed)
{
	struct nic *n = calloc(1, sizeof(*n));
	uint64_t f = ZOC_BIT(VIRTIO_F_VERSION_1) | ZOC_BIT(VIRTIO_NET_F_MAC) |
		     ZOC_BIT(VIRTIO_NET_F_STATUS) | ZOC_BIT(VIRTIO_NET_F_CTRL_VQ) |
		     ZOC_BIT(VIRTIO_NET_F_CTRL_RX) | ZOC_BIT(VIRTIO_NET_F_CTRL_MAC_ADDR) |
		     ZOC_BIT(VIRTIO_NET_F_MTU) | ZOC_BIT(VIRTIO_NET_F_CSUM) | extra;

	assert_non_null(n);
	sem_init(&n->gone, 0, 0);
	n->packed = packed;
	n->indirect = packed;
	if (packed)
		f |= ZOC_BIT(VIRTIO_F_RING_PACKED) | ZOC_BIT(VIRTIO_F_RING_INDIRECT_DESC);
	n->features = f & ~g_nic_without;
	vqd_mem_init(&n->g);
	n->arena = vqd_mem_alloc(&n->g, GPA_BASE, ARENA_SIZE);
	vqd_mem_map(&n->g, GPA_BASE, ARENA_SIZE, 0, true);
	for (int r = 0; r < 3; r++) {
		struct vqd_layout lay = {
			.size = QSIZE,
			.packed = packed,
			.desc = GPA_BASE + RING_OFF(r),
			.driver = GPA_BASE + RING_OFF(r) + 0x4000,
			.device = GPA_BASE + RING_OFF(r) + 0x8000,
			.ind = GPA_BASE + RING_OFF(r) + 0xc000,
			.ind_slot = IND_SLOT,
			.max_segs = MAX_SEGS,
		};
		vqd_init(&n->q[r], &n->g, &lay);
	}
	n->o.name = name;
	n->o.sw = g_sw;
	n->o.has_mac = true;
	memcpy(n->o.mac, (uint8_t[6]){0x02, 0, 0, 0, 0, last}, 6);
	n->o.mtu = mtu;
	n->o.owner = !strcmp(name, "b") ? g_owner_b : 0;
	on_reactor(nic_create_fn, n);
	assert_int_equal(n->err, 0);
	on_reactor(feat_fn, n);
	assert_int_equal(n->err, 0);
	for (uint16_t r = 0; r < 3; r++) {
		struct zoc_vq_config c = {.indirect = n->indirect, .callfd = -1,
					  .base = packed ? 0x8000 : 0};
		struct qstart s = {.n = n, .idx = r == 2 ? 2 : r};

		vqd_vq_config(&n->q[r], &c);
		s.vq = zoc_vq_create(&c);
		assert_non_null(s.vq);
		on_reactor(qstart_fn, &s);
		assert_int_equal(s.rc, 0);
	}
	/* Queues start on their owner reactor by a message sent from reactor
	 * 0 during queue_start; queue_running() is the control plane's view
	 * and turns true at once. A frame that reaches the owner before the
	 * start message has run finds no receive queue and is dropped
	 * (no_rxbuf), as on a NIC that is not up yet: wait for the owner to
	 * have run everything sent to it so far. */
	{
		struct qrun q = {.n = n};

		on_reactor(qrunning_fn, &q);
		assert_true(q.all);
		on_reactor_idx(n->o.owner, noop, NULL);
	}
	return n;
}

static void nic_free(struct nic *n)
{
	on_reactor(nic_stop_fn, n);
	sem_wait_n(&n->gone, 3);
	on_reactor(nic_destroy_fn, n);
	sem_wait_n(&n->gone, 1);
	for (int r = 0; r < 3; r++)
		vqd_fini(&n->q[r]);
	vqd_mem_fini(&n->g);
	sem_destroy(&n->gone);
	free(n);
}

static bool get_used(struct nic *n, int r, uint16_t *id, uint32_t *len)
{
	return vqd_get_used(&n->q[r], id, len);
}

static void wait_used(struct nic *n, int r, uint16_t *id, uint32_t *len)
{
	uint64_t end = now_ms() + WAIT_MS;

	while (!get_used(n, r, id, len)) {
		if (now_ms() > end)
			fail_msg("no completion on ring %d", r);
		usleep(20);
	}
}

/* Posts one receive buffer of len bytes in RX slot `slot`. */
static int post_rx(struct nic *n, unsigned slot, uint32_t len)
{
	struct vqd_seg s = {GPA_BASE + OFF_RXBUF + (uint64_t)slot * 0x4000, len, true};

	memset(g2h(n, s.gpa), 0xee, len);
	return vqd_add(&n->q[0], &s, 1, false);
}

static uint8_t *rx_buf(struct nic *n, unsigned slot)
{
	return g2h(n, GPA_BASE + OFF_RXBUF + (uint64_t)slot * 0x4000);
}

/* Builds an Ethernet frame from src to dst, payload pattern by seed. */
static void make_frame(uint8_t *f, uint32_t len, const uint8_t *dst, const uint8_t *src,
		       uint8_t seed)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = 0x08;
	f[13] = 0x00;
	for (uint32_t i = 14; i < len; i++)
		f[i] = (uint8_t)(i * 13 + seed);
}

/* Sends header + frame from TX slot 0 in nseg segments; waits for the chain
 * to come back. */
static void send_raw(struct nic *n, const void *hdr, uint32_t hlen, const uint8_t *frame,
		     uint32_t flen, int nseg)
{
	uint64_t base = GPA_BASE + OFF_TXBUF;
	uint8_t *p = g2h(n, base);
	struct vqd_seg s[MAX_SEGS];
	uint32_t total = hlen + flen, off = 0;
	uint16_t id;
	uint32_t len;
	int want;

	assert_true(total <= 0x10000);
	memcpy(p, hdr, hlen);
	if (flen)
		memcpy(p + hlen, frame, flen);
	if (nseg < 1)
		nseg = 1;
	for (int i = 0; i < nseg; i++) {
		uint32_t k = i == nseg - 1 ? total - off : total / (uint32_t)nseg;

		s[i] = (struct vqd_seg){base + off, k, false};
		off += k;
	}
	want = vqd_add(&n->q[1], s, nseg, n->indirect && nseg > 1);
	assert_true(want >= 0);
	wait_used(n, 1, &id, &len);
	assert_int_equal(id, want);
	assert_int_equal(len, 0);
}

static void send_frame(struct nic *n, const uint8_t *frame, uint32_t flen, int nseg)
{
	struct virtio_net_hdr h = {0};

	send_raw(n, &h, HDR, frame, flen, nseg);
}

static void expect_nothing(struct nic *n)
{
	uint16_t id;
	uint32_t len;

	usleep(20000);
	assert_false(get_used(n, 0, &id, &len));
}

struct stats_req {
	struct nic *n;
	json_t *j;
};

static void stats_fn(void *arg)
{
	struct stats_req *r = arg;

	r->j = zoc_vnet_stats(r->n->vn);
}

/* Sum of a drop counter over the queues. */
static long drops(struct nic *n, const char *why)
{
	struct stats_req r = {.n = n};
	json_t *q;
	size_t i;
	long sum = 0;

	on_reactor(stats_fn, &r);
	json_array_foreach(json_object_get(r.j, "queues"), i, q)
		sum += (long)json_integer_value(json_object_get(json_object_get(q, "drops"), why));
	json_decref(r.j);
	return sum;
}

/* Sends a control command; returns the ack byte. */
static uint8_t ctrl(struct nic *n, uint8_t cls, uint8_t cmd, const void *data, uint32_t dlen)
{
	uint64_t base = GPA_BASE + OFF_CTRL;
	uint8_t *p = g2h(n, base);
	struct vqd_seg s[2] = {{base, 2 + dlen, false}, {base + 0x1000, 1, true}};
	uint16_t id;
	uint32_t len;
	int want;

	p[0] = cls;
	p[1] = cmd;
	if (dlen)
		memcpy(p + 2, data, dlen);
	p[0x1000] = 0xee;
	want = vqd_add(&n->q[2], s, 2, false);
	assert_true(want >= 0);
	wait_used(n, 2, &id, &len);
	assert_int_equal(id, want);
	return p[0x1000];
}

/* ------------------------------------------------------------------ */
/* tests                                                               */

static void exchange(bool packed)
{
	struct nic *a = nic_new("a", 1, 1500, ZOC_BIT(VIRTIO_NET_F_MRG_RXBUF), packed);
	struct nic *b = nic_new("b", 2, 1500, ZOC_BIT(VIRTIO_NET_F_MRG_RXBUF), packed);
	uint8_t f[1514];
	uint16_t id;
	uint32_t len;

	for (int round = 0; round < 20; round++) {
		struct nic *src = round & 1 ? b : a, *dst = round & 1 ? a : b;
		uint32_t flen = round % 3 == 0 ? 60 : round % 3 == 1 ? 1514 : 342;
		int want = post_rx(dst, 0, 2048);
		struct virtio_net_hdr h, old = {.num_buffers = 1};

		/* The device stores only the header bytes that differ from
		 * what the buffer holds: left from an earlier frame may be the
		 * same header, one differing in num_buffers or in the first
		 * eight bytes only, or anything (0xee). */
		switch (round % 4) {
		case 1:
			memcpy(rx_buf(dst, 0), &old, HDR);
			break;
		case 2:
			old.num_buffers = 7;
			memcpy(rx_buf(dst, 0), &old, HDR);
			break;
		case 3:
			old.gso_size = 0x1234;
			memcpy(rx_buf(dst, 0), &old, HDR);
			break;
		}
		make_frame(f, flen, dst->o.mac, src->o.mac, (uint8_t)round);
		send_frame(src, f, flen, 1 + round % 3);
		wait_used(dst, 0, &id, &len);
		assert_int_equal(id, want);
		assert_int_equal(len, HDR + flen);
		memcpy(&h, rx_buf(dst, 0), HDR);
		old = (struct virtio_net_hdr){.num_buffers = 1};
		assert_memory_equal(&h, &old, HDR);
		assert_memory_equal(rx_buf(dst, 0) + HDR, f, flen);
	}
	/* No receive buffer: dropped and counted, the sender's chain returns. */
	make_frame(f, 100, b->o.mac, a->o.mac, 9);
	send_frame(a, f, 100, 1);
	usleep(10000);
	assert_true(drops(b, "no_rxbuf") >= 1);
	nic_free(a);
	nic_free(b);
}

static void test_exchange_split(void **state)
{
	(void)state;
	exchange(false);
}

static void test_exchange_packed(void **state)
{
	(void)state;
	exchange(true);
}

static void test_malformed_tx(void **state)
{
	struct nic *a = nic_new("a", 1, 1500, 0, false);
	struct nic *b = nic_new("b", 2, 1500, 0, false);
	uint8_t f[1600];
	struct virtio_net_hdr h = {0};
	uint16_t id;
	uint32_t len;

	(void)state;
	make_frame(f, sizeof(f), b->o.mac, a->o.mac, 1);
	post_rx(b, 0, 2048);
	/* short header */
	send_raw(a, &h, 8, NULL, 0, 1);
	assert_int_equal(drops(a, "short_hdr"), 1);
	/* zero-length frame */
	send_raw(a, &h, HDR, NULL, 0, 1);
	assert_int_equal(drops(a, "zero_len"), 1);
	/* GSO types not negotiated (a has no HOST_TSO/USO) or unknown */
	h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h.gso_type = 1;
	h.gso_size = 1448;
	send_raw(a, &h, HDR, f, 200, 1);
	h.gso_type = 0x42;
	send_raw(a, &h, HDR, f, 200, 2);
	assert_int_equal(drops(a, "bad_gso"), 2);
	assert_int_equal(drops(a, "bad_hdr"), 0);
	h = (struct virtio_net_hdr){0};
	/* unknown flags; csum offsets beyond the frame */
	h.flags = 0x80;
	send_raw(a, &h, HDR, f, 200, 1);
	h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h.csum_start = 190;
	h.csum_offset = 16;
	send_raw(a, &h, HDR, f, 200, 1);
	h.csum_start = 0xffff;
	h.csum_offset = 0xffff;
	send_raw(a, &h, HDR, f, 200, 1);
	assert_int_equal(drops(a, "bad_hdr"), 3);
	/* over the MTU (1500 + 14 + tags) */
	h = (struct virtio_net_hdr){0};
	send_raw(a, &h, HDR, f, 1600, 3);
	assert_int_equal(drops(a, "oversize"), 1);
	expect_nothing(b);
	/* a good frame still passes */
	send_frame(a, f, 200, 1);
	wait_used(b, 0, &id, &len);
	assert_int_equal(len, HDR + 200);
	nic_free(a);
	nic_free(b);
}

/* Without VIRTIO_NET_F_CSUM no transmit offload is negotiated and the device
 * ignores the header (not read at all): whatever the driver leaves in it,
 * the frame goes out as a plain frame, in one buffer or over several. */
static void test_tx_hdr_ignored(void **state)
{
	struct nic *a, *b;
	struct virtio_net_hdr h = {.flags = 0xff, .gso_type = 0x42, .hdr_len = 0xffff,
				   .gso_size = 0xffff, .csum_start = 0xffff,
				   .csum_offset = 0xffff, .num_buffers = 0xffff};
	uint8_t f[300];
	uint16_t id;
	uint32_t len;
	int want;

	(void)state;
	g_nic_without = ZOC_BIT(VIRTIO_NET_F_CSUM);
	a = nic_new("a", 1, 1500, 0, false);
	g_nic_without = 0;
	b = nic_new("b", 2, 1500, 0, false);
	make_frame(f, sizeof(f), b->o.mac, a->o.mac, 5);
	for (int nseg = 1; nseg <= 3; nseg++) {
		struct virtio_net_hdr r;

		want = post_rx(b, 0, 2048);
		send_raw(a, &h, HDR, f, sizeof(f), nseg);
		wait_used(b, 0, &id, &len);
		assert_int_equal(id, want);
		assert_int_equal(len, HDR + sizeof(f));
		assert_memory_equal(rx_buf(b, 0) + HDR, f, sizeof(f));
		memcpy(&r, rx_buf(b, 0), sizeof(r));
		assert_int_equal(r.flags, 0);
		assert_int_equal(r.gso_type, VIRTIO_NET_HDR_GSO_NONE);
	}
	assert_int_equal(drops(a, "bad_hdr"), 0);
	assert_int_equal(drops(a, "bad_gso"), 0);
	/* the frame's own checks still apply */
	send_raw(a, &h, HDR, NULL, 0, 1);
	assert_int_equal(drops(a, "zero_len"), 1);
	send_raw(a, &h, 8, NULL, 0, 1);
	assert_int_equal(drops(a, "short_hdr"), 1);
	expect_nothing(b);
	nic_free(a);
	nic_free(b);
}

static void test_short_rx(void **state)
{
	struct nic *a = nic_new("a", 1, 1500, 0, false);
	struct nic *b = nic_new("b", 2, 1500, 0, false);
	uint8_t f[600];
	uint16_t id;
	uint32_t len;
	int want;

	(void)state;
	make_frame(f, sizeof(f), b->o.mac, a->o.mac, 3);
	/* without MRG_RXBUF a frame needs one buffer of header + frame */
	want = post_rx(b, 0, 100);
	send_frame(a, f, sizeof(f), 1);
	wait_used(b, 0, &id, &len);
	assert_int_equal(id, want);
	assert_int_equal(len, 0);
	assert_int_equal(drops(b, "short_rxbuf"), 1);
	/* a buffer smaller than the header */
	want = post_rx(b, 0, 4);
	send_frame(a, f, 60, 1);
	wait_used(b, 0, &id, &len);
	assert_int_equal(len, 0);
	assert_int_equal(drops(b, "short_rxbuf"), 2);
	/* a big enough one works */
	want = post_rx(b, 1, HDR + sizeof(f));
	send_frame(a, f, sizeof(f), 1);
	wait_used(b, 0, &id, &len);
	assert_int_equal(id, want);
	assert_int_equal(len, HDR + sizeof(f));
	assert_memory_equal(rx_buf(b, 1) + HDR, f, sizeof(f));
	nic_free(a);
	nic_free(b);
}

static void test_mergeable_jumbo(void **state)
{
	struct nic *a = nic_new("a", 1, 9000, ZOC_BIT(VIRTIO_NET_F_MRG_RXBUF), false);
	struct nic *b = nic_new("b", 2, 9000, ZOC_BIT(VIRTIO_NET_F_MRG_RXBUF), true);
	static uint8_t f[9014], got[9014];
	struct virtio_net_hdr h;
	uint32_t off = 0;

	(void)state;
	make_frame(f, sizeof(f), b->o.mac, a->o.mac, 7);
	for (unsigned i = 0; i < 6; i++)
		post_rx(b, i, 2048);
	send_frame(a, f, sizeof(f), 7);
	for (unsigned i = 0; i < 5; i++) {
		uint16_t id;
		uint32_t len;
		uint8_t *p = rx_buf(b, i);

		wait_used(b, 0, &id, &len);
		assert_int_equal(id, i); /* packed ids are given out in order */
		if (i == 0) {
			memcpy(&h, p, HDR);
			assert_int_equal(h.num_buffers, 5);
			p += HDR;
			len -= HDR;
		}
		assert_true(off + len <= sizeof(got));
		memcpy(got + off, p, len);
		off += len;
	}
	assert_int_equal(off, sizeof(f));
	assert_memory_equal(got, f, sizeof(f));
	/* mergeable buffers that cannot hold it: counted, buffers returned */
	post_rx(b, 6, 2048);
	send_frame(a, f, sizeof(f), 3);
	usleep(20000);
	assert_int_equal(drops(b, "short_rxbuf"), 1);
	nic_free(a);
	nic_free(b);
}

/* Several frames put on the TX ring at once, so that the switch hands the
 * receiver a burst: small frames, frames that need two mergeable buffers,
 * one flooded (unknown destination; the new device is promiscuous); all
 * arrive whole and in order. */
static void test_mixed_burst(void **state)
{
	struct nic *a = nic_new("a", 1, 9000, 0, false);
	struct nic *b = nic_new("b", 2, 9000, ZOC_BIT(VIRTIO_NET_F_MRG_RXBUF), false);
	static const uint32_t lens[] = {60, 3000, 60, 100, 1400, 3000, 60, 1510};
	static const uint8_t other[6] = {0x02, 0, 0, 0, 0, 0x77};
	static uint8_t f[8][3000];
	const unsigned nf = sizeof(lens) / sizeof(lens[0]), flooded = 3;
	uint8_t *tx = g2h(a, GPA_BASE + OFF_TXBUF);
	unsigned slot = 0;

	(void)state;
	for (unsigned i = 0; i < 16; i++)
		post_rx(b, i, 1536);
	for (unsigned i = 0; i < nf; i++) {
		struct virtio_net_hdr h = {0};
		struct vqd_seg sg = {GPA_BASE + OFF_TXBUF + (uint64_t)i * 0x4000 / 2,
				     HDR + lens[i], false};

		make_frame(f[i], lens[i], i == flooded ? other : b->o.mac, a->o.mac,
			   (uint8_t)(i + 1));
		memcpy(tx + i * 0x2000, &h, HDR);
		memcpy(tx + i * 0x2000 + HDR, f[i], lens[i]);
		assert_true(vqd_add(&a->q[1], &sg, 1, false) >= 0);
	}
	for (unsigned i = 0; i < nf; i++) {
		uint16_t id;
		uint32_t len;

		wait_used(a, 1, &id, &len);
	}
	for (unsigned i = 0; i < nf; i++) {
		struct virtio_net_hdr h;
		uint8_t got[3000];
		uint32_t off = 0, need;

		need = lens[i];
		for (unsigned k = 0, nb = 1; k < nb; k++, slot++) {
			uint16_t id;
			uint32_t len;
			uint8_t *p = rx_buf(b, slot);

			wait_used(b, 0, &id, &len);
			assert_int_equal(id, slot);
			if (k == 0) {
				memcpy(&h, p, HDR);
				nb = h.num_buffers;
				assert_int_equal(nb, (HDR + need + 1535) / 1536);
				p += HDR;
				len -= HDR;
			}
			assert_true(off + len <= need);
			memcpy(got + off, p, len);
			off += len;
		}
		assert_int_equal(off, need);
		assert_memory_equal(got, f[i], need);
	}
	nic_free(a);
	nic_free(b);
}

/* A receive buffer too short for its frame in the middle of a burst is
 * returned empty in its place: used entries stay in ring order (IN_ORDER
 * drivers such as DPDK's match them to buffers by position). */
static void test_burst_short_buffer_in_order(void **state)
{
	struct nic *a = nic_new("a", 1, 1500, 0, false);
	struct nic *b = nic_new("b", 2, 1500, 0, false);
	static const uint32_t bufs[] = {1536, 1536, 40, 1536, 1536};
	static uint8_t f[4][60];
	uint8_t *tx = g2h(a, GPA_BASE + OFF_TXBUF);
	const unsigned nf = 4;

	(void)state;
	for (unsigned i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
		post_rx(b, i, bufs[i]);
	for (unsigned i = 0; i < nf; i++) {
		struct virtio_net_hdr h = {0};
		struct vqd_seg sg = {GPA_BASE + OFF_TXBUF + (uint64_t)i * 0x1000, HDR + 60, false};

		make_frame(f[i], 60, b->o.mac, a->o.mac, (uint8_t)(i + 1));
		memcpy(tx + i * 0x1000, &h, HDR);
		memcpy(tx + i * 0x1000 + HDR, f[i], 60);
		assert_true(vqd_add(&a->q[1], &sg, 1, false) >= 0);
	}
	for (unsigned i = 0; i < nf; i++) {
		uint16_t id;
		uint32_t len;

		wait_used(a, 1, &id, &len);
	}
	/* slots 0, 1 carry frames 0, 1; slot 2 comes back empty (frame 2
	 * dropped), slot 3 carries frame 3 */
	for (unsigned slot = 0; slot < nf; slot++) {
		uint16_t id;
		uint32_t len;

		wait_used(b, 0, &id, &len);
		assert_int_equal(id, slot);
		if (slot == 2) {
			assert_int_equal(len, 0);
			continue;
		}
		assert_int_equal(len, HDR + 60);
		assert_memory_equal(rx_buf(b, slot) + HDR, f[slot], 60);
	}
	assert_int_equal(drops(b, "short_rxbuf"), 1);
	nic_free(a);
	nic_free(b);
}

static uint16_t ip_csum(const uint8_t *p, uint32_t len)
{
	uint32_t sum = 0;

	for (uint32_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

static void test_csum(void **state)
{
	struct nic *a = nic_new("a", 1, 1500, 0, false);
	struct nic *b = nic_new("b", 2, 1500, 0, false);
	struct nic *c = nic_new("c", 3, 1500, ZOC_BIT(VIRTIO_NET_F_GUEST_CSUM), false);
	uint8_t f[300];
	struct virtio_net_hdr h = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
				   .csum_start = 34, .csum_offset = 16};
	struct virtio_net_hdr r;
	uint16_t id;
	uint32_t len;

	(void)state;
	/* b has no GUEST_CSUM: the device fills the checksum in */
	make_frame(f, sizeof(f), b->o.mac, a->o.mac, 5);
	post_rx(b, 0, 2048);
	send_raw(a, &h, HDR, f, sizeof(f), 1);
	wait_used(b, 0, &id, &len);
	memcpy(&r, rx_buf(b, 0), HDR);
	assert_int_equal(r.flags, 0);
	{
		/* the seed in the field (the pseudo-header sum) is included */
		uint16_t want = (uint16_t)~ip_csum(f + 34, sizeof(f) - 34);
		uint8_t *g = rx_buf(b, 0) + HDR;

		assert_int_equal(g[50], want >> 8);
		assert_int_equal(g[51], want & 0xff);
		assert_memory_equal(g, f, 50);
		assert_memory_equal(g + 52, f + 52, sizeof(f) - 52);
	}
	/* c negotiated GUEST_CSUM: the flag passes through */
	make_frame(f, sizeof(f), c->o.mac, a->o.mac, 5);
	post_rx(c, 0, 2048);
	send_raw(a, &h, HDR, f, sizeof(f), 1);
	wait_used(c, 0, &id, &len);
	memcpy(&r, rx_buf(c, 0), HDR);
	assert_int_equal(r.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
	assert_int_equal(r.csum_start, 34);
	assert_int_equal(r.csum_offset, 16);
	assert_memory_equal(rx_buf(c, 0) + HDR, f, sizeof(f));
	nic_free(a);
	nic_free(b);
	nic_free(c);
}

/* A TCP/IPv4 super-frame (Ethernet + 20 + 20 + payload), PSH|ACK, seq 1000;
 * the checksum field holds a seed the device must not trust. */
static uint32_t make_tcp4(uint8_t *f, uint32_t payload, const uint8_t *dst, const uint8_t *src)
{
	uint32_t tl = 40 + payload;

	make_frame(f, 54 + payload, dst, src, 9);
	memset(f + 14, 0, 40);
	f[14] = 0x45;
	f[16] = (uint8_t)(tl >> 8);
	f[17] = (uint8_t)tl;
	f[18] = 0x12;
	f[20] = 0x40;
	f[22] = 64;
	f[23] = 6;
	memcpy(f + 26, (uint8_t[8]){10, 0, 0, 1, 10, 0, 0, 2}, 8);
	f[34] = 0x30;
	f[36] = 0x14;
	f[41] = 0xe8; /* seq 1000 */
	f[40] = 0x03;
	f[46] = 0x50;
	f[47] = 0x18;
	f[50] = 0xab;
	return 54 + payload;
}

/* A segment as the wire wants it: IPv4 header and TCP checksums valid. */
static void check_tcp4_segment(const uint8_t *g, uint32_t len, uint32_t seq, uint32_t payload)
{
	uint8_t ph[4] = {0, 6, (uint8_t)((len - 34) >> 8), (uint8_t)(len - 34)};
	uint32_t sum;

	assert_int_equal(len, 54 + payload);
	assert_int_equal(g[16] << 8 | g[17], 40 + payload);
	assert_int_equal(ip_csum(g + 14, 20), 0xffff);
	assert_int_equal((uint32_t)g[38] << 24 | (uint32_t)g[39] << 16 | (uint32_t)g[40] << 8 | g[41],
			 seq);
	sum = ip_csum(g + 26, 8);
	sum += ip_csum(ph, 4);
	sum += ip_csum(g + 34, len - 34);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	assert_int_equal(sum, 0xffff);
}

#define GSO_HOST                                                                     \
	(ZOC_BIT(VIRTIO_NET_F_HOST_TSO4) | ZOC_BIT(VIRTIO_NET_F_HOST_TSO6) |          \
	 ZOC_BIT(VIRTIO_NET_F_HOST_ECN) | ZOC_BIT(VIRTIO_NET_F_HOST_USO) |            \
	 ZOC_BIT(VIRTIO_NET_F_MRG_RXBUF))
#define GSO_GUEST                                                                    \
	(ZOC_BIT(VIRTIO_NET_F_GUEST_CSUM) | ZOC_BIT(VIRTIO_NET_F_GUEST_TSO4) |        \
	 ZOC_BIT(VIRTIO_NET_F_GUEST_TSO6) | ZOC_BIT(VIRTIO_NET_F_GUEST_ECN) |         \
	 ZOC_BIT(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS) | ZOC_BIT(VIRTIO_NET_F_MRG_RXBUF))

/* TSO from a: b (no guest offloads) gets MSS-sized segments with valid
 * checksums, c (GUEST_TSO4) the super-frame whole with a GSO header. */
static void test_tso(void **state)
{
	struct nic *a = nic_new("a", 1, 1500, GSO_HOST, false);
	struct nic *b = nic_new("b", 2, 1500, ZOC_BIT(VIRTIO_NET_F_MRG_RXBUF), false);
	struct nic *c = nic_new("c", 3, 1500, GSO_GUEST, false);
	static uint8_t f[4000], got[4000];
	struct virtio_net_hdr h = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
				   .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = 1448,
				   .hdr_len = 54, .csum_start = 34, .csum_offset = 16};
	struct virtio_net_hdr r;
	uint32_t flen, len, off = 0;
	uint16_t id;
	uint64_t offl;
	int ids[6];

	(void)state;
	flen = make_tcp4(f, 3000, b->o.mac, a->o.mac);
	for (unsigned i = 0; i < 3; i++)
		ids[i] = post_rx(b, i, 2048);
	send_raw(a, &h, HDR, f, flen, 3);
	for (unsigned i = 0; i < 3; i++) {
		uint32_t seg = i < 2 ? 1448 : 104;
		uint8_t *g = rx_buf(b, i);

		wait_used(b, 0, &id, &len);
		assert_int_equal(id, ids[i]);
		memcpy(&r, g, HDR);
		assert_int_equal(r.gso_type, 0);
		assert_int_equal(r.flags, 0); /* no GUEST_CSUM: nothing to say */
		assert_int_equal(r.num_buffers, 1);
		check_tcp4_segment(g + HDR, len - HDR, 1000 + 1448 * i, seg);
		assert_int_equal(g[HDR + 47], i < 2 ? 0x10 : 0x18); /* PSH on the last */
		assert_memory_equal(g + HDR + 54, f + 54 + 1448 * i, seg);
	}
	/* c takes it whole: two mergeable buffers, one GSO header */
	make_tcp4(f, 3000, c->o.mac, a->o.mac);
	for (unsigned i = 0; i < 3; i++)
		ids[i] = post_rx(c, i, 2048);
	send_raw(a, &h, HDR, f, flen, 1);
	for (unsigned i = 0; i < 2; i++) {
		uint8_t *g = rx_buf(c, i);

		wait_used(c, 0, &id, &len);
		assert_int_equal(id, ids[i]);
		if (i == 0) {
			memcpy(&r, g, HDR);
			g += HDR;
			len -= HDR;
		}
		memcpy(got + off, g, len);
		off += len;
	}
	assert_int_equal(r.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
	assert_int_equal(r.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
	assert_int_equal(r.gso_size, 1448);
	assert_int_equal(r.hdr_len, 54);
	assert_int_equal(r.csum_start, 34);
	assert_int_equal(r.csum_offset, 16);
	assert_int_equal(r.num_buffers, 2);
	assert_int_equal(off, flen);
	assert_memory_equal(got, f, flen);
	/* c switches TSO off (CTRL_GUEST_OFFLOADS): now segmented, DATA_VALID */
	offl = ZOC_BIT(VIRTIO_NET_F_GUEST_CSUM);
	assert_int_equal(ctrl(c, VIRTIO_NET_CTRL_GUEST_OFFLOADS,
			      VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET, &offl, 8),
			 VIRTIO_NET_OK);
	for (unsigned i = 3; i < 6; i++)
		ids[i] = post_rx(c, i, 2048);
	send_raw(a, &h, HDR, f, flen, 2);
	for (unsigned i = 0; i < 3; i++) {
		uint8_t *g;
		unsigned slot = 2 + i; /* slot 2 was left over */

		wait_used(c, 0, &id, &len);
		assert_int_equal(id, ids[slot]);
		g = rx_buf(c, slot);
		memcpy(&r, g, HDR);
		assert_int_equal(r.gso_type, 0);
		assert_int_equal(r.flags, VIRTIO_NET_HDR_F_DATA_VALID);
		check_tcp4_segment(g + HDR, len - HDR, 1000 + 1448 * i, i < 2 ? 1448 : 104);
	}
	/* offload sets that break the rules or were not negotiated */
	offl = ZOC_BIT(VIRTIO_NET_F_GUEST_TSO4);
	assert_int_equal(ctrl(c, VIRTIO_NET_CTRL_GUEST_OFFLOADS,
			      VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET, &offl, 8),
			 VIRTIO_NET_ERR);
	offl = ZOC_BIT(VIRTIO_NET_F_GUEST_CSUM) | ZOC_BIT(VIRTIO_NET_F_GUEST_USO4);
	assert_int_equal(ctrl(c, VIRTIO_NET_CTRL_GUEST_OFFLOADS,
			      VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET, &offl, 8),
			 VIRTIO_NET_ERR);
	assert_int_equal(ctrl(c, VIRTIO_NET_CTRL_GUEST_OFFLOADS,
			      VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET, &offl, 4),
			 VIRTIO_NET_ERR);
	assert_int_equal(ctrl(b, VIRTIO_NET_CTRL_GUEST_OFFLOADS,
			      VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET, &offl, 8),
			 VIRTIO_NET_ERR); /* b did not negotiate the command */
	nic_free(a);
	nic_free(b);
	nic_free(c);
}

/* A UDP/IPv6 super-frame (Ethernet + 40 + 8 + payload). */
static uint32_t make_udp6(uint8_t *f, uint32_t payload, const uint8_t *dst, const uint8_t *src)
{
	make_frame(f, 62 + payload, dst, src, 4);
	f[12] = 0x86;
	f[13] = 0xdd;
	memset(f + 14, 0, 48);
	f[14] = 0x60;
	f[18] = (uint8_t)((8 + payload) >> 8);
	f[19] = (uint8_t)(8 + payload);
	f[20] = 17;
	f[21] = 64;
	for (int i = 0; i < 32; i++)
		f[22 + i] = (uint8_t)(0xfd + i);
	f[54] = 0x13;
	f[56] = 0x14;
	f[58] = 0xff; /* a length the device must rewrite per segment */
	return 62 + payload;
}

/* USO: a UDP/IPv6 super-frame becomes datagrams of gso_size for a vNIC
 * without GUEST_USO6 and stays whole for one with it. */
static void test_uso(void **state)
{
	struct nic *a = nic_new("a", 1, 1500, GSO_HOST, false);
	struct nic *b = nic_new("b", 2, 1500, ZOC_BIT(VIRTIO_NET_F_MRG_RXBUF), false);
	struct nic *c = nic_new("c", 3, 1500, GSO_GUEST | ZOC_BIT(VIRTIO_NET_F_GUEST_USO6), false);
	static uint8_t f[3000];
	struct virtio_net_hdr h = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
				   .gso_type = VIRTIO_NET_HDR_GSO_UDP_L4, .gso_size = 1000,
				   .hdr_len = 62, .csum_start = 54, .csum_offset = 6};
	struct virtio_net_hdr r;
	uint32_t flen, len;
	uint16_t id;
	int ids[3];

	(void)state;
	flen = make_udp6(f, 2500, b->o.mac, a->o.mac);
	for (unsigned i = 0; i < 3; i++)
		ids[i] = post_rx(b, i, 2048);
	send_raw(a, &h, HDR, f, flen, 2);
	for (unsigned i = 0; i < 3; i++) {
		uint32_t seg = i < 2 ? 1000 : 500, sum;
		uint8_t *g = rx_buf(b, i) + HDR;
		uint8_t ph[8] = {0, 0, (uint8_t)((8 + seg) >> 8), (uint8_t)(8 + seg), 0, 0, 0, 17};

		wait_used(b, 0, &id, &len);
		assert_int_equal(id, ids[i]);
		assert_int_equal(len, HDR + 62 + seg);
		assert_int_equal(g[18] << 8 | g[19], 8 + seg); /* IPv6 payload length */
		assert_int_equal(g[58] << 8 | g[59], 8 + seg); /* UDP length */
		sum = ip_csum(g + 22, 32);
		sum += ip_csum(ph, 8);
		sum += ip_csum(g + 54, 8 + seg);
		while (sum >> 16)
			sum = (sum & 0xffff) + (sum >> 16);
		assert_int_equal(sum, 0xffff);
		assert_memory_equal(g + 62, f + 62 + 1000 * i, seg);
	}
	make_udp6(f, 2500, c->o.mac, a->o.mac);
	for (unsigned i = 0; i < 2; i++)
		ids[i] = post_rx(c, i, 2048);
	send_raw(a, &h, HDR, f, flen, 1);
	wait_used(c, 0, &id, &len);
	assert_int_equal(id, ids[0]);
	memcpy(&r, rx_buf(c, 0), HDR);
	assert_int_equal(r.gso_type, VIRTIO_NET_HDR_GSO_UDP_L4);
	assert_int_equal(r.gso_size, 1000);
	assert_int_equal(r.hdr_len, 62);
	assert_int_equal(r.csum_start, 54);
	assert_int_equal(r.csum_offset, 6);
	assert_int_equal(r.num_buffers, 2);
	assert_memory_equal(rx_buf(c, 0) + HDR, f, 2048 - HDR);
	nic_free(a);
	nic_free(b);
	nic_free(c);
}

/* A super-frame for a GUEST_TSO guest whose ring holds too few mergeable
 * buffers: the buffers there get whole segments instead of nothing. */
static void test_tso_partial(void **state)
{
	struct nic *a = nic_new("a", 1, 1500, GSO_HOST, false);
	struct nic *c = nic_new("c", 3, 1500, GSO_GUEST, false);
	static uint8_t f[4000];
	struct virtio_net_hdr h = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
				   .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = 1448,
				   .hdr_len = 54, .csum_start = 34, .csum_offset = 16};
	struct virtio_net_hdr r;
	uint32_t flen, len;
	uint16_t id;
	int want;

	(void)state;
	flen = make_tcp4(f, 3000, c->o.mac, a->o.mac);
	/* one 2 KiB buffer: the first segment */
	want = post_rx(c, 0, 2048);
	send_raw(a, &h, HDR, f, flen, 1);
	wait_used(c, 0, &id, &len);
	assert_int_equal(id, want);
	assert_int_equal(len, HDR + 54 + 1448);
	memcpy(&r, rx_buf(c, 0), HDR);
	assert_int_equal(r.gso_type, 0);
	assert_int_equal(r.flags, VIRTIO_NET_HDR_F_DATA_VALID);
	assert_int_equal(r.num_buffers, 1);
	check_tcp4_segment(rx_buf(c, 0) + HDR, len - HDR, 1000, 1448);
	assert_int_equal(drops(c, "short_rxbuf"), 1);
	/* two 1 KiB buffers: one segment across both */
	post_rx(c, 1, 1024);
	post_rx(c, 2, 1024);
	send_raw(a, &h, HDR, f, flen, 1);
	wait_used(c, 0, &id, &len);
	assert_int_equal(len, 1024);
	memcpy(&r, rx_buf(c, 1), HDR);
	assert_int_equal(r.num_buffers, 2);
	wait_used(c, 0, &id, &len);
	assert_int_equal(len, HDR + 54 + 1448 - 1024);
	assert_int_equal(drops(c, "short_rxbuf"), 2);
	nic_free(a);
	nic_free(c);
}

/* Malformed GSO headers from a driver that negotiated TSO/USO. */
static void test_tso_malformed(void **state)
{
	struct nic *a = nic_new("a", 1, 1500, GSO_HOST, false);
	struct nic *b = nic_new("b", 2, 1500, GSO_GUEST, false);
	static uint8_t f[4000];
	const struct virtio_net_hdr good = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
					    .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
					    .gso_size = 1448, .hdr_len = 54, .csum_start = 34,
					    .csum_offset = 16};
	struct virtio_net_hdr h;
	uint32_t flen, len;
	uint16_t id;
	long n = 0;

	(void)state;
	flen = make_tcp4(f, 3000, b->o.mac, a->o.mac);
#define BAD(field, val)                                   \
	do {                                              \
		h = good;                                 \
		h.field = (val);                          \
		send_raw(a, &h, HDR, f, flen, 1);          \
		assert_int_equal(drops(a, "bad_gso"), ++n); \
	} while (0)
	BAD(flags, 0);                           /* GSO without NEEDS_CSUM */
	BAD(gso_size, 0);
	BAD(gso_size, 1501);                     /* over the MTU */
	BAD(gso_size, 1461);                     /* 20 + 20 + 1461 > 1500 */
	BAD(csum_start, 14);                     /* not the TCP header */
	BAD(csum_offset, 6);                     /* not TCP's checksum field */
	BAD(gso_type, VIRTIO_NET_HDR_GSO_TCPV6); /* the frame is IPv4 */
	BAD(gso_type, VIRTIO_NET_HDR_GSO_UDP_L4); /* ... and TCP */
	BAD(gso_type, VIRTIO_NET_HDR_GSO_UDP);   /* UFO: never offered */
	BAD(gso_type, VIRTIO_NET_HDR_GSO_UDP_L4 | VIRTIO_NET_HDR_GSO_ECN);
	BAD(hdr_len, 0xffff);                    /* past the frame */
	/* a fragment, an IP length that lies, a truncated TCP header */
	f[20] = 0x20;
	BAD(gso_size, 1448);
	f[20] = 0x40;
	f[16] = 0x7f;
	BAD(gso_size, 1448);
	f[16] = (uint8_t)((40 + 3000) >> 8);
	h = good;
	send_raw(a, &h, HDR, f, 40, 1);
	assert_int_equal(drops(a, "bad_gso"), ++n);
	expect_nothing(b);
	/* and a good one still passes, ECN flag included (HOST_ECN) */
	f[47] |= 0x80;
	post_rx(b, 0, 2048);
	post_rx(b, 1, 2048);
	h = good;
	h.gso_type |= VIRTIO_NET_HDR_GSO_ECN;
	send_raw(a, &h, HDR, f, flen, 1);
	wait_used(b, 0, &id, &len);
	assert_int_equal(rx_buf(b, 0)[1], VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN);
	nic_free(a);
	nic_free(b);
#undef BAD
}

static void feat_rules_fn(void *arg)
{
	struct nic *n = arg;
	struct zoc_virtio_dev *d = zoc_vnet_to_virtio(n->vn);
	uint64_t base = ZOC_BIT(VIRTIO_F_VERSION_1) | ZOC_BIT(VIRTIO_NET_F_CTRL_VQ);

	/* virtio 1.2 5.1.3.1 dependencies */
	assert_int_equal(d->ops->set_features(d, base | ZOC_BIT(VIRTIO_NET_F_GUEST_TSO4)),
			 -EINVAL);
	assert_int_equal(d->ops->set_features(d, base | ZOC_BIT(VIRTIO_NET_F_GUEST_USO6)),
			 -EINVAL);
	assert_int_equal(d->ops->set_features(d, base | ZOC_BIT(VIRTIO_NET_F_GUEST_CSUM) |
							 ZOC_BIT(VIRTIO_NET_F_GUEST_ECN)),
			 -EINVAL);
	assert_int_equal(d->ops->set_features(d, base | ZOC_BIT(VIRTIO_NET_F_HOST_USO)), -EINVAL);
	assert_int_equal(d->ops->set_features(d, base | ZOC_BIT(VIRTIO_NET_F_CSUM) |
							 ZOC_BIT(VIRTIO_NET_F_HOST_ECN)),
			 -EINVAL);
	assert_int_equal(d->ops->set_features(d, ZOC_BIT(VIRTIO_F_VERSION_1) |
							 ZOC_BIT(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS)),
			 -EINVAL);
	assert_int_equal(d->ops->set_features(d, base | ZOC_BIT(VIRTIO_NET_F_GUEST_UFO)),
			 -EINVAL); /* not offered */
	assert_true((d->ops->get_features(d) & (GSO_HOST | GSO_GUEST)) == (GSO_HOST | GSO_GUEST));
	assert_int_equal(d->ops->set_features(d, base | ZOC_BIT(VIRTIO_NET_F_CSUM) |
							 ZOC_BIT(VIRTIO_NET_F_HOST_USO) |
							 GSO_GUEST),
			 0);
	n->err = (int)zoc_port_gso_caps(zoc_vnet_port(n->vn));
	assert_int_equal(d->ops->set_features(d, n->features), 0);
}

static void test_feature_rules(void **state)
{
	struct nic *a = nic_new("a", 1, 1500, 0, false);

	(void)state;
	on_reactor(feat_rules_fn, a);
	assert_int_equal(a->err, ZOC_GSO_CAP_TCPV4 | ZOC_GSO_CAP_TCPV6 | ZOC_GSO_CAP_ECN);
	nic_free(a);
}

static void link_fn(void *arg)
{
	struct nic *n = arg;
	struct zoc_virtio_dev *d = zoc_vnet_to_virtio(n->vn);
	struct virtio_net_config cfg;

	assert_int_equal(d->ops->get_config(d, (uint8_t *)&cfg, 0, sizeof(cfg)), 0);
	n->err = cfg.status;
	zoc_vnet_set_link(n->vn, false);
	assert_int_equal(d->ops->get_config(d, (uint8_t *)&cfg, 0, sizeof(cfg)), 0);
	assert_int_equal(cfg.status, 0);
	zoc_vnet_set_link(n->vn, true);
	assert_int_equal(d->ops->get_config(d, (uint8_t *)&cfg, 6, 2), 0);
	assert_int_equal(d->ops->get_config(d, (uint8_t *)&cfg, 10, 4), -EINVAL);
	assert_int_equal(d->ops->get_config(d, (uint8_t *)&cfg, 0xffffffffu, 2), -EINVAL);
	/* MQ without the control queue is refused */
	assert_int_equal(d->ops->set_features(d, ZOC_BIT(VIRTIO_NET_F_CTRL_RX)), -EINVAL);
	assert_int_equal(d->ops->set_features(d, ZOC_BIT(VIRTIO_NET_F_HOST_TSO4)), -EINVAL);
	assert_int_equal(d->ops->set_features(d, n->features), 0);
}

static void test_ctrl(void **state)
{
	struct nic *a = nic_new("a", 1, 1500, 0, false);
	struct nic *b = nic_new("b", 2, 1500, 0, false);
	static const uint8_t other[6] = {0x02, 0, 0, 0, 0, 0x99};
	uint8_t f[100], on = 1, off = 0;
	uint8_t tab[4 + 6 + 4];
	uint32_t one = 1, zero = 0;
	uint16_t pairs = 1, id;
	uint32_t len;
	int want;

	(void)state;
	/* good: promisc off; unknown unicast flooded to b is filtered */
	assert_int_equal(ctrl(b, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &off, 1),
			 VIRTIO_NET_OK);
	assert_int_equal(ctrl(b, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, &on, 1),
			 VIRTIO_NET_OK);
	post_rx(b, 0, 2048);
	make_frame(f, sizeof(f), other, a->o.mac, 1);
	send_frame(a, f, sizeof(f), 1);
	usleep(10000);
	assert_int_equal(drops(b, "filtered"), 1);
	/* the MAC table lets it in */
	memcpy(tab, &one, 4);
	memcpy(tab + 4, other, 6);
	memcpy(tab + 10, &zero, 4);
	assert_int_equal(ctrl(b, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, tab,
			      sizeof(tab)),
			 VIRTIO_NET_OK);
	send_frame(a, f, sizeof(f), 1);
	wait_used(b, 0, &id, &len);
	assert_int_equal(len, HDR + sizeof(f));
	/* bad commands */
	assert_int_equal(ctrl(b, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, tab, 2),
			 VIRTIO_NET_ERR);
	assert_int_equal(ctrl(b, VIRTIO_NET_CTRL_RX, 7, &on, 1), VIRTIO_NET_ERR);
	assert_int_equal(ctrl(b, 9, 0, NULL, 0), VIRTIO_NET_ERR);
	assert_int_equal(ctrl(b, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2),
			 VIRTIO_NET_ERR); /* MQ not negotiated */
	assert_int_equal(ctrl(b, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET,
			      (uint8_t[6]){0x01, 0, 0, 0, 0, 1}, 6),
			 VIRTIO_NET_ERR); /* multicast */
	assert_int_equal(ctrl(b, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, other, 5),
			 VIRTIO_NET_ERR);
	/* MAC tables whose counts lie */
	memset(tab, 0xff, 4);
	assert_int_equal(ctrl(b, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, tab,
			      sizeof(tab)),
			 VIRTIO_NET_ERR);
	memcpy(tab, &one, 4);
	assert_int_equal(ctrl(b, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, tab, 10),
			 VIRTIO_NET_ERR);
	assert_int_equal(ctrl(b, VIRTIO_NET_CTRL_MAC, 5, NULL, 0), VIRTIO_NET_ERR);
	/* a command without its ack byte: returned, counted, no crash */
	{
		uint64_t base = GPA_BASE + OFF_CTRL;
		struct vqd_seg s = {base, 3, false};

		want = vqd_add(&b->q[2], &s, 1, false);
		wait_used(b, 2, &id, &len);
		assert_int_equal(id, want);
		assert_int_equal(drops(b, "fault"), 1);
	}
	/* good: a new MAC */
	assert_int_equal(ctrl(b, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET,
			      (uint8_t[6]){0x02, 0, 0, 0, 0, 0x42}, 6),
			 VIRTIO_NET_OK);
	usleep(10000);
	make_frame(f, sizeof(f), (uint8_t[6]){0x02, 0, 0, 0, 0, 0x42}, a->o.mac, 2);
	want = post_rx(b, 1, 2048);
	send_frame(a, f, sizeof(f), 1);
	wait_used(b, 0, &id, &len);
	assert_int_equal(id, want);
	assert_int_equal(len, HDR + sizeof(f));
	on_reactor(link_fn, b);
	assert_int_equal(b->err, VIRTIO_NET_S_LINK_UP);
	nic_free(a);
	nic_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exchange_split),
		cmocka_unit_test(test_exchange_packed),
		cmocka_unit_test(test_malformed_tx),
		cmocka_unit_test(test_tx_hdr_ignored),
		cmocka_unit_test(test_short_rx),
		cmocka_unit_test(test_mergeable_jumbo),
		cmocka_unit_test(test_mixed_burst),
		cmocka_unit_test(test_burst_short_buffer_in_order),
		cmocka_unit_test(test_csum),
		cmocka_unit_test(test_ctrl),
		cmocka_unit_test(test_tso),
		cmocka_unit_test(test_tso_malformed),
		cmocka_unit_test(test_uso),
		cmocka_unit_test(test_tso_partial),
		cmocka_unit_test(test_feature_rules),
	};

	const struct CMUnitTest two[] = {
		cmocka_unit_test(test_exchange_split),
		cmocka_unit_test(test_exchange_packed),
		cmocka_unit_test(test_mergeable_jumbo),
		cmocka_unit_test(test_ctrl),
		cmocka_unit_test(test_tso),
	};
	int rc = cmocka_run_group_tests_name("one reactor", tests, setup, teardown);

	return rc + cmocka_run_group_tests_name("two reactors", two, setup_two, teardown);
}
