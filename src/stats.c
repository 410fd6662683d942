/* stats.c - deliverability counters' names, keys and rates (stats.h). */
#include "stats.h"

#include <string.h>

const char *const stats_type_names[STATS_TYPES] = {
	"Send",
	"Delivery",
	"Bounce/Permanent",
	"Bounce/Transient",
	"Bounce/Undetermined",
	"Complaint",
	"Reject",
	"DeliveryDelay",
	"Open",
	"Click",
	"Rendering Failure",
};

const char *const stats_type_labels[STATS_TYPES] = {
	"Send",
	"Delivery",
	"BouncePermanent",
	"BounceTransient",
	"BounceUndetermined",
	"Complaint",
	"Reject",
	"DeliveryDelay",
	"Open",
	"Click",
	"RenderingFailure",
};

int stats_type_lookup(const char *name, size_t len)
{
	for (int i = 0; i < STATS_TYPES; i++)
		if (strlen(stats_type_names[i]) == len &&
		    memcmp(stats_type_names[i], name, len) == 0)
			return i;
	return -1;
}

static bool text_is(const char *s, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

const char *stats_type_of_event(const char *type, const char *bounce_type,
				size_t bounce_type_len)
{
	if (!type)
		return NULL;
	if (strcmp(type, "Bounce") == 0) {
		if (bounce_type && text_is(bounce_type, bounce_type_len, "Permanent"))
			return stats_type_names[STATS_BOUNCE_PERMANENT];
		if (bounce_type && text_is(bounce_type, bounce_type_len, "Transient"))
			return stats_type_names[STATS_BOUNCE_TRANSIENT];
		return stats_type_names[STATS_BOUNCE_UNDETERMINED];
	}
	/* Every other counted type is named as SES names the event. */
	int t = stats_type_lookup(type, strlen(type));
	if (t < 0 || t == STATS_BOUNCE_PERMANENT || t == STATS_BOUNCE_TRANSIENT ||
	    t == STATS_BOUNCE_UNDETERMINED)
		return NULL;
	return stats_type_names[t];
}

static const struct {
	char code;
	const char *name;
	unsigned names_max;
} dims[STATS_DIMS] = {
	{'i', "identity", STATS_NAMES_MAX_IDENTITY},
	{'c', "configuration-set", STATS_NAMES_MAX_CONFIGURATION_SET},
	{'d', "domain", STATS_NAMES_MAX_DOMAIN},
};

char stats_dim_code(enum stats_dim dim)
{
	return dim < STATS_DIMS ? dims[dim].code : '?';
}

const char *stats_dim_name(enum stats_dim dim)
{
	return dim < STATS_DIMS ? dims[dim].name : "";
}

bool stats_dim_lookup(const char *s, size_t len, enum stats_dim *out)
{
	for (int d = 0; d < STATS_DIMS; d++)
		if (text_is(s, len, dims[d].name)) {
			*out = (enum stats_dim)d;
			return true;
		}
	return false;
}

unsigned stats_names_max(enum stats_dim dim)
{
	return dim < STATS_DIMS ? dims[dim].names_max : 0;
}

bool stats_name_valid(enum stats_dim dim, const char *name, size_t len)
{
	if (!name || len == 0 || len > STATS_NAME_MAX || dim >= STATS_DIMS)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  c == '.' || c == '_' || c == '-';
		if (dim == STATS_DIM_CONFIGURATION_SET)
			ok = ok || (c >= 'A' && c <= 'Z');
		else
			ok = ok || c == '@' || c == '+';
		if (!ok)
			return false;
	}
	return true;
}

/* Floor division: times before 1970 still fall into their own day. */
static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t stats_day_start(int64_t ms)
{
	return floor_div(ms, STATS_DAY_MS) * STATS_DAY_MS;
}

int stats_hour(int64_t ms)
{
	return (int)((ms - stats_day_start(ms)) / STATS_HOUR_MS);
}

void stats_day(int64_t ms, char out[STATS_DAY_BUF])
{
	/* Days since the epoch to the civil date (Howard Hinnant's
	 * algorithm, proleptic Gregorian). */
	int64_t z = floor_div(ms, STATS_DAY_MS) + 719468;
	int64_t era = floor_div(z, 146097);
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t y = yoe + era * 400;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	int64_t d = doy - (153 * mp + 2) / 5 + 1;
	int64_t m = mp < 10 ? mp + 3 : mp - 9;
	if (m <= 2)
		y++;
	if (y < 0 || y > 9999)
		y = y < 0 ? 0 : 9999; /* keeps the 8 digits; no SES event is there */
	/* Digit by digit: this runs for every stored event. */
	const int64_t v[3] = {y, m, d};
	const int w[3] = {4, 2, 2};
	char *o = out + 8;
	*o = '\0';
	for (int i = 2; i >= 0; i--) {
		int64_t x = v[i];
		for (int k = 0; k < w[i]; k++, x /= 10)
			*--o = (char)('0' + x % 10);
	}
}

int64_t stats_expire_at(int64_t event_ms, unsigned retention_days)
{
	return stats_day_start(event_ms) + STATS_DAY_MS +
	       ((int64_t)retention_days + 1) * STATS_DAY_MS;
}

bool stats_countable(int64_t event_ms, int64_t now_ms, unsigned retention_days)
{
	int64_t day_end = stats_day_start(event_ms) + STATS_DAY_MS;
	return now_ms - day_end <= (int64_t)retention_days * STATS_DAY_MS;
}

/* The keys and fields are built with memcpy, not snprintf: they are
 * built for every stored event (three dimensions, four strings each). */
struct out {
	char *p;
	size_t len, cap;
	bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->full || n >= o->cap - o->len) {
		o->full = true;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static size_t put_end(struct out *o)
{
	if (o->cap == 0)
		return 0;
	if (o->full) {
		o->p[0] = '\0';
		return 0;
	}
	o->p[o->len] = '\0';
	return o->len;
}

static size_t key_of(char *out, size_t cap, const char *prefix, enum stats_dim dim,
		     const char day[STATS_DAY_BUF], bool names)
{
	struct out o = {out, 0, cap, cap == 0 || dim >= STATS_DIMS};
	char tag[4] = {'{', dim < STATS_DIMS ? dims[dim].code : '?', ':', '\0'};
	size_t dl = strnlen(day, 8);
	put(&o, prefix, strlen(prefix));
	put(&o, "stats:", 6);
	put(&o, tag, 3);
	put(&o, day, dl);
	put(&o, "}", 1);
	if (names)
		put(&o, ":names", 6);
	return put_end(&o);
}

size_t stats_key(char *out, size_t cap, const char *prefix, enum stats_dim dim,
		 const char day[STATS_DAY_BUF])
{
	return key_of(out, cap, prefix, dim, day, false);
}

size_t stats_names_key(char *out, size_t cap, const char *prefix,
		       enum stats_dim dim, const char day[STATS_DAY_BUF])
{
	return key_of(out, cap, prefix, dim, day, true);
}

size_t stats_field(char *out, size_t cap, const char *name, int hour,
		   const char *type)
{
	struct out o = {out, 0, cap, cap == 0 || hour > 23};
	char hh[4] = {'|', '*', '|', '\0'};
	size_t hl = 3;
	if (hour >= 0) {
		hh[1] = (char)('0' + hour / 10);
		hh[2] = (char)('0' + hour % 10);
		hh[3] = '|';
		hl = 4;
	}
	put(&o, name, strlen(name));
	put(&o, hh, hl);
	put(&o, type, strlen(type));
	return put_end(&o);
}

bool stats_field_parse(const char *field, size_t len, const char **name,
		       size_t *name_len, int *hour, enum stats_type *type)
{
	/* The name cannot hold '|' (invalid names are "(other)"), so the
	 * first '|' ends it; the type can hold a space but no '|'. */
	const char *bar = memchr(field, '|', len);
	if (!bar || bar == field)
		return false;
	size_t nl = (size_t)(bar - field);
	const char *h = bar + 1;
	size_t rest = len - nl - 1;
	int hr;
	const char *t;
	if (rest >= 2 && h[0] == '*' && h[1] == '|') {
		hr = -1;
		t = h + 2;
	} else if (rest >= 3 && h[0] >= '0' && h[0] <= '2' && h[1] >= '0' &&
		   h[1] <= '9' && h[2] == '|') {
		hr = (h[0] - '0') * 10 + (h[1] - '0');
		if (hr > 23)
			return false;
		t = h + 3;
	} else {
		return false;
	}
	int ti = stats_type_lookup(t, (size_t)(field + len - t));
	if (ti < 0)
		return false;
	*name = field;
	*name_len = nl;
	*hour = hr;
	*type = (enum stats_type)ti;
	return true;
}

void stats_rates_compute(const struct stats_counts *c, struct stats_rates *out)
{
	const uint64_t *n = c->n;
	uint64_t send = n[STATS_SEND];
	out->sends = send > 0 ? send
			      : n[STATS_DELIVERY] + n[STATS_BOUNCE_PERMANENT] +
					n[STATS_BOUNCE_TRANSIENT] +
					n[STATS_BOUNCE_UNDETERMINED];
	out->complaint_base = send > 0 ? send : n[STATS_DELIVERY];
	out->has_bounce_rate = out->sends > 0;
	out->bounce_rate = out->has_bounce_rate
				   ? (double)n[STATS_BOUNCE_PERMANENT] / (double)out->sends
				   : 0;
	out->has_complaint_rate = out->complaint_base > 0;
	out->complaint_rate = out->has_complaint_rate
				      ? (double)n[STATS_COMPLAINT] /
						(double)out->complaint_base
				      : 0;
}

const char *stats_status_name(enum stats_status s)
{
	switch (s) {
	case STATS_LOW_VOLUME:
		return "low_volume";
	case STATS_OK:
		return "ok";
	case STATS_WARNING:
		return "warning";
	case STATS_AT_RISK:
		return "at_risk";
	case STATS_PAUSE_RISK:
		return "pause_risk";
	}
	return "ok";
}

enum stats_status stats_status_of(const struct stats_rates *r, uint64_t min_volume)
{
	if (r->sends < min_volume)
		return STATS_LOW_VOLUME;
	double b = r->has_bounce_rate ? r->bounce_rate : 0;
	double c = r->has_complaint_rate ? r->complaint_rate : 0;
	if (b > STATS_BOUNCE_PAUSE || c > STATS_COMPLAINT_PAUSE)
		return STATS_PAUSE_RISK;
	if (b > STATS_BOUNCE_REVIEW || c > STATS_COMPLAINT_REVIEW)
		return STATS_AT_RISK;
	if (b > STATS_BOUNCE_WARNING || c > STATS_COMPLAINT_WARNING)
		return STATS_WARNING;
	return STATS_OK;
}

enum stats_status stats_status_worst(const enum stats_status *v, size_t n)
{
	enum stats_status worst = STATS_LOW_VOLUME;
	for (size_t i = 0; i < n; i++)
		if (v[i] > worst)
			worst = v[i];
	return worst;
}
