/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quaid's configuration file (svcconf.h, docs/quaid.md): one checker per
 * key over the host configuration's parser, the checks that need the host,
 * and the printer of `quaid --check-config`.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it; standalone builds may not */
#endif
#include "svcconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hostconf.h"
#include "quai/quai.h"
#include "label.h"
#include "sitekey.h"
#include "strutil.h"

#define DEFAULT_NODE "0.0.0.0"
#define DEFAULT_MAX_CLIENTS 64
#define DEFAULT_MAX_STREAMS 8
#define DEFAULT_CLIENT_MEMORY (UINT64_C(256) << 20)
#define DEFAULT_PINNED (UINT64_C(1) << 30)
#define DEFAULT_WORKERS 0
#define DEFAULT_IDLE_TIMEOUT 60
#define DEFAULT_HANDSHAKE_TIMEOUT 10
#define DEFAULT_MAX_HOST_CONNECTIONS 256
#define DEFAULT_LOG_LEVEL QSVC_LOG_INFO
/* Below this a client's slot ring holds too few batches of a useful size
 * to keep a GPU fed; the bound also catches "client_memory = 256" meant as
 * MiB. */
#define MIN_CLIENT_MEMORY (UINT64_C(16) << 20)

/* Long enough for any message below with two shown values. */
#define MSG_MAX 320

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

static void say(char *msg, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(char *msg, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!msg || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, len, fmt, ap);
	va_end(ap);
}

/* A value in a parse message: short, the line number says where it is. */
struct shown {
	char s[64 + 4];
};

static const char *show(struct shown *b, const char *v)
{
	return qstr_printable(b->s, sizeof(b->s) - 4, v, SIZE_MAX);
}

/* A path in a check's message: whole, as the operator must find it. */
struct shown_path {
	char s[QHC_LINE_MAX + 4];
};

static const char *show_path(struct shown_path *b, const char *v)
{
	return qstr_printable(b->s, sizeof(b->s) - 4, v, SIZE_MAX);
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* "256MiB" when exact in a binary unit, else bytes: what parse reads back. */
static const char *size_str(uint64_t v, char buf[32])
{
	static const char *const units[] = {"TiB", "GiB", "MiB", "KiB"};

	for (unsigned i = 0; i < 4; i++) {
		unsigned shift = 40 - 10 * i;

		if (v && v % (UINT64_C(1) << shift) == 0) {
			snprintf(buf, 32, "%" PRIu64 "%s", v >> shift, units[i]);
			return buf;
		}
	}
	snprintf(buf, 32, "%" PRIu64, v);
	return buf;
}

/* ------------------------------------------------------------------------
 * One checker per key. Each reads a value that is not empty and either
 * sets its field and returns 0, or leaves the configuration unchanged and
 * returns -QUAI_EFORMAT with `msg` saying what is wrong (without the key,
 * which the caller adds), or -ENOMEM.
 * ------------------------------------------------------------------------ */

/* "0", "7470", "65535": at most five digits, so leading zeros aside it
 * cannot overflow; written back without leading zeros. */
static int parse_port(const char *v, const char *port, char service[32], char *msg, size_t len)
{
	const char *end;
	uint64_t n;
	struct shown sh;

	if (!*port) {
		say(msg, len, "'%s': no port after ':'", show(&sh, v));
		return -QUAI_EFORMAT;
	}
	if (qstr_parse_digits(port, &end, &n) < 0 || *end || n > 65535) {
		say(msg, len, "'%s': the port must be a number from 0 to 65535", show(&sh, v));
		return -QUAI_EFORMAT;
	}
	snprintf(service, 32, "%" PRIu64, n);
	return 0;
}

/* [ADDR] or [ADDR%SCOPE]: brackets tell an IPv6 address's colons from the
 * port's. The node is kept without them, as getaddrinfo() wants it. */
static int parse_ipv6(const char *v, char node[256], const char **ret_rest, char *msg, size_t len)
{
	const char *close = strchr(v, ']');
	char addr[256], *pct;
	struct in6_addr a6;
	struct shown sh;
	size_t n;

	if (!close) {
		say(msg, len, "'%s': no ']' after the IPv6 address", show(&sh, v));
		return -QUAI_EFORMAT;
	}
	n = (size_t)(close - v - 1);
	if (n >= sizeof(addr)) {
		say(msg, len, "'%s': the address is too long", show(&sh, v));
		return -QUAI_EFORMAT;
	}
	memcpy(addr, v + 1, n);
	addr[n] = '\0';
	pct = strchr(addr, '%');
	if (pct)
		*pct = '\0';
	if (inet_pton(AF_INET6, addr, &a6) != 1 ||
	    (pct && (!pct[1] || strspn(pct + 1, "abcdefghijklmnopqrstuvwxyz"
						"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
				    strlen(pct + 1)))) {
		say(msg, len, "'%s': not an IPv6 address", show(&sh, v));
		return -QUAI_EFORMAT;
	}
	if (pct)
		*pct = '%';
	memcpy(node, addr, n + 1);
	*ret_rest = close + 1;
	return 0;
}

/* A host name or an IPv4 address. Something made of digits and dots only
 * must be a whole dotted quad: getaddrinfo() would take "10.1" for
 * 10.0.0.1, which is never what a configuration means. */
static int parse_node(const char *v, size_t n, char node[256], char *msg, size_t len)
{
	struct in_addr a4;
	struct shown sh;
	bool numeric = true;

	if (!n) {
		say(msg, len,
		    "'%s': no address before the port (0.0.0.0 listens on every IPv4 address, "
		    "[::] on every address)",
		    show(&sh, v));
		return -QUAI_EFORMAT;
	}
	if (n > 253) {
		say(msg, len, "'%s': the host name is longer than 253 bytes", show(&sh, v));
		return -QUAI_EFORMAT;
	}
	for (size_t i = 0; i < n; i++) {
		char c = v[i];

		if (!is_alnum(c) && c != '.' && c != '-' && c != '_') {
			say(msg, len, "'%s': not a host name or address", show(&sh, v));
			return -QUAI_EFORMAT;
		}
		numeric &= is_digit(c) || c == '.';
	}
	memcpy(node, v, n);
	node[n] = '\0';
	if ((numeric && inet_pton(AF_INET, node, &a4) != 1) || !is_alnum(v[0])) {
		say(msg, len, "'%s': not a host name or address", show(&sh, v));
		return -QUAI_EFORMAT;
	}
	return 0;
}

static int set_listen(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	char node[256], service[32] = QSVC_DEFAULT_PORT;
	const char *rest, *colon;
	struct shown sh;
	int r;

	if (v[0] == '[') {
		r = parse_ipv6(v, node, &rest, msg, len);
		if (r < 0)
			return r;
		if (*rest && *rest != ':') {
			say(msg, len, "'%s': expected ':PORT' after ']'", show(&sh, v));
			return -QUAI_EFORMAT;
		}
	} else {
		colon = strchr(v, ':');
		if (colon && strchr(colon + 1, ':')) {
			say(msg, len,
			    "'%s': an IPv6 address goes in brackets, as in "
			    "[::1]:" QSVC_DEFAULT_PORT,
			    show(&sh, v));
			return -QUAI_EFORMAT;
		}
		r = parse_node(v, colon ? (size_t)(colon - v) : strlen(v), node, msg, len);
		if (r < 0)
			return r;
		rest = colon ? colon : "";
	}
	if (*rest) {
		r = parse_port(v, rest + 1, service, msg, len);
		if (r < 0)
			return r;
	}
	snprintf(c->listen_node, sizeof(c->listen_node), "%s", node);
	snprintf(c->listen_service, sizeof(c->listen_service), "%s", service);
	return 0;
}

static int set_provider(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	size_t n = strlen(v);
	struct shown sh;

	/* libfabric's names: "tcp;ofi_rxm", "verbs;ofi_rxm", "cxi", "shm". */
	if (n >= sizeof(c->provider) ||
	    strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_;.-") != n) {
		say(msg, len,
		    "'%s' is not a libfabric provider name (e.g. tcp;ofi_rxm, verbs;ofi_rxm, cxi)",
		    show(&sh, v));
		return -QUAI_EFORMAT;
	}
	memcpy(c->provider, v, n + 1);
	return 0;
}

static int set_zone(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	struct shown sh;

	if (quai_zone_check(v) < 0) {
		say(msg, len,
		    "'%s' is not a zone label (1 to %d bytes of A-Z a-z 0-9 . _ -, not . or ..)",
		    show(&sh, v), QUAI_ZONE_MAX);
		return -QUAI_EFORMAT;
	}
	snprintf(c->zone, sizeof(c->zone), "%s", v);
	return 0;
}

/* An absolute path of `n` bytes, written to a new string with repeated and
 * trailing slashes dropped, so that one directory has one spelling (and
 * duplicates can be seen). "." and ".." components are refused for the
 * same reason: "/data/../data" is "/data". `dir`: the path names a
 * directory (a file's path cannot end in '/'). */
static int norm_path(const char *p, size_t n, bool dir, char **ret, char *msg, size_t len)
{
	char *path = strndup(p, n), *out = malloc(n + 2), *o = out;
	struct shown sh;
	int r = -QUAI_EFORMAT;

	if (!path || !out) {
		r = -ENOMEM;
		goto fail;
	}
	if (path[0] != '/') {
		say(msg, len, "'%s' is not an absolute path", show(&sh, path));
		goto fail;
	}
	if (n > QHC_LINE_MAX) {
		say(msg, len, "'%s' is longer than %d bytes", show(&sh, path), QHC_LINE_MAX);
		goto fail;
	}
	if (!dir && path[n - 1] == '/') {
		say(msg, len, "'%s' names a directory, not a file", show(&sh, path));
		goto fail;
	}
	for (const char *c = path; *c;) {
		size_t k;

		c += strspn(c, "/");
		k = strcspn(c, "/");
		if (!k)
			break;
		if ((k == 1 && c[0] == '.') || (k == 2 && c[0] == '.' && c[1] == '.')) {
			say(msg, len, "'%s': '.' and '..' components are not allowed",
			    show(&sh, path));
			goto fail;
		}
		*o++ = '/';
		memcpy(o, c, k);
		o += k;
		c += k;
	}
	if (o == out)
		*o++ = '/';
	*o = '\0';
	/* The file trims blanks at the end of a value, so a name ending in
	 * one could only be written "/x /": printed back without the slash,
	 * it would name another directory. */
	if (strchr(" \t\r", o[-1])) {
		say(msg, len, "'%s': a name that ends with a blank is not supported here",
		    show(&sh, path));
		goto fail;
	}
	free(path);
	*ret = out;
	return 0;
fail:
	free(path);
	free(out);
	return r;
}

static void free_roots(char **roots, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		free(roots[i]);
}

static int set_roots(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	char *roots[QSVC_ROOTS_MAX];
	const char *p = v;
	unsigned n = 0;
	struct shown sh;
	int r;

	for (;;) {
		size_t k = strcspn(p, ":");

		if (!k) {
			say(msg, len,
			    "'%s': an empty directory in the list (':' at an end, or '::')",
			    show(&sh, v));
			r = -QUAI_EFORMAT;
			goto fail;
		}
		if (n == QSVC_ROOTS_MAX) {
			say(msg, len, "more than %d directories", QSVC_ROOTS_MAX);
			r = -QUAI_EFORMAT;
			goto fail;
		}
		r = norm_path(p, k, true, &roots[n], msg, len);
		if (r < 0)
			goto fail;
		for (unsigned i = 0; i < n; i++) {
			if (strcmp(roots[i], roots[n]) == 0) {
				say(msg, len, "'%s' is listed twice", show(&sh, roots[n]));
				n++;
				r = -QUAI_EFORMAT;
				goto fail;
			}
		}
		n++;
		if (!p[k])
			break;
		p += k + 1;
	}
	free_roots(c->roots, c->nroots);
	memcpy(c->roots, roots, n * sizeof(roots[0]));
	c->nroots = n;
	return 0;
fail:
	free_roots(roots, n);
	return r;
}

static int set_path(char **field, const char *v, bool dir, char *msg, size_t len)
{
	char *p;
	int r = norm_path(v, strlen(v), dir, &p, msg, len);

	if (r < 0)
		return r;
	free(*field);
	*field = p;
	return 0;
}

static int set_push_root(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	return set_path(&c->push_root, v, true, msg, len);
}

static int set_log_file(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	return set_path(&c->log_file, v, false, msg, len);
}

static int set_audit_log(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	return set_path(&c->audit_log, v, false, msg, len);
}

static int set_audit_key(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	char *p = NULL;
	int r = norm_path(v, strlen(v), false, &p, msg, len);

	if (r < 0)
		return r;
	if (strlen(p) >= sizeof(c->audit_key)) {
		free(p);
		say(msg, len, "a path of at most %zu bytes", sizeof(c->audit_key) - 1);
		return -QUAI_EFORMAT;
	}
	memcpy(c->audit_key, p, strlen(p) + 1);
	free(p);
	return 0;
}

/* site_keys: each file must hold a public key (sitekey.h). */
static int set_site_keys(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	uint8_t *keys = NULL;
	size_t n = 0;
	char why[4400];
	int r;

	if (strlen(v) >= sizeof(c->site_keys)) {
		say(msg, len, "at most %zu bytes", sizeof(c->site_keys) - 1);
		return -QUAI_EFORMAT;
	}
	r = qlbl_load_keys(v, &keys, &n, why, sizeof(why));
	free(keys);
	if (r < 0) {
		say(msg, len, "%s", why);
		return -QUAI_EFORMAT;
	}
	memcpy(c->site_keys, v, strlen(v) + 1);
	return 0;
}

static int set_unsigned(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	struct shown sh;

	if (strcmp(v, "refuse") == 0)
		c->unsigned_policy = QSVC_UNSIGNED_REFUSE;
	else if (strcmp(v, "sensitive") == 0)
		c->unsigned_policy = QSVC_UNSIGNED_SENSITIVE;
	else {
		say(msg, len, "'%s': expected refuse or sensitive", show(&sh, v));
		return -QUAI_EFORMAT;
	}
	return 0;
}

/* A socket's path must fit sockaddr_un's sun_path, NUL included. */
#define SOCKET_PATH_MAX 107

static int set_munge_socket(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	char *p = NULL;
	struct shown sh;
	int r = norm_path(v, strlen(v), false, &p, msg, len);

	if (r < 0)
		return r;
	if (strlen(p) > SOCKET_PATH_MAX) {
		say(msg, len, "'%s' is longer than %d bytes, the most a socket's path holds",
		    show(&sh, p), SOCKET_PATH_MAX);
		free(p);
		return -QUAI_EFORMAT;
	}
	snprintf(c->munge_socket, sizeof(c->munge_socket), "%s", p);
	free(p);
	return 0;
}

/* The policy keys work on c's policy, made here when init could not. */
static int need_policy(struct qsvc_conf *c)
{
	if (!c->policy)
		c->policy = qpol_new(c->zone);
	return c->policy ? 0 : -ENOMEM;
}

static int set_zone_hosts(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	static const char own[] = "zone_hosts: ";
	int r = need_policy(c);

	if (r == 0)
		r = qpol_set_zone_hosts(c->policy, v, msg, len);
	/* The policy names the key itself; the caller does here. */
	if (r == -QUAI_EFORMAT && msg && strncmp(msg, own, strlen(own)) == 0)
		memmove(msg, msg + strlen(own), strlen(msg + strlen(own)) + 1);
	return r;
}

static int set_unauthenticated(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	int r = need_policy(c);

	return r < 0 ? r : qpol_set_unauthenticated(c->policy, v, msg, len);
}

static int parse_count(const char *v, unsigned min, unsigned max, unsigned *ret, char *msg,
		       size_t len)
{
	const char *end;
	uint64_t n;
	struct shown sh;

	if (qstr_parse_digits(v, &end, &n) < 0 || *end || n < min || n > max) {
		say(msg, len, "'%s': expected a whole number from %u to %u", show(&sh, v), min,
		    max);
		return -QUAI_EFORMAT;
	}
	*ret = (unsigned)n;
	return 0;
}

static int set_max_clients(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	return parse_count(v, 1, 4096, &c->max_clients, msg, len);
}

static int set_max_streams(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	return parse_count(v, 1, 1024, &c->max_streams, msg, len);
}

static int set_workers(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	return parse_count(v, 0, 1024, &c->workers, msg, len);
}

static int set_idle_timeout(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	return parse_count(v, 1, 86400, &c->idle_timeout, msg, len);
}

static int set_handshake_timeout(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	return parse_count(v, 1, 3600, &c->handshake_timeout, msg, len);
}

static int set_max_host_connections(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	return parse_count(v, 1, 65536, &c->host_conn_max, msg, len);
}

/* Digits, optional blanks, then an optional binary suffix, any case: B,
 * K/KiB, M/MiB, G/GiB, T/TiB, the same as the quai CLI's SIZE
 * (qstr_parse_size()). */
static int parse_size(const char *v, uint64_t min, uint64_t *ret, char *msg, size_t len)
{
	char smin[32];
	struct shown sh;
	uint64_t n;
	int r = qstr_parse_size(v, 1, &n);

	if (r == 0 && n < min) {
		say(msg, len, "'%s' is less than the minimum, %s", show(&sh, v),
		    size_str(min, smin));
		return -QUAI_EFORMAT;
	}
	if (r == 0) {
		*ret = n;
		return 0;
	}
	if (r == -ERANGE)
		say(msg, len, "'%s' is too large", show(&sh, v));
	else
		say(msg, len, "'%s' is not a size (e.g. 256M, 1GiB)", show(&sh, v));
	return -QUAI_EFORMAT;
}

static int set_client_memory(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	return parse_size(v, MIN_CLIENT_MEMORY, &c->client_memory, msg, len);
}

static int set_pinned(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	return parse_size(v, MIN_CLIENT_MEMORY, &c->pinned, msg, len);
}

static const char *const level_names[] = {
    [QSVC_LOG_ERROR] = "error", [QSVC_LOG_WARNING] = "warning", [QSVC_LOG_NOTICE] = "notice",
    [QSVC_LOG_INFO] = "info",	[QSVC_LOG_DEBUG] = "debug",
};

const char *qsvc_log_level_name(int level)
{
	if (level < 0 || level >= (int)(sizeof(level_names) / sizeof(level_names[0])))
		return NULL;
	return level_names[level];
}

static int set_log_level(struct qsvc_conf *c, const char *v, char *msg, size_t len)
{
	struct shown sh;

	for (int l = QSVC_LOG_ERROR; l <= QSVC_LOG_DEBUG; l++) {
		if (strcmp(v, level_names[l]) == 0) {
			c->log_level = l;
			return 0;
		}
	}
	say(msg, len, "'%s': expected error, warning, notice, info or debug", show(&sh, v));
	return -QUAI_EFORMAT;
}

enum key_id {
	K_LISTEN,
	K_PROVIDER,
	K_ZONE,
	K_ROOTS,
	K_PUSH_ROOT,
	K_MAX_CLIENTS,
	K_MAX_STREAMS,
	K_CLIENT_MEMORY,
	K_PINNED,
	K_WORKERS,
	K_IDLE_TIMEOUT,
	K_HANDSHAKE_TIMEOUT,
	K_MAX_HOST_CONNECTIONS,
	K_LOG_LEVEL,
	K_LOG_FILE,
	K_AUDIT_LOG,
	K_AUDIT_KEY,
	K_SITE_KEYS,
	K_UNSIGNED,
	K_MUNGE_SOCKET,
	K_UNAUTHENTICATED,
	K_ZONE_HOSTS,
	K_RULE, /* rule_NAME: any NAME */
	K_COUNT
};

static const struct key {
	const char *name;
	int (*set)(struct qsvc_conf *c, const char *v, char *msg, size_t len);
} keys[K_COUNT] = {
    [K_LISTEN] = {"listen", set_listen},
    [K_PROVIDER] = {"provider", set_provider},
    [K_ZONE] = {"zone", set_zone},
    [K_ROOTS] = {"roots", set_roots},
    [K_PUSH_ROOT] = {"push_root", set_push_root},
    [K_MAX_CLIENTS] = {"max_clients", set_max_clients},
    [K_MAX_STREAMS] = {"max_streams", set_max_streams},
    [K_CLIENT_MEMORY] = {"client_memory", set_client_memory},
    [K_PINNED] = {"pinned", set_pinned},
    [K_WORKERS] = {"workers", set_workers},
    [K_IDLE_TIMEOUT] = {"idle_timeout", set_idle_timeout},
    [K_HANDSHAKE_TIMEOUT] = {"handshake_timeout", set_handshake_timeout},
    [K_MAX_HOST_CONNECTIONS] = {"max_host_connections", set_max_host_connections},
    [K_LOG_LEVEL] = {"log_level", set_log_level},
    [K_LOG_FILE] = {"log_file", set_log_file},
    [K_AUDIT_LOG] = {"audit_log", set_audit_log},
    [K_AUDIT_KEY] = {"audit_key", set_audit_key},
    [K_SITE_KEYS] = {"site_keys", set_site_keys},
    [K_UNSIGNED] = {"unsigned", set_unsigned},
    [K_MUNGE_SOCKET] = {"munge_socket", set_munge_socket},
    [K_UNAUTHENTICATED] = {"unauthenticated", set_unauthenticated},
    [K_ZONE_HOSTS] = {"zone_hosts", set_zone_hosts},
    [K_RULE] = {NULL, NULL},
};

#define RULE_PREFIX "rule_"

/* rule_NAME: NAME is checked by the policy (policy.h). */
static int add_rule(struct qsvc_conf *c, const char *key, const char *value, char *msg, size_t len)
{
	char what[MSG_MAX];
	struct shown sh;
	int r = need_policy(c);

	if (r == 0)
		r = qpol_add_rule(c->policy, key + strlen(RULE_PREFIX), value, what, sizeof(what));
	if (r == -QUAI_EFORMAT)
		say(msg, len, "%s: %s", show(&sh, key), what);
	else if (r < 0)
		say(msg, len, "%s: %s", show(&sh, key), strerror(-r));
	return r < 0 ? r : K_RULE;
}

/* Sets one key; msg then reads "key: what is wrong". Returns the key's
 * index, or a negative code. */
static int set_key(struct qsvc_conf *c, const char *key, const char *value, char *msg, size_t len)
{
	char what[MSG_MAX];
	struct shown sh;
	int r;

	if (strncmp(key, RULE_PREFIX, strlen(RULE_PREFIX)) == 0)
		return add_rule(c, key, value, msg, len);
	for (int k = 0; k < K_COUNT; k++) {
		if (!keys[k].name || strcmp(key, keys[k].name) != 0)
			continue;
		if (!*value) {
			say(msg, len, "%s: no value (leave the key out for its default)", key);
			return -QUAI_EFORMAT;
		}
		r = keys[k].set(c, value, what, sizeof(what));
		if (r == -QUAI_EFORMAT)
			say(msg, len, "%s: %s", key, what);
		else if (r < 0)
			say(msg, len, "%s: %s", key, strerror(-r));
		return r < 0 ? r : k;
	}
	say(msg, len, "%s: unknown key (the keys are listed in quaid(8), docs/quaid.md)",
	    show(&sh, key));
	return -QUAI_EFORMAT;
}

/* What can only be judged once every key is known. `line` holds the line
 * each key was set on (0: not in this text), to blame the right one;
 * `from_text`: what the text left out is a default. */
static int check_across(const struct qsvc_conf *c, const unsigned line[K_COUNT], bool from_text,
			unsigned *ret_line, char *msg, size_t len)
{
	char a[32], b[32];

	if (c->pinned >= c->client_memory)
		return 0;
	if (line[K_PINNED] >= line[K_CLIENT_MEMORY]) {
		*ret_line = line[K_PINNED];
		say(msg, len, "pinned: %s is less than client_memory (%s%s)",
		    size_str(c->pinned, a), size_str(c->client_memory, b),
		    line[K_CLIENT_MEMORY] || !from_text ? "" : ", the default");
	} else {
		*ret_line = line[K_CLIENT_MEMORY];
		say(msg, len, "client_memory: %s is more than pinned, the whole pool (%s%s)",
		    size_str(c->client_memory, a), size_str(c->pinned, b),
		    line[K_PINNED] || !from_text ? "" : ", the default");
	}
	return -QUAI_EFORMAT;
}

/* ------------------------------------------------------------------------
 * Parsing and loading
 * ------------------------------------------------------------------------ */

struct parse_state {
	struct qsvc_conf *c;
	unsigned line[K_COUNT];
	bool failed; /* the fault is a value's: msg (and err_line) say it */
	unsigned err_line;
	char msg[MSG_MAX];
};

static int on_setting(const char *key, const char *value, unsigned line, void *arg)
{
	struct parse_state *st = arg;
	int k = set_key(st->c, key, value, st->msg, sizeof(st->msg));

	if (k < 0) {
		st->failed = k != -ENOMEM;
		st->err_line = line;
		return k;
	}
	st->line[k] = line;
	return 0;
}

void qsvc_conf_init(struct qsvc_conf *c)
{
	*c = (struct qsvc_conf){
	    .listen_node = DEFAULT_NODE,
	    .listen_service = QSVC_DEFAULT_PORT,
	    .max_clients = DEFAULT_MAX_CLIENTS,
	    .max_streams = DEFAULT_MAX_STREAMS,
	    .client_memory = DEFAULT_CLIENT_MEMORY,
	    .pinned = DEFAULT_PINNED,
	    .workers = DEFAULT_WORKERS,
	    .idle_timeout = DEFAULT_IDLE_TIMEOUT,
	    .handshake_timeout = DEFAULT_HANDSHAKE_TIMEOUT,
	    .host_conn_max = DEFAULT_MAX_HOST_CONNECTIONS,
	    .log_level = DEFAULT_LOG_LEVEL,
	};
	/* A malformed host file leaves the zone empty: check() reports it,
	 * with the reason, rather than quaid serving under a wrong zone. */
	if (quai_host_zone(c->zone, sizeof(c->zone), NULL, 0) < 0)
		c->zone[0] = '\0';
	/* NULL when memory runs out: parse and load try again, and say so. */
	c->policy = qpol_new(c->zone);
}

/* After a text is read: the policy exists, under the zone the text left
 * (a "zone =" line may come after the rules). */
static int finish_policy(struct qsvc_conf *c)
{
	int r = need_policy(c);

	if (r == 0)
		qpol_set_zone(c->policy, c->zone);
	return r;
}

int qsvc_conf_parse(const char *text, size_t len, struct qsvc_conf *c, char *err, size_t err_len)
{
	struct parse_state st = {.c = c};
	char msg[MSG_MAX] = "";
	unsigned line = 0;
	int r;

	r = qhc_parse(text, len, on_setting, &st, &line, msg, sizeof(msg));
	if (r == 0 && check_across(c, st.line, true, &st.err_line, st.msg, sizeof(st.msg)) < 0) {
		st.failed = true;
		r = -QUAI_EFORMAT;
	}
	if (r == 0)
		r = finish_policy(c);
	if (r == -ENOMEM)
		say(err, err_len, "%s", strerror(ENOMEM));
	else if (r < 0 && st.failed && st.err_line)
		say(err, err_len, "%u: %s", st.err_line, st.msg);
	else if (r < 0 && st.failed)
		say(err, err_len, "%s", st.msg);
	else if (r < 0 && line)
		say(err, err_len, "%u: %s", line, msg);
	else if (r < 0)
		say(err, err_len, "%s", msg);
	return r;
}

int qsvc_conf_load(const char *path, struct qsvc_conf *c, char *err, size_t err_len)
{
	struct parse_state st = {.c = c};
	char msg[MSG_MAX + 4200] = "";
	int r;

	r = qhc_load(path, on_setting, &st, msg, sizeof(msg));
	if (r == 0 && check_across(c, st.line, true, &st.err_line, st.msg, sizeof(st.msg)) < 0) {
		st.failed = true;
		r = -QUAI_EFORMAT;
	}
	if (r == 0)
		r = finish_policy(c);
	if (r == -ENOENT || r == -ENOMEM)
		say(err, err_len, "%s: %s", path, strerror(-r));
	else if (r < 0 && st.failed && st.err_line)
		say(err, err_len, "%s:%u: %s", path, st.err_line, st.msg);
	else if (r < 0 && st.failed)
		say(err, err_len, "%s: %s", path, st.msg);
	else if (r < 0)
		say(err, err_len, "%s", msg); /* qhc_load's, with the path */
	return r;
}

int qsvc_conf_set(struct qsvc_conf *c, const char *key, const char *value, char *err,
		  size_t err_len)
{
	/* The cross-key rule judges the result, so try it on a copy of the
	 * numbers: on error c must be unchanged. */
	struct qsvc_conf t = *c;
	unsigned line[K_COUNT] = {0}, bad;
	struct shown sh;
	int k;

	if (strncmp(key, RULE_PREFIX, strlen(RULE_PREFIX)) == 0) {
		say(err, err_len, "%s: rules are set in the configuration file only",
		    show(&sh, key));
		return -QUAI_EFORMAT;
	}
	t.nroots = 0;
	t.push_root = t.log_file = t.audit_log = NULL;
	/* The policy keys change c's policy only when their value is good
	 * (policy.h), so t works on it directly. */
	k = set_key(&t, key, value, err, err_len);
	if (k >= 0) {
		line[k] = 1;
		k = check_across(&t, line, false, &bad, err, err_len) < 0 ? -QUAI_EFORMAT : k;
	}
	if (k < 0) {
		if (t.policy == c->policy)
			t.policy = NULL;
		qsvc_conf_free(&t);
		return k;
	}
	c->policy = t.policy; /* the same, or made by need_policy() */
	/* Move over what the key set; the rest of t is c's own. */
	if (k == K_ROOTS) {
		free_roots(c->roots, c->nroots);
		memcpy(c->roots, t.roots, t.nroots * sizeof(t.roots[0]));
		c->nroots = t.nroots;
	} else if (k == K_PUSH_ROOT) {
		free(c->push_root);
		c->push_root = t.push_root;
	} else if (k == K_LOG_FILE) {
		free(c->log_file);
		c->log_file = t.log_file;
	} else if (k == K_AUDIT_LOG) {
		free(c->audit_log);
		c->audit_log = t.audit_log;
	} else {
		t.nroots = c->nroots;
		memcpy(t.roots, c->roots, sizeof(t.roots));
		t.push_root = c->push_root;
		t.log_file = c->log_file;
		t.audit_log = c->audit_log;
		*c = t;
	}
	if (k == K_ZONE && c->policy)
		qpol_set_zone(c->policy, c->zone);
	return 0;
}

const char *qsvc_conf_provider(const struct qsvc_conf *c)
{
	const char *env;

	if (c->provider[0])
		return c->provider;
	env = getenv("FI_PROVIDER");
	return env && *env ? env : QSVC_DEFAULT_PROVIDER;
}

void qsvc_conf_free(struct qsvc_conf *c)
{
	free_roots(c->roots, c->nroots);
	c->nroots = 0;
	free(c->push_root);
	free(c->log_file);
	free(c->audit_log);
	c->push_root = c->log_file = c->audit_log = NULL;
	qpol_free(c->policy);
	c->policy = NULL;
}

/* ------------------------------------------------------------------------
 * Checks on this host
 * ------------------------------------------------------------------------ */

struct problems {
	FILE *out;
	unsigned n;
};

static void problem(struct problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct problems *p, const char *fmt, ...)
{
	va_list ap;

	p->n++;
	if (!p->out)
		return;
	va_start(ap, fmt);
	vfprintf(p->out, fmt, ap);
	va_end(ap);
	fputc('\n', p->out);
}

/* A directory the service can use: `mode` for access(), R_OK|X_OK to list
 * and read it, W_OK|X_OK as well to create in it. */
static void check_dir(struct problems *p, const char *key, const char *path, int mode)
{
	struct stat st;
	struct shown_path sh;

	if (stat(path, &st) < 0)
		problem(p, "%s: %s: %s", key, show_path(&sh, path), strerror(errno));
	else if (!S_ISDIR(st.st_mode))
		problem(p, "%s: %s: not a directory", key, show_path(&sh, path));
	else if (access(path, mode) < 0)
		problem(p, "%s: %s: %s: %s", key, show_path(&sh, path),
			mode & W_OK ? "cannot write in it" : "cannot read it", strerror(errno));
}

/* Whether the process may lock memory beyond RLIMIT_MEMLOCK. Asked of the
 * kernel directly: libcap is not worth a dependency for one bit. */
static bool can_lock_unlimited(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];

	if (syscall(SYS_capget, &hdr, data) < 0)
		return false;
	return data[CAP_IPC_LOCK / 32].effective & (1u << (CAP_IPC_LOCK % 32));
}

static const char *limit_str(rlim_t v, char buf[32])
{
	if (v == RLIM_INFINITY)
		return "unlimited";
	return size_str((uint64_t)v, buf);
}

static void check_memlock(struct problems *p, uint64_t pinned)
{
	struct rlimit rl;
	char a[32], b[32], cc[32];

	if (getrlimit(RLIMIT_MEMLOCK, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
	    pinned <= (uint64_t)rl.rlim_cur || can_lock_unlimited())
		return;
	problem(p,
		"pinned: %s is more than this process may lock: RLIMIT_MEMLOCK is %s "
		"(soft), %s (hard), and it lacks CAP_IPC_LOCK. Raise the limit "
		"(LimitMEMLOCK=infinity in the systemd unit, `ulimit -l`, or "
		"/etc/security/limits.conf) or make pinned smaller",
		size_str(pinned, a), limit_str(rl.rlim_cur, b), limit_str(rl.rlim_max, cc));
}

/* A log file (log_file, audit_log) is opened for appending, created if
 * missing. */
static void check_log_file(struct problems *p, const char *key, const char *path)
{
	char dir[QHC_LINE_MAX + 1];
	const char *slash = strrchr(path, '/');
	struct stat st;
	struct shown_path sh, sh2;
	size_t n = slash > path ? (size_t)(slash - path) : 1;

	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			problem(p, "%s: %s: is a directory", key, show_path(&sh, path));
		else if (access(path, W_OK) < 0)
			problem(p, "%s: %s: cannot write to it: %s", key, show_path(&sh, path),
				strerror(errno));
		return;
	}
	if (errno != ENOENT || n >= sizeof(dir)) {
		problem(p, "%s: %s: %s", key, show_path(&sh, path), strerror(errno));
		return;
	}
	memcpy(dir, path, n);
	dir[n] = '\0';
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		problem(p, "%s: %s: its directory %s does not exist", key, show_path(&sh, path),
			show_path(&sh2, dir));
	else if (access(dir, W_OK | X_OK) < 0)
		problem(p, "%s: %s: cannot create it in %s: %s", key, show_path(&sh, path),
			show_path(&sh2, dir), strerror(errno));
}

/* The audit key signs the audit log's lines: it needs one, and must be a
 * secret key only its owner can read (sitekey.h). */
static void check_audit_key(struct problems *p, const struct qsvc_conf *c)
{
	uint8_t sk[QKEY_SK_BYTES], pk[QKEY_PK_BYTES];
	char why[1400];

	if (!c->audit_key[0])
		return;
	if (!c->audit_log)
		problem(p, "audit_key: set, but no audit_log to sign");
	if (qkey_load_secret(c->audit_key, sk, pk, why, sizeof(why)) < 0)
		problem(p, "audit_key: %s", why);
	explicit_bzero(sk, sizeof(sk));
}

int qsvc_conf_check(const struct qsvc_conf *c, FILE *out)
{
	struct problems p = {out, 0};
	char a[32], b[32], why[QHC_LINE_MAX + 256] = "", zone[QUAI_ZONE_MAX + 1];
	struct shown sh;

	if (!c->zone[0] && quai_host_zone(zone, sizeof(zone), why, sizeof(why)) < 0)
		problem(&p, "zone: not set, and the host's default zone cannot be read: %s", why);
	else if (quai_zone_check(c->zone) < 0)
		problem(&p, "zone: '%s' is not a zone label", show(&sh, c->zone));
	if (!c->nroots && !c->push_root)
		problem(&p, "roots: none, and no push_root: nothing to serve");
	for (unsigned i = 0; i < c->nroots; i++)
		check_dir(&p, "roots", c->roots[i], R_OK | X_OK);
	if (c->push_root)
		check_dir(&p, "push_root", c->push_root, R_OK | W_OK | X_OK);
	if (c->log_file)
		check_log_file(&p, "log_file", c->log_file);
	if (c->audit_log)
		check_log_file(&p, "audit_log", c->audit_log);
	check_audit_key(&p, c);
	if (c->client_memory > c->pinned)
		problem(&p, "client_memory: %s is more than pinned, the whole pool (%s)",
			size_str(c->client_memory, a), size_str(c->pinned, b));
	check_memlock(&p, c->pinned);
	return p.n ? -QUAI_EFORMAT : 0;
}

unsigned qsvc_conf_warn(const struct qsvc_conf *c, FILE *out)
{
	unsigned n = 0;

	if (!c->policy || !qpol_nrules(c->policy)) {
		n++;
		if (out)
			fprintf(out,
				"warning: no rule_ lines: every authenticated request will be "
				"refused%s\n",
				c->policy && qpol_unauthenticated(c->policy)
				    ? " (unauthenticated clients may read public datasets)"
				    : "");
	}
	return n;
}

/* ------------------------------------------------------------------------
 * Printing
 * ------------------------------------------------------------------------ */

/* One setting: commented out when it is the default, so that the output
 * read back means the same, on this host and on others. */
static void put(FILE *out, bool is_default, const char *key, const char *value, const char *note)
{
	if (is_default)
		fprintf(out, "# %s =%s%s (default%s%s)\n", key, *value ? " " : "", value,
			note ? ": " : "", note ? note : "");
	else
		fprintf(out, "%s = %s\n", key, value);
}

static void put_count(FILE *out, const char *key, unsigned v, unsigned def, const char *note)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "%u", v);
	put(out, v == def, key, buf, v == def ? note : NULL);
}

/* The policy's own lines (policy.h), which comment out its defaults as
 * put() does. */
static void print_policy(const struct qpol *pol, FILE *out)
{
	size_t n;
	char *text;

	if (!pol) {
		fputs("# (the policy could not be built: out of memory)\n", out);
		return;
	}
	n = qpol_format(pol, NULL, 0);
	text = malloc(n + 1);
	if (!text) {
		fputs("# (the policy cannot be shown: out of memory)\n", out);
		return;
	}
	qpol_format(pol, text, n + 1);
	fputs(text, out);
	free(text);
}

void qsvc_conf_print(const struct qsvc_conf *c, FILE *out)
{
	char buf[QHC_LINE_MAX + 1], host_zone[QUAI_ZONE_MAX + 1] = "";
	const char *env = getenv("FI_PROVIDER");
	bool v6 = strchr(c->listen_node, ':') != NULL;

	snprintf(buf, sizeof(buf), "%s%s%s:%s", v6 ? "[" : "", c->listen_node, v6 ? "]" : "",
		 c->listen_service);
	put(out,
	    strcmp(c->listen_node, DEFAULT_NODE) == 0 &&
		strcmp(c->listen_service, QSVC_DEFAULT_PORT) == 0,
	    "listen", buf, NULL);
	put(out, !c->provider[0], "provider", qsvc_conf_provider(c),
	    env && *env ? "from $FI_PROVIDER" : NULL);

	if (quai_host_zone(host_zone, sizeof(host_zone), NULL, 0) < 0)
		host_zone[0] = '\0';
	snprintf(buf, sizeof(buf), "the host's, from %s", qhc_path());
	put(out, strcmp(c->zone, host_zone) == 0, "zone", c->zone,
	    c->zone[0] ? buf : "the host's, which cannot be read");

	if (c->nroots) {
		fputs("roots = ", out);
		for (unsigned i = 0; i < c->nroots; i++)
			fprintf(out, "%s%s", i ? ":" : "", c->roots[i]);
		fputc('\n', out);
	} else {
		put(out, true, "roots", "", "none");
	}
	put(out, !c->push_root, "push_root", c->push_root ? c->push_root : "",
	    c->push_root ? NULL : "none: pushes are refused");

	put_count(out, "max_clients", c->max_clients, DEFAULT_MAX_CLIENTS, NULL);
	put_count(out, "max_streams", c->max_streams, DEFAULT_MAX_STREAMS, "per client");
	put(out, c->client_memory == DEFAULT_CLIENT_MEMORY, "client_memory",
	    size_str(c->client_memory, buf), NULL);
	put(out, c->pinned == DEFAULT_PINNED, "pinned", size_str(c->pinned, buf), NULL);
	put_count(out, "workers", c->workers, DEFAULT_WORKERS, "one per online core");
	put_count(out, "idle_timeout", c->idle_timeout, DEFAULT_IDLE_TIMEOUT, "seconds");
	put_count(out, "handshake_timeout", c->handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT,
		  "seconds");
	put_count(out, "max_host_connections", c->host_conn_max, DEFAULT_MAX_HOST_CONNECTIONS,
		  "per client address");
	put(out, c->log_level == DEFAULT_LOG_LEVEL, "log_level",
	    qsvc_log_level_name(c->log_level) ? qsvc_log_level_name(c->log_level) : "?", NULL);
	put(out, !c->log_file, "log_file", c->log_file ? c->log_file : "",
	    c->log_file ? NULL : "standard error");
	put(out, !c->audit_log, "audit_log", c->audit_log ? c->audit_log : "",
	    c->audit_log ? NULL : "none: requests are not audited");
	put(out, !c->site_keys[0], "site_keys", c->site_keys,
	    c->site_keys[0] ? NULL : "none: datasets' signatures are not checked");
	put(out, c->unsigned_policy == QSVC_UNSIGNED_REFUSE, "unsigned",
	    c->unsigned_policy == QSVC_UNSIGNED_REFUSE ? "refuse" : "sensitive",
	    c->unsigned_policy == QSVC_UNSIGNED_REFUSE ? "with site_keys" : NULL);
	put(out, !c->audit_key[0], "audit_key", c->audit_key,
	    c->audit_key[0] ? NULL : "none: audit lines are chained, not signed");
	put(out, !c->munge_socket[0], "munge_socket", c->munge_socket[0] ? c->munge_socket : "",
	    c->munge_socket[0] ? NULL : "libmunge's, /run/munge/munge.socket.2");
	print_policy(c->policy, out);
}
