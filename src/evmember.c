#include "evmember.h"

#include <string.h>

#include "jsonscan.h"

#define LIT_LEN(s) (sizeof(s) - 1)

bool evmember_type(const char *m, size_t len, const char **type, size_t *type_len)
{
	static const char head[] = "{\"id\":\"", sep[] = ",\"type\":\"";
	const char *end = m + len;
	bool escaped;
	if (len < LIT_LEN(head) || memcmp(m, head, LIT_LEN(head)) != 0)
		return false;
	const char *q = jsonscan_string(m + LIT_LEN(head), end, &escaped);
	if (!q || (size_t)(end - q - 1) < LIT_LEN(sep) || memcmp(q + 1, sep, LIT_LEN(sep)) != 0)
		return false;
	const char *t = q + 1 + LIT_LEN(sep);
	q = jsonscan_string(t, end, &escaped);
	/* SES type names hold no escapes; an escaped one is not ses.c's. */
	if (!q || escaped)
		return false;
	*type = t;
	*type_len = (size_t)(q - t);
	return true;
}

/* p is at an object's key (after whitespace).  Returns the byte after the
 * key's ':', or NULL. */
static const char *object_key(const char *p, const char *end)
{
	bool escaped;
	if (p == end || *p != '"')
		return NULL;
	p = jsonscan_string(p + 1, end, &escaped);
	if (!p)
		return NULL;
	p = jsonscan_ws(p + 1, end);
	return p < end && *p == ':' ? p + 1 : NULL;
}

/* p is at a scalar's first byte.  Returns the byte after it, or NULL. */
static const char *scalar(const char *p, const char *end)
{
	static const char *const words[] = {"true", "false", "null"};
	bool flag;
	if (*p == '"') {
		p = jsonscan_string(p + 1, end, &flag);
		return p ? p + 1 : NULL;
	}
	if (*p == '-' || (*p >= '0' && *p <= '9'))
		return jsonscan_number(p, end, &flag);
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		size_t n = strlen(words[i]);
		if ((size_t)(end - p) >= n && memcmp(p, words[i], n) == 0)
			return p + n;
	}
	return NULL;
}

bool evmember_is_object(const char *m, size_t len)
{
	const char *p = jsonscan_ws(m, m + len), *end = m + len;
	char open[EVMEMBER_DEPTH_MAX]; /* '{' or '[' per level */
	size_t depth = 0;
	bool after = false; /* just past a value */

	if (p == end || *p != '{')
		return false;
	for (;;) {
		p = jsonscan_ws(p, end);
		if (!after) {
			if (p == end)
				return false;
			if (*p != '{' && *p != '[') {
				p = scalar(p, end);
				if (!p)
					return false;
				after = true;
				continue;
			}
			if (depth == EVMEMBER_DEPTH_MAX)
				return false;
			char c = *p;
			open[depth++] = c;
			p = jsonscan_ws(p + 1, end);
			if (p < end && *p == (c == '{' ? '}' : ']')) {
				depth--;
				p++;
				after = true;
			} else if (c == '{' && !(p = object_key(p, end))) {
				return false;
			}
			continue;
		}
		if (depth == 0)
			return p == end;
		if (p == end)
			return false;
		if (*p == (open[depth - 1] == '{' ? '}' : ']')) {
			depth--;
			p++;
			continue;
		}
		if (*p != ',')
			return false;
		p = jsonscan_ws(p + 1, end);
		if (open[depth - 1] == '{' && !(p = object_key(p, end)))
			return false;
		after = false;
	}
}

enum mt_err evmember_to_event(const char *m, size_t len, const char *recipient,
			      int64_t score, struct buf *out, size_t max)
{
	/* Members hold every field of their EVENT today; recipient and score
	 * are what a member that leaves them out is completed with. */
	(void)recipient;
	(void)score;
	if (!evmember_is_object(m, len))
		return MT_E_BAD_JSON;
	return buf_result_err(buf_append(out, m, len, max));
}
