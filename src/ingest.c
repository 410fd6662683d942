#include "ingest.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "sns.h"
#include "status.h"
#include "url.h"

/* Per-request state of a POST /sns: its body arrives, then it may wait
 * with its connection suspended for a fetcher (a certificate not in
 * memory, a subscription to confirm), and (verified) for a writer to
 * write it with the others that arrived together, then it is answered. */
struct upload {
	struct buf body;
	bool too_large;
	bool answered;
	enum { UP_READING, UP_FETCHING, UP_WAITING, UP_DONE } state;
	struct MHD_Connection *conn;
	struct http_loop *loop; /* that suspended conn */
	bool readyz;            /* a GET /readyz: the writer pings Redis */
	bool ready;             /* its answer */
	struct upload *next_waiting;
	struct webhook_result res;
	struct webhook_pending pending;
};

/* The uploads waiting for this loop thread's next flush, newest first:
 * for the writers, and for the fetchers. */
static _Thread_local struct upload *waiting;
static _Thread_local struct upload *fetch_waiting;

/* The writers: threads that write the notifications the loops verified,
 * several loops' at a time, and resume their connections, while the loops
 * go on serving others (a slow Redis never holds up /healthz). */
struct ingest {
	struct webhook *w;
	pthread_mutex_t lock;
	pthread_cond_t work;
	struct upload *queue; /* flushed, not yet taken by a writer */
	bool stopping;        /* set by ingest_stop: flushes write inline */
	pthread_t threads[INGEST_WRITERS];
	unsigned nthreads;
	/* The fetchers: threads that do what may block on the disk or the
	 * network (certcache_get, confirm_subscription) for the loops, whose
	 * connections wait suspended meanwhile. */
	pthread_cond_t fetch_work;
	struct upload *fetch_head, *fetch_tail; /* handed over, oldest first */
	unsigned fetch_jobs;  /* suspended for a fetcher: queued or under way */
	bool fetch_stopping;  /* set by ingest_stop: no more fetches */
	pthread_t fetchers[INGEST_FETCHERS];
	unsigned nfetchers;
	struct status *status; /* NULL: deliveries are not noted */
};

/* Whether to log a refusal.  Those by a limit of README "Limits" come by
 * the thousand under attack: one line per kind per LOG_THROTTLE_INTERVAL_S
 * (the metrics count every one), ending in " left_out=N" (into extra). */
static bool should_log_refusal(enum mt_err err, char *extra, size_t extrasz)
{
	unsigned long n;
	extra[0] = '\0';
	if (err != MT_E_TOO_LARGE && err != MT_E_TOO_DEEP && err != MT_E_CERT_RATE &&
	    err != MT_E_FETCH_BUSY)
		return true;
	if (!log_throttle(mt_err_str(err), &n))
		return false;
	snprintf(extra, extrasz, " left_out=%lu", n);
	return true;
}

/* One line per delivery.  outcome says what becomes of the message:
 * stored / duplicate / confirmed / noted (200), spooled (200: Redis was
 * unavailable, the spool has it), implausible_time (200: kept under its
 * topic only, see SES_TIME_AHEAD_MAX_MS), rejected (4xx: SNS drops it) or failed
 * (5xx: SNS delivers it again later). */
static void log_result(struct MHD_Connection *conn, const struct webhook_result *res,
		       unsigned code)
{
	enum log_level lv = code >= 500 ? LOG_ERROR : code >= 400 ? LOG_WARN : LOG_INFO;
	const char *rid = http_request_id(conn);
	char left_out[40];
	if (res->err == MT_E_OK && res->spooled)
		LOG(LOG_WARN, "sns", "request_id=%s message_id=%s outcome=spooled status=%u type=%s topic=%s cert_fetched=%s redis_error=\"%s\"",
		    rid, res->message_id, code, res->type ? res->type : "-", res->topic,
		    res->cert_fetched ? "yes" : "no", res->detail);
	else if (res->err == MT_E_OK)
		LOG(lv, "sns", "request_id=%s message_id=%s outcome=%s status=%u type=%s topic=%s events=%zu added=%zu raw=%s cert_fetched=%s",
		    rid, res->message_id, res->time_implausible ? "implausible_time" : res->status,
		    code, res->type ? res->type : "-",
		    res->topic, res->events, res->added, res->raw ? "yes" : "no",
		    res->cert_fetched ? "yes" : "no");
	else if (should_log_refusal(res->err, left_out, sizeof(left_out)))
		LOG(lv, "sns", "request_id=%s message_id=%s outcome=%s status=%u error=\"%s\" type=%s topic=%s detail=\"%s\"%s",
		    rid, res->message_id, code >= 500 ? "failed" : "rejected", code,
		    mt_err_str(res->err), res->type ? res->type : "-", res->topic,
		    res->detail, left_out);
	/* Stored, but a Redis Cluster's counters round trip failed (store.h,
	 * stats_failed): the delivery succeeded, the counts miss them. */
	if (res->err == MT_E_OK && res->stats_failed > 0)
		LOG(LOG_WARN, "events stored but not counted in the deliverability counters",
		    "request_id=%s message_id=%s events=%zu redis_error=\"%s\"", rid,
		    res->message_id, res->stats_failed, res->detail);
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

/* A message stored in Redis, live or drained from the spool (its events
 * are counted by the store). */
static void count_stored(const struct webhook_result *res)
{
	if (res->raw)
		metrics_add(METRIC_raw_stored_total, res->added ? 1 : 0);
	if (strcmp(res->status, "duplicate") == 0)
		metrics_add(METRIC_events_duplicate_total, 1);
}

static void count_result(const struct webhook_result *res)
{
	metrics_count_result(res->err);
	if (res->err != MT_E_OK)
		return;
	if (res->spooled) {
		metrics_add(METRIC_spool_spooled_total, 1);
		return;
	}
	count_stored(res);
	if (strcmp(res->status, "confirmed") == 0)
		metrics_add(METRIC_subscriptions_confirmed_total, 1);
}

/* Suspends conn until a writer has done up's part, at the loop's next
 * flush (see on_request). */
static enum MHD_Result wait_for_writer(struct upload *up, struct MHD_Connection *conn)
{
	up->state = UP_WAITING;
	up->conn = conn;
	up->loop = http_this_loop();
	up->next_waiting = waiting;
	waiting = up;
	MHD_suspend_connection(conn);
	return MHD_YES;
}

/* Whether a header's value is "true" (SNS writes it so). */
static bool header_true(struct MHD_Connection *conn, const char *name)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
	return v && strcasecmp(v, "true") == 0;
}

/* The authority of the body's SigningCertURL, for a certificate that could
 * not be fetched: the body is parsed again (that delivery failed, so
 * nothing kept it), and only a URL that url_check lets through is read. */
static bool cert_host_of(const struct ingest *ing, const struct upload *up, char *out,
			 size_t outsz)
{
	struct sns_message m = {0};
	bool ok = false;
	if (up->body.p && sns_envelope_parse(up->body.p, up->body.len, &m) == MT_E_OK) {
		const struct sns_str *cu = &m.f[SNS_F_SIGNING_CERT_URL];
		ok = url_check(cu->p, cu->len, &ing->w->cfg->cert_host_re, URL_SIGNING_CERT) ==
			     MT_E_OK &&
		     url_authority(cu->p, out, outsz);
	}
	sns_message_free(&m);
	return ok;
}

/* Notes the delivery for GET /v1/status (status.h): in memory only. */
static void note_status(struct ingest *ing, struct MHD_Connection *conn,
			const struct upload *up)
{
	if (!ing->status)
		return;
	const struct webhook_result *res = &up->res;
	bool raw = header_true(conn, "x-amz-sns-rawdelivery");
	/* A raw delivery names its topic only in this header. */
	const char *topic = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							"x-amz-sns-topic-arn");
	char host[STATUS_HOST_MAX + 1];
	bool has_host = res->err == MT_E_CERT_FETCH && cert_host_of(ing, up, host, sizeof(host));
	status_record(ing->status, res, raw, topic, has_host ? host : NULL);
}

static enum MHD_Result answer_sns(struct ingest *ing, struct MHD_Connection *conn,
				  const struct upload *up)
{
	const struct webhook_result *res = &up->res;
	unsigned code = mt_err_http_status(res->err);
	note_status(ing, conn, up);
	count_result(res);
	log_result(conn, res, code);
	return http_send_status(conn, code, res->status,
				res->err == MT_E_OK ? NULL : mt_err_str(res->err));
}

/* Suspends conn until a fetcher has done up's slow part (handed over at
 * the loop's flush, so never resumed before it is suspended), or, with
 * INGEST_FETCH_QUEUE_MAX already waiting, answers 503 at once. */
static enum MHD_Result wait_for_fetcher(struct ingest *ing, struct upload *up,
					struct MHD_Connection *conn)
{
	pthread_mutex_lock(&ing->lock);
	bool room = !ing->fetch_stopping && ing->fetch_jobs < INGEST_FETCH_QUEUE_MAX;
	if (room)
		ing->fetch_jobs++;
	pthread_mutex_unlock(&ing->lock);
	if (!room) {
		webhook_cancel(&up->pending, &up->res, MT_E_FETCH_BUSY);
		snprintf(up->res.detail, sizeof(up->res.detail),
			 "%d deliveries already wait for a certificate or a confirmation",
			 INGEST_FETCH_QUEUE_MAX);
		return answer_sns(ing, conn, up);
	}
	up->state = UP_FETCHING;
	up->conn = conn;
	up->loop = http_this_loop();
	up->next_waiting = fetch_waiting;
	fetch_waiting = up;
	MHD_suspend_connection(conn);
	return MHD_YES;
}

/* The whole body is in: answers now, or waits with the connection
 * suspended for the loop's flush to hand it to a writer (a notification
 * to write) or a fetcher (a certificate not in memory, a confirmation). */
static enum MHD_Result finish_sns(struct ingest *ing, struct MHD_Connection *conn,
				  struct upload *up)
{
	if (up->too_large) {
		memset(&up->res, 0, sizeof(up->res));
		up->res.err = MT_E_TOO_LARGE;
		return answer_sns(ing, conn, up);
	}
	const char *th = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						     "x-amz-sns-message-type");
	switch (webhook_begin(ing->w, up->body.p ? up->body.p : "", up->body.len, th,
			      &up->res, &up->pending)) {
	case WEBHOOK_WRITE:
		return wait_for_writer(up, conn);
	case WEBHOOK_FETCH:
		return wait_for_fetcher(ing, up, conn);
	case WEBHOOK_DONE:
		break;
	}
	return answer_sns(ing, conn, up);
}

/* Writes a list of waiting uploads (newest first), WEBHOOK_COMMIT_MAX at
 * a time, and resumes their connections to be answered (see on_request).
 * An upload is the loop's again once resumed: not touched after. */
static void write_uploads(struct webhook *w, struct upload *list)
{
	while (list) {
		struct webhook_pending *batch[WEBHOOK_COMMIT_MAX];
		struct MHD_Connection *conns[WEBHOOK_COMMIT_MAX];
		struct http_loop *loops[WEBHOOK_COMMIT_MAX] = {0};
		struct upload *ups[WEBHOOK_COMMIT_MAX];
		size_t n = 0, nbatch = 0, nloops = 0;
		for (; list && n < WEBHOOK_COMMIT_MAX; list = list->next_waiting, n++) {
			ups[n] = list;
			conns[n] = list->conn;
			if (list->readyz)
				list->ready = store_ping(w->store, list->res.detail,
							 sizeof(list->res.detail)) == MT_E_OK;
			else
				batch[nbatch++] = &list->pending;
			size_t k = 0;
			while (k < nloops && loops[k] != list->loop)
				k++;
			if (k == nloops)
				loops[nloops++] = list->loop;
		}
		if (nbatch)
			webhook_commit(w, batch, nbatch);
		for (size_t i = 0; i < n; i++)
			ups[i]->state = UP_DONE;
		for (size_t i = 0; i < n; i++)
			MHD_resume_connection(conns[i]);
		for (size_t k = 0; k < nloops; k++)
			if (loops[k])
				http_loop_wake(loops[k]);
	}
}

static void *writer_main(void *arg)
{
	struct ingest *ing = arg;
	pthread_mutex_lock(&ing->lock);
	for (;;) {
		while (!ing->queue && !ing->stopping)
			pthread_cond_wait(&ing->work, &ing->lock);
		if (!ing->queue)
			break;
		struct upload *list = ing->queue;
		ing->queue = NULL;
		pthread_mutex_unlock(&ing->lock);
		write_uploads(ing->w, list);
		pthread_mutex_lock(&ing->lock);
	}
	pthread_mutex_unlock(&ing->lock);
	return NULL;
}

/* Answers an upload that waited for a fetcher with err: resumes it (its
 * loop is woken by the caller). */
static void refuse_fetch(struct upload *up, enum mt_err err)
{
	webhook_cancel(&up->pending, &up->res, err);
	up->state = UP_DONE;
	MHD_resume_connection(up->conn);
}

static void *fetcher_main(void *arg)
{
	struct ingest *ing = arg;
	pthread_mutex_lock(&ing->lock);
	for (;;) {
		while (!ing->fetch_head && !ing->fetch_stopping)
			pthread_cond_wait(&ing->fetch_work, &ing->lock);
		struct upload *up = ing->fetch_head;
		if (!up)
			break;
		ing->fetch_head = up->next_waiting;
		if (!ing->fetch_head)
			ing->fetch_tail = NULL;
		bool stopping = ing->fetch_stopping;
		pthread_mutex_unlock(&ing->lock);

		struct MHD_Connection *conn = up->conn;
		struct http_loop *loop = up->loop;
		if (stopping) { /* past the drain: SNS delivers it again later */
			refuse_fetch(up, MT_E_FETCH_BUSY);
			http_loop_wake(loop);
		} else if (webhook_fetch(ing->w, &up->res, &up->pending) == WEBHOOK_WRITE) {
			/* To the writers, as a loop's flush would (they resume it). */
			pthread_mutex_lock(&ing->lock);
			up->state = UP_WAITING;
			up->next_waiting = ing->queue;
			ing->queue = up;
			pthread_cond_signal(&ing->work);
			pthread_mutex_unlock(&ing->lock);
		} else {
			up->state = UP_DONE;
			MHD_resume_connection(conn); /* up is the loop's again */
			http_loop_wake(loop);
		}
		pthread_mutex_lock(&ing->lock);
		ing->fetch_jobs--;
	}
	pthread_mutex_unlock(&ing->lock);
	return NULL;
}

/* After a loop's requests: hands the uploads that wait for a fetcher to
 * the fetchers (or, stopping, answers them 503). */
static bool flush_fetches(struct ingest *ing)
{
	struct upload *list = fetch_waiting;
	if (!list)
		return false;
	fetch_waiting = NULL;
	/* Oldest first: the list is newest first. */
	struct upload *rev = NULL;
	while (list) {
		struct upload *next = list->next_waiting;
		list->next_waiting = rev;
		rev = list;
		list = next;
	}
	pthread_mutex_lock(&ing->lock);
	if (ing->fetch_stopping) {
		unsigned n = 0;
		for (struct upload *up = rev, *next; up; up = next, n++) {
			next = up->next_waiting;
			refuse_fetch(up, MT_E_FETCH_BUSY);
		}
		ing->fetch_jobs -= n;
		pthread_mutex_unlock(&ing->lock);
		return true;
	}
	struct upload *last = rev;
	while (last->next_waiting)
		last = last->next_waiting;
	if (ing->fetch_tail)
		ing->fetch_tail->next_waiting = rev;
	else
		ing->fetch_head = rev;
	ing->fetch_tail = last;
	pthread_cond_broadcast(&ing->fetch_work);
	pthread_mutex_unlock(&ing->lock);
	return false;
}

/* After a loop's requests: hands the notifications waiting on this thread
 * to the writers (or, stopping, writes them here), and the uploads that
 * need a fetch to the fetchers. */
static bool flush(void *cls)
{
	struct ingest *ing = cls;
	bool resumed = flush_fetches(ing);
	struct upload *list = waiting;
	if (!list)
		return resumed;
	waiting = NULL;
	pthread_mutex_lock(&ing->lock);
	if (ing->stopping) {
		pthread_mutex_unlock(&ing->lock);
		write_uploads(ing->w, list);
		return true;
	}
	struct upload *last = list;
	while (last->next_waiting)
		last = last->next_waiting;
	last->next_waiting = ing->queue;
	ing->queue = list;
	pthread_cond_signal(&ing->work);
	pthread_mutex_unlock(&ing->lock);
	return resumed;
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

/* {"records":..,"bytes":..,"max_bytes":..,"stalled":..}, or NULL without a
 * spool.  Caller puts it. */
static struct json_object *spool_state(struct webhook *w)
{
	struct spool_stats st;
	if (!w->spool)
		return NULL;
	spool_stats(w->spool, &st);
	struct json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	json_object_object_add(o, "records", json_object_new_uint64(st.records));
	json_object_object_add(o, "bytes", json_object_new_uint64(st.bytes));
	json_object_object_add(o, "max_bytes", json_object_new_uint64(st.max_bytes));
	json_object_object_add(o, "stalled", json_object_new_boolean(st.stalled));
	return o;
}

/* 200 only while Redis answers (a load balancer then sends traffic); the
 * spool's state is in the body either way.  A writer has pinged Redis
 * (ready, err), so that a stuck Redis never holds up a loop. */
static enum MHD_Result answer_readyz(struct webhook *w, struct MHD_Connection *conn,
				     bool ready, const char *err)
{
	struct json_object *o = json_object_new_object();
	if (!o)
		return MHD_NO;
	json_object_object_add(o, "status", json_object_new_string(ready ? "ready" : "error"));
	if (!ready) {
		LOG(LOG_WARN, "not ready", "error=\"%s\"", err);
		json_object_object_add(o, "error", json_object_new_string(mt_err_str(MT_E_REDIS)));
	}
	struct json_object *sp = spool_state(w);
	if (sp)
		json_object_object_add(o, "spool", sp);
	return http_send_json(conn, ready ? 200 : 503, o);
}

static void update_spool_gauges(struct webhook *w)
{
	struct spool_stats st;
	if (!w->spool)
		return;
	spool_stats(w->spool, &st);
	metrics_gauge_set(METRIC_GAUGE_spool_bytes, (long)st.bytes);
	metrics_gauge_set(METRIC_GAUGE_spool_records, (long)st.records);
	metrics_gauge_set(METRIC_GAUGE_spool_quarantine_bytes, (long)st.quarantine_bytes);
}

/* GET /readyz: once read, waits with its connection suspended for a
 * writer to ping Redis (see write_uploads), then is answered. */
static enum MHD_Result on_readyz(struct webhook *w, struct MHD_Connection *conn,
				 size_t *upload_data_size, void **req_cls)
{
	struct upload *up = *req_cls;
	if (!up) { /* first call: answering now would not read a body */
		up = calloc(1, sizeof(*up));
		if (!up)
			return MHD_NO;
		up->readyz = true;
		*req_cls = up;
		return MHD_YES;
	}
	if (*upload_data_size) { /* a body is discarded */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (up->state == UP_DONE)
		return answer_readyz(w, conn, up->ready, up->res.detail);
	if (up->state == UP_WAITING)
		return MHD_YES;
	return wait_for_writer(up, conn);
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
	update_spool_gauges(w);
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
	struct ingest *ing = cls;
	struct webhook *w = ing->w;
	bool is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

	if (strcmp(url, "/readyz") == 0 && is_get)
		return on_readyz(w, conn, upload_data_size, req_cls);
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
	if (up->state == UP_DONE) /* resumed after the flush */
		return answer_sns(ing, conn, up);
	if (up->answered)
		return MHD_YES;
	up->answered = true;
	return finish_sns(ing, conn, up);
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

struct ingest *ingest_new(struct webhook *w)
{
	struct ingest *ing = calloc(1, sizeof(*ing));
	if (!ing)
		return NULL;
	ing->w = w;
	pthread_mutex_init(&ing->lock, NULL);
	pthread_cond_init(&ing->work, NULL);
	pthread_cond_init(&ing->fetch_work, NULL);
	for (; ing->nthreads < INGEST_WRITERS; ing->nthreads++) {
		pthread_t *t = &ing->threads[ing->nthreads];
		if (pthread_create(t, NULL, writer_main, ing) != 0)
			break;
		pthread_setname_np(*t, "writer");
	}
	for (; ing->nfetchers < INGEST_FETCHERS; ing->nfetchers++) {
		pthread_t *t = &ing->fetchers[ing->nfetchers];
		if (pthread_create(t, NULL, fetcher_main, ing) != 0)
			break;
		pthread_setname_np(*t, "fetcher");
	}
	if (ing->nthreads == 0 || ing->nfetchers == 0) {
		ingest_free(ing);
		return NULL;
	}
	return ing;
}

void ingest_set_status(struct ingest *ing, struct status *st)
{
	ing->status = st;
}

struct http_routes ingest_routes(struct ingest *ing)
{
	return (struct http_routes){on_request, on_completed, ing, route_of, flush};
}

void ingest_stop(struct ingest *ing)
{
	if (!ing)
		return;
	/* Fetchers first: what they finish may still go to the writers. */
	pthread_mutex_lock(&ing->lock);
	ing->fetch_stopping = true;
	pthread_cond_broadcast(&ing->fetch_work);
	pthread_mutex_unlock(&ing->lock);
	for (unsigned i = 0; i < ing->nfetchers; i++)
		pthread_join(ing->fetchers[i], NULL);
	ing->nfetchers = 0;
	pthread_mutex_lock(&ing->lock);
	ing->stopping = true;
	pthread_cond_broadcast(&ing->work);
	pthread_mutex_unlock(&ing->lock);
	for (unsigned i = 0; i < ing->nthreads; i++)
		pthread_join(ing->threads[i], NULL);
	ing->nthreads = 0;
}

void ingest_free(struct ingest *ing)
{
	if (!ing)
		return;
	ingest_stop(ing);
	pthread_cond_destroy(&ing->fetch_work);
	pthread_cond_destroy(&ing->work);
	pthread_mutex_destroy(&ing->lock);
	free(ing);
}

/* The drainer's storing step: the record was verified before it was
 * spooled. */
static enum mt_err drain_record(void *ctx, const char *body, size_t len,
				char *detail, size_t detsz)
{
	struct webhook *w = ctx;
	struct webhook_result res;
	webhook_store_spooled(w, body, len, &res);
	if (res.err == MT_E_REDIS_REFUSED) {
		/* Only Redis's error code: the rest of its message is no
		 * business of the log (and could one day name a key, which
		 * holds an address). */
		size_t n = strcspn(res.detail, " ");
		snprintf(detail, detsz, "%s: %.*s", mt_err_str(res.err), (int)(n < 64 ? n : 64),
			 res.detail);
	} else if (mt_err_http_status(res.err) < 500) {
		snprintf(detail, detsz, "%s", mt_err_str(res.err));
	} else {
		snprintf(detail, detsz, "%s", res.detail[0] ? res.detail : mt_err_str(res.err));
	}
	if (res.err == MT_E_OK) {
		count_stored(&res);
		metrics_add(METRIC_spool_drained_total, 1);
		LOG(LOG_INFO, "spool drained", "message_id=%s outcome=%s topic=%s events=%zu added=%zu raw=%s",
		    res.message_id, res.time_implausible ? "implausible_time" : res.status,
		    res.topic, res.events, res.added,
		    res.raw ? "yes" : "no");
	} else if (res.err == MT_E_REDIS_REFUSED || mt_err_http_status(res.err) < 500) {
		LOG(LOG_ERROR, "spool record cannot be stored: set aside",
		    "message_id=%s error=\"%s\" topic=%s", res.message_id, detail, res.topic);
	}
	return res.err;
}

static void drain_report(void *ctx, enum spool_event ev, const char *file,
			 uint64_t n, const char *detail)
{
	switch (ev) {
	case SPOOL_STALLED:
		LOG(LOG_WARN, "spool drain waiting for redis", "file=%s records=%" PRIu64 " error=\"%s\"",
		    file, n, detail);
		break;
	case SPOOL_RESUMED:
		LOG(LOG_INFO, "spool drain resumed", "file=%s records=%" PRIu64, file, n);
		break;
	case SPOOL_SKIPPED:
		LOG(LOG_WARN, "spool skipped a torn or corrupt record", "file=%s bytes=%" PRIu64 " detail=\"%s\"",
		    file, n, detail);
		break;
	case SPOOL_EMPTY:
		LOG(LOG_INFO, "spool empty", "drained=%" PRIu64, n);
		break;
	case SPOOL_QUARANTINED:
		metrics_add(METRIC_spool_quarantined_total, 1);
		LOG(LOG_WARN, "spool record moved to the quarantine",
		    "file=%s bytes=%" PRIu64 " quarantine=%s error=\"%s\"", file, n,
		    SPOOL_QUARANTINE_NAME, detail);
		break;
	}
}

struct spool_hooks ingest_spool_hooks(struct webhook *w)
{
	return (struct spool_hooks){drain_record, drain_report, w};
}
