/* The deliverability counters' shared helpers: types, names, keys,
 * fields, days, expiry and rates (stats.h, README "Deliverability
 * counters"). */
#include "stats.h"
#include "testutil.h"

static void check_types(void)
{
	CHECK(STATS_TYPES == 11, "%d types", STATS_TYPES);
	for (int i = 0; i < STATS_TYPES; i++) {
		const char *n = stats_type_names[i];
		CHECK(stats_type_lookup(n, strlen(n)) == i, "%s", n);
		/* The label is the name without '/' and spaces. */
		char want[32];
		size_t k = 0;
		for (const char *p = n; *p; p++)
			if (*p != '/' && *p != ' ')
				want[k++] = *p;
		want[k] = '\0';
		CHECK(strcmp(stats_type_labels[i], want) == 0, "%s", stats_type_labels[i]);
	}
	CHECK(stats_type_lookup("Bounce", 6) == -1, "Bounce alone");
	CHECK(stats_type_lookup("Send ", 5) == -1, "trailing space");
	CHECK(stats_type_lookup("Subscription", 12) == -1, "Subscription");

	CHECK(strcmp(stats_type_of_event("Bounce", "Permanent", 9), "Bounce/Permanent") == 0, "p");
	CHECK(strcmp(stats_type_of_event("Bounce", "Transient", 9), "Bounce/Transient") == 0, "t");
	CHECK(strcmp(stats_type_of_event("Bounce", "Undetermined", 12), "Bounce/Undetermined") == 0,
	      "u");
	CHECK(strcmp(stats_type_of_event("Bounce", NULL, 0), "Bounce/Undetermined") == 0, "none");
	CHECK(strcmp(stats_type_of_event("Bounce", "permanent", 9), "Bounce/Undetermined") == 0,
	      "case");
	CHECK(strcmp(stats_type_of_event("Bounce", "Permanently", 9), "Bounce/Permanent") == 0,
	      "length is the caller's");
	CHECK(stats_type_of_event("Subscription", NULL, 0) == NULL, "Subscription");
	CHECK(stats_type_of_event("Bounce/Permanent", NULL, 0) == NULL, "field text is no type");
	CHECK(stats_type_of_event(NULL, NULL, 0) == NULL, "NULL");
	static const char *same[] = {"Send", "Delivery", "Complaint", "Reject", "DeliveryDelay",
				     "Open", "Click", "Rendering Failure"};
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		const char *t = stats_type_of_event(same[i], NULL, 0);
		CHECK(t && strcmp(t, same[i]) == 0, "%s", same[i]);
	}
}

static void check_dims(void)
{
	CHECK(stats_dim_code(STATS_DIM_IDENTITY) == 'i', "i");
	CHECK(stats_dim_code(STATS_DIM_CONFIGURATION_SET) == 'c', "c");
	CHECK(stats_dim_code(STATS_DIM_DOMAIN) == 'd', "d");
	enum stats_dim d = STATS_DIMS;
	CHECK(stats_dim_lookup("configuration-set", 17, &d) && d == STATS_DIM_CONFIGURATION_SET,
	      "lookup");
	CHECK(stats_dim_lookup("domain", 6, &d) && d == STATS_DIM_DOMAIN, "domain");
	CHECK(!stats_dim_lookup("domains", 7, &d), "domains");
	CHECK(!stats_dim_lookup("i", 1, &d), "code is not a name");
	CHECK(stats_names_max(STATS_DIM_IDENTITY) == 1000, "cap");
	CHECK(stats_names_max(STATS_DIM_DOMAIN) == STATS_NAMES_MAX_DOMAIN, "cap");
}

static bool valid(enum stats_dim d, const char *s)
{
	return stats_name_valid(d, s, strlen(s));
}

static void check_names(void)
{
	CHECK(valid(STATS_DIM_IDENTITY, "example.com"), "domain identity");
	CHECK(valid(STATS_DIM_IDENTITY, "sender+tag@example.com"), "address identity");
	CHECK(!valid(STATS_DIM_IDENTITY, "Example.com"), "upper case");
	CHECK(!valid(STATS_DIM_IDENTITY, ""), "empty");
	CHECK(!valid(STATS_DIM_IDENTITY, "a b"), "space");
	CHECK(!valid(STATS_DIM_IDENTITY, "a|b"), "bar");
	CHECK(!valid(STATS_DIM_IDENTITY, "a{b}"), "braces");
	CHECK(!valid(STATS_DIM_DOMAIN, "caf\xc3\xa9.fr"), "non-ASCII");
	CHECK(!valid(STATS_DIM_DOMAIN, STATS_OTHER), "(other) is never a name");
	CHECK(!valid(STATS_DIM_CONFIGURATION_SET, STATS_OTHER), "(other)");
	CHECK(valid(STATS_DIM_CONFIGURATION_SET, "My-Config_Set.1"), "config set");
	CHECK(!valid(STATS_DIM_CONFIGURATION_SET, "a@b"), "@ in config set");
	CHECK(!valid(STATS_DIM_CONFIGURATION_SET, "a+b"), "+ in config set");
	CHECK(!stats_name_valid(STATS_DIM_DOMAIN, "a\0b", 3), "NUL");
	char longname[STATS_NAME_MAX + 2];
	memset(longname, 'a', sizeof(longname));
	CHECK(stats_name_valid(STATS_DIM_DOMAIN, longname, STATS_NAME_MAX), "253");
	CHECK(!stats_name_valid(STATS_DIM_DOMAIN, longname, STATS_NAME_MAX + 1), "254");
}

static void check_time(void)
{
	char day[STATS_DAY_BUF];
	/* 2022-07-28T21:23:58.317Z */
	stats_day(1659043438317LL, day);
	CHECK(strcmp(day, "20220728") == 0, "%s", day);
	CHECK(stats_hour(1659043438317LL) == 21, "hour %d", stats_hour(1659043438317LL));
	CHECK(stats_day_start(1659043438317LL) == 1658966400000LL, "start");
	stats_day(0, day);
	CHECK(strcmp(day, "19700101") == 0, "%s", day);
	stats_day(-1, day);
	CHECK(strcmp(day, "19691231") == 0, "%s", day);
	CHECK(stats_hour(-1) == 23, "hour -1");
	/* 2024-02-29T23:59:59.999Z, then the next ms. */
	stats_day(1709251199999LL, day);
	CHECK(strcmp(day, "20240229") == 0, "%s", day);
	CHECK(stats_hour(1709251199999LL) == 23, "23");
	stats_day(1709251200000LL, day);
	CHECK(strcmp(day, "20240301") == 0, "%s", day);
	CHECK(stats_hour(1709251200000LL) == 0, "0");
	stats_day(253402300799999LL, day);
	CHECK(strcmp(day, "99991231") == 0, "%s", day);

	/* Expiry: end of 2022-07-28 (2022-07-29T00:00Z) + 30 + 1 days. */
	int64_t end = 1658966400000LL + STATS_DAY_MS;
	CHECK(stats_expire_at(1659043438317LL, 30) == end + 31 * STATS_DAY_MS, "expire");
	CHECK(stats_expire_at(1658966400000LL, 30) == stats_expire_at(end - 1, 30),
	      "same for the whole day");
	/* Countable while the day ended at most retention days ago. */
	CHECK(stats_countable(1659043438317LL, end + 30 * STATS_DAY_MS, 30), "edge");
	CHECK(!stats_countable(1659043438317LL, end + 30 * STATS_DAY_MS + 1, 30), "past");
	CHECK(stats_countable(1659043438317LL, 1659043438317LL - 1000, 30), "future");
	CHECK(stats_countable(1659043438317LL, end, 0), "retention 0: today");
	CHECK(!stats_countable(1659043438317LL, end + 1, 0), "retention 0: yesterday");
}

static void check_keys(void)
{
	char buf[128];
	char day[STATS_DAY_BUF] = "20220728";
	size_t n = stats_key(buf, sizeof(buf), "mailtrail:", STATS_DIM_IDENTITY, day);
	CHECK(n == strlen("mailtrail:stats:{i:20220728}") &&
		      strcmp(buf, "mailtrail:stats:{i:20220728}") == 0,
	      "%s", buf);
	n = stats_names_key(buf, sizeof(buf), "x:", STATS_DIM_CONFIGURATION_SET, day);
	CHECK(strcmp(buf, "x:stats:{c:20220728}:names") == 0 && n == strlen(buf), "%s", buf);
	n = stats_key(buf, sizeof(buf), "", STATS_DIM_DOMAIN, day);
	CHECK(strcmp(buf, "stats:{d:20220728}") == 0, "%s", buf);
	CHECK(stats_key(buf, 10, "mailtrail:", STATS_DIM_DOMAIN, day) == 0 && buf[0] == '\0',
	      "too small");

	n = stats_field(buf, sizeof(buf), "example.com", 7, "Bounce/Permanent");
	CHECK(strcmp(buf, "example.com|07|Bounce/Permanent") == 0 && n == strlen(buf), "%s",
	      buf);
	n = stats_field(buf, sizeof(buf), "(other)", -1, "Rendering Failure");
	CHECK(strcmp(buf, "(other)|*|Rendering Failure") == 0, "%s", buf);
	CHECK(stats_field(buf, sizeof(buf), "a", 24, "Send") == 0, "hour 24");
	char big[STATS_FIELD_MAX];
	char name[STATS_NAME_MAX + 1];
	memset(name, 'a', STATS_NAME_MAX);
	name[STATS_NAME_MAX] = '\0';
	CHECK(stats_field(big, sizeof(big), name, 23, "Bounce/Undetermined") > 0,
	      "STATS_FIELD_MAX holds the longest field");

	const char *nm;
	size_t nl;
	int hr;
	enum stats_type t;
	const char *f = "example.com|07|Bounce/Permanent";
	CHECK(stats_field_parse(f, strlen(f), &nm, &nl, &hr, &t) && nl == 11 &&
		      memcmp(nm, "example.com", 11) == 0 && hr == 7 &&
		      t == STATS_BOUNCE_PERMANENT,
	      "parse");
	f = "(other)|*|Rendering Failure";
	CHECK(stats_field_parse(f, strlen(f), &nm, &nl, &hr, &t) && nl == 7 && hr == -1 &&
		      t == STATS_RENDERING_FAILURE,
	      "parse day");
	static const char *bad[] = {"a|24|Send", "a|7|Send", "|01|Send", "a|01|Sent",
				    "a|01|", "a|*|", "a", "a|**|Send", "a|01|Send|"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!stats_field_parse(bad[i], strlen(bad[i]), &nm, &nl, &hr, &t), "%s",
		      bad[i]);
}

static void check_rates(void)
{
	struct stats_counts c = {{0}};
	struct stats_rates r;
	stats_rates_compute(&c, &r);
	CHECK(r.sends == 0 && !r.has_bounce_rate && !r.has_complaint_rate, "empty");
	CHECK(stats_status_of(&r, 100) == STATS_LOW_VOLUME, "low");
	CHECK(stats_status_of(&r, 0) == STATS_OK, "no minimum");

	/* With Send events: the divisor is Send. */
	c.n[STATS_SEND] = 1000;
	c.n[STATS_DELIVERY] = 900;
	c.n[STATS_BOUNCE_PERMANENT] = 30;
	c.n[STATS_BOUNCE_TRANSIENT] = 20;
	c.n[STATS_COMPLAINT] = 1;
	stats_rates_compute(&c, &r);
	CHECK(r.sends == 1000 && r.complaint_base == 1000, "sends %llu",
	      (unsigned long long)r.sends);
	CHECK(r.has_bounce_rate && r.bounce_rate == 0.03, "%g", r.bounce_rate);
	CHECK(r.has_complaint_rate && r.complaint_rate == 0.001, "%g", r.complaint_rate);
	/* 3% bounce > 2.5%: warning; 0.1% complaints is not above review. */
	CHECK(stats_status_of(&r, 100) == STATS_WARNING, "%s",
	      stats_status_name(stats_status_of(&r, 100)));
	CHECK(stats_status_of(&r, 1001) == STATS_LOW_VOLUME, "min volume");

	/* Without Send: deliveries + all bounces; complaints over deliveries. */
	c.n[STATS_SEND] = 0;
	c.n[STATS_BOUNCE_UNDETERMINED] = 50;
	stats_rates_compute(&c, &r);
	CHECK(r.sends == 1000 && r.complaint_base == 900, "no Send: %llu %llu",
	      (unsigned long long)r.sends, (unsigned long long)r.complaint_base);
	CHECK(r.complaint_rate > 0.0011 && r.complaint_rate < 0.0012, "%g", r.complaint_rate);
	CHECK(stats_status_of(&r, 100) == STATS_AT_RISK, "complaints above review");

	struct stats_rates s = {.sends = 100, .has_bounce_rate = true, .bounce_rate = 0.1};
	CHECK(stats_status_of(&s, 100) == STATS_AT_RISK, "at the pause threshold: at risk");
	s.bounce_rate = 0.1001;
	CHECK(stats_status_of(&s, 100) == STATS_PAUSE_RISK, "pause");
	s.bounce_rate = 0.05;
	CHECK(stats_status_of(&s, 100) == STATS_WARNING, "at review: warning");
	s.bounce_rate = 0.025;
	CHECK(stats_status_of(&s, 100) == STATS_OK, "at half: ok");
	s.bounce_rate = 0;
	s.has_complaint_rate = true;
	s.complaint_rate = 0.006;
	CHECK(stats_status_of(&s, 100) == STATS_PAUSE_RISK, "complaint pause");
	s.complaint_rate = 0.0006;
	CHECK(stats_status_of(&s, 100) == STATS_WARNING, "complaint warning");

	enum stats_status w[3] = {STATS_LOW_VOLUME, STATS_LOW_VOLUME, STATS_LOW_VOLUME};
	CHECK(stats_status_worst(w, 3) == STATS_LOW_VOLUME, "all low");
	w[1] = STATS_OK;
	CHECK(stats_status_worst(w, 3) == STATS_OK, "ok beats low");
	w[2] = STATS_AT_RISK;
	w[0] = STATS_WARNING;
	CHECK(stats_status_worst(w, 3) == STATS_AT_RISK, "worst");
	CHECK(stats_status_worst(w, 0) == STATS_LOW_VOLUME, "none");
	CHECK(strcmp(stats_status_name(STATS_PAUSE_RISK), "pause_risk") == 0, "name");
	CHECK(strcmp(stats_status_name(STATS_LOW_VOLUME), "low_volume") == 0, "name");
	CHECK(STATS_BOUNCE_WARNING == 0.025 && STATS_COMPLAINT_WARNING == 0.0005, "halves");
}

int main(void)
{
	check_types();
	check_dims();
	check_names();
	check_time();
	check_keys();
	check_rates();
	return test_report("stats");
}
