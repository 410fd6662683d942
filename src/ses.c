/* ses.c - SES notifications and events -> one EVENT per affected recipient.
 *
 * The message is parsed once with json-c; every SES type is described by one
 * row of ses_types[] (where its recipients, its time and its detail fields
 * live), so the code below is the same for all ten types.  The EVENT JSON is
 * built as json-c objects and serialised with fixed flags, and json-c keeps
 * object keys in insertion order, so the same input always gives the same
 * bytes.
 *
 * Values taken from the source are shared, not copied: json_object_get() on
 * a borrowed reference from the parsed tree, released when the EVENT object
 * is put.  Only scalars (string, number, boolean) are taken for detail
 * fields, because those are SES's types for every field we keep; this also
 * stops a hostile message from multiplying a large nested value by the
 * number of recipients.
 */
#include "ses.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "jsonscan.h"
#include "mt_time.h"

#define SES_JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* Where a detail field is read from. */
enum ses_field_from {
	FROM_TYPE_OBJECT, /* the type's object, e.g. "bounce" */
	FROM_RECIPIENT,   /* this recipient's entry, e.g. bouncedRecipients[i] */
};

struct ses_field {
	const char *name;
	enum ses_field_from from;
	bool allow_object; /* also take a JSON object (subscription only) */
};

/* Where the affected recipients are listed. */
enum ses_rcpt_from {
	RCPT_ENTRIES,     /* type object [array] of {"emailAddress": ...} */
	RCPT_STRINGS,     /* type object [array] of address strings */
	RCPT_DESTINATION, /* mail.destination[] */
};

/* Where the event's time is read from. */
enum ses_time_from {
	TIME_OWN,             /* type object "timestamp", required */
	TIME_OWN_OR_MAIL,     /* type object "timestamp", else mail.timestamp */
	TIME_MAIL,            /* the type has no time of its own */
};

struct ses_type {
	const char *name;   /* notificationType / eventType, EVENT "type" */
	const char *object; /* key of the type's own object */
	enum ses_rcpt_from rcpt_from;
	const char *rcpt_array; /* key in the type object, for RCPT_ENTRIES/STRINGS */
	enum ses_time_from time_from;
	const struct ses_field *fields;
	size_t n_fields;
};

static const struct ses_field bounce_fields[] = {
	{"bounceType", FROM_TYPE_OBJECT, false},
	{"bounceSubType", FROM_TYPE_OBJECT, false},
	{"action", FROM_RECIPIENT, false},
	{"status", FROM_RECIPIENT, false},
	{"diagnosticCode", FROM_RECIPIENT, false},
	{"reportingMTA", FROM_TYPE_OBJECT, false},
};
static const struct ses_field complaint_fields[] = {
	{"complaintFeedbackType", FROM_TYPE_OBJECT, false},
	{"userAgent", FROM_TYPE_OBJECT, false},
	{"complaintSubType", FROM_TYPE_OBJECT, false},
};
static const struct ses_field delivery_fields[] = {
	{"smtpResponse", FROM_TYPE_OBJECT, false},
	{"processingTimeMillis", FROM_TYPE_OBJECT, false},
	{"reportingMTA", FROM_TYPE_OBJECT, false},
	{"remoteMtaIp", FROM_TYPE_OBJECT, false},
};
static const struct ses_field delay_fields[] = {
	{"delayType", FROM_TYPE_OBJECT, false},
	{"expirationTime", FROM_TYPE_OBJECT, false},
	{"status", FROM_RECIPIENT, false},
	{"diagnosticCode", FROM_RECIPIENT, false},
};
static const struct ses_field open_fields[] = {
	{"ipAddress", FROM_TYPE_OBJECT, false},
	{"userAgent", FROM_TYPE_OBJECT, false},
};
static const struct ses_field click_fields[] = {
	{"ipAddress", FROM_TYPE_OBJECT, false},
	{"userAgent", FROM_TYPE_OBJECT, false},
	{"link", FROM_TYPE_OBJECT, false},
};
static const struct ses_field reject_fields[] = {
	{"reason", FROM_TYPE_OBJECT, false},
};
static const struct ses_field failure_fields[] = {
	{"templateName", FROM_TYPE_OBJECT, false},
	{"errorMessage", FROM_TYPE_OBJECT, false},
};
/* Subscription: which list, how the change was made (e.g.
 * "UnsubscribeHeader") and the preferences the recipient now has - that is
 * what support is asked about.  oldTopicPreferences is left out: it repeats
 * the previous event's state and doubles the size of every EVENT. */
static const struct ses_field subscription_fields[] = {
	{"contactList", FROM_TYPE_OBJECT, false},
	{"source", FROM_TYPE_OBJECT, false},
	{"newTopicPreferences", FROM_TYPE_OBJECT, true},
};

#define FIELDS(a) a, sizeof(a) / sizeof((a)[0])

/* Bounce, complaint, delivery, delay, open and click always carry their own
 * timestamp in SES; one without it is not indexed under a guessed time.
 * Subscription's is used when present (as the issue asks), and send,
 * reject and rendering failure have none, so the mail's time is theirs. */
static const struct ses_type ses_types[] = {
	{"Bounce", "bounce", RCPT_ENTRIES, "bouncedRecipients", TIME_OWN,
	 FIELDS(bounce_fields)},
	{"Complaint", "complaint", RCPT_ENTRIES, "complainedRecipients",
	 TIME_OWN, FIELDS(complaint_fields)},
	{"Delivery", "delivery", RCPT_STRINGS, "recipients", TIME_OWN,
	 FIELDS(delivery_fields)},
	{"Send", "send", RCPT_DESTINATION, NULL, TIME_MAIL, NULL, 0},
	{"Reject", "reject", RCPT_DESTINATION, NULL, TIME_MAIL,
	 FIELDS(reject_fields)},
	{"Open", "open", RCPT_DESTINATION, NULL, TIME_OWN,
	 FIELDS(open_fields)},
	{"Click", "click", RCPT_DESTINATION, NULL, TIME_OWN,
	 FIELDS(click_fields)},
	{"Rendering Failure", "failure", RCPT_DESTINATION, NULL, TIME_MAIL,
	 FIELDS(failure_fields)},
	{"DeliveryDelay", "deliveryDelay", RCPT_ENTRIES, "delayedRecipients",
	 TIME_OWN, FIELDS(delay_fields)},
	{"Subscription", "subscription", RCPT_DESTINATION, NULL,
	 TIME_OWN_OR_MAIL, FIELDS(subscription_fields)},
};

/* Borrowed member of obj of the given type, or NULL. */
static struct json_object *member(struct json_object *obj, const char *key,
				  enum json_type type)
{
	struct json_object *v = NULL;

	if (!json_object_is_type(obj, json_type_object) ||
	    !json_object_object_get_ex(obj, key, &v) ||
	    !json_object_is_type(v, type))
		return NULL;
	return v;
}

static bool is_scalar(struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_boolean:
	case json_type_double:
	case json_type_int:
	case json_type_string:
		return true;
	case json_type_null:
	case json_type_object:
	case json_type_array:
		break;
	}
	return false;
}

/* Adds val (owned, may be NULL on an earlier failure) under key.  On
 * failure val is released, so callers never leak on the error path. */
static bool add_owned(struct json_object *obj, const char *key,
		      struct json_object *val)
{
	if (!val)
		return false;
	if (json_object_object_add(obj, key, val) != 0) {
		json_object_put(val);
		return false;
	}
	return true;
}

/* Parses message as one strict, valid-UTF-8 JSON value of bounded depth.
 * Returns the root (caller puts it) or NULL when the text is not such a
 * value; *nomem is set when NULL is due to allocation failure. */
static struct json_object *parse_json(const char *message, size_t len,
				      bool *nomem)
{
	struct json_tokener *tok = NULL;
	struct json_object *root = NULL;

	*nomem = false;
	if (!message || len == 0 || len > INT_MAX)
		return NULL;
	tok = json_tokener_new_ex(SES_JSON_DEPTH_MAX);
	if (!tok) {
		*nomem = true;
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT |
					    JSON_TOKENER_VALIDATE_UTF8);
	root = json_tokener_parse_ex(tok, message, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len) {
		json_object_put(root);
		root = NULL;
	}
	json_tokener_free(tok);
	return root;
}

static bool string_is(struct json_object *s, const char *want)
{
	size_t n = strlen(want);

	return (size_t)json_object_get_string_len(s) == n &&
	       memcmp(json_object_get_string(s), want, n) == 0;
}

/* The row (static, never freed) for the message's notificationType and
 * eventType (names[i]: the string, NULL when absent or not a string), or
 * NULL when neither names a known type, or both are present and disagree. */
static const struct ses_type *type_named(const char *const names[2],
					 const size_t lens[2])
{
	const struct ses_type *found = NULL;

	for (size_t i = 0; i < 2; i++) {
		const struct ses_type *t = NULL;

		if (!names[i])
			continue;
		for (size_t k = 0; k < sizeof(ses_types) / sizeof(ses_types[0]); k++) {
			if (strlen(ses_types[k].name) == lens[i] &&
			    memcmp(ses_types[k].name, names[i], lens[i]) == 0) {
				t = &ses_types[k];
				break;
			}
		}
		if (!t || (found && found != t))
			return NULL;
		found = t;
	}
	return found;
}

static const struct ses_type *find_type(struct json_object *root)
{
	const char *names[2] = {NULL, NULL};
	size_t lens[2] = {0, 0};
	struct json_object *s[2] = {
		member(root, "notificationType", json_type_string),
		member(root, "eventType", json_type_string),
	};

	for (size_t i = 0; i < 2; i++) {
		if (s[i]) {
			names[i] = json_object_get_string(s[i]);
			lens[i] = (size_t)json_object_get_string_len(s[i]);
		}
	}
	return type_named(names, lens);
}

static bool parse_time_value(struct json_object *s, int64_t *ms)
{
	return s && mt_time_parse(json_object_get_string(s),
				  (size_t)json_object_get_string_len(s), ms);
}

/* The event's time as ms since the epoch (see ses_types[] for which).  An
 * own timestamp that is present but unreadable never falls back to the
 * mail's: a wrong time would mis-order the recipient's timeline. */
static bool event_time(const struct ses_type *type, struct json_object *typeobj,
		       struct json_object *mail, int64_t *ms)
{
	struct json_object *own = NULL;

	if (type->time_from != TIME_MAIL) {
		if (json_object_object_get_ex(typeobj, "timestamp", &own) &&
		    own != NULL)
			return parse_time_value(
				member(typeobj, "timestamp", json_type_string),
				ms);
		if (type->time_from == TIME_OWN)
			return false;
	}
	return parse_time_value(member(mail, "timestamp", json_type_string), ms);
}

/* The bytes put_json_string() writes for byte c. */
static size_t json_char_width(unsigned char c)
{
	if (c == '"' || c == '\\' || c == '\b' || c == '\n' || c == '\r' ||
	    c == '\t' || c == '\f')
		return 2;
	return c < 0x20 ? 6 : 1;
}

/* How many of the len bytes at s to keep so that their JSON text (as
 * put_json_string() escapes it, quotes not counted) is at most max bytes:
 * all of them, or the longest prefix that fits, ending at a UTF-8
 * character boundary.  Both readers cut with this, on decoded bytes. */
static size_t json_cut(const char *s, size_t len, size_t max)
{
	size_t used = 0, n = 0;

	if (len <= max / 6) /* even all escaped as \u00xx it fits */
		return len;
	for (; n < len; n++) {
		size_t w = json_char_width((unsigned char)s[n]);
		if (used + w > max)
			break;
		used += w;
	}
	if (n == len)
		return len;
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return n;
}

/* A string of the parsed message as an EVENT keeps it: shared when it
 * fits in max (see json_cut), else a new, cut copy.  Returns a new
 * reference (caller puts it) or NULL on allocation failure. */
static struct json_object *string_cut(struct json_object *s, size_t max)
{
	const char *p = json_object_get_string(s);
	size_t len = (size_t)json_object_get_string_len(s);
	size_t keep = json_cut(p, len, max);

	return keep == len ? json_object_get(s)
			   : json_object_new_string_len(p, (int)keep);
}

/* mail.destination as an EVENT keeps it: the first SES_DESTINATION_MAX
 * entries that are strings, each cut.  Returns a new array (caller puts
 * it) or NULL on allocation failure. */
static struct json_object *destination_build(struct json_object *dest)
{
	struct json_object *out = json_object_new_array();
	size_t n = json_object_array_length(dest);

	for (size_t i = 0; out && i < n && i < SES_DESTINATION_MAX; i++) {
		struct json_object *e = json_object_array_get_idx(dest, i);
		struct json_object *v = NULL;

		if (!json_object_is_type(e, json_type_string))
			continue;
		v = string_cut(e, SES_DESTINATION_ENTRY_MAX);
		if (!v || json_object_array_add(out, v) != 0) {
			json_object_put(v);
			json_object_put(out);
			out = NULL;
		}
	}
	return out;
}

/* The commonHeaders fields kept (in the order the message has them). */
static bool header_field(const char *key)
{
	static const char *const fields[] = {
		"from", "to", "cc", "bcc", "replyTo", "sender", "returnPath",
		"date", "messageId", "subject",
	};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (strcmp(fields[i], key) == 0)
			return true;
	return false;
}

/* Adds string s cut to fit both SES_HEADER_VALUE_MAX and *budget (which it
 * uses up) to the array arr, or under key to the object obj. */
static bool header_add(struct json_object *obj, const char *key,
		       struct json_object *arr, struct json_object *s,
		       size_t *budget)
{
	size_t before = *budget;
	size_t max = before < SES_HEADER_VALUE_MAX ? before : SES_HEADER_VALUE_MAX;
	const char *p = json_object_get_string(s);
	size_t len = (size_t)json_object_get_string_len(s);
	size_t keep = json_cut(p, len, max);
	struct json_object *v = json_object_new_string_len(p, (int)keep);

	for (size_t i = 0; i < keep; i++) /* what json_cut() counted */
		*budget -= json_char_width((unsigned char)p[i]);
	if (keep < len && max == before) /* the budget cut it: it is spent */
		*budget = 0;
	if (!v)
		return false;
	if (arr ? json_object_array_add(arr, v) != 0
		: json_object_object_add(obj, key, v) != 0) {
		json_object_put(v);
		return false;
	}
	return true;
}

/* mail.commonHeaders as an EVENT keeps it (see SES_HEADERS_MAX).  The
 * fast reader reads commonHeaders with json-c too and builds it here, so
 * both readers agree.  Returns a new object (caller puts it) or NULL on
 * allocation failure. */
static struct json_object *headers_build(struct json_object *h)
{
	struct json_object *out = json_object_new_object();
	size_t budget = SES_HEADERS_MAX;

	for (struct json_object_iterator it = json_object_iter_begin(h),
					 end = json_object_iter_end(h);
	     out && budget > 0 && !json_object_iter_equal(&it, &end);
	     json_object_iter_next(&it)) {
		const char *key = json_object_iter_peek_name(&it);
		struct json_object *v = json_object_iter_peek_value(&it);
		struct json_object *arr = NULL;
		bool ok = true;

		if (!header_field(key))
			continue;
		if (json_object_is_type(v, json_type_string)) {
			ok = header_add(out, key, NULL, v, &budget);
		} else if (json_object_is_type(v, json_type_array)) {
			size_t n = json_object_array_length(v);
			arr = json_object_new_array();
			ok = arr && add_owned(out, key, arr);
			for (size_t k = 0, taken = 0; ok && budget > 0 && k < n &&
						      taken < SES_HEADER_LIST_MAX; k++) {
				struct json_object *e = json_object_array_get_idx(v, k);
				if (!json_object_is_type(e, json_type_string))
					continue;
				ok = header_add(NULL, NULL, arr, e, &budget);
				taken++;
			}
		}
		if (!ok) {
			json_object_put(out);
			out = NULL;
		}
	}
	return out;
}

/* The "mail" object of EVENT.  Returns a new object (caller puts it) or
 * NULL on allocation failure.  mail.headers is never copied. */
static struct json_object *mail_build(struct json_object *mail,
				      bool keep_headers)
{
	static const char *const keys[] = {"messageId", "source", "timestamp"};
	struct json_object *out = json_object_new_object();
	struct json_object *dest = member(mail, "destination", json_type_array);

	if (!out)
		return NULL;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		struct json_object *v = member(mail, keys[i], json_type_string);

		if (v && !add_owned(out, keys[i], string_cut(v, SES_MAIL_VALUE_MAX)))
			goto fail;
	}
	if (dest) {
		size_t n = json_object_array_length(dest);
		if (!add_owned(out, "destination", destination_build(dest)))
			goto fail;
		if (n > SES_DESTINATION_MAX &&
		    !add_owned(out, "destinationCount", json_object_new_int64((int64_t)n)))
			goto fail;
	}
	if (keep_headers) {
		struct json_object *h =
			member(mail, "commonHeaders", json_type_object);

		if (h && !add_owned(out, "commonHeaders", headers_build(h)))
			goto fail;
	}
	return out;
fail:
	json_object_put(out);
	return NULL;
}

/* The length of v's JSON text (a value of the parsed message). */
static size_t json_text_len(struct json_object *v)
{
	size_t n = 0;

	json_object_to_json_string_length(v, SES_JSON_FLAGS, &n);
	return n;
}

/* The "detail" object of EVENT for one recipient (rcpt: this recipient's
 * entry, NULL for types that list bare addresses).  Strings are cut to
 * SES_DETAIL_VALUE_MAX; a number whose text is longer, or an object whose
 * JSON is longer than SES_DETAIL_OBJECT_MAX, is left out.  Returns a new
 * object (caller puts it) or NULL on allocation failure. */
static struct json_object *detail_build(const struct ses_type *type,
					struct json_object *typeobj,
					struct json_object *rcpt)
{
	struct json_object *out = json_object_new_object();

	if (!out)
		return NULL;
	for (size_t i = 0; i < type->n_fields; i++) {
		const struct ses_field *f = &type->fields[i];
		struct json_object *src =
			f->from == FROM_RECIPIENT ? rcpt : typeobj;
		struct json_object *v = NULL, *keep = NULL;

		if (!json_object_is_type(src, json_type_object) ||
		    !json_object_object_get_ex(src, f->name, &v))
			continue;
		if (json_object_is_type(v, json_type_string)) {
			keep = string_cut(v, SES_DETAIL_VALUE_MAX);
		} else if (is_scalar(v)) {
			if (json_object_is_type(v, json_type_double) &&
			    json_text_len(v) > SES_DETAIL_VALUE_MAX)
				continue;
			keep = json_object_get(v);
		} else if (f->allow_object && json_object_is_type(v, json_type_object)) {
			if (json_text_len(v) > SES_DETAIL_OBJECT_MAX)
				continue;
			keep = json_object_get(v);
		} else {
			continue;
		}
		if (!add_owned(out, f->name, keep)) {
			json_object_put(out);
			return NULL;
		}
	}
	return out;
}

/* Appends s[0..len) as a JSON string, quoted and escaped byte for byte as
 * json-c escapes with SES_JSON_FLAGS (the short escapes, \u00xx in lower
 * case for other control bytes, '/' and bytes >= 0x7f as they are), or
 * "null" for NULL.  Returns the new end; the room needed is at most
 * json_len(len). */
static char *put_json_string(char *o, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	if (!s) {
		static const char null_lit[4] = {'n', 'u', 'l', 'l'};
		memcpy(o, null_lit, sizeof(null_lit));
		return o + sizeof(null_lit);
	}
	*o++ = '"';
	for (size_t i = 0; i < len; i++) {
		/* Runs that need no escape, copied whole. */
		size_t run = jsonscan_verbatim(s + i, len - i);
		memcpy(o, s + i, run);
		o += run;
		i += run;
		if (i == len)
			break;
		unsigned char c = (unsigned char)s[i];
		const char *esc = NULL;

		switch (c) {
		case '\b': esc = "\\b"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		case '\t': esc = "\\t"; break;
		case '\f': esc = "\\f"; break;
		case '"': esc = "\\\""; break;
		case '\\': esc = "\\\\"; break;
		default: /* a control byte: jsonscan_verbatim() stops at no other */
			*o++ = '\\';
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 0xf];
			continue;
		}
		*o++ = esc[0];
		*o++ = esc[1];
	}
	*o++ = '"';
	return o;
}

/* Most bytes put_json_string() writes for len bytes (or NULL). */
static size_t json_len(size_t len)
{
	return len * 6 + 4;
}

/* What every event of one message shares, serialised once. */
struct shared_parts {
	const char *mail; /* the "mail" object's JSON (owned by its object) */
	size_t mail_len;
};

/* Fills ev->json with the serialised EVENT, written directly from the
 * shared "mail" and this recipient's "detail" JSON (detail_text, borrowed).
 * The bytes are those json-c gave for the same object (keys in the same
 * order, same flags), so EVENTs stored by earlier versions compare equal.
 * Returns MT_E_OK or MT_E_NOMEM. */
static enum mt_err event_serialise(struct ses_event *ev,
				   const struct ses_context *ctx,
				   const struct shared_parts *sh,
				   const char *detail_text, size_t detail_len)
{
	char when[MT_TIME_BUF];
	size_t id_len = ctx->sns_message_id ? strlen(ctx->sns_message_id) : 0;
	size_t topic_len = ctx->topic_arn ? strlen(ctx->topic_arn) : 0;
	size_t rcpt_len = strlen(ev->recipient);

	mt_time_format(ev->time_ms, when);
	size_t room = 96 + json_len(id_len) + json_len(strlen(ev->type)) +
		      json_len(strlen(when)) + json_len(rcpt_len) +
		      json_len(topic_len) + sh->mail_len + detail_len;
	char *o = malloc(room);
	if (!o)
		return MT_E_NOMEM;
	ev->json = o;
#define PUT_LIT(lit) (memcpy(o, lit, sizeof(lit) - 1), o += sizeof(lit) - 1)
	PUT_LIT("{\"id\":");
	o = put_json_string(o, ctx->sns_message_id, id_len);
	PUT_LIT(",\"type\":");
	o = put_json_string(o, ev->type, strlen(ev->type));
	PUT_LIT(",\"time\":");
	o = put_json_string(o, when, strlen(when));
	PUT_LIT(",\"recipient\":");
	o = put_json_string(o, ev->recipient, rcpt_len);
	PUT_LIT(",\"topicArn\":");
	o = put_json_string(o, ctx->topic_arn, topic_len);
	PUT_LIT(",\"mail\":");
	memcpy(o, sh->mail, sh->mail_len);
	o += sh->mail_len;
	PUT_LIT(",\"detail\":");
	memcpy(o, detail_text, detail_len);
	o += detail_len;
	PUT_LIT("}");
#undef PUT_LIT
	*o = '\0';
	ev->json_len = (size_t)(o - ev->json);
	return MT_E_OK;
}

/* The address of recipient entry i: a string, or an object's emailAddress.
 * Borrowed, or NULL when the entry has not the expected shape. */
static struct json_object *recipient_address(const struct ses_type *type,
					     struct json_object *entry)
{
	if (type->rcpt_from == RCPT_ENTRIES)
		return member(entry, "emailAddress", json_type_string);
	return json_object_is_type(entry, json_type_string) ? entry : NULL;
}

static bool already_seen(const struct ses_events *out, const char *addr)
{
	/* At most SES_RECIPIENTS_MAX entries, so quadratic is fine, and the
	 * events keep the order in which SES listed the recipients. */
	for (size_t i = 0; i < out->n; i++)
		if (strcmp(out->v[i].recipient, addr) == 0)
			return true;
	return false;
}

/* A permanent bounce (bounceType "Permanent") or a complaint suppresses
 * the recipient. */
static const char *suppression(const char *type, bool permanent)
{
	if (strcmp(type, "Complaint") == 0)
		return "Complaint";
	if (strcmp(type, "Bounce") == 0 && permanent)
		return "Bounce/Permanent";
	return NULL;
}

/* Fills in the event of the recipient just normalised into ev->recipient;
 * false when an earlier entry had the same recipient (then ev is reused).
 * permanent: the type object's bounceType is "Permanent". */
static bool event_start(const struct ses_events *out, struct ses_event *ev,
			const struct ses_type *type, int64_t when, bool permanent,
			const char *count_type)
{
	if (already_seen(out, ev->recipient))
		return false;
	ev->time_ms = when;
	ev->type = type->name;
	ev->suppress = suppression(type->name, permanent);
	ev->count_type = count_type;
	return true;
}

/* name[0..len) (NULL: none) as the counters name it into out: lower-cased
 * when asked, STATS_OTHER when it is not a valid name of dim. */
static void counter_name(char out[STATS_NAME_MAX + 1], enum stats_dim dim,
			 const char *name, size_t len, bool lower)
{
	if (!name || len == 0 || len > STATS_NAME_MAX) {
		memcpy(out, STATS_OTHER, sizeof(STATS_OTHER));
		return;
	}
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		out[i] = lower && c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	out[len] = '\0';
	if (!stats_name_valid(dim, out, len))
		memcpy(out, STATS_OTHER, sizeof(STATS_OTHER));
}

/* Fills out->identity and out->config_set (ses.h) from the decoded
 * strings mail.sourceArn, mail.source and the configuration set (each
 * NULL when absent or not a string; they may hold NUL bytes).  Both
 * readers call this, so the rule is written once. */
static void counter_names(struct ses_events *out, const char *arn, size_t arn_len,
			  const char *source, size_t source_len, const char *cs,
			  size_t cs_len)
{
	static const char mark[] = ":identity/";
	const size_t mark_len = sizeof(mark) - 1;
	const char *id = NULL;
	size_t id_len = 0;

	for (size_t i = 0; arn && i + mark_len < arn_len; i++) {
		if (memcmp(arn + i, mark, mark_len) == 0) {
			id = arn + i + mark_len;
			id_len = arn_len - i - mark_len;
			break;
		}
	}
	/* Else the domain of mail.source, which SES writes as a header
	 * would ("Name <a@example.com>", MIME-encoded names too): of its
	 * address as the recipients' are normalised, after the last '@'. */
	char addr[SES_ADDRESS_MAX + 1];
	if (!id && source && ses_address_normalize(source, source_len, addr)) {
		const char *at = strrchr(addr, '@');
		id = at + 1;
		id_len = strlen(id);
	}
	counter_name(out->identity, STATS_DIM_IDENTITY, id, id_len, true);
	if (cs)
		counter_name(out->config_set, STATS_DIM_CONFIGURATION_SET, cs, cs_len,
			     false);
	else
		out->config_set[0] = '\0';
}

/* True (and out->time_implausible set) when the event time is later than
 * the context allows: the message is then kept raw, on no timeline. */
static bool implausible(const struct ses_context *ctx, int64_t when,
			struct ses_events *out)
{
	out->time_implausible = ctx->time_max_ms != 0 && when > ctx->time_max_ms;
	return out->time_implausible;
}

/* ------------------------------------------------------------------ */
/* The fast reader: the same events without a json-c tree.
 *
 * json-c builds every member of the message, mail.headers and
 * commonHeaders included, though a handful of values is all we take: that
 * cost 5% of the machine's CPU in the benchmark.  This reader goes over
 * the message once, validating as it skips, and keeps only where the
 * values we need are (pointers into the message: nothing is allocated
 * until the EVENTs are written).
 *
 * It must give exactly what the json-c reading gives, so it takes only
 * what it is sure json-c reads the same way and gives up ("defers") on
 * everything else, which then goes through json-c as before: strict JSON
 * only (json-c also takes raw control bytes, some invalid UTF-8, lone
 * surrogates, numbers out of range, leading zeros after '-'), no
 * duplicate or escaped names where we look names up (json-c keeps the
 * last duplicate), no integer json-c would print differently ("-0", more
 * than 18 digits), no nesting deeper than FAST_DEPTH_MAX, nothing but
 * whitespace around the message, and no value we would have to copy that
 * is not a plain string or number (newTopicPreferences objects,
 * destination entries that are not strings; --keep-headers' commonHeaders
 * is read by json-c on its own).  Real SES messages never
 * need json-c; the fuzzer compares both readings (tests/fuzz/fuzz_ses.c). */

/* Well below SES_JSON_DEPTH_MAX, so json-c's limit never decides here. */
#define FAST_DEPTH_MAX 32
/* Longest integer whose digits json-c prints back as written (it reads
 * integers as int64). */
#define FAST_INT_DIGITS_MAX 18

enum jkind { J_NONE, J_STRING, J_NUMBER, J_TRUE, J_FALSE, J_NULL, J_OBJECT, J_ARRAY };

/* A value in the message: its JSON text [p, p + len), for a string the
 * contents between the quotes. */
struct jval {
	enum jkind kind;
	const char *p;
	size_t len;
	bool escaped; /* a string holding a backslash */
};

struct scan {
	const char *p, *end;
	int depth;
};

/* The members of one object that a read keeps: vals[i] gets the value of
 * keys[i] (J_NONE when absent).  The value of keys[nest], when it is an
 * object, is read with *sub (so mail's members are found in the same
 * pass over the message). */
struct lookup {
	const char *const *keys;
	size_t n;
	struct jval *vals;
	size_t nest;
	const struct lookup *sub;
};

static bool scan_value(struct scan *s, const struct lookup *lk, struct jval *v);

static bool scan_lit(struct scan *s, const char *word, size_t n)
{
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return false;
	s->p += n;
	return true;
}

static int lookup_index(const struct lookup *lk, const char *key, size_t len)
{
	for (size_t i = 0; i < lk->n; i++)
		if (strlen(lk->keys[i]) == len && memcmp(lk->keys[i], key, len) == 0)
			return (int)i;
	return -1;
}

/* s->p at '{' or '['.  True when the container may be read on; *empty
 * when it is closed at once (and skipped). */
static bool scan_open(struct scan *s, char close, bool *empty)
{
	if (++s->depth > FAST_DEPTH_MAX)
		return false;
	s->p = jsonscan_ws(s->p + 1, s->end);
	*empty = s->p < s->end && *s->p == close;
	if (*empty) {
		s->p++;
		s->depth--;
	}
	return true;
}

/* After a member or an element: true with *more when a ',' follows, true
 * without at the closing byte (both skipped), false otherwise. */
static bool scan_next(struct scan *s, char close, bool *more)
{
	s->p = jsonscan_ws(s->p, s->end);
	*more = s->p < s->end && *s->p == ',';
	if (*more) {
		s->p = jsonscan_ws(s->p + 1, s->end);
		return true;
	}
	if (s->p < s->end && *s->p == close) {
		s->p++;
		s->depth--;
		return true;
	}
	return false;
}

/* s->p at '{'.  With lk, records the values of its keys. */
static bool scan_object(struct scan *s, const struct lookup *lk)
{
	bool empty, more = true;

	if (!scan_open(s, '}', &empty))
		return false;
	while (!empty && more) {
		bool escaped;
		struct jval skipped;
		if (s->p >= s->end || *s->p != '"')
			return false;
		const char *key = s->p + 1;
		const char *q = jsonscan_string(key, s->end, &escaped);
		if (!q || (escaped && lk))
			return false;
		int i = lk ? lookup_index(lk, key, (size_t)(q - key)) : -1;
		s->p = jsonscan_ws(q + 1, s->end);
		if (s->p >= s->end || *s->p != ':')
			return false;
		s->p = jsonscan_ws(s->p + 1, s->end);
		if (i >= 0 && lk->vals[i].kind != J_NONE)
			return false; /* a duplicate: json-c keeps the last */
		if (!scan_value(s, i >= 0 && (size_t)i == lk->nest ? lk->sub : NULL,
				i >= 0 ? &lk->vals[i] : &skipped) ||
		    !scan_next(s, '}', &more))
			return false;
	}
	return true;
}

/* s->p at '['. */
static bool scan_array(struct scan *s)
{
	bool empty, more = true;

	if (!scan_open(s, ']', &empty))
		return false;
	while (!empty && more) {
		struct jval skipped;
		if (!scan_value(s, NULL, &skipped) || !scan_next(s, ']', &more))
			return false;
	}
	return true;
}

/* The elements of an array already read (arr): start with array_begin(),
 * then each array_next() gives the next element, false after the last. */
static void array_begin(struct scan *s, const struct jval *arr)
{
	*s = (struct scan){arr->p + 1, arr->p + arr->len, 1};
}

static bool array_next(struct scan *s, struct jval *e)
{
	s->p = jsonscan_ws(s->p, s->end);
	if (s->p < s->end && *s->p == ',')
		s->p = jsonscan_ws(s->p + 1, s->end);
	return s->p < s->end && *s->p != ']' && scan_value(s, NULL, e);
}

/* Reads the value at s->p into *v (an object's members with lk). */
static bool scan_value(struct scan *s, const struct lookup *lk, struct jval *v)
{
	const char *start = s->p;
	bool ok;

	if (s->p >= s->end)
		return false;
	v->escaped = false;
	switch (*s->p) {
	case '{':
		v->kind = J_OBJECT;
		ok = scan_object(s, lk);
		break;
	case '[':
		v->kind = J_ARRAY;
		ok = scan_array(s);
		break;
	case '"': {
		const char *q = jsonscan_string(s->p + 1, s->end, &v->escaped);
		if (!q)
			return false;
		v->kind = J_STRING;
		v->p = s->p + 1;
		v->len = (size_t)(q - v->p);
		s->p = q + 1;
		return true;
	}
	case 't':
		v->kind = J_TRUE;
		ok = scan_lit(s, "true", 4);
		break;
	case 'f':
		v->kind = J_FALSE;
		ok = scan_lit(s, "false", 5);
		break;
	case 'n':
		v->kind = J_NULL;
		ok = scan_lit(s, "null", 4);
		break;
	default: {
		bool is_int;
		const char *q = jsonscan_number(s->p, s->end, &is_int);
		size_t digits = q ? (size_t)(q - s->p) - (*s->p == '-') : 0;
		if (!q || (is_int && (digits > FAST_INT_DIGITS_MAX ||
				      (*s->p == '-' && s->p[1] == '0'))))
			return false;
		v->kind = J_NUMBER;
		s->p = q;
		ok = true;
		break;
	}
	}
	v->p = start;
	v->len = (size_t)(s->p - start);
	return ok;
}

/* Reads the object whose JSON text is v (already read once as part of the
 * message, at depth 1) with lk. */
static bool scan_again(const struct jval *v, const struct lookup *lk)
{
	struct scan s = {v->p, v->p + v->len, 1};
	return scan_object(&s, lk);
}

/* A string value decoded into buf (room for FAST_SHORT_MAX bytes), for the
 * short strings that are compared or parsed: type names, bounceType,
 * timestamps.  A string whose JSON text is longer than that is returned
 * as not_short: it decodes to more than FAST_SHORT_MAX / 6 bytes (an
 * escape is at most 6 bytes for 1, or 12 for 4), longer than anything it
 * is compared with or any time mt_time_parse() takes. */
#define FAST_SHORT_MAX 256
static const char *short_string(const struct jval *v, char buf[FAST_SHORT_MAX],
				size_t *len, bool *not_short)
{
	*not_short = v->len > FAST_SHORT_MAX;
	if (v->kind != J_STRING || *not_short)
		return NULL;
	if (!v->escaped) {
		*len = v->len;
		return v->p;
	}
	*len = jsonscan_unescape(v->p, v->len, buf);
	return buf;
}

static bool jval_is(const struct jval *v, const char *want)
{
	char buf[FAST_SHORT_MAX];
	size_t len, n = strlen(want);
	bool not_short;
	const char *s = short_string(v, buf, &len, &not_short);
	return s && len == n && memcmp(s, want, n) == 0;
}

static bool jval_time(const struct jval *v, int64_t *ms)
{
	char buf[FAST_SHORT_MAX];
	size_t len;
	bool not_short;
	const char *s = short_string(v, buf, &len, &not_short);
	return s && mt_time_parse(s, len, ms);
}

/* find_type() of the fast reader. */
static const struct ses_type *fast_find_type(const struct jval v[2])
{
	char bufs[2][FAST_SHORT_MAX];
	const char *names[2] = {NULL, NULL};
	size_t lens[2] = {0, 0};

	for (size_t i = 0; i < 2; i++) {
		bool not_short;
		if (v[i].kind != J_STRING)
			continue;
		names[i] = short_string(&v[i], bufs[i], &lens[i], &not_short);
		if (not_short) { /* too long to be any type's name */
			names[i] = v[i].p;
			lens[i] = v[i].len;
		}
	}
	return type_named(names, lens);
}

/* The event's time, as event_time(). */
static bool fast_event_time(const struct ses_type *type, const struct jval *own,
			    const struct jval *mail_ts, int64_t *ms)
{
	if (type->time_from != TIME_MAIL) {
		if (own->kind != J_NONE && own->kind != J_NULL)
			return jval_time(own, ms);
		if (type->time_from == TIME_OWN)
			return false;
	}
	return jval_time(mail_ts, ms);
}

/* Room put_jval() needs for v cut to max: a string's JSON text is at most
 * max bytes and its quotes (json_cut), other scalars are written whole. */
static size_t jval_room(const struct jval *v, size_t max)
{
	size_t room = json_len(v->len);

	return v->kind == J_STRING && room > max + 2 ? max + 2 : room;
}

/* Writes v as json-c prints it, a string cut to max (json_cut): decoded
 * and escaped again; any other scalar as written (numbers: see
 * FAST_INT_DIGITS_MAX; json-c keeps the text of the others).  Returns the
 * new end, or NULL on allocation failure. */
static char *put_jval(char *o, const struct jval *v, size_t max)
{
	if (v->kind != J_STRING) {
		memcpy(o, v->p, v->len);
		return o + v->len;
	}
	/* Without a backslash a string has nothing to escape (strict JSON:
	 * no raw control bytes), so its JSON text is as long as it is. */
	if (!v->escaped)
		return put_json_string(o, v->p,
				       v->len <= max ? v->len : json_cut(v->p, v->len, max));
	char *tmp = malloc(v->len ? v->len : 1);
	if (!tmp)
		return NULL;
	size_t n = jsonscan_unescape(v->p, v->len, tmp);
	o = put_json_string(o, tmp, json_cut(tmp, n, max));
	free(tmp);
	return o;
}

/* Writes "key":value for each i with vals[i] set, between braces, as
 * json-c prints such an object, strings cut to max.  Returns the new end
 * or NULL (no memory). */
static char *put_members(char *o, const char *const *keys,
			 const struct jval *const *vals, size_t n, size_t max)
{
	bool first = true;

	*o++ = '{';
	for (size_t i = 0; i < n && o; i++) {
		if (!vals[i])
			continue;
		if (!first)
			*o++ = ',';
		first = false;
		o = put_json_string(o, keys[i], strlen(keys[i]));
		*o++ = ':';
		o = put_jval(o, vals[i], max);
	}
	if (o)
		*o++ = '}';
	return o;
}

/* Room put_members() needs. */
static size_t members_room(const char *const *keys,
			   const struct jval *const *vals, size_t n, size_t max)
{
	size_t room = 2;
	for (size_t i = 0; i < n; i++)
		if (vals[i])
			room += json_len(strlen(keys[i])) + 2 + jval_room(vals[i], max);
	return room;
}

enum fast_result { FAST_DONE, FAST_DEFER };

/* Root and mail keys the fast reader looks up. */
enum { R_NOTIFICATION_TYPE, R_EVENT_TYPE, R_MAIL, R_TYPE_OBJECTS };
enum { M_MESSAGE_ID, M_SOURCE, M_TIMESTAMP, M_DESTINATION, M_COMMON_HEADERS,
       M_SOURCE_ARN, M_TAGS, M__COUNT };
#define N_TYPES (sizeof(ses_types) / sizeof(ses_types[0]))
/* The type object's keys: timestamp, the recipient array, the fields. */
#define TYPE_KEYS_MAX 8

/* The "mail" object of EVENT as mail_build() makes it, into *text
 * (malloc'd, caller frees).  FAST_DEFER when it holds what only json-c
 * copies faithfully. */
/* Reopens the object that ends at o (its '}' becomes the comma) for the
 * member key (a JSON literal with its colon).  Returns the new end. */
static char *reopen_with(char *o, const char *key_lit, size_t n)
{
	o[-1] = ',';
	memcpy(o, key_lit, n);
	return o + n;
}

static enum fast_result fast_mail(const struct jval *m, bool keep_headers,
				  char **text, size_t *len, enum mt_err *err)
{
	static const char *const keys[] = {"messageId", "source", "timestamp"};
	static const char dest_lit[] = "\"destination\":[",
			  count_lit[] = ",\"destinationCount\":",
			  headers_lit[] = "\"commonHeaders\":";
	const struct jval *vals[3];
	const struct jval *dest = &m[M_DESTINATION], *ch = &m[M_COMMON_HEADERS];
	struct json_object *parsed = NULL, *headers = NULL;
	const char *headers_text = NULL;
	size_t headers_len = 0, n_dest = 0, count_len = 0;
	char count[24];
	struct scan s;
	struct jval e;

	*text = NULL;
	for (size_t i = 0; i < 3; i++)
		vals[i] = m[i].kind == J_STRING ? &m[i] : NULL;
	size_t room = members_room(keys, vals, 3, SES_MAIL_VALUE_MAX) +
		      sizeof(dest_lit) + sizeof(count_lit) + sizeof(count) + 2;
	if (dest->kind == J_ARRAY) {
		/* Strings only (as SES writes it); all counted, the first
		 * SES_DESTINATION_MAX kept. */
		array_begin(&s, dest);
		while (array_next(&s, &e)) {
			if (e.kind != J_STRING)
				return FAST_DEFER;
			if (n_dest++ < SES_DESTINATION_MAX)
				room += jval_room(&e, SES_DESTINATION_ENTRY_MAX) + 1;
		}
		if (n_dest > SES_DESTINATION_MAX)
			count_len = (size_t)snprintf(count, sizeof(count), "%zu", n_dest);
	}
	if (keep_headers && ch->kind == J_OBJECT) {
		/* Built by json-c as the other reader builds it: a few hundred
		 * bytes instead of the whole message. */
		bool nomem;
		parsed = parse_json(ch->p, ch->len, &nomem);
		if (!parsed && !nomem)
			return FAST_DEFER;
		headers = parsed ? headers_build(parsed) : NULL;
		if (headers)
			headers_text = json_object_to_json_string_length(
				headers, SES_JSON_FLAGS, &headers_len);
		if (!headers_text) {
			*err = MT_E_NOMEM;
			goto out;
		}
		room += sizeof(headers_lit) + headers_len;
	}
	char *o = *text = malloc(room);
	if (!o || !(o = put_members(o, keys, vals, 3, SES_MAIL_VALUE_MAX))) {
		*err = MT_E_NOMEM;
		goto out;
	}
	if (dest->kind == J_ARRAY) {
		o = reopen_with(o, dest_lit, sizeof(dest_lit) - 1);
		array_begin(&s, dest);
		for (size_t i = 0; i < SES_DESTINATION_MAX && array_next(&s, &e); i++) {
			if (i > 0)
				*o++ = ',';
			if (!(o = put_jval(o, &e, SES_DESTINATION_ENTRY_MAX))) {
				*err = MT_E_NOMEM;
				goto out;
			}
		}
		*o++ = ']';
		if (count_len) {
			memcpy(o, count_lit, sizeof(count_lit) - 1);
			o += sizeof(count_lit) - 1;
			memcpy(o, count, count_len);
			o += count_len;
		}
		*o++ = '}';
	}
	if (headers_text) {
		o = reopen_with(o, headers_lit, sizeof(headers_lit) - 1);
		memcpy(o, headers_text, headers_len);
		o += headers_len;
		*o++ = '}';
	}
	*len = (size_t)(o - *text);
out:
	json_object_put(headers);
	json_object_put(parsed);
	return FAST_DONE;
}

/* Index of the field named name in type->fields, or -1. */
static int field_index(const struct ses_type *type, const char *name)
{
	for (size_t i = 0; i < type->n_fields; i++)
		if (strcmp(type->fields[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* Room for a usual detail on the stack (SES's are under 300 bytes), so
 * that writing one costs no malloc/free. */
#define FAST_DETAIL_STACK 1024

/* The detail of one event as detail_build() makes it, into *text: in
 * scratch (FAST_DETAIL_STACK bytes) when it fits, else in *owned (malloc'd,
 * caller frees; NULL otherwise).  tvals/evals: the type object's and this
 * entry's values of type->fields, in that order (evals NULL when the entry
 * is no object). */
static enum fast_result fast_detail(const struct ses_type *type,
				    const struct jval *tvals,
				    const struct jval *evals, char *scratch,
				    char **owned, const char **text, size_t *len,
				    enum mt_err *err)
{
	const char *keys[TYPE_KEYS_MAX];
	const struct jval *vals[TYPE_KEYS_MAX];

	*owned = NULL;
	for (size_t i = 0; i < type->n_fields; i++) {
		const struct ses_field *f = &type->fields[i];
		const struct jval *v =
			f->from == FROM_RECIPIENT ? (evals ? &evals[i] : NULL) : &tvals[i];
		keys[i] = f->name;
		vals[i] = NULL;
		if (!v || v->kind == J_NONE || v->kind == J_NULL || v->kind == J_ARRAY ||
		    (v->kind == J_NUMBER && v->len > SES_DETAIL_VALUE_MAX))
			continue;
		if (v->kind == J_OBJECT) {
			if (f->allow_object)
				return FAST_DEFER;
			continue;
		}
		vals[i] = v;
	}
	size_t room = members_room(keys, vals, type->n_fields, SES_DETAIL_VALUE_MAX);
	char *start = room <= FAST_DETAIL_STACK ? scratch : (*owned = malloc(room));
	char *o = start;
	if (!o || !(o = put_members(o, keys, vals, type->n_fields, SES_DETAIL_VALUE_MAX))) {
		*err = MT_E_NOMEM;
		return FAST_DONE;
	}
	*text = start;
	*len = (size_t)(o - start);
	return FAST_DONE;
}

/* The address of a recipient entry, normalised into out, as
 * ses_address_normalize(recipient_address()).  False when there is none. */
static bool fast_address(const struct jval *a, char out[SES_ADDRESS_MAX + 1],
			 enum mt_err *err)
{
	if (!a || a->kind != J_STRING)
		return false;
	if (!a->escaped)
		return ses_address_normalize(a->p, a->len, out);
	char *tmp = malloc(a->len ? a->len : 1);
	if (!tmp) {
		*err = MT_E_NOMEM;
		return false;
	}
	bool ok = ses_address_normalize(tmp, jsonscan_unescape(a->p, a->len, tmp), out);
	free(tmp);
	return ok;
}

/* v's decoded text (v a string): v->p itself when it holds no escape,
 * else a malloc'd copy in *tmp (caller frees).  NULL when v is no string,
 * or (*err set) on allocation failure. */
static const char *jval_text(const struct jval *v, char **tmp, size_t *len,
			     enum mt_err *err)
{
	*tmp = NULL;
	if (v->kind != J_STRING)
		return NULL;
	if (!v->escaped) {
		*len = v->len;
		return v->p;
	}
	*tmp = malloc(v->len ? v->len : 1);
	if (!*tmp) {
		*err = MT_E_NOMEM;
		return NULL;
	}
	*len = jsonscan_unescape(v->p, v->len, *tmp);
	return *tmp;
}

/* counter_names() of the fast reader: mv are mail's values.  FAST_DEFER
 * when mail.tags is not read as json-c reads it (a duplicate or escaped
 * key). */
static enum fast_result fast_counter_names(const struct jval *mv,
					   struct ses_events *out, enum mt_err *err)
{
	static const char *const tag_keys[] = {"ses:configuration-set"};
	struct jval cs_list = {0}, first = {0};
	const struct lookup tags_lk = {tag_keys, 1, &cs_list, SIZE_MAX, NULL};
	char *arn_tmp = NULL, *source_tmp = NULL, *cs_tmp = NULL;
	size_t arn_len = 0, source_len = 0, cs_len = 0;
	const char *cs = NULL;

	if (mv[M_TAGS].kind == J_OBJECT) {
		struct scan a;
		if (!scan_again(&mv[M_TAGS], &tags_lk))
			return FAST_DEFER;
		if (cs_list.kind == J_ARRAY) {
			array_begin(&a, &cs_list);
			if (array_next(&a, &first))
				cs = jval_text(&first, &cs_tmp, &cs_len, err);
		}
	}
	const char *arn = jval_text(&mv[M_SOURCE_ARN], &arn_tmp, &arn_len, err);
	const char *source = jval_text(&mv[M_SOURCE], &source_tmp, &source_len, err);
	if (!*err)
		counter_names(out, arn, arn_len, source, source_len, cs, cs_len);
	free(arn_tmp);
	free(source_tmp);
	free(cs_tmp);
	return FAST_DONE;
}

/* ses_events_parse() without json-c, or FAST_DEFER when json-c must read
 * this message (nothing in out is kept then). */
static enum fast_result fast_parse(const char *message, size_t len,
				   const struct ses_context *ctx,
				   struct ses_events *out, enum mt_err *err)
{
	const char *root_keys[R_TYPE_OBJECTS + N_TYPES] = {
		"notificationType", "eventType", "mail",
	};
	static const char *const mail_keys[M__COUNT] = {
		"messageId", "source", "timestamp", "destination", "commonHeaders",
		"sourceArn", "tags",
	};
	struct jval rv[R_TYPE_OBJECTS + N_TYPES] = {{0}}, mv[M__COUNT] = {{0}};
	const struct lookup mail_lk = {mail_keys, M__COUNT, mv, M__COUNT, NULL};
	const struct lookup root_lk = {root_keys, R_TYPE_OBJECTS + N_TYPES, rv,
				       R_MAIL, &mail_lk};
	struct shared_parts sh = {0};
	char *mail_text = NULL;

	*err = MT_E_OK;
	if (!message)
		return FAST_DEFER;
	struct scan s = {jsonscan_ws(message, message + len), message + len, 0};
	for (size_t k = 0; k < N_TYPES; k++)
		root_keys[R_TYPE_OBJECTS + k] = ses_types[k].object;
	if (s.p == s.end || *s.p != '{' || !scan_object(&s, &root_lk) ||
	    jsonscan_ws(s.p, s.end) != s.end)
		return FAST_DEFER;

	const struct ses_type *type = fast_find_type(rv);
	if (!type)
		return FAST_DONE; /* keep_raw */
	const struct jval *typeobj = &rv[R_TYPE_OBJECTS + (size_t)(type - ses_types)];
	if (typeobj->kind != J_OBJECT || rv[R_MAIL].kind != J_OBJECT ||
	    mv[M_MESSAGE_ID].kind != J_STRING)
		return FAST_DONE;

	/* The type object: timestamp, recipients, then the fields. */
	const char *tkeys[TYPE_KEYS_MAX + 2] = {"timestamp", type->rcpt_array};
	struct jval tv[TYPE_KEYS_MAX + 2] = {{0}};
	size_t nt = type->rcpt_array ? 2 : 1;
	for (size_t i = 0; i < type->n_fields; i++)
		tkeys[nt + i] = type->fields[i].name;
	const struct lookup type_lk = {tkeys, nt + type->n_fields, tv, SIZE_MAX, NULL};
	if (!scan_again(typeobj, &type_lk))
		return FAST_DEFER;

	int64_t when = 0;
	if (!fast_event_time(type, &tv[0], &mv[M_TIMESTAMP], &when) ||
	    implausible(ctx, when, out))
		return FAST_DONE;
	const struct jval *rcpts =
		type->rcpt_from == RCPT_DESTINATION ? &mv[M_DESTINATION] : &tv[1];
	if (rcpts->kind != J_ARRAY)
		return FAST_DONE;

	/* Count the entries. */
	size_t n_entries = 0;
	struct scan a;
	struct jval e;
	array_begin(&a, rcpts);
	while (array_next(&a, &e))
		n_entries++;
	if (n_entries == 0)
		return FAST_DONE;
	out->keep_raw = false;
	if (n_entries > SES_RECIPIENTS_MAX) {
		n_entries = SES_RECIPIENTS_MAX;
		out->keep_raw = true;
	}
	if (fast_mail(mv, ctx->keep_headers, &mail_text, &sh.mail_len, err) == FAST_DEFER)
		return FAST_DEFER;
	sh.mail = mail_text;
	out->v = calloc(n_entries, sizeof(*out->v));
	if (*err || !out->v) {
		*err = MT_E_NOMEM;
		goto out;
	}
	if (fast_counter_names(mv, out, err) == FAST_DEFER)
		goto defer;
	if (*err)
		goto out;

	int bt = field_index(type, "bounceType");
	bool permanent = bt >= 0 && jval_is(&tv[nt + (size_t)bt], "Permanent");
	const char *count_type = NULL;
	{
		char buf[FAST_SHORT_MAX];
		size_t bt_len = 0;
		bool not_short;
		/* A bounceType too long to decode here is neither Permanent nor
		 * Transient: NULL counts it as json-c's reading does. */
		const char *bt_text = bt >= 0 ? short_string(&tv[nt + (size_t)bt], buf,
							     &bt_len, &not_short)
					      : NULL;
		count_type = stats_type_of_event(type->name, bt_text, bt_len);
	}
	array_begin(&a, rcpts);
	for (size_t i = 0; i < n_entries && array_next(&a, &e); i++) {
		struct jval ekeys_v[TYPE_KEYS_MAX + 1] = {{0}};
		const char *ekeys[TYPE_KEYS_MAX + 1] = {"emailAddress"};
		struct ses_event *ev = &out->v[out->n];
		const struct jval *addr = NULL, *evals = NULL;
		char scratch[FAST_DETAIL_STACK], *detail_owned = NULL;
		const char *detail = NULL;
		size_t detail_len = 0;

		if (type->rcpt_from == RCPT_ENTRIES) {
			if (e.kind == J_OBJECT) {
				for (size_t k = 0; k < type->n_fields; k++)
					ekeys[1 + k] = type->fields[k].name;
				const struct lookup entry_lk = {ekeys, 1 + type->n_fields,
								ekeys_v, SIZE_MAX, NULL};
				if (!scan_again(&e, &entry_lk))
					goto defer;
				addr = &ekeys_v[0];
				evals = &ekeys_v[1];
			}
		} else {
			addr = &e;
		}
		if (!fast_address(addr, ev->recipient, err)) {
			if (*err)
				goto out;
			out->keep_raw = true;
			continue;
		}
		if (!event_start(out, ev, type, when, permanent, count_type))
			continue;
		if (fast_detail(type, &tv[nt], evals, scratch, &detail_owned, &detail,
				&detail_len, err) == FAST_DEFER) {
			free(detail_owned);
			goto defer;
		}
		if (!*err)
			*err = event_serialise(ev, ctx, &sh, detail, detail_len);
		free(detail_owned);
		if (*err)
			goto out;
		out->n++;
	}
	if (out->n == 0)
		out->keep_raw = true;
out:
	free(mail_text);
	return FAST_DONE;
defer:
	free(mail_text);
	return FAST_DEFER;
}

enum mt_err ses_events_parse_reference(const char *message, size_t len,
				       const struct ses_context *ctx,
				       struct ses_events *out)
{
	static const struct ses_context no_context = {NULL, NULL, false, 0};
	enum mt_err err = MT_E_OK;
	bool nomem = false;
	struct json_object *root = NULL, *mail = NULL, *typeobj = NULL;
	struct json_object *rcpts = NULL, *mail_out = NULL;
	const struct ses_type *type = NULL;
	size_t n_entries = 0;
	int64_t when = 0;

	if (!out)
		return MT_E_INTERNAL;
	memset(out, 0, sizeof(*out));
	out->keep_raw = true; /* until the message proves indexable */
	if (!ctx)
		ctx = &no_context;

	root = parse_json(message, len, &nomem);
	if (!root) {
		err = nomem ? MT_E_NOMEM : MT_E_OK;
		goto out;
	}
	type = find_type(root);
	if (!type)
		goto out_root;
	typeobj = member(root, type->object, json_type_object);
	mail = member(root, "mail", json_type_object);
	if (!typeobj || !mail || !member(mail, "messageId", json_type_string))
		goto out_root;
	if (!event_time(type, typeobj, mail, &when))
		goto out_root;
	if (implausible(ctx, when, out))
		goto out_root;
	if (type->rcpt_from == RCPT_DESTINATION)
		rcpts = member(mail, "destination", json_type_array);
	else
		rcpts = member(typeobj, type->rcpt_array, json_type_array);
	if (!rcpts)
		goto out_root;

	n_entries = json_object_array_length(rcpts);
	if (n_entries == 0)
		goto out_root;
	out->keep_raw = false;
	if (n_entries > SES_RECIPIENTS_MAX) {
		n_entries = SES_RECIPIENTS_MAX;
		out->keep_raw = true;
	}
	out->v = calloc(n_entries, sizeof(*out->v));
	mail_out = mail_build(mail, ctx->keep_headers);
	struct shared_parts sh = {0};
	if (mail_out)
		sh.mail = json_object_to_json_string_length(mail_out, SES_JSON_FLAGS,
							    &sh.mail_len);
	if (!out->v || !sh.mail) {
		err = MT_E_NOMEM;
		goto out_mail;
	}

	struct json_object *bounce_type = member(typeobj, "bounceType", json_type_string);
	bool permanent = string_is(bounce_type, "Permanent");
	const char *count_type = stats_type_of_event(
		type->name, bounce_type ? json_object_get_string(bounce_type) : NULL,
		bounce_type ? (size_t)json_object_get_string_len(bounce_type) : 0);
	{
		struct json_object *arn = member(mail, "sourceArn", json_type_string);
		struct json_object *source = member(mail, "source", json_type_string);
		struct json_object *list = member(member(mail, "tags", json_type_object),
						  "ses:configuration-set", json_type_array);
		struct json_object *cs = list ? json_object_array_get_idx(list, 0) : NULL;
		if (!json_object_is_type(cs, json_type_string))
			cs = NULL;
		counter_names(out, arn ? json_object_get_string(arn) : NULL,
			      arn ? (size_t)json_object_get_string_len(arn) : 0,
			      source ? json_object_get_string(source) : NULL,
			      source ? (size_t)json_object_get_string_len(source) : 0,
			      cs ? json_object_get_string(cs) : NULL,
			      cs ? (size_t)json_object_get_string_len(cs) : 0);
	}
	for (size_t i = 0; i < n_entries; i++) {
		struct json_object *entry = json_object_array_get_idx(rcpts, i);
		struct json_object *addr = recipient_address(type, entry);
		struct ses_event *ev = &out->v[out->n];
		struct json_object *detail = NULL;

		if (!addr ||
		    !ses_address_normalize(json_object_get_string(addr),
					   (size_t)json_object_get_string_len(addr),
					   ev->recipient)) {
			out->keep_raw = true;
			continue;
		}
		if (!event_start(out, ev, type, when, permanent, count_type))
			continue;
		detail = detail_build(type, typeobj,
				      type->rcpt_from == RCPT_ENTRIES ? entry : NULL);
		size_t detail_len = 0;
		const char *detail_text =
			detail ? json_object_to_json_string_length(
					 detail, SES_JSON_FLAGS, &detail_len)
			       : NULL;
		err = detail_text ? event_serialise(ev, ctx, &sh, detail_text,
						    detail_len)
				  : MT_E_NOMEM;
		json_object_put(detail);
		if (err != MT_E_OK)
			goto out_mail;
		out->n++;
	}
	if (out->n == 0)
		out->keep_raw = true;
out_mail:
	json_object_put(mail_out);
out_root:
	json_object_put(root);
out:
	if (err != MT_E_OK) {
		ses_events_free(out);
		out->keep_raw = true;
	}
	return err;
}

enum mt_err ses_events_parse(const char *message, size_t len,
			     const struct ses_context *ctx,
			     struct ses_events *out)
{
	static const struct ses_context no_context = {NULL, NULL, false, 0};
	enum mt_err err = MT_E_OK;

	if (!out)
		return MT_E_INTERNAL;
	memset(out, 0, sizeof(*out));
	out->keep_raw = true; /* until the message proves indexable */
	if (fast_parse(message, len, ctx ? ctx : &no_context, out, &err) ==
	    FAST_DEFER) {
		ses_events_free(out);
		return ses_events_parse_reference(message, len, ctx, out);
	}
	if (err != MT_E_OK) {
		ses_events_free(out);
		out->keep_raw = true;
	}
	return err;
}

void ses_events_free(struct ses_events *evs)
{
	if (!evs)
		return;
	for (size_t i = 0; i < evs->n; i++)
		free(evs->v[i].json);
	free(evs->v);
	memset(evs, 0, sizeof(*evs));
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* What a byte may be in an address (the bulk check runs the normaliser
 * 1,000 times a call, so it takes one pass over each address):
 * ADDR_OK anywhere in an unquoted address: not a control, space, or one
 * of the specials that delimit addresses in headers; bytes >= 0x80 pass
 * (internationalised addresses) and are not lower-cased.  DOMAIN_OK after
 * the '@' as well: a host name ([A-Za-z0-9.-], UTF-8 for IDN) or an
 * address literal in brackets; '/', '%', '?', '#' and the like never
 * appear in one (and would make the address ambiguous in a URL). */
enum { ADDR_OK = 1, DOMAIN_OK = 2 };

/* By byte: 0 for controls, space, DEL, < > " ( ) , ; and backslash; 3 (both) for
 * letters, digits, . - [ ] : and bytes >= 0x80; 1 for the other
 * printable ASCII (the local part's ! # $ % & ' * + / = ? ^ _ ` { | } ~
 * and @, which ses_address_normalize treats itself). */
static const unsigned char address_class[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 3, 3, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0, 1, 0, 1,
	1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 3, 1, 1,
	1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 0,
	3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
	3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
	3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
	3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
};

/* The '<' that ends a display name in [start, end) (a pointer into the
 * caller's buffer), or NULL.  Quoted
 * strings may hold anything; outside them a '>' or ',' means this is not
 * one "Name <addr>" (e.g. a list "A <a@x>, B <b@x>"). */
static const char *display_name_end(const char *start, const char *end)
{
	bool quoted = false;

	for (const char *p = start; p < end; p++) {
		if (quoted) {
			if (*p == '\\' && p + 1 < end)
				p++;
			else if (*p == '"')
				quoted = false;
		} else if (*p == '"') {
			quoted = true;
		} else if (*p == '<') {
			return p;
		} else if (*p == '>' || *p == ',') {
			return NULL;
		}
	}
	return NULL;
}

bool ses_address_normalize(const char *in, size_t len,
			   char out[SES_ADDRESS_MAX + 1])
{
	const char *start = in, *end = in ? in + len : NULL;
	const char *at = NULL;

	if (!out)
		return false;
	out[0] = '\0';
	if (!in)
		return false;
	while (start < end && is_space(*start))
		start++;
	while (end > start && is_space(end[-1]))
		end--;
	/* "Display Name <addr>": the address is between the '<' that ends
	 * the display name and the final '>'. */
	if (end > start && end[-1] == '>') {
		const char *lt = display_name_end(start, end - 1);

		if (!lt)
			return false;
		start = lt + 1;
		end--;
	}
	if ((size_t)(end - start) > SES_ADDRESS_MAX)
		return false;
	size_t n = (size_t)(end - start);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)start[i];
		unsigned char k = address_class[c];
		if (!(k & ADDR_OK))
			goto bad;
		if (c == '@') {
			if (at)
				goto bad; /* only in quoted local parts */
			at = start + i;
		} else if (at && !(k & DOMAIN_OK)) {
			goto bad;
		}
		out[i] = (char)((unsigned)c - 'A' < 26u ? c + ('a' - 'A') : c);
	}
	if (!at || at == start || at + 1 == end)
		goto bad;
	out[n] = '\0';
	return true;
bad:
	out[0] = '\0';
	return false;
}
