/* SPDX-License-Identifier: MIT */
/*
 * jsonrpc.c - JSON-RPC 2.0 server on a unix stream socket, method table,
 * declarative parameter decoding, save_config writers.
 *
 * Every byte that arrives on a connection is hostile. The stream is cut
 * into JSON values by a small scanner that tracks bracket depth and string
 * state (resumable across reads, so a large request split over many reads
 * is scanned once); each complete value is then parsed by jansson. A value
 * that never completes within ZOC_RPC_MAX_REQUEST bytes, or bytes that can
 * not start a value, get a parse error and the connection is closed after
 * the answer is flushed: the stream can not be resynchronised.
 *
 * Requests may be answered later (asynchronous handlers). A connection is
 * reference counted: each request in flight holds a reference, so a client
 * that goes away while a handler is busy frees nothing the handler still
 * uses, and its answer is dropped.
 *
 * Everything here runs on reactor 0 (or, for zoc_rpc_process_buffer() and
 * zoc_rpc_call_local() before the reactors run, on the calling thread).
 */
#include "ctl/jsonrpc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "core/reactor.h"
#include "core/util.h"

/* One JSON value (request or batch) may not exceed this many bytes. */
#define ZOC_RPC_MAX_REQUEST (1u << 20)
/* Entries in one batch. */
#define ZOC_RPC_MAX_BATCH 1024
/* Stop reading from a client that does not read its answers. */
#define ZOC_RPC_OUT_HIGH (4u << 20)
/* Stop reading from a client with this many requests still unanswered. */
#define ZOC_RPC_MAX_INFLIGHT 256
#define ZOC_RPC_MAX_CONNS 64
#define ZOC_RPC_READ_CHUNK 65536
/* Read at most this much per readiness event, for fairness. */
#define ZOC_RPC_READ_BUDGET (256u * 1024)
#define ZOC_RPC_STRING_MAX_DEFAULT 4096

/* ------------------------------------------------------------------ */
/* Types                                                              */
/* ------------------------------------------------------------------ */

struct rpc_conn {
	int fd; /* -1: capture connection of zoc_rpc_process_buffer() */
	unsigned refs;
	unsigned inflight; /* requests (or batches) not yet answered */
	bool closed;       /* no more I/O; answers are dropped */
	bool rd_eof;       /* client shut its write side */
	bool want_close;   /* fatal framing error: close once flushed */
	uint32_t events;   /* epoll mask currently registered */

	/* input: bytes [in_off, in_len) not yet consumed */
	char *in;
	size_t in_len, in_cap, in_off;
	/* scanner state, resumable across reads */
	size_t scan;   /* next byte to look at */
	size_t vstart; /* start of the value being scanned, SIZE_MAX if none */
	size_t depth;
	bool in_str, esc;

	/* output: bytes [out_off, out_len) not yet written */
	char *out;
	size_t out_len, out_cap, out_off;

	struct rpc_conn *prev, *next; /* server list */
};

struct rpc_batch {
	struct rpc_conn *conn; /* holds a reference */
	json_t *responses;
	size_t pending; /* requests not answered + 1 while being dispatched */
};

struct zoc_rpc_req {
	struct rpc_conn *conn;   /* single request on a connection (ref held) */
	struct rpc_batch *batch; /* or part of a batch */
	bool local;              /* or zoc_rpc_call_local() */
	zoc_rpc_local_cb cb;
	void *cb_arg;
	bool notification; /* no "id": answer is not sent */
	json_t *request;   /* owned; strings of the params struct point here */
	json_t *id;        /* owned, NULL = none */
	json_t *params;    /* owned */
	void *pstruct;     /* decoded params, freed with the request */
	const struct zoc_rpc_method *method;
};

struct method_node {
	struct zoc_rpc_method m;
};

static struct {
	struct method_node **v;
	size_t n, cap;
	bool builtins;
} g_methods;

static struct {
	zoc_rpc_config_writer *v;
	size_t n, cap;
} g_writers;

static struct {
	bool running;
	int fd;
	struct zoc_reactor *reactor;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t dev;
	ino_t ino;
	struct rpc_conn *conns;
	unsigned nconns;
} g_srv = {.fd = -1};

static void ensure_builtins(void);
static void conn_close(struct rpc_conn *c);
static void conn_update_events(struct rpc_conn *c);

/* ------------------------------------------------------------------ */
/* Method table                                                       */
/* ------------------------------------------------------------------ */

static size_t type_size(enum zoc_rpc_type t)
{
	switch (t) {
	case ZOC_RPC_STRING:
		return sizeof(const char *);
	case ZOC_RPC_UINT64:
		return sizeof(uint64_t);
	case ZOC_RPC_UINT32:
		return sizeof(uint32_t);
	case ZOC_RPC_UINT16:
		return sizeof(uint16_t);
	case ZOC_RPC_BOOL:
		return sizeof(bool);
	}
	return 0;
}

static const char *type_name(enum zoc_rpc_type t)
{
	switch (t) {
	case ZOC_RPC_STRING:
		return "string";
	case ZOC_RPC_UINT64:
		return "uint64";
	case ZOC_RPC_UINT32:
		return "uint32";
	case ZOC_RPC_UINT16:
		return "uint16";
	case ZOC_RPC_BOOL:
		return "bool";
	}
	return "?";
}

static uint64_t type_max(enum zoc_rpc_type t)
{
	switch (t) {
	case ZOC_RPC_UINT64:
		/* jansson integers are signed 64-bit */
		return (uint64_t)INT64_MAX;
	case ZOC_RPC_UINT32:
		return UINT32_MAX;
	case ZOC_RPC_UINT16:
		return UINT16_MAX;
	default:
		return 0;
	}
}

/* Effective inclusive range of an integer parameter, or length range of a
 * string parameter. */
static void param_range(const struct zoc_rpc_param *p, uint64_t *lo, uint64_t *hi)
{
	uint64_t tmax = p->type == ZOC_RPC_STRING ? ZOC_RPC_STRING_MAX_DEFAULT : type_max(p->type);

	*lo = p->min;
	if (p->type == ZOC_RPC_STRING)
		*hi = p->max ? p->max : tmax;
	else
		*hi = p->max && p->max < tmax ? p->max : tmax;
}

static int method_check(const struct zoc_rpc_method *m)
{
	if (!m || !m->name || !m->name[0] || !m->handler)
		return -EINVAL;
	if (strlen(m->name) > 128 || strncmp(m->name, "rpc.", 4) == 0)
		return -EINVAL; /* "rpc." is reserved by the JSON-RPC spec */
	if (!m->params)
		return 0;
	for (const struct zoc_rpc_param *p = m->params; p->name; p++) {
		size_t sz = type_size(p->type);
		uint64_t lo, hi;

		if (!p->name[0] || sz == 0)
			return -EINVAL;
		if (p->offset > m->params_size || m->params_size - p->offset < sz)
			return -EINVAL;
		param_range(p, &lo, &hi);
		if (p->type != ZOC_RPC_BOOL && lo > hi)
			return -EINVAL;
		for (const struct zoc_rpc_param *q = m->params; q != p; q++)
			if (strcmp(q->name, p->name) == 0)
				return -EINVAL;
	}
	return 0;
}

static int register_nocheck(const struct zoc_rpc_method *m)
{
	struct method_node *node;
	int rc = method_check(m);

	if (rc)
		return rc;
	for (size_t i = 0; i < g_methods.n; i++)
		if (strcmp(g_methods.v[i]->m.name, m->name) == 0)
			return -EEXIST;
	if (g_methods.n == g_methods.cap) {
		size_t cap = g_methods.cap ? g_methods.cap * 2 : 32;
		struct method_node **v = realloc(g_methods.v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		g_methods.v = v;
		g_methods.cap = cap;
	}
	node = calloc(1, sizeof(*node));
	if (!node)
		return -ENOMEM;
	node->m = *m;
	g_methods.v[g_methods.n++] = node;
	return 0;
}

int zoc_rpc_register(const struct zoc_rpc_method *m)
{
	ensure_builtins();
	return register_nocheck(m);
}

const struct zoc_rpc_method *zoc_rpc_find(const char *name)
{
	ensure_builtins();
	if (!name)
		return NULL;
	for (size_t i = 0; i < g_methods.n; i++)
		if (strcmp(g_methods.v[i]->m.name, name) == 0)
			return &g_methods.v[i]->m;
	return NULL;
}

const struct zoc_rpc_method *zoc_rpc_method_at(size_t i)
{
	ensure_builtins();
	return i < g_methods.n ? &g_methods.v[i]->m : NULL;
}

/* ------------------------------------------------------------------ */
/* save_config writers                                                */
/* ------------------------------------------------------------------ */

void zoc_rpc_register_config_writer(zoc_rpc_config_writer fn)
{
	if (!fn)
		return;
	for (size_t i = 0; i < g_writers.n; i++)
		if (g_writers.v[i] == fn)
			return;
	if (g_writers.n == g_writers.cap) {
		size_t cap = g_writers.cap ? g_writers.cap * 2 : 16;
		zoc_rpc_config_writer *v = realloc(g_writers.v, cap * sizeof(*v));

		if (!v) {
			ZOC_ERR("save_config: out of memory registering a config writer");
			return;
		}
		g_writers.v = v;
		g_writers.cap = cap;
	}
	g_writers.v[g_writers.n++] = fn;
}

json_t *zoc_rpc_save_config(void)
{
	json_t *a = json_array();

	if (!a)
		return NULL;
	for (size_t i = 0; i < g_writers.n; i++)
		g_writers.v[i](a);
	return a;
}

/* ------------------------------------------------------------------ */
/* Output                                                             */
/* ------------------------------------------------------------------ */

static void conn_get(struct rpc_conn *c)
{
	c->refs++;
}

static void conn_put(struct rpc_conn *c)
{
	if (--c->refs)
		return;
	free(c->in);
	free(c->out);
	free(c);
}

static int out_reserve(struct rpc_conn *c, size_t add)
{
	size_t need;

	if (c->out_off && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (__builtin_add_overflow(c->out_len, add, &need))
		return -ENOMEM;
	if (need <= c->out_cap)
		return 0;
	/* Reclaim the flushed prefix before growing. */
	if (c->out_off) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
		need = c->out_len + add;
		if (need <= c->out_cap)
			return 0;
	}
	size_t cap = c->out_cap ? c->out_cap : 4096;

	while (cap < need)
		cap *= 2;
	char *p = realloc(c->out, cap);

	if (!p)
		return -ENOMEM;
	c->out = p;
	c->out_cap = cap;
	return 0;
}

/* Writes what the socket takes; arms EPOLLOUT for the rest. */
static void conn_flush(struct rpc_conn *c)
{
	if (c->closed || c->fd < 0)
		return;
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			ZOC_DEBUG("rpc: client fd %d: send: %s", c->fd, strerror(errno));
			conn_close(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	if (c->out_off == c->out_len) {
		c->out_off = c->out_len = 0;
		if (c->want_close || (c->rd_eof && !c->inflight)) {
			conn_close(c);
			return;
		}
	}
	conn_update_events(c);
}

/* Queues one serialized value + "\n" (steals v). */
static void conn_send_json(struct rpc_conn *c, json_t *v)
{
	char *s;
	size_t len;

	if (c->closed) {
		json_decref(v);
		return;
	}
	s = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	if (!s) {
		/* Only on ENOMEM or a value jansson can not encode. */
		s = strdup("{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32603,"
			   "\"message\":\"internal error: cannot encode the response\"}}");
		if (!s) {
			conn_close(c);
			return;
		}
	}
	len = strlen(s);
	if (out_reserve(c, len + 1)) {
		free(s);
		ZOC_ERR_RL("rpc: out of memory queueing a response; closing the connection");
		if (c->fd >= 0)
			conn_close(c);
		return;
	}
	memcpy(c->out + c->out_len, s, len);
	c->out[c->out_len + len] = '\n';
	c->out_len += len + 1;
	free(s);
	conn_flush(c);
}

/* ------------------------------------------------------------------ */
/* Requests and answers                                               */
/* ------------------------------------------------------------------ */

static json_t *make_response(json_t *id, json_t *result, json_t *error)
{
	json_t *r = json_object();

	if (!r) {
		json_decref(result);
		json_decref(error);
		return NULL;
	}
	json_object_set_new(r, "jsonrpc", json_string("2.0"));
	json_object_set_new(r, "id", id ? json_incref(id) : json_null());
	if (error)
		json_object_set_new(r, "error", error);
	else
		json_object_set_new(r, "result", result ? result : json_true());
	return r;
}

static json_t *make_error(int code, const char *msg)
{
	json_t *e = json_object();

	if (!e)
		return NULL;
	json_object_set_new(e, "code", json_integer(code));
	json_object_set_new(e, "message", json_string(msg ? msg : "error"));
	return e;
}

static void batch_put(struct rpc_batch *b)
{
	struct rpc_conn *c = b->conn;

	if (--b->pending)
		return;
	if (json_array_size(b->responses) && !c->closed)
		conn_send_json(c, b->responses);
	else
		json_decref(b->responses);
	free(b);
	c->inflight--;
	if (!c->closed)
		conn_flush(c); /* may close on rd_eof */
	conn_put(c);
}

static void req_free(struct zoc_rpc_req *req)
{
	json_decref(req->request);
	json_decref(req->id);
	json_decref(req->params);
	free(req->pstruct);
	free(req);
}

/* Delivers a response (steals resp; NULL = out of memory) and frees req. */
static void req_finish(struct zoc_rpc_req *req, json_t *resp)
{
	if (req->local) {
		if (req->cb) {
			if (!resp)
				resp = make_response(req->id, NULL,
						     make_error(ZOC_RPC_INTERNAL_ERROR,
								"internal error: out of memory"));
			if (resp)
				req->cb(req->cb_arg, resp);
		}
		json_decref(resp);
	} else if (req->batch) {
		struct rpc_batch *b = req->batch;

		if (resp && !req->notification)
			json_array_append_new(b->responses, resp);
		else
			json_decref(resp);
		batch_put(b);
	} else {
		struct rpc_conn *c = req->conn;

		if (resp && !req->notification && !c->closed)
			conn_send_json(c, resp);
		else
			json_decref(resp);
		c->inflight--;
		if (!c->closed)
			conn_flush(c);
		conn_put(c);
	}
	req_free(req);
}

void zoc_rpc_result(struct zoc_rpc_req *req, json_t *result)
{
	if (!req) {
		json_decref(result);
		return;
	}
	req_finish(req, make_response(req->id, result, NULL));
}

static void req_error_str(struct zoc_rpc_req *req, int code, const char *msg)
{
	if (req->notification)
		ZOC_LOG_RL(ZOC_LOG_INFO, "rpc: notification %s failed (not answered): %s",
			   req->method ? req->method->name : "", msg);
	req_finish(req, make_response(req->id, NULL, make_error(code, msg)));
}

void zoc_rpc_error(struct zoc_rpc_req *req, int code, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;

	if (!req)
		return;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	req_error_str(req, code, msg ? msg : fmt);
	free(msg);
}

json_t *zoc_rpc_params(struct zoc_rpc_req *req)
{
	return req ? req->params : NULL;
}

/* ------------------------------------------------------------------ */
/* Parameter decoding                                                 */
/* ------------------------------------------------------------------ */

/* Appends "name, name, ..." of the table to a fresh string. */
static char *accepted_list(const struct zoc_rpc_param *params)
{
	size_t len = 1;
	char *s;

	for (const struct zoc_rpc_param *p = params; p && p->name; p++)
		len += strlen(p->name) + 2;
	s = malloc(len);
	if (!s)
		return NULL;
	s[0] = '\0';
	for (const struct zoc_rpc_param *p = params; p && p->name; p++) {
		if (s[0])
			strcat(s, ", ");
		strcat(s, p->name);
	}
	return s;
}

/* A bounded, printable copy of a client string, for messages and logs. */
static void shown_copy(char *dst, size_t size, const char *src)
{
	size_t i = 0;

	for (; src[i] && i + 4 < size; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	if (src[i]) {
		memcpy(dst + i, "...", 3);
		i += 3;
	}
	dst[i] = '\0';
}

static void error_unknown_key(struct zoc_rpc_req *req, const struct zoc_rpc_method *m,
			      const char *key)
{
	char *acc = accepted_list(m->params);
	char shown[72];

	shown_copy(shown, sizeof(shown), key);
	if (acc && acc[0])
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "invalid params: unknown parameter '%s' for '%s'; accepted: %s", shown,
			      m->name, acc);
	else
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
			      "invalid params: '%s' takes no parameters (got '%s')", m->name, shown);
	free(acc);
}

static void error_param(struct zoc_rpc_req *req, const struct zoc_rpc_param *p, const char *what)
{
	if (p->help && p->help[0])
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "invalid params: '%s' %s (%s)", p->name,
			      what, p->help);
	else
		zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS, "invalid params: '%s' %s", p->name, what);
}

static void error_param_type(struct zoc_rpc_req *req, const struct zoc_rpc_param *p)
{
	char what[160];
	uint64_t lo, hi;

	param_range(p, &lo, &hi);
	switch (p->type) {
	case ZOC_RPC_STRING:
		if (lo)
			snprintf(what, sizeof(what), "must be a string of %llu to %llu characters",
				 (unsigned long long)lo, (unsigned long long)hi);
		else
			snprintf(what, sizeof(what), "must be a string of at most %llu characters",
				 (unsigned long long)hi);
		break;
	case ZOC_RPC_BOOL:
		snprintf(what, sizeof(what), "must be true or false");
		break;
	default:
		snprintf(what, sizeof(what), "must be an integer in [%llu, %llu]",
			 (unsigned long long)lo, (unsigned long long)hi);
		break;
	}
	error_param(req, p, what);
}

/* Validates req->params against the method's table and fills req->pstruct.
 * Returns 0, or answers the request with an error and returns -EINVAL. */
static int decode_params(struct zoc_rpc_req *req, const struct zoc_rpc_method *m)
{
	const char *key;
	json_t *v;

	if (m->params_size) {
		req->pstruct = calloc(1, m->params_size);
		if (!req->pstruct) {
			zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "internal error: out of memory");
			return -ENOMEM;
		}
	}
	if (!m->params)
		return 0; /* free-form: the handler reads zoc_rpc_params() */

	json_object_foreach(req->params, key, v) {
		const struct zoc_rpc_param *p = m->params;

		while (p->name && strcmp(p->name, key) != 0)
			p++;
		if (!p->name) {
			error_unknown_key(req, m, key);
			return -EINVAL;
		}
	}

	for (const struct zoc_rpc_param *p = m->params; p->name; p++) {
		char *field = (char *)req->pstruct + p->offset;
		uint64_t lo, hi;

		v = json_object_get(req->params, p->name);
		if (!v || json_is_null(v)) {
			if (p->required) {
				if (p->help && p->help[0])
					zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
						      "invalid params: missing required parameter "
						      "'%s' (%s: %s)",
						      p->name, type_name(p->type), p->help);
				else
					zoc_rpc_error(req, ZOC_RPC_INVALID_PARAMS,
						      "invalid params: missing required parameter "
						      "'%s' (%s)",
						      p->name, type_name(p->type));
				return -EINVAL;
			}
			continue;
		}
		param_range(p, &lo, &hi);
		switch (p->type) {
		case ZOC_RPC_STRING: {
			const char *s;
			size_t len;

			if (!json_is_string(v))
				goto bad;
			s = json_string_value(v);
			len = json_string_length(v);
			/* JSON_ALLOW_NUL is never used, but do not rely on it. */
			if (strlen(s) != len || len < lo || len > hi)
				goto bad;
			memcpy(field, &s, sizeof(s));
			break;
		}
		case ZOC_RPC_UINT64:
		case ZOC_RPC_UINT32:
		case ZOC_RPC_UINT16: {
			json_int_t iv;
			uint64_t u;

			if (!json_is_integer(v))
				goto bad;
			iv = json_integer_value(v);
			if (iv < 0)
				goto bad;
			u = (uint64_t)iv;
			if (u < lo || u > hi)
				goto bad;
			if (p->type == ZOC_RPC_UINT64) {
				memcpy(field, &u, sizeof(u));
			} else if (p->type == ZOC_RPC_UINT32) {
				uint32_t u32 = (uint32_t)u;

				memcpy(field, &u32, sizeof(u32));
			} else {
				uint16_t u16 = (uint16_t)u;

				memcpy(field, &u16, sizeof(u16));
			}
			break;
		}
		case ZOC_RPC_BOOL: {
			bool b;

			if (!json_is_boolean(v))
				goto bad;
			b = json_is_true(v);
			memcpy(field, &b, sizeof(b));
			break;
		}
		}
		continue;
bad:
		error_param_type(req, p);
		return -EINVAL;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Dispatch                                                           */
/* ------------------------------------------------------------------ */

static bool id_valid(const json_t *id)
{
	return json_is_string(id) || json_is_number(id) || json_is_null(id);
}

/* Runs one request value. The req is allocated by the caller with its
 * destination set; this answers it (now or through the handler). */
static void dispatch(struct zoc_rpc_req *req, json_t *request, bool strict)
{
	const struct zoc_rpc_method *m;
	const char *key, *name;
	json_t *v, *id, *jv, *params;

	req->request = json_incref(request);
	if (!json_is_object(request)) {
		req_error_str(req, ZOC_RPC_INVALID_REQUEST,
			      "invalid request: a request must be a JSON object with \"jsonrpc\": "
			      "\"2.0\", \"method\", and optional \"params\" and \"id\"");
		return;
	}
	id = json_object_get(request, "id");
	if (id && !id_valid(id)) {
		req_error_str(req, ZOC_RPC_INVALID_REQUEST,
			      "invalid request: \"id\" must be a string, a number or null");
		return;
	}
	req->id = json_incref(id);
	json_object_foreach(request, key, v) {
		if (strcmp(key, "jsonrpc") && strcmp(key, "method") && strcmp(key, "params") &&
		    strcmp(key, "id")) {
			req_error_str(req, ZOC_RPC_INVALID_REQUEST,
				      "invalid request: unknown member in the request object; "
				      "allowed: jsonrpc, method, params, id");
			return;
		}
	}
	jv = json_object_get(request, "jsonrpc");
	if ((strict || jv) && !(json_is_string(jv) && strcmp(json_string_value(jv), "2.0") == 0)) {
		req_error_str(req, ZOC_RPC_INVALID_REQUEST,
			      "invalid request: \"jsonrpc\" must be the string \"2.0\"");
		return;
	}
	v = json_object_get(request, "method");
	if (!json_is_string(v) || !json_string_length(v)) {
		req_error_str(req, ZOC_RPC_INVALID_REQUEST,
			      "invalid request: \"method\" must be a non-empty string");
		return;
	}
	name = json_string_value(v);
	/* From here on a request without "id" is a notification. */
	req->notification = !id && !req->local;

	params = json_object_get(request, "params");
	if (!params || json_is_null(params)) {
		req->params = json_object();
		if (!req->params) {
			req_error_str(req, ZOC_RPC_INTERNAL_ERROR, "internal error: out of memory");
			return;
		}
	} else if (json_is_object(params)) {
		req->params = json_incref(params);
	} else if (json_is_array(params)) {
		req_error_str(req, ZOC_RPC_INVALID_PARAMS,
			      "invalid params: \"params\" must be an object of named parameters; "
			      "positional (array) parameters are not supported");
		return;
	} else {
		req_error_str(req, ZOC_RPC_INVALID_REQUEST,
			      "invalid request: \"params\" must be an object");
		return;
	}

	m = strlen(name) == json_string_length(v) ? zoc_rpc_find(name) : NULL;
	if (!m) {
		char shown[72];

		shown_copy(shown, sizeof(shown), name);
		zoc_rpc_error(req, ZOC_RPC_METHOD_NOT_FOUND,
			      "method '%s' not found; 'rpc_get_methods' lists the methods", shown);
		return;
	}
	req->method = m;
	if (decode_params(req, m))
		return;
	m->handler(req, req->pstruct);
}

static struct zoc_rpc_req *req_new(void)
{
	return calloc(1, sizeof(struct zoc_rpc_req));
}

/* Sends an error that belongs to no request (parse errors, batch shape). */
static void conn_error(struct rpc_conn *c, int code, const char *msg)
{
	json_t *r = make_response(NULL, NULL, make_error(code, msg));

	if (r)
		conn_send_json(c, r);
}

static void dispatch_batch(struct rpc_conn *c, json_t *arr)
{
	struct rpc_batch *b;
	size_t n = json_array_size(arr);

	if (n == 0) {
		conn_error(c, ZOC_RPC_INVALID_REQUEST, "invalid request: empty batch");
		return;
	}
	if (n > ZOC_RPC_MAX_BATCH) {
		char msg[96];

		snprintf(msg, sizeof(msg), "invalid request: batch of %zu requests (at most %u)", n,
			 ZOC_RPC_MAX_BATCH);
		conn_error(c, ZOC_RPC_INVALID_REQUEST, msg);
		return;
	}
	b = calloc(1, sizeof(*b));
	if (!b || !(b->responses = json_array())) {
		free(b);
		conn_error(c, ZOC_RPC_INTERNAL_ERROR, "internal error: out of memory");
		return;
	}
	b->conn = c;
	b->pending = 1;
	conn_get(c);
	c->inflight++;
	for (size_t i = 0; i < n && !c->closed; i++) {
		struct zoc_rpc_req *req = req_new();

		if (!req)
			break;
		req->batch = b;
		b->pending++;
		dispatch(req, json_array_get(arr, i), true);
	}
	batch_put(b);
}

static void dispatch_single(struct rpc_conn *c, json_t *v)
{
	struct zoc_rpc_req *req = req_new();

	if (!req) {
		conn_error(c, ZOC_RPC_INTERNAL_ERROR, "internal error: out of memory");
		return;
	}
	req->conn = c;
	conn_get(c);
	c->inflight++;
	dispatch(req, v, true);
}

int zoc_rpc_call_local(json_t *request, zoc_rpc_local_cb cb, void *arg)
{
	struct zoc_rpc_req *req;

	if (!request)
		return -EINVAL;
	ensure_builtins();
	req = req_new();
	if (!req)
		return -ENOMEM;
	req->local = true;
	req->cb = cb;
	req->cb_arg = arg;
	dispatch(req, request, false);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Framing                                                            */
/* ------------------------------------------------------------------ */

static bool is_ws(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* Finds the next complete top-level value in the input.
 * 1: [*start, *end) is one; 0: need more bytes; -1: garbage at *start. */
static int scan_next(struct rpc_conn *c, size_t *start, size_t *end)
{
	size_t i = c->scan;

	if (c->vstart == SIZE_MAX) {
		while (i < c->in_len && is_ws(c->in[i]))
			i++;
		c->in_off = i; /* whitespace is consumed */
		if (i == c->in_len) {
			c->scan = i;
			return 0;
		}
		if (c->in[i] != '{' && c->in[i] != '[') {
			*start = i;
			return -1;
		}
		c->vstart = i;
		c->depth = 1;
		c->in_str = c->esc = false;
		i++;
	}
	for (; i < c->in_len; i++) {
		char ch = c->in[i];

		if (c->in_str) {
			if (c->esc)
				c->esc = false;
			else if (ch == '\\')
				c->esc = true;
			else if (ch == '"')
				c->in_str = false;
			continue;
		}
		if (ch == '"') {
			c->in_str = true;
		} else if (ch == '{' || ch == '[') {
			c->depth++;
		} else if (ch == '}' || ch == ']') {
			if (--c->depth == 0) {
				*start = c->vstart;
				*end = i + 1;
				c->vstart = SIZE_MAX;
				c->scan = i + 1;
				c->in_off = i + 1;
				return 1;
			}
		}
	}
	c->scan = i;
	return 0;
}

static void framing_error(struct rpc_conn *c, const char *msg)
{
	ZOC_WARN_RL("rpc: client fd %d: %s; closing the connection", c->fd, msg);
	conn_error(c, ZOC_RPC_PARSE_ERROR, msg);
	c->want_close = true;
	c->in_len = c->in_off = c->scan = 0;
	c->vstart = SIZE_MAX;
	if (!c->closed)
		conn_flush(c);
}

static void handle_value(struct rpc_conn *c, const char *buf, size_t len)
{
	json_error_t err;
	json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);

	if (!v) {
		char msg[JSON_ERROR_TEXT_LENGTH + 96];

		snprintf(msg, sizeof(msg), "parse error: %s (line %d, column %d)", err.text,
			 err.line, err.column);
		ZOC_LOG_RL(ZOC_LOG_INFO, "rpc: client fd %d: %s", c->fd, msg);
		conn_error(c, ZOC_RPC_PARSE_ERROR, msg);
		return;
	}
	if (json_is_array(v))
		dispatch_batch(c, v);
	else
		dispatch_single(c, v);
	json_decref(v);
}

/* Consumes every complete value in the input buffer. */
static void conn_process(struct rpc_conn *c)
{
	size_t start, end;

	conn_get(c);
	while (!c->closed && !c->want_close) {
		int rc = scan_next(c, &start, &end);

		if (rc == 0)
			break;
		if (rc < 0) {
			char msg[128];
			unsigned char ch = (unsigned char)c->in[start];

			if (ch >= 0x20 && ch < 0x7f)
				snprintf(msg, sizeof(msg),
					 "parse error: expected '{' or '[' to start a request, got '%c'",
					 ch);
			else
				snprintf(msg, sizeof(msg),
					 "parse error: expected '{' or '[' to start a request, got "
					 "byte 0x%02x",
					 ch);
			framing_error(c, msg);
			break;
		}
		handle_value(c, c->in + start, end - start);
	}
	if (!c->closed && !c->want_close) {
		if (c->vstart != SIZE_MAX && c->in_len - c->vstart > ZOC_RPC_MAX_REQUEST) {
			framing_error(c, "parse error: request too large (a single JSON value may not "
					 "exceed 1048576 bytes)");
		} else if (c->in_off) {
			/* Drop consumed bytes; keep offsets relative. */
			size_t off = c->in_off;

			memmove(c->in, c->in + off, c->in_len - off);
			c->in_len -= off;
			c->scan -= off;
			if (c->vstart != SIZE_MAX)
				c->vstart -= off;
			c->in_off = 0;
		}
	}
	conn_put(c);
}

/* Appends bytes to the input (what a read would do). -ENOMEM or 0. */
static int in_reserve(struct rpc_conn *c, size_t add)
{
	size_t need = c->in_len + add;

	if (need <= c->in_cap)
		return 0;
	size_t cap = c->in_cap ? c->in_cap : 4096;

	while (cap < need)
		cap *= 2;
	char *p = realloc(c->in, cap);

	if (!p)
		return -ENOMEM;
	c->in = p;
	c->in_cap = cap;
	return 0;
}

static struct rpc_conn *conn_new(int fd)
{
	struct rpc_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = fd;
	c->refs = 1;
	c->vstart = SIZE_MAX;
	return c;
}

/* ------------------------------------------------------------------ */
/* Socket connections                                                 */
/* ------------------------------------------------------------------ */

static void conn_update_events(struct rpc_conn *c)
{
	uint32_t ev = 0;

	if (c->closed || c->fd < 0)
		return;
	if (!c->rd_eof && !c->want_close && c->out_len - c->out_off < ZOC_RPC_OUT_HIGH &&
	    c->inflight < ZOC_RPC_MAX_INFLIGHT)
		ev |= EPOLLIN;
	if (c->out_off < c->out_len)
		ev |= EPOLLOUT;
	if (ev == c->events)
		return;
	if (zoc_reactor_mod_fd(g_srv.reactor, c->fd, ev) == 0)
		c->events = ev;
}

/* Closes the socket now; the struct lives until the last request is
 * answered. Answers arriving later are dropped. */
static void conn_close(struct rpc_conn *c)
{
	if (c->closed)
		return;
	c->closed = true;
	if (c->fd >= 0) {
		zoc_reactor_del_fd(g_srv.reactor, c->fd);
		close(c->fd);
		ZOC_DEBUG("rpc: client fd %d closed", c->fd);
		c->fd = -1;
		if (c->prev)
			c->prev->next = c->next;
		else
			g_srv.conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
		g_srv.nconns--;
	}
	conn_put(c); /* the reference of the server list / the owner */
}

static void conn_read(struct rpc_conn *c)
{
	size_t budget = ZOC_RPC_READ_BUDGET;

	while (budget && !c->closed && !c->rd_eof && !c->want_close) {
		size_t want = ZOC_MIN((size_t)ZOC_RPC_READ_CHUNK, budget);
		ssize_t n;

		if (in_reserve(c, want)) {
			ZOC_ERR_RL("rpc: out of memory reading a request; closing the connection");
			conn_close(c);
			return;
		}
		n = recv(c->fd, c->in + c->in_len, want, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			ZOC_DEBUG("rpc: client fd %d: recv: %s", c->fd, strerror(errno));
			conn_close(c);
			return;
		}
		if (n == 0) {
			c->rd_eof = true;
			break;
		}
		c->in_len += (size_t)n;
		budget -= (size_t)n;
		conn_process(c);
		/* Back-pressure: stop if the client does not read answers. */
		if (c->out_len - c->out_off >= ZOC_RPC_OUT_HIGH || c->inflight >= ZOC_RPC_MAX_INFLIGHT)
			break;
	}
}

static void conn_event(void *arg, uint32_t events)
{
	struct rpc_conn *c = arg;

	if (c->closed)
		return;
	conn_get(c);
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		conn_read(c);
	if (!c->closed && (events & (EPOLLHUP | EPOLLERR)) && (c->rd_eof || (events & EPOLLERR))) {
		/* The peer is gone in both directions: nobody reads answers. */
		conn_close(c);
	}
	if (!c->closed) {
		if (c->rd_eof && c->vstart != SIZE_MAX && c->in_len > c->vstart)
			ZOC_DEBUG("rpc: client fd %d: incomplete request at end of stream", c->fd);
		conn_flush(c); /* writes, updates events, closes on EOF when done */
	}
	conn_put(c);
}

static bool peer_allowed(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	return cred.uid == 0 || cred.uid == geteuid();
}

static void listen_event(void *arg, uint32_t events)
{
	for (int i = 0; i < 16 && g_srv.running; i++) {
		int fd = accept4(g_srv.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct rpc_conn *c;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				ZOC_WARN_RL("rpc: accept on %s: %s", g_srv.path, strerror(errno));
			return;
		}
		if (!peer_allowed(fd)) {
			ZOC_WARN_RL("rpc: refusing a client of another user on %s", g_srv.path);
			close(fd);
			continue;
		}
		if (g_srv.nconns >= ZOC_RPC_MAX_CONNS) {
			ZOC_WARN_RL("rpc: %u clients connected, refusing another", g_srv.nconns);
			close(fd);
			continue;
		}
		c = conn_new(fd);
		if (!c || zoc_reactor_add_fd(g_srv.reactor, fd, EPOLLIN, conn_event, c)) {
			ZOC_ERR_RL("rpc: cannot set up a client connection");
			free(c);
			close(fd);
			continue;
		}
		c->events = EPOLLIN;
		c->next = g_srv.conns;
		if (g_srv.conns)
			g_srv.conns->prev = c;
		g_srv.conns = c;
		g_srv.nconns++;
		ZOC_DEBUG("rpc: client fd %d connected", fd);
	}
}

/* Creates missing directories of path's parent, each 0700. */
static int make_parents(const char *path)
{
	char dir[sizeof(g_srv.path)];
	size_t len = strlen(path);

	if (len >= sizeof(dir))
		return -ENAMETOOLONG;
	memcpy(dir, path, len + 1);
	char *slash = strrchr(dir, '/');

	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;

		*p = '\0';
		if (mkdir(dir, 0700) == 0) {
			/* umask may have removed bits we want; never add others */
			if (chmod(dir, 0700) < 0) {
				int err = -errno;

				ZOC_ERR("rpc: chmod 0700 %s: %s", dir, strerror(errno));
				return err;
			}
			ZOC_INFO("rpc: created directory %s (0700)", dir);
		} else if (errno != EEXIST) {
			int err = -errno;

			ZOC_ERR("rpc: cannot create directory %s: %s", dir, strerror(errno));
			return err;
		}
		*p = saved;
		if (!saved)
			break;
	}
	return 0;
}

/* Removes a stale socket at path; refuses if something answers there or if
 * it is not a socket. */
static int clear_stale(const char *path, const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		ZOC_ERR("rpc: %s exists and is not a socket; refusing to replace it", path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	if (rc == 0) {
		close(fd);
		ZOC_ERR("rpc: another process (zocd?) is listening on %s; "
			"stop it or choose another --rpc path",
			path);
		return -EADDRINUSE;
	}
	rc = errno;
	close(fd);
	if (rc != ECONNREFUSED) {
		ZOC_ERR("rpc: cannot probe existing socket %s: %s", path, strerror(rc));
		return -rc;
	}
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	ZOC_INFO("rpc: removed stale socket %s", path);
	return 0;
}

int zoc_rpc_server_start(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	mode_t old_umask;
	int fd, rc;

	ensure_builtins();
	if (g_srv.running)
		return -EBUSY;
	if (!path || !path[0])
		path = ZOC_RPC_DEFAULT_SOCKET;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		ZOC_ERR("rpc: socket path too long (max %zu bytes): %s", sizeof(sa.sun_path) - 1,
			path);
		return -ENAMETOOLONG;
	}
	g_srv.reactor = zoc_reactor_get(0);
	if (!g_srv.reactor) {
		ZOC_ERR("rpc: reactors are not initialised");
		return -EINVAL;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	rc = make_parents(path);
	if (rc)
		return rc;
	rc = clear_stale(path, &sa);
	if (rc)
		return rc;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* The socket file must never exist with more than 0600, even briefly. */
	old_umask = umask(0177);
	rc = bind(fd, (const struct sockaddr *)&sa, sizeof(sa));
	umask(old_umask);
	if (rc < 0) {
		rc = -errno;
		ZOC_ERR("rpc: bind %s: %s", path, strerror(errno));
		close(fd);
		return rc;
	}
	if (chmod(path, 0600) < 0 || stat(path, &st) < 0) {
		rc = -errno;
		ZOC_ERR("rpc: chmod 0600 %s: %s", path, strerror(errno));
		goto fail_unlink;
	}
	if (listen(fd, 64) < 0) {
		rc = -errno;
		ZOC_ERR("rpc: listen %s: %s", path, strerror(errno));
		goto fail_unlink;
	}
	rc = zoc_reactor_add_fd(g_srv.reactor, fd, EPOLLIN, listen_event, NULL);
	if (rc) {
		ZOC_ERR("rpc: cannot watch %s: %s", path, strerror(-rc));
		goto fail_unlink;
	}
	g_srv.fd = fd;
	g_srv.dev = st.st_dev;
	g_srv.ino = st.st_ino;
	memcpy(g_srv.path, path, strlen(path) + 1);
	g_srv.running = true;
	ZOC_INFO("rpc: listening on %s", path);
	return 0;

fail_unlink:
	unlink(path);
	close(fd);
	return rc;
}

void zoc_rpc_server_stop(void)
{
	struct stat st;

	if (!g_srv.running)
		return;
	g_srv.running = false;
	zoc_reactor_del_fd(g_srv.reactor, g_srv.fd);
	close(g_srv.fd);
	g_srv.fd = -1;
	while (g_srv.conns)
		conn_close(g_srv.conns);
	/* Remove the socket only if it is still ours (not a successor's). */
	if (stat(g_srv.path, &st) == 0 && st.st_dev == g_srv.dev && st.st_ino == g_srv.ino)
		unlink(g_srv.path);
	ZOC_INFO("rpc: stopped listening on %s", g_srv.path);
}

/* ------------------------------------------------------------------ */
/* Buffer mode (fuzzer, tests)                                        */
/* ------------------------------------------------------------------ */

char *zoc_rpc_process_buffer(const char *buf, size_t len)
{
	struct rpc_conn *c;
	char *res = NULL;
	size_t off = 0;

	ensure_builtins();
	c = conn_new(-1);
	if (!c)
		return NULL;
	/* Feed in read-sized chunks, like a socket would. */
	while (off < len && !c->want_close && !c->closed) {
		size_t n = ZOC_MIN(len - off, (size_t)ZOC_RPC_READ_CHUNK);

		if (in_reserve(c, n))
			break;
		memcpy(c->in + c->in_len, buf + off, n);
		c->in_len += n;
		off += n;
		conn_process(c);
	}
	res = malloc(c->out_len - c->out_off + 1);
	if (res) {
		if (c->out_len > c->out_off)
			memcpy(res, c->out + c->out_off, c->out_len - c->out_off);
		res[c->out_len - c->out_off] = '\0';
	}
	conn_close(c); /* requests still pending keep it until answered */
	return res;
}

/* ------------------------------------------------------------------ */
/* Built-in methods                                                   */
/* ------------------------------------------------------------------ */

static json_t *describe_method(const struct zoc_rpc_method *m)
{
	json_t *o = json_object();
	json_t *ps;

	if (!o)
		return NULL;
	json_object_set_new(o, "name", json_string(m->name));
	json_object_set_new(o, "help", json_string(m->help ? m->help : ""));
	if (!m->params) {
		json_object_set_new(o, "free_form", json_true());
		return o;
	}
	ps = json_array();
	for (const struct zoc_rpc_param *p = m->params; ps && p->name; p++) {
		json_t *po = json_object();
		uint64_t lo, hi;

		if (!po)
			break;
		param_range(p, &lo, &hi);
		json_object_set_new(po, "name", json_string(p->name));
		json_object_set_new(po, "type", json_string(type_name(p->type)));
		json_object_set_new(po, "required", json_boolean(p->required));
		if (p->type != ZOC_RPC_BOOL) {
			json_object_set_new(po, "min", json_integer((json_int_t)lo));
			json_object_set_new(po, "max", json_integer((json_int_t)hi));
		}
		json_object_set_new(po, "help", json_string(p->help ? p->help : ""));
		json_array_append_new(ps, po);
	}
	json_object_set_new(o, "params", ps ? ps : json_array());
	return o;
}

static void rpc_get_methods(struct zoc_rpc_req *req, void *params)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < g_methods.n; i++)
		json_array_append_new(a, describe_method(&g_methods.v[i]->m));
	if (!a) {
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "internal error: out of memory");
		return;
	}
	zoc_rpc_result(req, a);
}

static void rpc_save_config(struct zoc_rpc_req *req, void *params)
{
	json_t *a = zoc_rpc_save_config();

	if (!a) {
		zoc_rpc_error(req, ZOC_RPC_INTERNAL_ERROR, "internal error: out of memory");
		return;
	}
	zoc_rpc_result(req, a);
}

static const struct zoc_rpc_param g_no_params[] = {{NULL}};

static void ensure_builtins(void)
{
	static const struct zoc_rpc_method builtins[] = {
		{
			.name = "rpc_get_methods",
			.handler = rpc_get_methods,
			.params = g_no_params,
			.help = "list the methods this zocd knows, with their parameters",
		},
		{
			.name = "save_config",
			.handler = rpc_save_config,
			.params = g_no_params,
			.help = "return the running configuration as a JSON array that "
				"'zocd --config' replays",
		},
	};

	if (g_methods.builtins)
		return;
	g_methods.builtins = true;
	for (size_t i = 0; i < ZOC_ARRAY_SIZE(builtins); i++)
		if (register_nocheck(&builtins[i]))
			ZOC_ERR("rpc: cannot register built-in method %s", builtins[i].name);
}
