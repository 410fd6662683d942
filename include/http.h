/* http.h - the libmicrohttpd plumbing both listeners share: starting and
 * stopping a daemon, and answering with JSON or bytes.  The routes live in
 * ingest.c (the public SNS side) and api.c (the private query side). */
#ifndef HTTP_H
#define HTTP_H

#include <json-c/json.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "metrics.h"

/* Limits on what a client controls (README "Limits"), for all of a
 * listener's threads together. */

/* Most connections served at once per listener, unless --max-connections
 * says otherwise (this is its default, as config.c spells it).  On the
 * webhook's event loops more wait in the kernel's listen backlog, served
 * as slots free; the API listener (a thread per connection, whose
 * libmicrohttpd mode always accepts) closes them at once. */
#define HTTP_CONNECTIONS_MAX 256
/* Most connections from one client address (behind a load balancer: from
 * one balancer address), unless --max-connections-per-ip says otherwise (0:
 * no limit); more are closed at once. */
#define HTTP_CONNECTIONS_PER_ADDRESS_MAX 32
/* The webhook's TLS: 1.2 and 1.3 only, forward-secret key exchange
 * ((EC)DHE) and AEAD ciphers (AES-GCM, ChaCha20-Poly1305) only; the
 * server's order of preference.  A GnuTLS priority string. */
#define HTTP_TLS_PRIORITIES                                                 \
	"NONE:+VERS-TLS1.3:+VERS-TLS1.2:+ECDHE-ECDSA:+ECDHE-RSA:+DHE-RSA:"  \
	"+AES-256-GCM:+CHACHA20-POLY1305:+AES-128-GCM:+AEAD:+GROUP-ALL:"    \
	"+SIGN-ALL:+COMP-NULL:+CTYPE-X509:%SERVER_PRECEDENCE"

/* The limits of one listener (--max-connections, --max-connections-per-ip). */
struct http_limits {
	unsigned max_connections;  /* at least 1 */
	unsigned max_per_address;  /* 0: none */
};
/* Memory per connection for the request line, the headers and read
 * buffers: larger headers are answered 431 and the connection closed. */
#define HTTP_CONNECTION_MEMORY (32 * 1024)
/* A connection has this long, from its opening or the end of its previous
 * request, to deliver a whole request (headers and body); then it is
 * closed.  libmicrohttpd's own timeout only counts idleness, which a
 * client sending a byte now and then never reaches. */
#define HTTP_REQUEST_READ_TIMEOUT_S 10
/* The same, while at least 3/4 of HTTP_CONNECTIONS_MAX are open: slow
 * clients are cut sooner when they crowd out the others. */
#define HTTP_REQUEST_READ_TIMEOUT_BUSY_S 2
/* While the listener is busy, a connection has this long to send its
 * whole request header (request line and headers; for a kept-alive one,
 * from the end of its previous request): one that sends nothing, or too
 * little, is closed so that the connections waiting in the backlog get
 * its slot (issue 11, slowloris from many addresses). */
#define HTTP_HEADER_READ_TIMEOUT_BUSY_MS 1000
/* While the listener is busy and connections wait in its backlog, as many
 * connections as wait are closed at once among those that have had this
 * long without sending a whole request header, the oldest first. */
#define HTTP_EVICT_MIN_AGE_MS 250
/* The webhook's listen backlog: connections over --max-connections wait
 * here.  Each wait is bounded by the time it takes to evict what queues
 * before it (about HTTP_EVICT_MIN_AGE_MS per --max-connections of them),
 * so a short queue; beyond it the kernel drops the SYN and the client
 * tries again. */
#define HTTP_LISTEN_BACKLOG 4096
/* Connections idle (no byte either way) this long are closed. */
#define HTTP_IDLE_TIMEOUT_S 30
/* How long a stopping mailtrail waits for requests in flight (SIGTERM). */
#define HTTP_DRAIN_TIMEOUT_MS 10000

struct http_server;

struct http_routes {
	MHD_AccessHandlerCallback on_request;
	MHD_RequestCompletedCallback on_completed; /* may be NULL */
	void *cls;
	/* The route label of a path, for the request metrics; NULL: "other". */
	enum metric_route (*route_of)(const char *url);
	/* NULL: a thread per connection, handlers may block.  Else an event
	 * loop per core (HTTP_LOOP_THREADS_MAX at most): each runs every
	 * request that one wake-up brought, then calls flush(cls) on the same
	 * thread.  A handler may suspend its connection
	 * (MHD_suspend_connection) to answer once flush has run; flush then
	 * resumes it and returns true.  Handlers and flush should not block
	 * long: the loop's other connections wait meanwhile. */
	bool (*flush)(void *cls);
};

/* The event loop running on this thread; NULL on any other thread. */
struct http_loop *http_this_loop(void);

/* Wakes lp: after resuming one of its connections from another thread
 * (a loop polls its daemon itself, which a resume alone does not wake). */
void http_loop_wake(struct http_loop *lp);

/* Most event loops of one listener. */
#define HTTP_LOOP_THREADS_MAX 16
/* An idle loop wakes at least this often (http_quiesce and http_stop wake
 * it at once). */
#define HTTP_LOOP_WAIT_MS 1000

/* Listens on l (TLS when tls_cert and tls_key are set) within limits.
 * Returns NULL with a reason in errbuf on failure; stop with http_stop(). */
struct http_server *http_start(const struct config_listen *l, const char *tls_cert,
			       const char *tls_key, const struct http_routes *routes,
			       const struct http_limits *limits, char *errbuf, size_t errsz);

/* The port actually bound (useful with port 0). */
unsigned http_port(const struct http_server *s);

/* "host:port" (IPv6 in brackets) of the bound listener, into buf. */
void http_address(const struct http_server *s, const struct config_listen *l,
		  char *buf, size_t bufsz);

/* Stops accepting connections (new ones are refused); requests already
 * received are still served, and every answer from now on (any listener)
 * closes its connection so clients go elsewhere.  Accepts NULL. */
void http_quiesce(struct http_server *s);

/* Waits until no request is in flight on any listener, or timeout_ms.
 * Returns how many were still in flight. */
long http_drain(int64_t timeout_ms);

/* Stops (closing every connection still open: a request cut here was never
 * answered, so its sender retries), frees; accepts NULL. */
void http_stop(struct http_server *s);

/* The id of the request being served on conn (for log lines), "-" when
 * none.  Valid until the request completes. */
const char *http_request_id(struct MHD_Connection *conn);

/* libmicrohttpd closes the connection when a response is queued on the
 * first call for a request, before it has looked for a body.  Handlers
 * that answer without reading a body call this first and return MHD_YES
 * when it says so; they answer on the next call, and the connection stays
 * open for the client's next request.  Any body is discarded. */
bool http_defer_first_call(void **req_cls, size_t *upload_data_size);

/* The value http_defer_first_call leaves in *req_cls (not to be freed). */
extern char http_deferred;

/* Answers with body serialised (takes ownership of body). */
enum MHD_Result http_send_json(struct MHD_Connection *conn, unsigned status,
			       struct json_object *body);

/* {"status":status} when error is NULL, else {"status":"error","error":error}. */
enum MHD_Result http_send_status(struct MHD_Connection *conn, unsigned code,
				 const char *status, const char *error);

/* Answers with r (destroyed here; NULL: MHD_NO), adding the headers every
 * answer carries (Content-Type, no caching, nosniff, closing). */
enum MHD_Result http_send_response(struct MHD_Connection *conn, unsigned status,
				   struct MHD_Response *r, const char *content_type);

/* Answers with malloc'd bytes (freed by the library). */
enum MHD_Result http_send_owned(struct MHD_Connection *conn, unsigned code,
				const char *content_type, char *data, size_t len);

#endif
