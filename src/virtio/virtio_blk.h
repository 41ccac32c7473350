/* SPDX-License-Identifier: MIT */
/*
 * virtio_blk.h - the virtio-blk device model (virtio 1.2 section 5.2).
 *
 * Requests: IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES. Features: SEG_MAX,
 * BLK_SIZE, FLUSH, MQ, DISCARD, WRITE_ZEROES, TOPOLOGY, VERSION_1, plus the
 * ring features (INDIRECT_DESC, EVENT_IDX, RING_PACKED). Each queue is owned
 * by one reactor; queues spread over reactors round-robin.
 */
#ifndef ZOC_VIRTIO_VIRTIO_BLK_H
#define ZOC_VIRTIO_VIRTIO_BLK_H

#include <stdint.h>

#include <jansson.h>

#include "virtio/virtio_dev.h"

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_GEOMETRY 4
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_CONFIG_WCE 11
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_ID_BYTES 20
#define ZOC_VBLK_SEG_MAX 126
#define ZOC_VBLK_QUEUE_SIZE_MAX 1024
#define ZOC_VBLK_MAX_QUEUES 64

/* Config space layout (little-endian), virtio 1.2 5.2.4. */
struct virtio_blk_config {
	uint64_t capacity; /* 512-byte sectors */
	uint32_t size_max;
	uint32_t seg_max;
	struct {
		uint16_t cylinders;
		uint8_t heads;
		uint8_t sectors;
	} geometry;
	uint32_t blk_size;
	struct {
		uint8_t physical_block_exp;
		uint8_t alignment_offset;
		uint16_t min_io_size;
		uint32_t opt_io_size;
	} topology;
	uint8_t writeback;
	uint8_t unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors;
	uint32_t max_discard_seg;
	uint32_t discard_sector_alignment;
	uint32_t max_write_zeroes_sectors;
	uint32_t max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
} __attribute__((packed));

struct virtio_blk_outhdr {
	uint32_t type;
	uint32_t ioprio;
	uint64_t sector;
};

struct virtio_blk_discard_write_zeroes {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags; /* bit 0: unmap */
};

struct zoc_bdev;
struct zoc_vblk;

/* Creates a device model on bdev (claims it). NULL with errno on error. */
struct zoc_vblk *zoc_vblk_create(const char *name, struct zoc_bdev *bdev, uint16_t num_queues);
/* All queues must be stopped. Releases the bdev. */
void zoc_vblk_destroy(struct zoc_vblk *vb);
struct zoc_virtio_dev *zoc_vblk_to_virtio(struct zoc_vblk *vb);
struct zoc_vblk *zoc_vblk_from_virtio(struct zoc_virtio_dev *dev); /* NULL if not blk */
const char *zoc_vblk_bdev_name(const struct zoc_vblk *vb);
uint16_t zoc_vblk_num_queues(const struct zoc_vblk *vb);
/* {"total": stats, "queues": [{"index", "reactor", "running", ...stats, vq...}]} */
json_t *zoc_vblk_stats(struct zoc_vblk *vb);

#endif
