#include "store.h"

#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "groupcommit.h"
#include "member.h"
#include "metrics.h"
#include "mt_time.h"
#include "rcluster.h"

/* One sorted set write: add the member, trim to the retention window below
 * the newest score and to a size cap, refresh the idle expiry.  With a
 * counts hash (KEYS[2], same hash tag, so same Cluster slot) it also keeps
 * per-type counts and what suppresses the recipient, for the summary,
 * following both adds and trims.  Everything touches only the keys given,
 * so it runs atomically.  Loaded once per connection, run with EVALSHA.
 * ARGV: score, member, retention ms, type, suppression ("Bounce/Permanent",
 * "Complaint" or ""), the member's message prefix, the retention cutoff
 * when this member is the newest ("(" min(score, now) - retention), the
 * writer's clock (now, ms).  The size cap
 * is STORE_RCPT_EVENTS_MAX with a counts hash (a recipient's events), else
 * STORE_TOPIC_MESSAGES_MAX.  A trimmed member's type and suppression are
 * read back from its JSON (as ses.c sets them; member.h's compact member
 * keeps "type", and "detail" as "x").
 *
 * The window ends at the newest score or at now, whichever is earlier:
 * a replayed old payload into an empty set stays, but no event, however
 * far in the future its time, trims anything younger than the retention
 * period (ses.h's SES_TIME_AHEAD_MAX_MS keeps such events off the
 * timelines; this keeps one that got through, or that an older version
 * stored, from erasing history or lifting a suppression).
 *
 * Redelivery: every member begins with its SNS MessageId ({"id":"..."),
 * and a redelivered message has the same event time, so a member at the
 * same score with the same prefix is that message's, even when this copy
 * of mailtrail (other flags, another version) builds other bytes.  Then
 * nothing is written and the stored member is returned; a new member
 * returns 1.
 *
 * Cost: every redis.call() is several microseconds of Redis CPU, a long
 * string into or out of Lua is hashed byte by byte, and a Lua number
 * passed to Redis is printed with printf.  So the common case (events
 * arriving in time order) makes one ZCOUNT of the members at or after
 * this score, which says both that no redelivery can be there and that
 * this member is the newest: then the cutoff comes ready-made from the
 * caller and the suppression time is set without reading the old one
 * (it is never newer than the newest member).  Only members out of order
 * look at the stored ones.  The keys' expiry is renewed only when it has
 * fallen below the retention period (a PTTL instead of two PEXPIREs), to
 * the retention period and STORE_EXPIRY_SLACK_MS more; the counts hash is
 * renewed with the set, so the two expire together.  Numbers go to Redis
 * as strings, and constants are in the script's text rather than in ARGV
 * (each argument costs Redis about as much as a short redis.call()). */
#define STR_(x) #x
#define STR(x) STR_(x)
static const char put_script[] =
	"local zkey, ckey = KEYS[1], KEYS[2]\n"
	"local sc, member, ret = ARGV[1], ARGV[2], ARGV[3]\n"
	"local function drop(list)\n"
	"  if not ckey then return end\n"
	"  for i = 1, #list, 2 do\n"
	"    local ok, e = pcall(cjson.decode, list[i])\n"
	"    if ok and type(e) == 'table' and type(e.type) == 'string' then\n"
	/* A compact member (member.h) keeps its detail under "x". */
	"      local detail = e.detail or e.x\n"
	"      redis.call('HINCRBY', ckey, 'type:' .. e.type, '-1')\n"
	"      local why = ''\n"
	"      if e.type == 'Complaint' then why = 'Complaint'\n"
	"      elseif e.type == 'Bounce' and type(detail) == 'table' and\n"
	"             detail.bounceType == 'Permanent' then why = 'Bounce/Permanent' end\n"
	"      if why ~= '' and redis.call('HINCRBY', ckey, 'suppress:' .. why, '-1') <= 0 then\n"
	"        redis.call('HDEL', ckey, 'suppress:' .. why, 'last:' .. why)\n"
	"      end\n"
	"    end\n"
	"  end\n"
	"end\n"
	"local later = redis.call('ZCOUNT', zkey, sc, '+inf')\n"
	"local cutoff = ARGV[7]\n"
	"if later > 0 then\n"
	"  local idp = ARGV[6]\n"
	"  if idp ~= '' then\n"
	"    for _, m in ipairs(redis.call('ZRANGEBYSCORE', zkey, sc, sc)) do\n"
	"      if string.sub(m, 1, #idp) == idp then return m end\n"
	"    end\n"
	"  end\n"
	"  local top = redis.call('ZRANGE', zkey, '-1', '-1', 'WITHSCORES')\n"
	"  cutoff = string.format('(%.0f', math.min(tonumber(top[2]), tonumber(ARGV[8])) - tonumber(ret))\n"
	"end\n"
	"local added = redis.call('ZADD', zkey, sc, member)\n"
	"if added == 1 and ckey then\n"
	"  redis.call('HINCRBY', ckey, 'type:' .. ARGV[4], '1')\n"
	"  local why = ARGV[5]\n"
	"  if why ~= '' then\n"
	"    redis.call('HINCRBY', ckey, 'suppress:' .. why, '1')\n"
	"    local f = 'last:' .. why\n"
	"    if later == 0 or tonumber(sc) > tonumber(redis.call('HGET', ckey, f) or '-1') then\n"
	"      redis.call('HSET', ckey, f, sc)\n"
	"    end\n"
	"  end\n"
	"end\n"
	"if redis.call('ZCOUNT', zkey, '-inf', cutoff) > 0 then\n"
	"  local old = redis.call('ZRANGEBYSCORE', zkey, '-inf', cutoff, 'WITHSCORES', 'LIMIT', '0', '1000')\n"
	"  drop(old)\n"
	"  redis.call('ZREMRANGEBYRANK', zkey, '0', tostring(#old / 2 - 1))\n"
	"end\n"
	"local over = redis.call('ZCARD', zkey) -\n"
	"  (ckey and " STR(STORE_RCPT_EVENTS_MAX) " or " STR(STORE_TOPIC_MESSAGES_MAX) ")\n"
	"if over > 0 then\n"
	"  drop(redis.call('ZRANGE', zkey, '0', tostring(over - 1), 'WITHSCORES'))\n"
	"  redis.call('ZREMRANGEBYRANK', zkey, '0', tostring(over - 1))\n"
	"end\n"
	"if redis.call('PTTL', zkey) < tonumber(ret) then\n"
	"  local ms = tostring(tonumber(ret) + " STR(STORE_EXPIRY_SLACK_MS) ")\n"
	"  redis.call('PEXPIRE', zkey, ms)\n"
	"  if ckey then redis.call('PEXPIRE', ckey, ms) end\n"
	"end\n"
	"return added\n";

/* A topic reference of the compact members (member.h) and its ARN: what
 * {prefix}topics holds, as far as this process has written or read it. */
struct topic_entry {
	char ref[MEMBER_TOPIC_REF_LEN + 1];
	char *arn; /* JSON text between the quotes; owned */
	size_t arn_len;
	int64_t written_ms; /* when this process last wrote it; 0: never */
};

struct store {
	struct rcluster *rc;
	bool cluster;
	struct groupcommit *group; /* every batch goes through it */
	char *prefix;
	char recent_key[160]; /* {prefix}recent */
	char topics_key[160]; /* {prefix}topics */
	pthread_mutex_t topics_lock;
	struct topic_entry topics[STORE_TOPICS_MAX];
	size_t topics_next; /* the slot a new topic takes (round robin) */
	int64_t retention_ms;
	char script_sha[41]; /* put_script's SHA1, as SCRIPT LOAD answers it */
};

/* Every new connection makes sure its server has the script (it may have
 * restarted, or be another node since the last connection). */
static bool load_script(redisContext *c, void *arg, char *errbuf, size_t errsz)
{
	const struct store *st = arg;
	redisReply *r = redisCommand(c, "SCRIPT LOAD %s", put_script);
	bool ok = r && r->type == REDIS_REPLY_STRING && strcmp(r->str, st->script_sha) == 0;
	if (!ok)
		snprintf(errbuf, errsz, "SCRIPT LOAD: %s",
			 !r ? (c->errstr[0] ? c->errstr : "no reply")
			 : r->type == REDIS_REPLY_ERROR ? r->str : "unexpected answer");
	freeReplyObject(r);
	return ok;
}

static void count_fault(void *arg)
{
	(void)arg;
	metrics_add(METRIC_redis_errors_total, 1);
}

/* groupcommit's exec: a group of batches is one batch to rcluster, which
 * routes each command by its own key (one round trip per node). */
static enum mt_err exec_commands(void *rc, void *cmds, size_t n, char *errbuf,
				 size_t errsz)
{
	return rcluster_exec(rc, cmds, n, errbuf, errsz);
}

struct store *store_new(const struct config_redis *redis, const char *prefix,
			unsigned retention_days)
{
	struct store *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->cluster = redis->cluster;
	pthread_mutex_init(&st->topics_lock, NULL);
	st->prefix = strdup(prefix);
	if (!st->prefix)
		goto fail;
	snprintf(st->recent_key, sizeof(st->recent_key), "%srecent", prefix);
	snprintf(st->topics_key, sizeof(st->topics_key), "%stopics", prefix);
	st->retention_ms = (int64_t)retention_days * 86400 * 1000;
	unsigned char md[SHA_DIGEST_LENGTH];
	SHA1((const unsigned char *)put_script, sizeof(put_script) - 1, md);
	for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
		snprintf(st->script_sha + 2 * i, 3, "%02x", md[i]);
	struct rcluster_opts o = {
		.redis = redis,
		.pool_max = STORE_POOL_MAX,
		.connect_timeout_ms = STORE_CONNECT_TIMEOUT_MS,
		.command_timeout_ms = STORE_COMMAND_TIMEOUT_MS,
		.on_connect = load_script,
		.on_fault = count_fault,
		.arg = st,
	};
	st->rc = rcluster_new(&o);
	if (!st->rc)
		goto fail;
	st->group = groupcommit_new(sizeof(struct rcluster_cmd), STORE_GROUP_COMMANDS_MAX,
				    STORE_GROUP_RUNNING_MAX, STORE_COMMAND_TIMEOUT_MS,
				    exec_commands, st->rc);
	if (!st->group)
		goto fail;
	return st;
fail:
	store_free(st);
	return NULL;
}

void store_free(struct store *st)
{
	if (!st)
		return;
	groupcommit_free(st->group);
	rcluster_free(st->rc);
	for (size_t i = 0; i < STORE_TOPICS_MAX; i++)
		free(st->topics[i].arn);
	pthread_mutex_destroy(&st->topics_lock);
	free(st->prefix);
	free(st);
}

/* Key "{prefix}kind:{name}" into a malloc'd string (caller frees). */
static char *make_key(const struct store *st, const char *kind, const char *name)
{
	size_t lp = strlen(st->prefix), lk = strlen(kind), ln = strlen(name);
	char *k = malloc(lp + lk + ln + 4);
	if (!k)
		return NULL;
	char *o = k;
	memcpy(o, st->prefix, lp);
	o += lp;
	memcpy(o, kind, lk);
	o += lk;
	*o++ = ':';
	*o++ = '{';
	memcpy(o, name, ln);
	o += ln;
	*o++ = '}';
	*o = '\0';
	return k;
}

/* The hash tag that stands for an address whose own tag Redis would read
 * as empty, "sha256:" and 64 hex digits. */
#define DIGEST_TAG_LEN (7 + 2 * SHA256_DIGEST_LENGTH)

/* Whether Redis Cluster would put "{prefix}kind:{<address>}" keys of one
 * address in different slots.  Redis hashes what lies between a key's
 * first '{' and the first '}' after it, or the whole key when that is
 * empty.  The first '{' is the one before the address (a prefix with a
 * brace is the operator's own tag), so the tag is the address up to its
 * first '}': the same for every kind unless the address begins with '}'
 * (valid in a local part, "}x@example.com"), when the tag is empty and
 * each key hashes whole. */
static bool address_tag_empty(const char *address)
{
	return address[0] == '}';
}

/* The key of one recipient's data of this kind, into a malloc'd string
 * (caller frees).  "{prefix}kind:{<address>}", the layout of SPEC.md,
 * for every address whose tag holds (address_tag_empty); otherwise
 * "{prefix}kind:{sha256:<hex of the address>}<address>": the digest is
 * the tag (same for every kind, no brace in it), and the address after
 * it keeps the key findable with SCAN.  No key of one form is a key of
 * the other: the first form ends with '}', the second with the address's
 * last character, which is in its domain (never a brace). */
static char *recipient_key(const struct store *st, const char *kind, const char *address)
{
	if (!address_tag_empty(address))
		return make_key(st, kind, address);
	unsigned char md[SHA256_DIGEST_LENGTH];
	char tag[DIGEST_TAG_LEN + 1] = "sha256:";
	SHA256((const unsigned char *)address, strlen(address), md);
	for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
		snprintf(tag + 7 + 2 * i, 3, "%02x", md[i]);
	size_t lp = strlen(st->prefix), lk = strlen(kind), la = strlen(address);
	size_t n = lp + lk + DIGEST_TAG_LEN + la + 4;
	char *k = malloc(n);
	if (k)
		snprintf(k, n, "%s%s:{%s}%s", st->prefix, kind, tag, address);
	return k;
}

/* Decimal digits of v into buf (at least 21 bytes), NUL-terminated;
 * returns the length. */
static size_t format_i64(char *buf, int64_t v)
{
	char tmp[20];
	size_t n = 0, len = 0;
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		buf[len++] = '-';
	while (n)
		buf[len++] = tmp[--n];
	buf[len] = '\0';
	return len;
}

static bool reply_ok(const redisReply *r, int type, char *errbuf, size_t errsz)
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

/* Whether a write's answer is an error that trying again does not cure
 * (the drainer sets such a record aside, spool.h): an error reply whose
 * code is not one of a state that passes.  Those are: loading, busy with
 * a script or killed one, a slot moving or the cluster down, a failover
 * (READONLY, MASTERDOWN, NOREPLICAS), out of memory (OOM: eviction or
 * expiry frees room), persistence failing (MISCONF), the script not
 * loaded (NOSCRIPT: the next connection loads it), and authentication or
 * ACL (NOAUTH, WRONGPASS, NOPERM: the operator's fix).  Every other code
 * (WRONGTYPE, CROSSSLOT, a script error "ERR ...") is refused: the same
 * write on the same data gets the same answer.  No reply at all (a
 * connection lost, a timeout) is an outage, never refused. */
static bool reply_refused(const redisReply *r)
{
	static const char *const passing[] = {
		"LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MOVED", "ASK", "READONLY",
		"MASTERDOWN", "NOREPLICAS", "OOM", "MISCONF", "NOSCRIPT", "NOAUTH",
		"WRONGPASS", "NOPERM",
	};
	if (!r || r->type != REDIS_REPLY_ERROR || !r->str)
		return false;
	size_t n = strcspn(r->str, " ");
	for (size_t i = 0; i < sizeof(passing) / sizeof(passing[0]); i++)
		if (strlen(passing[i]) == n && memcmp(r->str, passing[i], n) == 0)
			return false;
	/* Generic errors that still pass: too many clients, a script
	 * stopped by SCRIPT KILL. */
	return strstr(r->str, "max number of clients") == NULL &&
	       strstr(r->str, "Script killed") == NULL;
}

/* Commands run together, each on the node of its key (rcluster.h): one
 * round trip per node. */
struct batch {
	struct rcluster_cmd *cmd;
	size_t n, cap;
	bool nomem; /* a command could not be added: the batch fails */
};

/* Takes raw (redisFormatCommand's, len < 0: its failure). */
static void batch_push(struct batch *b, const char *key, char *raw, int len)
{
	if (len >= 0 && !b->nomem && b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 8;
		struct rcluster_cmd *c = realloc(b->cmd, cap * sizeof(*c));
		if (c) {
			b->cmd = c;
			b->cap = cap;
		}
	}
	if (len < 0 || b->nomem || b->n == b->cap) {
		b->nomem = true;
		redisFreeCommand(raw);
		return;
	}
	b->cmd[b->n++] = (struct rcluster_cmd){key, strlen(key), raw, (size_t)len, NULL};
}

static void batch_add(struct batch *b, const char *key, int argc,
		      const char **argv, const size_t *argl)
{
	char *raw = NULL;
	int len = redisFormatCommandArgv(&raw, argc, argv, argl);
	batch_push(b, key, raw, len);
}

static void batch_vaddf(struct batch *b, const char *key, const char *fmt, va_list ap)
{
	char *raw = NULL;
	int len = redisvFormatCommand(&raw, fmt, ap);
	batch_push(b, key, raw, len);
}

static void batch_addf(struct batch *b, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void batch_addf(struct batch *b, const char *key, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	batch_vaddf(b, key, fmt, ap);
	va_end(ap);
}

static enum mt_err batch_run(struct store *st, struct batch *b, char *errbuf,
			     size_t errsz)
{
	if (b->nomem) {
		snprintf(errbuf, errsz, "cannot queue a command (out of memory)");
		return MT_E_NOMEM;
	}
	/* Batches of concurrent requests share a round trip (groupcommit.h). */
	return groupcommit_run(st->group, b->cmd, b->n, errbuf, errsz);
}

static void batch_free(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		redisFreeCommand((char *)b->cmd[i].raw);
		freeReplyObject(b->cmd[i].reply);
	}
	free(b->cmd);
	memset(b, 0, sizeof(*b));
}

/* One command; its answer when it is not an error (caller frees), else
 * NULL with errbuf saying why. */
static redisReply *command(struct store *st, const char *key, char *errbuf,
			   size_t errsz, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static redisReply *command(struct store *st, const char *key, char *errbuf,
			   size_t errsz, const char *fmt, ...)
{
	struct batch b = {0};
	redisReply *r = NULL;
	va_list ap;
	va_start(ap, fmt);
	batch_vaddf(&b, key, fmt, ap);
	va_end(ap);
	if (batch_run(st, &b, errbuf, errsz) == MT_E_OK) {
		if (reply_ok(b.cmd[0].reply, -1, errbuf, errsz)) {
			r = b.cmd[0].reply;
			b.cmd[0].reply = NULL;
		} else {
			count_fault(NULL);
		}
	}
	batch_free(&b);
	return r;
}

struct put {
	const char *key;
	const char *counts_key; /* NULL: no counts */
	const char *type, *suppress; /* for the counts; may be NULL */
	int64_t score;
	const char *member;
	size_t member_len;
	struct store_item *item; /* whose write it is */
	const char *recipient; /* an event's (normalised) address; NULL: no event */
	const struct member_compact *compact; /* an event's member; NULL: none */
};

/* The ARN of topic reference ref into *arn (a malloc'd copy, caller
 * frees; NULL when not known here; arn NULL: not wanted), and when this
 * process last wrote it. */
static void topic_find(struct store *st, const char *ref, char **arn, size_t *arn_len,
		       int64_t *written_ms)
{
	if (arn)
		*arn = NULL;
	*arn_len = 0;
	*written_ms = 0;
	pthread_mutex_lock(&st->topics_lock);
	for (size_t i = 0; i < STORE_TOPICS_MAX; i++) {
		const struct topic_entry *t = &st->topics[i];
		if (t->arn && strcmp(t->ref, ref) == 0) {
			if (arn)
				*arn = malloc(t->arn_len + 1);
			if (arn && *arn) {
				memcpy(*arn, t->arn, t->arn_len);
				(*arn)[t->arn_len] = '\0';
				*arn_len = t->arn_len;
			}
			*written_ms = t->written_ms;
			break;
		}
	}
	pthread_mutex_unlock(&st->topics_lock);
}

/* Remembers ref -> arn (written_ms 0: read, not written), in its slot or
 * the round robin's next one. */
static void topic_remember(struct store *st, const char *ref, const char *arn,
			   size_t arn_len, int64_t written_ms)
{
	char *copy = malloc(arn_len + 1);
	if (!copy)
		return;
	memcpy(copy, arn, arn_len);
	copy[arn_len] = '\0';
	pthread_mutex_lock(&st->topics_lock);
	struct topic_entry *t = NULL;
	for (size_t i = 0; i < STORE_TOPICS_MAX && !t; i++)
		if (st->topics[i].arn && strcmp(st->topics[i].ref, ref) == 0)
			t = &st->topics[i];
	if (!t) {
		t = &st->topics[st->topics_next];
		st->topics_next = (st->topics_next + 1) % STORE_TOPICS_MAX;
		t->written_ms = 0;
	}
	free(t->arn);
	memcpy(t->ref, ref, sizeof(t->ref));
	t->arn = copy;
	t->arn_len = arn_len;
	if (written_ms > t->written_ms)
		t->written_ms = written_ms;
	pthread_mutex_unlock(&st->topics_lock);
}

/* The HSETNX {prefix}topics that the compact members of these puts need:
 * each topic once, when this process has not written it for
 * STORE_TOPIC_RENEW_MS (so a registry deleted by hand comes back).  They
 * go first in the batch, so a reader never finds a member whose topic is
 * not there yet (single server; in a Cluster the registry's node may
 * answer a moment later).  Returns how many were added; regs[i] is the
 * put whose topic command i writes. */
static size_t add_topics(struct store *st, const struct put *puts, size_t n, int64_t now_ms,
			 struct batch *b, size_t *regs)
{
	size_t nreg = 0;
	for (size_t i = 0; i < n; i++) {
		const struct member_compact *c = puts[i].compact;
		if (!c || !c->topic_ref[0])
			continue;
		bool dup = false;
		for (size_t k = 0; k < nreg && !dup; k++)
			dup = strcmp(puts[regs[k]].compact->topic_ref, c->topic_ref) == 0;
		size_t arn_len;
		int64_t written;
		topic_find(st, c->topic_ref, NULL, &arn_len, &written);
		if (dup || (written && now_ms - written < STORE_TOPIC_RENEW_MS))
			continue;
		const char *argv[] = {"HSETNX", st->topics_key, c->topic_ref, c->arn};
		const size_t argl[] = {6, strlen(st->topics_key), MEMBER_TOPIC_REF_LEN, c->arn_len};
		batch_add(b, st->topics_key, 4, argv, argl);
		regs[nreg++] = i;
	}
	return nreg;
}

/* The bytes that begin every member stored for one SNS message
 * ('{"id":"<MessageId>"' and the character after it); 0 when the member
 * does not begin with an id (then only identical bytes are a duplicate). */
static size_t message_prefix_len(const char *m, size_t len)
{
	static const char head[] = "{\"id\":\"";
	size_t i = sizeof(head) - 1;
	if (len < i || memcmp(m, head, i) != 0)
		return 0;
	for (; i < len; i++) {
		if (m[i] == '\\')
			i++;
		else if (m[i] == '"')
			return i + 2 <= len ? i + 2 : 0;
	}
	return 0;
}

/* An item fails with the first error among its writes. */
static void item_fail(struct store_item *it, enum mt_err err, const char *why)
{
	if (it->err != MT_E_OK)
		return;
	it->err = err;
	snprintf(it->errbuf, it->errsz, "%s", why);
}

/* The recent feed holds no copy of an event but a reference to it,
 * "<address> <message prefix>" at the event's score: the event is the
 * member of that address's set at that score which begins with that
 * prefix (the redelivery rule of put_script).  A reference is a tenth of
 * the EVENT's bytes, it does not depend on the script's answer (a
 * redelivery's is the same bytes whatever EVENT bytes this copy builds),
 * so the feed is written in the same round trip as the events, with one
 * ZADD and one trim for all of them.  Entries written before references
 * are EVENT JSON (they begin with {"; an address never holds a '"'). */
static void add_recent(struct store *st, const struct put *puts, size_t n,
		       struct batch *b)
{
	const char *rk = st->recent_key;
	size_t ne = 0, argc = 2;
	for (size_t i = 0; i < n; i++)
		ne += puts[i].recipient != NULL;
	if (ne == 0)
		return;
	const char **argv = calloc(2 + 2 * ne, sizeof(*argv));
	size_t *argl = calloc(2 + 2 * ne, sizeof(*argl));
	char *scores = calloc(ne, 24);
	char **refs = calloc(ne, sizeof(*refs));
	if (!argv || !argl || !scores || !refs)
		goto nomem;
	argv[0] = "ZADD";
	argl[0] = 4;
	argv[1] = rk;
	argl[1] = strlen(rk);
	for (size_t i = 0, k = 0; i < n; i++) {
		const struct put *p = &puts[i];
		if (!p->recipient)
			continue;
		size_t alen = strlen(p->recipient);
		size_t plen = message_prefix_len(p->member, p->member_len);
		if (plen == 0) /* no id: the whole member is its prefix */
			plen = p->member_len;
		refs[k] = malloc(alen + 1 + plen);
		if (!refs[k])
			goto nomem;
		memcpy(refs[k], p->recipient, alen);
		refs[k][alen] = ' ';
		memcpy(refs[k] + alen + 1, p->member, plen);
		argv[argc] = scores + 24 * k;
		argl[argc++] = format_i64(scores + 24 * k, p->score);
		argv[argc] = refs[k];
		argl[argc++] = alen + 1 + plen;
		k++;
	}
	batch_add(b, rk, (int)argc, argv, argl);
	batch_addf(b, rk, "ZREMRANGEBYRANK %s 0 %d", rk, -STORE_RECENT_MAX - 1);
	goto out;
nomem:
	b->nomem = true;
out:
	for (size_t k = 0; refs && k < ne; k++)
		free(refs[k]);
	free(refs);
	free(scores);
	free(argl);
	free(argv);
}

/* Runs the script for each put and writes the events' recent feed: one
 * round trip with one server, one per node in a Cluster.  Each put's
 * answer goes to its item. */
static void run_puts(struct store *st, struct put *puts, size_t n)
{
	struct batch b = {0};
	char ret[32], err[256] = "";

	char now[32];
	int64_t now_ms = mt_time_now_ms();
	format_i64(ret, st->retention_ms);
	size_t now_len = format_i64(now, now_ms);
	size_t *regs = calloc(n + 1, sizeof(*regs));
	if (!regs) {
		for (size_t i = 0; i < n; i++)
			item_fail(puts[i].item, MT_E_NOMEM, "out of memory");
		return;
	}
	size_t nreg = add_topics(st, puts, n, now_ms, &b, regs);
	for (size_t i = 0; i < n; i++) {
		char score[32], cutoff[32];
		int64_t end = puts[i].score < now_ms ? puts[i].score : now_ms;
		format_i64(score, puts[i].score);
		cutoff[0] = '(';
		format_i64(cutoff + 1, end - st->retention_ms);
		const char *argv[13] = {"EVALSHA", st->script_sha, "1", puts[i].key};
		size_t argl[13] = {7, 40, 1, strlen(puts[i].key)};
		int argc = 4;
		if (puts[i].counts_key) {
			argv[2] = "2";
			argv[argc] = puts[i].counts_key;
			argl[argc++] = strlen(puts[i].counts_key);
		}
		const char *type = puts[i].type ? puts[i].type : "";
		const char *why = puts[i].suppress ? puts[i].suppress : "";
		const char *args[] = {score, puts[i].member, ret, type, why,
				      puts[i].member, cutoff, now};
		const size_t lens[] = {strlen(score), puts[i].member_len, strlen(ret),
				       strlen(type), strlen(why),
				       message_prefix_len(puts[i].member, puts[i].member_len),
				       strlen(cutoff), now_len};
		for (int a = 0; a < 8; a++) {
			argv[argc] = args[a];
			argl[argc++] = lens[a];
		}
		batch_add(&b, puts[i].key, argc, argv, argl);
	}
	add_recent(st, puts, n, &b);
	enum mt_err e = batch_run(st, &b, err, sizeof(err));
	if (e != MT_E_OK) {
		for (size_t i = 0; i < n; i++)
			item_fail(puts[i].item, e, err);
		batch_free(&b);
		free(regs);
		return;
	}
	/* A topic not written fails every event of the batch (delivered
	 * again, they are duplicates, and the topic is written then). */
	for (size_t c = 0; c < nreg; c++) {
		const redisReply *r = b.cmd[c].reply;
		if (!reply_ok(r, REDIS_REPLY_INTEGER, err, sizeof(err))) {
			count_fault(NULL);
			for (size_t i = 0; i < n; i++)
				if (puts[i].recipient)
					item_fail(puts[i].item,
						  reply_refused(r) ? MT_E_REDIS_REFUSED : MT_E_REDIS, err);
		} else {
			const struct member_compact *mc = puts[regs[c]].compact;
			topic_remember(st, mc->topic_ref, mc->arn, mc->arn_len, now_ms);
		}
	}
	free(regs);
	for (size_t i = 0; i < n; i++) {
		const redisReply *r = b.cmd[nreg + i].reply;
		if (!reply_ok(r, -1, err, sizeof(err))) {
			count_fault(NULL);
			item_fail(puts[i].item, reply_refused(r) ? MT_E_REDIS_REFUSED : MT_E_REDIS, err);
		} else if (r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
			puts[i].item->added++;
			if (puts[i].counts_key) /* an event, not a raw message */
				metrics_count_event(puts[i].type);
		}
	}
	/* The feed is one key: when it fails, every item that wrote to it
	 * fails (and is delivered again: the events are not doubled). */
	for (size_t c = nreg + n; c < b.n; c++) {
		if (reply_ok(b.cmd[c].reply, -1, err, sizeof(err)))
			continue;
		count_fault(NULL);
		for (size_t i = 0; i < n; i++)
			if (puts[i].recipient)
				item_fail(puts[i].item,
					  reply_refused(b.cmd[c].reply) ? MT_E_REDIS_REFUSED
									: MT_E_REDIS,
					  err);
		break;
	}
	batch_free(&b);
}

void store_put_many(struct store *st, struct store_item *const *items, size_t n)
{
	size_t nputs = 0, k = 0;
	for (size_t i = 0; i < n; i++) {
		items[i]->err = MT_E_OK;
		items[i]->added = 0;
		nputs += (items[i]->evs ? items[i]->evs->n : 0) + (items[i]->raw_topic != NULL);
	}
	if (nputs == 0)
		return;
	struct put *puts = calloc(nputs, sizeof(*puts));
	char **keys = calloc(2 * nputs, sizeof(*keys));
	struct member_compact *members = calloc(nputs, sizeof(*members));
	if (!puts || !keys || !members) {
		for (size_t i = 0; i < n; i++)
			item_fail(items[i], MT_E_NOMEM, "out of memory");
		goto out;
	}
	bool nomem = false;
	for (size_t i = 0; i < n; i++) {
		struct store_item *it = items[i];
		for (size_t j = 0; it->evs && j < it->evs->n; j++, k++) {
			const struct ses_event *e = &it->evs->v[j];
			keys[2 * k] = recipient_key(st, "rcpt", e->recipient);
			keys[2 * k + 1] = recipient_key(st, "counts", e->recipient);
			nomem |= !keys[2 * k] || !keys[2 * k + 1];
			/* What the set stores: the compact member (member.h). */
			nomem |= member_from_event(e->json, e->json_len, e->time_ms,
						   &members[k]) != MT_E_OK;
			puts[k] = (struct put){keys[2 * k], keys[2 * k + 1], e->type,
					       e->suppress, e->time_ms, members[k].member,
					       members[k].len, it, e->recipient, &members[k]};
		}
		if (it->raw_topic) {
			keys[2 * k] = make_key(st, "topic", it->raw_topic);
			nomem |= !keys[2 * k];
			puts[k] = (struct put){keys[2 * k], NULL, NULL, NULL, it->raw_time_ms,
					       it->raw_json, it->raw_len, it, NULL, NULL};
			k++;
		}
	}
	if (nomem) {
		for (size_t i = 0; i < n; i++)
			item_fail(items[i], MT_E_NOMEM, "out of memory");
		goto out;
	}
	run_puts(st, puts, k);
out:
	for (size_t i = 0; keys && i < 2 * k; i++)
		free(keys[i]);
	for (size_t i = 0; members && i < k; i++)
		free(members[i].member);
	free(members);
	free(keys);
	free(puts);
}

enum mt_err store_ping(struct store *st, char *errbuf, size_t errsz)
{
	/* In a cluster: the node of the recent feed, which every delivery
	 * writes. */
	redisReply *r = command(st, st->recent_key, errbuf, errsz, "PING");
	bool ok = reply_ok(r, REDIS_REPLY_STATUS, errbuf, errsz);
	freeReplyObject(r);
	return ok ? MT_E_OK : MT_E_REDIS;
}

enum mt_err store_check_encoding(struct store *st, struct store_encoding *out, char *errbuf,
				 size_t errsz)
{
	static const char *const names[] = {"zset-max-*-entries", "zset-max-*-value",
					    "hash-max-*-entries", "hash-max-*-value"};
	long long *vals[] = {&out->zset_entries, &out->zset_value, &out->hash_entries,
			     &out->hash_value};
	for (size_t i = 0; i < 4; i++) {
		*vals[i] = -1;
		/* Redis 7 names them *-listpack-*, 6 *-ziplist-* (7 answers
		 * both): the first pair with a number is the value. */
		redisReply *r = command(st, st->recent_key, errbuf, errsz, "CONFIG GET %s", names[i]);
		if (!r)
			return MT_E_REDIS;
		for (size_t k = 1; r->type == REDIS_REPLY_ARRAY && k < r->elements && *vals[i] < 0;
		     k += 2) {
			const redisReply *v = r->element[k];
			char *end;
			long long n = v->type == REDIS_REPLY_STRING ? strtoll(v->str, &end, 10) : -1;
			if (v->type == REDIS_REPLY_STRING && end != v->str && *end == '\0' && n >= 0)
				*vals[i] = n;
		}
		freeReplyObject(r);
	}
	out->skiplists = (out->zset_value >= 0 && out->zset_value < STORE_MEMBER_TYPICAL_MAX) ||
			 (out->zset_entries >= 0 && out->zset_entries < STORE_SET_TYPICAL_ENTRIES) ||
			 (out->hash_value >= 0 && out->hash_value < STORE_COUNTS_FIELD_MAX) ||
			 (out->hash_entries >= 0 && out->hash_entries < STORE_SET_TYPICAL_ENTRIES);
	return MT_E_OK;
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

/* The ARN that a compact member's topic reference stands for (a malloc'd
 * copy, caller frees), from memory or else from {prefix}topics; NULL when
 * unknown (or on a failure: the event is shown with "topicArn":null). */
static char *topic_arn(struct store *st, const char *ref, size_t *len)
{
	char *arn, err[128];
	int64_t written;
	topic_find(st, ref, &arn, len, &written);
	if (arn)
		return arn;
	redisReply *r = command(st, st->topics_key, err, sizeof(err), "HGET %s %s",
				st->topics_key, ref);
	if (r && r->type == REDIS_REPLY_STRING) {
		topic_remember(st, ref, r->str, r->len, 0);
		arn = malloc(r->len + 1);
		if (arn) {
			memcpy(arn, r->str, r->len);
			arn[r->len] = '\0';
			*len = r->len;
		}
	}
	freeReplyObject(r);
	return arn;
}

/* The EVENT in a member of recipient's set at score (member.h rebuilds
 * a compact one), when it parses and (with type) is of that type.
 * Returns a new json-c object (caller puts it) or NULL. */
static struct json_object *event_if_matches(struct store *st, const redisReply *member,
					    const char *recipient, int64_t score,
					    const char *type)
{
	if (!member || member->type != REDIS_REPLY_STRING)
		return NULL;
	char ref[MEMBER_TOPIC_REF_LEN + 1];
	size_t arn_len = 0;
	char *arn = member_find_topic_ref(member->str, member->len, ref)
			    ? topic_arn(st, ref, &arn_len) : NULL;
	struct buf text = {0};
	enum mt_err err = member_to_event(member->str, member->len, recipient, score, arn,
					  arn_len, &text);
	free(arn);
	struct json_object *ev = err == MT_E_OK ? json_tokener_parse(text.p) : NULL;
	buf_free(&text);
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

/* The recent feed's entries as EVENT members (add_recent): an old entry
 * is its own EVENT, a reference is looked up in its recipient's set (one
 * round trip for all, one lookup for the references of one recipient and
 * millisecond).  ev[i] is entry i's EVENT member, borrowed from the entry
 * or from look's answers, or NULL when that event is no longer stored
 * (trimmed or expired with its recipient's set). */
struct feed_events {
	const redisReply **ev;
	struct batch look;
	char **keys; /* the lookups' keys (batch commands borrow them) */
	size_t nkeys;
};

static void feed_events_free(struct feed_events *fe)
{
	for (size_t i = 0; i < fe->nkeys; i++)
		free(fe->keys[i]);
	free(fe->keys);
	free(fe->ev);
	batch_free(&fe->look);
	memset(fe, 0, sizeof(*fe));
}

/* The address part of a reference (its length), 0 for an EVENT entry or
 * a malformed one. */
static size_t reference_address_len(const redisReply *m)
{
	if (!m || m->type != REDIS_REPLY_STRING || (m->len >= 2 && memcmp(m->str, "{\"", 2) == 0))
		return 0;
	const char *sp = memchr(m->str, ' ', m->len);
	size_t n = sp ? (size_t)(sp - m->str) : 0;
	return n <= SES_ADDRESS_MAX ? n : 0;
}

/* Entries are r's elements (with their scores after each when
 * withscores, else all at score); refs: they are the feed's (else every
 * entry is its own EVENT). */
static enum mt_err feed_resolve(struct store *st, const redisReply *r, bool withscores,
				int64_t score, bool refs, struct feed_events *fe,
				char *errbuf, size_t errsz)
{
	size_t step = withscores ? 2 : 1;
	size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements / step : 0;
	size_t *lookup = calloc(n + 1, sizeof(*lookup)); /* entry -> command */
	int64_t prev_score = 0;
	const redisReply *prev = NULL;
	enum mt_err err = MT_E_NOMEM;

	memset(fe, 0, sizeof(*fe));
	fe->ev = calloc(n + 1, sizeof(const redisReply *));
	fe->keys = calloc(n + 1, sizeof(*fe->keys));
	if (!lookup || !fe->ev || !fe->keys)
		goto out;
	for (size_t i = 0; i < n; i++) {
		const redisReply *m = r->element[step * i];
		size_t alen = refs ? reference_address_len(m) : 0;
		lookup[i] = SIZE_MAX;
		if (withscores && !parse_score(r->element[step * i + 1], &score))
			continue;
		if (alen == 0) {
			fe->ev[i] = m;
			continue;
		}
		if (prev && prev_score == score && reference_address_len(prev) == alen &&
		    memcmp(prev->str, m->str, alen) == 0) {
			lookup[i] = fe->look.n - 1;
			continue;
		}
		char addr[SES_ADDRESS_MAX + 1];
		memcpy(addr, m->str, alen);
		addr[alen] = '\0';
		char *key = recipient_key(st, "rcpt", addr);
		if (!key)
			goto out;
		fe->keys[fe->nkeys++] = key;
		lookup[i] = fe->look.n;
		batch_addf(&fe->look, key, "ZRANGEBYSCORE %s %lld %lld", key, (long long)score,
			   (long long)score);
		prev = m;
		prev_score = score;
	}
	err = fe->look.n ? batch_run(st, &fe->look, errbuf, errsz) : MT_E_OK;
	for (size_t c = 0; err == MT_E_OK && c < fe->look.n; c++) {
		if (!reply_ok(fe->look.cmd[c].reply, REDIS_REPLY_ARRAY, errbuf, errsz)) {
			count_fault(NULL);
			err = MT_E_REDIS;
		}
	}
	for (size_t i = 0; err == MT_E_OK && i < n; i++) {
		if (lookup[i] == SIZE_MAX)
			continue;
		const redisReply *m = r->element[step * i];
		size_t skip = reference_address_len(m) + 1, plen = m->len - skip;
		const redisReply *a = fe->look.cmd[lookup[i]].reply;
		for (size_t j = 0; j < a->elements; j++) {
			const redisReply *e = a->element[j];
			if (e->type == REDIS_REPLY_STRING && e->len >= plen &&
			    memcmp(e->str, m->str + skip, plen) == 0) {
				fe->ev[i] = e;
				break;
			}
		}
	}
out:
	free(lookup);
	return err;
}

struct query_ctx {
	const char *key;
	const char *address; /* the recipient's; NULL for the feed */
	bool feed; /* the recent feed: entries are references */
	const struct store_query *q;
	struct store_page *page;
};

struct match {
	struct json_object *ev;
	int64_t score;
};

/* The recipient of an entry: the query's, or a feed reference's address
 * (copied into buf); "" for an entry that is its own EVENT. */
static const char *entry_recipient(const struct query_ctx *qc, const redisReply *entry,
				   char buf[SES_ADDRESS_MAX + 1])
{
	if (!qc->feed)
		return qc->address;
	size_t n = reference_address_len(entry);
	memcpy(buf, n ? entry->str : "", n);
	buf[n] = '\0';
	return buf;
}

/* Scans newest first from the query's bounds until limit matches are found
 * (or STORE_SCAN_MAX entries examined).  The score of the first entry not
 * examined is the boundary: matches with that score are left for the next
 * page (whose cursor then includes it), so a page never splits one
 * millisecond's events between two pages.  Only when a whole page shares
 * the boundary score is that millisecond returned in one go. */
static enum mt_err query_page(struct store *st, struct query_ctx *qc,
			      char *errbuf, size_t errsz)
{
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
		r = command(st, qc->key, errbuf, errsz,
			    "ZREVRANGEBYSCORE %s %s %s WITHSCORES LIMIT %llu %llu",
			    qc->key, max, min, (unsigned long long)offset,
			    (unsigned long long)batch);
		if (!r) {
			err = MT_E_REDIS;
			goto out;
		}
		size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements / 2 : 0;
		struct feed_events fe;
		err = feed_resolve(st, r, true, 0, qc->feed, &fe, errbuf, errsz);
		for (size_t i = 0; err == MT_E_OK && i < n; i++) {
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
			char addr[SES_ADDRESS_MAX + 1];
			struct json_object *ev = event_if_matches(
				st, fe.ev[i], entry_recipient(qc, r->element[2 * i], addr), score,
				q->type);
			if (ev)
				m[nm++] = (struct match){ev, score};
		}
		feed_events_free(&fe);
		freeReplyObject(r);
		r = NULL;
		if (err != MT_E_OK)
			goto out;
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
			r = command(st, qc->key, errbuf, errsz,
				    "ZREVRANGEBYSCORE %s %lld %lld LIMIT 0 %d", qc->key,
				    (long long)boundary, (long long)boundary, STORE_GROUP_MAX);
			if (!r) {
				err = MT_E_REDIS;
				goto out;
			}
			struct feed_events fe;
			err = feed_resolve(st, r, false, boundary, qc->feed, &fe, errbuf, errsz);
			for (size_t i = 0; err == MT_E_OK && i < r->elements; i++) {
				char addr[SES_ADDRESS_MAX + 1];
				struct json_object *ev = event_if_matches(
					st, fe.ev[i], entry_recipient(qc, r->element[i], addr),
					boundary, q->type);
				if (ev)
					json_object_array_add(page->events, ev);
			}
			feed_events_free(&fe);
			freeReplyObject(r);
			if (err != MT_E_OK)
				goto out;
			r = command(st, qc->key, errbuf, errsz,
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

/* The keys to read for one recipient, into *rcpt and (counts non-NULL)
 * *counts (caller frees both, also on failure): recipient_key's names,
 * or, for an address with an empty tag that has nothing under its new
 * name yet, the names mailtrail used for it before ("{prefix}kind:{<
 * address>}"), which a single Redis server took (a Cluster refused them
 * with CROSSSLOT).  Such old keys expire with the retention period. */
static enum mt_err recipient_read_keys(struct store *st, const char *address, char **rcpt,
				       char **counts, char *errbuf, size_t errsz)
{
	*rcpt = recipient_key(st, "rcpt", address);
	if (counts)
		*counts = recipient_key(st, "counts", address);
	if (!*rcpt || (counts && !*counts))
		return MT_E_NOMEM;
	if (!address_tag_empty(address))
		return MT_E_OK;
	redisReply *r = command(st, *rcpt, errbuf, errsz, "EXISTS %s", *rcpt);
	if (!r)
		return MT_E_REDIS;
	bool fresh = r->type == REDIS_REPLY_INTEGER && r->integer == 0;
	freeReplyObject(r);
	if (!fresh)
		return MT_E_OK;
	free(*rcpt);
	*rcpt = make_key(st, "rcpt", address);
	if (counts) {
		free(*counts);
		*counts = make_key(st, "counts", address);
	}
	return !*rcpt || (counts && !*counts) ? MT_E_NOMEM : MT_E_OK;
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
		enum mt_err err = recipient_read_keys(st, address, &key, NULL, errbuf, errsz);
		if (err != MT_E_OK) {
			free(key);
			return err;
		}
	} else {
		snprintf(recent, sizeof(recent), "%srecent", st->prefix);
	}
	struct query_ctx qc = {key ? key : recent, address, !key, q, out};
	enum mt_err err = query_page(st, &qc, errbuf, errsz);
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
	const char *key, *counts_key, *address;
	struct store_summary *sum;
};

static enum mt_err summary(struct store *st, struct summary_ctx *sc,
			   char *errbuf, size_t errsz)
{
	struct store_summary *sum = sc->sum;
	int64_t last_bounce = -1, last_complaint = -1;
	long long n_bounce = 0, n_complaint = 0;

	sum->counts = json_object_new_object();
	if (!sum->counts)
		return MT_E_NOMEM;
	redisReply *r = command(st, sc->counts_key, errbuf, errsz, "HGETALL %s", sc->counts_key);
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

	r = command(st, sc->key, errbuf, errsz, "ZREVRANGE %s 0 0 WITHSCORES", sc->key);
	if (!r)
		return MT_E_REDIS;
	int64_t score;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && parse_score(r->element[1], &score))
		sum->last_event = event_if_matches(st, r->element[0], sc->address, score, NULL);
	freeReplyObject(r);
	return MT_E_OK;
}

enum mt_err store_recipient_summary(struct store *st, const char *address,
				    struct store_summary *out, char *errbuf,
				    size_t errsz)
{
	char *key = NULL, *counts = NULL;

	memset(out, 0, sizeof(*out));
	enum mt_err err = recipient_read_keys(st, address, &key, &counts, errbuf, errsz);
	if (err != MT_E_OK)
		goto out;
	struct summary_ctx sc = {key, counts, address, out};
	err = summary(st, &sc, errbuf, errsz);
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
