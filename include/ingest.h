/* ingest.h - the routes of the public listener: POST /sns (one SNS
 * delivery through webhook_handle), GET /healthz, /readyz and /metrics.
 * Maps results to status codes and logs one line per delivery; also the
 * spool drainer's storing step and its log lines. */
#ifndef INGEST_H
#define INGEST_H

#include "http.h"
#include "webhook.h"

/* The routes for w; w must outlive the listener. */
struct http_routes ingest_routes(struct webhook *w);

/* The spool drainer's hooks: store through w, log what happens. */
struct spool_hooks ingest_spool_hooks(struct webhook *w);

#endif
