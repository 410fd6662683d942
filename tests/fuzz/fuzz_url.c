/* libFuzzer harness: the URL rules, with the default host pattern. */
#include <stdlib.h>
#include <string.h>

#include "url.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static regex_t re;
	static int ready;
	if (!ready) {
		regcomp(&re, "^sns\\.[a-z0-9-]+\\.amazonaws\\.com(\\.cn)?$", REG_EXTENDED | REG_NOSUB);
		ready = 1;
	}
	char *url = malloc(size + 1);
	if (!url)
		return 0;
	memcpy(url, data, size);
	url[size] = '\0';
	for (int kind = 0; kind < 2; kind++) {
		if (url_check(url, size, &re, (enum url_kind)kind) == MT_E_OK) {
			char name[URL_FILE_NAME_MAX], auth[256];
			url_file_name(url, name);
			url_authority(url, auth, sizeof(auth));
		}
	}
	free(url);
	return 0;
}
