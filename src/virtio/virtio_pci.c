/* SPDX-License-Identifier: MIT */
/*
 * virtio-pci modern transport (see virtio_pci.h).
 *
 * Control state (registers, queue configuration, the stop/settle machinery)
 * lives on reactor 0. What the queues' owner reactors touch is atomic: the
 * ISR byte, device_status (NEEDS_RESET is set from there), the MSI-X vector
 * numbers read by a notification.
 *
 * Stops: reset, quiesce and a per-queue reset all stop running queues with
 * dev->ops->queue_stop(), which completes asynchronously. vp->stops counts
 * those in flight; when it drops to 0, settle() finishes a pending reset and
 * calls the waiters (the link's reset and quiesce callbacks).
 */
#include "virtio/virtio_pci.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"
#include "link/dma.h"
#include "pci/pci.h"
#include "virtio/virtio.h"
#include "virtio/virtio_dev.h"
#include "virtio/virtqueue.h"

#define VIRTIO_VENDOR_ID 0x1af4
#define VIRTIO_DEVICE_ID_BASE 0x1040
#define PCI_CAP_ID_VNDR 0x09

/* Capability layout in config space. */
#define CAP_COMMON 0x80
#define CAP_NOTIFY 0x90 /* 20 bytes: + notify_off_multiplier */
#define CAP_ISR 0xa4
#define CAP_DEVICE 0xb4
#define CAP_PCICFG 0xc4 /* 20 bytes: + pci_cfg_data */
#define CAP_LEN 16
#define CAP_LEN_EXT 20
/* Fields of struct virtio_pci_cap */
#define VCAP_LEN 2
#define VCAP_TYPE 3
#define VCAP_BAR 4
#define VCAP_ID 5
#define VCAP_OFFSET 8
#define VCAP_LENGTH 12
#define VCAP_EXTRA 16 /* notify_off_multiplier / pci_cfg_data */

#define MSIX_PBA_OFF(nvec) ((((uint32_t)(nvec) * 16) + 4095) & ~4095u)

/* Feature bits the transport carries from the device to the driver:
 * device-type bits and the ring / platform bits it knows. */
#define DEVICE_BITS (((1ull << 24) - 1) | ~((1ull << 50) - 1))
#define TRANSPORT_BITS                                                                           \
	(ZOC_BIT(VIRTIO_F_RING_INDIRECT_DESC) | ZOC_BIT(VIRTIO_F_RING_EVENT_IDX) |              \
	 ZOC_BIT(VIRTIO_F_VERSION_1) | ZOC_BIT(VIRTIO_F_ACCESS_PLATFORM) |                      \
	 ZOC_BIT(VIRTIO_F_RING_PACKED) | ZOC_BIT(VIRTIO_F_IN_ORDER) |                           \
	 ZOC_BIT(VIRTIO_F_ORDER_PLATFORM) | ZOC_BIT(VIRTIO_F_RING_RESET))

#define DRIVER_STATUS_BITS                                                                       \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK |           \
	 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_FAILED)

struct zoc_virtio_pci;

struct vpci_queue {
	struct zoc_virtio_pci *vp;
	uint16_t idx;
	uint16_t size;            /* as the driver set it (power-on: the maximum) */
	_Atomic uint16_t vector;  /* MSI-X vector, read by the owner reactor */
	bool enabled;             /* the driver wrote queue_enable = 1 */
	bool running;             /* handed to the device */
	bool stopping;            /* queue_stop issued, not done */
	bool reset_pending;       /* queue_reset: back to defaults once stopped */
	bool reset_done;          /* queue_reset reads 1 */
	bool base_valid;          /* base holds where a stop left the rings */
	uint32_t base;
	uint64_t desc, driver, device;
	int kickfd;
};

struct vpci_waiter {
	struct vpci_waiter *next;
	zoc_pci_done_fn fn;
	void *arg;
};

struct zoc_virtio_pci {
	struct zoc_virtio_dev *dev;
	struct zoc_pci_func *f;
	uint16_t nq;
	uint16_t nvec;
	uint64_t offer;
	uint64_t transport_only;  /* offered bits the transport implements itself */
	uint32_t dfselect, gfselect;
	uint64_t driver_features; /* as written */
	uint64_t features;        /* accepted at FEATURES_OK */
	_Atomic uint8_t status;
	_Atomic uint8_t isr;
	_Atomic uint8_t generation;
	_Atomic uint16_t config_vector;
	uint16_t qsel;
	struct zoc_mem *mem;
	bool quiesced;
	bool resetting;           /* device reset waiting for queue stops */
	unsigned stops;           /* queue stops in flight (+ holds) */
	struct vpci_waiter *waiters;
	int notify_fd;            /* memfd behind the notify page (sparse mmap) */
	bool in_window;           /* serving a window write: reads are raw */
	uint64_t kicks, irqs_config, needs_reset_events;
	struct vpci_queue q[];
};

static const char *vp_name(const struct zoc_virtio_pci *vp)
{
	return vp->dev->name ? vp->dev->name : "virtio-pci";
}

/* ------------------------------------------------------- interrupts */

static void raise_config(struct zoc_virtio_pci *vp)
{
	atomic_fetch_or(&vp->isr, 2);
	zoc_pci_irq_raise(vp->f, atomic_load(&vp->config_vector));
}

/* Owner reactor of the queue: a used-buffer notification. */
static void queue_notify(void *arg)
{
	struct vpci_queue *q = arg;

	atomic_fetch_or(&q->vp->isr, 1);
	zoc_pci_irq_raise(q->vp->f, atomic_load_explicit(&q->vector, memory_order_relaxed));
}

/* Any thread: the device can no longer work until the driver resets it. */
static void set_needs_reset(struct zoc_virtio_pci *vp)
{
	uint8_t old = atomic_fetch_or(&vp->status, VIRTIO_STATUS_NEEDS_RESET);

	if (old & VIRTIO_STATUS_NEEDS_RESET)
		return;
	__atomic_fetch_add(&vp->needs_reset_events, 1, __ATOMIC_RELAXED);
	if (old & VIRTIO_STATUS_DRIVER_OK)
		raise_config(vp);
}

/* Owner reactor: the driver broke the ring. */
static void queue_broken(void *arg)
{
	struct vpci_queue *q = arg;

	ZOC_WARN_RL("%s: queue %u broken by the driver: device needs reset", vp_name(q->vp),
		    q->idx);
	set_needs_reset(q->vp);
}

void zoc_virtio_pci_config_changed(struct zoc_virtio_pci *vp)
{
	atomic_fetch_add(&vp->generation, 1);
	vp->irqs_config++;
	if (atomic_load(&vp->status) & VIRTIO_STATUS_DRIVER_OK)
		raise_config(vp);
}

static void dev_config_changed(void *arg)
{
	zoc_virtio_pci_config_changed(arg);
}

/* ----------------------------------------------------------- queues */

static void queue_defaults(struct zoc_virtio_pci *vp, struct vpci_queue *q)
{
	q->size = vp->dev->max_queue_size;
	atomic_store(&q->vector, VIRTIO_MSI_NO_VECTOR);
	q->enabled = false;
	q->base_valid = false;
	q->base = 0;
	q->desc = q->driver = q->device = 0;
	if (q->kickfd >= 0) {
		uint64_t v;

		while (read(q->kickfd, &v, sizeof(v)) == sizeof(v))
			; /* drop stale kicks */
	}
}

static bool queue_may_start(const struct zoc_virtio_pci *vp, const struct vpci_queue *q)
{
	return q->enabled && !q->running && !q->stopping && !vp->quiesced && !vp->resetting &&
	       (atomic_load(&vp->status) & VIRTIO_STATUS_DRIVER_OK) &&
	       !(atomic_load(&vp->status) & VIRTIO_STATUS_NEEDS_RESET);
}

/* Hands queue q to the device. 0, or -errno: -EFAULT if its rings are not
 * in mapped memory (quietly if resuming). */
static int queue_start(struct zoc_virtio_pci *vp, struct vpci_queue *q, bool resuming)
{
	struct zoc_vq_config cfg = {0};
	uint64_t dsz, drsz, dvsz;
	struct zoc_vq *vq;
	int rc;

	cfg.size = q->size;
	cfg.packed = vp->features & ZOC_BIT(VIRTIO_F_RING_PACKED);
	cfg.event_idx = vp->features & ZOC_BIT(VIRTIO_F_RING_EVENT_IDX);
	cfg.in_order = vp->features & ZOC_BIT(VIRTIO_F_IN_ORDER);
	cfg.indirect = vp->features & ZOC_BIT(VIRTIO_F_RING_INDIRECT_DESC);
	if (q->size == 0 || q->size > vp->dev->max_queue_size ||
	    (!cfg.packed && (q->size & (q->size - 1)))) {
		ZOC_WARN_RL("%s: queue %u: size %u is not valid (max %u%s)", vp_name(vp), q->idx,
			    q->size, vp->dev->max_queue_size,
			    cfg.packed ? "" : ", a power of two");
		return -EINVAL;
	}
	if (!vp->mem) {
		if (!resuming)
			ZOC_WARN_RL("%s: queue %u: no DMA space (no memory mapped by the client)",
				    vp_name(vp), q->idx);
		return -EFAULT;
	}
	zoc_vq_ring_sizes(q->size, cfg.packed, &dsz, &drsz, &dvsz);
	/* Packed rings write used descriptors back into the descriptor area. */
	cfg.desc = zoc_mem_gpa_to_hva(vp->mem, q->desc, dsz, cfg.packed);
	cfg.driver = zoc_mem_gpa_to_hva(vp->mem, q->driver, drsz, false);
	cfg.device = zoc_mem_gpa_to_hva(vp->mem, q->device, dvsz, true);
	if (!cfg.desc || !cfg.driver || !cfg.device) {
		if (resuming)
			return -EFAULT;
		ZOC_WARN_RL("%s: queue %u: ring addresses (desc 0x%llx driver 0x%llx device 0x%llx, "
			    "%u entries) are not in mapped guest memory",
			    vp_name(vp), q->idx, (unsigned long long)q->desc,
			    (unsigned long long)q->driver, (unsigned long long)q->device, q->size);
		return -EFAULT;
	}
	if (!q->base_valid) {
		/* packed: wrap counters start at 1 */
		q->base = cfg.packed ? 0x8000 : 0;
		q->base_valid = true;
	}
	cfg.base = q->base;
	cfg.mem = vp->mem;
	cfg.callfd = -1;
	cfg.notify_fn = queue_notify;
	cfg.broken_fn = queue_broken;
	cfg.fn_arg = q;
	vq = zoc_vq_create(&cfg);
	if (!vq) {
		rc = -errno;
		ZOC_WARN_RL("%s: queue %u rejected (%s): misaligned rings?", vp_name(vp), q->idx,
			    strerror(errno));
		return rc ? rc : -EINVAL;
	}
	rc = vp->dev->ops->queue_start(vp->dev, q->idx, vq, q->kickfd);
	if (rc) {
		zoc_vq_destroy(vq);
		ZOC_WARN_RL("%s: device refused queue %u: %s", vp_name(vp), q->idx, strerror(-rc));
		return rc;
	}
	q->running = true;
	ZOC_DEBUG("%s: queue %u started (%u entries, %s)", vp_name(vp), q->idx, q->size,
		  cfg.packed ? "packed" : "split");
	return 0;
}

static void queue_try_start(struct zoc_virtio_pci *vp, struct vpci_queue *q)
{
	if (queue_may_start(vp, q) && queue_start(vp, q, false))
		set_needs_reset(vp);
}

static void queues_try_start(struct zoc_virtio_pci *vp)
{
	for (uint16_t i = 0; i < vp->nq; i++)
		queue_try_start(vp, &vp->q[i]);
}

/* After the link changed the DMA space: restart the queues where they were.
 * A ring that is not mapped now stays pending (a client remaps memory in
 * steps: unmap, then map the new layout) and starts at a later resume. */
static void queues_resume(struct zoc_virtio_pci *vp)
{
	for (uint16_t i = 0; i < vp->nq; i++) {
		struct vpci_queue *q = &vp->q[i];
		int rc;

		if (!queue_may_start(vp, q))
			continue;
		rc = queue_start(vp, q, true);
		if (rc == -EFAULT)
			ZOC_LOG_RL(ZOC_LOG_INFO, "%s: queue %u waits for its rings to be mapped again",
				   vp_name(vp), q->idx);
		else if (rc)
			set_needs_reset(vp);
	}
}

/* ---------------------------------------------------- stop and settle */

static void reset_state(struct zoc_virtio_pci *vp);

static void settle(struct zoc_virtio_pci *vp)
{
	struct vpci_waiter *w;

	if (vp->stops)
		return;
	if (vp->resetting) {
		reset_state(vp);
		vp->resetting = false;
		ZOC_DEBUG("%s: device reset", vp_name(vp));
	}
	w = vp->waiters;
	vp->waiters = NULL;
	while (w) {
		struct vpci_waiter *next = w->next;

		w->fn(w->arg);
		free(w);
		w = next;
	}
}

static void queue_stopped(void *arg)
{
	struct vpci_queue *q = arg;
	struct zoc_virtio_pci *vp = q->vp;

	q->stopping = false;
	q->base_valid = true;
	if (q->reset_pending) {
		q->reset_pending = false;
		queue_defaults(vp, q);
		q->reset_done = true;
	}
	vp->stops--;
	settle(vp);
}

/* Stops q if it runs; counted in vp->stops. */
static void queue_stop(struct zoc_virtio_pci *vp, struct vpci_queue *q)
{
	if (!q->running)
		return;
	q->running = false;
	q->stopping = true;
	vp->stops++;
	if (vp->dev->ops->queue_stop(vp->dev, q->idx, &q->base, queue_stopped, q)) {
		ZOC_WARN("%s: queue %u was not running in the device", vp_name(vp), q->idx);
		q->stopping = false;
		vp->stops--;
	}
}

/* Stops every running queue, then settles (perhaps right away). */
static void stop_all(struct zoc_virtio_pci *vp)
{
	vp->stops++; /* hold: a stop that completes at once must not settle */
	for (uint16_t i = 0; i < vp->nq; i++)
		queue_stop(vp, &vp->q[i]);
	vp->stops--;
	settle(vp);
}

static void add_waiter(struct zoc_virtio_pci *vp, zoc_pci_done_fn fn, void *arg)
{
	struct vpci_waiter *w, **pp;

	if (!fn)
		return;
	w = malloc(sizeof(*w));
	if (!w) {
		ZOC_ERR("%s: out of memory for a completion; completing now", vp_name(vp));
		fn(arg);
		return;
	}
	w->fn = fn;
	w->arg = arg;
	w->next = NULL;
	for (pp = &vp->waiters; *pp; pp = &(*pp)->next)
		;
	*pp = w;
}

/* Register state after a reset; no queue runs. */
static void reset_state(struct zoc_virtio_pci *vp)
{
	vp->dfselect = vp->gfselect = 0;
	vp->driver_features = 0;
	vp->features = 0;
	vp->qsel = 0;
	atomic_store(&vp->config_vector, VIRTIO_MSI_NO_VECTOR);
	for (uint16_t i = 0; i < vp->nq; i++) {
		queue_defaults(vp, &vp->q[i]);
		vp->q[i].reset_pending = false;
		vp->q[i].reset_done = false;
	}
	zoc_pci_intx_lower(vp->f);
	atomic_store(&vp->isr, 0);
	atomic_store(&vp->status, 0);
}

static void begin_reset(struct zoc_virtio_pci *vp)
{
	vp->resetting = true;
	stop_all(vp);
}

/* ---------------------------------------------------- common config */

static void features_ok(struct zoc_virtio_pci *vp, uint8_t *st)
{
	uint64_t f = vp->driver_features;
	int rc;

	if (f & ~vp->offer) {
		ZOC_WARN_RL("%s: driver accepted features 0x%llx outside the offer 0x%llx",
			    vp_name(vp), (unsigned long long)f, (unsigned long long)vp->offer);
		*st &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
		return;
	}
	if (!(f & ZOC_BIT(VIRTIO_F_VERSION_1))) {
		ZOC_WARN_RL("%s: driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are not "
			    "served)",
			    vp_name(vp));
		*st &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
		return;
	}
	rc = vp->dev->ops->set_features(vp->dev, f & ~vp->transport_only);
	if (rc) {
		ZOC_WARN_RL("%s: device refused features 0x%llx", vp_name(vp),
			    (unsigned long long)f);
		*st &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
		return;
	}
	vp->features = f;
}

static void status_write(struct zoc_virtio_pci *vp, uint8_t val)
{
	uint8_t cur = atomic_load(&vp->status);
	uint8_t drv = cur & DRIVER_STATUS_BITS;
	uint8_t st;

	if (val == 0) {
		if (!vp->resetting)
			begin_reset(vp);
		return;
	}
	if (vp->resetting) {
		ZOC_WARN_RL("%s: device_status 0x%x written during a reset; ignored", vp_name(vp),
			    val);
		return;
	}
	if (val & ~DRIVER_STATUS_BITS)
		ZOC_WARN_RL("%s: driver wrote device_status 0x%x (device-owned bits ignored)",
			    vp_name(vp), val);
	st = val & DRIVER_STATUS_BITS;
	if (drv & ~st) {
		ZOC_WARN_RL("%s: driver cleared device_status bits (0x%x -> 0x%x) without a reset; "
			    "ignored",
			    vp_name(vp), drv, st);
		return;
	}
	if ((st & VIRTIO_STATUS_FEATURES_OK) && !(drv & VIRTIO_STATUS_FEATURES_OK))
		features_ok(vp, &st);
	if ((st & VIRTIO_STATUS_DRIVER_OK) && !(st & VIRTIO_STATUS_FEATURES_OK)) {
		ZOC_WARN_RL("%s: DRIVER_OK without FEATURES_OK", vp_name(vp));
		st &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
		atomic_store(&vp->status, (uint8_t)(st | (cur & ~DRIVER_STATUS_BITS)));
		set_needs_reset(vp);
		return;
	}
	/* Keep NEEDS_RESET, which another reactor may set meanwhile. */
	atomic_fetch_or(&vp->status, st);
	if ((st & VIRTIO_STATUS_DRIVER_OK) && !(drv & VIRTIO_STATUS_DRIVER_OK)) {
		ZOC_LOG_RL(ZOC_LOG_INFO, "%s: driver ready (features 0x%llx)", vp_name(vp),
			   (unsigned long long)vp->features);
		queues_try_start(vp);
	}
	if (st & VIRTIO_STATUS_FAILED)
		ZOC_WARN_RL("%s: the driver gave up on the device (FAILED)", vp_name(vp));
}

static struct vpci_queue *sel_queue(struct zoc_virtio_pci *vp)
{
	return vp->qsel < vp->nq ? &vp->q[vp->qsel] : NULL;
}

static uint16_t vector_checked(struct zoc_virtio_pci *vp, uint16_t v)
{
	return v < vp->nvec ? v : VIRTIO_MSI_NO_VECTOR;
}

struct field {
	uint8_t off, width;
};

static const struct field common_fields[] = {
	{VIRTIO_PCI_COMMON_DFSELECT, 4}, {VIRTIO_PCI_COMMON_DF, 4},
	{VIRTIO_PCI_COMMON_GFSELECT, 4}, {VIRTIO_PCI_COMMON_GF, 4},
	{VIRTIO_PCI_COMMON_MSIX, 2},     {VIRTIO_PCI_COMMON_NUMQ, 2},
	{VIRTIO_PCI_COMMON_STATUS, 1},   {VIRTIO_PCI_COMMON_CFGGENERATION, 1},
	{VIRTIO_PCI_COMMON_Q_SELECT, 2}, {VIRTIO_PCI_COMMON_Q_SIZE, 2},
	{VIRTIO_PCI_COMMON_Q_MSIX, 2},   {VIRTIO_PCI_COMMON_Q_ENABLE, 2},
	{VIRTIO_PCI_COMMON_Q_NOFF, 2},   {VIRTIO_PCI_COMMON_Q_DESCLO, 8},
	{VIRTIO_PCI_COMMON_Q_AVAILLO, 8}, {VIRTIO_PCI_COMMON_Q_USEDLO, 8},
	{VIRTIO_PCI_COMMON_Q_NDATA, 2},  {VIRTIO_PCI_COMMON_Q_RESET, 2},
};

/* The field an access fits: exactly, or a dword half / the whole of a
 * 64-bit field. NULL if none. */
static const struct field *common_field(uint64_t off, uint32_t len)
{
	for (size_t i = 0; i < ZOC_ARRAY_SIZE(common_fields); i++) {
		const struct field *fd = &common_fields[i];

		if (off < fd->off || off >= fd->off + (uint64_t)fd->width)
			continue;
		if (fd->width == 8)
			return (len == 8 && off == fd->off) || (len == 4 && (off & 3) == 0) ? fd
											   : NULL;
		return off == fd->off && len == fd->width ? fd : NULL;
	}
	return NULL;
}

static uint64_t *queue_addr(struct vpci_queue *q, uint8_t field_off)
{
	switch (field_off) {
	case VIRTIO_PCI_COMMON_Q_DESCLO:
		return &q->desc;
	case VIRTIO_PCI_COMMON_Q_AVAILLO:
		return &q->driver;
	default:
		return &q->device;
	}
}

static int common_read(struct zoc_virtio_pci *vp, uint64_t off, uint8_t *buf, uint32_t len)
{
	const struct field *fd = common_field(off, len);
	struct vpci_queue *q = sel_queue(vp);
	uint64_t v = 0;

	if (!fd) {
		ZOC_WARN_RL("%s: common config read of %u bytes at 0x%llx fits no register",
			    vp_name(vp), len, (unsigned long long)off);
		return -EINVAL;
	}
	switch (fd->off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		v = vp->dfselect;
		break;
	case VIRTIO_PCI_COMMON_DF:
		v = vp->dfselect < 2 ? (uint32_t)(vp->offer >> (32 * vp->dfselect)) : 0;
		break;
	case VIRTIO_PCI_COMMON_GFSELECT:
		v = vp->gfselect;
		break;
	case VIRTIO_PCI_COMMON_GF:
		v = vp->gfselect < 2 ? (uint32_t)(vp->driver_features >> (32 * vp->gfselect)) : 0;
		break;
	case VIRTIO_PCI_COMMON_MSIX:
		v = atomic_load(&vp->config_vector);
		break;
	case VIRTIO_PCI_COMMON_NUMQ:
		v = vp->nq;
		break;
	case VIRTIO_PCI_COMMON_STATUS:
		v = atomic_load(&vp->status);
		/* non-zero until a reset is over (a reset from 0 is instant) */
		break;
	case VIRTIO_PCI_COMMON_CFGGENERATION:
		v = atomic_load(&vp->generation);
		break;
	case VIRTIO_PCI_COMMON_Q_SELECT:
		v = vp->qsel;
		break;
	case VIRTIO_PCI_COMMON_Q_SIZE:
		v = q ? q->size : 0;
		break;
	case VIRTIO_PCI_COMMON_Q_MSIX:
		v = q ? atomic_load(&q->vector) : VIRTIO_MSI_NO_VECTOR;
		break;
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		v = q ? q->enabled : 0;
		break;
	case VIRTIO_PCI_COMMON_Q_NOFF:
	case VIRTIO_PCI_COMMON_Q_NDATA:
		v = q ? q->idx : 0;
		break;
	case VIRTIO_PCI_COMMON_Q_RESET:
		v = q ? q->reset_done : 0;
		break;
	default: /* ring addresses */
		v = q ? *queue_addr(q, fd->off) : 0;
		if (len == 4 && off != fd->off)
			v >>= 32;
		break;
	}
	memcpy(buf, &v, len);
	return 0;
}

static void queue_enable(struct zoc_virtio_pci *vp, struct vpci_queue *q, uint16_t val)
{
	if (val != 1) {
		ZOC_WARN_RL("%s: queue %u: queue_enable = %u ignored (only 1 is allowed)",
			    vp_name(vp), q->idx, val);
		return;
	}
	if (q->enabled || q->stopping) {
		ZOC_WARN_RL("%s: queue %u enabled twice; ignored", vp_name(vp), q->idx);
		return;
	}
	if (!(atomic_load(&vp->status) & VIRTIO_STATUS_FEATURES_OK)) {
		ZOC_WARN_RL("%s: queue %u enabled before FEATURES_OK: device needs reset",
			    vp_name(vp), q->idx);
		set_needs_reset(vp);
		return;
	}
	q->enabled = true;
	q->reset_done = false;
	q->base_valid = false;
	queue_try_start(vp, q);
}

static void queue_reset(struct zoc_virtio_pci *vp, struct vpci_queue *q, uint16_t val)
{
	if (val != 1 || !(vp->features & ZOC_BIT(VIRTIO_F_RING_RESET))) {
		ZOC_WARN_RL("%s: queue %u: queue_reset = %u refused (%s)", vp_name(vp), q->idx, val,
			    val != 1 ? "only 1 is allowed" : "VIRTIO_F_RING_RESET not negotiated");
		return;
	}
	if (q->stopping || q->reset_pending)
		return; /* already on its way */
	if (q->running) {
		q->reset_pending = true;
		q->enabled = false;
		queue_stop(vp, q);
		return;
	}
	queue_defaults(vp, q);
	q->reset_done = true;
}

static int common_write(struct zoc_virtio_pci *vp, uint64_t off, const uint8_t *buf,
			uint32_t len)
{
	const struct field *fd = common_field(off, len);
	struct vpci_queue *q = sel_queue(vp);
	uint64_t v = 0;

	if (!fd) {
		ZOC_WARN_RL("%s: common config write of %u bytes at 0x%llx fits no register",
			    vp_name(vp), len, (unsigned long long)off);
		return -EINVAL;
	}
	memcpy(&v, buf, len);
	if (vp->resetting && fd->off != VIRTIO_PCI_COMMON_STATUS) {
		ZOC_WARN_RL("%s: common config write at 0x%x during a reset; ignored", vp_name(vp),
			    fd->off);
		return 0;
	}
	switch (fd->off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		vp->dfselect = (uint32_t)v;
		return 0;
	case VIRTIO_PCI_COMMON_GFSELECT:
		vp->gfselect = (uint32_t)v;
		return 0;
	case VIRTIO_PCI_COMMON_GF: {
		uint64_t mask;

		if (atomic_load(&vp->status) & VIRTIO_STATUS_FEATURES_OK) {
			ZOC_WARN_RL("%s: driver_feature written after FEATURES_OK; ignored",
				    vp_name(vp));
			return 0;
		}
		if (vp->gfselect >= 2) {
			if (v)
				ZOC_WARN_RL("%s: driver features 0x%llx in word %u (none exist); "
					    "ignored",
					    vp_name(vp), (unsigned long long)v, vp->gfselect);
			return 0;
		}
		mask = 0xffffffffull << (32 * vp->gfselect);
		vp->driver_features = (vp->driver_features & ~mask) | (v << (32 * vp->gfselect));
		return 0;
	}
	case VIRTIO_PCI_COMMON_MSIX:
		atomic_store(&vp->config_vector, vector_checked(vp, (uint16_t)v));
		return 0;
	case VIRTIO_PCI_COMMON_STATUS:
		status_write(vp, (uint8_t)v);
		return 0;
	case VIRTIO_PCI_COMMON_Q_SELECT:
		vp->qsel = (uint16_t)v;
		return 0;
	case VIRTIO_PCI_COMMON_DF:
	case VIRTIO_PCI_COMMON_NUMQ:
	case VIRTIO_PCI_COMMON_CFGGENERATION:
	case VIRTIO_PCI_COMMON_Q_NOFF:
	case VIRTIO_PCI_COMMON_Q_NDATA:
		ZOC_WARN_RL("%s: write to read-only register 0x%x ignored", vp_name(vp), fd->off);
		return 0;
	default:
		break;
	}
	/* Queue registers. */
	if (!q) {
		ZOC_WARN_RL("%s: queue register 0x%x written with queue_select %u (of %u); "
			    "ignored",
			    vp_name(vp), fd->off, vp->qsel, vp->nq);
		return 0;
	}
	switch (fd->off) {
	case VIRTIO_PCI_COMMON_Q_MSIX:
		atomic_store(&q->vector, vector_checked(vp, (uint16_t)v));
		return 0;
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		queue_enable(vp, q, (uint16_t)v);
		return 0;
	case VIRTIO_PCI_COMMON_Q_RESET:
		queue_reset(vp, q, (uint16_t)v);
		return 0;
	default:
		break;
	}
	if (q->enabled || q->stopping) {
		ZOC_WARN_RL("%s: queue %u: register 0x%x written while the queue is enabled; "
			    "ignored",
			    vp_name(vp), q->idx, fd->off);
		return 0;
	}
	if (fd->off == VIRTIO_PCI_COMMON_Q_SIZE) {
		q->size = (uint16_t)v; /* checked when the queue starts */
		return 0;
	}
	{
		uint64_t *a = queue_addr(q, fd->off);

		if (len == 8)
			*a = v;
		else if (off == fd->off)
			*a = (*a & ~0xffffffffull) | v;
		else
			*a = (*a & 0xffffffffull) | (v << 32);
	}
	return 0;
}

/* ------------------------------------------------------------- BAR0 */

static int isr_read(struct zoc_virtio_pci *vp, uint64_t off, uint8_t *buf, uint32_t len)
{
	memset(buf, 0, len);
	if (off == 0) {
		/* Lower the line first: a notification racing with this read
		 * raises it again rather than being lost. */
		zoc_pci_intx_lower(vp->f);
		buf[0] = atomic_exchange(&vp->isr, 0);
	}
	return 0;
}

static int device_cfg_access(struct zoc_virtio_pci *vp, uint64_t off, uint8_t *buf, uint32_t len,
			     bool is_write)
{
	uint32_t size = vp->dev->config_size, n;
	int rc;

	if (!is_write)
		memset(buf, 0, len);
	if (off >= size)
		return 0; /* past the structure: reads 0, writes ignored */
	n = (uint32_t)ZOC_MIN((uint64_t)len, size - off);
	if (is_write) {
		rc = vp->dev->ops->set_config ? vp->dev->ops->set_config(vp->dev, buf, (uint32_t)off, n)
					      : -ENOTSUP;
		if (rc)
			ZOC_WARN_RL("%s: device config write of %u bytes at 0x%llx refused: %s",
				    vp_name(vp), n, (unsigned long long)off, strerror(-rc));
		return 0;
	}
	rc = vp->dev->ops->get_config(vp->dev, buf, (uint32_t)off, n);
	if (rc)
		memset(buf, 0, len);
	return 0;
}

static void notify_write(struct zoc_virtio_pci *vp, uint64_t off, uint32_t len)
{
	uint64_t qi = off / ZOC_VPCI_NOTIFY_MULT, one = 1;

	if (off % ZOC_VPCI_NOTIFY_MULT || (len != 2 && len != 4) || qi >= vp->nq) {
		ZOC_WARN_RL("%s: notification of %u bytes at 0x%llx matches no queue", vp_name(vp),
			    len, (unsigned long long)off);
		return;
	}
	vp->kicks++;
	if (vp->q[qi].kickfd >= 0 && write(vp->q[qi].kickfd, &one, sizeof(one)) < 0)
		ZOC_WARN_RL("%s: queue %llu: kick failed: %s", vp_name(vp), (unsigned long long)qi,
			    strerror(errno));
}

static int vpci_bar_access(struct zoc_pci_func *f, unsigned bar, uint64_t off, void *buf,
			   uint32_t len, bool is_write)
{
	struct zoc_virtio_pci *vp = zoc_pci_func_ctx(f);
	uint8_t *b = buf;

	if (bar != ZOC_VPCI_BAR) {
		if (!is_write)
			memset(buf, 0, len);
		return 0;
	}
	if (off < ZOC_VPCI_ISR_OFF) {
		if (off >= VIRTIO_PCI_COMMON_SIZE) {
			if (!is_write)
				memset(buf, 0, len);
			return 0;
		}
		return is_write ? common_write(vp, off, b, len) : common_read(vp, off, b, len);
	}
	if (off < ZOC_VPCI_DEVICE_OFF) {
		if (is_write)
			return 0;
		return isr_read(vp, off - ZOC_VPCI_ISR_OFF, b, len);
	}
	if (off < ZOC_VPCI_NOTIFY_OFF)
		return device_cfg_access(vp, off - ZOC_VPCI_DEVICE_OFF, b, len, is_write);
	if (is_write)
		notify_write(vp, off - ZOC_VPCI_NOTIFY_OFF, len);
	else
		memset(buf, 0, len);
	return 0;
}

/* ------------------------------------------- PCI cfg access window */

/* The window's BAR range if it is a valid one: 1, 2 or 4 bytes, aligned,
 * inside an implemented BAR. */
static bool pcicfg_window(struct zoc_virtio_pci *vp, uint8_t *bar, uint32_t *off, uint32_t *len)
{
	if (zoc_pci_cfg_read(vp->f, CAP_PCICFG + VCAP_BAR, bar, 1) ||
	    zoc_pci_cfg_read(vp->f, CAP_PCICFG + VCAP_OFFSET, off, 4) ||
	    zoc_pci_cfg_read(vp->f, CAP_PCICFG + VCAP_LENGTH, len, 4))
		return false;
	if (*len == 0)
		return false; /* never set up (a client reading all of config space) */
	if ((*len != 1 && *len != 2 && *len != 4) || *off % *len || *bar >= ZOC_PCI_NUM_BARS ||
	    zoc_range_bad(*off, *len, zoc_pci_bar_size(vp->f, *bar))) {
		ZOC_WARN_RL("%s: PCI cfg access window: bar %u offset 0x%x length %u is not valid",
			    vp_name(vp), *bar, *off, *len);
		return false;
	}
	return true;
}

static void vpci_cfg_written(struct zoc_pci_func *f, uint32_t off, uint32_t len)
{
	struct zoc_virtio_pci *vp = zoc_pci_func_ctx(f);
	uint8_t bar, data[4];
	uint32_t woff, wlen;
	int rc;

	if (!(off < CAP_PCICFG + VCAP_EXTRA + 4 && CAP_PCICFG + VCAP_EXTRA < off + len))
		return;
	if (!pcicfg_window(vp, &bar, &woff, &wlen))
		return;
	/* the bytes the driver wrote, not a window read */
	vp->in_window = true;
	rc = zoc_pci_cfg_read(f, CAP_PCICFG + VCAP_EXTRA, data, 4);
	vp->in_window = false;
	if (!rc)
		zoc_pci_bar_access(f, bar, woff, data, wlen, true);
}

static void vpci_cfg_read(struct zoc_pci_func *f, uint32_t off, uint32_t len)
{
	struct zoc_virtio_pci *vp = zoc_pci_func_ctx(f);
	uint8_t bar, data[4] = {0};
	uint32_t woff, wlen;

	if (vp->in_window ||
	    !(off < CAP_PCICFG + VCAP_EXTRA + 4 && CAP_PCICFG + VCAP_EXTRA < off + len))
		return;
	if (!pcicfg_window(vp, &bar, &woff, &wlen))
		return;
	if (zoc_pci_bar_access(f, bar, woff, data, wlen, false))
		memset(data, 0, sizeof(data));
	zoc_pci_cfg_store(f, CAP_PCICFG + VCAP_EXTRA, data, wlen);
}

/* ------------------------------------------------------- link ops */

static int vpci_bar_mmap_areas(struct zoc_pci_func *f, unsigned bar,
			       struct zoc_pci_mmap_area *areas, int max)
{
	struct zoc_virtio_pci *vp = zoc_pci_func_ctx(f);

	/* A reactor asleep in interrupt mode needs the kick: trap it then. */
	if (bar != ZOC_VPCI_BAR || max < 1 || vp->notify_fd < 0 || zoc_reactor_interrupt_mode())
		return 0;
	areas[0].offset = ZOC_VPCI_NOTIFY_OFF;
	areas[0].size = ZOC_VPCI_BAR_SIZE - ZOC_VPCI_NOTIFY_OFF;
	areas[0].fd = vp->notify_fd;
	areas[0].fd_offset = ZOC_VPCI_NOTIFY_OFF;
	return 1;
}

static void vpci_reset(struct zoc_pci_func *f, zoc_pci_done_fn done, void *arg)
{
	struct zoc_virtio_pci *vp = zoc_pci_func_ctx(f);

	add_waiter(vp, done, arg);
	if (!vp->resetting)
		begin_reset(vp);
}

static void vpci_quiesce(struct zoc_pci_func *f, zoc_pci_done_fn done, void *arg)
{
	struct zoc_virtio_pci *vp = zoc_pci_func_ctx(f);

	vp->quiesced = true;
	add_waiter(vp, done, arg);
	stop_all(vp);
}

static void vpci_resume(struct zoc_pci_func *f)
{
	struct zoc_virtio_pci *vp = zoc_pci_func_ctx(f);

	vp->quiesced = false;
	queues_resume(vp);
}

static void vpci_set_dma(struct zoc_pci_func *f, struct zoc_mem *mem)
{
	struct zoc_virtio_pci *vp = zoc_pci_func_ctx(f);

	for (uint16_t i = 0; i < vp->nq; i++)
		if (vp->q[i].running || vp->q[i].stopping)
			ZOC_ERR("%s: DMA space changed while queue %u runs", vp_name(vp), i);
	if (mem)
		zoc_mem_get(mem);
	if (vp->mem)
		zoc_mem_put(vp->mem);
	vp->mem = mem;
}

static const struct zoc_pci_ops vpci_ops = {
	.bar_access = vpci_bar_access,
	.cfg_written = vpci_cfg_written,
	.bar_mmap_areas = vpci_bar_mmap_areas,
	.reset = vpci_reset,
	.quiesce = vpci_quiesce,
	.resume = vpci_resume,
	.set_dma = vpci_set_dma,
	.cfg_read = vpci_cfg_read,
};

/* -------------------------------------------------- create, destroy */

static void put_cap(uint8_t *b, uint8_t type, uint8_t len, uint32_t off, uint32_t length)
{
	memset(b, 0, len);
	b[0] = PCI_CAP_ID_VNDR;
	b[VCAP_LEN] = len;
	b[VCAP_TYPE] = type;
	b[VCAP_BAR] = ZOC_VPCI_BAR;
	memcpy(&b[VCAP_OFFSET], &off, 4);
	memcpy(&b[VCAP_LENGTH], &length, 4);
}

static uint32_t class_of(uint16_t type)
{
	switch (type) {
	case 1:
		return 0x020000; /* network controller, Ethernet */
	case 2:
		return 0x010000; /* mass storage, SCSI (as other virtio-blk functions) */
	default:
		return 0xff0000; /* unassigned class */
	}
}

struct zoc_virtio_pci *zoc_virtio_pci_create(struct zoc_virtio_dev *dev)
{
	uint8_t common[CAP_LEN], notify[CAP_LEN_EXT], isr[CAP_LEN], devcfg[CAP_LEN];
	uint8_t pcicfg[CAP_LEN_EXT], pcicfg_w[CAP_LEN_EXT] = {0};
	struct zoc_pci_cap caps[5];
	struct zoc_pci_desc d = {0};
	struct zoc_virtio_pci *vp;
	uint32_t mult = ZOC_VPCI_NOTIFY_MULT, pba, msix_size;
	uint16_t nq;
	uint64_t offer;
	int n = 0;

	if (!dev || !dev->ops || !dev->ops->get_features || !dev->ops->set_features ||
	    !dev->ops->get_config || !dev->ops->queue_start || !dev->ops->queue_stop ||
	    dev->max_queues == 0 || dev->max_queues > ZOC_VPCI_MAX_QUEUES ||
	    dev->max_queue_size == 0 || dev->max_queue_size > ZOC_VIRTQ_MAX_SIZE ||
	    dev->config_size > ZOC_VPCI_NOTIFY_OFF - ZOC_VPCI_DEVICE_OFF || dev->device_id == 0 ||
	    dev->device_id > 0x3f) {
		errno = EINVAL;
		return NULL;
	}
	offer = dev->ops->get_features(dev) & (DEVICE_BITS | TRANSPORT_BITS);
	if (!(offer & ZOC_BIT(VIRTIO_F_VERSION_1))) {
		errno = EINVAL;
		return NULL;
	}
	nq = dev->max_queues;
	vp = calloc(1, sizeof(*vp) + sizeof(struct vpci_queue) * nq);
	if (!vp)
		return NULL;
	for (uint16_t i = 0; i < nq; i++)
		vp->q[i].kickfd = -1;
	vp->dev = dev;
	vp->nq = nq;
	vp->nvec = (uint16_t)(nq + 1);
	/* The transport resets queues itself (the device only stops them). */
	vp->transport_only = ZOC_BIT(VIRTIO_F_RING_RESET) & ~offer;
	vp->offer = offer | ZOC_BIT(VIRTIO_F_RING_RESET);
	vp->notify_fd = -1;
	atomic_init(&vp->status, 0);
	atomic_init(&vp->isr, 0);
	atomic_init(&vp->generation, 0);
	atomic_init(&vp->config_vector, VIRTIO_MSI_NO_VECTOR);
	for (uint16_t i = 0; i < nq; i++) {
		struct vpci_queue *q = &vp->q[i];

		q->vp = vp;
		q->idx = i;
		q->kickfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (q->kickfd < 0)
			goto fail;
		atomic_init(&q->vector, VIRTIO_MSI_NO_VECTOR);
		queue_defaults(vp, q);
	}
	vp->notify_fd = memfd_create("zoc-virtio-notify", MFD_CLOEXEC);
	if (vp->notify_fd < 0 || ftruncate(vp->notify_fd, ZOC_VPCI_BAR_SIZE))
		goto fail;

	put_cap(common, VIRTIO_PCI_CAP_COMMON_CFG, CAP_LEN, ZOC_VPCI_COMMON_OFF,
		VIRTIO_PCI_COMMON_SIZE);
	caps[n++] = (struct zoc_pci_cap){CAP_COMMON, CAP_LEN, common, NULL};
	put_cap(notify, VIRTIO_PCI_CAP_NOTIFY_CFG, CAP_LEN_EXT, ZOC_VPCI_NOTIFY_OFF,
		(uint32_t)nq * ZOC_VPCI_NOTIFY_MULT);
	memcpy(&notify[VCAP_EXTRA], &mult, 4);
	caps[n++] = (struct zoc_pci_cap){CAP_NOTIFY, CAP_LEN_EXT, notify, NULL};
	put_cap(isr, VIRTIO_PCI_CAP_ISR_CFG, CAP_LEN, ZOC_VPCI_ISR_OFF, 1);
	caps[n++] = (struct zoc_pci_cap){CAP_ISR, CAP_LEN, isr, NULL};
	if (dev->config_size) {
		put_cap(devcfg, VIRTIO_PCI_CAP_DEVICE_CFG, CAP_LEN, ZOC_VPCI_DEVICE_OFF,
			dev->config_size);
		caps[n++] = (struct zoc_pci_cap){CAP_DEVICE, CAP_LEN, devcfg, NULL};
	}
	/* The window: bar, offset, length and data are the driver's. */
	put_cap(pcicfg, VIRTIO_PCI_CAP_PCI_CFG, CAP_LEN_EXT, 0, 0);
	pcicfg[VCAP_BAR] = 0;
	pcicfg_w[VCAP_BAR] = 0xff;
	memset(&pcicfg_w[VCAP_OFFSET], 0xff, 12);
	caps[n++] = (struct zoc_pci_cap){CAP_PCICFG, CAP_LEN_EXT, pcicfg, pcicfg_w};

	pba = MSIX_PBA_OFF(vp->nvec);
	msix_size = 4096;
	while (msix_size < pba + ((vp->nvec + 63u) / 64u) * 8u)
		msix_size <<= 1;
	d.vendor_id = VIRTIO_VENDOR_ID;
	d.device_id = (uint16_t)(VIRTIO_DEVICE_ID_BASE + dev->device_id);
	d.subsys_vendor_id = VIRTIO_VENDOR_ID;
	d.subsys_id = d.device_id;
	d.revision = 1;
	d.class_code = class_of(dev->device_id);
	d.bars[ZOC_VPCI_BAR].size = ZOC_VPCI_BAR_SIZE;
	d.bars[ZOC_VPCI_BAR].flags = ZOC_PCI_BAR_MEM64;
	d.bars[ZOC_VPCI_MSIX_BAR].size = msix_size;
	d.msix_vectors = vp->nvec;
	d.msix_bar = ZOC_VPCI_MSIX_BAR;
	d.msix_table_offset = 0;
	d.msix_pba_offset = pba;
	d.msi = false;
	d.pcie = false; /* its 60 bytes are where the virtio capabilities go */
	d.intx_pin = 1;
	d.ops = &vpci_ops;
	d.caps = caps;
	d.ncaps = (uint8_t)n;
	vp->f = zoc_pci_func_create(&d, vp);
	if (!vp->f)
		goto fail;
	dev->config_changed = dev_config_changed;
	dev->link_arg = vp;
	return vp;

fail: {
	int e = errno ? errno : ENOMEM;

	for (uint16_t i = 0; i < nq; i++)
		if (vp->q[i].kickfd >= 0)
			close(vp->q[i].kickfd);
	if (vp->notify_fd >= 0)
		close(vp->notify_fd);
	free(vp);
	errno = e;
	return NULL;
}
}

void zoc_virtio_pci_destroy(struct zoc_virtio_pci *vp)
{
	if (!vp)
		return;
	for (uint16_t i = 0; i < vp->nq; i++)
		if (vp->q[i].running || vp->q[i].stopping)
			ZOC_ERR("%s: transport destroyed with queue %u %s", vp_name(vp), i,
				vp->q[i].running ? "running" : "stopping");
	if (vp->stops || vp->waiters)
		ZOC_ERR("%s: transport destroyed with a reset or quiesce in progress",
			vp_name(vp));
	if (vp->dev->link_arg == vp) {
		vp->dev->config_changed = NULL;
		vp->dev->link_arg = NULL;
	}
	zoc_pci_func_destroy(vp->f);
	for (uint16_t i = 0; i < vp->nq; i++)
		if (vp->q[i].kickfd >= 0)
			close(vp->q[i].kickfd);
	if (vp->notify_fd >= 0)
		close(vp->notify_fd);
	if (vp->mem)
		zoc_mem_put(vp->mem);
	while (vp->waiters) {
		struct vpci_waiter *w = vp->waiters;

		vp->waiters = w->next;
		free(w);
	}
	free(vp);
}

struct zoc_pci_func *zoc_virtio_pci_func(struct zoc_virtio_pci *vp)
{
	return vp->f;
}

json_t *zoc_virtio_pci_info(struct zoc_virtio_pci *vp)
{
	json_t *qs = json_array();

	for (uint16_t i = 0; i < vp->nq; i++) {
		struct vpci_queue *q = &vp->q[i];

		if (!q->enabled && !q->running)
			continue;
		json_array_append_new(qs, json_pack("{s:i, s:i, s:b, s:b, s:i}", "index", i, "size",
						    q->size, "enabled", q->enabled, "running",
						    q->running, "msix_vector",
						    (int)atomic_load(&q->vector)));
	}
	return json_pack("{s:i, s:I, s:I, s:i, s:I, s:I, s:o, s:o}", "status",
			 (int)atomic_load(&vp->status), "features_offered",
			 (json_int_t)vp->offer, "features", (json_int_t)vp->features,
			 "config_generation", (int)atomic_load(&vp->generation), "notifications",
			 (json_int_t)vp->kicks, "needs_reset_events",
			 (json_int_t)__atomic_load_n(&vp->needs_reset_events, __ATOMIC_RELAXED),
			 "queues", qs, "pci", zoc_pci_func_info(vp->f));
}
