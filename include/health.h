/* health.h - the deliverability answers of the query API, read from the
 * counters that ingest keeps (stats.h's layout; README "Deliverability
 * (health)"):
 *   GET /v1/health          the names of a dimension seen in the last 30
 *                           UTC days, each with its 24h, 7d and 30d
 *                           windows: counts, rates and status;
 *   GET /v1/health/series   one name's counts and rates per hour or day
 *                           over a range, zero buckets included;
 *   GET /v1/health/domains  the recipient domains ranked by bounces or
 *                           complaints over a window.
 * Redis is asked only for the fields an answer needs (HMGET of the names'
 * fields: daily fields for whole days, hourly ones for the 24h window and
 * an hourly series), in two round trips at most, each one per node in a
 * Cluster: the days' name lists (ZRANGE of their :names), then the
 * fields.  A series knows its name and needs only the second.  Days whose
 * keys have expired (stats_expire_at) are not read.
 */
#ifndef HEALTH_H
#define HEALTH_H

#include <stdint.h>

#include <json-c/json.h>

#include "apireq.h"
#include "mt_error.h"
#include "store.h"

/* Days the overview reads: its longest window. */
#define HEALTH_DAYS 30
/* A day's :names is read up to its cap (stats_names_max) plus
 * STATS_OTHER: what the writer admits; more (keys not written by
 * mailtrail) are not read. */

struct health_ctx {
	struct store *store;
	unsigned min_volume;     /* --health-min-volume */
	unsigned retention_days; /* --retention-days: older days have expired */
};

/* The answer of each route for h (apireq_parse_health_param, then
 * apireq_health_finish at now_ms, both true), at now_ms: *out is a new
 * JSON object (caller puts it), or for the series (up to 2,000 points) the
 * JSON text, *len bytes, malloc'd (caller frees).  MT_E_REDIS or
 * MT_E_NOMEM with errbuf saying why; *out is NULL then. */
enum mt_err health_overview(const struct health_ctx *hc, const struct apireq_health *h,
			    int64_t now_ms, struct json_object **out, char *errbuf,
			    size_t errsz);
enum mt_err health_series(const struct health_ctx *hc, const struct apireq_health *h,
			  int64_t now_ms, char **out, size_t *len, char *errbuf, size_t errsz);
enum mt_err health_domains(const struct health_ctx *hc, const struct apireq_health *h,
			   int64_t now_ms, struct json_object **out, char *errbuf,
			   size_t errsz);

#endif
