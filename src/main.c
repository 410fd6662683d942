/* main.c - configuration, wiring, signals.  The data path:
 *   http.c -> webhook.c -> sns.c -> url.c -> certcache.c/fetch.c ->
 *   verify.c -> ses.c -> store.c  (and confirm.c for subscriptions)
 */
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include "certcache.h"
#include "config.h"
#include "fetch.h"
#include "http.h"
#include "log.h"
#include "mt_version.h"
#include "store.h"
#include "verify.h"
#include "webhook.h"

/* Outbound HTTPS limits: SNS waits about 15 s for our answer. */
#define FETCH_CONNECT_TIMEOUT_MS 2000
#define FETCH_TIMEOUT_MS 5000

static const char *env_lookup(const char *name)
{
	return getenv(name);
}

int main(int argc, char **argv)
{
	struct config cfg;
	char err[512];
	int status = 1;
	struct certcache *certs = NULL;
	struct store *store = NULL;
	struct http_server *http = NULL;

	switch (config_parse(&cfg, argc, argv, env_lookup, stdout, err, sizeof(err))) {
	case CONFIG_EXIT:
		config_free(&cfg);
		return 0;
	case CONFIG_ERROR:
		fprintf(stderr, "%s\n", err);
		config_free(&cfg);
		return 2;
	case CONFIG_OK:
		break;
	}
	log_init(cfg.log_format, cfg.log_level);

	/* Signals are taken synchronously by this thread only. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	fetch_global_init();
	struct fetch_opts fo = {
		.ca_file = cfg.ca_file,
		.max_bytes = VERIFY_CERT_PEM_MAX,
		.connect_timeout_ms = FETCH_CONNECT_TIMEOUT_MS,
		.timeout_ms = FETCH_TIMEOUT_MS,
	};
	certs = certcache_new(cfg.cert_cache_dir, &fo);
	store = store_new(&cfg.redis, cfg.redis_prefix, cfg.retention_days);
	if (!certs || !store) {
		fprintf(stderr, "mailtrail: out of memory\n");
		goto out;
	}
	struct webhook wh = {.cfg = &cfg, .certs = certs, .store = store, .fetch = fo};
	http = http_start(&cfg, &wh, err, sizeof(err));
	if (!http) {
		LOG(LOG_ERROR, "cannot start", "error=\"%s\"", err);
		goto out;
	}
	LOG(LOG_INFO, "listening", "listen=%s%s%s:%u tls=%s version=%s redis=%s%s topics=%zu",
	    cfg.listen.host[0] && strchr(cfg.listen.host, ':') ? "[" : "",
	    cfg.listen.host, strchr(cfg.listen.host, ':') ? "]" : "",
	    http_port(http), cfg.tls_cert ? "yes" : "no", MAILTRAIL_VERSION,
	    cfg.redis.is_unix ? cfg.redis.path : cfg.redis.host,
	    cfg.redis.is_unix ? "" : "", cfg.ntopics);
	if (store_ping(store, err, sizeof(err)) != MT_E_OK)
		LOG(LOG_WARN, "redis not reachable yet", "error=\"%s\"", err);

	int sig = 0;
	sigwait(&sigs, &sig);
	LOG(LOG_INFO, "stopping", "signal=%d", sig);
	status = 0;
out:
	http_stop(http);
	store_free(store);
	certcache_free(certs);
	fetch_global_cleanup();
	config_free(&cfg);
	return status;
}
