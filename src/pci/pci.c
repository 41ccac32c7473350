/* SPDX-License-Identifier: MIT */
/*
 * pci.c - the PCI function model (see pci.h).
 *
 * Config space is a 4 KiB byte array with two masks beside it: wmask (bits
 * a driver may write) and w1cmask (bits a driver clears by writing 1). A
 * config write is applied through the masks byte by byte; a few registers
 * then get side effects (command, PMCSR, MSI and MSI-X control, MSI mask,
 * PCIe device control FLR). BAR sizing needs no code: a BAR's write mask
 * is ~(size - 1) with the flag bits read-only, so writing all-ones reads
 * back the size mask, the upper dword of a 64-bit BAR included.
 *
 * Layout (fixed offsets, a capability absent from desc is left out of the
 * chain and its bytes read 0):
 *
 *   0x00 type-0 header (64 bytes), capabilities pointer at 0x34 = 0x40
 *   0x40 power management (8 bytes): PM 1.2, D0 and D3hot, No_Soft_Reset
 *   0x50 MSI (24 bytes): 1 vector, 64-bit address, per-vector masking
 *   0x70 MSI-X (12 bytes)
 *   0x80 PCI Express capability v2, endpoint (60 bytes), FLR capable
 *   the device's capabilities (desc.caps) where it put them, chained last
 *   0x100 extended capabilities: none (header dword 0)
 *
 * Interrupt state that zoc_pci_irq_raise() reads from any thread lives in
 * C11 atomics: a flags word (MSI/MSI-X enable, function mask, MSI mask and
 * pending, INTx level, disable and link mask), per-vector MSI-X bitmaps
 * (guest mask = vector control bit, link mask, pending = PBA) and the
 * eventfds. A masked vector sets its pending bit, then looks at the masks
 * again; an unmask clears the mask, then claims the pending bit with an
 * atomic fetch-and. Whichever side wins the claim signals, so an interrupt
 * is never lost and never doubled. Replaced eventfds are closed after a
 * reactor grace period (zoc_reactors_barrier).
 *
 * INTx follows VFIO: level-triggered and automasked. A raise sets the
 * level (status bit 3) and, unless masked or disabled in the command
 * register, signals the eventfd and sets the link mask; the link's unmask
 * (the client's EOI) signals again while the level is still high.
 */
#include "pci/pci.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pci.c assumes a little-endian host (config space is little-endian)"
#endif

/* Header registers */
#define CFG_VENDOR_ID 0x00
#define CFG_DEVICE_ID 0x02
#define CFG_COMMAND 0x04
#define CFG_STATUS 0x06
#define CFG_REVISION 0x08
#define CFG_CLASS 0x09
#define CFG_CACHE_LINE 0x0c
#define CFG_HEADER_TYPE 0x0e
#define CFG_BAR0 0x10
#define CFG_SUBSYS_VENDOR 0x2c
#define CFG_SUBSYS_ID 0x2e
#define CFG_CAP_PTR 0x34
#define CFG_INT_LINE 0x3c
#define CFG_INT_PIN 0x3d

#define CMD_IO (1u << 0)
#define CMD_MEM (1u << 1)
#define CMD_MASTER (1u << 2)
#define CMD_PARITY (1u << 6)
#define CMD_SERR (1u << 8)
#define CMD_INTX_DISABLE (1u << 10)
#define CMD_WMASK (CMD_IO | CMD_MEM | CMD_MASTER | CMD_PARITY | CMD_SERR | CMD_INTX_DISABLE)

#define STS_INTX (1u << 3)
#define STS_CAP_LIST (1u << 4)
/* master data parity error, signalled/received target abort, received
 * master abort, signalled system error, detected parity error */
#define STS_W1C 0xf900u

#define BAR_IO 0x1u
#define BAR_MEM64 0x4u
#define BAR_PREFETCH 0x8u

/* Capability IDs */
#define CAP_ID_PM 0x01
#define CAP_ID_MSI 0x05
#define CAP_ID_EXP 0x10
#define CAP_ID_MSIX 0x11

/* Capability offsets */
#define PM_OFF 0x40
#define MSI_OFF 0x50
#define MSIX_OFF 0x70
#define EXP_OFF 0x80

/* PM */
#define PM_PMC 0x02
#define PM_PMCSR 0x04
#define PM_PMC_VERSION 0x3 /* PM 1.2 */
#define PMCSR_STATE_MASK 0x3u
#define PMCSR_D0 0x0u
#define PMCSR_D3HOT 0x3u
#define PMCSR_NO_SOFT_RESET (1u << 3)

/* MSI */
#define MSI_CTRL 0x02
#define MSI_ADDR_LO 0x04
#define MSI_ADDR_HI 0x08
#define MSI_DATA 0x0c
#define MSI_MASK 0x10
#define MSI_PENDING 0x14
#define MSI_SIZE 0x18
#define MSI_CTRL_ENABLE (1u << 0)
#define MSI_CTRL_64BIT (1u << 7)
#define MSI_CTRL_PVM (1u << 8)

/* MSI-X */
#define MSIX_CTRL 0x02
#define MSIX_TABLE 0x04
#define MSIX_PBA 0x08
#define MSIX_SIZE 0x0c
#define MSIX_CTRL_FMASK (1u << 14)
#define MSIX_CTRL_ENABLE (1u << 15)
#define MSIX_ENTRY_SIZE 16
#define MSIX_ENTRY_CTRL 12
#define MSIX_VCTRL_MASK 1u

/* PCI Express capability (v2, endpoint) */
#define EXP_FLAGS 0x02
#define EXP_DEVCAP 0x04
#define EXP_DEVCTL 0x08
#define EXP_DEVSTA 0x0a
#define EXP_LNKCAP 0x0c
#define EXP_LNKCTL 0x10
#define EXP_LNKSTA 0x12
#define EXP_DEVCAP2 0x24
#define EXP_DEVCTL2 0x28
#define EXP_LNKCAP2 0x2c
#define EXP_LNKCTL2 0x30
#define EXP_SIZE 0x3c
#define EXP_FLAGS_V2 0x0002u /* version 2, device/port type 0: endpoint */
#define EXP_DEVCAP_RBER (1u << 15)
#define EXP_DEVCAP_FLR (1u << 28)
/* correctable/non-fatal/fatal/UR reporting, relaxed ordering, max payload
 * size, no snoop, max read request size */
#define EXP_DEVCTL_WMASK 0x78ffu
#define EXP_DEVCTL_DEFAULT 0x2810u /* relaxed ordering, no snoop, MRRS 512 */
#define EXP_DEVCTL_FLR (1u << 15)
#define EXP_DEVSTA_W1C 0x000fu
#define EXP_LNKCAP_DEFAULT 0x00000011u /* 2.5 GT/s, x1, port 0 */
#define EXP_LNKCTL_WMASK 0x00c0u       /* common clock, extended synch (no ASPM) */
#define EXP_LNKSTA_DEFAULT 0x0011u     /* 2.5 GT/s, x1 */
#define EXP_LNKCAP2_DEFAULT 0x00000002u /* supported speeds: 2.5 GT/s */
#define EXP_LNKCTL2_DEFAULT 0x0001u    /* target link speed 2.5 GT/s */

/* Bits of the atomic flags word */
#define F_MSIX_EN (1u << 0)
#define F_MSIX_FMASK (1u << 1)
#define F_MSI_EN (1u << 2)
#define F_MSI_GMASK (1u << 3)  /* MSI per-vector mask bit (guest) */
#define F_MSI_LMASK (1u << 4)  /* MSI link-level mask */
#define F_MSI_PEND (1u << 5)
#define F_INTX_LEVEL (1u << 6)
#define F_INTX_DIS (1u << 7)   /* command register INTx disable */
#define F_INTX_LMASK (1u << 8) /* INTx link-level mask (automask included) */
/* Flags the link owns: they survive a function reset. */
#define F_LINK_BITS (F_MSI_LMASK | F_INTX_LMASK)

struct zoc_pci_func {
	struct zoc_pci_desc desc;
	void *ctx;

	uint8_t cfg[ZOC_PCI_CFG_SIZE];
	uint8_t wmask[ZOC_PCI_CFG_SIZE];
	uint8_t w1cmask[ZOC_PCI_CFG_SIZE];
	uint8_t power_on[ZOC_PCI_CFG_SIZE];

	/* Read by other threads. */
	_Atomic uint32_t flags;
	_Atomic uint16_t command;
	_Atomic int intx_fd;
	_Atomic int msi_fd;

	/* MSI-X: nvec vectors, nwords bitmap words. */
	uint32_t nvec;
	uint32_t nwords;
	uint64_t msix_table_end;
	uint64_t msix_pba_size;
	uint32_t (*msix_entries)[3]; /* address lo, address hi, data */
	_Atomic uint64_t *msix_gmask; /* vector control mask bits */
	_Atomic uint64_t *msix_lmask; /* link-level masks */
	_Atomic uint64_t *msix_pend;  /* the PBA */
	_Atomic int *msix_fd;

	/* Device capabilities: copies of the desc's, pointing into power_on
	 * and wmask (f->desc.caps points here). */
	struct zoc_pci_cap caps[ZOC_PCI_MAX_CAPS];
	bool in_cfg_read; /* ops->cfg_read running: its own reads skip it */
};

/* ---- little helpers ---- */

static inline uint16_t cfg_get16(const struct zoc_pci_func *f, uint32_t off)
{
	return (uint16_t)(f->cfg[off] | f->cfg[off + 1] << 8);
}

static inline uint32_t cfg_get32(const struct zoc_pci_func *f, uint32_t off)
{
	return (uint32_t)cfg_get16(f, off) | (uint32_t)cfg_get16(f, off + 2) << 16;
}

static void put8(uint8_t *a, uint32_t off, uint8_t v)
{
	a[off] = v;
}

static void put16(uint8_t *a, uint32_t off, uint16_t v)
{
	a[off] = (uint8_t)v;
	a[off + 1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *a, uint32_t off, uint32_t v)
{
	put16(a, off, (uint16_t)v);
	put16(a, off + 2, (uint16_t)(v >> 16));
}

static inline bool ranges_touch(uint32_t off, uint32_t len, uint32_t reg, uint32_t reg_len)
{
	return off < reg + reg_len && reg < off + len;
}

static inline bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static bool signal_fd(int fd)
{
	uint64_t one = 1;

	if (fd < 0)
		return false;
	return write(fd, &one, sizeof(one)) == (ssize_t)sizeof(one);
}

/* ---- deferred close of replaced eventfds ---- */

struct fd_grave {
	unsigned n;
	int fds[];
};

static void fd_grave_close(void *arg)
{
	struct fd_grave *g = arg;

	for (unsigned i = 0; i < g->n; i++)
		close(g->fds[i]);
	free(g);
}

static void fd_grave_bury(struct fd_grave *g)
{
	int rc;

	if (!g->n) {
		free(g);
		return;
	}
	rc = zoc_reactors_barrier(fd_grave_close, g);
	if (rc) {
		/* Closing now could let a raiser write into a reused fd
		 * number: leak them instead. */
		ZOC_ERR("pci: no memory for a grace period, leaking %u eventfds", g->n);
		free(g);
	}
}

/* ---- MSI-X vector state ---- */

static inline uint64_t vbit(uint32_t v)
{
	return 1ull << (v & 63);
}

/* The bits of bitmap word w that belong to a vector. */
static uint64_t word_valid(const struct zoc_pci_func *f, uint32_t w)
{
	uint32_t left = f->nvec - w * 64;

	return left >= 64 ? ~0ull : (1ull << left) - 1;
}

static bool msix_masked(struct zoc_pci_func *f, uint32_t v)
{
	uint32_t fl = atomic_load(&f->flags);

	if (!(fl & F_MSIX_EN) || (fl & F_MSIX_FMASK))
		return true;
	return ((atomic_load(&f->msix_gmask[v / 64]) | atomic_load(&f->msix_lmask[v / 64])) &
		vbit(v)) != 0;
}

/* After an unmask: signal v if it is pending and no longer masked. */
static bool msix_try_fire(struct zoc_pci_func *f, uint32_t v)
{
	if (!(atomic_load(&f->msix_pend[v / 64]) & vbit(v)) || msix_masked(f, v))
		return false;
	if (!(atomic_fetch_and(&f->msix_pend[v / 64], ~vbit(v)) & vbit(v)))
		return false; /* a raiser claimed it */
	return signal_fd(atomic_load(&f->msix_fd[v]));
}

static void msix_try_fire_all(struct zoc_pci_func *f)
{
	for (uint32_t w = 0; w < f->nwords; w++) {
		uint64_t p = atomic_load(&f->msix_pend[w]);

		while (p) {
			uint32_t v = w * 64 + (uint32_t)__builtin_ctzll(p);

			p &= p - 1;
			if (v < f->nvec)
				msix_try_fire(f, v);
		}
	}
}

static bool msix_raise(struct zoc_pci_func *f, uint32_t v)
{
	if (v >= f->nvec)
		return false;
	if (msix_masked(f, v)) {
		atomic_fetch_or(&f->msix_pend[v / 64], vbit(v));
		/* An unmask may have run between the check and the set. */
		return msix_try_fire(f, v);
	}
	return signal_fd(atomic_load(&f->msix_fd[v]));
}

/* ---- MSI ---- */

static bool msi_masked(struct zoc_pci_func *f)
{
	uint32_t fl = atomic_load(&f->flags);

	return !(fl & F_MSI_EN) || (fl & (F_MSI_GMASK | F_MSI_LMASK));
}

static bool msi_try_fire(struct zoc_pci_func *f)
{
	if (!(atomic_load(&f->flags) & F_MSI_PEND) || msi_masked(f))
		return false;
	if (!(atomic_fetch_and(&f->flags, ~F_MSI_PEND) & F_MSI_PEND))
		return false;
	return signal_fd(atomic_load(&f->msi_fd));
}

static bool msi_raise(struct zoc_pci_func *f)
{
	if (msi_masked(f)) {
		atomic_fetch_or(&f->flags, F_MSI_PEND);
		return msi_try_fire(f);
	}
	return signal_fd(atomic_load(&f->msi_fd));
}

/* ---- INTx ---- */

/* Signals if the level is high and INTx is neither disabled nor masked;
 * masks it (VFIO automask) so the next signal waits for the link's unmask. */
static bool intx_try_fire(struct zoc_pci_func *f)
{
	uint32_t fl = atomic_load(&f->flags);
	int fd = atomic_load(&f->intx_fd);

	/* No eventfd, no signal and no automask: nobody would unmask it.
	 * Setting an fd later signals a level that is still high. */
	if (fd < 0 || !(fl & F_INTX_LEVEL) || (fl & (F_INTX_DIS | F_INTX_LMASK)))
		return false;
	if (atomic_fetch_or(&f->flags, F_INTX_LMASK) & F_INTX_LMASK)
		return false; /* another raiser got there first */
	return signal_fd(fd);
}

/* ---- config space construction ---- */

static void build_config(struct zoc_pci_func *f)
{
	const struct zoc_pci_desc *d = &f->desc;
	uint8_t *c = f->cfg, *w = f->wmask, *w1 = f->w1cmask;
	uint8_t *prev_next = &c[CFG_CAP_PTR];

	memset(c, 0, ZOC_PCI_CFG_SIZE);
	memset(w, 0, ZOC_PCI_CFG_SIZE);
	memset(w1, 0, ZOC_PCI_CFG_SIZE);

	put16(c, CFG_VENDOR_ID, d->vendor_id);
	put16(c, CFG_DEVICE_ID, d->device_id);
	put16(w, CFG_COMMAND, CMD_WMASK);
	put16(c, CFG_STATUS, STS_CAP_LIST);
	put16(w1, CFG_STATUS, STS_W1C);
	put8(c, CFG_REVISION, d->revision);
	put8(c, CFG_CLASS, (uint8_t)d->class_code);
	put16(c, CFG_CLASS + 1, (uint16_t)(d->class_code >> 8));
	put8(w, CFG_CACHE_LINE, 0xff);
	put8(c, CFG_HEADER_TYPE, 0x00);

	for (unsigned i = 0; i < ZOC_PCI_NUM_BARS; i++) {
		uint64_t size = d->bars[i].size;
		uint32_t fl = d->bars[i].flags, off = CFG_BAR0 + 4 * i;

		if (!size)
			continue;
		if (fl & ZOC_PCI_BAR_IO) {
			put32(c, off, BAR_IO);
			put32(w, off, (uint32_t)~(size - 1) & ~0x3u);
			continue;
		}
		put32(c, off, ((fl & ZOC_PCI_BAR_MEM64) ? BAR_MEM64 : 0) |
				      ((fl & ZOC_PCI_BAR_PREFETCH) ? BAR_PREFETCH : 0));
		put32(w, off, (uint32_t)~(size - 1) & ~0xfu);
		if (fl & ZOC_PCI_BAR_MEM64) {
			put32(w, off + 4, (uint32_t)(~(size - 1) >> 32));
			i++;
		}
	}

	put16(c, CFG_SUBSYS_VENDOR, d->subsys_vendor_id);
	put16(c, CFG_SUBSYS_ID, d->subsys_id);
	put8(w, CFG_INT_LINE, 0xff);
	put8(c, CFG_INT_PIN, d->intx_pin);

	/* Power management: D0 and D3hot only, no PME. */
	*prev_next = PM_OFF;
	put8(c, PM_OFF, CAP_ID_PM);
	prev_next = &c[PM_OFF + 1];
	put16(c, PM_OFF + PM_PMC, PM_PMC_VERSION);
	put16(c, PM_OFF + PM_PMCSR, PMCSR_NO_SOFT_RESET | PMCSR_D0);
	put16(w, PM_OFF + PM_PMCSR, PMCSR_STATE_MASK);

	if (d->msi) {
		*prev_next = MSI_OFF;
		put8(c, MSI_OFF, CAP_ID_MSI);
		prev_next = &c[MSI_OFF + 1];
		put16(c, MSI_OFF + MSI_CTRL, MSI_CTRL_64BIT | MSI_CTRL_PVM);
		put16(w, MSI_OFF + MSI_CTRL, MSI_CTRL_ENABLE);
		put32(w, MSI_OFF + MSI_ADDR_LO, 0xfffffffcu);
		put32(w, MSI_OFF + MSI_ADDR_HI, 0xffffffffu);
		put16(w, MSI_OFF + MSI_DATA, 0xffff);
		put32(w, MSI_OFF + MSI_MASK, 0x1);
		/* MSI_PENDING: read-only, served from the flags word. */
	}

	if (d->msix_vectors) {
		*prev_next = MSIX_OFF;
		put8(c, MSIX_OFF, CAP_ID_MSIX);
		prev_next = &c[MSIX_OFF + 1];
		put16(c, MSIX_OFF + MSIX_CTRL, (uint16_t)(d->msix_vectors - 1));
		put16(w, MSIX_OFF + MSIX_CTRL, MSIX_CTRL_ENABLE | MSIX_CTRL_FMASK);
		put32(c, MSIX_OFF + MSIX_TABLE, d->msix_table_offset | d->msix_bar);
		put32(c, MSIX_OFF + MSIX_PBA, d->msix_pba_offset | d->msix_bar);
	}

	if (d->pcie) {
		*prev_next = EXP_OFF;
		put8(c, EXP_OFF, CAP_ID_EXP);
		prev_next = &c[EXP_OFF + 1];
		put16(c, EXP_OFF + EXP_FLAGS, EXP_FLAGS_V2);
		/* max payload 128 bytes, role-based error reporting, FLR */
		put32(c, EXP_OFF + EXP_DEVCAP, EXP_DEVCAP_RBER | EXP_DEVCAP_FLR);
		put16(c, EXP_OFF + EXP_DEVCTL, EXP_DEVCTL_DEFAULT);
		put16(w, EXP_OFF + EXP_DEVCTL, EXP_DEVCTL_WMASK);
		put16(w1, EXP_OFF + EXP_DEVSTA, EXP_DEVSTA_W1C);
		put32(c, EXP_OFF + EXP_LNKCAP, EXP_LNKCAP_DEFAULT);
		put16(w, EXP_OFF + EXP_LNKCTL, EXP_LNKCTL_WMASK);
		put16(c, EXP_OFF + EXP_LNKSTA, EXP_LNKSTA_DEFAULT);
		put32(c, EXP_OFF + EXP_LNKCAP2, EXP_LNKCAP2_DEFAULT);
		put16(c, EXP_OFF + EXP_LNKCTL2, EXP_LNKCTL2_DEFAULT);
	}

	for (unsigned i = 0; i < d->ncaps; i++) {
		const struct zoc_pci_cap *cp = &d->caps[i];

		memcpy(&c[cp->offset], cp->bytes, cp->len);
		if (cp->wmask)
			memcpy(&w[cp->offset + 2], cp->wmask + 2, cp->len - 2u);
		*prev_next = cp->offset;
		prev_next = &c[cp->offset + 1];
	}
	*prev_next = 0;
	/* 0x100: extended capability header 0 = empty list. */
}

/* Device capabilities: inside [0x40, 0x100), dword aligned, clear of the
 * standard capabilities present and of each other. */
static int check_caps(const struct zoc_pci_desc *d)
{
	uint8_t used[0x100] = {0};

	if (!d->ncaps)
		return 0;
	if (d->ncaps > ZOC_PCI_MAX_CAPS || !d->caps)
		return -EINVAL;
	memset(&used[PM_OFF], 1, 8);
	if (d->msi)
		memset(&used[MSI_OFF], 1, MSI_SIZE);
	if (d->msix_vectors)
		memset(&used[MSIX_OFF], 1, MSIX_SIZE);
	if (d->pcie)
		memset(&used[EXP_OFF], 1, EXP_SIZE);
	for (unsigned i = 0; i < d->ncaps; i++) {
		const struct zoc_pci_cap *cp = &d->caps[i];

		if (!cp->bytes || cp->len < 2 || cp->offset < 0x40 || (cp->offset & 3) ||
		    cp->offset + (unsigned)cp->len > 0x100)
			return -EINVAL;
		for (unsigned o = cp->offset; o < cp->offset + (unsigned)cp->len; o++) {
			if (used[o])
				return -EINVAL;
			used[o] = 1;
		}
	}
	return 0;
}

static int check_desc(const struct zoc_pci_desc *d)
{
	const uint32_t known = ZOC_PCI_BAR_MEM64 | ZOC_PCI_BAR_PREFETCH | ZOC_PCI_BAR_IO;

	if (check_caps(d))
		return -EINVAL;

	if (d->class_code > 0xffffff || d->intx_pin > 4)
		return -EINVAL;
	for (unsigned i = 0; i < ZOC_PCI_NUM_BARS; i++) {
		uint64_t size = d->bars[i].size;
		uint32_t fl = d->bars[i].flags;

		if (fl & ~known)
			return -EINVAL;
		if (!size) {
			if (fl)
				return -EINVAL;
			continue;
		}
		if (!is_pow2(size))
			return -EINVAL;
		if (fl & ZOC_PCI_BAR_IO) {
			if ((fl & (ZOC_PCI_BAR_MEM64 | ZOC_PCI_BAR_PREFETCH)) || size < 4 ||
			    size > 0x10000)
				return -EINVAL;
			continue;
		}
		if (size < 16)
			return -EINVAL;
		if (!(fl & ZOC_PCI_BAR_MEM64)) {
			if (size > 0x80000000ull)
				return -EINVAL;
			continue;
		}
		if (size > (1ull << 63) || i + 1 >= ZOC_PCI_NUM_BARS)
			return -EINVAL;
		if (d->bars[i + 1].size || d->bars[i + 1].flags)
			return -EINVAL; /* the upper half's slot is taken */
		i++;
	}
	if (d->msix_vectors) {
		uint64_t tsize = (uint64_t)d->msix_vectors * MSIX_ENTRY_SIZE;
		uint64_t psize = ((uint64_t)d->msix_vectors + 63) / 64 * 8;
		uint64_t bsize;

		if (d->msix_vectors > ZOC_PCI_MSIX_MAX_VECTORS || d->msix_bar >= ZOC_PCI_NUM_BARS)
			return -EINVAL;
		bsize = d->bars[d->msix_bar].size;
		if (!bsize || (d->bars[d->msix_bar].flags & ZOC_PCI_BAR_IO))
			return -EINVAL;
		if ((d->msix_table_offset & 7) || (d->msix_pba_offset & 7))
			return -EINVAL;
		if (zoc_range_bad(d->msix_table_offset, tsize, bsize) ||
		    zoc_range_bad(d->msix_pba_offset, psize, bsize))
			return -EINVAL;
		if (d->msix_table_offset < d->msix_pba_offset + psize &&
		    d->msix_pba_offset < d->msix_table_offset + tsize)
			return -EINVAL;
	}
	return 0;
}

/* Power-on values of everything the model keeps outside cfg. */
static void reset_state(struct zoc_pci_func *f)
{
	uint32_t fl = atomic_load(&f->flags);

	/* Keep the link's masks; everything the driver set goes. */
	while (!atomic_compare_exchange_weak(&f->flags, &fl, fl & F_LINK_BITS))
		;
	atomic_store(&f->command, 0);
	for (uint32_t w = 0; w < f->nwords; w++) {
		atomic_store(&f->msix_gmask[w], word_valid(f, w));
		atomic_store(&f->msix_pend[w], 0);
	}
	if (f->nvec)
		memset(f->msix_entries, 0, sizeof(*f->msix_entries) * f->nvec);
}

struct zoc_pci_func *zoc_pci_func_create(const struct zoc_pci_desc *desc, void *dev_ctx)
{
	struct zoc_pci_func *f;

	if (!desc || check_desc(desc)) {
		errno = EINVAL;
		return NULL;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		errno = ENOMEM;
		return NULL;
	}
	f->desc = *desc;
	f->ctx = dev_ctx;
	atomic_init(&f->flags, 0);
	atomic_init(&f->command, 0);
	atomic_init(&f->intx_fd, -1);
	atomic_init(&f->msi_fd, -1);
	f->nvec = desc->msix_vectors;
	if (f->nvec) {
		f->nwords = (f->nvec + 63) / 64;
		f->msix_table_end = desc->msix_table_offset + (uint64_t)f->nvec * MSIX_ENTRY_SIZE;
		f->msix_pba_size = (uint64_t)f->nwords * 8;
		f->msix_entries = calloc(f->nvec, sizeof(*f->msix_entries));
		f->msix_gmask = calloc(f->nwords, sizeof(*f->msix_gmask));
		f->msix_lmask = calloc(f->nwords, sizeof(*f->msix_lmask));
		f->msix_pend = calloc(f->nwords, sizeof(*f->msix_pend));
		f->msix_fd = calloc(f->nvec, sizeof(*f->msix_fd));
		if (!f->msix_entries || !f->msix_gmask || !f->msix_lmask || !f->msix_pend ||
		    !f->msix_fd) {
			free(f->msix_entries);
			free(f->msix_gmask);
			free(f->msix_lmask);
			free(f->msix_pend);
			free(f->msix_fd);
			free(f);
			errno = ENOMEM;
			return NULL;
		}
		for (uint32_t w = 0; w < f->nwords; w++) {
			atomic_init(&f->msix_gmask[w], word_valid(f, w));
			atomic_init(&f->msix_lmask[w], 0);
			atomic_init(&f->msix_pend[w], 0);
		}
		for (uint32_t v = 0; v < f->nvec; v++)
			atomic_init(&f->msix_fd[v], -1);
	}
	build_config(f);
	memcpy(f->power_on, f->cfg, sizeof(f->cfg));
	for (unsigned i = 0; i < desc->ncaps; i++) {
		f->caps[i] = desc->caps[i];
		f->caps[i].bytes = &f->power_on[desc->caps[i].offset];
		f->caps[i].wmask = &f->wmask[desc->caps[i].offset];
	}
	f->desc.caps = desc->ncaps ? f->caps : NULL;
	return f;
}

void zoc_pci_func_destroy(struct zoc_pci_func *f)
{
	int fd;

	if (!f)
		return;
	fd = atomic_load(&f->intx_fd);
	if (fd >= 0)
		close(fd);
	fd = atomic_load(&f->msi_fd);
	if (fd >= 0)
		close(fd);
	for (uint32_t v = 0; v < f->nvec; v++) {
		fd = atomic_load(&f->msix_fd[v]);
		if (fd >= 0)
			close(fd);
	}
	free(f->msix_entries);
	free(f->msix_gmask);
	free(f->msix_lmask);
	free(f->msix_pend);
	free(f->msix_fd);
	free(f);
}

void *zoc_pci_func_ctx(const struct zoc_pci_func *f)
{
	return f->ctx;
}

const struct zoc_pci_desc *zoc_pci_func_desc(const struct zoc_pci_func *f)
{
	return &f->desc;
}

/* ---- config space access ---- */

void zoc_pci_cfg_masks(const struct zoc_pci_func *f, uint8_t *wmask, uint8_t *w1cmask)
{
	memcpy(wmask, f->wmask, ZOC_PCI_CFG_SIZE);
	memcpy(w1cmask, f->w1cmask, ZOC_PCI_CFG_SIZE);
}

/* Bring the bytes that mirror atomic state up to date before a read. */
static void cfg_refresh(struct zoc_pci_func *f)
{
	uint32_t fl = atomic_load(&f->flags);
	uint16_t sts = cfg_get16(f, CFG_STATUS);

	sts = (uint16_t)((sts & ~STS_INTX) | ((fl & F_INTX_LEVEL) ? STS_INTX : 0));
	put16(f->cfg, CFG_STATUS, sts);
	if (f->desc.msi)
		put32(f->cfg, MSI_OFF + MSI_PENDING, (fl & F_MSI_PEND) ? 1 : 0);
}

static bool cfg_range_ok(uint32_t off, uint32_t len)
{
	return len >= 1 && len <= 4 && off < ZOC_PCI_CFG_SIZE && (off & 3) + len <= 4;
}

/* Index of the device capability holding [off, off+len), or -1. */
static int dev_cap_at(const struct zoc_pci_func *f, uint32_t off, uint32_t len)
{
	for (unsigned i = 0; i < f->desc.ncaps; i++) {
		const struct zoc_pci_cap *cp = &f->caps[i];

		if (off >= cp->offset && off + len <= (uint32_t)cp->offset + cp->len)
			return (int)i;
	}
	return -1;
}

static bool dev_caps_touch(const struct zoc_pci_func *f, uint32_t off, uint32_t len)
{
	for (unsigned i = 0; i < f->desc.ncaps; i++)
		if (ranges_touch(off, len, f->caps[i].offset, f->caps[i].len))
			return true;
	return false;
}

int zoc_pci_cfg_store(struct zoc_pci_func *f, uint32_t off, const void *buf, uint32_t len)
{
	int i;

	if (!f || !buf || !len || zoc_range_bad(off, len, ZOC_PCI_CFG_SIZE))
		return -EINVAL;
	i = dev_cap_at(f, off, len);
	if (i < 0 || off < f->caps[i].offset + 2u)
		return -EINVAL;
	memcpy(&f->cfg[off], buf, len);
	return 0;
}

int zoc_pci_cfg_read(struct zoc_pci_func *f, uint32_t off, void *buf, uint32_t len)
{
	if (!f || !buf || !cfg_range_ok(off, len))
		return -EINVAL;
	if (f->desc.ops && f->desc.ops->cfg_read && !f->in_cfg_read &&
	    dev_caps_touch(f, off, len)) {
		f->in_cfg_read = true;
		f->desc.ops->cfg_read(f, off, len);
		f->in_cfg_read = false;
	}
	cfg_refresh(f);
	memcpy(buf, &f->cfg[off], len);
	return 0;
}

/* Side effects of a write to [off, off+len); val holds the bytes written. */
static bool cfg_side_effects(struct zoc_pci_func *f, uint32_t off, uint32_t len,
			     const uint8_t *val, const uint8_t *old)
{
	if (ranges_touch(off, len, CFG_COMMAND, 2)) {
		uint16_t cmd = cfg_get16(f, CFG_COMMAND);

		atomic_store(&f->command, cmd);
		if (cmd & CMD_INTX_DISABLE) {
			atomic_fetch_or(&f->flags, F_INTX_DIS);
		} else {
			atomic_fetch_and(&f->flags, ~F_INTX_DIS);
			intx_try_fire(f);
		}
	}

	if (ranges_touch(off, len, PM_OFF + PM_PMCSR, 1)) {
		uint32_t st = f->cfg[PM_OFF + PM_PMCSR] & PMCSR_STATE_MASK;

		/* D1 and D2 are not supported: such writes are ignored. */
		if (st != PMCSR_D0 && st != PMCSR_D3HOT) {
			uint32_t i = PM_OFF + PM_PMCSR - off;

			f->cfg[PM_OFF + PM_PMCSR] = old[i];
		}
	}

	if (f->desc.msi && ranges_touch(off, len, MSI_OFF + MSI_CTRL, 1)) {
		if (cfg_get16(f, MSI_OFF + MSI_CTRL) & MSI_CTRL_ENABLE)
			atomic_fetch_or(&f->flags, F_MSI_EN);
		else
			atomic_fetch_and(&f->flags, ~F_MSI_EN);
		msi_try_fire(f);
	}
	if (f->desc.msi && ranges_touch(off, len, MSI_OFF + MSI_MASK, 1)) {
		if (cfg_get32(f, MSI_OFF + MSI_MASK) & 1)
			atomic_fetch_or(&f->flags, F_MSI_GMASK);
		else
			atomic_fetch_and(&f->flags, ~F_MSI_GMASK);
		msi_try_fire(f);
	}

	if (f->nvec && ranges_touch(off, len, MSIX_OFF + MSIX_CTRL + 1, 1)) {
		uint16_t ctl = cfg_get16(f, MSIX_OFF + MSIX_CTRL);
		uint32_t set = 0, clr = 0;

		*((ctl & MSIX_CTRL_ENABLE) ? &set : &clr) |= F_MSIX_EN;
		*((ctl & MSIX_CTRL_FMASK) ? &set : &clr) |= F_MSIX_FMASK;
		atomic_fetch_or(&f->flags, set);
		atomic_fetch_and(&f->flags, ~clr);
		if ((ctl & MSIX_CTRL_ENABLE) && !(ctl & MSIX_CTRL_FMASK))
			msix_try_fire_all(f);
	}

	if (f->desc.pcie && ranges_touch(off, len, EXP_OFF + EXP_DEVCTL + 1, 1)) {
		uint32_t i = EXP_OFF + EXP_DEVCTL + 1 - off;

		if (val[i] & (EXP_DEVCTL_FLR >> 8)) {
			ZOC_DEBUG("pci %04x:%04x: function level reset", f->desc.vendor_id,
				  f->desc.device_id);
			zoc_pci_func_reset(f, NULL, NULL);
			return false;
		}
	}
	return true;
}

int zoc_pci_cfg_write(struct zoc_pci_func *f, uint32_t off, const void *buf, uint32_t len)
{
	uint8_t val[4], old[4];

	if (!f || !buf || !cfg_range_ok(off, len))
		return -EINVAL;
	memcpy(val, buf, len);
	memcpy(old, &f->cfg[off], len);
	for (uint32_t i = 0; i < len; i++) {
		uint32_t o = off + i;
		uint8_t c = f->cfg[o];

		c = (uint8_t)((c & ~f->wmask[o]) | (val[i] & f->wmask[o]));
		c = (uint8_t)(c & ~(val[i] & f->w1cmask[o]));
		f->cfg[o] = c;
	}
	if (cfg_side_effects(f, off, len, val, old) && f->desc.ops && f->desc.ops->cfg_written)
		f->desc.ops->cfg_written(f, off, len);
	return 0;
}

/* Largest naturally aligned piece (at most max) at pos with rem bytes left. */
static uint32_t piece_len(uint64_t pos, uint64_t rem, uint32_t max)
{
	uint32_t s = max;

	while (s > 1 && ((pos & (s - 1)) || s > rem))
		s >>= 1;
	return s;
}

int zoc_pci_cfg_access(struct zoc_pci_func *f, uint32_t off, void *buf, uint32_t len,
		       bool is_write)
{
	uint8_t *p = buf;

	if (!f || !buf || !len || zoc_range_bad(off, len, ZOC_PCI_CFG_SIZE))
		return -EINVAL;
	while (len) {
		uint32_t s = piece_len(off, len, 4);
		int rc = is_write ? zoc_pci_cfg_write(f, off, p, s) : zoc_pci_cfg_read(f, off, p, s);

		if (rc)
			return rc;
		off += s;
		p += s;
		len -= s;
	}
	return 0;
}

/* ---- BARs, MSI-X table and PBA ---- */

uint64_t zoc_pci_bar_size(const struct zoc_pci_func *f, unsigned bar)
{
	if (!f || bar >= ZOC_PCI_NUM_BARS)
		return 0;
	return f->desc.bars[bar].size;
}

static int msix_table_access(struct zoc_pci_func *f, uint64_t off, uint8_t *buf, uint32_t len,
			     bool is_write)
{
	uint32_t v = (uint32_t)(off / MSIX_ENTRY_SIZE), field = (uint32_t)(off % MSIX_ENTRY_SIZE);
	uint32_t dw[2];
	uint32_t n = len / 4;

	if (len != 4 && len != 8)
		return -EINVAL;
	if (!is_write) {
		for (uint32_t i = 0; i < n; i++) {
			uint32_t fi = field / 4 + i;

			if (fi < 3)
				dw[i] = f->msix_entries[v][fi];
			else
				dw[i] = (atomic_load(&f->msix_gmask[v / 64]) & vbit(v)) ?
						MSIX_VCTRL_MASK :
						0;
		}
		memcpy(buf, dw, len);
		return 0;
	}
	memcpy(dw, buf, len);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t fi = field / 4 + i;

		if (fi < 3) {
			f->msix_entries[v][fi] = dw[i];
		} else if (dw[i] & MSIX_VCTRL_MASK) {
			atomic_fetch_or(&f->msix_gmask[v / 64], vbit(v));
		} else {
			atomic_fetch_and(&f->msix_gmask[v / 64], ~vbit(v));
			msix_try_fire(f, v);
		}
	}
	return 0;
}

static int msix_pba_access(struct zoc_pci_func *f, uint64_t off, uint8_t *buf, uint32_t len,
			   bool is_write)
{
	uint64_t w;

	if (len != 4 && len != 8)
		return -EINVAL;
	if (is_write)
		return 0; /* read-only */
	w = atomic_load(&f->msix_pend[off / 8]);
	if (len == 4)
		w >>= (off & 4) * 8;
	memcpy(buf, &w, len);
	return 0;
}

static int bar_piece(struct zoc_pci_func *f, unsigned bar, uint64_t off, uint8_t *buf,
		     uint32_t len, bool is_write)
{
	const struct zoc_pci_desc *d = &f->desc;

	if (f->nvec && bar == d->msix_bar) {
		if (off >= d->msix_table_offset && off < f->msix_table_end)
			return msix_table_access(f, off - d->msix_table_offset, buf, len,
						 is_write);
		if (off >= d->msix_pba_offset && off < d->msix_pba_offset + f->msix_pba_size)
			return msix_pba_access(f, off - d->msix_pba_offset, buf, len, is_write);
	}
	if (!d->ops || !d->ops->bar_access) {
		if (!is_write)
			memset(buf, 0, len);
		return 0;
	}
	return d->ops->bar_access(f, bar, off, buf, len, is_write);
}

int zoc_pci_bar_access(struct zoc_pci_func *f, unsigned bar, uint64_t off, void *buf,
		       uint32_t len, bool is_write)
{
	uint8_t *p = buf;
	uint64_t size;

	if (!f || !buf || !len || bar >= ZOC_PCI_NUM_BARS)
		return -EINVAL;
	size = f->desc.bars[bar].size;
	if (!size || zoc_range_bad(off, len, size))
		return -EINVAL;
	while (len) {
		uint32_t s = piece_len(off, len, 8);
		int rc = bar_piece(f, bar, off, p, s, is_write);

		if (rc)
			return rc;
		off += s;
		p += s;
		len -= s;
	}
	return 0;
}

void zoc_pci_status_set(struct zoc_pci_func *f, uint16_t bits)
{
	if (f)
		put16(f->cfg, CFG_STATUS, (uint16_t)(cfg_get16(f, CFG_STATUS) | (bits & STS_W1C)));
}

bool zoc_pci_bus_master(const struct zoc_pci_func *f)
{
	return (atomic_load(&((struct zoc_pci_func *)f)->command) & CMD_MASTER) != 0;
}

bool zoc_pci_mem_enabled(const struct zoc_pci_func *f)
{
	return (atomic_load(&((struct zoc_pci_func *)f)->command) & CMD_MEM) != 0;
}

/* ---- interrupts ---- */

uint32_t zoc_pci_irq_count(const struct zoc_pci_func *f, enum zoc_pci_irq_type type)
{
	switch (type) {
	case ZOC_PCI_IRQ_INTX:
		return f->desc.intx_pin ? 1 : 0;
	case ZOC_PCI_IRQ_MSI:
		return f->desc.msi ? 1 : 0;
	case ZOC_PCI_IRQ_MSIX:
		return f->nvec;
	default:
		return 0;
	}
}

static _Atomic int *irq_fd_slot(struct zoc_pci_func *f, enum zoc_pci_irq_type type, uint32_t v)
{
	switch (type) {
	case ZOC_PCI_IRQ_INTX:
		return &f->intx_fd;
	case ZOC_PCI_IRQ_MSI:
		return &f->msi_fd;
	case ZOC_PCI_IRQ_MSIX:
		return &f->msix_fd[v];
	default:
		return NULL;
	}
}

/* A client's "eventfd" could be a pipe that blocks a raiser once full:
 * accept eventfds only. Without /proc, refuse what can block a write. */
static bool is_eventfd(int fd)
{
	char path[64], target[64];
	struct stat st;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n >= 0) {
		target[n] = 0;
		return strcmp(target, "anon_inode:[eventfd]") == 0;
	}
	if (fstat(fd, &st))
		return false;
	return !S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode) && !S_ISCHR(st.st_mode) &&
	       !S_ISBLK(st.st_mode) && !S_ISDIR(st.st_mode);
}

static void close_fds(const int *fds, uint32_t count)
{
	for (uint32_t i = 0; fds && i < count; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

int zoc_pci_irq_set_fds(struct zoc_pci_func *f, enum zoc_pci_irq_type type, uint32_t start,
			uint32_t count, const int *fds)
{
	uint32_t nvec;
	struct fd_grave *g;
	bool remove_all;

	if (!f || (unsigned)type >= ZOC_PCI_IRQ_TYPES) {
		close_fds(fds, count);
		return -EINVAL;
	}
	nvec = zoc_pci_irq_count(f, type);
	remove_all = !count && !start;
	if (!remove_all && (!count || !fds || zoc_range_bad(start, count, nvec))) {
		close_fds(fds, count);
		return -EINVAL;
	}
	for (uint32_t i = 0; !remove_all && i < count; i++) {
		if (fds[i] >= 0 && !is_eventfd(fds[i])) {
			ZOC_WARN_RL("pci: irq fd %d is not an eventfd", fds[i]);
			close_fds(fds, count);
			return -EINVAL;
		}
	}
	if (remove_all) {
		/* Disabling a type (VFIO: trigger with count 0) also drops its
		 * link-level masks, the INTx automask included. */
		start = 0;
		count = nvec;
		if (type == ZOC_PCI_IRQ_INTX)
			atomic_fetch_and(&f->flags, ~F_INTX_LMASK);
		else if (type == ZOC_PCI_IRQ_MSI)
			atomic_fetch_and(&f->flags, ~F_MSI_LMASK);
		for (uint32_t w = 0; type == ZOC_PCI_IRQ_MSIX && w < f->nwords; w++)
			atomic_store(&f->msix_lmask[w], 0);
	}
	if (!count)
		return 0;
	g = malloc(sizeof(*g) + sizeof(int) * count);
	if (!g) {
		if (!remove_all)
			close_fds(fds, count);
		return -ENOMEM;
	}
	g->n = 0;
	for (uint32_t i = 0; i < count; i++) {
		int nfd = remove_all ? -1 : fds[i];
		int ofd = atomic_exchange(irq_fd_slot(f, type, start + i), nfd);

		if (ofd >= 0)
			g->fds[g->n++] = ofd;
	}
	fd_grave_bury(g);
	if (type == ZOC_PCI_IRQ_INTX && !remove_all)
		intx_try_fire(f); /* a level already high reaches the new fd */
	return 0;
}

int zoc_pci_irq_mask(struct zoc_pci_func *f, enum zoc_pci_irq_type type, uint32_t start,
		     uint32_t count, bool mask)
{
	if (!f || (unsigned)type >= ZOC_PCI_IRQ_TYPES || !count ||
	    zoc_range_bad(start, count, zoc_pci_irq_count(f, type)))
		return -EINVAL;
	switch (type) {
	case ZOC_PCI_IRQ_INTX:
		if (mask) {
			atomic_fetch_or(&f->flags, F_INTX_LMASK);
		} else {
			atomic_fetch_and(&f->flags, ~F_INTX_LMASK);
			intx_try_fire(f);
		}
		break;
	case ZOC_PCI_IRQ_MSI:
		if (mask) {
			atomic_fetch_or(&f->flags, F_MSI_LMASK);
		} else {
			atomic_fetch_and(&f->flags, ~F_MSI_LMASK);
			msi_try_fire(f);
		}
		break;
	case ZOC_PCI_IRQ_MSIX:
		for (uint32_t v = start; v < start + count; v++) {
			if (mask) {
				atomic_fetch_or(&f->msix_lmask[v / 64], vbit(v));
			} else {
				atomic_fetch_and(&f->msix_lmask[v / 64], ~vbit(v));
				msix_try_fire(f, v);
			}
		}
		break;
	default:
		return -EINVAL;
	}
	return 0;
}

int zoc_pci_irq_trigger(struct zoc_pci_func *f, enum zoc_pci_irq_type type, uint32_t start,
			uint32_t count)
{
	if (!f || (unsigned)type >= ZOC_PCI_IRQ_TYPES || !count ||
	    zoc_range_bad(start, count, zoc_pci_irq_count(f, type)))
		return -EINVAL;
	for (uint32_t v = start; v < start + count; v++)
		signal_fd(atomic_load(irq_fd_slot(f, type, v)));
	return 0;
}

bool zoc_pci_irq_raise(struct zoc_pci_func *f, uint16_t vector)
{
	uint32_t fl;

	if (!f)
		return false;
	fl = atomic_load(&f->flags);
	if (fl & F_MSIX_EN)
		return msix_raise(f, vector);
	if (fl & F_MSI_EN)
		return msi_raise(f);
	if (!f->desc.intx_pin)
		return false;
	atomic_fetch_or(&f->flags, F_INTX_LEVEL);
	return intx_try_fire(f);
}

void zoc_pci_intx_lower(struct zoc_pci_func *f)
{
	if (f)
		atomic_fetch_and(&f->flags, ~F_INTX_LEVEL);
}

bool zoc_pci_msi_active(const struct zoc_pci_func *f)
{
	uint32_t fl = atomic_load(&((struct zoc_pci_func *)f)->flags);

	return ((fl & F_MSIX_EN) && !(fl & F_MSIX_FMASK)) || (fl & F_MSI_EN);
}

bool zoc_pci_msix_enabled(const struct zoc_pci_func *f)
{
	return (atomic_load(&((struct zoc_pci_func *)f)->flags) & F_MSIX_EN) != 0;
}

/* ---- reset ---- */

static void noop_done(void *arg)
{
	(void)arg;
}

void zoc_pci_func_reset(struct zoc_pci_func *f, zoc_pci_done_fn done, void *arg)
{
	if (!done)
		done = noop_done;
	memcpy(f->cfg, f->power_on, sizeof(f->cfg));
	reset_state(f);
	if (f->desc.ops && f->desc.ops->reset)
		f->desc.ops->reset(f, done, arg);
	else
		done(arg);
}

/* ---- info ---- */

static unsigned popcount_words(_Atomic uint64_t *w, uint32_t n)
{
	unsigned c = 0;

	for (uint32_t i = 0; i < n; i++)
		c += (unsigned)__builtin_popcountll(atomic_load(&w[i]));
	return c;
}

json_t *zoc_pci_func_info(const struct zoc_pci_func *cf)
{
	struct zoc_pci_func *f = (struct zoc_pci_func *)cf;
	const struct zoc_pci_desc *d = &f->desc;
	uint32_t fl = atomic_load(&f->flags);
	json_t *o, *bars;

	cfg_refresh(f);
	o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "vendor_id", json_integer(d->vendor_id));
	json_object_set_new(o, "device_id", json_integer(d->device_id));
	json_object_set_new(o, "subsys_vendor_id", json_integer(d->subsys_vendor_id));
	json_object_set_new(o, "subsys_id", json_integer(d->subsys_id));
	json_object_set_new(o, "class_code", json_integer(d->class_code));
	json_object_set_new(o, "revision", json_integer(d->revision));
	json_object_set_new(o, "command", json_integer(cfg_get16(f, CFG_COMMAND)));
	json_object_set_new(o, "status", json_integer(cfg_get16(f, CFG_STATUS)));
	json_object_set_new(o, "power_state",
			    json_string((f->cfg[PM_OFF + PM_PMCSR] & PMCSR_STATE_MASK) ==
						PMCSR_D3HOT ?
					"D3hot" :
					"D0"));
	bars = json_array();
	for (unsigned i = 0; i < ZOC_PCI_NUM_BARS; i++) {
		uint32_t bfl = d->bars[i].flags;
		uint64_t addr;

		if (!d->bars[i].size)
			continue;
		addr = cfg_get32(f, CFG_BAR0 + 4 * i);
		if (bfl & ZOC_PCI_BAR_MEM64)
			addr |= (uint64_t)cfg_get32(f, CFG_BAR0 + 4 * i + 4) << 32;
		addr &= (bfl & ZOC_PCI_BAR_IO) ? ~0x3ull : ~0xfull;
		json_array_append_new(
			bars, json_pack("{s:i, s:I, s:s, s:b, s:I}", "index", (int)i, "size",
					(json_int_t)d->bars[i].size, "type",
					(bfl & ZOC_PCI_BAR_IO)	      ? "io" :
					(bfl & ZOC_PCI_BAR_MEM64) ? "mem64" :
								    "mem32",
					"prefetch", (bfl & ZOC_PCI_BAR_PREFETCH) != 0, "address",
					(json_int_t)addr));
	}
	json_object_set_new(o, "bars", bars);
	if (d->intx_pin)
		json_object_set_new(o, "intx",
				    json_pack("{s:i, s:b, s:b, s:b}", "pin", d->intx_pin, "level",
					      (fl & F_INTX_LEVEL) != 0, "disabled",
					      (fl & F_INTX_DIS) != 0, "masked",
					      (fl & F_INTX_LMASK) != 0));
	if (d->msi)
		json_object_set_new(o, "msi",
				    json_pack("{s:b, s:b, s:b}", "enabled", (fl & F_MSI_EN) != 0,
					      "masked", (fl & (F_MSI_GMASK | F_MSI_LMASK)) != 0,
					      "pending", (fl & F_MSI_PEND) != 0));
	if (f->nvec)
		json_object_set_new(o, "msix",
				    json_pack("{s:b, s:b, s:i, s:i, s:i}", "enabled",
					      (fl & F_MSIX_EN) != 0, "masked",
					      (fl & F_MSIX_FMASK) != 0, "vectors", (int)f->nvec,
					      "masked_vectors",
					      (int)popcount_words(f->msix_gmask, f->nwords),
					      "pending", (int)popcount_words(f->msix_pend, f->nwords)));
	json_object_set_new(o, "pcie", json_boolean(d->pcie));
	return o;
}
