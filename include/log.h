/* log.h - one line per event on stdout, JSON or text.
 *
 * Only main and the HTTP layer log; modules return errors instead.
 *   LOG(LOG_INFO, "stored", "id=%s events=%zu", id, n);
 * The details are "key=value" pairs separated by spaces; a value holding
 * spaces is written in double quotes (key="a b").  In JSON format each pair
 * becomes a member: {"time":...,"level":"info","msg":"stored","id":...}.
 * Values are JSON-escaped; control characters never reach the terminal.
 *
 * Personal data: recipient addresses are written only at debug level
 * (--log-level debug), never at info or above.
 */
#ifndef LOG_H
#define LOG_H

#include "config.h"

/* Call once, before any thread starts. */
void log_init(enum log_format format, enum log_level level);
bool log_enabled(enum log_level level);

/* 16 hex digits and a NUL. */
#define LOG_REQUEST_ID_LEN 17
/* A new id for one request, unique in this process and most likely across
 * copies. */
void log_request_id(char id[LOG_REQUEST_ID_LEN]);

void log_write(enum log_level level, const char *msg, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Lines this thread logs between log_hold() and log_release() are written
 * together at log_release(), in one write(2) per PIPE_BUF bytes (earlier
 * when they fill that), instead of one write(2) each: for a loop that
 * handles the several requests one wake-up brought, hold before and
 * release after.  The write is most of a log line's cost (~2.5 us of the
 * ~3.4 us per delivery at full speed).  Lines of other threads may come
 * in between, never inside a line.  Release before anything that may
 * block for long, so that lines are not late. */
void log_hold(void);
void log_release(void);

/* Lines that come in floods (a limit hit each time an attacker tries): at
 * most one of a kind per LOG_THROTTLE_INTERVAL_S.  True when one of this
 * kind is due now; *left_out gets how many were held back since the last
 * one (write it in the line).  kind is any address that names the kind:
 * a string literal, a format string.  Up to 32 kinds are throttled; more
 * are always due. */
#define LOG_THROTTLE_INTERVAL_S 10
bool log_throttle(const void *kind, unsigned long *left_out);

#define LOG(level, msg, ...)                                                   \
	do {                                                                   \
		if (log_enabled(level))                                        \
			log_write(level, msg, __VA_ARGS__);                    \
	} while (0)

#endif
