/* SPDX-License-Identifier: MIT */
/*
 * fuzz_conntrack.c - libFuzzer target for flowkey + conntrack + secgroup:
 * arbitrary packet sequences from both directions of four ports.
 *
 * Per input, a fresh table (capacity 64, growable to 1024, port 2 capped at
 * 20 sessions) and a security group with two rules. Input: records until
 * the data ends; byte 0 of a record: bit 0 direction (egress / ingress),
 * bits 1-2 zone (port 0..3, port 3 has no security group), bits 3-5 op:
 *   0, 7  a frame: bytes 1-2 length (little endian, mod 512), then the
 *         frame bytes, parsed by zoc_flowkey_parse and, if IP, processed
 *   1     advance the clock by byte 1 seconds (x 4) and poll (budget 32)
 *   2     a TCP segment of one of 4 connections (byte 1 bits 0-1), flags
 *         byte 2, seq and ack as deltas (bytes 3-4, 5-6, signed) from the
 *         connection's tracked values, payload length byte 7: reaches every
 *         state quickly
 *   3     zoc_ct_grow to 64 << (byte 1 % 5)
 *   4     a rule from bytes 1-8 (direction, protocol, prefix, address byte,
 *         port range, ICMP type) added to the group
 *   5     delete rule id byte 1
 *   6     a burst: the next up to 8 frames of op 0 form, one call
 * Checks besides the sanitizers: the per-state counts add up to `used`,
 * `used` never exceeds the capacity, and after a flush nothing is left.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "net/conntrack.h"
#include "net/flowkey.h"
#include "net/secgroup.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	zoc_log_set_level(ZOC_LOG_ERR);
	return 0;
}

static void check(struct zoc_ct *ct)
{
	struct zoc_ct_stats st;
	uint64_t sum = 0;

	zoc_ct_get_stats(ct, &st);
	for (int s = 1; s < ZOC_CT_S_COUNT; s++)
		sum += st.per_state[s];
	if (sum != st.used || st.used > st.capacity) {
		fprintf(stderr, "conntrack: used %llu, states sum %llu, capacity %llu\n",
			(unsigned long long)st.used, (unsigned long long)sum,
			(unsigned long long)st.capacity);
		abort();
	}
}

struct conv {
	uint32_t seq[2];
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct zoc_ct_config cfg = {.capacity = 64, .max_capacity = 1024, .auto_grow = true};
	struct zoc_ct *ct = zoc_ct_create(&cfg);
	struct zoc_sg *sg = zoc_sg_create("fz");
	struct zoc_sg_rule r = {.dir = ZOC_CT_INGRESS, .proto = 6, .port_min = 80, .port_max = 80,
				.icmp_type = -1, .icmp_code = -1};
	struct conv cv[4] = {{{1000, 5000}}, {{1u << 31, 7}}, {{0xfffffff0u, 42}}, {{3, 3}}};
	uint64_t now = 1000000000000ull;
	size_t i = 0;

	if (!ct || !sg)
		abort();
	zoc_sg_rule_add(sg, &r, NULL);
	r.dir = ZOC_CT_EGRESS;
	r.proto = 17;
	r.port_min = 53;
	r.port_max = 53;
	zoc_sg_rule_add(sg, &r, NULL);
	zoc_ct_set_port_cap(ct, 2, 20);
	while (i < size) {
		uint8_t op = data[i++];
		enum zoc_ct_dir dir = (op & 1) ? ZOC_CT_INGRESS : ZOC_CT_EGRESS;
		uint16_t zone = (op >> 1) & 3;
		const struct zoc_sg_ruleset *rs = zone == 3 ? NULL : zoc_sg_rules(sg);
		uint8_t b[8] = {0};

		for (unsigned j = 0; j < 8 && i + j < size; j++)
			b[j] = data[i + j];
		switch ((op >> 3) & 7) {
		case 0:
		case 7:
		case 6: {
			struct zoc_flowkey keys[8];
			const struct zoc_flowkey *kp[8];
			uint8_t v[8];
			unsigned n = 0, want = ((op >> 3) & 7) == 6 ? 8 : 1;

			if (want == 8)
				i++;
			while (n < want && i + 2 <= size) {
				uint32_t len = (uint32_t)(data[i] | data[i + 1] << 8) % 512;
				uint8_t *f;

				i += 2;
				if (len > size - i)
					len = (uint32_t)(size - i);
				f = malloc(len ? len : 1);
				memcpy(f, data + i, len);
				i += len;
				if (zoc_flowkey_parse(f, len, &keys[n]) == 0) {
					kp[n] = &keys[n];
					n++;
				}
				free(f);
			}
			if (n == 1 && want == 1)
				zoc_ct_process(ct, rs, zone, dir, &keys[0], now);
			else if (n)
				zoc_ct_process_burst(ct, rs, zone, dir, kp, n, now, v);
			break;
		}
		case 1:
			now += (uint64_t)b[0] * 4 * 1000000000ull;
			zoc_ct_poll(ct, now, 32);
			i += 1;
			break;
		case 2: {
			struct zoc_flowkey k;
			struct conv *c = &cv[b[0] & 3];
			int d = dir == ZOC_CT_EGRESS ? 0 : 1;
			uint16_t cport = (uint16_t)(40000 + (b[0] & 3));
			enum zoc_ct_verdict v;

			memset(&k, 0, sizeof(k));
			k.family = 4;
			k.proto = 6;
			k.src[0] = 10, k.src[3] = (uint8_t)(1 + d);
			k.dst[0] = 10, k.dst[3] = (uint8_t)(2 - d);
			k.sport = d ? 80 : cport;
			k.dport = d ? cport : 80;
			k.tcp_flags = b[1] & 0x3f;
			k.seq = c->seq[d] + (uint32_t)(int16_t)(b[2] | b[3] << 8);
			k.ack = c->seq[!d] + (uint32_t)(int16_t)(b[4] | b[5] << 8);
			k.l4_len = b[6];
			k.win = (uint16_t)(b[7] << 8 | 0xff);
			if (b[7] & 1) {
				k.flags |= ZOC_FLOWKEY_F_WSCALE;
				k.wscale = b[7] >> 4;
			}
			v = zoc_ct_process(ct, rs, zone, dir, &k, now);
			if (!zoc_ct_is_drop(v))
				c->seq[d] = k.seq + k.l4_len +
					    ((k.tcp_flags & (ZOC_TCP_SYN | ZOC_TCP_FIN)) ? 1 : 0);
			i += 8;
			break;
		}
		case 3:
			zoc_ct_grow(ct, 64u << (b[0] % 5));
			i += 1;
			break;
		case 4: {
			struct zoc_sg_rule nr;

			memset(&nr, 0, sizeof(nr));
			nr.dir = b[0] & 1;
			nr.proto = (uint8_t[]){0, 6, 17, 1, 58}[b[0] % 5];
			nr.family = (b[1] & 3) == 1 ? 4 : (b[1] & 3) == 2 ? 6 : 0;
			nr.prefix_len = nr.family == 4 ? b[2] % 33 : nr.family == 6 ? b[2] % 129 : 0;
			nr.addr[0] = 10;
			nr.addr[3] = b[3];
			nr.port_min = (uint16_t)(b[4] << 8);
			nr.port_max = (uint16_t)(nr.port_min + b[5] * 256);
			nr.icmp_type = (int16_t)(b[6] == 0xff ? -1 : b[6]);
			nr.icmp_code = -1;
			zoc_sg_rule_add(sg, &nr, NULL);
			i += 8;
			break;
		}
		case 5:
			zoc_sg_rule_delete(sg, b[0]);
			i += 1;
			break;
		}
		check(ct);
	}
	{
		struct zoc_ct_filter f = {.state = -1, .zone = -1, .max = 16};
		json_t *arr = json_array(), *st = zoc_ct_stats_json(ct);

		zoc_ct_list_json(ct, &f, now, arr);
		json_decref(arr);
		json_decref(st);
	}
	zoc_ct_flush(ct);
	check(ct);
	{
		struct zoc_ct_stats st;

		zoc_ct_get_stats(ct, &st);
		if (st.used)
			abort();
	}
	zoc_ct_destroy(ct);
	zoc_sg_destroy(sg);
	return 0;
}
