/* libFuzzer harness: mailtrail import's reader (importread), which cuts a
 * decompressed file into messages.  Input: one byte choosing the limit
 * (--max-body: 1 to 256 bytes, or 64 KiB), one byte seeding the sizes of
 * the pieces, then the file.  The file is read twice, whole and in pieces
 * of 1 to 256 bytes, and both readings must hand over the same messages
 * (bytes, lines, errors) in the same order; every message is within the
 * limit, non-empty, without surrounding white space, and its line is
 * within the file's. */
#include <stdlib.h>
#include <string.h>

#include "importread.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

struct seen {
	char *bytes;       /* every message, NUL-separated, with its line */
	size_t len, cap;
	size_t max;
	unsigned long lines;
};

static void add(struct seen *s, const void *p, size_t n)
{
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2 + 64;
		s->bytes = realloc(s->bytes, s->cap);
		if (!s->bytes)
			abort();
	}
	memcpy(s->bytes + s->len, p, n);
	s->len += n;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

static bool on_message(void *ctx, const char *msg, size_t len, unsigned long line,
		       enum mt_err err)
{
	struct seen *s = ctx;
	if (line < 1 || line > s->lines)
		abort();
	if (err == MT_E_TOO_LARGE) {
		if (msg)
			abort();
		add(s, "\0L", 2);
	} else {
		if (err != MT_E_OK || !msg || len == 0 || len > s->max ||
		    is_space(msg[0]) || is_space(msg[len - 1]))
			abort();
		char id[IMPORTREAD_ID_LEN + 1];
		importread_trusted_id(msg, len, id);
		if (strlen(id) != IMPORTREAD_ID_LEN || id[14] != '8')
			abort();
		add(s, "\0M", 2);
		add(s, msg, len);
	}
	add(s, &line, sizeof(line));
	return true;
}

static void read_all(const unsigned char *file, size_t n, size_t max, unsigned seed,
		     bool pieces, struct seen *s)
{
	struct importread r;
	importread_init(&r, max);
	s->max = max;
	size_t at = 0;
	while (at < n) {
		size_t k = n - at;
		if (pieces) {
			seed = seed * 1103515245u + 12345u;
			size_t want = 1 + (seed >> 16) % 256;
			k = k < want ? k : want;
		}
		if (!importread_feed(&r, (const char *)file + at, k, on_message, s))
			abort(); /* the callback never stops it; memory is plenty */
		at += k;
	}
	if (!importread_end(&r, on_message, s))
		abort();
	importread_free(&r);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t max = data[0] == 255 ? 65536 : (size_t)data[0] + 1;
	unsigned seed = data[1];
	const unsigned char *file = data + 2;
	size_t n = size - 2;
	unsigned long lines = 1;
	for (size_t i = 0; i < n; i++)
		lines += file[i] == '\n';
	struct seen whole = {.lines = lines}, cut = {.lines = lines};
	read_all(file, n, max, seed, false, &whole);
	read_all(file, n, max, seed, true, &cut);
	if (whole.len != cut.len || (whole.len && memcmp(whole.bytes, cut.bytes, whole.len) != 0))
		abort();
	free(whole.bytes);
	free(cut.bytes);
	return 0;
}
