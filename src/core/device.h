/* SPDX-License-Identifier: MIT */
/*
 * device.h - the registry of devices zocd serves (any type, any link), for
 * device_list / device_stats / device_delete / save_config. Reactor 0 only.
 */
#ifndef ZOC_CORE_DEVICE_H
#define ZOC_CORE_DEVICE_H

#include <jansson.h>

#define ZOC_DEVICE_NAME_MAX 64

struct zoc_device;

struct zoc_device_ops {
	const char *type; /* "vhost-user-blk", ... */
	/* Asynchronous delete: call done(arg) on reactor 0 when gone. */
	void (*destroy)(struct zoc_device *d, void (*done)(void *arg), void *arg);
	json_t *(*info)(struct zoc_device *d);  /* device_list row */
	json_t *(*stats)(struct zoc_device *d); /* device_stats */
	/* {"method": ..., "params": ...} that re-creates it (save_config), or an
	 * array of them to replay in order. */
	json_t *(*config)(struct zoc_device *d);
};

struct zoc_device {
	char name[ZOC_DEVICE_NAME_MAX];
	const struct zoc_device_ops *ops;
	struct zoc_device *next_;
};

/* -EEXIST if the name is taken, -EINVAL if empty or too long. */
int zoc_device_register(struct zoc_device *d);
void zoc_device_unregister(struct zoc_device *d);
struct zoc_device *zoc_device_find(const char *name);
struct zoc_device *zoc_device_next(struct zoc_device *prev);

#endif
