/* ses.h - SES notifications and events -> one EVENT per affected recipient.
 *
 * Pure: no I/O, no globals.  Input is the SNS "Message" string of a verified
 * Notification; output is the list of EVENT JSON documents of SPEC.md, one
 * per affected recipient, each with its normalised recipient address and its
 * event time.  Both SES shapes are understood: identity notifications
 * ("notificationType") and configuration-set events ("eventType").
 *
 * A message that is not an SES event, or an SES payload that cannot be
 * indexed faithfully (unknown type, no usable recipients, no usable time, no
 * mail.messageId, ...) yields no events and keep_raw = true: the caller keeps
 * the whole message under its topic instead, so nothing is dropped and
 * nothing is mis-indexed.
 */
#ifndef SES_H
#define SES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mt_error.h"
#include "stats.h"

/* Longest recipient address we index (RFC 5321 path limit). */
#define SES_ADDRESS_MAX 320
/* Most recipients taken from one message (SES allows 50 per send). */
#define SES_RECIPIENTS_MAX 1000
/* Deepest JSON nesting accepted in an SES message. */
#define SES_JSON_DEPTH_MAX 64

/* An event whose time is more than this after the SNS Timestamp or the
 * receipt time (ses_context.time_max_ms) is implausible: its message goes
 * on no timeline (keep_raw, time_implausible).  SES stamps an event before
 * SNS publishes it, so a genuine one is never later than its Timestamp
 * but for clock skew; a day leaves room for any skew and bounds how far
 * ahead of the genuine events a forged one can be filed. */
#define SES_TIME_AHEAD_MAX_MS (86400LL * 1000)

/* What one message can put into each of its EVENTs is bounded, because
 * every recipient's EVENT repeats what the message says about the mail
 * (and, for most types, the type's own fields): without bounds a 256 KB
 * message with 1,000 recipients multiplies its longest values a thousand
 * times.  Lengths are of a value's JSON text between its quotes (escapes
 * counted as written); a longer string is cut at a UTF-8 character
 * boundary to fit.  The largest values in real SES messages (tests/data)
 * are well inside: destination entries 91, diagnosticCode 366 bytes. */
/* mail.messageId, mail.source, mail.timestamp. */
#define SES_MAIL_VALUE_MAX 256
/* mail.destination: the first SES_DESTINATION_MAX entries (a longer list
 * adds "destinationCount": its length), each cut to
 * SES_DESTINATION_ENTRY_MAX. */
#define SES_DESTINATION_MAX 10
#define SES_DESTINATION_ENTRY_MAX 256
/* Each string of "detail" (diagnosticCode, smtpResponse, link, ...). */
#define SES_DETAIL_VALUE_MAX 1024
/* An object in "detail" (Subscription's newTopicPreferences) whose JSON is
 * longer is left out. */
#define SES_DETAIL_OBJECT_MAX 2048
/* --keep-headers: commonHeaders keeps only the fields SES writes there
 * (from, to, cc, bcc, replyTo, sender, returnPath, date, messageId,
 * subject), each list's first SES_HEADER_LIST_MAX strings, every string
 * cut to SES_HEADER_VALUE_MAX, and stops when SES_HEADERS_MAX bytes of
 * strings are taken (the last one cut to what is left). */
#define SES_HEADER_VALUE_MAX 512
#define SES_HEADER_LIST_MAX 10
#define SES_HEADERS_MAX 2048

struct ses_context {
	const char *sns_message_id; /* becomes EVENT "id" */
	const char *topic_arn;      /* becomes EVENT "topicArn" */
	bool keep_headers;          /* also copy mail.commonHeaders */
	/* An event later than this (ms since the epoch) is implausible: the
	 * message yields no events, keep_raw and time_implausible.  0: no
	 * limit.  The caller passes min(SNS Timestamp, now) +
	 * SES_TIME_AHEAD_MAX_MS. */
	int64_t time_max_ms;
};

struct ses_event {
	char recipient[SES_ADDRESS_MAX + 1]; /* normalised, lower case */
	int64_t time_ms;                     /* the event's own time */
	const char *type;                    /* static string, e.g. "Bounce" */
	/* What this event means for sending to the recipient again:
	 * "Bounce/Permanent", "Complaint" or NULL (static strings). */
	const char *suppress;
	/* The deliverability counters' count type (stats.h: one of
	 * stats_type_names, a static string; a Bounce by its bounceType) or
	 * NULL for a type that is not counted (Subscription). */
	const char *count_type;
	char *json;                          /* EVENT JSON, owned */
	size_t json_len;
};

struct ses_events {
	struct ses_event *v; /* owned array of n events */
	size_t n;
	bool keep_raw; /* not (fully) indexable: caller keeps the raw message */
	bool time_implausible; /* no events: the time is past time_max_ms */
	/* The deliverability counters' names of the message's events (set
	 * when n > 0; stats.h, README "Deliverability counters"), each a
	 * valid name or STATS_OTHER:
	 * identity: the part after ":identity/" of mail.sourceArn, else the
	 *   domain of mail.source's address (ses_address_normalize: a
	 *   display name is dropped; after the last '@'), lower-cased;
	 * config_set: mail.tags["ses:configuration-set"][0] as written, ""
	 *   when the mail has none (a list whose first entry is a string). */
	char identity[STATS_NAME_MAX + 1];
	char config_set[STATS_NAME_MAX + 1];
};

/* Parse message[0..len) and fill out (zeroed by the callee first).  The
 * EVENT JSON is deterministic: the same input and context give the same
 * bytes, so storing it twice is a no-op (this is what makes redelivery
 * harmless).  Returns MT_E_OK (possibly with n == 0 and keep_raw), or
 * MT_E_NOMEM.  Free with ses_events_free() in every case. */
enum mt_err ses_events_parse(const char *message, size_t len,
			     const struct ses_context *ctx,
			     struct ses_events *out);

/* ses_events_parse() read with json-c alone (the reading the fast reader
 * must agree with byte for byte; it also takes the messages the fast
 * reader leaves to json-c).  For the tests and the fuzzer. */
enum mt_err ses_events_parse_reference(const char *message, size_t len,
				       const struct ses_context *ctx,
				       struct ses_events *out);

/* Frees what ses_events_parse allocated; accepts NULL and zeroed structs. */
void ses_events_free(struct ses_events *evs);

/* Normalise an address as SES or a user wrote it: surrounding space and a
 * display name ("Joe <Joe@Example.com>") removed, ASCII lower-cased.
 * Writes a NUL-terminated result into out (SES_ADDRESS_MAX + 1 bytes).
 * Returns false for anything that is not a plausible address (no '@',
 * empty local part or domain, control characters or spaces, too long). */
bool ses_address_normalize(const char *in, size_t len,
			   char out[SES_ADDRESS_MAX + 1]);

#endif
