/* SPDX-License-Identifier: MIT */
/*
 * test_secgroup.c - security groups (src/net/secgroup.c): rule matching
 * (CIDR edges, port ranges, IPv4/IPv6, ICMP type/code, protocol any),
 * default deny ingress / allow egress, rule changes applying to the next
 * new connection while tracked sessions go on, JSON parsing errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "ctl/jsonrpc.h"
#include "net/conntrack.h"
#include "net/flowkey.h"
#include "net/secgroup.h"
#include "net/vswitch.h"
#include "zocd/rpc_methods.h"

#define SEC 1000000000ull

static struct zoc_flowkey key(uint8_t proto, const char *src, const char *dst, uint16_t sp,
			      uint16_t dp)
{
	struct zoc_flowkey k;

	memset(&k, 0, sizeof(k));
	k.proto = proto;
	if (inet_pton(AF_INET, src, k.src) == 1) {
		k.family = 4;
		assert_int_equal(inet_pton(AF_INET, dst, k.dst), 1);
	} else {
		k.family = 6;
		assert_int_equal(inet_pton(AF_INET6, src, k.src), 1);
		assert_int_equal(inet_pton(AF_INET6, dst, k.dst), 1);
	}
	k.sport = sp;
	k.dport = dp;
	if (proto == ZOC_IPPROTO_TCP)
		k.tcp_flags = ZOC_TCP_SYN;
	return k;
}

/* Adds a rule from JSON text; asserts it parses. */
static uint32_t add(struct zoc_sg *sg, const char *json)
{
	json_error_t je;
	json_t *p = json_loads(json, 0, &je);
	struct zoc_sg_rule r;
	char err[256] = "";
	uint32_t id = 0;

	assert_non_null(p);
	if (zoc_sg_rule_from_json(p, &r, err, sizeof(err)))
		fail_msg("rule %s: %s", json, err);
	assert_int_equal(zoc_sg_rule_add(sg, &r, &id), 0);
	json_decref(p);
	return id;
}

/* Parse error expected; returns the message's match against want. */
static void bad(const char *json, const char *want)
{
	json_t *p = json_loads(json, 0, NULL);
	struct zoc_sg_rule r;
	char err[256] = "";

	assert_non_null(p);
	assert_int_equal(zoc_sg_rule_from_json(p, &r, err, sizeof(err)), -EINVAL);
	if (!strstr(err, want))
		fail_msg("%s: error \"%s\" lacks \"%s\"", json, err, want);
	json_decref(p);
}

static bool in(struct zoc_sg *sg, struct zoc_flowkey k)
{
	return zoc_sg_allows(zoc_sg_rules(sg), ZOC_CT_INGRESS, &k);
}

static bool eg(struct zoc_sg *sg, struct zoc_flowkey k)
{
	return zoc_sg_allows(zoc_sg_rules(sg), ZOC_CT_EGRESS, &k);
}

static void test_defaults(void **state)
{
	struct zoc_sg *sg = zoc_sg_create("d");

	assert_non_null(sg);
	assert_false(in(sg, key(6, "1.2.3.4", "10.0.0.1", 1000, 22)));
	assert_false(in(sg, key(17, "::1", "::2", 1000, 53)));
	assert_true(eg(sg, key(6, "10.0.0.1", "1.2.3.4", 1000, 443)));
	/* Once an egress rule exists, egress is allow-listed. */
	add(sg, "{\"direction\":\"egress\",\"protocol\":\"tcp\",\"port_min\":443}");
	assert_true(eg(sg, key(6, "10.0.0.1", "1.2.3.4", 1000, 443)));
	assert_false(eg(sg, key(6, "10.0.0.1", "1.2.3.4", 1000, 80)));
	assert_false(eg(sg, key(17, "10.0.0.1", "1.2.3.4", 1000, 443)));
	zoc_sg_destroy(sg);
	assert_null(zoc_sg_create(""));
}

static void test_cidr_edges(void **state)
{
	struct zoc_sg *sg = zoc_sg_create("c");

	add(sg, "{\"direction\":\"ingress\",\"protocol\":\"tcp\",\"cidr\":\"192.168.1.128/25\"}");
	assert_true(in(sg, key(6, "192.168.1.128", "10.0.0.1", 1, 22)));
	assert_true(in(sg, key(6, "192.168.1.255", "10.0.0.1", 1, 22)));
	assert_false(in(sg, key(6, "192.168.1.127", "10.0.0.1", 1, 22)));
	assert_false(in(sg, key(6, "192.168.2.128", "10.0.0.1", 1, 22)));
	/* The destination (our VM) does not matter for ingress. */
	assert_false(in(sg, key(6, "10.0.0.1", "192.168.1.200", 1, 22)));
	/* Host bits in the rule are cleared. */
	add(sg, "{\"direction\":\"ingress\",\"protocol\":\"udp\",\"cidr\":\"10.1.2.3/8\"}");
	assert_true(in(sg, key(17, "10.255.0.1", "10.0.0.1", 1, 53)));
	assert_false(in(sg, key(17, "11.0.0.0", "10.0.0.1", 1, 53)));
	/* /32 exact, /0 everything of that family only. */
	add(sg, "{\"direction\":\"ingress\",\"protocol\":\"icmp\",\"cidr\":\"8.8.8.8\"}");
	assert_true(in(sg, key(1, "8.8.8.8", "10.0.0.1", 0, 0)));
	assert_false(in(sg, key(1, "8.8.8.9", "10.0.0.1", 0, 0)));
	add(sg, "{\"direction\":\"ingress\",\"protocol\":\"any\",\"cidr\":\"::/0\"}");
	assert_true(in(sg, key(6, "2001:db8::1", "2001:db8::2", 1, 9999)));
	assert_false(in(sg, key(6, "1.1.1.1", "10.0.0.1", 1, 9999)));
	zoc_sg_destroy(sg);
	/* IPv6 prefixes not on a byte boundary. */
	sg = zoc_sg_create("c6");
	add(sg, "{\"direction\":\"ingress\",\"cidr\":\"2001:db8:0:ff80::/57\"}");
	assert_true(in(sg, key(17, "2001:db8:0:ff80::1", "::1", 1, 1)));
	assert_true(in(sg, key(17, "2001:db8:0:ffff:ffff::1", "::1", 1, 1)));
	assert_false(in(sg, key(17, "2001:db8:0:ff7f::1", "::1", 1, 1)));
	add(sg, "{\"direction\":\"ingress\",\"cidr\":\"fe80::1/127\"}");
	assert_true(in(sg, key(17, "fe80::", "::1", 1, 1)));
	assert_true(in(sg, key(17, "fe80::1", "::1", 1, 1)));
	assert_false(in(sg, key(17, "fe80::2", "::1", 1, 1)));
	zoc_sg_destroy(sg);
}

static void test_ports_and_icmp(void **state)
{
	struct zoc_sg *sg = zoc_sg_create("p");

	add(sg, "{\"direction\":\"ingress\",\"protocol\":\"tcp\",\"port_min\":8000,\"port_max\":8080}");
	assert_false(in(sg, key(6, "1.1.1.1", "10.0.0.1", 8000, 7999)));
	assert_true(in(sg, key(6, "1.1.1.1", "10.0.0.1", 1, 8000)));
	assert_true(in(sg, key(6, "1.1.1.1", "10.0.0.1", 1, 8080)));
	assert_false(in(sg, key(6, "1.1.1.1", "10.0.0.1", 1, 8081)));
	assert_false(in(sg, key(17, "1.1.1.1", "10.0.0.1", 1, 8000)));
	add(sg, "{\"direction\":\"ingress\",\"protocol\":\"udp\",\"port_max\":0}");
	assert_true(in(sg, key(17, "1.1.1.1", "10.0.0.1", 1, 0)));
	assert_false(in(sg, key(17, "1.1.1.1", "10.0.0.1", 1, 1)));
	add(sg, "{\"direction\":\"ingress\",\"protocol\":\"icmp\",\"icmp_type\":8}");
	{
		struct zoc_flowkey k = key(1, "1.1.1.1", "10.0.0.1", 5, 5);

		k.icmp_type = 8;
		assert_true(in(sg, k));
		k.icmp_type = 13;
		assert_false(in(sg, k));
		k.proto = 58; /* icmpv6 is another protocol */
		k.icmp_type = 8;
		assert_false(in(sg, k));
	}
	add(sg, "{\"direction\":\"ingress\",\"protocol\":\"icmpv6\",\"icmp_type\":1,\"icmp_code\":4}");
	{
		struct zoc_flowkey k = key(58, "::5", "::1", 0, 0);

		k.icmp_type = 1;
		k.icmp_code = 4;
		assert_true(in(sg, k));
		k.icmp_code = 3;
		assert_false(in(sg, k));
	}
	zoc_sg_destroy(sg);
}

static void test_json_errors(void **state)
{
	struct zoc_sg *sg = zoc_sg_create("j");
	uint32_t id;
	json_t *o;

	bad("{}", "direction is required");
	bad("{\"direction\":\"in\"}", "direction is required");
	bad("{\"direction\":\"ingress\",\"protocol\":\"gre\"}", "protocol must be");
	bad("{\"direction\":\"ingress\",\"cidr\":\"10.0.0.0/33\"}", "prefix length");
	bad("{\"direction\":\"ingress\",\"cidr\":\"10.0.0/8\"}", "cidr must be");
	bad("{\"direction\":\"ingress\",\"cidr\":\"::/129\"}", "cidr must be");
	bad("{\"direction\":\"ingress\",\"cidr\":5}", "cidr must be a string");
	bad("{\"direction\":\"ingress\",\"port_min\":80}", "need protocol tcp or udp");
	bad("{\"direction\":\"ingress\",\"protocol\":\"tcp\",\"port_min\":90,\"port_max\":80}",
	    "greater than port_max");
	bad("{\"direction\":\"ingress\",\"protocol\":\"tcp\",\"port_min\":70000}", "0..65535");
	bad("{\"direction\":\"ingress\",\"protocol\":\"tcp\",\"icmp_type\":3}", "need protocol icmp");
	bad("{\"direction\":\"ingress\",\"protocol\":\"icmp\",\"icmp_code\":3}", "needs icmp_type");
	bad("{\"direction\":\"ingress\",\"prot\":\"tcp\"}", "unknown parameter \"prot\"");
	bad("[]", "object");
	/* Round trip, delete. */
	id = add(sg, "{\"secgroup\":\"j\",\"direction\":\"ingress\",\"protocol\":\"tcp\","
		     "\"cidr\":\"10.9.0.0/16\",\"port_min\":22}");
	o = zoc_sg_to_json(sg);
	assert_string_equal(json_string_value(json_object_get(o, "name")), "j");
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(o, "rules"), 0), "cidr")),
			    "10.9.0.0/16");
	assert_int_equal(json_integer_value(json_object_get(
				 json_array_get(json_object_get(o, "rules"), 0), "port_max")),
			 22);
	json_decref(o);
	assert_int_equal(zoc_sg_rule_count(sg), 1);
	assert_int_equal(zoc_sg_rule_delete(sg, id + 100), -ENOENT);
	assert_int_equal(zoc_sg_rule_delete(sg, id), 0);
	assert_int_equal(zoc_sg_rule_count(sg), 0);
	zoc_sg_destroy(sg);
}

/* Rules change under traffic: a new connection sees the change at once; a
 * tracked session keeps passing after its rule is gone. */
static void test_change_applies_to_new_connections(void **state)
{
	struct zoc_sg *sg = zoc_sg_create("live");
	struct zoc_ct_config cfg = {.capacity = 256};
	struct zoc_ct *ct = zoc_ct_create(&cfg);
	struct zoc_flowkey syn = key(6, "1.2.3.4", "10.0.0.1", 5000, 22), ack;
	uint64_t now = 5 * SEC;
	uint32_t id;

	assert_non_null(ct);
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, ZOC_CT_INGRESS, &syn, now),
			 ZOC_CT_DROP_SG);
	id = add(sg, "{\"direction\":\"ingress\",\"protocol\":\"tcp\",\"port_min\":22}");
	syn.seq = 100;
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, ZOC_CT_INGRESS, &syn, now),
			 ZOC_CT_NEW);
	assert_int_equal(zoc_sg_rule_delete(sg, id), 0);
	/* The SYN-ACK and ACK of the session still pass; a new SYN does not. */
	ack = key(6, "10.0.0.1", "1.2.3.4", 22, 5000);
	ack.tcp_flags = ZOC_TCP_SYN | ZOC_TCP_ACK;
	ack.seq = 700;
	ack.ack = 101;
	ack.win = 1000;
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, ZOC_CT_EGRESS, &ack, now),
			 ZOC_CT_EST);
	ack = key(6, "1.2.3.4", "10.0.0.1", 5000, 22);
	ack.tcp_flags = ZOC_TCP_ACK;
	ack.seq = 101;
	ack.ack = 701;
	ack.win = 1000;
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, ZOC_CT_INGRESS, &ack, now),
			 ZOC_CT_EST);
	syn.sport = 5001;
	assert_int_equal(zoc_ct_process(ct, zoc_sg_rules(sg), 1, ZOC_CT_INGRESS, &syn, now),
			 ZOC_CT_DROP_SG);
	zoc_ct_destroy(ct);
	zoc_sg_destroy(sg);
}

/* One request through the JSON-RPC layer; returns the response object. */
static json_t *rpc(const char *method, const char *params)
{
	char buf[1024];
	char *out;
	json_t *v;

	snprintf(buf, sizeof(buf), "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"%s\",\"params\":%s}",
		 method, params);
	out = zoc_rpc_process_buffer(buf, strlen(buf));
	assert_non_null(out);
	v = json_loads(out, 0, NULL);
	if (!v)
		fail_msg("not JSON: %s", out);
	free(out);
	return v;
}

static const char *rpc_err(json_t *r)
{
	return json_string_value(json_object_get(json_object_get(r, "error"), "message"));
}

static unsigned drop_tx(struct zoc_port *port, struct zoc_pkt **pkts, unsigned n)
{
	return 0;
}

static const struct zoc_port_ops g_drop_ops = {.type = "test", .tx_burst = drop_tx};

static void test_rpc_methods(void **state)
{
	json_t *r, *cfg;
	struct zoc_vswitch *sw;
	struct zoc_port *port;
	struct zoc_port_config pc;
	int id;

	zoc_zocd_register_secgroup_methods();
	/* A switch with a vNIC port "vm1" (as virtio_net_create makes). */
	assert_int_equal(zoc_vswitch_create("s0", NULL, &sw), 0);
	zoc_port_config_init(&pc, "vm1");
	assert_int_equal(zoc_vswitch_port_add(sw, &pc, &g_drop_ops, NULL, &port), 0);
	r = rpc("secgroup_create", "{\"name\":\"web\"}");
	assert_null(json_object_get(r, "error"));
	json_decref(r);
	r = rpc("secgroup_create", "{\"name\":\"web\"}");
	assert_non_null(strstr(rpc_err(r), "already exists"));
	json_decref(r);
	r = rpc("secgroup_rule_add", "{\"secgroup\":\"web\",\"direction\":\"ingress\","
				     "\"protocol\":\"tcp\",\"port_min\":443,\"cidr\":\"10.0.0.0/8\"}");
	assert_null(json_object_get(r, "error"));
	id = (int)json_integer_value(json_object_get(json_object_get(r, "result"), "id"));
	assert_true(id > 0);
	json_decref(r);
	r = rpc("secgroup_rule_add", "{\"secgroup\":\"web\",\"direction\":\"ingress\","
				     "\"protocol\":\"udp\",\"cidr\":\"10.0.0.0/40\"}");
	assert_non_null(strstr(rpc_err(r), "cidr must be"));
	json_decref(r);
	r = rpc("secgroup_rule_add", "{\"secgroup\":\"nope\",\"direction\":\"ingress\"}");
	assert_non_null(strstr(rpc_err(r), "no secgroup 'nope'"));
	json_decref(r);
	r = rpc("secgroup_list", "{}");
	assert_int_equal(json_array_size(json_object_get(r, "result")), 1);
	json_decref(r);
	cfg = zoc_rpc_save_config();
	{
		bool saw_rule = false;
		size_t i;
		json_t *m;

		json_array_foreach(cfg, i, m)
			if (!strcmp(json_string_value(json_object_get(m, "method")),
				    "secgroup_rule_add"))
				saw_rule = json_integer_value(json_object_get(
						   json_object_get(m, "params"), "port_max")) == 443;
		assert_true(saw_rule);
	}
	json_decref(cfg);
	/* Attach: errors name what to fix; delete refused while attached;
	 * save_config's attachment writer replays it. */
	r = rpc("port_set_secgroup", "{\"device\":\"nope\",\"secgroup\":\"web\"}");
	assert_non_null(strstr(rpc_err(r), "no virtio-net device 'nope'"));
	json_decref(r);
	r = rpc("port_set_secgroup", "{\"device\":\"vm1\",\"secgroup\":\"nope\"}");
	assert_non_null(strstr(rpc_err(r), "no secgroup 'nope'"));
	json_decref(r);
	r = rpc("port_set_secgroup", "{\"device\":\"vm1\",\"secgroup\":\"web\"}");
	assert_null(json_object_get(r, "error"));
	json_decref(r);
	assert_non_null(zoc_vswitch_port_secgroup(port));
	r = rpc("secgroup_delete", "{\"name\":\"web\"}");
	assert_non_null(strstr(rpc_err(r), "attached to port 'vm1'"));
	json_decref(r);
	cfg = json_array();
	zoc_zocd_secgroup_attach_writer(cfg);
	assert_int_equal(json_array_size(cfg), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(cfg, 0), "method")),
			    "port_set_secgroup");
	json_decref(cfg);
	/* The switch's table (one partition here). */
	r = rpc("conntrack_stats", "{}");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "result"),
							    "capacity")),
			 65536);
	assert_int_equal(json_array_size(json_object_get(json_object_get(r, "result"), "switches")),
			 1);
	json_decref(r);
	r = rpc("conntrack_stats", "{\"switch\":\"nope\"}");
	assert_non_null(strstr(rpc_err(r), "no switch named 'nope'"));
	json_decref(r);
	r = rpc("conntrack_list", "{\"protocol\":\"tcp\",\"count\":10,\"port\":\"vm1\"}");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "result"),
							    "count")),
			 0);
	json_decref(r);
	r = rpc("conntrack_list", "{\"protocol\":\"sctp\"}");
	assert_non_null(strstr(rpc_err(r), "protocol must be"));
	json_decref(r);
	r = rpc("conntrack_list", "{\"colour\":\"red\"}");
	assert_non_null(strstr(rpc_err(r), "unknown parameter 'colour'"));
	json_decref(r);
	r = rpc("port_set_secgroup", "{\"device\":\"vm1\",\"secgroup\":null}");
	assert_null(json_object_get(r, "error"));
	json_decref(r);
	assert_null(zoc_vswitch_port_secgroup(port));
	assert_int_equal(zoc_vswitch_port_remove(port, NULL, NULL), 0);
	assert_int_equal(zoc_vswitch_destroy(sw), 0);
	r = rpc("secgroup_rule_delete", "{\"secgroup\":\"web\",\"id\":999}");
	assert_non_null(strstr(rpc_err(r), "no rule 999"));
	json_decref(r);
	{
		char p[64];

		snprintf(p, sizeof(p), "{\"secgroup\":\"web\",\"id\":%d}", id);
		r = rpc("secgroup_rule_delete", p);
		assert_null(json_object_get(r, "error"));
		json_decref(r);
	}
	r = rpc("secgroup_delete", "{\"name\":\"web\"}");
	assert_null(json_object_get(r, "error"));
	json_decref(r);
	r = rpc("secgroup_delete", "{\"name\":\"web\"}");
	assert_non_null(strstr(rpc_err(r), "no secgroup"));
	json_decref(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_cidr_edges),
		cmocka_unit_test(test_ports_and_icmp),
		cmocka_unit_test(test_json_errors),
		cmocka_unit_test(test_change_applies_to_new_connections),
		cmocka_unit_test(test_rpc_methods),
	};

	zoc_log_set_level(ZOC_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
