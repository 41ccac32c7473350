/* SPDX-License-Identifier: MIT */
/*
 * rpc_virtio.c - virtio_blk_create {name, transport, socket, bdev,
 * num_queues}: a virtio-blk device over vhost-user (as vhost_blk_create) or
 * as a native virtio-pci function over vfio-user. Listing, statistics and
 * deletion go through the device registry (device_list, device_stats,
 * device_delete).
 */
#include "zocd/rpc_methods.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blk/bdev.h"
#include "core/device.h"
#include "core/log.h"
#include "core/util.h"
#include "ctl/jsonrpc.h"
#include "virtio/virtio_blk.h"
#include "zocd/vlink.h"

#define P(name, type, st, field, req, lo, hi, help) \
	{name, ZOC_RPC_##type, offsetof(st, field), req, lo, hi, help}

struct virtio_blk_dev {
	struct zoc_device dev; /* first: the registry hands us this */
	struct zoc_vblk *vb;
	struct zoc_vlink link;
	bool vhost_blk_method; /* created by vhost_blk_create: saved the same way */
	void (*done)(void *arg);
	void *done_arg;
};

static void vbd_link_gone(void *arg)
{
	struct virtio_blk_dev *vbd = arg;
	void (*done)(void *) = vbd->done;
	void *done_arg = vbd->done_arg;

	/* The link reset the device: no queue runs, no access comes. */
	zoc_vblk_destroy(vbd->vb);
	ZOC_INFO("device %s deleted", vbd->dev.name);
	free(vbd);
	if (done)
		done(done_arg);
}

static void vbd_destroy(struct zoc_device *d, void (*done)(void *arg), void *arg)
{
	struct virtio_blk_dev *vbd = ZOC_CONTAINER_OF(d, struct virtio_blk_dev, dev);

	zoc_device_unregister(d);
	vbd->done = done;
	vbd->done_arg = arg;
	zoc_vlink_close(&vbd->link, vbd_link_gone, vbd);
}

static json_t *vbd_info(struct zoc_device *d)
{
	struct virtio_blk_dev *vbd = ZOC_CONTAINER_OF(d, struct virtio_blk_dev, dev);
	json_t *o = zoc_vlink_info(&vbd->link);

	json_object_set_new(o, "name", json_string(d->name));
	json_object_set_new(o, "type", json_string(d->ops->type));
	json_object_set_new(o, "bdev", json_string(zoc_vblk_bdev_name(vbd->vb)));
	json_object_set_new(o, "num_queues", json_integer(zoc_vblk_num_queues(vbd->vb)));
	return o;
}

static json_t *vbd_stats(struct zoc_device *d)
{
	struct virtio_blk_dev *vbd = ZOC_CONTAINER_OF(d, struct virtio_blk_dev, dev);
	json_t *o = zoc_vblk_stats(vbd->vb);

	json_object_set_new(o, "name", json_string(d->name));
	return o;
}

static json_t *vbd_config(struct zoc_device *d)
{
	struct virtio_blk_dev *vbd = ZOC_CONTAINER_OF(d, struct virtio_blk_dev, dev);

	if (vbd->vhost_blk_method)
		return json_pack("{s:s, s:{s:s, s:s, s:s, s:i}}", "method", "vhost_blk_create",
				 "params", "name", d->name, "socket", zoc_vlink_socket(&vbd->link), "bdev",
				 zoc_vblk_bdev_name(vbd->vb), "num_queues",
				 zoc_vblk_num_queues(vbd->vb));
	return json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:i}}", "method", "virtio_blk_create",
			 "params", "name", d->name, "transport", zoc_vlink_name(vbd->link.transport),
			 "socket", zoc_vlink_socket(&vbd->link), "bdev", zoc_vblk_bdev_name(vbd->vb),
			 "num_queues", zoc_vblk_num_queues(vbd->vb));
}

static const struct zoc_device_ops vbd_vhost_ops = {
	.type = "vhost-user-blk",
	.destroy = vbd_destroy,
	.info = vbd_info,
	.stats = vbd_stats,
	.config = vbd_config,
};

static const struct zoc_device_ops vbd_vfio_ops = {
	.type = "vfio-user-virtio-blk",
	.destroy = vbd_destroy,
	.info = vbd_info,
	.stats = vbd_stats,
	.config = vbd_config,
};

struct virtio_blk_params {
	const char *name;
	const char *transport;
	const char *socket;
	const char *bdev;
	uint16_t num_queues;
};

static const struct zoc_rpc_param virtio_blk_params[] = {
	P("name", STRING, struct virtio_blk_params, name, true, 1, ZOC_DEVICE_NAME_MAX - 1,
	  "name of the new device"),
	P("transport", STRING, struct virtio_blk_params, transport, false, 1, 16,
	  "\"vhost-user\" (default) or \"vfio-user\" (a virtio-pci function)"),
	P("socket", STRING, struct virtio_blk_params, socket, true, 1, 107,
	  "path of the unix socket zocd listens on"),
	P("bdev", STRING, struct virtio_blk_params, bdev, true, 1, ZOC_BDEV_NAME_MAX - 1,
	  "bdev to serve"),
	P("num_queues", UINT16, struct virtio_blk_params, num_queues, false, 1,
	  ZOC_VBLK_MAX_QUEUES, "number of virtqueues (default 1)"),
	{NULL},
};

static void virtio_blk_create(struct zoc_rpc_req *req, const struct virtio_blk_params *p,
			      bool vhost_blk_method)
{
	struct zoc_bdev *b = zoc_bdev_find(p->bdev);
	uint16_t nq = p->num_queues ? p->num_queues : 1;
	enum zoc_vlink_transport t;
	int err;
	struct virtio_blk_dev *vbd;

	if (zoc_vlink_parse(p->transport, &t)) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "invalid params: 'transport' must be \"vhost-user\" or \"vfio-user\", "
			      "not \"%s\"",
			      p->transport);
		return;
	}
	if (zoc_device_find(p->name)) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "a device named '%s' exists already (see device_list)", p->name);
		return;
	}
	if (!b) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "no bdev named '%s': create it first (bdev_null_create, "
			      "bdev_uring_create) or see bdev_list",
			      p->bdev);
		return;
	}
	if (b->claims) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "bdev '%s' is already served by another device", p->bdev);
		return;
	}
	vbd = calloc(1, sizeof(*vbd));
	if (!vbd) {
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "out of memory");
		return;
	}
	snprintf(vbd->dev.name, sizeof(vbd->dev.name), "%s", p->name);
	vbd->dev.ops = t == ZOC_VLINK_VFIO_USER ? &vbd_vfio_ops : &vbd_vhost_ops;
	vbd->vhost_blk_method = vhost_blk_method;
	vbd->vb = zoc_vblk_create(p->name, b, nq);
	if (!vbd->vb) {
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "cannot create the virtio-blk device: %s",
			      strerror(errno));
		free(vbd);
		return;
	}
	err = zoc_vlink_open(&vbd->link, t, p->socket, zoc_vblk_to_virtio(vbd->vb));
	if (err) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "cannot serve on '%s': %s (is the directory there and writable, "
			      "and the path not a regular file?)",
			      p->socket, strerror(-err));
		/* nothing was connected: no queue runs */
		zoc_vblk_destroy(vbd->vb);
		free(vbd);
		return;
	}
	zoc_device_register(&vbd->dev);
	ZOC_INFO("device %s: virtio-blk over %s on %s, bdev %s, %u queue(s)", p->name,
		 zoc_vlink_name(t), p->socket, p->bdev, nq);
	zoc_rpc_result(req, json_string(p->name));
}

static void rpc_virtio_blk_create(struct zoc_rpc_req *req, void *params)
{
	virtio_blk_create(req, params, false);
}

/* vhost_blk_create {name, socket, bdev, num_queues}: the foundation's method,
 * virtio_blk_create with transport "vhost-user"; a device made with it is
 * saved with it. */
struct vhost_blk_params {
	const char *name;
	const char *socket;
	const char *bdev;
	uint16_t num_queues;
};

static const struct zoc_rpc_param vhost_blk_params[] = {
	P("name", STRING, struct vhost_blk_params, name, true, 1, ZOC_DEVICE_NAME_MAX - 1,
	  "name of the new device"),
	P("socket", STRING, struct vhost_blk_params, socket, true, 1, 107,
	  "path of the vhost-user unix socket zocd listens on"),
	P("bdev", STRING, struct vhost_blk_params, bdev, true, 1, ZOC_BDEV_NAME_MAX - 1,
	  "bdev to serve"),
	P("num_queues", UINT16, struct vhost_blk_params, num_queues, false, 1,
	  ZOC_VBLK_MAX_QUEUES, "number of virtqueues (default 1)"),
	{NULL},
};

static void rpc_vhost_blk_create(struct zoc_rpc_req *req, void *params)
{
	const struct vhost_blk_params *v = params;
	struct virtio_blk_params p = {.name = v->name, .transport = "vhost-user",
				      .socket = v->socket, .bdev = v->bdev,
				      .num_queues = v->num_queues};

	virtio_blk_create(req, &p, true);
}

void zoc_zocd_register_virtio_methods(void)
{
	static const struct zoc_rpc_method methods[] = {
		{"vhost_blk_create", rpc_vhost_blk_create, vhost_blk_params,
		 sizeof(struct vhost_blk_params), "serve a bdev as a vhost-user-blk device "
		 "(virtio_blk_create with transport \"vhost-user\")"},
		{"virtio_blk_create", rpc_virtio_blk_create, virtio_blk_params,
		 sizeof(struct virtio_blk_params),
		 "serve a bdev as a virtio-blk device: over vhost-user, or as a virtio-pci "
		 "function over vfio-user"},
	};

	for (size_t i = 0; i < ZOC_ARRAY_SIZE(methods); i++)
		if (zoc_rpc_register(&methods[i]))
			ZOC_ERR("cannot register method %s", methods[i].name);
}
