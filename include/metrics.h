/* metrics.h - process counters, served as Prometheus text at GET /metrics.
 *
 * Every name starts with mailtrail_.  Counting is one relaxed atomic add
 * (no lock, no allocation), so it is safe and cheap from any thread.
 *
 * A plain counter is one line in METRIC_MAP and one call:
 *   metrics_add(METRIC_spool_appends_total, 1);
 * A gauge (a value that goes up and down) is one line in METRIC_GAUGE_MAP:
 *   metrics_gauge_set(METRIC_GAUGE_spool_bytes, n);
 * The labelled families (requests by route and status, the duration
 * histogram, signature failures by reason, events by type, certificate
 * cache hits by tier, deliveries by result) have their own calls below.
 */
#ifndef METRICS_H
#define METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mt_error.h"

/* X(name, help): counters without labels. */
#define METRIC_MAP(X)                                                          \
	X(events_duplicate_total, "deliveries that added nothing (redelivery)") \
	X(raw_stored_total, "notifications kept under their topic")            \
	X(implausible_time_total, "notifications kept under their topic only: their event time is more than a day after their SNS Timestamp or their arrival") \
	X(subscriptions_confirmed_total, "subscriptions confirmed")            \
	X(cert_fetches_total, "signing certificate downloads attempted")       \
	X(cert_fetch_failures_total, "signing certificate downloads that failed") \
	X(cert_fetch_rate_limited_total, "signing certificate downloads refused by the rate limit (answered 503)") \
	X(http_connections_refused_total, "connections closed at once: over the per-address limit") \
	X(http_headers_too_large_total, "requests answered 431: headers over the connection memory") \
	X(http_request_read_timeouts_total, "connections closed for not delivering a whole request in time") \
	X(redis_errors_total, "Redis operations that failed (connect, I/O or error reply)") \
	X(message_refs_dropped_total, "message index references not added: the mail's set held STORE_MESSAGE_REFS_MAX already (first come, first kept)") \
	X(stats_write_failures_total, "events stored but not counted in the deliverability counters (Redis Cluster: their round trip failed)") \
	X(spool_spooled_total, "verified messages synced to the spool (Redis unavailable)") \
	X(spool_drained_total, "spooled messages stored in Redis by the drainer") \
	X(spool_quarantined_total, "spooled messages Redis refuses for good, moved to the spool's quarantine file")

enum metric {
#define METRIC_ENUM(name, help) METRIC_##name,
	METRIC_MAP(METRIC_ENUM)
#undef METRIC_ENUM
	METRIC__COUNT
};

/* X(name, help): gauges, set to the current value. */
#define METRIC_GAUGE_MAP(X)                                                    \
	X(http_requests_in_flight, "HTTP requests being handled now")           \
	X(spool_bytes, "bytes in the spool's journal files")                   \
	X(spool_records, "spooled messages not yet stored in Redis")           \
	X(spool_quarantine_bytes, "bytes in the spool's quarantine file")

enum metric_gauge {
#define METRIC_GAUGE_ENUM(name, help) METRIC_GAUGE_##name,
	METRIC_GAUGE_MAP(METRIC_GAUGE_ENUM)
#undef METRIC_GAUGE_ENUM
	METRIC_GAUGE__COUNT
};

/* X(name, label value): the routes of both listeners, as the "route"
 * label writes them (paths with a placeholder, never a real address). */
#define METRIC_ROUTE_MAP(X)                                                    \
	X(SNS, "/sns")                                                         \
	X(HEALTHZ, "/healthz")                                                 \
	X(READYZ, "/readyz")                                                   \
	X(METRICS, "/metrics")                                                 \
	X(API_EVENTS, "/v1/recipients/{address}/events")                       \
	X(API_SUMMARY, "/v1/recipients/{address}")                             \
	X(API_RECENT, "/v1/events")                                            \
	X(API_MESSAGE, "/v1/messages/{sesMessageId}")                          \
	X(API_SUPPRESSIONS, "/v1/suppressions")                                \
	X(API_SUPPRESSIONS_CHECK, "/v1/suppressions/check")                    \
	X(API_STATUS, "/v1/status")                                            \
	X(API_HEALTH, "/v1/health")                                            \
	X(API_HEALTH_SERIES, "/v1/health/series")                              \
	X(API_HEALTH_DOMAINS, "/v1/health/domains")                            \
	X(CONSOLE, "console")                                                  \
	X(OTHER, "other")

enum metric_route {
#define METRIC_ROUTE_ENUM(name, label) METRIC_ROUTE_##name,
	METRIC_ROUTE_MAP(METRIC_ROUTE_ENUM)
#undef METRIC_ROUTE_ENUM
	METRIC_ROUTE__COUNT
};

void metrics_add(enum metric m, unsigned long n);
void metrics_gauge_add(enum metric_gauge g, long delta);
void metrics_gauge_set(enum metric_gauge g, long value);

/* One answered HTTP request: its route, status and how long it took from
 * its headers to its answer. */
void metrics_count_request(enum metric_route route, unsigned status,
			   int64_t duration_ns);

/* Counts an answered webhook delivery by the error that decided it; a
 * signature-related error is also counted as a signature failure. */
void metrics_count_result(enum mt_err err);

/* An event newly stored, by SES type (NULL or unknown: "other"). */
void metrics_count_event(const char *type);

/* mailtrail_identity_events_total{identity,type}: an event newly stored,
 * by sending identity (ses.h's, a valid name or STATS_OTHER) and count
 * type (stats.h's field text; NULL: not counted).  The label values are
 * bounded: the first METRICS_IDENTITIES_MAX identities this process sees
 * have their own, the rest count as "(other)"; the type label is the
 * count type without '/' and spaces (stats_type_labels). */
#define METRICS_IDENTITIES_MAX 100
void metrics_count_identity_event(const char *identity, const char *count_type);

/* A signing certificate found without a download: in memory or on disk. */
void metrics_count_cert_hit(bool from_disk);

/* The exposition text; malloc'd, caller frees.  NULL on allocation failure. */
char *metrics_render(size_t *len);

#endif
