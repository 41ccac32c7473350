/* SPDX-License-Identifier: MIT */
#include "core/device.h"

#include <errno.h>
#include <string.h>

static struct zoc_device *g_devices;

int zoc_device_register(struct zoc_device *d)
{
	size_t len = strnlen(d->name, sizeof(d->name));
	struct zoc_device **pp = &g_devices;

	if (len == 0 || len >= sizeof(d->name))
		return -EINVAL;
	if (zoc_device_find(d->name))
		return -EEXIST;
	while (*pp) /* keep creation order for save_config */
		pp = &(*pp)->next_;
	d->next_ = NULL;
	*pp = d;
	return 0;
}

void zoc_device_unregister(struct zoc_device *d)
{
	for (struct zoc_device **pp = &g_devices; *pp; pp = &(*pp)->next_) {
		if (*pp == d) {
			*pp = d->next_;
			return;
		}
	}
}

struct zoc_device *zoc_device_find(const char *name)
{
	for (struct zoc_device *d = g_devices; d; d = d->next_)
		if (strcmp(d->name, name) == 0)
			return d;
	return NULL;
}

struct zoc_device *zoc_device_next(struct zoc_device *prev)
{
	return prev ? prev->next_ : g_devices;
}
