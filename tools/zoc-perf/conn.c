/* SPDX-License-Identifier: MIT */
/*
 * conn.c - zoc-perf conn: new TCP connections per second (and per CPU
 * second) through a stateful switch, and the memory of live sessions.
 *
 *   zoc-perf conn --target switch|ifaces|none [-n CONNS] [--window W]
 *                 [--ct on|off] [--ipv6] [--hold SESSIONS] [--base N]
 *                 [--if-a IF --if-b IF] [--peer-pid PID] [--verify]
 *                 [--timeout-ms MS] [--dport P]
 *
 * Every connection is the 7 frames of ctgen.h (handshake and teardown);
 * zoc-perf plays both ends. Connections go in windows of W: step 0 of all
 * W (in bursts of 32) from side A, then step 1 from side B, ... step 6, so
 * W connections are interleaved and each segment is sent only after the
 * previous one crossed the switch.
 *
 * Targets:
 *   switch  in process: a zoc_vswitch on one reactor (this thread) with
 *           two test ports, A (a vNIC: the VM) and B (the uplink). With
 *           --ct on, port A carries a security group of 5 rules (tcp/80
 *           egress allowed) and a connection-tracking table: see
 *           CT_IN_SWITCH below for where the engine runs. The CPU figure is
 *           this thread's CPU time: generator + switch + conntrack.
 *   none    the generator alone (frames built in packets from the pool and
 *           freed): what the generator costs inside the switch figure.
 *   ifaces  writes frames into Linux interfaces with AF_PACKET (A's frames
 *           on --if-a, B's on --if-b) and receives them on the other one:
 *           for a peer switch (OVS, Linux bridge/netfilter) between them.
 *           --peer-pid: the peer's CPU time (/proc/PID/stat, all threads)
 *           over the run gives its connections per CPU second.
 *
 * Output: one line `conn: key=value ...` (target, ct, conns, completed,
 * lost, wall_s, cps, cpu_s, cps_per_core, us_per_conn, and with a peer
 * peer_cpu_s, peer_cps_per_core); with --hold one line `hold: ...`
 * (sessions, rss_mib, bytes_per_session, open_s). Exit 1 when a frame was
 * lost or the counters do not reconcile (with a line saying which), 2 on
 * bad usage.
 */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"
#include "ctgen.h"
#include "net/conntrack.h"
#include "net/flowkey.h"
#include "net/pkt.h"
#include "net/port.h"
#include "net/secgroup.h"
#include "net/vswitch.h"

/*
 * Where conntrack runs for --target switch --ct on.
 *   0: the switch has no conntrack hook yet: zoc-perf runs the engine at
 *      port A itself, where the switch will: on frames entering from A
 *      (egress of the VM) before zoc_vswitch_rx_burst, and on frames the
 *      switch delivers to A (ingress) in A's tx_burst, with the port id as
 *      zone, one zoc_ct_process_burst per burst, drops freed and counted.
 *   1: the switch does it: zoc_vswitch_port_set_secgroup(A, group) and
 *      nothing else here (the switch's tables; the table-count check then
 *      uses ct_table_stats() below, which reads them). This build: 1.
 * Build with -DZOC_PERF_CT_IN_SWITCH=1 (tools/zoc-perf/meson.build) once
 * the switch has port_set_secgroup; the code that differs is in the
 * "conntrack placement" block only.
 */
#ifndef ZOC_PERF_CT_IN_SWITCH
#define ZOC_PERF_CT_IN_SWITCH 1
#endif

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define BURST ZOC_PKT_BURST

enum target { T_SWITCH, T_IFACES, T_NONE };

struct copts {
	enum target target;
	uint64_t n, base, hold;
	uint32_t window;
	bool ct, ipv6, verify;
	const char *if_a, *if_b;
	int peer_pid;
	int timeout_ms;
	uint16_t dport;
};

static const char *g_prog = "zoc-perf";

__attribute__((format(printf, 1, 2), noreturn)) static void die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s conn: ", g_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(try '%s conn --help')\n", g_prog);
	exit(EXIT_USAGE);
}

__attribute__((format(printf, 1, 2))) static void err(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s conn: ", g_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static double thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long rss_bytes(void)
{
	long size, res = -1;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%ld %ld", &size, &res) != 2)
			res = -1;
		fclose(f);
	}
	return res < 0 ? -1 : res * sysconf(_SC_PAGESIZE);
}

/* Resident memory of another process (VmRSS), bytes; -1 if unreadable. */
static long proc_rss_bytes(int pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb < 0 ? -1 : kb * 1024;
}

/* utime + stime of a process (all threads), seconds; -1 if unreadable. */
static double proc_cpu_s(int pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ------------------------------------------------------------ results */

struct result {
	uint64_t conns, completed, lost;
	double wall_s, cpu_s, peer_cpu_s;
};

static void print_result(const struct copts *o, const struct result *r)
{
	printf("conn: target=%s ct=%s family=%s conns=%" PRIu64 " completed=%" PRIu64
	       " lost=%" PRIu64 " wall_s=%.3f cps=%.0f cpu_s=%.3f cps_per_core=%.0f us_per_conn=%.3f",
	       o->target == T_SWITCH ? "switch" : o->target == T_IFACES ? "ifaces" : "none",
	       o->target == T_IFACES ? "peer" : o->ct ? "on" : "off", o->ipv6 ? "ipv6" : "ipv4", r->conns, r->completed, r->lost,
	       r->wall_s, r->completed / r->wall_s, r->cpu_s,
	       r->cpu_s > 0 ? r->completed / r->cpu_s : 0.0,
	       r->completed ? r->cpu_s * 1e6 / r->completed : 0.0);
	if (o->peer_pid > 0)
		printf(" peer_cpu_s=%.3f peer_cps_per_core=%.0f peer_us_per_conn=%.3f", r->peer_cpu_s,
		       r->peer_cpu_s > 0 ? r->completed / r->peer_cpu_s : 0.0,
		       r->completed ? r->peer_cpu_s * 1e6 / r->completed : 0.0);
	printf("\n");
	fflush(stdout);
}

/* ------------------------------------------------------ switch target */

struct swrun {
	const struct copts *o;
	struct ctgen g;
	struct zoc_vswitch *sw;
	struct zoc_port *a, *b;
	struct zoc_sg *sg;
	struct zoc_ct *ct;        /* CT_IN_SWITCH 0 */
	uint64_t now;
	uint64_t rx[2];           /* frames delivered to port A / B */
	uint64_t ct_drop[2];      /* conntrack drops at A egress / ingress */
	uint64_t bad;             /* delivered frames that were not the expected step */
	uint64_t win_base;        /* first connection of the current window */
	uint32_t win_n;
	int step;                 /* step being sent */
	bool failed;
};

static struct zoc_sg *make_group(void)
{
	struct zoc_sg *sg = zoc_sg_create("zoc-perf");
	struct zoc_sg_rule r = {.icmp_type = -1, .icmp_code = -1};

	if (!sg)
		return NULL;
	/* A small realistic group (as tools/ct-bench): ssh and https in, dns
	 * and web out. The generated connections are egress tcp/80. */
	r.dir = ZOC_CT_INGRESS, r.proto = 6, r.port_min = r.port_max = 22;
	zoc_sg_rule_add(sg, &r, NULL);
	r.port_min = r.port_max = 443;
	zoc_sg_rule_add(sg, &r, NULL);
	r.dir = ZOC_CT_EGRESS, r.proto = 17, r.port_min = r.port_max = 53;
	zoc_sg_rule_add(sg, &r, NULL);
	r.proto = 6, r.port_min = r.port_max = 443;
	zoc_sg_rule_add(sg, &r, NULL);
	r.port_min = r.port_max = 80;
	zoc_sg_rule_add(sg, &r, NULL);
	return sg;
}

/* ---- conntrack placement ------------------------------------------- */
#if !ZOC_PERF_CT_IN_SWITCH
static int ct_attach(struct swrun *s, uint64_t capacity)
{
	struct zoc_ct_config cfg = {.capacity = capacity < 64 ? 64 : (uint32_t)capacity};

	if (capacity > UINT32_MAX)
		return -EINVAL;
	s->ct = zoc_ct_create(&cfg);
	return s->ct ? 0 : -errno;
}

static void ct_detach(struct swrun *s)
{
	zoc_ct_destroy(s->ct);
	s->ct = NULL;
}

/* Runs conntrack on pkts[0..n) of port A in direction dir; frees the
 * dropped ones and compacts; returns how many remain. */
static unsigned ct_filter(struct swrun *s, enum zoc_ct_dir dir, struct zoc_pkt **pkts, unsigned n)
{
	struct zoc_flowkey keys[BURST];
	const struct zoc_flowkey *kp[BURST];
	uint8_t v[BURST];
	unsigned k = 0, m = 0;
	struct zoc_pkt *keep[BURST];

	for (unsigned i = 0; i < n; i++) {
		if (zoc_flowkey_parse(zoc_pkt_cdata(pkts[i]), pkts[i]->len, &keys[k]) == 0) {
			kp[k] = &keys[k];
			keep[k++] = pkts[i];
		} else {
			pkts[m++] = pkts[i]; /* not IP: passes untracked */
		}
	}
	if (!k)
		return m;
	zoc_ct_process_burst(s->ct, zoc_sg_rules(s->sg), zoc_port_id(s->a), dir, kp, k, s->now, v);
	for (unsigned i = 0; i < k; i++) {
		if (zoc_ct_is_drop(v[i])) {
			s->ct_drop[dir]++;
			zoc_pkt_free(keep[i]);
		} else {
			pkts[m++] = keep[i];
		}
	}
	return m;
}

static void ct_poll(struct swrun *s)
{
	zoc_ct_poll(s->ct, s->now, 256);
}

static int ct_table_stats(struct swrun *s, struct zoc_ct_stats *st)
{
	zoc_ct_get_stats(s->ct, st);
	return 0;
}
#else
static int ct_attach(struct swrun *s, uint64_t capacity)
{
	(void)capacity; /* the switch's tables size themselves */
	return zoc_vswitch_port_set_secgroup(s->a, s->sg);
}

static void ct_detach(struct swrun *s)
{
	zoc_vswitch_port_set_secgroup(s->a, NULL);
}

static unsigned ct_filter(struct swrun *s, enum zoc_ct_dir dir, struct zoc_pkt **pkts, unsigned n)
{
	(void)s, (void)dir, (void)pkts;
	return n;
}

static void ct_poll(struct swrun *s)
{
	(void)s;
}

static void ct_copy_stats(struct zoc_ct *ct, unsigned part, void *arg)
{
	(void)part;
	zoc_ct_get_stats(ct, arg);
}

/* zoc-perf runs one reactor: one partition, read in place. */
static int ct_table_stats(struct swrun *s, struct zoc_ct_stats *st)
{
	struct zoc_vswitch *sw = s->sw;

	if (zoc_vswitch_ct_partitions(sw) != 1)
		return -ENOTSUP;
	return zoc_vswitch_ct_foreach(sw, ct_copy_stats, NULL, st);
}
#endif
/* ---- end of conntrack placement ------------------------------------ */

static void count_rx(struct swrun *s, int side, struct zoc_pkt **pkts, unsigned n)
{
	s->rx[side] += n;
	if (!s->o->verify)
		return;
	for (unsigned i = 0; i < n; i++) {
		uint64_t c;
		int step;

		if (ctgen_check(&s->g, zoc_pkt_cdata(pkts[i]), pkts[i]->len, &c, &step) ||
		    step != s->step || c < s->win_base || c >= s->win_base + s->win_n ||
		    (int)ctgen_side(step) == side)
			s->bad++;
	}
}

static unsigned tx_a(struct zoc_port *port, struct zoc_pkt **pkts, unsigned n)
{
	struct swrun *s = zoc_port_ctx(port);
	unsigned m = n;

	if (s->o->ct)
		m = ct_filter(s, ZOC_CT_INGRESS, pkts, n);
	count_rx(s, CTGEN_A, pkts, m);
	zoc_pkt_free_bulk(pkts, m);
	return n;
}

static unsigned tx_b(struct zoc_port *port, struct zoc_pkt **pkts, unsigned n)
{
	struct swrun *s = zoc_port_ctx(port);

	count_rx(s, CTGEN_B, pkts, n);
	zoc_pkt_free_bulk(pkts, n);
	return n;
}

static const struct zoc_port_ops g_ops_a = {.type = "zoc-perf", .tx_burst = tx_a};
static const struct zoc_port_ops g_ops_b = {.type = "zoc-perf", .tx_burst = tx_b};

static int sw_setup(struct swrun *s, uint64_t capacity)
{
	struct zoc_reactor_opts ro = {0};
	struct zoc_port_config cfg;
	int rc;

	if ((rc = zoc_reactors_init(&ro)) || (rc = zoc_pktpools_init(4096, 16))) {
		err("reactor / packet pools: %s", strerror(-rc));
		return rc;
	}
	if ((rc = zoc_vswitch_create("zoc-perf", NULL, &s->sw))) {
		err("zoc_vswitch_create: %s", strerror(-rc));
		return rc;
	}
	zoc_port_config_init(&cfg, "a");
	cfg.kind = ZOC_PORT_VNIC;
	cfg.has_mac = true;
	memcpy(cfg.mac, s->g.mac_a, 6);
	if ((rc = zoc_vswitch_port_add(s->sw, &cfg, &g_ops_a, s, &s->a)))
		goto fail;
	zoc_port_config_init(&cfg, "b");
	cfg.kind = ZOC_PORT_UPLINK;
	if ((rc = zoc_vswitch_port_add(s->sw, &cfg, &g_ops_b, s, &s->b)))
		goto fail;
	if (s->o->ct) {
		s->sg = make_group();
		if (!s->sg || (rc = ct_attach(s, capacity))) {
			err("security group / conntrack table of %" PRIu64 " sessions: %s", capacity,
			    strerror(s->sg ? -rc : ENOMEM));
			return rc ? rc : -ENOMEM;
		}
	}
	/* B's MAC: one non-IP frame (untracked) from B, so that the switch
	 * knows it before the first SYN (no flooding in the measurement). */
	{
		struct zoc_pkt *p = zoc_pkt_alloc(zoc_pktpool_local(), 60);
		uint8_t *d;

		if (!p)
			return -ENOBUFS;
		d = zoc_pkt_data(p);
		memset(d, 0, 60);
		memcpy(d, s->g.mac_a, 6);
		memcpy(d + 6, s->g.mac_b, 6);
		d[12] = 0x88, d[13] = 0xb5; /* local experimental ethertype */
		zoc_vswitch_rx_burst(s->sw, s->b, &p, 1);
		s->rx[CTGEN_A] = 0;
		s->bad = 0;
	}
	return 0;
fail:
	err("zoc_vswitch_port_add: %s", strerror(-rc));
	return rc;
}

static void sw_teardown(struct swrun *s)
{
	if (s->o->ct && s->sg) {
		ct_detach(s);
	}
	if (s->a)
		zoc_vswitch_port_remove(s->a, NULL, NULL);
	if (s->b)
		zoc_vswitch_port_remove(s->b, NULL, NULL);
	if (s->sw)
		zoc_vswitch_destroy(s->sw);
	if (s->sg)
		zoc_sg_destroy(s->sg);
	zoc_pktpools_fini();
	zoc_reactors_fini();
}

/* Sends step `step` of connections [c0, c0 + n) from its side, in bursts. */
static int sw_send(struct swrun *s, uint64_t c0, uint32_t n, int step)
{
	struct zoc_pktpool *pool = zoc_pktpool_local();
	const int side = ctgen_side(step);

	s->step = step;
	for (uint32_t i = 0; i < n; i += BURST) {
		unsigned k = n - i < BURST ? n - i : BURST;
		struct zoc_pkt *p[BURST];

		if (zoc_pkt_alloc_bulk(pool, p, k, CTGEN_FRAME_MAX)) {
			err("packet pool exhausted");
			return -ENOBUFS;
		}
		for (unsigned j = 0; j < k; j++)
			p[j]->len = ctgen_frame(&s->g, c0 + i + j, step, zoc_pkt_data(p[j]));
		s->now = zoc_now_ns();
		if (s->o->target == T_NONE) {
			s->rx[!side] += k;
			zoc_pkt_free_bulk(p, k);
			continue;
		}
		if (side == CTGEN_A && s->o->ct)
			k = ct_filter(s, ZOC_CT_EGRESS, p, k);
		if (k)
			zoc_vswitch_rx_burst(s->sw, side == CTGEN_A ? s->a : s->b, p, k);
	}
	return 0;
}

/* Runs connections [base, base + n) through all 7 steps (stop after
 * `steps` steps: 3 leaves them ESTABLISHED). */
static int sw_run(struct swrun *s, uint64_t base, uint64_t n, int steps)
{
	for (uint64_t c = 0; c < n; c += s->o->window) {
		uint32_t w = (uint32_t)(n - c < s->o->window ? n - c : s->o->window);

		s->win_base = base + c;
		s->win_n = w;
		for (int st = 0; st < steps; st++)
			if (sw_send(s, base + c, w, st))
				return -1;
		if (s->o->ct && s->o->target == T_SWITCH)
			ct_poll(s);
	}
	return 0;
}

static int cmd_switch(const struct copts *o)
{
	static struct swrun s;
	struct result r = {0};
	struct zoc_ct_stats st;
	uint64_t t0, t1;
	double c0, c1;
	int rc = 0;

	s.o = o;
	ctgen_init(&s.g, o->ipv6);
	if (o->dport)
		s.g.dport = o->dport;
	if (sw_setup(&s, o->hold ? o->hold : o->n) != 0) {
		sw_teardown(&s);
		return EXIT_FAIL;
	}
	if (o->n) {
		/* Warm-up is part of the run: the table starts empty as in a
		 * fresh zocd. */
		t0 = zoc_now_ns();
		c0 = thread_cpu_s();
		if (sw_run(&s, o->base, o->n, CTGEN_STEPS)) {
			rc = EXIT_FAIL;
			goto out;
		}
		c1 = thread_cpu_s();
		t1 = zoc_now_ns();
		r.conns = o->n;
		r.wall_s = (double)(t1 - t0) / 1e9;
		r.cpu_s = c1 - c0;
		/* Every frame reached the other side: 4 at B, 3 at A per conn. */
		r.lost = 0;
		if (s.rx[CTGEN_B] != 4 * o->n || s.rx[CTGEN_A] != 3 * o->n) {
			err("frames lost: %" PRIu64 " of %" PRIu64 " reached B, %" PRIu64 " of %" PRIu64
			    " reached A (conntrack drops: %" PRIu64 " egress, %" PRIu64 " ingress)",
			    s.rx[CTGEN_B], 4 * o->n, s.rx[CTGEN_A], 3 * o->n, s.ct_drop[0],
			    s.ct_drop[1]);
			r.lost = 7 * o->n - s.rx[CTGEN_A] - s.rx[CTGEN_B];
			rc = EXIT_FAIL;
		}
		if (s.bad) {
			err("%" PRIu64 " delivered frames were not the expected step / side / window",
			    s.bad);
			rc = EXIT_FAIL;
		}
		r.completed = rc ? 0 : o->n;
		if (o->ct && o->target == T_SWITCH) {
			int e = ct_table_stats(&s, &st);

			if (e == 0 && (st.created != o->n || st.per_state[ZOC_CT_S_TIME_WAIT] != o->n ||
				       st.used != o->n)) {
				err("conntrack table does not reconcile: created %" PRIu64
				    ", used %" PRIu64 ", TIME_WAIT %" PRIu64 ", expected %" PRIu64
				    " each",
				    st.created, st.used, st.per_state[ZOC_CT_S_TIME_WAIT], o->n);
				rc = EXIT_FAIL;
			} else if (e == 0 && o->verify) {
				printf("table: created=%" PRIu64 " used=%" PRIu64 " time_wait=%" PRIu64
				       " drops=0\n",
				       st.created, st.used, st.per_state[ZOC_CT_S_TIME_WAIT]);
			}
		}
		print_result(o, &r);
	}
	if (o->hold && rc == 0) {
		long before, after;
		struct zoc_ct_stats hs;

		if (o->n && o->ct) {
			/* a fresh table for the memory figure */
			ct_detach(&s);
			if (ct_attach(&s, o->hold)) {
				err("conntrack table of %" PRIu64 " sessions", o->hold);
				rc = EXIT_FAIL;
				goto out;
			}
		}
		s.rx[0] = s.rx[1] = 0;
		before = rss_bytes();
		t0 = zoc_now_ns();
		if (sw_run(&s, o->base + o->n, o->hold, 3)) {
			rc = EXIT_FAIL;
			goto out;
		}
		t1 = zoc_now_ns();
		after = rss_bytes();
		if (s.rx[CTGEN_B] != 2 * o->hold || s.rx[CTGEN_A] != o->hold) {
			err("hold: frames lost (%" PRIu64 " / %" PRIu64 " at B, %" PRIu64 " / %" PRIu64
			    " at A)",
			    s.rx[CTGEN_B], 2 * o->hold, s.rx[CTGEN_A], o->hold);
			rc = EXIT_FAIL;
		}
		if (o->ct && ct_table_stats(&s, &hs) == 0 &&
		    hs.per_state[ZOC_CT_S_ESTABLISHED] != o->hold) {
			err("hold: %" PRIu64 " ESTABLISHED sessions, expected %" PRIu64,
			    hs.per_state[ZOC_CT_S_ESTABLISHED], o->hold);
			rc = EXIT_FAIL;
		}
		printf("hold: sessions=%" PRIu64 " rss_mib=%.1f bytes_per_session=%.1f open_s=%.3f "
		       "gib_for_16m=%.3f\n",
		       o->hold, (after - before) / 1048576.0, (double)(after - before) / o->hold,
		       (double)(t1 - t0) / 1e9,
		       (double)(after - before) / o->hold * 16777216.0 / 1073741824.0);
	}
out:
	sw_teardown(&s);
	return rc;
}

/* ------------------------------------------------------ ifaces target */

struct ifside {
	int fd;
	int ifindex;
};

static int open_if(const char *name, struct ifside *s)
{
	struct sockaddr_ll sll = {0};
	int one = 1, big = 8 << 20;

	s->ifindex = (int)if_nametoindex(name);
	if (!s->ifindex) {
		err("no interface %s", name);
		return -1;
	}
	s->fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
	if (s->fd < 0) {
		err("AF_PACKET socket: %s (needs CAP_NET_RAW)", strerror(errno));
		return -1;
	}
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = s->ifindex;
	if (bind(s->fd, (struct sockaddr *)&sll, sizeof(sll))) {
		err("bind to %s: %s", name, strerror(errno));
		return -1;
	}
	setsockopt(s->fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
#ifdef PACKET_IGNORE_OUTGOING
	setsockopt(s->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
#endif
	if (setsockopt(s->fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)))
		setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	if (setsockopt(s->fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)))
		setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	return 0;
}

/* Drains whatever is queued on a socket. */
static void drain(struct ifside *s)
{
	uint8_t buf[2048];

	while (recv(s->fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

struct ifrun {
	const struct copts *o;
	struct ctgen g;
	struct ifside side[2];
	uint8_t *frames;   /* window × CTGEN_FRAME_MAX */
	uint8_t *rbuf;     /* BURST × 2048 receive buffers */
	uint8_t *got;      /* per connection of the window: steps received (bits) */
	uint64_t stray;
};

static int if_send(struct ifrun *r, uint64_t c0, uint32_t n, int step)
{
	struct ifside *s = &r->side[ctgen_side(step)];
	struct mmsghdr msg[BURST];
	struct iovec iov[BURST];
	uint32_t len[BURST];

	for (uint32_t i = 0; i < n;) {
		unsigned k = n - i < BURST ? n - i : BURST;
		int sent;

		for (unsigned j = 0; j < k; j++) {
			uint8_t *f = r->frames + (size_t)(i + j) * CTGEN_FRAME_MAX;

			len[j] = ctgen_frame(&r->g, c0 + i + j, step, f);
			if (len[j] < 60) { /* Ethernet minimum, as a NIC would pad */
				memset(f + len[j], 0, 60 - len[j]);
				len[j] = 60;
			}
			iov[j] = (struct iovec){.iov_base = f, .iov_len = len[j]};
			msg[j] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[j], .msg_iovlen = 1}};
		}
		sent = sendmmsg(s->fd, msg, k, 0);
		if (sent < 0) {
			if (errno == EAGAIN || errno == ENOBUFS || errno == EINTR) {
				struct pollfd pfd = {.fd = s->fd, .events = POLLOUT};

				poll(&pfd, 1, 10);
				continue;
			}
			err("sendmmsg: %s", strerror(errno));
			return -1;
		}
		i += (uint32_t)sent;
	}
	return 0;
}

/* Receives step `step` of the window on the other side until all n came
 * or nothing came for timeout_ms. Returns how many arrived. */
static uint32_t if_recv(struct ifrun *r, uint64_t c0, uint32_t n, int step)
{
	struct ifside *s = &r->side[!ctgen_side(step)];
	struct mmsghdr msg[BURST];
	struct iovec iov[BURST];
	uint32_t got = 0;
	uint64_t last = zoc_now_ns();

	for (int j = 0; j < BURST; j++) {
		iov[j] = (struct iovec){.iov_base = r->rbuf + (size_t)j * 2048, .iov_len = 2048};
		msg[j] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[j], .msg_iovlen = 1}};
	}
	while (got < n) {
		int k = recvmmsg(s->fd, msg, BURST, MSG_DONTWAIT, NULL);

		if (k <= 0) {
			struct pollfd pfd = {.fd = s->fd, .events = POLLIN};

			if ((zoc_now_ns() - last) / 1000000 >= (uint64_t)r->o->timeout_ms)
				break;
			poll(&pfd, 1, 5);
			continue;
		}
		last = zoc_now_ns();
		for (int j = 0; j < k; j++) {
			uint64_t c;
			int st;

			if (ctgen_check(&r->g, r->rbuf + (size_t)j * 2048, msg[j].msg_len, &c, &st) ||
			    st != step || c < c0 || c >= c0 + n || (r->got[c - c0] & (1u << st))) {
				r->stray++;
				continue;
			}
			r->got[c - c0] |= (uint8_t)(1u << st);
			got++;
		}
	}
	return got;
}

static int cmd_ifaces(const struct copts *o)
{
	struct ifrun r = {.o = o};
	struct result res = {0};
	uint64_t t0, t1;
	double c0, c1, p0 = 0, p1 = 0;
	int rc = 0;

	if (!o->if_a || !o->if_b)
		die_usage("--target ifaces needs --if-a and --if-b");
	ctgen_init(&r.g, o->ipv6);
	if (o->dport)
		r.g.dport = o->dport;
	if (open_if(o->if_a, &r.side[CTGEN_A]) || open_if(o->if_b, &r.side[CTGEN_B]))
		return EXIT_FAIL;
	r.frames = calloc(o->window, CTGEN_FRAME_MAX);
	r.rbuf = malloc((size_t)BURST * 2048);
	r.got = calloc(o->window, 1);
	if (!r.frames || !r.rbuf || !r.got) {
		err("out of memory");
		return EXIT_FAIL;
	}
	drain(&r.side[0]);
	drain(&r.side[1]);
	t0 = zoc_now_ns();
	c0 = thread_cpu_s();
	if (o->peer_pid > 0 && (p0 = proc_cpu_s(o->peer_pid)) < 0) {
		err("cannot read /proc/%d/stat", o->peer_pid);
		return EXIT_FAIL;
	}
	for (uint64_t c = 0; c < o->n && rc == 0; c += o->window) {
		uint32_t w = (uint32_t)(o->n - c < o->window ? o->n - c : o->window);
		uint64_t cb = o->base + c;

		memset(r.got, 0, w);
		for (int st = 0; st < CTGEN_STEPS; st++) {
			if (if_send(&r, cb, w, st)) {
				rc = EXIT_FAIL;
				break;
			}
			if_recv(&r, cb, w, st);
		}
		for (uint32_t i = 0; i < w; i++)
			if (r.got[i] == (1u << CTGEN_STEPS) - 1)
				res.completed++;
	}
	t1 = zoc_now_ns();
	c1 = thread_cpu_s();
	if (o->peer_pid > 0)
		p1 = proc_cpu_s(o->peer_pid);
	res.conns = o->n;
	res.lost = o->n - res.completed;
	res.wall_s = (double)(t1 - t0) / 1e9;
	res.cpu_s = c1 - c0;
	res.peer_cpu_s = p1 - p0;
	if (o->n)
		print_result(o, &res);
	if (res.lost) {
		err("%" PRIu64 " of %" PRIu64 " connections did not complete (a segment did not "
		    "cross within %d ms); %" PRIu64 " stray frames",
		    res.lost, o->n, o->timeout_ms, r.stray);
		rc = EXIT_FAIL;
	}
	if (o->hold && rc == 0) {
		long p_before = o->peer_pid > 0 ? proc_rss_bytes(o->peer_pid) : -1, p_after;
		uint64_t held = 0;

		t0 = zoc_now_ns();
		for (uint64_t c = 0; c < o->hold && rc == 0; c += o->window) {
			uint32_t w = (uint32_t)(o->hold - c < o->window ? o->hold - c : o->window);
			uint64_t cb = o->base + o->n + c;

			memset(r.got, 0, w);
			for (int st = 0; st < 3; st++) {
				if (if_send(&r, cb, w, st)) {
					rc = EXIT_FAIL;
					break;
				}
				if_recv(&r, cb, w, st);
			}
			for (uint32_t i = 0; i < w; i++)
				held += r.got[i] == 7;
		}
		t1 = zoc_now_ns();
		p_after = o->peer_pid > 0 ? proc_rss_bytes(o->peer_pid) : -1;
		printf("hold: sessions=%" PRIu64 " opened=%" PRIu64 " open_s=%.3f", o->hold, held,
		       (double)(t1 - t0) / 1e9);
		if (p_before >= 0 && p_after >= 0)
			printf(" peer_rss_mib=%.1f peer_bytes_per_session=%.1f",
			       (p_after - p_before) / 1048576.0,
			       (double)(p_after - p_before) / (double)(held ? held : 1));
		printf("\n");
		if (held != o->hold) {
			err("hold: %" PRIu64 " of %" PRIu64 " sessions opened", held, o->hold);
			rc = EXIT_FAIL;
		}
	}
	close(r.side[0].fd);
	close(r.side[1].fd);
	free(r.frames);
	free(r.rbuf);
	free(r.got);
	return rc;
}

/* ------------------------------------------------------------- main */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s conn --target switch|ifaces|none [options]\n"
		"\n"
		"TCP connections (SYN, SYN-ACK, ACK, FIN, ACK, FIN, ACK) through a stateful\n"
		"switch; zoc-perf plays both ends. Prints connections/s, per CPU second and\n"
		"CPU microseconds per connection.\n"
		"\n"
		"  --target T        switch: zocd's vswitch in this process, port A a vNIC\n"
		"                    with a security group, B an uplink; none: the generator\n"
		"                    alone; ifaces: AF_PACKET on --if-a / --if-b\n"
		"  -n, --conns N     connections (default 1000000)\n"
		"  --window W        connections interleaved per step (default 1024; 256 for\n"
		"                    ifaces)\n"
		"  --ct on|off       conntrack + security group on port A (switch; default on)\n"
		"  --ipv6            IPv6 instead of IPv4\n"
		"  --hold N          then open N more sessions and keep them ESTABLISHED:\n"
		"                    resident memory growth per session (switch: this\n"
		"                    process, in a fresh table; ifaces: --peer-pid's)\n"
		"  --base N          number of the first connection (distinct tuples per run)\n"
		"  --if-a IF         (ifaces) side A interface (the VM side)\n"
		"  --if-b IF         (ifaces) side B interface (the uplink side)\n"
		"  --peer-pid PID    (ifaces) the switch process: its CPU time per connection\n"
		"  --verify          check every delivered frame (step, side, window) and the\n"
		"                    table counts\n"
		"  --timeout-ms MS   (ifaces) a step waits this long without progress (200)\n"
		"  --dport P         server port (default 80, which the group allows; another\n"
		"                    port is refused: every SYN dropped, exit status 1)\n",
		g_prog);
}

int zoc_perf_cmd_conn(int argc, char **argv)
{
	static const struct option lo[] = {
		{"target", required_argument, NULL, 't'}, {"conns", required_argument, NULL, 'n'},
		{"window", required_argument, NULL, 'w'}, {"ct", required_argument, NULL, 'c'},
		{"ipv6", no_argument, NULL, '6'},         {"hold", required_argument, NULL, 'H'},
		{"base", required_argument, NULL, 'B'},   {"if-a", required_argument, NULL, 'a'},
		{"if-b", required_argument, NULL, 'b'},   {"peer-pid", required_argument, NULL, 'p'},
		{"verify", no_argument, NULL, 'v'},       {"timeout-ms", required_argument, NULL, 'T'},
		{"dport", required_argument, NULL, 'D'},  {"help", no_argument, NULL, 'h'},
		{0},
	};
	struct copts o = {.target = T_SWITCH, .n = 1000000, .ct = true, .timeout_ms = 200};
	bool have_target = false;
	int opt;
	char *end;

	while ((opt = getopt_long(argc, argv, "n:h", lo, NULL)) != -1) {
		switch (opt) {
		case 't':
			have_target = true;
			if (!strcmp(optarg, "switch"))
				o.target = T_SWITCH;
			else if (!strcmp(optarg, "ifaces"))
				o.target = T_IFACES;
			else if (!strcmp(optarg, "none"))
				o.target = T_NONE;
			else
				die_usage("--target: switch, ifaces or none, not '%s'", optarg);
			break;
		case 'n': case 'w': case 'H': case 'B': case 'p': case 'T': case 'D': {
			unsigned long long v;

			errno = 0;
			v = strtoull(optarg, &end, 0);
			if (errno || *end || end == optarg)
				die_usage("not a number: '%s'", optarg);
			if (opt == 'n')
				o.n = v;
			else if (opt == 'w')
				o.window = (uint32_t)(v > 1u << 20 ? 1u << 20 : v);
			else if (opt == 'H')
				o.hold = v;
			else if (opt == 'B')
				o.base = v;
			else if (opt == 'p')
				o.peer_pid = (int)v;
			else if (opt == 'D')
				o.dport = (uint16_t)(v && v < 65536 ? v : 80);
			else
				o.timeout_ms = (int)(v > 60000 ? 60000 : v);
			break;
		}
		case 'c':
			if (strcmp(optarg, "on") && strcmp(optarg, "off"))
				die_usage("--ct: on or off");
			o.ct = !strcmp(optarg, "on");
			break;
		case '6': o.ipv6 = true; break;
		case 'a': o.if_a = optarg; break;
		case 'b': o.if_b = optarg; break;
		case 'v': o.verify = true; break;
		case 'h': usage(stdout); return 0;
		default: die_usage("bad option");
		}
	}
	if (!have_target)
		die_usage("--target is required");
	if (optind != argc)
		die_usage("unexpected argument '%s'", argv[optind]);
	if (!o.window)
		o.window = o.target == T_IFACES ? 256 : 1024;
	if (o.base + o.n + o.hold > (1ull << 38))
		die_usage("--base + --conns + --hold over 2^38 connections");
	if (o.hold > UINT32_MAX / 2)
		die_usage("--hold at most %u", UINT32_MAX / 2);
	if (o.target == T_NONE)
		o.ct = false;
	zoc_log_set_level(ZOC_LOG_ERR);
	if (o.target == T_IFACES)
		return cmd_ifaces(&o);
	return cmd_switch(&o);
}
