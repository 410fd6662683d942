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
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

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

/* Adds a borrowed value from the parsed message under key. */
static bool add_shared(struct json_object *obj, const char *key,
		       struct json_object *val)
{
	return add_owned(obj, key, json_object_get(val));
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

/* The row (static, never freed) for the message's notificationType or
 * eventType, or NULL when neither names a known type, or both are present
 * and disagree. */
static const struct ses_type *find_type(struct json_object *root)
{
	struct json_object *names[2] = {
		member(root, "notificationType", json_type_string),
		member(root, "eventType", json_type_string),
	};
	const struct ses_type *found = NULL;

	for (size_t i = 0; i < 2; i++) {
		const struct ses_type *t = NULL;

		if (!names[i])
			continue;
		for (size_t k = 0; k < sizeof(ses_types) / sizeof(ses_types[0]); k++) {
			if (string_is(names[i], ses_types[k].name)) {
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

/* The "mail" object of EVENT.  Returns a new object (caller puts it) or
 * NULL on allocation failure.  mail.headers is never copied. */
static struct json_object *mail_build(struct json_object *mail,
				      bool keep_headers)
{
	static const struct {
		const char *key;
		enum json_type type;
	} keys[] = {
		{"messageId", json_type_string},
		{"source", json_type_string},
		{"timestamp", json_type_string},
		{"destination", json_type_array},
	};
	struct json_object *out = json_object_new_object();

	if (!out)
		return NULL;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		struct json_object *v = member(mail, keys[i].key, keys[i].type);

		if (v && !add_shared(out, keys[i].key, v))
			goto fail;
	}
	if (keep_headers) {
		struct json_object *h =
			member(mail, "commonHeaders", json_type_object);

		if (h && !add_shared(out, "commonHeaders", h))
			goto fail;
	}
	return out;
fail:
	json_object_put(out);
	return NULL;
}

/* The "detail" object of EVENT for one recipient (rcpt: this recipient's
 * entry, NULL for types that list bare addresses).  Returns a new object
 * (caller puts it) or NULL on allocation failure. */
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
		struct json_object *v = NULL;

		if (!json_object_is_type(src, json_type_object) ||
		    !json_object_object_get_ex(src, f->name, &v))
			continue;
		if (!is_scalar(v) &&
		    !(f->allow_object && json_object_is_type(v, json_type_object)))
			continue;
		if (!add_shared(out, f->name, v)) {
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
		default:
			if (c < 0x20) {
				*o++ = '\\';
				*o++ = 'u';
				*o++ = '0';
				*o++ = '0';
				*o++ = hex[c >> 4];
				*o++ = hex[c & 0xf];
				continue;
			}
			*o++ = (char)c;
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

/* Fills ev->json with the serialised EVENT, written directly: only the
 * per-recipient "detail" goes through json-c.  The bytes are those json-c
 * gave for the same object (keys in the same order, same flags), so
 * EVENTs stored by earlier versions compare equal.  detail is borrowed.
 * Returns MT_E_OK or MT_E_NOMEM. */
static enum mt_err event_serialise(struct ses_event *ev,
				   const struct ses_context *ctx,
				   const struct shared_parts *sh,
				   struct json_object *detail)
{
	char when[MT_TIME_BUF];
	size_t detail_len = 0;
	const char *detail_text =
		json_object_to_json_string_length(detail, SES_JSON_FLAGS, &detail_len);
	size_t id_len = ctx->sns_message_id ? strlen(ctx->sns_message_id) : 0;
	size_t topic_len = ctx->topic_arn ? strlen(ctx->topic_arn) : 0;
	size_t rcpt_len = strlen(ev->recipient);

	if (!detail_text)
		return MT_E_NOMEM;
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

/* A permanent bounce or a complaint suppresses the recipient. */
static const char *suppression(const char *type, struct json_object *typeobj)
{
	if (strcmp(type, "Complaint") == 0)
		return "Complaint";
	if (strcmp(type, "Bounce") == 0 &&
	    string_is(member(typeobj, "bounceType", json_type_string), "Permanent"))
		return "Bounce/Permanent";
	return NULL;
}

enum mt_err ses_events_parse(const char *message, size_t len,
			     const struct ses_context *ctx,
			     struct ses_events *out)
{
	static const struct ses_context no_context = {NULL, NULL, false};
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
		if (already_seen(out, ev->recipient))
			continue;
		ev->time_ms = when;
		ev->type = type->name;
		ev->suppress = suppression(type->name, typeobj);
		detail = detail_build(type, typeobj,
				      type->rcpt_from == RCPT_ENTRIES ? entry : NULL);
		err = detail ? event_serialise(ev, ctx, &sh, detail)
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

/* Characters that cannot appear in an unquoted address: controls, space,
 * and the specials that delimit addresses in headers.  Bytes >= 0x80 pass
 * (internationalised addresses); they are not lower-cased. */
static bool is_address_char(unsigned char c)
{
	if (c <= 0x20 || c == 0x7f)
		return false;
	return strchr("<>\"(),;\\", c) == NULL;
}

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
	for (const char *p = start; p < end; p++) {
		if (!is_address_char((unsigned char)*p))
			return false;
		if (*p == '@') {
			if (at)
				return false; /* only in quoted local parts */
			at = p;
		}
	}
	if (!at || at == start || at + 1 == end)
		return false;
	/* A domain is a host name ([A-Za-z0-9.-], UTF-8 for IDN) or an
	 * address literal in brackets; '/', '%', '?', '#' and the like never
	 * appear in one (and would make the address ambiguous in a URL). */
	for (const char *p = at + 1; p < end; p++) {
		unsigned char c = (unsigned char)*p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '-' ||
			  c >= 0x80 || c == '[' || c == ']' || c == ':';
		if (!ok)
			return false;
	}
	size_t n = (size_t)(end - start);
	for (size_t i = 0; i < n; i++) {
		char c = start[i];

		out[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	out[n] = '\0';
	return true;
}
