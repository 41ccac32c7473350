/* SPDX-License-Identifier: MIT */
/*
 * rpc_secgroup.c - security group and connection tracking methods:
 *   secgroup_create {name}, secgroup_delete {name}, secgroup_list {name?},
 *   secgroup_rule_add {secgroup, direction, protocol?, cidr?, port_min?,
 *   port_max?, icmp_type?, icmp_code?} -> {id}, secgroup_rule_delete
 *   {secgroup, id}, port_set_secgroup {device, secgroup?},
 *   conntrack_stats {switch?}, conntrack_list {switch?, port|device?,
 *   state?, protocol?, address?, port?, zone?, count|limit?}.
 *
 * The groups live in a registry here (reactor 0); a group is attached to a
 * virtio-net device's switch port with port_set_secgroup. The sessions live
 * in the switches' per-reactor partitions: conntrack_* visit them on their
 * reactors (zoc_vswitch_ct_foreach) and answer when the last one reported.
 * save_config writes the groups and their rules, and (after the devices)
 * the attachments.
 */
#include "zocd/rpc_methods.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "core/device.h"
#include "ctl/jsonrpc.h"
#include "net/conntrack.h"
#include "net/secgroup.h"
#include "net/vswitch.h"

#define P(name, type, st, field, req, lo, hi, help) \
	{name, ZOC_RPC_##type, offsetof(st, field), req, lo, hi, help}

struct sg_node {
	struct zoc_sg *sg;
	struct sg_node *next;
};

static struct sg_node *g_groups; /* newest first */

struct zoc_sg *zoc_zocd_secgroup_get(const char *name)
{
	for (struct sg_node *n = g_groups; n; n = n->next)
		if (!strcmp(zoc_sg_name(n->sg), name))
			return n->sg;
	return NULL;
}

/* The first switch port using sg (reactor 0). */
static struct zoc_port *sg_user(const struct zoc_sg *sg)
{
	for (struct zoc_vswitch *sw = zoc_vswitch_next(NULL); sw; sw = zoc_vswitch_next(sw))
		for (unsigned id = 0; id < ZOC_VSWITCH_MAX_PORTS; id++) {
			struct zoc_port *p = zoc_vswitch_port_by_id(sw, (uint16_t)id);

			if (p && zoc_vswitch_port_secgroup(p) == sg)
				return p;
		}
	return NULL;
}

struct sg_params {
	const char *name;
	const char *secgroup;
	uint32_t id;
};

static const struct zoc_rpc_param sg_name_params[] = {
	P("name", STRING, struct sg_params, name, true, 1, ZOC_SG_NAME_MAX - 1,
	  "security group name"),
	{NULL},
};

static const struct zoc_rpc_param sg_list_params[] = {
	P("name", STRING, struct sg_params, name, false, 1, ZOC_SG_NAME_MAX - 1,
	  "only this group"),
	{NULL},
};

static const struct zoc_rpc_param sg_rule_delete_params[] = {
	P("secgroup", STRING, struct sg_params, secgroup, true, 1, ZOC_SG_NAME_MAX - 1,
	  "security group name"),
	P("id", UINT32, struct sg_params, id, true, 1, 0, "rule id from secgroup_rule_add"),
	{NULL},
};

static void rpc_sg_create(struct zoc_rpc_req *req, void *arg)
{
	struct sg_params *p = arg;
	struct sg_node *n;

	if (zoc_zocd_secgroup_get(p->name)) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "secgroup '%s' already exists", p->name);
		return;
	}
	n = calloc(1, sizeof(*n));
	if (!n || !(n->sg = zoc_sg_create(p->name))) {
		free(n);
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "cannot create secgroup '%s': %s",
			      p->name, strerror(errno ? errno : ENOMEM));
		return;
	}
	n->next = g_groups;
	g_groups = n;
	ZOC_INFO("secgroup %s created", p->name);
	zoc_rpc_result(req, json_string(p->name));
}

static void rpc_sg_delete(struct zoc_rpc_req *req, void *arg)
{
	struct sg_params *p = arg;

	for (struct sg_node **pp = &g_groups; *pp; pp = &(*pp)->next)
		if (!strcmp(zoc_sg_name((*pp)->sg), p->name)) {
			struct sg_node *n = *pp;
			struct zoc_port *user = sg_user(n->sg);

			if (user) {
				zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
					      "secgroup '%s' is attached to port '%s' of switch '%s': "
					      "detach it first (port_set_secgroup device=%s "
					      "secgroup:=null)",
					      p->name, zoc_port_name(user),
					      zoc_vswitch_name(zoc_port_switch(user)), zoc_port_name(user));
				return;
			}

			*pp = n->next;
			zoc_sg_destroy(n->sg);
			free(n);
			ZOC_INFO("secgroup %s deleted", p->name);
			zoc_rpc_result(req, NULL);
			return;
		}
	zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "no secgroup '%s' (see secgroup_list)",
		      p->name);
}

static void rpc_sg_list(struct zoc_rpc_req *req, void *arg)
{
	struct sg_params *p = arg;
	json_t *a = json_array();
	struct sg_node *v[1024];
	unsigned n = 0;

	for (struct sg_node *s = g_groups; s && n < ZOC_ARRAY_SIZE(v); s = s->next)
		v[n++] = s;
	while (n--)
		if (!p->name || !strcmp(p->name, zoc_sg_name(v[n]->sg)))
			json_array_append_new(a, zoc_sg_to_json(v[n]->sg));
	if (p->name && !json_array_size(a)) {
		json_decref(a);
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "no secgroup '%s'", p->name);
		return;
	}
	zoc_rpc_result(req, a);
}

static void rpc_sg_rule_add(struct zoc_rpc_req *req, void *arg)
{
	json_t *params = zoc_rpc_params(req);
	const char *name = json_string_value(json_object_get(params, "secgroup"));
	struct zoc_sg_rule r;
	struct zoc_sg *sg;
	char err[256];
	uint32_t id;
	int rc;

	if (!name) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "invalid params: missing required parameter 'secgroup' (string)");
		return;
	}
	sg = zoc_zocd_secgroup_get(name);
	if (!sg) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "no secgroup '%s' (create it first)",
			      name);
		return;
	}
	if (zoc_sg_rule_from_json(params, &r, err, sizeof(err))) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "invalid params: %s", err);
		return;
	}
	rc = zoc_sg_rule_add(sg, &r, &id);
	if (rc) {
		zoc_rpc_error(req, rc == -ENOSPC ? ZOC_RPC_INVALID_PARAMS : ZOC_RPC_INTERNAL_ERROR,
			      rc == -ENOSPC ? "secgroup '%s' has the maximum of rules"
					    : "cannot add the rule to '%s'",
			      name);
		return;
	}
	zoc_rpc_result(req, json_pack("{s:i}", "id", (int)id));
}

static void rpc_sg_rule_delete(struct zoc_rpc_req *req, void *arg)
{
	struct sg_params *p = arg;
	struct zoc_sg *sg = zoc_zocd_secgroup_get(p->secgroup);

	if (!sg) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "no secgroup '%s'", p->secgroup);
		return;
	}
	if (zoc_sg_rule_delete(sg, p->id)) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "secgroup '%s' has no rule %u (see "
			      "secgroup_list)", p->secgroup, p->id);
		return;
	}
	zoc_rpc_result(req, NULL);
}

/* ---- port_set_secgroup ---- */

struct set_params {
	const char *device;
	const char *secgroup;
};

static const struct zoc_rpc_param set_params[] = {
	P("device", STRING, struct set_params, device, true, 1, ZOC_DEVICE_NAME_MAX - 1,
	  "virtio-net device (its switch port has the same name)"),
	P("secgroup", STRING, struct set_params, secgroup, false, 1, ZOC_SG_NAME_MAX - 1,
	  "security group to attach; omitted or null detaches"),
	{NULL},
};

/* The vNIC switch port named name (a virtio-net device's port). */
static struct zoc_port *vnic_port(const char *name)
{
	for (struct zoc_vswitch *sw = zoc_vswitch_next(NULL); sw; sw = zoc_vswitch_next(sw)) {
		struct zoc_port *p = zoc_vswitch_port_find(sw, name);
		struct zoc_port_config c;

		if (!p)
			continue;
		zoc_port_get_config(p, &c);
		if (c.kind == ZOC_PORT_VNIC)
			return p;
	}
	return NULL;
}

static void rpc_port_set_secgroup(struct zoc_rpc_req *req, void *arg)
{
	struct set_params *p = arg;
	struct zoc_port *port = vnic_port(p->device);
	struct zoc_sg *sg = NULL;
	int rc;

	if (!port) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "no virtio-net device '%s' on a switch (see device_list)", p->device);
		return;
	}
	if (p->secgroup && !(sg = zoc_zocd_secgroup_get(p->secgroup))) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "no secgroup '%s' (create it first: secgroup_create)", p->secgroup);
		return;
	}
	rc = zoc_vswitch_port_set_secgroup(port, sg);
	if (rc) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "cannot set the secgroup of '%s': %s",
			      p->device, strerror(-rc));
		return;
	}
	zoc_rpc_result(req, NULL);
}

/* ---- conntrack_stats / conntrack_list ---- */

/* One request's walk over the switches, one switch (all its partitions,
 * each on its own reactor) at a time. */
struct ct_job {
	struct zoc_rpc_req *req;
	bool list;
	char **names;
	unsigned n, i;
	struct zoc_vswitch *sw;   /* being walked */
	json_t *total, *per;      /* stats */
	json_t *cur;              /* stats of / sessions from the current switch */
	json_t *sessions;         /* list */
	struct zoc_ct_filter f;
	char *port;               /* list: only this switch port (name) */
	int zone;                 /* list: the zone filter as given */
	uint32_t left;
	uint64_t now;
};

static void job_free(struct ct_job *j)
{
	for (unsigned i = 0; i < j->n; i++)
		free(j->names[i]);
	free(j->names);
	free(j->port);
	json_decref(j->total);
	json_decref(j->per);
	json_decref(j->cur);
	json_decref(j->sessions);
	free(j);
}

/* On the partition's reactor. */
static void job_part(struct zoc_ct *ct, unsigned part, void *arg)
{
	struct ct_job *j = arg;

	if (j->list) {
		if (j->left) {
			j->f.max = j->left;
			j->left -= zoc_ct_list_json(ct, &j->f, j->now, j->cur);
		}
	} else {
		json_t *st = zoc_ct_stats_json(ct);

		if (st)
			zoc_ct_stats_json_add(j->cur, st);
		json_decref(st);
	}
}

static void job_next(struct ct_job *j);

/* Reactor 0, the switch's partitions all visited. */
static void job_switch_done(void *arg)
{
	struct ct_job *j = arg;
	const char *name = zoc_vswitch_name(j->sw);

	if (j->list) {
		size_t i;
		json_t *s;

		json_array_foreach(j->cur, i, s) {
			struct zoc_port *p = zoc_vswitch_port_by_id(
				j->sw, (uint16_t)json_integer_value(json_object_get(s, "zone")));

			json_object_set_new(s, "switch", json_string(name));
			json_object_set_new(s, "port", json_string(p ? zoc_port_name(p) : "?"));
		}
		json_array_extend(j->sessions, j->cur);
	} else {
		zoc_ct_stats_json_add(j->total, j->cur);
		json_object_set_new(j->cur, "name", json_string(name));
		json_object_set_new(j->cur, "partitions",
				    json_integer(zoc_vswitch_ct_partitions(j->sw)));
		json_array_append(j->per, j->cur);
	}
	json_decref(j->cur);
	j->cur = NULL;
	j->i++;
	job_next(j);
}

static void job_next(struct ct_job *j)
{
	while (j->i < j->n && !(j->list && !j->left)) {
		struct zoc_vswitch *sw = zoc_vswitch_find(j->names[j->i]);
		int rc;

		if (!sw) {
			j->i++; /* deleted meanwhile */
			continue;
		}
		if (j->list) {
			j->f.zone = j->zone;
			if (j->port) {
				struct zoc_port *p = zoc_vswitch_port_find(sw, j->port);

				if (!p) {
					j->i++;
					continue;
				}
				j->f.zone = zoc_port_id(p);
			}
		}
		j->sw = sw;
		j->cur = j->list ? json_array() : json_object();
		rc = j->cur ? zoc_vswitch_ct_foreach(sw, job_part, job_switch_done, j) : -ENOMEM;
		if (rc) {
			zoc_rpc_error(j->req, ZOC_RPC_INTERNAL_ERROR, "conntrack walk of switch '%s': %s",
				      j->names[j->i], strerror(-rc));
			job_free(j);
		}
		return;
	}
	if (j->list) {
		zoc_rpc_result(j->req, json_pack("{s:i, s:O}", "count",
						 (int)json_array_size(j->sessions), "sessions",
						 j->sessions));
	} else {
		json_object_set(j->total, "switches", j->per);
		zoc_rpc_result(j->req, json_incref(j->total));
	}
	job_free(j);
}

/* Starts a job over the named switch or all of them. */
static struct ct_job *job_new(struct zoc_rpc_req *req, bool list, const char *sw_name)
{
	struct ct_job *j = calloc(1, sizeof(*j));
	unsigned n = 0;

	if (!j)
		goto nomem;
	j->req = req;
	j->list = list;
	if (sw_name) {
		if (!zoc_vswitch_find(sw_name)) {
			free(j);
			zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "no switch named '%s' (see "
				      "switch_list)", sw_name);
			return NULL;
		}
		n = 1;
	} else {
		for (struct zoc_vswitch *sw = zoc_vswitch_next(NULL); sw; sw = zoc_vswitch_next(sw))
			n++;
	}
	j->names = calloc(n ? n : 1, sizeof(*j->names));
	if (!j->names)
		goto nomem;
	if (sw_name) {
		j->names[j->n] = strdup(sw_name);
		if (!j->names[j->n++])
			goto nomem;
	} else {
		/* Oldest first. */
		for (struct zoc_vswitch *sw = zoc_vswitch_next(NULL); sw; sw = zoc_vswitch_next(sw)) {
			j->names[n - 1 - j->n] = strdup(zoc_vswitch_name(sw));
			if (!j->names[n - 1 - j->n++])
				goto nomem;
		}
	}
	j->total = json_object();
	j->per = json_array();
	j->sessions = json_array();
	if (!j->total || !j->per || !j->sessions)
		goto nomem;
	return j;
nomem:
	if (j)
		job_free(j);
	zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "out of memory");
	return NULL;
}

struct ct_stats_params {
	const char *sw;
};

static const struct zoc_rpc_param ct_stats_params[] = {
	P("switch", STRING, struct ct_stats_params, sw, false, 1, ZOC_VSWITCH_NAME_MAX - 1,
	  "only this switch"),
	{NULL},
};

static void rpc_ct_stats(struct zoc_rpc_req *req, void *arg)
{
	struct ct_stats_params *p = arg;
	struct ct_job *j = job_new(req, false, p->sw);

	if (j)
		job_next(j);
}

static void rpc_ct_list(struct zoc_rpc_req *req, void *arg)
{
	static const char *const known[] = {"switch", "device",   "port",  "state", "protocol",
					    "proto",  "address",  "zone",  "count", "limit"};
	json_t *params = zoc_rpc_params(req), *copy, *v;
	const char *key, *sw_name = NULL, *port = NULL;
	struct ct_job *j;
	char err[256];

	if (params && !json_is_null(params) && !json_is_object(params)) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "invalid params: must be an object");
		return;
	}
	copy = json_is_object(params) ? json_deep_copy(params) : json_object();
	if (!copy) {
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "out of memory");
		return;
	}
	json_object_foreach(copy, key, v) {
		size_t i;

		for (i = 0; i < ZOC_ARRAY_SIZE(known) && strcmp(key, known[i]); i++)
			;
		if (i == ZOC_ARRAY_SIZE(known)) {
			zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
				      "invalid params: unknown parameter '%s' (known: switch, port "
				      "or device (a switch port's name), state, protocol, address, "
				      "port (a number: TCP/UDP port), zone, count or limit)",
				      key);
			json_decref(copy);
			return;
		}
	}
	if ((v = json_object_get(copy, "switch"))) {
		if (!(sw_name = json_string_value(v))) {
			zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "invalid params: switch must be a "
				      "string");
			json_decref(copy);
			return;
		}
	}
	/* port: a string names a switch port (like device), a number is a
	 * TCP/UDP port. */
	if ((v = json_object_get(copy, "device")) || ((v = json_object_get(copy, "port")) &&
						     json_is_string(v))) {
		if (!(port = json_string_value(v))) {
			zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "invalid params: device must be a "
				      "string");
			json_decref(copy);
			return;
		}
	}
	if ((v = json_object_get(copy, "limit")) && !json_object_get(copy, "count"))
		json_object_set(copy, "count", v);
	if ((v = json_object_get(copy, "proto")) && !json_object_get(copy, "protocol"))
		json_object_set(copy, "protocol", v);
	j = NULL;
	{
		json_t *f = json_deep_copy(copy);

		if (f && port && json_is_string(json_object_get(f, "port")))
			json_object_del(f, "port");
		if (!f || zoc_ct_filter_from_json(f, &(struct zoc_ct_filter){0}, err, sizeof(err))) {
			zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "invalid params: %s",
				      f ? err : "out of memory");
			json_decref(f);
			json_decref(copy);
			return;
		}
		j = job_new(req, true, sw_name);
		if (j) {
			zoc_ct_filter_from_json(f, &j->f, err, sizeof(err));
			j->zone = j->f.zone;
			j->left = j->f.max ? j->f.max : 1000;
			j->now = zoc_now_ns();
			if (port && !(j->port = strdup(port))) {
				job_free(j);
				j = NULL;
				zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "out of memory");
			}
		}
		json_decref(f);
	}
	json_decref(copy);
	if (j)
		job_next(j);
}

static void secgroup_config_writer(json_t *array)
{
	struct sg_node *v[1024];
	unsigned n = 0;

	for (struct sg_node *s = g_groups; s && n < ZOC_ARRAY_SIZE(v); s = s->next)
		v[n++] = s;
	while (n--) {
		json_t *g = zoc_sg_to_json(v[n]->sg);
		json_t *rules = json_object_get(g, "rules");
		size_t i;
		json_t *r;

		json_array_append_new(array,
				      json_pack("{s:s, s:{s:s}}", "method", "secgroup_create",
						"params", "name", zoc_sg_name(v[n]->sg)));
		json_array_foreach(rules, i, r) {
			json_t *prm = json_deep_copy(r);

			json_object_del(prm, "id");
			json_object_set_new(prm, "secgroup", json_string(zoc_sg_name(v[n]->sg)));
			json_array_append_new(array, json_pack("{s:s, s:o}", "method",
							       "secgroup_rule_add", "params", prm));
		}
		json_decref(g);
	}
}

void zoc_zocd_secgroup_attach_writer(json_t *array)
{
	/* Oldest switch first, ports by id: after the devices that own them. */
	struct zoc_vswitch *v[256];
	unsigned n = 0;

	for (struct zoc_vswitch *sw = zoc_vswitch_next(NULL); sw && n < ZOC_ARRAY_SIZE(v);
	     sw = zoc_vswitch_next(sw))
		v[n++] = sw;
	while (n--)
		for (unsigned id = 0; id < ZOC_VSWITCH_MAX_PORTS; id++) {
			struct zoc_port *p = zoc_vswitch_port_by_id(v[n], (uint16_t)id);
			struct zoc_sg *sg = p ? zoc_vswitch_port_secgroup(p) : NULL;

			if (sg)
				json_array_append_new(
					array, json_pack("{s:s, s:{s:s, s:s}}", "method",
							 "port_set_secgroup", "params", "device",
							 zoc_port_name(p), "secgroup", zoc_sg_name(sg)));
		}
}

void zoc_zocd_register_secgroup_methods(void)
{
	static const struct zoc_rpc_method methods[] = {
		{"secgroup_create", rpc_sg_create, sg_name_params, sizeof(struct sg_params),
		 "create a security group (ingress denied, egress allowed until rules say "
		 "otherwise)"},
		{"secgroup_delete", rpc_sg_delete, sg_name_params, sizeof(struct sg_params),
		 "delete a security group"},
		{"secgroup_list", rpc_sg_list, sg_list_params, sizeof(struct sg_params),
		 "list security groups and their rules"},
		{"secgroup_rule_add", rpc_sg_rule_add, NULL, 0,
		 "add an allow rule {secgroup, direction: ingress|egress, protocol: "
		 "tcp|udp|icmp|icmpv6|any, cidr, port_min, port_max, icmp_type, icmp_code}"},
		{"secgroup_rule_delete", rpc_sg_rule_delete, sg_rule_delete_params,
		 sizeof(struct sg_params), "delete a rule by id"},
		{"port_set_secgroup", rpc_port_set_secgroup, set_params, sizeof(struct set_params),
		 "attach a security group to a virtio-net device's switch port (secgroup "
		 "omitted or null: detach)"},
		{"conntrack_stats", rpc_ct_stats, ct_stats_params, sizeof(struct ct_stats_params),
		 "session tables of the switches: capacity, use, growth, sessions per state, drops "
		 "by reason, flow cache (summed, and per switch)"},
		{"conntrack_list", rpc_ct_list, NULL, 0,
		 "list sessions {switch, port|device (switch port name), state, protocol, address, "
		 "port (TCP/UDP number), zone, count|limit}"},
	};

	for (size_t i = 0; i < ZOC_ARRAY_SIZE(methods); i++)
		if (zoc_rpc_register(&methods[i]))
			ZOC_ERR("cannot register method %s", methods[i].name);
	zoc_rpc_register_config_writer(secgroup_config_writer);
}
