/* SPDX-License-Identifier: MIT */
/*
 * nvme_drv.c - user-space NVMe driver over vfio-user (see nvme_drv.h).
 * Register layout and command formats: NVMe base specification 1.4.
 */
#include "nvme_drv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"

/* Controller registers (BAR0). */
#define REG_CAP 0x00
#define REG_VS 0x08
#define REG_INTMS 0x0c
#define REG_CC 0x14
#define REG_CSTS 0x1c
#define REG_AQA 0x24
#define REG_ASQ 0x28
#define REG_ACQ 0x30
#define DB_BASE 0x1000

#define CC_EN (1u << 0)
#define CC_SHN_NORMAL (1u << 14)
#define CC_IOSQES (6u << 16)
#define CC_IOCQES (4u << 20)
#define CSTS_RDY (1u << 0)
#define CSTS_CFS (1u << 1)
#define CSTS_SHST_MASK (3u << 2)
#define CSTS_SHST_DONE (2u << 2)

#define CAP_MQES(c) ((uint32_t)((c) & 0xffff))
#define CAP_TO(c) ((uint32_t)(((c) >> 24) & 0xff))
#define CAP_DSTRD(c) ((uint32_t)(((c) >> 32) & 0xf))
#define CAP_CSS_NVM(c) (((c) >> 37) & 1)
#define CAP_MPSMIN(c) ((uint32_t)(((c) >> 48) & 0xf))

#define ADM_DELETE_SQ 0x00
#define ADM_CREATE_SQ 0x01
#define ADM_DELETE_CQ 0x04
#define ADM_CREATE_CQ 0x05
#define ADM_IDENTIFY 0x06
#define ADM_SET_FEATURES 0x09
#define FEAT_NUM_QUEUES 0x07

#define ADMIN_QSIZE 32
#define IOVA_BASE 0x100000000ull /* above 4 GiB: catches 32-bit truncation */
#define IOVA_NOFD 0x8000000000ull /* the fd-less data region (opts.data_nofd) */
#define PAGE 4096u

/* PCI config space. */
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_CAP_PTR 0x34
#define PCI_CMD_MEM (1u << 1)
#define PCI_CMD_MASTER (1u << 2)
#define PCI_CMD_INTX_DISABLE (1u << 10)
#define PCI_STATUS_CAP_LIST (1u << 4)
#define PCI_CAP_ID_MSIX 0x11
#define MSIX_ENABLE (1u << 15)
#define MSIX_FMASK (1u << 14)

struct zoc_nvmed {
	struct zoc_vfuc *v;
	struct zoc_nvmed_opts opts;
	struct zoc_nvmed_info info;
	int memfd;
	uint8_t *mem;
	size_t mem_size, mem_used;
	uint8_t *nofd;       /* anonymous memory mapped without an fd */
	size_t nofd_used;
	bool nofd_mapped;
	uint32_t db_stride;
	/* BAR0 doorbell mmap */
	uint8_t *db_map;
	size_t db_map_size;
	uint64_t db_map_off; /* BAR offset of db_map[0] */
	/* admin queue */
	struct zoc_nvmed_qpair aq;
	uint16_t admin_cid;
	/* I/O queues */
	struct zoc_nvmed_qpair *qps;
	uint16_t nq_created_cq, nq_created_sq;
	bool enabled, irqs_set;
	int admin_irq_fd;
	char err[768];
};

__attribute__((format(printf, 3, 4))) static int fail(struct zoc_nvmed *d, int err,
						      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->err, sizeof(d->err), fmt, ap);
	va_end(ap);
	return err;
}

/* A vfio-user call failed: say which step and the client's reason. */
static int vfail(struct zoc_nvmed *d, int err, const char *what)
{
	return fail(d, err, "%s: %s", what, zoc_vfuc_error(d->v));
}

const char *zoc_nvmed_error(const struct zoc_nvmed *d)
{
	return d->err;
}

const struct zoc_nvmed_info *zoc_nvmed_info(const struct zoc_nvmed *d)
{
	return &d->info;
}

struct zoc_nvmed_qpair *zoc_nvmed_qpair(struct zoc_nvmed *d, unsigned i)
{
	return i < d->info.io_queues ? &d->qps[i] : NULL;
}

void *zoc_nvmed_dma_alloc(struct zoc_nvmed *d, size_t size, uint64_t *iova)
{
	size_t off = (d->mem_used + PAGE - 1) & ~(size_t)(PAGE - 1);

	if (size > d->mem_size || off > d->mem_size - size)
		return NULL;
	d->mem_used = off + size;
	*iova = IOVA_BASE + off;
	return d->mem + off;
}

static void *nofd_alloc(struct zoc_nvmed *d, size_t size, uint64_t *iova)
{
	size_t off = (d->nofd_used + PAGE - 1) & ~(size_t)(PAGE - 1);

	if (size > d->mem_size || off > d->mem_size - size)
		return NULL;
	d->nofd_used = off + size;
	*iova = IOVA_NOFD + off;
	return d->nofd + off;
}

/* Queues and admin buffers: in the fd-less region with opts.queues_nofd. */
static void *ring_alloc(struct zoc_nvmed *d, size_t size, uint64_t *iova)
{
	if (d->nofd && d->opts.queues_nofd)
		return nofd_alloc(d, size, iova);
	return zoc_nvmed_dma_alloc(d, size, iova);
}

void *zoc_nvmed_data_alloc(struct zoc_nvmed *d, size_t size, uint64_t *iova)
{
	size_t off = (d->nofd_used + PAGE - 1) & ~(size_t)(PAGE - 1);

	if (!d->nofd || !d->opts.data_nofd)
		return zoc_nvmed_dma_alloc(d, size, iova);
	if (size > d->mem_size || off > d->mem_size - size)
		return NULL;
	d->nofd_used = off + size;
	*iova = IOVA_NOFD + off;
	return d->nofd + off;
}

int zoc_nvmed_service(struct zoc_nvmed *d)
{
	int ret = zoc_vfuc_poll(d->v);

	if (ret)
		snprintf(d->err, sizeof(d->err), "serving the server's DMA requests: %s",
			 zoc_vfuc_error(d->v));
	return ret;
}

int zoc_nvmed_socket_fd(struct zoc_nvmed *d)
{
	return d->v ? zoc_vfuc_fd(d->v) : -1;
}

uint64_t zoc_nvmed_dma_served(struct zoc_nvmed *d)
{
	return d->v ? zoc_vfuc_dma_served(d->v) : 0;
}

static uint64_t ms_now(void)
{
	return zoc_now_ns() / 1000000;
}

static int reg_read32(struct zoc_nvmed *d, uint32_t off, uint32_t *val)
{
	int ret = zoc_vfuc_read32(d->v, VFUC_REGION_BAR0, off, val);

	if (ret) {
		char what[64];

		snprintf(what, sizeof(what), "reading BAR0 register 0x%x", off);
		return vfail(d, ret, what);
	}
	return 0;
}

static int reg_write32(struct zoc_nvmed *d, uint32_t off, uint32_t val)
{
	int ret = zoc_vfuc_write32(d->v, VFUC_REGION_BAR0, off, val);

	if (ret) {
		char what[64];

		snprintf(what, sizeof(what), "writing BAR0 register 0x%x", off);
		return vfail(d, ret, what);
	}
	return 0;
}

/* 64-bit registers as two dword accesses, low first (NVMe 1.4 3.1: either
 * 32- or 64-bit accesses are allowed). */
static int reg_read64(struct zoc_nvmed *d, uint32_t off, uint64_t *val)
{
	uint32_t lo, hi;
	int ret = reg_read32(d, off, &lo);

	if (!ret)
		ret = reg_read32(d, off + 4, &hi);
	if (!ret)
		*val = (uint64_t)hi << 32 | lo;
	return ret;
}

static int reg_write64(struct zoc_nvmed *d, uint32_t off, uint64_t val)
{
	int ret = reg_write32(d, off, (uint32_t)val);

	return ret ? ret : reg_write32(d, off + 4, (uint32_t)(val >> 32));
}

uint32_t zoc_nvmed_csts(struct zoc_nvmed *d)
{
	uint32_t v;

	if (zoc_vfuc_read32(d->v, VFUC_REGION_BAR0, REG_CSTS, &v))
		return 0xffffffffu;
	return v;
}

static uint32_t db_offset(const struct zoc_nvmed *d, uint16_t qid, bool cq)
{
	return DB_BASE + (2u * qid + (cq ? 1 : 0)) * d->db_stride;
}

int zoc_nvmed_doorbell_msg(struct zoc_nvmed_qpair *qp, bool cq, uint16_t value)
{
	struct zoc_nvmed *d = qp->ctrl;
	uint32_t v32 = value;
	int ret = d->opts.wait_writes ?
		zoc_vfuc_write32(d->v, VFUC_REGION_BAR0, db_offset(d, qp->qid, cq), v32) :
		zoc_vfuc_region_write_posted(d->v, VFUC_REGION_BAR0, db_offset(d, qp->qid, cq),
					     &v32, 4);

	if (ret)
		snprintf(qp->err, sizeof(qp->err), "writing the %s doorbell of queue %u: %s",
			 cq ? "CQ head" : "SQ tail", qp->qid, zoc_vfuc_error(d->v));
	return ret;
}

int zoc_nvmed_bad_cqe(struct zoc_nvmed_qpair *qp, const volatile struct nvme_cqe *e)
{
	snprintf(qp->err, sizeof(qp->err),
		 "controller posted a bad completion on CQ %u at index %u: sqid %u (expected %u), cid %u (valid 0..%u), sqhd %u (queue size %u)",
		 qp->qid, qp->cq_head, e->sqid, qp->qid, e->cid, qp->ncid ? qp->ncid - 1 : 0,
		 e->sqhd, qp->size);
	return -EPROTO;
}

const char *zoc_nvmed_status_str(uint16_t status)
{
	static __thread char buf[96];
	unsigned sct = (status >> 8) & 7, sc = status & 0xff;
	const char *name = NULL;

	if (sct == 0) {
		switch (sc) {
		case 0x00: name = "Successful Completion"; break;
		case 0x01: name = "Invalid Command Opcode"; break;
		case 0x02: name = "Invalid Field in Command"; break;
		case 0x03: name = "Command ID Conflict"; break;
		case 0x04: name = "Data Transfer Error"; break;
		case 0x05: name = "Commands Aborted due to Power Loss Notification"; break;
		case 0x06: name = "Internal Error"; break;
		case 0x07: name = "Command Abort Requested"; break;
		case 0x08: name = "Command Aborted due to SQ Deletion"; break;
		case 0x0b: name = "Invalid Namespace or Format"; break;
		case 0x0d: name = "Invalid SGL Segment Descriptor"; break;
		case 0x13: name = "PRP Offset Invalid"; break;
		case 0x80: name = "LBA Out of Range"; break;
		case 0x81: name = "Capacity Exceeded"; break;
		case 0x82: name = "Namespace Not Ready"; break;
		}
	} else if (sct == 1) {
		switch (sc) {
		case 0x00: name = "Completion Queue Invalid"; break;
		case 0x01: name = "Invalid Queue Identifier"; break;
		case 0x02: name = "Invalid Queue Size"; break;
		case 0x08: name = "Invalid Interrupt Vector"; break;
		case 0x0c: name = "Invalid Queue Deletion"; break;
		case 0x0d: name = "Feature Identifier Not Saveable"; break;
		}
	} else if (sct == 2) {
		switch (sc) {
		case 0x80: name = "Write Fault"; break;
		case 0x81: name = "Unrecovered Read Error"; break;
		case 0x86: name = "Access Denied"; break;
		}
	}
	snprintf(buf, sizeof(buf), "%s (SCT %u SC 0x%02x%s)", name ? name : "status", sct, sc,
		 (status >> 14) & 1 ? ", DNR" : "");
	return buf;
}

/* ------------------------------------------------------------ admin */

static const char *admin_name(uint8_t opc)
{
	switch (opc) {
	case ADM_DELETE_SQ: return "Delete I/O SQ";
	case ADM_CREATE_SQ: return "Create I/O SQ";
	case ADM_DELETE_CQ: return "Delete I/O CQ";
	case ADM_CREATE_CQ: return "Create I/O CQ";
	case ADM_IDENTIFY: return "Identify";
	case ADM_SET_FEATURES: return "Set Features";
	}
	return "admin command";
}

/* Submits one admin command and polls for its completion. */
static int admin_cmd(struct zoc_nvmed *d, struct nvme_sqe *cmd, uint32_t *dw0)
{
	struct zoc_nvmed_qpair *aq = &d->aq;
	struct zoc_nvmed_cpl c;
	uint64_t t0 = ms_now();
	int n, ret;

	cmd->cid = d->admin_cid;
	d->admin_cid = (uint16_t)((d->admin_cid + 1) % ADMIN_QSIZE);
	zoc_nvmed_sq_put(aq, cmd);
	ret = zoc_nvmed_sq_ring(aq);
	if (ret)
		return fail(d, ret, "%s", aq->err);
	for (;;) {
		n = zoc_nvmed_cq_reap(aq, &c, 1);
		if (n < 0)
			return fail(d, n, "%s: %s", admin_name(cmd->opc), aq->err);
		if (n == 1)
			break;
		if (d->nofd) {
			/* the server may need our fd-less memory to answer */
			ret = zoc_nvmed_service(d);
			if (ret)
				return ret;
		}
		if (ms_now() - t0 > (uint64_t)d->opts.timeout_ms) {
			uint32_t csts = zoc_nvmed_csts(d);

			return fail(d, -ETIMEDOUT,
				    "%s (opcode 0x%02x) got no completion within %d ms (CSTS 0x%x%s)",
				    admin_name(cmd->opc), cmd->opc, d->opts.timeout_ms, csts,
				    csts != 0xffffffffu && (csts & CSTS_CFS) ? ": controller fatal status" : "");
		}
		struct timespec ts = { 0, 20000 };
		nanosleep(&ts, NULL);
	}
	ret = zoc_nvmed_cq_ring(aq);
	if (ret)
		return fail(d, ret, "%s", aq->err);
	if (c.cid != cmd->cid)
		return fail(d, -EPROTO, "%s completed with cid %u, submitted as %u",
			    admin_name(cmd->opc), c.cid, cmd->cid);
	if (c.status & 0x7ffe) /* SC and SCT; not M/DNR alone */
		return fail(d, -EIO, "%s (opcode 0x%02x, cdw10 0x%x) failed: %s", admin_name(cmd->opc),
			    cmd->opc, cmd->cdw10, zoc_nvmed_status_str(c.status));
	if (c.status & 0xff)
		return fail(d, -EIO, "%s failed: %s", admin_name(cmd->opc),
			    zoc_nvmed_status_str(c.status));
	if (dw0)
		*dw0 = c.dw0;
	return 0;
}

/* ------------------------------------------------------------ set-up */

static int wait_csts(struct zoc_nvmed *d, uint32_t mask, uint32_t want, uint32_t timeout_ms,
		     const char *what)
{
	uint64_t t0 = ms_now();
	uint32_t csts = 0;
	int ret;

	for (;;) {
		ret = reg_read32(d, REG_CSTS, &csts);
		if (ret)
			return ret;
		if ((csts & mask) == want)
			return 0;
		if (csts == 0xffffffffu)
			return fail(d, -EIO, "%s: CSTS reads all ones", what);
		if ((csts & CSTS_CFS) && want != 0)
			return fail(d, -EIO, "%s: controller fatal status (CSTS 0x%x)", what, csts);
		if (ms_now() - t0 > timeout_ms)
			return fail(d, -ETIMEDOUT, "%s: CSTS 0x%x after %u ms (CAP.TO)", what, csts,
				    timeout_ms);
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
}

static int pci_setup(struct zoc_nvmed *d)
{
	uint16_t cmd, status, vid, did;
	uint8_t ptr;
	int ret;

	ret = zoc_vfuc_read16(d->v, VFUC_REGION_CONFIG, 0, &vid);
	if (!ret)
		ret = zoc_vfuc_read16(d->v, VFUC_REGION_CONFIG, 2, &did);
	if (ret)
		return vfail(d, ret, "reading the PCI IDs");
	if (vid == 0xffff)
		return fail(d, -ENODEV, "PCI vendor id reads 0xffff: no function behind the socket");
	ret = zoc_vfuc_read16(d->v, VFUC_REGION_CONFIG, PCI_COMMAND, &cmd);
	if (ret)
		return vfail(d, ret, "reading the PCI command register");
	cmd |= PCI_CMD_MEM | PCI_CMD_MASTER;
	if (d->opts.irq_eventfd)
		cmd |= PCI_CMD_INTX_DISABLE;
	ret = zoc_vfuc_write16(d->v, VFUC_REGION_CONFIG, PCI_COMMAND, cmd);
	if (ret)
		return vfail(d, ret, "enabling memory space and bus mastering");
	ret = zoc_vfuc_read16(d->v, VFUC_REGION_CONFIG, PCI_COMMAND, &cmd);
	if (ret)
		return vfail(d, ret, "reading back the PCI command register");
	if ((cmd & (PCI_CMD_MEM | PCI_CMD_MASTER)) != (PCI_CMD_MEM | PCI_CMD_MASTER))
		return fail(d, -EIO, "PCI command register reads 0x%04x after setting memory space and bus master",
			    cmd);
	if (!d->opts.irq_eventfd)
		return 0;

	/* MSI-X: find the capability, unmask the vectors we use, enable. */
	ret = zoc_vfuc_read16(d->v, VFUC_REGION_CONFIG, PCI_STATUS, &status);
	if (ret)
		return vfail(d, ret, "reading the PCI status register");
	if (!(status & PCI_STATUS_CAP_LIST))
		return fail(d, -ENODEV, "no PCI capability list: no MSI-X for --irq eventfd");
	ret = zoc_vfuc_read8(d->v, VFUC_REGION_CONFIG, PCI_CAP_PTR, &ptr);
	if (ret)
		return vfail(d, ret, "reading the capabilities pointer");
	for (int hops = 0; ptr; hops++) {
		uint8_t id, next;

		if (hops > 48 || ptr < 0x40 || (ptr & 3))
			return fail(d, -EPROTO, "PCI capability list is malformed (pointer 0x%x after %d hops)",
				    ptr, hops);
		ret = zoc_vfuc_read8(d->v, VFUC_REGION_CONFIG, ptr, &id);
		if (!ret)
			ret = zoc_vfuc_read8(d->v, VFUC_REGION_CONFIG, ptr + 1u, &next);
		if (ret)
			return vfail(d, ret, "walking the PCI capability list");
		if (id == PCI_CAP_ID_MSIX) {
			uint16_t ctrl;
			uint32_t table, nvec, bir;

			ret = zoc_vfuc_read16(d->v, VFUC_REGION_CONFIG, ptr + 2u, &ctrl);
			if (!ret)
				ret = zoc_vfuc_read32(d->v, VFUC_REGION_CONFIG, ptr + 4u, &table);
			if (ret)
				return vfail(d, ret, "reading the MSI-X capability");
			nvec = (ctrl & 0x7ffu) + 1;
			bir = table & 7;
			table &= ~7u;
			if (nvec < d->opts.io_queues + 1u)
				return fail(d, -ENOSPC, "MSI-X has %u vectors; %u queues need %u",
					    nvec, d->opts.io_queues, d->opts.io_queues + 1u);
			if (bir > 5)
				return fail(d, -EPROTO, "MSI-X table in BAR %u", bir);
			for (uint32_t i = 0; i <= d->opts.io_queues; i++) {
				/* address, data (the vector), unmasked */
				uint32_t ent[4] = { 0xfee00000u, 0, i, 0 };

				ret = zoc_vfuc_region_write(d->v, bir, table + 16ull * i, ent, sizeof(ent));
				if (ret)
					return vfail(d, ret, "writing the MSI-X table");
			}
			ctrl = (uint16_t)((ctrl | MSIX_ENABLE) & ~MSIX_FMASK);
			ret = zoc_vfuc_write16(d->v, VFUC_REGION_CONFIG, ptr + 2u, ctrl);
			if (!ret)
				ret = zoc_vfuc_read16(d->v, VFUC_REGION_CONFIG, ptr + 2u, &ctrl);
			if (ret)
				return vfail(d, ret, "enabling MSI-X");
			if (!(ctrl & MSIX_ENABLE) || (ctrl & MSIX_FMASK))
				return fail(d, -EIO, "MSI-X message control reads 0x%04x after enabling", ctrl);
			return 0;
		}
		ptr = next;
	}
	return fail(d, -ENODEV, "no MSI-X capability: use --irq poll");
}

static int setup_irqs(struct zoc_nvmed *d)
{
	struct zoc_vfuc_irq_info ii;
	uint32_t n = d->info.io_queues + 1u, max_fds = zoc_vfuc_caps(d->v)->max_msg_fds;
	int fds[VFUC_MAX_IRQ_FDS];
	int ret;

	ret = zoc_vfuc_irq_info(d->v, VFUC_IRQ_MSIX, &ii);
	if (ret)
		return vfail(d, ret, "GET_IRQ_INFO for MSI-X");
	if (!(ii.flags & VFUC_IRQ_INFO_EVENTFD) || ii.count < n)
		return fail(d, -ENOSPC, "MSI-X irq info: flags 0x%x, %u vectors (need eventfd support and %u)",
			    ii.flags, ii.count, n);
	if (max_fds > VFUC_MAX_IRQ_FDS)
		max_fds = VFUC_MAX_IRQ_FDS;
	if (max_fds == 0)
		max_fds = 1;
	/* vector 0 (admin, unused: the admin queue is polled), vector i: queue i */
	d->admin_irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->admin_irq_fd < 0)
		return fail(d, -errno, "eventfd: %s", strerror(errno));
	for (uint32_t i = 0; i < d->info.io_queues; i++) {
		d->qps[i].irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (d->qps[i].irq_fd < 0)
			return fail(d, -errno, "eventfd: %s", strerror(errno));
	}
	for (uint32_t start = 0; start < n; start += max_fds) {
		uint32_t cnt = ZOC_MIN(max_fds, n - start);

		for (uint32_t i = 0; i < cnt; i++)
			fds[i] = start + i == 0 ? d->admin_irq_fd : d->qps[start + i - 1].irq_fd;
		ret = zoc_vfuc_set_irqs(d->v, VFUC_IRQ_MSIX, start, cnt, fds);
		if (ret)
			return vfail(d, ret, "SET_IRQS MSI-X eventfds");
	}
	d->irqs_set = true;
	return 0;
}

static int map_doorbells(struct zoc_nvmed *d, uint32_t db_end)
{
	struct zoc_vfuc_region_info ri;
	int ret;

	ret = zoc_vfuc_region_info(d->v, VFUC_REGION_BAR0, &ri);
	if (ret)
		return vfail(d, ret, "GET_REGION_INFO for BAR0");
	if (ri.size < db_end) {
		if (ri.fd >= 0)
			close(ri.fd);
		return fail(d, -ENODEV, "BAR0 is 0x%llx bytes: too small for doorbells up to 0x%x",
			    (unsigned long long)ri.size, db_end);
	}
	if (!(ri.flags & VFUC_REGION_FLAG_READ) || !(ri.flags & VFUC_REGION_FLAG_WRITE)) {
		if (ri.fd >= 0)
			close(ri.fd);
		return fail(d, -ENODEV, "BAR0 region flags 0x%x: not readable and writable", ri.flags);
	}
	if (ri.fd < 0 || d->opts.no_mmap) {
		if (ri.fd >= 0)
			close(ri.fd);
		return 0;
	}
	if (!(ri.flags & VFUC_REGION_FLAG_CAPS) && ri.nr_sparse == 0) {
		/* The whole region is mappable. */
		ri.nr_sparse = 1;
		ri.sparse[0].offset = 0;
		ri.sparse[0].size = ri.size;
	}
	for (uint32_t i = 0; i < ri.nr_sparse; i++) {
		uint64_t ao = ri.sparse[i].offset, as = ri.sparse[i].size;
		void *p;

		if (ao > DB_BASE || ao + as < db_end)
			continue;
		if ((ao & (PAGE - 1)) || (as & (PAGE - 1)) || ((ri.offset + ao) & (PAGE - 1))) {
			close(ri.fd);
			return fail(d, -EPROTO, "BAR0 sparse area [0x%llx+0x%llx] (fd offset 0x%llx) is not page aligned",
				    (unsigned long long)ao, (unsigned long long)as,
				    (unsigned long long)ri.offset);
		}
		p = mmap(NULL, as, PROT_READ | PROT_WRITE, MAP_SHARED, ri.fd, (off_t)(ri.offset + ao));
		if (p == MAP_FAILED) {
			ret = -errno;
			close(ri.fd);
			return fail(d, ret, "mmap of BAR0's doorbell area [0x%llx+0x%llx] at fd offset 0x%llx: %s",
				    (unsigned long long)ao, (unsigned long long)as,
				    (unsigned long long)(ri.offset + ao), strerror(-ret));
		}
		d->db_map = p;
		d->db_map_size = as;
		d->db_map_off = ao;
		break;
	}
	close(ri.fd);
	return 0;
}

static volatile uint32_t *db_ptr(struct zoc_nvmed *d, uint16_t qid, bool cq)
{
	if (!d->db_map)
		return NULL;
	return (volatile uint32_t *)(d->db_map + (db_offset(d, qid, cq) - d->db_map_off));
}

static void qp_init(struct zoc_nvmed *d, struct zoc_nvmed_qpair *qp, uint16_t qid, uint16_t size,
		    uint16_t ncid, void *sq, void *cq)
{
	memset(qp, 0, sizeof(*qp));
	qp->sq = sq;
	qp->cq = cq;
	qp->qid = qid;
	qp->size = size;
	qp->phase = 1;
	qp->ncid = ncid;
	qp->irq_fd = -1;
	qp->ctrl = d;
	qp->sq_db = db_ptr(d, qid, false);
	qp->cq_db = db_ptr(d, qid, true);
	memset(sq, 0, (size_t)size * sizeof(struct nvme_sqe));
	memset(cq, 0, (size_t)size * sizeof(struct nvme_cqe));
}

static void copy_str(char *dst, const uint8_t *src, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? (char)src[i] : '?';
	while (i > 0 && dst[i - 1] == ' ')
		i--;
	dst[i] = 0;
}

static int identify(struct zoc_nvmed *d)
{
	struct nvme_sqe cmd;
	uint64_t iova;
	uint8_t *buf = ring_alloc(d, PAGE, &iova), flbas, nlbaf, lbads, mdts;
	uint32_t lbaf;
	uint16_t ms;
	int ret;

	if (!buf)
		return fail(d, -ENOMEM, "DMA memory too small for Identify");
	memset(buf, 0xa5, PAGE); /* a controller that transfers nothing is caught */
	memset(&cmd, 0, sizeof(cmd));
	cmd.opc = ADM_IDENTIFY;
	cmd.prp1 = iova;
	cmd.cdw10 = 1; /* CNS 01h: controller */
	ret = admin_cmd(d, &cmd, NULL);
	if (ret)
		return ret;
	memcpy(&d->info.vid, buf, 2);
	memcpy(&d->info.ssvid, buf + 2, 2);
	copy_str(d->info.sn, buf + 4, 20);
	copy_str(d->info.mn, buf + 24, 40);
	copy_str(d->info.fr, buf + 64, 8);
	mdts = buf[77];
	memcpy(&d->info.nn, buf + 516, 4);
	/* MDTS in units of the minimum memory page size (CAP.MPSMIN). */
	d->info.mdts_bytes = mdts ? (mdts + CAP_MPSMIN(d->info.cap) + 12 >= 32 ? 0 :
			     1u << (mdts + CAP_MPSMIN(d->info.cap) + 12)) : 0;
	if ((buf[512] & 0xf) > 6 || (buf[512] >> 4) < 6 || (buf[513] & 0xf) > 4 || (buf[513] >> 4) < 4)
		return fail(d, -ENOTSUP, "Identify Controller: SQES 0x%02x CQES 0x%02x do not allow 64/16-byte entries",
			    buf[512], buf[513]);
	if (d->opts.nsid == 0 || d->opts.nsid > d->info.nn)
		return fail(d, -ENOENT, "namespace %u does not exist (Identify Controller: NN %u)",
			    d->opts.nsid, d->info.nn);

	memset(buf, 0xa5, PAGE);
	memset(&cmd, 0, sizeof(cmd));
	cmd.opc = ADM_IDENTIFY;
	cmd.nsid = d->opts.nsid;
	cmd.prp1 = iova;
	cmd.cdw10 = 0; /* CNS 00h: namespace */
	ret = admin_cmd(d, &cmd, NULL);
	if (ret)
		return ret;
	memcpy(&d->info.nsze, buf, 8);
	nlbaf = buf[25];
	flbas = buf[26];
	if ((flbas & 0xf) > nlbaf)
		return fail(d, -EPROTO, "Identify Namespace %u: FLBAS format %u > NLBAF %u",
			    d->opts.nsid, flbas & 0xf, nlbaf);
	memcpy(&lbaf, buf + 128 + 4 * (flbas & 0xf), 4);
	ms = (uint16_t)(lbaf & 0xffff);
	lbads = (uint8_t)((lbaf >> 16) & 0xff);
	if (d->info.nsze == 0)
		return fail(d, -ENOENT, "namespace %u is inactive (NSZE 0)", d->opts.nsid);
	if (lbads < 9 || lbads > 16)
		return fail(d, -EPROTO, "Identify Namespace %u: LBA data size 2^%u", d->opts.nsid, lbads);
	if (ms)
		return fail(d, -ENOTSUP, "namespace %u has %u bytes of metadata per LBA: not supported",
			    d->opts.nsid, ms);
	d->info.lba_size = 1u << lbads;
	if (d->info.nsze > UINT64_MAX / d->info.lba_size)
		return fail(d, -EPROTO, "Identify Namespace %u: NSZE %" PRIu64 " overflows",
			    d->opts.nsid, d->info.nsze);
	return 0;
}

static int create_queues(struct zoc_nvmed *d)
{
	uint16_t nq = d->opts.io_queues, qsize;
	uint32_t dw0 = 0, mqes = CAP_MQES(d->info.cap) + 1u;
	struct nvme_sqe cmd;
	int ret;

	memset(&cmd, 0, sizeof(cmd));
	cmd.opc = ADM_SET_FEATURES;
	cmd.cdw10 = FEAT_NUM_QUEUES;
	cmd.cdw11 = (uint32_t)(nq - 1) | (uint32_t)(nq - 1) << 16;
	ret = admin_cmd(d, &cmd, &dw0);
	if (ret)
		return ret;
	if ((dw0 & 0xffff) + 1u < nq || (dw0 >> 16) + 1u < nq)
		return fail(d, -ENOSPC, "controller allocated %u SQs and %u CQs; --queues %u asked for more",
			    (dw0 & 0xffff) + 1u, (dw0 >> 16) + 1u, nq);
	/* Queue size: more entries than command ids, so a queue never fills. */
	if (d->opts.queue_slots + 1u > mqes)
		return fail(d, -EINVAL, "queue depth %u needs %u-entry queues; the controller allows %u (CAP.MQES)",
			    d->opts.queue_slots, d->opts.queue_slots + 1u, mqes);
	/* Queues are always contiguous in the one DMA region (PC = 1), which is
	 * what CAP.CQR asks for. */
	qsize = (uint16_t)ZOC_MIN(mqes, ZOC_MAX(2u * d->opts.queue_slots, 64u));
	d->info.queue_size = qsize;
	d->qps = calloc(nq, sizeof(*d->qps));
	if (!d->qps)
		return fail(d, -ENOMEM, "out of memory");
	d->info.io_queues = nq;
	for (uint16_t i = 0; i < nq; i++) {
		uint64_t sq_iova = 0, cq_iova = 0;
		void *sq = ring_alloc(d, (size_t)qsize * 64, &sq_iova);
		void *cq = ring_alloc(d, (size_t)qsize * 16, &cq_iova);

		if (!sq || !cq)
			return fail(d, -ENOMEM, "DMA memory too small for %u queues of %u entries", nq, qsize);
		qp_init(d, &d->qps[i], (uint16_t)(i + 1), qsize, d->opts.queue_slots, sq, cq);
		d->qps[i].err[0] = 0;
		/* remember the IOVAs in the command templates below */
		memset(&cmd, 0, sizeof(cmd));
		cmd.opc = ADM_CREATE_CQ;
		cmd.prp1 = cq_iova;
		cmd.cdw10 = (uint32_t)(qsize - 1) << 16 | (i + 1u);
		cmd.cdw11 = 1 /* PC */ | (d->opts.irq_eventfd ? 2u /* IEN */ | (i + 1u) << 16 : 0);
		/* The eventfds are set after the queues exist (irq fds of the
		 * qpairs are created in setup_irqs). */
		ret = admin_cmd(d, &cmd, NULL);
		if (ret)
			return ret;
		d->nq_created_cq++;
		memset(&cmd, 0, sizeof(cmd));
		cmd.opc = ADM_CREATE_SQ;
		cmd.prp1 = sq_iova;
		cmd.cdw10 = (uint32_t)(qsize - 1) << 16 | (i + 1u);
		cmd.cdw11 = 1 /* PC */ | (i + 1u) << 16;
		ret = admin_cmd(d, &cmd, NULL);
		if (ret)
			return ret;
		d->nq_created_sq++;
	}
	return 0;
}

size_t zoc_nvmed_mem_needed(const struct zoc_nvmed_opts *o)
{
	size_t qsize = ZOC_MAX(2u * o->queue_slots, 64u);
	size_t per_q = ((qsize * 64 + PAGE - 1) & ~(size_t)(PAGE - 1)) +
		       ((qsize * 16 + PAGE - 1) & ~(size_t)(PAGE - 1));

	return (size_t)ADMIN_QSIZE * 64 + PAGE + ADMIN_QSIZE * 16 + PAGE + PAGE +
	       per_q * o->io_queues + PAGE;
}

static int bring_up(struct zoc_nvmed *d)
{
	struct zoc_vfuc_device_info di;
	uint64_t asq_iova = 0, acq_iova = 0;
	uint32_t cc, to_ms, db_end;
	void *asq, *acq;
	int ret;

	ret = zoc_vfuc_device_info(d->v, &di);
	if (ret)
		return vfail(d, ret, "DEVICE_GET_INFO");
	/* DMA memory: one memfd, one region. */
	ret = zoc_vfuc_dma_map(d->v, d->memfd, 0, d->mem, IOVA_BASE, d->mem_size,
			       VFUC_DMA_READABLE | VFUC_DMA_WRITEABLE);
	if (ret)
		return vfail(d, ret, "DMA_MAP of the client memory");
	if (d->nofd) {
		/* Data memory without an fd, as QEMU maps guest RAM that is not
		 * shared: only DMA_READ/DMA_WRITE reach it. */
		ret = zoc_vfuc_dma_map(d->v, -1, 0, d->nofd, IOVA_NOFD, d->mem_size,
				       VFUC_DMA_READABLE | VFUC_DMA_WRITEABLE);
		if (ret)
			return vfail(d, ret, "DMA_MAP (without an fd) of the data memory");
		d->nofd_mapped = true;
	}
	ret = pci_setup(d);
	if (ret)
		return ret;
	ret = reg_read64(d, REG_CAP, &d->info.cap);
	if (!ret)
		ret = reg_read32(d, REG_VS, &d->info.vs);
	if (ret)
		return ret;
	if (d->info.cap == UINT64_MAX)
		return fail(d, -ENODEV, "CAP reads all ones");
	if (!CAP_CSS_NVM(d->info.cap))
		return fail(d, -ENOTSUP, "CAP.CSS 0x%x lacks the NVM command set", (unsigned)((d->info.cap >> 37) & 0xff));
	if (CAP_MPSMIN(d->info.cap) != 0)
		return fail(d, -ENOTSUP, "CAP.MPSMIN %u: the controller does not do 4 KiB pages",
			    CAP_MPSMIN(d->info.cap));
	if (CAP_MQES(d->info.cap) < 1)
		return fail(d, -EPROTO, "CAP.MQES 0 is reserved");
	d->db_stride = 4u << CAP_DSTRD(d->info.cap);
	to_ms = ZOC_MAX(CAP_TO(d->info.cap), 1u) * 500u;
	if (d->info.vs < 0x10000)
		return fail(d, -ENOTSUP, "VS 0x%x: not NVMe 1.x", d->info.vs);
	db_end = db_offset(d, d->opts.io_queues, true) + 4;
	ret = map_doorbells(d, db_end);
	if (ret)
		return ret;
	d->info.doorbells_mmapped = d->db_map != NULL;

	/* Reset: disable and wait for RDY 0 (NVMe 1.4 7.6.1). */
	ret = reg_read32(d, REG_CC, &cc);
	if (ret)
		return ret;
	if (cc & CC_EN) {
		ret = reg_write32(d, REG_CC, cc & ~CC_EN);
		if (ret)
			return ret;
	}
	ret = wait_csts(d, CSTS_RDY, 0, to_ms, "disabling the controller");
	if (ret)
		return ret;

	asq = ring_alloc(d, ADMIN_QSIZE * 64, &asq_iova);
	acq = ring_alloc(d, ADMIN_QSIZE * 16, &acq_iova);
	if (!asq || !acq)
		return fail(d, -ENOMEM, "DMA memory too small for the admin queue");
	qp_init(d, &d->aq, 0, ADMIN_QSIZE, ADMIN_QSIZE, asq, acq);
	ret = reg_write32(d, REG_AQA, (ADMIN_QSIZE - 1u) << 16 | (ADMIN_QSIZE - 1u));
	if (!ret)
		ret = reg_write64(d, REG_ASQ, asq_iova);
	if (!ret)
		ret = reg_write64(d, REG_ACQ, acq_iova);
	if (ret)
		return ret;
	cc = CC_IOSQES | CC_IOCQES | CC_EN; /* CSS NVM, MPS 4 KiB, AMS round robin */
	ret = reg_write32(d, REG_CC, cc);
	if (ret)
		return ret;
	ret = wait_csts(d, CSTS_RDY, CSTS_RDY, to_ms, "enabling the controller");
	if (ret)
		return ret;
	d->enabled = true;
	ret = identify(d);
	if (ret)
		return ret;
	ret = create_queues(d);
	if (ret)
		return ret;
	if (d->opts.irq_eventfd) {
		ret = setup_irqs(d);
		if (ret)
			return ret;
	}
	d->info.irq_eventfd = d->opts.irq_eventfd;
	return 0;
}

struct zoc_nvmed *zoc_nvmed_open(const struct zoc_nvmed_opts *opts, const char **why)
{
	static char whybuf[1024];
	struct zoc_nvmed *d;
	const char *vwhy = "";
	size_t need = zoc_nvmed_mem_needed(opts);

	*why = whybuf;
	if (opts->io_queues == 0 || opts->io_queues > 1024 || opts->queue_slots == 0 ||
	    opts->nsid == 0) {
		snprintf(whybuf, sizeof(whybuf), "bad options (queues 1..1024, depth >= 1, nsid >= 1)");
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(whybuf, sizeof(whybuf), "out of memory");
		return NULL;
	}
	d->opts = *opts;
	d->memfd = -1;
	d->admin_irq_fd = -1;
	d->mem_size = ZOC_MAX((size_t)opts->mem_bytes, need);
	d->mem_size = (d->mem_size + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
	d->memfd = memfd_create("zoc-perf-dma", MFD_CLOEXEC);
	if (d->memfd < 0 || ftruncate(d->memfd, (off_t)d->mem_size) < 0) {
		snprintf(whybuf, sizeof(whybuf), "memfd of %zu bytes: %s", d->mem_size, strerror(errno));
		goto err;
	}
	d->mem = mmap(NULL, d->mem_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, d->memfd, 0);
	if (d->mem == MAP_FAILED) {
		d->mem = NULL;
		snprintf(whybuf, sizeof(whybuf), "mmap of the %zu-byte memfd: %s", d->mem_size, strerror(errno));
		goto err;
	}
	if (opts->data_nofd || opts->queues_nofd) {
		d->nofd = mmap(NULL, d->mem_size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (d->nofd == MAP_FAILED) {
			d->nofd = NULL;
			snprintf(whybuf, sizeof(whybuf), "anonymous memory of %zu bytes: %s",
				 d->mem_size, strerror(errno));
			goto err;
		}
	}
	d->v = zoc_vfuc_connect(opts->socket, opts->timeout_ms, &vwhy);
	if (!d->v) {
		snprintf(whybuf, sizeof(whybuf), "%s", vwhy);
		goto err;
	}
	if (bring_up(d)) {
		snprintf(whybuf, sizeof(whybuf), "%s", d->err);
		goto err;
	}
	return d;
err:
	zoc_nvmed_close(d, NULL);
	return NULL;
}

int zoc_nvmed_close(struct zoc_nvmed *d, const char **why)
{
	static char last[768];

	int ret = 0, r;
	struct nvme_sqe cmd;

	if (!d)
		return 0;
	if (d->v && d->enabled) {
		char keep[sizeof(d->err)];

		memcpy(keep, d->err, sizeof(keep));
		for (int i = d->nq_created_sq; i > 0 && !ret; i--) {
			memset(&cmd, 0, sizeof(cmd));
			cmd.opc = ADM_DELETE_SQ;
			cmd.cdw10 = (uint32_t)i;
			ret = admin_cmd(d, &cmd, NULL);
		}
		for (int i = d->nq_created_cq; i > 0 && !ret; i--) {
			memset(&cmd, 0, sizeof(cmd));
			cmd.opc = ADM_DELETE_CQ;
			cmd.cdw10 = (uint32_t)i;
			ret = admin_cmd(d, &cmd, NULL);
		}
		if (!ret) {
			uint32_t cc;
			uint32_t to_ms = ZOC_MAX(CAP_TO(d->info.cap), 1u) * 500u;

			ret = reg_read32(d, REG_CC, &cc);
			if (!ret)
				ret = reg_write32(d, REG_CC, (cc & ~(3u << 14)) | CC_SHN_NORMAL);
			if (!ret)
				ret = wait_csts(d, CSTS_SHST_MASK, CSTS_SHST_DONE, to_ms,
						"shutting the controller down (CC.SHN)");
			if (!ret)
				ret = reg_write32(d, REG_CC, cc & ~(CC_EN | (3u << 14)));
			if (!ret)
				ret = wait_csts(d, CSTS_RDY, 0, to_ms, "disabling the controller");
		}
		if (ret && keep[0]) /* keep the first error */
			memcpy(d->err, keep, sizeof(keep));
	}
	if (d->v && d->irqs_set) {
		r = zoc_vfuc_set_irqs(d->v, VFUC_IRQ_MSIX, 0, 0, NULL);
		if (r && !ret)
			ret = vfail(d, r, "SET_IRQS disabling MSI-X");
	}
	if (d->v && !ret) {
		r = zoc_vfuc_dma_unmap(d->v, IOVA_BASE, d->mem_size);
		if (r)
			ret = vfail(d, r, "DMA_UNMAP");
	}
	if (d->v && !ret && d->nofd_mapped) {
		r = zoc_vfuc_dma_unmap(d->v, IOVA_NOFD, d->mem_size);
		if (r)
			ret = vfail(d, r, "DMA_UNMAP of the fd-less data memory");
	}
	zoc_vfuc_close(d->v);
	d->v = NULL;
	if (d->db_map)
		munmap(d->db_map, d->db_map_size);
	if (d->qps)
		for (unsigned i = 0; i < d->info.io_queues; i++)
			if (d->qps[i].irq_fd >= 0)
				close(d->qps[i].irq_fd);
	free(d->qps);
	if (d->admin_irq_fd >= 0)
		close(d->admin_irq_fd);
	if (d->mem)
		munmap(d->mem, d->mem_size);
	if (d->nofd)
		munmap(d->nofd, d->mem_size);
	if (d->memfd >= 0)
		close(d->memfd);
	snprintf(last, sizeof(last), "%s", ret ? d->err : "");
	if (why)
		*why = last;
	free(d);
	return ret;
}
