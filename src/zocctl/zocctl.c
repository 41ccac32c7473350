/* SPDX-License-Identifier: MIT */
/*
 * zocctl - command-line client of zocd's JSON-RPC control socket.
 *
 *   zocctl [-s PATH] [--json] [--timeout SEC] METHOD [key=value ...]
 *   zocctl help [METHOD]
 *
 * Any method the daemon registers can be called; the parameter types come
 * from the daemon itself (rpc_get_methods), so zocctl has no list of its
 * own. Results are printed as tables for people, or as JSON with --json.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl/jsonrpc.h"

#define EXIT_RPC 1
#define EXIT_USAGE 2
#define MAX_RESPONSE (512u << 20)
#define MAX_FLATTEN_DEPTH 4

struct opts {
	const char *sock;
	bool json;
	double timeout; /* seconds, 0 = wait forever */
	const char *method;
	char **args;
	int nargs;
};

static const char *g_prog = "zocctl";

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [-s PATH] [--json] [--timeout SEC] METHOD [key=value ...]\n"
		"       %s help [METHOD]\n"
		"\n"
		"Calls METHOD on the zocd control socket and prints the result.\n"
		"\n"
		"  -s, --socket PATH  control socket (default: $ZOC_RPC_SOCK, else %s)\n"
		"  --json             print the raw result as JSON (for scripts)\n"
		"  --timeout SEC      give up after SEC seconds (default 60, 0 = never)\n"
		"  -h, --help         this text; 'help METHOD' describes a method\n"
		"\n"
		"Parameters: key=value (integer, true/false or string, as the method\n"
		"declares), key:=JSON for a raw JSON value (e.g. ids:='[1,2]').\n"
		"'%s help' lists the methods the running zocd knows.\n",
		g_prog, g_prog, ZOC_RPC_DEFAULT_SOCKET, g_prog);
}

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", g_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(try '%s --help')\n", g_prog);
	exit(EXIT_USAGE);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", g_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EXIT_RPC);
}

/* ------------------------------------------------------------------ */
/* Connection                                                         */
/* ------------------------------------------------------------------ */

struct conn {
	int fd;
	const char *path;
	double timeout;
	char *buf;
	size_t len, cap;
	int next_id;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void conn_open(struct conn *c, const char *path, double timeout)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	memset(c, 0, sizeof(*c));
	c->path = path;
	c->timeout = timeout;
	c->next_id = 1;
	if (strlen(path) >= sizeof(sa.sun_path))
		die("socket path too long (max %zu bytes): %s", sizeof(sa.sun_path) - 1, path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = errno;

		close(fd);
		switch (err) {
		case ENOENT:
			die("zocd is not running at %s (no such socket).\n"
			    "Start it with 'zocd --rpc %s', or point zocctl at another instance "
			    "with -s PATH or ZOC_RPC_SOCK.",
			    path, path);
		case ECONNREFUSED:
			die("zocd is not running at %s (stale socket: nothing listens on it).\n"
			    "Start it with 'zocd --rpc %s'; it replaces the stale socket.",
			    path, path);
		case EACCES:
		case EPERM:
			die("permission denied on %s: the control socket is 0600; run zocctl as "
			    "the user that runs zocd (or as root).",
			    path);
		default:
			die("cannot connect to zocd at %s: %s", path, strerror(err));
		}
	}
	c->fd = fd;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
}

static int wait_fd(struct conn *c, short events, double deadline)
{
	struct pollfd pfd = {.fd = c->fd, .events = events};

	for (;;) {
		int ms = -1, rc;

		if (c->timeout > 0) {
			double left = deadline - now_s();

			if (left <= 0)
				return -ETIMEDOUT;
			ms = (int)ceil(left * 1000);
		}
		rc = poll(&pfd, 1, ms);
		if (rc > 0)
			return 0;
		if (rc == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static void die_timeout(const struct conn *c, const char *method)
{
	die("no answer from zocd at %s to '%s' within %g s (use --timeout to wait longer)",
	    c->path, method, c->timeout);
}

/* Sends one request and returns the response object (caller decrefs). */
static json_t *conn_call(struct conn *c, const char *method, json_t *params)
{
	double deadline = now_s() + c->timeout;
	int id = c->next_id++;
	json_t *req = json_pack("{s:s, s:i, s:s}", "jsonrpc", "2.0", "id", id, "method", method);
	char *s;
	size_t len, off = 0;

	if (!req)
		die("out of memory");
	if (params)
		json_object_set(req, "params", params);
	s = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!s)
		die("cannot encode the request (invalid UTF-8 in a parameter?)");
	len = strlen(s);
	while (off < len) {
		ssize_t n;

		if (wait_fd(c, POLLOUT, deadline) == -ETIMEDOUT)
			die_timeout(c, method);
		n = send(c->fd, s + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			die("sending to zocd at %s: %s", c->path, strerror(errno));
		}
		off += (size_t)n;
	}
	free(s);

	for (;;) {
		char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;

		if (nl) {
			size_t line = (size_t)(nl - c->buf);
			json_error_t err;
			json_t *resp = json_loadb(c->buf, line, 0, &err);

			memmove(c->buf, nl + 1, c->len - line - 1);
			c->len -= line + 1;
			if (!resp)
				die("zocd sent a response that is not JSON: %s", err.text);
			json_t *rid = json_object_get(resp, "id");

			if (json_is_integer(rid) && json_integer_value(rid) == id)
				return resp;
			/* A response to something else: skip it. */
			json_decref(resp);
			continue;
		}
		if (c->cap - c->len < 65536) {
			size_t cap = c->cap ? c->cap * 2 : 65536;

			if (cap > MAX_RESPONSE)
				die("response from zocd larger than %u MiB", MAX_RESPONSE >> 20);
			c->buf = realloc(c->buf, cap);
			if (!c->buf)
				die("out of memory");
			c->cap = cap;
		}
		int rc = wait_fd(c, POLLIN, deadline);

		if (rc == -ETIMEDOUT)
			die_timeout(c, method);
		ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			die("reading from zocd at %s: %s", c->path, strerror(errno));
		}
		if (n == 0)
			die("zocd at %s closed the connection without answering '%s' "
			    "(did it exit? see its log)",
			    c->path, method);
		c->len += (size_t)n;
	}
}

/* Returns the result (borrowed from *resp) or exits with the error. */
static json_t *response_result(json_t *resp, const char *method)
{
	json_t *err = json_object_get(resp, "error");

	if (err) {
		const char *msg = json_string_value(json_object_get(err, "message"));
		json_int_t code = json_integer_value(json_object_get(err, "code"));

		fprintf(stderr, "%s: %s: %s\n", g_prog, method, msg ? msg : "error");
		if (code == ZOC_RPC_METHOD_NOT_FOUND)
			fprintf(stderr, "%s: '%s help' lists the methods this zocd knows\n", g_prog,
				g_prog);
		exit(EXIT_RPC);
	}
	return json_object_get(resp, "result");
}

/* ------------------------------------------------------------------ */
/* Parameters                                                         */
/* ------------------------------------------------------------------ */

static bool parse_int(const char *s, json_int_t *out)
{
	char *end;
	long long v;

	if (!*s || (!(*s >= '0' && *s <= '9') && !(*s == '-' && s[1] >= '0' && s[1] <= '9')))
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	*out = (json_int_t)v;
	return true;
}

static int parse_bool(const char *s)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};

	for (size_t i = 0; i < 4; i++) {
		if (strcmp(s, yes[i]) == 0)
			return 1;
		if (strcmp(s, no[i]) == 0)
			return 0;
	}
	return -1;
}

/* Type of a parameter according to the daemon ("string", "uint32", ...),
 * NULL if unknown. */
static const char *schema_type(json_t *method_desc, const char *key)
{
	json_t *p;
	size_t i;

	json_array_foreach(json_object_get(method_desc, "params"), i, p) {
		const char *n = json_string_value(json_object_get(p, "name"));

		if (n && strcmp(n, key) == 0)
			return json_string_value(json_object_get(p, "type"));
	}
	return NULL;
}

static json_t *value_for(const char *key, const char *val, json_t *method_desc)
{
	const char *type = method_desc ? schema_type(method_desc, key) : NULL;
	json_int_t iv;
	int b;

	if (type && strcmp(type, "string") == 0)
		return json_string(val);
	if (type && strncmp(type, "uint", 4) == 0)
		return parse_int(val, &iv) ? json_integer(iv) : json_string(val);
	if (type && strcmp(type, "bool") == 0) {
		b = parse_bool(val);
		return b >= 0 ? json_boolean(b) : json_string(val);
	}
	/* Unknown to the daemon's table (or free-form): guess. */
	if (parse_int(val, &iv))
		return json_integer(iv);
	if (strcmp(val, "true") == 0)
		return json_true();
	if (strcmp(val, "false") == 0)
		return json_false();
	return json_string(val);
}

static json_t *find_method(json_t *methods, const char *name)
{
	json_t *m;
	size_t i;

	json_array_foreach(methods, i, m) {
		const char *n = json_string_value(json_object_get(m, "name"));

		if (n && strcmp(n, name) == 0)
			return m;
	}
	return NULL;
}

static json_t *build_params(struct opts *o, json_t *methods)
{
	json_t *params = json_object();
	json_t *desc = methods ? find_method(methods, o->method) : NULL;

	for (int i = 0; i < o->nargs; i++) {
		char *arg = o->args[i];
		char *eq = strchr(arg, '=');
		bool raw;
		json_t *v;
		char *key;

		if (!eq || eq == arg)
			die_usage("expected key=value or key:=JSON, got '%s'", arg);
		raw = eq > arg && eq[-1] == ':';
		key = strndup(arg, (size_t)(eq - arg) - (raw ? 1 : 0));
		if (!key || !key[0])
			die_usage("empty key in '%s'", arg);
		if (json_object_get(params, key))
			die_usage("'%s' given twice", key);
		if (raw) {
			json_error_t err;

			v = json_loads(eq + 1, JSON_DECODE_ANY, &err);
			if (!v)
				die_usage("%s:= takes a JSON value: %s", key, err.text);
		} else {
			v = value_for(key, eq + 1, desc);
			if (!v)
				die_usage("value of '%s' is not valid UTF-8", key);
		}
		json_object_set_new(params, key, v);
		free(key);
	}
	return params;
}

static bool needs_schema(const struct opts *o)
{
	for (int i = 0; i < o->nargs; i++) {
		char *eq = strchr(o->args[i], '=');

		if (eq && eq > o->args[i] && eq[-1] != ':')
			return true;
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* Output for people                                                  */
/* ------------------------------------------------------------------ */

struct sbuf {
	char *s;
	size_t len, cap;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;

		while (cap < b->len + n + 1)
			cap *= 2;
		b->s = realloc(b->s, cap);
		if (!b->s)
			die("out of memory");
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* Scalar as table text: strings raw (control characters as spaces). */
static char *scalar_text(const json_t *v)
{
	char tmp[64];
	struct sbuf b = {0};

	switch (json_typeof(v)) {
	case JSON_STRING: {
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);

		for (size_t i = 0; i < n; i++) {
			char ch = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];

			sb_add(&b, &ch, 1);
		}
		if (!b.s)
			sb_puts(&b, "");
		return b.s;
	}
	case JSON_INTEGER:
		snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL:
		snprintf(tmp, sizeof(tmp), "%.17g", json_real_value(v));
		break;
	case JSON_TRUE:
		return strdup("true");
	case JSON_FALSE:
		return strdup("false");
	case JSON_NULL:
		return strdup("-");
	default: {
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

		return s ? s : strdup("?");
	}
	}
	return strdup(tmp);
}

static bool is_scalar(const json_t *v)
{
	return !json_is_object(v) && !json_is_array(v);
}

/* One-cell summary of an array. */
static char *array_text(const json_t *a)
{
	struct sbuf b = {0};
	bool scalars = true, named = true;
	json_t *e;
	size_t i;

	if (json_array_size(a) == 0)
		return strdup("-");
	json_array_foreach(a, i, e) {
		if (!is_scalar(e))
			scalars = false;
		if (!json_is_string(json_object_get(e, "name")))
			named = false;
	}
	if (!scalars && !named) {
		char tmp[32];

		snprintf(tmp, sizeof(tmp), "[%zu items]", json_array_size(a));
		return strdup(tmp);
	}
	json_array_foreach(a, i, e) {
		char *t = scalar_text(scalars ? e : json_object_get(e, "name"));

		if (i)
			sb_puts(&b, ",");
		sb_puts(&b, t);
		free(t);
	}
	return b.s;
}

/* Flattened (key, text) pairs of an object: nested objects as a.b. */
struct kv {
	char **keys;
	char **vals;
	bool *num; /* value is a JSON number (right-aligned in tables) */
	size_t n, cap;
};

static void kv_add(struct kv *kv, char *key, char *val, bool num)
{
	if (kv->n == kv->cap) {
		kv->cap = kv->cap ? kv->cap * 2 : 16;
		kv->keys = realloc(kv->keys, kv->cap * sizeof(char *));
		kv->vals = realloc(kv->vals, kv->cap * sizeof(char *));
		kv->num = realloc(kv->num, kv->cap * sizeof(bool));
		if (!kv->keys || !kv->vals || !kv->num)
			die("out of memory");
	}
	kv->keys[kv->n] = key;
	kv->vals[kv->n] = val;
	kv->num[kv->n] = num;
	kv->n++;
}

static void kv_free(struct kv *kv)
{
	for (size_t i = 0; i < kv->n; i++) {
		free(kv->keys[i]);
		free(kv->vals[i]);
	}
	free(kv->keys);
	free(kv->vals);
	free(kv->num);
}

static char *join_key(const char *prefix, const char *key)
{
	char *s;

	if (!prefix)
		return strdup(key);
	if (asprintf(&s, "%s.%s", prefix, key) < 0)
		die("out of memory");
	return s;
}

/* Plain members first (so "name" leads), then nested objects as a.b. */
static void flatten(const json_t *obj, const char *prefix, int depth, struct kv *kv)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v) {
		if (json_is_object(v))
			continue;
		kv_add(kv, join_key(prefix, key), json_is_array(v) ? array_text(v) : scalar_text(v),
		       json_is_number(v));
	}
	json_object_foreach((json_t *)obj, key, v) {
		char *k;

		if (!json_is_object(v))
			continue;
		k = join_key(prefix, key);
		if (json_object_size(v) && depth < MAX_FLATTEN_DEPTH) {
			flatten(v, k, depth + 1, kv);
			free(k);
		} else {
			kv_add(kv, k, json_object_size(v) ? scalar_text(v) : strdup("-"), false);
		}
	}
}

/* Display width of UTF-8 text (code points). */
static size_t text_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

static void print_padded(const char *s, size_t width, bool right, bool last)
{
	size_t w = text_width(s);
	size_t pad = width > w ? width - w : 0;

	if (right)
		printf("%*s%s", (int)pad, "", s);
	else if (last)
		fputs(s, stdout);
	else
		printf("%s%*s", s, (int)pad, "");
}

static size_t term_width(void)
{
	struct winsize ws;
	const char *env = getenv("COLUMNS");

	if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col)
		return ws.ws_col;
	if (env && atoi(env) > 20)
		return (size_t)atoi(env);
	return 160;
}

static void print_object(const json_t *obj, const char *indent);

static void print_table(const json_t *rows, const char *indent)
{
	struct kv *flat;
	char **cols = NULL;
	size_t ncols = 0, nrows = json_array_size(rows);
	size_t *width;
	bool *right;
	json_t *row;
	size_t i;

	flat = calloc(nrows, sizeof(*flat));
	if (!flat)
		die("out of memory");
	json_array_foreach((json_t *)rows, i, row) {
		flatten(row, NULL, 0, &flat[i]);
		for (size_t j = 0; j < flat[i].n; j++) {
			size_t c = 0;

			while (c < ncols && strcmp(cols[c], flat[i].keys[j]))
				c++;
			if (c == ncols) {
				cols = realloc(cols, (ncols + 1) * sizeof(*cols));
				if (!cols)
					die("out of memory");
				cols[ncols++] = flat[i].keys[j];
			}
		}
	}
	width = calloc(ncols + 1, sizeof(*width));
	right = calloc(ncols + 1, sizeof(*right));
	if (!width || !right)
		die("out of memory");
	for (size_t c = 0; c < ncols; c++) {
		width[c] = text_width(cols[c]);
		right[c] = true;
		for (i = 0; i < nrows; i++) {
			for (size_t j = 0; j < flat[i].n; j++) {
				if (strcmp(flat[i].keys[j], cols[c]))
					continue;
				width[c] = width[c] > text_width(flat[i].vals[j])
						   ? width[c]
						   : text_width(flat[i].vals[j]);
				if (!flat[i].num[j] && strcmp(flat[i].vals[j], "-"))
					right[c] = false;
			}
		}
	}
	size_t total = strlen(indent);

	for (size_t c = 0; c < ncols; c++)
		total += width[c] + 2;
	if (total > term_width() + 2) {
		/* Too wide for a table: one key/value block per row. */
		json_array_foreach((json_t *)rows, i, row) {
			if (i)
				putchar('\n');
			print_object(row, indent);
		}
		goto out;
	}
	fputs(indent, stdout);
	for (size_t c = 0; c < ncols; c++) {
		if (c)
			fputs("  ", stdout);
		print_padded(cols[c], width[c], right[c], c + 1 == ncols);
	}
	putchar('\n');
	for (i = 0; i < nrows; i++) {
		fputs(indent, stdout);
		for (size_t c = 0; c < ncols; c++) {
			const char *val = "";

			for (size_t j = 0; j < flat[i].n; j++)
				if (strcmp(flat[i].keys[j], cols[c]) == 0)
					val = flat[i].vals[j];
			if (c)
				fputs("  ", stdout);
			print_padded(val, width[c], right[c], c + 1 == ncols);
		}
		putchar('\n');
	}
out:
	for (i = 0; i < nrows; i++)
		kv_free(&flat[i]);
	free(flat);
	free(cols);
	free(width);
	free(right);
}

static bool all_objects(const json_t *a)
{
	json_t *e;
	size_t i;

	json_array_foreach((json_t *)a, i, e)
		if (!json_is_object(e))
			return false;
	return json_array_size(a) > 0;
}

static void print_object(const json_t *obj, const char *indent)
{
	struct kv kv = {0};
	size_t w = 0;
	const char *key;
	json_t *v;
	json_t *rest = json_object();

	/* Arrays of objects get their own table below; the rest is key: value. */
	json_object_foreach((json_t *)obj, key, v) {
		if (json_is_array(v) && all_objects(v))
			json_object_set(rest, key, v);
	}
	json_t *scal = json_deep_copy(obj);

	json_object_foreach(rest, key, v)
		json_object_del(scal, key);
	flatten(scal, NULL, 0, &kv);
	json_decref(scal);
	for (size_t i = 0; i < kv.n; i++)
		w = w > text_width(kv.keys[i]) ? w : text_width(kv.keys[i]);
	for (size_t i = 0; i < kv.n; i++) {
		printf("%s%s:", indent, kv.keys[i]);
		printf("%*s %s\n", (int)(w - text_width(kv.keys[i])), "", kv.vals[i]);
	}
	json_object_foreach(rest, key, v) {
		char *sub;

		if (asprintf(&sub, "%s  ", indent) < 0)
			die("out of memory");
		printf("%s%s:\n", indent, key);
		print_table(v, sub);
		free(sub);
	}
	if (!kv.n && !json_object_size(rest))
		printf("%s(empty)\n", indent);
	kv_free(&kv);
	json_decref(rest);
}

static void print_human(const json_t *v)
{
	if (json_is_true(v)) {
		puts("ok");
	} else if (json_is_array(v)) {
		json_t *e;
		size_t i;

		if (json_array_size(v) == 0) {
			puts("(none)");
		} else if (all_objects(v)) {
			print_table(v, "");
		} else {
			json_array_foreach((json_t *)v, i, e) {
				char *t = is_scalar(e) ? scalar_text(e)
						       : json_dumps(e, JSON_COMPACT);

				puts(t ? t : "?");
				free(t);
			}
		}
	} else if (json_is_object(v)) {
		print_object(v, "");
	} else if (v) {
		char *t = scalar_text(v);

		puts(t);
		free(t);
	}
}

static void print_json(const json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);

	if (!s)
		die("cannot print the result");
	puts(s);
	free(s);
}

/* ------------------------------------------------------------------ */
/* help                                                               */
/* ------------------------------------------------------------------ */

static void print_method_help(json_t *m)
{
	json_t *ps = json_object_get(m, "params"), *p;
	size_t i, w = 4;

	printf("%s - %s\n", json_string_value(json_object_get(m, "name")),
	       json_string_value(json_object_get(m, "help")));
	if (json_is_true(json_object_get(m, "free_form"))) {
		puts("\nparameters: free-form (key=value or key:=JSON)");
		return;
	}
	if (!json_array_size(ps)) {
		puts("\nno parameters");
		return;
	}
	json_array_foreach(ps, i, p) {
		size_t n = strlen(json_string_value(json_object_get(p, "name")));

		w = n > w ? n : w;
	}
	puts("\nparameters:");
	json_array_foreach(ps, i, p) {
		const char *type = json_string_value(json_object_get(p, "type"));
		const char *help = json_string_value(json_object_get(p, "help"));
		char range[64] = "";
		json_t *mn = json_object_get(p, "min"), *mx = json_object_get(p, "max");

		if (mn && mx && type && strcmp(type, "string") == 0)
			snprintf(range, sizeof(range), "length %" JSON_INTEGER_FORMAT "..%" JSON_INTEGER_FORMAT,
				 json_integer_value(mn), json_integer_value(mx));
		else if (mn && mx)
			snprintf(range, sizeof(range), "%" JSON_INTEGER_FORMAT "..%" JSON_INTEGER_FORMAT,
				 json_integer_value(mn), json_integer_value(mx));
		printf("  %-*s  %-6s  %-8s  %-22s  %s\n", (int)w,
		       json_string_value(json_object_get(p, "name")), type ? type : "?",
		       json_is_true(json_object_get(p, "required")) ? "required" : "optional", range,
		       help ? help : "");
	}
}

static int cmd_help(struct conn *c, const char *method)
{
	json_t *resp = conn_call(c, "rpc_get_methods", NULL);
	json_t *methods = response_result(resp, "rpc_get_methods"), *m;
	size_t i, w = 0;

	if (method) {
		m = find_method(methods, method);
		if (!m)
			die("zocd at %s has no method '%s' ('%s help' lists them)", c->path, method,
			    g_prog);
		print_method_help(m);
		json_decref(resp);
		return 0;
	}
	json_array_foreach(methods, i, m) {
		size_t n = strlen(json_string_value(json_object_get(m, "name")));

		w = n > w ? n : w;
	}
	printf("methods of zocd at %s:\n\n", c->path);
	json_array_foreach(methods, i, m)
		printf("  %-*s  %s\n", (int)w, json_string_value(json_object_get(m, "name")),
		       json_string_value(json_object_get(m, "help")));
	printf("\n'%s help METHOD' shows its parameters.\n", g_prog);
	json_decref(resp);
	return 0;
}

/* ------------------------------------------------------------------ */
/* main                                                               */
/* ------------------------------------------------------------------ */

static void parse_args(int argc, char **argv, struct opts *o)
{
	bool opts_done = false;

	o->args = calloc((size_t)argc + 1, sizeof(char *));
	if (!o->args)
		die("out of memory");
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!opts_done && a[0] == '-' && a[1]) {
			if (strcmp(a, "--") == 0) {
				opts_done = true;
			} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
				if (o->method) {
					/* zocctl METHOD --help */
					o->args[0] = (char *)o->method;
					o->nargs = -1;
					o->method = "help";
					continue;
				}
				usage(stdout);
				exit(0);
			} else if (strcmp(a, "--json") == 0) {
				o->json = true;
			} else if (strcmp(a, "-s") == 0 || strcmp(a, "--socket") == 0) {
				if (++i == argc)
					die_usage("%s needs a path", a);
				o->sock = argv[i];
			} else if (strncmp(a, "--socket=", 9) == 0) {
				o->sock = a + 9;
			} else if (strcmp(a, "--timeout") == 0 || strncmp(a, "--timeout=", 10) == 0) {
				const char *v = a[9] == '=' ? a + 10 : (++i < argc ? argv[i] : NULL);
				char *end;

				if (!v)
					die_usage("--timeout needs a number of seconds");
				o->timeout = strtod(v, &end);
				if (*end || !(o->timeout >= 0) || o->timeout > 86400 * 365)
					die_usage("--timeout takes seconds (>= 0), got '%s'", v);
			} else {
				die_usage("unknown option '%s'", a);
			}
			continue;
		}
		if (!o->method)
			o->method = a;
		else if (o->nargs >= 0)
			o->args[o->nargs++] = argv[i];
	}
	if (o->nargs < 0)
		o->nargs = 1; /* METHOD --help -> help METHOD */
}

int main(int argc, char **argv)
{
	struct opts o = {.timeout = 60};
	struct conn c;
	json_t *resp, *params, *methods_resp = NULL, *methods = NULL;
	int rc = 0;

	if (argc > 0 && argv[0]) {
		const char *slash = strrchr(argv[0], '/');

		g_prog = slash ? slash + 1 : argv[0];
	}
	parse_args(argc, argv, &o);
	if (!o.method) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!o.sock)
		o.sock = getenv("ZOC_RPC_SOCK");
	if (!o.sock || !o.sock[0])
		o.sock = ZOC_RPC_DEFAULT_SOCKET;

	conn_open(&c, o.sock, o.timeout);
	if (strcmp(o.method, "help") == 0) {
		if (o.nargs > 1)
			die_usage("help takes at most one method name");
		rc = cmd_help(&c, o.nargs ? o.args[0] : NULL);
		conn_close(&c);
		free(o.args);
		return rc;
	}

	/* Ask the daemon for the parameter types so that key=value gets the
	 * JSON type the method declares (a name "123" stays a string). */
	if (needs_schema(&o)) {
		methods_resp = conn_call(&c, "rpc_get_methods", NULL);
		if (!json_object_get(methods_resp, "error"))
			methods = json_object_get(methods_resp, "result");
	}
	params = build_params(&o, methods);
	json_decref(methods_resp);

	resp = conn_call(&c, o.method, json_object_size(params) ? params : NULL);
	json_decref(params);
	json_t *result = response_result(resp, o.method);

	/* save_config output is meant for 'zocd --config': always JSON. */
	if (o.json || strcmp(o.method, "save_config") == 0)
		print_json(result ? result : json_null());
	else
		print_human(result);
	json_decref(resp);
	conn_close(&c);
	free(o.args);
	return rc;
}
