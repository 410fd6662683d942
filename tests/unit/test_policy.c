/* The suppression policy (policy.h): statuses, the soft-bounce window,
 * reasons and their words, on EVENT JSON as ses.c writes it. */
#include "policy.h"
#include "testutil.h"

#define DAY (86400LL * 1000)

static struct policy_event soft(int64_t t, const char *status)
{
	struct policy_event e = {t, POLICY_EV_SOFT, false, ""};
	snprintf(e.status, sizeof(e.status), "%s", status);
	return e;
}

static struct policy_event of(int64_t t, enum policy_kind k)
{
	struct policy_event e = {t, k, false, ""};
	return e;
}

static void check_find(const char *s, const char *want)
{
	char out[POLICY_STATUS_MAX + 1] = "";
	bool got = policy_status_find(s, strlen(s), out);
	CHECK(got == (want != NULL), "%s: found %d", s, got);
	if (want && got)
		CHECK(strcmp(out, want) == 0, "%s: got %s want %s", s, out, want);
}

static void check_event(const char *json, enum policy_kind kind, const char *status)
{
	struct policy_event e;
	policy_event_read(json, strlen(json), 42, &e);
	CHECK(e.kind == kind && e.time_ms == 42, "%s: kind %d", json, e.kind);
	CHECK(strcmp(e.status, status) == 0, "%s: status '%s' want '%s'", json, e.status, status);
}

int main(void)
{
	struct policy p;
	struct policy_result r;
	char text[POLICY_TEXT_MAX];
	policy_default(&p);
	CHECK(p.nstatuses == 7 && p.soft_bounces == 5 && p.soft_days == 30, "defaults");
	CHECK(policy_status_listed(&p, "5.4.4") && policy_status_listed(&p, "5.1.10"), "listed");
	CHECK(!policy_status_listed(&p, "5.7.1") && !policy_status_listed(&p, "5.2.2") &&
	      !policy_status_listed(&p, ""), "not listed");

	/* The flag. */
	struct policy q = p;
	CHECK(policy_parse_statuses("5.2.2,4.4.7", &q) && q.nstatuses == 2 &&
	      strcmp(q.statuses[1], "4.4.7") == 0, "list");
	CHECK(policy_parse_statuses("none", &q) && q.nstatuses == 0, "none");
	q = p;
	static const char *const bad[] = {"", ",", "5.1.1,", "5.1", "2.0.0", "5.1.1000",
					  "5..1", "x", "5.1.1 ", "6.1.1", "5.1.1,,5.1.2",
					  "5.1.1.1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!policy_parse_statuses(bad[i], &q) && q.nstatuses == p.nstatuses,
		      "'%s' refused", bad[i]);

	/* Status codes in a diagnosticCode. */
	check_find("smtp; 550 5.1.1 user unknown", "5.1.1");
	check_find("smtp; 550-5.4.4 [mx.example] domain not found", "5.4.4");
	check_find("5.1.10", "5.1.10");
	check_find("smtp; 554 host 10.5.1.1 said no", NULL);
	check_find("version 1.2.3 then 4.4.7.", "4.4.7");
	check_find("a 5.1.1.2 b", NULL);
	check_find("v4.4.7", NULL);
	check_find("x4.4.7 5.2.1)", "5.2.1");
	check_find("5.1234.1 5.1.", NULL);
	check_find("", NULL);

	/* EVENT JSON as ses.c writes it. */
	check_event("{\"type\":\"Bounce\",\"detail\":{\"bounceType\":\"Transient\",\"status\":"
		    "\"5.4.4\",\"diagnosticCode\":\"smtp; 550 5.1.1 x\"}}",
		    POLICY_EV_SOFT, "5.4.4");
	check_event("{\"type\":\"Bounce\",\"detail\":{\"bounceType\":\"Undetermined\","
		    "\"diagnosticCode\":\"smtp; 550 5.1.10 null MX\"}}",
		    POLICY_EV_SOFT, "5.1.10");
	check_event("{\"type\":\"Bounce\",\"detail\":{\"bounceType\":\"Permanent\"}}",
		    POLICY_EV_PERMANENT, "");
	check_event("{\"type\":\"Bounce\",\"detail\":{\"bounceType\":\"Other\"}}", POLICY_EV_OTHER,
		    "");
	check_event("{\"type\":\"Delivery\"}", POLICY_EV_DELIVERY, "");
	check_event("{\"type\":\"Complaint\"}", POLICY_EV_COMPLAINT, "");
	check_event("{\"type\":\"Bounce\",\"detail\":[1]}", POLICY_EV_OTHER, "");
	check_event("[[[[[[[[[[[[\"deep\"]]]]]]]]]]]]", POLICY_EV_OTHER, "");
	check_event("not json", POLICY_EV_OTHER, "");

	/* A listed status suppresses, even with a delivery after it. */
	struct policy_event a[] = {of(300, POLICY_EV_DELIVERY), soft(200, "5.4.4")};
	policy_evaluate(&p, a, 2, &r);
	CHECK(r.reason == POLICY_STATUS && r.time_ms == 200 && strcmp(r.status, "5.4.4") == 0,
	      "status %d", r.reason);
	policy_reason_text(&p, &r, text);
	CHECK(strcmp(text, "transient bounce 5.4.4: domain does not exist (unable to route), a "
			   "status mailbox providers use for a permanent condition") == 0,
	      "%s", text);
	CHECK(strcmp(policy_reason_name(r.reason), "Bounce/Status") == 0, "name");
	/* 5.7.1 (policy) does not; nor does anything with no statuses. */
	a[1] = soft(200, "5.7.1");
	policy_evaluate(&p, a, 2, &r);
	CHECK(r.reason == POLICY_NONE, "5.7.1 %d", r.reason);
	q = p;
	policy_parse_statuses("none", &q);
	a[1] = soft(200, "5.4.4");
	policy_evaluate(&q, a, 2, &r);
	CHECK(r.reason == POLICY_NONE, "none %d", r.reason);

	/* Repeated soft bounces: 5 within 30 days suppress, 4 do not. */
	struct policy_event s[8];
	for (int i = 0; i < 5; i++)
		s[i] = soft(100 * DAY - i * 7 * DAY, "4.2.2");
	policy_evaluate(&p, s, 5, &r);
	CHECK(r.reason == POLICY_REPEATED && r.time_ms == 100 * DAY, "5 in 28 days %d", r.reason);
	policy_reason_text(&p, &r, text);
	CHECK(strcmp(text, "5 soft bounces within 30 days and no delivery since") == 0, "%s", text);
	policy_evaluate(&p, s, 4, &r);
	CHECK(r.reason == POLICY_NONE, "4 %d", r.reason);
	/* 5 spread over 40 days do not. */
	for (int i = 0; i < 5; i++)
		s[i] = soft(100 * DAY - i * 10 * DAY, "");
	policy_evaluate(&p, s, 5, &r);
	CHECK(r.reason == POLICY_NONE, "40 days %d", r.reason);
	/* Exactly 30 days apart: within. */
	for (int i = 0; i < 5; i++)
		s[i] = soft(100 * DAY - i * (30 * DAY / 4), "");
	policy_evaluate(&p, s, 5, &r);
	CHECK(r.reason == POLICY_REPEATED, "30 days %d", r.reason);
	/* A delivery after them lifts it; one among them breaks the run. */
	s[5] = s[4];
	for (int i = 4; i > 0; i--)
		s[i] = s[i - 1];
	s[0] = of(101 * DAY, POLICY_EV_DELIVERY);
	policy_evaluate(&p, s, 6, &r);
	CHECK(r.reason == POLICY_NONE, "delivery after %d", r.reason);
	/* An older window counts: a later soft bounce never lifts it. */
	struct policy_event w[6] = {soft(200 * DAY, "")};
	for (int i = 1; i < 6; i++)
		w[i] = soft(100 * DAY - i * DAY, "");
	policy_evaluate(&p, w, 6, &r);
	CHECK(r.reason == POLICY_REPEATED && r.time_ms == 99 * DAY, "older window %d %lld",
	      r.reason, (long long)r.time_ms);
	q = p;
	q.soft_bounces = 0;
	policy_evaluate(&q, w, 6, &r);
	CHECK(r.reason == POLICY_NONE, "off %d", r.reason);
	q.soft_bounces = 1;
	policy_evaluate(&q, w, 1, &r);
	CHECK(r.reason == POLICY_REPEATED && r.time_ms == 200 * DAY, "N=1");

	/* The later reason wins; a permanent bounce on a tie. */
	struct policy_event m[] = {of(500, POLICY_EV_COMPLAINT), of(400, POLICY_EV_PERMANENT)};
	policy_evaluate(&p, m, 2, &r);
	CHECK(r.reason == POLICY_COMPLAINT && r.time_ms == 500, "later");
	m[0].time_ms = 400;
	policy_evaluate(&p, m, 2, &r);
	CHECK(r.reason == POLICY_PERMANENT, "tie");

	/* Index codes. */
	struct policy_event e = soft(1, "5.1.1");
	CHECK(policy_index_code(&p, &e) == POLICY_STATUS, "code 2");
	e = soft(1, "4.4.7");
	CHECK(policy_index_code(&p, &e) == POLICY_REPEATED, "code 3");
	CHECK(policy_index_code(&q, &e) == POLICY_REPEATED, "code 3, N=1");
	q.soft_bounces = 0;
	CHECK(policy_index_code(&q, &e) == POLICY_NONE, "no code");
	e = of(1, POLICY_EV_DELIVERY);
	CHECK(policy_index_code(&p, &e) == POLICY_NONE, "delivery");

	/* The marker's digest: "1" for the old policy, else changes with it. */
	char d1[16], d2[16];
	q.nstatuses = 0;
	policy_digest(&q, d1);
	CHECK(strcmp(d1, "1") == 0, "%s", d1);
	policy_digest(&p, d1);
	q = p;
	q.soft_days = 31;
	policy_digest(&q, d2);
	CHECK(strncmp(d1, "2-", 2) == 0 && strlen(d1) == 10 && strcmp(d1, d2) != 0, "%s %s", d1,
	      d2);
	return test_report("policy");
}
