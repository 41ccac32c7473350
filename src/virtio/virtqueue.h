/* SPDX-License-Identifier: MIT */
/*
 * virtqueue.h - the device side of a virtqueue: split and packed rings,
 * indirect descriptors, EVENT_IDX, and vhost-user inflight tracking.
 *
 * A virtqueue is owned by one reactor; none of these calls is thread-safe.
 * The link (vhost-user, virtio-pci) sets it up with host pointers to the
 * three ring areas (it translated them) and the domain's memory table, which
 * translates descriptor buffers (guest-physical addresses).
 *
 * Everything read from the rings is hostile: indices, lengths, flags, chains.
 * Structural errors (a head or next index out of range, a loop, a chain
 * longer than the queue, a nested or misplaced indirect table, an avail index
 * that jumps more than the queue size) mark the queue broken: pop returns
 * -EIO from then on and the device should report NEEDS_RESET. A buffer whose
 * address is not mapped fails only its request (-EFAULT from pop).
 *
 * Host is little-endian (virtio 1.x rings are LE); x86_64/aarch64 only.
 */
#ifndef ZOC_VIRTIO_VIRTQUEUE_H
#define ZOC_VIRTIO_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "link/dma.h"

/* iovecs per request: seg_max (126) + header + status, plus splits where a
 * buffer crosses memory regions. */
#define ZOC_VQ_MAX_IOV 256

struct zoc_vq_elem {
	uint16_t id;     /* split: head descriptor index; packed: buffer id */
	uint16_t ndescs; /* ring slots the chain used (packed: advances used pos) */
	uint16_t out_num; /* iov[0, out_num): device-readable */
	uint16_t in_num;  /* iov[out_num, out_num + in_num): device-writable */
	uint32_t out_len; /* total bytes readable */
	uint32_t in_len;  /* total bytes writable */
	bool resubmitted; /* came from the inflight region after reconnect */
	/* The chain's last device-writable buffer was dropped (no iovec room, or
	 * a length overflow): the last recorded writable byte is not the chain's
	 * last, so a device must not write a status there (pop returned -EFAULT;
	 * push the element back with length 0). */
	bool in_truncated;
	uint16_t inflight_slot; /* private (packed + inflight): region entry of the head */
	struct iovec iov[ZOC_VQ_MAX_IOV];
};

/* Layout of one queue's part of the vhost-user inflight region (split ring),
 * as QEMU's docs/interop/vhost-user.rst defines it. */
struct zoc_vq_inflight_desc {
	uint8_t inflight;
	uint8_t padding[5];
	uint16_t next;
	uint64_t counter;
};

struct zoc_vq_inflight {
	uint64_t features;
	uint16_t version;
	uint16_t desc_num;
	uint16_t last_batch_head;
	uint16_t used_idx;
	struct zoc_vq_inflight_desc desc[];
};

/* Layout of one queue's part of the inflight region for a packed ring (same
 * document). desc[] is a pool of entries linked into a free list by next;
 * a fetched buffer takes one entry per ring descriptor (head first, linked
 * by next, `num` of them, the last at `last`); the head holds inflight and
 * the fetch counter. The old_* fields are the last consistent state: a
 * completion updates free_head / used_idx / used_wrap_counter, writes the
 * used descriptor, then copies them to old_*, so a crash in between is
 * either committed or rolled back on reconnect. */
struct zoc_vq_inflight_desc_packed {
	uint8_t inflight;
	uint8_t padding;
	uint16_t next;
	uint16_t last;
	uint16_t num;
	uint64_t counter;
	uint16_t id;
	uint16_t flags;
	uint32_t len;
	uint64_t addr;
};

struct zoc_vq_inflight_packed {
	uint64_t features;
	uint16_t version;
	uint16_t desc_num;
	uint16_t free_head;
	uint16_t old_free_head;
	uint16_t used_idx;
	uint16_t old_used_idx;
	uint8_t used_wrap_counter;
	uint8_t old_used_wrap_counter;
	uint8_t padding[7];
	struct zoc_vq_inflight_desc_packed desc[];
};

/* Bytes one queue of queue_size descriptors needs in the inflight region:
 * enough for either layout (the packed one is the larger), 64-byte aligned. */
uint64_t zoc_vq_inflight_queue_size(uint16_t queue_size);

struct zoc_vq_config {
	uint16_t size;   /* power of two for split; any 1..32768 for packed */
	bool packed;     /* VIRTIO_F_RING_PACKED negotiated */
	bool event_idx;  /* VIRTIO_F_RING_EVENT_IDX negotiated */
	bool indirect;   /* VIRTIO_F_RING_INDIRECT_DESC negotiated */
	/* VIRTIO_F_IN_ORDER negotiated: a hint only (prefetch guesses that a split
	 * ring's next chains start at the next descriptors); nothing relies on it */
	bool in_order;
	/* Host pointers to the rings (already translated and bounds-checked by
	 * the link for the sizes zoc_vq_ring_sizes() gives). */
	void *desc;
	void *driver;    /* split: avail ring; packed: driver event suppression */
	void *device;    /* split: used ring;  packed: device event suppression */
	/* Where to resume: split: last_avail_idx; packed: bit 15 = wrap counter,
	 * bits 0-14 = index (vhost-user SET_VRING_BASE encoding); bits 16-31,
	 * if nonzero, the used index and used wrap counter encoded the same way
	 * (what newer QEMU sends), else the used state equals the avail state. */
	uint32_t base;
	const struct zoc_mem *mem;
	/* NULL: no inflight tracking. 8-byte aligned, zoc_vq_inflight_queue_size()
	 * bytes; a packed queue uses it as struct zoc_vq_inflight_packed. */
	struct zoc_vq_inflight *inflight;
	int callfd;      /* eventfd to signal the driver, -1: none (polling driver) */
	/* Optional (virtio-pci): called on the owning reactor instead of
	 * signalling callfd when the driver is to be notified (the transport
	 * raises the queue's MSI-X vector or INTx). */
	void (*notify_fn)(void *arg);
	/* Optional: called once, on the owning reactor, when the queue turns
	 * broken (the transport sets DEVICE_NEEDS_RESET). */
	void (*broken_fn)(void *arg);
	void *fn_arg;
};

/* Sizes in bytes of the three areas for a queue of `size` entries. */
void zoc_vq_ring_sizes(uint16_t size, bool packed, uint64_t *desc, uint64_t *driver,
		       uint64_t *device);

struct zoc_vq_stats {
	uint64_t pops;
	uint64_t pushes;
	uint64_t notifies;      /* callfd signals sent */
	uint64_t suppressed;    /* signals the driver asked us to skip */
	uint64_t bad_chains;    /* structural errors */
	uint64_t bad_addrs;     /* buffers outside mapped memory */
	uint64_t resubmitted;
	uint64_t rescued;       /* interrupts sent by zoc_vq_watchdog() */
};

struct zoc_vq;

/* Validates cfg (size, alignment of ring pointers, base), returns a queue or
 * NULL with errno set. If cfg->inflight is set and holds inflight
 * descriptors from an earlier back end (version != 0), they are returned by
 * pop first, oldest first (elem->resubmitted); otherwise the region is
 * initialised. With a region, the ring positions come from it (split: the
 * used ring's idx; packed: the region's used index and wrap counter) and
 * the avail position is the used one plus what is in flight; cfg->base is
 * used only if the region is new or inconsistent (its requests are lost). */
struct zoc_vq *zoc_vq_create(const struct zoc_vq_config *cfg);
void zoc_vq_destroy(struct zoc_vq *vq);

/* Takes the next available request. Returns 1 and fills *elem; 0 if the ring
 * is empty; -EFAULT if the chain is well-formed but a buffer is outside mapped
 * memory (elem->id/ndescs valid; that iov has iov_base NULL; push it back
 * with an error status); -EIO if the queue is (now) broken. */
int zoc_vq_pop(struct zoc_vq *vq, struct zoc_vq_elem *elem);
/* Returns a buffer to the driver with `len` bytes written. Completion may be
 * out of order. Does not signal: call zoc_vq_notify() once per batch. */
void zoc_vq_push(struct zoc_vq *vq, const struct zoc_vq_elem *elem, uint32_t len);
/* Like zoc_vq_push(), but on a split ring the driver sees the entry only at
 * the next zoc_vq_notify() (one used-index store per batch); the caller
 * must call it before returning to its poller. Same as zoc_vq_push() on a
 * packed ring or with an inflight region. */
void zoc_vq_push_deferred(struct zoc_vq *vq, const struct zoc_vq_elem *elem, uint32_t len);
/* Pops up to n requests into elems[0, n): rcs[i] is what zoc_vq_pop()
 * would have returned for elems[i] (1 or -EFAULT). Returns how many were
 * taken: fewer than n when the ring ran empty or the queue broke
 * (zoc_vq_broken() tells). One check of the ring state per burst. */
unsigned zoc_vq_pop_burst(struct zoc_vq *vq, struct zoc_vq_elem *elems, int *rcs, unsigned n);
/* zoc_vq_push_deferred() of elems[0, n) in that order, elems[i] with
 * lens[i] bytes written (lens NULL: 0 for all). */
void zoc_vq_push_burst(struct zoc_vq *vq, const struct zoc_vq_elem *elems, const uint32_t *lens,
		       unsigned n);
/* A hint before popping a burst: starts fetching the descriptors of the
 * next n available chains (lines the driver's CPU wrote). */
void zoc_vq_prefetch(const struct zoc_vq *vq, unsigned n);
/* Signals callfd if anything was pushed since the last call and the driver
 * wants it (flags or EVENT_IDX). Returns 1 if signalled, else 0. */
int zoc_vq_notify(struct zoc_vq *vq);
/* zoc_vq_notify() for a reactor's poller: publishes the used index now and
 * takes the decision at the end of the reactor's round of pollers, after
 * one full fence for every queue deferred in that round (the fence waits
 * for all stores in flight, such as copies into receive buffers: one wait
 * per round instead of one per queue). Off a reactor thread, or when too
 * many queues wait, it is zoc_vq_notify(). Owner thread only. */
void zoc_vq_notify_defer(struct zoc_vq *vq);

/* Notification (kick) suppression for the driver -> device direction.
 * enable: ask the driver to kick on new buffers; returns 1 if buffers are
 * already available (the caller must then keep polling), else 0.
 * disable: polling; the driver need not kick. */
int zoc_vq_enable_notify(struct zoc_vq *vq);
void zoc_vq_disable_notify(struct zoc_vq *vq);
/* Interrupt moderation (split ring with EVENT_IDX, else zoc_vq_enable_notify()):
 * asks the driver to kick only once n more buffers are available. Returns 1 if
 * n are there already (or the queue needs the poller), else 0. */
int zoc_vq_enable_notify_after(struct zoc_vq *vq, uint16_t n);
/* The ring lets the device choose when the driver kicks (split + EVENT_IDX). */
bool zoc_vq_can_batch(const struct zoc_vq *vq);
/* Buffers the driver has made available and the device not yet taken (split
 * ring; packed: 1 if any). Owner thread. */
uint16_t zoc_vq_avail_count(const struct zoc_vq *vq);

/* True if pop would return something (or the queue is broken). Cheap. */
bool zoc_vq_has_work(const struct zoc_vq *vq);
bool zoc_vq_broken(const struct zoc_vq *vq);
uint16_t zoc_vq_size(const struct zoc_vq *vq);
/* Requests popped but not yet pushed. */
uint32_t zoc_vq_inflight_count(const struct zoc_vq *vq);
/* True if the queue was created from an inflight region an earlier
 * incarnation of the device had written (a reconnect after a crash). */
bool zoc_vq_restored(const struct zoc_vq *vq);
/* Signals the driver once, whatever the suppression state: after a crash a
 * completion may have reached the used ring without its interrupt, and a
 * driver waiting for it would wait forever. A spurious interrupt is
 * harmless. Returns 1 if signalled. */
int zoc_vq_signal(struct zoc_vq *vq);
/* Lost-interrupt watchdog, for a timed poller of the owner (every ~100 ms).
 * Interrupt suppression is a store/load race between device and driver
 * (each writes its side, fences, reads the other's): a driver whose fence is
 * not one for this process (a single-vCPU TCG guest's barriers are not host
 * fences) can re-enable interrupts for a used entry, miss it, and wait for an
 * interrupt the device's decision already skipped. If the queue took no new
 * buffer since the previous call, a notification was suppressed since the
 * last interrupt, and the driver's event position is a used entry already
 * written (or, without EVENT_IDX, it wants interrupts), this sends one.
 * Returns 1 if it signalled. At most one spurious interrupt per idle period
 * after suppressed notifications; none for a driver that is up to date. */
int zoc_vq_watchdog(struct zoc_vq *vq);
/* zoc_vq_watchdog() for a device's timed poller: a rescue is logged (rate
 * limited) as queue `qidx` of device `dev`. Returns 1 if it signalled. */
int zoc_vq_watchdog_log(struct zoc_vq *vq, const char *dev, unsigned qidx);
/* The value GET_VRING_BASE returns (same encoding as cfg->base; packed
 * includes the used half in bits 16-31). Only meaningful once in-flight
 * requests are completed. */
uint32_t zoc_vq_get_base(const struct zoc_vq *vq);
const struct zoc_vq_stats *zoc_vq_get_stats(const struct zoc_vq *vq);
/* Replaces the call eventfd (the caller owns fds). */
void zoc_vq_set_callfd(struct zoc_vq *vq, int callfd);

#endif
