/* certcache.h - SNS signing certificates by URL: memory, disk, network.
 *
 * Bounded in memory (least recently used entry evicted), kept on disk in
 * --cert-cache-dir (named by the URL's file name; a file found there is
 * used without any network access), fetched over HTTPS otherwise.  Many
 * threads asking for one new URL at once cause one fetch: the others wait
 * for it.  A failed fetch is remembered for CERTCACHE_RETRY_MS only.
 */
#ifndef CERTCACHE_H
#define CERTCACHE_H

#include <openssl/x509.h>
#include <stdbool.h>

#include "fetch.h"
#include "mt_error.h"

#define CERTCACHE_ENTRIES_MAX 64
#define CERTCACHE_RETRY_MS 2000

struct certcache;

enum certcache_source { CERT_FROM_MEMORY, CERT_FROM_DISK, CERT_FROM_NETWORK };

/* cache_dir may be NULL.  fetch is copied.  Returns NULL on allocation
 * failure; free with certcache_free(). */
struct certcache *certcache_new(const char *cache_dir,
				const struct fetch_opts *fetch);
void certcache_free(struct certcache *cc);

/* The certificate at url (which passed url_check).  On MT_E_OK *cert is a
 * new reference (caller X509_free()s it).  MT_E_CERT_FETCH when it cannot
 * be had right now; errbuf then says why. */
enum mt_err certcache_get(struct certcache *cc, const char *url, X509 **cert,
			  enum certcache_source *source, char *errbuf,
			  size_t errsz);

#endif
