/* SPDX-License-Identifier: MIT */
/*
 * rpc_uplink.c - the uplink methods:
 *   uplink_create {name, switch, type: "tap"|"af_packet"|"af_xdp", ifname,
 *                  vnet_hdr? (tap), queue?, xdp_mode?, xdp_copy?, frames? (af_xdp)},
 *   uplink_delete {name}, uplink_list {name?} (info and statistics).
 *
 * "af_xdp" exists only in a zocd built with -Daf_xdp (libxdp, libbpf);
 * otherwise uplink_create answers it with an error that says so.
 *
 * Each uplink is also registered as a device (type "uplink-tap",
 * "uplink-af_packet" or "uplink-af_xdp") so that zocd_shutdown deletes it with the devices,
 * save_config writes it after the switches (the device writer runs after
 * the switch writer), and device_list shows it. switch_delete is refused
 * while an uplink is a port of the switch.
 */
#include "zocd/rpc_methods.h"

#include <errno.h>
#include <net/if.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/device.h"
#include "core/log.h"
#include "core/util.h"
#include "ctl/jsonrpc.h"
#include "net/uplink.h"
#include "net/vswitch.h"

#define P(name, type, st, field, req, lo, hi, help) \
	{name, ZOC_RPC_##type, offsetof(st, field), req, lo, hi, help}

struct uplink_dev {
	struct zoc_device dev; /* first */
	struct zoc_uplink *u;
	char sw_name[ZOC_VSWITCH_NAME_MAX];
	char type[16];
	char ifname[ZOC_UPLINK_IFNAME_MAX];
	bool vnet_hdr;
	/* af_xdp (as given, for save_config) */
	uint32_t queue, frames;
	char xdp_mode[8], xdp_copy[12];
	void (*done)(void *arg);
	void *done_arg;
};

static const struct zoc_device_ops uplink_tap_ops;
static const struct zoc_device_ops uplink_afp_ops;
static const struct zoc_device_ops uplink_xdp_ops;

static bool is_uplink_ops(const struct zoc_device_ops *ops)
{
	return ops == &uplink_tap_ops || ops == &uplink_afp_ops || ops == &uplink_xdp_ops;
}

static struct uplink_dev *uplink_dev_find(const char *name)
{
	struct zoc_device *d = zoc_device_find(name);

	if (!d || !is_uplink_ops(d->ops))
		return NULL;
	return ZOC_CONTAINER_OF(d, struct uplink_dev, dev);
}

static void ud_freed(void *arg)
{
	struct uplink_dev *d = arg;
	void (*done)(void *) = d->done;
	void *done_arg = d->done_arg;

	ZOC_INFO("uplink %s deleted", d->dev.name);
	free(d);
	if (done)
		done(done_arg);
}

static void ud_destroy(struct zoc_device *dv, void (*done)(void *arg), void *arg)
{
	struct uplink_dev *d = ZOC_CONTAINER_OF(dv, struct uplink_dev, dev);
	int rc;

	zoc_device_unregister(dv);
	d->done = done;
	d->done_arg = arg;
	rc = zoc_uplink_destroy(d->u, ud_freed, d);
	if (rc) {
		/* -EALREADY cannot happen (one owner); -ENOMEM: leak rather than crash */
		ZOC_ERR("uplink %s: destroy failed: %s", dv->name, strerror(-rc));
		if (done)
			done(arg);
	}
}

static json_t *ud_info(struct zoc_device *dv)
{
	struct uplink_dev *d = ZOC_CONTAINER_OF(dv, struct uplink_dev, dev);
	json_t *j = zoc_uplink_to_json(d->u);

	if (!j)
		j = json_object();
	json_object_set_new(j, "name", json_string(dv->name));
	json_object_set_new(j, "device_type", json_string(dv->ops->type));
	if (d->vnet_hdr)
		json_object_set_new(j, "vnet_hdr", json_true());
	return j;
}

static json_t *ud_config(struct zoc_device *dv)
{
	struct uplink_dev *d = ZOC_CONTAINER_OF(dv, struct uplink_dev, dev);
	json_t *prm = json_pack("{s:s, s:s, s:s, s:s}", "name", dv->name, "switch", d->sw_name,
				"type", d->type, "ifname", d->ifname);

	if (d->vnet_hdr)
		json_object_set_new(prm, "vnet_hdr", json_true());
	if (d->dev.ops == &uplink_xdp_ops) {
		if (d->queue)
			json_object_set_new(prm, "queue", json_integer(d->queue));
		if (d->frames)
			json_object_set_new(prm, "frames", json_integer(d->frames));
		if (d->xdp_mode[0])
			json_object_set_new(prm, "xdp_mode", json_string(d->xdp_mode));
		if (d->xdp_copy[0])
			json_object_set_new(prm, "xdp_copy", json_string(d->xdp_copy));
	}
	return json_pack("{s:s, s:o}", "method", "uplink_create", "params", prm);
}

static const struct zoc_device_ops uplink_tap_ops = {
	.type = "uplink-tap",
	.destroy = ud_destroy,
	.info = ud_info,
	.stats = ud_info,
	.config = ud_config,
};

static const struct zoc_device_ops uplink_afp_ops = {
	.type = "uplink-af_packet",
	.destroy = ud_destroy,
	.info = ud_info,
	.stats = ud_info,
	.config = ud_config,
};

static const struct zoc_device_ops uplink_xdp_ops = {
	.type = "uplink-af_xdp",
	.destroy = ud_destroy,
	.info = ud_info,
	.stats = ud_info,
	.config = ud_config,
};

struct uplink_params {
	const char *name;
	const char *sw;
	const char *type;
	const char *ifname;
	bool vnet_hdr;
	uint32_t queue;
	uint32_t frames;
	const char *xdp_mode;
	const char *xdp_copy;
};

static const struct zoc_rpc_param uplink_create_params[] = {
	P("name", STRING, struct uplink_params, name, true, 1, ZOC_DEVICE_NAME_MAX - 1,
	  "name of the uplink (its switch port's name)"),
	P("switch", STRING, struct uplink_params, sw, true, 1, ZOC_VSWITCH_NAME_MAX - 1,
	  "switch to join (switch_create)"),
	P("type", STRING, struct uplink_params, type, true, 1, 15,
	  "\"tap\", \"af_packet\" or \"af_xdp\" (the last only in a zocd built with AF_XDP)"),
	P("ifname", STRING, struct uplink_params, ifname, true, 1, ZOC_UPLINK_IFNAME_MAX - 1,
	  "host interface: the tap to create/attach, or the existing interface for af_packet"),
	P("vnet_hdr", BOOL, struct uplink_params, vnet_hdr, false, 0, 1,
	  "tap only: IFF_VNET_HDR, carry checksum/GSO metadata (default false)"),
	P("queue", UINT32, struct uplink_params, queue, false, 0, 1023,
	  "af_xdp only: the interface's queue id (default 0)"),
	P("frames", UINT32, struct uplink_params, frames, false, 64, 65536,
	  "af_xdp only: UMEM frames of 4 KiB, a power of two (default 4096: half RX, half TX)"),
	P("xdp_mode", STRING, struct uplink_params, xdp_mode, false, 1, 7,
	  "af_xdp only: \"auto\" (native, else skb; default), \"native\" or \"skb\""),
	P("xdp_copy", STRING, struct uplink_params, xdp_copy, false, 1, 11,
	  "af_xdp only: \"auto\" (zero copy if the driver has it; default), \"copy\" or "
	  "\"zerocopy\""),
	{NULL},
};

static const struct zoc_rpc_param uplink_name_params[] = {
	P("name", STRING, struct uplink_params, name, true, 1, ZOC_DEVICE_NAME_MAX - 1,
	  "uplink name"),
	{NULL},
};

static const struct zoc_rpc_param uplink_list_params[] = {
	P("name", STRING, struct uplink_params, name, false, 1, ZOC_DEVICE_NAME_MAX - 1,
	  "only this uplink"),
	{NULL},
};

static void rpc_uplink_create(struct zoc_rpc_req *req, void *params)
{
	struct uplink_params *p = params;
	struct zoc_uplink_opts o = {0};
	struct zoc_vswitch *sw;
	struct uplink_dev *d;
	bool tap = false, xdp = false;
	int rc;

	if (strcmp(p->type, "tap") == 0) {
		tap = true;
	} else if (strcmp(p->type, "af_packet") == 0) {
	} else if (strcmp(p->type, "af_xdp") == 0) {
		xdp = true;
		if (!zoc_uplink_type_find("af_xdp")) {
			zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
				      "type \"af_xdp\" is not available: this zocd was built without "
				      "AF_XDP (rebuild with meson -Daf_xdp=enabled; needs libxdp-dev "
				      "and libbpf-dev, see scripts/deps.sh)");
			return;
		}
	} else {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "invalid params: 'type' must be \"tap\", \"af_packet\" or \"af_xdp\", "
			      "not \"%s\"",
			      p->type);
		return;
	}
	if (!xdp && (p->queue || p->frames || p->xdp_mode || p->xdp_copy)) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "invalid params: 'queue', 'frames', 'xdp_mode' and 'xdp_copy' are for "
			      "type \"af_xdp\" only");
		return;
	}
	if (xdp) {
		if (p->frames && (p->frames & (p->frames - 1))) {
			zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
				      "invalid params: 'frames' must be a power of two, not %u",
				      p->frames);
			return;
		}
		if (!p->xdp_mode || strcmp(p->xdp_mode, "auto") == 0) {
			o.xdp_mode = ZOC_UPLINK_XDP_MODE_AUTO;
		} else if (strcmp(p->xdp_mode, "native") == 0) {
			o.xdp_mode = ZOC_UPLINK_XDP_MODE_NATIVE;
		} else if (strcmp(p->xdp_mode, "skb") == 0) {
			o.xdp_mode = ZOC_UPLINK_XDP_MODE_SKB;
		} else {
			zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
				      "invalid params: 'xdp_mode' must be \"auto\", \"native\" or "
				      "\"skb\", not \"%s\"",
				      p->xdp_mode);
			return;
		}
		if (!p->xdp_copy || strcmp(p->xdp_copy, "auto") == 0) {
			o.xdp_copy = ZOC_UPLINK_XDP_COPY_AUTO;
		} else if (strcmp(p->xdp_copy, "copy") == 0) {
			o.xdp_copy = ZOC_UPLINK_XDP_COPY_FORCE;
		} else if (strcmp(p->xdp_copy, "zerocopy") == 0) {
			o.xdp_copy = ZOC_UPLINK_XDP_COPY_ZEROCOPY;
		} else {
			zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
				      "invalid params: 'xdp_copy' must be \"auto\", \"copy\" or "
				      "\"zerocopy\", not \"%s\"",
				      p->xdp_copy);
			return;
		}
		o.xdp_queue = p->queue;
		o.xdp_frames = p->frames;
	}
	if (p->vnet_hdr && !tap) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "invalid params: 'vnet_hdr' is for type \"tap\" only");
		return;
	}
	if (zoc_device_find(p->name)) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "a device or uplink named '%s' exists already (see device_list)",
			      p->name);
		return;
	}
	sw = zoc_zocd_switch_get(p->sw);
	if (!sw) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "no switch named '%s': create it first (switch_create)", p->sw);
		return;
	}
	if (zoc_vswitch_port_find(sw, p->name)) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "switch '%s' has a port named '%s'",
			      p->sw, p->name);
		return;
	}
	if (!tap && if_nametoindex(p->ifname) == 0) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "no interface named '%s' (%s binds to an existing interface, "
			      "see 'ip link')",
			      p->ifname, p->type);
		return;
	}
	if (tap && access("/dev/net/tun", R_OK | W_OK) != 0) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "cannot use /dev/net/tun (%s): load the tun module, or run zocd "
			      "with access to it",
			      strerror(errno));
		return;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "out of memory");
		return;
	}
	o.port_name = p->name;
	o.vnet_hdr = p->vnet_hdr;
	rc = zoc_uplink_create(p->type, sw, p->ifname, &o, &d->u);
	if (rc) {
		const char *hint = "";

		if ((rc == -EPERM || rc == -EACCES) && xdp)
			hint = ": zocd needs CAP_NET_RAW, CAP_NET_ADMIN and CAP_BPF (or "
			       "CAP_SYS_ADMIN) for AF_XDP";
		else if (rc == -EPERM || rc == -EACCES)
			hint = ": zocd needs CAP_NET_ADMIN and CAP_NET_RAW";
		else if (xdp && rc == -EBUSY)
			hint = ": another XDP socket or program holds that queue / interface";
		else if (xdp && (rc == -EINVAL || rc == -EOPNOTSUPP))
			hint = ": no such queue, MTU too big for a 4 KiB UMEM frame (max 3818), "
			       "xdp_mode/xdp_copy not supported by the driver, or no "
			       "CONFIG_XDP_SOCKETS (see the zocd log)";
		else if (xdp && (rc == -ENOBUFS || rc == -ENOMEM))
			hint = ": the UMEM (frames x 4 KiB) is over RLIMIT_MEMLOCK (give zocd "
			       "CAP_IPC_LOCK or a higher limit, or fewer frames)";
		else if (xdp && rc == -EAFNOSUPPORT)
			hint = ": the kernel has no AF_XDP (CONFIG_XDP_SOCKETS)";
		else if (rc == -ENODEV)
			hint = ": no such interface";
		else if (rc == -EEXIST)
			hint = ": the port name is taken";
		else if (rc == -EBUSY || rc == -EINVAL)
			hint = tap ? ": the name may belong to a non-tap interface or a tap in use"
				   : "";
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "cannot create %s uplink '%s' on '%s': %s%s", p->type, p->name,
			      p->ifname, strerror(-rc), hint);
		free(d);
		return;
	}
	snprintf(d->dev.name, sizeof(d->dev.name), "%s", p->name);
	snprintf(d->sw_name, sizeof(d->sw_name), "%s", p->sw);
	snprintf(d->type, sizeof(d->type), "%s", p->type);
	snprintf(d->ifname, sizeof(d->ifname), "%s", p->ifname);
	d->vnet_hdr = p->vnet_hdr;
	d->queue = p->queue;
	d->frames = p->frames;
	if (p->xdp_mode)
		snprintf(d->xdp_mode, sizeof(d->xdp_mode), "%s", p->xdp_mode);
	if (p->xdp_copy)
		snprintf(d->xdp_copy, sizeof(d->xdp_copy), "%s", p->xdp_copy);
	d->dev.ops = tap ? &uplink_tap_ops : xdp ? &uplink_xdp_ops : &uplink_afp_ops;
	zoc_device_register(&d->dev);
	ZOC_INFO("uplink %s: %s on %s, switch %s", p->name, p->type, p->ifname, p->sw);
	zoc_rpc_result(req, json_string(p->name));
}

static void uplink_deleted(void *arg)
{
	zoc_rpc_result(arg, json_true());
}

static void rpc_uplink_delete(struct zoc_rpc_req *req, void *params)
{
	struct uplink_params *p = params;
	struct uplink_dev *d = uplink_dev_find(p->name);

	if (!d) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "no uplink named '%s' (see uplink_list)",
			      p->name);
		return;
	}
	d->dev.ops->destroy(&d->dev, uplink_deleted, req);
}

static void rpc_uplink_list(struct zoc_rpc_req *req, void *params)
{
	struct uplink_params *p = params;
	json_t *arr = json_array();

	if (p->name) {
		struct uplink_dev *d = uplink_dev_find(p->name);

		if (!d) {
			json_decref(arr);
			zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "no uplink named '%s'", p->name);
			return;
		}
		json_array_append_new(arr, ud_info(&d->dev));
	} else {
		for (struct zoc_device *dv = zoc_device_next(NULL); dv; dv = zoc_device_next(dv))
			if (is_uplink_ops(dv->ops))
				json_array_append_new(arr, ud_info(dv));
	}
	zoc_rpc_result(req, arr);
}

void zoc_zocd_register_uplink_methods(void)
{
	static const struct zoc_rpc_method methods[] = {
		{"uplink_create", rpc_uplink_create, uplink_create_params,
		 sizeof(struct uplink_params),
		 "attach a host interface to a switch: a tap, or an existing interface over "
		 "AF_PACKET or AF_XDP"},
		{"uplink_delete", rpc_uplink_delete, uplink_name_params,
		 sizeof(struct uplink_params), "delete an uplink (its switch port goes too)"},
		{"uplink_list", rpc_uplink_list, uplink_list_params, sizeof(struct uplink_params),
		 "list uplinks with their statistics"},
	};

	for (size_t i = 0; i < ZOC_ARRAY_SIZE(methods); i++)
		if (zoc_rpc_register(&methods[i]))
			ZOC_ERR("cannot register method %s", methods[i].name);
}
