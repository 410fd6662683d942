/* test_log.c - log.c's lines: held lines (log_hold/log_release) come out
 * whole, in order, only at the release, byte for byte as unheld ones. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "testutil.h"

static off_t stdout_size(void)
{
	struct stat st;
	return fstat(STDOUT_FILENO, &st) == 0 ? st.st_size : -1;
}

/* The output with every "time" value blanked (lines differ only there). */
static char *without_times(const char *path)
{
	char *s = test_read_file(path, NULL);
	for (char *p = s; p && (p = strstr(p, "{\"time\":\"")); p++)
		memset(p + 9, 'T', 24);
	return s;
}

/* Empties the output file (stdout) and writes from its start again. */
static void restart_output(void)
{
	CHECK(ftruncate(STDOUT_FILENO, 0) == 0 && lseek(STDOUT_FILENO, 0, SEEK_SET) == 0,
	      "truncating the output");
}

static void log_lines(int n, const char *filler)
{
	for (int i = 0; i < n; i++)
		LOG(LOG_INFO, "sns", "request_id=%08x n=%d s=\"%s\"", (unsigned)i, i, filler);
}

int main(void)
{
	char path[] = "/tmp/test_log.XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0, "mkstemp");
	if (fd < 0)
		return test_report("log");
	int saved = dup(STDOUT_FILENO);
	dup2(fd, STDOUT_FILENO);
	log_init(LOG_FORMAT_JSON, LOG_INFO);

	/* 1. Held lines are written at the release, not before. */
	log_hold();
	log_lines(3, "x");
	CHECK(stdout_size() == 0, "held lines written early: %lld bytes", (long long)stdout_size());
	log_release();
	off_t three = stdout_size();
	CHECK(three > 0, "nothing written at the release");

	/* 2. Lines that fill the hold buffer go out as it fills: same bytes
	 * as without holding (but the times), in the same order. */
	char big[2000];
	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_lines(7, big);
	char *plain = without_times(path);
	restart_output();
	log_hold();
	log_lines(3, "x");
	log_lines(7, big);
	CHECK(stdout_size() > 0 && stdout_size() < (off_t)strlen(plain),
	      "a full hold buffer was not written as it filled");
	log_release();
	char *held = without_times(path);
	CHECK(plain && held && strcmp(plain, held) == 0, "held output differs:\n%s\n---\n%s",
	      plain ? plain : "", held ? held : "");
	free(plain);
	free(held);

	/* 3. After the release, lines go out one by one again. */
	restart_output();
	log_lines(1, "x");
	CHECK(stdout_size() > 0, "line after release held");

	dup2(saved, STDOUT_FILENO);
	close(fd);
	unlink(path);
	return test_report("log");
}
