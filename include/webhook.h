/* webhook.h - one SNS delivery, from body to answer:
 *   envelope (sns) -> topic allowed -> URLs allowed (url) -> age ->
 *   certificate (certcache) -> signature (verify) ->
 *   Notification: events (ses) -> store (or, while Redis is unavailable,
 *   the spool);  SubscriptionConfirmation:
 *   confirm;  UnsubscribeConfirmation: note.
 * No HTTP here: the caller maps the result to a status and a body.
 */
#ifndef WEBHOOK_H
#define WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>

#include "certcache.h"
#include "config.h"
#include "fetch.h"
#include "mt_error.h"
#include "spool.h"
#include "store.h"

struct webhook {
	const struct config *cfg;
	struct certcache *certs;
	struct store *store;
	struct fetch_opts fetch; /* for SubscribeURL */
	bool want_recipients;    /* fill webhook_result.recipients (debug logs) */
	struct spool *spool;     /* NULL: no --spool-dir */
};

/* What happened, for the answer and the log line. */
struct webhook_result {
	enum mt_err err;
	const char *status;  /* "stored", "duplicate", "confirmed", "noted" */
	const char *type;    /* SNS Type, when known */
	char message_id[128];
	char topic[256];
	size_t events;       /* events parsed from the message */
	size_t added;        /* of which new */
	bool raw;            /* kept under its topic */
	bool spooled;        /* Redis failed; synced to the spool instead */
	bool cert_fetched;
	char detail[512];    /* why it failed, or the SubscribeURL to visit */
	char recipients[512]; /* with want_recipients: "a@x,b@y" (cut short) */
};

/* Handles one delivery.  type_header is x-amz-sns-message-type (or NULL). */
void webhook_handle(struct webhook *w, const char *body, size_t len,
		    const char *type_header, struct webhook_result *res);

/* Stores a notification body taken from the spool: verified before it was
 * spooled, so it is only parsed and stored (never spooled again). */
void webhook_store_spooled(struct webhook *w, const char *body, size_t len,
			   struct webhook_result *res);

#endif
