// SPDX-License-Identifier: GPL-2.0
/*
 * zoc-vbus: the Virtual Bus of ZOC. A PCI root bus in a private domain
 * whose functions are served by a user-space device model (zocd), so the
 * host's own drivers (nvme) drive them as if they were hardware.
 *
 * - Config space: an image with per-byte write masks given at creation.
 *   Reads are served from it under a raw spinlock (they may come with
 *   interrupts off); writes are applied with the masks and queued for user
 *   space, which reads them from the char device.
 * - BARs: assigned by the PCI core from a window of physical memory reserved
 *   at boot (memmap=SIZE$ADDR, module parameters window_base and
 *   window_size); user space maps them uncached and polls them.
 * - MSI-X: the table and PBA live in a BAR, where the kernel writes real MSI
 *   messages. User space gives one eventfd per vector; when one is
 *   signalled the module reads the vector's entry and, unless it is masked
 *   (then its PBA bit is set until it is unmasked), sends its vector as an
 *   IPI to the CPU the message names.
 * - DMA: DMA ops that bounce every mapping through a pool (vmalloc'ed,
 *   bounded per function) that user space maps; the device sees only bus
 *   addresses inside the pool, never the rest of host memory.
 * - Mappings are filled by a fault handler and revoked when the function is
 *   removed (each file has its own address_space, so one function's
 *   mappings are zapped alone): a later access gets SIGBUS, never a window
 *   that a new function reuses.
 * - Function Level Reset: the module puts the image back to its state after
 *   creation and holds config reads at all ones (not ready) until user space
 *   has reset its model.
 *
 * The interface is in zoc_vbus_uapi.h.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitmap.h>
#include <linux/device.h>
#include <linux/dma-map-ops.h>
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/io.h>
#include <linux/ioport.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/msi.h>
#include <linux/pci.h>
#include <linux/poll.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/timer.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>
#include <asm/apic.h>

#include "zoc_vbus_uapi.h"

static unsigned long window_base;
module_param(window_base, ulong, 0444);
MODULE_PARM_DESC(window_base,
		 "physical address of the BAR window (reserved with memmap=SIZE$ADDR)");
static unsigned long window_size;
module_param(window_size, ulong, 0444);
MODULE_PARM_DESC(window_size, "size of the BAR window in bytes");

#define ZVB_SLOTS 32
#define ZVB_RING 256            /* config-write events queued per function */
#define ZVB_MAX_MAP (256 * 1024) /* largest single DMA mapping */

struct zvb_func;

struct zvb_irq {
	struct zvb_func *f;
	u32 vec;
	struct eventfd_ctx *ctx;
	wait_queue_entry_t wait;
	poll_table pt;
};

struct zvb_func {
	struct dma_map_ops dma_ops;     /* first: the device's dma_ops point here */
	struct mutex lock;              /* ioctls, mmap, life cycle */
	raw_spinlock_t cfg_lock;        /* image, masks, event ring */
	u8 cfg[ZOC_VBUS_CFG_SIZE];
	u8 wmask[ZOC_VBUS_CFG_SIZE];
	u8 w1c[ZOC_VBUS_CFG_SIZE];
	u64 bar_size[ZOC_VBUS_NUM_BARS];
	u64 bar_addr[ZOC_VBUS_NUM_BARS];  /* 0: not placed */
	u8 cfg_init[ZOC_VBUS_CFG_SIZE]; /* the image after CREATE: what FLR restores */
	u16 exp_cap;                    /* PCIe capability: FLR, or 0 */
	unsigned int devfn;
	struct pci_dev *pdev;
	bool started;
	bool removed;                   /* off the bus (REMOVED queued) */
	bool gone;                      /* user space went away: reads all ones */
	bool resetting;                 /* FLR until RESET_DONE: reads all ones */

	/* user mappings of the BARs and the pool */
	struct address_space mapping;   /* this file's own, so it is zapped alone */
	struct mutex vma_lock;          /* revoked vs the fault handler */
	bool revoked;

	/* config-write events */
	struct zoc_vbus_event ev[ZVB_RING];
	u32 ev_head, ev_tail, ev_lost;
	bool ev_reset;                  /* RESET to report after the ring (never lost) */
	wait_queue_head_t ev_wait;

	/* MSI-X */
	u32 nvec;
	u16 msix_cap;
	u16 msix_ctrl;                  /* last value written by the host */
	u8 tbl_bir, pba_bir;
	u32 tbl_off, pba_off;
	spinlock_t irq_lock;            /* tbl, pba, pending */
	void __iomem *tbl;
	void __iomem *pba;
	unsigned long *pending;
	struct zvb_irq *irqs;
	struct timer_list pend_timer;

	/* DMA pool */
	void *pool;
	unsigned long pool_pages;
	unsigned long *pool_map;
	phys_addr_t *pool_orig;         /* per pool page: the bounced page's phys, or 0 */
	spinlock_t pool_lock;
};

static struct device *zvb_root;
static struct pci_bus *zvb_bus;
static struct pci_sysdata zvb_sysdata;
static struct resource zvb_window = {
	.name = "zoc-vbus window",
	.flags = IORESOURCE_MEM,
};

static struct resource zvb_busn = {
	.name = "zoc-vbus bus",
	.start = 0,
	.end = 0,
	.flags = IORESOURCE_BUS,
};

/* The window, page by page: the PCI core's allocator would skip it (x86
 * keeps BARs out of E820 ranges), so the module places BARs itself.
 */
static DEFINE_MUTEX(zvb_win_lock);
static unsigned long *zvb_win_map;
static unsigned long zvb_win_pages;
static DEFINE_RAW_SPINLOCK(zvb_slots_lock);
static struct zvb_func *zvb_slots[ZVB_SLOTS];

/* ------------------------------------------------------------ config space */

static struct zvb_func *zvb_slot(struct pci_bus *bus, unsigned int devfn)
{
	if (bus != zvb_bus || PCI_FUNC(devfn) != 0)
		return NULL;
	return zvb_slots[PCI_SLOT(devfn)];
}

/* Both config accessors: checks the access, then finds the function and
 * returns with zvb_slots_lock (irqsave) and its cfg_lock held; or returns a
 * PCIBIOS_* error with neither held.
 */
static int zvb_cfg_get(struct pci_bus *bus, unsigned int devfn, int where, int size,
		       struct zvb_func **fp, unsigned long *flags)
{
	if (where < 0 || size < 1 || size > 4 || where + size > ZOC_VBUS_CFG_SIZE ||
	    (where & (size - 1)))
		return PCIBIOS_BAD_REGISTER_NUMBER;
	raw_spin_lock_irqsave(&zvb_slots_lock, *flags);
	*fp = zvb_slot(bus, devfn);
	if (!*fp) {
		raw_spin_unlock_irqrestore(&zvb_slots_lock, *flags);
		return PCIBIOS_DEVICE_NOT_FOUND;
	}
	raw_spin_lock(&(*fp)->cfg_lock);
	return PCIBIOS_SUCCESSFUL;
}

static int zvb_cfg_read(struct pci_bus *bus, unsigned int devfn, int where, int size, u32 *val)
{
	struct zvb_func *f;
	unsigned long flags;
	u32 v = 0;
	int i, rc;

	rc = zvb_cfg_get(bus, devfn, where, size, &f, &flags);
	if (rc) {
		*val = ~0U;
		return rc;
	}
	if (f->gone || f->resetting)
		v = ~0U;
	else
		for (i = 0; i < size; i++)
			v |= (u32)f->cfg[where + i] << (8 * i);
	raw_spin_unlock(&f->cfg_lock);
	raw_spin_unlock_irqrestore(&zvb_slots_lock, flags);
	*val = v;
	return PCIBIOS_SUCCESSFUL;
}

/* Called with cfg_lock held. */
static void zvb_event_push(struct zvb_func *f, u16 type, u16 off, u8 len, u32 value)
{
	struct zoc_vbus_event *e;

	if (f->ev_head - f->ev_tail >= ZVB_RING) {
		f->ev_lost++;
		return;
	}
	e = &f->ev[f->ev_head % ZVB_RING];
	memset(e, 0, sizeof(*e));
	e->type = type;
	e->offset = off;
	e->len = len;
	e->value = value;
	f->ev_head++;
}

/* cfg_lock held: does this write set Device Control's Initiate FLR bit? */
static bool zvb_is_flr(struct zvb_func *f, int where, int size, u32 val)
{
	unsigned int b;

	if (!f->exp_cap)
		return false;
	b = f->exp_cap + PCI_EXP_DEVCTL + 1;
	if (where > b || where + size <= b)
		return false;
	return (val >> (8 * (b - where))) & (PCI_EXP_DEVCTL_BCR_FLR >> 8);
}

static int zvb_cfg_write(struct pci_bus *bus, unsigned int devfn, int where, int size, u32 val)
{
	struct zvb_func *f;
	unsigned long flags;
	bool msix_changed = false;
	int i, rc;

	rc = zvb_cfg_get(bus, devfn, where, size, &f, &flags);
	if (rc)
		return rc;
	if (f->gone || f->resetting) {
		/* a device in reset drops writes */
		raw_spin_unlock(&f->cfg_lock);
		raw_spin_unlock_irqrestore(&zvb_slots_lock, flags);
		return PCIBIOS_SUCCESSFUL;
	}
	if (zvb_is_flr(f, where, size, val)) {
		/* Function Level Reset: the image as created (BARs where the
		 * module placed them, command 0, MSI-X off); interrupts stop at
		 * once; reads say "not ready" until user space reset its model.
		 */
		memcpy(f->cfg, f->cfg_init, sizeof(f->cfg));
		f->resetting = true;
		WRITE_ONCE(f->msix_ctrl, 0);
		/* not in the ring, which may be full: read() reports it after
		 * the writes queued before it
		 */
		f->ev_reset = true;
		raw_spin_unlock(&f->cfg_lock);
		wake_up_interruptible(&f->ev_wait);
		raw_spin_unlock_irqrestore(&zvb_slots_lock, flags);
		return PCIBIOS_SUCCESSFUL;
	}
	for (i = 0; i < size; i++) {
		unsigned int o = where + i;
		u8 b = val >> (8 * i);

		f->cfg[o] = (f->cfg[o] & ~f->wmask[o]) | (b & f->wmask[o]);
		f->cfg[o] &= ~(b & f->w1c[o]);
	}
	if (f->nvec && where <= f->msix_cap + PCI_MSIX_FLAGS + 1 &&
	    where + size > f->msix_cap + PCI_MSIX_FLAGS) {
		u16 c = f->cfg[f->msix_cap + PCI_MSIX_FLAGS] |
			f->cfg[f->msix_cap + PCI_MSIX_FLAGS + 1] << 8;

		WRITE_ONCE(f->msix_ctrl, c);
		msix_changed = true;
	}
	zvb_event_push(f, ZOC_VBUS_EV_CFG_WRITE, where, size, val);
	raw_spin_unlock(&f->cfg_lock);
	if (msix_changed)
		mod_timer(&f->pend_timer, jiffies);
	/* under the slots lock: f cannot be freed meanwhile */
	wake_up_interruptible(&f->ev_wait);
	raw_spin_unlock_irqrestore(&zvb_slots_lock, flags);
	return PCIBIOS_SUCCESSFUL;
}

static struct pci_ops zvb_pci_ops = {
	.read = zvb_cfg_read,
	.write = zvb_cfg_write,
};

/* ------------------------------------------------------------------ MSI-X */

/* The CPU an x86 MSI address names (physical or flat logical mode). */
static int zvb_msi_cpu(u32 addr)
{
	u32 dest = (addr >> 12) & 0xff;
	int cpu;

	if (addr & BIT(2)) {
		/* logical: flat mode only (one bit per CPU, up to 8) */
		if (!apic->dest_mode_logical || strcmp(apic->name, "flat"))
			return -1;
		cpu = dest ? __ffs(dest) : -1;
		return cpu >= 0 && cpu_online(cpu) ? cpu : -1;
	}
	for_each_online_cpu(cpu)
		if (per_cpu(x86_cpu_to_apicid, cpu) == dest)
			return cpu;
	return -1;
}

/* irq_lock held, vector unmasked: send the message in the table. */
static void zvb_msix_deliver(struct zvb_func *f, u32 v)
{
	void __iomem *e = f->tbl + v * PCI_MSIX_ENTRY_SIZE;
	u32 lo = readl(e + PCI_MSIX_ENTRY_LOWER_ADDR);
	u32 hi = readl(e + PCI_MSIX_ENTRY_UPPER_ADDR);
	u32 data = readl(e + PCI_MSIX_ENTRY_DATA);
	u8 vector = data & 0xff;
	int cpu;

	if (hi || (lo >> 20) != 0xfee || vector < FIRST_EXTERNAL_VECTOR) {
		pr_warn_ratelimited("%02x: vector %u: not an MSI message (%08x %08x %08x)\n",
				    f->devfn, v, hi, lo, data);
		return;
	}
	cpu = zvb_msi_cpu(lo);
	if (cpu < 0) {
		pr_warn_ratelimited("%02x: vector %u: no CPU for MSI address %08x\n",
				    f->devfn, v, lo);
		return;
	}
	apic->send_IPI(cpu, vector);
}

static bool zvb_msix_masked(struct zvb_func *f, u32 v)
{
	u16 c = READ_ONCE(f->msix_ctrl);

	if (c & PCI_MSIX_FLAGS_MASKALL)
		return true;
	return readl(f->tbl + v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL) &
	       PCI_MSIX_ENTRY_CTRL_MASKBIT;
}

static void zvb_pba_set(struct zvb_func *f, u32 v, bool on)
{
	void __iomem *w = f->pba + (v / 32) * 4;
	u32 x = readl(w);

	x = on ? x | BIT(v % 32) : x & ~BIT(v % 32);
	writel(x, w);
}

static void zvb_fire(struct zvb_func *f, u32 v)
{
	unsigned long flags;

	spin_lock_irqsave(&f->irq_lock, flags);
	if (!f->tbl || !(READ_ONCE(f->msix_ctrl) & PCI_MSIX_FLAGS_ENABLE)) {
		spin_unlock_irqrestore(&f->irq_lock, flags);
		return;
	}
	if (zvb_msix_masked(f, v)) {
		if (!test_and_set_bit(v, f->pending))
			zvb_pba_set(f, v, true);
		mod_timer(&f->pend_timer, jiffies + 1);
	} else {
		zvb_msix_deliver(f, v);
	}
	spin_unlock_irqrestore(&f->irq_lock, flags);
}

/* Nothing traps the host's stores to the table: pending vectors are polled. */
static void zvb_pend_timer(struct timer_list *t)
{
	struct zvb_func *f = from_timer(f, t, pend_timer);
	unsigned long flags;
	bool left = false;
	u32 v;

	spin_lock_irqsave(&f->irq_lock, flags);
	if (f->tbl && (READ_ONCE(f->msix_ctrl) & PCI_MSIX_FLAGS_ENABLE)) {
		for_each_set_bit(v, f->pending, f->nvec) {
			if (zvb_msix_masked(f, v)) {
				left = true;
				continue;
			}
			clear_bit(v, f->pending);
			zvb_pba_set(f, v, false);
			zvb_msix_deliver(f, v);
		}
	}
	spin_unlock_irqrestore(&f->irq_lock, flags);
	if (left)
		mod_timer(&f->pend_timer, jiffies + 1);
}

static int zvb_irq_wakeup(wait_queue_entry_t *wait, unsigned int mode, int sync, void *key)
{
	struct zvb_irq *irq = container_of(wait, struct zvb_irq, wait);
	u64 cnt;

	if (key_to_poll(key) & EPOLLIN) {
		eventfd_ctx_do_read(irq->ctx, &cnt);
		zvb_fire(irq->f, irq->vec);
	}
	return 0;
}

static void zvb_irq_queue(struct file *file, wait_queue_head_t *wqh, poll_table *pt)
{
	struct zvb_irq *irq = container_of(pt, struct zvb_irq, pt);

	add_wait_queue(wqh, &irq->wait);
}

static void zvb_irq_clear(struct zvb_irq *irq)
{
	u64 cnt;

	if (!irq->ctx)
		return;
	eventfd_ctx_remove_wait_queue(irq->ctx, &irq->wait, &cnt);
	eventfd_ctx_put(irq->ctx);
	irq->ctx = NULL;
}

static int zvb_irq_set(struct zvb_func *f, u32 vec, int fd)
{
	struct zvb_irq *irq;
	struct eventfd_ctx *ctx;
	struct fd fdesc;
	__poll_t events;

	if (vec >= f->nvec)
		return -EINVAL;
	irq = &f->irqs[vec];
	zvb_irq_clear(irq);
	if (fd < 0)
		return fd == -1 ? 0 : -EINVAL;
	fdesc = fdget(fd);
	if (!fdesc.file)
		return -EBADF;
	ctx = eventfd_ctx_fileget(fdesc.file);
	if (IS_ERR(ctx)) {
		fdput(fdesc);
		return -EINVAL;
	}
	irq->f = f;
	irq->vec = vec;
	irq->ctx = ctx;
	init_waitqueue_func_entry(&irq->wait, zvb_irq_wakeup);
	init_poll_funcptr(&irq->pt, zvb_irq_queue);
	events = vfs_poll(fdesc.file, &irq->pt);
	fdput(fdesc);
	/* Signalled before it was registered: fire once (the next wakeup
	 * consumes the count).
	 */
	if (events & EPOLLIN)
		zvb_fire(f, vec);
	return 0;
}

/* ---------------------------------------------------------------- DMA pool */

static struct zvb_func *zvb_dev_func(struct device *dev)
{
	return container_of(get_dma_ops(dev), struct zvb_func, dma_ops);
}

static long zvb_pool_get(struct zvb_func *f, unsigned long n, unsigned long align_mask)
{
	unsigned long flags, pg;

	if (!n || n > f->pool_pages)
		return -ENOMEM;
	spin_lock_irqsave(&f->pool_lock, flags);
	pg = bitmap_find_next_zero_area(f->pool_map, f->pool_pages, 0, n, align_mask);
	if (pg >= f->pool_pages) {
		spin_unlock_irqrestore(&f->pool_lock, flags);
		return -ENOMEM;
	}
	bitmap_set(f->pool_map, pg, n);
	spin_unlock_irqrestore(&f->pool_lock, flags);
	return pg;
}

static void zvb_pool_put(struct zvb_func *f, unsigned long pg, unsigned long n)
{
	unsigned long flags;

	spin_lock_irqsave(&f->pool_lock, flags);
	bitmap_clear(f->pool_map, pg, n);
	spin_unlock_irqrestore(&f->pool_lock, flags);
}

/* The pool page and in-page offset of [dma, dma+size), or false if outside. */
static bool zvb_dma_range(struct zvb_func *f, dma_addr_t dma, size_t size, unsigned long *pg)
{
	u64 end = (u64)f->pool_pages << PAGE_SHIFT;
	u64 off;

	if (dma < ZOC_VBUS_DMA_BASE)
		return false;
	off = dma - ZOC_VBUS_DMA_BASE;
	if (off >= end || size > end - off)
		return false;
	*pg = off >> PAGE_SHIFT;
	return true;
}

static void *zvb_dma_alloc(struct device *dev, size_t size, dma_addr_t *dma, gfp_t gfp,
			   unsigned long attrs)
{
	struct zvb_func *f = zvb_dev_func(dev);
	unsigned long n = PAGE_ALIGN(size) >> PAGE_SHIFT;
	unsigned int order = get_order(size);
	long pg;
	void *va;

	pg = zvb_pool_get(f, n, order > 9 ? 511 : (1UL << order) - 1);
	if (pg < 0)
		return NULL;
	memset(f->pool_orig + pg, 0, n * sizeof(*f->pool_orig));
	va = f->pool + (pg << PAGE_SHIFT);
	memset(va, 0, n << PAGE_SHIFT);
	*dma = ZOC_VBUS_DMA_BASE + ((u64)pg << PAGE_SHIFT);
	return va;
}

static void zvb_dma_free(struct device *dev, size_t size, void *va, dma_addr_t dma,
			 unsigned long attrs)
{
	struct zvb_func *f = zvb_dev_func(dev);
	unsigned long pg;

	size = PAGE_ALIGN(size);
	if (!zvb_dma_range(f, dma, size, &pg) || va != f->pool + (pg << PAGE_SHIFT)) {
		dev_warn_ratelimited(dev, "zoc-vbus: free of unknown coherent memory\n");
		return;
	}
	zvb_pool_put(f, pg, size >> PAGE_SHIFT);
}

static void zvb_bounce(struct zvb_func *f, dma_addr_t dma, size_t size, bool to_device)
{
	unsigned long pg;
	phys_addr_t orig;
	void *pool_va;

	if (!zvb_dma_range(f, dma, size, &pg))
		return;
	orig = f->pool_orig[pg];
	if (!orig)
		return;
	orig += (dma - ZOC_VBUS_DMA_BASE) & ~PAGE_MASK;
	pool_va = f->pool + (dma - ZOC_VBUS_DMA_BASE);
	if (to_device)
		memcpy(pool_va, phys_to_virt(orig), size);
	else
		memcpy(phys_to_virt(orig), pool_va, size);
}

static dma_addr_t zvb_map_page(struct device *dev, struct page *page, unsigned long offset,
			       size_t size, enum dma_data_direction dir, unsigned long attrs)
{
	struct zvb_func *f = zvb_dev_func(dev);
	phys_addr_t phys = page_to_phys(page) + offset;
	unsigned long in_page = phys & ~PAGE_MASK;
	unsigned long n = PAGE_ALIGN(in_page + size) >> PAGE_SHIFT;
	dma_addr_t dma;
	unsigned long i;
	long pg;

	if (!size || size > ZVB_MAX_MAP)
		return DMA_MAPPING_ERROR;
	pg = zvb_pool_get(f, n, 0);
	if (pg < 0)
		return DMA_MAPPING_ERROR;
	for (i = 0; i < n; i++)
		f->pool_orig[pg + i] = (phys & PAGE_MASK) + (i << PAGE_SHIFT);
	dma = ZOC_VBUS_DMA_BASE + ((u64)pg << PAGE_SHIFT) + in_page;
	if (!(attrs & DMA_ATTR_SKIP_CPU_SYNC) &&
	    (dir == DMA_TO_DEVICE || dir == DMA_BIDIRECTIONAL))
		zvb_bounce(f, dma, size, true);
	return dma;
}

static void zvb_unmap_page(struct device *dev, dma_addr_t dma, size_t size,
			   enum dma_data_direction dir, unsigned long attrs)
{
	struct zvb_func *f = zvb_dev_func(dev);
	unsigned long pg, n;

	if (!zvb_dma_range(f, dma, size, &pg) || !f->pool_orig[pg]) {
		dev_warn_ratelimited(dev, "zoc-vbus: unmap of unknown address %pad\n", &dma);
		return;
	}
	if (!(attrs & DMA_ATTR_SKIP_CPU_SYNC) &&
	    (dir == DMA_FROM_DEVICE || dir == DMA_BIDIRECTIONAL))
		zvb_bounce(f, dma, size, false);
	n = PAGE_ALIGN((dma & ~PAGE_MASK) + size) >> PAGE_SHIFT;
	memset(f->pool_orig + pg, 0, n * sizeof(*f->pool_orig));
	zvb_pool_put(f, pg, n);
}

static void zvb_unmap_sg(struct device *dev, struct scatterlist *sgl, int nents,
			 enum dma_data_direction dir, unsigned long attrs)
{
	struct scatterlist *sg;
	int i;

	for_each_sg(sgl, sg, nents, i)
		zvb_unmap_page(dev, sg->dma_address, sg_dma_len(sg), dir, attrs);
}

static int zvb_map_sg(struct device *dev, struct scatterlist *sgl, int nents,
		      enum dma_data_direction dir, unsigned long attrs)
{
	struct scatterlist *sg;
	int i;

	for_each_sg(sgl, sg, nents, i) {
		sg->dma_address = zvb_map_page(dev, sg_page(sg), sg->offset, sg->length, dir,
					       attrs);
		if (sg->dma_address == DMA_MAPPING_ERROR) {
			zvb_unmap_sg(dev, sgl, i, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
			return -ENOMEM;
		}
		sg_dma_len(sg) = sg->length;
	}
	return nents;
}

static void zvb_sync_for_cpu(struct device *dev, dma_addr_t dma, size_t size,
			     enum dma_data_direction dir)
{
	if (dir == DMA_FROM_DEVICE || dir == DMA_BIDIRECTIONAL)
		zvb_bounce(zvb_dev_func(dev), dma, size, false);
}

static void zvb_sync_for_device(struct device *dev, dma_addr_t dma, size_t size,
				enum dma_data_direction dir)
{
	if (dir == DMA_TO_DEVICE || dir == DMA_BIDIRECTIONAL)
		zvb_bounce(zvb_dev_func(dev), dma, size, true);
}

static void zvb_sync_sg_for_cpu(struct device *dev, struct scatterlist *sgl, int nents,
				enum dma_data_direction dir)
{
	struct scatterlist *sg;
	int i;

	for_each_sg(sgl, sg, nents, i)
		zvb_sync_for_cpu(dev, sg->dma_address, sg_dma_len(sg), dir);
}

static void zvb_sync_sg_for_device(struct device *dev, struct scatterlist *sgl, int nents,
				   enum dma_data_direction dir)
{
	struct scatterlist *sg;
	int i;

	for_each_sg(sgl, sg, nents, i)
		zvb_sync_for_device(dev, sg->dma_address, sg_dma_len(sg), dir);
}

static int zvb_dma_supported(struct device *dev, u64 mask)
{
	struct zvb_func *f = zvb_dev_func(dev);

	return mask >= ZOC_VBUS_DMA_BASE + ((u64)f->pool_pages << PAGE_SHIFT) - 1;
}

static size_t zvb_max_mapping_size(struct device *dev)
{
	return ZVB_MAX_MAP;
}

static const struct dma_map_ops zvb_dma_ops_template = {
	.alloc = zvb_dma_alloc,
	.free = zvb_dma_free,
	.map_page = zvb_map_page,
	.unmap_page = zvb_unmap_page,
	.map_sg = zvb_map_sg,
	.unmap_sg = zvb_unmap_sg,
	.sync_single_for_cpu = zvb_sync_for_cpu,
	.sync_single_for_device = zvb_sync_for_device,
	.sync_sg_for_cpu = zvb_sync_sg_for_cpu,
	.sync_sg_for_device = zvb_sync_sg_for_device,
	.dma_supported = zvb_dma_supported,
	.max_mapping_size = zvb_max_mapping_size,
};

/* --------------------------------------------------------------- functions */

static u32 zvb_img32(const u8 *b, unsigned int off)
{
	return b[off] | b[off + 1] << 8 | b[off + 2] << 16 | (u32)b[off + 3] << 24;
}

static void zvb_img_put32(u8 *b, unsigned int off, u32 v)
{
	b[off] = v;
	b[off + 1] = v >> 8;
	b[off + 2] = v >> 16;
	b[off + 3] = v >> 24;
}

/* Checks the image and the sizes; fixes the masks the module relies on. */
static int zvb_check_image(struct zvb_func *f, const struct zoc_vbus_create *c)
{
	unsigned int ptr, ttl = 48, i;
	u16 vid = f->cfg[0] | f->cfg[1] << 8;
	bool upper = false;

	f->msix_cap = 0;
	f->exp_cap = 0;
	f->nvec = 0;
	memset(f->bar_size, 0, sizeof(f->bar_size));
	if (vid == 0 || vid == 0xffff)
		return -EINVAL;
	f->cfg[PCI_HEADER_TYPE] = PCI_HEADER_TYPE_NORMAL;
	f->wmask[PCI_HEADER_TYPE] = 0;
	f->w1c[PCI_HEADER_TYPE] = 0;

	/* BARs: memory only; the masks are the sizes, whatever was given */
	for (i = 0; i < ZOC_VBUS_NUM_BARS; i++) {
		unsigned int o = PCI_BASE_ADDRESS_0 + 4 * i;
		u32 v = zvb_img32(f->cfg, o);
		u64 sz = c->bar_size[i];

		memset(f->w1c + o, 0, 4);
		if (upper) {
			if (sz)
				return -EINVAL;
			zvb_img_put32(f->cfg, o, 0);
			zvb_img_put32(f->wmask, o, 0xffffffff);
			upper = false;
			continue;
		}
		if (!sz) {
			if (v)
				return -EINVAL;
			zvb_img_put32(f->wmask, o, 0);
			continue;
		}
		if (!is_power_of_2(sz) || sz < PAGE_SIZE || sz > window_size || sz > SZ_1G)
			return -EINVAL;
		if (v & PCI_BASE_ADDRESS_SPACE_IO)
			return -EINVAL;
		switch (v & PCI_BASE_ADDRESS_MEM_TYPE_MASK) {
		case PCI_BASE_ADDRESS_MEM_TYPE_32:
			break;
		case PCI_BASE_ADDRESS_MEM_TYPE_64:
			if (i == ZOC_VBUS_NUM_BARS - 1)
				return -EINVAL;
			upper = true;
			break;
		default:
			return -EINVAL;
		}
		f->bar_size[i] = sz;
		zvb_img_put32(f->cfg, o, v & 0xf);
		zvb_img_put32(f->wmask, o, (u32)~(sz - 1) & ~0xfu);
	}
	/* no expansion ROM, no INTx (nothing could deliver it) */
	memset(f->cfg + PCI_ROM_ADDRESS, 0, 4);
	memset(f->wmask + PCI_ROM_ADDRESS, 0, 4);
	memset(f->w1c + PCI_ROM_ADDRESS, 0, 4);
	f->cfg[PCI_INTERRUPT_PIN] = 0;
	f->wmask[PCI_INTERRUPT_PIN] = 0;

	/* capability list: well formed, no MSI (only MSI-X is delivered) */
	ptr = (f->cfg[PCI_STATUS] & PCI_STATUS_CAP_LIST) ? f->cfg[PCI_CAPABILITY_LIST] : 0;
	while (ptr) {
		if (ptr < 0x40 || ptr > 0xfc || (ptr & 3) || !ttl--)
			return -EINVAL;
		switch (f->cfg[ptr]) {
		case PCI_CAP_ID_MSI:
			return -EINVAL;
		case PCI_CAP_ID_MSIX:
			if (f->msix_cap || ptr > 0x100 - PCI_CAP_MSIX_SIZEOF)
				return -EINVAL;
			f->msix_cap = ptr;
			break;
		case PCI_CAP_ID_EXP:
			if (f->exp_cap || ptr > 0x100 - PCI_CAP_EXP_ENDPOINT_SIZEOF_V1)
				return -EINVAL;
			f->exp_cap = ptr;
			break;
		}
		ptr = f->cfg[ptr + PCI_CAP_LIST_NEXT];
	}
	if (!!f->msix_cap != !!c->msix_vectors)
		return -EINVAL;
	if (f->msix_cap) {
		unsigned int m = f->msix_cap;
		u16 ctrl = f->cfg[m + PCI_MSIX_FLAGS] | f->cfg[m + PCI_MSIX_FLAGS + 1] << 8;
		u32 tbl = zvb_img32(f->cfg, m + PCI_MSIX_TABLE);
		u32 pba = zvb_img32(f->cfg, m + PCI_MSIX_PBA);
		u64 tend, pend;

		f->nvec = c->msix_vectors;
		if (f->nvec > ZOC_VBUS_MSIX_MAX || (ctrl & PCI_MSIX_FLAGS_QSIZE) + 1 != f->nvec)
			return -EINVAL;
		f->tbl_bir = tbl & PCI_MSIX_TABLE_BIR;
		f->tbl_off = tbl & PCI_MSIX_TABLE_OFFSET;
		f->pba_bir = pba & PCI_MSIX_PBA_BIR;
		f->pba_off = pba & PCI_MSIX_PBA_OFFSET;
		if (f->tbl_bir >= ZOC_VBUS_NUM_BARS || f->pba_bir >= ZOC_VBUS_NUM_BARS)
			return -EINVAL;
		tend = (u64)f->tbl_off + (u64)f->nvec * PCI_MSIX_ENTRY_SIZE;
		pend = (u64)f->pba_off + DIV_ROUND_UP(f->nvec, 64) * 8;
		if (tend > f->bar_size[f->tbl_bir] || pend > f->bar_size[f->pba_bir])
			return -EINVAL;
		if (f->tbl_bir == f->pba_bir && f->tbl_off < pend && f->pba_off < tend)
			return -EINVAL;
		/* only enable and function mask are writable; both start clear */
		memset(f->wmask + m, 0, PCI_CAP_MSIX_SIZEOF);
		memset(f->w1c + m, 0, PCI_CAP_MSIX_SIZEOF);
		f->wmask[m + PCI_MSIX_FLAGS + 1] = 0xc0;
		f->cfg[m + PCI_MSIX_FLAGS + 1] &= ~0xc0;
	}
	if (f->exp_cap) {
		unsigned int e = f->exp_cap;

		/* the module implements FLR: advertised, and Initiate FLR is
		 * an action that reads back 0, never stored in the image
		 */
		memset(f->wmask + e + PCI_EXP_DEVCAP, 0, 4);
		memset(f->w1c + e + PCI_EXP_DEVCAP, 0, 4);
		f->cfg[e + PCI_EXP_DEVCAP + 3] |= PCI_EXP_DEVCAP_FLR >> 24;
		f->wmask[e + PCI_EXP_DEVCTL + 1] &= ~(PCI_EXP_DEVCTL_BCR_FLR >> 8);
		f->cfg[e + PCI_EXP_DEVCTL + 1] &= ~(PCI_EXP_DEVCTL_BCR_FLR >> 8);
	}
	/* capability IDs and next pointers are read-only */
	ptr = f->cfg[PCI_CAPABILITY_LIST];
	if (f->cfg[PCI_STATUS] & PCI_STATUS_CAP_LIST) {
		f->wmask[PCI_CAPABILITY_LIST] = 0;
		while (ptr) {
			f->wmask[ptr] = 0;
			f->wmask[ptr + 1] = 0;
			ptr = f->cfg[ptr + 1];
		}
	}
	return 0;
}

static void zvb_bars_release(struct zvb_func *f)
{
	int i;

	mutex_lock(&zvb_win_lock);
	for (i = 0; i < ZOC_VBUS_NUM_BARS; i++) {
		if (!f->bar_addr[i])
			continue;
		bitmap_clear(zvb_win_map, (f->bar_addr[i] - window_base) >> PAGE_SHIFT,
			     f->bar_size[i] >> PAGE_SHIFT);
		f->bar_addr[i] = 0;
	}
	mutex_unlock(&zvb_win_lock);
}

/* Before the scan: a naturally aligned place in the window for each BAR,
 * written into the image as if firmware had assigned it.
 */
static int zvb_bars_place(struct zvb_func *f)
{
	unsigned long n, pg;
	int i, ret = 0;

	mutex_lock(&zvb_win_lock);
	for (i = 0; i < ZOC_VBUS_NUM_BARS; i++) {
		unsigned int o = PCI_BASE_ADDRESS_0 + 4 * i;
		u64 a;

		if (!f->bar_size[i])
			continue;
		if (window_base & (f->bar_size[i] - 1)) {
			ret = -EINVAL;  /* window not aligned enough for this BAR */
			break;
		}
		n = f->bar_size[i] >> PAGE_SHIFT;
		pg = bitmap_find_next_zero_area(zvb_win_map, zvb_win_pages, 0, n, n - 1);
		if (pg >= zvb_win_pages) {
			ret = -ENOSPC;
			break;
		}
		bitmap_set(zvb_win_map, pg, n);
		a = window_base + ((u64)pg << PAGE_SHIFT);
		f->bar_addr[i] = a;
		zvb_img_put32(f->cfg, o, (u32)a | (f->cfg[o] & 0xf));
		if ((f->cfg[o] & PCI_BASE_ADDRESS_MEM_TYPE_MASK) == PCI_BASE_ADDRESS_MEM_TYPE_64)
			zvb_img_put32(f->cfg, o + 4, a >> 32);
	}
	mutex_unlock(&zvb_win_lock);
	if (ret)
		zvb_bars_release(f);
	return ret;
}

static int zvb_bars_assign(struct zvb_func *f)
{
	struct pci_dev *pdev = f->pdev;
	void __iomem *p;
	int i, ret;

	for (i = 0; i < ZOC_VBUS_NUM_BARS; i++) {
		if (!f->bar_size[i])
			continue;
		if (pci_resource_len(pdev, i) != f->bar_size[i] ||
		    pci_resource_start(pdev, i) != f->bar_addr[i])
			return -EINVAL;
		ret = pci_claim_resource(pdev, i);
		if (ret) {
			pci_warn(pdev, "zoc-vbus: cannot claim BAR %d (%d)\n", i, ret);
			return ret;
		}
		p = ioremap(pci_resource_start(pdev, i), f->bar_size[i]);
		if (!p) {
			pci_warn(pdev, "zoc-vbus: cannot map BAR %d %pR\n", i, &pdev->resource[i]);
			return -ENOMEM;
		}
		memset_io(p, 0, f->bar_size[i]);
		iounmap(p);
	}
	if (f->nvec) {
		u32 v;

		f->tbl = ioremap(pci_resource_start(pdev, f->tbl_bir) + f->tbl_off,
				 f->nvec * PCI_MSIX_ENTRY_SIZE);
		f->pba = ioremap(pci_resource_start(pdev, f->pba_bir) + f->pba_off,
				 DIV_ROUND_UP(f->nvec, 64) * 8);
		if (!f->tbl || !f->pba)
			return -ENOMEM;
		for (v = 0; v < f->nvec; v++)
			writel(PCI_MSIX_ENTRY_CTRL_MASKBIT,
			       f->tbl + v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL);
	}
	return 0;
}

static void zvb_msix_unmap(struct zvb_func *f)
{
	void __iomem *tbl, *pba;
	unsigned long flags;

	spin_lock_irqsave(&f->irq_lock, flags);
	WRITE_ONCE(f->msix_ctrl, 0);
	tbl = f->tbl;
	pba = f->pba;
	f->tbl = NULL;
	f->pba = NULL;
	spin_unlock_irqrestore(&f->irq_lock, flags);
	del_timer_sync(&f->pend_timer);
	if (tbl)
		iounmap(tbl);
	if (pba)
		iounmap(pba);
}

static void zvb_slot_clear(struct zvb_func *f)
{
	unsigned long flags;

	raw_spin_lock_irqsave(&zvb_slots_lock, flags);
	if (zvb_slots[PCI_SLOT(f->devfn)] == f)
		zvb_slots[PCI_SLOT(f->devfn)] = NULL;
	raw_spin_unlock_irqrestore(&zvb_slots_lock, flags);
}

/* Every user mapping of the BARs and the pool is zapped; the fault handler
 * refuses to fill them again (SIGBUS). Before the window is freed.
 */
static void zvb_revoke(struct zvb_func *f)
{
	mutex_lock(&f->vma_lock);
	f->revoked = true;
	mutex_unlock(&f->vma_lock);
	unmap_mapping_range(&f->mapping, 0, 0, 1);
}

/* f->lock held: the function leaves the bus. The driver unbinds (it may
 * wait for the device) first. Mappings stay.
 */
static void zvb_func_unplug(struct zvb_func *f)
{
	unsigned long flags;

	if (f->pdev) {
		pci_stop_and_remove_bus_device_locked(f->pdev);
		f->pdev = NULL;
	}
	zvb_slot_clear(f);
	zvb_msix_unmap(f);
	if (!f->removed) {
		f->removed = true;
		raw_spin_lock_irqsave(&f->cfg_lock, flags);
		zvb_event_push(f, ZOC_VBUS_EV_REMOVED, 0, 0, 0);
		raw_spin_unlock_irqrestore(&f->cfg_lock, flags);
		wake_up_interruptible(&f->ev_wait);
	}
}

/* f->lock held: off the bus, mappings revoked, window space freed. */
static void zvb_func_remove(struct zvb_func *f)
{
	zvb_func_unplug(f);
	zvb_revoke(f);
	zvb_bars_release(f);
}

/* f->lock held: user space reset its model after an FLR. The MSI-X table
 * comes back masked with nothing pending; config space answers again.
 */
static void zvb_reset_finish(struct zvb_func *f)
{
	unsigned long flags;
	u32 v;

	spin_lock_irqsave(&f->irq_lock, flags);
	if (f->tbl && f->pba) {
		for (v = 0; v < f->nvec; v++)
			writel(PCI_MSIX_ENTRY_CTRL_MASKBIT,
			       f->tbl + v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL);
		for (v = 0; v < DIV_ROUND_UP(f->nvec, 32); v++)
			writel(0, f->pba + v * 4);
		bitmap_zero(f->pending, f->nvec);
	}
	spin_unlock_irqrestore(&f->irq_lock, flags);
	raw_spin_lock_irqsave(&f->cfg_lock, flags);
	f->resetting = false;
	raw_spin_unlock_irqrestore(&f->cfg_lock, flags);
}

static int zvb_create(struct zvb_func *f, struct zoc_vbus_create __user *uc)
{
	struct zoc_vbus_create c;
	unsigned long flags;
	struct pci_dev *pdev;
	int slot, ret;

	if (copy_from_user(&c, uc, sizeof(c)))
		return -EFAULT;
	if (c.flags || c.reserved)
		return -EINVAL;
	if (f->pool || f->removed)
		return -EBUSY;
	if (c.dma_size < ZOC_VBUS_DMA_MIN || c.dma_size > ZOC_VBUS_DMA_MAX ||
	    !PAGE_ALIGNED(c.dma_size))
		return -EINVAL;
	if (copy_from_user(f->cfg, u64_to_user_ptr(c.cfg), ZOC_VBUS_CFG_SIZE) ||
	    copy_from_user(f->wmask, u64_to_user_ptr(c.wmask), ZOC_VBUS_CFG_SIZE) ||
	    copy_from_user(f->w1c, u64_to_user_ptr(c.w1cmask), ZOC_VBUS_CFG_SIZE))
		return -EFAULT;
	ret = zvb_check_image(f, &c);
	if (ret)
		return ret;

	f->pool_pages = c.dma_size >> PAGE_SHIFT;
	f->pool = vmalloc_user(c.dma_size);
	f->pool_map = bitmap_zalloc(f->pool_pages, GFP_KERNEL);
	f->pool_orig = kvcalloc(f->pool_pages, sizeof(*f->pool_orig), GFP_KERNEL);
	if (f->nvec) {
		f->pending = bitmap_zalloc(f->nvec, GFP_KERNEL);
		f->irqs = kcalloc(f->nvec, sizeof(*f->irqs), GFP_KERNEL);
	}
	if (!f->pool || !f->pool_map || !f->pool_orig ||
	    (f->nvec && (!f->pending || !f->irqs)))
		return -ENOMEM;       /* freed at release */

	ret = zvb_bars_place(f);
	if (ret)
		return ret;
	memcpy(f->cfg_init, f->cfg, sizeof(f->cfg_init));
	raw_spin_lock_irqsave(&zvb_slots_lock, flags);
	for (slot = 0; slot < ZVB_SLOTS; slot++)
		if (!zvb_slots[slot])
			break;
	if (slot < ZVB_SLOTS) {
		f->devfn = PCI_DEVFN(slot, 0);
		zvb_slots[slot] = f;
	}
	raw_spin_unlock_irqrestore(&zvb_slots_lock, flags);
	if (slot == ZVB_SLOTS) {
		zvb_bars_release(f);
		return -ENOSPC;
	}

	pci_lock_rescan_remove();
	pdev = pci_scan_single_device(zvb_bus, f->devfn);
	pci_unlock_rescan_remove();
	if (!pdev) {
		zvb_slot_clear(f);
		zvb_bars_release(f);
		return -EIO;
	}
	f->pdev = pdev;
	f->dma_ops = zvb_dma_ops_template;
	set_dma_ops(&pdev->dev, &f->dma_ops);
	ret = zvb_bars_assign(f);
	if (ret) {
		pci_warn(pdev, "zoc-vbus: cannot set up BARs in the window (%d)\n", ret);
		zvb_func_remove(f);
		return ret;
	}
	c.domain = pci_domain_nr(zvb_bus);
	c.bus = zvb_bus->number;
	c.devfn = f->devfn;
	if (copy_to_user(uc, &c, sizeof(c)))
		return -EFAULT;     /* the function stays; remove or close */
	return 0;
}

/* ---------------------------------------------------------------- char dev */

static int zvb_open(struct inode *inode, struct file *file)
{
	struct zvb_func *f;

	f = kvzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return -ENOMEM;
	mutex_init(&f->lock);
	mutex_init(&f->vma_lock);
	address_space_init_once(&f->mapping);
	raw_spin_lock_init(&f->cfg_lock);
	spin_lock_init(&f->irq_lock);
	spin_lock_init(&f->pool_lock);
	init_waitqueue_head(&f->ev_wait);
	timer_setup(&f->pend_timer, zvb_pend_timer, 0);
	file->private_data = f;
	/* the file's own mapping, for zvb_revoke(); its host is still the
	 * device node (the VFS reads file->f_mapping->host)
	 */
	f->mapping.host = inode;
	file->f_mapping = &f->mapping;
	return 0;
}

/* User space died or closed without REMOVE: the function behaves like a
 * surprise-removed device (config and BAR reads return all ones), so its
 * driver sees it gone instead of waiting for a device nobody serves.
 */
static void zvb_func_orphan(struct zvb_func *f)
{
	unsigned long flags;
	void __iomem *p;
	int i;

	if (!f->pdev || !f->started)
		return;
	raw_spin_lock_irqsave(&f->cfg_lock, flags);
	f->gone = true;
	raw_spin_unlock_irqrestore(&f->cfg_lock, flags);
	for (i = 0; i < ZOC_VBUS_NUM_BARS; i++) {
		if (!f->bar_addr[i])
			continue;
		p = ioremap(f->bar_addr[i], f->bar_size[i]);
		if (!p)
			continue;
		memset_io(p, 0xff, f->bar_size[i]);
		iounmap(p);
	}
	pci_info(f->pdev, "zoc-vbus: user space is gone: the function is removed\n");
}

static int zvb_release(struct inode *inode, struct file *file)
{
	struct zvb_func *f = file->private_data;
	u32 v;

	mutex_lock(&f->lock);
	zvb_func_orphan(f);
	zvb_func_remove(f);
	mutex_unlock(&f->lock);
	for (v = 0; f->irqs && v < f->nvec; v++)
		zvb_irq_clear(&f->irqs[v]);
	del_timer_sync(&f->pend_timer);
	kfree(f->irqs);
	bitmap_free(f->pending);
	kvfree(f->pool_orig);
	bitmap_free(f->pool_map);
	vfree(f->pool);
	kvfree(f);
	return 0;
}

static long zvb_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct zvb_func *f = file->private_data;
	void __user *uarg = (void __user *)arg;
	long ret = 0;

	mutex_lock(&f->lock);
	switch (cmd) {
	case ZOC_VBUS_CREATE:
		ret = zvb_create(f, uarg);
		break;
	case ZOC_VBUS_START:
		if (!f->pdev || f->started) {
			ret = -EINVAL;
			break;
		}
		f->started = true;
		pci_lock_rescan_remove();
		pci_bus_add_device(f->pdev);
		pci_unlock_rescan_remove();
		break;
	case ZOC_VBUS_REMOVE:
		if (f->revoked || (!f->pdev && !f->removed))
			ret = -ENODEV;
		else
			zvb_func_remove(f);
		break;
	case ZOC_VBUS_UNPLUG:
		if (!f->pdev)
			ret = -ENODEV;
		else
			zvb_func_unplug(f);
		break;
	case ZOC_VBUS_RESET_DONE:
		if (!f->pdev)
			ret = -ENODEV;
		else if (!READ_ONCE(f->resetting))
			ret = -EINVAL;
		else
			zvb_reset_finish(f);
		break;
	case ZOC_VBUS_SET_IRQ: {
		struct zoc_vbus_irq irq;

		if (copy_from_user(&irq, uarg, sizeof(irq)))
			ret = -EFAULT;
		else if (!f->pdev)
			ret = -ENODEV;
		else
			ret = zvb_irq_set(f, irq.vector, irq.fd);
		break;
	}
	case ZOC_VBUS_CFG_STORE: {
		struct zoc_vbus_cfg_store s;
		unsigned long flags;
		unsigned int i;

		if (copy_from_user(&s, uarg, sizeof(s))) {
			ret = -EFAULT;
			break;
		}
		if (!f->pdev || s.reserved || s.len < 1 || s.len > 4 ||
		    s.offset >= ZOC_VBUS_CFG_SIZE || (s.offset & 3) + s.len > 4 ||
		    s.offset < PCI_COMMAND + 2 || /* IDs and command are the host's */
		    (s.offset >= PCI_BASE_ADDRESS_0 && s.offset < PCI_INTERRUPT_PIN + 1) ||
		    (f->msix_cap && s.offset < f->msix_cap + PCI_CAP_MSIX_SIZEOF &&
		     s.offset + s.len > f->msix_cap)) {
			ret = -EINVAL;
			break;
		}
		raw_spin_lock_irqsave(&f->cfg_lock, flags);
		for (i = 0; i < s.len; i++)
			f->cfg[s.offset + i] = s.value >> (8 * i);
		raw_spin_unlock_irqrestore(&f->cfg_lock, flags);
		break;
	}
	case ZOC_VBUS_BAR_INFO: {
		struct zoc_vbus_bar_info b;

		if (copy_from_user(&b, uarg, sizeof(b))) {
			ret = -EFAULT;
			break;
		}
		if (!f->pdev || b.bar >= ZOC_VBUS_NUM_BARS || b.reserved) {
			ret = -EINVAL;
			break;
		}
		b.addr = f->bar_size[b.bar] ? pci_resource_start(f->pdev, b.bar) : 0;
		b.size = f->bar_size[b.bar];
		if (copy_to_user(uarg, &b, sizeof(b)))
			ret = -EFAULT;
		break;
	}
	default:
		ret = -ENOTTY;
	}
	mutex_unlock(&f->lock);
	return ret;
}

static ssize_t zvb_read(struct file *file, char __user *buf, size_t count, loff_t *ppos)
{
	struct zvb_func *f = file->private_data;
	struct zoc_vbus_event ev[16];
	unsigned long flags;
	size_t n = 0, max = min_t(size_t, count / sizeof(ev[0]), ARRAY_SIZE(ev));
	int ret;

	if (!max)
		return -EINVAL;
	for (;;) {
		raw_spin_lock_irqsave(&f->cfg_lock, flags);
		if (f->ev_lost) {
			memset(&ev[n], 0, sizeof(ev[n]));
			ev[n].type = ZOC_VBUS_EV_OVERFLOW;
			ev[n++].value = f->ev_lost;
			f->ev_lost = 0;
		}
		while (n < max && f->ev_tail != f->ev_head)
			ev[n++] = f->ev[f->ev_tail++ % ZVB_RING];
		if (n < max && f->ev_tail == f->ev_head && f->ev_reset) {
			memset(&ev[n], 0, sizeof(ev[n]));
			ev[n++].type = ZOC_VBUS_EV_RESET;
			f->ev_reset = false;
		}
		raw_spin_unlock_irqrestore(&f->cfg_lock, flags);
		if (n)
			break;
		if (file->f_flags & O_NONBLOCK)
			return -EAGAIN;
		ret = wait_event_interruptible(f->ev_wait,
					       READ_ONCE(f->ev_head) != READ_ONCE(f->ev_tail) ||
					       READ_ONCE(f->ev_lost) || READ_ONCE(f->ev_reset));
		if (ret)
			return ret;
	}
	if (copy_to_user(buf, ev, n * sizeof(ev[0])))
		return -EFAULT;
	return n * sizeof(ev[0]);
}

static __poll_t zvb_poll(struct file *file, poll_table *wait)
{
	struct zvb_func *f = file->private_data;

	poll_wait(file, &f->ev_wait, wait);
	if (READ_ONCE(f->ev_head) != READ_ONCE(f->ev_tail) || READ_ONCE(f->ev_lost) ||
	    READ_ONCE(f->ev_reset))
		return EPOLLIN | EPOLLRDNORM;
	return 0;
}

/* Mappings are filled here, page by page, so none can outlive zvb_revoke():
 * a fault after it (or on a mapping made while it ran) gets SIGBUS.
 */
static vm_fault_t zvb_vm_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct zvb_func *f = vma->vm_private_data;
	u64 off = (u64)vmf->pgoff << PAGE_SHIFT;
	u64 in = off & 0xffffffffULL;
	unsigned int region = off >> 32;
	vm_fault_t ret = VM_FAULT_SIGBUS;
	struct page *page;

	mutex_lock(&f->vma_lock);
	if (f->revoked)
		goto out;
	if (off >= ZOC_VBUS_MMAP_DMA) {
		if (off - ZOC_VBUS_MMAP_DMA < ((u64)f->pool_pages << PAGE_SHIFT)) {
			page = vmalloc_to_page(f->pool + (off - ZOC_VBUS_MMAP_DMA));
			get_page(page);
			vmf->page = page;
			ret = 0;
		}
	} else if (region < ZOC_VBUS_NUM_BARS && f->bar_addr[region] &&
		   in < f->bar_size[region]) {
		ret = vmf_insert_pfn_prot(vma, vmf->address,
					  (f->bar_addr[region] + in) >> PAGE_SHIFT,
					  vma->vm_page_prot);
	}
out:
	mutex_unlock(&f->vma_lock);
	return ret;
}

static const struct vm_operations_struct zvb_vm_ops = {
	.fault = zvb_vm_fault,
};

static int zvb_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct zvb_func *f = file->private_data;
	unsigned long len = vma->vm_end - vma->vm_start;
	u64 off = (u64)vma->vm_pgoff << PAGE_SHIFT;
	int ret = -EINVAL;

	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	mutex_lock(&f->lock);
	if (!f->pdev || f->revoked)
		goto out;
	if (off == ZOC_VBUS_MMAP_DMA) {
		if (len <= ((u64)f->pool_pages << PAGE_SHIFT)) {
			vma->vm_flags |= VM_DONTEXPAND | VM_DONTDUMP;
			ret = 0;
		}
	} else if ((off & 0xffffffffULL) == 0 && (off >> 32) < ZOC_VBUS_NUM_BARS) {
		unsigned int bar = off >> 32;

		if (f->bar_size[bar] && len <= f->bar_size[bar]) {
			vma->vm_flags |= VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP;
			vma->vm_page_prot = pgprot_noncached(vma->vm_page_prot);
			ret = 0;
		}
	}
	if (!ret) {
		vma->vm_ops = &zvb_vm_ops;
		vma->vm_private_data = f;
	}
out:
	mutex_unlock(&f->lock);
	return ret;
}

static const struct file_operations zvb_fops = {
	.owner = THIS_MODULE,
	.open = zvb_open,
	.release = zvb_release,
	.unlocked_ioctl = zvb_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.read = zvb_read,
	.poll = zvb_poll,
	.mmap = zvb_mmap,
	.llseek = noop_llseek,
};

static struct miscdevice zvb_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "zoc-vbus",
	.fops = &zvb_fops,
	.mode = 0600,
};

/* ------------------------------------------------------------------ module */

/* A PCI domain no other host bridge uses (as vmd does: above 0xffff). */
static int zvb_find_domain(void)
{
	struct pci_bus *bus = NULL;
	int domain = 0xffff;

	while ((bus = pci_find_next_bus(bus)) != NULL)
		domain = max_t(int, domain, pci_domain_nr(bus));
	return domain + 1;
}

static int zvb_window_claim(void)
{
	struct resource *child;

	if (!window_size || !PAGE_ALIGNED(window_base) || !PAGE_ALIGNED(window_size) ||
	    window_base + window_size < window_base || window_size < SZ_1M) {
		pr_err("window_base/window_size missing or not page aligned (boot with memmap=SIZE$ADDR)\n");
		return -EINVAL;
	}
	if (region_intersects(window_base, window_size, IORESOURCE_SYSTEM_RAM,
			      IORES_DESC_NONE) != REGION_DISJOINT) {
		pr_err("window %#lx+%#lx overlaps System RAM: reserve it with memmap=SIZE$ADDR\n",
		       window_base, window_size);
		return -EINVAL;
	}
	zvb_window.start = window_base;
	zvb_window.end = window_base + window_size - 1;
	if (insert_resource(&iomem_resource, &zvb_window)) {
		pr_err("window %pR conflicts with another resource\n", &zvb_window);
		return -EBUSY;
	}
	/* The e820 "Reserved" entry of exactly the same range becomes our child
	 * when inserted: put it back on top so BARs can be carved from us.
	 */
	child = zvb_window.child;
	if (child && child->start == zvb_window.start && child->end == zvb_window.end &&
	    !child->sibling) {
		remove_resource(&zvb_window);
		/* remove_resource() leaves the old links in the struct */
		zvb_window.child = NULL;
		zvb_window.sibling = NULL;
		zvb_window.parent = NULL;
		if (request_resource(child, &zvb_window)) {
			pr_err("cannot nest the window in %pR\n", child);
			return -EBUSY;
		}
	} else if (child) {
		pr_err("window %pR already has users (%s)\n", &zvb_window, child->name);
		remove_resource(&zvb_window);
		return -EBUSY;
	}
	return 0;
}

static int __init zvb_init(void)
{
	LIST_HEAD(resources);
	int ret;

	ret = zvb_window_claim();
	if (ret)
		return ret;
	zvb_win_pages = window_size >> PAGE_SHIFT;
	zvb_win_map = bitmap_zalloc(zvb_win_pages, GFP_KERNEL);
	if (!zvb_win_map) {
		ret = -ENOMEM;
		goto err_window;
	}
	zvb_root = root_device_register("zoc-vbus");
	if (IS_ERR(zvb_root)) {
		ret = PTR_ERR(zvb_root);
		goto err_window;
	}
	zvb_sysdata.node = NUMA_NO_NODE;
	zvb_sysdata.domain = zvb_find_domain();
	pci_add_resource(&resources, &zvb_busn);
	pci_add_resource(&resources, &zvb_window);
	pci_lock_rescan_remove();
	zvb_bus = pci_create_root_bus(zvb_root, 0, &zvb_pci_ops, &zvb_sysdata, &resources);
	if (zvb_bus)
		pci_bus_add_devices(zvb_bus);
	pci_unlock_rescan_remove();
	if (!zvb_bus) {
		pci_free_resource_list(&resources);
		ret = -ENODEV;
		goto err_root;
	}
	ret = misc_register(&zvb_misc);
	if (ret)
		goto err_bus;
	pr_info("PCI domain %04x, BAR window %pR\n", zvb_sysdata.domain, &zvb_window);
	return 0;

err_bus:
	pci_lock_rescan_remove();
	pci_stop_root_bus(zvb_bus);
	pci_remove_root_bus(zvb_bus);
	pci_unlock_rescan_remove();
err_root:
	root_device_unregister(zvb_root);
err_window:
	bitmap_free(zvb_win_map);
	remove_resource(&zvb_window);
	return ret;
}

static void __exit zvb_exit(void)
{
	/* Open files hold the module: no functions are left. */
	misc_deregister(&zvb_misc);
	pci_lock_rescan_remove();
	pci_stop_root_bus(zvb_bus);
	pci_remove_root_bus(zvb_bus);
	pci_unlock_rescan_remove();
	root_device_unregister(zvb_root);
	bitmap_free(zvb_win_map);
	remove_resource(&zvb_window);
}

module_init(zvb_init);
module_exit(zvb_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("ZOC Virtual Bus: PCI functions served by a user-space device model");
