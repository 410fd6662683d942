/* status.h - what an operator setting up SNS needs to see: per topic seen,
 * whether it is accepted, its subscription's state, its last accepted
 * delivery, and the deliveries refused by reason in the last hour and day,
 * each reason with one line saying how to fix it (GET /v1/status).
 *
 * Recording is in memory (a mutex and a small table, never a Redis round
 * trip on the request path); one thread writes what was recorded to Redis
 * every STATUS_FLUSH_MS in one round trip (a Lua script), so every copy of
 * mailtrail behind a load balancer reads the same picture.
 *
 * Redis keys (all with the hash tag {status}, so one slot in a Cluster):
 *   {prefix}{status}:topics      sorted set: topic -> last seen (ms)
 *   {prefix}{status}:unverified  sorted set: the topics never seen in a
 *                                verified delivery -> last seen (ms)
 *   {prefix}{status}:t:<topic>   hash per topic: first_seen, last_seen,
 *                                last_accepted, verified, sub_state,
 *                                sub_time, sub_detail, sub_strong,
 *                                cert_host, cert_host_time, last_reason,
 *                                last_refused
 *   {prefix}{status}:h:<hour>    hash per UTC hour (ms / 3,600,000):
 *                                "<topic>\t<reason>" and
 *                                "<topic>\taccepted" -> count; expires
 *                                after STATUS_HOUR_TTL_S
 *
 * Bounds: a topic ARN is taken only when it looks like one (STATUS_TOPIC_LEN_MAX
 * bytes of [A-Za-z0-9:._-], beginning "arn:"); anything else is recorded
 * under "(none)".  At most STATUS_TOPICS_MAX topics are kept, of which at
 * most STATUS_UNVERIFIED_TOPICS_MAX only ever seen in deliveries that were
 * not verified (their TopicArn is whatever the sender wrote); the rest are
 * counted under "(other)".  A verified topic takes the place of the
 * unverified topic seen longest ago when the list is full; an unverified
 * topic not seen for STATUS_UNVERIFIED_IDLE_MS is forgotten.  Reasons are
 * the fixed list of STATUS_REASON_MAP.
 */
#ifndef STATUS_H
#define STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "config.h"
#include "mt_error.h"
#include "webhook.h"

#define STATUS_TOPICS_MAX 100
#define STATUS_UNVERIFIED_TOPICS_MAX 50
/* Longest TopicArn kept: what webhook_result.topic holds uncut (a
 * longer one, a topic name over about 200 characters, is "(none)"). */
#define STATUS_TOPIC_LEN_MAX 254
/* Longest certificate host and subscription detail kept (the detail is
 * a SubscribeURL to visit, whole as webhook_result.detail holds it: a
 * real one, with its 256-digit token, is about 400 bytes). */
#define STATUS_HOST_MAX 255
#define STATUS_DETAIL_MAX 511
/* How often the recorded notes go to Redis. */
#define STATUS_FLUSH_MS 2000
/* Hourly counts are kept this long (the day's answer needs 25 hours). */
#define STATUS_HOUR_TTL_S (2 * 86400)
#define STATUS_UNVERIFIED_IDLE_MS (2LL * 86400 * 1000)
/* A topic that had traffic and none for this long gets a hint. */
#define STATUS_SILENT_MS (24LL * 3600 * 1000)
/* Pseudo topics. */
#define STATUS_TOPIC_NONE "(none)"
#define STATUS_TOPIC_OTHER "(other)"

/* X(enum name, API name): why a delivery was refused. */
#define STATUS_REASON_MAP(X)                                                   \
	X(RAW_DELIVERY, "raw_delivery")                                        \
	X(TOPIC_NOT_ACCEPTED, "topic_not_accepted")                            \
	X(BAD_SIGNATURE, "bad_signature")                                      \
	X(URL_NOT_ALLOWED, "url_not_allowed")                                  \
	X(CERT_FETCH_FAILED, "cert_fetch_failed")                              \
	X(CONFIRM_FAILED, "confirm_failed")                                    \
	X(TOO_OLD, "too_old")                                                  \
	X(MALFORMED, "malformed")                                              \
	X(STORAGE_UNAVAILABLE, "storage_unavailable")                          \
	X(OVERLOADED, "overloaded")

enum status_reason {
	STATUS_R_NONE = -1, /* not refused */
#define STATUS_REASON_ENUM(name, api) STATUS_R_##name,
	STATUS_REASON_MAP(STATUS_REASON_ENUM)
#undef STATUS_REASON_ENUM
	STATUS_R__COUNT
};

/* A subscription's state, as its last (SubscriptionConfirmation or
 * UnsubscribeConfirmation) delivery left it. */
enum status_sub {
	STATUS_SUB_NONE,
	STATUS_SUB_CONFIRMED,    /* SubscribeURL visited */
	STATUS_SUB_PENDING,      /* --auto-confirm no: an operator must visit it */
	STATUS_SUB_REFUSED,      /* refused before it could be confirmed */
	STATUS_SUB_FAILED,       /* verified, but the SubscribeURL GET failed */
	STATUS_SUB_UNSUBSCRIBED, /* an UnsubscribeConfirmation came */
};

/* The API name of a reason ("raw_delivery", ...); "?" out of range. */
const char *status_reason_name(enum status_reason r);

/* The reason a refused delivery is counted under.  raw_header: the
 * request said x-amz-sns-rawdelivery: true; typed: its body had a Type
 * (a bare SES JSON body has none).  STATUS_R_NONE for MT_E_OK. */
enum status_reason status_reason_of(enum mt_err err, bool raw_header, bool typed);

struct status;

/* Does not connect yet; starts the flushing thread.  cfg (which must
 * outlive it) says which topics are accepted.  NULL on failure. */
struct status *status_new(const struct config *cfg);
/* Flushes what is left, stops the thread.  Accepts NULL. */
void status_free(struct status *st);

/* One answered delivery.  header_topic: x-amz-sns-topic-arn (raw
 * deliveries carry the topic only there; may be NULL); cert_host: the
 * SigningCertURL's authority when the certificate could not be fetched
 * (may be NULL).  Untrusted text is checked and bounded here.  Never
 * blocks on anything but the table's mutex. */
void status_record(struct status *st, const struct webhook_result *res,
		   bool raw_header, const char *header_topic, const char *cert_host);

/* Writes what was recorded to Redis now (the thread does it every
 * STATUS_FLUSH_MS).  What Redis does not take is kept for the next. */
enum mt_err status_flush(struct status *st, char *errbuf, size_t errsz);

/* The answer of GET /v1/status (flushes this process's notes first):
 * *out is a new object (caller puts it). */
enum mt_err status_read(struct status *st, struct json_object **out, char *errbuf,
			size_t errsz);

#endif
