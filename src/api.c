#include "api.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "apireq.h"
#include "console.h"
#include "health.h"
#include "jsonscan.h"
#include "log.h"
#include "mt_time.h"
#include "status.h"

#define CSP "default-src 'self'; script-src 'self'; style-src 'self'; " \
	    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; " \
	    "base-uri 'none'; form-action 'self'"

#define STR_(x) #x
#define STR(x) STR_(x)
#define ID_MAX_STR STR(STORE_MESSAGE_ID_MAX)

/* Constant-time check of "Bearer TOKEN". */
static bool authorized(const struct api *a, struct MHD_Connection *conn)
{
	if (!a->token)
		return true;
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_AUTHORIZATION);
	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	const char *given = h + 7;
	size_t gl = strlen(given), tl = strlen(a->token);
	/* Compare as many bytes as the token has whatever was given, so the
	 * time taken tells nothing about how much of it matched. */
	const char *cmp = gl == tl ? given : a->token;
	return (CRYPTO_memcmp(cmp, a->token, tl) == 0) & (gl == tl);
}

static enum MHD_Result bad_param(struct MHD_Connection *conn, const char *param,
				 const char *why)
{
	char msg[256];
	snprintf(msg, sizeof(msg), "bad parameter '%s': %s", param, why);
	struct json_object *o = json_object_new_object();
	if (!o)
		return MHD_NO;
	json_object_object_add(o, "status", json_object_new_string("error"));
	json_object_object_add(o, "error", json_object_new_string(msg));
	json_object_object_add(o, "parameter", json_object_new_string(param));
	return http_send_json(conn, 400, o);
}

/* MHD_get_connection_values callback: one query parameter into the query;
 * stops at the first bad one. */
static enum MHD_Result on_arg(void *cls, enum MHD_ValueKind kind,
			      const char *key, const char *value)
{
	return apireq_parse_param(cls, key, value) ? MHD_YES : MHD_NO;
}

/* Parses the request's parameters into p.  False when they are fine;
 * otherwise true, the 400 answer is queued and *ret is its result. */
static bool bad_query(struct MHD_Connection *conn, struct apireq_query *p,
		      enum MHD_Result *ret)
{
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, on_arg, p);
	if (apireq_query_finish(p))
		return false;
	*ret = bad_param(conn, p->bad, p->why);
	return true;
}

static enum MHD_Result store_error(struct MHD_Connection *conn, enum mt_err err,
				   const char *detail)
{
	LOG(LOG_ERROR, "api", "request_id=%s error=\"%s\" detail=\"%s\"",
	    http_request_id(conn), mt_err_str(err), detail);
	return http_send_status(conn, mt_err_http_status(err), NULL, mt_err_str(err));
}

/* The page's answer, {"recipient":...,"events":[...],"next_before":...},
 * into a malloc'd string (caller frees; NULL when out of memory): the
 * page holds its EVENTs' JSON already, so they are copied, not parsed and
 * printed again. */
static char *page_answer(const char *address, const struct store_page *page, size_t *len)
{
	struct buf b = {0};
	char tail[64];
	bool ok = true;
	const size_t max = (size_t)STORE_PAGE_BYTES_MAX + 1024;

	if (address) {
		struct json_object *a = json_object_new_string(address);
		size_t al;
		const char *s = a ? json_object_to_json_string_length(
					    a, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &al)
				  : NULL;
		ok = s && buf_append(&b, "{\"recipient\":", 13, max) == BUF_OK &&
		     buf_append(&b, s, al, max) == BUF_OK && buf_append(&b, ",", 1, max) == BUF_OK;
		json_object_put(a);
	} else {
		ok = buf_append(&b, "{", 1, max) == BUF_OK;
	}
	int n = page->more ? snprintf(tail, sizeof(tail), "],\"next_before\":%lld}",
				      (long long)page->next_before)
			   : snprintf(tail, sizeof(tail), "],\"next_before\":null}");
	ok = ok && buf_append(&b, "\"events\":[", 10, max) == BUF_OK &&
	     (page->events.len == 0 ||
	      buf_append(&b, page->events.p, page->events.len, max) == BUF_OK) &&
	     buf_append(&b, tail, (size_t)n, max) == BUF_OK;
	if (!ok) {
		buf_free(&b);
		return NULL;
	}
	*len = b.len;
	return buf_take(&b);
}

static enum MHD_Result events_page(struct api *a, struct MHD_Connection *conn,
				   enum apireq_route route, const char *address)
{
	struct apireq_query p;
	enum MHD_Result ret;
	apireq_query_init(&p, route);
	if (bad_query(conn, &p, &ret))
		return ret;

	struct store_page page;
	char err[256];
	enum mt_err e = store_query_events(a->store, address, &p.q, &page, err, sizeof(err));
	if (e) {
		store_page_free(&page);
		return store_error(conn, e, err);
	}
	size_t len = 0;
	char *body = page_answer(address, &page, &len);
	store_page_free(&page);
	if (!body)
		return MHD_NO;
	return http_send_owned(conn, 200, "application/json", body, len);
}

static enum MHD_Result summary(struct api *a, struct MHD_Connection *conn,
			       const char *address)
{
	struct apireq_query p;
	enum MHD_Result ret;
	apireq_query_init(&p, APIREQ_SUMMARY);
	if (bad_query(conn, &p, &ret))
		return ret;

	struct store_summary sum;
	char err[256];
	enum mt_err e = store_recipient_summary(a->store, address, &sum, err, sizeof(err));
	if (e) {
		store_summary_free(&sum);
		return store_error(conn, e, err);
	}
	struct json_object *o = json_object_new_object();
	if (!o) {
		store_summary_free(&sum);
		return MHD_NO;
	}
	json_object_object_add(o, "recipient", json_object_new_string(address));
	json_object_object_add(o, "counts", json_object_get(sum.counts));
	json_object_object_add(o, "last_event", json_object_get(sum.last_event));
	json_object_object_add(o, "suppressed", json_object_new_boolean(sum.reason != NULL));
	json_object_object_add(o, "reason", sum.reason ? json_object_new_string(sum.reason) : NULL);
	json_object_object_add(o, "reason_text",
			       sum.reason ? json_object_new_string(sum.reason_text) : NULL);
	store_summary_free(&sum);
	return http_send_json(conn, 200, o);
}

/* GET /v1/messages/{sesMessageId}. */
static enum MHD_Result message(struct api *a, struct MHD_Connection *conn,
			       const char *message_id)
{
	struct apireq_query p;
	enum MHD_Result ret;
	apireq_query_init(&p, APIREQ_MESSAGE);
	if (bad_query(conn, &p, &ret))
		return ret;
	if (!a->message_index)
		return http_send_status(conn, MHD_HTTP_NOT_FOUND, NULL,
					"no message index: mailtrail runs without --message-index");

	struct json_object *groups = NULL;
	char err[256];
	enum mt_err e = store_message_events(a->store, message_id, &groups, err, sizeof(err));
	if (e)
		return store_error(conn, e, err);
	struct json_object *o = json_object_new_object();
	if (!o) {
		json_object_put(groups);
		return MHD_NO;
	}
	json_object_object_add(o, "messageId", json_object_new_string(message_id));
	json_object_object_add(o, "recipients", groups);
	return http_send_json(conn, 200, o);
}

/* ---- deliverability (issue 13) -------------------------------------------- */

static enum MHD_Result on_health_arg(void *cls, enum MHD_ValueKind kind,
				     const char *key, const char *value)
{
	(void)kind;
	return apireq_parse_health_param(cls, key, value) ? MHD_YES : MHD_NO;
}

/* GET /v1/health, /v1/health/series, /v1/health/domains. */
static enum MHD_Result health(struct api *a, struct MHD_Connection *conn,
			      enum apireq_route r)
{
	struct apireq_health h;
	apireq_health_init(&h, r);
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, on_health_arg, &h);
	int64_t now = mt_time_now_ms();
	if (!apireq_health_finish(&h, now))
		return bad_param(conn, h.bad, h.why);
	const struct health_ctx hc = {a->store, a->health_min_volume, a->retention_days};
	struct json_object *o = NULL;
	char err[256], *text = NULL;
	size_t len = 0;
	enum mt_err e = r == APIREQ_HEALTH ? health_overview(&hc, &h, now, &o, err, sizeof(err))
			: r == APIREQ_HEALTH_SERIES
			? health_series(&hc, &h, now, &text, &len, err, sizeof(err))
			: health_domains(&hc, &h, now, &o, err, sizeof(err));
	if (e != MT_E_OK)
		return store_error(conn, e, err);
	if (text)
		return http_send_owned(conn, 200, "application/json", text, len);
	return http_send_json(conn, 200, o);
}

/* ---- suppressions and erasure (issue 14) ---------------------------------- */

/* A request whose body the API reads (POST /v1/suppressions/check): its
 * bytes, up to APIREQ_CHECK_BODY_MAX. */
struct body_req {
	char *data;
	size_t len, cap;
	bool over; /* more than APIREQ_CHECK_BODY_MAX came: not kept */
};

static void body_req_free(struct body_req *b)
{
	if (!b)
		return;
	free(b->data);
	free(b);
}

/* Takes one piece of the body; false when out of memory. */
static bool body_append(struct body_req *b, const char *data, size_t n)
{
	if (b->over || b->len + n > APIREQ_CHECK_BODY_MAX) {
		b->over = true;
		return true;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *d = realloc(b->data, cap);
		if (!d)
			return false;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, n);
	b->len += n;
	b->data[b->len] = '\0';
	return true;
}

static enum MHD_Result check_error(struct MHD_Connection *conn, enum mt_err e,
				   const char *why)
{
	struct json_object *o = json_object_new_object();
	if (!o)
		return MHD_NO;
	json_object_object_add(o, "status", json_object_new_string("error"));
	json_object_object_add(o, "error", json_object_new_string(why && *why ? why
								      : mt_err_str(e)));
	return http_send_json(conn, mt_err_http_status(e), o);
}

/* s[0..len) as the body of a JSON string into out (at least 6 * len
 * bytes); returns the bytes written. */
static size_t json_escape(const char *s, size_t len, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = jsonscan_verbatim(s, len);
	memcpy(out, s, o); /* the usual address needs no escape at all */
	for (size_t i = o; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20) {
			out[o] = '\\';
			out[o + 1] = 'u';
			out[o + 2] = '0';
			out[o + 3] = '0';
			out[o + 4] = hex[c >> 4];
			out[o + 5] = hex[c & 15];
			o += 6;
		} else {
			out[o++] = (char)c;
		}
	}
	return o;
}

/* The bytes json_escape writes for s[0..len). */
static size_t json_escaped_len(const char *s, size_t len)
{
	size_t n = jsonscan_verbatim(s, len);
	for (size_t i = n; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		n += c == '"' || c == '\\' ? 2 : c < 0x20 ? 6 : 1;
	}
	return n;
}

#define PUT(o, lit) (memcpy((o), (lit), sizeof(lit) - 1), (o) += sizeof(lit) - 1)

/* The check's answer, {"results":[...]}, one object per entry in the
 * body's order, written in one buffer of the exact size (json-c objects
 * for 1,000 entries cost more than the Redis round trip, and a buffer
 * sized for the worst case is hundreds of KB of fresh pages a request). */
static enum MHD_Result check_answer(struct MHD_Connection *conn, const struct apireq_check *c,
				    const struct store_suppression *sup)
{
	/* What follows "address":"<given> in each kind of entry, at most. */
	static const char invalid[] = "\",\"error\":\"not an email address\"}";
	static const char none[] =
		"\",\"suppressed\":false,\"reason\":null,\"reason_text\":null,\"time\":null}";
	static const char yes[] = "\",\"suppressed\":true,\"reason\":\"";
	size_t cap = 16;
	for (size_t i = 0; i < c->n; i++) {
		const struct apireq_check_entry *en = &c->v[i];
		cap += 14 + json_escaped_len(en->given, en->given_len);
		if (!en->valid)
			cap += sizeof(invalid);
		else
			cap += 16 + en->normalized_len + sizeof(none) + sizeof(yes) +
			       (sup[i].reason ? strlen(sup[i].reason) : 0) +
			       6 * strlen(sup[i].text) + 32 + MT_TIME_BUF;
	}
	char *buf = malloc(cap);
	if (!buf)
		return MHD_NO;
	char *o = buf;
	PUT(o, "{\"results\":[");
	for (size_t i = 0; i < c->n; i++) {
		const struct apireq_check_entry *en = &c->v[i];
		if (i)
			*o++ = ',';
		PUT(o, "{\"address\":\"");
		o += json_escape(en->given, en->given_len, o);
		if (!en->valid) {
			PUT(o, invalid);
			continue;
		}
		PUT(o, "\",\"normalized\":\"");
		/* A normalised address holds no character JSON escapes
		 * (ses_address_normalize refuses '"', '\\' and controls). */
		memcpy(o, en->normalized, en->normalized_len);
		o += en->normalized_len;
		if (sup[i].reason) {
			char iso[MT_TIME_BUF];
			size_t rl = strlen(sup[i].reason);
			PUT(o, yes);
			o += json_escape(sup[i].reason, rl, o);
			PUT(o, "\",\"reason_text\":\"");
			o += json_escape(sup[i].text, strlen(sup[i].text), o);
			PUT(o, "\",\"time\":\"");
			mt_time_format(sup[i].time_ms, iso);
			size_t il = strlen(iso);
			memcpy(o, iso, il);
			o += il;
			PUT(o, "\"}");
		} else {
			PUT(o, none);
		}
	}
	PUT(o, "]}");
	return http_send_owned(conn, 200, "application/json", buf, (size_t)(o - buf));
}

/* POST /v1/suppressions/check: body is the whole request body. */
static enum MHD_Result suppression_check(struct api *a, struct MHD_Connection *conn,
					 const struct body_req *body)
{
	struct apireq_check c;
	const char *why;
	struct store_suppression *sup = NULL;
	const char **addrs = NULL;
	enum MHD_Result ret = MHD_NO;

	if (body->over)
		return check_error(conn, MT_E_TOO_LARGE, "body over 1048576 bytes");
	enum mt_err e = apireq_parse_check(body->data, body->len, &c, &why);
	if (e != MT_E_OK) {
		apireq_check_free(&c);
		return check_error(conn, e, why);
	}
	sup = malloc((c.n ? c.n : 1) * sizeof(*sup)); /* the store sets each */
	addrs = calloc(c.n ? c.n : 1, sizeof(*addrs));
	if (!sup || !addrs)
		goto out;
	for (size_t i = 0; i < c.n; i++)
		addrs[i] = c.v[i].valid ? c.v[i].normalized : NULL;
	char err[256];
	e = store_suppression_check(a->store, addrs, c.n, sup, err, sizeof(err));
	if (e != MT_E_OK) {
		ret = store_error(conn, e, err);
		goto out;
	}
	ret = check_answer(conn, &c, sup);
out:
	free(addrs);
	free(sup);
	apireq_check_free(&c);
	return ret;
}

/* The export's output: lines of the current step (or page), drained into
 * the response before the next step runs, so memory stays one step's. */
struct export_state {
	struct store *store;
	struct apireq_export e;
	uint64_t cursor;
	bool done;
	char *buf;
	size_t len, pos, cap;
	char request_id[LOG_REQUEST_ID_LEN];
};

static void export_state_free(struct export_state *x)
{
	if (!x)
		return;
	free(x->buf);
	free(x);
}

/* Room for n more bytes in x->buf. */
static bool export_reserve(struct export_state *x, size_t n)
{
	if (x->len + n <= x->cap)
		return true;
	size_t cap = x->cap ? x->cap : 16384;
	while (cap < x->len + n)
		cap *= 2;
	char *b = realloc(x->buf, cap);
	if (!b)
		return false;
	x->buf = b;
	x->cap = cap;
	return true;
}

/* store_suppressions_scan's callback: one line per suppressed address. */
static bool export_line(void *arg, const struct store_suppressed *s)
{
	struct export_state *x = arg;
	size_t tl = strlen(s->s.text);
	if (!export_reserve(x, 6 * s->address_len + 6 * tl + 128))
		return false;
	char *o = x->buf + x->len;
	if (x->e.csv) {
		o += apireq_csv_field(s->address, s->address_len, o);
		const char *r = strcmp(s->s.reason, "Complaint") == 0 ? ",COMPLAINT\r\n"
								       : ",BOUNCE\r\n";
		size_t rl = strlen(r);
		memcpy(o, r, rl);
		o += rl;
	} else {
		char iso[MT_TIME_BUF];
		mt_time_format(s->s.time_ms, iso);
		memcpy(o, "{\"address\":\"", 12);
		o += 12;
		o += json_escape(s->address, s->address_len, o);
		o += snprintf(o, 80, "\",\"reason\":\"%s\",\"reason_text\":\"", s->s.reason);
		o += json_escape(s->s.text, tl, o);
		o += snprintf(o, 80, "\",\"time\":\"%s\"}\n", iso);
	}
	x->len = (size_t)(o - x->buf);
	return true;
}

/* One SCAN step of count keys into x->buf. */
static enum mt_err export_step(struct export_state *x, size_t count)
{
	char err[256] = "";
	uint64_t next;
	enum mt_err e = store_suppressions_scan(x->store, x->cursor, count,
						x->e.has_since ? x->e.since : INT64_MIN,
						export_line, x, &next, err, sizeof(err));
	if (e != MT_E_OK) {
		LOG(LOG_ERROR, "api", "request_id=%s error=\"%s\" detail=\"%s\"", x->request_id,
		    mt_err_str(e), err);
		return e;
	}
	x->cursor = next;
	x->done = next == 0;
	return MT_E_OK;
}

/* libmicrohttpd's content reader of the streamed export. */
static ssize_t export_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct export_state *x = cls;
	(void)pos;
	while (x->pos == x->len) {
		if (x->done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		x->pos = x->len = 0;
		if (export_step(x, STORE_SCAN_STEP_MAX) != MT_E_OK)
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	size_t n = x->len - x->pos < max ? x->len - x->pos : max;
	memcpy(out, x->buf + x->pos, n);
	x->pos += n;
	return (ssize_t)n;
}

static void export_free(void *cls)
{
	export_state_free(cls);
}

static enum MHD_Result on_export_arg(void *cls, enum MHD_ValueKind kind,
				     const char *key, const char *value)
{
	(void)kind;
	return apireq_parse_export_param(cls, key, value) ? MHD_YES : MHD_NO;
}

/* GET /v1/suppressions: every suppressed address, streamed (or one page
 * of them with a cursor). */
static enum MHD_Result suppressions_export(struct api *a, struct MHD_Connection *conn)
{
	static const char header[] = "EMAIL_ADDRESS,REASON\r\n";
	struct export_state *x = calloc(1, sizeof(*x));
	if (!x)
		return MHD_NO;
	apireq_export_init(&x->e);
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, on_export_arg, &x->e);
	if (x->e.bad) {
		enum MHD_Result r = bad_param(conn, x->e.bad, x->e.why);
		export_state_free(x);
		return r;
	}
	if (!store_scan_cursor_valid(a->store, x->e.cursor)) {
		export_state_free(x);
		return bad_param(conn, "cursor", "not a cursor of this walk");
	}
	x->store = a->store;
	x->cursor = x->e.cursor;
	snprintf(x->request_id, sizeof(x->request_id), "%s", http_request_id(conn));
	const char *type = x->e.csv ? "text/csv; charset=utf-8" : "application/x-ndjson";
	if (x->e.csv) {
		if (!export_reserve(x, sizeof(header))) {
			export_state_free(x);
			return MHD_NO;
		}
		memcpy(x->buf, header, sizeof(header) - 1);
		x->len = sizeof(header) - 1;
	}
	if (!x->e.paged) {
		struct MHD_Response *r =
			MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024,
							  export_read, x, export_free);
		if (!r) {
			export_state_free(x);
			return MHD_NO;
		}
		return http_send_response(conn, 200, r, type);
	}
	/* One page: steps asking for limit keys in all. */
	for (size_t left = x->e.limit; left > 0 && !x->done;) {
		size_t n = left < STORE_SCAN_STEP_MAX ? left : STORE_SCAN_STEP_MAX;
		if (export_step(x, n) != MT_E_OK) {
			export_state_free(x);
			return http_send_status(conn, mt_err_http_status(MT_E_REDIS), NULL,
						mt_err_str(MT_E_REDIS));
		}
		left -= n;
	}
	char next[24];
	snprintf(next, sizeof(next), "%" PRIu64, x->done ? (uint64_t)0 : x->cursor);
	struct MHD_Response *r =
		MHD_create_response_from_buffer(x->len, x->buf, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		export_state_free(x);
		return MHD_NO;
	}
	x->buf = NULL; /* the response's now */
	export_state_free(x);
	MHD_add_response_header(r, "Mailtrail-Next-Cursor", next);
	return http_send_response(conn, 200, r, type);
}

/* The first 16 hex digits of the address's SHA-256: names an erased
 * address in the log without writing it there. */
static void address_hash(const char *address, char out[17])
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)address, strlen(address), md);
	for (int i = 0; i < 8; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* DELETE /v1/recipients/{address}. */
static enum MHD_Result erase(struct api *a, struct MHD_Connection *conn, const char *address)
{
	struct apireq_query p;
	enum MHD_Result ret;
	apireq_query_init(&p, APIREQ_SUMMARY);
	if (bad_query(conn, &p, &ret))
		return ret;
	struct store_erasure er;
	char err[256], hash[17];
	address_hash(address, hash);
	enum mt_err e = store_recipient_erase(a->store, address, &er, err, sizeof(err));
	if (e != MT_E_OK) {
		LOG(LOG_ERROR, "erasure failed", "request_id=%s address_sha256=%s error=\"%s\" "
		    "detail=\"%s\" keys=%zu feed_entries=%zu", http_request_id(conn), hash,
		    mt_err_str(e), err, er.keys, er.feed_entries);
		return http_send_status(conn, mt_err_http_status(e), NULL, mt_err_str(e));
	}
	LOG(LOG_INFO, "recipient erased", "request_id=%s address_sha256=%s keys=%zu "
	    "feed_entries=%zu", http_request_id(conn), hash, er.keys, er.feed_entries);
	struct json_object *o = json_object_new_object();
	if (!o)
		return MHD_NO;
	json_object_object_add(o, "status", json_object_new_string("erased"));
	json_object_object_add(o, "keys", json_object_new_int64((int64_t)er.keys));
	json_object_object_add(o, "feed_entries", json_object_new_int64((int64_t)er.feed_entries));
	return http_send_json(conn, 200, o);
}

static enum MHD_Result console_file(struct MHD_Connection *conn, const char *url)
{
	for (size_t i = 0; i < console_assets_count; i++) {
		const struct console_asset *f = &console_assets[i];
		if (strcmp(url, f->path) != 0)
			continue;
		struct MHD_Response *r = MHD_create_response_from_buffer(
			f->len, (void *)f->data, MHD_RESPMEM_PERSISTENT);
		if (!r)
			return MHD_NO;
		MHD_add_response_header(r, "Content-Type", f->content_type);
		MHD_add_response_header(r, "Content-Security-Policy", CSP);
		MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
		MHD_add_response_header(r, "X-Frame-Options", "DENY");
		MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
		MHD_add_response_header(r, "Cache-Control", "no-cache");
		enum MHD_Result ret = MHD_queue_response(conn, 200, r);
		MHD_destroy_response(r);
		return ret;
	}
	return http_send_status(conn, 404, NULL, "not found");
}

/* Which methods a route takes: GET (and HEAD) for reads, POST for the
 * bulk check, DELETE for an erasure. */
static bool method_allowed(enum apireq_route r, const char *method)
{
	bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	if (strcmp(method, "POST") == 0)
		return r == APIREQ_SUPPRESSIONS_CHECK;
	if (strcmp(method, "DELETE") == 0)
		return r == APIREQ_SUMMARY || r == APIREQ_BAD_ADDRESS;
	return get && r != APIREQ_SUPPRESSIONS_CHECK;
}

/* GET /v1/status: the wiring as SNS deliveries showed it (status.h). */
static enum MHD_Result status_answer(struct api *a, struct MHD_Connection *conn,
				     const char *method)
{
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return http_send_status(conn, 405, NULL, "method not allowed");
	if (!authorized(a, conn))
		return http_send_status(conn, 401, NULL, "missing or wrong bearer token");
	if (!a->status)
		return http_send_status(conn, 404, NULL, "not found");
	struct json_object *o = NULL;
	char err[256];
	enum mt_err e = status_read(a->status, &o, err, sizeof(err));
	if (e != MT_E_OK)
		return store_error(conn, e, err);
	return http_send_json(conn, 200, o);
}

static enum MHD_Result route(struct api *a, struct MHD_Connection *conn, const char *url,
			     const char *method, const struct body_req *body)
{
	if (strcmp(url, "/v1/status") == 0)
		return status_answer(a, conn, method);
	/* libmicrohttpd has already %-decoded the path. */
	char address[SES_ADDRESS_MAX + 1]; /* or the message id */
	enum apireq_route r = apireq_parse_path(url, strlen(url), address);
	if (!method_allowed(r, method))
		return http_send_status(conn, 405, NULL, "method not allowed");
	if (r == APIREQ_CONSOLE)
		return console_file(conn, url);
	if (!authorized(a, conn))
		return http_send_status(conn, 401, NULL, "missing or wrong bearer token");
	switch (r) {
	case APIREQ_EVENTS:
		return events_page(a, conn, r, NULL);
	case APIREQ_TIMELINE:
		return events_page(a, conn, r, address);
	case APIREQ_SUMMARY:
		if (strcmp(method, "DELETE") == 0)
			return erase(a, conn, address);
		return summary(a, conn, address);
	case APIREQ_SUPPRESSIONS:
		return suppressions_export(a, conn);
	case APIREQ_SUPPRESSIONS_CHECK:
		return body ? suppression_check(a, conn, body)
			    : http_send_status(conn, 503, NULL, "internal error");
	case APIREQ_BAD_ADDRESS:
		return bad_param(conn, "address", "not an email address");
	case APIREQ_MESSAGE:
		return message(a, conn, address);
	case APIREQ_HEALTH:
	case APIREQ_HEALTH_SERIES:
	case APIREQ_HEALTH_DOMAINS:
		return health(a, conn, r);
	case APIREQ_BAD_MESSAGE_ID:
		return bad_param(conn, "messageId",
				 "not an SES message id (1 to " ID_MAX_STR
				 " of A-Z, a-z, 0-9 and '-')");
	default:
		return http_send_status(conn, 404, NULL, "not found");
	}
}

/* Whether the request's body is read: a POST to the bulk check. */
static bool reads_body(const char *url, const char *method)
{
	char address[SES_ADDRESS_MAX + 1];
	return strcmp(method, "POST") == 0 &&
	       apireq_parse_path(url, strlen(url), address) == APIREQ_SUPPRESSIONS_CHECK;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **req_cls)
{
	struct api *a = cls;
	struct body_req *body = NULL;
	(void)version;
	if (*req_cls == NULL && reads_body(url, method)) {
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > APIREQ_CHECK_BODY_MAX)
			/* Answered before the body is read: the connection closes. */
			return check_error(conn, MT_E_TOO_LARGE, "body over 1048576 bytes");
		body = calloc(1, sizeof(*body));
		if (!body)
			return MHD_NO;
		*req_cls = body;
		return MHD_YES;
	}
	if (*req_cls != NULL && *req_cls != &http_deferred) {
		body = *req_cls;
		if (*upload_data_size) {
			bool ok = body_append(body, upload_data, *upload_data_size);
			*upload_data_size = 0;
			return ok ? MHD_YES : MHD_NO;
		}
	} else if (http_defer_first_call(req_cls, upload_data_size)) {
		return MHD_YES;
	}
	enum MHD_Result ret = route(a, conn, url, method, body);
	/* The path holds an address: personal data, debug level only, and
	 * never for an erasure. */
	LOG(LOG_DEBUG, "api", "request_id=%s method=%s path=%s", http_request_id(conn),
	    method, strcmp(method, "DELETE") == 0 ? "(erasure)" : url);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)conn;
	(void)toe;
	if (*req_cls && *req_cls != &http_deferred)
		body_req_free(*req_cls);
	*req_cls = NULL;
}

static enum metric_route route_of(const char *url)
{
	char address[SES_ADDRESS_MAX + 1];
	if (strcmp(url, "/v1/status") == 0)
		return METRIC_ROUTE_API_STATUS;
	switch (apireq_parse_path(url, strlen(url), address)) {
	case APIREQ_EVENTS:
		return METRIC_ROUTE_API_RECENT;
	case APIREQ_TIMELINE:
		return METRIC_ROUTE_API_EVENTS;
	case APIREQ_SUMMARY: /* also an erasure (DELETE) */
		return METRIC_ROUTE_API_SUMMARY;
	case APIREQ_MESSAGE:
		return METRIC_ROUTE_API_MESSAGE;
	case APIREQ_SUPPRESSIONS:
		return METRIC_ROUTE_API_SUPPRESSIONS;
	case APIREQ_SUPPRESSIONS_CHECK:
		return METRIC_ROUTE_API_SUPPRESSIONS_CHECK;
	case APIREQ_HEALTH:
		return METRIC_ROUTE_API_HEALTH;
	case APIREQ_HEALTH_SERIES:
		return METRIC_ROUTE_API_HEALTH_SERIES;
	case APIREQ_HEALTH_DOMAINS:
		return METRIC_ROUTE_API_HEALTH_DOMAINS;
	case APIREQ_CONSOLE:
		for (size_t i = 0; i < console_assets_count; i++)
			if (strcmp(url, console_assets[i].path) == 0)
				return METRIC_ROUTE_CONSOLE;
		break;
	default:
		break;
	}
	return METRIC_ROUTE_OTHER;
}

struct http_routes api_routes(struct api *a)
{
	return (struct http_routes){on_request, on_completed, a, route_of, NULL};
}
