/* SPDX-License-Identifier: MIT */
/*
 * vlink.h - how zocd serves a virtio device model (zoc_virtio_dev): over
 * vhost-user, or as a native virtio-pci function over vfio-user. The device
 * RPCs (virtio_blk_create, virtio_net_create) share this instead of each
 * spelling out both transports. Control plane only (reactor 0).
 */
#ifndef ZOC_ZOCD_VLINK_H
#define ZOC_ZOCD_VLINK_H

#include <jansson.h>

struct zoc_virtio_dev;

enum zoc_vlink_transport {
	ZOC_VLINK_VHOST_USER,
	ZOC_VLINK_VFIO_USER,
};

struct zoc_vlink {
	enum zoc_vlink_transport transport;
	struct zoc_vu_server *vu;   /* vhost-user */
	struct zoc_virtio_pci *vp;  /* vfio-user: the PCI function ... */
	struct zoc_vfu_server *vfu; /* ... and its link */
	void (*gone)(void *arg);
	void *gone_arg;
};

/* "vhost-user" (also NULL: the default) or "vfio-user"; -EINVAL otherwise. */
int zoc_vlink_parse(const char *name, enum zoc_vlink_transport *t);
const char *zoc_vlink_name(enum zoc_vlink_transport t);

/* Starts serving dev on a unix socket at path. 0, or -errno with nothing
 * left behind (no client can have connected: no queue of dev runs). */
int zoc_vlink_open(struct zoc_vlink *l, enum zoc_vlink_transport t, const char *path,
		   struct zoc_virtio_dev *dev);
/* Closes the socket and its client (the device is reset: no queue runs, no
 * access comes), destroys the PCI function, then gone(arg). */
void zoc_vlink_close(struct zoc_vlink *l, void (*gone)(void *arg), void *arg);

const char *zoc_vlink_socket(const struct zoc_vlink *l);
/* A new object: socket, transport, and the link's own figures (vhost-user:
 * the server's; vfio-user: "link" and "virtio_pci"). */
json_t *zoc_vlink_info(const struct zoc_vlink *l);

#endif
