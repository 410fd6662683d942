/* main.c - configuration, wiring, signals.  The data path:
 *   http.c -> webhook.c -> sns.c -> url.c -> certcache.c/fetch.c ->
 *   verify.c -> ses.c -> store.c  (and confirm.c for subscriptions)
 */
#include <inttypes.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <pthread.h>

#include "certcache.h"
#include "check.h"
#include "config.h"
#include "fetch.h"
#include "api.h"
#include "http.h"
#include "import.h"
#include "ingest.h"
#include "log.h"
#include "mt_time.h"
#include "mt_version.h"
#include "rcluster.h"
#include "spool.h"
#include "status.h"
#include "store.h"
#include "tls.h"
#include "verify.h"
#include "webhook.h"

static const char *env_lookup(const char *name)
{
	return getenv(name);
}

/* Waits for SIGTERM or SIGINT.  SIGHUP reloads the webhook's TLS
 * certificate and key (new connections get them; open ones are kept); with
 * bad files the old ones stay. */
static int wait_for_stop(const sigset_t *sigs, const struct config *cfg)
{
	for (;;) {
		int sig = 0;
		char err[512];
		if (sigwait(sigs, &sig) != 0 || sig != SIGHUP)
			return sig;
		if (!cfg->tls_cert)
			LOG(LOG_WARN, "SIGHUP: nothing to reload (no --tls-cert)", "signal=%d", sig);
		else if (tls_load(cfg->tls_cert, cfg->tls_key, err, sizeof(err)))
			LOG(LOG_INFO, "tls reloaded", "cert=%s", cfg->tls_cert);
		else
			LOG(LOG_ERROR, "tls reload failed: still serving the previous certificate",
			    "error=\"%s\"", err);
	}
}

/* SIGTERM: no new connections, requests already received are finished
 * (at most HTTP_DRAIN_TIMEOUT_MS), then the listeners close.  A request cut
 * at the deadline was never answered, so SNS sends it again. */
static void stop_gracefully(struct http_server *http, struct http_server *api_http,
			    int sig)
{
	int64_t start = mt_time_now_ms();
	LOG(LOG_INFO, "stopping", "signal=%d grace_ms=%d", sig, HTTP_DRAIN_TIMEOUT_MS);
	http_quiesce(http);
	http_quiesce(api_http);
	long left = http_drain(HTTP_DRAIN_TIMEOUT_MS);
	LOG(left ? LOG_WARN : LOG_INFO, "drained", "unfinished=%ld ms=%lld", left,
	    (long long)(mt_time_now_ms() - start));
}

int main(int argc, char **argv)
{
	struct config cfg;
	char err[512];
	int status = 1;
	struct certcache *certs = NULL;
	struct store *store = NULL;
	struct http_server *http = NULL, *api_http = NULL;
	struct ingest *ing = NULL;
	struct spool *spool = NULL;
	struct status *status_view = NULL;

	/* mailtrail import ...: backfill from files (import.h), no listener. */
	if (argc > 1 && strcmp(argv[1], "import") == 0)
		return import_main(argc - 1, argv + 1, env_lookup);
	/* mailtrail check ...: the configuration checked (check.h), no listener. */
	if (argc > 1 && strcmp(argv[1], "check") == 0)
		return check_main(argc - 1, argv + 1, env_lookup);
	switch (config_parse(&cfg, argc, argv, env_lookup, stdout, err, sizeof(err))) {
	case CONFIG_EXIT:
		for (int i = 1; i < argc; i++)
			if (strcmp(argv[i], "--help") == 0)
				printf("\nBackfill from captured deliveries (no listener):\n"
				       "  mailtrail import [OPTION]... FILE|DIR...   see mailtrail import --help\n"
				       "\nCheck the configuration without serving:\n"
				       "  mailtrail check [--offline] [OPTION]...    see mailtrail check --help\n");
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

	/* The cache directory must exist; a read-only one is a legitimate
	 * pinned setup, but worth a warning (fetched certs will not stay). */
	if (cfg.cert_cache_dir) {
		struct stat st;
		if (stat(cfg.cert_cache_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
			fprintf(stderr, "mailtrail: invalid value for --cert-cache-dir: '%s' is not a directory\n",
				cfg.cert_cache_dir);
			config_free(&cfg);
			return 2;
		}
		if (access(cfg.cert_cache_dir, W_OK) != 0)
			LOG(LOG_WARN, "cert cache dir is not writable: fetched certificates are kept in memory only",
			    "dir=%s", cfg.cert_cache_dir);
	}
	/* rediss://: a CA file, client certificate or key that cannot be used
	 * is a configuration error, not a Redis outage. */
	if (!rcluster_tls_check(&cfg.redis, err, sizeof(err))) {
		fprintf(stderr, "mailtrail: %s\n", err);
		config_free(&cfg);
		return 2;
	}
	if (cfg.spool_dir) {
		spool = spool_open(cfg.spool_dir, cfg.spool_max_bytes, err, sizeof(err));
		if (!spool) {
			fprintf(stderr, "%s\n", err);
			config_free(&cfg);
			return 2;
		}
		struct spool_stats ss;
		spool_stats(spool, &ss);
		LOG(LOG_INFO, "spool open", "dir=%s records=%" PRIu64 " bytes=%" PRIu64 " max_bytes=%" PRIu64,
		    cfg.spool_dir, ss.records, ss.bytes, ss.max_bytes);
	}
	if (cfg.any_topic)
		LOG(LOG_WARN, "--any-topic: accepting every topic whose messages SNS signs, "
		    "including topics of other AWS accounts", "%s", "");
	if (cfg.api_enabled && !cfg.api_token)
		LOG(LOG_WARN, "the API and console need no token: whoever reaches them reads every timeline",
		    "api_listen=%s", cfg.api_listen.host);

	/* Signals are taken synchronously by this thread only. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
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
	if (store) {
		store_set_message_index(store, cfg.message_index);
		store_set_policy(store, &cfg.policy);
	}
	if (!certs || !store) {
		fprintf(stderr, "mailtrail: out of memory\n");
		goto out;
	}
	struct webhook wh = {.cfg = &cfg, .certs = certs, .store = store, .fetch = fo,
			     .want_recipients = log_enabled(LOG_DEBUG), .spool = spool};
	struct spool_hooks drain = ingest_spool_hooks(&wh);
	if (spool && !spool_start(spool, &drain)) {
		fprintf(stderr, "mailtrail: cannot start the spool drainer\n");
		goto out;
	}
	ing = ingest_new(&wh);
	if (!ing) {
		fprintf(stderr, "mailtrail: cannot start the writer threads\n");
		goto out;
	}
	status_view = status_new(&cfg);
	if (!status_view) {
		fprintf(stderr, "mailtrail: cannot start the status thread\n");
		goto out;
	}
	ingest_set_status(ing, status_view);
	struct http_routes ingest = ingest_routes(ing);
	char where[128];
	struct http_limits limits = {.max_connections = cfg.max_connections,
				     .max_per_address = cfg.max_connections_per_ip};
	http = http_start(&cfg.listen, cfg.tls_cert, cfg.tls_key, &ingest, &limits, err,
			  sizeof(err));
	if (!http) {
		LOG(LOG_ERROR, "cannot start the webhook listener", "error=\"%s\"", err);
		goto out;
	}
	http_address(http, &cfg.listen, where, sizeof(where));
	LOG(LOG_INFO, "listening", "listen=%s tls=%s version=%s topics=%zu any_topic=%s auto_confirm=%s "
	    "max_connections=%u max_connections_per_ip=%u",
	    where, cfg.tls_cert ? "yes" : "no", MAILTRAIL_VERSION,
	    cfg.ntopics, cfg.any_topic ? "yes" : "no", cfg.auto_confirm ? "yes" : "no",
	    cfg.max_connections, cfg.max_connections_per_ip);

	struct api api = {.store = store, .token = cfg.api_token,
			  .message_index = cfg.message_index,
			  .health_min_volume = cfg.health_min_volume,
			  .retention_days = cfg.retention_days,
			  .status = status_view};
	struct http_routes api_r = api_routes(&api);
	if (cfg.api_enabled) {
		api_http = http_start(&cfg.api_listen, NULL, NULL, &api_r, &limits, err,
				      sizeof(err));
		if (!api_http) {
			LOG(LOG_ERROR, "cannot start the API listener", "error=\"%s\"", err);
			goto out;
		}
		http_address(api_http, &cfg.api_listen, where, sizeof(where));
		LOG(LOG_INFO, "api listening", "listen=%s token=%s", where,
		    cfg.api_token ? "required" : "none");
	}
	struct store_encoding enc;
	if (store_ping(store, err, sizeof(err)) != MT_E_OK)
		LOG(LOG_WARN, "redis not reachable yet", "error=\"%s\"", err);
	else if (store_check_encoding(store, &enc, err, sizeof(err)) != MT_E_OK)
		LOG(LOG_DEBUG, "redis encoding thresholds unknown", "error=\"%s\"", err);
	else if (enc.skiplists)
		LOG(LOG_WARN, "redis encoding thresholds make recipients' sets skiplists, about twice "
		    "the memory: set zset-max-listpack-value 1024 (README: Redis memory)",
		    "zset_max_listpack_entries=%lld zset_max_listpack_value=%lld "
		    "hash_max_listpack_entries=%lld hash_max_listpack_value=%lld",
		    enc.zset_entries, enc.zset_value, enc.hash_entries, enc.hash_value);

	int sig = wait_for_stop(&sigs, &cfg);
	stop_gracefully(http, api_http, sig);
	status = 0;
out:
	http_stop(api_http);
	ingest_stop(ing);
	http_stop(http);
	ingest_free(ing);
	status_free(status_view); /* after the listeners: flushes the last notes */
	spool_free(spool); /* after the listener: no more appends */
	store_free(store);
	certcache_free(certs);
	fetch_global_cleanup();
	LOG(status ? LOG_ERROR : LOG_INFO, "stopped", "status=%d", status);
	config_free(&cfg);
	return status;
}
