/* import.h - mailtrail import: backfill captured deliveries.
 *
 *   mailtrail import [OPTION]... FILE|DIR...
 *
 * Reads captured SNS deliveries (one JSON document per file, or NDJSON:
 * one per line; gzip-compressed or not, whatever the name), walking each
 * DIR recursively (regular files, in byte order of their names, names
 * beginning with '.' left out), verifies each exactly as POST /sns does
 * (webhook_begin / webhook_fetch: envelope, topic, URLs, --max-age,
 * certificate from --cert-cache-dir or fetched, signature, SES events),
 * and stores them as the server would, WEBHOOK_COMMIT_MAX per round
 * trip.  --trusted-ses reads SES event JSON without any envelope, trusting
 * the file.  The server's options are read as the server reads them
 * (config_parse: flags and MAILTRAIL_* variables); no listener starts.
 * Progress goes to stderr (importprogress.h), the summary to stdout.
 */
#ifndef IMPORT_H
#define IMPORT_H

#include "config.h"

/* Verifying threads. */
#define IMPORT_VERIFIERS 2
/* Jobs (each up to WEBHOOK_COMMIT_MAX messages, or WEBHOOK_COMMIT_BYTES_MAX
 * bytes) read ahead of the verifiers, and the bytes they may hold: the
 * reader waits beyond either. */
#define IMPORT_QUEUE_JOBS 8
#define IMPORT_QUEUE_BYTES_MAX (32u << 20)
/* A message that fails for a reason that may pass (Redis unavailable, a
 * certificate that cannot be fetched now) is tried again this many times,
 * after IMPORT_RETRY_WAIT_MS, then twice that, ...; then it counts as
 * failed.  When Redis is still unavailable after that, the import stops:
 * the messages not yet tried and the files not yet read are counted as
 * such. */
#define IMPORT_RETRIES 3
#define IMPORT_RETRY_WAIT_MS 500
/* Problems listed by file (and line) in the summary. */
#define IMPORT_PROBLEMS_SHOWN 10
/* Directory levels walked below a DIR operand. */
#define IMPORT_DEPTH_MAX 32
/* Bytes decompressed per read. */
#define IMPORT_READ_CHUNK (64u << 10)
/* --progress-every: default and most seconds between plain lines. */
#define IMPORT_PROGRESS_EVERY_S 5
#define IMPORT_PROGRESS_EVERY_MAX 3600
/* --trusted-ses-topic default. */
#define IMPORT_TRUSTED_TOPIC "mailtrail:import:trusted-ses"

/* argv[0] is "import".  Returns the exit status: 0 when every message was
 * stored, a duplicate or a noted confirmation; 1 when anything was
 * rejected or failed, or a file could not be read; 2 on a usage or
 * configuration error (nothing imported). */
int import_main(int argc, char **argv, config_getenv_fn env);

#endif
