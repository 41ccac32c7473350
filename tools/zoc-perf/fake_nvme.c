/* SPDX-License-Identifier: MIT */
/*
 * zoc-perf-fake-nvme - a minimal vfio-user NVMe target for testing zoc-perf
 * on its own and measuring the client's ceiling: one thread, one client at
 * a time, doorbells polled in a mmapped page, completions posted at once.
 * Null data by default (--ram MB keeps data, for --rw verify).
 *
 *   zoc-perf-fake-nvme --socket PATH [--ram MB] [--size-mb 1024] [--once]
 *                      [--no-mmap] [--cpu N] [--fault NAME[:N]]
 *
 * --fault makes it misbehave after N I/Os (or at message N for message
 * faults; default 100) so the client's checks can be tested: io-error,
 * cqe-cid, cqe-sqid, cqe-dup, hang, cfs, corrupt (needs --ram), reply-id,
 * reply-cmd, reply-short, reply-long, version-major, error-payload,
 * extra-fd, sparse-bad, close, reply-posted (answers No_reply messages).
 *
 * Not zocd and not a model of it: just enough of the spec for the client.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define HDR 16
#define MAXQ 65
#define MSIX_VEC 65
#define MAX_DMA 16
#define ZMIN(a, b) ((a) < (b) ? (a) : (b))

struct dma { uint64_t iova, size; uint8_t *va; };

struct cq { uint64_t iova; uint16_t size, tail, head, iv; uint8_t phase, ien, valid; int posted; };
struct sq { uint64_t iova; uint16_t size, head, cqid; uint8_t valid; };

static struct {
	int lfd, cfd;
	bool once, no_mmap;
	uint8_t *ram;
	uint64_t disk_bytes;
	struct dma dma[MAX_DMA];
	int ndma;
	uint8_t cfg[256];
	uint8_t msix[MSIX_VEC * 16];
	int irqfd[MSIX_VEC];
	uint32_t *db;        /* mmapped doorbell page (memfd offset 0x1000) */
	int dbfd;
	uint32_t cc, csts, aqa;
	uint64_t asq, acq;
	struct sq sq[MAXQ];
	struct cq cq[MAXQ];
	uint16_t nq_alloc;
	uint64_t ios, msgs;
	const char *fault;
	uint64_t fault_at;
	bool hung;
} g;

static bool fault(const char *name, uint64_t count)
{
	return g.fault && !strcmp(g.fault, name) && count >= g.fault_at;
}

static void *tr(uint64_t iova, uint64_t len)
{
	for (int i = 0; i < g.ndma; i++)
		if (iova >= g.dma[i].iova && len <= g.dma[i].size && iova - g.dma[i].iova <= g.dma[i].size - len)
			return g.dma[i].va + (iova - g.dma[i].iova);
	return NULL;
}

static bool g_no_reply; /* the message being handled had No_reply */

static int send_reply(uint16_t id, uint16_t cmd, const void *p, uint32_t len, int err, int *fds, int nfds)
{
	uint32_t h[4];
	struct iovec iov[2] = { { h, HDR }, { (void *)p, len } };
	union { char b[CMSG_SPACE(sizeof(int) * 4)]; struct cmsghdr a; } cb;
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };

	g.msgs++;
	if (g_no_reply && !fault("reply-posted", 0))
		return 0;
	if (fault("reply-id", g.msgs))
		id++;
	if (fault("reply-cmd", g.msgs))
		cmd = cmd == 9 ? 10 : 9;
	if (fault("error-payload", g.msgs) && !err && len) {
		err = EIO;
		h[1] = HDR + len;
		goto keep_payload;
	}
	h[1] = HDR + (err ? 0 : len);
	if (err)
		m.msg_iovlen = 1;
keep_payload:
	h[0] = (uint32_t)id | (uint32_t)cmd << 16;
	h[2] = 1 | (err ? 0x20 : 0);
	h[3] = (uint32_t)err;
	if (fault("extra-fd", g.msgs) && !nfds) {
		fds = &g.dbfd;
		nfds = 1;
	}
	if (nfds) {
		struct cmsghdr *c;

		m.msg_control = cb.b;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	return sendmsg(g.cfd, &m, MSG_NOSIGNAL) == (ssize_t)h[1] ? 0 : -1;
}

static void ctrl_reset(void)
{
	memset(g.sq, 0, sizeof(g.sq));
	memset(g.cq, 0, sizeof(g.cq));
	memset(g.db, 0, 4096);
	g.csts = 0;
	g.cc = 0;
	g.hung = false;
}

static void post(uint16_t sqid, uint16_t cid, uint16_t status, uint32_t dw0)
{
	struct sq *s = &g.sq[sqid];
	struct cq *c = &g.cq[s->cqid];
	uint8_t *e = tr(c->iova + 16ull * c->tail, 16);
	uint16_t st = (uint16_t)(status << 1 | c->phase);

	if (!e)
		return;
	if (sqid && fault("cqe-cid", g.ios))
		cid = 0xfff0;
	if (sqid && fault("cqe-sqid", g.ios))
		sqid = (uint16_t)(sqid + 7);
	memcpy(e, &dw0, 4);
	memset(e + 4, 0, 4);
	memcpy(e + 8, &s->head, 2);
	memcpy(e + 10, &sqid, 2);
	memcpy(e + 12, &cid, 2);
	__atomic_store_n((uint16_t *)(e + 14), st, __ATOMIC_RELEASE);
	if (++c->tail == c->size) {
		c->tail = 0;
		c->phase ^= 1;
	}
	c->posted++;
}

static uint16_t admin(const uint8_t *cmd, uint32_t *dw0)
{
	uint8_t opc = cmd[0];
	uint32_t nsid, c10, c11;
	uint64_t prp1;
	uint16_t qid, qs;

	memcpy(&nsid, cmd + 4, 4);
	memcpy(&prp1, cmd + 24, 8);
	memcpy(&c10, cmd + 40, 4);
	memcpy(&c11, cmd + 44, 4);
	qid = (uint16_t)c10;
	qs = (uint16_t)((c10 >> 16) + 1);
	switch (opc) {
	case 0x06: {
		uint8_t *b = tr(prp1, 4096);

		if (!b)
			return 0x04;
		memset(b, 0, 4096);
		if ((c10 & 0xff) == 1) {
			uint32_t nn = 1;

			b[0] = 0x36; b[1] = 0x1b;
			memcpy(b + 4, "FAKE0001            ", 20);
			memcpy(b + 24, "zoc-perf fake nvme                      ", 40);
			memcpy(b + 64, "1.0     ", 8);
			b[77] = 5;
			b[512] = 0x66;
			b[513] = 0x44;
			memcpy(b + 516, &nn, 4);
		} else if ((c10 & 0xff) == 0) {
			uint64_t nsze = g.disk_bytes / 512;
			uint32_t lbaf = 9u << 16;

			if (nsid != 1)
				return 0x0b;
			memcpy(b, &nsze, 8);
			memcpy(b + 8, &nsze, 8);
			memcpy(b + 16, &nsze, 8);
			memcpy(b + 128, &lbaf, 4);
		} else {
			return 0x02;
		}
		return 0;
	}
	case 0x09:
		if ((c10 & 0xff) != 7)
			return 0x02;
		g.nq_alloc = (uint16_t)ZMIN((c11 & 0xffff) + 1u, MAXQ - 1u);
		*dw0 = (uint32_t)(g.nq_alloc - 1) | (uint32_t)(g.nq_alloc - 1) << 16;
		return 0;
	case 0x05:
		if (qid == 0 || qid > g.nq_alloc || g.cq[qid].valid)
			return 0x101;
		if (qs < 2 || qs > 1024)
			return 0x102;
		g.cq[qid] = (struct cq){ .iova = prp1, .size = qs, .phase = 1, .ien = (c11 >> 1) & 1,
					 .iv = (uint16_t)(c11 >> 16), .valid = 1 };
		return 0;
	case 0x01: {
		uint16_t cqid = (uint16_t)(c11 >> 16);

		if (qid == 0 || qid > g.nq_alloc || g.sq[qid].valid)
			return 0x101;
		if (cqid == 0 || cqid >= MAXQ || !g.cq[cqid].valid)
			return 0x100;
		if (qs < 2 || qs > 1024)
			return 0x102;
		g.sq[qid] = (struct sq){ .iova = prp1, .size = qs, .cqid = cqid, .valid = 1 };
		g.db[2 * qid] = 0;
		return 0;
	}
	case 0x00:
		if (qid == 0 || qid >= MAXQ || !g.sq[qid].valid)
			return 0x101;
		g.sq[qid].valid = 0;
		return 0;
	case 0x04:
		if (qid == 0 || qid >= MAXQ || !g.cq[qid].valid)
			return 0x101;
		g.cq[qid].valid = 0;
		g.db[2 * qid + 1] = 0;
		return 0;
	}
	return 0x01;
}

static uint16_t io(const uint8_t *cmd)
{
	uint64_t slba, prp1, prp2, off, len;
	uint32_t nlb;
	uint8_t opc = cmd[0];

	if (opc == 0x00)
		return 0;
	if (opc != 0x01 && opc != 0x02)
		return 0x01;
	memcpy(&prp1, cmd + 24, 8);
	memcpy(&prp2, cmd + 32, 8);
	memcpy(&slba, cmd + 40, 8);
	nlb = (uint32_t)(cmd[48] | cmd[49] << 8) + 1;
	off = slba * 512;
	len = (uint64_t)nlb * 512;
	if (off + len > g.disk_bytes || len > (128u << 10))
		return 0x80;
	if (!g.ram)
		return tr(prp1, 1) ? 0 : 0x04;
	/* PRP walk: first page from prp1, then prp2 or a list */
	{
		uint64_t done = 0, first = 4096 - (prp1 & 4095);
		uint64_t *list = NULL;
		unsigned li = 0;

		while (done < len) {
			uint64_t a, chunk;
			uint8_t *p;

			if (done == 0) {
				a = prp1;
				chunk = first < len ? first : len;
			} else {
				if (len - first <= 4096 && done == first)
					a = prp2;
				else {
					if (!list)
						list = tr(prp2, 4096 - (prp2 & 4095));
					if (!list)
						return 0x04;
					a = list[li++];
				}
				chunk = len - done < 4096 ? len - done : 4096;
			}
			p = tr(a, chunk);
			if (!p)
				return 0x04;
			if (opc == 0x01)
				memcpy(g.ram + off + done, p, chunk);
			else
				memcpy(p, g.ram + off + done, chunk);
			done += chunk;
		}
	}
	return 0;
}

static void process(void)
{
	for (int q = 0; q < MAXQ; q++) {
		struct sq *s = &g.sq[q];
		uint32_t tail;

		if (!s->valid || (q && g.hung))
			continue;
		tail = __atomic_load_n(&g.db[2 * q], __ATOMIC_ACQUIRE);
		if (tail >= s->size)
			continue;
		while (s->head != tail) {
			struct cq *c = &g.cq[s->cqid];
			uint32_t cqh = __atomic_load_n(&g.db[2 * s->cqid + 1], __ATOMIC_ACQUIRE);
			uint8_t *cmd = tr(s->iova + 64ull * s->head, 64);
			uint16_t cid, st;
			uint32_t dw0 = 0;

			if ((c->tail + 1u) % c->size == cqh)
				break; /* CQ full */
			if (!cmd)
				return;
			memcpy(&cid, cmd + 2, 2);
			if (++s->head == s->size)
				s->head = 0;
			st = q == 0 ? admin(cmd, &dw0) : io(cmd);
			if (q) {
				g.ios++;
				if (fault("io-error", g.ios))
					st = 0x80;
				if (fault("corrupt", g.ios) && cmd[0] == 0x02) {
					uint64_t prp1;
					uint8_t *p;

					memcpy(&prp1, cmd + 24, 8);
					p = tr(prp1, 1);
					if (p)
						*p ^= 0x40;
				}
				if (fault("cfs", g.ios)) {
					g.csts |= 2;
					g.hung = true;
					return;
				}
				if (fault("hang", g.ios)) {
					g.hung = true;
					return;
				}
			}
			post((uint16_t)q, cid, st, dw0);
			if (q && fault("cqe-dup", g.ios))
				post((uint16_t)q, cid, st, dw0);
		}
	}
	for (int q = 1; q < MAXQ; q++) {
		struct cq *c = &g.cq[q];

		if (c->valid && c->posted) {
			c->posted = 0;
			if (c->ien && c->iv < MSIX_VEC && g.irqfd[c->iv] >= 0) {
				uint64_t one = 1;
				uint32_t ctl;

				memcpy(&ctl, g.msix + 16 * c->iv + 12, 4);
				if (!(ctl & 1) && (g.cfg[0x42 + 1] & 0x80))
					if (write(g.irqfd[c->iv], &one, 8) < 0)
						perror("eventfd");
			}
		}
	}
}

static void bar0_write(uint64_t off, const uint8_t *d, uint32_t n)
{
	uint32_t v = 0;

	if (off >= 0x1000 && off + n <= 0x2000 && n == 4) {
		memcpy(&v, d, 4);
		__atomic_store_n(&g.db[(off - 0x1000) / 4], v, __ATOMIC_RELEASE);
		return;
	}
	if (n != 4)
		return;
	memcpy(&v, d, 4);
	switch (off) {
	case 0x14:
		if ((v & 1) && !(g.cc & 1)) {
			g.sq[0] = (struct sq){ .iova = g.asq, .size = (uint16_t)((g.aqa & 0xfff) + 1), .valid = 1 };
			g.cq[0] = (struct cq){ .iova = g.acq, .size = (uint16_t)(((g.aqa >> 16) & 0xfff) + 1), .phase = 1, .valid = 1 };
			memset(g.db, 0, 4096);
			g.csts |= 1;
		} else if (!(v & 1) && (g.cc & 1)) {
			ctrl_reset();
		}
		if (v & (3u << 14))
			g.csts = (g.csts & ~0xcu) | 0x8;
		g.cc = v;
		break;
	case 0x24: g.aqa = v; break;
	case 0x28: g.asq = (g.asq & ~0xffffffffull) | v; break;
	case 0x2c: g.asq = (g.asq & 0xffffffffull) | (uint64_t)v << 32; break;
	case 0x30: g.acq = (g.acq & ~0xffffffffull) | v; break;
	case 0x34: g.acq = (g.acq & 0xffffffffull) | (uint64_t)v << 32; break;
	}
}

static void bar0_read(uint64_t off, uint8_t *d, uint32_t n)
{
	uint8_t regs[0x40] = { 0 };
	uint64_t cap = 1023 | 1ull << 16 | 10ull << 24 | 1ull << 37;
	uint32_t vs = 0x10400;

	memcpy(regs, &cap, 8);
	memcpy(regs + 8, &vs, 4);
	memcpy(regs + 0x14, &g.cc, 4);
	memcpy(regs + 0x1c, &g.csts, 4);
	memcpy(regs + 0x24, &g.aqa, 4);
	memcpy(regs + 0x28, &g.asq, 8);
	memcpy(regs + 0x30, &g.acq, 8);
	memset(d, 0, n);
	if (off + n <= sizeof(regs))
		memcpy(d, regs + off, n);
	else if (off >= 0x1000 && off + n <= 0x2000)
		memcpy(d, (uint8_t *)g.db + off - 0x1000, n);
}

static int handle(void)
{
	uint8_t buf[4096 + 64];
	uint32_t h[4];
	union { char b[CMSG_SPACE(sizeof(int) * 16)]; struct cmsghdr a; } cb;
	struct iovec iov = { h, HDR };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb.b, .msg_controllen = sizeof(cb.b) };
	int fds[16], nfds = 0;
	ssize_t r = recvmsg(g.cfd, &m, MSG_WAITALL | MSG_CMSG_CLOEXEC);
	uint16_t id, cmd;
	uint32_t plen;

	if (r != HDR)
		return -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
		if (c->cmsg_type == SCM_RIGHTS) {
			nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			memcpy(fds, CMSG_DATA(c), sizeof(int) * (size_t)nfds);
		}
	id = (uint16_t)h[0];
	cmd = (uint16_t)(h[0] >> 16);
	g_no_reply = h[2] & 0x10;
	if (h[1] < HDR || h[1] - HDR > sizeof(buf))
		return -1;
	plen = h[1] - HDR;
	if (plen && recv(g.cfd, buf, plen, MSG_WAITALL) != (ssize_t)plen)
		return -1;
	if (fault("close", g.msgs + 1))
		return -1;
	switch (cmd) {
	case 1: {
		static const char js[] = "{\"capabilities\":{\"max_msg_fds\":16,\"max_data_xfer_size\":1048576,\"pgsizes\":4096,\"max_dma_maps\":16}}";
		uint8_t rep[4 + sizeof(js)] = { 0 };

		memcpy(rep + 4, js, sizeof(js));
		if (fault("version-major", 0))
			rep[0] = 1;
		return send_reply(id, cmd, rep, sizeof(rep), 0, NULL, 0);
	}
	case 2: {
		uint64_t off, iova, size;
		void *va;

		memcpy(&off, buf + 8, 8);
		memcpy(&iova, buf + 16, 8);
		memcpy(&size, buf + 24, 8);
		if (nfds != 1 || g.ndma == MAX_DMA)
			return send_reply(id, cmd, NULL, 0, EINVAL, NULL, 0);
		va = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], (off_t)off);
		close(fds[0]);
		if (va == MAP_FAILED)
			return send_reply(id, cmd, NULL, 0, errno, NULL, 0);
		g.dma[g.ndma++] = (struct dma){ iova, size, va };
		return send_reply(id, cmd, NULL, 0, 0, NULL, 0);
	}
	case 3: {
		uint64_t iova, size;

		memcpy(&iova, buf + 8, 8);
		memcpy(&size, buf + 16, 8);
		for (int i = 0; i < g.ndma; i++)
			if (g.dma[i].iova == iova && g.dma[i].size == size) {
				munmap(g.dma[i].va, size);
				g.dma[i] = g.dma[--g.ndma];
				return send_reply(id, cmd, buf, 24, 0, NULL, 0);
			}
		return send_reply(id, cmd, NULL, 0, ENOENT, NULL, 0);
	}
	case 4: {
		uint32_t rep[4] = { 16, 3, 9, 5 };

		return send_reply(id, cmd, rep, 16, 0, NULL, 0);
	}
	case 5: {
		uint32_t idx, rep[32] = { 0 };
		uint64_t size = 0;

		memcpy(&idx, buf + 8, 4);
		rep[0] = 32;
		rep[2] = idx;
		if (idx == 0)
			size = 0x4000;
		else if (idx == 4)
			size = 0x2000;
		else if (idx == 7)
			size = 256;
		memcpy(&rep[4], &size, 8);
		if (size)
			rep[1] = 3;
		if (idx == 0 && !g.no_mmap) {
			uint64_t a[2] = { 0x1000, 0x1000 };

			rep[0] = 32 + 16 + 16;
			rep[1] |= 4 | 8;
			rep[3] = 32;
			rep[8] = 1 | 1u << 16; /* id 1, version 1 */
			rep[9] = 0;
			rep[10] = 1;
			if (fault("sparse-bad", 0))
				a[0] = 0x3800;
			memcpy(&rep[12], a, 16);
			return send_reply(id, cmd, rep, rep[0], 0, &g.dbfd, 1);
		}
		return send_reply(id, cmd, rep, 32, 0, NULL, 0);
	}
	case 7: {
		uint32_t idx, rep[4];

		memcpy(&idx, buf + 8, 4);
		rep[0] = 16;
		rep[1] = 1;
		rep[2] = idx;
		rep[3] = idx == 2 ? MSIX_VEC : 0;
		return send_reply(id, cmd, rep, 16, 0, NULL, 0);
	}
	case 8: {
		uint32_t flags, idx, start, count;

		memcpy(&flags, buf + 4, 4);
		memcpy(&idx, buf + 8, 4);
		memcpy(&start, buf + 12, 4);
		memcpy(&count, buf + 16, 4);
		if (idx != 2 || start + count > MSIX_VEC) {
			for (int i = 0; i < nfds; i++)
				close(fds[i]);
			return send_reply(id, cmd, NULL, 0, EINVAL, NULL, 0);
		}
		if (count == 0)
			for (int i = 0; i < MSIX_VEC; i++) {
				if (g.irqfd[i] >= 0)
					close(g.irqfd[i]);
				g.irqfd[i] = -1;
			}
		for (int i = 0; i < nfds && (uint32_t)i < count; i++) {
			if (g.irqfd[start + i] >= 0)
				close(g.irqfd[start + i]);
			g.irqfd[start + i] = fds[i];
		}
		return send_reply(id, cmd, NULL, 0, 0, NULL, 0);
	}
	case 9:
	case 10: {
		uint64_t off;
		uint32_t region, count;
		uint8_t rep[16 + 64];

		memcpy(&off, buf, 8);
		memcpy(&region, buf + 8, 4);
		memcpy(&count, buf + 12, 4);
		if (count > 64)
			return send_reply(id, cmd, NULL, 0, EINVAL, NULL, 0);
		memcpy(rep, buf, 16);
		if (fault("reply-short", g.msgs + 1))
			return send_reply(id, cmd, rep, 12, 0, NULL, 0);
		if (fault("reply-long", g.msgs + 1) && cmd == 9)
			return send_reply(id, cmd, rep, 16 + count + 4, 0, NULL, 0);
		if (cmd == 10) {
			if (region == 0)
				bar0_write(off, buf + 16, count);
			else if (region == 7 && off + count <= 256) {
				if (off == 4 && count == 2)
					memcpy(g.cfg + 4, buf + 16, 2);
				else if (off == 0x42 && count == 2)
					memcpy(g.cfg + 0x42, buf + 16, 2);
			} else if (region == 4 && off + count <= sizeof(g.msix))
				memcpy(g.msix + off, buf + 16, count);
			return send_reply(id, cmd, rep, 16, 0, NULL, 0);
		}
		if (region == 0)
			bar0_read(off, rep + 16, count);
		else if (region == 7 && off + count <= 256)
			memcpy(rep + 16, g.cfg + off, count);
		else if (region == 4 && off + count <= sizeof(g.msix))
			memcpy(rep + 16, g.msix + off, count);
		else
			memset(rep + 16, 0xff, count);
		return send_reply(id, cmd, rep, 16 + count, 0, NULL, 0);
	}
	case 13:
		ctrl_reset();
		return send_reply(id, cmd, NULL, 0, 0, NULL, 0);
	}
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	return send_reply(id, cmd, NULL, 0, ENOSYS, NULL, 0);
}

static void disconnect(void)
{
	close(g.cfd);
	g.cfd = -1;
	for (int i = 0; i < g.ndma; i++)
		munmap(g.dma[i].va, g.dma[i].size);
	g.ndma = 0;
	for (int i = 0; i < MSIX_VEC; i++) {
		if (g.irqfd[i] >= 0)
			close(g.irqfd[i]);
		g.irqfd[i] = -1;
	}
	ctrl_reset();
	fprintf(stderr, "fake-nvme: client gone after %llu I/Os\n", (unsigned long long)g.ios);
	g.ios = 0;
	g.msgs = 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' }, { "ram", required_argument, NULL, 'r' },
		{ "size-mb", required_argument, NULL, 'S' }, { "once", no_argument, NULL, 'o' },
		{ "no-mmap", no_argument, NULL, 'n' }, { "cpu", required_argument, NULL, 'c' },
		{ "fault", required_argument, NULL, 'f' }, { 0 },
	};
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = NULL;
	uint64_t ram_mb = 0, size_mb = 1024;
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 's': path = optarg; break;
		case 'r': ram_mb = strtoull(optarg, NULL, 0); break;
		case 'S': size_mb = strtoull(optarg, NULL, 0); break;
		case 'o': g.once = true; break;
		case 'n': g.no_mmap = true; break;
		case 'f': {
			char *colon = strchr(optarg, ':');

			g.fault = optarg;
			g.fault_at = 100;
			if (colon) {
				*colon = 0;
				g.fault_at = strtoull(colon + 1, NULL, 0);
			}
			break;
		}
		case 'c': {
			cpu_set_t s;

			CPU_ZERO(&s);
			CPU_SET(atoi(optarg), &s);
			sched_setaffinity(0, sizeof(s), &s);
			break;
		}
		default:
			fprintf(stderr, "usage: %s --socket PATH [--ram MB] [--size-mb N] [--once] [--no-mmap] [--cpu N]\n", argv[0]);
			return 2;
		}
	}
	if (!path || strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "fake-nvme: --socket PATH needed\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	g.disk_bytes = (ram_mb ? ram_mb : size_mb) << 20;
	if (ram_mb) {
		g.ram = mmap(NULL, g.disk_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (g.ram == MAP_FAILED)
			return 1;
	}
	for (int i = 0; i < MSIX_VEC; i++)
		g.irqfd[i] = -1;
	/* config: QEMU's NVMe ids, class 010802, cap list with MSI-X at 0x40 */
	g.cfg[0] = 0x36; g.cfg[1] = 0x1b; g.cfg[2] = 0x10; g.cfg[3] = 0x00;
	g.cfg[6] = 0x10;
	g.cfg[9] = 0x02; g.cfg[10] = 0x08; g.cfg[11] = 0x01;
	g.cfg[0x34] = 0x40;
	g.cfg[0x40] = 0x11; g.cfg[0x41] = 0;
	g.cfg[0x42] = (MSIX_VEC - 1) & 0xff; g.cfg[0x43] = (MSIX_VEC - 1) >> 8;
	g.cfg[0x44] = 4; /* table BAR 4 offset 0 */
	g.cfg[0x48] = 0x04; g.cfg[0x49] = 0x10; /* PBA BAR 4 offset 0x1000 */
	for (int i = 0; i < MSIX_VEC; i++)
		g.msix[16 * i + 12] = 1;
	g.dbfd = memfd_create("fake-nvme-db", MFD_CLOEXEC);
	if (g.dbfd < 0 || ftruncate(g.dbfd, 0x2000) < 0)
		return 1;
	g.db = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, g.dbfd, 0x1000);
	if (g.db == MAP_FAILED)
		return 1;
	g.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	strcpy(sa.sun_path, path);
	unlink(path);
	if (bind(g.lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(g.lfd, 1) < 0) {
		perror("fake-nvme: bind");
		return 1;
	}
	g.cfd = -1;
	for (;;) {
		if (g.cfd < 0) {
			g.cfd = accept4(g.lfd, NULL, NULL, SOCK_CLOEXEC);
			if (g.cfd < 0)
				return 1;
			continue;
		}
		for (unsigned spin = 0;; spin++) {
			if (g.csts & 1)
				process();
			if ((spin & 255) == 0) {
				struct pollfd p = { .fd = g.cfd, .events = POLLIN };

				if (poll(&p, 1, (g.csts & 1) ? 0 : 100) > 0)
					break;
			}
		}
		if (handle() < 0) {
			disconnect();
			if (g.once)
				return 0;
		}
	}
}
