/* policy.c - the suppression policy (policy.h): pure decisions over a
 * recipient's events. */
#include "policy.h"

#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#define DAY_MS (86400LL * 1000)

/* The defaults and what each means, for reason_text.  Sources (README,
 * "Query API"): RFC 3463 section 3.2 (X.1.1, X.1.2, X.1.3 "only useful
 * for permanent failures"; X.1.6 mailbox has moved; X.2.1 mailbox
 * disabled; X.4.4 unable to route), RFC 7505 section 4.2 and the IANA
 * "Enumerated Status Codes" registry (X.1.10, recipient address has null
 * MX). */
static const struct {
	const char *code, *meaning;
} known[] = {
	{"5.1.1", "the mailbox does not exist"},
	{"5.1.2", "the domain does not exist or accepts no mail"},
	{"5.1.3", "the address is not valid"},
	{"5.1.6", "the mailbox has moved"},
	{"5.1.10", "the domain publishes a null MX: it accepts no mail"},
	{"5.2.1", "the mailbox is disabled"},
	{"5.4.4", "domain does not exist (unable to route)"},
};

void policy_default(struct policy *p)
{
	memset(p, 0, sizeof(*p));
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		memcpy(p->statuses[p->nstatuses++], known[i].code, strlen(known[i].code) + 1);
	p->soft_bounces = 5;
	p->soft_days = 30;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Whether c may not touch a status code: it would be part of a word, a
 * number or a version ("v4.4.7", "10.5.1.1"). */
static bool joins(char c)
{
	return is_digit(c) || c == '.' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* The length of a status code at s[0..len) ("c.s.d", c in classes, s
 * and d 1 to 3 digits), 0 when none starts there. */
static size_t status_at(const char *s, size_t len, const char *classes)
{
	if (len < 5 || !strchr(classes, s[0]) || s[0] == '\0' || s[1] != '.')
		return 0;
	size_t i = 2;
	for (int part = 0; part < 2; part++) {
		size_t d = 0;
		while (i < len && is_digit(s[i]) && d < 4) {
			i++;
			d++;
		}
		if (d == 0 || d > 3)
			return 0;
		if (part == 0) {
			if (i >= len || s[i] != '.')
				return 0;
			i++;
		}
	}
	return i;
}

bool policy_parse_statuses(const char *list, struct policy *p)
{
	struct policy q = *p;
	if (strcmp(list, "none") == 0) {
		p->nstatuses = 0;
		return true;
	}
	q.nstatuses = 0;
	for (const char *s = list;;) {
		const char *end = strchr(s, ',');
		size_t l = end ? (size_t)(end - s) : strlen(s);
		if (l == 0 || l > POLICY_STATUS_MAX || status_at(s, l, "45") != l ||
		    q.nstatuses == POLICY_STATUSES_MAX)
			return false;
		memcpy(q.statuses[q.nstatuses], s, l);
		q.statuses[q.nstatuses++][l] = '\0';
		if (!end)
			break;
		s = end + 1;
	}
	*p = q;
	return true;
}

bool policy_status_find(const char *s, size_t len, char out[POLICY_STATUS_MAX + 1])
{
	if (!s)
		return false;
	if (len > POLICY_DIAG_SCAN_MAX)
		len = POLICY_DIAG_SCAN_MAX;
	for (size_t i = 0; i < len; i++) {
		if (i > 0 && joins(s[i - 1]))
			continue;
		size_t l = status_at(s + i, len - i, "245");
		if (l == 0 || (i + l < len && joins(s[i + l]) &&
				  /* a sentence's full stop may end it */
				  !(s[i + l] == '.' && (i + l + 1 == len || !joins(s[i + l + 1])))))
			continue;
		memcpy(out, s + i, l);
		out[l] = '\0';
		return true;
	}
	return false;
}

bool policy_status_listed(const struct policy *p, const char *status)
{
	for (size_t i = 0; status[0] && i < p->nstatuses; i++)
		if (strcmp(p->statuses[i], status) == 0)
			return true;
	return false;
}

/* obj's string member name, NULL when absent or not a string (borrowed). */
static struct json_object *string_member(struct json_object *obj, const char *name)
{
	struct json_object *v;
	if (!json_object_object_get_ex(obj, name, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return v;
}

void policy_event_read(const char *json, size_t len, int64_t time_ms,
		       struct policy_event *out)
{
	memset(out, 0, sizeof(*out));
	out->time_ms = time_ms;
	out->kind = POLICY_EV_OTHER;
	if (!json || len > INT32_MAX)
		return;
	struct json_tokener *tok = json_tokener_new_ex(8);
	if (!tok)
		return;
	struct json_object *ev = json_tokener_parse_ex(tok, json, (int)len);
	json_tokener_free(tok);
	if (!json_object_is_type(ev, json_type_object))
		goto out;
	struct json_object *type = string_member(ev, "type"), *detail = NULL;
	if (!type)
		goto out;
	const char *t = json_object_get_string(type);
	if (strcmp(t, "Delivery") == 0) {
		out->kind = POLICY_EV_DELIVERY;
	} else if (strcmp(t, "Complaint") == 0) {
		out->kind = POLICY_EV_COMPLAINT;
	} else if (strcmp(t, "Bounce") == 0 && json_object_object_get_ex(ev, "detail", &detail) &&
		   json_object_is_type(detail, json_type_object)) {
		struct json_object *bt = string_member(detail, "bounceType");
		const char *b = bt ? json_object_get_string(bt) : "";
		if (strcmp(b, "Permanent") == 0) {
			out->kind = POLICY_EV_PERMANENT;
		} else if (strcmp(b, "Transient") == 0 || strcmp(b, "Undetermined") == 0) {
			out->kind = POLICY_EV_SOFT;
			out->undetermined = b[0] == 'U';
			struct json_object *st = string_member(detail, "status");
			struct json_object *dc = string_member(detail, "diagnosticCode");
			if (!(st && policy_status_find(json_object_get_string(st),
						       (size_t)json_object_get_string_len(st),
						       out->status)) &&
			    dc)
				policy_status_find(json_object_get_string(dc),
						   (size_t)json_object_get_string_len(dc), out->status);
		}
	}
out:
	json_object_put(ev);
}

enum policy_reason policy_index_code(const struct policy *p, const struct policy_event *ev)
{
	switch (ev->kind) {
	case POLICY_EV_COMPLAINT:
		return POLICY_COMPLAINT;
	case POLICY_EV_PERMANENT:
		return POLICY_PERMANENT;
	case POLICY_EV_SOFT:
		if (policy_status_listed(p, ev->status))
			return POLICY_STATUS;
		return p->soft_bounces > 0 ? POLICY_REPEATED : POLICY_NONE;
	default:
		return POLICY_NONE;
	}
}

/* Tie order: a higher rank wins. */
static int rank(enum policy_reason r)
{
	switch (r) {
	case POLICY_PERMANENT:
		return 4;
	case POLICY_STATUS:
		return 3;
	case POLICY_REPEATED:
		return 2;
	case POLICY_COMPLAINT:
		return 1;
	default:
		return 0;
	}
}

void policy_result_merge(struct policy_result *a, const struct policy_result *b)
{
	if (b->reason == POLICY_NONE)
		return;
	if (a->reason == POLICY_NONE || b->time_ms > a->time_ms ||
	    (b->time_ms == a->time_ms && rank(b->reason) > rank(a->reason)))
		*a = *b;
}

void policy_evaluate(const struct policy *p, const struct policy_event *ev, size_t n,
		     struct policy_result *out)
{
	/* The soft bounces since the last delivery, newest first: only the
	 * last N times are needed for the window. */
	int64_t win[POLICY_SOFT_BOUNCES_MAX];
	size_t nsoft = 0;
	bool delivered = false, repeated = false;
	unsigned need = p->soft_bounces;

	memset(out, 0, sizeof(*out));
	out->reason = POLICY_NONE;
	if (n > POLICY_EVENTS_MAX)
		n = POLICY_EVENTS_MAX;
	for (size_t i = 0; i < n; i++) {
		struct policy_result r = {POLICY_NONE, ev[i].time_ms, false, ""};
		switch (ev[i].kind) {
		case POLICY_EV_DELIVERY:
			delivered = true;
			break;
		case POLICY_EV_COMPLAINT:
			r.reason = POLICY_COMPLAINT;
			break;
		case POLICY_EV_PERMANENT:
			r.reason = POLICY_PERMANENT;
			break;
		case POLICY_EV_SOFT:
			if (policy_status_listed(p, ev[i].status)) {
				r.reason = POLICY_STATUS;
				r.undetermined = ev[i].undetermined;
				memcpy(r.status, ev[i].status, sizeof(r.status));
			}
			if (delivered || repeated || need == 0)
				break;
			/* win is a ring of the last `need` soft bounce times. */
			win[nsoft % need] = ev[i].time_ms;
			nsoft++;
			if (nsoft >= need) {
				int64_t newest = win[(nsoft - need) % need];
				if (newest - ev[i].time_ms <= (int64_t)p->soft_days * DAY_MS) {
					struct policy_result rr = {POLICY_REPEATED, newest, false, ""};
					policy_result_merge(out, &rr);
					repeated = true;
				}
			}
			break;
		default:
			break;
		}
		policy_result_merge(out, &r);
	}
}

const char *policy_reason_name(enum policy_reason r)
{
	switch (r) {
	case POLICY_COMPLAINT:
		return "Complaint";
	case POLICY_PERMANENT:
		return "Bounce/Permanent";
	case POLICY_STATUS:
		return "Bounce/Status";
	case POLICY_REPEATED:
		return "Bounce/Repeated";
	default:
		return NULL;
	}
}

void policy_reason_text(const struct policy *p, const struct policy_result *r,
			char out[POLICY_TEXT_MAX])
{
	const char *meaning = "a status listed in --suppress-statuses";
	out[0] = '\0';
	switch (r->reason) {
	/* The two common ones copied, not printed: a check answers up to
	 * 1,000 of them. */
	case POLICY_COMPLAINT:
		memcpy(out, "complaint from the recipient", sizeof("complaint from the recipient"));
		break;
	case POLICY_PERMANENT:
		memcpy(out, "permanent bounce", sizeof("permanent bounce"));
		break;
	case POLICY_STATUS:
		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			if (strcmp(known[i].code, r->status) == 0)
				meaning = known[i].meaning;
		snprintf(out, POLICY_TEXT_MAX,
			 "%s bounce %s: %s, a status mailbox providers use for a permanent "
			 "condition",
			 r->undetermined ? "undetermined" : "transient", r->status, meaning);
		break;
	case POLICY_REPEATED:
		snprintf(out, POLICY_TEXT_MAX, "%u soft bounces within %u days and no delivery since",
			 p->soft_bounces, p->soft_days);
		break;
	default:
		break;
	}
}

void policy_digest(const struct policy *p, char out[16])
{
	if (p->nstatuses == 0 && p->soft_bounces == 0) {
		snprintf(out, 16, "1");
		return;
	}
	/* FNV-1a (32 bits) over the policy as text: the statuses as listed
	 * (their order does not change what is decided, but a reordered
	 * flag only costs a rebuild), N and D. */
	char text[POLICY_STATUSES_MAX * (POLICY_STATUS_MAX + 1) + 32];
	size_t l = 0;
	for (size_t i = 0; i < p->nstatuses; i++)
		l += (size_t)snprintf(text + l, sizeof(text) - l, "%s,", p->statuses[i]);
	snprintf(text + l, sizeof(text) - l, ";%u;%u", p->soft_bounces, p->soft_days);
	uint32_t h = 2166136261u;
	for (const unsigned char *c = (const unsigned char *)text; *c; c++)
		h = (h ^ *c) * 16777619u;
	snprintf(out, 16, "2-%08x", (unsigned)h);
}
