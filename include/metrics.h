/* metrics.h - process counters, served as Prometheus text at GET /metrics. */
#ifndef METRICS_H
#define METRICS_H

#include <stddef.h>

#include "mt_error.h"

/* X(name, help) */
#define METRIC_MAP(X)                                                          \
	X(events_stored_total, "events newly stored in Redis")                 \
	X(events_duplicate_total, "deliveries that added nothing (redelivery)") \
	X(raw_stored_total, "notifications kept under their topic")            \
	X(subscriptions_confirmed_total, "subscriptions confirmed")            \
	X(cert_fetches_total, "signing certificates fetched over the network") \
	X(cert_fetch_failures_total, "failed signing certificate fetches")     \
	X(http_requests_total, "HTTP requests answered")

enum metric {
#define METRIC_ENUM(name, help) METRIC_##name,
	METRIC_MAP(METRIC_ENUM)
#undef METRIC_ENUM
	METRIC__COUNT
};

void metrics_add(enum metric m, unsigned long n);
/* Counts an answered webhook request by the error that decided it. */
void metrics_count_result(enum mt_err err);
/* The exposition text; malloc'd, caller frees.  NULL on allocation failure. */
char *metrics_render(size_t *len);

#endif
