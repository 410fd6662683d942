/* test_ses.c - ses_events_parse and ses_address_normalize against the real
 * SES payloads in tests/data/ses (see SOURCES.md there) and hand-made edge
 * cases.
 *
 * Usage: test_ses DATA_DIR  (DATA_DIR = tests/data).  Exit 0 when every
 * check passes; each failed check prints one line.
 *
 * The expectations in files[] were read off the files by hand: for every
 * well-formed SES file the type, the exact recipients in order, the event
 * time and the key detail fields.  Every *.json in tests/data/ses must have
 * a row, so a new file cannot slip in untested.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "mt_time.h"
#include "ses.h"

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

static int failures;

static void fail_at(int line, const char *what, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail_at(int line, const char *what, const char *fmt, ...)
{
	va_list ap;

	failures++;
	fprintf(stdout, "FAIL test_ses.c:%d [%s] ", line, what);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
}

#define CHECK(cond, what, ...)                                                 \
	do {                                                                   \
		if (!(cond))                                                   \
			fail_at(__LINE__, what, __VA_ARGS__);                  \
	} while (0)

#define Q(s) "\"" s "\""

/* ------------------------------------------------------------------ */
/* Expectations for every file in tests/data/ses                       */

#define MAX_RCPT 4
#define MAX_CHECKS 8

struct dcheck {
	int rcpt;         /* index of the event (recipient) checked */
	const char *key;  /* detail key; NULL ends the list */
	const char *json; /* exact JSON of the value; NULL: must be absent */
};

struct expect {
	const char *file;
	const char *type; /* NULL: no events and keep_raw */
	const char *time; /* EVENT "time" of every event of the message */
	const char *rcpt[MAX_RCPT + 1];
	struct dcheck detail[MAX_CHECKS];
};

#define NOT_INDEXED(f) {f, NULL, NULL, {NULL}, {{0, NULL, NULL}}}

static const struct expect files[] = {
	{"awsdoc-event-bounce.json", "Bounce", "2017-08-05T00:41:02.669Z",
	 {"recipient@example.com"},
	 {{0, "bounceType", Q("Permanent")},
	  {0, "bounceSubType", Q("General")},
	  {0, "action", Q("failed")},
	  {0, "status", Q("5.1.1")},
	  {0, "diagnosticCode", Q("smtp; 550 5.1.1 user unknown")},
	  {0, "reportingMTA", Q("dsn; mta.example.com")}}},
	{"awsdoc-event-click.json", "Click", "2017-08-09T23:51:25.570Z",
	 {"recipient@example.com"},
	 {{0, "ipAddress", Q("192.0.2.1")},
	  {0, "link",
	   Q("http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html")},
	  {0, "userAgent",
	   Q("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/60.0.3112.90 Safari/537.36")},
	  {0, "linkTags", NULL}}},
	{"awsdoc-event-complaint.json", "Complaint", "2017-08-05T00:41:02.669Z",
	 {"recipient@example.com"},
	 {{0, "complaintFeedbackType", Q("abuse")},
	  {0, "userAgent",
	   Q("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/60.0.3112.90 Safari/537.36")},
	  {0, "complaintSubType", NULL},
	  {0, "feedbackId", NULL}}},
	{"awsdoc-event-delivery.json", "Delivery", "2016-10-19T23:21:04.133Z",
	 {"recipient@example.com"},
	 {{0, "smtpResponse", Q("250 2.6.0 Message received")},
	  {0, "processingTimeMillis", "11893"},
	  {0, "reportingMTA", Q("mta.example.com")},
	  {0, "remoteMtaIp", NULL}}},
	{"awsdoc-event-deliverydelay.json", "DeliveryDelay",
	 "2020-06-16T00:25:40.095Z",
	 {"recipient@example.com"},
	 {{0, "delayType", Q("TransientCommunicationFailure")},
	  {0, "expirationTime", Q("2020-06-16T00:25:40.914Z")},
	  {0, "status", Q("4.4.1")},
	  {0, "diagnosticCode",
	   Q("smtp; 421 4.4.1 Unable to connect to remote host")}}},
	{"awsdoc-event-open.json", "Open", "2017-08-09T22:00:19.652Z",
	 {"recipient@example.com"},
	 {{0, "ipAddress", Q("192.0.2.1")},
	  {0, "userAgent",
	   Q("Mozilla/5.0 (iPhone; CPU iPhone OS 10_3_3 like Mac OS X) AppleWebKit/603.3.8 (KHTML, like Gecko) Mobile/14G60")}}},
	/* The AWS example really has destination = the sender (its
	 * commonHeaders.to says recipient@): destination is what counts. */
	{"awsdoc-event-reject.json", "Reject", "2016-10-14T17:38:15.211Z",
	 {"sender@example.com"},
	 {{0, "reason", Q("Bad content")}}},
	{"awsdoc-event-rendering-failure.json", "Rendering Failure",
	 "2018-01-22T18:43:06.197Z",
	 {"recipient@example.com"},
	 {{0, "templateName", Q("MyTemplate")},
	  {0, "errorMessage",
	   Q("Attribute 'attributeName' is not present in the rendering data.")}}},
	{"awsdoc-event-send.json", "Send", "2016-10-14T05:02:16.645Z",
	 {"recipient@example.com"},
	 {{0, NULL, NULL}}},
	{"awsdoc-event-subscription.json", "Subscription",
	 "2022-01-12T01:00:17.910Z",
	 {"recipient@example.com"},
	 {{0, "contactList", Q("ContactListName")},
	  {0, "source", Q("UnsubscribeHeader")},
	  {0, "newTopicPreferences",
	   "{\"unsubscribeAll\":true,\"topicSubscriptionStatus\":[{\"topicName\":\"ExampleTopicName\",\"subscriptionStatus\":\"OptOut\"}]}"},
	  {0, "oldTopicPreferences", NULL}}},
	NOT_INDEXED("awsdoc-fragment-bounce-object-two-recipients-failed-and-delayed.json"),
	NOT_INDEXED("awsdoc-fragment-complaint-object.json"),
	NOT_INDEXED("awsdoc-fragment-delivery-object-simulator.json"),
	NOT_INDEXED("awsdoc-fragment-mail-object-with-headers.json"),
	/* mary@ is in destination but did not bounce. */
	{"awsdoc-identity-bounce-permanent-general-no-dsn-two-recipients.json",
	 "Bounce", "2016-01-27T14:59:38.237Z",
	 {"jane@example.com", "richard@example.com"},
	 {{0, "bounceType", Q("Permanent")},
	  {0, "bounceSubType", Q("General")},
	  {0, "action", NULL},
	  {0, "status", NULL},
	  {0, "diagnosticCode", NULL},
	  {0, "reportingMTA", NULL},
	  {1, "bounceType", Q("Permanent")},
	  {1, "remoteMtaIp", NULL}}},
	{"awsdoc-identity-bounce-permanent-general-with-dsn.json", "Bounce",
	 "2016-01-27T14:59:38.237Z",
	 {"jane@example.com"},
	 {{0, "reportingMTA", Q("dns; email.example.com")},
	  {0, "status", Q("5.1.1")},
	  {0, "action", Q("failed")},
	  {0, "diagnosticCode", Q("smtp; 550 5.1.1 <jane@example.com>... User")}}},
	{"awsdoc-identity-complaint-no-feedback-report.json", "Complaint",
	 "2016-01-27T14:59:38.237Z",
	 {"richard@example.com"},
	 {{0, "complaintFeedbackType", NULL},
	  {0, "userAgent", NULL}}},
	{"awsdoc-identity-complaint-with-feedback-report.json", "Complaint",
	 "2016-01-27T14:59:38.237Z",
	 {"richard@example.com"},
	 {{0, "complaintFeedbackType", Q("abuse")},
	  {0, "userAgent", Q("AnyCompany Feedback Loop (V0.01)")}}},
	{"awsdoc-identity-delivery.json", "Delivery", "2016-01-27T14:59:38.237Z",
	 {"jane@example.com"},
	 {{0, "processingTimeMillis", "546"},
	  {0, "smtpResponse", Q("250 ok:  Message 64111812 accepted")},
	  {0, "reportingMTA", Q("a8-70.smtp-out.amazonses.com")},
	  {0, "remoteMtaIp", Q("127.0.2.0")}}},
	{"guardian-event-bounce-transient-general-dmarc-5.7.1-multiline.json",
	 "Bounce", "2019-05-17T16:40:06.766Z",
	 {"user@company.com"},
	 {{0, "bounceType", Q("Transient")},
	  {0, "status", Q("5.7.1")},
	  {0, "reportingMTA", Q("dsn; a7-23.smtp-out.eu-west-1.amazonses.com")},
	  {0, "diagnosticCode",
	   Q("smtp; 550-5.7.1 Unauthenticated email from deploydomain.co.uk is not accepted due to\\n"
	     "550-5.7.1 domain's DMARC policy. Please contact the administrator of\\n"
	     "550-5.7.1 deploydomain.co.uk domain if this was a legitimate mail. Please visit\\n"
	     "550-5.7.1  https://support.google.com/mail/answer/2451690 to learn about the\\n"
	     "550 5.7.1 DMARC initiative.")}}},
	/* Two destinations, one bounced; an empty diagnosticCode is kept. */
	{"lambda-sns-janis-identity-bounce-permanent-empty-diagnosticcode-two-destinations.json",
	 "Bounce", "2020-02-04T20:48:45.160Z",
	 {"joe.doe@example.com"},
	 {{0, "diagnosticCode", Q("")},
	  {0, "status", Q("5.1.1")},
	  {0, "reportingMTA", Q("dsn; a8-61.smtp-out.amazonses.com")},
	  {0, "remoteMtaIp", NULL}}},
	{"lambda-sns-lambdalocal-identity-delivery-no-headers.json", "Delivery",
	 "2017-07-05T20:01:21.302Z",
	 {"jeff@amazon.com"},
	 {{0, "processingTimeMillis", "529"},
	  {0, "remoteMtaIp", Q("207.171.188.9")},
	  {0, "smtpResponse", Q("250 ok: Message 122614849 accepted")}}},
	{"relay-identity-bounce-permanent-general-simulator.json", "Bounce",
	 "2022-08-03T17:34:55.000Z",
	 {"bounce@simulator.amazonses.com"},
	 {{0, "reportingMTA", Q("dns; a8-43.smtp-out.amazonses.com")},
	  {0, "status", Q("5.1.1")},
	  {0, "diagnosticCode", Q("smtp; 550 5.1.1 user unknown")}}},
	{"relay-identity-bounce-permanent-general-suppressionlist-simulator.json",
	 "Bounce", "2022-08-03T17:40:08.000Z",
	 {"suppressionlist@simulator.amazonses.com"},
	 {{0, "diagnosticCode",
	   Q("smtp; 550 5.1.1 user unknown ( blacklisted address: suppressionlist@simulator.amazonses.com )")}}},
	{"relay-identity-bounce-transient-general-ooto-no-dsn.json", "Bounce",
	 "2022-08-03T17:36:16.000Z",
	 {"ooto@simulator.amazonses.com"},
	 {{0, "bounceType", Q("Transient")},
	  {0, "action", NULL},
	  {0, "reportingMTA", NULL}}},
	{"relay-identity-complaint-simulator-subtype-null.json", "Complaint",
	 "2022-08-03T17:38:31.000Z",
	 {"complaint@simulator.amazonses.com"},
	 {{0, "complaintSubType", NULL},
	  {0, "userAgent", Q("Amazon SES Mailbox Simulator")},
	  {0, "complaintFeedbackType", Q("abuse")}}},
	{"relay-identity-delivery-simulator-complaint-address.json", "Delivery",
	 "2022-08-03T17:38:31.509Z",
	 {"complaint@simulator.amazonses.com"},
	 {{0, "processingTimeMillis", "461"},
	  {0, "reportingMTA", Q("a48-113.smtp-out.amazonses.com")}}},
	{"relay-identity-delivery-simulator-ooto.json", "Delivery",
	 "2022-08-03T17:36:16.512Z",
	 {"ooto@simulator.amazonses.com"},
	 {{0, "processingTimeMillis", "454"},
	  {0, "remoteMtaIp", Q("54.86.94.241")}}},
	{"relay-identity-delivery-simulator-success.json", "Delivery",
	 "2022-08-03T17:31:45.690Z",
	 {"success@simulator.amazonses.com"},
	 {{0, "processingTimeMillis", "543"},
	  {0, "reportingMTA", Q("a48-111.smtp-out.amazonses.com")},
	  {0, "smtpResponse", Q("250 2.6.0 Message received")}}},
	/* -07:00 offsets: 14:59:38.605-07:00 is 21:59:38.605Z. */
	{"sns-djangoses-event-bounce-permanent-failed-and-delayed.json", "Bounce",
	 "2012-05-25T21:59:38.605Z",
	 {"recipient1@example.com", "recipient2@example.com"},
	 {{0, "action", Q("failed")},
	  {0, "status", Q("5.0.0")},
	  {0, "diagnosticCode", Q("smtp; 550 user unknown")},
	  {0, "reportingMTA", Q("example.com")},
	  {1, "action", Q("delayed")},
	  {1, "status", Q("4.0.0")},
	  {1, "diagnosticCode", NULL},
	  {1, "reportingMTA", Q("example.com")}}},
	{"sns-djangoses-event-click-linktags-null.json", "Click",
	 "2021-01-26T14:38:55.540Z",
	 {"recipient1@example.com", "recipient2@example.com",
	  "recipient3@example.com", "recipient4@example.com"},
	 {{0, "link", Q("github.com/django-ses/django-ses")},
	  {0, "ipAddress", Q("11.111.11.111")},
	  {0, "linkTags", NULL},
	  {3, "link", Q("github.com/django-ses/django-ses")}}},
	{"sns-djangoses-event-delivery-empty-smtpresponse.json", "Delivery",
	 "2021-01-26T14:38:39.270Z",
	 {"recipient1@example.com"},
	 {{0, "smtpResponse", Q("")},
	  {0, "reportingMTA", Q("")},
	  {0, "processingTimeMillis", "1796"}}},
	{"sns-djangoses-event-open.json", "Open", "2021-01-26T14:38:52.115Z",
	 {"recipient1@example.com", "recipient2@example.com",
	  "recipient3@example.com", "recipient4@example.com"},
	 {{0, "ipAddress", Q("11.111.11.111")},
	  {2, "userAgent",
	   Q("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)")}}},
	{"sns-djangoses-event-send-no-headers-4-recipients.json", "Send",
	 "2012-05-25T21:59:38.623Z",
	 {"recipient1@example.com", "recipient2@example.com",
	  "recipient3@example.com", "recipient4@example.com"},
	 {{0, NULL, NULL}}},
	{"sns-djangoses-identity-bounce-permanent-failed-and-delayed.json",
	 "Bounce", "2012-05-25T21:59:38.605Z",
	 {"recipient1@example.com", "recipient2@example.com"},
	 {{0, "bounceType", Q("Permanent")},
	  {0, "action", Q("failed")},
	  {1, "action", Q("delayed")},
	  {1, "status", Q("4.0.0")}}},
	{"sns-djangoses-identity-bounce-transient-general-no-status.json",
	 "Bounce", "2012-05-25T21:59:38.605Z",
	 {"recipient1@example.com", "recipient2@example.com"},
	 {{0, "bounceType", Q("Transient")},
	  {0, "status", NULL},
	  {0, "action", NULL},
	  {1, "reportingMTA", Q("example.com")}}},
	{"sns-djangoses-identity-complaint.json", "Complaint",
	 "2012-05-25T14:59:38.623Z",
	 {"recipient1@example.com"},
	 {{0, "userAgent", Q("ExampleCorp Feedback Loop (V0.01)")},
	  {0, "complaintFeedbackType", Q("abuse")}}},
	NOT_INDEXED("sns-djangoses-received-s3-inbound-not-a-sending-event.json"),
	NOT_INDEXED("sns-govuknotify-MALFORMED-complaint-badMessageId-instead-of-messageId.json"),
	{"sns-govuknotify-identity-complaint-missing-feedbacktype.json",
	 "Complaint", "2018-06-05T13:59:58.000Z",
	 {"recipient1@example.com"},
	 {{0, "complaintFeedbackType", NULL},
	  {0, "userAgent", NULL}}},
	{"sns-govuknotify-identity-complaint-no-headers.json", "Complaint",
	 "2018-06-05T13:59:58.000Z",
	 {"recipient1@example.com"},
	 {{0, "complaintFeedbackType", Q("abuse")}}},
	{"sns-govuknotify-identity-delivery-no-headers.json", "Delivery",
	 "2016-03-14T12:35:26.567Z",
	 {"testing@digital.cabinet-office.gov.uk"},
	 {{0, "processingTimeMillis", "658"},
	  {0, "smtpResponse",
	   Q("250 2.0.0 OK 1457958926 uo5si26480932wjc.221 - gsmtp")},
	  {0, "reportingMTA", Q("a6-238.smtp-out.eu-west-1.amazonses.com")}}},
	{"sns-keila-event-bounce-permanent-simulator-signed-2021-08.json",
	 "Bounce", "2021-08-11T14:48:02.383Z",
	 {"bounce@simulator.amazonses.com"},
	 {{0, "reportingMTA",
	   Q("dns; b224-17.smtp-out.eu-central-1.amazonses.com")},
	  {0, "bounceType", Q("Permanent")}}},
	{"sns-keila-event-bounce-permanent-simulator-signed.json", "Bounce",
	 "2021-11-01T08:31:09.745Z",
	 {"bounce@simulator.amazonses.com"},
	 {{0, "status", Q("5.1.1")}}},
	NOT_INDEXED("sns-keila-subscription-confirmation.json"),
	{"sns-mailcoach-event-bounce.json", "Bounce", "2019-11-28T09:43:55.547Z",
	 {"mcbounceface@spatie.be"},
	 {{0, "reportingMTA",
	   Q("dsn; b224-14.smtp-out.eu-central-1.amazonses.com")},
	  {0, "status", Q("5.1.1")},
	  {0, "bounceSubType", Q("General")}}},
	{"sns-mailcoach-event-click.json", "Click", "2019-11-28T09:14:53.099Z",
	 {"hello@rias.be"},
	 {{0, "link", Q("https://spatie.be")},
	  {0, "ipAddress", Q("84.197.146.148")}}},
	{"sns-mailcoach-event-complaint.json", "Complaint",
	 "2019-11-28T09:13:57.357Z",
	 {"complaint@simulator.amazonses.com"},
	 {{0, "complaintSubType", NULL},
	  {0, "complaintFeedbackType", Q("abuse")}}},
	{"sns-mailcoach-event-open-2019-googleimageproxy.json", "Open",
	 "2019-11-28T09:07:37.892Z",
	 {"freek@spatie.be"},
	 {{0, "ipAddress", Q("66.249.81.239")}}},
	{"sns-mailcoach-event-open.json", "Open", "2022-04-13T17:14:18.824Z",
	 {"rias@spatie.be"},
	 {{0, "userAgent", Q("Mozilla/5.0")},
	  {0, "ipAddress", Q("104.28.40.7")}}},
	NOT_INDEXED("sns-mailcoach-subscription-confirmation.json"),
	/* Invented sub-types are indexed as written, not rejected. */
	{"sns-relay-MODIFIED-bounce-transient-unknown-subtype-spam.json",
	 "Bounce", "2022-01-18T15:46:34.000Z",
	 {"relayuser@test.com"},
	 {{0, "bounceSubType", Q("StopRelayingSpamForThisUser")},
	  {0, "diagnosticCode", Q("Message considered as spam.")}}},
	{"sns-relay-MODIFIED-bounce-transient-unknown-subtype.json", "Bounce",
	 "2022-01-18T15:46:34.000Z",
	 {"relayuser@test.com"},
	 {{0, "bounceSubType", Q("SRETeamEatenByDinosaurs")},
	  {0, "bounceType", Q("Transient")}}},
	{"sns-relay-identity-bounce-permanent-onaccountsuppressionlist-mime-encoded-source.json",
	 "Bounce", "2022-01-18T15:46:34.000Z",
	 {"relayuser@test.com"},
	 {{0, "bounceSubType", Q("OnAccountSuppressionList")},
	  {0, "reportingMTA", Q("dns; amazonses.com")}}},
	NOT_INDEXED("sns-relay-subscription-confirmation.json"),
	{"sns-shqawsses-identity-bounce-permanent-suppressed-global-simulator-no-headers.json",
	 "Bounce", "2018-07-14T10:24:50.776Z",
	 {"suppressionlist@simulator.amazonses.com"},
	 {{0, "bounceSubType", Q("Suppressed")}}},
};

#define N_FILES (sizeof(files) / sizeof(files[0]))

/* The detail keys the contract allows per type (SPEC.md, plus the
 * subscription choice in ses.c); anything else in detail is a failure. */
static const char *const allowed_detail[][7] = {
	{"Bounce", "bounceType", "bounceSubType", "action", "status",
	 "diagnosticCode", "reportingMTA"},
	{"Complaint", "complaintFeedbackType", "userAgent", "complaintSubType"},
	{"Delivery", "smtpResponse", "processingTimeMillis", "reportingMTA",
	 "remoteMtaIp"},
	{"DeliveryDelay", "delayType", "expirationTime", "status",
	 "diagnosticCode"},
	{"Open", "ipAddress", "userAgent"},
	{"Click", "ipAddress", "userAgent", "link"},
	{"Reject", "reason"},
	{"Rendering Failure", "templateName", "errorMessage"},
	{"Send"},
	{"Subscription", "contactList", "source", "newTopicPreferences"},
};

static bool detail_key_allowed(const char *type, const char *key)
{
	for (size_t i = 0; i < sizeof(allowed_detail) / sizeof(allowed_detail[0]); i++) {
		if (strcmp(allowed_detail[i][0], type) != 0)
			continue;
		for (size_t k = 1; k < 7 && allowed_detail[i][k]; k++)
			if (strcmp(allowed_detail[i][k], key) == 0)
				return true;
		return false;
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

/* Reads a whole file.  Returns a NUL-terminated buffer the caller frees,
 * or NULL. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long size;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0)
		goto out;
	buf = malloc((size_t)size + 1);
	if (!buf)
		goto out;
	if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
		free(buf);
		buf = NULL;
		goto out;
	}
	buf[size] = '\0';
	*len = (size_t)size;
out:
	fclose(f);
	return buf;
}

static char *dup_str(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/* What the webhook would hand to ses_events_parse for one file. */
struct message {
	char *text; /* the SES message (SNS "Message", or the file itself) */
	size_t len;
	char *id;    /* SNS MessageId, or a fixed one for bare SES JSON */
	char *topic; /* SNS TopicArn, or a fixed one */
};

static void message_free(struct message *m)
{
	free(m->text);
	free(m->id);
	free(m->topic);
	memset(m, 0, sizeof(*m));
}

static char *string_member(struct json_object *obj, const char *key,
			   const char *fallback)
{
	struct json_object *v = NULL;

	if (json_object_object_get_ex(obj, key, &v) &&
	    json_object_is_type(v, json_type_string))
		return dup_str(json_object_get_string(v),
			       (size_t)json_object_get_string_len(v));
	return dup_str(fallback, strlen(fallback));
}

/* Unwraps an SNS envelope or a Lambda SNS event; bare SES JSON is taken as
 * it is.  Returns false when the file cannot be read. */
static bool message_load(const char *path, struct message *m)
{
	size_t len = 0;
	char *raw = slurp(path, &len);
	struct json_object *root = NULL, *sns = NULL, *v = NULL;

	memset(m, 0, sizeof(*m));
	if (!raw)
		return false;
	root = json_tokener_parse(raw);
	sns = root;
	if (json_object_object_get_ex(root, "Records", &v) &&
	    json_object_is_type(v, json_type_array) &&
	    json_object_array_length(v) > 0 &&
	    json_object_object_get_ex(json_object_array_get_idx(v, 0), "Sns", &v))
		sns = v;
	if (json_object_object_get_ex(sns, "Message", &v) &&
	    json_object_is_type(v, json_type_string)) {
		m->text = dup_str(json_object_get_string(v),
				  (size_t)json_object_get_string_len(v));
		m->len = (size_t)json_object_get_string_len(v);
		free(raw);
	} else {
		m->text = raw;
		m->len = len;
	}
	m->id = string_member(sns, "MessageId", "test-sns-message-id");
	m->topic = string_member(sns, "TopicArn",
				 "arn:aws:sns:us-east-1:123456789012:test");
	json_object_put(root);
	return m->text && m->id && m->topic;
}

/* Strict parse of a JSON text we produced or a test fixture.  Caller puts
 * the result. */
static struct json_object *json_parse_n(const char *s, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *obj = NULL;

	if (!tok)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	obj = json_tokener_parse_ex(tok, s, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len) {
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	return obj;
}

static struct json_object *get(struct json_object *obj, const char *key)
{
	struct json_object *v = NULL;

	return json_object_object_get_ex(obj, key, &v) ? v : NULL;
}

static bool has(struct json_object *obj, const char *key)
{
	return json_object_object_get_ex(obj, key, NULL);
}

static const char *json_text(struct json_object *v)
{
	return json_object_to_json_string_ext(v, JSON_FLAGS);
}

static bool str_is(struct json_object *v, const char *want)
{
	return json_object_is_type(v, json_type_string) && want &&
	       strcmp(json_object_get_string(v), want) == 0;
}

static int64_t ms_of(const char *iso)
{
	int64_t ms = INT64_MIN;

	if (!mt_time_parse(iso, strlen(iso), &ms))
		return INT64_MIN;
	return ms;
}

/* Checks that hold for every EVENT of every message: the shape of SPEC.md,
 * the context, the mail copy, no headers. */
static void check_event_shape(const char *what, const struct ses_event *ev,
			      const struct ses_context *ctx,
			      struct json_object *src_mail)
{
	static const char *const order[] = {"id", "type", "time", "recipient",
					    "topicArn", "mail", "detail"};
	static const char *const mail_keys[] = {"messageId", "source",
						"timestamp", "destination"};
	struct json_object *e = json_parse_n(ev->json, ev->json_len);
	struct json_object *mail = NULL, *detail = NULL;
	char when[MT_TIME_BUF];
	size_t i = 0;

	CHECK(e && json_object_is_type(e, json_type_object), what,
	      "EVENT is not a JSON object: %s", ev->json);
	if (!e)
		return;
	CHECK(strlen(ev->json) == ev->json_len, what, "json_len %zu wrong",
	      ev->json_len);
	for (struct json_object_iterator it = json_object_iter_begin(e),
					 it_end = json_object_iter_end(e);
	     !json_object_iter_equal(&it, &it_end); json_object_iter_next(&it)) {
		const char *key = json_object_iter_peek_name(&it);

		CHECK(i < 7 && strcmp(key, order[i]) == 0, what,
		      "EVENT key %zu is \"%s\", want \"%s\"", i, key,
		      i < 7 ? order[i] : "(none)");
		i++;
	}
	CHECK(i == 7, what, "EVENT has %zu keys, want 7", i);
	CHECK(str_is(get(e, "id"), ctx->sns_message_id), what, "id %s",
	      json_text(get(e, "id")));
	CHECK(str_is(get(e, "topicArn"), ctx->topic_arn), what, "topicArn %s",
	      json_text(get(e, "topicArn")));
	CHECK(str_is(get(e, "type"), ev->type), what, "type %s vs %s",
	      json_text(get(e, "type")), ev->type);
	CHECK(str_is(get(e, "recipient"), ev->recipient), what,
	      "recipient %s vs %s", json_text(get(e, "recipient")),
	      ev->recipient);
	mt_time_format(ev->time_ms, when);
	CHECK(str_is(get(e, "time"), when), what, "time %s vs %s",
	      json_text(get(e, "time")), when);

	mail = get(e, "mail");
	CHECK(json_object_is_type(mail, json_type_object), what,
	      "mail is not an object");
	for (size_t k = 0; k < 4; k++) {
		struct json_object *s = get(src_mail, mail_keys[k]);

		if (s)
			CHECK(json_object_equal(s, get(mail, mail_keys[k])),
			      what, "mail.%s %s, source has %s", mail_keys[k],
			      json_text(get(mail, mail_keys[k])), json_text(s));
		else
			CHECK(!has(mail, mail_keys[k]), what,
			      "mail.%s invented", mail_keys[k]);
	}
	CHECK(!has(mail, "headers"), what, "mail.headers copied");
	if (ctx->keep_headers && has(src_mail, "commonHeaders"))
		CHECK(json_object_equal(get(mail, "commonHeaders"),
					get(src_mail, "commonHeaders")),
		      what, "commonHeaders not copied with keep_headers");
	else
		CHECK(!has(mail, "commonHeaders"), what,
		      "commonHeaders present (keep_headers=%d)",
		      ctx->keep_headers);
	for (struct json_object_iterator it = json_object_iter_begin(mail),
					 it_end = json_object_iter_end(mail);
	     !json_object_iter_equal(&it, &it_end); json_object_iter_next(&it)) {
		const char *mkey = json_object_iter_peek_name(&it);

		CHECK(strcmp(mkey, "messageId") == 0 ||
			      strcmp(mkey, "source") == 0 ||
			      strcmp(mkey, "timestamp") == 0 ||
			      strcmp(mkey, "destination") == 0 ||
			      strcmp(mkey, "commonHeaders") == 0,
		      what, "unexpected mail.%s", mkey);
	}

	detail = get(e, "detail");
	CHECK(json_object_is_type(detail, json_type_object), what,
	      "detail is not an object");
	for (struct json_object_iterator it = json_object_iter_begin(detail),
					 it_end = json_object_iter_end(detail);
	     !json_object_iter_equal(&it, &it_end); json_object_iter_next(&it)) {
		const char *dkey = json_object_iter_peek_name(&it);
		struct json_object *dval = json_object_iter_peek_value(&it);

		CHECK(detail_key_allowed(ev->type, dkey), what,
		      "detail.%s not allowed for %s", dkey, ev->type);
		CHECK(!json_object_is_type(dval, json_type_null), what,
		      "detail.%s is null", dkey);
	}
	json_object_put(e);
}

/* ------------------------------------------------------------------ */
/* The corpus                                                          */

static void check_file(const char *dir, const struct expect *x, bool keep_headers)
{
	char path[4096];
	struct message m;
	struct ses_events evs, again;
	struct json_object *src = NULL, *src_mail = NULL;
	size_t want_n = 0;
	const char *what = x->file;

	snprintf(path, sizeof(path), "%s/ses/%s", dir, x->file);
	if (!message_load(path, &m)) {
		CHECK(false, what, "cannot read %s", path);
		message_free(&m);
		return;
	}
	struct ses_context ctx = {m.id, m.topic, keep_headers, 0};

	while (x->type && want_n < MAX_RCPT && x->rcpt[want_n])
		want_n++;
	CHECK(ses_events_parse(m.text, m.len, &ctx, &evs) == MT_E_OK, what,
	      "parse failed");
	CHECK(evs.n == want_n, what, "%zu events, want %zu", evs.n, want_n);
	CHECK(evs.keep_raw == (x->type == NULL), what, "keep_raw %d, want %d",
	      evs.keep_raw, x->type == NULL);

	src = json_parse_n(m.text, m.len);
	src_mail = get(src, "mail");
	for (size_t i = 0; i < evs.n && i < want_n; i++) {
		const struct ses_event *ev = &evs.v[i];
		struct json_object *e = json_parse_n(ev->json, ev->json_len);
		struct json_object *detail = get(e, "detail");

		CHECK(strcmp(ev->type, x->type) == 0, what, "type %s, want %s",
		      ev->type, x->type);
		CHECK(strcmp(ev->recipient, x->rcpt[i]) == 0, what,
		      "recipient %zu is %s, want %s", i, ev->recipient,
		      x->rcpt[i]);
		CHECK(ev->time_ms == ms_of(x->time), what,
		      "time_ms %" PRId64 ", want %s", ev->time_ms, x->time);
		CHECK(str_is(get(e, "time"), x->time), what, "time %s, want %s",
		      json_text(get(e, "time")), x->time);
		check_event_shape(what, ev, &ctx, src_mail);
		for (size_t c = 0; c < MAX_CHECKS && x->detail[c].key; c++) {
			const struct dcheck *d = &x->detail[c];
			struct json_object *v = get(detail, d->key);

			if ((size_t)d->rcpt != i)
				continue;
			if (d->json)
				CHECK(v && strcmp(json_text(v), d->json) == 0,
				      what, "event %zu detail.%s = %s, want %s",
				      i, d->key, v ? json_text(v) : "(absent)",
				      d->json);
			else
				CHECK(!has(detail, d->key), what,
				      "event %zu detail.%s = %s, want absent",
				      i, d->key, json_text(v));
		}
		json_object_put(e);
	}

	/* Deterministic: the same input gives the same bytes. */
	CHECK(ses_events_parse(m.text, m.len, &ctx, &again) == MT_E_OK, what,
	      "second parse failed");
	CHECK(again.n == evs.n, what, "second parse: %zu events", again.n);
	for (size_t i = 0; i < evs.n && i < again.n; i++)
		CHECK(again.v[i].json_len == evs.v[i].json_len &&
			      memcmp(again.v[i].json, evs.v[i].json,
				     evs.v[i].json_len) == 0,
		      what, "event %zu differs between two parses", i);
	ses_events_free(&again);

	/* The whole file unparsed (an envelope, not SES JSON) is never
	 * indexed; bare SES files are the message itself. */
	if (strcmp(m.id, "test-sns-message-id") != 0) {
		size_t len = 0;
		char *raw = slurp(path, &len);

		CHECK(raw && ses_events_parse(raw, len, &ctx, &again) == MT_E_OK &&
			      again.n == 0 && again.keep_raw,
		      what, "SNS envelope itself was indexed");
		ses_events_free(&again);
		free(raw);
	}

	json_object_put(src);
	ses_events_free(&evs);
	message_free(&m);
}

static void check_corpus(const char *dir)
{
	char path[4096];
	DIR *d = NULL;
	struct dirent *de;

	for (size_t i = 0; i < N_FILES; i++) {
		check_file(dir, &files[i], false);
		check_file(dir, &files[i], true);
	}

	/* Every file in the corpus has a row above. */
	snprintf(path, sizeof(path), "%s/ses", dir);
	d = opendir(path);
	CHECK(d, "corpus", "cannot open %s", path);
	if (!d)
		return;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		bool listed = false;

		if (n < 5 || strcmp(de->d_name + n - 5, ".json") != 0)
			continue;
		for (size_t i = 0; i < N_FILES; i++)
			listed = listed || strcmp(files[i].file, de->d_name) == 0;
		CHECK(listed, "corpus", "%s has no expectation row", de->d_name);
	}
	closedir(d);
}

/* One complete EVENT, byte for byte, so the serialisation itself (key
 * order, escaping, no slash escapes, time format) is pinned. */
static void check_golden(const char *dir)
{
	static const char want_bounce[] =
		"{\"id\":\"test-sns-message-id\",\"type\":\"Bounce\","
		"\"time\":\"2017-08-05T00:41:02.669Z\","
		"\"recipient\":\"recipient@example.com\","
		"\"topicArn\":\"arn:aws:sns:us-east-1:123456789012:test\","
		"\"mail\":{\"messageId\":\"EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000\","
		"\"source\":\"Sender Name <sender@example.com>\","
		"\"timestamp\":\"2017-08-05T00:40:02.012Z\","
		"\"destination\":[\"recipient@example.com\"]},"
		"\"detail\":{\"bounceType\":\"Permanent\",\"bounceSubType\":\"General\","
		"\"action\":\"failed\",\"status\":\"5.1.1\","
		"\"diagnosticCode\":\"smtp; 550 5.1.1 user unknown\","
		"\"reportingMTA\":\"dsn; mta.example.com\"}}";
	static const char want_click_headers[] =
		"{\"id\":\"test-sns-message-id\",\"type\":\"Click\","
		"\"time\":\"2017-08-09T23:51:25.570Z\","
		"\"recipient\":\"recipient@example.com\","
		"\"topicArn\":\"arn:aws:sns:us-east-1:123456789012:test\","
		"\"mail\":{\"messageId\":\"EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000\","
		"\"source\":\"sender@example.com\","
		"\"timestamp\":\"2017-08-09T23:50:05.795Z\","
		"\"destination\":[\"recipient@example.com\"],"
		"\"commonHeaders\":{\"from\":[\"sender@example.com\"],"
		"\"messageId\":\"EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000\","
		"\"subject\":\"Message sent from Amazon SES\","
		"\"to\":[\"recipient@example.com\"]}},"
		"\"detail\":{\"ipAddress\":\"192.0.2.1\","
		"\"userAgent\":\"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/60.0.3112.90 Safari/537.36\","
		"\"link\":\"http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html\"}}";
	static const char want_send[] =
		"{\"id\":\"22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\",\"type\":\"Send\","
		"\"time\":\"2012-05-25T21:59:38.623Z\","
		"\"recipient\":\"recipient3@example.com\","
		"\"topicArn\":\"arn:aws:sns:us-east-1:123456789012:MyTopic\","
		"\"mail\":{\"messageId\":\"000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000\","
		"\"source\":\"sender@example.com\","
		"\"timestamp\":\"2012-05-25T14:59:38.623-07:00\","
		"\"destination\":[\"recipient1@example.com\",\"recipient2@example.com\","
		"\"recipient3@example.com\",\"recipient4@example.com\"]},"
		"\"detail\":{}}";
	static const struct {
		const char *file;
		bool keep_headers;
		size_t index;
		const char *want;
		int64_t want_ms;
	} goldens[] = {
		{"awsdoc-event-bounce.json", false, 0, want_bounce,
		 INT64_C(1501893662669)},
		{"awsdoc-event-click.json", true, 0, want_click_headers,
		 INT64_C(1502322685570)},
		{"sns-djangoses-event-send-no-headers-4-recipients.json", false,
		 2, want_send, INT64_C(1337983178623)},
	};

	for (size_t g = 0; g < sizeof(goldens) / sizeof(goldens[0]); g++) {
		char path[4096];
		struct message m;
		struct ses_events evs = {0};

		snprintf(path, sizeof(path), "%s/ses/%s", dir, goldens[g].file);
		if (!message_load(path, &m)) {
			CHECK(false, "golden", "cannot read %s", path);
			message_free(&m);
			continue;
		}
		struct ses_context ctx = {m.id, m.topic, goldens[g].keep_headers, 0};

		CHECK(ses_events_parse(m.text, m.len, &ctx, &evs) == MT_E_OK &&
			      evs.n > goldens[g].index,
		      "golden", "%s: no event %zu", goldens[g].file,
		      goldens[g].index);
		if (evs.n > goldens[g].index) {
			const struct ses_event *ev = &evs.v[goldens[g].index];

			CHECK(strcmp(ev->json, goldens[g].want) == 0, "golden",
			      "%s:\n got  %s\n want %s", goldens[g].file,
			      ev->json, goldens[g].want);
			CHECK(ev->time_ms == goldens[g].want_ms, "golden",
			      "%s: time_ms %" PRId64 ", want %" PRId64,
			      goldens[g].file, ev->time_ms, goldens[g].want_ms);
		}
		ses_events_free(&evs);
		message_free(&m);
	}
}

/* ------------------------------------------------------------------ */
/* Hand-made messages                                                  */

static const struct ses_context test_ctx = {"mid-1", "arn:aws:sns:eu-west-1:1:t",
					    false, 0};

/* Parses s with test_ctx; the caller frees *evs. */
static void parse_str(const char *s, struct ses_events *evs)
{
	CHECK(ses_events_parse(s, strlen(s), &test_ctx, evs) == MT_E_OK,
	      "parse", "not MT_E_OK for %.80s", s);
}

/* Checks n, keep_raw and the recipients (NULL-terminated, may be empty). */
static void expect_events(const char *what, const char *msg, bool keep_raw,
			  const char *const *rcpts)
{
	struct ses_events evs;
	size_t n = 0;

	parse_str(msg, &evs);
	while (rcpts[n])
		n++;
	CHECK(evs.n == n, what, "%zu events, want %zu", evs.n, n);
	CHECK(evs.keep_raw == keep_raw, what, "keep_raw %d, want %d",
	      evs.keep_raw, keep_raw);
	for (size_t i = 0; i < n && i < evs.n; i++)
		CHECK(strcmp(evs.v[i].recipient, rcpts[i]) == 0, what,
		      "recipient %zu is %s, want %s", i, evs.v[i].recipient,
		      rcpts[i]);
	ses_events_free(&evs);
}

#define RCPTS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NONE ((const char *const[]){NULL})

#define MAIL_OK                                                                \
	"\"mail\":{\"messageId\":\"m-1\",\"timestamp\":\"2024-01-02T03:04:05.678Z\"," \
	"\"destination\":[\"a@example.com\"]}"

/* The first event's detail (or mail, when key starts with "mail.") value
 * as JSON text, into buf; "(absent)" or "(no event)". */
static const char *first_value(const char *msg, const char *section,
			       const char *key, char *buf, size_t size)
{
	struct ses_events evs;
	struct json_object *e = NULL, *v = NULL;

	parse_str(msg, &evs);
	snprintf(buf, size, "(no event)");
	if (evs.n > 0) {
		e = json_parse_n(evs.v[0].json, evs.v[0].json_len);
		v = get(get(e, section), key);
		snprintf(buf, size, "%s", v ? json_text(v) : "(absent)");
		json_object_put(e);
	}
	ses_events_free(&evs);
	return buf;
}

static void check_recipients(void)
{
	/* A recipient listed twice (in any spelling) gives one event. */
	expect_events("duplicate",
		      "{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":\"m\","
		      "\"timestamp\":\"2024-01-02T03:04:05Z\",\"destination\":"
		      "[\"a@b.c\",\"A@B.C\",\" Joe <a@b.c> \",\"d@e.f\"]}}",
		      false, RCPTS("a@b.c", "d@e.f"));
	/* The first entry of a duplicated bounce recipient wins. */
	{
		char buf[256];
		const char *msg =
			"{\"notificationType\":\"Bounce\",\"bounce\":{\"bounceType\":\"Permanent\","
			"\"timestamp\":\"2024-01-02T03:04:05Z\",\"bouncedRecipients\":["
			"{\"emailAddress\":\"x@y.z\",\"action\":\"failed\"},"
			"{\"emailAddress\":\"X@Y.Z\",\"action\":\"delayed\"}]}," MAIL_OK "}";

		expect_events("duplicate bounce", msg, false, RCPTS("x@y.z"));
		CHECK(strcmp(first_value(msg, "detail", "action", buf, sizeof(buf)),
			     Q("failed")) == 0,
		      "duplicate bounce", "action %s", buf);
	}
	/* Some valid, some not: events for the valid ones, and keep_raw. */
	expect_events("partly invalid",
		      "{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":\"m\","
		      "\"timestamp\":\"2024-01-02T03:04:05Z\",\"destination\":"
		      "[\"good@x.y\",\"bad\",5,null,{\"a\":1},\"x@y.z\"]}}",
		      true, RCPTS("good@x.y", "x@y.z"));
	expect_events("bounce entry without address",
		      "{\"notificationType\":\"Bounce\",\"bounce\":{"
		      "\"timestamp\":\"2024-01-02T03:04:05Z\",\"bouncedRecipients\":["
		      "{\"emailAddress\":\"ok@y.z\"},{\"status\":\"5.0.0\"},"
		      "{\"emailAddress\":7},\"str@y.z\"]}," MAIL_OK "}",
		      true, RCPTS("ok@y.z"));
	expect_events("all invalid",
		      "{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":\"m\","
		      "\"timestamp\":\"2024-01-02T03:04:05Z\",\"destination\":[\"bad\",\"\"]}}",
		      true, NONE);
	expect_events("empty destination",
		      "{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":\"m\","
		      "\"timestamp\":\"2024-01-02T03:04:05Z\",\"destination\":[]}}",
		      true, NONE);
	expect_events("destination not an array",
		      "{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":\"m\","
		      "\"timestamp\":\"2024-01-02T03:04:05Z\",\"destination\":\"a@b.c\"}}",
		      true, NONE);
	/* Delivery takes delivery.recipients, not mail.destination. */
	expect_events("delivery recipients",
		      "{\"notificationType\":\"Delivery\",\"delivery\":{"
		      "\"timestamp\":\"2024-01-02T03:04:05Z\",\"recipients\":[\"Only@Y.Z\"]},"
		      "\"mail\":{\"messageId\":\"m\",\"destination\":[\"a@b.c\",\"only@y.z\"]}}",
		      false, RCPTS("only@y.z"));
	expect_events("complaint recipients",
		      "{\"notificationType\":\"Complaint\",\"complaint\":{"
		      "\"timestamp\":\"2024-01-02T03:04:05Z\",\"complainedRecipients\":"
		      "[{\"emailAddress\":\"c@y.z\"}]},"
		      "\"mail\":{\"messageId\":\"m\",\"destination\":[\"a@b.c\",\"c@y.z\"]}}",
		      false, RCPTS("c@y.z"));
}

/* n generated recipients r0@x.y .. as a Send. Caller frees. */
static char *many_recipients(size_t n)
{
	size_t cap = 200 + n * 24, used = 0;
	char *s = malloc(cap);

	if (!s)
		return NULL;
	used += (size_t)snprintf(s, cap,
				 "{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":\"m\","
				 "\"timestamp\":\"2024-01-02T03:04:05Z\",\"destination\":[");
	for (size_t i = 0; i < n; i++)
		used += (size_t)snprintf(s + used, cap - used, "%s\"r%zu@x.y\"",
					 i ? "," : "", i);
	snprintf(s + used, cap - used, "]}}");
	return s;
}

static void check_limits(void)
{
	struct ses_events evs;
	char *s = many_recipients(SES_RECIPIENTS_MAX);

	parse_str(s ? s : "", &evs);
	CHECK(evs.n == SES_RECIPIENTS_MAX && !evs.keep_raw, "limit",
	      "%d recipients: n=%zu keep_raw=%d", SES_RECIPIENTS_MAX, evs.n,
	      evs.keep_raw);
	CHECK(evs.n > 0 && strcmp(evs.v[evs.n - 1].recipient, "r999@x.y") == 0,
	      "limit", "last recipient %s", evs.n ? evs.v[evs.n - 1].recipient : "");
	ses_events_free(&evs);
	free(s);

	s = many_recipients(SES_RECIPIENTS_MAX + 1);
	parse_str(s ? s : "", &evs);
	CHECK(evs.n == SES_RECIPIENTS_MAX && evs.keep_raw, "limit",
	      "%d recipients: n=%zu keep_raw=%d", SES_RECIPIENTS_MAX + 1,
	      evs.n, evs.keep_raw);
	ses_events_free(&evs);
	free(s);

	/* Nesting: at the limit is JSON we accept, beyond is not. */
	{
		size_t depth = 100000, cap = 2 * depth + 200, used = 0;
		char *deep = malloc(cap);

		if (deep) {
			used = (size_t)snprintf(deep, cap,
						"{\"eventType\":\"Send\",\"send\":{}," MAIL_OK ",\"x\":");
			for (size_t i = 0; i < depth; i++)
				deep[used++] = '[';
			for (size_t i = 0; i < depth; i++)
				deep[used++] = ']';
			deep[used++] = '}';
			deep[used] = '\0';
			expect_events("deep nesting", deep, true, NONE);
			/* root object is depth 1, so 62 more arrays make 63 */
			used = (size_t)snprintf(deep, cap,
						"{\"eventType\":\"Send\",\"send\":{}," MAIL_OK ",\"x\":");
			for (size_t i = 0; i < SES_JSON_DEPTH_MAX - 2; i++)
				deep[used++] = '[';
			for (size_t i = 0; i < SES_JSON_DEPTH_MAX - 2; i++)
				deep[used++] = ']';
			deep[used++] = '}';
			deep[used] = '\0';
			expect_events("nesting at the limit", deep, false,
				      RCPTS("a@example.com"));
			free(deep);
		}
	}
}

static void check_rejects(void)
{
	static const char *const not_indexed[] = {
		/* types */
		"{\"notificationType\":\"Received\",\"receipt\":{\"timestamp\":\"2024-01-02T03:04:05Z\","
		"\"recipients\":[\"a@b.c\"]}," MAIL_OK "}",
		"{\"notificationType\":\"AmazonSnsSubscriptionSucceeded\",\"message\":"
		"\"You have successfully subscribed your Amazon SNS topic 'arn:aws:sns:us-east-1:1:t' to receive 'Bounce' notifications from Amazon SES for identity 'example.com'.\"}",
		"{\"notificationType\":\"bounce\",\"bounce\":{\"timestamp\":\"2024-01-02T03:04:05Z\","
		"\"bouncedRecipients\":[{\"emailAddress\":\"a@b.c\"}]}," MAIL_OK "}",
		"{\"notificationType\":[\"Bounce\"],\"bounce\":{\"timestamp\":\"2024-01-02T03:04:05Z\","
		"\"bouncedRecipients\":[{\"emailAddress\":\"a@b.c\"}]}," MAIL_OK "}",
		"{\"notificationType\":\"Bounce\",\"eventType\":\"Complaint\",\"bounce\":{"
		"\"timestamp\":\"2024-01-02T03:04:05Z\",\"bouncedRecipients\":[{\"emailAddress\":\"a@b.c\"}]},"
		"\"complaint\":{\"timestamp\":\"2024-01-02T03:04:05Z\","
		"\"complainedRecipients\":[{\"emailAddress\":\"a@b.c\"}]}," MAIL_OK "}",
		"{\"eventType\":\"Send\"," MAIL_OK "}",
		/* the type's object */
		"{\"eventType\":\"Send\",\"send\":null," MAIL_OK "}",
		"{\"notificationType\":\"Bounce\"," MAIL_OK "}",
		"{\"notificationType\":\"Bounce\",\"bounce\":[]," MAIL_OK "}",
		"{\"eventType\":\"Rendering Failure\",\"renderingFailure\":{}," MAIL_OK "}",
		/* mail */
		"{\"eventType\":\"Send\",\"send\":{}}",
		"{\"eventType\":\"Send\",\"send\":{},\"mail\":\"x\"}",
		"{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"timestamp\":\"2024-01-02T03:04:05Z\","
		"\"destination\":[\"a@b.c\"]}}",
		"{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":42,"
		"\"timestamp\":\"2024-01-02T03:04:05Z\",\"destination\":[\"a@b.c\"]}}",
		"{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":null,"
		"\"timestamp\":\"2024-01-02T03:04:05Z\",\"destination\":[\"a@b.c\"]}}",
		/* time */
		"{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":\"m\","
		"\"destination\":[\"a@b.c\"]}}",
		"{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":\"m\","
		"\"timestamp\":\"yesterday\",\"destination\":[\"a@b.c\"]}}",
		"{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":\"m\","
		"\"timestamp\":1704164645000,\"destination\":[\"a@b.c\"]}}",
		/* a bounce is not indexed at its mail's time */
		"{\"notificationType\":\"Bounce\",\"bounce\":{"
		"\"bouncedRecipients\":[{\"emailAddress\":\"a@b.c\"}]}," MAIL_OK "}",
		"{\"notificationType\":\"Bounce\",\"bounce\":{\"timestamp\":\"2024-13-02T03:04:05Z\","
		"\"bouncedRecipients\":[{\"emailAddress\":\"a@b.c\"}]}," MAIL_OK "}",
		"{\"eventType\":\"Open\",\"open\":{\"ipAddress\":\"192.0.2.1\"}," MAIL_OK "}",
		"{\"eventType\":\"Subscription\",\"subscription\":{\"timestamp\":\"soon\"}," MAIL_OK "}",
		/* recipients missing */
		"{\"notificationType\":\"Bounce\",\"bounce\":{\"timestamp\":\"2024-01-02T03:04:05Z\"},"
		MAIL_OK "}",
		"{\"eventType\":\"DeliveryDelay\",\"deliveryDelay\":{\"timestamp\":\"2024-01-02T03:04:05Z\","
		"\"delayedRecipients\":{\"emailAddress\":\"a@b.c\"}}," MAIL_OK "}",
	};

	for (size_t i = 0; i < sizeof(not_indexed) / sizeof(not_indexed[0]); i++) {
		char what[32];

		snprintf(what, sizeof(what), "not indexed #%zu", i);
		expect_events(what, not_indexed[i], true, NONE);
	}

	/* Both keys naming the same type are fine. */
	expect_events("both type keys",
		      "{\"notificationType\":\"Send\",\"eventType\":\"Send\",\"send\":{},"
		      MAIL_OK "}",
		      false, RCPTS("a@example.com"));
}

static void check_times(void)
{
	struct ses_events evs;

	/* Subscription without its own time falls back to the mail's. */
	parse_str("{\"eventType\":\"Subscription\",\"subscription\":{\"contactList\":\"L\"},"
		  MAIL_OK "}", &evs);
	CHECK(evs.n == 1 && evs.v[0].time_ms == ms_of("2024-01-02T03:04:05.678Z"),
	      "subscription time", "n=%zu", evs.n);
	ses_events_free(&evs);
	parse_str("{\"eventType\":\"Subscription\",\"subscription\":{\"timestamp\":null},"
		  MAIL_OK "}", &evs);
	CHECK(evs.n == 1 && evs.v[0].time_ms == ms_of("2024-01-02T03:04:05.678Z"),
	      "subscription null time", "n=%zu", evs.n);
	ses_events_free(&evs);
	/* Reject and rendering failure use the mail's time. */
	parse_str("{\"eventType\":\"Reject\",\"reject\":{\"reason\":\"Bad content\","
		  "\"timestamp\":\"2030-01-01T00:00:00Z\"}," MAIL_OK "}", &evs);
	CHECK(evs.n == 1 && evs.v[0].time_ms == ms_of("2024-01-02T03:04:05.678Z"),
	      "reject time", "n=%zu", evs.n);
	ses_events_free(&evs);
	/* An offset and a fraction longer than ms. */
	parse_str("{\"eventType\":\"Click\",\"click\":{\"timestamp\":\"2024-01-02T05:04:05.123456+02:00\"},"
		  MAIL_OK "}", &evs);
	CHECK(evs.n == 1 && evs.v[0].time_ms == INT64_C(1704164645123),
	      "offset time", "n=%zu ms=%" PRId64, evs.n,
	      evs.n ? evs.v[0].time_ms : 0);
	ses_events_free(&evs);
}

static void check_detail_values(void)
{
	char buf[512];
	const char *bounce =
		"{\"notificationType\":\"Bounce\",\"bounce\":{\"bounceType\":{\"x\":1},"
		"\"bounceSubType\":null,\"reportingMTA\":[\"a\"],\"feedbackId\":\"f\","
		"\"timestamp\":\"2024-01-02T03:04:05Z\",\"bouncedRecipients\":["
		"{\"emailAddress\":\"a@b.c\",\"status\":\"5.1.1\",\"action\":true,"
		"\"diagnosticCode\":null}]}," MAIL_OK "}";

	/* Objects, arrays and nulls where SES writes scalars are left out;
	 * SES's value types are kept (a boolean stays a boolean). */
	CHECK(strcmp(first_value(bounce, "detail", "bounceType", buf, sizeof(buf)),
		     "(absent)") == 0, "detail types", "bounceType %s", buf);
	CHECK(strcmp(first_value(bounce, "detail", "bounceSubType", buf, sizeof(buf)),
		     "(absent)") == 0, "detail types", "bounceSubType %s", buf);
	CHECK(strcmp(first_value(bounce, "detail", "reportingMTA", buf, sizeof(buf)),
		     "(absent)") == 0, "detail types", "reportingMTA %s", buf);
	CHECK(strcmp(first_value(bounce, "detail", "diagnosticCode", buf, sizeof(buf)),
		     "(absent)") == 0, "detail types", "diagnosticCode %s", buf);
	CHECK(strcmp(first_value(bounce, "detail", "feedbackId", buf, sizeof(buf)),
		     "(absent)") == 0, "detail types", "feedbackId %s", buf);
	CHECK(strcmp(first_value(bounce, "detail", "action", buf, sizeof(buf)),
		     "true") == 0, "detail types", "action %s", buf);
	CHECK(strcmp(first_value(bounce, "detail", "status", buf, sizeof(buf)),
		     Q("5.1.1")) == 0, "detail types", "status %s", buf);

	/* Escapes survive; '/' is not escaped. */
	CHECK(strcmp(first_value("{\"eventType\":\"Reject\",\"reject\":{\"reason\":"
				 "\"a/b \\\"q\\\" \\u00e9 \\t\"}," MAIL_OK "}",
				 "detail", "reason", buf, sizeof(buf)),
		     "\"a/b \\\"q\\\" \xc3\xa9 \\t\"") == 0,
	      "detail escapes", "reason %s", buf);

	/* Mail keys absent from the source are not invented, mail.headers is
	 * never copied, commonHeaders only with keep_headers. */
	{
		const char *msg =
			"{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":\"m\","
			"\"timestamp\":\"2024-01-02T03:04:05Z\",\"destination\":[\"a@b.c\"],"
			"\"headers\":[{\"name\":\"X\",\"value\":\"y\"}],"
			"\"commonHeaders\":{\"subject\":\"s\"}}}";
		struct ses_context ctx = {"i", "t", true, 0};
		struct ses_events evs;

		CHECK(strcmp(first_value(msg, "mail", "source", buf, sizeof(buf)),
			     "(absent)") == 0, "mail keys", "source %s", buf);
		CHECK(strcmp(first_value(msg, "mail", "headers", buf, sizeof(buf)),
			     "(absent)") == 0, "mail keys", "headers %s", buf);
		CHECK(strcmp(first_value(msg, "mail", "commonHeaders", buf, sizeof(buf)),
			     "(absent)") == 0, "mail keys", "commonHeaders %s", buf);
		CHECK(ses_events_parse(msg, strlen(msg), &ctx, &evs) == MT_E_OK &&
			      evs.n == 1, "keep_headers", "n=%zu", evs.n);
		CHECK(evs.n == 1 &&
			      strstr(evs.v[0].json, "\"commonHeaders\":{\"subject\":\"s\"}") &&
			      !strstr(evs.v[0].json, "\"headers\""),
		      "keep_headers", "%s", evs.n ? evs.v[0].json : "");
		ses_events_free(&evs);
	}

	/* No context: the EVENT keeps its shape with null id and topic. */
	{
		const char *msg = "{\"eventType\":\"Send\",\"send\":{}," MAIL_OK "}";
		struct ses_events evs;

		CHECK(ses_events_parse(msg, strlen(msg), NULL, &evs) == MT_E_OK &&
			      evs.n == 1 &&
			      strncmp(evs.v[0].json, "{\"id\":null,\"type\":\"Send\"", 24) == 0 &&
			      strstr(evs.v[0].json, "\"topicArn\":null,"),
		      "no context", "%s", evs.n ? evs.v[0].json : "");
		ses_events_free(&evs);
	}
}

static void check_garbage(const char *dir)
{
	static const char *const inputs[] = {
		"", " ", "[]", "null", "{}", "{", "}", "\"x\"", "123", "true",
		"[{\"eventType\":\"Send\"}]", "{\"eventType\":\"Send\"",
		"{\"eventType\":\"Send\",\"send\":{}," MAIL_OK "}x",
		"{\"eventType\":\"Send\",\"send\":{}," MAIL_OK "}{}",
		"{'eventType':'Send'}",
		/* invalid UTF-8 in a string */
		("{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":\"\xff\xfe\","
		 "\"timestamp\":\"2024-01-02T03:04:05Z\",\"destination\":[\"a@b.c\"]}}"),
		"\xef\xbb\xbf{}",
	};
	struct ses_events evs;

	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		char what[32];

		snprintf(what, sizeof(what), "garbage #%zu", i);
		expect_events(what, inputs[i], true, NONE);
	}
	CHECK(ses_events_parse(NULL, 0, &test_ctx, &evs) == MT_E_OK &&
		      evs.n == 0 && evs.keep_raw,
	      "garbage", "NULL message");
	ses_events_free(&evs);
	/* An embedded NUL ends nothing early: the whole buffer must parse. */
	{
		static const char nul[] = "{\"eventType\":\"Send\",\"send\":{}," MAIL_OK "}\0{}";

		CHECK(ses_events_parse(nul, sizeof(nul) - 1, &test_ctx, &evs) == MT_E_OK &&
			      evs.n == 0 && evs.keep_raw,
		      "garbage", "NUL inside the message");
		ses_events_free(&evs);
	}

	/* Truncated real messages: every prefix, no crash, never an event
	 * from a prefix that is not the whole text. */
	{
		char path[4096];
		struct message m;

		snprintf(path, sizeof(path), "%s/ses/%s", dir,
			 "awsdoc-event-bounce.json");
		if (message_load(path, &m)) {
			size_t end = m.len;

			while (end > 0 && (m.text[end - 1] == '\n' ||
					   m.text[end - 1] == ' '))
				end--;
			for (size_t cut = 0; cut < end; cut++) {
				CHECK(ses_events_parse(m.text, cut, &test_ctx, &evs) == MT_E_OK &&
					      evs.n == 0 && evs.keep_raw,
				      "truncated", "prefix of %zu bytes gave %zu events",
				      cut, evs.n);
				ses_events_free(&evs);
			}
		}
		message_free(&m);
	}

	ses_events_free(NULL);
	memset(&evs, 0, sizeof(evs));
	ses_events_free(&evs);
	ses_events_free(&evs);
}

/* Random byte edits of every corpus message: no crash, no leak, and the
 * invariants of the contract hold for whatever comes out. */
static void check_mutations(const char *dir)
{
	static const char edits[] = "{}[]\",:\\0a@ \x80\xff";
	uint64_t seed = UINT64_C(0x9e3779b97f4a7c15);

	for (size_t f = 0; f < N_FILES; f++) {
		char path[4096];
		struct message m;

		snprintf(path, sizeof(path), "%s/ses/%s", dir, files[f].file);
		if (!message_load(path, &m) || m.len == 0) {
			message_free(&m);
			continue;
		}
		for (int round = 0; round < 40; round++) {
			char *buf = dup_str(m.text, m.len);
			struct ses_events evs;
			enum mt_err err;

			if (!buf)
				break;
			for (int k = 0; k < 1 + round % 4; k++) {
				seed = seed * UINT64_C(6364136223846793005) +
				       UINT64_C(1442695040888963407);
				buf[(seed >> 33) % m.len] =
					edits[(seed >> 17) % (sizeof(edits) - 1)];
			}
			err = ses_events_parse(buf, m.len, &test_ctx, &evs);
			CHECK(err == MT_E_OK, "mutation", "%s: error %d",
			      files[f].file, err);
			CHECK(evs.n <= SES_RECIPIENTS_MAX && (evs.n > 0 || evs.keep_raw),
			      "mutation", "%s: n=%zu keep_raw=%d", files[f].file,
			      evs.n, evs.keep_raw);
			for (size_t i = 0; i < evs.n; i++) {
				struct json_object *e =
					json_parse_n(evs.v[i].json, evs.v[i].json_len);
				char norm[SES_ADDRESS_MAX + 1];

				CHECK(e != NULL, "mutation", "%s: bad EVENT %s",
				      files[f].file, evs.v[i].json);
				CHECK(ses_address_normalize(evs.v[i].recipient,
							    strlen(evs.v[i].recipient), norm) &&
					      strcmp(norm, evs.v[i].recipient) == 0,
				      "mutation", "%s: recipient %s not normal",
				      files[f].file, evs.v[i].recipient);
				json_object_put(e);
			}
			ses_events_free(&evs);
			free(buf);
		}
		message_free(&m);
	}
}

/* ------------------------------------------------------------------ */
/* Addresses                                                           */

static void check_addresses(void)
{
	static const struct {
		const char *in;
		const char *want; /* NULL: rejected */
	} cases[] = {
		{"\"Joe Doe\" <Joe@Example.COM>", "joe@example.com"},
		{"Joe <a@b.c>", "a@b.c"},
		{"  a@B.c  ", "a@b.c"},
		{"\t a@b.c\r\n", "a@b.c"},
		{"<A@B.C>", "a@b.c"},
		{" Joe <a@b.c> ", "a@b.c"},
		{"\"a<b\" <x@y.z>", "x@y.z"},
		{"\"joe@x\" <a@b.c>", "a@b.c"},
		{"=?utf-8?b?SsO2cmc=?= <Relay@Unfck.Email>", "relay@unfck.email"},
		{"first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"},
		{"J\xc3\x96RG@X.DE", "j\xc3\x96rg@x.de"}, /* only ASCII folds */
		{"", NULL},
		{"   ", NULL},
		{"abc", NULL},
		{"@b.c", NULL},
		{"a@", NULL},
		{"a@ ", NULL},
		{"a@@b.c", NULL},
		{"a@b@c.d", NULL},
		{"a b@c.d", NULL},
		{"a@b.c d", NULL},
		{"a\x01@b.c", NULL},
		{"a@b.c\x7f", NULL},
		{"Joe <>", NULL},
		{"Joe <a@b.c", NULL},
		{"Joe a@b.c>", NULL},
		{"<a@b.c> trailing", NULL},
		{"Joe <a b@c.d>", NULL},
		{"<<a@b.c>>", NULL},
		{"\"quoted local\"@b.c", NULL},
		{"\"q\"@b.c", NULL},
		{"a,b@c.d", NULL},
		{"a@b.c, d@e.f", NULL},
		{"Jane Doe <jane@example.com>, Mary Doe <mary@example.com>", NULL},
		/* The domain is a host name or an address literal. */
		{"a/b@example.com", "a/b@example.com"},
		{"a@example.com/events", NULL},
		{"a@example.com/", NULL},
		{"a@exa%6dple.com", NULL},
		{"a@example.com?x", NULL},
		{"a@[192.0.2.1]", "a@[192.0.2.1]"},
		{"a@b_c.com", NULL},
	};
	char out[SES_ADDRESS_MAX + 1];
	char long_addr[SES_ADDRESS_MAX + 64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool ok = ses_address_normalize(cases[i].in, strlen(cases[i].in), out);

		if (cases[i].want)
			CHECK(ok && strcmp(out, cases[i].want) == 0, "address",
			      "\"%s\" -> %s \"%s\", want \"%s\"", cases[i].in,
			      ok ? "ok" : "rejected", ok ? out : "", cases[i].want);
		else
			CHECK(!ok, "address", "\"%s\" accepted as \"%s\"",
			      cases[i].in, out);
	}

	/* A NUL inside the given length is a control character. */
	CHECK(!ses_address_normalize("a@b.c\0x", 7, out), "address",
	      "embedded NUL accepted");
	/* len is honoured: the bytes after it are not looked at. */
	CHECK(ses_address_normalize("a@b.cXYZ", 5, out) && strcmp(out, "a@b.c") == 0,
	      "address", "length not honoured: %s", out);
	CHECK(!ses_address_normalize(NULL, 0, out), "address", "NULL accepted");

	/* Exactly SES_ADDRESS_MAX bytes is fine, one more is not; a display
	 * name does not count against the limit. */
	memset(long_addr, 'A', sizeof(long_addr));
	memcpy(long_addr + SES_ADDRESS_MAX - 6, "@x.org", 6);
	CHECK(ses_address_normalize(long_addr, SES_ADDRESS_MAX, out) &&
		      strlen(out) == SES_ADDRESS_MAX && out[0] == 'a',
	      "address", "%d-byte address rejected", SES_ADDRESS_MAX);
	memset(long_addr, 'A', sizeof(long_addr));
	memcpy(long_addr + SES_ADDRESS_MAX - 5, "@x.org", 6);
	CHECK(!ses_address_normalize(long_addr, SES_ADDRESS_MAX + 1, out),
	      "address", "%d-byte address accepted", SES_ADDRESS_MAX + 1);
	{
		char named[SES_ADDRESS_MAX + 64];

		memcpy(named, "Long Name <", 11);
		memset(named + 11, 'b', SES_ADDRESS_MAX);
		memcpy(named + 11 + SES_ADDRESS_MAX - 6, "@x.org>", 7);
		CHECK(ses_address_normalize(named, 11 + SES_ADDRESS_MAX + 1, out) &&
			      strlen(out) == SES_ADDRESS_MAX,
		      "address", "display name counted against the limit");
	}

	/* In a message: a too-long recipient is invalid (keep_raw). */
	{
		char msg[1024];
		char local[SES_ADDRESS_MAX];

		memset(local, 'l', sizeof(local) - 1);
		local[sizeof(local) - 1] = '\0';
		snprintf(msg, sizeof(msg),
			 "{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":\"m\","
			 "\"timestamp\":\"2024-01-02T03:04:05Z\",\"destination\":"
			 "[\"%s@example.com\",\"ok@example.com\"]}}", local);
		expect_events("long recipient", msg, true, RCPTS("ok@example.com"));
	}
}

/* Which events suppress their recipient, from real payloads. */
static void check_suppression(const char *dir)
{
	static const struct {
		const char *file;
		const char *want; /* for every event of the file */
	} cases[] = {
		{"awsdoc-identity-bounce-permanent-general-with-dsn.json", "Bounce/Permanent"},
		{"awsdoc-event-bounce.json", "Bounce/Permanent"},
		{"relay-identity-bounce-transient-general-ooto-no-dsn.json", NULL},
		{"guardian-event-bounce-transient-general-dmarc-5.7.1-multiline.json", NULL},
		{"awsdoc-identity-complaint-with-feedback-report.json", "Complaint"},
		{"awsdoc-event-complaint.json", "Complaint"},
		{"awsdoc-identity-delivery.json", NULL},
		{"awsdoc-event-deliverydelay.json", NULL},
		{"awsdoc-event-reject.json", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[1024];
		struct message m;
		struct ses_events evs = {0};

		snprintf(path, sizeof(path), "%s/ses/%s", dir, cases[i].file);
		CHECK(message_load(path, &m), "suppression", "%s: cannot load", cases[i].file);
		struct ses_context ctx = {m.id, m.topic, false, 0};
		CHECK(ses_events_parse(m.text, m.len, &ctx, &evs) == MT_E_OK && evs.n > 0,
		      "suppression", "%s: no events", cases[i].file);
		for (size_t j = 0; j < evs.n; j++) {
			const char *got = evs.v[j].suppress;
			CHECK((got == NULL && cases[i].want == NULL) ||
				      (got && cases[i].want && strcmp(got, cases[i].want) == 0),
			      "suppression", "%s: got %s want %s", cases[i].file,
			      got ? got : "NULL", cases[i].want ? cases[i].want : "NULL");
		}
		ses_events_free(&evs);
		message_free(&m);
	}
}

/* ------------------------------------------------------------------ */
/* Bounds on what one message puts into each EVENT, and implausible    */
/* times                                                               */

/* A growing string for the long messages below (aborts on no memory:
 * a test that cannot build its input cannot run). */
struct sb {
	char *p;
	size_t len, cap;
};

static void sb_add(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_add(struct sb *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	while (b->len + (size_t)n + 1 > b->cap) {
		b->cap = b->cap ? 2 * b->cap : 4096;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* n copies of unit, into b. */
static void sb_repeat(struct sb *b, const char *unit, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sb_add(b, "%s", unit);
}

/* Parses msg with ctx through both readers, checks that they agree byte
 * for byte, and returns the first EVENT parsed as a json-c object (caller
 * puts it; NULL when there is none).  *evs (may be NULL) gets the fast
 * reader's events (caller frees). */
static struct json_object *parse_both(const char *what, const char *msg,
				      const struct ses_context *ctx,
				      struct ses_events *evs)
{
	struct ses_events a, b;
	struct json_object *first = NULL;

	CHECK(ses_events_parse(msg, strlen(msg), ctx, &a) == MT_E_OK, what, "parse failed");
	CHECK(ses_events_parse_reference(msg, strlen(msg), ctx, &b) == MT_E_OK, what,
	      "reference parse failed");
	CHECK(a.n == b.n && a.keep_raw == b.keep_raw &&
		      a.time_implausible == b.time_implausible,
	      what, "readers disagree: n %zu/%zu keep_raw %d/%d implausible %d/%d", a.n, b.n,
	      a.keep_raw, b.keep_raw, a.time_implausible, b.time_implausible);
	for (size_t i = 0; i < a.n && i < b.n; i++)
		CHECK(a.v[i].json_len == b.v[i].json_len &&
			      memcmp(a.v[i].json, b.v[i].json, a.v[i].json_len) == 0,
		      what, "readers disagree on event %zu:\n fast %s\n ref  %s", i, a.v[i].json,
		      b.v[i].json);
	if (a.n > 0)
		first = json_parse_n(a.v[0].json, a.v[0].json_len);
	ses_events_free(&b);
	if (evs)
		*evs = a;
	else
		ses_events_free(&a);
	return first;
}

/* The length of v's JSON text without its quotes. */
static size_t inner_len(struct json_object *v)
{
	size_t n = strlen(json_text(v));
	return n >= 2 ? n - 2 : 0;
}

static void check_destination_bounds(void)
{
	const struct ses_context ctx = {"mid-1", "arn:aws:sns:eu-west-1:1:t", false, 0};
	struct sb m = {0};
	struct ses_events evs;

	/* A Send to 12: 12 events, each with the first 10 of the list. */
	sb_add(&m, "{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":\"m\","
		   "\"timestamp\":\"2024-01-02T03:04:05Z\",\"destination\":[");
	for (int i = 0; i < 12; i++)
		sb_add(&m, "%s\"d%d@example.com\"", i ? "," : "", i);
	sb_add(&m, "]}}");
	struct json_object *e = parse_both("destination 12", m.p, &ctx, &evs);
	struct json_object *d = get(get(e, "mail"), "destination");
	CHECK(evs.n == 12 && !evs.keep_raw, "destination 12", "%zu events", evs.n);
	CHECK(json_object_is_type(d, json_type_array) && json_object_array_length(d) == 10,
	      "destination 12", "destination %s", json_text(d));
	CHECK(str_is(json_object_array_get_idx(d, 0), "d0@example.com") &&
		      str_is(json_object_array_get_idx(d, 9), "d9@example.com"),
	      "destination 12", "not the first ten: %s", json_text(d));
	CHECK(strcmp(json_text(get(get(e, "mail"), "destinationCount")), "12") == 0,
	      "destination 12", "destinationCount %s", json_text(get(get(e, "mail"), "destinationCount")));
	/* The count follows the list, in every event. */
	CHECK(evs.n == 12 && strstr(evs.v[11].json, "\"d9@example.com\"],\"destinationCount\":12}"),
	      "destination 12", "last event %s", evs.n ? evs.v[evs.n - 1].json : "");
	json_object_put(e);
	ses_events_free(&evs);

	/* Exactly 10: the list as it is, no count. */
	m.len = 0;
	sb_add(&m, "{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":\"m\","
		   "\"timestamp\":\"2024-01-02T03:04:05Z\",\"destination\":[");
	for (int i = 0; i < 10; i++)
		sb_add(&m, "%s\"d%d@example.com\"", i ? "," : "", i);
	sb_add(&m, "]}}");
	e = parse_both("destination 10", m.p, &ctx, NULL);
	CHECK(json_object_array_length(get(get(e, "mail"), "destination")) == 10 &&
		      !has(get(e, "mail"), "destinationCount"),
	      "destination 10", "mail %s", json_text(get(e, "mail")));
	json_object_put(e);

	/* Long entries are cut: plain, at a UTF-8 boundary, and escaped (a
	 * control byte is 6 bytes of JSON). */
	m.len = 0;
	sb_add(&m, "{\"notificationType\":\"Bounce\",\"bounce\":{\"bounceType\":\"Permanent\","
		   "\"timestamp\":\"2024-01-02T03:04:05Z\",\"bouncedRecipients\":"
		   "[{\"emailAddress\":\"b@example.com\"}]},\"mail\":{\"messageId\":\"m\","
		   "\"destination\":[\"");
	sb_repeat(&m, "a", 300);
	sb_add(&m, "\",\"");
	sb_repeat(&m, "b", SES_DESTINATION_ENTRY_MAX - 1);
	sb_add(&m, "\xc3\xa9\",\"");
	sb_repeat(&m, "\\u0001", 100);
	sb_add(&m, "\",\"ok@example.com\"]}}");
	e = parse_both("destination cut", m.p, &ctx, NULL);
	d = get(get(e, "mail"), "destination");
	CHECK(json_object_array_length(d) == 4, "destination cut", "%s", json_text(d));
	CHECK(json_object_get_string_len(json_object_array_get_idx(d, 0)) == SES_DESTINATION_ENTRY_MAX,
	      "destination cut", "plain entry kept %d bytes",
	      json_object_get_string_len(json_object_array_get_idx(d, 0)));
	CHECK(json_object_get_string_len(json_object_array_get_idx(d, 1)) == SES_DESTINATION_ENTRY_MAX - 1,
	      "destination cut", "a 2-byte character across the limit must go whole: %d bytes",
	      json_object_get_string_len(json_object_array_get_idx(d, 1)));
	CHECK(inner_len(json_object_array_get_idx(d, 2)) == SES_DESTINATION_ENTRY_MAX / 6 * 6,
	      "destination cut", "escaped entry is %zu bytes of JSON",
	      inner_len(json_object_array_get_idx(d, 2)));
	CHECK(str_is(json_object_array_get_idx(d, 3), "ok@example.com"), "destination cut",
	      "short entry changed: %s", json_text(d));
	json_object_put(e);

	/* mail's own strings are cut too. */
	m.len = 0;
	sb_add(&m, "{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":\"");
	sb_repeat(&m, "i", 5000);
	sb_add(&m, "\",\"source\":\"");
	sb_repeat(&m, "s\\n", 5000);
	sb_add(&m, "\",\"timestamp\":\"2024-01-02T03:04:05Z\",\"destination\":[\"a@b.c\"]}}");
	e = parse_both("mail values cut", m.p, &ctx, NULL);
	CHECK(inner_len(get(get(e, "mail"), "messageId")) == SES_MAIL_VALUE_MAX &&
		      inner_len(get(get(e, "mail"), "source")) <= SES_MAIL_VALUE_MAX &&
		      inner_len(get(get(e, "mail"), "source")) > SES_MAIL_VALUE_MAX - 3,
	      "mail values cut", "messageId %zu, source %zu bytes",
	      inner_len(get(get(e, "mail"), "messageId")), inner_len(get(get(e, "mail"), "source")));
	json_object_put(e);
	free(m.p);
}

static void check_detail_bounds(void)
{
	const struct ses_context ctx = {"mid-1", "arn:aws:sns:eu-west-1:1:t", false, 0};
	struct sb m = {0};

	/* A long shared string (reportingMTA), a long own one
	 * (diagnosticCode), a number too long to keep. */
	sb_add(&m, "{\"notificationType\":\"Bounce\",\"bounce\":{\"bounceType\":\"Permanent\","
		   "\"timestamp\":\"2024-01-02T03:04:05Z\",\"bounceSubType\":1.");
	sb_repeat(&m, "5", 2000);
	sb_add(&m, ",\"reportingMTA\":\"");
	sb_repeat(&m, "r", 100000);
	sb_add(&m, "\",\"bouncedRecipients\":[{\"emailAddress\":\"b@example.com\","
		   "\"diagnosticCode\":\"");
	sb_repeat(&m, "\\\"", 1000);
	sb_add(&m, "\",\"status\":\"5.1.1\"}]}," MAIL_OK "}");
	struct json_object *e = parse_both("detail cut", m.p, &ctx, NULL);
	struct json_object *det = get(e, "detail");
	CHECK(inner_len(get(det, "reportingMTA")) == SES_DETAIL_VALUE_MAX, "detail cut",
	      "reportingMTA %zu bytes", inner_len(get(det, "reportingMTA")));
	CHECK(inner_len(get(det, "diagnosticCode")) == SES_DETAIL_VALUE_MAX, "detail cut",
	      "diagnosticCode %zu bytes", inner_len(get(det, "diagnosticCode")));
	CHECK(!has(det, "bounceSubType"), "detail cut", "a 2,002-byte number kept");
	CHECK(str_is(get(det, "status"), "5.1.1") && str_is(get(det, "bounceType"), "Permanent"),
	      "detail cut", "short values changed: %s", json_text(det));
	json_object_put(e);

	/* Subscription's preferences object: kept while small, else left out. */
	for (int big = 0; big < 2; big++) {
		m.len = 0;
		sb_add(&m, "{\"eventType\":\"Subscription\",\"subscription\":{\"contactList\":\"l\","
			   "\"timestamp\":\"2024-01-02T03:04:05Z\",\"newTopicPreferences\":"
			   "{\"unsubscribeAll\":false,\"topicSubscriptionStatus\":[");
		for (int i = 0; i < (big ? 100 : 3); i++)
			sb_add(&m, "%s{\"topicName\":\"topic-%d\",\"subscriptionStatus\":\"OptOut\"}",
			       i ? "," : "", i);
		sb_add(&m, "]}}," MAIL_OK "}");
		e = parse_both("preferences", m.p, &ctx, NULL);
		CHECK(has(get(e, "detail"), "newTopicPreferences") == !big, "preferences",
		      "big=%d: %s", big, json_text(get(e, "detail")));
		CHECK(str_is(get(get(e, "detail"), "contactList"), "l"), "preferences", "%s",
		      json_text(get(e, "detail")));
		json_object_put(e);
	}
	free(m.p);
}

static void check_header_bounds(void)
{
	const struct ses_context ctx = {"mid-1", "arn:aws:sns:eu-west-1:1:t", true, 0};
	struct sb m = {0};

	sb_add(&m, "{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":\"m\","
		   "\"timestamp\":\"2024-01-02T03:04:05Z\",\"destination\":[\"a@b.c\"],"
		   "\"commonHeaders\":{\"from\":[\"f@example.com\"],\"x-evil\":\"");
	sb_repeat(&m, "x", 500);
	sb_add(&m, "\",\"to\":[");
	for (int i = 0; i < 30; i++)
		sb_add(&m, "%s\"t%d@example.com\"", i ? "," : "", i);
	sb_add(&m, "],\"subject\":\"");
	sb_repeat(&m, "\xe2\x82\xac", 400); /* 1,200 bytes of euro signs */
	sb_add(&m, "\",\"date\":7}}}");
	struct json_object *e = parse_both("headers", m.p, &ctx, NULL);
	struct json_object *h = get(get(e, "mail"), "commonHeaders");
	CHECK(json_object_is_type(h, json_type_object), "headers", "%s", json_text(get(e, "mail")));
	CHECK(!has(h, "x-evil") && !has(h, "date"), "headers",
	      "unknown fields or non-strings kept: %s", json_text(h));
	CHECK(json_object_array_length(get(h, "to")) == SES_HEADER_LIST_MAX &&
		      str_is(json_object_array_get_idx(get(h, "to"), 0), "t0@example.com"),
	      "headers", "to %s", json_text(get(h, "to")));
	CHECK(json_object_get_string_len(get(h, "subject")) == SES_HEADER_VALUE_MAX / 3 * 3,
	      "headers", "subject %d bytes", json_object_get_string_len(get(h, "subject")));
	CHECK(str_is(json_object_array_get_idx(get(h, "from"), 0), "f@example.com"), "headers",
	      "from %s", json_text(get(h, "from")));
	json_object_put(e);

	/* However many fields, at most SES_HEADERS_MAX bytes of strings. */
	m.len = 0;
	sb_add(&m, "{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":\"m\","
		   "\"timestamp\":\"2024-01-02T03:04:05Z\",\"destination\":[\"a@b.c\"],"
		   "\"commonHeaders\":{");
	static const char *const lists[] = {"from", "to", "cc", "bcc", "replyTo"};
	for (size_t k = 0; k < 5; k++) {
		sb_add(&m, "%s\"%s\":[", k ? "," : "", lists[k]);
		for (int i = 0; i < 10; i++) {
			sb_add(&m, "%s\"", i ? "," : "");
			sb_repeat(&m, "y", 400);
			sb_add(&m, "\"");
		}
		sb_add(&m, "]");
	}
	sb_add(&m, ",\"subject\":\"s\"}}}");
	e = parse_both("headers budget", m.p, &ctx, NULL);
	h = get(get(e, "mail"), "commonHeaders");
	size_t total = 0;
	for (struct json_object_iterator it = json_object_iter_begin(h),
					 it_end = json_object_iter_end(h);
	     !json_object_iter_equal(&it, &it_end); json_object_iter_next(&it)) {
		struct json_object *v = json_object_iter_peek_value(&it);
		for (size_t i = 0; i < json_object_array_length(v); i++)
			total += (size_t)json_object_get_string_len(json_object_array_get_idx(v, i));
	}
	CHECK(total == SES_HEADERS_MAX && !has(h, "subject") && !has(h, "cc"), "headers budget",
	      "%zu bytes of strings: %s", total, json_text(h));
	json_object_put(e);
	free(m.p);
}

static void check_implausible_times(void)
{
	static const char msg[] =
		"{\"notificationType\":\"Delivery\",\"delivery\":{"
		"\"timestamp\":\"2024-01-02T03:04:05.678Z\",\"recipients\":[\"a@example.com\"]},"
		"\"mail\":{\"messageId\":\"m\",\"destination\":[\"a@example.com\"]}}";
	int64_t t = ms_of("2024-01-02T03:04:05.678Z");
	const struct {
		int64_t max;
		bool indexed;
	} cases[] = {{0, true}, {t, true}, {t + 1, true}, {t - 1, false}, {1, false}};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ses_context ctx = {"mid-1", "arn:aws:sns:eu-west-1:1:t", false, cases[i].max};
		struct ses_events evs;
		struct json_object *e = parse_both("implausible", msg, &ctx, &evs);
		CHECK(evs.n == (cases[i].indexed ? 1u : 0u) && evs.keep_raw == !cases[i].indexed &&
			      evs.time_implausible == !cases[i].indexed,
		      "implausible", "max %" PRId64 ": n %zu keep_raw %d implausible %d", cases[i].max,
		      evs.n, evs.keep_raw, evs.time_implausible);
		json_object_put(e);
		ses_events_free(&evs);
	}
	/* A message without a usable time is not "implausible", just not
	 * indexable. */
	struct ses_context ctx = {"mid-1", "arn:aws:sns:eu-west-1:1:t", false, 1};
	struct ses_events evs;
	json_object_put(parse_both("no time", "{\"notificationType\":\"Delivery\",\"delivery\":"
					      "{\"recipients\":[\"a@b.c\"]},\"mail\":{\"messageId\":\"m\"}}",
				   &ctx, &evs));
	CHECK(evs.n == 0 && evs.keep_raw && !evs.time_implausible, "no time",
	      "n %zu keep_raw %d implausible %d", evs.n, evs.keep_raw, evs.time_implausible);
	ses_events_free(&evs);
}

/* ------------------------------------------------------------------ */
/* The deliverability counters' count type and names (stats.h)         */

/* Both readers give the same count types and names; the fast reader's
 * are returned in *evs (caller frees). */
static void parse_counted(const char *what, const char *msg, size_t len,
			  const struct ses_context *ctx, struct ses_events *evs)
{
	struct ses_events ref;

	CHECK(ses_events_parse(msg, len, ctx, evs) == MT_E_OK, what, "parse failed");
	CHECK(ses_events_parse_reference(msg, len, ctx, &ref) == MT_E_OK, what,
	      "reference parse failed");
	CHECK(evs->n == ref.n, what, "n %zu/%zu", evs->n, ref.n);
	if (evs->n > 0 && ref.n > 0)
		CHECK(strcmp(evs->identity, ref.identity) == 0 &&
			      strcmp(evs->config_set, ref.config_set) == 0,
		      what, "readers disagree: identity %s/%s config set %s/%s", evs->identity,
		      ref.identity, evs->config_set, ref.config_set);
	for (size_t i = 0; i < evs->n && i < ref.n; i++)
		CHECK(evs->v[i].count_type == ref.v[i].count_type, what,
		      "readers disagree on the count type of event %zu", i);
	ses_events_free(&ref);
}

static void check_counted(const char *what, const struct ses_events *evs,
			  const char *count_type, const char *identity,
			  const char *config_set)
{
	CHECK(evs->n > 0, what, "no events");
	for (size_t i = 0; i < evs->n; i++) {
		const char *got = evs->v[i].count_type;
		CHECK((got == NULL && count_type == NULL) ||
			      (got && count_type && strcmp(got, count_type) == 0),
		      what, "count type %s, want %s", got ? got : "NULL",
		      count_type ? count_type : "NULL");
	}
	if (evs->n > 0) {
		CHECK(strcmp(evs->identity, identity) == 0, what, "identity %s, want %s",
		      evs->identity, identity);
		CHECK(strcmp(evs->config_set, config_set) == 0, what,
		      "configuration set '%s', want '%s'", evs->config_set, config_set);
	}
}

static void check_counter_names(const char *dir)
{
	/* Read off the files by hand (mail.sourceArn, mail.source, mail.tags). */
	static const struct {
		const char *file, *count_type, *identity, *config_set;
	} cases[] = {
		{"awsdoc-event-bounce.json", "Bounce/Permanent", "sender@example.com", "ConfigSet"},
		{"awsdoc-event-send.json", "Send", "sender@example.com", "ConfigSet"},
		{"awsdoc-event-delivery.json", "Delivery", "sender@example.com", "ConfigSet"},
		{"awsdoc-event-complaint.json", "Complaint", "sender@example.com", "ConfigSet"},
		{"awsdoc-event-reject.json", "Reject", "sender@example.com", "ConfigSet"},
		{"awsdoc-event-deliverydelay.json", "DeliveryDelay", "sender@example.com",
		 "ConfigSet"},
		{"awsdoc-event-rendering-failure.json", "Rendering Failure", "sender@example.com",
		 "ConfigSet"},
		/* No sourceArn: the domain of mail.source. */
		{"awsdoc-event-open.json", "Open", "example.com", "ConfigSet"},
		{"awsdoc-event-click.json", "Click", "example.com", "ConfigSet"},
		{"awsdoc-event-subscription.json", NULL, "sender@example.com", "ConfigSet"},
		{"guardian-event-bounce-transient-general-dmarc-5.7.1-multiline.json",
		 "Bounce/Transient", "deploydomain.co.uk", "SESConfigurationSet-DFsgSHGDH"},
		{"awsdoc-identity-delivery.json", "Delivery", "example.com", ""},
		{"relay-identity-bounce-transient-general-ooto-no-dsn.json", "Bounce/Transient",
		 "relay.example.com", ""},
		{"sns-keila-event-bounce-permanent-simulator-signed.json", "Bounce/Permanent",
		 "newsletter-test@keila.io", "keila"},
		{"sns-djangoses-identity-bounce-transient-general-no-status.json",
		 "Bounce/Transient", "example.com", ""},
		/* "arn:identity/...": still an identity ARN's tail. */
		{"sns-govuknotify-identity-complaint-no-headers.json", "Complaint",
		 "notifications.service.gov.uk", ""},
		/* A display name in mail.source ("Spatie" <info@spatie.be>). */
		{"sns-mailcoach-event-open.json", "Open", "spatie.be", "mailcoach"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[1024];
		struct message m;
		struct ses_events evs = {0};

		snprintf(path, sizeof(path), "%s/ses/%s", dir, cases[i].file);
		CHECK(message_load(path, &m), cases[i].file, "cannot load");
		struct ses_context ctx = {m.id, m.topic, false, 0};
		parse_counted(cases[i].file, m.text, m.len, &ctx, &evs);
		check_counted(cases[i].file, &evs, cases[i].count_type, cases[i].identity,
			      cases[i].config_set);
		ses_events_free(&evs);
		message_free(&m);
	}

	/* Hand-made: the bounce types, and names that are not valid. */
#define MSG(type_obj, mail_extra)                                                        \
	"{\"eventType\":\"Bounce\",\"bounce\":{" type_obj ",\"timestamp\":"               \
	"\"2024-01-02T03:04:05.000Z\",\"bouncedRecipients\":[{\"emailAddress\":"          \
	"\"a@x.org\"}]},\"mail\":{\"messageId\":\"m1\",\"timestamp\":"                    \
	"\"2024-01-02T03:04:00.000Z\",\"destination\":[\"a@x.org\"]" mail_extra "}}"
	static const struct {
		const char *what, *msg, *count_type, *identity, *config_set;
	} made[] = {
		{"undetermined", MSG("\"bounceType\":\"Undetermined\"", ",\"source\":\"s@Ex.COM\""),
		 "Bounce/Undetermined", "ex.com", ""},
		{"no bounceType", MSG("\"bounceSubType\":\"General\"", ",\"source\":\"s@ex.com\""),
		 "Bounce/Undetermined", "ex.com", ""},
		{"other bounceType", MSG("\"bounceType\":\"permanent\"", ""),
		 "Bounce/Undetermined", STATS_OTHER, ""},
		{"bounceType not a string", MSG("\"bounceType\":1", ""), "Bounce/Undetermined",
		 STATS_OTHER, ""},
		{"escaped bounceType", MSG("\"bounceType\":\"Perm\\u0061nent\"", ""),
		 "Bounce/Permanent", STATS_OTHER, ""},
		{"arn lower-cased", MSG("\"bounceType\":\"Transient\"",
					",\"sourceArn\":\"arn:aws:ses:eu-west-1:1:identity/Ex.Org\","
					"\"source\":\"s@ignored.com\""),
		 "Bounce/Transient", "ex.org", ""},
		{"arn without identity", MSG("\"bounceType\":\"Permanent\"",
					     ",\"sourceArn\":\"arn:aws:ses:eu-west-1:1:identity/\","
					     "\"source\":\"s@fallback.com\""),
		 "Bounce/Permanent", "fallback.com", ""},
		{"arn with braces", MSG("\"bounceType\":\"Permanent\"",
					",\"sourceArn\":\"arn:identity/a{b}.com\""),
		 "Bounce/Permanent", STATS_OTHER, ""},
		{"escaped arn", MSG("\"bounceType\":\"Permanent\"",
				    ",\"sourceArn\":\"arn:identity\\/e\\u0078.com\""),
		 "Bounce/Permanent", "ex.com", ""},
		{"NUL in arn", MSG("\"bounceType\":\"Permanent\"",
				   ",\"sourceArn\":\"arn:identity/ex\\u0000.com\""),
		 "Bounce/Permanent", STATS_OTHER, ""},
		{"bar in source", MSG("\"bounceType\":\"Permanent\"", ",\"source\":\"s@a|b.com\""),
		 "Bounce/Permanent", STATS_OTHER, ""},
		{"non-ASCII source", MSG("\"bounceType\":\"Permanent\"",
					 ",\"source\":\"s@caf\\u00e9.fr\""),
		 "Bounce/Permanent", STATS_OTHER, ""},
		{"config set", MSG("\"bounceType\":\"Permanent\"",
				   ",\"tags\":{\"ses:configuration-set\":[\"Cs-1\",\"x\"]}"),
		 "Bounce/Permanent", STATS_OTHER, "Cs-1"},
		{"config set with space", MSG("\"bounceType\":\"Permanent\"",
					      ",\"tags\":{\"ses:configuration-set\":[\"a b\"]}"),
		 "Bounce/Permanent", STATS_OTHER, STATS_OTHER},
		{"config set empty", MSG("\"bounceType\":\"Permanent\"",
					 ",\"tags\":{\"ses:configuration-set\":[\"\"]}"),
		 "Bounce/Permanent", STATS_OTHER, STATS_OTHER},
		{"config set not a list", MSG("\"bounceType\":\"Permanent\"",
					      ",\"tags\":{\"ses:configuration-set\":\"cs\"}"),
		 "Bounce/Permanent", STATS_OTHER, ""},
		{"config set list of numbers", MSG("\"bounceType\":\"Permanent\"",
						   ",\"tags\":{\"ses:configuration-set\":[1]}"),
		 "Bounce/Permanent", STATS_OTHER, ""},
		{"config set empty list", MSG("\"bounceType\":\"Permanent\"",
					      ",\"tags\":{\"ses:configuration-set\":[]}"),
		 "Bounce/Permanent", STATS_OTHER, ""},
		{"duplicate tag (json-c keeps the last)",
		 MSG("\"bounceType\":\"Permanent\"",
		     ",\"tags\":{\"ses:configuration-set\":[\"a\"],\"ses:configuration-set\":[\"b\"]}"),
		 "Bounce/Permanent", STATS_OTHER, "b"},
		{"escaped tag key",
		 MSG("\"bounceType\":\"Permanent\"",
		     ",\"tags\":{\"ses:configuration\\u002dset\":[\"a\"]}"),
		 "Bounce/Permanent", STATS_OTHER, "a"},
	};
#undef MSG
	for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
		struct ses_events evs = {0};
		parse_counted(made[i].what, made[i].msg, strlen(made[i].msg), &test_ctx, &evs);
		check_counted(made[i].what, &evs, made[i].count_type, made[i].identity,
			      made[i].config_set);
		ses_events_free(&evs);
	}

	/* A configuration set or identity of STATS_NAME_MAX bytes is kept,
	 * one more is (other). */
	for (size_t extra = 0; extra < 2; extra++) {
		char name[STATS_NAME_MAX + 2], msg[1024];
		memset(name, 'c', STATS_NAME_MAX + extra);
		name[STATS_NAME_MAX + extra] = '\0';
		snprintf(msg, sizeof(msg),
			 "{\"eventType\":\"Send\",\"send\":{},\"mail\":{\"messageId\":\"m1\","
			 "\"timestamp\":\"2024-01-02T03:04:00.000Z\",\"destination\":"
			 "[\"a@x.org\"],\"sourceArn\":\"arn:identity/%s\",\"tags\":"
			 "{\"ses:configuration-set\":[\"%s\"]}}}",
			 name, name);
		struct ses_events evs = {0};
		parse_counted("long names", msg, strlen(msg), &test_ctx, &evs);
		check_counted("long names", &evs, "Send", extra ? STATS_OTHER : name,
			      extra ? STATS_OTHER : name);
		ses_events_free(&evs);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
		return 2;
	}
	check_corpus(argv[1]);
	check_golden(argv[1]);
	check_recipients();
	check_limits();
	check_rejects();
	check_times();
	check_detail_values();
	check_garbage(argv[1]);
	check_mutations(argv[1]);
	check_addresses();
	check_suppression(argv[1]);
	check_destination_bounds();
	check_detail_bounds();
	check_header_bounds();
	check_implausible_times();
	check_counter_names(argv[1]);
	if (failures) {
		printf("test_ses: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_ses: all checks passed\n");
	return 0;
}
