/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz harness for the check of a MUNGE credential's payload
 * (stager/site/auth.h, qauth_payload_check). The input is the payload. Checks
 * the verdict against a second, plain reading of the layout: a payload in
 * the layout passes when given its own addresses, and one that is not
 * fails as malformed whatever the addresses.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

/* The layout, read as docs/PROTOCOL.md states it. */
static bool layout(const uint8_t *p, size_t n, const uint8_t **c, size_t *cl, const uint8_t **s,
		   size_t *sl)
{
	size_t pos = 12;

	if (n < 12 + 2 || memcmp(p, "QUAI-MUNGE-1", 12) != 0)
		return false;
	*cl = (size_t)p[pos] | (size_t)p[pos + 1] << 8;
	pos += 2;
	if (n - pos < *cl + 2)
		return false;
	*c = p + pos;
	pos += *cl;
	*sl = (size_t)p[pos] | (size_t)p[pos + 1] << 8;
	pos += 2;
	if (n - pos < *sl)
		return false;
	*s = p + pos;
	pos += *sl;
	return n - pos == 16;
}

/* Whether the server address s is an IPv4 or IPv6 wildcard (as auth.c
 * reads one). */
static bool wildcard(const uint8_t *s, size_t sl)
{
	static const uint8_t mapped_any[16] = {[10] = 0xff, [11] = 0xff};

	if (sl == sizeof(struct sockaddr_in)) {
		struct sockaddr_in a;

		memcpy(&a, s, sizeof(a));
		return a.sin_family == AF_INET && a.sin_addr.s_addr == 0;
	}
	if (sl == sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 a;

		memcpy(&a, s, sizeof(a));
		return a.sin6_family == AF_INET6 &&
		       (IN6_IS_ADDR_UNSPECIFIED(&a.sin6_addr) ||
			memcmp(a.sin6_addr.s6_addr, mapped_any, 16) == 0);
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t other[4] = {1, 2, 3, 4};
	struct sockaddr_in any = {.sin_family = AF_INET};
	const uint8_t *c = NULL, *s = NULL;
	size_t cl = 0, sl = 0;
	bool ok = layout(data, size, &c, &cl, &s, &sl);
	char err[128];
	int r;

	memset(err, 'x', sizeof(err));
	r = qauth_payload_check(data, size, other, sizeof(other), other, sizeof(other), err,
				sizeof(err));
	CHECK(r == 0 || r == -EACCES);
	if (r)
		CHECK(memchr(err, '\0', sizeof(err)) && err[0]);
	if (!ok) {
		CHECK(r == -EACCES && strncmp(err, "credential malformed", 20) == 0);
		return 0;
	}

	/* Its own addresses always pass, unless the server's own address is a
	 * wildcard: then the name must also be this host's (loopback or an
	 * interface's), and a credential naming the wildcard itself is not. */
	r = qauth_payload_check(data, size, c, cl, s, sl, err, sizeof(err));
	if (wildcard(s, sl)) {
		CHECK(r == 0 ||
		      (r == -EACCES && strcmp(err, "credential made for another server") == 0));
		return 0;
	}
	CHECK(r == 0);
	/* Another client never does. */
	if (cl != sizeof(other) || memcmp(c, other, cl) != 0) {
		r = qauth_payload_check(data, size, other, sizeof(other), s, sl, err, sizeof(err));
		CHECK(r == -EACCES && strcmp(err, "credential made for another connection") == 0);
	}
	/* A wildcard server on the named port passes when the name is an
	 * IPv4 endpoint of this host: always a loopback one; another only
	 * when an interface has it (else "another server"). */
	if (sl == sizeof(any)) {
		struct sockaddr_in named;

		memcpy(&named, s, sizeof(named));
		if (named.sin_family == AF_INET) {
			any.sin_port = named.sin_port;
			r = qauth_payload_check(data, size, c, cl, &any, sizeof(any), err,
						sizeof(err));
			if ((ntohl(named.sin_addr.s_addr) >> 24) == 127)
				CHECK(r == 0);
			else
				CHECK(r == 0 ||
				      (r == -EACCES &&
				       strcmp(err, "credential made for another server") == 0));
		}
	}
	return 0;
}
