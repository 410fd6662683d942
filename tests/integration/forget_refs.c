/* forget_refs - runs store_forget_message_refs() once, for the integration
 * tests of the message index (test_api.py, TestMessages), until the erasure
 * route that calls it exists.
 *   forget_refs REDIS_URL PREFIX RETENTION_DAYS ADDRESS
 * Exits 0 when it succeeded, 1 with the error on stderr otherwise, 2 on bad
 * arguments. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "store.h"

int main(int argc, char **argv)
{
	struct config_redis redis = {0};
	char err[256] = "";
	char address[SES_ADDRESS_MAX + 1];

	if (argc != 5 || !config_parse_redis_url(argv[1], &redis) ||
	    !ses_address_normalize(argv[4], strlen(argv[4]), address)) {
		fprintf(stderr, "usage: forget_refs REDIS_URL PREFIX RETENTION_DAYS ADDRESS\n");
		return 2;
	}
	struct store *st = store_new(&redis, argv[2], (unsigned)strtoul(argv[3], NULL, 10));
	if (!st) {
		fprintf(stderr, "out of memory\n");
		return 1;
	}
	enum mt_err e = store_forget_message_refs(st, address, err, sizeof(err));
	if (e != MT_E_OK)
		fprintf(stderr, "%s: %s\n", mt_err_str(e), err);
	store_free(st);
	return e == MT_E_OK ? 0 : 1;
}
