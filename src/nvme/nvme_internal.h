/* SPDX-License-Identifier: MIT */
/*
 * nvme_internal.h - state shared by nvme.c (registers, queues, reactors),
 * nvme_admin.c (admin commands) and nvme_io.c (PRP/SGL, NVM commands).
 *
 * Threads: `struct zoc_nvme_ctrlr` fields without a comment are reactor 0's
 * (the control plane: BAR accesses, admin commands, namespaces). A queue
 * pair's fetch/complete state and a group's fields belong to the reactor
 * of the group; reactor 0 hands queues over with messages.
 */
#ifndef ZOC_NVME_NVME_INTERNAL_H
#define ZOC_NVME_NVME_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "blk/bdev.h"
#include "core/reactor.h"
#include "core/stats.h"
#include "link/dma.h"
#include "nvme/nvme.h"
#include "nvme/nvme_spec.h"

#define NVME_VENDOR_ID 0x5a4f    /* "ZO": not PCI-SIG assigned, see docs/nvme.md */
#define NVME_DEVICE_ID 0x4e56    /* "NV" */
#define NVME_CLASS 0x010802
#define NVME_BAR0_SIZE 0x4000
#define NVME_BAR4_SIZE 0x2000
#define NVME_MSIX_PBA 0x1000
#define NVME_DB_PAGE 4096

#define NVME_MDTS 5              /* 2^5 minimum pages (4 KiB) = 128 KiB */
#define NVME_MAX_XFER (4096u << NVME_MDTS)
#define NVME_REQ_IOV 64
#define NVME_MPSMAX 4            /* 64 KiB pages */
#define NVME_CAP_TO 20           /* 10 s */
#define NVME_AERL 3              /* 4 outstanding AERs */
#define NVME_ACL 3
#define NVME_ELPE 15             /* 16 error log entries */
#define NVME_ADMIN_MAX 4096
#define NVME_MAX_QID ZOC_NVME_MAX_IO_QUEUES
#define NVME_BATCH 32
#define NVME_AEN_QUEUE 16
#define NVME_KAS 10              /* keep alive granularity: 1 s */
#define NVME_RESET_WAITERS 4     /* a link has at most 2 resets pending */
#define NVME_BOUNCE_SLOTS 4      /* per group: Read/Write through memory without a mapping */
#define NVME_BOUNCE_SEGS NVME_REQ_IOV
#define NVME_BOUNCE_ENTS 40      /* PRP list entries fetched at once (>= MAX_XFER/4K + 1) */

struct zoc_nvme_ctrlr;
struct nvme_sq;
struct nvme_cq;
struct nvme_group;

struct nvme_bounce;

struct nvme_req {
	struct nvme_sq *sq;
	struct nvme_bounce *bounce; /* slow path: data in memory without a mapping */
	struct nvme_group *g;      /* I/O: the owner group */
	const struct nvme_ns *ns;  /* I/O: alive while counted in the group's ns inflight */
	struct nvme_req *next;     /* CQ's held-completion list */
	struct zoc_bdev_io io;
	uint64_t start_ns;
	uint32_t dw0;
	uint32_t nsid;
	uint16_t cid;
	uint16_t status;
	uint8_t opc;
	bool fua;                  /* write: flush after it */
	bool ns_counted;           /* counted in the group's ns inflight */
	bool in_bdev;              /* counted in the group's busy */
	uint32_t gen;              /* controller generation (admin async) */
	uint64_t bytes;
	/* DSM: ranges read one at a time from iov */
	uint16_t dsm_nr, dsm_idx;
	uint64_t dsm_blocks;
	int iovcnt;
	struct iovec iov[NVME_REQ_IOV];
};

struct nvme_sq {
	struct zoc_nvme_ctrlr *c;
	uint16_t qid, cqid;
	uint32_t size;
	uint64_t gpa;
	struct nvme_sqe *ring;     /* hva (translated on reactor 0) */
	struct nvme_cq *cq;
	struct zoc_pool *pool;
	/* owner */
	uint32_t head;             /* next entry to fetch */
	uint32_t tail;             /* last valid doorbell value */
	uint32_t bad_db;           /* last invalid value reported (UINT32_MAX: none) */
	uint32_t inflight;         /* requests out of the pool */
	bool deleting;             /* stop fetching; finish delete when idle */
	struct nvme_req *del_req;  /* the Delete I/O SQ command (reactor 0's) */
	struct nvme_sq *next;      /* CQ's SQ list */
	struct zoc_io_stats stats;
	/* remote (ring in memory without a mapping; chosen at creation):
	 * ring is the local shadow, entries [head, avail) have arrived */
	bool remote;
	bool fbusy;                /* a fetch is in flight (counted in g->busy) */
	bool dead;                 /* a fetch failed: controller fatal */
	uint32_t avail, fend;
	struct nvme_group *fg;     /* group of the fetch in flight */
	struct nvme_sqe *shadow;   /* reactor 0 allocates and frees it */
	struct zoc_mem_io fio;
	/* reactor 0 */
	bool exists;
	uint16_t qprio;
};

struct nvme_cq {
	struct zoc_nvme_ctrlr *c;
	uint16_t qid;
	uint32_t size;
	uint64_t gpa;
	struct nvme_cqe *ring;
	uint16_t iv;
	bool ien;
	struct nvme_group *g;
	/* owner */
	uint32_t tail;
	uint32_t head;
	uint16_t phase;
	uint32_t bad_db;
	bool outstanding;          /* entries posted, not consumed (INTx level) */
	struct nvme_req *held, **held_tail; /* done, waiting for CQ space */
	uint32_t unsig;            /* posted since the last interrupt */
	uint64_t first_unsig_ns;
	struct nvme_sq *sqs;
	struct nvme_cq *next;      /* group's CQ list */
	struct nvme_req *del_req;
	/* remote (see nvme_sq): ring is the local shadow; entries
	 * [wtail, tail) are not written to the client yet */
	bool remote;
	bool wbusy;                /* a write is in flight (counted in g->busy) */
	bool wdel;                 /* deleted while writing: tell reactor 0 at its end */
	bool dead;
	uint32_t wtail, wend;
	struct nvme_group *wg;
	struct nvme_cqe *shadow;
	struct zoc_mem_io wio;
	/* reactor 0 */
	bool exists;
	uint32_t nsq;              /* SQs using it */
};

/* Per-namespace state of one group. */
struct nvme_group_ns {
	struct zoc_bdev_ch *ch;
	uint32_t inflight;
};

/*
 * Slow path of a Read or Write whose data (or PRP list) lies in memory the
 * link reaches only with messages (src/link/dma.h remote regions): the data
 * goes through a bounce buffer, copied with zoc_mem_io_submit(). A few per
 * group, allocated on first use; requests wait for a free one in order.
 */
enum { BK_RW, BK_ADMIN, BK_DSM };

struct nvme_bounce {
	struct zoc_mem_io io;      /* the copy in progress */
	struct nvme_group *g;
	struct nvme_req *r;
	struct nvme_bounce *next_free;
	uint8_t *buf;              /* NVME_MAX_XFER bytes */
	uint64_t prp1, prp2;
	uint64_t bytes, off;       /* transfer size; bdev offset */
	bool is_read;
	uint8_t kind;              /* BK_RW, BK_ADMIN (data for the guest in buf from the
				      start), BK_DSM (range list copied in, then discards) */
	uint8_t phase;
	/* SGL walk */
	struct nvme_sgl_desc sgl_d;
	uint64_t sgl_total;
	unsigned sgl_seen;
	/* guest segments of the transfer */
	uint64_t seg_gpa[NVME_BOUNCE_SEGS];
	uint32_t seg_len[NVME_BOUNCE_SEGS];
	unsigned nseg, cur;
	uint64_t buf_off;
	/* PRP list walk */
	uint64_t rem, list;
	unsigned hops, nent, slots;
	uint64_t ents[NVME_BOUNCE_ENTS];
};

struct nvme_waiter;

/* The controller's presence on one reactor. */
struct nvme_group {
	struct zoc_nvme_ctrlr *c;
	unsigned idx;
	struct zoc_reactor *r;
	struct zoc_poller *poller;
	int efd;                   /* doorbell kick (interrupt mode) */
	bool efd_registered;
	struct nvme_cq *cqs;
	uint32_t busy;             /* requests inside the bdev */
	bool quiesced;             /* link quiesce: no fetch, no posting */
	bool stopped;              /* shutdown / disable: no fetch */
	bool discard;              /* disable: drop completions */
	struct nvme_waiter *waiters, **waiters_tail;
	struct nvme_group_ns ns[ZOC_NVME_MAX_NS];
	/* slow path (owner) */
	struct nvme_bounce *bounce;        /* NVME_BOUNCE_SLOTS, or NULL */
	struct nvme_bounce *bounce_free;
	struct nvme_req *bounce_wait, **bounce_wait_tail;
	uint64_t bounced;                  /* requests that went through it */
};

struct nvme_ns {
	uint32_t nsid;
	struct zoc_bdev *bdev;
	uint32_t lbads;            /* log2 block size */
	uint64_t nsze;
	uint8_t nguid[16];
	uint8_t uuid[16];
};

struct nvme_aen {
	uint8_t type, info, lid;
};

struct zoc_nvme_ctrlr {
	char name[ZOC_NVME_NAME_MAX];
	struct zoc_pci_func *f;
	uint16_t max_io_queues;
	uint32_t max_queue_size;
	bool mmap_doorbells;
	bool dbbuf_ok;             /* Doorbell Buffer Config offered */
	uint16_t cntlid;

	/* registers */
	uint64_t cap;
	uint32_t cc, aqa;
	uint64_t asq, acq;
	uint32_t csts;
	uint32_t intms;
	uint32_t intx_pending;    /* an interrupt held by INTMS */
	uint32_t cq_outstanding;  /* CQs with unconsumed entries (INTx level) */
	uint32_t page_size;        /* from CC.MPS at enable (read by owners) */

	/* doorbell page (memfd) */
	int db_fd;
	uint32_t *db;
	/* Doorbell Buffer Config: the shadow doorbells (in the DMA space; set
	 * on reactor 0, read by owners; NULL: none) and the event indexes */
	uint32_t *dbbuf_db;
	uint32_t *dbbuf_ei;
	bool db_offered;           /* given to the link to mmap */
	unsigned db_scan_tick, db_scan_next; /* sweep of unused slots */

	/* DMA space (changed only while quiesced; owners read it) */
	struct zoc_mem *mem;

	/* PCI command register bus master enable, as of the last config write
	 * (atomic; read by owners once per poll and per completion) */
	bool bus_master;

	/* state machine */
	bool enabled;              /* RDY */
	bool op_busy;              /* a disable / shutdown / reset is running */
	bool link_quiesced;
	bool destroying;
	void (*destroy_fn)(void *);
	void *destroy_arg;
	uint32_t gen;              /* incremented on each disable */
	struct nvme_reset_waiter {
		void (*fn)(void *);
		void *arg;
	} reset_w[NVME_RESET_WAITERS]; /* function resets waiting for the disable */
	unsigned nreset_w;
	/* Broadcasts that cannot fail (their callers have no error path) use
	 * storage allocated with the controller: one of each runs at a time. */
	struct nvme_bcast *bc_state;   /* disable / shutdown (op_busy) */
	struct nvme_bcast *bc_quiesce; /* the link waits for one before the next */
	struct nvme_bcast *bc_destroy;

	/* features */
	uint32_t feat_arb, feat_pm, feat_temp, feat_aec, feat_kato, feat_wa;
	bool nq_set;
	uint16_t nsqa, ncqa;
	uint32_t feat_coalesce;   /* THR 7:0, TIME 15:8 */
	uint8_t *iv_cd;           /* per vector: coalescing disabled */
	bool wce;
	uint16_t msix_vectors;

	/* async events */
	struct nvme_req *aer[NVME_AERL + 1];
	unsigned naer;
	struct nvme_aen aen_q[NVME_AEN_QUEUE];
	unsigned naen;
	uint32_t aen_masked;       /* bit per type: reported, log not read yet */
	bool aen_kick;             /* deliver events after the current command */
	bool bad_db_msg_pending;   /* an owner's bad-doorbell report is on its way (atomic) */
	uint32_t changed_ns[ZOC_NVME_MAX_NS + 1];
	unsigned nchanged;
	bool changed_overflow;
	struct nvme_error_entry errlog[NVME_ELPE + 1];
	uint64_t err_count;
	unsigned err_next;
	uint64_t ka_deadline_ns;

	/* queues: index = qid */
	struct nvme_sq sq[NVME_MAX_QID + 1];
	struct nvme_cq cq[NVME_MAX_QID + 1];
	unsigned next_reactor;
	struct zoc_io_stats retired;  /* stats of deleted queues */

	/* namespaces (published to owners with atomic stores) */
	struct nvme_ns *ns[ZOC_NVME_MAX_NS];
	uint64_t ns_removing;      /* nsids being drained (bit nsid-1) */

	unsigned ngroups;
	struct nvme_group *groups;
	uint8_t scratch[NVME_IDENTIFY_SIZE]; /* admin data buffer */
};

/* nvme.c */
/* Test hook: n > 0 makes the n-th control-path allocation (or message
 * that may fail) from now fail, once. */
extern unsigned zoc_nvme_fail_alloc;
void nvme_req_complete(struct nvme_req *r, uint16_t status);
/* Owner: finishes the group's waiters (quiesce, disable ...) that are ready. */
void nvme_group_check(struct nvme_group *g);
void nvme_group_ns_put(struct nvme_group *g, struct nvme_req *r);
struct nvme_group_ns *nvme_group_ns_get(struct nvme_group *g, uint32_t nsid);
void nvme_aen_post(struct zoc_nvme_ctrlr *c, uint8_t type, uint8_t info, uint8_t lid);
/* After an AER arrived or a log page read unmasked an event type. */
void nvme_aen_kick(struct zoc_nvme_ctrlr *c);
void nvme_error_log(struct zoc_nvme_ctrlr *c, uint16_t sqid, uint16_t cid, uint16_t status,
		    uint32_t nsid);
int nvme_cq_create(struct zoc_nvme_ctrlr *c, uint16_t qid, uint64_t gpa, uint32_t size,
		   uint16_t iv, bool ien);
int nvme_sq_create(struct zoc_nvme_ctrlr *c, uint16_t qid, uint64_t gpa, uint32_t size,
		   uint16_t cqid, uint16_t qprio);
/* 0: r is completed when the queue is gone; -ENOMEM: nothing done. */
int nvme_sq_delete(struct zoc_nvme_ctrlr *c, uint16_t qid, struct nvme_req *r);
int nvme_cq_delete(struct zoc_nvme_ctrlr *c, uint16_t qid, struct nvme_req *r);
void nvme_sum_stats(struct zoc_nvme_ctrlr *c, struct zoc_io_stats *out);
static inline struct nvme_ns *nvme_ns_get(struct zoc_nvme_ctrlr *c, uint32_t nsid)
{
	if (nsid == 0 || nsid > ZOC_NVME_MAX_NS)
		return NULL;
	return __atomic_load_n(&c->ns[nsid - 1], __ATOMIC_ACQUIRE);
}

/* An admin command's status meaning "completed later". */
#define NVME_SC_ASYNC 0xffffu
/* Admin data for the guest that nvme_map_data() could not map but that lies
 * (partly) in memory without a mapping: copies len bytes of buf (len <=
 * NVME_MAX_XFER, PRPs) through a bounce slot of group 0 and completes r.
 * Returns NVME_SC_ASYNC, or a status (r not completed). */
uint16_t nvme_admin_bounce_out(struct zoc_nvme_ctrlr *c, struct nvme_req *r,
			       const struct nvme_sqe *cmd, const void *buf, uint32_t len);

/* nvme_admin.c: reactor 0; completes r (now or later). */
void nvme_admin_exec(struct zoc_nvme_ctrlr *c, struct nvme_req *r, const struct nvme_sqe *cmd);
void nvme_features_reset(struct zoc_nvme_ctrlr *c);
void nvme_aer_drop_all(struct zoc_nvme_ctrlr *c);

/* nvme_io.c: owner reactor. */
void nvme_io_exec(struct nvme_group *g, struct nvme_req *r, const struct nvme_sqe *cmd);
/* Maps a command's data pointer (PRP or SGL) into r->iov. Returns a status. */
uint16_t nvme_map_data(struct zoc_nvme_ctrlr *c, struct nvme_req *r, const struct nvme_sqe *cmd,
		       uint64_t len, bool to_guest, bool allow_sgl);
size_t nvme_iov_copy(struct iovec *iov, int n, size_t off, void *buf, size_t len, bool to_iov);
/* Frees the group's bounce buffers (the group is idle). */
void nvme_bounce_free(struct nvme_group *g);

#endif
