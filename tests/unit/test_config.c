#include <stdarg.h>
#include <time.h>
#include <unistd.h>
#include "config.h"
#include "testutil.h"

static bool check_file(const char *path)
{
	CHECK(path != NULL, "cannot write a temporary file");
	return path != NULL;
}
#define CHECK_FILE(p) check_file(p)

#define T "--topic", "arn:aws:sns:us-east-1:123456789012:ses"

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

/* The obvious backtracking matcher, for comparison on small inputs: '*'
 * matches any run within a field, ':' separates 6 fields. */
static int ref_field(const char *p, const char *pe, const char *t, const char *te)
{
	if (p == pe)
		return t == te;
	if (*p == '*')
		for (const char *u = t;; u++) {
			if (ref_field(p + 1, pe, u, te))
				return 1;
			if (u == te)
				return 0;
		}
	return t < te && *t == *p && ref_field(p + 1, pe, t + 1, te);
}

static int ref_match(const char *p, const char *t)
{
	int nf = 0;
	for (;;) {
		const char *pe = strchr(p, ':'), *te = strchr(t, ':');
		nf++;
		if (!pe != !te)
			return 0;
		if (!pe)
			return nf == 6 && ref_field(p, p + strlen(p), t, t + strlen(t));
		if (nf == 6 || !ref_field(p, pe, t, te))
			return 0;
		p = pe + 1;
		t = te + 1;
	}
}

static unsigned long long rng = 88172645463325252ull;

static unsigned next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng >> 32);
}

/* Six ':'-separated fields of 0 to 3 characters of alphabet; one time in
 * eight a ':' more or less. */
static void random_arn(char *out, const char *alphabet)
{
	size_t n = 0, a = strlen(alphabet);
	int fields = 6 + (next_rand() % 8 == 0 ? (next_rand() % 2 ? 1 : -1) : 0);
	for (int f = 0; f < fields; f++) {
		if (f)
			out[n++] = ':';
		for (unsigned k = next_rand() % 4; k; k--)
			out[n++] = alphabet[next_rand() % a];
	}
	out[n] = '\0';
}

static const char *write_temp(char *path, const char *data, size_t len)
{
	strcpy(path, "/tmp/mt-test-token-XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	close(fd);
	return path;
}

static void test_topics(void)
{
	struct config c;
	char err[512];
	const char *acct = "arn:aws:sns:*:123456789012:*";

	/* Required, or the explicit opt-out. */
	EXPECT_ERROR("--topic", NULL, "--log-level", "info");
	CHECK(run(&c, NULL, err, sizeof(err), NULL) == CONFIG_ERROR &&
		      strstr(err, "--topic is required") && strstr(err, "--any-topic"), "%s", err);
	config_free(&c);
	CHECK(run(&c, NULL, err, sizeof(err), "--any-topic", NULL) == CONFIG_OK && c.any_topic &&
		      config_topic_allowed(&c, "arn:aws:sns:us-east-1:999999999999:theirs"),
	      "--any-topic: %s", err);
	config_free(&c);
	const char *const env_any[] = {"MAILTRAIL_ANY_TOPIC", "yes", NULL};
	CHECK(run(&c, env_any, err, sizeof(err), NULL) == CONFIG_OK && c.any_topic,
	      "MAILTRAIL_ANY_TOPIC: %s", err);
	config_free(&c);
	const char *const env_any_no[] = {"MAILTRAIL_ANY_TOPIC", "no", NULL};
	EXPECT_ERROR("--topic", env_any_no, "--log-level", "info");
	/* One setting: a flag of either makes both variables ignored; both in
	 * one place is an error. */
	const char *const env_topic[] = {"MAILTRAIL_TOPIC", "arn:aws:sns:us-east-1:123456789012:env", NULL};
	CHECK(run(&c, env_topic, err, sizeof(err), "--any-topic", NULL) == CONFIG_OK &&
		      c.any_topic && c.ntopics == 0, "--any-topic flag over MAILTRAIL_TOPIC: %s", err);
	config_free(&c);
	CHECK(run(&c, env_any, err, sizeof(err), T, NULL) == CONFIG_OK && !c.any_topic &&
		      c.ntopics == 1, "--topic flag over MAILTRAIL_ANY_TOPIC: %s", err);
	config_free(&c);
	EXPECT_ERROR("--any-topic", NULL, T, "--any-topic");
	const char *const env_both[] = {"MAILTRAIL_ANY_TOPIC", "yes", "MAILTRAIL_TOPIC",
					"arn:aws:sns:us-east-1:123456789012:env", NULL};
	EXPECT_ERROR("--any-topic", env_both, "--log-level", "info");
	EXPECT_ERROR("--any-topic", NULL, "--any-topic=perhaps");

	/* Shapes refused at start. */
	static const char *const bad[] = {
		"arn:a", "arn:aws:sns:us-east-1:123456789012", "arn:aws:sns:us-east-1:123456789012:a:b",
		"arx:aws:sns:us-east-1:123456789012:a", "arn:aws:sqs:us-east-1:123456789012:a",
		"arn:aws:sns:us-east-1:12345678901:a", "arn:aws:sns:us-east-1:1234567890123:a",
		"arn:aws:sns:us-east-1:12345678901x:a", "arn:aws:sns:us-east-1:123456789012:",
		"arn::sns:us-east-1:123456789012:a", "arn:aws:sns::123456789012:a",
		"arn:aws:sns:us-east-1:123456789012:a b", "arn:aws:sns:us east:123456789012:a",
		"arn:aws:sns:us-east-1:123456789012:a/b", "", "*",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		EXPECT_ERROR("--topic", NULL, "--topic", bad[i]);
	/* A wildcard account is "any topic". */
	static const char *const any_acct[] = {"arn:aws:sns:*:*:*", "arn:aws:sns:us-east-1:*:ses",
					       "arn:aws:sns:*:12345678901*:*"};
	for (size_t i = 0; i < 3; i++) {
		CHECK(run(&c, NULL, err, sizeof(err), "--topic", any_acct[i], NULL) == CONFIG_ERROR &&
			      strstr(err, "--any-topic") && !strchr(err, '\n'),
		      "wildcard account %s: %s", any_acct[i], err);
		config_free(&c);
	}
	const char *const env_bad_topic[] = {"MAILTRAIL_TOPIC", "arn:aws:sns:us-east-1:*:x", NULL};
	EXPECT_ERROR("--topic", env_bad_topic, "--log-level", "info");
	char longest[CONFIG_TOPIC_ARN_MAX + 2];
	snprintf(longest, sizeof(longest), "arn:aws:sns:us-east-1:123456789012:");
	memset(longest + strlen(longest), 'n', sizeof(longest) - strlen(longest) - 1);
	longest[sizeof(longest) - 1] = '\0';
	EXPECT_ERROR("--topic", NULL, "--topic", longest);

	/* Patterns. */
	CHECK(run(&c, NULL, err, sizeof(err), "--topic", acct, "--topic",
		  "arn:aws-cn:sns:cn-*-1:210987654321:ses-*-events.fifo", NULL) == CONFIG_OK,
	      "patterns: %s", err);
	static const struct {
		const char *arn;
		bool ok;
	} cases[] = {
		{"arn:aws:sns:us-east-1:123456789012:ses-events", true},
		{"arn:aws:sns:eu-west-1:123456789012:x", true},
		{"arn:aws:sns:eu-west-1:123456789012:", true}, /* '*' matches none too */
		{"arn:aws:sns:us-east-1:123456789013:ses-events", false},
		{"arn:aws:sns:us-east-1:1234567890123:ses-events", false},
		{"arn:aws:sns:us-east-1:123456789012:a:b", false}, /* '*' never spans ':' */
		{"arn:aws:sns:us-east-1:123456789012", false},
		{"arn:aws:sqs:us-east-1:123456789012:x", false},
		{"arn:aws-cn:sns:us-east-1:123456789012:x", false},
		{"xarn:aws:sns:us-east-1:123456789012:x", false},
		{"arn:aws:sns:us-east-1:x123456789012:x", false},
		{"arn:aws-cn:sns:cn-north-1:210987654321:ses-prod-events.fifo", true},
		{"arn:aws-cn:sns:cn-north-1:210987654321:ses--events.fifo", true},
		{"arn:aws-cn:sns:cn-north-1:210987654321:ses-events.fifo", false},
		{"arn:aws-cn:sns:cn-north-2:210987654321:ses-a-events.fifo", false},
		{"arn:aws-cn:sns:cn-1:210987654321:ses-a-events.fifo", false},
		{"arn:aws-cn:sns:cn-north-1:210987654321:ses-a-events.fifox", false},
		{"", false},
		{":::::", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
		CHECK(config_topic_allowed(&c, cases[i].arn) == cases[i].ok, "%s: want %d",
		      cases[i].arn, cases[i].ok);
	/* A TopicArn past CONFIG_TOPIC_ARN_MAX is never accepted. */
	char huge[CONFIG_TOPIC_ARN_MAX + 64];
	snprintf(huge, sizeof(huge), "arn:aws:sns:us-east-1:123456789012:");
	memset(huge + strlen(huge), 'n', sizeof(huge) - strlen(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	CHECK(!config_topic_allowed(&c, huge), "over-long TopicArn");
	config_free(&c);

	/* The matcher against the backtracking one, on random small inputs
	 * over an alphabet that makes matches and near misses likely. */
	unsigned agree = 0, matched = 0;
	for (int i = 0; i < 200000; i++) {
		char p[32], t[32];
		random_arn(p, "a**");
		random_arn(t, "aab");
		bool want = ref_match(p, t), got = config_arn_match(p, t);
		CHECK(want == got, "pattern '%s' text '%s': want %d got %d", p, t, want, got);
		agree += want == got;
		matched += want;
	}
	CHECK(matched > 2000, "the random cases match often enough (%u)", matched);

	/* Linear: a pattern that makes a backtracking matcher try every split
	 * against a long field, run on a field far beyond the topic limit. */
	size_t big = 1u << 20;
	char *text = malloc(big + 64), *pat = malloc(4096);
	if (text && pat) {
		size_t n = (size_t)snprintf(text, 64, "arn:aws:sns:r:123456789012:");
		memset(text + n, 'a', big);
		text[n + big] = '\0';
		n = (size_t)snprintf(pat, 64, "arn:aws:sns:r:123456789012:");
		for (int k = 0; k < 200; k++)
			n += (size_t)snprintf(pat + n, 4096 - n, "*a");
		snprintf(pat + n, 4096 - n, "*b");
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		bool m = config_arn_match(pat, text); /* over the length limit: refused */
		text[500] = 0; /* ... and one within it, 1,000 times */
		bool m2 = true;
		for (int r = 0; r < 1000; r++)
			m2 &= config_arn_match(pat, text);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
		CHECK(!m && !m2, "no match");
		CHECK(ms < 2000, "1,001 adversarial matches took %.0f ms", ms);
	}
	free(text);
	free(pat);
}

static void test_redis_prefix(void)
{
	struct config c;
	char err[256];
	EXPECT_ERROR("--redis-prefix", NULL, T, "--redis-prefix", "app{1}:");
	EXPECT_ERROR("--redis-prefix", NULL, T, "--redis-prefix", "app}");
	EXPECT_ERROR("--redis-prefix", NULL, T, "--redis-prefix", "{");
	const char *const env_prefix[] = {"MAILTRAIL_REDIS_PREFIX", "mt{x:", NULL};
	EXPECT_ERROR("--redis-prefix", env_prefix, T);
	CHECK(run(&c, NULL, err, sizeof(err), T, "--redis-prefix", "app:mt:", NULL) == CONFIG_OK &&
		      strcmp(c.redis_prefix, "app:mt:") == 0, "%s", err);
	config_free(&c);
}

static void test_connections(void)
{
	struct config c;
	char err[256];
	CHECK(run(&c, NULL, err, sizeof(err), T, "--max-connections", "4",
		  "--max-connections-per-ip", "0", NULL) == CONFIG_OK &&
		      c.max_connections == 4 && c.max_connections_per_ip == 0, "%s", err);
	config_free(&c);
	const char *const env[] = {"MAILTRAIL_MAX_CONNECTIONS", "1000",
				   "MAILTRAIL_MAX_CONNECTIONS_PER_IP", "100", NULL};
	CHECK(run(&c, env, err, sizeof(err), T, NULL) == CONFIG_OK &&
		      c.max_connections == 1000 && c.max_connections_per_ip == 100, "%s", err);
	config_free(&c);
	EXPECT_ERROR("--max-connections", NULL, T, "--max-connections", "0");
	EXPECT_ERROR("--max-connections", NULL, T, "--max-connections", "-1");
	EXPECT_ERROR("--max-connections", NULL, T, "--max-connections", "100001");
	EXPECT_ERROR("--max-connections-per-ip", NULL, T, "--max-connections-per-ip", "x");
}

static void test_api_token(void)
{
	struct config c;
	char err[512], path[64], path2[64];
	const char *good = "0123456789abcdef0123456789abcdef";

	/* Beyond loopback: a token, or the explicit opt-out. */
	EXPECT_ERROR("--api-token", NULL, T, "--api-listen", "0.0.0.0:8081");
	EXPECT_ERROR("--api-listen", NULL, T, "--api-listen", "[::]:8081");
	EXPECT_ERROR("--api-listen", NULL, T, "--api-listen", "10.1.2.3:8081");
	static const char *const loop[] = {"127.0.0.1:8081", "127.9.9.9:0", "[::1]:8081",
					   "[::ffff:127.0.0.1]:8081", "off"};
	for (size_t i = 0; i < 5; i++) {
		CHECK(run(&c, NULL, err, sizeof(err), T, "--api-listen", loop[i], NULL) == CONFIG_OK,
		      "%s: %s", loop[i], err);
		config_free(&c);
	}
	CHECK(run(&c, NULL, err, sizeof(err), T, "--api-listen", "0.0.0.0:8081", "--api-no-token",
		  NULL) == CONFIG_OK && c.api_no_token && !c.api_token, "opt-out: %s", err);
	config_free(&c);
	const char *const env_open[] = {"MAILTRAIL_API_LISTEN", "0.0.0.0:8081",
					"MAILTRAIL_API_NO_TOKEN", "yes", NULL};
	CHECK(run(&c, env_open, err, sizeof(err), T, NULL) == CONFIG_OK, "env opt-out: %s", err);
	config_free(&c);
	CHECK(run(&c, NULL, err, sizeof(err), T, "--api-listen", "0.0.0.0:8081", "--api-token",
		  good, NULL) == CONFIG_OK && strcmp(c.api_token, good) == 0, "token: %s", err);
	config_free(&c);

	/* Short tokens and placeholders, wherever they come from. */
	static const char *const weak[] = {
		"tiny", "0123456789abcde", "CHANGE-ME-use-openssl-rand-hex-32",
		"changeme0123456789", "please_Change_Me_1234", "my-token-placeholder-1",
		"an-EXAMPLE-token-value", "XXXXXXXXXXXXXXXXXXXXXXXX", "your-token-goes-here",
		"0123456789abcdef 0123", "0123456789abcdef\t0123", "0123456789abcdef\x01",
	};
	for (size_t i = 0; i < sizeof(weak) / sizeof(*weak); i++) {
		CHECK(run(&c, NULL, err, sizeof(err), T, "--api-token", weak[i], NULL) == CONFIG_ERROR &&
			      strstr(err, "--api-token") && !strstr(err, weak[i]),
		      "weak token %zu refused without being shown: %s", i, err);
		config_free(&c);
	}
	const char *const env_weak[] = {"MAILTRAIL_API_TOKEN", "CHANGE-ME", NULL};
	EXPECT_ERROR("--api-token", env_weak, T);
	char too_long[CONFIG_API_TOKEN_MAX + 2];
	memset(too_long, 'a', sizeof(too_long) - 1);
	too_long[sizeof(too_long) - 1] = '\0';
	EXPECT_ERROR("--api-token", NULL, T, "--api-token", too_long);

	/* From a file: one trailing newline stripped. */
	char content[80];
	snprintf(content, sizeof(content), "%s\n", good);
	if (CHECK_FILE(write_temp(path, content, strlen(content)))) {
		CHECK(run(&c, NULL, err, sizeof(err), T, "--api-listen", "0.0.0.0:8081",
			  "--api-token-file", path, NULL) == CONFIG_OK &&
			      c.api_token && strcmp(c.api_token, good) == 0, "token file: %s", err);
		config_free(&c);
		const char *const env_file[] = {"MAILTRAIL_API_TOKEN_FILE", path, NULL};
		CHECK(run(&c, env_file, err, sizeof(err), T, NULL) == CONFIG_OK && c.api_token &&
			      strcmp(c.api_token, good) == 0, "token file from env: %s", err);
		config_free(&c);
		EXPECT_ERROR("--api-token-file", NULL, T, "--api-token-file", path, "--api-token", good);
		const char *const env_tok[] = {"MAILTRAIL_API_TOKEN", good, NULL};
		EXPECT_ERROR("--api-token-file", env_tok, T, "--api-token-file", path);
		unlink(path);
	}
	snprintf(content, sizeof(content), "%s\r\n", good);
	if (CHECK_FILE(write_temp(path, content, strlen(content)))) {
		CHECK(run(&c, NULL, err, sizeof(err), T, "--api-token-file", path, NULL) == CONFIG_OK &&
			      c.api_token && strcmp(c.api_token, good) == 0, "CRLF: %s", err);
		config_free(&c);
		unlink(path);
	}
	/* A placeholder, a short one, two lines, a NUL, nothing: refused. */
	static const struct {
		const char *data;
		size_t len;
	} bad_files[] = {
		{"CHANGE-ME-use-openssl-rand-hex-32\n", 34},
		{"abc\n", 4},
		{"0123456789abcdef\n0123456789abcdef\n", 34},
		{"0123456789abcdef\0" "0123456789abcdef", 33},
		{"", 0},
		{"\n", 1},
	};
	for (size_t i = 0; i < sizeof(bad_files) / sizeof(*bad_files); i++) {
		if (!CHECK_FILE(write_temp(path2, bad_files[i].data, bad_files[i].len)))
			continue;
		EXPECT_ERROR("--api-token-file", NULL, T, "--api-token-file", path2);
		unlink(path2);
	}
	EXPECT_ERROR("--api-token-file", NULL, T, "--api-token-file", "/nonexistent/token");
	EXPECT_ERROR("--api-token-file", NULL, T, "--api-token-file", "");
}

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
	CHECK(run(&c, NULL, err, sizeof(err), T, "--redis-ca-file", "/etc/r/ca.pem", "--redis-cert",
		  "/etc/r/c.pem", "--redis-key", "/etc/r/c.key", "--redis",
		  "rediss://mailtrail:pw@r.internal:6380", NULL) == CONFIG_OK, "%s", err);
	CHECK(c.redis.tls && strcmp(c.redis.tls_ca_file, "/etc/r/ca.pem") == 0 &&
		      strcmp(c.redis.tls_cert, "/etc/r/c.pem") == 0 &&
		      strcmp(c.redis.tls_key, "/etc/r/c.key") == 0 &&
		      strcmp(c.redis.user, "mailtrail") == 0 && c.redis.port == 6380, "tls flags");
	config_free(&c);
	const char *const env_tls[] = {"MAILTRAIL_REDIS", "rediss://:pw@r:1", "MAILTRAIL_REDIS_CA_FILE",
				       "/ca.pem", "MAILTRAIL_REDIS_CLUSTER", "yes", NULL};
	CHECK(run(&c, env_tls, err, sizeof(err), T, NULL) == CONFIG_OK && c.redis.tls &&
		      c.redis.cluster && strcmp(c.redis.tls_ca_file, "/ca.pem") == 0 &&
		      !c.redis.tls_cert, "tls from the environment, a TLS cluster: %s", err);
	config_free(&c);
	EXPECT_ERROR("--redis-ca-file", NULL, T, "--redis-ca-file", "/ca.pem");
	EXPECT_ERROR("--redis-cert", NULL, T, "--redis", "redis://h:1", "--redis-cert", "c.pem",
		     "--redis-key", "c.key");
	EXPECT_ERROR("--redis-key", NULL, T, "--redis", "rediss://h:1", "--redis-cert", "c.pem");
	EXPECT_ERROR("--redis-cert", NULL, T, "--redis", "rediss://h:1", "--redis-key", "c.key");
	EXPECT_ERROR("--redis-ca-file", NULL, T, "--redis", "rediss://h:1", "--redis-ca-file=");
	EXPECT_ERROR("--redis-cluster", NULL, T, "--redis-cluster", "--redis", "rediss://h:7000/3");

	/* A bad URL is named, its user and password are not shown. */
	const char *bad[] = {"rediss://mtuser:Sup3rSecret@h:0", "redis://:Sup3rSecret@h/99",
			     "redis://mtuser:Sup3rSecret@", "rediss://Sup3rSecret@h:1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(run(&c, NULL, err, sizeof(err), T, "--redis", bad[i], NULL) == CONFIG_ERROR &&
			      strstr(err, "--redis") && strstr(err, "***@") &&
			      !strstr(err, "Sup3rSecret") && !strstr(err, "mtuser"),
		      "flag '%s': '%s'", bad[i], err);
		config_free(&c);
		const char *const env_bad_url[] = {"MAILTRAIL_REDIS", bad[i], NULL};
		CHECK(run(&c, env_bad_url, err, sizeof(err), T, NULL) == CONFIG_ERROR &&
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
	/* Malformed or unknown schemes: no password, whatever the shape. */
	const struct {
		const char *url, *want;
	} odd[] = {
		{"rediss:/:S3cretPassw0rd@redis.example.com:6380", "rediss:/***@redis.example.com:6380"},
		{"redis:S3cretPassw0rd@h:1", "redis:***@h:1"},
		{"redis//mtuser:S3cretPassw0rd@h:1", "***@h:1"},
		{"http://mtuser:S3cretPassw0rd@h:1", "http://***@h:1"},
		{"redis:/:S3cretPassw0rd", "redis:/***"},
		{"S3cretPassw0rd", "***"},
		{"h:6379", "h:***"},
		{"", "***"},
	};
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		config_redis_url_redacted(odd[i].url, shown, sizeof(shown));
		CHECK(strcmp(shown, odd[i].want) == 0 && !strstr(shown, "S3cret") &&
			      !strstr(shown, "mtuser"),
		      "'%s' shown as '%s', want '%s'", odd[i].url, shown, odd[i].want);
	}
	/* The same through the error lines, flag and variable. */
	const char *mistyped = "rediss:/:S3cretPassw0rd@redis.example.com:6380";
	CHECK(run(&c, NULL, err, sizeof(err), T, "--redis", mistyped, NULL) == CONFIG_ERROR &&
		      strstr(err, "--redis") && strstr(err, "@redis.example.com:6380") &&
		      !strstr(err, "S3cret"),
	      "flag: '%s'", err);
	config_free(&c);
	const char *const env_mistyped[] = {"MAILTRAIL_REDIS", mistyped, NULL};
	CHECK(run(&c, env_mistyped, err, sizeof(err), T, NULL) == CONFIG_ERROR &&
		      strstr(err, "MAILTRAIL_REDIS") && !strstr(err, "S3cret"),
	      "variable: '%s'", err);
	config_free(&c);
}

int main(void)
{
	struct config c;
	char err[256];

	/* Defaults of SPEC.md (--topic is required). */
	CHECK(run(&c, NULL, err, sizeof(err), T, NULL) == CONFIG_OK, "%s", err);
	CHECK(strcmp(c.listen.host, "0.0.0.0") == 0 && c.listen.port == 8080, "listen");
	CHECK(!c.redis.is_unix && strcmp(c.redis.host, "127.0.0.1") == 0 &&
		      c.redis.port == 6379 && c.redis.db == 0, "redis");
	CHECK(strcmp(c.redis_prefix, "mailtrail:") == 0, "prefix");
	CHECK(c.auto_confirm && c.retention_days == 90 && !c.keep_headers &&
		      c.max_body == 1048576 && c.max_age_s == 0 && c.ntopics == 1 &&
		      c.log_format == LOG_FORMAT_JSON && c.log_level == LOG_INFO, "defaults");
	CHECK(regexec(&c.cert_host_re, "sns.us-east-1.amazonaws.com", 0, NULL, 0) == 0 &&
		      regexec(&c.cert_host_re, "sns.cn-north-1.amazonaws.com.cn", 0, NULL, 0) == 0 &&
		      regexec(&c.cert_host_re, "sns.us-east-1.amazonaws.com.evil.example", 0, NULL, 0) != 0,
	      "default host pattern");
	CHECK(!config_topic_allowed(&c, "anything") &&
		      config_topic_allowed(&c, "arn:aws:sns:us-east-1:123456789012:ses") &&
		      !c.any_topic, "only the topic given");
	CHECK(c.max_connections == 256 && c.max_connections_per_ip == 32, "connection limits");
	CHECK(c.api_token == NULL && !c.api_no_token, "no token");
	CHECK(c.spool_dir == NULL && c.spool_max_bytes == 1073741824ull, "no spool");
	CHECK(c.health_min_volume == 100, "health min volume default");
	config_free(&c);

	const char *const env_health[] = {"MAILTRAIL_HEALTH_MIN_VOLUME", "25", NULL};
	CHECK(run(&c, env_health, err, sizeof(err), T, NULL) == CONFIG_OK, "%s", err);
	CHECK(c.health_min_volume == 25, "health min volume from the environment");
	config_free(&c);
	CHECK(run(&c, env_health, err, sizeof(err), T, "--health-min-volume", "0", NULL) == CONFIG_OK,
	      "%s", err);
	CHECK(c.health_min_volume == 0, "health min volume flag wins");
	config_free(&c);

	CHECK(run(&c, NULL, err, sizeof(err), T, NULL) == CONFIG_OK && c.policy.nstatuses == 7 &&
		      c.policy.soft_bounces == 5 && c.policy.soft_days == 30 &&
		      strcmp(c.policy.statuses[4], "5.1.10") == 0,
	      "policy defaults: %s", err);
	config_free(&c);
	const char *const env_policy[] = {"MAILTRAIL_SUPPRESS_STATUSES", "5.2.2", NULL};
	CHECK(run(&c, env_policy, err, sizeof(err), T, "--suppress-soft-bounces", "0",
		  "--suppress-soft-days", "7", NULL) == CONFIG_OK &&
		      c.policy.nstatuses == 1 && c.policy.soft_bounces == 0 &&
		      c.policy.soft_days == 7,
	      "policy flags: %s", err);
	config_free(&c);
	CHECK(run(&c, env_policy, err, sizeof(err), T, "--suppress-statuses", "none", NULL) ==
			  CONFIG_OK && c.policy.nstatuses == 0,
	      "policy none: %s", err);
	config_free(&c);

	const char *const env_spool[] = {"MAILTRAIL_SPOOL_DIR", "/var/spool/mt",
					 "MAILTRAIL_SPOOL_MAX_BYTES", "65536", NULL};
	CHECK(run(&c, env_spool, err, sizeof(err), T, NULL) == CONFIG_OK, "%s", err);
	CHECK(strcmp(c.spool_dir, "/var/spool/mt") == 0 && c.spool_max_bytes == 65536,
	      "spool from the environment");
	config_free(&c);
	CHECK(run(&c, env_spool, err, sizeof(err), T, "--spool-max-bytes", "2000000", NULL) == CONFIG_OK,
	      "%s", err);
	CHECK(c.spool_max_bytes == 2000000, "spool flag wins");
	config_free(&c);

	/* Flags, both spellings; the flag wins over the variable. */
	const char *const env1[] = {"MAILTRAIL_RETENTION_DAYS", "7", "MAILTRAIL_LISTEN", "127.0.0.1:9",
				    "MAILTRAIL_TOPIC", "arn:aws:sns:us-east-1:123456789012:a, arn:aws:sns:us-east-1:123456789012:b",
				    "MAILTRAIL_KEEP_HEADERS", "true",
				    NULL};
	CHECK(run(&c, env1, err, sizeof(err), "--listen=[::1]:0", "--redis",
		  "redis://:s3cret@redis.internal:6380/3", "--auto-confirm", "no", NULL) == CONFIG_OK,
	      "%s", err);
	CHECK(strcmp(c.listen.host, "::1") == 0 && c.listen.port == 0, "listen v6");
	CHECK(c.retention_days == 7 && c.keep_headers && !c.auto_confirm, "env values");
	CHECK(strcmp(c.redis.host, "redis.internal") == 0 && c.redis.port == 6380 &&
		      c.redis.db == 3 && strcmp(c.redis.password, "s3cret") == 0, "redis url");
	CHECK(c.ntopics == 2 && config_topic_allowed(&c, "arn:aws:sns:us-east-1:123456789012:b") &&
		      !config_topic_allowed(&c, "arn:aws:sns:us-east-1:123456789012:c"), "env topics");
	config_free(&c);

	CHECK(run(&c, env1, err, sizeof(err), "--topic", "arn:aws:sns:eu-west-1:123456789012:x",
		  "--topic", "arn:aws:sns:eu-west-1:123456789012:y",
		  "--redis", "unix:///run/redis.sock", "--keep-headers", NULL) == CONFIG_OK, "%s", err);
	CHECK(c.ntopics == 2 && config_topic_allowed(&c, "arn:aws:sns:eu-west-1:123456789012:y") &&
		      !config_topic_allowed(&c, "arn:aws:sns:us-east-1:123456789012:a"),
	      "flag topics win");
	CHECK(c.redis.is_unix && strcmp(c.redis.path, "/run/redis.sock") == 0, "unix");
	CHECK(!c.redis.cluster, "no cluster by default");
	config_free(&c);

	/* --redis-cluster: a switch and a variable, with a host:port seed;
	 * the URL (whatever order) does not reset it. */
	CHECK(run(&c, NULL, err, sizeof(err), T, "--redis-cluster", "--redis",
		  "redis://:pw@10.0.0.5:7000", NULL) == CONFIG_OK, "%s", err);
	CHECK(c.redis.cluster && c.redis.port == 7000 && strcmp(c.redis.password, "pw") == 0,
	      "cluster flag");
	config_free(&c);
	const char *const env_cluster[] = {"MAILTRAIL_REDIS_CLUSTER", "yes", "MAILTRAIL_ANY_TOPIC", "yes",
					   NULL};
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
	EXPECT_ERROR("--health-min-volume", NULL, "--health-min-volume", "-1");
	EXPECT_ERROR("--health-min-volume", NULL, "--health-min-volume", "1e3");
	EXPECT_ERROR("--health-min-volume", NULL, "--health-min-volume", "1000000001");
	const char *const env_health_bad[] = {"MAILTRAIL_HEALTH_MIN_VOLUME", "many", NULL};
	EXPECT_ERROR("--health-min-volume", env_health_bad, "--log-level", "info");
	EXPECT_ERROR("--suppress-statuses", NULL, "--suppress-statuses", "5.1");
	EXPECT_ERROR("--suppress-statuses", NULL, "--suppress-statuses", "");
	EXPECT_ERROR("--suppress-statuses", NULL, "--suppress-statuses", "5.1.1,,5.4.4");
	EXPECT_ERROR("--suppress-soft-bounces", NULL, "--suppress-soft-bounces", "101");
	EXPECT_ERROR("--suppress-soft-bounces", NULL, "--suppress-soft-bounces", "-1");
	EXPECT_ERROR("--suppress-soft-days", NULL, "--suppress-soft-days", "0");
	EXPECT_ERROR("--suppress-soft-days", NULL, "--suppress-soft-days", "3651");
	const char *const env_bad[] = {"MAILTRAIL_RETENTION_DAYS", "abc", NULL};
	EXPECT_ERROR("--retention-days", env_bad, "--log-level", "info");

	test_topics();
	test_redis_prefix();
	test_connections();
	test_api_token();

	CHECK(run(&c, NULL, err, sizeof(err), "--help", NULL) == CONFIG_EXIT, "help");
	config_free(&c);
	CHECK(run(&c, NULL, err, sizeof(err), "--version", NULL) == CONFIG_EXIT, "version");
	config_free(&c);
	test_managed_redis();
	return test_report("config");
}
