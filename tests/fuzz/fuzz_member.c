/* libFuzzer harness: the compact member (member.h).  Each input is read
 * as an SES message: every EVENT it yields must come back byte for byte
 * from its compact member, also with an escaped recipient; and as a member
 * as Redis might hold it, which member_to_event() must read without
 * fault (and give back as it is when it is no compact member). */
#include <stdlib.h>
#include <string.h>

#include "member.h"
#include "ses.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void round_trip(const struct ses_event *e)
{
	struct member_compact c;
	struct buf back = {0};
	if (member_from_event(e->json, e->json_len, e->time_ms, &c) != MT_E_OK)
		return;
	if (member_to_event(c.member, c.len, e->recipient, e->time_ms, c.arn, c.arn_len,
			    &back) != MT_E_OK ||
	    back.len != e->json_len || memcmp(back.p, e->json, back.len) != 0)
		abort();
	/* The redelivery prefix is kept. */
	size_t n = strcspn(e->json + 7, "\"") + 8;
	if (c.len < n || memcmp(c.member, e->json, n) != 0)
		abort();
	char ref[MEMBER_TOPIC_REF_LEN + 1];
	if (c.topic_ref[0] && (!member_find_topic_ref(c.member, c.len, ref) ||
			       strcmp(ref, c.topic_ref) != 0))
		abort();
	buf_free(&back);
	free(c.member);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct ses_context ctx = {"fuzz-id", "arn:aws:sns:us-east-1:1:fuzz", size % 2 == 0, 0};
	struct ses_events evs;
	if (ses_events_parse((const char *)data, size, &ctx, &evs) == MT_E_OK)
		for (size_t i = 0; i < evs.n; i++)
			round_trip(&evs.v[i]);
	ses_events_free(&evs);

	char *m = malloc(size + 1);
	if (!m)
		return 0;
	memcpy(m, data, size);
	m[size] = '\0';
	struct buf out = {0};
	char ref[MEMBER_TOPIC_REF_LEN + 1];
	bool compact = member_find_topic_ref(m, size, ref);
	enum mt_err err = member_to_event(m, size, "fuzz@example.com", 1500000000000, compact ? "arn" : NULL,
					  3, &out);
	if (err == MT_E_OK && !compact && (out.len != size || memcmp(out.p, m, size) != 0))
		abort();
	buf_free(&out);
	free(m);
	return 0;
}
