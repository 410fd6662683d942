/* libFuzzer harness: the SNS envelope reader and the string to sign. */
#include <stdlib.h>

#include "sns.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct sns_message m;
	if (sns_envelope_parse((const char *)data, size, &m) == MT_E_OK) {
		size_t len;
		free(sns_string_to_sign(&m, &len));
	}
	sns_message_free(&m);
	return 0;
}
