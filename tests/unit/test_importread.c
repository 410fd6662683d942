/* importread: the two shapes of a file, line numbers, blank lines, CRLF,
 * messages over the limit (never buffered), and the trusted id. */
#include "importread.h"
#include "testutil.h"

struct got {
	char text[2048]; /* "line:message|" or "line:TOO_LARGE|" per message */
	size_t len;
	int stop_after; /* 0: never stop */
	int n;
};

static bool on_message(void *ctx, const char *msg, size_t len, unsigned long line,
		       enum mt_err err)
{
	struct got *g = ctx;
	int w = err == MT_E_OK
		? snprintf(g->text + g->len, sizeof(g->text) - g->len, "%lu:%.*s|", line,
			   (int)len, msg)
		: snprintf(g->text + g->len, sizeof(g->text) - g->len, "%lu:%s|", line,
			   err == MT_E_TOO_LARGE ? "TOO_LARGE" : "?");
	if (w > 0 && (size_t)w < sizeof(g->text) - g->len)
		g->len += (size_t)w;
	return !(g->stop_after && ++g->n >= g->stop_after);
}

/* in read whole and one byte at a time: both must give want; shape too. */
static void check(const char *in, size_t max, const char *want,
		  enum importread_shape shape)
{
	for (int bytewise = 0; bytewise < 2; bytewise++) {
		struct got g = {0};
		struct importread r;
		importread_init(&r, max);
		size_t n = strlen(in);
		if (bytewise) {
			for (size_t i = 0; i < n; i++)
				importread_feed(&r, in + i, 1, on_message, &g);
		} else {
			importread_feed(&r, in, n, on_message, &g);
		}
		importread_end(&r, on_message, &g);
		CHECK(strcmp(g.text, want) == 0, "%s%s: got '%s', want '%s'",
		      bytewise ? "bytewise " : "", in, g.text, want);
		CHECK(r.shape == shape, "%s: shape %d, want %d", in, r.shape, shape);
		importread_free(&r);
	}
}

int main(void)
{
	/* NDJSON: the first non-blank line is one object. */
	check("{\"a\":1}\n{\"b\":2}\n", 100, "1:{\"a\":1}|2:{\"b\":2}|", IMPORTREAD_NDJSON);
	check("\n  \r\n{\"a\":1}\r\n\r\n{\"b\":2}", 100, "3:{\"a\":1}|5:{\"b\":2}|",
	      IMPORTREAD_NDJSON);
	check("{\"a\":1}\n{\"b\"\n{}\n", 100, "1:{\"a\":1}|2:{\"b\"|3:{}|", IMPORTREAD_NDJSON);
	/* A document: anything else; the whole file, trimmed. */
	check("{\n  \"a\": 1\n}\n\n", 100, "1:{\n  \"a\": 1\n}|", IMPORTREAD_DOCUMENT);
	check("\n\n{\n \"a\": {\"b\": 2}}\n", 100, "3:{\n \"a\": {\"b\": 2}}|",
	      IMPORTREAD_DOCUMENT);
	check("not json\nat all", 100, "1:not json\nat all|", IMPORTREAD_DOCUMENT);
	check("", 100, "", IMPORTREAD_UNDECIDED);
	check(" \n\t\n", 100, "", IMPORTREAD_UNDECIDED);
	/* Over the limit: counted, skipped to the end of the line or file. */
	check("{\"a\":1}\n{\"long\":\"xxxxxxxxxxxxxxxxxxxx\"}\n{}\n", 10,
	      "1:{\"a\":1}|2:TOO_LARGE|3:{}|", IMPORTREAD_NDJSON);
	check("{\"long\":\"xxxxxxxxxxxxxxxxxxxx\"}\n{}\n", 10, "1:TOO_LARGE|2:{}|",
	      IMPORTREAD_NDJSON);
	check("{\n\"long\":\"xxxxxxxxxxxxxxxxxxxx\"}\n", 10, "1:TOO_LARGE|", IMPORTREAD_DOCUMENT);
	check("{\"a\":1}\n{\"bb\":22}\n", 8, "1:{\"a\":1}|2:TOO_LARGE|", IMPORTREAD_NDJSON);

	/* A document past the limit needs no more reading. */
	struct importread r;
	struct got g = {0};
	importread_init(&r, 4);
	importread_feed(&r, "{\n  \"a\": 1", 10, on_message, &g);
	CHECK(!importread_wants_more(&r), "a document past the limit");
	importread_free(&r);
	/* The callback stops the reading. */
	importread_init(&r, 100);
	g = (struct got){.stop_after = 1};
	CHECK(!importread_feed(&r, "{}\n{}\n{}\n", 9, on_message, &g), "stopped");
	CHECK(strcmp(g.text, "1:{}|") == 0, "stopped after one: %s", g.text);
	importread_free(&r);

	/* The trusted id: SHA-256's first 128 bits as a version 8 UUID
	 * (the value from Python's hashlib, README "--trusted-ses"). */
	char id[IMPORTREAD_ID_LEN + 1];
	const char *ev = "{\"eventType\":\"Bounce\"}";
	importread_trusted_id(ev, strlen(ev), id);
	CHECK(strcmp(id, "724b8816-8b92-81ca-ba6e-fc579e19991b") == 0, "id %s", id);
	return test_report("importread");
}
