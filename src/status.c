/* status.c - the operator's status view (status.h): notes in memory,
 * flushed to Redis by one thread, read back and explained. */
#include "status.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mt_time.h"
#include "rcluster.h"

#define HOUR_MS (3600LL * 1000)
/* Hours the day's answer reads: this one and the 24 before. */
#define DAY_HOURS 25
/* A table slot per topic a flush may carry, and the two pseudo topics. */
#define TABLE_MAX (STATUS_TOPICS_MAX + 2)
#define STATUS_POOL_MAX 2
#define STATUS_CONNECT_TIMEOUT_MS 1000
#define STATUS_COMMAND_TIMEOUT_MS 2000

static const char *const reason_names[STATUS_R__COUNT] = {
#define STATUS_REASON_NAME(name, api) [STATUS_R_##name] = (api),
	STATUS_REASON_MAP(STATUS_REASON_NAME)
#undef STATUS_REASON_NAME
};

static const char *const sub_names[] = {
	[STATUS_SUB_NONE] = "", [STATUS_SUB_CONFIRMED] = "confirmed",
	[STATUS_SUB_PENDING] = "pending", [STATUS_SUB_REFUSED] = "refused",
	[STATUS_SUB_FAILED] = "failed", [STATUS_SUB_UNSUBSCRIBED] = "unsubscribed",
};

const char *status_reason_name(enum status_reason r)
{
	return r >= 0 && r < STATUS_R__COUNT ? reason_names[r] : "?";
}

enum status_reason status_reason_of(enum mt_err err, bool raw_header, bool typed)
{
	if (err == MT_E_OK)
		return STATUS_R_NONE;
	/* SNS with RawMessageDelivery posts the bare message (an SES JSON,
	 * no Type, no Signature) and says so in a header. */
	if (raw_header || (err == MT_E_UNSIGNED && !typed))
		return STATUS_R_RAW_DELIVERY;
	switch (err) {
	case MT_E_TOPIC:
		return STATUS_R_TOPIC_NOT_ACCEPTED;
	case MT_E_UNSIGNED:
	case MT_E_SIG_VERSION:
	case MT_E_SIG_ENCODING:
	case MT_E_BAD_SIGNATURE:
	case MT_E_CERT_INVALID:
		return STATUS_R_BAD_SIGNATURE;
	case MT_E_CERT_URL:
	case MT_E_SUBSCRIBE_URL:
		return STATUS_R_URL_NOT_ALLOWED;
	case MT_E_CERT_FETCH:
		return STATUS_R_CERT_FETCH_FAILED;
	case MT_E_CONFIRM:
		return STATUS_R_CONFIRM_FAILED;
	case MT_E_TOO_OLD:
		return STATUS_R_TOO_OLD;
	case MT_E_REDIS:
	case MT_E_REDIS_REFUSED:
	case MT_E_SPOOL_FULL:
	case MT_E_SPOOL_IO:
		return STATUS_R_STORAGE_UNAVAILABLE;
	case MT_E_CERT_RATE:
	case MT_E_FETCH_BUSY:
	case MT_E_NOMEM:
	case MT_E_INTERNAL:
		return STATUS_R_OVERLOADED;
	default: /* the 400s and 413 */
		return STATUS_R_MALFORMED;
	}
}

/* What one process noted of one topic since its last flush. */
struct note {
	char topic[STATUS_TOPIC_LEN_MAX + 1];
	bool trusted; /* a verified delivery named it */
	int64_t last_seen, last_accepted;
	unsigned long accepted;
	unsigned long refused[STATUS_R__COUNT];
	enum status_reason last_reason;
	int64_t last_refused;
	enum status_sub sub;
	bool sub_strong; /* from a verified delivery: a weaker note never replaces it */
	int64_t sub_time;
	char sub_detail[STATUS_DETAIL_MAX + 1];
	char cert_host[STATUS_HOST_MAX + 1];
	int64_t cert_host_time;
};

struct status {
	const struct config *cfg;
	struct rcluster *rc;
	char base[160]; /* "{prefix}{status}:" */
	char topics_key[176], unverified_key[176];
	pthread_mutex_t lock;
	struct note *table; /* TABLE_MAX */
	size_t n;
	pthread_mutex_t flush_lock; /* one flush at a time */
	pthread_cond_t wake;
	bool stopping;
	pthread_t thread;
	bool has_thread;
	atomic_bool redis_ok; /* the last flush reached Redis */
};

/* ---- what is taken from a delivery -------------------------------------- */

static bool arn_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == ':' || c == '.' || c == '_' || c == '-';
}

/* The name a TopicArn is recorded under: itself when it looks like an ARN,
 * else "(none)". */
static const char *topic_name(const char *t)
{
	if (!t || strncmp(t, "arn:", 4) != 0)
		return STATUS_TOPIC_NONE;
	size_t n = strnlen(t, STATUS_TOPIC_LEN_MAX + 1);
	if (n > STATUS_TOPIC_LEN_MAX)
		return STATUS_TOPIC_NONE;
	for (size_t i = 0; i < n; i++)
		if (!arn_char(t[i]))
			return STATUS_TOPIC_NONE;
	return t;
}

/* src as printable ASCII (others become '?'), cut to dst's size. */
static void copy_printable(char *dst, size_t dstsz, const char *src)
{
	size_t i = 0;
	for (; src && src[i] && i + 1 < dstsz; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	dst[i] = '\0';
}

/* A host[:port] as url_check let it through; "" when it is not one. */
static void copy_host(char *dst, const char *src)
{
	dst[0] = '\0';
	if (!src)
		return;
	size_t n = strnlen(src, STATUS_HOST_MAX + 1);
	if (n == 0 || n > STATUS_HOST_MAX)
		return;
	for (size_t i = 0; i < n; i++) {
		char c = src[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
			return;
	}
	memcpy(dst, src, n + 1);
}

/* The slot of topic in the table: a new one while there is room (for a
 * note that is not trusted, while fewer than STATUS_UNVERIFIED_TOPICS_MAX
 * untrusted topics hold one), else "(other)" (a pseudo topic always has
 * one: two slots are theirs). */
static struct note *slot(struct status *st, const char *topic, bool trusted)
{
	size_t unverified = 0;
	for (size_t i = 0; i < st->n; i++) {
		if (strcmp(st->table[i].topic, topic) == 0)
			return &st->table[i];
		unverified += !st->table[i].trusted && st->table[i].topic[0] != '(';
	}
	bool pseudo = topic[0] == '(';
	/* Topics only claimed by deliveries that were not verified (anyone
	 * can send them) take at most STATUS_UNVERIFIED_TOPICS_MAX places, as
	 * in Redis: a flood of them must not push a verified topic's note
	 * into "(other)" before it reaches Redis. */
	if (!pseudo && (st->n >= STATUS_TOPICS_MAX ||
			(!trusted && unverified >= STATUS_UNVERIFIED_TOPICS_MAX)))
		return slot(st, STATUS_TOPIC_OTHER, trusted);
	if (st->n >= TABLE_MAX)
		return NULL; /* cannot happen: see TABLE_MAX */
	struct note *e = &st->table[st->n++];
	memset(e, 0, sizeof(*e));
	e->last_reason = STATUS_R_NONE;
	snprintf(e->topic, sizeof(e->topic), "%s", topic);
	return e;
}

/* Folds note b into a (same topic): counts add, times take the later. */
static void merge(struct note *a, const struct note *b)
{
	a->trusted |= b->trusted;
	if (b->last_seen > a->last_seen)
		a->last_seen = b->last_seen;
	if (b->last_accepted > a->last_accepted)
		a->last_accepted = b->last_accepted;
	a->accepted += b->accepted;
	for (int r = 0; r < STATUS_R__COUNT; r++)
		a->refused[r] += b->refused[r];
	if (b->last_reason != STATUS_R_NONE && b->last_refused >= a->last_refused) {
		a->last_reason = b->last_reason;
		a->last_refused = b->last_refused;
	}
	if (b->sub != STATUS_SUB_NONE && (b->sub_strong || !a->sub_strong) &&
	    b->sub_time >= a->sub_time) {
		a->sub = b->sub;
		a->sub_strong = b->sub_strong;
		a->sub_time = b->sub_time;
		memcpy(a->sub_detail, b->sub_detail, sizeof(a->sub_detail));
	}
	if (b->cert_host[0] && b->cert_host_time >= a->cert_host_time) {
		memcpy(a->cert_host, b->cert_host, sizeof(a->cert_host));
		a->cert_host_time = b->cert_host_time;
	}
}

static bool is_type(const struct webhook_result *res, const char *type)
{
	return res->type && strcmp(res->type, type) == 0;
}

void status_record(struct status *st, const struct webhook_result *res,
		   bool raw_header, const char *header_topic, const char *cert_host)
{
	if (!st)
		return;
	struct note n;
	memset(&n, 0, sizeof(n));
	n.last_reason = STATUS_R_NONE;
	int64_t now = mt_time_now_ms();
	enum status_reason reason = status_reason_of(res->err, raw_header, res->type != NULL);
	const char *topic = res->topic[0] ? res->topic : header_topic;
	n.last_seen = now;
	/* Verified: the signature checked out (or, refused later, at least
	 * the topic is an accepted one whose confirmation then failed). */
	bool verified = res->err == MT_E_OK || res->err == MT_E_CONFIRM ||
			reason == STATUS_R_STORAGE_UNAVAILABLE;
	n.trusted = verified;
	if (reason != STATUS_R_NONE) {
		n.refused[reason] = 1;
		n.last_reason = reason;
		n.last_refused = now;
	} else if (is_type(res, "Notification")) {
		n.accepted = 1;
		n.last_accepted = now;
	}
	if (reason == STATUS_R_CERT_FETCH_FAILED && cert_host) {
		copy_host(n.cert_host, cert_host);
		n.cert_host_time = now;
	}
	if (is_type(res, "SubscriptionConfirmation")) {
		n.sub_time = now;
		if (res->err == MT_E_OK && strcmp(res->status, "confirmed") == 0) {
			n.sub = STATUS_SUB_CONFIRMED;
			n.sub_strong = true;
		} else if (res->err == MT_E_OK) { /* noted: --auto-confirm no */
			n.sub = STATUS_SUB_PENDING;
			n.sub_strong = true;
			copy_printable(n.sub_detail, sizeof(n.sub_detail), res->detail);
		} else if (res->err == MT_E_CONFIRM) {
			n.sub = STATUS_SUB_FAILED;
			n.sub_strong = true;
			copy_printable(n.sub_detail, sizeof(n.sub_detail), res->detail);
		} else if (mt_err_http_status(res->err) < 500) {
			/* Refused for good: SNS does not send it again. */
			n.sub = STATUS_SUB_REFUSED;
			copy_printable(n.sub_detail, sizeof(n.sub_detail), mt_err_str(res->err));
		} else {
			n.sub = STATUS_SUB_FAILED;
			snprintf(n.sub_detail, sizeof(n.sub_detail), "%s", mt_err_str(res->err));
			if (n.cert_host[0])
				snprintf(n.sub_detail, sizeof(n.sub_detail),
					 "signing certificate cannot be fetched from %s", n.cert_host);
		}
	} else if (is_type(res, "UnsubscribeConfirmation") && res->err == MT_E_OK) {
		n.sub = STATUS_SUB_UNSUBSCRIBED;
		n.sub_strong = true;
		n.sub_time = now;
	}
	pthread_mutex_lock(&st->lock);
	struct note *e = slot(st, topic_name(topic), n.trusted);
	if (e) {
		memcpy(n.topic, e->topic, sizeof(n.topic));
		merge(e, &n);
	}
	pthread_mutex_unlock(&st->lock);
}

/* ---- to Redis ------------------------------------------------------------ */

/* KEYS: topics, unverified.  ARGV: base, now, hour, cap, unverified cap,
 * unverified idle ms, hour TTL, then NOTE_ARGS per topic (see add_note).
 * Keeps the caps of status.h, max()es the times, adds the counts; a
 * weak subscription note (unverified) never replaces a strong one. */
static const char flush_script[] =
	"local topics, unver = KEYS[1], KEYS[2]\n"
	"local base = ARGV[1]\n"
	"local now = tonumber(ARGV[2])\n"
	"local hkey = base .. 'h:' .. ARGV[3]\n"
	"local cap, ucap = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
	"local idle, ttl = tonumber(ARGV[6]), tonumber(ARGV[7])\n"
	"local function named()\n"
	"  local n = redis.call('ZCARD', topics)\n"
	"  if redis.call('ZSCORE', topics, '(other)') then n = n - 1 end\n"
	"  if redis.call('ZSCORE', topics, '(none)') then n = n - 1 end\n"
	"  return n\n"
	"end\n"
	"local function forget(t)\n"
	"  redis.call('ZREM', topics, t)\n"
	"  redis.call('ZREM', unver, t)\n"
	"  redis.call('DEL', base .. 't:' .. t)\n"
	"end\n"
	"local function later(h, f, v)\n"
	"  if v <= 0 then return false end\n"
	"  local cur = tonumber(redis.call('HGET', h, f) or '0')\n"
	"  if v >= cur then redis.call('HSET', h, f, v) return true end\n"
	"  return false\n"
	"end\n"
	"local G = 14\n"
	"local hours = false\n"
	"for i = 8, #ARGV - G + 1, G do\n"
	"  local t = ARGV[i]\n"
	"  local trusted = ARGV[i + 1] == '1'\n"
	"  local seen = tonumber(ARGV[i + 2])\n"
	"  if string.sub(t, 1, 1) ~= '(' and not redis.call('ZSCORE', topics, t) then\n"
	"    for _, o in ipairs(redis.call('ZRANGEBYSCORE', unver, '-inf', now - idle)) do forget(o) end\n"
	"    if trusted and named() >= cap then\n"
	"      local u = redis.call('ZRANGE', unver, 0, 0)\n"
	"      if u[1] then forget(u[1]) end\n"
	"    end\n"
	"    if named() >= cap or (not trusted and redis.call('ZCARD', unver) >= ucap) then\n"
	"      t = '(other)'\n"
	"    end\n"
	"  end\n"
	"  local h = base .. 't:' .. t\n"
	"  local old = tonumber(redis.call('ZSCORE', topics, t) or '0')\n"
	"  if seen > old then redis.call('ZADD', topics, seen, t) end\n"
	"  redis.call('HSETNX', h, 'first_seen', seen)\n"
	"  later(h, 'last_seen', seen)\n"
	"  if trusted then\n"
	"    redis.call('HSET', h, 'verified', '1')\n"
	"    redis.call('ZREM', unver, t)\n"
	"  elseif string.sub(t, 1, 1) ~= '(' and redis.call('HGET', h, 'verified') ~= '1' then\n"
	"    redis.call('ZADD', unver, seen, t)\n"
	"  end\n"
	"  later(h, 'last_accepted', tonumber(ARGV[i + 3]))\n"
	"  local n = tonumber(ARGV[i + 4])\n"
	"  if n > 0 then redis.call('HINCRBY', hkey, t .. '\\taccepted', n) hours = true end\n"
	"  for name, k in string.gmatch(ARGV[i + 5], '(%S+) (%d+)') do\n"
	"    redis.call('HINCRBY', hkey, t .. '\\t' .. name, tonumber(k))\n"
	"    hours = true\n"
	"  end\n"
	"  if ARGV[i + 6] ~= '' then\n"
	"    local st, strong = tonumber(ARGV[i + 7]), ARGV[i + 8] == '1'\n"
	"    local cur = tonumber(redis.call('HGET', h, 'sub_time') or '0')\n"
	"    local cur_strong = redis.call('HGET', h, 'sub_strong') == '1'\n"
	"    if st >= cur and (strong or not cur_strong) then\n"
	"      redis.call('HSET', h, 'sub_state', ARGV[i + 6], 'sub_time', st,\n"
	"                 'sub_strong', strong and '1' or '0', 'sub_detail', ARGV[i + 9])\n"
	"    end\n"
	"  end\n"
	"  if ARGV[i + 10] ~= '' and later(h, 'cert_host_time', tonumber(ARGV[i + 11])) then\n"
	"    redis.call('HSET', h, 'cert_host', ARGV[i + 10])\n"
	"  end\n"
	"  if ARGV[i + 12] ~= '' and later(h, 'last_refused', tonumber(ARGV[i + 13])) then\n"
	"    redis.call('HSET', h, 'last_reason', ARGV[i + 12])\n"
	"  end\n"
	"end\n"
	"if hours then redis.call('EXPIRE', hkey, ttl) end\n"
	"return 0\n";

#define NOTE_ARGS 14
#define HEAD_ARGS 12 /* EVAL, script, numkeys, 2 keys, 7 ARGV */

/* The arguments of one flush: strings it owns. */
struct args {
	const char **v;
	size_t *len;
	char **owned;
	size_t n, nowned, cap;
};

static bool args_add(struct args *a, const char *s, size_t len, bool own)
{
	if (a->n == a->cap)
		return false;
	if (own) {
		char *c = malloc(len + 1);
		if (!c)
			return false;
		memcpy(c, s, len);
		c[len] = '\0';
		a->owned[a->nowned++] = c;
		s = c;
	}
	a->v[a->n] = s;
	a->len[a->n++] = len;
	return true;
}

static bool args_str(struct args *a, const char *s)
{
	return args_add(a, s, strlen(s), true);
}

static bool args_num(struct args *a, long long v)
{
	char b[32];
	int n = snprintf(b, sizeof(b), "%lld", v);
	return args_add(a, b, (size_t)n, true);
}

static void args_free(struct args *a)
{
	for (size_t i = 0; i < a->nowned; i++)
		free(a->owned[i]);
	free(a->owned);
	free(a->v);
	free(a->len);
}

static bool add_note(struct args *a, const struct note *e)
{
	char refused[STATUS_R__COUNT * 48] = "";
	size_t used = 0;
	for (int r = 0; r < STATUS_R__COUNT; r++)
		if (e->refused[r])
			used += (size_t)snprintf(refused + used, sizeof(refused) - used, "%s%s %lu",
						 used ? " " : "", reason_names[r], e->refused[r]);
	return args_str(a, e->topic) && args_str(a, e->trusted ? "1" : "0") &&
	       args_num(a, e->last_seen) && args_num(a, e->last_accepted) &&
	       args_num(a, (long long)e->accepted) && args_str(a, refused) &&
	       args_str(a, sub_names[e->sub]) && args_num(a, e->sub_time) &&
	       args_str(a, e->sub_strong ? "1" : "0") && args_str(a, e->sub_detail) &&
	       args_str(a, e->cert_host) && args_num(a, e->cert_host_time) &&
	       args_str(a, e->last_reason == STATUS_R_NONE ? "" : reason_names[e->last_reason]) &&
	       args_num(a, e->last_refused);
}

/* Runs cmds (RESP of argv vectors) in one round trip; the replies are
 * freed unless kept (keep[i] set to the reply, caller frees). */
static enum mt_err run(struct status *st, const char *key, size_t n, struct args *argvs,
		       redisReply **keep, char *errbuf, size_t errsz)
{
	struct rcluster_cmd *cmds = calloc(n, sizeof(*cmds));
	enum mt_err err = MT_E_NOMEM;
	if (!cmds)
		return err;
	for (size_t i = 0; i < n; i++) {
		char *raw = NULL;
		int len = redisFormatCommandArgv(&raw, (int)argvs[i].n, argvs[i].v, argvs[i].len);
		if (len < 0)
			goto out;
		cmds[i] = (struct rcluster_cmd){.key = key, .key_len = strlen(key), .raw = raw,
						.raw_len = (size_t)len};
	}
	err = rcluster_exec(st->rc, cmds, n, errbuf, errsz);
	for (size_t i = 0; err == MT_E_OK && i < n; i++) {
		redisReply *r = cmds[i].reply;
		if (r && r->type == REDIS_REPLY_ERROR) {
			snprintf(errbuf, errsz, "%s", r->str);
			err = MT_E_REDIS;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (err == MT_E_OK && keep)
			keep[i] = cmds[i].reply;
		else
			freeReplyObject(cmds[i].reply);
	}
out:
	for (size_t i = 0; i < n; i++)
		redisFreeCommand((char *)cmds[i].raw);
	free(cmds);
	return err;
}

static bool args_init(struct args *a, size_t cap)
{
	memset(a, 0, sizeof(*a));
	a->v = calloc(cap, sizeof(*a->v));
	a->len = calloc(cap, sizeof(*a->len));
	a->owned = calloc(cap, sizeof(*a->owned));
	a->cap = cap;
	return a->v && a->len && a->owned;
}

enum mt_err status_flush(struct status *st, char *errbuf, size_t errsz)
{
	struct note *taken = calloc(TABLE_MAX, sizeof(*taken));
	if (!taken)
		return MT_E_NOMEM;
	pthread_mutex_lock(&st->flush_lock);
	pthread_mutex_lock(&st->lock);
	size_t n = st->n;
	memcpy(taken, st->table, n * sizeof(*taken));
	st->n = 0;
	pthread_mutex_unlock(&st->lock);
	enum mt_err err = MT_E_OK;
	if (n == 0)
		goto out;
	struct args a;
	int64_t now = mt_time_now_ms();
	err = MT_E_NOMEM;
	if (!args_init(&a, HEAD_ARGS + n * NOTE_ARGS))
		goto free_args;
	bool ok = args_add(&a, "EVAL", 4, false) &&
		  args_add(&a, flush_script, sizeof(flush_script) - 1, false) &&
		  args_add(&a, "2", 1, false) && args_str(&a, st->topics_key) &&
		  args_str(&a, st->unverified_key) && args_str(&a, st->base) &&
		  args_num(&a, now) && args_num(&a, now / HOUR_MS) &&
		  args_num(&a, STATUS_TOPICS_MAX) && args_num(&a, STATUS_UNVERIFIED_TOPICS_MAX) &&
		  args_num(&a, STATUS_UNVERIFIED_IDLE_MS) && args_num(&a, STATUS_HOUR_TTL_S);
	for (size_t i = 0; ok && i < n; i++)
		ok = add_note(&a, &taken[i]);
	if (ok)
		err = run(st, st->topics_key, 1, &a, NULL, errbuf, errsz);
free_args:
	args_free(&a);
	atomic_store(&st->redis_ok, err == MT_E_OK);
	if (err != MT_E_OK) {
		/* Kept for the next flush (what came meanwhile merges in). */
		pthread_mutex_lock(&st->lock);
		for (size_t i = 0; i < n; i++) {
			struct note *e = slot(st, taken[i].topic, taken[i].trusted);
			if (e)
				merge(e, &taken[i]);
		}
		pthread_mutex_unlock(&st->lock);
	}
out:
	pthread_mutex_unlock(&st->flush_lock);
	free(taken);
	return err;
}

static void *flusher_main(void *arg)
{
	struct status *st = arg;
	pthread_mutex_lock(&st->lock);
	while (!st->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += STATUS_FLUSH_MS / 1000;
		ts.tv_nsec += (long)(STATUS_FLUSH_MS % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&st->wake, &st->lock, &ts);
		if (st->stopping || st->n == 0)
			continue;
		pthread_mutex_unlock(&st->lock);
		char err[256];
		status_flush(st, err, sizeof(err)); /* kept on failure: next time */
		pthread_mutex_lock(&st->lock);
	}
	pthread_mutex_unlock(&st->lock);
	return NULL;
}

struct status *status_new(const struct config *cfg)
{
	struct status *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->cfg = cfg;
	atomic_store(&st->redis_ok, true);
	pthread_mutex_init(&st->lock, NULL);
	pthread_mutex_init(&st->flush_lock, NULL);
	pthread_cond_init(&st->wake, NULL);
	snprintf(st->base, sizeof(st->base), "%s{status}:", cfg->redis_prefix);
	snprintf(st->topics_key, sizeof(st->topics_key), "%stopics", st->base);
	snprintf(st->unverified_key, sizeof(st->unverified_key), "%sunverified", st->base);
	st->table = calloc(TABLE_MAX, sizeof(*st->table));
	struct rcluster_opts o = {
		.redis = &cfg->redis,
		.pool_max = STATUS_POOL_MAX,
		.connect_timeout_ms = STATUS_CONNECT_TIMEOUT_MS,
		.command_timeout_ms = STATUS_COMMAND_TIMEOUT_MS,
	};
	st->rc = st->table ? rcluster_new(&o) : NULL;
	if (!st->rc || pthread_create(&st->thread, NULL, flusher_main, st) != 0) {
		status_free(st);
		return NULL;
	}
	pthread_setname_np(st->thread, "status");
	st->has_thread = true;
	return st;
}

void status_free(struct status *st)
{
	if (!st)
		return;
	if (st->has_thread) {
		pthread_mutex_lock(&st->lock);
		st->stopping = true;
		pthread_cond_signal(&st->wake);
		pthread_mutex_unlock(&st->lock);
		pthread_join(st->thread, NULL);
		/* The last notes, unless Redis failed the last try: a stop must
		 * not wait for a Redis that does not answer. */
		if (atomic_load(&st->redis_ok)) {
			char err[256];
			status_flush(st, err, sizeof(err));
		}
	}
	rcluster_free(st->rc);
	free(st->table);
	pthread_cond_destroy(&st->wake);
	pthread_mutex_destroy(&st->flush_lock);
	pthread_mutex_destroy(&st->lock);
	free(st);
}

/* ---- the answer ---------------------------------------------------------- */

static struct json_object *iso(int64_t ms)
{
	if (ms <= 0)
		return NULL;
	char b[MT_TIME_BUF];
	mt_time_format(ms, b);
	return json_object_new_string(b);
}

static int64_t field_ms(const struct json_object *h, const char *f)
{
	struct json_object *v;
	if (!json_object_object_get_ex(h, f, &v))
		return 0;
	const char *s = json_object_get_string(v);
	char *end;
	long long n = strtoll(s, &end, 10);
	return end != s && *end == '\0' ? (int64_t)n : 0;
}

static const char *field_str(const struct json_object *h, const char *f)
{
	struct json_object *v;
	return json_object_object_get_ex(h, f, &v) ? json_object_get_string(v) : "";
}

/* An HGETALL answer as an object of strings (caller puts it). */
static struct json_object *hash_object(const redisReply *r)
{
	struct json_object *o = json_object_new_object();
	for (size_t i = 0; o && r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
		const redisReply *k = r->element[i], *v = r->element[i + 1];
		if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING)
			json_object_object_add(o, k->str, json_object_new_string_len(v->str, (int)v->len));
	}
	return o;
}

/* One topic's counts: "accepted" and each reason, for the hour and the day. */
struct counts {
	unsigned long long accepted[2];
	unsigned long long refused[2][STATUS_R__COUNT];
};

/* Adds one hour's hash (HGETALL) to the topics' counts; topics names
 * the nt entries of counts. */
static void add_hour(const redisReply *r, bool in_hour, char **topics, size_t nt,
		     struct counts *counts)
{
	for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
		const redisReply *k = r->element[i], *v = r->element[i + 1];
		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
			continue;
		const char *tab = memchr(k->str, '\t', k->len);
		if (!tab)
			continue;
		size_t tl = (size_t)(tab - k->str);
		const char *what = tab + 1;
		unsigned long long n = strtoull(v->str, NULL, 10);
		for (size_t t = 0; t < nt; t++) {
			if (strlen(topics[t]) != tl || memcmp(topics[t], k->str, tl) != 0)
				continue;
			for (int w = 0; w < 2; w++) {
				if (w == 0 && !in_hour)
					continue;
				if (strcmp(what, "accepted") == 0) {
					counts[t].accepted[w] += n;
					continue;
				}
				for (int rr = 0; rr < STATUS_R__COUNT; rr++)
					if (strcmp(what, reason_names[rr]) == 0)
						counts[t].refused[w][rr] += n;
			}
			break;
		}
	}
}

static void hint(struct json_object *list, struct json_object *all, const char *topic,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void hint(struct json_object *list, struct json_object *all, const char *topic,
		 const char *fmt, ...)
{
	char b[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b, sizeof(b), fmt, ap);
	va_end(ap);
	json_object_array_add(list, json_object_new_string(b));
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "topic", json_object_new_string(topic));
	json_object_object_add(o, "hint", json_object_new_string(b));
	json_object_array_add(all, o);
}

/* The hints of one topic: a line for each reason refused in the day, for
 * its subscription's state, and for a silence after traffic. */
static void topic_hints(const char *topic, const struct json_object *h,
			const struct counts *c, int64_t now, struct json_object *list,
			struct json_object *all)
{
	bool pseudo = topic[0] == '(';
	const char *host = field_str(h, "cert_host");
	for (int r = 0; r < STATUS_R__COUNT; r++) {
		if (!c->refused[1][r])
			continue;
		switch ((enum status_reason)r) {
		case STATUS_R_RAW_DELIVERY:
			hint(list, all, topic, "these deliveries are raw (unsigned): turn off "
			     "RawMessageDelivery on the subscription (aws sns set-subscription-attributes "
			     "--attribute-name RawMessageDelivery --attribute-value false)");
			break;
		case STATUS_R_TOPIC_NOT_ACCEPTED:
			if (pseudo)
				hint(list, all, topic, "deliveries of topics that are not in --topic: add "
				     "yours to --topic");
			else
				hint(list, all, topic, "topic %s is not in --topic: add it if it is yours "
				     "(a refused delivery's TopicArn is not verified: anyone can write one)",
				     topic);
			break;
		case STATUS_R_BAD_SIGNATURE:
			hint(list, all, topic, "deliveries that could not be proven to come from SNS "
			     "(bad or missing signature, unusable certificate): forged or altered on the "
			     "way; nothing to fix if you do not expect them");
			break;
		case STATUS_R_URL_NOT_ALLOWED:
			hint(list, all, topic, "the SigningCertURL or SubscribeURL host is not allowed "
			     "by --cert-host-pattern: widen the pattern if the host is SNS's (a new "
			     "region or partition)");
			break;
		case STATUS_R_CERT_FETCH_FAILED:
			hint(list, all, topic, "the signing certificate could not be fetched from %s: "
			     "allow outbound HTTPS to it (SNS retries these deliveries for an hour)",
			     host[0] ? host : "the SNS certificate host");
			break;
		case STATUS_R_CONFIRM_FAILED:
			hint(list, all, topic, "the subscription could not be confirmed (its SubscribeURL "
			     "could not be visited): allow outbound HTTPS to the SNS host, or confirm it "
			     "by hand");
			break;
		case STATUS_R_TOO_OLD:
			hint(list, all, topic, "deliveries older than --max-age: check this host's clock "
			     "(NTP), or raise --max-age");
			break;
		case STATUS_R_MALFORMED:
			hint(list, all, topic, "requests that are not SNS deliveries (not JSON, a field "
			     "missing, too large): check what posts to /sns");
			break;
		case STATUS_R_STORAGE_UNAVAILABLE:
			hint(list, all, topic, "Redis could not take deliveries (SNS retries them for an "
			     "hour): check Redis and /readyz, or set --spool-dir");
			break;
		case STATUS_R_OVERLOADED:
			hint(list, all, topic, "deliveries answered 503 while too many waited for a "
			     "certificate or a confirmation (SNS retries them): if it lasts, check the "
			     "outbound HTTPS path");
			break;
		case STATUS_R__COUNT:
		case STATUS_R_NONE:
			break;
		}
	}
	const char *sub = field_str(h, "sub_state");
	const char *detail = field_str(h, "sub_detail");
	if (strcmp(sub, "pending") == 0)
		hint(list, all, topic, "the subscription to %s is not confirmed (--auto-confirm no): "
		     "visit its SubscribeURL%s%s, or run aws sns confirm-subscription", topic,
		     detail[0] ? " " : "", detail);
	else if (strcmp(sub, "refused") == 0)
		hint(list, all, topic, "the subscription confirmation of %s was refused (%s): SNS does "
		     "not send it again; once fixed, subscribe the endpoint again", topic, detail);
	else if (strcmp(sub, "failed") == 0)
		hint(list, all, topic, "the subscription to %s could not be confirmed (%s): allow "
		     "outbound HTTPS to the SNS host; SNS sends the confirmation again for a while",
		     topic, detail);
	else if (strcmp(sub, "unsubscribed") == 0)
		hint(list, all, topic, "%s sent an UnsubscribeConfirmation: the endpoint is no longer "
		     "subscribed; subscribe it again if that was not meant", topic);
	int64_t last = field_ms(h, "last_accepted");
	if (last > 0 && now - last > STATUS_SILENT_MS) {
		char at[MT_TIME_BUF];
		mt_time_format(last, at);
		hint(list, all, topic, "no delivery for 24 h from a topic that had traffic (%s, last "
		     "at %s): check the SES identity's notifications and the subscription", topic, at);
	}
}

static struct json_object *counts_object(const unsigned long long *v)
{
	struct json_object *o = json_object_new_object();
	for (int r = 0; o && r < STATUS_R__COUNT; r++)
		if (v[r])
			json_object_object_add(o, reason_names[r], json_object_new_int64((int64_t)v[r]));
	return o;
}

enum mt_err status_read(struct status *st, struct json_object **out, char *errbuf,
			size_t errsz)
{
	*out = NULL;
	enum mt_err err = status_flush(st, errbuf, errsz);
	if (err != MT_E_OK)
		return err;
	int64_t now = mt_time_now_ms(), hour = now / HOUR_MS;
	struct args q[1 + DAY_HOURS];
	redisReply *r1[1 + DAY_HOURS] = {0}, **r2 = NULL;
	struct args *q2 = NULL;
	char **topics = NULL;
	struct counts *counts = NULL;
	size_t nt = 0, nq = 0, nq2 = 0;
	err = MT_E_NOMEM;
	for (; nq < 1 + DAY_HOURS; nq++)
		if (!args_init(&q[nq], 8))
			goto out;
	if (!args_add(&q[0], "ZREVRANGE", 9, false) || !args_str(&q[0], st->topics_key) ||
	    !args_str(&q[0], "0") || !args_num(&q[0], STATUS_TOPICS_MAX + 2 - 1) ||
	    !args_str(&q[0], "WITHSCORES"))
		goto out;
	for (int k = 0; k < DAY_HOURS; k++) {
		char key[224];
		snprintf(key, sizeof(key), "%sh:%lld", st->base, (long long)(hour - k));
		if (!args_add(&q[1 + k], "HGETALL", 7, false) || !args_str(&q[1 + k], key))
			goto out;
	}
	err = run(st, st->topics_key, nq, q, r1, errbuf, errsz);
	if (err != MT_E_OK)
		goto out;
	err = MT_E_NOMEM;
	const redisReply *tr = r1[0];
	size_t ntop = tr->type == REDIS_REPLY_ARRAY ? tr->elements / 2 : 0;
	topics = calloc(ntop + 1, sizeof(*topics));
	counts = calloc(ntop + 1, sizeof(*counts));
	q2 = calloc(ntop + 1, sizeof(*q2));
	r2 = calloc(ntop + 1, sizeof(redisReply *));
	if (!topics || !counts || !q2 || !r2)
		goto out;
	nq2 = ntop; /* all zeroed: freed whether used or not */
	for (size_t i = 0; i < ntop; i++) {
		const redisReply *e = tr->element[2 * i];
		if (e->type != REDIS_REPLY_STRING)
			continue;
		char key[512];
		snprintf(key, sizeof(key), "%st:%s", st->base, e->str);
		if (!(topics[nt] = strdup(e->str)) || !args_init(&q2[nt], 4) ||
		    !args_add(&q2[nt], "HGETALL", 7, false) || !args_str(&q2[nt], key))
			goto out;
		nt++;
	}
	if (nt) {
		err = run(st, st->topics_key, nt, q2, r2, errbuf, errsz);
		if (err != MT_E_OK)
			goto out;
		err = MT_E_NOMEM;
	}
	for (int k = 0; k < DAY_HOURS; k++)
		add_hour(r1[1 + k], k < 2, topics, nt, counts);

	struct json_object *o = json_object_new_object(), *list = json_object_new_array(),
			   *all = json_object_new_array(), *since = json_object_new_object(),
			   *limits = json_object_new_object();
	if (!o || !list || !all || !since || !limits) {
		json_object_put(o);
		json_object_put(list);
		json_object_put(all);
		json_object_put(since);
		json_object_put(limits);
		goto out;
	}
	json_object_object_add(o, "time", iso(now));
	json_object_object_add(since, "hour", iso((hour - 1) * HOUR_MS));
	json_object_object_add(since, "day", iso((hour - (DAY_HOURS - 1)) * HOUR_MS));
	json_object_object_add(o, "since", since);
	json_object_object_add(limits, "topics", json_object_new_int(STATUS_TOPICS_MAX));
	json_object_object_add(limits, "unverified_topics",
			       json_object_new_int(STATUS_UNVERIFIED_TOPICS_MAX));
	json_object_object_add(limits, "flush_ms", json_object_new_int(STATUS_FLUSH_MS));
	json_object_object_add(o, "limits", limits);
	for (size_t i = 0; i < nt; i++) {
		struct json_object *h = hash_object(r2[i]), *t = json_object_new_object();
		struct json_object *th = json_object_new_array();
		if (!h || !t || !th) {
			json_object_put(h);
			json_object_put(t);
			json_object_put(th);
			continue;
		}
		const char *name = topics[i];
		bool pseudo = name[0] == '(';
		json_object_object_add(t, "topic", json_object_new_string(name));
		json_object_object_add(t, "accepted", pseudo ? NULL : json_object_new_boolean(
				       config_topic_allowed(st->cfg, name)));
		json_object_object_add(t, "verified",
				       json_object_new_boolean(strcmp(field_str(h, "verified"), "1") == 0));
		json_object_object_add(t, "first_seen", iso(field_ms(h, "first_seen")));
		json_object_object_add(t, "last_seen", iso(field_ms(h, "last_seen")));
		json_object_object_add(t, "last_accepted", iso(field_ms(h, "last_accepted")));
		const char *sub = field_str(h, "sub_state");
		if (sub[0]) {
			struct json_object *s = json_object_new_object();
			json_object_object_add(s, "state", json_object_new_string(sub));
			json_object_object_add(s, "time", iso(field_ms(h, "sub_time")));
			const char *d = field_str(h, "sub_detail");
			json_object_object_add(s, "detail", d[0] ? json_object_new_string(d) : NULL);
			json_object_object_add(t, "subscription", s);
		} else {
			json_object_object_add(t, "subscription", NULL);
		}
		struct json_object *acc = json_object_new_object(), *ref = json_object_new_object();
		json_object_object_add(acc, "hour", json_object_new_int64((int64_t)counts[i].accepted[0]));
		json_object_object_add(acc, "day", json_object_new_int64((int64_t)counts[i].accepted[1]));
		json_object_object_add(t, "deliveries", acc);
		json_object_object_add(ref, "hour", counts_object(counts[i].refused[0]));
		json_object_object_add(ref, "day", counts_object(counts[i].refused[1]));
		json_object_object_add(t, "refused", ref);
		const char *lr = field_str(h, "last_reason");
		if (lr[0]) {
			struct json_object *l = json_object_new_object();
			json_object_object_add(l, "reason", json_object_new_string(lr));
			json_object_object_add(l, "time", iso(field_ms(h, "last_refused")));
			json_object_object_add(t, "last_refused", l);
		} else {
			json_object_object_add(t, "last_refused", NULL);
		}
		const char *host = field_str(h, "cert_host");
		json_object_object_add(t, "cert_host", host[0] ? json_object_new_string(host) : NULL);
		topic_hints(name, h, &counts[i], now, th, all);
		json_object_object_add(t, "hints", th);
		json_object_put(h);
		json_object_array_add(list, t);
	}
	json_object_object_add(o, "topics", list);
	json_object_object_add(o, "hints", all);
	*out = o;
	err = MT_E_OK;
out:
	for (size_t i = 0; i < nq; i++)
		args_free(&q[i]);
	for (size_t i = 0; i < 1 + DAY_HOURS; i++)
		freeReplyObject(r1[i]);
	for (size_t i = 0; i < nq2; i++) {
		args_free(&q2[i]);
		freeReplyObject(r2[i]);
		free(topics[i]);
	}
	free(q2);
	free(r2);
	free(topics);
	free(counts);
	return err;
}
