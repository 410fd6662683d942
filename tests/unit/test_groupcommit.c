/* groupcommit: concurrent batches run together, each gets its own results
 * back, a failure reaches every batch of its group, a batch queued behind
 * a stuck group gives up after the queue timeout. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#include "groupcommit.h"
#include "testutil.h"

#define THREADS 8
#define BATCHES 300

struct item {
	int in;
	int out; /* exec: in * 2 + 1 */
};

struct fake {
	atomic_int calls, items;
	atomic_int running; /* execs at the same moment */
	atomic_int most;    /* the most at one moment: at most max_running */
	atomic_bool fail;
	atomic_int sleep_us;
};

static enum mt_err fake_exec(void *ctx, void *items, size_t n, char *errbuf,
			     size_t errsz)
{
	struct fake *f = ctx;
	struct item *it = items;
	int now = atomic_fetch_add(&f->running, 1) + 1;
	for (int m = atomic_load(&f->most); now > m;)
		if (atomic_compare_exchange_weak(&f->most, &m, now))
			break;
	atomic_fetch_add(&f->calls, 1);
	atomic_fetch_add(&f->items, (int)n);
	usleep((useconds_t)atomic_load(&f->sleep_us)); /* the round trip */
	for (size_t i = 0; i < n; i++)
		it[i].out = it[i].in * 2 + 1;
	atomic_fetch_sub(&f->running, 1);
	if (atomic_load(&f->fail)) {
		snprintf(errbuf, errsz, "fake failure");
		return MT_E_REDIS;
	}
	return MT_E_OK;
}

struct worker {
	struct groupcommit *g;
	int id;
	int wrong, errors;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	for (int b = 0; b < BATCHES; b++) {
		struct item it[3];
		size_t n = 1 + (size_t)(b % 3);
		for (size_t i = 0; i < n; i++)
			it[i] = (struct item){w->id * 100000 + b * 10 + (int)i, -1};
		char err[64];
		if (groupcommit_run(w->g, it, n, err, sizeof(err)) != MT_E_OK)
			w->errors++;
		for (size_t i = 0; i < n; i++)
			if (it[i].out != it[i].in * 2 + 1)
				w->wrong++;
	}
	return NULL;
}

static void test_concurrent(unsigned max_running)
{
	struct fake f = {0};
	atomic_store(&f.sleep_us, 200);
	struct groupcommit *g =
		groupcommit_new(sizeof(struct item), 16, max_running, 3000, fake_exec, &f);
	pthread_t t[THREADS];
	struct worker w[THREADS];
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){g, i, 0, 0};
		pthread_create(&t[i], NULL, work, &w[i]);
	}
	int wrong = 0, errors = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		wrong += w[i].wrong;
		errors += w[i].errors;
	}
	unsigned long groups, batches;
	groupcommit_stats(g, &groups, &batches);
	CHECK(wrong == 0, "%d items came back with another item's result", wrong);
	CHECK(errors == 0, "%d batches failed", errors);
	CHECK(batches == THREADS * BATCHES, "%lu batches counted", batches);
	CHECK(atomic_load(&f.items) == THREADS * BATCHES * 2,
	      "exec saw %d items, want %d", atomic_load(&f.items), THREADS * BATCHES * 2);
	CHECK(atomic_load(&f.most) <= (int)max_running, "%d execs at once, at most %u",
	      atomic_load(&f.most), max_running);
	/* 8 threads, 200 us a round trip: batches must have shared rounds
	 * (without grouping there would be one a batch; on a loaded machine
	 * fewer threads run at once, so about two a round is seen). */
	CHECK(groups < batches * 3 / 4, "%lu groups for %lu batches: no grouping", groups,
	      batches);
	CHECK((unsigned long)atomic_load(&f.calls) == groups, "calls %d, groups %lu",
	      atomic_load(&f.calls), groups);
	printf("concurrent, %u at once: %lu batches in %lu groups\n", max_running, batches,
	       groups);
	groupcommit_free(g);
}

static void test_alone_and_failure(void)
{
	struct fake f = {0};
	struct groupcommit *g =
		groupcommit_new(sizeof(struct item), 4, 1, 3000, fake_exec, &f);
	struct item it[6] = {{1, 0}, {2, 0}, {3, 0}, {4, 0}, {5, 0}, {6, 0}};
	char err[64] = "";
	/* Larger than max_items: runs alone, whole. */
	CHECK(groupcommit_run(g, it, 6, err, sizeof(err)) == MT_E_OK, "big batch");
	CHECK(it[5].out == 13 && atomic_load(&f.calls) == 1, "big batch ran once, whole");
	atomic_store(&f.fail, true);
	CHECK(groupcommit_run(g, it, 2, err, sizeof(err)) == MT_E_REDIS, "failure passed on");
	CHECK(strcmp(err, "fake failure") == 0, "errbuf: '%s'", err);
	groupcommit_free(g);
}

struct slow_arg {
	struct groupcommit *g;
	enum mt_err err;
	char errbuf[64];
	double secs;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *slow_run(void *arg)
{
	struct slow_arg *a = arg;
	struct item it = {7, 0};
	double t0 = now_s();
	a->err = groupcommit_run(a->g, &it, 1, a->errbuf, sizeof(a->errbuf));
	a->secs = now_s() - t0;
	return NULL;
}

static void test_queue_timeout(void)
{
	struct fake f = {0};
	atomic_store(&f.sleep_us, 600000); /* a stuck Redis: 0.6 s a round */
	struct groupcommit *g =
		groupcommit_new(sizeof(struct item), 16, 1, 200, fake_exec, &f);
	struct slow_arg first = {g, MT_E_OK, "", 0}, second = {g, MT_E_OK, "", 0};
	pthread_t a, b;
	pthread_create(&a, NULL, slow_run, &first);
	usleep(100000); /* first is running its group */
	pthread_create(&b, NULL, slow_run, &second);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	CHECK(first.err == MT_E_OK, "the running group completes");
	CHECK(second.err == MT_E_REDIS && strstr(second.errbuf, "busy"),
	      "the queued batch gives up: %d '%s'", second.err, second.errbuf);
	/* Not a timing assertion: only that it did not wait for a group of
	 * its own (0.6 s more) after the one ahead. */
	CHECK(atomic_load(&f.calls) == 1, "the queued batch never ran (%d calls)",
	      atomic_load(&f.calls));
	groupcommit_free(g);
}

int main(void)
{
	test_concurrent(1);
	test_concurrent(2);
	test_alone_and_failure();
	test_queue_timeout();
	return test_report("groupcommit");
}
