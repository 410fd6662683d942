/* rcluster.c - pooled Redis connections, routed by hash slot in a Redis
 * Cluster.  See rcluster.h for what is retried and why. */
#include "rcluster.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Where a node listens.  port 0: host is a unix socket path. */
struct addr {
	char host[256];
	unsigned port;
};

struct node {
	bool in_use;
	bool owns_slots; /* a master in the current map */
	struct addr at;
	unsigned borrowed; /* its connections out of the pool right now */
	struct rconn **idle;
	size_t nidle;
};

struct rcluster {
	struct config_redis redis;
	struct rconn_tls *tls; /* rediss://; NULL: plain */
	char tls_err[RCONN_ERR_MAX]; /* why rediss:// has no tls */
	size_t pool_max;
	struct timeval connect_tv, command_tv;
	rcluster_connect_fn on_connect;
	void (*on_fault)(void *arg);
	void *arg;

	pthread_mutex_t lock; /* guards everything below */
	/* nodes[0] is the configured server (the seed in a cluster); it is
	 * never dropped. */
	struct node nodes[RCLUSTER_NODES_MAX];
	int16_t slots[RCLUSTER_SLOTS]; /* node index, -1: not known */
	bool stale;                    /* reload the map before next use */
	bool refreshing;               /* a thread is reloading it */
	int64_t refreshed_ms;          /* monotonic */
};

/* ---- slots and redirects (pure) -------------------------------------- */

/* CRC16-CCITT as XMODEM computes it (polynomial 0x1021, initial 0), the
 * one Redis Cluster uses. */
static uint16_t crc16_xmodem(const char *p, size_t n)
{
	uint16_t crc = 0;
	for (size_t i = 0; i < n; i++) {
		crc ^= (uint16_t)((unsigned char)p[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021)
					     : (uint16_t)(crc << 1);
	}
	return crc;
}

unsigned rcluster_key_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);
	if (open) {
		const char *tag = open + 1;
		const char *close = memchr(tag, '}', len - (size_t)(tag - key));
		if (close && close > tag)
			return crc16_xmodem(tag, (size_t)(close - tag)) % RCLUSTER_SLOTS;
	}
	return crc16_xmodem(key, len) % RCLUSTER_SLOTS;
}

static bool parse_uint(const char *s, char stop, unsigned long max,
		       unsigned long *out, const char **end)
{
	char *e;
	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long v = strtoul(s, &e, 10);
	if (errno || *e != stop || v > max)
		return false;
	*out = v;
	*end = e;
	return true;
}

bool rcluster_parse_redirect(const char *err, bool *ask, unsigned *slot,
			     char *host, size_t hostsz, unsigned *port)
{
	const char *p, *end;
	unsigned long s, pt;

	if (strncmp(err, "MOVED ", 6) == 0) {
		*ask = false;
		p = err + 6;
	} else if (strncmp(err, "ASK ", 4) == 0) {
		*ask = true;
		p = err + 4;
	} else {
		return false;
	}
	if (!parse_uint(p, ' ', RCLUSTER_SLOTS - 1, &s, &end))
		return false;
	const char *a = end + 1;
	const char *colon = strrchr(a, ':');
	/* The host may be empty: "the node you asked" (Redis 7, unknown
	 * endpoint). */
	if (!colon || (size_t)(colon - a) >= hostsz)
		return false;
	if (!parse_uint(colon + 1, '\0', 65535, &pt, &end) || pt == 0)
		return false;
	memcpy(host, a, (size_t)(colon - a));
	host[colon - a] = '\0';
	*slot = (unsigned)s;
	*port = (unsigned)pt;
	return true;
}

/* ---- nodes and their pools -------------------------------------------- */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timeval ms_tv(unsigned ms)
{
	return (struct timeval){(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
}

/* Under the lock.  The index of the node at host:port, added when new;
 * -1 when the table is full or memory is short. */
static int node_find_or_add(struct rcluster *rc, const char *host, unsigned port)
{
	int free_at = -1;
	for (int i = 0; i < RCLUSTER_NODES_MAX; i++) {
		struct node *nd = &rc->nodes[i];
		if (!nd->in_use) {
			if (free_at < 0)
				free_at = i;
			continue;
		}
		if (nd->at.port == port && strcmp(nd->at.host, host) == 0)
			return i;
	}
	if (free_at < 0 || strlen(host) >= sizeof(rc->nodes[0].at.host))
		return -1;
	struct node *nd = &rc->nodes[free_at];
	nd->idle = calloc(rc->pool_max ? rc->pool_max : 1, sizeof(struct rconn *));
	if (!nd->idle)
		return -1;
	nd->in_use = true;
	nd->owns_slots = false;
	snprintf(nd->at.host, sizeof(nd->at.host), "%s", host);
	nd->at.port = port;
	nd->borrowed = 0;
	nd->nidle = 0;
	return free_at;
}

static void free_contexts(struct rconn **cs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		rconn_free(cs[i]);
}

/* The TLS settings of redis (rediss://), or NULL with errbuf saying why,
 * naming the option. */
static struct rconn_tls *tls_new(const struct config_redis *redis, char *errbuf,
				 size_t errsz)
{
	struct rconn_tls_opts to = {.ca_file = redis->tls_ca_file,
				    .cert_file = redis->tls_cert,
				    .key_file = redis->tls_key};
	char why[RCONN_ERR_MAX];
	struct rconn_tls *t = rconn_tls_new(&to, why, sizeof(why));
	if (!t)
		snprintf(errbuf, errsz, "rediss:// (--redis-ca-file, --redis-cert, --redis-key): %s",
			 why);
	return t;
}

bool rcluster_tls_check(const struct config_redis *redis, char *errbuf, size_t errsz)
{
	if (!redis->tls)
		return true;
	struct rconn_tls *t = tls_new(redis, errbuf, errsz);
	rconn_tls_free(t);
	return t != NULL;
}

struct rcluster *rcluster_new(const struct rcluster_opts *o)
{
	struct rcluster *rc = calloc(1, sizeof(*rc));
	if (!rc)
		return NULL;
	rc->redis = *o->redis;
	rc->pool_max = o->pool_max;
	rc->connect_tv = ms_tv(o->connect_timeout_ms);
	rc->command_tv = ms_tv(o->command_timeout_ms);
	rc->on_connect = o->on_connect;
	rc->on_fault = o->on_fault;
	rc->arg = o->arg;
	if (rc->redis.tls)
		rc->tls = tls_new(&rc->redis, rc->tls_err, sizeof(rc->tls_err));
	pthread_mutex_init(&rc->lock, NULL);
	for (size_t s = 0; s < RCLUSTER_SLOTS; s++)
		rc->slots[s] = -1;
	rc->stale = rc->redis.cluster;
	rc->refreshed_ms = mono_ms() - RCLUSTER_REFRESH_MIN_MS;
	bool is_unix = rc->redis.is_unix;
	if (node_find_or_add(rc, is_unix ? rc->redis.path : rc->redis.host,
			     is_unix ? 0 : rc->redis.port) != 0) {
		rcluster_free(rc);
		return NULL;
	}
	return rc;
}

void rcluster_free(struct rcluster *rc)
{
	if (!rc)
		return;
	for (int i = 0; i < RCLUSTER_NODES_MAX; i++) {
		struct node *nd = &rc->nodes[i];
		free_contexts(nd->idle, nd->nidle);
		free(nd->idle);
	}
	rconn_tls_free(rc->tls);
	pthread_mutex_destroy(&rc->lock);
	free(rc);
}

/* Whether r is an answer and no error; else errbuf says "what at: why". */
static bool reply_ok(const struct rconn *c, const redisReply *r, const char *what,
		     const struct addr *at, char *errbuf, size_t errsz)
{
	if (r && r->type != REDIS_REPLY_ERROR)
		return true;
	snprintf(errbuf, errsz, "%s %s:%u: %s", what, at->host, at->port,
		 r ? r->str : rconn_errstr(c)[0] ? rconn_errstr(c) : "no reply");
	return false;
}

/* A new connection to at: authenticated, on the configured database
 * (outside a cluster), set up by on_connect when setup is true.  No error
 * text holds the password (Redis's own answers to AUTH do not either). */
static struct rconn *node_connect(struct rcluster *rc, const struct addr *at,
				  bool setup, char *errbuf, size_t errsz)
{
	if (rc->redis.tls && !rc->tls) {
		snprintf(errbuf, errsz, "%s", rc->tls_err);
		return NULL;
	}
	struct rconn *c = rconn_connect(at->host, at->port, rc->tls, rc->connect_tv,
					rc->command_tv, errbuf, errsz);
	if (!c)
		return NULL;
	if (rc->redis.password[0]) {
		/* AUTH user password (an ACL user), or AUTH password. */
		const struct config_redis *cr = &rc->redis;
		bool user = cr->user[0] != '\0';
		const char *argv[3] = {"AUTH", cr->user, cr->password};
		size_t argl[3] = {4, strlen(cr->user), strlen(cr->password)};
		if (!user) {
			argv[1] = argv[2];
			argl[1] = argl[2];
		}
		redisReply *r = rconn_command_argv(c, user ? 3 : 2, argv, argl);
		char what[sizeof(cr->user) + 16];
		snprintf(what, sizeof(what), user ? "AUTH as '%s' on" : "AUTH on", cr->user);
		bool ok = reply_ok(c, r, what, at, errbuf, errsz);
		freeReplyObject(r);
		if (!ok)
			goto fail;
	}
	if (rc->redis.db && !rc->redis.cluster) {
		redisReply *r = rconn_command(c, "SELECT %u", rc->redis.db);
		bool ok = reply_ok(c, r, "SELECT on", at, errbuf, errsz);
		freeReplyObject(r);
		if (!ok)
			goto fail;
	}
	if (setup && rc->on_connect && !rc->on_connect(c, rc->arg, errbuf, errsz))
		goto fail;
	return c;
fail:
	rconn_free(c);
	return NULL;
}

/* Under the lock: lends node i (it is not dropped before conn_put) and
 * one of its idle connections, if any; *at says where it is. */
static struct rconn *node_borrow(struct rcluster *rc, int i, struct addr *at)
{
	struct node *nd = &rc->nodes[i];
	nd->borrowed++;
	*at = nd->at;
	return nd->nidle ? nd->idle[--nd->nidle] : NULL;
}

/* Gives back what node_borrow lent (c NULL: the connect failed).  A
 * broken connection closes every idle one of that node too: they most
 * likely died with it (a restart, a failover), and in a cluster the map
 * is reloaded.  (Closing is cheap enough to do under the lock.) */
static void conn_put(struct rcluster *rc, int i, struct rconn *c, bool broken)
{
	pthread_mutex_lock(&rc->lock);
	struct node *nd = &rc->nodes[i];
	nd->borrowed--;
	if (broken || !c || rconn_broken(c)) {
		if (rc->redis.cluster)
			rc->stale = true;
		free_contexts(nd->idle, nd->nidle);
		nd->nidle = 0;
	} else if (nd->nidle < rc->pool_max) {
		nd->idle[nd->nidle++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&rc->lock);
	rconn_free(c);
}

static void fault(const struct rcluster *rc)
{
	if (rc->on_fault)
		rc->on_fault(rc->arg);
}

static void mark_stale(struct rcluster *rc)
{
	pthread_mutex_lock(&rc->lock);
	rc->stale = true;
	pthread_mutex_unlock(&rc->lock);
}

/* ---- the slot map ------------------------------------------------------- */

/* Under the lock: the map from a CLUSTER SLOTS reply got from node
 * "from".  Nodes that own no slot any more, and that no thread is using,
 * are dropped with their connections. */
static void map_apply(struct rcluster *rc, const redisReply *r,
		      const struct addr *from)
{
	for (size_t s = 0; s < RCLUSTER_SLOTS; s++)
		rc->slots[s] = -1;
	for (size_t k = 0; k < r->elements; k++) {
		const redisReply *e = r->element[k];
		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    e->element[0]->type != REDIS_REPLY_INTEGER ||
		    e->element[1]->type != REDIS_REPLY_INTEGER ||
		    e->element[2]->type != REDIS_REPLY_ARRAY)
			continue;
		const redisReply *m = e->element[2];
		if (m->elements < 2 || m->element[0]->type != REDIS_REPLY_STRING ||
		    m->element[1]->type != REDIS_REPLY_INTEGER)
			continue;
		long long lo = e->element[0]->integer, hi = e->element[1]->integer;
		long long port = m->element[1]->integer;
		if (lo < 0 || hi >= RCLUSTER_SLOTS || lo > hi || port <= 0 || port > 65535)
			continue;
		/* "" or "?": the endpoint is the node that answered. */
		const char *host = m->element[0]->str;
		if (!host[0] || strcmp(host, "?") == 0)
			host = from->host;
		int i = node_find_or_add(rc, host, (unsigned)port);
		if (i < 0)
			continue;
		for (long long s = lo; s <= hi; s++)
			rc->slots[s] = (int16_t)i;
	}
	for (int i = 0; i < RCLUSTER_NODES_MAX; i++)
		rc->nodes[i].owns_slots = false;
	for (size_t s = 0; s < RCLUSTER_SLOTS; s++)
		if (rc->slots[s] >= 0)
			rc->nodes[rc->slots[s]].owns_slots = true;
	for (int i = 1; i < RCLUSTER_NODES_MAX; i++) {
		struct node *nd = &rc->nodes[i];
		if (!nd->in_use || nd->owns_slots || nd->borrowed)
			continue;
		free_contexts(nd->idle, nd->nidle);
		free(nd->idle);
		memset(nd, 0, sizeof(*nd));
	}
	rc->stale = false;
}

/* Reloads the slot map with CLUSTER SLOTS from the first node that
 * answers (the masters of the current map, then the seed) when it is
 * stale and was not reloaded in the last RCLUSTER_REFRESH_MIN_MS.  One
 * thread at a time; the others go on with the map as it is. */
static void map_refresh(struct rcluster *rc)
{
	struct addr cand[RCLUSTER_NODES_MAX];
	size_t ncand = 0;
	int64_t now = mono_ms();

	pthread_mutex_lock(&rc->lock);
	bool go = rc->stale && !rc->refreshing &&
		  now - rc->refreshed_ms >= RCLUSTER_REFRESH_MIN_MS;
	if (go) {
		rc->refreshing = true;
		rc->refreshed_ms = now;
		for (int i = 1; i < RCLUSTER_NODES_MAX; i++)
			if (rc->nodes[i].in_use && rc->nodes[i].owns_slots)
				cand[ncand++] = rc->nodes[i].at;
		cand[ncand++] = rc->nodes[0].at;
	}
	pthread_mutex_unlock(&rc->lock);
	if (!go)
		return;

	redisReply *r = NULL;
	const struct addr *from = NULL;
	char err[256];
	for (size_t k = 0; k < ncand && !from; k++) {
		struct rconn *c = node_connect(rc, &cand[k], false, err, sizeof(err));
		if (!c)
			continue;
		r = rconn_command(c, "CLUSTER SLOTS");
		rconn_free(c);
		if (r && r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
			from = &cand[k];
		} else {
			freeReplyObject(r);
			r = NULL;
		}
	}
	pthread_mutex_lock(&rc->lock);
	if (from)
		map_apply(rc, r, from);
	rc->refreshing = false;
	pthread_mutex_unlock(&rc->lock);
	freeReplyObject(r);
}

/* ---- running a batch ------------------------------------------------------ */

struct item {
	size_t cmd;     /* index in the batch */
	unsigned slot;  /* of its key */
	int target;     /* the node an ASK named, or -1: the slot's owner */
	bool asking;    /* send ASKING first */
	size_t group;   /* this round's connection */
};

struct group {
	int node;
	struct addr at;
	struct rconn *c;
	bool broken;
	bool noscript; /* broken on purpose: NOSCRIPT */
};

/* Under the lock: the node that runs it.  Unknown slots go to a master
 * (or the seed), whose MOVED teaches the map. */
static int route(const struct rcluster *rc, const struct rcluster_cmd *cmd,
		 const struct item *it)
{
	if (!rc->redis.cluster)
		return 0;
	if (it->target >= 0 && rc->nodes[it->target].in_use)
		return it->target;
	if (cmd->key && rc->slots[it->slot] >= 0)
		return rc->slots[it->slot];
	for (int i = 0; i < RCLUSTER_NODES_MAX; i++)
		if (rc->nodes[i].in_use && rc->nodes[i].owns_slots)
			return i;
	return 0;
}

static bool has_word(const char *err, const char *word)
{
	size_t n = strlen(word);
	return strncmp(err, word, n) == 0 && (err[n] == ' ' || err[n] == '\0');
}

/* Whether an answer means "run it again": NOSCRIPT anywhere; in a
 * cluster also redirects and the errors of a failover or slot move in
 * progress (*pause then asks for a pause first). */
static bool must_retry(struct rcluster *rc, struct group *gr, struct item *it,
		       const redisReply *r, bool *pause, char *errbuf,
		       size_t errsz)
{
	static const char *const transient[] = {"TRYAGAIN", "CLUSTERDOWN",
						"LOADING", "MASTERDOWN"};
	if (r->type != REDIS_REPLY_ERROR)
		return false;
	const char *e = r->str;
	if (has_word(e, "NOSCRIPT")) {
		/* A new connection sets the node up again. */
		fault(rc);
		gr->broken = gr->noscript = true;
		snprintf(errbuf, errsz, "%s", e);
		return true;
	}
	if (!rc->redis.cluster)
		return false;
	bool ask;
	unsigned slot, port;
	char host[256];
	if (rcluster_parse_redirect(e, &ask, &slot, host, sizeof(host), &port)) {
		pthread_mutex_lock(&rc->lock);
		int i = node_find_or_add(rc, host[0] ? host : gr->at.host, port);
		if (i >= 0 && !ask) {
			rc->slots[slot] = (int16_t)i;
			rc->nodes[i].owns_slots = true;
			rc->stale = true;
		}
		pthread_mutex_unlock(&rc->lock);
		snprintf(errbuf, errsz, "%s%s", e, i < 0 ? " (too many cluster nodes)" : "");
		if (i < 0)
			*pause = true;
		it->target = ask ? i : -1;
		it->asking = ask && i >= 0;
		return true;
	}
	for (size_t k = 0; k < sizeof(transient) / sizeof(transient[0]); k++) {
		if (has_word(e, transient[k])) {
			fault(rc);
			mark_stale(rc);
			snprintf(errbuf, errsz, "%s", e);
			*pause = true;
			return true;
		}
	}
	return false;
}

/* One round: every item left is sent to its node, all nodes before any
 * answer is read, so they work in parallel.  Items to run again are
 * moved to the front of items; returns how many. */
static size_t exec_round(struct rcluster *rc, struct rcluster_cmd *cmds,
			 struct item *items, size_t n, bool *pause,
			 char *errbuf, size_t errsz)
{
	static const char asking[] = "*1\r\n$6\r\nASKING\r\n";
	struct group g[RCLUSTER_NODES_MAX];
	size_t ng = 0, left = 0;

	pthread_mutex_lock(&rc->lock);
	for (size_t k = 0; k < n; k++) {
		int node = route(rc, &cmds[items[k].cmd], &items[k]);
		size_t j = 0;
		while (j < ng && g[j].node != node)
			j++;
		if (j == ng) {
			g[ng] = (struct group){.node = node};
			g[ng].c = node_borrow(rc, node, &g[ng].at);
			ng++;
		}
		items[k].group = j;
	}
	pthread_mutex_unlock(&rc->lock);

	for (size_t j = 0; j < ng; j++) {
		if (!g[j].c)
			g[j].c = node_connect(rc, &g[j].at, true, errbuf, errsz);
		g[j].broken = !g[j].c;
	}
	for (size_t k = 0; k < n; k++) {
		struct group *gr = &g[items[k].group];
		const struct rcluster_cmd *cmd = &cmds[items[k].cmd];
		if (gr->broken)
			continue;
		if ((items[k].asking && !rconn_append(gr->c, asking, sizeof(asking) - 1)) ||
		    !rconn_append(gr->c, cmd->raw, cmd->raw_len)) {
			/* Out of memory half-way: the output is in an unknown
			 * state, so the connection is not reused. */
			snprintf(errbuf, errsz, "cannot queue a command (out of memory)");
			gr->broken = true;
		}
	}
	for (size_t j = 0; j < ng; j++) {
		if (!g[j].broken && !rconn_flush(g[j].c)) {
			snprintf(errbuf, errsz, "%s:%u: %s", g[j].at.host, g[j].at.port,
				 rconn_errstr(g[j].c));
			g[j].broken = true;
		}
	}
	for (size_t k = 0; k < n; k++) {
		struct item *it = &items[k];
		struct group *gr = &g[it->group];
		redisReply *r = NULL, *ok = NULL;
		if (!gr->broken &&
		    ((it->asking && rconn_get_reply(gr->c, &ok) != REDIS_OK) ||
		     rconn_get_reply(gr->c, &r) != REDIS_OK)) {
			snprintf(errbuf, errsz, "%s:%u: %s", gr->at.host, gr->at.port,
				 rconn_errstr(gr->c)[0] ? rconn_errstr(gr->c) : "I/O error");
			gr->broken = true;
		}
		freeReplyObject(ok);
		if (gr->broken) {
			/* A lost node: maybe failing over; try its slot's
			 * owner again after a pause. */
			freeReplyObject(r);
			*pause = true;
			it->target = -1;
			it->asking = false;
			items[left++] = *it;
		} else if (must_retry(rc, gr, it, r, pause, errbuf, errsz)) {
			freeReplyObject(r);
			items[left++] = *it;
		} else {
			cmds[it->cmd].reply = r;
		}
	}
	for (size_t j = 0; j < ng; j++) {
		/* NOSCRIPT was counted where it was read. */
		if (g[j].broken && !g[j].noscript)
			fault(rc);
		conn_put(rc, g[j].node, g[j].c, g[j].broken);
	}
	return left;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

enum mt_err rcluster_exec(struct rcluster *rc, struct rcluster_cmd *cmds,
			  size_t n, char *errbuf, size_t errsz)
{
	/* One server: one more try on a new connection is enough (a pooled
	 * connection that died, a flushed script).  A cluster gets time for
	 * a failover or a slot move. */
	unsigned tries = rc->redis.cluster ? RCLUSTER_TRIES_MAX : 2;
	unsigned pause_ms = RCLUSTER_BACKOFF_MIN_MS;
	size_t left = n;

	if (n == 0)
		return MT_E_OK;
	struct item *items = calloc(n, sizeof(*items));
	if (!items) {
		snprintf(errbuf, errsz, "out of memory");
		return MT_E_NOMEM;
	}
	for (size_t k = 0; k < n; k++) {
		cmds[k].reply = NULL;
		items[k] = (struct item){.cmd = k, .target = -1};
		if (cmds[k].key && rc->redis.cluster) /* one server: no slots */
			items[k].slot = rcluster_key_slot(cmds[k].key, cmds[k].key_len);
	}
	int64_t start = mono_ms();
	for (unsigned t = 0; left && t < tries; t++) {
		bool pause = false;
		if (t > 0 && mono_ms() - start >= RCLUSTER_DEADLINE_MS)
			break;
		if (rc->redis.cluster)
			map_refresh(rc);
		left = exec_round(rc, cmds, items, left, &pause, errbuf, errsz);
		if (left && pause && rc->redis.cluster && t + 1 < tries) {
			sleep_ms(pause_ms);
			pause_ms = pause_ms * 2 > RCLUSTER_BACKOFF_MAX_MS
					   ? RCLUSTER_BACKOFF_MAX_MS
					   : pause_ms * 2;
		}
	}
	free(items);
	if (!left)
		return MT_E_OK;
	for (size_t k = 0; k < n; k++) {
		freeReplyObject(cmds[k].reply);
		cmds[k].reply = NULL;
	}
	return MT_E_REDIS;
}
