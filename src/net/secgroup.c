/* SPDX-License-Identifier: MIT */
#include "net/secgroup.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"

/* Immutable once published. Ingress rules first, then egress. */
struct zoc_sg_ruleset {
	unsigned n_in, n_eg;
	struct zoc_sg_rule rules[];
};

struct zoc_sg {
	char name[ZOC_SG_NAME_MAX];
	struct zoc_sg_rule *rules;
	unsigned n, cap;
	uint32_t next_id;
	_Atomic(struct zoc_sg_ruleset *) rs;
};

static struct zoc_sg_ruleset *compile(const struct zoc_sg *sg)
{
	struct zoc_sg_ruleset *rs = malloc(sizeof(*rs) + sg->n * sizeof(struct zoc_sg_rule));
	unsigned k = 0;

	if (!rs)
		return NULL;
	rs->n_in = rs->n_eg = 0;
	for (int pass = 0; pass < 2; pass++)
		for (unsigned i = 0; i < sg->n; i++)
			if (sg->rules[i].dir == (pass ? ZOC_CT_EGRESS : ZOC_CT_INGRESS)) {
				rs->rules[k++] = sg->rules[i];
				if (pass)
					rs->n_eg++;
				else
					rs->n_in++;
			}
	return rs;
}

static void free_rs(void *arg)
{
	free(arg);
}

static void retire(void *old, zoc_msg_fn fn)
{
	if (old && zoc_reactors_barrier(fn, old))
		ZOC_ERR("secgroup: no memory for a grace period: an old rule set leaks");
}

static int publish(struct zoc_sg *sg)
{
	struct zoc_sg_ruleset *rs = compile(sg), *old;

	if (!rs)
		return -ENOMEM;
	old = atomic_exchange_explicit(&sg->rs, rs, memory_order_acq_rel);
	retire(old, free_rs);
	return 0;
}

struct zoc_sg *zoc_sg_create(const char *name)
{
	struct zoc_sg *sg;

	if (!name || !*name || strlen(name) >= ZOC_SG_NAME_MAX) {
		errno = EINVAL;
		return NULL;
	}
	sg = calloc(1, sizeof(*sg));
	if (!sg)
		return NULL;
	snprintf(sg->name, sizeof(sg->name), "%s", name);
	sg->next_id = 1;
	if (publish(sg)) {
		free(sg);
		errno = ENOMEM;
		return NULL;
	}
	return sg;
}

static void free_sg(void *arg)
{
	struct zoc_sg *sg = arg;

	free(atomic_load(&sg->rs));
	free(sg->rules);
	free(sg);
}

void zoc_sg_destroy(struct zoc_sg *sg)
{
	if (sg)
		retire(sg, free_sg);
}

const char *zoc_sg_name(const struct zoc_sg *sg)
{
	return sg->name;
}

static bool rule_valid(const struct zoc_sg_rule *r)
{
	if (r->dir > ZOC_CT_INGRESS || r->port_min > r->port_max)
		return false;
	if (r->family && r->family != 4 && r->family != 6)
		return false;
	if (r->prefix_len > (r->family == 4 ? 32 : r->family == 6 ? 128 : 0))
		return false;
	return true;
}

int zoc_sg_rule_add(struct zoc_sg *sg, const struct zoc_sg_rule *rule, uint32_t *id)
{
	struct zoc_sg_rule r = *rule;
	int rc;

	if (!rule_valid(&r))
		return -EINVAL;
	if (sg->n >= ZOC_SG_MAX_RULES)
		return -ENOSPC;
	if (sg->n == sg->cap) {
		unsigned nc = sg->cap ? sg->cap * 2 : 8;
		struct zoc_sg_rule *nr = realloc(sg->rules, nc * sizeof(*nr));

		if (!nr)
			return -ENOMEM;
		sg->rules = nr;
		sg->cap = nc;
	}
	/* Clear host bits so matching is a prefix compare. */
	if (r.family) {
		unsigned bytes = r.family == 4 ? 4 : 16;

		for (unsigned i = 0; i < 16; i++) {
			unsigned bits = i * 8 >= r.prefix_len ? 0 : ZOC_MIN(8u, r.prefix_len - i * 8);

			if (i >= bytes)
				r.addr[i] = 0;
			else
				r.addr[i] &= (uint8_t)(0xff00 >> bits);
		}
	}
	r.id = sg->next_id++;
	sg->rules[sg->n++] = r;
	rc = publish(sg);
	if (rc) {
		sg->n--;
		return rc;
	}
	if (id)
		*id = r.id;
	return 0;
}

int zoc_sg_rule_delete(struct zoc_sg *sg, uint32_t id)
{
	for (unsigned i = 0; i < sg->n; i++)
		if (sg->rules[i].id == id) {
			struct zoc_sg_rule saved = sg->rules[i];
			int rc;

			memmove(&sg->rules[i], &sg->rules[i + 1], (sg->n - i - 1) * sizeof(saved));
			sg->n--;
			rc = publish(sg);
			if (rc) { /* put it back: the published set still has it */
				memmove(&sg->rules[i + 1], &sg->rules[i], (sg->n - i) * sizeof(saved));
				sg->rules[i] = saved;
				sg->n++;
			}
			return rc;
		}
	return -ENOENT;
}

unsigned zoc_sg_rule_count(const struct zoc_sg *sg)
{
	return sg->n;
}

const struct zoc_sg_ruleset *zoc_sg_rules(const struct zoc_sg *sg)
{
	return atomic_load_explicit(&((struct zoc_sg *)sg)->rs, memory_order_acquire);
}

static inline bool prefix_match(const uint8_t *a, const uint8_t *net, unsigned plen)
{
	unsigned full = plen / 8, rest = plen % 8;

	if (memcmp(a, net, full))
		return false;
	return !rest || ((a[full] ^ net[full]) & (uint8_t)(0xff00 >> rest)) == 0;
}

static inline bool rule_match(const struct zoc_sg_rule *r, const struct zoc_flowkey *k,
			      const uint8_t *remote)
{
	if (r->proto && r->proto != k->proto)
		return false;
	if (r->family && (r->family != k->family || !prefix_match(remote, r->addr, r->prefix_len)))
		return false;
	switch (r->proto) {
	case ZOC_IPPROTO_TCP:
	case ZOC_IPPROTO_UDP:
		return k->dport >= r->port_min && k->dport <= r->port_max;
	case ZOC_IPPROTO_ICMP:
	case ZOC_IPPROTO_ICMPV6:
		return (r->icmp_type < 0 || r->icmp_type == k->icmp_type) &&
		       (r->icmp_code < 0 || r->icmp_code == k->icmp_code);
	default:
		return true;
	}
}

bool zoc_sg_allows(const struct zoc_sg_ruleset *rs, enum zoc_ct_dir dir,
		   const struct zoc_flowkey *k)
{
	const struct zoc_sg_rule *r;
	unsigned n;
	const uint8_t *remote;

	if (dir == ZOC_CT_INGRESS) {
		r = rs->rules;
		n = rs->n_in;
		remote = k->src;
	} else {
		r = rs->rules + rs->n_in;
		n = rs->n_eg;
		remote = k->dst;
		if (!n)
			return true;
	}
	for (unsigned i = 0; i < n; i++)
		if (rule_match(&r[i], k, remote))
			return true;
	return false;
}

/* ---- JSON ---- */

static const struct {
	const char *name;
	uint8_t proto;
} g_protos[] = {
	{"any", 0}, {"tcp", ZOC_IPPROTO_TCP}, {"udp", ZOC_IPPROTO_UDP},
	{"icmp", ZOC_IPPROTO_ICMP}, {"icmpv6", ZOC_IPPROTO_ICMPV6},
};

static int get_uint(const json_t *params, const char *key, long max, long *out, char *err,
		    unsigned errlen)
{
	json_t *v = json_object_get(params, key);

	if (!v)
		return 1;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max) {
		snprintf(err, errlen, "%s must be an integer 0..%ld", key, max);
		return -EINVAL;
	}
	*out = (long)json_integer_value(v);
	return 0;
}

static int parse_cidr(const char *s, struct zoc_sg_rule *r, char *err, unsigned errlen)
{
	char buf[64];
	char *slash, *end;
	long plen;

	if (strlen(s) >= sizeof(buf))
		goto bad;
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (slash)
		*slash = 0;
	memset(r->addr, 0, 16);
	if (inet_pton(AF_INET, buf, r->addr) == 1)
		r->family = 4;
	else if (inet_pton(AF_INET6, buf, r->addr) == 1)
		r->family = 6;
	else
		goto bad;
	if (!slash) {
		r->prefix_len = r->family == 4 ? 32 : 128;
		return 0;
	}
	errno = 0;
	plen = strtol(slash + 1, &end, 10);
	if (errno || end == slash + 1 || *end || plen < 0 || plen > (r->family == 4 ? 32 : 128))
		goto bad;
	r->prefix_len = (uint8_t)plen;
	return 0;
bad:
	snprintf(err, errlen,
		 "cidr must be an IPv4 or IPv6 network like \"10.0.0.0/8\" or \"2001:db8::/32\" "
		 "(prefix length 0..32 / 0..128), got \"%.40s\"", s);
	return -EINVAL;
}

int zoc_sg_rule_from_json(const json_t *params, struct zoc_sg_rule *r, char *err,
			  unsigned errlen)
{
	static const char *const known[] = {"secgroup", "direction", "protocol", "cidr",
					    "port_min", "port_max", "icmp_type", "icmp_code"};
	const char *key, *s;
	json_t *v;
	long pmin = 0, pmax = 65535, t = -1, c = -1;
	int rc1, rc2;

	memset(r, 0, sizeof(*r));
	r->port_max = 65535;
	r->icmp_type = r->icmp_code = -1;
	if (!json_is_object(params)) {
		snprintf(err, errlen, "params must be an object");
		return -EINVAL;
	}
	json_object_foreach((json_t *)params, key, v) {
		bool ok = false;

		for (unsigned i = 0; i < ZOC_ARRAY_SIZE(known); i++)
			ok |= !strcmp(key, known[i]);
		if (!ok) {
			snprintf(err, errlen, "unknown parameter \"%.32s\" (known: direction, protocol, "
					      "cidr, port_min, port_max, icmp_type, icmp_code)", key);
			return -EINVAL;
		}
	}
	s = json_string_value(json_object_get(params, "direction"));
	if (!s || (strcmp(s, "ingress") && strcmp(s, "egress"))) {
		snprintf(err, errlen, "direction is required: \"ingress\" or \"egress\"");
		return -EINVAL;
	}
	r->dir = strcmp(s, "ingress") ? ZOC_CT_EGRESS : ZOC_CT_INGRESS;
	if ((v = json_object_get(params, "protocol"))) {
		bool found = false;

		s = json_string_value(v);
		for (unsigned i = 0; s && i < ZOC_ARRAY_SIZE(g_protos); i++)
			if (!strcmp(s, g_protos[i].name)) {
				r->proto = g_protos[i].proto;
				found = true;
			}
		if (!found) {
			snprintf(err, errlen, "protocol must be tcp, udp, icmp, icmpv6 or any");
			return -EINVAL;
		}
	}
	if ((v = json_object_get(params, "cidr"))) {
		if (!json_is_string(v)) {
			snprintf(err, errlen, "cidr must be a string like \"10.0.0.0/8\"");
			return -EINVAL;
		}
		if (parse_cidr(json_string_value(v), r, err, errlen))
			return -EINVAL;
	}
	rc1 = get_uint(params, "port_min", 65535, &pmin, err, errlen);
	rc2 = get_uint(params, "port_max", 65535, &pmax, err, errlen);
	if (rc1 < 0 || rc2 < 0)
		return -EINVAL;
	if ((rc1 == 0 || rc2 == 0) && r->proto != ZOC_IPPROTO_TCP && r->proto != ZOC_IPPROTO_UDP) {
		snprintf(err, errlen, "port_min/port_max need protocol tcp or udp");
		return -EINVAL;
	}
	if (rc1 == 0 && rc2 == 1)
		pmax = pmin; /* one port */
	if (rc1 == 1 && rc2 == 0)
		pmin = 0;
	if (pmin > pmax) {
		snprintf(err, errlen, "port_min (%ld) is greater than port_max (%ld)", pmin, pmax);
		return -EINVAL;
	}
	r->port_min = (uint16_t)pmin;
	r->port_max = (uint16_t)pmax;
	rc1 = get_uint(params, "icmp_type", 255, &t, err, errlen);
	rc2 = get_uint(params, "icmp_code", 255, &c, err, errlen);
	if (rc1 < 0 || rc2 < 0)
		return -EINVAL;
	if ((rc1 == 0 || rc2 == 0) && r->proto != ZOC_IPPROTO_ICMP &&
	    r->proto != ZOC_IPPROTO_ICMPV6) {
		snprintf(err, errlen, "icmp_type/icmp_code need protocol icmp or icmpv6");
		return -EINVAL;
	}
	if (rc2 == 0 && rc1 == 1) {
		snprintf(err, errlen, "icmp_code needs icmp_type");
		return -EINVAL;
	}
	r->icmp_type = (int16_t)t;
	r->icmp_code = (int16_t)c;
	return 0;
}

json_t *zoc_sg_rule_to_json(const struct zoc_sg_rule *r)
{
	json_t *o = json_object();
	const char *pn = NULL;
	char buf[64], addr[48];

	for (unsigned i = 0; i < ZOC_ARRAY_SIZE(g_protos); i++)
		if (g_protos[i].proto == r->proto)
			pn = g_protos[i].name;
	json_object_set_new(o, "id", json_integer(r->id));
	json_object_set_new(o, "direction",
			    json_string(r->dir == ZOC_CT_INGRESS ? "ingress" : "egress"));
	if (pn)
		json_object_set_new(o, "protocol", json_string(pn));
	else
		json_object_set_new(o, "protocol", json_integer(r->proto));
	if (r->family) {
		zoc_flowkey_addr_str(r->addr, r->family, addr, sizeof(addr));
		snprintf(buf, sizeof(buf), "%s/%u", addr, r->prefix_len);
		json_object_set_new(o, "cidr", json_string(buf));
	}
	if (r->proto == ZOC_IPPROTO_TCP || r->proto == ZOC_IPPROTO_UDP) {
		json_object_set_new(o, "port_min", json_integer(r->port_min));
		json_object_set_new(o, "port_max", json_integer(r->port_max));
	}
	if (r->icmp_type >= 0)
		json_object_set_new(o, "icmp_type", json_integer(r->icmp_type));
	if (r->icmp_code >= 0)
		json_object_set_new(o, "icmp_code", json_integer(r->icmp_code));
	return o;
}

json_t *zoc_sg_to_json(const struct zoc_sg *sg)
{
	json_t *rules = json_array();

	for (unsigned i = 0; i < sg->n; i++)
		json_array_append_new(rules, zoc_sg_rule_to_json(&sg->rules[i]));
	return json_pack("{s:s, s:o}", "name", sg->name, "rules", rules);
}
