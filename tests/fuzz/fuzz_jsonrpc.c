/* SPDX-License-Identifier: MIT */
/*
 * fuzz_jsonrpc.c - libFuzzer target: raw client bytes through the JSON-RPC
 * framing, request validation, parameter decoding and (a)synchronous
 * answers, plus the same value through zoc_rpc_call_local().
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "ctl/jsonrpc.h"

struct fz_params {
	const char *name;
	uint64_t size;
	uint32_t bs;
	uint16_t q;
	bool ro;
};

static const struct zoc_rpc_param fz_table[] = {
	{"name", ZOC_RPC_STRING, offsetof(struct fz_params, name), true, 1, 16, "name"},
	{"size", ZOC_RPC_UINT64, offsetof(struct fz_params, size), false, 1, 1u << 20, "MiB"},
	{"bs", ZOC_RPC_UINT32, offsetof(struct fz_params, bs), false, 512, 4096, NULL},
	{"q", ZOC_RPC_UINT16, offsetof(struct fz_params, q), false, 0, 0, NULL},
	{"ro", ZOC_RPC_BOOL, offsetof(struct fz_params, ro), false, 0, 0, NULL},
	{NULL},
};

static const struct zoc_rpc_param fz_none[] = {{NULL}};

#define FZ_MAX_PENDING 4096
static struct zoc_rpc_req *g_pending[FZ_MAX_PENDING];
static size_t g_npending;

static void answer_all(void)
{
	/* Answering can not re-enter the handlers, but be safe anyway. */
	while (g_npending) {
		struct zoc_rpc_req *req = g_pending[--g_npending];

		if (g_npending & 1)
			zoc_rpc_error(req, -32000, "later failure %zu", g_npending);
		else
			zoc_rpc_result(req, json_string("later"));
	}
}

static void h_sync(struct zoc_rpc_req *req, void *params)
{
	struct fz_params *p = params;

	/* Touch every decoded field. */
	zoc_rpc_result(req, json_pack("{s:s, s:I, s:I, s:I, s:b}", "name", p->name, "size",
				      (json_int_t)p->size, "bs", (json_int_t)p->bs, "q",
				      (json_int_t)p->q, "ro", p->ro));
}

/* Answers at once, but as an async handler would: result or error
 * depending on the params. */
static void h_async_now(struct zoc_rpc_req *req, void *params)
{
	json_t *pj = zoc_rpc_params(req);

	if (json_object_size(pj) & 1)
		zoc_rpc_error(req, -32001, "odd params (%zu)", json_object_size(pj));
	else
		zoc_rpc_result(req, json_deep_copy(pj));
}

/* Keeps the request; answered by "flush" or after the buffer is done
 * (when the connection is already gone). */
static void h_async_later(struct zoc_rpc_req *req, void *params)
{
	if (g_npending == FZ_MAX_PENDING) {
		zoc_rpc_error(req, -32002, "too many pending");
		return;
	}
	g_pending[g_npending++] = req;
}

static void h_flush(struct zoc_rpc_req *req, void *params)
{
	answer_all();
	zoc_rpc_result(req, NULL);
}

static const struct zoc_rpc_method fz_methods[] = {
	{"sync", h_sync, fz_table, sizeof(struct fz_params), "sync"},
	{"now", h_async_now, NULL, 0, "free-form, answers at once"},
	{"later", h_async_later, fz_none, 0, "answers later"},
	{"flush", h_flush, fz_none, 0, "answers the pending ones"},
};

static void writer(json_t *a)
{
	json_array_append_new(a, json_pack("{s:s, s:{}}", "method", "later", "params"));
}

static void local_cb(void *arg, json_t *resp)
{
	char *s = json_dumps(resp, JSON_COMPACT);

	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	json_t *v;
	char *out;

	if (!init) {
		init = true;
		zoc_log_set_level(ZOC_LOG_ERR);
		for (size_t i = 0; i < sizeof(fz_methods) / sizeof(fz_methods[0]); i++)
			zoc_rpc_register(&fz_methods[i]);
		zoc_rpc_register_config_writer(writer);
	}

	out = zoc_rpc_process_buffer((const char *)data, size);
	if (out && strlen(out) && out[strlen(out) - 1] != '\n')
		__builtin_trap(); /* every response ends with a newline */
	free(out);
	answer_all(); /* connection gone: answers dropped */

	v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK, NULL);
	if (v) {
		zoc_rpc_call_local(v, local_cb, NULL);
		json_decref(v);
		answer_all(); /* local answers reach local_cb */
	}
	return 0;
}
