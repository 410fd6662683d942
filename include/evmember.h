/* evmember.h - a stored timeline member read back: the type of event it
 * holds, and the EVENT JSON (SPEC.md) that it stands for in an answer.
 *
 * Pure: no I/O, no globals.  A member is what ses.c writes, JSON that
 * begins {"id":"<SNS MessageId>","type":"<type>", (store.h); the query
 * side matches a type filter on those bytes without parsing the rest, and
 * builds an answer by appending each EVENT's bytes instead of parsing and
 * printing them again.
 */
#ifndef EVMEMBER_H
#define EVMEMBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "mt_error.h"

/* Deepest nesting of arrays and objects evmember_is_object() accepts
 * (members come from Redis, which anyone with write access can fill). */
#define EVMEMBER_DEPTH_MAX 64

/* The type that member m[0..len) names at its start, '{"id":"...",
 * "type":"<T>"', borrowed from m into *type and *type_len.  False when m
 * does not begin that way (bytes of another layout or another writer: the
 * caller reads those another way). */
bool evmember_type(const char *m, size_t len, const char **type, size_t *type_len);

/* Whether m[0..len) is exactly one JSON object (RFC 8259, as strict as
 * jsonscan.h), nested at most EVMEMBER_DEPTH_MAX deep, with nothing but
 * whitespace around it. */
bool evmember_is_object(const char *m, size_t len);

/* A member in the full form (the EVENT itself, as versions before compact
 * members stored it, and old entries of the recent feed) as the bytes of
 * an EVENT in an answer: appends m[0..len) to out once it is one JSON
 * object, keeping out->len at most max.  recipient and score are not
 * needed by that form.  store.c's member_event() is the one place a
 * stored member becomes an answer's EVENT: it sends compact members
 * (member.h) to member_to_event() and the rest here.  Returns MT_E_OK, MT_E_BAD_JSON when the member is
 * not an EVENT (out unchanged: the caller leaves it out), MT_E_TOO_LARGE
 * when max would be passed, or MT_E_NOMEM. */
enum mt_err evmember_to_event(const char *m, size_t len, const char *recipient,
			      int64_t score, struct buf *out, size_t max);

#endif
