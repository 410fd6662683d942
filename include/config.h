/* config.h - every option of SPEC.md, from flags and MAILTRAIL_* variables.
 *
 * Pure: the environment comes in through a lookup function, so tests can
 * feed any.  A flag wins over its variable.
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "policy.h"

#define CONFIG_TOPICS_MAX 64
/* Longest --topic, and longest TopicArn a message may have to be accepted
 * (real ones are under 320: a 256-character name, region, account). */
#define CONFIG_TOPIC_ARN_MAX 512
/* --api-token / --api-token-file: 16 to 1024 visible ASCII characters. */
#define CONFIG_API_TOKEN_MIN 16
#define CONFIG_API_TOKEN_MAX 1024
/* --max-connections and --max-connections-per-ip at most. */
#define CONFIG_CONNECTIONS_MAX 100000
/* --spool-max-bytes bounds: 64 KiB .. 1 PiB. */
#define CONFIG_SPOOL_MAX_BYTES_MIN (64ull << 10)
#define CONFIG_SPOOL_MAX_BYTES_MAX (1ull << 50)

/* --health-min-volume at most (0 rates every window, however small). */
#define CONFIG_HEALTH_MIN_VOLUME_MAX 1000000000u

enum log_format { LOG_FORMAT_JSON, LOG_FORMAT_TEXT };
enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

struct config_listen {
	char host[64]; /* numeric IPv4 or IPv6 address, no brackets */
	unsigned port; /* 0: pick a free one */
};

struct config_redis {
	bool is_unix;
	bool tls; /* rediss:// */
	char host[256];
	unsigned port;
	char path[108];
	char user[128];     /* empty: none (AUTH with the password only) */
	char password[256]; /* empty: none */
	unsigned db;
	bool cluster; /* --redis-cluster: host:port is a seed node */
	/* rediss:// only.  NULL: the system CA store, no client certificate. */
	const char *tls_ca_file;            /* --redis-ca-file */
	const char *tls_cert, *tls_key;     /* --redis-cert, --redis-key */
};

struct config {
	struct config_listen listen;
	const char *tls_cert, *tls_key;
	bool api_enabled;
	struct config_listen api_listen;
	const char *api_token; /* NULL: the API is open */
	char *api_token_owned; /* read from --api-token-file (api_token points here) */
	const char *api_token_file;
	bool api_no_token; /* --api-no-token: beyond loopback without a token */
	const char *redis_url;
	struct config_redis redis;
	const char *redis_prefix;
	const char *cert_host_pattern;
	regex_t cert_host_re; /* compiled cert_host_pattern */
	bool cert_host_re_set;
	const char *ca_file;
	const char *cert_cache_dir;
	const char *spool_dir; /* NULL: no spool */
	uint64_t spool_max_bytes;
	const char *topics[CONFIG_TOPICS_MAX];
	size_t ntopics;
	char *topics_env; /* owned copy of MAILTRAIL_TOPIC, split in place */
	bool any_topic;   /* --any-topic: no allow-list */
	int64_t max_age_s;
	bool auto_confirm;
	unsigned retention_days;
	unsigned health_min_volume; /* sends below which a window is low_volume */
	bool keep_headers;
	bool message_index; /* --message-index: GET /v1/messages/{id} */
	/* --suppress-statuses, --suppress-soft-bounces, --suppress-soft-days */
	struct policy policy;
	size_t max_body;
	unsigned max_connections;        /* per listener */
	unsigned max_connections_per_ip; /* 0: no per-address limit */
	enum log_format log_format;
	enum log_level log_level;
};

enum config_result {
	CONFIG_OK,    /* run */
	CONFIG_EXIT,  /* --help or --version was printed: exit 0 */
	CONFIG_ERROR, /* err holds one line naming the option: exit 2 */
};

typedef const char *(*config_getenv_fn)(const char *name);

/* Fills c from argv (argv[0] is the program) and env.  Strings point into
 * argv or the environment, which must outlive c.  --help and --version
 * text is written to out.  Release with config_free(). */
enum config_result config_parse(struct config *c, int argc, char **argv,
				config_getenv_fn env, FILE *out, char *err,
				size_t errsz);

/* Whether --NAME (name[0..len), without "--") is an option of
 * config_parse, and if so whether it takes a value (*takes_value): lets a
 * command that adds its own options and operands (mailtrail import) pass
 * the rest through. */
bool config_option_known(const char *name, size_t len, bool *takes_value);

/* Frees what config_parse allocated; accepts NULL. */
void config_free(struct config *c);

/* True when topic is allowed: --any-topic, or it matches a --topic.
 * Linear in the lengths of topic and the patterns: it runs on untrusted
 * input, before the signature is checked. */
bool config_topic_allowed(const struct config *c, const char *topic);

/* Whether arn matches pattern: both split at ':' into the 6 fields of an
 * ARN, each field of arn matching the pattern's field, where '*' matches
 * any run of characters (none included) within the field.  O(length of
 * arn + length of pattern), whatever they hold. */
bool config_arn_match(const char *pattern, const char *arn);

/* Parses a redis URL as --redis takes it
 * (redis[s]://[[user]:password@]host[:port][/db] or unix:///path); false on
 * anything else.  The user and password are taken as written (no
 * percent-decoding). */
bool config_parse_redis_url(const char *url, struct config_redis *out);

/* Whether a numeric address (as struct config_listen holds it) is a
 * loopback one: 127.0.0.0/8, ::1, ::ffff:127.x. */
bool config_host_is_loopback(const char *host);

/* url with its user and password replaced by "***", for error lines and
 * logs (a password never appears in either). */
void config_redis_url_redacted(const char *url, char *out, size_t outsz);

#endif
