/* SPDX-License-Identifier: MIT */
#include "zocd/rpc_methods.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blk/bdev.h"
#include "core/device.h"
#include "core/log.h"
#include "core/reactor.h"
#include "ctl/jsonrpc.h"
#include "link/vhost_user.h"
#include "virtio/virtio_blk.h"

#define P(name, type, st, field, req, lo, hi, help) \
	{name, ZOC_RPC_##type, offsetof(st, field), req, lo, hi, help}

/* ------------------------------------------------------------------ bdevs */

struct bdev_null_params {
	const char *name;
	uint64_t size_mb;
	uint32_t block_size;
};

static const struct zoc_rpc_param bdev_null_params[] = {
	P("name", STRING, struct bdev_null_params, name, true, 1, ZOC_BDEV_NAME_MAX - 1,
	  "name of the new bdev"),
	P("size_mb", UINT64, struct bdev_null_params, size_mb, true, 1, 1ull << 30,
	  "size in MiB"),
	P("block_size", UINT32, struct bdev_null_params, block_size, false, 512, 4096,
	  "logical block size in bytes (512, 1024, 2048 or 4096; default 512)"),
	{NULL},
};

static void rpc_bdev_null_create(struct zoc_rpc_req *req, void *params)
{
	struct bdev_null_params *p = params;
	uint32_t bs = p->block_size ? p->block_size : 512;
	int rc;

	if (bs & (bs - 1)) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "invalid params: 'block_size' must be a power of two in [512, 4096]");
		return;
	}
	rc = zoc_bdev_null_create(p->name, p->size_mb, bs);
	if (rc == -EEXIST)
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "a bdev named '%s' exists already: pick another name or bdev_delete it",
			      p->name);
	else if (rc)
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "cannot create null bdev '%s': %s",
			      p->name, strerror(-rc));
	else
		zoc_rpc_result(req, json_string(p->name));
}

struct bdev_uring_params {
	const char *name;
	const char *filename;
	uint32_t block_size;
	bool buffered;
};

static const struct zoc_rpc_param bdev_uring_params[] = {
	P("name", STRING, struct bdev_uring_params, name, true, 1, ZOC_BDEV_NAME_MAX - 1,
	  "name of the new bdev"),
	P("filename", STRING, struct bdev_uring_params, filename, true, 1, 4095,
	  "path of a file or block device"),
	P("block_size", UINT32, struct bdev_uring_params, block_size, false, 0, 4096,
	  "logical block size (default: the device's, 512 for files)"),
	P("buffered", BOOL, struct bdev_uring_params, buffered, false, 0, 0,
	  "use the page cache instead of O_DIRECT (default false)"),
	{NULL},
};

static void rpc_bdev_uring_create(struct zoc_rpc_req *req, void *params)
{
	struct bdev_uring_params *p = params;
	int rc;

	if (p->block_size && (p->block_size < 512 || (p->block_size & (p->block_size - 1)))) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "invalid params: 'block_size' must be a power of two in [512, 4096]");
		return;
	}
	rc = zoc_bdev_uring_create(p->name, p->filename, p->block_size, p->buffered);
	if (rc == -EEXIST)
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "a bdev named '%s' exists already: pick another name or bdev_delete it",
			      p->name);
	else if (rc)
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR,
			      "cannot open '%s' for bdev '%s': %s%s", p->filename, p->name,
			      strerror(-rc),
			      rc == -EINVAL && !p->buffered
				      ? " (if the file system refuses O_DIRECT, pass buffered=true)"
				      : "");
	else
		zoc_rpc_result(req, json_string(p->name));
}

struct name_params {
	const char *name;
};

static const struct zoc_rpc_param name_param[] = {
	P("name", STRING, struct name_params, name, true, 1, 255, "name of the object"),
	{NULL},
};

static const struct zoc_rpc_param opt_name_param[] = {
	P("name", STRING, struct name_params, name, false, 1, 255,
	  "only this object (default: all)"),
	{NULL},
};

static void rpc_bdev_delete(struct zoc_rpc_req *req, void *params)
{
	struct name_params *p = params;
	int rc = zoc_bdev_delete(p->name);

	if (rc == -ENOENT)
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "no bdev named '%s' (see bdev_list)",
			      p->name);
	else if (rc == -EBUSY)
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "bdev '%s' is used by a device: device_delete that first", p->name);
	else if (rc)
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "bdev_delete '%s': %s", p->name,
			      strerror(-rc));
	else
		zoc_rpc_result(req, NULL);
}

/* Answers a listing filtered by an optional name: the rows, or an error if
 * a name was given and nothing has it. Takes arr. */
static void answer_list(struct zoc_rpc_req *req, const char *what, const char *name, json_t *arr)
{
	if (name && json_array_size(arr) == 0) {
		json_decref(arr);
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "no %s named '%s' (see %s_list)", what,
			      name, what);
		return;
	}
	zoc_rpc_result(req, arr);
}

static json_t *bdev_json(const struct zoc_bdev *b)
{
	json_t *params = json_object();

	b->ops->dump_params(b, params);
	return json_pack("{s:s, s:s, s:i, s:I, s:I, s:b, s:b, s:b, s:o}", "name", b->name, "type",
			 b->ops->type, "block_size", (int)b->block_size, "num_blocks",
			 (json_int_t)b->num_blocks, "size_mb",
			 (json_int_t)(zoc_bdev_size(b) >> 20), "claimed", b->claims > 0,
			 "flush", b->supports_flush, "discard", b->supports_discard, "params",
			 params);
}

static void rpc_bdev_list(struct zoc_rpc_req *req, void *params)
{
	struct name_params *p = params;
	json_t *arr = json_array();

	for (struct zoc_bdev *b = zoc_bdev_next(NULL); b; b = zoc_bdev_next(b))
		if (!p->name || strcmp(p->name, b->name) == 0)
			json_array_append_new(arr, bdev_json(b));
	answer_list(req, "bdev", p->name, arr);
}

static void bdev_config_writer(json_t *array)
{
	for (struct zoc_bdev *b = zoc_bdev_next(NULL); b; b = zoc_bdev_next(b)) {
		json_t *params = json_object();
		char method[64];

		b->ops->dump_params(b, params);
		snprintf(method, sizeof(method), "bdev_%s_create", b->ops->type);
		json_array_append_new(array, json_pack("{s:s, s:o}", "method", method, "params",
						       params));
	}
}

/* ---------------------------------------------------------------- devices */

static void device_deleted(void *arg)
{
	zoc_rpc_result(arg, NULL);
}

static void rpc_device_delete(struct zoc_rpc_req *req, void *params)
{
	struct name_params *p = params;
	struct zoc_device *d = zoc_device_find(p->name);

	if (!d) {
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "no device named '%s' (see device_list)",
			      p->name);
		return;
	}
	d->ops->destroy(d, device_deleted, req);
}

/* device_list / device_stats: one row per device (or the named one). */
static void device_rows(struct zoc_rpc_req *req, const char *name, bool stats)
{
	json_t *arr = json_array();

	for (struct zoc_device *d = zoc_device_next(NULL); d; d = zoc_device_next(d))
		if (!name || strcmp(name, d->name) == 0)
			json_array_append_new(arr, stats ? d->ops->stats(d) : d->ops->info(d));
	answer_list(req, "device", name, arr);
}

static void rpc_device_list(struct zoc_rpc_req *req, void *params)
{
	device_rows(req, ((struct name_params *)params)->name, false);
}

static void rpc_device_stats(struct zoc_rpc_req *req, void *params)
{
	device_rows(req, ((struct name_params *)params)->name, true);
}

static void device_config_writer(json_t *array)
{
	for (struct zoc_device *d = zoc_device_next(NULL); d; d = zoc_device_next(d)) {
		json_t *c = d->ops->config(d);

		/* One call, or several in order (a controller and its namespaces). */
		if (json_is_array(c))
			json_array_extend(array, c);
		else if (c)
			json_array_append(array, c);
		json_decref(c);
	}
}

static void rpc_reactor_list(struct zoc_rpc_req *req, void *params)
{
	json_t *arr = json_array();

	for (unsigned i = 0; i < zoc_reactor_count(); i++) {
		struct zoc_reactor *r = zoc_reactor_get(i);
		uint64_t busy, idle, sleeps, trials, won, periods, samples;

		zoc_reactor_get_stats(r, &busy, &idle, &sleeps);
		zoc_reactor_trials(r, &trials, &won);
		zoc_reactor_samples(r, &periods, &samples);
		json_array_append_new(arr, json_pack("{s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s}",
						     "index", i, "cpu", zoc_reactor_cpu(r),
						     "busy_ns", (json_int_t)busy, "idle_ns",
						     (json_int_t)idle, "sleeps", (json_int_t)sleeps,
						     "poll_ns", (json_int_t)zoc_reactor_poll_ns(r),
						     "wake_cost_ns",
						     (json_int_t)zoc_reactor_wake_cost_ns(r),
						     "poll_sample_ns",
						     (json_int_t)zoc_reactor_sample_ns(r),
						     "poll_trials", (json_int_t)trials,
						     "poll_trials_won", (json_int_t)won,
						     "idle_periods", (json_int_t)periods,
						     "poll_samples", (json_int_t)samples,
						     "mode",
						     zoc_reactor_interrupt_mode() ? "interrupt"
										  : "polling"));
	}
	zoc_rpc_result(req, arr);
}

/* --------------------------------------------------------------- shutdown */

static bool g_shutting_down;

static void shutdown_next(void *arg)
{
	struct zoc_device *d = zoc_device_next(NULL);

	if (d) {
		d->ops->destroy(d, shutdown_next, NULL);
		return;
	}
	zoc_bdev_delete_all();
	ZOC_INFO("all devices deleted; stopping");
	zoc_reactors_stop();
}

void zoc_zocd_shutdown(void)
{
	if (g_shutting_down)
		return;
	g_shutting_down = true;
	ZOC_INFO("shutting down");
	shutdown_next(NULL);
}

static void shutdown_msg(void *arg)
{
	zoc_zocd_shutdown();
}

static void rpc_zocd_shutdown(struct zoc_rpc_req *req, void *params)
{
	zoc_rpc_result(req, NULL);
	/* Let the answer go out first. */
	zoc_reactor_send_msg(zoc_reactor_get(0), shutdown_msg, NULL);
}

static const struct zoc_rpc_param no_params[] = {{NULL}};

void zoc_zocd_register_methods(void)
{
	static const struct zoc_rpc_method methods[] = {
		{"bdev_null_create", rpc_bdev_null_create, bdev_null_params,
		 sizeof(struct bdev_null_params),
		 "create a null bdev (completes I/O at once, moves no data)"},
		{"bdev_uring_create", rpc_bdev_uring_create, bdev_uring_params,
		 sizeof(struct bdev_uring_params), "create an io_uring bdev on a file or block device"},
		{"bdev_delete", rpc_bdev_delete, name_param, sizeof(struct name_params),
		 "delete a bdev no device uses"},
		{"bdev_list", rpc_bdev_list, opt_name_param, sizeof(struct name_params),
		 "list bdevs"},
		{"device_delete", rpc_device_delete, name_param, sizeof(struct name_params),
		 "delete a device (disconnects its front end)"},
		{"device_list", rpc_device_list, opt_name_param, sizeof(struct name_params),
		 "list devices"},
		{"device_stats", rpc_device_stats, opt_name_param, sizeof(struct name_params),
		 "per-device and per-queue I/O statistics with latency histograms"},
		{"reactor_list", rpc_reactor_list, no_params, 0,
		 "reactors: CPU, busy/idle time, sleeps"},
		{"zocd_shutdown", rpc_zocd_shutdown, no_params, 0,
		 "delete every device and exit"},
	};

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (zoc_rpc_register(&methods[i]))
			ZOC_ERR("cannot register method %s", methods[i].name);
	zoc_zocd_register_nvme_methods();
	zoc_zocd_register_virtio_methods();
	zoc_zocd_register_net_methods();
	zoc_zocd_register_uplink_methods();
	zoc_zocd_register_secgroup_methods();
	zoc_rpc_register_config_writer(bdev_config_writer);
	zoc_rpc_register_config_writer(device_config_writer);
	zoc_rpc_register_config_writer(zoc_zocd_secgroup_attach_writer);
}
