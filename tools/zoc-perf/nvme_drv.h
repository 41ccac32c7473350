/* SPDX-License-Identifier: MIT */
/*
 * nvme_drv.h - a user-space NVMe driver (NVMe base specification 1.4) on a
 * vfio-user connection (vfu_client.h), for load generation and stress tests.
 *
 * Control path (zoc_nvmed_open/close): PCI config (memory + bus master, MSI-X
 * when interrupts are used), controller reset and enable through CC/CSTS, the
 * admin queue (always polled), Identify controller and namespace, Set Features
 * Number of Queues, Create I/O CQ/SQ pairs, and the reverse on close.
 *
 * Data path (inline below, one thread per queue pair): the caller builds
 * submission entries into the SQ, rings the SQ tail doorbell once per batch,
 * reaps the CQ by its phase bit and rings the CQ head doorbell once per batch.
 * When the server offers BAR0's doorbell page as a sparse mmap area, doorbells
 * are plain stores (no system call per I/O); otherwise each doorbell is a
 * REGION_WRITE message, posted (No_reply) unless opts.wait_writes.
 *
 * The controller is not trusted: completions are checked (queue id, command
 * id, SQ head) and anything inconsistent is an error with a message.
 */
#ifndef ZOC_PERF_NVME_DRV_H
#define ZOC_PERF_NVME_DRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vfu_client.h"

struct nvme_sqe {
	uint8_t opc;
	uint8_t flags;
	uint16_t cid;
	uint32_t nsid;
	uint64_t rsvd2;
	uint64_t mptr;
	uint64_t prp1;
	uint64_t prp2;
	uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};
_Static_assert(sizeof(struct nvme_sqe) == 64, "NVMe SQ entry is 64 bytes");

struct nvme_cqe {
	uint32_t dw0;
	uint32_t dw1;
	uint16_t sqhd;
	uint16_t sqid;
	uint16_t cid;
	uint16_t status; /* bit 0: phase; 15:1 status field */
};
_Static_assert(sizeof(struct nvme_cqe) == 16, "NVMe CQ entry is 16 bytes");

enum {
	NVME_OPC_FLUSH = 0x00,
	NVME_OPC_WRITE = 0x01,
	NVME_OPC_READ = 0x02,
};

/* One completion as reaped. */
struct zoc_nvmed_cpl {
	uint16_t cid;
	uint16_t status; /* status field without the phase bit: SCT << 8 | SC, DNR, M */
	uint32_t dw0;
};

struct zoc_nvmed;

struct zoc_nvmed_qpair {
	struct nvme_sqe *sq;
	volatile struct nvme_cqe *cq;
	volatile uint32_t *sq_db, *cq_db; /* mmapped doorbells, or NULL */
	uint16_t qid, size;
	uint16_t sq_tail, sq_head, cq_head, cq_db_last;
	uint16_t phase;
	uint16_t ncid;      /* valid command ids: [0, ncid) */
	int irq_fd;         /* eventfd for MSI-X vector qid, or -1 */
	struct zoc_nvmed *ctrl;
	uint64_t doorbell_writes;
	char err[256];      /* set when a reap fails */
};

struct zoc_nvmed_opts {
	const char *socket;
	int timeout_ms;        /* for each message reply and each admin command */
	uint32_t nsid;
	uint16_t io_queues;
	uint16_t queue_slots;  /* command ids per I/O queue (the queue depth) */
	uint32_t mem_bytes;    /* DMA memory; must hold queues + what the caller allocates */
	bool irq_eventfd;      /* MSI-X eventfds per I/O queue; else polled, no interrupts */
	bool no_mmap;          /* write doorbells with REGION_WRITE even if mmap is offered */
	bool wait_writes;      /* doorbell REGION_WRITEs wait for their reply (else posted
				  with No_reply, as QEMU's vfio-user-pci does by default) */
	bool data_nofd;        /* data memory (zoc_nvmed_data_alloc) is a second region of
				  mem_bytes mapped WITHOUT an fd: the server reaches it only
				  with DMA_READ/DMA_WRITE, served by zoc_nvmed_service() */
	bool queues_nofd;      /* the admin and I/O queues and the admin data buffer live in
				  that fd-less region too (served the same way) */
	bool verbose;
};

struct zoc_nvmed_info {
	uint16_t vid, ssvid;
	char sn[21], mn[41], fr[9];
	uint32_t vs;
	uint64_t cap;
	uint32_t mdts_bytes;   /* 0: no limit */
	uint32_t nn;
	uint64_t nsze;         /* namespace size in LBAs */
	uint32_t lba_size;
	uint16_t io_queues;    /* as created */
	uint16_t queue_size;   /* entries per I/O queue */
	bool doorbells_mmapped;
	bool irq_eventfd;
};

/* Connects, maps the DMA memory, brings the controller up with
 * opts->io_queues I/O queue pairs. NULL on error with the reason in *why
 * (static storage). */
struct zoc_nvmed *zoc_nvmed_open(const struct zoc_nvmed_opts *opts, const char **why);
/* Deletes the queues, shuts the controller down (CC.SHN), unmaps the DMA
 * memory, disconnects and frees d. Returns 0 or -errno with the reason in
 * *why (static storage; why may be NULL). */
int zoc_nvmed_close(struct zoc_nvmed *d, const char **why);
const char *zoc_nvmed_error(const struct zoc_nvmed *d);
const struct zoc_nvmed_info *zoc_nvmed_info(const struct zoc_nvmed *d);
struct zoc_nvmed_qpair *zoc_nvmed_qpair(struct zoc_nvmed *d, unsigned i);
/* Bump allocation in the DMA memory (page aligned); NULL when it is full. */
void *zoc_nvmed_dma_alloc(struct zoc_nvmed *d, size_t size, uint64_t *iova);
/* Data buffers: from the fd-less region with opts.data_nofd, else the same
 * as zoc_nvmed_dma_alloc(). */
void *zoc_nvmed_data_alloc(struct zoc_nvmed *d, size_t size, uint64_t *iova);
/* With opts.data_nofd: serves the server's DMA_READ/DMA_WRITE (call it
 * while waiting for completions; no blocking). 0 or -errno (reason in
 * zoc_nvmed_error()). */
int zoc_nvmed_service(struct zoc_nvmed *d);
/* The connection's socket (poll it with the interrupt eventfds), -1 if none. */
int zoc_nvmed_socket_fd(struct zoc_nvmed *d);
uint64_t zoc_nvmed_dma_served(struct zoc_nvmed *d);
/* Reads CSTS (for error messages); 0xffffffff on failure. */
uint32_t zoc_nvmed_csts(struct zoc_nvmed *d);
/* Writes a doorbell through a REGION_WRITE message (slow path). */
int zoc_nvmed_doorbell_msg(struct zoc_nvmed_qpair *qp, bool cq, uint16_t value);
/* Decodes a status field. */
const char *zoc_nvmed_status_str(uint16_t status);
/* How much DMA memory open() itself needs for these options. */
size_t zoc_nvmed_mem_needed(const struct zoc_nvmed_opts *opts);

/* ------------------------------------------------------------ data path */

/* Puts cmd into the SQ (no doorbell). The caller keeps at most ncid commands
 * outstanding; the queue is bigger than that, so it is never full. */
static inline void zoc_nvmed_sq_put(struct zoc_nvmed_qpair *qp, const struct nvme_sqe *cmd)
{
	qp->sq[qp->sq_tail] = *cmd;
	if (++qp->sq_tail == qp->size)
		qp->sq_tail = 0;
}

/* One store (or message) makes the controller see everything put so far. */
static inline int zoc_nvmed_sq_ring(struct zoc_nvmed_qpair *qp)
{
	qp->doorbell_writes++;
	if (__builtin_expect(qp->sq_db != NULL, 1)) {
		__atomic_store_n(qp->sq_db, (uint32_t)qp->sq_tail, __ATOMIC_RELEASE);
		return 0;
	}
	return zoc_nvmed_doorbell_msg(qp, false, qp->sq_tail);
}

/* Tells the controller the CQ entries reaped so far are free. */
static inline int zoc_nvmed_cq_ring(struct zoc_nvmed_qpair *qp)
{
	if (qp->cq_head == qp->cq_db_last)
		return 0;
	qp->cq_db_last = qp->cq_head;
	qp->doorbell_writes++;
	if (__builtin_expect(qp->cq_db != NULL, 1)) {
		__atomic_store_n(qp->cq_db, (uint32_t)qp->cq_head, __ATOMIC_RELEASE);
		return 0;
	}
	return zoc_nvmed_doorbell_msg(qp, true, qp->cq_head);
}

int zoc_nvmed_bad_cqe(struct zoc_nvmed_qpair *qp, const volatile struct nvme_cqe *e);

/* Reaps up to max completions (phase bit); does not ring the CQ doorbell.
 * Returns the count, or -EPROTO for a completion that breaks the rules
 * (reason in qp->err). */
static inline int zoc_nvmed_cq_reap(struct zoc_nvmed_qpair *qp, struct zoc_nvmed_cpl *out,
				    int max)
{
	int n = 0;

	while (n < max) {
		const volatile struct nvme_cqe *e = &qp->cq[qp->cq_head];
		uint16_t st = __atomic_load_n(&e->status, __ATOMIC_ACQUIRE);
		uint16_t cid, sqhd;

		if ((st & 1) != qp->phase)
			break;
		cid = e->cid;
		sqhd = e->sqhd;
		if (__builtin_expect(cid >= qp->ncid || e->sqid != qp->qid || sqhd >= qp->size, 0))
			return zoc_nvmed_bad_cqe(qp, e);
		out[n].cid = cid;
		out[n].status = st >> 1;
		out[n].dw0 = e->dw0;
		qp->sq_head = sqhd;
		n++;
		if (++qp->cq_head == qp->size) {
			qp->cq_head = 0;
			qp->phase ^= 1;
		}
	}
	return n;
}

#endif
