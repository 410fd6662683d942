/* metrics.c's identity counters: mailtrail_identity_events_total's label
 * values (bounded at METRICS_IDENTITIES_MAX identities, then (other);
 * escaped as the text format wants) and its type labels. */
#include "metrics.h"
#include "stats.h"
#include "testutil.h"

static char *render(void)
{
	size_t len = 0;
	char *text = metrics_render(&len);
	CHECK(text && strlen(text) == len, "render");
	return text;
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

int main(void)
{
	metrics_count_identity_event("example.com", "Bounce/Permanent");
	metrics_count_identity_event("example.com", "Bounce/Permanent");
	metrics_count_identity_event("example.com", "Rendering Failure");
	metrics_count_identity_event("example.com", NULL);       /* Subscription */
	metrics_count_identity_event("example.com", "Bounce");   /* no count type */
	metrics_count_identity_event(STATS_OTHER, "Send");
	metrics_count_identity_event(NULL, "Send");
	metrics_count_identity_event("", "Send");
	/* Names are valid ones (ses.c), but the text format is kept whatever
	 * a caller passes. */
	metrics_count_identity_event("a\"b\\c\nd", "Open");
	char *text = render();
	CHECK(has_line(text, "# TYPE mailtrail_identity_events_total counter"), "%s", text);
	CHECK(has_line(text, "mailtrail_identity_events_total{identity=\"example.com\","
			     "type=\"BouncePermanent\"} 2"), "%s", text);
	CHECK(has_line(text, "mailtrail_identity_events_total{identity=\"example.com\","
			     "type=\"RenderingFailure\"} 1"), "%s", text);
	CHECK(has_line(text, "mailtrail_identity_events_total{identity=\"(other)\","
			     "type=\"Send\"} 3"), "%s", text);
	CHECK(has_line(text, "mailtrail_identity_events_total{identity=\"a\\\"b\\\\c\\nd\","
			     "type=\"Open\"} 1"), "%s", text);
	CHECK(!strstr(text, "identity=\"example.com\",type=\"Bounce\"") &&
		      !strstr(text, "identity=\"example.com\",type=\"Subscription\""),
	      "%s", text);
	free(text);

	/* 2 identities so far: 98 more get their own label, then (other). */
	for (int i = 0; i < METRICS_IDENTITIES_MAX + 20; i++) {
		char name[32];
		snprintf(name, sizeof(name), "d%d.example", i);
		metrics_count_identity_event(name, "Delivery");
	}
	metrics_count_identity_event("example.com", "Delivery"); /* still its own */
	text = render();
	int labels = 0;
	for (const char *p = text; (p = strstr(p, "type=\"Delivery\"}")) != NULL; p++)
		labels++;
	CHECK(labels == METRICS_IDENTITIES_MAX + 1, "%d Delivery series", labels);
	CHECK(has_line(text, "mailtrail_identity_events_total{identity=\"d97.example\","
			     "type=\"Delivery\"} 1"), "the 100th identity has its label");
	CHECK(!strstr(text, "identity=\"d98.example\""), "the 101st has not");
	CHECK(has_line(text, "mailtrail_identity_events_total{identity=\"(other)\","
			     "type=\"Delivery\"} 22"), "%s", text);
	CHECK(has_line(text, "mailtrail_identity_events_total{identity=\"example.com\","
			     "type=\"Delivery\"} 1"), "listed identity keeps counting");
	free(text);
	return test_report("metrics");
}
