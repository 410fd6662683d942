/* libFuzzer harness: SES normalisation and address normalisation, and the
 * suppression policy's readers (policy.h) of what they give.  Every
 * input is read twice, by ses_events_parse() (the fast reader, json-c for
 * what it leaves) and by ses_events_parse_reference() (json-c alone): the
 * two must agree on every byte, or the harness aborts. */
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "ses.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* A status code the policy found is one it finds again, whole. */
static void check_status(const char *status)
{
	char again[POLICY_STATUS_MAX + 1];
	size_t l = strlen(status);
	if (l == 0)
		return;
	if (l > POLICY_STATUS_MAX || !policy_status_find(status, l, again) ||
	    strcmp(again, status) != 0)
		abort();
}

/* The policy over the events as the store reads them (newest first). */
static void check_policy(const struct ses_events *evs)
{
	struct policy_event pe[8];
	struct policy p;
	struct policy_result r;
	size_t n = 0;
	policy_default(&p);
	p.soft_bounces = 2;
	for (size_t i = 0; i < evs->n && n < 8; i++) {
		policy_event_read(evs->v[i].json, evs->v[i].json_len, evs->v[i].time_ms, &pe[n]);
		check_status(pe[n].status);
		/* ses.c's suppression and the policy's reading agree. */
		if ((evs->v[i].suppress != NULL) !=
		    (pe[n].kind == POLICY_EV_COMPLAINT || pe[n].kind == POLICY_EV_PERMANENT))
			abort();
		n++;
	}
	policy_evaluate(&p, pe, n, &r);
	char text[POLICY_TEXT_MAX];
	policy_reason_text(&p, &r, text);
	if ((r.reason == POLICY_NONE) != (text[0] == '\0'))
		abort();
}

static bool same_event(const struct ses_event *a, const struct ses_event *b)
{
	return strcmp(a->recipient, b->recipient) == 0 && a->time_ms == b->time_ms &&
	       a->type == b->type && a->suppress == b->suppress &&
	       a->count_type == b->count_type &&
	       a->json_len == b->json_len && memcmp(a->json, b->json, a->json_len) == 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	/* Every other input with a time limit (2017-07-14T02:40:00Z, between
	 * the times of the seeds), so that both readers' rule is compared. */
	struct ses_context ctx = {"fuzz-id", "arn:aws:sns:us-east-1:1:fuzz", size % 2 == 0,
				  size % 4 < 2 ? 1500000000000 : 0};
	struct ses_events evs, ref;
	enum mt_err err = ses_events_parse((const char *)data, size, &ctx, &evs);
	enum mt_err ref_err = ses_events_parse_reference((const char *)data, size, &ctx, &ref);
	if (err != ref_err || evs.keep_raw != ref.keep_raw || evs.n != ref.n ||
	    evs.time_implausible != ref.time_implausible)
		abort();
	/* The counters' names (set with the events). */
	if (evs.n > 0 && (strcmp(evs.identity, ref.identity) != 0 ||
			  strcmp(evs.config_set, ref.config_set) != 0))
		abort();
	for (size_t i = 0; i < evs.n; i++)
		if (!same_event(&evs.v[i], &ref.v[i]))
			abort();
	check_policy(&evs);
	char status[POLICY_STATUS_MAX + 1];
	if (policy_status_find((const char *)data, size, status))
		check_status(status);
	ses_events_free(&evs);
	ses_events_free(&ref);
	char out[SES_ADDRESS_MAX + 1];
	ses_address_normalize((const char *)data, size, out);
	return 0;
}
