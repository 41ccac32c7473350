/* SPDX-License-Identifier: MIT */
/* test_dma.c - the domain DMA address space (src/link/dma.c). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/log.h"
#include "link/dma.h"

#define MB (1024ull * 1024)

static void test_create_put(void **state)
{
	struct zoc_mem *m = zoc_mem_create();

	(void)state;
	assert_non_null(m);
	assert_int_equal(m->nregions, 0);
	assert_int_equal(m->refs, 1);
	assert_null(zoc_mem_gpa_to_hva(m, 0, 1, false));
	assert_null(zoc_mem_uva_to_hva(m, 0, 1, false));
	zoc_mem_get(m);
	assert_int_equal(m->refs, 2);
	zoc_mem_put(m);
	assert_int_equal(m->refs, 1);
	zoc_mem_put(m);
	zoc_mem_put(NULL);
}

static void test_add_rejects(void **state)
{
	struct zoc_mem *m = zoc_mem_create();
	static uint8_t buf[8192];

	(void)state;
	assert_int_equal(zoc_mem_add_region_hva(m, 0x1000, 0, 0, buf, true), -EINVAL);
	assert_int_equal(zoc_mem_add_region_hva(m, 0x1000, 16, 0, NULL, true), -EINVAL);
	assert_int_equal(zoc_mem_add_region_hva(NULL, 0x1000, 16, 0, buf, true), -EINVAL);
	/* gpa + size wraps */
	assert_int_equal(zoc_mem_add_region_hva(m, UINT64_MAX - 10, 100, 0, buf, true),
			 -EOVERFLOW);
	/* uva + size wraps */
	assert_int_equal(zoc_mem_add_region_hva(m, 0, 100, UINT64_MAX - 10, buf, true),
			 -EOVERFLOW);
	assert_int_equal(zoc_mem_add_region_hva(m, 0x1000, 0x1000, 0, buf, true), 0);
	/* overlaps: inside, straddling either end, covering */
	assert_int_equal(zoc_mem_add_region_hva(m, 0x1800, 0x10, 0, buf, true), -EEXIST);
	assert_int_equal(zoc_mem_add_region_hva(m, 0x0800, 0x900, 0, buf, true), -EEXIST);
	assert_int_equal(zoc_mem_add_region_hva(m, 0x1fff, 0x10, 0, buf, true), -EEXIST);
	assert_int_equal(zoc_mem_add_region_hva(m, 0x0, 0x10000, 0, buf, true), -EEXIST);
	/* adjacent is fine */
	assert_int_equal(zoc_mem_add_region_hva(m, 0x2000, 0x1000, 0, buf + 4096, true), 0);
	assert_int_equal(zoc_mem_add_region_hva(m, 0x0, 0x1000, 0, buf, true), 0);
	assert_int_equal(m->nregions, 3);
	zoc_mem_put(m);

	/* full table */
	m = zoc_mem_create();
	for (unsigned i = 0; i < ZOC_MEM_MAX_REGIONS; i++)
		assert_int_equal(zoc_mem_add_region_hva(m, i * 0x10000ull, 0x100, 0, buf, true), 0);
	assert_int_equal(zoc_mem_add_region_hva(m, 0x1000000, 0x100, 0, buf, true), -ENOSPC);
	zoc_mem_put(m);
}

static void test_lookup_bounds(void **state)
{
	struct zoc_mem *m = zoc_mem_create();
	uint8_t *a = malloc(0x2000), *b = malloc(0x1000);

	(void)state;
	assert_int_equal(zoc_mem_add_region_hva(m, 0x10000, 0x2000, 0x7f0000, a, true), 0);
	assert_int_equal(zoc_mem_add_region_hva(m, 0x40000, 0x1000, 0x900000, b, false), 0);

	assert_ptr_equal(zoc_mem_gpa_to_hva(m, 0x10000, 0x2000, true), a);
	assert_ptr_equal(zoc_mem_gpa_to_hva(m, 0x11fff, 1, true), a + 0x1fff);
	assert_ptr_equal(zoc_mem_gpa_to_hva(m, 0x11fff, 0, false), a + 0x1fff);
	assert_null(zoc_mem_gpa_to_hva(m, 0x11fff, 2, false));
	assert_null(zoc_mem_gpa_to_hva(m, 0x12000, 0, false)); /* len 0 counts as 1 */
	assert_null(zoc_mem_gpa_to_hva(m, 0x10000, 0x2001, false));
	assert_null(zoc_mem_gpa_to_hva(m, 0xffff, 1, false));
	assert_null(zoc_mem_gpa_to_hva(m, 0, 1, false));
	assert_null(zoc_mem_gpa_to_hva(m, 0x20000, 1, false)); /* gap */
	assert_null(zoc_mem_gpa_to_hva(m, 0x10000, UINT64_MAX, false));
	assert_null(zoc_mem_gpa_to_hva(m, 0x10010, UINT64_MAX - 8, false));
	assert_null(zoc_mem_gpa_to_hva(m, UINT64_MAX, UINT64_MAX, false));
	assert_null(zoc_mem_gpa_to_hva(m, UINT64_MAX, 1, false));
	/* read-only region */
	assert_ptr_equal(zoc_mem_gpa_to_hva(m, 0x40010, 16, false), b + 0x10);
	assert_null(zoc_mem_gpa_to_hva(m, 0x40010, 16, true));
	assert_null(zoc_mem_gpa_to_hva(m, 0x40fff, 2, false));
	assert_null(zoc_mem_gpa_to_hva(NULL, 0x40010, 16, false));

	/* client virtual addresses */
	assert_ptr_equal(zoc_mem_uva_to_hva(m, 0x7f0100, 0x100, true), a + 0x100);
	assert_null(zoc_mem_uva_to_hva(m, 0x7f1f00, 0x101, false));
	assert_null(zoc_mem_uva_to_hva(m, 0x7effff, 1, false));
	assert_ptr_equal(zoc_mem_uva_to_hva(m, 0x900000, 0, false), b);
	assert_null(zoc_mem_uva_to_hva(m, 0x900000, 1, true));
	assert_null(zoc_mem_uva_to_hva(m, 0x900000, UINT64_MAX, false));
	zoc_mem_put(m);
	free(a);
	free(b);
}

/* The queue owner's inline path: any hint is safe, a range over two regions
 * or past the end is refused (the caller falls back), the hint follows. */
static void test_translate_hint(void **state)
{
	struct zoc_mem *m = zoc_mem_create();
	uint8_t *a = malloc(0x2000), *b = malloc(0x1000), *c = malloc(0x1000);
	uint32_t hint = UINT32_MAX;

	(void)state;
	assert_int_equal(zoc_mem_add_region_hva(m, 0x10000, 0x2000, 0, a, true), 0);
	assert_int_equal(zoc_mem_add_region_hva(m, 0x12000, 0x1000, 0x10000, b, true), 0);
	assert_int_equal(zoc_mem_add_region_hva(m, 0x40000, 0x1000, 0x20000, c, false), 0);

	assert_ptr_equal(zoc_mem_translate(m, &hint, 0x12010, 16, true), b + 0x10);
	assert_int_equal(hint, 1);
	assert_ptr_equal(zoc_mem_translate(m, &hint, 0x10000, 0x2000, false), a);
	assert_int_equal(hint, 0);
	/* adjacent regions: one buffer over both is not one pointer */
	assert_null(zoc_mem_translate(m, &hint, 0x11ff8, 16, false));
	assert_null(zoc_mem_translate(m, &hint, 0x10000, 0x2001, false));
	assert_null(zoc_mem_translate(m, &hint, 0x10010, UINT64_MAX - 8, false));
	assert_null(zoc_mem_translate(m, &hint, UINT64_MAX, 1, false));
	assert_null(zoc_mem_translate(m, &hint, 0x20000, 1, false)); /* gap */
	assert_null(zoc_mem_translate(m, &hint, 0xffff, 1, false));
	/* read-only region */
	assert_ptr_equal(zoc_mem_translate(m, &hint, 0x40ff0, 16, false), c + 0xff0);
	assert_int_equal(hint, 2);
	assert_null(zoc_mem_translate(m, &hint, 0x40ff0, 16, true));
	assert_null(zoc_mem_translate(m, &hint, 0x40ff0, 17, false));
	/* stale hints: out of range or naming another region */
	for (uint32_t h = 0; h < 8; h++) {
		hint = h == 7 ? UINT32_MAX : h;
		assert_ptr_equal(zoc_mem_translate(m, &hint, 0x12fff, 1, true), b + 0xfff);
		assert_int_equal(hint, 1);
	}
	assert_int_equal(zoc_mem_find(m, 0x40000), 2);
	assert_int_equal(zoc_mem_find(m, 0x41000), -1);
	assert_int_equal(zoc_mem_find(NULL, 0x40000), -1);
	zoc_mem_put(m);
	free(a);
	free(b);
	free(c);
}

static void test_many_regions_sorted(void **state)
{
	struct zoc_mem *m = zoc_mem_create();
	static uint8_t buf[ZOC_MEM_MAX_REGIONS][256];
	unsigned order[ZOC_MEM_MAX_REGIONS];

	(void)state;
	for (unsigned i = 0; i < ZOC_MEM_MAX_REGIONS; i++)
		order[i] = i;
	srand(42);
	for (unsigned i = ZOC_MEM_MAX_REGIONS - 1; i > 0; i--) {
		unsigned j = (unsigned)rand() % (i + 1), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	/* Regions of 256 bytes every 4 KiB, added in random order. */
	for (unsigned k = 0; k < ZOC_MEM_MAX_REGIONS; k++) {
		unsigned i = order[k];

		assert_int_equal(zoc_mem_add_region_hva(m, 0x100000 + i * 0x1000ull, 256,
							0x5000000 + i * 0x1000ull, buf[i], true),
				 0);
	}
	for (unsigned i = 1; i < m->nregions; i++)
		assert_true(m->regions[i - 1].gpa < m->regions[i].gpa);
	for (unsigned i = 0; i < ZOC_MEM_MAX_REGIONS; i++) {
		uint64_t g = 0x100000 + i * 0x1000ull;

		assert_ptr_equal(zoc_mem_gpa_to_hva(m, g, 256, false), buf[i]);
		assert_ptr_equal(zoc_mem_gpa_to_hva(m, g + 255, 1, false), buf[i] + 255);
		assert_null(zoc_mem_gpa_to_hva(m, g + 256, 1, false));
		assert_null(zoc_mem_gpa_to_hva(m, g - 1, 1, false));
		assert_null(zoc_mem_gpa_to_hva(m, g + 200, 57, false));
		assert_ptr_equal(zoc_mem_uva_to_hva(m, 0x5000000 + i * 0x1000ull + 8, 8, true),
				 buf[i] + 8);
	}
	/* Alternate between regions (defeats the last-hit shortcut). */
	for (unsigned r = 0; r < 1000; r++) {
		unsigned i = (r * 37) % ZOC_MEM_MAX_REGIONS;

		assert_ptr_equal(zoc_mem_gpa_to_hva(m, 0x100000 + i * 0x1000ull + 3, 4, true),
				 buf[i] + 3);
	}
	zoc_mem_put(m);
}

static void test_iov(void **state)
{
	struct zoc_mem *m = zoc_mem_create();
	uint8_t *a = malloc(0x1000), *b = malloc(0x1000), *c = malloc(0x1000);
	struct iovec iov[4];

	(void)state;
	/* a and b adjacent in gpa, c after a gap; c read-only */
	assert_int_equal(zoc_mem_add_region_hva(m, 0x1000, 0x1000, 0, a, true), 0);
	assert_int_equal(zoc_mem_add_region_hva(m, 0x2000, 0x1000, 0, b, true), 0);
	assert_int_equal(zoc_mem_add_region_hva(m, 0x4000, 0x1000, 0, c, false), 0);

	assert_int_equal(zoc_mem_gpa_to_iov(m, 0x1100, 0x100, true, iov, 4), 1);
	assert_ptr_equal(iov[0].iov_base, a + 0x100);
	assert_int_equal(iov[0].iov_len, 0x100);

	/* spans a and b */
	assert_int_equal(zoc_mem_gpa_to_iov(m, 0x1f00, 0x200, true, iov, 4), 2);
	assert_ptr_equal(iov[0].iov_base, a + 0xf00);
	assert_int_equal(iov[0].iov_len, 0x100);
	assert_ptr_equal(iov[1].iov_base, b);
	assert_int_equal(iov[1].iov_len, 0x100);
	/* exactly both */
	assert_int_equal(zoc_mem_gpa_to_iov(m, 0x1000, 0x2000, false, iov, 4), 2);
	assert_int_equal(iov[0].iov_len + iov[1].iov_len, 0x2000);
	/* too few iovecs */
	assert_int_equal(zoc_mem_gpa_to_iov(m, 0x1f00, 0x200, true, iov, 1), -ENOBUFS);
	/* runs into the gap */
	assert_int_equal(zoc_mem_gpa_to_iov(m, 0x2f00, 0x200, false, iov, 4), -EFAULT);
	assert_int_equal(zoc_mem_gpa_to_iov(m, 0x3000, 0x10, false, iov, 4), -EFAULT);
	assert_int_equal(zoc_mem_gpa_to_iov(m, 0x0, 0x10, false, iov, 4), -EFAULT);
	/* read-only */
	assert_int_equal(zoc_mem_gpa_to_iov(m, 0x4000, 0x10, false, iov, 4), 1);
	assert_int_equal(zoc_mem_gpa_to_iov(m, 0x4000, 0x10, true, iov, 4), -EFAULT);
	/* overflowing ranges */
	assert_int_equal(zoc_mem_gpa_to_iov(m, 0x1000, UINT64_MAX, false, iov, 4), -EFAULT);
	assert_int_equal(zoc_mem_gpa_to_iov(m, UINT64_MAX - 4, 100, false, iov, 4), -EFAULT);
	/* nothing */
	assert_int_equal(zoc_mem_gpa_to_iov(m, 0x1000, 0, false, iov, 4), 0);
	assert_int_equal(zoc_mem_gpa_to_iov(NULL, 0x1000, 1, false, iov, 4), -EFAULT);
	zoc_mem_put(m);
	free(a);
	free(b);
	free(c);
}

static bool fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

static void test_mmap_fd(void **state)
{
	long page = sysconf(_SC_PAGESIZE);
	struct zoc_mem *m = zoc_mem_create();
	int fd = memfd_create("zoc-test-dma", 0);
	uint8_t *p, *q;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4 * page), 0);
	assert_int_equal(pwrite(fd, "hello", 5, 0), 5);
	assert_int_equal(pwrite(fd, "world", 5, page + 100), 5);

	/* Map the whole file at gpa 1 MiB. */
	int fd2 = dup(fd);
	assert_int_equal(zoc_mem_add_region(m, MB, 2 * page, 0x7000000, 0, fd2, true), 0);
	assert_false(fd_is_open(fd2)); /* ownership taken */
	p = zoc_mem_gpa_to_hva(m, MB, 5, false);
	assert_non_null(p);
	assert_memory_equal(p, "hello", 5);
	/* Writes reach the file (MAP_SHARED). */
	memcpy(p, "HELLO", 5);
	char rb[5];
	assert_int_equal(pread(fd, rb, 5, 0), 5);
	assert_memory_equal(rb, "HELLO", 5);
	assert_ptr_equal(zoc_mem_uva_to_hva(m, 0x7000000 + 1, 4, false), p + 1);

	/* An offset that is not page aligned. */
	fd2 = dup(fd);
	assert_int_equal(zoc_mem_add_region(m, 2 * MB, 200, 0, (uint64_t)page + 100, fd2, false),
			 0);
	assert_false(fd_is_open(fd2));
	q = zoc_mem_gpa_to_hva(m, 2 * MB, 5, false);
	assert_non_null(q);
	assert_memory_equal(q, "world", 5);
	assert_null(zoc_mem_gpa_to_hva(m, 2 * MB, 5, true)); /* read-only */
	assert_null(zoc_mem_gpa_to_hva(m, 2 * MB + 199, 2, false));

	/* Failures still close the fd. */
	fd2 = dup(fd);
	assert_int_equal(zoc_mem_add_region(m, MB, page, 0, 0, fd2, true), -EEXIST);
	assert_false(fd_is_open(fd2));
	fd2 = dup(fd);
	assert_int_equal(zoc_mem_add_region(m, 8 * MB, 0, 0, 0, fd2, true), -EINVAL);
	assert_false(fd_is_open(fd2));
	fd2 = dup(fd);
	assert_int_equal(zoc_mem_add_region(m, 8 * MB, 0x1000, 0, UINT64_MAX - 0x10, fd2, true),
			 -EOVERFLOW);
	assert_false(fd_is_open(fd2));
	assert_int_equal(zoc_mem_add_region(m, 8 * MB, 0x1000, 0, 0, -1, true), -EINVAL);
	/* Not an mmap-able fd. */
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	assert_true(zoc_mem_add_region(m, 8 * MB, 0x1000, 0, 0, pfd[0], true) < 0);
	assert_false(fd_is_open(pfd[0]));
	close(pfd[1]);

	assert_int_equal(m->nregions, 2);
	assert_int_equal(m->regions[0].fd, -1);
	zoc_mem_put(m); /* unmaps */
	close(fd);
}

/* A front end truncates the file behind a mapped region: the next access
 * must not kill the process (SIGBUS guard); the region reads as zeros. */
static void test_truncated_region_sigbus(void **state)
{
	long page = sysconf(_SC_PAGESIZE);
	struct zoc_mem *m = zoc_mem_create();
	int fd = memfd_create("zoc-test-trunc", 0);
	uint64_t before = zoc_mem_sigbus_count();
	volatile uint8_t *p;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 2 * page), 0);
	assert_int_equal(pwrite(fd, "x", 1, page), 1);
	assert_int_equal(zoc_mem_add_region(m, MB, 2 * page, 0, 0, dup(fd), true), 0);
	p = zoc_mem_gpa_to_hva(m, MB + page, 1, true);
	assert_non_null(p);
	assert_int_equal(p[0], 'x');
	/* The pages already touched stay cached in our mapping; drop them. */
	assert_int_equal(madvise((void *)((uintptr_t)p & ~(uintptr_t)(page - 1)), page,
				 MADV_DONTNEED), 0);
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(p[0], 0);      /* would be SIGBUS without the guard */
	p[0] = 7;                       /* and writes land in harmless memory */
	assert_int_equal(p[0], 7);
	assert_true(zoc_mem_sigbus_count() > before);
	zoc_mem_put(m);
	close(fd);
}


/* ---- remote regions (memory without an mmap; copies through a link) ---- */

static uint8_t g_far[65536]; /* the "client's" memory behind the fake link, at 0x100000 */
static int g_far_calls, g_far_defer;
static struct zoc_mem_io *g_far_held;

static void far_rw(void *ctx, struct zoc_mem_io *io)
{
	uint64_t off = io->gpa + io->done - 0x100000;

	(void)ctx;
	g_far_calls++;
	if (io->chunk > 1000)
		io->chunk = 1000; /* a link may cut a run */
	if (g_far_defer) {
		g_far_held = io;
		return;
	}
	if (io->to_guest)
		memcpy(g_far + off, (uint8_t *)io->buf + io->done, io->chunk);
	else
		memcpy((uint8_t *)io->buf + io->done, g_far + off, io->chunk);
	zoc_mem_io_remote_done(io, 0);
}

static const struct zoc_mem_remote_ops far_ops = {.rw = far_rw};

struct done {
	int n, status;
};

static void done_cb(struct zoc_mem_io *io, int status)
{
	struct done *d = io->arg;

	d->n++;
	d->status = status;
}

static void test_remote(void **state)
{
	static uint8_t near[8192], buf[12288];
	struct zoc_mem *m = zoc_mem_create();
	struct zoc_mem_remote *ep = zoc_mem_remote_create(&far_ops, (void *)1);
	struct done d = {0};
	struct zoc_mem_io io;

	(void)state;
	assert_non_null(m);
	assert_non_null(ep);
	/* mapped [0xfe000, 0x100000), remote [0x100000, +64K) right after it,
	 * a read-only remote one further up */
	assert_int_equal(zoc_mem_add_region_hva(m, 0xfe000, sizeof(near), 0xfe000, near, true), 0);
	assert_int_equal(zoc_mem_add_remote(m, 0x100000, sizeof(g_far), true), 0);
	assert_int_equal(zoc_mem_add_remote(m, 0x200000, 4096, false), 0);
	/* overlaps, zero size, wrap are refused, both ways */
	assert_int_equal(zoc_mem_add_remote(m, 0xff000, 8192, true), -EEXIST);
	assert_int_equal(zoc_mem_add_remote(m, 0x10f000, 8192, true), -EEXIST);
	assert_int_equal(zoc_mem_add_region_hva(m, 0x100000, 4096, 0x100000, buf, true), -EEXIST);
	assert_int_equal(zoc_mem_add_remote(m, 0x300000, 0, true), -EINVAL);
	assert_int_equal(zoc_mem_add_remote(m, UINT64_MAX - 4095, 8192, true), -EOVERFLOW);
	zoc_mem_set_remote(m, ep);
	/* translations never see remote memory */
	assert_null(zoc_mem_gpa_to_hva(m, 0x100000, 8, false));
	assert_null(zoc_mem_gpa_to_hva(m, 0xffff8, 16, false));
	assert_int_equal(zoc_mem_gpa_to_iov(m, 0x100000, 8, false, (struct iovec[2]){0}, 2), -EFAULT);
	/* is_remote: some byte remote and every byte reachable */
	assert_true(zoc_mem_is_remote(m, 0x100010, 8, true));
	assert_true(zoc_mem_is_remote(m, 0xff000, 8192, true));
	assert_false(zoc_mem_is_remote(m, 0xfe000, 8, true));          /* mapped only */
	assert_false(zoc_mem_is_remote(m, 0x10fff0, 32, false));       /* past the end */
	assert_false(zoc_mem_is_remote(m, 0x200000, 8, true));         /* read-only */
	assert_true(zoc_mem_is_remote(m, 0x200000, 8, false));
	assert_false(zoc_mem_is_remote(m, UINT64_MAX - 3, 8, false));
	assert_false(zoc_mem_is_remote(NULL, 0x100000, 8, false));
	/* a copy across the mapped and the remote region, cut by the link */
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 3);
	io = (struct zoc_mem_io){.gpa = 0xff000, .buf = buf, .len = sizeof(buf), .to_guest = true,
				 .cb = done_cb, .arg = &d};
	g_far_calls = 0;
	assert_int_equal(zoc_mem_io_submit(m, &io), 0);
	assert_int_equal(d.n, 1);
	assert_int_equal(d.status, 0);
	assert_int_equal(g_far_calls, 9); /* 8192 remote bytes in runs of <= 1000 */
	assert_memory_equal(near + 0x1000, buf, 4096);
	assert_memory_equal(g_far, buf + 4096, 8192);
	memset(buf, 0, sizeof(buf));
	io = (struct zoc_mem_io){.gpa = 0xff000, .buf = buf, .len = sizeof(buf), .cb = done_cb,
				 .arg = &d};
	assert_int_equal(zoc_mem_io_submit(m, &io), 0);
	assert_int_equal(d.n, 2);
	assert_memory_equal(buf, near + 0x1000, 4096);
	assert_memory_equal(buf + 4096, g_far, 8192);
	/* refused before anything is sent: unreachable, read-only, bad args */
	g_far_calls = 0;
	io.gpa = 0x10fff0;
	io.len = 32;
	assert_int_equal(zoc_mem_io_submit(m, &io), -EFAULT);
	io = (struct zoc_mem_io){.gpa = 0x200000, .buf = buf, .len = 8, .to_guest = true,
				 .cb = done_cb, .arg = &d};
	assert_int_equal(zoc_mem_io_submit(m, &io), -EFAULT);
	io.cb = NULL;
	assert_int_equal(zoc_mem_io_submit(m, &io), -EINVAL);
	assert_int_equal(g_far_calls, 0);
	assert_int_equal(d.n, 2);
	/* the link fails a step: the copy ends with that status */
	g_far_defer = 1;
	io = (struct zoc_mem_io){.gpa = 0x100000, .buf = buf, .len = 100, .cb = done_cb, .arg = &d};
	assert_int_equal(zoc_mem_io_submit(m, &io), 0);
	assert_int_equal(d.n, 2);
	assert_non_null(g_far_held);
	zoc_mem_io_remote_done(g_far_held, -ETIMEDOUT);
	assert_int_equal(d.n, 3);
	assert_int_equal(d.status, -ETIMEDOUT);
	g_far_defer = 0;
	/* the table keeps its own reference on the endpoint; detached, copies
	 * fail with -ENOTCONN; mapped-only copies still work */
	zoc_mem_remote_put(ep);
	zoc_mem_remote_detach(m->ep);
	io = (struct zoc_mem_io){.gpa = 0x100000, .buf = buf, .len = 8, .cb = done_cb, .arg = &d};
	assert_int_equal(zoc_mem_io_submit(m, &io), 0);
	assert_int_equal(d.n, 4);
	assert_int_equal(d.status, -ENOTCONN);
	io = (struct zoc_mem_io){.gpa = 0xfe000, .buf = buf, .len = 8, .cb = done_cb, .arg = &d};
	assert_int_equal(zoc_mem_io_submit(m, &io), 0);
	assert_int_equal(d.n, 5);
	assert_int_equal(d.status, 0);
	zoc_mem_put(m); /* drops the endpoint's last reference (ASan checks) */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_put),
		cmocka_unit_test(test_add_rejects),
		cmocka_unit_test(test_lookup_bounds),
		cmocka_unit_test(test_translate_hint),
		cmocka_unit_test(test_many_regions_sorted),
		cmocka_unit_test(test_iov),
		cmocka_unit_test(test_mmap_fd),
		cmocka_unit_test(test_truncated_region_sigbus),
		cmocka_unit_test(test_remote),
	};

	zoc_log_set_level(ZOC_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
