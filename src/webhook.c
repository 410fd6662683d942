#include "webhook.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confirm.h"
#include "metrics.h"
#include "mt_time.h"
#include "ses.h"
#include "sns.h"
#include "url.h"
#include "verify.h"

/* s into dst, cut short to fit (dstsz > 0). */
static void copy_field(char *dst, size_t dstsz, const struct sns_str *s)
{
	size_t n = s->p ? s->len : 0;
	if (n >= dstsz)
		n = dstsz - 1;
	if (n)
		memcpy(dst, s->p, n);
	dst[n] = '\0';
}

/* Appends ",address" (no comma first) to list while it fits. */
static void append_recipient(char *list, size_t size, const char *address)
{
	size_t used = strlen(list);
	snprintf(list + used, size - used, "%s%s", used ? "," : "", address);
}

/* The member kept for a notification that is not an indexable SES event:
 * enough to read it back later.  Returns a json-c object (caller puts it). */
static struct json_object *raw_record(const struct sns_message *m)
{
	struct json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	const struct {
		const char *key;
		enum sns_field f;
	} keep[] = {
		{"id", SNS_F_MESSAGE_ID},     {"type", SNS_F_TYPE},
		{"timestamp", SNS_F_TIMESTAMP}, {"topicArn", SNS_F_TOPIC_ARN},
		{"subject", SNS_F_SUBJECT},   {"message", SNS_F_MESSAGE},
	};
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
		const struct sns_str *s = &m->f[keep[i].f];
		if (s->p)
			json_object_object_add(o, keep[i].key,
					       json_object_new_string_len(s->p, (int)s->len));
	}
	return o;
}

/* Parses a notification's message into what it writes: its events, and
 * the raw record when it is not (fully) an indexable SES event. */
static enum mt_err prepare_notification(struct webhook *w, struct webhook_pending *p,
					struct webhook_result *res)
{
	const struct sns_message *m = &p->m;
	const struct sns_str *msg = &m->f[SNS_F_MESSAGE];
	/* SES stamps an event before SNS publishes it: an event time later
	 * than the Timestamp (or than now, if this clock is behind SNS's) by
	 * more than SES_TIME_AHEAD_MAX_MS is not believed.  A captured
	 * payload replayed later still has its own Timestamp, so it is
	 * judged as it was live. */
	int64_t now = mt_time_now_ms();
	int64_t base = m->timestamp_ms < now ? m->timestamp_ms : now;
	struct ses_context ctx = {
		.sns_message_id = m->f[SNS_F_MESSAGE_ID].p,
		.topic_arn = m->f[SNS_F_TOPIC_ARN].p,
		.keep_headers = w->cfg->keep_headers,
		.time_max_ms = base + SES_TIME_AHEAD_MAX_MS,
	};

	/* A redelivery (also to a copy with other flags or version) adds
	 * nothing: the store recognises a message's events by id and time. */
	enum mt_err err = ses_events_parse(msg->p, msg->len, &ctx, &p->evs);
	if (err)
		return err;
	res->events = p->evs.n;
	for (size_t i = 0; w->want_recipients && i < p->evs.n; i++)
		append_recipient(res->recipients, sizeof(res->recipients), p->evs.v[i].recipient);
	p->item = (struct store_item){.evs = &p->evs, .errbuf = res->detail,
				      .errsz = sizeof(res->detail)};
	res->time_implausible = p->evs.time_implausible;
	if (p->evs.keep_raw) {
		res->raw = true;
		struct json_object *rec = raw_record(m);
		const char *js = rec ? json_object_to_json_string_ext(
			rec, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE) : NULL;
		p->raw = js ? strdup(js) : NULL;
		json_object_put(rec);
		if (!p->raw)
			return MT_E_NOMEM;
		p->item.raw_topic = m->f[SNS_F_TOPIC_ARN].p;
		p->item.raw_time_ms = m->timestamp_ms;
		p->item.raw_json = p->raw;
		p->item.raw_len = strlen(p->raw);
	}
	p->res = res;
	return MT_E_OK;
}

/* Redis cannot take the message now: with a spool, it is kept there
 * (durably) and is as good as stored; without, SNS must try again. */
static enum mt_err spool_notification(struct webhook *w, const char *body,
				      size_t len, struct webhook_result *res)
{
	char why[sizeof(res->detail)];
	enum mt_err err = spool_append(w->spool, body, len, why, sizeof(why));
	if (err) {
		snprintf(res->detail, sizeof(res->detail), "%s", why);
		return err;
	}
	/* detail keeps the Redis error: why it was spooled. */
	res->spooled = true;
	res->status = "stored";
	return MT_E_OK;
}

static enum mt_err parse(const char *body, size_t len, struct sns_message *m,
			 struct webhook_result *res)
{
	enum mt_err err = sns_envelope_parse(body, len, m);
	if (m->f[SNS_F_TYPE].p)
		res->type = sns_type_name(m->type);
	copy_field(res->message_id, sizeof(res->message_id), &m->f[SNS_F_MESSAGE_ID]);
	copy_field(res->topic, sizeof(res->topic), &m->f[SNS_F_TOPIC_ARN]);
	return err;
}

/* Everything up to the signing certificate, on the loop: the envelope,
 * the topic, the URLs, the age, then the certificate if memory has it
 * (*cert, a reference the caller drops).  MT_E_OK with *cert NULL: the
 * certificate needs the disk or the network (webhook_fetch). */
static enum mt_err check(struct webhook *w, const char *body, size_t len,
			 const char *type_header, struct webhook_pending *p,
			 struct webhook_result *res, X509 **cert)
{
	const struct config *cfg = w->cfg;
	const struct sns_message *m = &p->m;
	enum mt_err err;

	*cert = NULL;
	err = parse(body, len, &p->m, res);
	if (err)
		return err;
	/* A parsed envelope always has its Type. */
	if (type_header && strcmp(type_header, m->f[SNS_F_TYPE].p) != 0) /* NOLINT(clang-analyzer-core.NonNullParamChecker) */
		return MT_E_TYPE_MISMATCH;

	/* Nothing is fetched for a topic that is not ours. */
	if (!config_topic_allowed(cfg, m->f[SNS_F_TOPIC_ARN].p))
		return MT_E_TOPIC;

	const struct sns_str *cu = &m->f[SNS_F_SIGNING_CERT_URL];
	err = url_check(cu->p, cu->len, &cfg->cert_host_re, URL_SIGNING_CERT);
	if (err)
		return err;
	const struct sns_str *su = &m->f[SNS_F_SUBSCRIBE_URL];
	if (m->type == SNS_SUBSCRIPTION_CONFIRMATION) {
		err = url_check(su->p, su->len, &cfg->cert_host_re, URL_SUBSCRIBE);
		if (err)
			return err;
	}
	if (cfg->max_age_s > 0 &&
	    mt_time_now_ms() - m->timestamp_ms > cfg->max_age_s * 1000)
		return MT_E_TOO_OLD;

	if (!certcache_lookup(w->certs, cu->p, cert, &err, res->detail,
			      sizeof(res->detail)))
		return MT_E_OK; /* not in memory: *cert stays NULL */
	return err;
}

/* The signature against cert (whose reference this takes). */
static enum mt_err verify(struct webhook *w, struct webhook_pending *p, X509 *cert)
{
	const char *url = p->m.f[SNS_F_SIGNING_CERT_URL].p;
	enum mt_err err = verify_signature(&p->m, cert);
	if (err == MT_E_OK) {
		certcache_mark_verified(w->certs, url, cert);
		p->verified = true;
	}
	X509_free(cert);
	return err;
}

/* Whether what a verified message asks for needs the network. */
static bool needs_network(const struct webhook *w, const struct sns_message *m)
{
	return m->type == SNS_SUBSCRIPTION_CONFIRMATION && w->cfg->auto_confirm;
}

/* A verified message's action: a notification to write, a subscription to
 * confirm (a GET of its SubscribeURL: never on a loop), a note. */
static enum mt_err act(struct webhook *w, struct webhook_pending *p,
		       struct webhook_result *res)
{
	const struct sns_message *m = &p->m;
	const struct sns_str *su = &m->f[SNS_F_SUBSCRIBE_URL];
	enum mt_err err;

	switch (m->type) {
	case SNS_NOTIFICATION:
		return prepare_notification(w, p, res);
	case SNS_SUBSCRIPTION_CONFIRMATION:
		if (!w->cfg->auto_confirm) {
			snprintf(res->detail, sizeof(res->detail), "%s", su->p);
			res->status = "noted";
			return MT_E_OK;
		}
		if (atomic_fetch_add(&w->confirming, 1) >= WEBHOOK_CONFIRMS_MAX) {
			atomic_fetch_sub(&w->confirming, 1);
			snprintf(res->detail, sizeof(res->detail),
				 "%d confirmation already under way", WEBHOOK_CONFIRMS_MAX);
			return MT_E_CONFIRM;
		}
		err = confirm_subscription(su->p, &w->fetch, res->detail,
					   sizeof(res->detail));
		atomic_fetch_sub(&w->confirming, 1);
		if (err)
			return err;
		res->status = "confirmed";
		return MT_E_OK;
	case SNS_UNSUBSCRIBE_CONFIRMATION:
		/* Never visit its SubscribeURL: that would subscribe again. */
		res->status = "noted";
		return MT_E_OK;
	}
	return MT_E_INTERNAL;
}

static void pending_free(struct webhook_pending *p)
{
	ses_events_free(&p->evs);
	free(p->raw);
	sns_message_free(&p->m);
	memset(p, 0, sizeof(*p));
}

/* The step after a result: a write to wait for, or an answer. */
static enum webhook_step settle(struct webhook_pending *p, struct webhook_result *res)
{
	if (res->err == MT_E_OK && p->res)
		return WEBHOOK_WRITE;
	pending_free(p);
	return WEBHOOK_DONE;
}

enum webhook_step webhook_begin(struct webhook *w, const char *body, size_t len,
				const char *type_header, struct webhook_result *res,
				struct webhook_pending *p)
{
	X509 *cert;
	memset(res, 0, sizeof(*res));
	memset(p, 0, sizeof(*p));
	p->body = body;
	p->len = len;
	res->err = check(w, body, len, type_header, p, res, &cert);
	if (res->err == MT_E_OK && !cert)
		return WEBHOOK_FETCH;
	if (res->err == MT_E_OK)
		res->err = verify(w, p, cert);
	if (res->err == MT_E_OK && needs_network(w, &p->m))
		return WEBHOOK_FETCH;
	if (res->err == MT_E_OK)
		res->err = act(w, p, res);
	return settle(p, res);
}

enum webhook_step webhook_begin_trusted(struct webhook *w, const char *message,
					size_t len, const char *message_id,
					const char *topic, int64_t time_ms,
					struct webhook_result *res,
					struct webhook_pending *p)
{
	char iso[MT_TIME_BUF];
	memset(res, 0, sizeof(*res));
	memset(p, 0, sizeof(*p));
	mt_time_format(time_ms, iso);
	/* The envelope SNS would have sent, in one allocation that the
	 * message owns (sns_message_free), as sns_envelope_parse makes it. */
	const char *vals[] = {message, message_id, topic, iso, "Notification"};
	const enum sns_field fields[] = {SNS_F_MESSAGE, SNS_F_MESSAGE_ID, SNS_F_TOPIC_ARN,
					 SNS_F_TIMESTAMP, SNS_F_TYPE};
	size_t lens[5] = {len, strlen(message_id), strlen(topic), strlen(iso),
			  strlen("Notification")};
	size_t total = 0;
	for (size_t i = 0; i < 5; i++)
		total += lens[i] + 1;
	char *s = malloc(total);
	if (!s) {
		res->err = MT_E_NOMEM;
		return WEBHOOK_DONE;
	}
	p->m.strings = s;
	for (size_t i = 0; i < 5; i++) {
		memcpy(s, vals[i], lens[i]);
		s[lens[i]] = '\0';
		p->m.f[fields[i]] = (struct sns_str){s, lens[i]};
		s += lens[i] + 1;
	}
	p->m.type = SNS_NOTIFICATION;
	p->m.timestamp_ms = time_ms;
	p->verified = true; /* by the caller's word */
	res->type = sns_type_name(SNS_NOTIFICATION);
	copy_field(res->message_id, sizeof(res->message_id), &p->m.f[SNS_F_MESSAGE_ID]);
	copy_field(res->topic, sizeof(res->topic), &p->m.f[SNS_F_TOPIC_ARN]);
	res->err = act(w, p, res);
	return settle(p, res);
}

enum webhook_step webhook_fetch(struct webhook *w, struct webhook_result *res,
				struct webhook_pending *p)
{
	if (!p->verified) {
		X509 *cert = NULL;
		enum certcache_source source;
		res->err = certcache_get(w->certs, p->m.f[SNS_F_SIGNING_CERT_URL].p, &cert,
					 &source, res->detail, sizeof(res->detail));
		res->cert_fetched = res->err == MT_E_OK && source == CERT_FROM_NETWORK;
		if (res->err == MT_E_OK)
			res->err = verify(w, p, cert);
	}
	if (res->err == MT_E_OK)
		res->err = act(w, p, res);
	return settle(p, res);
}

void webhook_cancel(struct webhook_pending *p, struct webhook_result *res,
		    enum mt_err err)
{
	pending_free(p);
	res->err = err;
}

/* The bytes a pending delivery writes. */
static size_t pending_bytes(const struct webhook_pending *p)
{
	size_t n = p->item.raw_len;
	for (size_t i = 0; i < p->evs.n; i++)
		n += p->evs.v[i].json_len;
	return n;
}

void webhook_commit(struct webhook *w, struct webhook_pending *const *ps, size_t n)
{
	struct store_item *items[WEBHOOK_COMMIT_MAX] = {0};
	size_t k = 0, bytes = 0;
	if (n == 0)
		return;
	/* The first k deliveries, within WEBHOOK_COMMIT_MAX and
	 * WEBHOOK_COMMIT_BYTES_MAX (at least one); the rest in the next. */
	for (; k < n && k < WEBHOOK_COMMIT_MAX; k++) {
		size_t b = pending_bytes(ps[k]);
		if (k > 0 && bytes + b > WEBHOOK_COMMIT_BYTES_MAX)
			break;
		bytes += b;
		items[k] = &ps[k]->item;
	}
	store_put_many(w->store, items, k);
	for (size_t i = 0; i < k; i++) {
		struct webhook_pending *p = ps[i];
		struct webhook_result *res = p->res;
		res->added = p->item.added;
		res->stats_failed = p->item.stats_failed;
		res->err = p->item.err;
		/* A write Redis refuses for good is spooled too: the drainer
		 * sets it aside in the quarantine (spool.h), where it waits for
		 * the operator instead of being lost after SNS's retries. */
		if ((res->err == MT_E_REDIS || res->err == MT_E_REDIS_REFUSED) && w->spool &&
		    p->body)
			res->err = spool_notification(w, p->body, p->len, res);
		else if (res->err == MT_E_OK)
			res->status = res->added ? "stored" : "duplicate";
		if (res->err == MT_E_OK && !res->spooled && res->time_implausible &&
		    res->added)
			metrics_add(METRIC_implausible_time_total, 1);
		pending_free(p);
	}
	if (k < n)
		webhook_commit(w, ps + k, n - k);
}

void webhook_store_spooled(struct webhook *w, const char *body, size_t len,
			   struct webhook_result *res)
{
	struct webhook_pending p, *pp = &p;
	memset(res, 0, sizeof(*res));
	memset(&p, 0, sizeof(p));
	res->err = parse(body, len, &p.m, res);
	if (res->err == MT_E_OK && p.m.type != SNS_NOTIFICATION)
		res->err = MT_E_UNKNOWN_TYPE;
	if (res->err == MT_E_OK)
		res->err = prepare_notification(w, &p, res);
	if (res->err == MT_E_OK) /* no body: never spooled again */
		webhook_commit(w, &pp, 1);
	else
		pending_free(&p);
}
