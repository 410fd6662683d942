#include "metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

/* Upper bounds (seconds) of the request duration histogram.  SNS gives up
 * after about 15 s, so the last finite bucket is 15. */
static const double duration_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
					 0.05,   0.1,   0.25,   0.5,   1,    2.5,
					 5,      10,    15};
#define NBOUNDS (sizeof(duration_bounds) / sizeof(duration_bounds[0]))

/* The statuses mailtrail answers; anything else is counted as "other". */
static const unsigned statuses[] = {200, 400, 401, 403, 404, 405, 413, 429, 500, 503};
#define NSTATUS (sizeof(statuses) / sizeof(statuses[0]))

/* SES event types as ses.c writes them; the last slot is "other". */
static const char *const event_types[] = {
	"Bounce", "Complaint", "Delivery", "Send", "Reject", "Open", "Click",
	"Rendering Failure", "DeliveryDelay", "Subscription", "other"};
#define NTYPES (sizeof(event_types) / sizeof(event_types[0]))

#define STATS_STR_(x) #x
#define STATS_STR(x) STATS_STR_(x)

static atomic_ulong counters[METRIC__COUNT];
static atomic_long gauges[METRIC_GAUGE__COUNT];
static atomic_ulong results[MT_E__COUNT];
static atomic_ulong events[NTYPES];
static atomic_ulong cert_hits[2]; /* memory, disk */

struct route_stats {
	atomic_ulong by_status[NSTATUS + 1]; /* + other */
	atomic_ulong buckets[NBOUNDS + 1];   /* not cumulative; + above the last */
	atomic_ullong sum_ns;
};
static struct route_stats routes[METRIC_ROUTE__COUNT];

static const char *const names[METRIC__COUNT] = {
#define METRIC_NAME(name, help) #name,
	METRIC_MAP(METRIC_NAME)
#undef METRIC_NAME
};
static const char *const helps[METRIC__COUNT] = {
#define METRIC_HELP(name, help) help,
	METRIC_MAP(METRIC_HELP)
#undef METRIC_HELP
};
static const char *const gauge_names[METRIC_GAUGE__COUNT] = {
#define GAUGE_NAME(name, help) #name,
	METRIC_GAUGE_MAP(GAUGE_NAME)
#undef GAUGE_NAME
};
static const char *const gauge_helps[METRIC_GAUGE__COUNT] = {
#define GAUGE_HELP(name, help) help,
	METRIC_GAUGE_MAP(GAUGE_HELP)
#undef GAUGE_HELP
};
static const char *const route_labels[METRIC_ROUTE__COUNT] = {
#define ROUTE_LABEL(name, label) label,
	METRIC_ROUTE_MAP(ROUTE_LABEL)
#undef ROUTE_LABEL
};
static const char *const err_names[MT_E__COUNT] = {
#define ERR_NAME(name, status, reason) #name,
	MT_ERR_MAP(ERR_NAME)
#undef ERR_NAME
};

static void inc(atomic_ulong *c, unsigned long n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static unsigned long get(atomic_ulong *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

void metrics_add(enum metric m, unsigned long n)
{
	if (m < METRIC__COUNT)
		inc(&counters[m], n);
}

void metrics_gauge_add(enum metric_gauge g, long delta)
{
	if (g < METRIC_GAUGE__COUNT)
		atomic_fetch_add_explicit(&gauges[g], delta, memory_order_relaxed);
}

void metrics_gauge_set(enum metric_gauge g, long value)
{
	if (g < METRIC_GAUGE__COUNT)
		atomic_store_explicit(&gauges[g], value, memory_order_relaxed);
}

void metrics_count_request(enum metric_route route, unsigned status,
			   int64_t duration_ns)
{
	if (route >= METRIC_ROUTE__COUNT)
		route = METRIC_ROUTE_OTHER;
	struct route_stats *r = &routes[route];
	size_t s = 0;
	while (s < NSTATUS && statuses[s] != status)
		s++;
	inc(&r->by_status[s], 1);
	if (duration_ns < 0)
		duration_ns = 0;
	double secs = (double)duration_ns / 1e9;
	size_t b = 0;
	while (b < NBOUNDS && secs > duration_bounds[b])
		b++;
	inc(&r->buckets[b], 1);
	atomic_fetch_add_explicit(&r->sum_ns, (unsigned long long)duration_ns,
				  memory_order_relaxed);
}

/* The errors that say a message could not be proven genuine. */
static bool is_signature_failure(enum mt_err err)
{
	switch (err) {
	case MT_E_UNSIGNED:
	case MT_E_SIG_VERSION:
	case MT_E_SIG_ENCODING:
	case MT_E_BAD_SIGNATURE:
	case MT_E_CERT_URL:
	case MT_E_CERT_INVALID:
		return true;
	default:
		return false;
	}
}

void metrics_count_result(enum mt_err err)
{
	if (err < MT_E__COUNT)
		inc(&results[err], 1);
}

void metrics_count_event(const char *type)
{
	size_t i = 0;
	while (type && i < NTYPES - 1 && strcmp(type, event_types[i]) != 0)
		i++;
	inc(&events[type ? i : NTYPES - 1], 1);
}

/* The identities' counters: slots [0, METRICS_IDENTITIES_MAX) named in
 * the order first seen, the last one "(other)".  A slot's name is written
 * before n_identities publishes it (release), so readers scan without the
 * lock; only taking a new slot locks. */
struct identity_slot {
	char name[STATS_NAME_MAX + 1];
	atomic_ulong by_type[STATS_TYPES];
};
static struct identity_slot identities[METRICS_IDENTITIES_MAX + 1];
static atomic_size_t n_identities;
static pthread_mutex_t identities_lock = PTHREAD_MUTEX_INITIALIZER;

static struct identity_slot *identity_find(const char *name, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(identities[i].name, name) == 0)
			return &identities[i];
	return NULL;
}

void metrics_count_identity_event(const char *identity, const char *count_type)
{
	int t = count_type ? stats_type_lookup(count_type, strlen(count_type)) : -1;
	if (t < 0)
		return;
	struct identity_slot *slot = &identities[METRICS_IDENTITIES_MAX]; /* (other) */
	size_t len = identity ? strlen(identity) : 0;
	if (len > 0 && len <= STATS_NAME_MAX && strcmp(identity, STATS_OTHER) != 0) {
		size_t n = atomic_load_explicit(&n_identities, memory_order_acquire);
		struct identity_slot *found = identity_find(identity, n);
		if (!found && n < METRICS_IDENTITIES_MAX) {
			pthread_mutex_lock(&identities_lock);
			n = atomic_load_explicit(&n_identities, memory_order_relaxed);
			found = identity_find(identity, n);
			if (!found && n < METRICS_IDENTITIES_MAX) {
				found = &identities[n];
				memcpy(found->name, identity, len + 1);
				atomic_store_explicit(&n_identities, n + 1, memory_order_release);
			}
			pthread_mutex_unlock(&identities_lock);
		}
		if (found)
			slot = found;
	}
	inc(&slot->by_type[t], 1);
}

void metrics_count_cert_hit(bool from_disk)
{
	inc(&cert_hits[from_disk], 1);
}

static void header(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP mailtrail_%s %s\n# TYPE mailtrail_%s %s\n", name, help, name, type);
}

/* "BAD_SIGNATURE" -> "bad_signature" (label values read better in lower
 * case; the reasons are the mt_err names). */
static void put_lower(FILE *f, const char *s)
{
	for (; *s; s++)
		fputc(*s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s, f);
}

/* A label value as the text format writes it: backslash, double quote
 * and line feed escaped. */
static void put_label_value(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', f);
		if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void render_identity_line(FILE *f, const char *name, struct identity_slot *slot)
{
	for (int t = 0; t < STATS_TYPES; t++) {
		unsigned long n = get(&slot->by_type[t]);
		if (!n)
			continue;
		fputs("mailtrail_identity_events_total{identity=\"", f);
		put_label_value(f, name);
		fprintf(f, "\",type=\"%s\"} %lu\n", stats_type_labels[t], n);
	}
}

static void render_identities(FILE *f)
{
	header(f, "identity_events_total", "counter",
	       "events newly stored, by sending identity (the first "
	       STATS_STR(METRICS_IDENTITIES_MAX) " this process saw, then (other)) and type");
	size_t n = atomic_load_explicit(&n_identities, memory_order_acquire);
	for (size_t i = 0; i < n; i++)
		render_identity_line(f, identities[i].name, &identities[i]);
	render_identity_line(f, STATS_OTHER, &identities[METRICS_IDENTITIES_MAX]);
}

static void render_requests(FILE *f)
{
	header(f, "http_requests_total", "counter", "HTTP requests answered, by route and status");
	for (int r = 0; r < METRIC_ROUTE__COUNT; r++)
		for (size_t s = 0; s <= NSTATUS; s++) {
			unsigned long n = get(&routes[r].by_status[s]);
			if (!n)
				continue;
			fprintf(f, "mailtrail_http_requests_total{route=\"%s\",status=\"", route_labels[r]);
			if (s < NSTATUS)
				fprintf(f, "%u", statuses[s]);
			else
				fputs("other", f);
			fprintf(f, "\"} %lu\n", n);
		}
	header(f, "http_request_duration_seconds", "histogram",
	       "time from a request's headers to its answer, by route");
	for (int r = 0; r < METRIC_ROUTE__COUNT; r++) {
		unsigned long cum = 0, snap[NBOUNDS + 1];
		for (size_t b = 0; b <= NBOUNDS; b++)
			cum += snap[b] = get(&routes[r].buckets[b]);
		if (!cum)
			continue; /* a route never asked for has no series */
		cum = 0;
		for (size_t b = 0; b <= NBOUNDS; b++) {
			cum += snap[b];
			fprintf(f, "mailtrail_http_request_duration_seconds_bucket{route=\"%s\",le=\"",
				route_labels[r]);
			if (b < NBOUNDS)
				fprintf(f, "%g", duration_bounds[b]);
			else
				fputs("+Inf", f);
			fprintf(f, "\"} %lu\n", cum);
		}
		unsigned long long ns =
			atomic_load_explicit(&routes[r].sum_ns, memory_order_relaxed);
		fprintf(f, "mailtrail_http_request_duration_seconds_sum{route=\"%s\"} %.9f\n",
			route_labels[r], (double)ns / 1e9);
		fprintf(f, "mailtrail_http_request_duration_seconds_count{route=\"%s\"} %lu\n",
			route_labels[r], cum);
	}
}

static void render_sns(FILE *f)
{
	header(f, "sns_results_total", "counter", "SNS deliveries by outcome and HTTP status");
	for (int i = 0; i < MT_E__COUNT; i++) {
		fputs("mailtrail_sns_results_total{result=\"", f);
		put_lower(f, err_names[i]);
		fprintf(f, "\",status=\"%u\"} %lu\n", mt_err_http_status((enum mt_err)i),
			get(&results[i]));
	}
	header(f, "signature_failures_total", "counter",
	       "deliveries refused because they could not be proven to come from SNS, by reason");
	for (int i = 0; i < MT_E__COUNT; i++) {
		if (!is_signature_failure((enum mt_err)i))
			continue;
		fputs("mailtrail_signature_failures_total{reason=\"", f);
		put_lower(f, err_names[i]);
		fprintf(f, "\"} %lu\n", get(&results[i]));
	}
	header(f, "events_stored_total", "counter",
	       "events newly stored in Redis (one per recipient), by SES event type");
	for (size_t i = 0; i < NTYPES; i++)
		fprintf(f, "mailtrail_events_stored_total{type=\"%s\"} %lu\n", event_types[i],
			get(&events[i]));
	header(f, "cert_cache_hits_total", "counter",
	       "signing certificates found without a download, by where");
	fprintf(f, "mailtrail_cert_cache_hits_total{tier=\"memory\"} %lu\n", get(&cert_hits[0]));
	fprintf(f, "mailtrail_cert_cache_hits_total{tier=\"disk\"} %lu\n", get(&cert_hits[1]));
}

char *metrics_render(size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	if (!f)
		return NULL;
	for (int i = 0; i < METRIC__COUNT; i++) {
		header(f, names[i], "counter", helps[i]);
		fprintf(f, "mailtrail_%s %lu\n", names[i], get(&counters[i]));
	}
	for (int i = 0; i < METRIC_GAUGE__COUNT; i++) {
		header(f, gauge_names[i], "gauge", gauge_helps[i]);
		fprintf(f, "mailtrail_%s %ld\n", gauge_names[i],
			atomic_load_explicit(&gauges[i], memory_order_relaxed));
	}
	render_requests(f);
	render_sns(f);
	render_identities(f);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
