/* sns.h - the SNS HTTP(S) delivery envelope and its string to sign.
 *
 * Pure: parses the POST body of an SNS delivery with a strict JSON reader
 * (duplicate keys, trailing garbage, lone surrogates and over-deep nesting
 * are errors) and builds the canonical string that SNS signed.
 */
#ifndef SNS_H
#define SNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mt_error.h"

/* Deepest JSON nesting accepted in an envelope (SNS sends depth 1; message
 * attributes add two). */
#define SNS_JSON_DEPTH_MAX 16
/* Most members in one JSON object of the envelope. */
#define SNS_JSON_MEMBERS_MAX 64

enum sns_type {
	SNS_NOTIFICATION,
	SNS_SUBSCRIPTION_CONFIRMATION,
	SNS_UNSUBSCRIBE_CONFIRMATION,
};

/* X(enum name, JSON key) - the envelope fields mailtrail reads. */
#define SNS_FIELD_MAP(X)                                                       \
	X(MESSAGE, "Message")                                                  \
	X(MESSAGE_ID, "MessageId")                                             \
	X(SIGNATURE, "Signature")                                              \
	X(SIGNATURE_VERSION, "SignatureVersion")                               \
	X(SIGNING_CERT_URL, "SigningCertURL")                                  \
	X(SUBJECT, "Subject")                                                  \
	X(SUBSCRIBE_URL, "SubscribeURL")                                       \
	X(TIMESTAMP, "Timestamp")                                              \
	X(TOKEN, "Token")                                                      \
	X(TOPIC_ARN, "TopicArn")                                               \
	X(TYPE, "Type")                                                        \
	X(UNSUBSCRIBE_URL, "UnsubscribeURL")

enum sns_field {
#define SNS_FIELD_ENUM(name, key) SNS_F_##name,
	SNS_FIELD_MAP(SNS_FIELD_ENUM)
#undef SNS_FIELD_ENUM
	SNS_F__COUNT
};

/* A decoded JSON string value; p == NULL when the key is absent or null.
 * p is NUL-terminated but may hold NUL bytes (\u0000): use len.  The
 * parser's values all live in sns_message.strings. */
struct sns_str {
	char *p;
	size_t len;
};

struct sns_message {
	enum sns_type type;
	struct sns_str f[SNS_F__COUNT];
	int64_t timestamp_ms; /* Timestamp, parsed */
	int signature_version; /* 1 or 2 */
	char *strings; /* owns every f[].p the parser set (one allocation) */
};

/* The JSON key of a field, e.g. "SigningCertURL". */
const char *sns_field_name(enum sns_field field);

/* Parse body[0..len) into out (zeroed by the callee).  Checks, in order:
 * strict JSON object (MT_E_BAD_JSON, MT_E_DUP_KEY, MT_E_TOO_DEEP); every
 * known field that is present is a string (Subject may be null)
 * (MT_E_FIELD_TYPE); no Type, Signature and SignatureVersion at all
 * (MT_E_UNSIGNED); Type known (MT_E_UNKNOWN_TYPE); the fields the type needs
 * present (MT_E_MISSING_FIELD); no NUL in any field but Message
 * (MT_E_FIELD_TYPE); no control character (U+0000-U+001F, U+007F) in a
 * signed field other than Message: MessageId, Subject, SubscribeURL,
 * Timestamp, Token, TopicArn, Type (MT_E_CONTROL_CHAR), so that the string
 * to sign reads back one way only; MessageId a UUID (8-4-4-4-12 hex)
 * (MT_E_MESSAGE_ID); Timestamp parseable (MT_E_BAD_TIMESTAMP);
 * SignatureVersion "1" or "2" (MT_E_SIG_VERSION).
 * Free out with sns_message_free() whatever the result. */
enum mt_err sns_envelope_parse(const char *body, size_t len,
			       struct sns_message *out);

/* Frees the strings of m (m->strings); accepts NULL and zeroed structs. */
void sns_message_free(struct sns_message *m);

/* The canonical string SNS signed for m ("Key\nValue\n" per signed field).
 * Returns a malloc'd NUL-terminated buffer, caller frees; *len_out gets its
 * length.  NULL on allocation failure. */
char *sns_string_to_sign(const struct sns_message *m, size_t *len_out);

/* The Type string for a type ("Notification", ...). */
const char *sns_type_name(enum sns_type type);

#endif
