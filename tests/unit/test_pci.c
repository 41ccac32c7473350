/* SPDX-License-Identifier: MIT */
/* test_pci.c - the PCI function model (src/pci/pci.c). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/log.h"
#include "core/reactor.h"
#include "pci/pci.h"

/* Layout documented in pci.c */
#define PM_OFF 0x40
#define MSI_OFF 0x50
#define MSIX_OFF 0x70
#define EXP_OFF 0x80

#define BAR0_SIZE 0x4000ull    /* 64-bit memory: registers + MSI-X */
#define BAR2_SIZE 0x100000ull  /* 32-bit prefetchable memory */
#define BAR3_SIZE 0x20ull      /* I/O */
#define BAR4_SIZE 0x200000000ull /* 64-bit, 8 GiB */
#define NVEC 70                /* two PBA words */
#define TABLE_OFF 0x2000
#define PBA_OFF 0x3000

/* ---- a fake device ---- */

struct piece {
	unsigned bar;
	uint64_t off;
	uint32_t len;
	bool is_write;
};

struct fake_dev {
	struct piece pieces[64];
	unsigned npieces;
	unsigned resets;
	unsigned cfg_writes;
	uint32_t last_cfg_off, last_cfg_len;
	uint8_t bar_mem[BAR0_SIZE];
};

static int fake_bar_access(struct zoc_pci_func *f, unsigned bar, uint64_t off, void *buf,
			   uint32_t len, bool is_write)
{
	struct fake_dev *d = zoc_pci_func_ctx(f);

	assert_true(len == 1 || len == 2 || len == 4 || len == 8);
	assert_int_equal(off & (len - 1), 0);
	assert_true(off + len <= zoc_pci_bar_size(f, bar));
	if (d->npieces < 64)
		d->pieces[d->npieces++] = (struct piece){bar, off, len, is_write};
	if (bar == 0) {
		if (is_write)
			memcpy(&d->bar_mem[off], buf, len);
		else
			memcpy(buf, &d->bar_mem[off], len);
	} else if (!is_write) {
		memset(buf, 0xa5, len);
	}
	return 0;
}

static void fake_cfg_written(struct zoc_pci_func *f, uint32_t off, uint32_t len)
{
	struct fake_dev *d = zoc_pci_func_ctx(f);

	d->cfg_writes++;
	d->last_cfg_off = off;
	d->last_cfg_len = len;
}

static void fake_reset(struct zoc_pci_func *f, zoc_pci_done_fn done, void *arg)
{
	struct fake_dev *d = zoc_pci_func_ctx(f);

	d->resets++;
	done(arg);
}

static const struct zoc_pci_ops fake_ops = {
	.bar_access = fake_bar_access,
	.cfg_written = fake_cfg_written,
	.reset = fake_reset,
};

static struct zoc_pci_desc full_desc(void)
{
	struct zoc_pci_desc d = {
		.vendor_id = 0x1b36,
		.device_id = 0x0010,
		.subsys_vendor_id = 0x1af4,
		.subsys_id = 0x1100,
		.revision = 0x02,
		.class_code = 0x010802,
		.msix_vectors = NVEC,
		.msix_bar = 0,
		.msix_table_offset = TABLE_OFF,
		.msix_pba_offset = PBA_OFF,
		.msi = true,
		.pcie = true,
		.intx_pin = 1,
		.ops = &fake_ops,
	};

	d.bars[0].size = BAR0_SIZE;
	d.bars[0].flags = ZOC_PCI_BAR_MEM64;
	d.bars[2].size = BAR2_SIZE;
	d.bars[2].flags = ZOC_PCI_BAR_PREFETCH;
	d.bars[3].size = BAR3_SIZE;
	d.bars[3].flags = ZOC_PCI_BAR_IO;
	d.bars[4].size = BAR4_SIZE;
	d.bars[4].flags = ZOC_PCI_BAR_MEM64 | ZOC_PCI_BAR_PREFETCH;
	return d;
}

struct fixture {
	struct fake_dev dev;
	struct zoc_pci_func *f;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	struct zoc_pci_desc d = full_desc();

	if (!fx)
		return -1;
	fx->f = zoc_pci_func_create(&d, &fx->dev);
	if (!fx->f)
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	zoc_pci_func_destroy(fx->f);
	free(fx);
	return 0;
}

/* ---- helpers ---- */

static uint32_t rd(struct zoc_pci_func *f, uint32_t off, uint32_t len)
{
	uint32_t v = 0;

	assert_int_equal(zoc_pci_cfg_read(f, off, &v, len), 0);
	return v;
}

static void wr(struct zoc_pci_func *f, uint32_t off, uint32_t v, uint32_t len)
{
	assert_int_equal(zoc_pci_cfg_write(f, off, &v, len), 0);
}

static int new_efd(void)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

/* Reads and resets an eventfd's counter (0 if not signalled). */
static uint64_t efd_take(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

static bool fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

/* Gives the model a dup of each of our eventfds, so the test keeps reading
 * its own copy while the model owns (and may close) the other. */
static void give_fd(struct zoc_pci_func *f, enum zoc_pci_irq_type t, uint32_t v, int efd)
{
	int d = fcntl(efd, F_DUPFD_CLOEXEC, 0);

	assert_true(d >= 0);
	assert_int_equal(zoc_pci_irq_set_fds(f, t, v, 1, &d), 0);
}

static uint32_t tbl_rd(struct zoc_pci_func *f, uint32_t v, uint32_t field)
{
	uint32_t x = 0;

	assert_int_equal(zoc_pci_bar_access(f, 0, TABLE_OFF + 16 * v + field, &x, 4, false), 0);
	return x;
}

static void tbl_wr(struct zoc_pci_func *f, uint32_t v, uint32_t field, uint32_t x)
{
	assert_int_equal(zoc_pci_bar_access(f, 0, TABLE_OFF + 16 * v + field, &x, 4, true), 0);
}

static uint64_t pba_rd(struct zoc_pci_func *f, unsigned word)
{
	uint64_t x = 0;

	assert_int_equal(zoc_pci_bar_access(f, 0, PBA_OFF + 8 * word, &x, 8, false), 0);
	return x;
}

static void msix_ctrl(struct zoc_pci_func *f, bool enable, bool fmask)
{
	wr(f, MSIX_OFF + 2, (enable ? 0x8000u : 0) | (fmask ? 0x4000u : 0), 2);
}

/* ---- create ---- */

static void test_create_rejects(void **state)
{
	struct zoc_pci_desc d;
	struct zoc_pci_func *f;

	(void)state;
	errno = 0;
	assert_null(zoc_pci_func_create(NULL, NULL));
	assert_int_equal(errno, EINVAL);

#define REJECT(stmt)                                          \
	do {                                                  \
		d = full_desc();                              \
		stmt;                                         \
		errno = 0;                                    \
		assert_null(zoc_pci_func_create(&d, NULL));   \
		assert_int_equal(errno, EINVAL);              \
	} while (0)

	REJECT(d.bars[2].size = 0x30000);                   /* not a power of two */
	REJECT(d.bars[2].size = 8);                         /* memory < 16 */
	REJECT(d.bars[3].size = 2);                         /* I/O < 4 */
	REJECT(d.bars[3].size = 0x20000);                   /* I/O > 64 KiB */
	REJECT(d.bars[3].flags |= ZOC_PCI_BAR_PREFETCH);    /* prefetchable I/O */
	REJECT(d.bars[3].flags |= ZOC_PCI_BAR_MEM64);       /* 64-bit I/O */
	REJECT(d.bars[2].size = 0x100000000ull);            /* 4 GiB in a 32-bit BAR */
	REJECT(d.bars[1].size = 16);                        /* upper half of BAR 0 taken */
	REJECT(d.bars[5].flags = ZOC_PCI_BAR_MEM64; d.bars[5].size = 4096;
	       d.bars[4].size = 0; d.bars[4].flags = 0);    /* 64-bit in slot 5 */
	REJECT(d.bars[1].flags = ZOC_PCI_BAR_PREFETCH);     /* flags without a size */
	REJECT(d.bars[2].flags |= 1u << 7);                 /* unknown flag */
	REJECT(d.msix_vectors = ZOC_PCI_MSIX_MAX_VECTORS + 1);
	REJECT(d.msix_bar = 1);                             /* upper half slot */
	REJECT(d.msix_bar = 6);
	REJECT(d.msix_bar = 3);                             /* I/O BAR */
	REJECT(d.msix_table_offset = 0x2004);               /* not 8-aligned */
	REJECT(d.msix_pba_offset = 0x3001);
	REJECT(d.msix_table_offset = 0x3c00);               /* table leaves the BAR */
	REJECT(d.msix_pba_offset = BAR0_SIZE - 8);          /* PBA (16 bytes) leaves it */
	REJECT(d.msix_pba_offset = 0x2000 + 16 * 69);       /* overlaps the table */
	REJECT(d.msix_pba_offset = 0x1ff8);                 /* overlaps the table start */
	REJECT(d.msix_table_offset = 0xfffffff8u);          /* offset + size overflows the BAR */
	REJECT(d.class_code = 0x1000000);
	REJECT(d.intx_pin = 5);
#undef REJECT

	/* The limits themselves are fine. */
	d = full_desc();
	d.msix_vectors = ZOC_PCI_MSIX_MAX_VECTORS;
	d.msix_table_offset = 0;
	d.msix_pba_offset = 0x8000;
	d.bars[0].size = 0x10000;
	d.bars[3].size = 4;
	d.bars[2].size = 16;
	f = zoc_pci_func_create(&d, NULL);
	assert_non_null(f);
	assert_int_equal(zoc_pci_irq_count(f, ZOC_PCI_IRQ_MSIX), ZOC_PCI_MSIX_MAX_VECTORS);
	assert_int_equal(rd(f, MSIX_OFF + 2, 2) & 0x7ff, ZOC_PCI_MSIX_MAX_VECTORS - 1);
	zoc_pci_func_destroy(f);

	/* A bare function: no BARs, no interrupts, no ops. */
	memset(&d, 0, sizeof(d));
	f = zoc_pci_func_create(&d, NULL);
	assert_non_null(f);
	assert_int_equal(zoc_pci_irq_count(f, ZOC_PCI_IRQ_INTX), 0);
	assert_int_equal(zoc_pci_irq_count(f, ZOC_PCI_IRQ_MSI), 0);
	assert_int_equal(zoc_pci_irq_count(f, ZOC_PCI_IRQ_MSIX), 0);
	assert_false(zoc_pci_irq_raise(f, 0));
	zoc_pci_func_destroy(f);
	zoc_pci_func_destroy(NULL);
}

/* ---- header ---- */

static void test_header(void **state)
{
	struct fixture *fx = *state;
	struct zoc_pci_func *f = fx->f;

	assert_ptr_equal(zoc_pci_func_ctx(f), &fx->dev);
	assert_int_equal(zoc_pci_func_desc(f)->device_id, 0x0010);
	assert_int_equal(rd(f, 0x00, 4), 0x00101b36);
	assert_int_equal(rd(f, 0x00, 2), 0x1b36);
	assert_int_equal(rd(f, 0x02, 2), 0x0010);
	assert_int_equal(rd(f, 0x01, 1), 0x1b);
	assert_int_equal(rd(f, 0x04, 2), 0);          /* command */
	assert_int_equal(rd(f, 0x06, 2), 0x0010);     /* status: capabilities list */
	assert_int_equal(rd(f, 0x08, 4), 0x01080202); /* class, revision */
	assert_int_equal(rd(f, 0x0e, 1), 0x00);       /* header type 0 */
	assert_int_equal(rd(f, 0x0f, 1), 0x00);       /* BIST */
	assert_int_equal(rd(f, 0x10, 4), 0x4);        /* BAR0: 64-bit memory */
	assert_int_equal(rd(f, 0x14, 4), 0);
	assert_int_equal(rd(f, 0x18, 4), 0x8);        /* BAR2: prefetchable 32-bit */
	assert_int_equal(rd(f, 0x1c, 4), 0x1);        /* BAR3: I/O */
	assert_int_equal(rd(f, 0x20, 4), 0xc);        /* BAR4: 64-bit prefetchable */
	assert_int_equal(rd(f, 0x24, 4), 0);
	assert_int_equal(rd(f, 0x28, 4), 0);          /* CardBus CIS */
	assert_int_equal(rd(f, 0x2c, 4), 0x11001af4); /* subsystem */
	assert_int_equal(rd(f, 0x30, 4), 0);          /* no expansion ROM */
	assert_int_equal(rd(f, 0x34, 1), PM_OFF);
	assert_int_equal(rd(f, 0x3c, 1), 0);
	assert_int_equal(rd(f, 0x3d, 1), 1);          /* INTA# */
	assert_int_equal(rd(f, 0x100, 4), 0);         /* empty extended list */
	assert_int_equal(rd(f, 0xffc, 4), 0);
	assert_int_equal(zoc_pci_bar_size(f, 0), BAR0_SIZE);
	assert_int_equal(zoc_pci_bar_size(f, 1), 0);
	assert_int_equal(zoc_pci_bar_size(f, 6), 0);
	assert_int_equal(zoc_pci_irq_count(f, ZOC_PCI_IRQ_INTX), 1);
	assert_int_equal(zoc_pci_irq_count(f, ZOC_PCI_IRQ_MSI), 1);
	assert_int_equal(zoc_pci_irq_count(f, ZOC_PCI_IRQ_MSIX), NVEC);
	assert_int_equal(zoc_pci_irq_count(f, ZOC_PCI_IRQ_ERR), 0);
	assert_int_equal(zoc_pci_irq_count(f, ZOC_PCI_IRQ_REQ), 0);

	/* Capability contents */
	assert_int_equal(rd(f, PM_OFF, 1), 0x01);
	assert_int_equal(rd(f, PM_OFF + 2, 2) & 0x7, 3);      /* PM 1.2 */
	assert_int_equal(rd(f, PM_OFF + 4, 2), 0x0008);        /* D0, No_Soft_Reset */
	assert_int_equal(rd(f, MSI_OFF, 1), 0x05);
	assert_int_equal(rd(f, MSI_OFF + 2, 2), 0x0180);       /* 64-bit, per-vector mask */
	assert_int_equal(rd(f, MSIX_OFF, 1), 0x11);
	assert_int_equal(rd(f, MSIX_OFF + 2, 2), NVEC - 1);
	assert_int_equal(rd(f, MSIX_OFF + 4, 4), TABLE_OFF | 0);
	assert_int_equal(rd(f, MSIX_OFF + 8, 4), PBA_OFF | 0);
	assert_int_equal(rd(f, EXP_OFF, 1), 0x10);
	assert_int_equal(rd(f, EXP_OFF + 2, 2), 0x0002);       /* v2 endpoint */
	assert_true(rd(f, EXP_OFF + 4, 4) & (1u << 28));       /* FLR capable */
	assert_int_equal(rd(f, EXP_OFF + 0x12, 2), 0x0011);    /* link up x1 2.5 GT/s */
}

static void test_bar_sizing(void **state)
{
	struct fixture *fx = *state;
	struct zoc_pci_func *f = fx->f;

	/* 64-bit BAR 0, 16 KiB */
	wr(f, 0x10, 0xffffffff, 4);
	wr(f, 0x14, 0xffffffff, 4);
	assert_int_equal(rd(f, 0x10, 4), 0xffffc004);
	assert_int_equal(rd(f, 0x14, 4), 0xffffffff);
	wr(f, 0x10, 0xfebf0000, 4);
	wr(f, 0x14, 0x00000001, 4);
	assert_int_equal(rd(f, 0x10, 4), 0xfebf0004);
	assert_int_equal(rd(f, 0x14, 4), 0x1);
	/* unaligned base bits are dropped */
	wr(f, 0x10, 0xfebf1234, 4);
	assert_int_equal(rd(f, 0x10, 4), 0xfebf0004);
	/* BAR 1 is BAR 0's upper half, not a BAR of its own */
	assert_int_equal(zoc_pci_bar_size(f, 1), 0);

	/* 32-bit prefetchable BAR 2, 1 MiB; byte-wise sizing too */
	wr(f, 0x18, 0xffffffff, 4);
	assert_int_equal(rd(f, 0x18, 4), 0xfff00008);
	wr(f, 0x18, 0, 4);
	for (uint32_t i = 0; i < 4; i++)
		wr(f, 0x18 + i, 0xff, 1);
	assert_int_equal(rd(f, 0x18, 4), 0xfff00008);

	/* I/O BAR 3, 32 bytes */
	wr(f, 0x1c, 0xffffffff, 4);
	assert_int_equal(rd(f, 0x1c, 4), 0xffffffe1);
	wr(f, 0x1c, 0xc040, 4);
	assert_int_equal(rd(f, 0x1c, 4), 0xc041);

	/* 64-bit BAR 4, 8 GiB: the upper half is sized too */
	wr(f, 0x20, 0xffffffff, 4);
	wr(f, 0x24, 0xffffffff, 4);
	assert_int_equal(rd(f, 0x20, 4), 0x0000000c);
	assert_int_equal(rd(f, 0x24, 4), 0xfffffffe);

	/* no expansion ROM: sizing reads 0; unused slot 5 reads 0 */
	wr(f, 0x30, 0xffffffff, 4);
	assert_int_equal(rd(f, 0x30, 4), 0);
	/* reserved header bytes stay 0 */
	wr(f, 0x28, 0xffffffff, 4);
	assert_int_equal(rd(f, 0x28, 4), 0);
	wr(f, 0x38, 0xffffffff, 4);
	assert_int_equal(rd(f, 0x38, 4), 0);

	/* a BAR with nothing in slot 5: a function with only BAR 5 */
	{
		struct zoc_pci_desc d = {0};
		struct zoc_pci_func *g;

		d.bars[5].size = 0x1000;
		g = zoc_pci_func_create(&d, NULL);
		assert_non_null(g);
		wr(g, 0x24, 0xffffffff, 4);
		assert_int_equal(rd(g, 0x24, 4), 0xfffff000);
		wr(g, 0x10, 0xffffffff, 4);
		assert_int_equal(rd(g, 0x10, 4), 0);
		zoc_pci_func_destroy(g);
	}
}

static void test_readonly_and_w1c(void **state)
{
	struct fixture *fx = *state;
	struct zoc_pci_func *f = fx->f;
	uint8_t before[256], after[256];

	/* Read-only IDs, class, header type, capability pointer, pin */
	wr(f, 0x00, 0xffffffff, 4);
	wr(f, 0x08, 0xffffffff, 4);
	wr(f, 0x0e, 0xff, 1);
	wr(f, 0x2c, 0xffffffff, 4);
	wr(f, 0x34, 0xff, 1);
	wr(f, 0x3d, 0xff, 1);
	assert_int_equal(rd(f, 0x00, 4), 0x00101b36);
	assert_int_equal(rd(f, 0x08, 4), 0x01080202);
	assert_int_equal(rd(f, 0x0e, 1), 0);
	assert_int_equal(rd(f, 0x2c, 4), 0x11001af4);
	assert_int_equal(rd(f, 0x34, 1), PM_OFF);
	assert_int_equal(rd(f, 0x3d, 1), 1);

	/* Command: only I/O, memory, master, parity, SERR, INTx disable */
	wr(f, 0x04, 0xffff, 2);
	assert_int_equal(rd(f, 0x04, 2), 0x0547);
	assert_true(zoc_pci_bus_master(f));
	assert_true(zoc_pci_mem_enabled(f));
	wr(f, 0x04, 0x0002, 2);
	assert_false(zoc_pci_bus_master(f));
	assert_true(zoc_pci_mem_enabled(f));
	/* cfg_written tells the device what changed */
	assert_int_equal(fx->dev.last_cfg_off, 0x04);
	assert_int_equal(fx->dev.last_cfg_len, 2);

	/* Status: writing ones sets nothing, clears no read-only bit */
	wr(f, 0x06, 0xffff, 2);
	assert_int_equal(rd(f, 0x06, 2), 0x0010);
	/* interrupt status (bit 3) follows the INTx level, not writes */
	zoc_pci_irq_raise(f, 0);
	assert_int_equal(rd(f, 0x06, 2), 0x0018);
	wr(f, 0x06, 0xffff, 2);
	assert_int_equal(rd(f, 0x06, 2), 0x0018);
	zoc_pci_intx_lower(f);
	assert_int_equal(rd(f, 0x06, 2), 0x0010);

	/* interrupt line and cache line size are writable */
	wr(f, 0x3c, 0x0b, 1);
	assert_int_equal(rd(f, 0x3c, 1), 0x0b);
	wr(f, 0x0c, 0x10, 1);
	assert_int_equal(rd(f, 0x0c, 1), 0x10);

	/* Capability IDs and next pointers are read-only */
	wr(f, PM_OFF, 0xffff, 2);
	wr(f, MSI_OFF, 0xffff, 2);
	wr(f, MSIX_OFF, 0xffff, 2);
	wr(f, EXP_OFF, 0xffffffff, 4);
	assert_int_equal(rd(f, PM_OFF, 1), 0x01);
	assert_int_equal(rd(f, MSIX_OFF, 1), 0x11);
	assert_int_equal(rd(f, EXP_OFF, 4), 0x00020010 | rd(f, EXP_OFF + 1, 1) << 8);
	/* MSI-X table size and locations are read-only */
	wr(f, MSIX_OFF + 2, 0x07ff, 2);
	wr(f, MSIX_OFF + 4, 0xffffffff, 4);
	wr(f, MSIX_OFF + 8, 0xffffffff, 4);
	assert_int_equal(rd(f, MSIX_OFF + 2, 2), NVEC - 1);
	assert_int_equal(rd(f, MSIX_OFF + 4, 4), TABLE_OFF);
	assert_int_equal(rd(f, MSIX_OFF + 8, 4), PBA_OFF);

	/* PCIe: device control writable where sensible, status W1C, caps RO */
	wr(f, EXP_OFF + 4, 0, 4);
	assert_true(rd(f, EXP_OFF + 4, 4) & (1u << 28));
	wr(f, EXP_OFF + 8, 0x7fff, 2);
	assert_int_equal(rd(f, EXP_OFF + 8, 2), 0x78ff);
	wr(f, EXP_OFF + 8, 0x2810, 2);
	assert_int_equal(rd(f, EXP_OFF + 8, 2), 0x2810);
	wr(f, EXP_OFF + 0xa, 0xffff, 2);
	assert_int_equal(rd(f, EXP_OFF + 0xa, 2), 0);
	wr(f, EXP_OFF + 0xc, 0xffffffff, 4);
	assert_int_equal(rd(f, EXP_OFF + 0xc, 4), 0x11);

	/* A write of ones everywhere past the header changes nothing that is
	 * not writable: compare 0x40-0xff against the known writable set. */
	for (uint32_t o = 0; o < 256; o += 4)
		assert_int_equal(zoc_pci_cfg_read(f, o, &before[o], 4), 0);
	for (uint32_t o = 0x100; o < ZOC_PCI_CFG_SIZE; o += 4)
		wr(f, o, 0xffffffff, 4);
	for (uint32_t o = 0x100; o < ZOC_PCI_CFG_SIZE; o += 4)
		assert_int_equal(rd(f, o, 4), 0);
	for (uint32_t o = 0; o < 256; o += 4)
		assert_int_equal(zoc_pci_cfg_read(f, o, &after[o], 4), 0);
	assert_memory_equal(before, after, sizeof(before));
}

static void test_pm(void **state)
{
	struct fixture *fx = *state;
	struct zoc_pci_func *f = fx->f;

	wr(f, PM_OFF + 4, 0x0003, 2);
	assert_int_equal(rd(f, PM_OFF + 4, 2), 0x000b); /* D3hot, No_Soft_Reset */
	wr(f, PM_OFF + 4, 0x0001, 2);                    /* D1: unsupported, ignored */
	assert_int_equal(rd(f, PM_OFF + 4, 2), 0x000b);
	wr(f, PM_OFF + 4, 0x0002, 1);                    /* D2 */
	assert_int_equal(rd(f, PM_OFF + 4, 2), 0x000b);
	wr(f, PM_OFF + 4, 0xfff0, 2);                    /* D0; PME bits read-only */
	assert_int_equal(rd(f, PM_OFF + 4, 2), 0x0008);
	wr(f, PM_OFF + 2, 0xffff, 2);                    /* PMC read-only */
	assert_int_equal(rd(f, PM_OFF + 2, 2), 0x0003);
}

static void walk_caps(struct zoc_pci_func *f, uint8_t *ids, unsigned *n)
{
	uint8_t seen[256] = {0};
	uint32_t p;

	*n = 0;
	assert_true(rd(f, 0x06, 2) & 0x10);
	p = rd(f, 0x34, 1);
	while (p) {
		assert_true(p >= 0x40 && p <= 0xfc);
		assert_int_equal(p & 3, 0);
		assert_false(seen[p]); /* no loop */
		seen[p] = 1;
		ids[(*n)++] = (uint8_t)rd(f, p, 1);
		p = rd(f, p + 1, 1);
	}
}

static void test_cap_chain(void **state)
{
	struct fixture *fx = *state;
	uint8_t ids[48];
	unsigned n;
	struct zoc_pci_desc d;
	struct zoc_pci_func *g;

	walk_caps(fx->f, ids, &n);
	assert_int_equal(n, 4);
	assert_int_equal(ids[0], 0x01);
	assert_int_equal(ids[1], 0x05);
	assert_int_equal(ids[2], 0x11);
	assert_int_equal(ids[3], 0x10);

	/* Without the optional capabilities: PM alone. */
	d = full_desc();
	d.msi = false;
	d.msix_vectors = 0;
	d.pcie = false;
	g = zoc_pci_func_create(&d, NULL);
	assert_non_null(g);
	walk_caps(g, ids, &n);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], 0x01);
	assert_int_equal(rd(g, MSIX_OFF, 4), 0); /* nothing left behind */
	assert_int_equal(rd(g, EXP_OFF, 4), 0);
	zoc_pci_func_destroy(g);

	/* MSI-X and PCIe only */
	d = full_desc();
	d.msi = false;
	g = zoc_pci_func_create(&d, NULL);
	assert_non_null(g);
	walk_caps(g, ids, &n);
	assert_int_equal(n, 3);
	assert_int_equal(ids[1], 0x11);
	assert_int_equal(ids[2], 0x10);
	zoc_pci_func_destroy(g);
}

/* ---- MSI-X ---- */

static void test_msix_table(void **state)
{
	struct fixture *fx = *state;
	struct zoc_pci_func *f = fx->f;
	uint64_t q;
	uint16_t h;
	uint8_t b;

	/* Power-on: every vector masked, table zero, PBA clear */
	for (uint32_t v = 0; v < NVEC; v++) {
		assert_int_equal(tbl_rd(f, v, 12), 1);
		assert_int_equal(tbl_rd(f, v, 0), 0);
	}
	assert_int_equal(pba_rd(f, 0), 0);
	assert_int_equal(pba_rd(f, 1), 0);

	tbl_wr(f, 3, 0, 0xfee00000);
	tbl_wr(f, 3, 4, 0x1);
	tbl_wr(f, 3, 8, 0x4023);
	assert_int_equal(tbl_rd(f, 3, 0), 0xfee00000);
	assert_int_equal(tbl_rd(f, 3, 4), 0x1);
	assert_int_equal(tbl_rd(f, 3, 8), 0x4023);
	/* 8-byte accesses: address; data + vector control */
	assert_int_equal(zoc_pci_bar_access(f, 0, TABLE_OFF + 48, &q, 8, false), 0);
	assert_int_equal(q, 0x1fee00000ull);
	assert_int_equal(zoc_pci_bar_access(f, 0, TABLE_OFF + 56, &q, 8, false), 0);
	assert_int_equal(q, 0x100004023ull);
	q = 0x0000000000005555ull; /* data 0x5555, unmasked */
	assert_int_equal(zoc_pci_bar_access(f, 0, TABLE_OFF + 56, &q, 8, true), 0);
	assert_int_equal(tbl_rd(f, 3, 8), 0x5555);
	assert_int_equal(tbl_rd(f, 3, 12), 0);
	/* vector control: only the mask bit is kept */
	tbl_wr(f, 3, 12, 0xffffffff);
	assert_int_equal(tbl_rd(f, 3, 12), 1);
	/* a whole entry in one 16-byte access: split in two quadwords */
	{
		uint32_t e[4] = {0xfee01000, 0, 0x31, 0}, r[4];

		assert_int_equal(zoc_pci_bar_access(f, 0, TABLE_OFF + 16 * 69, e, 16, true), 0);
		assert_int_equal(zoc_pci_bar_access(f, 0, TABLE_OFF + 16 * 69, r, 16, false), 0);
		assert_memory_equal(e, r, sizeof(e));
	}
	/* 1- and 2-byte table or PBA accesses are refused */
	assert_int_equal(zoc_pci_bar_access(f, 0, TABLE_OFF, &b, 1, false), -EINVAL);
	assert_int_equal(zoc_pci_bar_access(f, 0, TABLE_OFF + 12, &h, 2, true), -EINVAL);
	assert_int_equal(zoc_pci_bar_access(f, 0, PBA_OFF, &b, 1, false), -EINVAL);
	/* the PBA is read-only */
	q = ~0ull;
	assert_int_equal(zoc_pci_bar_access(f, 0, PBA_OFF, &q, 8, true), 0);
	assert_int_equal(pba_rd(f, 0), 0);
	/* none of that reached the device */
	assert_int_equal(fx->dev.npieces, 0);
	/* right next to the table and PBA: the device's */
	assert_int_equal(zoc_pci_bar_access(f, 0, TABLE_OFF - 8, &q, 8, false), 0);
	assert_int_equal(zoc_pci_bar_access(f, 0, TABLE_OFF + 16 * NVEC, &q, 8, false), 0);
	assert_int_equal(zoc_pci_bar_access(f, 0, PBA_OFF + 16, &q, 8, false), 0);
	assert_int_equal(fx->dev.npieces, 3);
	assert_int_equal(fx->dev.pieces[1].off, TABLE_OFF + 16 * NVEC);
}

static void test_msix_irq(void **state)
{
	struct fixture *fx = *state;
	struct zoc_pci_func *f = fx->f;
	int e[NVEC];

	for (int i = 0; i < NVEC; i++)
		e[i] = new_efd();
	{
		int d[NVEC];

		for (int i = 0; i < NVEC; i++)
			d[i] = fcntl(e[i], F_DUPFD_CLOEXEC, 0);
		assert_int_equal(zoc_pci_irq_set_fds(f, ZOC_PCI_IRQ_MSIX, 0, NVEC, d), 0);
	}
	assert_false(zoc_pci_msi_active(f));
	assert_false(zoc_pci_msix_enabled(f));

	/* MSI-X off: a raise goes to INTx (no fd there), not to a vector */
	assert_false(zoc_pci_irq_raise(f, 0));
	assert_int_equal(rd(f, 0x06, 2) & 0x8, 0x8);
	assert_int_equal(efd_take(e[0]), 0);
	zoc_pci_intx_lower(f);

	msix_ctrl(f, true, false);
	assert_true(zoc_pci_msi_active(f));
	assert_int_equal(rd(f, MSIX_OFF + 2, 2), 0x8000 | (NVEC - 1));

	/* masked at reset: the raise only sets the PBA bit */
	assert_false(zoc_pci_irq_raise(f, 1));
	assert_false(zoc_pci_irq_raise(f, 65));
	assert_int_equal(efd_take(e[1]), 0);
	assert_int_equal(pba_rd(f, 0), 1ull << 1);
	assert_int_equal(pba_rd(f, 1), 1ull << 1);
	{
		uint32_t lo = 0, hi = 0;

		assert_int_equal(zoc_pci_bar_access(f, 0, PBA_OFF + 8, &lo, 4, false), 0);
		assert_int_equal(zoc_pci_bar_access(f, 0, PBA_OFF + 12, &hi, 4, false), 0);
		assert_int_equal(lo, 2);
		assert_int_equal(hi, 0);
	}
	/* unmask fires the pending vector once and clears its bit */
	tbl_wr(f, 1, 12, 0);
	assert_int_equal(efd_take(e[1]), 1);
	assert_int_equal(pba_rd(f, 0), 0);
	tbl_wr(f, 1, 12, 1);
	tbl_wr(f, 1, 12, 0);
	assert_int_equal(efd_take(e[1]), 0);
	/* unmasked: straight through */
	assert_true(zoc_pci_irq_raise(f, 1));
	assert_true(zoc_pci_irq_raise(f, 1));
	assert_int_equal(efd_take(e[1]), 2);
	assert_int_equal(efd_take(e[65]), 0);
	tbl_wr(f, 65, 12, 0);
	assert_int_equal(efd_take(e[65]), 1);
	assert_int_equal(pba_rd(f, 1), 0);

	/* vectors out of range never fire */
	assert_false(zoc_pci_irq_raise(f, NVEC));
	assert_false(zoc_pci_irq_raise(f, 0xffff));

	/* function mask: pending, then fires on clear */
	msix_ctrl(f, true, true);
	assert_false(zoc_pci_msi_active(f));
	assert_true(zoc_pci_msix_enabled(f));
	assert_false(zoc_pci_irq_raise(f, 1));
	assert_false(zoc_pci_irq_raise(f, 65));
	assert_int_equal(efd_take(e[1]), 0);
	assert_int_equal(pba_rd(f, 0), 2);
	assert_int_equal(pba_rd(f, 1), 2);
	msix_ctrl(f, true, false);
	assert_int_equal(efd_take(e[1]), 1);
	assert_int_equal(efd_take(e[65]), 1);
	assert_int_equal(pba_rd(f, 0), 0);
	assert_int_equal(pba_rd(f, 1), 0);

	/* a vector pending while still masked in the table stays pending
	 * across the function unmask */
	msix_ctrl(f, true, true);
	zoc_pci_irq_raise(f, 2);
	msix_ctrl(f, true, false);
	assert_int_equal(efd_take(e[2]), 0);
	assert_int_equal(pba_rd(f, 0), 4);

	/* MSI-X disable with a pending vector; enabling fires it once unmasked */
	tbl_wr(f, 2, 12, 0); /* fires now: enabled, unmasked */
	assert_int_equal(efd_take(e[2]), 1);
	msix_ctrl(f, false, false);
	tbl_wr(f, 2, 12, 1);
	msix_ctrl(f, true, false);
	zoc_pci_irq_raise(f, 2);
	msix_ctrl(f, false, false);
	tbl_wr(f, 2, 12, 0); /* MSI-X off: not fired yet */
	assert_int_equal(efd_take(e[2]), 0);
	msix_ctrl(f, true, false);
	assert_int_equal(efd_take(e[2]), 1);

	/* link-level mask: either mask masks */
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_MSIX, 1, 1, true), 0);
	assert_false(zoc_pci_irq_raise(f, 1));
	assert_int_equal(efd_take(e[1]), 0);
	assert_int_equal(pba_rd(f, 0), 2);
	tbl_wr(f, 1, 12, 1); /* guest masks as well */
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_MSIX, 1, 1, false), 0);
	assert_int_equal(efd_take(e[1]), 0); /* still guest-masked */
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_MSIX, 1, 1, true), 0);
	tbl_wr(f, 1, 12, 0);
	assert_int_equal(efd_take(e[1]), 0); /* still link-masked */
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_MSIX, 0, NVEC, false), 0);
	assert_int_equal(efd_take(e[1]), 1);
	assert_int_equal(pba_rd(f, 0), 0);
	/* the guest never sees link masks in the table */
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_MSIX, 1, 1, true), 0);
	assert_int_equal(tbl_rd(f, 1, 12), 0);
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_MSIX, 1, 1, false), 0);
	/* bad ranges */
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_MSIX, NVEC, 1, true), -EINVAL);
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_MSIX, 1, NVEC, true), -EINVAL);
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_MSIX, 1, UINT32_MAX, true), -EINVAL);
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_MSIX, 0, 0, true), -EINVAL);
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_ERR, 0, 1, true), -EINVAL);
	assert_int_equal(zoc_pci_irq_mask(f, (enum zoc_pci_irq_type)7, 0, 1, true), -EINVAL);

	/* link trigger: fires regardless of masks */
	tbl_wr(f, 5, 12, 1);
	assert_int_equal(zoc_pci_irq_trigger(f, ZOC_PCI_IRQ_MSIX, 4, 2), 0);
	assert_int_equal(efd_take(e[4]), 1);
	assert_int_equal(efd_take(e[5]), 1);
	assert_int_equal(zoc_pci_irq_trigger(f, ZOC_PCI_IRQ_MSIX, NVEC - 1, 2), -EINVAL);

	/* the info JSON reflects it */
	{
		json_t *o = zoc_pci_func_info(f), *m;

		assert_non_null(o);
		m = json_object_get(o, "msix");
		assert_non_null(m);
		assert_true(json_is_true(json_object_get(m, "enabled")));
		assert_true(json_is_false(json_object_get(m, "masked")));
		assert_int_equal(json_integer_value(json_object_get(m, "vectors")), NVEC);
		assert_int_equal(json_integer_value(json_object_get(o, "vendor_id")), 0x1b36);
		json_decref(o);
	}

	for (int i = 0; i < NVEC; i++)
		close(e[i]);
}

/* ---- MSI ---- */

static void test_msi(void **state)
{
	struct fixture *fx = *state;
	struct zoc_pci_func *f = fx->f;
	int e = new_efd(), ex = new_efd();

	give_fd(f, ZOC_PCI_IRQ_MSI, 0, e);
	give_fd(f, ZOC_PCI_IRQ_MSIX, 0, ex);

	wr(f, MSI_OFF + 4, 0xfee00003, 4);
	wr(f, MSI_OFF + 8, 0x12345678, 4);
	wr(f, MSI_OFF + 0xc, 0xffffffff, 4);
	assert_int_equal(rd(f, MSI_OFF + 4, 4), 0xfee00000); /* dword aligned */
	assert_int_equal(rd(f, MSI_OFF + 8, 4), 0x12345678);
	assert_int_equal(rd(f, MSI_OFF + 0xc, 4), 0xffff);   /* no extended data */
	wr(f, MSI_OFF + 2, 0xffff, 2);                          /* enable; MMC/MME read-only */
	assert_int_equal(rd(f, MSI_OFF + 2, 2), 0x0181);
	assert_true(zoc_pci_msi_active(f));

	assert_true(zoc_pci_irq_raise(f, 0));
	assert_true(zoc_pci_irq_raise(f, 7)); /* MSI has one vector: all map to it */
	assert_int_equal(efd_take(e), 2);
	assert_int_equal(rd(f, 0x06, 2) & 0x8, 0); /* no INTx level */

	/* per-vector mask: pending bit, fired on unmask */
	wr(f, MSI_OFF + 0x10, 0xffffffff, 4);
	assert_int_equal(rd(f, MSI_OFF + 0x10, 4), 1);
	assert_false(zoc_pci_irq_raise(f, 0));
	assert_int_equal(efd_take(e), 0);
	assert_int_equal(rd(f, MSI_OFF + 0x14, 4), 1);
	wr(f, MSI_OFF + 0x14, 0, 4); /* pending is read-only */
	assert_int_equal(rd(f, MSI_OFF + 0x14, 4), 1);
	wr(f, MSI_OFF + 0x10, 0, 4);
	assert_int_equal(efd_take(e), 1);
	assert_int_equal(rd(f, MSI_OFF + 0x14, 4), 0);

	/* link mask */
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_MSI, 0, 1, true), 0);
	assert_false(zoc_pci_irq_raise(f, 0));
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_MSI, 0, 1, false), 0);
	assert_int_equal(efd_take(e), 1);
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_MSI, 1, 1, false), -EINVAL);

	/* MSI-X wins over MSI when both are on */
	msix_ctrl(f, true, false);
	tbl_wr(f, 0, 12, 0);
	assert_true(zoc_pci_irq_raise(f, 0));
	assert_int_equal(efd_take(ex), 1);
	assert_int_equal(efd_take(e), 0);
	msix_ctrl(f, false, false);

	/* disable: back to INTx */
	wr(f, MSI_OFF + 2, 0, 2);
	assert_false(zoc_pci_msi_active(f));
	assert_false(zoc_pci_irq_raise(f, 0));
	assert_int_equal(efd_take(e), 0);
	assert_int_equal(rd(f, 0x06, 2) & 0x8, 0x8);
	close(e);
	close(ex);
}

/* ---- INTx ---- */

static void test_intx(void **state)
{
	struct fixture *fx = *state;
	struct zoc_pci_func *f = fx->f;
	int e = new_efd();

	/* no fd yet: the level is set, nothing signalled, nothing automasked */
	assert_false(zoc_pci_irq_raise(f, 0));
	assert_int_equal(rd(f, 0x06, 2) & 0x8, 0x8);
	/* an fd set while the level is high is signalled at once */
	give_fd(f, ZOC_PCI_IRQ_INTX, 0, e);
	assert_int_equal(efd_take(e), 1);
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_INTX, 0, 1, false), 0);
	assert_int_equal(efd_take(e), 1);
	zoc_pci_intx_lower(f);
	/* removing everything also drops the automask */
	assert_int_equal(zoc_pci_irq_set_fds(f, ZOC_PCI_IRQ_INTX, 0, 0, NULL), 0);
	give_fd(f, ZOC_PCI_IRQ_INTX, 0, e);
	assert_int_equal(efd_take(e), 0);

	assert_true(zoc_pci_irq_raise(f, 0));
	assert_int_equal(efd_take(e), 1);
	assert_int_equal(rd(f, 0x06, 2), 0x0018);
	/* automasked (VFIO): no second signal until the link unmasks */
	assert_false(zoc_pci_irq_raise(f, 0));
	assert_int_equal(efd_take(e), 0);
	/* unmask while the level is high: signalled again */
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_INTX, 0, 1, false), 0);
	assert_int_equal(efd_take(e), 1);
	/* lowered, then unmasked: nothing */
	zoc_pci_intx_lower(f);
	assert_int_equal(rd(f, 0x06, 2), 0x0010);
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_INTX, 0, 1, false), 0);
	assert_int_equal(efd_take(e), 0);

	/* link mask held: level rises, no signal; unmask delivers */
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_INTX, 0, 1, true), 0);
	assert_false(zoc_pci_irq_raise(f, 0));
	assert_int_equal(rd(f, 0x06, 2), 0x0018);
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_INTX, 0, 1, false), 0);
	assert_int_equal(efd_take(e), 1);
	zoc_pci_intx_lower(f);
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_INTX, 0, 1, false), 0);

	/* command INTx disable: status still shows the level, no signal */
	wr(f, 0x04, 0x0400, 2);
	assert_false(zoc_pci_irq_raise(f, 0));
	assert_int_equal(efd_take(e), 0);
	assert_int_equal(rd(f, 0x06, 2), 0x0018);
	/* re-enabling with the level high signals */
	wr(f, 0x04, 0x0000, 2);
	assert_int_equal(efd_take(e), 1);
	zoc_pci_intx_lower(f);
	assert_int_equal(zoc_pci_irq_mask(f, ZOC_PCI_IRQ_INTX, 0, 1, false), 0);
	assert_int_equal(efd_take(e), 0);

	/* link trigger */
	assert_int_equal(zoc_pci_irq_trigger(f, ZOC_PCI_IRQ_INTX, 0, 1), 0);
	assert_int_equal(efd_take(e), 1);
	assert_int_equal(zoc_pci_irq_trigger(f, ZOC_PCI_IRQ_INTX, 1, 1), -EINVAL);

	/* a function without a pin has no INTx */
	{
		struct zoc_pci_desc d = full_desc();
		struct zoc_pci_func *g;

		d.intx_pin = 0;
		g = zoc_pci_func_create(&d, NULL);
		assert_non_null(g);
		assert_int_equal(rd(g, 0x3d, 1), 0);
		assert_false(zoc_pci_irq_raise(g, 0));
		assert_int_equal(rd(g, 0x06, 2), 0x0010);
		assert_int_equal(zoc_pci_irq_mask(g, ZOC_PCI_IRQ_INTX, 0, 1, true), -EINVAL);
		zoc_pci_func_destroy(g);
	}
	close(e);
}

/* ---- eventfd replacement ---- */

static void test_irq_fds(void **state)
{
	struct fixture *fx = *state;
	struct zoc_pci_func *f = fx->f;
	int a = new_efd(), b = new_efd();
	int fa, fb, bad[3];

	msix_ctrl(f, true, false);
	tbl_wr(f, 7, 12, 0);
	fa = fcntl(a, F_DUPFD_CLOEXEC, 0);
	assert_int_equal(zoc_pci_irq_set_fds(f, ZOC_PCI_IRQ_MSIX, 7, 1, &fa), 0);
	assert_true(zoc_pci_irq_raise(f, 7));
	assert_int_equal(efd_take(a), 1);

	/* replace: the old one is closed (no reactors: at once), the new one used */
	fb = fcntl(b, F_DUPFD_CLOEXEC, 0);
	assert_int_equal(zoc_pci_irq_set_fds(f, ZOC_PCI_IRQ_MSIX, 7, 1, &fb), 0);
	assert_false(fd_open(fa));
	assert_true(fd_open(fb));
	assert_true(zoc_pci_irq_raise(f, 7));
	assert_int_equal(efd_take(a), 0);
	assert_int_equal(efd_take(b), 1);

	/* -1 removes one */
	{
		int none = -1;

		assert_int_equal(zoc_pci_irq_set_fds(f, ZOC_PCI_IRQ_MSIX, 7, 1, &none), 0);
		assert_false(fd_open(fb));
		assert_false(zoc_pci_irq_raise(f, 7));
	}

	/* out of range: refused, the fds given are closed all the same */
	bad[0] = fcntl(a, F_DUPFD_CLOEXEC, 0);
	bad[1] = -1;
	bad[2] = fcntl(a, F_DUPFD_CLOEXEC, 0);
	assert_int_equal(zoc_pci_irq_set_fds(f, ZOC_PCI_IRQ_MSIX, NVEC - 2, 3, bad), -EINVAL);
	assert_false(fd_open(bad[0]));
	assert_false(fd_open(bad[2]));
	bad[0] = fcntl(a, F_DUPFD_CLOEXEC, 0);
	assert_int_equal(zoc_pci_irq_set_fds(f, ZOC_PCI_IRQ_MSI, 1, 1, bad), -EINVAL);
	assert_false(fd_open(bad[0]));
	bad[0] = fcntl(a, F_DUPFD_CLOEXEC, 0);
	assert_int_equal(zoc_pci_irq_set_fds(f, ZOC_PCI_IRQ_ERR, 0, 1, bad), -EINVAL);
	assert_false(fd_open(bad[0]));
	bad[0] = fcntl(a, F_DUPFD_CLOEXEC, 0);
	assert_int_equal(zoc_pci_irq_set_fds(f, ZOC_PCI_IRQ_MSIX, UINT32_MAX, 2, bad), -EINVAL);
	assert_false(fd_open(bad[0]));
	assert_int_equal(zoc_pci_irq_set_fds(f, ZOC_PCI_IRQ_MSIX, 0, 1, NULL), -EINVAL);
	/* only eventfds: a pipe could block a raiser */
	{
		int p[2];

		assert_int_equal(pipe(p), 0);
		bad[0] = fcntl(a, F_DUPFD_CLOEXEC, 0);
		bad[1] = p[1];
		assert_int_equal(zoc_pci_irq_set_fds(f, ZOC_PCI_IRQ_MSIX, 0, 2, bad), -EINVAL);
		assert_false(fd_open(bad[0]));
		assert_false(fd_open(p[1]));
		close(p[0]);
	}

	/* count 0, start 0 removes all of a type */
	fa = fcntl(a, F_DUPFD_CLOEXEC, 0);
	fb = fcntl(b, F_DUPFD_CLOEXEC, 0);
	assert_int_equal(zoc_pci_irq_set_fds(f, ZOC_PCI_IRQ_MSIX, 0, 1, &fa), 0);
	assert_int_equal(zoc_pci_irq_set_fds(f, ZOC_PCI_IRQ_MSIX, NVEC - 1, 1, &fb), 0);
	assert_int_equal(zoc_pci_irq_set_fds(f, ZOC_PCI_IRQ_MSIX, 0, 0, NULL), 0);
	assert_false(fd_open(fa));
	assert_false(fd_open(fb));

	/* reset keeps the fds */
	fa = fcntl(a, F_DUPFD_CLOEXEC, 0);
	assert_int_equal(zoc_pci_irq_set_fds(f, ZOC_PCI_IRQ_INTX, 0, 1, &fa), 0);
	zoc_pci_func_reset(f, NULL, NULL);
	assert_true(fd_open(fa));
	assert_true(zoc_pci_irq_raise(f, 0));
	assert_int_equal(efd_take(a), 1);
	/* destroy (teardown) closes it */
	close(a);
	close(b);
}

/* ---- reset and FLR ---- */

static int done_count;

static void count_done(void *arg)
{
	(void)arg;
	done_count++;
}

static void dirty(struct zoc_pci_func *f)
{
	wr(f, 0x04, 0x0406, 2);
	wr(f, 0x10, 0xfebf0000, 4);
	wr(f, 0x3c, 0x0b, 1);
	wr(f, PM_OFF + 4, 3, 2);
	wr(f, MSI_OFF + 4, 0xfee00000, 4);
	wr(f, MSI_OFF + 0x10, 1, 4);
	msix_ctrl(f, true, true);
	tbl_wr(f, 0, 0, 0xfee00000);
	tbl_wr(f, 0, 12, 0);
	zoc_pci_irq_raise(f, 0); /* pending: function-masked */
	assert_int_equal(pba_rd(f, 0), 1);
}

static void check_clean(struct fixture *fx)
{
	struct zoc_pci_func *f = fx->f;

	assert_int_equal(rd(f, 0x04, 2), 0);
	assert_false(zoc_pci_bus_master(f));
	assert_int_equal(rd(f, 0x06, 2), 0x0010);
	assert_int_equal(rd(f, 0x10, 4), 0x4);
	assert_int_equal(rd(f, 0x3c, 1), 0);
	assert_int_equal(rd(f, PM_OFF + 4, 2), 0x0008);
	assert_int_equal(rd(f, MSI_OFF + 4, 4), 0);
	assert_int_equal(rd(f, MSI_OFF + 0x10, 4), 0);
	assert_int_equal(rd(f, MSIX_OFF + 2, 2), NVEC - 1);
	assert_int_equal(rd(f, EXP_OFF + 8, 2), 0x2810);
	assert_false(zoc_pci_msi_active(f));
	assert_int_equal(tbl_rd(f, 0, 0), 0);
	assert_int_equal(tbl_rd(f, 0, 12), 1);
	assert_int_equal(pba_rd(f, 0), 0);
	/* still the same IDs */
	assert_int_equal(rd(f, 0x00, 4), 0x00101b36);
}

static void test_reset(void **state)
{
	struct fixture *fx = *state;
	struct zoc_pci_func *f = fx->f;

	dirty(f);
	done_count = 0;
	zoc_pci_func_reset(f, count_done, NULL);
	assert_int_equal(done_count, 1);
	assert_int_equal(fx->dev.resets, 1);
	check_clean(fx);

	/* FLR through PCIe device control */
	dirty(f);
	fx->dev.cfg_writes = 0;
	wr(f, EXP_OFF + 8, 0x8000 | 0x2810, 2);
	assert_int_equal(fx->dev.resets, 2);
	check_clean(fx);
	assert_int_equal(rd(f, EXP_OFF + 8, 2) & 0x8000, 0); /* reads 0 */
	/* a byte write of the high byte works too */
	dirty(f);
	wr(f, EXP_OFF + 9, 0x80, 1);
	assert_int_equal(fx->dev.resets, 3);
	check_clean(fx);
	/* and a dword write covering device control + status */
	dirty(f);
	wr(f, EXP_OFF + 8, 0x000f8000, 4);
	assert_int_equal(fx->dev.resets, 4);
	check_clean(fx);

	/* without ops, reset completes at once */
	{
		struct zoc_pci_desc d = full_desc();
		struct zoc_pci_func *g;

		d.ops = NULL;
		g = zoc_pci_func_create(&d, NULL);
		assert_non_null(g);
		wr(g, 0x04, 0x6, 2);
		done_count = 0;
		zoc_pci_func_reset(g, count_done, NULL);
		assert_int_equal(done_count, 1);
		assert_int_equal(rd(g, 0x04, 2), 0);
		zoc_pci_func_destroy(g);
	}
}

/* ---- BAR access ---- */

static void test_bar_split(void **state)
{
	struct fixture *fx = *state;
	struct zoc_pci_func *f = fx->f;
	uint8_t buf[64], back[64];
	static const struct {
		uint64_t off;
		uint32_t len;
	} expect[] = {{1, 1}, {2, 2}, {4, 4}, {8, 4}, {12, 2}};

	for (unsigned i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	fx->dev.npieces = 0;
	assert_int_equal(zoc_pci_bar_access(f, 0, 1, buf, 13, true), 0);
	assert_int_equal(fx->dev.npieces, 5);
	for (unsigned i = 0; i < 5; i++) {
		assert_int_equal(fx->dev.pieces[i].off, expect[i].off);
		assert_int_equal(fx->dev.pieces[i].len, expect[i].len);
		assert_true(fx->dev.pieces[i].is_write);
	}
	assert_memory_equal(&fx->dev.bar_mem[1], buf, 13);
	memset(back, 0, sizeof(back));
	assert_int_equal(zoc_pci_bar_access(f, 0, 1, back, 13, false), 0);
	assert_memory_equal(back, buf, 13);

	/* 64 bytes aligned: eight quadwords */
	fx->dev.npieces = 0;
	assert_int_equal(zoc_pci_bar_access(f, 0, 0x100, buf, 64, true), 0);
	assert_int_equal(fx->dev.npieces, 8);
	/* the last byte of a BAR, and a whole 32-bit BAR's end */
	assert_int_equal(zoc_pci_bar_access(f, 0, BAR0_SIZE - 1, buf, 1, false), 0);
	assert_int_equal(zoc_pci_bar_access(f, 2, BAR2_SIZE - 8, buf, 8, false), 0);
	assert_int_equal(zoc_pci_bar_access(f, 3, 0, buf, BAR3_SIZE, false), 0);
	assert_int_equal(buf[0], 0xa5);
	assert_int_equal(zoc_pci_bar_access(f, 4, BAR4_SIZE - 4, buf, 4, false), 0);
	/* a function without ops: reads zero, writes dropped */
	{
		struct zoc_pci_desc d = full_desc();
		struct zoc_pci_func *g;

		d.ops = NULL;
		g = zoc_pci_func_create(&d, NULL);
		assert_non_null(g);
		memset(buf, 0xff, 8);
		assert_int_equal(zoc_pci_bar_access(g, 2, 0, buf, 8, false), 0);
		assert_int_equal(buf[7], 0);
		assert_int_equal(zoc_pci_bar_access(g, 2, 0, buf, 8, true), 0);
		zoc_pci_func_destroy(g);
	}
}

static void test_cfg_access_split(void **state)
{
	struct fixture *fx = *state;
	struct zoc_pci_func *f = fx->f;
	uint8_t all[ZOC_PCI_CFG_SIZE], hdr[64];
	uint32_t v;

	assert_int_equal(zoc_pci_cfg_access(f, 0, all, sizeof(all), false), 0);
	assert_int_equal(all[0], 0x36);
	assert_int_equal(all[0x34], PM_OFF);
	/* odd offset and length */
	assert_int_equal(zoc_pci_cfg_access(f, 1, hdr, 7, false), 0);
	assert_memory_equal(hdr, &all[1], 7);
	/* a write across registers: BAR2 and BAR3 sized at once */
	memset(hdr, 0xff, 8);
	assert_int_equal(zoc_pci_cfg_access(f, 0x18, hdr, 8, true), 0);
	assert_int_equal(rd(f, 0x18, 4), 0xfff00008);
	assert_int_equal(rd(f, 0x1c, 4), 0xffffffe1);
	/* sub-dword reads in the middle of a dword are fine */
	assert_int_equal(zoc_pci_cfg_read(f, 1, &v, 2), 0);
	assert_int_equal(zoc_pci_cfg_read(f, 3, &v, 1), 0);
	assert_int_equal(zoc_pci_cfg_read(f, ZOC_PCI_CFG_SIZE - 4, &v, 4), 0);
	assert_int_equal(zoc_pci_cfg_read(f, ZOC_PCI_CFG_SIZE - 1, &v, 1), 0);
}

/* ---- hostile accesses ---- */

static void test_hostile(void **state)
{
	struct fixture *fx = *state;
	struct zoc_pci_func *f = fx->f;
	uint8_t guard[32];
	uint8_t cfg_before[ZOC_PCI_CFG_SIZE], cfg_after[ZOC_PCI_CFG_SIZE];
	static const struct {
		uint32_t off, len;
	} bad_cfg[] = {
		{0, 0},
		{0, 5},
		{0, 8},
		{ZOC_PCI_CFG_SIZE, 1},
		{ZOC_PCI_CFG_SIZE - 1, 2},
		{ZOC_PCI_CFG_SIZE - 2, 4},
		{2, 4},  /* crosses a dword */
		{3, 2},
		{1, 4},
		{UINT32_MAX, 1},
		{UINT32_MAX - 1, 4},
		{0x10, UINT32_MAX},
	};
	static const struct {
		uint32_t off, len;
	} bad_access[] = {
		{0, 0},
		{ZOC_PCI_CFG_SIZE, 1},
		{ZOC_PCI_CFG_SIZE - 1, 2},
		{0, ZOC_PCI_CFG_SIZE + 1},
		{1, UINT32_MAX},
		{UINT32_MAX, 2},
		{UINT32_MAX - 3, 8},
	};
	static const struct {
		unsigned bar;
		uint64_t off;
		uint32_t len;
	} bad_bar[] = {
		{0, 0, 0},
		{0, BAR0_SIZE, 1},
		{0, BAR0_SIZE - 1, 2},
		{0, BAR0_SIZE - 4, 8},
		{0, 0, (uint32_t)BAR0_SIZE + 1},
		{0, 8, UINT32_MAX},
		{0, UINT64_MAX, 1},
		{0, UINT64_MAX - 3, 8},          /* off + len overflows */
		{0, UINT64_MAX - 0xfff, 0x2000},
		{1, 0, 4},                        /* upper half of BAR 0 */
		{5, 0, 4},                        /* unused */
		{6, 0, 4},
		{UINT32_MAX, 0, 4},
		{3, BAR3_SIZE - 2, 4},
		{4, BAR4_SIZE, 4},
		{0, TABLE_OFF + 16 * NVEC - 4, UINT32_MAX},
	};

	for (uint32_t o = 0; o < ZOC_PCI_CFG_SIZE; o += 4)
		assert_int_equal(zoc_pci_cfg_read(f, o, &cfg_before[o], 4), 0);
	fx->dev.npieces = 0;
	fx->dev.cfg_writes = 0;

	for (unsigned i = 0; i < sizeof(bad_cfg) / sizeof(bad_cfg[0]); i++) {
		memset(guard, 0x5a, sizeof(guard));
		assert_int_equal(zoc_pci_cfg_read(f, bad_cfg[i].off, guard, bad_cfg[i].len),
				 -EINVAL);
		for (unsigned j = 0; j < sizeof(guard); j++)
			assert_int_equal(guard[j], 0x5a);
		memset(guard, 0xff, sizeof(guard));
		assert_int_equal(zoc_pci_cfg_write(f, bad_cfg[i].off, guard, bad_cfg[i].len),
				 -EINVAL);
	}
	for (unsigned i = 0; i < sizeof(bad_access) / sizeof(bad_access[0]); i++) {
		memset(guard, 0x5a, sizeof(guard));
		/* the buffer is small: a refused access must not touch it at all */
		assert_int_equal(zoc_pci_cfg_access(f, bad_access[i].off, guard,
						    bad_access[i].len, false),
				 -EINVAL);
		for (unsigned j = 0; j < sizeof(guard); j++)
			assert_int_equal(guard[j], 0x5a);
		assert_int_equal(zoc_pci_cfg_access(f, bad_access[i].off, guard,
						    bad_access[i].len, true),
				 -EINVAL);
	}
	for (unsigned i = 0; i < sizeof(bad_bar) / sizeof(bad_bar[0]); i++) {
		memset(guard, 0x5a, sizeof(guard));
		assert_int_equal(zoc_pci_bar_access(f, bad_bar[i].bar, bad_bar[i].off, guard,
						    bad_bar[i].len, false),
				 -EINVAL);
		for (unsigned j = 0; j < sizeof(guard); j++)
			assert_int_equal(guard[j], 0x5a);
		assert_int_equal(zoc_pci_bar_access(f, bad_bar[i].bar, bad_bar[i].off, guard,
						    bad_bar[i].len, true),
				 -EINVAL);
	}
	/* NULL buffers and functions */
	assert_int_equal(zoc_pci_cfg_read(f, 0, NULL, 4), -EINVAL);
	assert_int_equal(zoc_pci_cfg_write(NULL, 0, guard, 4), -EINVAL);
	assert_int_equal(zoc_pci_cfg_access(f, 0, NULL, 4, false), -EINVAL);
	assert_int_equal(zoc_pci_bar_access(f, 0, 0, NULL, 4, false), -EINVAL);
	assert_int_equal(zoc_pci_bar_access(NULL, 0, 0, guard, 4, false), -EINVAL);
	assert_false(zoc_pci_irq_raise(NULL, 0));

	/* nothing reached the device, nothing changed */
	assert_int_equal(fx->dev.npieces, 0);
	assert_int_equal(fx->dev.cfg_writes, 0);
	for (uint32_t o = 0; o < ZOC_PCI_CFG_SIZE; o += 4)
		assert_int_equal(zoc_pci_cfg_read(f, o, &cfg_after[o], 4), 0);
	assert_memory_equal(cfg_before, cfg_after, sizeof(cfg_before));
	for (uint32_t v = 0; v < NVEC; v++)
		assert_int_equal(tbl_rd(f, v, 12), 1);
}

static bool ranges_touch_exp(uint32_t off, uint32_t len)
{
	return off <= EXP_OFF + 9 && EXP_OFF + 9 < off + len;
}

/* Random config writes of every size everywhere: the IDs and the
 * capability chain survive, and nothing crashes. */
static void test_random_cfg_writes(void **state)
{
	struct fixture *fx = *state;
	struct zoc_pci_func *f = fx->f;
	uint8_t ids[48];
	unsigned n;
	uint32_t seed = 12345;

	for (int i = 0; i < 200000; i++) {
		uint32_t off, len, val, r;

		seed = seed * 1103515245u + 12345u;
		r = seed >> 8;
		off = r % 0x110;
		len = 1u << ((r >> 12) % 3);
		off &= ~(len - 1);
		seed = seed * 1103515245u + 12345u;
		val = seed;
		/* keep FLR out of it half of the time, so state builds up */
		if (ranges_touch_exp(off, len) && (val & 1))
			continue;
		assert_int_equal(zoc_pci_cfg_write(f, off, &val, len), 0);
		if (i % 4096 == 0)
			zoc_pci_irq_raise(f, (uint16_t)(val % (NVEC + 2)));
	}
	assert_int_equal(rd(f, 0x00, 4), 0x00101b36);
	assert_int_equal(rd(f, 0x08, 4), 0x01080202);
	walk_caps(f, ids, &n);
	assert_int_equal(n, 4);
	assert_int_equal(rd(f, 0x100, 4), 0);
}

/* ---- concurrency smoke test: raisers against mask flips ---- */

struct raiser {
	struct zoc_pci_func *f;
	atomic_bool stop;
	atomic_ulong raised;
};

static void *raiser_main(void *arg)
{
	struct raiser *r = arg;

	while (!atomic_load(&r->stop)) {
		zoc_pci_irq_raise(r->f, 3);
		atomic_fetch_add(&r->raised, 1);
	}
	return NULL;
}

static void test_raise_concurrent(void **state)
{
	struct fixture *fx = *state;
	struct zoc_pci_func *f = fx->f;
	struct raiser r = {.f = f};
	pthread_t t;
	int e = new_efd();
	uint64_t got = 0;

	give_fd(f, ZOC_PCI_IRQ_MSIX, 3, e);
	msix_ctrl(f, true, false);
	assert_int_equal(pthread_create(&t, NULL, raiser_main, &r), 0);
	while (atomic_load(&r.raised) < 100)
		sched_yield();
	for (int i = 0; i < 20000 || atomic_load(&r.raised) < 20000; i++) {
		tbl_wr(f, 3, 12, (uint32_t)(i & 1));
		if (i % 64 == 0)
			got += efd_take(e);
	}
	tbl_wr(f, 3, 12, 0);
	atomic_store(&r.stop, true);
	pthread_join(t, NULL);
	/* unmasked at the end: nothing may be left pending */
	assert_int_equal(pba_rd(f, 0) & (1u << 3), 0);
	got += efd_take(e);
	assert_true(got > 0);
	assert_true(got <= atomic_load(&r.raised));
	close(e);
}

/* ---- with reactors: a replaced fd is closed only after the grace period ---- */

struct grace_ctx {
	struct zoc_pci_func *f;
	int a, b;          /* our copies */
	int fa, fb;        /* the model's copies */
	atomic_int raising;
	bool open_after_swap;
	bool closed_after_barrier;
	int rc;
};

static int raise_poll(void *arg)
{
	struct grace_ctx *g = arg;

	zoc_pci_irq_raise(g->f, 3);
	atomic_fetch_add(&g->raising, 1);
	return 1;
}

static void grace_done(void *arg)
{
	struct grace_ctx *g = arg;

	g->closed_after_barrier = !fd_open(g->fa);
	zoc_reactors_stop();
}

static void grace_swap(void *arg)
{
	struct grace_ctx *g = arg;

	/* reactor 0, while reactor 1 raises */
	while (atomic_load(&g->raising) < 100)
		usleep(100);
	g->rc = zoc_pci_irq_set_fds(g->f, ZOC_PCI_IRQ_MSIX, 3, 1, &g->fb);
	g->open_after_swap = fd_open(g->fa);
	if (zoc_reactors_barrier(grace_done, g))
		zoc_reactors_stop();
}

static void test_fd_grace_period(void **state)
{
	struct fixture *fx = *state;
	unsigned cores[2] = {0, 1};
	struct zoc_reactor_opts o = {.cores = cores, .num_cores = 2};
	struct zoc_poller_ops ops = {.poll = raise_poll};
	struct grace_ctx g = {.f = fx->f};

	g.a = new_efd();
	g.b = new_efd();
	g.fa = fcntl(g.a, F_DUPFD_CLOEXEC, 0);
	g.fb = fcntl(g.b, F_DUPFD_CLOEXEC, 0);
	assert_int_equal(zoc_pci_irq_set_fds(fx->f, ZOC_PCI_IRQ_MSIX, 3, 1, &g.fa), 0);
	msix_ctrl(fx->f, true, false);
	tbl_wr(fx->f, 3, 12, 0);

	assert_int_equal(zoc_reactors_init(&o), 0);
	assert_non_null(zoc_poller_register(zoc_reactor_get(1), &ops, &g, 0, "raise"));
	assert_int_equal(zoc_reactor_send_msg(zoc_reactor_get(0), grace_swap, &g), 0);
	assert_int_equal(zoc_reactors_run(), 0);
	zoc_reactors_fini();

	assert_int_equal(g.rc, 0);
	assert_true(g.open_after_swap);
	assert_true(g.closed_after_barrier);
	assert_true(efd_take(g.a) > 0);
	/* the new fd is in use */
	assert_true(zoc_pci_irq_raise(fx->f, 3));
	assert_true(efd_take(g.b) > 0);
	close(g.a);
	close(g.b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_rejects),
		cmocka_unit_test_setup_teardown(test_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_sizing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readonly_and_w1c, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cap_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix_irq, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msi, setup, teardown),
		cmocka_unit_test_setup_teardown(test_intx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_irq_fds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_split, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cfg_access_split, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_cfg_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_raise_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fd_grace_period, setup, teardown),
	};

	zoc_log_set_level(ZOC_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
