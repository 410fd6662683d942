/* rconn.c - a Redis connection: hiredis alone, or hiredis's formatter and
 * reader with OpenSSL carrying the bytes.  See rconn.h for why. */
#include "rconn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Bytes read from TLS at a time, and the largest output buffer kept
 * between batches (a larger one is freed once sent). */
#define RCONN_READ_CHUNK 16384
#define RCONN_OUT_KEEP (256u << 10)

struct rconn_tls {
	SSL_CTX *ctx;
};

struct rconn {
	redisContext *ctx; /* the socket and, for TLS, the reply reader */
	SSL *ssl;          /* NULL: plain, ctx does all the I/O */
	char *out;         /* TLS: commands queued, not sent yet */
	size_t out_len, out_cap;
	bool broken;             /* TLS: a failure (plain: ctx->err) */
	char err[RCONN_ERR_MAX]; /* TLS: why */
	/* TLS: the socket is non-blocking and each call (a flush, a reply)
	 * must be done within command_ms in all (tls_wait), however the peer
	 * spreads its bytes. */
	long long command_ms;
};

/* ---- the shared TLS settings ------------------------------------------ */

/* The reason of the last OpenSSL error of this thread ("" when none); the
 * queue is emptied. */
static const char *ssl_reason(char *buf, size_t sz)
{
	unsigned long e = ERR_peek_last_error();
	buf[0] = '\0';
	if (e) {
		const char *r = ERR_reason_error_string(e);
		if (r)
			snprintf(buf, sz, "%s", r);
		else
			ERR_error_string_n(e, buf, sz);
	}
	ERR_clear_error();
	return buf;
}

/* Says why a file cannot be used: the system's reason when it cannot be
 * opened, else OpenSSL's. */
static void file_error(const char *what, const char *path, char *errbuf, size_t errsz)
{
	char r[160];
	if (access(path, R_OK) != 0)
		snprintf(r, sizeof(r), "%s", strerror(errno));
	else
		ssl_reason(r, sizeof(r));
	ERR_clear_error();
	snprintf(errbuf, errsz, "cannot use %s '%s': %s", what, path,
		 r[0] ? r : "unknown error");
}

struct rconn_tls *rconn_tls_new(const struct rconn_tls_opts *o, char *errbuf,
				size_t errsz)
{
	struct rconn_tls *t = calloc(1, sizeof(*t));
	ERR_clear_error();
	if (!t || !(t->ctx = SSL_CTX_new(TLS_client_method()))) {
		snprintf(errbuf, errsz, "out of memory");
		goto fail;
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	if (o->ca_file) {
		if (SSL_CTX_load_verify_locations(t->ctx, o->ca_file, NULL) != 1) {
			file_error("CA file", o->ca_file, errbuf, errsz);
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
		char r[160];
		snprintf(errbuf, errsz, "cannot load the system CA store: %s",
			 ssl_reason(r, sizeof(r)));
		goto fail;
	}
	if (o->cert_file) {
		if (SSL_CTX_use_certificate_chain_file(t->ctx, o->cert_file) != 1) {
			file_error("client certificate", o->cert_file, errbuf, errsz);
			goto fail;
		}
		if (!o->key_file ||
		    SSL_CTX_use_PrivateKey_file(t->ctx, o->key_file, SSL_FILETYPE_PEM) != 1) {
			file_error("client key", o->key_file ? o->key_file : "(none)", errbuf, errsz);
			goto fail;
		}
		if (SSL_CTX_check_private_key(t->ctx) != 1) {
			ERR_clear_error();
			snprintf(errbuf, errsz, "client key '%s' does not match certificate '%s'",
				 o->key_file, o->cert_file);
			goto fail;
		}
	}
	return t;
fail:
	rconn_tls_free(t);
	return NULL;
}

void rconn_tls_free(struct rconn_tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}

/* ---- TLS I/O ------------------------------------------------------------ */

/* Why a TLS call that returned rc failed, into buf. */
static void tls_describe(SSL *ssl, int rc, char *buf, size_t sz)
{
	int saved_errno = errno;
	int e = SSL_get_error(ssl, rc);
	long v = SSL_get_verify_result(ssl);
	char r[160];
	ssl_reason(r, sizeof(r));
	if (v != X509_V_OK)
		snprintf(buf, sz, "certificate verify failed: %s",
			 X509_verify_cert_error_string(v));
	else if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ||
		 (e == SSL_ERROR_SYSCALL && (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)))
		snprintf(buf, sz, "timed out");
	else if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !r[0] && rc == 0))
		snprintf(buf, sz, "connection closed by the server");
	else if (e == SSL_ERROR_SYSCALL && !r[0])
		snprintf(buf, sz, "%s", saved_errno ? strerror(saved_errno) : "I/O error");
	else
		snprintf(buf, sz, "%s", r[0] ? r : "TLS error");
}

/* Marks c broken, c->err saying why: hiredis's own flag too, so that
 * nothing reuses it. */
static void mark_broken(struct rconn *c)
{
	c->broken = true;
	c->ctx->err = REDIS_ERR_IO;
	size_t n = strlen(c->err);
	if (n >= sizeof(c->ctx->errstr))
		n = sizeof(c->ctx->errstr) - 1;
	memcpy(c->ctx->errstr, c->err, n);
	c->ctx->errstr[n] = '\0';
}

/* Marks c broken by a TLS call that returned rc. */
static void tls_fail(struct rconn *c, int rc, const char *what)
{
	char why[RCONN_ERR_MAX - 32];
	tls_describe(c->ssl, rc, why, sizeof(why));
	snprintf(c->err, sizeof(c->err), "TLS %s: %s", what, why);
	mark_broken(c);
}

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* After a TLS call on c's non-blocking socket returned rc: when it only
 * waits for the socket, waits until it is ready or the deadline (ms,
 * CLOCK_MONOTONIC) passes.  true: call again; false: c is broken (a
 * timeout or the call's own failure, said as `what`). */
static bool tls_wait(struct rconn *c, int rc, long long deadline, const char *what)
{
	int e = SSL_get_error(c->ssl, rc);
	if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
		tls_fail(c, rc, what);
		return false;
	}
	struct pollfd p = {.fd = c->ctx->fd,
			   .events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT};
	for (;;) {
		long long left = deadline - mono_ms();
		int n = left > 0 ? poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left) : 0;
		if (n > 0)
			return true; /* ready, or an error the next call reports */
		if (n < 0 && errno == EINTR)
			continue;
		ERR_clear_error();
		snprintf(c->err, sizeof(c->err), "TLS %s: %s", what,
			 n == 0 ? "timed out" : strerror(errno));
		mark_broken(c);
		return false;
	}
}

/* The handshake, within timeout_ms in all. */
static bool tls_handshake(struct rconn *c, const char *host, unsigned port,
			  const struct rconn_tls *tls, long long timeout_ms, char *errbuf,
			  size_t errsz)
{
	unsigned char ip[16];
	bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;

	ERR_clear_error();
	c->ssl = SSL_new(tls->ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, c->ctx->fd) != 1)
		goto nomem;
	if (is_ip) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host) != 1)
			goto nomem;
	} else {
		SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(c->ssl, host) != 1 ||
		    SSL_set_tlsext_host_name(c->ssl, host) != 1)
			goto nomem;
	}
	long long deadline = mono_ms() + timeout_ms;
	int rc;
	while ((rc = SSL_connect(c->ssl)) != 1) {
		if (!tls_wait(c, rc, deadline, "handshake")) {
			snprintf(errbuf, errsz, "%s:%u: %s", host, port, c->err);
			return false;
		}
		ERR_clear_error();
	}
	return true;
nomem:
	ERR_clear_error();
	snprintf(errbuf, errsz, "%s:%u: cannot set up TLS (out of memory)", host, port);
	c->broken = true;
	return false;
}

/* Sends what is queued, within command_ms in all. */
static bool tls_flush(struct rconn *c)
{
	size_t off = 0;
	long long deadline = mono_ms() + c->command_ms;
	if (c->broken)
		return false;
	while (off < c->out_len) {
		size_t chunk = c->out_len - off;
		ERR_clear_error();
		/* A write that waits is retried with the same bytes (OpenSSL
		 * asks it), so the chunk's length stays as it was. */
		int n = SSL_write(c->ssl, c->out + off, chunk > INT_MAX ? INT_MAX : (int)chunk);
		if (n <= 0) {
			if (!tls_wait(c, n, deadline, "write"))
				return false;
			continue;
		}
		off += (size_t)n;
	}
	c->out_len = 0;
	if (c->out_cap > RCONN_OUT_KEEP) {
		free(c->out);
		c->out = NULL;
		c->out_cap = 0;
	}
	return true;
}

/* The next reply, within command_ms in all once what is queued is sent. */
static int tls_get_reply(struct rconn *c, redisReply **reply)
{
	void *r = NULL;
	if (c->out_len && !tls_flush(c))
		return REDIS_ERR;
	if (c->broken)
		return REDIS_ERR;
	long long deadline = mono_ms() + c->command_ms;
	for (;;) {
		if (redisReaderGetReply(c->ctx->reader, &r) != REDIS_OK) {
			snprintf(c->err, sizeof(c->err), "protocol error: %s",
				 c->ctx->reader->errstr);
			c->broken = true;
			c->ctx->err = REDIS_ERR_PROTOCOL;
			return REDIS_ERR;
		}
		if (r)
			break;
		char buf[RCONN_READ_CHUNK];
		ERR_clear_error();
		int n = SSL_read(c->ssl, buf, sizeof(buf));
		if (n <= 0) {
			if (!tls_wait(c, n, deadline, "read"))
				return REDIS_ERR;
			continue;
		}
		if (redisReaderFeed(c->ctx->reader, buf, (size_t)n) != REDIS_OK) {
			snprintf(c->err, sizeof(c->err), "out of memory");
			c->broken = true;
			c->ctx->err = REDIS_ERR_OOM;
			return REDIS_ERR;
		}
	}
	*reply = r;
	return REDIS_OK;
}

/* ---- the connection ------------------------------------------------------ */

struct rconn *rconn_connect(const char *host, unsigned port, struct rconn_tls *tls,
			    struct timeval connect_tv, struct timeval command_tv,
			    char *errbuf, size_t errsz)
{
	struct rconn *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(errbuf, errsz, "out of memory");
		return NULL;
	}
	c->ctx = port ? redisConnectWithTimeout(host, (int)port, connect_tv)
		      : redisConnectUnixWithTimeout(host, connect_tv);
	if (!c->ctx) {
		snprintf(errbuf, errsz, "out of memory");
		goto fail;
	}
	if (c->ctx->err) {
		snprintf(errbuf, errsz, "connect %s:%u: %s", host, port, c->ctx->errstr);
		goto fail;
	}
	if (port)
		redisEnableKeepAlive(c->ctx);
	if (tls && port) {
		/* OpenSSL's I/O waits in tls_wait, against a deadline for the
		 * whole handshake, flush or reply: a socket timeout would only
		 * bound each read or write, which a peer trickling a byte at a
		 * time never reaches. */
		int fl = fcntl(c->ctx->fd, F_GETFL);
		if (fl < 0 || fcntl(c->ctx->fd, F_SETFL, fl | O_NONBLOCK) != 0) {
			snprintf(errbuf, errsz, "%s:%u: %s", host, port, strerror(errno));
			goto fail;
		}
		c->command_ms = (long long)command_tv.tv_sec * 1000 + command_tv.tv_usec / 1000;
		if (!tls_handshake(c, host, port, tls,
				   (long long)connect_tv.tv_sec * 1000 + connect_tv.tv_usec / 1000,
				   errbuf, errsz))
			goto fail;
	}
	redisSetTimeout(c->ctx, command_tv);
	return c;
fail:
	rconn_free(c);
	return NULL;
}

void rconn_free(struct rconn *c)
{
	if (!c)
		return;
	if (c->ssl) {
		if (!c->broken && !c->ctx->err) {
			/* close_notify, without waiting for the server's. */
			SSL_shutdown(c->ssl);
			ERR_clear_error();
		}
		SSL_free(c->ssl);
	}
	redisFree(c->ctx);
	free(c->out);
	free(c);
}

bool rconn_append(struct rconn *c, const char *raw, size_t len)
{
	if (!c->ssl) {
		if (redisAppendFormattedCommand(c->ctx, raw, len) == REDIS_OK)
			return true;
		c->broken = true;
		return false;
	}
	if (len > c->out_cap - c->out_len) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		while (cap - c->out_len < len)
			cap *= 2;
		char *p = realloc(c->out, cap);
		if (!p) {
			snprintf(c->err, sizeof(c->err), "out of memory");
			c->broken = true;
			return false;
		}
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, raw, len);
	c->out_len += len;
	return true;
}

bool rconn_flush(struct rconn *c)
{
	if (c->ssl)
		return tls_flush(c);
	int done = 0;
	while (!done)
		if (redisBufferWrite(c->ctx, &done) != REDIS_OK)
			return false;
	return true;
}

int rconn_get_reply(struct rconn *c, redisReply **reply)
{
	if (c->ssl)
		return tls_get_reply(c, reply);
	void *r = NULL;
	int rc = redisGetReply(c->ctx, &r);
	*reply = r;
	return rc;
}

/* Sends raw (a formatted command) and reads its answer. */
static redisReply *command_raw(struct rconn *c, char *raw, int len)
{
	redisReply *r = NULL;
	if (len < 0) {
		snprintf(c->err, sizeof(c->err), "cannot format a command (out of memory)");
		c->broken = true;
		return NULL;
	}
	if (!rconn_append(c, raw, (size_t)len) || rconn_get_reply(c, &r) != REDIS_OK)
		r = NULL;
	redisFreeCommand(raw);
	return r;
}

redisReply *rconn_command(struct rconn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (!c->ssl) {
		redisReply *r = redisvCommand(c->ctx, fmt, ap);
		va_end(ap);
		return r;
	}
	char *raw = NULL;
	int len = redisvFormatCommand(&raw, fmt, ap);
	va_end(ap);
	return command_raw(c, raw, len);
}

redisReply *rconn_command_argv(struct rconn *c, int argc, const char **argv,
			       const size_t *argvlen)
{
	if (!c->ssl)
		return redisCommandArgv(c->ctx, argc, argv, argvlen);
	char *raw = NULL;
	int len = redisFormatCommandArgv(&raw, argc, argv, argvlen);
	return command_raw(c, raw, len);
}

bool rconn_broken(const struct rconn *c)
{
	return c->broken || c->ctx->err;
}

const char *rconn_errstr(const struct rconn *c)
{
	if (c->err[0])
		return c->err;
	return c->ctx->errstr;
}
