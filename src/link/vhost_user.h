/* SPDX-License-Identifier: MIT */
/*
 * vhost_user.h - vhost-user back-end (server) for a virtio device model.
 *
 * One listening unix socket per device; one front end (QEMU, libblkio,
 * DPDK virtio-user, ...) connected at a time. Messages run on reactor 0; a
 * malformed message closes that connection (and only it) with a log line.
 * A front end that reconnects (QEMU reconnect=1) gets the device back, and
 * with INFLIGHT_SHMEM requests in flight at a crash are resubmitted.
 *
 * Protocol features offered: MQ, REPLY_ACK, CONFIG, INFLIGHT_SHMEM,
 * RESET_DEVICE.
 */
#ifndef ZOC_LINK_VHOST_USER_H
#define ZOC_LINK_VHOST_USER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct zoc_virtio_dev;
struct zoc_vu_server;

/* Listens on path (removes a stale socket file; the directory must exist).
 * NULL with errno set on error. */
struct zoc_vu_server *zoc_vu_server_create(const char *path, struct zoc_virtio_dev *dev);
/* Disconnects, stops queues (asynchronously: done(arg) on reactor 0 when
 * everything is released), removes the socket. */
void zoc_vu_server_destroy(struct zoc_vu_server *s, void (*done)(void *arg), void *arg);
const char *zoc_vu_server_path(const struct zoc_vu_server *s);
/* {"connected", "features", "protocol_features", "queues": [...]} */
json_t *zoc_vu_server_info(const struct zoc_vu_server *s);

/* For the fuzzer and unit tests: a connection without a listening socket.
 * Feeds one message (header + payload as on the wire, fds as received).
 * Returns 0, or <0 if the message would close the connection. Replies go
 * to reply_fd (-1: discarded). */
struct zoc_vu_conn;
struct zoc_vu_conn *zoc_vu_conn_create_test(struct zoc_virtio_dev *dev, int reply_fd);
int zoc_vu_conn_feed(struct zoc_vu_conn *c, const void *msg, size_t len, const int *fds,
		     size_t nfds);
void zoc_vu_conn_destroy_test(struct zoc_vu_conn *c);

#endif
