/* SPDX-License-Identifier: MIT */
#include "net/fdb.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define WAYS 4

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}
#define KEY_VALID (1ull << 63)

struct bucket {
	uint32_t seq;
	uint16_t port[WAYS];
	uint32_t pad_;
	uint64_t key[WAYS];
	uint32_t seen[WAYS];
} __attribute__((aligned(ZOC_CACHELINE)));

_Static_assert(sizeof(struct bucket) == ZOC_CACHELINE, "one bucket per cache line");

struct zoc_fdb {
	struct bucket *b;
	uint32_t mask;
	uint32_t shift;
	uint32_t max;
	uint32_t count;
	pthread_mutex_t lock;
	struct zoc_fdb_stats st;
};

static inline uint64_t make_key(const uint8_t mac[6], uint16_t vid)
{
	return KEY_VALID | (uint64_t)(vid & 0xfff) << 48 | (uint64_t)mac[0] << 40 |
	       (uint64_t)mac[1] << 32 | (uint64_t)mac[2] << 24 | (uint64_t)mac[3] << 16 |
	       (uint64_t)mac[4] << 8 | mac[5];
}

static inline struct bucket *bucket_of(struct zoc_fdb *f, uint64_t key)
{
	return &f->b[(key * 0x9e3779b97f4a7c15ull) >> f->shift & f->mask];
}

struct zoc_fdb *zoc_fdb_create(uint32_t max_entries)
{
	struct zoc_fdb *f;
	uint32_t nb = 1, bits = 0;

	if (max_entries == 0 || max_entries > (1u << 22))
		return NULL;
	/* Load factor <= 1/2 of the ways. */
	while (nb * WAYS < max_entries * 2) {
		nb <<= 1;
		bits++;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->b = aligned_alloc(ZOC_CACHELINE, sizeof(struct bucket) * nb);
	if (!f->b) {
		free(f);
		return NULL;
	}
	memset(f->b, 0, sizeof(struct bucket) * nb);
	f->mask = nb - 1;
	f->shift = 64 - (bits ? bits : 1);
	f->max = max_entries;
	pthread_mutex_init(&f->lock, NULL);
	return f;
}

void zoc_fdb_destroy(struct zoc_fdb *f)
{
	if (!f)
		return;
	pthread_mutex_destroy(&f->lock);
	free(f->b);
	free(f);
}

/* Seqlock read: the way holding key, or -1; *port gets its port. */
static inline int read_bucket(struct bucket *b, uint64_t key, uint16_t *port)
{
	for (;;) {
		uint32_t s1 = __atomic_load_n(&b->seq, __ATOMIC_ACQUIRE);
		int way = -1;

		if (ZOC_UNLIKELY(s1 & 1)) {
			cpu_relax();
			continue;
		}
		for (int i = 0; i < WAYS; i++) {
			if (__atomic_load_n(&b->key[i], __ATOMIC_RELAXED) == key) {
				*port = __atomic_load_n(&b->port[i], __ATOMIC_RELAXED);
				way = i;
				break;
			}
		}
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (ZOC_LIKELY(__atomic_load_n(&b->seq, __ATOMIC_RELAXED) == s1))
			return way;
	}
}

static inline void write_begin(struct bucket *b)
{
	__atomic_store_n(&b->seq, b->seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static inline void write_end(struct bucket *b)
{
	__atomic_store_n(&b->seq, b->seq + 1, __ATOMIC_RELEASE);
}

static inline void set_way(struct bucket *b, int i, uint64_t key, uint16_t port, uint32_t seen)
{
	__atomic_store_n(&b->key[i], key, __ATOMIC_RELAXED);
	__atomic_store_n(&b->port[i], port, __ATOMIC_RELAXED);
	__atomic_store_n(&b->seen[i], seen, __ATOMIC_RELAXED);
}

int zoc_fdb_lookup(struct zoc_fdb *f, const uint8_t mac[6], uint16_t vid)
{
	uint64_t key = make_key(mac, vid);
	uint16_t port = 0;

	return read_bucket(bucket_of(f, key), key, &port) >= 0 ? port : -ENOENT;
}

int zoc_fdb_learn(struct zoc_fdb *f, const uint8_t mac[6], uint16_t vid, uint16_t port,
		  uint32_t now_s, bool (*allow)(void *arg, uint16_t port), void *arg)
{
	uint64_t key = make_key(mac, vid);
	struct bucket *b = bucket_of(f, key);
	uint16_t cur = 0;
	int way, rc, free_way = -1, oldest = 0;

	way = read_bucket(b, key, &cur);
	if (ZOC_LIKELY(way >= 0 && cur == port)) {
		if (ZOC_UNLIKELY(__atomic_load_n(&b->seen[way], __ATOMIC_RELAXED) != now_s))
			__atomic_store_n(&b->seen[way], now_s, __ATOMIC_RELAXED);
		return ZOC_FDB_KNOWN;
	}
	pthread_mutex_lock(&f->lock);
	if (allow && !allow(arg, port)) {
		rc = -EPERM;
		goto out;
	}
	for (int i = 0; i < WAYS; i++) {
		if (b->key[i] == key) {
			if (b->port[i] == port) {
				b->seen[i] = now_s;
				rc = ZOC_FDB_KNOWN;
			} else {
				write_begin(b);
				set_way(b, i, key, port, now_s);
				write_end(b);
				f->st.moved++;
				rc = ZOC_FDB_MOVED;
			}
			goto out;
		}
		if (!(b->key[i] & KEY_VALID)) {
			if (free_way < 0)
				free_way = i;
		} else if ((int32_t)(b->seen[i] - b->seen[oldest]) < 0) {
			oldest = i;
		}
	}
	if (free_way >= 0 && f->count >= f->max) {
		f->st.full++;
		rc = -ENOSPC;
		goto out;
	}
	write_begin(b);
	if (free_way >= 0) {
		set_way(b, free_way, key, port, now_s);
		f->count++;
		rc = ZOC_FDB_NEW;
	} else {
		set_way(b, oldest, key, port, now_s);
		f->st.evicted++;
		rc = ZOC_FDB_EVICTED;
	}
	write_end(b);
	f->st.learned++;
out:
	pthread_mutex_unlock(&f->lock);
	return rc;
}

/* Under the lock: removes entries matching pred. */
static unsigned remove_if(struct zoc_fdb *f, bool (*pred)(const struct bucket *b, int i,
							  const void *arg),
			  const void *arg)
{
	unsigned n = 0;

	for (uint32_t j = 0; j <= f->mask; j++) {
		struct bucket *b = &f->b[j];
		bool open = false;

		for (int i = 0; i < WAYS; i++) {
			if (!(b->key[i] & KEY_VALID) || !pred(b, i, arg))
				continue;
			if (!open) {
				write_begin(b);
				open = true;
			}
			set_way(b, i, 0, 0, 0);
			n++;
		}
		if (open)
			write_end(b);
	}
	f->count -= n;
	return n;
}

struct age_arg {
	uint32_t now, max;
};

static bool is_old(const struct bucket *b, int i, const void *arg)
{
	const struct age_arg *a = arg;
	uint32_t seen = __atomic_load_n(&b->seen[i], __ATOMIC_RELAXED);

	return (int32_t)(a->now - seen) > (int32_t)a->max;
}

unsigned zoc_fdb_age(struct zoc_fdb *f, uint32_t now_s, uint32_t max_age_s)
{
	struct age_arg a = {now_s, max_age_s};
	unsigned n;

	pthread_mutex_lock(&f->lock);
	n = remove_if(f, is_old, &a);
	f->st.aged += n;
	pthread_mutex_unlock(&f->lock);
	return n;
}

static bool on_port(const struct bucket *b, int i, const void *arg)
{
	return b->port[i] == *(const uint16_t *)arg;
}

unsigned zoc_fdb_flush_port(struct zoc_fdb *f, uint16_t port)
{
	unsigned n;

	pthread_mutex_lock(&f->lock);
	n = remove_if(f, on_port, &port);
	f->st.flushed += n;
	pthread_mutex_unlock(&f->lock);
	return n;
}

static bool any(const struct bucket *b, int i, const void *arg)
{
	return true;
}

unsigned zoc_fdb_flush(struct zoc_fdb *f)
{
	unsigned n;

	pthread_mutex_lock(&f->lock);
	n = remove_if(f, any, NULL);
	f->st.flushed += n;
	pthread_mutex_unlock(&f->lock);
	return n;
}

int zoc_fdb_delete(struct zoc_fdb *f, const uint8_t mac[6], uint16_t vid)
{
	uint64_t key = make_key(mac, vid);
	struct bucket *b = bucket_of(f, key);
	int rc = -ENOENT;

	pthread_mutex_lock(&f->lock);
	for (int i = 0; i < WAYS; i++) {
		if (b->key[i] == key) {
			write_begin(b);
			set_way(b, i, 0, 0, 0);
			write_end(b);
			f->count--;
			f->st.flushed++;
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

uint32_t zoc_fdb_count(struct zoc_fdb *f)
{
	return __atomic_load_n(&f->count, __ATOMIC_RELAXED);
}

uint32_t zoc_fdb_max(const struct zoc_fdb *f)
{
	return f->max;
}

void zoc_fdb_get_stats(struct zoc_fdb *f, struct zoc_fdb_stats *st)
{
	pthread_mutex_lock(&f->lock);
	*st = f->st;
	pthread_mutex_unlock(&f->lock);
}

void zoc_fdb_foreach(struct zoc_fdb *f, zoc_fdb_iter_fn fn, void *arg)
{
	pthread_mutex_lock(&f->lock);
	for (uint32_t j = 0; j <= f->mask; j++) {
		struct bucket *b = &f->b[j];

		for (int i = 0; i < WAYS; i++) {
			uint64_t k = b->key[i];
			uint8_t mac[6];

			if (!(k & KEY_VALID))
				continue;
			for (int m = 0; m < 6; m++)
				mac[m] = (uint8_t)(k >> (40 - 8 * m));
			if (fn(arg, mac, (uint16_t)(k >> 48 & 0xfff), b->port[i],
			       __atomic_load_n(&b->seen[i], __ATOMIC_RELAXED))) {
				pthread_mutex_unlock(&f->lock);
				return;
			}
		}
	}
	pthread_mutex_unlock(&f->lock);
}
