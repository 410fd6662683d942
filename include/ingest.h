/* ingest.h - the routes of the public listener: POST /sns (one SNS
 * delivery through webhook_begin on a loop, webhook_fetch in a fetcher
 * thread when it needs the disk or the network, then webhook_commit in a
 * writer thread), GET /healthz, /readyz and /metrics.
 * Maps results to status codes and logs one line per delivery; also the
 * spool drainer's storing step and its log lines. */
#ifndef INGEST_H
#define INGEST_H

#include "http.h"
#include "webhook.h"

/* Threads that write verified notifications to Redis for the listener's
 * loops (http.h), so that a loop goes on serving while Redis answers. */
#define INGEST_WRITERS 2
/* Threads that do the slow part of a delivery for the loops: reading a
 * signing certificate from --cert-cache-dir or downloading it (at most
 * FETCH_TIMEOUT_MS), and confirming a subscription.  Meanwhile the
 * request waits with its connection suspended, and its loop serves the
 * others (/healthz included).  Hosts that never answer can hold at most
 * the downloads, the threads waiting for them and the confirmations:
 * two more are always free for certificates on disk and for answering
 * the deliveries over those limits. */
#define INGEST_FETCHERS                                                        \
	(CERTCACHE_DOWNLOADS_MAX + CERTCACHE_WAITERS_MAX + WEBHOOK_CONFIRMS_MAX + 2)
/* Most deliveries waiting for a fetcher (queued or under way); more are
 * answered 503 at once (MT_E_FETCH_BUSY: SNS delivers them again). */
#define INGEST_FETCH_QUEUE_MAX 64

struct ingest;

/* Starts the writers for w (which must outlive them).  NULL when no
 * thread can be started. */
struct ingest *ingest_new(struct webhook *w);

struct status;
/* Every answered delivery is also noted in st (status.h), which must
 * outlive the listener; set before it starts. */
void ingest_set_status(struct ingest *ing, struct status *st);

/* The routes; ing must outlive the listener. */
struct http_routes ingest_routes(struct ingest *ing);

/* Lets the fetchers finish the fetch under way (deliveries still queued
 * for one are answered 503), then the writers what they were given, and
 * stops them: from then on the loops write on their own threads (and
 * answer 503 to a delivery that needs a fetch).  After http_drain, before
 * http_stop: a connection still waiting for a thread must be resumed
 * first. */
void ingest_stop(struct ingest *ing);

/* After http_stop; accepts NULL. */
void ingest_free(struct ingest *ing);

/* The spool drainer's hooks: store through w, log what happens. */
struct spool_hooks ingest_spool_hooks(struct webhook *w);

#endif
