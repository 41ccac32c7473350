/* SPDX-License-Identifier: MIT */
/*
 * uplink.h - uplinks: the switch's way out to a host interface, standing in
 * for the passthrough NIC of a SmartNIC.
 *
 * NAME
 *   struct zoc_uplink, struct zoc_uplink_type, zoc_uplink_* - a switch port
 *   (kind ZOC_PORT_UPLINK) whose owner moves frames between the switch and
 *   a host network interface.
 *
 * TYPES
 *   "tap"        a TAP device (/dev/net/tun, IFF_TAP | IFF_NO_PI, optionally
 *                IFF_VNET_HDR to carry checksum/GSO metadata both ways).
 *                The interface is created (or attached, if it exists and is
 *                a persistent tap) under the given name.
 *   "af_packet"  an AF_PACKET socket bound to an existing interface, with a
 *                TPACKET_V3 mmap receive ring (blocks retired by timeout) and
 *                a TPACKET_V3 transmit ring (fixed frames; Linux >= 4.11),
 *                falling back to sendmmsg() batches when the kernel refuses
 *                the TX ring. PACKET_QDISC_BYPASS and PACKET_IGNORE_OUTGOING
 *                are set where the kernel has them; the socket joins the
 *                interface in promiscuous mode (PACKET_MR_PROMISC, undone by
 *                the kernel when the socket closes).
 *   "af_xdp"     an AF_XDP socket (libxdp) on one queue of an existing
 *                interface: a UMEM of 4 KiB frames with its fill and
 *                completion rings, RX and TX rings, libxdp's default XDP
 *                program redirecting the queue to the socket. Native
 *                (driver) XDP where the driver has it, else generic (SKB)
 *                mode; zero copy where the driver supports it, else copy.
 *                Frames are copied between UMEM and packet buffers. Only
 *                in a build with -Daf_xdp (libxdp, libbpf) - see
 *                uplink_xdp.c and docs/uplinks.md.
 *   Later types (a DPDK port) implement struct zoc_uplink_type and
 *   add themselves to the table in uplink.c.
 *
 * DATA PATH
 *   Each uplink is owned by one reactor (opts.owner). A poller there reads
 *   up to ZOC_PKT_BURST frames per iteration into packets from
 *   zoc_pktpool_local() and hands them to zoc_vswitch_rx_burst(). The
 *   switch calls the port's tx_burst on the same reactor; it sends the
 *   frames (writev on a tap, the TX ring / sendmmsg on AF_PACKET) and frees
 *   them. In interrupt mode the interface's fd wakes the reactor (the
 *   poller's arm checks for pending frames first).
 *
 * HOSTILE / ODD INPUT (never a crash; counted in the uplink's stats and,
 *   where it is a switch drop reason, on the port):
 *   rx_oversize  frame longer than the port's MTU + Ethernet + 2 tags, or
 *                than a packet buffer: dropped (port drop "mtu")
 *   rx_truncated AF_PACKET frame with tp_snaplen < tp_len, or a frame
 *                shorter than its vnet header: dropped (port drop "invalid")
 *   rx_nobuf     packet pool exhausted: frame dropped (port "no_buffer")
 *   rx_errors    read errors other than EAGAIN (interface down: EIO /
 *                ENETDOWN), ring anomalies (bad block/frame offsets)
 *   tx_full      EAGAIN / no free TX ring slot: dropped (port "ring_full")
 *   tx_errors    other send errors (interface down): dropped ("port_down")
 *   tx_oversize  frame over the interface's limit: dropped ("mtu")
 *
 * LIFE CYCLE (control plane, reactor 0)
 *   zoc_uplink_create(type, sw, ifname, opts, &u): opens the interface,
 *   adds the port (named opts->port_name or ifname) and starts the poller
 *   on the owner reactor. zoc_uplink_destroy(u, done, arg): removes the
 *   port, stops the poller on the owner, closes the interface and frees u;
 *   done(arg) runs on reactor 0 when all of that has happened (inline when
 *   no reactor runs, as in unit tests).
 */
#ifndef ZOC_NET_UPLINK_H
#define ZOC_NET_UPLINK_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "net/port.h"
#include "net/vswitch.h"

#define ZOC_UPLINK_IFNAME_MAX 16 /* IFNAMSIZ */

struct zoc_uplink;
struct zoc_poller;

struct zoc_uplink_opts {
	const char *port_name;   /* NULL: the interface name */
	unsigned owner;          /* reactor index, default 0 */
	uint32_t mtu;            /* port MTU, 0 = ZOC_PORT_MTU_DEFAULT */
	enum zoc_vlan_mode vlan_mode;
	uint16_t vid;
	/* tap */
	bool vnet_hdr;           /* IFF_VNET_HDR: offload metadata both ways */
	/* af_packet */
	uint32_t block_size;     /* RX ring block, power of two >= 4096; 0 = 1 MiB */
	uint32_t block_count;    /* RX ring blocks, 0 = 8 */
	uint32_t retire_ms;      /* RX block retire timeout, 0 = 1 ms */
	uint32_t tx_frames;      /* TX ring frames, 0 = 256; */
	bool no_tx_ring;         /* force the sendmmsg fallback */
	bool no_promisc;         /* do not join in promiscuous mode */
	/* af_xdp */
	uint32_t xdp_queue;      /* the interface's queue id, default 0 */
	uint8_t xdp_mode;        /* ZOC_UPLINK_XDP_MODE_* */
	uint8_t xdp_copy;        /* ZOC_UPLINK_XDP_COPY_* */
	uint32_t xdp_frames;     /* UMEM frames (power of two, 64..65536), 0 = 4096 */
};

/* af_xdp: where the XDP program runs. AUTO tries native, then SKB. */
enum { ZOC_UPLINK_XDP_MODE_AUTO, ZOC_UPLINK_XDP_MODE_NATIVE, ZOC_UPLINK_XDP_MODE_SKB };
/* af_xdp: AUTO lets the kernel pick zero copy when the driver has it. */
enum { ZOC_UPLINK_XDP_COPY_AUTO, ZOC_UPLINK_XDP_COPY_FORCE, ZOC_UPLINK_XDP_COPY_ZEROCOPY };

/* Counters kept by the uplink (owner reactor writes, any thread reads a
 * slightly stale snapshot). */
struct zoc_uplink_stats {
	uint64_t rx_frames, rx_bytes;
	uint64_t rx_oversize, rx_truncated, rx_nobuf, rx_errors;
	uint64_t tx_frames, tx_bytes;
	uint64_t tx_full, tx_errors, tx_oversize;
	uint64_t wakeups; /* interrupt-mode arms that found work */
};

/* The operations of one uplink type. */
struct zoc_uplink_type {
	const char *name;
	/* Reactor 0: open ifname, fill *out (allocated by the type, starting
	 * with struct zoc_uplink) . The port is added by the caller. */
	int (*open)(const char *ifname, const struct zoc_uplink_opts *opts,
		    struct zoc_uplink **out);
	/* The port's tx_burst (owner reactor). */
	unsigned (*tx_burst)(struct zoc_port *port, struct zoc_pkt **pkts, unsigned n);
	/* One receive iteration on the owner reactor: frames handed to the
	 * switch (0 = idle). */
	int (*poll)(struct zoc_uplink *u);
	/* Interrupt mode: nonzero if frames are already pending. */
	int (*pending)(struct zoc_uplink *u);
	/* Owner reactor: stop using the fd (the poller is already gone). */
	void (*close)(struct zoc_uplink *u);
	/* Any thread after close: free u. */
	void (*free)(struct zoc_uplink *u);
	/* Reactor 0: type-specific fields into obj. */
	void (*info)(struct zoc_uplink *u, json_t *obj);
};

/* Common head of every uplink (the types embed it first). */
struct zoc_uplink {
	const struct zoc_uplink_type *type;
	struct zoc_uplink *next;       /* registry (reactor 0) */
	struct zoc_vswitch *sw;
	struct zoc_port *port;
	struct zoc_port_ops port_ops;
	struct zoc_poller *poller;
	char ifname[ZOC_UPLINK_IFNAME_MAX];
	int fd;                        /* the interface's fd (epoll in interrupt mode) */
	bool fd_registered;
	unsigned owner;
	uint32_t mtu;
	struct zoc_uplink_stats st;
	bool destroying;
	void (*done)(void *arg);
	void *done_arg;
};

const struct zoc_uplink_type *zoc_uplink_type_find(const char *name);

/* Reactor 0. 0 or -errno: -EINVAL (bad type/options/name), -ENODEV (no
 * such interface), -EPERM (no CAP_NET_ADMIN / CAP_NET_RAW), -EEXIST (port
 * name taken), -ENOMEM. */
int zoc_uplink_create(const char *type, struct zoc_vswitch *sw, const char *ifname,
		      const struct zoc_uplink_opts *opts, struct zoc_uplink **out);
/* Reactor 0. Asynchronous (see LIFE CYCLE). 0, -EALREADY, -ENOMEM. */
int zoc_uplink_destroy(struct zoc_uplink *u, void (*done)(void *arg), void *arg);

/* Registry of live uplinks (reactor 0): by port name, or iterate from NULL. */
struct zoc_uplink *zoc_uplink_find(struct zoc_vswitch *sw, const char *port_name);
struct zoc_uplink *zoc_uplink_next(struct zoc_uplink *prev);

struct zoc_port *zoc_uplink_port(const struct zoc_uplink *u);
const char *zoc_uplink_ifname(const struct zoc_uplink *u);
void zoc_uplink_get_stats(const struct zoc_uplink *u, struct zoc_uplink_stats *st);
/* Runs one receive iteration now (owner reactor; tests drive uplinks with
 * it when no reactor runs). Frames handed to the switch. */
int zoc_uplink_poll(struct zoc_uplink *u);

/* Completes a ZOC_PKT_F_CSUM_NEEDED checksum in software (for an
 * interface that cannot take the metadata). 0 or -EINVAL (offsets outside
 * the frame). */
int zoc_uplink_csum_complete(struct zoc_pkt *p);

/* {type, ifname, port, switch, owner, stats {...}, <type fields>} */
json_t *zoc_uplink_to_json(struct zoc_uplink *u);

/* Internal to the uplink types: counter bump on the owner reactor. */
#define ZOC_UPLINK_INC(u, field, n) \
	__atomic_store_n(&(u)->st.field, (u)->st.field + (n), __ATOMIC_RELAXED)

extern const struct zoc_uplink_type zoc_uplink_tap;
extern const struct zoc_uplink_type zoc_uplink_af_packet;
#ifdef ZOC_HAVE_AF_XDP
extern const struct zoc_uplink_type zoc_uplink_af_xdp;
#endif

/* Tests only (af_xdp; only in a -Daf_xdp build): plays a misbehaving
 * kernel on a quiet ring: writes one descriptor into the uplink's RX ring
 * (ring 0: {addr, len}) or completion ring (ring 1: addr) and moves its
 * producer index (ring 2: moves the RX producer more than a ring ahead),
 * runs the uplink's consumer of that ring, then puts the indices back.
 * Owner reactor, no reactor running. 0, -EINVAL, -EBUSY (ring not quiet). */
int zoc_uplink_xdp_test_inject(struct zoc_uplink *u, int ring, uint64_t addr, uint32_t len);

#endif
