/* spool.h - the durable on-disk spool (--spool-dir).
 *
 * While Redis cannot take a verified notification, its SNS body is appended
 * to a journal in the spool directory and synced to disk before the
 * delivery is answered 200.  A drainer thread replays the journal, oldest
 * first, through a callback (the same storing path as a live delivery,
 * without verification), backing off while that fails, and deletes a
 * journal file only once every record in it is done.
 *
 * Files: DIR/<20-digit sequence>.journal, each a series of records
 *   "\xffMTJ" | u32 body length | i64 spooled-at ms | u32 CRC-32C | body
 * (little-endian; the CRC covers length, time and body).  A record that
 * does not check, such as a torn tail left by a crash mid-append (never
 * answered 200), is skipped up to the next record that does.  A process
 * never appends to a file an earlier process wrote.  A crash while
 * draining replays the file from its start: storing is idempotent, so
 * records already stored add nothing.  The directory is locked (flock)
 * while the spool is open, so two processes never share it.
 *
 * Sequence numbers count up from the highest in the directory and never
 * wrap: a directory holding a file numbered SPOOL_SEQ_LIMIT or more (which
 * mailtrail never writes) is refused at open.
 *
 * A failed append (disk full, a write or sync error) removes what it
 * wrote: the bytes it added to the file are cut off again, and a file it
 * created for the record is deleted, so failures leave neither files nor
 * memory behind, however many there are.
 *
 * DIR/quarantine holds, in the same record format, the records that can
 * never be stored (Redis refuses them with an error that retrying does
 * not cure, or they no longer parse): each is copied there and synced
 * before the drain goes past it, so one such record never holds back the
 * ones after it.  It grows to at most SPOOL_QUARANTINE_MAX bytes; when a
 * record does not fit, the drainer waits (stalled) until it does, rather
 * than drop a message it acknowledged.  Moved to a journal name lower
 * than every other (00000000000000000000.journal), it is drained again.
 */
#ifndef SPOOL_H
#define SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mt_error.h"

/* Largest record body (the largest --max-body). */
#define SPOOL_RECORD_MAX (64u << 20)
/* A journal file is closed and a new one started beyond this size, so
 * that drained space is given back while an outage goes on. */
#define SPOOL_FILE_MAX (64u << 20)
/* Journal sequence numbers stay below this (2^63: a file a second for
 * 290 billion years), so the next one never wraps. */
#define SPOOL_SEQ_LIMIT (UINT64_C(1) << 63)
/* Most bytes in DIR/quarantine. */
#define SPOOL_QUARANTINE_MAX (64u << 20)
#define SPOOL_QUARANTINE_NAME "quarantine"
/* The drainer's wait after a failed store doubles from MIN up to MAX. */
#define SPOOL_BACKOFF_MIN_MS 100
#define SPOOL_BACKOFF_MAX_MS 5000

struct spool;

struct spool_stats {
	uint64_t bytes;         /* in journal files */
	uint64_t max_bytes;
	uint64_t records;       /* appended, not yet drained */
	uint64_t files;
	uint64_t spooled_total; /* appended by this process */
	uint64_t drained_total; /* stored by this process's drainer */
	uint64_t skipped_bytes; /* bytes of torn or corrupt records skipped */
	uint64_t quarantine_bytes;  /* in DIR/quarantine */
	uint64_t quarantined_total; /* set aside there by this process */
	bool stalled;           /* the last store attempt failed */
};

/* Opens (and locks) the existing directory dir, counting what earlier
 * processes left in it.  Returns NULL with one line in err when dir is
 * missing, not a writable directory, locked by another process,
 * unreadable, or holds a journal numbered SPOOL_SEQ_LIMIT or more.  Free
 * with spool_free(). */
struct spool *spool_open(const char *dir, uint64_t max_bytes, char *err,
			 size_t errsz);

/* Appends one body and syncs it to disk.  MT_E_OK only once it is
 * durable; MT_E_SPOOL_FULL when it would take the spool past max_bytes;
 * MT_E_SPOOL_IO (detail says why) when the disk refuses (full, a write or
 * a sync fails): then nothing of it is left in the directory. */
enum mt_err spool_append(struct spool *sp, const char *body, size_t len,
			 char *detail, size_t detsz);

void spool_stats(struct spool *sp, struct spool_stats *out);

/* What the drainer tells its owner (for the log). */
enum spool_event {
	SPOOL_STALLED, /* storing failed; retrying with backoff (detail) */
	SPOOL_RESUMED, /* storing works again */
	SPOOL_SKIPPED, /* n bytes of a torn or corrupt record skipped */
	SPOOL_EMPTY,   /* every record is stored; n drained since start */
	SPOOL_QUARANTINED, /* a record of n bytes set aside (detail: why) */
};

struct spool_hooks {
	/* Stores one record.  MT_E_OK when stored (or stored before): the
	 * record is done.  MT_E_REDIS_REFUSED or a 4xx error means it can
	 * never be stored: it goes to the quarantine.  Any other (5xx) error,
	 * such as Redis unavailable, keeps it for a retry after a backoff. */
	enum mt_err (*drain)(void *ctx, const char *body, size_t len,
			     char *detail, size_t detsz);
	void (*report)(void *ctx, enum spool_event ev, const char *file,
		       uint64_t n, const char *detail);
	void *ctx;
};

/* Starts the drainer thread.  False when the thread cannot be created. */
bool spool_start(struct spool *sp, const struct spool_hooks *hooks);

/* Stops the drainer (after the record in hand), closes and unlocks the
 * directory, frees; accepts NULL. */
void spool_free(struct spool *sp);

#endif
