#include "verify.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What a certificate needs for verifying, worked out once when it is read
 * and attached to the X509 (ex_data, freed with it), so that a message
 * costs one digest and one RSA operation.  EVP_DigestVerifyInit() would
 * fetch the digest and build a key context from the provider on every
 * call; duplicating a ready context skips that (24.5 -> 19.3 us a verify
 * here) and the validity check compares integers instead of ASN.1 times.
 * Read-only once attached, so threads share it without a lock. */
struct prepared {
	int64_t not_before, not_after; /* seconds since the epoch */
	EVP_PKEY_CTX *ctx[2];          /* SignatureVersion 1, 2 */
	/* Their digests, fetched once: SHA1()/SHA256() fetch theirs from the
	 * provider on every call (0.6-0.8 us of a 2 KiB digest here). */
	EVP_MD *md[2];
};

static int g_ex_index = -1;
static pthread_once_t g_ex_once = PTHREAD_ONCE_INIT;

static void prepared_free(struct prepared *p)
{
	if (!p)
		return;
	EVP_PKEY_CTX_free(p->ctx[0]);
	EVP_PKEY_CTX_free(p->ctx[1]);
	EVP_MD_free(p->md[0]);
	EVP_MD_free(p->md[1]);
	free(p);
}

static void on_x509_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
			 long argl, void *argp)
{
	prepared_free(ptr);
}

static void ex_index_init(void)
{
	g_ex_index = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_X509, 0, NULL, NULL,
					     NULL, on_x509_free);
}

static bool seconds_of(const ASN1_TIME *t, int64_t *out)
{
	struct tm tm;
	if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
		return false;
	*out = (int64_t)timegm(&tm);
	return true;
}

/* A verify context for the key with PKCS#1 v1.5 padding and md. */
static EVP_PKEY_CTX *verify_ctx(EVP_PKEY *key, const EVP_MD *md)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	bool ok = ctx && EVP_PKEY_verify_init(ctx) == 1 &&
		  EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
		  EVP_PKEY_CTX_set_signature_md(ctx, md) == 1;
	if (!ok) {
		EVP_PKEY_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static bool prepare(X509 *cert)
{
	pthread_once(&g_ex_once, ex_index_init);
	struct prepared *p = calloc(1, sizeof(*p));
	if (g_ex_index < 0 || !p)
		goto fail;
	if (!seconds_of(X509_get0_notBefore(cert), &p->not_before) ||
	    !seconds_of(X509_get0_notAfter(cert), &p->not_after) ||
	    !(p->md[0] = EVP_MD_fetch(NULL, "SHA1", NULL)) ||
	    !(p->md[1] = EVP_MD_fetch(NULL, "SHA256", NULL)) ||
	    !(p->ctx[0] = verify_ctx(X509_get0_pubkey(cert), p->md[0])) ||
	    !(p->ctx[1] = verify_ctx(X509_get0_pubkey(cert), p->md[1])) ||
	    X509_set_ex_data(cert, g_ex_index, p) != 1)
		goto fail;
	return true;
fail:
	prepared_free(p);
	return false;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const char pem_begin[] = "-----BEGIN CERTIFICATE-----";
static const char pem_end[] = "-----END CERTIFICATE-----";

static bool is_base64_or_space(unsigned char c)
{
	return is_space((char)c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
}

/* Whether pem[0..len) is one PEM certificate block and nothing else but
 * whitespace around it: an HTML page quoting a certificate, two
 * certificates, or a key next to one are not a certificate.  The block
 * goes to *block, *block_len. */
static bool single_pem_block(const char *pem, size_t len, const char **block,
			     size_t *block_len)
{
	const char *p = pem, *end = pem + len;
	while (p < end && is_space(*p))
		p++;
	while (end > p && is_space(end[-1]))
		end--;
	const size_t bl = sizeof(pem_begin) - 1, el = sizeof(pem_end) - 1;
	size_t n = (size_t)(end - p);
	/* cppcheck takes the path where everything was whitespace for the
	 * only one (n == 0): a false positive. */
	// cppcheck-suppress knownConditionTrueFalse
	if (n < bl + el || memcmp(p, pem_begin, bl) != 0 || memcmp(end - el, pem_end, el) != 0)
		return false;
	/* Between the two lines: base64 and line breaks only (no second
	 * block, no PEM headers, no NUL). */
	for (const char *c = p + bl; c < end - el; c++)
		if (!is_base64_or_space((unsigned char)*c))
			return false;
	*block = p;
	*block_len = n;
	return true;
}

static bool is_lower_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* "sns.amazonaws.com", "sns.<region>.amazonaws.com" or
 * "sns.<region>.amazonaws.com.cn" (ASCII case ignored), where a region is
 * one DNS label of letters, digits and hyphens that starts with a letter
 * and ends with a digit ("us-east-1", "us-gov-west-1", "cn-north-1"). */
static bool is_sns_name(const unsigned char *s, size_t len)
{
	char n[VERIFY_SNS_NAME_MAX + 1] = {0};
	if (len == 0 || len > VERIFY_SNS_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\0')
			return false; /* an embedded NUL: not a name */
		n[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + ('a' - 'A') : s[i]);
	}
	n[len] = '\0';
	if (strcmp(n, "sns.amazonaws.com") == 0)
		return true;
	if (strncmp(n, "sns.", 4) != 0)
		return false;
	const char *region = n + 4, *dot = strchr(region, '.');
	if (!dot || (strcmp(dot, ".amazonaws.com") != 0 && strcmp(dot, ".amazonaws.com.cn") != 0))
		return false;
	size_t rl = (size_t)(dot - region);
	if (rl < 2 || !(region[0] >= 'a' && region[0] <= 'z') ||
	    !(region[rl - 1] >= '0' && region[rl - 1] <= '9'))
		return false;
	for (size_t i = 0; i < rl; i++)
		if (!is_lower_alnum((unsigned char)region[i]) && region[i] != '-')
			return false;
	return true;
}

/* Whether the certificate names SNS: a subject common name or a DNS
 * subject alternative name that is_sns_name(). */
static bool names_sns(X509 *cert)
{
	const X509_NAME *subj = X509_get_subject_name(cert);
	for (int i = -1; subj && (i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0;) {
		const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
		if (cn && is_sns_name(ASN1_STRING_get0_data(cn), (size_t)ASN1_STRING_length(cn)))
			return true;
	}
	GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	bool found = false;
	for (int i = 0; sans && !found && i < sk_GENERAL_NAME_num(sans); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
		if (gn->type == GEN_DNS)
			found = is_sns_name(ASN1_STRING_get0_data(gn->d.dNSName),
					    (size_t)ASN1_STRING_length(gn->d.dNSName));
	}
	GENERAL_NAMES_free(sans);
	return found;
}

X509 *verify_cert_from_pem(const char *pem, size_t len, const char **why)
{
	const char *reason = NULL;
	X509 *cert = NULL;
	BIO *bio = NULL;
	const char *block;
	size_t block_len;

	if (len == 0 || len > VERIFY_CERT_PEM_MAX ||
	    !single_pem_block(pem, len, &block, &block_len)) {
		reason = "not exactly one PEM certificate";
		goto fail;
	}
	bio = BIO_new_mem_buf(block, (int)block_len);
	if (!bio || !(cert = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
		reason = bio ? "not a readable certificate" : "out of memory";
		goto fail;
	}
	EVP_PKEY *key = X509_get0_pubkey(cert);
	if (!key || EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
		reason = "not an RSA key";
		goto fail;
	}
	if (EVP_PKEY_get_bits(key) < VERIFY_RSA_BITS_MIN) {
		reason = "RSA key shorter than 2048 bits";
		goto fail;
	}
	if (!names_sns(cert)) {
		reason = "certificate does not name sns.amazonaws.com or a regional SNS host";
		goto fail;
	}
	if (!prepare(cert)) {
		reason = "out of memory";
		goto fail;
	}
	BIO_free(bio);
	if (why)
		*why = "ok";
	return cert;
fail:
	ERR_clear_error();
	X509_free(cert);
	BIO_free(bio);
	if (why)
		*why = reason;
	return NULL;
}

/* The standard base64 alphabet's values of the ASCII bytes, -1 for the
 * others.  A lookup, not comparisons: signature characters are random, so
 * comparisons on them mispredict (a third of verify_signature's own time
 * in the benchmark's profile, ~1 us a message). */
static const signed char b64_values[128] = {
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63,
	52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
	-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
	15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1,
	-1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
	41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
};

static int b64_value(unsigned char c)
{
	return c < 128 ? b64_values[c] : -1;
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

enum mt_err verify_signature(const struct sns_message *m, X509 *cert)
{
	enum mt_err err;
	unsigned char *sig = NULL;
	char *tbs = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	size_t sig_len, tbs_len;
	unsigned char md[EVP_MAX_MD_SIZE];
	const struct prepared *p = g_ex_index < 0 ? NULL : X509_get_ex_data(cert, g_ex_index);

	if (!p)
		return MT_E_INTERNAL; /* not from verify_cert_from_pem() */
	time_t t = (time_t)(m->timestamp_ms / 1000);
	if (t < p->not_before || t >= p->not_after)
		return MT_E_CERT_INVALID;
	const struct sns_str *s = &m->f[SNS_F_SIGNATURE];
	sig = b64_decode(s->p, s->len, &sig_len);
	if (!sig)
		return MT_E_SIG_ENCODING;
	tbs = sns_string_to_sign(m, &tbs_len);
	ctx = EVP_PKEY_CTX_dup(p->ctx[m->signature_version == 2]);
	if (!tbs || !ctx) {
		err = MT_E_NOMEM;
		goto out;
	}
	unsigned md_len = 0;
	if (EVP_Digest(tbs, tbs_len, md, &md_len, p->md[m->signature_version == 2],
		       NULL) != 1) {
		err = MT_E_NOMEM;
		goto out;
	}
	err = EVP_PKEY_verify(ctx, sig, sig_len, md, md_len) == 1 ? MT_E_OK
								 : MT_E_BAD_SIGNATURE;
out:
	ERR_clear_error(); /* OpenSSL queues errors per thread; drop them */
	EVP_PKEY_CTX_free(ctx);
	free(tbs);
	free(sig);
	return err;
}
