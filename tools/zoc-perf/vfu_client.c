/* SPDX-License-Identifier: MIT */
/*
 * vfu_client.c - vfio-user client (see vfu_client.h). Wire formats from
 * QEMU docs/interop/vfio-user.rst; all data in host byte order.
 */
#include "vfu_client.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "core/util.h"

#define HDR_SIZE 16
#define FLAG_TYPE_MASK 0xfu
#define FLAG_TYPE_CMD 0x0u
#define FLAG_TYPE_REPLY 0x1u
#define FLAG_NO_REPLY (1u << 4)
#define FLAG_ERROR (1u << 5)

#define MAX_DMA 16
/* Largest message accepted from the server: region info with capabilities
 * and reads are small; DMA_WRITE carries at most our max_data_xfer_size. */
#define OUR_MAX_XFER (1u << 20)
#define MAX_MSG (HDR_SIZE + 64 + OUR_MAX_XFER)
#define OUR_MAX_FDS 16

struct hdr {
	uint16_t id;
	uint16_t cmd;
	uint32_t size;
	uint32_t flags;
	uint32_t error;
};
_Static_assert(sizeof(struct hdr) == HDR_SIZE, "vfio-user header is 16 bytes");

struct dma_map {
	uint8_t *va;
	uint64_t iova, size;
	uint32_t flags;
};

struct zoc_vfuc {
	int fd;
	int timeout_ms;
	uint16_t next_id;
	uint64_t nmsgs;
	/* Posted (No_reply) writes since the last reply: ids [posted_first,
	 * posted_first + nposted). A reply to one of them is tolerated if it
	 * is not an error; the next reply to a request acknowledges them all
	 * (the server processes commands in order). */
	uint16_t posted_first;
	uint32_t nposted;
	struct zoc_vfuc_caps caps;
	struct dma_map dma[MAX_DMA];
	unsigned ndma;
	uint8_t *rx;   /* MAX_MSG bytes */
	uint64_t dma_served; /* DMA_READ / DMA_WRITE served */
	char err[512];
};

static const char *cmd_name(unsigned cmd)
{
	static const char *const names[] = {
		[VFUC_VERSION] = "VERSION",
		[VFUC_DMA_MAP] = "DMA_MAP",
		[VFUC_DMA_UNMAP] = "DMA_UNMAP",
		[VFUC_DEVICE_GET_INFO] = "DEVICE_GET_INFO",
		[VFUC_DEVICE_GET_REGION_INFO] = "DEVICE_GET_REGION_INFO",
		[VFUC_DEVICE_GET_REGION_IO_FDS] = "DEVICE_GET_REGION_IO_FDS",
		[VFUC_DEVICE_GET_IRQ_INFO] = "DEVICE_GET_IRQ_INFO",
		[VFUC_DEVICE_SET_IRQS] = "DEVICE_SET_IRQS",
		[VFUC_REGION_READ] = "REGION_READ",
		[VFUC_REGION_WRITE] = "REGION_WRITE",
		[VFUC_DMA_READ] = "DMA_READ",
		[VFUC_DMA_WRITE] = "DMA_WRITE",
		[VFUC_DEVICE_RESET] = "DEVICE_RESET",
		[VFUC_REGION_WRITE_MULTI] = "REGION_WRITE_MULTI",
	};

	if (cmd < sizeof(names) / sizeof(names[0]) && names[cmd])
		return names[cmd];
	return "unknown";
}

__attribute__((format(printf, 3, 4))) static int fail(struct zoc_vfuc *v, int err,
						      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v->err, sizeof(v->err), fmt, ap);
	va_end(ap);
	return err;
}

const char *zoc_vfuc_error(const struct zoc_vfuc *v)
{
	return v->err;
}

const struct zoc_vfuc_caps *zoc_vfuc_caps(const struct zoc_vfuc *v)
{
	return &v->caps;
}

uint64_t zoc_vfuc_messages(const struct zoc_vfuc *v)
{
	return v->nmsgs;
}

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* Sends header + payload (+ fds with the first byte). */
static int send_msg(struct zoc_vfuc *v, const struct hdr *h, const void *payload, size_t len,
		    const int *fds, size_t nfds)
{
	struct iovec iov[2] = {
		{ .iov_base = (void *)h, .iov_len = HDR_SIZE },
		{ .iov_base = (void *)payload, .iov_len = len },
	};
	union {
		char buf[CMSG_SPACE(sizeof(int) * VFUC_MAX_IRQ_FDS)];
		struct cmsghdr align;
	} cbuf;
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	size_t total = HDR_SIZE + len, sent = 0;

	if (nfds > VFUC_MAX_IRQ_FDS)
		return fail(v, -EINVAL, "internal: %zu fds in one message", nfds);
	if (nfds) {
		struct cmsghdr *c;

		memset(&cbuf, 0, sizeof(cbuf));
		m.msg_control = cbuf.buf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	while (sent < total) {
		ssize_t r = sendmsg(v->fd, &m, MSG_NOSIGNAL);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd p = { .fd = v->fd, .events = POLLOUT };

				if (poll(&p, 1, v->timeout_ms) == 0)
					return fail(v, -ETIMEDOUT,
						    "server did not take a %s message within %d ms",
						    cmd_name(h->cmd), v->timeout_ms);
				continue;
			}
			return fail(v, -errno, "sending %s: %s", cmd_name(h->cmd), strerror(errno));
		}
		sent += (size_t)r;
		m.msg_control = NULL; /* fds went with the first byte */
		m.msg_controllen = 0;
		/* Skip what was sent in the iovecs. */
		while (m.msg_iovlen && (size_t)r >= m.msg_iov[0].iov_len) {
			r -= (ssize_t)m.msg_iov[0].iov_len;
			m.msg_iov++;
			m.msg_iovlen--;
		}
		if (m.msg_iovlen) {
			m.msg_iov[0].iov_base = (char *)m.msg_iov[0].iov_base + r;
			m.msg_iov[0].iov_len -= (size_t)r;
		}
	}
	return 0;
}

/* Reads exactly len bytes; fds that arrive are appended to fds[*nfds]
 * (at most max; more is a protocol error, the extra ones are closed). */
static int recv_exact(struct zoc_vfuc *v, void *buf, size_t len, int *fds, size_t *nfds,
		      size_t max)
{
	size_t got = 0;

	while (got < len) {
		union {
			char buf[CMSG_SPACE(sizeof(int) * OUR_MAX_FDS)];
			struct cmsghdr align;
		} cbuf;
		struct iovec iov = { .iov_base = (char *)buf + got, .iov_len = len - got };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf,
				    .msg_controllen = sizeof(cbuf.buf) };
		struct pollfd p = { .fd = v->fd, .events = POLLIN };
		int pr = poll(&p, 1, v->timeout_ms);
		ssize_t r;
		int bad = 0;

		if (pr < 0) {
			if (errno == EINTR)
				continue;
			return fail(v, -errno, "poll on the socket: %s", strerror(errno));
		}
		if (pr == 0)
			return fail(v, -ETIMEDOUT, "no reply from the server within %d ms",
				    v->timeout_ms);
		r = recvmsg(v->fd, &m, MSG_CMSG_CLOEXEC);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			if (errno == ECONNRESET)
				return fail(v, -ECONNRESET, "the server reset the connection");
			return fail(v, -errno, "receiving from the server: %s", strerror(errno));
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
			size_t n;
			int tmp[OUR_MAX_FDS];

			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			if (n > OUR_MAX_FDS)
				n = OUR_MAX_FDS;
			memcpy(tmp, CMSG_DATA(c), n * sizeof(int));
			for (size_t i = 0; i < n; i++) {
				if (*nfds < max)
					fds[(*nfds)++] = tmp[i];
				else {
					close(tmp[i]);
					bad = 1;
				}
			}
		}
		if (m.msg_flags & MSG_CTRUNC)
			bad = 1;
		if (bad)
			return fail(v, -EPROTO,
				    "server sent more file descriptors than allowed (max_msg_fds %d)",
				    OUR_MAX_FDS);
		if (r == 0)
			return fail(v, -ECONNRESET, "server closed the connection");
		got += (size_t)r;
	}
	return 0;
}

static struct dma_map *dma_find(struct zoc_vfuc *v, uint64_t addr, uint64_t count)
{
	for (unsigned i = 0; i < v->ndma; i++) {
		struct dma_map *d = &v->dma[i];

		if (addr >= d->iova && count <= d->size && addr - d->iova <= d->size - count)
			return d;
	}
	return NULL;
}

static int send_error_reply(struct zoc_vfuc *v, const struct hdr *req, int err)
{
	struct hdr r = { .id = req->id, .cmd = req->cmd, .size = HDR_SIZE,
			 .flags = FLAG_TYPE_REPLY | FLAG_ERROR, .error = (uint32_t)err };

	return send_msg(v, &r, NULL, 0, NULL, 0);
}

/* A command from the server (h, payload of plen bytes in v->rx + HDR_SIZE). */
static int serve_server_cmd(struct zoc_vfuc *v, const struct hdr *h, size_t plen)
{
	const uint8_t *p = v->rx + HDR_SIZE;
	uint64_t addr, count;
	struct dma_map *d;

	if (h->cmd != VFUC_DMA_READ && h->cmd != VFUC_DMA_WRITE)
		return send_error_reply(v, h, ENOSYS);
	if (plen < 16)
		return fail(v, -EPROTO, "server sent %s with a %zu-byte payload (needs 16)",
			    cmd_name(h->cmd), plen);
	memcpy(&addr, p, 8);
	memcpy(&count, p + 8, 8);
	if (count > OUR_MAX_XFER ||
	    (h->cmd == VFUC_DMA_WRITE && plen != 16 + count) ||
	    (h->cmd == VFUC_DMA_READ && plen != 16))
		return fail(v, -EPROTO, "server sent %s of %llu bytes with a %zu-byte payload",
			    cmd_name(h->cmd), (unsigned long long)count, plen);
	d = dma_find(v, addr, count);
	if (!d || !(d->flags & (h->cmd == VFUC_DMA_READ ? VFUC_DMA_READABLE : VFUC_DMA_WRITEABLE))) {
		if (h->flags & FLAG_NO_REPLY)
			return 0;
		return send_error_reply(v, h, EFAULT);
	}
	if (h->cmd == VFUC_DMA_WRITE) {
		/* Reply: address (8) + count (8), per the spec's table. */
		struct hdr r = { .id = h->id, .cmd = h->cmd, .size = HDR_SIZE + 16,
				 .flags = FLAG_TYPE_REPLY };
		uint8_t pl[16];

		memcpy(d->va + (addr - d->iova), p + 16, count);
		v->dma_served++;
		if (h->flags & FLAG_NO_REPLY)
			return 0;
		memcpy(pl, &addr, 8);
		memcpy(pl + 8, &count, 8);
		return send_msg(v, &r, pl, sizeof(pl), NULL, 0);
	} else {
		struct hdr r = { .id = h->id, .cmd = h->cmd, .size = (uint32_t)(HDR_SIZE + 16 + count),
				 .flags = FLAG_TYPE_REPLY };
		uint8_t *pl = malloc(16 + count);
		int ret;

		if (!pl)
			return fail(v, -ENOMEM, "out of memory serving DMA_READ");
		memcpy(pl, &addr, 8);
		memcpy(pl + 8, &count, 8);
		memcpy(pl + 16, d->va + (addr - d->iova), count);
		v->dma_served++;
		ret = send_msg(v, &r, pl, 16 + count, NULL, 0);
		free(pl);
		return ret;
	}
}

static bool is_posted_id(const struct zoc_vfuc *v, uint16_t id)
{
	return v->nposted && (uint16_t)(id - v->posted_first) < v->nposted;
}

/* Reads one whole message into r and v->rx + HDR_SIZE (payload of *plen
 * bytes); fds that came with it go to fds[*nfds]. */
static int recv_one(struct zoc_vfuc *v, struct hdr *r, size_t *plen, int *fds, size_t *nfds)
{
	int ret;

	*nfds = 0;
	ret = recv_exact(v, r, HDR_SIZE, fds, nfds, OUR_MAX_FDS);
	if (ret)
		return ret;
	if (r->size < HDR_SIZE || r->size > MAX_MSG)
		return fail(v, -EPROTO, "server message of %u bytes (command %u, %s) is %s", r->size,
			    r->cmd, cmd_name(r->cmd),
			    r->size < HDR_SIZE ? "shorter than its header" : "too long");
	*plen = r->size - HDR_SIZE;
	return recv_exact(v, v->rx + HDR_SIZE, *plen, fds, nfds, OUR_MAX_FDS);
}

/* A message that is not the reply being waited for: a command from the
 * server (served), or a reply to a posted write (tolerated unless it is an
 * error). 1 if it was one of those, 0 if not, <0 on error. Closes fds if
 * it returns non-zero. */
static int unsolicited(struct zoc_vfuc *v, const struct hdr *r, size_t plen, int *fds,
		       size_t nfds)
{
	if ((r->flags & FLAG_TYPE_MASK) == FLAG_TYPE_CMD) {
		int ret;

		close_fds(fds, nfds);
		ret = serve_server_cmd(v, r, plen);
		return ret ? ret : 1;
	}
	if ((r->flags & FLAG_TYPE_MASK) != FLAG_TYPE_REPLY) {
		close_fds(fds, nfds);
		return fail(v, -EPROTO, "server message type %u (flags 0x%x) is neither command nor reply",
			    r->flags & FLAG_TYPE_MASK, r->flags);
	}
	if (is_posted_id(v, r->id)) {
		/* Not required, but some servers answer posted writes. */
		close_fds(fds, nfds);
		if (r->flags & FLAG_ERROR)
			return fail(v, r->error ? -(int)r->error : -EIO,
				    "server failed a posted %s (id %u): %s", cmd_name(r->cmd), r->id,
				    strerror(r->error ? (int)r->error : EIO));
		return 1;
	}
	return 0;
}

/*
 * One request and its reply. The reply payload is copied to reply (at most
 * reply_max bytes: a longer reply is a protocol error); *reply_len gets its
 * length. Reply fds go to rfds (at most rmax; NULL: none allowed).
 */
static int request(struct zoc_vfuc *v, uint16_t cmd, const void *req, size_t req_len,
		   const int *fds, size_t nfds, void *reply, size_t reply_max, size_t *reply_len,
		   int *rfds, size_t *nrfds, size_t rmax)
{
	struct hdr h = { .id = v->next_id++, .cmd = cmd, .size = (uint32_t)(HDR_SIZE + req_len),
			 .flags = FLAG_TYPE_CMD };
	int ret;

	if (nrfds)
		*nrfds = 0;
	if (v->fd < 0)
		return fail(v, -ENOTCONN, "not connected (an earlier error closed the connection)");
	ret = send_msg(v, &h, req, req_len, fds, nfds);
	if (ret)
		return ret;
	v->nmsgs++;
	for (;;) {
		struct hdr r;
		int tmpfds[OUR_MAX_FDS];
		size_t ntmp = 0, plen = 0;

		ret = recv_one(v, &r, &plen, tmpfds, &ntmp);
		if (ret)
			goto out_fds;
		if (r.id != h.id || (r.flags & FLAG_TYPE_MASK) != FLAG_TYPE_REPLY) {
			ret = unsolicited(v, &r, plen, tmpfds, ntmp);
			if (ret < 0)
				return ret;
			if (ret > 0)
				continue;
		}
		if (r.id != h.id || r.cmd != cmd) {
			ret = fail(v, -EPROTO,
				   "reply id %u command %u (%s) does not match request id %u command %u (%s)",
				   r.id, r.cmd, cmd_name(r.cmd), h.id, cmd, cmd_name(cmd));
			goto out_fds;
		}
		if (r.flags & FLAG_ERROR) {
			int e = r.error ? (int)r.error : EIO;

			close_fds(tmpfds, ntmp);
			if (plen)
				return fail(v, -EPROTO,
					    "server failed %s (%s) and sent a %zu-byte payload with the error reply (spec: error replies carry only the header)",
					    cmd_name(cmd), strerror(e), plen);
			return fail(v, -e, "server failed %s: %s (errno %u)", cmd_name(cmd),
				    strerror(e), r.error);
		}
		if (ntmp > (rfds ? rmax : 0)) {
			ret = fail(v, -EPROTO, "reply to %s carried %zu file descriptors (expected at most %zu)",
				   cmd_name(cmd), ntmp, rfds ? rmax : 0);
			goto out_fds;
		}
		if (plen > reply_max) {
			ret = fail(v, -EPROTO, "reply to %s has a %zu-byte payload (expected at most %zu)",
				   cmd_name(cmd), plen, reply_max);
			goto out_fds;
		}
		if (plen)
			memcpy(reply, v->rx + HDR_SIZE, plen);
		if (reply_len)
			*reply_len = plen;
		v->nposted = 0; /* acknowledged by this reply */
		for (size_t i = 0; i < ntmp; i++)
			rfds[i] = tmpfds[i];
		if (nrfds)
			*nrfds = ntmp;
		return 0;
out_fds:
		close_fds(tmpfds, ntmp);
		return ret;
	}
}

/* Between posted writes: handle whatever the server sent meanwhile without
 * blocking (replies to posted writes, server commands), so a server that
 * answers posted writes never blocks on a full socket. */
static int drain(struct zoc_vfuc *v)
{
	for (;;) {
		struct pollfd p = { .fd = v->fd, .events = POLLIN };
		struct hdr r;
		int tmpfds[OUR_MAX_FDS];
		size_t ntmp = 0, plen = 0;
		int ret;

		if (poll(&p, 1, 0) <= 0)
			return 0;
		ret = recv_one(v, &r, &plen, tmpfds, &ntmp);
		if (ret) {
			close_fds(tmpfds, ntmp);
			return ret;
		}
		ret = unsolicited(v, &r, plen, tmpfds, ntmp);
		if (ret < 0)
			return ret;
		if (ret == 0) {
			close_fds(tmpfds, ntmp);
			return fail(v, -EPROTO, "server sent a reply (id %u, %s) to no request",
				    r.id, cmd_name(r.cmd));
		}
	}
}

/* A protocol error leaves the stream in an unknown state: stop using it. */
static int check(struct zoc_vfuc *v, int ret)
{
	if (ret == -EPROTO || ret == -ETIMEDOUT || ret == -ECONNRESET) {
		if (v->fd >= 0)
			close(v->fd);
		v->fd = -1;
	}
	return ret;
}

int zoc_vfuc_poll(struct zoc_vfuc *v)
{
	if (v->fd < 0)
		return fail(v, -ENOTCONN, "not connected (an earlier error closed the connection)");
	return check(v, drain(v));
}

int zoc_vfuc_fd(const struct zoc_vfuc *v)
{
	return v->fd;
}

uint64_t zoc_vfuc_dma_served(const struct zoc_vfuc *v)
{
	return v->dma_served;
}

static int json_u64(struct zoc_vfuc *v, json_t *caps, const char *key, uint64_t *out)
{
	json_t *j = json_object_get(caps, key);

	if (!j)
		return 0;
	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return fail(v, -EPROTO, "VERSION reply: capability %s is not a non-negative integer", key);
	*out = (uint64_t)json_integer_value(j);
	return 0;
}

static int negotiate(struct zoc_vfuc *v)
{
	char js[256];
	uint8_t req[4 + sizeof(js)], rep[4096 + 4];
	uint16_t major = 0, minor = 0;
	size_t rlen = 0;
	int n, ret;

	n = snprintf(js, sizeof(js),
		     "{\"capabilities\":{\"max_msg_fds\":%d,\"max_data_xfer_size\":%u,"
		     "\"pgsizes\":4096,\"max_dma_maps\":%d}}",
		     OUR_MAX_FDS, OUR_MAX_XFER, MAX_DMA);
	memcpy(req, &major, 2);
	memcpy(req + 2, &minor, 2);
	memcpy(req + 4, js, (size_t)n + 1);
	ret = request(v, VFUC_VERSION, req, 4 + (size_t)n + 1, NULL, 0, rep, sizeof(rep) - 1,
		      &rlen, NULL, NULL, 0);
	if (ret)
		return ret;
	if (rlen < 4)
		return fail(v, -EPROTO, "VERSION reply payload of %zu bytes (needs at least 4)", rlen);
	memcpy(&v->caps.major, rep, 2);
	memcpy(&v->caps.minor, rep + 2, 2);
	v->caps.max_msg_fds = 1;
	v->caps.max_data_xfer_size = 1048576;
	v->caps.max_dma_maps = 65535;
	v->caps.pgsizes = 4096;
	if (v->caps.major != 0)
		return fail(v, -EPROTO, "server answered version %u.%u to our 0.0 (spec: same major)",
			    v->caps.major, v->caps.minor);
	if (v->caps.minor > minor)
		return fail(v, -EPROTO, "server answered minor version %u above our %u",
			    v->caps.minor, minor);
	if (rlen > 4) {
		json_error_t je;
		json_t *root, *caps;
		size_t jlen = rlen - 4;
		uint64_t u;

		/* Optional NUL-terminated JSON; tolerate a missing NUL. */
		rep[rlen] = 0;
		if (rep[4 + jlen - 1] == 0)
			jlen--;
		if (memchr(rep + 4, 0, jlen))
			return fail(v, -EPROTO, "VERSION reply: NUL inside the JSON data");
		root = json_loadb((const char *)rep + 4, jlen, 0, &je);
		if (!root)
			return fail(v, -EPROTO, "VERSION reply: bad JSON: %s", je.text);
		if (!json_is_object(root)) {
			json_decref(root);
			return fail(v, -EPROTO, "VERSION reply: JSON is not an object");
		}
		caps = json_object_get(root, "capabilities");
		if (caps && !json_is_object(caps)) {
			json_decref(root);
			return fail(v, -EPROTO, "VERSION reply: \"capabilities\" is not an object");
		}
		if (caps) {
			json_t *wm = json_object_get(caps, "write_multiple");

			u = v->caps.max_msg_fds;
			ret = json_u64(v, caps, "max_msg_fds", &u);
			v->caps.max_msg_fds = (uint32_t)ZOC_MIN(u, UINT32_MAX);
			if (!ret)
				ret = json_u64(v, caps, "max_data_xfer_size", &v->caps.max_data_xfer_size);
			u = v->caps.max_dma_maps;
			if (!ret)
				ret = json_u64(v, caps, "max_dma_maps", &u);
			v->caps.max_dma_maps = (uint32_t)ZOC_MIN(u, UINT32_MAX);
			if (!ret)
				ret = json_u64(v, caps, "pgsizes", &v->caps.pgsizes);
			if (!ret && wm && !json_is_boolean(wm))
				ret = fail(v, -EPROTO, "VERSION reply: write_multiple is not a boolean");
			v->caps.write_multiple = wm && json_is_true(wm);
		}
		json_decref(root);
		if (ret)
			return ret;
	}
	if (v->caps.max_data_xfer_size < 8)
		return fail(v, -EPROTO, "server's max_data_xfer_size %llu is too small for register access",
			    (unsigned long long)v->caps.max_data_xfer_size);
	if (!(v->caps.pgsizes & 4096))
		return fail(v, -EPROTO, "server's pgsizes 0x%llx lacks 4 KiB pages",
			    (unsigned long long)v->caps.pgsizes);
	return 0;
}

struct zoc_vfuc *zoc_vfuc_attach(int fd, int timeout_ms, const char **why)
{
	static char whybuf[1280];
	struct zoc_vfuc *v = calloc(1, sizeof(*v));
	int ret;

	*why = whybuf;
	if (v)
		v->rx = malloc(MAX_MSG);
	if (!v || !v->rx) {
		free(v);
		close(fd);
		snprintf(whybuf, sizeof(whybuf), "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	v->fd = fd;
	v->timeout_ms = timeout_ms;
	v->next_id = 1;
	{
		struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };

		setsockopt(v->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	ret = check(v, negotiate(v));
	if (ret) {
		snprintf(whybuf, sizeof(whybuf), "version negotiation: %s%s", v->err,
			 ret == -ECONNRESET ? " (does the server already have a client? zocd serves one per socket)" : "");
		zoc_vfuc_close(v);
		errno = -ret;
		return NULL;
	}
	return v;
}

struct zoc_vfuc *zoc_vfuc_connect(const char *path, int timeout_ms, const char **why)
{
	static char whybuf[1400];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct zoc_vfuc *v;
	const char *awhy;
	int fd, err;

	*why = whybuf;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(whybuf, sizeof(whybuf), "socket path %s is too long", path);
		errno = ENAMETOOLONG;
		return NULL;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = errno;
		if (fd >= 0)
			close(fd);
		snprintf(whybuf, sizeof(whybuf), "cannot connect to %s: %s", path, strerror(err));
		errno = err;
		return NULL;
	}
	v = zoc_vfuc_attach(fd, timeout_ms, &awhy);
	if (!v) {
		err = errno;
		snprintf(whybuf, sizeof(whybuf), "%s: %s", path, awhy);
		errno = err;
	}
	return v;
}

void zoc_vfuc_close(struct zoc_vfuc *v)
{
	if (!v)
		return;
	if (v->fd >= 0)
		close(v->fd);
	free(v->rx);
	free(v);
}

int zoc_vfuc_dma_map(struct zoc_vfuc *v, int fd, uint64_t fd_offset, void *va, uint64_t iova,
		     uint64_t size, uint32_t flags)
{
	uint8_t req[32];
	uint32_t argsz = 32;
	size_t rlen = 0;
	int ret;

	if (v->ndma >= MAX_DMA || v->ndma >= v->caps.max_dma_maps)
		return fail(v, -ENOSPC, "too many DMA maps (server allows %u)", v->caps.max_dma_maps);
	memcpy(req, &argsz, 4);
	memcpy(req + 4, &flags, 4);
	memcpy(req + 8, &fd_offset, 8);
	memcpy(req + 16, &iova, 8);
	memcpy(req + 24, &size, 8);
	ret = check(v, request(v, VFUC_DMA_MAP, req, sizeof(req), &fd, fd >= 0 ? 1 : 0, NULL, 0,
			       &rlen, NULL, NULL, 0));
	if (ret)
		return ret;
	v->dma[v->ndma++] = (struct dma_map){ .va = va, .iova = iova, .size = size, .flags = flags };
	return 0;
}

int zoc_vfuc_dma_unmap(struct zoc_vfuc *v, uint64_t iova, uint64_t size)
{
	uint8_t req[24], rep[24];
	uint32_t argsz = 24, flags = 0;
	size_t rlen = 0;
	int ret;

	memcpy(req, &argsz, 4);
	memcpy(req + 4, &flags, 4);
	memcpy(req + 8, &iova, 8);
	memcpy(req + 16, &size, 8);
	ret = check(v, request(v, VFUC_DMA_UNMAP, req, sizeof(req), NULL, 0, rep, sizeof(rep),
			       &rlen, NULL, NULL, 0));
	if (ret)
		return ret;
	/* "The server responds with the original DMA entry in the request." */
	if (rlen != sizeof(req) || memcmp(rep + 8, req + 8, 16))
		return check(v, fail(v, -EPROTO,
				     "DMA_UNMAP reply of %zu bytes is not the request's entry (spec: the server responds with the original DMA entry)",
				     rlen));
	for (unsigned i = 0; i < v->ndma; i++)
		if (v->dma[i].iova == iova && v->dma[i].size == size) {
			v->dma[i] = v->dma[--v->ndma];
			break;
		}
	return 0;
}

int zoc_vfuc_device_info(struct zoc_vfuc *v, struct zoc_vfuc_device_info *out)
{
	uint32_t req[4] = { 16, 0, 0, 0 }, rep[4];
	size_t rlen = 0;
	int ret;

	ret = check(v, request(v, VFUC_DEVICE_GET_INFO, req, sizeof(req), NULL, 0, rep,
			       sizeof(rep), &rlen, NULL, NULL, 0));
	if (ret)
		return ret;
	if (rlen != 16)
		return check(v, fail(v, -EPROTO, "DEVICE_GET_INFO reply payload of %zu bytes (expected 16)", rlen));
	if (rep[0] < 16)
		return check(v, fail(v, -EPROTO, "DEVICE_GET_INFO reply argsz %u < 16", rep[0]));
	out->flags = rep[1];
	out->num_regions = rep[2];
	out->num_irqs = rep[3];
	if (!(out->flags & VFUC_DEVICE_FLAGS_PCI))
		return fail(v, -ENODEV, "device is not PCI (DEVICE_GET_INFO flags 0x%x)", out->flags);
	if (out->num_regions < VFUC_REGION_CONFIG + 1)
		return fail(v, -ENODEV, "device has %u regions: no PCI config region (index 7)",
			    out->num_regions);
	return 0;
}

int zoc_vfuc_region_info(struct zoc_vfuc *v, uint32_t index, struct zoc_vfuc_region_info *out)
{
	enum { INFO = 32, MAXR = 4096 };
	uint8_t req[INFO] = { 0 }, rep[MAXR];
	uint32_t argsz = MAXR, rargsz, cap_off, flags, rindex;
	size_t rlen = 0, nfd = 0;
	int fds[2], ret;

	memset(out, 0, sizeof(*out));
	out->fd = -1;
	memcpy(req, &argsz, 4);
	memcpy(req + 8, &index, 4);
	ret = check(v, request(v, VFUC_DEVICE_GET_REGION_INFO, req, sizeof(req), NULL, 0, rep,
			       sizeof(rep), &rlen, fds, &nfd, 1));
	if (ret)
		return ret;
	ret = -EPROTO;
	if (rlen < INFO) {
		fail(v, ret, "GET_REGION_INFO(%u) reply payload of %zu bytes (needs %d)", index, rlen, INFO);
		goto err;
	}
	memcpy(&rargsz, rep, 4);
	memcpy(&flags, rep + 4, 4);
	memcpy(&rindex, rep + 8, 4);
	memcpy(&cap_off, rep + 12, 4);
	memcpy(&out->size, rep + 16, 8);
	memcpy(&out->offset, rep + 24, 8);
	out->index = index;
	out->flags = flags;
	if (rindex != index) {
		fail(v, ret, "GET_REGION_INFO(%u) reply is about region %u", index, rindex);
		goto err;
	}
	if (rargsz > rlen) {
		/* The server needs a bigger buffer than our 4 KiB: refuse. */
		fail(v, ret, "GET_REGION_INFO(%u): server needs %u bytes of reply, sent %zu", index,
		     rargsz, rlen);
		goto err;
	}
	if (rargsz < rlen) {
		fail(v, ret, "GET_REGION_INFO(%u): reply argsz %u smaller than its %zu-byte payload",
		     index, rargsz, rlen);
		goto err;
	}
	if ((flags & VFUC_REGION_FLAG_MMAP) && out->size && nfd != 1) {
		fail(v, ret, "GET_REGION_INFO(%u): MMAP flag set but %zu fds in the reply", index, nfd);
		goto err;
	}
	if (!(flags & VFUC_REGION_FLAG_MMAP) && nfd) {
		fail(v, ret, "GET_REGION_INFO(%u): an fd without the MMAP flag", index);
		goto err;
	}
	if (flags & VFUC_REGION_FLAG_CAPS) {
		/* Walk the capability chain with a hop limit, bounds checked. */
		uint32_t off = cap_off;

		for (int hops = 0; off; hops++) {
			uint16_t id, ver;
			uint32_t next;

			if (hops > 16 || off < INFO || (off & 3) || zoc_range_bad(off, 8, rlen)) {
				fail(v, ret, "GET_REGION_INFO(%u): capability at offset %u outside the %zu-byte reply or looping",
				     index, off, rlen);
				goto err;
			}
			memcpy(&id, rep + off, 2);
			memcpy(&ver, rep + off + 2, 2);
			memcpy(&next, rep + off + 4, 4);
			if (id == 1 /* VFIO_REGION_INFO_CAP_SPARSE_MMAP */) {
				uint32_t nr;

				if (zoc_range_bad(off, 16, rlen)) {
					fail(v, ret, "GET_REGION_INFO(%u): truncated sparse mmap capability", index);
					goto err;
				}
				memcpy(&nr, rep + off + 8, 4);
				if (nr > VFUC_MAX_SPARSE ||
				    zoc_range_bad(off + 16, (uint64_t)nr * 16, rlen)) {
					fail(v, ret, "GET_REGION_INFO(%u): sparse mmap capability with %u areas does not fit",
					     index, nr);
					goto err;
				}
				out->nr_sparse = nr;
				for (uint32_t i = 0; i < nr; i++) {
					memcpy(&out->sparse[i].offset, rep + off + 16 + 16 * i, 8);
					memcpy(&out->sparse[i].size, rep + off + 24 + 16 * i, 8);
					if (zoc_range_bad(out->sparse[i].offset, out->sparse[i].size,
							      out->size)) {
						fail(v, ret, "GET_REGION_INFO(%u): sparse area %u [0x%llx+0x%llx] outside the region of 0x%llx bytes",
						     index, i, (unsigned long long)out->sparse[i].offset,
						     (unsigned long long)out->sparse[i].size,
						     (unsigned long long)out->size);
						goto err;
					}
				}
			}
			(void)ver;
			off = next;
		}
	}
	if (nfd)
		out->fd = fds[0];
	return 0;
err:
	close_fds(fds, nfd);
	return check(v, ret);
}

int zoc_vfuc_irq_info(struct zoc_vfuc *v, uint32_t index, struct zoc_vfuc_irq_info *out)
{
	uint32_t req[4] = { 16, 0, index, 0 }, rep[4];
	size_t rlen = 0;
	int ret;

	ret = check(v, request(v, VFUC_DEVICE_GET_IRQ_INFO, req, sizeof(req), NULL, 0, rep,
			       sizeof(rep), &rlen, NULL, NULL, 0));
	if (ret)
		return ret;
	if (rlen != 16 || rep[2] != index)
		return check(v, fail(v, -EPROTO, "GET_IRQ_INFO(%u) reply of %zu bytes about index %u",
				     index, rlen, rlen >= 12 ? rep[2] : 0));
	out->index = index;
	out->flags = rep[1];
	out->count = rep[3];
	return 0;
}

int zoc_vfuc_set_irqs(struct zoc_vfuc *v, uint32_t index, uint32_t start, uint32_t count,
		      const int *fds)
{
	uint32_t req[5] = { 20, VFUC_IRQ_SET_ACTION_TRIGGER, index, start, count };
	size_t rlen = 0;

	if (count > VFUC_MAX_IRQ_FDS || (count && count > v->caps.max_msg_fds))
		return fail(v, -EINVAL, "%u irq fds in one message (server takes at most %u)",
			    count, v->caps.max_msg_fds);
	req[1] |= count ? VFUC_IRQ_SET_DATA_EVENTFD : VFUC_IRQ_SET_DATA_NONE;
	return check(v, request(v, VFUC_DEVICE_SET_IRQS, req, sizeof(req), fds, count, NULL, 0,
				&rlen, NULL, NULL, 0));
}

int zoc_vfuc_region_read(struct zoc_vfuc *v, uint32_t region, uint64_t off, void *buf,
			 uint32_t len)
{
	uint8_t req[16], *rep;
	size_t rlen = 0;
	uint64_t roff;
	uint32_t rreg, rcount;
	int ret;

	if (len > v->caps.max_data_xfer_size || len > OUR_MAX_XFER)
		return fail(v, -EINVAL, "region read of %u bytes exceeds max_data_xfer_size", len);
	rep = malloc(16 + (size_t)len);
	if (!rep)
		return fail(v, -ENOMEM, "out of memory");
	memcpy(req, &off, 8);
	memcpy(req + 8, &region, 4);
	memcpy(req + 12, &len, 4);
	ret = check(v, request(v, VFUC_REGION_READ, req, sizeof(req), NULL, 0, rep, 16 + (size_t)len,
			       &rlen, NULL, NULL, 0));
	if (ret)
		goto out;
	if (rlen < 16) {
		ret = check(v, fail(v, -EPROTO, "REGION_READ reply payload of %zu bytes", rlen));
		goto out;
	}
	memcpy(&roff, rep, 8);
	memcpy(&rreg, rep + 8, 4);
	memcpy(&rcount, rep + 12, 4);
	if (roff != off || rreg != region || rcount != len || rlen != 16 + (size_t)len) {
		ret = check(v, fail(v, -EPROTO,
				    "REGION_READ reply (region %u offset 0x%llx count %u, %zu data bytes) does not match the request (region %u offset 0x%llx count %u)",
				    rreg, (unsigned long long)roff, rcount, rlen - 16, region,
				    (unsigned long long)off, len));
		goto out;
	}
	memcpy(buf, rep + 16, len);
out:
	free(rep);
	return ret;
}

int zoc_vfuc_region_write(struct zoc_vfuc *v, uint32_t region, uint64_t off, const void *buf,
			  uint32_t len)
{
	uint8_t stackbuf[16 + 64], *req = stackbuf, rep[16];
	size_t rlen = 0;
	uint64_t roff;
	uint32_t rreg, rcount;
	int ret;

	if (len > v->caps.max_data_xfer_size || len > OUR_MAX_XFER)
		return fail(v, -EINVAL, "region write of %u bytes exceeds max_data_xfer_size", len);
	if (len > 64) {
		req = malloc(16 + (size_t)len);
		if (!req)
			return fail(v, -ENOMEM, "out of memory");
	}
	memcpy(req, &off, 8);
	memcpy(req + 8, &region, 4);
	memcpy(req + 12, &len, 4);
	memcpy(req + 16, buf, len);
	ret = check(v, request(v, VFUC_REGION_WRITE, req, 16 + (size_t)len, NULL, 0, rep,
			       sizeof(rep), &rlen, NULL, NULL, 0));
	if (req != stackbuf)
		free(req);
	if (ret)
		return ret;
	if (rlen != 16)
		return check(v, fail(v, -EPROTO, "REGION_WRITE reply payload of %zu bytes (expected 16)", rlen));
	memcpy(&roff, rep, 8);
	memcpy(&rreg, rep + 8, 4);
	memcpy(&rcount, rep + 12, 4);
	if (roff != off || rreg != region || rcount != len)
		return check(v, fail(v, -EPROTO,
				     "REGION_WRITE reply (region %u offset 0x%llx count %u) does not match the request (region %u offset 0x%llx count %u)",
				     rreg, (unsigned long long)roff, rcount, region,
				     (unsigned long long)off, len));
	return 0;
}

int zoc_vfuc_region_write_posted(struct zoc_vfuc *v, uint32_t region, uint64_t off,
				 const void *buf, uint32_t len)
{
	uint8_t req[16 + 8];
	struct hdr h = { .cmd = VFUC_REGION_WRITE, .size = HDR_SIZE + 16 + len,
			 .flags = FLAG_TYPE_CMD | FLAG_NO_REPLY };
	int ret;

	if (len > 8)
		return fail(v, -EINVAL, "posted writes are for registers (at most 8 bytes)");
	/* Bound the unacknowledged backlog (and keep ids from wrapping into
	 * the window): every 4096th write waits for its reply. */
	if (v->nposted >= 4096)
		return zoc_vfuc_region_write(v, region, off, buf, len);
	if (v->fd < 0)
		return fail(v, -ENOTCONN, "not connected (an earlier error closed the connection)");
	memcpy(req, &off, 8);
	memcpy(req + 8, &region, 4);
	memcpy(req + 12, &len, 4);
	memcpy(req + 16, buf, len);
	h.id = v->next_id++;
	ret = check(v, send_msg(v, &h, req, 16 + (size_t)len, NULL, 0));
	if (ret)
		return ret;
	if (!v->nposted)
		v->posted_first = h.id;
	v->nposted++;
	v->nmsgs++;
	if ((v->nposted & 63) == 0)
		return check(v, drain(v));
	return 0;
}

int zoc_vfuc_reset(struct zoc_vfuc *v)
{
	size_t rlen = 0;

	return check(v, request(v, VFUC_DEVICE_RESET, NULL, 0, NULL, 0, NULL, 0, &rlen, NULL,
				NULL, 0));
}

int zoc_vfuc_read32(struct zoc_vfuc *v, uint32_t region, uint64_t off, uint32_t *val)
{
	return zoc_vfuc_region_read(v, region, off, val, 4);
}

int zoc_vfuc_write32(struct zoc_vfuc *v, uint32_t region, uint64_t off, uint32_t val)
{
	return zoc_vfuc_region_write(v, region, off, &val, 4);
}

int zoc_vfuc_read16(struct zoc_vfuc *v, uint32_t region, uint64_t off, uint16_t *val)
{
	return zoc_vfuc_region_read(v, region, off, val, 2);
}

int zoc_vfuc_write16(struct zoc_vfuc *v, uint32_t region, uint64_t off, uint16_t val)
{
	return zoc_vfuc_region_write(v, region, off, &val, 2);
}

int zoc_vfuc_read8(struct zoc_vfuc *v, uint32_t region, uint64_t off, uint8_t *val)
{
	return zoc_vfuc_region_read(v, region, off, val, 1);
}
