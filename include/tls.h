/* tls.h - the webhook's TLS certificate chain and key, replaceable while
 * the listener runs (SIGHUP).
 *
 * libmicrohttpd asks for them at every TLS handshake through GnuTLS's
 * certificate callback, so a reload changes what new connections get;
 * connections already open keep their session and are not dropped.  The
 * callback has no context pointer, so there is one set per process (only
 * the webhook listener serves TLS).
 */
#ifndef TLS_H
#define TLS_H

#include <gnutls/abstract.h>
#include <stdbool.h>
#include <stddef.h>

/* Most bytes read of a certificate or key file; most certificates in a chain. */
#define TLS_FILE_MAX (1024 * 1024)
#define TLS_CHAIN_MAX 8

/* Reads cert_file (PEM chain, leaf first) and key_file (PEM) and, when both
 * are good and the key matches the leaf, makes them the ones served.  On
 * failure nothing changes and errbuf says why.  Call from one thread at a
 * time (main). */
bool tls_load(const char *cert_file, const char *key_file, char *errbuf,
	      size_t errsz);

/* For MHD_OPTION_HTTPS_CERT_CALLBACK: hands GnuTLS the set loaded last. */
gnutls_certificate_retrieve_function2 tls_retrieve;

/* Frees every set ever loaded (a handshake may still hold an older one
 * until the listener stops).  Call after the listener has stopped. */
void tls_free_all(void);

#endif
