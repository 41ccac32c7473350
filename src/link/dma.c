/* SPDX-License-Identifier: MIT */
/*
 * dma.c - a domain's DMA address space: mmapped regions (L0) in a table
 * sorted by guest-physical address (L1), searched by bisection with a
 * per-thread last-hit shortcut.
 */
#include "link/dma.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"

/*
 * Last region hit by this thread. The table is shared read-only by every
 * reactor of a connection, so the shortcut lives per thread; it is only a
 * hint, always re-validated against the table at hand.
 */
static __thread const struct zoc_mem *t_last_mem;
static __thread uint32_t t_last_idx;

/*
 * SIGBUS guard. A front end can truncate the file behind a region after we
 * mapped it; the next access to a page past the new end raises SIGBUS, which
 * would kill the daemon and every other domain it serves. Every mapping is
 * recorded here; the handler replaces a faulting mapping with anonymous zero
 * pages (mmap MAP_FIXED is async-signal-safe), so the access completes and
 * reads zeros: only the domain that truncated its own memory sees garbage.
 * A fault outside every recorded mapping goes to the previous handler.
 */
#define GUARD_SLOTS 1024

static struct {
	_Atomic uintptr_t start;
	_Atomic uintptr_t len;
} g_guard[GUARD_SLOTS];
static pthread_mutex_t g_guard_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction g_prev_bus;
static _Atomic uint64_t g_guard_hits;

static void guard_handler(int sig, siginfo_t *si, void *uctx)
{
	uintptr_t a = (uintptr_t)si->si_addr;
	static const char msg[] = "zocd: SIGBUS on guest memory (a front end truncated its "
				  "memory file): that region now reads as zeros\n";

	for (unsigned i = 0; i < GUARD_SLOTS; i++) {
		uintptr_t s = atomic_load_explicit(&g_guard[i].start, memory_order_acquire);
		uintptr_t l = atomic_load_explicit(&g_guard[i].len, memory_order_relaxed);

		if (!s || a - s >= l)
			continue;
		if (mmap((void *)s, l, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0) == MAP_FAILED)
			break;
		atomic_fetch_add(&g_guard_hits, 1);
		if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
			/* nothing to do in a signal handler */
		}
		return;
	}
	/* Not ours: whatever handled SIGBUS before (sanitizers, default). */
	if (g_prev_bus.sa_flags & SA_SIGINFO) {
		if (g_prev_bus.sa_sigaction) {
			g_prev_bus.sa_sigaction(sig, si, uctx);
			return;
		}
	} else if (g_prev_bus.sa_handler != SIG_DFL && g_prev_bus.sa_handler != SIG_IGN) {
		g_prev_bus.sa_handler(sig);
		return;
	}
	signal(SIGBUS, SIG_DFL);
	raise(SIGBUS);
}

/* (Re)installs the handler if something else took SIGBUS since (a test
 * harness, a library); what was there becomes the fallback. */
static void guard_install(void)
{
	struct sigaction sa = {0}, cur;

	if (sigaction(SIGBUS, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
	    cur.sa_sigaction == guard_handler)
		return;
	sa.sa_sigaction = guard_handler;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, &g_prev_bus) < 0)
		ZOC_WARN("dma: cannot install the SIGBUS guard: %s", strerror(errno));
}

static int guard_add(void *base, uint64_t len)
{
	int rc = -ENOSPC;

	pthread_mutex_lock(&g_guard_lock);
	guard_install();
	for (unsigned i = 0; i < GUARD_SLOTS; i++) {
		if (atomic_load_explicit(&g_guard[i].start, memory_order_relaxed))
			continue;
		atomic_store_explicit(&g_guard[i].len, (uintptr_t)len, memory_order_relaxed);
		atomic_store_explicit(&g_guard[i].start, (uintptr_t)base, memory_order_release);
		rc = 0;
		break;
	}
	pthread_mutex_unlock(&g_guard_lock);
	return rc;
}

static void guard_del(void *base)
{
	pthread_mutex_lock(&g_guard_lock);
	for (unsigned i = 0; i < GUARD_SLOTS; i++) {
		if (atomic_load_explicit(&g_guard[i].start, memory_order_relaxed) == (uintptr_t)base) {
			atomic_store_explicit(&g_guard[i].start, 0, memory_order_release);
			break;
		}
	}
	pthread_mutex_unlock(&g_guard_lock);
}

uint64_t zoc_mem_sigbus_count(void)
{
	return atomic_load(&g_guard_hits);
}

struct zoc_mem *zoc_mem_create(void)
{
	struct zoc_mem *m = calloc(1, sizeof(*m));

	if (!m) {
		errno = ENOMEM;
		return NULL;
	}
	m->refs = 1;
	return m;
}

/* Does [a, a + alen) intersect [b, b + blen)? Lengths are nonzero and the
 * ends do not overflow (checked by the caller). */
static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static int insert_region(struct zoc_mem *m, const struct zoc_mem_region *r)
{
	uint32_t pos;

	if (m->nregions >= ZOC_MEM_MAX_REGIONS)
		return -ENOSPC;
	for (uint32_t i = 0; i < m->nregions; i++) {
		if (ranges_overlap(r->gpa, r->size, m->regions[i].gpa, m->regions[i].size))
			return -EEXIST;
	}
	for (uint32_t i = 0; i < m->nremote; i++) {
		if (ranges_overlap(r->gpa, r->size, m->remote[i].gpa, m->remote[i].size))
			return -EEXIST;
	}
	for (pos = 0; pos < m->nregions; pos++) {
		if (m->regions[pos].gpa > r->gpa)
			break;
	}
	memmove(&m->regions[pos + 1], &m->regions[pos],
		(m->nregions - pos) * sizeof(m->regions[0]));
	m->regions[pos] = *r;
	m->nregions++;
	return 0;
}

/* Checks that [gpa, gpa+size) and [uva, uva+size) do not wrap around. */
static int check_extent(uint64_t gpa, uint64_t size, uint64_t uva)
{
	uint64_t end;

	if (size == 0)
		return -EINVAL;
	if (__builtin_add_overflow(gpa, size - 1, &end) ||
	    __builtin_add_overflow(uva, size - 1, &end))
		return -EOVERFLOW;
	/* Keep gpa + size representable so that end arithmetic never wraps. */
	if (__builtin_add_overflow(gpa, size, &end) || __builtin_add_overflow(uva, size, &end))
		return -EOVERFLOW;
	return 0;
}

int zoc_mem_add_region(struct zoc_mem *m, uint64_t gpa, uint64_t size, uint64_t uva,
		       uint64_t mmap_offset, int fd, bool writable)
{
	struct zoc_mem_region r = {0};
	long page = sysconf(_SC_PAGESIZE);
	uint64_t delta, map_off, map_len, end;
	void *base;
	int rc;

	if (!m || fd < 0) {
		rc = -EINVAL;
		goto out_close;
	}
	rc = check_extent(gpa, size, uva);
	if (rc)
		goto out_close;
	if (page <= 0)
		page = 4096;
	map_off = mmap_offset & ~((uint64_t)page - 1);
	delta = mmap_offset - map_off;
	if (__builtin_add_overflow(size, delta, &map_len) ||
	    __builtin_add_overflow(mmap_offset, size, &end) || map_len > SIZE_MAX ||
	    map_off > (uint64_t)INT64_MAX) {
		rc = -EOVERFLOW;
		goto out_close;
	}
	if (m->nregions >= ZOC_MEM_MAX_REGIONS) {
		rc = -ENOSPC;
		goto out_close;
	}
	for (uint32_t i = 0; i < m->nregions; i++) {
		if (ranges_overlap(gpa, size, m->regions[i].gpa, m->regions[i].size)) {
			rc = -EEXIST;
			goto out_close;
		}
	}

	/* Shared, not populated: pages fault in on first touch. */
	base = mmap(NULL, (size_t)map_len, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED,
		    fd, (off_t)map_off);
	if (base == MAP_FAILED) {
		rc = -errno;
		ZOC_WARN("dma: mmap of %llu bytes at offset %llu failed: %s",
			 (unsigned long long)map_len, (unsigned long long)map_off,
			 strerror(errno));
		goto out_close;
	}
	/* Guest memory has no place in our core dumps. */
	(void)madvise(base, (size_t)map_len, MADV_DONTDUMP);
	rc = guard_add(base, map_len);
	if (rc) {
		ZOC_WARN("dma: more than %d guest memory mappings", GUARD_SLOTS);
		munmap(base, (size_t)map_len);
		goto out_close;
	}

	r.gpa = gpa;
	r.size = size;
	r.uva = uva;
	r.hva = (uint8_t *)base + delta;
	r.mmap_base = base;
	r.mmap_size = map_len;
	r.fd = -1;
	r.writable = writable;
	rc = insert_region(m, &r);
	if (rc) {
		guard_del(base);
		munmap(base, (size_t)map_len);
	}

out_close:
	if (fd >= 0)
		close(fd);
	return rc;
}

int zoc_mem_add_region_hva(struct zoc_mem *m, uint64_t gpa, uint64_t size, uint64_t uva,
			   void *hva, bool writable)
{
	struct zoc_mem_region r = {0};
	uint64_t end;
	int rc;

	if (!m || !hva)
		return -EINVAL;
	rc = check_extent(gpa, size, uva);
	if (rc)
		return rc;
	if (__builtin_add_overflow((uint64_t)(uintptr_t)hva, size, &end))
		return -EOVERFLOW;
	r.gpa = gpa;
	r.size = size;
	r.uva = uva;
	r.hva = hva;
	r.mmap_base = NULL; /* not ours: never unmapped */
	r.mmap_size = 0;
	r.fd = -1;
	r.writable = writable;
	return insert_region(m, &r);
}

void zoc_mem_get(struct zoc_mem *m)
{
	if (m)
		__atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
}

void zoc_mem_put(struct zoc_mem *m)
{
	if (!m)
		return;
	if (__atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (uint32_t i = 0; i < m->nregions; i++) {
		struct zoc_mem_region *r = &m->regions[i];

		if (r->mmap_base) {
			guard_del(r->mmap_base);
			munmap(r->mmap_base, (size_t)r->mmap_size);
		}
		if (r->fd >= 0)
			close(r->fd);
	}
	if (m->ep)
		zoc_mem_remote_put(m->ep);
	if (t_last_mem == m)
		t_last_mem = NULL;
	free(m);
}

/* Index of the region holding gpa, or -1. */
static inline int find_gpa(const struct zoc_mem *m, uint64_t gpa)
{
	const struct zoc_mem_region *r;
	uint32_t lo, hi;

	if (t_last_mem == m && t_last_idx < m->nregions) {
		r = &m->regions[t_last_idx];
		if (gpa - r->gpa < r->size)
			return (int)t_last_idx;
	}
	/* Last region whose start is <= gpa. */
	lo = 0;
	hi = m->nregions;
	while (lo < hi) {
		uint32_t mid = lo + ((hi - lo) >> 1);

		if (m->regions[mid].gpa <= gpa)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return -1;
	r = &m->regions[lo - 1];
	if (gpa - r->gpa >= r->size)
		return -1;
	t_last_mem = m;
	t_last_idx = lo - 1;
	return (int)(lo - 1);
}

int zoc_mem_find(const struct zoc_mem *m, uint64_t gpa)
{
	return m ? find_gpa(m, gpa) : -1;
}

void *zoc_mem_gpa_to_hva(const struct zoc_mem *m, uint64_t gpa, uint64_t len, bool write)
{
	const struct zoc_mem_region *r;
	uint64_t off;
	int i;

	if (ZOC_UNLIKELY(!m))
		return NULL;
	if (len == 0)
		len = 1;
	i = find_gpa(m, gpa);
	if (i < 0)
		return NULL;
	r = &m->regions[i];
	off = gpa - r->gpa;
	if (len > r->size - off || (write && !r->writable))
		return NULL;
	return r->hva + off;
}

void *zoc_mem_uva_to_hva(const struct zoc_mem *m, uint64_t uva, uint64_t len, bool write)
{
	if (!m)
		return NULL;
	if (len == 0)
		len = 1;
	/* Control path only (ring addresses): a linear scan is enough. */
	for (uint32_t i = 0; i < m->nregions; i++) {
		const struct zoc_mem_region *r = &m->regions[i];
		uint64_t off = uva - r->uva;

		if (uva < r->uva || off >= r->size)
			continue;
		if (len > r->size - off || (write && !r->writable))
			return NULL;
		return r->hva + off;
	}
	return NULL;
}

int zoc_mem_gpa_to_iov(const struct zoc_mem *m, uint64_t gpa, uint64_t len, bool write,
		       struct iovec *iov, int max_iov)
{
	int n = 0;

	if (ZOC_UNLIKELY(!m))
		return -EFAULT;
	while (len > 0) {
		const struct zoc_mem_region *r;
		uint64_t off, chunk;
		int i = find_gpa(m, gpa);

		if (i < 0)
			return -EFAULT;
		r = &m->regions[i];
		if (write && !r->writable)
			return -EFAULT;
		if (n >= max_iov)
			return -ENOBUFS;
		off = gpa - r->gpa;
		chunk = r->size - off;
		if (chunk > len)
			chunk = len;
		iov[n].iov_base = r->hva + off;
		iov[n].iov_len = (size_t)chunk;
		n++;
		len -= chunk;
		/* Cannot wrap: regions end at or below UINT64_MAX. */
		gpa += chunk;
	}
	return n;
}

/* ------------------------------------------------ slow path (no mapping) */

int zoc_mem_add_remote(struct zoc_mem *m, uint64_t gpa, uint64_t size, bool writable)
{
	int rc;

	if (!m)
		return -EINVAL;
	rc = check_extent(gpa, size, gpa);
	if (rc)
		return rc;
	if (m->nremote >= ZOC_MEM_MAX_REMOTE)
		return -ENOSPC;
	for (uint32_t i = 0; i < m->nregions; i++)
		if (ranges_overlap(gpa, size, m->regions[i].gpa, m->regions[i].size))
			return -EEXIST;
	for (uint32_t i = 0; i < m->nremote; i++)
		if (ranges_overlap(gpa, size, m->remote[i].gpa, m->remote[i].size))
			return -EEXIST;
	m->remote[m->nremote++] = (struct zoc_mem_remote_region){gpa, size, writable};
	return 0;
}

struct zoc_mem_remote *zoc_mem_remote_create(const struct zoc_mem_remote_ops *ops, void *ctx)
{
	struct zoc_mem_remote *ep = calloc(1, sizeof(*ep));

	if (!ep)
		return NULL;
	ep->ops = ops;
	ep->ctx = ctx;
	ep->refs = 1;
	return ep;
}

void zoc_mem_remote_detach(struct zoc_mem_remote *ep)
{
	if (ep)
		__atomic_store_n(&ep->ctx, NULL, __ATOMIC_RELEASE);
}

void zoc_mem_remote_put(struct zoc_mem_remote *ep)
{
	if (ep && __atomic_sub_fetch(&ep->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(ep);
}

void zoc_mem_set_remote(struct zoc_mem *m, struct zoc_mem_remote *ep)
{
	if (!m)
		return;
	if (ep)
		__atomic_add_fetch(&ep->refs, 1, __ATOMIC_RELAXED);
	if (m->ep)
		zoc_mem_remote_put(m->ep);
	m->ep = ep;
}

/* Index of the remote region holding gpa, or -1. */
static int find_remote(const struct zoc_mem *m, uint64_t gpa)
{
	for (uint32_t i = 0; i < m->nremote; i++)
		if (gpa - m->remote[i].gpa < m->remote[i].size)
			return (int)i;
	return -1;
}

/* Walks [gpa, gpa+len): 0 if every byte is mapped or remote (and writable
 * when write); *any_remote tells whether some byte is remote. */
static int range_check(const struct zoc_mem *m, uint64_t gpa, uint64_t len, bool write,
		       bool *any_remote)
{
	*any_remote = false;
	while (len) {
		uint64_t off, k;
		int i = find_gpa(m, gpa);

		if (i >= 0) {
			const struct zoc_mem_region *r = &m->regions[i];

			if (write && !r->writable)
				return -EFAULT;
			off = gpa - r->gpa;
			k = ZOC_MIN(len, r->size - off);
		} else {
			const struct zoc_mem_remote_region *r;

			i = find_remote(m, gpa);
			if (i < 0)
				return -EFAULT;
			r = &m->remote[i];
			if (write && !r->writable)
				return -EFAULT;
			off = gpa - r->gpa;
			k = ZOC_MIN(len, r->size - off);
			*any_remote = true;
		}
		len -= k;
		gpa += k;
	}
	return 0;
}

bool zoc_mem_is_remote(const struct zoc_mem *m, uint64_t gpa, uint64_t len, bool write)
{
	bool any;

	if (!m || !m->nremote)
		return false;
	if (len == 0)
		len = 1;
	if (zoc_range_bad(gpa, len, UINT64_MAX))
		return false;
	return range_check(m, gpa, len, write, &any) == 0 && any;
}

static bool on_reactor(const struct zoc_reactor *r)
{
	struct zoc_reactor *cur = zoc_reactor_current();

	/* Outside the reactors (tests, start-up) everything is one thread. */
	return !cur || !r || cur == r;
}

static void send_or_run(struct zoc_reactor *r, zoc_msg_fn fn, void *arg)
{
	if (on_reactor(r)) {
		fn(arg);
		return;
	}
	/* Only a failed allocation of a message fails; a copy must not be
	 * lost (its owner waits for it), so try again. */
	for (int i = 0; zoc_reactor_send_msg(r, fn, arg) != 0; i++) {
		if (i == 0)
			ZOC_WARN_RL("dma: cannot send a copy message between reactors; retrying");
		usleep(100);
	}
}

static void io_complete_msg(void *arg)
{
	struct zoc_mem_io *io = arg;

	io->cb(io, io->status);
}

static void io_finish(struct zoc_mem_io *io, int status)
{
	struct zoc_mem *m = io->mem;

	io->status = status;
	io->mem = NULL;
	zoc_mem_put(m);
	send_or_run(io->origin, io_complete_msg, io);
}

/* Copies what is mapped, hands the next remote run to the link. */
static void io_step(void *arg)
{
	struct zoc_mem_io *io = arg;
	const struct zoc_mem *m = io->mem;

	while (io->done < io->len) {
		uint64_t gpa = io->gpa + io->done, rem = io->len - io->done, off, k;
		uint8_t *buf = (uint8_t *)io->buf + io->done;
		int i = find_gpa(m, gpa);

		if (i >= 0) {
			const struct zoc_mem_region *r = &m->regions[i];

			off = gpa - r->gpa;
			k = ZOC_MIN(rem, r->size - off);
			if (io->to_guest)
				memcpy(r->hva + off, buf, (size_t)k);
			else
				memcpy(buf, r->hva + off, (size_t)k);
			io->done += k;
			continue;
		}
		i = find_remote(m, gpa);
		if (i < 0) {
			io_finish(io, -EFAULT);
			return;
		}
		off = gpa - m->remote[i].gpa;
		io->chunk = ZOC_MIN(rem, m->remote[i].size - off);
		if (!on_reactor(zoc_reactor_get(0))) {
			send_or_run(zoc_reactor_get(0), io_step, io);
			return;
		}
		{
			struct zoc_mem_remote *ep = m->ep;
			void *ctx = ep ? __atomic_load_n(&ep->ctx, __ATOMIC_ACQUIRE) : NULL;

			if (!ctx) {
				io_finish(io, -ENOTCONN);
				return;
			}
			ep->ops->rw(ctx, io);
		}
		return;
	}
	io_finish(io, 0);
}

void zoc_mem_io_remote_done(struct zoc_mem_io *io, int status)
{
	if (status) {
		io_finish(io, status);
		return;
	}
	io->done += io->chunk;
	io->chunk = 0;
	io_step(io);
}

int zoc_mem_io_submit(struct zoc_mem *m, struct zoc_mem_io *io)
{
	bool any;
	int rc;

	if (!m || !io || !io->cb || (io->len && !io->buf))
		return -EINVAL;
	if (io->len && zoc_range_bad(io->gpa, io->len, UINT64_MAX))
		return -EFAULT;
	rc = range_check(m, io->gpa, io->len, io->to_guest, &any);
	if (rc)
		return rc;
	zoc_mem_get(m);
	io->mem = m;
	io->origin = zoc_reactor_current();
	io->done = 0;
	io->chunk = 0;
	io->status = 0;
	io->next = NULL;
	io_step(io);
	return 0;
}
