/* sns.c - strict reader for the SNS envelope and its string to sign.
 *
 * json-c silently keeps the last of two duplicate keys, so a body with two
 * "Message" members could be verified against one value and stored with the
 * other.  The envelope is therefore read by this small strict RFC 8259
 * reader: duplicate keys, bad escapes, lone surrogates, invalid UTF-8, raw
 * control characters and trailing bytes are all errors.
 */
#include "sns.h"

#include <stdlib.h>
#include <string.h>

#include "mt_time.h"

static const char *const field_names[SNS_F__COUNT] = {
#define SNS_FIELD_NAME(name, key) [SNS_F_##name] = (key),
	SNS_FIELD_MAP(SNS_FIELD_NAME)
#undef SNS_FIELD_NAME
};

const char *sns_field_name(enum sns_field field)
{
	return field < SNS_F__COUNT ? field_names[field] : "?";
}

const char *sns_type_name(enum sns_type type)
{
	switch (type) {
	case SNS_NOTIFICATION:
		return "Notification";
	case SNS_SUBSCRIPTION_CONFIRMATION:
		return "SubscriptionConfirmation";
	case SNS_UNSUBSCRIBE_CONFIRMATION:
		return "UnsubscribeConfirmation";
	}
	return "?";
}

struct reader {
	const unsigned char *p, *end;
	int depth;
};

static void skip_ws(struct reader *r)
{
	while (r->p < r->end &&
	       (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

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

/* Reads a string at r->p (which is at the opening quote).  On success and
 * when out is not NULL, *out gets a malloc'd decoded copy (caller frees). */
static enum mt_err read_string(struct reader *r, struct sns_str *out)
{
	const unsigned char *p = r->p + 1;
	unsigned char *buf = NULL, *o = NULL;

	if (out) {
		/* Decoding never makes a string longer than its JSON text, and
		 * that text ends at the first quote not escaped: sized by it, not
		 * by the rest of the body (64 keys in each of 16 levels must not
		 * each ask for the body's length). */
		const unsigned char *q = p;
		while (q < r->end && *q != '"')
			q += *q == '\\' && r->end - q >= 2 ? 2 : 1;
		buf = malloc((size_t)(q - p) + 1);
		if (!buf)
			return MT_E_NOMEM;
		o = buf;
	}
	for (;;) {
		if (p >= r->end)
			goto bad;
		unsigned char c = *p;
		if (c == '"') {
			p++;
			break;
		}
		if (c < 0x20)
			goto bad;
		if (c >= 0x80) {
			size_t n = utf8_seq_len(p, r->end);
			if (n == 0)
				goto bad;
			if (o) {
				memcpy(o, p, n);
				o += n;
			}
			p += n;
			continue;
		}
		if (c != '\\') {
			if (o)
				*o++ = c;
			p++;
			continue;
		}
		if (r->end - p < 2)
			goto bad;
		unsigned char e = p[1], lit;
		p += 2;
		switch (e) {
		case '"': lit = '"'; break;
		case '\\': lit = '\\'; break;
		case '/': lit = '/'; break;
		case 'b': lit = '\b'; break;
		case 'f': lit = '\f'; break;
		case 'n': lit = '\n'; break;
		case 'r': lit = '\r'; break;
		case 't': lit = '\t'; break;
		case 'u': {
			if (r->end - p < 4)
				goto bad;
			int hi = hex4(p);
			if (hi < 0)
				goto bad;
			p += 4;
			unsigned long cp = (unsigned long)hi;
			if (hi >= 0xDC00 && hi <= 0xDFFF)
				goto bad; /* lone low surrogate */
			if (hi >= 0xD800 && hi <= 0xDBFF) {
				if (r->end - p < 6 || p[0] != '\\' || p[1] != 'u')
					goto bad;
				int lo = hex4(p + 2);
				if (lo < 0xDC00 || lo > 0xDFFF)
					goto bad;
				p += 6;
				cp = 0x10000 + (((unsigned long)hi - 0xD800) << 10) +
				     ((unsigned long)lo - 0xDC00);
			}
			if (o)
				o += put_utf8(o, cp);
			continue;
		}
		default:
			goto bad;
		}
		if (o)
			*o++ = lit;
	}
	r->p = p;
	if (out) {
		*o = '\0';
		out->p = (char *)buf;
		out->len = (size_t)(o - buf);
	}
	return MT_E_OK;
bad:
	free(buf);
	return MT_E_BAD_JSON;
}

static enum mt_err read_number(struct reader *r)
{
	const unsigned char *p = r->p;
#define DIGIT(q) ((q) < r->end && *(q) >= '0' && *(q) <= '9')
	if (p < r->end && *p == '-')
		p++;
	if (p < r->end && *p == '0') {
		p++;
	} else if (DIGIT(p)) {
		while (DIGIT(p))
			p++;
	} else {
		return MT_E_BAD_JSON;
	}
	if (p < r->end && *p == '.') {
		p++;
		if (!DIGIT(p))
			return MT_E_BAD_JSON;
		while (DIGIT(p))
			p++;
	}
	if (p < r->end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < r->end && (*p == '+' || *p == '-'))
			p++;
		if (!DIGIT(p))
			return MT_E_BAD_JSON;
		while (DIGIT(p))
			p++;
	}
#undef DIGIT
	r->p = p;
	return MT_E_OK;
}

static enum mt_err read_literal(struct reader *r, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
		return MT_E_BAD_JSON;
	r->p += n;
	return MT_E_OK;
}

/* Called for each member of the top-level object; value_at points at the
 * value's first byte.  Returns MT_E_OK to let the reader skip the value,
 * or consumes it itself and sets *consumed. */
typedef enum mt_err (*member_fn)(struct reader *r, const struct sns_str *key,
				 void *ctx, bool *consumed);

static enum mt_err read_value(struct reader *r);

static void free_keys(struct sns_str *keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(keys[i].p);
}

static enum mt_err read_object(struct reader *r, member_fn fn, void *ctx)
{
	struct sns_str keys[SNS_JSON_MEMBERS_MAX];
	size_t nkeys = 0;
	enum mt_err err;

	if (++r->depth > SNS_JSON_DEPTH_MAX)
		return MT_E_TOO_DEEP;
	r->p++; /* '{' */
	skip_ws(r);
	if (r->p < r->end && *r->p == '}') {
		r->p++;
		r->depth--;
		return MT_E_OK;
	}
	for (;;) {
		skip_ws(r);
		if (r->p >= r->end || *r->p != '"') {
			err = MT_E_BAD_JSON;
			goto out;
		}
		if (nkeys == SNS_JSON_MEMBERS_MAX) {
			err = MT_E_BAD_JSON;
			goto out;
		}
		err = read_string(r, &keys[nkeys]);
		if (err)
			goto out;
		struct sns_str *key = &keys[nkeys++];
		for (size_t i = 0; i + 1 < nkeys; i++) {
			if (keys[i].len == key->len &&
			    memcmp(keys[i].p, key->p, key->len) == 0) {
				err = MT_E_DUP_KEY;
				goto out;
			}
		}
		skip_ws(r);
		if (r->p >= r->end || *r->p != ':') {
			err = MT_E_BAD_JSON;
			goto out;
		}
		r->p++;
		skip_ws(r);
		bool consumed = false;
		if (fn) {
			err = fn(r, key, ctx, &consumed);
			if (err)
				goto out;
		}
		if (!consumed) {
			err = read_value(r);
			if (err)
				goto out;
		}
		skip_ws(r);
		if (r->p < r->end && *r->p == ',') {
			r->p++;
			continue;
		}
		if (r->p < r->end && *r->p == '}') {
			r->p++;
			break;
		}
		err = MT_E_BAD_JSON;
		goto out;
	}
	r->depth--;
	err = MT_E_OK;
out:
	free_keys(keys, nkeys);
	return err;
}

static enum mt_err read_array(struct reader *r)
{
	if (++r->depth > SNS_JSON_DEPTH_MAX)
		return MT_E_TOO_DEEP;
	r->p++; /* '[' */
	skip_ws(r);
	if (r->p < r->end && *r->p == ']') {
		r->p++;
		r->depth--;
		return MT_E_OK;
	}
	for (;;) {
		skip_ws(r);
		enum mt_err err = read_value(r);
		if (err)
			return err;
		skip_ws(r);
		if (r->p < r->end && *r->p == ',') {
			r->p++;
			continue;
		}
		if (r->p < r->end && *r->p == ']') {
			r->p++;
			break;
		}
		return MT_E_BAD_JSON;
	}
	r->depth--;
	return MT_E_OK;
}

static enum mt_err read_value(struct reader *r)
{
	if (r->p >= r->end)
		return MT_E_BAD_JSON;
	switch (*r->p) {
	case '{':
		return read_object(r, NULL, NULL);
	case '[':
		return read_array(r);
	case '"':
		return read_string(r, NULL);
	case 't':
		return read_literal(r, "true");
	case 'f':
		return read_literal(r, "false");
	case 'n':
		return read_literal(r, "null");
	default:
		return read_number(r);
	}
}

/* Envelope members: known fields must be strings (Subject may be null). */
static enum mt_err envelope_member(struct reader *r, const struct sns_str *key,
				   void *ctx, bool *consumed)
{
	struct sns_message *m = ctx;
	for (int i = 0; i < SNS_F__COUNT; i++) {
		if (key->len != strlen(field_names[i]) ||
		    memcmp(key->p, field_names[i], key->len) != 0)
			continue;
		if (r->p >= r->end)
			return MT_E_BAD_JSON;
		if (*r->p == '"') {
			*consumed = true;
			return read_string(r, &m->f[i]);
		}
		if (i == SNS_F_SUBJECT && *r->p == 'n') {
			*consumed = true;
			return read_literal(r, "null");
		}
		/* Let the reader report a syntax error before a type error. */
		enum mt_err err = read_value(r);
		*consumed = true;
		return err ? err : MT_E_FIELD_TYPE;
	}
	return MT_E_OK;
}

static bool str_is(const struct sns_str *s, const char *lit)
{
	return s->p && s->len == strlen(lit) && memcmp(s->p, lit, s->len) == 0;
}

enum mt_err sns_envelope_parse(const char *body, size_t len,
			       struct sns_message *out)
{
	struct reader r = {(const unsigned char *)body,
			   (const unsigned char *)body + len, 0};
	enum mt_err err;

	memset(out, 0, sizeof(*out));
	skip_ws(&r);
	if (r.p >= r.end || *r.p != '{')
		return MT_E_BAD_JSON;
	err = read_object(&r, envelope_member, out);
	if (err)
		return err;
	skip_ws(&r);
	if (r.p != r.end)
		return MT_E_BAD_JSON;

	const struct sns_str *f = out->f;
	if (!f[SNS_F_TYPE].p && !f[SNS_F_SIGNATURE].p &&
	    !f[SNS_F_SIGNATURE_VERSION].p)
		return MT_E_UNSIGNED;
	if (!f[SNS_F_TYPE].p)
		return MT_E_MISSING_FIELD;
	if (str_is(&f[SNS_F_TYPE], "Notification"))
		out->type = SNS_NOTIFICATION;
	else if (str_is(&f[SNS_F_TYPE], "SubscriptionConfirmation"))
		out->type = SNS_SUBSCRIPTION_CONFIRMATION;
	else if (str_is(&f[SNS_F_TYPE], "UnsubscribeConfirmation"))
		out->type = SNS_UNSUBSCRIBE_CONFIRMATION;
	else
		return MT_E_UNKNOWN_TYPE;

	static const enum sns_field common[] = {
		SNS_F_MESSAGE, SNS_F_MESSAGE_ID, SNS_F_TIMESTAMP,
		SNS_F_TOPIC_ARN, SNS_F_SIGNATURE, SNS_F_SIGNING_CERT_URL,
	};
	for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++)
		if (!f[common[i]].p)
			return common[i] == SNS_F_SIGNATURE ? MT_E_UNSIGNED
							   : MT_E_MISSING_FIELD;
	if (out->type != SNS_NOTIFICATION &&
	    (!f[SNS_F_SUBSCRIBE_URL].p || !f[SNS_F_TOKEN].p))
		return MT_E_MISSING_FIELD;

	/* Only the Message may carry a NUL (\u0000); anywhere else it would
	 * let the C string differ from what was signed. */
	for (int i = 0; i < SNS_F__COUNT; i++)
		if (i != SNS_F_MESSAGE && f[i].p && strlen(f[i].p) != f[i].len)
			return MT_E_FIELD_TYPE;

	if (!mt_time_parse(f[SNS_F_TIMESTAMP].p, f[SNS_F_TIMESTAMP].len,
			   &out->timestamp_ms))
		return MT_E_BAD_TIMESTAMP;

	if (str_is(&f[SNS_F_SIGNATURE_VERSION], "1"))
		out->signature_version = 1;
	else if (str_is(&f[SNS_F_SIGNATURE_VERSION], "2"))
		out->signature_version = 2;
	else
		return MT_E_SIG_VERSION;
	return MT_E_OK;
}

void sns_message_free(struct sns_message *m)
{
	if (!m)
		return;
	for (int i = 0; i < SNS_F__COUNT; i++)
		free(m->f[i].p);
	memset(m, 0, sizeof(*m));
}

char *sns_string_to_sign(const struct sns_message *m, size_t *len_out)
{
	static const enum sns_field notification[] = {
		SNS_F_MESSAGE, SNS_F_MESSAGE_ID, SNS_F_SUBJECT,
		SNS_F_TIMESTAMP, SNS_F_TOPIC_ARN, SNS_F_TYPE,
	};
	static const enum sns_field subscription[] = {
		SNS_F_MESSAGE, SNS_F_MESSAGE_ID, SNS_F_SUBSCRIBE_URL,
		SNS_F_TIMESTAMP, SNS_F_TOKEN, SNS_F_TOPIC_ARN, SNS_F_TYPE,
	};
	const enum sns_field *fields = notification;
	size_t n = sizeof(notification) / sizeof(notification[0]);
	if (m->type != SNS_NOTIFICATION) {
		fields = subscription;
		n = sizeof(subscription) / sizeof(subscription[0]);
	}

	size_t total = 1;
	for (size_t i = 0; i < n; i++)
		if (m->f[fields[i]].p)
			total += strlen(field_names[fields[i]]) + m->f[fields[i]].len + 2;
	char *buf = malloc(total);
	if (!buf)
		return NULL;
	char *o = buf;
	for (size_t i = 0; i < n; i++) {
		const struct sns_str *v = &m->f[fields[i]];
		if (!v->p)
			continue; /* only Subject may be absent here */
		size_t kl = strlen(field_names[fields[i]]);
		memcpy(o, field_names[fields[i]], kl);
		o += kl;
		*o++ = '\n';
		memcpy(o, v->p, v->len);
		o += v->len;
		*o++ = '\n';
	}
	*o = '\0';
	*len_out = (size_t)(o - buf);
	return buf;
}
