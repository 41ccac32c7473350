/* SPDX-License-Identifier: MIT */
/*
 * vswitch.c - the switch and its ports (vswitch.h, port.h).
 *
 * Data structures:
 *  - sw->ports[id]: the published port pointers the data path reads
 *    (acquire); NULL once a removal starts. sw->slots[id]: the ports that
 *    exist (control plane); a slot is reused only after the removal's grace
 *    period has ended.
 *  - port->conf: an immutable configuration, swapped as a whole (RCU: the
 *    old one is freed after zoc_reactors_barrier()).
 *  - sw->local[reactor]: everything a reactor writes on the data path: its
 *    flow cache, the per-output batches of the burst being switched, cache
 *    counters. Port counters are per (port, reactor) too.
 *  - port->rings[reactor]: SPSC rings from an input reactor to the port's
 *    owner, drained by a poller on the owner (only with > 1 reactor).
 *  - sw->ct[reactor]: the conntrack partitions, one per reactor, each
 *    touched only by its reactor; sw->steer[src * n + dst]: SPSC rings that
 *    carry a frame to the reactor owning its session's partition (p->user
 *    holds the input port, the forwarding decision and the ports'
 *    incarnations meanwhile); port->sg: the RCU-published security group.
 */
#include "net/vswitch.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"
#include "net/conntrack.h"
#include "net/fdb.h"
#include "net/flowkey.h"
#include "net/gso.h"
#include "net/ring.h"
#include "net/secgroup.h"

#define ETH_HLEN 14
#define VLAN_HLEN 4
#define TPID_8021Q 0x8100

/* Key reference of a batched frame (sw_local.okey). */
#define KEY_NONE 0xff /* not IP or not parsed: passes untracked */
#define KEY_BAD 0xfe  /* malformed IP: dropped by a port with a group */
#define OUT_FLOOD 0xffff

/* Conntrack background work per partition: every AGE_PERIOD_US, up to
 * AGE_BUDGET entries of the expiry sweep (docs/conntrack.md). */
#define AGE_PERIOD_US 10000
#define AGE_BUDGET 4096

struct port_conf {
	struct zoc_port_config c;
};

struct port_stats_pr {
	struct zoc_port_stats s;
} __attribute__((aligned(ZOC_CACHELINE)));

struct zoc_port {
	struct zoc_vswitch *sw;
	uint16_t id;
	unsigned owner;
	enum zoc_port_kind kind;
	char name[ZOC_PORT_NAME_MAX];
	const struct zoc_port_ops *ops;
	void *ctx;
	struct port_conf *conf;      /* RCU-published */
	int removing;                /* atomic flag */
	uint16_t inc;                /* incarnation of the slot (steered frames check it) */
	struct zoc_sg *sg;           /* security group, RCU-published, NULL = none */
	uint32_t gso_caps;           /* ZOC_GSO_CAP_*, atomic (owner sets) */
	/* owner reactor only */
	double flood_tokens;
	uint64_t flood_last_ns;
	/* cross-reactor delivery */
	unsigned nrings;
	struct zoc_spsc **rings;     /* [input reactor]; NULL for the owner */
	struct zoc_poller *drain;
	int kick_efd;
	int armed;                   /* owner sleeping: producers kick */
	struct port_stats_pr *stats; /* [reactor] */
	void (*done)(void *arg);
	void *done_arg;
};

struct part_ref {
	struct zoc_vswitch *sw;
	unsigned part;
};

struct fc_entry {
	uint64_t key;
	uint32_t gen;
	uint16_t in_port;
	uint16_t out_port;
};

struct sw_local {
	struct fc_entry *fc;
	uint32_t fc_mask;
	uint64_t hits, misses, floods;
	bool busy;                   /* inside rx_burst (nesting guard) */
	unsigned ntouched;
	uint16_t touched[ZOC_VSWITCH_MAX_PORTS];
	uint8_t cnt[ZOC_VSWITCH_MAX_PORTS];
	struct zoc_pkt *out[ZOC_VSWITCH_MAX_PORTS][ZOC_PKT_BURST];
	/* conntrack: the burst being switched */
	bool ct_on;                  /* groups were attached when it started */
	uint64_t now_ns;
	struct zoc_flowkey keys[ZOC_PKT_BURST];
	uint8_t okey[ZOC_VSWITCH_MAX_PORTS][ZOC_PKT_BURST]; /* index in keys / KEY_* */
	struct zoc_pkt **sq;         /* [partition][ZOC_PKT_BURST]: frames to steer */
	uint8_t *sqn;                /* [partition] */
	/* the partition this reactor owns */
	struct zoc_poller *steer_poller, *age_poller;
	bool ct_started;
	int kick_efd;
	int armed;
} __attribute__((aligned(ZOC_CACHELINE)));

struct zoc_vswitch {
	char name[ZOC_VSWITCH_NAME_MAX];
	struct zoc_vswitch_opts opts;
	struct zoc_fdb *fdb;
	uint64_t (*clock)(void *arg);
	void *clock_arg;
	struct zoc_poller *ager;
	unsigned nlocal;
	struct sw_local *local;
	struct zoc_vswitch *next;
	struct zoc_port *slots[ZOC_VSWITCH_MAX_PORTS];
	unsigned nslots; /* ports that exist */
	uint16_t port_inc[ZOC_VSWITCH_MAX_PORTS];
	struct zoc_ct **ct;          /* [reactor] */
	struct part_ref *prefs;      /* [reactor]: poller arguments */
	struct zoc_spsc **steer;     /* [src * nlocal + dst], NULL with one reactor */
	int ctl_pending;             /* control messages in flight (atomic) */
	unsigned n_sg;               /* ports with a group (atomic for the data path) */
	/* read by the data path */
	uint64_t gen __attribute__((aligned(ZOC_CACHELINE)));
	unsigned nports_hi __attribute__((aligned(ZOC_CACHELINE)));
	struct zoc_port *ports[ZOC_VSWITCH_MAX_PORTS];
};

static struct zoc_vswitch *g_switches;

/* ---- helpers ---------------------------------------------------------- */

static inline unsigned cur_reactor(const struct zoc_vswitch *sw)
{
	struct zoc_reactor *r = zoc_reactor_current();
	unsigned i = r ? zoc_reactor_index(r) : 0;

	return i < sw->nlocal ? i : 0;
}

static inline uint64_t sw_now_ns(struct zoc_vswitch *sw)
{
	return sw->clock ? sw->clock(sw->clock_arg) : zoc_now_ns();
}

/* Seconds for MAC learning on the fast path: the coarse clock (tick
 * resolution, read from the vDSO without touching the TSC) is enough, and on
 * VMs where the TSC read traps it costs a fraction of CLOCK_MONOTONIC (0.2 vs
 * 1.4 us measured on the loaded 2-vCPU kvm-clock test VM, once per burst). Same time
 * base as zoc_now_ns(), lagging by at most a tick. */
static inline uint32_t sw_now_s(struct zoc_vswitch *sw)
{
	struct timespec ts;

	if (sw->clock)
		return (uint32_t)(sw->clock(sw->clock_arg) / 1000000000ull);
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint32_t)ts.tv_sec;
}

static inline void bump_gen(struct zoc_vswitch *sw)
{
	__atomic_fetch_add(&sw->gen, 1, __ATOMIC_RELEASE);
}

static inline struct port_conf *conf_of(const struct zoc_port *p)
{
	return __atomic_load_n(&p->conf, __ATOMIC_ACQUIRE);
}

static inline uint16_t rd16(const uint8_t *b)
{
	return (uint16_t)(b[0] << 8 | b[1]);
}

/* Two loads, no bytes stored and reloaded: a 6-byte memcpy into a zeroed
 * uint64_t compiles to two stores and one wider load that cannot be
 * forwarded from them (a ~15-cycle stall per frame, a quarter of the
 * switch's time at 64 B). */
static inline uint64_t mac_key(const uint8_t *mac, uint16_t vid)
{
	uint32_t lo;
	uint16_t hi;

	memcpy(&lo, mac, 4);
	memcpy(&hi, mac + 4, 2);
	return lo | (uint64_t)hi << 32 | (uint64_t)(vid & 0xfff) << 48 | 1ull << 63;
}

static inline bool trunk_has(const struct zoc_port_config *c, uint16_t vid)
{
	return c->trunk[vid / 64] >> (vid % 64) & 1;
}

/* Is a port with configuration c a member of switching domain vid? */
static inline bool conf_member(const struct zoc_port_config *c, uint16_t vid)
{
	switch (c->vlan_mode) {
	case ZOC_VLAN_NONE:
		return vid == 0;
	case ZOC_VLAN_ACCESS:
		return vid == c->vid;
	case ZOC_VLAN_TRUNK:
		return vid != 0 && (vid == c->vid || trunk_has(c, vid));
	}
	return false;
}

/* Payload bytes after the Ethernet header and one 802.1Q tag if present. */
static inline uint32_t payload_len(const struct zoc_pkt *p)
{
	const uint8_t *d = zoc_pkt_cdata(p);
	uint32_t l = p->len - ETH_HLEN;

	if (rd16(d + 12) == TPID_8021Q && l >= VLAN_HLEN)
		l -= VLAN_HLEN;
	return l;
}

static inline bool mtu_ok(const struct zoc_pkt *p, uint32_t mtu)
{
	if (p->gso_type != ZOC_PKT_GSO_NONE)
		return p->gso_size <= mtu;
	return payload_len(p) <= mtu;
}

/* Counters: written by one reactor, read by the control plane. A relaxed
 * load + store (not an atomic add): plain moves on x86, and race-free for
 * the readers' relaxed loads. */
static inline void stat_add(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static inline void count_drop(struct zoc_port *port, unsigned me, enum zoc_drop_reason why,
			      unsigned n)
{
	stat_add(&port->stats[me].s.drops[why], n);
}

static void drop(struct zoc_port *port, unsigned me, enum zoc_drop_reason why, struct zoc_pkt *p)
{
	count_drop(port, me, why, 1);
	zoc_pkt_free(p);
}

/* ---- accessors ---------------------------------------------------------- */

uint16_t zoc_port_id(const struct zoc_port *port)
{
	return port->id;
}

const char *zoc_port_name(const struct zoc_port *port)
{
	return port->name;
}

void *zoc_port_ctx(const struct zoc_port *port)
{
	return port->ctx;
}

struct zoc_vswitch *zoc_port_switch(const struct zoc_port *port)
{
	return port->sw;
}

unsigned zoc_port_owner(const struct zoc_port *port)
{
	return port->owner;
}

const char *zoc_vswitch_name(const struct zoc_vswitch *sw)
{
	return sw->name;
}

void zoc_port_get_stats(const struct zoc_port *port, struct zoc_port_stats *st)
{
	memset(st, 0, sizeof(*st));
	for (unsigned r = 0; r < port->sw->nlocal; r++) {
		const uint64_t *src = (const uint64_t *)&port->stats[r].s;
		uint64_t *dst = (uint64_t *)st;

		for (size_t i = 0; i < sizeof(*st) / sizeof(uint64_t); i++)
			dst[i] += __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	}
}

void zoc_port_count_drop(struct zoc_port *port, enum zoc_drop_reason why, unsigned n)
{
	if ((unsigned)why < ZOC_DROP__COUNT)
		count_drop(port, cur_reactor(port->sw), why, n);
}

/* ---- delivery to the owner ------------------------------------------- */

/* On the owner: hand pkts to tx_burst, count, free what it refused. */
static void tx_owner_burst(struct zoc_port *port, unsigned me, struct zoc_pkt **pkts, unsigned n)
{
	struct zoc_port_stats *st = &port->stats[me].s;
	uint32_t lens[ZOC_PKT_BURST];
	unsigned acc;
	uint64_t bytes = 0;

	for (unsigned i = 0; i < n; i++)
		lens[i] = pkts[i]->len;
	acc = port->ops->tx_burst(port, pkts, n);
	if (ZOC_UNLIKELY(acc > n))
		acc = n;
	for (unsigned i = 0; i < acc; i++)
		bytes += lens[i];
	stat_add(&st->tx_packets, acc);
	stat_add(&st->tx_bytes, bytes);
	if (ZOC_UNLIKELY(acc < n)) {
		stat_add(&st->drops[ZOC_DROP_RING_FULL], n - acc);
		zoc_pkt_free_bulk(pkts + acc, n - acc);
	}
}

void zoc_port_set_gso_caps(struct zoc_port *port, uint32_t caps)
{
	__atomic_store_n(&port->gso_caps, caps, __ATOMIC_RELAXED);
}

uint32_t zoc_port_gso_caps(const struct zoc_port *port)
{
	return __atomic_load_n(&port->gso_caps, __ATOMIC_RELAXED);
}

/* The slow path of tx_owner: some packets are GSO super-frames the port
 * cannot take whole; cut those into segments of at most the port's MTU
 * (net/gso.c, from the owner's pool) and deliver in bursts. */
static void tx_owner_gso(struct zoc_port *port, unsigned me, struct zoc_pkt **pkts, unsigned n,
			 uint32_t caps)
{
	struct zoc_pkt *segs[ZOC_GSO_MAX_SEGS];
	struct zoc_pkt *batch[ZOC_PKT_BURST];
	struct zoc_pktpool *pool = zoc_pktpool_local();
	uint32_t mtu = conf_of(port)->c.mtu;
	unsigned nb = 0;

	for (unsigned i = 0; i < n; i++) {
		struct zoc_pkt *p = pkts[i];
		int k;

		if (p->gso_type == ZOC_PKT_GSO_NONE || zoc_gso_accepts(caps, p)) {
			batch[nb++] = p;
			if (nb == ZOC_PKT_BURST) {
				tx_owner_burst(port, me, batch, nb);
				nb = 0;
			}
			continue;
		}
		k = zoc_gso_segment(p, mtu, pool, segs, ZOC_GSO_MAX_SEGS);
		if (ZOC_UNLIKELY(k < 0)) {
			ZOC_WARN_RL("vswitch: port %s: GSO frame (type %u, size %u, %u B) not "
				    "segmented: %s",
				    port->name, p->gso_type, p->gso_size, p->len, strerror(-k));
			drop(port, me,
			     k == -ENOBUFS    ? ZOC_DROP_NO_BUFFER
			     : k == -EMSGSIZE ? ZOC_DROP_MTU
					      : ZOC_DROP_INVALID,
			     p);
			continue;
		}
		zoc_pkt_free(p);
		for (int j = 0; j < k; j++) {
			batch[nb++] = segs[j];
			if (nb == ZOC_PKT_BURST) {
				tx_owner_burst(port, me, batch, nb);
				nb = 0;
			}
		}
	}
	if (nb)
		tx_owner_burst(port, me, batch, nb);
}

static void tx_owner(struct zoc_port *port, unsigned me, struct zoc_pkt **pkts, unsigned n)
{
	uint8_t gso = 0;

	for (unsigned i = 0; i < n; i++)
		gso |= pkts[i]->gso_type;
	if (ZOC_UNLIKELY(gso))
		tx_owner_gso(port, me, pkts, n, zoc_port_gso_caps(port));
	else
		tx_owner_burst(port, me, pkts, n);
}

static int port_drain(void *arg)
{
	struct zoc_port *port = arg;
	struct zoc_pkt *pkts[ZOC_PKT_BURST];
	int work = 0;

	for (unsigned i = 0; i < port->nrings; i++) {
		unsigned n;

		if (!port->rings[i])
			continue;
		n = zoc_spsc_dequeue(port->rings[i], (void **)pkts, ZOC_PKT_BURST);
		if (n) {
			tx_owner(port, port->owner, pkts, n);
			work += (int)n;
		}
	}
	return work;
}

static int port_arm(void *arg)
{
	struct zoc_port *port = arg;

	__atomic_store_n(&port->armed, 1, __ATOMIC_SEQ_CST);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	for (unsigned i = 0; i < port->nrings; i++)
		if (port->rings[i] && zoc_spsc_count(port->rings[i]))
			return 1;
	return 0;
}

static void port_disarm(void *arg)
{
	struct zoc_port *port = arg;

	__atomic_store_n(&port->armed, 0, __ATOMIC_RELAXED);
}

static void port_kicked(void *arg, uint32_t events)
{
	struct zoc_port *port = arg;
	uint64_t v;

	if (read(port->kick_efd, &v, sizeof(v)) < 0)
		return;
}

static const struct zoc_poller_ops g_drain_ops = {
	.poll = port_drain,
	.arm = port_arm,
	.disarm = port_disarm,
};

/* From an input reactor that is not the owner. */
static void tx_remote(struct zoc_port *port, unsigned me, struct zoc_pkt **pkts, unsigned n)
{
	unsigned acc = zoc_spsc_enqueue(port->rings[me], (void *const *)pkts, n);

	if (ZOC_UNLIKELY(acc < n)) {
		count_drop(port, me, ZOC_DROP_RING_FULL, n - acc);
		zoc_pkt_free_bulk(pkts + acc, n - acc);
	}
	if (acc && port->kick_efd >= 0) {
		uint64_t one = 1;

		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (__atomic_load_n(&port->armed, __ATOMIC_RELAXED) &&
		    write(port->kick_efd, &one, sizeof(one)) < 0)
			ZOC_WARN_RL("vswitch: port %s: kick: %s", port->name, strerror(errno));
	}
}

/* Egress processing for one packet on out (conf c): 0 or a drop reason + 1. */
static inline int egress(const struct zoc_port_config *c, struct zoc_pkt *p)
{
	uint16_t vid = p->vlan_tci & 0xfff;
	uint8_t *d;

	if (ZOC_UNLIKELY(!c->enabled))
		return ZOC_DROP_PORT_DOWN + 1;
	if (ZOC_UNLIKELY(!mtu_ok(p, c->mtu)))
		return ZOC_DROP_MTU + 1;
	switch (c->vlan_mode) {
	case ZOC_VLAN_NONE:
		return vid == 0 ? 0 : ZOC_DROP_VLAN + 1;
	case ZOC_VLAN_ACCESS:
		return vid == c->vid ? 0 : ZOC_DROP_VLAN + 1;
	case ZOC_VLAN_TRUNK:
		if (vid == 0)
			return ZOC_DROP_VLAN + 1;
		if (vid == c->vid)
			return 0;
		if (!trunk_has(c, vid))
			return ZOC_DROP_VLAN + 1;
		d = zoc_pkt_push(p, VLAN_HLEN);
		if (ZOC_UNLIKELY(!d))
			return ZOC_DROP_NO_BUFFER + 1;
		memmove(d, d + VLAN_HLEN, 12);
		d[12] = TPID_8021Q >> 8;
		d[13] = TPID_8021Q & 0xff;
		d[14] = (uint8_t)(p->vlan_tci >> 8);
		d[15] = (uint8_t)p->vlan_tci;
		/* Offsets of the offload metadata count from the frame start. */
		if (p->flags & ZOC_PKT_F_CSUM_NEEDED)
			p->csum_start = (uint16_t)(p->csum_start + VLAN_HLEN);
		if (p->hdr_len)
			p->hdr_len = (uint16_t)(p->hdr_len + VLAN_HLEN);
		return 0;
	}
	return ZOC_DROP_VLAN + 1;
}

static void deliver(struct zoc_port *out, unsigned me, struct zoc_pkt **pkts, unsigned n)
{
	const struct zoc_port_config *c = &conf_of(out)->c;
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++) {
		int why = egress(c, pkts[i]);

		if (ZOC_UNLIKELY(why))
			drop(out, me, (enum zoc_drop_reason)(why - 1), pkts[i]);
		else
			pkts[k++] = pkts[i];
	}
	if (!k)
		return;
	if (out->owner == me || !out->rings)
		tx_owner(out, me, pkts, k);
	else
		tx_remote(out, me, pkts, k);
}

/* ---- the input path --------------------------------------------------- */

static inline void batch_add(struct sw_local *loc, uint16_t out, struct zoc_pkt *p, uint8_t kidx)
{
	if (!loc->cnt[out])
		loc->touched[loc->ntouched++] = out;
	loc->okey[out][loc->cnt[out]] = kidx;
	loc->out[out][loc->cnt[out]++] = p;
}

static bool learn_allowed(void *arg, uint16_t port)
{
	struct zoc_vswitch *sw = arg;
	struct zoc_port *p = __atomic_load_n(&sw->ports[port], __ATOMIC_ACQUIRE);

	return p && !__atomic_load_n(&p->removing, __ATOMIC_ACQUIRE);
}

/* Ingress checks and VLAN classification. Sets p->vlan_tci; the frame is
 * left untagged for VLAN-aware ports. 0 or a drop reason + 1. */
static inline int ingress(const struct zoc_port_config *c, struct zoc_pkt *p)
{
	uint8_t *d = zoc_pkt_data(p);
	uint16_t tci = 0, vid;
	bool tagged = false;

	if (ZOC_UNLIKELY(p->len < ETH_HLEN))
		return ZOC_DROP_INVALID + 1;
	if (ZOC_UNLIKELY(d[6] & 1)) /* multicast / broadcast source */
		return ZOC_DROP_INVALID + 1;
	if (rd16(d + 12) == TPID_8021Q) {
		if (ZOC_UNLIKELY(p->len < ETH_HLEN + VLAN_HLEN))
			return ZOC_DROP_INVALID + 1;
		tci = rd16(d + 14);
		if (ZOC_UNLIKELY((tci & 0xfff) == 0xfff))
			return ZOC_DROP_INVALID + 1;
		tagged = true;
	}
	if (ZOC_UNLIKELY(!mtu_ok(p, c->mtu)))
		return ZOC_DROP_MTU + 1;
	vid = tci & 0xfff;
	switch (c->vlan_mode) {
	case ZOC_VLAN_NONE:
		p->vlan_tci = 0;
		return 0;
	case ZOC_VLAN_ACCESS:
		if (tagged && vid != 0)
			return ZOC_DROP_VLAN + 1;
		tci = (uint16_t)((tci & 0xf000) | c->vid);
		break;
	case ZOC_VLAN_TRUNK:
		if (tagged && vid != 0) {
			if (vid != c->vid && !trunk_has(c, vid))
				return ZOC_DROP_VLAN + 1;
		} else {
			if (!c->vid)
				return ZOC_DROP_VLAN + 1;
			tci = (uint16_t)((tci & 0xf000) | c->vid);
		}
		break;
	default:
		return ZOC_DROP_VLAN + 1;
	}
	if (tagged) {
		memmove(d + VLAN_HLEN, d, 12);
		zoc_pkt_pull(p, VLAN_HLEN);
		if ((p->flags & ZOC_PKT_F_CSUM_NEEDED) && p->csum_start >= ETH_HLEN + VLAN_HLEN)
			p->csum_start = (uint16_t)(p->csum_start - VLAN_HLEN);
		if (p->hdr_len >= VLAN_HLEN)
			p->hdr_len = (uint16_t)(p->hdr_len - VLAN_HLEN);
	}
	p->vlan_tci = tci;
	return 0;
}

static void flood(struct zoc_vswitch *sw, struct sw_local *loc, struct zoc_port *in,
		  unsigned me, struct zoc_pkt *p, uint8_t kidx)
{
	struct zoc_port *members[ZOC_VSWITCH_MAX_PORTS];
	unsigned m = 0, hi = __atomic_load_n(&sw->nports_hi, __ATOMIC_ACQUIRE);
	uint16_t vid = p->vlan_tci & 0xfff;
	struct zoc_pktpool *pool = zoc_pktpool_local();

	for (unsigned i = 0; i < hi; i++) {
		struct zoc_port *o = __atomic_load_n(&sw->ports[i], __ATOMIC_ACQUIRE);
		const struct zoc_port_config *c;

		if (!o || o == in)
			continue;
		c = &conf_of(o)->c;
		if (c->enabled && conf_member(c, vid))
			members[m++] = o; /* safe until the end of this iteration */
	}
	if (!m) {
		zoc_pkt_free(p);
		return;
	}
	for (unsigned i = 0; i + 1 < m; i++) {
		struct zoc_pkt *c = pool ? zoc_pkt_clone(pool, p) : NULL;

		if (ZOC_UNLIKELY(!c)) {
			count_drop(members[i], me, ZOC_DROP_NO_BUFFER, 1);
			continue;
		}
		batch_add(loc, members[i]->id, c, kidx);
	}
	batch_add(loc, members[m - 1]->id, p, kidx);
}

static bool flood_allowed(struct zoc_port *in, const struct zoc_port_config *c, uint64_t now)
{
	double pps = c->flood_limit_pps;

	if (!c->flood_limit_pps)
		return true;
	if (now > in->flood_last_ns) {
		in->flood_tokens += (double)(now - in->flood_last_ns) * pps / 1e9;
		in->flood_last_ns = now;
	}
	if (in->flood_tokens > pps)
		in->flood_tokens = pps;
	if (in->flood_tokens < 1.0)
		return false;
	in->flood_tokens -= 1.0;
	return true;
}

/* ---- security groups and connection tracking --------------------------- */

static inline struct zoc_sg *port_sg(const struct zoc_port *p)
{
	return __atomic_load_n(&p->sg, __ATOMIC_ACQUIRE);
}

/* p->user while the switch holds a frame that needs conntrack. */
static inline uint64_t meta_make(const struct zoc_port *in, const struct zoc_port *out)
{
	return (uint64_t)in->id | (uint64_t)in->inc << 16 |
	       (uint64_t)(out ? out->id : OUT_FLOOD) << 32 | (uint64_t)(out ? out->inc : 0) << 48;
}

static inline uint16_t meta_in(uint64_t m)
{
	return (uint16_t)m;
}

static inline uint16_t meta_in_inc(uint64_t m)
{
	return (uint16_t)(m >> 16);
}

static inline uint16_t meta_out(uint64_t m)
{
	return (uint16_t)(m >> 32);
}

static inline uint16_t meta_out_inc(uint64_t m)
{
	return (uint16_t)(m >> 48);
}

/* The port of id with incarnation inc, if still published. */
static inline struct zoc_port *port_live(struct zoc_vswitch *sw, uint16_t id, uint16_t inc)
{
	struct zoc_port *p;

	if (id >= ZOC_VSWITCH_MAX_PORTS)
		return NULL;
	p = __atomic_load_n(&sw->ports[id], __ATOMIC_ACQUIRE);
	return p && p->inc == inc ? p : NULL;
}

static inline enum zoc_drop_reason ct_drop_reason(uint8_t v)
{
	switch (v) {
	case ZOC_CT_DROP_SG:
		return ZOC_DROP_SECGROUP;
	case ZOC_CT_DROP_NO_SESSION:
		return ZOC_DROP_CT_NO_SESSION;
	case ZOC_CT_DROP_DIRECTION:
		return ZOC_DROP_CT_DIRECTION;
	case ZOC_CT_DROP_FULL:
		return ZOC_DROP_CT_FULL;
	case ZOC_CT_DROP_PORT_CAP:
		return ZOC_DROP_CT_PORT_CAP;
	case ZOC_CT_DROP_FRAG:
		return ZOC_DROP_CT_FRAGMENT;
	default:
		return ZOC_DROP_CT_INVALID;
	}
}

static inline void forward(struct zoc_vswitch *sw, struct sw_local *loc, struct zoc_port *in,
			   unsigned me, struct zoc_pkt *p, struct zoc_port *out, uint8_t kidx)
{
	if (out)
		batch_add(loc, out->id, p, kidx);
	else
		flood(sw, loc, in, me, p, kidx);
}

static void steer_kick(struct zoc_vswitch *sw, unsigned part)
{
	struct sw_local *dst = &sw->local[part];
	uint64_t one = 1;

	if (dst->kick_efd < 0)
		return;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(&dst->armed, __ATOMIC_RELAXED) &&
	    write(dst->kick_efd, &one, sizeof(one)) < 0)
		ZOC_WARN_RL("vswitch %s: steering kick: %s", sw->name, strerror(errno));
}

/* Frames queued for other partitions' reactors go out once per burst. */
static void steer_flush(struct zoc_vswitch *sw, struct sw_local *loc, struct zoc_port *in,
			unsigned me)
{
	for (unsigned part = 0; part < sw->nlocal; part++) {
		struct zoc_pkt **q = &loc->sq[part * ZOC_PKT_BURST];
		unsigned n = loc->sqn[part], acc;

		if (!n)
			continue;
		loc->sqn[part] = 0;
		acc = zoc_spsc_enqueue(sw->steer[me * sw->nlocal + part], (void *const *)q, n);
		if (ZOC_UNLIKELY(acc < n)) {
			count_drop(in, me, ZOC_DROP_RING_FULL, n - acc);
			zoc_pkt_free_bulk(q + acc, n - acc);
		}
		if (acc)
			steer_kick(sw, part);
	}
}

/* The input side of conntrack for frames of port in whose forwarding is
 * decided (p->user): parse, steer to the partition's reactor, track the
 * egress of a vNIC with a group (one zoc_ct_process_burst), then batch
 * per output with a reference to the key for the output's ingress check.
 * steered: the frames arrived through a steering ring (this reactor owns
 * their partition). */
static void ct_input(struct zoc_vswitch *sw, struct sw_local *loc, struct zoc_port *in,
		     unsigned me, struct zoc_pkt **pkts, unsigned n, bool steered)
{
	struct zoc_sg *isg = in->kind == ZOC_PORT_VNIC ? port_sg(in) : NULL;
	const struct zoc_sg_ruleset *irs = isg ? zoc_sg_rules(isg) : NULL;
	const struct zoc_flowkey *ek[ZOC_PKT_BURST];
	struct zoc_pkt *ep[ZOC_PKT_BURST];
	struct zoc_port *eo[ZOC_PKT_BURST];
	uint8_t ekidx[ZOC_PKT_BURST], v[ZOC_PKT_BURST];
	unsigned ne = 0, nk = 0;
	bool steering = false;

	for (unsigned i = 0; i < n; i++) {
		struct zoc_pkt *p = pkts[i];
		uint16_t o = meta_out(p->user);
		struct zoc_port *out = NULL;
		struct zoc_flowkey *k;
		int rc;

		if (o != OUT_FLOOD) {
			out = port_live(sw, o, meta_out_inc(p->user));
			if (ZOC_UNLIKELY(!out)) {
				drop(in, me, ZOC_DROP_PORT_DOWN, p);
				continue;
			}
		}
		/* Tracking needed: the input has a group, or the output has one,
		 * or a flood may reach one. */
		if (!isg && out && (out->kind != ZOC_PORT_VNIC || !port_sg(out))) {
			forward(sw, loc, in, me, p, out, KEY_NONE);
			continue;
		}
		k = &loc->keys[nk];
		rc = zoc_flowkey_parse(zoc_pkt_cdata(p), p->len, k);
		if (rc == -ENOENT) {
			forward(sw, loc, in, me, p, out, KEY_NONE); /* ARP etc. */
			continue;
		}
		if (ZOC_UNLIKELY(rc < 0)) {
			if (isg)
				drop(in, me, ZOC_DROP_CT_INVALID, p);
			else
				forward(sw, loc, in, me, p, out, KEY_BAD);
			continue;
		}
		if (!steered && sw->nlocal > 1) {
			unsigned part = zoc_ct_partition(zoc_flowkey_sym_hash(k), sw->nlocal);

			if (part != me) {
				loc->sq[part * ZOC_PKT_BURST + loc->sqn[part]++] = p;
				steering = true;
				continue;
			}
		}
		if (isg) {
			ep[ne] = p;
			eo[ne] = out;
			ek[ne] = k;
			ekidx[ne++] = (uint8_t)nk;
		} else {
			forward(sw, loc, in, me, p, out, (uint8_t)nk);
		}
		nk++;
	}
	if (steering)
		steer_flush(sw, loc, in, me);
	if (!ne)
		return;
	zoc_ct_process_burst(sw->ct[me], irs, in->id, ZOC_CT_EGRESS, ek, ne, loc->now_ns, v);
	for (unsigned i = 0; i < ne; i++) {
		if (ZOC_UNLIKELY(zoc_ct_is_drop(v[i])))
			drop(in, me, ct_drop_reason(v[i]), ep[i]);
		else
			forward(sw, loc, in, me, ep[i], eo[i], ekidx[i]);
	}
}

/* The output side: frames switched toward a vNIC with a group are tracked
 * as its ingress. Returns how many of pkts[0..n) are left (in order). */
static unsigned ct_output(struct zoc_vswitch *sw, struct sw_local *loc, struct zoc_port *out,
			  unsigned me, struct zoc_pkt **pkts, const uint8_t *okey, unsigned n)
{
	struct zoc_sg *sg = out->kind == ZOC_PORT_VNIC ? port_sg(out) : NULL;
	const struct zoc_flowkey *ks[ZOC_PKT_BURST];
	uint8_t at[ZOC_PKT_BURST], v[ZOC_PKT_BURST], why[ZOC_PKT_BURST];
	unsigned m = 0, k = 0;

	if (!sg)
		return n;
	for (unsigned i = 0; i < n; i++) {
		why[i] = 0;
		if (okey[i] == KEY_BAD)
			why[i] = ZOC_CT_DROP_INVALID;
		else if (okey[i] != KEY_NONE) {
			ks[m] = &loc->keys[okey[i]];
			at[m++] = (uint8_t)i;
		}
	}
	if (m) {
		zoc_ct_process_burst(sw->ct[me], zoc_sg_rules(sg), out->id, ZOC_CT_INGRESS, ks, m,
				     loc->now_ns, v);
		for (unsigned j = 0; j < m; j++)
			if (zoc_ct_is_drop(v[j]))
				why[at[j]] = v[j];
	}
	for (unsigned i = 0; i < n; i++) {
		if (ZOC_UNLIKELY(why[i]))
			drop(out, me, ct_drop_reason(why[i]), pkts[i]);
		else
			pkts[k++] = pkts[i];
	}
	return k;
}

/* One delivery per output port touched by the burst. */
static void deliver_touched(struct zoc_vswitch *sw, struct sw_local *loc, struct zoc_port *in,
			    unsigned me)
{
	for (unsigned t = 0; t < loc->ntouched; t++) {
		uint16_t o = loc->touched[t];
		struct zoc_port *out = __atomic_load_n(&sw->ports[o], __ATOMIC_ACQUIRE);
		unsigned cnt = loc->cnt[o];

		loc->cnt[o] = 0;
		if (ZOC_UNLIKELY(!out)) {
			/* Unpublished during this burst. */
			count_drop(in, me, ZOC_DROP_PORT_DOWN, cnt);
			zoc_pkt_free_bulk(loc->out[o], cnt);
			continue;
		}
		if (loc->ct_on) {
			cnt = ct_output(sw, loc, out, me, loc->out[o], loc->okey[o], cnt);
			if (!cnt)
				continue;
		}
		deliver(out, me, loc->out[o], cnt);
	}
	loc->ntouched = 0;
}

static void rx_chunk(struct zoc_vswitch *sw, struct zoc_port *in, struct zoc_pkt **pkts,
		     unsigned n)
{
	unsigned me = cur_reactor(sw);
	struct sw_local *loc = &sw->local[me];
	struct zoc_port_stats *st = &in->stats[me].s;
	const struct zoc_port_config *c = &conf_of(in)->c;
	struct zoc_pkt *ctp[ZOC_PKT_BURST];
	unsigned nct = 0;
	uint64_t gen, now_ns = 0, src, last_src = 0; /* mac_key() is never 0 */
	uint32_t now_s;
	uint64_t bytes = 0;
	bool ct_on;

	for (unsigned i = 0; i < n; i++)
		bytes += pkts[i]->len;
	stat_add(&st->rx_packets, n);
	stat_add(&st->rx_bytes, bytes);
	if (ZOC_UNLIKELY(!c->enabled || __atomic_load_n(&in->removing, __ATOMIC_ACQUIRE))) {
		stat_add(&st->drops[ZOC_DROP_PORT_DOWN], n);
		zoc_pkt_free_bulk(pkts, n);
		return;
	}
	gen = __atomic_load_n(&sw->gen, __ATOMIC_ACQUIRE);
	now_s = sw_now_s(sw);
	ct_on = __atomic_load_n(&sw->n_sg, __ATOMIC_ACQUIRE) != 0;
	loc->ct_on = ct_on;
	if (ct_on)
		loc->now_ns = now_ns = sw_now_ns(sw);
	loc->ntouched = 0;
	for (unsigned i = 0; i < n; i++) {
		struct zoc_pkt *p = pkts[i];
		struct zoc_port *op;
		const uint8_t *d;
		uint16_t vid;
		int why, out;

		p->in_port = in->id;
		why = ingress(c, p);
		if (ZOC_UNLIKELY(why)) {
			drop(in, me, (enum zoc_drop_reason)(why - 1), p);
			continue;
		}
		d = zoc_pkt_cdata(p);
		vid = p->vlan_tci & 0xfff;
		/* Learn the source (never a zero address), once per run of
		 * frames from one source: a burst from a vNIC is usually all
		 * one MAC, and learning it again within the burst changes
		 * nothing (same port, same second). */
		src = mac_key(d + 6, vid);
		if (src != last_src && ZOC_LIKELY(src & 0xffffffffffffull)) {
			int rc = zoc_fdb_learn(sw->fdb, d + 6, vid, in->id, now_s, learn_allowed, sw);

			last_src = src;
			if (ZOC_UNLIKELY(rc == ZOC_FDB_MOVED || rc == ZOC_FDB_EVICTED)) {
				bump_gen(sw);
				gen = __atomic_load_n(&sw->gen, __ATOMIC_ACQUIRE);
			}
		}
		if (d[0] & 1)
			goto do_flood;
		{
			uint64_t key = mac_key(d, vid);
			uint64_t h = (key ^ (uint64_t)in->id << 32) * 0x9e3779b97f4a7c15ull;
			struct fc_entry *e = &loc->fc[(h >> 40) & loc->fc_mask];

			if (ZOC_LIKELY(e->key == key && e->in_port == in->id &&
				       e->gen == (uint32_t)gen)) {
				out = e->out_port;
				stat_add(&loc->hits, 1);
			} else {
				stat_add(&loc->misses, 1);
				out = zoc_fdb_lookup(sw->fdb, d, vid);
				if (out < 0)
					goto do_flood;
				e->key = key;
				e->in_port = in->id;
				e->out_port = (uint16_t)out;
				e->gen = (uint32_t)gen;
			}
		}
		if (ZOC_UNLIKELY(out == in->id)) {
			drop(in, me, ZOC_DROP_FILTERED, p);
			continue;
		}
		op = __atomic_load_n(&sw->ports[out], __ATOMIC_ACQUIRE);
		if (ZOC_UNLIKELY(!op))
			goto do_flood; /* a stale entry of a port being removed */
		if (ct_on) {
			p->user = meta_make(in, op);
			ctp[nct++] = p;
			continue;
		}
		batch_add(loc, (uint16_t)out, p, KEY_NONE);
		continue;
do_flood:
		if (c->flood_limit_pps && !now_ns)
			now_ns = sw_now_ns(sw); /* the token bucket wants ns: only when flooding */
		if (!flood_allowed(in, c, now_ns)) {
			drop(in, me, ZOC_DROP_FLOOD_LIMIT, p);
			continue;
		}
		stat_add(&st->flooded, 1);
		stat_add(&loc->floods, 1);
		if (ct_on) {
			p->user = meta_make(in, NULL);
			ctp[nct++] = p;
			continue;
		}
		flood(sw, loc, in, me, p, KEY_NONE);
	}
	if (nct)
		ct_input(sw, loc, in, me, ctp, nct, false);
	deliver_touched(sw, loc, in, me);
}

void zoc_vswitch_rx_burst(struct zoc_vswitch *sw, struct zoc_port *in, struct zoc_pkt **pkts,
			  unsigned n)
{
	struct sw_local *loc = &sw->local[cur_reactor(sw)];

	if (ZOC_UNLIKELY(loc->busy)) {
		/* A tx_burst called back into the switch on this reactor: the
		 * batches in use belong to the outer burst. */
		ZOC_WARN_RL("vswitch %s: port %s: rx_burst nested in a tx_burst, %u frames dropped",
			    sw->name, in->name, n);
		count_drop(in, cur_reactor(sw), ZOC_DROP_RING_FULL, n);
		zoc_pkt_free_bulk(pkts, n);
		return;
	}
	loc->busy = true;
	while (n) {
		unsigned k = n > ZOC_PKT_BURST ? ZOC_PKT_BURST : n;

		rx_chunk(sw, in, pkts, k);
		pkts += k;
		n -= k;
	}
	loc->busy = false;
}

/* ---- conntrack partitions: steering, ageing, control ------------------ */

/* On the partition's reactor: frames other reactors steered here. Runs of
 * frames of one input port go through ct_input / deliver_touched as if
 * they had arrived here. */
static int steer_drain(void *arg)
{
	struct zoc_vswitch *sw = ((struct part_ref *)arg)->sw;
	unsigned me = ((struct part_ref *)arg)->part;
	struct sw_local *loc = &sw->local[me];
	struct zoc_pkt *pkts[ZOC_PKT_BURST];
	int work = 0;

	for (unsigned src = 0; src < sw->nlocal; src++) {
		unsigned n, i = 0;

		if (src == me)
			continue;
		n = zoc_spsc_dequeue(sw->steer[src * sw->nlocal + me], (void **)pkts, ZOC_PKT_BURST);
		if (!n)
			continue;
		work += (int)n;
		loc->busy = true;
		loc->ct_on = true;
		loc->now_ns = sw_now_ns(sw);
		while (i < n) {
			uint64_t m = pkts[i]->user;
			unsigned j = i + 1;
			struct zoc_port *in;

			while (j < n && (uint32_t)pkts[j]->user == (uint32_t)m)
				j++;
			in = port_live(sw, meta_in(m), meta_in_inc(m));
			if (!in || __atomic_load_n(&in->removing, __ATOMIC_ACQUIRE)) {
				zoc_pkt_free_bulk(pkts + i, j - i); /* its port is gone */
			} else {
				loc->ntouched = 0;
				ct_input(sw, loc, in, me, pkts + i, j - i, true);
				deliver_touched(sw, loc, in, me);
			}
			i = j;
		}
		loc->busy = false;
	}
	return work;
}

static int steer_arm(void *arg)
{
	struct zoc_vswitch *sw = ((struct part_ref *)arg)->sw;
	unsigned me = ((struct part_ref *)arg)->part;

	__atomic_store_n(&sw->local[me].armed, 1, __ATOMIC_SEQ_CST);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	for (unsigned src = 0; src < sw->nlocal; src++)
		if (src != me && zoc_spsc_count(sw->steer[src * sw->nlocal + me]))
			return 1;
	return 0;
}

static void steer_disarm(void *arg)
{
	struct zoc_vswitch *sw = ((struct part_ref *)arg)->sw;

	__atomic_store_n(&sw->local[((struct part_ref *)arg)->part].armed, 0, __ATOMIC_RELAXED);
}

static void steer_kicked(void *arg, uint32_t events)
{
	struct zoc_vswitch *sw = ((struct part_ref *)arg)->sw;
	uint64_t v;

	if (read(sw->local[((struct part_ref *)arg)->part].kick_efd, &v, sizeof(v)) < 0)
		return;
}

static const struct zoc_poller_ops g_steer_ops = {
	.poll = steer_drain,
	.arm = steer_arm,
	.disarm = steer_disarm,
};

static int age_poll(void *arg)
{
	struct zoc_vswitch *sw = ((struct part_ref *)arg)->sw;

	return (int)zoc_ct_poll(sw->ct[((struct part_ref *)arg)->part], sw_now_ns(sw), AGE_BUDGET);
}

static const struct zoc_poller_ops g_age_ops = {.poll = age_poll};

/* A control step on a partition's reactor: inline when we are that reactor
 * (or there is only one), else a message; sw->ctl_pending counts those in
 * flight (zoc_vswitch_destroy waits for them). */
struct ctl_msg {
	struct zoc_vswitch *sw;
	unsigned part;
	uint16_t zone;
	void (*fn)(struct ctl_msg *m);
};

static void ctl_run(void *arg)
{
	struct ctl_msg *m = arg;
	struct zoc_vswitch *sw = m->sw;

	m->fn(m);
	free(m);
	__atomic_fetch_sub(&sw->ctl_pending, 1, __ATOMIC_RELEASE);
}

static bool on_reactor(unsigned idx)
{
	struct zoc_reactor *cur = zoc_reactor_current();

	return zoc_reactor_count() <= 1 || (cur ? zoc_reactor_index(cur) : 0) == idx;
}

static void send_retry(unsigned idx, zoc_msg_fn fn, void *arg)
{
	while (zoc_reactor_send_msg(zoc_reactor_get(idx), fn, arg))
		usleep(1000);
}

static void ctl_on(struct zoc_vswitch *sw, unsigned part, uint16_t zone,
		   void (*fn)(struct ctl_msg *m))
{
	struct ctl_msg *m = malloc(sizeof(*m));

	if (!m) {
		ZOC_ERR("vswitch %s: out of memory for a conntrack control step", sw->name);
		return;
	}
	*m = (struct ctl_msg){.sw = sw, .part = part, .zone = zone, .fn = fn};
	__atomic_fetch_add(&sw->ctl_pending, 1, __ATOMIC_ACQ_REL);
	if (on_reactor(part))
		ctl_run(m);
	else
		send_retry(part, ctl_run, m);
}

static struct part_ref *part_ref(struct zoc_vswitch *sw, unsigned part)
{
	return &sw->prefs[part];
}

/* The partition's pollers run while any port has a group. */
static void ct_start_on(struct ctl_msg *m)
{
	struct zoc_vswitch *sw = m->sw;
	struct sw_local *loc = &sw->local[m->part];
	struct zoc_reactor *r = zoc_reactor_get(m->part);

	if (!r || loc->ct_started)
		return;
	loc->ct_started = true;
	/* With manual_aging (tests, fuzzers) sessions age lazily only. */
	if (!sw->opts.manual_aging)
		loc->age_poller = zoc_poller_register(r, &g_age_ops, part_ref(sw, m->part),
						      AGE_PERIOD_US, "vswitch-ct-age");
	if (sw->nlocal > 1) {
		loc->steer_poller = zoc_poller_register(r, &g_steer_ops, part_ref(sw, m->part), 0,
							"vswitch-ct-steer");
		if (!loc->steer_poller)
			ZOC_ERR("vswitch %s: reactor %u: cannot register the steering poller",
				sw->name, m->part);
		/* The eventfd itself lives as long as the switch (producers
		 * may kick it at any time); here it is only watched. */
		if (loc->kick_efd >= 0 &&
		    zoc_reactor_add_fd(r, loc->kick_efd, EPOLLIN, steer_kicked,
				       part_ref(sw, m->part)) < 0)
			ZOC_ERR("vswitch %s: reactor %u: cannot watch the steering kick eventfd",
				sw->name, m->part);
	}
}

static void steer_ring_purge(struct zoc_vswitch *sw, unsigned part)
{
	struct zoc_pkt *pkts[ZOC_PKT_BURST];

	if (!sw->steer)
		return;
	for (unsigned src = 0; src < sw->nlocal; src++) {
		unsigned n;

		if (src == part || !sw->steer[src * sw->nlocal + part])
			continue;
		while ((n = zoc_spsc_dequeue(sw->steer[src * sw->nlocal + part], (void **)pkts,
					     ZOC_PKT_BURST)))
			zoc_pkt_free_bulk(pkts, n);
	}
}

static void ct_stop_on(struct ctl_msg *m)
{
	struct zoc_vswitch *sw = m->sw;
	struct sw_local *loc = &sw->local[m->part];

	if (loc->age_poller)
		zoc_poller_unregister(loc->age_poller);
	if (loc->steer_poller)
		zoc_poller_unregister(loc->steer_poller);
	loc->age_poller = loc->steer_poller = NULL;
	loc->ct_started = false;
	if (loc->kick_efd >= 0)
		zoc_reactor_del_fd(zoc_reactor_get(m->part), loc->kick_efd);
	steer_ring_purge(sw, m->part);
}

static void ct_flush_zone_on(struct ctl_msg *m)
{
	zoc_ct_flush_zone(m->sw->ct[m->part], m->zone);
}

/* Reactor 0: a port stops being tracked (group detached, port removed):
 * its sessions go (on every partition, before the port id can be reused:
 * these messages precede the removal's barrier), and the partitions'
 * pollers stop with the last group. */
static void sg_detached(struct zoc_vswitch *sw, uint16_t zone)
{
	for (unsigned i = 0; i < sw->nlocal; i++)
		ctl_on(sw, i, zone, ct_flush_zone_on);
	if (__atomic_sub_fetch(&sw->n_sg, 1, __ATOMIC_ACQ_REL) == 0)
		for (unsigned i = 0; i < sw->nlocal; i++)
			ctl_on(sw, i, 0, ct_stop_on);
}

int zoc_vswitch_port_set_secgroup(struct zoc_port *port, struct zoc_sg *sg)
{
	struct zoc_vswitch *sw = port->sw;
	struct zoc_sg *old = port->sg;

	if (__atomic_load_n(&port->removing, __ATOMIC_ACQUIRE))
		return -ENODEV;
	if (sg && port->kind != ZOC_PORT_VNIC)
		return -EINVAL;
	if (old == sg)
		return 0;
	__atomic_store_n(&port->sg, sg, __ATOMIC_RELEASE);
	if (!old) {
		if (__atomic_load_n(&sw->n_sg, __ATOMIC_ACQUIRE) == 0)
			for (unsigned i = 0; i < sw->nlocal; i++)
				ctl_on(sw, i, 0, ct_start_on);
		__atomic_add_fetch(&sw->n_sg, 1, __ATOMIC_ACQ_REL);
	} else if (!sg) {
		sg_detached(sw, port->id);
	}
	ZOC_INFO("vswitch %s: port %s: security group %s", sw->name, port->name,
		 sg ? zoc_sg_name(sg) : "(none)");
	return 0;
}

struct zoc_sg *zoc_vswitch_port_secgroup(const struct zoc_port *port)
{
	return port_sg(port);
}

unsigned zoc_vswitch_ct_partitions(const struct zoc_vswitch *sw)
{
	return sw->nlocal;
}

struct ct_walk {
	struct zoc_vswitch *sw;
	void (*fn)(struct zoc_ct *ct, unsigned part, void *arg);
	void (*done)(void *arg);
	void *arg;
	unsigned next;
};

static void walk_done(void *arg)
{
	struct ct_walk *w = arg;
	struct zoc_vswitch *sw = w->sw;

	if (w->done)
		w->done(w->arg);
	free(w);
	__atomic_fetch_sub(&sw->ctl_pending, 1, __ATOMIC_RELEASE);
}

static void walk_step(void *arg)
{
	struct ct_walk *w = arg;
	unsigned i = w->next++;

	w->fn(w->sw->ct[i], i, w->arg);
	if (w->next < w->sw->nlocal) {
		if (on_reactor(w->next))
			walk_step(w);
		else
			send_retry(w->next, walk_step, w);
	} else if (on_reactor(0)) {
		walk_done(w);
	} else {
		send_retry(0, walk_done, w);
	}
}

int zoc_vswitch_ct_foreach(struct zoc_vswitch *sw,
			   void (*fn)(struct zoc_ct *ct, unsigned part, void *arg),
			   void (*done)(void *arg), void *arg)
{
	struct ct_walk *w = malloc(sizeof(*w));

	if (!w)
		return -ENOMEM;
	*w = (struct ct_walk){.sw = sw, .fn = fn, .done = done, .arg = arg};
	__atomic_fetch_add(&sw->ctl_pending, 1, __ATOMIC_ACQ_REL);
	if (on_reactor(0))
		walk_step(w);
	else
		send_retry(0, walk_step, w);
	return 0;
}

struct zoc_port *zoc_vswitch_port_by_id(struct zoc_vswitch *sw, uint16_t id)
{
	return id < ZOC_VSWITCH_MAX_PORTS ? sw->slots[id] : NULL;
}

/* ---- switch life cycle ------------------------------------------------ */

/* The partitions (one per reactor) and, with several reactors, the
 * steering rings between every pair. */
static int ct_create(struct zoc_vswitch *sw)
{
	const struct zoc_vswitch_opts *o = &sw->opts;
	unsigned n = sw->nlocal;
	uint32_t cap = (o->ct_capacity + n - 1) / n, maxcap = (o->ct_max_capacity + n - 1) / n;
	struct zoc_ct_config cfg = {
		.capacity = cap < 64 ? 64 : cap,
		.max_ports = ZOC_VSWITCH_MAX_PORTS,
		.port_cap = o->ct_port_cap ? (o->ct_port_cap + n - 1) / n : 0,
		.flow_cache = o->ct_flow_cache,
	};

	cfg.max_capacity = maxcap > cfg.capacity ? maxcap : cfg.capacity;
	cfg.auto_grow = cfg.max_capacity > cfg.capacity;
	sw->ct = calloc(n, sizeof(*sw->ct));
	sw->prefs = calloc(n, sizeof(*sw->prefs));
	if (!sw->ct || !sw->prefs)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		sw->prefs[i] = (struct part_ref){.sw = sw, .part = i};
		sw->ct[i] = zoc_ct_create(&cfg);
		if (!sw->ct[i])
			return -ENOMEM;
	}
	if (n > 1) {
		sw->steer = calloc((size_t)n * n, sizeof(*sw->steer));
		if (!sw->steer)
			return -ENOMEM;
		for (unsigned i = 0; i < n * n; i++) {
			if (i / n == i % n)
				continue;
			sw->steer[i] = zoc_spsc_create(o->ring_size);
			if (!sw->steer[i])
				return -ENOMEM;
		}
		for (unsigned i = 0; i < n && zoc_reactor_interrupt_mode(); i++) {
			sw->local[i].kick_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
			if (sw->local[i].kick_efd < 0)
				return -ENOMEM;
		}
	}
	return 0;
}

static void ct_free(struct zoc_vswitch *sw)
{
	if (sw->steer) {
		for (unsigned i = 0; i < sw->nlocal; i++)
			steer_ring_purge(sw, i);
		for (unsigned i = 0; i < sw->nlocal * sw->nlocal; i++)
			free(sw->steer[i]);
	}
	free(sw->steer);
	for (unsigned i = 0; sw->local && i < sw->nlocal; i++) {
		if (sw->local[i].kick_efd >= 0)
			close(sw->local[i].kick_efd);
		sw->local[i].kick_efd = -1;
	}
	if (sw->ct)
		for (unsigned i = 0; i < sw->nlocal; i++)
			zoc_ct_destroy(sw->ct[i]);
	free(sw->ct);
	free(sw->prefs);
	sw->steer = NULL;
	sw->ct = NULL;
	sw->prefs = NULL;
}

static int ager_poll(void *arg)
{
	zoc_vswitch_age(arg);
	return 0;
}

static const struct zoc_poller_ops g_ager_ops = {.poll = ager_poll};

int zoc_vswitch_create(const char *name, const struct zoc_vswitch_opts *opts,
		       struct zoc_vswitch **out)
{
	struct zoc_vswitch_opts o = {.fdb_max = 4096, .aging_s = 300, .flow_cache = 1024,
				     .ring_size = 512, .ct_capacity = 65536,
				     .ct_max_capacity = 1u << 24, .ct_flow_cache = 4096};
	struct zoc_vswitch *sw;

	if (!name || !name[0] || strlen(name) >= ZOC_VSWITCH_NAME_MAX)
		return -EINVAL;
	if (zoc_vswitch_find(name))
		return -EEXIST;
	if (opts) {
		if (opts->fdb_max)
			o.fdb_max = opts->fdb_max;
		if (opts->aging_s)
			o.aging_s = opts->aging_s;
		if (opts->flow_cache)
			o.flow_cache = opts->flow_cache;
		if (opts->ring_size)
			o.ring_size = opts->ring_size;
		o.manual_aging = opts->manual_aging;
		if (opts->ct_capacity)
			o.ct_capacity = opts->ct_capacity;
		if (opts->ct_max_capacity)
			o.ct_max_capacity = opts->ct_max_capacity;
		else if (o.ct_capacity > o.ct_max_capacity)
			o.ct_max_capacity = o.ct_capacity;
		o.ct_port_cap = opts->ct_port_cap;
		if (opts->ct_flow_cache)
			o.ct_flow_cache = opts->ct_flow_cache;
	}
	if (o.ct_capacity < 64 || o.ct_capacity > (1u << 30) || o.ct_max_capacity < o.ct_capacity ||
	    o.ct_max_capacity > (1u << 30) || (o.ct_flow_cache & (o.ct_flow_cache - 1)) ||
	    o.ct_flow_cache < 2 ||
	    o.ct_flow_cache > (1u << 20))
		return -EINVAL;
	if (o.fdb_max > (1u << 22) || o.aging_s > 1000000 || (o.flow_cache & (o.flow_cache - 1)) ||
	    o.flow_cache > (1u << 20) || (o.ring_size & (o.ring_size - 1)) || o.ring_size < 32 ||
	    o.ring_size > (1u << 16))
		return -EINVAL;
	sw = aligned_alloc(ZOC_CACHELINE, (sizeof(*sw) + ZOC_CACHELINE - 1) &
						  ~(size_t)(ZOC_CACHELINE - 1));
	if (!sw)
		return -ENOMEM;
	memset(sw, 0, sizeof(*sw));
	snprintf(sw->name, sizeof(sw->name), "%s", name);
	sw->opts = o;
	sw->nlocal = zoc_reactor_count() ? zoc_reactor_count() : 1;
	sw->fdb = zoc_fdb_create(o.fdb_max);
	sw->local = aligned_alloc(ZOC_CACHELINE, sizeof(*sw->local) * sw->nlocal);
	if (!sw->fdb || !sw->local)
		goto nomem;
	memset(sw->local, 0, sizeof(*sw->local) * sw->nlocal);
	for (unsigned i = 0; i < sw->nlocal; i++)
		sw->local[i].kick_efd = -1;
	for (unsigned i = 0; i < sw->nlocal; i++) {
		sw->local[i].fc = calloc(o.flow_cache, sizeof(struct fc_entry));
		sw->local[i].sq = calloc((size_t)sw->nlocal * ZOC_PKT_BURST, sizeof(struct zoc_pkt *));
		sw->local[i].sqn = calloc(sw->nlocal, 1);
		if (!sw->local[i].fc || !sw->local[i].sq || !sw->local[i].sqn)
			goto nomem;
		sw->local[i].fc_mask = o.flow_cache - 1;
	}
	if (ct_create(sw))
		goto nomem;
	if (zoc_reactor_get(0) && !o.manual_aging)
		sw->ager = zoc_poller_register(zoc_reactor_get(0), &g_ager_ops, sw, 1000000,
					       "vswitch-age");
	sw->next = g_switches;
	g_switches = sw;
	ZOC_INFO("vswitch %s created (fdb %u, aging %u s, flow cache %u)", sw->name, o.fdb_max,
		 o.aging_s, o.flow_cache);
	*out = sw;
	return 0;
nomem:
	ct_free(sw);
	if (sw->local)
		for (unsigned i = 0; i < sw->nlocal; i++) {
			free(sw->local[i].fc);
			free(sw->local[i].sq);
			free(sw->local[i].sqn);
		}
	free(sw->local);
	zoc_fdb_destroy(sw->fdb);
	free(sw);
	return -ENOMEM;
}

int zoc_vswitch_destroy(struct zoc_vswitch *sw)
{
	struct zoc_vswitch **pp;

	if (sw->nslots || __atomic_load_n(&sw->ctl_pending, __ATOMIC_ACQUIRE))
		return -EBUSY;
	for (pp = &g_switches; *pp; pp = &(*pp)->next) {
		if (*pp == sw) {
			*pp = sw->next;
			break;
		}
	}
	if (sw->ager)
		zoc_poller_unregister(sw->ager);
	ct_free(sw);
	for (unsigned i = 0; i < sw->nlocal; i++) {
		free(sw->local[i].fc);
		free(sw->local[i].sq);
		free(sw->local[i].sqn);
	}
	free(sw->local);
	zoc_fdb_destroy(sw->fdb);
	ZOC_INFO("vswitch %s destroyed", sw->name);
	free(sw);
	return 0;
}

struct zoc_vswitch *zoc_vswitch_find(const char *name)
{
	for (struct zoc_vswitch *sw = g_switches; sw; sw = sw->next)
		if (!strcmp(sw->name, name))
			return sw;
	return NULL;
}

struct zoc_vswitch *zoc_vswitch_next(struct zoc_vswitch *prev)
{
	return prev ? prev->next : g_switches;
}

unsigned zoc_vswitch_port_count(const struct zoc_vswitch *sw)
{
	return sw->nslots;
}

struct zoc_port *zoc_vswitch_port_find(struct zoc_vswitch *sw, const char *name)
{
	for (unsigned i = 0; i < ZOC_VSWITCH_MAX_PORTS; i++)
		if (sw->slots[i] && !sw->slots[i]->removing && !strcmp(sw->slots[i]->name, name))
			return sw->slots[i];
	return NULL;
}

unsigned zoc_vswitch_age(struct zoc_vswitch *sw)
{
	uint32_t now_s = (uint32_t)(sw_now_ns(sw) / 1000000000ull);
	unsigned n = zoc_fdb_age(sw->fdb, now_s, sw->opts.aging_s);

	if (n)
		bump_gen(sw);
	return n;
}

void zoc_vswitch_set_aging(struct zoc_vswitch *sw, uint32_t aging_s)
{
	if (aging_s && aging_s <= 1000000)
		sw->opts.aging_s = aging_s;
}

void zoc_vswitch_set_clock(struct zoc_vswitch *sw, uint64_t (*now_ns)(void *arg), void *arg)
{
	sw->clock = now_ns;
	sw->clock_arg = arg;
}

void zoc_vswitch_fdb_flush(struct zoc_vswitch *sw)
{
	zoc_fdb_flush(sw->fdb);
	bump_gen(sw);
}

struct zoc_port *zoc_vswitch_fdb_lookup(struct zoc_vswitch *sw, const uint8_t mac[6],
					uint16_t vid)
{
	int id = zoc_fdb_lookup(sw->fdb, mac, vid);

	return id >= 0 && id < ZOC_VSWITCH_MAX_PORTS ? sw->slots[id] : NULL;
}

void zoc_vswitch_cache_stats(struct zoc_vswitch *sw, struct zoc_vswitch_cache_stats *st)
{
	memset(st, 0, sizeof(*st));
	for (unsigned i = 0; i < sw->nlocal; i++) {
		st->hits += __atomic_load_n(&sw->local[i].hits, __ATOMIC_RELAXED);
		st->misses += __atomic_load_n(&sw->local[i].misses, __ATOMIC_RELAXED);
		st->floods += __atomic_load_n(&sw->local[i].floods, __ATOMIC_RELAXED);
	}
}

/* ---- ports ------------------------------------------------------------- */

static uint16_t learn_vid(const struct zoc_port_config *c)
{
	switch (c->vlan_mode) {
	case ZOC_VLAN_ACCESS:
	case ZOC_VLAN_TRUNK:
		return c->vid;
	default:
		return 0;
	}
}

static void learn_port_mac(struct zoc_port *port, const struct zoc_port_config *c)
{
	struct zoc_vswitch *sw = port->sw;
	uint16_t vid = learn_vid(c);
	int rc;

	if (!c->has_mac || (c->vlan_mode == ZOC_VLAN_TRUNK && !vid))
		return;
	rc = zoc_fdb_learn(sw->fdb, c->mac, vid, port->id,
			   (uint32_t)(sw_now_ns(sw) / 1000000000ull), learn_allowed, sw);
	if (rc == ZOC_FDB_MOVED || rc == ZOC_FDB_EVICTED)
		bump_gen(sw);
}

static void port_free(struct zoc_port *port)
{
	if (port->rings)
		for (unsigned i = 0; i < port->nrings; i++)
			free(port->rings[i]);
	free(port->rings);
	if (port->kick_efd >= 0)
		close(port->kick_efd);
	free(port->stats);
	free(port->conf);
	free(port);
}

/* On the owner reactor: start draining the port's rings. */
static void port_start_on_owner(void *arg)
{
	struct zoc_port *port = arg;
	struct zoc_reactor *r = zoc_reactor_get(port->owner);

	port->drain = zoc_poller_register(r, &g_drain_ops, port, 0, "vswitch-port");
	if (!port->drain)
		ZOC_ERR("vswitch %s: port %s: cannot register its poller", port->sw->name,
			port->name);
	if (port->kick_efd >= 0 &&
	    zoc_reactor_add_fd(r, port->kick_efd, EPOLLIN, port_kicked, port) < 0) {
		ZOC_ERR("vswitch %s: port %s: cannot watch its kick eventfd", port->sw->name,
			port->name);
		close(port->kick_efd);
		port->kick_efd = -1;
	}
}

static void on_owner(struct zoc_port *port, zoc_msg_fn fn)
{
	struct zoc_reactor *cur = zoc_reactor_current();

	if (cur && zoc_reactor_index(cur) == port->owner) {
		fn(port);
		return;
	}
	while (zoc_reactor_send_msg(zoc_reactor_get(port->owner), fn, port))
		usleep(1000);
}

int zoc_vswitch_port_add(struct zoc_vswitch *sw, const struct zoc_port_config *cfg,
			 const struct zoc_port_ops *ops, void *ctx, struct zoc_port **out)
{
	struct zoc_port *port;
	const char *why;
	unsigned id, nr = zoc_reactor_count();
	int rc;

	if (!ops || !ops->tx_burst)
		return -EINVAL;
	rc = zoc_port_config_check(cfg, &why);
	if (rc) {
		ZOC_WARN("vswitch %s: port %.63s: %s", sw->name, cfg->name, why);
		return rc;
	}
	if (nr && cfg->owner >= nr) {
		ZOC_WARN("vswitch %s: port %s: no reactor %u", sw->name, cfg->name, cfg->owner);
		return -EINVAL;
	}
	if (zoc_vswitch_port_find(sw, cfg->name))
		return -EEXIST;
	for (id = 0; id < ZOC_VSWITCH_MAX_PORTS && sw->slots[id]; id++)
		;
	if (id == ZOC_VSWITCH_MAX_PORTS)
		return -ENOSPC;
	port = calloc(1, sizeof(*port));
	if (!port)
		return -ENOMEM;
	port->sw = sw;
	port->id = (uint16_t)id;
	port->owner = cfg->owner;
	port->kind = cfg->kind;
	snprintf(port->name, sizeof(port->name), "%s", cfg->name);
	port->ops = ops;
	port->ctx = ctx;
	port->kick_efd = -1;
	port->inc = ++sw->port_inc[id];
	port->conf = malloc(sizeof(*port->conf));
	port->stats = aligned_alloc(ZOC_CACHELINE, sizeof(*port->stats) * sw->nlocal);
	if (!port->conf || !port->stats)
		goto nomem;
	memset(port->stats, 0, sizeof(*port->stats) * sw->nlocal);
	port->conf->c = *cfg;
	port->flood_tokens = cfg->flood_limit_pps;
	if (nr > 1) {
		port->nrings = nr;
		port->rings = calloc(nr, sizeof(*port->rings));
		if (!port->rings)
			goto nomem;
		for (unsigned i = 0; i < nr; i++) {
			if (i == port->owner)
				continue;
			port->rings[i] = zoc_spsc_create(sw->opts.ring_size);
			if (!port->rings[i])
				goto nomem;
		}
		if (zoc_reactor_interrupt_mode()) {
			port->kick_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
			if (port->kick_efd < 0)
				goto nomem;
		}
	}
	sw->slots[id] = port;
	sw->nslots++;
	__atomic_store_n(&sw->ports[id], port, __ATOMIC_RELEASE);
	if (id + 1 > sw->nports_hi)
		__atomic_store_n(&sw->nports_hi, id + 1, __ATOMIC_RELEASE);
	bump_gen(sw);
	learn_port_mac(port, cfg);
	if (nr > 1)
		on_owner(port, port_start_on_owner);
	ZOC_INFO("vswitch %s: port %s (id %u, %s, reactor %u) added", sw->name, port->name, id,
		 ops->type ? ops->type : "?", port->owner);
	*out = port;
	return 0;
nomem:
	port_free(port);
	return -ENOMEM;
}

static void port_finish(void *arg)
{
	struct zoc_port *port = arg;
	struct zoc_vswitch *sw = port->sw;
	void (*done)(void *) = port->done;
	void *done_arg = port->done_arg;

	ZOC_INFO("vswitch %s: port %s removed", sw->name, port->name);
	sw->slots[port->id] = NULL;
	sw->nslots--;
	port_free(port);
	if (done)
		done(done_arg);
}

/* On the owner reactor, after the grace period: nothing enqueues any more. */
static void port_stop_on_owner(void *arg)
{
	struct zoc_port *port = arg;
	struct zoc_pkt *pkts[ZOC_PKT_BURST];

	if (port->drain)
		zoc_poller_unregister(port->drain);
	port->drain = NULL;
	if (port->kick_efd >= 0)
		zoc_reactor_del_fd(zoc_reactor_get(port->owner), port->kick_efd);
	for (unsigned i = 0; i < port->nrings; i++) {
		unsigned n;

		if (!port->rings[i])
			continue;
		while ((n = zoc_spsc_dequeue(port->rings[i], (void **)pkts, ZOC_PKT_BURST))) {
			count_drop(port, port->owner, ZOC_DROP_PORT_DOWN, n);
			zoc_pkt_free_bulk(pkts, n);
		}
	}
	while (zoc_reactor_send_msg(zoc_reactor_get(0), port_finish, port))
		usleep(1000);
}

static void port_after_grace(void *arg)
{
	struct zoc_port *port = arg;

	/* A burst that began before the removal may have learned on it. */
	zoc_fdb_flush_port(port->sw->fdb, port->id);
	bump_gen(port->sw);
	if (port->rings)
		on_owner(port, port_stop_on_owner);
	else
		port_finish(port);
}

int zoc_vswitch_port_remove(struct zoc_port *port, void (*done)(void *arg), void *arg)
{
	struct zoc_vswitch *sw = port->sw;
	int rc;

	if (__atomic_load_n(&port->removing, __ATOMIC_ACQUIRE))
		return -EALREADY;
	port->done = done;
	port->done_arg = arg;
	__atomic_store_n(&port->removing, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&sw->ports[port->id], NULL, __ATOMIC_RELEASE);
	zoc_fdb_flush_port(sw->fdb, port->id);
	bump_gen(sw);
	if (port->sg) {
		/* Its sessions go before the id can be reused (the flush
		 * messages precede the barrier's). */
		__atomic_store_n(&port->sg, NULL, __ATOMIC_RELEASE);
		sg_detached(sw, port->id);
	}
	rc = zoc_reactors_barrier(port_after_grace, port);
	if (rc) {
		/* Not started: publish it again so the caller may retry. */
		__atomic_store_n(&sw->ports[port->id], port, __ATOMIC_RELEASE);
		__atomic_store_n(&port->removing, 0, __ATOMIC_RELEASE);
		return rc;
	}
	return 0;
}

static void conf_free(void *arg)
{
	free(arg);
}

int zoc_port_set_config(struct zoc_port *port, const struct zoc_port_config *cfg)
{
	struct zoc_vswitch *sw = port->sw;
	struct port_conf *nc, *old = port->conf;
	const struct zoc_port_config *oc = &old->c;
	const char *why;
	bool vlan_changed;

	if (zoc_port_config_check(cfg, &why)) {
		ZOC_WARN("vswitch %s: port %s: %s", sw->name, port->name, why);
		return -EINVAL;
	}
	if (strcmp(cfg->name, port->name) || cfg->kind != port->kind || cfg->owner != port->owner)
		return -EINVAL;
	if (port->removing)
		return -ENODEV;
	nc = malloc(sizeof(*nc));
	if (!nc)
		return -ENOMEM;
	nc->c = *cfg;
	vlan_changed = oc->vlan_mode != cfg->vlan_mode || oc->vid != cfg->vid ||
		       memcmp(oc->trunk, cfg->trunk, sizeof(cfg->trunk)) ||
		       oc->has_mac != cfg->has_mac || memcmp(oc->mac, cfg->mac, 6);
	__atomic_store_n(&port->conf, nc, __ATOMIC_RELEASE);
	if (vlan_changed)
		zoc_fdb_flush_port(sw->fdb, port->id);
	bump_gen(sw);
	learn_port_mac(port, cfg);
	if (zoc_reactors_barrier(conf_free, old))
		ZOC_WARN("vswitch %s: port %s: old configuration leaked (no memory)", sw->name,
			 port->name);
	return 0;
}

void zoc_port_get_config(struct zoc_port *port, struct zoc_port_config *cfg)
{
	*cfg = conf_of(port)->c;
}

/* ---- JSON ---------------------------------------------------------------- */

static void fmt_mac(char *buf, const uint8_t *m)
{
	snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

static json_t *vlans_json(const uint64_t *bm)
{
	char buf[4096 * 5 + 8];
	size_t off = 0;

	buf[0] = 0;
	for (unsigned v = 1; v <= 4094; v++) {
		unsigned e;

		if (!(bm[v / 64] >> (v % 64) & 1))
			continue;
		for (e = v; e + 1 <= 4094 && (bm[(e + 1) / 64] >> ((e + 1) % 64) & 1); e++)
			;
		if (e > v)
			off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%u-%u",
						off ? "," : "", v, e);
		else
			off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%u",
						off ? "," : "", v);
		v = e;
	}
	return json_string(buf);
}

json_t *zoc_port_to_json(struct zoc_port *port)
{
	const struct zoc_port_config *c = &conf_of(port)->c;
	struct zoc_port_stats st;
	json_t *o, *vlan, *drops, *stats;
	char mac[18];

	zoc_port_get_stats(port, &st);
	drops = json_object();
	for (unsigned i = 0; i < ZOC_DROP__COUNT; i++)
		json_object_set_new(drops, zoc_drop_reason_name(i), json_integer((json_int_t)st.drops[i]));
	stats = json_pack("{s:I, s:I, s:I, s:I, s:I, s:o}", "rx_packets", (json_int_t)st.rx_packets,
			  "rx_bytes", (json_int_t)st.rx_bytes, "tx_packets",
			  (json_int_t)st.tx_packets, "tx_bytes", (json_int_t)st.tx_bytes,
			  "flooded", (json_int_t)st.flooded, "drops", drops);
	switch (c->vlan_mode) {
	case ZOC_VLAN_ACCESS:
		vlan = json_pack("{s:s, s:i}", "mode", "access", "vid", c->vid);
		break;
	case ZOC_VLAN_TRUNK:
		vlan = json_pack("{s:s, s:i, s:o}", "mode", "trunk", "native", c->vid, "allowed",
				 vlans_json(c->trunk));
		break;
	default:
		vlan = json_pack("{s:s}", "mode", "none");
		break;
	}
	o = json_pack("{s:i, s:s, s:s, s:s, s:i, s:b, s:i, s:o, s:i, s:o}", "id", port->id, "name",
		      port->name, "kind", port->kind == ZOC_PORT_UPLINK ? "uplink" : "vnic", "type",
		      port->ops->type ? port->ops->type : "", "owner", port->owner, "enabled",
		      c->enabled, "mtu", c->mtu, "vlan", vlan, "flood_limit_pps",
		      c->flood_limit_pps, "stats", stats);
	if (c->has_mac) {
		fmt_mac(mac, c->mac);
		json_object_set_new(o, "mac", json_string(mac));
	}
	if (port->removing)
		json_object_set_new(o, "removing", json_true());
	if (port->sg)
		json_object_set_new(o, "secgroup", json_string(zoc_sg_name(port->sg)));
	if (port->ops->dump_info)
		port->ops->dump_info(port, o);
	return o;
}

json_t *zoc_vswitch_to_json(struct zoc_vswitch *sw)
{
	struct zoc_fdb_stats fs;
	struct zoc_vswitch_cache_stats cs;
	json_t *ports = json_array(), *o;

	zoc_fdb_get_stats(sw->fdb, &fs);
	zoc_vswitch_cache_stats(sw, &cs);
	for (unsigned i = 0; i < ZOC_VSWITCH_MAX_PORTS; i++)
		if (sw->slots[i])
			json_array_append_new(ports, zoc_port_to_json(sw->slots[i]));
	o = json_pack("{s:s, s:{s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I}, s:{s:i, s:I, s:I, s:I},"
			 " s:o}",
			 "name", sw->name, "fdb", "count", (int)zoc_fdb_count(sw->fdb), "max",
			 (int)zoc_fdb_max(sw->fdb), "aging_s", (int)sw->opts.aging_s, "learned",
			 (json_int_t)fs.learned, "moved", (json_int_t)fs.moved, "evicted",
			 (json_int_t)fs.evicted, "aged", (json_int_t)fs.aged, "full",
			 (json_int_t)fs.full, "flow_cache", "size", (int)sw->opts.flow_cache,
			 "hits", (json_int_t)cs.hits, "misses", (json_int_t)cs.misses, "floods",
			 (json_int_t)cs.floods, "ports", ports);
	if (o)
		json_object_set_new(
			o, "conntrack",
			json_pack("{s:i, s:i, s:I, s:I, s:I, s:i}", "partitions", (int)sw->nlocal,
				  "ports_with_secgroup", (int)__atomic_load_n(&sw->n_sg, __ATOMIC_RELAXED),
				  "capacity", (json_int_t)sw->opts.ct_capacity, "max_capacity",
				  (json_int_t)sw->opts.ct_max_capacity, "port_cap",
				  (json_int_t)sw->opts.ct_port_cap, "flow_cache",
				  (int)sw->opts.ct_flow_cache));
	return o;
}

struct fdb_row {
	uint8_t mac[6];
	uint16_t vid;
	uint16_t port;
	uint32_t seen;
};

struct fdb_collect {
	struct fdb_row *rows;
	size_t n, cap;
};

static int collect_row(void *arg, const uint8_t mac[6], uint16_t vid, uint16_t port,
		       uint32_t seen)
{
	struct fdb_collect *c = arg;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct fdb_row *r = realloc(c->rows, cap * sizeof(*r));

		if (!r)
			return 1;
		c->rows = r;
		c->cap = cap;
	}
	memcpy(c->rows[c->n].mac, mac, 6);
	c->rows[c->n].vid = vid;
	c->rows[c->n].port = port;
	c->rows[c->n].seen = seen;
	c->n++;
	return 0;
}

static int row_cmp(const void *a, const void *b)
{
	const struct fdb_row *x = a, *y = b;

	if (x->vid != y->vid)
		return x->vid < y->vid ? -1 : 1;
	return memcmp(x->mac, y->mac, 6);
}

json_t *zoc_vswitch_fdb_to_json(struct zoc_vswitch *sw)
{
	struct fdb_collect c = {0};
	uint32_t now_s = (uint32_t)(sw_now_ns(sw) / 1000000000ull);
	json_t *arr = json_array();

	zoc_fdb_foreach(sw->fdb, collect_row, &c);
	if (c.n)
		qsort(c.rows, c.n, sizeof(*c.rows), row_cmp);
	for (size_t i = 0; i < c.n; i++) {
		const struct fdb_row *r = &c.rows[i];
		struct zoc_port *p = r->port < ZOC_VSWITCH_MAX_PORTS ? sw->slots[r->port] : NULL;
		char mac[18];
		int32_t age = (int32_t)(now_s - r->seen);

		fmt_mac(mac, r->mac);
		json_array_append_new(arr, json_pack("{s:s, s:i, s:s, s:i, s:i}", "mac", mac, "vlan",
						     r->vid, "port", p ? p->name : "?", "port_id",
						     r->port, "age_s", age > 0 ? age : 0));
	}
	free(c.rows);
	return arr;
}
