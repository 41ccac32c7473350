/* SPDX-License-Identifier: MIT */
/*
 * zocd - the ZOC I/O proxy daemon.
 *
 *   zocd [--config FILE] [--rpc PATH] [--cores LIST] [--interrupt-mode]
 *        [--log-level err|warn|info|debug]
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "blk/bdev.h"
#include "core/log.h"
#include "core/reactor.h"
#include "ctl/jsonrpc.h"
#include "zocd/rpc_methods.h"

struct config_replay {
	json_t *array;
	size_t next;
	const char *path;
};

static int g_exit_code;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: zocd [options]\n"
		"  -c, --config FILE     replay a saved configuration (JSON array of\n"
		"                        {\"method\", \"params\"}, as save_config writes)\n"
		"  -r, --rpc PATH        control socket (default %s)\n"
		"  -m, --cores LIST      CPUs to run reactors on, e.g. 0,1 or 0-3 (default 0)\n"
		"  -i, --interrupt-mode  sleep on eventfds when idle instead of busy polling\n"
		"  -p, --poll-max-us N   interrupt mode: poll up to N us before sleeping,\n"
		"                        tuned for work per CPU second (default %u; 0 = sleep at once)\n"
		"  -l, --log-level LVL   err, warn, info (default) or debug\n"
		"  -h, --help            this text\n",
		ZOC_RPC_DEFAULT_SOCKET, ZOC_REACTOR_POLL_MAX_NS / 1000);
}

static int parse_cores(const char *s, unsigned *cores, unsigned *n)
{
	char *dup = strdup(s), *save = NULL, *tok;
	long ncpu = sysconf(_SC_NPROCESSORS_CONF);

	*n = 0;
	if (!dup)
		return -ENOMEM;
	for (tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *end;
		unsigned long lo = strtoul(tok, &end, 10), hi = lo;

		if (end == tok)
			goto bad;
		if (*end == '-') {
			char *e2;

			hi = strtoul(end + 1, &e2, 10);
			if (e2 == end + 1 || *e2)
				goto bad;
		} else if (*end) {
			goto bad;
		}
		if (hi < lo || (long)hi >= ncpu)
			goto bad;
		for (unsigned long c = lo; c <= hi; c++) {
			for (unsigned i = 0; i < *n; i++)
				if (cores[i] == c)
					goto bad;
			if (*n >= ZOC_MAX_REACTORS)
				goto bad;
			cores[(*n)++] = (unsigned)c;
		}
	}
	free(dup);
	return *n ? 0 : -EINVAL;
bad:
	free(dup);
	return -EINVAL;
}

static void replay_next(struct config_replay *cr);

static void replay_cb(void *arg, json_t *resp)
{
	struct config_replay *cr = arg;
	json_t *err = json_object_get(resp, "error");

	if (err) {
		json_t *req = json_array_get(cr->array, cr->next - 1);

		ZOC_ERR("%s: entry %zu (%s) failed: %s", cr->path, cr->next - 1,
			json_string_value(json_object_get(req, "method")),
			json_string_value(json_object_get(err, "message")));
		g_exit_code = 1;
		zoc_zocd_shutdown();
		json_decref(cr->array);
		free(cr);
		return;
	}
	replay_next(cr);
}

static void replay_next(struct config_replay *cr)
{
	json_t *entry, *req;

	if (cr->next >= json_array_size(cr->array)) {
		ZOC_INFO("configuration %s applied (%zu entries)", cr->path, cr->next);
		json_decref(cr->array);
		free(cr);
		return;
	}
	entry = json_array_get(cr->array, cr->next++);
	if (!json_is_object(entry) || !json_is_string(json_object_get(entry, "method"))) {
		ZOC_ERR("%s: entry %zu is not {\"method\": ..., \"params\": ...}", cr->path,
			cr->next - 1);
		g_exit_code = 1;
		json_decref(cr->array);
		free(cr);
		zoc_zocd_shutdown();
		return;
	}
	req = json_pack("{s:s, s:O, s:I}", "jsonrpc", "2.0", "method",
			json_object_get(entry, "method"), "id", (json_int_t)cr->next);
	if (json_object_get(entry, "params"))
		json_object_set(req, "params", json_object_get(entry, "params"));
	if (zoc_rpc_call_local(req, replay_cb, cr)) {
		ZOC_ERR("%s: cannot run entry %zu", cr->path, cr->next - 1);
		g_exit_code = 1;
		zoc_zocd_shutdown();
	}
	json_decref(req);
}

static void replay_start(void *arg)
{
	replay_next(arg);
}

static void on_signal(void *arg, uint32_t events)
{
	int fd = *(int *)arg;
	struct signalfd_siginfo si;

	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	ZOC_INFO("signal %u received", si.ssi_signo);
	zoc_zocd_shutdown();
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"rpc", required_argument, NULL, 'r'},
		{"cores", required_argument, NULL, 'm'},
		{"interrupt-mode", no_argument, NULL, 'i'},
		{"poll-max-us", required_argument, NULL, 'p'},
		{"log-level", required_argument, NULL, 'l'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *config = NULL, *rpc = ZOC_RPC_DEFAULT_SOCKET;
	unsigned cores[ZOC_MAX_REACTORS] = {0}, ncores = 1;
	struct zoc_reactor_opts ro = {.pin = true};
	struct config_replay *cr = NULL;
	enum zoc_log_level lvl;
	sigset_t set;
	int c, sfd, rc;

	while ((c = getopt_long(argc, argv, "c:r:m:ip:l:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'r':
			rpc = optarg;
			break;
		case 'm':
			if (parse_cores(optarg, cores, &ncores)) {
				fprintf(stderr,
					"zocd: --cores '%s': expected CPU ids like 0,1 or 0-3, each "
					"below %ld and listed once\n",
					optarg, sysconf(_SC_NPROCESSORS_CONF));
				return 2;
			}
			break;
		case 'i':
			ro.interrupt_mode = true;
			break;
		case 'p': {
			char *end;
			unsigned long us = strtoul(optarg, &end, 10);

			if (end == optarg || *end || us > 1000000) {
				fprintf(stderr, "zocd: --poll-max-us: a number of microseconds in "
						"[0, 1000000]\n");
				return 2;
			}
			ro.poll_max_ns = us * 1000;
			ro.poll_max_set = true;
			break;
		}
		case 'l':
			if (zoc_log_parse_level(optarg, &lvl)) {
				fprintf(stderr, "zocd: --log-level: use err, warn, info or debug\n");
				return 2;
			}
			zoc_log_set_level(lvl);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "zocd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (config) {
		json_error_t err;

		cr = calloc(1, sizeof(*cr));
		cr->path = config;
		cr->array = json_load_file(config, 0, &err);
		if (!cr->array || !json_is_array(cr->array)) {
			fprintf(stderr, "zocd: --config %s: %s (line %d): expected a JSON array as "
					"save_config writes it\n",
				config, cr->array ? "not an array" : err.text, err.line);
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	/* Blocked before any thread starts, so reactor threads inherit it. */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);

	ro.cores = cores;
	ro.num_cores = ncores;
	rc = zoc_reactors_init(&ro);
	if (rc) {
		fprintf(stderr, "zocd: cannot create reactors: %s\n", strerror(-rc));
		return 1;
	}
	zoc_zocd_register_methods();
	rc = zoc_rpc_server_start(rpc);
	if (rc) {
		ZOC_ERR("cannot serve JSON-RPC on %s: %s (another zocd running? use --rpc PATH)",
			rpc, strerror(-rc));
		zoc_reactors_fini();
		return 1;
	}
	if (sfd >= 0)
		zoc_reactor_add_fd(zoc_reactor_get(0), sfd, EPOLLIN, on_signal, &sfd);
	if (cr)
		zoc_reactor_send_msg(zoc_reactor_get(0), replay_start, cr);
	ZOC_INFO("zocd ready: JSON-RPC on %s", rpc);
	rc = zoc_reactors_run();
	zoc_rpc_server_stop();
	zoc_reactors_fini();
	if (sfd >= 0)
		close(sfd);
	ZOC_INFO("zocd exited");
	return rc ? 1 : g_exit_code;
}
