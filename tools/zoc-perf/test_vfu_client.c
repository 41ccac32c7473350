/* SPDX-License-Identifier: MIT */
/*
 * test_vfu_client.c - zoc-perf's vfio-user client against hostile replies.
 *
 * Each test writes the server's side of the conversation into one end of a
 * socketpair before the client call (the client's requests wait unread in
 * the same socket), then checks what the client made of it: well-formed
 * replies are used, malformed ones fail with -EPROTO and a message, and a
 * protocol error closes the connection.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "vfu_client.h"

#define T_MS 300

struct pair {
	int cli, srv;
	struct zoc_vfuc *v;
};

/* Writes one message to the server end: header fields, payload, fds. */
static void put(int srv, uint16_t id, uint16_t cmd, uint32_t size, uint32_t flags, uint32_t err,
		const void *p, size_t len, const int *fds, int nfds)
{
	uint32_t h[4] = { (uint32_t)id | (uint32_t)cmd << 16, size, flags, err };
	struct iovec iov[2] = { { h, 16 }, { (void *)p, len } };
	union {
		char b[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr a;
	} cb;
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };

	if (nfds) {
		struct cmsghdr *c;

		memset(&cb, 0, sizeof(cb));
		m.msg_control = cb.b;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	assert_int_equal(sendmsg(srv, &m, 0), (ssize_t)(16 + len));
}

/* A well-formed reply. */
static void reply(int srv, uint16_t id, uint16_t cmd, const void *p, size_t len)
{
	put(srv, id, cmd, (uint32_t)(16 + len), 1, 0, p, len, NULL, 0);
}

static void version_reply(int srv, uint16_t id, uint16_t major, uint16_t minor, const char *json)
{
	uint8_t b[512];
	size_t n = 4;

	memcpy(b, &major, 2);
	memcpy(b + 2, &minor, 2);
	if (json) {
		n += strlen(json) + 1;
		memcpy(b + 4, json, strlen(json) + 1);
	}
	reply(srv, id, 1, b, n);
}

static void pair_open(struct pair *p)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	p->cli = sv[0];
	p->srv = sv[1];
	p->v = NULL;
}

/* A connection negotiated with defaults; the next request has id 2. */
static void pair_up(struct pair *p)
{
	const char *why;

	pair_open(p);
	version_reply(p->srv, 1, 0, 0, NULL);
	p->v = zoc_vfuc_attach(p->cli, T_MS, &why);
	assert_non_null(p->v);
}

static void pair_close(struct pair *p)
{
	zoc_vfuc_close(p->v);
	close(p->srv);
}

static void assert_err(struct zoc_vfuc *v, int ret, int want, const char *needle)
{
	if (ret != want || !strstr(zoc_vfuc_error(v), needle))
		fail_msg("got %d (%s), want %d with '%s'", ret, zoc_vfuc_error(v), want, needle);
}

/* ------------------------------------------------------------------ VERSION */

static void test_version_defaults_and_caps(void **state)
{
	struct pair p;
	const char *why;

	(void)state;
	pair_up(&p);
	assert_int_equal(zoc_vfuc_caps(p.v)->max_msg_fds, 1);
	assert_int_equal(zoc_vfuc_caps(p.v)->max_data_xfer_size, 1048576);
	assert_int_equal(zoc_vfuc_caps(p.v)->max_dma_maps, 65535);
	pair_close(&p);

	pair_open(&p);
	version_reply(p.srv, 1, 0, 0,
		      "{\"capabilities\":{\"max_msg_fds\":4,\"max_data_xfer_size\":65536,"
		      "\"pgsizes\":2101248,\"max_dma_maps\":8,\"write_multiple\":true,\"new\":[1]}}");
	p.v = zoc_vfuc_attach(p.cli, T_MS, &why);
	assert_non_null(p.v);
	assert_int_equal(zoc_vfuc_caps(p.v)->max_msg_fds, 4);
	assert_int_equal(zoc_vfuc_caps(p.v)->max_data_xfer_size, 65536);
	assert_int_equal(zoc_vfuc_caps(p.v)->max_dma_maps, 8);
	assert_true(zoc_vfuc_caps(p.v)->write_multiple);
	pair_close(&p);
}

static void test_version_bad(void **state)
{
	static const struct {
		uint16_t major, minor;
		const char *json;
		const char *needle;
	} cases[] = {
		{ 1, 0, NULL, "answered version 1.0" },
		{ 0, 3, NULL, "minor version 3 above" },
		{ 0, 0, "{\"capabilities\":", "bad JSON" },
		{ 0, 0, "[1,2]", "not an object" },
		{ 0, 0, "{\"capabilities\":7}", "not an object" },
		{ 0, 0, "{\"capabilities\":{\"max_msg_fds\":\"16\"}}", "max_msg_fds is not" },
		{ 0, 0, "{\"capabilities\":{\"max_msg_fds\":-1}}", "max_msg_fds is not" },
		{ 0, 0, "{\"capabilities\":{\"pgsizes\":8192}}", "lacks 4 KiB pages" },
		{ 0, 0, "{\"capabilities\":{\"max_data_xfer_size\":4}}", "too small" },
		{ 0, 0, "{\"capabilities\":{\"write_multiple\":1}}", "not a boolean" },
	};
	const char *why;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pair p;

		pair_open(&p);
		version_reply(p.srv, 1, cases[i].major, cases[i].minor, cases[i].json);
		errno = 0;
		assert_null(zoc_vfuc_attach(p.cli, T_MS, &why));
		assert_int_equal(errno, EPROTO);
		if (!strstr(why, cases[i].needle))
			fail_msg("case %zu: '%s' lacks '%s'", i, why, cases[i].needle);
		close(p.srv);
	}
	/* a 2-byte payload, a NUL inside the JSON, an error reply, no reply */
	{
		struct pair p;
		uint8_t b[16] = { 0, 0, 0, 0, '{', '}', 0, '{', '}', 0 };

		pair_open(&p);
		reply(p.srv, 1, 1, b, 2);
		assert_null(zoc_vfuc_attach(p.cli, T_MS, &why));
		assert_non_null(strstr(why, "2 bytes"));
		close(p.srv);

		pair_open(&p);
		reply(p.srv, 1, 1, b, 10);
		assert_null(zoc_vfuc_attach(p.cli, T_MS, &why));
		assert_non_null(strstr(why, "NUL inside"));
		close(p.srv);

		pair_open(&p);
		put(p.srv, 1, 1, 16, 1 | 0x20, ENOTSUP, NULL, 0, NULL, 0);
		assert_null(zoc_vfuc_attach(p.cli, T_MS, &why));
		assert_int_equal(errno, ENOTSUP);
		close(p.srv);

		pair_open(&p);
		assert_null(zoc_vfuc_attach(p.cli, T_MS, &why));
		assert_int_equal(errno, ETIMEDOUT);
		close(p.srv);

		pair_open(&p);
		close(p.srv);
		assert_null(zoc_vfuc_attach(p.cli, T_MS, &why));
	}
}

/* ------------------------------------------------------------------ headers */

static void test_header_bad(void **state)
{
	uint32_t good[4] = { 16, 3, 9, 5 };
	int fd = dup(0);
	struct {
		const char *what;
		uint16_t id, cmd;
		uint32_t size, flags, err;
		size_t len;
		int nfds;
		int want;
		const char *needle;
	} cases[] = {
		{ "size below header", 2, 4, 8, 1, 0, 0, 0, -EPROTO, "shorter than its header" },
		{ "size huge", 2, 4, 0x7fffffff, 1, 0, 0, 0, -EPROTO, "too long" },
		{ "type 2", 2, 4, 32, 2, 0, 16, 0, -EPROTO, "neither command nor reply" },
		{ "wrong id", 7, 4, 32, 1, 0, 16, 0, -EPROTO, "reply id 7" },
		{ "wrong command", 2, 5, 32, 1, 0, 16, 0, -EPROTO, "does not match request" },
		{ "error with payload", 2, 4, 32, 0x21, EIO, 16, 0, -EPROTO, "carry only the header" },
		{ "error", 2, 4, 16, 0x21, EPERM, 0, 0, -EPERM, "Operation not permitted" },
		{ "error without errno", 2, 4, 16, 0x21, 0, 0, 0, -EIO, "DEVICE_GET_INFO" },
		{ "unexpected fd", 2, 4, 32, 1, 0, 16, 1, -EPROTO, "carried 1 file descriptors" },
		{ "payload too long", 2, 4, 36, 1, 0, 20, 0, -EPROTO, "expected at most 16" },
		{ "payload too short", 2, 4, 28, 1, 0, 12, 0, -EPROTO, "expected 16" },
	};

	(void)state;
	assert_true(fd >= 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct zoc_vfuc_device_info di;
		uint8_t pl[32] = { 0 };
		struct pair p;
		int ret;

		memcpy(pl, good, 16);
		pair_up(&p);
		put(p.srv, cases[i].id, cases[i].cmd, cases[i].size, cases[i].flags, cases[i].err, pl,
		    cases[i].len, &fd, cases[i].nfds);
		ret = zoc_vfuc_device_info(p.v, &di);
		if (ret != cases[i].want || !strstr(zoc_vfuc_error(p.v), cases[i].needle))
			fail_msg("%s: got %d (%s)", cases[i].what, ret, zoc_vfuc_error(p.v));
		if (cases[i].want == -EPROTO) /* the connection is closed after a protocol error */
			assert_int_equal(zoc_vfuc_device_info(p.v, &di), -ENOTCONN);
		pair_close(&p);
	}
	/* and the good one */
	{
		struct zoc_vfuc_device_info di;
		struct pair p;

		pair_up(&p);
		reply(p.srv, 2, 4, good, 16);
		assert_int_equal(zoc_vfuc_device_info(p.v, &di), 0);
		assert_int_equal(di.num_regions, 9);
		assert_int_equal(di.num_irqs, 5);
		pair_close(&p);
	}
	/* no reply at all: a timeout, and the connection is closed */
	{
		struct zoc_vfuc_device_info di;
		struct pair p;

		pair_up(&p);
		assert_err(p.v, zoc_vfuc_device_info(p.v, &di), -ETIMEDOUT, "no reply");
		assert_int_equal(zoc_vfuc_device_info(p.v, &di), -ENOTCONN);
		pair_close(&p);
	}
	close(fd);
}

/* ------------------------------------------------------------ region info */

/* Region info reply: 32-byte info + a sparse cap with the given areas. */
static size_t region_reply(uint8_t *b, uint32_t index, uint32_t flags, uint64_t size,
			   uint32_t cap_off, uint32_t next, uint32_t nr, const uint64_t *areas,
			   uint32_t nareas)
{
	uint32_t argsz, id_ver = 1 | 1u << 16, zero = 0;
	size_t n = 32;

	memset(b, 0, 512);
	memcpy(b + 4, &flags, 4);
	memcpy(b + 8, &index, 4);
	memcpy(b + 12, &cap_off, 4);
	memcpy(b + 16, &size, 8);
	if (flags & 8) {
		memcpy(b + 32, &id_ver, 4);
		memcpy(b + 36, &next, 4);
		memcpy(b + 40, &nr, 4);
		memcpy(b + 44, &zero, 4);
		memcpy(b + 48, areas, 16 * nareas);
		n = 48 + 16 * (size_t)nareas;
	}
	argsz = (uint32_t)n;
	memcpy(b, &argsz, 4);
	return n;
}

static void test_region_info(void **state)
{
	static const uint64_t db[2] = { 0x1000, 0x1000 }, outside[2] = { 0x3000, 0x2000 };
	int fd = dup(0);
	struct {
		const char *what;
		uint32_t flags, cap_off, next, nr;
		const uint64_t *areas;
		int send_fd;
		int want;
		const char *needle;
	} cases[] = {
		{ "sparse ok", 0xf, 32, 0, 1, db, 1, 0, "" },
		{ "cap loops", 0xf, 32, 32, 1, db, 1, -EPROTO, "looping" },
		{ "cap beyond", 0xf, 400, 0, 1, db, 1, -EPROTO, "outside" },
		{ "cap in info", 0xf, 8, 0, 1, db, 1, -EPROTO, "outside" },
		{ "cap misaligned", 0xf, 34, 0, 1, db, 1, -EPROTO, "outside" },
		{ "too many areas", 0xf, 32, 0, 9, db, 1, -EPROTO, "9 areas" },
		{ "areas beyond reply", 0xf, 32, 0, 2, db, 1, -EPROTO, "does not fit" },
		{ "area outside region", 0xf, 32, 0, 1, outside, 1, -EPROTO, "outside the region" },
		{ "mmap without fd", 0xf, 32, 0, 1, db, 0, -EPROTO, "0 fds" },
		{ "fd without mmap", 0x3, 0, 0, 0, db, 1, -EPROTO, "fd without the MMAP flag" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct zoc_vfuc_region_info ri;
		uint8_t b[512];
		struct pair p;
		size_t n = region_reply(b, 0, cases[i].flags, 0x4000, cases[i].cap_off, cases[i].next,
					cases[i].nr, cases[i].areas, 1);
		int ret;

		pair_up(&p);
		put(p.srv, 2, 5, (uint32_t)(16 + n), 1, 0, b, n, &fd, cases[i].send_fd);
		ret = zoc_vfuc_region_info(p.v, 0, &ri);
		if (ret != cases[i].want || !strstr(zoc_vfuc_error(p.v), cases[i].needle))
			fail_msg("%s: got %d (%s)", cases[i].what, ret, zoc_vfuc_error(p.v));
		if (!ret) {
			assert_int_equal(ri.nr_sparse, 1);
			assert_int_equal(ri.sparse[0].offset, 0x1000);
			assert_true(ri.fd >= 0);
			close(ri.fd);
		}
		pair_close(&p);
	}
	/* argsz claims more than was sent; index mismatch */
	{
		struct zoc_vfuc_region_info ri;
		uint8_t b[512];
		struct pair p;
		size_t n = region_reply(b, 0, 3, 0x4000, 0, 0, 0, db, 0);
		uint32_t big = 4096;

		memcpy(b, &big, 4);
		pair_up(&p);
		reply(p.srv, 2, 5, b, n);
		assert_err(p.v, zoc_vfuc_region_info(p.v, 0, &ri), -EPROTO, "needs 4096 bytes");
		pair_close(&p);

		n = region_reply(b, 4, 3, 0x4000, 0, 0, 0, db, 0);
		pair_up(&p);
		reply(p.srv, 2, 5, b, n);
		assert_err(p.v, zoc_vfuc_region_info(p.v, 0, &ri), -EPROTO, "about region 4");
		pair_close(&p);
	}
	close(fd);
}

/* -------------------------------------------------------- region read/write */

static void test_region_rw(void **state)
{
	uint8_t b[32];
	uint64_t off = 0x1c;
	uint32_t region = 0, count = 4, val = 0, bad = 5;
	struct pair p;

	(void)state;
	memcpy(b, &off, 8);
	memcpy(b + 8, &region, 4);
	memcpy(b + 12, &count, 4);
	val = 0x12345678;
	memcpy(b + 16, &val, 4);

	pair_up(&p);
	reply(p.srv, 2, 9, b, 20);
	val = 0;
	assert_int_equal(zoc_vfuc_read32(p.v, 0, 0x1c, &val), 0);
	assert_int_equal(val, 0x12345678);
	reply(p.srv, 3, 10, b, 16);
	assert_int_equal(zoc_vfuc_write32(p.v, 0, 0x1c, 1), 0);
	pair_close(&p);

	pair_up(&p); /* count echo wrong */
	memcpy(b + 12, &bad, 4);
	reply(p.srv, 2, 9, b, 20);
	assert_err(p.v, zoc_vfuc_read32(p.v, 0, 0x1c, &val), -EPROTO, "does not match the request");
	pair_close(&p);

	pair_up(&p); /* data missing */
	memcpy(b + 12, &count, 4);
	reply(p.srv, 2, 9, b, 16);
	assert_err(p.v, zoc_vfuc_read32(p.v, 0, 0x1c, &val), -EPROTO, "0 data bytes");
	pair_close(&p);

	pair_up(&p); /* more data than asked */
	reply(p.srv, 2, 9, b, 24);
	assert_err(p.v, zoc_vfuc_read32(p.v, 0, 0x1c, &val), -EPROTO, "payload");
	pair_close(&p);

	pair_up(&p); /* write echo for another offset */
	off = 0x20;
	memcpy(b, &off, 8);
	reply(p.srv, 2, 10, b, 16);
	assert_err(p.v, zoc_vfuc_write32(p.v, 0, 0x1c, 1), -EPROTO, "does not match the request");
	pair_close(&p);

	pair_up(&p); /* write reply with data */
	reply(p.srv, 2, 10, b, 20);
	assert_err(p.v, zoc_vfuc_write32(p.v, 0, 0x1c, 1), -EPROTO, "payload");
	pair_close(&p);
}

/* ------------------------------------------------------------------ DMA */

/* Reads messages the client wrote into the server end; returns the first
 * reply (type 1) found, skipping the client's requests. */
static uint32_t next_client_reply(int srv, uint32_t hdr[4], uint8_t *payload)
{
	for (;;) {
		ssize_t r = recv(srv, hdr, 16, MSG_WAITALL);

		assert_int_equal(r, 16);
		assert_true(hdr[1] >= 16 && hdr[1] - 16 <= 4096);
		if (hdr[1] > 16)
			assert_int_equal(recv(srv, payload, hdr[1] - 16, MSG_WAITALL), (ssize_t)(hdr[1] - 16));
		if ((hdr[2] & 0xf) == 1)
			return hdr[1] - 16;
	}
}

static void test_dma_and_server_commands(void **state)
{
	uint8_t *mem = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t b[64], pl[4096];
	uint32_t h[4];
	uint64_t addr, count;
	struct zoc_vfuc_device_info di;
	uint32_t good[4] = { 16, 3, 9, 5 };
	struct pair p;

	(void)state;
	assert_true(mem != MAP_FAILED);
	pair_up(&p);
	reply(p.srv, 2, 2, NULL, 0);
	assert_int_equal(zoc_vfuc_dma_map(p.v, -1, 0, mem, 0x10000, 8192,
					  VFUC_DMA_READABLE | VFUC_DMA_WRITEABLE), 0);
	/* Before the reply to DEVICE_GET_INFO: a DMA_WRITE into the mapping, a
	 * DMA_READ outside it, a DMA_READ inside, an unknown command. */
	addr = 0x10010;
	count = 8;
	memcpy(b, &addr, 8);
	memcpy(b + 8, &count, 8);
	memcpy(b + 16, "ABCDEFGH", 8);
	put(p.srv, 40, 12, 16 + 24, 0, 0, b, 24, NULL, 0);
	addr = 0x10000 + 8190;
	memcpy(b, &addr, 8);
	put(p.srv, 41, 11, 16 + 16, 0, 0, b, 16, NULL, 0);
	addr = 0x10010;
	memcpy(b, &addr, 8);
	put(p.srv, 42, 11, 16 + 16, 0, 0, b, 16, NULL, 0);
	put(p.srv, 43, 77, 16, 0, 0, NULL, 0, NULL, 0);
	reply(p.srv, 3, 4, good, 16);
	assert_int_equal(zoc_vfuc_device_info(p.v, &di), 0);
	assert_memory_equal(mem + 0x10, "ABCDEFGH", 8);

	assert_int_equal(next_client_reply(p.srv, h, pl), 16); /* DMA_WRITE: address + count (8 + 8) */
	assert_int_equal(h[0] & 0xffff, 40);
	assert_int_equal(h[2] & 0x20, 0);
	assert_int_equal(next_client_reply(p.srv, h, pl), 0); /* out of range */
	assert_int_equal(h[0] & 0xffff, 41);
	assert_int_equal(h[2] & 0x20, 0x20);
	assert_int_equal(h[3], EFAULT);
	assert_int_equal(next_client_reply(p.srv, h, pl), 24);
	assert_int_equal(h[0] & 0xffff, 42);
	assert_memory_equal(pl + 16, "ABCDEFGH", 8);
	assert_int_equal(next_client_reply(p.srv, h, pl), 0);
	assert_int_equal(h[0] & 0xffff, 43);
	assert_int_equal(h[3], ENOSYS);

	/* DMA_UNMAP must echo the entry */
	memset(b, 0, 24);
	addr = 0x10000;
	count = 4096;
	memcpy(b + 8, &addr, 8);
	memcpy(b + 16, &count, 8);
	reply(p.srv, 4, 3, b, 24);
	assert_err(p.v, zoc_vfuc_dma_unmap(p.v, 0x10000, 8192), -EPROTO, "original DMA entry");
	pair_close(&p);

	/* a DMA_WRITE whose count disagrees with its payload */
	pair_up(&p);
	addr = 0x10010;
	count = 100;
	memcpy(b, &addr, 8);
	memcpy(b + 8, &count, 8);
	put(p.srv, 40, 12, 16 + 24, 0, 0, b, 24, NULL, 0);
	assert_err(p.v, zoc_vfuc_device_info(p.v, &di), -EPROTO, "DMA_WRITE of 100 bytes");
	pair_close(&p);
	munmap(mem, 8192);
}

/* ----------------------------------------------------------- posted writes */

static void test_posted_writes(void **state)
{
	struct zoc_vfuc_device_info di;
	uint32_t good[4] = { 16, 3, 9, 5 }, val = 7;
	struct pair p;

	(void)state;
	/* A successful reply to a posted write (id 2) is skipped. */
	pair_up(&p);
	assert_int_equal(zoc_vfuc_region_write_posted(p.v, 0, 0x1000, &val, 4), 0);
	reply(p.srv, 2, 10, NULL, 0);
	reply(p.srv, 3, 4, good, 16);
	assert_int_equal(zoc_vfuc_device_info(p.v, &di), 0);
	/* Once acknowledged, a late reply with that id is a protocol error. */
	reply(p.srv, 2, 10, NULL, 0);
	reply(p.srv, 4, 4, good, 16);
	assert_err(p.v, zoc_vfuc_device_info(p.v, &di), -EPROTO, "reply id 2");
	pair_close(&p);

	/* An error reply to a posted write fails the next call. */
	pair_up(&p);
	assert_int_equal(zoc_vfuc_region_write_posted(p.v, 0, 0x1000, &val, 4), 0);
	put(p.srv, 2, 10, 16, 0x21, EINVAL, NULL, 0, NULL, 0);
	reply(p.srv, 3, 4, good, 16);
	assert_err(p.v, zoc_vfuc_device_info(p.v, &di), -EINVAL, "posted REGION_WRITE");
	pair_close(&p);

	/* Posted writes are registers only. */
	pair_up(&p);
	{
		uint8_t big[16] = { 0 };

		assert_int_equal(zoc_vfuc_region_write_posted(p.v, 0, 0, big, 16), -EINVAL);
	}
	pair_close(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version_defaults_and_caps),
		cmocka_unit_test(test_version_bad),
		cmocka_unit_test(test_header_bad),
		cmocka_unit_test(test_region_info),
		cmocka_unit_test(test_region_rw),
		cmocka_unit_test(test_dma_and_server_commands),
		cmocka_unit_test(test_posted_writes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
