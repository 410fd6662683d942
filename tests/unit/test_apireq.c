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

/* Parses a check body; returns its error (MT_E_OK) and fills c. */
static enum mt_err check_body(const char *body, size_t len, struct apireq_check *c)
{
	const char *why = NULL;
	enum mt_err e = apireq_parse_check(body, len, c, &why);
	CHECK(why != NULL && (e == MT_E_OK || *why), "body '%.40s': no reason for %d", body, e);
	return e;
}

static void check_body_err(const char *body, enum mt_err want)
{
	struct apireq_check c;
	enum mt_err e = check_body(body, strlen(body), &c);
	CHECK(e == want, "body '%.60s': %s, want %s", body, mt_err_str(e), mt_err_str(want));
	apireq_check_free(&c);
}

/* The export's parameters "k=v&..." (no escapes); the bad one or "". */
static const char *export_query(const char *qs, struct apireq_export *e)
{
	static char buf[512];
	snprintf(buf, sizeof(buf), "%s", qs);
	apireq_export_init(e);
	for (char *save = NULL, *kv = strtok_r(buf, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(kv, '=');
		if (eq)
			*eq = '\0';
		if (!apireq_parse_export_param(e, kv, eq ? eq + 1 : NULL))
			break;
	}
	return e->bad ? e->bad : "";
}

static void check_csv(const char *in, const char *want)
{
	char out[256];
	size_t n = apireq_csv_field(in, strlen(in), out);
	CHECK(n == strlen(want) && memcmp(out, want, n) == 0, "csv '%s': '%.*s', want '%s'",
	      in, (int)n, out, want);
}

static void test_suppressions(void)
{
	check_path("/v1/suppressions", APIREQ_SUPPRESSIONS, NULL);
	check_path("/v1/suppressions/check", APIREQ_SUPPRESSIONS_CHECK, NULL);
	const char *nf[] = {"/v1/suppressions/", "/v1/suppressions/check/", "/v1/Suppressions",
			    "/v1/suppressions/checks", "/v1/suppression"};
	for (size_t i = 0; i < sizeof(nf) / sizeof(*nf); i++)
		check_path(nf[i], APIREQ_NOT_FOUND, NULL);

	/* Export parameters. */
	struct apireq_export e;
	CHECK(*export_query("", &e) == '\0' && !e.csv && !e.paged && !e.has_since &&
	      e.cursor == 0 && e.limit == APIREQ_EXPORT_LIMIT_DEFAULT, "export defaults");
	CHECK(*export_query("format=csv&since=1764582000123", &e) == '\0' && e.csv &&
	      !e.paged && e.has_since && e.since == 1764582000123, "csv since");
	CHECK(*export_query("format=ndjson&cursor=18446744073709551615", &e) == '\0' && !e.csv &&
	      e.paged && e.cursor == UINT64_MAX && e.limit == APIREQ_EXPORT_LIMIT_DEFAULT,
	      "largest cursor");
	CHECK(*export_query("limit=10000", &e) == '\0' && e.paged && e.limit == 10000, "limit");
	const char *bad[][2] = {
		{"format=CSV", "format"}, {"format=", "format"}, {"format", "format"},
		{"since=x", "since"}, {"since=-1", "since"}, {"since", "since"},
		{"cursor=18446744073709551616", "cursor"}, {"cursor=-1", "cursor"},
		{"cursor=", "cursor"}, {"cursor=1x", "cursor"}, {"cursor= 1", "cursor"},
		{"limit=0", "limit"}, {"limit=10001", "limit"}, {"limit=1&x=1", "x"},
		{"type=Bounce", "type"}, {"before=5", "before"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		const char *got = export_query(bad[i][0], &e);
		CHECK(strcmp(got, bad[i][1]) == 0 && e.why && *e.why, "export '%s': bad '%s', want '%s'",
		      bad[i][0], got, bad[i][1]);
	}
	apireq_export_init(&e);
	CHECK(!apireq_parse_export_param(&e, "limit", "0") &&
	      !apireq_parse_export_param(&e, "limit", "5") && strcmp(e.bad, "limit") == 0,
	      "export stays bad");

	/* CSV fields (RFC 4180). */
	check_csv("alice@example.com", "alice@example.com");
	check_csv("\"a,b\"@example.com", "\"\"\"a,b\"\"@example.com\"");
	check_csv("a,b@example.com", "\"a,b@example.com\"");
	check_csv("a\nb@x", "\"a\nb@x\"");
	check_csv("a\rb@x", "\"a\rb@x\"");
	check_csv("", "");

	/* Check bodies. */
	struct apireq_check c;
	static const char ok[] = " [\"Alice@Example.COM\", \"Joe <joe@example.com>\", \"nope\", "
				 "\"\", \"a\\u0000b@x.com\", \"bob@example.com\"]\r\n";
	CHECK(check_body(ok, sizeof(ok) - 1, &c) == MT_E_OK && c.n == 6, "check body");
	if (c.n == 6) {
		CHECK(c.v[0].valid && strcmp(c.v[0].normalized, "alice@example.com") == 0 &&
		      c.v[0].given_len == 17 && memcmp(c.v[0].given, "Alice@Example.COM", 17) == 0,
		      "first entry");
		CHECK(c.v[1].valid && strcmp(c.v[1].normalized, "joe@example.com") == 0, "display name");
		CHECK(!c.v[2].valid && c.v[2].normalized[0] == '\0', "not an address");
		CHECK(!c.v[3].valid && c.v[3].given_len == 0, "empty");
		CHECK(!c.v[4].valid && c.v[4].given_len == 9, "NUL inside");
		CHECK(c.v[5].valid, "last entry");
	}
	apireq_check_free(&c);
	/* The fast reader (no escapes) and json-c (an escape anywhere) give
	 * the same entries; the fast reader's point into the body. */
	static const char plain[] = "\n[ \"A@x.com\" ,\" b@y.org \",\"Joe <j@z.net>\",\"x\"\t]";
	static const char esc[] = "[\"A@x.com\",\" b@y.org \",\"Joe <j@z.net>\",\"\\u0078\"]";
	struct apireq_check c2;
	CHECK(check_body(plain, sizeof(plain) - 1, &c) == MT_E_OK && c.n == 4, "plain body");
	CHECK(check_body(esc, sizeof(esc) - 1, &c2) == MT_E_OK && c2.n == 4, "escaped body");
	CHECK(!c.root && c2.root, "the plain body is read without json-c");
	for (size_t i = 0; i < 4 && c.n == 4 && c2.n == 4; i++) {
		CHECK(c.v[i].given_len == c2.v[i].given_len &&
		      memcmp(c.v[i].given, c2.v[i].given, c.v[i].given_len) == 0 &&
		      c.v[i].valid == c2.v[i].valid &&
		      strcmp(c.v[i].normalized, c2.v[i].normalized) == 0 &&
		      c.v[i].normalized_len == strlen(c.v[i].normalized), "entry %zu", i);
		CHECK(c.v[i].given > plain && c.v[i].given < plain + sizeof(plain), "borrowed %zu", i);
	}
	apireq_check_free(&c);
	apireq_check_free(&c2);
	CHECK(check_body("[]", 2, &c) == MT_E_OK && c.n == 0, "empty array");
	apireq_check_free(&c);
	/* The length is honoured: bytes after it are not read. */
	CHECK(check_body("[\"a@b.c\"]xyz", 9, &c) == MT_E_OK && c.n == 1, "length");
	apireq_check_free(&c);
	check_body_err("", MT_E_BAD_JSON);
	check_body_err("{\"a\":1}", MT_E_BAD_JSON);
	check_body_err("\"a@b.c\"", MT_E_BAD_JSON);
	check_body_err("[\"a@b.c\"", MT_E_BAD_JSON);
	check_body_err("[\"a@b.c\"] x", MT_E_BAD_JSON);
	check_body_err("[\"a@b.c\"][]", MT_E_BAD_JSON);
	check_body_err("['a@b.c']", MT_E_BAD_JSON);
	check_body_err("[\"a@b.c\",]", MT_E_BAD_JSON);
	check_body_err("[\"\xff@b.c\"]", MT_E_BAD_JSON);
	check_body_err("[1]", MT_E_FIELD_TYPE);
	check_body_err("[\"a@b.c\", null]", MT_E_FIELD_TYPE);
	check_body_err("[{}]", MT_E_FIELD_TYPE);
	check_body_err("[{\"a\":1}]", MT_E_FIELD_TYPE);
	check_body_err("[[\"a@b.c\"]]", MT_E_FIELD_TYPE);
	check_body_err("{\"a\":[\"a@b.c\"]}", MT_E_BAD_JSON);
	check_body_err("[[[\"a@b.c\"]]]", MT_E_TOO_DEEP);
	check_body_err("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"a@b.c\"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
		       MT_E_TOO_DEEP);
	/* 1,000 addresses pass, 1,001 do not. */
	size_t cap = 20 * 1002 + 16;
	char *big = malloc(cap);
	if (big) {
		for (int n = 1000; n <= 1001; n++) {
			size_t o = 0;
			big[o++] = '[';
			for (int i = 0; i < n; i++)
				o += (size_t)snprintf(big + o, cap - o, "%s\"u%d@x.com\"", i ? "," : "", i);
			big[o++] = ']';
			enum mt_err got = check_body(big, o, &c);
			CHECK(got == (n == 1000 ? MT_E_OK : MT_E_TOO_LARGE) &&
			      (n > 1000 || (c.n == 1000 && c.v[999].valid)), "%d addresses: %s", n,
			      mt_err_str(got));
			apireq_check_free(&c);
		}
		free(big);
	}
	/* A body over APIREQ_CHECK_BODY_MAX is refused before it is parsed;
	 * one huge string within it is one invalid entry. */
	char *huge = malloc(APIREQ_CHECK_BODY_MAX + 2);
	if (huge) {
		memset(huge, 'a', APIREQ_CHECK_BODY_MAX + 1);
		huge[0] = '[';
		huge[1] = '"';
		huge[APIREQ_CHECK_BODY_MAX - 2] = '"';
		huge[APIREQ_CHECK_BODY_MAX - 1] = ']';
		CHECK(check_body(huge, APIREQ_CHECK_BODY_MAX, &c) == MT_E_OK && c.n == 1 &&
		      !c.v[0].valid, "huge string");
		apireq_check_free(&c);
		CHECK(check_body(huge, APIREQ_CHECK_BODY_MAX + 1, &c) == MT_E_TOO_LARGE, "huge body");
		apireq_check_free(&c);
		free(huge);
	}
	apireq_check_free(NULL);
}

/* The health routes' parameters "k=v&..." (no escapes), finished at now;
 * the bad one or "". */
static const char *health_query(enum apireq_route route, const char *qs, int64_t now,
				struct apireq_health *h)
{
	static char buf[1024];
	snprintf(buf, sizeof(buf), "%s", qs);
	apireq_health_init(h, route);
	for (char *save = NULL, *kv = strtok_r(buf, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(kv, '=');
		if (eq)
			*eq = '\0';
		if (!apireq_parse_health_param(h, kv, eq ? eq + 1 : NULL))
			break;
	}
	return apireq_health_finish(h, now) ? "" : h->bad;
}

static void test_health(void)
{
	const int64_t now = 1764999999999, hour = 3600000, day = 24 * hour;
	struct apireq_health h;
	check_path("/v1/health", APIREQ_HEALTH, NULL);
	check_path("/v1/health/series", APIREQ_HEALTH_SERIES, NULL);
	check_path("/v1/health/domains", APIREQ_HEALTH_DOMAINS, NULL);
	check_path("/v1/health/", APIREQ_NOT_FOUND, NULL);
	check_path("/v1/health/identities", APIREQ_NOT_FOUND, NULL);

	CHECK(*health_query(APIREQ_HEALTH, "", now, &h) == '\0' && h.dim == STATS_DIM_IDENTITY &&
	      h.limit == 100, "health defaults");
	CHECK(*health_query(APIREQ_HEALTH, "dimension=configuration-set&limit=1000", now, &h) ==
	      '\0' && h.dim == STATS_DIM_CONFIGURATION_SET && h.limit == 1000, "health parameters");
	CHECK(*health_query(APIREQ_HEALTH_DOMAINS, "", now, &h) == '\0' && h.limit == 20 &&
	      h.window == APIREQ_WINDOW_7D && !h.by_complaints, "domains defaults");
	CHECK(*health_query(APIREQ_HEALTH_DOMAINS, "window=24h&by=complaints&limit=1", now, &h) ==
	      '\0' && h.window == APIREQ_WINDOW_24H && h.by_complaints && h.limit == 1,
	      "domains parameters");

	/* Series: defaults, case folding, buckets that meet [from, to). */
	int64_t first;
	CHECK(*health_query(APIREQ_HEALTH_SERIES, "name=Example.COM", now, &h) == '\0' &&
	      strcmp(h.name, "example.com") == 0 && h.to == now && h.from == now - 7 * day &&
	      !h.step_day, "series defaults");
	CHECK(apireq_series_points(&h, &first) == 169 && first == (now - 7 * day) / hour * hour,
	      "169 hours meet 7 days not aligned");
	CHECK(*health_query(APIREQ_HEALTH_SERIES, "dimension=configuration-set&name=Tx-EU&step=day"
			    "&from=86400000&to=172800001", now, &h) == '\0' &&
	      strcmp(h.name, "Tx-EU") == 0 && h.step_day && apireq_series_points(&h, &first) == 2 &&
	      first == day, "a set's name keeps its case; days");
	CHECK(*health_query(APIREQ_HEALTH_SERIES, "name=Tx-EU&dimension=configuration-set", now,
			    &h) == '\0' && strcmp(h.name, "Tx-EU") == 0,
	      "a set's name given before its dimension keeps its case");
	CHECK(*health_query(APIREQ_HEALTH_SERIES, "name=(other)&from=0&to=7200000000", now, &h) ==
	      '\0' && apireq_series_points(&h, &first) == 2000 && first == 0, "2000 points");
	CHECK(*health_query(APIREQ_HEALTH_SERIES, "name=a.example&from=3599999&to=3600001", now,
			    &h) == '\0' && apireq_series_points(&h, &first) == 2 && first == 0,
	      "2 ms over an hour boundary: 2 buckets");
	struct {
		enum apireq_route route;
		const char *qs, *bad;
	} bad[] = {
		{APIREQ_HEALTH, "dimension=ip", "dimension"},
		{APIREQ_HEALTH, "dimension", "dimension"},
		{APIREQ_HEALTH, "limit=0", "limit"},
		{APIREQ_HEALTH, "limit=1001", "limit"},
		{APIREQ_HEALTH, "name=a", "name"},
		{APIREQ_HEALTH, "window=7d", "window"},
		{APIREQ_HEALTH_SERIES, "", "name"},
		{APIREQ_HEALTH_SERIES, "name=", "name"},
		{APIREQ_HEALTH_SERIES, "name=a b", "name"},
		{APIREQ_HEALTH_SERIES, "name=a|b", "name"},
		{APIREQ_HEALTH_SERIES, "name={x}", "name"},
		{APIREQ_HEALTH_SERIES, "name=(Other)x", "name"},
		{APIREQ_HEALTH_SERIES, "dimension=configuration-set&name=a@b", "name"},
		{APIREQ_HEALTH_SERIES, "name=a@b&dimension=configuration-set", "name"},
		{APIREQ_HEALTH_SERIES, "name=a&step=minute", "step"},
		{APIREQ_HEALTH_SERIES, "name=a&from=x", "from"},
		{APIREQ_HEALTH_SERIES, "name=a&to=-1", "to"},
		{APIREQ_HEALTH_SERIES, "name=a&from=5&to=5", "from"},
		{APIREQ_HEALTH_SERIES, "name=a&to=0", "to"},
		{APIREQ_HEALTH_SERIES, "name=(other)&from=0&to=7200000001", "from"},
		{APIREQ_HEALTH_SERIES, "name=a&limit=5", "limit"},
		{APIREQ_HEALTH_DOMAINS, "window=1d", "window"},
		{APIREQ_HEALTH_DOMAINS, "by=opens", "by"},
		{APIREQ_HEALTH_DOMAINS, "limit=1001", "limit"},
		{APIREQ_HEALTH_DOMAINS, "dimension=domain", "dimension"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		const char *got = health_query(bad[i].route, bad[i].qs, now, &h);
		CHECK(strcmp(got, bad[i].bad) == 0 && h.why && *h.why, "route %d '%s': bad '%s', want '%s'",
		      bad[i].route, bad[i].qs, got, bad[i].bad);
	}
	char longname[300];
	snprintf(longname, sizeof(longname), "name=%0253d", 0);
	CHECK(*health_query(APIREQ_HEALTH_SERIES, longname, now, &h) == '\0', "253 bytes");
	snprintf(longname, sizeof(longname), "name=%0254d", 0);
	CHECK(strcmp(health_query(APIREQ_HEALTH_SERIES, longname, now, &h), "name") == 0,
	      "254 bytes");

	/* The feed's domain filter. */
	struct apireq_query p;
	CHECK(*query(APIREQ_EVENTS, "domain=Example.ORG&type=Bounce", &p) == '\0' &&
	      strcmp(p.q.domain, "example.org") == 0, "domain folded");
	check_query(APIREQ_EVENTS, "domain=", "domain");
	check_query(APIREQ_EVENTS, "domain", "domain");
	check_query(APIREQ_EVENTS, "domain=a@b.example", "domain");
	check_query(APIREQ_EVENTS, "domain=a b", "domain");
	check_query(APIREQ_TIMELINE, "domain=example.org", "domain");
}

int main(void)
{
	test_health();
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
	test_suppressions();
	return test_report("apireq");
}
