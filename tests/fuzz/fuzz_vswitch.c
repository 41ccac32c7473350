/* SPDX-License-Identifier: MIT */
/*
 * fuzz_vswitch.c - libFuzzer target for the embedded switch (src/net):
 * arbitrary frame sequences into a switch with six fake ports.
 *
 * Per input, a fresh switch "fz" (FDB of 64 entries so eviction and the
 * full table are reachable, flow cache of 16, 64 sessions growing to 128,
 * conntrack flow cache of 8) with ports:
 *   0 none            1 access 10          2 access 20, MTU 9000
 *   3 trunk 10,20,30  4 trunk 10, native 20, flood limit 50/s
 *   5 access 10, accepts nothing (ring full)
 * Ports 1 and 3 start with a security group (ingress tcp 22 and udp,
 * egress tcp 80-443 and icmp), so IP frames from and to them go through
 * connection tracking.
 * Input: records until the data ends:
 *   byte 0  op: bits 0-2 port (mod 6); bits 3-5 action:
 *           0 one frame, 1 a burst of 2..33 copies (2 if > 2 KiB), 2 advance the clock by
 *           byte 1 seconds and age, 3 toggle the port's enabled flag,
 *           4 set the port's MTU to 68 + 36 * byte 1, 5 one frame with MACs
 *           from a set of 4 (byte 1 picks dst/src), 6 the port's access /
 *           native VID from byte 1 and its MAC on/off from byte 2, 7 attach /
 *           detach the group on the port (refused on the uplink 4)
 *   bytes 1-2 frame length (little endian, mod 9300)
 *   then    the frame bytes (zero-filled past the end of the input)
 * Checks besides the sanitizers: a port never receives a frame it sent
 * (split horizon), every delivered frame is at least 14 bytes and fits the
 * port's MTU plus headers, and after the switch is torn down every packet
 * buffer is back in the pool.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/reactor.h"
#include "net/pkt.h"
#include "net/secgroup.h"
#include "net/vswitch.h"

#define NPORTS 6
#define N_SMALL 512
#define N_LARGE 64

struct fz_port {
	struct zoc_port *port;
	unsigned accept;
	uint32_t mtu;
};

static struct fz_port g_ports[NPORTS];
static uint64_t g_now;
static struct zoc_sg *g_sg;

static void sg_rule(const char *text)
{
	json_t *j = json_loads(text, 0, NULL);
	struct zoc_sg_rule r;
	char err[128];
	uint32_t id;

	if (!j || zoc_sg_rule_from_json(j, &r, err, sizeof(err)) || zoc_sg_rule_add(g_sg, &r, &id))
		abort();
	json_decref(j);
}

static uint64_t fz_clock(void *arg)
{
	return g_now;
}

static unsigned fz_tx(struct zoc_port *port, struct zoc_pkt **pkts, unsigned n)
{
	struct fz_port *f = zoc_port_ctx(port);
	unsigned k = n < f->accept ? n : f->accept;

	for (unsigned i = 0; i < n; i++) {
		if (pkts[i]->in_port == zoc_port_id(port)) {
			fprintf(stderr, "split horizon violated on port %u\n", zoc_port_id(port));
			abort();
		}
		if (pkts[i]->len < 14 || pkts[i]->len > f->mtu + 14 + 8) {
			fprintf(stderr, "bad frame length %u on port %u (mtu %u)\n", pkts[i]->len,
				zoc_port_id(port), f->mtu);
			abort();
		}
	}
	zoc_pkt_free_bulk(pkts, k);
	return k;
}

static const struct zoc_port_ops g_ops = {.type = "fuzz", .tx_burst = fz_tx};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct zoc_reactor_opts o = {0};

	zoc_log_set_level(ZOC_LOG_ERR);
	if (zoc_reactors_init(&o) || zoc_pktpools_init(N_SMALL, N_LARGE))
		abort();
	g_sg = zoc_sg_create("fz");
	if (!g_sg)
		abort();
	sg_rule("{\"direction\": \"ingress\", \"protocol\": \"tcp\", \"port_min\": 22, "
		"\"port_max\": 22}");
	sg_rule("{\"direction\": \"ingress\", \"protocol\": \"udp\"}");
	sg_rule("{\"direction\": \"egress\", \"protocol\": \"tcp\", \"port_min\": 80, "
		"\"port_max\": 443}");
	sg_rule("{\"direction\": \"egress\", \"protocol\": \"icmp\"}");
	return 0;
}

static void setup(struct zoc_vswitch **swp)
{
	/* A small session table (growing once) and flow cache: full tables,
	 * growth and cache conflicts are reachable. */
	struct zoc_vswitch_opts opts = {.fdb_max = 64, .flow_cache = 16, .aging_s = 30,
					 .manual_aging = true, .ct_capacity = 64,
					 .ct_max_capacity = 128, .ct_flow_cache = 8};
	struct zoc_port_config c;

	if (zoc_vswitch_create("fz", &opts, swp))
		abort();
	g_now = 5ull * 1000000000ull;
	zoc_vswitch_set_clock(*swp, fz_clock, NULL);
	for (int i = 0; i < NPORTS; i++) {
		char nm[8];

		snprintf(nm, sizeof(nm), "p%d", i);
		zoc_port_config_init(&c, nm);
		switch (i) {
		case 1:
		case 5:
			c.vlan_mode = ZOC_VLAN_ACCESS;
			c.vid = 10;
			break;
		case 2:
			c.vlan_mode = ZOC_VLAN_ACCESS;
			c.vid = 20;
			c.mtu = 9000;
			break;
		case 3:
			c.vlan_mode = ZOC_VLAN_TRUNK;
			zoc_port_config_trunk_parse(&c, "10,20,30");
			break;
		case 4:
			c.kind = ZOC_PORT_UPLINK;
			c.vlan_mode = ZOC_VLAN_TRUNK;
			c.vid = 20;
			zoc_port_config_trunk_parse(&c, "10");
			c.flood_limit_pps = 50;
			break;
		}
		g_ports[i].accept = i == 5 ? 0 : ~0u;
		g_ports[i].mtu = c.mtu;
		if (zoc_vswitch_port_add(*swp, &c, &g_ops, &g_ports[i], &g_ports[i].port))
			abort();
		if ((i == 1 || i == 3) && zoc_vswitch_port_set_secgroup(g_ports[i].port, g_sg))
			abort();
	}
}

static void teardown(struct zoc_vswitch *sw)
{
	uint32_t s, l;

	for (int i = 0; i < NPORTS; i++)
		if (zoc_vswitch_port_remove(g_ports[i].port, NULL, NULL))
			abort();
	if (zoc_vswitch_destroy(sw))
		abort();
	zoc_pktpool_available(zoc_pktpool_local(), &s, &l);
	if (s != N_SMALL || l != N_LARGE) {
		fprintf(stderr, "packet leak: %u/%u small, %u/%u large\n", s, N_SMALL, l, N_LARGE);
		abort();
	}
}

static const uint8_t g_macs[4][6] = {
	{0x02, 0, 0, 0, 0, 1},
	{0x02, 0, 0, 0, 0, 2},
	{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	{0x01, 0x00, 0x5e, 0, 0, 1},
};

static struct zoc_pkt *frame(const uint8_t *d, size_t avail, uint32_t len)
{
	struct zoc_pkt *p = zoc_pkt_alloc(zoc_pktpool_local(), len);

	if (!p)
		return NULL;
	memset(zoc_pkt_data(p), 0, len);
	memcpy(zoc_pkt_data(p), d, avail < len ? avail : len);
	return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct zoc_vswitch *sw;
	size_t off = 0;

	setup(&sw);
	while (off + 3 <= size) {
		uint8_t op = data[off];
		unsigned pi = (op & 7) % NPORTS, act = (op >> 3) & 7;
		uint32_t len = (uint32_t)(data[off + 1] | data[off + 2] << 8) % 9300;
		struct fz_port *fp = &g_ports[pi];
		size_t avail;
		struct zoc_pkt *v[40];
		struct zoc_port_config c;
		unsigned n = 1;

		off += 3;
		avail = size - off;
		switch (act) {
		case 2:
			g_now += (uint64_t)data[off - 2] * 1000000000ull;
			zoc_vswitch_age(sw);
			continue;
		case 3:
			zoc_port_get_config(fp->port, &c);
			c.enabled = !c.enabled;
			zoc_port_set_config(fp->port, &c);
			continue;
		case 4:
			zoc_port_get_config(fp->port, &c);
			c.mtu = 68 + 36u * data[off - 2];
			if (c.mtu > 9000)
				c.mtu = 9000;
			if (!zoc_port_set_config(fp->port, &c))
				fp->mtu = c.mtu;
			continue;
		case 6:
			/* VLAN change: access VID / trunk native VID, MAC on or off
			 * (flushes the port's entries, learns its MAC again) */
			zoc_port_get_config(fp->port, &c);
			if (c.vlan_mode == ZOC_VLAN_ACCESS)
				c.vid = (uint16_t)(1 + data[off - 2] % 40);
			else if (c.vlan_mode == ZOC_VLAN_TRUNK)
				c.vid = (uint16_t)(data[off - 2] % 40);
			c.has_mac = data[off - 1] & 1;
			memcpy(c.mac, g_macs[data[off - 1] >> 1 & 1], 6);
			zoc_port_set_config(fp->port, &c);
			continue;
		case 7:
			if (zoc_vswitch_port_set_secgroup(
				    fp->port, zoc_vswitch_port_secgroup(fp->port) ? NULL : g_sg) !=
			    (pi == 4 && !zoc_vswitch_port_secgroup(fp->port) ? -EINVAL : 0))
				abort();
			continue;
		case 1:
			/* bursts of small frames (jumbo bursts only cost time) */
			n = len > 2048 ? 2 : 2 + data[off - 2] % 32;
			break;
		default:
			break;
		}
		for (unsigned i = 0; i < n; i++) {
			v[i] = frame(data + off, avail, len);
			if (!v[i]) {
				n = i;
				break;
			}
			if (act == 5 && len >= 12) {
				uint8_t sel = data[off - 2];

				memcpy(zoc_pkt_data(v[i]), g_macs[sel & 3], 6);
				memcpy(zoc_pkt_data(v[i]) + 6, g_macs[(sel >> 2) & 1], 6);
			}
		}
		if (n) {
			zoc_pkt_flow_hash(v[0]);
			zoc_vswitch_rx_burst(sw, fp->port, v, n);
		}
		off += avail < len ? avail : len;
	}
	/* JSON paths too. */
	json_decref(zoc_vswitch_to_json(sw));
	json_decref(zoc_vswitch_fdb_to_json(sw));
	teardown(sw);
	return 0;
}
