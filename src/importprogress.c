#include "importprogress.h"

#include <inttypes.h>
#include <string.h>

void importprogress_init(struct importprogress *p, FILE *out, bool tty,
			 unsigned interval_s, int64_t now_ms)
{
	memset(p, 0, sizeof(*p));
	p->out = out;
	p->tty = tty;
	p->interval_ms = tty ? IMPORTPROGRESS_TTY_MS : (int64_t)interval_s * 1000;
	p->start_ms = p->last_ms = now_ms;
}

/* "1:02:03" or "2:03". */
static void format_duration(char *buf, size_t size, int64_t s)
{
	if (s >= 3600)
		snprintf(buf, size, "%" PRId64 ":%02d:%02d", s / 3600, (int)(s / 60 % 60),
			 (int)(s % 60));
	else
		snprintf(buf, size, "%d:%02d", (int)(s / 60), (int)(s % 60));
}

void importprogress_format(char *buf, size_t size, bool tty,
			   const struct importprogress_counts *c, int64_t elapsed_ms)
{
	double secs = elapsed_ms > 0 ? (double)elapsed_ms / 1000.0 : 0.0;
	uint64_t rate = secs > 0.05 ? (uint64_t)((double)c->messages / secs) : 0;
	bool known = c->bytes_total > 0;
	double frac = known ? (double)c->bytes_done / (double)c->bytes_total : 0.0;
	if (frac > 1.0)
		frac = 1.0;
	char eta[32] = "?", took[32];
	if (known && frac > 0.0)
		format_duration(eta, sizeof(eta), (int64_t)(secs * (1.0 - frac) / frac + 0.5));
	format_duration(took, sizeof(took), (int64_t)secs);
	if (tty) {
		char bar[IMPORTPROGRESS_BAR + 1];
		size_t full = known ? (size_t)(frac * IMPORTPROGRESS_BAR) : 0;
		for (size_t i = 0; i < IMPORTPROGRESS_BAR; i++)
			bar[i] = i < full ? '#' : known ? '.' : '?';
		bar[IMPORTPROGRESS_BAR] = '\0';
		snprintf(buf, size,
			 "[%s] %3d%%  files %" PRIu64 "/%" PRIu64 "  messages %" PRIu64
			 " (rejected %" PRIu64 ", failed %" PRIu64 ")  %" PRIu64 "/s  ETA %s",
			 bar, (int)(frac * 100), c->files_done, c->files_total, c->messages,
			 c->rejected, c->failed, rate, known ? eta : "?");
		return;
	}
	char pct[16] = "";
	if (known)
		snprintf(pct, sizeof(pct), " (%d%%)", (int)(frac * 100));
	snprintf(buf, size,
		 "import: files %" PRIu64 "/%" PRIu64 "%s, messages %" PRIu64 " (stored %" PRIu64
		 ", duplicate %" PRIu64 ", rejected %" PRIu64 ", failed %" PRIu64 "), %" PRIu64
		 "/s, elapsed %s, ETA %s",
		 c->files_done, c->files_total, pct, c->messages, c->stored, c->duplicate,
		 c->rejected, c->failed, rate, took, known ? eta : "unknown");
}

static void draw(struct importprogress *p, const struct importprogress_counts *c,
		 int64_t now_ms)
{
	char line[512];
	importprogress_format(line, sizeof(line), p->tty, c, now_ms - p->start_ms);
	if (p->tty) {
		/* Erase to the end of the line: a shorter line leaves no tail. */
		fprintf(p->out, "\r%s\033[K", line);
		p->drawn = true;
	} else {
		fprintf(p->out, "%s\n", line);
	}
	fflush(p->out);
	p->last_ms = now_ms;
}

void importprogress_tick(struct importprogress *p,
			 const struct importprogress_counts *c, int64_t now_ms)
{
	if (now_ms - p->last_ms >= p->interval_ms)
		draw(p, c, now_ms);
}

void importprogress_end(struct importprogress *p,
			const struct importprogress_counts *c, int64_t now_ms)
{
	draw(p, c, now_ms);
	if (p->tty)
		fputc('\n', p->out);
	fflush(p->out);
}
