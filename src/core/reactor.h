/* SPDX-License-Identifier: MIT */
/*
 * reactor.h - one thread per configured core, running pollers.
 *
 * Life cycle: zoc_reactors_init() -> register pollers / fds / messages ->
 * zoc_reactors_run() (blocks; reactor 0 runs on the calling thread, the
 * others on their own pinned threads) -> zoc_reactors_stop() from any
 * reactor -> zoc_reactors_fini().
 *
 * Everything a reactor owns (pollers, fd handlers, queues, pools) is touched
 * only by that reactor's thread. Other threads talk to it with
 * zoc_reactor_send_msg(); the function runs on the target reactor.
 *
 * Modes:
 *  - polling (default): every poller runs in a tight loop; every
 *    ZOC_REACTOR_FD_CHECK iterations the reactor runs its queued messages
 *    (a lock-free peek) and, at most every ZOC_REACTOR_FD_CHECK_NS, checks
 *    its fd handlers with a zero-timeout epoll_wait (a system call: not on
 *    every iteration).
 *  - interrupt (--interrupt-mode): when the reactor has found no work for
 *    its adaptive poll time (see below; at least ZOC_REACTOR_IDLE_SPINS
 *    iterations, or one when that time is 0), it asks every poller to arm
 *    its interrupt (arm callback: enable notifications, return nonzero if
 *    work slipped in) and then sleeps in epoll_wait() on the fds its
 *    pollers registered (kick eventfds, io_uring eventfds, sockets) and its
 *    message eventfd.
 *    Timed pollers bound the sleep.
 *    Adaptive polling: a sleep/wake cycle can cost far more CPU than
 *    polling through a short gap (a context switch each way; ~25 us in some
 *    VMs), so an idle reactor keeps polling for poll_ns before it sleeps.
 *    poll_ns (0, 4, 8 ... 256 us, at most poll_max_ns) is chosen every 50 ms
 *    epoch from measurements: the lengths of sampled idle gaps and the CPU
 *    time of sampled sleep/wake cycles give the poll time with the least
 *    expected CPU per gap (reactor.c explains the model). Because a sleep
 *    costs more than the sleep call (arming, the driver's kick, cold
 *    caches), and less than a gap's worth of polling at depth (one wake-up
 *    serves all that arrived meanwhile), a trial epoch now and then runs at
 *    another level (no poll, or one bridging most gaps) and keeps it if the
 *    CPU per unit of work was lower and the rate of work held (a shorter
 *    poll may lose at most 10%). poll_max_ns 0 disables
 *    polling past IDLE_SPINS (and the trials).
 *    Messages queued before the reactors start run before the first poll.
 *
 * Reactor 0 also carries the control plane (JSON-RPC, vhost-user sockets).
 */
#ifndef ZOC_CORE_REACTOR_H
#define ZOC_CORE_REACTOR_H

#include <stdbool.h>
#include <stdint.h>

#define ZOC_MAX_REACTORS 64
#define ZOC_REACTOR_FD_CHECK 64
#define ZOC_REACTOR_FD_CHECK_NS 50000
#define ZOC_REACTOR_IDLE_SPINS 16
#define ZOC_REACTOR_POLL_MAX_NS 256000

struct zoc_reactor;
struct zoc_poller;

/* A poller returns the number of units of work it did (0 = idle, <0 error,
 * counted as idle). */
typedef int (*zoc_poller_fn)(void *arg);
/* Called before the reactor sleeps (interrupt mode only). Arm notification
 * and return nonzero if there is already work, which cancels the sleep. */
typedef int (*zoc_poller_arm_fn)(void *arg);
/* Called after the reactor wakes from sleep (interrupt mode only): disable
 * notifications again. May be NULL. */
typedef void (*zoc_poller_disarm_fn)(void *arg);

typedef void (*zoc_fd_fn)(void *arg, uint32_t events);
typedef void (*zoc_msg_fn)(void *arg);

struct zoc_poller_ops {
	zoc_poller_fn poll;
	zoc_poller_arm_fn arm;       /* may be NULL: nothing to arm */
	zoc_poller_disarm_fn disarm; /* may be NULL */
};

struct zoc_reactor_opts {
	const unsigned *cores; /* CPU ids, one reactor each; NULL = {0} */
	unsigned num_cores;
	bool interrupt_mode;
	bool pin; /* pin threads to their CPUs (default true via zocd) */
	/* Interrupt mode: longest adaptive poll before sleeping; 0 = never
	 * poll past ZOC_REACTOR_IDLE_SPINS. Default ZOC_REACTOR_POLL_MAX_NS. */
	uint64_t poll_max_ns;
	bool poll_max_set; /* poll_max_ns given (else the default) */
};

int zoc_reactors_init(const struct zoc_reactor_opts *opts);
/* Runs until zoc_reactors_stop(). Returns 0 or -errno. */
int zoc_reactors_run(void);
/* Any thread. Makes every reactor leave its loop. */
void zoc_reactors_stop(void);
void zoc_reactors_fini(void);

unsigned zoc_reactor_count(void);
struct zoc_reactor *zoc_reactor_get(unsigned idx);
/* The reactor of the calling thread, NULL on other threads. */
struct zoc_reactor *zoc_reactor_current(void);
unsigned zoc_reactor_index(const struct zoc_reactor *r);
unsigned zoc_reactor_cpu(const struct zoc_reactor *r);
bool zoc_reactor_interrupt_mode(void);

/* Calls fn(arg) once at the end of the current round of the calling
 * reactor's pollers (before it handles messages, fds or sleeps), for work a
 * poller batches over all of them: e.g. one memory fence for the used-buffer
 * notifications of every queue the round completed on. The caller registers
 * once per round (its own "pending" state tells it). -EAGAIN off a reactor
 * thread or with ZOC_REACTOR_ROUND_HOOKS already registered: do it now. */
#define ZOC_REACTOR_ROUND_HOOKS 4
int zoc_reactor_at_round_end(void (*fn)(void *arg), void *arg);

/* Pollers: register / unregister on the reactor that will own them, from that
 * reactor's thread (or before zoc_reactors_run()). Unregistering inside the
 * poller's own callback is allowed. period_us > 0 makes a timed poller that
 * runs at most every period_us (and bounds the interrupt-mode sleep). */
struct zoc_poller *zoc_poller_register(struct zoc_reactor *r, const struct zoc_poller_ops *ops,
				       void *arg, uint64_t period_us, const char *name);
void zoc_poller_unregister(struct zoc_poller *p);

/* fd handlers (epoll, level-triggered): same threading rules as pollers. */
int zoc_reactor_add_fd(struct zoc_reactor *r, int fd, uint32_t events, zoc_fd_fn fn, void *arg);
int zoc_reactor_mod_fd(struct zoc_reactor *r, int fd, uint32_t events);
int zoc_reactor_del_fd(struct zoc_reactor *r, int fd);

/* From an arm callback (owner thread): the coming sleep lasts at most ns
 * (the smallest bound of this round counts; cleared after the sleep). */
void zoc_reactor_sleep_at_most(uint64_t ns);

/* Any thread. Runs fn(arg) on reactor r, in order of sending per sender.
 * Returns 0 or -ENOMEM. Control-plane only: not for per-I/O work. */
int zoc_reactor_send_msg(struct zoc_reactor *r, zoc_msg_fn fn, void *arg);

/* Reactor 0 (with one reactor, or before run, done runs at once). A grace period: done(arg)
 * runs on reactor 0 once every reactor has finished the iteration it was in
 * when this was called (each runs a message). After it, no reactor still
 * uses a pointer or fd that was unpublished before the call, so it can be
 * freed or closed. 0 or -ENOMEM (done is then not called). */
int zoc_reactors_barrier(zoc_msg_fn done, void *arg);

/* Busy/idle accounting for stats: nanoseconds spent in iterations that did
 * work vs. not, since start. */
/* Current adaptive poll time (interrupt mode). */
uint64_t zoc_reactor_poll_ns(const struct zoc_reactor *r);
/* Measured thread CPU time of one sleep/wake cycle (interrupt mode). */
uint64_t zoc_reactor_wake_cost_ns(const struct zoc_reactor *r);
/* Interrupt mode: how long a sampled idle gap is polled (bounded by twice
 * the sleep/wake cost; see reactor.c). */
uint64_t zoc_reactor_sample_ns(const struct zoc_reactor *r);
/* Interrupt mode: trial epochs run (another poll level for one epoch) and
 * won (the level was kept); see reactor.c. Racy reads, for statistics. */
void zoc_reactor_trials(const struct zoc_reactor *r, uint64_t *trials, uint64_t *won);
/* Interrupt mode: idle periods so far, and how many of them were sampled
 * (polled past the current choice to measure the gap). Racy reads. */
void zoc_reactor_samples(const struct zoc_reactor *r, uint64_t *idle_periods, uint64_t *samples);
void zoc_reactor_get_stats(const struct zoc_reactor *r, uint64_t *busy_ns, uint64_t *idle_ns,
			   uint64_t *sleeps);

#endif
