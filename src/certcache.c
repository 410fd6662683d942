#include "certcache.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "metrics.h"
#include "mt_time.h"
#include "url.h"
#include "verify.h"

enum entry_state { ENTRY_FREE, ENTRY_FETCHING, ENTRY_READY, ENTRY_FAILED };

struct entry {
	enum entry_state state;
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
	char *dir;
	struct fetch_opts fetch;
};

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

/* Finds url's entry, or claims a slot for it (a free one, else the least
 * recently used one that nobody is fetching).  NULL when every slot is
 * being fetched.  Called with the lock held. */
static struct entry *slot_for(struct certcache *cc, const char *url, bool *found)
{
	struct entry *victim = NULL;
	*found = false;
	for (size_t i = 0; i < CERTCACHE_ENTRIES_MAX; i++) {
		struct entry *e = &cc->entries[i];
		if (e->state != ENTRY_FREE && strcmp(e->url, url) == 0) {
			*found = true;
			return e;
		}
	}
	/* Failures go first, so a flood of made-up URLs cannot push the
	 * certificates in real use out of the cache. */
	for (size_t i = 0; i < CERTCACHE_ENTRIES_MAX; i++) {
		struct entry *e = &cc->entries[i];
		if (e->state == ENTRY_FREE)
			return e;
		if (e->state == ENTRY_FETCHING)
			continue;
		bool failed = e->state == ENTRY_FAILED;
		bool victim_failed = victim && victim->state == ENTRY_FAILED;
		if (!victim || (failed && !victim_failed) ||
		    (failed == victim_failed && e->last_used_ms < victim->last_used_ms))
			victim = e;
	}
	if (victim)
		entry_clear(victim);
	return victim;
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
	return verify_cert_from_pem(buf, n);
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

/* Disk, then network.  Runs without the lock. */
static X509 *obtain(struct certcache *cc, const char *url,
		    enum certcache_source *source, char *errbuf, size_t errsz)
{
	char name[URL_FILE_NAME_MAX];
	bool named = url_file_name(url, name);
	X509 *cert;

	if (cc->dir && named && (cert = load_from_disk(cc->dir, name))) {
		metrics_count_cert_hit(true);
		*source = CERT_FROM_DISK;
		return cert;
	}
	metrics_add(METRIC_cert_fetches_total, 1);
	char *body;
	size_t len;
	long status;
	if (fetch_get(url, &cc->fetch, MT_E_CERT_FETCH, &body, &len, &status,
		      errbuf, errsz) != MT_E_OK) {
		metrics_add(METRIC_cert_fetch_failures_total, 1);
		return NULL;
	}
	cert = NULL;
	if (status != 200)
		snprintf(errbuf, errsz, "HTTP status %ld", status);
	else if (!(cert = verify_cert_from_pem(body, len)))
		snprintf(errbuf, errsz, "not a PEM RSA certificate");
	if (cert && cc->dir && named)
		save_to_disk(cc->dir, name, body, len);
	free(body);
	if (!cert)
		metrics_add(METRIC_cert_fetch_failures_total, 1);
	*source = CERT_FROM_NETWORK;
	return cert;
}

enum mt_err certcache_get(struct certcache *cc, const char *url, X509 **cert,
			  enum certcache_source *source, char *errbuf,
			  size_t errsz)
{
	enum mt_err err = MT_E_CERT_FETCH;
	bool found;

	*cert = NULL;
	pthread_mutex_lock(&cc->lock);
	for (;;) {
		struct entry *e = slot_for(cc, url, &found);
		int64_t now = mt_time_now_ms();
		if (!e) { /* every slot busy fetching: wait for one */
			pthread_cond_wait(&cc->changed, &cc->lock);
			continue;
		}
		if (found && e->state == ENTRY_FETCHING) {
			pthread_cond_wait(&cc->changed, &cc->lock);
			continue;
		}
		if (found && e->state == ENTRY_READY) {
			e->last_used_ms = now;
			X509_up_ref(e->cert);
			*cert = e->cert;
			*source = CERT_FROM_MEMORY;
			metrics_count_cert_hit(false);
			err = MT_E_OK;
			break;
		}
		if (found && e->state == ENTRY_FAILED && now < e->retry_at_ms) {
			snprintf(errbuf, errsz, "%s (retry after %lld ms)", e->error,
				 (long long)(e->retry_at_ms - now));
			break;
		}
		/* Ours to fetch. */
		if (!found && !(e->url = strdup(url))) {
			err = MT_E_NOMEM;
			break;
		}
		e->state = ENTRY_FETCHING;
		pthread_mutex_unlock(&cc->lock);
		X509 *c = obtain(cc, url, source, errbuf, errsz);
		pthread_mutex_lock(&cc->lock);
		e->last_used_ms = mt_time_now_ms();
		if (c) {
			e->state = ENTRY_READY;
			e->cert = c;
			X509_up_ref(c);
			*cert = c;
			err = MT_E_OK;
		} else {
			e->state = ENTRY_FAILED;
			e->retry_at_ms = e->last_used_ms + CERTCACHE_RETRY_MS;
			snprintf(e->error, sizeof(e->error), "%s", errbuf);
		}
		pthread_cond_broadcast(&cc->changed);
		break;
	}
	pthread_mutex_unlock(&cc->lock);
	return err;
}
