/* The spool without Redis: a fake store behind the drainer's hook, real
 * files in a temporary directory. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "spool.h"
#include "testutil.h"

#define BODIES_MAX 64

/* A disk that fills up or fails to sync, under spool.c: these definitions
 * take the place of the C library's for the whole test program (the
 * real calls are the system calls).  disk_free < 0: no limit; else the
 * bytes writes may still add before they fail with ENOSPC (a write is
 * cut short at the limit first, as a real full disk does).  sync_errno:
 * the error every fdatasync() fails with, 0 for none. */
static atomic_long disk_free = -1;
static atomic_int sync_errno;

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	long room = atomic_load(&disk_free);
	if (room == 0) {
		errno = ENOSPC;
		return -1;
	}
	if (room > 0 && n > (size_t)room)
		n = (size_t)room;
	ssize_t w = syscall(SYS_pwrite64, fd, buf, n, off);
	if (room > 0 && w > 0)
		atomic_fetch_sub(&disk_free, (long)w);
	return w;
}

int fdatasync(int fd)
{
	int e = atomic_load(&sync_errno);
	if (e) {
		errno = e;
		return -1;
	}
	return (int)syscall(SYS_fdatasync, fd);
}

/* The fake store: what it was handed, in order, and how it answers. */
static struct {
	pthread_mutex_t lock;
	char *seen[BODIES_MAX];
	int nseen;
	int fail_next;      /* answer MT_E_REDIS this many times */
	const char *reject; /* a body answered 400 (never storable) */
	const char *refuse; /* a body Redis refuses for good */
	int stalls, resumes, skipped, empties, quarantined;
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER};

static enum mt_err fake_drain(void *ctx, const char *body, size_t len,
			      char *detail, size_t detsz)
{
	enum mt_err err = MT_E_OK;
	pthread_mutex_lock(&fake.lock);
	if (fake.fail_next > 0) {
		fake.fail_next--;
		snprintf(detail, detsz, "connect: Connection refused");
		err = MT_E_REDIS;
	} else if (fake.reject && strlen(fake.reject) == len &&
		   memcmp(fake.reject, body, len) == 0) {
		err = MT_E_BAD_JSON;
	} else if (fake.refuse && strlen(fake.refuse) == len &&
		   memcmp(fake.refuse, body, len) == 0) {
		snprintf(detail, detsz, "WRONGTYPE Operation against a key");
		err = MT_E_REDIS_REFUSED;
	} else if (fake.nseen < BODIES_MAX) {
		fake.seen[fake.nseen++] = strndup(body, len);
	}
	pthread_mutex_unlock(&fake.lock);
	return err;
}

static void fake_report(void *ctx, enum spool_event ev, const char *file,
			uint64_t n, const char *detail)
{
	pthread_mutex_lock(&fake.lock);
	fake.stalls += ev == SPOOL_STALLED;
	fake.resumes += ev == SPOOL_RESUMED;
	fake.skipped += ev == SPOOL_SKIPPED;
	fake.empties += ev == SPOOL_EMPTY;
	fake.quarantined += ev == SPOOL_QUARANTINED;
	pthread_mutex_unlock(&fake.lock);
}

static void fake_reset(void)
{
	pthread_mutex_lock(&fake.lock);
	for (int i = 0; i < fake.nseen; i++)
		free(fake.seen[i]);
	fake.nseen = fake.fail_next = 0;
	fake.stalls = fake.resumes = fake.skipped = fake.empties = fake.quarantined = 0;
	fake.reject = fake.refuse = NULL;
	pthread_mutex_unlock(&fake.lock);
}

static const struct spool_hooks hooks = {fake_drain, fake_report, NULL};

static int journal_files(const char *dir, char *first, size_t firstsz)
{
	int n = 0;
	DIR *d = opendir(dir);
	for (struct dirent *de; d && (de = readdir(d));) {
		size_t l = strlen(de->d_name);
		if (l > 8 && strcmp(de->d_name + l - 8, ".journal") == 0) {
			if (n++ == 0 && first)
				snprintf(first, firstsz, "%s/%s", dir, de->d_name);
		}
	}
	if (d)
		closedir(d);
	return n;
}

/* Waits (at most 10 s) until the spool holds no record and the drainer
 * has said so. */
static bool wait_empty(struct spool *sp, int empties)
{
	for (int i = 0; i < 1000; i++) {
		struct spool_stats st;
		spool_stats(sp, &st);
		pthread_mutex_lock(&fake.lock);
		bool said = fake.empties >= empties;
		pthread_mutex_unlock(&fake.lock);
		if (st.records == 0 && st.files == 0 && said)
			return true;
		nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
	}
	return false;
}

static void append(struct spool *sp, const char *body)
{
	char detail[256];
	enum mt_err err = spool_append(sp, body, strlen(body), detail, sizeof(detail));
	CHECK(err == MT_E_OK, "append '%s': %s", body, detail);
}

/* The bodies of the records in DIR/quarantine, each followed by '\n',
 * are exactly want. */
static bool quarantine_holds(const char *dir, const char *want)
{
	char path[600], got[4096];
	size_t n = 0;
	unsigned char h[20];
	snprintf(path, sizeof(path), "%s/" SPOOL_QUARANTINE_NAME, dir);
	FILE *f = fopen(path, "rb");
	if (!f)
		return want[0] == '\0';
	while (fread(h, 1, sizeof(h), f) == sizeof(h) && memcmp(h, "\xffMTJ", 4) == 0) {
		size_t len = h[4] | (size_t)h[5] << 8 | (size_t)h[6] << 16 | (size_t)h[7] << 24;
		if (n + len + 2 > sizeof(got) || fread(got + n, 1, len, f) != len)
			break;
		n += len;
		got[n++] = '\n';
	}
	fclose(f);
	got[n] = '\0';
	if (strcmp(got, want) != 0)
		fprintf(stderr, "quarantine holds: '%s'\n", got);
	return strcmp(got, want) == 0;
}

static void wait_quarantined(int n)
{
	for (int i = 0; i < 1000; i++) {
		pthread_mutex_lock(&fake.lock);
		bool done = fake.quarantined >= n;
		pthread_mutex_unlock(&fake.lock);
		if (done)
			return;
		nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
	}
}

/* A record Redis refuses (an error reply that is not an outage) does not
 * hold back the ones after it: it is copied to the quarantine, synced
 * (while that fails the drainer waits and tries again), and the drain
 * goes on.  Moved to the lowest journal name, the quarantine is drained
 * again. */
static void test_quarantine(const char *dir)
{
	char err[512], detail[256], from[600], to[600];
	struct spool_stats st;

	fake_reset();
	struct spool *sp = spool_open(dir, 1 << 20, err, sizeof(err));
	CHECK(sp != NULL, "open: %s", err);
	spool_stats(sp, &st);
	CHECK(st.quarantine_bytes == 20 + 9, "the quarantine counted at open (%" PRIu64 ")",
	      st.quarantine_bytes);
	fake.refuse = "{\"wrongtype\":1}";
	fake.fail_next = 1;
	append(sp, "{\"n\":10}");
	append(sp, "{\"wrongtype\":1}");
	append(sp, "{\"n\":11}");
	atomic_store(&disk_free, 0); /* the quarantine cannot be written yet */
	CHECK(spool_start(sp, &hooks), "drainer");
	for (int i = 0; i < 1000; i++) {
		pthread_mutex_lock(&fake.lock);
		bool seen = fake.nseen == 1 && fake.stalls >= 2;
		pthread_mutex_unlock(&fake.lock);
		if (seen)
			break;
		nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
	}
	spool_stats(sp, &st);
	CHECK(st.stalled && st.records == 2 && fake.quarantined == 0,
	      "waits while the quarantine cannot be written (stalled %d, records %" PRIu64 ")",
	      st.stalled, st.records);
	atomic_store(&disk_free, -1);
	CHECK(wait_empty(sp, 1), "drained past the refused record");
	spool_stats(sp, &st);
	CHECK(st.quarantined_total == 1 && st.quarantine_bytes == 20 + 9 + 20 + 15,
	      "one more quarantined (%" PRIu64 ", %" PRIu64 " bytes)", st.quarantined_total,
	      st.quarantine_bytes);
	pthread_mutex_lock(&fake.lock);
	CHECK(fake.nseen == 2 && strcmp(fake.seen[0], "{\"n\":10}") == 0 &&
		      strcmp(fake.seen[1], "{\"n\":11}") == 0 && fake.quarantined == 1,
	      "10 and 11 stored, the refused one set aside (%d, %d)", fake.nseen,
	      fake.quarantined);
	pthread_mutex_unlock(&fake.lock);
	spool_free(sp);
	CHECK(quarantine_holds(dir, "{\"bad\":1}\n{\"wrongtype\":1}\n"), "both in the quarantine");

	/* Replayed once the cause is fixed. */
	fake_reset();
	snprintf(from, sizeof(from), "%s/" SPOOL_QUARANTINE_NAME, dir);
	snprintf(to, sizeof(to), "%s/00000000000000000000.journal", dir);
	CHECK(rename(from, to) == 0, "quarantine renamed");
	sp = spool_open(dir, 1 << 20, err, sizeof(err));
	CHECK(sp != NULL, "open: %s", err);
	spool_stats(sp, &st);
	CHECK(st.records == 2 && st.quarantine_bytes == 0, "its records counted (%" PRIu64 ")",
	      st.records);
	CHECK(spool_start(sp, &hooks) && wait_empty(sp, 1), "replayed");
	CHECK(fake.nseen == 2 && strcmp(fake.seen[1], "{\"wrongtype\":1}") == 0, "both stored");
	CHECK(spool_append(sp, "{}", 2, detail, sizeof(detail)) == MT_E_OK, "append: %s", detail);
	CHECK(wait_empty(sp, 2), "drained");
	spool_free(sp);
	wait_quarantined(0);
}

/* A full quarantine holds the drain (stalled) rather than drop a record
 * it cannot keep; stopped, emptied and started again, the drain goes on. */
static void test_quarantine_full(const char *dir)
{
	char err[512], path[600];
	struct spool_stats st;

	fake_reset();
	snprintf(path, sizeof(path), "%s/" SPOOL_QUARANTINE_NAME, dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0 && ftruncate(fd, SPOOL_QUARANTINE_MAX - 30) == 0, "a nearly full quarantine");
	close(fd);
	struct spool *sp = spool_open(dir, 1 << 20, err, sizeof(err));
	CHECK(sp != NULL, "open: %s", err);
	fake.refuse = "{\"wrongtype\":2}";
	append(sp, "{\"wrongtype\":2}");
	append(sp, "{\"n\":30}");
	CHECK(spool_start(sp, &hooks), "drainer");
	for (int i = 0; i < 1000; i++) {
		pthread_mutex_lock(&fake.lock);
		bool waiting = fake.stalls >= 1;
		pthread_mutex_unlock(&fake.lock);
		if (waiting)
			break;
		nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
	}
	nanosleep(&(struct timespec){0, 300 * 1000000L}, NULL);
	spool_stats(sp, &st);
	CHECK(st.stalled && st.records == 2 && st.quarantine_bytes == SPOOL_QUARANTINE_MAX - 30 &&
		      fake.nseen == 0 && fake.quarantined == 0,
	      "full: the record waits, and so do the ones behind it (stalled %d, records %" PRIu64
	      ")",
	      st.stalled, st.records);
	spool_free(sp);
	unlink(path);
	sp = spool_open(dir, 1 << 20, err, sizeof(err));
	CHECK(sp != NULL && spool_start(sp, &hooks) && wait_empty(sp, 1), "emptied: drained");
	CHECK(fake.nseen == 1 && strcmp(fake.seen[0], "{\"n\":30}") == 0 && fake.quarantined == 1,
	      "stored and set aside (%d, %d)", fake.nseen, fake.quarantined);
	spool_free(sp);
	CHECK(quarantine_holds(dir, "{\"wrongtype\":2}\n"), "in the quarantine");
	unlink(path);
}

/* Sequence numbers never wrap: a file numbered 2^63 or more (mailtrail
 * never writes one) makes the directory refused with one line. */
static void test_sequence(const char *dir)
{
	static const char *const refused[] = {"18446744073709551615.journal",
					      "09223372036854775808.journal"};
	char err[512], path[600];
	struct spool *sp;

	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, refused[i]);
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
		CHECK(fd >= 0, "create %s", path);
		close(fd);
		sp = spool_open(dir, 1 << 20, err, sizeof(err));
		CHECK(sp == NULL && strstr(err, refused[i]) && strstr(err, "--spool-dir") &&
			      !strchr(err, '\n'),
		      "refused with %s: %s", refused[i], err);
		spool_free(sp);
		unlink(path);
	}
	/* Just below: it opens, and the next file would be 2^63: refused as
	 * an append error (503), nothing created. */
	snprintf(path, sizeof(path), "%s/09223372036854775807.journal", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	CHECK(fd >= 0, "create %s", path);
	close(fd);
	sp = spool_open(dir, 1 << 20, err, sizeof(err));
	CHECK(sp != NULL, "opens below the limit: %s", err);
	char detail[256];
	int before = journal_files(dir, NULL, 0);
	CHECK(sp && spool_append(sp, "{}", 2, detail, sizeof(detail)) == MT_E_SPOOL_IO &&
		      strstr(detail, "sequence"),
	      "no file past the limit: %s", detail);
	CHECK(journal_files(dir, NULL, 0) == before, "nothing created");
	spool_free(sp);
	unlink(path);
}

/* The disk full or failing: each failed append answers MT_E_SPOOL_IO and
 * leaves nothing (no file, no bytes, no segment), however many fail; once
 * the disk takes writes again appends work, and every record acknowledged
 * before is drained, in order. */
static void test_failed_appends(const char *dir)
{
	char err[512], detail[256];
	struct spool_stats st, before;

	fake_reset();
	struct spool *sp = spool_open(dir, 1 << 20, err, sizeof(err));
	CHECK(sp != NULL, "open: %s", err);
	int files0 = journal_files(dir, NULL, 0);
	append(sp, "{\"n\":20}");
	spool_stats(sp, &before);

	/* ENOSPC, a few bytes in: the record is cut short on disk. */
	for (int i = 0; i < 200; i++) {
		atomic_store(&disk_free, i % 2 ? 7 : 0);
		CHECK(spool_append(sp, "{\"lost\":1}", 10, detail, sizeof(detail)) ==
				      MT_E_SPOOL_IO &&
			      strstr(detail, "No space left on device"),
		      "ENOSPC answers SPOOL_IO (503): %s", detail);
	}
	atomic_store(&disk_free, -1);
	spool_stats(sp, &st);
	CHECK(st.files == before.files && st.records == before.records && st.bytes == before.bytes,
	      "failed appends leave no file or record (%" PRIu64 " files, %" PRIu64 " bytes)",
	      st.files, st.bytes);
	CHECK(journal_files(dir, NULL, 0) == files0 + 1, "no file left behind (%d)",
	      journal_files(dir, NULL, 0));

	/* The sync fails (EIO), then a new file's too. */
	atomic_store(&sync_errno, EIO);
	for (int i = 0; i < 50; i++)
		CHECK(spool_append(sp, "{\"lost\":2}", 10, detail, sizeof(detail)) ==
				      MT_E_SPOOL_IO &&
			      strstr(detail, "sync"),
		      "a failed sync answers SPOOL_IO (503): %s", detail);
	atomic_store(&sync_errno, 0);
	spool_stats(sp, &st);
	CHECK(st.files == before.files && st.bytes == before.bytes,
	      "failed syncs leave nothing (%" PRIu64 " files, %" PRIu64 " bytes)", st.files,
	      st.bytes);
	CHECK(journal_files(dir, NULL, 0) == files0 + 1, "no file left behind (%d)",
	      journal_files(dir, NULL, 0));

	/* A real limit: RLIMIT_FSIZE makes writes past it fail with EFBIG
	 * (SIGXFSZ ignored, as a process that handles the error does). */
	struct rlimit old, lim;
	CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0, "getrlimit");
	signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = 8;
	CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit");
	for (int i = 0; i < 20; i++)
		CHECK(spool_append(sp, "{\"lost\":3}", 10, detail, sizeof(detail)) ==
			      MT_E_SPOOL_IO,
		      "EFBIG answers SPOOL_IO: %s", detail);
	CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0, "limit restored");
	spool_stats(sp, &st);
	CHECK(st.files == before.files && st.bytes == before.bytes &&
		      journal_files(dir, NULL, 0) == files0 + 1,
	      "EFBIG leaves nothing (%" PRIu64 " files, %" PRIu64 " bytes)", st.files, st.bytes);

	/* The disk takes writes again. */
	append(sp, "{\"n\":21}");
	append(sp, "{\"n\":22}");
	spool_stats(sp, &st);
	CHECK(st.records == before.records + 2, "appends work again");
	spool_free(sp);

	sp = spool_open(dir, 1 << 20, err, sizeof(err));
	CHECK(sp != NULL, "reopen: %s", err);
	spool_stats(sp, &st);
	CHECK(st.records == before.records + 2 && st.skipped_bytes == 0,
	      "nothing torn left on disk (%" PRIu64 " records)", st.records);
	CHECK(spool_start(sp, &hooks) && wait_empty(sp, 1), "drained");
	pthread_mutex_lock(&fake.lock);
	bool order = fake.nseen >= 3 && strcmp(fake.seen[fake.nseen - 3], "{\"n\":20}") == 0 &&
		     strcmp(fake.seen[fake.nseen - 2], "{\"n\":21}") == 0 &&
		     strcmp(fake.seen[fake.nseen - 1], "{\"n\":22}") == 0;
	bool lost = false;
	for (int i = 0; i < fake.nseen; i++)
		lost |= strstr(fake.seen[i], "lost") != NULL;
	pthread_mutex_unlock(&fake.lock);
	CHECK(order && !lost, "acknowledged records drained in order, failed ones absent");
	spool_free(sp);
}

int main(void)
{
	char dir[] = "/tmp/test_spool.XXXXXX";
	char err[512], path[600];
	CHECK(mkdtemp(dir) != NULL, "mkdtemp");

	/* Appended while nothing drains; in order after a restart, with a
	 * torn tail (a crash mid-append) skipped. */
	struct spool *sp = spool_open(dir, 1 << 20, err, sizeof(err));
	CHECK(sp != NULL, "open: %s", err);
	append(sp, "{\"n\":1}");
	append(sp, "{\"n\":2}");
	append(sp, "{\"n\":3}");
	struct spool_stats st;
	spool_stats(sp, &st);
	CHECK(st.records == 3 && st.files == 1 && st.spooled_total == 3, "stats after appends");
	CHECK(spool_open(dir, 1 << 20, err, sizeof(err)) == NULL &&
		      strstr(err, "locked by another mailtrail process"),
	      "a second open of a locked spool fails: %s", err);
	spool_free(sp);

	CHECK(journal_files(dir, path, sizeof(path)) == 1, "one journal file");
	int fd = open(path, O_WRONLY | O_APPEND);
	CHECK(fd >= 0 && write(fd, "\xffMTJ\x40\x00\x00\x00torn", 12) == 12, "torn tail written");
	close(fd);

	sp = spool_open(dir, 1 << 20, err, sizeof(err));
	CHECK(sp != NULL, "reopen: %s", err);
	spool_stats(sp, &st);
	CHECK(st.records == 3, "records counted at open: %llu", (unsigned long long)st.records);
	fake.fail_next = 2; /* Redis down for the first two tries */
	CHECK(spool_start(sp, &hooks), "drainer");
	CHECK(wait_empty(sp, 1), "drained");
	pthread_mutex_lock(&fake.lock);
	CHECK(fake.nseen == 3 && strcmp(fake.seen[0], "{\"n\":1}") == 0 &&
		      strcmp(fake.seen[2], "{\"n\":3}") == 0,
	      "all three, in order (%d)", fake.nseen);
	CHECK(fake.stalls == 1 && fake.resumes == 1, "one stall, one resume (%d, %d)",
	      fake.stalls, fake.resumes);
	CHECK(fake.skipped == 1, "the torn tail was skipped (%d)", fake.skipped);
	pthread_mutex_unlock(&fake.lock);
	CHECK(journal_files(dir, NULL, 0) == 0, "drained files are deleted");

	/* While the drainer runs: appended records are drained, a record that
	 * can never be stored is set aside in the quarantine, not retried
	 * forever. */
	fake_reset();
	fake.reject = "{\"bad\":1}";
	append(sp, "{\"n\":4}");
	append(sp, "{\"bad\":1}");
	append(sp, "{\"n\":5}");
	CHECK(wait_empty(sp, 1), "drained again");
	spool_stats(sp, &st);
	CHECK(st.drained_total == 5 && st.bytes == 0, "drained %llu, bytes %llu",
	      (unsigned long long)st.drained_total, (unsigned long long)st.bytes);
	pthread_mutex_lock(&fake.lock);
	CHECK(fake.nseen == 2 && strcmp(fake.seen[1], "{\"n\":5}") == 0, "stored around the bad one");
	CHECK(fake.quarantined == 1, "the bad one quarantined (%d)", fake.quarantined);
	pthread_mutex_unlock(&fake.lock);
	spool_free(sp);
	CHECK(quarantine_holds(dir, "{\"bad\":1}\n"), "the bad one is in the quarantine");
	test_quarantine(dir);
	test_quarantine_full(dir);

	/* A record damaged in the middle of a file fails its checksum and is
	 * skipped; the one after it is found again. */
	fake_reset();
	sp = spool_open(dir, 1 << 20, err, sizeof(err));
	CHECK(sp != NULL, "open: %s", err);
	append(sp, "{\"n\":6}");
	append(sp, "{\"n\":7}");
	append(sp, "{\"n\":8}");
	spool_free(sp);
	CHECK(journal_files(dir, path, sizeof(path)) == 1, "one journal file");
	fd = open(path, O_WRONLY);
	/* The second record's body starts at 20 + 7 + 20. */
	CHECK(fd >= 0 && pwrite(fd, "X", 1, 20 + 7 + 20 + 2) == 1, "damage written");
	close(fd);
	sp = spool_open(dir, 1 << 20, err, sizeof(err));
	spool_stats(sp, &st);
	CHECK(st.records == 2, "the damaged record is not counted (%llu)",
	      (unsigned long long)st.records);
	CHECK(spool_start(sp, &hooks) && wait_empty(sp, 1), "drained");
	pthread_mutex_lock(&fake.lock);
	CHECK(fake.nseen == 2 && strcmp(fake.seen[0], "{\"n\":6}") == 0 &&
		      strcmp(fake.seen[1], "{\"n\":8}") == 0 && fake.skipped == 1,
	      "6 and 8 stored, 7 skipped (%d stored, %d skipped)", fake.nseen, fake.skipped);
	pthread_mutex_unlock(&fake.lock);
	spool_free(sp);

	/* Full: an append past max_bytes is refused, nothing written. */
	fake_reset();
	sp = spool_open(dir, 64 << 10, err, sizeof(err));
	CHECK(sp != NULL, "open small: %s", err);
	static char big[40 << 10];
	memset(big, 'x', sizeof(big) - 1);
	append(sp, big);
	char detail[256];
	CHECK(spool_append(sp, big, strlen(big), detail, sizeof(detail)) == MT_E_SPOOL_FULL,
	      "full: %s", detail);
	spool_stats(sp, &st);
	CHECK(st.records == 1 && st.bytes == strlen(big) + 20, "one record kept");
	spool_free(sp);

	/* Not a directory, not writable. */
	CHECK(spool_open("/nonexistent/spool", 1 << 20, err, sizeof(err)) == NULL &&
		      strstr(err, "--spool-dir") && !strchr(err, '\n'),
	      "missing: %s", err);
	if (geteuid() != 0) {
		char ro[700];
		snprintf(ro, sizeof(ro), "%s/ro", dir);
		mkdir(ro, 0500);
		CHECK(spool_open(ro, 1 << 20, err, sizeof(err)) == NULL && strstr(err, "not writable"),
		      "read-only: %s", err);
		rmdir(ro);
	}

	test_sequence(dir);
	test_failed_appends(dir);

	/* Clean up: the kept record's file, the directory. */
	if (journal_files(dir, path, sizeof(path)) == 1)
		unlink(path);
	snprintf(path, sizeof(path), "%s/" SPOOL_QUARANTINE_NAME, dir);
	unlink(path);
	CHECK(rmdir(dir) == 0, "temporary directory left clean");
	fake_reset();
	return test_report("spool");
}
