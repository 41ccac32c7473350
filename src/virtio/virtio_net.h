/* SPDX-License-Identifier: MIT */
/*
 * virtio_net.h - the virtio-net device model (virtio 1.2 section 5.1), one
 * port of a zoc_vswitch (net/port.h).
 *
 * Queues: rx0, tx0, rx1, tx1, ... rx(N-1), tx(N-1), then the control queue
 * (index 2N). Features offered: VERSION_1, MAC, STATUS, MRG_RXBUF, MTU,
 * CTRL_VQ, CTRL_RX, CTRL_MAC_ADDR, MQ (when N > 1), CSUM, GUEST_CSUM,
 * HOST_TSO4/TSO6/ECN/USO, GUEST_TSO4/TSO6/ECN/USO4/USO6, CTRL_GUEST_OFFLOADS
 * and the ring features INDIRECT_DESC, EVENT_IDX, RING_PACKED. No UFO (IP
 * fragmentation offload) either way. Super-frames the guest sends travel the
 * switch whole; a port that cannot take them gets them segmented (net/gso.h,
 * docs/virtio-net.md "Offloads").
 *
 * Threads: control calls run on reactor 0. Every queue of the device runs on
 * the port's owner reactor (one owner per port, port.h): with MQ all pairs
 * share that reactor (the queue pairs give the guest parallel rings, not
 * parallel host cores).
 */
#ifndef ZOC_VIRTIO_VIRTIO_NET_H
#define ZOC_VIRTIO_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "virtio/virtio_dev.h"

#define VIRTIO_NET_F_CSUM 0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_CTRL_GUEST_OFFLOADS 2
#define VIRTIO_NET_F_MTU 3
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_ECN 9
#define VIRTIO_NET_F_GUEST_UFO 10
#define VIRTIO_NET_F_HOST_TSO4 11
#define VIRTIO_NET_F_HOST_TSO6 12
#define VIRTIO_NET_F_HOST_ECN 13
#define VIRTIO_NET_F_HOST_UFO 14
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_F_CTRL_VQ 17
#define VIRTIO_NET_F_CTRL_RX 18
#define VIRTIO_NET_F_CTRL_VLAN 19
#define VIRTIO_NET_F_CTRL_RX_EXTRA 20
#define VIRTIO_NET_F_GUEST_ANNOUNCE 21
#define VIRTIO_NET_F_MQ 22
#define VIRTIO_NET_F_CTRL_MAC_ADDR 23
#define VIRTIO_NET_F_GUEST_USO4 54
#define VIRTIO_NET_F_GUEST_USO6 55
#define VIRTIO_NET_F_HOST_USO 56

#define VIRTIO_NET_S_LINK_UP 1

#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_GSO_NONE 0
#define VIRTIO_NET_HDR_GSO_TCPV4 1
#define VIRTIO_NET_HDR_GSO_UDP 3
#define VIRTIO_NET_HDR_GSO_TCPV6 4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#define VIRTIO_NET_HDR_GSO_ECN 0x80

#define VIRTIO_NET_OK 0
#define VIRTIO_NET_ERR 1
#define VIRTIO_NET_CTRL_RX 0
#define VIRTIO_NET_CTRL_RX_PROMISC 0
#define VIRTIO_NET_CTRL_RX_ALLMULTI 1
#define VIRTIO_NET_CTRL_MAC 1
#define VIRTIO_NET_CTRL_MAC_TABLE_SET 0
#define VIRTIO_NET_CTRL_MAC_ADDR_SET 1
#define VIRTIO_NET_CTRL_MQ 4
#define VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET 0
#define VIRTIO_NET_CTRL_GUEST_OFFLOADS 5
#define VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET 0

#define ZOC_VNET_MAX_PAIRS 8
#define ZOC_VNET_QUEUE_SIZE_MAX 1024
#define ZOC_VNET_MAC_TABLE_MAX 64

/* virtio_net_hdr with num_buffers: what VERSION_1 always uses (12 bytes). */
struct virtio_net_hdr {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
} __attribute__((packed));

/* Config space (little-endian), the part this device offers. */
struct virtio_net_config {
	uint8_t mac[6];
	uint16_t status;
	uint16_t max_virtqueue_pairs;
	uint16_t mtu;
} __attribute__((packed));

/* Per-queue drop reasons of the device (before / after the switch). */
enum zoc_vnet_drop {
	ZOC_VNET_DROP_SHORT_HDR = 0, /* tx: chain shorter than the header */
	ZOC_VNET_DROP_BAD_HDR,       /* tx: gso type, flags or csum fields invalid */
	ZOC_VNET_DROP_ZERO_LEN,      /* tx: no frame after the header */
	ZOC_VNET_DROP_OVERSIZE,      /* tx: frame over the MTU */
	ZOC_VNET_DROP_FAULT,         /* buffer outside guest memory / bad chain */
	ZOC_VNET_DROP_NO_PKTBUF,     /* tx: packet pool exhausted */
	ZOC_VNET_DROP_SHORT_RXBUF,   /* rx: receive buffer(s) too small */
	ZOC_VNET_DROP_NO_RXBUF,      /* rx: no receive buffer posted / queue down */
	ZOC_VNET_DROP_FILTERED,      /* rx: not for our MAC (rx mode / MAC table) */
	ZOC_VNET_DROP_OFFLOAD,       /* rx: GSO frame the guest cannot take and
				      * that could not be segmented */
	ZOC_VNET_DROP_BAD_GSO,       /* tx: GSO header not negotiated / not
				      * matching the frame (see docs) */
	ZOC_VNET_DROP__COUNT
};

struct zoc_vswitch;
struct zoc_port;
struct zoc_vnet;

struct zoc_vnet_opts {
	const char *name;
	struct zoc_vswitch *sw;
	bool has_mac;        /* else a random locally administered one */
	uint8_t mac[6];
	uint16_t num_queue_pairs; /* 1..ZOC_VNET_MAX_PAIRS, default 1 */
	uint32_t mtu;        /* 68..9000, default 1500 */
	uint16_t vlan;       /* 0: VLAN-unaware, else access VLAN 1..4094 */
	unsigned owner;      /* reactor of the port and of every queue */
};

/* Reactor 0. Creates the device and its switch port. NULL with errno. */
struct zoc_vnet *zoc_vnet_create(const struct zoc_vnet_opts *opts);
/* Reactor 0. All queues must be stopped. Removes the port; done(arg) runs
 * on reactor 0 once the device is freed. */
void zoc_vnet_destroy(struct zoc_vnet *vn, zoc_virtio_done_fn done, void *arg);
struct zoc_virtio_dev *zoc_vnet_to_virtio(struct zoc_vnet *vn);
struct zoc_vnet *zoc_vnet_from_virtio(struct zoc_virtio_dev *dev); /* NULL if not net */
struct zoc_port *zoc_vnet_port(struct zoc_vnet *vn);
void zoc_vnet_get_opts(struct zoc_vnet *vn, struct zoc_vnet_opts *opts);
/* Reactor 0: sets the link status bit and raises a config change. */
void zoc_vnet_set_link(struct zoc_vnet *vn, bool up);
/* {"port", "mac", "link_up", "features", "queue_pairs", "queues": [...]} */
json_t *zoc_vnet_stats(struct zoc_vnet *vn);
const char *zoc_vnet_drop_name(enum zoc_vnet_drop why);

#endif
