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
	return test_report("config");
}
