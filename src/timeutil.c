#include "mt_time.h"

#include <stdio.h>
#include <time.h>

static bool take_digits(const char **p, const char *end, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (*p >= end || **p < '0' || **p > '9')
			return false;
		v = v * 10 + (**p - '0');
		(*p)++;
	}
	*out = v;
	return true;
}

static bool take_char(const char **p, const char *end, char c)
{
	if (*p >= end || **p != c)
		return false;
	(*p)++;
	return true;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
	static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : dm[m - 1];
}

bool mt_time_parse(const char *s, size_t len, int64_t *ms_out)
{
	const char *p = s, *end = s + len;
	int y, mo, d, h, mi, sec, ms = 0;

	if (!take_digits(&p, end, 4, &y) || !take_char(&p, end, '-') ||
	    !take_digits(&p, end, 2, &mo) || !take_char(&p, end, '-') ||
	    !take_digits(&p, end, 2, &d) || !take_char(&p, end, 'T') ||
	    !take_digits(&p, end, 2, &h) || !take_char(&p, end, ':') ||
	    !take_digits(&p, end, 2, &mi) || !take_char(&p, end, ':') ||
	    !take_digits(&p, end, 2, &sec))
		return false;
	if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 ||
	    mi > 59 || sec > 60)
		return false;
	if (p < end && *p == '.') {
		p++;
		int n = 0;
		while (p < end && *p >= '0' && *p <= '9') {
			if (n < 3)
				ms = ms * 10 + (*p - '0');
			n++;
			p++;
		}
		if (n == 0 || n > 9)
			return false;
		for (; n < 3; n++)
			ms *= 10;
	}
	int offset_min = 0;
	if (take_char(&p, end, 'Z')) {
		/* UTC */
	} else if (p < end && (*p == '+' || *p == '-')) {
		int sign = *p == '-' ? -1 : 1, oh, om;
		p++;
		if (!take_digits(&p, end, 2, &oh) || !take_char(&p, end, ':') ||
		    !take_digits(&p, end, 2, &om) || oh > 23 || om > 59)
			return false;
		offset_min = sign * (oh * 60 + om);
	} else {
		return false;
	}
	if (p != end)
		return false;

	int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 +
		       sec - offset_min * 60;
	*ms_out = secs * 1000 + ms;
	return true;
}

/* y-m-d of a day count from 1970-01-01 (Howard Hinnant's
 * civil_from_days, the inverse of days_from_civil). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static char *put_digits(char *o, int64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		o[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return o + n;
}

/* Years 1000..9999 are written digit by digit: gmtime_r() takes glibc's
 * time zone lock and strftime()/snprintf() parse their formats, about
 * 0.5 us for every log line and every EVENT.  Other years (strftime's %Y
 * pads none to four digits) keep the library's way of writing them. */
void mt_time_format(int64_t ms, char buf[MT_TIME_BUF])
{
	int64_t secs = ms / 1000, rem = ms % 1000;
	if (rem < 0) {
		rem += 1000;
		secs -= 1;
	}
	int64_t days = secs / 86400, sod = secs % 86400;
	if (sod < 0) {
		sod += 86400;
		days -= 1;
	}
	int64_t y;
	int m, d;
	civil_from_days(days, &y, &m, &d);
	if (y >= 1000 && y <= 9999) {
		char *o = put_digits(buf, y, 4);
		*o++ = '-';
		o = put_digits(o, m, 2);
		*o++ = '-';
		o = put_digits(o, d, 2);
		*o++ = 'T';
		o = put_digits(o, sod / 3600, 2);
		*o++ = ':';
		o = put_digits(o, sod / 60 % 60, 2);
		*o++ = ':';
		o = put_digits(o, sod % 60, 2);
		*o++ = '.';
		o = put_digits(o, rem, 3);
		*o++ = 'Z';
		*o = '\0';
		return;
	}
	time_t t = (time_t)secs;
	struct tm tm;
	if (!gmtime_r(&t, &tm)) {
		buf[0] = '\0';
		return;
	}
	size_t n = strftime(buf, MT_TIME_BUF, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, MT_TIME_BUF - n, ".%03dZ", (int)rem);
}

int64_t mt_time_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
