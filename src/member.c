/* member.c - EVENT <-> the compact member a recipient's set stores
 * (member.h has the format). */
#include "member.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonscan.h"
#include "mt_time.h"

/* Most a compact "ts" may differ from the score (about 300 years): keeps
 * the sum inside what mt_time_format writes. */
#define TS_DELTA_MAX 10000000000000LL

struct span {
	const char *p;
	size_t n;
};

/* The end of the strict JSON value at p, or NULL. */
static const char *skip_value(const char *p, const char *end, int depth)
{
	bool flag;

	if (p >= end)
		return NULL;
	switch (*p) {
	case '"': {
		const char *q = jsonscan_string(p + 1, end, &flag);
		return q ? q + 1 : NULL;
	}
	case '{':
	case '[': {
		char close = *p == '{' ? '}' : ']';
		if (depth >= MEMBER_DEPTH_MAX)
			return NULL;
		p = jsonscan_ws(p + 1, end);
		if (p < end && *p == close)
			return p + 1;
		for (;;) {
			if (close == '}') {
				if (p >= end || *p != '"')
					return NULL;
				p = jsonscan_string(p + 1, end, &flag);
				if (!p)
					return NULL;
				p = jsonscan_ws(p + 1, end);
				if (p >= end || *p != ':')
					return NULL;
				p = jsonscan_ws(p + 1, end);
			}
			p = skip_value(p, end, depth + 1);
			if (!p)
				return NULL;
			p = jsonscan_ws(p, end);
			if (p >= end)
				return NULL;
			if (*p == close)
				return p + 1;
			if (*p != ',')
				return NULL;
			p = jsonscan_ws(p + 1, end);
		}
	}
	case 't':
		return end - p >= 4 && memcmp(p, "true", 4) == 0 ? p + 4 : NULL;
	case 'f':
		return end - p >= 5 && memcmp(p, "false", 5) == 0 ? p + 5 : NULL;
	case 'n':
		return end - p >= 4 && memcmp(p, "null", 4) == 0 ? p + 4 : NULL;
	default:
		return jsonscan_number(p, end, &flag);
	}
}

/* The members of one object written without white space, as ses.c and
 * this file write them: p just after its '{'. */
struct members {
	const char *p, *end;
	bool first;
};

/* 1 with the next member's name (between its quotes, no escape in it)
 * and value, 0 at the closing '}' (then m->p is after it), -1 when the
 * bytes are not such an object. */
static int members_next(struct members *m, struct span *key, struct span *val)
{
	const char *p = m->p, *q;
	bool escaped;

	if (p >= m->end)
		return -1;
	if (*p == '}') {
		m->p = p + 1;
		return 0;
	}
	if (!m->first && *p++ != ',')
		return -1;
	if (p >= m->end || *p != '"')
		return -1;
	q = jsonscan_string(p + 1, m->end, &escaped);
	if (!q || escaped || q + 1 >= m->end || q[1] != ':')
		return -1;
	*key = (struct span){p + 1, (size_t)(q - p - 1)};
	p = q + 2;
	q = skip_value(p, m->end, 1);
	if (!q)
		return -1;
	*val = (struct span){p, (size_t)(q - p)};
	m->p = q;
	m->first = false;
	return 1;
}

static bool is(struct span s, const char *lit)
{
	size_t n = strlen(lit);
	return s.n == n && memcmp(s.p, lit, n) == 0;
}

static bool is_string(struct span s)
{
	return s.n >= 2 && s.p[0] == '"';
}

/* The mail members in EVENT order, and their compact names. */
static const char *const mail_names[] = {"messageId", "source", "timestamp",
					 "destination", "destinationCount", "commonHeaders"};
static const char *const mail_short[] = {"m", "s", "ts", "d", "n", "h"};
enum { MAIL_ID = 0, MAIL_TS = 2, MAIL_DEST = 3, MAIL_N = 6 };

/* An SES message id, "<16 hex>-<8>-<4>-<4>-<4>-<12>-<6 digits>" in lower
 * case (60 bytes), packs into the 24 bytes of its hex digits in base64url
 * (32 characters) and the 6 digits: compact "p" instead of "m". */
#define SES_ID_LEN 60
#define PACKED_ID_LEN 38
static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const unsigned char id_groups[] = {16, 8, 4, 4, 4, 12};

static int hex_value(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* id[0..SES_ID_LEN) packed into out (PACKED_ID_LEN bytes), or false when
 * it is not an SES message id in that form. */
static bool id_pack(const char *id, char out[PACKED_ID_LEN])
{
	unsigned char bytes[24];
	size_t k = 0, pos = 0;
	for (size_t g = 0; g < sizeof(id_groups); g++) {
		for (size_t i = 0; i < id_groups[g]; i++, pos++) {
			int v = hex_value(id[pos]);
			if (v < 0)
				return false;
			if (k % 2 == 0)
				bytes[k / 2] = (unsigned char)(v << 4);
			else
				bytes[k / 2] |= (unsigned char)v;
			k++;
		}
		if (id[pos++] != '-')
			return false;
	}
	for (size_t i = 0; i < 6; i++)
		if (id[pos + i] < '0' || id[pos + i] > '9')
			return false;
	for (size_t i = 0; i < 8; i++) {
		uint32_t v = (uint32_t)bytes[3 * i] << 16 | (uint32_t)bytes[3 * i + 1] << 8 |
			     bytes[3 * i + 2];
		for (size_t j = 0; j < 4; j++)
			out[4 * i + j] = b64[(v >> (18 - 6 * j)) & 63];
	}
	memcpy(out + 32, id + pos, 6);
	return true;
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '-' ? 62 : c == '_' ? 63 : -1;
}

/* The inverse: out gets SES_ID_LEN bytes; false for what id_pack() never
 * writes. */
static bool id_unpack(const char *p, char out[SES_ID_LEN])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char bytes[24];
	for (size_t i = 0; i < 8; i++) {
		uint32_t v = 0;
		for (size_t j = 0; j < 4; j++) {
			int d = b64_value(p[4 * i + j]);
			if (d < 0)
				return false;
			v = v << 6 | (uint32_t)d;
		}
		bytes[3 * i] = (unsigned char)(v >> 16);
		bytes[3 * i + 1] = (unsigned char)(v >> 8);
		bytes[3 * i + 2] = (unsigned char)v;
	}
	size_t k = 0, pos = 0;
	for (size_t g = 0; g < sizeof(id_groups); g++) {
		for (size_t i = 0; i < id_groups[g]; i++, k++)
			out[pos++] = hex[k % 2 == 0 ? bytes[k / 2] >> 4 : bytes[k / 2] & 0xf];
		out[pos++] = '-';
	}
	for (size_t i = 0; i < 6; i++)
		if (p[32 + i] < '0' || p[32 + i] > '9')
			return false;
	memcpy(out + pos, p + 32, 6);
	return true;
}

void member_topic_ref(const char *arn, size_t arn_len, char ref[MEMBER_TOPIC_REF_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256((const unsigned char *)arn, arn_len, md);
	for (int i = 0; i < MEMBER_TOPIC_REF_LEN / 2; i++) {
		ref[2 * i] = hex[md[i] >> 4];
		ref[2 * i + 1] = hex[md[i] & 0xf];
	}
	ref[MEMBER_TOPIC_REF_LEN] = '\0';
}

/* "<ISO time of ms>" (with its quotes) into buf; returns its length. */
static size_t quoted_time(int64_t ms, char buf[MT_TIME_BUF + 2])
{
	buf[0] = '"';
	mt_time_format(ms, buf + 1);
	size_t n = strlen(buf);
	buf[n++] = '"';
	buf[n] = '\0';
	return n;
}

static char *put(char *o, const char *s, size_t n)
{
	memcpy(o, s, n);
	return o + n;
}

#define PUT_LIT(o, lit) put(o, lit, sizeof(lit) - 1)

/* A copy of the EVENT as its own member. */
static enum mt_err full_form(const char *ev, size_t len, struct member_compact *out)
{
	out->member = malloc(len + 1);
	if (!out->member)
		return MT_E_NOMEM;
	memcpy(out->member, ev, len);
	out->member[len] = '\0';
	out->len = len;
	return MT_E_OK;
}

enum mt_err member_from_event(const char *ev, size_t len, int64_t time_ms,
			      struct member_compact *out)
{
	static const char *const names[] = {"id", "type", "time", "recipient",
					    "topicArn", "mail", "detail"};
	struct span v[7], key, val, mv[MAIL_N] = {{0}};
	struct members top = {ev + 1, ev + len, true}, mail;
	char when[MT_TIME_BUF + 2];
	int r;

	memset(out, 0, sizeof(*out));
	if (len < 2 || ev[0] != '{')
		return full_form(ev, len, out);
	for (size_t i = 0; i < 7; i++)
		if (members_next(&top, &key, &v[i]) != 1 || !is(key, names[i]))
			return full_form(ev, len, out);
	if (members_next(&top, &key, &val) != 0 || top.p != ev + len || !is_string(v[0]) ||
	    !is_string(v[3]) || !is_string(v[4]) || v[5].p[0] != '{' || v[6].p[0] != '{')
		return full_form(ev, len, out);
	size_t wn = quoted_time(time_ms, when);
	if (v[2].n != wn || memcmp(v[2].p, when, wn) != 0)
		return full_form(ev, len, out);
	/* mail's members, each at most once and in EVENT order. */
	mail = (struct members){v[5].p + 1, v[5].p + v[5].n, true};
	size_t next = 0;
	while ((r = members_next(&mail, &key, &val)) == 1) {
		size_t i = next;
		while (i < MAIL_N && !is(key, mail_names[i]))
			i++;
		if (i == MAIL_N)
			return full_form(ev, len, out);
		mv[i] = val;
		next = i + 1;
	}
	if (r != 0 || mail.p != v[5].p + v[5].n)
		return full_form(ev, len, out);

	out->member = malloc(len + 64);
	if (!out->member)
		return MT_E_NOMEM;
	char *o = out->member;
	o = PUT_LIT(o, "{\"id\":");
	o = put(o, v[0].p, v[0].n);
	o = PUT_LIT(o, ",\"type\":");
	o = put(o, v[1].p, v[1].n);
	if (memchr(v[3].p, '\\', v[3].n)) {
		o = PUT_LIT(o, ",\"r\":");
		o = put(o, v[3].p, v[3].n);
	}
	out->arn = v[4].p + 1;
	out->arn_len = v[4].n - 2;
	member_topic_ref(out->arn, out->arn_len, out->topic_ref);
	o = PUT_LIT(o, ",\"t\":\"");
	o = put(o, out->topic_ref, MEMBER_TOPIC_REF_LEN);
	*o++ = '"';
	for (size_t i = 0; i < MAIL_N; i++) {
		struct span m = mv[i];
		if (i == MAIL_DEST && !m.p) { /* no destination at all */
			o = PUT_LIT(o, ",\"d\":0");
			continue;
		}
		if (i == MAIL_TS && !m.p) { /* no timestamp at all */
			o = PUT_LIT(o, ",\"ts\":null");
			continue;
		}
		if (!m.p)
			continue;
		char packed[PACKED_ID_LEN];
		if (i == MAIL_ID && m.n == SES_ID_LEN + 2 && is_string(m) &&
		    id_pack(m.p + 1, packed)) {
			o = PUT_LIT(o, ",\"p\":\"");
			o = put(o, packed, PACKED_ID_LEN);
			*o++ = '"';
			continue;
		}
		if (i == MAIL_DEST && m.n == v[3].n + 2 && m.p[0] == '[' &&
		    memcmp(m.p + 1, v[3].p, v[3].n) == 0 && m.p[m.n - 1] == ']')
			continue; /* [recipient] */
		/* A timestamp in the form mt_time_format writes: relative to
		 * the score, left out when it is the score. */
		int64_t ms;
		bool canonical = i == MAIL_TS && is_string(m) && m.n <= MT_TIME_BUF &&
				 !memchr(m.p + 1, '\\', m.n - 2) &&
				 mt_time_parse(m.p + 1, m.n - 2, &ms) &&
				 ms - time_ms <= TS_DELTA_MAX && time_ms - ms <= TS_DELTA_MAX &&
				 quoted_time(ms, when) == m.n && memcmp(when, m.p, m.n) == 0;
		if (canonical && ms == time_ms)
			continue;
		*o++ = ',';
		*o++ = '"';
		o = put(o, mail_short[i], strlen(mail_short[i]));
		*o++ = '"';
		*o++ = ':';
		if (canonical) {
			char num[24];
			int k = snprintf(num, sizeof(num), "%lld", (long long)(ms - time_ms));
			o = put(o, num, (size_t)k);
			continue;
		}
		o = put(o, m.p, m.n);
	}
	if (!is(v[6], "{}")) { /* an empty detail is left out */
		o = PUT_LIT(o, ",\"x\":");
		o = put(o, v[6].p, v[6].n);
	}
	*o++ = '}';
	*o = '\0';
	out->len = (size_t)(o - out->member);
	return MT_E_OK;
}

/* The members of a compact member, or false when m is not one. */
struct compact {
	struct span id, type, r, t, mail[MAIL_N], detail;
	bool packed_id;   /* mail[MAIL_ID] is "p" */
	int64_t ts_delta; /* of an integer mail[MAIL_TS] */
};

static bool ts_delta(struct span s, int64_t *out);

static bool compact_parse(const char *m, size_t len, struct compact *c)
{
	struct members top = {m + 1, m + len, true};
	struct span key, val;
	int r;

	memset(c, 0, sizeof(*c));
	if (len < 2 || m[0] != '{' || members_next(&top, &key, &c->id) != 1 || !is(key, "id") ||
	    members_next(&top, &key, &c->type) != 1 || !is(key, "type") ||
	    members_next(&top, &key, &val) != 1)
		return false;
	if (is(key, "r")) {
		if (!is_string(val))
			return false;
		c->r = val;
		if (members_next(&top, &key, &val) != 1)
			return false;
	}
	if (!is(key, "t") || val.n != MEMBER_TOPIC_REF_LEN + 2 || !is_string(val))
		return false;
	c->t = val;
	size_t next = 0;
	while ((r = members_next(&top, &key, &val)) == 1 && !is(key, "x")) {
		size_t i = next;
		if (i == MAIL_ID && is(key, "p")) {
			if (val.n != PACKED_ID_LEN + 2 || !is_string(val))
				return false;
			c->packed_id = true;
		} else {
			while (i < MAIL_N && !is(key, mail_short[i]))
				i++;
		}
		if (i == MAIL_N || (i == MAIL_TS && !is(val, "null") && !is_string(val) &&
				    !ts_delta(val, &c->ts_delta)))
			return false;
		c->mail[i] = val;
		next = i + 1;
	}
	if (r == 1) {
		if (val.p[0] != '{')
			return false;
		c->detail = val;
		r = members_next(&top, &key, &val);
	} else {
		c->detail = (struct span){"{}", 2};
	}
	return r == 0 && top.p == m + len;
}

bool member_find_topic_ref(const char *m, size_t len, char ref[MEMBER_TOPIC_REF_LEN + 1])
{
	struct compact c;
	if (!compact_parse(m, len, &c))
		return false;
	memcpy(ref, c.t.p + 1, MEMBER_TOPIC_REF_LEN);
	ref[MEMBER_TOPIC_REF_LEN] = '\0';
	return true;
}

/* s as a JSON string, escaped as json-c (and ses.c) escape. */
static size_t put_escaped(char *o, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	char *start = o;
	*o++ = '"';
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		const char *esc = NULL;
		switch (c) {
		case '\b': esc = "\\b"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		case '\t': esc = "\\t"; break;
		case '\f': esc = "\\f"; break;
		case '"': esc = "\\\""; break;
		case '\\': esc = "\\\\"; break;
		default:
			if (c < 0x20) {
				o = PUT_LIT(o, "\\u00");
				*o++ = hex[c >> 4];
				*o++ = hex[c & 0xf];
			} else {
				*o++ = (char)c;
			}
			continue;
		}
		*o++ = esc[0];
		*o++ = esc[1];
	}
	*o++ = '"';
	return (size_t)(o - start);
}

/* A compact "ts": an integer of at most 14 digits (TS_DELTA_MAX). */
static bool ts_delta(struct span s, int64_t *out)
{
	size_t i = s.n && s.p[0] == '-';
	int64_t v = 0;
	if (s.n == i || s.n - i > 14)
		return false;
	for (; i < s.n; i++) {
		if (s.p[i] < '0' || s.p[i] > '9')
			return false;
		v = v * 10 + (s.p[i] - '0');
	}
	if (v > TS_DELTA_MAX)
		return false;
	*out = s.p[0] == '-' ? -v : v;
	return true;
}

static enum mt_err append(struct buf *out, const char *s, size_t n)
{
	return buf_result_err(buf_append(out, s, n, MEMBER_EVENT_MAX));
}

enum mt_err member_to_event(const char *m, size_t len, const char *recipient,
			    int64_t score, const char *arn, size_t arn_len,
			    struct buf *out)
{
	static const int64_t time_min = -62135596800000LL; /* 0001-01-01 */
	static const int64_t time_max = 253402300799999LL; /* 9999-12-31 */
	struct compact c;
	int64_t delta = 0;

	char id[SES_ID_LEN];
	if (!compact_parse(m, len, &c) || score < time_min || score > time_max ||
	    score + c.ts_delta < time_min || score + c.ts_delta > time_max ||
	    (c.packed_id && !id_unpack(c.mail[MAIL_ID].p + 1, id)))
		return append(out, m, len);
	delta = c.ts_delta;

	size_t rl = strlen(recipient);
	if (rl > MEMBER_EVENT_MAX / 8)
		return MT_E_TOO_LARGE;
	/* The recipient's JSON text: at most 6 bytes a byte, and quotes. */
	char *rj = c.r.p ? NULL : malloc(6 * rl + 3);
	if (!c.r.p && !rj)
		return MT_E_NOMEM;
	struct span rcpt = c.r.p ? c.r : (struct span){rj, put_escaped(rj, recipient)};
	char when[MT_TIME_BUF + 2];
	size_t wn = quoted_time(score, when);
	enum mt_err err = MT_E_OK;
#define ADD(s, n) do { if (err == MT_E_OK) err = append(out, s, n); } while (0)
#define ADD_LIT(lit) ADD(lit, sizeof(lit) - 1)
	ADD_LIT("{\"id\":");
	ADD(c.id.p, c.id.n);
	ADD_LIT(",\"type\":");
	ADD(c.type.p, c.type.n);
	ADD_LIT(",\"time\":");
	ADD(when, wn);
	ADD_LIT(",\"recipient\":");
	ADD(rcpt.p, rcpt.n);
	ADD_LIT(",\"topicArn\":");
	if (arn) {
		ADD_LIT("\"");
		ADD(arn, arn_len);
		ADD_LIT("\"");
	} else {
		ADD_LIT("null");
	}
	ADD_LIT(",\"mail\":{");
	bool first = true;
	for (size_t i = 0; i < MAIL_N; i++) {
		struct span v = c.mail[i];
		if (i == MAIL_DEST && !v.p) {
			v = rcpt; /* left out: [recipient] */
		} else if (i == MAIL_TS && !v.p) {
			v = (struct span){"0", 1}; /* left out: the score */
		} else if (!v.p || (i == MAIL_DEST && is(v, "0")) || (i == MAIL_TS && is(v, "null"))) {
			continue;
		}
		if (!first)
			ADD_LIT(",");
		first = false;
		ADD_LIT("\"");
		ADD(mail_names[i], strlen(mail_names[i]));
		ADD_LIT("\":");
		if (i == MAIL_DEST && !c.mail[i].p) {
			ADD_LIT("[");
			ADD(v.p, v.n);
			ADD_LIT("]");
		} else if (i == MAIL_ID && c.packed_id) {
			ADD_LIT("\"");
			ADD(id, SES_ID_LEN);
			ADD_LIT("\"");
		} else if (i == MAIL_TS && !is_string(v)) {
			wn = quoted_time(score + delta, when);
			ADD(when, wn);
		} else {
			ADD(v.p, v.n);
		}
	}
	ADD_LIT("},\"detail\":");
	ADD(c.detail.p, c.detail.n);
	ADD_LIT("}");
#undef ADD_LIT
#undef ADD
	free(rj);
	return err;
}
