/* SPDX-License-Identifier: MIT */
/*
 * usock.h - unix-socket and fd plumbing the links (vhost-user, vfio-user)
 * share: the listening socket, fds received with a message, and the check
 * that a client's file covers what it asks us to map.
 */
#ifndef ZOC_LINK_USOCK_H
#define ZOC_LINK_USOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A non-blocking listening unix socket at path. A stale socket there (an
 * earlier run's) is replaced; any other file is left alone (EEXIST). mode,
 * if not 0, is set before listen() so that nobody connects under another
 * mode. Returns the fd or -errno (ENAMETOOLONG for a path that does not
 * fit); on failure nothing is left behind. */
int zoc_usock_listen(const char *path, mode_t mode);

/* The most fds zoc_usock_recv() takes with one read. */
#define ZOC_USOCK_MAX_FDS 16

/* One non-blocking read of up to len bytes into buf from a stream socket;
 * fds that come with them (SCM_RIGHTS, close-on-exec) are appended to
 * fds[*nfds], those past max_fds (<= ZOC_USOCK_MAX_FDS) closed. Returns the
 * bytes read, 0 if there is nothing now (EAGAIN, EINTR), -ECONNRESET on
 * hang-up, -EMSGSIZE if the sender passed more fds than max_fds fit in the
 * control buffer (the kernel closed the rest), or -errno. */
ssize_t zoc_usock_recv(int fd, void *buf, size_t len, int *fds, size_t *nfds, size_t max_fds);

/* Closes *fd if open and sets it to -1. */
void zoc_fd_close(int *fd);
/* Closes fds[0, *n) and sets *n to 0. */
void zoc_fds_close(int *fds, size_t *n);
/* Takes fds[i] out of the array (it is -1 there afterwards); -1 if i >= n. */
int zoc_fds_take(int *fds, size_t n, size_t i);

/* A shared mapping past the end of its file raises SIGBUS on first touch:
 * a regular file (memfd, tmpfs, hugetlbfs) must cover [off, off + len), and
 * no range may end past INT64_MAX. 0 or -errno (-EINVAL: not covered). */
int zoc_fd_covers(int fd, uint64_t off, uint64_t len);

#endif
