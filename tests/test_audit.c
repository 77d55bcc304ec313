/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The audit log (stager/site/audit.h): the line's fields and escaping, read
 * back with the project's JSON reader; whole lines under many threads;
 * rotation; lines that survive the writer's SIGKILL; open errors.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it; standalone builds may not */
#endif
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "hostdecide.h"
#include "json.h"
#include "testutil.h"

/* 2026-11-25T12:00:00.123Z */
#define SOME_TIME INT64_C(1795608000123)

/* The fields of a line, in their order. */
static const char *const field_order[] = {
    "time", "event",   "session",	 "user", "uid",	  "group",  "gid",  "host",   "client",
    "op",   "dataset", "classification", "zone", "bytes", "result", "rule", "reason",
};

static const char *field_name(size_t i)
{
	return field_order[i];
}

static const struct qaudit_event full_event = {
    .event = "access",
    .session = 7,
    .user = "alice",
    .uid = 1001,
    .group = "train",
    .gid = 2000,
    .host = "10.1.0.7",
    .client = "node7",
    .op = "pull",
    .dataset = "era5",
    .classification = "sensitive",
    .zone = "fr-1",
    .bytes = 123,
    .granted = 1,
    .rule = "train_read",
    .reason = NULL,
};

/* Formats ev into a new buffer, checking the length contract. */
static char *format(const struct qaudit_event *ev, int64_t now_ms, size_t *ret_len)
{
	size_t n = qaudit_format(ev, now_ms, NULL, 0);
	char *buf = malloc(n + 1);

	cr_assert_not_null(buf);
	cr_assert_eq(qaudit_format(ev, now_ms, buf, n + 1), n);
	cr_assert_eq(strlen(buf), n);
	cr_assert(n > 0 && buf[n - 1] == '\n', "no newline: %s", buf);
	cr_assert_null(memchr(buf, '\n', n - 1), "newline inside the line: %s", buf);
	if (ret_len)
		*ret_len = n;
	return buf;
}

/* Parses one line (with or without its '\n') and checks that it is an
 * object with exactly the documented fields, in order. */
static qjs_doc *parse_line(const char *line, size_t len)
{
	struct qjs_error e;
	qjs_doc *doc = NULL;
	int r = qjs_parse(line, len, &doc, &e);

	cr_assert_eq(r, 0, "not JSON (%s at %zu): %.*s", e.message, e.offset, (int)len, line);
	const qjs_value *root = qjs_root(doc);
	cr_assert_eq(qjs_type(root), QJS_OBJECT);
	size_t nfields = sizeof(field_order) / sizeof(field_order[0]);
	/* A line of a log file ends with its place in the hash chain
	 * (auditchain.h); a line from qaudit_format() has none. */
	bool chained = qjs_len(root) == nfields + 2;
	cr_assert(qjs_len(root) == nfields || chained, "%zu fields", qjs_len(root));
	for (size_t i = 0; i < nfields; i++)
		cr_assert_str_eq(qjs_key_at(root, i), field_name(i), "field %zu", i);
	if (chained) {
		cr_assert_str_eq(qjs_key_at(root, nfields), "seq");
		cr_assert_str_eq(qjs_key_at(root, nfields + 1), "prev");
	}
	return doc;
}

static const qjs_value *field(qjs_doc *doc, const char *key)
{
	const qjs_value *v = qjs_get(qjs_root(doc), key);

	cr_assert_not_null(v, "no field %s", key);
	return v;
}

static void expect_str(qjs_doc *doc, const char *key, const char *want, size_t want_len)
{
	size_t len;
	const char *s = qjs_str(field(doc, key), &len);

	cr_assert_not_null(s, "%s is not a string", key);
	cr_expect_eq(len, want_len, "%s: length %zu, want %zu", key, len, want_len);
	cr_expect(len == want_len && memcmp(s, want, len) == 0, "%s: '%s'", key, s);
}

static void expect_u64(qjs_doc *doc, const char *key, uint64_t want)
{
	uint64_t v = 0;

	cr_assert_eq(qjs_u64(field(doc, key), &v), 0, "%s is not an integer", key);
	cr_expect_eq(v, want, "%s: %llu, want %llu", key, (unsigned long long)v,
		     (unsigned long long)want);
}

static void expect_null(qjs_doc *doc, const char *key)
{
	cr_expect_eq(qjs_type(field(doc, key)), QJS_NULL, "%s is not null", key);
}

/* ------------------------------------------------------------------------
 * The line
 * ------------------------------------------------------------------------ */

Test(audit, every_field_in_order)
{
	char *line = format(&full_event, SOME_TIME, NULL);

	cr_expect_str_eq(
	    line, "{\"time\":\"2026-11-25T12:00:00.123Z\",\"event\":\"access\",\"session\":7,"
		  "\"user\":\"alice\",\"uid\":1001,\"group\":\"train\",\"gid\":2000,"
		  "\"host\":\"10.1.0.7\",\"client\":\"node7\",\"op\":\"pull\","
		  "\"dataset\":\"era5\",\"classification\":\"sensitive\",\"zone\":\"fr-1\","
		  "\"bytes\":123,\"result\":\"granted\",\"rule\":\"train_read\","
		  "\"reason\":null}\n");
	qjs_doc *doc = parse_line(line, strlen(line));
	expect_str(doc, "time", "2026-11-25T12:00:00.123Z", 24);
	expect_u64(doc, "session", 7);
	expect_u64(doc, "uid", 1001);
	expect_u64(doc, "gid", 2000);
	expect_u64(doc, "bytes", 123);
	expect_str(doc, "result", "granted", 7);
	expect_null(doc, "reason");
	qjs_free(doc);
	free(line);
}

Test(audit, unknowns_are_null)
{
	struct qaudit_event ev = {.session = 0, .uid = -1, .gid = -1, .bytes = -1};
	char *line = format(&ev, SOME_TIME, NULL);
	qjs_doc *doc = parse_line(line, strlen(line));

	for (size_t i = 1; i < sizeof(field_order) / sizeof(field_order[0]); i++) {
		if (strcmp(field_name(i), "result") == 0)
			expect_str(doc, "result", "refused", 7);
		else
			expect_null(doc, field_name(i));
	}
	qjs_free(doc);
	free(line);
}

Test(audit, refused_with_reason_and_large_numbers)
{
	struct qaudit_event ev = full_event;

	ev.granted = 0;
	ev.reason = "zone fr-1 only";
	ev.session = UINT64_MAX;
	ev.uid = INT64_MAX;
	ev.gid = 0;
	ev.bytes = 0;
	char *line = format(&ev, SOME_TIME, NULL);
	qjs_doc *doc = parse_line(line, strlen(line));
	expect_str(doc, "result", "refused", 7);
	expect_str(doc, "reason", "zone fr-1 only", 14);
	expect_u64(doc, "session", UINT64_MAX);
	expect_u64(doc, "uid", INT64_MAX);
	expect_u64(doc, "gid", 0);
	expect_u64(doc, "bytes", 0);
	qjs_free(doc);
	free(line);
}

Test(audit, time_is_rfc3339_utc_with_milliseconds)
{
	static const struct {
		int64_t ms;
		const char *text;
	} cases[] = {
	    {0, "1970-01-01T00:00:00.000Z"},
	    {1, "1970-01-01T00:00:00.001Z"},
	    {INT64_C(1709251199999), "2024-02-29T23:59:59.999Z"},
	    {INT64_C(1709251200000), "2024-03-01T00:00:00.000Z"},
	    /* Held to what four-digit years can say. */
	    {-5, "1970-01-01T00:00:00.000Z"},
	    {INT64_MAX, "9999-12-31T23:59:59.999Z"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *line = format(&full_event, cases[i].ms, NULL);
		qjs_doc *doc = parse_line(line, strlen(line));

		expect_str(doc, "time", cases[i].text, strlen(cases[i].text));
		qjs_free(doc);
		free(line);
	}
}

Test(audit, strings_are_escaped)
{
	static const struct {
		const char *in;
		const char *written; /* between the quotes */
		const char *decoded; /* what a JSON reader gets back */
	} cases[] = {
	    {"plain", "plain", "plain"},
	    {"", "", ""},
	    {"a\"b\\c/d", "a\\\"b\\\\c/d", "a\"b\\c/d"},
	    {"\n\r\t\x01\x1f", "\\u000a\\u000d\\u0009\\u0001\\u001f", "\n\r\t\x01\x1f"},
	    {"del\x7f", "del\x7f", "del\x7f"},
	    /* Well-formed UTF-8 is kept as it is. */
	    {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",
	     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",
	     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf"},
	    /* Other bytes become \u00XX, one each; a reader gets U+00XX. */
	    {"\xff", "\\u00ff", "\xc3\xbf"},
	    {"\x80x", "\\u0080x", "\xc2\x80x"},
	    {"\xc0\xaf", "\\u00c0\\u00af", "\xc3\x80\xc2\xaf"},	   /* overlong '/' */
	    {"\xe2\x82", "\\u00e2\\u0082", "\xc3\xa2\xc2\x82"},	   /* truncated */
	    {"\xe2\x82z", "\\u00e2\\u0082z", "\xc3\xa2\xc2\x82z"}, /* cut short */
	    {"\xed\xa0\x80", "\\u00ed\\u00a0\\u0080", "\xc3\xad\xc2\xa0\xc2\x80"}, /* surrogate */
	    {"\xf4\x90\x80\x80", "\\u00f4\\u0090\\u0080\\u0080",
	     "\xc3\xb4\xc2\x90\xc2\x80\xc2\x80"}, /* past U+10FFFF */
	    {"\xf8\x88\x80\x80\x80", "\\u00f8\\u0088\\u0080\\u0080\\u0080",
	     "\xc3\xb8\xc2\x88\xc2\x80\xc2\x80\xc2\x80"},
	    {"ok\xc3\xa9\xc3", "ok\xc3\xa9\\u00c3", "ok\xc3\xa9\xc3\x83"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct qaudit_event ev = full_event;
		char want[256];

		ev.reason = cases[i].in;
		ev.user = cases[i].in;
		char *line = format(&ev, SOME_TIME, NULL);
		snprintf(want, sizeof(want), "\"reason\":\"%s\"}\n", cases[i].written);
		cr_expect(strstr(line, want), "case %zu: %s lacks %s", i, line, want);
		qjs_doc *doc = parse_line(line, strlen(line));
		expect_str(doc, "reason", cases[i].decoded, strlen(cases[i].decoded));
		expect_str(doc, "user", cases[i].decoded, strlen(cases[i].decoded));
		qjs_free(doc);
		free(line);
	}
}

Test(audit, every_byte_value_in_every_field)
{
	char s[256];
	struct qaudit_event ev = full_event;

	for (int i = 1; i < 256; i++)
		s[i - 1] = (char)i;
	s[255] = '\0';
	ev.event = ev.user = ev.group = ev.host = ev.client = ev.op = ev.dataset =
	    ev.classification = ev.zone = ev.rule = ev.reason = s;
	char *line = format(&ev, SOME_TIME, NULL);
	qjs_doc *doc = parse_line(line, strlen(line));
	qjs_free(doc);
	free(line);
}

Test(audit, small_buffers_hold_a_prefix)
{
	size_t n;
	char *whole = format(&full_event, SOME_TIME, &n);
	char buf[512];

	cr_assert_lt(n, sizeof(buf));
	for (size_t len = 1; len <= n + 1; len++) {
		memset(buf, 'X', sizeof(buf));
		cr_assert_eq(qaudit_format(&full_event, SOME_TIME, buf, len), n);
		cr_assert_eq(buf[len - 1], '\0', "len %zu", len);
		cr_assert_eq(memcmp(buf, whole, len - 1), 0, "len %zu", len);
		cr_assert_eq(buf[len], 'X', "wrote past %zu", len);
	}
	free(whole);
}

/* ------------------------------------------------------------------------
 * The file
 * ------------------------------------------------------------------------ */

static char dir[512];

static void make_dir(void)
{
	umask(022);
	tu_mkdtemp(dir, sizeof(dir));
}

static void remove_dir(void)
{
	tu_rmtree(dir);
}

TestSuite(audit_log, .init = make_dir, .fini = remove_dir);

static void path_in_dir(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

/* Reads a log: every line whole, valid JSON, with its fields. Returns the
 * number of lines; *ret_docs (if given) their parsed documents. */
static size_t read_log(const char *path, qjs_doc ***ret_docs)
{
	size_t len, n = 0, cap = 0;
	char *text = (char *)tu_read(path, &len);
	qjs_doc **docs = NULL;

	cr_assert(len == 0 || text[len - 1] == '\n', "%s ends in a partial line", path);
	for (size_t pos = 0; pos < len;) {
		char *nl = memchr(text + pos, '\n', len - pos);
		qjs_doc *doc = parse_line(text + pos, (size_t)(nl - (text + pos)));

		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			docs = realloc(docs, cap * sizeof(*docs));
			cr_assert_not_null(docs);
		}
		docs[n++] = doc;
		pos = (size_t)(nl - text) + 1;
	}
	free(text);
	if (ret_docs) {
		*ret_docs = docs;
	} else {
		for (size_t i = 0; i < n; i++)
			qjs_free(docs[i]);
		free(docs);
	}
	return n;
}

static void free_docs(qjs_doc **docs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		qjs_free(docs[i]);
	free(docs);
}

/* An event told apart by its session number. */
static struct qaudit_event numbered(uint64_t session)
{
	struct qaudit_event ev = full_event;

	ev.session = session;
	return ev;
}

Test(audit_log, lines_are_appended_and_durable)
{
	char path[600], err[700] = "";
	struct qaudit *a = NULL;
	struct stat st;
	qjs_doc **docs;

	path_in_dir(path, sizeof(path), "audit.log");
	cr_assert_eq(qaudit_open(path, &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq(st.st_mode & 07777, 0640, "mode %o", st.st_mode & 07777);
	time_t before = time(NULL);
	for (uint64_t i = 1; i <= 3; i++) {
		struct qaudit_event ev = numbered(i);
		cr_assert_eq(qaudit_log(a, &ev), 0);
	}
	time_t after = time(NULL);
	qaudit_close(a);

	/* Opened again, the log is appended to, not truncated. */
	cr_assert_eq(qaudit_open(path, &a, err, sizeof(err)), 0, "%s", err);
	struct qaudit_event ev = numbered(4);
	cr_assert_eq(qaudit_log(a, &ev), 0);
	qaudit_close(a);

	size_t n = read_log(path, &docs);
	cr_assert_eq(n, 4);
	for (size_t i = 0; i < n; i++) {
		expect_u64(docs[i], "session", i + 1);
		/* The time is now, in UTC. */
		size_t tlen;
		const char *t = qjs_str(field(docs[i], "time"), &tlen);
		struct tm tm = {0};
		cr_assert_eq(tlen, 24);
		cr_assert_not_null(strptime(t, "%Y-%m-%dT%H:%M:%S", &tm), "%s", t);
		time_t secs = timegm(&tm);
		cr_expect(secs >= before && secs <= after + 1, "%s not in [%lld, %lld]", t,
			  (long long)before, (long long)after);
	}
	free_docs(docs, n);
}

Test(audit_log, long_lines_are_written_whole)
{
	char path[600], err[700] = "";
	struct qaudit *a = NULL;
	size_t big = 200000;
	char *reason = malloc(big + 1);
	qjs_doc **docs;

	cr_assert_not_null(reason);
	for (size_t i = 0; i < big; i++)
		reason[i] = i % 97 == 0 ? '"' : (char)('a' + i % 26);
	reason[big] = '\0';
	path_in_dir(path, sizeof(path), "long.log");
	cr_assert_eq(qaudit_open(path, &a, err, sizeof(err)), 0, "%s", err);
	struct qaudit_event ev = full_event;
	ev.reason = reason;
	cr_assert_eq(qaudit_log(a, &ev), 0);
	ev = numbered(2);
	cr_assert_eq(qaudit_log(a, &ev), 0);
	qaudit_close(a);

	cr_assert_eq(read_log(path, &docs), 2);
	expect_str(docs[0], "reason", reason, big);
	expect_u64(docs[1], "session", 2);
	free_docs(docs, 2);
	free(reason);
}

struct writer {
	struct qaudit *a;
	unsigned id;
	int failures;
};

#define THREADS 8
#define PER_THREAD 200

static void *write_lines(void *arg)
{
	struct writer *w = arg;
	/* Lines of different lengths, so that torn writes would show. */
	char reason[300];

	for (unsigned i = 0; i < PER_THREAD; i++) {
		struct qaudit_event ev = numbered((uint64_t)w->id * 1000 + i + 1);
		size_t len = (w->id * 37 + i * 11) % (sizeof(reason) - 1);

		memset(reason, 'a' + (char)w->id, len);
		reason[len] = '\0';
		ev.reason = reason;
		w->failures += qaudit_log(w->a, &ev) != 0;
	}
	return NULL;
}

Test(audit_log, threads_write_whole_lines, .timeout = 120)
{
	char path[600], err[700] = "";
	struct writer w[THREADS];
	pthread_t t[THREADS];
	struct qaudit *a = NULL;
	unsigned next[THREADS] = {0};
	qjs_doc **docs;

	path_in_dir(path, sizeof(path), "threads.log");
	cr_assert_eq(qaudit_open(path, &a, err, sizeof(err)), 0, "%s", err);
	for (unsigned i = 0; i < THREADS; i++) {
		w[i] = (struct writer){.a = a, .id = i};
		cr_assert_eq(pthread_create(&t[i], NULL, write_lines, &w[i]), 0);
	}
	for (unsigned i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		cr_expect_eq(w[i].failures, 0);
	}
	qaudit_close(a);

	size_t n = read_log(path, &docs);
	cr_assert_eq(n, THREADS * PER_THREAD);
	for (size_t i = 0; i < n; i++) {
		uint64_t s = 0;
		cr_assert_eq(qjs_u64(field(docs[i], "session"), &s), 0);
		unsigned id = (unsigned)((s - 1) / 1000), k = (unsigned)((s - 1) % 1000);
		cr_assert_lt(id, THREADS);
		/* Each thread's lines in the order it wrote them. */
		cr_assert_eq(k, next[id], "thread %u: line %u after %u", id, k, next[id]);
		next[id]++;
		size_t len = (id * 37 + k * 11) % 299, rlen;
		const char *r = qjs_str(field(docs[i], "reason"), &rlen);
		cr_assert_eq(rlen, len);
		for (size_t j = 0; j < rlen; j++)
			cr_assert_eq(r[j], 'a' + (char)id);
	}
	free_docs(docs, n);
}

Test(audit_log, reopen_follows_rotation)
{
	char path[600], old[600], err[700] = "";
	struct qaudit *a = NULL;
	qjs_doc **docs;

	path_in_dir(path, sizeof(path), "rot.log");
	path_in_dir(old, sizeof(old), "rot.log.1");
	cr_assert_eq(qaudit_open(path, &a, err, sizeof(err)), 0, "%s", err);
	for (uint64_t i = 1; i <= 3; i++) {
		struct qaudit_event ev = numbered(i);
		cr_assert_eq(qaudit_log(a, &ev), 0);
	}
	cr_assert_eq(rename(path, old), 0);
	/* Before the SIGHUP, the next line already goes to a new file at the
	 * path, after a line saying the old one went (issue 22 #8: lines
	 * once went on into the renamed file). */
	struct qaudit_event ev = numbered(4);
	cr_assert_eq(qaudit_log(a, &ev), 0);
	cr_assert_eq(qaudit_reopen(a, err, sizeof(err)), 0, "%s", err);
	for (uint64_t i = 5; i <= 6; i++) {
		ev = numbered(i);
		cr_assert_eq(qaudit_log(a, &ev), 0);
	}
	qaudit_close(a);

	size_t n = read_log(old, &docs), len;
	cr_assert_eq(n, 3);
	for (size_t i = 0; i < n; i++)
		expect_u64(docs[i], "session", i + 1);
	free_docs(docs, n);
	n = read_log(path, &docs);
	cr_assert_eq(n, 4);
	cr_assert_str_eq(qjs_str(field(docs[0], "event"), &len), "audit-log");
	for (size_t i = 1; i < n; i++)
		expect_u64(docs[i], "session", i + 3);
	free_docs(docs, n);
}

/* SIGHUP's reopen failing keeps the old descriptor; but a line is never
 * written to a file the path no longer names: it is refused. */
Test(audit_log, failed_reopen_keeps_the_old_file)
{
	char sub[600], moved[600], path[700], err[800] = "";
	struct qaudit *a = NULL;

	path_in_dir(sub, sizeof(sub), "logs");
	path_in_dir(moved, sizeof(moved), "logs.gone");
	cr_assert_eq(mkdir(sub, 0755), 0);
	snprintf(path, sizeof(path), "%s/audit.log", sub);
	cr_assert_eq(qaudit_open(path, &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rename(sub, moved), 0);
	cr_assert_eq(qaudit_reopen(a, err, sizeof(err)), -ENOENT);
	cr_expect(strstr(err, path), "%s", err);
	struct qaudit_event ev = numbered(1);
	cr_assert_eq(qaudit_log(a, &ev), -ENOENT);
	qaudit_close(a);
	snprintf(path, sizeof(path), "%s/audit.log", moved);
	cr_assert_eq(read_log(path, NULL), 0);
}

#define CRASH_LINES 50

Test(audit_log, lines_survive_the_writers_sigkill)
{
	char path[600], err[700] = "";
	int status;
	qjs_doc **docs;

	path_in_dir(path, sizeof(path), "crash.log");
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		struct qaudit *a = NULL;
		if (qaudit_open(path, &a, err, sizeof(err)) < 0)
			_exit(2);
		for (uint64_t i = 1; i <= CRASH_LINES; i++) {
			struct qaudit_event ev = numbered(i);
			if (qaudit_log(a, &ev) < 0)
				_exit(3);
		}
		kill(getpid(), SIGKILL);
		_exit(4);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %#x", status);
	size_t n = read_log(path, &docs);
	cr_assert_eq(n, CRASH_LINES);
	for (size_t i = 0; i < n; i++)
		expect_u64(docs[i], "session", i + 1);
	free_docs(docs, n);
}

/* A line cut short by a file size limit is an error, and the next line
 * still starts on its own line. */
Test(audit_log, short_write_is_an_error)
{
	char path[600], err[700] = "";
	int status;

	path_in_dir(path, sizeof(path), "short.log");
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		struct qaudit *a = NULL;
		struct qaudit_event ev = numbered(1);
		char line[1024];
		size_t n = qaudit_format(&ev, SOME_TIME, line, sizeof(line));

		signal(SIGXFSZ, SIG_IGN);
		if (qaudit_open(path, &a, err, sizeof(err)) < 0 || qaudit_log(a, &ev) < 0)
			_exit(2);
		/* Room for the first line and half of the next. */
		struct rlimit rl = {.rlim_cur = n + n / 2, .rlim_max = RLIM_INFINITY};
		if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
			_exit(3);
		ev = numbered(2);
		_exit(qaudit_log(a, &ev) == -EIO ? 0 : 4);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
	size_t len;
	char *text = (char *)tu_read(path, &len);
	char *nl = memchr(text, '\n', len);
	cr_assert_not_null(nl);
	qjs_doc *doc = parse_line(text, (size_t)(nl - text));
	expect_u64(doc, "session", 1);
	qjs_free(doc);
	free(text);
}

Test(audit_log, open_errors_name_the_path)
{
	char path[700], err[800] = "";
	struct qaudit *a = NULL;

	path_in_dir(path, sizeof(path), "no-such-dir/audit.log");
	cr_assert_eq(qaudit_open(path, &a, err, sizeof(err)), -ENOENT);
	cr_expect_null(a);
	cr_expect(strstr(err, path) && strstr(err, strerror(ENOENT)), "%s", err);

	/* A path under a regular file: refused even to root. */
	char file[600];
	path_in_dir(file, sizeof(file), "plain");
	tu_write(file, "x", 1);
	snprintf(path, sizeof(path), "%s/audit.log", file);
	err[0] = '\0';
	cr_assert_eq(qaudit_open(path, &a, err, sizeof(err)), -ENOTDIR);
	cr_expect(strstr(err, path), "%s", err);

	/* A file this user may not write (root may write anything). */
	if (geteuid() != 0) {
		path_in_dir(path, sizeof(path), "read-only.log");
		tu_write(path, "", 0);
		cr_assert_eq(chmod(path, 0440), 0);
		err[0] = '\0';
		cr_assert_eq(qaudit_open(path, &a, err, sizeof(err)), -EACCES);
		cr_expect(strstr(err, path), "%s", err);
	}

	/* The message is optional. */
	path_in_dir(path, sizeof(path), "no-such-dir/audit.log");
	cr_assert_eq(qaudit_open(path, &a, NULL, 0), -ENOENT);
	qaudit_close(NULL);
}

/* ---- issue 22 #8: a deleted or replaced log is noticed ------------------ */

static char notices[4][600];
static int nnotices;

static void on_notice(void *arg, const char *msg)
{
	(void)arg;
	if (nnotices < 4)
		snprintf(notices[nnotices], sizeof(notices[0]), "%s", msg);
	nnotices++;
}

static void expect_reopen_then(const char *path, uint64_t session, const char *what)
{
	qjs_doc **docs;
	size_t n = read_log(path, &docs), len;

	cr_assert_eq(n, 2, "%s: %zu lines", path, n);
	cr_assert_str_eq(qjs_str(field(docs[0], "event"), &len), "audit-log");
	cr_assert_str_eq(qjs_str(field(docs[0], "op"), &len), "reopen");
	cr_assert(strstr(qjs_str(field(docs[0], "reason"), &len), what), "%s",
		  qjs_str(field(docs[0], "reason"), &len));
	expect_u64(docs[1], "session", session);
	free_docs(docs, n);
}

Test(audit_log, deleted_or_replaced_log_is_reopened_and_said)
{
	char path[600], moved[600], other[600], err[700] = "";
	struct qaudit *a = NULL;
	struct qaudit_event ev = numbered(1);

	nnotices = 0;
	path_in_dir(path, sizeof(path), "audit.log");
	path_in_dir(moved, sizeof(moved), "audit.log.1");
	path_in_dir(other, sizeof(other), "other");
	cr_assert_eq(qaudit_open(path, &a, err, sizeof(err)), 0, "%s", err);
	qaudit_set_notify(a, on_notice, NULL);
	cr_assert_eq(qaudit_log(a, &ev), 0);
	/* Deleted: the next line goes to a new file at the path. */
	cr_assert_eq(unlink(path), 0);
	ev = numbered(2);
	cr_assert_eq(qaudit_log(a, &ev), 0);
	expect_reopen_then(path, 2, "was deleted");
	cr_assert_eq(nnotices, 1);
	cr_assert(strstr(notices[0], "was deleted"), "%s", notices[0]);
	/* Replaced (moved away, another file moved in): the same. */
	cr_assert_eq(rename(path, moved), 0);
	tu_write(other, "", 0);
	cr_assert_eq(rename(other, path), 0);
	ev = numbered(3);
	cr_assert_eq(qaudit_log(a, &ev), 0);
	expect_reopen_then(path, 3, "was replaced");
	cr_assert_eq(read_log(moved, NULL), 2, "the old file keeps its lines");
	/* Unchanged: no more notices. */
	ev = numbered(4);
	cr_assert_eq(qaudit_log(a, &ev), 0);
	cr_assert_eq(nnotices, 2);
	/* Cannot be reopened (its directory is gone): refused, and said. */
	cr_assert_eq(unlink(path), 0);
	cr_assert_eq(unlink(moved), 0);
	cr_assert_eq(rmdir(dir), 0);
	ev = numbered(5);
	cr_assert_lt(qaudit_log(a, &ev), 0);
	cr_assert_eq(nnotices, 3);
	cr_assert(strstr(notices[2], "cannot be reopened"), "%s", notices[2]);
	cr_assert_eq(mkdir(dir, 0700), 0);
	qaudit_close(a);
}

/* ---- the host's decision (stager/site/hostdecide.h) ---------------------
 * One decision for every path of a process (local and remote streams,
 * pull, push, pack, unpack, cat): each answer, granted or refused, is one
 * line of the host's audit log, with the rule that made it. */

TestSuite(hostdecide, .init = make_dir, .fini = remove_dir);

/* A host configuration of zone fr-1 with dir/sov as its sovereign storage
 * and dir/host-audit.log as its audit log, in force through QUAI_CONF. */
static void host_conf(char *log, size_t log_len)
{
	char conf[600], sov[600], text[2048];

	path_in_dir(conf, sizeof(conf), "quai.conf");
	path_in_dir(sov, sizeof(sov), "sov");
	path_in_dir(log, log_len, "host-audit.log");
	cr_assert_eq(mkdir(sov, 0755), 0);
	int n = snprintf(text, sizeof(text), "zone = fr-1\nsovereign_paths = %s\naudit_log = %s\n",
			 sov, log);
	tu_write(conf, text, (size_t)n);
	tu_write(log, "", 0);
	cr_assert_eq(setenv("QUAI_CONF", conf, 1), 0);
}

static void expect_line(qjs_doc *doc, const char *op, const char *result, const char *rule)
{
	expect_str(doc, "event", "local", 5);
	expect_str(doc, "op", op, strlen(op));
	expect_str(doc, "result", result, strlen(result));
	expect_str(doc, "rule", rule, strlen(rule));
}

Test(hostdecide, every_answer_is_one_audit_line)
{
	char log[600], sov_dest[700], elsewhere[700], err[1024];

	host_conf(log, sizeof(log));
	snprintf(sov_dest, sizeof(sov_dest), "%s/sov/got", dir);
	snprintf(elsewhere, sizeof(elsewhere), "%s/got", dir);

	const struct qhd_request base = {
	    .op = "pull",
	    .dataset = "sens",
	    .classification = QUAI_CLASS_SENSITIVE,
	    .zone = "fr-1",
	    .bytes = 1234,
	    .what = "pulled",
	};
	/* Granted: sensitive, this zone, to a sovereign path. */
	struct qhd_request q = base;
	q.dests[0] = sov_dest;
	cr_expect_eq(qhd_decide(&q, err, sizeof(err)), 0, "%s", err);
	/* Refused: not a sovereign path (either of two). */
	q.dests[1] = elsewhere;
	cr_expect_eq(qhd_decide(&q, err, sizeof(err)), -QUAI_EPOLICY);
	cr_expect(strstr(err, "dataset sens is sensitive (zone fr-1)"), "%s", err);
	/* Refused: another zone. */
	q = base;
	q.zone = "de-1";
	cr_expect_eq(qhd_decide(&q, err, sizeof(err)), -QUAI_EPOLICY);
	cr_expect(strstr(err, "de-1"), "%s", err);
	/* Refused: a stream into memory that could not be locked. */
	q = base;
	q.op = "stream";
	q.what = "streamed";
	q.memory = QHD_MEM_POOL_UNLOCKED;
	cr_expect_eq(qhd_decide(&q, err, sizeof(err)), -QUAI_EPOLICY);
	cr_expect(strstr(err, "locked memory"), "%s", err);
	/* Refused: a push out of the zone. */
	q = base;
	q.op = "push";
	q.what = NULL;
	q.peer = "quai://elsewhere";
	q.peer_zone = "de-1";
	cr_expect_eq(qhd_decide(&q, err, sizeof(err)), -QUAI_EPOLICY);
	cr_expect(strstr(err, "never pushed outside its zone"), "%s", err);
	/* Refused: a destination whose path cannot be told. */
	q = base;
	q.op = "cat";
	q.what = "read";
	q.dest_untold = "standard output";
	cr_expect_eq(qhd_decide(&q, err, sizeof(err)), -QUAI_EPOLICY);
	cr_expect(strstr(err, "standard output is a file whose path cannot be told"), "%s", err);
	/* Granted: not sensitive, whatever the zone, memory and paths. */
	q = base;
	q.classification = QUAI_CLASS_INTERNAL;
	q.zone = "de-1";
	q.memory = QHD_MEM_POOL_UNLOCKED;
	q.dests[0] = elsewhere;
	cr_expect_eq(qhd_decide(&q, err, sizeof(err)), 0, "%s", err);
	/* quaid's own streams: decided there, nothing written here. */
	q = base;
	q.op = "stream";
	q.zone = "de-1";
	q.served = 1;
	cr_expect_eq(qhd_decide(&q, err, sizeof(err)), 0, "%s", err);

	qjs_doc **docs;
	size_t n = read_log(log, &docs);
	cr_assert_eq(n, 7, "%zu lines", n);
	expect_line(docs[0], "pull", "granted", "local");
	expect_u64(docs[0], "bytes", 1234);
	expect_line(docs[1], "pull", "refused", "sovereign:paths");
	expect_line(docs[2], "pull", "refused", "sovereign:zone");
	expect_line(docs[3], "stream", "refused", "sovereign:memory");
	expect_line(docs[4], "push", "refused", "sovereign:zone");
	expect_line(docs[5], "cat", "refused", "sovereign:paths");
	expect_line(docs[6], "pull", "granted", "local");
	free_docs(docs, n);
}

Test(hostdecide, a_grant_that_cannot_be_audited_is_refused)
{
	char log[600], err[1024];

	host_conf(log, sizeof(log));
	cr_assert_eq(unlink(log), 0);
	cr_assert_eq(mkdir(log, 0755), 0); /* a directory: no line can be appended */
	struct qhd_request q = {.op = "stream",
				.dataset = "pub",
				.classification = QUAI_CLASS_PUBLIC,
				.zone = "fr-1",
				.bytes = -1,
				.what = "read"};
	int r = qhd_decide(&q, err, sizeof(err));
	cr_expect_lt(r, 0);
	cr_expect_neq(r, -QUAI_EPOLICY);
	cr_expect(strstr(err, "nothing is read unaudited"), "%s", err);
}
