/* SPDX-License-Identifier: MIT */
/*
 * harness.c - reactor thread and synchronous calls for unit tests.
 */
#include "harness.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "core/reactor.h"

void *zt_reactor_main(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)zoc_reactors_run();
}

int zt_sem_wait_ms(sem_t *s, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	while (sem_timedwait(s, &ts) != 0) {
		if (errno != EINTR)
			return -1;
	}
	return 0;
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

void zt_on_reactor(unsigned idx, void (*fn)(void *), void *arg, int wait_ms)
{
	struct sync_call c = {.fn = fn, .arg = arg};

	sem_init(&c.done, 0, 0);
	assert_int_equal(zoc_reactor_send_msg(zoc_reactor_get(idx), sync_trampoline, &c), 0);
	if (zt_sem_wait_ms(&c.done, wait_ms))
		fail_msg("reactor %u did not answer within %d ms", idx, wait_ms);
	sem_destroy(&c.done);
}
