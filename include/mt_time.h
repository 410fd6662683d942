/* mt_time.h - the timestamps SNS and SES write, as ms since the epoch. */
#ifndef MT_TIME_H
#define MT_TIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest string mt_time_format writes, NUL included. */
#define MT_TIME_BUF 32

/* Parse "YYYY-MM-DDTHH:MM:SS[.fff...]Z" (also "+00:00"/"+hh:mm" offsets,
 * SES writes both).  Fractions beyond ms are truncated.  Returns false on
 * anything else, including out-of-range fields.  Pure. */
bool mt_time_parse(const char *s, size_t len, int64_t *ms_out);

/* Write ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" into buf (MT_TIME_BUF bytes). */
void mt_time_format(int64_t ms, char buf[MT_TIME_BUF]);

/* Wall clock, ms since the epoch. */
int64_t mt_time_now_ms(void);

#endif
