/* SPDX-License-Identifier: MIT */
/*
 * fuzz_vhost_user.c - libFuzzer target: a hostile vhost-user front end.
 *
 * The input is a sequence of records, each one message fed through
 * zoc_vu_conn_feed() to a test connection on a fake virtio device:
 *
 *   u8  req      request id (0xfe: a raw 32-bit id follows in the payload;
 *                0xff: not a message, a guest write into ring memory)
 *   u8  flags    bits 0-1 version, bit 2 reply, bit 3 need-reply (as on the
 *                wire); bit 6: the device stops queues asynchronously for
 *                this message; bit 7: the header's size lies (+1)
 *   u8  fdspec   bits 0-3 number of fds (0-15), bits 4-5 their kind:
 *                0 guest memory (a dup of the memfd below), 1 eventfd,
 *                2 a fresh 4 KiB memfd, 3 alternate 0/1/2
 *   u16 len      payload length (little endian), clipped to what is left
 *   u8  payload[len]
 *
 * Guest memory is one 256 KiB memfd, zeroed for every input; a region whose
 * fd is "guest memory" maps it, so rings placed inside it really start and
 * the device pops (and completes) what the guest writes there. Replies are
 * read back, with their fds, after every message. After each input the
 * connection is destroyed and every fd must be closed and every queue
 * stopped, or the target aborts.
 *
 * Seeds: tests/fuzz/gen_vhost_user_corpus.py writes tests/fuzz/corpus/vhost_user/.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "link/vhost_user.h"
#include "virtio/virtio.h"
#include "virtio/virtio_dev.h"
#include "virtio/virtqueue.h"

#define GUEST_SIZE (256u << 10)
#define NQ 4
#define MAX_QSIZE 256
#define CONFIG_SIZE 60
#define MAX_FDS 15
#define DEV_FEATURES                                                                   \
	(ZOC_BIT(VIRTIO_F_VERSION_1) | ZOC_BIT(VIRTIO_F_RING_EVENT_IDX) |                \
	 ZOC_BIT(VIRTIO_F_RING_INDIRECT_DESC) | ZOC_BIT(VIRTIO_F_RING_PACKED) | ZOC_BIT(1) | \
	 ZOC_BIT(6) | ZOC_BIT(9))

#define REQ_RAW 0xfe
#define REQ_GUEST_WRITE 0xff

struct fz_dev {
	struct zoc_virtio_dev dev; /* first */
	uint8_t config[CONFIG_SIZE];
	struct zoc_vq *vqs[NQ];
	bool defer;
	zoc_virtio_done_fn done[NQ];
	void *done_arg[NQ];
	unsigned ndone;
};

static struct fz_dev g_dev;
static bool g_verbose;
static unsigned g_nstarts, g_npops, g_nok, g_nmsgs;
static int g_guest_fd = -1;
static uint8_t *g_guest;

static struct fz_dev *fz(struct zoc_virtio_dev *d)
{
	return (struct fz_dev *)d;
}

static void die(const char *what)
{
	fprintf(stderr, "fuzz_vhost_user: %s\n", what);
	abort();
}

static uint64_t fz_get_features(struct zoc_virtio_dev *d)
{
	return DEV_FEATURES;
}

static int fz_set_features(struct zoc_virtio_dev *d, uint64_t f)
{
	return (f & ~DEV_FEATURES) ? -EINVAL : 0;
}

static int fz_get_config(struct zoc_virtio_dev *d, uint8_t *buf, uint32_t off, uint32_t len)
{
	if (off > CONFIG_SIZE || len > CONFIG_SIZE - off)
		die("get_config outside the config space");
	memcpy(buf, fz(d)->config + off, len);
	return 0;
}

static int fz_set_config(struct zoc_virtio_dev *d, const uint8_t *buf, uint32_t off,
			 uint32_t len)
{
	if (off > CONFIG_SIZE || len > CONFIG_SIZE - off)
		return -EINVAL;
	memcpy(fz(d)->config + off, buf, len);
	return 0;
}

/* A little I/O: whatever the guest left on the ring is popped and completed. */
static void serve(struct zoc_vq *vq)
{
	static struct zoc_vq_elem e;

	for (int i = 0; i < 8; i++) {
		int rc = zoc_vq_pop(vq, &e);

		if (rc == 0 || rc == -EIO) /* empty or broken */
			break;
		g_npops++;
		/* Touch every buffer the link's memory table handed out. */
		for (unsigned k = 0; k < (unsigned)e.out_num + e.in_num; k++) {
			volatile uint8_t *p = e.iov[k].iov_base;

			if (!p || !e.iov[k].iov_len)
				continue;
			(void)p[0];
			(void)p[e.iov[k].iov_len - 1];
			if (k >= e.out_num)
				p[0] = 0xd5;
		}
		zoc_vq_push(vq, &e, rc == 1 ? e.in_len : 0);
	}
	zoc_vq_notify(vq);
}

static int fz_queue_start(struct zoc_virtio_dev *d, uint16_t q, struct zoc_vq *vq, int kickfd)
{
	struct fz_dev *f = fz(d);

	if (q >= NQ || !vq)
		die("queue_start: bad queue");
	if (f->vqs[q])
		die("queue_start on a running queue");
	f->vqs[q] = vq;
	g_nstarts++;
	serve(vq);
	return 0;
}

static int fz_queue_stop(struct zoc_virtio_dev *d, uint16_t q, uint32_t *base_out,
			 zoc_virtio_done_fn done, void *arg)
{
	struct fz_dev *f = fz(d);

	if (q >= NQ)
		die("queue_stop: bad queue");
	if (!f->vqs[q])
		return -ENOENT;
	if (base_out)
		*base_out = zoc_vq_get_base(f->vqs[q]);
	zoc_vq_destroy(f->vqs[q]);
	f->vqs[q] = NULL;
	if (f->defer) {
		if (f->ndone >= NQ)
			die("more stops outstanding than queues");
		f->done[f->ndone] = done;
		f->done_arg[f->ndone++] = arg;
		return 0;
	}
	done(arg);
	return 0;
}

static bool fz_queue_running(struct zoc_virtio_dev *d, uint16_t q)
{
	return q < NQ && fz(d)->vqs[q];
}

static const struct zoc_virtio_dev_ops fz_ops = {
	.get_features = fz_get_features,
	.set_features = fz_set_features,
	.get_config = fz_get_config,
	.set_config = fz_set_config,
	.queue_start = fz_queue_start,
	.queue_stop = fz_queue_stop,
	.queue_running = fz_queue_running,
};

/* Completes the stops the device held back. */
static void finish_stops(void)
{
	while (g_dev.ndone) {
		unsigned i = --g_dev.ndone;

		g_dev.done[i](g_dev.done_arg[i]);
	}
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		die("cannot read /proc/self/fd");
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Prints what is open, for an fd leak report. */
static void list_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char path[300], target[256];
		ssize_t n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		n = readlink(path, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = 0;
		fprintf(stderr, "  fd %s -> %s\n", e->d_name, target);
	}
	closedir(d);
}

/* Reads (and drops) every reply, closing the fds they carry. */
static void drain(int fd)
{
	for (;;) {
		uint8_t buf[4096];
		union {
			char b[CMSG_SPACE(sizeof(int) * 8)];
			struct cmsghdr align;
		} u;
		struct iovec iov = {buf, sizeof(buf)};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
				    .msg_controllen = sizeof(u.b)};
		ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n <= 0)
			return;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
				int x;

				memcpy(&x, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				close(x);
			}
		}
	}
}

static int make_fd(unsigned kind)
{
	int fd;

	switch (kind) {
	case 0:
		return fcntl(g_guest_fd, F_DUPFD_CLOEXEC, 0);
	case 1:
		return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	default:
		fd = memfd_create("fz-small", MFD_CLOEXEC);
		if (fd >= 0 && ftruncate(fd, 4096) < 0) {
			close(fd);
			fd = -1;
		}
		return fd;
	}
}

static void init_once(void)
{
	if (g_guest)
		return;
	/* ZOC_FUZZ_VERBOSE=1: the link's log and a line per input (for
	 * checking that seeds really start queues). */
	g_verbose = getenv("ZOC_FUZZ_VERBOSE") != NULL;
	if (!g_verbose)
		zoc_log_set_level(ZOC_LOG_ERR);
	g_guest_fd = memfd_create("fz-guest", MFD_CLOEXEC);
	if (g_guest_fd < 0 || ftruncate(g_guest_fd, GUEST_SIZE) < 0)
		die("guest memfd");
	g_guest = mmap(NULL, GUEST_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, g_guest_fd, 0);
	if (g_guest == MAP_FAILED)
		die("guest mmap");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t msg[12 + 65536];
	struct zoc_vu_conn *c;
	int sp[2], nfds_base;

	init_once();
	memset(g_guest, 0, GUEST_SIZE);
	/* Counted per input: libFuzzer's leak checks keep fds of their own
	 * between inputs. */
	nfds_base = count_fds();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) < 0)
		die("socketpair");
	memset(&g_dev, 0, sizeof(g_dev));
	g_dev.dev.name = "fuzz";
	g_dev.dev.device_id = 2;
	g_dev.dev.max_queues = NQ;
	g_dev.dev.max_queue_size = MAX_QSIZE;
	g_dev.dev.config_size = CONFIG_SIZE;
	g_dev.dev.ops = &fz_ops;
	c = zoc_vu_conn_create_test(&g_dev.dev, sp[0]);
	if (!c)
		die("create");

	while (size >= 5) {
		uint8_t req = data[0], flags = data[1], fdspec = data[2];
		size_t len = (size_t)data[3] | ((size_t)data[4] << 8);
		uint32_t id = req, hsize;
		const uint8_t *p;
		int fds[MAX_FDS];
		size_t nfds = 0;

		data += 5;
		size -= 5;
		if (len > size)
			len = size;
		p = data;
		data += len;
		size -= len;

		if (req == REQ_GUEST_WRITE) {
			uint32_t off;

			if (len < 4)
				continue;
			memcpy(&off, p, 4);
			off %= GUEST_SIZE;
			len -= 4;
			if (len > GUEST_SIZE - off)
				len = GUEST_SIZE - off;
			memcpy(g_guest + off, p + 4, len);
			continue;
		}
		if (req == REQ_RAW && len >= 4) {
			memcpy(&id, p, 4);
			p += 4;
			len -= 4;
		}
		hsize = (uint32_t)len + ((flags & 0x80) ? 1 : 0);
		memcpy(msg, &id, 4);
		{
			uint32_t wflags = flags & 0x0f;

			memcpy(msg + 4, &wflags, 4);
		}
		memcpy(msg + 8, &hsize, 4);
		memcpy(msg + 12, p, len);
		for (unsigned i = 0; i < (fdspec & 0x0f); i++) {
			unsigned kind = (fdspec >> 4) & 3;
			int fd = make_fd(kind == 3 ? i % 3 : kind);

			if (fd >= 0)
				fds[nfds++] = fd;
		}
		g_dev.defer = flags & 0x40;
		/* The link owns the fds from here, whatever it returns. */
		g_nmsgs++;
		if (zoc_vu_conn_feed(c, msg, 12 + len, fds, nfds) == 0)
			g_nok++;
		drain(sp[1]);
		g_dev.defer = false;
		finish_stops();
		drain(sp[1]);
	}

	zoc_vu_conn_destroy_test(c);
	finish_stops();
	drain(sp[1]);
	close(sp[0]);
	close(sp[1]);
	for (unsigned q = 0; q < NQ; q++)
		if (g_dev.vqs[q])
			die("queue still running after the connection was destroyed");
	if (count_fds() != nfds_base) {
		fprintf(stderr, "fuzz_vhost_user: %d fds open, %d before this input:\n",
			count_fds(), nfds_base);
		list_fds();
		die("fd leak");
	}
	if (g_verbose)
		fprintf(stderr, "fuzz_vhost_user: %u messages, %u accepted, %u queue starts, %u pops\n",
			g_nmsgs, g_nok, g_nstarts, g_npops);
	g_nmsgs = g_nok = g_nstarts = g_npops = 0;
	return 0;
}
