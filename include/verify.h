/* verify.h - is this SNS message signed by this certificate?  Pure. */
#ifndef VERIFY_H
#define VERIFY_H

#include <openssl/x509.h>
#include <stddef.h>

#include "mt_error.h"
#include "sns.h"

/* Largest signing certificate PEM accepted (AWS's are about 2 KiB). */
#define VERIFY_CERT_PEM_MAX (64 * 1024)

/* Shortest RSA key accepted in a signing certificate. */
#define VERIFY_RSA_BITS_MIN 2048
/* Longest name looked at in a certificate's subject or SANs. */
#define VERIFY_SNS_NAME_MAX 253

/* Parses a signing certificate and prepares it for verify_signature() (its
 * validity and ready verify contexts for its key go with it, so nothing is
 * parsed or looked up per message).  The same rule for a download and for a
 * file of --cert-cache-dir:
 *   - pem is exactly one "-----BEGIN CERTIFICATE-----" block, with only
 *     whitespace before and after it (not an HTML page that quotes one,
 *     not two certificates, no PEM headers);
 *   - its key is RSA of at least VERIFY_RSA_BITS_MIN bits;
 *   - it names SNS: a subject CN or a DNS subjectAltName that is
 *     sns.amazonaws.com, sns.<region>.amazonaws.com or
 *     sns.<region>.amazonaws.com.cn (every AWS signing certificate since
 *     2015 has CN and SAN sns.amazonaws.com).
 * Returns a new X509 (caller frees with X509_free), or NULL with a static
 * one-line reason in *why (why may be NULL). */
X509 *verify_cert_from_pem(const char *pem, size_t len, const char **why);

/* Checks m's Signature against cert: the certificate must have been valid
 * at m's Timestamp (MT_E_CERT_INVALID), the Signature must be base64
 * (MT_E_SIG_ENCODING), and it must verify over sns_string_to_sign(m) with
 * SHA1withRSA (SignatureVersion 1) or SHA256withRSA (2)
 * (MT_E_BAD_SIGNATURE). */
/* cert must come from verify_cert_from_pem() (MT_E_INTERNAL otherwise). */
enum mt_err verify_signature(const struct sns_message *m, X509 *cert);

#endif
