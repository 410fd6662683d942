/* importread.h - captured deliveries in a file, cut into messages.
 *
 * Pure: fed the bytes of one file (decompressed) in pieces of any size,
 * it hands over each message.  A file is one of two shapes, told by its
 * first line that is not blank:
 *   - NDJSON: that line, without surrounding white space, begins with '{'
 *     and ends with '}' (a whole JSON object on one line): every line that
 *     is not blank is one message;
 *   - one JSON document (pretty-printed, as captures usually are):
 *     anything else; the whole file is one message.
 * A message longer than the limit (--max-body, as POST /sns) is never
 * buffered: its bytes are skipped (to the end of its line, or of the
 * file) and it is handed over as MT_E_TOO_LARGE, so the memory a file
 * takes is bounded whatever it decompresses to.
 */
#ifndef IMPORTREAD_H
#define IMPORTREAD_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "mt_error.h"

enum importread_shape { IMPORTREAD_UNDECIDED, IMPORTREAD_NDJSON, IMPORTREAD_DOCUMENT };

struct importread {
	size_t max;                  /* longest message */
	enum importread_shape shape;
	struct buf cur;              /* the message being gathered */
	unsigned long line;          /* line of the next byte, from 1 */
	unsigned long start;         /* line cur begins on */
	bool skipping;               /* cur passed max: skipping to its end */
	bool stopped;                /* the callback said stop (or no memory) */
	bool nomem;
};

/* One message (msg[0..len), trailing white space removed; valid only
 * during the call) beginning on line (1 for a document), or, with err
 * MT_E_TOO_LARGE, one that was too long (msg NULL).  Returns false to
 * stop reading. */
typedef bool (*importread_fn)(void *ctx, const char *msg, size_t len,
			      unsigned long line, enum mt_err err);

void importread_init(struct importread *r, size_t max);

/* Takes data[0..n), the next bytes of the file.  False once reading has
 * stopped: the callback returned false, or memory ran out (r->nomem). */
bool importread_feed(struct importread *r, const char *data, size_t n,
		     importread_fn fn, void *ctx);

/* The file has ended: hands over what is left.  False as importread_feed. */
bool importread_end(struct importread *r, importread_fn fn, void *ctx);

/* False once the rest of the file cannot give another message (a
 * document already too long): the caller may stop reading it. */
bool importread_wants_more(const struct importread *r);

/* Frees what r holds; r can be importread_init'ed again. */
void importread_free(struct importread *r);

/* Length of an id from importread_trusted_id, without its NUL. */
#define IMPORTREAD_ID_LEN 36

/* The stable id of an SES event imported without its SNS envelope: the
 * first 128 bits of the SHA-256 of its bytes, written as a UUID
 * (version 8, RFC 9562's custom layout: xxxxxxxx-xxxx-8xxx-[89ab]xxx-
 * xxxxxxxxxxxx), so the same bytes always get the same id (a second
 * import is a duplicate) and different bytes practically never do. */
void importread_trusted_id(const char *msg, size_t len,
			   char out[IMPORTREAD_ID_LEN + 1]);

#endif
