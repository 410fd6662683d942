#include "buf.h"

#include <stdlib.h>
#include <string.h>

enum buf_result buf_append(struct buf *b, const void *data, size_t n, size_t max)
{
	if (n > max || b->len > max - n)
		return BUF_TOO_LARGE;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p)
			return BUF_NOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return BUF_OK;
}

void buf_free(struct buf *b)
{
	if (!b)
		return;
	free(b->p);
	memset(b, 0, sizeof(*b));
}

char *buf_take(struct buf *b)
{
	char *p = b->p ? b->p : strdup("");
	memset(b, 0, sizeof(*b));
	return p;
}
