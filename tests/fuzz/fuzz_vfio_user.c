/* SPDX-License-Identifier: MIT */
/*
 * fuzz_vfio_user.c - libFuzzer target: a hostile vfio-user client.
 *
 * The input is a sequence of records, each one message fed through
 * zoc_vfu_conn_feed() to a test connection on a real PCI function
 * (src/pci) with a small fake device model: BAR0 a 16 KiB register file
 * whose page 1 is a memfd offered as a sparse mmap area, BAR4 MSI-X with 16
 * vectors, MSI, INTx.
 *
 *   u8  cmd      command (0xff: not a message, a device action, below)
 *   u8  flags    bits 0-5 the header's flags as on the wire; bit 6: the
 *                model completes quiesce/reset later (asynchronously); bit
 *                7: the header's size lies (+1)
 *   u8  fdspec   bits 0-3 number of fds (0-15), bits 4-5 their kind:
 *                0 guest memory (a dup of the memfd below), 1 eventfd,
 *                2 a fresh 4 KiB memfd, 3 alternate 0/1/2
 *   u16 len      payload length (little endian), clipped to what is left
 *   u8  payload[len]
 *
 * Device action (cmd 0xff): payload[0] = MSI-X/MSI vector the device raises;
 * payload[1..8] = an IOVA the device reads and writes 8 bytes at, through
 * the DMA table the link installed (must stay inside what was mapped);
 * payload[9] (if present): also start a copy (zoc_mem_io) at that IOVA:
 * bit 7 the direction (1: to the guest), bits 0-4 its length in 512-byte
 * units (+1). Copies that reach memory mapped without an fd become
 * DMA_READ / DMA_WRITE requests on the socket.
 *
 * Client replies: a record whose flags say "reply" (type 1) answers a
 * server request when fdspec bit 6 is set: its id and command are those of
 * the oldest unanswered request the server sent (bit 7: the payload starts
 * with that request's address and count, then the record's bytes), else
 * the record's own id (the next id, usually a reply to nothing).
 *
 * Every copy must complete (its callback run exactly once) by the time the
 * connection is destroyed.
 *
 * Guest memory is one 256 KiB memfd. Replies are read back, with their fds,
 * after every message. After each input the connection is destroyed; every
 * fd must then be closed, the model's DMA table dropped and the function
 * not left quiesced, or the target aborts.
 *
 * Seeds: tests/fuzz/gen_vfio_user_corpus.py writes tests/fuzz/corpus/vfio_user/.
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
#include "link/dma.h"
#include "link/vfio_user.h"
#include "link/vfio_user_proto.h"
#include "pci/pci.h"

#define GUEST_SIZE (256u << 10)
#define BAR0_SIZE 16384u
#define NVEC 16
#define MAX_FDS 15
#define MAX_DEFERRED 8
#define ACTION 0xff

static struct {
	uint8_t regs[BAR0_SIZE];
	int db_fd;
	bool defer;
	bool quiesced;
	zoc_pci_done_fn done[MAX_DEFERRED];
	void *done_arg[MAX_DEFERRED];
	unsigned ndone;
	struct zoc_mem *mem;
} g_dev;

static bool g_verbose;
static unsigned g_nmsgs, g_nok, g_ndma, g_ncopies, g_ncopies_ok;

/* Copies in flight (the device's side of the slow path). */
#define MAX_COPIES 8
static struct copy {
	struct zoc_mem_io io;
	bool busy;
	uint8_t buf[64 << 10];
} g_copy[MAX_COPIES];

/* Server requests seen on the socket, oldest first. */
#define MAX_REQS 64
static struct {
	uint16_t id, cmd;
	uint64_t addr, count;
} g_req[MAX_REQS];
static unsigned g_nreq;
static int g_guest_fd = -1;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_vfio_user: %s\n", what);
	abort();
}

static int fz_bar_access(struct zoc_pci_func *f, unsigned bar, uint64_t off, void *buf,
			 uint32_t len, bool is_write)
{
	if (bar != 0)
		return -EINVAL;
	if (off > BAR0_SIZE || len > BAR0_SIZE - off)
		die("bar_access outside BAR0");
	if (is_write)
		memcpy(g_dev.regs + off, buf, len);
	else
		memcpy(buf, g_dev.regs + off, len);
	return 0;
}

static int fz_bar_mmap_areas(struct zoc_pci_func *f, unsigned bar, struct zoc_pci_mmap_area *a,
			     int max)
{
	if (bar != 0 || max < 1)
		return 0;
	a[0] = (struct zoc_pci_mmap_area){.offset = 0x1000, .size = 0x1000, .fd = g_dev.db_fd,
					  .fd_offset = 0x1000};
	return 1;
}

static void hold(zoc_pci_done_fn done, void *arg)
{
	if (!g_dev.defer) {
		done(arg);
		return;
	}
	if (g_dev.ndone >= MAX_DEFERRED)
		die("too many asynchronous steps outstanding");
	g_dev.done[g_dev.ndone] = done;
	g_dev.done_arg[g_dev.ndone++] = arg;
}

static void fz_reset(struct zoc_pci_func *f, zoc_pci_done_fn done, void *arg)
{
	if (g_dev.mem)
		zoc_mem_put(g_dev.mem);
	g_dev.mem = NULL;
	memset(g_dev.regs, 0, sizeof(g_dev.regs));
	hold(done, arg);
}

static void fz_quiesce(struct zoc_pci_func *f, zoc_pci_done_fn done, void *arg)
{
	if (g_dev.quiesced)
		die("quiesce while quiesced");
	g_dev.quiesced = true;
	hold(done, arg);
}

static void fz_resume(struct zoc_pci_func *f)
{
	if (!g_dev.quiesced)
		die("resume without quiesce");
	g_dev.quiesced = false;
}

static void fz_set_dma(struct zoc_pci_func *f, struct zoc_mem *mem)
{
	if (mem)
		zoc_mem_get(mem);
	if (g_dev.mem)
		zoc_mem_put(g_dev.mem);
	g_dev.mem = mem;
}

static const struct zoc_pci_ops fz_ops = {
	.bar_access = fz_bar_access,
	.bar_mmap_areas = fz_bar_mmap_areas,
	.reset = fz_reset,
	.quiesce = fz_quiesce,
	.resume = fz_resume,
	.set_dma = fz_set_dma,
};

static const struct zoc_pci_desc fz_desc = {
	.vendor_id = 0x1b36,
	.device_id = 0x0010,
	.class_code = 0x010802,
	.bars = {[0] = {BAR0_SIZE, ZOC_PCI_BAR_MEM64}, [4] = {8192, 0}},
	.msix_vectors = NVEC,
	.msix_bar = 4,
	.msix_table_offset = 0,
	.msix_pba_offset = 0x1000,
	.msi = true,
	.pcie = true,
	.intx_pin = 1,
	.ops = &fz_ops,
};

static void finish_deferred(void)
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

/* Reassembles the server's messages: remembers its requests (DMA_READ /
 * DMA_WRITE), drops replies. */
static uint8_t g_rx[16 + 16 + (1u << 20) + 65536];
static size_t g_rx_len;

static void parse_rx(void)
{
	size_t off = 0;

	while (g_rx_len - off >= sizeof(struct vfu_hdr)) {
		struct vfu_hdr h;

		memcpy(&h, g_rx + off, sizeof(h));
		if (h.size < sizeof(h) || h.size > sizeof(g_rx))
			die("server sent a malformed message");
		if (g_rx_len - off < h.size)
			break;
		if ((h.flags & VFU_F_TYPE_MASK) == VFU_F_TYPE_COMMAND) {
			struct vfu_dma_rw rw;

			if ((h.cmd != VFU_CMD_DMA_READ && h.cmd != VFU_CMD_DMA_WRITE) ||
			    h.size < sizeof(h) + sizeof(rw))
				die("server sent a command other than a well-formed DMA_READ/WRITE");
			memcpy(&rw, g_rx + off + sizeof(h), sizeof(rw));
			if (rw.count == 0 || rw.count > (1u << 20) ||
			    h.size != sizeof(h) + sizeof(rw) + (h.cmd == VFU_CMD_DMA_WRITE ? rw.count : 0))
				die("server DMA request of a bad size");
			if (g_nreq < MAX_REQS)
				g_req[g_nreq++] = (typeof(g_req[0])){h.msg_id, h.cmd, rw.addr, rw.count};
		}
		off += h.size;
	}
	memmove(g_rx, g_rx + off, g_rx_len - off);
	g_rx_len -= off;
}

/* Reads every message the server wrote, closing the fds they carry. */
static void drain(int fd)
{
	for (;;) {
		static uint8_t buf[65536];
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
		if ((size_t)n > sizeof(g_rx) - g_rx_len)
			die("server message larger than any it may send");
		memcpy(g_rx + g_rx_len, buf, (size_t)n);
		g_rx_len += (size_t)n;
		parse_rx();
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

static void copy_cb(struct zoc_mem_io *io, int status)
{
	struct copy *k = io->arg;

	if (!k->busy)
		die("copy completed twice");
	k->busy = false;
	if (!status)
		g_ncopies_ok++;
}

/* The device at work: an interrupt, and 8 bytes of DMA at an IOVA. */
static void device_action(struct zoc_pci_func *f, const uint8_t *p, size_t len)
{
	uint64_t iova;
	volatile uint8_t *h;

	if (len >= 1)
		zoc_pci_irq_raise(f, p[0]);
	if (len < 9 || !g_dev.mem || g_dev.quiesced)
		return;
	memcpy(&iova, p + 1, 8);
	h = zoc_mem_gpa_to_hva(g_dev.mem, iova, 8, true);
	if (!h)
		h = zoc_mem_gpa_to_hva(g_dev.mem, iova, 8, false);
	if (h) {
		g_ndma++;
		(void)h[0];
		(void)h[7];
	}
	if (len >= 10) {
		uint64_t clen = ((uint64_t)(p[9] & 0x1f) + 1) * 512;

		for (unsigned i = 0; i < MAX_COPIES; i++) {
			struct copy *k = &g_copy[i];

			if (k->busy)
				continue;
			k->io = (struct zoc_mem_io){.gpa = iova, .buf = k->buf, .len = clen,
						    .to_guest = p[9] & 0x80, .cb = copy_cb, .arg = k};
			k->busy = true;
			if (zoc_mem_io_submit(g_dev.mem, &k->io) != 0)
				k->busy = false; /* refused at once: no callback */
			else
				g_ncopies++;
			break;
		}
	}
}

static void init_once(void)
{
	if (g_guest_fd >= 0)
		return;
	g_verbose = getenv("ZOC_FUZZ_VERBOSE") != NULL;
	if (!g_verbose)
		zoc_log_set_level(ZOC_LOG_ERR);
	g_guest_fd = memfd_create("fz-guest", MFD_CLOEXEC);
	if (g_guest_fd < 0 || ftruncate(g_guest_fd, GUEST_SIZE) < 0)
		die("guest memfd");
	g_dev.db_fd = memfd_create("fz-doorbells", MFD_CLOEXEC);
	if (g_dev.db_fd < 0 || ftruncate(g_dev.db_fd, 0x2000) < 0)
		die("doorbell memfd");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t msg[16 + 16 + 65536];
	struct zoc_pci_func *f;
	struct zoc_vfu_conn *c;
	uint16_t id = 0;
	int sp[2], nfds_base;

	init_once();
	nfds_base = count_fds();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) < 0)
		die("socketpair");
	memset(g_dev.regs, 0, sizeof(g_dev.regs));
	g_dev.defer = false;
	f = zoc_pci_func_create(&fz_desc, NULL);
	if (!f)
		die("pci function");
	c = zoc_vfu_conn_create_test(f, sp[0]);
	if (!c)
		die("create");

	while (size >= 5) {
		uint8_t cmd = data[0], flags = data[1], fdspec = data[2];
		size_t len = (size_t)data[3] | ((size_t)data[4] << 8);
		struct vfu_hdr h;
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
		if (cmd == ACTION) {
			device_action(f, p, len);
			drain(sp[1]); /* the requests a copy sent */
			continue;
		}
		h = (struct vfu_hdr){.msg_id = ++id, .cmd = cmd,
				     .size = (uint32_t)(sizeof(h) + len + ((flags & 0x80) ? 1 : 0)),
				     .flags = flags & 0x3f};
		if ((h.flags & VFU_F_TYPE_MASK) == VFU_F_TYPE_REPLY && (fdspec & 0x40) && g_nreq) {
			/* answer the oldest request */
			struct vfu_dma_rw rw = {g_req[0].addr, g_req[0].count};

			h.msg_id = g_req[0].id;
			h.cmd = g_req[0].cmd;
			memmove(g_req, g_req + 1, --g_nreq * sizeof(g_req[0]));
			if ((fdspec & 0x80) && len <= sizeof(msg) - sizeof(h) - sizeof(rw)) {
				memmove(msg + sizeof(h) + sizeof(rw), p, len);
				memcpy(msg + sizeof(h), &rw, sizeof(rw));
				len += sizeof(rw);
				h.size = (uint32_t)(sizeof(h) + len + ((flags & 0x80) ? 1 : 0));
				memcpy(msg, &h, sizeof(h));
				fdspec &= 0xf0; /* no fds with a built reply */
				goto built;
			}
		}
		memcpy(msg, &h, sizeof(h));
		memcpy(msg + sizeof(h), p, len);
built:
		for (unsigned i = 0; i < (fdspec & 0x0f); i++) {
			unsigned kind = (fdspec >> 4) & 3;
			int fd = make_fd(kind == 3 ? i % 3 : kind);

			if (fd >= 0)
				fds[nfds++] = fd;
		}
		g_dev.defer = flags & 0x40;
		g_nmsgs++;
		/* The link owns the fds from here, whatever it returns. */
		if (zoc_vfu_conn_feed(c, msg, sizeof(h) + len, fds, nfds) == 0)
			g_nok++;
		drain(sp[1]);
		g_dev.defer = false;
		finish_deferred();
		drain(sp[1]);
	}

	zoc_vfu_conn_destroy_test(c);
	finish_deferred();
	drain(sp[1]);
	for (unsigned i = 0; i < MAX_COPIES; i++)
		if (g_copy[i].busy)
			die("a copy never completed after the connection closed");
	g_nreq = 0;
	g_rx_len = 0;
	close(sp[0]);
	close(sp[1]);
	if (g_dev.quiesced)
		die("function left quiesced");
	if (g_dev.mem)
		die("DMA table left installed after the connection closed");
	zoc_pci_func_destroy(f);
	if (count_fds() != nfds_base) {
		list_fds();
		die("fd leak");
	}
	if (g_verbose)
		fprintf(stderr, "fuzz_vfio_user: %u messages, %u accepted, %u DMA touches, %u copies "
			"(%u ok)\n", g_nmsgs, g_nok, g_ndma, g_ncopies, g_ncopies_ok);
	return 0;
}
