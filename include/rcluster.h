/* rcluster.h - the store's Redis connections: one server, or a Redis
 * Cluster routed by hash slot (Debian's hiredis 0.14 has no cluster
 * support, so the routing is here).  Each connection is an rconn.h one:
 * plain, or TLS for a rediss:// URL (then to every node of a cluster,
 * which announces its TLS ports with tls-cluster yes).  Every new
 * connection authenticates (AUTH [user] password) when the URL has a
 * password.
 *
 * Commands go in as RESP text with the key that routes them.  A batch is
 * pipelined: one round trip per node it touches.  What a caller never
 * sees:
 *   - a connection that broke while pooled (Redis restarted): the command
 *     runs again on a new connection;
 *   - NOSCRIPT: the node lost what on_connect set up (SCRIPT FLUSH, a
 *     promoted replica); a new connection sets it up and the command runs
 *     again;
 *   - in a cluster: MOVED (the slot map learns the owner, and is reloaded
 *     with CLUSTER SLOTS before the next use), ASK (ASKING, then the
 *     command once more on the importing node), and TRYAGAIN, CLUSTERDOWN,
 *     LOADING, MASTERDOWN or a lost node (short, bounded retries while a
 *     failover or a slot move completes, reloading the map meanwhile).
 * So every command must be safe to run twice (idempotent or read-only).
 * When the retries run out the batch fails with MT_E_REDIS.
 */
#ifndef RCLUSTER_H
#define RCLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "mt_error.h"
#include "rconn.h"

#define RCLUSTER_SLOTS 16384
/* Most cluster nodes known at once (masters and former masters). */
#define RCLUSTER_NODES_MAX 64
/* Most rounds of one batch in a cluster (redirects and transient errors),
 * and the first and longest pause between two rounds after a transient
 * error: at most about 3 s in all, well inside SNS's 15 s timeout. */
#define RCLUSTER_TRIES_MAX 12
#define RCLUSTER_BACKOFF_MIN_MS 25
#define RCLUSTER_BACKOFF_MAX_MS 400
/* No new round starts this long after a batch began: a node that hangs
 * (each try then waits for the command timeout) must not keep the
 * webhook's answer past SNS's 15 s either. */
#define RCLUSTER_DEADLINE_MS 5000
/* The slot map is reloaded at most this often (MOVED replies update the
 * slots they name at once). */
#define RCLUSTER_REFRESH_MIN_MS 100

/* Sets up a new connection after AUTH (and SELECT): e.g. loads scripts.
 * false fails the connection, with errbuf saying why. */
typedef bool (*rcluster_connect_fn)(struct rconn *c, void *arg, char *errbuf,
				    size_t errsz);

struct rcluster_opts {
	const struct config_redis *redis; /* the server, or a seed node */
	size_t pool_max;                  /* idle connections kept per node */
	unsigned connect_timeout_ms, command_timeout_ms;
	rcluster_connect_fn on_connect; /* may be NULL */
	/* Told of every fault, also of one that a retry then hides: a failed
	 * connect, a broken connection, NOSCRIPT, TRYAGAIN and the like (not
	 * MOVED/ASK, which are routing).  May be NULL. */
	void (*on_fault)(void *arg);
	void *arg; /* of on_connect and on_fault */
};

struct rcluster;

/* Does not connect yet; a rediss:// URL's TLS files are read now.  NULL
 * on allocation failure; free with rcluster_free().  TLS files that
 * cannot be used (main.c checks them at start with rcluster_tls_check)
 * fail every batch, saying why. */
struct rcluster *rcluster_new(const struct rcluster_opts *o);
void rcluster_free(struct rcluster *rc);

/* Whether redis's TLS files (rediss:// only) can be used: false with
 * errbuf saying why (naming the option).  True without TLS. */
bool rcluster_tls_check(const struct config_redis *redis, char *errbuf, size_t errsz);

struct rcluster_cmd {
	const char *key; /* routes the command (NULL: any node) */
	size_t key_len;
	const char *raw; /* the command in RESP (redisFormatCommand) */
	size_t raw_len;
	redisReply *reply; /* out: the answer, owned by the caller; error
			      replies other than the ones above included */
};

/* Runs every command of the batch, each on the node that owns its key's
 * slot.  MT_E_OK: every cmds[i].reply is set (free each with
 * freeReplyObject).  MT_E_REDIS: Redis could not be reached or kept
 * redirecting (MT_E_NOMEM: out of memory); no reply is set, errbuf says
 * why. */
enum mt_err rcluster_exec(struct rcluster *rc, struct rcluster_cmd *cmds,
			  size_t n, char *errbuf, size_t errsz);

/* The hash slot of a key as Redis Cluster computes it: CRC16 (XMODEM) of
 * the key, or of the part between the first '{' and the next '}' when
 * that part is not empty, modulo 16384. */
unsigned rcluster_key_slot(const char *key, size_t len);

/* Reads a "MOVED 3999 127.0.0.1:6381" or "ASK 3999 127.0.0.1:6381" error
 * text.  false when it is neither. */
bool rcluster_parse_redirect(const char *err, bool *ask, unsigned *slot,
			     char *host, size_t hostsz, unsigned *port);

#endif
