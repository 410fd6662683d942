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

#include "jsonscan.h"
#include "mt_time.h"

static const char *const field_names[SNS_F__COUNT] = {
#define SNS_FIELD_NAME(name, key) [SNS_F_##name] = (key),
	SNS_FIELD_MAP(SNS_FIELD_NAME)
#undef SNS_FIELD_NAME
};
/* Their lengths, looked up for every member of every envelope. */
static const size_t field_lens[SNS_F__COUNT] = {
#define SNS_FIELD_LEN(name, key) [SNS_F_##name] = sizeof(key) - 1,
	SNS_FIELD_MAP(SNS_FIELD_LEN)
#undef SNS_FIELD_LEN
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
	const char *p, *end;
	int depth;
	/* The decoded field values, one after the other, each NUL-terminated:
	 * room for the body's length and a NUL per field is always enough
	 * (decoding never lengthens, and the fields are disjoint). */
	char *strings;
	size_t used, room;
};

static void skip_ws(struct reader *r)
{
	r->p = jsonscan_ws(r->p, r->end);
}

/* A decoded string: into the body when it has no escape (no allocation),
 * else a NUL-terminated copy in owned (caller frees). */
struct text {
	const char *p;
	size_t len;
	char *owned;
};

/* Reads the string at r->p (which is at the opening quote) into *t. */
static enum mt_err read_text(struct reader *r, struct text *t)
{
	const char *raw = r->p + 1;
	bool escaped;
	const char *q = jsonscan_string(raw, r->end, &escaped);

	t->owned = NULL;
	if (!q)
		return MT_E_BAD_JSON;
	r->p = q + 1;
	t->p = raw;
	t->len = (size_t)(q - raw);
	if (!escaped)
		return MT_E_OK;
	/* Decoding never lengthens: sized by this string's JSON text, not by
	 * the rest of the body. */
	if (!(t->owned = malloc(t->len + 1)))
		return MT_E_NOMEM;
	t->len = jsonscan_unescape(raw, t->len, t->owned);
	t->owned[t->len] = '\0';
	t->p = t->owned;
	return MT_E_OK;
}

static enum mt_err skip_string(struct reader *r)
{
	bool escaped;
	const char *q = jsonscan_string(r->p + 1, r->end, &escaped);

	if (!q)
		return MT_E_BAD_JSON;
	r->p = q + 1;
	return MT_E_OK;
}

/* Reads a string at r->p (which is at the opening quote) into r->strings,
 * decoding it on the way. */
static enum mt_err read_string(struct reader *r, struct sns_str *out)
{
	char *o = r->strings + r->used;
	size_t n;

	if (r->room - r->used < (size_t)(r->end - r->p))
		return MT_E_INTERNAL; /* cannot happen: see struct reader */
	const char *q = jsonscan_string_decode(r->p + 1, r->end, o, &n);
	if (!q)
		return MT_E_BAD_JSON;
	o[n] = '\0';
	r->used += n + 1;
	r->p = q + 1;
	out->p = o;
	out->len = n;
	return MT_E_OK;
}

static enum mt_err read_number(struct reader *r)
{
	bool is_int;
	const char *q = jsonscan_number(r->p, r->end, &is_int);

	if (!q)
		return MT_E_BAD_JSON;
	r->p = q;
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
typedef enum mt_err (*member_fn)(struct reader *r, const struct text *key,
				 void *ctx, bool *consumed);

static enum mt_err read_value(struct reader *r);

static void free_keys(struct text *keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(keys[i].owned);
}

static enum mt_err read_object(struct reader *r, member_fn fn, void *ctx)
{
	struct text keys[SNS_JSON_MEMBERS_MAX];
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
		err = read_text(r, &keys[nkeys++]);
		if (err)
			goto out;
		const struct text *key = &keys[nkeys - 1];
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
		return skip_string(r);
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
static enum mt_err envelope_member(struct reader *r, const struct text *key,
				   void *ctx, bool *consumed)
{
	struct sns_message *m = ctx;
	for (int i = 0; i < SNS_F__COUNT; i++) {
		if (key->len != field_lens[i] ||
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

/* U+0000-U+001F or U+007F (UTF-8 never has these bytes inside a longer
 * character).  An absent field has none. */
static bool has_control_char(const struct sns_str *s)
{
	for (size_t i = 0; s->p && i < s->len; i++) {
		unsigned char c = (unsigned char)s->p[i];
		if (c < 0x20 || c == 0x7f)
			return true;
	}
	return false;
}

/* 8-4-4-4-12 hexadecimal digits, either case (SNS's MessageIds are UUIDs
 * of versions 4 and 5). */
static bool is_uuid(const struct sns_str *s)
{
	static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
	if (!s->p || s->len != sizeof(shape) - 1)
		return false;
	for (size_t i = 0; i < s->len; i++) {
		char c = s->p[i];
		bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
			   (c >= 'A' && c <= 'F');
		if (shape[i] == '-' ? c != '-' : !hex)
			return false;
	}
	return true;
}

enum mt_err sns_envelope_parse(const char *body, size_t len,
			       struct sns_message *out)
{
	struct reader r = {body, body + len, 0, NULL, 0, len + SNS_F__COUNT + 1};
	enum mt_err err;

	memset(out, 0, sizeof(*out));
	if (!(r.strings = out->strings = malloc(r.room)))
		return MT_E_NOMEM;
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

	/* The string to sign is "Key\nValue\n" per field: a line break in
	 * any value but the first (Message) could move text from one field
	 * to another (a MessageId ending in "\nSubject\nx" signs the same
	 * as that MessageId plus a Subject), so no signed field but Message
	 * may hold a control character, and a MessageId is a UUID.  (Type,
	 * signed too, is one of three exact words by now.) */
	static const enum sns_field plain[] = {
		SNS_F_MESSAGE_ID, SNS_F_SUBJECT, SNS_F_SUBSCRIBE_URL, SNS_F_TIMESTAMP,
		SNS_F_TOKEN, SNS_F_TOPIC_ARN,
	};
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		if (has_control_char(&f[plain[i]]))
			return MT_E_CONTROL_CHAR;
	if (!is_uuid(&f[SNS_F_MESSAGE_ID]))
		return MT_E_MESSAGE_ID;

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
	free(m->strings);
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
			total += field_lens[fields[i]] + m->f[fields[i]].len + 2;
	char *buf = malloc(total);
	if (!buf)
		return NULL;
	char *o = buf;
	for (size_t i = 0; i < n; i++) {
		const struct sns_str *v = &m->f[fields[i]];
		if (!v->p)
			continue; /* only Subject may be absent here */
		size_t kl = field_lens[fields[i]];
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
