/* The query API's request parsing: routes, addresses, parameters. */
#include "apireq.h"
#include "testutil.h"

static void check_path(const char *path, enum apireq_route want, const char *want_addr)
{
	char addr[SES_ADDRESS_MAX + 1] = "";
	enum apireq_route r = apireq_parse_path(path, strlen(path), addr);
	CHECK(r == want, "%s: route %d, want %d", path, r, want);
	if (want_addr && r == want)
		CHECK(strcmp(addr, want_addr) == 0, "%s: address '%s', want '%s'", path, addr, want_addr);
}

/* Parses "k=v&k2&..." (already decoded, no escapes) for route; returns the
 * name of the bad parameter or "" when all are fine. */
static const char *query(enum apireq_route route, const char *qs, struct apireq_query *p)
{
	static char buf[512];
	snprintf(buf, sizeof(buf), "%s", qs);
	apireq_query_init(p, route);
	for (char *save = NULL, *kv = strtok_r(buf, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(kv, '=');
		if (eq)
			*eq = '\0';
		if (!apireq_parse_param(p, kv, eq ? eq + 1 : NULL))
			break;
	}
	return apireq_query_finish(p) ? "" : p->bad;
}

static void check_query(enum apireq_route route, const char *qs, const char *want_bad)
{
	struct apireq_query p;
	const char *got = query(route, qs, &p);
	CHECK(strcmp(got, want_bad) == 0, "route %d '%s': bad '%s' (%s), want '%s'",
	      route, qs, got, p.why ? p.why : "", want_bad);
	if (*got)
		CHECK(p.why && *p.why, "'%s': no reason", qs);
}

int main(void)
{
	check_path("/v1/events", APIREQ_EVENTS, NULL);
	check_path("/v1/recipients/alice@example.com", APIREQ_SUMMARY, "alice@example.com");
	check_path("/v1/recipients/Alice@Example.COM/events", APIREQ_TIMELINE, "alice@example.com");
	check_path("/v1/recipients/Joe <joe@example.com>", APIREQ_SUMMARY, "joe@example.com");
	check_path("/v1/recipients/a+tag@example.com/events", APIREQ_TIMELINE, "a+tag@example.com");
	check_path("/v1/recipients/bounce@simulator.amazonses.com", APIREQ_SUMMARY,
		   "bounce@simulator.amazonses.com");
	/* "/events" with nothing before it is taken as the address. */
	check_path("/v1/recipients/events", APIREQ_BAD_ADDRESS, NULL);
	check_path("/v1/recipients//events", APIREQ_BAD_ADDRESS, NULL);
	check_path("/", APIREQ_CONSOLE, NULL);
	check_path("/app.js", APIREQ_CONSOLE, NULL);
	check_path("/v1", APIREQ_CONSOLE, NULL);
	check_path("/v2/events", APIREQ_CONSOLE, NULL);
	const char *not_found[] = {
		"/v1/", "/v1/nope", "/v1/recipients", "/v1/recipients/", "/v1/events/x",
		"/v1/events/", "/v1/recipient/alice@example.com", "/v1/EVENTS",
	};
	for (size_t i = 0; i < sizeof(not_found) / sizeof(*not_found); i++)
		check_path(not_found[i], APIREQ_NOT_FOUND, NULL);
	const char *bad_addr[] = {
		"/v1/recipients/not-an-address", "/v1/recipients/a@",
		"/v1/recipients/@example.com/events", "/v1/recipients/a@b@example.com",
		"/v1/recipients/alice smith@example.com", "/v1/recipients/alice@example.com/",
		"/v1/recipients/alice@example.com/events/", "/v1/recipients/alice@example.com/events/x",
		"/v1/recipients/alice@example.com\x7fx/events",
	};
	for (size_t i = 0; i < sizeof(bad_addr) / sizeof(*bad_addr); i++)
		check_path(bad_addr[i], APIREQ_BAD_ADDRESS, NULL);
	/* A NUL inside the path (the length says where it ends) is no address. */
	char addr[SES_ADDRESS_MAX + 1];
	static const char nul[] = "/v1/recipients/alice@example.com\0x/events";
	CHECK(apireq_parse_path(nul, sizeof(nul) - 1, addr) == APIREQ_BAD_ADDRESS, "NUL in path");
	CHECK(apireq_parse_path("/v1/events", 3, addr) == APIREQ_CONSOLE, "length is honoured");

	/* Parameters. */
	struct apireq_query p;
	CHECK(*query(APIREQ_TIMELINE, "", &p) == '\0' && p.q.limit == APIREQ_LIMIT_DEFAULT &&
	      !p.q.has_before && !p.q.has_after && !p.q.type, "defaults");
	CHECK(*query(APIREQ_TIMELINE, "limit=20&before=1764582000123&after=5&type=Rendering Failure", &p) == '\0' &&
	      p.q.limit == 20 && p.q.has_before && p.q.before == 1764582000123 &&
	      p.q.has_after && p.q.after == 5 && strcmp(p.q.type, "Rendering Failure") == 0,
	      "all parameters");
	CHECK(*query(APIREQ_EVENTS, "limit=1000&before=0&type=Bounce", &p) == '\0' &&
	      p.q.limit == 1000 && p.q.has_before && p.q.before == 0, "feed parameters");
	const char *fine[] = {"limit=1", "limit=1000", "after=5&before=7", "type=DeliveryDelay",
			      "before=9999999999999999", "limit=0050"};
	for (size_t i = 0; i < sizeof(fine) / sizeof(*fine); i++)
		check_query(APIREQ_TIMELINE, fine[i], "");
	struct {
		enum apireq_route route;
		const char *qs, *bad;
	} bad[] = {
		{APIREQ_TIMELINE, "limit=0", "limit"},
		{APIREQ_TIMELINE, "limit=1001", "limit"},
		{APIREQ_TIMELINE, "limit=-1", "limit"},
		{APIREQ_TIMELINE, "limit= 5", "limit"},
		{APIREQ_TIMELINE, "limit=5x", "limit"},
		{APIREQ_TIMELINE, "limit=", "limit"},
		{APIREQ_TIMELINE, "limit", "limit"},
		{APIREQ_TIMELINE, "limit=99999999999999999999", "limit"},
		{APIREQ_TIMELINE, "before=10000000000000000", "before"},
		{APIREQ_TIMELINE, "before=+5", "before"},
		{APIREQ_TIMELINE, "before=1.5", "before"},
		{APIREQ_TIMELINE, "after=x", "after"},
		{APIREQ_TIMELINE, "after=7&before=7", "after"},
		{APIREQ_TIMELINE, "before=5&after=9", "after"},
		{APIREQ_TIMELINE, "type=bounce", "type"},
		{APIREQ_TIMELINE, "type=", "type"},
		{APIREQ_TIMELINE, "type", "type"},
		{APIREQ_TIMELINE, "type=Bounce\x7f", "type"},
		{APIREQ_TIMELINE, "Limit=5", "Limit"},
		{APIREQ_TIMELINE, "limit=5&foo=1", "foo"},
		{APIREQ_TIMELINE, "foo=1&limit=0", "foo"},
		{APIREQ_TIMELINE, "limit=0&foo=1", "limit"},
		{APIREQ_EVENTS, "after=5", "after"},
		{APIREQ_SUMMARY, "limit=5", "limit"},
		{APIREQ_SUMMARY, "x", "x"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		check_query(bad[i].route, bad[i].qs, bad[i].bad);
	/* Once bad, later parameters change nothing. */
	apireq_query_init(&p, APIREQ_TIMELINE);
	CHECK(!apireq_parse_param(&p, "limit", "0"), "limit=0 refused");
	CHECK(!apireq_parse_param(&p, "limit", "5") && strcmp(p.bad, "limit") == 0 &&
	      !apireq_query_finish(&p), "stays bad");
	return test_report("apireq");
}
