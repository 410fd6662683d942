#include "sns.h"
#include "testutil.h"

static enum mt_err parse(const char *body, struct sns_message *m)
{
	return sns_envelope_parse(body, strlen(body), m);
}

/* A minimal valid Notification with a replaceable tail. */
#define NOTE_HEAD                                                              \
	"{\"Type\":\"Notification\",\"MessageId\":\"0b71e34e-42c3-486a-9e32-b1928ec994b5\",\"TopicArn\":\"arn:t\","  \
	"\"Timestamp\":\"2022-07-28T21:23:58.317Z\",\"Signature\":\"AAAA\","        \
	"\"SigningCertURL\":\"https://sns.us-east-1.amazonaws.com/x.pem\""

static void expect(const char *body, enum mt_err want)
{
	struct sns_message m;
	enum mt_err got = parse(body, &m);
	CHECK(got == want, "%s: got %s want %s", body, mt_err_str(got), mt_err_str(want));
	sns_message_free(&m);
}

static void expect_tbs(const char *body, const char *want)
{
	struct sns_message m;
	enum mt_err err = parse(body, &m);
	CHECK(err == MT_E_OK, "%s: %s", body, mt_err_str(err));
	if (err == MT_E_OK) {
		size_t len;
		char *tbs = sns_string_to_sign(&m, &len);
		CHECK(tbs && len == strlen(want) && memcmp(tbs, want, len) == 0,
		      "string to sign\n got: [%s]\nwant: [%s]", tbs, want);
		free(tbs);
	}
	sns_message_free(&m);
}

/* NOTE_HEAD's Notification with field (a JSON key) set to the JSON string
 * literal value (quotes included), or, value NULL, without it. */
static void expect_field(const char *field, const char *value, enum mt_err want)
{
	struct {
		const char *key, *value;
	} fields[] = {
		{"Type", "\"Notification\""},
		{"MessageId", "\"0b71e34e-42c3-486a-9e32-b1928ec994b5\""},
		{"TopicArn", "\"arn:aws:sns:us-east-1:123456789012:t\""},
		{"Subject", "\"s\""},
		{"Message", "\"hi\""},
		{"Timestamp", "\"2022-07-28T21:23:58.317Z\""},
		{"SignatureVersion", "\"1\""},
		{"Signature", "\"AAAA\""},
		{"SigningCertURL", "\"https://sns.us-east-1.amazonaws.com/x.pem\""},
	};
	char b[2048];
	size_t n = (size_t)snprintf(b, sizeof(b), "{");
	for (size_t i = 0; i < sizeof(fields) / sizeof(*fields); i++) {
		const char *v = strcmp(fields[i].key, field) == 0 ? value : fields[i].value;
		if (v)
			n += (size_t)snprintf(b + n, sizeof(b) - n, "%s\"%s\":%s",
					      n > 1 ? "," : "", fields[i].key, v);
	}
	snprintf(b + n, sizeof(b) - n, "}");
	expect(b, want);
}

/* The string to sign reads back one way only (issue 11, item 5). */
static void check_unambiguous(void)
{
	/* The attack: Subject dropped and appended to the MessageId signs the
	 * same bytes; it must not parse. */
	const char *attack =
		"{\"Type\":\"Notification\",\"MessageId\":\"0b71e34e-42c3-486a-9e32-b1928ec994b5\\nSubject\\ns\","
		"\"TopicArn\":\"arn:t\",\"Message\":\"hi\",\"Timestamp\":\"2022-07-28T21:23:58.317Z\","
		"\"SignatureVersion\":\"1\",\"Signature\":\"AAAA\",\"SigningCertURL\":\"https://s/x.pem\"}";
	expect(attack, MT_E_CONTROL_CHAR);

	/* Every signed field but Message: no control character (Type is one
	 * of three exact words, anything else is MT_E_UNKNOWN_TYPE). */
	expect_field("Type", "\"Notification\\n\"", MT_E_UNKNOWN_TYPE);
	const char *fields[] = {"MessageId", "TopicArn", "Subject", "Timestamp"};
	const char *controls[] = {"\\n", "\\r", "\\t", "\\u0001", "\\u001f", "\\u007f", "\x7f"};
	const char *good[] = {"\"0b71e34e-42c3-486a-9e32-b1928ec994b5\"",
			      "\"arn:t\"", "\"s\"", "\"2022-07-28T21:23:58.317Z\""};
	for (size_t i = 0; i < sizeof(fields) / sizeof(*fields); i++)
		for (size_t c = 0; c < sizeof(controls) / sizeof(*controls); c++) {
			char v[128];
			/* the control character just before the closing quote */
			snprintf(v, sizeof(v), "%.*s%s\"", (int)strlen(good[i]) - 1, good[i],
				 controls[c]);
			expect_field(fields[i], v, MT_E_CONTROL_CHAR);
		}
	expect_field("Subject", "\"x\\u0000\"", MT_E_FIELD_TYPE); /* NUL: as before */
	/* Message may hold any of them; so may a non-ASCII Subject. */
	expect_field("Message", "\"a\\nb\\tc\\u0001\\u007f\"", MT_E_OK);
	expect_field("Subject", "\"Gr\xc3\xbc\xc3\x9f\xe2\x80\x94" "e \\u00e4\\u0080\"", MT_E_OK);
	expect_field("Subject", NULL, MT_E_OK);

	/* MessageId: a UUID, either case. */
	expect_field("MessageId", "\"D7D7AF71-9E0B-42B6-8619-6120BF89F212\"", MT_E_OK);
	const char *bad_ids[] = {
		"\"\"", "\"m-1\"", "\"0b71e34e-42c3-486a-9e32-b1928ec994b\"",
		"\"0b71e34e-42c3-486a-9e32-b1928ec994b55\"", "\"0b71e34e042c3-486a-9e32-b1928ec994b5\"",
		"\"0b71e34e-42c3-486a-9e32-b1928ec994bg\"", "\"{0b71e34e-42c3-486a-9e32-b1928ec994b}\"",
		"\"0b71e34e-42c3-486a-9e32b-1928ec994b5\"", "\" b71e34e-42c3-486a-9e32-b1928ec994b5\"",
	};
	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(*bad_ids); i++)
		expect_field("MessageId", bad_ids[i], MT_E_MESSAGE_ID);

	/* Confirmations: Token and SubscribeURL too. */
	const char *conf_head =
		"{\"Type\":\"SubscriptionConfirmation\",\"MessageId\":\"0b71e34e-42c3-486a-9e32-b1928ec994b5\","
		"\"TopicArn\":\"arn:t\",\"Message\":\"m\\nm\",\"Timestamp\":\"2022-07-28T21:23:58.317Z\","
		"\"SignatureVersion\":\"1\",\"Signature\":\"AAAA\",\"SigningCertURL\":\"https://s/x.pem\",";
	const struct {
		const char *tail;
		enum mt_err want;
	} conf[] = {
		{"\"Token\":\"tok\",\"SubscribeURL\":\"https://s/\"}", MT_E_OK},
		{"\"Token\":\"tok\\nTopicArn\",\"SubscribeURL\":\"https://s/\"}", MT_E_CONTROL_CHAR},
		{"\"Token\":\"tok\",\"SubscribeURL\":\"https://s/\\r\"}", MT_E_CONTROL_CHAR},
		{"\"Token\":\"tok\",\"SubscribeURL\":\"https://s/\\u001b\"}", MT_E_CONTROL_CHAR},
	};
	for (size_t i = 0; i < sizeof(conf) / sizeof(*conf); i++) {
		char b[1024];
		snprintf(b, sizeof(b), "%s%s", conf_head, conf[i].tail);
		expect(b, conf[i].want);
	}
}

int main(int argc, char **argv)
{
	/* The string to sign: order, Subject only when present and not null. */
	expect_tbs(NOTE_HEAD ",\"Message\":\"hi\",\"SignatureVersion\":\"1\"}",
		   "Message\nhi\nMessageId\n0b71e34e-42c3-486a-9e32-b1928ec994b5\nTimestamp\n2022-07-28T21:23:58.317Z\n"
		   "TopicArn\narn:t\nType\nNotification\n");
	expect_tbs(NOTE_HEAD ",\"Message\":\"hi\",\"Subject\":null,\"SignatureVersion\":\"1\"}",
		   "Message\nhi\nMessageId\n0b71e34e-42c3-486a-9e32-b1928ec994b5\nTimestamp\n2022-07-28T21:23:58.317Z\n"
		   "TopicArn\narn:t\nType\nNotification\n");
	expect_tbs(NOTE_HEAD ",\"Message\":\"hi\",\"Subject\":\"\",\"SignatureVersion\":\"2\"}",
		   "Message\nhi\nMessageId\n0b71e34e-42c3-486a-9e32-b1928ec994b5\nSubject\n\nTimestamp\n2022-07-28T21:23:58.317Z\n"
		   "TopicArn\narn:t\nType\nNotification\n");
	/* Escapes decode to the bytes SNS signed; surrogate pairs to UTF-8. */
	expect_tbs(NOTE_HEAD ",\"Message\":\"a\\\"b\\\\c\\/d\\n\\t\\u00e9\\u20ac\\ud83d\\ude00\","
			     "\"Subject\":\"caf\xc3\xa9\",\"SignatureVersion\":\"1\"}",
		   "Message\na\"b\\c/d\n\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\nMessageId\n0b71e34e-42c3-486a-9e32-b1928ec994b5\n"
		   "Subject\ncaf\xc3\xa9\nTimestamp\n2022-07-28T21:23:58.317Z\n"
		   "TopicArn\narn:t\nType\nNotification\n");
	expect_tbs("{\"Type\":\"SubscriptionConfirmation\",\"MessageId\":\"D7D7AF71-9E0B-42B6-8619-6120BF89F212\",\"Token\":\"tok\","
		   "\"TopicArn\":\"arn:t\",\"Message\":\"msg\",\"SubscribeURL\":\"https://s/\","
		   "\"Timestamp\":\"2022-07-28T21:23:58.317Z\",\"SignatureVersion\":\"1\","
		   "\"Signature\":\"AAAA\",\"SigningCertURL\":\"https://s/x.pem\",\"Subject\":\"ignored\"}",
		   "Message\nmsg\nMessageId\nD7D7AF71-9E0B-42B6-8619-6120BF89F212\nSubscribeURL\nhttps://s/\nTimestamp\n"
		   "2022-07-28T21:23:58.317Z\nToken\ntok\nTopicArn\narn:t\nType\nSubscriptionConfirmation\n");

	/* Structure errors. */
	expect("", MT_E_BAD_JSON);
	expect("[]", MT_E_BAD_JSON);
	expect("\"x\"", MT_E_BAD_JSON);
	expect("{", MT_E_BAD_JSON);
	/* Found by libFuzzer: a known key as the very last bytes. */
	expect("{\"Message\":", MT_E_BAD_JSON);
	expect("{\"Subject\" : ", MT_E_BAD_JSON);
	expect("{\"x\":", MT_E_BAD_JSON);
	expect(NOTE_HEAD ",\"Message\":\"hi\",\"SignatureVersion\":\"1\"} x", MT_E_BAD_JSON);
	expect(NOTE_HEAD ",\"Message\":\"hi\",\"SignatureVersion\":\"1\",}", MT_E_BAD_JSON);
	expect(NOTE_HEAD ",\"Message\":\"h\ti\",\"SignatureVersion\":\"1\"}", MT_E_BAD_JSON);
	expect(NOTE_HEAD ",\"Message\":\"\\ud83d\",\"SignatureVersion\":\"1\"}", MT_E_BAD_JSON);
	expect(NOTE_HEAD ",\"Message\":\"\\ude00\",\"SignatureVersion\":\"1\"}", MT_E_BAD_JSON);
	expect(NOTE_HEAD ",\"Message\":\"\\x\",\"SignatureVersion\":\"1\"}", MT_E_BAD_JSON);
	expect(NOTE_HEAD ",\"Message\":\"\xff\",\"SignatureVersion\":\"1\"}", MT_E_BAD_JSON);
	expect(NOTE_HEAD ",\"Message\":\"\xc0\xaf\",\"SignatureVersion\":\"1\"}", MT_E_BAD_JSON);
	expect(NOTE_HEAD ",\"Message\":\"hi\",\"SignatureVersion\":\"1\",\"n\":01}", MT_E_BAD_JSON);
	expect(NOTE_HEAD ",\"Message\":\"hi\",\"SignatureVersion\":\"1\",\"n\":tru}", MT_E_BAD_JSON);
	expect(NOTE_HEAD ",\"Message\":\"hi\",\"SignatureVersion\":\"1\","
			 "\"MessageAttributes\":{\"a\":{\"Type\":\"String\",\"Value\":\"v\"}},"
			 "\"n\":[1,-2.5e3,true,false,null]}", MT_E_OK);
	/* Duplicate keys, at the top and inside. */
	expect(NOTE_HEAD ",\"Message\":\"hi\",\"Message\":\"evil\",\"SignatureVersion\":\"1\"}",
	       MT_E_DUP_KEY);
	expect(NOTE_HEAD ",\"Message\":\"hi\",\"SignatureVersion\":\"1\",\"a\":{\"k\":1,\"k\":2}}",
	       MT_E_DUP_KEY);
	expect(NOTE_HEAD ",\"Message\":\"hi\",\"M\\u0065ssage\":\"evil\",\"SignatureVersion\":\"1\"}",
	       MT_E_DUP_KEY);
	/* Depth. */
	{
		char deep[400] = NOTE_HEAD ",\"Message\":\"hi\",\"SignatureVersion\":\"1\",\"d\":";
		size_t n = strlen(deep);
		for (int i = 0; i < SNS_JSON_DEPTH_MAX + 2; i++)
			deep[n++] = '[';
		for (int i = 0; i < SNS_JSON_DEPTH_MAX + 2; i++)
			deep[n++] = ']';
		deep[n++] = '}';
		deep[n] = '\0';
		expect(deep, MT_E_TOO_DEEP);
	}
	/* Types and presence. */
	expect(NOTE_HEAD ",\"Message\":\"hi\",\"SignatureVersion\":1}", MT_E_FIELD_TYPE);
	expect(NOTE_HEAD ",\"Message\":{\"a\":1},\"SignatureVersion\":\"1\"}", MT_E_FIELD_TYPE);
	expect(NOTE_HEAD ",\"Message\":null,\"SignatureVersion\":\"1\"}", MT_E_FIELD_TYPE);
	expect(NOTE_HEAD ",\"Message\":\"a\\u0000b\",\"SignatureVersion\":\"1\"}", MT_E_OK);
	expect(NOTE_HEAD ",\"Message\":\"hi\",\"Subject\":\"a\\u0000b\",\"SignatureVersion\":\"1\"}",
	       MT_E_FIELD_TYPE);
	expect(NOTE_HEAD ",\"Message\":\"hi\"}", MT_E_SIG_VERSION);
	expect(NOTE_HEAD ",\"Message\":\"hi\",\"SignatureVersion\":\"3\"}", MT_E_SIG_VERSION);
	expect(NOTE_HEAD ",\"Message\":\"hi\",\"SignatureVersion\":\"\"}", MT_E_SIG_VERSION);
	expect(NOTE_HEAD ",\"SignatureVersion\":\"1\"}", MT_E_MISSING_FIELD);
	expect("{\"notificationType\":\"Bounce\",\"mail\":{}}", MT_E_UNSIGNED);
	expect("{\"Type\":\"Notification\",\"MessageId\":\"D7D7AF71-9E0B-42B6-8619-6120BF89F212\",\"TopicArn\":\"t\",\"Message\":\"x\","
	       "\"Timestamp\":\"2022-07-28T21:23:58.317Z\",\"SignatureVersion\":\"1\","
	       "\"SigningCertURL\":\"https://s/x.pem\"}", MT_E_UNSIGNED);
	expect("{\"Type\":\"Other\",\"Signature\":\"AAAA\"}", MT_E_UNKNOWN_TYPE);
	expect(NOTE_HEAD ",\"Message\":\"hi\",\"SignatureVersion\":\"1\"}", MT_E_OK);
	expect("{\"Type\":\"SubscriptionConfirmation\",\"MessageId\":\"D7D7AF71-9E0B-42B6-8619-6120BF89F212\",\"TopicArn\":\"arn:t\","
	       "\"Message\":\"msg\",\"Timestamp\":\"2022-07-28T21:23:58.317Z\",\"SignatureVersion\":\"1\","
	       "\"Signature\":\"AAAA\",\"SigningCertURL\":\"https://s/x.pem\"}", MT_E_MISSING_FIELD);
	{
		char b[400];
		snprintf(b, sizeof(b), "%s", NOTE_HEAD ",\"Message\":\"hi\",\"SignatureVersion\":\"1\"}");
		char *ts = strstr(b, "2022-07-28T");
		memcpy(ts, "2022-07-28 ", 11);
		expect(b, MT_E_BAD_TIMESTAMP);
	}

	check_unambiguous();

	/* Every real delivery parses. */
	if (argc > 1) {
		const char *files[] = {
			"real-sns/aws-php-sns-message-validator/http-fixture-1.json",
			"real-sns/aws-sdk-java-v2-sns-message-manager-7506a1e3/test-subscription-confirmation.json",
			"real-sns/snspublisher-readme+jetbrains-cert-56e67fcb/msg3-compressed.json",
			"real-sns/django-ses/ses-bounce-notification-no-subject.json",
		};
		for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++) {
			char path[1024];
			snprintf(path, sizeof(path), "%s/%s", argv[1], files[i]);
			size_t len;
			char *body = test_read_file(path, &len);
			CHECK(body, "read %s", path);
			if (!body)
				continue;
			struct sns_message m;
			enum mt_err err = sns_envelope_parse(body, len, &m);
			CHECK(err == MT_E_OK, "%s: %s", files[i], mt_err_str(err));
			sns_message_free(&m);
			free(body);
		}
	}
	return test_report("sns");
}
