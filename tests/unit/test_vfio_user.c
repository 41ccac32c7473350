/* SPDX-License-Identifier: MIT */
/*
 * test_vfio_user.c - the vfio-user server (src/link/vfio_user.c) over a real
 * PCI function (src/pci) with a small fake device model: a register file in
 * BAR0 whose second page is a memfd offered as a sparse mmap area, MSI-X in
 * BAR4, MSI, INTx. Messages are fed through zoc_vfu_conn_feed() with replies
 * on a socketpair, and once through the real socket with a client thread
 * (happy path, a second client, hang-up, reconnect).
 *
 * Every test counts /proc/self/fd before and after: whatever a message did,
 * every fd it carried is closed or owned by someone who closes it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"
#include "link/dma.h"
#include "link/vfio_user.h"
#include "link/vfio_user_proto.h"
#include "pci/pci.h"

#define BAR0_SIZE 16384u
#define BAR4_SIZE 8192u
#define NVEC 8
#define DB_OFF 0x1000u /* BAR0 page offered for mmap */
#define DB_FD_OFF 0x2000u /* its place in the memfd */
#define MAX_MSG (16 + 16 + (1u << 20))

/* ------------------------------------------------------------------ */
/* fake device model                                                   */

struct fake {
	uint8_t regs[BAR0_SIZE];
	int db_fd; /* memfd, 3 pages; page 2 = BAR0 page 1 */
	int nreset, nquiesce, nresume, nset_dma;
	bool quiesced;
	bool defer_quiesce, defer_reset;
	zoc_pci_done_fn deferred;
	void *deferred_arg;
	struct zoc_mem *mem;
	int bad_areas; /* 1: two fds, 2: unaligned */
};

static struct fake g_fake;
static struct zoc_pci_func *g_f;

static int fk_bar_access(struct zoc_pci_func *f, unsigned bar, uint64_t off, void *buf,
			 uint32_t len, bool is_write)
{
	if (bar != 0 || off + len > BAR0_SIZE)
		return -EINVAL;
	if (is_write)
		memcpy(g_fake.regs + off, buf, len);
	else
		memcpy(buf, g_fake.regs + off, len);
	return 0;
}

static int fk_bar_mmap_areas(struct zoc_pci_func *f, unsigned bar, struct zoc_pci_mmap_area *a,
			     int max)
{
	if (bar != 0 || max < 2)
		return 0;
	a[0] = (struct zoc_pci_mmap_area){.offset = DB_OFF, .size = 4096, .fd = g_fake.db_fd,
					  .fd_offset = DB_FD_OFF};
	if (g_fake.bad_areas == 1) {
		a[1] = (struct zoc_pci_mmap_area){.offset = 0x2000, .size = 4096, .fd = 0,
						  .fd_offset = 0x3000};
		return 2;
	}
	if (g_fake.bad_areas == 2)
		a[0].offset = 0x1100;
	if (g_fake.bad_areas == 3)
		a[0].fd_offset = 0; /* below its BAR offset: QEMU refuses the wrap */
	return 1;
}

static void fk_reset(struct zoc_pci_func *f, zoc_pci_done_fn done, void *arg)
{
	g_fake.nreset++;
	if (g_fake.mem)
		zoc_mem_put(g_fake.mem);
	g_fake.mem = NULL;
	memset(g_fake.regs, 0, sizeof(g_fake.regs));
	if (g_fake.defer_reset) {
		g_fake.deferred = done;
		g_fake.deferred_arg = arg;
		return;
	}
	done(arg);
}

static void fk_quiesce(struct zoc_pci_func *f, zoc_pci_done_fn done, void *arg)
{
	g_fake.nquiesce++;
	g_fake.quiesced = true;
	if (g_fake.defer_quiesce) {
		g_fake.deferred = done;
		g_fake.deferred_arg = arg;
		return;
	}
	done(arg);
}

static void fk_resume(struct zoc_pci_func *f)
{
	assert_true(g_fake.quiesced);
	g_fake.quiesced = false;
	g_fake.nresume++;
}

static void fk_set_dma(struct zoc_pci_func *f, struct zoc_mem *mem)
{
	g_fake.nset_dma++;
	if (mem)
		zoc_mem_get(mem);
	if (g_fake.mem)
		zoc_mem_put(g_fake.mem);
	g_fake.mem = mem;
}

static const struct zoc_pci_ops fk_ops = {
	.bar_access = fk_bar_access,
	.bar_mmap_areas = fk_bar_mmap_areas,
	.reset = fk_reset,
	.quiesce = fk_quiesce,
	.resume = fk_resume,
	.set_dma = fk_set_dma,
};

static const struct zoc_pci_desc fk_desc = {
	.vendor_id = 0x1b36,
	.device_id = 0x0010,
	.class_code = 0x010802,
	.bars = {[0] = {BAR0_SIZE, ZOC_PCI_BAR_MEM64}, [4] = {BAR4_SIZE, 0}},
	.msix_vectors = NVEC,
	.msix_bar = 4,
	.msix_table_offset = 0,
	.msix_pba_offset = 0x1000,
	.msi = true,
	.pcie = true,
	.intx_pin = 1,
	.ops = &fk_ops,
};

static void run_deferred(void)
{
	zoc_pci_done_fn fn = g_fake.deferred;

	assert_non_null(fn);
	g_fake.deferred = NULL;
	fn(g_fake.deferred_arg);
}

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static int memfd(size_t size)
{
	int fd = memfd_create("vfu-test", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	return fd;
}

static struct zoc_vfu_conn *g_c;
static int g_sk[2] = {-1, -1};
static int g_nfds_start;
static uint16_t g_id;
static uint8_t *g_buf; /* message under construction / reply */

/* Builds a message: header + payload. */
static size_t mk(uint8_t *out, uint16_t cmd, uint32_t flags, const void *p, size_t len)
{
	struct vfu_hdr h = {.msg_id = ++g_id, .cmd = cmd, .size = (uint32_t)(sizeof(h) + len),
			    .flags = flags};

	memcpy(out, &h, sizeof(h));
	if (len)
		memcpy(out + sizeof(h), p, len);
	return sizeof(h) + len;
}

static int feed(uint16_t cmd, uint32_t flags, const void *p, size_t len, const int *fds,
		size_t nfds)
{
	size_t n = mk(g_buf, cmd, flags, p, len);

	return zoc_vfu_conn_feed(g_c, g_buf, n, fds, nfds);
}

/* Reads one reply from sk (fail if none). Returns the payload length; the
 * payload is copied to p (up to max); *fd gets a passed fd (or -1). */
static int get_reply_sk(int sk, struct vfu_hdr *h, void *p, size_t max, int *fd)
{
	static uint8_t rb[MAX_MSG];
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} u;
	struct iovec iov = {rb, sizeof(*h)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf)};
	struct pollfd pf = {.fd = sk, .events = POLLIN};
	ssize_t n;
	size_t got = 0, plen;

	if (fd)
		*fd = -1;
	if (poll(&pf, 1, 2000) != 1)
		return -ETIMEDOUT;
	n = recvmsg(sk, &mh, MSG_CMSG_CLOEXEC);
	if (n != (ssize_t)sizeof(*h))
		return -EIO;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));

		for (int i = 0; i < k; i++) {
			int x;

			memcpy(&x, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (fd && *fd < 0)
				*fd = x;
			else
				close(x);
		}
	}
	memcpy(h, rb, sizeof(*h));
	if (h->size < sizeof(*h) || h->size > MAX_MSG)
		return -EIO;
	plen = h->size - sizeof(*h);
	while (got < plen) {
		n = recv(sk, rb + got, plen - got, 0);
		if (n <= 0)
			return -EIO;
		got += (size_t)n;
	}
	if (p)
		memcpy(p, rb, ZOC_MIN(plen, max));
	return (int)plen;
}

static int get_reply(struct vfu_hdr *h, void *p, size_t max, int *fd)
{
	return get_reply_sk(g_sk[1], h, p, max, fd);
}

static bool no_reply_pending(void)
{
	struct pollfd pf = {.fd = g_sk[1], .events = POLLIN};

	return poll(&pf, 1, 0) == 0;
}

/* Expects an error reply with errno err to the last message. */
static void expect_error(int err)
{
	struct vfu_hdr h;

	assert_int_equal(get_reply(&h, NULL, 0, NULL), 0);
	assert_int_equal(h.msg_id, g_id);
	assert_true(h.flags & VFU_F_ERROR);
	assert_int_equal(h.flags & VFU_F_TYPE_MASK, VFU_F_TYPE_REPLY);
	assert_int_equal(h.error, err);
}

/* Expects a success reply; returns its payload length. */
static int expect_ok(void *p, size_t max, int *fd)
{
	struct vfu_hdr h;
	int n = get_reply(&h, p, max, fd);

	assert_true(n >= 0);
	assert_int_equal(h.msg_id, g_id);
	assert_int_equal(h.flags, VFU_F_TYPE_REPLY);
	return n;
}

static void do_version(const char *caps)
{
	uint8_t p[512];
	struct vfu_version v = {0, 0};
	size_t len = sizeof(v);
	char reply[512];
	int n;

	memcpy(p, &v, sizeof(v));
	if (caps) {
		memcpy(p + len, caps, strlen(caps) + 1);
		len += strlen(caps) + 1;
	}
	assert_int_equal(feed(VFU_CMD_VERSION, 0, p, len, NULL, 0), 0);
	n = expect_ok(reply, sizeof(reply), NULL);
	assert_true(n > (int)sizeof(v));
	assert_int_equal(reply[n - 1], '\0');
}

static void conn_new(void)
{
	g_c = zoc_vfu_conn_create_test(g_f, g_sk[0]);
	assert_non_null(g_c);
}

static void conn_end(void)
{
	if (g_c)
		zoc_vfu_conn_destroy_test(g_c);
	g_c = NULL;
}

static int setup(void **state)
{
	if (!g_buf)
		g_buf = malloc(MAX_MSG + 64);
	memset(&g_fake, 0, sizeof(g_fake));
	g_nfds_start = count_fds();
	g_fake.db_fd = memfd(3 * 4096);
	g_f = zoc_pci_func_create(&fk_desc, &g_fake);
	assert_non_null(g_f);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, g_sk), 0);
	conn_new();
	return 0;
}

static int teardown(void **state)
{
	conn_end();
	assert_false(g_fake.quiesced);
	assert_null(g_fake.mem); /* the model's DMA space is gone */
	zoc_pci_func_destroy(g_f);
	g_f = NULL;
	close(g_sk[0]);
	close(g_sk[1]);
	close(g_fake.db_fd);
	assert_int_equal(count_fds(), g_nfds_start);
	return 0;
}

/* Finds a capability in config space. */
static uint32_t find_cap(uint8_t id)
{
	uint8_t p = 0, cid = 0;

	assert_int_equal(zoc_pci_cfg_read(g_f, 0x34, &p, 1), 0);
	while (p) {
		assert_int_equal(zoc_pci_cfg_read(g_f, p, &cid, 1), 0);
		if (cid == id)
			return p;
		assert_int_equal(zoc_pci_cfg_read(g_f, p + 1u, &p, 1), 0);
	}
	fail_msg("capability 0x%x not found", id);
	return 0;
}

static int region_rw(uint32_t region, uint64_t off, void *data, uint32_t count, bool write,
		     uint32_t flags)
{
	uint8_t p[64];
	struct vfu_region_rw r = {off, region, count};

	memcpy(p, &r, sizeof(r));
	if (write) {
		assert_true(count <= sizeof(p) - sizeof(r));
		memcpy(p + sizeof(r), data, count);
		return feed(VFU_CMD_REGION_WRITE, flags, p, sizeof(r) + count, NULL, 0);
	}
	return feed(VFU_CMD_REGION_READ, flags, &r, sizeof(r), NULL, 0);
}

static void cfg_read(uint32_t off, void *data, uint32_t count)
{
	uint8_t p[64];
	struct vfu_region_rw r;

	assert_int_equal(region_rw(VFU_PCI_CONFIG_REGION_INDEX, off, NULL, count, false, 0), 0);
	assert_int_equal(expect_ok(p, sizeof(p), NULL), (int)(sizeof(r) + count));
	memcpy(&r, p, sizeof(r));
	assert_int_equal(r.count, count);
	memcpy(data, p + sizeof(r), count);
}

static void cfg_write(uint32_t off, const void *data, uint32_t count)
{
	assert_int_equal(region_rw(VFU_PCI_CONFIG_REGION_INDEX, off, (void *)data, count, true, 0),
			 0);
	assert_int_equal(expect_ok(NULL, 0, NULL), (int)sizeof(struct vfu_region_rw));
}

static void dma_map(uint64_t iova, uint64_t size, uint64_t off, int fd, int expect_err)
{
	struct vfu_dma_map m = {sizeof(m), VFU_DMA_READ | VFU_DMA_WRITE, off, iova, size};

	assert_int_equal(feed(VFU_CMD_DMA_MAP, 0, &m, sizeof(m), fd >= 0 ? &fd : NULL, fd >= 0),
			 0);
	if (expect_err)
		expect_error(expect_err);
	else
		assert_int_equal(expect_ok(NULL, 0, NULL), 0);
}

static int dma_unmap(uint64_t iova, uint64_t size, uint32_t flags)
{
	struct vfu_dma_unmap u = {sizeof(u), flags, iova, size};

	return feed(VFU_CMD_DMA_UNMAP, 0, &u, sizeof(u), NULL, 0);
}

static int set_irqs(uint32_t flags, uint32_t index, uint32_t start, uint32_t count,
		    const void *data, size_t dlen, const int *fds, size_t nfds)
{
	uint8_t p[4096];
	struct vfu_irq_set s = {(uint32_t)(sizeof(s) + dlen), flags, index, start, count};

	memcpy(p, &s, sizeof(s));
	if (dlen)
		memcpy(p + sizeof(s), data, dlen);
	return feed(VFU_CMD_DEVICE_SET_IRQS, 0, p, sizeof(s) + dlen, fds, nfds);
}

static uint64_t efd_read(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

/* ------------------------------------------------------------------ */
/* happy path through the test hooks                                   */

static void test_version(void **state)
{
	uint8_t p[512];
	struct vfu_version v = {0, 3};
	const char *caps = "{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":1048576,"
			   "\"pgsizes\":4096,\"max_dma_maps\":65535,\"write_multiple\":true,"
			   "\"migration\":{\"pgsize\":4096},\"future\":[1,2]},\"other\":1}";
	json_t *o, *cap;
	int n;

	memcpy(p, &v, sizeof(v));
	memcpy(p + sizeof(v), caps, strlen(caps) + 1);
	assert_int_equal(feed(VFU_CMD_VERSION, 0, p, sizeof(v) + strlen(caps) + 1, NULL, 0), 0);
	n = expect_ok(p, sizeof(p), NULL);
	memcpy(&v, p, sizeof(v));
	assert_int_equal(v.major, 0);
	assert_int_equal(v.minor, 0);
	assert_int_equal(p[n - 1], 0);
	o = json_loads((char *)p + sizeof(v), 0, NULL);
	assert_non_null(o);
	cap = json_object_get(o, "capabilities");
	assert_non_null(cap);
	assert_int_equal(json_integer_value(json_object_get(cap, "max_msg_fds")), 16);
	assert_int_equal(json_integer_value(json_object_get(cap, "max_data_xfer_size")), 1 << 20);
	assert_int_equal(json_integer_value(json_object_get(cap, "pgsizes")), 4096);
	assert_int_equal(json_integer_value(json_object_get(cap, "max_dma_maps")),
			 ZOC_MEM_MAX_REGIONS);
	assert_true(json_is_true(json_object_get(cap, "write_multiple")));
	json_decref(o);
	/* a second VERSION is refused, the connection stays */
	assert_int_equal(feed(VFU_CMD_VERSION, 0, p, sizeof(v) + 1, NULL, 0), 0);
	expect_error(EINVAL);
	assert_int_equal(feed(VFU_CMD_DEVICE_RESET, 0, NULL, 0, NULL, 0), 0);
	assert_int_equal(expect_ok(NULL, 0, NULL), 0);
}

static void test_version_no_caps(void **state)
{
	struct vfu_version v = {0, 0};
	uint8_t p[512];
	json_t *o;

	/* no JSON at all: defaults; no write_multiple in the reply */
	assert_int_equal(feed(VFU_CMD_VERSION, 0, &v, sizeof(v), NULL, 0), 0);
	expect_ok(p, sizeof(p), NULL);
	o = json_loads((char *)p + sizeof(v), 0, NULL);
	assert_non_null(o);
	assert_null(json_object_get(json_object_get(o, "capabilities"), "write_multiple"));
	json_decref(o);
	/* WRITE_MULTI was not negotiated */
	{
		uint8_t m[8 + sizeof(struct vfu_write_one)] = {1};

		assert_int_equal(feed(VFU_CMD_REGION_WRITE_MULTI, 0, m, sizeof(m), NULL, 0), 0);
		expect_error(EINVAL);
	}
}

static void test_device_info(void **state)
{
	struct vfu_device_info i = {sizeof(i)};

	do_version(NULL);
	assert_int_equal(feed(VFU_CMD_DEVICE_GET_INFO, 0, &i, sizeof(i), NULL, 0), 0);
	assert_int_equal(expect_ok(&i, sizeof(i), NULL), sizeof(i));
	assert_int_equal(i.argsz, sizeof(i));
	assert_int_equal(i.flags, VFU_DEVICE_FLAGS_RESET | VFU_DEVICE_FLAGS_PCI);
	assert_int_equal(i.num_regions, 9);
	assert_int_equal(i.num_irqs, 5);
	/* argsz too small; a huge one is fine */
	i = (struct vfu_device_info){8};
	assert_int_equal(feed(VFU_CMD_DEVICE_GET_INFO, 0, &i, sizeof(i), NULL, 0), 0);
	expect_error(EINVAL);
	i = (struct vfu_device_info){0xffffffffu};
	assert_int_equal(feed(VFU_CMD_DEVICE_GET_INFO, 0, &i, sizeof(i), NULL, 0), 0);
	assert_int_equal(expect_ok(&i, sizeof(i), NULL), sizeof(i));
}

static void test_region_info(void **state)
{
	struct vfu_region_info r;
	uint8_t p[512];
	struct vfu_cap_sparse_mmap cap;
	struct vfu_sparse_mmap_area a;
	int fd;
	uint8_t *map;

	do_version("{\"capabilities\":{\"max_msg_fds\":16}}");
	/* config space */
	r = (struct vfu_region_info){.argsz = sizeof(r), .index = 7};
	assert_int_equal(feed(VFU_CMD_DEVICE_GET_REGION_INFO, 0, &r, sizeof(r), NULL, 0), 0);
	assert_int_equal(expect_ok(&r, sizeof(r), &fd), sizeof(r));
	assert_int_equal(fd, -1);
	assert_int_equal(r.size, ZOC_PCI_CFG_SIZE);
	assert_int_equal(r.flags, VFU_REGION_INFO_FLAG_READ | VFU_REGION_INFO_FLAG_WRITE);
	/* ROM, VGA, the upper half of the 64-bit BAR0: size 0 */
	for (uint32_t idx = 1; idx <= 8; idx++) {
		if (idx == 4 || idx == 7)
			continue;
		r = (struct vfu_region_info){.argsz = sizeof(r), .index = idx};
		assert_int_equal(feed(VFU_CMD_DEVICE_GET_REGION_INFO, 0, &r, sizeof(r), NULL, 0),
				 0);
		assert_int_equal(expect_ok(&r, sizeof(r), NULL), sizeof(r));
		assert_int_equal(r.size, 0);
		assert_int_equal(r.flags, 0);
	}
	/* BAR4: MSI-X, no mmap */
	r = (struct vfu_region_info){.argsz = sizeof(r), .index = 4};
	assert_int_equal(feed(VFU_CMD_DEVICE_GET_REGION_INFO, 0, &r, sizeof(r), NULL, 0), 0);
	assert_int_equal(expect_ok(&r, sizeof(r), NULL), sizeof(r));
	assert_int_equal(r.size, BAR4_SIZE);
	/* BAR0 with the fixed argsz: told how much is needed */
	r = (struct vfu_region_info){.argsz = sizeof(r), .index = 0};
	assert_int_equal(feed(VFU_CMD_DEVICE_GET_REGION_INFO, 0, &r, sizeof(r), NULL, 0), 0);
	assert_int_equal(expect_ok(&r, sizeof(r), &fd), sizeof(r));
	assert_int_equal(fd, -1);
	assert_int_equal(r.argsz, sizeof(r) + sizeof(cap) + sizeof(a));
	/* QEMU refuses CAPS with cap_offset 0: neither CAPS nor MMAP here */
	assert_int_equal(r.flags, VFU_REGION_INFO_FLAG_READ | VFU_REGION_INFO_FLAG_WRITE);
	assert_int_equal(r.cap_offset, 0);
	/* and again with enough room: the sparse mmap capability and the fd */
	r = (struct vfu_region_info){.argsz = 512, .index = 0};
	assert_int_equal(feed(VFU_CMD_DEVICE_GET_REGION_INFO, 0, &r, sizeof(r), NULL, 0), 0);
	assert_int_equal(expect_ok(p, sizeof(p), &fd), sizeof(r) + sizeof(cap) + sizeof(a));
	memcpy(&r, p, sizeof(r));
	assert_int_equal(r.size, BAR0_SIZE);
	assert_int_equal(r.flags, VFU_REGION_INFO_FLAG_READ | VFU_REGION_INFO_FLAG_WRITE |
					  VFU_REGION_INFO_FLAG_MMAP | VFU_REGION_INFO_FLAG_CAPS);
	assert_int_equal(r.cap_offset, sizeof(r));
	memcpy(&cap, p + r.cap_offset, sizeof(cap));
	memcpy(&a, p + r.cap_offset + sizeof(cap), sizeof(a));
	assert_int_equal(cap.hdr.id, VFU_REGION_INFO_CAP_SPARSE_MMAP);
	assert_int_equal(cap.hdr.version, 1);
	assert_int_equal(cap.hdr.next, 0);
	assert_int_equal(cap.nr_areas, 1);
	assert_int_equal(a.offset, DB_OFF);
	assert_int_equal(a.size, 4096);
	assert_true(fd >= 0);
	/* The client maps it as QEMU does and stores into the "doorbell". */
	map = mmap(NULL, a.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)(r.offset + a.offset));
	assert_true(map != MAP_FAILED);
	map[8] = 0x5a;
	{
		uint8_t b = 0;

		assert_int_equal(pread(g_fake.db_fd, &b, 1, DB_FD_OFF + 8), 1);
		assert_int_equal(b, 0x5a);
	}
	munmap(map, a.size);
	close(fd);
	/* a huge argsz is fine: the reply is what is needed */
	r = (struct vfu_region_info){.argsz = 0xffffffffu, .index = 7};
	assert_int_equal(feed(VFU_CMD_DEVICE_GET_REGION_INFO, 0, &r, sizeof(r), NULL, 0), 0);
	assert_int_equal(expect_ok(&r, sizeof(r), NULL), sizeof(r));
	assert_int_equal(r.argsz, sizeof(r));
	/* bad index / argsz */
	r = (struct vfu_region_info){.argsz = sizeof(r), .index = 9};
	assert_int_equal(feed(VFU_CMD_DEVICE_GET_REGION_INFO, 0, &r, sizeof(r), NULL, 0), 0);
	expect_error(EINVAL);
	r = (struct vfu_region_info){.argsz = sizeof(r), .index = 0xffffffffu};
	assert_int_equal(feed(VFU_CMD_DEVICE_GET_REGION_INFO, 0, &r, sizeof(r), NULL, 0), 0);
	expect_error(EINVAL);
	r = (struct vfu_region_info){.argsz = 31, .index = 0};
	assert_int_equal(feed(VFU_CMD_DEVICE_GET_REGION_INFO, 0, &r, sizeof(r), NULL, 0), 0);
	expect_error(EINVAL);
	/* areas the link cannot express: no mmap, no fd */
	for (int bad = 1; bad <= 3; bad++) {
		g_fake.bad_areas = bad;
		r = (struct vfu_region_info){.argsz = 512, .index = 0};
		assert_int_equal(feed(VFU_CMD_DEVICE_GET_REGION_INFO, 0, &r, sizeof(r), NULL, 0),
				 0);
		assert_int_equal(expect_ok(&r, sizeof(r), &fd), sizeof(r));
		assert_int_equal(fd, -1);
		assert_int_equal(r.flags, VFU_REGION_INFO_FLAG_READ | VFU_REGION_INFO_FLAG_WRITE);
	}
}

static void test_no_mmap_without_fds(void **state)
{
	struct vfu_region_info r = {.argsz = 512, .index = 0};
	int fd;

	/* A client that takes no fds gets no mmap offer. */
	do_version("{\"capabilities\":{\"max_msg_fds\":0}}");
	assert_int_equal(feed(VFU_CMD_DEVICE_GET_REGION_INFO, 0, &r, sizeof(r), NULL, 0), 0);
	assert_int_equal(expect_ok(&r, sizeof(r), &fd), sizeof(r));
	assert_int_equal(fd, -1);
	assert_false(r.flags & VFU_REGION_INFO_FLAG_MMAP);
}

static void test_config_and_bars(void **state)
{
	uint16_t vid = 0, cmd;
	uint32_t v, ones = 0xffffffffu;
	uint8_t big[64];
	uint64_t q = 0x1122334455667788ull;

	do_version(NULL);
	cfg_read(0, &vid, 2);
	assert_int_equal(vid, 0x1b36);
	/* BAR sizing: all ones, read back the size mask */
	cfg_write(0x10, &ones, 4);
	cfg_read(0x10, &v, 4);
	assert_int_equal(v, (uint32_t)~(BAR0_SIZE - 1) | 0x4);
	cfg_write(0x14, &ones, 4);
	cfg_read(0x14, &v, 4);
	assert_int_equal(v, 0xffffffffu);
	v = 0xfe000000u;
	cfg_write(0x10, &v, 4);
	cfg_read(0x10, &v, 4);
	assert_int_equal(v, 0xfe000004u);
	/* command register: memory + bus master */
	cmd = 0x6;
	cfg_write(4, &cmd, 2);
	assert_true(zoc_pci_bus_master(g_f));
	/* a long read across dwords */
	assert_int_equal(region_rw(VFU_PCI_CONFIG_REGION_INDEX, 0, NULL, 48, false, 0), 0);
	assert_int_equal(expect_ok(big, sizeof(big), NULL), 16 + 48);
	/* BAR0 register file */
	assert_int_equal(region_rw(0, 0x20, &q, 8, true, 0), 0);
	assert_int_equal(expect_ok(NULL, 0, NULL), 16);
	assert_int_equal(memcmp(g_fake.regs + 0x20, &q, 8), 0);
	q = 0;
	assert_int_equal(region_rw(0, 0x20, NULL, 8, false, 0), 0);
	assert_int_equal(expect_ok(big, sizeof(big), NULL), 24);
	assert_int_equal(memcmp(big + 16, g_fake.regs + 0x20, 8), 0);
	/* a posted write: no reply */
	q = 0xabcdull;
	assert_int_equal(region_rw(0, 0x28, &q, 8, true, VFU_F_NO_REPLY), 0);
	assert_true(no_reply_pending());
	assert_int_equal(memcmp(g_fake.regs + 0x28, &q, 8), 0);
	/* and a posted write that fails: still no reply */
	assert_int_equal(region_rw(0, BAR0_SIZE, &q, 8, true, VFU_F_NO_REPLY), 0);
	assert_true(no_reply_pending());
	/* out of range: region, offset, offset + count overflow, zero count,
	 * unused BAR, config past 4 KiB, count larger than max_data_xfer_size */
	assert_int_equal(region_rw(9, 0, NULL, 4, false, 0), 0);
	expect_error(EINVAL);
	assert_int_equal(region_rw(6, 0, NULL, 4, false, 0), 0);
	expect_error(EINVAL);
	assert_int_equal(region_rw(2, 0, NULL, 4, false, 0), 0);
	expect_error(EINVAL);
	assert_int_equal(region_rw(0, BAR0_SIZE - 4, NULL, 8, false, 0), 0);
	expect_error(EINVAL);
	assert_int_equal(region_rw(0, UINT64_MAX - 3, NULL, 8, false, 0), 0);
	expect_error(EINVAL);
	assert_int_equal(region_rw(0, 0, NULL, 0, false, 0), 0);
	expect_error(EINVAL);
	assert_int_equal(region_rw(7, 4095, NULL, 2, false, 0), 0);
	expect_error(EINVAL);
	assert_int_equal(region_rw(7, 0, NULL, 0x80000000u, false, 0), 0);
	expect_error(EINVAL);
	assert_int_equal(region_rw(0, 1ull << 40, &q, 4, true, 0), 0);
	expect_error(EINVAL);
	/* write whose count disagrees with the message size */
	{
		uint8_t p[32];
		struct vfu_region_rw r = {0, 0, 12};

		memcpy(p, &r, sizeof(r));
		assert_int_equal(feed(VFU_CMD_REGION_WRITE, 0, p, sizeof(r) + 8, NULL, 0), 0);
		expect_error(EINVAL);
	}
}

static void test_write_multi(void **state)
{
	uint8_t p[8 + 3 * sizeof(struct vfu_write_one)];
	struct vfu_write_one w[3] = {
		{0x40, 0, 4, {1, 2, 3, 4}},
		{0x48, 0, 8, {9, 9, 9, 9, 9, 9, 9, 9}},
		{0x04, 7, 2, {0x02, 0}},
	};
	uint64_t n = 3;

	do_version("{\"capabilities\":{\"write_multiple\":true}}");
	memcpy(p, &n, 8);
	memcpy(p + 8, w, sizeof(w));
	assert_int_equal(feed(VFU_CMD_REGION_WRITE_MULTI, VFU_F_NO_REPLY, p, sizeof(p), NULL, 0),
			 0);
	assert_true(no_reply_pending());
	assert_int_equal(memcmp(g_fake.regs + 0x40, w[0].data, 4), 0);
	assert_int_equal(memcmp(g_fake.regs + 0x48, w[1].data, 8), 0);
	assert_true(zoc_pci_mem_enabled(g_f));
	/* with a reply */
	assert_int_equal(feed(VFU_CMD_REGION_WRITE_MULTI, 0, p, sizeof(p), NULL, 0), 0);
	assert_int_equal(expect_ok(&n, 8, NULL), 8);
	assert_int_equal(n, 3);
	/* count disagrees with size; an entry of 9 bytes; a bad region */
	n = 4;
	memcpy(p, &n, 8);
	assert_int_equal(feed(VFU_CMD_REGION_WRITE_MULTI, 0, p, sizeof(p), NULL, 0), 0);
	expect_error(EINVAL);
	n = 3;
	memcpy(p, &n, 8);
	w[1].count = 9;
	memcpy(p + 8, w, sizeof(w));
	assert_int_equal(feed(VFU_CMD_REGION_WRITE_MULTI, 0, p, sizeof(p), NULL, 0), 0);
	expect_error(EINVAL);
	w[1].count = 8;
	w[2].region = 5;
	memcpy(p + 8, w, sizeof(w));
	assert_int_equal(feed(VFU_CMD_REGION_WRITE_MULTI, 0, p, sizeof(p), NULL, 0), 0);
	expect_error(EINVAL);
	n = UINT64_MAX;
	memcpy(p, &n, 8);
	assert_int_equal(feed(VFU_CMD_REGION_WRITE_MULTI, 0, p, sizeof(p), NULL, 0), 0);
	expect_error(EINVAL);
}

static void test_dma(void **state)
{
	int fd = memfd(1 << 20), fd2;
	uint8_t *host = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	uint8_t *p;
	struct vfu_dma_unmap u;
	int q0;

	assert_true(host != MAP_FAILED);
	do_version(NULL);
	/* map 512 KiB of the memfd (from offset 256 KiB) at IOVA 1 GiB */
	fd2 = dup(fd);
	q0 = g_fake.nquiesce;
	dma_map(1ull << 30, 512 << 10, 256 << 10, fd2, 0);
	assert_int_equal(g_fake.nquiesce, q0 + 1);
	assert_int_equal(g_fake.nresume, g_fake.nquiesce);
	assert_non_null(g_fake.mem);
	p = zoc_mem_gpa_to_hva(g_fake.mem, (1ull << 30) + 4096, 8, true);
	assert_non_null(p);
	memcpy(p, "vfiouser", 8);
	assert_int_equal(memcmp(host + (256 << 10) + 4096, "vfiouser", 8), 0);
	assert_null(zoc_mem_gpa_to_hva(g_fake.mem, (1ull << 30) + (512 << 10) - 4, 8, false));
	/* a map without fd: a remote region, never translated (copied with
	 * DMA_READ / DMA_WRITE) */
	dma_map(0x100000000ull, 1 << 20, 0, -1, 0);
	assert_null(zoc_mem_gpa_to_hva(g_fake.mem, 0x100000000ull, 8, false));
	assert_true(zoc_mem_is_remote(g_fake.mem, 0x100000000ull, 8, true));
	assert_false(zoc_mem_is_remote(g_fake.mem, 0x100000000ull + (1 << 20) - 4, 8, false));
	/* overlap, zero size, overflow, misaligned, bad flags */
	fd2 = dup(fd);
	dma_map((1ull << 30) + 4096, 4096, 0, fd2, EEXIST);
	dma_map(0x100000000ull, 4096, 0, -1, EEXIST);
	fd2 = dup(fd);
	dma_map(0, 0, 0, fd2, EINVAL);
	dma_map(UINT64_MAX & ~4095ull, 8192, 0, -1, EINVAL);
	dma_map(0x123, 4096, 0, -1, EINVAL);
	{
		struct vfu_dma_map m = {sizeof(m), 0x80, 0, 0x200000000ull, 4096};

		assert_int_equal(feed(VFU_CMD_DMA_MAP, 0, &m, sizeof(m), NULL, 0), 0);
		expect_error(EINVAL);
		m.flags = VFU_DMA_READ;
		m.argsz = 8;
		assert_int_equal(feed(VFU_CMD_DMA_MAP, 0, &m, sizeof(m), NULL, 0), 0);
		expect_error(EINVAL);
	}
	/* the fd does not cover the range; a bad fd (not mappable) */
	fd2 = dup(fd);
	dma_map(0x300000000ull, 2 << 20, 0, fd2, EINVAL);
	fd2 = eventfd(0, EFD_CLOEXEC);
	dma_map(0x300000000ull, 4096, 0, fd2, ENODEV);
	/* two fds */
	{
		struct vfu_dma_map m = {sizeof(m), 3, 0, 0x300000000ull, 4096};
		int fds[2] = {dup(fd), dup(fd)};

		assert_int_equal(feed(VFU_CMD_DMA_MAP, 0, &m, sizeof(m), fds, 2), 0);
		expect_error(EINVAL);
	}
	/* too many maps */
	for (unsigned i = 2; i < ZOC_MEM_MAX_REGIONS; i++)
		dma_map(0x400000000ull + i * 4096ull, 4096, 0, -1, 0);
	dma_map(0x500000000ull, 4096, 0, -1, ENOSPC);
	/* unmap: unknown range, partial range, dirty bitmap, bad ALL */
	assert_int_equal(dma_unmap(0x700000000ull, 4096, 0), 0);
	expect_error(ENOENT);
	assert_int_equal(dma_unmap(1ull << 30, 4096, 0), 0);
	expect_error(ENOENT);
	assert_int_equal(dma_unmap(1ull << 30, 512 << 10, VFU_DMA_UNMAP_GET_DIRTY_BITMAP), 0);
	expect_error(ENOTSUP);
	assert_int_equal(dma_unmap(1ull << 30, 512 << 10, VFU_DMA_UNMAP_ALL), 0);
	expect_error(EINVAL);
	assert_int_equal(dma_unmap(1ull << 30, 512 << 10, 0x10), 0);
	expect_error(EINVAL);
	/* the real unmap: quiesced, table gone, echo of the request */
	q0 = g_fake.nquiesce;
	assert_int_equal(dma_unmap(1ull << 30, 512 << 10, 0), 0);
	assert_int_equal(expect_ok(&u, sizeof(u), NULL), sizeof(u));
	assert_int_equal(u.addr, 1ull << 30);
	assert_int_equal(u.size, 512 << 10);
	assert_int_equal(g_fake.nquiesce, q0 + 1);
	assert_non_null(g_fake.mem); /* the fd-less ones remain */
	assert_null(zoc_mem_gpa_to_hva(g_fake.mem, 1ull << 30, 8, false));
	/* unmap all of the fd-less ones */
	assert_int_equal(dma_unmap(0, 0, VFU_DMA_UNMAP_ALL), 0);
	assert_int_equal(expect_ok(NULL, 0, NULL), sizeof(u));
	assert_null(g_fake.mem);
	assert_int_equal(dma_unmap(0x100000000ull, 1 << 20, 0), 0);
	expect_error(ENOENT);
	/* map again, then the connection ends with it mapped */
	fd2 = dup(fd);
	dma_map(0, 1 << 20, 0, fd2, 0);
	assert_non_null(g_fake.mem);
	munmap(host, 1 << 20);
	close(fd);
}

static void test_dma_async(void **state)
{
	int fd = memfd(1 << 16);
	struct vfu_dma_map m = {sizeof(m), 3, 0, 0x10000, 1 << 16};
	struct vfu_hdr h;

	do_version(NULL);
	g_fake.defer_quiesce = true;
	assert_int_equal(feed(VFU_CMD_DMA_MAP, 0, &m, sizeof(m), &fd, 1), 0);
	assert_true(no_reply_pending());
	assert_null(g_fake.mem);
	/* Nothing else is taken meanwhile. */
	assert_int_equal(feed(VFU_CMD_DEVICE_RESET, 0, NULL, 0, NULL, 0), -EBUSY);
	run_deferred();
	assert_int_equal(get_reply(&h, NULL, 0, NULL), 0);
	assert_int_equal(h.cmd, VFU_CMD_DMA_MAP);
	assert_non_null(g_fake.mem);
	/* Reset, asynchronous too: the model gets the DMA space back. */
	g_fake.defer_quiesce = false;
	g_fake.defer_reset = true;
	assert_int_equal(feed(VFU_CMD_DEVICE_RESET, 0, NULL, 0, NULL, 0), 0);
	assert_true(no_reply_pending());
	assert_null(g_fake.mem);
	run_deferred();
	assert_int_equal(get_reply(&h, NULL, 0, NULL), 0);
	assert_int_equal(h.cmd, VFU_CMD_DEVICE_RESET);
	assert_non_null(g_fake.mem);
	/* The connection goes while a quiesce is pending: freed when done. */
	g_fake.defer_reset = false;
	g_fake.defer_quiesce = true;
	assert_int_equal(dma_unmap(0x10000, 1 << 16, 0), 0);
	conn_end();
	run_deferred(); /* the unmap's quiesce; then the close's quiesce */
	run_deferred();
	assert_null(g_fake.mem);
}

static void test_irqs(void **state)
{
	struct vfu_irq_info ii;
	int efd[NVEC], one;
	uint32_t msix, ctl;
	uint8_t bools[4] = {1, 0, 1, 0};

	do_version(NULL);
	for (uint32_t idx = 0; idx < 5; idx++) {
		static const uint32_t counts[5] = {1, 1, NVEC, 0, 0};

		ii = (struct vfu_irq_info){sizeof(ii), 0, idx, 0};
		assert_int_equal(feed(VFU_CMD_DEVICE_GET_IRQ_INFO, 0, &ii, sizeof(ii), NULL, 0), 0);
		assert_int_equal(expect_ok(&ii, sizeof(ii), NULL), sizeof(ii));
		assert_int_equal(ii.count, counts[idx]);
		assert_int_equal(ii.index, idx);
		if (counts[idx])
			assert_true(ii.flags & VFU_IRQ_INFO_EVENTFD);
	}
	ii = (struct vfu_irq_info){sizeof(ii), 0, 5, 0};
	assert_int_equal(feed(VFU_CMD_DEVICE_GET_IRQ_INFO, 0, &ii, sizeof(ii), NULL, 0), 0);
	expect_error(EINVAL);
	ii = (struct vfu_irq_info){4, 0, 2, 0};
	assert_int_equal(feed(VFU_CMD_DEVICE_GET_IRQ_INFO, 0, &ii, sizeof(ii), NULL, 0), 0);
	expect_error(EINVAL);

	/* eventfds for MSI-X vectors 0..3, as QEMU sends them */
	for (int i = 0; i < NVEC; i++)
		efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	{
		int dup4[4];

		for (int i = 0; i < 4; i++)
			dup4[i] = dup(efd[i]);
		assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER,
					  ZOC_PCI_IRQ_MSIX, 0, 4, NULL, 0, dup4, 4),
				 0);
		assert_int_equal(expect_ok(NULL, 0, NULL), 0);
	}
	/* enable MSI-X in config space; the device raises vector 2 */
	msix = find_cap(0x11);
	cfg_read(msix + 2, &ctl, 2);
	ctl = (ctl & 0xffff) | 0x8000;
	cfg_write(msix + 2, &ctl, 2);
	/* No table write: the client (QEMU) emulates the MSI-X table, so a
	 * vector with an eventfd is unmasked in ours; vector 5 (no fd) is not. */
	assert_true(zoc_pci_irq_raise(g_f, 2));
	assert_false(zoc_pci_irq_raise(g_f, 5));
	{
		uint32_t ctrl = 1;

		/* but a client that writes the table itself still masks */
		assert_int_equal(region_rw(4, 3 * 16 + 12, &ctrl, 4, true, 0), 0);
		assert_int_equal(expect_ok(NULL, 0, NULL), 16);
		assert_false(zoc_pci_irq_raise(g_f, 3));
		ctrl = 0;
		assert_int_equal(region_rw(4, 3 * 16 + 12, &ctrl, 4, true, 0), 0);
		assert_int_equal(expect_ok(NULL, 0, NULL), 16);
		assert_int_equal(efd_read(efd[3]), 1);
	}
	assert_int_equal(efd_read(efd[2]), 1);
	/* client-triggered: NONE and BOOL */
	assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER,
				  ZOC_PCI_IRQ_MSIX, 1, 1, NULL, 0, NULL, 0),
			 0);
	assert_int_equal(expect_ok(NULL, 0, NULL), 0);
	assert_int_equal(efd_read(efd[1]), 1);
	assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_BOOL | VFU_IRQ_SET_ACTION_TRIGGER,
				  ZOC_PCI_IRQ_MSIX, 0, 4, bools, 4, NULL, 0),
			 0);
	assert_int_equal(expect_ok(NULL, 0, NULL), 0);
	assert_int_equal(efd_read(efd[0]), 1);
	assert_int_equal(efd_read(efd[1]), 0);
	assert_int_equal(efd_read(efd[2]), 1);
	/* mask vector 2 at link level: a raise only sets pending; unmask fires */
	assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_MASK,
				  ZOC_PCI_IRQ_MSIX, 2, 1, NULL, 0, NULL, 0),
			 0);
	assert_int_equal(expect_ok(NULL, 0, NULL), 0);
	assert_false(zoc_pci_irq_raise(g_f, 2));
	assert_int_equal(efd_read(efd[2]), 0);
	assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_BOOL | VFU_IRQ_SET_ACTION_UNMASK,
				  ZOC_PCI_IRQ_MSIX, 2, 1, bools, 1, NULL, 0),
			 0);
	assert_int_equal(expect_ok(NULL, 0, NULL), 0);
	assert_int_equal(efd_read(efd[2]), 1);
	/* de-assign vector 2 (eventfd without fds) */
	assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER,
				  ZOC_PCI_IRQ_MSIX, 2, 1, NULL, 0, NULL, 0),
			 0);
	assert_int_equal(expect_ok(NULL, 0, NULL), 0);
	assert_false(zoc_pci_irq_raise(g_f, 2));
	/* malformed ones */
	one = dup(efd[5]);
	/* fd count mismatch */
	{
		int two[2] = {dup(efd[5]), dup(efd[6])};

		assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER,
					  ZOC_PCI_IRQ_MSIX, 4, 3, NULL, 0, two, 2),
				 0);
		expect_error(EINVAL);
	}
	/* bad index, start + count past the vectors, start + count overflow */
	assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER, 7, 0, 1,
				  NULL, 0, &one, 1),
			 0);
	expect_error(EINVAL);
	one = dup(efd[5]);
	assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER,
				  ZOC_PCI_IRQ_MSIX, NVEC, 1, NULL, 0, &one, 1),
			 0);
	expect_error(EINVAL);
	assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER,
				  ZOC_PCI_IRQ_MSIX, 0xffffffffu, 2, NULL, 0, NULL, 0),
			 0);
	expect_error(EINVAL);
	/* two data types, no action, unknown bits, BOOL data size wrong,
	 * NONE with data, fds with DATA_NONE, count 0 that is not "disable" */
	assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_DATA_BOOL |
					  VFU_IRQ_SET_ACTION_TRIGGER,
				  2, 0, 1, bools, 1, NULL, 0),
			 0);
	expect_error(EINVAL);
	assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_NONE, 2, 0, 1, NULL, 0, NULL, 0), 0);
	expect_error(EINVAL);
	assert_int_equal(set_irqs(0x100 | VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER, 2, 0,
				  1, NULL, 0, NULL, 0),
			 0);
	expect_error(EINVAL);
	assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_BOOL | VFU_IRQ_SET_ACTION_TRIGGER, 2, 0, 4,
				  bools, 2, NULL, 0),
			 0);
	expect_error(EINVAL);
	assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER, 2, 0, 1,
				  bools, 2, NULL, 0),
			 0);
	expect_error(EINVAL);
	one = dup(efd[5]);
	assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER, 2, 0, 1,
				  NULL, 0, &one, 1),
			 0);
	expect_error(EINVAL);
	assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_MASK, 2, 0, 0, NULL,
				  0, NULL, 0),
			 0);
	expect_error(EINVAL);
	/* eventfd for unmask (KVM resampler): not supported */
	one = dup(efd[5]);
	assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_UNMASK,
				  ZOC_PCI_IRQ_INTX, 0, 1, NULL, 0, &one, 1),
			 0);
	expect_error(ENOTSUP);
	/* MSI and INTx eventfds; then disable MSI-X entirely */
	one = dup(efd[6]);
	assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER,
				  ZOC_PCI_IRQ_INTX, 0, 1, NULL, 0, &one, 1),
			 0);
	assert_int_equal(expect_ok(NULL, 0, NULL), 0);
	assert_int_equal(set_irqs(VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER,
				  ZOC_PCI_IRQ_MSIX, 0, 0, NULL, 0, NULL, 0),
			 0);
	assert_int_equal(expect_ok(NULL, 0, NULL), 0);
	assert_int_equal(zoc_pci_irq_trigger(g_f, ZOC_PCI_IRQ_MSIX, 0, 1), 0);
	assert_int_equal(efd_read(efd[0]), 0);
	/* the INTx fd stays until the connection ends */
	assert_int_equal(zoc_pci_irq_trigger(g_f, ZOC_PCI_IRQ_INTX, 0, 1), 0);
	assert_int_equal(efd_read(efd[6]), 1);
	conn_end();
	assert_int_equal(zoc_pci_irq_trigger(g_f, ZOC_PCI_IRQ_INTX, 0, 1), 0);
	assert_int_equal(efd_read(efd[6]), 0);
	for (int i = 0; i < NVEC; i++)
		close(efd[i]);
}

static void test_reset(void **state)
{
	uint16_t cmd = 0x6;
	int fd = memfd(1 << 16);
	int r0;

	do_version(NULL);
	dma_map(0, 1 << 16, 0, fd, 0);
	cfg_write(4, &cmd, 2);
	assert_true(zoc_pci_bus_master(g_f));
	r0 = g_fake.nreset;
	assert_int_equal(feed(VFU_CMD_DEVICE_RESET, 0, NULL, 0, NULL, 0), 0);
	assert_int_equal(expect_ok(NULL, 0, NULL), 0);
	assert_int_equal(g_fake.nreset, r0 + 1);
	assert_false(zoc_pci_bus_master(g_f));
	/* the client's maps survive a reset */
	assert_non_null(g_fake.mem);
	assert_non_null(zoc_mem_gpa_to_hva(g_fake.mem, 0, 8, true));
	/* RESET with a payload: malformed */
	assert_int_equal(feed(VFU_CMD_DEVICE_RESET, 0, &cmd, 2, NULL, 0), 0);
	expect_error(EINVAL);
}

/* ------------------------------------------------------------------ */
/* malformed messages                                                  */

static void test_before_version(void **state)
{
	struct vfu_device_info i = {sizeof(i)};

	assert_int_equal(feed(VFU_CMD_DEVICE_GET_INFO, 0, &i, sizeof(i), NULL, 0), -ECONNRESET);
	assert_true(no_reply_pending());
	/* dead: nothing more is taken */
	assert_int_equal(feed(VFU_CMD_VERSION, 0, &i, 4, NULL, 0), -EPIPE);
}

static void test_bad_versions(void **state)
{
	static const char *bad[] = {
		"{", "[1]", "{\"capabilities\":3}", "{\"capabilities\":{\"max_msg_fds\":-1}}",
		"{\"capabilities\":{\"max_msg_fds\":\"x\"}}",
		"{\"capabilities\":{\"write_multiple\":1}}",
		"{\"capabilities\":{\"max_data_xfer_size\":0}}",
		"{\"a\":1,\"a\":2}", "",
	};
	uint8_t p[256];

	for (size_t i = 0; i < ZOC_ARRAY_SIZE(bad); i++) {
		struct vfu_version v = {0, 0};
		size_t len = sizeof(v) + strlen(bad[i]);

		memcpy(p, &v, sizeof(v));
		memcpy(p + sizeof(v), bad[i], strlen(bad[i]));
		if (!bad[i][0]) {
			/* an embedded NUL in the middle */
			memcpy(p + sizeof(v), "{}\0{}", 5);
			len = sizeof(v) + 5;
		}
		assert_int_equal(feed(VFU_CMD_VERSION, 0, p, len, NULL, 0), -ECONNRESET);
		expect_error(EINVAL);
		conn_end();
		conn_new();
	}
	/* major 1 */
	{
		struct vfu_version v = {1, 0};

		assert_int_equal(feed(VFU_CMD_VERSION, 0, &v, sizeof(v), NULL, 0), -ECONNRESET);
		expect_error(ENOTSUP);
		conn_end();
		conn_new();
	}
	/* too short */
	assert_int_equal(feed(VFU_CMD_VERSION, 0, p, 2, NULL, 0), -ECONNRESET);
	conn_end();
	conn_new();
	/* an fd with it */
	{
		struct vfu_version v = {0, 0};
		int fd = eventfd(0, EFD_CLOEXEC);

		assert_int_equal(feed(VFU_CMD_VERSION, 0, &v, sizeof(v), &fd, 1), -ECONNRESET);
	}
}

static void test_framing(void **state)
{
	struct vfu_hdr h = {.msg_id = 1, .cmd = VFU_CMD_VERSION, .size = 8};
	uint8_t m[64] = {0};
	int fds[20];

	/* short header */
	assert_int_equal(zoc_vfu_conn_feed(g_c, &h, 8, NULL, 0), -EINVAL);
	conn_end();
	conn_new();
	/* size smaller than the header */
	assert_int_equal(zoc_vfu_conn_feed(g_c, &h, sizeof(h), NULL, 0), -EINVAL);
	conn_end();
	conn_new();
	/* size disagrees with the bytes */
	h.size = 40;
	memcpy(m, &h, sizeof(h));
	assert_int_equal(zoc_vfu_conn_feed(g_c, m, 30, NULL, 0), -EINVAL);
	conn_end();
	conn_new();
	/* huge size */
	h.size = 0xffffffffu;
	memcpy(m, &h, sizeof(h));
	assert_int_equal(zoc_vfu_conn_feed(g_c, m, 64, NULL, 0), -EINVAL);
	conn_end();
	conn_new();
	/* more fds than we take */
	for (int i = 0; i < 20; i++)
		fds[i] = eventfd(0, EFD_CLOEXEC);
	do_version(NULL);
	assert_int_equal(feed(VFU_CMD_DEVICE_RESET, 0, NULL, 0, fds, 20), -EINVAL);
	conn_end();
	conn_new();
	do_version(NULL);
	/* a reply from the client (we asked nothing): closed */
	assert_int_equal(feed(VFU_CMD_DEVICE_RESET, VFU_F_TYPE_REPLY, NULL, 0, NULL, 0),
			 -ECONNRESET);
	conn_end();
	conn_new();
	do_version(NULL);
	/* type 5: closed */
	assert_int_equal(feed(VFU_CMD_DEVICE_RESET, 5, NULL, 0, NULL, 0), -ECONNRESET);
	conn_end();
	conn_new();
	do_version(NULL);
	/* unknown flag bits, the error bit on a command: error reply */
	assert_int_equal(feed(VFU_CMD_DEVICE_RESET, 0x40, NULL, 0, NULL, 0), 0);
	expect_error(EINVAL);
	assert_int_equal(feed(VFU_CMD_DEVICE_RESET, VFU_F_ERROR, NULL, 0, NULL, 0), 0);
	expect_error(EINVAL);
	/* unknown and server->client commands */
	for (uint16_t cmd = 0; cmd < 20; cmd++) {
		if (cmd == 1 || cmd == 2 || cmd == 3 || cmd == 4 || cmd == 5 || cmd == 7 ||
		    cmd == 8 || cmd == 9 || cmd == 10 || cmd == 13 || cmd == 15)
			continue;
		assert_int_equal(feed(cmd, 0, m, 16, NULL, 0), 0);
		expect_error(ENOTSUP);
	}
	assert_int_equal(feed(0xffff, 0, NULL, 0, NULL, 0), 0);
	expect_error(ENOTSUP);
	/* payload sizes a command cannot have */
	memset(m, 0, sizeof(m));
	assert_int_equal(feed(VFU_CMD_DEVICE_GET_INFO, 0, m, 12, NULL, 0), 0);
	expect_error(EINVAL);
	assert_int_equal(feed(VFU_CMD_DEVICE_GET_INFO, 0, m, 20, NULL, 0), 0);
	expect_error(EINVAL);
	assert_int_equal(feed(VFU_CMD_DMA_MAP, 0, m, 31, NULL, 0), 0);
	expect_error(EINVAL);
	assert_int_equal(feed(VFU_CMD_DMA_UNMAP, 0, m, 48, NULL, 0), 0);
	expect_error(EINVAL);
	assert_int_equal(feed(VFU_CMD_REGION_READ, 0, m, 24, NULL, 0), 0);
	expect_error(EINVAL);
	assert_int_equal(feed(VFU_CMD_DEVICE_SET_IRQS, 0, m, 19, NULL, 0), 0);
	expect_error(EINVAL);
	/* fds on a command that takes none */
	{
		int fd = eventfd(0, EFD_CLOEXEC);
		struct vfu_device_info i = {sizeof(i)};

		assert_int_equal(feed(VFU_CMD_DEVICE_GET_INFO, 0, &i, sizeof(i), &fd, 1), 0);
		expect_error(EINVAL);
	}
	/* and the connection still works */
	assert_int_equal(feed(VFU_CMD_DEVICE_RESET, 0, NULL, 0, NULL, 0), 0);
	assert_int_equal(expect_ok(NULL, 0, NULL), 0);
}

static void test_slow_reader(void **state)
{
	int sz = 4096, rc = 0, i;

	/* A client that never reads its replies: once the socket is full the
	 * server waits a little, then closes the connection. */
	assert_int_equal(setsockopt(g_sk[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
	assert_int_equal(setsockopt(g_sk[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)), 0);
	do_version(NULL);
	for (i = 0; i < 1000 && rc == 0; i++)
		rc = region_rw(VFU_PCI_CONFIG_REGION_INDEX, 0, NULL, 4096, false, 0);
	assert_int_equal(rc, -ECONNRESET);
	assert_int_equal(feed(VFU_CMD_DEVICE_RESET, 0, NULL, 0, NULL, 0), -EPIPE);
}

/* ------------------------------------------------------------------ */
/* the real socket                                                     */

struct sock_test {
	char path[108];
	int result; /* 0 ok, else the failing line */
};

#define CHECK(x)                               \
	do {                                   \
		if (!(x)) {                    \
			st->result = __LINE__; \
			goto out;              \
		}                              \
	} while (0)

static int sk_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static ssize_t sk_send(int fd, uint16_t cmd, uint16_t id, const void *p, size_t len,
		       const int *fds, size_t nfds)
{
	struct vfu_hdr h = {.msg_id = id, .cmd = cmd, .size = (uint32_t)(sizeof(h) + len)};
	struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)p, len}};
	union {
		char buf[CMSG_SPACE(sizeof(int) * 32)];
		struct cmsghdr align;
	} u;
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};

	if (nfds) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	return sendmsg(fd, &mh, MSG_NOSIGNAL);
}

/* True if the server closed fd (EOF within 2 s). */
static bool sk_closed(int fd)
{
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	char b[64];

	while (poll(&pf, 1, 2000) == 1) {
		ssize_t n = recv(fd, b, sizeof(b), 0);

		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
		if (n < 0)
			return false;
	}
	return false;
}

static bool sk_version(int fd)
{
	const char *caps = "{\"capabilities\":{\"max_msg_fds\":16,\"write_multiple\":true}}";
	uint8_t p[256];
	struct vfu_hdr h;
	struct vfu_version v = {0, 0};

	memcpy(p, &v, sizeof(v));
	memcpy(p + sizeof(v), caps, strlen(caps) + 1);
	if (sk_send(fd, VFU_CMD_VERSION, 1, p, sizeof(v) + strlen(caps) + 1, NULL, 0) < 0)
		return false;
	return get_reply_sk(fd, &h, p, sizeof(p), NULL) > 4 && h.flags == VFU_F_TYPE_REPLY &&
	       h.msg_id == 1;
}

/* Connects and negotiates; retries while the previous client is still
 * being torn down (a second client is refused meanwhile). */
static int sk_client(const char *path)
{
	for (int i = 0; i < 100; i++) {
		int fd = sk_connect(path);

		if (fd >= 0 && sk_version(fd))
			return fd;
		if (fd >= 0)
			close(fd);
		usleep(10000);
	}
	return -1;
}

static void *sock_client(void *arg)
{
	struct sock_test *st = arg;
	int fd = -1, fd2 = -1, mfd = -1, efd = -1, rfd = -1;
	uint8_t p[512];
	struct vfu_hdr h;

	fd = sk_client(st->path);
	CHECK(fd >= 0);
	/* a second client is refused while the first is served */
	fd2 = sk_connect(st->path);
	CHECK(fd2 >= 0);
	CHECK(sk_closed(fd2));
	close(fd2);
	fd2 = -1;
	/* DMA_MAP a memfd */
	mfd = memfd_create("guest", MFD_CLOEXEC);
	CHECK(mfd >= 0 && ftruncate(mfd, 1 << 20) == 0);
	{
		struct vfu_dma_map m = {sizeof(m), 3, 0, 0x40000000, 1 << 20};

		CHECK(sk_send(fd, VFU_CMD_DMA_MAP, 2, &m, sizeof(m), &mfd, 1) > 0);
		CHECK(get_reply_sk(fd, &h, NULL, 0, NULL) == 0 && h.msg_id == 2 &&
		      h.flags == VFU_F_TYPE_REPLY);
	}
	/* GET_INFO, header and payload in two writes */
	{
		struct vfu_device_info i = {sizeof(i)};
		struct vfu_hdr hh = {.msg_id = 3, .cmd = VFU_CMD_DEVICE_GET_INFO,
				     .size = sizeof(hh) + sizeof(i)};

		CHECK(send(fd, &hh, 10, MSG_NOSIGNAL) == 10);
		usleep(10000);
		CHECK(send(fd, (uint8_t *)&hh + 10, 6, MSG_NOSIGNAL) == 6);
		usleep(10000);
		CHECK(send(fd, &i, sizeof(i), MSG_NOSIGNAL) == sizeof(i));
		CHECK(get_reply_sk(fd, &h, &i, sizeof(i), NULL) == sizeof(i) && h.msg_id == 3);
		CHECK(i.num_regions == 9 && i.num_irqs == 5);
	}
	/* region info with the sparse mmap fd */
	{
		struct vfu_region_info r = {.argsz = 512, .index = 0};

		CHECK(sk_send(fd, VFU_CMD_DEVICE_GET_REGION_INFO, 4, &r, sizeof(r), NULL, 0) > 0);
		CHECK(get_reply_sk(fd, &h, p, sizeof(p), &rfd) > (int)sizeof(r));
		memcpy(&r, p, sizeof(r));
		CHECK(rfd >= 0 && (r.flags & VFU_REGION_INFO_FLAG_MMAP));
		close(rfd);
		rfd = -1;
	}
	/* config read */
	{
		struct vfu_region_rw r = {0, 7, 4};
		uint32_t id;

		CHECK(sk_send(fd, VFU_CMD_REGION_READ, 5, &r, sizeof(r), NULL, 0) > 0);
		CHECK(get_reply_sk(fd, &h, p, sizeof(p), NULL) == 20);
		memcpy(&id, p + 16, 4);
		CHECK(id == 0x00101b36);
	}
	/* INTx eventfd; the client triggers it */
	efd = eventfd(0, EFD_CLOEXEC);
	{
		struct vfu_irq_set s = {sizeof(s), VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER,
					0, 0, 1};
		struct vfu_irq_set t = {sizeof(t), VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER,
					0, 0, 1};
		uint64_t v = 0;

		CHECK(sk_send(fd, VFU_CMD_DEVICE_SET_IRQS, 6, &s, sizeof(s), &efd, 1) > 0);
		CHECK(get_reply_sk(fd, &h, NULL, 0, NULL) == 0 && h.msg_id == 6 &&
		      h.flags == VFU_F_TYPE_REPLY);
		CHECK(sk_send(fd, VFU_CMD_DEVICE_SET_IRQS, 7, &t, sizeof(t), NULL, 0) > 0);
		CHECK(get_reply_sk(fd, &h, NULL, 0, NULL) == 0 && h.msg_id == 7);
		CHECK(read(efd, &v, 8) == 8 && v == 1);
	}
	/* RESET */
	CHECK(sk_send(fd, VFU_CMD_DEVICE_RESET, 8, NULL, 0, NULL, 0) > 0);
	CHECK(get_reply_sk(fd, &h, NULL, 0, NULL) == 0 && h.msg_id == 8);
	/* hang up; the next client gets the device back */
	close(fd);
	fd = sk_client(st->path);
	CHECK(fd >= 0);
	{
		struct vfu_region_rw r = {0, 7, 2};

		CHECK(sk_send(fd, VFU_CMD_REGION_READ, 9, &r, sizeof(r), NULL, 0) > 0);
		CHECK(get_reply_sk(fd, &h, p, sizeof(p), NULL) == 18 && h.msg_id == 9);
	}
	/* seventeen fds on one message: closed */
	{
		int many[17];

		for (int i = 0; i < 17; i++)
			many[i] = efd;
		CHECK(sk_send(fd, VFU_CMD_DEVICE_RESET, 10, NULL, 0, many, 17) > 0);
		CHECK(sk_closed(fd));
		close(fd);
	}
	/* a huge message: closed */
	fd = sk_client(st->path);
	CHECK(fd >= 0);
	{
		struct vfu_hdr hh = {.msg_id = 11, .cmd = VFU_CMD_REGION_WRITE, .size = 64u << 20};

		CHECK(send(fd, &hh, sizeof(hh), MSG_NOSIGNAL) == sizeof(hh));
		CHECK(sk_closed(fd));
		close(fd);
	}
	/* hang-up halfway through a message with an fd */
	fd = sk_client(st->path);
	CHECK(fd >= 0);
	{
		struct vfu_dma_map m = {sizeof(m), 3, 0, 0x40000000, 1 << 20};
		struct vfu_hdr hh = {.msg_id = 12, .cmd = VFU_CMD_DMA_MAP,
				     .size = sizeof(hh) + sizeof(m)};
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} u;
		struct iovec iov = {&hh, sizeof(hh)};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
				    .msg_controllen = sizeof(u.buf)};
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &mfd, sizeof(int));
		CHECK(sendmsg(fd, &mh, MSG_NOSIGNAL) == sizeof(hh));
		close(fd);
	}
	/* and a last one, left connected for destroy */
	fd = sk_client(st->path);
	CHECK(fd >= 0);
	{
		struct vfu_dma_map m = {sizeof(m), 3, 0, 0x40000000, 1 << 20};

		CHECK(sk_send(fd, VFU_CMD_DMA_MAP, 13, &m, sizeof(m), &mfd, 1) > 0);
		CHECK(get_reply_sk(fd, &h, NULL, 0, NULL) == 0 && h.msg_id == 13);
	}
out:
	if (fd2 >= 0)
		close(fd2);
	if (mfd >= 0)
		close(mfd);
	if (efd >= 0)
		close(efd);
	if (rfd >= 0)
		close(rfd);
	/* fd stays open: the server is destroyed with a client attached */
	st->result = st->result ? st->result : 0;
	zoc_reactors_stop();
	if (fd >= 0) {
		usleep(50000);
		close(fd);
	}
	return NULL;
}

static bool g_destroyed;

static void destroyed(void *arg)
{
	g_destroyed = true;
}

static void test_socket(void **state)
{
	struct sock_test st = {0};
	struct zoc_reactor_opts o = {0};
	struct zoc_vfu_server *s;
	struct stat sb;
	pthread_t th;
	json_t *info;
	int nfd;

	conn_end();
	nfd = count_fds();
	snprintf(st.path, sizeof(st.path), "/tmp/zoc-test-vfu-%d.sock", (int)getpid());
	assert_int_equal(zoc_reactors_init(&o), 0);
	s = zoc_vfu_server_create(st.path, g_f);
	assert_non_null(s);
	assert_string_equal(zoc_vfu_server_path(s), st.path);
	assert_int_equal(stat(st.path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(pthread_create(&th, NULL, sock_client, &st), 0);
	assert_int_equal(zoc_reactors_run(), 0);
	pthread_join(th, NULL);
	info = zoc_vfu_server_info(s);
	assert_non_null(info);
	assert_true(json_integer_value(json_object_get(info, "connections")) >= 4);
	json_decref(info);
	g_destroyed = false;
	zoc_vfu_server_destroy(s, destroyed, NULL);
	assert_true(g_destroyed);
	zoc_reactors_fini();
	if (st.result)
		fail_msg("socket client failed at line %d", st.result);
	assert_int_equal(access(st.path, F_OK), -1);
	assert_int_equal(count_fds(), nfd);
	conn_new();
}

static void test_server_create_errors(void **state)
{
	char path[200];

	memset(path, 'a', sizeof(path) - 1);
	path[sizeof(path) - 1] = 0;
	assert_null(zoc_vfu_server_create(path, g_f));
	assert_null(zoc_vfu_server_create("/tmp", g_f));
	assert_int_equal(errno, EEXIST);
	assert_null(zoc_vfu_server_create("/tmp/x.sock", NULL));
}


/* ------------------------------------------------------------------ */
/* server -> client DMA_READ / DMA_WRITE (maps without an fd)           */

#define RIOVA 0x100000000ull
#define RSIZE (1u << 20)

struct copy {
	struct zoc_mem_io io;
	int status;
	int ncb;
};

static void copy_cb(struct zoc_mem_io *io, int status)
{
	struct copy *k = (struct copy *)io;

	k->status = status;
	k->ncb++;
}

static int copy_start(struct copy *k, uint64_t gpa, void *buf, uint64_t len, bool to_guest)
{
	memset(k, 0, sizeof(*k));
	k->status = 1;
	k->io = (struct zoc_mem_io){.gpa = gpa, .buf = buf, .len = len, .to_guest = to_guest,
				    .cb = copy_cb};
	return zoc_mem_io_submit(g_fake.mem, &k->io);
}

/* Reads the server's next request: its header and payload. */
static int get_req(struct vfu_hdr *h, struct vfu_dma_rw *rw, uint8_t *data, size_t max)
{
	static uint8_t p[MAX_MSG];
	int n = get_reply(h, p, sizeof(p), NULL);

	if (n < (int)sizeof(*rw))
		return -1;
	memcpy(rw, p, sizeof(*rw));
	if (data)
		memcpy(data, p + sizeof(*rw), ZOC_MIN((size_t)n - sizeof(*rw), max));
	return n;
}

/* Feeds a reply with id and cmd and payload rw + data. */
static int feed_reply(uint16_t id, uint16_t cmd, uint32_t flags, uint32_t err,
		      const struct vfu_dma_rw *rw, const void *data, size_t dlen)
{
	struct vfu_hdr h = {.msg_id = id, .cmd = cmd, .flags = VFU_F_TYPE_REPLY | flags,
			    .error = err};
	size_t n = sizeof(h);

	if (rw) {
		memcpy(g_buf + n, rw, sizeof(*rw));
		n += sizeof(*rw);
	}
	if (dlen) {
		memcpy(g_buf + n, data, dlen);
		n += dlen;
	}
	h.size = (uint32_t)n;
	memcpy(g_buf, &h, sizeof(h));
	return zoc_vfu_conn_feed(g_c, g_buf, n, NULL, 0);
}

/* VERSION (client takes 4 KiB per message), a remote map and a mapped one. */
static uint8_t *remote_setup(int *fd_out)
{
	int fd = memfd(1 << 20);
	uint8_t *host = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	assert_true(host != MAP_FAILED);
	do_version("{\"capabilities\":{\"max_data_xfer_size\":4096}}");
	dma_map(RIOVA, RSIZE, 0, -1, 0);
	dma_map(RIOVA + RSIZE, 1 << 20, 0, dup(fd), 0); /* right after it, mapped */
	assert_non_null(g_fake.mem);
	*fd_out = fd;
	return host;
}

static void test_dma_rw(void **state)
{
	static uint8_t guest[3 * 4096 + 100], buf[3 * 4096 + 100];
	struct vfu_hdr h;
	struct vfu_dma_rw rw;
	struct copy k;
	uint64_t addr;
	uint8_t *host;
	int fd;

	host = remote_setup(&fd);
	for (size_t i = 0; i < sizeof(guest); i++)
		guest[i] = (uint8_t)(i * 7 + 1);
	/* a read of 3 pages + 100 bytes: 4 DMA_READs of <= 4 KiB, all in flight */
	assert_int_equal(copy_start(&k, RIOVA + 0x10, buf, sizeof(buf), false), 0);
	assert_int_equal(k.ncb, 0);
	addr = RIOVA + 0x10;
	for (int i = 0; i < 4; i++) {
		uint64_t cnt = i < 3 ? 4096 : 100;

		assert_int_equal(get_req(&h, &rw, NULL, 0), (int)sizeof(rw));
		assert_int_equal(h.cmd, VFU_CMD_DMA_READ);
		assert_int_equal(h.flags, VFU_F_TYPE_COMMAND);
		assert_int_equal(rw.addr, addr);
		assert_int_equal(rw.count, cnt);
		/* answered at once; the next request follows the reply */
		assert_int_equal(feed_reply(h.msg_id, VFU_CMD_DMA_READ, 0, 0, &rw,
					    guest + (addr - RIOVA - 0x10), cnt), 0);
		addr += cnt;
	}
	assert_int_equal(k.ncb, 1);
	assert_int_equal(k.status, 0);
	assert_memory_equal(buf, guest, sizeof(buf));
	assert_true(no_reply_pending());
	/* a write spanning the remote map's end and the mapped one after it:
	 * one DMA_WRITE for the remote part, a memcpy for the rest */
	memset(buf, 0xab, sizeof(buf));
	assert_int_equal(copy_start(&k, RIOVA + RSIZE - 1000, buf, 3000, true), 0);
	{
		uint8_t d[1000];

		assert_int_equal(get_req(&h, &rw, d, sizeof(d)), (int)(sizeof(rw) + 1000));
		assert_int_equal(h.cmd, VFU_CMD_DMA_WRITE);
		assert_int_equal(rw.addr, RIOVA + RSIZE - 1000);
		assert_int_equal(rw.count, 1000);
		assert_int_equal(d[0], 0xab);
		assert_int_equal(d[999], 0xab);
		assert_int_equal(k.ncb, 0);
		assert_int_equal(feed_reply(h.msg_id, VFU_CMD_DMA_WRITE, 0, 0, &rw, NULL, 0), 0);
	}
	assert_int_equal(k.ncb, 1);
	assert_int_equal(k.status, 0);
	assert_int_equal(host[0], 0xab);
	assert_int_equal(host[1999], 0xab);
	assert_int_equal(host[2000], 0);
	/* outside every map, read-only target: refused before anything is sent */
	assert_int_equal(copy_start(&k, 0x900000000ull, buf, 8, false), -EFAULT);
	assert_int_equal(copy_start(&k, RIOVA + RSIZE + (1 << 20) - 4, buf, 8, false), -EFAULT);
	assert_true(no_reply_pending());
	/* an error reply fails that copy, the connection stays */
	assert_int_equal(copy_start(&k, RIOVA, buf, 16, false), 0);
	assert_int_equal(get_req(&h, &rw, NULL, 0), (int)sizeof(rw));
	assert_int_equal(feed_reply(h.msg_id, VFU_CMD_DMA_READ, VFU_F_ERROR, EFAULT, NULL, NULL, 0),
			 0);
	assert_int_equal(k.ncb, 1);
	assert_int_equal(k.status, -EIO);
	/* a late reply (to that id again) is dropped, not fatal */
	assert_int_equal(feed_reply(h.msg_id, VFU_CMD_DMA_READ, 0, 0, &rw, guest, 16), 0);
	/* the connection still serves requests */
	cfg_write(0x4, "\x06\x00", 2);
	munmap(host, 1 << 20);
	close(fd);
}

/* Hostile replies: each fails the copy and (but an error or short reply)
 * closes the connection. */
static void test_dma_rw_hostile(void **state)
{
	static const struct {
		const char *what;
		int kind;
	} cases[] = {
		{"wrong id", 0},       {"wrong cmd", 1},      {"short payload", 2},
		{"wrong addr", 3},     {"oversized data", 4}, {"reply with fd", 5},
		{"no-reply flag", 6},  {"short count", 7},    {"never answered", 8},
	};
	uint8_t buf[64] = {0}, data[128] = {0};

	for (size_t ci = 0; ci < ZOC_ARRAY_SIZE(cases); ci++) {
		struct vfu_hdr h;
		struct vfu_dma_rw rw;
		struct copy k;
		uint8_t *host;
		int fd, rc = 0;

		if (ci) {
			conn_end();
			conn_new();
		}
		host = remote_setup(&fd);
		assert_int_equal(copy_start(&k, RIOVA + 64, buf, 64, false), 0);
		assert_int_equal(get_req(&h, &rw, NULL, 0), (int)sizeof(rw));
		switch (cases[ci].kind) {
		case 0:
			rc = feed_reply((uint16_t)(h.msg_id + 100), VFU_CMD_DMA_READ, 0, 0, &rw, data, 64);
			break;
		case 1:
			rc = feed_reply(h.msg_id, VFU_CMD_DMA_WRITE, 0, 0, &rw, NULL, 0);
			break;
		case 2:
			rc = feed_reply(h.msg_id, VFU_CMD_DMA_READ, 0, 0, NULL, data, 8);
			break;
		case 3:
			rw.addr += 8;
			rc = feed_reply(h.msg_id, VFU_CMD_DMA_READ, 0, 0, &rw, data, 64);
			break;
		case 4:
			rc = feed_reply(h.msg_id, VFU_CMD_DMA_READ, 0, 0, &rw, data, 128);
			break;
		case 5: {
			struct vfu_hdr r = {.msg_id = h.msg_id, .cmd = VFU_CMD_DMA_READ,
					    .flags = VFU_F_TYPE_REPLY,
					    .size = (uint32_t)(sizeof(r) + sizeof(rw) + 64)};
			int efd = eventfd(0, EFD_CLOEXEC);

			memcpy(g_buf, &r, sizeof(r));
			memcpy(g_buf + sizeof(r), &rw, sizeof(rw));
			memcpy(g_buf + sizeof(r) + sizeof(rw), data, 64);
			rc = zoc_vfu_conn_feed(g_c, g_buf, r.size, &efd, 1);
			break;
		}
		case 6:
			rc = feed_reply(h.msg_id, VFU_CMD_DMA_READ, VFU_F_NO_REPLY, 0, &rw, data, 64);
			break;
		case 7:
			rw.count = 32; /* a short read, consistent: the copy fails, no close */
			rc = feed_reply(h.msg_id, VFU_CMD_DMA_READ, 0, 0, &rw, data, 32);
			break;
		case 8:
			assert_int_equal(k.ncb, 0);
			zoc_vfu_conn_dma_expire_test(g_c);
			rc = -ECONNRESET;
			break;
		}
		assert_int_equal(k.ncb, 1);
		assert_int_not_equal(k.status, 0);
		if (cases[ci].kind == 7) {
			assert_int_equal(rc, 0);
			assert_int_equal(k.status, -EIO);
		} else {
			/* the connection is gone: later messages are refused */
			assert_int_not_equal(rc, 0);
			assert_int_not_equal(feed(VFU_CMD_DEVICE_GET_INFO, 0, &(struct vfu_device_info){16},
						  16, NULL, 0),
					     0);
		}
		if (cases[ci].kind == 8)
			assert_int_equal(k.status, -ETIMEDOUT);
		munmap(host, 1 << 20);
		close(fd);
		/* drain whatever the server still wrote */
		while (!no_reply_pending())
			get_req(&h, &rw, NULL, 0);
	}
}

/* Copies in flight when a DMA_MAP quiesces the device, or the connection
 * closes, fail at once (nobody waits for a client that may be waiting for
 * us); copies after the close fail with -ENOTCONN. */
static void test_dma_rw_quiesce_close(void **state)
{
	uint8_t buf[64];
	struct vfu_hdr h;
	struct vfu_dma_rw rw;
	struct copy k, k2;
	struct zoc_mem *mem;
	uint8_t *host;
	int fd;

	host = remote_setup(&fd);
	assert_int_equal(copy_start(&k, RIOVA, buf, 64, false), 0);
	assert_int_equal(get_req(&h, &rw, NULL, 0), (int)sizeof(rw));
	dma_map(0x700000000ull, 4096, 0, -1, 0);
	assert_int_equal(k.ncb, 1);
	assert_int_equal(k.status, -EAGAIN);
	/* its late reply is dropped */
	assert_int_equal(feed_reply(h.msg_id, VFU_CMD_DMA_READ, 0, 0, &rw, buf, 64), 0);
	/* 20 copies: 16 in flight, 4 queued; the close fails them all */
	{
		static struct copy many[20];

		for (int i = 0; i < 20; i++) {
			memset(&many[i], 0, sizeof(many[i]));
			many[i].io = (struct zoc_mem_io){.gpa = RIOVA, .buf = buf, .len = 8,
							 .cb = copy_cb};
			assert_int_equal(zoc_mem_io_submit(g_fake.mem, &many[i].io), 0);
		}
		for (int i = 0; i < 16; i++)
			assert_int_equal(get_req(&h, &rw, NULL, 0), (int)sizeof(rw));
		assert_true(no_reply_pending());
		mem = g_fake.mem;
		zoc_mem_get(mem);
		conn_end();
		for (int i = 0; i < 20; i++) {
			assert_int_equal(many[i].ncb, 1);
			assert_int_equal(many[i].status, -ENOTCONN);
		}
	}
	/* the device still holds an old table: copies fail, nothing crashes */
	memset(&k2, 0, sizeof(k2));
	k2.io = (struct zoc_mem_io){.gpa = RIOVA, .buf = buf, .len = 8, .cb = copy_cb};
	assert_int_equal(zoc_mem_io_submit(mem, &k2.io), 0);
	assert_int_equal(k2.ncb, 1);
	assert_int_equal(k2.status, -ENOTCONN);
	zoc_mem_put(mem);
	munmap(host, 1 << 20);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_version),
		T(test_version_no_caps),
		T(test_device_info),
		T(test_region_info),
		T(test_no_mmap_without_fds),
		T(test_config_and_bars),
		T(test_write_multi),
		T(test_dma),
		T(test_dma_async),
		T(test_dma_rw),
		T(test_dma_rw_hostile),
		T(test_dma_rw_quiesce_close),
		T(test_irqs),
		T(test_reset),
		T(test_before_version),
		T(test_bad_versions),
		T(test_framing),
		T(test_slow_reader),
		T(test_socket),
		T(test_server_create_errors),
#undef T
	};

	zoc_log_set_level(getenv("ZOC_TEST_VERBOSE") ? ZOC_LOG_DEBUG : ZOC_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
