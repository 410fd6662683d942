/* The spool without Redis: a fake store behind the drainer's hook, real
 * files in a temporary directory. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spool.h"
#include "testutil.h"

#define BODIES_MAX 64

/* The fake store: what it was handed, in order, and how it answers. */
static struct {
	pthread_mutex_t lock;
	char *seen[BODIES_MAX];
	int nseen;
	int fail_next;      /* answer MT_E_REDIS this many times */
	const char *reject; /* a body answered 400 (never storable) */
	int stalls, resumes, skipped, empties;
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
	pthread_mutex_unlock(&fake.lock);
}

static void fake_reset(void)
{
	pthread_mutex_lock(&fake.lock);
	for (int i = 0; i < fake.nseen; i++)
		free(fake.seen[i]);
	fake.nseen = fake.fail_next = 0;
	fake.stalls = fake.resumes = fake.skipped = fake.empties = 0;
	fake.reject = NULL;
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
	 * can never be stored is dropped, not retried forever. */
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
	pthread_mutex_unlock(&fake.lock);
	spool_free(sp);

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

	/* Clean up: the kept record's file, the directory. */
	if (journal_files(dir, path, sizeof(path)) == 1)
		unlink(path);
	CHECK(rmdir(dir) == 0, "temporary directory left clean");
	fake_reset();
	return test_report("spool");
}
