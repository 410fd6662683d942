/* rediserr.h - which Redis error replies trying again does not cure: the
 * spool's drainer sets such a record aside (spool.h) instead of retrying
 * it.  Pure: a function of the error's text. */
#ifndef REDISERR_H
#define REDISERR_H

#include <stdbool.h>
#include <string.h>

/* The codes of errors from a state that passes: loading, busy with a
 * script or killed one, a slot moving or the cluster down, a failover
 * (READONLY, MASTERDOWN, NOREPLICAS), out of memory (OOM: eviction or
 * expiry frees room), persistence failing (MISCONF), the script not
 * loaded (NOSCRIPT: the next connection loads it), and authentication or
 * ACL (NOAUTH, WRONGPASS, NOPERM: the operator's fix). */
static inline bool rediserr_code_passes(const char *code, size_t n)
{
	static const char *const passing[] = {
		"LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MOVED", "ASK", "READONLY",
		"MASTERDOWN", "NOREPLICAS", "OOM", "MISCONF", "NOSCRIPT", "NOAUTH",
		"WRONGPASS", "NOPERM",
	};
	for (size_t i = 0; i < sizeof(passing) / sizeof(passing[0]); i++)
		if (strlen(passing[i]) == n && memcmp(code, passing[i], n) == 0)
			return true;
	return false;
}

/* Whether the error reply s (its text, as hiredis gives it: "CODE
 * message") is refused for good: its code is not one of
 * rediserr_code_passes's.  Every other code (WRONGTYPE, CROSSSLOT, a
 * script error "ERR ...") is refused: the same write on the same data
 * gets the same answer.
 *
 * Redis up to 6.2 wraps an error raised by a command inside a script in
 * an ERR, "ERR Error running script (call to f_<sha1>): @user_script:N:
 * @user_script: N: -OOM command not allowed ...": then the embedded
 * "-CODE" decides (an unknown one: refused), and 6.2's ACL refusal inside
 * a script, which has no code ("The user executing the script can't
 * ..."), is NOPERM's.  Redis 7 gives the command's own code first ("OOM
 * command not allowed ... script: <sha1>, on @user_script:N."). */
static inline bool rediserr_refused(const char *s)
{
	static const char wrapped[] = "ERR Error running script";
	size_t n = strcspn(s, " ");
	if (strncmp(s, wrapped, sizeof(wrapped) - 1) == 0) {
		const char *p = strstr(s, "): ");
		const char *dash = p ? strstr(p, ": -") : NULL;
		if (dash) {
			const char *code = dash + 3;
			size_t k = 0;
			while ((code[k] >= 'A' && code[k] <= 'Z') || code[k] == '_')
				k++;
			if (k > 0 && (code[k] == ' ' || code[k] == '\0'))
				return !rediserr_code_passes(code, k);
		}
		if (p && strstr(p, "The user executing the script can't"))
			return false; /* 6.2's NOPERM inside a script */
	}
	if (rediserr_code_passes(s, n))
		return false;
	/* Generic errors that still pass: too many clients, a script
	 * stopped by SCRIPT KILL. */
	return strstr(s, "max number of clients") == NULL && strstr(s, "Script killed") == NULL;
}

#endif
