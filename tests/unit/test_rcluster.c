/* The cluster routing's pure parts (hash slots, redirects), and what a
 * batch does when no Redis answers. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rcluster.h"
#include "testutil.h"

/* Answers of redis-server 7.0.15's CLUSTER KEYSLOT, hash-tag edge cases
 * included: an empty tag ({}) hashes the whole key, only the first '{'
 * and the first '}' after it count. */
static const struct {
	const char *key;
	unsigned slot;
} keyslot[] = {
	{"", 0},
	{"a", 15495},
	{"123456789", 12739},
	{"foo", 12182},
	{"{user1000}.following", 3443},
	{"{user1000}.followers", 3443},
	{"foo{}{bar}", 8363},
	{"foo{{bar}}zap", 4015},
	{"foo{bar}{zap}", 5061},
	{"{}", 15257},
	{"{", 4092},
	{"}", 12090},
	{"}{", 12793},
	{"{}{a}", 13650},
	{"a{b", 13340},
	{"a}b{c}", 7365},
	{"{{}}", 4092},
	{"x{}y{z}", 15453},
	{"\xc3\x9c" "n" "\xc3\xaf" "c" "\xc3\xb6" "d" "\xc3\xa9", 8060},
	{"hello world", 15332},
	{"mailtrail:rcpt:{alice@example.com}", 350},
	{"mailtrail:counts:{alice@example.com}", 350},
	{"mailtrail:recent", 8013},
	{"mailtrail:topic:{arn:aws:sns:us-east-1:123456789012:ses-events}", 6526},
	{"mailtrail:msg:{00000000-0000-4000-8000-000000000001}", 6388},
};

static void test_slots(void)
{
	for (size_t i = 0; i < sizeof(keyslot) / sizeof(keyslot[0]); i++) {
		unsigned s = rcluster_key_slot(keyslot[i].key, strlen(keyslot[i].key));
		CHECK(s == keyslot[i].slot, "slot of '%s': %u, Redis says %u",
		      keyslot[i].key, s, keyslot[i].slot);
	}
	/* The length is what counts, not a NUL: "a\0b{x}" hashes as {x}. */
	CHECK(rcluster_key_slot("a\0b{x}", 6) == rcluster_key_slot("x", 1), "NUL in a key");
	CHECK(rcluster_key_slot("{ab}", 2) == rcluster_key_slot("{a", 2), "length bounds the tag");
}

static void test_redirects(void)
{
	bool ask;
	unsigned slot, port;
	char host[64];

	CHECK(rcluster_parse_redirect("MOVED 3999 127.0.0.1:6381", &ask, &slot, host,
				      sizeof(host), &port) &&
		      !ask && slot == 3999 && port == 6381 && strcmp(host, "127.0.0.1") == 0,
	      "MOVED");
	CHECK(rcluster_parse_redirect("ASK 16383 redis-2.internal:7000", &ask, &slot, host,
				      sizeof(host), &port) &&
		      ask && slot == 16383 && port == 7000 && strcmp(host, "redis-2.internal") == 0,
	      "ASK");
	CHECK(rcluster_parse_redirect("MOVED 0 ::1:7001", &ask, &slot, host, sizeof(host),
				      &port) &&
		      slot == 0 && port == 7001 && strcmp(host, "::1") == 0,
	      "IPv6");
	CHECK(rcluster_parse_redirect("MOVED 12 :7002", &ask, &slot, host, sizeof(host),
				      &port) &&
		      host[0] == '\0' && port == 7002,
	      "empty host: the node that answered");
	const char *bad[] = {"MOVED", "MOVED 16384 h:1", "MOVED -1 h:1", "MOVED 1 h", "MOVED 1 h:0",
			     "MOVED 1 h:65536", "MOVED 1 h:12x", "MOVED x h:1", "ASKING",
			     "ERR unknown", "TRYAGAIN Multiple keys request during rehashing of slot",
			     "MOVED 1 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!rcluster_parse_redirect(bad[i], &ask, &slot, host, sizeof(host), &port),
		      "not a redirect: '%s'", bad[i]);
}

/* A loopback port nobody listens on (it was free a moment ago). */
static unsigned closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &al);
	close(fd);
	return ntohs(a.sin_port);
}

static void count(void *arg)
{
	++*(unsigned *)arg;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What one GET of a key did against 127.0.0.1:port. */
struct outcome {
	enum mt_err err;
	bool reply;      /* a reply was set */
	double took;     /* seconds */
	unsigned faults; /* on_fault calls */
	char why[256];
};

static struct outcome get_once_redis(struct config_redis r, unsigned timeout_ms);

static struct outcome get_once(unsigned port, bool cluster, unsigned timeout_ms)
{
	struct config_redis r = {.port = port, .cluster = cluster};
	snprintf(r.host, sizeof(r.host), "127.0.0.1");
	return get_once_redis(r, timeout_ms);
}

static struct outcome get_once_redis(struct config_redis r, unsigned timeout_ms)
{
	struct outcome out = {0};
	struct rcluster_opts o = {.redis = &r, .pool_max = 4, .connect_timeout_ms = timeout_ms,
				  .command_timeout_ms = timeout_ms, .on_fault = count,
				  .arg = &out.faults};
	struct rcluster *rc = rcluster_new(&o);
	CHECK(rc != NULL, "new");
	char *raw = NULL;
	int len = redisFormatCommand(&raw, "GET %s", "k{x}");
	struct rcluster_cmd cmd = {"k{x}", 4, raw, (size_t)len, NULL};
	double t0 = now_s();
	out.err = rcluster_exec(rc, &cmd, 1, out.why, sizeof(out.why));
	out.took = now_s() - t0;
	out.reply = cmd.reply != NULL;
	freeReplyObject(cmd.reply);
	redisFreeCommand(raw);
	rcluster_free(rc);
	return out;
}

/* Nobody answers: the batch fails with MT_E_REDIS (the webhook's 503),
 * at once for one server, after bounded retries for a cluster. */
static void test_unreachable(bool cluster)
{
	struct outcome o = get_once(closed_port(), cluster, 200);
	CHECK(o.err == MT_E_REDIS && !o.reply, "cluster=%d: %d", cluster, o.err);
	CHECK(strstr(o.why, "connect") != NULL, "cluster=%d: says why: '%s'", cluster, o.why);
	CHECK(o.took < (cluster ? 6.0 : 1.0), "cluster=%d: gave up after %.2f s", cluster, o.took);
	CHECK(!cluster || o.took > 0.5, "a cluster gets time to fail over: %.2f s", o.took);
	CHECK(o.faults == (cluster ? RCLUSTER_TRIES_MAX : 2),
	      "cluster=%d: every failed try told: %u", cluster, o.faults);
}

/* A cluster node that accepts connections and never answers: each try
 * waits for the command timeout, and the batch still gives up in bounded
 * time (RCLUSTER_DEADLINE_MS). */
static void test_hung_node(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fd, 64) == 0 &&
		      getsockname(fd, (struct sockaddr *)&a, &al) == 0, "listen");
	struct outcome o = get_once(ntohs(a.sin_port), true, 300);
	CHECK(o.err == MT_E_REDIS && !o.reply, "hung node: %d", o.err);
	CHECK(o.took >= RCLUSTER_DEADLINE_MS / 1000.0 &&
		      o.took < RCLUSTER_DEADLINE_MS / 1000.0 + 2.0,
	      "hung node: gave up after %.2f s (%u tries, '%s')", o.took, o.faults, o.why);
	close(fd);
}

/* A loopback listener that never accepts: the kernel completes the TCP
 * handshake, nobody ever speaks.  Returns the fd, *port its port. */
static int silent_listener(unsigned *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fd, 64) == 0 &&
		      getsockname(fd, (struct sockaddr *)&a, &al) == 0, "listen");
	*port = ntohs(a.sin_port);
	return fd;
}

/* rediss://: TLS files that cannot be used fail every batch at once,
 * saying which file; a server that never answers the TLS handshake times
 * out like a command does (one server: two tries). */
static void test_tls_failures(void)
{
	unsigned port;
	int fd = silent_listener(&port);
	struct config_redis r = {.port = port, .tls = true, .tls_ca_file = "/nonexistent/ca.pem"};
	snprintf(r.host, sizeof(r.host), "127.0.0.1");
	char err[256];
	CHECK(!rcluster_tls_check(&r, err, sizeof(err)) && strstr(err, "/nonexistent/ca.pem") &&
		      strstr(err, "--redis-ca-file"), "unusable CA file: '%s'", err);
	struct outcome o = get_once_redis(r, 200);
	CHECK(o.err == MT_E_REDIS && !o.reply && strstr(o.why, "/nonexistent/ca.pem") &&
		      o.took < 0.1, "no TLS settings: %d '%s' %.2f s", o.err, o.why, o.took);

	r.tls_ca_file = NULL; /* the system store */
	CHECK(rcluster_tls_check(&r, err, sizeof(err)), "system store: %s", err);
	o = get_once_redis(r, 200);
	CHECK(o.err == MT_E_REDIS && !o.reply, "silent TLS server: %d", o.err);
	CHECK(strstr(o.why, "TLS handshake: timed out") != NULL, "says why: '%s'", o.why);
	CHECK(o.took >= 0.35 && o.took < 1.5, "two tries of 200 ms each: %.2f s", o.took);
	CHECK(o.faults == 2, "every failed try told: %u", o.faults);

	/* A client key that is not the certificate's: caught by the check. */
	r.tls_cert = "/nonexistent/client.pem";
	r.tls_key = "/nonexistent/client.key";
	CHECK(!rcluster_tls_check(&r, err, sizeof(err)) && strstr(err, "client certificate") &&
		      strstr(err, "/nonexistent/client.pem"), "unusable client cert: '%s'", err);
	close(fd);

	/* Without TLS nothing is checked. */
	struct config_redis plain = {.port = port};
	CHECK(rcluster_tls_check(&plain, err, sizeof(err)), "plain");
}

int main(void)
{
	test_slots();
	test_redirects();
	test_unreachable(false);
	test_unreachable(true);
	test_hung_node();
	test_tls_failures();
	return test_report("rcluster");
}
