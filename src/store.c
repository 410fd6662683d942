#include "store.h"

#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

/* One sorted set write: add the member, trim to the retention window below
 * the newest score and to a size cap, refresh the idle expiry.  With a
 * counts hash (KEYS[2], same hash tag, so same Cluster slot) it also keeps
 * per-type counts and what suppresses the recipient, for the summary,
 * following both adds and trims.  Everything touches only the keys given,
 * so it runs atomically.  Loaded once per connection, run with EVALSHA.
 * ARGV: score, member, retention ms, max members, type, suppression
 * ("Bounce/Permanent", "Complaint" or "").  A trimmed member's type and
 * suppression are read back from its EVENT JSON (as ses.c sets them). */
static const char put_script[] =
	"local zkey, ckey = KEYS[1], KEYS[2]\n"
	"local function bump(kind, why, score, d)\n"
	"  redis.call('HINCRBY', ckey, 'type:' .. kind, d)\n"
	"  if why == '' then return end\n"
	"  local n = redis.call('HINCRBY', ckey, 'suppress:' .. why, d)\n"
	"  if d > 0 then\n"
	"    local last = tonumber(redis.call('HGET', ckey, 'last:' .. why) or '-1')\n"
	"    if score > last then redis.call('HSET', ckey, 'last:' .. why, string.format('%.0f', score)) end\n"
	"  elseif n <= 0 then\n"
	"    redis.call('HDEL', ckey, 'suppress:' .. why, 'last:' .. why)\n"
	"  end\n"
	"end\n"
	"local function drop(list)\n"
	"  if not ckey then return end\n"
	"  for i = 1, #list, 2 do\n"
	"    local ok, e = pcall(cjson.decode, list[i])\n"
	"    if ok and type(e) == 'table' and type(e.type) == 'string' then\n"
	"      local why = ''\n"
	"      if e.type == 'Complaint' then why = 'Complaint'\n"
	"      elseif e.type == 'Bounce' and type(e.detail) == 'table' and\n"
	"             e.detail.bounceType == 'Permanent' then why = 'Bounce/Permanent' end\n"
	"      bump(e.type, why, tonumber(list[i + 1]), -1)\n"
	"    end\n"
	"  end\n"
	"end\n"
	"local score = tonumber(ARGV[1])\n"
	"local added = redis.call('ZADD', zkey, ARGV[1], ARGV[2])\n"
	"if added == 1 and ckey then bump(ARGV[5], ARGV[6], score, 1) end\n"
	"local top = redis.call('ZRANGE', zkey, -1, -1, 'WITHSCORES')\n"
	"local cutoff = string.format('(%.0f', tonumber(top[2]) - tonumber(ARGV[3]))\n"
	"local old = redis.call('ZRANGEBYSCORE', zkey, '-inf', cutoff, 'WITHSCORES', 'LIMIT', 0, 1000)\n"
	"if #old > 0 then\n"
	"  drop(old)\n"
	"  redis.call('ZREMRANGEBYRANK', zkey, 0, #old / 2 - 1)\n"
	"end\n"
	"local over = redis.call('ZCARD', zkey) - tonumber(ARGV[4])\n"
	"if over > 0 then\n"
	"  drop(redis.call('ZRANGE', zkey, 0, over - 1, 'WITHSCORES'))\n"
	"  redis.call('ZREMRANGEBYRANK', zkey, 0, over - 1)\n"
	"end\n"
	"redis.call('PEXPIRE', zkey, ARGV[3])\n"
	"if ckey then redis.call('PEXPIRE', ckey, ARGV[3]) end\n"
	"return added\n";

struct store {
	struct config_redis redis;
	char *prefix;
	int64_t retention_ms;
	char script_sha[41]; /* put_script's SHA1, as SCRIPT LOAD answers it */
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
	unsigned char md[SHA_DIGEST_LENGTH];
	SHA1((const unsigned char *)put_script, sizeof(put_script) - 1, md);
	for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
		snprintf(st->script_sha + 2 * i, 3, "%02x", md[i]);
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
	/* Every new connection makes sure the server has the script (it may
	 * have restarted, or be another node since the last connection). */
	r = redisCommand(c, "SCRIPT LOAD %s", put_script);
	bool ok = reply_ok(r, REDIS_REPLY_STRING, errbuf, errsz) &&
		  strcmp(r->str, st->script_sha) == 0;
	if (r && r->type == REDIS_REPLY_STRING && !ok)
		snprintf(errbuf, errsz, "SCRIPT LOAD answered an unexpected SHA1");
	freeReplyObject(r);
	if (!ok)
		goto fail;
	return c;
fail:
	redisFree(c);
	return NULL;
}

/* An idle connection, or a new one. */
static redisContext *conn_get(struct store *st, char *errbuf, size_t errsz)
{
	redisContext *c = NULL;
	pthread_mutex_lock(&st->lock);
	if (st->nidle)
		c = st->idle[--st->nidle];
	pthread_mutex_unlock(&st->lock);
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
	const char *counts_key; /* NULL: no counts */
	const char *type, *suppress; /* for the counts; may be NULL */
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
		const char *argv[11] = {"EVALSHA", st->script_sha, "1", puts[i].key};
		size_t argl[11] = {7, 40, 1, strlen(puts[i].key)};
		int argc = 4;
		if (puts[i].counts_key) {
			argv[2] = "2";
			argv[argc] = puts[i].counts_key;
			argl[argc++] = strlen(puts[i].counts_key);
		}
		const char *type = puts[i].type ? puts[i].type : "";
		const char *why = puts[i].suppress ? puts[i].suppress : "";
		const char *args[] = {score, puts[i].member, ret, max, type, why};
		const size_t lens[] = {strlen(score), puts[i].member_len, strlen(ret),
				       strlen(max), strlen(type), strlen(why)};
		for (int a = 0; a < 6; a++) {
			argv[argc] = args[a];
			argl[argc++] = lens[a];
		}
		bool queued = redisAppendCommandArgv(c, argc, argv, argl) == REDIS_OK;
		if (queued && recent) {
			const char *zargv[] = {"ZADD", recent_key, score, puts[i].member};
			size_t zargl[] = {4, strlen(recent_key), strlen(score),
					  puts[i].member_len};
			queued = redisAppendCommandArgv(c, 4, zargv, zargl) == REDIS_OK &&
				 redisAppendCommand(c, "ZREMRANGEBYRANK %s 0 %d", recent_key,
						    -STORE_RECENT_MAX - 1) == REDIS_OK;
		}
		if (!queued) {
			/* Out of memory half-way: the connection's output is in an
			 * unknown state, so it is dropped, not reused. */
			snprintf(errbuf, errsz, "cannot queue a command (out of memory)");
			*io_error = true;
			return MT_E_NOMEM;
		}
		sent += recent ? 3 : 1;
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
			/* The script cache was flushed: a new connection loads it
			 * again, and the batch (idempotent) is retried there. */
			if (strncmp(r->str, "NOSCRIPT", 8) == 0)
				*io_error = true;
		} else if (i % per == 0 && r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
			*added += 1;
			if (puts[i / per].counts_key) /* an event, not a raw message */
				metrics_count_event(puts[i / per].type);
		}
		freeReplyObject(r);
	}
	return err;
}

static redisReply *command(redisContext *c, bool *io_error, char *errbuf,
			   size_t errsz, const char *fmt, ...);

/* One operation on one connection.  Sets *io_error when the connection
 * broke (as opposed to Redis answering with an error). */
typedef enum mt_err (*store_op)(struct store *st, redisContext *c, void *ctx,
				bool *io_error, char *errbuf, size_t errsz);

/* Runs op on a pooled connection.  Every operation is idempotent (writes)
 * or read-only, so when the connection turns out to be dead (Redis
 * restarted meanwhile) the op runs again on a new one: the first request
 * after Redis comes back succeeds. */
static enum mt_err store_run(struct store *st, store_op op, void *ctx,
			     char *errbuf, size_t errsz)
{
	for (int attempt = 0;; attempt++) {
		bool io_error = false;
		redisContext *c = conn_get(st, errbuf, errsz);
		if (!c) {
			metrics_add(METRIC_redis_errors_total, 1);
			return MT_E_REDIS;
		}
		enum mt_err err = op(st, c, ctx, &io_error, errbuf, errsz);
		conn_put(st, c, !io_error);
		if (err == MT_E_REDIS || io_error)
			metrics_add(METRIC_redis_errors_total, 1);
		/* A connection that broke (Redis restarted while it idled in
		 * the pool) or lost the script (SCRIPT FLUSH, failover) is
		 * dropped; the op runs once more on a new connection. */
		if (!(io_error && attempt == 0))
			return err;
	}
}

struct puts_ctx {
	const struct put *puts;
	size_t n;
	bool recent;
	size_t *added;
};

static enum mt_err puts_op(struct store *st, redisContext *c, void *ctx,
			   bool *io_error, char *errbuf, size_t errsz)
{
	struct puts_ctx *p = ctx;
	return pipeline_puts(st, c, p->puts, p->n, p->recent, p->added, io_error,
			     errbuf, errsz);
}

static enum mt_err run_puts(struct store *st, const struct put *puts, size_t n,
			    bool recent, size_t *added, char *errbuf,
			    size_t errsz)
{
	struct puts_ctx p = {puts, n, recent, added};
	return store_run(st, puts_op, &p, errbuf, errsz);
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
		char *counts = make_key(st, "counts", e->recipient);
		if (!key || !counts) {
			free(key);
			free(counts);
			goto out;
		}
		puts[n] = (struct put){key, counts, e->type, e->suppress, e->time_ms,
				       e->json, e->json_len, STORE_RCPT_EVENTS_MAX};
	}
	err = run_puts(st, puts, n, true, added, errbuf, errsz);
out:
	for (size_t i = 0; i < n; i++) {
		free((char *)puts[i].key);
		free((char *)puts[i].counts_key);
	}
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
	struct put p = {key, NULL, NULL, NULL, time_ms, json, len, STORE_TOPIC_MESSAGES_MAX};
	enum mt_err err = run_puts(st, &p, 1, false, added, errbuf, errsz);
	free(key);
	return err;
}

struct marker_ctx {
	const char *key;
	int64_t ttl_ms;
	bool *seen; /* NULL: mark */
};

static enum mt_err marker_op(struct store *st, redisContext *c, void *ctx,
			     bool *io_error, char *errbuf, size_t errsz)
{
	struct marker_ctx *mc = ctx;
	redisReply *r = mc->seen
		? command(c, io_error, errbuf, errsz, "EXISTS %s", mc->key)
		: command(c, io_error, errbuf, errsz, "SET %s 1 PX %lld", mc->key,
			  (long long)mc->ttl_ms);
	if (!r)
		return MT_E_REDIS;
	if (mc->seen)
		*mc->seen = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
	freeReplyObject(r);
	return MT_E_OK;
}

static enum mt_err marker(struct store *st, const char *message_id, bool *seen,
			  char *errbuf, size_t errsz)
{
	char *key = make_key(st, "msg", message_id);
	if (!key)
		return MT_E_NOMEM;
	struct marker_ctx mc = {key, st->retention_ms, seen};
	enum mt_err err = store_run(st, marker_op, &mc, errbuf, errsz);
	free(key);
	return err;
}

enum mt_err store_message_seen(struct store *st, const char *message_id,
			       bool *seen, char *errbuf, size_t errsz)
{
	*seen = false;
	return marker(st, message_id, seen, errbuf, errsz);
}

enum mt_err store_message_mark(struct store *st, const char *message_id,
			       char *errbuf, size_t errsz)
{
	return marker(st, message_id, NULL, errbuf, errsz);
}

static enum mt_err ping_op(struct store *st, redisContext *c, void *ctx,
			   bool *io_error, char *errbuf, size_t errsz)
{
	redisReply *r = redisCommand(c, "PING");
	bool ok = reply_ok(r, REDIS_REPLY_STATUS, errbuf, errsz);
	if (!r) {
		snprintf(errbuf, errsz, "%s", c->errstr[0] ? c->errstr : "no reply");
		*io_error = true;
	}
	freeReplyObject(r);
	return ok ? MT_E_OK : MT_E_REDIS;
}

enum mt_err store_ping(struct store *st, char *errbuf, size_t errsz)
{
	return store_run(st, ping_op, NULL, errbuf, errsz);
}

/* ---- queries ---------------------------------------------------------- */

static bool parse_score(const redisReply *r, int64_t *out)
{
	if (!r || r->type != REDIS_REPLY_STRING)
		return false;
	char *end;
	double d = strtod(r->str, &end);
	if (end == r->str || *end)
		return false;
	*out = (int64_t)d;
	return true;
}

/* The EVENT in a member, when it parses and (with type) is of that type.
 * Returns a new json-c object (caller puts it) or NULL. */
static struct json_object *event_if_matches(const redisReply *member, const char *type)
{
	if (!member || member->type != REDIS_REPLY_STRING)
		return NULL;
	struct json_object *ev = json_tokener_parse(member->str);
	if (!ev || !json_object_is_type(ev, json_type_object)) {
		json_object_put(ev);
		return NULL;
	}
	if (type) {
		struct json_object *t;
		if (!json_object_object_get_ex(ev, "type", &t) ||
		    !json_object_is_type(t, json_type_string) ||
		    strcmp(json_object_get_string(t), type) != 0) {
			json_object_put(ev);
			return NULL;
		}
	}
	return ev;
}

static redisReply *command(redisContext *c, bool *io_error, char *errbuf,
			   size_t errsz, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(c, fmt, ap);
	va_end(ap);
	if (!r) {
		*io_error = true;
		snprintf(errbuf, errsz, "%s", c->errstr[0] ? c->errstr : "no reply");
		return NULL;
	}
	if (!reply_ok(r, -1, errbuf, errsz)) {
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

struct query_ctx {
	const char *key;
	const struct store_query *q;
	struct store_page *page;
};

struct match {
	struct json_object *ev;
	int64_t score;
};

/* Scans newest first from the query's bounds until limit matches are found
 * (or STORE_SCAN_MAX entries examined).  The score of the first entry not
 * examined is the boundary: matches with that score are left for the next
 * page (whose cursor then includes it), so a page never splits one
 * millisecond's events between two pages.  Only when a whole page shares
 * the boundary score is that millisecond returned in one go. */
static enum mt_err query_op(struct store *st, redisContext *c, void *ctx,
			    bool *io_error, char *errbuf, size_t errsz)
{
	struct query_ctx *qc = ctx;
	const struct store_query *q = qc->q;
	struct store_page *page = qc->page;
	char max[32], min[32];
	size_t batch = q->type ? 256 : q->limit + 1;
	size_t offset = 0, scanned = 0, nm = 0;
	bool bounded = false, first = true;
	int64_t boundary = 0, top = 0;
	enum mt_err err = MT_E_OK;
	struct match *m = calloc(q->limit, sizeof(*m));
	redisReply *r = NULL;

	if (!m)
		return MT_E_NOMEM;
	/* A retry on a fresh connection starts the page again. */
	json_object_put(page->events);
	page->events = json_object_new_array();
	if (!page->events) {
		free(m);
		return MT_E_NOMEM;
	}
	if (q->has_before)
		snprintf(max, sizeof(max), "(%lld", (long long)q->before);
	else
		snprintf(max, sizeof(max), "+inf");
	if (q->has_after)
		snprintf(min, sizeof(min), "(%lld", (long long)q->after);
	else
		snprintf(min, sizeof(min), "-inf");

	while (!bounded) {
		r = command(c, io_error, errbuf, errsz,
			    "ZREVRANGEBYSCORE %s %s %s WITHSCORES LIMIT %llu %llu",
			    qc->key, max, min, (unsigned long long)offset,
			    (unsigned long long)batch);
		if (!r) {
			err = MT_E_REDIS;
			goto out;
		}
		size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements / 2 : 0;
		for (size_t i = 0; i < n; i++) {
			int64_t score;
			if (!parse_score(r->element[2 * i + 1], &score))
				continue;
			if (nm == q->limit || scanned == STORE_SCAN_MAX) {
				boundary = score;
				bounded = true;
				break;
			}
			if (first) {
				top = score;
				first = false;
			}
			scanned++;
			struct json_object *ev = event_if_matches(r->element[2 * i], q->type);
			if (ev)
				m[nm++] = (struct match){ev, score};
		}
		freeReplyObject(r);
		r = NULL;
		if (n < batch)
			break;
		offset += n;
	}

	page->more = bounded;
	if (bounded) {
		while (nm > 0 && m[nm - 1].score == boundary)
			json_object_put(m[--nm].ev);
		/* Exclusive cursor: below the last event shown, or, when a
		 * filtered scan found nothing, down to the boundary itself. */
		page->next_before = nm ? m[nm - 1].score : boundary + 1;
		if (nm == 0 && top == boundary) {
			/* One millisecond fills the page: return all of it. */
			r = command(c, io_error, errbuf, errsz,
				    "ZREVRANGEBYSCORE %s %lld %lld LIMIT 0 %d", qc->key,
				    (long long)boundary, (long long)boundary, STORE_GROUP_MAX);
			if (!r) {
				err = MT_E_REDIS;
				goto out;
			}
			for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
				struct json_object *ev = event_if_matches(r->element[i], q->type);
				if (ev)
					json_object_array_add(page->events, ev);
			}
			freeReplyObject(r);
			r = command(c, io_error, errbuf, errsz,
				    "ZREVRANGEBYSCORE %s (%lld %s LIMIT 0 1", qc->key,
				    (long long)boundary, min);
			if (!r) {
				err = MT_E_REDIS;
				goto out;
			}
			page->more = r->type == REDIS_REPLY_ARRAY && r->elements > 0;
			page->next_before = boundary;
			freeReplyObject(r);
			r = NULL;
		}
	}
	for (size_t i = 0; i < nm; i++) {
		json_object_array_add(page->events, m[i].ev);
		m[i].ev = NULL;
	}
out:
	for (size_t i = 0; i < nm; i++)
		json_object_put(m[i].ev);
	free(m);
	return err;
}

enum mt_err store_query_events(struct store *st, const char *address,
			       const struct store_query *q,
			       struct store_page *out, char *errbuf,
			       size_t errsz)
{
	char recent[256];
	char *key = NULL;

	memset(out, 0, sizeof(*out));
	if (q->limit == 0 || q->limit > STORE_PAGE_MAX)
		return MT_E_INTERNAL;
	if (address) {
		key = make_key(st, "rcpt", address);
		if (!key)
			return MT_E_NOMEM;
	} else {
		snprintf(recent, sizeof(recent), "%srecent", st->prefix);
	}
	struct query_ctx qc = {key ? key : recent, q, out};
	enum mt_err err = store_run(st, query_op, &qc, errbuf, errsz);
	free(key);
	return err;
}

void store_page_free(struct store_page *page)
{
	if (!page)
		return;
	json_object_put(page->events);
	memset(page, 0, sizeof(*page));
}

struct summary_ctx {
	const char *key, *counts_key;
	struct store_summary *sum;
};

static enum mt_err summary_op(struct store *st, redisContext *c, void *ctx,
			      bool *io_error, char *errbuf, size_t errsz)
{
	struct summary_ctx *sc = ctx;
	struct store_summary *sum = sc->sum;
	int64_t last_bounce = -1, last_complaint = -1;
	long long n_bounce = 0, n_complaint = 0;

	/* A retry on a fresh connection starts again. */
	json_object_put(sum->counts);
	json_object_put(sum->last_event);
	sum->last_event = NULL;
	sum->reason = NULL;
	sum->counts = json_object_new_object();
	if (!sum->counts)
		return MT_E_NOMEM;
	redisReply *r = command(c, io_error, errbuf, errsz, "HGETALL %s", sc->counts_key);
	if (!r)
		return MT_E_REDIS;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
		const char *f = r->element[i]->str, *v = r->element[i + 1]->str;
		if (!f || !v)
			continue;
		long long n = strtoll(v, NULL, 10);
		if (strncmp(f, "type:", 5) == 0 && n > 0)
			json_object_object_add(sum->counts, f + 5, json_object_new_int64(n));
		else if (strcmp(f, "suppress:Bounce/Permanent") == 0)
			n_bounce = n;
		else if (strcmp(f, "suppress:Complaint") == 0)
			n_complaint = n;
		else if (strcmp(f, "last:Bounce/Permanent") == 0)
			last_bounce = n;
		else if (strcmp(f, "last:Complaint") == 0)
			last_complaint = n;
	}
	freeReplyObject(r);
	if (n_bounce > 0 && (n_complaint <= 0 || last_bounce >= last_complaint))
		sum->reason = "Bounce/Permanent";
	else if (n_complaint > 0)
		sum->reason = "Complaint";

	r = command(c, io_error, errbuf, errsz, "ZREVRANGE %s 0 0", sc->key);
	if (!r)
		return MT_E_REDIS;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1)
		sum->last_event = event_if_matches(r->element[0], NULL);
	freeReplyObject(r);
	return MT_E_OK;
}

enum mt_err store_recipient_summary(struct store *st, const char *address,
				    struct store_summary *out, char *errbuf,
				    size_t errsz)
{
	enum mt_err err = MT_E_NOMEM;
	char *key = make_key(st, "rcpt", address);
	char *counts = make_key(st, "counts", address);

	memset(out, 0, sizeof(*out));
	if (!key || !counts)
		goto out;
	struct summary_ctx sc = {key, counts, out};
	err = store_run(st, summary_op, &sc, errbuf, errsz);
out:
	free(counts);
	free(key);
	return err;
}

void store_summary_free(struct store_summary *sum)
{
	if (!sum)
		return;
	json_object_put(sum->counts);
	json_object_put(sum->last_event);
	memset(sum, 0, sizeof(*sum));
}
