#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

struct http_server {
	struct MHD_Daemon *daemon;
	const struct config *cfg;
	struct webhook *webhook;
	char *tls_cert, *tls_key;
};

/* Per-request state of a POST /sns while its body arrives. */
struct upload {
	char *buf;
	size_t len, cap;
	bool too_large;
};

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status,
				 struct json_object *body)
{
	size_t len;
	const char *s = json_object_to_json_string_length(
		body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, (void *)s, MHD_RESPMEM_MUST_COPY);
	json_object_put(body);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	if (status == 405)
		MHD_add_response_header(r, "Allow", "POST");
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* {"status":status} or {"status":"error","error":error}. */
static enum MHD_Result send_status(struct MHD_Connection *conn, unsigned code,
				   const char *status, const char *error)
{
	struct json_object *o = json_object_new_object();
	if (!o)
		return MHD_NO;
	json_object_object_add(o, "status", json_object_new_string(status));
	if (error)
		json_object_object_add(o, "error", json_object_new_string(error));
	return send_json(conn, code, o);
}

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned code,
				 char *text, size_t len)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
	enum MHD_Result ret = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return ret;
}

static void log_result(const struct webhook_result *res, unsigned code)
{
	enum log_level lv = code >= 500 ? LOG_ERROR : code >= 400 ? LOG_WARN : LOG_INFO;
	if (res->err == MT_E_OK)
		LOG(lv, "sns", "status=%u result=%s type=%s id=%s topic=%s events=%zu added=%zu raw=%s cert_fetched=%s",
		    code, res->status, res->type ? res->type : "-", res->message_id,
		    res->topic, res->events, res->added, res->raw ? "yes" : "no",
		    res->cert_fetched ? "yes" : "no");
	else
		LOG(lv, "sns", "status=%u error=\"%s\" type=%s id=%s topic=%s detail=\"%s\"",
		    code, mt_err_str(res->err), res->type ? res->type : "-",
		    res->message_id, res->topic, res->detail);
	if (res->err == MT_E_OK && res->status && strcmp(res->status, "noted") == 0 &&
	    res->type && strcmp(res->type, "SubscriptionConfirmation") == 0)
		LOG(LOG_WARN, "subscription not confirmed (--auto-confirm no)",
		    "topic=%s subscribe_url=%s", res->topic, res->detail);
}

static enum MHD_Result finish_sns(struct http_server *s,
				  struct MHD_Connection *conn, struct upload *up)
{
	struct webhook_result res;
	if (up->too_large) {
		memset(&res, 0, sizeof(res));
		res.err = MT_E_TOO_LARGE;
	} else {
		const char *th = MHD_lookup_connection_value(
			conn, MHD_HEADER_KIND, "x-amz-sns-message-type");
		webhook_handle(s->webhook, up->buf ? up->buf : "", up->len, th, &res);
	}
	unsigned code = mt_err_http_status(res.err);
	metrics_count_result(res.err);
	if (res.err == MT_E_OK) {
		metrics_add(res.raw ? METRIC_raw_stored_total : METRIC_events_stored_total,
			    res.raw ? (res.added ? 1 : 0) : res.added);
		if (!res.added && res.status && strcmp(res.status, "duplicate") == 0)
			metrics_add(METRIC_events_duplicate_total, 1);
		if (res.status && strcmp(res.status, "confirmed") == 0)
			metrics_add(METRIC_subscriptions_confirmed_total, 1);
	}
	if (res.cert_fetched)
		metrics_add(METRIC_cert_fetches_total, 1);
	if (res.err == MT_E_CERT_FETCH)
		metrics_add(METRIC_cert_fetch_failures_total, 1);
	log_result(&res, code);
	return res.err == MT_E_OK ? send_status(conn, code, res.status, NULL)
				  : send_status(conn, code, "error", mt_err_str(res.err));
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **req_cls)
{
	struct http_server *s = cls;
	bool is_post = strcmp(method, "POST") == 0;
	bool is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

	if (strcmp(url, "/sns") != 0) {
		metrics_add(METRIC_http_requests_total, 1);
		if (strcmp(url, "/healthz") == 0 && is_get)
			return send_status(conn, 200, "ok", NULL);
		if (strcmp(url, "/readyz") == 0 && is_get) {
			char err[256];
			if (store_ping(s->webhook->store, err, sizeof(err)) == MT_E_OK)
				return send_status(conn, 200, "ready", NULL);
			LOG(LOG_WARN, "not ready", "error=\"%s\"", err);
			return send_status(conn, 503, "error", mt_err_str(MT_E_REDIS));
		}
		if (strcmp(url, "/metrics") == 0 && is_get) {
			size_t len;
			char *text = metrics_render(&len);
			return text ? send_text(conn, 200, text, len) : MHD_NO;
		}
		if (strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0 ||
		    strcmp(url, "/metrics") == 0)
			return send_status(conn, 405, "error", "method not allowed");
		return send_status(conn, 404, "error", "not found");
	}
	if (!is_post) {
		metrics_add(METRIC_http_requests_total, 1);
		return send_status(conn, 405, "error", "method not allowed");
	}

	struct upload *up = *req_cls;
	if (!up) {
		up = calloc(1, sizeof(*up));
		if (!up)
			return MHD_NO;
		*req_cls = up;
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > s->cfg->max_body)
			up->too_large = true; /* answered once the body is drained */
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (up->too_large || n > s->cfg->max_body - up->len) {
			up->too_large = true;
			free(up->buf);
			up->buf = NULL;
			up->len = up->cap = 0;
			return MHD_YES;
		}
		if (up->len + n + 1 > up->cap) {
			size_t cap = up->cap ? up->cap : 16384;
			while (cap < up->len + n + 1)
				cap *= 2;
			char *nb = realloc(up->buf, cap);
			if (!nb)
				return MHD_NO;
			up->buf = nb;
			up->cap = cap;
		}
		memcpy(up->buf + up->len, upload_data, n);
		up->len += n;
		up->buf[up->len] = '\0';
		return MHD_YES;
	}
	metrics_add(METRIC_http_requests_total, 1);
	return finish_sns(s, conn, up);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct upload *up = *req_cls;
	if (up) {
		free(up->buf);
		free(up);
		*req_cls = NULL;
	}
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	LOG(LOG_WARN, "libmicrohttpd", "detail=\"%s\"", msg);
}

/* Reads a whole (small) file into a malloc'd NUL-terminated buffer. */
static char *read_file(const char *path, char *errbuf, size_t errsz)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0;
	if (!f) {
		snprintf(errbuf, errsz, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(1024 * 1024 + 1);
	if (buf) {
		len = fread(buf, 1, 1024 * 1024, f);
		buf[len] = '\0';
	}
	fclose(f);
	if (!buf || len == 0) {
		snprintf(errbuf, errsz, "cannot read %s", path);
		free(buf);
		return NULL;
	}
	return buf;
}

struct http_server *http_start(const struct config *cfg, struct webhook *w,
			       char *errbuf, size_t errsz)
{
	struct http_server *s = calloc(1, sizeof(*s));
	struct sockaddr_storage ss;
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD |
			     MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;

	if (!s) {
		snprintf(errbuf, errsz, "out of memory");
		return NULL;
	}
	s->cfg = cfg;
	s->webhook = w;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, cfg->listen.host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)cfg->listen.port);
	} else {
		inet_pton(AF_INET6, cfg->listen.host, &sin6->sin6_addr);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)cfg->listen.port);
		flags |= MHD_USE_IPv6;
	}
	if (cfg->tls_cert) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			snprintf(errbuf, errsz, "libmicrohttpd was built without TLS");
			goto fail;
		}
		s->tls_cert = read_file(cfg->tls_cert, errbuf, errsz);
		if (!s->tls_cert)
			goto fail;
		s->tls_key = read_file(cfg->tls_key, errbuf, errsz);
		if (!s->tls_key)
			goto fail;
		flags |= MHD_USE_TLS;
	}
	s->daemon = MHD_start_daemon(
		flags, 0, NULL, NULL, on_request, s,
		MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTP_CONNECTIONS_MAX,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTP_IDLE_TIMEOUT_S,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
		cfg->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, s->tls_cert,
		MHD_OPTION_HTTPS_MEM_KEY, s->tls_key,
		MHD_OPTION_END);
	if (!s->daemon) {
		snprintf(errbuf, errsz, "cannot listen on %s:%u (in use, or bad TLS files?)",
			 cfg->listen.host, cfg->listen.port);
		goto fail;
	}
	return s;
fail:
	http_stop(s);
	return NULL;
}

unsigned http_port(const struct http_server *s)
{
	const union MHD_DaemonInfo *info =
		MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
	return info ? info->port : 0;
}

void http_stop(struct http_server *s)
{
	if (!s)
		return;
	if (s->daemon)
		MHD_stop_daemon(s->daemon);
	free(s->tls_cert);
	free(s->tls_key);
	free(s);
}
