#include "store.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One sorted set write: add the member, trim to the retention window below
 * the newest score and to a size cap, refresh the idle expiry.  One key,
 * so it runs atomically and in one Redis Cluster slot.
 * KEYS[1] set; ARGV: score, member, retention ms, max members. */
static const char put_script[] =
	"local added = redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])\n"
	"local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')\n"
	"local cutoff = tonumber(top[2]) - tonumber(ARGV[3])\n"
	"redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%.0f', cutoff))\n"
	"redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[4]) - 1)\n"
	"redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
	"return added\n";

struct store {
	struct config_redis redis;
	char *prefix;
	int64_t retention_ms;
	pthread_mutex_t lock;
	redisContext *idle[STORE_POOL_MAX];
	size_t nidle;
};

struct store *store_new(const struct config_redis *redis, const char *prefix,
			unsigned retention_days)
{
	struct store *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->redis = *redis;
	st->prefix = strdup(prefix);
	if (!st->prefix) {
		free(st);
		return NULL;
	}
	st->retention_ms = (int64_t)retention_days * 86400 * 1000;
	pthread_mutex_init(&st->lock, NULL);
	return st;
}

void store_free(struct store *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < st->nidle; i++)
		redisFree(st->idle[i]);
	pthread_mutex_destroy(&st->lock);
	free(st->prefix);
	free(st);
}

static bool reply_ok(redisReply *r, int type, char *errbuf, size_t errsz)
{
	if (!r) {
		snprintf(errbuf, errsz, "no reply");
		return false;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(errbuf, errsz, "%s", r->str);
		return false;
	}
	if (type >= 0 && r->type != type) {
		snprintf(errbuf, errsz, "unexpected reply type %d", r->type);
		return false;
	}
	return true;
}

/* A new connection, authenticated and on the right database. */
static redisContext *connect_redis(struct store *st, char *errbuf, size_t errsz)
{
	struct timeval ct = {STORE_CONNECT_TIMEOUT_MS / 1000,
			     (STORE_CONNECT_TIMEOUT_MS % 1000) * 1000};
	struct timeval rt = {STORE_COMMAND_TIMEOUT_MS / 1000,
			     (STORE_COMMAND_TIMEOUT_MS % 1000) * 1000};
	redisContext *c = st->redis.is_unix
				  ? redisConnectUnixWithTimeout(st->redis.path, ct)
				  : redisConnectWithTimeout(st->redis.host,
							    (int)st->redis.port, ct);
	if (!c) {
		snprintf(errbuf, errsz, "out of memory");
		return NULL;
	}
	if (c->err) {
		snprintf(errbuf, errsz, "connect: %s", c->errstr);
		goto fail;
	}
	redisSetTimeout(c, rt);
	if (!st->redis.is_unix)
		redisEnableKeepAlive(c);
	redisReply *r;
	if (st->redis.password[0]) {
		r = redisCommand(c, "AUTH %s", st->redis.password);
		bool ok = reply_ok(r, -1, errbuf, errsz);
		freeReplyObject(r);
		if (!ok)
			goto fail;
	}
	if (st->redis.db) {
		r = redisCommand(c, "SELECT %u", st->redis.db);
		bool ok = reply_ok(r, -1, errbuf, errsz);
		freeReplyObject(r);
		if (!ok)
			goto fail;
	}
	return c;
fail:
	redisFree(c);
	return NULL;
}

/* An idle connection (*reused = true) or a new one. */
static redisContext *conn_get(struct store *st, bool *reused, char *errbuf,
			      size_t errsz)
{
	redisContext *c = NULL;
	pthread_mutex_lock(&st->lock);
	if (st->nidle)
		c = st->idle[--st->nidle];
	pthread_mutex_unlock(&st->lock);
	*reused = c != NULL;
	return c ? c : connect_redis(st, errbuf, errsz);
}

/* Returns a healthy connection to the pool; a broken one is closed, so the
 * next request reconnects (this is how Redis coming back is noticed). */
static void conn_put(struct store *st, redisContext *c, bool healthy)
{
	if (!c)
		return;
	if (healthy && !c->err) {
		pthread_mutex_lock(&st->lock);
		if (st->nidle < STORE_POOL_MAX) {
			st->idle[st->nidle++] = c;
			c = NULL;
		}
		pthread_mutex_unlock(&st->lock);
	}
	redisFree(c);
}

/* Key "{prefix}kind:{name}" into a malloc'd string (caller frees). */
static char *make_key(const struct store *st, const char *kind, const char *name)
{
	size_t n = strlen(st->prefix) + strlen(kind) + strlen(name) + 4;
	char *k = malloc(n);
	if (k)
		snprintf(k, n, "%s%s:{%s}", st->prefix, kind, name);
	return k;
}

struct put {
	const char *key;
	int64_t score;
	const char *member;
	size_t member_len;
	long max_members;
};

/* Pipelines the script for each put, plus the recent feed when recent is
 * true, on connection c.  Sums the adds of the puts.  *io_error tells a
 * broken connection from an error reply. */
static enum mt_err pipeline_puts(struct store *st, redisContext *c,
				 const struct put *puts, size_t n, bool recent,
				 size_t *added, bool *io_error, char *errbuf,
				 size_t errsz)
{
	char recent_key[256];
	size_t sent = 0;
	enum mt_err err = MT_E_OK;

	*added = 0;
	*io_error = false;
	snprintf(recent_key, sizeof(recent_key), "%srecent", st->prefix);

	for (size_t i = 0; i < n; i++) {
		char score[32], ret[32], max[32];
		snprintf(score, sizeof(score), "%lld", (long long)puts[i].score);
		snprintf(ret, sizeof(ret), "%lld", (long long)st->retention_ms);
		snprintf(max, sizeof(max), "%ld", puts[i].max_members);
		const char *argv[] = {"EVAL", put_script, "1", puts[i].key,
				      score, puts[i].member, ret, max};
		size_t argl[] = {4, sizeof(put_script) - 1, 1, strlen(puts[i].key),
				 strlen(score), puts[i].member_len, strlen(ret), strlen(max)};
		redisAppendCommandArgv(c, 8, argv, argl);
		sent++;
		if (recent) {
			const char *zargv[] = {"ZADD", recent_key, score, puts[i].member};
			size_t zargl[] = {4, strlen(recent_key), strlen(score),
					  puts[i].member_len};
			redisAppendCommandArgv(c, 4, zargv, zargl);
			redisAppendCommand(c, "ZREMRANGEBYRANK %s 0 %d", recent_key,
					   -STORE_RECENT_MAX - 1);
			sent += 2;
		}
	}
	/* Read every reply, even after an error, to keep the stream in step. */
	size_t per = recent ? 3 : 1;
	for (size_t i = 0; i < sent; i++) {
		redisReply *r = NULL;
		if (redisGetReply(c, (void **)&r) != REDIS_OK) {
			snprintf(errbuf, errsz, "%s", c->errstr[0] ? c->errstr : "I/O error");
			*io_error = true;
			err = MT_E_REDIS;
			break;
		}
		if (!reply_ok(r, -1, errbuf, errsz)) {
			err = MT_E_REDIS;
		} else if (i % per == 0) {
			if (r->type == REDIS_REPLY_INTEGER)
				*added += r->integer > 0;
		}
		freeReplyObject(r);
	}
	return err;
}

/* Writes are idempotent, so a connection that went bad while idle in the
 * pool (Redis restarted) is replaced and the whole batch sent again. */
static enum mt_err run_puts(struct store *st, const struct put *puts, size_t n,
			    bool recent, size_t *added, char *errbuf,
			    size_t errsz)
{
	for (int attempt = 0;; attempt++) {
		bool reused, io_error;
		redisContext *c = conn_get(st, &reused, errbuf, errsz);
		if (!c)
			return MT_E_REDIS;
		enum mt_err err = pipeline_puts(st, c, puts, n, recent, added,
						&io_error, errbuf, errsz);
		conn_put(st, c, !io_error);
		if (!(io_error && reused && attempt == 0))
			return err;
	}
}

enum mt_err store_put_events(struct store *st, const struct ses_events *evs,
			     size_t *added, char *errbuf, size_t errsz)
{
	enum mt_err err = MT_E_NOMEM;
	struct put *puts = calloc(evs->n ? evs->n : 1, sizeof(*puts));
	size_t n = 0;

	*added = 0;
	if (!puts)
		return MT_E_NOMEM;
	for (; n < evs->n; n++) {
		const struct ses_event *e = &evs->v[n];
		char *key = make_key(st, "rcpt", e->recipient);
		if (!key)
			goto out;
		puts[n] = (struct put){key, e->time_ms, e->json, e->json_len,
				       STORE_RCPT_EVENTS_MAX};
	}
	err = run_puts(st, puts, n, true, added, errbuf, errsz);
out:
	for (size_t i = 0; i < n; i++)
		free((char *)puts[i].key);
	free(puts);
	return err;
}

enum mt_err store_put_raw(struct store *st, const char *topic_arn,
			  int64_t time_ms, const char *json, size_t len,
			  size_t *added, char *errbuf, size_t errsz)
{
	char *key = make_key(st, "topic", topic_arn);
	if (!key)
		return MT_E_NOMEM;
	struct put p = {key, time_ms, json, len, STORE_TOPIC_MESSAGES_MAX};
	enum mt_err err = run_puts(st, &p, 1, false, added, errbuf, errsz);
	free(key);
	return err;
}

enum mt_err store_ping(struct store *st, char *errbuf, size_t errsz)
{
	for (int attempt = 0;; attempt++) {
		bool reused;
		redisContext *c = conn_get(st, &reused, errbuf, errsz);
		if (!c)
			return MT_E_REDIS;
		redisReply *r = redisCommand(c, "PING");
		bool ok = reply_ok(r, REDIS_REPLY_STATUS, errbuf, errsz);
		if (!r)
			snprintf(errbuf, errsz, "%s", c->errstr[0] ? c->errstr : "no reply");
		freeReplyObject(r);
		conn_put(st, c, r != NULL);
		if (ok || r || !reused || attempt > 0)
			return ok ? MT_E_OK : MT_E_REDIS;
	}
}
