/* libFuzzer harness: the query API's path and query parsing (apireq.c).
 * The input is a request target as it arrives, "PATH[?QUERY]"; it is split
 * and %-decoded the way the HTTP layer does before apireq sees it, and what
 * apireq answers is checked against its contract. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "apireq.h"

/* The health routes' parameters, after apireq_health_finish at now. */
static void check_health(const struct apireq_health *h, bool ok, int64_t now)
{
	if (!ok) {
		if (!h->bad || !h->why || !*h->why)
			abort();
		return;
	}
	if (h->bad || h->dim >= STATS_DIMS || h->window >= APIREQ_WINDOWS ||
	    h->limit < 1 || h->limit > APIREQ_HEALTH_LIMIT_MAX)
		abort();
	if (h->route != APIREQ_HEALTH_SERIES)
		return;
	size_t n = strlen(h->name);
	if (!(stats_name_valid(h->dim, h->name, n) || strcmp(h->name, STATS_OTHER) == 0))
		abort();
	int64_t first;
	uint64_t points = apireq_series_points(h, &first);
	if (h->from < 0 || h->from >= h->to || points < 1 || points > APIREQ_SERIES_POINTS_MAX ||
	    first > h->from || (!h->has_to && h->to != now))
		abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* In place, like http.c: %XX decoded, %00 as 0x7f; '+' as ' ' if plus. */
static size_t decode(char *s, size_t len, bool plus)
{
	char *o = s;
	for (size_t i = 0; i < len; i++) {
		int hi, lo;
		if (s[i] == '%' && i + 2 < len && (hi = hexval(s[i + 1])) >= 0 &&
		    (lo = hexval(s[i + 2])) >= 0) {
			char c = (char)(hi * 16 + lo);
			*o++ = c ? c : 0x7f;
			i += 2;
		} else {
			*o++ = plus && s[i] == '+' ? ' ' : s[i];
		}
	}
	*o = '\0';
	return (size_t)(o - s);
}

static void check_address(const char *a)
{
	size_t n = strlen(a);
	if (n == 0 || n > SES_ADDRESS_MAX || !strchr(a, '@'))
		abort();
	for (size_t i = 0; i < n; i++)
		if (isupper((unsigned char)a[i]) || (unsigned char)a[i] <= ' ')
			abort();
}

/* A message route's id: 1..STORE_MESSAGE_ID_MAX of [A-Za-z0-9-], and
 * exactly the path's last segment; a bad one is a message path whose id
 * is not that. */
static void check_message_id(const char *path, size_t len, enum apireq_route r,
			     const char *id)
{
	static const char msgs[] = "/v1/messages/";
	size_t ml = sizeof(msgs) - 1;
	bool under = len > ml && memcmp(path, msgs, ml) == 0;
	if (r == APIREQ_BAD_MESSAGE_ID) {
		if (!under || store_message_id_valid(path + ml, len - ml))
			abort();
		return;
	}
	if (r != APIREQ_MESSAGE)
		return;
	size_t n = strlen(id);
	if (!under || n == 0 || n > STORE_MESSAGE_ID_MAX || n != len - ml ||
	    memcmp(id, path + ml, n) != 0)
		abort();
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)id[i]) && id[i] != '-')
			abort();
}

static void check_query(const struct apireq_query *p, bool ok)
{
	if (!ok) {
		if (!p->bad || !p->why || !*p->why)
			abort();
		return;
	}
	const struct store_query *q = &p->q;
	if (p->bad || q->limit < 1 || q->limit > STORE_PAGE_MAX)
		abort();
	if ((q->has_before && q->before < 0) || (q->has_after && q->after < 0))
		abort();
	if (q->has_before && q->has_after && q->after >= q->before)
		abort();
	if ((q->type && !*q->type) || (q->has_after && p->route != APIREQ_TIMELINE))
		abort();
	/* A domain filter: the feed's only, a valid domain name, lower case,
	 * no '@'. */
	if (q->domain && (p->route != APIREQ_EVENTS ||
			  !stats_name_valid(STATS_DIM_DOMAIN, q->domain, strlen(q->domain)) ||
			  strchr(q->domain, '@')))
		abort();
	/* The message lookup takes no parameters. */
	if (p->route == APIREQ_MESSAGE && (q->type || q->has_before || q->has_after ||
					   q->limit != APIREQ_LIMIT_DEFAULT))
		abort();
}

static void check_export(const struct apireq_export *e, bool ok)
{
	if (!ok) {
		if (!e->bad || !e->why || !*e->why)
			abort();
		return;
	}
	if (e->bad || e->limit < 1 || e->limit > APIREQ_EXPORT_LIMIT_MAX ||
	    (e->has_since && e->since < 0))
		abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char *buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	char *qs = memchr(buf, '?', size);
	size_t path_len = qs ? (size_t)(qs - buf) : size;
	if (qs)
		*qs++ = '\0';
	path_len = decode(buf, path_len, false);

	char address[SES_ADDRESS_MAX + 1];
	enum apireq_route r = apireq_parse_path(buf, path_len, address);
	if (r == APIREQ_SUMMARY || r == APIREQ_TIMELINE)
		check_address(address);
	check_message_id(buf, path_len, r, address);

	struct apireq_query p;
	struct apireq_export ex;
	struct apireq_health h;
	bool ex_ok = true, health = r == APIREQ_HEALTH || r == APIREQ_HEALTH_SERIES ||
				    r == APIREQ_HEALTH_DOMAINS;
	apireq_query_init(&p, r);
	apireq_export_init(&ex);
	apireq_health_init(&h, r);
	char *save = NULL;
	for (char *kv = qs ? strtok_r(qs, "&", &save) : NULL; kv; kv = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(kv, '=');
		if (eq) {
			*eq++ = '\0';
			decode(eq, strlen(eq), true);
		}
		decode(kv, strlen(kv), true);
		if (r == APIREQ_SUPPRESSIONS) {
			/* The export's own parameters (api.c reads them so). */
			if (!(ex_ok = apireq_parse_export_param(&ex, kv, eq)))
				break;
			continue;
		}
		if (health) {
			if (!apireq_parse_health_param(&h, kv, eq))
				break;
			continue;
		}
		if (!apireq_parse_param(&p, kv, eq))
			break;
	}
	if (health)
		check_health(&h, apireq_health_finish(&h, 1764999999999), 1764999999999);
	else if (r == APIREQ_SUPPRESSIONS)
		check_export(&ex, ex_ok);
	else
		check_query(&p, apireq_query_finish(&p));
	free(buf);
	return 0;
}
