#include "groupcommit.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One caller's batch, on its stack while it waits. */
struct waiter {
	void *items;
	size_t n;
	enum mt_err err;
	char *errbuf;
	size_t errsz;
	bool taken; /* part of a group being run: no longer in the queue */
	bool done;
	pthread_cond_t wake; /* done, or first in the queue with no leader */
	struct waiter *next;
};

struct groupcommit {
	pthread_mutex_t lock;
	struct waiter *head, *tail; /* batches not yet taken, oldest first */
	unsigned running, max_running; /* groups being run */
	size_t item_size, max_items;
	unsigned queue_timeout_ms;
	groupcommit_exec_fn exec;
	void *ctx;
	unsigned long groups, batches;
};

struct groupcommit *groupcommit_new(size_t item_size, size_t max_items,
				    unsigned max_running, unsigned queue_timeout_ms,
				    groupcommit_exec_fn exec, void *ctx)
{
	struct groupcommit *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	pthread_mutex_init(&g->lock, NULL);
	g->item_size = item_size;
	g->max_items = max_items ? max_items : 1;
	g->max_running = max_running ? max_running : 1;
	g->queue_timeout_ms = queue_timeout_ms;
	g->exec = exec;
	g->ctx = ctx;
	return g;
}

void groupcommit_free(struct groupcommit *g)
{
	if (!g)
		return;
	pthread_mutex_destroy(&g->lock);
	free(g);
}

/* Takes the oldest batches from the queue, as many as fit in max_items
 * (at least one).  Called with the lock held. */
static struct waiter *take_group(struct groupcommit *g, size_t *total)
{
	struct waiter *first = g->head, *last = first;
	*total = first->n;
	first->taken = true;
	while (last->next && *total + last->next->n <= g->max_items) {
		last = last->next;
		last->taken = true;
		*total += last->n;
	}
	g->head = last->next;
	if (!g->head)
		g->tail = NULL;
	last->next = NULL;
	return first;
}

/* Runs one group without the lock: a batch alone as it is, several side
 * by side in one exec. */
static void run_group(struct groupcommit *g, struct waiter *first, size_t total)
{
	unsigned char *merged = first->next ? malloc(total * g->item_size) : NULL;
	if (!merged) {
		/* Alone, or no memory to merge: one exec per batch. */
		for (struct waiter *w = first; w; w = w->next)
			w->err = g->exec(g->ctx, w->items, w->n, w->errbuf, w->errsz);
		return;
	}
	size_t at = 0;
	for (struct waiter *w = first; w; w = w->next) {
		memcpy(merged + at * g->item_size, w->items, w->n * g->item_size);
		at += w->n;
	}
	char err[256] = "";
	enum mt_err e = g->exec(g->ctx, merged, total, err, sizeof(err));
	at = 0;
	for (struct waiter *w = first; w; w = w->next) {
		memcpy(w->items, merged + at * g->item_size, w->n * g->item_size);
		at += w->n;
		w->err = e;
		if (e != MT_E_OK)
			snprintf(w->errbuf, w->errsz, "%s", err);
	}
	free(merged);
}

/* Removes w (not taken yet) from the queue.  Called with the lock held. */
static void unqueue(struct groupcommit *g, struct waiter *w)
{
	struct waiter **p = &g->head, *prev = NULL;
	while (*p && *p != w) {
		prev = *p;
		p = &(*p)->next;
	}
	if (!*p)
		return;
	*p = w->next;
	if (g->tail == w)
		g->tail = prev;
}

enum mt_err groupcommit_run(struct groupcommit *g, void *items, size_t n,
			    char *errbuf, size_t errsz)
{
	struct waiter me = {.items = items, .n = n, .err = MT_E_OK,
			    .errbuf = errbuf, .errsz = errsz};
	struct timespec deadline;
	pthread_condattr_t ca;

	/* Each waiter sleeps on its own condition, so finishing a group wakes
	 * only the callers it served and the next leader, not every thread
	 * waiting. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&me.wake, &ca);
	pthread_condattr_destroy(&ca);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += g->queue_timeout_ms / 1000;
	deadline.tv_nsec += (long)(g->queue_timeout_ms % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&g->lock);
	/* me stays queued only while this call waits: it leaves the queue
	 * when taken into a group or when it gives up, before returning. */
	if (g->tail)
		g->tail->next = &me; /* cppcheck-suppress autoVariables */
	else
		g->head = &me; /* cppcheck-suppress autoVariables */
	g->tail = &me; /* cppcheck-suppress autoVariables */
	while (!me.done) {
		if (me.taken) {
			pthread_cond_wait(&me.wake, &g->lock);
			continue;
		}
		if (g->running == g->max_running) {
			/* A stuck Redis holds the group being run until its
			 * timeouts; a batch still queued behind it gives up
			 * instead of adding a whole group's wait to its own. */
			if (pthread_cond_timedwait(&me.wake, &g->lock, &deadline) ==
				    ETIMEDOUT &&
			    !me.taken) {
				unqueue(g, &me);
				if (g->running < g->max_running && g->head)
					pthread_cond_signal(&g->head->wake);
				snprintf(errbuf, errsz, "Redis busy: batch waited %u ms",
					 g->queue_timeout_ms);
				me.err = MT_E_REDIS;
				break;
			}
			continue;
		}
		size_t total;
		struct waiter *group = take_group(g, &total);
		g->running++;
		pthread_mutex_unlock(&g->lock);
		run_group(g, group, total);
		pthread_mutex_lock(&g->lock);
		g->groups++;
		for (struct waiter *w = group, *next; w; w = next) {
			next = w->next; /* w may be gone once done and unlocked */
			w->done = true;
			g->batches++;
			if (w != &me)
				pthread_cond_signal(&w->wake);
		}
		g->running--;
		if (g->head) /* the oldest waiting caller leads next */
			pthread_cond_signal(&g->head->wake);
	}
	pthread_mutex_unlock(&g->lock);
	pthread_cond_destroy(&me.wake);
	return me.err;
}

void groupcommit_stats(struct groupcommit *g, unsigned long *groups,
		       unsigned long *batches)
{
	pthread_mutex_lock(&g->lock);
	*groups = g->groups;
	*batches = g->batches;
	pthread_mutex_unlock(&g->lock);
}
