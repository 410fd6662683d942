/* http.h - the webhook listener (libmicrohttpd): POST /sns, GET /healthz,
 * GET /readyz, GET /metrics.  Maps results to status codes and small JSON
 * bodies, and logs one line per request. */
#ifndef HTTP_H
#define HTTP_H

#include <stddef.h>

#include "config.h"
#include "webhook.h"

/* Most connections served at once; further ones wait in the backlog. */
#define HTTP_CONNECTIONS_MAX 256
/* Idle connections are closed after this many seconds. */
#define HTTP_IDLE_TIMEOUT_S 30

struct http_server;

/* Starts listening on cfg->listen (TLS when cfg->tls_cert is set).  Returns
 * NULL with a reason in errbuf on failure; stop with http_stop(). */
struct http_server *http_start(const struct config *cfg, struct webhook *w,
			       char *errbuf, size_t errsz);

/* The port actually bound (useful with port 0). */
unsigned http_port(const struct http_server *s);

/* Stops accepting, waits for requests in flight, frees; accepts NULL. */
void http_stop(struct http_server *s);

#endif
