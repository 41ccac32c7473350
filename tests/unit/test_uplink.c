/* SPDX-License-Identifier: MIT */
/*
 * test_uplink.c - TAP and AF_PACKET uplinks (src/net/uplink*.c) on real
 * interfaces in a private network namespace: a veth pair for AF_PACKET, a
 * tap for TAP. A fake vNIC port on the same switch collects what arrives;
 * a raw socket on the far side (the veth peer, the tap interface) injects
 * and captures frames. Also: over-MTU and truncated frames, interface down,
 * both TX modes (V3 ring, sendmmsg), software checksum completion, JSON,
 * asynchronous destroy. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for the
 * namespace): otherwise prints SKIP and exits 77.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/reactor.h"
#include "net/pkt.h"
#include "net/uplink.h"
#include "net/vswitch.h"

#define ETYPE 0x88b5 /* IEEE local experimental */
#define MAXREC 64

static const uint8_t MAC_V[6] = {0x02, 0, 0, 0, 0x77, 0x01}; /* the fake vNIC */
static const uint8_t MAC_H[6] = {0x02, 0, 0, 0, 0x77, 0x02}; /* the far side */

struct fport {
	struct zoc_port *port;
	unsigned n;
	uint16_t len[MAXREC];
	uint8_t frame[MAXREC][128];
	atomic_uint ours; /* frames of ETYPE seen (any thread reads) */
};

static unsigned fake_tx(struct zoc_port *port, struct zoc_pkt **pkts, unsigned n)
{
	struct fport *f = zoc_port_ctx(port);

	for (unsigned i = 0; i < n; i++) {
		if (f->n < MAXREC) {
			f->len[f->n] = pkts[i]->len;
			memcpy(f->frame[f->n], zoc_pkt_data(pkts[i]),
			       pkts[i]->len < 128 ? pkts[i]->len : 128);
			f->n++;
		}
		if (pkts[i]->len >= 14 && zoc_pkt_data(pkts[i])[12] == (ETYPE >> 8))
			atomic_fetch_add(&f->ours, 1);
		zoc_pkt_free(pkts[i]);
	}
	return n;
}

static const struct zoc_port_ops g_fake_ops = {.type = "test", .tx_burst = fake_tx};

static struct zoc_vswitch *g_sw;
static struct fport g_f;
static bool g_have_tun;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int sh(const char *cmd)
{
	int r = system(cmd);

	return r == 0 ? 0 : -1;
}

static void build_frame(uint8_t *b, size_t len, const uint8_t *dst, const uint8_t *src,
			uint32_t marker)
{
	memset(b, 0xa5, len);
	memcpy(b, dst, 6);
	memcpy(b + 6, src, 6);
	b[12] = ETYPE >> 8;
	b[13] = ETYPE & 0xff;
	memcpy(b + 14, &marker, 4);
}

static int raw_open(const char *ifname)
{
	struct sockaddr_ll sll = {0};
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));

	assert_true(fd >= 0);
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = (int)if_nametoindex(ifname);
	assert_true(sll.sll_ifindex > 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sll, sizeof(sll)), 0);
	return fd;
}

static void raw_send(int fd, const uint8_t *b, size_t len)
{
	assert_int_equal(send(fd, b, len, 0), (ssize_t)len);
}

/* Waits for a frame of ours with `marker` on fd; its length or -1. */
static int raw_wait(int fd, uint32_t marker, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;
	uint8_t b[10000];

	while (now_ms() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t r;

		if (poll(&p, 1, 20) <= 0)
			continue;
		r = recv(fd, b, sizeof(b), MSG_DONTWAIT);
		if (r >= 18 && b[12] == (ETYPE >> 8) && b[13] == (ETYPE & 0xff) &&
		    memcmp(b + 14, &marker, 4) == 0)
			return (int)r;
	}
	return -1;
}

/* Polls the uplink until the fake port got a frame with marker; index or -1. */
static int fake_wait(struct zoc_uplink *u, uint32_t marker, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	while (now_ms() < end) {
		zoc_uplink_poll(u);
		for (unsigned i = 0; i < g_f.n; i++)
			if (g_f.len[i] >= 18 && memcmp(g_f.frame[i] + 14, &marker, 4) == 0 &&
			    g_f.frame[i][12] == (ETYPE >> 8))
				return (int)i;
		usleep(1000);
	}
	return -1;
}

/* Sends a frame from the fake vNIC into the switch. */
static void fake_send(const uint8_t *dst, uint32_t marker, size_t len)
{
	struct zoc_pkt *p = zoc_pkt_alloc(zoc_pktpool_local(), (uint32_t)len);

	assert_non_null(p);
	build_frame(zoc_pkt_data(p), len, dst, MAC_V, marker);
	zoc_vswitch_rx_burst(g_sw, g_f.port, &p, 1);
}

static int setup(void **state)
{
	struct zoc_reactor_opts o = {0};
	struct zoc_vswitch_opts so = {.manual_aging = true};
	struct zoc_port_config cfg;

	(void)state;
	assert_int_equal(zoc_reactors_init(&o), 0);
	assert_int_equal(zoc_pktpools_init(512, 32), 0);
	assert_int_equal(zoc_vswitch_create("swu", &so, &g_sw), 0);
	memset(&g_f, 0, sizeof(g_f));
	zoc_port_config_init(&cfg, "vnic");
	cfg.has_mac = true;
	memcpy(cfg.mac, MAC_V, 6);
	cfg.mtu = 9000;
	assert_int_equal(zoc_vswitch_port_add(g_sw, &cfg, &g_fake_ops, &g_f, &g_f.port), 0);
	return 0;
}

static void set_flag(void *arg)
{
	*(int *)arg = 1;
}

static int teardown(void **state)
{
	int done = 0;
	uint32_t s, l;

	(void)state;
	assert_int_equal(zoc_vswitch_port_remove(g_f.port, set_flag, &done), 0);
	assert_true(done);
	assert_int_equal(zoc_vswitch_destroy(g_sw), 0);
	zoc_pktpool_available(zoc_pktpool_local(), &s, &l);
	assert_int_equal(s, 512);
	assert_int_equal(l, 32);
	zoc_pktpools_fini();
	zoc_reactors_fini();
	return 0;
}

static void destroy_uplink(struct zoc_uplink *u)
{
	int done = 0;

	assert_int_equal(zoc_uplink_destroy(u, set_flag, &done), 0);
	assert_true(done); /* no reactor runs: inline */
}

static uint64_t port_drops(struct zoc_port *p, enum zoc_drop_reason r)
{
	struct zoc_port_stats st;

	zoc_port_get_stats(p, &st);
	return st.drops[r];
}

/* Both directions through an AF_PACKET uplink on zu0, the far side on zu1. */
static void packet_roundtrip(bool no_tx_ring)
{
	struct zoc_uplink_opts o = {.no_tx_ring = no_tx_ring};
	struct zoc_uplink_stats st;
	struct zoc_uplink *u;
	uint8_t b[1514];
	int fd, i;
	json_t *j;

	assert_int_equal(zoc_uplink_create("af_packet", g_sw, "zu0", &o, &u), 0);
	assert_ptr_equal(zoc_uplink_find(g_sw, "zu0"), u);
	fd = raw_open("zu1");

	/* far side -> uplink -> switch (unknown destination: flooded) -> vNIC */
	for (uint32_t m = 1; m <= 40; m++) {
		build_frame(b, 100, MAC_V, MAC_H, m);
		raw_send(fd, b, 100);
	}
	for (uint32_t m = 1; m <= 40; m++)
		assert_true(fake_wait(u, m, 2000) >= 0);
	i = fake_wait(u, 40, 10);
	assert_int_equal(g_f.len[i], 100);
	assert_memory_equal(g_f.frame[i] + 6, MAC_H, 6);
	/* a full-size frame */
	build_frame(b, 1514, MAC_V, MAC_H, 41);
	raw_send(fd, b, 1514);
	i = fake_wait(u, 41, 2000);
	assert_true(i >= 0);
	assert_int_equal(g_f.len[i], 1514);

	/* vNIC -> switch (MAC_H learned on the uplink) -> uplink -> far side */
	assert_ptr_equal(zoc_vswitch_fdb_lookup(g_sw, MAC_H, 0), zoc_uplink_port(u));
	fake_send(MAC_H, 100, 60);
	assert_int_equal(raw_wait(fd, 100, 2000), 60);
	for (uint32_t m = 101; m <= 140; m++)
		fake_send(MAC_H, m, 1514);
	for (uint32_t m = 101; m <= 140; m++)
		assert_int_equal(raw_wait(fd, m, 2000), 1514);

	zoc_uplink_get_stats(u, &st);
	assert_true(st.rx_frames >= 41);
	assert_int_equal(st.tx_frames, 41);
	assert_int_equal(st.tx_full, 0);
	j = zoc_uplink_to_json(u);
	assert_non_null(j);
	assert_non_null(json_object_get(j, "stats"));
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "tx"), "mode")),
			    no_tx_ring ? "sendmmsg" : "ring");
	json_decref(j);
	close(fd);
	destroy_uplink(u);
	assert_null(zoc_uplink_find(g_sw, "zu0"));
}

static void test_packet_ring(void **state)
{
	(void)state;
	packet_roundtrip(false);
}

static void test_packet_sendmmsg(void **state)
{
	(void)state;
	packet_roundtrip(true);
}

/* Over-MTU, truncated (a socket filter cuts frames to 64 bytes: snaplen <
 * len), over-MTU on transmit, interface down: counted, no crash. */
static void test_packet_hostile(void **state)
{
	struct zoc_uplink_opts o = {.mtu = 1500};
	struct zoc_uplink_stats st;
	struct zoc_uplink *u;
	static uint8_t b[4000];
	struct sock_filter cut[] = {{BPF_RET | BPF_K, 0, 0, 64}};
	struct sock_fprog prog = {.len = 1, .filter = cut};
	int fd;

	(void)state;
	assert_int_equal(sh("ip link set zu0 mtu 4000 && ip link set zu1 mtu 4000"), 0);
	assert_int_equal(zoc_uplink_create("af_packet", g_sw, "zu0", &o, &u), 0);
	fd = raw_open("zu1");

	/* 3000-byte frame: over the port's MTU of 1500 */
	build_frame(b, 3000, MAC_V, MAC_H, 200);
	raw_send(fd, b, 3000);
	build_frame(b, 80, MAC_V, MAC_H, 201);
	raw_send(fd, b, 80);
	assert_true(fake_wait(u, 201, 2000) >= 0);
	zoc_uplink_get_stats(u, &st);
	assert_int_equal(st.rx_oversize, 1);
	assert_int_equal(port_drops(zoc_uplink_port(u), ZOC_DROP_MTU), 1);

	/* truncated frames */
	assert_int_equal(setsockopt(u->fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)), 0);
	build_frame(b, 500, MAC_V, MAC_H, 202);
	raw_send(fd, b, 500);
	build_frame(b, 60, MAC_V, MAC_H, 203);
	raw_send(fd, b, 60);
	assert_true(fake_wait(u, 203, 2000) >= 0);
	zoc_uplink_get_stats(u, &st);
	assert_int_equal(st.rx_truncated, 1);
	assert_int_equal(port_drops(zoc_uplink_port(u), ZOC_DROP_INVALID), 1);
	int zero = 0;
	assert_int_equal(setsockopt(u->fd, SOL_SOCKET, SO_DETACH_FILTER, &zero, sizeof(zero)), 0);

	/* interface down: transmits fail or queue, nothing breaks */
	assert_int_equal(sh("ip link set zu0 down"), 0);
	for (uint32_t m = 300; m < 600; m++)
		fake_send(MAC_H, m, 200);
	for (int k = 0; k < 20; k++)
		zoc_uplink_poll(u);
	zoc_uplink_get_stats(u, &st);
	assert_true(st.tx_errors + st.tx_full > 0);
	assert_int_equal(sh("ip link set zu0 up"), 0);
	usleep(200000);
	/* and it works again */
	for (int k = 0; k < 20; k++)
		zoc_uplink_poll(u);
	build_frame(b, 90, MAC_V, MAC_H, 700);
	raw_send(fd, b, 90);
	assert_true(fake_wait(u, 700, 2000) >= 0);
	fake_send(MAC_H, 701, 64);
	for (int k = 0; k < 20 && raw_wait(fd, 701, 100) < 0; k++)
		zoc_uplink_poll(u); /* a stalled ring is kicked again from the poller */
	close(fd);
	destroy_uplink(u);
	assert_int_equal(sh("ip link set zu0 mtu 1500 && ip link set zu1 mtu 1500"), 0);
}

static void test_bad_options(void **state)
{
	struct zoc_uplink_opts o = {.block_size = 5000};
	struct zoc_uplink *u;

	(void)state;
	assert_int_equal(zoc_uplink_create("af_packet", g_sw, "zu0", &o, &u), -EINVAL);
	assert_int_equal(zoc_uplink_create("af_packet", g_sw, "nosuchif0", NULL, &u), -ENODEV);
	assert_int_equal(zoc_uplink_create("nope", g_sw, "zu0", NULL, &u), -EINVAL);
	assert_int_equal(zoc_uplink_create("af_packet", g_sw, "", NULL, &u), -EINVAL);
	assert_int_equal(zoc_uplink_create("af_packet", g_sw, "averyveryverylongname", NULL, &u),
			 -EINVAL);
	o = (struct zoc_uplink_opts){.port_name = "vnic"};
	assert_int_equal(zoc_uplink_create("af_packet", g_sw, "zu0", &o, &u), -EEXIST);
	o = (struct zoc_uplink_opts){.mtu = 20};
	assert_int_equal(zoc_uplink_create("af_packet", g_sw, "zu0", &o, &u), -EINVAL);
	o = (struct zoc_uplink_opts){.owner = 5};
	assert_int_equal(zoc_uplink_create("tap", g_sw, "zt9", &o, &u), -EINVAL);
	assert_int_equal(zoc_vswitch_port_count(g_sw), 1);
}

static void tap_roundtrip(bool vnet_hdr)
{
	struct zoc_uplink_opts o = {.vnet_hdr = vnet_hdr};
	struct zoc_uplink_stats st;
	struct zoc_uplink *u;
	uint8_t b[1514];
	int fd, i;

	if (!g_have_tun) {
		printf("SKIP: no /dev/net/tun\n");
		skip();
	}
	assert_int_equal(zoc_uplink_create("tap", g_sw, "zt0", &o, &u), 0);
	fd = raw_open("zt0");
	/* a frame sent on the tap interface comes out of the tap fd */
	for (uint32_t m = 1; m <= 40; m++) {
		build_frame(b, 100 + m, MAC_V, MAC_H, m);
		raw_send(fd, b, 100 + m);
	}
	for (uint32_t m = 1; m <= 40; m++) {
		i = fake_wait(u, m, 2000);
		assert_true(i >= 0);
		assert_int_equal(g_f.len[i], 100 + m);
	}
	/* a frame written to the tap fd appears on the interface */
	fake_send(MAC_H, 500, 1514);
	assert_int_equal(raw_wait(fd, 500, 2000), 1514);
	fake_send(MAC_H, 501, 60);
	assert_int_equal(raw_wait(fd, 501, 2000), 60);
	zoc_uplink_get_stats(u, &st);
	assert_int_equal(st.tx_frames, 2);
	assert_true(st.rx_frames >= 40);
	close(fd);
	destroy_uplink(u);
}

static void test_tap(void **state)
{
	(void)state;
	tap_roundtrip(false);
}

static void test_tap_vnet_hdr(void **state)
{
	(void)state;
	tap_roundtrip(true);
}

/* A frame over the port's MTU from the tap interface: dropped, counted. */
static void test_tap_oversize(void **state)
{
	struct zoc_uplink_opts o = {.mtu = 1000};
	struct zoc_uplink_stats st;
	struct zoc_uplink *u;
	uint8_t b[1514];
	int fd;

	(void)state;
	if (!g_have_tun) {
		printf("SKIP: no /dev/net/tun\n");
		skip();
	}
	assert_int_equal(zoc_uplink_create("tap", g_sw, "zt1", &o, &u), 0);
	fd = raw_open("zt1");
	build_frame(b, 1400, MAC_V, MAC_H, 900);
	raw_send(fd, b, 1400);
	build_frame(b, 64, MAC_V, MAC_H, 901);
	raw_send(fd, b, 64);
	assert_true(fake_wait(u, 901, 2000) >= 0);
	zoc_uplink_get_stats(u, &st);
	assert_int_equal(st.rx_oversize, 1);
	/* larger than the packet buffer itself: the read fails, still counted */
	assert_int_equal(sh("ip link set zt1 mtu 4000"), 0);
	{
		static uint8_t big[3000];

		build_frame(big, sizeof(big), MAC_V, MAC_H, 903);
		raw_send(fd, big, sizeof(big));
	}
	build_frame(b, 64, MAC_V, MAC_H, 904);
	raw_send(fd, b, 64);
	assert_true(fake_wait(u, 904, 2000) >= 0);
	zoc_uplink_get_stats(u, &st);
	assert_int_equal(st.rx_oversize, 2);
	assert_int_equal(st.rx_errors, 0);
	/* egress over the uplink's MTU: the switch drops it */
	fake_send(MAC_H, 902, 1400);
	assert_true(port_drops(zoc_uplink_port(u), ZOC_DROP_MTU) >= 2);
	close(fd);
	destroy_uplink(u);
}

/* Software checksum completion (an IPv4/UDP frame with NEEDS_CSUM). */
static void test_csum(void **state)
{
	struct zoc_pkt *p = zoc_pkt_alloc(zoc_pktpool_local(), 50);
	uint8_t *d;
	uint32_t sum = 0;

	(void)state;
	assert_non_null(p);
	d = zoc_pkt_data(p);
	memset(d, 0, 50);
	for (int i = 42; i < 50; i++)
		d[i] = (uint8_t)(i * 7);
	p->flags = ZOC_PKT_F_CSUM_NEEDED;
	p->csum_start = 34;
	p->csum_offset = 6;
	d[40] = 0x12; /* pseudo-header sum seeded */
	d[41] = 0x34;
	assert_int_equal(zoc_uplink_csum_complete(p), 0);
	assert_true(p->flags & ZOC_PKT_F_CSUM_VALID);
	for (int i = 34; i < 50; i += 2)
		sum += (uint32_t)d[i] << 8 | d[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	/* the range now sums to the complement of the seed */
	assert_int_equal(sum, (uint16_t)~0x1234);
	p->flags = ZOC_PKT_F_CSUM_NEEDED;
	p->csum_start = 49;
	p->csum_offset = 0;
	assert_int_equal(zoc_uplink_csum_complete(p), -EINVAL);
	p->csum_start = 10;
	p->csum_offset = 60000;
	assert_int_equal(zoc_uplink_csum_complete(p), -EINVAL);
	zoc_pkt_free(p);
}

/* Interrupt mode with a running reactor: the reactor sleeps in epoll and
 * the uplinks' fds wake it (AF_PACKET: block retired; tap: frame queued). */
struct irq_ctx {
	const char *ifname;
	unsigned frames;
	atomic_int ok;
};

static void *irq_sender(void *arg)
{
	struct irq_ctx *c = arg;
	uint8_t b[200];
	int fd = raw_open(c->ifname);
	uint64_t end;

	for (unsigned m = 0; m < c->frames; m++) {
		build_frame(b, sizeof(b), MAC_V, MAC_H, 5000 + m);
		raw_send(fd, b, sizeof(b));
		usleep(20000); /* let the reactor fall asleep between frames */
	}
	end = now_ms() + 3000;
	while (now_ms() < end && atomic_load(&g_f.ours) < c->frames)
		usleep(1000);
	atomic_store(&c->ok, atomic_load(&g_f.ours) >= c->frames);
	close(fd);
	zoc_reactors_stop();
	return NULL;
}

static void irq_run(const char *type, const char *ifname, const char *peer)
{
	struct zoc_reactor_opts o = {.interrupt_mode = true, .poll_max_ns = 0,
				     .poll_max_set = true};
	struct zoc_vswitch_opts so = {.manual_aging = true};
	struct zoc_port_config cfg;
	struct irq_ctx c = {.ifname = peer, .frames = 10};
	struct zoc_uplink_stats st;
	struct zoc_uplink *u;
	uint64_t busy, idle, sleeps;
	pthread_t th;
	int done = 0;

	assert_int_equal(zoc_reactors_init(&o), 0);
	assert_int_equal(zoc_pktpools_init(512, 32), 0);
	assert_int_equal(zoc_vswitch_create("swi", &so, &g_sw), 0);
	memset(&g_f, 0, sizeof(g_f));
	zoc_port_config_init(&cfg, "vnic");
	assert_int_equal(zoc_vswitch_port_add(g_sw, &cfg, &g_fake_ops, &g_f, &g_f.port), 0);
	assert_int_equal(zoc_uplink_create(type, g_sw, ifname, NULL, &u), 0);
	assert_int_equal(pthread_create(&th, NULL, irq_sender, &c), 0);
	assert_int_equal(zoc_reactors_run(), 0);
	pthread_join(th, NULL);
	zoc_reactor_get_stats(zoc_reactor_get(0), &busy, &idle, &sleeps);
	zoc_uplink_get_stats(u, &st);
	printf("# %s interrupt mode: %u frames, %llu reactor sleeps\n", type,
	       atomic_load(&g_f.ours), (unsigned long long)sleeps);
	assert_true(atomic_load(&c.ok));
	assert_true(sleeps >= c.frames);
	assert_int_equal(zoc_uplink_destroy(u, set_flag, &done), 0);
	assert_true(done);
	done = 0;
	assert_int_equal(zoc_vswitch_port_remove(g_f.port, set_flag, &done), 0);
	assert_true(done);
	assert_int_equal(zoc_vswitch_destroy(g_sw), 0);
	zoc_pktpools_fini();
	zoc_reactors_fini();
}

static void test_packet_interrupt_mode(void **state)
{
	(void)state;
	irq_run("af_packet", "zu0", "zu1");
}

static void test_tap_interrupt_mode(void **state)
{
	(void)state;
	if (!g_have_tun) {
		printf("SKIP: no /dev/net/tun\n");
		skip();
	}
	irq_run("tap", "zt2", "zt2");
}

/* Owner reactor 1 of 2, reactors running: frames reach the vNIC (owned by
 * reactor 0) across reactors, and destroy on reactor 0 completes through
 * the grace period, a message to the owner and one back. */
struct multi_ctx {
	struct zoc_uplink *u;
	atomic_int ok, destroyed, vnic_removed;
};

static void multi_vnic_removed(void *arg)
{
	struct multi_ctx *c = arg;

	atomic_store(&c->vnic_removed, 1);
	zoc_reactors_stop();
}

static void multi_destroyed(void *arg)
{
	struct multi_ctx *c = arg;

	atomic_store(&c->destroyed, zoc_reactor_current() == zoc_reactor_get(0) ? 1 : 2);
	/* (Port removal needs the owner reactor running: do it now.) */
	if (zoc_vswitch_port_remove(g_f.port, multi_vnic_removed, c))
		zoc_reactors_stop();
}

static void multi_destroy_on_0(void *arg)
{
	struct multi_ctx *c = arg;

	if (zoc_uplink_destroy(c->u, multi_destroyed, c))
		zoc_reactors_stop();
}

static void *multi_sender(void *arg)
{
	struct multi_ctx *c = arg;
	uint8_t b[200];
	int fd = raw_open("zu1");
	uint64_t end;

	for (unsigned m = 0; m < 20; m++) {
		build_frame(b, sizeof(b), MAC_V, MAC_H, 6000 + m);
		raw_send(fd, b, sizeof(b));
	}
	end = now_ms() + 3000;
	while (now_ms() < end && atomic_load(&g_f.ours) < 20)
		usleep(1000);
	atomic_store(&c->ok, atomic_load(&g_f.ours) >= 20);
	close(fd);
	zoc_reactor_send_msg(zoc_reactor_get(0), multi_destroy_on_0, c);
	return NULL;
}

static void test_packet_owner_reactor(void **state)
{
	static const unsigned cores[2] = {0, 1};
	struct zoc_reactor_opts o = {.cores = cores, .num_cores = 2, .interrupt_mode = true};
	struct zoc_vswitch_opts so = {.manual_aging = true};
	struct zoc_uplink_opts uo = {.owner = 1};
	struct zoc_port_config cfg;
	struct multi_ctx c = {0};
	pthread_t th;

	(void)state;
	assert_int_equal(zoc_reactors_init(&o), 0);
	assert_int_equal(zoc_pktpools_init(512, 32), 0);
	assert_int_equal(zoc_vswitch_create("swm", &so, &g_sw), 0);
	memset(&g_f, 0, sizeof(g_f));
	zoc_port_config_init(&cfg, "vnic");
	assert_int_equal(zoc_vswitch_port_add(g_sw, &cfg, &g_fake_ops, &g_f, &g_f.port), 0);
	assert_int_equal(zoc_uplink_create("af_packet", g_sw, "zu0", &uo, &c.u), 0);
	assert_int_equal(pthread_create(&th, NULL, multi_sender, &c), 0);
	assert_int_equal(zoc_reactors_run(), 0);
	pthread_join(th, NULL);
	assert_true(atomic_load(&c.ok));
	assert_int_equal(atomic_load(&c.destroyed), 1);
	assert_null(zoc_uplink_next(NULL));
	assert_true(atomic_load(&c.vnic_removed));
	assert_int_equal(zoc_vswitch_destroy(g_sw), 0);
	zoc_pktpools_fini();
	zoc_reactors_fini();
}

int main(void)
{
	int fd;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_csum, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_packet_ring, setup, teardown),
		cmocka_unit_test_setup_teardown(test_packet_sendmmsg, setup, teardown),
		cmocka_unit_test_setup_teardown(test_packet_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tap_vnet_hdr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tap_oversize, setup, teardown),
		cmocka_unit_test(test_packet_interrupt_mode),
		cmocka_unit_test(test_tap_interrupt_mode),
		cmocka_unit_test(test_packet_owner_reactor),
	};

	zoc_log_set_level(ZOC_LOG_ERR);
	if (geteuid() != 0 || unshare(CLONE_NEWNET) != 0) {
		printf("SKIP: test_uplink needs root and a new network namespace (%s)\n",
		       geteuid() ? "not root" : strerror(errno));
		return 77;
	}
	/* Quiet namespace: no IPv6 chatter on the test interfaces. */
	fd = open("/proc/sys/net/ipv6/conf/default/disable_ipv6", O_WRONLY);
	if (fd >= 0) {
		if (write(fd, "1", 1) < 0)
			perror("disable_ipv6");
		close(fd);
	}
	if (sh("ip link set lo up && ip link add zu0 type veth peer name zu1 && "
	       "ip link set zu0 up && ip link set zu1 up")) {
		printf("SKIP: cannot create a veth pair in the namespace\n");
		return 77;
	}
	fd = open("/dev/net/tun", O_RDWR);
	g_have_tun = fd >= 0;
	if (fd >= 0)
		close(fd);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
