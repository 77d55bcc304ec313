/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host configuration file: its parser, its loader, and the settings
 * read from it (the residency zone, the sovereign paths).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it; standalone builds may not */
#endif
#include "hostconf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quai/quai.h"
#include "strutil.h"

struct setting {
	const char *key;
	size_t key_len;
	const char *value;
	size_t value_len;
	unsigned line;
};

static void report(unsigned line, unsigned *ret_err_line, char *err_msg, size_t err_len,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void report(unsigned line, unsigned *ret_err_line, char *err_msg, size_t err_len,
		   const char *fmt, ...)
{
	va_list ap;

	if (ret_err_line)
		*ret_err_line = line;
	if (!err_msg || !err_len)
		return;
	va_start(ap, fmt);
	vsnprintf(err_msg, err_len, fmt, ap);
	va_end(ap);
}

/* A key or value as a message shows it: printable ASCII, at most 32 bytes,
 * since it may hold anything. */
static const char *printable(const char *s, size_t len, char buf[40])
{
	return qstr_printable(buf, 32, s, len);
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static int setting_cmp(const void *a, const void *b)
{
	const struct setting *x = *(const struct setting *const *)a;
	const struct setting *y = *(const struct setting *const *)b;
	size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
	int c = memcmp(x->key, y->key, n);

	if (c)
		return c;
	if (x->key_len != y->key_len)
		return x->key_len < y->key_len ? -1 : 1;
	/* Total order: equal keys sort by line, so the first stays first. */
	return x->line < y->line ? -1 : x->line > y->line;
}

/* Finds the earliest line that repeats a key, sorting rather than comparing
 * every pair: a hostile 1 MiB file holds ~300k settings. Returns 0 (no
 * repeat, *ret_dup NULL), or -ENOMEM. */
static int find_duplicate(struct setting *set, size_t n, const struct setting **ret_dup,
			  const struct setting **ret_first)
{
	const struct setting **sorted;

	*ret_dup = NULL;
	if (n < 2)
		return 0;
	sorted = malloc(n * sizeof(*sorted));
	if (!sorted)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		sorted[i] = &set[i];
	qsort(sorted, n, sizeof(*sorted), setting_cmp);
	for (size_t i = 1; i < n; i++) {
		const struct setting *a = sorted[i - 1], *b = sorted[i];

		if (a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0 &&
		    (!*ret_dup || b->line < (*ret_dup)->line)) {
			*ret_dup = b;
			*ret_first = a;
		}
	}
	free(sorted);
	return 0;
}

/* Checks one line; returns NULL when it is good, else why it is not (in
 * `why` when the reason quotes the line). Fills *s for a setting. */
static const char *check_line(const char *l, size_t llen, struct setting *s, bool *ret_setting,
			      char why[80])
{
	const char *eq, *v;
	size_t klen, vlen;
	char shown[40];

	*ret_setting = false;
	if (llen > QHC_LINE_MAX)
		return "line longer than 4096 bytes";
	if (memchr(l, '\0', llen))
		return "NUL byte";
	while (llen && is_blank(*l)) {
		l++;
		llen--;
	}
	if (!llen || *l == '#')
		return NULL;
	eq = memchr(l, '=', llen);
	klen = eq ? (size_t)(eq - l) : 0;
	while (klen && is_blank(l[klen - 1]))
		klen--;
	if (!klen)
		return "expected 'key = value'";
	for (size_t i = 0; i < klen; i++) {
		char c = l[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
			snprintf(why, 80, "invalid key '%s'", printable(l, klen, shown));
			return why;
		}
	}
	v = eq + 1;
	vlen = (size_t)(l + llen - v);
	while (vlen && is_blank(*v)) {
		v++;
		vlen--;
	}
	while (vlen && is_blank(v[vlen - 1]))
		vlen--;
	*s = (struct setting){l, klen, v, vlen, 0};
	*ret_setting = true;
	return NULL;
}

int qhc_parse(const char *text, size_t len, qhc_setting_fn cb, void *arg, unsigned *ret_err_line,
	      char *err_msg, size_t err_len)
{
	struct setting *set = NULL;
	size_t n = 0, cap = 0;
	const struct setting *dup, *first = NULL;
	const char *bad = NULL;
	char why[80], shown[40];
	unsigned line = 0;
	int r;

	if (len > QHC_FILE_MAX) {
		report(0, ret_err_line, err_msg, err_len, "larger than %u bytes", QHC_FILE_MAX);
		return -QUAI_EFORMAT;
	}

	/* Check the whole text first, so that cb sees all settings or none. */
	for (size_t pos = 0; pos < len && !bad;) {
		const char *l = text + pos, *nl = memchr(l, '\n', len - pos);
		size_t llen = nl ? (size_t)(nl - l) : len - pos;
		struct setting s;
		bool is_setting;

		pos += llen + (nl != NULL);
		line++;
		bad = check_line(l, llen, &s, &is_setting, why);
		if (bad || !is_setting)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct setting *ns = realloc(set, ncap * sizeof(*ns));

			if (!ns) {
				free(set);
				return -ENOMEM;
			}
			set = ns;
			cap = ncap;
		}
		s.line = line;
		set[n++] = s;
	}

	/* Every setting recorded lies before a bad line, so a repeated key is
	 * the first fault when there is one. */
	r = find_duplicate(set, n, &dup, &first);
	if (r < 0)
		goto out;
	if (dup) {
		report(dup->line, ret_err_line, err_msg, err_len,
		       "duplicate key '%s' (first set on line %u)",
		       printable(dup->key, dup->key_len, shown), first->line);
		r = -QUAI_EFORMAT;
		goto out;
	}
	if (bad) {
		report(line, ret_err_line, err_msg, err_len, "%s", bad);
		r = -QUAI_EFORMAT;
		goto out;
	}

	for (size_t i = 0; i < n && cb; i++) {
		/* key '\0' value '\0' fit in the line's bytes plus one. */
		char buf[QHC_LINE_MAX + 2];
		const struct setting *s = &set[i];

		memcpy(buf, s->key, s->key_len);
		buf[s->key_len] = '\0';
		memcpy(buf + s->key_len + 1, s->value, s->value_len);
		buf[s->key_len + 1 + s->value_len] = '\0';
		r = cb(buf, buf + s->key_len + 1, s->line, arg);
		if (r < 0) {
			report(s->line, ret_err_line, err_msg, err_len,
			       "invalid value for key '%s': \"%s\"", buf,
			       printable(s->value, s->value_len, shown));
			goto out;
		}
	}
	r = 0;
out:
	free(set);
	return r;
}

const char *qhc_path(void)
{
	const char *p = secure_getenv("QUAI_CONF");

	return p && *p ? p : QHC_DEFAULT_PATH;
}

/* Reads at most QHC_FILE_MAX + 1 bytes of fd: one more than allowed tells
 * a file that is too large. */
static int read_bounded(int fd, char **ret_data, size_t *ret_len)
{
	size_t len = 0, cap = 4096;
	char *data = malloc(cap);

	if (!data)
		return -ENOMEM;
	for (;;) {
		ssize_t k;

		if (len == cap) {
			char *nd;

			if (cap > QHC_FILE_MAX)
				break;
			cap = cap * 2 > QHC_FILE_MAX + 1 ? QHC_FILE_MAX + 1 : cap * 2;
			nd = realloc(data, cap);
			if (!nd) {
				free(data);
				return -ENOMEM;
			}
			data = nd;
		}
		k = read(fd, data + len, cap - len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int e = errno;

			free(data);
			return -e;
		}
		if (k == 0)
			break;
		len += (size_t)k;
	}
	*ret_data = data;
	*ret_len = len;
	return 0;
}

int qhc_load(const char *path, qhc_setting_fn cb, void *arg, char *err_msg, size_t err_len)
{
	char msg[128] = "", ebuf[128];
	unsigned line = 0;
	char *data = NULL;
	size_t len = 0;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		r = -errno;
		if (r != -ENOENT)
			report(0, NULL, err_msg, err_len, "%s: %s", path,
			       strerror_r(-r, ebuf, sizeof(ebuf)));
		return r;
	}
	r = read_bounded(fd, &data, &len);
	close(fd);
	if (r < 0) {
		report(0, NULL, err_msg, err_len, "%s: %s", path,
		       strerror_r(-r, ebuf, sizeof(ebuf)));
		return r;
	}
	r = qhc_parse(data, len, cb, arg, &line, msg, sizeof(msg));
	free(data);
	if (r == -ENOMEM)
		report(0, NULL, err_msg, err_len, "%s: %s", path,
		       strerror_r(ENOMEM, ebuf, sizeof(ebuf)));
	else if (r < 0 && line)
		report(0, NULL, err_msg, err_len, "%s:%u: %s", path, line, msg);
	else if (r < 0)
		report(0, NULL, err_msg, err_len, "%s: %s", path, msg);
	return r;
}

static int zone_setting(const char *key, const char *value, unsigned line, void *arg)
{
	char *zone = arg;

	(void)line;
	if (strcmp(key, "zone") != 0)
		return 0;
	if (quai_zone_check(value) < 0)
		return -QUAI_EFORMAT;
	memcpy(zone, value, strlen(value) + 1);
	return 0;
}

int quai_host_zone(char *buf, size_t len, char *err_msg, size_t err_msg_len)
{
	char zone[QUAI_ZONE_MAX + 1] = "none";
	size_t n;
	int r;

	r = qhc_load(qhc_path(), zone_setting, zone, err_msg, err_msg_len);
	if (r < 0 && r != -ENOENT)
		return r;
	n = strlen(zone);
	if (!buf || n >= len) {
		report(0, NULL, err_msg, err_msg_len, "zone '%s' needs a buffer of %zu bytes", zone,
		       n + 1);
		return -ERANGE;
	}
	memcpy(buf, zone, n + 1);
	return 0;
}

/* ------------------------------------------------------------------------
 * Sovereign paths
 * ------------------------------------------------------------------------ */

#define SOVEREIGN_KEY "sovereign_paths"

struct sovereign {
	bool set;
	char value[QHC_LINE_MAX + 1];
};

/* Every entry absolute, none empty: a relative one would depend on the
 * working directory of whoever reads the file. */
static int sovereign_setting(const char *key, const char *value, unsigned line, void *arg)
{
	struct sovereign *sov = arg;
	size_t n = strlen(value);

	(void)line;
	if (strcmp(key, SOVEREIGN_KEY) != 0)
		return 0;
	for (const char *p = value;;) {
		const char *colon = strchr(p, ':');

		if (*p != '/')
			return -EINVAL;
		if (!colon)
			break;
		p = colon + 1;
	}
	if (n >= sizeof(sov->value))
		return -EINVAL;
	memcpy(sov->value, value, n + 1);
	sov->set = true;
	return 0;
}

/* dest with its deepest existing ancestor resolved by realpath(3) and the
 * rest appended as written, into out (PATH_MAX bytes). Returns 0,
 * -QUAI_EPOLICY for a ".." or a dangling link in the rest, or -errno; err
 * set on failure. */
static int resolve_dest(const char *dest, char *out, char *err, size_t err_len)
{
	char head[PATH_MAX], ebuf[128];
	size_t len = strlen(dest), rest, n;
	int r;

	if (!len) {
		report(0, NULL, err, err_len, "'': %s", strerror_r(ENOENT, ebuf, sizeof(ebuf)));
		return -ENOENT;
	}
	if (len >= sizeof(head)) {
		r = -ENAMETOOLONG;
		goto fail;
	}
	memcpy(head, dest, len + 1);
	rest = len;
	for (;;) {
		struct stat st;
		char *slash;

		/* head: a prefix of dest, without trailing slashes ("/" kept). */
		n = strlen(head);
		while (n > 1 && head[n - 1] == '/')
			head[--n] = '\0';
		if (realpath(head, out))
			break;
		r = -errno;
		/* "." failing: the working directory is gone. */
		if ((r != -ENOENT && r != -ENOTDIR) || strcmp(head, ".") == 0)
			goto fail;
		if (r == -ENOENT && lstat(head, &st) == 0) {
			report(0, NULL, err, err_len,
			       "destination %s is not a sovereign path on this host: it goes "
			       "through %s, a symbolic link to nothing",
			       dest, head);
			return -QUAI_EPOLICY;
		}
		slash = strrchr(head, '/');
		if (!slash) {
			rest = 0;
			memcpy(head, ".", 2);
		} else {
			rest = (size_t)(slash + 1 - head);
			slash[slash == head] = '\0';
		}
	}

	/* Append what does not exist yet, component by component. */
	n = strlen(out);
	for (const char *p = dest + rest; *p;) {
		size_t c = strcspn(p, "/");

		if (c == 2 && p[0] == '.' && p[1] == '.') {
			report(0, NULL, err, err_len,
			       "destination %s is not a sovereign path on this host: '..' in a "
			       "destination that does not exist yet is refused",
			       dest);
			return -QUAI_EPOLICY;
		}
		if (c && !(c == 1 && p[0] == '.')) {
			bool root = n == 1;

			if (n + !root + c >= PATH_MAX) {
				r = -ENAMETOOLONG;
				goto fail;
			}
			if (!root)
				out[n++] = '/';
			memcpy(out + n, p, c);
			n += c;
			out[n] = '\0';
		}
		p += c;
		p += *p == '/';
	}
	return 0;
fail:
	report(0, NULL, err, err_len, "'%s': %s", dest, strerror_r(-r, ebuf, sizeof(ebuf)));
	return r;
}

/* path lies in dir or is dir, both resolved: whole components only. */
static bool covers(const char *dir, const char *path)
{
	size_t n = strlen(dir);

	if (strcmp(dir, "/") == 0)
		return true;
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

int qhc_sovereign_check(const char *dest, char *err, size_t err_len)
{
	const char *conf = qhc_path();
	struct sovereign *sov;
	char resolved[PATH_MAX], dir[PATH_MAX], shown[PATH_MAX + 40] = "";
	int r;

	if (!dest)
		return -EINVAL;
	sov = calloc(1, sizeof(*sov));
	if (!sov)
		return -ENOMEM;
	r = qhc_load(conf, sovereign_setting, sov, err, err_len);
	if (r < 0 && r != -ENOENT)
		goto out;
	r = resolve_dest(dest, resolved, err, err_len);
	if (r < 0)
		goto out;
	if (strcmp(resolved, dest) != 0)
		snprintf(shown, sizeof(shown), " (%s)", resolved);
	if (!sov->set) {
		report(0, NULL, err, err_len,
		       "destination %s%s is not a sovereign path: this host declares no "
		       "sovereign paths (" SOVEREIGN_KEY " in %s)",
		       dest, shown, conf);
		r = -QUAI_EPOLICY;
		goto out;
	}
	r = -QUAI_EPOLICY;
	for (char *p = sov->value, *next; p; p = next) {
		next = strchr(p, ':');
		if (next)
			*next++ = '\0';
		/* One that cannot be resolved (not there yet, unreadable)
		 * covers nothing. */
		if (realpath(p, dir) && covers(dir, resolved)) {
			r = 0;
			break;
		}
	}
	if (r < 0)
		report(0, NULL, err, err_len,
		       "destination %s%s is not a sovereign path on this host (see " SOVEREIGN_KEY
		       " in %s)",
		       dest, shown, conf);
out:
	free(sov);
	return r;
}

int qhc_zone_allows(const char *name, const char *zone, const char *what, char *err, size_t err_len)
{
	char host[QUAI_ZONE_MAX + 1], zerr[512] = "";
	int r = quai_host_zone(host, sizeof(host), zerr, sizeof(zerr));

	if (r < 0) {
		report(0, NULL, err, err_len,
		       "dataset %s is sensitive, of zone %s, and this host's residency zone cannot "
		       "be told: %s",
		       name, zone, zerr[0] ? zerr : quai_strerror(r));
		return -QUAI_EPOLICY;
	}
	if (strcmp(host, zone) != 0) {
		report(0, NULL, err, err_len,
		       "dataset %s is sensitive, of zone %s; this host is in zone %s (zone in %s), "
		       "and sensitive data is %s only within its zone",
		       name, zone, host, qhc_path(), what);
		return -QUAI_EPOLICY;
	}
	return 0;
}
