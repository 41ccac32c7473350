/* SPDX-License-Identifier: MIT */
/*
 * ctgen.h - frames of whole TCP connections for connection-tracking
 * benchmarks (zoc-perf conn).
 *
 * NAME
 *   struct ctgen, ctgen_init, ctgen_frame, ctgen_side, ctgen_check - the
 *   seven segments of a TCP connection (handshake and teardown) as
 *   Ethernet + IPv4 or IPv6 + TCP frames with correct checksums, sequence
 *   and acknowledgement numbers.
 *
 * CONNECTIONS
 *   Connection c (0 .. 2^38) goes from a client on side A (the VM behind a
 *   vNIC) to one server on side B (behind the uplink), destination port
 *   dport. Its 5-tuple is distinct from every other connection's: client
 *   address 10.0.0.0 + (c >> 14) (IPv6: fd00:c7::/96 + the same number),
 *   client port 1024 + (c & 0x3fff). Initial sequence numbers are derived
 *   from c. Steps (ctgen_side() says which side sends):
 *
 *     0 A  SYN                 seq ci
 *     1 B  SYN|ACK             seq si        ack ci+1
 *     2 A  ACK                 seq ci+1      ack si+1   (ESTABLISHED)
 *     3 A  FIN|ACK             seq ci+1      ack si+1
 *     4 B  ACK                 seq si+1      ack ci+2
 *     5 B  FIN|ACK             seq si+1      ack ci+2
 *     6 A  ACK                 seq ci+2      ack si+2   (TIME_WAIT)
 *
 *   No payload, window 65535, no options: 54-byte frames (IPv4) or 74
 *   (IPv6). A caller that needs a minimum Ethernet size pads.
 *
 * The generator is plain code (no libzoc): the in-process switch target
 * and the AF_PACKET target of zoc-perf build the same frames.
 */
#ifndef ZOC_PERF_CTGEN_H
#define ZOC_PERF_CTGEN_H

#include <stdbool.h>
#include <stdint.h>

#define CTGEN_STEPS 7
#define CTGEN_FRAME_MAX 80

enum ctgen_side_id { CTGEN_A = 0, CTGEN_B = 1 };

struct ctgen {
	uint8_t mac_a[6], mac_b[6];
	bool ipv6;
	uint16_t dport;
	uint32_t server4;   /* host order */
	uint8_t server6[16];
};

/* Defaults: MACs 02:c7:00:00:00:0a / 0b, IPv4, server 192.168.199.1:80. */
void ctgen_init(struct ctgen *g, bool ipv6);
static inline enum ctgen_side_id ctgen_side(int step)
{
	return (step == 1 || step == 4 || step == 5) ? CTGEN_B : CTGEN_A;
}
/* Writes the frame of connection c, step s (0..6) to buf (at least
 * CTGEN_FRAME_MAX bytes); returns its length. */
unsigned ctgen_frame(const struct ctgen *g, uint64_t c, int step, uint8_t *buf);
/* Which connection and step a received frame is (0), or -1 if it is not
 * one of ours (other MACs, not TCP, other server). */
int ctgen_check(const struct ctgen *g, const uint8_t *f, unsigned len, uint64_t *c, int *step);
/* The TCP flags of a step. */
uint8_t ctgen_flags(int step);

#endif
