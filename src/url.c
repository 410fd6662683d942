#include "url.h"

#include <string.h>

static const char https[] = "https://";

/* Splits an https URL into authority and path (without the query). */
static bool split(const char *url, size_t len, const char **auth,
		  size_t *auth_len, const char **path, size_t *path_len)
{
	size_t hl = sizeof(https) - 1;
	if (len <= hl || strncmp(url, https, hl) != 0)
		return false;
	const char *a = url + hl, *end = url + len, *p = a;
	while (p < end && *p != '/' && *p != '?')
		p++;
	*auth = a;
	*auth_len = (size_t)(p - a);
	const char *q = p;
	while (q < end && *q != '?')
		q++;
	*path = p;
	*path_len = (size_t)(q - p);
	return true;
}

enum mt_err url_check(const char *url, size_t len, const regex_t *host_re,
		      enum url_kind kind)
{
	enum mt_err bad = kind == URL_SIGNING_CERT ? MT_E_CERT_URL
						   : MT_E_SUBSCRIBE_URL;
	const char *auth, *path;
	size_t auth_len, path_len;

	if (!url || len > URL_LEN_MAX || strlen(url) != len)
		return bad;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)url[i];
		if (c <= 0x20 || c >= 0x7f || c == '\\' || c == '#')
			return bad;
	}
	if (!split(url, len, &auth, &auth_len, &path, &path_len))
		return bad;
	if (auth_len == 0 || memchr(auth, '@', auth_len) ||
	    memchr(auth, '%', auth_len))
		return bad;

	char authority[256];
	if (auth_len >= sizeof(authority))
		return bad;
	memcpy(authority, auth, auth_len);
	authority[auth_len] = '\0';
	if (regexec(host_re, authority, 0, NULL, 0) != 0)
		return bad;

	if (kind == URL_SIGNING_CERT) {
		static const char pem[] = ".pem";
		size_t pl = sizeof(pem) - 1;
		if (path_len <= pl || memcmp(path + path_len - pl, pem, pl) != 0)
			return bad;
	}
	return MT_E_OK;
}

bool url_authority(const char *url, char *out, size_t outsz)
{
	const char *auth, *path;
	size_t auth_len, path_len;
	if (!split(url, strlen(url), &auth, &auth_len, &path, &path_len) ||
	    auth_len >= outsz)
		return false;
	memcpy(out, auth, auth_len);
	out[auth_len] = '\0';
	return true;
}

bool url_file_name(const char *url, char out[URL_FILE_NAME_MAX])
{
	const char *auth, *path;
	size_t auth_len, path_len;
	if (!split(url, strlen(url), &auth, &auth_len, &path, &path_len))
		return false;
	const char *name = path + path_len;
	while (name > path && name[-1] != '/')
		name--;
	size_t n = (size_t)(path + path_len - name);
	if (n == 0 || n >= URL_FILE_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	memcpy(out, name, n);
	out[n] = '\0';
	return true;
}
