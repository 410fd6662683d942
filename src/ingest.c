#include "ingest.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"

/* Per-request state of a POST /sns while its body arrives. */
struct upload {
	struct buf body;
	bool too_large;
	bool answered;
};

/* One line per delivery.  outcome says what becomes of the message:
 * stored / duplicate / confirmed / noted (200), rejected (4xx: SNS drops
 * it) or failed (5xx: SNS delivers it again later). */
static void log_result(struct MHD_Connection *conn, const struct webhook_result *res,
		       unsigned code)
{
	enum log_level lv = code >= 500 ? LOG_ERROR : code >= 400 ? LOG_WARN : LOG_INFO;
	const char *rid = http_request_id(conn);
	if (res->err == MT_E_OK)
		LOG(lv, "sns", "request_id=%s message_id=%s outcome=%s status=%u type=%s topic=%s events=%zu added=%zu raw=%s cert_fetched=%s",
		    rid, res->message_id, res->status, code, res->type ? res->type : "-",
		    res->topic, res->events, res->added, res->raw ? "yes" : "no",
		    res->cert_fetched ? "yes" : "no");
	else
		LOG(lv, "sns", "request_id=%s message_id=%s outcome=%s status=%u error=\"%s\" type=%s topic=%s detail=\"%s\"",
		    rid, res->message_id, code >= 500 ? "failed" : "rejected", code,
		    mt_err_str(res->err), res->type ? res->type : "-", res->topic,
		    res->detail);
	/* Recipient addresses are personal data: debug level only. */
	if (res->recipients[0])
		LOG(LOG_DEBUG, "sns recipients", "request_id=%s message_id=%s recipients=\"%s\"",
		    rid, res->message_id, res->recipients);
	if (res->err == MT_E_OK && res->type &&
	    strcmp(res->type, "SubscriptionConfirmation") == 0 &&
	    strcmp(res->status, "noted") == 0)
		LOG(LOG_WARN, "subscription not confirmed (--auto-confirm no): visit the URL to confirm",
		    "request_id=%s topic=%s subscribe_url=%s", rid, res->topic, res->detail);
}

static void count_result(const struct webhook_result *res)
{
	metrics_count_result(res->err);
	if (res->err != MT_E_OK)
		return;
	if (res->raw)
		metrics_add(METRIC_raw_stored_total, res->added ? 1 : 0);
	if (strcmp(res->status, "duplicate") == 0)
		metrics_add(METRIC_events_duplicate_total, 1);
	if (strcmp(res->status, "confirmed") == 0)
		metrics_add(METRIC_subscriptions_confirmed_total, 1);
}

static enum MHD_Result finish_sns(struct webhook *w, struct MHD_Connection *conn,
				  struct upload *up)
{
	struct webhook_result res;
	if (up->too_large) {
		memset(&res, 0, sizeof(res));
		res.err = MT_E_TOO_LARGE;
	} else {
		const char *th = MHD_lookup_connection_value(
			conn, MHD_HEADER_KIND, "x-amz-sns-message-type");
		webhook_handle(w, up->body.p ? up->body.p : "", up->body.len, th, &res);
	}
	unsigned code = mt_err_http_status(res.err);
	count_result(&res);
	log_result(conn, &res, code);
	return http_send_status(conn, code, res.status,
				res.err == MT_E_OK ? NULL : mt_err_str(res.err));
}

/* Appends a chunk of the body, or notes that it is too large: what was
 * kept is freed and the rest is read and discarded, so memory stays within
 * --max-body.  libmicrohttpd cannot answer in the middle of a body, so the
 * 413 goes out when the body ends (the request read deadline of http.h
 * bounds how long that may take). */
static bool take_chunk(struct upload *up, const char *data, size_t n, size_t max)
{
	if (up->too_large)
		return true;
	switch (buf_append(&up->body, data, n, max)) {
	case BUF_OK:
		return true;
	case BUF_TOO_LARGE:
		up->too_large = true;
		buf_free(&up->body);
		return true;
	case BUF_NOMEM:
		break;
	}
	return false;
}

static enum MHD_Result on_probe(struct webhook *w, struct MHD_Connection *conn,
				const char *url, bool is_get)
{
	bool known = strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0 ||
		     strcmp(url, "/metrics") == 0;
	if (!known)
		return http_send_status(conn, 404, NULL, "not found");
	if (!is_get)
		return http_send_status(conn, 405, NULL, "method not allowed");
	if (strcmp(url, "/healthz") == 0)
		return http_send_status(conn, 200, "ok", NULL);
	if (strcmp(url, "/readyz") == 0) {
		char err[256];
		if (store_ping(w->store, err, sizeof(err)) == MT_E_OK)
			return http_send_status(conn, 200, "ready", NULL);
		LOG(LOG_WARN, "not ready", "error=\"%s\"", err);
		return http_send_status(conn, 503, NULL, mt_err_str(MT_E_REDIS));
	}
	size_t len;
	char *text = metrics_render(&len);
	if (!text)
		return MHD_NO;
	return http_send_owned(conn, 200, "text/plain; version=0.0.4", text, len);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **req_cls)
{
	struct webhook *w = cls;
	bool is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

	if (strcmp(url, "/sns") != 0 || strcmp(method, "POST") != 0) {
		if (http_defer_first_call(req_cls, upload_data_size))
			return MHD_YES;
	}
	if (strcmp(url, "/sns") != 0)
		return on_probe(w, conn, url, is_get);
	if (strcmp(method, "POST") != 0)
		return http_send_status(conn, 405, NULL, "method not allowed");

	struct upload *up = *req_cls;
	if (!up) {
		up = calloc(1, sizeof(*up));
		if (!up)
			return MHD_NO;
		*req_cls = up;
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (!cl || strtoull(cl, NULL, 10) <= w->cfg->max_body)
			return MHD_YES;
		/* Answer at once; the body is never read. */
		up->too_large = true;
	} else if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		return take_chunk(up, upload_data, n, w->cfg->max_body) ? MHD_YES : MHD_NO;
	}
	if (up->answered)
		return MHD_YES;
	up->answered = true;
	return finish_sns(w, conn, up);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct upload *up = *req_cls;
	if (up && *req_cls != &http_deferred) {
		buf_free(&up->body);
		free(up);
		*req_cls = NULL;
	}
}

static enum metric_route route_of(const char *url)
{
	static const struct {
		const char *path;
		enum metric_route route;
	} known[] = {
		{"/sns", METRIC_ROUTE_SNS},
		{"/healthz", METRIC_ROUTE_HEALTHZ},
		{"/readyz", METRIC_ROUTE_READYZ},
		{"/metrics", METRIC_ROUTE_METRICS},
	};
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(url, known[i].path) == 0)
			return known[i].route;
	return METRIC_ROUTE_OTHER;
}

struct http_routes ingest_routes(struct webhook *w)
{
	return (struct http_routes){on_request, on_completed, w, route_of};
}
