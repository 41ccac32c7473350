/* SPDX-License-Identifier: MIT */
/* test_jsonrpc.c - JSON-RPC server: params, framing, errors, async, socket. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/reactor.h"
#include "ctl/jsonrpc.h"

/* ---------------------------------------------------------------- */
/* Test methods                                                     */
/* ---------------------------------------------------------------- */

struct create_params {
	const char *name;
	uint64_t size_mb;
	uint32_t block_size;
	uint16_t queues;
	bool readonly;
};

static const struct zoc_rpc_param create_table[] = {
	{"name", ZOC_RPC_STRING, offsetof(struct create_params, name), true, 1, 32, "bdev name"},
	{"size_mb", ZOC_RPC_UINT64, offsetof(struct create_params, size_mb), true, 1, 1048576,
	 "size of the null bdev in MiB"},
	{"block_size", ZOC_RPC_UINT32, offsetof(struct create_params, block_size), false, 512, 4096,
	 NULL},
	{"queues", ZOC_RPC_UINT16, offsetof(struct create_params, queues), false, 0, 0, "queues"},
	{"readonly", ZOC_RPC_BOOL, offsetof(struct create_params, readonly), false, 0, 0, NULL},
	{NULL},
};

static void h_create(struct zoc_rpc_req *req, void *params)
{
	struct create_params *p = params;

	zoc_rpc_result(req, json_pack("{s:s?, s:I, s:I, s:I, s:b}", "name", p->name, "size_mb",
				      (json_int_t)p->size_mb, "block_size",
				      (json_int_t)p->block_size, "queues", (json_int_t)p->queues,
				      "readonly", p->readonly));
}

static const struct zoc_rpc_param no_params[] = {{NULL}};

static void h_ping(struct zoc_rpc_req *req, void *params)
{
	assert_null(params);
	zoc_rpc_result(req, NULL);
}

static void h_free(struct zoc_rpc_req *req, void *params)
{
	zoc_rpc_result(req, json_deep_copy(zoc_rpc_params(req)));
}

static void h_fail(struct zoc_rpc_req *req, void *params)
{
	zoc_rpc_error(req, -32000, "bdev %s is busy", "x");
}

/* Asynchronous: kept until the test answers. */
#define MAX_PENDING 16
static struct zoc_rpc_req *g_pending[MAX_PENDING];
static unsigned g_npending;
static int g_handler_calls;

struct async_params {
	const char *tag;
};

static const struct zoc_rpc_param async_table[] = {
	{"tag", ZOC_RPC_STRING, offsetof(struct async_params, tag), false, 0, 0, NULL},
	{NULL},
};

static void h_async(struct zoc_rpc_req *req, void *params)
{
	g_handler_calls++;
	assert_true(g_npending < MAX_PENDING);
	g_pending[g_npending++] = req;
}

static void answer_pending(void)
{
	for (unsigned i = 0; i < g_npending; i++)
		zoc_rpc_result(g_pending[i], json_string("done"));
	g_npending = 0;
}

static int g_writer_calls;

static void writer_a(json_t *array)
{
	g_writer_calls++;
	json_array_append_new(array, json_pack("{s:s, s:{s:s, s:i}}", "method",
					       "test_create", "params", "name", "a", "size_mb", 1));
}

static void writer_b(json_t *array)
{
	json_array_append_new(array, json_pack("{s:s, s:{s:s}}", "method", "test_async",
					       "params", "tag", "b"));
}

static const struct zoc_rpc_method g_methods[] = {
	{"test_create", h_create, create_table, sizeof(struct create_params), "create a thing"},
	{"test_ping", h_ping, no_params, 0, "answers true"},
	{"test_free", h_free, NULL, 0, "echoes its params"},
	{"test_fail", h_fail, no_params, 0, "always fails"},
	{"test_async", h_async, async_table, sizeof(struct async_params), "answers later"},
};

static int group_setup(void **state)
{
	for (size_t i = 0; i < sizeof(g_methods) / sizeof(g_methods[0]); i++)
		if (zoc_rpc_register(&g_methods[i]) != 0)
			return -1;
	zoc_rpc_register_config_writer(writer_a);
	zoc_rpc_register_config_writer(writer_b);
	return 0;
}

/* ---------------------------------------------------------------- */
/* Helpers                                                          */
/* ---------------------------------------------------------------- */

/* Runs raw input, returns the responses (one per line) as an array. */
static json_t *run_raw(const char *in, size_t len)
{
	char *out = zoc_rpc_process_buffer(in, len);
	json_t *a = json_array();
	char *line, *save = NULL;

	assert_non_null(out);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_error_t err;
		json_t *v = json_loads(line, 0, &err);

		if (!v)
			fail_msg("response is not JSON: %s (%s)", line, err.text);
		json_array_append_new(a, v);
	}
	free(out);
	return a;
}

static json_t *run(const char *in)
{
	return run_raw(in, strlen(in));
}

/* Runs one request and returns its only response (caller decrefs). */
static json_t *run1(const char *in)
{
	json_t *a = run(in);
	json_t *r;

	if (json_array_size(a) != 1)
		fail_msg("expected one response to %s, got %zu", in, json_array_size(a));
	r = json_incref(json_array_get(a, 0));
	json_decref(a);
	return r;
}

static int err_code(const json_t *resp)
{
	json_t *e = json_object_get(resp, "error");

	if (!e)
		return 0;
	return (int)json_integer_value(json_object_get(e, "code"));
}

static const char *err_msg(const json_t *resp)
{
	return json_string_value(json_object_get(json_object_get(resp, "error"), "message"));
}

static void expect_error(const char *in, int code, const char *msg_part)
{
	json_t *r = run1(in);

	if (err_code(r) != code)
		fail_msg("%s: expected error %d, got %s", in, code, json_dumps(r, JSON_COMPACT));
	if (msg_part && !strstr(err_msg(r), msg_part))
		fail_msg("%s: message '%s' lacks '%s'", in, err_msg(r), msg_part);
	assert_true(json_object_get(r, "result") == NULL);
	assert_string_equal(json_string_value(json_object_get(r, "jsonrpc")), "2.0");
	json_decref(r);
}

#define REQ(method, params) "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"" method "\",\"params\":" params "}"

/* ---------------------------------------------------------------- */
/* Parameter decoding                                               */
/* ---------------------------------------------------------------- */

static void test_params_ok(void **state)
{
	json_t *r = run1(REQ("test_create", "{\"name\":\"n0\",\"size_mb\":1048576,\"block_size\":4096,"
					    "\"queues\":65535,\"readonly\":true}"));
	json_t *res = json_object_get(r, "result");

	assert_non_null(res);
	assert_string_equal(json_string_value(json_object_get(res, "name")), "n0");
	assert_int_equal(json_integer_value(json_object_get(res, "size_mb")), 1048576);
	assert_int_equal(json_integer_value(json_object_get(res, "block_size")), 4096);
	assert_int_equal(json_integer_value(json_object_get(res, "queues")), 65535);
	assert_true(json_is_true(json_object_get(res, "readonly")));
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 1);
	json_decref(r);
}

static void test_params_optional_zero(void **state)
{
	/* null counts as omitted */
	json_t *r = run1(REQ("test_create", "{\"name\":\"n\",\"size_mb\":1,\"queues\":null}"));
	json_t *res = json_object_get(r, "result");

	assert_non_null(res);
	assert_int_equal(json_integer_value(json_object_get(res, "block_size")), 0);
	assert_int_equal(json_integer_value(json_object_get(res, "queues")), 0);
	assert_true(json_is_false(json_object_get(res, "readonly")));
	json_decref(r);
}

static void test_params_ranges(void **state)
{
	json_t *r = run1(REQ("test_create", "{\"name\":\"n\",\"size_mb\":0}"));

	assert_int_equal(err_code(r), ZOC_RPC_INVALID_PARAMS);
	assert_string_equal(err_msg(r), "invalid params: 'size_mb' must be an integer in [1, "
					"1048576] (size of the null bdev in MiB)");
	json_decref(r);
	expect_error(REQ("test_create", "{\"name\":\"n\",\"size_mb\":1048577}"),
		     ZOC_RPC_INVALID_PARAMS, "'size_mb' must be an integer in [1, 1048576]");
	expect_error(REQ("test_create", "{\"name\":\"n\",\"size_mb\":-1}"), ZOC_RPC_INVALID_PARAMS,
		     "'size_mb'");
	expect_error(REQ("test_create", "{\"name\":\"n\",\"size_mb\":\"5\"}"),
		     ZOC_RPC_INVALID_PARAMS, "'size_mb' must be an integer");
	expect_error(REQ("test_create", "{\"name\":\"n\",\"size_mb\":1.5}"), ZOC_RPC_INVALID_PARAMS,
		     "'size_mb' must be an integer");
	expect_error(REQ("test_create", "{\"name\":\"n\",\"size_mb\":1,\"block_size\":511}"),
		     ZOC_RPC_INVALID_PARAMS, "'block_size' must be an integer in [512, 4096]");
	expect_error(REQ("test_create", "{\"name\":\"n\",\"size_mb\":1,\"queues\":65536}"),
		     ZOC_RPC_INVALID_PARAMS, "'queues' must be an integer in [0, 65535] (queues)");
	expect_error(REQ("test_create", "{\"name\":\"n\",\"size_mb\":1,\"readonly\":1}"),
		     ZOC_RPC_INVALID_PARAMS, "'readonly' must be true or false");
	expect_error(REQ("test_create", "{\"name\":5,\"size_mb\":1}"), ZOC_RPC_INVALID_PARAMS,
		     "'name' must be a string of 1 to 32 characters (bdev name)");
}

static void test_params_string_length(void **state)
{
	json_t *r;

	r = run1(REQ("test_create", "{\"name\":\"01234567890123456789012345678901\",\"size_mb\":1}"));
	assert_non_null(json_object_get(r, "result"));
	json_decref(r);
	expect_error(REQ("test_create", "{\"name\":\"012345678901234567890123456789012\",\"size_mb\":1}"),
		     ZOC_RPC_INVALID_PARAMS, "'name' must be a string of 1 to 32 characters");
	expect_error(REQ("test_create", "{\"name\":\"\",\"size_mb\":1}"), ZOC_RPC_INVALID_PARAMS,
		     "'name'");
	/* embedded NUL is a parse error in jansson's default mode */
	expect_error(REQ("test_create", "{\"name\":\"a\\u0000b\",\"size_mb\":1}"),
		     ZOC_RPC_PARSE_ERROR, NULL);
}

static void test_params_required_unknown(void **state)
{
	expect_error(REQ("test_create", "{\"size_mb\":1}"), ZOC_RPC_INVALID_PARAMS,
		     "missing required parameter 'name' (string: bdev name)");
	expect_error(REQ("test_create", "{\"name\":\"n\",\"size_mb\":1,\"colour\":\"red\"}"),
		     ZOC_RPC_INVALID_PARAMS,
		     "unknown parameter 'colour' for 'test_create'; accepted: name, size_mb, "
		     "block_size, queues, readonly");
	expect_error(REQ("test_ping", "{\"x\":1}"), ZOC_RPC_INVALID_PARAMS,
		     "'test_ping' takes no parameters (got 'x')");
	/* params omitted = {} */
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"test_create\"}",
		     ZOC_RPC_INVALID_PARAMS, "missing required parameter 'name'");
	json_t *r = run1("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"test_ping\"}");

	assert_true(json_is_true(json_object_get(r, "result")));
	json_decref(r);
	expect_error(REQ("test_create", "[\"n\",1]"), ZOC_RPC_INVALID_PARAMS,
		     "must be an object of named parameters");
	expect_error(REQ("test_create", "5"), ZOC_RPC_INVALID_REQUEST, "\"params\"");
}

static void test_params_free_form(void **state)
{
	json_t *r = run1(REQ("test_free", "{\"anything\":[1,2],\"x\":{}}"));
	json_t *res = json_object_get(r, "result");

	assert_non_null(res);
	assert_int_equal(json_array_size(json_object_get(res, "anything")), 2);
	json_decref(r);
}

static void test_register(void **state)
{
	struct zoc_rpc_param bad_off[] = {
		{"x", ZOC_RPC_UINT64, 4, true, 0, 0, NULL},
		{NULL},
	};
	struct zoc_rpc_param bad_range[] = {
		{"x", ZOC_RPC_UINT32, 0, true, 10, 5, NULL},
		{NULL},
	};
	struct zoc_rpc_param dup[] = {
		{"x", ZOC_RPC_BOOL, 0, true, 0, 0, NULL},
		{"x", ZOC_RPC_BOOL, 0, true, 0, 0, NULL},
		{NULL},
	};
	struct zoc_rpc_method m = {"test_bad", h_ping, bad_off, 8, NULL};

	assert_int_equal(zoc_rpc_register(&g_methods[0]), -EEXIST);
	assert_int_equal(zoc_rpc_register(&m), -EINVAL);
	m.params = bad_range;
	assert_int_equal(zoc_rpc_register(&m), -EINVAL);
	m.params = dup;
	assert_int_equal(zoc_rpc_register(&m), -EINVAL);
	m.params = NULL;
	m.handler = NULL;
	assert_int_equal(zoc_rpc_register(&m), -EINVAL);
	m.handler = h_ping;
	m.name = "rpc.reserved";
	assert_int_equal(zoc_rpc_register(&m), -EINVAL);
	assert_null(zoc_rpc_find("test_bad"));
	assert_non_null(zoc_rpc_find("test_create"));
	/* built-ins come first, then registration order */
	assert_string_equal(zoc_rpc_method_at(0)->name, "rpc_get_methods");
	assert_string_equal(zoc_rpc_method_at(1)->name, "save_config");
	assert_string_equal(zoc_rpc_method_at(2)->name, "test_create");
	assert_null(zoc_rpc_method_at(1000));
}

/* ---------------------------------------------------------------- */
/* Framing                                                          */
/* ---------------------------------------------------------------- */

static void test_framing_back_to_back(void **state)
{
	/* no separator, braces and escapes inside strings */
	json_t *a = run("{\"jsonrpc\":\"2.0\",\"id\":\"a}\",\"method\":\"test_create\",\"params\":"
			"{\"name\":\"x\\\"}{[\",\"size_mb\":2}}"
			"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"test_ping\"}\n \t\r\n");

	assert_int_equal(json_array_size(a), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "id")), "a}");
	assert_string_equal(json_string_value(json_object_get(
				    json_object_get(json_array_get(a, 0), "result"), "name")),
			    "x\"}{[");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 1), "id")), 2);
	json_decref(a);
}

static void test_framing_garbage(void **state)
{
	/* bytes that cannot start a request: one error, rest ignored */
	json_t *a = run("hello {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"test_ping\"}");

	assert_int_equal(json_array_size(a), 1);
	assert_int_equal(err_code(json_array_get(a, 0)), ZOC_RPC_PARSE_ERROR);
	assert_true(json_is_null(json_object_get(json_array_get(a, 0), "id")));
	assert_non_null(strstr(err_msg(json_array_get(a, 0)), "got 'h'"));
	json_decref(a);

	/* invalid JSON inside balanced brackets: error, stream continues */
	a = run("{\"a\": }{\"a\" 1}{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"test_ping\"}");
	assert_int_equal(json_array_size(a), 3);
	assert_int_equal(err_code(json_array_get(a, 0)), ZOC_RPC_PARSE_ERROR);
	assert_int_equal(err_code(json_array_get(a, 1)), ZOC_RPC_PARSE_ERROR);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 2), "id")), 3);
	json_decref(a);

	/* duplicate keys */
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"test_ping\"}",
		     ZOC_RPC_PARSE_ERROR, "duplicate");
	/* incomplete value at the end: nothing, no crash */
	a = run("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"test_pi");
	assert_int_equal(json_array_size(a), 0);
	json_decref(a);
	/* empty input */
	a = run_raw("", 0);
	assert_int_equal(json_array_size(a), 0);
	json_decref(a);
}

static void test_framing_too_large(void **state)
{
	size_t len = (1u << 20) + 4096;
	char *big = malloc(len);
	json_t *a;

	memset(big, 'x', len);
	memcpy(big, "{\"a\":\"", 6);
	a = run_raw(big, len);
	assert_int_equal(json_array_size(a), 1);
	assert_int_equal(err_code(json_array_get(a, 0)), ZOC_RPC_PARSE_ERROR);
	assert_non_null(strstr(err_msg(json_array_get(a, 0)), "too large"));
	json_decref(a);

	/* just under the limit is fine (and answered) */
	len = (1u << 20) - 200;
	big = realloc(big, len + 1);
	int n = snprintf(big, len, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"test_free\","
				   "\"params\":{\"s\":\"");
	memset(big + n, 'y', len - (size_t)n - 3);
	memcpy(big + len - 3, "\"}}", 3);
	a = run_raw(big, len);
	assert_int_equal(json_array_size(a), 1);
	assert_int_equal(err_code(json_array_get(a, 0)), 0);
	json_decref(a);
	free(big);
}

static void test_batch(void **state)
{
	json_t *a = run("[" REQ("test_ping", "{}") ","
			"{\"jsonrpc\":\"2.0\",\"method\":\"test_ping\"},"
			"{\"jsonrpc\":\"2.0\",\"id\":\"b\",\"method\":\"nope\"},"
			"1]");
	json_t *b;

	assert_int_equal(json_array_size(a), 1);
	b = json_array_get(a, 0);
	assert_true(json_is_array(b));
	assert_int_equal(json_array_size(b), 3); /* notification: no entry */
	assert_true(json_is_true(json_object_get(json_array_get(b, 0), "result")));
	assert_int_equal(err_code(json_array_get(b, 1)), ZOC_RPC_METHOD_NOT_FOUND);
	assert_string_equal(json_string_value(json_object_get(json_array_get(b, 1), "id")), "b");
	assert_int_equal(err_code(json_array_get(b, 2)), ZOC_RPC_INVALID_REQUEST);
	json_decref(a);

	/* empty batch: one invalid request, not an array */
	expect_error("[]", ZOC_RPC_INVALID_REQUEST, "empty batch");
	expect_error(" [ ] ", ZOC_RPC_INVALID_REQUEST, "empty batch");

	/* only notifications: nothing at all */
	a = run("[{\"jsonrpc\":\"2.0\",\"method\":\"test_ping\"},"
		"{\"jsonrpc\":\"2.0\",\"method\":\"nope\"}]");
	assert_int_equal(json_array_size(a), 0);
	json_decref(a);

	/* invalid entries: one error each */
	a = run("[1,[],\"x\"]");
	assert_int_equal(json_array_size(json_array_get(a, 0)), 3);
	json_decref(a);

	/* too many entries */
	size_t n = 1100;
	char *s = malloc(n * 2 + 2);

	s[0] = '[';
	for (size_t i = 0; i < n; i++) {
		s[1 + 2 * i] = '1';
		s[2 + 2 * i] = ',';
	}
	s[2 * n] = ']';
	s[2 * n + 1] = '\0';
	expect_error(s, ZOC_RPC_INVALID_REQUEST, "at most");
	free(s);
}

static void test_notification(void **state)
{
	json_t *a = run("{\"jsonrpc\":\"2.0\",\"method\":\"test_ping\"}"
			"{\"jsonrpc\":\"2.0\",\"method\":\"nope\"}"
			"{\"jsonrpc\":\"2.0\",\"method\":\"test_create\",\"params\":{}}"
			"{\"jsonrpc\":\"2.0\",\"method\":\"test_fail\"}");

	assert_int_equal(json_array_size(a), 0);
	json_decref(a);
}

/* ---------------------------------------------------------------- */
/* Errors and ids                                                   */
/* ---------------------------------------------------------------- */

static void test_errors(void **state)
{
	expect_error(REQ("no_such_method", "{}"), ZOC_RPC_METHOD_NOT_FOUND,
		     "method 'no_such_method' not found; 'rpc_get_methods'");
	expect_error("{\"id\":1,\"method\":\"test_ping\"}", ZOC_RPC_INVALID_REQUEST, "\"jsonrpc\"");
	expect_error("{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"test_ping\"}",
		     ZOC_RPC_INVALID_REQUEST, "\"2.0\"");
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":5}", ZOC_RPC_INVALID_REQUEST,
		     "\"method\"");
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\"}", ZOC_RPC_INVALID_REQUEST,
		     "\"method\"");
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":1}", ZOC_RPC_INVALID_REQUEST, "\"method\"");
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"test_ping\",\"x\":1}",
		     ZOC_RPC_INVALID_REQUEST, "unknown member");
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"test_ping\"}",
		     ZOC_RPC_INVALID_REQUEST, "\"id\"");
	expect_error(REQ("test_fail", "{}"), -32000, "bdev x is busy");

	json_t *r = run1("{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"test_ping\"}");

	assert_true(json_is_null(json_object_get(r, "id")));
	json_decref(r);
	/* control characters in a method name are not echoed raw */
	r = run1("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\\u001bb\"}");
	assert_non_null(strstr(err_msg(r), "'a?b'"));
	json_decref(r);
}

static void test_ids(void **state)
{
	json_t *r;

	r = run1("{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"method\":\"test_ping\"}");
	assert_string_equal(json_string_value(json_object_get(r, "id")), "abc");
	json_decref(r);
	r = run1("{\"jsonrpc\":\"2.0\",\"id\":-9007199254740993,\"method\":\"test_ping\"}");
	assert_true(json_integer_value(json_object_get(r, "id")) == -9007199254740993LL);
	json_decref(r);
	r = run1("{\"jsonrpc\":\"2.0\",\"id\":2.5,\"method\":\"test_ping\"}");
	assert_true(json_real_value(json_object_get(r, "id")) == 2.5);
	json_decref(r);
	/* id null is a request, not a notification */
	r = run1("{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"test_ping\"}");
	assert_true(json_is_null(json_object_get(r, "id")));
	assert_true(json_is_true(json_object_get(r, "result")));
	json_decref(r);
}

static void test_builtins(void **state)
{
	json_t *r = run1(REQ("rpc_get_methods", "{}"));
	json_t *res = json_object_get(r, "result"), *m;
	size_t i;
	bool found = false;

	assert_true(json_is_array(res));
	json_array_foreach(res, i, m) {
		if (strcmp(json_string_value(json_object_get(m, "name")), "test_create"))
			continue;
		found = true;
		assert_string_equal(json_string_value(json_object_get(m, "help")), "create a thing");
		json_t *p1 = json_array_get(json_object_get(m, "params"), 1);

		assert_string_equal(json_string_value(json_object_get(p1, "name")), "size_mb");
		assert_string_equal(json_string_value(json_object_get(p1, "type")), "uint64");
		assert_true(json_is_true(json_object_get(p1, "required")));
		assert_int_equal(json_integer_value(json_object_get(p1, "max")), 1048576);
	}
	assert_true(found);
	json_decref(r);

	g_writer_calls = 0;
	r = run1(REQ("save_config", "{}"));
	res = json_object_get(r, "result");
	assert_int_equal(g_writer_calls, 1);
	assert_int_equal(json_array_size(res), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(res, 0), "method")),
			    "test_create");
	assert_string_equal(json_string_value(json_object_get(json_array_get(res, 1), "method")),
			    "test_async");
	json_decref(r);
}

/* ---------------------------------------------------------------- */
/* Asynchronous handlers and local calls                            */
/* ---------------------------------------------------------------- */

static int g_cb_calls;
static json_t *g_cb_resp;

static void local_cb(void *arg, json_t *resp)
{
	g_cb_calls++;
	json_decref(g_cb_resp);
	g_cb_resp = json_deep_copy(resp);
	assert_ptr_equal(arg, &g_cb_calls);
}

static void test_async_local(void **state)
{
	json_t *req = json_pack("{s:s, s:{s:s}}", "method", "test_async", "params", "tag", "t");

	g_cb_calls = 0;
	g_npending = 0;
	assert_int_equal(zoc_rpc_call_local(req, local_cb, &g_cb_calls), 0);
	json_decref(req); /* the server holds its own reference */
	assert_int_equal(g_cb_calls, 0);
	assert_int_equal(g_npending, 1);
	answer_pending();
	assert_int_equal(g_cb_calls, 1);
	assert_string_equal(json_string_value(json_object_get(g_cb_resp, "result")), "done");
	assert_true(json_is_null(json_object_get(g_cb_resp, "id")));

	/* errors reach the callback too, even without id */
	req = json_pack("{s:s, s:{s:i}}", "method", "test_create", "params", "size_mb", 1);
	assert_int_equal(zoc_rpc_call_local(req, local_cb, &g_cb_calls), 0);
	json_decref(req);
	assert_int_equal(g_cb_calls, 2);
	assert_int_equal(err_code(g_cb_resp), ZOC_RPC_INVALID_PARAMS);

	req = json_pack("[]");
	assert_int_equal(zoc_rpc_call_local(req, local_cb, &g_cb_calls), 0);
	json_decref(req);
	assert_int_equal(err_code(g_cb_resp), ZOC_RPC_INVALID_REQUEST);
	assert_int_equal(zoc_rpc_call_local(NULL, local_cb, NULL), -EINVAL);
	json_decref(g_cb_resp);
	g_cb_resp = NULL;
}

static void test_async_dropped(void **state)
{
	/* The "connection" of process_buffer is gone when these are answered. */
	g_npending = 0;
	json_t *a = run(REQ("test_async", "{\"tag\":\"a\"}") "[" REQ("test_async", "{}") ","
			REQ("test_ping", "{}") "]" REQ("test_ping", "{}"));

	assert_int_equal(g_npending, 2);
	assert_int_equal(json_array_size(a), 1); /* only the lone ping */
	json_decref(a);
	answer_pending(); /* dropped; ASan checks for use after free */
}

/* ---------------------------------------------------------------- */
/* Real socket with a reactor thread                                */
/* ---------------------------------------------------------------- */

static char g_dir[64];
static char g_sock[128];
static pthread_t g_thread;

static void *reactor_main(void *arg)
{
	zoc_reactors_run();
	return NULL;
}

static int cli_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = {.tv_sec = 10};

	strcpy(sa.sun_path, path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void cli_send(int fd, const char *s)
{
	size_t len = strlen(s), off = 0;

	while (off < len) {
		ssize_t n = send(fd, s + off, len - off, MSG_NOSIGNAL);

		if (n <= 0)
			return;
		off += (size_t)n;
	}
}

/* Reads one response line (NULL on EOF/timeout). */
static json_t *cli_recv(int fd)
{
	char buf[65536];
	size_t len = 0;

	while (len < sizeof(buf) - 1) {
		ssize_t n = recv(fd, buf + len, 1, 0);

		if (n <= 0)
			return NULL;
		if (buf[len] == '\n') {
			buf[len] = '\0';
			return json_loads(buf, 0, NULL);
		}
		len++;
	}
	return NULL;
}

static void on_r0_answer(void *arg)
{
	answer_pending();
}

static void on_r0_stop(void *arg)
{
	zoc_rpc_server_stop();
	zoc_reactors_stop();
}

static volatile int g_flag;

static void on_r0_flag(void *arg)
{
	g_flag = 1;
}

/* Waits until reactor 0 ran everything sent before. */
static void sync_r0(void)
{
	g_flag = 0;
	zoc_reactor_send_msg(zoc_reactor_get(0), on_r0_flag, NULL);
	for (int i = 0; i < 5000 && !g_flag; i++)
		usleep(1000);
	assert_true(g_flag);
}

static void test_socket_start_errors(void **state)
{
	char path[160];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	strcpy(g_dir, "/tmp/zoc-test-rpc-XXXXXX");
	assert_non_null(mkdtemp(g_dir));
	snprintf(g_sock, sizeof(g_sock), "%s/sub/dir/zocd.sock", g_dir);
	assert_int_equal(zoc_reactors_init(NULL), 0);

	/* a regular file is never removed */
	snprintf(path, sizeof(path), "%s/file", g_dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	assert_int_equal(zoc_rpc_server_start(path), -EEXIST);
	assert_int_equal(access(path, F_OK), 0);
	unlink(path);

	/* something listening: refuse */
	snprintf(path, sizeof(path), "%s/live.sock", g_dir);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(zoc_rpc_server_start(path), -EADDRINUSE);
	close(fd);

	/* now stale (nobody listening): replaced */
	assert_int_equal(zoc_rpc_server_start(path), 0);
	zoc_rpc_server_stop();
	assert_int_not_equal(access(path, F_OK), 0); /* removed on stop */

	char longp[200];

	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(zoc_rpc_server_start(longp), -ENAMETOOLONG);
}

static void test_socket(void **state)
{
	struct stat st;
	char dir[160];
	json_t *r;
	int fd, fd2;
	mode_t old = umask(0);

	/* a lax umask must not leak into the modes */
	assert_int_equal(zoc_rpc_server_start(g_sock), 0);
	umask(old);
	assert_int_equal(zoc_rpc_server_start(g_sock), -EBUSY);
	assert_int_equal(stat(g_sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	snprintf(dir, sizeof(dir), "%s/sub", g_dir);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(pthread_create(&g_thread, NULL, reactor_main, NULL), 0);

	fd = cli_connect(g_sock);
	assert_true(fd >= 0);

	/* one request split across writes */
	cli_send(fd, "{\"jsonrpc\":\"2.0\",\"id\":7,\"meth");
	usleep(20000);
	cli_send(fd, "od\":\"test_ping\"}");
	r = cli_recv(fd);
	assert_non_null(r);
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 7);
	json_decref(r);

	/* two in one write */
	cli_send(fd, REQ("test_ping", "{}") "\n" REQ("test_fail", "{}"));
	r = cli_recv(fd);
	assert_true(json_is_true(json_object_get(r, "result")));
	json_decref(r);
	r = cli_recv(fd);
	assert_int_equal(err_code(r), -32000);
	json_decref(r);

	/* async: answered later from reactor 0 */
	g_npending = 0;
	g_handler_calls = 0;
	cli_send(fd, REQ("test_async", "{}"));
	for (int i = 0; i < 5000 && g_handler_calls == 0; i++)
		usleep(1000);
	assert_int_equal(g_handler_calls, 1);
	zoc_reactor_send_msg(zoc_reactor_get(0), on_r0_answer, NULL);
	r = cli_recv(fd);
	assert_string_equal(json_string_value(json_object_get(r, "result")), "done");
	json_decref(r);

	/* async, client gone before the answer: dropped, server fine */
	fd2 = cli_connect(g_sock);
	g_handler_calls = 0;
	cli_send(fd2, REQ("test_async", "{}"));
	for (int i = 0; i < 5000 && g_handler_calls == 0; i++)
		usleep(1000);
	close(fd2);
	sync_r0(); /* let the server see the close */
	usleep(20000);
	sync_r0();
	zoc_reactor_send_msg(zoc_reactor_get(0), on_r0_answer, NULL);
	sync_r0();
	cli_send(fd, REQ("test_ping", "{}"));
	r = cli_recv(fd);
	assert_true(json_is_true(json_object_get(r, "result")));
	json_decref(r);

	/* half close: answers still come, then EOF */
	fd2 = cli_connect(g_sock);
	cli_send(fd2, REQ("test_ping", "{}"));
	shutdown(fd2, SHUT_WR);
	r = cli_recv(fd2);
	assert_true(json_is_true(json_object_get(r, "result")));
	json_decref(r);
	assert_null(cli_recv(fd2));
	close(fd2);

	/* oversized request: parse error, then the server closes */
	fd2 = cli_connect(g_sock);
	size_t big = (1u << 20) + 100000;
	char *s = malloc(big + 1);

	memset(s, ' ', big);
	s[0] = '[';
	s[big] = '\0';
	cli_send(fd2, s);
	free(s);
	r = cli_recv(fd2);
	assert_int_equal(err_code(r), ZOC_RPC_PARSE_ERROR);
	json_decref(r);
	assert_null(cli_recv(fd2));
	close(fd2);

	/* garbage: parse error, then closed */
	fd2 = cli_connect(g_sock);
	cli_send(fd2, "GET / HTTP/1.1\r\n\r\n");
	r = cli_recv(fd2);
	assert_int_equal(err_code(r), ZOC_RPC_PARSE_ERROR);
	json_decref(r);
	assert_null(cli_recv(fd2));
	close(fd2);

	/* the first client still works */
	cli_send(fd, "[" REQ("test_ping", "{}") "]");
	r = cli_recv(fd);
	assert_int_equal(json_array_size(r), 1);
	json_decref(r);

	/* an async request pending when the server stops */
	g_handler_calls = 0;
	cli_send(fd, REQ("test_async", "{}"));
	for (int i = 0; i < 5000 && g_handler_calls == 0; i++)
		usleep(1000);
	zoc_reactor_send_msg(zoc_reactor_get(0), on_r0_stop, NULL);
	pthread_join(g_thread, NULL);
	answer_pending(); /* reactors stopped: this thread is the only one */
	assert_null(cli_recv(fd));
	close(fd);
	assert_int_not_equal(access(g_sock, F_OK), 0);
	zoc_reactors_fini();
	snprintf(dir, sizeof(dir), "%s/sub/dir", g_dir);
	rmdir(dir);
	snprintf(dir, sizeof(dir), "%s/sub", g_dir);
	rmdir(dir);
	rmdir(g_dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_params_ok),
		cmocka_unit_test(test_params_optional_zero),
		cmocka_unit_test(test_params_ranges),
		cmocka_unit_test(test_params_string_length),
		cmocka_unit_test(test_params_required_unknown),
		cmocka_unit_test(test_params_free_form),
		cmocka_unit_test(test_register),
		cmocka_unit_test(test_framing_back_to_back),
		cmocka_unit_test(test_framing_garbage),
		cmocka_unit_test(test_framing_too_large),
		cmocka_unit_test(test_batch),
		cmocka_unit_test(test_notification),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_builtins),
		cmocka_unit_test(test_async_local),
		cmocka_unit_test(test_async_dropped),
		cmocka_unit_test(test_socket_start_errors),
		cmocka_unit_test(test_socket),
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
