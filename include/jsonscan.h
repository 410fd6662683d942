/* jsonscan.h - strict RFC 8259 scanning steps shared by the two hand-written
 * JSON readers: sns.c (the envelope) and ses.c (the SES message).
 *
 * Pure, no allocation: each function looks at bytes [p, end) and says where
 * a token ends, or NULL when the bytes are not that token as RFC 8259 has
 * it.  What "strict" means here: no raw control bytes in strings, valid
 * UTF-8 only (no overlong forms, no surrogates, nothing above U+10FFFF),
 * only the standard escapes, \u surrogates only as high-low pairs.
 */
#ifndef JSONSCAN_H
#define JSONSCAN_H

#include <stdbool.h>
#include <stddef.h>

/* The first byte at or after p that is not JSON whitespace (space, tab,
 * LF, CR), or end.  Inline: the readers call it around every token. */
static inline const char *jsonscan_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* p is just after a string's opening quote.  Returns the address of its
 * closing quote, or NULL when the string is not strict JSON or not closed
 * before end.  *escaped tells whether the contents hold a backslash (when
 * not, the raw contents are the decoded string). */
const char *jsonscan_string(const char *p, const char *end, bool *escaped);

/* jsonscan_string() that also decodes the string into out on the way: out
 * needs room for (end - p) bytes.  *out_len gets the decoded length. */
const char *jsonscan_string_decode(const char *p, const char *end, char *out,
				   size_t *out_len);

/* Decodes raw[0..len), the contents of a string jsonscan_string()
 * accepted, into out (room for len bytes: decoding never lengthens).
 * Returns the decoded length.  \u0000 decodes to a NUL byte. */
size_t jsonscan_unescape(const char *raw, size_t len, char *out);

/* How many bytes at the start of s[0..len) JSON output writes as they are:
 * up to the first quote, backslash or control byte (< 0x20). */
size_t jsonscan_verbatim(const char *s, size_t len);

/* p is at a number's first byte.  Returns the end of the RFC 8259 number
 * there, or NULL.  *is_int: it has neither a fraction nor an exponent. */
const char *jsonscan_number(const char *p, const char *end, bool *is_int);

#endif
