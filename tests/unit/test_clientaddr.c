/* Which connections count as one client for --max-connections-per-ip:
 * an IPv4 address, or an IPv6 /64 (a host picks any address of its /64). */
#include <arpa/inet.h>

#include "clientaddr.h"
#include "testutil.h"

static struct sockaddr_storage addr(const char *text, unsigned short port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
	} else if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
	}
	return ss;
}

static void check(const char *a, const char *b, bool same)
{
	struct sockaddr_storage x = addr(a, 1000), y = addr(b, 2000);
	CHECK(clientaddr_same(&x, &y) == same, "%s vs %s: want %s", a, b,
	      same ? "same client" : "different clients");
	CHECK(clientaddr_same(&y, &x) == same, "%s vs %s (swapped)", b, a);
}

int main(void)
{
	check("192.0.2.1", "192.0.2.1", true);
	check("192.0.2.1", "192.0.2.2", false);
	check("127.0.0.1", "127.0.0.2", false);
	/* One /64: the same client, whatever the interface identifier. */
	check("2001:db8:1:2::1", "2001:db8:1:2::1", true);
	check("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true);
	check("2001:db8:1:2:1234:5678:9abc:def0", "2001:db8:1:2::", true);
	/* The next /64, or another prefix: another client. */
	check("2001:db8:1:2::1", "2001:db8:1:3::1", false);
	check("2001:db8:1:2::1", "2001:db9:1:2::1", false);
	check("2001:db8:1:2::1", "2001:db8:1:2:8000::1", true);
	check("8001:db8:1:2::1", "2001:db8:1:2::1", false);
	/* Families never mix, not even a mapped IPv4 address. */
	check("192.0.2.1", "::ffff:192.0.2.1", false);
	struct sockaddr_storage unix_a, unix_b;
	memset(&unix_a, 0, sizeof(unix_a));
	memset(&unix_b, 0, sizeof(unix_b));
	unix_a.ss_family = unix_b.ss_family = AF_UNIX;
	CHECK(!clientaddr_same(&unix_a, &unix_b), "other families are never the same");
	return test_report("clientaddr");
}
