/* Unit tests of member.c: the compact member gives back the very EVENT
 * that ses.c wrote, for every SES message of tests/data and for the
 * shapes real data never has; full-form (older) members read back as they
 * are. */
#include <dirent.h>
#include <stdbool.h>
#include <string.h>

#include "member.h"
#include "mt_time.h"
#include "ses.h"
#include "testutil.h"

#define ARN "arn:aws:sns:us-east-1:123456789012:ses-events"

/* The EVENT of member m (compact or not) as the store rebuilds it. */
static char *event_of(const char *m, size_t len, const char *rcpt, int64_t score,
		      const char *arn)
{
	struct buf out = {0};
	enum mt_err err = member_to_event(m, len, rcpt, score, arn, arn ? strlen(arn) : 0, &out);
	CHECK(err == MT_E_OK, "member_to_event: %s", mt_err_str(err));
	return buf_take(&out);
}

/* ev -> member -> ev, byte for byte; returns the compact length. */
static size_t round_trip(const char *what, const char *ev, const char *rcpt, int64_t score)
{
	struct member_compact c;
	CHECK(member_from_event(ev, strlen(ev), score, &c) == MT_E_OK, "%s", what);
	if (!c.member)
		return 0;
	char *back = event_of(c.member, c.len, rcpt, score, c.topic_ref[0] ? ARN : NULL);
	CHECK(back && strcmp(back, ev) == 0, "%s:\n  event  %s\n  member %s\n  back   %s", what,
	      ev, c.member, back ? back : "(null)");
	/* The full form, as older versions stored it, reads back as it is. */
	char *full = event_of(ev, strlen(ev), rcpt, score, ARN);
	CHECK(full && strcmp(full, ev) == 0, "%s: full form changed: %s", what, full);
	/* Both begin with the same {"id":"...", (the redelivery rule). */
	size_t n = strcspn(ev + 7, "\"") + 9;
	CHECK(c.len >= n && memcmp(c.member, ev, n) == 0, "%s: prefix %.*s", what, (int)n,
	      c.member);
	size_t len = c.len;
	free(back);
	free(full);
	free(c.member);
	return len;
}

/* Every EVENT of every SES message in tests/data, with and without
 * headers. */
static void check_corpus(const char *data_dir)
{
	char dir[1024];
	snprintf(dir, sizeof(dir), "%s/ses", data_dir);
	DIR *d = opendir(dir);
	CHECK(d != NULL, "cannot open %s", dir);
	if (!d)
		return;
	size_t events = 0, full = 0, compact = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strstr(de->d_name, ".json"))
			continue;
		char path[2048];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		size_t len;
		char *msg = test_read_file(path, &len);
		for (int headers = 0; msg && headers < 2; headers++) {
			struct ses_context ctx = {"0000-id", ARN, headers, 0};
			struct ses_events evs;
			CHECK(ses_events_parse(msg, len, &ctx, &evs) == MT_E_OK, "%s", path);
			for (size_t i = 0; i < evs.n; i++) {
				struct member_compact c;
				member_from_event(evs.v[i].json, evs.v[i].json_len, evs.v[i].time_ms, &c);
				CHECK(c.topic_ref[0] != '\0', "%s: not compacted: %s", path, evs.v[i].json);
				free(c.member);
				compact += round_trip(path, evs.v[i].json, evs.v[i].recipient,
						      evs.v[i].time_ms);
				full += evs.v[i].json_len;
				events++;
			}
			ses_events_free(&evs);
		}
		free(msg);
	}
	closedir(d);
	CHECK(events > 40, "only %zu events in the corpus", events);
	CHECK(compact * 10 < full * 7, "compact members %zu bytes, full %zu", compact, full);
	printf("corpus: %zu events, %zu bytes as EVENTs, %zu as members\n", events, full, compact);
}

#define EVENT_FMT \
	"{\"id\":\"6f2a-id\",\"type\":\"Delivery\",\"time\":\"2026-11-01T10:00:00.123Z\"," \
	"\"recipient\":%s,\"topicArn\":\"" ARN "\",\"mail\":{%s}," \
	"\"detail\":{\"smtpResponse\":\"250 ok\",\"processingTimeMillis\":12}}"
static const int64_t T = 1793527200123; /* 2026-11-01T10:00:00.123Z */

static char *event(const char *rcpt_json, const char *mail)
{
	char *s = malloc(4096);
	snprintf(s, 4096, EVENT_FMT, rcpt_json, mail);
	return s;
}

/* The compact member of a known EVENT, as it is stored. */
static void check_golden(void)
{
	char *ev = event("\"bob@example.com\"",
			 "\"messageId\":\"0100-mid\",\"source\":\"s@example.net\","
			 "\"timestamp\":\"2026-11-01T09:59:58.100Z\","
			 "\"destination\":[\"bob@example.com\"]");
	struct member_compact c;
	CHECK(member_from_event(ev, strlen(ev), T, &c) == MT_E_OK, "golden");
	char ref[MEMBER_TOPIC_REF_LEN + 1], want[512];
	member_topic_ref(ARN, strlen(ARN), ref);
	snprintf(want, sizeof(want),
		 "{\"id\":\"6f2a-id\",\"type\":\"Delivery\",\"t\":\"%s\",\"m\":\"0100-mid\","
		 "\"s\":\"s@example.net\",\"ts\":-2023,\"x\":{\"smtpResponse\":\"250 ok\","
		 "\"processingTimeMillis\":12}}", ref);
	CHECK(c.member && strcmp(c.member, want) == 0, "golden member %s", c.member);
	CHECK(strcmp(c.topic_ref, ref) == 0 && c.arn_len == strlen(ARN) &&
	      memcmp(c.arn, ARN, c.arn_len) == 0, "topic %s", c.topic_ref);
	char found[MEMBER_TOPIC_REF_LEN + 1];
	CHECK(member_find_topic_ref(c.member, c.len, found) && strcmp(found, ref) == 0, "ref");
	CHECK(!member_find_topic_ref(ev, strlen(ev), found), "a full EVENT has no ref");
	/* An unknown topic: the event still reads, topicArn null. */
	char *back = event_of(c.member, c.len, "bob@example.com", T, NULL);
	CHECK(back && strstr(back, "\"topicArn\":null,\"mail\""), "unknown topic: %s", back);
	free(back);
	free(c.member);
	free(ev);
}

/* What real data never has, but a message can. */
static void check_shapes(void)
{
	static const struct {
		const char *what, *rcpt_json, *rcpt, *mail;
	} cases[] = {
		{"no destination", "\"bob@example.com\"", "bob@example.com",
		 "\"messageId\":\"m\",\"source\":\"s@example.net\",\"timestamp\":\"2026-11-01T09:59:58.100Z\""},
		{"other destinations", "\"bob@example.com\"", "bob@example.com",
		 "\"messageId\":\"m\",\"destination\":[\"Bob <Bob@Example.com>\"]"},
		{"two destinations", "\"bob@example.com\"", "bob@example.com",
		 "\"messageId\":\"m\",\"destination\":[\"bob@example.com\",\"x@example.com\"]"},
		{"destinationCount and headers", "\"bob@example.com\"", "bob@example.com",
		 "\"messageId\":\"m\",\"destination\":[\"bob@example.com\"],\"destinationCount\":11,"
		 "\"commonHeaders\":{\"subject\":\"hi \\\"there\\\"\",\"to\":[\"bob@example.com\"]}"},
		{"quote in the address", "\"\\\"b\\\\ob\\\"@example.com\"", "\"b\\ob\"@example.com",
		 "\"messageId\":\"m\",\"destination\":[\"\\\"b\\\\ob\\\"@example.com\"]"},
		{"timestamp with an offset", "\"bob@example.com\"", "bob@example.com",
		 "\"messageId\":\"m\",\"timestamp\":\"2026-11-01T09:59:58+00:00\""},
		{"timestamp without ms", "\"bob@example.com\"", "bob@example.com",
		 "\"messageId\":\"m\",\"timestamp\":\"2026-11-01T09:59:58Z\""},
		{"timestamp centuries away", "\"bob@example.com\"", "bob@example.com",
		 "\"messageId\":\"m\",\"timestamp\":\"1000-01-01T00:00:00.000Z\""},
		{"timestamp not a time", "\"bob@example.com\"", "bob@example.com",
		 "\"messageId\":\"m\",\"timestamp\":\"yesterday\""},
		{"empty mail", "\"bob@example.com\"", "bob@example.com", ""},
		{"SES message id, timestamp = time", "\"bob@example.com\"", "bob@example.com",
		 "\"messageId\":\"0100018c4b0d12ff-5678abcd-1234-5678-9abc-def012345678-000000\","
		 "\"timestamp\":\"2026-11-01T10:00:00.123Z\""},
		{"message id in capitals", "\"bob@example.com\"", "bob@example.com",
		 "\"messageId\":\"0100018C4B0D12FF-5678abcd-1234-5678-9abc-def012345678-000000\""},
		{"message id, 7 digits", "\"bob@example.com\"", "bob@example.com",
		 "\"messageId\":\"0100018c4b0d12ff-5678abcd-1234-5678-9abc-def01234567-0000000\""},
		{"UTF-8 and slash", "\"b\xc3\xa9/b@example.com\"", "b\xc3\xa9/b@example.com",
		 "\"messageId\":\"m/\xe2\x82\xac\",\"destination\":[\"b\xc3\xa9/b@example.com\"]"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *ev = event(cases[i].rcpt_json, cases[i].mail);
		round_trip(cases[i].what, ev, cases[i].rcpt, T);
		free(ev);
	}
	/* EVENTs that are not in the shape compacted are stored whole. */
	static const char *const odd[] = {
		"{\"id\":\"x\",\"type\":\"Send\",\"time\":\"2026-11-01T10:00:00.124Z\",\"recipient\":\"a@b\","
		"\"topicArn\":\"t\",\"mail\":{},\"detail\":{}}", /* time is not the score */
		"{\"id\":null,\"type\":\"Send\",\"time\":\"2026-11-01T10:00:00.123Z\",\"recipient\":\"a@b\","
		"\"topicArn\":\"t\",\"mail\":{},\"detail\":{}}",
		"{\"id\":\"x\",\"type\":\"Send\",\"time\":\"2026-11-01T10:00:00.123Z\",\"recipient\":\"a@b\","
		"\"topicArn\":null,\"mail\":{},\"detail\":{}}",
		"{\"id\":\"x\",\"type\":\"Send\",\"time\":\"2026-11-01T10:00:00.123Z\",\"recipient\":\"a@b\","
		"\"topicArn\":\"t\",\"mail\":{\"source\":\"s\",\"messageId\":\"m\"},\"detail\":{}}",
		"{\"id\":\"x\",\"type\":\"Send\",\"time\":\"2026-11-01T10:00:00.123Z\",\"recipient\":\"a@b\","
		"\"topicArn\":\"t\",\"mail\":{\"other\":1},\"detail\":{}}",
		"{\"id\":\"x\",\"type\":\"Send\",\"time\":\"2026-11-01T10:00:00.123Z\",\"recipient\":\"a@b\","
		"\"topicArn\":\"t\",\"mail\":{},\"detail\":{}} ",
		"{\"id\":\"x\"}", "", "{", "[1]",
	};
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		struct member_compact c;
		CHECK(member_from_event(odd[i], strlen(odd[i]), T, &c) == MT_E_OK, "odd %zu", i);
		CHECK(c.member && strcmp(c.member, odd[i]) == 0 && c.topic_ref[0] == '\0',
		      "odd %zu compacted: %s", i, c.member);
		free(c.member);
	}
}

/* Members that are neither form (or broken compact ones) come back as
 * they are, whatever their bytes. */
static void check_garbage(void)
{
	static const char *const bad[] = {
		"", "{", "}", "{\"id\":\"x\",\"type\":\"Send\"}",
		"{\"id\":\"x\",\"type\":\"Send\",\"t\":\"0123456789abcde\",\"detail\":{}}",
		"{\"id\":\"x\",\"type\":\"Send\",\"t\":\"0123456789abcdef\",\"s\":\"a\",\"m\":\"b\",\"detail\":{}}",
		"{\"id\":\"x\",\"type\":\"Send\",\"t\":\"0123456789abcdef\",\"ts\":99999999999999999,\"detail\":{}}",
		"{\"id\":\"x\",\"type\":\"Send\",\"t\":\"0123456789abcdef\",\"ts\":1.5,\"detail\":{}}",
		"{\"id\":\"x\",\"type\":\"Send\",\"t\":\"0123456789abcdef\",\"detail\":[]}",
		"{\"id\":\"x\",\"type\":\"Send\",\"t\":\"0123456789abcdef\",\"detail\":{}}x",
		"{\"id\":\"x\",\"type\":\"Send\",\"t\":\"0123456789abcdef\",\"detail\":{\"a\":\"\x01\"}}",
		"{\"id\":\"x\",\"type\":\"Send\",\"r\":5,\"t\":\"0123456789abcdef\",\"detail\":{}}",
		"{\"id\":\"x\",\"type\":\"Send\",\"t\":\"0123456789abcdef\",\"x\":[]}",
		"{\"id\":\"x\",\"type\":\"Send\",\"t\":\"0123456789abcdef\",\"x\":{},\"y\":1}",
		"{\"id\":\"x\",\"type\":\"Send\",\"t\":\"0123456789abcdef\",\"p\":\"AQAYxLDRL_9WeKvNEjRWeJq83vASNFZ4!00000\"}",
		"{\"id\":\"x\",\"type\":\"Send\",\"t\":\"0123456789abcdef\",\"p\":\"AQAYxLDRL_9WeKvNEjRWeJq83vASNFZ4000x00\"}",
		"{\"id\":\"x\",\"type\":\"Send\",\"t\":\"0123456789abcdef\",\"p\":\"short\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *back = event_of(bad[i], strlen(bad[i]), "a@b", T, ARN);
		CHECK(back && strcmp(back, bad[i]) == 0, "garbage %zu changed: %s", i, back);
		free(back);
	}
	/* Deep nesting stops at MEMBER_DEPTH_MAX. */
	char deep[4096] = "{\"id\":\"x\",\"type\":\"Send\",\"t\":\"0123456789abcdef\",\"detail\":{\"a\":";
	size_t n = strlen(deep);
	for (int i = 0; i < 1000; i++)
		deep[n++] = '[';
	deep[n] = '\0';
	char *back = event_of(deep, n, "a@b", T, ARN);
	CHECK(back && strcmp(back, deep) == 0, "deep member changed");
	free(back);
	/* A compact member with a negative and a zero "ts". */
	const char *ok = "{\"id\":\"x\",\"type\":\"Send\",\"t\":\"0123456789abcdef\",\"ts\":0,\"d\":0}";
	back = event_of(ok, strlen(ok), "a@b", T, "arn:x");
	CHECK(back && strcmp(back, "{\"id\":\"x\",\"type\":\"Send\",\"time\":\"2026-11-01T10:00:00.123Z\","
			      "\"recipient\":\"a@b\",\"topicArn\":\"arn:x\",\"mail\":{\"timestamp\":"
			      "\"2026-11-01T10:00:00.123Z\"},\"detail\":{}}") == 0, "ts 0: %s", back);
	free(back);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
		return 2;
	}
	check_corpus(argv[1]);
	check_golden();
	check_shapes();
	check_garbage();
	return test_report("member");
}
