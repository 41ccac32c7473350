/* SPDX-License-Identifier: MIT */
/*
 * rpc_uplink.c - the uplink methods:
 *   uplink_create {name, switch, type: "tap"|"af_packet", ifname, vnet_hdr?},
 *   uplink_delete {name}, uplink_list {name?} (info and statistics).
 *
 * Each uplink is also registered as a device (type "uplink-tap" or
 * "uplink-af_packet") so that zocd_shutdown deletes it with the devices,
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
	void (*done)(void *arg);
	void *done_arg;
};

static const struct zoc_device_ops uplink_tap_ops;
static const struct zoc_device_ops uplink_afp_ops;

static struct uplink_dev *uplink_dev_find(const char *name)
{
	struct zoc_device *d = zoc_device_find(name);

	if (!d || (d->ops != &uplink_tap_ops && d->ops != &uplink_afp_ops))
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

struct uplink_params {
	const char *name;
	const char *sw;
	const char *type;
	const char *ifname;
	bool vnet_hdr;
};

static const struct zoc_rpc_param uplink_create_params[] = {
	P("name", STRING, struct uplink_params, name, true, 1, ZOC_DEVICE_NAME_MAX - 1,
	  "name of the uplink (its switch port's name)"),
	P("switch", STRING, struct uplink_params, sw, true, 1, ZOC_VSWITCH_NAME_MAX - 1,
	  "switch to join (switch_create)"),
	P("type", STRING, struct uplink_params, type, true, 1, 15,
	  "\"tap\" or \"af_packet\""),
	P("ifname", STRING, struct uplink_params, ifname, true, 1, ZOC_UPLINK_IFNAME_MAX - 1,
	  "host interface: the tap to create/attach, or the existing interface for af_packet"),
	P("vnet_hdr", BOOL, struct uplink_params, vnet_hdr, false, 0, 1,
	  "tap only: IFF_VNET_HDR, carry checksum/GSO metadata (default false)"),
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
	bool tap;
	int rc;

	if (strcmp(p->type, "tap") == 0) {
		tap = true;
	} else if (strcmp(p->type, "af_packet") == 0) {
		tap = false;
	} else {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "invalid params: 'type' must be \"tap\" or \"af_packet\", not \"%s\"",
			      p->type);
		return;
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
			      "no interface named '%s' (af_packet binds to an existing interface, "
			      "see 'ip link')",
			      p->ifname);
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

		if (rc == -EPERM || rc == -EACCES)
			hint = ": zocd needs CAP_NET_ADMIN and CAP_NET_RAW";
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
	d->dev.ops = tap ? &uplink_tap_ops : &uplink_afp_ops;
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
			if (dv->ops == &uplink_tap_ops || dv->ops == &uplink_afp_ops)
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
		 "AF_PACKET"},
		{"uplink_delete", rpc_uplink_delete, uplink_name_params,
		 sizeof(struct uplink_params), "delete an uplink (its switch port goes too)"},
		{"uplink_list", rpc_uplink_list, uplink_list_params, sizeof(struct uplink_params),
		 "list uplinks with their statistics"},
	};

	for (size_t i = 0; i < ZOC_ARRAY_SIZE(methods); i++)
		if (zoc_rpc_register(&methods[i]))
			ZOC_ERR("cannot register method %s", methods[i].name);
}
