/* SPDX-License-Identifier: MIT */
/*
 * conntrack.h - connection tracking: the session table of the vSwitch's
 * stateful slow path.
 *
 * NAME
 *   struct zoc_ct, zoc_ct_create, zoc_ct_process, zoc_ct_process_burst,
 *   zoc_ct_poll, zoc_ct_grow - sessions of TCP, UDP, ICMP echo and other
 *   IP protocols, per zone (vSwitch port), with a TCP state machine,
 *   sequence sanity checks, per-state timeouts, caps and SYN-flood early
 *   drop. docs/conntrack.md has the design.
 *
 * CONCURRENCY
 *   A struct zoc_ct is one *partition* with one owner thread: every call
 *   except zoc_ct_create/destroy runs on that thread, without locks.
 *   Several cores use one partition each; a session belongs to the
 *   partition zoc_ct_partition(zoc_flowkey_sym_hash(key), n) selects (the
 *   same for both directions), and the switch steers packets to it. The
 *   control plane reads stats and lists sessions by sending a message to
 *   the owner (zoc_reactor_send_msg), which calls zoc_ct_stats_json /
 *   zoc_ct_list_json there.
 *
 * ZONES AND DIRECTIONS
 *   Sessions are per zone (the vNIC port id): the same 5-tuple seen at two
 *   ports (VM to VM through the switch) is two sessions, one per port, each
 *   subject to that port's security group. dir is the packet's direction
 *   at the port: ZOC_CT_EGRESS leaves the VM, ZOC_CT_INGRESS goes to it.
 *   A session remembers the direction of its first packet; a later packet
 *   that matches the session's reply tuple must come the other way.
 *
 * TIME
 *   now is in nanoseconds of any monotonic clock (tests inject one);
 *   sessions store expiry in ticks of 2^20 ns (~1.05 ms), wrap-safe.
 */
#ifndef ZOC_NET_CONNTRACK_H
#define ZOC_NET_CONNTRACK_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "net/flowkey.h"

struct zoc_ct;
struct zoc_sg_ruleset;

enum zoc_ct_dir {
	ZOC_CT_EGRESS = 0, /* from the VM to the switch */
	ZOC_CT_INGRESS = 1 /* from the switch to the VM */
};

enum zoc_ct_state {
	ZOC_CT_S_NONE = 0, /* free entry */
	ZOC_CT_S_SYN_SENT,
	ZOC_CT_S_SYN_RECV,
	ZOC_CT_S_ESTABLISHED,
	ZOC_CT_S_FIN_WAIT,
	ZOC_CT_S_CLOSE_WAIT,
	ZOC_CT_S_LAST_ACK,
	ZOC_CT_S_TIME_WAIT,
	ZOC_CT_S_CLOSE,
	ZOC_CT_S_UNREPLIED, /* UDP / ICMP / other: one direction seen */
	ZOC_CT_S_REPLIED,   /* both directions seen */
	ZOC_CT_S_COUNT
};

/* Verdicts: < ZOC_CT_DROP accept, >= ZOC_CT_DROP drop (the value is the
 * reason, counted in stats.drops[v - ZOC_CT_DROP]). */
enum zoc_ct_verdict {
	ZOC_CT_NEW = 0,     /* allowed by the security group, session created */
	ZOC_CT_EST,         /* belongs to a tracked session */
	ZOC_CT_RELATED,     /* ICMP error about a tracked session */
	ZOC_CT_UNTRACKED,   /* passed without tracking (later fragment, frag_pass) */
	ZOC_CT_DROP = 8,
	ZOC_CT_DROP_SG = ZOC_CT_DROP,   /* no security-group rule allows it */
	ZOC_CT_DROP_INVALID,    /* TCP flags/seq/ack out of window, bad state */
	ZOC_CT_DROP_NO_SESSION, /* TCP non-SYN or ICMP reply/error without session */
	ZOC_CT_DROP_DIRECTION,  /* matched a session from the wrong side */
	ZOC_CT_DROP_FULL,       /* table full, no embryonic entry to evict */
	ZOC_CT_DROP_PORT_CAP,   /* the port's session cap reached */
	ZOC_CT_DROP_FRAG,       /* later IP fragment (no reassembly) */
	ZOC_CT_DROP_END
};
#define ZOC_CT_N_DROPS (ZOC_CT_DROP_END - ZOC_CT_DROP)

static inline bool zoc_ct_is_drop(enum zoc_ct_verdict v)
{
	return v >= ZOC_CT_DROP;
}

/* Timeouts in seconds per state (TCP) and per pseudo-connection kind. */
struct zoc_ct_timeouts {
	uint32_t tcp[ZOC_CT_S_COUNT]; /* indexed by state, TCP states only */
	uint32_t udp_unreplied, udp_replied;
	uint32_t icmp;
	uint32_t other_unreplied, other_replied;
};

struct zoc_ct_config {
	uint32_t capacity;      /* sessions at creation (>= 64) */
	uint32_t max_capacity;  /* limit of growth (0 = capacity: no growth) */
	bool auto_grow;         /* grow (x2) when full instead of dropping */
	uint16_t max_ports;     /* zones 0..max_ports-1 (0 = 4096) */
	uint32_t port_cap;      /* default per-port session cap (0 = none) */
	bool frag_pass;         /* later fragments pass untracked instead of dropped */
	uint32_t flow_cache;    /* flow-cache entries (power of two, 2..2^22; 0 = none):
				 * a hit skips the index lookup (docs/conntrack.md) */
	const struct zoc_ct_timeouts *timeouts; /* NULL = defaults */
};

struct zoc_ct_stats {
	uint64_t capacity, used, max_capacity;
	uint64_t growths, migrating;       /* migrating: 1 while an index migration runs */
	uint64_t created, deleted, expired, early_drops, reopened;
	uint64_t per_state[ZOC_CT_S_COUNT];
	uint64_t drops[ZOC_CT_N_DROPS];
	uint64_t index_buckets, arena_entries; /* touched entries (high-water mark) */
	uint64_t bytes;        /* index (mapped, both during a migration) + touched arena */
	uint64_t fc_hits, fc_misses; /* flow cache (0 without one) */
};

/* A session as listed. */
struct zoc_ct_session {
	struct zoc_flowkey key; /* original direction (src, dst, ports, proto, family) */
	uint16_t zone;
	uint8_t state;
	uint8_t orig_dir;
	uint8_t assured;
	uint32_t expires_ms;    /* from now */
};

const char *zoc_ct_state_name(enum zoc_ct_state s);
/* State from its name (case-insensitive, e.g. "ESTABLISHED"); -1 if unknown. */
int zoc_ct_state_parse(const char *name);
const char *zoc_ct_verdict_name(enum zoc_ct_verdict v);

/* Any thread. NULL with errno set (EINVAL, ENOMEM). */
struct zoc_ct *zoc_ct_create(const struct zoc_ct_config *cfg);
void zoc_ct_destroy(struct zoc_ct *ct);

/* Partition of a session among n: by the symmetric hash. */
static inline unsigned zoc_ct_partition(uint32_t sym_hash, unsigned n)
{
	return (unsigned)(((uint64_t)sym_hash * n) >> 32);
}

/* One packet: look the key up in zone `zone` (the port), update the
 * session, or - for a packet that may open one - evaluate rs (NULL = no
 * security group: everything allowed) and create it. */
enum zoc_ct_verdict zoc_ct_process(struct zoc_ct *ct, const struct zoc_sg_ruleset *rs,
				   uint16_t zone, enum zoc_ct_dir dir,
				   const struct zoc_flowkey *k, uint64_t now);
/* Up to ZOC_PKT_BURST keys of one port and direction: hashes and
 * prefetches first, then processes in order. */
void zoc_ct_process_burst(struct zoc_ct *ct, const struct zoc_sg_ruleset *rs, uint16_t zone,
			  enum zoc_ct_dir dir, const struct zoc_flowkey *const *keys, unsigned n,
			  uint64_t now, uint8_t *verdicts);

/* Background work for the owner's poller: up to `budget` entries of the
 * expiry sweep and index buckets of a running migration. Returns the
 * number of sessions expired + buckets migrated (work done). */
unsigned zoc_ct_poll(struct zoc_ct *ct, uint64_t now, unsigned budget);

/* Raise capacity to new_capacity (<= max_capacity): the index doubles
 * until it fits and old buckets migrate incrementally (every insert and
 * zoc_ct_poll move some); lookups consult both meanwhile. 0, -EINVAL,
 * -EBUSY (a migration still runs), -ENOMEM. */
int zoc_ct_grow(struct zoc_ct *ct, uint32_t new_capacity);

/* Per-port cap (0 = none). -EINVAL for a zone out of range. */
int zoc_ct_set_port_cap(struct zoc_ct *ct, uint16_t zone, uint32_t cap);
uint32_t zoc_ct_port_count(const struct zoc_ct *ct, uint16_t zone);

/* Remove every session of a zone (port removed). Returns how many. */
unsigned zoc_ct_flush_zone(struct zoc_ct *ct, uint16_t zone);
/* Remove every session. */
void zoc_ct_flush(struct zoc_ct *ct);

void zoc_ct_get_stats(const struct zoc_ct *ct, struct zoc_ct_stats *st);

/* Session listing: filters (any field 0 / NULL = no filter). */
struct zoc_ct_filter {
	int state;          /* -1 = any, else enum zoc_ct_state */
	uint8_t proto;      /* 0 = any */
	uint8_t family;     /* 4, 6 for addr; 0 = no address filter */
	uint8_t addr[16];   /* matches either endpoint */
	uint16_t port;      /* matches either port (0 = any) */
	int zone;           /* -1 = any */
	uint32_t max;       /* at most this many (0 = 1000) */
};

/* Calls fn for sessions matching f, in arena order, at most f->max; stops
 * early when fn returns nonzero. Returns the number passed to fn. */
unsigned zoc_ct_walk(struct zoc_ct *ct, const struct zoc_ct_filter *f, uint64_t now,
		     int (*fn)(void *arg, const struct zoc_ct_session *s), void *arg);

/* JSON (owner thread). stats: {capacity, used, max_capacity, growths,
 * migrating, created, deleted, expired, early_drops, reopened,
 * bytes, bytes_per_session, states: {NAME: n}, drops: {reason: n}}. */
json_t *zoc_ct_stats_json(const struct zoc_ct *ct);
/* Adds into an accumulated object (several partitions): numbers summed. */
void zoc_ct_stats_json_add(json_t *acc, const json_t *part);
/* Parse conntrack_list params {state, protocol, address, port, zone,
 * count} into f. 0 or -EINVAL with err filled with what to fix. */
int zoc_ct_filter_from_json(const json_t *params, struct zoc_ct_filter *f, char *err,
			    unsigned errlen);
/* Appends matching sessions to the array `out` (objects {zone, protocol,
 * family, src, dst, sport, dport, state, direction, assured,
 * expires_ms}); returns how many. */
unsigned zoc_ct_list_json(struct zoc_ct *ct, const struct zoc_ct_filter *f, uint64_t now,
			  json_t *out);

/* Size of one session entry in bytes (both directions in it). */
unsigned zoc_ct_entry_size(void);

#endif
