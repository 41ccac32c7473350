/* SPDX-License-Identifier: MIT */
/*
 * harness.h - what unit tests that run real reactors share: the thread that
 * runs them and a synchronous call into one of them.
 */
#ifndef ZOC_TESTS_UNIT_HARNESS_H
#define ZOC_TESTS_UNIT_HARNESS_H

#include <semaphore.h>

/* pthread start routine: zoc_reactors_run() on this thread (reactor 0). */
void *zt_reactor_main(void *arg);
/* sem_wait() for at most ms milliseconds; 0 or -1 on timeout. */
int zt_sem_wait_ms(sem_t *s, int ms);
/* Runs fn(arg) on reactor idx and waits for it, at most wait_ms (a test
 * failure then). Messages to one reactor run in the order they were sent,
 * so this also waits for everything sent to that reactor before. */
void zt_on_reactor(unsigned idx, void (*fn)(void *), void *arg, int wait_ms);

#endif
