/* SPDX-License-Identifier: MIT */
/*
 * usock.c - unix-socket and fd plumbing the links share (usock.h).
 */
#include "link/usock.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int zoc_usock_listen(const char *path, mode_t mode)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd, err;

	if (!path || strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	if (stat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		unlink(path); /* stale socket of an earlier run */
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = errno;
		close(fd);
		return -err;
	}
	if ((mode && chmod(path, mode) < 0) || listen(fd, 4) < 0) {
		err = errno;
		close(fd);
		unlink(path);
		return -err;
	}
	return fd;
}

ssize_t zoc_usock_recv(int fd, void *buf, size_t len, int *fds, size_t *nfds, size_t max_fds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * ZOC_USOCK_MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = {buf, len};
	/* The control buffer holds max_fds: more is MSG_CTRUNC, as it should. */
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			    .msg_controllen = CMSG_SPACE(sizeof(int) * max_fds)};
	ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);

	if (n == 0)
		return -ECONNRESET;
	if (n < 0)
		return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		size_t k;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int rfd;

			memcpy(&rfd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (*nfds < max_fds)
				fds[(*nfds)++] = rfd;
			else
				close(rfd);
		}
	}
	if (mh.msg_flags & MSG_CTRUNC)
		return -EMSGSIZE;
	return n;
}

void zoc_fd_close(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void zoc_fds_close(int *fds, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		zoc_fd_close(&fds[i]);
	*n = 0;
}

int zoc_fds_take(int *fds, size_t n, size_t i)
{
	int fd;

	if (i >= n)
		return -1;
	fd = fds[i];
	fds[i] = -1;
	return fd;
}

int zoc_fd_covers(int fd, uint64_t off, uint64_t len)
{
	struct stat st;
	uint64_t end;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (__builtin_add_overflow(off, len, &end) || end > (uint64_t)INT64_MAX)
		return -EINVAL;
	if (S_ISREG(st.st_mode) && end > (uint64_t)st.st_size)
		return -EINVAL;
	return 0;
}
