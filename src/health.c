/* health.c - the deliverability answers (health.h). */
#include "health.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "ses.h"
#include "stats.h"

/* Types the domains ranking reads: Send, Delivery, the three Bounce types
 * and Complaint (the rates' inputs), which stats.h numbers first. */
#define DOMAIN_TYPES (STATS_COMPLAINT + 1)
_Static_assert(STATS_SEND == 0 && STATS_DELIVERY < DOMAIN_TYPES &&
		       STATS_BOUNCE_PERMANENT < DOMAIN_TYPES &&
		       STATS_BOUNCE_TRANSIENT < DOMAIN_TYPES &&
		       STATS_BOUNCE_UNDETERMINED < DOMAIN_TYPES,
	       "the domains ranking reads the first DOMAIN_TYPES types");

/* ---- a batch of reads ------------------------------------------------------ */

/* Commands for store_run_reads, with the keys they borrow. */
struct reads {
	struct rcluster_cmd *cmd;
	char **key; /* key[i]: cmd[i]'s key; owned */
	size_t n, cap;
	bool nomem;
};

static void reads_free(struct reads *r)
{
	for (size_t i = 0; i < r->n; i++) {
		redisFreeCommand((char *)r->cmd[i].raw);
		freeReplyObject(r->cmd[i].reply);
		free(r->key[i]);
	}
	free(r->cmd);
	free(r->key);
	memset(r, 0, sizeof(*r));
}

/* Takes a command in RESP, raw[0..len) (malloc'd; the batch frees it),
 * routed by key[0..key_len); false when out of memory (the batch then
 * fails). */
static bool reads_push(struct reads *r, const char *key, size_t key_len, char *raw, size_t len)
{
	char *k = r->nomem ? NULL : strndup(key, key_len);
	if (k && r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 32;
		struct rcluster_cmd *c = realloc(r->cmd, cap * sizeof(*c));
		if (c)
			r->cmd = c;
		char **kk = c ? realloc(r->key, cap * sizeof(*kk)) : NULL;
		if (kk)
			r->key = kk;
		if (c && kk)
			r->cap = cap;
	}
	if (!k || r->n == r->cap) {
		free(k);
		free(raw);
		r->nomem = true;
		return false;
	}
	r->key[r->n] = k;
	r->cmd[r->n++] = (struct rcluster_cmd){k, key_len, raw, len, NULL};
	return true;
}

/* Adds a command of argc arguments (argv[1] is its key). */
static bool reads_add(struct reads *r, int argc, const char **argv, const size_t *argl)
{
	char *raw = NULL;
	int len = r->nomem ? -1 : redisFormatCommandArgv(&raw, argc, argv, argl);
	if (len < 0) {
		r->nomem = true;
		return false;
	}
	return reads_push(r, argv[1], argl[1], raw, (size_t)len);
}

/* Runs the batch; every reply must be of type want (or, want being
 * REDIS_REPLY_ARRAY, an array). */
static enum mt_err reads_run(const struct health_ctx *hc, struct reads *r, int want,
			     char *errbuf, size_t errsz)
{
	if (r->nomem) {
		snprintf(errbuf, errsz, "cannot queue a command (out of memory)");
		return MT_E_NOMEM;
	}
	enum mt_err err = store_run_reads(hc->store, r->cmd, r->n, errbuf, errsz);
	for (size_t i = 0; err == MT_E_OK && i < r->n; i++) {
		const redisReply *rep = r->cmd[i].reply;
		if (!rep || rep->type != want) {
			snprintf(errbuf, errsz, "%s: %s", r->key[i],
				 rep && rep->type == REDIS_REPLY_ERROR ? rep->str
								       : "unexpected reply");
			err = MT_E_REDIS;
		}
	}
	return err;
}

/* A counter's value: a decimal string, or nothing (nil: 0). */
static uint64_t count_of(const redisReply *e)
{
	if (!e || e->type != REDIS_REPLY_STRING)
		return 0;
	char *end;
	unsigned long long v = strtoull(e->str, &end, 10);
	return end != e->str && *end == '\0' && e->str[0] != '-' ? (uint64_t)v : 0;
}

/* ---- days and names ------------------------------------------------------------- */

/* A name, borrowed (from a reply, or the request's). */
struct name_ref {
	const char *str;
	size_t len;
};

/* The names of some days: every name once, sorted by its bytes (the
 * answers' last order), and for each day the names it lists. */
struct name_set {
	struct name_ref *v; /* borrowed from the ZRANGE replies */
	size_t n;
	size_t **day;   /* day[j][k]: index in v of day j's k-th name */
	size_t *count;  /* count[j]: day j's names */
	size_t days;
};

static void name_set_free(struct name_set *s)
{
	for (size_t j = 0; s->day && j < s->days; j++)
		free(s->day[j]);
	free(s->day);
	free(s->count);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static int name_cmp(const struct name_ref *a, const struct name_ref *b)
{
	size_t n = a->len < b->len ? a->len : b->len;
	int c = memcmp(a->str, b->str, n);
	return c ? c : a->len < b->len ? -1 : a->len > b->len;
}

static int name_qsort(const void *a, const void *b)
{
	return name_cmp(a, b);
}

/* Whether a :names member is a name to answer about: one the writer
 * admits (stats_name_valid or STATS_OTHER). */
static bool name_usable(enum stats_dim dim, const redisReply *e)
{
	if (!e || e->type != REDIS_REPLY_STRING)
		return false;
	return stats_name_valid(dim, e->str, e->len) ||
	       (e->len == strlen(STATS_OTHER) && memcmp(e->str, STATS_OTHER, e->len) == 0);
}

/* The name set of the days' ZRANGE replies (r->cmd[j]: day j's). */
static enum mt_err name_set_build(struct name_set *s, enum stats_dim dim,
				  const struct reads *r, size_t days)
{
	size_t total = 0;
	memset(s, 0, sizeof(*s));
	s->days = days;
	for (size_t j = 0; j < days; j++)
		total += r->cmd[j].reply->elements;
	s->v = calloc(total + 1, sizeof(*s->v));
	s->day = calloc(days, sizeof(*s->day));
	s->count = calloc(days, sizeof(*s->count));
	if (!s->v || !s->day || !s->count)
		return MT_E_NOMEM;
	for (size_t j = 0; j < days; j++) {
		const redisReply *a = r->cmd[j].reply;
		for (size_t k = 0; k < a->elements; k++)
			if (name_usable(dim, a->element[k]))
				s->v[s->n++] = (struct name_ref){a->element[k]->str,
								 a->element[k]->len};
	}
	qsort(s->v, s->n, sizeof(*s->v), name_qsort);
	size_t u = 0;
	for (size_t i = 0; i < s->n; i++)
		if (u == 0 || name_cmp(&s->v[u - 1], &s->v[i]) != 0)
			s->v[u++] = s->v[i];
	s->n = u;
	for (size_t j = 0; j < days; j++) {
		const redisReply *a = r->cmd[j].reply;
		s->day[j] = calloc(a->elements + 1, sizeof(**s->day));
		if (!s->day[j])
			return MT_E_NOMEM;
		for (size_t k = 0; k < a->elements; k++) {
			if (!name_usable(dim, a->element[k]))
				continue;
			struct name_ref key = {a->element[k]->str, a->element[k]->len};
			const struct name_ref *hit = bsearch(&key, s->v, s->n, sizeof(*s->v),
							     name_qsort);
			if (hit)
				s->day[j][s->count[j]++] = (size_t)(hit - s->v);
		}
	}
	return MT_E_OK;
}

/* ZRANGE of the :names of each day (day_start[j]), one command each,
 * read up to the dimension's cap and STATS_OTHER; then the name set. */
static enum mt_err read_names(const struct health_ctx *hc, enum stats_dim dim,
			      const int64_t *day_start, size_t days, struct reads *r,
			      struct name_set *s, char *errbuf, size_t errsz)
{
	char key[512], stop[24];
	memset(s, 0, sizeof(*s));
	snprintf(stop, sizeof(stop), "%u", stats_names_max(dim));
	for (size_t j = 0; j < days; j++) {
		char day[STATS_DAY_BUF];
		stats_day(day_start[j], day);
		size_t kl = stats_names_key(key, sizeof(key), store_prefix(hc->store), dim, day);
		const char *argv[] = {"ZRANGE", key, "0", stop};
		const size_t argl[] = {6, kl, 1, strlen(stop)};
		if (kl == 0)
			r->nomem = true;
		reads_add(r, 4, argv, argl);
	}
	enum mt_err err = reads_run(hc, r, REDIS_REPLY_ARRAY, errbuf, errsz);
	if (err == MT_E_OK)
		err = name_set_build(s, dim, r, days);
	if (err == MT_E_NOMEM)
		snprintf(errbuf, errsz, "out of memory");
	return err;
}

/* ---- the fields --------------------------------------------------------------- */

/* What one HMGET of a day's hash asks for each of its names, in this
 * order: the daily fields (daily), then hours h0..h0+nh-1; each of them
 * for the types t0..t1-1. */
struct layout {
	size_t day;  /* index into the days read */
	bool daily;
	int h0, nh;
	int t0, t1;
};

static size_t layout_fields(const struct layout *l)
{
	return (size_t)((l->daily ? 1 : 0) + l->nh) * (size_t)(l->t1 - l->t0);
}

/* Appends c (RESP's * or $), len in decimal and CRLF to p; returns the end. */
static char *resp_len(char *p, char c, size_t len)
{
	char digits[24];
	size_t n = 0;
	do {
		digits[n++] = (char)('0' + len % 10);
		len /= 10;
	} while (len);
	*p++ = c;
	while (n)
		*p++ = digits[--n];
	*p++ = '\r';
	*p++ = '\n';
	return p;
}

/* Adds HMGET key <fields of each name> (layout l) to r, written in RESP
 * directly: an overview asks for thousands of fields, and building them
 * as strings first, then formatting, cost more than Redis's work. */
static void add_hmget(struct reads *r, const char *key, size_t key_len,
		      const struct layout *l, const struct name_ref *names,
		      const size_t *idx, size_t n)
{
	/* "|*|<type>" or "|HH|<type>" of each field of a name, in order. */
	size_t per = layout_fields(l), tails_len = 0, names_len = 0;
	char (*tail)[40] = calloc(per ? per : 1, sizeof(*tail));
	size_t *tl = calloc(per ? per : 1, sizeof(*tl));
	if (!tail || !tl)
		goto nomem;
	size_t f = 0;
	for (int s = l->daily ? -1 : 0; s < l->nh; s++)
		for (int t = l->t0; t < l->t1; t++, f++) {
			int w = s < 0 ? snprintf(tail[f], sizeof(*tail), "|*|%s", stats_type_names[t])
				      : snprintf(tail[f], sizeof(*tail), "|%02d|%s", l->h0 + s,
						 stats_type_names[t]);
			tl[f] = w > 0 ? (size_t)w : 0;
			tails_len += tl[f];
		}
	for (size_t k = 0; k < n; k++)
		names_len += names[idx ? idx[k] : k].len;
	/* Each field: "$<up to 20 digits>\r\n<name><tail>\r\n". */
	size_t cap = 64 + key_len + n * (tails_len + per * 26) + names_len * per;
	char *raw = malloc(cap), *p = raw;
	if (!raw)
		goto nomem;
	p = resp_len(p, '*', 2 + n * per);
	p = resp_len(p, '$', 5);
	memcpy(p, "HMGET\r\n", 7);
	p += 7;
	p = resp_len(p, '$', key_len);
	memcpy(p, key, key_len);
	p += key_len;
	*p++ = '\r';
	*p++ = '\n';
	for (size_t k = 0; k < n; k++) {
		const struct name_ref *nm = &names[idx ? idx[k] : k];
		for (f = 0; f < per; f++) {
			p = resp_len(p, '$', nm->len + tl[f]);
			memcpy(p, nm->str, nm->len);
			memcpy(p + nm->len, tail[f], tl[f]);
			p += nm->len + tl[f];
			*p++ = '\r';
			*p++ = '\n';
		}
	}
	reads_push(r, key, key_len, raw, (size_t)(p - raw));
	goto out;
nomem:
	r->nomem = true;
out:
	free(tl);
	free(tail);
}

/* The hash key of a dimension's day into key (512 bytes); its length, 0
 * when it does not fit. */
static size_t day_key(const struct health_ctx *hc, enum stats_dim dim, int64_t day_start,
		      char key[512])
{
	char day[STATS_DAY_BUF];
	stats_day(day_start, day);
	return stats_key(key, 512, store_prefix(hc->store), dim, day);
}

/* Calls add(arg, name index, hour (-1: daily), type, value) for every
 * non-zero value of the answer rep of an HMGET of layout l over the names
 * idx[0..n) (NULL: the one name 0). */
typedef void (*count_fn)(void *arg, size_t name, int hour, int type, uint64_t v);

static void read_hmget(const redisReply *rep, const struct layout *l, const size_t *idx,
		       size_t n, count_fn add, void *arg)
{
	size_t e = 0;
	for (size_t k = 0; k < n; k++)
		for (int s = l->daily ? -1 : 0; s < l->nh; s++)
			for (int t = l->t0; t < l->t1; t++, e++) {
				uint64_t v = e < rep->elements ? count_of(rep->element[e]) : 0;
				if (v)
					add(arg, idx ? idx[k] : 0, s < 0 ? -1 : l->h0 + s, t, v);
			}
}

/* ---- JSON ------------------------------------------------------------------------ */

/* The text of a rate: the shortest of %.15g, %.16g and %.17g that reads
 * back as v (0.03, not json-c's 0.029999999999999999).  Returns its
 * length. */
static size_t rate_text(double v, char text[40])
{
	int n = 0;
	for (int digits = 15; digits <= 17; digits++) {
		n = snprintf(text, 40, "%.*g", digits, v);
		if (strtod(text, NULL) == v)
			break;
	}
	return n > 0 ? (size_t)n : 0;
}

/* A rate as JSON; null when !has. */
static struct json_object *rate(bool has, double v)
{
	if (!has)
		return NULL;
	char text[40];
	rate_text(v, text);
	return json_object_new_double_s(v, text);
}

/* {"Send":n,...}: the non-zero counts, in stats.h's order. */
static struct json_object *counts_json(const struct stats_counts *c)
{
	struct json_object *o = json_object_new_object();
	for (int t = 0; o && t < STATS_TYPES; t++)
		if (c->n[t])
			json_object_object_add(o, stats_type_names[t],
					       json_object_new_int64((int64_t)c->n[t]));
	return o;
}

static struct json_object *thresholds_json(void)
{
	struct json_object *t = json_object_new_object(), *b = json_object_new_object(),
			   *c = json_object_new_object();
	if (!t || !b || !c) {
		json_object_put(t);
		json_object_put(b);
		json_object_put(c);
		return NULL;
	}
	json_object_object_add(b, "warning", rate(true, STATS_BOUNCE_WARNING));
	json_object_object_add(b, "review", rate(true, STATS_BOUNCE_REVIEW));
	json_object_object_add(b, "pause", rate(true, STATS_BOUNCE_PAUSE));
	json_object_object_add(c, "warning", rate(true, STATS_COMPLAINT_WARNING));
	json_object_object_add(c, "review", rate(true, STATS_COMPLAINT_REVIEW));
	json_object_object_add(c, "pause", rate(true, STATS_COMPLAINT_PAUSE));
	json_object_object_add(t, "bounce", b);
	json_object_object_add(t, "complaint", c);
	return t;
}

/* ---- GET /v1/health ------------------------------------------------------------- */

struct item {
	struct name_ref name;
	struct stats_counts w[APIREQ_WINDOWS];
	struct stats_rates r[APIREQ_WINDOWS];
	enum stats_status st[APIREQ_WINDOWS];
	enum stats_status status;
};

struct overview_add {
	struct item *items;
	size_t day; /* of the reply being read */
};

static void overview_count(void *arg, size_t name, int hour, int type, uint64_t v)
{
	struct overview_add *o = arg;
	struct item *it = &o->items[name];
	if (hour >= 0) { /* only the 24h window reads hours */
		it->w[APIREQ_WINDOW_24H].n[type] += v;
		return;
	}
	it->w[APIREQ_WINDOW_30D].n[type] += v;
	if (o->day < 7)
		it->w[APIREQ_WINDOW_7D].n[type] += v;
}

/* Worst status first, then the most 30d sends, then the name. */
static int item_cmp(const void *pa, const void *pb)
{
	const struct item *a = pa, *b = pb;
	if (a->status != b->status)
		return a->status > b->status ? -1 : 1;
	uint64_t sa = a->r[APIREQ_WINDOW_30D].sends, sb = b->r[APIREQ_WINDOW_30D].sends;
	if (sa != sb)
		return sa > sb ? -1 : 1;
	return name_cmp(&a->name, &b->name);
}

static struct json_object *item_json(const struct item *it)
{
	struct json_object *o = json_object_new_object(), *ws = json_object_new_object();
	if (!o || !ws) {
		json_object_put(o);
		json_object_put(ws);
		return NULL;
	}
	json_object_object_add(o, "name", json_object_new_string_len(it->name.str,
								     (int)it->name.len));
	json_object_object_add(o, "status", json_object_new_string(stats_status_name(it->status)));
	for (int w = 0; w < APIREQ_WINDOWS; w++) {
		const struct stats_rates *r = &it->r[w];
		struct json_object *wo = json_object_new_object();
		if (!wo)
			break;
		json_object_object_add(wo, "sends", json_object_new_int64((int64_t)r->sends));
		json_object_object_add(wo, "bounce_rate", rate(r->has_bounce_rate, r->bounce_rate));
		json_object_object_add(wo, "complaint_rate",
				       rate(r->has_complaint_rate, r->complaint_rate));
		json_object_object_add(wo, "status",
				       json_object_new_string(stats_status_name(it->st[w])));
		json_object_object_add(wo, "counts", counts_json(&it->w[w]));
		json_object_object_add(ws, apireq_window_name((enum apireq_window)w), wo);
	}
	json_object_object_add(o, "windows", ws);
	return o;
}

/* Whether day_start's keys can still exist at now_ms (stats_expire_at). */
static bool day_kept(const struct health_ctx *hc, int64_t day_start, int64_t now_ms)
{
	return stats_expire_at(day_start, hc->retention_days) > now_ms &&
	       day_start <= now_ms + SES_TIME_AHEAD_MAX_MS;
}

enum mt_err health_overview(const struct health_ctx *hc, const struct apireq_health *h,
			    int64_t now_ms, struct json_object **out, char *errbuf,
			    size_t errsz)
{
	int64_t today = stats_day_start(now_ms), day_start[HEALTH_DAYS];
	int hour = stats_hour(now_ms);
	struct reads names = {0}, fields = {0};
	struct layout lay[HEALTH_DAYS];
	size_t nlay = 0;
	struct name_set s;
	struct item *items = NULL;
	struct json_object *o = NULL, *list = NULL;
	enum mt_err err;

	*out = NULL;
	for (size_t j = 0; j < HEALTH_DAYS; j++)
		day_start[j] = today - (int64_t)j * STATS_DAY_MS;
	err = read_names(hc, h->dim, day_start, HEALTH_DAYS, &names, &s, errbuf, errsz);
	if (err != MT_E_OK)
		goto out;
	items = calloc(s.n + 1, sizeof(*items));
	if (!items)
		goto nomem;
	/* Each day: its names' daily fields; today's hours so far and
	 * yesterday's from this hour on make the 24h window. */
	for (size_t j = 0; j < HEALTH_DAYS; j++) {
		if (s.count[j] == 0 || !day_kept(hc, day_start[j], now_ms))
			continue;
		struct layout l = {j, true, 0, 0, 0, STATS_TYPES};
		if (j == 0)
			l.nh = hour + 1;
		else if (j == 1) {
			l.h0 = hour + 1;
			l.nh = 23 - hour;
		}
		char key[512];
		size_t kl = day_key(hc, h->dim, day_start[j], key);
		if (kl == 0)
			goto nomem;
		lay[nlay++] = l;
		add_hmget(&fields, key, kl, &l, s.v, s.day[j], s.count[j]);
	}
	err = reads_run(hc, &fields, REDIS_REPLY_ARRAY, errbuf, errsz);
	if (err != MT_E_OK)
		goto out;
	for (size_t c = 0; c < nlay; c++) {
		struct overview_add add = {items, lay[c].day};
		read_hmget(fields.cmd[c].reply, &lay[c], s.day[lay[c].day], s.count[lay[c].day],
			   overview_count, &add);
	}
	for (size_t i = 0; i < s.n; i++) {
		struct item *it = &items[i];
		it->name = s.v[i];
		for (int w = 0; w < APIREQ_WINDOWS; w++) {
			stats_rates_compute(&it->w[w], &it->r[w]);
			it->st[w] = stats_status_of(&it->r[w], hc->min_volume);
		}
		it->status = stats_status_worst(it->st, APIREQ_WINDOWS);
	}
	qsort(items, s.n, sizeof(*items), item_cmp);

	o = json_object_new_object();
	list = json_object_new_array();
	if (!o || !list)
		goto nomem;
	json_object_object_add(o, "dimension", json_object_new_string(stats_dim_name(h->dim)));
	json_object_object_add(o, "now", json_object_new_int64(now_ms));
	json_object_object_add(o, "min_volume", json_object_new_int64(hc->min_volume));
	json_object_object_add(o, "thresholds", thresholds_json());
	for (size_t i = 0; i < s.n && i < h->limit; i++) {
		struct json_object *io = item_json(&items[i]);
		if (!io || json_object_array_add(list, io) != 0) {
			json_object_put(io);
			goto nomem;
		}
	}
	json_object_object_add(o, "items", list);
	list = NULL;
	*out = o;
	o = NULL;
	err = MT_E_OK;
	goto out;
nomem:
	err = MT_E_NOMEM;
	snprintf(errbuf, errsz, "out of memory");
out:
	json_object_put(list);
	json_object_put(o);
	free(items);
	name_set_free(&s);
	reads_free(&fields);
	reads_free(&names);
	return err;
}

/* ---- GET /v1/health/series ------------------------------------------------------ */

struct series_add {
	struct stats_counts *points;
	size_t n;
	int64_t first, step, day_start; /* of the reply being read */
};

static void series_count(void *arg, size_t name, int hour, int type, uint64_t v)
{
	struct series_add *a = arg;
	(void)name;
	int64_t t = a->day_start + (hour < 0 ? 0 : hour * STATS_HOUR_MS);
	int64_t i = (t - a->first) / a->step;
	if (t >= a->first && i >= 0 && (uint64_t)i < a->n)
		a->points[i].n[type] += v;
}

/* Appends the NUL-terminated s. */
static bool text_add(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s), SIZE_MAX / 2) == BUF_OK;
}

/* Appends a rate (rate_text), or null when !has. */
static bool rate_add(struct buf *b, bool has, double v)
{
	char t[40];
	if (!has)
		return text_add(b, "null");
	size_t n = rate_text(v, t);
	return buf_append(b, t, n, SIZE_MAX / 2) == BUF_OK;
}

enum mt_err health_series(const struct health_ctx *hc, const struct apireq_health *h,
			  int64_t now_ms, char **out, size_t *len, char *errbuf, size_t errsz)
{
	int64_t first, step = h->step_day ? STATS_DAY_MS : STATS_HOUR_MS;
	size_t n = (size_t)apireq_series_points(h, &first);
	int64_t end = first + (int64_t)n * step; /* past the last bucket */
	struct reads fields = {0};
	struct stats_counts *points = calloc(n + 1, sizeof(*points));
	int64_t *read_day = NULL;
	struct layout *lay = NULL;
	size_t nlay = 0, days = n == 0 ? 0 : (size_t)((end - 1 - stats_day_start(first)) / STATS_DAY_MS) + 1;
	struct buf text = {0};
	const struct name_ref names[1] = {{h->name, strlen(h->name)}};
	enum mt_err err;

	*out = NULL;
	read_day = calloc(days + 1, sizeof(*read_day));
	lay = calloc(days + 1, sizeof(*lay));
	if (!points || !read_day || !lay)
		goto nomem;
	/* One HMGET a day: its daily fields (step day), or the hours of the
	 * range that fall in it. */
	for (int64_t d = stats_day_start(first); d < end; d += STATS_DAY_MS) {
		if (!day_kept(hc, d, now_ms))
			continue;
		struct layout l = {nlay, true, 0, 0, 0, STATS_TYPES};
		if (!h->step_day) {
			int64_t a = d > first ? d : first, b = d + STATS_DAY_MS < end ? d + STATS_DAY_MS : end;
			l.daily = false;
			l.h0 = (int)((a - d) / STATS_HOUR_MS);
			l.nh = (int)((b - a) / STATS_HOUR_MS);
		}
		char key[512];
		size_t kl = day_key(hc, h->dim, d, key);
		if (kl == 0)
			goto nomem;
		read_day[nlay] = d;
		lay[nlay++] = l;
		add_hmget(&fields, key, kl, &l, names, NULL, 1);
	}
	err = reads_run(hc, &fields, REDIS_REPLY_ARRAY, errbuf, errsz);
	if (err != MT_E_OK)
		goto out;
	for (size_t c = 0; c < nlay; c++) {
		struct series_add add = {points, n, first, step, read_day[c]};
		read_hmget(fields.cmd[c].reply, &lay[c], NULL, 1, series_count, &add);
	}

	/* Written directly: a series of 2,000 points in json-c objects costs
	 * more than its Redis reads.  The name is valid (apireq: nothing JSON
	 * escapes), so are the type names. */
	char line[128];
	int w = snprintf(line, sizeof(line), "\",\"step\":\"%s\",\"from\":%lld,\"to\":%lld,"
			 "\"points\":[", h->step_day ? "day" : "hour", (long long)h->from,
			 (long long)h->to);
	bool ok = text_add(&text, "{\"dimension\":\"") &&
		  text_add(&text, stats_dim_name(h->dim)) && text_add(&text, "\",\"name\":\"") &&
		  text_add(&text, h->name) && w > 0 &&
		  buf_append(&text, line, (size_t)w, SIZE_MAX / 2) == BUF_OK;
	for (size_t i = 0; ok && i < n; i++) {
		struct stats_rates r;
		stats_rates_compute(&points[i], &r);
		w = snprintf(line, sizeof(line), "%s{\"time\":%lld,\"sends\":%llu,\"bounce_rate\":",
			     i ? "," : "", (long long)(first + (int64_t)i * step),
			     (unsigned long long)r.sends);
		ok = w > 0 && buf_append(&text, line, (size_t)w, SIZE_MAX / 2) == BUF_OK &&
		     rate_add(&text, r.has_bounce_rate, r.bounce_rate) &&
		     text_add(&text, ",\"complaint_rate\":") &&
		     rate_add(&text, r.has_complaint_rate, r.complaint_rate) &&
		     text_add(&text, ",\"counts\":{");
		for (int t = 0, k = 0; ok && t < STATS_TYPES; t++) {
			if (!points[i].n[t])
				continue;
			w = snprintf(line, sizeof(line), "%s\"%s\":%llu", k++ ? "," : "",
				     stats_type_names[t], (unsigned long long)points[i].n[t]);
			ok = w > 0 && buf_append(&text, line, (size_t)w, SIZE_MAX / 2) == BUF_OK;
		}
		ok = ok && text_add(&text, "}}");
	}
	if (!ok || !text_add(&text, "]}"))
		goto nomem;
	*len = text.len;
	*out = buf_take(&text);
	if (!*out)
		goto nomem;
	err = MT_E_OK;
	goto out;
nomem:
	err = MT_E_NOMEM;
	snprintf(errbuf, errsz, "out of memory");
out:
	buf_free(&text);
	reads_free(&fields);
	free(lay);
	free(read_day);
	free(points);
	return err;
}

/* ---- GET /v1/health/domains ----------------------------------------------------- */

struct ranked {
	struct name_ref name;
	struct stats_counts c;
	uint64_t bounces, by;
	size_t at; /* its index in the name set */
};

static void domains_count(void *arg, size_t name, int hour, int type, uint64_t v)
{
	struct ranked *d = arg;
	(void)hour;
	d[name].c.n[type] += v;
}

/* Most of by first, then the name. */
static int ranked_cmp(const void *pa, const void *pb)
{
	const struct ranked *a = pa, *b = pb;
	if (a->by != b->by)
		return a->by > b->by ? -1 : 1;
	return name_cmp(&a->name, &b->name);
}

/* Adds, for each day of the window that is read, an HMGET of the types
 * t0..t1-1 of the names of that day that wanted (NULL: all) marks:
 * day_idx[j] (caller frees) gets those names of day j, day_n[j] their
 * number, lay each command's layout, *nlay the commands. */
static enum mt_err domains_fields(const struct health_ctx *hc, const struct apireq_health *h,
				  const int64_t *day_start, size_t days, int hour, int64_t now_ms,
				  const struct name_set *s, const bool *wanted, int t0, int t1,
				  struct reads *r, struct layout *lay, size_t **day_idx,
				  size_t *day_n, size_t *nlay)
{
	*nlay = 0;
	for (size_t j = 0; j < days; j++) {
		size_t n = 0;
		day_n[j] = 0;
		day_idx[j] = calloc(s->count[j] + 1, sizeof(**day_idx));
		if (!day_idx[j])
			return MT_E_NOMEM;
		for (size_t k = 0; k < s->count[j]; k++)
			if (!wanted || wanted[s->day[j][k]])
				day_idx[j][n++] = s->day[j][k];
		day_n[j] = n;
		if (n == 0 || !day_kept(hc, day_start[j], now_ms))
			continue;
		/* 24h: today's hours so far, yesterday's from this hour on;
		 * else whole days. */
		struct layout l = {j, true, 0, 0, t0, t1};
		if (h->window == APIREQ_WINDOW_24H) {
			l.daily = false;
			l.h0 = j == 0 ? 0 : hour + 1;
			l.nh = j == 0 ? hour + 1 : 23 - hour;
			if (l.nh == 0)
				continue;
		}
		char key[512];
		size_t kl = day_key(hc, STATS_DIM_DOMAIN, day_start[j], key);
		if (kl == 0)
			return MT_E_NOMEM;
		lay[(*nlay)++] = l;
		add_hmget(r, key, kl, &l, s->v, day_idx[j], n);
	}
	return MT_E_OK;
}

enum mt_err health_domains(const struct health_ctx *hc, const struct apireq_health *h,
			   int64_t now_ms, struct json_object **out, char *errbuf,
			   size_t errsz)
{
	static const size_t window_days[APIREQ_WINDOWS] = {2, 7, 30};
	int64_t today = stats_day_start(now_ms), day_start[HEALTH_DAYS];
	int hour = stats_hour(now_ms);
	size_t days = window_days[h->window], nlay = 0;
	struct reads names = {0}, byf = {0}, topf = {0};
	struct layout lay[HEALTH_DAYS];
	size_t *day_idx[HEALTH_DAYS] = {0}, day_n[HEALTH_DAYS] = {0};
	struct name_set s;
	struct ranked *d = NULL;
	bool *top = NULL;
	struct json_object *o = NULL, *list = NULL;
	enum mt_err err;

	*out = NULL;
	for (size_t j = 0; j < days; j++)
		day_start[j] = today - (int64_t)j * STATS_DAY_MS;
	err = read_names(hc, STATS_DIM_DOMAIN, day_start, days, &names, &s, errbuf, errsz);
	if (err != MT_E_OK)
		goto out;
	d = calloc(s.n + 1, sizeof(*d));
	top = calloc(s.n + 1, sizeof(*top));
	if (!d || !top)
		goto nomem;
	/* First the ranking's own types for every domain (the three Bounce
	 * types, or Complaint), then every type the answer shows for the
	 * domains it lists only: a window of 1,000 domains a day reads a
	 * sixth (complaints) or half (bounces) of the fields. */
	int t0 = h->by_complaints ? STATS_COMPLAINT : STATS_BOUNCE_PERMANENT;
	int t1 = h->by_complaints ? STATS_COMPLAINT + 1 : STATS_BOUNCE_UNDETERMINED + 1;
	err = domains_fields(hc, h, day_start, days, hour, now_ms, &s, NULL, t0, t1, &byf, lay,
			     day_idx, day_n, &nlay);
	if (err == MT_E_OK)
		err = reads_run(hc, &byf, REDIS_REPLY_ARRAY, errbuf, errsz);
	if (err == MT_E_NOMEM)
		goto nomem;
	if (err != MT_E_OK)
		goto out;
	for (size_t c = 0; c < nlay; c++) {
		size_t j = lay[c].day;
		read_hmget(byf.cmd[c].reply, &lay[c], day_idx[j], day_n[j], domains_count, d);
	}
	size_t kept = 0;
	for (size_t i = 0; i < s.n; i++) {
		d[i].name = s.v[i];
		uint64_t by = h->by_complaints
			? d[i].c.n[STATS_COMPLAINT]
			: d[i].c.n[STATS_BOUNCE_PERMANENT] + d[i].c.n[STATS_BOUNCE_TRANSIENT] +
				  d[i].c.n[STATS_BOUNCE_UNDETERMINED];
		if (by) {
			struct ranked r = d[i];
			r.by = by;
			r.at = i;
			d[kept++] = r;
		}
	}
	qsort(d, kept, sizeof(*d), ranked_cmp);
	if (kept > h->limit)
		kept = h->limit;
	for (size_t i = 0; i < kept; i++)
		top[d[i].at] = true;
	for (size_t j = 0; j < days; j++) {
		free(day_idx[j]);
		day_idx[j] = NULL;
	}
	/* The listed domains' counts, read again whole. */
	struct ranked *all = calloc(s.n + 1, sizeof(*all));
	if (!all)
		goto nomem;
	err = kept ? domains_fields(hc, h, day_start, days, hour, now_ms, &s, top, 0,
				    DOMAIN_TYPES, &topf, lay, day_idx, day_n, &nlay)
		   : MT_E_OK;
	if (err == MT_E_OK && kept)
		err = reads_run(hc, &topf, REDIS_REPLY_ARRAY, errbuf, errsz);
	for (size_t c = 0; err == MT_E_OK && kept && c < nlay; c++) {
		size_t j = lay[c].day;
		read_hmget(topf.cmd[c].reply, &lay[c], day_idx[j], day_n[j], domains_count, all);
	}
	for (size_t i = 0; err == MT_E_OK && i < kept; i++) {
		const struct stats_counts *c = &all[d[i].at].c;
		d[i].c = *c;
		d[i].bounces = c->n[STATS_BOUNCE_PERMANENT] + c->n[STATS_BOUNCE_TRANSIENT] +
			       c->n[STATS_BOUNCE_UNDETERMINED];
	}
	free(all);
	if (err == MT_E_NOMEM)
		goto nomem;
	if (err != MT_E_OK)
		goto out;

	o = json_object_new_object();
	list = json_object_new_array();
	if (!o || !list)
		goto nomem;
	json_object_object_add(o, "window", json_object_new_string(apireq_window_name(h->window)));
	json_object_object_add(o, "by", json_object_new_string(h->by_complaints ? "complaints"
										  : "bounces"));
	for (size_t i = 0; i < kept; i++) {
		struct stats_rates r;
		stats_rates_compute(&d[i].c, &r);
		struct json_object *p = json_object_new_object();
		if (!p || json_object_array_add(list, p) != 0) {
			json_object_put(p);
			goto nomem;
		}
		json_object_object_add(p, "domain", json_object_new_string_len(d[i].name.str,
									       (int)d[i].name.len));
		json_object_object_add(p, "sends", json_object_new_int64((int64_t)r.sends));
		json_object_object_add(p, "bounces", json_object_new_int64((int64_t)d[i].bounces));
		json_object_object_add(p, "permanent_bounces",
				       json_object_new_int64((int64_t)d[i].c.n[STATS_BOUNCE_PERMANENT]));
		json_object_object_add(p, "complaints",
				       json_object_new_int64((int64_t)d[i].c.n[STATS_COMPLAINT]));
		json_object_object_add(p, "bounce_rate", rate(r.has_bounce_rate, r.bounce_rate));
		json_object_object_add(p, "complaint_rate",
				       rate(r.has_complaint_rate, r.complaint_rate));
	}
	json_object_object_add(o, "domains", list);
	list = NULL;
	*out = o;
	o = NULL;
	err = MT_E_OK;
	goto out;
nomem:
	err = MT_E_NOMEM;
	snprintf(errbuf, errsz, "out of memory");
out:
	json_object_put(list);
	json_object_put(o);
	for (size_t j = 0; j < HEALTH_DAYS; j++)
		free(day_idx[j]);
	free(top);
	free(d);
	name_set_free(&s);
	reads_free(&topf);
	reads_free(&byf);
	reads_free(&names);
	return err;
}
