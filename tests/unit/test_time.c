#include "mt_time.h"
#include "testutil.h"

static void check_parse(const char *s, bool ok, long long want)
{
	int64_t ms = -1;
	bool got = mt_time_parse(s, strlen(s), &ms);
	CHECK(got == ok, "%s: parse %d", s, got);
	if (ok && got)
		CHECK(ms == want, "%s: got %lld want %lld", s, (long long)ms, want);
}

int main(void)
{
	check_parse("1970-01-01T00:00:00Z", true, 0);
	check_parse("1970-01-01T00:00:00.000Z", true, 0);
	check_parse("2022-07-28T21:23:58.317Z", true, 1659043438317LL);
	check_parse("2022-07-28T21:23:58.3Z", true, 1659043438300LL);
	check_parse("2022-07-28T21:23:58.317999Z", true, 1659043438317LL);
	check_parse("2022-07-28T23:23:58.317+02:00", true, 1659043438317LL);
	check_parse("2024-02-29T00:00:00Z", true, 1709164800000LL);
	check_parse("2023-02-29T00:00:00Z", false, 0);
	check_parse("2022-13-01T00:00:00Z", false, 0);
	check_parse("2022-07-28 21:23:58Z", false, 0);
	check_parse("2022-07-28T21:23:58", false, 0);
	check_parse("2022-07-28T21:23:58.Z", false, 0);
	check_parse("2022-07-28T21:23:58ZX", false, 0);
	check_parse("", false, 0);
	check_parse("abcd-07-28T21:23:58Z", false, 0);

	char buf[MT_TIME_BUF];
	mt_time_format(1659043438317LL, buf);
	CHECK(strcmp(buf, "2022-07-28T21:23:58.317Z") == 0, "%s", buf);
	mt_time_format(0, buf);
	CHECK(strcmp(buf, "1970-01-01T00:00:00.000Z") == 0, "%s", buf);
	/* Digit by digit from year 1000 to 9999, gmtime/strftime outside
	 * (which pad the year to no width). */
	static const struct {
		long long ms;
		const char *want;
	} formats[] = {
		{-1, "1969-12-31T23:59:59.999Z"},
		{951782400000LL, "2000-02-29T00:00:00.000Z"},
		{-30610224000000LL, "1000-01-01T00:00:00.000Z"},
		{-30610224000001LL, "999-12-31T23:59:59.999Z"},
		{253402300799999LL, "9999-12-31T23:59:59.999Z"},
		{253402300800000LL, "10000-01-01T00:00:00.000Z"},
	};
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		mt_time_format(formats[i].ms, buf);
		CHECK(strcmp(buf, formats[i].want) == 0, "%lld: %s", formats[i].ms, buf);
	}
	CHECK(mt_time_now_ms() > 1700000000000LL, "clock");
	return test_report("time");
}
