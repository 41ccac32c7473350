/* SPDX-License-Identifier: MIT */
/*
 * nvme_spec.h - wire structures and constants of the NVMe base
 * specification 1.4 that the controller model uses (registers, SQE/CQE,
 * opcodes, status codes, identify/log layouts). Little-endian hosts only,
 * like the rest of zocd.
 */
#ifndef ZOC_NVME_NVME_SPEC_H
#define ZOC_NVME_NVME_SPEC_H

#include <stdint.h>

/* ---- controller registers (BAR0 offsets) ---- */
#define NVME_REG_CAP 0x00
#define NVME_REG_VS 0x08
#define NVME_REG_INTMS 0x0c
#define NVME_REG_INTMC 0x10
#define NVME_REG_CC 0x14
#define NVME_REG_CSTS 0x1c
#define NVME_REG_NSSR 0x20
#define NVME_REG_AQA 0x24
#define NVME_REG_ASQ 0x28
#define NVME_REG_ACQ 0x30
#define NVME_REG_CMBLOC 0x38
#define NVME_REG_CMBSZ 0x3c
#define NVME_REG_DBS 0x1000

#define NVME_CAP_MQES(x) ((uint64_t)(x) & 0xffff)
#define NVME_CAP_CQR (1ull << 16)
#define NVME_CAP_AMS_SHIFT 17
#define NVME_CAP_TO_SHIFT 24
#define NVME_CAP_DSTRD_SHIFT 32
#define NVME_CAP_NSSRS (1ull << 36)
#define NVME_CAP_CSS_NVM (1ull << 37)
#define NVME_CAP_BPS (1ull << 45)
#define NVME_CAP_MPSMIN_SHIFT 48
#define NVME_CAP_MPSMAX_SHIFT 52

#define NVME_VS_1_4 0x00010400u

#define NVME_CC_EN (1u << 0)
#define NVME_CC_CSS(cc) (((cc) >> 4) & 0x7)
#define NVME_CC_MPS(cc) (((cc) >> 7) & 0xf)
#define NVME_CC_AMS(cc) (((cc) >> 11) & 0x7)
#define NVME_CC_SHN(cc) (((cc) >> 14) & 0x3)
#define NVME_CC_IOSQES(cc) (((cc) >> 16) & 0xf)
#define NVME_CC_IOCQES(cc) (((cc) >> 20) & 0xf)
#define NVME_CC_WRITABLE 0x00fffff1u

#define NVME_CSTS_RDY (1u << 0)
#define NVME_CSTS_CFS (1u << 1)
#define NVME_CSTS_SHST_SHIFT 2
#define NVME_CSTS_SHST_MASK (3u << 2)
#define NVME_CSTS_SHST_OCCURRING (1u << 2)
#define NVME_CSTS_SHST_COMPLETE (2u << 2)
#define NVME_CSTS_NSSRO (1u << 4)
#define NVME_CSTS_PP (1u << 5)

#define NVME_AQA_ASQS(a) ((a) & 0xfff)
#define NVME_AQA_ACQS(a) (((a) >> 16) & 0xfff)
#define NVME_AQA_WRITABLE 0x0fff0fffu

/* ---- submission / completion queue entries ---- */
struct nvme_sqe {
	uint8_t opc;
	uint8_t flags; /* FUSE 1:0, PSDT 7:6 */
	uint16_t cid;
	uint32_t nsid;
	uint32_t cdw2, cdw3;
	uint64_t mptr;
	uint64_t prp1; /* or SGL1 bytes 0..7 */
	uint64_t prp2; /* or SGL1 bytes 8..15 */
	uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};
_Static_assert(sizeof(struct nvme_sqe) == 64, "SQE is 64 bytes");

#define NVME_SQE_FUSE(f) ((f) & 0x3)
#define NVME_SQE_PSDT(f) (((f) >> 6) & 0x3)
#define NVME_PSDT_PRP 0
#define NVME_PSDT_SGL_MPTR_CONTIG 1
#define NVME_PSDT_SGL_MPTR_SGL 2

struct nvme_cqe {
	uint32_t dw0;
	uint32_t dw1;
	uint16_t sqhd;
	uint16_t sqid;
	uint16_t cid;
	uint16_t status; /* bit 0: phase */
};
_Static_assert(sizeof(struct nvme_cqe) == 16, "CQE is 16 bytes");

#define NVME_SQES 6 /* 64-byte SQEs (log2) */
#define NVME_CQES 4 /* 16-byte CQEs (log2) */

/* ---- SGL descriptors ---- */
struct nvme_sgl_desc {
	uint64_t addr;
	uint32_t len;
	uint8_t rsvd[3];
	uint8_t id; /* type 7:4, subtype 3:0 */
};
_Static_assert(sizeof(struct nvme_sgl_desc) == 16, "SGL descriptor is 16 bytes");

#define NVME_SGL_TYPE(id) ((id) >> 4)
#define NVME_SGL_SUBTYPE(id) ((id) & 0xf)
#define NVME_SGL_DATA_BLOCK 0x0
#define NVME_SGL_BIT_BUCKET 0x1
#define NVME_SGL_SEGMENT 0x2
#define NVME_SGL_LAST_SEGMENT 0x3

/* ---- status: (SCT << 8) | SC; DNR added at completion ---- */
#define NVME_SCT_GENERIC 0x0
#define NVME_SCT_CMD_SPECIFIC 0x1
#define NVME_SCT_MEDIA 0x2
#define NVME_ST(sct, sc) ((uint16_t)(((sct) << 8) | (sc)))

#define NVME_SC_SUCCESS NVME_ST(0, 0x00)
#define NVME_SC_INVALID_OPCODE NVME_ST(0, 0x01)
#define NVME_SC_INVALID_FIELD NVME_ST(0, 0x02)
#define NVME_SC_CID_CONFLICT NVME_ST(0, 0x03)
#define NVME_SC_DATA_XFER_ERROR NVME_ST(0, 0x04)
#define NVME_SC_INTERNAL NVME_ST(0, 0x06)
#define NVME_SC_ABORT_REQ NVME_ST(0, 0x07)
#define NVME_SC_ABORT_SQ_DELETED NVME_ST(0, 0x08)
#define NVME_SC_FUSED_MISSING NVME_ST(0, 0x0a)
#define NVME_SC_INVALID_NS NVME_ST(0, 0x0b)
#define NVME_SC_CMD_SEQ_ERROR NVME_ST(0, 0x0c)
#define NVME_SC_SGL_INVALID_LAST NVME_ST(0, 0x0d)
#define NVME_SC_SGL_INVALID_COUNT NVME_ST(0, 0x0e)
#define NVME_SC_SGL_INVALID_DATA_LEN NVME_ST(0, 0x0f)
#define NVME_SC_SGL_INVALID_TYPE NVME_ST(0, 0x11)
#define NVME_SC_PRP_INVALID_OFFSET NVME_ST(0, 0x13)
#define NVME_SC_SGL_INVALID_OFFSET NVME_ST(0, 0x16)
#define NVME_SC_NS_WRITE_PROTECTED NVME_ST(0, 0x20)
#define NVME_SC_LBA_RANGE NVME_ST(0, 0x80)
#define NVME_SC_CAP_EXCEEDED NVME_ST(0, 0x81)

#define NVME_SC_CQ_INVALID NVME_ST(1, 0x00)
#define NVME_SC_QID_INVALID NVME_ST(1, 0x01)
#define NVME_SC_QUEUE_SIZE NVME_ST(1, 0x02)
#define NVME_SC_ABORT_LIMIT NVME_ST(1, 0x03)
#define NVME_SC_AER_LIMIT NVME_ST(1, 0x05)
#define NVME_SC_INVALID_VECTOR NVME_ST(1, 0x08)
#define NVME_SC_INVALID_LOG_PAGE NVME_ST(1, 0x09)
#define NVME_SC_INVALID_QUEUE_DELETION NVME_ST(1, 0x0c)
#define NVME_SC_FEATURE_NOT_SAVEABLE NVME_ST(1, 0x0d)
#define NVME_SC_FEATURE_NOT_CHANGEABLE NVME_ST(1, 0x0e)

#define NVME_SC_WRITE_FAULT NVME_ST(2, 0x80)
#define NVME_SC_UNRECOVERED_READ NVME_ST(2, 0x81)

#define NVME_STATUS_DNR (1u << 14) /* in the 15-bit status field */

/* ---- admin opcodes ---- */
#define NVME_ADM_DELETE_SQ 0x00
#define NVME_ADM_CREATE_SQ 0x01
#define NVME_ADM_GET_LOG_PAGE 0x02
#define NVME_ADM_DELETE_CQ 0x04
#define NVME_ADM_CREATE_CQ 0x05
#define NVME_ADM_IDENTIFY 0x06
#define NVME_ADM_ABORT 0x08
#define NVME_ADM_SET_FEATURES 0x09
#define NVME_ADM_GET_FEATURES 0x0a
#define NVME_ADM_ASYNC_EVENT 0x0c
#define NVME_ADM_KEEP_ALIVE 0x18
#define NVME_ADM_DBBUF 0x7c

/* ---- NVM opcodes ---- */
#define NVME_CMD_FLUSH 0x00
#define NVME_CMD_WRITE 0x01
#define NVME_CMD_READ 0x02
#define NVME_CMD_WRITE_ZEROES 0x08
#define NVME_CMD_DSM 0x09

#define NVME_DSM_AD (1u << 2)
struct nvme_dsm_range {
	uint32_t attrs;
	uint32_t nlb;
	uint64_t slba;
};
_Static_assert(sizeof(struct nvme_dsm_range) == 16, "DSM range is 16 bytes");

/* ---- identify ---- */
#define NVME_CNS_NS 0x00
#define NVME_CNS_CTRL 0x01
#define NVME_CNS_ACTIVE_NS 0x02
#define NVME_CNS_NS_DESC 0x03
#define NVME_IDENTIFY_SIZE 4096

/* controller data structure offsets */
#define NVME_IDC_VID 0
#define NVME_IDC_SSVID 2
#define NVME_IDC_SN 4
#define NVME_IDC_MN 24
#define NVME_IDC_FR 64
#define NVME_IDC_RAB 72
#define NVME_IDC_IEEE 73
#define NVME_IDC_CMIC 76
#define NVME_IDC_MDTS 77
#define NVME_IDC_CNTLID 78
#define NVME_IDC_VER 80
#define NVME_IDC_OAES 92
#define NVME_IDC_CTRATT 96
#define NVME_IDC_CNTRLTYPE 111
#define NVME_IDC_OACS 256
#define NVME_IDC_ACL 258
#define NVME_IDC_AERL 259
#define NVME_IDC_FRMW 260
#define NVME_IDC_LPA 261
#define NVME_IDC_ELPE 262
#define NVME_IDC_NPSS 263
#define NVME_IDC_WCTEMP 266
#define NVME_IDC_CCTEMP 268
#define NVME_IDC_KAS 320
#define NVME_IDC_SQES 512
#define NVME_IDC_CQES 513
#define NVME_IDC_MAXCMD 514
#define NVME_IDC_NN 516
#define NVME_IDC_ONCS 520
#define NVME_IDC_VWC 525
#define NVME_IDC_SGLS 536
#define NVME_IDC_SUBNQN 768
#define NVME_IDC_PSD0 2048

#define NVME_ONCS_DSM (1u << 2)
#define NVME_ONCS_WRITE_ZEROES (1u << 3)
#define NVME_OAES_NS_ATTR (1u << 8)
#define NVME_OAES_FW_ACT (1u << 9)

/* namespace data structure offsets */
#define NVME_IDN_NSZE 0
#define NVME_IDN_NCAP 8
#define NVME_IDN_NUSE 16
#define NVME_IDN_NSFEAT 24
#define NVME_IDN_NLBAF 25
#define NVME_IDN_FLBAS 26
#define NVME_IDN_DLFEAT 33
#define NVME_IDN_NOIOB 46
#define NVME_IDN_NGUID 104
#define NVME_IDN_EUI64 120
#define NVME_IDN_LBAF0 128

#define NVME_NIDT_EUI64 1
#define NVME_NIDT_NGUID 2
#define NVME_NIDT_UUID 3
#define NVME_NIDT_CSI 4

/* ---- features ---- */
#define NVME_FEAT_ARBITRATION 0x01
#define NVME_FEAT_POWER_MGMT 0x02
#define NVME_FEAT_TEMP_THRESH 0x04
#define NVME_FEAT_ERR_RECOVERY 0x05
#define NVME_FEAT_VOLATILE_WC 0x06
#define NVME_FEAT_NUM_QUEUES 0x07
#define NVME_FEAT_IRQ_COALESCE 0x08
#define NVME_FEAT_IRQ_CONFIG 0x09
#define NVME_FEAT_WRITE_ATOMIC 0x0a
#define NVME_FEAT_ASYNC_EVENT 0x0b
#define NVME_FEAT_KEEP_ALIVE 0x0f

#define NVME_FEAT_SEL_CURRENT 0
#define NVME_FEAT_SEL_DEFAULT 1
#define NVME_FEAT_SEL_SAVED 2
#define NVME_FEAT_SEL_CAPS 3

/* ---- log pages ---- */
#define NVME_LOG_ERROR 0x01
#define NVME_LOG_SMART 0x02
#define NVME_LOG_FW_SLOT 0x03
#define NVME_LOG_CHANGED_NS 0x04
#define NVME_LOG_SMART_SIZE 512
#define NVME_LOG_FW_SIZE 512
#define NVME_LOG_CHANGED_NS_SIZE 4096
#define NVME_ERROR_ENTRY_SIZE 64

struct nvme_error_entry {
	uint64_t error_count;
	uint16_t sqid;
	uint16_t cid;
	uint16_t status;
	uint16_t param_loc;
	uint64_t lba;
	uint32_t nsid;
	uint8_t vs;
	uint8_t trtype;
	uint8_t rsvd[2];
	uint64_t cs;
	uint16_t trtype_spec;
	uint8_t rsvd2[22];
};
_Static_assert(sizeof(struct nvme_error_entry) == NVME_ERROR_ENTRY_SIZE, "error entry");

/* ---- asynchronous events (completion dword 0) ---- */
#define NVME_AER_TYPE_ERROR 0
#define NVME_AER_TYPE_SMART 1
#define NVME_AER_TYPE_NOTICE 2
#define NVME_AER_ERR_INVALID_DB 0
#define NVME_AER_ERR_INVALID_DB_VALUE 1
#define NVME_AER_NOTICE_NS_CHANGED 0
#define NVME_AER_DW0(type, info, lid) \
	((uint32_t)(type) | ((uint32_t)(info) << 8) | ((uint32_t)(lid) << 16))

#define NVME_NSID_ALL 0xffffffffu

#endif
