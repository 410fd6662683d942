#include "apireq.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "jsonscan.h"

static const char *const event_types[] = {
	"Bounce", "Complaint", "Delivery", "Send", "Reject", "Open", "Click",
	"Rendering Failure", "DeliveryDelay", "Subscription",
};

/* path[0..len) starts with the NUL-terminated prefix. */
static bool starts_with(const char *path, size_t len, const char *prefix)
{
	size_t pl = strlen(prefix);
	return len >= pl && memcmp(path, prefix, pl) == 0;
}

static bool equals(const char *path, size_t len, const char *s)
{
	return len == strlen(s) && memcmp(path, s, len) == 0;
}

enum apireq_route apireq_parse_path(const char *path, size_t len,
				    char address[SES_ADDRESS_MAX + 1])
{
	static const char rcpt[] = "/v1/recipients/", events[] = "/events",
			  msgs[] = "/v1/messages/";

	if (!starts_with(path, len, "/v1/"))
		return APIREQ_CONSOLE;
	if (equals(path, len, "/v1/events"))
		return APIREQ_EVENTS;
	if (starts_with(path, len, msgs)) {
		const char *id = path + sizeof(msgs) - 1;
		size_t il = len - (sizeof(msgs) - 1);
		if (il == 0)
			return APIREQ_NOT_FOUND;
		if (!store_message_id_valid(id, il))
			return APIREQ_BAD_MESSAGE_ID;
		memcpy(address, id, il);
		address[il] = '\0';
		return APIREQ_MESSAGE;
	}
	if (equals(path, len, "/v1/health"))
		return APIREQ_HEALTH;
	if (equals(path, len, "/v1/health/series"))
		return APIREQ_HEALTH_SERIES;
	if (equals(path, len, "/v1/health/domains"))
		return APIREQ_HEALTH_DOMAINS;
	if (equals(path, len, "/v1/suppressions"))
		return APIREQ_SUPPRESSIONS;
	if (equals(path, len, "/v1/suppressions/check"))
		return APIREQ_SUPPRESSIONS_CHECK;
	if (!starts_with(path, len, rcpt))
		return APIREQ_NOT_FOUND;

	const char *addr = path + sizeof(rcpt) - 1;
	size_t al = len - (sizeof(rcpt) - 1), el = sizeof(events) - 1;
	bool timeline = al > el && memcmp(addr + al - el, events, el) == 0;
	if (timeline)
		al -= el;
	if (al == 0)
		return APIREQ_NOT_FOUND;
	if (!ses_address_normalize(addr, al, address))
		return APIREQ_BAD_ADDRESS;
	return timeline ? APIREQ_TIMELINE : APIREQ_SUMMARY;
}

void apireq_query_init(struct apireq_query *p, enum apireq_route route)
{
	*p = (struct apireq_query){.route = route, .q = {.limit = APIREQ_LIMIT_DEFAULT}};
}

/* A non-negative decimal integer of at most 16 digits (ms until year
 * 318857, and no overflow). */
static bool parse_ms(const char *s, int64_t *out)
{
	if (!s || !*s || !isdigit((unsigned char)*s) || strlen(s) > 16)
		return false;
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static bool bad(struct apireq_query *p, const char *key, const char *why)
{
	p->bad = key;
	p->why = why;
	return false;
}

bool apireq_parse_param(struct apireq_query *p, const char *key, const char *value)
{
	static const char ms[] = "must be a time in ms since the epoch";
	if (p->bad)
		return false;
	if (p->route == APIREQ_SUMMARY)
		return bad(p, key, "the summary takes no parameters");
	if (p->route == APIREQ_MESSAGE)
		return bad(p, key, "the message lookup takes no parameters");
	if (strcmp(key, "limit") == 0) {
		int64_t n;
		if (!parse_ms(value, &n) || n < 1 || n > STORE_PAGE_MAX)
			return bad(p, key, "must be an integer from 1 to 1000");
		p->q.limit = (size_t)n;
	} else if (strcmp(key, "before") == 0) {
		if (!parse_ms(value, &p->q.before))
			return bad(p, key, ms);
		p->q.has_before = true;
	} else if (strcmp(key, "after") == 0 && p->route == APIREQ_TIMELINE) {
		if (!parse_ms(value, &p->q.after))
			return bad(p, key, ms);
		p->q.has_after = true;
	} else if (strcmp(key, "domain") == 0 && p->route == APIREQ_EVENTS) {
		size_t n = value ? strlen(value) : 0;
		if (n == 0 || n > STATS_NAME_MAX)
			return bad(p, key, "must be a recipient domain (1 to 253 of a-z, 0-9, "
				   "'.', '_', '+' and '-')");
		for (size_t i = 0; i <= n; i++)
			p->domain[i] = (char)tolower((unsigned char)value[i]);
		if (!stats_name_valid(STATS_DIM_DOMAIN, p->domain, n) || memchr(p->domain, '@', n))
			return bad(p, key, "must be a recipient domain (1 to 253 of a-z, 0-9, "
				   "'.', '_', '+' and '-')");
		p->q.domain = p->domain;
	} else if (strcmp(key, "type") == 0) {
		p->q.type = NULL;
		for (size_t i = 0; value && i < sizeof(event_types) / sizeof(*event_types); i++)
			if (strcmp(value, event_types[i]) == 0)
				p->q.type = event_types[i];
		if (!p->q.type)
			return bad(p, key, "must be an SES event type (Bounce, Complaint, Delivery, "
				   "Send, Reject, Open, Click, Rendering Failure, DeliveryDelay, "
				   "Subscription)");
	} else {
		return bad(p, key, "unknown parameter");
	}
	return true;
}

bool apireq_query_finish(struct apireq_query *p)
{
	if (p->bad)
		return false;
	if (p->q.has_before && p->q.has_after && p->q.after >= p->q.before)
		return bad(p, "after", "must be less than before");
	return true;
}

/* ---- deliverability ------------------------------------------------------ */

const char *apireq_window_name(enum apireq_window w)
{
	static const char *const names[APIREQ_WINDOWS] = {"24h", "7d", "30d"};
	return w < APIREQ_WINDOWS ? names[w] : "";
}

void apireq_health_init(struct apireq_health *h, enum apireq_route route)
{
	*h = (struct apireq_health){
		.route = route,
		.dim = STATS_DIM_IDENTITY,
		.limit = route == APIREQ_HEALTH_DOMAINS ? APIREQ_HEALTH_DOMAINS_DEFAULT
							: APIREQ_HEALTH_LIMIT_DEFAULT,
		.window = APIREQ_WINDOW_7D,
	};
}

static bool health_bad(struct apireq_health *h, const char *key, const char *why)
{
	h->bad = key;
	h->why = why;
	return false;
}

/* The series' name: a valid name of h->dim, or STATS_OTHER. */
static bool health_name(struct apireq_health *h, const char *key, const char *value)
{
	static const char why_lower[] =
		"must be a name of the dimension (1 to 253 of a-z, 0-9, '.', '_', '@', '+' "
		"and '-'), or (other)";
	static const char why_set[] =
		"must be a configuration set name (1 to 253 of A-Z, a-z, 0-9, '.', '_' and "
		"'-'), or (other)";
	const char *why = h->dim == STATS_DIM_CONFIGURATION_SET ? why_set : why_lower;
	size_t n = value ? strlen(value) : 0;
	if (n == 0 || n > STATS_NAME_MAX)
		return health_bad(h, key, why);
	bool fold = h->dim != STATS_DIM_CONFIGURATION_SET;
	if (value != h->given)
		memcpy(h->given, value, n + 1);
	for (size_t i = 0; i <= n; i++)
		h->name[i] = fold ? (char)tolower((unsigned char)value[i]) : value[i];
	if (strcmp(h->name, STATS_OTHER) != 0 && !stats_name_valid(h->dim, h->name, n)) {
		h->name[0] = '\0';
		return health_bad(h, key, why);
	}
	return true;
}

bool apireq_parse_health_param(struct apireq_health *h, const char *key, const char *value)
{
	static const char ms[] = "must be a time in ms since the epoch";
	enum apireq_route r = h->route;
	bool series = r == APIREQ_HEALTH_SERIES, domains = r == APIREQ_HEALTH_DOMAINS;
	if (h->bad)
		return false;
	if (strcmp(key, "dimension") == 0 && !domains) {
		if (!value || !stats_dim_lookup(value, strlen(value), &h->dim))
			return health_bad(h, key, "must be identity, configuration-set or domain");
		/* A name given before its dimension is read again, as given
		 * (a configuration set's name keeps its case). */
		if (series && h->name[0])
			return health_name(h, "name", h->given);
	} else if (strcmp(key, "limit") == 0 && !series) {
		int64_t n;
		if (!parse_ms(value, &n) || n < 1 || n > APIREQ_HEALTH_LIMIT_MAX)
			return health_bad(h, key, "must be an integer from 1 to 1000");
		h->limit = (size_t)n;
	} else if (strcmp(key, "name") == 0 && series) {
		return health_name(h, key, value);
	} else if (strcmp(key, "from") == 0 && series) {
		if (!parse_ms(value, &h->from))
			return health_bad(h, key, ms);
		h->has_from = true;
	} else if (strcmp(key, "to") == 0 && series) {
		if (!parse_ms(value, &h->to))
			return health_bad(h, key, ms);
		h->has_to = true;
	} else if (strcmp(key, "step") == 0 && series) {
		if (value && strcmp(value, "hour") == 0)
			h->step_day = false;
		else if (value && strcmp(value, "day") == 0)
			h->step_day = true;
		else
			return health_bad(h, key, "must be hour or day");
	} else if (strcmp(key, "window") == 0 && domains) {
		bool found = false;
		for (int w = 0; value && w < APIREQ_WINDOWS; w++)
			if (strcmp(value, apireq_window_name((enum apireq_window)w)) == 0) {
				h->window = (enum apireq_window)w;
				found = true;
			}
		if (!found)
			return health_bad(h, key, "must be 24h, 7d or 30d");
	} else if (strcmp(key, "by") == 0 && domains) {
		if (value && strcmp(value, "bounces") == 0)
			h->by_complaints = false;
		else if (value && strcmp(value, "complaints") == 0)
			h->by_complaints = true;
		else
			return health_bad(h, key, "must be bounces or complaints");
	} else {
		return health_bad(h, key, "unknown parameter");
	}
	return true;
}

uint64_t apireq_series_points(const struct apireq_health *h, int64_t *first)
{
	int64_t step = h->step_day ? STATS_DAY_MS : STATS_HOUR_MS;
	/* from and to are not negative (parse_ms). */
	*first = h->from / step * step;
	if (h->from >= h->to)
		return 0;
	int64_t last = (h->to - 1) / step * step;
	return (uint64_t)((last - *first) / step) + 1;
}

bool apireq_health_finish(struct apireq_health *h, int64_t now_ms)
{
	if (h->bad)
		return false;
	if (h->route != APIREQ_HEALTH_SERIES)
		return true;
	if (!h->name[0])
		return health_bad(h, "name", "required: the name whose series is asked for");
	if (!h->has_to)
		h->to = now_ms;
	if (!h->has_from)
		h->from = h->to > APIREQ_SERIES_RANGE_DEFAULT_MS ? h->to - APIREQ_SERIES_RANGE_DEFAULT_MS
								  : 0;
	if (h->from >= h->to)
		return h->has_from ? health_bad(h, "from", "must be less than to")
				   : health_bad(h, "to", "must be greater than from");
	int64_t first;
	if (apireq_series_points(h, &first) > APIREQ_SERIES_POINTS_MAX)
		return health_bad(h, "from", "too many points: at most 2000 buckets of the step "
			   "between from and to");
	return true;
}

/* ---- the suppression export -------------------------------------------- */

void apireq_export_init(struct apireq_export *e)
{
	*e = (struct apireq_export){.limit = APIREQ_EXPORT_LIMIT_DEFAULT};
}

static bool export_bad(struct apireq_export *e, const char *key, const char *why)
{
	e->bad = key;
	e->why = why;
	return false;
}

/* A decimal integer below 2^64, at most 20 digits, nothing else. */
static bool parse_u64(const char *s, uint64_t *out)
{
	if (!s || !*s || strlen(s) > 20)
		return false;
	for (const char *p = s; *p; p++)
		if (!isdigit((unsigned char)*p))
			return false;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

bool apireq_parse_export_param(struct apireq_export *e, const char *key, const char *value)
{
	if (e->bad)
		return false;
	if (strcmp(key, "format") == 0) {
		if (value && strcmp(value, "csv") == 0)
			e->csv = true;
		else if (value && strcmp(value, "ndjson") == 0)
			e->csv = false;
		else
			return export_bad(e, key, "must be ndjson or csv");
	} else if (strcmp(key, "since") == 0) {
		if (!parse_ms(value, &e->since))
			return export_bad(e, key, "must be a time in ms since the epoch");
		e->has_since = true;
	} else if (strcmp(key, "cursor") == 0) {
		if (!parse_u64(value, &e->cursor))
			return export_bad(e, key, "must be a cursor from Mailtrail-Next-Cursor");
		e->paged = true;
	} else if (strcmp(key, "limit") == 0) {
		int64_t n;
		if (!parse_ms(value, &n) || n < 1 || n > APIREQ_EXPORT_LIMIT_MAX)
			return export_bad(e, key, "must be an integer from 1 to 10000");
		e->limit = (size_t)n;
		e->paged = true;
	} else {
		return export_bad(e, key, "unknown parameter");
	}
	return true;
}

size_t apireq_csv_field(const char *s, size_t len, char *out)
{
	bool quote = false;
	for (size_t i = 0; i < len && !quote; i++)
		quote = s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
	if (!quote) {
		memcpy(out, s, len);
		return len;
	}
	size_t o = 0;
	out[o++] = '"';
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"')
			out[o++] = '"';
		out[o++] = s[i];
	}
	out[o++] = '"';
	return o;
}

/* ---- the bulk check ------------------------------------------------------ */

void apireq_check_free(struct apireq_check *c)
{
	if (!c)
		return;
	json_object_put(c->root);
	free(c->v);
	free(c->names);
	memset(c, 0, sizeof(*c));
}

static enum mt_err check_fail(const char **why, enum mt_err e, const char *reason)
{
	*why = reason;
	return e;
}

/* Normalises every entry's given string into out->names (one allocation:
 * a normalised address is never longer than what it came from). */
static enum mt_err check_normalize(struct apireq_check *out, const char **why)
{
	size_t room = 1;
	for (size_t i = 0; i < out->n; i++)
		room += (out->v[i].given_len < SES_ADDRESS_MAX ? out->v[i].given_len
							       : SES_ADDRESS_MAX) + 1;
	out->names = malloc(room);
	if (!out->names)
		return check_fail(why, MT_E_NOMEM, "out of memory");
	char *o = out->names;
	*o++ = '\0'; /* the invalid entries' "" */
	for (size_t i = 0; i < out->n; i++) {
		struct apireq_check_entry *e = &out->v[i];
		char norm[SES_ADDRESS_MAX + 1];
		e->valid = ses_address_normalize(e->given, e->given_len, norm);
		e->normalized = out->names;
		if (e->valid) {
			size_t l = strlen(norm);
			memcpy(o, norm, l + 1);
			e->normalized = o;
			e->normalized_len = l;
			o += l + 1;
		}
	}
	return MT_E_OK;
}

/* The usual body, an array of strings without escapes, read in one pass;
 * false (out untouched) for anything else, which json-c then reads. */
static bool check_fast(const char *body, size_t len, struct apireq_check *out)
{
	const char *p = body, *end = body + len;
	size_t n = 0;
	p = jsonscan_ws(p, end);
	if (p == end || *p++ != '[')
		return false;
	/* Entries: at most one per 3 bytes ("",). */
	size_t cap = len / 3 + 1;
	if (cap > APIREQ_CHECK_ADDRESSES_MAX)
		cap = APIREQ_CHECK_ADDRESSES_MAX;
	struct apireq_check_entry *v = malloc(cap * sizeof(*v)); /* each set below */
	if (!v)
		return false;
	p = jsonscan_ws(p, end);
	if (p < end && *p == ']') {
		p++;
	} else {
		for (;;) {
			bool escaped;
			if (p == end || *p != '"' || n == cap)
				goto no;
			const char *q = jsonscan_string(p + 1, end, &escaped);
			if (!q || escaped)
				goto no;
			v[n] = (struct apireq_check_entry){p + 1, (size_t)(q - p - 1), false, "", 0};
			n++;
			p = jsonscan_ws(q + 1, end);
			if (p < end && *p == ',') {
				p = jsonscan_ws(p + 1, end);
				continue;
			}
			if (p < end && *p == ']') {
				p++;
				break;
			}
			goto no;
		}
	}
	if (jsonscan_ws(p, end) != end)
		goto no;
	out->v = v;
	out->n = n;
	return true;
no:
	free(v);
	return false;
}

enum mt_err apireq_parse_check(const char *body, size_t len, struct apireq_check *out,
			       const char **why)
{
	memset(out, 0, sizeof(*out));
	*why = "";
	if (!body)
		len = 0;
	if (len > APIREQ_CHECK_BODY_MAX)
		return check_fail(why, MT_E_TOO_LARGE, "body over 1048576 bytes");
	if (len > INT_MAX)
		return check_fail(why, MT_E_TOO_LARGE, "body too large");
	if (body && check_fast(body, len, out))
		return check_normalize(out, why);
	struct json_tokener *tok = json_tokener_new_ex(APIREQ_CHECK_DEPTH_MAX);
	if (!tok)
		return check_fail(why, MT_E_NOMEM, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	if (!body)
		body = "";
	out->root = json_tokener_parse_ex(tok, body, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (jerr == json_tokener_error_depth)
		return check_fail(why, MT_E_TOO_DEEP,
				  "body must be an array of strings (nested too deeply)");
	if (jerr != json_tokener_success || !out->root)
		return check_fail(why, MT_E_BAD_JSON, "body is not valid JSON");
	for (size_t i = used; i < len; i++)
		if (body[i] != ' ' && body[i] != '\t' && body[i] != '\n' && body[i] != '\r')
			return check_fail(why, MT_E_BAD_JSON, "bytes after the JSON value");
	if (!json_object_is_type(out->root, json_type_array))
		return check_fail(why, MT_E_BAD_JSON, "body must be a JSON array of addresses");
	size_t n = json_object_array_length(out->root);
	if (n > APIREQ_CHECK_ADDRESSES_MAX)
		return check_fail(why, MT_E_TOO_LARGE, "at most 1000 addresses per check");
	out->v = calloc(n ? n : 1, sizeof(*out->v));
	if (!out->v)
		return check_fail(why, MT_E_NOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		struct json_object *a = json_object_array_get_idx(out->root, i);
		if (!json_object_is_type(a, json_type_string))
			return check_fail(why, MT_E_FIELD_TYPE,
					  "every element must be a string (an address)");
		struct apireq_check_entry *e = &out->v[i];
		e->given = json_object_get_string(a);
		e->given_len = (size_t)json_object_get_string_len(a);
	}
	out->n = n;
	return check_normalize(out, why);
}
