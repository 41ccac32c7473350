/* SPDX-License-Identifier: MIT */
/*
 * zoc_vbus_probe - exercises /dev/zoc-vbus without zocd (tests/e2e/vbus_nvme.sh
 * runs it inside the guest; built statically on the host).
 *
 *   zoc_vbus_probe hostile        bad ioctls and images are refused
 *   zoc_vbus_probe nvme [SECS]    an NVMe-looking function whose registers
 *                                 say "not ready": the host's nvme driver
 *                                 binds, programs MSI-X, the admin queue
 *                                 (bus addresses must lie in the DMA pool)
 *                                 and CC.EN; the probe sets RDY, fails the
 *                                 first admin command through the CQ and
 *                                 MSI-X vector 0 (the driver must consume it)
 *                                 and removes the function
 *   zoc_vbus_probe revoke         maps BAR0 and the DMA pool; UNPLUG keeps
 *                                 them usable, REMOVE revokes them (stores
 *                                 and loads get SIGBUS, also once a new
 *                                 function has the same window space)
 *
 * Prints "ZOC-VBUS ..." lines; exit 0 when every check passed.
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../zoc_vbus_uapi.h"

#define NVEC 4
#define DMA_SIZE (4u << 20)

static int failures;

#define CHECK(cond, ...)                                                  \
	do {                                                              \
		if (!(cond)) {                                            \
			printf("ZOC-VBUS FAIL %s:%d: ", __func__, __LINE__); \
			printf(__VA_ARGS__);                              \
			printf("\n");                                     \
			failures++;                                       \
		}                                                         \
	} while (0)

struct image {
	uint8_t cfg[ZOC_VBUS_CFG_SIZE];
	uint8_t wmask[ZOC_VBUS_CFG_SIZE];
	uint8_t w1c[ZOC_VBUS_CFG_SIZE];
};

static void put16(uint8_t *b, unsigned o, uint16_t v)
{
	b[o] = v;
	b[o + 1] = v >> 8;
}

static void put32(uint8_t *b, unsigned o, uint32_t v)
{
	put16(b, o, v);
	put16(b, o + 2, v >> 16);
}

/* What zocd's NVMe function looks like, without MSI and INTx. */
static void nvme_image(struct image *im, struct zoc_vbus_create *c)
{
	memset(im, 0, sizeof(*im));
	memset(c, 0, sizeof(*c));
	put16(im->cfg, 0x00, 0x5a4f);
	put16(im->cfg, 0x02, 0x4e56);
	put16(im->cfg, 0x06, 0x0010);           /* capability list */
	put32(im->cfg, 0x08, 0x01080200);       /* class 010802, rev 0 */
	put32(im->cfg, 0x10, 0x4);              /* BAR0 64-bit memory */
	put16(im->cfg, 0x2c, 0x5a4f);
	put16(im->cfg, 0x2e, 0x4e56);
	im->cfg[0x34] = 0x40;
	im->cfg[0x40] = 0x11;                   /* MSI-X */
	im->cfg[0x41] = 0;
	put16(im->cfg, 0x42, NVEC - 1);
	put32(im->cfg, 0x44, 0x0 | 4);          /* table in BAR4 at 0 */
	put32(im->cfg, 0x48, 0x1000 | 4);       /* PBA in BAR4 at 0x1000 */
	put16(im->wmask, 0x04, 0x0547);
	im->w1c[0x07] = 0xf9;
	im->wmask[0x3c] = 0xff;
	c->cfg = (uintptr_t)im->cfg;
	c->wmask = (uintptr_t)im->wmask;
	c->w1cmask = (uintptr_t)im->w1c;
	c->bar_size[0] = 16384;
	c->bar_size[4] = 8192;
	c->dma_size = DMA_SIZE;
	c->msix_vectors = NVEC;
}

static int open_bus(void)
{
	int fd = open("/dev/zoc-vbus", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		printf("ZOC-VBUS FAIL open /dev/zoc-vbus: %s\n", strerror(errno));
		exit(1);
	}
	return fd;
}

/* CREATE with a change applied: expect errno `want`. */
static void expect_create(const char *what, int want,
			  void (*mod)(struct image *, struct zoc_vbus_create *))
{
	static struct image im;
	struct zoc_vbus_create c;
	int fd = open_bus(), rc;

	nvme_image(&im, &c);
	mod(&im, &c);
	rc = ioctl(fd, ZOC_VBUS_CREATE, &c);
	CHECK(rc < 0 && errno == want, "%s: rc %d errno %d (%s), want errno %d", what, rc,
	      rc < 0 ? errno : 0, rc < 0 ? strerror(errno) : "-", want);
	close(fd);
}

static void m_bar_npot(struct image *im, struct zoc_vbus_create *c) { c->bar_size[0] = 12288; }
static void m_bar_small(struct image *im, struct zoc_vbus_create *c) { c->bar_size[0] = 16; }
static void m_bar_huge(struct image *im, struct zoc_vbus_create *c) { c->bar_size[0] = 1ull << 40; }
static void m_bar_upper(struct image *im, struct zoc_vbus_create *c) { c->bar_size[1] = 4096; }
static void m_bar_io(struct image *im, struct zoc_vbus_create *c) { put32(im->cfg, 0x10, 1); }
static void m_bar5_64(struct image *im, struct zoc_vbus_create *c)
{
	c->bar_size[5] = 4096;
	put32(im->cfg, 0x24, 4);
}
static void m_vec(struct image *im, struct zoc_vbus_create *c) { c->msix_vectors = NVEC + 1; }
static void m_vec_none(struct image *im, struct zoc_vbus_create *c) { c->msix_vectors = 0; }
static void m_tbl_out(struct image *im, struct zoc_vbus_create *c) { put32(im->cfg, 0x44, 0x1ff8 | 4); }
static void m_tbl_bar(struct image *im, struct zoc_vbus_create *c) { put32(im->cfg, 0x44, 2); }
static void m_pba_overlap(struct image *im, struct zoc_vbus_create *c) { put32(im->cfg, 0x48, 0x10 | 4); }
static void m_cap_loop(struct image *im, struct zoc_vbus_create *c) { im->cfg[0x41] = 0x40; }
static void m_cap_low(struct image *im, struct zoc_vbus_create *c) { im->cfg[0x34] = 0x20; }
static void m_msi(struct image *im, struct zoc_vbus_create *c) { im->cfg[0x40] = 0x05; }
static void m_vendor(struct image *im, struct zoc_vbus_create *c) { put16(im->cfg, 0, 0xffff); }
static void m_dma_small(struct image *im, struct zoc_vbus_create *c) { c->dma_size = 4096; }
static void m_dma_odd(struct image *im, struct zoc_vbus_create *c) { c->dma_size = DMA_SIZE + 1; }
static void m_dma_huge(struct image *im, struct zoc_vbus_create *c) { c->dma_size = 1ull << 40; }
static void m_flags(struct image *im, struct zoc_vbus_create *c) { c->flags = 1; }
static void m_badptr(struct image *im, struct zoc_vbus_create *c) { c->cfg = 16; }

static int hostile(void)
{
	struct zoc_vbus_irq irq = { .vector = 0, .fd = -1 };
	struct zoc_vbus_cfg_store st = { 0 };
	struct zoc_vbus_bar_info bi = { 0 };
	struct zoc_vbus_create c;
	static struct image im;
	int fd, rc;
	void *p;

	expect_create("BAR size not a power of two", EINVAL, m_bar_npot);
	expect_create("BAR smaller than a page", EINVAL, m_bar_small);
	expect_create("BAR larger than the window", EINVAL, m_bar_huge);
	expect_create("size for the upper half of a 64-bit BAR", EINVAL, m_bar_upper);
	expect_create("I/O BAR", EINVAL, m_bar_io);
	expect_create("64-bit BAR in slot 5", EINVAL, m_bar5_64);
	expect_create("vector count differs from the capability", EINVAL, m_vec);
	expect_create("MSI-X capability without vectors", EINVAL, m_vec_none);
	expect_create("MSI-X table past its BAR", EINVAL, m_tbl_out);
	expect_create("MSI-X table in an unused BAR", EINVAL, m_tbl_bar);
	expect_create("PBA overlapping the table", EINVAL, m_pba_overlap);
	expect_create("capability loop", EINVAL, m_cap_loop);
	expect_create("capability in the header", EINVAL, m_cap_low);
	expect_create("MSI capability", EINVAL, m_msi);
	expect_create("vendor 0xffff", EINVAL, m_vendor);
	expect_create("DMA pool too small", EINVAL, m_dma_small);
	expect_create("DMA pool not page-aligned", EINVAL, m_dma_odd);
	expect_create("DMA pool too large", EINVAL, m_dma_huge);
	expect_create("unknown flags", EINVAL, m_flags);
	expect_create("bad image pointer", EFAULT, m_badptr);

	fd = open_bus();
	CHECK(ioctl(fd, ZOC_VBUS_START) < 0 && errno == EINVAL, "START before CREATE");
	CHECK(ioctl(fd, ZOC_VBUS_REMOVE) < 0 && errno == ENODEV, "REMOVE before CREATE");
	CHECK(ioctl(fd, ZOC_VBUS_UNPLUG) < 0 && errno == ENODEV, "UNPLUG before CREATE");
	CHECK(ioctl(fd, ZOC_VBUS_RESET_DONE) < 0 && errno == ENODEV, "RESET_DONE before CREATE");
	CHECK(ioctl(fd, ZOC_VBUS_SET_IRQ, &irq) < 0 && errno == ENODEV, "SET_IRQ before CREATE");
	CHECK(ioctl(fd, _IO(ZOC_VBUS_IOC_MAGIC, 99)) < 0 && errno == ENOTTY, "unknown ioctl");
	CHECK(ioctl(fd, ZOC_VBUS_CREATE, (void *)16) < 0 && errno == EFAULT, "CREATE bad pointer");
	p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, ZOC_VBUS_MMAP_BAR(0));
	CHECK(p == MAP_FAILED, "mmap before CREATE");

	nvme_image(&im, &c);
	rc = ioctl(fd, ZOC_VBUS_CREATE, &c);
	CHECK(rc == 0, "CREATE of a good image: %s", strerror(errno));
	if (rc == 0) {
		CHECK(ioctl(fd, ZOC_VBUS_CREATE, &c) < 0 && errno == EBUSY, "second CREATE");
		CHECK(ioctl(fd, ZOC_VBUS_RESET_DONE) < 0 && errno == EINVAL, "RESET_DONE without FLR");
		irq.vector = NVEC;
		irq.fd = -1;
		CHECK(ioctl(fd, ZOC_VBUS_SET_IRQ, &irq) < 0 && errno == EINVAL, "vector out of range");
		irq.vector = 0;
		irq.fd = 0; /* stdin: not an eventfd */
		CHECK(ioctl(fd, ZOC_VBUS_SET_IRQ, &irq) < 0, "SET_IRQ with a non-eventfd");
		irq.fd = 12345;
		CHECK(ioctl(fd, ZOC_VBUS_SET_IRQ, &irq) < 0 && errno == EBADF, "SET_IRQ bad fd");
		irq.fd = -7;
		CHECK(ioctl(fd, ZOC_VBUS_SET_IRQ, &irq) < 0 && errno == EINVAL, "SET_IRQ fd -7");
		st.offset = 0;
		st.len = 2;
		CHECK(ioctl(fd, ZOC_VBUS_CFG_STORE, &st) < 0 && errno == EINVAL, "store vendor id");
		st.offset = 0x42;
		CHECK(ioctl(fd, ZOC_VBUS_CFG_STORE, &st) < 0 && errno == EINVAL, "store MSI-X cap");
		st.offset = 4095;
		st.len = 2;
		CHECK(ioctl(fd, ZOC_VBUS_CFG_STORE, &st) < 0 && errno == EINVAL, "store past the end");
		st.offset = 0x06;
		st.len = 2;
		st.value = 0x0010;
		CHECK(ioctl(fd, ZOC_VBUS_CFG_STORE, &st) == 0, "store status: %s", strerror(errno));
		bi.bar = 6;
		CHECK(ioctl(fd, ZOC_VBUS_BAR_INFO, &bi) < 0 && errno == EINVAL, "BAR_INFO bar 6");
		p = mmap(NULL, 32768, PROT_READ, MAP_SHARED, fd, ZOC_VBUS_MMAP_BAR(0));
		CHECK(p == MAP_FAILED, "mmap larger than BAR0");
		p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, ZOC_VBUS_MMAP_BAR(2));
		CHECK(p == MAP_FAILED, "mmap of an unused BAR");
		p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, ZOC_VBUS_MMAP_BAR(0) + 4096);
		CHECK(p == MAP_FAILED, "mmap at an offset inside a BAR");
		p = mmap(NULL, DMA_SIZE * 2, PROT_READ, MAP_SHARED, fd, ZOC_VBUS_MMAP_DMA);
		CHECK(p == MAP_FAILED, "mmap larger than the DMA pool");
		p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, ZOC_VBUS_MMAP_BAR(0));
		CHECK(p == MAP_FAILED, "private mmap");
		CHECK(ioctl(fd, ZOC_VBUS_REMOVE) == 0, "REMOVE: %s", strerror(errno));
		CHECK(ioctl(fd, ZOC_VBUS_REMOVE) < 0 && errno == ENODEV, "second REMOVE");
		CHECK(ioctl(fd, ZOC_VBUS_CREATE, &c) < 0 && errno == EBUSY, "CREATE after REMOVE");
	}
	close(fd);
	printf("ZOC-VBUS hostile done failures=%d\n", failures);
	return failures ? 1 : 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint32_t rd32(volatile uint8_t *b, unsigned o) { return *(volatile uint32_t *)(b + o); }
static uint64_t rd64(volatile uint8_t *b, unsigned o) { return rd32(b, o) | (uint64_t)rd32(b, o + 4) << 32; }

static int nvme(double secs)
{
	static struct image im;
	struct zoc_vbus_create c;
	struct zoc_vbus_event ev[16];
	struct zoc_vbus_bar_info bi = { .bar = 0 };
	volatile uint8_t *bar0, *bar4;
	uint8_t *pool;
	int fd, efd[NVEC], v, cfgw = 0, removed = 0;
	bool msix_on = false, cc_en = false;
	uint64_t asq = 0, acq = 0;
	uint32_t aqa = 0;
	double t0;

	fd = open_bus();
	nvme_image(&im, &c);
	if (ioctl(fd, ZOC_VBUS_CREATE, &c) < 0) {
		printf("ZOC-VBUS FAIL CREATE: %s\n", strerror(errno));
		return 1;
	}
	printf("ZOC-VBUS created %04x:%02x:%02x.%x\n", c.domain, c.bus, c.devfn >> 3, c.devfn & 7);
	CHECK(ioctl(fd, ZOC_VBUS_BAR_INFO, &bi) == 0 && bi.size == 16384, "BAR_INFO");
	bar0 = mmap(NULL, 16384, PROT_READ | PROT_WRITE, MAP_SHARED, fd, ZOC_VBUS_MMAP_BAR(0));
	bar4 = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, ZOC_VBUS_MMAP_BAR(4));
	pool = mmap(NULL, DMA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, ZOC_VBUS_MMAP_DMA);
	if (bar0 == MAP_FAILED || bar4 == MAP_FAILED || pool == MAP_FAILED) {
		printf("ZOC-VBUS FAIL mmap: %s\n", strerror(errno));
		return 1;
	}
	printf("ZOC-VBUS BAR0 at %#llx\n", (unsigned long long)bi.addr);
	CHECK(rd32(bar4, 12) == 1, "MSI-X vector 0 starts masked (ctrl %#x)", rd32(bar4, 12));
	/* CAP: MQES 63, CQR, TO 1 (500 ms), CSS NVM, MPSMAX 0; VS 1.4 */
	*(volatile uint32_t *)(bar0 + 0) = 63 | 1u << 16 | 1u << 24;
	*(volatile uint32_t *)(bar0 + 4) = 1u << (37 - 32);
	*(volatile uint32_t *)(bar0 + 8) = 0x10400;
	for (v = 0; v < NVEC; v++) {
		struct zoc_vbus_irq irq = { .vector = v };

		efd[v] = eventfd(0, EFD_CLOEXEC);
		irq.fd = efd[v];
		CHECK(ioctl(fd, ZOC_VBUS_SET_IRQ, &irq) == 0, "SET_IRQ %d: %s", v, strerror(errno));
	}
	CHECK(ioctl(fd, ZOC_VBUS_START) == 0, "START: %s", strerror(errno));

	t0 = now();
	while (now() - t0 < secs && !cc_en) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int i;

		if (poll(&pfd, 1, 10) > 0) {
			n = read(fd, ev, sizeof(ev));
			for (i = 0; n > 0 && i < n / (int)sizeof(ev[0]); i++) {
				if (ev[i].type == ZOC_VBUS_EV_CFG_WRITE) {
					cfgw++;
					if (ev[i].offset <= 0x43 && ev[i].offset + ev[i].len > 0x43 &&
					    (ev[i].value >> (8 * (0x43 - ev[i].offset))) & 0x80)
						msix_on = true;
				}
			}
		}
		if (rd32(bar0, 0x14) & 1) {
			cc_en = true;
			aqa = rd32(bar0, 0x24);
			asq = rd64(bar0, 0x28);
			acq = rd64(bar0, 0x30);
		}
	}
	/* the driver may have been faster than this loop: drain the rest */
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int i;

		if (poll(&pfd, 1, 0) <= 0)
			break;
		n = read(fd, ev, sizeof(ev));
		if (n <= 0)
			break;
		for (i = 0; i < n / (int)sizeof(ev[0]); i++) {
			if (ev[i].type != ZOC_VBUS_EV_CFG_WRITE)
				continue;
			cfgw++;
			if (ev[i].offset <= 0x43 && ev[i].offset + ev[i].len > 0x43 &&
			    (ev[i].value >> (8 * (0x43 - ev[i].offset))) & 0x80)
				msix_on = true;
		}
	}
	printf("ZOC-VBUS config-writes=%d msix=%d cc=%#x aqa=%#x asq=%#llx acq=%#llx\n", cfgw,
	       msix_on, rd32(bar0, 0x14), aqa, (unsigned long long)asq, (unsigned long long)acq);
	CHECK(cfgw > 0, "no config write reached user space");
	CHECK(msix_on, "the driver did not enable MSI-X");
	CHECK(cc_en, "the driver never set CC.EN within %.0f s", secs);
	CHECK(asq >= ZOC_VBUS_DMA_BASE && asq + 4096 <= ZOC_VBUS_DMA_BASE + DMA_SIZE,
	      "ASQ %#llx outside the DMA pool", (unsigned long long)asq);
	CHECK(acq >= ZOC_VBUS_DMA_BASE && acq + 4096 <= ZOC_VBUS_DMA_BASE + DMA_SIZE,
	      "ACQ %#llx outside the DMA pool", (unsigned long long)acq);
	printf("ZOC-VBUS msix0 addr=%#x data=%#x ctrl=%#x\n", rd32(bar4, 0), rd32(bar4, 8),
	       rd32(bar4, 12));
	CHECK((rd32(bar4, 0) >> 20) == 0xfee, "MSI-X entry 0 holds no MSI address");
	/* A signal on a masked vector sets its PBA bit. */
	if (rd32(bar4, 12) & 1) {
		uint64_t one = 1;

		CHECK(write(efd[1], &one, 8) == 8, "eventfd write");
		usleep(1000);
		CHECK(rd32(bar4, 0x1000) & 2, "masked vector 1 fired but PBA bit 1 is clear");
	}
	/* Ready: the driver submits its first admin command (Identify) and
	 * requests vector 0. Fail it with Internal Error through the CQ in
	 * the DMA pool and vector 0: the driver's interrupt handler consumes
	 * the entry and rings the CQ head doorbell.
	 */
	if (cc_en && asq >= ZOC_VBUS_DMA_BASE && asq + 64 <= ZOC_VBUS_DMA_BASE + DMA_SIZE &&
	    acq >= ZOC_VBUS_DMA_BASE && acq + 16 <= ZOC_VBUS_DMA_BASE + DMA_SIZE) {
		volatile uint32_t *sqe = (volatile uint32_t *)(pool + (asq - ZOC_VBUS_DMA_BASE));
		volatile uint32_t *cqe = (volatile uint32_t *)(pool + (acq - ZOC_VBUS_DMA_BASE));
		uint64_t one = 1;
		uint32_t cid;

		*(volatile uint32_t *)(bar0 + 0x1c) = 1; /* CSTS.RDY */
		for (t0 = now(); rd32(bar0, 0x1000) == 0 && now() - t0 < 20;)
			usleep(1000);
		CHECK(rd32(bar0, 0x1000) == 1, "admin SQ tail doorbell %u, want 1",
		      rd32(bar0, 0x1000));
		cid = sqe[0] >> 16;
		printf("ZOC-VBUS admin command opcode=%#x cid=%u msix0 ctrl=%#x\n", sqe[0] & 0xff,
		       cid, rd32(bar4, 12));
		cqe[0] = 0;
		cqe[1] = 0;
		cqe[2] = 1;                                  /* SQ head 1, SQ 0 */
		__sync_synchronize();
		cqe[3] = cid | 1u << 16 | (0x06u << 1) << 16; /* phase 1, Internal Error */
		__sync_synchronize();
		CHECK(write(efd[0], &one, 8) == 8, "eventfd write");
		for (t0 = now(); rd32(bar0, 0x1004) == 0 && now() - t0 < 10;)
			usleep(1000);
		printf("ZOC-VBUS cq-head-doorbell=%u pba=%#x\n", rd32(bar0, 0x1004),
		       rd32(bar4, 0x1000));
		CHECK(rd32(bar0, 0x1004) == 1,
		      "the driver never consumed the completion: MSI-X vector 0 not delivered");
	}
	/* Let the driver give up, then remove the function. */
	usleep(1500 * 1000);
	CHECK(ioctl(fd, ZOC_VBUS_REMOVE) == 0, "REMOVE: %s", strerror(errno));
	for (t0 = now(); !removed && now() - t0 < 5;) {
		ssize_t n = read(fd, ev, sizeof(ev));
		int i;

		for (i = 0; n > 0 && i < n / (int)sizeof(ev[0]); i++)
			removed |= ev[i].type == ZOC_VBUS_EV_REMOVED;
	}
	CHECK(removed, "no REMOVED event");
	for (v = 0; v < NVEC; v++)
		close(efd[v]);
	munmap((void *)bar0, 16384);
	munmap((void *)bar4, 8192);
	munmap(pool, DMA_SIZE);
	close(fd);
	printf("ZOC-VBUS nvme done failures=%d\n", failures);
	return failures ? 1 : 0;
}

/* A 4-byte store (or load) at p in a child: 0 if it completed, else the
 * signal that ended it. */
static int touch(volatile uint8_t *p, bool store)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		if (store)
			*(volatile uint32_t *)p = 0x5a5a5a5a;
		else
			(void)*(volatile uint32_t *)p;
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

static const char *how(int sig)
{
	return sig > 0 ? strsignal(sig) : sig == 0 ? "completed" : "fork failed";
}

static int revoke_test(void)
{
	static struct image im;
	struct zoc_vbus_bar_info bi = { .bar = 0 }, bi2 = { .bar = 0 };
	struct zoc_vbus_create c;
	volatile uint8_t *bar, *pool, *bar2;
	int fd = open_bus(), fd2, sig;

	nvme_image(&im, &c);
	if (ioctl(fd, ZOC_VBUS_CREATE, &c) < 0) {
		printf("ZOC-VBUS FAIL revoke: CREATE: %s\n", strerror(errno));
		return 1;
	}
	CHECK(ioctl(fd, ZOC_VBUS_BAR_INFO, &bi) == 0, "BAR_INFO: %s", strerror(errno));
	bar = mmap(NULL, 16384, PROT_READ | PROT_WRITE, MAP_SHARED, fd, ZOC_VBUS_MMAP_BAR(0));
	pool = mmap(NULL, DMA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, ZOC_VBUS_MMAP_DMA);
	if (bar == MAP_FAILED || pool == MAP_FAILED) {
		printf("ZOC-VBUS FAIL revoke: mmap: %s\n", strerror(errno));
		return 1;
	}
	*(volatile uint32_t *)(bar + 0x1000) = 0x12345678;
	*(volatile uint32_t *)(pool + 8192) = 0x9abcdef0;
	CHECK(*(volatile uint32_t *)(bar + 0x1000) == 0x12345678, "BAR0 store did not stick");
	CHECK(*(volatile uint32_t *)(pool + 8192) == 0x9abcdef0, "pool store did not stick");
	CHECK((sig = touch(bar + 0x1000, true)) == 0, "BAR0 store before removal: %s", how(sig));
	CHECK(ioctl(fd, ZOC_VBUS_UNPLUG) == 0, "UNPLUG: %s", strerror(errno));
	CHECK(ioctl(fd, ZOC_VBUS_UNPLUG) < 0 && errno == ENODEV, "second UNPLUG");
	CHECK((sig = touch(bar + 0x1000, true)) == 0, "BAR0 store after UNPLUG (mappings stay): %s",
	      how(sig));
	CHECK((sig = touch(pool + 8192, false)) == 0, "pool load after UNPLUG: %s", how(sig));
	CHECK(ioctl(fd, ZOC_VBUS_REMOVE) == 0, "REMOVE after UNPLUG: %s", strerror(errno));
	CHECK(ioctl(fd, ZOC_VBUS_REMOVE) < 0 && errno == ENODEV, "second REMOVE");
	CHECK((sig = touch(bar + 0x1000, true)) == SIGBUS, "BAR0 store after REMOVE: %s (want SIGBUS)",
	      how(sig));
	CHECK((sig = touch(bar, false)) == SIGBUS, "BAR0 load after REMOVE: %s (want SIGBUS)", how(sig));
	CHECK((sig = touch(pool + 8192, true)) == SIGBUS, "pool store after REMOVE: %s (want SIGBUS)",
	      how(sig));
	CHECK(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, ZOC_VBUS_MMAP_BAR(0)) == MAP_FAILED,
	      "mmap after REMOVE");

	/* A new function gets the same window space: the stale mapping still
	 * faults and the new BAR holds none of the old stores. */
	fd2 = open_bus();
	nvme_image(&im, &c);
	CHECK(ioctl(fd2, ZOC_VBUS_CREATE, &c) == 0, "second CREATE: %s", strerror(errno));
	CHECK(ioctl(fd2, ZOC_VBUS_BAR_INFO, &bi2) == 0, "BAR_INFO: %s", strerror(errno));
	bar2 = mmap(NULL, 16384, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, ZOC_VBUS_MMAP_BAR(0));
	CHECK(bar2 != MAP_FAILED, "mmap of the new BAR0: %s", strerror(errno));
	CHECK((sig = touch(bar + 0x1000, true)) == SIGBUS,
	      "stale BAR0 store with a new function at %#llx: %s (want SIGBUS)",
	      (unsigned long long)bi2.addr, how(sig));
	if (bar2 != MAP_FAILED)
		CHECK(*(volatile uint32_t *)(bar2 + 0x1000) == 0, "new BAR0 holds an old store (%#x)",
		      *(volatile uint32_t *)(bar2 + 0x1000));
	printf("ZOC-VBUS revoke: BAR0 %#llx, new function's BAR0 %#llx\n",
	       (unsigned long long)bi.addr, (unsigned long long)bi2.addr);
	if (bar2 != MAP_FAILED)
		munmap((void *)bar2, 16384);
	close(fd2);
	munmap((void *)bar, 16384);
	munmap((void *)pool, DMA_SIZE);
	close(fd);
	printf("ZOC-VBUS revoke done failures=%d\n", failures);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "hostile"))
		return hostile();
	if (argc >= 2 && !strcmp(argv[1], "nvme"))
		return nvme(argc >= 3 ? atof(argv[2]) : 30);
	if (argc >= 2 && !strcmp(argv[1], "revoke"))
		return revoke_test();
	fprintf(stderr, "usage: %s hostile | nvme [SECS] | revoke\n", argv[0]);
	return 2;
}
