/* groupcommit.h - batches of concurrent requests run as one.
 *
 * Each stored delivery is one batch of Redis commands, one round trip.
 * When many deliveries arrive at once, a round trip each costs both sides
 * a write and a read system call and a wake-up per request.  Here the
 * first caller becomes the leader: it runs its own batch together with
 * every batch that other threads queued meanwhile, as one (one pipeline,
 * one round trip per Redis node), while they wait; then one of the callers
 * still waiting leads the next group.  Results are written back into each
 * caller's items in place.  A caller alone runs at once, as before.
 *
 * Items are opaque, item_size bytes each (the store's struct
 * rcluster_cmd): run copies them together, calls exec once, and copies
 * them back.  When exec fails, every batch of that group gets its error.
 */
#ifndef GROUPCOMMIT_H
#define GROUPCOMMIT_H

#include <stddef.h>

#include "mt_error.h"

/* Runs n items in one go (for the store: rcluster_exec). */
typedef enum mt_err (*groupcommit_exec_fn)(void *ctx, void *items, size_t n,
					   char *errbuf, size_t errsz);

struct groupcommit;

/* max_items bounds one group (a larger batch runs alone); at most
 * max_running groups run at once (more than one, so that a leader the
 * scheduler has put aside does not hold up everybody).  A batch still
 * queued after queue_timeout_ms (the group ahead of it is stuck, e.g. on
 * a Redis that does not answer) gives up with MT_E_REDIS.  NULL on
 * allocation failure; free with groupcommit_free() once no run is in
 * progress. */
struct groupcommit *groupcommit_new(size_t item_size, size_t max_items,
				    unsigned max_running, unsigned queue_timeout_ms,
				    groupcommit_exec_fn exec, void *ctx);
void groupcommit_free(struct groupcommit *g);

/* Runs items[0..n) through exec, possibly with other threads' batches,
 * and returns when they are done, with exec's result (errbuf says why
 * when it failed).  Thread-safe. */
enum mt_err groupcommit_run(struct groupcommit *g, void *items, size_t n,
			    char *errbuf, size_t errsz);

/* Groups run and batches in them so far (for the benchmark and tests). */
void groupcommit_stats(struct groupcommit *g, unsigned long *groups,
		       unsigned long *batches);

#endif
