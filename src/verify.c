#include "verify.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

X509 *verify_cert_from_pem(const char *pem, size_t len)
{
	if (len == 0 || len > VERIFY_CERT_PEM_MAX)
		return NULL;
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return NULL;
	X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!cert) {
		ERR_clear_error();
		return NULL;
	}
	EVP_PKEY *key = X509_get0_pubkey(cert);
	if (!key || EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
		X509_free(cert);
		return NULL;
	}
	return cert;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Strict standard base64 with padding.  Returns malloc'd bytes (caller
 * frees) and their count in *out_len, or NULL. */
static unsigned char *b64_decode(const char *in, size_t len, size_t *out_len)
{
	if (len == 0 || len % 4 != 0)
		return NULL;
	size_t pad = 0;
	if (in[len - 1] == '=')
		pad++;
	if (in[len - 2] == '=')
		pad++;
	unsigned char *out = malloc(len / 4 * 3);
	if (!out)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		for (int j = 0; j < 4; j++) {
			bool padding_slot = i + 4 == len && j >= 4 - (int)pad;
			v[j] = padding_slot ? 0 : b64_value((unsigned char)in[i + j]);
			if (v[j] < 0 || (padding_slot && in[i + j] != '=')) {
				free(out);
				return NULL;
			}
		}
		unsigned long n = ((unsigned long)v[0] << 18) | ((unsigned long)v[1] << 12) |
				  ((unsigned long)v[2] << 6) | (unsigned long)v[3];
		out[o++] = (unsigned char)(n >> 16);
		out[o++] = (unsigned char)(n >> 8);
		out[o++] = (unsigned char)n;
	}
	*out_len = o - pad;
	return out;
}

static bool valid_at(X509 *cert, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	return X509_cmp_time(X509_get0_notBefore(cert), &t) < 0 &&
	       X509_cmp_time(X509_get0_notAfter(cert), &t) > 0;
}

enum mt_err verify_signature(const struct sns_message *m, X509 *cert)
{
	enum mt_err err;
	unsigned char *sig = NULL;
	char *tbs = NULL;
	EVP_MD_CTX *md = NULL;
	size_t sig_len, tbs_len;

	if (!valid_at(cert, m->timestamp_ms))
		return MT_E_CERT_INVALID;
	const struct sns_str *s = &m->f[SNS_F_SIGNATURE];
	sig = b64_decode(s->p, s->len, &sig_len);
	if (!sig)
		return MT_E_SIG_ENCODING;
	tbs = sns_string_to_sign(m, &tbs_len);
	md = EVP_MD_CTX_new();
	if (!tbs || !md) {
		err = MT_E_NOMEM;
		goto out;
	}
	const EVP_MD *digest = m->signature_version == 2 ? EVP_sha256() : EVP_sha1();
	if (EVP_DigestVerifyInit(md, NULL, digest, NULL, X509_get0_pubkey(cert)) != 1) {
		err = MT_E_BAD_SIGNATURE;
		goto out;
	}
	err = EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)tbs,
			       tbs_len) == 1
		      ? MT_E_OK
		      : MT_E_BAD_SIGNATURE;
out:
	ERR_clear_error(); /* OpenSSL queues errors per thread; drop them */
	EVP_MD_CTX_free(md);
	free(tbs);
	free(sig);
	return err;
}
