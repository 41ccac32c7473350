/* SPDX-License-Identifier: MIT */
/*
 * port.h - the port interface of the virtual switch: how a vNIC or an
 * uplink plugs in.
 *
 * NAME
 *   struct zoc_port, struct zoc_port_ops, struct zoc_port_config,
 *   zoc_port_* - a port of a zoc_vswitch (see vswitch.h).
 *
 * OVERVIEW
 *   A port joins one *owner* to a switch. The owner is a device model or
 *   an uplink (virtio-net vNIC, TAP, AF_PACKET, AF_XDP, DPDK later) and
 *   lives on one reactor, the port's owner reactor. Traffic flows in two
 *   directions, both in bursts of at most ZOC_PKT_BURST (32) packets:
 *
 *   owner -> switch ("rx" from the switch's point of view):
 *     the owner, on its reactor, allocates packets from zoc_pktpool_local()
 *     (pkt.h), fills them (frame bytes; offload metadata from a virtio-net
 *     header if any) and calls zoc_vswitch_rx_burst(sw, port, pkts, n).
 *     The switch takes ownership of all n packets, always.
 *
 *   switch -> owner ("tx"):
 *     the switch calls ops->tx_burst(port, pkts, n) on the owner reactor,
 *     never on another thread, never concurrently with itself, and never
 *     from inside zoc_vswitch_rx_burst() of *another* reactor: when the
 *     input runs elsewhere, the packets travel through a lock-free
 *     single-producer single-consumer ring per (input reactor, port) and
 *     the owner reactor's drain poller calls tx_burst. When the input runs
 *     on the owner reactor itself, tx_burst is called directly from within
 *     zoc_vswitch_rx_burst() (possibly for the same port's own owner object:
 *     do not hold locks or half-updated state across rx_burst). tx_burst
 *     must not call zoc_vswitch_rx_burst() itself (a loopback port queues
 *     and sends from its poller): such nested frames are dropped and
 *     counted RING_FULL.
 *     tx_burst returns k (0..n): it took ownership of pkts[0..k) (it must
 *     free them with zoc_pkt_free() when done, on any thread); the switch
 *     frees pkts[k..n) and counts them as ZOC_DROP_RING_FULL on the port.
 *     A vNIC copies each frame into its receive virtqueue (merging buffers
 *     as negotiated) and frees it; an uplink sends it.
 *
 * LIFE CYCLE (control plane, reactor 0)
 *   zoc_port_config_init(&cfg); set fields; zoc_vswitch_port_add(sw, &cfg,
 *   &ops, ctx, &port) -> the port exists at once and may be used by its
 *   owner; zoc_port_set_config() changes VLAN/MTU/MAC/enabled/flood limit
 *   at run time (never owner, kind or name); zoc_vswitch_port_remove(port,
 *   done, arg) unpublishes it and completes asynchronously: done(arg) runs
 *   on reactor 0 once no reactor can still touch the port (a grace period
 *   through zoc_reactors_barrier(), then the owner reactor drops packets
 *   still queued for it, counted ZOC_DROP_PORT_DOWN). Between remove and
 *   done the owner may still call rx_burst with the port (packets are
 *   dropped) and may still see tx_burst calls already under way; after
 *   done it must not use the port pointer again, and no ops of this port
 *   are called any more, so ctx may be freed in done.
 *
 * VLANS
 *   Each port has a VLAN mode:
 *   ZOC_VLAN_NONE    VLAN-unaware: frames pass unchanged, tagged or not;
 *                    the port is in the internal domain 0 with the other
 *                    VLAN-unaware ports only.
 *   ZOC_VLAN_ACCESS  member of VLAN cfg.vid (1..4094). Ingress: untagged
 *                    and priority-tagged (VID 0) frames go to cfg.vid;
 *                    other tagged frames are dropped (ZOC_DROP_VLAN).
 *                    Egress: untagged.
 *   ZOC_VLAN_TRUNK   member of the VLANs in cfg.trunk (a bitmap, 1..4094)
 *                    and of cfg.vid if nonzero (the native VLAN). Ingress:
 *                    tagged frames of an allowed VLAN; untagged / priority-
 *                    tagged frames go to the native VLAN, dropped if none.
 *                    Egress: tagged (802.1Q, TPID 0x8100, PCP kept) except
 *                    on the native VLAN, which leaves untagged.
 *   A tagged frame (TPID 0x8100) shorter than 18 bytes or with VID 4095 is
 *   invalid (ZOC_DROP_INVALID). 802.1ad (0x88a8) is not a tag here: such
 *   frames are payload of the untagged/native VLAN.
 *
 * FRAMES
 *   The switch checks on ingress: length >= 14 (else INVALID: runts and
 *   zero-length frames), the source MAC is not multicast/broadcast (else
 *   INVALID; a zero source is forwarded but never learned), the payload
 *   after Ethernet and 802.1Q headers is at most cfg.mtu (else MTU; frames
 *   with gso_type != ZOC_PKT_GSO_NONE are checked with gso_size instead);
 *   on egress the payload must fit the output port's mtu (else MTU on the
 *   output port). Offload metadata passes through unchanged.
 *
 * STATISTICS
 *   rx_* count frames the owner handed to the switch (before any drop),
 *   tx_* frames the owner accepted from tx_burst. Drops are counted on the
 *   port where they happen: ingress reasons on the input port, egress
 *   reasons (RING_FULL, NO_BUFFER for a flood copy, egress MTU/VLAN,
 *   PORT_DOWN) on the output port. Counters are per reactor (no atomics
 *   on the data path) and summed by zoc_port_get_stats().
 */
#ifndef ZOC_NET_PORT_H
#define ZOC_NET_PORT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "net/pkt.h"

struct zoc_port;
struct zoc_vswitch;

enum zoc_port_kind {
	ZOC_PORT_VNIC = 0,
	ZOC_PORT_UPLINK = 1,
};

enum zoc_vlan_mode {
	ZOC_VLAN_NONE = 0,
	ZOC_VLAN_ACCESS = 1,
	ZOC_VLAN_TRUNK = 2,
};

/* Drop reasons (index into zoc_port_stats.drops). */
enum zoc_drop_reason {
	ZOC_DROP_NO_BUFFER = 0, /* no packet buffer (flood copy) */
	ZOC_DROP_RING_FULL,     /* output ring / owner's queue full */
	ZOC_DROP_VLAN,          /* not allowed in / not a member of the VLAN */
	ZOC_DROP_MTU,           /* payload over the port's MTU */
	ZOC_DROP_INVALID,       /* runt, bad 802.1Q, multicast source */
	ZOC_DROP_FLOOD_LIMIT,   /* over the port's flood rate limit */
	ZOC_DROP_PORT_DOWN,     /* port disabled or being removed */
	ZOC_DROP_FILTERED,      /* destination is on the input port */
	/* Security group / connection tracking (vswitch.h, SECURITY GROUPS):
	 * egress reasons on the vNIC the frame came from, ingress reasons on
	 * the vNIC it was going to. */
	ZOC_DROP_SECGROUP,      /* would open a connection no rule allows */
	ZOC_DROP_CT_INVALID,    /* malformed IP, or TCP flags/seq/ack out of window */
	ZOC_DROP_CT_NO_SESSION, /* TCP non-SYN / ICMP reply or error without a session */
	ZOC_DROP_CT_DIRECTION,  /* matched a session from the wrong side */
	ZOC_DROP_CT_FULL,       /* session table full, nothing to evict */
	ZOC_DROP_CT_PORT_CAP,   /* the port's session cap reached */
	ZOC_DROP_CT_FRAGMENT,   /* later IP fragment (no reassembly) */
	ZOC_DROP__COUNT
};

#define ZOC_PORT_NAME_MAX 64
#define ZOC_PORT_MTU_DEFAULT 1500
#define ZOC_PORT_MTU_MIN 68
#define ZOC_PORT_MTU_MAX 9000

struct zoc_port_config {
	char name[ZOC_PORT_NAME_MAX]; /* unique in the switch, non-empty */
	enum zoc_port_kind kind;
	unsigned owner;            /* reactor index that owns the port */
	bool enabled;              /* default true */
	uint32_t mtu;              /* 68..9000, default 1500 */
	bool has_mac;
	uint8_t mac[6];            /* vNIC: its MAC, learned at once on its VLAN */
	enum zoc_vlan_mode vlan_mode;
	uint16_t vid;              /* access: the VLAN; trunk: native (0 = none) */
	uint64_t trunk[64];        /* trunk: allowed VIDs bitmap (bit v = VID v) */
	uint32_t flood_limit_pps;  /* broadcast/multicast/unknown frames per
				    * second accepted from this port; 0 = no limit */
};

/* Operations of the owner. */
struct zoc_port_ops {
	const char *type; /* "virtio-net", "tap", "af_packet", "test" ... */
	/* Owner reactor; see OVERVIEW. n is 1..ZOC_PKT_BURST. Required. */
	unsigned (*tx_burst)(struct zoc_port *port, struct zoc_pkt **pkts, unsigned n);
	/* Optional: adds owner-specific fields to the port's JSON object
	 * (reactor 0). */
	void (*dump_info)(struct zoc_port *port, json_t *obj);
};

struct zoc_port_stats {
	uint64_t rx_packets, rx_bytes;
	uint64_t tx_packets, tx_bytes;
	uint64_t flooded;  /* input frames flooded (broadcast/multicast/unknown) */
	uint64_t drops[ZOC_DROP__COUNT];
};

/* Defaults: enabled, MTU 1500, kind vNIC, owner 0, VLAN none. */
void zoc_port_config_init(struct zoc_port_config *cfg, const char *name);
/* Trunk helpers: allow / disallow one VID (1..4094); -EINVAL otherwise. */
int zoc_port_config_trunk_allow(struct zoc_port_config *cfg, uint16_t vid, bool allow);
/* Parses "10,20,30-40" into cfg->trunk (added to what is there). */
int zoc_port_config_trunk_parse(struct zoc_port_config *cfg, const char *list);
/* 0 or -EINVAL (reason in *why when non-NULL). */
int zoc_port_config_check(const struct zoc_port_config *cfg, const char **why);

/* Reactor 0. Replaces the mutable part of the configuration (name, kind
 * and owner must be unchanged: -EINVAL). Takes effect for bursts that
 * start after the call; the port's learned MACs are flushed when its VLAN
 * setting changed. */
int zoc_port_set_config(struct zoc_port *port, const struct zoc_port_config *cfg);
/* The current configuration (reactor 0). */
void zoc_port_get_config(struct zoc_port *port, struct zoc_port_config *cfg);

uint16_t zoc_port_id(const struct zoc_port *port);
const char *zoc_port_name(const struct zoc_port *port);
void *zoc_port_ctx(const struct zoc_port *port);
struct zoc_vswitch *zoc_port_switch(const struct zoc_port *port);
unsigned zoc_port_owner(const struct zoc_port *port);
/* Sum over reactors (any thread; a slightly stale snapshot). */
void zoc_port_get_stats(const struct zoc_port *port, struct zoc_port_stats *st);
/* The owner may count drops of its own (e.g. a virtio-net header it
 * rejected before rx_burst): on the calling reactor's counters. */
void zoc_port_count_drop(struct zoc_port *port, enum zoc_drop_reason why, unsigned n);
/* GSO super-frames (gso_type set) the owner takes whole: ZOC_GSO_CAP_*
 * of net/gso.h (0 by default). The switch, on the owner reactor, cuts any
 * other super-frame into segments of at most the port's MTU before
 * tx_burst (net/gso.c; failures are dropped as invalid / mtu / no_buffer).
 * Any thread; takes effect for the next delivery. */
void zoc_port_set_gso_caps(struct zoc_port *port, uint32_t caps);
uint32_t zoc_port_gso_caps(const struct zoc_port *port);
/* "no_buffer", "ring_full", ... */
const char *zoc_drop_reason_name(enum zoc_drop_reason why);

/* JSON object of the port: id, name, kind, type, owner, enabled, mtu, mac,
 * vlan {mode, vid | native, allowed}, flood_limit_pps, stats {rx_packets,
 * rx_bytes, tx_packets, tx_bytes, flooded, drops {<reason>: n}}. */
json_t *zoc_port_to_json(struct zoc_port *port);

#endif
