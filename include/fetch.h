/* fetch.h - outbound HTTPS GET with libcurl, and nothing more.
 *
 * Only URLs that passed url_check() reach this module.  It re-parses the URL
 * with curl's own parser and refuses when curl would talk to another
 * authority than the one url_check() judged, so the two parsers cannot be
 * played against each other.  https only, no redirects, capped body,
 * short timeouts, peer verification always on.
 */
#ifndef FETCH_H
#define FETCH_H

#include <stddef.h>

#include "mt_error.h"

/* Outbound HTTPS limits (certificate downloads, subscription
 * confirmations): SNS waits about 15 s for our answer, and a fetch thread
 * (ingest.h) waits for the fetch while the request is suspended.  The
 * connect timeout covers the TLS handshake too. */
#define FETCH_CONNECT_TIMEOUT_MS 2000
#define FETCH_TIMEOUT_MS 5000 /* the whole transfer, TLS and DNS included */

struct fetch_opts {
	const char *ca_file;     /* NULL: system store */
	size_t max_bytes;        /* larger bodies fail */
	long connect_timeout_ms;
	long timeout_ms;         /* whole transfer */
};

/* Process-wide libcurl setup; call once before threads start. */
void fetch_global_init(void);
void fetch_global_cleanup(void);

/* GETs url.  On MT_E_OK *body is a malloc'd NUL-terminated buffer (caller
 * frees) of *len bytes and *status the HTTP status (any status: the caller
 * judges it).  fail_err is returned on any transport failure; errbuf gets
 * a one-line reason (at least 256 bytes). */
enum mt_err fetch_get(const char *url, const struct fetch_opts *o,
		      enum mt_err fail_err, char **body, size_t *len,
		      long *status, char *errbuf, size_t errsz);

#endif
