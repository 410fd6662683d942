#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clientaddr.h"
#include "log.h"
#include "tls.h"

/* How often the request read deadline is checked; while the listener
 * is busy (3/4 of its connections open), more often, so that the short
 * deadlines and evictions free slots for the backlog at once. */
#define HTTP_WATCHDOG_PERIOD_MS 500
#define HTTP_WATCHDOG_BUSY_PERIOD_MS 50

struct conn_state;

/* An event loop (routes.flush set): its own daemon on the shared listen
 * socket, run by its own thread. */
struct http_loop {
	struct http_server *s;
	struct MHD_Daemon *daemon;
	int epfd;   /* waits on the daemon's epoll descriptor and on wakefd */
	int wakefd; /* eventfd: http_loop_wake */
	pthread_t thread;
	bool running;
	bool quiesced; /* by its thread, after http_quiesce asked */
	/* Its share of --max-connections (the shares add up to it), and
	 * how many it has (its thread only).  At its share, libmicrohttpd
	 * takes the listen socket out of the loop's epoll set, so further
	 * connections wait in the backlog (or go to another loop). */
	unsigned max_conns;
	unsigned nconns;
};

struct http_server {
	struct MHD_Daemon *daemon; /* a thread per connection; else loops */
	struct http_loop loops[HTTP_LOOP_THREADS_MAX];
	unsigned nloops;
	int listen_fd; /* the loops' shared listen socket */
	atomic_bool quiesce;       /* asked of the loops */
	atomic_uint loops_quiesced;
	atomic_bool stop_loops;
	struct http_routes routes; /* what http.c wraps: see on_request */
	MHD_socket quiesced_fd;    /* the listen socket after http_quiesce */
	bool tls;                  /* serves tls.c's certificate */
	struct http_limits limits;
	/* Open connections, for the watchdog that enforces
	 * HTTP_REQUEST_READ_TIMEOUT_S (see watchdog()). */
	pthread_mutex_t conns_lock;
	pthread_cond_t wake;
	struct conn_state *conns;
	size_t nconns;
	bool stopping;
	bool watchdog_running;
	pthread_t watchdog;
};

/* Per connection (libmicrohttpd's socket context): the request being
 * served on it.  HTTP/1.1 requests on one connection come one after the
 * other, so one slot per connection is enough. */
struct conn_state {
	bool active; /* between a request's first call and its completion */
	enum metric_route route;
	int64_t start_ns;
	char request_id[LOG_REQUEST_ID_LEN];
	unsigned calls; /* handler calls for the current request */
	/* Request read deadline: reading is true from the connection's
	 * opening, or its previous request's completion (since_ms), until
	 * the current request has been read whole. */
	atomic_bool reading;
	atomic_llong since_ms;
	/* The current request's header has been read whole (its first
	 * handler call), until its completion. */
	atomic_bool header_done;
	/* The server's list, under conns_lock. */
	struct conn_state *prev, *next;
	MHD_socket fd;
	struct sockaddr_storage addr;
	bool listed;
	bool cut; /* shut down by the watchdog */
};

/* Requests between their first call and their completion, all listeners. */
static atomic_long in_flight;
/* Set by http_quiesce: answers from now on close their connection. */
static atomic_bool closing;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ms(void)
{
	return now_ns() / 1000000;
}

static struct conn_state *conn_state(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

/* Whether cs is over the per-address limit, counted over all of the
 * listener's threads (libmicrohttpd counts per daemon, that is per loop),
 * an IPv6 client per /64 (clientaddr.h; libmicrohttpd's own per-daemon
 * count is per whole address, so never the tighter one).
 * The total limit needs no check here: each loop's daemon stops accepting
 * at its share.  Called with conns_lock held. */
static bool over_address_limit(const struct http_server *s, const struct conn_state *cs)
{
	if (!s->limits.max_per_address)
		return false;
	size_t same = 0;
	for (const struct conn_state *o = s->conns; o; o = o->next)
		same += !o->cut && clientaddr_same(&o->addr, &cs->addr);
	return same > s->limits.max_per_address;
}

static _Thread_local struct http_loop *this_loop;

/* A loop's count of its connections: at its share, libmicrohttpd has
 * taken the listen socket out of its epoll set and puts it back only in
 * its next run, which a connection closing does not bring about by
 * itself; so the loop is woken for it, and a connection waiting in the
 * backlog is taken at once.  Returns whether the loop is now at its
 * share. */
static bool loop_count_conn(bool opened)
{
	struct http_loop *lp = this_loop;
	if (!lp)
		return false; /* thread-per-connection listener, or stopping */
	if (opened)
		return ++lp->nconns >= lp->max_conns;
	if (lp->nconns-- == lp->max_conns)
		http_loop_wake(lp);
	return false;
}

/* libmicrohttpd reports a connection closed before it closes its socket,
 * so a socket in the list is always open (see watchdog()).  With several
 * loops each daemon only knows its own connections, so the limits of
 * http.h are enforced here, over all of them: a connection over a limit is
 * shut down at once (its thread sees the end of the stream and closes
 * it). */
static void on_connection(void *cls, struct MHD_Connection *conn,
			  void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct http_server *s = cls;
	struct conn_state *cs = *socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		const union MHD_ConnectionInfo *ai =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		bool loop_full = loop_count_conn(true);
		*socket_context = cs = calloc(1, sizeof(*cs));
		if (!cs || !ci)
			return; /* not watched: the idle timeout still applies */
		cs->fd = ci->connect_fd;
		if (ai && ai->client_addr)
			memcpy(&cs->addr, ai->client_addr,
			       ai->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
								      : sizeof(struct sockaddr_in));
		atomic_store(&cs->reading, true);
		atomic_store(&cs->since_ms, now_ms());
		pthread_mutex_lock(&s->conns_lock);
		cs->next = s->conns;
		if (s->conns)
			s->conns->prev = cs;
		s->conns = cs;
		s->nconns++;
		cs->listed = true;
		bool over = over_address_limit(s, cs);
		if (over) {
			shutdown(cs->fd, SHUT_RDWR);
			cs->cut = true;
		}
		size_t open = s->nconns;
		pthread_mutex_unlock(&s->conns_lock);
		unsigned long left_out;
		if (over) {
			metrics_add(METRIC_http_connections_refused_total, 1);
			if (log_throttle("connection limit", &left_out))
				LOG(LOG_WARN, "connection refused: connection limit reached",
				    "limit=address open=%zu per_address_max=%u max=%u left_out=%lu",
				    open - 1, s->limits.max_per_address,
				    s->limits.max_connections, left_out);
		} else if (loop_full && open >= s->limits.max_connections &&
			   log_throttle("connections wait", &left_out)) {
			LOG(LOG_WARN, "connection limit reached: new connections wait",
			    "limit=listener open=%zu max=%u left_out=%lu", open,
			    s->limits.max_connections, left_out);
		}
		return;
	}
	loop_count_conn(false);
	if (cs && cs->listed) {
		pthread_mutex_lock(&s->conns_lock);
		if (cs->prev)
			cs->prev->next = cs->next;
		else
			s->conns = cs->next;
		if (cs->next)
			cs->next->prev = cs->prev;
		s->nconns--;
		pthread_mutex_unlock(&s->conns_lock);
	}
	free(cs);
	*socket_context = NULL;
}

/* How many connections wait in the listen socket's accept queue (Linux
 * gives it as tcpi_unacked of a listening socket); 0 if unknown. */
static unsigned backlog_waiting(int listen_fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	if (listen_fd < 0 || getsockopt(listen_fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
		return 0;
	return ti.tcpi_unacked;
}

static int by_since(const void *a, const void *b)
{
	long long x = atomic_load(&(*(struct conn_state *const *)a)->since_ms);
	long long y = atomic_load(&(*(struct conn_state *const *)b)->since_ms);
	return (x > y) - (x < y);
}

/* While connections wait in the backlog of a busy listener, makes room
 * for them: closes up to `waiting` connections that have not sent a whole
 * request header and have had HTTP_EVICT_MIN_AGE_MS to do so, the oldest
 * first.  Returns how many.  Called with conns_lock held. */
static unsigned long evict_headerless(struct http_server *s, unsigned waiting, int64_t now)
{
	size_t n = 0;
	for (const struct conn_state *cs = s->conns; cs; cs = cs->next)
		n += !cs->cut && atomic_load(&cs->reading) && !atomic_load(&cs->header_done) &&
		     now - atomic_load(&cs->since_ms) >= HTTP_EVICT_MIN_AGE_MS;
	if (!n)
		return 0;
	struct conn_state **v = malloc(n * sizeof(struct conn_state *)); /* owned here */
	if (!v)
		return 0; /* the read deadlines still apply */
	size_t k = 0;
	for (struct conn_state *cs = s->conns; cs && k < n; cs = cs->next)
		if (!cs->cut && atomic_load(&cs->reading) && !atomic_load(&cs->header_done) &&
		    now - atomic_load(&cs->since_ms) >= HTTP_EVICT_MIN_AGE_MS)
			v[k++] = cs;
	if (k > waiting)
		qsort(v, k, sizeof(struct conn_state *), by_since);
	unsigned long evicted = 0;
	for (size_t i = 0; i < k && evicted < waiting; i++) {
		shutdown(v[i]->fd, SHUT_RDWR);
		v[i]->cut = true;
		evicted++;
	}
	free(v);
	return evicted;
}

/* Closes the connections that have taken too long to deliver a request:
 * shutting the socket down makes libmicrohttpd's thread for it see the
 * end of the stream and close it.  While the listener is busy, a
 * connection gets HTTP_REQUEST_READ_TIMEOUT_BUSY_S for its request and
 * HTTP_HEADER_READ_TIMEOUT_BUSY_MS for its header, and connections
 * waiting in the backlog evict the oldest without a header
 * (evict_headerless): idle connections cannot hold the slots while the
 * backlog queues behind them. */
static void *watchdog(void *arg)
{
	struct http_server *s = arg;
	bool busy = false;
	pthread_mutex_lock(&s->conns_lock);
	while (!s->stopping) {
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += (busy ? HTTP_WATCHDOG_BUSY_PERIOD_MS : HTTP_WATCHDOG_PERIOD_MS) *
				 1000000L;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&s->wake, &s->conns_lock, &until);
		if (s->stopping)
			break;
		busy = s->nconns * 4 >= (size_t)s->limits.max_connections * 3;
		int64_t limit_ms = (busy ? HTTP_REQUEST_READ_TIMEOUT_BUSY_S
					 : HTTP_REQUEST_READ_TIMEOUT_S) * 1000;
		int64_t header_ms = busy ? HTTP_HEADER_READ_TIMEOUT_BUSY_MS : limit_ms;
		int64_t now = now_ms();
		unsigned long cut = 0;
		for (struct conn_state *cs = s->conns; cs; cs = cs->next) {
			if (cs->cut || !atomic_load(&cs->reading))
				continue;
			int64_t age = now - atomic_load(&cs->since_ms);
			if (age < limit_ms &&
			    (age < header_ms || atomic_load(&cs->header_done)))
				continue;
			shutdown(cs->fd, SHUT_RDWR);
			cs->cut = true;
			cut++;
		}
		unsigned waiting = busy ? backlog_waiting(s->listen_fd) : 0;
		unsigned long evicted = waiting ? evict_headerless(s, waiting, now) : 0;
		size_t open = s->nconns;
		pthread_mutex_unlock(&s->conns_lock);
		unsigned long left_out;
		if (cut + evicted) {
			metrics_add(METRIC_http_request_read_timeouts_total, cut + evicted);
			if (log_throttle("read timeout", &left_out))
				LOG(LOG_WARN, "request not read in time: connections closed",
				    "closed=%lu evicted=%lu waiting=%u open=%zu deadline_ms=%lld "
				    "header_deadline_ms=%lld left_out=%lu",
				    cut, evicted, waiting, open, (long long)limit_ms,
				    (long long)header_ms, left_out);
		}
		pthread_mutex_lock(&s->conns_lock);
	}
	pthread_mutex_unlock(&s->conns_lock);
	return NULL;
}

/* Every request passes here first: it is timed, given a request id and
 * counted in flight (for http_drain) before the listener's own handler
 * runs. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **req_cls)
{
	struct http_server *s = cls;
	struct conn_state *cs = conn_state(conn);
	if (cs && !cs->active) {
		cs->active = true;
		atomic_store(&cs->header_done, true);
		cs->start_ns = now_ns();
		cs->route = s->routes.route_of ? s->routes.route_of(url) : METRIC_ROUTE_OTHER;
		log_request_id(cs->request_id);
		cs->calls = 0;
		atomic_fetch_add(&in_flight, 1);
		metrics_gauge_add(METRIC_GAUGE_http_requests_in_flight, 1);
	}
	/* The last call (no data, not the first) has the whole request:
	 * from here on it is being answered, not read. */
	if (cs && ++cs->calls > 1 && *upload_data_size == 0)
		atomic_store(&cs->reading, false);
	return s->routes.on_request(s->routes.cls, conn, url, method, version,
				    upload_data, upload_data_size, req_cls);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct http_server *s = cls;
	struct conn_state *cs = conn_state(conn);
	if (s->routes.on_completed)
		s->routes.on_completed(s->routes.cls, conn, req_cls, toe);
	if (cs) { /* the next request's read deadline starts now */
		atomic_store(&cs->since_ms, now_ms());
		atomic_store(&cs->header_done, false);
		atomic_store(&cs->reading, true);
	}
	if (cs && cs->active) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
		metrics_count_request(cs->route, ci ? ci->http_status : 0,
				      now_ns() - cs->start_ns);
		cs->active = false;
		metrics_gauge_add(METRIC_GAUGE_http_requests_in_flight, -1);
		atomic_fetch_sub(&in_flight, 1);
	}
}

const char *http_request_id(struct MHD_Connection *conn)
{
	struct conn_state *cs = conn_state(conn);
	return cs && cs->active ? cs->request_id : "-";
}

char http_deferred;

bool http_defer_first_call(void **req_cls, size_t *upload_data_size)
{
	if (*req_cls != &http_deferred) {
		*req_cls = &http_deferred;
		return true;
	}
	if (*upload_data_size) {
		*upload_data_size = 0;
		return true;
	}
	return false;
}

static enum MHD_Result queue(struct MHD_Connection *conn, unsigned status,
			     struct MHD_Response *r, const char *content_type)
{
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", content_type);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	if (status == 405)
		MHD_add_response_header(r, "Allow", "GET, HEAD, POST");
	if (status == 401)
		MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
	if (atomic_load(&closing))
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

enum MHD_Result http_send_response(struct MHD_Connection *conn, unsigned status,
				   struct MHD_Response *r, const char *content_type)
{
	return queue(conn, status, r, content_type);
}

enum MHD_Result http_send_json(struct MHD_Connection *conn, unsigned status,
			       struct json_object *body)
{
	if (!body)
		return MHD_NO;
	size_t len;
	const char *s = json_object_to_json_string_length(
		body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, (void *)s, MHD_RESPMEM_MUST_COPY);
	json_object_put(body);
	return queue(conn, status, r, "application/json");
}

/* The answers of nearly every delivery, made once with their headers and
 * queued for any number of connections (libmicrohttpd counts their
 * users): saves building a JSON object and a response per request. */
static const char *const common_status[] = {"stored", "duplicate"};
static struct MHD_Response *common_answer[2];
static pthread_once_t common_once = PTHREAD_ONCE_INIT;

static void make_common_answers(void)
{
	for (size_t i = 0; i < 2; i++) {
		char body[64];
		int n = snprintf(body, sizeof(body), "{\"status\":\"%s\"}", common_status[i]);
		struct MHD_Response *r = MHD_create_response_from_buffer(
			(size_t)n, body, MHD_RESPMEM_MUST_COPY);
		if (!r)
			continue;
		MHD_add_response_header(r, "Content-Type", "application/json");
		MHD_add_response_header(r, "Cache-Control", "no-store");
		MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
		common_answer[i] = r;
	}
}

enum MHD_Result http_send_status(struct MHD_Connection *conn, unsigned code,
				 const char *status, const char *error)
{
	if (code == 200 && !error && !atomic_load(&closing)) {
		pthread_once(&common_once, make_common_answers);
		for (size_t i = 0; i < 2; i++)
			if (common_answer[i] && strcmp(status, common_status[i]) == 0)
				return MHD_queue_response(conn, code, common_answer[i]);
	}
	struct json_object *o = json_object_new_object();
	if (!o)
		return MHD_NO;
	json_object_object_add(o, "status", json_object_new_string(error ? "error" : status));
	if (error)
		json_object_object_add(o, "error", json_object_new_string(error));
	return http_send_json(conn, code, o);
}

enum MHD_Result http_send_owned(struct MHD_Connection *conn, unsigned code,
				const char *content_type, char *data, size_t len)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
	if (!r)
		free(data);
	return queue(conn, code, r, content_type);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* %-decoding of the path and of query values (the library has already
 * turned '+' into ' ' in query values).  Unlike the library's own decoder,
 * %00 does not become a NUL that would silently cut the string short: it
 * becomes 0x7f, which no address, number or event type accepts. */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
	char *o = s;
	for (const char *p = s; *p; p++) {
		int hi, lo;
		if (p[0] == '%' && (hi = hexval(p[1])) >= 0 && (lo = hexval(p[2])) >= 0) {
			char c = (char)(hi * 16 + lo);
			*o++ = c ? c : 0x7f;
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return (size_t)(o - s);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

/* The library's messages, one line per kind per LOG_THROTTLE_INTERVAL_S
 * (an attack makes thousands).  Two of them report limits of http.h
 * being hit, and are counted: the library has no other way to tell. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	for (char *p = msg; *p; p++)
		if (*p == '"')
			*p = '\'';
	if (strstr(msg, "reached connection limit"))
		metrics_add(METRIC_http_connections_refused_total, 1);
	if (strstr(msg, "response code is 431"))
		metrics_add(METRIC_http_headers_too_large_total, 1);
	unsigned long left_out;
	if (log_throttle(fmt, &left_out))
		LOG(LOG_WARN, "libmicrohttpd", "detail=\"%s\" left_out=%lu", msg, left_out);
}

struct http_loop *http_this_loop(void)
{
	return this_loop;
}

void http_loop_wake(struct http_loop *lp)
{
	uint64_t one = 1;
	/* Fails only when the counter is full: then it is readable anyway. */
	if (write(lp->wakefd, &one, sizeof(one)) < 0)
		return;
}

/* Until the daemon has work, another thread wakes the loop, or the
 * daemon's own timeout (idle connections) or HTTP_LOOP_WAIT_MS pass.  A
 * resumed connection does not wake a daemon polled from outside: whoever
 * resumes one calls http_loop_wake. */
static void loop_wait(struct http_loop *lp)
{
	MHD_UNSIGNED_LONG_LONG to;
	int wait = HTTP_LOOP_WAIT_MS;
	if (MHD_get_timeout(lp->daemon, &to) == MHD_YES && to < (MHD_UNSIGNED_LONG_LONG)wait)
		wait = (int)to;
	struct epoll_event ev[2];
	int n = epoll_wait(lp->epfd, ev, 2, wait);
	for (int i = 0; i < n; i++) {
		uint64_t v;
		if (ev[i].data.fd == lp->wakefd && read(lp->wakefd, &v, sizeof(v)) < 0)
			continue; /* nothing to read: another wake-up took it */
	}
}

/* One event loop: every request a wake-up brought, then the routes'
 * flush (see http.h). */
static void *loop_main(void *arg)
{
	struct http_loop *lp = arg;
	struct http_server *s = lp->s;
	this_loop = lp;
	while (!atomic_load(&s->stop_loops)) {
		if (atomic_load(&s->quiesce) && !lp->quiesced) {
			MHD_quiesce_daemon(lp->daemon);
			lp->quiesced = true;
			atomic_fetch_add(&s->loops_quiesced, 1);
		}
		loop_wait(lp);
		log_hold();
		/* Resumed connections are served too: taken back at the start
		 * of a run. */
		MHD_run(lp->daemon);
		if (s->routes.flush(s->routes.cls))
			http_loop_wake(lp); /* its next run takes them back */
		log_release();
	}
	return NULL;
}

/* The loop's own epoll set: the daemon's epoll descriptor and wakefd. */
static bool loop_setup(struct http_loop *lp)
{
	const union MHD_DaemonInfo *di =
		MHD_get_daemon_info(lp->daemon, MHD_DAEMON_INFO_EPOLL_FD);
	lp->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	lp->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!di || lp->wakefd < 0 || lp->epfd < 0)
		return false;
	struct epoll_event d = {.events = EPOLLIN, .data.fd = di->epoll_fd};
	struct epoll_event w = {.events = EPOLLIN, .data.fd = lp->wakefd};
	return epoll_ctl(lp->epfd, EPOLL_CTL_ADD, di->epoll_fd, &d) == 0 &&
	       epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->wakefd, &w) == 0;
}

/* The loops' shared listen socket.  -1 with errbuf set on failure. */
static int listen_on(const struct sockaddr_storage *ss, char *errbuf, size_t errsz)
{
	socklen_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						  : sizeof(struct sockaddr_in);
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int on = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
	    (ss->ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) != 0) ||
	    bind(fd, (const struct sockaddr *)ss, len) != 0 ||
	    listen(fd, HTTP_LISTEN_BACKLOG) != 0) {
		snprintf(errbuf, errsz, "%s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* How many loops: one per core the process may run on. */
static unsigned loop_count(void)
{
	cpu_set_t set;
	int n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
	return n < 1 ? 1 : n > HTTP_LOOP_THREADS_MAX ? HTTP_LOOP_THREADS_MAX : (unsigned)n;
}

struct http_server *http_start(const struct config_listen *l, const char *tls_cert,
			       const char *tls_key, const struct http_routes *routes,
			       const struct http_limits *limits, char *errbuf, size_t errsz)
{
	struct http_server *s = calloc(1, sizeof(*s));
	struct sockaddr_storage ss;
	/* Thread per connection: poll() rather than select() so descriptors
	 * above 1024 work.  Loops: epoll, run by http.c's threads. */
	unsigned int flags = MHD_USE_ERROR_LOG | MHD_USE_ITC; /* ITC: quiesce */

	if (!s) {
		snprintf(errbuf, errsz, "out of memory");
		return NULL;
	}
	s->routes = *routes;
	s->limits = *limits;
	if (s->limits.max_connections == 0)
		s->limits.max_connections = 1;
	s->quiesced_fd = MHD_INVALID_SOCKET;
	s->listen_fd = -1;
	flags |= routes->flush ? MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME
			       : MHD_USE_INTERNAL_POLLING_THREAD |
					 MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
	pthread_mutex_init(&s->conns_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->wake, &ca);
	pthread_condattr_destroy(&ca);
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, l->host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)l->port);
	} else {
		inet_pton(AF_INET6, l->host, &sin6->sin6_addr);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)l->port);
		flags |= MHD_USE_IPv6;
	}
	if (tls_cert && tls_key) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			snprintf(errbuf, errsz, "libmicrohttpd was built without TLS");
			goto fail;
		}
		if (!tls_load(tls_cert, tls_key, errbuf, errsz))
			goto fail;
		s->tls = true;
		flags |= MHD_USE_TLS;
	}
	unsigned ndaemons = 1;
	if (routes->flush) {
		char why[128];
		s->listen_fd = listen_on(&ss, why, sizeof(why));
		if (s->listen_fd < 0) {
			snprintf(errbuf, errsz, "cannot listen on %s:%u: %s", l->host, l->port, why);
			goto fail;
		}
		ndaemons = loop_count();
		if (ndaemons > s->limits.max_connections)
			ndaemons = s->limits.max_connections; /* every loop gets a share */
	}
	for (unsigned i = 0; i < ndaemons; i++) {
		/* The loops' shares of the total add up to it exactly. */
		unsigned share = s->limits.max_connections / ndaemons +
				 (i < s->limits.max_connections % ndaemons);
		struct MHD_Daemon *d = MHD_start_daemon(
			flags, 0, NULL, NULL, on_request, s,
			MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
			MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
			/* Per daemon; on_connection applies them to all. */
			MHD_OPTION_CONNECTION_LIMIT, share,
			MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->limits.max_per_address,
			MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONNECTION_MEMORY,
			MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTP_IDLE_TIMEOUT_S,
			MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
			MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
			s->listen_fd >= 0 ? MHD_OPTION_LISTEN_SOCKET : MHD_OPTION_SOCK_ADDR,
			s->listen_fd >= 0 ? (intptr_t)s->listen_fd : (intptr_t)&ss,
			s->tls ? MHD_OPTION_HTTPS_PRIORITIES : MHD_OPTION_END, HTTP_TLS_PRIORITIES,
			/* Asked at each handshake, so SIGHUP can swap it (tls.h). */
			MHD_OPTION_HTTPS_CERT_CALLBACK, tls_retrieve,
			MHD_OPTION_END);
		if (!d) {
			snprintf(errbuf, errsz, "cannot listen on %s:%u (address in use, or bad TLS files?)",
				 l->host, l->port);
			goto fail;
		}
		if (!routes->flush) {
			s->daemon = d;
			break;
		}
		struct http_loop *lp = &s->loops[s->nloops++];
		lp->s = s;
		lp->daemon = d;
		lp->max_conns = share;
		if (!loop_setup(lp)) {
			snprintf(errbuf, errsz, "cannot set up an event loop: %s", strerror(errno));
			goto fail;
		}
		if (pthread_create(&lp->thread, NULL, loop_main, lp) != 0) {
			snprintf(errbuf, errsz, "cannot start a thread");
			goto fail;
		}
		pthread_setname_np(lp->thread, "http-loop");
		lp->running = true;
	}
	if (pthread_create(&s->watchdog, NULL, watchdog, s) != 0) {
		snprintf(errbuf, errsz, "cannot start a thread");
		goto fail;
	}
	s->watchdog_running = true;
	return s;
fail:
	http_stop(s);
	return NULL;
}

unsigned http_port(const struct http_server *s)
{
	if (s->listen_fd >= 0) {
		union {
			struct sockaddr sa;
			struct sockaddr_in in;
			struct sockaddr_in6 in6;
		} a;
		memset(&a, 0, sizeof(a));
		socklen_t len = sizeof(a);
		if (getsockname(s->listen_fd, &a.sa, &len) != 0)
			return 0;
		return ntohs(a.sa.sa_family == AF_INET6 ? a.in6.sin6_port : a.in.sin_port);
	}
	const union MHD_DaemonInfo *info =
		MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
	return info ? info->port : 0;
}

void http_address(const struct http_server *s, const struct config_listen *l,
		  char *buf, size_t bufsz)
{
	bool v6 = strchr(l->host, ':') != NULL;
	snprintf(buf, bufsz, "%s%s%s:%u", v6 ? "[" : "", l->host, v6 ? "]" : "",
		 http_port(s));
}

void http_quiesce(struct http_server *s)
{
	atomic_store(&closing, true);
	if (!s)
		return;
	if (s->nloops) {
		/* Each loop quiesces its own daemon (not thread-safe to do from
		 * here), then the shared socket stops listening. */
		if (atomic_exchange(&s->quiesce, true))
			return;
		for (unsigned i = 0; i < s->nloops; i++)
			http_loop_wake(&s->loops[i]);
		int64_t until = now_ms() + 1000;
		while (atomic_load(&s->loops_quiesced) < s->nloops && now_ms() < until) {
			struct timespec pause = {0, 1000000};
			nanosleep(&pause, NULL);
		}
		shutdown(s->listen_fd, SHUT_RDWR);
		return;
	}
	if (!s->daemon || s->quiesced_fd != MHD_INVALID_SOCKET)
		return;
	s->quiesced_fd = MHD_quiesce_daemon(s->daemon);
	/* The socket may not be closed before MHD_stop_daemon, but shutting
	 * it down stops listening now: new connections are refused (the load
	 * balancer tries another copy) instead of waiting in the backlog. */
	if (s->quiesced_fd != MHD_INVALID_SOCKET)
		shutdown(s->quiesced_fd, SHUT_RDWR);
}

long http_drain(int64_t timeout_ms)
{
	int64_t deadline = now_ns() + timeout_ms * 1000000;
	long n;
	while ((n = atomic_load(&in_flight)) > 0 && now_ns() < deadline) {
		struct timespec pause = {0, 10 * 1000000};
		nanosleep(&pause, NULL);
	}
	return n;
}

void http_stop(struct http_server *s)
{
	if (!s)
		return;
	atomic_store(&s->stop_loops, true);
	for (unsigned i = 0; i < s->nloops; i++)
		http_loop_wake(&s->loops[i]);
	for (unsigned i = 0; i < s->nloops; i++) {
		struct http_loop *lp = &s->loops[i];
		if (lp->running)
			pthread_join(lp->thread, NULL);
		/* Quiesced first, a daemon leaves the shared socket alone. */
		if (!lp->quiesced)
			MHD_quiesce_daemon(lp->daemon);
		MHD_stop_daemon(lp->daemon);
		if (lp->epfd >= 0)
			close(lp->epfd);
		if (lp->wakefd >= 0)
			close(lp->wakefd);
	}
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->watchdog_running) {
		pthread_mutex_lock(&s->conns_lock);
		s->stopping = true;
		pthread_cond_signal(&s->wake);
		pthread_mutex_unlock(&s->conns_lock);
		pthread_join(s->watchdog, NULL);
	}
	if (s->daemon)
		MHD_stop_daemon(s->daemon);
	if (s->quiesced_fd != MHD_INVALID_SOCKET)
		close(s->quiesced_fd);
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->conns_lock);
	if (s->tls)
		tls_free_all();
	free(s);
}
