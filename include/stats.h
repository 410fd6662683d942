/* stats.h - deliverability counters: the names, keys and rates that the
 * write side (ingest, store.c) and the read side (the health API) share.
 *
 * Pure: no I/O, no globals but constant tables.  The layout is README's
 * "Deliverability counters":
 *
 *   {prefix}stats:{<code>:<YYYYMMDD>}        hash, fields
 *        <name>|<HH>|<type>   events of that type of that name in hour HH
 *        <name>|*|<type>      the same for the whole UTC day
 *   {prefix}stats:{<code>:<YYYYMMDD>}:names  sorted set, name -> events
 *
 * one pair per dimension (code i, c, d) and UTC day of the event's time.
 */
#ifndef STATS_H
#define STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The 11 count types, in this order everywhere (API "counts", metrics). */
enum stats_type {
	STATS_SEND,
	STATS_DELIVERY,
	STATS_BOUNCE_PERMANENT,
	STATS_BOUNCE_TRANSIENT,
	STATS_BOUNCE_UNDETERMINED,
	STATS_COMPLAINT,
	STATS_REJECT,
	STATS_DELIVERY_DELAY,
	STATS_OPEN,
	STATS_CLICK,
	STATS_RENDERING_FAILURE,
	STATS_TYPES
};

/* Field text of each type ("Bounce/Permanent", "Rendering Failure", ...). */
extern const char *const stats_type_names[STATS_TYPES];
/* Prometheus label value of each type: the field text without '/' and
 * spaces ("BouncePermanent", "RenderingFailure"). */
extern const char *const stats_type_labels[STATS_TYPES];

/* The type whose field text is name[0..len), or -1. */
int stats_type_lookup(const char *name, size_t len);

/* The count type of an SES event: type as ses.c names it ("Bounce",
 * "Send", ...), bounce_type the Bounce's bounceType (NULL or anything
 * else than Permanent/Transient: Undetermined).  Returns the field text
 * (a static string, one of stats_type_names) or NULL for a type that is
 * not counted (Subscription, unknown). */
const char *stats_type_of_event(const char *type, const char *bounce_type,
				size_t bounce_type_len);

/* The three dimensions. */
enum stats_dim {
	STATS_DIM_IDENTITY,
	STATS_DIM_CONFIGURATION_SET,
	STATS_DIM_DOMAIN,
	STATS_DIMS
};

/* Key code of each dimension: 'i', 'c', 'd'. */
char stats_dim_code(enum stats_dim dim);
/* API name of each dimension: "identity", "configuration-set", "domain". */
const char *stats_dim_name(enum stats_dim dim);
/* The dimension whose API name is s[0..len); false when none. */
bool stats_dim_lookup(const char *s, size_t len, enum stats_dim *out);

/* Names.  Valid: 1..STATS_NAME_MAX bytes of [a-z0-9._@+-] (identity,
 * domain) or [A-Za-z0-9._-] (configuration set).  Anything else is
 * counted under STATS_OTHER, which is never valid itself. */
#define STATS_NAME_MAX 253
#define STATS_OTHER "(other)"
bool stats_name_valid(enum stats_dim dim, const char *name, size_t len);

/* Cardinality caps: names per dimension per UTC day.  A name not yet
 * listed in a day's :names when it already holds this many is counted as
 * STATS_OTHER (always admitted: at most cap + 1 names). */
#define STATS_NAMES_MAX_IDENTITY 1000
#define STATS_NAMES_MAX_CONFIGURATION_SET 1000
#define STATS_NAMES_MAX_DOMAIN 1000
unsigned stats_names_max(enum stats_dim dim);

/* Time.  UTC day and hour of an event time (ms since the epoch). */
#define STATS_DAY_MS (86400LL * 1000)
#define STATS_HOUR_MS (3600LL * 1000)
/* Writes "YYYYMMDD" (NUL-terminated) into out. */
#define STATS_DAY_BUF 9
void stats_day(int64_t ms, char out[STATS_DAY_BUF]);
/* 0..23 */
int stats_hour(int64_t ms);
/* Start of the UTC day holding ms. */
int64_t stats_day_start(int64_t ms);
/* The PEXPIREAT time of a day's keys: end of the event's UTC day +
 * retention_days + 1 day (the same absolute time for every event of the
 * day, so setting it again changes nothing). */
int64_t stats_expire_at(int64_t event_ms, unsigned retention_days);
/* Whether an event is counted at all: false when its UTC day ended more
 * than retention_days before now_ms. */
bool stats_countable(int64_t event_ms, int64_t now_ms, unsigned retention_days);

/* Keys and fields.  Each writes a NUL-terminated string into out (cap
 * bytes) and returns its length, or 0 when it does not fit. */
#define STATS_FIELD_MAX (STATS_NAME_MAX + 32)
/* {prefix}stats:{<code>:<YYYYMMDD>} */
size_t stats_key(char *out, size_t cap, const char *prefix, enum stats_dim dim,
		 const char day[STATS_DAY_BUF]);
/* {prefix}stats:{<code>:<YYYYMMDD>}:names */
size_t stats_names_key(char *out, size_t cap, const char *prefix,
		       enum stats_dim dim, const char day[STATS_DAY_BUF]);
/* <name>|<HH>|<type>, or <name>|*|<type> when hour < 0. */
size_t stats_field(char *out, size_t cap, const char *name, int hour,
		   const char *type);
/* Splits a hash field: name (borrowed from field), hour (-1 for '*') and
 * type.  False for anything that is not a field stats_field() writes. */
bool stats_field_parse(const char *field, size_t len, const char **name,
		       size_t *name_len, int *hour, enum stats_type *type);

/* Rates (SES's review and pause thresholds; warning at half the review
 * threshold). */
#define STATS_BOUNCE_REVIEW 0.05
#define STATS_BOUNCE_PAUSE 0.10
#define STATS_BOUNCE_WARNING (STATS_BOUNCE_REVIEW / 2)
#define STATS_COMPLAINT_REVIEW 0.001
#define STATS_COMPLAINT_PAUSE 0.005
#define STATS_COMPLAINT_WARNING (STATS_COMPLAINT_REVIEW / 2)

struct stats_counts {
	uint64_t n[STATS_TYPES];
};

struct stats_rates {
	/* Send when > 0, else Delivery + the three Bounce types. */
	uint64_t sends;
	/* The complaint rate's divisor: Send when > 0, else Delivery. */
	uint64_t complaint_base;
	/* Bounce/Permanent / sends; has_bounce_rate false when sends is 0. */
	bool has_bounce_rate;
	double bounce_rate;
	/* Complaint / complaint_base; false when that is 0. */
	bool has_complaint_rate;
	double complaint_rate;
};

void stats_rates_compute(const struct stats_counts *c, struct stats_rates *out);

/* Statuses in order of severity (worst last). */
enum stats_status {
	STATS_LOW_VOLUME,
	STATS_OK,
	STATS_WARNING,
	STATS_AT_RISK,
	STATS_PAUSE_RISK,
};
/* "low_volume", "ok", "warning", "at_risk", "pause_risk". */
const char *stats_status_name(enum stats_status s);

/* A window's status: low_volume when sends < min_volume; else pause_risk
 * when either rate is above its pause threshold, at_risk when above the
 * review threshold, warning when above half of it, else ok. */
enum stats_status stats_status_of(const struct stats_rates *r, uint64_t min_volume);
/* The status of a name over its windows: the worst that is not
 * low_volume, low_volume when all are (or n is 0). */
enum stats_status stats_status_worst(const enum stats_status *v, size_t n);

#endif
