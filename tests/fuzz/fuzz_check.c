/* libFuzzer harness: the body of the bulk suppression check
 * (apireq_parse_check) and the CSV field writer the export uses.  What
 * the parser answers is checked against its contract: an error has a
 * reason and leaves nothing; a success has at most
 * APIREQ_CHECK_ADDRESSES_MAX entries, each valid one normalised (no upper
 * case, no space, an '@'). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "apireq.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void check_entry(const struct apireq_check_entry *e)
{
	if (!e->given || !e->normalized || strlen(e->normalized) != (e->valid ? e->normalized_len : 0))
		abort();
	if (!e->valid) {
		if (e->normalized[0])
			abort();
		return;
	}
	size_t n = strlen(e->normalized);
	if (n == 0 || n > SES_ADDRESS_MAX || !strchr(e->normalized, '@'))
		abort();
	for (size_t i = 0; i < n; i++)
		if (isupper((unsigned char)e->normalized[i]) || (unsigned char)e->normalized[i] <= ' ')
			abort();
}

/* apireq_csv_field: quoted exactly when needed, and reads back. */
static void check_csv(const char *s, size_t len)
{
	char *out = malloc(2 * len + 3);
	if (!out)
		return;
	size_t n = apireq_csv_field(s, len, out);
	if (n > 2 * len + 2)
		abort();
	if (n == len) {
		if (memcmp(out, s, len) != 0 || memchr(s, ',', len) || memchr(s, '"', len) ||
		    memchr(s, '\r', len) || memchr(s, '\n', len))
			abort();
	} else {
		if (out[0] != '"' || out[n - 1] != '"')
			abort();
		size_t j = 0;
		for (size_t i = 1; i + 1 < n; i++, j++) {
			if (out[i] == '"' && out[++i] != '"')
				abort();
			if (j >= len || out[i] != s[j])
				abort();
		}
		if (j != len)
			abort();
	}
	free(out);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct apireq_check c;
	const char *why = NULL;
	enum mt_err e = apireq_parse_check((const char *)data, size, &c, &why);
	if (!why)
		abort();
	if (e != MT_E_OK) {
		if (!*why || c.n != 0)
			abort();
	} else {
		/* Read by the fast reader (no json-c root: its entries point
		 * into data) or by json-c. */
		if (c.n > APIREQ_CHECK_ADDRESSES_MAX || (!c.root && c.n && !c.v))
			abort();
		for (size_t i = 0; i < c.n; i++) {
			check_entry(&c.v[i]);
			check_csv(c.v[i].given, c.v[i].given_len);
		}
	}
	apireq_check_free(&c);
	check_csv((const char *)data, size > 4096 ? 4096 : size);
	return 0;
}
