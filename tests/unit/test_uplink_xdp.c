/* SPDX-License-Identifier: MIT */
/*
 * test_uplink_xdp.c - the AF_XDP uplink (src/net/uplink_xdp.c) on a veth
 * pair (xdp0 <-> xdp1) in a private network namespace. A fake vNIC port on
 * the same switch collects what arrives; a raw AF_PACKET socket on xdp1
 * injects and captures frames. Native (veth's driver XDP) and generic (SKB)
 * mode, both directions, bursts, over-MTU frames both ways, frames larger
 * than a UMEM frame (the kernel drops them: XDP_STATISTICS), hostile ring
 * contents (RX descriptors outside the UMEM / in the TX half / crossing the
 * frame end, completions of addresses never sent, a producer index beyond
 * the ring), interrupt mode with a running reactor, the program detached
 * after destroy.
 *
 * Exits 77 with a SKIP line when zocd was built without AF_XDP, when not
 * root / no network namespace, or when the kernel refuses AF_XDP (no
 * CONFIG_XDP_SOCKETS, no BPF permission) - then the reason is printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
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

/* Only in a -Daf_xdp build (main() skips before any use otherwise). */
#pragma weak zoc_uplink_xdp_test_inject

#define ETYPE 0x88b5
#define MAXREC 256

static const uint8_t MAC_V[6] = {0x02, 0, 0, 0, 0x78, 0x01}; /* the fake vNIC */
static const uint8_t MAC_H[6] = {0x02, 0, 0, 0, 0x78, 0x02}; /* the far side */

struct fport {
	struct zoc_port *port;
	unsigned n;
	uint16_t len[MAXREC];
	uint32_t marker[MAXREC];
	atomic_uint ours;
};

static unsigned fake_tx(struct zoc_port *port, struct zoc_pkt **pkts, unsigned n)
{
	struct fport *f = zoc_port_ctx(port);

	for (unsigned i = 0; i < n; i++) {
		const uint8_t *d = zoc_pkt_data(pkts[i]);

		if (pkts[i]->len >= 18 && d[12] == (ETYPE >> 8) && d[13] == (ETYPE & 0xff)) {
			/* the last MAXREC frames */
			f->len[f->n % MAXREC] = pkts[i]->len;
			memcpy(&f->marker[f->n % MAXREC], d + 14, 4);
			f->n++;
			atomic_fetch_add(&f->ours, 1);
		}
		zoc_pkt_free(pkts[i]);
	}
	return n;
}

static const struct zoc_port_ops g_fake_ops = {.type = "test", .tx_burst = fake_tx};

static struct zoc_vswitch *g_sw;
static struct fport g_f;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int sh(const char *cmd)
{
	return system(cmd) == 0 ? 0 : -1;
}

static void build_frame(uint8_t *b, size_t len, const uint8_t *dst, const uint8_t *src,
			uint32_t marker)
{
	memset(b, 0x5a, len);
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
	int rcvbuf = 8 << 20; /* bursts of 200 full-size frames before we read */

	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)), 0);
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

/* Polls the uplink while waiting for frame `marker` on fd (the uplink may
 * still have to kick its TX ring); its length or -1. */
static int raw_wait(int fd, struct zoc_uplink *u, uint32_t marker, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;
	static uint8_t b[10000];

	while (now_ms() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t r;

		if (u)
			zoc_uplink_poll(u);
		if (poll(&p, 1, 5) <= 0)
			continue;
		r = recv(fd, b, sizeof(b), MSG_DONTWAIT);
		if (r >= 18 && b[12] == (ETYPE >> 8) && b[13] == (ETYPE & 0xff) &&
		    memcmp(b + 14, &marker, 4) == 0)
			return (int)r;
	}
	return -1;
}

/* Polls the uplink until the fake port got marker; its index or -1. */
static int fake_wait(struct zoc_uplink *u, uint32_t marker, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	while (now_ms() < end) {
		zoc_uplink_poll(u);
		for (unsigned i = 0; i < g_f.n && i < MAXREC; i++)
			if (g_f.marker[i] == marker)
				return (int)i;
		usleep(1000);
	}
	return -1;
}

static void fake_send(const uint8_t *dst, uint32_t marker, size_t len)
{
	struct zoc_pkt *p = zoc_pkt_alloc(zoc_pktpool_local(), (uint32_t)len);

	assert_non_null(p);
	build_frame(zoc_pkt_data(p), len, dst, MAC_V, marker);
	zoc_vswitch_rx_burst(g_sw, g_f.port, &p, 1);
}

static void set_flag(void *arg)
{
	*(int *)arg = 1;
}

static void make_switch(const char *name)
{
	struct zoc_vswitch_opts so = {.manual_aging = true};
	struct zoc_port_config cfg;

	assert_int_equal(zoc_pktpools_init(1024, 32), 0);
	assert_int_equal(zoc_vswitch_create(name, &so, &g_sw), 0);
	memset(&g_f, 0, sizeof(g_f));
	zoc_port_config_init(&cfg, "vnic");
	cfg.has_mac = true;
	memcpy(cfg.mac, MAC_V, 6);
	cfg.mtu = 9000; /* the uplink's MTU is the one that matters */
	assert_int_equal(zoc_vswitch_port_add(g_sw, &cfg, &g_fake_ops, &g_f, &g_f.port), 0);
}

static void drop_switch(void)
{
	int done = 0;
	uint32_t s, l;

	assert_int_equal(zoc_vswitch_port_remove(g_f.port, set_flag, &done), 0);
	assert_true(done);
	assert_int_equal(zoc_vswitch_destroy(g_sw), 0);
	zoc_pktpool_available(zoc_pktpool_local(), &s, &l);
	assert_int_equal(s, 1024); /* every packet back: no leak on any path */
	assert_int_equal(l, 32);
	zoc_pktpools_fini();
}

static int setup(void **state)
{
	struct zoc_reactor_opts o = {0};

	(void)state;
	assert_int_equal(zoc_reactors_init(&o), 0);
	make_switch("swx");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	drop_switch();
	zoc_reactors_fini();
	return 0;
}

static void destroy_uplink(struct zoc_uplink *u)
{
	int done = 0;

	assert_int_equal(zoc_uplink_destroy(u, set_flag, &done), 0);
	assert_true(done);
}

/* No XDP program left on the interface. */
static bool prog_detached(const char *ifname)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "ip link show %s | grep -q 'prog/xdp'", ifname);
	return sh(cmd) != 0;
}

static json_t *xdp_json(struct zoc_uplink *u, json_t **top)
{
	*top = zoc_uplink_to_json(u);
	assert_non_null(*top);
	return json_object_get(*top, "xdp");
}

static int64_t jint(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	assert_non_null(v);
	return json_integer_value(v);
}

static uint64_t port_drops(struct zoc_port *p, enum zoc_drop_reason r)
{
	struct zoc_port_stats st;

	zoc_port_get_stats(p, &st);
	return st.drops[r];
}

static void roundtrip(uint8_t mode, const char *want_mode)
{
	struct zoc_uplink_opts o = {.xdp_mode = mode, .mtu = 1500};
	struct zoc_uplink_stats st;
	struct zoc_uplink *u;
	uint8_t b[1514];
	json_t *top, *x;
	int fd, i;

	assert_int_equal(zoc_uplink_create("af_xdp", g_sw, "xdp0", &o, &u), 0);
	assert_false(prog_detached("xdp0"));
	x = xdp_json(u, &top);
	printf("# af_xdp mode %s, attached %s, zerocopy %d\n",
	       json_string_value(json_object_get(x, "mode")),
	       json_string_value(json_object_get(x, "attached")),
	       json_is_true(json_object_get(x, "zerocopy")));
	assert_string_equal(json_string_value(json_object_get(x, "mode")), want_mode);
	json_decref(top);
	fd = raw_open("xdp1");

	/* far side -> xdp0 -> XDP redirect -> socket -> switch -> vNIC */
	for (uint32_t m = 1; m <= 100; m++) {
		build_frame(b, 60 + m, MAC_V, MAC_H, m);
		raw_send(fd, b, 60 + m);
	}
	for (uint32_t m = 1; m <= 100; m++) {
		i = fake_wait(u, m, 2000);
		assert_true(i >= 0);
		assert_int_equal(g_f.len[i], 60 + m);
	}
	build_frame(b, 1514, MAC_V, MAC_H, 101);
	raw_send(fd, b, 1514);
	i = fake_wait(u, 101, 2000);
	assert_true(i >= 0);
	assert_int_equal(g_f.len[i], 1514);

	/* vNIC -> switch (MAC_H learned) -> uplink TX ring -> xdp1, in bursts
	 * bigger than the kernel's copy-mode budget per wake-up */
	assert_ptr_equal(zoc_vswitch_fdb_lookup(g_sw, MAC_H, 0), zoc_uplink_port(u));
	fake_send(MAC_H, 200, 60);
	assert_int_equal(raw_wait(fd, u, 200, 2000), 60);
	for (uint32_t m = 201; m <= 400; m++)
		fake_send(MAC_H, m, 1514);
	for (uint32_t m = 201; m <= 400; m++) {
		int r = raw_wait(fd, u, m, 2000);

		if (r != 1514) {
			zoc_uplink_get_stats(u, &st);
			x = xdp_json(u, &top);
			printf("# frame %u: %d; tx %llu full %llu err %llu big %llu; %s\n", m, r,
			       (unsigned long long)st.tx_frames, (unsigned long long)st.tx_full,
			       (unsigned long long)st.tx_errors, (unsigned long long)st.tx_oversize,
			       json_dumps(top, JSON_COMPACT));
		}
		assert_int_equal(r, 1514);
	}

	zoc_uplink_get_stats(u, &st);
	assert_true(st.rx_frames >= 101);
	assert_int_equal(st.tx_frames, 201);
	assert_int_equal(st.tx_full, 0);
	assert_int_equal(st.rx_errors, 0);
	assert_int_equal(st.tx_errors, 0);
	x = xdp_json(u, &top);
	assert_non_null(json_object_get(x, "kernel"));
	assert_int_equal(jint(json_object_get(x, "kernel"), "rx_invalid_descs"), 0);
	assert_int_equal(jint(json_object_get(x, "kernel"), "tx_invalid_descs"), 0);
	assert_true(jint(x, "tx_kicks") > 0);
	json_decref(top);
	close(fd);
	destroy_uplink(u);
	assert_null(zoc_uplink_find(g_sw, "xdp0"));
	assert_true(prog_detached("xdp0"));
}

static void test_native(void **state)
{
	(void)state;
	roundtrip(ZOC_UPLINK_XDP_MODE_NATIVE, "native");
}

static void test_skb(void **state)
{
	(void)state;
	roundtrip(ZOC_UPLINK_XDP_MODE_SKB, "skb");
}

static void test_auto(void **state)
{
	(void)state;
	roundtrip(ZOC_UPLINK_XDP_MODE_AUTO, "native"); /* veth has driver XDP */
}

/* Over-MTU both ways, a frame larger than a UMEM frame, hostile ring
 * contents; afterwards the uplink still works both ways. */
static void test_hostile(void **state)
{
	struct zoc_uplink_opts o = {.xdp_mode = ZOC_UPLINK_XDP_MODE_SKB, .mtu = 1500,
				    .xdp_frames = 256};
	struct zoc_uplink_stats st;
	struct zoc_uplink *u;
	static uint8_t b[6000];
	json_t *top, *x;
	int fd;

	(void)state;
	assert_int_equal(sh("ip link set xdp0 mtu 6000 && ip link set xdp1 mtu 6000"), 0);
	assert_int_equal(zoc_uplink_create("af_xdp", g_sw, "xdp0", &o, &u), 0);
	fd = raw_open("xdp1");

	/* 3000 B: fits a UMEM frame, over the port's MTU: ours to drop */
	build_frame(b, 3000, MAC_V, MAC_H, 1);
	raw_send(fd, b, 3000);
	/* 5000 B: larger than a 4 KiB UMEM frame: the kernel drops it */
	build_frame(b, 5000, MAC_V, MAC_H, 2);
	raw_send(fd, b, 5000);
	build_frame(b, 80, MAC_V, MAC_H, 3);
	raw_send(fd, b, 80);
	assert_true(fake_wait(u, 3, 2000) >= 0);
	assert_true(fake_wait(u, 2, 50) < 0);
	assert_true(fake_wait(u, 1, 50) < 0);
	zoc_uplink_get_stats(u, &st);
	assert_int_equal(st.rx_oversize, 1);
	assert_int_equal(port_drops(zoc_uplink_port(u), ZOC_DROP_MTU), 1);
	x = xdp_json(u, &top);
	printf("# kernel XDP_STATISTICS after a 5000 B frame: rx_dropped %lld\n",
	       (long long)jint(json_object_get(x, "kernel"), "rx_dropped"));
	assert_int_equal(jint(json_object_get(x, "kernel"), "rx_dropped"), 1);
	json_decref(top);

	/* what the kernel hands back, checked: */
	/* RX address outside the UMEM */
	assert_int_equal(zoc_uplink_xdp_test_inject(u, 0, 1ull << 40, 60), 0);
	/* RX address in the TX half (frame 200 of 256) */
	assert_int_equal(zoc_uplink_xdp_test_inject(u, 0, 200ull << 12, 60), 0);
	/* RX address just past the end of the UMEM */
	assert_int_equal(zoc_uplink_xdp_test_inject(u, 0, 256ull << 12, 60), 0);
	/* RX frame the kernel holds, length crossing the frame's end */
	assert_int_equal(zoc_uplink_xdp_test_inject(u, 0, (5ull << 12) + 256, 4000), 0);
	zoc_uplink_get_stats(u, &st);
	assert_int_equal(st.rx_errors, 4);
	assert_int_equal(st.rx_frames, 1);
	/* completion of an address never sent, of one outside the UMEM, of
	 * an RX frame, of a TX frame at an offset */
	assert_int_equal(zoc_uplink_xdp_test_inject(u, 1, 130ull << 12, 0), 0);
	assert_int_equal(zoc_uplink_xdp_test_inject(u, 1, ~0ull, 0), 0);
	assert_int_equal(zoc_uplink_xdp_test_inject(u, 1, 3ull << 12, 0), 0);
	assert_int_equal(zoc_uplink_xdp_test_inject(u, 1, (131ull << 12) + 64, 0), 0);
	/* a producer index far beyond the ring */
	assert_int_equal(zoc_uplink_xdp_test_inject(u, 2, 0, 0), 0);
	assert_int_equal(zoc_uplink_xdp_test_inject(u, 2, 0, 1u << 30), 0);
	zoc_uplink_get_stats(u, &st);
	assert_int_equal(st.tx_errors, 4);
	x = xdp_json(u, &top);
	assert_int_equal(jint(x, "rx_bad_desc"), 4);
	assert_int_equal(jint(x, "comp_bad_addr"), 4);
	assert_int_equal(jint(x, "ring_anomalies"), 2);
	json_decref(top);

	/* egress over the port's MTU: the switch drops it; a GSO frame: the
	 * switch segments it for a port that takes no super-frames (this one
	 * is not TCP: dropped there as invalid), so the uplink never sees it */
	fake_send(MAC_H, 10, 3000);
	assert_int_equal(port_drops(zoc_uplink_port(u), ZOC_DROP_MTU), 2);
	{
		struct zoc_pkt *p = zoc_pkt_alloc(zoc_pktpool_local(), 200);

		assert_non_null(p);
		build_frame(zoc_pkt_data(p), 200, MAC_H, MAC_V, 11);
		p->gso_type = ZOC_PKT_GSO_TCPV4;
		p->gso_size = 100;
		zoc_vswitch_rx_burst(g_sw, g_f.port, &p, 1);
	}
	assert_int_equal(port_drops(zoc_uplink_port(u), ZOC_DROP_INVALID), 1);
	zoc_uplink_get_stats(u, &st);
	assert_int_equal(st.tx_oversize, 0);

	/* more frames than the 128 TX frames in one go, without polling in
	 * between: the uplink kicks, reaps completions, and drops (tx_full)
	 * only what finds no frame */
	for (uint32_t m = 1000; m < 1400; m++)
		fake_send(MAC_H, m, 64);
	for (int k = 0; k < 100; k++)
		zoc_uplink_poll(u);
	zoc_uplink_get_stats(u, &st);
	printf("# 400 frames at once through 128 TX frames: sent %llu, tx_full %llu\n",
	       (unsigned long long)st.tx_frames, (unsigned long long)st.tx_full);
	assert_int_equal(st.tx_frames + st.tx_full, 400);

	/* and it still works both ways, many times over the ring sizes */
	for (uint32_t m = 2000; m < 2300; m++) {
		build_frame(b, 64, MAC_V, MAC_H, m);
		raw_send(fd, b, 64);
		if (m % 50 == 49)
			assert_true(fake_wait(u, m, 2000) >= 0);
	}
	for (uint32_t m = 3000; m < 3300; m++) {
		fake_send(MAC_H, m, 100);
		if (m % 50 == 49)
			assert_int_equal(raw_wait(fd, u, m, 2000), 100);
	}
	zoc_uplink_get_stats(u, &st);
	printf("# hostile: rx %llu tx %llu tx_full %llu rx_errors %llu tx_errors %llu\n",
	       (unsigned long long)st.rx_frames, (unsigned long long)st.tx_frames,
	       (unsigned long long)st.tx_full, (unsigned long long)st.rx_errors,
	       (unsigned long long)st.tx_errors);
	assert_int_equal(st.rx_errors, 4);
	assert_int_equal(st.tx_errors, 4);
	close(fd);
	destroy_uplink(u);
	assert_true(prog_detached("xdp0"));
	assert_int_equal(sh("ip link set xdp0 mtu 1500 && ip link set xdp1 mtu 1500"), 0);
}

/* Interface down: the TX kick fails (ENETDOWN), frames wait in the ring or
 * are counted tx_full when the 32 TX frames are gone; after up the poller's
 * retried kick sends again and frames flow both ways. */
static void test_link_down(void **state)
{
	struct zoc_uplink_opts o = {.xdp_mode = ZOC_UPLINK_XDP_MODE_SKB, .xdp_frames = 64};
	struct zoc_uplink_stats st;
	struct zoc_uplink *u;
	uint8_t b[200];
	int fd;

	(void)state;
	assert_int_equal(zoc_uplink_create("af_xdp", g_sw, "xdp0", &o, &u), 0);
	fd = raw_open("xdp1");
	build_frame(b, 100, MAC_V, MAC_H, 1);
	raw_send(fd, b, 100);
	assert_true(fake_wait(u, 1, 2000) >= 0); /* MAC_H learned on the uplink */
	assert_int_equal(sh("ip link set xdp0 down"), 0);
	for (uint32_t m = 100; m < 200; m++)
		fake_send(MAC_H, m, 100);
	for (int k = 0; k < 20; k++)
		zoc_uplink_poll(u);
	zoc_uplink_get_stats(u, &st);
	printf("# link down: tx_frames %llu (queued in the ring) tx_full %llu tx_errors %llu\n",
	       (unsigned long long)st.tx_frames, (unsigned long long)st.tx_full,
	       (unsigned long long)st.tx_errors);
	assert_int_equal(st.tx_frames + st.tx_full + st.tx_errors, 100);
	assert_true(st.tx_full > 0);
	assert_int_equal(sh("ip link set xdp0 up"), 0);
	usleep(200000);
	build_frame(b, 100, MAC_V, MAC_H, 2);
	raw_send(fd, b, 100);
	assert_true(fake_wait(u, 2, 2000) >= 0);
	fake_send(MAC_H, 300, 100);
	assert_int_equal(raw_wait(fd, u, 300, 2000), 100);
	close(fd);
	destroy_uplink(u);
}

static void test_bad_options(void **state)
{
	struct zoc_uplink_opts o = {.mtu = 9000};
	struct zoc_uplink *u;

	(void)state;
	assert_int_equal(zoc_uplink_create("af_xdp", g_sw, "xdp0", &o, &u), -EINVAL);
	o = (struct zoc_uplink_opts){.xdp_frames = 100};
	assert_int_equal(zoc_uplink_create("af_xdp", g_sw, "xdp0", &o, &u), -EINVAL);
	o = (struct zoc_uplink_opts){.xdp_frames = 32};
	assert_int_equal(zoc_uplink_create("af_xdp", g_sw, "xdp0", &o, &u), -EINVAL);
	o = (struct zoc_uplink_opts){.xdp_mode = 7};
	assert_int_equal(zoc_uplink_create("af_xdp", g_sw, "xdp0", &o, &u), -EINVAL);
	assert_int_equal(zoc_uplink_create("af_xdp", g_sw, "xdpnosuch9", NULL, &u), -ENODEV);
	/* a queue the veth does not have */
	o = (struct zoc_uplink_opts){.xdp_queue = 7};
	assert_true(zoc_uplink_create("af_xdp", g_sw, "xdp0", &o, &u) < 0);
	assert_true(prog_detached("xdp0"));
	/* the same queue twice */
	assert_int_equal(zoc_uplink_create("af_xdp", g_sw, "xdp0", NULL, &u), 0);
	o = (struct zoc_uplink_opts){.port_name = "second"};
	{
		struct zoc_uplink *u2;

		assert_true(zoc_uplink_create("af_xdp", g_sw, "xdp0", &o, &u2) < 0);
	}
	destroy_uplink(u);
	assert_true(prog_detached("xdp0"));
	assert_int_equal(zoc_vswitch_port_count(g_sw), 1);
}

/* Interrupt mode: the reactor sleeps in epoll, the XDP socket's fd wakes
 * it. */
struct irq_ctx {
	unsigned frames;
	atomic_int ok;
};

static void *irq_sender(void *arg)
{
	struct irq_ctx *c = arg;
	uint8_t b[200];
	int fd = raw_open("xdp1");
	uint64_t end;

	for (unsigned m = 0; m < c->frames; m++) {
		build_frame(b, sizeof(b), MAC_V, MAC_H, 5000 + m);
		raw_send(fd, b, sizeof(b));
		usleep(20000);
	}
	end = now_ms() + 3000;
	while (now_ms() < end && atomic_load(&g_f.ours) < c->frames)
		usleep(1000);
	atomic_store(&c->ok, atomic_load(&g_f.ours) >= c->frames);
	close(fd);
	zoc_reactors_stop();
	return NULL;
}

static void test_interrupt_mode(void **state)
{
	struct zoc_reactor_opts o = {.interrupt_mode = true, .poll_max_ns = 0,
				     .poll_max_set = true};
	struct irq_ctx c = {.frames = 10};
	struct zoc_uplink_stats st;
	struct zoc_uplink *u;
	uint64_t busy, idle, sleeps;
	pthread_t th;

	(void)state;
	assert_int_equal(zoc_reactors_init(&o), 0);
	make_switch("swxi");
	assert_int_equal(zoc_uplink_create("af_xdp", g_sw, "xdp0", NULL, &u), 0);
	assert_int_equal(pthread_create(&th, NULL, irq_sender, &c), 0);
	assert_int_equal(zoc_reactors_run(), 0);
	pthread_join(th, NULL);
	zoc_reactor_get_stats(zoc_reactor_get(0), &busy, &idle, &sleeps);
	zoc_uplink_get_stats(u, &st);
	printf("# af_xdp interrupt mode: %u frames, %llu reactor sleeps\n",
	       atomic_load(&g_f.ours), (unsigned long long)sleeps);
	assert_true(atomic_load(&c.ok));
	assert_true(sleeps >= c.frames);
	destroy_uplink(u);
	drop_switch();
	zoc_reactors_fini();
	assert_true(prog_detached("xdp0"));
}

/* Owner reactor 1 of 2, reactors running: the socket is created on reactor
 * 0 and used only on reactor 1; frames cross to the vNIC (reactor 0) and
 * back out through the uplink; destroy from reactor 0 runs the teardown on
 * the owner. */
struct multi_ctx {
	struct zoc_uplink *u;
	atomic_int ok, back, destroyed;
};

static void multi_vnic_removed(void *arg)
{
	zoc_reactors_stop();
}

static void multi_destroyed(void *arg)
{
	struct multi_ctx *c = arg;

	atomic_store(&c->destroyed, zoc_reactor_current() == zoc_reactor_get(0) ? 1 : 2);
	if (zoc_vswitch_port_remove(g_f.port, multi_vnic_removed, c))
		zoc_reactors_stop();
}

static void multi_destroy_on_0(void *arg)
{
	struct multi_ctx *c = arg;

	if (zoc_uplink_destroy(c->u, multi_destroyed, c))
		zoc_reactors_stop();
}

static void multi_send_on_0(void *arg)
{
	for (uint32_t m = 7000; m < 7020; m++)
		fake_send(MAC_H, m, 300);
}

static void *multi_sender(void *arg)
{
	struct multi_ctx *c = arg;
	uint8_t b[200];
	int fd = raw_open("xdp1");
	uint64_t end;
	int got = 0;

	for (unsigned m = 0; m < 20; m++) {
		build_frame(b, sizeof(b), MAC_V, MAC_H, 6000 + m);
		raw_send(fd, b, sizeof(b));
	}
	end = now_ms() + 3000;
	while (now_ms() < end && atomic_load(&g_f.ours) < 20)
		usleep(1000);
	atomic_store(&c->ok, atomic_load(&g_f.ours) >= 20);
	/* and back: the vNIC (reactor 0) sends to the learned MAC_H */
	zoc_reactor_send_msg(zoc_reactor_get(0), multi_send_on_0, c);
	for (uint32_t m = 7000; m < 7020; m++)
		got += raw_wait(fd, NULL, m, 2000) == 300;
	atomic_store(&c->back, got);
	close(fd);
	zoc_reactor_send_msg(zoc_reactor_get(0), multi_destroy_on_0, c);
	return NULL;
}

static void test_owner_reactor(void **state)
{
	static const unsigned cores[2] = {0, 1};
	struct zoc_reactor_opts o = {.cores = cores, .num_cores = 2, .interrupt_mode = true};
	struct zoc_uplink_opts uo = {.owner = 1};
	struct multi_ctx c = {0};
	uint32_t s, l;
	pthread_t th;

	(void)state;
	assert_int_equal(zoc_reactors_init(&o), 0);
	make_switch("swxm");
	assert_int_equal(zoc_uplink_create("af_xdp", g_sw, "xdp0", &uo, &c.u), 0);
	assert_int_equal(pthread_create(&th, NULL, multi_sender, &c), 0);
	assert_int_equal(zoc_reactors_run(), 0);
	pthread_join(th, NULL);
	printf("# owner reactor 1: %u frames in, %d frames out\n", atomic_load(&g_f.ours),
	       atomic_load(&c.back));
	assert_true(atomic_load(&c.ok));
	assert_int_equal(atomic_load(&c.back), 20);
	assert_int_equal(atomic_load(&c.destroyed), 1);
	assert_null(zoc_uplink_next(NULL));
	assert_int_equal(zoc_vswitch_destroy(g_sw), 0);
	zoc_pktpool_available(zoc_pktpool_of(0), &s, &l);
	assert_int_equal(s, 1024);
	zoc_pktpools_fini();
	zoc_reactors_fini();
	assert_true(prog_detached("xdp0"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_native, setup, teardown),
		cmocka_unit_test_setup_teardown(test_skb, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auto, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_link_down, setup, teardown),
		cmocka_unit_test(test_interrupt_mode),
		cmocka_unit_test(test_owner_reactor),
	};
	struct zoc_reactor_opts ro = {0};
	struct zoc_vswitch_opts so = {0};
	struct zoc_vswitch *sw;
	struct zoc_uplink *u;
	int fd, rc, s;

	zoc_log_set_level(ZOC_LOG_ERR);
	if (!zoc_uplink_type_find("af_xdp")) {
		printf("SKIP: built without AF_XDP (meson -Daf_xdp=enabled; needs libxdp-dev, "
		       "libbpf-dev)\n");
		return 77;
	}
	if (geteuid() != 0 || unshare(CLONE_NEWNET) != 0) {
		printf("SKIP: test_uplink_xdp needs root and a new network namespace (%s)\n",
		       geteuid() ? "not root" : strerror(errno));
		return 77;
	}
	fd = open("/proc/sys/net/ipv6/conf/default/disable_ipv6", O_WRONLY);
	if (fd >= 0) {
		if (write(fd, "1", 1) < 0)
			perror("disable_ipv6");
		close(fd);
	}
	if (sh("ip link set lo up && ip link add xdp0 type veth peer name xdp1 && "
	       "ip link set xdp0 up && ip link set xdp1 up")) {
		printf("SKIP: cannot create a veth pair in the namespace\n");
		return 77;
	}
	/* What does the kernel allow? An AF_XDP socket at all, then the
	 * program + bind in generic mode. */
	s = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (s < 0) {
		printf("SKIP: the kernel refuses AF_XDP sockets (%s): CONFIG_XDP_SOCKETS?\n",
		       strerror(errno));
		return 77;
	}
	close(s);
	assert_int_equal(zoc_reactors_init(&ro), 0);
	assert_int_equal(zoc_pktpools_init(64, 4), 0);
	assert_int_equal(zoc_vswitch_create("probe", &so, &sw), 0);
	{
		struct zoc_uplink_opts o = {.xdp_mode = ZOC_UPLINK_XDP_MODE_SKB};

		rc = zoc_uplink_create("af_xdp", sw, "xdp0", &o, &u);
	}
	if (rc == -EPERM || rc == -EACCES || rc == -EAFNOSUPPORT) {
		printf("SKIP: the kernel refuses an XDP program or AF_XDP bind here (%s): "
		       "needs CAP_NET_ADMIN + CAP_BPF (or CAP_SYS_ADMIN)\n",
		       strerror(-rc));
		return 77;
	}
	if (rc) {
		printf("FAIL: af_xdp uplink on a veth in generic mode: %s\n", strerror(-rc));
		return 1;
	}
	{
		int done = 0;

		zoc_uplink_destroy(u, set_flag, &done);
	}
	zoc_vswitch_destroy(sw);
	zoc_pktpools_fini();
	zoc_reactors_fini();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
