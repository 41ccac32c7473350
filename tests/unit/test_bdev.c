/* SPDX-License-Identifier: MIT */
/*
 * test_bdev.c - bdev registry, request checks, null and io_uring back ends,
 * driven through a real reactor (one core) running on its own thread, in
 * polling and in interrupt mode.
 *
 * Channels and submissions run on the reactor thread (through messages);
 * the registry calls run on the test thread, which is safe here because the
 * reactor thread never touches the registry in these tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blk/bdev.h"
#include "core/log.h"
#include "core/reactor.h"

#define FILE_SIZE (16u << 20)
#define BS 4096u

/* ---- reactor harness --------------------------------------------------- */

static pthread_t g_reactor_thread;
static atomic_int g_completed;
static atomic_int g_wrong_thread;

static void *reactor_main(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)zoc_reactors_run();
}

static int start_reactor(bool interrupt_mode)
{
	static const unsigned core0 = 0;
	/* Interrupt mode without adaptive polling: the reactor sleeps after
	 * its idle spins whatever the tuner would choose on a noisy VM, so
	 * completions must come in through the ring's eventfd. */
	struct zoc_reactor_opts o = {.cores = &core0, .num_cores = 1,
				     .interrupt_mode = interrupt_mode, .pin = false,
				     .poll_max_ns = 0, .poll_max_set = interrupt_mode};

	zoc_log_set_level(ZOC_LOG_WARN);
	if (zoc_reactors_init(&o))
		return -1;
	if (pthread_create(&g_reactor_thread, NULL, reactor_main, NULL)) {
		zoc_reactors_fini();
		return -1;
	}
	return 0;
}

static int setup_polling(void **state)
{
	return start_reactor(false);
}

static int setup_interrupt(void **state)
{
	return start_reactor(true);
}

static int teardown_reactor(void **state)
{
	uint64_t busy, idle, sleeps;
	bool slept_ok;

	zoc_bdev_delete_all();
	zoc_reactors_stop();
	pthread_join(g_reactor_thread, NULL);
	/* In interrupt mode the reactor must really have slept between
	 * requests, so completions came in through the ring's eventfd. */
	zoc_reactor_get_stats(zoc_reactor_get(0), &busy, &idle, &sleeps);
	slept_ok = zoc_reactor_interrupt_mode() ? sleeps > 0 : sleeps == 0;
	zoc_reactors_fini();
	if (!slept_ok)
		print_error("reactor slept %llu times\n", (unsigned long long)sleeps);
	return zoc_bdev_next(NULL) == NULL && slept_ok ? 0 : -1;
}

struct sync_call {
	void (*fn)(void *);
	void *arg;
	sem_t done;
};

static void sync_trampoline(void *arg)
{
	struct sync_call *c = arg;

	c->fn(c->arg);
	sem_post(&c->done);
}

/* Runs fn(arg) on the reactor thread and waits for it. */
static void on_reactor(void (*fn)(void *), void *arg)
{
	struct sync_call c = {.fn = fn, .arg = arg};
	struct timespec ts;

	sem_init(&c.done, 0, 0);
	assert_int_equal(zoc_reactor_send_msg(zoc_reactor_get(0), sync_trampoline, &c), 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	assert_int_equal(sem_timedwait(&c.done, &ts), 0);
	sem_destroy(&c.done);
}

/* Waits until g_completed reaches target (10 s at most). */
static void wait_completed(int target)
{
	for (int i = 0; i < 100000 && atomic_load(&g_completed) < target; i++)
		usleep(100);
	assert_int_equal(atomic_load(&g_completed), target);
}

struct ch_call {
	struct zoc_bdev *bdev;
	struct zoc_bdev_ch *ch;
};

static void get_ch_fn(void *arg)
{
	struct ch_call *c = arg;

	c->ch = zoc_bdev_get_channel(c->bdev, zoc_reactor_current());
}

static void put_ch_fn(void *arg)
{
	zoc_bdev_put_channel(arg);
}

static struct zoc_bdev_ch *get_ch(const char *name)
{
	struct ch_call c = {.bdev = zoc_bdev_find(name)};

	assert_non_null(c.bdev);
	on_reactor(get_ch_fn, &c);
	assert_non_null(c.ch);
	return c.ch;
}

static void put_ch(struct zoc_bdev_ch *ch)
{
	on_reactor(put_ch_fn, ch);
}

/* ---- requests ---------------------------------------------------------- */

struct treq {
	struct zoc_bdev_io io;
	struct iovec iov[4];
	int submit_rc;
	int status;
	int ncb;
};

static void treq_cb(struct zoc_bdev_io *io, int status)
{
	struct treq *t = io->cb_arg;

	t->status = status;
	t->ncb++;
	if (!pthread_equal(pthread_self(), g_reactor_thread))
		atomic_fetch_add(&g_wrong_thread, 1);
	atomic_fetch_add(&g_completed, 1);
}

static void treq_init(struct treq *t, enum zoc_bdev_op op, uint64_t off, uint64_t len)
{
	memset(t, 0, sizeof(*t));
	t->io.op = op;
	t->io.offset = off;
	t->io.len = len;
	t->io.cb = treq_cb;
	t->io.cb_arg = t;
	t->status = 1;
}

/* One buffer, one iovec. */
static void treq_buf(struct treq *t, void *buf)
{
	t->iov[0].iov_base = buf;
	t->iov[0].iov_len = t->io.len;
	t->io.iov = t->iov;
	t->io.iovcnt = 1;
}

struct batch {
	struct zoc_bdev_ch *ch;
	struct treq *reqs;
	int n;
	int ok;         /* submits that returned 0 */
	int cb_inline;  /* callbacks that ran inside zoc_bdev_submit */
	bool put_after; /* put the channel right after submitting */
};

static void batch_fn(void *arg)
{
	struct batch *b = arg;
	int before = atomic_load(&g_completed);

	for (int i = 0; i < b->n; i++) {
		b->reqs[i].submit_rc = zoc_bdev_submit(b->ch, &b->reqs[i].io);
		if (b->reqs[i].submit_rc == 0)
			b->ok++;
	}
	b->cb_inline = atomic_load(&g_completed) - before;
	if (b->put_after)
		zoc_bdev_put_channel(b->ch);
}

/* Submits n requests on the reactor, waits for every accepted one, and
 * checks that none completed inside submit. Returns how many were accepted. */
static int run_batch(struct zoc_bdev_ch *ch, struct treq *reqs, int n)
{
	struct batch b = {.ch = ch, .reqs = reqs, .n = n};
	int base = atomic_load(&g_completed);

	on_reactor(batch_fn, &b);
	assert_int_equal(b.cb_inline, 0);
	wait_completed(base + b.ok);
	assert_int_equal(atomic_load(&g_wrong_thread), 0);
	return b.ok;
}

/* A single request; returns its status (or the submit error). */
static int run_one(struct zoc_bdev_ch *ch, struct treq *t)
{
	if (run_batch(ch, t, 1) == 0)
		return t->submit_rc;
	assert_int_equal(t->ncb, 1);
	return t->status;
}

static void *abuf(size_t len, int fill)
{
	void *p = NULL;

	assert_int_equal(posix_memalign(&p, 4096, len), 0);
	memset(p, fill, len);
	return p;
}

static void pattern(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed * 131u + i * 7u + (i >> 9));
}

static bool all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* ---- registry ---------------------------------------------------------- */

static void test_registry(void **state)
{
	struct zoc_bdev *b;
	struct zoc_bdev_ch *ch;
	char longname[ZOC_BDEV_NAME_MAX + 8];
	json_t *o;

	assert_int_equal(zoc_bdev_null_create("n0", 16, 512), 0);
	assert_int_equal(zoc_bdev_null_create("n1", 1, 4096), 0);
	assert_int_equal(zoc_bdev_null_create("n0", 8, 512), -EEXIST);
	assert_int_equal(zoc_bdev_null_create("bad", 1, 1000), -EINVAL);
	assert_int_equal(zoc_bdev_null_create("bad", 1, 256), -EINVAL);
	assert_int_equal(zoc_bdev_null_create("bad", 1, 8192), -EINVAL);
	assert_int_equal(zoc_bdev_null_create("bad", 0, 512), -EINVAL);
	assert_int_equal(zoc_bdev_null_create("bad", UINT64_MAX, 512), -EINVAL);
	assert_int_equal(zoc_bdev_null_create("", 1, 512), -EINVAL);
	assert_int_equal(zoc_bdev_null_create(NULL, 1, 512), -EINVAL);
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(zoc_bdev_null_create(longname, 1, 512), -EINVAL);
	longname[ZOC_BDEV_NAME_MAX - 1] = '\0'; /* exactly the longest allowed */
	assert_int_equal(zoc_bdev_null_create(longname, 1, 512), 0);
	assert_int_equal(zoc_bdev_delete(longname), 0);

	b = zoc_bdev_find("n0");
	assert_non_null(b);
	assert_int_equal(b->block_size, 512);
	assert_int_equal(b->num_blocks, 16 * 2048);
	assert_int_equal(zoc_bdev_size(b), 16ull << 20);
	assert_string_equal(b->ops->type, "null");
	assert_null(zoc_bdev_find("nope"));
	assert_null(zoc_bdev_find(NULL));

	/* iteration in creation order */
	assert_ptr_equal(zoc_bdev_next(NULL), b);
	assert_string_equal(zoc_bdev_next(b)->name, "n1");
	assert_null(zoc_bdev_next(zoc_bdev_next(b)));

	o = json_object();
	b->ops->dump_params(b, o);
	assert_string_equal(json_string_value(json_object_get(o, "name")), "n0");
	assert_int_equal(json_integer_value(json_object_get(o, "size_mb")), 16);
	assert_int_equal(json_integer_value(json_object_get(o, "block_size")), 512);
	json_decref(o);

	/* claimed: delete refused until released */
	assert_int_equal(zoc_bdev_claim(b), 0);
	assert_int_equal(zoc_bdev_claim(b), 0);
	assert_int_equal(zoc_bdev_delete("n0"), -EBUSY);
	zoc_bdev_release(b);
	assert_int_equal(zoc_bdev_delete("n0"), -EBUSY);
	zoc_bdev_release(b);
	zoc_bdev_release(b); /* one too many: logged, ignored */
	assert_int_equal(b->claims, 0);

	/* an open channel also keeps it */
	ch = get_ch("n0");
	assert_ptr_equal(get_ch("n0"), ch); /* shared, refcounted */
	assert_int_equal(ch->refs, 2);
	put_ch(ch);
	assert_int_equal(zoc_bdev_delete("n0"), -EBUSY);
	put_ch(ch);

	assert_int_equal(zoc_bdev_delete("n0"), 0);
	assert_int_equal(zoc_bdev_delete("n0"), -ENOENT);
	assert_int_equal(zoc_bdev_delete("unknown"), -ENOENT);
	assert_int_equal(zoc_bdev_delete("n1"), 0);
	assert_null(zoc_bdev_next(NULL));
}

/* ---- request checks ---------------------------------------------------- */

static void test_validation(void **state)
{
	struct zoc_bdev_ch *ch;
	struct zoc_bdev *b;
	struct treq t;
	struct iovec big[2];
	uint64_t size;
	void *buf = abuf(8192, 0);
	static struct iovec many[1025];

	assert_int_equal(zoc_bdev_null_create("v", 1, 512), 0);
	b = zoc_bdev_find("v");
	size = zoc_bdev_size(b);
	ch = get_ch("v");

	/* baseline: accepted */
	treq_init(&t, ZOC_BDEV_READ, 512, 1024);
	treq_buf(&t, buf);
	assert_int_equal(run_one(ch, &t), 0);

	treq_init(&t, ZOC_BDEV_READ, 100, 512); /* misaligned offset */
	treq_buf(&t, buf);
	assert_int_equal(run_one(ch, &t), -EINVAL);
	treq_init(&t, ZOC_BDEV_WRITE, 512, 700); /* misaligned length */
	treq_buf(&t, buf);
	assert_int_equal(run_one(ch, &t), -EINVAL);
	treq_init(&t, ZOC_BDEV_READ, 0, 0); /* empty */
	treq_buf(&t, buf);
	assert_int_equal(run_one(ch, &t), -EINVAL);
	treq_init(&t, ZOC_BDEV_READ, size - 512, 1024); /* crosses the end */
	treq_buf(&t, buf);
	assert_int_equal(run_one(ch, &t), -ERANGE);
	treq_init(&t, ZOC_BDEV_READ, size, 512); /* starts at the end */
	treq_buf(&t, buf);
	assert_int_equal(run_one(ch, &t), -ERANGE);
	treq_init(&t, ZOC_BDEV_READ, size - 512, 512); /* last block: fine */
	treq_buf(&t, buf);
	assert_int_equal(run_one(ch, &t), 0);
	treq_init(&t, ZOC_BDEV_WRITE, UINT64_MAX & ~511ull, 1024); /* wraps */
	treq_buf(&t, buf);
	assert_int_equal(run_one(ch, &t), -ERANGE);
	treq_init(&t, ZOC_BDEV_DISCARD, UINT64_MAX & ~511ull, UINT64_MAX & ~511ull);
	assert_int_equal(run_one(ch, &t), -ERANGE);

	/* iovecs */
	treq_init(&t, ZOC_BDEV_READ, 0, 1024);
	treq_buf(&t, buf);
	t.iov[0].iov_len = 512; /* total != len */
	assert_int_equal(run_one(ch, &t), -EINVAL);
	treq_init(&t, ZOC_BDEV_READ, 0, 1024);
	t.io.iov = NULL;
	t.io.iovcnt = 1;
	assert_int_equal(run_one(ch, &t), -EINVAL);
	treq_init(&t, ZOC_BDEV_READ, 0, 1024);
	treq_buf(&t, buf);
	t.io.iovcnt = 0;
	assert_int_equal(run_one(ch, &t), -EINVAL);
	t.io.iovcnt = -3;
	assert_int_equal(run_one(ch, &t), -EINVAL);
	for (int i = 0; i < 1025; i++) {
		many[i].iov_base = buf;
		many[i].iov_len = 512;
	}
	treq_init(&t, ZOC_BDEV_READ, 0, 1025 * 512ull);
	t.io.iov = many;
	t.io.iovcnt = 1025; /* above max_iov */
	assert_int_equal(run_one(ch, &t), -EINVAL);
	treq_init(&t, ZOC_BDEV_READ, 0, 1024 * 512ull);
	t.io.iov = many;
	t.io.iovcnt = 1024; /* exactly max_iov */
	assert_int_equal(run_one(ch, &t), 0);
	big[0].iov_base = buf;
	big[0].iov_len = SIZE_MAX;
	big[1].iov_base = buf;
	big[1].iov_len = 1025; /* sum wraps to 1024 */
	treq_init(&t, ZOC_BDEV_WRITE, 0, 1024);
	t.io.iov = big;
	t.io.iovcnt = 2;
	assert_int_equal(run_one(ch, &t), -EINVAL);

	/* op codes, callback */
	treq_init(&t, (enum zoc_bdev_op)99, 0, 512);
	treq_buf(&t, buf);
	assert_int_equal(run_one(ch, &t), -EINVAL);
	treq_init(&t, ZOC_BDEV_READ, 0, 512);
	treq_buf(&t, buf);
	t.io.cb = NULL;
	assert_int_equal(run_one(ch, &t), -EINVAL);

	/* flush ignores offset/len; discard / write_zeroes are checked */
	treq_init(&t, ZOC_BDEV_FLUSH, 12345, 0);
	assert_int_equal(run_one(ch, &t), 0);
	treq_init(&t, ZOC_BDEV_DISCARD, 0, 4096);
	assert_int_equal(run_one(ch, &t), 0);
	treq_init(&t, ZOC_BDEV_WRITE_ZEROES, 512, 100);
	assert_int_equal(run_one(ch, &t), -EINVAL);

	/* unsupported operations */
	b->supports_flush = false;
	b->supports_discard = false;
	b->supports_write_zeroes = false;
	treq_init(&t, ZOC_BDEV_FLUSH, 0, 0);
	assert_int_equal(run_one(ch, &t), -ENOTSUP);
	treq_init(&t, ZOC_BDEV_DISCARD, 0, 512);
	assert_int_equal(run_one(ch, &t), -ENOTSUP);
	treq_init(&t, ZOC_BDEV_WRITE_ZEROES, 0, 512);
	assert_int_equal(run_one(ch, &t), -ENOTSUP);

	/* read-only */
	b->supports_discard = true;
	b->read_only = true;
	treq_init(&t, ZOC_BDEV_WRITE, 0, 512);
	treq_buf(&t, buf);
	assert_int_equal(run_one(ch, &t), -EROFS);
	treq_init(&t, ZOC_BDEV_DISCARD, 0, 512);
	assert_int_equal(run_one(ch, &t), -EROFS);
	treq_init(&t, ZOC_BDEV_READ, 0, 512);
	treq_buf(&t, buf);
	assert_int_equal(run_one(ch, &t), 0);

	put_ch(ch);
	assert_int_equal(zoc_bdev_delete("v"), 0);
	free(buf);
}

/* ---- null -------------------------------------------------------------- */

static void test_null_deferred(void **state)
{
	enum { N = 64 };
	struct treq *reqs = calloc(N, sizeof(*reqs));
	struct zoc_bdev_ch *ch;
	uint8_t *buf = abuf(N * 4096, 0xab);
	struct batch b;
	int base;

	assert_int_equal(zoc_bdev_null_create("null0", 64, 4096), 0);
	ch = get_ch("null0");
	for (int i = 0; i < N; i++) {
		enum zoc_bdev_op op = (enum zoc_bdev_op)(i % 5);

		treq_init(&reqs[i], op, (uint64_t)i * 4096, op == ZOC_BDEV_FLUSH ? 0 : 4096);
		if (op == ZOC_BDEV_READ || op == ZOC_BDEV_WRITE)
			treq_buf(&reqs[i], buf + i * 4096);
	}
	assert_int_equal(run_batch(ch, reqs, N), N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(reqs[i].submit_rc, 0);
		assert_int_equal(reqs[i].ncb, 1);
		assert_int_equal(reqs[i].status, 0);
	}
	/* no data movement: the read buffers are untouched */
	for (size_t i = 0; i < N * 4096; i++)
		assert_int_equal(buf[i], 0xab);

	/* put the channel with requests still queued: they complete anyway */
	for (int i = 0; i < N; i++)
		treq_init(&reqs[i], ZOC_BDEV_FLUSH, 0, 0);
	b = (struct batch){.ch = ch, .reqs = reqs, .n = N, .put_after = true};
	base = atomic_load(&g_completed);
	on_reactor(batch_fn, &b);
	assert_int_equal(b.ok, N);
	assert_int_equal(b.cb_inline, 0);
	wait_completed(base + N);
	assert_int_equal(zoc_bdev_delete("null0"), 0);
	free(reqs);
	free(buf);
}

/* ---- io_uring ---------------------------------------------------------- */

static char *make_file(size_t size)
{
	char *path = strdup("/var/tmp/zoc_test_bdev.XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
	return path;
}

/* A file with every block written and on disk, so O_DIRECT reads go to the
 * device and complete asynchronously (a hole reads as zeros at once). */
static char *make_written_file(size_t size)
{
	char *path = make_file(size);
	int fd = open(path, O_WRONLY);
	static uint8_t blk[1u << 20];

	assert_true(fd >= 0);
	memset(blk, 0x5a, sizeof(blk));
	for (size_t off = 0; off < size; off += sizeof(blk))
		assert_int_equal(pwrite(fd, blk, sizeof(blk), (off_t)off), (ssize_t)sizeof(blk));
	assert_int_equal(fsync(fd), 0);
	close(fd);
	return path;
}

static int count_uring_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		char p[300], target[64];
		ssize_t len;

		snprintf(p, sizeof(p), "/proc/self/fd/%s", e->d_name);
		len = readlink(p, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = '\0';
		if (strstr(target, "io_uring"))
			n++;
	}
	closedir(d);
	return n;
}

static void test_uring_create(void **state)
{
	char *path = make_file(FILE_SIZE);
	char *small = make_file(100);
	struct zoc_bdev *b;
	json_t *o;

	assert_int_equal(zoc_bdev_uring_create("u", "/var/tmp/does/not/exist", 0, false),
			 -ENOENT);
	assert_int_equal(zoc_bdev_uring_create("u", "/var/tmp", 0, false), -EISDIR);
	assert_int_equal(zoc_bdev_uring_create("u", "/dev/null", 0, true), -EINVAL);
	assert_int_equal(zoc_bdev_uring_create("u", small, 0, false), -EINVAL);
	assert_int_equal(zoc_bdev_uring_create("u", "", 0, false), -EINVAL);
	assert_int_equal(zoc_bdev_uring_create("u", NULL, 0, false), -EINVAL);
	assert_int_equal(zoc_bdev_uring_create("u", path, 1000, false), -EINVAL);
	assert_int_equal(zoc_bdev_uring_create("u", path, 8192, false), -EINVAL);

	assert_int_equal(zoc_bdev_uring_create("u", path, 0, false), 0);
	assert_int_equal(zoc_bdev_uring_create("u", path, 0, false), -EEXIST);
	b = zoc_bdev_find("u");
	assert_non_null(b);
	assert_string_equal(b->ops->type, "uring");
	assert_true(b->block_size >= 512);
	assert_int_equal(zoc_bdev_size(b), FILE_SIZE);
	assert_true(b->supports_flush);
	assert_true(b->supports_discard);
	assert_true(b->supports_write_zeroes);
	assert_false(b->read_only);
	assert_int_equal(b->max_iov, 1024);
	o = json_object();
	b->ops->dump_params(b, o);
	assert_string_equal(json_string_value(json_object_get(o, "name")), "u");
	assert_string_equal(json_string_value(json_object_get(o, "filename")), path);
	assert_int_equal(json_integer_value(json_object_get(o, "block_size")), b->block_size);
	assert_null(json_object_get(o, "buffered"));
	json_decref(o);

	assert_int_equal(zoc_bdev_uring_create("ub", path, 4096, true), 0);
	b = zoc_bdev_find("ub");
	assert_int_equal(b->block_size, 4096);
	assert_int_equal(b->num_blocks, FILE_SIZE / 4096);
	o = json_object();
	b->ops->dump_params(b, o);
	assert_true(json_is_true(json_object_get(o, "buffered")));
	json_decref(o);

	assert_int_equal(zoc_bdev_delete("u"), 0);
	assert_int_equal(zoc_bdev_delete("ub"), 0);
	unlink(path);
	unlink(small);
	free(path);
	free(small);
}

static void uring_rw_on(const char *name, const char *path)
{
	struct zoc_bdev_ch *ch = get_ch(name);
	uint8_t *w = abuf(64 << 10, 0), *r = abuf(64 << 10, 0x5a), *ref = abuf(64 << 10, 0);
	struct treq t;
	int fd;

	/* write 16 KiB at 8 KiB from three iovecs */
	pattern(w, 16384, 1);
	treq_init(&t, ZOC_BDEV_WRITE, 8192, 16384);
	t.iov[0] = (struct iovec){w, 4096};
	t.iov[1] = (struct iovec){w + 4096, 8192};
	t.iov[2] = (struct iovec){w + 12288, 4096};
	t.io.iov = t.iov;
	t.io.iovcnt = 3;
	assert_int_equal(run_one(ch, &t), 0);

	/* read it back split differently */
	treq_init(&t, ZOC_BDEV_READ, 8192, 16384);
	t.iov[0] = (struct iovec){r, 12288};
	t.iov[1] = (struct iovec){r + 12288, 4096};
	t.io.iov = t.iov;
	t.io.iovcnt = 2;
	assert_int_equal(run_one(ch, &t), 0);
	assert_memory_equal(r, w, 16384);

	/* and it is really in the file */
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, ref, 16384, 8192), 16384);
	assert_memory_equal(ref, w, 16384);

	treq_init(&t, ZOC_BDEV_FLUSH, 0, 0);
	assert_int_equal(run_one(ch, &t), 0);

	/* discard then read zeroes */
	pattern(w, 65536, 2);
	treq_init(&t, ZOC_BDEV_WRITE, 1 << 20, 65536);
	treq_buf(&t, w);
	assert_int_equal(run_one(ch, &t), 0);
	treq_init(&t, ZOC_BDEV_DISCARD, 1 << 20, 65536);
	assert_int_equal(run_one(ch, &t), 0);
	treq_init(&t, ZOC_BDEV_READ, 1 << 20, 65536);
	treq_buf(&t, r);
	assert_int_equal(run_one(ch, &t), 0);
	assert_true(all_zero(r, 65536));

	/* write zeroes over the middle of a pattern */
	pattern(w, 65536, 3);
	treq_init(&t, ZOC_BDEV_WRITE, 2 << 20, 65536);
	treq_buf(&t, w);
	assert_int_equal(run_one(ch, &t), 0);
	treq_init(&t, ZOC_BDEV_WRITE_ZEROES, (2 << 20) + 16384, 32768);
	assert_int_equal(run_one(ch, &t), 0);
	memset(r, 0x5a, 65536);
	treq_init(&t, ZOC_BDEV_READ, 2 << 20, 65536);
	treq_buf(&t, r);
	assert_int_equal(run_one(ch, &t), 0);
	assert_memory_equal(r, w, 16384);
	assert_true(all_zero(r + 16384, 32768));
	assert_memory_equal(r + 49152, w + 49152, 16384);
	assert_int_equal(pread(fd, ref, 65536, 2 << 20), 65536);
	assert_memory_equal(ref, r, 65536);
	close(fd);

	put_ch(ch);
	free(w);
	free(r);
	free(ref);
}

static void test_uring_rw(void **state)
{
	char *path = make_file(FILE_SIZE);

	assert_int_equal(zoc_bdev_uring_create("u0", path, BS, false), 0);
	uring_rw_on("u0", path);
	assert_int_equal(zoc_bdev_delete("u0"), 0);
	/* buffered mode goes through the same paths */
	assert_int_equal(zoc_bdev_uring_create("u0b", path, 512, true), 0);
	uring_rw_on("u0b", path);
	assert_int_equal(zoc_bdev_delete("u0b"), 0);
	unlink(path);
	free(path);
}

/* n 4 KiB writes at distinct offsets in one go, then n reads, compared. */
static void uring_qd(int n)
{
	char *path = make_file(FILE_SIZE);
	struct treq *reqs = calloc((size_t)n, sizeof(*reqs));
	uint8_t *w = abuf((size_t)n * BS, 0), *r = abuf((size_t)n * BS, 0);
	struct zoc_bdev_ch *ch;

	assert_true((uint64_t)n * BS <= FILE_SIZE);
	assert_int_equal(zoc_bdev_uring_create("qd", path, BS, false), 0);
	ch = get_ch("qd");
	for (int i = 0; i < n; i++) {
		/* scatter: block i goes to slot (i * 7919) mod n */
		uint64_t blk = ((uint64_t)i * 7919u) % (uint64_t)n;

		pattern(w + (size_t)i * BS, BS, (unsigned)i + 10);
		treq_init(&reqs[i], ZOC_BDEV_WRITE, blk * BS, BS);
		treq_buf(&reqs[i], w + (size_t)i * BS);
	}
	assert_int_equal(run_batch(ch, reqs, n), n);
	for (int i = 0; i < n; i++) {
		assert_int_equal(reqs[i].ncb, 1);
		assert_int_equal(reqs[i].status, 0);
	}
	for (int i = 0; i < n; i++) {
		uint64_t blk = ((uint64_t)i * 7919u) % (uint64_t)n;

		treq_init(&reqs[i], ZOC_BDEV_READ, blk * BS, BS);
		treq_buf(&reqs[i], r + (size_t)i * BS);
	}
	assert_int_equal(run_batch(ch, reqs, n), n);
	for (int i = 0; i < n; i++) {
		assert_int_equal(reqs[i].ncb, 1);
		assert_int_equal(reqs[i].status, 0);
	}
	assert_memory_equal(r, w, (size_t)n * BS);
	put_ch(ch);
	assert_int_equal(zoc_bdev_delete("qd"), 0);
	unlink(path);
	free(path);
	free(reqs);
	free(w);
	free(r);
}

static void test_uring_qd256(void **state)
{
	uring_qd(256);
}

/* Chains of requests, each submitted from the callback of the one before:
 * the reactor goes idle between a submission and its completion, so in
 * interrupt mode it arms and sleeps, and every completion must wake it
 * (a lost wake-up leaves the chain stuck). */
struct chain {
	struct zoc_bdev_ch *ch;
	struct treq t;
	uint64_t blk;
	int left;
	int errors;
};

static void chain_submit(struct chain *c);

static void chain_cb(struct zoc_bdev_io *io, int status)
{
	struct chain *c = io->cb_arg;

	if (status)
		c->errors++;
	if (--c->left > 0)
		chain_submit(c);
	else
		atomic_fetch_add(&g_completed, 1);
}

static void chain_submit(struct chain *c)
{
	void *buf = c->t.iov[0].iov_base;

	/* stride through the file so no request hits a cached neighbour */
	c->blk = (c->blk + 1021) % (FILE_SIZE / BS);
	treq_init(&c->t, ZOC_BDEV_READ, c->blk * BS, BS);
	treq_buf(&c->t, buf);
	c->t.io.cb = chain_cb;
	c->t.io.cb_arg = c;
	if (zoc_bdev_submit(c->ch, &c->t.io))
		c->errors++;
}

struct chains {
	struct chain *c;
	int n;
};

static void chains_start(void *arg)
{
	struct chains *cs = arg;

	for (int i = 0; i < cs->n; i++)
		chain_submit(&cs->c[i]);
}

static void test_uring_chain(void **state)
{
	enum { CHAINS = 4, LEN = 500 };
	char *path = make_written_file(FILE_SIZE);
	uint8_t *buf = abuf(CHAINS * BS, 0);
	struct chain c[CHAINS];
	struct chains cs = {.c = c, .n = 1};
	uint64_t busy, idle, s0, s1;
	int base;

	assert_int_equal(zoc_bdev_uring_create("ch", path, BS, false), 0);
	for (int i = 0; i < CHAINS; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		c[i].ch = get_ch("ch");
		c[i].t.iov[0].iov_base = buf + (size_t)i * BS;
		c[i].blk = (uint64_t)i * 97;
		c[i].left = LEN;
	}
	/* queue depth 1, then CHAINS at once */
	zoc_reactor_get_stats(zoc_reactor_get(0), &busy, &idle, &s0);
	base = atomic_load(&g_completed);
	on_reactor(chains_start, &cs);
	wait_completed(base + 1);
	zoc_reactor_get_stats(zoc_reactor_get(0), &busy, &idle, &s1);
	/* At depth one a request costs one sleep at most: the eventfd must not
	 * fire again for a completion the poller has already reaped (that was
	 * an extra epoll_wait per request, returning at once). */
	assert_true(s1 - s0 <= LEN + LEN / 2);
	cs.n = CHAINS;
	for (int i = 0; i < CHAINS; i++)
		c[i].left = LEN;
	base = atomic_load(&g_completed);
	on_reactor(chains_start, &cs);
	wait_completed(base + CHAINS);
	zoc_reactor_get_stats(zoc_reactor_get(0), &busy, &idle, &s1);
	for (int i = 0; i < CHAINS; i++) {
		assert_int_equal(c[i].errors, 0);
		put_ch(c[i].ch);
	}
	if (zoc_reactor_interrupt_mode())
		assert_true(s1 > s0); /* it did sleep for completions */
	assert_int_equal(zoc_bdev_delete("ch"), 0);
	unlink(path);
	free(path);
	free(buf);
}

/* More than the ring's 1024 SQEs at once: nothing may be dropped. */
static void test_uring_sq_full(void **state)
{
	uring_qd(3000);
}

static void test_uring_shared_ring(void **state)
{
	char *pa = make_file(FILE_SIZE), *pb = make_file(FILE_SIZE);
	struct zoc_bdev_ch *ca, *cb;
	uint8_t *wa = abuf(BS, 0), *wb = abuf(BS, 0), *r = abuf(2 * BS, 0);
	struct treq reqs[4];
	int before = count_uring_fds();

	assert_int_equal(zoc_bdev_uring_create("sa", pa, BS, false), 0);
	assert_int_equal(zoc_bdev_uring_create("sb", pb, BS, false), 0);
	ca = get_ch("sa");
	assert_int_equal(count_uring_fds(), before + 1);
	cb = get_ch("sb");
	assert_ptr_not_equal(ca, cb);
	assert_int_equal(count_uring_fds(), before + 1); /* one ring for both */

	pattern(wa, BS, 100);
	pattern(wb, BS, 200);
	treq_init(&reqs[0], ZOC_BDEV_WRITE, 0, BS);
	treq_buf(&reqs[0], wa);
	treq_init(&reqs[1], ZOC_BDEV_WRITE, 0, BS);
	treq_buf(&reqs[1], wb);
	assert_int_equal(run_one(ca, &reqs[0]), 0);
	assert_int_equal(run_one(cb, &reqs[1]), 0);
	treq_init(&reqs[2], ZOC_BDEV_READ, 0, BS);
	treq_buf(&reqs[2], r);
	treq_init(&reqs[3], ZOC_BDEV_READ, 0, BS);
	treq_buf(&reqs[3], r + BS);
	assert_int_equal(run_one(ca, &reqs[2]), 0);
	assert_int_equal(run_one(cb, &reqs[3]), 0);
	assert_memory_equal(r, wa, BS);
	assert_memory_equal(r + BS, wb, BS);

	put_ch(ca);
	assert_int_equal(count_uring_fds(), before + 1); /* sb still uses it */
	put_ch(cb);
	assert_int_equal(count_uring_fds(), before); /* last channel gone */

	assert_int_equal(zoc_bdev_delete("sa"), 0);
	assert_int_equal(zoc_bdev_delete("sb"), 0);
	unlink(pa);
	unlink(pb);
	free(pa);
	free(pb);
	free(wa);
	free(wb);
	free(r);
}

/* The file shrinks under the bdev: reads past its end fail with -EIO, one
 * that straddles it after a short read; the channel survives. */
static void test_uring_short_read(void **state)
{
	char *path = make_file(FILE_SIZE);
	uint8_t *buf = abuf(4 * BS, 0);
	struct zoc_bdev_ch *ch;
	struct treq t;

	assert_int_equal(zoc_bdev_uring_create("sr", path, BS, false), 0);
	ch = get_ch("sr");
	assert_int_equal(truncate(path, 2 * BS), 0);
	treq_init(&t, ZOC_BDEV_READ, 1 << 20, BS);
	treq_buf(&t, buf);
	assert_int_equal(run_one(ch, &t), -EIO);
	treq_init(&t, ZOC_BDEV_READ, BS, 4 * BS);
	treq_buf(&t, buf);
	assert_int_equal(run_one(ch, &t), -EIO);
	treq_init(&t, ZOC_BDEV_READ, 0, 2 * BS);
	t.iov[0] = (struct iovec){buf, BS};
	t.iov[1] = (struct iovec){buf + BS, BS};
	t.io.iov = t.iov;
	t.io.iovcnt = 2;
	assert_int_equal(run_one(ch, &t), 0);
	put_ch(ch);
	assert_int_equal(zoc_bdev_delete("sr"), 0);
	unlink(path);
	free(path);
	free(buf);
}

/* Putting a uring channel with I/O in flight: it all still completes. */
static void test_uring_put_inflight(void **state)
{
	enum { N = 128 };
	char *path = make_file(FILE_SIZE);
	struct treq *reqs = calloc(N, sizeof(*reqs));
	uint8_t *buf = abuf(N * BS, 0);
	struct batch b;
	int base, before = count_uring_fds();

	assert_int_equal(zoc_bdev_uring_create("pi", path, BS, false), 0);
	b = (struct batch){.ch = get_ch("pi"), .reqs = reqs, .n = N, .put_after = true};
	for (int i = 0; i < N; i++) {
		treq_init(&reqs[i], ZOC_BDEV_READ, (uint64_t)i * BS, BS);
		treq_buf(&reqs[i], buf + (size_t)i * BS);
	}
	base = atomic_load(&g_completed);
	on_reactor(batch_fn, &b);
	assert_int_equal(b.ok, N);
	wait_completed(base + N);
	for (int i = 0; i < N; i++)
		assert_int_equal(reqs[i].status, 0);
	/* the ring goes once the last completion is reaped */
	for (int i = 0; i < 1000 && count_uring_fds() != before; i++)
		usleep(1000);
	assert_int_equal(count_uring_fds(), before);
	assert_int_equal(zoc_bdev_delete("pi"), 0);
	unlink(path);
	free(path);
	free(reqs);
	free(buf);
}

/* Attaches path to a free loop device with 4 KiB logical blocks; returns the
 * loop fd (auto-cleared on last close) or -1 when the machine cannot. */
static int loop_attach(const char *path, char *dev, size_t devlen)
{
	struct loop_config cfg;
	int ctl, nr, lfd, bfd;

	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return -1;
	nr = ioctl(ctl, LOOP_CTL_GET_FREE);
	close(ctl);
	if (nr < 0)
		return -1;
	snprintf(dev, devlen, "/dev/loop%d", nr);
	lfd = open(dev, O_RDWR | O_CLOEXEC);
	bfd = open(path, O_RDWR | O_CLOEXEC);
	if (lfd < 0 || bfd < 0)
		goto fail;
	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = (uint32_t)bfd;
	cfg.block_size = 4096;
	cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
	if (ioctl(lfd, LOOP_CONFIGURE, &cfg) < 0)
		goto fail;
	close(bfd);
	return lfd;
fail:
	if (lfd >= 0)
		close(lfd);
	if (bfd >= 0)
		close(bfd);
	return -1;
}

/* A real block device: geometry from BLKSSZGET / BLKGETSIZE64, discard and
 * write-zeroes through fallocate on the device. */
static void test_uring_blockdev(void **state)
{
	char *path = make_file(FILE_SIZE);
	char dev[32];
	int lfd = loop_attach(path, dev, sizeof(dev));
	struct zoc_bdev *b;
	struct zoc_bdev_ch *ch;
	uint8_t *w = abuf(65536, 0), *r = abuf(65536, 0x5a);
	struct treq t;

	if (lfd < 0) {
		print_message("no loop device available (%s): block-device test skipped\n",
			      strerror(errno));
		unlink(path);
		free(path);
		free(w);
		free(r);
		skip();
	}
	assert_int_equal(zoc_bdev_uring_create("blk", dev, 512, false), -EINVAL); /* < 4096 */
	assert_int_equal(zoc_bdev_uring_create("blk", dev, 0, false), 0);
	b = zoc_bdev_find("blk");
	assert_int_equal(b->block_size, 4096);
	assert_int_equal(zoc_bdev_size(b), FILE_SIZE);
	ch = get_ch("blk");

	pattern(w, 65536, 7);
	treq_init(&t, ZOC_BDEV_WRITE, 1 << 20, 65536);
	t.iov[0] = (struct iovec){w, 4096};
	t.iov[1] = (struct iovec){w + 4096, 61440};
	t.io.iov = t.iov;
	t.io.iovcnt = 2;
	assert_int_equal(run_one(ch, &t), 0);
	treq_init(&t, ZOC_BDEV_FLUSH, 0, 0);
	assert_int_equal(run_one(ch, &t), 0);
	treq_init(&t, ZOC_BDEV_READ, 1 << 20, 65536);
	treq_buf(&t, r);
	assert_int_equal(run_one(ch, &t), 0);
	assert_memory_equal(r, w, 65536);

	treq_init(&t, ZOC_BDEV_WRITE_ZEROES, 1 << 20, 16384);
	assert_int_equal(run_one(ch, &t), 0);
	if (b->supports_discard) {
		treq_init(&t, ZOC_BDEV_DISCARD, (1 << 20) + 49152, 16384);
		assert_int_equal(run_one(ch, &t), 0);
	}
	treq_init(&t, ZOC_BDEV_READ, 1 << 20, 65536);
	treq_buf(&t, r);
	assert_int_equal(run_one(ch, &t), 0);
	assert_true(all_zero(r, 16384));
	assert_memory_equal(r + 16384, w + 16384, 32768);
	if (b->supports_discard)
		assert_true(all_zero(r + 49152, 16384));

	put_ch(ch);
	assert_int_equal(zoc_bdev_delete("blk"), 0);
	close(lfd);
	unlink(path);
	free(path);
	free(w);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registry),
		cmocka_unit_test(test_validation),
		cmocka_unit_test(test_null_deferred),
		cmocka_unit_test(test_uring_create),
		cmocka_unit_test(test_uring_rw),
		cmocka_unit_test(test_uring_qd256),
		cmocka_unit_test(test_uring_sq_full),
		cmocka_unit_test(test_uring_chain),
		cmocka_unit_test(test_uring_shared_ring),
		cmocka_unit_test(test_uring_short_read),
		cmocka_unit_test(test_uring_put_inflight),
		cmocka_unit_test(test_uring_blockdev),
	};
	int fails = 0;

	fails += cmocka_run_group_tests_name("bdev_polling", tests, setup_polling,
					     teardown_reactor);
	fails += cmocka_run_group_tests_name("bdev_interrupt", tests, setup_interrupt,
					     teardown_reactor);
	return fails;
}
