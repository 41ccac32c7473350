/* SPDX-License-Identifier: MIT */
/*
 * vlink.c - a virtio device over vhost-user or vfio-user (vlink.h).
 */
#include "zocd/vlink.h"

#include <errno.h>
#include <string.h>

#include "link/vfio_user.h"
#include "link/vhost_user.h"
#include "virtio/virtio_pci.h"

int zoc_vlink_parse(const char *name, enum zoc_vlink_transport *t)
{
	if (!name || strcmp(name, "vhost-user") == 0)
		*t = ZOC_VLINK_VHOST_USER;
	else if (strcmp(name, "vfio-user") == 0)
		*t = ZOC_VLINK_VFIO_USER;
	else
		return -EINVAL;
	return 0;
}

const char *zoc_vlink_name(enum zoc_vlink_transport t)
{
	return t == ZOC_VLINK_VFIO_USER ? "vfio-user" : "vhost-user";
}

int zoc_vlink_open(struct zoc_vlink *l, enum zoc_vlink_transport t, const char *path,
		   struct zoc_virtio_dev *dev)
{
	int err;

	memset(l, 0, sizeof(*l));
	l->transport = t;
	if (t == ZOC_VLINK_VHOST_USER) {
		l->vu = zoc_vu_server_create(path, dev);
		return l->vu ? 0 : -(errno ? errno : EINVAL);
	}
	l->vp = zoc_virtio_pci_create(dev);
	if (!l->vp)
		return -(errno ? errno : ENOMEM);
	l->vfu = zoc_vfu_server_create(path, zoc_virtio_pci_func(l->vp));
	if (l->vfu)
		return 0;
	err = errno ? errno : EINVAL;
	zoc_virtio_pci_destroy(l->vp);
	l->vp = NULL;
	return -err;
}

static void link_gone(void *arg)
{
	struct zoc_vlink *l = arg;

	zoc_virtio_pci_destroy(l->vp);
	l->vp = NULL;
	l->vu = NULL;
	l->vfu = NULL;
	l->gone(l->gone_arg);
}

void zoc_vlink_close(struct zoc_vlink *l, void (*gone)(void *arg), void *arg)
{
	l->gone = gone;
	l->gone_arg = arg;
	if (l->transport == ZOC_VLINK_VFIO_USER)
		zoc_vfu_server_destroy(l->vfu, link_gone, l);
	else
		zoc_vu_server_destroy(l->vu, link_gone, l);
}

const char *zoc_vlink_socket(const struct zoc_vlink *l)
{
	return l->transport == ZOC_VLINK_VFIO_USER ? zoc_vfu_server_path(l->vfu)
						   : zoc_vu_server_path(l->vu);
}

json_t *zoc_vlink_info(const struct zoc_vlink *l)
{
	json_t *o;

	if (l->transport == ZOC_VLINK_VFIO_USER) {
		o = json_object();
		json_object_set_new(o, "socket", json_string(zoc_vlink_socket(l)));
		json_object_set_new(o, "link", zoc_vfu_server_info(l->vfu));
		json_object_set_new(o, "virtio_pci", zoc_virtio_pci_info(l->vp));
	} else {
		o = zoc_vu_server_info(l->vu);
	}
	json_object_set_new(o, "transport", json_string(zoc_vlink_name(l->transport)));
	return o;
}
