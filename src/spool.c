#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mt_time.h"

#define REC_HDR 20
#define FILE_SUFFIX ".journal"
#define FILE_NAME_MAX 40

static const unsigned char rec_magic[4] = {0xff, 'M', 'T', 'J'};

struct segment {
	uint64_t seq, size, records;
};

struct spool {
	int dirfd; /* holds the flock */
	uint64_t max_bytes;
	pthread_mutex_t lock;
	pthread_cond_t wake; /* an append, or stop */
	struct segment *segs; /* oldest first */
	size_t nsegs, cap;
	int wfd; /* open for appends: segs[nsegs - 1]; -1 when none is */
	uint64_t next_seq;
	int qfd; /* DIR/quarantine, opened when first needed; else -1 */
	struct spool_stats st;
	bool stopping, running;
	pthread_t thread;
	struct spool_hooks hooks;
};

/* ---- CRC-32C (Castagnoli), table driven ------------------------------- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc32c(uint32_t crc, const void *data, size_t n)
{
	const unsigned char *p = data;
	crc = ~crc;
	while (n--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int bytes)
{
	uint64_t v = 0;
	for (int i = bytes - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* ---- reading records --------------------------------------------------- */

enum rec { REC_OK, REC_BAD, REC_END, REC_IO };

/* A record body, reused from record to record. */
struct rbuf {
	char *p;
	size_t len, cap;
	uint64_t spooled_ms; /* the time in its header */
};

static bool pread_full(int fd, void *buf, size_t n, uint64_t off)
{
	char *p = buf;
	while (n) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return true;
}

/* The record starting exactly at off, if one does (ending by end). */
static enum rec record_at(int fd, uint64_t off, uint64_t end, struct rbuf *b,
			  uint64_t *next)
{
	unsigned char h[REC_HDR];
	if (end - off < REC_HDR)
		return REC_BAD;
	if (!pread_full(fd, h, REC_HDR, off))
		return REC_IO;
	uint64_t len = get_le(h + 4, 4);
	if (memcmp(h, rec_magic, sizeof(rec_magic)) != 0 || len > SPOOL_RECORD_MAX ||
	    end - off - REC_HDR < len)
		return REC_BAD;
	if (b->cap < len + 1) {
		char *p = realloc(b->p, len + 1);
		if (!p)
			return REC_IO;
		b->p = p;
		b->cap = len + 1;
	}
	if (!pread_full(fd, b->p, len, off + REC_HDR))
		return REC_IO;
	b->p[len] = '\0';
	b->len = len;
	b->spooled_ms = get_le(h + 8, 8);
	if (crc32c(crc32c(0, h + 4, 12), b->p, len) != get_le(h + 16, 4))
		return REC_BAD;
	*next = off + REC_HDR + len;
	return REC_OK;
}

/* The record at off, read into b (*next: the offset after it).  REC_BAD:
 * no record starts at off; *next is where the next one that checks starts
 * (or end).  REC_END: nothing left before end. */
static enum rec record_read(int fd, uint64_t off, uint64_t end, struct rbuf *b,
			    uint64_t *next)
{
	if (off >= end)
		return REC_END;
	enum rec r = record_at(fd, off, end, b, next);
	if (r != REC_BAD)
		return r;
	/* Resynchronise: the magic starts with 0xff, a byte that UTF-8 text
	 * (every body) never holds. */
	unsigned char chunk[4096];
	for (uint64_t at = off + 1; at < end;) {
		size_t n = end - at < sizeof(chunk) ? (size_t)(end - at) : sizeof(chunk);
		if (!pread_full(fd, chunk, n, at))
			return REC_IO;
		for (size_t i = 0; i < n; i++) {
			uint64_t after;
			if (chunk[i] != 0xff)
				continue;
			r = record_at(fd, at + i, end, b, &after);
			if (r == REC_IO)
				return REC_IO;
			if (r == REC_OK) {
				*next = at + i;
				return REC_BAD;
			}
		}
		at += n;
	}
	*next = end;
	return REC_BAD;
}

/* ---- opening ------------------------------------------------------------- */

static void file_name(uint64_t seq, char name[FILE_NAME_MAX])
{
	snprintf(name, FILE_NAME_MAX, "%020" PRIu64 FILE_SUFFIX, seq);
}

static bool parse_file_name(const char *name, uint64_t *seq)
{
	char want[FILE_NAME_MAX];
	char *end;
	if (strlen(name) != 20 + strlen(FILE_SUFFIX) || name[0] < '0' || name[0] > '9')
		return false;
	errno = 0;
	unsigned long long v = strtoull(name, &end, 10);
	if (errno) /* beyond 2^64: not a name mailtrail writes */
		return false;
	*seq = v;
	file_name(*seq, want);
	return strcmp(name, want) == 0;
}

static bool segs_push(struct spool *sp, struct segment s)
{
	if (sp->nsegs == sp->cap) {
		size_t cap = sp->cap ? 2 * sp->cap : 16;
		struct segment *v = realloc(sp->segs, cap * sizeof(*v));
		if (!v)
			return false;
		sp->segs = v;
		sp->cap = cap;
	}
	sp->segs[sp->nsegs++] = s;
	return true;
}

static int seg_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct segment *)a)->seq, y = ((const struct segment *)b)->seq;
	return x < y ? -1 : x > y;
}

/* Counts the records of one file left by an earlier process. */
static bool scan_file(struct spool *sp, struct segment *s, struct rbuf *b,
		      char *err, size_t errsz)
{
	char name[FILE_NAME_MAX];
	struct stat stt;
	file_name(s->seq, name);
	int fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &stt) != 0) {
		snprintf(err, errsz, "cannot read %s: %s", name, strerror(errno));
		if (fd >= 0)
			close(fd);
		return false;
	}
	s->size = (uint64_t)stt.st_size;
	uint64_t off = 0, next;
	for (;;) {
		enum rec r = record_read(fd, off, s->size, b, &next);
		if (r == REC_END)
			break;
		if (r == REC_IO) {
			snprintf(err, errsz, "cannot read %s: %s", name,
				 errno ? strerror(errno) : "short read");
			close(fd);
			return false;
		}
		if (r == REC_OK)
			s->records++;
		off = next;
	}
	close(fd);
	return true;
}

static bool scan_dir(struct spool *sp, char *err, size_t errsz)
{
	int fd = openat(sp->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		snprintf(err, errsz, "cannot list it: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return false;
	}
	bool ok = true;
	struct dirent *de;
	while (ok && (de = readdir(d))) {
		struct segment s = {0};
		if (!parse_file_name(de->d_name, &s.seq))
			continue;
		ok = segs_push(sp, s);
		if (!ok)
			snprintf(err, errsz, "out of memory");
	}
	closedir(d);
	if (!ok)
		return false;
	if (sp->nsegs > 1)
		qsort(sp->segs, sp->nsegs, sizeof(*sp->segs), seg_cmp);
	struct rbuf b = {0};
	for (size_t i = 0; ok && i < sp->nsegs; i++) {
		ok = scan_file(sp, &sp->segs[i], &b, err, errsz);
		sp->st.bytes += sp->segs[i].size;
		sp->st.records += sp->segs[i].records;
	}
	free(b.p);
	sp->st.files = sp->nsegs;
	sp->next_seq = sp->nsegs ? sp->segs[sp->nsegs - 1].seq + 1 : 1;
	if (ok && sp->nsegs && sp->segs[sp->nsegs - 1].seq >= SPOOL_SEQ_LIMIT) {
		/* The next file's number would wrap (to a name drained before
		 * the others, or never): only a file put there by hand gets
		 * this far. */
		char name[FILE_NAME_MAX];
		file_name(sp->segs[sp->nsegs - 1].seq, name);
		snprintf(err, errsz, "journal %s is numbered %" PRIu64 " or more (mailtrail never "
			 "writes that): rename it below that, keeping the order", name,
			 (uint64_t)SPOOL_SEQ_LIMIT);
		return false;
	}
	return ok;
}

/* Proves the directory takes new files before anything is promised. */
static bool probe_writable(int dirfd, char *err, size_t errsz)
{
	static const char name[] = ".write-probe";
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errsz, "not writable: %s", strerror(errno));
		return false;
	}
	close(fd);
	unlinkat(dirfd, name, 0);
	return true;
}

struct spool *spool_open(const char *dir, uint64_t max_bytes, char *err,
			 size_t errsz)
{
	char why[256];
	struct spool *sp = calloc(1, sizeof(*sp));
	if (!sp) {
		snprintf(err, errsz, "mailtrail: out of memory");
		return NULL;
	}
	pthread_once(&crc_once, crc_init);
	sp->wfd = -1;
	sp->qfd = -1;
	sp->max_bytes = max_bytes;
	sp->st.max_bytes = max_bytes;
	sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sp->dirfd < 0) {
		snprintf(why, sizeof(why), "not a directory: %s", strerror(errno));
		goto fail;
	}
	if (flock(sp->dirfd, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EWOULDBLOCK)
			snprintf(why, sizeof(why), "locked by another mailtrail process (a spool is never shared)");
		else
			snprintf(why, sizeof(why), "cannot lock it: %s", strerror(errno));
		goto fail;
	}
	if (!probe_writable(sp->dirfd, why, sizeof(why)) ||
	    !scan_dir(sp, why, sizeof(why)))
		goto fail;
	struct stat qst;
	if (fstatat(sp->dirfd, SPOOL_QUARANTINE_NAME, &qst, 0) == 0)
		sp->st.quarantine_bytes = (uint64_t)qst.st_size;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sp->wake, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&sp->lock, NULL);
	return sp;
fail:
	snprintf(err, errsz, "mailtrail: invalid value for --spool-dir: '%s': %s", dir, why);
	if (sp->dirfd >= 0)
		close(sp->dirfd);
	free(sp->segs);
	free(sp);
	return NULL;
}

/* ---- appending ----------------------------------------------------------- */

static enum mt_err io_error(char *detail, size_t detsz, const char *what)
{
	snprintf(detail, detsz, "spool %s: %s", what, strerror(errno));
	return MT_E_SPOOL_IO;
}

/* A new file for appends, its directory entry synced.  Lock held. */
static enum mt_err file_create(struct spool *sp, char *detail, size_t detsz)
{
	char name[FILE_NAME_MAX];
	if (sp->next_seq >= SPOOL_SEQ_LIMIT) {
		/* Only after a file numbered just below it was put there by
		 * hand: a name mailtrail writes is always one it opens. */
		snprintf(detail, detsz, "spool create: journal sequence exhausted");
		return MT_E_SPOOL_IO;
	}
	file_name(sp->next_seq, name);
	int fd = openat(sp->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return io_error(detail, detsz, "create");
	if (fsync(sp->dirfd) != 0) {
		enum mt_err err = io_error(detail, detsz, "directory sync");
		close(fd);
		unlinkat(sp->dirfd, name, 0);
		return err;
	}
	if (!segs_push(sp, (struct segment){sp->next_seq, 0, 0})) {
		close(fd);
		unlinkat(sp->dirfd, name, 0);
		return MT_E_NOMEM;
	}
	sp->next_seq++;
	sp->st.files++;
	sp->wfd = fd;
	return MT_E_OK;
}

static bool pwrite_full(int fd, const char *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return false;
		}
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return true;
}

static void record_header(unsigned char h[REC_HDR], const char *body, size_t len,
			  uint64_t spooled_ms)
{
	memcpy(h, rec_magic, sizeof(rec_magic));
	put_le(h + 4, len, 4);
	put_le(h + 8, spooled_ms, 8);
	put_le(h + 16, crc32c(crc32c(0, h + 4, 12), body, len), 4);
}

/* Writes a record at off (the file's end) and syncs it.  On failure the
 * file is cut back to off, so that no part of the record stays (when
 * even that fails, the part stays beyond the size the drainer reads up
 * to, and after a restart it is skipped as torn, or stored: harmless, it
 * was answered 503 and SNS sends it again). */
static enum mt_err record_write(int fd, uint64_t off, const unsigned char h[REC_HDR],
				const char *body, size_t len, const char *what,
				char *detail, size_t detsz)
{
	char ctx[64];
	int saved;
	if (!pwrite_full(fd, (const char *)h, REC_HDR, off) ||
	    !pwrite_full(fd, body, len, off + REC_HDR)) {
		snprintf(ctx, sizeof(ctx), "%s write", what);
	} else if (fdatasync(fd) != 0) {
		snprintf(ctx, sizeof(ctx), "%s sync", what);
	} else {
		return MT_E_OK;
	}
	saved = errno;
	if (ftruncate(fd, (off_t)off) != 0)
		snprintf(ctx + strlen(ctx), sizeof(ctx) - strlen(ctx), " (not cut back)");
	errno = saved;
	return io_error(detail, detsz, ctx);
}

/* The file just created for a record that could not be written goes
 * again.  Lock held. */
static void drop_newest(struct spool *sp)
{
	char name[FILE_NAME_MAX];
	file_name(sp->segs[sp->nsegs - 1].seq, name);
	unlinkat(sp->dirfd, name, 0);
	sp->nsegs--;
	sp->st.files--;
}

enum mt_err spool_append(struct spool *sp, const char *body, size_t len,
			 char *detail, size_t detsz)
{
	unsigned char h[REC_HDR];
	enum mt_err err = MT_E_OK;

	if (len > SPOOL_RECORD_MAX) {
		snprintf(detail, detsz, "spool record too large");
		return MT_E_SPOOL_FULL;
	}
	record_header(h, body, len, (uint64_t)mt_time_now_ms());

	pthread_mutex_lock(&sp->lock);
	if (sp->st.bytes + REC_HDR + len > sp->max_bytes) {
		snprintf(detail, detsz, "spool full: %" PRIu64 " of %" PRIu64 " bytes used",
			 sp->st.bytes, sp->max_bytes);
		err = MT_E_SPOOL_FULL;
		goto out;
	}
	if (sp->wfd >= 0 && sp->segs[sp->nsegs - 1].size > 0 &&
	    sp->segs[sp->nsegs - 1].size + REC_HDR + len > SPOOL_FILE_MAX) {
		close(sp->wfd);
		sp->wfd = -1;
	}
	if (sp->wfd < 0 && (err = file_create(sp, detail, detsz)) != MT_E_OK)
		goto out;
	struct segment *s = &sp->segs[sp->nsegs - 1];
	err = record_write(sp->wfd, s->size, h, body, len, "spool", detail, detsz);
	if (err) {
		/* After a failed sync the file's cached pages cannot be
		 * trusted: the next append starts a new file (the records
		 * before were synced).  An empty file goes (the drainer never
		 * holds one open: it retires an empty file at once, lock
		 * held), so that failures do not pile up files and segments. */
		close(sp->wfd);
		sp->wfd = -1;
		if (s->size == 0)
			drop_newest(sp);
		goto out;
	}
	s->size += REC_HDR + len;
	s->records++;
	sp->st.bytes += REC_HDR + len;
	sp->st.records++;
	sp->st.spooled_total++;
	pthread_cond_signal(&sp->wake);
out:
	pthread_mutex_unlock(&sp->lock);
	return err;
}

void spool_stats(struct spool *sp, struct spool_stats *out)
{
	pthread_mutex_lock(&sp->lock);
	*out = sp->st;
	pthread_mutex_unlock(&sp->lock);
}

/* ---- draining ------------------------------------------------------------ */

/* Reports without holding the lock (the hook logs). */
static void report(struct spool *sp, enum spool_event ev, uint64_t seq,
		   uint64_t n, const char *detail)
{
	char name[FILE_NAME_MAX];
	file_name(seq, name);
	pthread_mutex_unlock(&sp->lock);
	sp->hooks.report(sp->hooks.ctx, ev, name, n, detail ? detail : "");
	pthread_mutex_lock(&sp->lock);
}

/* Waits ms or until stopped.  Lock held. */
static void pause_ms(struct spool *sp, unsigned ms)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (!sp->stopping &&
	       pthread_cond_timedwait(&sp->wake, &sp->lock, &until) != ETIMEDOUT)
		;
}

/* Every record of the oldest file is done: the file goes.  Lock held. */
static void retire_oldest(struct spool *sp)
{
	char name[FILE_NAME_MAX];
	struct segment s = sp->segs[0];
	if (sp->nsegs == 1 && sp->wfd >= 0) {
		close(sp->wfd);
		sp->wfd = -1;
	}
	file_name(s.seq, name);
	/* A failed unlink (or one lost in a crash) only means the file is
	 * drained again later: harmless. */
	unlinkat(sp->dirfd, name, 0);
	fsync(sp->dirfd);
	memmove(sp->segs, sp->segs + 1, (sp->nsegs - 1) * sizeof(*sp->segs));
	sp->nsegs--;
	sp->st.bytes -= s.size;
	sp->st.records -= s.records < sp->st.records ? s.records : sp->st.records;
	sp->st.files--;
}

/* Backs off after a failure to read or store.  Lock held. */
static void stall(struct spool *sp, unsigned *backoff, uint64_t seq,
		  const char *detail)
{
	if (!sp->st.stalled) {
		sp->st.stalled = true;
		report(sp, SPOOL_STALLED, seq, sp->st.records, detail);
	}
	*backoff = *backoff ? *backoff * 2 : SPOOL_BACKOFF_MIN_MS;
	if (*backoff > SPOOL_BACKOFF_MAX_MS)
		*backoff = SPOOL_BACKOFF_MAX_MS;
	pause_ms(sp, *backoff);
}

/* One record is done (stored, or never storable).  Lock held. */
static void record_done(struct spool *sp, struct segment *s, bool stored)
{
	if (s->records)
		s->records--;
	if (sp->st.records)
		sp->st.records--;
	if (stored)
		sp->st.drained_total++;
}

/* Copies the record in b to DIR/quarantine and syncs it.  Lock held
 * (rare: only for records that can never be stored). */
static enum mt_err quarantine(struct spool *sp, const struct rbuf *b, char *detail,
			      size_t detsz)
{
	unsigned char h[REC_HDR];
	if (sp->st.quarantine_bytes + REC_HDR + b->len > SPOOL_QUARANTINE_MAX) {
		snprintf(detail, detsz, "spool quarantine full (%" PRIu64 " of %u bytes): a record "
			 "Redis refuses waits for room",
			 sp->st.quarantine_bytes, SPOOL_QUARANTINE_MAX);
		return MT_E_SPOOL_FULL;
	}
	if (sp->qfd < 0) {
		sp->qfd = openat(sp->dirfd, SPOOL_QUARANTINE_NAME, O_WRONLY | O_CREAT | O_CLOEXEC,
				 0600);
		if (sp->qfd < 0)
			return io_error(detail, detsz, "quarantine open");
		if (fsync(sp->dirfd) != 0) {
			close(sp->qfd);
			sp->qfd = -1;
			return io_error(detail, detsz, "quarantine directory sync");
		}
		struct stat qst;
		if (fstat(sp->qfd, &qst) == 0)
			sp->st.quarantine_bytes = (uint64_t)qst.st_size;
	}
	record_header(h, b->p, b->len, b->spooled_ms);
	enum mt_err err = record_write(sp->qfd, sp->st.quarantine_bytes, h, b->p, b->len,
				       "quarantine", detail, detsz);
	if (err != MT_E_OK) {
		close(sp->qfd);
		sp->qfd = -1;
		return err;
	}
	sp->st.quarantine_bytes += REC_HDR + b->len;
	sp->st.quarantined_total++;
	return MT_E_OK;
}

/* Whether the drainer tries a record again after this answer. */
static bool retryable(enum mt_err err)
{
	return err != MT_E_OK && err != MT_E_REDIS_REFUSED && mt_err_http_status(err) >= 500;
}

static void *drain_main(void *arg)
{
	struct spool *sp = arg;
	struct rbuf b = {0};
	char detail[512];
	int rfd = -1;
	uint64_t rseq = 0, off = 0, next;
	unsigned backoff = 0;

	pthread_mutex_lock(&sp->lock);
	while (!sp->stopping) {
		if (sp->nsegs == 0) {
			pthread_cond_wait(&sp->wake, &sp->lock);
			continue;
		}
		struct segment s = sp->segs[0];
		if (rfd < 0 || rseq != s.seq) {
			char name[FILE_NAME_MAX];
			if (rfd >= 0)
				close(rfd);
			file_name(s.seq, name);
			rfd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
			rseq = s.seq;
			off = 0;
			if (rfd < 0 && errno == ENOENT) {
				/* Removed by hand: its records are gone. */
				report(sp, SPOOL_SKIPPED, s.seq, s.size, "file removed");
				retire_oldest(sp);
				continue;
			}
			if (rfd < 0) {
				snprintf(detail, sizeof(detail), "cannot open %s: %s", name,
					 strerror(errno));
				stall(sp, &backoff, s.seq, detail);
				continue;
			}
		}
		if (off >= s.size) {
			/* Everything in it is done (a file still open for
			 * appends goes too: the next append starts another). */
			close(rfd);
			rfd = -1;
			retire_oldest(sp);
			if (sp->nsegs == 0)
				report(sp, SPOOL_EMPTY, s.seq, sp->st.drained_total, NULL);
			continue;
		}
		pthread_mutex_unlock(&sp->lock);
		errno = 0;
		enum rec r = record_read(rfd, off, s.size, &b, &next);
		int read_errno = errno;
		enum mt_err err = MT_E_OK;
		detail[0] = '\0';
		if (r == REC_OK)
			err = sp->hooks.drain(sp->hooks.ctx, b.p, b.len, detail, sizeof(detail));
		pthread_mutex_lock(&sp->lock);

		if (r == REC_IO || r == REC_END) {
			snprintf(detail, sizeof(detail), "cannot read the journal: %s",
				 read_errno ? strerror(read_errno) : "short read");
			stall(sp, &backoff, s.seq, detail);
			continue;
		}
		if (r == REC_BAD) {
			sp->st.skipped_bytes += next - off;
			report(sp, SPOOL_SKIPPED, s.seq, next - off, NULL);
			off = next;
			continue;
		}
		if (retryable(err)) {
			stall(sp, &backoff, s.seq, detail[0] ? detail : mt_err_str(err));
			continue;
		}
		if (err != MT_E_OK) {
			char why[256];
			if (quarantine(sp, &b, why, sizeof(why)) != MT_E_OK) {
				stall(sp, &backoff, s.seq, why);
				continue;
			}
			report(sp, SPOOL_QUARANTINED, s.seq, REC_HDR + b.len,
			       detail[0] ? detail : mt_err_str(err));
		}
		record_done(sp, &sp->segs[0], err == MT_E_OK);
		off = next;
		backoff = 0;
		if (sp->st.stalled) {
			sp->st.stalled = false;
			report(sp, SPOOL_RESUMED, s.seq, sp->st.records, NULL);
		}
	}
	pthread_mutex_unlock(&sp->lock);
	if (rfd >= 0)
		close(rfd);
	free(b.p);
	return NULL;
}

bool spool_start(struct spool *sp, const struct spool_hooks *hooks)
{
	sp->hooks = *hooks;
	sp->running = pthread_create(&sp->thread, NULL, drain_main, sp) == 0;
	return sp->running;
}

void spool_free(struct spool *sp)
{
	if (!sp)
		return;
	pthread_mutex_lock(&sp->lock);
	sp->stopping = true;
	pthread_cond_broadcast(&sp->wake);
	pthread_mutex_unlock(&sp->lock);
	if (sp->running)
		pthread_join(sp->thread, NULL);
	if (sp->wfd >= 0)
		close(sp->wfd);
	if (sp->qfd >= 0)
		close(sp->qfd);
	close(sp->dirfd);
	pthread_cond_destroy(&sp->wake);
	pthread_mutex_destroy(&sp->lock);
	free(sp->segs);
	free(sp);
}
