#include "url.h"
#include "testutil.h"

#define DEFAULT_RE "^sns\\.[a-z0-9-]+\\.amazonaws\\.com(\\.cn)?$"

static regex_t re;

static void check(const char *url, enum url_kind kind, bool ok)
{
	enum mt_err err = url_check(url, strlen(url), &re, kind);
	CHECK((err == MT_E_OK) == ok, "%s (kind %d): got %s", url, kind, mt_err_str(err));
	if (!ok)
		CHECK(err == (kind == URL_SIGNING_CERT ? MT_E_CERT_URL : MT_E_SUBSCRIBE_URL),
		      "%s: error %s", url, mt_err_str(err));
}

int main(void)
{
	if (regcomp(&re, DEFAULT_RE, REG_EXTENDED | REG_NOSUB) != 0)
		return 2;
	const char *good_cert[] = {
		"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem",
		"https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
		"https://sns.us-west-2.amazonaws.com/a/b/c.pem?x=1",
	};
	for (size_t i = 0; i < sizeof(good_cert) / sizeof(*good_cert); i++)
		check(good_cert[i], URL_SIGNING_CERT, true);

	const char *bad_cert[] = {
		"http://sns.us-east-1.amazonaws.com/x.pem",
		"HTTPS://sns.us-east-1.amazonaws.com/x.pem",
		"https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
		"https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
		"https://user:pw@sns.us-east-1.amazonaws.com/x.pem",
		"https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
		"https://sns.us-east-1.amazonaws.com/x?y=.pem",
		"https://sns.us-east-1.amazonaws.com/x.pem#frag",
		"https://sns.us-east-1.amazonaws.com/x.PEM",
		"https://sns.us-east-1.amazonaws.com",
		"https://sns.us-east-1.amazonaws.com:443/x.pem", /* authority as written */
		"https://sns.us-east-1.amazonaws.com\\@evil.example/x.pem",
		"https://sns.us-east-1.amazonaws.com /x.pem",
		"https://sns.us-east-1.amazonaws%2ecom/x.pem",
		"https://SNS.us-east-1.amazonaws.com/x.pem",
		"https://xsns.us-east-1.amazonaws.com/x.pem",
		"https:///x.pem",
		"",
		"sns.us-east-1.amazonaws.com/x.pem",
	};
	for (size_t i = 0; i < sizeof(bad_cert) / sizeof(*bad_cert); i++)
		check(bad_cert[i], URL_SIGNING_CERT, false);

	check("https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=a&Token=b",
	      URL_SUBSCRIBE, true);
	check("https://sns.us-west-2.amazonaws.com.evil.example/?Action=ConfirmSubscription",
	      URL_SUBSCRIBE, false);
	check("http://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription", URL_SUBSCRIBE, false);
	check("https://sns.us-west-2.amazonaws.com@127.0.0.1/?Action=ConfirmSubscription",
	      URL_SUBSCRIBE, false);

	/* User info is refused whatever the pattern: with a pattern missing
	 * its end anchor, only that rule stands between us and evil.example. */
	regex_t loose;
	regcomp(&loose, "^sns\\.[a-z0-9-]+\\.amazonaws\\.com", REG_EXTENDED | REG_NOSUB);
	const char *ui = "https://sns.us-east-1.amazonaws.com@evil.example/x.pem";
	CHECK(url_check(ui, strlen(ui), &loose, URL_SIGNING_CERT) == MT_E_CERT_URL, "user info, loose");
	const char *pct = "https://sns.us-east-1.amazonaws.com%40evil.example/x.pem";
	CHECK(url_check(pct, strlen(pct), &loose, URL_SIGNING_CERT) == MT_E_CERT_URL, "%%40, loose");
	regfree(&loose);

	/* An embedded NUL must not hide the rest of the URL. */
	const char nul[] = "https://sns.us-east-1.amazonaws.com/x.pem\0.evil";
	CHECK(url_check(nul, sizeof(nul) - 1, &re, URL_SIGNING_CERT) != MT_E_OK, "NUL");

	/* A port, when the pattern allows it. */
	regex_t re_port;
	regcomp(&re_port, "^127\\.0\\.0\\.1:[0-9]+$", REG_EXTENDED | REG_NOSUB);
	const char *lp = "https://127.0.0.1:8443/SimpleNotificationService-test.pem";
	CHECK(url_check(lp, strlen(lp), &re_port, URL_SIGNING_CERT) == MT_E_OK, "port");
	const char *lp2 = "https://127.0.0.1/x.pem";
	CHECK(url_check(lp2, strlen(lp2), &re_port, URL_SIGNING_CERT) != MT_E_OK, "no port");
	regfree(&re_port);

	char out[URL_FILE_NAME_MAX], auth[256];
	CHECK(url_file_name(good_cert[0], out) &&
		      strcmp(out, "SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem") == 0,
	      "file name %s", out);
	CHECK(url_file_name(good_cert[2], out) && strcmp(out, "c.pem") == 0, "file name %s", out);
	CHECK(!url_file_name("https://sns.us-east-1.amazonaws.com/", out), "empty name");
	CHECK(!url_file_name("https://sns.us-east-1.amazonaws.com/..pem", out), "dot name");
	CHECK(url_authority(lp, auth, sizeof(auth)) && strcmp(auth, "127.0.0.1:8443") == 0,
	      "authority %s", auth);
	regfree(&re);
	return test_report("url");
}
