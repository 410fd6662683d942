#include "store.h"

#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evmember.h"
#include "groupcommit.h"
#include "member.h"
#include "metrics.h"
#include "mt_time.h"
#include "policy.h"
#include "rcluster.h"
#include "rediserr.h"
#include "stats.h"

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
	"local trimmed -- drop()'s lists, for type_index_script\n"
	"local function drop(list)\n"
	"  trimmed = trimmed or {}\n"
	"  trimmed[#trimmed + 1] = list\n"
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
	/* ... type_index_script, then "return added" */;

/* The deliverability counters (stats.h, README "Deliverability
 * counters"): one event counted in one dimension-day.  The caller has set
 * h (the day's hash), nk (its :names set), name, fh and fd (the hourly
 * and the daily field, "<name>|<HH>|<type>" and "<name>|*|<type>"), cap
 * and exp.  An event costs the two HINCRBYs; only the first of its name
 * and type that day (its daily field was 1) looks at :names (ZSCORE): a
 * new name is listed (score 0: the set only lists names) while the set
 * holds fewer than cap names, else its field is taken back and it is
 * counted as (other) (always admitted; its fields are the name's with
 * "(other)" in front instead), and a name's first listing sets both
 * keys' expiry (PEXPIREAT exp: the same absolute time for every event of
 * the day, set after the HINCRBYs so that the hash exists).
 *
 * Cost: the keys and fields come ready-made from the caller, so the
 * common case builds no Lua string and defines no function: each Lua
 * object a script call creates is garbage that Redis's collector steps
 * through after the call.  In a micro-benchmark of the script alone that
 * was about 4 us of Redis CPU an event and dimension with a function and
 * concatenations here, against about 2.5 us without; in the ingest
 * benchmark the two were within its noise (README, Performance).
 *
 * A command that fails (only a foreign value at a stats key can make one
 * fail: WRONGTYPE) sets stats_bad instead of failing the script, whose
 * event is stored by then: the put script then answers 2 (added, not
 * counted), stats_script 0. */
#define STATS_COUNT_LUA                                                        \
	"    local new, bad = false, false\n"                                  \
	"    local d = redis.pcall('HINCRBY', h, fd, '1')\n"                   \
	"    if d == 1 then\n"                                                 \
	"      local s = redis.pcall('ZSCORE', nk, name)\n"                    \
	"      if type(s) == 'table' then\n"                                   \
	"        bad = true\n"                                                 \
	"      elseif not s then\n"                                            \
	"        if name ~= '" STATS_OTHER "' and redis.pcall('ZCARD', nk) >= cap then\n" \
	"          redis.pcall('HDEL', h, fd)\n"                               \
	"          local n = #name\n"                                          \
	"          name = '" STATS_OTHER "'\n"                                 \
	"          fh, fd = name .. string.sub(fh, n + 1), name .. string.sub(fd, n + 1)\n" \
	"          d = redis.pcall('HINCRBY', h, fd, '1')\n"                   \
	"        end\n"                                                        \
	"        local z = redis.pcall('ZADD', nk, 'NX', '0', name)\n"         \
	"        new = z == 1\n"                                               \
	"        bad = type(z) == 'table'\n"                                   \
	"      end\n"                                                          \
	"    end\n"                                                            \
	"    local a = redis.pcall('HINCRBY', h, fh, '1')\n"                   \
	"    if bad or type(d) == 'table' or type(a) == 'table' then\n"        \
	"      stats_bad = true\n"                                             \
	"    elseif new then\n"                                                \
	"      redis.pcall('PEXPIREAT', h, exp)\n"                             \
	"      redis.pcall('PEXPIREAT', nk, exp)\n"                            \
	"    end\n"

/* put_script's part that counts an added event (single Redis: in the
 * same script, so the same round trip; run_puts passes ARGV[9..] only
 * for an event that is counted).  ARGV: 9 the keys' expiry
 * (stats_expire_at), then five per dimension: hash, :names, name, hourly
 * field, daily field; the identity's, the recipient domain's, and the
 * configuration set's when there is one.  The stats keys are not
 * declared KEYS: single Redis needs no declaration, and in a Cluster
 * (other slots) run_puts never passes these arguments but runs
 * stats_script instead.  store_new puts "local plen, cap_i, cap_c, cap_d
 * = ..." before it. */
static const char stats_put_script[] =
	"local stats_bad = false\n"
	"if added == 1 and ARGV[9] then\n"
	"  local exp = ARGV[9]\n"
	"  for i = 10, #ARGV - 4, 5 do\n"
	"    local h, nk, name, fh, fd = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]\n"
	"    local cap = i == 10 and cap_i or i == 15 and cap_d or cap_c\n"
	STATS_COUNT_LUA
	"  end\n"
	"end\n";

/* In a Redis Cluster the stats keys live in other slots than the
 * recipient's (one slot per dimension-day: the hash tag {<code>:<day>}),
 * so an added event is counted by this script, once per dimension, in one
 * more round trip after the put scripts answered.  KEYS: the hash, its
 * :names.  ARGV: name, hourly field, daily field, expiry, cap. */
static const char stats_script[] =
	"local h, nk, name, fh, fd = KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3]\n"
	"local exp, cap = ARGV[4], tonumber(ARGV[5])\n"
	"local stats_bad = false\n"
	STATS_COUNT_LUA
	"return stats_bad and 0 or 1\n";

/* The suppression index's writes (store.h): KEYS[1] a bucket.  An entry
 * is a value of 1 to 18 decimal digits (as the check's decoder reads it);
 * any other value is foreign.  "put" (ARGV[2] an address, ARGV[3] its
 * entry, 32 * ms + code) raises the address's entry to ARGV[3] unless it
 * holds that much already (as ZADD GT would: only a newer event raises
 * it, a redelivery changes nothing; a foreign value is replaced); answers
 * 1 when it wrote.  "prune" (ARGV[2] an HSCAN cursor, ARGV[3] a value,
 * ARGV[4] a COUNT) removes the entries that one HSCAN step finds below
 * ARGV[3], and foreign values, and answers the next cursor. */
static const char supp_script[] =
	"if ARGV[1] == 'put' then\n"
	"  local old = redis.call('HGET', KEYS[1], ARGV[2])\n"
	"  if old and #old > 0 and #old <= 18 and not string.find(old, '%D') and\n"
	"     tonumber(old) >= tonumber(ARGV[3]) then return 0 end\n"
	"  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])\n"
	"  return 1\n"
	"end\n"
	"local r = redis.call('HSCAN', KEYS[1], ARGV[2], 'COUNT', ARGV[4])\n"
	"local f, below = r[2], tonumber(ARGV[3])\n"
	"for i = 1, #f, 2 do\n"
	"  local v = f[i + 1]\n"
	"  if #v == 0 or #v > 18 or string.find(v, '%D') or tonumber(v) < below then\n"
	"    redis.call('HDEL', KEYS[1], f[i])\n"
	"  end\n"
	"end\n"
	"return r[1]\n";

/* The message index's write (add_message_refs): KEYS[1] a mail's key,
 * ARGV[1] the cap (STORE_MESSAGE_REFS_MAX), ARGV[2] the expiry in ms,
 * then score/reference pairs.  First come, first kept: references are
 * added (ZADD NX: one already there is left as it is) only while the set
 * holds fewer than the cap; once it is full the rest are dropped, never
 * replacing earlier ones (scores are event times, which whoever gets a
 * message signed chooses: no trim by score could tell a genuine reference
 * from a forged one, but a mail's genuine events come first).  The room
 * left goes down only by what ZADD really added (chunks of at most 256
 * pairs: a Lua call takes a bounded number of arguments).  Answers the
 * positions (1 for the first pair) of the references dropped for want of
 * room: those left over that are not in the set already (a redelivery of
 * kept references drops nothing). */
static const char msg_refs_script[] =
	"local key, cap = KEYS[1], tonumber(ARGV[1])\n"
	"local room = cap - redis.call('ZCARD', key)\n"
	"local i, n, dropped = 3, #ARGV, {}\n"
	"while i < n and room > 0 do\n"
	"  local k = math.min(room, 256, math.floor((n - i + 1) / 2))\n"
	"  local a = {}\n"
	"  for j = i, i + 2 * k - 1 do a[#a + 1] = ARGV[j] end\n"
	"  room = room - redis.call('ZADD', key, 'NX', unpack(a))\n"
	"  i = i + 2 * k\n"
	"end\n"
	"for j = i + 1, n, 2 do\n"
	"  if not redis.call('ZSCORE', key, ARGV[j]) then dropped[#dropped + 1] = (j - 2) / 2 end\n"
	"end\n"
	"redis.call('PEXPIRE', key, ARGV[2])\n"
	"return dropped\n";

/* The type index of a recipient's events (store.h): put_script's part
 * that keeps it, run after everything else (its own string: ISO C limits
 * one literal to 4095 bytes; store_new() joins them, with a line "local
 * plen = <length of --redis-prefix>" between).  A recipient's index keys
 * are named after its counts key (KEYS[2]): "counts:" after the prefix
 * becomes "bytype:", and ':' and the type end it.  They are not declared
 * KEYS: they share the recipient's hash tag, so its slot, and a declared
 * key that does not exist, as an index key for nearly every recipient,
 * would make a Cluster answer TRYAGAIN while its slot migrates (a script
 * stopped half-way by such a migration leaves an index that disagrees
 * with the counts, which the reader then does not use: store.c,
 * type_index_usable).  Members are the events' message prefixes (as
 * ARGV[6]; a member without one is its own prefix), scores their scores.
 * The set's size after the trims decides: from STORE_INDEX_MIN the index
 * is built from every member (once: the counts hash's field "index" says
 * it is there), then kept with each add and trim (in that order: a member
 * out of the window is added and trimmed at once), and dropped below
 * STORE_INDEX_OFF.  A smaller set that trimmed nothing costs one
 * comparison.  The type of a trimmed member is read on its first bytes
 * ({"id":"...","type":"T"), JSON-decoded only when they are another
 * layout.  Index keys expire together with the set: whenever the set's
 * expiry has been renewed (or a new type's key appeared), every type's
 * key is set to the set's. */
static const char type_index_script[] =
	"local card = ckey and math.min(over, 0) + " STR(STORE_RCPT_EVENTS_MAX) "\n"
	"if card and (card >= " STR(STORE_INDEX_OFF) " or trimmed) then\n"
	"  local on = redis.call('HGET', ckey, 'index') == '1'\n"
	"  if on or card >= " STR(STORE_INDEX_MIN) " then\n"
	"    local base = string.sub(ckey, 1, plen) .. 'bytype:' .. string.sub(ckey, plen + 8) .. ':'\n"
	"    local ikey = base .. ARGV[4]\n"
	"    local function idp(m)\n"
	"      if string.sub(m, 1, 7) ~= '{\"id\":\"' then return m end\n"
	"      local i = 8\n"
	"      while true do\n"
	"        local j = string.find(m, '[\"\\\\]', i)\n"
	"        if not j or j == #m then return m end\n"
	"        if string.byte(m, j) == 34 then return string.sub(m, 1, j + 1) end\n"
	"        i = j + 2\n"
	"      end\n"
	"    end\n"
	"    local function mtype(m, p)\n"
	"      local t = p ~= m and string.match(m, '^\"type\":\"([^\"\\\\]*)\"', #p + 1)\n"
	"      if t then return t end\n"
	"      local ok, e = pcall(cjson.decode, m)\n"
	"      if ok and type(e) == 'table' and type(e.type) == 'string' then return e.type end\n"
	"    end\n"
	"    local function each_type(f)\n"
	"      local h = redis.call('HGETALL', ckey)\n"
	"      for i = 1, #h, 2 do\n"
	"        if string.sub(h[i], 1, 5) == 'type:' then f(base .. string.sub(h[i], 6)) end\n"
	"      end\n"
	"    end\n"
	"    local function renew(force)\n"
	"      local zt = redis.call('PTTL', zkey)\n"
	"      if zt < 0 or (not force and redis.call('PTTL', ikey) == zt) then return end\n"
	"      each_type(function(k) redis.call('PEXPIRE', k, tostring(zt)) end)\n"
	"    end\n"
	"    if on and card < " STR(STORE_INDEX_OFF) " then\n"
	"      each_type(function(k) redis.call('DEL', k) end)\n"
	"      redis.call('HDEL', ckey, 'index')\n"
	"    elseif on then\n"
	"      if added == 1 then\n"
	"        redis.call('ZADD', ikey, sc, ARGV[6] ~= '' and ARGV[6] or member)\n"
	"      end\n"
	"      for _, list in ipairs(trimmed or {}) do\n"
	"        for i = 1, #list, 2 do\n"
	"          local p = idp(list[i])\n"
	"          local t = mtype(list[i], p)\n"
	"          if t then redis.call('ZREM', base .. t, p) end\n"
	"        end\n"
	"      end\n"
	"      renew(false)\n"
	"    else\n"
	"      local all = redis.call('ZRANGE', zkey, '0', '-1', 'WITHSCORES')\n"
	"      for i = 1, #all, 2 do\n"
	"        local p = idp(all[i])\n"
	"        local t = mtype(all[i], p)\n"
	"        if t then redis.call('ZADD', base .. t, all[i + 1], p) end\n"
	"      end\n"
	"      redis.call('HSET', ckey, 'index', '1')\n"
	"      renew(true)\n"
	"    end\n"
	"  end\n"
	"end\n"
	/* 2: added, but its counting failed (STATS_COUNT_LUA). */
	"return stats_bad and 2 or added\n";

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
	bool message_index; /* store_set_message_index */
	struct groupcommit *group; /* every batch goes through it */
	char *prefix;
	char recent_key[160]; /* {prefix}recent */
	char topics_key[160]; /* {prefix}topics */
	pthread_mutex_t topics_lock;
	struct topic_entry topics[STORE_TOPICS_MAX];
	size_t topics_next; /* the slot a new topic takes (round robin) */
	int64_t retention_ms;
	unsigned retention_days;
	unsigned names_max[STATS_DIMS]; /* the counters' caps (stats.h) */
	char *script;        /* put_script, stats_put_script and type_index_script; owned */
	char script_sha[41]; /* its SHA1, as SCRIPT LOAD answers it */
	char stats_sha[41];  /* stats_script's (a Cluster's counting) */
	/* The suppression index (store.h): its bucket keys and marker. */
	char *supp_keys[STORE_SUPP_BUCKETS]; /* owned */
	char *supp_ready_key, *supp_rebuild_key; /* owned */
	char supp_sha[41]; /* supp_script's */
	char msg_refs_sha[41]; /* msg_refs_script's (the message index) */
	atomic_llong supp_pruned_ms; /* when a prune step last ran */
	/* The prune's walk: the bucket it is in, and its HSCAN cursor there
	 * (races between two steps only make one scan entries again). */
	atomic_uint supp_prune_next;
	atomic_ullong supp_prune_cursor;
	pthread_mutex_t supp_lock;   /* the rebuild thread's state */
	pthread_t supp_thread;
	bool supp_thread_started;
	atomic_bool supp_rebuilding, supp_stop;
	/* The suppression policy (policy.h; set before any use), and whether
	 * it looks past the counts hash (statuses or repeated soft bounces). */
	struct policy policy;
	bool policy_reads;
};

/* Every new connection makes sure its server has the script (it may have
 * restarted, or be another node since the last connection). */
static bool load_script(struct rconn *c, void *arg, char *errbuf, size_t errsz)
{
	struct store *st = arg;
	const char *const scripts[4] = {st->script, supp_script, msg_refs_script,
					stats_script};
	const char *const shas[4] = {st->script_sha, st->supp_sha, st->msg_refs_sha,
				     st->stats_sha};
	bool ok = true;
	/* stats_script is for a Cluster only. */
	for (size_t i = 0; ok && i < (st->cluster ? 4u : 3u); i++) {
		redisReply *r = rconn_command(c, "SCRIPT LOAD %s", scripts[i]);
		ok = r && r->type == REDIS_REPLY_STRING && strcmp(r->str, shas[i]) == 0;
		if (!ok)
			snprintf(errbuf, errsz, "SCRIPT LOAD: %s",
				 !r ? (rconn_errstr(c)[0] ? rconn_errstr(c) : "no reply")
				 : r->type == REDIS_REPLY_ERROR ? r->str : "unexpected answer");
		freeReplyObject(r);
	}
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

static bool supp_keys_new(struct store *st);
static void supp_rebuild_stop(struct store *st);

struct store *store_new(const struct config_redis *redis, const char *prefix,
			unsigned retention_days)
{
	struct store *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->cluster = redis->cluster;
	pthread_mutex_init(&st->topics_lock, NULL);
	pthread_mutex_init(&st->supp_lock, NULL);
	st->prefix = strdup(prefix);
	if (!st->prefix)
		goto fail;
	snprintf(st->recent_key, sizeof(st->recent_key), "%srecent", prefix);
	snprintf(st->topics_key, sizeof(st->topics_key), "%stopics", prefix);
	policy_default(&st->policy);
	st->policy_reads = true;
	if (!supp_keys_new(st))
		goto fail;
	st->retention_ms = (int64_t)retention_days * 86400 * 1000;
	st->retention_days = retention_days;
	for (int d = 0; d < STATS_DIMS; d++)
		st->names_max[d] = stats_names_max((enum stats_dim)d);
	/* Test only (tests/integration/test_stats.py): a smaller cap for every
	 * dimension, so the cap's path runs without a thousand names.  Not a
	 * flag: the caps are the documented ones. */
	const char *test_cap = getenv("MAILTRAIL_TEST_STATS_NAMES_MAX");
	if (test_cap) {
		char *end = NULL;
		unsigned long v = strtoul(test_cap, &end, 10);
		if (end != test_cap && *end == '\0' && v >= 1 && v <= 1000000)
			for (int d = 0; d < STATS_DIMS; d++)
				st->names_max[d] = (unsigned)v;
	}
	unsigned char md[SHA_DIGEST_LENGTH];
	/* type_index_script finds a recipient's index keys from its counts
	 * key: the prefix, "counts:" replaced with "bytype:", the rest;
	 * stats_put_script the stats keys from the prefix, and the caps. */
	char plen[160];
	int pn = snprintf(plen, sizeof(plen), "local plen, cap_i, cap_c, cap_d = %zu, %u, %u, %u\n",
			  strlen(prefix), st->names_max[STATS_DIM_IDENTITY],
			  st->names_max[STATS_DIM_CONFIGURATION_SET],
			  st->names_max[STATS_DIM_DOMAIN]);
	if (pn < 0 || (size_t)pn >= sizeof(plen))
		goto fail;
	size_t pl = (size_t)pn, at = 0;
	const char *const parts[] = {put_script, plen, stats_put_script, type_index_script};
	const size_t lens[] = {sizeof(put_script) - 1, pl, sizeof(stats_put_script) - 1,
			       sizeof(type_index_script)};
	st->script = malloc(lens[0] + lens[1] + lens[2] + lens[3]);
	if (!st->script)
		goto fail;
	for (size_t i = 0; i < 4; i++) {
		memcpy(st->script + at, parts[i], lens[i]);
		at += lens[i];
	}
	SHA1((const unsigned char *)st->script, strlen(st->script), md);
	for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
		snprintf(st->script_sha + 2 * i, 3, "%02x", md[i]);
	SHA1((const unsigned char *)stats_script, strlen(stats_script), md);
	for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
		snprintf(st->stats_sha + 2 * i, 3, "%02x", md[i]);
	SHA1((const unsigned char *)supp_script, strlen(supp_script), md);
	for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
		snprintf(st->supp_sha + 2 * i, 3, "%02x", md[i]);
	SHA1((const unsigned char *)msg_refs_script, strlen(msg_refs_script), md);
	for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
		snprintf(st->msg_refs_sha + 2 * i, 3, "%02x", md[i]);
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

void store_set_message_index(struct store *st, bool on)
{
	st->message_index = on;
}

static void supp_ready_name(struct store *st);

void store_set_policy(struct store *st, const struct policy *p)
{
	st->policy = *p;
	st->policy_reads = p->nstatuses > 0 || p->soft_bounces > 0;
	supp_ready_name(st);
}

const struct policy *store_policy(const struct store *st)
{
	return &st->policy;
}

void store_free(struct store *st)
{
	if (!st)
		return;
	supp_rebuild_stop(st);
	groupcommit_free(st->group);
	rcluster_free(st->rc);
	for (size_t i = 0; i < STORE_SUPP_BUCKETS; i++)
		free(st->supp_keys[i]);
	free(st->supp_ready_key);
	free(st->supp_rebuild_key);
	pthread_mutex_destroy(&st->supp_lock);
	for (size_t i = 0; i < STORE_TOPICS_MAX; i++)
		free(st->topics[i].arn);
	pthread_mutex_destroy(&st->topics_lock);
	free(st->prefix);
	free(st->script);
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

/* The type index key of one recipient's events of one type, into a
 * malloc'd string (caller frees): recipient_key()'s "bytype" key, ':' and
 * the type (the store script finds the other types' keys by replacing
 * that last part). */
static char *type_index_key(const struct store *st, const char *address, const char *type)
{
	char *base = recipient_key(st, "bytype", address);
	if (!base)
		return NULL;
	size_t lb = strlen(base), lt = strlen(type);
	char *k = realloc(base, lb + 1 + lt + 1);
	if (!k) {
		free(base);
		return NULL;
	}
	k[lb] = ':';
	memcpy(k + lb + 1, type, lt + 1);
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
 * (the drainer sets such a record aside, spool.h): rediserr.h decides by
 * the error's code, also the one a script error of Redis <= 6.2 wraps.
 * No reply at all (a connection lost, a timeout) is an outage, never
 * refused. */
static bool reply_refused(const redisReply *r)
{
	if (!r || r->type != REDIS_REPLY_ERROR || !r->str)
		return false;
	return rediserr_refused(r->str);
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
	b->cmd[b->n++] = (struct rcluster_cmd){key, key ? strlen(key) : 0, raw, (size_t)len, NULL};
}

/* argv[0..argc) as a RESP command, like redisFormatCommandArgv (whose
 * raw buffer redisFreeCommand frees: malloc'd) without its sprintf per
 * argument: the bulk check's HMGETs carry 1,000 of them.  Returns the
 * length, -1 when out of memory. */
static int resp_format(char **out, int argc, const char **argv, const size_t *argl)
{
	size_t total = 24;
	for (int i = 0; i < argc; i++)
		total += argl[i] + 26;
	char *c = malloc(total);
	*out = c;
	if (!c)
		return -1;
	char *o = c;
	*o++ = '*';
	o += format_i64(o, argc);
	*o++ = '\r';
	*o++ = '\n';
	for (int i = 0; i < argc; i++) {
		*o++ = '$';
		o += format_i64(o, (int64_t)argl[i]);
		*o++ = '\r';
		*o++ = '\n';
		memcpy(o, argv[i], argl[i]);
		o += argl[i];
		*o++ = '\r';
		*o++ = '\n';
	}
	return (int)(o - c);
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

/* Runs b: batches of concurrent requests share a round trip
 * (groupcommit.h); alone, on a connection of its own: for the bulk
 * check's 65 commands, which gain nothing from company (one round trip
 * either way) and would make their companions wait for answers that the
 * group's leader reads on its one thread (README, Performance). */
static enum mt_err batch_exec(struct store *st, struct batch *b, bool alone, char *errbuf,
			      size_t errsz)
{
	if (b->nomem) {
		snprintf(errbuf, errsz, "cannot queue a command (out of memory)");
		return MT_E_NOMEM;
	}
	if (alone)
		return rcluster_exec(st->rc, b->cmd, b->n, errbuf, errsz);
	return groupcommit_run(st->group, b->cmd, b->n, errbuf, errsz);
}

static enum mt_err batch_run(struct store *st, struct batch *b, char *errbuf,
			     size_t errsz)
{
	return batch_exec(st, b, false, errbuf, errsz);
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
	const char *event; /* an event's full EVENT JSON (ses.c's); NULL: none */
	size_t event_len;
	/* The counters (stats.h): the count type (NULL: not counted), the
	 * message's identity and configuration set (NULL: none). */
	const char *count_type, *identity, *config_set;
	bool added; /* out: the put script added it */
	int supp_code; /* the suppression index's code (policy.h), -1: none */
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
 * are EVENT JSON (they begin with {"; an address never holds a '"').
 *
 * The feed is trimmed by rank, so an entry is scored no later than the
 * writer's clock (now_ms): events dated ahead (up to SES_TIME_AHEAD_MAX_MS
 * may be stored) cannot outrank, and so trim, every event written after
 * them.  Such an entry says its event's own score,
 * "<address> <score> <message prefix>" (a prefix begins with '{'), for
 * the lookup (feed_resolve). */
static void add_recent(struct store *st, const struct put *puts, size_t n,
		       int64_t now_ms, struct batch *b)
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
		char own[24] = "";
		size_t olen = 0;
		if (p->score > now_ms) { /* ahead: its own score in the reference */
			olen = format_i64(own, p->score);
			own[olen++] = ' ';
		}
		refs[k] = malloc(alen + 1 + olen + plen);
		if (!refs[k])
			goto nomem;
		memcpy(refs[k], p->recipient, alen);
		refs[k][alen] = ' ';
		memcpy(refs[k] + alen + 1, own, olen);
		memcpy(refs[k] + alen + 1 + olen, p->member, plen);
		argv[argc] = scores + 24 * k;
		argl[argc++] = format_i64(scores + 24 * k, p->score < now_ms ? p->score : now_ms);
		argv[argc] = refs[k];
		argl[argc++] = alen + 1 + olen + plen;
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

/* ---- the message index ---------------------------------------------- */

/* The SES message id (mail.messageId) in an EVENT member, when it is one
 * the index takes (store_message_id_valid): *id points into member.
 * ses.c writes every EVENT as {"id":...,"topicArn":...,"mail":{
 * "messageId":"..." with JSON-escaped strings before it, so the first
 * unescaped '"mail":{"messageId":"' is the mail's (a '"' inside a string
 * is always written \").  An id with anything but [A-Za-z0-9-] in it
 * (SES writes none) is not indexed: no lookup could name it. */
static bool member_message_id(const char *member, size_t len, const char **id,
			      size_t *id_len)
{
	static const char head[] = "\"mail\":{\"messageId\":\"";
	const char *p = memmem(member, len, head, sizeof(head) - 1);
	if (!p)
		return false;
	p += sizeof(head) - 1;
	const char *end = memchr(p, '"', len - (size_t)(p - member));
	if (!end || !store_message_id_valid(p, (size_t)(end - p)))
		return false;
	*id = p;
	*id_len = (size_t)(end - p);
	return true;
}

/* The reference to an event (the recent feed's form, add_recent): "<
 * address> <message prefix>" into a malloc'd string (caller frees), its
 * length in *len (a NUL follows).  NULL when out of memory. */
static char *reference_new(const char *address, const char *member, size_t member_len,
			   size_t *len)
{
	size_t alen = strlen(address), plen = message_prefix_len(member, member_len);
	if (plen == 0) /* no id: the whole member is its prefix */
		plen = member_len;
	*len = alen + 1 + plen;
	char *ref = malloc(*len + 1);
	if (!ref)
		return NULL;
	snprintf(ref, alen + 2, "%s ", address);
	memcpy(ref + alen + 1, member, plen);
	ref[*len] = '\0';
	return ref;
}

/* Keys that a batch's commands borrow (batch_push), freed after it. */
struct keys {
	char **v;
	size_t n, cap;
};

static bool keys_add(struct keys *k, char *key)
{
	if (k->n == k->cap) {
		size_t cap = k->cap ? 2 * k->cap : 8;
		char **v = realloc(k->v, cap * sizeof(*v));
		if (!v)
			return false;
		k->v = v;
		k->cap = cap;
	}
	k->v[k->n++] = key;
	return true;
}

static void keys_free(struct keys *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->v[i]);
	free(k->v);
	memset(k, 0, sizeof(*k));
}

/* The key of one SES message's index, "{prefix}mail:{<id>}" (caller
 * frees): the id is its hash tag, so in a Cluster it lives on a slot of
 * its own, written by a command of its own in the same round trip.  Not
 * "msg:": older versions wrote "{prefix}msg:{<SNS MessageId>}" marker
 * strings there. */
static char *message_key(const struct store *st, const char *id, size_t id_len)
{
	char name[STORE_MESSAGE_ID_MAX + 1];
	if (id_len > STORE_MESSAGE_ID_MAX)
		return NULL;
	memcpy(name, id, id_len);
	name[id_len] = '\0';
	return make_key(st, "mail", name);
}

/* Queues, for each run of puts of one SES message (a notification's
 * events are consecutive and all of one mail), the message index's
 * write: one msg_refs_script with the events' references at their scores
 * (a redelivery's references are the same bytes at the same scores, so
 * it adds nothing), which adds them only while the set holds fewer than
 * STORE_MESSAGE_REFS_MAX (first come, first kept: a forged later
 * reference naming a real message id cannot push a genuine one out) and
 * renews the expiry to the retention period and STORE_EXPIRY_SLACK_MS
 * more; it answers which it dropped (run_puts counts them).  runs[2 *
 * c], runs[2 * c + 1] (room for n runs): the first put and the number of
 * puts of the c-th command queued here.  A put without a usable id (a raw
 * record, an id the index does not take) adds nothing.  The expiry is
 * renewed every time: knowing whether it is needed would cost a read,
 * more than the PEXPIRE. */
static void add_message_refs(struct store *st, const struct put *puts, size_t n,
			     struct batch *b, struct keys *keys, size_t *runs)
{
	size_t nruns = 0;
	char ttl[32], cap[32];
	format_i64(ttl, st->retention_ms + STORE_EXPIRY_SLACK_MS);
	format_i64(cap, STORE_MESSAGE_REFS_MAX);
	for (size_t i = 0; i < n && !b->nomem;) {
		const char *id = NULL;
		size_t id_len = 0, j = i + 1;
		if (!puts[i].recipient ||
		    !member_message_id(puts[i].event, puts[i].event_len, &id, &id_len)) {
			i++;
			continue;
		}
		/* The run: the next puts of the same message. */
		for (const char *id2; j < n && puts[j].recipient; j++) {
			size_t l2;
			if (!member_message_id(puts[j].event, puts[j].event_len, &id2, &l2) ||
			    l2 != id_len || memcmp(id, id2, id_len) != 0)
				break;
		}
		size_t nr = j - i, argc = 6;
		char *key = message_key(st, id, id_len);
		const char **argv = calloc(6 + 2 * nr, sizeof(*argv));
		size_t *argl = calloc(6 + 2 * nr, sizeof(*argl));
		char *scores = calloc(nr, 24);
		char **refs = calloc(nr, sizeof(*refs));
		if (!key || !argv || !argl || !scores || !refs) {
			b->nomem = true;
		} else {
			argv[0] = "EVALSHA";
			argv[1] = st->msg_refs_sha;
			argv[2] = "1";
			argv[3] = key;
			argv[4] = cap;
			argv[5] = ttl;
			for (size_t a = 0; a < 6; a++)
				argl[a] = strlen(argv[a]);
			for (size_t k = 0; k < nr; k++) {
				const struct put *p = &puts[i + k];
				size_t rl;
				refs[k] = reference_new(p->recipient, p->member, p->member_len, &rl);
				if (!refs[k]) {
					b->nomem = true;
					break;
				}
				argv[argc] = scores + 24 * k;
				argl[argc++] = format_i64(scores + 24 * k, p->score);
				argv[argc] = refs[k];
				argl[argc++] = rl;
			}
		}
		if (!b->nomem) {
			batch_add(b, key, (int)argc, argv, argl);
			runs[2 * nruns] = i;
			runs[2 * nruns++ + 1] = nr;
		}
		for (size_t k = 0; refs && k < nr; k++)
			free(refs[k]);
		free(refs);
		free(scores);
		free(argl);
		free(argv);
		/* The batch's commands borrow their keys. */
		if (!b->nomem && !keys_add(keys, key))
			b->nomem = true;
		if (b->nomem)
			free(key);
		i = j;
	}
}

/* ---- the deliverability counters (stats.h) ------------------------- */

/* Room for a stats key: --redis-prefix is at most 128 bytes (config.c). */
#define STATS_KEY_BUF 192

/* What one event adds to the counters: per dimension its two keys, its
 * name and its two fields, ready-made (stats_put_script says why). */
struct stats_dim_args {
	enum stats_dim dim;
	const char *name;
	char key[STATS_KEY_BUF], names_key[STATS_KEY_BUF];
	char hourly[STATS_FIELD_MAX], daily[STATS_FIELD_MAX];
};

struct stats_args {
	char expire[24];
	size_t n; /* dimensions counted: identity, domain, configuration set */
	struct stats_dim_args d[STATS_DIMS];
};

/* Whether put p is counted: an event of a counted type whose UTC day
 * ended at most the retention period ago; then its arguments in *a. */
static bool stats_args_of(const struct store *st, const struct put *p, int64_t now_ms,
			  struct stats_args *a)
{
	if (!p->recipient || !p->count_type ||
	    !stats_countable(p->score, now_ms, st->retention_days))
		return false;
	char day[STATS_DAY_BUF];
	stats_day(p->score, day);
	int hour = stats_hour(p->score);
	format_i64(a->expire, stats_expire_at(p->score, st->retention_days));
	/* The recipient is normalised (lower case); its domain may still be
	 * no valid name (an address literal, UTF-8). */
	const char *at = strrchr(p->recipient, '@');
	const char *domain = at && stats_name_valid(STATS_DIM_DOMAIN, at + 1, strlen(at + 1))
				     ? at + 1
				     : STATS_OTHER;
	const struct {
		enum stats_dim dim;
		const char *name;
	} dims[STATS_DIMS] = {
		{STATS_DIM_IDENTITY, p->identity ? p->identity : STATS_OTHER},
		{STATS_DIM_DOMAIN, domain},
		{STATS_DIM_CONFIGURATION_SET, p->config_set},
	};
	a->n = 0;
	for (size_t i = 0; i < STATS_DIMS && dims[i].name; i++) {
		struct stats_dim_args *d = &a->d[a->n++];
		d->dim = dims[i].dim;
		d->name = dims[i].name;
		if (!stats_key(d->key, sizeof(d->key), st->prefix, d->dim, day) ||
		    !stats_names_key(d->names_key, sizeof(d->names_key), st->prefix, d->dim, day) ||
		    !stats_field(d->hourly, sizeof(d->hourly), d->name, hour, p->count_type) ||
		    !stats_field(d->daily, sizeof(d->daily), d->name, -1, p->count_type))
			return false; /* cannot happen: the prefix and names are bounded */
	}
	return true;
}

/* An event stored but not counted (a Cluster's counting failed): counted
 * in /metrics and told to its item, whose caller logs it. */
static void stats_fail(struct store_item *it, const char *why)
{
	metrics_add(METRIC_stats_write_failures_total, 1);
	if (it->stats_failed++ == 0 && it->err == MT_E_OK)
		snprintf(it->errbuf, it->errsz, "%s", why);
}

/* Redis Cluster: counts the events the put scripts added, stats_script
 * once per dimension, all in one more round trip (one per node).  Never
 * fails a delivery: its events are stored, and counting them again on a
 * redelivery would count them twice. */
static void stats_count_cluster(struct store *st, const struct put *puts, size_t n,
				int64_t now_ms)
{
	struct batch b = {0};
	char err[256] = "";
	struct keys keys = {0}; /* the commands' routing keys, which they borrow */
	size_t *owner = calloc(STATS_DIMS * n + 1, sizeof(*owner)); /* command -> put */

	if (!owner)
		b.nomem = true;
	for (size_t i = 0; i < n && !b.nomem; i++) {
		struct stats_args a;
		if (!puts[i].added || !stats_args_of(st, &puts[i], now_ms, &a))
			continue;
		for (size_t k = 0; k < a.n && !b.nomem; k++) {
			char cap[16];
			char *key = strdup(a.d[k].key);
			if (!key || !keys_add(&keys, key)) {
				free(key);
				b.nomem = true;
				break;
			}
			snprintf(cap, sizeof(cap), "%u", st->names_max[a.d[k].dim]);
			const char *argv[] = {"EVALSHA", st->stats_sha, "2", a.d[k].key,
					      a.d[k].names_key, a.d[k].name, a.d[k].hourly,
					      a.d[k].daily, a.expire, cap};
			size_t argl[10];
			for (size_t j = 0; j < 10; j++)
				argl[j] = strlen(argv[j]);
			owner[b.n] = i;
			batch_add(&b, key, 10, argv, argl);
		}
	}
	if (b.nomem) {
		for (size_t i = 0; i < n; i++) {
			struct stats_args a;
			if (puts[i].added && stats_args_of(st, &puts[i], now_ms, &a))
				stats_fail(puts[i].item, "counters: out of memory");
		}
	} else if (b.n > 0) {
		enum mt_err e = batch_run(st, &b, err, sizeof(err));
		/* Each event fails once, however many of its commands did (an
		 * event's commands are consecutive). */
		size_t last = SIZE_MAX;
		for (size_t c = 0; c < b.n; c++) {
			if (e == MT_E_OK && reply_ok(b.cmd[c].reply, REDIS_REPLY_INTEGER, err,
						     sizeof(err))) {
				if (b.cmd[c].reply->integer == 1)
					continue;
				snprintf(err, sizeof(err), "counters: a stats key holds another type");
			} else if (e == MT_E_OK) {
				count_fault(NULL);
			}
			if (owner[c] != last)
				stats_fail(puts[owner[c]].item, err);
			last = owner[c];
		}
	}
	batch_free(&b);
	keys_free(&keys);
	free(owner);
}

/* ---- the suppression index: keys and writes (store.h) ---------------- */

/* The index's marker: "suppidx:ready:" and the policy the entries were
 * decided by (policy_digest: "1" for the policy before policy.c, whose
 * index is the same), so that another policy rebuilds the index. */
static void supp_ready_name(struct store *st)
{
	char digest[16];
	policy_digest(&st->policy, digest);
	snprintf(st->supp_ready_key, strlen(st->prefix) + 64, "%ssuppidx:ready:%s", st->prefix,
		 digest);
}

static bool supp_keys_new(struct store *st)
{
	char n[16];
	for (unsigned i = 0; i < STORE_SUPP_BUCKETS; i++) {
		snprintf(n, sizeof(n), "%u", i);
		st->supp_keys[i] = make_key(st, "suppidx", n);
		if (!st->supp_keys[i])
			return false;
	}
	size_t lp = strlen(st->prefix) + 64;
	st->supp_ready_key = malloc(lp);
	st->supp_rebuild_key = malloc(lp);
	if (!st->supp_ready_key || !st->supp_rebuild_key)
		return false;
	supp_ready_name(st);
	snprintf(st->supp_rebuild_key, lp, "%ssuppidx:rebuilding", st->prefix);
	return true;
}

/* The reason code (policy.h, the index's) of a reason's name, -1 for
 * none. */
static int supp_code(const char *reason)
{
	for (int c = POLICY_COMPLAINT; reason && c <= POLICY_REPEATED; c++)
		if (strcmp(reason, policy_reason_name((enum policy_reason)c)) == 0)
			return c;
	return -1;
}

/* The index code of an event as it is stored: its suppression (ses.c:
 * a complaint or a permanent bounce), else, for a soft bounce, what the
 * policy makes of it (a listed status; a candidate of repeated soft
 * bounces), read from its EVENT JSON (bounces are few: the cost is
 * theirs). */
static int event_index_code(const struct store *st, const struct ses_event *e)
{
	int code = supp_code(e->suppress);
	if (code >= 0 || !st->policy_reads || strcmp(e->type, "Bounce") != 0)
		return code;
	struct policy_event pe;
	policy_event_read(e->json, e->json_len, e->time_ms, &pe);
	return (int)policy_index_code(&st->policy, &pe);
}

/* Queues the index's writes of a round trip of puts: supp_script's put
 * of each deciding event (only an event newer than what the bucket holds
 * for its address raises the entry; a redelivery changes nothing; one
 * recipient's event touches its own field only), and once every
 * STORE_SUPP_PRUNE_EVERY_MS a prune step (STORE_SUPP_PRUNE_STEP entries
 * of one bucket, the buckets in turn): entries whose event is older than
 * any that can still be kept unless it was backfilled (store.h,
 * STORE_SUPP_LATE_MS).  Returns the prune's command in b, SIZE_MAX for
 * none (supp_pruned reads its answer). */
static size_t add_suppression_index(struct store *st, const struct put *puts, size_t n,
				    int64_t now_ms, struct batch *b)
{
	for (size_t i = 0; i < n; i++) {
		int code = puts[i].recipient ? puts[i].supp_code : -1;
		if (code < 0)
			continue;
		char score[32];
		const char *key = st->supp_keys[store_supp_bucket(puts[i].recipient)];
		size_t sl = format_i64(score, puts[i].score * STORE_SUPP_CODES + code);
		const char *argv[] = {"EVALSHA", st->supp_sha, "1", key, "put",
				      puts[i].recipient, score};
		const size_t argl[] = {7, 40, 1, strlen(key), 3, strlen(puts[i].recipient), sl};
		batch_add(b, key, 7, argv, argl);
	}
	long long last = atomic_load(&st->supp_pruned_ms);
	if (now_ms - last < STORE_SUPP_PRUNE_EVERY_MS ||
	    !atomic_compare_exchange_strong(&st->supp_pruned_ms, &last, now_ms))
		return SIZE_MAX;
	const char *key = st->supp_keys[atomic_load(&st->supp_prune_next) % STORE_SUPP_BUCKETS];
	char cursor[32], below[32], count[16];
	snprintf(cursor, sizeof(cursor), "%llu",
		 (unsigned long long)atomic_load(&st->supp_prune_cursor));
	format_i64(below, (now_ms - st->retention_ms - STORE_EXPIRY_SLACK_MS - STORE_SUPP_LATE_MS) *
				  STORE_SUPP_CODES);
	snprintf(count, sizeof(count), "%d", STORE_SUPP_PRUNE_STEP);
	size_t at = b->n;
	batch_addf(b, key, "EVALSHA %s 1 %s prune %s %s %s", st->supp_sha, key, cursor, below,
		   count);
	return at;
}

/* Takes a prune step's answer (add_suppression_index): the next cursor
 * in that bucket, or the next bucket once it is 0 or the step failed (a
 * bucket whose steps fail, e.g. a foreign value at its key, must not
 * stop the walk of the others). */
static void supp_pruned(struct store *st, const redisReply *r)
{
	unsigned long long next = 0;
	char *end;
	if (r && r->type == REDIS_REPLY_STRING) {
		errno = 0;
		next = strtoull(r->str, &end, 10);
		if (errno || end == r->str || *end)
			next = 0;
	}
	if (next == 0)
		atomic_fetch_add(&st->supp_prune_next, 1);
	atomic_store(&st->supp_prune_cursor, next);
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
		const char *argv[32] = {"EVALSHA", st->script_sha, "1", puts[i].key};
		size_t argl[32] = {7, 40, 1, strlen(puts[i].key)};
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
		/* Single Redis: the counters in the same script (a Cluster
		 * counts after the answers, stats_count_cluster). */
		struct stats_args sa;
		if (!st->cluster && stats_args_of(st, &puts[i], now_ms, &sa)) {
			argv[argc] = sa.expire;
			argl[argc++] = strlen(sa.expire);
			for (size_t k = 0; k < sa.n; k++) {
				const char *const five[] = {sa.d[k].key, sa.d[k].names_key,
							    sa.d[k].name, sa.d[k].hourly,
							    sa.d[k].daily};
				for (size_t j = 0; j < 5; j++) {
					argv[argc] = five[j];
					argl[argc++] = strlen(five[j]);
				}
			}
		}
		batch_add(&b, puts[i].key, argc, argv, argl);
	}
	add_recent(st, puts, n, now_ms, &b);
	struct keys msg_keys = {0};
	size_t msg_from = b.n;
	size_t *msg_runs = NULL; /* add_message_refs's runs */
	if (st->message_index) {
		msg_runs = calloc(2 * n, sizeof(*msg_runs));
		if (msg_runs)
			add_message_refs(st, puts, n, &b, &msg_keys, msg_runs);
		else
			b.nomem = true;
	}
	size_t msg_to = b.n;
	size_t prune = add_suppression_index(st, puts, n, now_ms, &b);
	enum mt_err e = batch_run(st, &b, err, sizeof(err));
	if (e == MT_E_OK && prune != SIZE_MAX)
		supp_pruned(st, b.cmd[prune].reply);
	if (e != MT_E_OK) {
		for (size_t i = 0; i < n; i++)
			item_fail(puts[i].item, e, err);
		batch_free(&b);
		keys_free(&msg_keys);
		free(msg_runs);
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
			puts[i].added = true;
			puts[i].item->added++;
			if (r->integer == 2)
				stats_fail(puts[i].item, "counters: a stats key holds another type");
			if (puts[i].counts_key) { /* an event, not a raw message */
				metrics_count_event(puts[i].type);
				metrics_count_identity_event(puts[i].identity,
							     puts[i].count_type);
			}
		}
	}
	/* The message index's scripts answer the references they dropped (the
	 * mail's set was full; an error answer fails the items below).  One
	 * counts when its event was stored now: a redelivery of a dropped
	 * reference is dropped again, not counted again. */
	unsigned long dropped = 0;
	for (size_t c = msg_from; c < msg_to; c++) {
		const redisReply *r = b.cmd[c].reply;
		const size_t *run = msg_runs + 2 * (c - msg_from);
		for (size_t k = 0; r && r->type == REDIS_REPLY_ARRAY && k < r->elements; k++) {
			const redisReply *pos = r->element[k];
			if (pos->type == REDIS_REPLY_INTEGER && pos->integer >= 1 &&
			    (unsigned long long)pos->integer <= run[1] &&
			    puts[run[0] + (size_t)pos->integer - 1].added)
				dropped++;
		}
	}
	if (dropped)
		metrics_add(METRIC_message_refs_dropped_total, dropped);
	/* The feed is one key: when it fails, every item that wrote to it
	 * fails (and is delivered again: the events are not doubled).  So
	 * does a message index's write (after the feed's), and a suppression
	 * index's; not the prune step (counted; the next one takes over). */
	for (size_t c = nreg + n; c < b.n; c++) {
		if (reply_ok(b.cmd[c].reply, -1, err, sizeof(err)))
			continue;
		if (c == prune) {
			count_fault(NULL);
			continue;
		}
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
	keys_free(&msg_keys);
	free(msg_runs);
	if (st->cluster)
		stats_count_cluster(st, puts, n, now_ms);
}

void store_put_many(struct store *st, struct store_item *const *items, size_t n)
{
	size_t nputs = 0, k = 0;
	for (size_t i = 0; i < n; i++) {
		items[i]->err = MT_E_OK;
		items[i]->added = 0;
		items[i]->stats_failed = 0;
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
					       members[k].len, it, e->recipient, &members[k],
					       e->json, e->json_len, e->count_type,
					       it->evs->identity,
					       it->evs->config_set[0] ? it->evs->config_set : NULL,
					       false, event_index_code(st, e)};
		}
		if (it->raw_topic) {
			keys[2 * k] = make_key(st, "topic", it->raw_topic);
			nomem |= !keys[2 * k];
			puts[k] = (struct put){keys[2 * k], NULL, NULL, NULL, it->raw_time_ms,
					       it->raw_json, it->raw_len, it, NULL, NULL, NULL, 0,
					       NULL, NULL, NULL, false, -1};
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

const char *store_prefix(const struct store *st)
{
	return st->prefix;
}

enum mt_err store_run_reads(struct store *st, struct rcluster_cmd *cmds, size_t n,
			    char *errbuf, size_t errsz)
{
	/* rcluster counts the faults it sees (count_fault). */
	return n == 0 ? MT_E_OK : groupcommit_run(st->group, cmds, n, errbuf, errsz);
}

enum mt_err store_ping(struct store *st, char *errbuf, size_t errsz)
{
	/* In a cluster: the node of the recent feed, which every delivery
	 * writes. */
	redisReply *r = command(st, st->recent_key, errbuf, errsz, "PING");
	/* No answer: errbuf already says why (a refused connect, a failed TLS
	 * handshake or AUTH), which /readyz logs. */
	bool ok = r && reply_ok(r, REDIS_REPLY_STATUS, errbuf, errsz);
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

/* Whether member m holds an EVENT of this type: read on its first bytes
 * (evmember_type); only a member of another layout is parsed. */
static bool member_has_type(const redisReply *m, const char *type)
{
	const char *t;
	size_t tl;
	if (!m || m->type != REDIS_REPLY_STRING)
		return false;
	if (evmember_type(m->str, m->len, &t, &tl))
		return tl == strlen(type) && memcmp(t, type, tl) == 0;
	struct json_object *ev = json_tokener_parse(m->str), *jt;
	bool yes = ev && json_object_object_get_ex(ev, "type", &jt) &&
		   json_object_is_type(jt, json_type_string) &&
		   strcmp(json_object_get_string(jt), type) == 0;
	json_object_put(ev);
	return yes;
}

/* What a page is read from: a sorted set whose entries are EVENT members
 * (a recipient's), references "<address> <member prefix>" or old EVENT
 * members (the recent feed, add_recent), or member prefixes of one
 * recipient's events (its type index). */
enum query_source { SRC_EVENTS, SRC_FEED, SRC_INDEX };

struct query_ctx {
	const char *key;     /* the set read */
	enum query_source src;
	const char *rcpt_key; /* SRC_INDEX: the set its prefixes point into */
	const char *address;  /* the recipient; NULL for the feed */
	const struct store_query *q;
	struct store_page *page;
};

/* A set's entries as EVENT members: ev[i] is entry i's member, borrowed
 * from the entry or from look's answers, or NULL when that event is no
 * longer stored (trimmed or expired with its recipient's set); who[i] the
 * recipient it belongs to (NULL when unknown).  A reference is looked up
 * in its recipient's set at its score: one round trip for all, one lookup
 * for the references of one recipient and millisecond. */
struct resolved {
	const redisReply **ev;
	const char **who;
	int64_t *at; /* at[i]: the event's own score (a feed reference dated
		      * ahead is filed earlier than its event) */
	struct batch look;
	char **owned; /* the feed's lookup keys and addresses */
	size_t nowned;
};

static void resolved_free(struct resolved *rs)
{
	for (size_t i = 0; i < rs->nowned; i++)
		free(rs->owned[i]);
	free(rs->owned);
	free(rs->ev);
	free(rs->who);
	free(rs->at);
	batch_free(&rs->look);
	memset(rs, 0, sizeof(*rs));
}

/* The address part of a feed reference (its length), 0 for an EVENT entry
 * or a malformed one. */
static size_t reference_address_len(const redisReply *m)
{
	if (!m || m->type != REDIS_REPLY_STRING || (m->len >= 2 && memcmp(m->str, "{\"", 2) == 0))
		return 0;
	const char *sp = memchr(m->str, ' ', m->len);
	size_t n = sp ? (size_t)(sp - m->str) : 0;
	return n <= SES_ADDRESS_MAX ? n : 0;
}

/* Where a reference's message prefix begins, and its event's score into
 * *score when the reference names one ("<address> <score> <prefix>",
 * add_recent); else *score is left as the entry's own.  alen: its
 * address's length (reference_address_len). */
static size_t reference_prefix_at(const redisReply *m, size_t alen, int64_t *score)
{
	size_t i = alen + 1, j = i;
	long long v = 0;
	bool neg = j < m->len && m->str[j] == '-';
	j += neg;
	while (j < m->len && j - i < 20 && m->str[j] >= '0' && m->str[j] <= '9')
		v = v * 10 + (m->str[j++] - '0');
	if (j == i + neg || j >= m->len || m->str[j] != ' ')
		return i; /* "<address> <prefix>": at its feed score */
	*score = neg ? -v : v;
	return j + 1;
}

/* Whether address[0..alen) is a recipient of domain (lower case, no
 * '@'): it ends with "@domain", so its last '@' is the one before it. */
static bool address_in_domain(const char *address, size_t alen, const char *domain)
{
	size_t dl = strlen(domain);
	return alen > dl + 1 && address[alen - dl - 1] == '@' &&
	       memcmp(address + alen - dl, domain, dl) == 0;
}

/* Whether feed entry m (whose reference's address is alen bytes; 0: an
 * old entry, the EVENT JSON itself) is of a recipient of domain: read on
 * the reference, with no member read; only an old entry is parsed. */
static bool feed_entry_in_domain(const redisReply *m, size_t alen, const char *domain)
{
	if (alen)
		return address_in_domain(m->str, alen, domain);
	struct json_object *ev = json_tokener_parse(m->str), *r;
	bool yes = ev && json_object_object_get_ex(ev, "recipient", &r) &&
		   json_object_is_type(r, json_type_string) &&
		   address_in_domain(json_object_get_string(r),
				     (size_t)json_object_get_string_len(r), domain);
	json_object_put(ev);
	return yes;
}

/* Entries are r's elements (with their scores after each when
 * withscores, else all at score).  An entry of the feed that the query's
 * domain leaves out gets no lookup (ev NULL). */
static enum mt_err resolve(struct store *st, const struct query_ctx *qc, const redisReply *r,
			   bool withscores, int64_t score, struct resolved *rs,
			   char *errbuf, size_t errsz)
{
	size_t step = withscores ? 2 : 1;
	size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements / step : 0;
	size_t *lookup = calloc(n + 1, sizeof(*lookup)); /* entry -> command */
	int64_t prev_score = 0;
	const redisReply *prev = NULL;
	const char *prev_who = NULL;
	enum mt_err err = MT_E_NOMEM;

	memset(rs, 0, sizeof(*rs));
	rs->ev = calloc(n + 1, sizeof(const redisReply *));
	rs->who = calloc(n + 1, sizeof(*rs->who));
	rs->at = calloc(n + 1, sizeof(*rs->at));
	rs->owned = calloc(2 * n + 1, sizeof(*rs->owned));
	if (!lookup || !rs->ev || !rs->who || !rs->at || !rs->owned)
		goto out;
	for (size_t i = 0; i < n; i++) {
		const redisReply *m = r->element[step * i];
		lookup[i] = SIZE_MAX;
		if (withscores && !parse_score(r->element[step * i + 1], &score))
			continue;
		rs->at[i] = score;
		if (qc->src == SRC_EVENTS) {
			rs->ev[i] = m;
			rs->who[i] = qc->address;
			continue;
		}
		if (!m || m->type != REDIS_REPLY_STRING)
			continue;
		size_t alen = qc->src == SRC_FEED ? reference_address_len(m) : 0;
		if (qc->src == SRC_FEED && qc->q->domain &&
		    !feed_entry_in_domain(m, alen, qc->q->domain))
			continue;
		if (qc->src == SRC_FEED && alen == 0) { /* an old entry: its EVENT */
			rs->ev[i] = m;
			continue;
		}
		int64_t at = score; /* the event's score */
		if (qc->src == SRC_FEED)
			reference_prefix_at(m, alen, &at);
		rs->at[i] = at;
		if (prev && prev_score == at &&
		    (qc->src == SRC_INDEX ||
		     (reference_address_len(prev) == alen && memcmp(prev->str, m->str, alen) == 0))) {
			lookup[i] = rs->look.n - 1;
			rs->who[i] = prev_who;
			continue;
		}
		const char *key = qc->rcpt_key;
		rs->who[i] = qc->address;
		if (qc->src == SRC_FEED) {
			char *addr = strndup(m->str, alen);
			rs->owned[rs->nowned++] = addr;
			char *k = addr ? recipient_key(st, "rcpt", addr) : NULL;
			if (!k)
				goto out;
			rs->owned[rs->nowned++] = k;
			key = k;
			rs->who[i] = addr;
		}
		lookup[i] = rs->look.n;
		batch_addf(&rs->look, key, "ZRANGEBYSCORE %s %lld %lld", key, (long long)at,
			   (long long)at);
		prev = m;
		prev_score = at;
		prev_who = rs->who[i];
	}
	err = rs->look.n ? batch_run(st, &rs->look, errbuf, errsz) : MT_E_OK;
	for (size_t c = 0; err == MT_E_OK && c < rs->look.n; c++) {
		if (!reply_ok(rs->look.cmd[c].reply, REDIS_REPLY_ARRAY, errbuf, errsz)) {
			count_fault(NULL);
			err = MT_E_REDIS;
		}
	}
	for (size_t i = 0; err == MT_E_OK && i < n; i++) {
		if (lookup[i] == SIZE_MAX)
			continue;
		const redisReply *m = r->element[step * i];
		int64_t at = 0;
		size_t skip = qc->src == SRC_FEED
			? reference_prefix_at(m, reference_address_len(m), &at) : 0;
		size_t plen = m->len - skip;
		const redisReply *a = rs->look.cmd[lookup[i]].reply;
		for (size_t j = 0; j < a->elements; j++) {
			const redisReply *e = a->element[j];
			if (e->type == REDIS_REPLY_STRING && e->len >= plen &&
			    memcmp(e->str, m->str + skip, plen) == 0) {
				rs->ev[i] = e;
				break;
			}
		}
	}
out:
	free(lookup);
	return err;
}

/* The one place where a stored member becomes the bytes of an EVENT in an
 * answer: appends to out (keeping out->len at most max) the EVENT that
 * member m of recipient's set at score stands for.  A compact member
 * (member.h) is rebuilt with its topic's ARN; a member in the full form
 * (what versions before compact members stored, and old entries of the
 * recent feed, whose recipient is NULL) is checked to be one JSON object
 * and copied (evmember.h).  Returns what evmember_to_event() does. */
static enum mt_err member_event(struct store *st, const redisReply *m, const char *recipient,
				int64_t score, struct buf *out, size_t max)
{
	char ref[MEMBER_TOPIC_REF_LEN + 1];
	if (!member_find_topic_ref(m->str, m->len, ref))
		return evmember_to_event(m->str, m->len, recipient, score, out, max);
	if (!recipient) /* a compact member is only ever in its recipient's set */
		return MT_E_BAD_JSON;
	size_t arn_len = 0;
	char *arn = topic_arn(st, ref, &arn_len);
	struct buf text = {0};
	enum mt_err err = member_to_event(m->str, m->len, recipient, score, arn, arn_len, &text);
	free(arn);
	if (err == MT_E_OK && !evmember_is_object(text.p, text.len))
		err = MT_E_BAD_JSON;
	if (err == MT_E_OK)
		err = buf_result_err(buf_append(out, text.p, text.len, max));
	buf_free(&text);
	return err;
}

/* Appends the EVENT of member m (member_event) to the page; *added says
 * whether it was one. */
static enum mt_err page_add(struct store *st, struct store_page *page, const redisReply *m,
			    const char *who, int64_t score, bool *added)
{
	size_t at = page->events.len;
	enum mt_err err = MT_E_OK;
	*added = false;
	if (page->n && buf_append(&page->events, ",", 1, STORE_PAGE_BYTES_MAX) != BUF_OK)
		err = MT_E_NOMEM;
	if (err == MT_E_OK)
		err = member_event(st, m, who, score, &page->events, STORE_PAGE_BYTES_MAX);
	if (err == MT_E_OK) {
		page->n++;
		*added = true;
		return MT_E_OK;
	}
	page->events.len = at;
	if (page->events.p)
		page->events.p[at] = '\0';
	/* A member that is no EVENT is left out; a page too large for
	 * STORE_PAGE_BYTES_MAX is an error, not a shorter page. */
	return err == MT_E_BAD_JSON ? MT_E_OK : err == MT_E_TOO_LARGE ? MT_E_INTERNAL : err;
}

struct match {
	int64_t score;
	size_t at; /* page->events.len before it */
};

/* Scans newest first from the query's bounds until limit matches are found
 * (or STORE_SCAN_MAX entries examined).  The score of the first entry not
 * examined is the boundary: matches with that score are left for the next
 * page (whose cursor then includes it), so a page never splits one
 * millisecond's events between two pages.  Only when a whole page shares
 * the boundary score is that millisecond returned in one go.  Each read
 * continues from the last score seen (a score cursor, skipping the entries
 * at that score already seen) instead of an offset from the top, so a
 * long scan costs Redis the entries it returns, not the ones before. */
static enum mt_err query_page(struct store *st, struct query_ctx *qc,
			      char *errbuf, size_t errsz)
{
	const struct store_query *q = qc->q;
	struct store_page *page = qc->page;
	char max[32], min[32];
	bool filter = q->type && qc->src != SRC_INDEX ? true : false;
	size_t batch = filter ? 256 : q->domain ? STORE_FEED_DOMAIN_BATCH : q->limit + 1;
	size_t skip = 0, scanned = 0, nm = 0;
	bool bounded = false, first = true, at_cursor = false;
	int64_t boundary = 0, top = 0, cursor = 0;
	enum mt_err err = MT_E_OK;
	struct match *m = calloc(q->limit, sizeof(*m));
	redisReply *r = NULL;

	if (!m)
		return MT_E_NOMEM;
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
			    qc->key, max, min, (unsigned long long)skip,
			    (unsigned long long)batch);
		if (!r) {
			err = MT_E_REDIS;
			goto out;
		}
		size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements / 2 : 0;
		struct resolved rs;
		err = resolve(st, qc, r, true, 0, &rs, errbuf, errsz);
		for (size_t i = 0; err == MT_E_OK && i < n; i++) {
			int64_t score;
			if (!parse_score(r->element[2 * i + 1], &score))
				continue;
			/* The cursor: the last score read, and how many
			 * entries at it were read (all of this batch's when
			 * the cursor did not move). */
			if (at_cursor && score == cursor) {
				skip++;
			} else {
				cursor = score;
				skip = 1;
				at_cursor = true;
			}
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
			const redisReply *ev = rs.ev[i];
			if (!ev || (q->type && !member_has_type(ev, q->type)))
				continue;
			bool added;
			size_t at = page->events.len;
			err = page_add(st, page, ev, rs.who[i], rs.at[i], &added);
			if (added)
				m[nm++] = (struct match){score, at};
		}
		resolved_free(&rs);
		freeReplyObject(r);
		r = NULL;
		if (err != MT_E_OK)
			goto out;
		if (n < batch)
			break;
		snprintf(max, sizeof(max), "%lld", (long long)cursor);
	}

	page->more = bounded;
	if (bounded) {
		while (nm > 0 && m[nm - 1].score == boundary) {
			page->events.len = m[--nm].at;
			page->events.p[page->events.len] = '\0';
			page->n--;
		}
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
			struct resolved rs;
			err = resolve(st, qc, r, false, boundary, &rs, errbuf, errsz);
			for (size_t i = 0; err == MT_E_OK && i < r->elements; i++) {
				bool added;
				if (rs.ev[i] && (!q->type || member_has_type(rs.ev[i], q->type)))
					err = page_add(st, page, rs.ev[i], rs.who[i], rs.at[i], &added);
			}
			resolved_free(&rs);
			freeReplyObject(r);
			r = NULL;
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
out:
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

/* Whether the recipient's type index can answer a filter on type: the
 * store script has built it (the counts hash says so) and it holds as
 * many events of the type as the counts (else, say after its key expired
 * apart from the set, the set itself is scanned). */
static enum mt_err type_index_usable(struct store *st, const char *counts, const char *index,
				     const char *type, bool *usable, char *errbuf, size_t errsz)
{
	struct batch b = {0};
	char field[64];
	enum mt_err err;

	*usable = false;
	snprintf(field, sizeof(field), "type:%s", type);
	batch_addf(&b, counts, "HMGET %s index %s", counts, field);
	batch_addf(&b, index, "ZCARD %s", index);
	err = batch_run(st, &b, errbuf, errsz);
	if (err == MT_E_OK && (!reply_ok(b.cmd[0].reply, REDIS_REPLY_ARRAY, errbuf, errsz) ||
			       !reply_ok(b.cmd[1].reply, REDIS_REPLY_INTEGER, errbuf, errsz))) {
		count_fault(NULL);
		err = MT_E_REDIS;
	}
	if (err == MT_E_OK && b.cmd[0].reply->elements == 2) {
		const redisReply *on = b.cmd[0].reply->element[0], *n = b.cmd[0].reply->element[1];
		long long count = n->type == REDIS_REPLY_STRING ? strtoll(n->str, NULL, 10) : 0;
		*usable = on->type == REDIS_REPLY_STRING && strcmp(on->str, "1") == 0 &&
			  count == b.cmd[1].reply->integer;
	}
	batch_free(&b);
	return err;
}

enum mt_err store_query_events(struct store *st, const char *address,
			       const struct store_query *q,
			       struct store_page *out, char *errbuf,
			       size_t errsz)
{
	char recent[256];
	char *key = NULL, *counts = NULL, *index = NULL;
	enum mt_err err = MT_E_OK;

	memset(out, 0, sizeof(*out));
	if (q->limit == 0 || q->limit > STORE_PAGE_MAX)
		return MT_E_INTERNAL;
	struct query_ctx qc = {NULL, address ? SRC_EVENTS : SRC_FEED, NULL, address, q, out};
	if (address) {
		err = recipient_read_keys(st, address, &key, q->type ? &counts : NULL, errbuf,
					  errsz);
		if (err != MT_E_OK)
			goto out;
		qc.key = key;
	} else {
		snprintf(recent, sizeof(recent), "%srecent", st->prefix);
		qc.key = recent;
	}
	if (address && q->type) {
		bool usable;
		index = type_index_key(st, address, q->type);
		if (!index) {
			err = MT_E_NOMEM;
			goto out;
		}
		err = type_index_usable(st, counts, index, q->type, &usable, errbuf, errsz);
		if (err != MT_E_OK)
			goto out;
		if (usable) {
			qc.src = SRC_INDEX;
			qc.rcpt_key = key;
			qc.key = index;
		}
	}
	err = query_page(st, &qc, errbuf, errsz);
out:
	free(index);
	free(counts);
	free(key);
	return err;
}

void store_page_free(struct store_page *page)
{
	if (!page)
		return;
	buf_free(&page->events);
	memset(page, 0, sizeof(*page));
}

static void counts_decide(long long n_bounce, long long n_complaint, long long last_bounce,
			  long long last_complaint, long long n_bounces, struct policy_result *out,
			  bool *soft);
static enum mt_err policy_read(struct store *st, char *const *keys, const char *const *who,
			       size_t n, struct policy_result *res, char *errbuf, size_t errsz);

struct summary_ctx {
	const char *key, *counts_key;
	const char *address;
	struct store_summary *sum;
};

static enum mt_err summary(struct store *st, struct summary_ctx *sc,
			   char *errbuf, size_t errsz)
{
	struct store_summary *sum = sc->sum;
	int64_t last_bounce = -1, last_complaint = -1, score;
	long long n_bounce = 0, n_complaint = 0, n_bounces = 0;

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
		if (strcmp(f, "type:Bounce") == 0)
			n_bounces = n;
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
	struct policy_result pr;
	bool soft;
	counts_decide(n_bounce, n_complaint, last_bounce, last_complaint, n_bounces, &pr, &soft);
	if (soft && st->policy_reads) {
		/* A bounce that is not permanent: the policy reads the
		 * timeline (the same rule as the check and the export). */
		char *keys[1] = {(char *)sc->key};
		const char *who[1] = {sc->address};
		enum mt_err err = policy_read(st, keys, who, 1, &pr, errbuf, errsz);
		if (err != MT_E_OK)
			return err;
	}
	sum->reason = policy_reason_name(pr.reason);
	policy_reason_text(&st->policy, &pr, sum->reason_text);

	r = command(st, sc->key, errbuf, errsz, "ZREVRANGE %s 0 0 WITHSCORES", sc->key);
	if (!r)
		return MT_E_REDIS;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[0]->type == REDIS_REPLY_STRING && parse_score(r->element[1], &score)) {
		struct buf ev = {0};
		const redisReply *m = r->element[0];
		if (member_event(st, m, sc->address, score, &ev, STORE_PAGE_BYTES_MAX) == MT_E_OK)
			sum->last_event = json_tokener_parse(ev.p);
		buf_free(&ev);
	}
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

/* ---- the message index: reads and erasure ----------------------------- */

enum mt_err store_message_events(struct store *st, const char *message_id,
				 struct json_object **out, char *errbuf, size_t errsz)
{
	struct json_object *by_rcpt = NULL, *groups = NULL;
	struct resolved rs = {0};
	redisReply *r = NULL;
	enum mt_err err = MT_E_NOMEM;

	*out = NULL;
	if (!store_message_id_valid(message_id, strlen(message_id)))
		return MT_E_INTERNAL;
	char *key = message_key(st, message_id, strlen(message_id));
	by_rcpt = json_object_new_object();
	groups = json_object_new_array();
	if (!key || !by_rcpt || !groups)
		goto out;
	/* Newest first; the cap bounds what one answer reads even if the
	 * key were written past it. */
	r = command(st, key, errbuf, errsz, "ZREVRANGE %s 0 %d WITHSCORES", key,
		    STORE_MESSAGE_REFS_MAX - 1);
	if (!r) {
		err = MT_E_REDIS;
		goto out;
	}
	/* Its entries are references of the recent feed's form, read
	 * unfiltered. */
	static const struct store_query unfiltered = {0};
	struct query_ctx qc = {key, SRC_FEED, NULL, NULL, &unfiltered, NULL};
	err = resolve(st, &qc, r, true, 0, &rs, errbuf, errsz);
	size_t n = err == MT_E_OK && r->type == REDIS_REPLY_ARRAY ? r->elements / 2 : 0;
	for (size_t i = 0; i < n; i++) {
		/* A reference that no longer resolves (its event trimmed or
		 * erased) is left out, and so is an entry that is not a
		 * reference (no version wrote one). */
		const redisReply *m = rs.ev[i];
		const char *rcpt = rs.who[i];
		struct json_object *ev = NULL, *events;
		if (m && rcpt) {
			struct buf b = {0};
			if (member_event(st, m, rcpt, rs.at[i], &b, STORE_PAGE_BYTES_MAX) == MT_E_OK)
				ev = json_tokener_parse(b.p);
			buf_free(&b);
		}
		if (!ev)
			continue;
		/* Entries come newest first, so a recipient's group is made at
		 * its newest event and the groups are in that order. */
		if (!json_object_object_get_ex(by_rcpt, rcpt, &events)) {
			struct json_object *g = json_object_new_object();
			events = json_object_new_array();
			if (!g || !events || json_object_array_add(groups, g) != 0) {
				json_object_put(g);
				json_object_put(events);
				json_object_put(ev);
				err = MT_E_NOMEM;
				goto out;
			}
			json_object_object_add(g, "recipient", json_object_new_string(rcpt));
			json_object_object_add(g, "events", events);
			/* by_rcpt borrows the array through its own reference. */
			json_object_object_add(by_rcpt, rcpt, json_object_get(events));
		}
		if (json_object_array_add(events, ev) != 0) {
			json_object_put(ev);
			err = MT_E_NOMEM;
			goto out;
		}
	}
	if (err == MT_E_OK) {
		*out = groups;
		groups = NULL;
	}
out:
	resolved_free(&rs);
	freeReplyObject(r);
	json_object_put(groups);
	json_object_put(by_rcpt);
	free(key);
	return err;
}

/* Members of a recipient's set read at once by store_forget_message_refs. */
#define FORGET_PAGE 1000

enum mt_err store_forget_message_refs(struct store *st, const char *address,
				      char *errbuf, size_t errsz)
{
	char *rkey = NULL;
	struct keys keys = {0};
	enum mt_err err = recipient_read_keys(st, address, &rkey, NULL, errbuf, errsz);
	if (err != MT_E_OK)
		goto out;
	for (long long start = 0;; start += FORGET_PAGE) {
		redisReply *r = command(st, rkey, errbuf, errsz, "ZRANGE %s %lld %lld", rkey,
					start, start + FORGET_PAGE - 1);
		if (!r) {
			err = MT_E_REDIS;
			goto out;
		}
		size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
		struct batch b = {0};
		for (size_t i = 0; i < n && !b.nomem; i++) {
			const redisReply *m = r->element[i];
			const char *id;
			size_t id_len, rl;
			char ref_[MEMBER_TOPIC_REF_LEN + 1];
			struct buf full = {0}; /* a compact member's EVENT: its mail id */
			if (m->type != REDIS_REPLY_STRING)
				continue;
			bool found = member_message_id(m->str, m->len, &id, &id_len);
			if (!found && member_find_topic_ref(m->str, m->len, ref_) &&
			    member_to_event(m->str, m->len, address, 0, NULL, 0, &full) == MT_E_OK)
				found = member_message_id(full.p, full.len, &id, &id_len);
			char *key = found ? message_key(st, id, id_len) : NULL;
			buf_free(&full);
			if (!found)
				continue;
			char *ref = reference_new(address, m->str, m->len, &rl);
			if (key && ref && keys_add(&keys, key)) {
				const char *argv[] = {"ZREM", key, ref};
				const size_t argl[] = {4, strlen(key), rl};
				batch_add(&b, key, 3, argv, argl);
			} else {
				free(key);
				b.nomem = true;
			}
			free(ref);
		}
		freeReplyObject(r);
		err = b.n || b.nomem ? batch_run(st, &b, errbuf, errsz) : MT_E_OK;
		for (size_t c = 0; err == MT_E_OK && c < b.n; c++) {
			if (!reply_ok(b.cmd[c].reply, -1, errbuf, errsz)) {
				count_fault(NULL);
				err = MT_E_REDIS;
			}
		}
		batch_free(&b);
		keys_free(&keys);
		if (err != MT_E_OK || n < FORGET_PAGE)
			break;
	}
out:
	keys_free(&keys);
	free(rkey);
	return err;
}


/* ---- suppressions and erasure (issue 14) -------------------------------- */

/* The counts hash fields that decide a suppression, as put_script names
 * them, are asked for in this order: suppress:Bounce/Permanent,
 * suppress:Complaint, last:Bounce/Permanent, last:Complaint, and
 * type:Bounce (more bounces than permanent ones: the policy reads the
 * timeline). */
#define SUPP_FIELDS 5

/* Queues the HMGET of key's suppression fields (by its arguments: no printf). */
static void hmget_suppression(struct batch *b, const char *key, size_t len)
{
	const char *argv[] = {"HMGET", key, "suppress:Bounce/Permanent", "suppress:Complaint",
			      "last:Bounce/Permanent", "last:Complaint", "type:Bounce"};
	const size_t argl[] = {5, len, 25, 18, 21, 14, 11};
	batch_add(b, key, 2 + SUPP_FIELDS, argv, argl);
}

static bool reply_int(const redisReply *r, long long *out)
{
	if (!r || r->type != REDIS_REPLY_STRING)
		return false;
	char *end;
	long long v = strtoll(r->str, &end, 10);
	if (end == r->str || *end)
		return false;
	*out = v;
	return true;
}

/* What the counts say: a permanent bounce unless a complaint is later,
 * else a complaint; *soft: the hash counts a bounce that is not
 * permanent, which only the timeline can judge (policy_read). */
static void counts_decide(long long n_bounce, long long n_complaint, long long last_bounce,
			  long long last_complaint, long long n_bounces, struct policy_result *out,
			  bool *soft)
{
	*out = (struct policy_result){POLICY_NONE, 0, false, ""};
	if (n_bounce > 0 && (n_complaint <= 0 || last_bounce >= last_complaint))
		*out = (struct policy_result){POLICY_PERMANENT, last_bounce, false, ""};
	else if (n_complaint > 0)
		*out = (struct policy_result){POLICY_COMPLAINT, last_complaint, false, ""};
	*soft = n_bounces > (n_bounce > 0 ? n_bounce : 0);
}

/* The suppression hmget_suppression's answer says (counts_decide).
 * False when the answer holds none of the fields (nothing known under
 * that key). */
static bool suppression_of(const redisReply *r, struct policy_result *out, bool *soft)
{
	long long v[SUPP_FIELDS] = {0, 0, -1, -1, 0};
	*out = (struct policy_result){POLICY_NONE, 0, false, ""};
	*soft = false;
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != SUPP_FIELDS)
		return false;
	bool any = false;
	for (size_t i = 0; i < SUPP_FIELDS; i++) {
		any |= r->element[i]->type == REDIS_REPLY_STRING;
		reply_int(r->element[i], &v[i]);
	}
	counts_decide(v[0], v[1], v[2], v[3], v[4], out, soft);
	return any;
}

/* Not suppressed (without writing the whole text buffer: a check clears
 * 1,000 of them). */
static void suppression_clear(struct store_suppression *s)
{
	s->reason = NULL;
	s->time_ms = 0;
	s->text[0] = '\0';
}

/* A result as the store answers it. */
static void suppression_set(const struct store *st, const struct policy_result *r,
			    struct store_suppression *out)
{
	out->reason = policy_reason_name(r->reason);
	out->time_ms = out->reason ? r->time_ms : 0;
	policy_reason_text(&st->policy, r, out->text);
}

/* Queues the read of one page of a timeline for the policy: its
 * members [from, from + STORE_POLICY_PAGE) counted from the newest. */
static void timeline_read(struct batch *b, const char *key, size_t from)
{
	/* (hiredis's formatter takes no %zu) */
	batch_addf(b, key, "ZREVRANGE %s %lld %lld WITHSCORES", key, (long long)from,
		   (long long)(from + STORE_POLICY_PAGE - 1));
}

/* Appends to ev (room for POLICY_EVENTS_MAX; *ne held) the deliveries
 * and bounces of a page timeline_read asked for (r) of recipient who's
 * timeline; *full: the page was full, so more may follow. */
static enum mt_err timeline_page(struct store *st, const redisReply *r, const char *who,
				 struct policy_event *ev, size_t *ne, bool *full, char *errbuf,
				 size_t errsz)
{
	*full = false;
	if (!reply_ok(r, REDIS_REPLY_ARRAY, errbuf, errsz)) {
		count_fault(NULL);
		return MT_E_REDIS;
	}
	*full = r->elements >= 2 * (size_t)STORE_POLICY_PAGE;
	for (size_t j = 0; j + 1 < r->elements && *ne < POLICY_EVENTS_MAX; j += 2) {
		const redisReply *m = r->element[j];
		int64_t score;
		if (m->type != REDIS_REPLY_STRING || !parse_score(r->element[j + 1], &score))
			continue;
		if (member_has_type(m, "Delivery")) {
			ev[(*ne)++] = (struct policy_event){score, POLICY_EV_DELIVERY, false, ""};
		} else if (member_has_type(m, "Bounce")) {
			struct buf text = {0};
			if (member_event(st, m, who, score, &text, STORE_PAGE_BYTES_MAX) == MT_E_OK)
				policy_event_read(text.p, text.len, score, &ev[(*ne)++]);
			buf_free(&text);
		}
	}
	return MT_E_OK;
}

/* Merges into *res what the policy says of ev[0..ne). */
static void timeline_judge(struct store *st, const struct policy_event *ev, size_t ne,
			   struct policy_result *res)
{
	struct policy_result pr;
	policy_evaluate(&st->policy, ev, ne, &pr);
	policy_result_merge(res, &pr);
}

/* The policy over recipients' timelines: for each i with keys[i] (its
 * sorted set's name; who[i] the recipient, for compact members), its
 * newest POLICY_EVENTS_MAX members are read, a page of STORE_POLICY_PAGE
 * for each of STORE_POLICY_READS_MAX recipients a pipelined round trip,
 * the next page only for those whose page was full, and res[i] is merged
 * with what policy_evaluate says of its deliveries and bounces (the type
 * is read on a member's first bytes; only bounces are parsed).  So the
 * replies held at once are at most STORE_POLICY_READS_MAX pages, however
 * long and large the timelines a signed message can make. */
static enum mt_err policy_read(struct store *st, char *const *keys, const char *const *who,
			       size_t n, struct policy_result *res, char *errbuf, size_t errsz)
{
	/* Room for a round trip's timelines: no more than asked (a summary
	 * asks one). */
	size_t room = n > 0 && n < STORE_POLICY_READS_MAX ? n : STORE_POLICY_READS_MAX;
	struct policy_event *ev = malloc(room * POLICY_EVENTS_MAX * sizeof(*ev));
	enum mt_err err = ev ? MT_E_OK : MT_E_NOMEM;

	for (size_t from = 0; err == MT_E_OK && from < n;) {
		size_t idx[STORE_POLICY_READS_MAX], ne[STORE_POLICY_READS_MAX], nb = 0;
		bool open[STORE_POLICY_READS_MAX];
		for (; from < n && nb < STORE_POLICY_READS_MAX; from++) {
			if (!keys[from])
				continue;
			ne[nb] = 0;
			open[nb] = true;
			idx[nb++] = from;
		}
		for (size_t at = 0; err == MT_E_OK && at < POLICY_EVENTS_MAX;
		     at += STORE_POLICY_PAGE) {
			struct batch b = {0};
			size_t asked[STORE_POLICY_READS_MAX], na = 0;
			for (size_t c = 0; c < nb; c++)
				if (open[c]) {
					asked[na++] = c;
					timeline_read(&b, keys[idx[c]], at);
				}
			if (na)
				err = batch_run(st, &b, errbuf, errsz);
			for (size_t k = 0; err == MT_E_OK && k < na; k++) {
				size_t c = asked[k];
				err = timeline_page(st, b.cmd[k].reply, who[idx[c]],
						    ev + c * POLICY_EVENTS_MAX, &ne[c], &open[c],
						    errbuf, errsz);
			}
			batch_free(&b);
			if (!na)
				break;
		}
		for (size_t c = 0; err == MT_E_OK && c < nb; c++)
			timeline_judge(st, ev + c * POLICY_EVENTS_MAX, ne[c], &res[idx[c]]);
	}
	free(ev);
	return err;
}

/* The counts hashes' answer (hmget_suppression) for the addresses i with
 * want[i] (NULL: all): one round trip; then, for those whose hash counts
 * a soft bounce, the policy over their timelines (policy_read).  An
 * address with soft_hint[i] (an index entry of a soft bounce; NULL: none)
 * has its timeline read in the same round trip as its counts (the first
 * STORE_POLICY_READS_MAX of them). */
static enum mt_err check_counts(struct store *st, const char *const *addresses, size_t n,
				const bool *want, const bool *soft_hint,
				struct store_suppression *out, char *errbuf, size_t errsz)
{
	struct batch b = {0};
	/* Per address: the command of its counts hash, and for an address
	 * with an empty tag the one of its older name (recipient_read_keys),
	 * read when the new one holds nothing; SIZE_MAX: none. */
	size_t *cmd = malloc(2 * (n ? n : 1) * sizeof(*cmd));
	char **keys = calloc(2 * (n ? n : 1), sizeof(*keys));
	char **rkeys = calloc(n ? n : 1, sizeof(*rkeys));
	struct policy_result *res = calloc(n ? n : 1, sizeof(*res));
	size_t *tl = malloc((n ? n : 1) * sizeof(*tl)); /* timeline_read's command */
	struct policy_event *ev = NULL;
	size_t nkeys = 0, nsoft = 0, nhint = 0;
	enum mt_err err = MT_E_NOMEM;

	if (!cmd || !keys || !rkeys || !res || !tl)
		goto out;
	for (size_t i = 0; i < n; i++) {
		cmd[2 * i] = cmd[2 * i + 1] = tl[i] = SIZE_MAX;
		if (!addresses[i] || (want && !want[i]))
			continue;
		suppression_clear(&out[i]);
		for (int old = 0; old < 1 + address_tag_empty(addresses[i]); old++) {
			char *k = old ? make_key(st, "counts", addresses[i])
				      : recipient_key(st, "counts", addresses[i]);
			if (!k)
				goto out;
			keys[nkeys++] = k;
			cmd[2 * i + (size_t)old] = b.n;
			hmget_suppression(&b, k, strlen(k));
		}
		/* At most STORE_POLICY_READS_MAX so (the replies held at once
		 * stay bounded): the others' come after, from policy_read. */
		if (soft_hint && soft_hint[i] && st->policy_reads && nhint < STORE_POLICY_READS_MAX &&
		    !address_tag_empty(addresses[i])) {
			nhint++;
			rkeys[i] = recipient_key(st, "rcpt", addresses[i]);
			if (!rkeys[i])
				goto out;
			tl[i] = b.n;
			timeline_read(&b, rkeys[i], 0);
		}
	}
	err = b.n ? batch_run(st, &b, errbuf, errsz) : MT_E_OK;
	for (size_t c = 0; err == MT_E_OK && c < b.n; c++) {
		if (!reply_ok(b.cmd[c].reply, REDIS_REPLY_ARRAY, errbuf, errsz)) {
			count_fault(NULL);
			err = MT_E_REDIS;
		}
	}
	if (err == MT_E_OK && !(ev = malloc(POLICY_EVENTS_MAX * sizeof(*ev))))
		err = MT_E_NOMEM;
	for (size_t i = 0; err == MT_E_OK && i < n; i++) {
		bool soft = false, old = false;
		res[i].reason = POLICY_NONE;
		if (cmd[2 * i] == SIZE_MAX)
			continue;
		if (!suppression_of(b.cmd[cmd[2 * i]].reply, &res[i], &soft) &&
		    cmd[2 * i + 1] != SIZE_MAX)
			old = suppression_of(b.cmd[cmd[2 * i + 1]].reply, &res[i], &soft);
		bool more = false; /* the timeline has more than its first page */
		if (tl[i] != SIZE_MAX) {
			/* Its first page read with the counts: judged now, or
			 * not needed, or (a page full) read whole below. */
			if (soft && st->policy_reads) {
				size_t ne = 0;
				err = timeline_page(st, b.cmd[tl[i]].reply, addresses[i], ev, &ne,
						    &more, errbuf, errsz);
				if (err == MT_E_OK && !more)
					timeline_judge(st, ev, ne, &res[i]);
			}
			if (!more) {
				free(rkeys[i]);
				rkeys[i] = NULL;
			} else {
				nsoft++;
			}
		} else if (soft && st->policy_reads) {
			rkeys[i] = old ? make_key(st, "rcpt", addresses[i])
				       : recipient_key(st, "rcpt", addresses[i]);
			if (!rkeys[i])
				err = MT_E_NOMEM;
			nsoft++;
		}
	}
	if (err == MT_E_OK && nsoft)
		err = policy_read(st, rkeys, addresses, n, res, errbuf, errsz);
	for (size_t i = 0; err == MT_E_OK && i < n; i++)
		if (cmd[2 * i] != SIZE_MAX)
			suppression_set(st, &res[i], &out[i]);
out:
	batch_free(&b);
	for (size_t i = 0; i < nkeys; i++)
		free(keys[i]);
	for (size_t i = 0; rkeys && i < n; i++)
		free(rkeys[i]);
	free(rkeys);
	free(ev);
	free(tl);
	free(res);
	free(keys);
	free(cmd);
	return err;
}

static void supp_rebuild_start(struct store *st);

/* An index entry's score as the event time and reason code; false when
 * it is not one the index writes. */
static bool supp_decode(const redisReply *r, int64_t *time_ms, int *code)
{
	if (!r || r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 18)
		return false;
	/* Redis writes an integral score as an integer; anything else
	 * (a fraction, a sign: no event of ours is before 1970) is not an
	 * entry of ours.  Read by hand: strtoll costs more, 500 a check. */
	long long v = 0;
	for (size_t i = 0; i < r->len; i++) {
		if (r->str[i] < '0' || r->str[i] > '9')
			return false;
		v = v * 10 + (r->str[i] - '0');
	}
	long long c = v % STORE_SUPP_CODES;
	*code = (int)c;
	*time_ms = (v - c) / STORE_SUPP_CODES;
	return policy_reason_name((enum policy_reason)*code) != NULL;
}

enum mt_err store_suppression_check(struct store *st, const char *const *addresses,
				    size_t n, struct store_suppression *out,
				    char *errbuf, size_t errsz)
{
	struct batch b = {0};
	size_t per[STORE_SUPP_BUCKETS] = {0}, at[STORE_SUPP_BUCKETS], cmd[STORE_SUPP_BUCKETS];
	unsigned *bucket = calloc(n ? n : 1, sizeof(*bucket));
	size_t *order = malloc((n ? n : 1) * sizeof(*order));
	bool *want = calloc(n ? n : 1, sizeof(*want));
	bool *soft = calloc(n ? n : 1, sizeof(*soft)); /* a soft bounce's entry */
	const char **argv = malloc((n + 2 * STORE_SUPP_BUCKETS) * sizeof(*argv));
	size_t *argl = malloc((n + 2 * STORE_SUPP_BUCKETS) * sizeof(*argl));
	size_t nwant = 0;
	enum mt_err err = MT_E_NOMEM;

	if (!bucket || !order || !want || !soft || !argv || !argl)
		goto out;
	for (size_t i = 0; i < n; i++) {
		suppression_clear(&out[i]);
		if (addresses[i])
			per[bucket[i] = store_supp_bucket(addresses[i])]++;
	}
	/* The addresses ordered by bucket (a counting sort), then the marker
	 * and one HMGET per bucket asked. */
	for (size_t k = 0, sum = 0; k < STORE_SUPP_BUCKETS; k++) {
		at[k] = sum;
		sum += per[k];
	}
	for (size_t i = 0; i < n; i++)
		if (addresses[i])
			order[at[bucket[i]]++] = i;
	batch_addf(&b, st->supp_ready_key, "EXISTS %s", st->supp_ready_key);
	for (size_t k = 0, a = 0, o = 0; k < STORE_SUPP_BUCKETS; k++) {
		cmd[k] = SIZE_MAX;
		if (per[k] == 0)
			continue;
		const char *key = st->supp_keys[k];
		argv[a] = "HMGET";
		argl[a] = 5;
		argv[a + 1] = key;
		argl[a + 1] = strlen(key);
		for (size_t j = 0; j < per[k]; j++, o++) {
			argv[a + 2 + j] = addresses[order[o]];
			argl[a + 2 + j] = strlen(addresses[order[o]]);
		}
		cmd[k] = b.n;
		char *raw;
		int rl = resp_format(&raw, (int)per[k] + 2, argv + a, argl + a);
		batch_push(&b, key, raw, rl);
		a += per[k] + 2;
	}
	err = batch_exec(st, &b, true, errbuf, errsz);
	if (err != MT_E_OK)
		goto out;
	const redisReply *ready = b.cmd[0].reply;
	if (!reply_ok(ready, REDIS_REPLY_INTEGER, errbuf, errsz)) {
		count_fault(NULL);
		err = MT_E_REDIS;
		goto out;
	}
	bool indexed = ready->integer == 1;
	/* The newest deciding event stored for the address, certainly still
	 * kept when it is at least this recent: a set is trimmed at most
	 * the retention period below its writer's clock (at most
	 * STORE_SUPP_SKEW_MS ahead of this one), and expires no sooner than
	 * the retention period after its last write, which came no sooner
	 * than a day (SES_TIME_AHEAD_MAX_MS) before the event's time. */
	int64_t safe_from = mt_time_now_ms() - st->retention_ms + SES_TIME_AHEAD_MAX_MS +
			    STORE_SUPP_SKEW_MS;
	for (size_t k = 0, o = 0; k < STORE_SUPP_BUCKETS; k++) {
		if (cmd[k] == SIZE_MAX)
			continue;
		const redisReply *r = b.cmd[cmd[k]].reply;
		if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != per[k]) {
			if (reply_ok(r, REDIS_REPLY_ARRAY, errbuf, errsz))
				snprintf(errbuf, errsz, "HMGET: unexpected answer");
			count_fault(NULL);
			err = MT_E_REDIS;
			goto out;
		}
		for (size_t j = 0; j < per[k]; j++, o++) {
			size_t i = order[o];
			int64_t t;
			int code;
			if (!indexed) {
				want[i] = true;
			} else if (r->element[j]->type == REDIS_REPLY_NIL) {
				continue; /* never a deciding event: not suppressed */
			} else if (supp_decode(r->element[j], &t, &code) && t >= safe_from &&
				   code <= POLICY_PERMANENT) {
				/* A complaint or a permanent bounce, certainly
				 * kept: nothing lifts it.  Codes 2 and 3 (a soft
				 * bounce: a delivery may have lifted it, the
				 * policy may have changed) are verified. */
				struct policy_result pr = {(enum policy_reason)code, t, false, ""};
				suppression_set(st, &pr, &out[i]);
			} else {
				want[i] = true;
				soft[i] = supp_decode(r->element[j], &t, &code) &&
					  code >= POLICY_STATUS;
			}
			nwant += want[i];
		}
	}
	if (!indexed)
		supp_rebuild_start(st);
	if (nwant)
		err = check_counts(st, addresses, n, want, soft, out, errbuf, errsz);
out:
	batch_free(&b);
	free(argl);
	free(argv);
	free(soft);
	free(want);
	free(order);
	free(bucket);
	return err;
}

bool store_scan_cursor_valid(const struct store *st, uint64_t cursor)
{
	return !st->cluster || (cursor >> STORE_SCAN_NODE_BITS) < RCLUSTER_SLOTS;
}

/* s with the glob characters of Redis's MATCH escaped, into out (at
 * least 2 * strlen(s) + 1 bytes). */
static void glob_escape(const char *s, char *out)
{
	for (; *s; s++) {
		if (strchr("*?[]\\", *s))
			*out++ = '\\';
		*out++ = *s;
	}
	*out = '\0';
}

/* The address a counts key names (recipient_key's two forms, and the
 * older name of an address with an empty tag), or NULL when key is not
 * one; *len its length. */
static const char *address_of_counts_key(const struct store *st, const redisReply *key,
					 size_t *len)
{
	static const char kind[] = "counts:";
	size_t lp = strlen(st->prefix), lk = sizeof(kind) - 1;
	if (key->type != REDIS_REPLY_STRING || key->len < lp + lk + 3 ||
	    memcmp(key->str, st->prefix, lp) != 0 || memcmp(key->str + lp, kind, lk) != 0)
		return NULL;
	const char *rest = key->str + lp + lk;
	size_t rl = key->len - lp - lk;
	if (rest[0] != '{')
		return NULL;
	/* "{sha256:<64 hex>}<address>": an address never ends with '}'. */
	if (rl > DIGEST_TAG_LEN + 2 && memcmp(rest + 1, "sha256:", 7) == 0 &&
	    rest[1 + DIGEST_TAG_LEN] == '}' && rest[rl - 1] != '}') {
		*len = rl - DIGEST_TAG_LEN - 2;
		return rest + DIGEST_TAG_LEN + 2;
	}
	if (rest[rl - 1] != '}')
		return NULL;
	*len = rl - 2;
	return *len <= SES_ADDRESS_MAX ? rest + 1 : NULL;
}

/* A key of the given hash slot (the decimal digits of the first number
 * whose key slot it is) into out (at least 24 bytes); false when none is
 * found in bounds (cannot be: every slot has one below 2^20). */
static bool slot_route_key(unsigned slot, char out[24])
{
	for (int64_t k = 0; k < (INT64_C(1) << 22); k++) {
		size_t len = format_i64(out, k);
		if (rcluster_key_slot(out, len) == slot)
			return true;
	}
	return false;
}

/* The masters of the Cluster, each known by the lowest slot it owns: the
 * walk's order.  *next = the lowest slot of the master that comes after
 * the one whose walk holds slot (the smallest such lowest slot above
 * slot), 0 when there is none (the walk ends with this master). */
static enum mt_err next_master_slot(struct store *st, unsigned slot, unsigned *next,
				    char *errbuf, size_t errsz)
{
	redisReply *r = command(st, NULL, errbuf, errsz, "CLUSTER SLOTS");
	if (!r)
		return MT_E_REDIS;
	if (r->type != REDIS_REPLY_ARRAY) {
		freeReplyObject(r);
		snprintf(errbuf, errsz, "CLUSTER SLOTS: unexpected answer");
		return MT_E_REDIS;
	}
	*next = 0;
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    e->element[0]->type != REDIS_REPLY_INTEGER ||
		    e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
			continue;
		/* This range's master's lowest slot. */
		long long low = e->element[0]->integer;
		const redisReply *m = e->element[2];
		for (size_t j = 0; j < r->elements; j++) {
			const redisReply *f = r->element[j];
			if (f->type != REDIS_REPLY_ARRAY || f->elements < 3 ||
			    f->element[0]->type != REDIS_REPLY_INTEGER ||
			    f->element[2]->type != REDIS_REPLY_ARRAY || f->element[2]->elements < 2)
				continue;
			const redisReply *g = f->element[2];
			if (g->element[0]->type == REDIS_REPLY_STRING &&
			    m->element[0]->type == REDIS_REPLY_STRING &&
			    strcmp(g->element[0]->str, m->element[0]->str) == 0 &&
			    g->element[1]->type == REDIS_REPLY_INTEGER &&
			    m->element[1]->type == REDIS_REPLY_INTEGER &&
			    g->element[1]->integer == m->element[1]->integer &&
			    f->element[0]->integer < low)
				low = f->element[0]->integer;
		}
		if (low > (long long)slot && (*next == 0 || low < (long long)*next))
			*next = (unsigned)low;
	}
	freeReplyObject(r);
	return MT_E_OK;
}

enum mt_err store_suppressions_scan(struct store *st, uint64_t cursor, size_t count,
				    int64_t since_ms, store_suppressed_fn fn, void *arg,
				    uint64_t *next, char *errbuf, size_t errsz)
{
	struct batch b = {0};
	enum mt_err err = MT_E_OK;
	size_t lp = strlen(st->prefix);
	char *pattern = malloc(2 * lp + 16);
	redisReply *r = NULL;
	struct policy_result *res = NULL;
	char **rkeys = NULL, **who = NULL;

	*next = 0;
	if (!pattern)
		return MT_E_NOMEM;
	glob_escape(st->prefix, pattern);
	memcpy(pattern + strlen(pattern), "counts:*", sizeof("counts:*"));
	if (count < 1)
		count = 1;
	if (count > STORE_SCAN_STEP_MAX)
		count = STORE_SCAN_STEP_MAX;
	/* The store's one server (any key routes there), or in a Cluster the
	 * master that owns the cursor's slot (a key of that slot routes
	 * there). */
	unsigned slot = 0, next_slot = 0;
	uint64_t node_cursor = cursor;
	char route[24];
	if (st->cluster) {
		slot = (unsigned)(cursor >> STORE_SCAN_NODE_BITS);
		node_cursor = cursor & ((UINT64_C(1) << STORE_SCAN_NODE_BITS) - 1);
		if (slot >= RCLUSTER_SLOTS || !slot_route_key(slot, route)) {
			snprintf(errbuf, errsz, "not a cursor of this walk");
			err = MT_E_INTERNAL;
			goto out;
		}
		err = next_master_slot(st, slot, &next_slot, errbuf, errsz);
		if (err != MT_E_OK)
			goto out;
	}
	r = command(st, st->cluster ? route : st->recent_key, errbuf, errsz,
		    "SCAN %llu MATCH %s COUNT %llu", (unsigned long long)node_cursor, pattern,
		    (unsigned long long)count);
	if (!r) {
		err = MT_E_REDIS;
		goto out;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_ARRAY) {
		snprintf(errbuf, errsz, "SCAN: unexpected answer");
		err = MT_E_REDIS;
		goto out;
	}
	unsigned long long nc = strtoull(r->element[0]->str, NULL, 10);
	const redisReply *keys = r->element[1];
	for (size_t i = 0; i < keys->elements; i++) {
		size_t len;
		if (!address_of_counts_key(st, keys->element[i], &len))
			continue;
		hmget_suppression(&b, keys->element[i]->str, keys->element[i]->len);
	}
	err = b.n ? batch_run(st, &b, errbuf, errsz) : MT_E_OK;
	/* Per key: what its counts say, and for those that count a soft
	 * bounce, its sorted set's name and address (policy_read). */
	size_t nk = keys->elements, nsoft = 0;
	res = calloc(nk ? nk : 1, sizeof(*res));
	rkeys = calloc(nk ? nk : 1, sizeof(*rkeys));
	who = calloc(nk ? nk : 1, sizeof(*who));
	if (err == MT_E_OK && (!res || !rkeys || !who))
		err = MT_E_NOMEM;
	for (size_t i = 0, c = 0; err == MT_E_OK && i < nk; i++) {
		size_t alen;
		bool soft, found;
		res[i].reason = POLICY_NONE;
		const char *address = address_of_counts_key(st, keys->element[i], &alen);
		if (!address)
			continue;
		if (c == b.n)
			break; /* cannot be: one command per such key */
		const redisReply *a = b.cmd[c++].reply;
		if (a && a->type == REDIS_REPLY_ERROR && strncmp(a->str, "WRONGTYPE", 9) == 0)
			continue; /* not a hash: not one of ours */
		if (!reply_ok(a, REDIS_REPLY_ARRAY, errbuf, errsz)) {
			/* Any other error (an ACL refusing HMGET...) fails the
			 * step rather than leave addresses out unseen. */
			count_fault(NULL);
			err = MT_E_REDIS;
			break;
		}
		found = suppression_of(a, &res[i], &soft);
		if (!found || !soft || !st->policy_reads)
			continue;
		/* Its set: the same name with "rcpt:" for "counts:". */
		const char *kstr = keys->element[i]->str;
		size_t rest = keys->element[i]->len - lp - 7;
		rkeys[i] = malloc(lp + 5 + rest + 1);
		who[i] = malloc(alen + 1);
		if (!rkeys[i] || !who[i]) {
			err = MT_E_NOMEM;
			break;
		}
		memcpy(rkeys[i], kstr, lp);
		memcpy(rkeys[i] + lp, "rcpt:", 5);
		memcpy(rkeys[i] + lp + 5, kstr + lp + 7, rest);
		rkeys[i][lp + 5 + rest] = '\0';
		memcpy(who[i], address, alen);
		who[i][alen] = '\0';
		nsoft++;
	}
	if (err == MT_E_OK && nsoft)
		err = policy_read(st, rkeys, (const char *const *)who, nk, res, errbuf, errsz);
	for (size_t i = 0; err == MT_E_OK && i < nk; i++) {
		struct store_suppressed s;
		s.address = address_of_counts_key(st, keys->element[i], &s.address_len);
		if (!s.address || res[i].reason == POLICY_NONE)
			continue;
		suppression_set(st, &res[i], &s.s);
		if (s.s.time_ms < since_ms)
			continue;
		if (!fn(arg, &s)) {
			snprintf(errbuf, errsz, "out of memory");
			err = MT_E_NOMEM;
		}
	}
	if (err == MT_E_OK && st->cluster) {
		/* This master's walk goes on, or the next master's begins. */
		if (nc >= (UINT64_C(1) << STORE_SCAN_NODE_BITS)) {
			snprintf(errbuf, errsz, "SCAN cursor too large to page over a Cluster");
			err = MT_E_REDIS;
		} else if (nc != 0) {
			*next = (uint64_t)slot << STORE_SCAN_NODE_BITS | nc;
		} else {
			*next = (uint64_t)next_slot << STORE_SCAN_NODE_BITS;
		}
	} else if (err == MT_E_OK) {
		*next = nc;
	}
out:
	for (size_t i = 0; r && rkeys && who && i < r->element[1]->elements; i++) {
		free(rkeys[i]);
		free(who[i]);
	}
	free(who);
	free(rkeys);
	free(res);
	freeReplyObject(r);
	batch_free(&b);
	free(pattern);
	return err;
}

/* ---- the suppression index: its rebuild ------------------------------- */

/* store_suppressions_scan's callback in the rebuild: the address's entry
 * raised to its counts hash's deciding event (supp_script, as at
 * ingest). */
static bool rebuild_add(void *arg, const struct store_suppressed *s)
{
	struct batch *b = ((void **)arg)[0];
	const struct store *st = ((void **)arg)[1];
	char address[SES_ADDRESS_MAX + 1], score[32];
	int code = supp_code(s->s.reason);
	if (code < 0 || s->address_len > SES_ADDRESS_MAX ||
	    memchr(s->address, '\0', s->address_len))
		return true;
	memcpy(address, s->address, s->address_len);
	address[s->address_len] = '\0';
	const char *key = st->supp_keys[store_supp_bucket(address)];
	size_t sl = format_i64(score, s->s.time_ms * STORE_SUPP_CODES + code);
	const char *argv[] = {"EVALSHA", st->supp_sha, "1", key, "put", address, score};
	const size_t argl[] = {7, 40, 1, strlen(key), 3, s->address_len, sl};
	batch_add(b, key, 7, argv, argl);
	return !b->nomem;
}

/* Removes the index of the layout before, its marker and rebuild token
 * (the same names with "supp:" for "suppidx:"). */
static void supp_old_remove(struct store *st)
{
	struct batch b = {0};
	char *keys[STORE_SUPP_BUCKETS + 2] = {0};
	char n[16], err[256], digest[16];
	size_t lp = strlen(st->prefix) + 64;
	policy_digest(&st->policy, digest);
	for (unsigned i = 0; i < STORE_SUPP_BUCKETS; i++) {
		snprintf(n, sizeof(n), "%u", i);
		keys[i] = make_key(st, "supp", n);
	}
	keys[STORE_SUPP_BUCKETS] = malloc(lp);
	keys[STORE_SUPP_BUCKETS + 1] = malloc(lp);
	if (keys[STORE_SUPP_BUCKETS])
		snprintf(keys[STORE_SUPP_BUCKETS], lp, "%ssupp:ready:%s", st->prefix, digest);
	if (keys[STORE_SUPP_BUCKETS + 1])
		snprintf(keys[STORE_SUPP_BUCKETS + 1], lp, "%ssupp:rebuilding", st->prefix);
	for (size_t i = 0; i < STORE_SUPP_BUCKETS + 2; i++)
		if (keys[i])
			batch_addf(&b, keys[i], "UNLINK %s", keys[i]);
	/* On failure they stay (harmless: nothing reads them). */
	if (b.n && batch_run(st, &b, err, sizeof(err)) != MT_E_OK)
		count_fault(NULL);
	batch_free(&b);
	for (size_t i = 0; i < STORE_SUPP_BUCKETS + 2; i++)
		free(keys[i]);
}

/* The rebuild: every counts hash's suppression into the index, a SCAN
 * step at a time, then the marker, unless another rebuild began meanwhile
 * (its token replaced ours) or the keys were emptied (the token is gone):
 * writes since the index exists are in it already (supp_script's put
 * commutes).  Then the index of the layout before (sorted sets under
 * "supp:", whose reads needed a float formatted for each entry) goes. */
static void *supp_rebuild_main(void *arg)
{
	struct store *st = arg;
	char err[256], token[48];
	uint64_t cursor = 0, next = 0;
	bool ok = true;
	snprintf(token, sizeof(token), "%lld-%p", (long long)mt_time_now_ms(), (void *)st);
	redisReply *r = command(st, st->supp_rebuild_key, err, sizeof(err), "SET %s %s PX %d",
				st->supp_rebuild_key, token, 86400 * 1000);
	ok = r != NULL;
	freeReplyObject(r);
	while (ok && !atomic_load(&st->supp_stop)) {
		struct batch b = {0};
		void *ctx[2] = {&b, st};
		ok = store_suppressions_scan(st, cursor, STORE_SCAN_STEP_MAX, INT64_MIN, rebuild_add,
					     ctx, &next, err, sizeof(err)) == MT_E_OK;
		if (ok && (b.n || b.nomem))
			ok = batch_run(st, &b, err, sizeof(err)) == MT_E_OK;
		for (size_t c = 0; ok && c < b.n; c++)
			ok = reply_ok(b.cmd[c].reply, REDIS_REPLY_INTEGER, err, sizeof(err));
		batch_free(&b);
		cursor = next;
		if (cursor == 0)
			break;
	}
	if (ok && !atomic_load(&st->supp_stop)) {
		r = command(st, st->supp_rebuild_key, err, sizeof(err), "GET %s",
			    st->supp_rebuild_key);
		if (r && r->type == REDIS_REPLY_STRING && strcmp(r->str, token) == 0) {
			freeReplyObject(command(st, st->supp_ready_key, err, sizeof(err),
						"SET %s 1", st->supp_ready_key));
			freeReplyObject(command(st, st->supp_rebuild_key, err, sizeof(err),
						"DEL %s", st->supp_rebuild_key));
			supp_old_remove(st);
		}
		freeReplyObject(r);
	}
	atomic_store(&st->supp_rebuilding, false);
	return NULL;
}

/* Starts the rebuild unless one runs in this process. */
static void supp_rebuild_start(struct store *st)
{
	if (atomic_load(&st->supp_rebuilding) || atomic_load(&st->supp_stop))
		return;
	pthread_mutex_lock(&st->supp_lock);
	if (!atomic_load(&st->supp_rebuilding) && !atomic_load(&st->supp_stop)) {
		if (st->supp_thread_started) /* the last one, over */
			pthread_join(st->supp_thread, NULL);
		atomic_store(&st->supp_rebuilding, true);
		st->supp_thread_started =
			pthread_create(&st->supp_thread, NULL, supp_rebuild_main, st) == 0;
		if (!st->supp_thread_started)
			atomic_store(&st->supp_rebuilding, false);
	}
	pthread_mutex_unlock(&st->supp_lock);
}

/* Stops a running rebuild (after its current step) and waits for it. */
static void supp_rebuild_stop(struct store *st)
{
	atomic_store(&st->supp_stop, true);
	pthread_mutex_lock(&st->supp_lock);
	if (st->supp_thread_started)
		pthread_join(st->supp_thread, NULL);
	st->supp_thread_started = false;
	pthread_mutex_unlock(&st->supp_lock);
}

/* Most key names one recipient's data has (recipient_key_names). */
#define RECIPIENT_KEYS_MAX 8

/* Every key name under which the store may hold data of one recipient,
 * malloc'd into names (caller frees each, also on failure); returns how
 * many, or 0 when out of memory.  A key kind added for recipients (e.g.
 * a per-type index) is added here, and erasure follows. */
static size_t recipient_key_names(const struct store *st, const char *address,
				  char *names[RECIPIENT_KEYS_MAX])
{
	static const char *const kinds[] = {"rcpt", "counts"};
	size_t n = 0;
	bool nomem = false;
	for (size_t k = 0; k < sizeof(kinds) / sizeof(*kinds); k++) {
		names[n] = recipient_key(st, kinds[k], address);
		nomem |= !names[n++];
		/* Older names of an address with an empty tag (a single
		 * server took them). */
		if (address_tag_empty(address)) {
			names[n] = make_key(st, kinds[k], address);
			nomem |= !names[n++];
		}
	}
	return nomem ? 0 : n;
}

/* Removes the recent feed's entries that ZSCAN MATCH pattern finds (ZREM
 * of each page's entries, pipelined after the next ZSCAN); adds how many
 * went to *removed. */
static enum mt_err feed_remove_matching(struct store *st, const char *pattern,
					size_t *removed, char *errbuf, size_t errsz)
{
	const char *rk = st->recent_key;
	unsigned long long cursor = 0;
	enum mt_err err = MT_E_OK;
	do {
		redisReply *r = command(st, rk, errbuf, errsz, "ZSCAN %s %llu MATCH %s COUNT 1000",
					rk, cursor, pattern);
		if (!r)
			return MT_E_REDIS;
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			freeReplyObject(r);
			snprintf(errbuf, errsz, "ZSCAN: unexpected answer");
			return MT_E_REDIS;
		}
		cursor = strtoull(r->element[0]->str, NULL, 10);
		const redisReply *e = r->element[1];
		size_t nm = e->elements / 2; /* member, score */
		if (nm > 0) {
			const char **argv = calloc(nm + 2, sizeof(*argv));
			size_t *argl = calloc(nm + 2, sizeof(*argl));
			struct batch b = {0};
			if (!argv || !argl) {
				err = MT_E_NOMEM;
			} else {
				argv[0] = "ZREM";
				argl[0] = 4;
				argv[1] = rk;
				argl[1] = strlen(rk);
				for (size_t i = 0; i < nm; i++) {
					argv[2 + i] = e->element[2 * i]->str;
					argl[2 + i] = e->element[2 * i]->len;
				}
				batch_add(&b, rk, (int)nm + 2, argv, argl);
				err = batch_run(st, &b, errbuf, errsz);
				if (err == MT_E_OK &&
				    !reply_ok(b.cmd[0].reply, REDIS_REPLY_INTEGER, errbuf, errsz)) {
					count_fault(NULL);
					err = MT_E_REDIS;
				}
				if (err == MT_E_OK)
					*removed += (size_t)b.cmd[0].reply->integer;
			}
			batch_free(&b);
			free(argl);
			free(argv);
		}
		freeReplyObject(r);
	} while (err == MT_E_OK && cursor != 0);
	return err;
}

/* Type index keys one erasure removes at most: one per event type
 * (ses.c names ten). */
#define ERASE_TYPE_KEYS_MAX 32

/* Adds an UNLINK to b for each type index key the recipient may have: the
 * types its counts hash counts (put_script's "type:<T>" fields).  The key
 * names go to keys[] (the batch routes by them: the caller frees them
 * after the batch ran). */
static enum mt_err add_type_index_unlinks(struct store *st, const char *address,
					  struct batch *b, char *keys[ERASE_TYPE_KEYS_MAX],
					  char *errbuf, size_t errsz)
{
	char *counts = recipient_key(st, "counts", address);
	if (!counts)
		return MT_E_NOMEM;
	redisReply *r = command(st, counts, errbuf, errsz, "HKEYS %s", counts);
	free(counts);
	if (!r)
		return MT_E_REDIS;
	enum mt_err err = MT_E_OK;
	size_t nk = 0;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements &&
			   nk < ERASE_TYPE_KEYS_MAX; i++) {
		const redisReply *f = r->element[i];
		if (f->type != REDIS_REPLY_STRING || f->len <= 5 || memcmp(f->str, "type:", 5) != 0 ||
		    memchr(f->str, '\0', f->len))
			continue;
		keys[nk] = type_index_key(st, address, f->str + 5);
		if (!keys[nk]) {
			err = MT_E_NOMEM;
			break;
		}
		batch_addf(b, keys[nk], "UNLINK %s", keys[nk]);
		nk++;
	}
	freeReplyObject(r);
	return err;
}

enum mt_err store_recipient_erase(struct store *st, const char *address,
				  struct store_erasure *out, char *errbuf, size_t errsz)
{
	char *names[RECIPIENT_KEYS_MAX] = {0}, *tkeys[ERASE_TYPE_KEYS_MAX] = {0};
	struct batch b = {0};
	size_t la = strlen(address);
	/* A glob pattern of the address (escaped) with room for the JSON
	 * around it; an address holds no '"' or '\\' to JSON-escape
	 * (ses_address_normalize). */
	char *pattern = malloc(2 * la + 32);
	char *esc = malloc(2 * la + 1);
	enum mt_err err = MT_E_NOMEM;

	*out = (struct store_erasure){0, 0};
	size_t n = recipient_key_names(st, address, names);
	if (n == 0 || !pattern || !esc)
		goto out;
	/* The message index's references are found from the recipient's
	 * events: before the set goes. */
	err = store_forget_message_refs(st, address, errbuf, errsz);
	if (err != MT_E_OK)
		goto out;
	for (size_t i = 0; i < n; i++)
		batch_addf(&b, names[i], "UNLINK %s", names[i]);
	/* Its type index keys (a recipient of STORE_INDEX_MIN events or
	 * more): one per type its counts hash names. */
	err = add_type_index_unlinks(st, address, &b, tkeys, errbuf, errsz);
	if (err != MT_E_OK)
		goto out;
	err = batch_run(st, &b, errbuf, errsz);
	for (size_t c = 0; err == MT_E_OK && c < b.n; c++) {
		if (!reply_ok(b.cmd[c].reply, REDIS_REPLY_INTEGER, errbuf, errsz)) {
			count_fault(NULL);
			err = MT_E_REDIS;
		} else {
			out->keys += (size_t)b.cmd[c].reply->integer;
		}
	}
	if (err != MT_E_OK)
		goto out;
	glob_escape(address, esc);
	/* References, "<address> <message prefix>", then entries written
	 * before references: the recipient's EVENT JSON. */
	snprintf(pattern, 2 * la + 32, "%s *", esc);
	err = feed_remove_matching(st, pattern, &out->feed_entries, errbuf, errsz);
	if (err != MT_E_OK)
		goto out;
	snprintf(pattern, 2 * la + 32, "{*\"recipient\":\"%s\"*", esc);
	err = feed_remove_matching(st, pattern, &out->feed_entries, errbuf, errsz);
	if (err != MT_E_OK)
		goto out;
	/* Its suppression index entry, last: until then it is a candidate
	 * that the counts (gone) answer. */
	const char *sk = st->supp_keys[store_supp_bucket(address)];
	redisReply *zr = command(st, sk, errbuf, errsz, "HDEL %s %s", sk, address);
	err = zr ? MT_E_OK : MT_E_REDIS;
	freeReplyObject(zr);
out:
	if (err == MT_E_NOMEM)
		snprintf(errbuf, errsz, "out of memory");
	batch_free(&b);
	for (size_t i = 0; i < ERASE_TYPE_KEYS_MAX; i++)
		free(tkeys[i]);
	for (size_t i = 0; i < RECIPIENT_KEYS_MAX; i++)
		free(names[i]);
	free(esc);
	free(pattern);
	return err;
}
