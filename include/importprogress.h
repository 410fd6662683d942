/* importprogress.h - mailtrail import's progress on stderr.
 *
 * On a terminal: one bar line, redrawn in place (carriage return) every
 * IMPORTPROGRESS_TTY_MS.  Otherwise (a log, a pipe): a plain line every
 * interval_s seconds (--progress-every), nothing redrawn.  Both say the
 * files and messages done, the rate, and, when the total is known (no
 * standard input among the files), the share of bytes read and the time
 * left at the rate so far.
 */
#ifndef IMPORTPROGRESS_H
#define IMPORTPROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define IMPORTPROGRESS_TTY_MS 200
/* Width of the bar, in characters. */
#define IMPORTPROGRESS_BAR 24

struct importprogress_counts {
	uint64_t files_done, files_total;
	uint64_t bytes_done, bytes_total; /* bytes_total 0: unknown */
	uint64_t messages, stored, duplicate, rejected, failed;
};

struct importprogress {
	FILE *out;
	bool tty;
	int64_t interval_ms;
	int64_t start_ms, last_ms;
	bool drawn; /* a bar is on the terminal's current line */
};

void importprogress_init(struct importprogress *p, FILE *out, bool tty,
			 unsigned interval_s, int64_t now_ms);

/* Draws when the interval has passed since the last time. */
void importprogress_tick(struct importprogress *p,
			 const struct importprogress_counts *c, int64_t now_ms);

/* The last state (on a terminal, the bar then a newline). */
void importprogress_end(struct importprogress *p,
			const struct importprogress_counts *c, int64_t now_ms);

/* The line itself (no newline or carriage return), into buf. */
void importprogress_format(char *buf, size_t size, bool tty,
			   const struct importprogress_counts *c, int64_t elapsed_ms);

#endif
