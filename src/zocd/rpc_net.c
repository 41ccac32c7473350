/* SPDX-License-Identifier: MIT */
/*
 * rpc_net.c - the switch and virtio-net methods:
 *   switch_create {name, aging_s?, fdb_max?, ct_capacity?, ct_max_capacity?,
 *   ct_port_cap?}, switch_delete {name},
 *   switch_list {name?} (ports and their statistics), switch_mac_table {name},
 *   virtio_net_create {name, transport, socket, switch, mac?, num_queue_pairs?,
 *   mtu?, vlan?} (the device and its switch port; deletion, listing and
 *   statistics through the device registry: device_delete, device_list,
 *   device_stats). save_config writes the switches before the devices.
 *
 * The switch registry (by name) is the vSwitch's own (zoc_vswitch_find);
 * zoc_zocd_switch_get() is what other method files (uplinks) use: it also
 * makes sure the per-reactor packet pools exist.
 */
#include "zocd/rpc_methods.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"
#include "ctl/jsonrpc.h"
#include "net/pkt.h"
#include "net/port.h"
#include "net/vswitch.h"
#include "virtio/virtio_net.h"
#include "zocd/vlink.h"

#define P(name, type, st, field, req, lo, hi, help) \
	{name, ZOC_RPC_##type, offsetof(st, field), req, lo, hi, help}

/* Packet buffers per reactor: small (2 KiB) and large (9 KiB). */
#define NET_POOL_SMALL 8192
#define NET_POOL_LARGE 512

static bool g_pools_ready;

/* The pools are created with the first switch (zocd without networking
 * spends no memory on them); they live until the process exits. */
static int net_pools_init(void)
{
	int rc;

	if (g_pools_ready || zoc_pktpool_local())
		return 0;
	rc = zoc_pktpools_init(NET_POOL_SMALL, NET_POOL_LARGE);
	if (rc == 0)
		g_pools_ready = true;
	return rc;
}

struct zoc_vswitch *zoc_zocd_switch_get(const char *name)
{
	return name ? zoc_vswitch_find(name) : NULL;
}

/* ------------------------------------------------------------- switches */

struct switch_params {
	const char *name;
	uint32_t aging_s;
	uint32_t fdb_max;
	uint32_t ct_capacity, ct_max_capacity, ct_port_cap;
};

static const struct zoc_rpc_param switch_create_params[] = {
	P("name", STRING, struct switch_params, name, true, 1, ZOC_VSWITCH_NAME_MAX - 1,
	  "name of the new switch"),
	P("aging_s", UINT32, struct switch_params, aging_s, false, 1, 1000000,
	  "MAC ageing time in seconds (default 300)"),
	P("fdb_max", UINT32, struct switch_params, fdb_max, false, 16, 1u << 20,
	  "MAC table entries (default 4096)"),
	P("ct_capacity", UINT32, struct switch_params, ct_capacity, false, 64, 1u << 30,
	  "connection-tracking sessions at start (default 65536)"),
	P("ct_max_capacity", UINT32, struct switch_params, ct_max_capacity, false, 64, 1u << 30,
	  "sessions the table may grow to (default 16777216)"),
	P("ct_port_cap", UINT32, struct switch_params, ct_port_cap, false, 1, 1u << 30,
	  "sessions per port (default: no cap)"),
	{NULL},
};

static const struct zoc_rpc_param switch_name_params[] = {
	P("name", STRING, struct switch_params, name, true, 1, ZOC_VSWITCH_NAME_MAX - 1,
	  "switch name"),
	{NULL},
};

static const struct zoc_rpc_param switch_list_params[] = {
	P("name", STRING, struct switch_params, name, false, 1, ZOC_VSWITCH_NAME_MAX - 1,
	  "only this switch"),
	{NULL},
};

/* Per switch: the options it was created with (for save_config). */
struct sw_saved {
	char name[ZOC_VSWITCH_NAME_MAX];
	uint32_t aging_s, fdb_max;
	uint32_t ct_capacity, ct_max_capacity, ct_port_cap;
	struct sw_saved *next;
};

static struct sw_saved *g_saved;

static void rpc_switch_create(struct zoc_rpc_req *req, void *params)
{
	struct switch_params *p = params;
	struct zoc_vswitch_opts o = {.aging_s = p->aging_s, .fdb_max = p->fdb_max,
				     .ct_capacity = p->ct_capacity,
				     .ct_max_capacity = p->ct_max_capacity,
				     .ct_port_cap = p->ct_port_cap};
	struct zoc_vswitch *sw;
	struct sw_saved *s;
	int rc;

	if (zoc_vswitch_find(p->name)) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "a switch named '%s' exists already",
			      p->name);
		return;
	}
	rc = net_pools_init();
	if (rc) {
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "cannot create packet pools: %s",
			      strerror(-rc));
		return;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "out of memory");
		return;
	}
	rc = zoc_vswitch_create(p->name, &o, &sw);
	if (rc) {
		free(s);
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "cannot create switch '%s': %s",
			      p->name, strerror(-rc));
		return;
	}
	snprintf(s->name, sizeof(s->name), "%s", p->name);
	s->aging_s = p->aging_s;
	s->fdb_max = p->fdb_max;
	s->ct_capacity = p->ct_capacity;
	s->ct_max_capacity = p->ct_max_capacity;
	s->ct_port_cap = p->ct_port_cap;
	s->next = g_saved;
	g_saved = s;
	ZOC_INFO("switch %s created", p->name);
	zoc_rpc_result(req, json_string(p->name));
}

static void rpc_switch_delete(struct zoc_rpc_req *req, void *params)
{
	struct switch_params *p = params;
	struct zoc_vswitch *sw = zoc_vswitch_find(p->name);
	int rc;

	if (!sw) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "no switch named '%s' (see switch_list)",
			      p->name);
		return;
	}
	rc = zoc_vswitch_destroy(sw);
	if (rc) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "switch '%s' still has ports: delete its devices and uplinks "
			      "first (%s)",
			      p->name, strerror(-rc));
		return;
	}
	for (struct sw_saved **pp = &g_saved; *pp; pp = &(*pp)->next) {
		if (!strcmp((*pp)->name, p->name)) {
			struct sw_saved *s = *pp;

			*pp = s->next;
			free(s);
			break;
		}
	}
	ZOC_INFO("switch %s deleted", p->name);
	zoc_rpc_result(req, json_true());
}

static void rpc_switch_list(struct zoc_rpc_req *req, void *params)
{
	struct switch_params *p = params;
	json_t *arr = json_array();

	if (p->name) {
		struct zoc_vswitch *sw = zoc_vswitch_find(p->name);

		if (!sw) {
			json_decref(arr);
			zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "no switch named '%s'", p->name);
			return;
		}
		json_array_append_new(arr, zoc_vswitch_to_json(sw));
	} else {
		for (struct zoc_vswitch *sw = zoc_vswitch_next(NULL); sw; sw = zoc_vswitch_next(sw))
			json_array_append_new(arr, zoc_vswitch_to_json(sw));
	}
	zoc_rpc_result(req, arr);
}

static void rpc_switch_mac_table(struct zoc_rpc_req *req, void *params)
{
	struct switch_params *p = params;
	struct zoc_vswitch *sw = zoc_vswitch_find(p->name);

	if (!sw) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "no switch named '%s' (see switch_list)",
			      p->name);
		return;
	}
	zoc_rpc_result(req, zoc_vswitch_fdb_to_json(sw));
}

static void switch_config_writer(json_t *array)
{
	/* Oldest first, so a reload creates them in the same order. */
	struct sw_saved *v[ZOC_VSWITCH_MAX_PORTS];
	unsigned n = 0;

	for (struct sw_saved *s = g_saved; s && n < ZOC_ARRAY_SIZE(v); s = s->next)
		v[n++] = s;
	while (n--) {
		json_t *prm = json_pack("{s:s}", "name", v[n]->name);

		if (v[n]->aging_s)
			json_object_set_new(prm, "aging_s", json_integer(v[n]->aging_s));
		if (v[n]->fdb_max)
			json_object_set_new(prm, "fdb_max", json_integer(v[n]->fdb_max));
		if (v[n]->ct_capacity)
			json_object_set_new(prm, "ct_capacity", json_integer(v[n]->ct_capacity));
		if (v[n]->ct_max_capacity)
			json_object_set_new(prm, "ct_max_capacity",
					    json_integer(v[n]->ct_max_capacity));
		if (v[n]->ct_port_cap)
			json_object_set_new(prm, "ct_port_cap", json_integer(v[n]->ct_port_cap));
		json_array_append_new(array, json_pack("{s:s, s:o}", "method", "switch_create",
						       "params", prm));
	}
}

/* ----------------------------------------------------------- virtio-net */

struct virtio_net_dev {
	struct zoc_device dev; /* first */
	struct zoc_vnet *vn;
	struct zoc_vlink link;
	char sw_name[ZOC_VSWITCH_NAME_MAX];
	void (*done)(void *arg);
	void *done_arg;
};

static void vnd_freed(void *arg)
{
	struct virtio_net_dev *d = arg;
	void (*done)(void *) = d->done;
	void *done_arg = d->done_arg;

	ZOC_INFO("device %s deleted", d->dev.name);
	free(d);
	if (done)
		done(done_arg);
}

static void vnd_link_gone(void *arg)
{
	struct virtio_net_dev *d = arg;

	zoc_vnet_destroy(d->vn, vnd_freed, d);
}

static void vnd_destroy(struct zoc_device *dv, void (*done)(void *arg), void *arg)
{
	struct virtio_net_dev *d = ZOC_CONTAINER_OF(dv, struct virtio_net_dev, dev);

	zoc_device_unregister(dv);
	d->done = done;
	d->done_arg = arg;
	zoc_vlink_close(&d->link, vnd_link_gone, d);
}

static void mac_str(const uint8_t *m, char *buf, size_t len)
{
	snprintf(buf, len, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

static json_t *vnd_info(struct zoc_device *dv)
{
	struct virtio_net_dev *d = ZOC_CONTAINER_OF(dv, struct virtio_net_dev, dev);
	struct zoc_vnet_opts o;
	char mac[18];
	json_t *j;

	j = zoc_vlink_info(&d->link);
	zoc_vnet_get_opts(d->vn, &o);
	mac_str(o.mac, mac, sizeof(mac));
	json_object_set_new(j, "name", json_string(dv->name));
	json_object_set_new(j, "type", json_string(dv->ops->type));
	json_object_set_new(j, "switch", json_string(d->sw_name));
	json_object_set_new(j, "mac", json_string(mac));
	json_object_set_new(j, "num_queue_pairs", json_integer(o.num_queue_pairs));
	json_object_set_new(j, "mtu", json_integer(o.mtu));
	json_object_set_new(j, "vlan", json_integer(o.vlan));
	return j;
}

static json_t *vnd_stats(struct zoc_device *dv)
{
	struct virtio_net_dev *d = ZOC_CONTAINER_OF(dv, struct virtio_net_dev, dev);
	json_t *j = zoc_vnet_stats(d->vn);

	json_object_set_new(j, "name", json_string(dv->name));
	json_object_set_new(j, "switch_port", zoc_port_to_json(zoc_vnet_port(d->vn)));
	return j;
}

static json_t *vnd_config(struct zoc_device *dv)
{
	struct virtio_net_dev *d = ZOC_CONTAINER_OF(dv, struct virtio_net_dev, dev);
	struct zoc_vnet_opts o;
	char mac[18];

	zoc_vnet_get_opts(d->vn, &o);
	mac_str(o.mac, mac, sizeof(mac));
	return json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i}}", "method",
			 "virtio_net_create", "params", "name", dv->name, "transport",
			 zoc_vlink_name(d->link.transport), "socket", zoc_vlink_socket(&d->link), "switch",
			 d->sw_name, "mac", mac, "num_queue_pairs", (int)o.num_queue_pairs, "mtu",
			 (int)o.mtu, "vlan", (int)o.vlan);
}

static const struct zoc_device_ops vnd_vhost_ops = {
	.type = "vhost-user-net",
	.destroy = vnd_destroy,
	.info = vnd_info,
	.stats = vnd_stats,
	.config = vnd_config,
};

static const struct zoc_device_ops vnd_vfio_ops = {
	.type = "vfio-user-virtio-net",
	.destroy = vnd_destroy,
	.info = vnd_info,
	.stats = vnd_stats,
	.config = vnd_config,
};

struct virtio_net_params {
	const char *name;
	const char *transport;
	const char *socket;
	const char *sw;
	const char *mac;
	uint16_t num_queue_pairs;
	uint16_t mtu;
	uint16_t vlan;
};

static const struct zoc_rpc_param virtio_net_params[] = {
	P("name", STRING, struct virtio_net_params, name, true, 1, ZOC_DEVICE_NAME_MAX - 1,
	  "name of the new device (also its switch port's name)"),
	P("transport", STRING, struct virtio_net_params, transport, false, 1, 16,
	  "\"vhost-user\" (default) or \"vfio-user\" (a virtio-pci function)"),
	P("socket", STRING, struct virtio_net_params, socket, true, 1, 107,
	  "path of the unix socket zocd listens on"),
	P("switch", STRING, struct virtio_net_params, sw, true, 1, ZOC_VSWITCH_NAME_MAX - 1,
	  "switch to join (switch_create)"),
	P("mac", STRING, struct virtio_net_params, mac, false, 17, 17,
	  "MAC address aa:bb:cc:dd:ee:ff (default: random, locally administered)"),
	P("num_queue_pairs", UINT16, struct virtio_net_params, num_queue_pairs, false, 1,
	  ZOC_VNET_MAX_PAIRS, "RX/TX queue pairs (default 1)"),
	P("mtu", UINT16, struct virtio_net_params, mtu, false, ZOC_PORT_MTU_MIN, ZOC_PORT_MTU_MAX,
	  "MTU (default 1500)"),
	P("vlan", UINT16, struct virtio_net_params, vlan, false, 0, 4094,
	  "access VLAN of the port (default 0: VLAN-unaware)"),
	{NULL},
};

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		   &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return mac[0] & 1 ? -EINVAL : 0;
}

static void rpc_virtio_net_create(struct zoc_rpc_req *req, void *params)
{
	struct virtio_net_params *p = params;
	struct zoc_vnet_opts o = {0};
	enum zoc_vlink_transport t;
	int err;
	struct virtio_net_dev *d;
	struct zoc_vswitch *sw;

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
	sw = zoc_vswitch_find(p->sw);
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
	if (p->mac) {
		if (parse_mac(p->mac, o.mac)) {
			zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
				      "invalid params: 'mac' must be a unicast aa:bb:cc:dd:ee:ff");
			return;
		}
		o.has_mac = true;
	}
	o.name = p->name;
	o.sw = sw;
	o.num_queue_pairs = p->num_queue_pairs;
	o.mtu = p->mtu;
	o.vlan = p->vlan;
	o.owner = 0;
	d = calloc(1, sizeof(*d));
	if (!d) {
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "out of memory");
		return;
	}
	snprintf(d->dev.name, sizeof(d->dev.name), "%s", p->name);
	snprintf(d->sw_name, sizeof(d->sw_name), "%s", p->sw);
	d->dev.ops = t == ZOC_VLINK_VFIO_USER ? &vnd_vfio_ops : &vnd_vhost_ops;
	d->vn = zoc_vnet_create(&o);
	if (!d->vn) {
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "cannot create the virtio-net device: %s",
			      strerror(errno));
		free(d);
		return;
	}
	err = zoc_vlink_open(&d->link, t, p->socket, zoc_vnet_to_virtio(d->vn));
	if (err) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "cannot serve on '%s': %s", p->socket,
			      strerror(-err));
		/* nothing connected: no queue runs; the port goes asynchronously */
		zoc_vnet_destroy(d->vn, free, d);
		return;
	}
	zoc_device_register(&d->dev);
	ZOC_INFO("device %s: virtio-net over %s on %s, switch %s", p->name, zoc_vlink_name(t),
		 p->socket, p->sw);
	zoc_rpc_result(req, json_string(p->name));
}

void zoc_zocd_register_net_methods(void)
{
	static const struct zoc_rpc_method methods[] = {
		{"switch_create", rpc_switch_create, switch_create_params,
		 sizeof(struct switch_params), "create a virtual switch"},
		{"switch_delete", rpc_switch_delete, switch_name_params,
		 sizeof(struct switch_params), "delete a switch without ports"},
		{"switch_list", rpc_switch_list, switch_list_params, sizeof(struct switch_params),
		 "list switches with their ports and port statistics"},
		{"switch_mac_table", rpc_switch_mac_table, switch_name_params,
		 sizeof(struct switch_params), "show a switch's learned MAC addresses"},
		{"virtio_net_create", rpc_virtio_net_create, virtio_net_params,
		 sizeof(struct virtio_net_params),
		 "create a virtio-net device on a switch: over vhost-user, or as a virtio-pci "
		 "function over vfio-user"},
	};

	for (size_t i = 0; i < ZOC_ARRAY_SIZE(methods); i++)
		if (zoc_rpc_register(&methods[i]))
			ZOC_ERR("cannot register method %s", methods[i].name);
	zoc_rpc_register_config_writer(switch_config_writer);
}
