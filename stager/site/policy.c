/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quaid's data policy (policy.h, docs/quaid.md "Access policy"): parsing
 * rules and zone hosts once, when quaid reads its configuration, into
 * plain tables that qpol_decide() only reads.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it; standalone builds may not */
#endif
#include "policy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errmsg.h"
#include "quai/quai.h"

/* A rule's name must fit a decision's `rule` with room to spare. */
#define NAME_MAX_LEN 64
#define ALL_OPS (QPOL_LIST | QPOL_STREAM | QPOL_PULL | QPOL_PUSH)
/* What a message shows of a value from the configuration or a client. */
#define SHOWN_MAX 64

/* An address or a prefix: IPv4 as 4 bytes, IPv6 as 16. */
struct net {
	int family;
	uint8_t addr[16];
	unsigned prefix;
};

/* A user or a group of a rule: the id it was resolved to, and the name it
 * was given by (NULL for uid:N / gid:N), to write the rule back. */
struct ident {
	uint32_t id;
	char *name;
};

struct idlist {
	bool set; /* the condition was given */
	bool any; /* "*" */
	struct ident *v;
	size_t n;
};

struct rule {
	char name[NAME_MAX_LEN + 1];
	bool allow;
	int ops;
	struct idlist users, groups;
	unsigned classes; /* 1 << enum quai_class; 0: not given */
	char **datasets;  /* NULL: not given */
	size_t ndatasets;
	struct net *hosts; /* NULL: not given */
	size_t nhosts;
};

struct qpol {
	char zone[QUAI_ZONE_MAX + 1]; /* "": not a valid zone, sensitive data refused */
	bool unauthenticated;
	struct net *zone_hosts;
	size_t nzone_hosts;
	struct rule *rules;
	unsigned nrules;
};

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

/* A value for a message: printable ASCII only, cut to SHOWN_MAX bytes and
 * "...". n: bytes of v to show at most (v may go on). */
struct shown {
	char s[SHOWN_MAX + 4];
};

static const char *shown_n(struct shown *b, const char *v, size_t n)
{
	size_t i;

	for (i = 0; i < n && v[i] && i < SHOWN_MAX; i++)
		b->s[i] = v[i] >= 0x20 && v[i] < 0x7f ? v[i] : '?';
	if (i < n && v[i]) {
		memcpy(b->s + i, "...", 3);
		i += 3;
	}
	b->s[i] = '\0';
	return b->s;
}

static const char *shown(struct shown *b, const char *v)
{
	return shown_n(b, v, SIZE_MAX);
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

const char *qpol_op_name(int op)
{
	switch (op) {
	case QPOL_LIST:
		return "list";
	case QPOL_STREAM:
		return "stream";
	case QPOL_PULL:
		return "pull";
	case QPOL_PUSH:
		return "push";
	}
	return "?";
}

/* ------------------------------------------------------------------------
 * Addresses and prefixes
 * ------------------------------------------------------------------------ */

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* "ADDR" or "ADDR/LEN" (n bytes of s). IPv4-mapped IPv6 forms are kept as
 * IPv4, as client addresses are matched. Host bits after the prefix are
 * refused: "10.1.2.3/16" is more likely a slip than a way to say
 * 10.1.0.0/16. */
static int parse_net(const char *s, size_t n, struct net *ret, const char *what, char *err,
		     size_t err_len)
{
	char text[INET6_ADDRSTRLEN + 8];
	const char *slash;
	struct shown sh;
	struct net net = {0};
	unsigned max;

	if (n >= sizeof(text)) {
		qerr_set(err, err_len, "%s: '%s' is not an address or prefix", what,
			 shown_n(&sh, s, n));
		return -QUAI_EFORMAT;
	}
	memcpy(text, s, n);
	text[n] = '\0';
	slash = strchr(text, '/');
	if (slash)
		text[slash - text] = '\0';
	if (inet_pton(AF_INET, text, net.addr) == 1) {
		net.family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, text, net.addr) == 1) {
		net.family = AF_INET6;
		max = 128;
	} else {
		qerr_set(err, err_len, "%s: '%s' is not an address or prefix", what,
			 shown_n(&sh, s, n));
		return -QUAI_EFORMAT;
	}
	net.prefix = max;
	if (slash) {
		const char *p = slash + 1;
		unsigned len = 0;
		size_t k = strlen(p);

		if (!k || k > 3 || strspn(p, "0123456789") != k) {
			qerr_set(err, err_len,
				 "%s: '%s' is not an address or prefix (the prefix length is "
				 "a number after '/')",
				 what, shown_n(&sh, s, n));
			return -QUAI_EFORMAT;
		}
		for (; *p; p++)
			len = len * 10 + (unsigned)(*p - '0');
		if (len > max) {
			qerr_set(
			    err, err_len,
			    "%s: '%s' is not an address or prefix (an %s prefix length is 0 to "
			    "%u)",
			    what, shown_n(&sh, s, n), max == 32 ? "IPv4" : "IPv6", max);
			return -QUAI_EFORMAT;
		}
		net.prefix = len;
	}
	for (unsigned bit = net.prefix; bit < max; bit++) {
		if (net.addr[bit / 8] & (0x80u >> (bit % 8))) {
			qerr_set(err, err_len,
				 "%s: '%s' has bits set after its /%u prefix (the network is "
				 "written with them zero)",
				 what, shown_n(&sh, s, n), net.prefix);
			return -QUAI_EFORMAT;
		}
	}
	if (net.family == AF_INET6 && net.prefix >= 96 && memcmp(net.addr, v4mapped, 12) == 0) {
		memmove(net.addr, net.addr + 12, 4);
		memset(net.addr + 4, 0, 12);
		net.family = AF_INET;
		net.prefix -= 96;
	}
	*ret = net;
	return 0;
}

/* The subject's address as a net of full length; false when it has none
 * (or of a family other than IPv4 and IPv6). */
static bool subject_net(const struct qpol_subject *s, struct net *ret)
{
	if (!s->has_addr)
		return false;
	*ret = (struct net){0};
	if (s->addr.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&s->addr;

		ret->family = AF_INET;
		ret->prefix = 32;
		memcpy(ret->addr, &a->sin_addr, 4);
		return true;
	}
	if (s->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&s->addr;

		if (memcmp(a->sin6_addr.s6_addr, v4mapped, 12) == 0) {
			ret->family = AF_INET;
			ret->prefix = 32;
			memcpy(ret->addr, a->sin6_addr.s6_addr + 12, 4);
		} else {
			ret->family = AF_INET6;
			ret->prefix = 128;
			memcpy(ret->addr, a->sin6_addr.s6_addr, 16);
		}
		return true;
	}
	return false;
}

static bool net_contains(const struct net *net, const struct net *a)
{
	unsigned full = net->prefix / 8, rest = net->prefix % 8;

	if (net->family != a->family || memcmp(net->addr, a->addr, full) != 0)
		return false;
	return !rest || ((net->addr[full] ^ a->addr[full]) & (0xffu << (8 - rest)) & 0xff) == 0;
}

static bool nets_contain(const struct net *v, size_t n, const struct net *a)
{
	for (size_t i = 0; i < n; i++)
		if (net_contains(&v[i], a))
			return true;
	return false;
}

static const char *net_str(const struct net *net, char buf[INET6_ADDRSTRLEN + 8])
{
	unsigned max = net->family == AF_INET ? 32 : 128;

	if (!inet_ntop(net->family, net->addr, buf, INET6_ADDRSTRLEN))
		snprintf(buf, INET6_ADDRSTRLEN, "?");
	if (net->prefix != max)
		snprintf(buf + strlen(buf), 8, "/%u", net->prefix);
	return buf;
}

/* A list of nets separated by commas, and by blanks too when `blanks`
 * (zone_hosts). An empty entry (",,", a ',' at an end) is refused. */
static int parse_nets(const char *v, bool blanks, const char *what, struct net **ret, size_t *ret_n,
		      char *err, size_t err_len)
{
	const char *seps = blanks ? ", \t\r\n" : ",";
	bool after_comma = false;
	struct net *nets;
	size_t n = 0, max = 1;
	struct shown sh;
	int r;

	for (const char *p = v; *p; p++)
		max += strchr(", \t\r\n", *p) != NULL;
	nets = calloc(max, sizeof(*nets));
	if (!nets)
		return -ENOMEM;
	for (const char *p = v;;) {
		size_t k;

		if (blanks)
			p += strspn(p, " \t\r\n");
		if (!*p || *p == ',') {
			if (!*p && !n)
				break;
			if (!*p && !after_comma)
				break;
			qerr_set(err, err_len, "%s: an empty entry in '%s'", what, shown(&sh, v));
			r = -QUAI_EFORMAT;
			goto fail;
		}
		k = strcspn(p, seps);
		r = parse_net(p, k, &nets[n], what, err, err_len);
		if (r < 0)
			goto fail;
		n++;
		p += k;
		if (blanks)
			p += strspn(p, " \t\r\n");
		after_comma = *p == ',';
		if (after_comma)
			p++;
	}
	if (!n) {
		qerr_set(err, err_len, "%s: no address or prefix", what);
		r = -QUAI_EFORMAT;
		goto fail;
	}
	*ret = nets;
	*ret_n = n;
	return 0;
fail:
	free(nets);
	return r;
}

/* ------------------------------------------------------------------------
 * Dataset name patterns: fnmatch(3)'s, without flags (*, ?, [...], [!...],
 * ranges, '\' quoting), matched here so that deciding takes no locale and
 * allocates nothing.
 * ------------------------------------------------------------------------ */

/* Whether the bracket expression at p ('[' ...) matches c; *ret_len its
 * length. A '[' without its ']' is an ordinary character. */
static bool bracket_match(const char *p, char c, size_t *ret_len)
{
	const char *q = p + 1;
	bool neg = false, hit = false;

	if (*q == '!' || *q == '^') {
		neg = true;
		q++;
	}
	for (bool first = true; *q && (first || *q != ']'); first = false) {
		char lo = *q, hi;

		if (lo == '\\' && q[1])
			lo = *++q;
		q++;
		hi = lo;
		if (q[0] == '-' && q[1] && q[1] != ']') {
			hi = q[1];
			q += 2;
			if (hi == '\\' && *q)
				hi = *q++;
		}
		if ((unsigned char)c >= (unsigned char)lo && (unsigned char)c <= (unsigned char)hi)
			hit = true;
	}
	if (*q != ']') {
		*ret_len = 1;
		return c == '[';
	}
	*ret_len = (size_t)(q + 1 - p);
	return hit != neg;
}

/* Whether the one-character element at p matches c; *ret_len its length. */
static bool elem_match(const char *p, char c, size_t *ret_len)
{
	switch (*p) {
	case '?':
		*ret_len = 1;
		return true;
	case '[':
		return bracket_match(p, c, ret_len);
	case '\\':
		if (p[1]) {
			*ret_len = 2;
			return p[1] == c;
		}
		break;
	}
	*ret_len = 1;
	return *p == c;
}

static bool glob_match(const char *pat, const char *s)
{
	const char *star_pat = NULL, *star_s = NULL;
	size_t k;

	while (*s) {
		if (*pat == '*') {
			star_pat = ++pat;
			star_s = s;
			continue;
		}
		if (*pat && elem_match(pat, *s, &k)) {
			pat += k;
			s++;
			continue;
		}
		if (!star_pat)
			return false;
		pat = star_pat;
		s = ++star_s;
	}
	while (*pat == '*')
		pat++;
	return !*pat;
}

/* ------------------------------------------------------------------------
 * Users and groups
 * ------------------------------------------------------------------------ */

/* "uid:N" / "gid:N": N from 0 to 2^32 - 2 ((uid_t)-1 means "no id"). */
static int parse_numeric_id(const char *s, uint32_t *ret)
{
	uint64_t v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (!is_digit(*s))
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v >= UINT32_MAX)
			return -ERANGE;
	}
	*ret = (uint32_t)v;
	return 0;
}

/* Resolves a user (group when `group`) name on this host. Returns 0,
 * -ENOENT, -ENOMEM, or another -errno of the lookup. */
static int lookup_id(const char *name, bool group, uint32_t *ret)
{
	long hint = sysconf(group ? _SC_GETGR_R_SIZE_MAX : _SC_GETPW_R_SIZE_MAX);
	size_t size = hint > 0 ? (size_t)hint : 16384;
	char *buf = NULL;
	int r;

	for (;;) {
		struct passwd pw, *pwr = NULL;
		struct group gr, *grr = NULL;
		char *nbuf = realloc(buf, size);

		if (!nbuf) {
			free(buf);
			return -ENOMEM;
		}
		buf = nbuf;
		if (group) {
			r = getgrnam_r(name, &gr, buf, size, &grr);
			if (r == 0 && grr)
				*ret = (uint32_t)grr->gr_gid;
		} else {
			r = getpwnam_r(name, &pw, buf, size, &pwr);
			if (r == 0 && pwr)
				*ret = (uint32_t)pwr->pw_uid;
		}
		if (r == ERANGE && size < (1u << 20)) {
			size *= 2;
			continue;
		}
		free(buf);
		if (r == 0)
			return (group ? grr != NULL : pwr != NULL) ? 0 : -ENOENT;
		/* Some NSS modules say "not found" with these. */
		if (r == ENOENT || r == ESRCH || r == EBADF || r == EPERM)
			return -ENOENT;
		return -r;
	}
}

static void free_idlist(struct idlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
	*l = (struct idlist){0};
}

/* users=... or groups=...: names, uid:N / gid:N, or "*" alone. */
static int parse_ids(const char *v, bool group, struct idlist *ret, char *err, size_t err_len)
{
	const char *what = group ? "groups" : "users", *num = group ? "gid:" : "uid:";
	struct idlist l = {.set = true};
	size_t max = 1;
	struct shown sh;
	int r;

	if (strcmp(v, "*") == 0) {
		l.any = true;
		*ret = l;
		return 0;
	}
	for (const char *p = v; *p; p++)
		max += *p == ',';
	l.v = calloc(max, sizeof(*l.v));
	if (!l.v)
		return -ENOMEM;
	for (const char *p = v;;) {
		size_t k = strcspn(p, ",");
		char *item;
		uint32_t id = 0;

		if (!k) {
			qerr_set(err, err_len, "%s: an empty entry in '%s'", what, shown(&sh, v));
			r = -QUAI_EFORMAT;
			goto fail;
		}
		item = strndup(p, k);
		if (!item) {
			r = -ENOMEM;
			goto fail;
		}
		if (strcmp(item, "*") == 0) {
			qerr_set(err, err_len, "%s: '*' (every %s) stands alone, not in a list",
				 what, group ? "group" : "user");
			free(item);
			r = -QUAI_EFORMAT;
			goto fail;
		}
		if (strncmp(item, num, 4) == 0) {
			r = parse_numeric_id(item + 4, &id);
			if (r < 0) {
				qerr_set(err, err_len,
					 "%s: '%s': expected %sN, N a number from 0 to %u", what,
					 shown(&sh, item), num, UINT32_MAX - 1);
				free(item);
				r = -QUAI_EFORMAT;
				goto fail;
			}
			free(item);
			item = NULL;
		} else {
			r = lookup_id(item, group, &id);
			if (r == -ENOENT) {
				qerr_set(err, err_len, "%s: no %s '%s' on this host", what,
					 group ? "group" : "user", shown(&sh, item));
				r = -QUAI_EFORMAT;
			} else if (r == -ENOMEM) {
				/* Said by the caller. */
			} else if (r < 0) {
				qerr_set(err, err_len, "%s: cannot look up '%s': %s", what,
					 shown(&sh, item), strerror(-r));
				r = -QUAI_EFORMAT;
			}
			if (r < 0) {
				free(item);
				goto fail;
			}
		}
		l.v[l.n++] = (struct ident){id, item};
		if (!p[k])
			break;
		p += k + 1;
	}
	*ret = l;
	return 0;
fail:
	free_idlist(&l);
	return r;
}

/* ------------------------------------------------------------------------
 * Rules
 * ------------------------------------------------------------------------ */

static void free_rule(struct rule *rl)
{
	free_idlist(&rl->users);
	free_idlist(&rl->groups);
	for (size_t i = 0; i < rl->ndatasets; i++)
		free(rl->datasets[i]);
	free(rl->datasets);
	free(rl->hosts);
}

static const struct {
	const char *name;
	int ops;
} op_words[] = {
    {"list", QPOL_LIST}, {"stream", QPOL_STREAM},	    {"pull", QPOL_PULL},
    {"push", QPOL_PUSH}, {"read", QPOL_STREAM | QPOL_PULL}, {"write", QPOL_PUSH},
    {"all", ALL_OPS},
};

static int parse_ops(const char *v, int *ret, char *err, size_t err_len)
{
	struct shown sh;
	int ops = 0;

	for (const char *p = v;;) {
		size_t k = strcspn(p, ","), i;

		if (!k) {
			qerr_set(err, err_len, "ops: an empty entry in '%s'", shown(&sh, v));
			return -QUAI_EFORMAT;
		}
		for (i = 0; i < sizeof(op_words) / sizeof(op_words[0]); i++) {
			if (strlen(op_words[i].name) == k && strncmp(p, op_words[i].name, k) == 0)
				break;
		}
		if (i == sizeof(op_words) / sizeof(op_words[0])) {
			qerr_set(err, err_len,
				 "ops: '%s' is not list, stream, pull, push, read, write or all",
				 shown_n(&sh, p, k));
			return -QUAI_EFORMAT;
		}
		ops |= op_words[i].ops;
		if (!p[k])
			break;
		p += k + 1;
	}
	*ret = ops;
	return 0;
}

static int parse_classes(const char *v, unsigned *ret, char *err, size_t err_len)
{
	char word[16];
	struct shown sh;
	unsigned mask = 0;

	for (const char *p = v;;) {
		size_t k = strcspn(p, ",");
		int cls = -EINVAL;

		if (!k) {
			qerr_set(err, err_len, "classes: an empty entry in '%s'", shown(&sh, v));
			return -QUAI_EFORMAT;
		}
		if (k < sizeof(word)) {
			memcpy(word, p, k);
			word[k] = '\0';
			cls = quai_class_parse(word);
		}
		if (cls < 0) {
			qerr_set(err, err_len, "classes: '%s' is not public, internal or sensitive",
				 shown_n(&sh, p, k));
			return -QUAI_EFORMAT;
		}
		mask |= 1u << cls;
		if (!p[k])
			break;
		p += k + 1;
	}
	*ret = mask;
	return 0;
}

static int parse_datasets(const char *v, struct rule *rl, char *err, size_t err_len)
{
	size_t max = 1;
	struct shown sh;

	for (const char *p = v; *p; p++)
		max += *p == ',';
	rl->datasets = calloc(max, sizeof(*rl->datasets));
	if (!rl->datasets)
		return -ENOMEM;
	for (const char *p = v;;) {
		size_t k = strcspn(p, ",");

		if (!k) {
			qerr_set(err, err_len, "datasets: an empty entry in '%s'", shown(&sh, v));
			return -QUAI_EFORMAT;
		}
		if (memmem(p, k, "[:", 2) || memmem(p, k, "[=", 2) || memmem(p, k, "[.", 2)) {
			qerr_set(
			    err, err_len,
			    "datasets: '%s': character classes ([:alpha:], [=a=], [.a.]) are not "
			    "supported",
			    shown_n(&sh, p, k));
			return -QUAI_EFORMAT;
		}
		if (memchr(p, '/', k)) {
			qerr_set(err, err_len,
				 "datasets: '%s' can match nothing: dataset names hold no '/'",
				 shown_n(&sh, p, k));
			return -QUAI_EFORMAT;
		}
		rl->datasets[rl->ndatasets] = strndup(p, k);
		if (!rl->datasets[rl->ndatasets])
			return -ENOMEM;
		rl->ndatasets++;
		if (!p[k])
			break;
		p += k + 1;
	}
	return 0;
}

enum cond { C_USERS, C_GROUPS, C_CLASSES, C_DATASETS, C_HOSTS, C_COUNT };

static const char *const cond_names[C_COUNT] = {"users", "groups", "classes", "datasets", "hosts"};

/* One key=value condition (token: the whole "key=value", n bytes). */
static int parse_cond(struct rule *rl, bool seen[C_COUNT], const char *tok, size_t n, char *err,
		      size_t err_len)
{
	const char *eq = memchr(tok, '=', n);
	size_t klen;
	struct shown sh;
	char *val;
	int c, r;

	if (!eq) {
		qerr_set(err, err_len,
			 "'%s': expected KEY=VALUE, KEY one of users, groups, classes, datasets, "
			 "hosts",
			 shown_n(&sh, tok, n));
		return -QUAI_EFORMAT;
	}
	klen = (size_t)(eq - tok);
	for (c = 0; c < C_COUNT; c++) {
		if (strlen(cond_names[c]) == klen && strncmp(tok, cond_names[c], klen) == 0)
			break;
	}
	if (c == C_COUNT) {
		qerr_set(err, err_len,
			 "'%s': unknown condition (the conditions are users, groups, classes, "
			 "datasets, hosts)",
			 shown_n(&sh, tok, n));
		return -QUAI_EFORMAT;
	}
	if (seen[c]) {
		qerr_set(err, err_len,
			 "'%s': %s given twice in one rule (put every value in one list)",
			 shown_n(&sh, tok, n), cond_names[c]);
		return -QUAI_EFORMAT;
	}
	seen[c] = true;
	if (eq + 1 == tok + n) {
		qerr_set(err, err_len, "%s: an empty list (leave the condition out to match any)",
			 cond_names[c]);
		return -QUAI_EFORMAT;
	}
	val = strndup(eq + 1, n - klen - 1);
	if (!val)
		return -ENOMEM;
	switch (c) {
	case C_USERS:
		r = parse_ids(val, false, &rl->users, err, err_len);
		break;
	case C_GROUPS:
		r = parse_ids(val, true, &rl->groups, err, err_len);
		break;
	case C_CLASSES:
		r = parse_classes(val, &rl->classes, err, err_len);
		break;
	case C_DATASETS:
		r = parse_datasets(val, rl, err, err_len);
		break;
	default:
		r = parse_nets(val, false, "hosts", &rl->hosts, &rl->nhosts, err, err_len);
		break;
	}
	free(val);
	return r;
}

static int check_name(const struct qpol *p, const char *name, char *err, size_t err_len)
{
	size_t n = strlen(name);
	struct shown sh;

	if (!n) {
		qerr_set(err, err_len, "a rule needs a name (rule_NAME, e.g. rule_train_read)");
		return -QUAI_EFORMAT;
	}
	if (strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != n) {
		qerr_set(err, err_len, "rule name '%s': only a-z, 0-9 and _ are allowed",
			 shown(&sh, name));
		return -QUAI_EFORMAT;
	}
	if (n > NAME_MAX_LEN) {
		qerr_set(err, err_len, "rule name '%s' is longer than %d bytes", shown(&sh, name),
			 NAME_MAX_LEN);
		return -QUAI_EFORMAT;
	}
	for (unsigned i = 0; i < p->nrules; i++) {
		if (strcmp(p->rules[i].name, name) == 0) {
			qerr_set(err, err_len, "a rule named '%s' is already set", name);
			return -QUAI_EFORMAT;
		}
	}
	return 0;
}

int qpol_add_rule(struct qpol *p, const char *name, const char *value, char *err, size_t err_len)
{
	struct rule rl = {0}, *grown;
	bool seen[C_COUNT] = {false};
	const char *s = value;
	struct shown sh;
	size_t n;
	int r;

	r = check_name(p, name, err, err_len);
	if (r < 0)
		return r;
	snprintf(rl.name, sizeof(rl.name), "%s", name);

	/* allow|deny */
	s += strspn(s, " \t\r\n");
	n = strcspn(s, " \t\r\n");
	if (n == 5 && strncmp(s, "allow", 5) == 0) {
		rl.allow = true;
	} else if (n == 4 && strncmp(s, "deny", 4) == 0) {
		rl.allow = false;
	} else {
		if (!n)
			qerr_set(err, err_len,
				 "no value: expected allow|deny OPS [users=...] [groups=...] "
				 "[classes=...] [datasets=...] [hosts=...]");
		else
			qerr_set(err, err_len, "'%s': a rule starts with allow or deny",
				 shown_n(&sh, s, n));
		return -QUAI_EFORMAT;
	}
	s += n;

	/* OPS */
	s += strspn(s, " \t\r\n");
	n = strcspn(s, " \t\r\n");
	if (!n || memchr(s, '=', n)) {
		qerr_set(err, err_len,
			 "ops: none after '%s' (a comma list of list, stream, pull, push, read, "
			 "write, all)",
			 rl.allow ? "allow" : "deny");
		return -QUAI_EFORMAT;
	}
	{
		char *ops = strndup(s, n);

		if (!ops)
			return -ENOMEM;
		r = parse_ops(ops, &rl.ops, err, err_len);
		free(ops);
		if (r < 0)
			return r;
	}
	s += n;

	/* Conditions */
	for (;;) {
		s += strspn(s, " \t\r\n");
		if (!*s)
			break;
		n = strcspn(s, " \t\r\n");
		r = parse_cond(&rl, seen, s, n, err, err_len);
		if (r < 0)
			goto fail;
		s += n;
	}

	grown = realloc(p->rules, (p->nrules + 1) * sizeof(*grown));
	if (!grown) {
		r = -ENOMEM;
		goto fail;
	}
	p->rules = grown;
	p->rules[p->nrules++] = rl;
	return 0;
fail:
	if (r == -ENOMEM)
		qerr_set(err, err_len, "%s", strerror(ENOMEM));
	free_rule(&rl);
	return r;
}

/* ------------------------------------------------------------------------
 * The policy
 * ------------------------------------------------------------------------ */

static void set_zone(struct qpol *p, const char *zone)
{
	if (zone && quai_zone_check(zone) == 0)
		snprintf(p->zone, sizeof(p->zone), "%s", zone);
	else
		p->zone[0] = '\0';
}

struct qpol *qpol_new(const char *zone)
{
	struct qpol *p = calloc(1, sizeof(*p));

	if (p)
		set_zone(p, zone);
	return p;
}

int qpol_set_zone(struct qpol *p, const char *zone)
{
	set_zone(p, zone);
	return p->zone[0] ? 0 : -EINVAL;
}

const char *qpol_zone(const struct qpol *p)
{
	return p->zone;
}

void qpol_free(struct qpol *p)
{
	if (!p)
		return;
	for (unsigned i = 0; i < p->nrules; i++)
		free_rule(&p->rules[i]);
	free(p->rules);
	free(p->zone_hosts);
	free(p);
}

int qpol_set_zone_hosts(struct qpol *p, const char *value, char *err, size_t err_len)
{
	struct net *nets;
	size_t n;
	int r = parse_nets(value, true, "zone_hosts", &nets, &n, err, err_len);

	if (r == -ENOMEM)
		qerr_set(err, err_len, "%s", strerror(ENOMEM));
	if (r < 0)
		return r;
	free(p->zone_hosts);
	p->zone_hosts = nets;
	p->nzone_hosts = n;
	return 0;
}

int qpol_set_unauthenticated(struct qpol *p, const char *value, char *err, size_t err_len)
{
	struct shown sh;

	if (strcmp(value, "no") == 0) {
		p->unauthenticated = false;
	} else if (strcmp(value, "public") == 0) {
		p->unauthenticated = true;
	} else {
		qerr_set(
		    err, err_len,
		    "'%s': expected no (every client authenticates) or public (clients without "
		    "a credential may read public datasets)",
		    shown(&sh, value));
		return -QUAI_EFORMAT;
	}
	return 0;
}

unsigned qpol_nrules(const struct qpol *p)
{
	return p->nrules;
}

int qpol_unauthenticated(const struct qpol *p)
{
	return p->unauthenticated;
}

/* ------------------------------------------------------------------------
 * Writing back
 * ------------------------------------------------------------------------ */

struct out {
	char *buf;
	size_t len, pos;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	size_t room = o->pos < o->len ? o->len - o->pos : 0;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(room ? o->buf + o->pos : NULL, room, fmt, ap);
	va_end(ap);
	if (k > 0)
		o->pos += (size_t)k;
}

static void put_ids(struct out *o, const char *key, const struct idlist *l, const char *num)
{
	if (!l->set)
		return;
	put(o, " %s=", key);
	if (l->any)
		put(o, "*");
	for (size_t i = 0; i < l->n; i++) {
		if (l->v[i].name)
			put(o, "%s%s", i ? "," : "", l->v[i].name);
		else
			put(o, "%s%s%" PRIu32, i ? "," : "", num, l->v[i].id);
	}
}

static void put_nets(struct out *o, const struct net *v, size_t n, const char *sep)
{
	char buf[INET6_ADDRSTRLEN + 8];

	for (size_t i = 0; i < n; i++)
		put(o, "%s%s", i ? sep : "", net_str(&v[i], buf));
}

static void put_rule(struct out *o, const struct rule *rl)
{
	const char *sep = "";

	put(o, "rule_%s = %s ", rl->name, rl->allow ? "allow" : "deny");
	if (rl->ops == ALL_OPS) {
		put(o, "all");
	} else {
		for (int op = QPOL_LIST; op <= QPOL_PUSH; op <<= 1) {
			if (rl->ops & op) {
				put(o, "%s%s", sep, qpol_op_name(op));
				sep = ",";
			}
		}
	}
	put_ids(o, "users", &rl->users, "uid:");
	put_ids(o, "groups", &rl->groups, "gid:");
	if (rl->classes) {
		sep = "";
		put(o, " classes=");
		for (int c = QUAI_CLASS_PUBLIC; c <= QUAI_CLASS_SENSITIVE; c++) {
			if (rl->classes & (1u << c)) {
				put(o, "%s%s", sep, quai_class_name(c));
				sep = ",";
			}
		}
	}
	if (rl->datasets) {
		put(o, " datasets=");
		for (size_t i = 0; i < rl->ndatasets; i++)
			put(o, "%s%s", i ? "," : "", rl->datasets[i]);
	}
	if (rl->hosts) {
		put(o, " hosts=");
		put_nets(o, rl->hosts, rl->nhosts, ",");
	}
	put(o, "\n");
}

size_t qpol_format(const struct qpol *p, char *buf, size_t len)
{
	struct out o = {buf, len, 0};

	if (buf && len)
		buf[0] = '\0';
	if (p->unauthenticated)
		put(&o, "unauthenticated = public\n");
	else
		put(&o, "# unauthenticated = no (default)\n");
	if (p->nzone_hosts) {
		put(&o, "zone_hosts = ");
		put_nets(&o, p->zone_hosts, p->nzone_hosts, ",");
		put(&o, "\n");
	} else {
		put(&o, "# zone_hosts = (default: none: sensitive data is streamed and pulled "
			"to no host)\n");
	}
	if (!p->nrules)
		put(&o, "# no rule_ lines: every authenticated request will be refused\n");
	for (unsigned i = 0; i < p->nrules; i++)
		put_rule(&o, &p->rules[i]);
	return o.pos;
}

/* ------------------------------------------------------------------------
 * Deciding
 * ------------------------------------------------------------------------ */

static bool ids_contain(const struct idlist *l, uint32_t id)
{
	if (l->any)
		return true;
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].id == id)
			return true;
	return false;
}

static bool user_matches(const struct rule *rl, const struct qpol_subject *s)
{
	if (!rl->users.set && !rl->groups.set)
		return true;
	if (rl->users.set && ids_contain(&rl->users, s->uid))
		return true;
	if (rl->groups.set) {
		if (rl->groups.any)
			return true;
		for (size_t i = 0; i < s->ngids; i++)
			if (ids_contain(&rl->groups, s->gids[i]))
				return true;
	}
	return false;
}

/* A request about no dataset (LIST, STAT) is matched by rules whatever
 * their classes= and datasets=, when they allow: listing is then allowed,
 * and each dataset listed is decided on its own. A deny rule that names
 * datasets or classes denies those datasets, not the listing. */
static bool rule_matches(const struct rule *rl, const struct qpol_subject *s,
			 const struct qpol_request *rq, int cls, const struct net *addr)
{
	bool about_datasets = rl->classes || rl->datasets;

	if (!(rl->ops & rq->op) || !user_matches(rl, s))
		return false;
	if (!rq->dataset[0]) {
		if (about_datasets && !rl->allow)
			return false;
	} else {
		if (rl->classes && !(rl->classes & (1u << cls)))
			return false;
		if (rl->datasets) {
			size_t i;

			for (i = 0; i < rl->ndatasets; i++)
				if (glob_match(rl->datasets[i], rq->dataset))
					break;
			if (i == rl->ndatasets)
				return false;
		}
	}
	if (rl->hosts && (!addr || !nets_contain(rl->hosts, rl->nhosts, addr)))
		return false;
	return true;
}

static void decided(struct qpol_decision *d, bool allow, const char *rule)
{
	d->allow = allow;
	snprintf(d->rule, sizeof(d->rule), "%s", rule);
}

/* "user bob (uid 1002" + ", from ADDR" + ")", or "uid 1002" alone. */
static void who(char *buf, size_t len, const struct qpol_subject *s, const char *from)
{
	struct shown sh;

	if (s->user && s->user[0])
		snprintf(buf, len, "user %s (uid %" PRIu32 "%s%s)", shown(&sh, s->user), s->uid,
			 from ? ", from " : "", from ? from : "");
	else if (from)
		snprintf(buf, len, "uid %" PRIu32 " (from %s)", s->uid, from);
	else
		snprintf(buf, len, "uid %" PRIu32, s->uid);
}

int qpol_decide(const struct qpol *p, const struct qpol_subject *s, const struct qpol_request *rq,
		struct qpol_decision *d)
{
	const char *dataset = rq->dataset ? rq->dataset : "";
	const char *zone = rq->zone ? rq->zone : "none";
	const char *op = qpol_op_name(rq->op);
	struct qpol_request r = *rq;
	char from[INET6_ADDRSTRLEN + 8] = "", subj[160];
	struct net addr;
	bool has_addr;
	struct shown ds, zs;
	int cls = rq->classification;

	memset(d, 0, sizeof(*d));
	r.dataset = dataset;
	/* A dataset always has a class: one missing reads as the default,
	 * internal; an unknown one as the strictest. */
	if (dataset[0] && cls == 0)
		cls = QUAI_CLASS_INTERNAL;
	else if (dataset[0] && (cls < QUAI_CLASS_PUBLIC || cls > QUAI_CLASS_SENSITIVE))
		cls = QUAI_CLASS_SENSITIVE;
	shown(&ds, dataset);
	shown(&zs, zone);

	if (rq->op != QPOL_LIST && rq->op != QPOL_STREAM && rq->op != QPOL_PULL &&
	    rq->op != QPOL_PUSH) {
		decided(d, false, "default");
		snprintf(d->why, sizeof(d->why), "unknown operation %d", rq->op);
		return 0;
	}

	/* (1) Who: no credential reads public data, when the site says so. */
	if (!s->authenticated) {
		if (p->unauthenticated && rq->op != QPOL_PUSH &&
		    (!dataset[0] || cls == QUAI_CLASS_PUBLIC)) {
			decided(d, true, "auth:public");
			return 1;
		}
		decided(d, false, "auth:required");
		if (!p->unauthenticated)
			snprintf(d->why, sizeof(d->why),
				 "authentication required: this quaid accepts MUNGE credentials "
				 "only; is munged running on the client?");
		else if (rq->op == QPOL_PUSH)
			snprintf(d->why, sizeof(d->why),
				 "authentication required: quaid allows unauthenticated clients "
				 "only to read public datasets (unauthenticated = public), and "
				 "push writes");
		else
			snprintf(d->why, sizeof(d->why),
				 "authentication required: quaid allows unauthenticated clients "
				 "only to read public datasets (unauthenticated = public), and "
				 "dataset %s is %s",
				 ds.s, quai_class_name(cls));
		return 0;
	}

	has_addr = subject_net(s, &addr);
	if (has_addr)
		net_str(&addr, from);

	/* (2) Sensitive data stays in its zone. */
	if (dataset[0] && cls == QUAI_CLASS_SENSITIVE && (!p->zone[0] || strcmp(zone, p->zone))) {
		decided(d, false, "sovereign:zone");
		if (p->zone[0])
			snprintf(d->why, sizeof(d->why),
				 "dataset %s is sensitive, of zone %s; this quaid is in zone %s, "
				 "and sensitive data is served and accepted only in its own zone",
				 ds.s, zs.s, p->zone);
		else
			snprintf(d->why, sizeof(d->why),
				 "dataset %s is sensitive, of zone %s; this quaid has no valid "
				 "zone, so it serves and accepts no sensitive data",
				 ds.s, zs.s);
		return 0;
	}

	/* (3) ... and goes only to that zone's hosts. */
	if (dataset[0] && cls == QUAI_CLASS_SENSITIVE &&
	    (rq->op == QPOL_STREAM || rq->op == QPOL_PULL) &&
	    (!has_addr || !nets_contain(p->zone_hosts, p->nzone_hosts, &addr))) {
		decided(d, false, "sovereign:hosts");
		if (!has_addr)
			snprintf(d->why, sizeof(d->why),
				 "dataset %s is sensitive (zone %s): the client's credential "
				 "names no host address, so it cannot be one of zone %s's hosts",
				 ds.s, p->zone, p->zone);
		else if (!p->nzone_hosts)
			snprintf(d->why, sizeof(d->why),
				 "dataset %s is sensitive (zone %s): host %s is not one of zone "
				 "%s's hosts: none are declared (zone_hosts in quaid's "
				 "configuration)",
				 ds.s, p->zone, from, p->zone);
		else
			snprintf(d->why, sizeof(d->why),
				 "dataset %s is sensitive (zone %s): host %s is not one of zone "
				 "%s's hosts (zone_hosts in quaid's configuration)",
				 ds.s, p->zone, from, p->zone);
		return 0;
	}

	/* (4) The rules, in order. */
	for (unsigned i = 0; i < p->nrules; i++) {
		const struct rule *rl = &p->rules[i];

		if (!rule_matches(rl, s, &r, cls, has_addr ? &addr : NULL))
			continue;
		decided(d, rl->allow, rl->name);
		if (rl->allow)
			return 1;
		who(subj, sizeof(subj), s, NULL);
		if (dataset[0])
			snprintf(d->why, sizeof(d->why), "rule %s denies %s %s of dataset %s (%s)",
				 rl->name, subj, op, ds.s, quai_class_name(cls));
		else
			snprintf(d->why, sizeof(d->why), "rule %s denies %s %s", rl->name, subj,
				 op);
		return 0;
	}

	/* (5) Nothing allows it. */
	decided(d, false, "default");
	who(subj, sizeof(subj), s, has_addr ? from : NULL);
	if (dataset[0])
		snprintf(d->why, sizeof(d->why),
			 "no rule allows %s to %s dataset %s (%s, zone %s): add a rule_NAME = "
			 "allow %s ... line to quaid's configuration",
			 subj, op, ds.s, quai_class_name(cls), zs.s, op);
	else
		snprintf(d->why, sizeof(d->why),
			 "no rule allows %s to %s: add a rule_NAME = allow %s ... line to "
			 "quaid's configuration",
			 subj, op, op);
	return 0;
}
