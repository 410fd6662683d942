#include <stdarg.h>
#include "config.h"
#include "testutil.h"

static const char *const *fake_env;

static const char *lookup(const char *name)
{
	for (const char *const *e = fake_env; e && *e; e += 2)
		if (strcmp(e[0], name) == 0)
			return e[1];
	return NULL;
}

static enum config_result run(struct config *c, const char *const *env, char *err,
			      size_t errsz, ...)
{
	char *argv[32] = {(char *)"mailtrail"};
	int argc = 1;
	va_list ap;
	va_start(ap, errsz);
	for (char *a; (a = va_arg(ap, char *));)
		argv[argc++] = a;
	va_end(ap);
	fake_env = env;
	FILE *out = fopen("/dev/null", "w");
	enum config_result r = config_parse(c, argc, argv, lookup, out, err, errsz);
	fclose(out);
	return r;
}

#define EXPECT_ERROR(opt, env, ...)                                             \
	do {                                                                   \
		struct config c_;                                              \
		char err_[256];                                                \
		CHECK(run(&c_, env, err_, sizeof(err_), __VA_ARGS__, NULL) == CONFIG_ERROR, \
		      "expected an error for " opt);                           \
		CHECK(strstr(err_, opt) != NULL && !strchr(err_, '\n'), "error line '%s' names " opt, err_); \
		config_free(&c_);                                               \
	} while (0)

/* Managed Redis: rediss://, ACL users, the TLS files; no error line ever
 * shows a password. */
static void test_managed_redis(void)
{
	struct config c;
	char err[256];
	struct config_redis r;

	/* redis://user:pass@ (ACL user), :pass@ (default user), no userinfo. */
	CHECK(config_parse_redis_url("redis://mailtrail:s3cret@10.0.0.5:6380/2", &r) &&
		      !r.tls && strcmp(r.user, "mailtrail") == 0 &&
		      strcmp(r.password, "s3cret") == 0 && strcmp(r.host, "10.0.0.5") == 0 &&
		      r.port == 6380 && r.db == 2, "ACL user");
	CHECK(config_parse_redis_url("redis://:s3cret@h", &r) && r.user[0] == '\0' &&
		      strcmp(r.password, "s3cret") == 0 && r.port == 6379, "password only");
	CHECK(config_parse_redis_url("redis://h:7000", &r) && !r.user[0] && !r.password[0],
	      "no userinfo");
	/* The first ':' splits, the last '@' ends: a password may hold both. */
	CHECK(config_parse_redis_url("redis://u:p:a@s/s@h:1", &r) && strcmp(r.user, "u") == 0 &&
		      strcmp(r.password, "p:a@s/s") == 0 && strcmp(r.host, "h") == 0 && r.port == 1,
	      "':', '@' and '/' in a password: '%s' '%s'", r.user, r.password);
	/* rediss:// */
	CHECK(config_parse_redis_url("rediss://default:tok@clustercfg.x.cache.amazonaws.com:6379", &r) &&
		      r.tls && strcmp(r.user, "default") == 0 && strcmp(r.password, "tok") == 0 &&
		      strcmp(r.host, "clustercfg.x.cache.amazonaws.com") == 0 && r.port == 6379,
	      "rediss");
	CHECK(config_parse_redis_url("rediss://[::1]:6380/1", &r) && r.tls &&
		      strcmp(r.host, "::1") == 0 && r.port == 6380 && r.db == 1, "rediss IPv6");
	CHECK(config_parse_redis_url("rediss://h", &r) && r.tls && r.port == 6379, "rediss default port");
	CHECK(!config_parse_redis_url("redis://secret@h:1", &r), "a user or a password?");
	CHECK(!config_parse_redis_url("redis://user:@h:1", &r), "a user without a password");
	CHECK(!config_parse_redis_url("redisss://h:1", &r) && !config_parse_redis_url("rediss:/h", &r) &&
		      !config_parse_redis_url("rediss://", &r) && !config_parse_redis_url("rediss://u:p@", &r),
	      "not a redis URL");
	char big[400];
	memset(big, 'u', sizeof(big));
	memcpy(big, "redis://", 8);
	memcpy(big + 300, ":p@h", 5);
	CHECK(!config_parse_redis_url(big, &r), "user too long");

	/* The TLS files, flags and variables, after the URL whatever the order. */
	CHECK(run(&c, NULL, err, sizeof(err), "--redis-ca-file", "/etc/r/ca.pem", "--redis-cert",
		  "/etc/r/c.pem", "--redis-key", "/etc/r/c.key", "--redis",
		  "rediss://mailtrail:pw@r.internal:6380", NULL) == CONFIG_OK, "%s", err);
	CHECK(c.redis.tls && strcmp(c.redis.tls_ca_file, "/etc/r/ca.pem") == 0 &&
		      strcmp(c.redis.tls_cert, "/etc/r/c.pem") == 0 &&
		      strcmp(c.redis.tls_key, "/etc/r/c.key") == 0 &&
		      strcmp(c.redis.user, "mailtrail") == 0 && c.redis.port == 6380, "tls flags");
	config_free(&c);
	const char *const env_tls[] = {"MAILTRAIL_REDIS", "rediss://:pw@r:1", "MAILTRAIL_REDIS_CA_FILE",
				       "/ca.pem", "MAILTRAIL_REDIS_CLUSTER", "yes", NULL};
	CHECK(run(&c, env_tls, err, sizeof(err), NULL) == CONFIG_OK && c.redis.tls &&
		      c.redis.cluster && strcmp(c.redis.tls_ca_file, "/ca.pem") == 0 &&
		      !c.redis.tls_cert, "tls from the environment, a TLS cluster: %s", err);
	config_free(&c);
	EXPECT_ERROR("--redis-ca-file", NULL, "--redis-ca-file", "/ca.pem");
	EXPECT_ERROR("--redis-cert", NULL, "--redis", "redis://h:1", "--redis-cert", "c.pem",
		     "--redis-key", "c.key");
	EXPECT_ERROR("--redis-key", NULL, "--redis", "rediss://h:1", "--redis-cert", "c.pem");
	EXPECT_ERROR("--redis-cert", NULL, "--redis", "rediss://h:1", "--redis-key", "c.key");
	EXPECT_ERROR("--redis-ca-file", NULL, "--redis", "rediss://h:1", "--redis-ca-file=");
	EXPECT_ERROR("--redis-cluster", NULL, "--redis-cluster", "--redis", "rediss://h:7000/3");

	/* A bad URL is named, its user and password are not shown. */
	const char *bad[] = {"rediss://mtuser:Sup3rSecret@h:0", "redis://:Sup3rSecret@h/99",
			     "redis://mtuser:Sup3rSecret@", "rediss://Sup3rSecret@h:1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(run(&c, NULL, err, sizeof(err), "--redis", bad[i], NULL) == CONFIG_ERROR &&
			      strstr(err, "--redis") && strstr(err, "***@") &&
			      !strstr(err, "Sup3rSecret") && !strstr(err, "mtuser"),
		      "flag '%s': '%s'", bad[i], err);
		config_free(&c);
		const char *const env_bad_url[] = {"MAILTRAIL_REDIS", bad[i], NULL};
		CHECK(run(&c, env_bad_url, err, sizeof(err), NULL) == CONFIG_ERROR &&
			      strstr(err, "MAILTRAIL_REDIS") && !strstr(err, "Sup3rSecret"),
		      "variable '%s': '%s'", bad[i], err);
		config_free(&c);
	}
	char shown[128];
	config_redis_url_redacted("rediss://u:p@h:1/2", shown, sizeof(shown));
	CHECK(strcmp(shown, "rediss://***@h:1/2") == 0, "redacted: %s", shown);
	config_redis_url_redacted("redis://h:1", shown, sizeof(shown));
	CHECK(strcmp(shown, "redis://h:1") == 0, "nothing to redact: %s", shown);
	config_redis_url_redacted("unix:///run/r.sock", shown, sizeof(shown));
	CHECK(strcmp(shown, "unix:///run/r.sock") == 0, "unix: %s", shown);
}

int main(void)
{
	struct config c;
	char err[256];

	/* Defaults of SPEC.md. */
	CHECK(run(&c, NULL, err, sizeof(err), NULL) == CONFIG_OK, "%s", err);
	CHECK(strcmp(c.listen.host, "0.0.0.0") == 0 && c.listen.port == 8080, "listen");
	CHECK(!c.redis.is_unix && strcmp(c.redis.host, "127.0.0.1") == 0 &&
		      c.redis.port == 6379 && c.redis.db == 0, "redis");
	CHECK(strcmp(c.redis_prefix, "mailtrail:") == 0, "prefix");
	CHECK(c.auto_confirm && c.retention_days == 90 && !c.keep_headers &&
		      c.max_body == 1048576 && c.max_age_s == 0 && c.ntopics == 0 &&
		      c.log_format == LOG_FORMAT_JSON && c.log_level == LOG_INFO, "defaults");
	CHECK(regexec(&c.cert_host_re, "sns.us-east-1.amazonaws.com", 0, NULL, 0) == 0 &&
		      regexec(&c.cert_host_re, "sns.cn-north-1.amazonaws.com.cn", 0, NULL, 0) == 0 &&
		      regexec(&c.cert_host_re, "sns.us-east-1.amazonaws.com.evil.example", 0, NULL, 0) != 0,
	      "default host pattern");
	CHECK(config_topic_allowed(&c, "anything"), "any topic");
	CHECK(c.spool_dir == NULL && c.spool_max_bytes == 1073741824ull, "no spool");
	config_free(&c);

	const char *const env_spool[] = {"MAILTRAIL_SPOOL_DIR", "/var/spool/mt",
					 "MAILTRAIL_SPOOL_MAX_BYTES", "65536", NULL};
	CHECK(run(&c, env_spool, err, sizeof(err), NULL) == CONFIG_OK, "%s", err);
	CHECK(strcmp(c.spool_dir, "/var/spool/mt") == 0 && c.spool_max_bytes == 65536,
	      "spool from the environment");
	config_free(&c);
	CHECK(run(&c, env_spool, err, sizeof(err), "--spool-max-bytes", "2000000", NULL) == CONFIG_OK,
	      "%s", err);
	CHECK(c.spool_max_bytes == 2000000, "spool flag wins");
	config_free(&c);

	/* Flags, both spellings; the flag wins over the variable. */
	const char *const env1[] = {"MAILTRAIL_RETENTION_DAYS", "7", "MAILTRAIL_LISTEN", "127.0.0.1:9",
				    "MAILTRAIL_TOPIC", "arn:a, arn:b", "MAILTRAIL_KEEP_HEADERS", "true",
				    NULL};
	CHECK(run(&c, env1, err, sizeof(err), "--listen=[::1]:0", "--redis",
		  "redis://:s3cret@redis.internal:6380/3", "--auto-confirm", "no", NULL) == CONFIG_OK,
	      "%s", err);
	CHECK(strcmp(c.listen.host, "::1") == 0 && c.listen.port == 0, "listen v6");
	CHECK(c.retention_days == 7 && c.keep_headers && !c.auto_confirm, "env values");
	CHECK(strcmp(c.redis.host, "redis.internal") == 0 && c.redis.port == 6380 &&
		      c.redis.db == 3 && strcmp(c.redis.password, "s3cret") == 0, "redis url");
	CHECK(c.ntopics == 2 && config_topic_allowed(&c, "arn:b") &&
		      !config_topic_allowed(&c, "arn:c"), "env topics");
	config_free(&c);

	CHECK(run(&c, env1, err, sizeof(err), "--topic", "arn:x", "--topic", "arn:y",
		  "--redis", "unix:///run/redis.sock", "--keep-headers", NULL) == CONFIG_OK, "%s", err);
	CHECK(c.ntopics == 2 && config_topic_allowed(&c, "arn:y") &&
		      !config_topic_allowed(&c, "arn:a"), "flag topics win");
	CHECK(c.redis.is_unix && strcmp(c.redis.path, "/run/redis.sock") == 0, "unix");
	CHECK(!c.redis.cluster, "no cluster by default");
	config_free(&c);

	/* --redis-cluster: a switch and a variable, with a host:port seed;
	 * the URL (whatever order) does not reset it. */
	CHECK(run(&c, NULL, err, sizeof(err), "--redis-cluster", "--redis",
		  "redis://:pw@10.0.0.5:7000", NULL) == CONFIG_OK, "%s", err);
	CHECK(c.redis.cluster && c.redis.port == 7000 && strcmp(c.redis.password, "pw") == 0,
	      "cluster flag");
	config_free(&c);
	const char *const env_cluster[] = {"MAILTRAIL_REDIS_CLUSTER", "yes", NULL};
	CHECK(run(&c, env_cluster, err, sizeof(err), NULL) == CONFIG_OK && c.redis.cluster,
	      "cluster from the environment: %s", err);
	config_free(&c);
	CHECK(run(&c, env_cluster, err, sizeof(err), "--redis-cluster=no", NULL) == CONFIG_OK &&
		      !c.redis.cluster, "cluster flag wins: %s", err);
	config_free(&c);

	/* Errors: exit 2 with one line naming the option. */
	EXPECT_ERROR("--listen", NULL, "--listen", "nonsense");
	EXPECT_ERROR("--listen", NULL, "--listen", "1.2.3.4:70000");
	EXPECT_ERROR("--retention-days", NULL, "--retention-days", "-1");
	EXPECT_ERROR("--retention-days", NULL, "--retention-days", "0");
	EXPECT_ERROR("--auto-confirm", NULL, "--auto-confirm", "maybe");
	EXPECT_ERROR("--cert-host-pattern", NULL, "--cert-host-pattern", "(");
	EXPECT_ERROR("--redis", NULL, "--redis", "http://x");
	EXPECT_ERROR("--redis", NULL, "--redis", "redis://host:0");
	EXPECT_ERROR("--redis-cluster", NULL, "--redis-cluster", "--redis", "unix:///run/r.sock");
	EXPECT_ERROR("--redis-cluster", NULL, "--redis-cluster", "--redis", "redis://h:7000/2");
	EXPECT_ERROR("--redis-cluster", env_cluster, "--redis", "redis://h:7000/1");
	EXPECT_ERROR("--redis-cluster", NULL, "--redis-cluster=perhaps");
	EXPECT_ERROR("--max-body", NULL, "--max-body", "12x");
	EXPECT_ERROR("--max-age", NULL, "--max-age", "");
	EXPECT_ERROR("--log-format", NULL, "--log-format", "xml");
	EXPECT_ERROR("--log-level", NULL, "--log-level", "loud");
	EXPECT_ERROR("--tls-key", NULL, "--tls-cert", "x.pem");
	EXPECT_ERROR("--listen", NULL, "--listen");
	EXPECT_ERROR("--spool-dir", NULL, "--spool-dir", "");
	EXPECT_ERROR("--spool-max-bytes", NULL, "--spool-max-bytes", "65535");
	EXPECT_ERROR("--spool-max-bytes", NULL, "--spool-max-bytes", "1G");
	const char *const env_spool_bad[] = {"MAILTRAIL_SPOOL_MAX_BYTES", "-5", NULL};
	EXPECT_ERROR("--spool-max-bytes", env_spool_bad, "--log-level", "info");
	EXPECT_ERROR("--bogus", NULL, "--bogus");
	const char *const env_bad[] = {"MAILTRAIL_RETENTION_DAYS", "abc", NULL};
	EXPECT_ERROR("--retention-days", env_bad, "--log-level", "info");

	CHECK(run(&c, NULL, err, sizeof(err), "--help", NULL) == CONFIG_EXIT, "help");
	config_free(&c);
	CHECK(run(&c, NULL, err, sizeof(err), "--version", NULL) == CONFIG_EXIT, "version");
	config_free(&c);
	test_managed_redis();
	return test_report("config");
}
