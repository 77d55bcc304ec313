/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The audit log: one JSON line per decided access, durable before the
 * decision is told (audit.h).
 *
 * The line is built by hand rather than with common/json.h's writer:
 * qaudit_format() writes into the caller's buffer snprintf-style and cannot
 * fail, while that writer grows a heap buffer and reports -ENOMEM.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it; standalone builds may not */
#endif
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auditchain.h"
#include "hostconf.h"
#include "quai/quai.h"
#include "sitekey.h"

struct qaudit {
	pthread_mutex_t mu; /* orders write + fdatasync, guards fd */
	int fd;
	/* The chain's head after this handle's last line: where a file just
	 * rotated (empty) goes on from (auditchain.h). */
	bool have_head;
	struct qach_head head;
	bool has_key;
	uint8_t sk[QACH_SK_BYTES]; /* qaudit_set_key(): every line signed */
	dev_t dev;		   /* the file fd has open, to notice it deleted or replaced */
	ino_t ino;
	void (*notify)(void *arg, const char *msg);
	void *notify_arg;
	char path[]; /* as given to qaudit_open(), for qaudit_reopen() */
};

/* ------------------------------------------------------------------------
 * Formatting
 * ------------------------------------------------------------------------ */

/* Output into a bounded buffer that counts what it could not hold, so a
 * first pass with a small buffer tells the size the line needs. */
struct out {
	char *buf;
	size_t cap; /* bytes of buf usable before the NUL */
	size_t n;   /* bytes the whole line needs so far */
};

static void put(struct out *o, const void *p, size_t len)
{
	if (o->n < o->cap) {
		size_t room = o->cap - o->n;

		memcpy(o->buf + o->n, p, len < room ? len : room);
	}
	o->n += len;
}

static void put_cstr(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_u64(struct out *o, uint64_t v)
{
	char digits[20];
	size_t i = sizeof(digits);

	do {
		digits[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(o, digits + i, sizeof(digits) - i);
}

/* The length of the well-formed UTF-8 sequence at s[0..len), or 0 when
 * there is none there (a stray continuation byte, a truncated sequence, an
 * overlong form, a surrogate or a code point past U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
	static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
	unsigned char c = s[0];
	size_t n;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc0 && c < 0xe0) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c < 0xf0) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c < 0xf8) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n > len)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* A JSON string literal for s, or null. Control bytes are written as
 * \u00XX; so is a byte that does not start a well-formed UTF-8 sequence,
 * as if it were Latin-1: the line stays valid UTF-8, and a reader sees
 * which bytes were odd. */
static void put_str(struct out *o, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t len, i = 0;

	if (!s) {
		put_cstr(o, "null");
		return;
	}
	len = strlen(s);
	put(o, "\"", 1);
	while (i < len) {
		size_t run = i, n;

		/* Copy runs of bytes that need no escape at once. */
		while (run < len && u[run] >= 0x20 && u[run] != '"' && u[run] != '\\' &&
		       (n = utf8_seq(u + run, len - run)) != 0)
			run += n;
		put(o, u + i, run - i);
		i = run;
		if (i == len)
			break;

		unsigned char c = u[i++];
		char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};

		if (c == '"' || c == '\\') {
			esc[1] = (char)c;
			put(o, esc, 2);
		} else {
			put(o, esc, sizeof(esc));
		}
	}
	put(o, "\"", 1);
}

/* A count or id, or null where the event says "unknown" (-1 for the
 * signed fields, 0 for the session). */
static void put_opt(struct out *o, uint64_t v, bool known)
{
	if (known)
		put_u64(o, v);
	else
		put_cstr(o, "null");
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ": RFC 3339 has four-digit years, so the time
 * is held to years 1970 to 9999. */
static void put_time(struct out *o, int64_t now_ms)
{
	const int64_t max_ms = INT64_C(253402300799999); /* 9999-12-31T23:59:59.999Z */
	char text[32];
	struct tm tm;
	time_t secs;
	int k;

	if (now_ms < 0)
		now_ms = 0;
	if (now_ms > max_ms)
		now_ms = max_ms;
	secs = (time_t)(now_ms / 1000);
	gmtime_r(&secs, &tm);
	k = snprintf(text, sizeof(text), "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     (int)(now_ms % 1000));
	put(o, text, (size_t)k);
}

size_t qaudit_format(const struct qaudit_event *ev, int64_t now_ms, char *buf, size_t len)
{
	struct out o = {.buf = buf, .cap = len ? len - 1 : 0};

	put_cstr(&o, "{\"time\":");
	put_time(&o, now_ms);
	put_cstr(&o, ",\"event\":");
	put_str(&o, ev->event);
	put_cstr(&o, ",\"session\":");
	put_opt(&o, ev->session, ev->session != 0);
	put_cstr(&o, ",\"user\":");
	put_str(&o, ev->user);
	put_cstr(&o, ",\"uid\":");
	put_opt(&o, (uint64_t)ev->uid, ev->uid >= 0);
	put_cstr(&o, ",\"group\":");
	put_str(&o, ev->group);
	put_cstr(&o, ",\"gid\":");
	put_opt(&o, (uint64_t)ev->gid, ev->gid >= 0);
	put_cstr(&o, ",\"host\":");
	put_str(&o, ev->host);
	put_cstr(&o, ",\"client\":");
	put_str(&o, ev->client);
	put_cstr(&o, ",\"op\":");
	put_str(&o, ev->op);
	put_cstr(&o, ",\"dataset\":");
	put_str(&o, ev->dataset);
	put_cstr(&o, ",\"classification\":");
	put_str(&o, ev->classification);
	put_cstr(&o, ",\"zone\":");
	put_str(&o, ev->zone);
	put_cstr(&o, ",\"bytes\":");
	put_opt(&o, (uint64_t)ev->bytes, ev->bytes >= 0);
	put_cstr(&o, ev->granted ? ",\"result\":\"granted\"" : ",\"result\":\"refused\"");
	put_cstr(&o, ",\"rule\":");
	put_str(&o, ev->rule);
	put_cstr(&o, ",\"reason\":");
	put_str(&o, ev->reason);
	put_cstr(&o, "}\n");

	if (len)
		buf[o.n < o.cap ? o.n : o.cap] = '\0';
	return o.n;
}

/* ------------------------------------------------------------------------
 * The file
 * ------------------------------------------------------------------------ */

static int open_log(const char *path, char *err, size_t err_len)
{
	/* Read and write: each line links to the last one, read back from the
	 * file (chain_write). */
	int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);

	if (fd < 0 && errno == EACCES) {
		int wfd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY);

		if (wfd >= 0) {
			close(wfd);
			if (err && err_len)
				snprintf(err, err_len,
					 "%s: can be appended to but not read, and each line of a "
					 "chained audit log links to the one before it: give its "
					 "writers read access too (docs/SECURITY.md)",
					 path);
			return -EACCES;
		}
		errno = EACCES;
	}
	if (fd < 0) {
		int e = errno;
		char ebuf[128];

		if (err && err_len)
			snprintf(err, err_len, "%s: %s", path, strerror_r(e, ebuf, sizeof(ebuf)));
		return -e;
	}
	return fd;
}

/* Makes fd the log's descriptor (closing the old one: every line written
 * to it was synced before its qaudit_log() returned) and notes its file. */
static void adopt(struct qaudit *a, int fd)
{
	struct stat st;

	if (a->fd >= 0)
		close(a->fd);
	a->fd = fd;
	a->dev = 0;
	a->ino = 0;
	if (fstat(fd, &st) == 0) {
		a->dev = st.st_dev;
		a->ino = st.st_ino;
	}
}

int qaudit_open(const char *path, struct qaudit **ret, char *err, size_t err_len)
{
	struct qaudit *a;
	size_t plen;
	int fd;

	if (!path || !ret)
		return -EINVAL;
	plen = strlen(path);
	a = malloc(sizeof(*a) + plen + 1);
	if (!a)
		return -ENOMEM;
	fd = open_log(path, err, err_len);
	if (fd < 0) {
		free(a);
		return fd;
	}
	pthread_mutex_init(&a->mu, NULL);
	a->fd = -1;
	a->notify = NULL;
	a->have_head = false;
	a->has_key = false;
	adopt(a, fd);
	memcpy(a->path, path, plen + 1);
	*ret = a;
	return 0;
}

/* One write(2) of the whole line: with O_APPEND, the kernel places it whole
 * at the end of the file, whoever else appends. */
static int write_line(int fd, const char *line, size_t len)
{
	ssize_t k;

	do
		k = write(fd, line, len);
	while (k < 0 && errno == EINTR);
	if (k < 0)
		return -errno;
	if ((size_t)k == len)
		return 0;
	/* Part of the line is in the file (a full disk, a size limit). End
	 * the fragment, if that still goes, so that the next line starts on
	 * a line of its own; the access is refused all the same. */
	do
		k = write(fd, "\n", 1);
	while (k < 0 && errno == EINTR);
	return -EIO;
}

/* Chains body (a qaudit_format() line) after the file's last line and
 * appends it, durable. The caller holds a->mu; flock(2) orders the
 * processes that append to one file (the host's log has many), so that
 * each reads the head it links to and appends before the next. */
static int chain_write(struct qaudit *a, const char *body, size_t n)
{
	char stack[2560], *line = stack;
	struct qach_head head;
	bool needs_nl;
	size_t len;
	int r;

	while (flock(a->fd, LOCK_EX) < 0)
		if (errno != EINTR)
			return -errno;
	r = qach_tail(a->fd, a->have_head ? &a->head : NULL, &head, &needs_nl);
	if (r < 0)
		goto unlock;
	/* A torn last line is ended first, so that it is a line of its own
	 * (hashed as it is) and the new one starts on its own. */
	stack[0] = '\n';
	len = qach_seal(body, n, &head, a->has_key ? a->sk : NULL, stack + 1, sizeof(stack) - 1);
	if (len == 0) {
		r = -EINVAL;
		goto unlock;
	}
	if (len + 1 >= sizeof(stack)) {
		line = malloc(len + 2);
		if (!line) {
			r = -ENOMEM;
			goto unlock;
		}
		line[0] = '\n';
		qach_seal(body, n, &head, a->has_key ? a->sk : NULL, line + 1, len + 1);
	}
	r = write_line(a->fd, needs_nl ? line : line + 1, len + needs_nl);
	while (r == 0 && fdatasync(a->fd) < 0)
		if (errno != EINTR)
			r = -errno;
	if (r == 0) {
		qach_hash(line + 1, len - 1, a->head.hash);
		a->head.seq = head.seq + 1;
		a->have_head = true;
	}
unlock:
	flock(a->fd, LOCK_UN);
	if (line != stack)
		free(line);
	return r;
}

/* Before each line, under the lock: whether the path still names the file
 * the descriptor has open. An administrator who deleted or replaced the
 * log (rm, mv, a rotation without SIGHUP) would otherwise have every later
 * line appended to a file nobody can read. Then the path is reopened (a
 * new file), and the new file's first line says what happened; when it
 * cannot be reopened the line is refused, and so the access. */
static int check_file(struct qaudit *a, int64_t now_ms)
{
	struct stat st;
	char why[PATH_MAX + 160], line[PATH_MAX + 512];
	const char *what;
	int fd, r;

	int gone = stat(a->path, &st) < 0;

	if (!gone && st.st_dev == a->dev && st.st_ino == a->ino)
		return 0;
	what = gone ? "deleted" : "replaced";
	fd = open_log(a->path, NULL, 0);
	if (fd < 0) {
		snprintf(why, sizeof(why),
			 "audit log %s was %s and cannot be reopened (%s): refusing every access",
			 a->path, what, strerror(-fd));
		if (a->notify)
			a->notify(a->notify_arg, why);
		return fd;
	}
	snprintf(why, sizeof(why),
		 "audit log %s was %s while it was open (inode %ju): reopened as a new file",
		 a->path, what, (uintmax_t)a->ino);
	adopt(a, fd);
	struct qaudit_event ev = {.event = "audit-log",
				  .uid = -1,
				  .gid = -1,
				  .op = "reopen",
				  .bytes = -1,
				  .granted = 1,
				  .reason = why};
	size_t n = qaudit_format(&ev, now_ms, line, sizeof(line));
	/* Chained on from the lost file's last line (a->head). */
	r = n < sizeof(line) ? chain_write(a, line, n) : -ENAMETOOLONG;
	if (a->notify)
		a->notify(a->notify_arg, why);
	return r;
}

void qaudit_set_notify(struct qaudit *a, void (*notify)(void *arg, const char *msg), void *arg)
{
	pthread_mutex_lock(&a->mu);
	a->notify = notify;
	a->notify_arg = arg;
	pthread_mutex_unlock(&a->mu);
}

int qaudit_log(struct qaudit *a, const struct qaudit_event *ev)
{
	char stack[2048], *line = stack;
	struct timespec ts;
	size_t n;
	int r;

	if (!a || !ev)
		return -EINVAL;
	/* The time is taken under the lock, so that the file is in time
	 * order: formatting is cheap next to the fdatasync that follows. */
	pthread_mutex_lock(&a->mu);
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	n = qaudit_format(ev, now_ms, stack, sizeof(stack));
	if (n >= sizeof(stack)) {
		line = malloc(n + 1);
		if (!line) {
			r = -ENOMEM;
			goto out;
		}
		qaudit_format(ev, now_ms, line, n + 1);
	}
	r = check_file(a, now_ms);
	if (r == 0)
		r = chain_write(a, line, n);
out:
	pthread_mutex_unlock(&a->mu);
	if (line != stack)
		free(line);
	return r;
}

void qaudit_set_key(struct qaudit *a, const uint8_t *sk)
{
	pthread_mutex_lock(&a->mu);
	a->has_key = sk != NULL;
	if (sk)
		memcpy(a->sk, sk, QACH_SK_BYTES);
	else
		explicit_bzero(a->sk, sizeof(a->sk));
	pthread_mutex_unlock(&a->mu);
}

int qaudit_reopen(struct qaudit *a, char *err, size_t err_len)
{
	int fd;

	if (!a)
		return -EINVAL;
	fd = open_log(a->path, err, err_len);
	if (fd < 0)
		return fd;
	pthread_mutex_lock(&a->mu);
	adopt(a, fd);
	pthread_mutex_unlock(&a->mu);
	return 0;
}

void qaudit_close(struct qaudit *a)
{
	if (!a)
		return;
	close(a->fd);
	pthread_mutex_destroy(&a->mu);
	explicit_bzero(a->sk, sizeof(a->sk));
	free(a);
}

int qaudit_load_key(struct qaudit *a, const char *path, char *err, size_t err_len)
{
	uint8_t sk[QKEY_SK_BYTES], pk[QKEY_PK_BYTES];
	char why[1400] = "";
	int r;

	if (!a || !path)
		return -EINVAL;
	r = qkey_load_secret(path, sk, pk, why, sizeof(why));
	if (r == 0)
		qaudit_set_key(a, sk);
	else if (err && err_len)
		snprintf(err, err_len, "audit_key: %s", why);
	explicit_bzero(sk, sizeof(sk));
	return r;
}

/* ---- the host's own log ------------------------------------------------ */

static int audit_setting(const char *key, const char *value, unsigned line, void *arg)
{
	char *path = arg;

	(void)line;
	if (strcmp(key, "audit_log") != 0)
		return 0;
	if (value[0] != '/' || strlen(value) >= PATH_MAX)
		return -QUAI_EFORMAT;
	memcpy(path, value, strlen(value) + 1);
	return 0;
}

int qaudit_local(const char *op, const char *dataset, int classification, const char *zone,
		 int64_t bytes, int granted, const char *rule, const char *why, char *err,
		 size_t err_len)
{
	char path[PATH_MAX] = "", host[256] = "", lerr[PATH_MAX + 128] = "";
	char pwbuf[1024], grbuf[1024];
	struct passwd pw, *pwp = NULL;
	struct group gr, *grp = NULL;
	struct qaudit *a = NULL;
	int r;

	r = qhc_load(qhc_path(), audit_setting, path, lerr, sizeof(lerr));
	if (r == -ENOENT || (r == 0 && !path[0]))
		return 0;
	if (r < 0) {
		snprintf(err, err_len, "the host's audit log cannot be told: %s", lerr);
		return r;
	}
	uid_t uid = getuid();
	gid_t gid = getgid();
	if (getpwuid_r(uid, &pw, pwbuf, sizeof(pwbuf), &pwp) != 0)
		pwp = NULL;
	if (getgrgid_r(gid, &gr, grbuf, sizeof(grbuf), &grp) != 0)
		grp = NULL;
	if (gethostname(host, sizeof(host) - 1) < 0)
		host[0] = '\0';
	struct qaudit_event ev = {
	    .event = "local",
	    .user = pwp ? pwp->pw_name : NULL,
	    .uid = uid,
	    .gid = gid,
	    .group = grp ? grp->gr_name : NULL,
	    .client = host[0] ? host : NULL,
	    .op = op,
	    .dataset = dataset,
	    .classification = classification ? quai_class_name(classification) : NULL,
	    .zone = zone,
	    .bytes = bytes,
	    .granted = granted,
	    .rule = rule,
	    .reason = granted ? NULL : why,
	};
	r = qaudit_open(path, &a, lerr, sizeof(lerr));
	if (r == 0) {
		r = qaudit_log(a, &ev);
		if (r < 0)
			snprintf(lerr, sizeof(lerr), "%s: %s", path, strerror(-r));
		qaudit_close(a);
	}
	if (r < 0)
		snprintf(err, err_len, "cannot write the host's audit log (audit_log in %s): %s",
			 qhc_path(), lerr);
	return r;
}
