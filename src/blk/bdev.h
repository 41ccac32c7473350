/* SPDX-License-Identifier: MIT */
/*
 * bdev.h - block back ends.
 *
 * A bdev is a named block device (null, io_uring file, ...) in a global
 * registry owned by reactor 0 (the control plane). Device models do I/O
 * through a channel: one per (bdev, reactor) pair, created on and owned by
 * that reactor, refcounted so several queues on one reactor share it.
 *
 * I/O is asynchronous: zoc_bdev_submit() queues the request (batched: the
 * channel's poller submits everything queued in one system call per reactor
 * iteration) and io->cb runs later on the same reactor, never from inside
 * zoc_bdev_submit(). The caller owns io (from its pool) until cb runs.
 */
#ifndef ZOC_BLK_BDEV_H
#define ZOC_BLK_BDEV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <jansson.h>

struct zoc_reactor;
struct zoc_bdev;
struct zoc_bdev_ch;

enum zoc_bdev_op {
	ZOC_BDEV_READ,
	ZOC_BDEV_WRITE,
	ZOC_BDEV_FLUSH,
	ZOC_BDEV_DISCARD,
	ZOC_BDEV_WRITE_ZEROES,
};

struct zoc_bdev_io;
/* status: 0, or -errno (-EIO, -ENOSPC, -EOPNOTSUPP, ...). */
typedef void (*zoc_bdev_cb)(struct zoc_bdev_io *io, int status);

struct zoc_bdev_io {
	enum zoc_bdev_op op;
	uint64_t offset;     /* bytes, multiple of block_size */
	uint64_t len;        /* bytes, multiple of block_size (0 for FLUSH) */
	struct iovec *iov;   /* READ / WRITE */
	int iovcnt;
	zoc_bdev_cb cb;
	void *cb_arg;
	/* back-end private, do not touch */
	struct zoc_bdev_io *next_;
	uint64_t priv_[2];
};

struct zoc_bdev_ops {
	const char *type; /* "null", "uring" */
	struct zoc_bdev_ch *(*channel_create)(struct zoc_bdev *bdev, struct zoc_reactor *r);
	void (*channel_destroy)(struct zoc_bdev_ch *ch);
	int (*submit)(struct zoc_bdev_ch *ch, struct zoc_bdev_io *io);
	void (*destroy)(struct zoc_bdev *bdev);
	/* Adds the create method's params to obj (for save_config / bdev_list). */
	void (*dump_params)(const struct zoc_bdev *bdev, json_t *obj);
};

#define ZOC_BDEV_NAME_MAX 64

struct zoc_bdev {
	char name[ZOC_BDEV_NAME_MAX];
	uint32_t block_size;
	uint64_t num_blocks;
	bool supports_flush;
	bool supports_discard;
	bool supports_write_zeroes;
	bool read_only;
	uint32_t max_iov;             /* largest iovcnt the back end takes */
	const struct zoc_bdev_ops *ops;
	void *ctx;                    /* back end's state */
	uint32_t claims;              /* devices using it (delete refused while > 0) */
	struct zoc_bdev *next_;       /* registry */
};

/* Common channel header: back ends embed it first in their channel struct. */
struct zoc_bdev_ch {
	struct zoc_bdev *bdev;
	struct zoc_reactor *reactor;
	uint32_t refs;
	struct zoc_bdev_ch *next_; /* list of open channels (bdev.c) */
};

/* Registry (reactor 0). register: -EEXIST if the name is taken. */
int zoc_bdev_register(struct zoc_bdev *bdev);
struct zoc_bdev *zoc_bdev_find(const char *name);
/* Unregisters and destroys; -EBUSY if claimed, -ENOENT if unknown. */
int zoc_bdev_delete(const char *name);
void zoc_bdev_delete_all(void);
/* Iteration: first with NULL. */
struct zoc_bdev *zoc_bdev_next(struct zoc_bdev *prev);

int zoc_bdev_claim(struct zoc_bdev *bdev);
void zoc_bdev_release(struct zoc_bdev *bdev);

/* On reactor r's thread. Returns the shared channel of (bdev, r). Put it on
 * the same thread; requests still in flight then complete normally and the
 * back end frees the channel after the last one. */
struct zoc_bdev_ch *zoc_bdev_get_channel(struct zoc_bdev *bdev, struct zoc_reactor *r);
void zoc_bdev_put_channel(struct zoc_bdev_ch *ch);

/* Checks op/offset/len against the bdev (alignment, size, support) and
 * queues it. 0, or -EINVAL/-ENOTSUP/-ERANGE, -EROFS for a write, discard or
 * write-zeroes to a read-only bdev (then cb is NOT called). FLUSH ignores
 * offset and len. */
int zoc_bdev_submit(struct zoc_bdev_ch *ch, struct zoc_bdev_io *io);

static inline uint64_t zoc_bdev_size(const struct zoc_bdev *b)
{
	return b->num_blocks * b->block_size;
}

/* Back ends. 0 or -errno. */
int zoc_bdev_null_create(const char *name, uint64_t size_mb, uint32_t block_size);
/* O_DIRECT unless buffered; block_size 0 = take the device's logical block
 * size (files: 512). */
int zoc_bdev_uring_create(const char *name, const char *filename, uint32_t block_size,
			  bool buffered);

#endif
