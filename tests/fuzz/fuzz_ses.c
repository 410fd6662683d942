/* libFuzzer harness: SES normalisation and address normalisation.  Every
 * input is read twice, by ses_events_parse() (the fast reader, json-c for
 * what it leaves) and by ses_events_parse_reference() (json-c alone): the
 * two must agree on every byte, or the harness aborts. */
#include <stdlib.h>
#include <string.h>

#include "ses.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

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
	ses_events_free(&evs);
	ses_events_free(&ref);
	char out[SES_ADDRESS_MAX + 1];
	ses_address_normalize((const char *)data, size, out);
	return 0;
}
