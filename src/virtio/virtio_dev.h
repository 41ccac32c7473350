/* SPDX-License-Identifier: MIT */
/*
 * virtio_dev.h - what a virtio device model offers to the links that carry it
 * (vhost-user today, virtio-pci over vfio-user later). A device model never
 * knows which link carries it.
 *
 * All calls run on reactor 0 (the control plane). Queue start/stop move the
 * queue to / from its owning reactor by message; stop is asynchronous: it
 * completes once every request popped from the queue has been pushed back,
 * and then calls done() on reactor 0.
 */
#ifndef ZOC_VIRTIO_VIRTIO_DEV_H
#define ZOC_VIRTIO_VIRTIO_DEV_H

#include <stdbool.h>
#include <stdint.h>

struct zoc_vq;
struct zoc_virtio_dev;

typedef void (*zoc_virtio_done_fn)(void *arg);

struct zoc_virtio_dev_ops {
	/* Feature bits the device offers (device + transport-independent). */
	uint64_t (*get_features)(struct zoc_virtio_dev *dev);
	/* Driver's accepted subset. 0 or -EINVAL. */
	int (*set_features)(struct zoc_virtio_dev *dev, uint64_t features);
	/* Copies config space bytes [off, off+len). 0 or -EINVAL (out of range). */
	int (*get_config)(struct zoc_virtio_dev *dev, uint8_t *buf, uint32_t off, uint32_t len);
	int (*set_config)(struct zoc_virtio_dev *dev, const uint8_t *buf, uint32_t off, uint32_t len);
	/* Starts serving queue qidx; the device takes ownership of vq (it
	 * destroys it on stop). kickfd: eventfd the driver kicks, or -1. */
	int (*queue_start)(struct zoc_virtio_dev *dev, uint16_t qidx, struct zoc_vq *vq, int kickfd);
	/* Stops queue qidx; done(arg) runs on reactor 0 when the queue is
	 * quiet. *base_out (if not NULL) gets the ring position to resume from
	 * (GET_VRING_BASE) before done runs. Returns -ENOENT if not running
	 * (done is then not called). */
	int (*queue_stop)(struct zoc_virtio_dev *dev, uint16_t qidx, uint32_t *base_out,
			  zoc_virtio_done_fn done, void *arg);
	bool (*queue_running)(struct zoc_virtio_dev *dev, uint16_t qidx);
};

struct zoc_virtio_dev {
	const char *name;
	uint16_t device_id;  /* virtio device type: 2 = block, 1 = net */
	uint16_t max_queues;
	uint16_t max_queue_size;
	uint32_t config_size;
	const struct zoc_virtio_dev_ops *ops;
	/* Set by the link that carries the device (reactor 0, NULL: none):
	 * the device calls it on reactor 0 when its config space changed
	 * (virtio-net link status ...), through zoc_virtio_dev_config_changed().
	 * virtio-pci raises the config vector. */
	void (*config_changed)(void *link_arg);
	void *link_arg;
};

static inline void zoc_virtio_dev_config_changed(struct zoc_virtio_dev *dev)
{
	if (dev->config_changed)
		dev->config_changed(dev->link_arg);
}

#endif
