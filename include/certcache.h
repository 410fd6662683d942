/* certcache.h - SNS signing certificates by URL: memory, disk, network.
 *
 * Bounded in memory, kept on disk in --cert-cache-dir (named by the URL's
 * file name; a file found there is used without any network access),
 * fetched over HTTPS otherwise.  Many threads asking for one new URL at
 * once cause one fetch: the others wait for it (CERTCACHE_WAITERS_MAX at
 * most).  The disk and the network are only touched by certcache_get,
 * which the event loops never call (certcache_lookup: memory only).  A failed fetch is
 * remembered for CERTCACHE_RETRY_MS only.
 *
 * Anyone can post made-up certificate URLs on an allowed host, so:
 * downloads are rate-limited (a token bucket; over it the answer is
 * MT_E_CERT_RATE, a 503, and SNS retries), and a certificate that has
 * verified a message (certcache_mark_verified) is never evicted to make
 * room for one that has not.  Eviction takes failed fetches first, then
 * the least recently used certificate that never verified anything.
 */
#ifndef CERTCACHE_H
#define CERTCACHE_H

#include <openssl/x509.h>
#include <stdbool.h>

#include "fetch.h"
#include "mt_error.h"

/* Certificates kept in memory (AWS uses one per region at a time). */
#define CERTCACHE_ENTRIES_MAX 64
/* How long a failed fetch is answered from memory (503) without retrying. */
#define CERTCACHE_RETRY_MS 2000
/* Downloads: at most CERTCACHE_FETCH_BURST at once after a quiet spell,
 * then one per CERTCACHE_FETCH_INTERVAL_MS.  Genuine traffic needs a
 * download per new certificate, a handful a year. */
#define CERTCACHE_FETCH_BURST 10
#define CERTCACHE_FETCH_INTERVAL_MS 1000
/* Downloads under way at once (over it: MT_E_CERT_RATE). */
#define CERTCACHE_DOWNLOADS_MAX 2
/* Threads waiting in certcache_get for another thread's download (of the
 * same URL: concurrent first deliveries of a new certificate); more are
 * answered MT_E_CERT_RATE at once.  With the downloads, this bounds the
 * threads a host that never answers can hold (see INGEST_FETCHERS). */
#define CERTCACHE_WAITERS_MAX 8

struct certcache;

enum certcache_source { CERT_FROM_MEMORY, CERT_FROM_DISK, CERT_FROM_NETWORK };

/* cache_dir may be NULL.  fetch is copied.  Returns NULL on allocation
 * failure; free with certcache_free(). */
struct certcache *certcache_new(const char *cache_dir,
				const struct fetch_opts *fetch);
void certcache_free(struct certcache *cc);

/* Memory only, never blocks on disk or network (for an event loop): true
 * when memory has the answer, a certificate (*err MT_E_OK, *cert a new
 * reference) or a fetch that failed a moment ago (*err MT_E_CERT_FETCH,
 * errbuf says why); false when certcache_get must be called (off the
 * loop: it may read the disk, download, or wait for another thread's
 * download of the same URL). */
bool certcache_lookup(struct certcache *cc, const char *url, X509 **cert,
		      enum mt_err *err, char *errbuf, size_t errsz);

/* The certificate at url (which passed url_check).  On MT_E_OK *cert is a
 * new reference (caller X509_free()s it).  MT_E_CERT_FETCH when it cannot
 * be had right now, MT_E_CERT_RATE when a download would exceed the rate
 * limit or CERTCACHE_DOWNLOADS_MAX, or CERTCACHE_WAITERS_MAX threads
 * already wait for downloads; errbuf then says why.  May block: never on
 * an event loop (certcache_lookup there). */
enum mt_err certcache_get(struct certcache *cc, const char *url, X509 **cert,
			  enum certcache_source *source, char *errbuf,
			  size_t errsz);

/* cert, had from certcache_get(url), has verified a message: keep it in
 * memory ahead of every certificate that has not (put back if a flood of
 * other URLs pushed it out meanwhile). */
void certcache_mark_verified(struct certcache *cc, const char *url, X509 *cert);

#endif
