/* SPDX-License-Identifier: MIT */
/*
 * vbus.h - the zoc-vbus link: serves a PCI function (src/pci/pci.h) to the
 * bare-metal host's own drivers through the Virtual Bus kernel module
 * (kernel/vbus/, /dev/zoc-vbus; docs/vbus.md).
 *
 * The module serves config space from an image of the function's (with the
 * model's write masks) and forwards the host's config writes, which the link
 * applies to the model (zoc_pci_cfg_write). Nothing traps the host's BAR
 * accesses: BARs are memory in the boot-reserved window, which the link maps
 * uncached and keeps in step with the model on reactor 0's poller:
 *  - watched ranges (registers and doorbells the driver writes): a dword that
 *    changed since the link last saw or published it becomes a BAR write to
 *    the model (zoc_pci_bar_access), low dword first;
 *  - published ranges (registers the device updates): the model's value is
 *    read and stored in the BAR when it changed.
 *  - consumed watched ranges (write-only registers where every store is an
 *    event: doorbells): the link takes each value out with an atomic
 *    exchange that leaves ZOC_VBUS_LINK_IDLE behind, so a store of the same
 *    value as the last one counts too (a driver's first doorbell after a
 *    controller reset often repeats the last value before it).
 * Before the link passes a BAR write on, it takes in everything the host
 * stored before it (the host's stores are seen in its program order): the
 * config writes in the event ring (MSI-X enable and bus master reach the
 * model before the doorbell that needs them) and the watched ranges listed
 * before this one (AQA/ASQ/ACQ before the CC.EN that follows them), so the
 * order of opts->watch is the order the driver writes them in.
 * The host's Function Level Reset (ZOC_VBUS_EV_RESET) resets the model
 * (zoc_pci_func_reset), puts the ranges back to power-on values and tells
 * the module (ZOC_VBUS_RESET_DONE), which holds config reads until then.
 * Interrupts: one eventfd per MSI-X vector, given to the model and to the
 * module, which sends the message the host wrote into the table (it honours
 * the table's masks; the model's own table stays unmasked). DMA: the model's
 * DMA space is the module's per-function bounce pool, mapped at
 * ZOC_VBUS_DMA_BASE: the device reaches only what the driver mapped.
 *
 * Reactor 0 only. Functions return 0 or a negative errno.
 */
#ifndef ZOC_LINK_VBUS_H
#define ZOC_LINK_VBUS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct zoc_pci_func;
struct zoc_vbus_link;

#define ZOC_VBUS_LINK_MAX_RANGES 4

#define ZOC_VBUS_LINK_IDLE 0xffffffffu /* a consumed dword nobody wrote */

struct zoc_vbus_range {
	uint8_t bar;
	uint32_t offset; /* dword aligned */
	uint32_t len;    /* dword multiple */
	bool consume;    /* watched only: every store is an event (see above) */
};

struct zoc_vbus_link_opts {
	const char *dev;          /* NULL: /dev/zoc-vbus */
	uint64_t dma_size;        /* bounce pool bytes; 0: 64 MiB */
	struct zoc_vbus_range watch[ZOC_VBUS_LINK_MAX_RANGES];
	unsigned nwatch;
	struct zoc_vbus_range publish[ZOC_VBUS_LINK_MAX_RANGES];
	unsigned npublish;
};

/* Creates the function on the bus and starts it (the host's driver probes
 * it). The model must be idle (no DMA space yet). On error, NULL with errno
 * set and a message for a person in err. */
struct zoc_vbus_link *zoc_vbus_link_create(struct zoc_pci_func *f,
					   const struct zoc_vbus_link_opts *opts, char *err,
					   size_t errlen);
/* Takes the function off the bus (ZOC_VBUS_UNPLUG: the host's driver unbinds
 * while the link keeps serving it), stops touching the BARs, resets the
 * model, takes its DMA space away, then unmaps and closes (the module frees
 * the window); done(arg) on reactor 0 when the model no longer uses anything
 * of the link. */
void zoc_vbus_link_destroy(struct zoc_vbus_link *l, void (*done)(void *arg), void *arg);
/* {"dev", "pci_address", "dma_size", "config_writes", "bar_writes",
 *  "event_overflows", "config_writes_before_bar", "function_resets"} */
json_t *zoc_vbus_link_info(const struct zoc_vbus_link *l);

#endif
