/* SPDX-License-Identifier: MIT */
/*
 * secgroup.h - security groups: ordered allow rules per vNIC port.
 *
 * NAME
 *   struct zoc_sg, zoc_sg_create, zoc_sg_rule_add, zoc_sg_rules,
 *   zoc_sg_allows - the stateful firewall's policy, evaluated by
 *   conntrack only for a packet that would open a session.
 *
 * SEMANTICS
 *   A rule allows packets of one direction (ingress: toward the VM,
 *   egress: from it), one protocol (tcp, udp, icmp, icmpv6 or any), whose
 *   remote address (ingress: source, egress: destination) is in a CIDR
 *   (absent = any address of either family; "0.0.0.0/0" = any IPv4,
 *   "::/0" = any IPv6), whose destination port is in [port_min, port_max]
 *   (tcp/udp only; absent = all), and, for icmp/icmpv6, whose type (and
 *   code) match (absent = any). Ingress is denied unless a rule allows it;
 *   egress is allowed while the group has no egress rule, and allow-listed
 *   once it has one (OpenStack starts a group with an allow-all egress
 *   rule; here "no egress rule" means the same). Replies of a tracked
 *   session are never evaluated.
 *
 * CONCURRENCY (RCU style)
 *   The group (name, rule list) is changed only by the control plane
 *   (reactor 0). Each change compiles an immutable struct zoc_sg_ruleset
 *   and publishes it with one atomic store; the data path reads it with
 *   zoc_sg_rules() (an acquire load) once per burst and never blocks. The
 *   old rule set is freed from zoc_reactors_barrier()'s callback, when no
 *   reactor can still hold it. A rule change applies to the next new
 *   connection on every reactor.
 */
#ifndef ZOC_NET_SECGROUP_H
#define ZOC_NET_SECGROUP_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "net/conntrack.h"
#include "net/flowkey.h"

#define ZOC_SG_NAME_MAX 64
#define ZOC_SG_MAX_RULES 4096

struct zoc_sg;
struct zoc_sg_ruleset;

struct zoc_sg_rule {
	uint32_t id;           /* assigned by zoc_sg_rule_add */
	uint8_t dir;           /* enum zoc_ct_dir */
	uint8_t proto;         /* 0 = any, else IP protocol number */
	uint8_t family;        /* 0 = any address, 4 or 6: cidr below */
	uint8_t prefix_len;    /* 0..32 / 0..128 */
	uint8_t addr[16];      /* network (host bits cleared) */
	uint16_t port_min, port_max; /* 0..65535 = all */
	int16_t icmp_type;     /* -1 = any */
	int16_t icmp_code;     /* -1 = any */
};

struct zoc_sg *zoc_sg_create(const char *name);
/* The caller has detached it from every port. Frees after a barrier. */
void zoc_sg_destroy(struct zoc_sg *sg);
const char *zoc_sg_name(const struct zoc_sg *sg);

/* Control plane. Appends the rule (its id in *id). 0, -EINVAL, -ENOSPC,
 * -ENOMEM. */
int zoc_sg_rule_add(struct zoc_sg *sg, const struct zoc_sg_rule *rule, uint32_t *id);
/* 0 or -ENOENT. */
int zoc_sg_rule_delete(struct zoc_sg *sg, uint32_t id);
unsigned zoc_sg_rule_count(const struct zoc_sg *sg);

/* Data path: the current compiled rules (never NULL for a live group). */
const struct zoc_sg_ruleset *zoc_sg_rules(const struct zoc_sg *sg);
/* Would a packet with key k in direction dir open a session? */
bool zoc_sg_allows(const struct zoc_sg_ruleset *rs, enum zoc_ct_dir dir,
		   const struct zoc_flowkey *k);

/* Parse secgroup_rule_add params (direction, protocol, cidr, port_min,
 * port_max, icmp_type, icmp_code) into r. 0 or -EINVAL with err saying
 * what to fix. */
int zoc_sg_rule_from_json(const json_t *params, struct zoc_sg_rule *r, char *err,
			  unsigned errlen);
json_t *zoc_sg_rule_to_json(const struct zoc_sg_rule *r);
/* {name, rules: [...]} */
json_t *zoc_sg_to_json(const struct zoc_sg *sg);

#endif
