/* apireq.h - what a request to the query API asks for: its route, the
 * recipient address in its path and its query parameters.
 *
 * Pure: no I/O, no globals, so it is unit-tested and fuzzed directly.  The
 * HTTP layer has already %-decoded the path and each query key and value;
 * api.c only asks these functions what the request means and answers it.
 *   /v1/recipients/{address}/events  limit, before, after, type
 *   /v1/recipients/{address}         no parameters
 *   /v1/events                       limit, before, type
 *   /v1/messages/{sesMessageId}      no parameters
 *   /v1/suppressions                 format, since, cursor, limit
 *   /v1/suppressions/check           no parameters; a JSON body
 *   /v1/health                       dimension, limit
 *   /v1/health/series                dimension, name, from, to, step
 *   /v1/health/domains               window, by, limit
 * Anything else under /v1/ is not found; paths outside /v1/ are the
 * console's files.
 */
#ifndef APIREQ_H
#define APIREQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "mt_error.h"
#include "ses.h"
#include "stats.h"
#include "store.h"

/* Events per page when no limit is given. */
#define APIREQ_LIMIT_DEFAULT 50

_Static_assert(STORE_MESSAGE_ID_MAX <= SES_ADDRESS_MAX,
	       "apireq_parse_path writes a message id where an address goes");

enum apireq_route {
	APIREQ_CONSOLE,     /* not under /v1/: a console file */
	APIREQ_NOT_FOUND,   /* under /v1/, but no such route */
	APIREQ_BAD_ADDRESS, /* a recipient route whose address is not one */
	APIREQ_EVENTS,      /* /v1/events */
	APIREQ_SUMMARY,     /* /v1/recipients/{address} */
	APIREQ_TIMELINE,    /* /v1/recipients/{address}/events */
	APIREQ_MESSAGE,     /* /v1/messages/{sesMessageId} */
	APIREQ_BAD_MESSAGE_ID, /* a message route whose id is not one
				* (store_message_id_valid) */
	APIREQ_SUPPRESSIONS,       /* /v1/suppressions (the export) */
	APIREQ_SUPPRESSIONS_CHECK, /* /v1/suppressions/check (bulk check) */
	APIREQ_HEALTH,             /* /v1/health */
	APIREQ_HEALTH_SERIES,      /* /v1/health/series */
	APIREQ_HEALTH_DOMAINS,     /* /v1/health/domains */
};

/* The route of path[0..len).  For APIREQ_SUMMARY and APIREQ_TIMELINE the
 * normalised address (ses_address_normalize) is written to address; for
 * APIREQ_MESSAGE the SES message id, as given (store_message_id_valid:
 * at most STORE_MESSAGE_ID_MAX bytes, which fit). */
enum apireq_route apireq_parse_path(const char *path, size_t len,
				    char address[SES_ADDRESS_MAX + 1]);

struct apireq_query {
	enum apireq_route route;
	struct store_query q; /* what the parameters ask for */
	const char *bad;      /* name of the first bad parameter, or NULL */
	const char *why;      /* why it is bad (static string) */
	char domain[STATS_NAME_MAX + 1]; /* q.domain points here when set */
};

/* Starts an empty query for route: the defaults (limit APIREQ_LIMIT_DEFAULT). */
void apireq_query_init(struct apireq_query *p, enum apireq_route route);

/* Takes one decoded parameter (value NULL when it had no '=').  Returns
 * false, with p->bad (borrowing key) and p->why set, when it is unknown for
 * the route or its value is not acceptable; once false, stays false.
 * limit: 1..STORE_PAGE_MAX; before, after: ms since the epoch (the timeline
 * only takes after); type: an SES event type name; domain (the recent feed
 * only): a recipient domain, lower-cased here, then a valid name of the
 * domain dimension (stats_name_valid) without '@'. */
bool apireq_parse_param(struct apireq_query *p, const char *key, const char *value);

/* After the last parameter: the checks between parameters (after must be
 * less than before).  Returns false with p->bad and p->why set. */
bool apireq_query_finish(struct apireq_query *p);

/* ---- deliverability: GET /v1/health, /v1/health/series, /v1/health/domains ---- */

/* Names listed by GET /v1/health when no limit is given, and at most. */
#define APIREQ_HEALTH_LIMIT_DEFAULT 100
#define APIREQ_HEALTH_LIMIT_MAX 1000
/* Domains listed by GET /v1/health/domains when no limit is given (at
 * most APIREQ_HEALTH_LIMIT_MAX). */
#define APIREQ_HEALTH_DOMAINS_DEFAULT 20
/* Most points of one series (buckets of the step that meet [from, to)). */
#define APIREQ_SERIES_POINTS_MAX 2000
/* The series' range when from is not given: to minus this. */
#define APIREQ_SERIES_RANGE_DEFAULT_MS (7 * STATS_DAY_MS)

/* The windows of the health answers: the 24 hourly buckets ending with
 * the current hour, the 7 and the 30 UTC days ending with today. */
enum apireq_window { APIREQ_WINDOW_24H, APIREQ_WINDOW_7D, APIREQ_WINDOW_30D, APIREQ_WINDOWS };

/* "24h", "7d", "30d". */
const char *apireq_window_name(enum apireq_window w);

struct apireq_health {
	enum apireq_route route; /* one of the three above */
	enum stats_dim dim;      /* dimension: default identity */
	size_t limit;            /* names (health) or domains listed */
	char name[STATS_NAME_MAX + 1]; /* the series' name ("" until given) */
	char given[STATS_NAME_MAX + 1]; /* name as given (re-read when dimension
					* comes after it) */
	bool has_from, has_to;
	int64_t from, to;        /* the series' range, ms: [from, to) */
	bool step_day;           /* step=day; default hour */
	enum apireq_window window; /* the domains' window: default 7d */
	bool by_complaints;      /* by=complaints; default bounces */
	const char *bad;         /* name of the first bad parameter, or NULL */
	const char *why;         /* why it is bad (static string) */
};

/* Starts the parameters of route (one of the APIREQ_HEALTH* routes) with
 * their defaults. */
void apireq_health_init(struct apireq_health *h, enum apireq_route route);

/* Takes one decoded parameter (value NULL when it had no '=').  Returns
 * false with h->bad (borrowing key) and h->why set when it is unknown for
 * the route or its value is not acceptable; once false, stays false.
 *   dimension (health, series): identity, configuration-set or domain;
 *   limit (health, domains): 1..APIREQ_HEALTH_LIMIT_MAX;
 *   name (series): a valid name of the dimension (stats_name_valid, or
 *     STATS_OTHER), lower-cased first unless the dimension is
 *     configuration-set (whose names keep their case);
 *   from, to (series): ms since the epoch;  step (series): hour or day;
 *   window (domains): 24h, 7d or 30d;  by (domains): bounces or complaints. */
bool apireq_parse_health_param(struct apireq_health *h, const char *key, const char *value);

/* After the last parameter, at now_ms: the defaults that depend on the
 * others (to = now_ms, from = to - APIREQ_SERIES_RANGE_DEFAULT_MS) and the
 * checks between parameters (the series needs a name; from < to; at most
 * APIREQ_SERIES_POINTS_MAX points).  Returns false with h->bad and h->why
 * set. */
bool apireq_health_finish(struct apireq_health *h, int64_t now_ms);

/* The buckets of the series' step that meet [from, to): the first one's
 * start into *first, their number as the result (0 when from >= to). */
uint64_t apireq_series_points(const struct apireq_health *h, int64_t *first);

/* ---- the suppression export: GET /v1/suppressions ---------------- */

/* Keys examined per page when a page is asked for (cursor or limit given)
 * without a limit, and the most a limit may ask. */
#define APIREQ_EXPORT_LIMIT_DEFAULT 1000
#define APIREQ_EXPORT_LIMIT_MAX 10000

struct apireq_export {
	bool csv;        /* format=csv: SES's bulk import CSV; else NDJSON */
	bool paged;      /* cursor or limit given: one page, not the stream */
	uint64_t cursor; /* where the page starts (Redis SCAN cursor; 0: start) */
	size_t limit;    /* keys examined in the page */
	bool has_since;
	int64_t since;   /* only suppressions decided at or after (ms) */
	const char *bad; /* name of the first bad parameter, or NULL */
	const char *why; /* why it is bad (static string) */
};

void apireq_export_init(struct apireq_export *e);

/* Takes one decoded parameter (value NULL when it had no '=').  Returns
 * false with e->bad (borrowing key) and e->why set when it is unknown or
 * its value is not acceptable; once false, stays false.  format: ndjson
 * or csv; since: ms since the epoch; cursor: a decimal cursor below
 * 2^64; limit: 1..APIREQ_EXPORT_LIMIT_MAX. */
bool apireq_parse_export_param(struct apireq_export *e, const char *key,
			       const char *value);

/* ---- the bulk check: POST /v1/suppressions/check --------------------- */

/* Most addresses in one check; more is refused whole (413). */
#define APIREQ_CHECK_ADDRESSES_MAX 1000
/* Largest body of a check (413 beyond): 1,000 addresses of the longest
 * kind, with a display name each, fit several times over. */
#define APIREQ_CHECK_BODY_MAX (1024 * 1024)
/* JSON nesting a check's body may have (json-c's depth): the array, and
 * one level more, so that an object or array in it is named as the wrong
 * type rather than as too deep. */
#define APIREQ_CHECK_DEPTH_MAX 3

struct apireq_check_entry {
	const char *given; /* the string as sent (decoded), borrowed from
			    * the body (an entry without escapes) or the
			    * check's parsed body; may hold NULs */
	size_t given_len;
	bool valid;        /* ses_address_normalize accepted it */
	const char *normalized; /* NUL-terminated, "" when not valid; in the
				 * check's names */
	size_t normalized_len;
};

struct apireq_check {
	struct json_object *root; /* the parsed body, when json-c read it; owned */
	struct apireq_check_entry *v; /* n entries, in the body's order; owned */
	size_t n;
	char *names; /* the normalised addresses, one after the other; owned */
};

/* Reads a check's body, body[0..len): strict JSON (RFC 8259, valid UTF-8,
 * nothing after the value), an array of at most APIREQ_CHECK_ADDRESSES_MAX
 * strings.  The usual body (strings without escapes) is read in one pass
 * without json-c (jsonscan.h), its entries pointing into body, which the
 * caller keeps until the check is freed; anything else, errors included,
 * is json-c's.  An entry that is not an address is an entry with valid false,
 * not an error.  Returns MT_E_OK, or MT_E_BAD_JSON (not JSON, not an array,
 * trailing bytes), MT_E_TOO_DEEP, MT_E_FIELD_TYPE (an element that is not a
 * string), MT_E_TOO_LARGE (too many addresses or bytes) with *why saying
 * which (a static string).  Free out with apireq_check_free() in every
 * case. */
enum mt_err apireq_parse_check(const char *body, size_t len, struct apireq_check *out,
			       const char **why);
void apireq_check_free(struct apireq_check *c);

/* Writes one CSV field (RFC 4180: quoted, with quotes doubled, when it
 * holds a comma, a quote, CR or LF) of s[0..len) into out (at least
 * 2 * len + 3 bytes).  Returns the bytes written (no NUL). */
size_t apireq_csv_field(const char *s, size_t len, char *out);

#endif
