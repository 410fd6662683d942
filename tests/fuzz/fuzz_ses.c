/* libFuzzer harness: SES normalisation and address normalisation. */
#include "ses.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct ses_context ctx = {"fuzz-id", "arn:aws:sns:us-east-1:1:fuzz", size % 2 == 0};
	struct ses_events evs;
	ses_events_parse((const char *)data, size, &ctx, &evs);
	ses_events_free(&evs);
	char out[SES_ADDRESS_MAX + 1];
	ses_address_normalize((const char *)data, size, out);
	return 0;
}
