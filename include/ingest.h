/* ingest.h - the routes of the public listener: POST /sns (one SNS
 * delivery through webhook_begin, then webhook_commit in a writer
 * thread), GET /healthz, /readyz and /metrics.
 * Maps results to status codes and logs one line per delivery; also the
 * spool drainer's storing step and its log lines. */
#ifndef INGEST_H
#define INGEST_H

#include "http.h"
#include "webhook.h"

/* Threads that write verified notifications to Redis for the listener's
 * loops (http.h), so that a loop goes on serving while Redis answers. */
#define INGEST_WRITERS 2

struct ingest;

/* Starts the writers for w (which must outlive them).  NULL when no
 * thread can be started. */
struct ingest *ingest_new(struct webhook *w);

/* The routes; ing must outlive the listener. */
struct http_routes ingest_routes(struct ingest *ing);

/* Lets the writers finish what they were given, and stops them: from then
 * on the loops write on their own threads.  Before http_stop: a connection
 * still waiting for a writer must be resumed first. */
void ingest_stop(struct ingest *ing);

/* After http_stop; accepts NULL. */
void ingest_free(struct ingest *ing);

/* The spool drainer's hooks: store through w, log what happens. */
struct spool_hooks ingest_spool_hooks(struct webhook *w);

#endif
