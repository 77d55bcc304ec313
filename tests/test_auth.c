/* SPDX-License-Identifier: Apache-2.0 */
/* MUNGE authentication (stager/site/auth.h) against a private munged: round
 * trips, other users, every verdict on a bad credential, the binding to a
 * connection, and which munged a client talks to. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it; standalone builds may not */
#endif
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <ifaddrs.h>
#include <limits.h>
#include <munge.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "quai/quai.h"
#include "testutil.h"

static char dir[512];
static char sock[512];
static int munged = -1;

static void setup(void)
{
	char path[PATH_MAX + 64];

	tu_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/no-host.conf", dir);
	cr_assert_eq(setenv("QUAI_CONF", path, 1), 0);
	cr_assert_eq(unsetenv("QUAI_MUNGE_SOCKET"), 0);
	munged = tu_munged_start(dir, sock, sizeof(sock));
}

static void teardown(void)
{
	tu_munged_stop(munged);
	munged = -1;
	tu_rmtree(dir);
}

static void setup_plain(void)
{
	char path[PATH_MAX + 64];

	tu_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/no-host.conf", dir);
	cr_assert_eq(setenv("QUAI_CONF", path, 1), 0);
	cr_assert_eq(unsetenv("QUAI_MUNGE_SOCKET"), 0);
}

static void teardown_plain(void)
{
	tu_rmtree(dir);
}

TestSuite(auth, .init = setup, .fini = teardown, .timeout = 60);
TestSuite(auth_payload, .init = setup_plain, .fini = teardown_plain);
TestSuite(auth_socket, .init = setup_plain, .fini = teardown_plain);

#define NEED_MUNGED() TU_NEED_MUNGED(munged)

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static struct sockaddr_in v4(const char *ip, uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};

	cr_assert_eq(inet_pton(AF_INET, ip, &a.sin_addr), 1);
	return a;
}

static struct sockaddr_in6 v6(const char *ip, uint16_t port)
{
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};

	cr_assert_eq(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
	return a;
}

static struct sockaddr_in client_a, client_b, server_a;

static void addrs(void)
{
	client_a = v4("10.0.0.2", 40000);
	client_b = v4("10.0.0.3", 40000);
	server_a = v4("10.0.0.1", 7447);
}

static char *encode(const void *c, size_t cl, const void *s, size_t sl)
{
	char err[512] = "", *cred = NULL;
	int r = qauth_munge_encode(sock, c, cl, s, sl, &cred, err, sizeof(err));

	cr_assert_eq(r, 0, "encode: %d (%s)", r, err);
	cr_assert_not_null(cred);
	cr_assert_eq(strncmp(cred, "MUNGE:", 6), 0, "%s", cred);
	return cred;
}

static int decode(const char *cred, const void *c, size_t cl, const void *s, size_t sl,
		  struct qauth_identity *id, char *err, size_t err_len)
{
	return qauth_munge_decode(sock, cred, strlen(cred), c, cl, s, sl, id, err, err_len);
}

static void expect_refused(const char *cred, const void *c, size_t cl, const void *s, size_t sl,
			   const char *why)
{
	struct qauth_identity id;
	char err[512] = "";
	int r;

	memset(&id, 0xa5, sizeof(id));
	r = decode(cred, c, cl, s, sl, &id, err, sizeof(err));
	cr_assert_eq(r, -EACCES, "decode: %d (%s), want -EACCES (%s)", r, err, why);
	cr_assert(strstr(err, why), "err '%s' lacks '%s'", err, why);
	/* Nothing of the identity on failure. */
	for (size_t i = 0; i < sizeof(id); i++)
		cr_assert_eq(((unsigned char *)&id)[i], 0xa5);
}

static int has_gid(const struct qauth_identity *id, uint32_t g)
{
	for (unsigned i = 0; i < id->ngids; i++)
		if (id->gids[i] == g)
			return 1;
	return 0;
}

static size_t put_u16(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)(v & 0xff);
	p[1] = (uint8_t)(v >> 8);
	return 2;
}

/* A payload as the client lays it out, with faults to order. */
static size_t payload(uint8_t *p, const char *magic, size_t cl_field, const void *c, size_t cl,
		      size_t sl_field, const void *s, size_t sl, size_t nonce)
{
	size_t n = 0;

	memcpy(p, magic, strlen(magic));
	n += strlen(magic);
	n += put_u16(p + n, cl_field);
	memcpy(p + n, c, cl);
	n += cl;
	n += put_u16(p + n, sl_field);
	memcpy(p + n, s, sl);
	n += sl;
	memset(p + n, 0x5a, nonce);
	return n + nonce;
}

/* A credential around any payload, straight from libmunge. */
static char *raw_encode(const void *p, size_t len, int ttl)
{
	munge_ctx_t ctx = munge_ctx_create();
	char *cred = NULL;
	munge_err_t e;

	cr_assert_not_null(ctx);
	cr_assert_eq(munge_ctx_set(ctx, MUNGE_OPT_SOCKET, sock), EMUNGE_SUCCESS);
	if (ttl)
		cr_assert_eq(munge_ctx_set(ctx, MUNGE_OPT_TTL, ttl), EMUNGE_SUCCESS);
	e = munge_encode(&cred, ctx, p, (int)len);
	cr_assert_eq(e, EMUNGE_SUCCESS, "munge_encode: %s", munge_ctx_strerror(ctx));
	munge_ctx_destroy(ctx);
	return cred;
}

/* ------------------------------------------------------------------------
 * Round trips
 * ------------------------------------------------------------------------ */

Test(auth, round_trip)
{
	struct qauth_identity id;
	struct sockaddr_in *origin = (struct sockaddr_in *)&id.addr;
	char err[512] = "", *cred;
	time_t now = time(NULL);
	int r;

	NEED_MUNGED();
	addrs();
	cred = encode(&client_a, sizeof(client_a), &server_a, sizeof(server_a));
	r = decode(cred, &client_a, sizeof(client_a), &server_a, sizeof(server_a), &id, err,
		   sizeof(err));
	cr_assert_eq(r, 0, "decode: %d (%s)", r, err);
	cr_assert_eq(id.uid, 0);
	cr_assert_eq(id.gid, 0);
	cr_assert_str_eq(id.user, "root");
	cr_assert_str_eq(id.group, "root");
	cr_assert_geq(id.ngids, 1);
	cr_assert_eq(id.gids[0], 0);
	cr_assert(has_gid(&id, 0));
	cr_assert_eq(origin->sin_family, AF_INET);
	cr_assert_eq(ntohl(origin->sin_addr.s_addr), INADDR_LOOPBACK);
	cr_assert_str_eq(id.addr_text, "127.0.0.1");
	cr_assert_gt(id.ttl, 0);
	cr_assert(id.encode_time + 5 >= (uint64_t)now && id.encode_time <= (uint64_t)now + 5,
		  "encode_time %llu, now %lld", (unsigned long long)id.encode_time, (long long)now);
	free(cred);
}

/* Two credentials for the same connection differ (their random bytes):
 * neither replays the other. */
Test(auth, fresh_each_time)
{
	struct qauth_identity id;
	char err[512] = "", *a, *b;

	NEED_MUNGED();
	addrs();
	a = encode(&client_a, sizeof(client_a), &server_a, sizeof(server_a));
	b = encode(&client_a, sizeof(client_a), &server_a, sizeof(server_a));
	cr_assert_str_neq(a, b);
	cr_assert_eq(decode(a, &client_a, sizeof(client_a), &server_a, sizeof(server_a), &id, err,
			    sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(decode(b, &client_a, sizeof(client_a), &server_a, sizeof(server_a), &id, err,
			    sizeof(err)),
		     0, "%s", err);
	free(a);
	free(b);
}

/* Encodes in a child that has become uid/gid with no other groups. */
static char *encode_as(uid_t uid, gid_t gid)
{
	static char buf[4096];
	size_t n = 0;
	int fds[2], status;
	pid_t pid;

	cr_assert_eq(pipe(fds), 0);
	fflush(NULL);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char err[512], *cred = NULL;
		int r;

		close(fds[0]);
		if (setgroups(0, NULL) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid))
			_exit(2);
		r = qauth_munge_encode(sock, &client_a, sizeof(client_a), &server_a,
				       sizeof(server_a), &cred, err, sizeof(err));
		if (r < 0) {
			dprintf(fds[1], "error %d: %s", r, err);
			_exit(1);
		}
		if (write(fds[1], cred, strlen(cred)) != (ssize_t)strlen(cred))
			_exit(3);
		_exit(0);
	}
	close(fds[1]);
	for (ssize_t k; (k = read(fds[0], buf + n, sizeof(buf) - 1 - n)) > 0;)
		n += (size_t)k;
	buf[n] = '\0';
	close(fds[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status 0x%x, %s", status,
		  buf);
	return buf;
}

Test(auth, other_user_nobody)
{
	struct passwd *pw = getpwuid(65534);
	struct qauth_identity id;
	char err[512] = "", *cred;
	int r;

	NEED_MUNGED();
	if (geteuid() != 0)
		cr_skip_test("becoming another user needs root");
	if (!pw || strcmp(pw->pw_name, "nobody") != 0)
		cr_skip_test("uid 65534 is not nobody here");
	addrs();
	cred = encode_as(65534, 65534);
	r = decode(cred, &client_a, sizeof(client_a), &server_a, sizeof(server_a), &id, err,
		   sizeof(err));
	cr_assert_eq(r, 0, "decode: %d (%s)", r, err);
	cr_assert_eq(id.uid, 65534);
	cr_assert_eq(id.gid, 65534);
	cr_assert_str_eq(id.user, "nobody");
	cr_assert_eq(id.gids[0], 65534);
	cr_assert(has_gid(&id, 65534));
	cr_assert_not(has_gid(&id, 0));
}

Test(auth, other_user_without_name)
{
	struct qauth_identity id;
	char err[512] = "", *cred;
	int r;

	NEED_MUNGED();
	if (geteuid() != 0)
		cr_skip_test("becoming another user needs root");
	if (getpwuid(54321))
		cr_skip_test("uid 54321 has a name here");
	addrs();
	cred = encode_as(54321, 54322);
	r = decode(cred, &client_a, sizeof(client_a), &server_a, sizeof(server_a), &id, err,
		   sizeof(err));
	cr_assert_eq(r, 0, "decode: %d (%s)", r, err);
	cr_assert_eq(id.uid, 54321);
	cr_assert_eq(id.gid, 54322);
	cr_assert_str_eq(id.user, "");
	if (!getgrgid(54322))
		cr_assert_str_eq(id.group, "");
	cr_assert_eq(id.ngids, 1);
	cr_assert_eq(id.gids[0], 54322);
}

/* ------------------------------------------------------------------------
 * MUNGE's verdicts
 * ------------------------------------------------------------------------ */

Test(auth, replayed)
{
	struct qauth_identity id;
	char err[512] = "", *cred;

	NEED_MUNGED();
	addrs();
	cred = encode(&client_a, sizeof(client_a), &server_a, sizeof(server_a));
	cr_assert_eq(decode(cred, &client_a, sizeof(client_a), &server_a, sizeof(server_a), &id,
			    err, sizeof(err)),
		     0, "%s", err);
	expect_refused(cred, &client_a, sizeof(client_a), &server_a, sizeof(server_a),
		       "credential replayed");
	free(cred);
}

Test(auth, forged)
{
	char *cred;
	size_t mid;

	NEED_MUNGED();
	addrs();
	cred = encode(&client_a, sizeof(client_a), &server_a, sizeof(server_a));
	mid = strlen(cred) / 2;
	cred[mid] = cred[mid] == 'A' ? 'B' : 'A';
	expect_refused(cred, &client_a, sizeof(client_a), &server_a, sizeof(server_a),
		       "credential invalid (forged or made with another key)");
	free(cred);
}

Test(auth, not_text)
{
	struct qauth_identity id;
	char err[512] = "";
	const char junk[] = "MUNGE:\0AAAA:";

	NEED_MUNGED();
	addrs();
	cr_assert_eq(qauth_munge_decode(sock, junk, sizeof(junk) - 1, &client_a, sizeof(client_a),
					&server_a, sizeof(server_a), &id, err, sizeof(err)),
		     -EACCES);
	cr_assert(strstr(err, "credential invalid"), "%s", err);
	cr_assert_eq(qauth_munge_decode(sock, "", 0, &client_a, sizeof(client_a), &server_a,
					sizeof(server_a), &id, err, sizeof(err)),
		     -EACCES);
	expect_refused("not a credential", &client_a, sizeof(client_a), &server_a, sizeof(server_a),
		       "credential invalid");
}

Test(auth, another_key)
{
	char other_dir[600], other_sock[512], first_sock[512], *cred;
	int other;

	NEED_MUNGED();
	addrs();
	snprintf(other_dir, sizeof(other_dir), "%s/other", dir);
	cr_assert_eq(mkdir(other_dir, 0755), 0);
	other = tu_munged_start(other_dir, other_sock, sizeof(other_sock));
	TU_NEED_MUNGED(other);
	/* Made by the second munged, decoded by the first. */
	snprintf(first_sock, sizeof(first_sock), "%s", sock);
	snprintf(sock, sizeof(sock), "%s", other_sock);
	cred = encode(&client_a, sizeof(client_a), &server_a, sizeof(server_a));
	snprintf(sock, sizeof(sock), "%s", first_sock);
	tu_munged_stop(other);
	expect_refused(cred, &client_a, sizeof(client_a), &server_a, sizeof(server_a),
		       "credential invalid (forged or made with another key)");
	free(cred);
}

/* munged counts a credential expired once the decoding second is past
 * encode time + ttl (whole seconds, no allowance for skew on that side):
 * 2.2 s after a 1 s credential is always past it. */
Test(auth, expired)
{
	uint8_t p[256];
	size_t n;
	char *cred;
	struct timespec nap = {2, 200 * 1000 * 1000};

	NEED_MUNGED();
	addrs();
	n = payload(p, "QUAI-MUNGE-1", sizeof(client_a), &client_a, sizeof(client_a),
		    sizeof(server_a), &server_a, sizeof(server_a), 16);
	cred = raw_encode(p, n, 1);
	nanosleep(&nap, NULL);
	expect_refused(cred, &client_a, sizeof(client_a), &server_a, sizeof(server_a),
		       "credential expired");
	free(cred);
}

/* ------------------------------------------------------------------------
 * The binding to a connection
 * ------------------------------------------------------------------------ */

Test(auth, another_client)
{
	char *cred;

	NEED_MUNGED();
	addrs();
	cred = encode(&client_a, sizeof(client_a), &server_a, sizeof(server_a));
	expect_refused(cred, &client_b, sizeof(client_b), &server_a, sizeof(server_a),
		       "credential made for another connection");
	free(cred);
}

Test(auth, another_server)
{
	struct sockaddr_in server_b = v4("10.0.0.9", 7447);
	char *cred;

	NEED_MUNGED();
	addrs();
	cred = encode(&client_a, sizeof(client_a), &server_a, sizeof(server_a));
	expect_refused(cred, &client_a, sizeof(client_a), &server_b, sizeof(server_b),
		       "credential made for another server");
	free(cred);
}

Test(auth, server_wildcard_accepted)
{
	struct sockaddr_in any = v4("0.0.0.0", 7447);
	struct qauth_identity id;
	char err[512] = "", *cred;
	int r;

	struct sockaddr_in lo = v4("127.0.0.1", 7447);

	NEED_MUNGED();
	addrs();
	/* One of this host's addresses: a wildcard listens there. */
	cred = encode(&client_a, sizeof(client_a), &lo, sizeof(lo));
	r = decode(cred, &client_a, sizeof(client_a), &any, sizeof(any), &id, err, sizeof(err));
	cr_assert_eq(r, 0, "decode: %d (%s)", r, err);
	free(cred);
	/* Another host's address at the same port: another server. */
	cred = encode(&client_a, sizeof(client_a), &server_a, sizeof(server_a));
	expect_refused(cred, &client_a, sizeof(client_a), &any, sizeof(any),
		       "credential made for another server");
	free(cred);
}

Test(auth, server_wildcard_other_port)
{
	struct sockaddr_in any = v4("0.0.0.0", 7448);
	char *cred;

	NEED_MUNGED();
	addrs();
	cred = encode(&client_a, sizeof(client_a), &server_a, sizeof(server_a));
	expect_refused(cred, &client_a, sizeof(client_a), &any, sizeof(any),
		       "credential made for another server");
	free(cred);
}

/* ------------------------------------------------------------------------
 * Malformed payloads, MAC and all valid
 * ------------------------------------------------------------------------ */

static void expect_malformed(const uint8_t *p, size_t n)
{
	char *cred = raw_encode(p, n, 0);

	expect_refused(cred, &client_a, sizeof(client_a), &server_a, sizeof(server_a),
		       "credential malformed");
	free(cred);
}

Test(auth, malformed_payloads)
{
	const size_t cl = sizeof(client_a), sl = sizeof(server_a);
	uint8_t p[256];
	size_t n;

	NEED_MUNGED();
	addrs();
	/* Wrong magic, one letter off. */
	n = payload(p, "QUAI-MUNGE-2", cl, &client_a, cl, sl, &server_a, sl, 16);
	expect_malformed(p, n);
	/* No payload at all, and the magic alone. */
	expect_malformed(p, 0);
	expect_malformed((const uint8_t *)"QUAI-MUNGE-1", 12);
	/* A client length beyond the payload. */
	n = payload(p, "QUAI-MUNGE-1", 4000, &client_a, cl, sl, &server_a, sl, 16);
	expect_malformed(p, n);
	/* A server length beyond the payload. */
	n = payload(p, "QUAI-MUNGE-1", cl, &client_a, cl, sl + 17, &server_a, sl, 16);
	expect_malformed(p, n);
	/* Trailing bytes, and too few random ones. */
	n = payload(p, "QUAI-MUNGE-1", cl, &client_a, cl, sl, &server_a, sl, 17);
	expect_malformed(p, n);
	n = payload(p, "QUAI-MUNGE-1", cl, &client_a, cl, sl, &server_a, sl, 15);
	expect_malformed(p, n);
	/* Cut within the server's length field. */
	n = payload(p, "QUAI-MUNGE-1", cl, &client_a, cl, sl, &server_a, sl, 0);
	expect_malformed(p, 12 + 2 + cl + 1);
	/* And the well-formed one goes through. */
	n = payload(p, "QUAI-MUNGE-1", cl, &client_a, cl, sl, &server_a, sl, 16);
	{
		struct qauth_identity id;
		char err[512] = "", *cred = raw_encode(p, n, 0);

		cr_assert_eq(decode(cred, &client_a, cl, &server_a, sl, &id, err, sizeof(err)), 0,
			     "%s", err);
		free(cred);
	}
}

/* ------------------------------------------------------------------------
 * munged unreachable
 * ------------------------------------------------------------------------ */

Test(auth, munged_not_running)
{
	struct qauth_identity id;
	char err[512] = "", dead[600], *cred = NULL, *good;
	int r;

	NEED_MUNGED();
	addrs();
	snprintf(dead, sizeof(dead), "%s/absent.socket", dir);
	r = qauth_munge_encode(dead, &client_a, sizeof(client_a), &server_a, sizeof(server_a),
			       &cred, err, sizeof(err));
	cr_assert_eq(r, -ECONNREFUSED, "encode: %d (%s)", r, err);
	cr_assert_null(cred);
	cr_assert(strstr(err, dead), "err '%s' lacks the socket", err);
	cr_assert(strstr(err, "munged"), "%s", err);

	good = encode(&client_a, sizeof(client_a), &server_a, sizeof(server_a));
	err[0] = '\0';
	r = qauth_munge_decode(dead, good, strlen(good), &client_a, sizeof(client_a), &server_a,
			       sizeof(server_a), &id, err, sizeof(err));
	cr_assert_eq(r, -ECONNREFUSED, "decode: %d (%s)", r, err);
	cr_assert(strstr(err, dead), "err '%s' lacks the socket", err);

	/* And once munged is gone, its own socket says the same. */
	tu_munged_stop(munged);
	munged = -1;
	r = qauth_munge_decode(sock, good, strlen(good), &client_a, sizeof(client_a), &server_a,
			       sizeof(server_a), &id, err, sizeof(err));
	cr_assert_eq(r, -ECONNREFUSED, "decode: %d (%s)", r, err);
	cr_assert(strstr(err, sock), "err '%s' lacks the socket", err);
	free(good);
}

/* With libmunge's default socket, the message names it, in words. */
Test(auth_socket, default_socket_unreachable)
{
	char err[512] = "", *cred = NULL;
	int r;

	if (access("/run/munge/munge.socket.2", F_OK) == 0)
		cr_skip_test("a munged runs on the default socket here");
	r = qauth_munge_encode(NULL, "c", 1, "s", 1, &cred, err, sizeof(err));
	cr_assert_eq(r, -ECONNREFUSED, "encode: %d (%s)", r, err);
	cr_assert(strstr(err, "cannot reach munged at /"), "%s", err);
	for (const char *c = err; *c; c++)
		cr_assert(*c >= 0x20 && *c < 0x7f, "unprintable message: %s", err);
}

/* ------------------------------------------------------------------------
 * The payload check alone
 * ------------------------------------------------------------------------ */

static int check(const void *named_c, size_t ncl, const void *named_s, size_t nsl, const void *c,
		 size_t cl, const void *s, size_t sl, char *err, size_t err_len)
{
	uint8_t p[600];
	size_t n = payload(p, "QUAI-MUNGE-1", ncl, named_c, ncl, nsl, named_s, nsl, 16);

	return qauth_payload_check(p, n, c, cl, s, sl, err, err_len);
}

Test(auth_payload, inet_forms)
{
	struct sockaddr_in a4 = v4("192.0.2.7", 7447), any4 = v4("0.0.0.0", 7447);
	struct sockaddr_in6 a6 = v6("2001:db8::7", 7447), any6 = v6("::", 7447);
	struct sockaddr_in6 mapped = v6("::ffff:192.0.2.7", 7447), b6 = v6("2001:db8::8", 7447);
	struct sockaddr_in lo4 = v4("127.0.0.1", 7447), lo4b = v4("127.0.0.2", 7447);
	struct sockaddr_in6 lo6 = v6("::1", 7447);
	char err[256] = "";
	uint8_t c[3] = {1, 2, 3};

	cr_assert_eq(check(c, 3, &a6, sizeof(a6), c, 3, &a6, sizeof(a6), err, sizeof(err)), 0);
	/* A wildcard listener takes the addresses this host listens on: loopback
	 * is always one (2001:db8::/32 and 192.0.2.7 are documentation
	 * addresses no test host has). */
	cr_assert_eq(check(c, 3, &lo6, sizeof(lo6), c, 3, &any6, sizeof(any6), err, sizeof(err)),
		     0);
	cr_assert_eq(check(c, 3, &lo4, sizeof(lo4), c, 3, &any6, sizeof(any6), err, sizeof(err)),
		     0);
	cr_assert_eq(check(c, 3, &lo4b, sizeof(lo4b), c, 3, &any4, sizeof(any4), err, sizeof(err)),
		     0);
	cr_assert_eq(check(c, 3, &a4, sizeof(a4), c, 3, &mapped, sizeof(mapped), err, sizeof(err)),
		     0);
	cr_assert_eq(check(c, 3, &a6, sizeof(a6), c, 3, &b6, sizeof(b6), err, sizeof(err)),
		     -EACCES);
	cr_assert_str_eq(err, "credential made for another server");
	cr_assert_eq(check(c, 3, &a6, sizeof(a6), c, 3, &a4, sizeof(a4), err, sizeof(err)),
		     -EACCES);
	/* The client's bytes, exactly: one byte more is another address. */
	cr_assert_eq(check(c, 3, &a6, sizeof(a6), c, 2, &a6, sizeof(a6), err, sizeof(err)),
		     -EACCES);
	cr_assert_str_eq(err, "credential made for another connection");
}

/* Regression (issue 22 #1): a wildcard listener took a credential made for
 * any address at its port, so one made for another server at the same
 * port passed. */
Test(auth_payload, wildcard_is_this_hosts_addresses)
{
	struct sockaddr_in a4 = v4("198.51.100.7", 7447), any4 = v4("0.0.0.0", 7447);
	struct sockaddr_in6 a6 = v6("2001:db8::7", 7447), any6 = v6("::", 7447);
	struct sockaddr_in lo4 = v4("127.0.0.1", 7447);
	struct ifaddrs *ifs, *i;
	char err[256] = "";
	uint8_t c[3] = {1, 2, 3};

	cr_assert_eq(check(c, 3, &a4, sizeof(a4), c, 3, &any4, sizeof(any4), err, sizeof(err)),
		     -EACCES);
	cr_assert_str_eq(err, "credential made for another server");
	cr_assert_eq(check(c, 3, &a6, sizeof(a6), c, 3, &any6, sizeof(any6), err, sizeof(err)),
		     -EACCES);
	cr_assert_eq(check(c, 3, &a4, sizeof(a4), c, 3, &any6, sizeof(any6), err, sizeof(err)),
		     -EACCES);
	cr_assert_eq(check(c, 3, &lo4, sizeof(lo4), c, 3, &any4, sizeof(any4), err, sizeof(err)), 0,
		     "%s", err);
	/* Every IPv4 address of this host's interfaces passes. */
	cr_assert_eq(getifaddrs(&ifs), 0);
	for (i = ifs; i; i = i->ifa_next) {
		struct sockaddr_in s;

		if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET)
			continue;
		memcpy(&s, i->ifa_addr, sizeof(s));
		s.sin_port = htons(7447);
		cr_assert_eq(
		    check(c, 3, &s, sizeof(s), c, 3, &any4, sizeof(any4), err, sizeof(err)), 0,
		    "%s: %s", i->ifa_name, err);
	}
	freeifaddrs(ifs);
}

Test(auth_payload, other_forms_byte_for_byte)
{
	uint8_t s1[8] = {9, 9, 9, 9, 1, 2, 3, 4}, s2[8] = {9, 9, 9, 9, 1, 2, 3, 5};
	struct sockaddr_in a4 = v4("192.0.2.7", 7447), any4 = v4("0.0.0.0", 7447);
	char err[256] = "";
	uint8_t c[1] = {1};

	cr_assert_eq(check(c, 1, s1, 8, c, 1, s1, 8, err, sizeof(err)), 0);
	cr_assert_eq(check(c, 1, s1, 8, c, 1, s2, 8, err, sizeof(err)), -EACCES);
	cr_assert_eq(check(c, 1, s1, 8, c, 1, s1, 7, err, sizeof(err)), -EACCES);
	/* A sockaddr_in with the wrong length is not one: no wildcard. */
	cr_assert_eq(check(c, 1, &a4, sizeof(a4), c, 1, &any4, sizeof(any4) - 1, err, sizeof(err)),
		     -EACCES);
	/* Nor with another family. */
	any4.sin_family = AF_UNIX;
	cr_assert_eq(check(c, 1, &a4, sizeof(a4), c, 1, &any4, sizeof(any4), err, sizeof(err)),
		     -EACCES);
	/* Empty addresses are addresses too. */
	cr_assert_eq(check(c, 0, s1, 0, NULL, 0, NULL, 0, err, sizeof(err)), 0);
}

Test(auth_payload, malformed)
{
	char err[256] = "";

	cr_assert_eq(qauth_payload_check(NULL, 0, NULL, 0, NULL, 0, err, sizeof(err)), -EACCES);
	cr_assert(strstr(err, "credential malformed"), "%s", err);
	cr_assert_eq(qauth_payload_check("QUAI-MUNGE-1\0", 13, NULL, 0, NULL, 0, err, sizeof(err)),
		     -EACCES);
	cr_assert(strstr(err, "truncated"), "%s", err);
	/* A well-formed empty one, and the same with one more byte. */
	cr_assert_eq(qauth_payload_check("QUAI-MUNGE-1\0\0\0\0AAAAAAAAAAAAAAAA", 32, NULL, 0, NULL,
					 0, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(qauth_payload_check("QUAI-MUNGE-1\0\0\0\0AAAAAAAAAAAAAAAAA", 33, NULL, 0, NULL,
					 0, err, sizeof(err)),
		     -EACCES);
	cr_assert(strstr(err, "credential malformed"), "%s", err);
}

/* ------------------------------------------------------------------------
 * Which munged a client talks to
 * ------------------------------------------------------------------------ */

static void host_conf(const char *text)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/quai.conf", dir);
	tu_write(path, text, strlen(text));
	cr_assert_eq(setenv("QUAI_CONF", path, 1), 0);
}

Test(auth_socket, default_without_anything)
{
	char buf[128] = "x", err[256] = "";

	cr_assert_eq(qauth_client_socket(buf, sizeof(buf), err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(buf, "");
	/* A host file without the key: the default too. */
	host_conf("zone = eu\n");
	cr_assert_eq(qauth_client_socket(buf, sizeof(buf), err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(buf, "");
	host_conf("munge_socket =\n");
	cr_assert_eq(qauth_client_socket(buf, sizeof(buf), err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(buf, "");
}

Test(auth_socket, host_config)
{
	char buf[128] = "", err[256] = "";

	host_conf("# site\nmunge_socket = /run/munge/quai.socket\nzone = eu\n");
	cr_assert_eq(qauth_client_socket(buf, sizeof(buf), err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(buf, "/run/munge/quai.socket");
	/* An empty variable is no variable. */
	cr_assert_eq(setenv("QUAI_MUNGE_SOCKET", "", 1), 0);
	cr_assert_eq(qauth_client_socket(buf, sizeof(buf), err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(buf, "/run/munge/quai.socket");
}

Test(auth_socket, environment_first)
{
	char buf[128] = "", err[256] = "";

	host_conf("munge_socket = /run/munge/quai.socket\n");
	cr_assert_eq(setenv("QUAI_MUNGE_SOCKET", "/tmp/mine.socket", 1), 0);
	cr_assert_eq(qauth_client_socket(buf, sizeof(buf), err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(buf, "/tmp/mine.socket");
	/* Even over a broken host file: it is not read. */
	host_conf("munge_socket = relative\n");
	cr_assert_eq(qauth_client_socket(buf, sizeof(buf), err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(buf, "/tmp/mine.socket");
	/* Too small a buffer. */
	cr_assert_eq(qauth_client_socket(buf, 5, err, sizeof(err)), -ERANGE);
}

Test(auth_socket, bad_host_config)
{
	char buf[128] = "", err[256] = "", text[256];
	char longp[200];

	host_conf("munge_socket = munge.socket\n");
	cr_assert_eq(qauth_client_socket(buf, sizeof(buf), err, sizeof(err)), -QUAI_EFORMAT);
	cr_assert(strstr(err, "munge_socket"), "%s", err);
	cr_assert(strstr(err, ":1:"), "%s", err);

	memset(longp, 'a', sizeof(longp));
	longp[0] = '/';
	snprintf(text, sizeof(text), "munge_socket = %.*s\n", 120, longp);
	host_conf(text);
	cr_assert_eq(qauth_client_socket(buf, sizeof(buf), err, sizeof(err)), -QUAI_EFORMAT);

	host_conf("munge_socket = /a\nmunge_socket = /b\n");
	cr_assert_eq(qauth_client_socket(buf, sizeof(buf), err, sizeof(err)), -QUAI_EFORMAT);
}
