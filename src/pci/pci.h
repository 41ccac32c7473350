/* SPDX-License-Identifier: MIT */
/*
 * pci.h - the PCI function model: what a device (NVMe, virtio-pci) is to
 * the links that carry it at register level (vfio-user today, zoc-vbus
 * later). A device describes itself with a table (struct zoc_pci_desc);
 * this module builds and serves the type-0 config space from it:
 *
 *  - header: IDs, class, command/status (status bits write-1-to-clear),
 *    BARs with sizing (write all-ones, read back the size mask), interrupt
 *    line/pin, subsystem IDs, capabilities pointer;
 *  - capability list: power management, MSI (one vector, 64-bit, per-vector
 *    mask), MSI-X (table and PBA in a BAR, per-vector mask, function mask),
 *    PCI Express endpoint, then the device's own capabilities (desc.caps,
 *    e.g. virtio's vendor-specific ones); 4 KiB of config space (empty
 *    extended list);
 *  - the MSI-X table and PBA inside their BAR: accesses to those ranges are
 *    served here, everything else in a BAR goes to ops->bar_access;
 *  - interrupts: the link hands over one eventfd per vector (SET_IRQS);
 *    zoc_pci_irq_raise() picks MSI-X, MSI or INTx from the config state,
 *    honours masks (a masked MSI-X vector sets its PBA bit and fires when
 *    unmasked) and signals the eventfd.
 *
 * Threads: configuration and BAR accesses, reset and irq fd changes run on
 * reactor 0 (the link's thread). zoc_pci_irq_raise() may run on any reactor
 * at any time: it only reads atomics, and replaced eventfds are closed after
 * a reactor grace period (zoc_reactors_barrier), never under a raiser.
 *
 * Functions return 0 or a negative errno. Out-of-range or misaligned
 * accesses are refused (-EINVAL) and never touch memory outside the model.
 */
#ifndef ZOC_PCI_PCI_H
#define ZOC_PCI_PCI_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct zoc_pci_func;
struct zoc_mem;

#define ZOC_PCI_NUM_BARS 6
#define ZOC_PCI_CFG_SIZE 4096
#define ZOC_PCI_MSIX_MAX_VECTORS 2048

/* Interrupt types; the values are VFIO's irq indices. */
enum zoc_pci_irq_type {
	ZOC_PCI_IRQ_INTX = 0,
	ZOC_PCI_IRQ_MSI = 1,
	ZOC_PCI_IRQ_MSIX = 2,
	ZOC_PCI_IRQ_ERR = 3,
	ZOC_PCI_IRQ_REQ = 4,
	ZOC_PCI_IRQ_TYPES
};

enum zoc_pci_bar_flags {
	ZOC_PCI_BAR_MEM64 = 1u << 0,    /* 64-bit memory BAR (takes the next BAR slot) */
	ZOC_PCI_BAR_PREFETCH = 1u << 1,
	ZOC_PCI_BAR_IO = 1u << 2,       /* I/O space (else memory) */
};

/* A part of a BAR that the link may let the client map directly (vfio-user
 * sparse mmap): the client's stores land in that memory without a message,
 * and the device polls it (e.g. NVMe doorbells). */
struct zoc_pci_mmap_area {
	uint64_t offset; /* in the BAR, page-aligned */
	uint64_t size;   /* page multiple */
	int fd;          /* backing file (memfd); the model keeps ownership */
	uint64_t fd_offset;
};

typedef void (*zoc_pci_done_fn)(void *arg);

/* A device-specific capability in the standard config space (virtio-pci's
 * vendor-specific ones, ID 0x09), chained after the standard ones in the
 * order given. It lies in [0x40, 0x100), dword aligned, and overlaps neither
 * another one nor a standard capability the desc has (PM 0x40-0x47, MSI
 * 0x50-0x67, MSI-X 0x70-0x7b, PCIe 0x80-0xbb). */
struct zoc_pci_cap {
	uint8_t offset;
	uint8_t len;            /* bytes, >= 2 (ID and next pointer included) */
	const uint8_t *bytes;   /* power-on contents; bytes[0] = capability ID;
				 * bytes[1] (next) is ignored, the model chains */
	const uint8_t *wmask;   /* NULL: read-only; else per-byte writable bits
				 * (those of bytes 0 and 1 are ignored) */
};
#define ZOC_PCI_MAX_CAPS 16

struct zoc_pci_ops {
	/* BAR access outside the MSI-X table/PBA: len is 1, 2, 4 or 8 and the
	 * range lies inside the BAR (checked by the caller). Reads fill buf.
	 * Return 0, or -errno to fail that access. */
	int (*bar_access)(struct zoc_pci_func *f, unsigned bar, uint64_t off, void *buf,
			  uint32_t len, bool is_write);
	/* Optional: after a config write changed [off, off+len) (the command
	 * register's bus master bit, say). */
	void (*cfg_written)(struct zoc_pci_func *f, uint32_t off, uint32_t len);
	/* Optional: mmap-able areas of a BAR (at most max); returns the count. */
	int (*bar_mmap_areas)(struct zoc_pci_func *f, unsigned bar, struct zoc_pci_mmap_area *areas,
			      int max);
	/* Function reset (vfio-user DEVICE_RESET, FLR, a client that went
	 * away): stop all work, drop DMA, back to power-on register values.
	 * Asynchronous: done(arg) on reactor 0 when quiet. */
	void (*reset)(struct zoc_pci_func *f, zoc_pci_done_fn done, void *arg);
	/* Stop touching guest memory: finish or hold every in-flight request and
	 * fetch no new ones, then done(arg) on reactor 0. resume() undoes it. */
	void (*quiesce)(struct zoc_pci_func *f, zoc_pci_done_fn done, void *arg);
	void (*resume)(struct zoc_pci_func *f);
	/* Only while quiesced (or reset): the DMA space to use from now on
	 * (NULL: none; every DMA then fails). The model takes a reference
	 * (zoc_mem_get) and drops the previous one. */
	void (*set_dma)(struct zoc_pci_func *f, struct zoc_mem *mem);
	/* Optional: before a config read of [off, off+len) that touches a
	 * device capability (desc.caps): the device may refresh those bytes
	 * with zoc_pci_cfg_store() (virtio's PCI cfg access window). Its own
	 * zoc_pci_cfg_read() calls do not call it again. */
	void (*cfg_read)(struct zoc_pci_func *f, uint32_t off, uint32_t len);
};

/* How a device describes itself. */
struct zoc_pci_desc {
	uint16_t vendor_id, device_id;
	uint16_t subsys_vendor_id, subsys_id;
	uint8_t revision;
	uint32_t class_code;            /* 24 bits: base << 16 | sub << 8 | prog-if */
	struct {
		uint64_t size;          /* 0: unused; else a power of two >= 16 (4 KiB for mmap) */
		uint32_t flags;         /* zoc_pci_bar_flags */
	} bars[ZOC_PCI_NUM_BARS];
	uint16_t msix_vectors;          /* 0: no MSI-X capability */
	uint8_t msix_bar;               /* BAR holding table and PBA */
	uint32_t msix_table_offset;     /* 8-byte aligned */
	uint32_t msix_pba_offset;       /* 8-byte aligned */
	bool msi;                       /* MSI capability with one vector */
	bool pcie;                      /* PCI Express endpoint capability */
	uint8_t intx_pin;               /* 0: none, 1 = INTA# ... */
	const struct zoc_pci_ops *ops;
	/* Device capabilities (at most ZOC_PCI_MAX_CAPS). Read only by
	 * zoc_pci_func_create(): the arrays need not outlive it (the copy
	 * zoc_pci_func_desc() returns points at the model's own storage). */
	const struct zoc_pci_cap *caps;
	uint8_t ncaps;
};

/* desc is copied. NULL with errno (EINVAL: a bad table: overlapping BAR
 * slots, a size that is not a power of two, MSI-X outside its BAR ...). */
struct zoc_pci_func *zoc_pci_func_create(const struct zoc_pci_desc *desc, void *dev_ctx);
/* Closes the irq eventfds. The caller makes sure nobody raises any more. */
void zoc_pci_func_destroy(struct zoc_pci_func *f);
void *zoc_pci_func_ctx(const struct zoc_pci_func *f);
const struct zoc_pci_desc *zoc_pci_func_desc(const struct zoc_pci_func *f);

/* Config space: any length 1..4 at any offset in [0, ZOC_PCI_CFG_SIZE)
 * that does not cross a dword (links split longer accesses). Writes honour
 * the write masks (read-only bits keep their value, W1C bits clear). */
int zoc_pci_cfg_read(struct zoc_pci_func *f, uint32_t off, void *buf, uint32_t len);
int zoc_pci_cfg_write(struct zoc_pci_func *f, uint32_t off, const void *buf, uint32_t len);
/* The device sets bytes of one of its capabilities (desc.caps) as the
 * hardware would, write masks ignored; [off, off+len) must lie inside one
 * capability and not touch its ID and next bytes (-EINVAL otherwise). */
int zoc_pci_cfg_store(struct zoc_pci_func *f, uint32_t off, const void *buf, uint32_t len);
/* Copies the per-byte write and write-1-to-clear masks (ZOC_PCI_CFG_SIZE
 * bytes each), for a link that serves config space itself (zoc-vbus). */
void zoc_pci_cfg_masks(const struct zoc_pci_func *f, uint8_t *wmask, uint8_t *w1cmask);
/* Whole accesses of any length: split into naturally aligned pieces. */
int zoc_pci_cfg_access(struct zoc_pci_func *f, uint32_t off, void *buf, uint32_t len,
		       bool is_write);

/* BAR access of any length (split into aligned pieces of 1/2/4/8 bytes).
 * -EINVAL if the BAR is unused or [off, off+len) leaves it. */
int zoc_pci_bar_access(struct zoc_pci_func *f, unsigned bar, uint64_t off, void *buf,
		       uint32_t len, bool is_write);
uint64_t zoc_pci_bar_size(const struct zoc_pci_func *f, unsigned bar);
/* Reactor 0. Records error conditions in the status register (e.g.
 * 0x2000, received master abort, when a DMA hit unmapped memory); only the
 * write-1-to-clear error bits (0xf900) are taken, the driver clears them. */
void zoc_pci_status_set(struct zoc_pci_func *f, uint16_t bits);
/* Command register bits as the driver set them. */
bool zoc_pci_bus_master(const struct zoc_pci_func *f);
bool zoc_pci_mem_enabled(const struct zoc_pci_func *f);

/* Interrupts. Number of vectors of a type (INTx: 1 if a pin is set; MSI: 1
 * if the capability is present; MSI-X: msix_vectors; ERR/REQ: 0). */
uint32_t zoc_pci_irq_count(const struct zoc_pci_func *f, enum zoc_pci_irq_type type);
/* Sets the eventfds of vectors [start, start+count) of a type; fds[i] = -1
 * removes one. Takes ownership of every fd >= 0 (closes it on error, too).
 * count 0 with start 0 removes all of the type. -EINVAL out of range. */
int zoc_pci_irq_set_fds(struct zoc_pci_func *f, enum zoc_pci_irq_type type, uint32_t start,
			uint32_t count, const int *fds);
/* Link-level mask/unmask (VFIO_IRQ_SET_ACTION_MASK/UNMASK) of
 * [start, start+count); unmask fires a vector whose interrupt is pending. */
int zoc_pci_irq_mask(struct zoc_pci_func *f, enum zoc_pci_irq_type type, uint32_t start,
		     uint32_t count, bool mask);
/* Link-level trigger (VFIO_IRQ_SET_ACTION_TRIGGER with no data): fire now. */
int zoc_pci_irq_trigger(struct zoc_pci_func *f, enum zoc_pci_irq_type type, uint32_t start,
			uint32_t count);
/* Any reactor. Signals vector `vector` the way the driver configured the
 * function: MSI-X if enabled (pending bit if masked), else MSI (vector 0),
 * else INTx (if not disabled in the command register; sets the status
 * bit). Returns true if an eventfd was signalled. */
bool zoc_pci_irq_raise(struct zoc_pci_func *f, uint16_t vector);
/* INTx is level-triggered: the device lowers it when its cause is gone
 * (clears the status bit). */
void zoc_pci_intx_lower(struct zoc_pci_func *f);
/* True if MSI-X is enabled (and not function-masked) or MSI is enabled. */
bool zoc_pci_msi_active(const struct zoc_pci_func *f);
/* Any reactor. True if the MSI-X enable bit is set, function-masked or
 * not: zoc_pci_irq_raise() then uses the MSI-X vector (a function-masked
 * one goes pending in the PBA), never MSI or INTx. */
bool zoc_pci_msix_enabled(const struct zoc_pci_func *f);

/* Function reset: config space back to power-on values (BARs, command,
 * MSI-X off), then ops->reset. done(arg) on reactor 0. Irq fds stay. */
void zoc_pci_func_reset(struct zoc_pci_func *f, zoc_pci_done_fn done, void *arg);

/* {"vendor_id", "device_id", "command", "msix": {"enabled", "masked", "vectors"}, ...} */
json_t *zoc_pci_func_info(const struct zoc_pci_func *f);

#endif
