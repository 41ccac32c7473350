/* SPDX-License-Identifier: MIT */
/*
 * rpc_methods.h - zocd's JSON-RPC methods (the control surface of
 * DESIGN.md): back ends, devices, statistics, shutdown.
 */
#ifndef ZOC_ZOCD_RPC_METHODS_H
#define ZOC_ZOCD_RPC_METHODS_H

#include <jansson.h>

/* Registers every method and the save_config writers. */
void zoc_zocd_register_methods(void);
/* The NVMe-over-vfio-user methods (rpc_nvme.c). */
void zoc_zocd_register_nvme_methods(void);
/* virtio_blk_create over vhost-user or vfio-user (rpc_virtio.c). */
void zoc_zocd_register_virtio_methods(void);
/* Switches and virtio-net devices (rpc_net.c); registers the switch
 * save_config writer, so call it before the device writer is registered. */
void zoc_zocd_register_net_methods(void);
/* Uplinks on switches (rpc_uplink.c); they are devices too. */
void zoc_zocd_register_uplink_methods(void);
/* Security groups and conntrack methods (rpc_secgroup.c); the group named
 * name, NULL if none (reactor 0). */
void zoc_zocd_register_secgroup_methods(void);
struct zoc_sg *zoc_zocd_secgroup_get(const char *name);
/* save_config writer of the port_set_secgroup calls; registered after the
 * device writer (the ports must exist). */
void zoc_zocd_secgroup_attach_writer(json_t *array);
/* The switch named name (registry of the vSwitch), NULL if none. For method
 * files that attach ports (uplinks). Reactor 0. */
struct zoc_vswitch;
struct zoc_vswitch *zoc_zocd_switch_get(const char *name);
/* Deletes every device (asynchronously), then every bdev, then stops the
 * reactors. Idempotent. Reactor 0. */
void zoc_zocd_shutdown(void);

#endif
