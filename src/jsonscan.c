/* jsonscan.c - strict RFC 8259 scanning steps (see jsonscan.h).
 *
 * Strings are most of every byte mailtrail reads (the SNS Message is one
 * string of about 2 KiB holding the escaped SES JSON), so the string scan
 * skips eight plain bytes at a time and the decoder copies the runs between
 * escapes with memcpy: per-byte work cost 2.4% of the machine's CPU in the
 * benchmark's profile.
 */
#include "jsonscan.h"

#include <stdint.h>
#include <string.h>

static int hex4(const unsigned char *p)
{
	int v = 0;
	for (int i = 0; i < 4; i++) {
		int c = p[i], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v * 16 + d;
	}
	return v;
}

static size_t put_utf8(unsigned char *o, unsigned long cp)
{
	if (cp < 0x80) {
		o[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (unsigned char)(0xC0 | (cp >> 6));
		o[1] = (unsigned char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (unsigned char)(0xE0 | (cp >> 12));
		o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (unsigned char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (unsigned char)(0xF0 | (cp >> 18));
	o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (unsigned char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), 0 if invalid
 * (overlong forms, surrogates and code points above U+10FFFF included). */
static size_t utf8_seq_len(const unsigned char *p, const unsigned char *end)
{
	unsigned char c = p[0];
	size_t n;
	unsigned long cp;
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
		cp = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		cp = c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if ((size_t)(end - p) < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

/* The escape at p (p[0] == '\\'): its length in bytes (2, 6, or 12 for a
 * surrogate pair) and, for \u, its code point in *cp.  0 when invalid. */
static size_t escape_len(const unsigned char *p, const unsigned char *end,
			 unsigned long *cp)
{
	if (end - p < 2)
		return 0;
	switch (p[1]) {
	case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
		return 2;
	case 'u':
		break;
	default:
		return 0;
	}
	int hi = end - p < 6 ? -1 : hex4(p + 2);
	if (hi < 0 || (hi >= 0xDC00 && hi <= 0xDFFF))
		return 0; /* lone low surrogate */
	*cp = (unsigned long)hi;
	if (hi < 0xD800 || hi > 0xDBFF)
		return 6;
	if (end - p < 12 || p[6] != '\\' || p[7] != 'u')
		return 0;
	int lo = hex4(p + 8);
	if (lo < 0xDC00 || lo > 0xDFFF)
		return 0;
	*cp = 0x10000 + (((unsigned long)hi - 0xD800) << 10) + ((unsigned long)lo - 0xDC00);
	return 12;
}

/* Writes the bytes escape \\<e> stands for (cp: the code point of \\u);
 * returns their count. */
static size_t put_escaped(unsigned char *o, unsigned char e, unsigned long cp)
{
	switch (e) {
	case 'b': *o = '\b'; return 1;
	case 'f': *o = '\f'; return 1;
	case 'n': *o = '\n'; return 1;
	case 'r': *o = '\r'; return 1;
	case 't': *o = '\t'; return 1;
	case 'u': return put_utf8(o, cp);
	default: *o = e; return 1; /* '"', '\\', '/' */
	}
}

/* The bytes of the 8 at p that JSON output must escape - a quote, a
 * backslash or a control byte - as the high bit of each such byte; 0 when
 * there is none.  Each test below may also flag bytes above one it rightly
 * flags (a borrow runs on), never below it, so the lowest flag is always
 * the first such byte. */
static uint64_t escape_mask(const unsigned char *p)
{
	const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\');
	uint64_t below_space = (v - ones * 0x20) & ~v;
	uint64_t is_quote = (q - ones) & ~q, is_bslash = (b - ones) & ~b;
	return (below_space | is_quote | is_bslash) & highs;
}

/* The bytes of the 8 at p that end a run of plain string bytes when
 * reading: escape_mask()'s and those >= 0x80 (UTF-8 to check). */
static uint64_t stop_mask(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return escape_mask(p) | (v & 0x8080808080808080u);
}

/* How many plain bytes surely start the 8 at p whose stop_mask() is m
 * (not 0): on a little-endian machine the first byte is the lowest, so
 * the lowest flag says; elsewhere 0, and the byte loop finds it. */
static size_t plain_prefix(uint64_t m)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return (size_t)__builtin_ctzll(m) / 8;
#else
	(void)m;
	return 0;
#endif
}

static bool is_plain(unsigned char c)
{
	return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* The string scan: p just after the opening quote; returns the closing
 * quote or NULL.  With out, the decoded bytes are written there on the way
 * (one pass over the bytes) and *out_len gets their count. */
static const unsigned char *scan_string(const unsigned char *p,
					const unsigned char *e,
					unsigned char *out, size_t *out_len,
					bool *escaped)
{
	unsigned char *o = out;

	*escaped = false;
	for (;;) {
		/* Eight bytes at a time up to the next byte that is not plain.
		 * out has room for e - p more bytes (decoding never lengthens),
		 * so copying all eight is safe. */
		while (e - p >= 8) {
			uint64_t m = stop_mask(p);
			size_t k = m ? plain_prefix(m) : 8;
			if (o) {
				memcpy(o, p, 8);
				o += k;
			}
			p += k;
			if (k < 8)
				break;
		}
		while (p < e && is_plain(*p)) {
			if (o)
				*o++ = *p;
			p++;
		}
		if (p >= e)
			return NULL;
		size_t n;
		unsigned long cp = 0;
		if (*p == '"') {
			if (o)
				*out_len = (size_t)(o - out);
			return p;
		}
		if (*p == '\\' && e - p >= 2 && p[1] == '"') {
			/* The common escape: every quote of a JSON text in a
			 * string (the SNS Message) comes as \" */
			*escaped = true;
			if (o)
				*o++ = '"';
			p += 2;
			continue;
		}
		if (*p == '\\') {
			*escaped = true;
			n = escape_len(p, e, &cp);
			if (n && o)
				o += put_escaped(o, p[1], cp);
		} else if (*p < 0x20) {
			return NULL;
		} else {
			n = utf8_seq_len(p, e);
			if (n && o) {
				memcpy(o, p, n);
				o += n;
			}
		}
		if (n == 0)
			return NULL;
		p += n;
	}
}

const char *jsonscan_string(const char *p, const char *end, bool *escaped)
{
	return (const char *)scan_string((const unsigned char *)p,
					 (const unsigned char *)end, NULL, NULL,
					 escaped);
}

const char *jsonscan_string_decode(const char *p, const char *end, char *out,
				   size_t *out_len)
{
	bool escaped;
	return (const char *)scan_string((const unsigned char *)p,
					 (const unsigned char *)end,
					 (unsigned char *)out, out_len, &escaped);
}

size_t jsonscan_unescape(const char *raw, size_t len, char *out)
{
	const unsigned char *p = (const unsigned char *)raw, *end = p + len;
	unsigned char *o = (unsigned char *)out;

	while (p < end) {
		if (*p != '\\') {
			*o++ = *p++;
			continue;
		}
		unsigned long cp = 0;
		size_t n = escape_len(p, end, &cp);
		if (n == 0)
			break; /* not from jsonscan_string(): stop, never overrun */
		o += put_escaped(o, p[1], cp);
		p += n;
	}
	return (size_t)(o - (unsigned char *)out);
}

const char *jsonscan_number(const char *p, const char *end, bool *is_int)
{
#define DIGIT(q) ((q) < end && *(q) >= '0' && *(q) <= '9')
	*is_int = true;
	if (p < end && *p == '-')
		p++;
	if (p < end && *p == '0') {
		p++;
	} else if (DIGIT(p)) {
		while (DIGIT(p))
			p++;
	} else {
		return NULL;
	}
	if (p < end && *p == '.') {
		p++;
		if (!DIGIT(p))
			return NULL;
		while (DIGIT(p))
			p++;
		*is_int = false;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (!DIGIT(p))
			return NULL;
		while (DIGIT(p))
			p++;
		*is_int = false;
	}
#undef DIGIT
	return p;
}

size_t jsonscan_verbatim(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *e = p + len;

	while (e - p >= 8) {
		uint64_t m = escape_mask(p);
		if (m) {
			p += plain_prefix(m);
			break;
		}
		p += 8;
	}
	while (p < e && *p >= 0x20 && *p != '"' && *p != '\\')
		p++;
	return (size_t)(p - (const unsigned char *)s);
}
