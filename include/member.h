/* member.h - one recipient's EVENT as its sorted set stores it, and back.
 *
 * Pure: no I/O, no globals.  ses.c writes the EVENT of SPEC.md; the store
 * keeps a compact member instead, without what the key, the score and a
 * topic registry already say, and rebuilds the very same EVENT bytes when
 * answering.  The compact member of
 *
 *   {"id":I,"type":T,"time":"<score as ISO>","recipient":"<address>",
 *    "topicArn":"<ARN>","mail":{"messageId":M,"source":S,"timestamp":W,
 *    "destination":D,"destinationCount":N,"commonHeaders":H},"detail":X}
 *
 * is
 *
 *   {"id":I,"type":T[,"r":R],"t":"<ref>"[,"m":M|"p":P][,"s":S][,"ts":W'][,"d":D'][,"n":N][,"h":H][,"x":X]}
 *
 * - "time" is the member's score (mt_time_format), always;
 * - "recipient" is the address in the key; "r" keeps it only when its JSON
 *   text holds an escape;
 * - "topicArn" becomes "t", MEMBER_TOPIC_REF_LEN hex digits of the SHA-256
 *   of the ARN's JSON text (what the store's topic registry maps back);
 * - "mail"'s members are renamed, and: an SES message id of the usual form
 *   ("<16 hex>-<8>-<4>-<4>-<4>-<12>-<6 digits>", lower case) is packed as
 *   "p" (its hex digits in base64url, then the 6 digits: 38 bytes, not
 *   60); "ts" is mail.timestamp as ms relative to the score (an integer)
 *   when the timestamp is in the form mt_time_format writes, left out when
 *   that is 0, null when the EVENT has no timestamp, else the string as it
 *   was; "d" is left out when the destination is exactly [recipient], is 0
 *   when the EVENT has no destination, and else the array as it was;
 * - "detail" becomes "x", left out when it is {};
 * - "id" stays first, so a member still begins with {"id":"<MessageId>",
 *   (the redelivery rule of the store script holds across both forms), and
 *   "type" keeps its name (the script reads a trimmed member's type and
 *   its detail's bounceType, from "detail" or "x").
 *
 * An EVENT not in exactly the shape above is stored as it is: the full
 * EVENT is a valid member too (and is what versions before this one
 * stored), and reads back unchanged.
 */
#ifndef MEMBER_H
#define MEMBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "mt_error.h"

/* Hex digits of a topic reference (64 bits of the SHA-256). */
#define MEMBER_TOPIC_REF_LEN 16
/* Deepest nesting member_to_event() reads in a member (Redis holds what
 * anyone with access wrote). */
#define MEMBER_DEPTH_MAX 64
/* Most bytes member_to_event() writes for one event. */
#define MEMBER_EVENT_MAX (1024 * 1024)

struct member_compact {
	char *member; /* the member to store; owned (free()) */
	size_t len;
	/* The topic reference in it ("" for a full-form member) and the ARN
	 * it stands for: its JSON text between the quotes, borrowed from the
	 * EVENT given. */
	char topic_ref[MEMBER_TOPIC_REF_LEN + 1];
	const char *arn;
	size_t arn_len;
};

/* The member to store for EVENT ev[0..len) (as ses.c writes it) at score
 * time_ms.  Returns MT_E_OK or MT_E_NOMEM; free out->member. */
enum mt_err member_from_event(const char *ev, size_t len, int64_t time_ms,
			      struct member_compact *out);

/* The topic reference of arn (its JSON text between the quotes) into ref
 * (NUL-terminated). */
void member_topic_ref(const char *arn, size_t arn_len, char ref[MEMBER_TOPIC_REF_LEN + 1]);

/* The topic reference a compact member holds, into ref; false for a
 * member in the full form (or none at all). */
bool member_find_topic_ref(const char *m, size_t len, char ref[MEMBER_TOPIC_REF_LEN + 1]);

/* Appends to out the EVENT JSON of member m[0..len) of recipient's set
 * (the normalised address of its key) at score.  arn: the JSON text
 * between the quotes of the ARN that the member's topic reference stands
 * for, NULL when unknown ("topicArn" is then null).  A member in the full
 * form, or not a compact member at all, is appended as it is.  Returns
 * MT_E_OK, MT_E_NOMEM, or MT_E_TOO_LARGE past MEMBER_EVENT_MAX. */
enum mt_err member_to_event(const char *m, size_t len, const char *recipient,
			    int64_t score, const char *arn, size_t arn_len,
			    struct buf *out);

#endif
