/* SPDX-License-Identifier: MIT */
#include "core/reactor.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

#define EPOLL_BATCH 32

struct zoc_poller {
	struct zoc_poller_ops ops;
	void *arg;
	uint64_t period_ns;
	uint64_t next_run_ns;
	struct zoc_reactor *reactor;
	bool removed;
	char name[32];
};

struct zoc_fd_handler {
	int fd;
	zoc_fd_fn fn;
	void *arg;
	bool removed;
	struct zoc_fd_handler *next; /* all handlers / graveyard */
};

struct zoc_msg {
	zoc_msg_fn fn;
	void *arg;
	struct zoc_msg *next;
};

/* Interrupt mode: poll time levels (us) before arming and sleeping; gaps are
 * counted in the buckets between them ([0,4), [4,8) ... [256, inf)). */
static const uint32_t g_poll_levels_us[] = {0, 4, 8, 16, 32, 64, 128, 256};
#define POLL_LEVELS ((int)ZOC_ARRAY_SIZE(g_poll_levels_us))
#define POLL_BUCKETS POLL_LEVELS

struct zoc_reactor {
	unsigned idx;
	unsigned cpu;
	pthread_t thread;
	int epfd;
	int msg_efd;

	struct zoc_poller **pollers;
	unsigned npollers;
	unsigned cap_pollers;
	unsigned ntimed;
	bool pollers_dirty;

	struct {
		void (*fn)(void *arg);
		void *arg;
	} round_hooks[ZOC_REACTOR_ROUND_HOOKS]; /* zoc_reactor_at_round_end() */
	unsigned nround_hooks;

	struct zoc_fd_handler *handlers;  /* live */
	struct zoc_fd_handler *graveyard; /* removed, freed after dispatch */
	struct zoc_fd_handler msg_handler;

	pthread_mutex_t msg_lock;
	struct zoc_msg *msg_head;
	struct zoc_msg *msg_tail;

	uint64_t next_fd_check_ns; /* polling: next zero-timeout epoll_wait */
	uint64_t busy_ns;
	uint64_t idle_ns;
	uint64_t sleeps;
	uint64_t poll_ns; /* adaptive poll time before sleeping */
	/* Interrupt mode: the poll time is chosen from the measured idle gaps
	 * and sleep/wake cost (see poll_epoch()). */
	int poll_level;
	int sample_level;         /* sampled gaps are polled up to this level */
	uint64_t epoch_start_ns;
	uint32_t gap_seq;         /* idle periods since the last sampled one */
	uint32_t sample_every;    /* every sample_every-th idle period is sampled */
	uint32_t sleep_seq;
	double gap_hist[POLL_BUCKETS]; /* sampled gaps per bucket, decayed per epoch */
	uint64_t idle_periods;    /* idle periods (interrupt mode) */
	uint64_t samples;         /* idle periods sampled */
	uint64_t ep_idle;         /* idle_periods at the epoch start */
	double wake_cost_ns;      /* thread CPU per sleep/wake cycle (moving average) */
	/* Trial epochs (see poll_epoch()): CPU per unit of work measured. */
	uint64_t work_total;      /* units the pollers reported */
	uint64_t ep_work, ep_cpu; /* work_total and thread CPU at the epoch start */
	double cpw_base;          /* CPU ns per unit under the level in force, <0: unknown */
	double rate_base;         /* units per ms under the level in force */
	double cpw_noise;         /* epoch-to-epoch spread of that CPU per unit (relative) */
	int base_level;           /* the level in force in the last epoch that was no trial */
	int model_level;          /* the gap model's choice */
	int keep_level;           /* a level that won a trial against the model, -1: none */
	int trial_level;          /* the level this epoch tries, -1: not a trial */
	uint32_t trial_wait;      /* epochs with work until the next trial */
	uint32_t trial_backoff;   /* epochs between trials (doubles after a lost one) */
	uint64_t trials, trials_won;
	bool trial_nopoll_next;   /* the next challenger (no keeper) is no poll at all */
	uint32_t odd_epochs;      /* epochs in a row far off the level's rate */
	uint32_t load_trials;     /* trials since the last start-over */
	int last_trial_level;     /* the level the last trial tried */
	bool trial_again;         /* the trial runs a second epoch (a near miss) */
	double trial_cpw1, trial_rate1; /* its first epoch's figures */
	uint64_t sleep_limit_ns;  /* zoc_reactor_sleep_at_most() of this round, 0: none */
} __attribute__((aligned(ZOC_CACHELINE)));

static struct zoc_reactor *g_reactors;
static unsigned g_nreactors;
static bool g_interrupt_mode;
static bool g_pin;
static uint64_t g_poll_max_ns;
static atomic_bool g_stop;
static __thread struct zoc_reactor *t_current;

unsigned zoc_reactor_count(void)
{
	return g_nreactors;
}

struct zoc_reactor *zoc_reactor_get(unsigned idx)
{
	return idx < g_nreactors ? &g_reactors[idx] : NULL;
}

struct zoc_reactor *zoc_reactor_current(void)
{
	return t_current;
}

unsigned zoc_reactor_index(const struct zoc_reactor *r)
{
	return r->idx;
}

unsigned zoc_reactor_cpu(const struct zoc_reactor *r)
{
	return r->cpu;
}

bool zoc_reactor_interrupt_mode(void)
{
	return g_interrupt_mode;
}

/* Runs every queued message; returns how many. */
static int msg_run(struct zoc_reactor *r)
{
	struct zoc_msg *m;
	int n = 0;

	pthread_mutex_lock(&r->msg_lock);
	m = r->msg_head;
	__atomic_store_n(&r->msg_head, NULL, __ATOMIC_RELAXED); /* peeked without the lock */
	r->msg_tail = NULL;
	pthread_mutex_unlock(&r->msg_lock);
	while (m) {
		struct zoc_msg *next = m->next;

		m->fn(m->arg);
		free(m);
		m = next;
		n++;
	}
	return n;
}

static void msg_drain(void *arg, uint32_t events)
{
	struct zoc_reactor *r = arg;
	uint64_t v;

	(void)events;
	if (read(r->msg_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		ZOC_WARN("reactor %u: message eventfd read: %s", r->idx, strerror(errno));
	msg_run(r);
}

int zoc_reactors_init(const struct zoc_reactor_opts *opts)
{
	static const unsigned default_core = 0;
	const unsigned *cores = opts && opts->cores ? opts->cores : &default_core;
	unsigned n = opts && opts->cores ? opts->num_cores : 1;

	if (g_reactors)
		return -EBUSY;
	if (n == 0 || n > ZOC_MAX_REACTORS)
		return -EINVAL;
	g_reactors = aligned_alloc(ZOC_CACHELINE, sizeof(*g_reactors) * n);
	if (!g_reactors)
		return -ENOMEM;
	memset(g_reactors, 0, sizeof(*g_reactors) * n);
	g_nreactors = n;
	g_interrupt_mode = opts ? opts->interrupt_mode : false;
	g_pin = opts ? opts->pin : false;
	g_poll_max_ns = opts && opts->poll_max_set ? opts->poll_max_ns : ZOC_REACTOR_POLL_MAX_NS;
	atomic_store(&g_stop, false);
	for (unsigned i = 0; i < n; i++) {
		struct zoc_reactor *r = &g_reactors[i];

		r->idx = i;
		r->cpu = cores[i];
		r->epfd = epoll_create1(EPOLL_CLOEXEC);
		r->msg_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		pthread_mutex_init(&r->msg_lock, NULL);
		if (r->epfd < 0 || r->msg_efd < 0) {
			int err = -errno;

			g_nreactors = i + 1;
			zoc_reactors_fini();
			return err;
		}
		r->msg_handler.fd = r->msg_efd;
		r->msg_handler.fn = msg_drain;
		r->msg_handler.arg = r;
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &r->msg_handler};

		epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->msg_efd, &ev);
	}
	t_current = &g_reactors[0];
	return 0;
}

void zoc_reactors_fini(void)
{
	if (!g_reactors)
		return;
	for (unsigned i = 0; i < g_nreactors; i++) {
		struct zoc_reactor *r = &g_reactors[i];
		struct zoc_fd_handler *h, *next;
		struct zoc_msg *m;

		for (unsigned j = 0; j < r->npollers; j++)
			free(r->pollers[j]);
		free(r->pollers);
		for (h = r->handlers; h; h = next) {
			next = h->next;
			free(h);
		}
		for (h = r->graveyard; h; h = next) {
			next = h->next;
			free(h);
		}
		while ((m = r->msg_head)) {
			r->msg_head = m->next;
			free(m);
		}
		if (r->epfd >= 0)
			close(r->epfd);
		if (r->msg_efd >= 0)
			close(r->msg_efd);
		pthread_mutex_destroy(&r->msg_lock);
	}
	free(g_reactors);
	g_reactors = NULL;
	g_nreactors = 0;
	t_current = NULL;
}

struct zoc_poller *zoc_poller_register(struct zoc_reactor *r, const struct zoc_poller_ops *ops,
				       void *arg, uint64_t period_us, const char *name)
{
	struct zoc_poller *p;

	if (!r || !ops || !ops->poll)
		return NULL;
	if (r->npollers == r->cap_pollers) {
		unsigned cap = r->cap_pollers ? r->cap_pollers * 2 : 16;
		struct zoc_poller **np = realloc(r->pollers, sizeof(*np) * cap);

		if (!np)
			return NULL;
		r->pollers = np;
		r->cap_pollers = cap;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->ops = *ops;
	p->arg = arg;
	p->period_ns = period_us * 1000;
	p->next_run_ns = p->period_ns ? zoc_now_ns() + p->period_ns : 0;
	p->reactor = r;
	snprintf(p->name, sizeof(p->name), "%s", name ? name : "poller");
	if (p->period_ns)
		r->ntimed++;
	r->pollers[r->npollers++] = p;
	return p;
}

void zoc_poller_unregister(struct zoc_poller *p)
{
	if (!p || p->removed)
		return;
	p->removed = true;
	if (p->period_ns)
		p->reactor->ntimed--;
	p->reactor->pollers_dirty = true;
}

static void pollers_compact(struct zoc_reactor *r)
{
	unsigned j = 0;

	for (unsigned i = 0; i < r->npollers; i++) {
		if (r->pollers[i]->removed)
			free(r->pollers[i]);
		else
			r->pollers[j++] = r->pollers[i];
	}
	r->npollers = j;
	r->pollers_dirty = false;
}

int zoc_reactor_add_fd(struct zoc_reactor *r, int fd, uint32_t events, zoc_fd_fn fn, void *arg)
{
	struct zoc_fd_handler *h;
	struct epoll_event ev;

	if (!r || fd < 0 || !fn)
		return -EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->fd = fd;
	h->fn = fn;
	h->arg = arg;
	ev.events = events;
	ev.data.ptr = h;
	if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = -errno;

		free(h);
		return err;
	}
	h->next = r->handlers;
	r->handlers = h;
	return 0;
}

static struct zoc_fd_handler **find_handler(struct zoc_reactor *r, int fd)
{
	for (struct zoc_fd_handler **pp = &r->handlers; *pp; pp = &(*pp)->next)
		if ((*pp)->fd == fd)
			return pp;
	return NULL;
}

int zoc_reactor_mod_fd(struct zoc_reactor *r, int fd, uint32_t events)
{
	struct zoc_fd_handler **pp = find_handler(r, fd);
	struct epoll_event ev;

	if (!pp)
		return -ENOENT;
	ev.events = events;
	ev.data.ptr = *pp;
	return epoll_ctl(r->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

int zoc_reactor_del_fd(struct zoc_reactor *r, int fd)
{
	struct zoc_fd_handler **pp = find_handler(r, fd);
	struct zoc_fd_handler *h;

	if (!pp)
		return -ENOENT;
	h = *pp;
	*pp = h->next;
	epoll_ctl(r->epfd, EPOLL_CTL_DEL, fd, NULL);
	/* An event for it may sit in the current batch: free after dispatch. */
	h->removed = true;
	h->next = r->graveyard;
	r->graveyard = h;
	return 0;
}

int zoc_reactor_send_msg(struct zoc_reactor *r, zoc_msg_fn fn, void *arg)
{
	struct zoc_msg *m = malloc(sizeof(*m));
	bool was_empty;
	uint64_t one = 1;

	if (!m)
		return -ENOMEM;
	m->fn = fn;
	m->arg = arg;
	m->next = NULL;
	pthread_mutex_lock(&r->msg_lock);
	was_empty = r->msg_head == NULL;
	if (r->msg_tail)
		r->msg_tail->next = m;
	else
		__atomic_store_n(&r->msg_head, m, __ATOMIC_RELAXED);
	r->msg_tail = m;
	pthread_mutex_unlock(&r->msg_lock);
	if (was_empty && write(r->msg_efd, &one, sizeof(one)) < 0)
		ZOC_WARN("reactor %u: message eventfd write: %s", r->idx, strerror(errno));
	return 0;
}

struct barrier {
	unsigned pending;
	zoc_msg_fn done;
	void *arg;
};

static void barrier_back(void *arg)
{
	struct barrier *b = arg;

	if (--b->pending == 0) {
		b->done(b->arg);
		free(b);
	}
}

static void barrier_visit(void *arg)
{
	/* Runs between iterations of this reactor: the grace point. */
	while (zoc_reactor_send_msg(zoc_reactor_get(0), barrier_back, arg))
		usleep(1000);
}

int zoc_reactors_barrier(zoc_msg_fn done, void *arg)
{
	unsigned n = zoc_reactor_count();
	struct barrier *b;

	if (!zoc_reactor_current() || n <= 1) {
		/* Nothing runs concurrently with us. */
		done(arg);
		return 0;
	}
	b = malloc(sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->pending = n - 1;
	b->done = done;
	b->arg = arg;
	for (unsigned i = 1; i < n; i++)
		while (zoc_reactor_send_msg(zoc_reactor_get(i), barrier_visit, b))
			usleep(1000);
	return 0;
}

/* Returns the number of fd events dispatched. */
static uint64_t thread_cpu_ns(void);

/* wait_cpu: if not NULL, gets the thread CPU time of the wait itself (the
 * sleep/wake cycle, without the handlers' work). */
static int dispatch_fds_timed(struct zoc_reactor *r, int timeout_ms, uint64_t *wait_cpu)
{
	struct epoll_event evs[EPOLL_BATCH];
	uint64_t cpu0 = wait_cpu ? thread_cpu_ns() : 0;
	int n;

	if (r->sleep_limit_ns &&
	    (timeout_ms < 0 || r->sleep_limit_ns < (uint64_t)timeout_ms * 1000000ull)) {
		struct timespec ts = {
			.tv_sec = (time_t)(r->sleep_limit_ns / 1000000000ull),
			.tv_nsec = (long)(r->sleep_limit_ns % 1000000000ull),
		};

		n = epoll_pwait2(r->epfd, evs, EPOLL_BATCH, &ts, NULL);
	} else {
		n = epoll_wait(r->epfd, evs, EPOLL_BATCH, timeout_ms);
	}
	r->sleep_limit_ns = 0;
	if (wait_cpu)
		*wait_cpu = thread_cpu_ns() - cpu0;

	for (int i = 0; i < n; i++) {
		struct zoc_fd_handler *h = evs[i].data.ptr;

		if (!h->removed)
			h->fn(h->arg, evs[i].events);
	}
	while (r->graveyard) {
		struct zoc_fd_handler *h = r->graveyard;

		r->graveyard = h->next;
		free(h);
	}
	return n > 0 ? n : 0;
}

static int dispatch_fds(struct zoc_reactor *r, int timeout_ms)
{
	return dispatch_fds_timed(r, timeout_ms, NULL);
}

static int next_timer_ms(struct zoc_reactor *r, uint64_t now)
{
	uint64_t next = UINT64_MAX;

	if (!r->ntimed)
		return -1;
	for (unsigned i = 0; i < r->npollers; i++) {
		struct zoc_poller *p = r->pollers[i];

		if (!p->removed && p->period_ns && p->next_run_ns < next)
			next = p->next_run_ns;
	}
	if (next <= now)
		return 0;
	return (int)ZOC_MIN((next - now + 999999) / 1000000, 1000);
}

void zoc_reactor_sleep_at_most(uint64_t ns)
{
	struct zoc_reactor *r = t_current;

	if (!r || !ns)
		return;
	if (!r->sleep_limit_ns || ns < r->sleep_limit_ns)
		r->sleep_limit_ns = ns;
}

/* Interrupt mode: arm every poller; returns true if one has work already. */
static bool arm_all(struct zoc_reactor *r)
{
	bool work = false;

	for (unsigned i = 0; i < r->npollers; i++) {
		struct zoc_poller *p = r->pollers[i];

		if (!p->removed && p->ops.arm && p->ops.arm(p->arg))
			work = true;
	}
	return work;
}

static void disarm_all(struct zoc_reactor *r)
{
	for (unsigned i = 0; i < r->npollers; i++) {
		struct zoc_poller *p = r->pollers[i];

		if (!p->removed && p->ops.disarm)
			p->ops.disarm(p->arg);
	}
}

/*
 * The poll time in interrupt mode. An idle reactor can poll through a gap
 * (costing the gap's length in CPU) or arm and sleep (costing a sleep/wake
 * cycle: ~3 us on bare metal, ~25 us in some VMs, plus whatever it polled
 * first). Which is cheaper depends on the gaps this reactor sees, so it
 * measures them: one idle period in POLL_SAMPLE_EVERY polls up to the
 * ceiling (--poll-max-us) whatever the current choice, and its true length
 * goes into a histogram; one sleep in POLL_MEASURE_EVERY measures the thread
 * CPU time of the cycle. Every epoch the reactor takes the poll time T that
 * minimises the expected CPU per gap,
 *     sum over gaps g of (g < T ? g : T + wake_cost),
 * preferring less polling on near-ties. A probe that polls past the
 * choice costs at most one gap in POLL_SAMPLE_EVERY, and the choice never
 * wanders: it moves only when the measured gaps move. A sample polls no
 * longer than the first level of twice the sleep/wake cost (and at least one
 * level above the choice): a gap longer than that is cheaper slept through
 * than polled, so knowing its exact length changes no choice, while polling
 * it cost every sampled gap of a slow back end (a 100 us disk read at queue
 * depth 1: ~12 us of CPU per I/O). And while the choice stays put, the
 * samples get rarer (every 8th idle period, then 16th ... 128th, but at
 * least POLL_SAMPLE_MIN in an epoch; back to every 8th when the choice
 * moves), each counting for the periods it stands for. At queue depth 1
 * on a disk they cost 4-5 us of CPU per I/O at one in 8: the client's
 * turnaround (~45 us) fits in a sample, so an older rule that made them
 * rarer only while they found no gap shorter than themselves sampled one
 * in 8 for good. (An earlier tuner
 * climbed levels by comparing work per CPU second between epochs; its
 * probing cost ~25 us per I/O at low rates.) Levels above --poll-max-us
 * are never used.
 */
/* (Timed batching sleeps without arming were tried as further levels: on
 * these VMs a timer sleep costs ~60 us of CPU, more than it saves.) */
#define POLL_EPOCH_NS 50000000ull
#define POLL_SAMPLE_EVERY 8
#define POLL_SAMPLE_RAREST 128
#define POLL_SAMPLE_MIN 4
/* One sleep in this many measures the wake cost (two clock reads that are
 * system calls). */
#define POLL_MEASURE_EVERY 32
/* Samples (decayed) below which an epoch keeps the current choice. */
#define POLL_MIN_SAMPLES 8.0
/* Histogram half-life: one epoch. */
#define POLL_DECAY 0.5
/* Assumed sleep/wake cost until measured. */
#define POLL_WAKE_COST_NS 20000.0
/* A longer poll must save at least this fraction to be chosen. */
#define POLL_TIE 0.03

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int poll_max_level(void)
{
	int l = 0;

	while (l + 1 < POLL_LEVELS && g_poll_levels_us[l + 1] * 1000ull <= g_poll_max_ns)
		l++;
	return l;
}

static void poll_set_level(struct zoc_reactor *r, int level)
{
	r->poll_level = level;
	__atomic_store_n(&r->poll_ns, g_poll_levels_us[level] * 1000ull, __ATOMIC_RELAXED);
}

/* A sampled gap that polling bridged, standing for `weight` gaps. */
static void poll_record_gap(struct zoc_reactor *r, uint64_t gap_ns, double weight)
{
	int b = 0;

	while (b + 1 < POLL_BUCKETS && gap_ns >= g_poll_levels_us[b + 1] * 1000ull)
		b++;
	r->gap_hist[b] += weight;
}

/* A sampled gap longer than the sample: every choice sleeps through it. */
static void poll_record_long(struct zoc_reactor *r, double weight)
{
	r->gap_hist[POLL_BUCKETS - 1] += weight;
}

/* Expected CPU (ns, summed over the sampled gaps) of polling for level l. */
static double poll_cost(const struct zoc_reactor *r, int l)
{
	double t = g_poll_levels_us[l] * 1000.0, cost = 0;

	for (int b = 0; b < POLL_BUCKETS; b++) {
		double lo = g_poll_levels_us[b] * 1000.0;

		if (b + 1 < POLL_BUCKETS && lo < t) /* the bucket ends by t: polled through */
			cost += r->gap_hist[b] * (lo + g_poll_levels_us[b + 1] * 1000.0) / 2;
		else
			cost += r->gap_hist[b] * (t + r->wake_cost_ns);
	}
	return cost;
}

/* The level sampled gaps are polled up to (see above). */
static int poll_sample_level(const struct zoc_reactor *r)
{
	int top = poll_max_level(), l = 0;

	while (l < top && g_poll_levels_us[l] * 1000.0 < 2 * r->wake_cost_ns)
		l++;
	return ZOC_MAX(l, ZOC_MIN(r->poll_level + 1, top));
}

/*
 * Trials. The gap model prices a sleep at the thread CPU measured inside the
 * sleep call, but sleeping costs more than that: arming the queues (the
 * driver then kicks, and the kick is a system call on its side and an
 * event on ours), waking with cold caches. At queue depth 1 on a null back
 * end this made polling cheaper per I/O than the sleeping the model chose
 * (10.5 vs 13.5 us of CPU per I/O here). So the reactor also measures what
 * it is after, CPU per unit of work over an epoch, and now and then tries
 * one epoch at another level: in turn, no poll at all (the model prices a
 * sleep once per gap, but when a driver keeps a queue, one wake-up finds
 * every request that arrived during its latency: at queue depth 32 on a
 * null back end here, ~0.45 us of CPU per request against ~1.8 us for
 * polling the 2-4 us gaps) and the smallest level that bridges TRIAL_COVER
 * of the sampled gaps (none when most gaps are too long to bridge, so a
 * slow back end is never made to poll); or, once a trial has won, the
 * model's own choice again. A level that is cheaper per unit by TRIAL_GAIN,
 * or by TRIAL_NOISE times the level in force's own spread from epoch to
 * epoch where that is more (at most TRIAL_HALF), is kept (at queue depth 1
 * on a disk one epoch's CPU per unit moves 10-30% here, and trials that
 * polled at ~25% more CPU per I/O won now and then and held for a second);
 * a shorter one only if the epoch's units per second stayed within
 * TRIAL_RATE_TOL of the level in force (a driver slowed down by our sleeps,
 * as a kick-coalescing scheme did here, is no saving; twice that for one
 * that halves the CPU per unit); one that misses that by less than another
 * TRIAL_RATE_TOL runs a second epoch, and the mean of the two decides.
 * Trials start TRIAL_FIRST epochs into a load (a deep queue polled its
 * first 300 ms at 3x the CPU per I/O with 4), the second comes TRIAL_FIRST
 * epochs after the first with another challenger, then every TRIAL_EVERY
 * epochs, backing off to TRIAL_RAREST after lost ones: a losing trial costs
 * at most one epoch in 64 of polling bounded gaps. An epoch with too little
 * work (the load stopped) forgets the result, and so do two epochs in a row
 * whose units per second are TRIAL_NEW_LOAD times off the level's (a new
 * load with no pause before it: bench/blk.sh's next client, a driver whose
 * depth changed; a depth-one load after a deep one had kept no-poll for
 * 2-3 s, sleeping per request at a third of the IOPS polling gave).
 */
#define TRIAL_MIN_WORK 200
#define TRIAL_COVER 0.9
#define TRIAL_GAIN 0.05
#define TRIAL_NOISE 1.5
#define TRIAL_RATE_TOL 0.10
#define TRIAL_HALF 0.5
#define TRIAL_FIRST 2
#define TRIAL_EVERY 20
#define TRIAL_RAREST 64
#define TRIAL_NEW_LOAD 3.0

/* The smallest level above the model's that bridges TRIAL_COVER of the
 * n sampled gaps (the histogram's total), or -1. */
static int poll_trial_level(const struct zoc_reactor *r, double n)
{
	int top = poll_max_level();
	double below = 0;

	if (n < POLL_MIN_SAMPLES)
		return -1;
	/* Bucket b holds gaps in [level b, level b+1); the last, longer ones. */
	for (int l = 1; l <= top; l++) {
		below += r->gap_hist[l - 1];
		if (l > r->model_level && below >= TRIAL_COVER * n)
			return l;
	}
	return -1;
}

/* A new load (or the reactor's start): no kept level, no trial in progress,
 * the first trial TRIAL_FIRST epochs away and a no-poll one. */
static void trials_start_over(struct zoc_reactor *r)
{
	r->keep_level = r->trial_level = -1;
	r->cpw_base = -1;
	r->trial_wait = TRIAL_FIRST;
	r->trial_backoff = TRIAL_EVERY;
	r->trial_nopoll_next = true;
	r->load_trials = 0;
	r->trial_again = false;
	r->sample_every = POLL_SAMPLE_EVERY; /* the gaps of a new load */
}

/* The units per second a shorter-poll trial may lose: twice the usual
 * when it halves the CPU per unit (QD 128, at start: a no-poll trial at a
 * quarter of the CPU per request and 85% of the rate lost twice and the
 * reactor polled the whole 2 s run, 2.9 us of CPU per I/O against 0.8). */
static double trial_rate_tol(const struct zoc_reactor *r, double cpw)
{
	return cpw < r->cpw_base * TRIAL_HALF ? 2 * TRIAL_RATE_TOL : TRIAL_RATE_TOL;
}

/* n: the sampled gaps in the histogram. */
static void poll_trial_epoch(struct zoc_reactor *r, double n, uint64_t epoch_ns)
{
	uint64_t cpu = thread_cpu_ns(), work = r->work_total - r->ep_work;
	double cpw = work >= TRIAL_MIN_WORK ? (double)(cpu - r->ep_cpu) / (double)work : -1;
	double rate = (double)work * 1e6 / (double)ZOC_MAX(epoch_ns, 1);
	int incumbent = r->keep_level >= 0 ? r->keep_level : r->model_level;

	r->ep_cpu = cpu;
	r->ep_work = r->work_total;
	/* Idle or nearly, or slept through most of the epoch (a sleep ends an
	 * epoch only when it wakes up, so the gap between two loads can be one
	 * long epoch with the last one's work): start over with the next load. */
	if (cpw < 0 || epoch_ns > 2 * POLL_EPOCH_NS) {
		if (r->keep_level >= 0 || r->trial_level >= 0)
			ZOC_DEBUG("reactor %u: load ended: trials start over", r->idx);
		trials_start_over(r);
		return;
	}
	if (r->trial_level >= 0) {
		/* Cheaper per unit, and (for a shorter poll) serving as many:
		 * a driver slowed down by our sleeps does less work per second
		 * on its side too, which is no saving. */
		bool cheaper, longer = r->trial_level > incumbent, again, won;
		double tol, gain = ZOC_MIN(ZOC_MAX(TRIAL_GAIN, TRIAL_NOISE * r->cpw_noise),
					   TRIAL_HALF);

		/* The second epoch of a near miss: the two decide together. */
		if (r->trial_again) {
			cpw = (cpw + r->trial_cpw1) / 2;
			rate = (rate + r->trial_rate1) / 2;
		}
		cheaper = r->cpw_base > 0 && cpw < r->cpw_base * (1.0 - gain);
		tol = trial_rate_tol(r, cpw);
		/* Cheaper but slower by a little more than the tolerance: one
		 * epoch's rate is noisy here (+-10%), so the same trial runs one
		 * more epoch (QD 32 lost a no-poll trial at 42% of the CPU per
		 * request and 90.5% of the rate, then polled for 2 s). */
		again = cheaper && !longer && !r->trial_again &&
			rate < r->rate_base * (1.0 - tol) &&
			rate >= r->rate_base * (1.0 - tol - TRIAL_RATE_TOL);
		r->trial_again = again;
		won = cheaper && (longer || rate >= r->rate_base * (1.0 - tol));
		ZOC_DEBUG("reactor %u: trial poll %u us: %.0f ns/unit (level in force %.0f, "
			  "%.0f%% less to win), %.0f units/ms (%.0f): %s", r->idx,
			  g_poll_levels_us[r->trial_level], cpw, r->cpw_base, gain * 100, rate,
			  r->rate_base,
			  again ? "one more epoch" : won ? "kept" : "dropped");
		if (again) {
			r->trial_cpw1 = cpw;
			r->trial_rate1 = rate;
			return;
		}
		if (won) {
			r->trials_won++;
			r->keep_level = r->trial_level == r->model_level ? -1 : r->trial_level;
			r->trial_backoff = TRIAL_EVERY;
		} else if (r->load_trials) {
			r->trial_backoff = ZOC_MIN(r->trial_backoff * 2, TRIAL_RAREST);
		}
		/* The first trial of a load, won or lost, is followed soon by
		 * another challenger (a depth-one load whose no-poll trial lost
		 * waited 2 s to try a poll; one whose no-poll trial won, against
		 * a level that slept as much, 1 s). */
		r->trial_wait = r->load_trials++ ? r->trial_backoff : TRIAL_FIRST;
		r->last_trial_level = r->trial_level;
		r->trial_level = -1;
		r->cpw_base = -1; /* measure the level in force afresh */
		return;
	}
	/* The load changed without a pause (the next client connected as the
	 * last one left, or the driver's depth changed): what was kept or lost
	 * was measured on another load, so trials start over, the first soon.
	 * Two epochs in a row must say so: one slow epoch is noise here. */
	if (r->cpw_base > 0 && (rate > r->rate_base * TRIAL_NEW_LOAD ||
				rate * TRIAL_NEW_LOAD < r->rate_base)) {
		if (++r->odd_epochs < 2)
			return; /* not part of the level's baseline */
		ZOC_DEBUG("reactor %u: load changed (%.0f units/ms, was %.0f): trials start over",
			  r->idx, rate, r->rate_base);
		trials_start_over(r);
		incumbent = r->model_level;
	}
	r->odd_epochs = 0;
	/* The spread of one epoch against the level's mean, as a share of
	 * the larger (at most 1), while the level stays: a moved model level
	 * is a change, not noise. */
	if (r->cpw_base > 0 && r->poll_level == r->base_level)
		r->cpw_noise = 0.75 * r->cpw_noise +
			       0.25 * (1.0 - ZOC_MIN(cpw, r->cpw_base) / ZOC_MAX(cpw, r->cpw_base));
	r->base_level = r->poll_level;
	r->rate_base = r->cpw_base < 0 ? rate : (r->rate_base + rate) / 2;
	r->cpw_base = r->cpw_base < 0 ? cpw : (r->cpw_base + cpw) / 2;
	if (r->trial_wait && --r->trial_wait)
		return;
	/* A kept level the model now agrees with is no longer a choice against
	 * it, and must not stop the other challengers (it did: trials against
	 * the model's own level are none). */
	if (r->keep_level == r->model_level)
		r->keep_level = -1;
	/* Challenge the level in force, in turn with no poll at all (the gap
	 * model prices a sleep per gap, but at depth one wake-up finds all
	 * that arrived meanwhile; and a load can deepen without a pause that
	 * would reset a level kept for a shallower one): the model's choice
	 * if a trial won, else a level that bridges most gaps. */
	if (incumbent > 0 && r->trial_nopoll_next)
		r->trial_level = 0;
	else if (r->keep_level >= 0)
		r->trial_level = r->model_level;
	else if ((r->trial_level = poll_trial_level(r, n)) < 0 && r->sample_level > incumbent)
		/* No level bridges most gaps as they are, but a poll can make
		 * them shorter: a driver served at once may keep its CPU and
		 * send the next request sooner (queue depth 1, null: ~10 us of
		 * CPU per I/O polling 64 us against ~30 sleeping). */
		r->trial_level = r->sample_level;
	/* The quick turn after a load's first trial is for another challenger
	 * only (under a no-poll keeper there is one: the model's level, which
	 * QD 128 tried twice in 150 ms at 4-5x the CPU per request). */
	if (r->trial_level == incumbent ||
	    (r->load_trials == 1 && r->trial_level == r->last_trial_level))
		r->trial_level = -1;
	r->trial_nopoll_next = r->trial_level != 0;
	if (r->trial_level >= 0)
		r->trials++;
	else
		r->trial_wait = r->trial_backoff;
}

/* How often idle periods are sampled (see above): twice as rarely after
 * each epoch whose choice (best) is the last one's, back to every
 * POLL_SAMPLE_EVERY-th when it moved or there were too few samples to
 * choose; never so rarely that an epoch of `gaps` idle periods holds fewer
 * than POLL_SAMPLE_MIN samples (the histogram's half-life is one epoch). */
static void poll_sample_rate(struct zoc_reactor *r, double n, int best, uint64_t gaps)
{
	uint32_t every = r->sample_every;

	if (n < POLL_MIN_SAMPLES || best != r->model_level) {
		r->sample_every = POLL_SAMPLE_EVERY;
		return;
	}
	every = ZOC_MIN(every * 2, POLL_SAMPLE_RAREST);
	while (every > POLL_SAMPLE_EVERY && gaps < (uint64_t)every * POLL_SAMPLE_MIN)
		every /= 2;
	r->sample_every = every;
}

static void poll_epoch(struct zoc_reactor *r, uint64_t now)
{
	int top = r->sample_level, best = r->model_level, level;
	double n = 0, best_cost;
	uint64_t epoch_ns = now - r->epoch_start_ns;

	r->epoch_start_ns = now;
	for (int b = 0; b < POLL_BUCKETS; b++)
		n += r->gap_hist[b];
	if (n >= POLL_MIN_SAMPLES) {
		best = 0;
		best_cost = poll_cost(r, 0);
		for (int l = 1; l <= top; l++) {
			double c = poll_cost(r, l);

			if (c < best_cost * (1.0 - POLL_TIE)) {
				best = l;
				best_cost = c;
			}
		}
	}
	poll_sample_rate(r, n, best, r->idle_periods - r->ep_idle);
	r->ep_idle = r->idle_periods;
	r->model_level = best;
	poll_trial_epoch(r, n, epoch_ns);
	level = r->trial_level >= 0 ? r->trial_level
		: r->keep_level >= 0 ? r->keep_level : r->model_level;
	if (level != r->poll_level)
		poll_set_level(r, level);
	for (int b = 0; b < POLL_BUCKETS; b++)
		r->gap_hist[b] *= POLL_DECAY;
	__atomic_store_n(&r->sample_level, poll_sample_level(r), __ATOMIC_RELAXED);
}

/* Busy/idle accounting without a clock read per iteration: iterations are
 * counted, and every ZOC_REACTOR_FD_CHECK iterations (and around a sleep)
 * the elapsed time is split between busy and idle in their proportion. */
static void account(struct zoc_reactor *r, uint64_t *last, uint32_t *busy_it, uint32_t *idle_it)
{
	uint64_t t = zoc_now_ns(), d = t - *last;
	uint32_t total = *busy_it + *idle_it;

	if (total) {
		uint64_t b = d * *busy_it / total;

		r->busy_ns += b;
		r->idle_ns += d - b;
	} else {
		r->idle_ns += d;
	}
	*last = t;
	*busy_it = *idle_it = 0;
	if (g_interrupt_mode && g_poll_max_ns && t - r->epoch_start_ns >= POLL_EPOCH_NS)
		poll_epoch(r, t);
}

int zoc_reactor_at_round_end(void (*fn)(void *arg), void *arg)
{
	struct zoc_reactor *r = t_current;

	if (!r || r->nround_hooks == ZOC_REACTOR_ROUND_HOOKS)
		return -EAGAIN;
	r->round_hooks[r->nround_hooks].fn = fn;
	r->round_hooks[r->nround_hooks].arg = arg;
	r->nround_hooks++;
	return 0;
}

/* The hooks registered in this round, in order; one registered by a hook
 * runs at the end of the next round. */
static void run_round_hooks(struct zoc_reactor *r)
{
	unsigned n = r->nround_hooks;
	__typeof__(r->round_hooks) h;

	memcpy(h, r->round_hooks, n * sizeof(h[0]));
	r->nround_hooks = 0;
	for (unsigned i = 0; i < n; i++)
		h[i].fn(h[i].arg);
}

static void reactor_loop(struct zoc_reactor *r)
{
	uint64_t iter = 0;
	uint32_t busy_it = 0, idle_it = 0;
	unsigned idle = 0, spins = ZOC_REACTOR_IDLE_SPINS;
	uint64_t last = zoc_now_ns();
	uint64_t idle_start = 0, poll_ns = 0;
	bool sampling = false;
	double sample_w = 1.0;

	/* Start by sleeping (the cheap choice for an idle reactor) until the
	 * sampled gaps say polling pays. */
	poll_set_level(r, 0);
	r->model_level = 0;
	trials_start_over(r);
	r->ep_cpu = thread_cpu_ns();
	r->ep_work = r->work_total;
	r->wake_cost_ns = POLL_WAKE_COST_NS;
	r->cpw_noise = TRIAL_GAIN;
	r->base_level = 0;
	r->sample_level = poll_sample_level(r);
	r->epoch_start_ns = last;
	bool timers_due = true;

	/* Messages queued before the reactor started (a port's drain poller,
	 * a queue handed over at start-up) run before the first poll: the
	 * pollers already registered must not run for FD_CHECK iterations
	 * against state that is still being set up. */
	if (__atomic_load_n(&r->msg_head, __ATOMIC_ACQUIRE))
		msg_run(r);

	while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
		int work = 0;
		/* Timed pollers are checked every FD_CHECK iterations and after a
		 * sleep, not on every iteration: reading the clock can cost a
		 * system call (about 1.7 us on a kvm-clock VM), more than a whole
		 * burst of work on the data path. */
		bool timers = r->ntimed && (timers_due || iter % ZOC_REACTOR_FD_CHECK == 0);
		uint64_t now = timers ? zoc_now_ns() : 0;

		timers_due = false;
		for (unsigned i = 0; i < r->npollers; i++) {
			struct zoc_poller *p = r->pollers[i];
			int rc;

			if (p->removed)
				continue;
			if (p->period_ns) {
				if (!timers || now < p->next_run_ns)
					continue;
				p->next_run_ns = now + p->period_ns;
			}
			rc = p->ops.poll(p->arg);
			if (rc > 0)
				work += rc;
		}
		if (r->nround_hooks)
			run_round_hooks(r);
		if (ZOC_UNLIKELY(r->pollers_dirty))
			pollers_compact(r);
		/* Every FD_CHECK iterations: messages from other threads (a
		 * lock-free peek at the list; its eventfd stays set and costs
		 * one spurious wake-up later at most), and at most every
		 * FD_CHECK_NS the fds (control plane) with a zero-timeout
		 * epoll_wait, a system call that costs ~1-2 us in these VMs and
		 * took a third of a polling reactor's time when it ran every
		 * FD_CHECK iterations. In interrupt mode the sleep below checks
		 * the fds anyway. */
		if (++iter % ZOC_REACTOR_FD_CHECK == 0) {
			if (__atomic_load_n(&r->msg_head, __ATOMIC_RELAXED))
				work += msg_run(r);
			account(r, &last, &busy_it, &idle_it);
			if (last >= r->next_fd_check_ns) {
				r->next_fd_check_ns = last + ZOC_REACTOR_FD_CHECK_NS;
				work += dispatch_fds(r, 0);
			}
		}
		if (work) {
			busy_it++;
			r->work_total += (unsigned)work;
			/* A sampled gap that polling bridged: its true length. */
			if (ZOC_UNLIKELY(sampling)) {
				poll_record_gap(r, zoc_now_ns() - idle_start, sample_w);
				sampling = false;
			}
			idle = 0;
			continue;
		}
		idle_it++;
		idle++;
		if (!g_interrupt_mode)
			continue;
		/* Idling starts after IDLE_SPINS empty rounds, or at once when the
		 * poll time is 0 and no sample is due: spinning even IDLE_SPINS
		 * rounds catches a driver that sends a request every 1-2 us one
		 * request at a time, and never sleeps. */
		if (idle == 1)
			spins = r->poll_ns || (g_poll_max_ns && r->gap_seq + 1 >= r->sample_every)
					? ZOC_REACTOR_IDLE_SPINS
					: 1;
		if (idle < spins)
			continue;
		/* Adaptive poll: the clock is read once when idling starts and then
		 * every IDLE_SPINS iterations. */
		if (idle == spins) {
			r->idle_periods++;
			sampling = g_poll_max_ns && ++r->gap_seq >= r->sample_every;
			if (sampling) {
				r->samples++;
				r->gap_seq = 0;
				sample_w = (double)r->sample_every / POLL_SAMPLE_EVERY;
			}
			poll_ns = sampling ? g_poll_levels_us[r->sample_level] * 1000ull : r->poll_ns;
			if (poll_ns) {
				idle_start = zoc_now_ns();
				continue;
			}
		} else if (idle % ZOC_REACTOR_IDLE_SPINS || zoc_now_ns() - idle_start < poll_ns) {
			continue;
		}
		if (sampling) {
			poll_record_long(r, sample_w);
			sampling = false;
		}
		account(r, &last, &busy_it, &idle_it);
		if (r->nround_hooks) /* registered by a message or fd handler */
			run_round_hooks(r);
		if (!arm_all(r)) {
			bool measure = g_poll_max_ns && ++r->sleep_seq % POLL_MEASURE_EVERY == 0;
			uint64_t cpu = 0;

			r->sleeps++;
			dispatch_fds_timed(r, next_timer_ms(r, last), measure ? &cpu : NULL);
			/* One slow wake-up (a hypervisor exit, an interrupt on
			 * the way) counts for at most twice the average: it had
			 * taken the estimate to 100 us at queue depth 1 on a
			 * disk, and the model to polling every gap. */
			if (measure)
				r->wake_cost_ns = r->wake_cost_ns * 0.875 +
						  ZOC_MIN((double)cpu, 2 * r->wake_cost_ns) * 0.125;
		} else {
			r->sleep_limit_ns = 0; /* no sleep: the next round's arms bound the next */
		}
		disarm_all(r);
		if (r->pollers_dirty)
			pollers_compact(r);
		timers_due = true;
		idle = 0;
		/* the sleep counts as idle */
		idle_it = 1;
		account(r, &last, &busy_it, &idle_it);
	}
	if (r->nround_hooks)
		run_round_hooks(r);
}

static void *reactor_thread(void *arg)
{
	struct zoc_reactor *r = arg;

	t_current = r;
	reactor_loop(r);
	return NULL;
}

static void pin(struct zoc_reactor *r, pthread_t th)
{
	cpu_set_t set;
	int rc;

	if (!g_pin)
		return;
	CPU_ZERO(&set);
	CPU_SET(r->cpu, &set);
	rc = pthread_setaffinity_np(th, sizeof(set), &set);
	if (rc)
		ZOC_WARN("reactor %u: cannot pin to CPU %u: %s (running unpinned)", r->idx, r->cpu,
			 strerror(rc));
}

int zoc_reactors_run(void)
{
	unsigned started = 1;
	int rc = 0;

	if (!g_reactors)
		return -EINVAL;
	for (unsigned i = 1; i < g_nreactors; i++) {
		struct zoc_reactor *r = &g_reactors[i];

		rc = pthread_create(&r->thread, NULL, reactor_thread, r);
		if (rc) {
			ZOC_ERR("cannot start reactor %u: %s", i, strerror(rc));
			atomic_store(&g_stop, true);
			rc = -rc;
			break;
		}
		pin(r, r->thread);
		started++;
	}
	g_reactors[0].thread = pthread_self();
	t_current = &g_reactors[0];
	pin(&g_reactors[0], g_reactors[0].thread);
	ZOC_INFO("%u reactor(s) running, %s mode", g_nreactors,
		 g_interrupt_mode ? "interrupt" : "polling");
	if (!rc)
		reactor_loop(&g_reactors[0]);
	for (unsigned i = 1; i < started; i++)
		pthread_join(g_reactors[i].thread, NULL);
	return rc;
}

void zoc_reactors_stop(void)
{
	uint64_t one = 1;

	atomic_store(&g_stop, true);
	for (unsigned i = 0; i < g_nreactors; i++)
		if (write(g_reactors[i].msg_efd, &one, sizeof(one)) < 0)
			continue;
}

uint64_t zoc_reactor_poll_ns(const struct zoc_reactor *r)
{
	return __atomic_load_n(&r->poll_ns, __ATOMIC_RELAXED);
}

uint64_t zoc_reactor_sample_ns(const struct zoc_reactor *r)
{
	return g_poll_levels_us[__atomic_load_n(&r->sample_level, __ATOMIC_RELAXED)] * 1000ull;
}

void zoc_reactor_trials(const struct zoc_reactor *r, uint64_t *trials, uint64_t *won)
{
	*trials = __atomic_load_n(&r->trials, __ATOMIC_RELAXED);
	*won = __atomic_load_n(&r->trials_won, __ATOMIC_RELAXED);
}

void zoc_reactor_samples(const struct zoc_reactor *r, uint64_t *idle_periods, uint64_t *samples)
{
	*idle_periods = __atomic_load_n(&r->idle_periods, __ATOMIC_RELAXED);
	*samples = __atomic_load_n(&r->samples, __ATOMIC_RELAXED);
}

uint64_t zoc_reactor_wake_cost_ns(const struct zoc_reactor *r)
{
	/* A double written by the reactor: a torn read is impossible on the
	 * 64-bit targets we build for, and a stale one is fine for stats. */
	double v = *(const volatile double *)&r->wake_cost_ns;

	return v > 0 ? (uint64_t)v : 0;
}



void zoc_reactor_get_stats(const struct zoc_reactor *r, uint64_t *busy_ns, uint64_t *idle_ns,
			   uint64_t *sleeps)
{
	*busy_ns = __atomic_load_n(&r->busy_ns, __ATOMIC_RELAXED);
	*idle_ns = __atomic_load_n(&r->idle_ns, __ATOMIC_RELAXED);
	*sleeps = __atomic_load_n(&r->sleeps, __ATOMIC_RELAXED);
}
