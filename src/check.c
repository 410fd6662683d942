/* check.c - mailtrail check (check.h): one line per check, no listener. */
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fetch.h"
#include "rcluster.h"
#include "store.h"
#include "tls.h"
#include "url.h"
#include "verify.h"

enum outcome { CHECK_OK, CHECK_WARN, CHECK_SKIP, CHECK_FAIL };

struct checker {
	const struct config *cfg;
	unsigned failed;
};

static void report(struct checker *c, enum outcome o, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void report(struct checker *c, enum outcome o, const char *name, const char *fmt, ...)
{
	static const char *const words[] = {"ok", "warn", "skip", "FAIL"};
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	printf("%-4s %s: %s\n", words[o], name, line);
	fflush(stdout);
	if (o == CHECK_FAIL)
		c->failed++;
}

/* ---- Redis ---------------------------------------------------------------- */

/* The value of "name:" in an INFO answer, into out ("" when absent). */
static void info_field(const redisReply *r, const char *name, char *out, size_t outsz)
{
	out[0] = '\0';
	if (!r || r->type != REDIS_REPLY_STRING)
		return;
	size_t nl = strlen(name);
	for (const char *p = r->str; p && *p;) {
		if (strncmp(p, name, nl) == 0 && p[nl] == ':') {
			size_t n = strcspn(p + nl + 1, "\r\n");
			snprintf(out, outsz, "%.*s", (int)n, p + nl + 1);
			return;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
}

/* INFO server and INFO cluster, through a connection of their own. */
static enum mt_err redis_info(const struct config *cfg, char *version, size_t vsz,
			      char *cluster, size_t csz, char *errbuf, size_t errsz)
{
	struct rcluster_opts o = {
		.redis = &cfg->redis,
		.pool_max = 1,
		.connect_timeout_ms = STORE_CONNECT_TIMEOUT_MS,
		.command_timeout_ms = STORE_COMMAND_TIMEOUT_MS,
	};
	struct rcluster *rc = rcluster_new(&o);
	struct rcluster_cmd cmds[2] = {{0}};
	enum mt_err err = MT_E_NOMEM;
	if (!rc)
		return err;
	char *raw0 = NULL, *raw1 = NULL;
	int l0 = redisFormatCommand(&raw0, "INFO server");
	int l1 = redisFormatCommand(&raw1, "INFO cluster");
	if (l0 < 0 || l1 < 0)
		goto out;
	cmds[0] = (struct rcluster_cmd){.raw = raw0, .raw_len = (size_t)l0};
	cmds[1] = (struct rcluster_cmd){.raw = raw1, .raw_len = (size_t)l1};
	err = rcluster_exec(rc, cmds, 2, errbuf, errsz);
	if (err == MT_E_OK) {
		info_field(cmds[0].reply, "redis_version", version, vsz);
		info_field(cmds[1].reply, "cluster_enabled", cluster, csz);
		if (cmds[0].reply->type == REDIS_REPLY_ERROR) {
			snprintf(errbuf, errsz, "INFO: %s", cmds[0].reply->str);
			err = MT_E_REDIS;
		}
		freeReplyObject(cmds[0].reply);
		freeReplyObject(cmds[1].reply);
	}
out:
	if (l0 >= 0)
		redisFreeCommand(raw0);
	if (l1 >= 0)
		redisFreeCommand(raw1);
	rcluster_free(rc);
	return err;
}

static void check_redis(struct checker *c)
{
	const struct config *cfg = c->cfg;
	char url[512], err[512], version[64], cluster[16];
	config_redis_url_redacted(cfg->redis_url, url, sizeof(url));
	struct store *st = store_new(&cfg->redis, cfg->redis_prefix, cfg->retention_days);
	if (!st) {
		report(c, CHECK_FAIL, "redis", "out of memory");
		return;
	}
	/* PING through the store: its connections also AUTH, SELECT and load
	 * its script, as the server's do. */
	if (store_ping(st, err, sizeof(err)) != MT_E_OK) {
		report(c, CHECK_FAIL, "redis", "%s does not answer: %s", url, err);
		report(c, CHECK_SKIP, "redis-encoding", "redis not reachable");
		store_free(st);
		return;
	}
	if (redis_info(cfg, version, sizeof(version), cluster, sizeof(cluster), err,
		       sizeof(err)) != MT_E_OK) {
		report(c, CHECK_FAIL, "redis", "%s answers PING but not INFO: %s", url, err);
	} else {
		bool is_cluster = strcmp(cluster, "1") == 0;
		if (is_cluster != cfg->redis.cluster)
			report(c, CHECK_FAIL, "redis", "%s (version %s) is %s, but --redis-cluster is %s",
			       url, version[0] ? version : "unknown",
			       is_cluster ? "a cluster node" : "not a cluster node",
			       cfg->redis.cluster ? "set" : "not set");
		else
			report(c, CHECK_OK, "redis", "%s answers (version %s, %s)", url,
			       version[0] ? version : "unknown", is_cluster ? "cluster" : "standalone");
	}
	struct store_encoding enc;
	if (store_check_encoding(st, &enc, err, sizeof(err)) != MT_E_OK)
		report(c, CHECK_WARN, "redis-encoding", "CONFIG GET refused (%s): check "
		       "zset-max-listpack-value >= %d by hand (README: Redis memory)", err,
		       STORE_MEMBER_TYPICAL_MAX);
	else
		report(c, enc.skiplists ? CHECK_WARN : CHECK_OK, "redis-encoding",
		       "zset-max-listpack-entries %lld, zset-max-listpack-value %lld, "
		       "hash-max-listpack-entries %lld, hash-max-listpack-value %lld%s",
		       enc.zset_entries, enc.zset_value, enc.hash_entries, enc.hash_value,
		       enc.skiplists ? ": recipients' sets take about twice the memory; set "
				       "zset-max-listpack-value 1024 (README: Redis memory)" : "");
	store_free(st);
}

/* ---- files ----------------------------------------------------------------- */

static void check_spool(struct checker *c)
{
	const struct config *cfg = c->cfg;
	if (!cfg->spool_dir) {
		report(c, CHECK_SKIP, "spool", "no --spool-dir");
		return;
	}
	struct stat sb;
	if (stat(cfg->spool_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		report(c, CHECK_FAIL, "spool", "--spool-dir %s is not a directory", cfg->spool_dir);
		return;
	}
	/* What an append does: create, write, sync; then the file goes (the
	 * spool reads only its own *.journal names). */
	char path[4200];
	snprintf(path, sizeof(path), "%s/.mailtrail-check-XXXXXX", cfg->spool_dir);
	int fd = mkstemp(path);
	if (fd < 0) {
		report(c, CHECK_FAIL, "spool", "cannot create a file in %s: %s", cfg->spool_dir,
		       strerror(errno));
		return;
	}
	static const char block[4096];
	bool ok = write(fd, block, sizeof(block)) == (ssize_t)sizeof(block) && fsync(fd) == 0;
	int saved = errno;
	close(fd);
	unlink(path);
	if (!ok) {
		report(c, CHECK_FAIL, "spool", "cannot write and sync a file in %s: %s",
		       cfg->spool_dir, strerror(saved));
		return;
	}
	struct statvfs vfs;
	if (statvfs(cfg->spool_dir, &vfs) == 0) {
		uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
		report(c, avail < cfg->spool_max_bytes ? CHECK_WARN : CHECK_OK, "spool",
		       "%s writable, %" PRIu64 " bytes free%s (--spool-max-bytes %" PRIu64 ")",
		       cfg->spool_dir, avail,
		       avail < cfg->spool_max_bytes ? ": less than the spool may take" : "",
		       cfg->spool_max_bytes);
	} else {
		report(c, CHECK_OK, "spool", "%s writable", cfg->spool_dir);
	}
}

static void check_tls(struct checker *c)
{
	const struct config *cfg = c->cfg;
	if (!cfg->tls_cert) {
		report(c, CHECK_SKIP, "tls", "no --tls-cert: the webhook serves plain HTTP "
		       "(TLS ends in front of it)");
		return;
	}
	char err[512];
	if (tls_load(cfg->tls_cert, cfg->tls_key, err, sizeof(err)))
		report(c, CHECK_OK, "tls", "%s and %s load and match", cfg->tls_cert, cfg->tls_key);
	else
		report(c, CHECK_FAIL, "tls", "%s", err);
	tls_free_all();
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

static void check_cert_cache(struct checker *c)
{
	const char *dir = c->cfg->cert_cache_dir;
	if (!dir) {
		report(c, CHECK_SKIP, "cert-cache", "no --cert-cache-dir");
		return;
	}
	DIR *d = opendir(dir);
	if (!d) {
		report(c, CHECK_FAIL, "cert-cache", "--cert-cache-dir %s cannot be read: %s", dir,
		       strerror(errno));
		return;
	}
	unsigned usable = 0, unusable = 0, seen = 0;
	char first_bad[256] = "";
	struct dirent *de;
	static char buf[VERIFY_CERT_PEM_MAX];
	while ((de = readdir(d)) && seen < CHECK_CACHE_FILES_MAX) {
		if (de->d_name[0] == '.' || !ends_with(de->d_name, ".pem"))
			continue;
		seen++;
		char path[4200];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		FILE *f = fopen(path, "rb");
		size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
		if (f)
			fclose(f);
		const char *why = "cannot be read";
		X509 *cert = f ? verify_cert_from_pem(buf, n, &why) : NULL;
		if (cert) {
			usable++;
			X509_free(cert);
			continue;
		}
		if (!unusable++)
			snprintf(first_bad, sizeof(first_bad), "%s: %s", de->d_name, why);
	}
	closedir(d);
	bool writable = access(dir, W_OK) == 0;
	if (unusable)
		report(c, CHECK_WARN, "cert-cache", "%s: %u certificates usable, %u not (%s): those "
		       "are downloaded instead", dir, usable, unusable, first_bad);
	else
		report(c, writable ? CHECK_OK : CHECK_WARN, "cert-cache", "%s readable, %u "
		       "certificates%s", dir, usable,
		       writable ? "" : "; not writable: downloaded certificates are kept in memory only");
}

/* ---- outbound HTTPS --------------------------------------------------------- */

/* The certificate host of each region the --topic ARNs name
 * (arn:PARTITION:sns:REGION:ACCOUNT:NAME), at most max of them. */
static size_t topic_hosts(const struct config *cfg, char hosts[][256], size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < cfg->ntopics && n < max; i++) {
		const char *f[6];
		size_t len[6], k = 0;
		const char *p = cfg->topics[i];
		while (k < 6) {
			f[k] = p;
			const char *colon = k < 5 ? strchr(p, ':') : NULL;
			len[k] = colon ? (size_t)(colon - p) : strlen(p);
			k++;
			if (!colon)
				break;
			p = colon + 1;
		}
		if (k < 4 || len[3] == 0 || len[3] > 64 || memchr(f[3], '*', len[3]))
			continue;
		bool cn = len[1] == 6 && memcmp(f[1], "aws-cn", 6) == 0;
		char h[256];
		snprintf(h, sizeof(h), "sns.%.*s.amazonaws.com%s", (int)len[3], f[3], cn ? ".cn" : "");
		bool dup = false;
		for (size_t j = 0; j < n; j++)
			dup |= strcmp(hosts[j], h) == 0;
		if (!dup)
			memcpy(hosts[n++], h, sizeof(h));
	}
	return n;
}

static void check_outbound(struct checker *c, const char *const *given, size_t ngiven,
			   bool offline)
{
	const struct config *cfg = c->cfg;
	char hosts[CHECK_CERT_HOSTS_MAX][256];
	size_t n = 0;
	for (size_t i = 0; i < ngiven && n < CHECK_CERT_HOSTS_MAX; i++)
		snprintf(hosts[n++], sizeof(hosts[0]), "%s", given[i]);
	if (n == 0)
		n = topic_hosts(cfg, hosts, CHECK_CERT_HOSTS_MAX);
	if (n == 0)
		snprintf(hosts[n++], sizeof(hosts[0]), "%s", CHECK_DEFAULT_CERT_HOST);
	struct fetch_opts fo = {
		.ca_file = cfg->ca_file,
		.max_bytes = CHECK_HTTPS_BODY_MAX,
		.connect_timeout_ms = FETCH_CONNECT_TIMEOUT_MS,
		.timeout_ms = FETCH_TIMEOUT_MS,
	};
	for (size_t i = 0; i < n; i++) {
		char url[2100];
		snprintf(url, sizeof(url), "https://%s/", hosts[i]);
		/* The rule every SigningCertURL meets, on this host. */
		if (url_check(url, strlen(url), &cfg->cert_host_re, URL_SUBSCRIBE) != MT_E_OK) {
			report(c, CHECK_FAIL, "outbound-https", "%s does not match --cert-host-pattern "
			       "'%s': its certificates would be refused", hosts[i],
			       cfg->cert_host_pattern);
			continue;
		}
		if (offline) {
			report(c, CHECK_SKIP, "outbound-https", "--offline (%s matches "
			       "--cert-host-pattern; not contacted)", hosts[i]);
			continue;
		}
		char *body = NULL, err[512] = "";
		size_t len;
		long status = 0;
		enum mt_err e = fetch_get(url, &fo, MT_E_CERT_FETCH, &body, &len, &status, err,
					  sizeof(err));
		free(body);
		/* Any HTTP answer proves the way out (and TLS to it) works. */
		if (e == MT_E_OK)
			report(c, CHECK_OK, "outbound-https", "%s answers (HTTP status %ld)", hosts[i],
			       status);
		else
			report(c, CHECK_FAIL, "outbound-https", "%s cannot be reached: %s: allow "
			       "outbound HTTPS to it (signing certificates and subscription "
			       "confirmations come from there)", hosts[i], err);
	}
}

static void check_api(struct checker *c)
{
	const struct config *cfg = c->cfg;
	if (!cfg->api_enabled) {
		report(c, CHECK_SKIP, "api-token", "--api-listen off");
		return;
	}
	const char *host = cfg->api_listen.host;
	if (cfg->api_token)
		report(c, CHECK_OK, "api-token", "set (--api-listen %s)", host);
	else if (config_host_is_loopback(host))
		report(c, CHECK_OK, "api-token", "none, --api-listen %s is loopback only", host);
	else
		report(c, CHECK_FAIL, "api-token", "none, and --api-listen %s is beyond loopback "
		       "(--api-no-token): whoever reaches it reads every timeline; set --api-token",
		       host);
}

/* ---- the command ------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f, "Usage: mailtrail check [--offline] [--cert-host HOST[:PORT]]... [OPTION]...\n\n"
		"Checks the configuration the server would run with (the same options and\n"
		"MAILTRAIL_* variables) without serving: Redis (reachable, version, cluster\n"
		"mode, listpack thresholds), --spool-dir, --tls-cert/--tls-key,\n"
		"--cert-cache-dir, outbound HTTPS to the SNS certificate hosts, the API\n"
		"token.  One line per check: ok, warn, skip or FAIL.\n\n"
		"  --offline             do not contact the certificate hosts\n"
		"  --cert-host HOST      the certificate host to try (repeatable; default:\n"
		"                        sns.REGION.amazonaws.com of each --topic's region,\n"
		"                        else " CHECK_DEFAULT_CERT_HOST ")\n\n"
		"Exit status: 0 nothing failed; 1 a check failed; 2 usage or configuration error.\n");
}

int check_main(int argc, char **argv, config_getenv_fn env)
{
	char **cargv = calloc((size_t)argc + 1, sizeof(char *));
	const char **hosts = calloc((size_t)argc + 1, sizeof(char *));
	int cargc = 0, status = 2;
	size_t nhosts = 0;
	bool offline = false, parsed = false;
	struct config cfg;
	char err[768];

	if (!cargv || !hosts) {
		fprintf(stderr, "mailtrail check: out of memory\n");
		goto out;
	}
	cargv[cargc++] = argv[0];
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];
		if (strncmp(s, "--", 2) != 0 || s[2] == '\0') {
			fprintf(stderr, "mailtrail check: unexpected argument '%s' (see mailtrail check --help)\n", s);
			goto out;
		}
		const char *name = s + 2, *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
#define IS(opt) (len == strlen(opt) && memcmp(name, opt, len) == 0)
		if (IS("help")) {
			usage(stdout);
			status = 0;
			goto out;
		} else if (IS("offline")) {
			offline = true;
		} else if (IS("cert-host")) {
			const char *v = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
			if (!v || !*v || strlen(v) > 200) {
				fprintf(stderr, "mailtrail check: --cert-host needs a HOST[:PORT]\n");
				goto out;
			}
			hosts[nhosts++] = v;
		} else {
			bool takes = false;
			if (!config_option_known(name, len, &takes)) {
				fprintf(stderr, "mailtrail check: unknown option '--%.*s' (see mailtrail check --help)\n",
					(int)len, name);
				goto out;
			}
			cargv[cargc++] = argv[i];
			if (takes && !eq && i + 1 < argc)
				cargv[cargc++] = argv[++i];
		}
#undef IS
	}
	parsed = true;
	switch (config_parse(&cfg, cargc, cargv, env, stdout, err, sizeof(err))) {
	case CONFIG_EXIT:
		status = 0;
		goto out;
	case CONFIG_ERROR:
		printf("FAIL configuration: %s\n", err);
		goto out;
	case CONFIG_OK:
		break;
	}
	struct checker c = {.cfg = &cfg};
	report(&c, CHECK_OK, "configuration", "%zu topic%s%s, webhook %s:%u, api %s",
	       cfg.ntopics, cfg.ntopics == 1 ? "" : "s", cfg.any_topic ? " (--any-topic)" : "",
	       cfg.listen.host, cfg.listen.port, cfg.api_enabled ? cfg.api_listen.host : "off");
	if (!rcluster_tls_check(&cfg.redis, err, sizeof(err))) {
		report(&c, CHECK_FAIL, "redis", "%s", err);
		report(&c, CHECK_SKIP, "redis-encoding", "redis TLS files unusable");
	} else {
		check_redis(&c);
	}
	check_spool(&c);
	check_tls(&c);
	check_cert_cache(&c);
	fetch_global_init();
	check_outbound(&c, hosts, nhosts, offline);
	fetch_global_cleanup();
	check_api(&c);
	printf("%s\n", c.failed ? "check: FAILED" : "check: ok");
	status = c.failed ? 1 : 0;
out:
	if (parsed)
		config_free(&cfg);
	free(cargv);
	free(hosts);
	return status;
}
