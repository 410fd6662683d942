/* libFuzzer harness: the SNS string to sign (sns_string_to_sign), on any
 * message, not only on envelopes the strict reader accepts.  Input: one
 * byte of type, then the field values in enum sns_field order separated by
 * 0x1e; a value that is exactly 0x1f is absent.  Values may hold any byte,
 * NUL included.  The result is compared with the rule written out again
 * independently: "Key\nValue\n" for each signed field that is present, in
 * the order SNS signs them. */
#include <stdlib.h>
#include <string.h>

#include "sns.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static const char *const notification[] = {
	"Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type",
};
static const char *const confirmation[] = {
	"Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
};

static const struct sns_str *field(const struct sns_message *m, const char *key)
{
	for (int i = 0; i < SNS_F__COUNT; i++)
		if (strcmp(sns_field_name((enum sns_field)i), key) == 0)
			return &m->f[i];
	abort(); /* a signed field the reader does not know */
}

static void check(const struct sns_message *m, const char *got, size_t got_len)
{
	const char *const *keys = m->type == SNS_NOTIFICATION ? notification : confirmation;
	size_t n = m->type == SNS_NOTIFICATION ? sizeof(notification) / sizeof(*notification)
					       : sizeof(confirmation) / sizeof(*confirmation);
	size_t at = 0;
	for (size_t i = 0; i < n; i++) {
		const struct sns_str *v = field(m, keys[i]);
		if (!v->p)
			continue;
		size_t kl = strlen(keys[i]);
		if (at + kl + v->len + 2 > got_len || memcmp(got + at, keys[i], kl) != 0 ||
		    got[at + kl] != '\n' || memcmp(got + at + kl + 1, v->p, v->len) != 0 ||
		    got[at + kl + 1 + v->len] != '\n')
			abort();
		at += kl + v->len + 2;
	}
	if (at != got_len || got[got_len] != '\0')
		abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	if (size == 0)
		return 0;
	struct sns_message m = {.type = (enum sns_type)(data[0] % 3)};
	const unsigned char *p = data + 1, *end = data + size;
	for (int i = 0; i < SNS_F__COUNT && p <= end; i++) {
		const unsigned char *sep = memchr(p, 0x1e, (size_t)(end - p));
		size_t len = sep ? (size_t)(sep - p) : (size_t)(end - p);
		if (!(len == 1 && *p == 0x1f)) {
			m.f[i].p = malloc(len + 1);
			if (!m.f[i].p)
				goto out;
			memcpy(m.f[i].p, p, len);
			m.f[i].p[len] = '\0';
			m.f[i].len = len;
		}
		p += len + 1;
	}
	size_t len;
	char *s = sns_string_to_sign(&m, &len);
	if (s)
		check(&m, s, len);
	free(s);
out:
	/* Built here field by field, so freed here (not sns_message_free). */
	for (int i = 0; i < SNS_F__COUNT; i++)
		free(m.f[i].p);
	return 0;
}
