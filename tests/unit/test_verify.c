/* Every real SNS delivery in tests/data/real-sns against the certificate its
 * SigningCertURL names, with the verdict in EXPECTED. */
#include <dirent.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdbool.h>

#include "sns.h"
#include "testutil.h"
#include "url.h"
#include "verify.h"

static const char *data;

/* Finds real-sns/<any>/<name> and loads it as a certificate. */
static X509 *load_cert_named(const char *name)
{
	char dirpath[1024];
	snprintf(dirpath, sizeof(dirpath), "%s/real-sns", data);
	DIR *d = opendir(dirpath);
	X509 *cert = NULL;
	struct dirent *de;
	while (d && !cert && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char path[2048];
		snprintf(path, sizeof(path), "%s/%s/%s", dirpath, de->d_name, name);
		size_t len;
		char *pem = test_read_file(path, &len);
		if (pem) {
			cert = verify_cert_from_pem(pem, len, NULL);
			free(pem);
		}
	}
	if (d)
		closedir(d);
	return cert;
}

/* Every certificate in real-sns (AWS's, 2015 to 2026) passes the checks. */
static void check_all_real_certs(void)
{
	char dirpath[1024];
	snprintf(dirpath, sizeof(dirpath), "%s/real-sns", data);
	DIR *d = opendir(dirpath);
	CHECK(d, "open %s", dirpath);
	int n = 0;
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char sub[2048];
		snprintf(sub, sizeof(sub), "%s/%s", dirpath, de->d_name);
		DIR *sd = opendir(sub);
		struct dirent *fe;
		while (sd && (fe = readdir(sd))) {
			size_t fl = strlen(fe->d_name);
			if (fl < 4 || strcmp(fe->d_name + fl - 4, ".pem") != 0)
				continue;
			char path[4096];
			snprintf(path, sizeof(path), "%s/%s", sub, fe->d_name);
			size_t len;
			char *pem = test_read_file(path, &len);
			const char *why = "unreadable";
			X509 *cert = pem ? verify_cert_from_pem(pem, len, &why) : NULL;
			CHECK(cert, "%s refused: %s", path, why);
			X509_free(cert);
			free(pem);
			n++;
		}
		if (sd)
			closedir(sd);
	}
	if (d)
		closedir(d);
	CHECK(n == 8, "found %d real certificates, expected 8", n);
}

/* A self-signed certificate for a new RSA key of bits bits (or, bits == 0,
 * an EC P-256 key), subject CN cn, with a DNS subjectAltName san unless
 * NULL, valid 2000-2100, as PEM.  Returns a malloc'd string (caller frees). */
static char *make_cert(int bits, const char *cn, const char *san)
{
	/* One 2048-bit key serves every certificate of that size: a key
	 * generation takes seconds under valgrind. */
	static EVP_PKEY *rsa2048;
	EVP_PKEY *key;
	if (bits == 2048) {
		if (!rsa2048)
			rsa2048 = EVP_RSA_gen(2048);
		key = rsa2048 && EVP_PKEY_up_ref(rsa2048) ? rsa2048 : NULL;
	} else {
		key = bits ? EVP_RSA_gen((unsigned)bits) : EVP_EC_gen("P-256");
	}
	X509 *x = X509_new();
	BIO *bio = BIO_new(BIO_s_mem());
	char *out = NULL;
	if (!key || !x || !bio)
		goto out;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	ASN1_TIME_set(X509_getm_notBefore(x), 946684800);   /* 2000 */
	ASN1_TIME_set(X509_getm_notAfter(x), 4102444800);   /* 2100 */
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509_set_pubkey(x, key);
	if (san) {
		char value[300];
		snprintf(value, sizeof(value), "DNS:%s", san);
		X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, value);
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	if (!X509_sign(x, key, EVP_sha256()) || !PEM_write_bio_X509(bio, x))
		goto out;
	char *mem;
	long n = BIO_get_mem_data(bio, &mem);
	if (n > 0 && (out = malloc((size_t)n + 1))) {
		memcpy(out, mem, (size_t)n);
		out[n] = '\0';
	}
out:
	BIO_free(bio);
	X509_free(x);
	EVP_PKEY_free(key);
	return out;
}

/* Whether pem (NUL-terminated) is accepted; *why gets the reason. */
static bool accepted(const char *pem, const char **why)
{
	*why = "no certificate made";
	X509 *cert = pem ? verify_cert_from_pem(pem, strlen(pem), why) : NULL;
	X509_free(cert);
	return cert != NULL;
}

static void check_generated_certs(void)
{
	const char *why;
	char *good = make_cert(2048, "sns.amazonaws.com", NULL);
	CHECK(accepted(good, &why), "2048-bit CN sns.amazonaws.com: %s", why);

	char *small = make_cert(512, "sns.amazonaws.com", "sns.amazonaws.com");
	CHECK(!accepted(small, &why) && strstr(why, "2048"), "512-bit key: %s", why);
	free(small);
	char *ec = make_cert(0, "sns.amazonaws.com", NULL);
	CHECK(!accepted(ec, &why) && strstr(why, "RSA"), "EC key: %s", why);
	free(ec);

	/* Names. */
	static const struct {
		const char *cn, *san;
		bool ok;
	} names[] = {
		{"sns.amazonaws.com", NULL, true},
		{"SNS.AmazonAWS.com", NULL, true},
		{"sns.us-east-1.amazonaws.com", NULL, true},
		{"sns.us-gov-west-1.amazonaws.com", NULL, true},
		{"sns.cn-north-1.amazonaws.com.cn", NULL, true},
		{"mailtrail test", "sns.eu-central-1.amazonaws.com", true},
		{"example.com", "sns.amazonaws.com", true},
		{"example.com", NULL, false},
		{"example.com", "example.com", false},
		{"sns.amazonaws.com.evil.example", NULL, false},
		{"xsns.amazonaws.com", NULL, false},
		{"sns.amazonaws.com.cn", NULL, false},
		{"sns..amazonaws.com", NULL, false},
		{"sns.us-east-1.evil.amazonaws.com", NULL, false},
		{"sns.-1.amazonaws.com", NULL, false},
		{"sns.us-east-x.amazonaws.com", NULL, false},
		{"sns.us_east-1.amazonaws.com", NULL, false},
		{"*.amazonaws.com", NULL, false},
		{"s3.amazonaws.com", "ec2.amazonaws.com", false},
		{"sns.us-east-1.amazonaws.com.evil", NULL, false},
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *pem = make_cert(2048, names[i].cn, names[i].san);
		CHECK(pem, "make %s", names[i].cn);
		bool ok = accepted(pem, &why);
		CHECK(ok == names[i].ok, "CN %s SAN %s: %s (%s)", names[i].cn,
		      names[i].san ? names[i].san : "-", ok ? "accepted" : "refused", why);
		if (!names[i].ok)
			CHECK(strstr(why, "name"), "CN %s: reason %s", names[i].cn, why);
		free(pem);
	}

	/* The body must be the certificate alone. */
	char buf[16384];
	snprintf(buf, sizeof(buf), "\r\n  %s\n\n", good);
	CHECK(accepted(buf, &why), "surrounding whitespace: %s", why);
	snprintf(buf, sizeof(buf), "<html><body><pre>\n%s</pre></body></html>\n", good);
	CHECK(!accepted(buf, &why), "HTML page holding a certificate accepted");
	snprintf(buf, sizeof(buf), "%s%s", good, good);
	CHECK(!accepted(buf, &why), "two certificates accepted");
	snprintf(buf, sizeof(buf), "x%s", good);
	CHECK(!accepted(buf, &why), "a byte before the certificate accepted");
	snprintf(buf, sizeof(buf), "%s.", good);
	CHECK(!accepted(buf, &why), "a byte after the certificate accepted");
	snprintf(buf, sizeof(buf), "%s", good);
	char *nl = strchr(buf, '\n');
	if (nl) { /* a PEM header line inside the block */
		memmove(nl + 12, nl, strlen(nl) + 1);
		memcpy(nl, "\nX-Junk: 1\n", 12);
	}
	CHECK(!accepted(buf, &why), "PEM header inside the block accepted");
	snprintf(buf, sizeof(buf), "%s", good);
	buf[strlen(buf) / 2] = '\0';
	CHECK(!accepted(buf, &why), "a truncated certificate accepted");
	free(good);
}

static char *load_message(const char *rel, struct sns_message *m, enum mt_err *err)
{
	char path[1024];
	size_t len;
	snprintf(path, sizeof(path), "%s/real-sns/%s", data, rel);
	char *body = test_read_file(path, &len);
	if (!body) {
		*err = MT_E_INTERNAL;
		memset(m, 0, sizeof(*m));
		return NULL;
	}
	*err = sns_envelope_parse(body, len, m);
	return body;
}

static enum mt_err verify_file(const char *rel, X509 *override)
{
	struct sns_message m;
	enum mt_err err;
	char *body = load_message(rel, &m, &err);
	if (err == MT_E_OK) {
		char name[URL_FILE_NAME_MAX];
		X509 *cert = override;
		if (!cert && url_file_name(m.f[SNS_F_SIGNING_CERT_URL].p, name))
			cert = load_cert_named(name);
		CHECK(cert, "%s: no certificate for %s", rel, m.f[SNS_F_SIGNING_CERT_URL].p);
		err = cert ? verify_signature(&m, cert) : MT_E_INTERNAL;
		if (cert != override)
			X509_free(cert);
	}
	sns_message_free(&m);
	free(body);
	return err;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_verify DATA_DIR\n");
		return 2;
	}
	data = argv[1];

	/* 1. EXPECTED, line by line. */
	char path[1024];
	snprintf(path, sizeof(path), "%s/real-sns/EXPECTED", data);
	char *expected = test_read_file(path, NULL);
	CHECK(expected, "read %s", path);
	int valid = 0, invalid = 0;
	char *save = NULL;
	for (char *line = expected ? strtok_r(expected, "\n", &save) : NULL; line;
	     line = strtok_r(NULL, "\n", &save)) {
		char rel[512], verdict[16];
		if (sscanf(line, "%511s %*s %*s %15s", rel, verdict) != 2)
			continue;
		enum mt_err err = verify_file(rel, NULL);
		if (strcmp(verdict, "VALID") == 0) {
			valid++;
			CHECK(err == MT_E_OK, "%s should verify: %s", rel, mt_err_str(err));
		} else {
			invalid++;
			CHECK(err == MT_E_BAD_SIGNATURE, "%s should fail: %s", rel, mt_err_str(err));
		}
	}
	free(expected);
	CHECK(valid == 20 && invalid == 2, "EXPECTED read %d valid, %d invalid", valid, invalid);

	/* 2. The unrelated certificate must not verify the sample message. */
	snprintf(path, sizeof(path), "%s/real-sns/aws-sdk-java-v2-sample/sns-public-cert.pem", data);
	size_t len;
	char *pem = test_read_file(path, &len);
	X509 *other = pem ? verify_cert_from_pem(pem, len, NULL) : NULL;
	free(pem);
	CHECK(other, "load sns-public-cert.pem");
	if (other)
		CHECK(verify_file("aws-sdk-java-v2-sample/sample-message.json", other) != MT_E_OK,
		      "sample message verified by an unrelated certificate");
	X509_free(other);

	/* 3. Mutations of one genuine v1 and one genuine v2 message. */
	const char *genuine[] = {
		"django-ses/ses-bounce-notification-no-subject.json",
		"aws-php-sns-message-validator/http-fixture-2.json",
	};
	for (size_t g = 0; g < 2; g++) {
		struct sns_message m;
		enum mt_err err;
		char *body = load_message(genuine[g], &m, &err);
		char name[URL_FILE_NAME_MAX];
		X509 *cert = NULL;
		if (err == MT_E_OK && url_file_name(m.f[SNS_F_SIGNING_CERT_URL].p, name))
			cert = load_cert_named(name);
		CHECK(cert, "%s cert", genuine[g]);
		if (cert) {
			CHECK(verify_signature(&m, cert) == MT_E_OK, "%s baseline", genuine[g]);

			/* Each signed field, one byte changed. */
			const enum sns_field signed_fields[] = {
				SNS_F_MESSAGE, SNS_F_MESSAGE_ID, SNS_F_TIMESTAMP, SNS_F_TOPIC_ARN,
			};
			for (size_t i = 0; i < 4; i++) {
				struct sns_str *f = &m.f[signed_fields[i]];
				char saved = f->p[f->len - 1];
				f->p[f->len - 1] ^= 1;
				CHECK(verify_signature(&m, cert) == MT_E_BAD_SIGNATURE,
				      "%s: tampered %s verified", genuine[g],
				      sns_field_name(signed_fields[i]));
				f->p[f->len - 1] = saved;
			}
			/* A Subject added where there was none. */
			if (!m.f[SNS_F_SUBJECT].p) {
				m.f[SNS_F_SUBJECT].p = strdup("x");
				m.f[SNS_F_SUBJECT].len = 1;
				CHECK(verify_signature(&m, cert) == MT_E_BAD_SIGNATURE, "subject added");
				free(m.f[SNS_F_SUBJECT].p);
				m.f[SNS_F_SUBJECT].p = NULL;
			}
			/* The other digest. */
			m.signature_version = 3 - m.signature_version;
			CHECK(verify_signature(&m, cert) == MT_E_BAD_SIGNATURE, "digest swapped");
			m.signature_version = 3 - m.signature_version;

			/* Validity judged at the message's Timestamp. */
			int64_t ts = m.timestamp_ms;
			m.timestamp_ms = 4102444800000LL; /* 2100 */
			CHECK(verify_signature(&m, cert) == MT_E_CERT_INVALID, "future");
			m.timestamp_ms = 946684800000LL; /* 2000 */
			CHECK(verify_signature(&m, cert) == MT_E_CERT_INVALID, "past");
			m.timestamp_ms = ts;

			/* Signature encodings. */
			struct sns_str *s = &m.f[SNS_F_SIGNATURE];
			char *orig = s->p;
			size_t orig_len = s->len;
			const char *bad[] = {"not base64!", "AAA", "AA=A", "====", "", "A\nAA"};
			for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
				s->p = (char *)bad[i];
				s->len = strlen(bad[i]);
				CHECK(verify_signature(&m, cert) == MT_E_SIG_ENCODING,
				      "signature '%s'", bad[i]);
			}
			s->p = (char *)"AAAA";
			s->len = 4;
			CHECK(verify_signature(&m, cert) == MT_E_BAD_SIGNATURE, "short signature");
			s->p = orig;
			s->len = orig_len;
			CHECK(verify_signature(&m, cert) == MT_E_OK, "%s restored", genuine[g]);
		}
		X509_free(cert);
		sns_message_free(&m);
		free(body);
	}

	/* 4. Certificate parsing limits. */
	CHECK(!verify_cert_from_pem("", 0, NULL), "empty pem");
	CHECK(!verify_cert_from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 59, NULL),
	      "garbage pem");

	/* 5. What a signing certificate must be. */
	check_all_real_certs();
	check_generated_certs();
	return test_report("verify");
}
