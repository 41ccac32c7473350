/* SPDX-License-Identifier: MIT */
/*
 * bdev.c - the block back-end registry, claims, channels and the checks every
 * request passes before it reaches a back end.
 *
 * The registry and the claim counts belong to reactor 0 (the control plane)
 * and take no lock. Channels are created on the reactor that uses them, so
 * the channel list is shared by every reactor: a mutex guards it. Channel
 * get/put is queue set-up work, never per I/O.
 */
#include "blk/bdev.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"

static struct zoc_bdev *g_bdevs; /* registration order, for save_config */

/*
 * Every open channel of every bdev, linked through zoc_bdev_ch.next_. There
 * are at most (bdevs x reactors) of them, looked up only at queue set-up.
 */
static struct zoc_bdev_ch *g_channels;
static pthread_mutex_t g_ch_lock = PTHREAD_MUTEX_INITIALIZER;

static bool bdev_has_channels(const struct zoc_bdev *bdev)
{
	bool found = false;

	pthread_mutex_lock(&g_ch_lock);
	for (struct zoc_bdev_ch *ch = g_channels; ch; ch = ch->next_) {
		if (ch->bdev == bdev) {
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&g_ch_lock);
	return found;
}

static bool name_ok(const char *name)
{
	size_t n;

	if (!name)
		return false;
	n = strnlen(name, ZOC_BDEV_NAME_MAX);
	return n > 0 && n < ZOC_BDEV_NAME_MAX;
}

int zoc_bdev_register(struct zoc_bdev *bdev)
{
	struct zoc_bdev **pp;
	uint64_t bytes;

	if (!bdev || !bdev->ops || !bdev->ops->submit || !bdev->ops->channel_create ||
	    !bdev->ops->channel_destroy || !name_ok(bdev->name))
		return -EINVAL;
	/* Power of two, so submit can check alignment with a mask. */
	if (bdev->block_size < 512 || (bdev->block_size & (bdev->block_size - 1)))
		return -EINVAL;
	if (bdev->num_blocks == 0 ||
	    __builtin_mul_overflow(bdev->num_blocks, (uint64_t)bdev->block_size, &bytes))
		return -EINVAL;
	if (bdev->max_iov == 0)
		return -EINVAL;
	for (pp = &g_bdevs; *pp; pp = &(*pp)->next_)
		if (strcmp((*pp)->name, bdev->name) == 0)
			return -EEXIST;
	bdev->claims = 0;
	bdev->next_ = NULL;
	*pp = bdev;
	ZOC_INFO("bdev %s registered: type %s, %" PRIu64 " blocks of %u bytes%s", bdev->name,
		 bdev->ops->type ? bdev->ops->type : "?", bdev->num_blocks, bdev->block_size,
		 bdev->read_only ? ", read-only" : "");
	return 0;
}

struct zoc_bdev *zoc_bdev_find(const char *name)
{
	if (!name)
		return NULL;
	for (struct zoc_bdev *b = g_bdevs; b; b = b->next_)
		if (strncmp(b->name, name, ZOC_BDEV_NAME_MAX) == 0)
			return b;
	return NULL;
}

struct zoc_bdev *zoc_bdev_next(struct zoc_bdev *prev)
{
	return prev ? prev->next_ : g_bdevs;
}

static void bdev_unlink(struct zoc_bdev *bdev)
{
	for (struct zoc_bdev **pp = &g_bdevs; *pp; pp = &(*pp)->next_) {
		if (*pp == bdev) {
			*pp = bdev->next_;
			bdev->next_ = NULL;
			return;
		}
	}
}

static void bdev_destroy(struct zoc_bdev *bdev)
{
	char name[ZOC_BDEV_NAME_MAX];

	memcpy(name, bdev->name, sizeof(name));
	bdev_unlink(bdev);
	if (bdev->ops->destroy)
		bdev->ops->destroy(bdev);
	ZOC_INFO("bdev %s deleted", name);
}

int zoc_bdev_delete(const char *name)
{
	struct zoc_bdev *bdev = zoc_bdev_find(name);

	if (!bdev)
		return -ENOENT;
	if (bdev->claims > 0)
		return -EBUSY;
	/* Unclaimed but with open channels would leave them dangling. */
	if (bdev_has_channels(bdev))
		return -EBUSY;
	bdev_destroy(bdev);
	return 0;
}

void zoc_bdev_delete_all(void)
{
	struct zoc_bdev *bdev = g_bdevs, *next;

	for (; bdev; bdev = next) {
		next = bdev->next_;
		if (bdev->claims > 0 || bdev_has_channels(bdev)) {
			ZOC_WARN("bdev %s still in use (%u claims): not deleted", bdev->name,
				 bdev->claims);
			continue;
		}
		bdev_destroy(bdev);
	}
}

int zoc_bdev_claim(struct zoc_bdev *bdev)
{
	if (!bdev)
		return -EINVAL;
	if (bdev->claims == UINT32_MAX)
		return -EBUSY;
	bdev->claims++;
	return 0;
}

void zoc_bdev_release(struct zoc_bdev *bdev)
{
	if (!bdev)
		return;
	if (bdev->claims == 0) {
		ZOC_ERR("bdev %s released more often than claimed", bdev->name);
		return;
	}
	bdev->claims--;
}

struct zoc_bdev_ch *zoc_bdev_get_channel(struct zoc_bdev *bdev, struct zoc_reactor *r)
{
	struct zoc_bdev_ch *ch;

	if (!bdev || !r)
		return NULL;
	pthread_mutex_lock(&g_ch_lock);
	for (ch = g_channels; ch; ch = ch->next_) {
		if (ch->bdev == bdev && ch->reactor == r) {
			ch->refs++;
			pthread_mutex_unlock(&g_ch_lock);
			return ch;
		}
	}
	pthread_mutex_unlock(&g_ch_lock);

	/*
	 * Only reactor r creates (bdev, r) channels, so nobody else can insert
	 * the same pair while the lock is dropped for the back end's set-up.
	 */
	ch = bdev->ops->channel_create(bdev, r);
	if (!ch) {
		ZOC_ERR("bdev %s: cannot create a channel on reactor %u", bdev->name,
			zoc_reactor_index(r));
		return NULL;
	}
	ch->bdev = bdev;
	ch->reactor = r;
	ch->refs = 1;
	pthread_mutex_lock(&g_ch_lock);
	ch->next_ = g_channels;
	g_channels = ch;
	pthread_mutex_unlock(&g_ch_lock);
	return ch;
}

void zoc_bdev_put_channel(struct zoc_bdev_ch *ch)
{
	bool last = false;

	if (!ch)
		return;
	pthread_mutex_lock(&g_ch_lock);
	if (ch->refs == 0) {
		pthread_mutex_unlock(&g_ch_lock);
		ZOC_ERR("bdev %s: channel put more often than got", ch->bdev->name);
		return;
	}
	if (--ch->refs == 0) {
		for (struct zoc_bdev_ch **pp = &g_channels; *pp; pp = &(*pp)->next_) {
			if (*pp == ch) {
				*pp = ch->next_;
				break;
			}
		}
		ch->next_ = NULL;
		last = true;
	}
	pthread_mutex_unlock(&g_ch_lock);
	if (last)
		ch->bdev->ops->channel_destroy(ch);
}

static bool op_writes(enum zoc_bdev_op op)
{
	return op == ZOC_BDEV_WRITE || op == ZOC_BDEV_DISCARD || op == ZOC_BDEV_WRITE_ZEROES;
}

int zoc_bdev_submit(struct zoc_bdev_ch *ch, struct zoc_bdev_io *io)
{
	const struct zoc_bdev *bdev;
	uint64_t mask;

	if (ZOC_UNLIKELY(!ch || !io || !io->cb))
		return -EINVAL;
	bdev = ch->bdev;
	switch (io->op) {
	case ZOC_BDEV_READ:
	case ZOC_BDEV_WRITE:
		break;
	case ZOC_BDEV_FLUSH:
		if (!bdev->supports_flush)
			return -ENOTSUP;
		/* Offset and length mean nothing to a flush: whole device. */
		return bdev->ops->submit(ch, io);
	case ZOC_BDEV_DISCARD:
		if (!bdev->supports_discard)
			return -ENOTSUP;
		break;
	case ZOC_BDEV_WRITE_ZEROES:
		if (!bdev->supports_write_zeroes)
			return -ENOTSUP;
		break;
	default:
		return -EINVAL;
	}
	if (bdev->read_only && op_writes(io->op))
		return -EROFS;

	mask = (uint64_t)bdev->block_size - 1;
	if (ZOC_UNLIKELY(io->len == 0 || (io->offset & mask) || (io->len & mask)))
		return -EINVAL;
	if (ZOC_UNLIKELY(zoc_range_bad(io->offset, io->len, zoc_bdev_size(bdev))))
		return -ERANGE;

	if (io->op == ZOC_BDEV_READ || io->op == ZOC_BDEV_WRITE) {
		uint64_t total = 0;

		if (ZOC_UNLIKELY(!io->iov || io->iovcnt <= 0 ||
				 (uint32_t)io->iovcnt > bdev->max_iov))
			return -EINVAL;
		for (int i = 0; i < io->iovcnt; i++) {
			if (__builtin_add_overflow(total, (uint64_t)io->iov[i].iov_len, &total))
				return -EINVAL;
		}
		if (ZOC_UNLIKELY(total != io->len))
			return -EINVAL;
	}
	return bdev->ops->submit(ch, io);
}
