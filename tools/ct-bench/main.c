/* SPDX-License-Identifier: MIT */
/*
 * ct-bench - how many TCP connections per second one core tracks (full
 * handshake + teardown, 7 segments each, through zoc_ct_process with a
 * security group evaluated on every SYN), and how many bytes a live
 * session costs (resident memory growth / sessions).
 *
 *   ct-bench [-n CONNS] [-s SESSIONS] [-b]
 *     -n  connections for the rate run (default 2000000)
 *     -s  live sessions for the memory run (default 4194304; 0 = skip)
 *     -b  process 32 connections at a time with zoc_ct_process_burst
 *
 * Keys are built directly (no frame parsing): this measures the table
 * and the state machine, not the switch. TIME_WAIT sessions stay in the
 * table (as they would), so the table is sized for all of them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "net/conntrack.h"
#include "net/flowkey.h"
#include "net/secgroup.h"

static void mk(struct zoc_flowkey *k, uint32_t c, int reply, uint8_t fl, uint32_t seq,
	       uint32_t ack)
{
	uint32_t cli = 0x0a000000u | (c >> 14), srv = 0xc0a80101u;
	uint16_t cp = (uint16_t)(1024 + (c & 0x3fff));
	uint32_t a = reply ? srv : cli, b = reply ? cli : srv;

	memset(k, 0, sizeof(*k));
	k->family = 4;
	k->proto = ZOC_IPPROTO_TCP;
	k->src[0] = (uint8_t)(a >> 24), k->src[1] = (uint8_t)(a >> 16);
	k->src[2] = (uint8_t)(a >> 8), k->src[3] = (uint8_t)a;
	k->dst[0] = (uint8_t)(b >> 24), k->dst[1] = (uint8_t)(b >> 16);
	k->dst[2] = (uint8_t)(b >> 8), k->dst[3] = (uint8_t)b;
	k->sport = reply ? 80 : cp;
	k->dport = reply ? cp : 80;
	k->tcp_flags = fl;
	k->seq = seq;
	k->ack = ack;
	k->win = 65535;
}

/* The 7 segments of connection c, step s (0..6): client is the VM
 * (egress), the server remote (ingress). */
static enum zoc_ct_dir seg(struct zoc_flowkey *k, uint32_t c, int s)
{
	const uint32_t ci = 1000 + c, si = 5000 + c * 7;

	switch (s) {
	case 0: mk(k, c, 0, ZOC_TCP_SYN, ci, 0); return ZOC_CT_EGRESS;
	case 1: mk(k, c, 1, ZOC_TCP_SYN | ZOC_TCP_ACK, si, ci + 1); return ZOC_CT_INGRESS;
	case 2: mk(k, c, 0, ZOC_TCP_ACK, ci + 1, si + 1); return ZOC_CT_EGRESS;
	case 3: mk(k, c, 0, ZOC_TCP_ACK | ZOC_TCP_FIN, ci + 1, si + 1); return ZOC_CT_EGRESS;
	case 4: mk(k, c, 1, ZOC_TCP_ACK, si + 1, ci + 2); return ZOC_CT_INGRESS;
	case 5: mk(k, c, 1, ZOC_TCP_ACK | ZOC_TCP_FIN, si + 1, ci + 2); return ZOC_CT_INGRESS;
	default: mk(k, c, 0, ZOC_TCP_ACK, ci + 2, si + 2); return ZOC_CT_EGRESS;
	}
}

static long rss(void)
{
	long size, res = -1;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%ld %ld", &size, &res) != 2)
			res = -1;
		fclose(f);
	}
	return res * sysconf(_SC_PAGESIZE);
}

static struct zoc_sg *mksg(void)
{
	struct zoc_sg *sg = zoc_sg_create("bench");
	struct zoc_sg_rule r = {.icmp_type = -1, .icmp_code = -1};

	/* A realistic small group: ssh and https in, dns and web out. */
	r.dir = ZOC_CT_INGRESS, r.proto = 6, r.port_min = r.port_max = 22;
	zoc_sg_rule_add(sg, &r, NULL);
	r.port_min = r.port_max = 443;
	zoc_sg_rule_add(sg, &r, NULL);
	r.dir = ZOC_CT_EGRESS, r.proto = 17, r.port_min = r.port_max = 53;
	zoc_sg_rule_add(sg, &r, NULL);
	r.proto = 6, r.port_min = 80, r.port_max = 80;
	zoc_sg_rule_add(sg, &r, NULL);
	r.port_min = r.port_max = 443;
	zoc_sg_rule_add(sg, &r, NULL);
	return sg;
}

int main(int argc, char **argv)
{
	uint32_t n = 2000000, live = 1u << 22;
	bool burst = false;
	int opt;

	while ((opt = getopt(argc, argv, "n:s:b")) != -1) {
		if (opt == 'n')
			n = (uint32_t)strtoul(optarg, NULL, 0);
		else if (opt == 's')
			live = (uint32_t)strtoul(optarg, NULL, 0);
		else if (opt == 'b')
			burst = true;
		else {
			fprintf(stderr, "usage: ct-bench [-n CONNS] [-s SESSIONS] [-b]\n");
			return 2;
		}
	}
	zoc_log_set_level(ZOC_LOG_ERR);
	{
		struct zoc_ct_config cfg = {.capacity = n < 64 ? 64 : n};
		struct zoc_ct *ct = zoc_ct_create(&cfg);
		struct zoc_sg *sg = mksg();
		const struct zoc_sg_ruleset *rs = zoc_sg_rules(sg);
		struct zoc_ct_stats st;
		uint64_t t0, t1, bad = 0, now = 1000000000000ull;

		if (!ct || !sg)
			return 1;
		t0 = zoc_now_ns();
		if (!burst) {
			for (uint32_t c = 0; c < n; c++) {
				for (int s = 0; s < 7; s++) {
					struct zoc_flowkey k;
					enum zoc_ct_dir d = seg(&k, c, s);

					bad += zoc_ct_is_drop(zoc_ct_process(ct, rs, 1, d, &k, now));
				}
				if ((c & 31) == 0)
					zoc_ct_poll(ct, now, 32);
			}
		} else {
			struct zoc_flowkey keys[32];
			const struct zoc_flowkey *kp[32];
			uint8_t v[32];

			for (int i = 0; i < 32; i++)
				kp[i] = &keys[i];
			for (uint32_t c = 0; c + 32 <= n; c += 32) {
				for (int s = 0; s < 7; s++) {
					enum zoc_ct_dir d = ZOC_CT_EGRESS;

					for (int i = 0; i < 32; i++)
						d = seg(&keys[i], c + (uint32_t)i, s);
					zoc_ct_process_burst(ct, rs, 1, d, kp, 32, now, v);
					for (int i = 0; i < 32; i++)
						bad += zoc_ct_is_drop(v[i]);
				}
				zoc_ct_poll(ct, now, 32);
			}
			n -= n % 32;
		}
		t1 = zoc_now_ns();
		zoc_ct_get_stats(ct, &st);
		printf("rate: %u connections (7 segments each, %s) in %.3f s: %.0f conn/s, %.2f Mpps "
		       "on one core; drops %llu; TIME_WAIT %llu\n",
		       n, burst ? "bursts of 32" : "one by one", (double)(t1 - t0) / 1e9,
		       n / ((double)(t1 - t0) / 1e9), 7.0 * n / ((double)(t1 - t0) / 1e3),
		       (unsigned long long)bad,
		       (unsigned long long)st.per_state[ZOC_CT_S_TIME_WAIT]);
		zoc_ct_destroy(ct);
		zoc_sg_destroy(sg);
	}
	if (live) {
		struct zoc_ct_config cfg = {.capacity = live};
		struct zoc_ct *ct = zoc_ct_create(&cfg);
		struct zoc_ct_stats st;
		long before, after;
		uint64_t now = 1000000000000ull;

		if (!ct)
			return 1;
		before = rss();
		for (uint32_t c = 0; c < live; c++)
			for (int s = 0; s < 3; s++) {
				struct zoc_flowkey k;
				enum zoc_ct_dir d = seg(&k, c, s);

				zoc_ct_process(ct, NULL, 1, d, &k, now);
			}
		after = rss();
		zoc_ct_get_stats(ct, &st);
		printf("memory: %llu ESTABLISHED sessions: RSS +%.1f MiB = %.1f bytes/session "
		       "(entry %u B + index); 16M sessions would take %.2f GiB\n",
		       (unsigned long long)st.per_state[ZOC_CT_S_ESTABLISHED],
		       (after - before) / 1048576.0, (double)(after - before) / live,
		       zoc_ct_entry_size(),
		       (double)(after - before) / live * 16777216.0 / 1073741824.0);
		zoc_ct_destroy(ct);
	}
	return 0;
}
