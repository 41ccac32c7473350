/* SPDX-License-Identifier: MIT */
/*
 * vbus.c - the zoc-vbus link (see vbus.h and docs/vbus.md).
 */
#include "link/vbus.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../kernel/vbus/zoc_vbus_uapi.h"
#include "core/log.h"
#include "core/reactor.h"
#include "link/dma.h"
#include "pci/pci.h"

struct zoc_vbus_link {
	struct zoc_pci_func *f;
	const struct zoc_pci_ops *ops;
	char dev[64];
	int fd;
	struct zoc_vbus_create info;
	volatile uint8_t *bar[ZOC_VBUS_NUM_BARS];
	uint64_t bar_size[ZOC_VBUS_NUM_BARS];
	/* last value seen in (or published to) each watched/published dword */
	uint32_t *shadow[ZOC_VBUS_NUM_BARS];
	struct zoc_vbus_range watch[ZOC_VBUS_LINK_MAX_RANGES];
	unsigned nwatch;
	struct zoc_vbus_range publish[ZOC_VBUS_LINK_MAX_RANGES];
	unsigned npublish;
	void *pool;
	uint64_t dma_size;
	struct zoc_mem *mem;
	uint32_t nvec;
	bool msix_was_on;
	bool resetting; /* an FLR: the model is being reset */
	struct zoc_poller *poller;
	bool fd_added;
	uint64_t cfg_writes, bar_writes, overflows, early_cfg_writes, resets;
	/* destroy */
	void (*done)(void *arg);
	void *done_arg;
	pthread_t remover;
	int remove_rc;
};

static uint32_t bar_rd(struct zoc_vbus_link *l, unsigned b, uint32_t off)
{
	return *(volatile uint32_t *)(l->bar[b] + off);
}

static void bar_wr(struct zoc_vbus_link *l, unsigned b, uint32_t off, uint32_t v)
{
	*(volatile uint32_t *)(l->bar[b] + off) = v;
}

/* The model's MSI-X table is not where the host writes (that is the BAR
 * memory, which the module reads): keep the model's vectors unmasked so
 * its raises reach the eventfds, and let the module apply the host's masks. */
static void msix_unmask_model(struct zoc_vbus_link *l)
{
	const struct zoc_pci_desc *d = zoc_pci_func_desc(l->f);
	uint32_t zero = 0;

	for (uint32_t v = 0; v < l->nvec; v++)
		zoc_pci_bar_access(l->f, d->msix_bar, d->msix_table_offset + 16ull * v + 12, &zero,
				   4, true);
}

static void drain_events(struct zoc_vbus_link *l, int max_rounds);

/* Watched range i: each dword the host changed becomes a BAR write. Stores
 * become visible in the host's program order (x86, uncached), so once a
 * store in range i is seen, every store the host made before it is visible
 * too: the config writes (event ring) and the earlier ranges are taken in
 * first, or a CC.EN could reach the model before the AQA/ASQ/ACQ stores that
 * preceded it (the poller's pass may have read those before they landed). */
static int scan_watched(struct zoc_vbus_link *l, unsigned i, bool *drained)
{
	struct zoc_vbus_range *r = &l->watch[i];
	int work = 0;

	for (uint32_t o = r->offset; o < r->offset + r->len; o += 4) {
		uint32_t v = bar_rd(l, r->bar, o);

		if (r->consume) {
			if (v == ZOC_VBUS_LINK_IDLE)
				continue;
			/* a store between the read and the swap is not lost */
			v = __atomic_exchange_n((volatile uint32_t *)(l->bar[r->bar] + o),
						ZOC_VBUS_LINK_IDLE, __ATOMIC_SEQ_CST);
			if (v == ZOC_VBUS_LINK_IDLE)
				continue;
		} else {
			if (v == l->shadow[r->bar][o / 4])
				continue;
			l->shadow[r->bar][o / 4] = v;
		}
		if (!*drained) {
			/* e.g. MSI-X enable before the doorbell whose
			 * completion needs it (else its interrupt is dropped) */
			drain_events(l, 64);
			*drained = true;
		}
		for (unsigned j = 0; j < i; j++)
			work += scan_watched(l, j, drained);
		zoc_pci_bar_access(l->f, r->bar, o, &v, 4, true);
		l->bar_writes++;
		work++;
	}
	return work;
}

/* One pass over the watched and published ranges. Returns work done. */
static int sync_bars(struct zoc_vbus_link *l)
{
	bool drained = false;
	int work = 0;

	for (unsigned i = 0; i < l->nwatch; i++)
		work += scan_watched(l, i, &drained);
	for (unsigned i = 0; i < l->npublish; i++) {
		struct zoc_vbus_range *r = &l->publish[i];

		for (uint32_t o = r->offset; o < r->offset + r->len; o += 4) {
			uint32_t v;

			if (zoc_pci_bar_access(l->f, r->bar, o, &v, 4, false))
				continue;
			if (v == l->shadow[r->bar][o / 4])
				continue;
			l->shadow[r->bar][o / 4] = v;
			bar_wr(l, r->bar, o, v);
			work++;
		}
	}
	return work;
}

static int link_poll(void *arg)
{
	return sync_bars(arg);
}

/* Power-on state of the ranges: watched dwords 0 (consumed ones idle), the
 * model's values published. At creation and after a reset. */
static void bars_init(struct zoc_vbus_link *l)
{
	for (unsigned i = 0; i < l->nwatch; i++) {
		struct zoc_vbus_range *r = &l->watch[i];
		uint32_t v = r->consume ? ZOC_VBUS_LINK_IDLE : 0;

		for (uint32_t o = r->offset; o < r->offset + r->len; o += 4) {
			bar_wr(l, r->bar, o, v);
			l->shadow[r->bar][o / 4] = v;
		}
	}
	for (unsigned i = 0; i < l->npublish; i++) {
		struct zoc_vbus_range *r = &l->publish[i];

		for (uint32_t o = r->offset; o < r->offset + r->len; o += 4) {
			uint32_t v = 0;

			zoc_pci_bar_access(l->f, r->bar, o, &v, 4, false);
			bar_wr(l, r->bar, o, v);
			l->shadow[r->bar][o / 4] = v;
		}
	}
}

/* Reactor 0: the model is back at power-on after the host's FLR. */
static void flr_done(void *arg)
{
	struct zoc_vbus_link *l = arg;

	l->resetting = false;
	l->msix_was_on = false;
	if (l->poller) /* else being destroyed: the BARs are not ours to touch */
		bars_init(l);
	l->resets++;
	if (ioctl(l->fd, ZOC_VBUS_RESET_DONE) < 0 && l->poller)
		ZOC_WARN_RL("%s: function reset done: %s", l->dev, strerror(errno));
	else
		ZOC_INFO("%s: function level reset by the host", l->dev);
}

static void flr_start(struct zoc_vbus_link *l)
{
	if (l->resetting)
		return; /* the module holds the host until the first is answered */
	l->resetting = true;
	zoc_pci_func_reset(l->f, flr_done, l);
}

static void apply_cfg_write(struct zoc_vbus_link *l, const struct zoc_vbus_event *e)
{
	uint32_t v = e->value;
	bool on;

	if (e->len < 1 || e->len > 4 || e->offset >= ZOC_PCI_CFG_SIZE ||
	    (e->offset & 3) + e->len > 4) {
		ZOC_WARN_RL("%s: bad config-write event (offset %u, len %u)", l->dev, e->offset,
			    e->len);
		return;
	}
	zoc_pci_cfg_write(l->f, e->offset, &v, e->len);
	l->cfg_writes++;
	on = zoc_pci_msix_enabled(l->f);
	if (on && !l->msix_was_on)
		msix_unmask_model(l);
	l->msix_was_on = on;
}

/* Reads and applies up to max_rounds batches of the module's events. */
static void drain_events(struct zoc_vbus_link *l, int max_rounds)
{
	struct zoc_vbus_event ev[16];
	ssize_t n;

	for (int rounds = 0; rounds < max_rounds; rounds++) {
		n = read(l->fd, ev, sizeof(ev));
		if (n <= 0)
			return;
		for (size_t i = 0; i < (size_t)n / sizeof(ev[0]); i++) {
			switch (ev[i].type) {
			case ZOC_VBUS_EV_CFG_WRITE:
				apply_cfg_write(l, &ev[i]);
				if (max_rounds > 8)
					l->early_cfg_writes++;
				break;
			case ZOC_VBUS_EV_RESET:
				flr_start(l);
				break;
			case ZOC_VBUS_EV_OVERFLOW:
				/* The module's image is the truth: it applied every write. */
				l->overflows++;
				ZOC_WARN_RL("%s: %u config writes lost (event ring full)", l->dev,
					    ev[i].value);
				break;
			default:
				break;
			}
		}
		if ((size_t)n < sizeof(ev))
			return; /* the ring is empty */
	}
}

static void link_on_fd(void *arg, uint32_t events)
{
	(void)events;
	drain_events(arg, 8);
}

static void link_free(struct zoc_vbus_link *l)
{
	for (unsigned b = 0; b < ZOC_VBUS_NUM_BARS; b++) {
		if (l->bar[b])
			munmap((void *)l->bar[b], l->bar_size[b]);
		free(l->shadow[b]);
	}
	if (l->mem)
		zoc_mem_put(l->mem);
	if (l->pool)
		munmap(l->pool, l->dma_size);
	if (l->fd >= 0)
		close(l->fd);
	free(l);
}

static bool range_ok(const struct zoc_vbus_range *r, const uint64_t *bar_size)
{
	return r->bar < ZOC_VBUS_NUM_BARS && bar_size[r->bar] && !(r->offset & 3) &&
	       !(r->len & 3) && r->len && (uint64_t)r->offset + r->len <= bar_size[r->bar];
}

#define FAIL(e, ...)                                      \
	do {                                              \
		snprintf(err, errlen, __VA_ARGS__);       \
		rc = (e);                                 \
		goto fail;                                \
	} while (0)

struct zoc_vbus_link *zoc_vbus_link_create(struct zoc_pci_func *f,
					   const struct zoc_vbus_link_opts *opts, char *err,
					   size_t errlen)
{
	static uint8_t cfg[ZOC_VBUS_CFG_SIZE], wmask[ZOC_VBUS_CFG_SIZE], w1c[ZOC_VBUS_CFG_SIZE];
	const struct zoc_pci_desc *d = zoc_pci_func_desc(f);
	struct zoc_vbus_link *l;
	int fds[ZOC_VBUS_MSIX_MAX];
	uint32_t v;
	int rc = 0;

	l = calloc(1, sizeof(*l));
	if (!l) {
		snprintf(err, errlen, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	l->f = f;
	l->ops = d->ops;
	l->fd = -1;
	snprintf(l->dev, sizeof(l->dev), "%s", opts->dev ? opts->dev : "/dev/zoc-vbus");
	l->dma_size = opts->dma_size ? opts->dma_size : 64ull << 20;
	l->nvec = zoc_pci_irq_count(f, ZOC_PCI_IRQ_MSIX);
	for (unsigned b = 0; b < ZOC_VBUS_NUM_BARS; b++)
		l->bar_size[b] = zoc_pci_bar_size(f, b);
	for (unsigned b = 0; b < ZOC_VBUS_NUM_BARS; b++)
		if (b > 0 && (d->bars[b - 1].flags & ZOC_PCI_BAR_MEM64) && d->bars[b - 1].size)
			l->bar_size[b] = 0; /* upper half of a 64-bit BAR */
	if (opts->nwatch > ZOC_VBUS_LINK_MAX_RANGES || opts->npublish > ZOC_VBUS_LINK_MAX_RANGES)
		FAIL(-EINVAL, "too many BAR ranges");
	for (unsigned i = 0; i < opts->nwatch; i++)
		if (!range_ok(&opts->watch[i], l->bar_size))
			FAIL(-EINVAL, "bad watched BAR range %u", i);
	for (unsigned i = 0; i < opts->npublish; i++)
		if (!range_ok(&opts->publish[i], l->bar_size))
			FAIL(-EINVAL, "bad published BAR range %u", i);
	memcpy(l->watch, opts->watch, sizeof(l->watch));
	memcpy(l->publish, opts->publish, sizeof(l->publish));
	l->nwatch = opts->nwatch;
	l->npublish = opts->npublish;

	l->fd = open(l->dev, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (l->fd < 0)
		FAIL(-errno, "cannot open %s: %s (is zoc-vbus.ko loaded? see docs/vbus.md)", l->dev,
		     strerror(errno));

	for (uint32_t o = 0; o < ZOC_VBUS_CFG_SIZE; o += 4)
		zoc_pci_cfg_read(f, o, cfg + o, 4);
	zoc_pci_cfg_masks(f, wmask, w1c);
	memset(&l->info, 0, sizeof(l->info));
	l->info.cfg = (uintptr_t)cfg;
	l->info.wmask = (uintptr_t)wmask;
	l->info.w1cmask = (uintptr_t)w1c;
	for (unsigned b = 0; b < ZOC_VBUS_NUM_BARS; b++)
		l->info.bar_size[b] = l->bar_size[b];
	l->info.dma_size = l->dma_size;
	l->info.msix_vectors = l->nvec;
	if (ioctl(l->fd, ZOC_VBUS_CREATE, &l->info) < 0)
		FAIL(-errno, "%s: cannot create the function: %s (window too small, or the "
			     "function's config space is one the module refuses; see dmesg)",
		     l->dev, strerror(errno));

	for (unsigned b = 0; b < ZOC_VBUS_NUM_BARS; b++) {
		void *p;

		if (!l->bar_size[b])
			continue;
		p = mmap(NULL, l->bar_size[b], PROT_READ | PROT_WRITE, MAP_SHARED, l->fd,
			 (off_t)ZOC_VBUS_MMAP_BAR(b));
		if (p == MAP_FAILED)
			FAIL(-errno, "cannot map BAR %u: %s", b, strerror(errno));
		l->bar[b] = p;
		l->shadow[b] = calloc(l->bar_size[b] / 4, sizeof(uint32_t));
		if (!l->shadow[b])
			FAIL(-ENOMEM, "out of memory");
	}
	l->pool = mmap(NULL, l->dma_size, PROT_READ | PROT_WRITE, MAP_SHARED, l->fd,
		       (off_t)ZOC_VBUS_MMAP_DMA);
	if (l->pool == MAP_FAILED) {
		l->pool = NULL;
		FAIL(-errno, "cannot map the DMA pool: %s", strerror(errno));
	}
	l->mem = zoc_mem_create();
	if (!l->mem)
		FAIL(-ENOMEM, "out of memory");
	rc = zoc_mem_add_region_hva(l->mem, ZOC_VBUS_DMA_BASE, l->dma_size, ZOC_VBUS_DMA_BASE,
				    l->pool, true);
	if (rc)
		FAIL(rc, "cannot add the DMA pool to the DMA space: %s", strerror(-rc));
	if (l->ops && l->ops->set_dma)
		l->ops->set_dma(f, l->mem);

	for (v = 0; v < l->nvec; v++) {
		struct zoc_vbus_irq irq = {.vector = v};

		fds[v] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		irq.fd = fds[v];
		if (fds[v] < 0 || ioctl(l->fd, ZOC_VBUS_SET_IRQ, &irq) < 0) {
			rc = -errno;
			for (uint32_t k = 0; k <= v; k++)
				if (fds[k] >= 0)
					close(fds[k]);
			FAIL(rc, "cannot set up MSI-X vector %u: %s", v, strerror(-rc));
		}
	}
	if (l->nvec) {
		rc = zoc_pci_irq_set_fds(f, ZOC_PCI_IRQ_MSIX, 0, l->nvec, fds);
		if (rc)
			FAIL(rc, "cannot give the model its eventfds: %s", strerror(-rc));
	}

	/* Registers as the model has them before the driver looks. */
	bars_init(l);
	if (zoc_reactor_add_fd(zoc_reactor_get(0), l->fd, EPOLLIN, link_on_fd, l))
		FAIL(-ENOMEM, "cannot watch %s", l->dev);
	l->fd_added = true;
	l->poller = zoc_poller_register(zoc_reactor_get(0), &(struct zoc_poller_ops){link_poll},
					l, zoc_reactor_interrupt_mode() ? 100 : 0, "vbus");
	if (!l->poller)
		FAIL(-ENOMEM, "cannot register the BAR poller");
	if (ioctl(l->fd, ZOC_VBUS_START) < 0)
		FAIL(-errno, "cannot start the function: %s", strerror(errno));
	ZOC_INFO("%s: function %04x:%02x:%02x.%x on the Virtual Bus, %u MSI-X vectors, %llu MiB "
		 "DMA pool",
		 l->dev, l->info.domain, l->info.bus, l->info.devfn >> 3, l->info.devfn & 7,
		 l->nvec, (unsigned long long)(l->dma_size >> 20));
	return l;

fail:
	if (l->poller)
		zoc_poller_unregister(l->poller);
	if (l->fd_added)
		zoc_reactor_del_fd(zoc_reactor_get(0), l->fd);
	if (l->nvec)
		zoc_pci_irq_set_fds(f, ZOC_PCI_IRQ_MSIX, 0, 0, NULL);
	if (l->mem && l->ops && l->ops->set_dma)
		l->ops->set_dma(f, NULL);
	link_free(l);
	errno = -rc;
	return NULL;
}

/* ------------------------------------------------------------------ destroy */

static void destroy_finish(void *arg)
{
	struct zoc_vbus_link *l = arg;
	void (*done)(void *) = l->done;
	void *darg = l->done_arg;

	link_free(l);
	if (done)
		done(darg);
}

static void destroy_quiesced(void *arg)
{
	struct zoc_vbus_link *l = arg;

	if (l->ops && l->ops->set_dma)
		l->ops->set_dma(l->f, NULL);
	if (l->ops && l->ops->quiesce && l->ops->resume)
		l->ops->resume(l->f);
	/* eventfds closed after a grace period by the model */
	if (l->nvec)
		zoc_pci_irq_set_fds(l->f, ZOC_PCI_IRQ_MSIX, 0, 0, NULL);
	if (zoc_reactors_barrier(destroy_finish, l))
		destroy_finish(l);
}

static void destroy_reset_done(void *arg)
{
	struct zoc_vbus_link *l = arg;

	if (l->ops && l->ops->quiesce)
		l->ops->quiesce(l->f, destroy_quiesced, l);
	else
		destroy_quiesced(l);
}

/* Reactor 0: the function is off the bus, its driver gone. */
static void destroy_removed(void *arg)
{
	struct zoc_vbus_link *l = arg;

	pthread_join(l->remover, NULL);
	if (l->remove_rc)
		ZOC_WARN("%s: removing the function: %s", l->dev, strerror(-l->remove_rc));
	zoc_poller_unregister(l->poller);
	l->poller = NULL;
	zoc_reactor_del_fd(zoc_reactor_get(0), l->fd);
	l->fd_added = false;
	zoc_pci_func_reset(l->f, destroy_reset_done, l);
}

/* The host's driver may wait for the device while it unbinds (shutdown):
 * the ioctl runs on its own thread while reactor 0 keeps serving. */
static void *remover(void *arg)
{
	struct zoc_vbus_link *l = arg;

	/* Off the bus only: the mappings stay until link_free() (REMOVE would
	 * revoke them under the poller's feet). */
	l->remove_rc = ioctl(l->fd, ZOC_VBUS_UNPLUG) < 0 ? -errno : 0;
	while (zoc_reactor_send_msg(zoc_reactor_get(0), destroy_removed, l))
		usleep(1000);
	return NULL;
}

void zoc_vbus_link_destroy(struct zoc_vbus_link *l, void (*done)(void *arg), void *arg)
{
	if (!l) {
		if (done)
			done(arg);
		return;
	}
	l->done = done;
	l->done_arg = arg;
	if (pthread_create(&l->remover, NULL, remover, l)) {
		/* No thread: unplug inline (the driver's shutdown may time out). */
		l->remove_rc = ioctl(l->fd, ZOC_VBUS_UNPLUG) < 0 ? -errno : 0;
		l->remover = pthread_self();
		zoc_poller_unregister(l->poller);
		l->poller = NULL;
		zoc_reactor_del_fd(zoc_reactor_get(0), l->fd);
		l->fd_added = false;
		zoc_pci_func_reset(l->f, destroy_reset_done, l);
	}
}

json_t *zoc_vbus_link_info(const struct zoc_vbus_link *l)
{
	char addr[32];

	snprintf(addr, sizeof(addr), "%04x:%02x:%02x.%x", l->info.domain, l->info.bus,
		 l->info.devfn >> 3, l->info.devfn & 7);
	return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "dev", l->dev, "pci_address",
			 addr, "dma_size", (json_int_t)l->dma_size, "config_writes",
			 (json_int_t)l->cfg_writes, "bar_writes", (json_int_t)l->bar_writes,
			 "event_overflows", (json_int_t)l->overflows, "config_writes_before_bar",
			 (json_int_t)l->early_cfg_writes, "function_resets", (json_int_t)l->resets);
}
