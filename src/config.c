/* config.c - flags and MAILTRAIL_* variables, validated up front so that a
 * bad deployment fails at start with one clear line, not at the first
 * delivery. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "mt_version.h"

#define DEFAULT_CERT_HOST_PATTERN "^sns\\.[a-z0-9-]+\\.amazonaws\\.com(\\.cn)?$"

enum opt_id {
	OPT_LISTEN,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_API_LISTEN,
	OPT_API_TOKEN,
	OPT_API_TOKEN_FILE,
	OPT_API_NO_TOKEN,
	OPT_REDIS,
	OPT_REDIS_PREFIX,
	OPT_REDIS_CLUSTER, /* after OPT_REDIS, whose parse resets c->redis */
	/* Managed Redis (rediss://): also after OPT_REDIS. */
	OPT_REDIS_CA_FILE,
	OPT_REDIS_CERT,
	OPT_REDIS_KEY,
	OPT_CERT_HOST_PATTERN,
	OPT_CA_FILE,
	OPT_CERT_CACHE_DIR,
	OPT_SPOOL_DIR,
	OPT_SPOOL_MAX_BYTES,
	OPT_TOPIC,
	OPT_ANY_TOPIC,
	OPT_MAX_AGE,
	OPT_AUTO_CONFIRM,
	OPT_RETENTION_DAYS,
	OPT_HEALTH_MIN_VOLUME,
	OPT_KEEP_HEADERS,
	OPT_MESSAGE_INDEX,
	OPT_SUPPRESS_STATUSES,
	OPT_SUPPRESS_SOFT_BOUNCES,
	OPT_SUPPRESS_SOFT_DAYS,
	OPT_MAX_BODY,
	OPT_MAX_CONNECTIONS,
	OPT_MAX_CONNECTIONS_PER_IP,
	OPT_LOG_FORMAT,
	OPT_LOG_LEVEL,
	OPT_HELP,
	OPT_VERSION,
	OPT__COUNT
};

struct opt {
	const char *name; /* without "--" */
	const char *arg;  /* NULL: a switch */
	const char *def;  /* default, as shown and as parsed */
	const char *help;
};

static const struct opt opts[OPT__COUNT] = {
	[OPT_LISTEN] = {"listen", "ADDR:PORT", "0.0.0.0:8080", "SNS webhook listener"},
	[OPT_TLS_CERT] = {"tls-cert", "FILE", NULL, "serve the webhook over HTTPS: certificate (PEM)"},
	[OPT_TLS_KEY] = {"tls-key", "FILE", NULL, "serve the webhook over HTTPS: private key (PEM)"},
	[OPT_API_LISTEN] = {"api-listen", "ADDR:PORT", "127.0.0.1:8081", "query API and console listener; 'off' disables it"},
	[OPT_API_TOKEN] = {"api-token", "TOKEN", NULL, "require 'Authorization: Bearer TOKEN' on the API and console"},
	[OPT_API_TOKEN_FILE] = {"api-token-file", "FILE", NULL, "the same, the token read from FILE (one line)"},
	[OPT_API_NO_TOKEN] = {"api-no-token", NULL, NULL, "allow --api-listen beyond loopback without a token"},
	[OPT_REDIS] = {"redis", "URL", "redis://127.0.0.1:6379/0", "redis[s]://[[user]:password@]host:port[/db] or unix:///path"},
	[OPT_REDIS_PREFIX] = {"redis-prefix", "STR", "mailtrail:", "prefix of every Redis key"},
	[OPT_REDIS_CLUSTER] = {"redis-cluster", NULL, NULL, "treat --redis as a seed node of a Redis Cluster"},
	[OPT_REDIS_CA_FILE] = {"redis-ca-file", "FILE", NULL, "rediss://: CA bundle the Redis server's certificate must chain to (default: system store)"},
	[OPT_REDIS_CERT] = {"redis-cert", "FILE", NULL, "rediss://: client certificate (PEM) shown to Redis; with --redis-key"},
	[OPT_REDIS_KEY] = {"redis-key", "FILE", NULL, "rediss://: the client certificate's private key (PEM)"},
	[OPT_CERT_HOST_PATTERN] = {"cert-host-pattern", "ERE", DEFAULT_CERT_HOST_PATTERN, "authority of SigningCertURL/SubscribeURL must match"},
	[OPT_CA_FILE] = {"ca-file", "FILE", NULL, "CA bundle for outbound HTTPS (default: system store)"},
	[OPT_CERT_CACHE_DIR] = {"cert-cache-dir", "DIR", NULL, "keep signing certs here; a cert found here is used without fetching"},
	[OPT_SPOOL_DIR] = {"spool-dir", "DIR", NULL, "durable spool: while Redis is unavailable, verified messages are synced here and drained later"},
	[OPT_SPOOL_MAX_BYTES] = {"spool-max-bytes", "N", "1073741824", "a full spool answers 503 (SNS retries)"},
	[OPT_TOPIC] = {"topic", "ARN", NULL, "accept only this TopicArn or ARN pattern, '*' within a field (repeatable; env: comma-separated); required unless --any-topic"},
	[OPT_ANY_TOPIC] = {"any-topic", NULL, NULL, "accept every topic SNS signs (not recommended: see README)"},
	[OPT_MAX_AGE] = {"max-age", "SECONDS", "0", "reject messages older than this (0: off)"},
	[OPT_AUTO_CONFIRM] = {"auto-confirm", "yes|no", "yes", "confirm SubscriptionConfirmation messages"},
	[OPT_RETENTION_DAYS] = {"retention-days", "N", "90", "trim events older than this"},
	[OPT_HEALTH_MIN_VOLUME] = {"health-min-volume", "N", "100", "GET /v1/health: a window with fewer sends is low_volume, not rated"},
	[OPT_KEEP_HEADERS] = {"keep-headers", NULL, NULL, "also store mail.commonHeaders"},
	[OPT_MESSAGE_INDEX] = {"message-index", NULL, NULL, "index events by SES message id (GET /v1/messages/{id}; about 170 bytes of Redis an event)"},
	[OPT_SUPPRESS_STATUSES] = {"suppress-statuses", "LIST", "5.1.1,5.1.2,5.1.3,5.1.6,5.1.10,5.2.1,5.4.4", "a Transient or Undetermined bounce with one of these enhanced status codes suppresses (comma-separated; 'none': off)"},
	[OPT_SUPPRESS_SOFT_BOUNCES] = {"suppress-soft-bounces", "N", "5", "this many soft bounces within --suppress-soft-days and no delivery since suppress (0: off)"},
	[OPT_SUPPRESS_SOFT_DAYS] = {"suppress-soft-days", "D", "30", "the window of --suppress-soft-bounces, in days"},
	[OPT_MAX_BODY] = {"max-body", "BYTES", "1048576", "larger request bodies get 413"},
	[OPT_MAX_CONNECTIONS] = {"max-connections", "N", "256", "connections served at once per listener; more wait"},
	[OPT_MAX_CONNECTIONS_PER_IP] = {"max-connections-per-ip", "N", "32", "connections per client address (0: no limit; behind a load balancer)"},
	[OPT_LOG_FORMAT] = {"log-format", "json|text", "json", "log line format (stdout)"},
	[OPT_LOG_LEVEL] = {"log-level", "debug|info|warn|error", "info", "least severe level logged"},
	[OPT_HELP] = {"help", NULL, NULL, "show this help"},
	[OPT_VERSION] = {"version", NULL, NULL, "show the version"},
};

static void fail(char *err, size_t errsz, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(char *err, size_t errsz, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errsz, fmt, ap);
	va_end(ap);
}

static void env_name(const char *opt, char *out, size_t outsz)
{
	size_t n = (size_t)snprintf(out, outsz, "MAILTRAIL_");
	for (const char *p = opt; *p && n + 1 < outsz; p++)
		out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
	out[n] = '\0';
}

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	if (!*s || !isdigit((unsigned char)*s))
		return false;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return false;
	*out = v;
	return true;
}

static bool parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"yes", "true", "1", "on"};
	static const char *const no[] = {"no", "false", "0", "off"};
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

static bool parse_listen(const char *s, struct config_listen *out)
{
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s)
		return false;
	const char *h = s;
	size_t hl = (size_t)(colon - s);
	if (h[0] == '[') {
		if (hl < 3 || h[hl - 1] != ']')
			return false;
		h++;
		hl -= 2;
	} else if (memchr(h, ':', hl)) {
		return false; /* IPv6 needs brackets */
	}
	if (hl >= sizeof(out->host))
		return false;
	memcpy(out->host, h, hl);
	out->host[hl] = '\0';
	unsigned char buf[16];
	if (inet_pton(AF_INET, out->host, buf) != 1 &&
	    inet_pton(AF_INET6, out->host, buf) != 1)
		return false;
	uint64_t port;
	if (!parse_u64(colon + 1, 65535, &port))
		return false;
	out->port = (unsigned)port;
	return true;
}

/* The part after "redis://" or "rediss://" (*tls says which), or NULL. */
static const char *redis_url_rest(const char *url, bool *tls)
{
	*tls = strncmp(url, "rediss://", 9) == 0;
	if (*tls)
		return url + 9;
	return strncmp(url, "redis://", 8) == 0 ? url + 8 : NULL;
}

bool config_parse_redis_url(const char *url, struct config_redis *out)
{
	memset(out, 0, sizeof(*out));
	if (strncmp(url, "unix://", 7) == 0) {
		const char *path = url + 7;
		if (path[0] != '/' || strlen(path) >= sizeof(out->path))
			return false;
		out->is_unix = true;
		memcpy(out->path, path, strlen(path) + 1);
		return true;
	}
	const char *p = redis_url_rest(url, &out->tls);
	if (!p)
		return false;
	/* user:password@ (an ACL user) or :password@ (the default user).  The
	 * last '@' ends it, the first ':' splits it: a password may hold
	 * both. */
	const char *at = strrchr(p, '@');
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (!colon)
			return false; /* "secret@host": a user or a password? */
		size_t ul = (size_t)(colon - p), pl = (size_t)(at - colon - 1);
		if (ul >= sizeof(out->user) || pl >= sizeof(out->password) || (ul && !pl))
			return false; /* a user needs a password */
		memcpy(out->user, p, ul);
		out->user[ul] = '\0';
		memcpy(out->password, colon + 1, pl);
		out->password[pl] = '\0';
		p = at + 1;
	}
	const char *slash = strchr(p, '/');
	size_t hp_len = slash ? (size_t)(slash - p) : strlen(p);
	char hp[300];
	if (hp_len == 0 || hp_len >= sizeof(hp))
		return false;
	memcpy(hp, p, hp_len);
	hp[hp_len] = '\0';
	out->port = 6379;
	char *colon = strrchr(hp, ':');
	if (colon && hp[0] != '[') {
		uint64_t port;
		if (!parse_u64(colon + 1, 65535, &port) || port == 0)
			return false;
		out->port = (unsigned)port;
		*colon = '\0';
	} else if (hp[0] == '[') {
		char *close = strchr(hp, ']');
		if (!close)
			return false;
		if (close[1] == ':') {
			uint64_t port;
			if (!parse_u64(close + 2, 65535, &port) || port == 0)
				return false;
			out->port = (unsigned)port;
		} else if (close[1]) {
			return false;
		}
		*close = '\0';
		memmove(hp, hp + 1, strlen(hp + 1) + 1);
	}
	if (!hp[0] || strlen(hp) >= sizeof(out->host))
		return false;
	memcpy(out->host, hp, strlen(hp) + 1);
	if (slash && slash[1]) {
		uint64_t db;
		if (!parse_u64(slash + 1, 15, &db))
			return false;
		out->db = (unsigned)db;
	}
	return true;
}

/* --- topics ------------------------------------------------------------ */

/* arn:partition:service:region:account:resource */
#define ARN_FIELDS 6
#define ARN_ACCOUNT 4

struct span {
	const char *p;
	size_t len;
};

/* Splits s[0..len) at ':' into exactly ARN_FIELDS fields. */
static bool arn_split(const char *s, size_t len, struct span f[ARN_FIELDS])
{
	size_t n = 0;
	const char *start = s, *end = s + len;
	for (const char *q = s;; q++) {
		if (q == end || *q == ':') {
			if (n == ARN_FIELDS)
				return false;
			f[n].p = start;
			f[n].len = (size_t)(q - start);
			n++;
			if (q == end)
				break;
			start = q + 1;
		}
	}
	return n == ARN_FIELDS;
}

/* The first place needle[0..nl) occurs in hay[0..hl), or -1.  Knuth-Morris-
 * Pratt: O(nl + hl) whatever the bytes, nl <= CONFIG_TOPIC_ARN_MAX. */
static long find(const char *needle, size_t nl, const char *hay, size_t hl)
{
	unsigned short back[CONFIG_TOPIC_ARN_MAX];
	if (nl == 0)
		return 0;
	if (nl > CONFIG_TOPIC_ARN_MAX || nl > hl)
		return -1;
	back[0] = 0;
	for (size_t i = 1, k = 0; i < nl; i++) {
		while (k && needle[i] != needle[k])
			k = back[k - 1];
		if (needle[i] == needle[k])
			k++;
		back[i] = (unsigned short)k;
	}
	for (size_t i = 0, k = 0; i < hl; i++) {
		while (k && hay[i] != needle[k])
			k = back[k - 1];
		if (hay[i] == needle[k] && ++k == nl)
			return (long)(i + 1 - nl);
	}
	return -1;
}

/* Whether t matches p, '*' in p matching any run of characters.  The
 * pieces between stars must occur in t in order: the text before the
 * first star anchors the start, the text after the last the end, and
 * each piece between is taken at its leftmost place after the previous
 * one (a later place never leaves more room for the rest).  Each piece
 * is searched once, from where the previous one ended: no backtracking,
 * so O(len(p) + len(t)). */
static bool glob_match(struct span p, struct span t)
{
	const char *first = memchr(p.p, '*', p.len);
	if (!first)
		return p.len == t.len && memcmp(p.p, t.p, p.len) == 0;
	const char *last = p.p + p.len - 1;
	while (*last != '*')
		last--;
	size_t head = (size_t)(first - p.p);
	size_t tail = p.len - (size_t)(last - p.p) - 1;
	if (head + tail > t.len || memcmp(p.p, t.p, head) != 0 ||
	    memcmp(last + 1, t.p + t.len - tail, tail) != 0)
		return false;
	size_t pos = head, end = t.len - tail;
	for (const char *q = first + 1; q < last;) {
		const char *star = memchr(q, '*', (size_t)(last - q) + 1);
		size_t n = (size_t)(star - q);
		long at = find(q, n, t.p + pos, end - pos);
		if (at < 0)
			return false;
		pos += (size_t)at + n;
		q = star + 1;
	}
	return true;
}

bool config_arn_match(const char *pattern, const char *arn)
{
	struct span pf[ARN_FIELDS], af[ARN_FIELDS];
	size_t al = strnlen(arn, CONFIG_TOPIC_ARN_MAX + 1);
	if (al > CONFIG_TOPIC_ARN_MAX || !arn_split(pattern, strlen(pattern), pf) ||
	    !arn_split(arn, al, af))
		return false;
	for (size_t i = 0; i < ARN_FIELDS; i++)
		if (!glob_match(pf[i], af[i]))
			return false;
	return true;
}

static bool span_is(struct span s, const char *lit)
{
	return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

static bool span_chars(struct span s, const char *extra)
{
	if (s.len == 0)
		return false;
	for (size_t i = 0; i < s.len; i++)
		if (!isalnum((unsigned char)s.p[i]) && !strchr(extra, s.p[i]))
			return false;
	return true;
}

/* Checks the shape of a --topic: an SNS topic ARN, '*' allowed in the
 * partition, region and name, the account spelled out.  NULL when fine,
 * else why not. */
static const char *topic_shape(const char *v)
{
	struct span f[ARN_FIELDS];
	size_t len = strlen(v);
	if (len > CONFIG_TOPIC_ARN_MAX || !arn_split(v, len, f))
		return "not an ARN of 6 ':'-separated fields "
		       "(arn:aws:sns:REGION:ACCOUNT:NAME)";
	if (!span_is(f[0], "arn") || !span_is(f[2], "sns"))
		return "not an SNS topic ARN (arn:PARTITION:sns:REGION:ACCOUNT:NAME)";
	if (memchr(f[ARN_ACCOUNT].p, '*', f[ARN_ACCOUNT].len))
		return "a wildcard account accepts topics anyone can create: "
		       "name your account, or use --any-topic";
	bool digits = f[ARN_ACCOUNT].len == 12;
	for (size_t i = 0; digits && i < 12; i++)
		digits = isdigit((unsigned char)f[ARN_ACCOUNT].p[i]);
	if (!digits)
		return "the account is not 12 digits";
	if (!span_chars(f[1], "-*") || !span_chars(f[3], "-*") || !span_chars(f[5], "-_.*"))
		return "a field is empty or has a character no topic ARN has";
	return NULL;
}

/* --- API token ------------------------------------------------------------ */

/* Substrings (any case) of the placeholders that examples and templates
 * carry; a token holding one is refused at start.  None can occur in a
 * hex token (openssl rand -hex 32). */
static const char *const token_placeholders[] = {
	"changeme", "change-me", "change_me", "replaceme", "replace-me", "replace_me",
	"placeholder", "example", "xxxx", "your-token", "your_token", "yourtoken",
	"secret-here", "token-here",
};

/* NULL when token is acceptable, else why not. */
static const char *token_problem(const char *token)
{
	size_t len = strlen(token);
	if (len < CONFIG_API_TOKEN_MIN)
		return "is too short (at least 16 characters: openssl rand -hex 32)";
	if (len > CONFIG_API_TOKEN_MAX)
		return "is too long (at most 1024 characters)";
	for (size_t i = 0; i < len; i++)
		if (token[i] <= ' ' || token[i] >= 0x7f)
			return "has a space, a control or a non-ASCII character";
	for (size_t i = 0; i < sizeof(token_placeholders) / sizeof(*token_placeholders); i++)
		if (strcasestr(token, token_placeholders[i]))
			return "looks like a placeholder from an example: "
			       "set a real one (openssl rand -hex 32)";
	return NULL;
}

/* Reads the token of --api-token-file: the whole file, one trailing
 * newline ("\n" or "\r\n") removed.  Returns a malloc'd string (the
 * caller frees it) or NULL with err set. */
static char *read_token_file(const char *path, char *err, size_t errsz)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fail(err, errsz, "mailtrail: invalid value for --api-token-file: cannot open '%s': %s",
		     path, strerror(errno));
		return NULL;
	}
	char *buf = malloc(CONFIG_API_TOKEN_MAX + 4);
	size_t n = buf ? fread(buf, 1, CONFIG_API_TOKEN_MAX + 3, f) : 0;
	bool bad = ferror(f);
	fclose(f);
	if (!buf || bad) {
		fail(err, errsz, "mailtrail: invalid value for --api-token-file: cannot read '%s'", path);
		free(buf);
		return NULL;
	}
	if (n && buf[n - 1] == '\n')
		n--;
	if (n && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	if (memchr(buf, '\0', n)) {
		fail(err, errsz, "mailtrail: --api-token-file '%s': the token has a NUL byte", path);
		free(buf);
		return NULL;
	}
	return buf;
}

static bool is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) != 1)
		return false;
	if (IN6_IS_ADDR_LOOPBACK(&a6))
		return true;
	return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

bool config_host_is_loopback(const char *host)
{
	return is_loopback(host);
}

void config_redis_url_redacted(const char *url, char *out, size_t outsz)
{
	bool tls;
	const char *p = redis_url_rest(url, &tls);
	if (!p && strncmp(url, "unix://", 7) == 0) {
		snprintf(out, outsz, "%s", url); /* a path: no secret */
		return;
	}
	const char *at = strrchr(url, '@');
	if (p) { /* redis:// or rediss://: the user and password go */
		at = strrchr(p, '@');
		if (!at)
			snprintf(out, outsz, "%s", url);
		else
			snprintf(out, outsz, "%.*s***%s", (int)(p - url), url, at);
		return;
	}
	/* Anything else (a mistyped scheme such as "rediss:/:pw@h", a bare
	 * password in MAILTRAIL_REDIS) could hold a password anywhere: only
	 * a leading scheme ("name:" and its slashes) and what follows the
	 * last '@' (a host) are shown. */
	size_t n = strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");
	if (url[n] == ':')
		n += 1 + strspn(url + n + 1, "/");
	else
		n = 0;
	snprintf(out, outsz, "%.*s***%s", (int)n, url, at ? at : "");
}

static void print_help(FILE *out)
{
	fprintf(out,
		"Usage: mailtrail [OPTION]...\n"
		"Receives Amazon SNS deliveries of Amazon SES events, verifies them and\n"
		"stores one event per recipient in Redis.\n\n"
		"Every option can also be set as MAILTRAIL_<NAME> (upper case, '-' as\n"
		"'_'); the flag wins.\n\n");
	for (int i = 0; i < OPT__COUNT; i++) {
		char flag[64], env[64];
		snprintf(flag, sizeof(flag), "--%s%s%s", opts[i].name,
			 opts[i].arg ? " " : "", opts[i].arg ? opts[i].arg : "");
		env_name(opts[i].name, env, sizeof(env));
		fprintf(out, "  %-32s %s\n", flag, opts[i].help);
		if (i == OPT_HELP || i == OPT_VERSION)
			continue;
		fprintf(out, "  %-32s   env %s, default: %s\n", "", env,
			opts[i].def ? opts[i].def : opts[i].arg ? "none" : "off");
	}
}

/* A value as an error line may show it: never a secret. */
static const char *shown_value(enum opt_id id, const char *v, char *buf, size_t bufsz)
{
	if (id == OPT_API_TOKEN)
		return "(not shown)";
	if (id == OPT_REDIS) {
		config_redis_url_redacted(v, buf, bufsz);
		return buf;
	}
	return v;
}

/* Applies one option value; the option name is in the error line. */
static bool apply(struct config *c, enum opt_id id, const char *v, char *err,
		  size_t errsz)
{
	uint64_t n;
	const char *name = opts[id].name;
	char shown[512];

	switch (id) {
	case OPT_LISTEN:
		if (!parse_listen(v, &c->listen))
			goto bad;
		return true;
	case OPT_API_LISTEN:
		if (strcmp(v, "off") == 0) {
			c->api_enabled = false;
			return true;
		}
		if (!parse_listen(v, &c->api_listen))
			goto bad;
		c->api_enabled = true;
		return true;
	case OPT_API_TOKEN:
		if (!*v)
			goto bad;
		c->api_token = v;
		return true;
	case OPT_API_TOKEN_FILE:
		if (!*v)
			goto bad;
		c->api_token_file = v;
		return true;
	case OPT_API_NO_TOKEN:
		if (!parse_bool(v, &c->api_no_token))
			goto bad;
		return true;
	case OPT_TLS_CERT:
		c->tls_cert = v;
		return true;
	case OPT_TLS_KEY:
		c->tls_key = v;
		return true;
	case OPT_REDIS:
		if (!config_parse_redis_url(v, &c->redis))
			goto bad;
		c->redis_url = v;
		return true;
	case OPT_REDIS_PREFIX:
		/* A brace would change the hash tag of every key (Redis
		 * Cluster hashes the first {...} of a key name). */
		if (strlen(v) > 128 || strpbrk(v, "{}")) {
			fail(err, errsz, "mailtrail: invalid value for --redis-prefix: '%s' "
			     "(at most 128 characters, no '{' or '}')", v);
			return false;
		}
		c->redis_prefix = v;
		return true;
	case OPT_REDIS_CLUSTER:
		if (!parse_bool(v, &c->redis.cluster))
			goto bad;
		return true;
	case OPT_REDIS_CA_FILE:
	case OPT_REDIS_CERT:
	case OPT_REDIS_KEY:
		if (!*v)
			goto bad;
		*(id == OPT_REDIS_CA_FILE ? &c->redis.tls_ca_file
		  : id == OPT_REDIS_CERT  ? &c->redis.tls_cert
					  : &c->redis.tls_key) = v;
		return true;
	case OPT_CERT_HOST_PATTERN:
		if (c->cert_host_re_set) {
			regfree(&c->cert_host_re);
			c->cert_host_re_set = false;
		}
		if (!*v || regcomp(&c->cert_host_re, v, REG_EXTENDED | REG_NOSUB) != 0)
			goto bad;
		c->cert_host_re_set = true;
		c->cert_host_pattern = v;
		return true;
	case OPT_CA_FILE:
		c->ca_file = v;
		return true;
	case OPT_CERT_CACHE_DIR:
		c->cert_cache_dir = v;
		return true;
	case OPT_SPOOL_DIR:
		if (!*v)
			goto bad;
		c->spool_dir = v;
		return true;
	case OPT_SPOOL_MAX_BYTES:
		if (!parse_u64(v, CONFIG_SPOOL_MAX_BYTES_MAX, &n) ||
		    n < CONFIG_SPOOL_MAX_BYTES_MIN)
			goto bad;
		c->spool_max_bytes = n;
		return true;
	case OPT_TOPIC: {
		const char *why = topic_shape(v);
		if (why) {
			fail(err, errsz, "mailtrail: invalid value for --topic: '%s': %s", v, why);
			return false;
		}
		if (c->ntopics == CONFIG_TOPICS_MAX)
			goto bad;
		c->topics[c->ntopics++] = v;
		return true;
	}
	case OPT_ANY_TOPIC:
		if (!parse_bool(v, &c->any_topic))
			goto bad;
		return true;
	case OPT_MAX_AGE:
		if (!parse_u64(v, INT32_MAX, &n))
			goto bad;
		c->max_age_s = (int64_t)n;
		return true;
	case OPT_AUTO_CONFIRM:
		if (!parse_bool(v, &c->auto_confirm))
			goto bad;
		return true;
	case OPT_RETENTION_DAYS:
		if (!parse_u64(v, 36500, &n) || n == 0)
			goto bad;
		c->retention_days = (unsigned)n;
		return true;
	case OPT_HEALTH_MIN_VOLUME:
		if (!parse_u64(v, CONFIG_HEALTH_MIN_VOLUME_MAX, &n))
			goto bad;
		c->health_min_volume = (unsigned)n;
		return true;
	case OPT_KEEP_HEADERS:
		if (!parse_bool(v, &c->keep_headers))
			goto bad;
		return true;
	case OPT_MESSAGE_INDEX:
		if (!parse_bool(v, &c->message_index))
			goto bad;
		return true;
	case OPT_SUPPRESS_STATUSES:
		if (!policy_parse_statuses(v, &c->policy))
			goto bad;
		return true;
	case OPT_SUPPRESS_SOFT_BOUNCES:
		if (!parse_u64(v, POLICY_SOFT_BOUNCES_MAX, &n))
			goto bad;
		c->policy.soft_bounces = (unsigned)n;
		return true;
	case OPT_SUPPRESS_SOFT_DAYS:
		if (!parse_u64(v, POLICY_SOFT_DAYS_MAX, &n) || n == 0)
			goto bad;
		c->policy.soft_days = (unsigned)n;
		return true;
	case OPT_MAX_BODY:
		if (!parse_u64(v, 64u << 20, &n) || n < 1024)
			goto bad;
		c->max_body = (size_t)n;
		return true;
	case OPT_MAX_CONNECTIONS:
		if (!parse_u64(v, CONFIG_CONNECTIONS_MAX, &n) || n == 0)
			goto bad;
		c->max_connections = (unsigned)n;
		return true;
	case OPT_MAX_CONNECTIONS_PER_IP:
		if (!parse_u64(v, CONFIG_CONNECTIONS_MAX, &n))
			goto bad;
		c->max_connections_per_ip = (unsigned)n;
		return true;
	case OPT_LOG_FORMAT:
		if (strcmp(v, "json") == 0)
			c->log_format = LOG_FORMAT_JSON;
		else if (strcmp(v, "text") == 0)
			c->log_format = LOG_FORMAT_TEXT;
		else
			goto bad;
		return true;
	case OPT_LOG_LEVEL: {
		static const char *const lv[] = {"debug", "info", "warn", "error"};
		for (int i = 0; i < 4; i++) {
			if (strcmp(v, lv[i]) == 0) {
				c->log_level = (enum log_level)i;
				return true;
			}
		}
		goto bad;
	}
	case OPT_HELP:
	case OPT_VERSION:
	case OPT__COUNT:
		break;
	}
	return true;
bad:
	fail(err, errsz, "mailtrail: invalid value for --%s: '%s'", name,
	     shown_value(id, v, shown, sizeof(shown)));
	return false;
}

static enum opt_id find_opt(const char *name, size_t len)
{
	for (int i = 0; i < OPT__COUNT; i++)
		if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0)
			return (enum opt_id)i;
	return OPT__COUNT;
}

bool config_option_known(const char *name, size_t len, bool *takes_value)
{
	enum opt_id id = find_opt(name, len);
	if (id == OPT__COUNT)
		return false;
	*takes_value = opts[id].arg != NULL;
	return true;
}

enum config_result config_parse(struct config *c, int argc, char **argv,
				config_getenv_fn env, FILE *out, char *err,
				size_t errsz)
{
	const char *flag_val[OPT__COUNT] = {0};
	bool flag_seen[OPT__COUNT] = {0};
	const char *topic_vals[CONFIG_TOPICS_MAX];
	size_t ntopic_flags = 0;

	memset(c, 0, sizeof(*c));
	err[0] = '\0';

	/* 1. Collect the flags (so that the flag wins over the variable). */
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "--", 2) != 0) {
			fail(err, errsz, "mailtrail: unexpected argument '%s' (see --help)", a);
			return CONFIG_ERROR;
		}
		const char *eq = strchr(a + 2, '=');
		size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		enum opt_id id = find_opt(a + 2, nl);
		if (id == OPT__COUNT) {
			fail(err, errsz, "mailtrail: unknown option '%.*s' (see --help)",
			     (int)(nl + 2), a);
			return CONFIG_ERROR;
		}
		if (id == OPT_HELP) {
			print_help(out);
			return CONFIG_EXIT;
		}
		if (id == OPT_VERSION) {
			fprintf(out, "mailtrail %s\n", MAILTRAIL_VERSION);
			return CONFIG_EXIT;
		}
		const char *v;
		if (!opts[id].arg) {
			v = eq ? eq + 1 : "yes";
		} else if (eq) {
			v = eq + 1;
		} else if (i + 1 < argc) {
			v = argv[++i];
		} else {
			fail(err, errsz, "mailtrail: option --%s needs a value", opts[id].name);
			return CONFIG_ERROR;
		}
		if (id == OPT_TOPIC) {
			if (ntopic_flags == CONFIG_TOPICS_MAX) {
				fail(err, errsz, "mailtrail: too many --topic (at most %d)",
				     CONFIG_TOPICS_MAX);
				return CONFIG_ERROR;
			}
			topic_vals[ntopic_flags++] = v;
		}
		flag_seen[id] = true;
		flag_val[id] = v;
	}

	/* 2. Defaults, then variables, then flags, each validated.  --topic
	 * and --any-topic are one setting: given as flags, the variables of
	 * both are ignored. */
	bool topic_flags = flag_seen[OPT_TOPIC] || flag_seen[OPT_ANY_TOPIC];
	for (int i = 0; i < OPT__COUNT; i++) {
		if (i == OPT_HELP || i == OPT_VERSION)
			continue;
		enum opt_id id = (enum opt_id)i;
		char name[64];
		env_name(opts[i].name, name, sizeof(name));
		const char *ev = env ? env(name) : NULL;

		if (id == OPT_TOPIC) {
			if (flag_seen[id]) {
				for (size_t t = 0; t < ntopic_flags; t++)
					if (!apply(c, id, topic_vals[t], err, errsz))
						return CONFIG_ERROR;
			} else if (!topic_flags && ev && *ev) {
				c->topics_env = strdup(ev);
				if (!c->topics_env) {
					fail(err, errsz, "mailtrail: out of memory");
					return CONFIG_ERROR;
				}
				char *save = NULL;
				for (char *t = strtok_r(c->topics_env, ",", &save); t;
				     t = strtok_r(NULL, ",", &save)) {
					while (*t == ' ')
						t++;
					if (!apply(c, id, t, err, errsz))
						return CONFIG_ERROR;
				}
			}
			continue;
		}
		if (opts[i].def && !apply(c, id, opts[i].def, err, errsz))
			return CONFIG_ERROR;
		if (id == OPT_ANY_TOPIC && topic_flags)
			ev = NULL;
		const char *v = flag_seen[id] ? flag_val[id] : ev;
		if (v && !apply(c, id, v, err, errsz)) {
			if (!flag_seen[id]) { /* say where the bad value came from */
				char shown[512];
				fail(err, errsz, "mailtrail: invalid value for --%s (from %s): '%s'",
				     opts[i].name, name, shown_value(id, v, shown, sizeof(shown)));
			}
			return CONFIG_ERROR;
		}
	}

	if (!c->tls_cert != !c->tls_key) {
		fail(err, errsz, "mailtrail: --%s and --%s go together",
		     c->tls_cert ? "tls-key" : "tls-cert",
		     c->tls_cert ? "tls-cert" : "tls-key");
		return CONFIG_ERROR;
	}
	if (c->redis.cluster && (c->redis.is_unix || c->redis.db)) {
		fail(err, errsz, "mailtrail: --redis-cluster needs a redis://host:port seed "
		     "(no unix socket, database 0 only)");
		return CONFIG_ERROR;
	}
	if (c->api_token && c->api_token_file) {
		fail(err, errsz, "mailtrail: --api-token and --api-token-file exclude each other");
		return CONFIG_ERROR;
	}
	if (c->api_token_file) {
		c->api_token_owned = read_token_file(c->api_token_file, err, errsz);
		if (!c->api_token_owned)
			return CONFIG_ERROR;
		c->api_token = c->api_token_owned;
	}
	const char *why = c->api_token ? token_problem(c->api_token) : NULL;
	if (why) {
		fail(err, errsz, "mailtrail: the token of --%s %s",
		     c->api_token_file ? "api-token-file" : "api-token", why);
		return CONFIG_ERROR;
	}
	if (c->api_enabled && !c->api_token && !c->api_no_token &&
	    !is_loopback(c->api_listen.host)) {
		fail(err, errsz, "mailtrail: --api-listen %s is not a loopback address: set "
		     "--api-token-file or --api-token (or --api-no-token to serve every "
		     "timeline to whoever reaches it)", c->api_listen.host);
		return CONFIG_ERROR;
	}
	if (c->any_topic && c->ntopics) {
		fail(err, errsz, "mailtrail: --topic and --any-topic exclude each other");
		return CONFIG_ERROR;
	}
	if (!c->any_topic && !c->ntopics) {
		fail(err, errsz, "mailtrail: --topic is required: your SES topic's ARN, e.g. "
		     "--topic arn:aws:sns:eu-west-1:123456789012:ses-events "
		     "(--any-topic accepts every topic SNS signs: see README)");
		return CONFIG_ERROR;
	}
	/* Managed Redis: the TLS files go with a rediss:// URL only. */
	if (!c->redis.tls && (c->redis.tls_ca_file || c->redis.tls_cert || c->redis.tls_key)) {
		fail(err, errsz, "mailtrail: --%s needs a rediss:// --redis URL",
		     c->redis.tls_ca_file ? "redis-ca-file"
		     : c->redis.tls_cert  ? "redis-cert" : "redis-key");
		return CONFIG_ERROR;
	}
	if (!c->redis.tls_cert != !c->redis.tls_key) {
		fail(err, errsz, "mailtrail: --%s and --%s go together",
		     c->redis.tls_cert ? "redis-key" : "redis-cert",
		     c->redis.tls_cert ? "redis-cert" : "redis-key");
		return CONFIG_ERROR;
	}
	return CONFIG_OK;
}

void config_free(struct config *c)
{
	if (!c)
		return;
	if (c->cert_host_re_set)
		regfree(&c->cert_host_re);
	free(c->topics_env);
	if (c->api_token_owned) {
		explicit_bzero(c->api_token_owned, strlen(c->api_token_owned));
		free(c->api_token_owned);
	}
	memset(c, 0, sizeof(*c));
}

bool config_topic_allowed(const struct config *c, const char *topic)
{
	if (c->any_topic)
		return true;
	for (size_t i = 0; i < c->ntopics; i++)
		if (config_arn_match(c->topics[i], topic))
			return true;
	return false;
}
