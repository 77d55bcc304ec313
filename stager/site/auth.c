/* SPDX-License-Identifier: Apache-2.0 */
/*
 * MUNGE authentication of quaid sessions: the client's credential, bound to
 * one connection, and the server's checks of it (auth.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it; standalone builds may not */
#endif
#include "auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <ifaddrs.h>
#include <munge.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "hostconf.h"
#include "quai/quai.h"

#define MAGIC "QUAI-MUNGE-1"
#define MAGIC_LEN (sizeof(MAGIC) - 1)
#define NONCE_LEN 16
#define ADDR_LEN_MAX UINT16_MAX

#define MSG_EXPIRED "credential expired"
#define MSG_REWOUND "credential rewound (made in the future: the clocks disagree)"
#define MSG_REPLAYED "credential replayed"
#define MSG_INVALID "credential invalid (forged or made with another key)"
#define MSG_UNAUTHORIZED "credential unauthorized (restricted to another user)"
#define MSG_OTHER_CONN "credential made for another connection"
#define MSG_OTHER_SERVER "credential made for another server"

static int fail(char *err, size_t err_len, int r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t err_len, int r, const char *fmt, ...)
{
	va_list ap;

	if (err && err_len) {
		va_start(ap, fmt);
		vsnprintf(err, err_len, fmt, ap);
		va_end(ap);
	}
	return r;
}

/* ------------------------------------------------------------------------
 * The client's socket
 * ------------------------------------------------------------------------ */

struct socket_setting {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static int socket_setting(const char *key, const char *value, unsigned line, void *arg)
{
	struct socket_setting *s = arg;
	size_t n = strlen(value);

	(void)line;
	if (strcmp(key, "munge_socket") != 0)
		return 0;
	/* Empty: libmunge's default. Otherwise a path a socket can have. */
	if (n && (value[0] != '/' || n >= sizeof(s->path)))
		return -QUAI_EFORMAT;
	memcpy(s->path, value, n + 1);
	return 0;
}

int qauth_client_socket(char *buf, size_t len, char *err, size_t err_len)
{
	struct socket_setting s = {""};
	const char *env = secure_getenv("QUAI_MUNGE_SOCKET");
	const char *path = s.path;
	size_t n;
	int r;

	if (env && *env) {
		path = env;
	} else {
		r = qhc_load(qhc_path(), socket_setting, &s, err, err_len);
		if (r < 0 && r != -ENOENT)
			return r;
	}
	n = strlen(path);
	if (!buf || n >= len)
		return fail(err, err_len, -ERANGE, "munged socket '%s' needs a buffer of %zu bytes",
			    path, n + 1);
	memcpy(buf, path, n + 1);
	return 0;
}

/* ------------------------------------------------------------------------
 * MUNGE's errors
 * ------------------------------------------------------------------------ */

/* The socket a context talks to, for messages: libmunge's default when the
 * caller gave none. */
static const char *ctx_socket(munge_ctx_t ctx, const char *socket)
{
	char *s = NULL;

	if (socket && *socket)
		return socket;
	if (munge_ctx_get(ctx, MUNGE_OPT_SOCKET, &s) == EMUNGE_SUCCESS && s)
		return s;
	return "(libmunge's default)";
}

static const char *ctx_strerror(munge_ctx_t ctx, munge_err_t e)
{
	const char *s = ctx ? munge_ctx_strerror(ctx) : NULL;

	return s ? s : munge_strerror(e);
}

/* Errors that encoding and decoding share; the verdicts on a credential
 * are decode's own. */
static int common_error(munge_ctx_t ctx, munge_err_t e, const char *socket, const char *what,
			char *err, size_t err_len)
{
	char why[256];

	/* Copied first: munge_ctx_get() (ctx_socket) frees the context's
	 * error message. */
	snprintf(why, sizeof(why), "%s", ctx_strerror(ctx, e));
	switch (e) {
	case EMUNGE_SOCKET:
	case EMUNGE_TIMEOUT:
		return fail(err, err_len, -ECONNREFUSED, "cannot reach munged at %s: %s",
			    ctx_socket(ctx, socket), why);
	case EMUNGE_NO_MEMORY:
		return fail(err, err_len, -ENOMEM, "munge %s: %s", what, why);
	case EMUNGE_BAD_ARG:
		return fail(err, err_len, -EINVAL, "munge %s: %s", what, why);
	case EMUNGE_BAD_LENGTH:
		return fail(err, err_len, -EMSGSIZE, "munge %s: %s", what, why);
	case EMUNGE_OVERFLOW:
		return fail(err, err_len, -EOVERFLOW, "munge %s: %s", what, why);
	default:
		return fail(err, err_len, -EIO, "munge %s: %s (MUNGE error %d)", what, why, (int)e);
	}
}

static munge_ctx_t ctx_open(const char *socket, char *err, size_t err_len, int *ret)
{
	munge_ctx_t ctx = munge_ctx_create();
	munge_err_t e;

	if (!ctx) {
		*ret = fail(err, err_len, -ENOMEM, "munge: cannot create a context");
		return NULL;
	}
	if (socket && *socket) {
		e = munge_ctx_set(ctx, MUNGE_OPT_SOCKET, socket);
		if (e != EMUNGE_SUCCESS) {
			*ret = common_error(ctx, e, socket, "socket", err, err_len);
			munge_ctx_destroy(ctx);
			return NULL;
		}
	}
	*ret = 0;
	return ctx;
}

/* ------------------------------------------------------------------------
 * The payload
 * ------------------------------------------------------------------------ */

static void put_u16le(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)(v & 0xff);
	p[1] = (uint8_t)(v >> 8);
}

static size_t get_u16le(const uint8_t *p)
{
	return (size_t)p[0] | (size_t)p[1] << 8;
}

static int fill_random(uint8_t *p, size_t len)
{
	while (len) {
		ssize_t k = getrandom(p, len, 0);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		p += k;
		len -= (size_t)k;
	}
	return 0;
}

/* An IP endpoint: port and address, IPv4 as IPv4-mapped IPv6. */
struct endpoint {
	uint16_t port; /* network order */
	struct in6_addr addr;
};

static bool endpoint_of(const void *a, size_t len, struct endpoint *ep)
{
	sa_family_t family;

	if (len < sizeof(family))
		return false;
	memcpy(&family, a, sizeof(family));
	if (family == AF_INET && len == sizeof(struct sockaddr_in)) {
		struct sockaddr_in sin;

		memcpy(&sin, a, sizeof(sin));
		ep->port = sin.sin_port;
		memset(&ep->addr, 0, sizeof(ep->addr));
		ep->addr.s6_addr[10] = 0xff;
		ep->addr.s6_addr[11] = 0xff;
		memcpy(&ep->addr.s6_addr[12], &sin.sin_addr, 4);
		return true;
	}
	if (family == AF_INET6 && len == sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 sin6;

		memcpy(&sin6, a, sizeof(sin6));
		ep->port = sin6.sin6_port;
		ep->addr = sin6.sin6_addr;
		return true;
	}
	return false;
}

static bool endpoint_wildcard(const struct endpoint *ep)
{
	static const uint8_t any4[16] = {[10] = 0xff, [11] = 0xff};

	return IN6_IS_ADDR_UNSPECIFIED(&ep->addr) || memcmp(ep->addr.s6_addr, any4, 16) == 0;
}

/* Whether addr (IPv4 as IPv4-mapped) is one this host listens on when
 * bound to a wildcard: loopback (127.0.0.0/8, ::1) or an address of one of
 * its interfaces now. A credential naming any other address was made for
 * another server, even on the same port. */
static bool host_has_addr(const struct in6_addr *addr)
{
	static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
	struct ifaddrs *ifs, *i;
	bool found = false;

	if (IN6_IS_ADDR_LOOPBACK(addr) ||
	    (memcmp(addr->s6_addr, mapped, 12) == 0 && addr->s6_addr[12] == 127))
		return true;
	if (getifaddrs(&ifs) != 0)
		return false;
	for (i = ifs; i && !found; i = i->ifa_next) {
		struct endpoint e;
		size_t len;

		if (i->ifa_addr == NULL)
			continue;
		if (i->ifa_addr->sa_family == AF_INET)
			len = sizeof(struct sockaddr_in);
		else if (i->ifa_addr->sa_family == AF_INET6)
			len = sizeof(struct sockaddr_in6);
		else
			continue;
		found =
		    endpoint_of(i->ifa_addr, len, &e) && memcmp(&e.addr, addr, sizeof(e.addr)) == 0;
	}
	freeifaddrs(ifs);
	return found;
}

static bool server_matches(const uint8_t *named, size_t nlen, const void *own, size_t olen)
{
	struct endpoint n, o;

	if (endpoint_of(named, nlen, &n) && endpoint_of(own, olen, &o))
		return n.port == o.port &&
		       (endpoint_wildcard(&o) ? host_has_addr(&n.addr)
					      : memcmp(&n.addr, &o.addr, sizeof(n.addr)) == 0);
	return nlen == olen && (!nlen || memcmp(named, own, nlen) == 0);
}

int qauth_payload_check(const void *payload, size_t len, const void *client, size_t clen,
			const void *server, size_t slen, char *err, size_t err_len)
{
	const uint8_t *p = payload, *named_client, *named_server;
	size_t pos = MAGIC_LEN, ncl, nsl;

	if (!p && len)
		return fail(err, err_len, -EACCES, "credential malformed: no payload");
	if (len < MAGIC_LEN || memcmp(p, MAGIC, MAGIC_LEN) != 0)
		return fail(err, err_len, -EACCES,
			    "credential malformed: not a quai credential (no " MAGIC ")");
	if (len - pos < 2)
		return fail(err, err_len, -EACCES, "credential malformed: truncated");
	ncl = get_u16le(p + pos);
	pos += 2;
	if (len - pos < ncl)
		return fail(err, err_len, -EACCES,
			    "credential malformed: client address of %zu bytes in %zu", ncl,
			    len - pos);
	named_client = p + pos;
	pos += ncl;
	if (len - pos < 2)
		return fail(err, err_len, -EACCES, "credential malformed: truncated");
	nsl = get_u16le(p + pos);
	pos += 2;
	if (len - pos < nsl)
		return fail(err, err_len, -EACCES,
			    "credential malformed: server address of %zu bytes in %zu", nsl,
			    len - pos);
	named_server = p + pos;
	pos += nsl;
	if (len - pos != NONCE_LEN)
		return fail(err, err_len, -EACCES,
			    "credential malformed: %zu bytes after the addresses, not %d",
			    len - pos, NONCE_LEN);

	if (ncl != clen || (clen && (!client || memcmp(named_client, client, clen) != 0)))
		return fail(err, err_len, -EACCES, MSG_OTHER_CONN);
	if ((slen && !server) || !server_matches(named_server, nsl, server, slen))
		return fail(err, err_len, -EACCES, MSG_OTHER_SERVER);
	return 0;
}

/* ------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------ */

int qauth_munge_encode(const char *socket, const void *client_addr, size_t client_len,
		       const void *server_addr, size_t server_len, char **ret, char *err,
		       size_t err_len)
{
	return qauth_munge_encode_ttl(socket, client_addr, client_len, server_addr, server_len, 0,
				      ret, err, err_len);
}

int qauth_munge_encode_ttl(const char *socket, const void *client_addr, size_t client_len,
			   const void *server_addr, size_t server_len, int ttl, char **ret,
			   char *err, size_t err_len)
{
	munge_ctx_t ctx = NULL;
	uint8_t *payload = NULL;
	char *cred = NULL;
	size_t len, pos = 0;
	munge_err_t e;
	int r;

	if (!ret || (client_len && !client_addr) || (server_len && !server_addr))
		return fail(err, err_len, -EINVAL, "munge encode: invalid arguments");
	if (client_len > ADDR_LEN_MAX || server_len > ADDR_LEN_MAX)
		return fail(err, err_len, -EINVAL, "munge encode: an address over %u bytes",
			    ADDR_LEN_MAX);

	len = MAGIC_LEN + 2 + client_len + 2 + server_len + NONCE_LEN;
	payload = malloc(len);
	if (!payload)
		return fail(err, err_len, -ENOMEM, "munge encode: out of memory");
	memcpy(payload, MAGIC, MAGIC_LEN);
	pos += MAGIC_LEN;
	put_u16le(payload + pos, client_len);
	pos += 2;
	if (client_len)
		memcpy(payload + pos, client_addr, client_len);
	pos += client_len;
	put_u16le(payload + pos, server_len);
	pos += 2;
	if (server_len)
		memcpy(payload + pos, server_addr, server_len);
	pos += server_len;
	r = fill_random(payload + pos, NONCE_LEN);
	if (r < 0) {
		fail(err, err_len, r, "munge encode: getrandom: %s", strerror(-r));
		goto out;
	}

	ctx = ctx_open(socket, err, err_len, &r);
	if (!ctx)
		goto out;
	if (ttl > 0 && munge_ctx_set(ctx, MUNGE_OPT_TTL, ttl) != EMUNGE_SUCCESS) {
		r = fail(err, err_len, -EINVAL, "munge encode: cannot set a TTL of %d s", ttl);
		goto out;
	}
	e = munge_encode(&cred, ctx, payload, (int)len);
	if (e != EMUNGE_SUCCESS) {
		r = common_error(ctx, e, socket, "encode", err, err_len);
		free(cred);
		goto out;
	}
	*ret = cred;
	r = 0;
out:
	if (ctx)
		munge_ctx_destroy(ctx);
	free(payload);
	return r;
}

/* ------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------ */

static int decode_error(munge_ctx_t ctx, munge_err_t e, const char *socket, char *err,
			size_t err_len)
{
	switch (e) {
	case EMUNGE_CRED_EXPIRED:
		return fail(err, err_len, -EACCES, MSG_EXPIRED);
	case EMUNGE_CRED_REWOUND:
		return fail(err, err_len, -EACCES, MSG_REWOUND);
	case EMUNGE_CRED_REPLAYED:
		return fail(err, err_len, -EACCES, MSG_REPLAYED);
	case EMUNGE_CRED_UNAUTHORIZED:
		return fail(err, err_len, -EACCES, MSG_UNAUTHORIZED);
	case EMUNGE_BAD_CRED:
	case EMUNGE_BAD_VERSION:
	case EMUNGE_BAD_CIPHER:
	case EMUNGE_BAD_MAC:
	case EMUNGE_BAD_ZIP:
	case EMUNGE_BAD_REALM:
	case EMUNGE_CRED_INVALID:
	case EMUNGE_BAD_LENGTH: /* a credential longer than munged takes */
		return fail(err, err_len, -EACCES, MSG_INVALID);
	default:
		return common_error(ctx, e, socket, "decode", err, err_len);
	}
}

/* The NSS lookups, with a buffer that grows until the entry fits: return
 * 0 (*ret NULL when there is no such entry) or an errno number. */
#define NSS_BUF_MAX (1u << 20)

static int user_of(uid_t uid, struct passwd *pw, struct passwd **ret, char **buf)
{
	int e = ERANGE;

	for (size_t cap = 1024; e == ERANGE && cap <= NSS_BUF_MAX; cap *= 2) {
		char *nb = realloc(*buf, cap);

		if (!nb)
			return ENOMEM;
		*buf = nb;
		e = getpwuid_r(uid, pw, nb, cap, ret);
	}
	return e;
}

static int group_of(gid_t gid, struct group *gr, struct group **ret, char **buf)
{
	int e = ERANGE;

	for (size_t cap = 1024; e == ERANGE && cap <= NSS_BUF_MAX; cap *= 2) {
		char *nb = realloc(*buf, cap);

		if (!nb)
			return ENOMEM;
		*buf = nb;
		e = getgrgid_r(gid, gr, nb, cap, ret);
	}
	return e;
}

/* A name fits whole or not at all: a cut name could be another's. */
static void copy_name(char *dst, size_t cap, const char *name)
{
	size_t n = strlen(name);

	dst[0] = '\0';
	if (n < cap)
		memcpy(dst, name, n + 1);
}

static void add_gid(struct qauth_identity *id, uint32_t g)
{
	for (unsigned i = 0; i < id->ngids; i++)
		if (id->gids[i] == g)
			return;
	if (id->ngids < QAUTH_GROUPS_MAX)
		id->gids[id->ngids++] = g;
}

/* Names and groups of id->uid and id->gid on this host. */
static int fill_names(struct qauth_identity *id, char *err, size_t err_len)
{
	struct passwd pw, *pwp = NULL;
	struct group gr, *grp = NULL;
	gid_t *groups = NULL;
	char *buf = NULL;
	int e, n = QAUTH_GROUPS_MAX, r = 0;

	id->user[0] = id->group[0] = '\0';
	id->ngids = 0;
	add_gid(id, id->gid);

	e = user_of((uid_t)id->uid, &pw, &pwp, &buf);
	if (e == ENOMEM) {
		r = fail(err, err_len, -ENOMEM, "looking up uid %u: out of memory", id->uid);
		goto out;
	}
	/* Any other failure: the uid has no name that can be known here. */
	if (!e && pwp)
		copy_name(id->user, sizeof(id->user), pw.pw_name);

	e = group_of((gid_t)id->gid, &gr, &grp, &buf);
	if (e == ENOMEM) {
		r = fail(err, err_len, -ENOMEM, "looking up gid %u: out of memory", id->gid);
		goto out;
	}
	if (!e && grp)
		copy_name(id->group, sizeof(id->group), gr.gr_name);

	if (!id->user[0])
		goto out;
	for (;;) {
		gid_t *ng = realloc(groups, (size_t)n * sizeof(*groups));
		int want = n;

		if (!ng) {
			r = fail(err, err_len, -ENOMEM, "groups of %s: out of memory", id->user);
			goto out;
		}
		groups = ng;
		if (getgrouplist(id->user, (gid_t)id->gid, groups, &want) >= 0) {
			n = want;
			break;
		}
		/* Too small: want says how many there are. */
		if (want <= n || want > (1 << 16)) {
			n = 0;
			break;
		}
		n = want;
	}
	for (int i = 0; i < n; i++)
		add_gid(id, (uint32_t)groups[i]);
out:
	free(groups);
	free(buf);
	return r;
}

int qauth_munge_decode(const char *socket, const void *cred, size_t cred_len,
		       const void *client_addr, size_t client_len, const void *server_addr,
		       size_t server_len, struct qauth_identity *id, char *err, size_t err_len)
{
	struct qauth_identity out = {0};
	struct sockaddr_in *sin = (struct sockaddr_in *)&out.addr;
	munge_ctx_t ctx = NULL;
	char *text = NULL;
	void *payload = NULL;
	int plen = 0, ttl = 0, r;
	uid_t uid;
	gid_t gid;
	time_t t = 0;
	munge_err_t e;

	if (!id || (cred_len && !cred) || (client_len && !client_addr) ||
	    (server_len && !server_addr))
		return fail(err, err_len, -EINVAL, "munge decode: invalid arguments");
	/* The credential is text: a NUL within would cut it short. */
	if (!cred_len || memchr(cred, '\0', cred_len))
		return fail(err, err_len, -EACCES, MSG_INVALID);
	text = malloc(cred_len + 1);
	if (!text)
		return fail(err, err_len, -ENOMEM, "munge decode: out of memory");
	memcpy(text, cred, cred_len);
	text[cred_len] = '\0';

	ctx = ctx_open(socket, err, err_len, &r);
	if (!ctx)
		goto out;
	e = munge_decode(text, ctx, &payload, &plen, &uid, &gid);
	if (e != EMUNGE_SUCCESS) {
		r = decode_error(ctx, e, socket, err, err_len);
		goto out;
	}
	r = qauth_payload_check(payload, plen > 0 ? (size_t)plen : 0, client_addr, client_len,
				server_addr, server_len, err, err_len);
	if (r < 0)
		goto out;

	out.uid = (uint32_t)uid;
	out.gid = (uint32_t)gid;
	if (munge_ctx_get(ctx, MUNGE_OPT_ADDR4, &sin->sin_addr) != EMUNGE_SUCCESS ||
	    munge_ctx_get(ctx, MUNGE_OPT_ENCODE_TIME, &t) != EMUNGE_SUCCESS ||
	    munge_ctx_get(ctx, MUNGE_OPT_TTL, &ttl) != EMUNGE_SUCCESS) {
		r = fail(err, err_len, -EIO, "munge decode: %s", ctx_strerror(ctx, EMUNGE_SNAFU));
		goto out;
	}
	sin->sin_family = AF_INET;
	if (!inet_ntop(AF_INET, &sin->sin_addr, out.addr_text, sizeof(out.addr_text)))
		out.addr_text[0] = '\0';
	out.encode_time = t > 0 ? (uint64_t)t : 0;
	out.ttl = ttl > 0 ? (uint64_t)ttl : 0;
	r = fill_names(&out, err, err_len);
	if (r < 0)
		goto out;
	*id = out;
out:
	free(payload);
	if (ctx)
		munge_ctx_destroy(ctx);
	free(text);
	return r;
}
