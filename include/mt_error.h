/* mt_error.h - the one error convention of mailtrail.
 *
 * Every fallible function returns an mt_err.  Each code has a short reason
 * (sent to the client as {"status":"error","error":"<reason>"}) and maps to
 * exactly one HTTP status, here and nowhere else.  4xx tells SNS "drop it",
 * 5xx tells SNS "try again", so every transient fault must be a 5xx code.
 */
#ifndef MT_ERROR_H
#define MT_ERROR_H

/* X(name, http status, reason) */
#define MT_ERR_MAP(X)                                                          \
	X(OK, 200, "ok")                                                       \
	X(BAD_JSON, 400, "body is not a valid JSON object")                    \
	X(DUP_KEY, 400, "duplicate key in JSON object")                        \
	X(TOO_DEEP, 400, "JSON nested too deeply")                             \
	X(MISSING_FIELD, 400, "required field missing")                        \
	X(FIELD_TYPE, 400, "field has the wrong type")                         \
	X(UNKNOWN_TYPE, 400, "unknown Type")                                   \
	X(TYPE_MISMATCH, 400, "x-amz-sns-message-type disagrees with Type")    \
	X(BAD_TIMESTAMP, 400, "Timestamp is not an ISO 8601 UTC time")         \
	X(CONTROL_CHAR, 400, "control character in a signed field")           \
	X(MESSAGE_ID, 400, "MessageId is not a UUID")                          \
	X(UNSIGNED, 403, "raw (unsigned) delivery")                            \
	X(SIG_VERSION, 403, "unsupported SignatureVersion")                    \
	X(SIG_ENCODING, 403, "Signature is not valid base64")                  \
	X(BAD_SIGNATURE, 403, "bad signature")                                 \
	X(CERT_URL, 403, "SigningCertURL not allowed")                         \
	X(SUBSCRIBE_URL, 403, "SubscribeURL not allowed")                      \
	X(CERT_INVALID, 403, "signing certificate unusable at message time")  \
	X(TOPIC, 403, "topic not allowed")                                     \
	X(TOO_OLD, 403, "message older than --max-age")                        \
	X(TOO_LARGE, 413, "body too large")                                    \
	X(CERT_FETCH, 503, "signing certificate cannot be fetched")            \
	X(CERT_RATE, 503, "signing certificate download rate limit reached")   \
	X(FETCH_BUSY, 503, "too many deliveries waiting for a download")       \
	X(CONFIRM, 503, "subscription confirmation failed")                    \
	X(REDIS, 503, "redis unavailable")                                     \
	X(REDIS_REFUSED, 503, "redis refused the write")                       \
	X(SPOOL_FULL, 503, "redis unavailable and the spool is full")          \
	X(SPOOL_IO, 503, "redis unavailable and the spool cannot be written")  \
	X(NOMEM, 503, "out of memory")                                         \
	X(INTERNAL, 503, "internal error")

enum mt_err {
#define MT_ERR_ENUM(name, status, reason) MT_E_##name,
	MT_ERR_MAP(MT_ERR_ENUM)
#undef MT_ERR_ENUM
	MT_E__COUNT
};

/* Short reason, a static string. */
const char *mt_err_str(enum mt_err err);
/* The HTTP status that answers this error. */
unsigned mt_err_http_status(enum mt_err err);

#endif
