#include "log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#include "mt_time.h"

/* Set once by main before any thread starts, read-only afterwards. */
static enum log_format g_format = LOG_FORMAT_JSON;
static enum log_level g_level = LOG_INFO;
/* Request ids: a random per-process prefix (copies behind one balancer do
 * not collide) and a counter. */
static uint32_t g_id_prefix;
static atomic_uint g_id_next;

#define LOG_LINE_MAX 4096

void log_init(enum log_format format, enum log_level level)
{
	g_format = format;
	g_level = level;
	if (getrandom(&g_id_prefix, sizeof(g_id_prefix), 0) != sizeof(g_id_prefix))
		g_id_prefix = (uint32_t)mt_time_now_ms();
}

/* Eight lower-case hex digits of v, as "%08x" writes them (snprintf's
 * format parsing was 0.8% of mailtrail's CPU at full speed). */
static void put_hex8(char *o, uint32_t v)
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 7; i >= 0; i--) {
		o[i] = hex[v & 0xf];
		v >>= 4;
	}
}

void log_request_id(char id[LOG_REQUEST_ID_LEN])
{
	unsigned n = atomic_fetch_add_explicit(&g_id_next, 1, memory_order_relaxed);
	put_hex8(id, g_id_prefix);
	put_hex8(id + 8, (uint32_t)n);
	id[16] = '\0';
}

bool log_enabled(enum log_level level)
{
	return level >= g_level;
}

static const char *level_name(enum log_level level)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	return level <= LOG_ERROR ? names[level] : "?";
}

struct line {
	char buf[LOG_LINE_MAX];
	size_t n;
};

/* Room kept at the end of a line for what closes it ("}\n"), so a line
 * cut short by LOG_LINE_MAX is still one valid JSON object. */
#define LOG_LINE_TAIL 8

static void put(struct line *l, const char *s, size_t len)
{
	size_t room = sizeof(l->buf) - LOG_LINE_TAIL - l->n;
	if (len > room)
		len = room;
	memcpy(l->buf + l->n, s, len);
	l->n += len;
}

static void put_s(struct line *l, const char *s)
{
	put(l, s, strlen(s));
}

static bool needs_escape(unsigned char c, bool json)
{
	return c < 0x20 || c == 0x7f || (json && (c == '"' || c == '\\'));
}

/* JSON string contents: escapes quotes, backslashes and control bytes.
 * Stops where fewer than 8 bytes of room are left, so an escape is never
 * cut in half.  Runs of bytes that need no escape are copied whole (byte
 * by byte this was a quarter of a log line's cost). */
static void put_escaped(struct line *l, const char *s, size_t len, bool json)
{
	size_t i = 0;
	while (i < len) {
		size_t room = sizeof(l->buf) - LOG_LINE_TAIL - l->n;
		if (room < 8)
			break;
		size_t run = 0;
		while (i + run < len && !needs_escape((unsigned char)s[i + run], json))
			run++;
		if (run > 0) {
			/* The bytes that fit before room drops under 8. */
			size_t fit = room - 7;
			put(l, s + i, run < fit ? run : fit);
			if (run >= fit)
				break;
			i += run;
			continue;
		}
		unsigned char c = (unsigned char)s[i++];
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			put(l, esc, 2);
		} else {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			put(l, esc, 6);
		}
	}
}

/* Splits "k=v k2="v 2"" into JSON members. */
static void put_pairs_json(struct line *l, const char *d)
{
	const char *p = d;
	while (*p) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		const char *k = p;
		while (*p && *p != '=' && *p != ' ')
			p++;
		size_t kl = (size_t)(p - k);
		const char *v = "";
		size_t vl = 0;
		if (*p == '=') {
			p++;
			if (*p == '"') {
				v = ++p;
				while (*p && *p != '"')
					p++;
				vl = (size_t)(p - v);
				if (*p == '"')
					p++;
			} else {
				v = p;
				while (*p && *p != ' ')
					p++;
				vl = (size_t)(p - v);
			}
		}
		put_s(l, ",\"");
		put_escaped(l, k, kl, true);
		put_s(l, "\":\"");
		put_escaped(l, v, vl, true);
		put_s(l, "\"");
	}
}

/* Appends s[0..n) to out (size bytes, *at used) as far as it fits, one
 * byte always kept for the NUL. */
static void fmt_put(char *out, size_t size, size_t *at, const char *s, size_t n)
{
	size_t room = size - 1 - *at;
	if (n > room)
		n = room;
	memcpy(out + *at, s, n);
	*at += n;
}

static void fmt_unsigned(char *out, size_t size, size_t *at, unsigned long long v,
			 bool negative)
{
	char digits[24];
	size_t i = sizeof(digits);
	do {
		digits[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	if (negative)
		digits[--i] = '-';
	fmt_put(out, size, at, digits + i, sizeof(digits) - i);
}

/* vsnprintf(out, size, fmt, ap) for the conversions log lines use: %s, %%
 * and d/u with the h-less length modifiers (l, ll, z).  Anything else
 * (flags, widths, precisions, other conversions) goes to vsnprintf.  The
 * library's version parses the format through stdio's machinery, a quarter
 * of a log line's cost. */
static void format_details(char *out, size_t size, const char *fmt, va_list ap)
{
	va_list again;
	size_t at = 0;

	va_copy(again, ap);
	for (const char *p = fmt; *p;) {
		const char *pct = strchr(p, '%');
		size_t lit = pct ? (size_t)(pct - p) : strlen(p);
		fmt_put(out, size, &at, p, lit);
		if (!pct)
			break;
		p = pct + 1;
		int longs = 0;
		bool size_t_arg = false;
		if (*p == 'z') {
			size_t_arg = true;
			p++;
		} else {
			while (*p == 'l' && longs < 2) {
				longs++;
				p++;
			}
		}
		char conv = *p++;
		if (conv == '%' && !size_t_arg && longs == 0) {
			fmt_put(out, size, &at, "%", 1);
		} else if (conv == 's' && !size_t_arg && longs == 0) {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			fmt_put(out, size, &at, s, strlen(s));
		} else if (conv == 'u') {
			unsigned long long v = size_t_arg ? va_arg(ap, size_t)
					       : longs == 2 ? va_arg(ap, unsigned long long)
					       : longs == 1 ? va_arg(ap, unsigned long)
							    : va_arg(ap, unsigned);
			fmt_unsigned(out, size, &at, v, false);
		} else if (conv == 'd' && !size_t_arg) {
			long long v = longs == 2 ? va_arg(ap, long long)
				      : longs == 1 ? va_arg(ap, long) : va_arg(ap, int);
			fmt_unsigned(out, size, &at,
				     v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v,
				     v < 0);
		} else {
			vsnprintf(out, size, fmt, again);
			va_end(again);
			return;
		}
	}
	out[at] = '\0';
	va_end(again);
}

/* One write(2) per line, straight to fd 1: a line (at most LOG_LINE_MAX
 * bytes) reaches a pipe or file in one piece without stdio's lock, copy
 * and flush (lines from concurrent requests never interleave: writes of up
 * to PIPE_BUF bytes to a pipe are atomic, and the kernel serialises writes
 * to one open file). */
static void write_line(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDOUT_FILENO, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* nowhere to log to: nothing better to do */
		p += w;
		n -= (size_t)w;
	}
}

/* The lines this thread holds (log_hold): at most PIPE_BUF bytes, so that
 * writing them is still one atomic write(2) to a pipe and they never
 * interleave with other threads' lines. */
struct held {
	bool on;
	size_t n;
	char buf[PIPE_BUF];
};
static __thread struct held t_held;

static void write_held(void)
{
	write_line(t_held.buf, t_held.n);
	t_held.n = 0;
}

static void emit_line(const char *p, size_t n)
{
	if (!t_held.on) {
		write_line(p, n);
		return;
	}
	if (t_held.n + n > sizeof(t_held.buf))
		write_held();
	if (n > sizeof(t_held.buf)) {
		write_line(p, n);
		return;
	}
	memcpy(t_held.buf + t_held.n, p, n);
	t_held.n += n;
}

void log_hold(void)
{
	t_held.on = true;
}

void log_release(void)
{
	if (t_held.n)
		write_held();
	t_held.on = false;
}

void log_write(enum log_level level, const char *msg, const char *fmt, ...)
{
	char details[LOG_LINE_MAX];
	char ts[MT_TIME_BUF];
	struct line l; /* not zeroed: only buf[0..n) is ever read */
	va_list ap;

	l.n = 0;

	va_start(ap, fmt);
	format_details(details, sizeof(details), fmt, ap);
	va_end(ap);
	mt_time_format(mt_time_now_ms(), ts);

	if (g_format == LOG_FORMAT_JSON) {
		put_s(&l, "{\"time\":\"");
		put_s(&l, ts);
		put_s(&l, "\",\"level\":\"");
		put_s(&l, level_name(level));
		put_s(&l, "\",\"msg\":\"");
		put_escaped(&l, msg, strlen(msg), true);
		put_s(&l, "\"");
		put_pairs_json(&l, details);
		l.buf[l.n++] = '}';
	} else {
		put_s(&l, ts);
		put_s(&l, " ");
		put_s(&l, level_name(level));
		put_s(&l, " ");
		put_escaped(&l, msg, strlen(msg), false);
		if (details[0]) {
			put_s(&l, " ");
			put_escaped(&l, details, strlen(details), false);
		}
	}
	l.buf[l.n++] = '\n';
	emit_line(l.buf, l.n);
}

struct throttle {
	const void *kind;
	int64_t last_ms;
	unsigned long left_out;
};
static struct throttle g_throttles[32];
static pthread_mutex_t g_throttle_lock = PTHREAD_MUTEX_INITIALIZER;

bool log_throttle(const void *kind, unsigned long *left_out)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	bool due = true;
	*left_out = 0;
	pthread_mutex_lock(&g_throttle_lock);
	for (size_t i = 0; i < sizeof(g_throttles) / sizeof(g_throttles[0]); i++) {
		struct throttle *t = &g_throttles[i];
		if (t->kind && t->kind != kind)
			continue;
		if (t->kind && now - t->last_ms < LOG_THROTTLE_INTERVAL_S * 1000) {
			t->left_out++;
			due = false;
		} else {
			*left_out = t->left_out;
			*t = (struct throttle){kind, now, 0};
		}
		break;
	}
	pthread_mutex_unlock(&g_throttle_lock);
	return due;
}
