/* Which Redis error replies the spool's drainer retries and which it sets
 * aside (rediserr.h), with the error texts Redis 6.2 and 7.x give. */
#include "rediserr.h"
#include "testutil.h"

#define F62 "ERR Error running script (call to f_8f55ae4a3be429c6d38c5d5db3e80edf89197b64): "
#define AT62 "@user_script:41: @user_script: 41: "
#define AT7 " script: 8f55ae4a3be429c6d38c5d5db3e80edf89197b64, on @user_script:41."

static void check(const char *text, bool refused)
{
	CHECK(rediserr_refused(text) == refused, "%s: want %s", text,
	      refused ? "refused for good" : "tried again");
}

int main(void)
{
	/* Plain replies, as before. */
	check("OOM command not allowed when used memory > 'maxmemory'.", false);
	check("READONLY You can't write against a read only replica.", false);
	check("LOADING Redis is loading the dataset in memory", false);
	check("BUSY Redis is busy running a script. You can only call SCRIPT KILL or "
	      "SHUTDOWN NOSAVE.", false);
	check("TRYAGAIN Multiple keys request during rehashing of slot", false);
	check("CLUSTERDOWN The cluster is down", false);
	check("MOVED 3999 127.0.0.1:6381", false);
	check("NOSCRIPT No matching script. Please use EVAL.", false);
	check("NOPERM this user has no permissions to run the 'evalsha' command", false);
	check("ERR max number of clients reached", false);
	check("WRONGTYPE Operation against a key holding the wrong kind of value", true);
	check("CROSSSLOT Keys in request don't hash to the same slot", true);
	check("ERR unknown command 'FOO', with args beginning with: ", true);

	/* Redis 7.x: a command's error inside a script keeps its code. */
	check("OOM command not allowed when used memory > 'maxmemory'." AT7, false);
	check("READONLY You can't write against a read only replica." AT7, false);
	check("NOPERM this user has no permissions to run the 'zadd' command" AT7, false);
	check("WRONGTYPE Operation against a key holding the wrong kind of value" AT7, true);
	check("ERR user_script:12: attempt to compare nil with number script: "
	      "8f55ae4a3be429c6d38c5d5db3e80edf89197b64, on @user_script:12.", true);

	/* Redis <= 6.2: wrapped in ERR, the code after "-" (trailing blanks
	 * where "\r\n" was). */
	check(F62 AT62 "-OOM command not allowed when used memory > 'maxmemory'.   ", false);
	check(F62 AT62 "-READONLY You can't write against a read only replica.  ", false);
	check(F62 AT62 "-NOPERM this user has no permissions to run the 'zadd' command  ", false);
	check(F62 AT62 "-LOADING Redis is loading the dataset in memory  ", false);
	check(F62 AT62 "-BUSY Redis is busy running a script.  ", false);
	check(F62 AT62 "-CLUSTERDOWN The cluster is down  ", false);
	check(F62 AT62 "-TRYAGAIN Multiple keys request during rehashing of slot  ", false);
	check(F62 AT62 "-MASTERDOWN Link with MASTER is down and replica-serve-stale-data "
		       "is set to 'no'.  ", false);
	check(F62 AT62 "-MISCONF Redis is configured to save RDB snapshots, but it's "
		       "currently not able to persist on disk.  ", false);
	check(F62 AT62 "The user executing the script can't run this command or subcommand ",
	      false);
	check(F62 "@user_script:1: Script killed by user with SCRIPT KILL... ", false);
	/* Refused for good: unknown or permanent embedded codes, script bugs. */
	check(F62 AT62 "-WRONGTYPE Operation against a key holding the wrong kind of value  ",
	      true);
	check(F62 AT62 "-CROSSSLOT Keys in request don't hash to the same slot  ", true);
	check(F62 AT62 "-SOMETHINGNEW whatever  ", true);
	check(F62 "@user_script:12: user_script:12: attempt to compare nil with number ", true);
	check(F62 AT62 "-", true);
	check("ERR Error running script", true);
	/* The code must be the embedded one, not a word of the message. */
	check(F62 "@user_script:3: Lua redis() command arguments must be strings or "
		  "integers OOM ", true);
	return test_report("rediserr");
}
