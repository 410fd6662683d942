/* clientaddr.h - which connections count as one client for the
 * per-address connection limit (http.h, --max-connections-per-ip). */
#ifndef CLIENTADDR_H
#define CLIENTADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

/* The leading bits of an IPv6 address that name one client: a /64, the
 * smallest network a provider hands a customer (a host is given a whole
 * /64 and picks any of its 2^64 addresses at will), so counting whole
 * addresses would give one host an unlimited number of "clients". */
#define CLIENTADDR_IPV6_PREFIX_BYTES 8

/* Whether a and b are the same client: the same IPv4 address, or IPv6
 * addresses in the same /64.  Other families are never the same. */
static inline bool clientaddr_same(const struct sockaddr_storage *a,
				   const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			      &((const struct sockaddr_in6 *)b)->sin6_addr,
			      CLIENTADDR_IPV6_PREFIX_BYTES) == 0;
	return false;
}

#endif
