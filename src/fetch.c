#include "fetch.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "url.h"

void fetch_global_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

void fetch_global_cleanup(void)
{
	curl_global_cleanup();
}

struct sink {
	struct buf body;
	size_t max;
	bool overflow;
};

static size_t on_data(char *p, size_t size, size_t n, void *userdata)
{
	struct sink *s = userdata;
	switch (buf_append(&s->body, p, size * n, s->max)) {
	case BUF_OK:
		return size * n;
	case BUF_TOO_LARGE:
		s->overflow = true;
		return 0; /* aborts the transfer */
	case BUF_NOMEM:
		break;
	}
	return 0;
}

/* Does curl's reading of url name the same authority as ours? */
static bool same_authority(CURLU *u, const char *url)
{
	char ours[256], theirs[300];
	char *host = NULL, *port = NULL, *user = NULL;
	bool ok = false;

	if (!url_authority(url, ours, sizeof(ours)))
		return false;
	if (curl_url_get(u, CURLUPART_USER, &user, 0) != CURLUE_NO_USER)
		goto out;
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		goto out;
	if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK)
		snprintf(theirs, sizeof(theirs), "%s:%s", host, port);
	else
		snprintf(theirs, sizeof(theirs), "%s", host);
	ok = strcasecmp(ours, theirs) == 0;
out:
	curl_free(user);
	curl_free(host);
	curl_free(port);
	return ok;
}

enum mt_err fetch_get(const char *url, const struct fetch_opts *o,
		      enum mt_err fail_err, char **body, size_t *len,
		      long *status, char *errbuf, size_t errsz)
{
	char curl_err[CURL_ERROR_SIZE] = "";
	struct sink sink = {.max = o->max_bytes};
	enum mt_err err = fail_err;
	CURL *h = NULL;
	CURLU *u = curl_url();

	*body = NULL;
	*len = 0;
	*status = 0;
	snprintf(errbuf, errsz, "unknown error");
	if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    !same_authority(u, url)) {
		snprintf(errbuf, errsz, "URL rejected by curl's parser");
		goto out;
	}
	h = curl_easy_init();
	if (!h) {
		err = MT_E_NOMEM;
		goto out;
	}
	curl_easy_setopt(h, CURLOPT_CURLU, u);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, o->timeout_ms);
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_bytes);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "mailtrail");
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
	if (o->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_file);

	CURLcode rc = curl_easy_perform(h);
	if (sink.overflow) {
		snprintf(errbuf, errsz, "response larger than %zu bytes", o->max_bytes);
		goto out;
	}
	if (rc != CURLE_OK) {
		snprintf(errbuf, errsz, "%s", curl_err[0] ? curl_err : curl_easy_strerror(rc));
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	*len = sink.body.len;
	*body = buf_take(&sink.body);
	if (!*body) {
		err = MT_E_NOMEM;
		goto out;
	}
	err = MT_E_OK;
	errbuf[0] = '\0';
out:
	buf_free(&sink.body);
	curl_easy_cleanup(h);
	curl_url_cleanup(u);
	return err;
}
