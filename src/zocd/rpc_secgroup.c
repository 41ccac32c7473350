/* SPDX-License-Identifier: MIT */
/*
 * rpc_secgroup.c - security group and connection tracking methods:
 *   secgroup_create {name}, secgroup_delete {name}, secgroup_list {name?},
 *   secgroup_rule_add {secgroup, direction, protocol?, cidr?, port_min?,
 *   port_max?, icmp_type?, icmp_code?} -> {id}, secgroup_rule_delete
 *   {secgroup, id}, conntrack_stats {}, conntrack_list {state?, protocol?,
 *   address?, port?, zone?, count?}.
 *
 * The groups live in a registry here (reactor 0). The session table is a
 * zocd-global one created on first use; the switch does not feed it yet
 * (docs/conntrack.md, "Not done yet"), and when it does, conntrack_* will
 * collect the per-reactor partitions with messages. save_config writes the
 * groups and their rules.
 */
#include "zocd/rpc_methods.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "ctl/jsonrpc.h"
#include "net/conntrack.h"
#include "net/secgroup.h"

#define P(name, type, st, field, req, lo, hi, help) \
	{name, ZOC_RPC_##type, offsetof(st, field), req, lo, hi, help}

struct sg_node {
	struct zoc_sg *sg;
	struct sg_node *next;
};

static struct sg_node *g_groups; /* newest first */
static struct zoc_ct *g_ct;

struct zoc_sg *zoc_zocd_secgroup_get(const char *name)
{
	for (struct sg_node *n = g_groups; n; n = n->next)
		if (!strcmp(zoc_sg_name(n->sg), name))
			return n->sg;
	return NULL;
}

static struct zoc_ct *global_ct(void)
{
	if (!g_ct) {
		struct zoc_ct_config cfg = {
			.capacity = 1u << 16, .max_capacity = 1u << 24, .auto_grow = true};

		g_ct = zoc_ct_create(&cfg);
	}
	return g_ct;
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

static const struct zoc_rpc_param no_params[] = {
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

static void rpc_ct_stats(struct zoc_rpc_req *req, void *arg)
{
	struct zoc_ct *ct = global_ct();

	if (!ct) {
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "no memory for the session table");
		return;
	}
	zoc_rpc_result(req, zoc_ct_stats_json(ct));
}

static void rpc_ct_list(struct zoc_rpc_req *req, void *arg)
{
	struct zoc_ct *ct = global_ct();
	struct zoc_ct_filter f;
	char err[256];
	json_t *a;
	unsigned n;

	if (!ct) {
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "no memory for the session table");
		return;
	}
	if (zoc_ct_filter_from_json(zoc_rpc_params(req), &f, err, sizeof(err))) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "invalid params: %s", err);
		return;
	}
	a = json_array();
	n = zoc_ct_list_json(ct, &f, zoc_now_ns(), a);
	zoc_rpc_result(req, json_pack("{s:i, s:o}", "count", (int)n, "sessions", a));
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
		{"conntrack_stats", rpc_ct_stats, no_params, 0,
		 "session table: capacity, use, growth, sessions per state, drops by reason"},
		{"conntrack_list", rpc_ct_list, NULL, 0,
		 "list sessions {state, protocol, address, port, zone, count}"},
	};

	for (size_t i = 0; i < ZOC_ARRAY_SIZE(methods); i++)
		if (zoc_rpc_register(&methods[i]))
			ZOC_ERR("cannot register method %s", methods[i].name);
	zoc_rpc_register_config_writer(secgroup_config_writer);
}
