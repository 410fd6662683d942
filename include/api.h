/* api.h - the routes of the private listener (--api-listen): the JSON query
 * API of SPEC.md and the support console.
 *   GET /v1/recipients/{address}/events?limit&before&after&type
 *   GET /v1/recipients/{address}
 *   GET /v1/events?limit&before&type&domain
 *   GET /v1/health?dimension&limit       (deliverability, health.h)
 *   GET /v1/health/series?dimension&name&from&to&step
 *   GET /v1/health/domains?window&by&limit
 *   POST /v1/suppressions/check          (a JSON array of addresses)
 *   GET /v1/suppressions?format&since&cursor&limit   (streamed, or a page)
 *   DELETE /v1/recipients/{address}      (erasure)
 *   GET /v1/status                       (the SNS wiring, status.h)
 *   GET /, /app.js, /app.css   (the console, embedded)
 * With a token configured, /v1/ needs "Authorization: Bearer TOKEN"; the
 * console's files do not (they hold no data, and the page asks for the
 * token when the API answers 401). */
#ifndef API_H
#define API_H

#include "http.h"
#include "store.h"

struct status;

struct api {
	struct store *store;
	const char *token; /* NULL: open */
	bool message_index; /* --message-index: else GET /v1/messages/{id} is 404 */
	unsigned health_min_volume; /* --health-min-volume */
	unsigned retention_days;    /* --retention-days: health reads no older day */
	struct status *status; /* GET /v1/status; NULL: 404 */
};

/* The routes for a; a must outlive the listener. */
struct http_routes api_routes(struct api *a);

#endif
