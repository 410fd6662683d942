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

/* Longest recipient address we index (RFC 5321 path limit). */
#define SES_ADDRESS_MAX 320
/* Most recipients taken from one message (SES allows 50 per send). */
#define SES_RECIPIENTS_MAX 1000
/* Deepest JSON nesting accepted in an SES message. */
#define SES_JSON_DEPTH_MAX 64

struct ses_context {
	const char *sns_message_id; /* becomes EVENT "id" */
	const char *topic_arn;      /* becomes EVENT "topicArn" */
	bool keep_headers;          /* also copy mail.commonHeaders */
};

struct ses_event {
	char recipient[SES_ADDRESS_MAX + 1]; /* normalised, lower case */
	int64_t time_ms;                     /* the event's own time */
	const char *type;                    /* static string, e.g. "Bounce" */
	/* What this event means for sending to the recipient again:
	 * "Bounce/Permanent", "Complaint" or NULL (static strings). */
	const char *suppress;
	char *json;                          /* EVENT JSON, owned */
	size_t json_len;
};

struct ses_events {
	struct ses_event *v; /* owned array of n events */
	size_t n;
	bool keep_raw; /* not (fully) indexable: caller keeps the raw message */
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
