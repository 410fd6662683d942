/* evmember.c: reading a stored member's type on its first bytes, the
 * validation that stands in for parsing, and the member -> EVENT step,
 * against the EVENTs ses.c writes for every SES message in tests/data. */
#include <dirent.h>
#include <json-c/json.h>

#include "evmember.h"
#include "ses.h"
#include "testutil.h"

/* json-c's verdict: one JSON object and nothing after it. */
static bool jsonc_object(const char *s, size_t len)
{
	struct json_tokener *tok = json_tokener_new_ex(EVMEMBER_DEPTH_MAX);
	struct json_object *o = tok ? json_tokener_parse_ex(tok, s, (int)len) : NULL;
	bool ok = o && json_object_is_type(o, json_type_object) &&
		  json_tokener_get_error(tok) == json_tokener_success &&
		  tok->char_offset == (int)len;
	json_object_put(o);
	json_tokener_free(tok);
	return ok;
}

static void check_event(const char *file, const struct ses_event *ev)
{
	const char *t = NULL;
	size_t tl = 0;
	CHECK(evmember_type(ev->json, ev->json_len, &t, &tl), "%s: no type read", file);
	CHECK(t && tl == strlen(ev->type) && memcmp(t, ev->type, tl) == 0,
	      "%s: type '%.*s', want '%s'", file, (int)tl, t ? t : "", ev->type);
	CHECK(evmember_is_object(ev->json, ev->json_len), "%s: EVENT not an object", file);
	/* Every strict prefix is not one object. */
	for (size_t cut = 0; cut < ev->json_len; cut += 1 + cut / 7)
		CHECK(!evmember_is_object(ev->json, cut), "%s: cut at %zu accepted", file, cut);
	struct buf b = {0};
	CHECK(evmember_to_event(ev->json, ev->json_len, ev->recipient, ev->time_ms, &b,
				1 << 20) == MT_E_OK, "%s: to_event", file);
	CHECK(b.len == ev->json_len && memcmp(b.p, ev->json, b.len) == 0,
	      "%s: EVENT bytes changed", file);
	CHECK(evmember_to_event(ev->json, ev->json_len, ev->recipient, ev->time_ms, &b,
				b.len + ev->json_len - 1) == MT_E_TOO_LARGE, "%s: max", file);
	CHECK(b.len == ev->json_len, "%s: a refused append changed the buffer", file);
	buf_free(&b);
}

static size_t check_data(const char *data)
{
	char dir[4096];
	size_t events = 0;
	snprintf(dir, sizeof(dir), "%s/ses", data);
	DIR *d = opendir(dir);
	CHECK(d != NULL, "cannot open %s", dir);
	for (struct dirent *e; d && (e = readdir(d));) {
		size_t n = strlen(e->d_name);
		if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0)
			continue;
		char path[8192];
		size_t len;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		char *msg = test_read_file(path, &len);
		CHECK(msg != NULL, "read %s", path);
		if (!msg)
			continue;
		struct ses_context ctx = {.sns_message_id = "0b1b5e4c-5b8a-5c1e-9e6f-aa11bb22cc33",
					  .topic_arn = "arn:aws:sns:eu-west-1:123456789012:ses"};
		struct ses_events evs;
		if (ses_events_parse(msg, len, &ctx, &evs) == MT_E_OK)
			for (size_t i = 0; i < evs.n; i++, events++)
				check_event(e->d_name, &evs.v[i]);
		ses_events_free(&evs);
		free(msg);
	}
	if (d)
		closedir(d);
	return events;
}

static void check_type(const char *m, const char *want)
{
	const char *t = NULL;
	size_t tl = 0;
	bool ok = evmember_type(m, strlen(m), &t, &tl);
	if (!want)
		CHECK(!ok, "'%s': type '%.*s' read", m, (int)tl, t ? t : "");
	else
		CHECK(ok && tl == strlen(want) && memcmp(t, want, tl) == 0,
		      "'%s': type '%.*s', want '%s'", m, (int)tl, t ? t : "", want);
}

static void check_object(const char *s, bool want)
{
	size_t len = strlen(s);
	CHECK(evmember_is_object(s, len) == want, "'%s': %d, want %d", s, !want, want);
	/* json-c is laxer (trailing commas, leading zeros, control bytes):
	 * it only confirms the accepted cases. */
	if (want)
		CHECK(jsonc_object(s, len), "json-c refuses '%s' (test case wrong)", s);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_evmember <tests/data>\n");
		return 2;
	}
	size_t events = check_data(argv[1]);
	CHECK(events >= 20, "only %zu EVENTs from tests/data/ses", events);

	check_type("{\"id\":\"a\",\"type\":\"Bounce\",\"x\":1}", "Bounce");
	check_type("{\"id\":\"a\\\"b\",\"type\":\"Rendering Failure\"}", "Rendering Failure");
	check_type("{\"id\":\"a\",\"type\":\"\"}", "");
	check_type("{\"type\":\"Bounce\",\"id\":\"a\"}", NULL);     /* another layout */
	check_type("{\"id\":\"a\", \"type\":\"Bounce\"}", NULL);    /* not ses.c's bytes */
	check_type("{\"id\":\"a\",\"type\":\"Bou\\u006ece\"}", NULL); /* escaped */
	check_type("{\"id\":\"a\",\"type\":\"Bounce", NULL);        /* cut */
	check_type("{\"id\":\"a", NULL);
	check_type("{\"id\":\"a\",\"typ", NULL);
	check_type("", NULL);

	check_object("{}", true);
	check_object(" {\"a\" : [1, -2.5e3, true, false, null, \"x\", {}, []]}\n", true);
	check_object("{\"a\":{\"b\":{\"c\":[[[]]]}},\"d\":\"\\u00e9\\n\"}", true);
	check_object("[]", false);
	check_object("\"x\"", false);
	check_object("{", false);
	check_object("{\"a\":1", false);
	check_object("{\"a\":1}x", false);
	check_object("{\"a\":1}{}", false);
	check_object("{\"a\":}", false);
	check_object("{\"a\" 1}", false);
	check_object("{,}", false);
	check_object("{\"a\":1,}", false);
	check_object("{\"a\":[1,]}", false);
	check_object("{\"a\":[1 2]}", false);
	check_object("{\"a\":tru}", false);
	check_object("{\"a\":01}", false);
	check_object("{1:2}", false);
	check_object("{\"a\":\"\x01\"}", false);
	check_object("{\"a\":\"\\x\"}", false);
	check_object("{\"a\":[}", false);
	check_object("{\"a\":{]}", false);

	/* Nesting: EVMEMBER_DEPTH_MAX levels pass, one more does not. */
	char deep[2 * EVMEMBER_DEPTH_MAX + 8];
	for (size_t depth = EVMEMBER_DEPTH_MAX; depth <= EVMEMBER_DEPTH_MAX + 1; depth++) {
		size_t n = 0;
		deep[n++] = '{';
		deep[n++] = '"';
		deep[n++] = 'a';
		deep[n++] = '"';
		deep[n++] = ':';
		for (size_t i = 1; i < depth; i++)
			deep[n++] = '[';
		for (size_t i = 1; i < depth; i++)
			deep[n++] = ']';
		deep[n++] = '}';
		CHECK(evmember_is_object(deep, n) == (depth == EVMEMBER_DEPTH_MAX),
		      "depth %zu", depth);
	}

	struct buf b = {0};
	CHECK(evmember_to_event("{\"a\":1", 6, NULL, 0, &b, 100) == MT_E_BAD_JSON, "bad");
	CHECK(b.len == 0, "a member that is not an EVENT was appended");
	buf_free(&b);
	return test_report("evmember");
}
