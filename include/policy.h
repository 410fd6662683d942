/* policy.h - the suppression policy: what, among a recipient's kept
 * events, means "do not mail this address again", and how to say why.
 *
 * Pure: no Redis, no globals, no logging.  The store (store.c) reads a
 * recipient's events and its counts hash; this module decides.  README,
 * "Query API" and "Bulk suppression check", explains the rules and their
 * sources.
 *
 * Reasons, stable strings shared by the summary, the bulk check and the
 * export (policy_reason_name):
 *   Complaint         a complaint
 *   Bounce/Permanent  a bounce SES labels Permanent
 *   Bounce/Status     a Transient or Undetermined bounce whose enhanced
 *                     status code is in --suppress-statuses
 *   Bounce/Repeated   --suppress-soft-bounces N Transient/Undetermined
 *                     bounces within --suppress-soft-days D days, and no
 *                     Delivery since
 * The reason codes are also the suppression index's (store.h): part of
 * the key layout, never renumber them. */
#ifndef POLICY_H
#define POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most codes --suppress-statuses takes. */
#define POLICY_STATUSES_MAX 32
/* The longest enhanced status code read: "c.sss.ddd" (RFC 3463: class
 * one digit, subject and detail one to three digits). */
#define POLICY_STATUS_MAX 9
/* How far into a diagnosticCode a status code is looked for. */
#define POLICY_DIAG_SCAN_MAX 1024
/* Most events of one recipient the policy reads (its newest ones). */
#define POLICY_EVENTS_MAX 1000
/* Largest --suppress-soft-bounces and --suppress-soft-days. */
#define POLICY_SOFT_BOUNCES_MAX 100
#define POLICY_SOFT_DAYS_MAX 3650
/* Room for a reason_text. */
#define POLICY_TEXT_MAX 192

enum policy_reason {
	POLICY_NONE = -1,
	POLICY_COMPLAINT = 0,
	POLICY_PERMANENT = 1,
	POLICY_STATUS = 2,
	POLICY_REPEATED = 3,
};

struct policy {
	char statuses[POLICY_STATUSES_MAX][POLICY_STATUS_MAX + 1];
	size_t nstatuses;      /* 0: no status suppresses a soft bounce */
	unsigned soft_bounces; /* N; 0: repeated soft bounces never suppress */
	unsigned soft_days;    /* D */
};

/* The defaults: statuses 5.1.1, 5.1.2, 5.1.3, 5.1.6, 5.1.10, 5.2.1,
 * 5.4.4; 5 soft bounces within 30 days. */
void policy_default(struct policy *p);

/* Parses --suppress-statuses: "none", or comma-separated codes of class
 * 4 or 5 ("5.4.4"), at most POLICY_STATUSES_MAX.  False (p unchanged)
 * otherwise. */
bool policy_parse_statuses(const char *list, struct policy *p);

/* Finds the first enhanced status code (class 2, 4 or 5, RFC 3463:
 * "c.s.d", subject and detail 1 to 3 digits, not part of a longer run of
 * digits and dots) in the first POLICY_DIAG_SCAN_MAX bytes of s[0..len)
 * and writes it to out, NUL-terminated.  False when there is none. */
bool policy_status_find(const char *s, size_t len, char out[POLICY_STATUS_MAX + 1]);

/* Whether status is one of p's --suppress-statuses. */
bool policy_status_listed(const struct policy *p, const char *status);

/* What of an event the policy looks at. */
enum policy_kind {
	POLICY_EV_OTHER,     /* nothing the policy reads */
	POLICY_EV_DELIVERY,
	POLICY_EV_COMPLAINT,
	POLICY_EV_PERMANENT, /* a bounce, bounceType Permanent */
	POLICY_EV_SOFT,      /* a bounce, bounceType Transient or Undetermined */
};

struct policy_event {
	int64_t time_ms;
	enum policy_kind kind;
	bool undetermined;                    /* SOFT: bounceType Undetermined */
	char status[POLICY_STATUS_MAX + 1];   /* SOFT: detail.status, else from
					       * detail.diagnosticCode; "" none */
};

/* Reads an EVENT (ses.c's JSON: "type", "time" unused, "detail"'s
 * bounceType, status and diagnosticCode) into out; time_ms is the
 * caller's (the store's score).  A text that is not an EVENT object is
 * POLICY_EV_OTHER.  len bytes are read, at most; json-c depth 8. */
void policy_event_read(const char *json, size_t len, int64_t time_ms,
		       struct policy_event *out);

/* The reason code a stored event gives the suppression index (store.h):
 * POLICY_COMPLAINT, POLICY_PERMANENT, POLICY_STATUS (a soft bounce with a
 * listed status), POLICY_REPEATED (any other soft bounce while
 * p->soft_bounces > 0: a candidate), else POLICY_NONE. */
enum policy_reason policy_index_code(const struct policy *p, const struct policy_event *ev);

struct policy_result {
	enum policy_reason reason;          /* POLICY_NONE: not suppressed */
	int64_t time_ms;                    /* the deciding event's time */
	bool undetermined;                  /* STATUS: that bounce's type */
	char status[POLICY_STATUS_MAX + 1]; /* STATUS: the code */
};

/* Decides over ev[0..n), a recipient's events newest first (as its set
 * holds them, read from the newest; at most POLICY_EVENTS_MAX are read):
 * - a complaint, a permanent bounce, a soft bounce with a listed status:
 *   each suppresses, whatever came after;
 * - repeated soft bounces: walking from the newest, stop at the first
 *   Delivery; among the soft bounces met (newest first, s[0], s[1], ...)
 *   if some N consecutive ones s[j..j+N-1] lie within D days (s[j] -
 *   s[j+N-1] <= D * 86400000 ms), the address is suppressed at s[j]
 *   (the newest such window's newest bounce).  A window, not only the
 *   newest N: a later soft bounce never lifts a suppression, a delivery
 *   does.
 * Of several reasons the one with the latest time is answered; on a tie
 * Bounce/Permanent, Bounce/Status, Bounce/Repeated, then Complaint. */
void policy_evaluate(const struct policy *p, const struct policy_event *ev, size_t n,
		     struct policy_result *out);

/* Merges b into a: the later one, ties as policy_evaluate. */
void policy_result_merge(struct policy_result *a, const struct policy_result *b);

/* The reason's stable name ("Bounce/Permanent", ...), NULL for
 * POLICY_NONE or an unknown code (static strings). */
const char *policy_reason_name(enum policy_reason r);

/* The reason in words for r (reason_text), into out (always
 * NUL-terminated); "" for POLICY_NONE. */
void policy_reason_text(const struct policy *p, const struct policy_result *r,
			char out[POLICY_TEXT_MAX]);

/* A short digest of what p decides, for the suppression index's marker
 * name: "1" for the policy before this module (no statuses, no repeated
 * soft bounces: the index is the same), else "2-" and 8 hex digits. */
void policy_digest(const struct policy *p, char out[16]);

#endif
