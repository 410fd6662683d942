/* check.h - mailtrail check: the deployment's configuration, checked
 * without serving.
 *
 *   mailtrail check [--offline] [--cert-host HOST[:PORT]]... [OPTION]...
 *
 * Reads the server's options exactly as the server does (config_parse:
 * flags and MAILTRAIL_* variables), then checks, one line each on stdout
 * ("ok", "warn", "skip" or "FAIL", the check's name, what was found):
 *   redis            reachable (PING), its version, cluster mode matching
 *                    --redis-cluster
 *   redis-encoding   the listpack thresholds (README "Redis memory"):
 *                    warn only
 *   spool            --spool-dir a directory where a file can be created,
 *                    written, synced and removed; free space
 *   tls              --tls-cert and --tls-key load and match
 *   cert-cache       --cert-cache-dir readable, its certificates usable
 *   outbound-https   an HTTPS request to each SNS certificate host the
 *                    deployment needs (sns.<region>.amazonaws.com of
 *                    every --topic naming a region, else
 *                    sns.us-east-1.amazonaws.com; or --cert-host) gets an
 *                    answer, and --cert-host-pattern allows the host
 *                    (skipped with --offline)
 *   api-token        an --api-listen beyond loopback has --api-token
 * Nothing is written to Redis.  Exit status: 0 when nothing failed, 1 when
 * a check failed, 2 on a usage or configuration error.
 */
#ifndef CHECK_H
#define CHECK_H

#include "config.h"

/* Most certificate hosts tried (distinct regions of --topic, or
 * --cert-host given). */
#define CHECK_CERT_HOSTS_MAX 8
/* Most files of --cert-cache-dir read. */
#define CHECK_CACHE_FILES_MAX 1000
/* Most bytes of an answer read from a certificate host. */
#define CHECK_HTTPS_BODY_MAX (64 * 1024)
/* The host tried when no --topic names a region. */
#define CHECK_DEFAULT_CERT_HOST "sns.us-east-1.amazonaws.com"

/* argv[0] is "check".  Returns the exit status. */
int check_main(int argc, char **argv, config_getenv_fn env);

#endif
