/* store.h - the Redis side: per-recipient timelines and friends.
 *
 * Keys (prefix = --redis-prefix):
 *   {prefix}rcpt:{<address>}  sorted set per recipient, score = event ms,
 *                             member = the EVENT as member.h stores it
 *                             (older members: the EVENT JSON); for an address that
 *                             begins with '}' (whose own hash tag Redis
 *                             reads as empty) {prefix}rcpt:{sha256:<hex
 *                             digest of the address>}<address>
 *   {prefix}counts:{...}      hash per recipient, the summary's counts,
 *                             named like its sorted set (and "index" = 1
 *                             while it has a type index)
 *   {prefix}bytype:{...}:<T>  sorted set per type of a recipient with at
 *                             least STORE_INDEX_MIN events (its type
 *                             index): score = event ms, member = the
 *                             event's message prefix; named like its
 *                             sorted set, then ':' and the type
 *   {prefix}recent            sorted set, the newest STORE_RECENT_MAX
 *                             events across recipients: score = event
 *                             ms, member = "<address> <member prefix>",
 *                             a reference into the address's set (older
 *                             entries: the EVENT JSON itself)
 *   {prefix}mail:{<sesMessageId>} sorted set per SES message id
 *                             (mail.messageId), the message index: score
 *                             = event ms, member = a reference like the
 *                             recent feed's, one per event of that mail;
 *                             the first STORE_MESSAGE_REFS_MAX to come
 *                             kept, later ones dropped
 *   {prefix}topics            hash, the topic references of compact
 *                             members (member.h) -> the ARN's JSON text
 *   {prefix}topic:{<arn>}     sorted set per topic, score = SNS Timestamp
 *                             ms, member = a non-SES (or not indexable)
 *                             notification as JSON
 *   {prefix}suppidx:{<n>}     the suppression index, n = 0..63 (below)
 *   {prefix}suppidx:ready:<p> string, the index's marker: it holds
 *                             everything (p: policy_digest, "1" without
 *                             statuses and repeated soft bounces);
 *                             suppidx:rebuilding, the token of the
 *                             rebuild under way
 * Connections, and in a Redis Cluster the routing of each key to its
 * node, are rcluster.h's.
 * Every write is idempotent, which is what makes SNS redelivery harmless
 * and a half-done write safe to retry: a member begins with its SNS
 * MessageId, and a member of the same message at the same score is stored
 * once, whatever bytes a copy of mailtrail with other flags would build.
 * Each set is trimmed to the retention window measured back from its newest
 * score or from now, whichever is earlier (so no event dated in the future
 * trims genuine ones), capped in size, and expires after the retention period without
 * writes (at most STORE_EXPIRY_SLACK_MS later).
 */
#ifndef STORE_H
#define STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "buf.h"
#include "config.h"
#include "mt_error.h"
#include "policy.h"
#include "rcluster.h"
#include "ses.h"

#define STORE_RECENT_MAX 10000
/* Topic references this process keeps in memory (it reads a missing one
 * from {prefix}topics again); a topic is written to {prefix}topics again
 * when this process has not written it for STORE_TOPIC_RENEW_MS. */
#define STORE_TOPICS_MAX 64
#define STORE_TOPIC_RENEW_MS (600 * 1000)
/* A key expires between the retention period and this much more after
 * its last write: its expiry is renewed only when it has fallen below the
 * retention period (the store script costs less that way). */
#define STORE_EXPIRY_SLACK_MS (3600 * 1000)
#define STORE_RCPT_EVENTS_MAX 100000
/* A recipient's set of this many events gets a type index (store.h's
 * layout), which it keeps until trims bring it below STORE_INDEX_OFF: a
 * type-filtered page then reads the events of its type only. */
#define STORE_INDEX_MIN 256
#define STORE_INDEX_OFF 128
#define STORE_TOPIC_MESSAGES_MAX 10000
/* Idle connections kept for reuse (per node in a Redis Cluster). */
#define STORE_POOL_MAX 128
#define STORE_CONNECT_TIMEOUT_MS 1000
#define STORE_COMMAND_TIMEOUT_MS 2000
/* Most commands that batches of concurrent requests send together in one
 * round trip (a larger batch goes alone); a batch queued longer than
 * STORE_COMMAND_TIMEOUT_MS behind a stuck group answers 503. */
#define STORE_GROUP_COMMANDS_MAX 512
/* Groups in flight at once. */
#define STORE_GROUP_RUNNING_MAX 2

struct store;

/* Does not connect yet.  Returns NULL on allocation failure; free with
 * store_free(). */
struct store *store_new(const struct config_redis *redis, const char *prefix,
			unsigned retention_days);
void store_free(struct store *st);

/* Whether writes also keep the message index (--message-index; off after
 * store_new): {prefix}mail:{<sesMessageId>}, about 170 bytes of Redis an
 * event on a typical mix (README, "Redis memory"). */
void store_set_message_index(struct store *st, bool on);

/* The suppression policy (policy.h) the summary, the check, the export
 * and the index's writes follow; policy_default() until set.  Set once,
 * before the store is used from other threads. */
void store_set_policy(struct store *st, const struct policy *p);
/* Borrowed; lives as long as st. */
const struct policy *store_policy(const struct store *st);

/* One notification's writes: its events (each also in the recent feed)
 * and/or, for a notification that is not an indexable SES event, a record
 * kept under its topic (raw_json is the member to store). */
struct store_item {
	const struct ses_events *evs; /* NULL: none */
	const char *raw_topic;        /* NULL: no raw record */
	int64_t raw_time_ms;
	const char *raw_json;
	size_t raw_len;
	/* out */
	enum mt_err err; /* MT_E_REDIS when Redis is unreachable or errs,
			  * MT_E_REDIS_REFUSED when it answers the write
			  * with an error that retrying does not cure */
	size_t added;    /* writes that were new (0 for a redelivery) */
	/* Events stored but not counted in the deliverability counters (a
	 * Redis Cluster counts them in one more round trip, which failed);
	 * the delivery still succeeds.  errbuf says why when err is not set. */
	size_t stats_failed;
	char *errbuf;    /* says why, when err is set */
	size_t errsz;
};

/* Stores n items together: one round trip (per node in a Cluster), shared
 * with concurrent callers' (groupcommit.h).  Each item gets its own
 * answer. */
void store_put_many(struct store *st, struct store_item *const *items, size_t n);

/* Most events in one page of a query. */
#define STORE_PAGE_MAX 1000
/* Most entries a filtered query (by type, or the recent feed by domain)
 * examines before it returns a (possibly short) page with a cursor.  The
 * recent feed holds about STORE_RECENT_MAX entries, so a domain filter
 * examines the whole feed at most once per page. */
#define STORE_SCAN_MAX 20000
/* Entries of the recent feed read per round trip by a domain filter
 * without a type filter: an entry of another domain costs no member
 * read (its reference begins with its address). */
#define STORE_FEED_DOMAIN_BATCH 1000
/* Most events sharing one millisecond returned together. */
#define STORE_GROUP_MAX 10000

struct store_query {
	bool has_before, has_after;
	int64_t before, after; /* exclusive bounds, event ms */
	const char *type;      /* NULL: any type */
	const char *domain;    /* the recent feed only: recipients of this
				* domain (lower case, no '@'); NULL: any */
	size_t limit;          /* 1..STORE_PAGE_MAX */
};

/* Most bytes of EVENT JSON in one page (a page of large events that would
 * pass it is an error, not a shorter page). */
#define STORE_PAGE_BYTES_MAX (64u << 20)

struct store_page {
	struct buf events; /* the EVENTs' JSON, comma-separated: what goes
			    * between an array's brackets; owned */
	size_t n;          /* how many */
	bool more;         /* then next_before is the cursor */
	int64_t next_before;
};

/* A page of events, newest first: of one recipient (normalised address),
 * or of the recent feed when address is NULL.  Paging with
 * before = next_before returns every event exactly once, also when many
 * share one millisecond.  Free out with store_page_free(). */
enum mt_err store_query_events(struct store *st, const char *address,
			       const struct store_query *q,
			       struct store_page *out, char *errbuf,
			       size_t errsz);
void store_page_free(struct store_page *page);

struct store_summary {
	struct json_object *counts;     /* {"Bounce":n,...}; owned */
	struct json_object *last_event; /* EVENT or NULL; owned */
	const char *reason; /* policy_reason_name() or NULL (static) */
	char reason_text[POLICY_TEXT_MAX]; /* the reason in words; "" with none */
};

/* What is known of one recipient.  Free with store_summary_free(). */
enum mt_err store_recipient_summary(struct store *st, const char *address,
				    struct store_summary *out, char *errbuf,
				    size_t errsz);
void store_summary_free(struct store_summary *sum);

/* ---- the message index ----
 * Written with the events (store_put_many, same round trip), one
 * reference per event to the member of its recipient's set, like the
 * recent feed's; expires with the events (the retention period after its
 * last write, at most STORE_EXPIRY_SLACK_MS more). */

/* Longest SES message id indexed and looked up.  SES writes 60
 * characters ("0100018c1a2b3c4d-1a2b3c4d-...-000000"); its documentation
 * promises no length, so there is room. */
#define STORE_MESSAGE_ID_MAX 128
/* Most references kept per SES message: the first to come (later ones
 * are dropped and counted, mailtrail_message_refs_dropped_total, never
 * replacing earlier ones: whoever gets a message signed chooses its
 * mail.messageId and event time, so a trim by time would let forged
 * references naming a real mail's id push its genuine ones out, and a
 * mail's genuine events come first).  SES allows 50 recipients a mail,
 * each with a few events (send, delivery, opens, clicks...); a signed
 * notification can name up to SES_RECIPIENTS_MAX (1,000) recipients.
 * Also the most events one lookup returns. */
#define STORE_MESSAGE_REFS_MAX 2000

/* Whether id[0..len) is an SES message id the index takes: 1 to
 * STORE_MESSAGE_ID_MAX of [A-Za-z0-9-] (what SES writes; nothing that a
 * key, a log line or a URL would have to escape). */
static inline bool store_message_id_valid(const char *id, size_t len)
{
	if (len == 0 || len > STORE_MESSAGE_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return true;
}

/* Every stored event of one SES message (message_id valid, else
 * MT_E_INTERNAL), grouped by recipient: *out is a new array (caller puts
 * it) of {"recipient":"a@x","events":[EVENT,...]}, each group's events
 * newest first, the groups ordered by their newest event (newest first),
 * empty when nothing is known.  A reference whose event is no longer
 * stored (trimmed by retention or size, erased) is left out. */
enum mt_err store_message_events(struct store *st, const char *message_id,
				 struct json_object **out, char *errbuf, size_t errsz);

/* Erasure's part of the message index: removes the references of one
 * recipient (normalised address) from the index of every message that
 * its stored events belong to.  Reads the recipient's set, so call it
 * before deleting that set; idempotent.  Costs a round trip a
 * 1,000 events. */
enum mt_err store_forget_message_refs(struct store *st, const char *address,
				      char *errbuf, size_t errsz);
/* Redis keeps a sorted set or hash compact (a listpack: about 10 bytes an
 * entry besides its bytes) while it has at most *-max-listpack-entries
 * entries none longer than *-max-listpack-value bytes, else converts it
 * for good (skiplist or hashtable: about 850 bytes for an empty one and
 * 140 an entry more).  Redis's defaults (128 entries, 64 bytes) make every
 * recipient's set a skiplist from its first event.  A compact member of
 * the usual SES events is under STORE_MEMBER_TYPICAL_MAX bytes; README's
 * "Redis memory" recommends zset-max-listpack-value 1024 so that longer
 * ones (a Click's link) stay in too. */
#define STORE_MEMBER_TYPICAL_MAX 512
#define STORE_SET_TYPICAL_ENTRIES 16
/* A counts hash's longest field ("suppress:Bounce/Permanent" ...). */
#define STORE_COUNTS_FIELD_MAX 32

struct store_encoding {
	long long zset_entries, zset_value; /* -1: not told */
	long long hash_entries, hash_value;
	bool skiplists; /* typical recipients' sets or hashes would not stay listpacks */
};

/* Reads the thresholds with CONFIG GET (which managed Redis may refuse:
 * then MT_E_REDIS and errbuf says why). */
enum mt_err store_check_encoding(struct store *st, struct store_encoding *out, char *errbuf,
				 size_t errsz);

/* ---- reads of other modules' keys (health.c: the counters) ----------- */

/* The --redis-prefix every key begins with (borrowed; lives as long as
 * st). */
const char *store_prefix(const struct store *st);

/* Runs n read-only commands like the store's own reads: each on the node
 * of its key (one round trip per node), shared with concurrent callers'
 * batches (groupcommit.h).  MT_E_OK: every cmds[i].reply is set (the
 * caller frees each, error replies included); else no reply is set and
 * errbuf says why.  The caller keeps cmds[i].key and .raw alive until it
 * returns, and frees .raw. */
enum mt_err store_run_reads(struct store *st, struct rcluster_cmd *cmds, size_t n,
			    char *errbuf, size_t errsz);

/* PING.  MT_E_OK while Redis answers. */
enum mt_err store_ping(struct store *st, char *errbuf, size_t errsz);

/* ---- suppressions and erasure (issue 14) -------------------------------
 * A recipient is suppressed while its counts hash holds a permanent bounce
 * or a complaint (put_script keeps suppress:<why> counts and last:<why>
 * times as events come and are trimmed), or, when the counts hash holds
 * a bounce that is not permanent, when the policy (policy.h) says so of
 * its newest POLICY_EVENTS_MAX events (read on demand: existing data is
 * re-evaluated, never rewritten).  The reason is the latest one
 * (policy_evaluate), as the summary decides. */

struct store_suppression {
	const char *reason; /* policy_reason_name() or NULL (static) */
	int64_t time_ms;    /* the deciding event's time, when reason is set */
	char text[POLICY_TEXT_MAX]; /* the reason in words, when reason is set */
};

/* Candidates' timelines read in one pipelined round trip at most, a page
 * of STORE_POLICY_PAGE members each (up to POLICY_EVENTS_MAX members in
 * all, a page a round trip): more take more round trips, so the replies
 * held at once stay bounded by 64 pages of 32 members whatever a signed
 * message makes of a timeline (32 events of at most about 10 KB: 20 MB at
 * worst, where whole timelines were 64 x 1,000 events, 700 MB measured). */
#define STORE_POLICY_READS_MAX 64
#define STORE_POLICY_PAGE 32

/* ---- the suppression index ----
 * {prefix}suppidx:{<n>}, n = 0..STORE_SUPP_BUCKETS-1 (store_supp_bucket
 * of the normalised address; each bucket its own hash tag, so its own
 * Cluster slot): hashes, field = a normalised address, value =
 * STORE_SUPP_CODES * (deciding event ms) + reason code in decimal (0
 * Complaint, 1 Bounce/Permanent: a bounce wins a tie; 2 a soft bounce
 * with a listed status, 3 any other soft bounce while repeated soft
 * bounces are on: candidates, always verified on the timeline), written
 * at ingest by a script that only ever raises a value (store.c,
 * supp_script), in the same round trip as the events, so an entry is the
 * newest deciding event ever stored for the address.  A candidate, a
 * superset of the truth: the check answers from it directly while the
 * event is certainly still kept (inside the retention window), else from
 * the counts hash.  {prefix}suppidx:ready:<policy> says every counts hash
 * written before the index is in it (a background rebuild sets it);
 * without it the check reads the counts hashes.  Hashes, not sorted sets
 * (the layout before, "supp:{<n>}", which the rebuild removes): HMGET
 * answers the stored digits, where ZMSCORE formatted a double for every
 * entry, and the whole read costs Redis about a third less (README,
 * "Bulk suppression check"). */
#define STORE_SUPP_BUCKETS 64
#define STORE_SUPP_CODES 32
/* How far a copy of mailtrail's clock may be behind the writer's. */
#define STORE_SUPP_SKEW_MS (3600LL * 1000)
/* How long after an event its write may come (SNS retries, a spool
 * drained after an outage) without counting as a backfill: an index
 * entry is pruned once its event is older than the retention period,
 * STORE_EXPIRY_SLACK_MS and this (README, "Bulk suppression check"). */
#define STORE_SUPP_LATE_MS (7LL * 86400 * 1000)
/* A prune step (an HSCAN of this many entries of one bucket, the buckets
 * in turn) runs this often, in the writes' round trip. */
#define STORE_SUPP_PRUNE_EVERY_MS 1000
#define STORE_SUPP_PRUNE_STEP 1000

/* The bucket of a normalised address: FNV-1a (32 bits) of its bytes,
 * modulo STORE_SUPP_BUCKETS.  Part of the key layout: never change it
 * without a new marker. */
static inline unsigned store_supp_bucket(const char *address)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)address; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h % STORE_SUPP_BUCKETS;
}

/* The suppression of each of n normalised addresses (NULL entries are
 * skipped: out[i] is left not suppressed): from the suppression index, one
 * HMGET a bucket in one round trip (per node in a Cluster), shared with
 * concurrent callers'; the addresses the index cannot answer alone (an
 * entry near the end of the retention window, an entry of code 2 or 3,
 * no marker yet) from their counts hashes in a second
 * round trip, with the timelines of the first STORE_POLICY_READS_MAX
 * code 2 or 3 entries (the rest, and those the counts show a soft bounce
 * for, in further round trips).  Without the
 * marker it also starts the index's rebuild in the background (once). */
enum mt_err store_suppression_check(struct store *st, const char *const *addresses,
				    size_t n, struct store_suppression *out,
				    char *errbuf, size_t errsz);

/* Keys one SCAN step of the export asks Redis for at most (COUNT). */
#define STORE_SCAN_STEP_MAX 1000

/* In a Redis Cluster the walk's cursor is the lowest hash slot of the
 * master being walked, shifted left by this, or'ed with that master's own
 * SCAN cursor (below 2^48 for any keyspace a node can hold); the masters
 * are walked in the order of their lowest slots. */
#define STORE_SCAN_NODE_BITS 48

/* Whether cursor can be one of the walk's (in a Cluster: it names a hash
 * slot; with one server every number is Redis's to judge). */
bool store_scan_cursor_valid(const struct store *st, uint64_t cursor);

struct store_suppressed {
	const char *address; /* as its key names it; borrowed for the call */
	size_t address_len;
	struct store_suppression s;
};

/* Called for each suppressed address found; false stops the step (the
 * step then fails with MT_E_NOMEM). */
typedef bool (*store_suppressed_fn)(void *arg, const struct store_suppressed *s);

/* One step of the walk over every recipient's counts hash (in a Cluster,
 * over every master's: STORE_SCAN_NODE_BITS): SCAN from
 * cursor for about count (1..STORE_SCAN_STEP_MAX) keys, then their
 * suppressions in one round trip; fn gets every suppressed one whose
 * deciding event is at or after since_ms (INT64_MIN: all).  *next is the
 * cursor of the next step, 0 when the walk is over.  Like SCAN, a walk
 * returns every address that exists throughout it at least once, and may
 * return one twice (Redis rehashing meanwhile). */
enum mt_err store_suppressions_scan(struct store *st, uint64_t cursor, size_t count,
				    int64_t since_ms, store_suppressed_fn fn, void *arg,
				    uint64_t *next, char *errbuf, size_t errsz);

/* What an erasure removed. */
struct store_erasure {
	size_t keys;         /* the recipient's keys that existed */
	size_t feed_entries; /* its entries in the recent feed */
};

/* Removes what the store holds under one normalised address: every key
 * named for it (its sorted set, counts hash, and their older names), its
 * references in the message index (store_forget_message_refs) and
 * its entries in the recent feed (references, and older entries that are
 * its EVENT JSON).  Idempotent: a second call removes nothing.  Copies of
 * the address inside other recipients' events (their mail.destination)
 * are not touched. */
enum mt_err store_recipient_erase(struct store *st, const char *address,
				  struct store_erasure *out, char *errbuf, size_t errsz);

#endif
