/* SPDX-License-Identifier: MIT */
/*
 * wake.c - zoc-perf wake: the floor of a sleeping server's CPU per I/O.
 *
 *   zoc-perf wake [--rounds N] [--server-cpu C] [--client-cpu C] [--json]
 *
 * A vhost-user or vfio-user server in interrupt mode at queue depth 1
 * sleeps between requests: the client's kick (an eventfd write) wakes it,
 * it answers with a call (an eventfd write) and sleeps again. This measures
 * that cycle with no request processing at all: a "server" thread pinned
 * to --server-cpu and a "client" thread pinned to --client-cpu ping-pong
 * through two eventfds, N rounds, for each way of sleeping:
 *
 *   epoll  epoll_wait on the kick eventfd, then read it (as zocd's
 *          interrupt-mode reactor and QEMU's event loop sleep)
 *   read   a blocking read of the kick eventfd (the cheapest sleep Linux
 *          offers for this; no event loop can use it for many fds)
 *
 * and prints the server thread's CPU per round trip (CLOCK_THREAD_CPUTIME)
 * and the round-trip time. No server that sleeps once per I/O can spend
 * less CPU per I/O than the first figure on the same machine: it puts the
 * queue-depth-1 rows of bench/blk.sh in proportion.
 */
#include "wake.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

enum sleep_kind { SLEEP_EPOLL, SLEEP_READ };
static const char *const sleep_names[] = { "epoll", "read" };

struct pingpong {
	enum sleep_kind kind;
	int kick, call, ep;
	long rounds;
	int server_cpu;
	double server_cpu_s; /* out */
	int err;             /* out: errno of the first failure */
};

__attribute__((format(printf, 1, 2), noreturn)) static void die_usage(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("zoc-perf wake: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(try zoc-perf wake --help)\n", stderr);
	exit(2);
}

static int pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return 0;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return -pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One eventfd operation, retried on EINTR; 0 or -errno. */
static int efd_rw(int fd, bool wr)
{
	uint64_t v = 1;
	ssize_t n;

	do
		n = wr ? write(fd, &v, sizeof(v)) : read(fd, &v, sizeof(v));
	while (n < 0 && errno == EINTR);
	return n == sizeof(v) ? 0 : -(n < 0 ? errno : EIO);
}

static void *server_main(void *arg)
{
	struct pingpong *pp = arg;
	struct epoll_event ev;
	double t0;
	int rc = pin(pp->server_cpu);

	t0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
	for (long i = 0; i < pp->rounds && !rc; i++) {
		if (pp->kind == SLEEP_EPOLL) {
			int n;

			do
				n = epoll_wait(pp->ep, &ev, 1, -1);
			while (n < 0 && errno == EINTR);
			if (n != 1) {
				rc = n < 0 ? -errno : -EIO;
				break;
			}
		}
		rc = efd_rw(pp->kick, false);
		if (!rc)
			rc = efd_rw(pp->call, true);
	}
	pp->server_cpu_s = clock_s(CLOCK_THREAD_CPUTIME_ID) - t0;
	pp->err = -rc;
	return NULL;
}

/* Runs one kind; returns 0 and fills *cpu_us, *rtt_us, or -errno. */
static int run_kind(enum sleep_kind kind, long rounds, int server_cpu, double *cpu_us,
		    double *rtt_us)
{
	struct pingpong pp = { .kind = kind, .rounds = rounds, .server_cpu = server_cpu };
	struct epoll_event ev = { .events = EPOLLIN };
	pthread_t th;
	double t0, t1;
	int rc = 0;

	pp.kick = eventfd(0, EFD_CLOEXEC);
	pp.call = eventfd(0, EFD_CLOEXEC);
	pp.ep = epoll_create1(EPOLL_CLOEXEC);
	if (pp.kick < 0 || pp.call < 0 || pp.ep < 0 ||
	    epoll_ctl(pp.ep, EPOLL_CTL_ADD, pp.kick, &ev)) {
		rc = -errno;
		goto out;
	}
	rc = -pthread_create(&th, NULL, server_main, &pp);
	if (rc)
		goto out;
	t0 = clock_s(CLOCK_MONOTONIC);
	for (long i = 0; i < rounds && !rc; i++) {
		rc = efd_rw(pp.kick, true);
		if (!rc)
			rc = efd_rw(pp.call, false);
	}
	t1 = clock_s(CLOCK_MONOTONIC);
	if (rc) /* unblock the server (it may wait for a kick forever) */
		(void)pthread_cancel(th);
	pthread_join(th, NULL);
	if (!rc && pp.err)
		rc = -pp.err;
	*cpu_us = pp.server_cpu_s / (double)rounds * 1e6;
	*rtt_us = (t1 - t0) / (double)rounds * 1e6;
out:
	if (pp.kick >= 0)
		close(pp.kick);
	if (pp.call >= 0)
		close(pp.call);
	if (pp.ep >= 0)
		close(pp.ep);
	return rc;
}

static long parse_long(const char *opt, const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		die_usage("%s: '%s' is not a number in %ld..%ld", opt, s, min, max);
	return v;
}

int zoc_perf_cmd_wake(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "rounds", required_argument, NULL, 'n' },
		{ "server-cpu", required_argument, NULL, 's' },
		{ "client-cpu", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long rounds = 100000;
	int server_cpu = 0, client_cpu = 1, o;
	bool json = false;

	optind = 1;
	while ((o = getopt_long(argc, argv, "n:h", lopts, NULL)) != -1) {
		switch (o) {
		case 'n': rounds = parse_long("--rounds", optarg, 1000, 100000000); break;
		case 's': server_cpu = (int)parse_long("--server-cpu", optarg, -1, CPU_SETSIZE - 1); break;
		case 'c': client_cpu = (int)parse_long("--client-cpu", optarg, -1, CPU_SETSIZE - 1); break;
		case 'j': json = true; break;
		case 'h':
			printf("usage: zoc-perf wake [--rounds N] [--server-cpu C] [--client-cpu C] [--json]\n"
			       "The server thread's CPU per sleep/wake round trip through two eventfds\n"
			       "(sleeping in epoll_wait, then in a blocking read): the floor of a\n"
			       "sleeping server's CPU per I/O at queue depth 1. -1 = not pinned.\n");
			return 0;
		default: die_usage("bad option");
		}
	}
	if (optind != argc)
		die_usage("unexpected argument '%s'", argv[optind]);
	if (pin(client_cpu)) {
		fprintf(stderr, "zoc-perf wake: cannot pin to CPU %d: %s\n", client_cpu,
			strerror(errno));
		return 1;
	}
	if (json)
		putchar('{');
	for (int k = SLEEP_EPOLL; k <= SLEEP_READ; k++) {
		double cpu_us = 0, rtt_us = 0;
		int rc = run_kind(k, rounds, server_cpu, &cpu_us, &rtt_us);

		if (rc) {
			fprintf(stderr, "zoc-perf wake: %s round trips failed: %s\n", sleep_names[k],
				strerror(-rc));
			return 1;
		}
		if (json)
			printf("%s\"%s\":{\"server_cpu_us\":%.3f,\"rtt_us\":%.3f}", k ? "," : "",
			       sleep_names[k], cpu_us, rtt_us);
		else
			printf("wake: sleep=%s rounds=%ld server_cpu_us=%.2f rtt_us=%.2f\n",
			       sleep_names[k], rounds, cpu_us, rtt_us);
	}
	if (json)
		printf("}\n");
	return 0;
}
