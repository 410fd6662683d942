#include "tls.h"

#include <errno.h>
#include <gnutls/x509.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tls_set {
	gnutls_pcert_st chain[TLS_CHAIN_MAX];
	unsigned int n;
	gnutls_privkey_t key;
	struct tls_set *older; /* kept until tls_free_all */
};

/* The set served to new handshakes; written by tls_load only. */
static _Atomic(struct tls_set *) current;

/* Reads a whole (small) file into *out (gnutls_free is not needed: the
 * data is malloc'd and freed by the caller). */
static bool read_file(const char *path, gnutls_datum_t *out, char *errbuf,
		      size_t errsz)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(errbuf, errsz, "cannot open %s: %s", path, strerror(errno));
		return false;
	}
	unsigned char *buf = malloc(TLS_FILE_MAX + 1);
	size_t len = buf ? fread(buf, 1, TLS_FILE_MAX + 1, f) : 0;
	fclose(f);
	if (!buf || len == 0 || len > TLS_FILE_MAX) {
		snprintf(errbuf, errsz, "cannot read %s (empty, or over %d bytes)", path,
			 TLS_FILE_MAX);
		free(buf);
		return false;
	}
	out->data = buf;
	out->size = (unsigned int)len;
	return true;
}

static void set_free(struct tls_set *set)
{
	for (unsigned int i = 0; i < set->n; i++)
		gnutls_pcert_deinit(&set->chain[i]);
	gnutls_privkey_deinit(set->key);
	free(set);
}

bool tls_load(const char *cert_file, const char *key_file, char *errbuf,
	      size_t errsz)
{
	gnutls_datum_t cert = {NULL, 0}, key = {NULL, 0};
	struct tls_set *set = calloc(1, sizeof(*set));
	bool ok = false;
	int rc;

	if (!set) {
		snprintf(errbuf, errsz, "out of memory");
		return false;
	}
	if (!read_file(cert_file, &cert, errbuf, errsz) ||
	    !read_file(key_file, &key, errbuf, errsz))
		goto out;
	set->n = TLS_CHAIN_MAX;
	rc = gnutls_pcert_list_import_x509_raw(set->chain, &set->n, &cert,
					       GNUTLS_X509_FMT_PEM, 0);
	if (rc < 0) {
		set->n = 0;
		snprintf(errbuf, errsz, "%s: not a PEM certificate chain of at most %d: %s",
			 cert_file, TLS_CHAIN_MAX, gnutls_strerror(rc));
		goto out;
	}
	if ((rc = gnutls_privkey_init(&set->key)) < 0 ||
	    (rc = gnutls_privkey_import_x509_raw(set->key, &key, GNUTLS_X509_FMT_PEM,
						 NULL, 0)) < 0) {
		snprintf(errbuf, errsz, "%s: not an unencrypted PEM private key: %s",
			 key_file, gnutls_strerror(rc));
		goto out;
	}
	/* A key that does not match the certificate would fail every
	 * handshake: refuse it here, while the old set still serves. */
	gnutls_pubkey_t from_key = NULL;
	gnutls_datum_t a = {NULL, 0}, b = {NULL, 0};
	if (gnutls_pubkey_init(&from_key) < 0 ||
	    gnutls_pubkey_import_privkey(from_key, set->key, 0, 0) < 0 ||
	    gnutls_pubkey_export2(from_key, GNUTLS_X509_FMT_DER, &a) < 0 ||
	    gnutls_pubkey_export2(set->chain[0].pubkey, GNUTLS_X509_FMT_DER, &b) < 0 ||
	    a.size != b.size || memcmp(a.data, b.data, a.size) != 0)
		snprintf(errbuf, errsz, "%s does not belong to the first certificate of %s",
			 key_file, cert_file);
	else
		ok = true;
	gnutls_free(a.data);
	gnutls_free(b.data);
	gnutls_pubkey_deinit(from_key);
out:
	free(cert.data);
	if (key.data) {
		memset(key.data, 0, key.size);
		free(key.data);
	}
	if (!ok) {
		set_free(set);
		return false;
	}
	set->older = atomic_load(&current);
	atomic_store(&current, set);
	return true;
}

int tls_retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn,
		 int nreqs, const gnutls_pk_algorithm_t *pk_algos,
		 int pk_algos_length, gnutls_pcert_st **pcert,
		 unsigned int *pcert_length, gnutls_privkey_t *privkey)
{
	struct tls_set *set = atomic_load(&current);
	if (!set)
		return -1;
	/* GnuTLS does not free these (retrieve_function2 contract). */
	*pcert = set->chain;
	*pcert_length = set->n;
	*privkey = set->key;
	return 0;
}

void tls_free_all(void)
{
	struct tls_set *set = atomic_exchange(&current, NULL);
	while (set) {
		struct tls_set *older = set->older;
		set_free(set);
		set = older;
	}
}
