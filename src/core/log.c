/* SPDX-License-Identifier: MIT */
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"

static enum zoc_log_level g_level = ZOC_LOG_INFO;
static const char *const g_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void zoc_log_set_level(enum zoc_log_level level)
{
	g_level = level;
}

enum zoc_log_level zoc_log_get_level(void)
{
	return g_level;
}

int zoc_log_parse_level(const char *s, enum zoc_log_level *out)
{
	static const char *const names[] = {"err", "warn", "info", "debug"};

	for (unsigned i = 0; i < ZOC_ARRAY_SIZE(names); i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum zoc_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void zoc_log_msg(enum zoc_log_level level, const char *file, int line, const char *fmt, ...)
{
	char buf[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	const char *base = strrchr(file, '/');
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(buf, sizeof(buf), "%02d:%02d:%02d.%06ld %-5s [%ld] %s:%d: ", tm.tm_hour,
		     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000, g_names[level],
		     (long)syscall(SYS_gettid), base ? base + 1 : file, line);
	if (n < 0 || (size_t)n >= sizeof(buf))
		n = 0;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	/* One write per line keeps lines whole across threads. */
	ssize_t rc = write(STDERR_FILENO, buf, (size_t)n);
	(void)rc;
}

bool zoc_log_rl_allow(struct zoc_log_rl *rl, uint32_t burst, uint32_t *suppressed)
{
	uint64_t now = zoc_now_ns();

	*suppressed = 0;
	if (now - rl->window_start_ns >= 1000000000ull) {
		rl->window_start_ns = now;
		rl->in_window = 0;
	}
	if (rl->in_window >= burst) {
		rl->suppressed++;
		return false;
	}
	rl->in_window++;
	*suppressed = rl->suppressed;
	rl->suppressed = 0;
	return true;
}
