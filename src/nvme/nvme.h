/* SPDX-License-Identifier: MIT */
/*
 * nvme.h - an NVMe controller (NVMe base specification 1.4) as a PCI
 * function (src/pci/pci.h), carried by any register-level link.
 *
 * BAR0 (64-bit, 16 KiB): controller registers (CAP, VS, INTMS/INTMC, CC,
 * CSTS, AQA, ASQ, ACQ) in page 0, doorbells from 0x1000 (CAP.DSTRD 0). The
 * doorbell page is memory (a memfd): in polling mode it is offered to the
 * link as a sparse mmap area, so the driver's doorbell stores land in it
 * without a message and the owning reactor polls them; in interrupt mode
 * doorbell writes arrive as BAR accesses, are stored in the same page and
 * wake the owning reactor through an eventfd. BAR4 holds the MSI-X table
 * (offset 0) and PBA (offset 0x1000); one vector per I/O queue plus the
 * admin queue.
 *
 * Queues: the admin queue pair runs on reactor 0; each I/O completion queue
 * is given to a reactor round-robin at creation and its submission queues
 * live on the same reactor (one owner per queue, no locks). Commands become
 * block-layer requests on the namespace's bdev channel of that reactor;
 * requests come from per-queue pools sized by the queue depth, never from
 * malloc. Completions are posted with the phase bit and signalled through
 * the CQ's MSI-X vector at most once per poll (interrupt coalescing
 * feature: aggregation threshold and time).
 *
 * Everything the driver writes is checked: doorbell values beyond the queue
 * size (an asynchronous event: invalid doorbell write), PRP entries and lists
 * and SGL descriptors against the DMA space (Data Transfer Error / Invalid
 * SGL ... statuses), queue sizes over CAP.MQES, commands on deleted queues.
 * A fatal driver error sets CSTS.CFS; the controller then waits for a reset.
 */
#ifndef ZOC_NVME_NVME_H
#define ZOC_NVME_NVME_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct zoc_bdev;
struct zoc_pci_func;
struct zoc_nvme_ctrlr;

#define ZOC_NVME_MAX_NS 32
#define ZOC_NVME_MAX_IO_QUEUES 64
#define ZOC_NVME_NAME_MAX 64

struct zoc_nvme_ctrlr_opts {
	const char *name;         /* also the serial number's source */
	uint16_t max_io_queues;   /* 0: default (16), at most ZOC_NVME_MAX_IO_QUEUES */
	uint32_t max_queue_size;  /* entries per queue (CAP.MQES + 1); 0: 1024 */
	bool mmap_doorbells;      /* offer the doorbell page as a sparse mmap
				     (polling mode) */
	bool dbbuf;               /* advertise Doorbell Buffer Config (OACS bit
				     8) when the reactors poll: I/O queues'
				     doorbells are then read from shadow
				     doorbells in the driver's memory */
};

/* Reactor 0. 0 or -errno (-EINVAL for bad options, -ENOMEM). */
int zoc_nvme_ctrlr_create(const struct zoc_nvme_ctrlr_opts *opts, struct zoc_nvme_ctrlr **out);
/* Stops every queue (asynchronously: done(arg) on reactor 0 when all
 * requests completed), releases the bdevs, frees the controller. The link
 * must be gone already (it stops raising interrupts and accessing BARs). */
void zoc_nvme_ctrlr_destroy(struct zoc_nvme_ctrlr *c, void (*done)(void *arg), void *arg);
struct zoc_pci_func *zoc_nvme_ctrlr_pci(struct zoc_nvme_ctrlr *c);
const char *zoc_nvme_ctrlr_name(const struct zoc_nvme_ctrlr *c);

/* Attaches bdev as namespace nsid (1..ZOC_NVME_MAX_NS; 0 = lowest free)
 * and claims it; a running controller posts a Namespace Attribute Changed
 * event. *nsid_out gets the id. -EEXIST, -ENOSPC, -EINVAL (block size not
 * 512..4096). */
int zoc_nvme_ns_add(struct zoc_nvme_ctrlr *c, struct zoc_bdev *bdev, uint32_t nsid,
		    uint32_t *nsid_out);
/* Detaches namespace nsid once its in-flight I/O is done: done(arg, 0) on
 * reactor 0; done(arg, -ENOENT) at once if there is no such namespace. */
void zoc_nvme_ns_remove(struct zoc_nvme_ctrlr *c, uint32_t nsid,
			void (*done)(void *arg, int status), void *arg);

/* {"name", "enabled", "csts", "io_queues", "namespaces": [{nsid, bdev, ...}]} */
json_t *zoc_nvme_ctrlr_info(struct zoc_nvme_ctrlr *c);
/* {"name", "totals": zoc_io_stats, "queues": [{"sqid", "cqid", "reactor",
 * "size", ...stats}]} */
json_t *zoc_nvme_ctrlr_stats(struct zoc_nvme_ctrlr *c);

#endif
