/* SPDX-License-Identifier: MIT */
/*
 * nvme_admin.c - admin commands (reactor 0): Identify, queue creation and
 * deletion, features, log pages, asynchronous events, abort, keep alive.
 */
#include "nvme/nvme.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/pool.h"
#include "core/util.h"
#include "link/dma.h"
#include "nvme/nvme_internal.h"
#include "pci/pci.h"

#define FW_REV "1.0"
#define MODEL "ZOC NVMe Controller"
#define WCTEMP 343 /* K */
#define CCTEMP 373
#define COMPOSITE_TEMP 313
#define AEC_SUPPORTED 0x1ffu /* SMART warnings 7:0, namespace attribute notices */

static void put16(uint8_t *b, size_t off, uint16_t v)
{
	memcpy(b + off, &v, 2);
}

static void put32(uint8_t *b, size_t off, uint32_t v)
{
	memcpy(b + off, &v, 4);
}

static void put64(uint8_t *b, size_t off, uint64_t v)
{
	memcpy(b + off, &v, 8);
}

static void put_str(uint8_t *b, size_t off, size_t width, const char *s)
{
	size_t n = strlen(s);

	memset(b + off, ' ', width);
	memcpy(b + off, s, ZOC_MIN(n, width));
}

void nvme_features_reset(struct zoc_nvme_ctrlr *c)
{
	c->feat_arb = 0;
	c->feat_pm = 0;
	c->feat_temp = WCTEMP;
	c->feat_aec = 0;
	c->feat_kato = 0;
	c->feat_wa = 0;
	c->nq_set = false;
	c->nsqa = c->max_io_queues;
	c->ncqa = c->max_io_queues;
	__atomic_store_n(&c->feat_coalesce, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&c->wce, true, __ATOMIC_RELAXED);
	if (c->iv_cd)
		for (unsigned i = 0; i < c->msix_vectors; i++)
			__atomic_store_n(&c->iv_cd[i], 0, __ATOMIC_RELAXED);
}

void nvme_aer_drop_all(struct zoc_nvme_ctrlr *c)
{
	while (c->naer) {
		struct nvme_req *r = c->aer[--c->naer];

		nvme_req_complete(r, NVME_SC_ABORT_SQ_DELETED);
	}
}

/* Copies len bytes of the admin scratch buffer to the command's PRPs. */
static uint16_t xfer_out(struct zoc_nvme_ctrlr *c, struct nvme_req *r, const struct nvme_sqe *cmd,
			 const void *buf, uint32_t len)
{
	uint16_t st = nvme_map_data(c, r, cmd, len, true, false);

	if (ZOC_UNLIKELY(st == NVME_SC_DATA_XFER_ERROR) && c->mem && c->mem->nremote)
		return nvme_admin_bounce_out(c, r, cmd, buf, len); /* memory without an fd */
	if (st)
		return st;
	nvme_iov_copy(r->iov, r->iovcnt, 0, (void *)buf, len, true);
	return NVME_SC_SUCCESS;
}

/* ---------------------------------------------------------------- identify */

static void identify_ctrl(struct zoc_nvme_ctrlr *c, uint8_t *b)
{
	char nqn[256];

	put16(b, NVME_IDC_VID, NVME_VENDOR_ID);
	put16(b, NVME_IDC_SSVID, NVME_VENDOR_ID);
	put_str(b, NVME_IDC_SN, 20, c->name); /* the name's first 20 characters */
	put_str(b, NVME_IDC_MN, 40, MODEL);
	put_str(b, NVME_IDC_FR, 8, FW_REV);
	b[NVME_IDC_RAB] = 6;
	b[NVME_IDC_MDTS] = NVME_MDTS;
	put16(b, NVME_IDC_CNTLID, c->cntlid);
	put32(b, NVME_IDC_VER, NVME_VS_1_4);
	put32(b, NVME_IDC_OAES, NVME_OAES_NS_ATTR);
	b[NVME_IDC_CNTRLTYPE] = 1; /* I/O controller */
	put16(b, NVME_IDC_OACS, c->dbbuf_ok ? 1u << 8 : 0); /* Doorbell Buffer Config */
	b[NVME_IDC_ACL] = NVME_ACL;
	b[NVME_IDC_AERL] = NVME_AERL;
	b[NVME_IDC_FRMW] = 0x3; /* slot 1 read-only, one slot */
	b[NVME_IDC_LPA] = 1u << 2; /* extended data for Get Log Page */
	b[NVME_IDC_ELPE] = NVME_ELPE;
	b[NVME_IDC_NPSS] = 0;
	put16(b, NVME_IDC_WCTEMP, WCTEMP);
	put16(b, NVME_IDC_CCTEMP, CCTEMP);
	put16(b, NVME_IDC_KAS, NVME_KAS);
	b[NVME_IDC_SQES] = (NVME_SQES << 4) | NVME_SQES;
	b[NVME_IDC_CQES] = (NVME_CQES << 4) | NVME_CQES;
	put32(b, NVME_IDC_NN, ZOC_NVME_MAX_NS);
	put16(b, NVME_IDC_ONCS, NVME_ONCS_DSM | NVME_ONCS_WRITE_ZEROES);
	b[NVME_IDC_VWC] = 0x5; /* present; flush to all namespaces not supported */
	put32(b, NVME_IDC_SGLS, 0x1); /* SGLs, no alignment rule */
	snprintf(nqn, sizeof(nqn), "nqn.2024-11.io.zoc:nvme:%s", c->name);
	memcpy(b + NVME_IDC_SUBNQN, nqn, ZOC_MIN(strlen(nqn), 255));
	put16(b, NVME_IDC_PSD0, 2500); /* 25 W */
}

static void identify_ns(struct zoc_nvme_ctrlr *c, const struct nvme_ns *ns, uint8_t *b)
{
	(void)c;
	put64(b, NVME_IDN_NSZE, ns->nsze);
	put64(b, NVME_IDN_NCAP, ns->nsze);
	put64(b, NVME_IDN_NUSE, ns->nsze);
	b[NVME_IDN_NSFEAT] = 0;
	b[NVME_IDN_NLBAF] = 0;
	b[NVME_IDN_FLBAS] = 0;
	memcpy(b + NVME_IDN_NGUID, ns->nguid, 16);
	put32(b, NVME_IDN_LBAF0, ns->lbads << 16);
	if (ns->bdev->read_only)
		b[99] = 1; /* NSATTR: write protected */
}

static uint16_t adm_identify(struct zoc_nvme_ctrlr *c, struct nvme_req *r,
			     const struct nvme_sqe *cmd)
{
	uint8_t *b = c->scratch;
	uint8_t cns = cmd->cdw10 & 0xff;
	uint32_t nsid = cmd->nsid;
	struct nvme_ns *ns;

	memset(b, 0, NVME_IDENTIFY_SIZE);
	switch (cns) {
	case NVME_CNS_NS:
		if (nsid == 0 || nsid > ZOC_NVME_MAX_NS)
			return NVME_SC_INVALID_NS;
		ns = nvme_ns_get(c, nsid);
		if (ns)
			identify_ns(c, ns, b);
		break;
	case NVME_CNS_CTRL:
		identify_ctrl(c, b);
		break;
	case NVME_CNS_ACTIVE_NS: {
		unsigned n = 0;

		if (nsid >= 0xfffffffeu)
			return NVME_SC_INVALID_NS;
		for (uint32_t id = nsid + 1; id <= ZOC_NVME_MAX_NS; id++)
			if (nvme_ns_get(c, id))
				put32(b, 4 * n++, id);
		break;
	}
	case NVME_CNS_NS_DESC: {
		ns = nvme_ns_get(c, nsid);
		if (!ns)
			return NVME_SC_INVALID_NS;
		b[0] = NVME_NIDT_NGUID;
		b[1] = 16;
		memcpy(b + 4, ns->nguid, 16);
		b[20] = NVME_NIDT_UUID;
		b[21] = 16;
		memcpy(b + 24, ns->uuid, 16);
		break;
	}
	default:
		return NVME_SC_INVALID_FIELD;
	}
	return xfer_out(c, r, cmd, b, NVME_IDENTIFY_SIZE);
}

/* ------------------------------------------------------------ queues */

static bool any_io_queue(const struct zoc_nvme_ctrlr *c)
{
	for (unsigned q = 1; q <= NVME_MAX_QID; q++)
		if (c->sq[q].exists || c->cq[q].exists)
			return true;
	return false;
}

static uint32_t mqes_entries(const struct zoc_nvme_ctrlr *c)
{
	return (uint32_t)(c->cap & 0xffff) + 1;
}

static uint16_t adm_create_cq(struct zoc_nvme_ctrlr *c, const struct nvme_sqe *cmd)
{
	uint16_t qid = cmd->cdw10 & 0xffff;
	uint32_t size = (cmd->cdw10 >> 16) + 1;
	bool pc = cmd->cdw11 & 1, ien = cmd->cdw11 & 2;
	uint16_t iv = cmd->cdw11 >> 16;
	int rc;

	if (qid == 0 || qid > c->ncqa || qid > NVME_MAX_QID || c->cq[qid].exists)
		return NVME_SC_QID_INVALID;
	if (size < 2 || size > mqes_entries(c))
		return NVME_SC_QUEUE_SIZE;
	if (!pc || (cmd->prp1 & (c->page_size - 1)) || NVME_SQE_PSDT(cmd->flags))
		return NVME_SC_INVALID_FIELD;
	if (iv >= c->msix_vectors)
		return NVME_SC_INVALID_VECTOR;
	rc = nvme_cq_create(c, qid, cmd->prp1, size, iv, ien);
	if (rc == -EFAULT)
		return NVME_SC_INVALID_FIELD;
	return rc ? NVME_SC_INTERNAL : NVME_SC_SUCCESS;
}

static uint16_t adm_create_sq(struct zoc_nvme_ctrlr *c, const struct nvme_sqe *cmd)
{
	uint16_t qid = cmd->cdw10 & 0xffff;
	uint32_t size = (cmd->cdw10 >> 16) + 1;
	bool pc = cmd->cdw11 & 1;
	uint16_t qprio = (cmd->cdw11 >> 1) & 3;
	uint16_t cqid = cmd->cdw11 >> 16;
	int rc;

	if (cqid == 0 || cqid > NVME_MAX_QID || !c->cq[cqid].exists || c->cq[cqid].del_req)
		return NVME_SC_CQ_INVALID;
	if (qid == 0 || qid > c->nsqa || qid > NVME_MAX_QID || c->sq[qid].exists)
		return NVME_SC_QID_INVALID;
	if (size < 2 || size > mqes_entries(c))
		return NVME_SC_QUEUE_SIZE;
	if (!pc || (cmd->prp1 & (c->page_size - 1)) || NVME_SQE_PSDT(cmd->flags))
		return NVME_SC_INVALID_FIELD;
	rc = nvme_sq_create(c, qid, cmd->prp1, size, cqid, qprio);
	if (rc == -EFAULT)
		return NVME_SC_INVALID_FIELD;
	return rc ? NVME_SC_INTERNAL : NVME_SC_SUCCESS;
}

/* 0: the command went asynchronous; else a status. */
static uint16_t adm_delete_sq(struct zoc_nvme_ctrlr *c, struct nvme_req *r,
			      const struct nvme_sqe *cmd)
{
	uint16_t qid = cmd->cdw10 & 0xffff;

	if (qid == 0 || qid > NVME_MAX_QID || !c->sq[qid].exists || c->sq[qid].del_req)
		return NVME_SC_QID_INVALID;
	return nvme_sq_delete(c, qid, r) ? NVME_SC_INTERNAL : 0;
}

static uint16_t adm_delete_cq(struct zoc_nvme_ctrlr *c, struct nvme_req *r,
			      const struct nvme_sqe *cmd)
{
	uint16_t qid = cmd->cdw10 & 0xffff;

	if (qid == 0 || qid > NVME_MAX_QID || !c->cq[qid].exists || c->cq[qid].del_req)
		return NVME_SC_QID_INVALID;
	if (c->cq[qid].nsq)
		return NVME_SC_INVALID_QUEUE_DELETION;
	return nvme_cq_delete(c, qid, r) ? NVME_SC_INTERNAL : 0;
}

/* ------------------------------------------------------------ features */

static uint16_t adm_features(struct zoc_nvme_ctrlr *c, struct nvme_req *r,
			     const struct nvme_sqe *cmd, bool set)
{
	uint8_t fid = cmd->cdw10 & 0xff;
	uint8_t sel = (cmd->cdw10 >> 8) & 0x7;
	bool sv = cmd->cdw10 >> 31;
	uint32_t v = cmd->cdw11;
	bool dflt = !set && (sel == NVME_FEAT_SEL_DEFAULT || sel == NVME_FEAT_SEL_SAVED);

	if (set && sv)
		return NVME_SC_FEATURE_NOT_SAVEABLE;
	if (!set && sel > NVME_FEAT_SEL_CAPS)
		return NVME_SC_INVALID_FIELD;
	switch (fid) {
	case NVME_FEAT_ARBITRATION:
	case NVME_FEAT_POWER_MGMT:
	case NVME_FEAT_TEMP_THRESH:
	case NVME_FEAT_VOLATILE_WC:
	case NVME_FEAT_NUM_QUEUES:
	case NVME_FEAT_IRQ_COALESCE:
	case NVME_FEAT_IRQ_CONFIG:
	case NVME_FEAT_WRITE_ATOMIC:
	case NVME_FEAT_ASYNC_EVENT:
	case NVME_FEAT_KEEP_ALIVE:
		break;
	default:
		return NVME_SC_INVALID_FIELD;
	}
	if (!set && sel == NVME_FEAT_SEL_CAPS) {
		r->dw0 = 1u << 2; /* changeable, not saveable, not per namespace */
		return NVME_SC_SUCCESS;
	}
	switch (fid) {
	case NVME_FEAT_ARBITRATION:
		if (set)
			c->feat_arb = v & 0xffffff07u;
		else
			r->dw0 = dflt ? 0 : c->feat_arb;
		break;
	case NVME_FEAT_POWER_MGMT:
		if (set) {
			if ((v & 0x1f) > 0) /* NPSS is 0: one power state */
				return NVME_SC_INVALID_FIELD;
			c->feat_pm = v & 0xff;
		} else {
			r->dw0 = dflt ? 0 : c->feat_pm;
		}
		break;
	case NVME_FEAT_TEMP_THRESH: {
		uint32_t tmpsel = (v >> 16) & 0xf, thsel = (v >> 20) & 0x3;

		if ((tmpsel != 0 && tmpsel != 0xf) || thsel > 1)
			return NVME_SC_INVALID_FIELD;
		if (thsel == 1) { /* under temperature threshold: fixed at 0 */
			if (set && (v & 0xffff))
				return NVME_SC_INVALID_FIELD;
			r->dw0 = 0;
			break;
		}
		if (set)
			c->feat_temp = v & 0xffff;
		else
			r->dw0 = dflt ? WCTEMP : c->feat_temp;
		break;
	}
	case NVME_FEAT_VOLATILE_WC:
		if (set)
			__atomic_store_n(&c->wce, (v & 1) != 0, __ATOMIC_RELAXED);
		else
			r->dw0 = dflt ? 1 : __atomic_load_n(&c->wce, __ATOMIC_RELAXED);
		break;
	case NVME_FEAT_NUM_QUEUES:
		if (set) {
			uint32_t nsqr = v & 0xffff, ncqr = v >> 16;

			if (nsqr == 0xffff || ncqr == 0xffff)
				return NVME_SC_INVALID_FIELD;
			if (any_io_queue(c))
				return NVME_SC_CMD_SEQ_ERROR;
			c->nsqa = (uint16_t)ZOC_MIN(nsqr + 1, c->max_io_queues);
			c->ncqa = (uint16_t)ZOC_MIN(ncqr + 1, c->max_io_queues);
			c->nq_set = true;
			r->dw0 = (uint32_t)(c->nsqa - 1) | ((uint32_t)(c->ncqa - 1) << 16);
		} else {
			uint16_t s = dflt ? c->max_io_queues : c->nsqa;
			uint16_t q = dflt ? c->max_io_queues : c->ncqa;

			r->dw0 = (uint32_t)(s - 1) | ((uint32_t)(q - 1) << 16);
		}
		break;
	case NVME_FEAT_IRQ_COALESCE:
		if (set)
			__atomic_store_n(&c->feat_coalesce, v & 0xffff, __ATOMIC_RELAXED);
		else
			r->dw0 = dflt ? 0 : __atomic_load_n(&c->feat_coalesce, __ATOMIC_RELAXED);
		break;
	case NVME_FEAT_IRQ_CONFIG: {
		uint16_t iv = v & 0xffff;

		if (iv >= c->msix_vectors)
			return NVME_SC_INVALID_FIELD;
		if (set)
			__atomic_store_n(&c->iv_cd[iv], (uint8_t)((v >> 16) & 1), __ATOMIC_RELAXED);
		else
			r->dw0 = iv | (dflt ? 0
					    : (uint32_t)__atomic_load_n(&c->iv_cd[iv],
									__ATOMIC_RELAXED)
						      << 16);
		break;
	}
	case NVME_FEAT_WRITE_ATOMIC:
		if (set)
			c->feat_wa = v & 1;
		else
			r->dw0 = dflt ? 0 : c->feat_wa;
		break;
	case NVME_FEAT_ASYNC_EVENT:
		if (set)
			c->feat_aec = v & AEC_SUPPORTED;
		else
			r->dw0 = dflt ? 0 : c->feat_aec;
		break;
	case NVME_FEAT_KEEP_ALIVE:
		if (set) {
			uint32_t g = NVME_KAS * 100; /* ms */

			c->feat_kato = v ? (v + g - 1) / g * g : 0;
			c->ka_deadline_ns =
				c->feat_kato ? zoc_now_ns() + (uint64_t)c->feat_kato * 1000000 : 0;
		} else {
			r->dw0 = dflt ? 0 : c->feat_kato;
		}
		break;
	}
	return NVME_SC_SUCCESS;
}

/* ------------------------------------------------------------ log pages */

static uint32_t build_smart(struct zoc_nvme_ctrlr *c, uint8_t *b)
{
	struct zoc_io_stats s;
	uint64_t rd_units, wr_units;

	nvme_sum_stats(c, &s);
	rd_units = (s.read_bytes / 512 + 999) / 1000;
	wr_units = (s.write_bytes / 512 + 999) / 1000;
	b[0] = 0;                          /* critical warning */
	put16(b, 1, COMPOSITE_TEMP);
	b[3] = 100;                        /* available spare */
	b[4] = 10;                         /* threshold */
	b[5] = 0;                          /* percentage used */
	put64(b, 32, rd_units);
	put64(b, 48, wr_units);
	put64(b, 64, s.read_ops);
	put64(b, 80, s.write_ops);
	put64(b, 112, 1);                  /* power cycles */
	put64(b, 176, c->err_count);       /* error log entries */
	return NVME_LOG_SMART_SIZE;
}

static uint16_t adm_get_log(struct zoc_nvme_ctrlr *c, struct nvme_req *r,
			    const struct nvme_sqe *cmd)
{
	uint8_t lid = cmd->cdw10 & 0xff;
	bool rae = (cmd->cdw10 >> 15) & 1;
	uint64_t numd = ((uint64_t)(cmd->cdw11 & 0xffff) << 16 | (cmd->cdw10 >> 16)) + 1;
	uint64_t len = numd * 4;
	uint64_t off = (uint64_t)cmd->cdw12 | ((uint64_t)cmd->cdw13 << 32);
	uint8_t *b = c->scratch;
	uint32_t size;
	int mask_type = -1;
	uint16_t st;

	if (off & 3 || len > NVME_MAX_XFER)
		return NVME_SC_INVALID_FIELD;
	memset(b, 0, NVME_IDENTIFY_SIZE);
	switch (lid) {
	case NVME_LOG_ERROR:
		size = (NVME_ELPE + 1) * NVME_ERROR_ENTRY_SIZE;
		for (unsigned i = 0; i <= NVME_ELPE; i++) {
			unsigned k = (c->err_next + NVME_ELPE - i) % (NVME_ELPE + 1);

			memcpy(b + i * NVME_ERROR_ENTRY_SIZE, &c->errlog[k], NVME_ERROR_ENTRY_SIZE);
		}
		mask_type = NVME_AER_TYPE_ERROR;
		break;
	case NVME_LOG_SMART:
		if (cmd->nsid != 0 && cmd->nsid != NVME_NSID_ALL)
			return NVME_SC_INVALID_FIELD; /* LPA bit 0: no per-namespace data */
		size = build_smart(c, b);
		mask_type = NVME_AER_TYPE_SMART;
		break;
	case NVME_LOG_FW_SLOT:
		size = NVME_LOG_FW_SIZE;
		b[0] = 1; /* active: slot 1 */
		put_str(b, 8, 8, FW_REV);
		break;
	case NVME_LOG_CHANGED_NS:
		size = NVME_LOG_CHANGED_NS_SIZE;
		if (c->changed_overflow)
			put32(b, 0, NVME_NSID_ALL);
		else
			for (unsigned i = 0; i < c->nchanged; i++)
				put32(b, 4 * i, c->changed_ns[i]);
		mask_type = NVME_AER_TYPE_NOTICE;
		break;
	default:
		return NVME_SC_INVALID_LOG_PAGE;
	}
	if (off >= size)
		return NVME_SC_INVALID_FIELD;
	st = nvme_map_data(c, r, cmd, len, true, false);
	if (ZOC_UNLIKELY(st == NVME_SC_DATA_XFER_ERROR) && c->mem && c->mem->nremote) {
		/* memory without an fd: the page (and zeros past its end) goes
		 * through a copy */
		uint8_t *tmp = calloc(1, len);

		if (!tmp)
			return NVME_SC_INTERNAL;
		memcpy(tmp, b + off, ZOC_MIN(len, size - off));
		st = nvme_admin_bounce_out(c, r, cmd, tmp, (uint32_t)len);
		free(tmp);
		if (st != NVME_SC_ASYNC)
			return st;
		goto read;
	}
	if (st)
		return st;
	nvme_iov_copy(r->iov, r->iovcnt, 0, b + off, ZOC_MIN(len, size - off), true);
	if (len > size - off) {
		/* beyond the end of the log: zeros */
		static const uint8_t zeros[4096];

		for (uint64_t done = size - off; done < len;) {
			uint64_t k = ZOC_MIN(len - done, sizeof(zeros));

			nvme_iov_copy(r->iov, r->iovcnt, done, (void *)zeros, k, true);
			done += k;
		}
	}
	st = NVME_SC_SUCCESS;
read:
	if (!rae && mask_type >= 0) {
		if (lid == NVME_LOG_CHANGED_NS) {
			c->nchanged = 0;
			c->changed_overflow = false;
		}
		c->aen_masked &= ~(1u << mask_type);
		c->aen_kick = true; /* after this command's completion */
	}
	return st;
}

/* ------------------------------------------------------------ dispatch */

/* Doorbell Buffer Config: PRP1 the shadow doorbells, PRP2 the event
 * indexes, one page each. The reactors poll, so the event indexes are left
 * as the driver set them (it then writes the MMIO doorbells rarely). */
static uint16_t adm_dbbuf(struct zoc_nvme_ctrlr *c, const struct nvme_sqe *cmd)
{
	uint32_t *db, *ei;

	if (!c->dbbuf_ok)
		return NVME_SC_INVALID_OPCODE;
	if (!cmd->prp1 || !cmd->prp2 || (cmd->prp1 & (c->page_size - 1)) ||
	    (cmd->prp2 & (c->page_size - 1)))
		return NVME_SC_INVALID_FIELD;
	db = zoc_mem_gpa_to_hva(c->mem, cmd->prp1, c->page_size, false);
	ei = zoc_mem_gpa_to_hva(c->mem, cmd->prp2, c->page_size, true);
	if (!db || !ei)
		return NVME_SC_INVALID_FIELD;
	c->dbbuf_ei = ei;
	__atomic_store_n(&c->dbbuf_db, db, __ATOMIC_RELEASE);
	ZOC_INFO("%s: shadow doorbells at 0x%" PRIx64, c->name, cmd->prp1);
	return NVME_SC_SUCCESS;
}

void nvme_admin_exec(struct zoc_nvme_ctrlr *c, struct nvme_req *r, const struct nvme_sqe *cmd)
{
	uint16_t st;

	if (NVME_SQE_FUSE(cmd->flags)) {
		nvme_req_complete(r, NVME_SC_INVALID_FIELD);
		return;
	}
	if (NVME_SQE_PSDT(cmd->flags) != NVME_PSDT_PRP) {
		nvme_req_complete(r, NVME_SC_INVALID_FIELD);
		return;
	}
	switch (cmd->opc) {
	case NVME_ADM_IDENTIFY:
		st = adm_identify(c, r, cmd);
		break;
	case NVME_ADM_CREATE_CQ:
		st = adm_create_cq(c, cmd);
		break;
	case NVME_ADM_CREATE_SQ:
		st = adm_create_sq(c, cmd);
		break;
	case NVME_ADM_DELETE_SQ:
		st = adm_delete_sq(c, r, cmd);
		if (!st)
			return;
		break;
	case NVME_ADM_DELETE_CQ:
		st = adm_delete_cq(c, r, cmd);
		if (!st)
			return;
		break;
	case NVME_ADM_GET_FEATURES:
		st = adm_features(c, r, cmd, false);
		break;
	case NVME_ADM_SET_FEATURES:
		st = adm_features(c, r, cmd, true);
		break;
	case NVME_ADM_GET_LOG_PAGE:
		st = adm_get_log(c, r, cmd);
		break;
	case NVME_ADM_ASYNC_EVENT:
		if (c->naer > NVME_AERL) {
			st = NVME_SC_AER_LIMIT;
			break;
		}
		c->aer[c->naer++] = r;
		nvme_aen_kick(c);
		return;
	case NVME_ADM_ABORT:
		r->dw0 = 1; /* not aborted: commands are never held back */
		st = NVME_SC_SUCCESS;
		break;
	case NVME_ADM_DBBUF:
		st = adm_dbbuf(c, cmd);
		break;
	case NVME_ADM_KEEP_ALIVE:
		if (c->feat_kato)
			c->ka_deadline_ns = zoc_now_ns() + (uint64_t)c->feat_kato * 1000000;
		st = NVME_SC_SUCCESS;
		break;
	default:
		ZOC_WARN_RL("%s: admin opcode 0x%02x not supported", c->name, cmd->opc);
		st = NVME_SC_INVALID_OPCODE;
		break;
	}
	if (st != NVME_SC_ASYNC)
		nvme_req_complete(r, st); /* else the copy's end completes it */
	if (c->aen_kick) {
		c->aen_kick = false;
		nvme_aen_kick(c);
	}
}
