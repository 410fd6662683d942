/* webhook.h - one SNS delivery, from body to answer:
 *   envelope (sns) -> topic allowed -> URLs allowed (url) -> age ->
 *   certificate (certcache: memory on the loop; disk or network in a
 *   fetch thread) -> signature (verify) ->
 *   Notification: events (ses) -> store (or, while Redis is unavailable,
 *   the spool);  SubscriptionConfirmation:
 *   confirm;  UnsubscribeConfirmation: note.
 * No HTTP here: the caller maps the result to a status and a body.
 */
#ifndef WEBHOOK_H
#define WEBHOOK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "certcache.h"
#include "config.h"
#include "fetch.h"
#include "mt_error.h"
#include "spool.h"
#include "sns.h"
#include "store.h"

/* Subscription confirmations (GETs of a SubscribeURL) under way at once;
 * more are answered MT_E_CONFIRM (503: SNS sends the confirmation again). */
#define WEBHOOK_CONFIRMS_MAX 1

struct webhook {
	const struct config *cfg;
	struct certcache *certs;
	struct store *store;
	struct fetch_opts fetch; /* for SubscribeURL */
	bool want_recipients;    /* fill webhook_result.recipients (debug logs) */
	struct spool *spool;     /* NULL: no --spool-dir */
	atomic_int confirming;   /* confirmations under way (zero at start) */
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
	size_t stats_failed; /* of which not counted (store_item.stats_failed) */
	bool raw;            /* kept under its topic */
	bool time_implausible; /* only there: its event time is implausible
				* (SES_TIME_AHEAD_MAX_MS) */
	bool spooled;        /* Redis failed; synced to the spool instead */
	bool cert_fetched;
	char detail[512];    /* why it failed, or the SubscribeURL to visit */
	char recipients[512]; /* with want_recipients: "a@x,b@y" (cut short) */
};

/* A notification verified and parsed, waiting for its writes (the body
 * stays the caller's and must outlive webhook_commit: a delivery Redis
 * cannot take goes to the spool from it). */
struct webhook_pending {
	const char *body;
	size_t len;
	struct sns_message m;
	struct ses_events evs;
	char *raw; /* the raw record's JSON, when kept under its topic */
	struct store_item item;
	struct webhook_result *res; /* NULL: nothing waits */
	bool verified;              /* the signature has been checked */
};

/* Most pending deliveries written in one store_put_many. */
#define WEBHOOK_COMMIT_MAX 64
/* Most bytes of EVENTs and raw records written in one store_put_many (a
 * delivery larger than this goes alone): the writes are formatted as
 * Redis commands, and buffered to be sent, all at once, so this bounds
 * what a batch of large deliveries adds to a writer's memory. */
#define WEBHOOK_COMMIT_BYTES_MAX (4u << 20)

/* What a delivery needs next. */
enum webhook_step {
	WEBHOOK_DONE,  /* res is final: answer it */
	WEBHOOK_WRITE, /* a notification waits in p for webhook_commit */
	WEBHOOK_FETCH, /* p needs the disk or the network: webhook_fetch */
};

/* Handles one delivery as far as it can without blocking: on an event
 * loop, only a certificate already in memory is used.  type_header is
 * x-amz-sns-message-type (or NULL).  WEBHOOK_FETCH when the certificate
 * must be read from the disk cache or downloaded, or a verified
 * SubscriptionConfirmation is to be confirmed (--auto-confirm yes): the
 * caller hands p to a thread that may block, for webhook_fetch (or drops
 * it with webhook_cancel). */
enum webhook_step webhook_begin(struct webhook *w, const char *body, size_t len,
				const char *type_header, struct webhook_result *res,
				struct webhook_pending *p);

/* A notification whose envelope is vouched for by the caller, not by a
 * signature (mailtrail import --trusted-ses: SES events exported without
 * SNS): message is the SES JSON, stored as a verified notification with
 * this MessageId, TopicArn and Timestamp would be (no topic, URL, age or
 * signature rule applies).  WEBHOOK_WRITE or WEBHOOK_DONE. */
enum webhook_step webhook_begin_trusted(struct webhook *w, const char *message,
					size_t len, const char *message_id,
					const char *topic, int64_t time_ms,
					struct webhook_result *res,
					struct webhook_pending *p);

/* Off the event loops, after WEBHOOK_FETCH: gets the certificate (disk,
 * network, or another thread's download of the same URL; at most
 * FETCH_TIMEOUT_MS), verifies, and confirms a subscription.  Returns
 * WEBHOOK_DONE or WEBHOOK_WRITE, as webhook_begin. */
enum webhook_step webhook_fetch(struct webhook *w, struct webhook_result *res,
				struct webhook_pending *p);

/* Drops p (after WEBHOOK_FETCH, when no thread can take it): res becomes
 * final with err. */
void webhook_cancel(struct webhook_pending *p, struct webhook_result *res,
		    enum mt_err err);

/* Writes n pending notifications together and finishes their results
 * (spooling a delivery that Redis could not take, with a spool). */
void webhook_commit(struct webhook *w, struct webhook_pending *const *ps, size_t n);

/* Stores a notification body taken from the spool: verified before it was
 * spooled, so it is only parsed and stored (never spooled again). */
void webhook_store_spooled(struct webhook *w, const char *body, size_t len,
			   struct webhook_result *res);

#endif
