/* SPDX-License-Identifier: MIT */
/*
 * bdev_null.c - a block device that stores nothing.
 *
 * Every request succeeds without any data movement: reads leave the caller's
 * buffers as they were, writes go nowhere. It measures the cost of everything
 * above the back end. Completions are deferred to the channel's poller, as
 * with a real device, so callers see the same ordering rules: never a
 * callback from inside zoc_bdev_submit().
 */
#include "blk/bdev.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

struct null_bdev {
	struct zoc_bdev bdev; /* first */
	uint64_t size_mb;
};

struct null_ch {
	struct zoc_bdev_ch hdr; /* first */
	struct zoc_poller *poller;
	struct zoc_bdev_io *head; /* queued, completed by the next poll */
	struct zoc_bdev_io **tailp;
	bool in_poll;
	bool dead; /* put while requests were queued: freed once they complete */
};

static void null_ch_free(struct null_ch *ch)
{
	zoc_poller_unregister(ch->poller);
	free(ch);
}

static int null_poll(void *arg)
{
	struct null_ch *ch = arg;
	struct zoc_bdev_io *io = ch->head;
	int n = 0;

	if (!io)
		return 0;
	/* Detach first: callbacks may queue more, which wait for the next poll. */
	ch->head = NULL;
	ch->tailp = &ch->head;
	ch->in_poll = true;
	while (io) {
		struct zoc_bdev_io *next = io->next_;

		io->next_ = NULL;
		io->cb(io, 0);
		io = next;
		n++;
	}
	ch->in_poll = false;
	if (ch->dead && !ch->head)
		null_ch_free(ch);
	return n;
}

/* Interrupt mode: nothing wakes us but a submit, which happens on this
 * reactor; only refuse to sleep while something is queued. */
static int null_arm(void *arg)
{
	struct null_ch *ch = arg;

	return ch->head != NULL;
}

static const struct zoc_poller_ops null_poller_ops = {
	.poll = null_poll,
	.arm = null_arm,
};

static struct zoc_bdev_ch *null_channel_create(struct zoc_bdev *bdev, struct zoc_reactor *r)
{
	struct null_ch *ch = calloc(1, sizeof(*ch));

	if (!ch)
		return NULL;
	ch->tailp = &ch->head;
	ch->poller = zoc_poller_register(r, &null_poller_ops, ch, 0, "bdev_null");
	if (!ch->poller) {
		free(ch);
		return NULL;
	}
	return &ch->hdr;
}

static void null_channel_destroy(struct zoc_bdev_ch *hdr)
{
	struct null_ch *ch = ZOC_CONTAINER_OF(hdr, struct null_ch, hdr);

	ch->dead = true;
	if (!ch->in_poll && !ch->head)
		null_ch_free(ch);
	/* else the poller completes what is queued, then frees the channel */
}

static int null_submit(struct zoc_bdev_ch *hdr, struct zoc_bdev_io *io)
{
	struct null_ch *ch = ZOC_CONTAINER_OF(hdr, struct null_ch, hdr);

	io->next_ = NULL;
	*ch->tailp = io;
	ch->tailp = &io->next_;
	return 0;
}

static void null_destroy(struct zoc_bdev *bdev)
{
	free(ZOC_CONTAINER_OF(bdev, struct null_bdev, bdev));
}

static void null_dump_params(const struct zoc_bdev *bdev, json_t *obj)
{
	const struct null_bdev *nb = ZOC_CONTAINER_OF(bdev, struct null_bdev, bdev);

	json_object_set_new(obj, "name", json_string(bdev->name));
	json_object_set_new(obj, "size_mb", json_integer((json_int_t)nb->size_mb));
	json_object_set_new(obj, "block_size", json_integer(bdev->block_size));
}

static const struct zoc_bdev_ops null_ops = {
	.type = "null",
	.channel_create = null_channel_create,
	.channel_destroy = null_channel_destroy,
	.submit = null_submit,
	.destroy = null_destroy,
	.dump_params = null_dump_params,
};

int zoc_bdev_null_create(const char *name, uint64_t size_mb, uint32_t block_size)
{
	struct null_bdev *nb;
	int rc;

	if (!name || strnlen(name, ZOC_BDEV_NAME_MAX) == 0 ||
	    strnlen(name, ZOC_BDEV_NAME_MAX) >= ZOC_BDEV_NAME_MAX) {
		ZOC_ERR("bdev_null: name must be 1..%d characters", ZOC_BDEV_NAME_MAX - 1);
		return -EINVAL;
	}
	if (block_size < 512 || block_size > 4096 || (block_size & (block_size - 1))) {
		ZOC_ERR("bdev_null %s: block_size %u must be a power of two in 512..4096", name,
			block_size);
		return -EINVAL;
	}
	/* json_int_t is signed 64-bit: keep size_mb dumpable, and bytes in range. */
	if (size_mb == 0 || size_mb > ((uint64_t)INT64_MAX >> 20)) {
		ZOC_ERR("bdev_null %s: size_mb must be 1..%" PRIu64, name,
			(uint64_t)INT64_MAX >> 20);
		return -EINVAL;
	}
	if (zoc_bdev_find(name))
		return -EEXIST;
	nb = calloc(1, sizeof(*nb));
	if (!nb)
		return -ENOMEM;
	memcpy(nb->bdev.name, name, strlen(name) + 1);
	nb->size_mb = size_mb;
	nb->bdev.block_size = block_size;
	nb->bdev.num_blocks = (size_mb << 20) / block_size;
	nb->bdev.supports_flush = true;
	nb->bdev.supports_discard = true;
	nb->bdev.supports_write_zeroes = true;
	nb->bdev.max_iov = IOV_MAX;
	nb->bdev.ops = &null_ops;
	nb->bdev.ctx = nb;
	rc = zoc_bdev_register(&nb->bdev);
	if (rc) {
		free(nb);
		return rc;
	}
	return 0;
}
