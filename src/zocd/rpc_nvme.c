/* SPDX-License-Identifier: MIT */
/*
 * rpc_nvme.c - NVMe controllers over vfio-user (VMs) or the Virtual Bus
 * (zoc-vbus.ko, the bare-metal host's own driver): nvme_ctrlr_create,
 * nvme_ns_add, nvme_ns_remove. Listing, statistics and deletion go through
 * the device registry (device_list, device_stats, device_delete).
 */
#include "zocd/rpc_methods.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blk/bdev.h"
#include "core/device.h"
#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"
#include "ctl/jsonrpc.h"
#include "link/vbus.h"
#include "link/vfio_user.h"
#include "nvme/nvme.h"

#define P(name, type, st, field, req, lo, hi, help) \
	{name, ZOC_RPC_##type, offsetof(st, field), req, lo, hi, help}

struct nvme_dev {
	struct zoc_device dev;         /* first: the registry hands us this */
	struct zoc_nvme_ctrlr *ctrlr;
	struct zoc_vfu_server *srv;    /* transport vfio-user */
	struct zoc_vbus_link *vbus;    /* transport vbus */
	uint64_t dma_mb;
	uint16_t max_io_queues;
	uint32_t max_queue_size;
	void (*done)(void *arg);
	void *done_arg;
};

static const struct zoc_device_ops nvme_dev_ops;

/* The device named name if it is an NVMe controller, else NULL. */
static struct nvme_dev *nvme_dev_find(const char *name)
{
	struct zoc_device *d = zoc_device_find(name);

	return d && d->ops == &nvme_dev_ops ? ZOC_CONTAINER_OF(d, struct nvme_dev, dev) : NULL;
}

static void nvme_dev_ctrlr_gone(void *arg)
{
	struct nvme_dev *nd = arg;
	void (*done)(void *) = nd->done;
	void *done_arg = nd->done_arg;

	ZOC_INFO("device %s deleted", nd->dev.name);
	free(nd);
	if (done)
		done(done_arg);
}

static void nvme_dev_link_gone(void *arg)
{
	struct nvme_dev *nd = arg;

	zoc_nvme_ctrlr_destroy(nd->ctrlr, nvme_dev_ctrlr_gone, nd);
}

static void nvme_dev_destroy(struct zoc_device *d, void (*done)(void *arg), void *arg)
{
	struct nvme_dev *nd = ZOC_CONTAINER_OF(d, struct nvme_dev, dev);

	zoc_device_unregister(d);
	nd->done = done;
	nd->done_arg = arg;
	/* The link first: it stops BAR accesses and interrupts, then the
	 * controller drains its queues. */
	if (nd->vbus)
		zoc_vbus_link_destroy(nd->vbus, nvme_dev_link_gone, nd);
	else
		zoc_vfu_server_destroy(nd->srv, nvme_dev_link_gone, nd);
}

static json_t *nvme_dev_info(struct zoc_device *d)
{
	struct nvme_dev *nd = ZOC_CONTAINER_OF(d, struct nvme_dev, dev);
	json_t *o = zoc_nvme_ctrlr_info(nd->ctrlr);

	json_object_set_new(o, "name", json_string(d->name));
	json_object_set_new(o, "type", json_string(d->ops->type));
	json_object_set_new(o, "transport", json_string(nd->vbus ? "vbus" : "vfio-user"));
	json_object_set_new(o, "link",
			    nd->vbus ? zoc_vbus_link_info(nd->vbus) : zoc_vfu_server_info(nd->srv));
	return o;
}

static json_t *nvme_dev_stats(struct zoc_device *d)
{
	struct nvme_dev *nd = ZOC_CONTAINER_OF(d, struct nvme_dev, dev);
	json_t *o = zoc_nvme_ctrlr_stats(nd->ctrlr);

	json_object_set_new(o, "name", json_string(d->name));
	return o;
}

/* nvme_ctrlr_create, then one nvme_ns_add per namespace. */
static json_t *nvme_dev_config(struct zoc_device *d)
{
	struct nvme_dev *nd = ZOC_CONTAINER_OF(d, struct nvme_dev, dev);
	json_t *calls = json_array();
	json_t *info = zoc_nvme_ctrlr_info(nd->ctrlr);
	json_t *nss = json_object_get(info, "namespaces");
	json_t *ns;
	size_t i;

	if (nd->vbus)
		json_array_append_new(calls,
				      json_pack("{s:s, s:{s:s, s:s, s:i, s:I, s:I}}", "method",
						"nvme_ctrlr_create", "params", "name", d->name,
						"transport", "vbus", "max_io_queues",
						nd->max_io_queues, "max_queue_size",
						(json_int_t)nd->max_queue_size, "dma_mb",
						(json_int_t)nd->dma_mb));
	else
		json_array_append_new(calls,
				      json_pack("{s:s, s:{s:s, s:s, s:i, s:I}}", "method",
						"nvme_ctrlr_create", "params", "name", d->name,
						"socket", zoc_vfu_server_path(nd->srv),
						"max_io_queues", nd->max_io_queues,
						"max_queue_size", (json_int_t)nd->max_queue_size));
	json_array_foreach(nss, i, ns) {
		json_t *bdev = json_object_get(ns, "bdev");
		json_t *nsid = json_object_get(ns, "nsid");

		if (!json_is_string(bdev) || !json_is_integer(nsid))
			continue;
		json_array_append_new(calls, json_pack("{s:s, s:{s:s, s:O, s:O}}", "method",
						       "nvme_ns_add", "params", "ctrlr", d->name,
						       "bdev", bdev, "nsid", nsid));
	}
	json_decref(info);
	return calls;
}

static const struct zoc_device_ops nvme_dev_ops = {
	.type = "vfio-user-nvme",
	.destroy = nvme_dev_destroy,
	.info = nvme_dev_info,
	.stats = nvme_dev_stats,
	.config = nvme_dev_config,
};

/* ------------------------------------------------------- nvme_ctrlr_create */

struct nvme_ctrlr_params {
	const char *name;
	const char *socket;
	const char *transport;
	uint16_t max_io_queues;
	uint32_t max_queue_size;
	uint32_t dma_mb;
};

static const struct zoc_rpc_param nvme_ctrlr_params[] = {
	P("name", STRING, struct nvme_ctrlr_params, name, true, 1, ZOC_DEVICE_NAME_MAX - 1,
	  "name of the new controller"),
	P("socket", STRING, struct nvme_ctrlr_params, socket, false, 1, 107,
	  "path of the vfio-user unix socket zocd listens on (transport vfio-user)"),
	P("transport", STRING, struct nvme_ctrlr_params, transport, false, 1, 16,
	  "\"vfio-user\" (default: a VM's VMM connects to socket) or \"vbus\" (the host's "
	  "own nvme driver, through zoc-vbus.ko)"),
	P("dma_mb", UINT32, struct nvme_ctrlr_params, dma_mb, false, 1, 256,
	  "vbus: MiB of the function's DMA bounce pool (default 64)"),
	P("max_io_queues", UINT16, struct nvme_ctrlr_params, max_io_queues, false, 1,
	  ZOC_NVME_MAX_IO_QUEUES, "I/O queue pairs the driver may create (default 16)"),
	P("max_queue_size", UINT32, struct nvme_ctrlr_params, max_queue_size, false, 2, 4096,
	  "entries per queue, CAP.MQES + 1 (default 1024)"),
	{NULL},
};

static void rpc_nvme_ctrlr_create(struct zoc_rpc_req *req, void *params)
{
	struct nvme_ctrlr_params *p = params;
	struct zoc_nvme_ctrlr_opts o = {
		.name = p->name,
		.max_io_queues = p->max_io_queues ? p->max_io_queues : 16,
		.max_queue_size = p->max_queue_size ? p->max_queue_size : 1024,
		/* Polling reactors read doorbells from shared memory; sleeping
		 * ones need every doorbell write as a message that wakes them. */
		.mmap_doorbells = !zoc_reactor_interrupt_mode(),
	};
	struct nvme_dev *nd;
	bool vbus = p->transport && !strcmp(p->transport, "vbus");
	char lerr[256];
	int rc;

	if (p->transport && !vbus && strcmp(p->transport, "vfio-user")) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "transport '%s' unknown: \"vfio-user\" or \"vbus\"", p->transport);
		return;
	}
	if (vbus ? p->socket != NULL : p->socket == NULL) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      vbus ? "transport vbus takes no socket"
				   : "socket is required (the vfio-user socket to listen on)");
		return;
	}
	if (p->dma_mb && !vbus) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "dma_mb is for transport vbus only");
		return;
	}
	if (vbus) {
		o.mmap_doorbells = false; /* the link forwards doorbell stores as BAR writes */
		o.dbbuf = true;           /* polling reactors: shadow doorbells in host RAM */
	}
	if (zoc_device_find(p->name)) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "a device named '%s' exists already (see device_list)", p->name);
		return;
	}
	nd = calloc(1, sizeof(*nd));
	if (!nd) {
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "out of memory");
		return;
	}
	snprintf(nd->dev.name, sizeof(nd->dev.name), "%s", p->name);
	nd->dev.ops = &nvme_dev_ops;
	nd->max_io_queues = o.max_io_queues;
	nd->max_queue_size = o.max_queue_size;
	nd->dma_mb = p->dma_mb ? p->dma_mb : 64;
	rc = zoc_nvme_ctrlr_create(&o, &nd->ctrlr);
	if (rc) {
		zoc_rpc_error(req, rc == -EINVAL ? ZOC_RPC_INVALID_PARAMS : ZOC_RPC_INTERNAL_ERROR,
			      "cannot create NVMe controller '%s': %s", p->name, strerror(-rc));
		free(nd);
		return;
	}
	if (vbus) {
		/* BAR0: AQA/ASQ/ACQ before INTMS/INTMC before CC (the driver sets
		 * the admin queue up before it enables), then the doorbells
		 * (consumed: each store counts, even one that repeats the last);
		 * the registers the controller updates are published. */
		struct zoc_vbus_link_opts lo = {
			.dma_size = nd->dma_mb << 20,
			.watch = {{0, 0x24, 0x14}, {0, 0x0c, 0x08}, {0, 0x14, 0x04},
				  {0, 0x1000, 8u * (o.max_io_queues + 1u), true}},
			.nwatch = 4,
			.publish = {{0, 0x00, 0x0c}, {0, 0x14, 0x24}},
			.npublish = 2,
		};

		nd->vbus = zoc_vbus_link_create(zoc_nvme_ctrlr_pci(nd->ctrlr), &lo, lerr,
						sizeof(lerr));
		if (!nd->vbus) {
			zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "nvme_ctrlr_create %s: %s",
				      p->name, lerr);
			zoc_nvme_ctrlr_destroy(nd->ctrlr, free, nd);
			return;
		}
		zoc_device_register(&nd->dev);
		ZOC_INFO("device %s: NVMe controller on the Virtual Bus, %u I/O queues of %u "
			 "entries, %" PRIu64 " MiB DMA pool",
			 p->name, o.max_io_queues, o.max_queue_size, nd->dma_mb);
		zoc_rpc_result(req, json_string(p->name));
		return;
	}
	nd->srv = zoc_vfu_server_create(p->socket, zoc_nvme_ctrlr_pci(nd->ctrlr));
	if (!nd->srv) {
		int err = errno;

		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "cannot listen on '%s': %s (is the directory there and writable, "
			      "and the path not a regular file?)",
			      p->socket, strerror(err));
		/* Nothing is connected yet: the controller drains at once. */
		zoc_nvme_ctrlr_destroy(nd->ctrlr, free, nd);
		return;
	}
	zoc_device_register(&nd->dev);
	ZOC_INFO("device %s: NVMe controller on vfio-user %s, %u I/O queues of %u entries, "
		 "doorbells %s",
		 p->name, p->socket, o.max_io_queues, o.max_queue_size,
		 o.mmap_doorbells ? "in shared memory (polled)" : "trapped");
	zoc_rpc_result(req, json_string(p->name));
}

/* ------------------------------------------------------------ nvme_ns_add */

struct nvme_ns_params {
	const char *ctrlr;
	const char *bdev;
	uint32_t nsid;
};

static const struct zoc_rpc_param nvme_ns_add_params[] = {
	P("ctrlr", STRING, struct nvme_ns_params, ctrlr, true, 1, ZOC_DEVICE_NAME_MAX - 1,
	  "NVMe controller (nvme_ctrlr_create)"),
	P("bdev", STRING, struct nvme_ns_params, bdev, true, 1, ZOC_BDEV_NAME_MAX - 1,
	  "bdev to serve as the namespace"),
	P("nsid", UINT32, struct nvme_ns_params, nsid, false, 1, ZOC_NVME_MAX_NS,
	  "namespace id (default: the lowest free one)"),
	{NULL},
};

static struct nvme_dev *ctrlr_or_error(struct zoc_rpc_req *req, const char *name)
{
	struct nvme_dev *nd = nvme_dev_find(name);

	if (!nd)
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      zoc_device_find(name)
				      ? "device '%s' is not an NVMe controller"
				      : "no NVMe controller named '%s' (see device_list)",
			      name);
	return nd;
}

static void rpc_nvme_ns_add(struct zoc_rpc_req *req, void *params)
{
	struct nvme_ns_params *p = params;
	struct nvme_dev *nd = ctrlr_or_error(req, p->ctrlr);
	struct zoc_bdev *b;
	uint32_t nsid = 0;
	int rc;

	if (!nd)
		return;
	b = zoc_bdev_find(p->bdev);
	if (!b) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "no bdev named '%s': create it first (bdev_null_create, "
			      "bdev_uring_create) or see bdev_list",
			      p->bdev);
		return;
	}
	if (b->claims) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "bdev '%s' is already served by a device", p->bdev);
		return;
	}
	rc = zoc_nvme_ns_add(nd->ctrlr, b, p->nsid, &nsid);
	if (rc == -EEXIST)
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "controller '%s' has a namespace %u already", p->ctrlr, p->nsid);
	else if (rc == -ENOSPC)
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "controller '%s' has no free namespace id (at most %u)", p->ctrlr,
			      ZOC_NVME_MAX_NS);
	else if (rc == -EINVAL)
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "bdev '%s' cannot be a namespace (block size %u: NVMe needs 512 to "
			      "4096)",
			      p->bdev, b->block_size);
	else if (rc)
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "nvme_ns_add: %s", strerror(-rc));
	else {
		ZOC_INFO("device %s: namespace %u on bdev %s", p->ctrlr, nsid, p->bdev);
		zoc_rpc_result(req, json_integer(nsid));
	}
}

/* --------------------------------------------------------- nvme_ns_remove */

static const struct zoc_rpc_param nvme_ns_remove_params[] = {
	P("ctrlr", STRING, struct nvme_ns_params, ctrlr, true, 1, ZOC_DEVICE_NAME_MAX - 1,
	  "NVMe controller"),
	P("nsid", UINT32, struct nvme_ns_params, nsid, true, 1, ZOC_NVME_MAX_NS,
	  "namespace id to detach"),
	{NULL},
};

static void ns_removed(void *arg, int status)
{
	struct zoc_rpc_req *req = arg;

	if (status == -ENOENT)
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "no such namespace (see device_list for the controller's namespaces)");
	else if (status)
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "nvme_ns_remove: %s", strerror(-status));
	else
		zoc_rpc_result(req, NULL);
}

static void rpc_nvme_ns_remove(struct zoc_rpc_req *req, void *params)
{
	struct nvme_ns_params *p = params;
	struct nvme_dev *nd = ctrlr_or_error(req, p->ctrlr);

	if (nd)
		zoc_nvme_ns_remove(nd->ctrlr, p->nsid, ns_removed, req);
}

void zoc_zocd_register_nvme_methods(void)
{
	static const struct zoc_rpc_method methods[] = {
		{"nvme_ctrlr_create", rpc_nvme_ctrlr_create, nvme_ctrlr_params,
		 sizeof(struct nvme_ctrlr_params),
		 "serve an NVMe controller over vfio-user or the Virtual Bus (add namespaces "
		 "with nvme_ns_add)"},
		{"nvme_ns_add", rpc_nvme_ns_add, nvme_ns_add_params, sizeof(struct nvme_ns_params),
		 "attach a bdev to an NVMe controller as a namespace; returns its nsid"},
		{"nvme_ns_remove", rpc_nvme_ns_remove, nvme_ns_remove_params,
		 sizeof(struct nvme_ns_params), "detach a namespace from an NVMe controller"},
	};

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (zoc_rpc_register(&methods[i]))
			ZOC_ERR("cannot register method %s", methods[i].name);
}
