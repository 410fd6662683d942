/* buf.h - a growable byte buffer with a hard size limit, for bodies that
 * arrive in pieces (request bodies, fetched certificates). */
#ifndef BUF_H
#define BUF_H

#include <stdbool.h>
#include <stddef.h>

#include "mt_error.h"

struct buf {
	char *p; /* NUL-terminated after the first append; owned */
	size_t len, cap;
};

enum buf_result { BUF_OK, BUF_TOO_LARGE, BUF_NOMEM };

/* Appends data[0..n) unless len would exceed max. */
enum buf_result buf_append(struct buf *b, const void *data, size_t n, size_t max);

/* A buf_append() result as the program's error: MT_E_OK, MT_E_TOO_LARGE
 * (max passed) or MT_E_NOMEM. */
static inline enum mt_err buf_result_err(enum buf_result r)
{
	return r == BUF_OK ? MT_E_OK : r == BUF_TOO_LARGE ? MT_E_TOO_LARGE : MT_E_NOMEM;
}

/* Frees the bytes and empties b; accepts NULL. */
void buf_free(struct buf *b);

/* Hands the bytes over (caller frees; "" when empty, NULL on allocation
 * failure) and empties b. */
char *buf_take(struct buf *b);

#endif
