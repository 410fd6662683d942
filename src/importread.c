#include "importread.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* s[0..*len) without trailing white space; returns s past leading. */
static const char *trim(const char *s, size_t *len)
{
	size_t n = *len;
	while (n && is_space(s[n - 1]))
		n--;
	while (n && is_space(*s)) {
		s++;
		n--;
	}
	*len = n;
	return s;
}

void importread_init(struct importread *r, size_t max)
{
	memset(r, 0, sizeof(*r));
	r->max = max;
	r->line = 1;
	r->start = 1;
}

void importread_free(struct importread *r)
{
	buf_free(&r->cur);
	r->cur = (struct buf){0};
}

static bool emit(struct importread *r, const char *msg, size_t len,
		 unsigned long line, enum mt_err err, importread_fn fn, void *ctx)
{
	if (err == MT_E_OK) {
		msg = trim(msg, &len);
		if (len == 0)
			return true; /* a blank line, or an empty file */
	}
	if (!fn(ctx, err == MT_E_OK ? msg : NULL, err == MT_E_OK ? len : 0, line, err))
		r->stopped = true;
	return !r->stopped;
}

/* Adds data to cur, or starts skipping when it would pass max. */
static bool gather(struct importread *r, const char *data, size_t n)
{
	if (r->skipping)
		return true;
	switch (buf_append(&r->cur, data, n, r->max)) {
	case BUF_OK:
		return true;
	case BUF_TOO_LARGE:
		importread_free(r);
		r->skipping = true;
		return true;
	case BUF_NOMEM:
		break;
	}
	r->nomem = r->stopped = true;
	return false;
}

/* The first line that is not blank, gathered in cur, decides the shape. */
static void decide(struct importread *r)
{
	size_t n = r->cur.len;
	const char *s = trim(r->cur.p ? r->cur.p : "", &n);
	if (n == 0) { /* blank so far: the shape is still open */
		importread_free(r);
		r->start = r->line + 1;
		return;
	}
	r->shape = s[0] == '{' && s[n - 1] == '}' ? IMPORTREAD_NDJSON : IMPORTREAD_DOCUMENT;
}

/* The end of a line in NDJSON: cur (or the skipped line) is a message. */
static bool end_line(struct importread *r, importread_fn fn, void *ctx)
{
	bool go = r->skipping
		  ? emit(r, NULL, 0, r->start, MT_E_TOO_LARGE, fn, ctx)
		  : emit(r, r->cur.p ? r->cur.p : "", r->cur.len, r->start, MT_E_OK, fn, ctx);
	importread_free(r);
	r->skipping = false;
	r->start = r->line + 1;
	return go;
}

bool importread_feed(struct importread *r, const char *data, size_t n,
		     importread_fn fn, void *ctx)
{
	while (n && !r->stopped) {
		if (r->shape == IMPORTREAD_DOCUMENT) {
			if (r->skipping)
				return true; /* nothing more to learn from this file */
			const char *nl = memchr(data, '\n', n);
			for (; nl; nl = memchr(nl + 1, '\n', n - (size_t)(nl + 1 - data)))
				r->line++;
			return gather(r, data, n);
		}
		const char *nl = memchr(data, '\n', n);
		size_t k = nl ? (size_t)(nl - data) : n;
		if (nl && r->shape == IMPORTREAD_NDJSON && !r->skipping && r->cur.len == 0) {
			/* A whole line in this piece: handed over where it is. */
			if (k > r->max) {
				if (!emit(r, NULL, 0, r->start, MT_E_TOO_LARGE, fn, ctx))
					return false;
			} else if (!emit(r, data, k, r->start, MT_E_OK, fn, ctx)) {
				return false;
			}
			r->start = ++r->line;
			data += k + 1;
			n -= k + 1;
			continue;
		}
		if (!gather(r, data, k))
			return false;
		if (r->shape == IMPORTREAD_UNDECIDED && r->skipping) {
			/* A first line longer than any message: lines it is. */
			r->shape = IMPORTREAD_NDJSON;
		}
		if (!nl)
			return true;
		if (r->shape == IMPORTREAD_UNDECIDED) {
			decide(r);
			if (r->shape == IMPORTREAD_DOCUMENT) {
				/* The newline is part of the document. */
				r->line++;
				if (!gather(r, "\n", 1))
					return false;
				data += k + 1;
				n -= k + 1;
				continue;
			}
			if (r->shape == IMPORTREAD_UNDECIDED) {
				r->line++;
				data += k + 1;
				n -= k + 1;
				continue;
			}
		}
		if (!end_line(r, fn, ctx))
			return false;
		r->line++;
		data += k + 1;
		n -= k + 1;
	}
	return !r->stopped;
}

bool importread_wants_more(const struct importread *r)
{
	return !r->stopped && !(r->shape == IMPORTREAD_DOCUMENT && r->skipping);
}

bool importread_end(struct importread *r, importread_fn fn, void *ctx)
{
	if (r->stopped)
		return false;
	bool go = true;
	if (r->skipping)
		go = emit(r, NULL, 0, r->start, MT_E_TOO_LARGE, fn, ctx);
	else if (r->cur.len)
		go = emit(r, r->cur.p, r->cur.len, r->start, MT_E_OK, fn, ctx);
	importread_free(r);
	r->skipping = false;
	return go;
}

void importread_trusted_id(const char *msg, size_t len,
			   char out[IMPORTREAD_ID_LEN + 1])
{
	unsigned char d[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)msg, len, d);
	d[6] = (unsigned char)((d[6] & 0x0f) | 0x80); /* version 8 */
	d[8] = (unsigned char)((d[8] & 0x3f) | 0x80); /* variant 10 */
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (size_t i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[d[i] >> 4];
		out[o++] = hex[d[i] & 15];
	}
	out[o] = '\0';
}
