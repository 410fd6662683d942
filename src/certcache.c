#include "certcache.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "url.h"
#include "verify.h"

enum entry_state { ENTRY_FREE, ENTRY_FETCHING, ENTRY_READY, ENTRY_FAILED };

struct entry {
	enum entry_state state;
	bool verified; /* has verified a message: evicted only for another such */
	char *url;
	X509 *cert;
	int64_t last_used_ms;
	int64_t retry_at_ms; /* ENTRY_FAILED: forget the failure after this */
	char error[256];
};

struct certcache {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct entry entries[CERTCACHE_ENTRIES_MAX];
	int tokens;              /* downloads allowed now */
	int downloading;         /* downloads under way */
	int waiting;             /* threads waiting for another's download */
	int64_t tokens_since_ms; /* when the bucket last gained a token */
	char *dir;
	struct fetch_opts fetch;
};

/* Monotonic: the wall clock may jump, and these are only durations. */
static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct certcache *certcache_new(const char *cache_dir,
				const struct fetch_opts *fetch)
{
	struct certcache *cc = calloc(1, sizeof(*cc));
	if (!cc)
		return NULL;
	if (cache_dir && !(cc->dir = strdup(cache_dir))) {
		free(cc);
		return NULL;
	}
	cc->fetch = *fetch;
	cc->tokens = CERTCACHE_FETCH_BURST;
	cc->tokens_since_ms = now_ms();
	pthread_mutex_init(&cc->lock, NULL);
	pthread_cond_init(&cc->changed, NULL);
	return cc;
}

static void entry_clear(struct entry *e)
{
	free(e->url);
	X509_free(e->cert);
	memset(e, 0, sizeof(*e));
}

void certcache_free(struct certcache *cc)
{
	if (!cc)
		return;
	for (size_t i = 0; i < CERTCACHE_ENTRIES_MAX; i++)
		entry_clear(&cc->entries[i]);
	pthread_cond_destroy(&cc->changed);
	pthread_mutex_destroy(&cc->lock);
	free(cc->dir);
	free(cc);
}

/* One download allowed by the token bucket?  Called with the lock held. */
static bool take_token(struct certcache *cc)
{
	int64_t now = now_ms();
	int64_t gained = (now - cc->tokens_since_ms) / CERTCACHE_FETCH_INTERVAL_MS;
	if (gained > 0) {
		cc->tokens_since_ms += gained * CERTCACHE_FETCH_INTERVAL_MS;
		if (gained >= CERTCACHE_FETCH_BURST - cc->tokens) {
			cc->tokens = CERTCACHE_FETCH_BURST;
			cc->tokens_since_ms = now;
		} else {
			cc->tokens += (int)gained;
		}
	}
	if (cc->tokens == 0)
		return false;
	cc->tokens--;
	return true;
}

static struct entry *find(struct certcache *cc, const char *url)
{
	for (size_t i = 0; i < CERTCACHE_ENTRIES_MAX; i++) {
		struct entry *e = &cc->entries[i];
		if (e->state != ENTRY_FREE && strcmp(e->url, url) == 0)
			return e;
	}
	return NULL;
}

/* Eviction order: failed, then never verified, then (only when
 * with_verified) verified; least recently used first within each. */
static int eviction_rank(const struct entry *e)
{
	return e->state == ENTRY_FAILED ? 0 : e->verified ? 2 : 1;
}

/* A free slot, or one emptied for a new URL (never one being fetched;
 * verified ones only when with_verified).  NULL when there is none.
 * Called with the lock held. */
static struct entry *claim_slot(struct certcache *cc, bool with_verified)
{
	struct entry *victim = NULL;
	for (size_t i = 0; i < CERTCACHE_ENTRIES_MAX; i++) {
		struct entry *e = &cc->entries[i];
		if (e->state == ENTRY_FREE)
			return e;
		if (e->state == ENTRY_FETCHING || (e->verified && !with_verified))
			continue;
		int r = eviction_rank(e);
		if (!victim || r < eviction_rank(victim) ||
		    (r == eviction_rank(victim) && e->last_used_ms < victim->last_used_ms))
			victim = e;
	}
	if (victim)
		entry_clear(victim);
	return victim;
}

static bool any_fetching(const struct certcache *cc)
{
	for (size_t i = 0; i < CERTCACHE_ENTRIES_MAX; i++)
		if (cc->entries[i].state == ENTRY_FETCHING)
			return true;
	return false;
}

/* Reads dir/name if it exists.  Returns a new X509 or NULL. */
static X509 *load_from_disk(const char *dir, const char *name)
{
	char path[4096], buf[VERIFY_CERT_PEM_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	/* The same checks as a download: a file put there by hand or by an
	 * older mailtrail must be a certificate of SNS too. */
	return verify_cert_from_pem(buf, n, NULL);
}

/* Writes the PEM atomically (temp file, fsync, rename).  Best effort: a
 * read-only cache dir must not stop deliveries. */
static void save_to_disk(const char *dir, const char *name, const char *pem,
			 size_t len)
{
	char path[4096], tmp[4200];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld.%lu", path, (long)getpid(),
		 (unsigned long)pthread_self());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	bool ok = write(fd, pem, len) == (ssize_t)len && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, path) != 0)
		unlink(tmp);
}

/* Disk, then network (if the rate limit allows: *limited says when it
 * did not).  Runs without the lock. */
static X509 *obtain(struct certcache *cc, const char *url,
		    enum certcache_source *source, bool *limited, char *errbuf,
		    size_t errsz)
{
	char name[URL_FILE_NAME_MAX];
	bool named = url_file_name(url, name);
	X509 *cert;

	*limited = false;
	if (cc->dir && named && (cert = load_from_disk(cc->dir, name))) {
		metrics_count_cert_hit(true);
		*source = CERT_FROM_DISK;
		return cert;
	}
	pthread_mutex_lock(&cc->lock);
	bool busy = cc->downloading >= CERTCACHE_DOWNLOADS_MAX;
	*limited = busy || !take_token(cc);
	if (!*limited)
		cc->downloading++;
	pthread_mutex_unlock(&cc->lock);
	if (*limited) {
		metrics_add(METRIC_cert_fetch_rate_limited_total, 1);
		if (busy)
			snprintf(errbuf, errsz, "%d certificate downloads already under way",
				 CERTCACHE_DOWNLOADS_MAX);
		else
			snprintf(errbuf, errsz, "more than %d certificate downloads in a burst, or more than one per %d ms",
				 CERTCACHE_FETCH_BURST, CERTCACHE_FETCH_INTERVAL_MS);
		return NULL;
	}
	metrics_add(METRIC_cert_fetches_total, 1);
	char *body;
	size_t len;
	long status;
	enum mt_err ferr = fetch_get(url, &cc->fetch, MT_E_CERT_FETCH, &body, &len, &status,
				     errbuf, errsz);
	pthread_mutex_lock(&cc->lock);
	cc->downloading--;
	pthread_mutex_unlock(&cc->lock);
	if (ferr != MT_E_OK) {
		metrics_add(METRIC_cert_fetch_failures_total, 1);
		return NULL;
	}
	cert = NULL;
	const char *why = NULL;
	if (status != 200)
		snprintf(errbuf, errsz, "HTTP status %ld", status);
	else if (!(cert = verify_cert_from_pem(body, len, &why)))
		snprintf(errbuf, errsz, "%s", why);
	if (cert && cc->dir && named)
		save_to_disk(cc->dir, name, body, len);
	free(body);
	if (!cert)
		metrics_add(METRIC_cert_fetch_failures_total, 1);
	*source = CERT_FROM_NETWORK;
	return cert;
}

/* Waits (the lock held) for another thread's fetch to change something,
 * unless CERTCACHE_WAITERS_MAX threads already wait: then false, with
 * errbuf saying why. */
static bool wait_for_fetch(struct certcache *cc, char *errbuf, size_t errsz)
{
	if (cc->waiting >= CERTCACHE_WAITERS_MAX) {
		metrics_add(METRIC_cert_fetch_rate_limited_total, 1);
		snprintf(errbuf, errsz, "%d deliveries already wait for a certificate download",
			 CERTCACHE_WAITERS_MAX);
		return false;
	}
	cc->waiting++;
	pthread_cond_wait(&cc->changed, &cc->lock);
	cc->waiting--;
	return true;
}

bool certcache_lookup(struct certcache *cc, const char *url, X509 **cert,
		      enum mt_err *err, char *errbuf, size_t errsz)
{
	bool known = false;
	*cert = NULL;
	pthread_mutex_lock(&cc->lock);
	struct entry *e = find(cc, url);
	int64_t now = now_ms();
	if (e && e->state == ENTRY_READY) {
		e->last_used_ms = now;
		X509_up_ref(e->cert);
		*cert = e->cert;
		*err = MT_E_OK;
		metrics_count_cert_hit(false);
		known = true;
	} else if (e && e->state == ENTRY_FAILED && now < e->retry_at_ms) {
		snprintf(errbuf, errsz, "%s (retry after %lld ms)", e->error,
			 (long long)(e->retry_at_ms - now));
		*err = MT_E_CERT_FETCH;
		known = true;
	}
	pthread_mutex_unlock(&cc->lock);
	return known;
}

enum mt_err certcache_get(struct certcache *cc, const char *url, X509 **cert,
			  enum certcache_source *source, char *errbuf,
			  size_t errsz)
{
	enum mt_err err = MT_E_CERT_FETCH;
	struct entry *e;

	*cert = NULL;
	pthread_mutex_lock(&cc->lock);
	for (;;) {
		e = find(cc, url);
		int64_t now = now_ms();
		if (e && e->state == ENTRY_FETCHING) {
			if (!wait_for_fetch(cc, errbuf, errsz)) {
				pthread_mutex_unlock(&cc->lock);
				return MT_E_CERT_RATE;
			}
			continue;
		}
		if (e && e->state == ENTRY_READY) {
			e->last_used_ms = now;
			X509_up_ref(e->cert);
			*cert = e->cert;
			*source = CERT_FROM_MEMORY;
			metrics_count_cert_hit(false);
			pthread_mutex_unlock(&cc->lock);
			return MT_E_OK;
		}
		if (e && now < e->retry_at_ms) { /* failed a moment ago */
			snprintf(errbuf, errsz, "%s (retry after %lld ms)", e->error,
				 (long long)(e->retry_at_ms - now));
			pthread_mutex_unlock(&cc->lock);
			return MT_E_CERT_FETCH;
		}
		if (e)
			entry_clear(e);
		e = claim_slot(cc, false);
		/* Every slot is being fetched: wait for one.  Every slot holds
		 * a verified certificate: fetch without keeping the result
		 * (certcache_mark_verified keeps it if it verifies). */
		if (!e && any_fetching(cc)) {
			if (!wait_for_fetch(cc, errbuf, errsz)) {
				pthread_mutex_unlock(&cc->lock);
				return MT_E_CERT_RATE;
			}
			continue;
		}
		break;
	}
	if (e) {
		if (!(e->url = strdup(url))) {
			pthread_mutex_unlock(&cc->lock);
			return MT_E_NOMEM;
		}
		e->state = ENTRY_FETCHING;
	}
	pthread_mutex_unlock(&cc->lock);

	bool limited;
	X509 *c = obtain(cc, url, source, &limited, errbuf, errsz);
	if (c) {
		*cert = c;
		err = MT_E_OK;
	} else if (limited) {
		err = MT_E_CERT_RATE;
	}
	if (!e)
		return err;
	pthread_mutex_lock(&cc->lock);
	e->last_used_ms = now_ms();
	if (c) {
		e->state = ENTRY_READY;
		e->cert = c;
		X509_up_ref(c);
	} else if (limited) {
		entry_clear(e); /* nothing learnt about this URL */
	} else {
		e->state = ENTRY_FAILED;
		e->retry_at_ms = e->last_used_ms + CERTCACHE_RETRY_MS;
		snprintf(e->error, sizeof(e->error), "%s", errbuf);
	}
	pthread_cond_broadcast(&cc->changed);
	pthread_mutex_unlock(&cc->lock);
	return err;
}

void certcache_mark_verified(struct certcache *cc, const char *url, X509 *cert)
{
	pthread_mutex_lock(&cc->lock);
	struct entry *e = find(cc, url);
	if (!e && (e = claim_slot(cc, true))) {
		if ((e->url = strdup(url))) {
			e->state = ENTRY_READY;
			X509_up_ref(cert);
			e->cert = cert;
		}
	}
	if (e && e->state == ENTRY_READY) {
		e->verified = true;
		e->last_used_ms = now_ms();
	}
	pthread_mutex_unlock(&cc->lock);
}
