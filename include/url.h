/* url.h - which URLs mailtrail may ever fetch.
 *
 * SigningCertURL is not covered by the signature and SubscribeURL is only
 * trusted once the signature checks out, so both are judged here before any
 * network access.  Pure.
 */
#ifndef URL_H
#define URL_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

#include "mt_error.h"

/* Longest URL considered. */
#define URL_LEN_MAX 2048
/* Longest cert file name kept in --cert-cache-dir. */
#define URL_FILE_NAME_MAX 200

enum url_kind {
	URL_SIGNING_CERT, /* also needs a path ending in ".pem" */
	URL_SUBSCRIBE,
};

/* MT_E_OK when url[0..len) is "https://AUTHORITY[/path][?query]" with no
 * user info, no fragment, only printable ASCII without spaces or
 * backslashes, an AUTHORITY (host or host:port exactly as written) that
 * host_re matches, and - for URL_SIGNING_CERT - a path ending in ".pem".
 * Otherwise MT_E_CERT_URL or MT_E_SUBSCRIBE_URL according to kind. */
enum mt_err url_check(const char *url, size_t len, const regex_t *host_re,
		      enum url_kind kind);

/* Copies the authority of a URL that passed url_check into out.  Returns
 * false when it does not fit. */
bool url_authority(const char *url, char *out, size_t outsz);

/* The last path segment of a URL that passed url_check (e.g.
 * "SimpleNotificationService-abc.pem"), into out.  Returns false unless it
 * is a safe file name: [A-Za-z0-9._-], not starting with '.', shorter than
 * URL_FILE_NAME_MAX. */
bool url_file_name(const char *url, char out[URL_FILE_NAME_MAX]);

#endif
