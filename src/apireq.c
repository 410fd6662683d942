#include "apireq.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
