/* SPDX-License-Identifier: MIT */
/*
 * log.h - one line per event, to stderr, with level, time and thread.
 *
 * ZOC_LOG_RL() rate-limits a call site (use it wherever a guest or a
 * client can trigger the message): at most `burst` lines per second per
 * call site, with a count of what was suppressed.
 */
#ifndef ZOC_CORE_LOG_H
#define ZOC_CORE_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum zoc_log_level {
	ZOC_LOG_ERR = 0,
	ZOC_LOG_WARN = 1,
	ZOC_LOG_INFO = 2,
	ZOC_LOG_DEBUG = 3,
};

void zoc_log_set_level(enum zoc_log_level level);
enum zoc_log_level zoc_log_get_level(void);
/* Parse "err", "warn", "info", "debug"; returns 0 or -EINVAL. */
int zoc_log_parse_level(const char *s, enum zoc_log_level *out);

void zoc_log_msg(enum zoc_log_level level, const char *file, int line,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Per-call-site rate limiter state. */
struct zoc_log_rl {
	uint64_t window_start_ns;
	uint32_t in_window;
	uint32_t suppressed;
};

/* Returns true if a line may be printed now; *suppressed gets the number of
 * lines dropped since the last printed one (then reset). */
bool zoc_log_rl_allow(struct zoc_log_rl *rl, uint32_t burst, uint32_t *suppressed);

#define ZOC_LOG(level, ...)                                                    \
	do {                                                                   \
		if ((level) <= zoc_log_get_level())                            \
			zoc_log_msg((level), __FILE__, __LINE__, __VA_ARGS__); \
	} while (0)

#define ZOC_ERR(...) ZOC_LOG(ZOC_LOG_ERR, __VA_ARGS__)
#define ZOC_WARN(...) ZOC_LOG(ZOC_LOG_WARN, __VA_ARGS__)
#define ZOC_INFO(...) ZOC_LOG(ZOC_LOG_INFO, __VA_ARGS__)
#define ZOC_DEBUG(...) ZOC_LOG(ZOC_LOG_DEBUG, __VA_ARGS__)

/* Rate-limited: 10 lines per second per call site. */
#define ZOC_LOG_RL(level, ...)                                                  \
	do {                                                                    \
		static __thread struct zoc_log_rl zoc_rl_;                      \
		uint32_t zoc_sup_;                                              \
		if ((level) <= zoc_log_get_level() &&                           \
		    zoc_log_rl_allow(&zoc_rl_, 10, &zoc_sup_)) {                \
			if (zoc_sup_)                                           \
				zoc_log_msg((level), __FILE__, __LINE__,        \
					    "(%u similar messages suppressed)", \
					    zoc_sup_);                          \
			zoc_log_msg((level), __FILE__, __LINE__, __VA_ARGS__);  \
		}                                                               \
	} while (0)

#define ZOC_WARN_RL(...) ZOC_LOG_RL(ZOC_LOG_WARN, __VA_ARGS__)
#define ZOC_ERR_RL(...) ZOC_LOG_RL(ZOC_LOG_ERR, __VA_ARGS__)

#endif
