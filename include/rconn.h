/* rconn.h - one connection to one Redis server, plain or TLS.
 *
 * Plain (redis:// over TCP, unix://): a hiredis redisContext doing its own
 * blocking I/O, exactly as before this module existed.
 *
 * TLS (rediss://): hiredis still connects the socket (timeouts, IPv4/IPv6,
 * keepalive), formats the commands (redisFormatCommand*) and parses the
 * answers (its redisReader); OpenSSL encrypts the bytes in between.
 * Debian 12's hiredis 0.14 has neither TLS (hiredis_ssl came with 1.0) nor
 * a pluggable transport, and every other Redis client library in Debian
 * would mean replacing the protocol code the store already relies on.
 *
 * The peer is always verified: its chain against the CA file (or the
 * system store), its name against the host connected to (a DNS name is
 * also sent as SNI; an IP address is matched against the certificate's IP
 * addresses and not sent, as RFC 6066 asks).
 *
 * One connection is used by one thread at a time; a struct rconn_tls is
 * shared by all of them.
 */
#ifndef RCONN_H
#define RCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

/* The longest error text a connection keeps (TLS errors name the
 * certificate problem). */
#define RCONN_ERR_MAX 256

struct rconn_tls_opts {
	const char *ca_file;   /* NULL: the system store */
	const char *cert_file; /* client certificate (PEM); NULL: none */
	const char *key_file;  /* its key; with cert_file only */
};

struct rconn_tls;

/* The TLS settings every connection shares: files read and checked now.
 * NULL with errbuf saying why (a file that cannot be read, a key that
 * does not match its certificate, out of memory).  Free with
 * rconn_tls_free(). */
struct rconn_tls *rconn_tls_new(const struct rconn_tls_opts *o, char *errbuf,
				size_t errsz);
void rconn_tls_free(struct rconn_tls *t);

struct rconn;

/* Connects to host:port (port 0: host is a unix socket path), with TLS
 * when tls is not NULL (TCP only).  Plain: the TCP connect within
 * connect_tv, every later read or write (each system call) within
 * command_tv (hiredis's socket timeouts).  TLS: the TCP connect within
 * connect_tv and the whole TLS handshake within connect_tv more; then
 * each rconn_flush, and each answer of rconn_get_reply (once what is
 * queued is sent), within command_tv in all, however slowly the peer
 * spreads its bytes.  NULL with errbuf saying why; free with
 * rconn_free(). */
struct rconn *rconn_connect(const char *host, unsigned port, struct rconn_tls *tls,
			    struct timeval connect_tv, struct timeval command_tv,
			    char *errbuf, size_t errsz);
/* Closes it (a TLS connection that is still sound says close_notify
 * first).  Accepts NULL. */
void rconn_free(struct rconn *c);

/* Queues a command in RESP (redisFormatCommand's output).  false: out of
 * memory, the connection is then broken. */
bool rconn_append(struct rconn *c, const char *raw, size_t len);
/* Sends everything queued.  false: the connection is broken. */
bool rconn_flush(struct rconn *c);
/* The next answer, in order (sends what is queued first).  REDIS_OK with
 * *reply set (free with freeReplyObject; error replies included), or
 * REDIS_ERR: the connection is broken (I/O, timeout, protocol). */
int rconn_get_reply(struct rconn *c, redisReply **reply);
/* One command (printf-like, as redisCommand) and its answer, or NULL when
 * the connection broke.  Caller frees the answer. */
redisReply *rconn_command(struct rconn *c, const char *fmt, ...);
/* The same with argument vectors (binary-safe). */
redisReply *rconn_command_argv(struct rconn *c, int argc, const char **argv,
			       const size_t *argvlen);

/* Whether a failure broke it (it must not go back to a pool). */
bool rconn_broken(const struct rconn *c);
/* Why it broke ("" while it is sound).  Valid until the next call on c. */
const char *rconn_errstr(const struct rconn *c);

#endif
