/* SPDX-License-Identifier: MIT */
/*
 * jsonrpc.h - JSON-RPC 2.0 over a unix stream socket (mode 0600).
 *
 * Framing: each request is one JSON value (object or batch array); the
 * server parses values back to back from the stream, like SPDK's rpc
 * server, and writes each response followed by "\n". The server runs on
 * reactor 0 as fd handlers; method handlers run there too.
 *
 * Methods are registered by the modules that own them, with a declarative
 * parameter table; the server validates params against it (type, required,
 * unknown keys, ranges) before the handler runs, and answers errors with a
 * message that says what to fix.
 */
#ifndef ZOC_CTL_JSONRPC_H
#define ZOC_CTL_JSONRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define ZOC_RPC_PARSE_ERROR -32700
#define ZOC_RPC_INVALID_REQUEST -32600
#define ZOC_RPC_METHOD_NOT_FOUND -32601
#define ZOC_RPC_INVALID_PARAMS -32602
#define ZOC_RPC_INTERNAL_ERROR -32603

#define ZOC_RPC_DEFAULT_SOCKET "/var/tmp/zoc/zocd.sock"

enum zoc_rpc_type {
	ZOC_RPC_STRING,
	ZOC_RPC_UINT64,
	ZOC_RPC_UINT32,
	ZOC_RPC_UINT16,
	ZOC_RPC_BOOL,
};

/* One parameter: name, type, offset of the field in the handler's params
 * struct, required?, and for integers an inclusive range (max 0 = none).
 * Strings are stored as `const char *` pointing into the request (valid
 * until the request is answered); for strings, [min, max] bounds the length
 * (max 0 = 4096). A missing optional parameter (or JSON null) leaves its
 * field 0 / NULL / false. */
struct zoc_rpc_param {
	const char *name;
	enum zoc_rpc_type type;
	size_t offset;
	bool required;
	uint64_t min;
	uint64_t max;
	const char *help; /* shown by zocctl and in errors */
};

struct zoc_rpc_req;
/* Handler: fill the params struct decoded from the table, then answer with
 * exactly one of zoc_rpc_result() / zoc_rpc_error(), now or later
 * (asynchronous handlers keep req and answer from reactor 0). */
typedef void (*zoc_rpc_handler)(struct zoc_rpc_req *req, void *params);

struct zoc_rpc_method {
	const char *name;
	zoc_rpc_handler handler;
	/* Terminated by {NULL}; keys not in the table are rejected. NULL =
	 * free-form: no validation, the handler reads zoc_rpc_params(). */
	const struct zoc_rpc_param *params;
	size_t params_size;                 /* sizeof the params struct */
	const char *help;
};

/* Registers a method (before or after the server starts). -EEXIST on a dup. */
int zoc_rpc_register(const struct zoc_rpc_method *m);
const struct zoc_rpc_method *zoc_rpc_find(const char *name);
/* Iterates the method table in registration order. */
const struct zoc_rpc_method *zoc_rpc_method_at(size_t i);

/* Takes ownership of result (may be NULL -> true). req is freed by the
 * answer: do not touch it (or the params struct) afterwards. */
void zoc_rpc_result(struct zoc_rpc_req *req, json_t *result);
void zoc_rpc_error(struct zoc_rpc_req *req, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Raw params object of the request (borrowed), for handlers that take
 * free-form params. */
json_t *zoc_rpc_params(struct zoc_rpc_req *req);

/* Creates the socket (parent directory 0700 if missing, socket 0600) and
 * registers it on reactor 0. */
int zoc_rpc_server_start(const char *path);
void zoc_rpc_server_stop(void);

/* Runs one request (object) without a socket, on reactor 0: for --config
 * replay and tests. "jsonrpc" and "id" are optional here. cb (may be NULL)
 * gets the response object (borrowed) exactly once, also for requests
 * without "id", once the handler answered (at once, or later for
 * asynchronous handlers). The request is not stolen. 0 (cb will run) or
 * -EINVAL / -ENOMEM (cb will not run). */
typedef void (*zoc_rpc_local_cb)(void *arg, json_t *response);
int zoc_rpc_call_local(json_t *request, zoc_rpc_local_cb cb, void *arg);

/* save_config: modules register writers that append {"method","params"}
 * objects to the array; they run in registration order (back ends before
 * the devices that use them). */
typedef void (*zoc_rpc_config_writer)(json_t *array);
void zoc_rpc_register_config_writer(zoc_rpc_config_writer fn);
/* Builds the whole configuration array (caller frees). */
json_t *zoc_rpc_save_config(void);

/* Feeds raw bytes as if from a client, returns responses as a string
 * (caller frees). Used by the fuzzer and unit tests. */
char *zoc_rpc_process_buffer(const char *buf, size_t len);

#endif
