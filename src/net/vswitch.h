/* SPDX-License-Identifier: MIT */
/*
 * vswitch.h - the embedded virtual switch (L2 learning bridge).
 *
 * NAME
 *   zoc_vswitch_create, zoc_vswitch_port_add, zoc_vswitch_rx_burst, ... -
 *   a learning Ethernet switch joining vNICs and uplinks (port.h).
 *
 * SWITCHING
 *   zoc_vswitch_rx_burst(sw, in, pkts, n), on in's owner reactor, per
 *   packet: checks the frame and the ingress VLAN rules (port.h), learns
 *   the source (MAC, VLAN) on in (FDB: lock-free when already known), then
 *   forwards: a unicast destination found in the FDB goes to its port (or
 *   is dropped as FILTERED when that is the input port); broadcast,
 *   multicast and unknown unicast are flooded to every enabled port that
 *   is a member of the VLAN except the input port (split horizon), one
 *   copy per output port from the local packet pool. Then, per output
 *   port, egress VLAN tagging / untagging and the MTU check, and one
 *   delivery per output port per input burst (see port.h for how tx
 *   reaches the owner reactor).
 *
 * FLOW CACHE
 *   Each reactor has an exact-match, direct-mapped cache (opts.flow_cache
 *   entries, a power of two) in front of the FDB for known unicast:
 *   key (in port, dst MAC, VLAN) -> output port. Entries carry the switch
 *   generation, which every FDB move/removal/ageing and every port add /
 *   remove / config change bumps: one relaxed load per burst invalidates
 *   the whole cache. New learning does not bump it (only floods depend on
 *   a MAC being unknown, and floods are not cached).
 *
 * FDB
 *   fdb.h: bounded (opts.fdb_max), ageing after opts.aging_s seconds
 *   without a frame from the address (zoc_vswitch_age(), run every second
 *   by a timed poller on reactor 0 and callable by tests), station moves
 *   update the entry. Multicast/broadcast sources are invalid frames, zero
 *   sources are forwarded but never learned.
 *
 * THREADS
 *   Control functions (create, destroy, port add/remove/config, JSON,
 *   age) run on reactor 0 (or before the reactors run). rx_burst runs on
 *   the input port's owner reactor; several reactors may run it on one
 *   switch concurrently. The data path takes no lock except the FDB writer
 *   lock when a source is new or moved.
 *
 * SECURITY GROUPS AND CONNECTION TRACKING (docs/conntrack.md)
 *   zoc_vswitch_port_set_secgroup() attaches a security group (secgroup.h)
 *   to a vNIC port. IP frames the port's owner sends are then tracked as
 *   EGRESS of that port (zone = port id), IP frames switched toward it as
 *   its INGRESS; a frame between two such ports is tracked twice (one
 *   session per port). Non-IP frames (ARP...) pass untracked; malformed
 *   IP is dropped (ct_invalid) at a port with a group. Verdicts that drop
 *   are counted per port: secgroup, ct_invalid, ct_no_session,
 *   ct_direction, ct_full, ct_port_cap, ct_fragment (egress reasons on the
 *   sending vNIC, ingress reasons on the receiving one).
 *   The switch owns one session-table partition (struct zoc_ct) per
 *   reactor, sized by opts.ct_* (totals, split evenly). A session lives in
 *   the partition that the symmetric hash of its 5-tuple selects; a frame
 *   whose partition belongs to another reactor is handed to that reactor
 *   through a per-(reactor, reactor) SPSC ring and switched from there, so
 *   a partition is only ever touched by its reactor. Each partition has a
 *   flow cache in front of its index (opts.ct_flow_cache) and is aged by a
 *   timed poller on its reactor while any port has a group.
 *
 * TIME
 *   The switch reads a clock once per burst; tests inject one with
 *   zoc_vswitch_set_clock().
 */
#ifndef ZOC_NET_VSWITCH_H
#define ZOC_NET_VSWITCH_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "net/pkt.h"
#include "net/port.h"

#define ZOC_VSWITCH_NAME_MAX 64
#define ZOC_VSWITCH_MAX_PORTS 256

struct zoc_vswitch;
struct zoc_sg;
struct zoc_ct;

struct zoc_vswitch_opts {
	uint32_t fdb_max;     /* default 4096 */
	uint32_t aging_s;     /* default 300, 1..1000000 */
	uint32_t flow_cache;  /* entries per reactor, power of two, default 1024 */
	uint32_t ring_size;   /* cross-reactor ring per (reactor, port), power of two, default 512 */
	bool manual_aging;    /* no ageing poller: the caller runs zoc_vswitch_age();
			       * conntrack sessions then expire lazily only */
	/* Connection tracking (totals over the per-reactor partitions). */
	uint32_t ct_capacity;     /* sessions at start, default 65536, >= 64 */
	uint32_t ct_max_capacity; /* growth limit (tables double when full),
				   * default 16M (2^24), <= 2^30 */
	uint32_t ct_port_cap;     /* sessions per port, default 0 = no cap */
	uint32_t ct_flow_cache;   /* flow-cache entries per partition, power of
				   * two, default 4096 */
};

/* Reactor 0. Registered by name (unique). 0 or -EEXIST / -EINVAL /
 * -ENOMEM. opts may be NULL (defaults). */
int zoc_vswitch_create(const char *name, const struct zoc_vswitch_opts *opts,
		       struct zoc_vswitch **out);
/* Reactor 0. -EBUSY while the switch has ports (removal pending counts)
 * or a conntrack control step / walk is in flight. */
int zoc_vswitch_destroy(struct zoc_vswitch *sw);
struct zoc_vswitch *zoc_vswitch_find(const char *name);
/* Iteration over all switches: first with NULL. */
struct zoc_vswitch *zoc_vswitch_next(struct zoc_vswitch *prev);
const char *zoc_vswitch_name(const struct zoc_vswitch *sw);

/* Reactor 0. ops must outlive the port; ctx is the owner's (see
 * zoc_port_ctx()). 0 or -EINVAL (bad config), -EEXIST (name taken),
 * -ENOSPC (ZOC_VSWITCH_MAX_PORTS), -ENOMEM. */
int zoc_vswitch_port_add(struct zoc_vswitch *sw, const struct zoc_port_config *cfg,
			 const struct zoc_port_ops *ops, void *ctx, struct zoc_port **out);
/* Reactor 0. Starts removal (port.h, LIFE CYCLE); done(arg) runs on
 * reactor 0 when it is complete (maybe before this returns, with one
 * reactor). 0, -EALREADY if already being removed, -ENOMEM. */
int zoc_vswitch_port_remove(struct zoc_port *port, void (*done)(void *arg), void *arg);
struct zoc_port *zoc_vswitch_port_find(struct zoc_vswitch *sw, const char *name);
unsigned zoc_vswitch_port_count(const struct zoc_vswitch *sw);

/* The data path: see SWITCHING. in's owner reactor; n <= ZOC_PKT_BURST
 * (larger n is processed in chunks). Takes all n packets. */
void zoc_vswitch_rx_burst(struct zoc_vswitch *sw, struct zoc_port *in, struct zoc_pkt **pkts,
			  unsigned n);

/* Reactor 0: ages the FDB now; returns entries removed. */
unsigned zoc_vswitch_age(struct zoc_vswitch *sw);
void zoc_vswitch_set_aging(struct zoc_vswitch *sw, uint32_t aging_s);
/* Tests: a clock in nanoseconds (NULL = CLOCK_MONOTONIC). */
void zoc_vswitch_set_clock(struct zoc_vswitch *sw, uint64_t (*now_ns)(void *arg), void *arg);
/* Removes all learned addresses (reactor 0). */
void zoc_vswitch_fdb_flush(struct zoc_vswitch *sw);
/* The port of (mac, vid) in the FDB, NULL if unknown (any thread; the
 * pointer is only safe on reactor 0). */
struct zoc_port *zoc_vswitch_fdb_lookup(struct zoc_vswitch *sw, const uint8_t mac[6],
					uint16_t vid);

/* Reactor 0. Attaches security group sg to port (a vNIC; -EINVAL for an
 * uplink), replacing its group; NULL detaches. Takes effect for bursts
 * that start after the call on every reactor (RCU: the data path loads
 * the pointer once per burst). Replacing a group keeps the port's
 * sessions (rule changes apply to new connections only); detaching
 * flushes them. The caller keeps sg alive until it is detached from every
 * port (zoc_sg_destroy then waits out the data path). 0, -ENODEV (port
 * being removed), -EINVAL. Removing the port detaches its group. */
int zoc_vswitch_port_set_secgroup(struct zoc_port *port, struct zoc_sg *sg);
/* The port's group, NULL if none (any thread; the pointer is only safe on
 * reactor 0). */
struct zoc_sg *zoc_vswitch_port_secgroup(const struct zoc_port *port);
/* Number of conntrack partitions (= reactors). */
unsigned zoc_vswitch_ct_partitions(const struct zoc_vswitch *sw);
/* Reactor 0. Runs fn(ct, part, arg) for every partition on the reactor
 * that owns it (a message chain, one partition after the other; inline
 * for partitions of the calling reactor), then done(arg) on reactor 0.
 * With one reactor it all happens before this returns. The switch cannot
 * be destroyed meanwhile (-EBUSY). For conntrack_stats / conntrack_list
 * (zoc_ct_stats_json, zoc_ct_list_json) and tests. 0 or -ENOMEM. */
int zoc_vswitch_ct_foreach(struct zoc_vswitch *sw,
			   void (*fn)(struct zoc_ct *ct, unsigned part, void *arg),
			   void (*done)(void *arg), void *arg);
/* The port with id (zone) id, NULL if none (reactor 0). */
struct zoc_port *zoc_vswitch_port_by_id(struct zoc_vswitch *sw, uint16_t id);

struct zoc_vswitch_cache_stats {
	uint64_t hits, misses, floods;
};
/* Summed over reactors. */
void zoc_vswitch_cache_stats(struct zoc_vswitch *sw, struct zoc_vswitch_cache_stats *st);

/* JSON for the control plane (reactor 0):
 * to_json: {name, fdb: {count, max, aging_s, learned, moved, evicted, aged,
 *   full}, flow_cache: {size, hits, misses, floods}, ports: [port.h JSON]}
 * fdb_to_json: [{mac: "aa:bb:..", vlan, port, port_id, age_s}], sorted by
 *   VLAN then MAC. */
json_t *zoc_vswitch_to_json(struct zoc_vswitch *sw);
json_t *zoc_vswitch_fdb_to_json(struct zoc_vswitch *sw);

#endif
