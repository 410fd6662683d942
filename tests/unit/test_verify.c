/* Every real SNS delivery in tests/data/real-sns against the certificate its
 * SigningCertURL names, with the verdict in EXPECTED. */
#include <dirent.h>

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
			cert = verify_cert_from_pem(pem, len);
			free(pem);
		}
	}
	if (d)
		closedir(d);
	return cert;
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
	X509 *other = pem ? verify_cert_from_pem(pem, len) : NULL;
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
	CHECK(!verify_cert_from_pem("", 0), "empty pem");
	CHECK(!verify_cert_from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 59),
	      "garbage pem");
	return test_report("verify");
}
