/* SPDX-License-Identifier: MIT */
/*
 * virtio_pci.h - the virtio-pci modern transport (virtio 1.2 section 4.1),
 * written once for any virtio device model (virtio_dev.h), as a PCI function
 * (pci.h) that a register-level link (vfio-user) carries.
 *
 * What the driver sees:
 *  - IDs 0x1af4:0x1040+type, revision 1 (non-transitional), subsystem
 *    0x1af4:0x1040+type; INTA#, MSI-X, no MSI, no PCIe capability;
 *  - vendor-specific capabilities: common config, notify
 *    (notify_off_multiplier 4, queue i at notify offset i), ISR, device
 *    config (if the device has one) and the PCI configuration access window;
 *  - BAR0 (64-bit memory, 16 KiB): common config at 0x0, ISR at 0x1000,
 *    device config at 0x2000, notify area at 0x3000 (one page); BAR2: the
 *    MSI-X table and PBA, max_queues + 1 vectors.
 *
 * Queues start on the device (ops->queue_start) at DRIVER_OK, or when
 * enabled after it, with their rings translated through the DMA space the
 * link installed (set_dma). A used-buffer notification raises the queue's
 * MSI-X vector, or INTx with ISR bit 0 (ISR reads clear it); a config change
 * (zoc_virtio_dev_config_changed(), or a queue gone broken, which sets
 * DEVICE_NEEDS_RESET) raises the config vector with ISR bit 1. A driver
 * notification is a write to the notify area, which kicks the queue's
 * eventfd; with polling reactors the notify page is offered as a sparse
 * mmap of a scratch page instead (the pollers see new buffers without it).
 *
 * Reset (device_status = 0, a function reset) stops the queues; device_status
 * reads non-zero until they are stopped. quiesce/set_dma/resume stop the
 * running queues, remember where they were, and restart them from there.
 *
 * Everything the driver writes is checked: feature bits outside the offer
 * and a device that refuses them keep FEATURES_OK clear; queue sizes out of
 * range or not a power of two (split), ring addresses outside the DMA space,
 * DRIVER_OK without FEATURES_OK fail the device (DEVICE_NEEDS_RESET);
 * accesses that fit no register are refused (-EINVAL); writes to a running
 * queue's configuration and a second enable are ignored.
 *
 * All calls on reactor 0.
 */
#ifndef ZOC_VIRTIO_VIRTIO_PCI_H
#define ZOC_VIRTIO_VIRTIO_PCI_H

#include <stdint.h>

#include <jansson.h>

struct zoc_pci_func;
struct zoc_virtio_dev;
struct zoc_virtio_pci;

/* Common configuration (virtio 1.2 4.1.4.3), offsets in BAR0. */
#define VIRTIO_PCI_COMMON_DFSELECT 0x00
#define VIRTIO_PCI_COMMON_DF 0x04
#define VIRTIO_PCI_COMMON_GFSELECT 0x08
#define VIRTIO_PCI_COMMON_GF 0x0c
#define VIRTIO_PCI_COMMON_MSIX 0x10
#define VIRTIO_PCI_COMMON_NUMQ 0x12
#define VIRTIO_PCI_COMMON_STATUS 0x14
#define VIRTIO_PCI_COMMON_CFGGENERATION 0x15
#define VIRTIO_PCI_COMMON_Q_SELECT 0x16
#define VIRTIO_PCI_COMMON_Q_SIZE 0x18
#define VIRTIO_PCI_COMMON_Q_MSIX 0x1a
#define VIRTIO_PCI_COMMON_Q_ENABLE 0x1c
#define VIRTIO_PCI_COMMON_Q_NOFF 0x1e
#define VIRTIO_PCI_COMMON_Q_DESCLO 0x20
#define VIRTIO_PCI_COMMON_Q_DESCHI 0x24
#define VIRTIO_PCI_COMMON_Q_AVAILLO 0x28
#define VIRTIO_PCI_COMMON_Q_AVAILHI 0x2c
#define VIRTIO_PCI_COMMON_Q_USEDLO 0x30
#define VIRTIO_PCI_COMMON_Q_USEDHI 0x34
#define VIRTIO_PCI_COMMON_Q_NDATA 0x38
#define VIRTIO_PCI_COMMON_Q_RESET 0x3a
#define VIRTIO_PCI_COMMON_SIZE 0x3c

/* Capability types (cfg_type). */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG 3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG 5

#define VIRTIO_MSI_NO_VECTOR 0xffff

/* Where things are. */
#define ZOC_VPCI_BAR 0
#define ZOC_VPCI_MSIX_BAR 2
#define ZOC_VPCI_COMMON_OFF 0x0000
#define ZOC_VPCI_ISR_OFF 0x1000
#define ZOC_VPCI_DEVICE_OFF 0x2000
#define ZOC_VPCI_NOTIFY_OFF 0x3000
#define ZOC_VPCI_BAR_SIZE 0x4000
#define ZOC_VPCI_NOTIFY_MULT 4
#define ZOC_VPCI_MAX_QUEUES 1024 /* the notify page holds 4 bytes per queue */

/* Wraps dev (which must outlive the transport) in a PCI function; installs
 * dev->config_changed. NULL with errno (EINVAL: a device the transport
 * cannot carry: no queues, a config space over 4 KiB, no VERSION_1 ...). */
struct zoc_virtio_pci *zoc_virtio_pci_create(struct zoc_virtio_dev *dev);
/* The function must be quiet (reset done, e.g. by the link's teardown);
 * destroys the PCI function too. */
void zoc_virtio_pci_destroy(struct zoc_virtio_pci *vp);
struct zoc_pci_func *zoc_virtio_pci_func(struct zoc_virtio_pci *vp);
/* The device's config space changed: bump config_generation and raise the
 * config vector (ISR bit 1). Also what dev->config_changed does. */
void zoc_virtio_pci_config_changed(struct zoc_virtio_pci *vp);
/* {"status", "features", "queues": [{"index", "size", "enabled",
 *  "running", "msix_vector"}], "pci": zoc_pci_func_info} */
json_t *zoc_virtio_pci_info(struct zoc_virtio_pci *vp);

#endif
