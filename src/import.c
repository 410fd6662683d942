/* import.c - mailtrail import: files -> messages -> the webhook's checks ->
 * the store.  One reader (this thread) walks the files and cuts them into
 * messages (importread), IMPORT_VERIFIERS threads verify and store them a
 * job at a time, a progress thread draws (importprogress). */
#include "import.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "certcache.h"
#include "fetch.h"
#include "importprogress.h"
#include "importread.h"
#include "mt_time.h"
#include "rcluster.h"
#include "ses.h"
#include "store.h"
#include "verify.h"
#include "webhook.h"

struct import_file {
	char *path;     /* owned; "-" for standard input */
	uint64_t size;  /* 0 when unknown (not a regular file) */
	int64_t mtime_ms;
	bool is_stdin;
};

/* A message cut from a file, waiting for a verifier. */
struct import_rec {
	char *body; /* owned */
	size_t len;
	size_t file;        /* index in import.files */
	unsigned long line; /* 0: the file is one document */
	enum mt_err err;    /* MT_E_TOO_LARGE: no body */
};

struct import_job {
	struct import_rec r[WEBHOOK_COMMIT_MAX];
	size_t n, bytes;
	struct import_job *next;
};

struct import_problem {
	size_t file;
	unsigned long line;
	bool failed;   /* 5xx: may pass (counted as failed), else rejected */
	bool unreadable; /* the file itself */
	enum mt_err err;
	char detail[160];
};

struct import {
	struct config cfg;
	struct webhook w;
	bool trusted;
	const char *trusted_topic;
	unsigned progress_every;

	struct import_file *files;
	size_t nfiles, capfiles;
	uint64_t bytes_total;
	bool total_known;

	/* The queue of jobs, reader to verifiers. */
	pthread_mutex_t lock;
	pthread_cond_t work, room;
	struct import_job *head, *tail;
	size_t queued, queued_bytes;
	bool eof;
	atomic_int give_up; /* an mt_err: Redis stayed unavailable */

	/* Counts, under lock. */
	uint64_t stored, duplicate, noted, rejected, failed, unreadable;
	uint64_t by_err[MT_E__COUNT];
	struct import_problem shown[IMPORT_PROBLEMS_SHOWN];
	size_t nshown;
	/* The reader's, read by the progress thread. */
	atomic_uint_fast64_t files_done, bytes_done;

	/* The progress thread. */
	pthread_mutex_t plock;
	pthread_cond_t pwake;
	bool pstop;
	struct importprogress progress;
};

/* --- counting --------------------------------------------------------- */

static bool problem_before(const struct import_problem *a, const struct import_problem *b)
{
	return a->file < b->file || (a->file == b->file && a->line < b->line);
}

/* Keeps the IMPORT_PROBLEMS_SHOWN first problems by file and line (the
 * verifiers finish out of order).  Under im->lock. */
static void keep_problem(struct import *im, const struct import_problem *p)
{
	if (im->nshown < IMPORT_PROBLEMS_SHOWN) {
		im->shown[im->nshown++] = *p;
		return;
	}
	size_t last = 0;
	for (size_t i = 1; i < im->nshown; i++)
		if (problem_before(&im->shown[last], &im->shown[i]))
			last = i;
	if (problem_before(p, &im->shown[last]))
		im->shown[last] = *p;
}

/* One message's outcome. */
static void count_result(struct import *im, const struct import_rec *r,
			 enum mt_err err, const char *status, const char *detail)
{
	pthread_mutex_lock(&im->lock);
	if (!status)
		status = "";
	if (err == MT_E_OK) {
		if (strcmp(status, "stored") == 0)
			im->stored++;
		else if (strcmp(status, "duplicate") == 0)
			im->duplicate++;
		else
			im->noted++;
	} else {
		struct import_problem p = {.file = r->file, .line = r->line, .err = err,
					   .failed = mt_err_http_status(err) >= 500};
		snprintf(p.detail, sizeof(p.detail), "%s", detail ? detail : "");
		if (p.failed)
			im->failed++;
		else
			im->rejected++;
		im->by_err[err]++;
		keep_problem(im, &p);
	}
	pthread_mutex_unlock(&im->lock);
}

static void count_unreadable(struct import *im, size_t file, const char *why)
{
	struct import_problem p = {.file = file, .unreadable = true};
	snprintf(p.detail, sizeof(p.detail), "%s", why);
	pthread_mutex_lock(&im->lock);
	im->unreadable++;
	keep_problem(im, &p);
	pthread_mutex_unlock(&im->lock);
}

static void progress_counts(struct import *im, struct importprogress_counts *c)
{
	pthread_mutex_lock(&im->lock);
	*c = (struct importprogress_counts){
		.files_done = atomic_load(&im->files_done),
		.files_total = im->nfiles,
		.bytes_done = atomic_load(&im->bytes_done),
		.bytes_total = im->total_known ? im->bytes_total : 0,
		.stored = im->stored,
		.duplicate = im->duplicate,
		.rejected = im->rejected,
		.failed = im->failed,
	};
	c->messages = im->stored + im->duplicate + im->noted + im->rejected + im->failed;
	pthread_mutex_unlock(&im->lock);
}

static void *progress_main(void *arg)
{
	struct import *im = arg;
	pthread_mutex_lock(&im->plock);
	while (!im->pstop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&im->pwake, &im->plock, &ts);
		if (im->pstop)
			break;
		struct importprogress_counts c;
		progress_counts(im, &c);
		importprogress_tick(&im->progress, &c, mt_time_now_ms());
	}
	pthread_mutex_unlock(&im->plock);
	return NULL;
}

/* --- verifying and storing -------------------------------------------- */

/* The time of a trusted SES event: its mail.timestamp, else the file's
 * modification time (standard input: now).  MT_E_BAD_JSON unless the
 * message is one JSON object. */
static enum mt_err trusted_time(const struct import *im, const struct import_rec *r,
				int64_t *ms)
{
	struct json_tokener *tok = json_tokener_new_ex(SES_JSON_DEPTH_MAX);
	if (!tok)
		return MT_E_NOMEM;
	struct json_object *o = json_tokener_parse_ex(tok, r->body, (int)r->len);
	bool whole = o && json_tokener_get_error(tok) == json_tokener_success &&
		     json_tokener_get_parse_end(tok) == r->len;
	json_tokener_free(tok);
	if (!whole || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return MT_E_BAD_JSON;
	}
	const struct import_file *f = &im->files[r->file];
	*ms = f->is_stdin ? mt_time_now_ms() : f->mtime_ms;
	struct json_object *mail, *ts;
	if (json_object_object_get_ex(o, "mail", &mail) &&
	    json_object_object_get_ex(mail, "timestamp", &ts) &&
	    json_object_is_type(ts, json_type_string)) {
		int64_t t;
		if (mt_time_parse(json_object_get_string(ts),
				  (size_t)json_object_get_string_len(ts), &t))
			*ms = t;
	}
	json_object_put(o);
	return MT_E_OK;
}

static enum webhook_step begin(struct import *im, const struct import_rec *r,
			       struct webhook_result *res, struct webhook_pending *p)
{
	if (!im->trusted) {
		enum webhook_step st = webhook_begin(&im->w, r->body, r->len, NULL, res, p);
		/* Not on an event loop: the disk or the network may block here. */
		return st == WEBHOOK_FETCH ? webhook_fetch(&im->w, res, p) : st;
	}
	char id[IMPORTREAD_ID_LEN + 1];
	int64_t ms = 0;
	enum mt_err err = trusted_time(im, r, &ms);
	if (err) {
		memset(res, 0, sizeof(*res));
		memset(p, 0, sizeof(*p));
		res->err = err;
		return WEBHOOK_DONE;
	}
	importread_trusted_id(r->body, r->len, id);
	return webhook_begin_trusted(&im->w, r->body, r->len, id, im->trusted_topic, ms,
				     res, p);
}

/* Whether trying again later may succeed. */
static bool transient(enum mt_err err)
{
	return mt_err_http_status(err) >= 500 && err != MT_E_REDIS_REFUSED;
}

struct slot {
	struct webhook_result res;
	struct webhook_pending p;
	bool done;
};

/* Counts a message's last result after `tries` tries. */
static void finish(struct import *im, const struct import_rec *r, struct slot *s,
		   unsigned tries)
{
	enum mt_err err = s->res.err;
	char detail[sizeof(s->res.detail) + 32];
	snprintf(detail, sizeof(detail), "%s", s->res.detail);
	if (transient(err)) {
		size_t n = strlen(detail);
		snprintf(detail + n, sizeof(detail) - n, "%stried %u time%s", n ? "; " : "",
			 tries, tries > 1 ? "s" : "");
	}
	count_result(im, r, err, s->res.status, detail);
	s->done = true;
}

/* After a try: final, or left for the next try. */
static void settle(struct import *im, const struct import_rec *r, struct slot *s,
		   unsigned attempt)
{
	enum mt_err err = s->res.err;
	if (transient(err) && attempt < IMPORT_RETRIES && !atomic_load(&im->give_up))
		return;
	if (err == MT_E_REDIS)
		atomic_store(&im->give_up, (int)err);
	finish(im, r, s, attempt + 1);
}

/* Verifies and stores one job's messages, the writes in one
 * webhook_commit (one Redis round trip), trying again what may pass. */
static void run_job(struct import *im, struct import_job *job, struct slot *slots)
{
	for (size_t i = 0; i < job->n; i++)
		slots[i].done = false;
	for (unsigned attempt = 0;; attempt++) {
		struct webhook_pending *batch[WEBHOOK_COMMIT_MAX];
		size_t idx[WEBHOOK_COMMIT_MAX], nb = 0, left = 0;
		int gave_up = atomic_load(&im->give_up);
		for (size_t i = 0; i < job->n; i++) {
			struct import_rec *r = &job->r[i];
			struct slot *s = &slots[i];
			if (s->done)
				continue;
			if (gave_up && attempt > 0) { /* tried already: its last result */
				finish(im, r, s, attempt);
				continue;
			}
			if (r->err || gave_up) {
				enum mt_err err = r->err ? r->err : (enum mt_err)gave_up;
				count_result(im, r, err, NULL, r->err ? NULL : "not tried: the import stopped");
				s->done = true;
				continue;
			}
			if (begin(im, r, &s->res, &s->p) == WEBHOOK_WRITE) {
				batch[nb] = &s->p;
				idx[nb++] = i;
			} else {
				settle(im, r, s, attempt);
			}
		}
		webhook_commit(&im->w, batch, nb);
		for (size_t k = 0; k < nb; k++)
			settle(im, &job->r[idx[k]], &slots[idx[k]], attempt);
		for (size_t i = 0; i < job->n; i++)
			left += !slots[i].done;
		if (!left)
			return;
		usleep((useconds_t)(IMPORT_RETRY_WAIT_MS << attempt) * 1000u);
	}
}

static void job_free(struct import_job *job)
{
	for (size_t i = 0; job && i < job->n; i++)
		free(job->r[i].body);
	free(job);
}

static void *verifier_main(void *arg)
{
	struct import *im = arg;
	struct slot *slots = calloc(WEBHOOK_COMMIT_MAX, sizeof(*slots));
	for (;;) {
		pthread_mutex_lock(&im->lock);
		while (!im->head && !im->eof)
			pthread_cond_wait(&im->work, &im->lock);
		struct import_job *job = im->head;
		if (job) {
			im->head = job->next;
			if (!im->head)
				im->tail = NULL;
			im->queued--;
			im->queued_bytes -= job->bytes;
			pthread_cond_signal(&im->room);
		}
		pthread_mutex_unlock(&im->lock);
		if (!job)
			break;
		if (slots) {
			run_job(im, job, slots);
		} else {
			for (size_t i = 0; i < job->n; i++)
				count_result(im, &job->r[i], MT_E_NOMEM, NULL, NULL);
		}
		job_free(job);
	}
	free(slots);
	return NULL;
}

/* --- reading ----------------------------------------------------------- */

struct reader {
	struct import *im;
	size_t file;
	struct importread rd;
	struct import_job *job; /* being filled */
	bool nomem;             /* a message could not be kept */
};

/* Hands the job being filled to the verifiers, waiting for room. */
static void push_job(struct reader *rd)
{
	struct import *im = rd->im;
	struct import_job *job = rd->job;
	rd->job = NULL;
	if (!job || job->n == 0) {
		free(job);
		return;
	}
	pthread_mutex_lock(&im->lock);
	while (im->queued >= IMPORT_QUEUE_JOBS ||
	       (im->queued && im->queued_bytes + job->bytes > IMPORT_QUEUE_BYTES_MAX))
		pthread_cond_wait(&im->room, &im->lock);
	if (im->tail)
		im->tail->next = job;
	else
		im->head = job;
	im->tail = job;
	im->queued++;
	im->queued_bytes += job->bytes;
	pthread_cond_signal(&im->work);
	pthread_mutex_unlock(&im->lock);
}

static bool on_message(void *ctx, const char *msg, size_t len, unsigned long line,
		       enum mt_err err)
{
	struct reader *rd = ctx;
	if (!rd->job) {
		rd->job = calloc(1, sizeof(*rd->job));
		if (!rd->job) {
			rd->nomem = true;
			return false;
		}
	}
	struct import_rec *r = &rd->job->r[rd->job->n];
	*r = (struct import_rec){.file = rd->file, .err = err,
				 .line = rd->rd.shape == IMPORTREAD_NDJSON ? line : 0};
	if (err == MT_E_OK) {
		r->body = malloc(len + 1);
		if (!r->body) {
			rd->nomem = true;
			return false;
		}
		memcpy(r->body, msg, len);
		r->body[len] = '\0';
		r->len = len;
	}
	rd->job->n++;
	rd->job->bytes += len;
	if (rd->job->n == WEBHOOK_COMMIT_MAX || rd->job->bytes >= WEBHOOK_COMMIT_BYTES_MAX)
		push_job(rd);
	return !atomic_load(&rd->im->give_up);
}

/* zlib's message without the "<fd:N>: " it starts with (gzdopen). */
static const char *without_fd(const char *msg)
{
	if (msg && strncmp(msg, "<fd:", 4) == 0) {
		const char *p = strstr(msg, ">: ");
		if (p)
			return p + 3;
	}
	return msg ? msg : "error";
}

/* Reads one file (gzip or not: zlib reads a plain file as it is) into
 * jobs. */
static void read_file(struct reader *rd, uint64_t bytes_before)
{
	struct import *im = rd->im;
	const struct import_file *f = &im->files[rd->file];
	char why[160];
	int fd = f->is_stdin ? dup(STDIN_FILENO) : open(f->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, sizeof(why), "cannot open: %s", strerror(errno));
		count_unreadable(im, rd->file, why);
		return;
	}
	gzFile gz = gzdopen(fd, "rb");
	char *chunk = malloc(IMPORT_READ_CHUNK);
	if (!gz || !chunk) {
		if (gz)
			gzclose_r(gz);
		else
			close(fd);
		free(chunk);
		count_unreadable(im, rd->file, "out of memory");
		return;
	}
	gzbuffer(gz, IMPORT_READ_CHUNK);
	importread_init(&rd->rd, im->cfg.max_body);
	bool ok = true;
	for (;;) {
		int n = gzread(gz, chunk, IMPORT_READ_CHUNK);
		int zerr = Z_OK;
		const char *msg = n <= 0 ? gzerror(gz, &zerr) : NULL;
		/* A stream cut short ends with no data and Z_BUF_ERROR: its last
		 * message is not handed over (it would be cut too). */
		if (n < 0 || (n == 0 && zerr != Z_OK)) {
			snprintf(why, sizeof(why), "%s: %s", zerr == Z_ERRNO ? "read" : "gzip",
				 zerr == Z_ERRNO ? strerror(errno) : without_fd(msg));
			ok = false;
			break;
		}
		if (n == 0)
			break;
		bool more = importread_feed(&rd->rd, chunk, (size_t)n, on_message, rd);
		z_off_t at = gzoffset(gz);
		if (at > 0 && (uint64_t)at <= f->size)
			atomic_store(&im->bytes_done, bytes_before + (uint64_t)at);
		if (rd->rd.nomem || rd->nomem) {
			snprintf(why, sizeof(why), "out of memory");
			ok = false;
			break;
		}
		if (!more || !importread_wants_more(&rd->rd))
			break;
	}
	if (ok && !importread_end(&rd->rd, on_message, rd) && rd->nomem) {
		snprintf(why, sizeof(why), "out of memory");
		ok = false;
	}
	importread_free(&rd->rd);
	int zc = gzclose_r(gz);
	if (ok && zc == Z_BUF_ERROR) {
		snprintf(why, sizeof(why), "gzip: unexpected end of file");
		ok = false;
	}
	free(chunk);
	if (!ok)
		count_unreadable(im, rd->file, why);
	atomic_store(&im->bytes_done, bytes_before + f->size);
}

/* --- the files ---------------------------------------------------------- */

static bool add_file(struct import *im, const char *path, const struct stat *st,
		     bool is_stdin)
{
	if (im->nfiles == im->capfiles) {
		size_t cap = im->capfiles ? im->capfiles * 2 : 64;
		struct import_file *nf = realloc(im->files, cap * sizeof(*nf));
		if (!nf)
			return false;
		im->files = nf;
		im->capfiles = cap;
	}
	char *p = strdup(path);
	if (!p)
		return false;
	bool regular = st && S_ISREG(st->st_mode);
	im->files[im->nfiles++] = (struct import_file){
		.path = p,
		.size = regular ? (uint64_t)st->st_size : 0,
		.mtime_ms = st ? (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000 : 0,
		.is_stdin = is_stdin,
	};
	if (regular)
		im->bytes_total += (uint64_t)st->st_size;
	else
		im->total_known = false;
	return true;
}

static int skip_hidden(const struct dirent *de)
{
	return de->d_name[0] != '.';
}

/* Byte order, whatever the locale. */
static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/* Adds the regular files under dir (and symbolic links to regular files;
 * links to directories are not followed), in name order, depth first. */
static bool walk(struct import *im, const char *dir, int depth, char *err, size_t errsz)
{
	struct dirent **names;
	int n = scandir(dir, &names, skip_hidden, by_name);
	if (n < 0) {
		snprintf(err, errsz, "cannot read directory %s: %s", dir, strerror(errno));
		return false;
	}
	bool ok = true;
	for (int i = 0; i < n; i++) {
		char path[4096];
		struct stat st;
		if (ok && (size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name) >=
			  sizeof(path)) {
			snprintf(err, errsz, "path too long under %s", dir);
			ok = false;
		}
		if (ok && lstat(path, &st) != 0) {
			snprintf(err, errsz, "cannot read %.512s: %s", path, strerror(errno));
			ok = false;
		}
		if (ok && S_ISLNK(st.st_mode) && stat(path, &st) != 0)
			st.st_mode = 0; /* a dangling link: left out */
		if (ok && S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) {
			struct stat lst;
			if (lstat(path, &lst) == 0 && S_ISDIR(lst.st_mode)) {
				if (depth >= IMPORT_DEPTH_MAX) {
					snprintf(err, errsz, "%.512s: more than %d directory levels",
						 path, IMPORT_DEPTH_MAX);
					ok = false;
				} else {
					ok = walk(im, path, depth + 1, err, errsz);
				}
			}
		} else if (ok && S_ISREG(st.st_mode) && !add_file(im, path, &st, false)) {
			snprintf(err, errsz, "out of memory");
			ok = false;
		}
		free(names[i]);
	}
	free(names);
	return ok;
}

static bool add_operand(struct import *im, const char *path, char *err, size_t errsz)
{
	struct stat st;
	if (strcmp(path, "-") == 0) {
		if (!add_file(im, "-", NULL, true)) {
			snprintf(err, errsz, "out of memory");
			return false;
		}
		return true;
	}
	if (stat(path, &st) != 0) {
		snprintf(err, errsz, "%s: %s", path, strerror(errno));
		return false;
	}
	if (S_ISDIR(st.st_mode))
		return walk(im, path, 0, err, errsz);
	if (!add_file(im, path, &st, false)) {
		snprintf(err, errsz, "out of memory");
		return false;
	}
	return true;
}

/* --- options -------------------------------------------------------------- */

static void print_usage(FILE *out)
{
	fprintf(out,
		"Usage: mailtrail import [OPTION]... FILE|DIR...\n"
		"Backfills captured SNS deliveries: one JSON document per file, or NDJSON\n"
		"(one per line), gzip-compressed or not.  A DIR is walked recursively\n"
		"(regular files, in name order; names beginning with '.' left out); '-' is\n"
		"standard input.  Each message is verified exactly as POST /sns verifies it\n"
		"and stored with the same deduplication.\n\n"
		"  --trusted-ses                  the files hold SES event JSON without an SNS\n"
		"                                 envelope (e.g. Kinesis Firehose exports):\n"
		"                                 NOTHING is verified, the file is trusted\n"
		"  --trusted-ses-topic NAME       topic the trusted events are filed under\n"
		"                                 (default: %s)\n"
		"  --progress-every SECONDS       without a terminal, a progress line this\n"
		"                                 often (default: %d)\n"
		"  --help                         show this help\n\n"
		"The server's options are read as the server reads them (flags and MAILTRAIL_*\n"
		"variables; see mailtrail --help): --redis, --redis-prefix, --topic or\n"
		"--any-topic, --cert-cache-dir, --cert-host-pattern, --ca-file, --max-age,\n"
		"--max-body, --retention-days, --keep-headers, ...  No listener is started;\n"
		"subscription confirmations are noted, never visited.\n\n"
		"Exit status: 0 all stored, duplicate or noted; 1 something was rejected,\n"
		"failed or could not be read; 2 usage or configuration error.\n",
		IMPORT_TRUSTED_TOPIC, IMPORT_PROGRESS_EVERY_S);
}

struct import_args {
	char **cargv; /* argv for config_parse; owned array */
	int cargc;
	char **paths; /* owned array */
	size_t npaths;
	bool help;
	bool topic_flag; /* --topic or --any-topic given */
	bool version;    /* --version: config_parse prints it */
};

/* The value of an import option: after '=' or the next argument. */
static const char *option_value(int argc, char **argv, int *i, const char *eq)
{
	if (eq)
		return eq + 1;
	if (*i + 1 < argc)
		return argv[++*i];
	return NULL;
}

static bool parse_args(struct import *im, int argc, char **argv, struct import_args *a,
		       char *err, size_t errsz)
{
	a->cargv = calloc((size_t)argc + 2, sizeof(char *));
	a->paths = calloc((size_t)argc, sizeof(char *));
	if (!a->cargv || !a->paths) {
		snprintf(err, errsz, "mailtrail import: out of memory");
		return false;
	}
	a->cargv[a->cargc++] = argv[0];
	bool operands_only = false;
	for (int i = 1; i < argc; i++) {
		char *s = argv[i];
		if (operands_only || strncmp(s, "--", 2) != 0) {
			if (!operands_only && s[0] == '-' && s[1] != '\0') {
				snprintf(err, errsz, "mailtrail import: unknown option '%s' (see mailtrail import --help)", s);
				return false;
			}
			a->paths[a->npaths++] = s;
			continue;
		}
		if (s[2] == '\0') {
			operands_only = true;
			continue;
		}
		const char *name = s + 2, *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
#define IS(opt) (len == strlen(opt) && memcmp(name, opt, len) == 0)
		if (IS("help")) {
			a->help = true;
		} else if (IS("trusted-ses")) {
			im->trusted = true;
		} else if (IS("trusted-ses-topic")) {
			const char *v = option_value(argc, argv, &i, eq);
			if (!v || !*v || strlen(v) > CONFIG_TOPIC_ARN_MAX) {
				snprintf(err, errsz, "mailtrail import: --trusted-ses-topic needs a name of 1 to %d characters",
					 CONFIG_TOPIC_ARN_MAX);
				return false;
			}
			im->trusted_topic = v;
		} else if (IS("progress-every")) {
			const char *v = option_value(argc, argv, &i, eq);
			char *end = NULL;
			long n = v ? strtol(v, &end, 10) : 0;
			if (!v || end == v || *end || n < 1 || n > IMPORT_PROGRESS_EVERY_MAX) {
				snprintf(err, errsz, "mailtrail import: --progress-every needs 1 to %d seconds",
					 IMPORT_PROGRESS_EVERY_MAX);
				return false;
			}
			im->progress_every = (unsigned)n;
		} else {
			bool takes = false;
			if (!config_option_known(name, len, &takes)) {
				snprintf(err, errsz, "mailtrail import: unknown option '--%.*s' (see mailtrail import --help)",
					 (int)len, name);
				return false;
			}
			if (IS("topic") || IS("any-topic"))
				a->topic_flag = true;
			a->version |= IS("version");
			a->cargv[a->cargc++] = s;
			if (takes && !eq && i + 1 < argc)
				a->cargv[a->cargc++] = argv[++i];
		}
#undef IS
	}
	return true;
}

/* --- summary ---------------------------------------------------------------- */

static int cmp_problem(const void *a, const void *b)
{
	const struct import_problem *x = a, *y = b;
	return problem_before(x, y) ? -1 : problem_before(y, x) ? 1 : 0;
}

static void print_summary(struct import *im, uint64_t files_read, int64_t ms)
{
	uint64_t msgs = im->stored + im->duplicate + im->noted + im->rejected + im->failed;
	double s = (double)ms / 1000.0;
	printf("import: %" PRIu64 " messages from %" PRIu64 " of %zu files in %.2f s (%.0f messages/s)\n",
	       msgs, files_read, im->nfiles, s, s > 0 ? (double)msgs / s : 0.0);
	printf("stored: %" PRIu64 "\n", im->stored);
	printf("duplicate: %" PRIu64 "\n", im->duplicate);
	printf("noted: %" PRIu64 " (subscription confirmations: never visited)\n", im->noted);
	for (int pass = 0; pass < 2; pass++) {
		printf("%s: %" PRIu64 "\n", pass ? "failed" : "rejected",
		       pass ? im->failed : im->rejected);
		for (int e = 1; e < MT_E__COUNT; e++)
			if (im->by_err[e] && (mt_err_http_status((enum mt_err)e) >= 500) == (pass == 1))
				printf("  %s: %" PRIu64 "\n", mt_err_str((enum mt_err)e), im->by_err[e]);
	}
	printf("unreadable files: %" PRIu64 "\n", im->unreadable);
	if (files_read < im->nfiles)
		printf("not read: %zu files (the import stopped: redis unavailable), from %s on\n",
		       im->nfiles - (size_t)files_read, im->files[files_read].path);
	if (im->nshown == 0)
		return;
	qsort(im->shown, im->nshown, sizeof(im->shown[0]), cmp_problem);
	printf("first problems (by file and line, at most %d):\n", IMPORT_PROBLEMS_SHOWN);
	for (size_t i = 0; i < im->nshown; i++) {
		const struct import_problem *p = &im->shown[i];
		char at[32] = "";
		if (p->line)
			snprintf(at, sizeof(at), ":%lu", p->line);
		if (p->unreadable)
			printf("  %s: unreadable: %s\n", im->files[p->file].path, p->detail);
		else
			printf("  %s%s: %s: %s%s%s%s\n", im->files[p->file].path, at,
			       p->failed ? "failed" : "rejected", mt_err_str(p->err),
			       p->detail[0] ? " (" : "", p->detail, p->detail[0] ? ")" : "");
	}
}

/* --- the command ---------------------------------------------------------- */

/* Checks what the server checks at start.  False: a configuration error
 * (err says which). */
static bool check_config(const struct config *cfg, char *err, size_t errsz)
{
	if (cfg->cert_cache_dir) {
		struct stat st;
		if (stat(cfg->cert_cache_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
			snprintf(err, errsz, "mailtrail: invalid value for --cert-cache-dir: '%s' is not a directory",
				 cfg->cert_cache_dir);
			return false;
		}
	}
	char why[512];
	if (!rcluster_tls_check(&cfg->redis, why, sizeof(why))) {
		snprintf(err, errsz, "mailtrail: %s", why);
		return false;
	}
	return true;
}

/* Reads every file, then waits for the verifiers.  Returns the files read. */
static uint64_t read_all(struct import *im)
{
	struct reader rd = {.im = im};
	uint64_t before = 0, done = 0;
	for (size_t i = 0; i < im->nfiles && !atomic_load(&im->give_up); i++) {
		rd.file = i;
		rd.nomem = false;
		read_file(&rd, before);
		/* Cut short by the stop: to be imported again from this file. */
		if (atomic_load(&im->give_up))
			break;
		before += im->files[i].size;
		atomic_store(&im->files_done, ++done);
	}
	push_job(&rd);
	return done;
}

int import_main(int argc, char **argv, config_getenv_fn env)
{
	struct import *im = calloc(1, sizeof(*im));
	struct import_args a = {0};
	char err[768];
	int status = 2;
	bool cfg_parsed = false, threads = false, fetch_init = false;
	pthread_t verifiers[IMPORT_VERIFIERS], progress;
	unsigned nverifiers = 0;
	struct certcache *certs = NULL;
	struct store *store = NULL;

	if (!im) {
		fprintf(stderr, "mailtrail import: out of memory\n");
		return 2;
	}
	im->trusted_topic = IMPORT_TRUSTED_TOPIC;
	im->progress_every = IMPORT_PROGRESS_EVERY_S;
	im->total_known = true;
	if (!parse_args(im, argc, argv, &a, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		goto out;
	}
	if (a.help) {
		print_usage(stdout);
		status = 0;
		goto out;
	}
	if (a.npaths == 0 && !a.version) {
		fprintf(stderr, "mailtrail import: no FILE or DIR given (see mailtrail import --help)\n");
		goto out;
	}
	/* The topic rules do not apply to trusted events: no --topic needed. */
	if (im->trusted && !a.topic_flag)
		a.cargv[a.cargc++] = (char *)"--any-topic";
	cfg_parsed = true;
	switch (config_parse(&im->cfg, a.cargc, a.cargv, env, stdout, err, sizeof(err))) {
	case CONFIG_EXIT:
		status = 0;
		goto out;
	case CONFIG_ERROR:
		fprintf(stderr, "%s\n", err);
		goto out;
	case CONFIG_OK:
		break;
	}
	if (!check_config(&im->cfg, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		goto out;
	}
	for (size_t i = 0; i < a.npaths; i++) {
		if (!add_operand(im, a.paths[i], err, sizeof(err))) {
			fprintf(stderr, "mailtrail import: %s\n", err);
			goto out;
		}
	}
	/* A captured confirmation is history: never visited again. */
	im->cfg.auto_confirm = false;

	fetch_global_init();
	fetch_init = true;
	struct fetch_opts fo = {
		.ca_file = im->cfg.ca_file,
		.max_bytes = VERIFY_CERT_PEM_MAX,
		.connect_timeout_ms = FETCH_CONNECT_TIMEOUT_MS,
		.timeout_ms = FETCH_TIMEOUT_MS,
	};
	certs = certcache_new(im->cfg.cert_cache_dir, &fo);
	store = store_new(&im->cfg.redis, im->cfg.redis_prefix, im->cfg.retention_days);
	if (store) {
		store_set_message_index(store, im->cfg.message_index);
		store_set_policy(store, &im->cfg.policy);
	}
	if (!certs || !store) {
		fprintf(stderr, "mailtrail import: out of memory\n");
		goto out;
	}
	im->w = (struct webhook){.cfg = &im->cfg, .certs = certs, .store = store, .fetch = fo};

	pthread_mutex_init(&im->lock, NULL);
	pthread_cond_init(&im->work, NULL);
	pthread_cond_init(&im->room, NULL);
	pthread_mutex_init(&im->plock, NULL);
	pthread_cond_init(&im->pwake, NULL);
	threads = true;
	int64_t start = mt_time_now_ms();
	importprogress_init(&im->progress, stderr, isatty(STDERR_FILENO) == 1,
			    im->progress_every, start);
	bool has_progress = pthread_create(&progress, NULL, progress_main, im) == 0;
	for (; nverifiers < IMPORT_VERIFIERS; nverifiers++)
		if (pthread_create(&verifiers[nverifiers], NULL, verifier_main, im) != 0)
			break;
	if (nverifiers == 0) {
		fprintf(stderr, "mailtrail import: cannot start the verifying threads\n");
		status = 1;
	}
	uint64_t files_read = nverifiers ? read_all(im) : 0;
	pthread_mutex_lock(&im->lock);
	im->eof = true;
	pthread_cond_broadcast(&im->work);
	pthread_mutex_unlock(&im->lock);
	for (unsigned i = 0; i < nverifiers; i++)
		pthread_join(verifiers[i], NULL);
	if (has_progress) {
		pthread_mutex_lock(&im->plock);
		im->pstop = true;
		pthread_cond_signal(&im->pwake);
		pthread_mutex_unlock(&im->plock);
		pthread_join(progress, NULL);
	}
	int64_t end = mt_time_now_ms();
	struct importprogress_counts c;
	progress_counts(im, &c);
	importprogress_end(&im->progress, &c, end);
	if (nverifiers) {
		print_summary(im, files_read, end - start);
		status = im->rejected || im->failed || im->unreadable || files_read < im->nfiles
			 ? 1 : 0;
	}
	fflush(stdout);
out:
	if (threads) {
		pthread_cond_destroy(&im->pwake);
		pthread_mutex_destroy(&im->plock);
		pthread_cond_destroy(&im->room);
		pthread_cond_destroy(&im->work);
		pthread_mutex_destroy(&im->lock);
	}
	store_free(store);
	certcache_free(certs);
	if (fetch_init)
		fetch_global_cleanup();
	if (cfg_parsed)
		config_free(&im->cfg);
	for (size_t i = 0; i < im->nfiles; i++)
		free(im->files[i].path);
	free(im->files);
	free(a.cargv);
	free(a.paths);
	free(im);
	return status;
}
