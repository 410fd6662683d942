#include "confirm.h"

#include <stdio.h>
#include <stdlib.h>

enum mt_err confirm_subscription(const char *url, const struct fetch_opts *o,
				 char *errbuf, size_t errsz)
{
	struct fetch_opts capped = *o;
	char *body;
	size_t len;
	long status;

	capped.max_bytes = CONFIRM_RESPONSE_MAX;
	enum mt_err err = fetch_get(url, &capped, MT_E_CONFIRM, &body, &len,
				    &status, errbuf, errsz);
	if (err)
		return err;
	free(body);
	if (status < 200 || status > 299) {
		snprintf(errbuf, errsz, "HTTP status %ld", status);
		return MT_E_CONFIRM;
	}
	return MT_E_OK;
}
