#include "api.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "apireq.h"
#include "console.h"
#include "log.h"

#define CSP "default-src 'self'; script-src 'self'; style-src 'self'; " \
	    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; " \
	    "base-uri 'none'; form-action 'self'"

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
	store_summary_free(&sum);
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

static enum MHD_Result route(struct api *a, struct MHD_Connection *conn, const char *url)
{
	/* libmicrohttpd has already %-decoded the path. */
	char address[SES_ADDRESS_MAX + 1];
	enum apireq_route r = apireq_parse_path(url, strlen(url), address);
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
		return summary(a, conn, address);
	case APIREQ_BAD_ADDRESS:
		return bad_param(conn, "address", "not an email address");
	default:
		return http_send_status(conn, 404, NULL, "not found");
	}
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **req_cls)
{
	struct api *a = cls;
	if (http_defer_first_call(req_cls, upload_data_size))
		return MHD_YES;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return http_send_status(conn, 405, NULL, "method not allowed");
	enum MHD_Result ret = route(a, conn, url);
	/* The path holds an address: personal data, debug level only. */
	LOG(LOG_DEBUG, "api", "request_id=%s method=%s path=%s", http_request_id(conn),
	    method, url);
	return ret;
}

static enum metric_route route_of(const char *url)
{
	char address[SES_ADDRESS_MAX + 1];
	switch (apireq_parse_path(url, strlen(url), address)) {
	case APIREQ_EVENTS:
		return METRIC_ROUTE_API_RECENT;
	case APIREQ_TIMELINE:
		return METRIC_ROUTE_API_EVENTS;
	case APIREQ_SUMMARY:
		return METRIC_ROUTE_API_SUMMARY;
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
	return (struct http_routes){on_request, NULL, a, route_of, NULL};
}
