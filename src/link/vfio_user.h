/* SPDX-License-Identifier: MIT */
/*
 * vfio_user.h - vfio-user server (QEMU docs/interop/vfio-user.rst): the
 * register-level I/O link. One listening unix socket per PCI function, one
 * client (QEMU's vfio-user-pci, tools/zoc-perf) at a time; messages run on
 * reactor 0.
 *
 *  - VERSION with capabilities (max fds, max data transfer, page sizes,
 *    max DMA maps);
 *  - DMA_MAP / DMA_UNMAP: fd-backed regions are mmapped once into the
 *    connection's DMA space (src/link/dma.h), rebuilt on every change while
 *    the function is quiesced (so an unmap waits for in-flight DMA on it);
 *    all functions of one client share it, nothing is shared across clients;
 *  - DEVICE_GET_INFO, DEVICE_GET_REGION_INFO (config space, BARs; sparse
 *    mmap areas where the model offers them), DEVICE_GET_IRQ_INFO,
 *    DEVICE_SET_IRQS (INTx, MSI, MSI-X: eventfd trigger, mask, unmask),
 *    REGION_READ / REGION_WRITE, DEVICE_RESET;
 *  - maps without an fd become remote regions of the DMA space: devices copy
 *    them with zoc_mem_io_submit(), which sends DMA_READ / DMA_WRITE to the
 *    client (asynchronously, at most the client's max_data_xfer_size per
 *    message, replies matched by msg id, a timeout resets the connection).
 *
 * A malformed message closes that connection (and only it) with a log line;
 * the function is reset and waits for the next client, which gets the device
 * back.
 */
#ifndef ZOC_LINK_VFIO_USER_H
#define ZOC_LINK_VFIO_USER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct zoc_pci_func;
struct zoc_vfu_server;

/* Listens on path (a stale socket file is removed; the directory must
 * exist). NULL with errno set on error. */
struct zoc_vfu_server *zoc_vfu_server_create(const char *path, struct zoc_pci_func *f);
/* Disconnects the client, resets the function (asynchronously: done(arg) on
 * reactor 0 when it is quiet and no longer uses the client's memory),
 * removes the socket. */
void zoc_vfu_server_destroy(struct zoc_vfu_server *s, void (*done)(void *arg), void *arg);
const char *zoc_vfu_server_path(const struct zoc_vfu_server *s);
/* {"socket", "connected", "version", "dma_regions": n, ...} */
json_t *zoc_vfu_server_info(const struct zoc_vfu_server *s);

/* For the fuzzer and unit tests: a connection without a listening socket.
 * Feeds one message (header + payload as on the wire, fds as received; the
 * connection takes ownership of the fds). Returns 0, or <0 if the message
 * would close the connection. Replies go to reply_fd (-1: discarded).
 * Asynchronous steps (quiesce for DMA_MAP/UNMAP, reset) complete before
 * zoc_vfu_conn_feed() returns when the model's callbacks complete at once. */
struct zoc_vfu_conn;
struct zoc_vfu_conn *zoc_vfu_conn_create_test(struct zoc_pci_func *f, int reply_fd);
int zoc_vfu_conn_feed(struct zoc_vfu_conn *c, const void *msg, size_t len, const int *fds,
		      size_t nfds);
/* Lets every server -> client DMA request in flight time out now (as the
 * timer does after VFU_DMA_TIMEOUT_MS): the copies fail, the connection is
 * marked dead. */
void zoc_vfu_conn_dma_expire_test(struct zoc_vfu_conn *c);
void zoc_vfu_conn_destroy_test(struct zoc_vfu_conn *c);

#endif
