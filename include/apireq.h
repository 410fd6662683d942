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
 * Anything else under /v1/ is not found; paths outside /v1/ are the
 * console's files.
 */
#ifndef APIREQ_H
#define APIREQ_H

#include <stdbool.h>
#include <stddef.h>

#include "ses.h"
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
};

/* Starts an empty query for route: the defaults (limit APIREQ_LIMIT_DEFAULT). */
void apireq_query_init(struct apireq_query *p, enum apireq_route route);

/* Takes one decoded parameter (value NULL when it had no '=').  Returns
 * false, with p->bad (borrowing key) and p->why set, when it is unknown for
 * the route or its value is not acceptable; once false, stays false.
 * limit: 1..STORE_PAGE_MAX; before, after: ms since the epoch (the timeline
 * only takes after); type: an SES event type name. */
bool apireq_parse_param(struct apireq_query *p, const char *key, const char *value);

/* After the last parameter: the checks between parameters (after must be
 * less than before).  Returns false with p->bad and p->why set. */
bool apireq_query_finish(struct apireq_query *p);

#endif
