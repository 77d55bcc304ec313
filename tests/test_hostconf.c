/* SPDX-License-Identifier: Apache-2.0 */
/* The host configuration file: its parser (stager/site/hostconf.h) and
 * quai_host_zone(). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it; standalone builds may not */
#endif
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hostconf.h"
#include "quai/quai.h"

/* ------------------------------------------------------------------------
 * The parser
 * ------------------------------------------------------------------------ */

struct seen {
	unsigned count;
	char keys[8][64];
	char values[8][4200];
	unsigned lines[8];
	int fail_on; /* call number (1-based) that returns -QUAI_EFORMAT, 0: none */
};

static int collect(const char *key, const char *value, unsigned line, void *arg)
{
	struct seen *s = arg;

	s->count++;
	if (s->fail_on && s->count == (unsigned)s->fail_on)
		return -QUAI_EFORMAT;
	if (s->count <= 8) {
		snprintf(s->keys[s->count - 1], sizeof(s->keys[0]), "%s", key);
		snprintf(s->values[s->count - 1], sizeof(s->values[0]), "%s", value);
		s->lines[s->count - 1] = line;
	}
	return 0;
}

static struct seen parse_ok_len(const char *text, size_t len)
{
	struct seen s = {0};
	unsigned line = 777;
	char msg[128] = "untouched";
	int r = qhc_parse(text, len, collect, &s, &line, msg, sizeof(msg));

	cr_assert_eq(r, 0, "<%.*s>: %d at line %u: %s", (int)len, text, r, line, msg);
	cr_expect_eq(line, 777, "ret_err_line written on success");
	cr_expect_str_eq(msg, "untouched");
	return s;
}

#define PARSE_OK(lit) parse_ok_len(lit, sizeof(lit) - 1)

static void check_bad(const char *text, size_t len, unsigned want_line, const char *want_msg)
{
	struct seen s = {0};
	unsigned line = 777;
	char msg[128] = "";
	int r = qhc_parse(text, len, collect, &s, &line, msg, sizeof(msg));

	cr_assert_eq(r, -QUAI_EFORMAT, "<%.*s> parsed: %d", (int)len, text, r);
	cr_expect_eq(line, want_line, "<%.*s>: line %u, expected %u (%s)", (int)len, text, line,
		     want_line, msg);
	cr_expect_str_eq(msg, want_msg, "<%.*s>", (int)len, text);
	cr_expect_eq(s.count, 0, "callback called for a malformed text");
}

#define BAD(lit, line, msg) check_bad(lit, sizeof(lit) - 1, line, msg)

Test(hostconf, empty_and_comment_only_texts)
{
	cr_expect_eq(PARSE_OK("").count, 0);
	cr_expect_eq(qhc_parse(NULL, 0, collect, NULL, NULL, NULL, 0), 0);
	cr_expect_eq(PARSE_OK("\n\n   \n\t\r\n").count, 0);
	cr_expect_eq(PARSE_OK("# only\n   # comments\n#zone = x\n#\n").count, 0);
}

Test(hostconf, settings_in_order_trimmed)
{
	struct seen s = PARSE_OK("# host settings\n"
				 "zone = eu-west_1.a\n"
				 "\n"
				 "  \tkey_2\t=   spaced   value \t\r\n"
				 "empty =\n"
				 "eq=a=b==c\n"
				 "hash = # not a comment\n"
				 "last=no newline");

	cr_assert_eq(s.count, 6);
	cr_expect_str_eq(s.keys[0], "zone");
	cr_expect_str_eq(s.values[0], "eu-west_1.a");
	cr_expect_eq(s.lines[0], 2);
	cr_expect_str_eq(s.keys[1], "key_2");
	cr_expect_str_eq(s.values[1], "spaced   value");
	cr_expect_eq(s.lines[1], 4);
	cr_expect_str_eq(s.keys[2], "empty");
	cr_expect_str_eq(s.values[2], "");
	cr_expect_str_eq(s.keys[3], "eq");
	cr_expect_str_eq(s.values[3], "a=b==c");
	cr_expect_str_eq(s.keys[4], "hash");
	cr_expect_str_eq(s.values[4], "# not a comment");
	cr_expect_str_eq(s.keys[5], "last");
	cr_expect_str_eq(s.values[5], "no newline");
	cr_expect_eq(s.lines[5], 8);
}

Test(hostconf, values_keep_any_bytes_but_nul)
{
	struct seen s = PARSE_OK("path = /data/d\xc3\xa9j\xc3\xa0 vu\x7f\x01\n");

	cr_assert_eq(s.count, 1);
	cr_expect_str_eq(s.values[0], "/data/d\xc3\xa9j\xc3\xa0 vu\x7f\x01");
}

Test(hostconf, null_callback_only_checks)
{
	cr_expect_eq(qhc_parse("a = 1\nb = 2\n", 12, NULL, NULL, NULL, NULL, 0), 0);
	cr_expect_eq(qhc_parse("a = 1\na = 2\n", 12, NULL, NULL, NULL, NULL, 0), -QUAI_EFORMAT);
}

Test(hostconf, rejects_lines_without_a_setting)
{
	BAD("zone", 1, "expected 'key = value'");
	BAD("# c\n\nzone = a\njust words\n", 4, "expected 'key = value'");
	BAD("a = 1\n= value\n", 2, "expected 'key = value'");
	BAD("a = 1\n  \t= value\n", 2, "expected 'key = value'");
	BAD("a = 1\n=\n", 2, "expected 'key = value'");
	BAD("[section]\n", 1, "expected 'key = value'");
}

Test(hostconf, rejects_bad_keys)
{
	BAD("Zone = a\n", 1, "invalid key 'Zone'");
	BAD("a = 1\nb = 2\nmy key = 3\n", 3, "invalid key 'my key'");
	BAD("zone-name = a\n", 1, "invalid key 'zone-name'");
	BAD("zone.x = a\n", 1, "invalid key 'zone.x'");
	BAD("z\xc3\xa9 = a\n", 1, "invalid key 'z?\?'");
	BAD("\"zone\" = a\n", 1, "invalid key '\"zone\"'");
	BAD("k\x01 = a\n", 1, "invalid key 'k?'");
	BAD("abcdefghijklmnopqrstuvwxyzabcdefghijKLM = a\n", 1,
	    "invalid key 'abcdefghijklmnopqrstuvwxyzabcdef...'");
}

Test(hostconf, rejects_duplicate_keys)
{
	BAD("zone = a\nzone = b\n", 2, "duplicate key 'zone' (first set on line 1)");
	BAD("# c\nb = 1\nzone = a\n\nb = 2\nzone = c\n", 5,
	    "duplicate key 'b' (first set on line 2)");
	BAD("a = 1\nb = 1\nb = 2\na = 2\n", 3, "duplicate key 'b' (first set on line 2)");
	BAD("x = 1\nx = 1\nx = 1\n", 2, "duplicate key 'x' (first set on line 1)");
	/* A repeat before a bad line is the first fault, and after one the bad
	 * line is. */
	BAD("a = 1\na = 2\nBAD\n", 2, "duplicate key 'a' (first set on line 1)");
	BAD("a = 1\nBAD\na = 2\n", 2, "expected 'key = value'");
	/* Keys that are prefixes of each other are distinct. */
	cr_expect_eq(PARSE_OK("a = 1\nab = 2\nabc = 3\nb = 4\n").count, 4);
}

Test(hostconf, rejects_nul_bytes)
{
	BAD("a = 1\nzone = x\0y\n", 2, "NUL byte");
	BAD("\0", 1, "NUL byte");
	BAD("# comment \0 too\n", 1, "NUL byte");
}

static char *line_of(size_t len, const char *prefix)
{
	char *s = malloc(len + 2);

	cr_assert_not_null(s);
	memset(s, 'v', len);
	memcpy(s, prefix, strlen(prefix));
	s[len] = '\n';
	s[len + 1] = '\0';
	return s;
}

Test(hostconf, line_length_limit_is_exact)
{
	char *ok = line_of(QHC_LINE_MAX, "k = ");
	char *long_line = line_of(QHC_LINE_MAX + 1, "k = ");
	char *long_comment = line_of(QHC_LINE_MAX + 1, "# ");
	char *text;
	struct seen s = parse_ok_len(ok, strlen(ok));

	cr_assert_eq(s.count, 1);
	cr_expect_eq(strlen(s.values[0]), QHC_LINE_MAX - 4);

	/* Without its newline too: the last line of a file. */
	s = parse_ok_len(ok, QHC_LINE_MAX);
	cr_expect_eq(s.count, 1);

	check_bad(long_line, strlen(long_line), 1, "line longer than 4096 bytes");
	check_bad(long_line, QHC_LINE_MAX + 1, 1, "line longer than 4096 bytes");
	check_bad(long_comment, strlen(long_comment), 1, "line longer than 4096 bytes");

	cr_assert_eq(asprintf(&text, "a = 1\n\n%s", long_line) > 0, 1);
	check_bad(text, strlen(text), 3, "line longer than 4096 bytes");
	free(text);
	free(ok);
	free(long_line);
	free(long_comment);
}

Test(hostconf, size_limit)
{
	char *text = malloc(QHC_FILE_MAX + 1);

	cr_assert_not_null(text);
	/* Exactly 1 MiB of comment lines is fine; one more byte is not. */
	memset(text, '#', QHC_FILE_MAX + 1);
	for (size_t i = 1000; i < QHC_FILE_MAX + 1; i += 1000)
		text[i] = '\n';
	cr_expect_eq(parse_ok_len(text, QHC_FILE_MAX).count, 0);
	check_bad(text, QHC_FILE_MAX + 1, 0, "larger than 1048576 bytes");
	free(text);
}

Test(hostconf, callback_failure_stops_with_its_line)
{
	struct seen s = {.fail_on = 2};
	unsigned line = 0;
	char msg[128] = "";
	int r = qhc_parse("a = 1\n\nzone = bad zone!\nc = 3\n", 30, collect, &s, &line, msg,
			  sizeof(msg));

	cr_expect_eq(r, -QUAI_EFORMAT);
	cr_expect_eq(s.count, 2, "no call after a failure");
	cr_expect_eq(line, 3);
	cr_expect_str_eq(msg, "invalid value for key 'zone': \"bad zone!\"");
}

Test(hostconf, small_error_buffers_are_safe)
{
	char msg[8];
	unsigned line = 0;

	memset(msg, 'x', sizeof(msg));
	cr_expect_eq(qhc_parse("zone\n", 5, NULL, NULL, &line, msg, sizeof(msg)), -QUAI_EFORMAT);
	cr_expect_str_eq(msg, "expecte");
	cr_expect_eq(qhc_parse("zone\n", 5, NULL, NULL, NULL, NULL, 0), -QUAI_EFORMAT);
	cr_expect_eq(qhc_parse("zone\n", 5, NULL, NULL, &line, msg, 0), -QUAI_EFORMAT);
}

Test(hostconf, many_settings_fast, .timeout = 20)
{
	/* The most settings a 1 MiB file holds, all distinct, then one repeat:
	 * a pairwise check would take minutes. */
	size_t cap = QHC_FILE_MAX, len = 0;
	char *text = malloc(cap);
	unsigned n = 0;
	struct timespec t0, t1;
	char want[96];

	cr_assert_not_null(text);
	while (len + 16 < cap) {
		len += (size_t)sprintf(text + len, "k%u=\n", n);
		n++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_expect_eq(parse_ok_len(text, len).count, n);
	len += (size_t)sprintf(text + len, "k%u=\n", n / 2);
	snprintf(want, sizeof(want), "duplicate key 'k%u' (first set on line %u)", n / 2,
		 n / 2 + 1);
	check_bad(text, len, n + 1, want);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_expect_lt(secs, 5.0, "%u settings took %.3f s", n, secs);
	free(text);
}

/* ------------------------------------------------------------------------
 * Zone labels
 * ------------------------------------------------------------------------ */

Test(hostconf, zone_labels)
{
	static const char *const ok[] = {
	    "none",	 "a",
	    "Z",	 "0",
	    "eu-west-1", "site_A.rack-7",
	    "...",	 "-",
	    "_",	 "012345678901234567890123456789012345678901234567890123456789012",
	};
	static const char *const bad[] = {
	    "",
	    ".",
	    "..",
	    "eu west",
	    "zone/x",
	    "a\tb",
	    "caf\xc3\xa9",
	    "a:b",
	    "a\n",
	    "*",
	    "a,b",
	    "0123456789012345678901234567890123456789012345678901234567890123",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		cr_expect_eq(quai_zone_check(ok[i]), 0, "'%s'", ok[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(quai_zone_check(bad[i]), -EINVAL, "'%s'", bad[i]);
	cr_expect_eq(quai_zone_check(NULL), -EINVAL);
	cr_expect_eq(strlen(ok[sizeof(ok) / sizeof(ok[0]) - 1]), QUAI_ZONE_MAX);
}

/* ------------------------------------------------------------------------
 * quai_host_zone() on real files
 * ------------------------------------------------------------------------ */

static char dir[PATH_MAX];

static void make_dir(void)
{
	const char *base = getenv("QUAI_TEST_TMPDIR");

	if (!base || !*base)
		base = "/tmp";
	if (mkdir(base, 0700) < 0 && errno != EEXIST)
		cr_assert_fail("mkdir %s: %s", base, strerror(errno));
	snprintf(dir, sizeof(dir), "%s/hostconf-XXXXXX", base);
	cr_assert_not_null(mkdtemp(dir), "mkdtemp %s: %s", dir, strerror(errno));
}

static void remove_dir(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[PATH_MAX + 256];

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		chmod(path, 0700);
		if (unlink(path) < 0)
			rmdir(path);
	}
	closedir(d);
	rmdir(dir);
	dir[0] = '\0';
}

/* Writes `text` to a file in the test's directory and points $QUAI_CONF at
 * it; returns the path (static). */
static const char *conf_len(const char *name, const char *text, size_t len)
{
	static char path[PATH_MAX + 256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	cr_assert_eq(fwrite(text, 1, len, f), len);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(setenv("QUAI_CONF", path, 1), 0);
	return path;
}

static const char *conf(const char *text)
{
	return conf_len("quai.conf", text, strlen(text));
}

static void check_zone(const char *want)
{
	char buf[QUAI_ZONE_MAX + 1], msg[256] = "untouched";
	int r = quai_host_zone(buf, sizeof(buf), msg, sizeof(msg));

	cr_assert_eq(r, 0, "%d: %s", r, msg);
	cr_expect_str_eq(buf, want);
	cr_expect_str_eq(msg, "untouched");
}

static void check_zone_fails(int want, const char *want_msg)
{
	char buf[QUAI_ZONE_MAX + 1] = "untouched", msg[4096 + 512] = "";
	int r = quai_host_zone(buf, sizeof(buf), msg, sizeof(msg));

	cr_assert_eq(r, want, "%d, expected %d: %s", r, want, msg);
	cr_expect_str_eq(buf, "untouched", "buf written on failure");
	cr_expect_str_eq(msg, want_msg);
}

TestSuite(host_zone, .init = make_dir, .fini = remove_dir);

Test(host_zone, absent_file_is_none)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/does-not-exist.conf", dir);
	cr_assert_eq(setenv("QUAI_CONF", path, 1), 0);
	check_zone("none");
	snprintf(path, sizeof(path), "%s/no-such-dir/quai.conf", dir);
	cr_assert_eq(setenv("QUAI_CONF", path, 1), 0);
	check_zone("none");
}

Test(host_zone, path_comes_from_the_environment)
{
	cr_assert_eq(setenv("QUAI_CONF", "/some/where.conf", 1), 0);
	cr_expect_str_eq(qhc_path(), "/some/where.conf");
	cr_assert_eq(setenv("QUAI_CONF", "", 1), 0);
	cr_expect_str_eq(qhc_path(), QHC_DEFAULT_PATH);
	cr_assert_eq(unsetenv("QUAI_CONF"), 0);
	cr_expect_str_eq(qhc_path(), "/etc/quai/quai.conf");
}

Test(host_zone, zone_from_the_file)
{
	conf("# quai host configuration\n"
	     "\n"
	     "sovereign_paths = /data/eu:/scratch/eu\n"
	     "   zone   =   eu-central-1.b   \r\n"
	     "some_future_key = whatever\n");
	check_zone("eu-central-1.b");
}

Test(host_zone, missing_key_or_empty_file_is_none)
{
	conf("");
	check_zone("none");
	conf("# zone = commented-out\nother = 1\n");
	check_zone("none");
}

Test(host_zone, longest_label_fits_exactly)
{
	const char *label = "012345678901234567890123456789012345678901234567890123456789012";
	char text[128], buf[QUAI_ZONE_MAX + 1], small[QUAI_ZONE_MAX] = "untouched";

	snprintf(text, sizeof(text), "zone=%s", label);
	conf(text);
	cr_assert_eq(quai_host_zone(buf, sizeof(buf), NULL, 0), 0);
	cr_expect_str_eq(buf, label);
	cr_expect_eq(quai_host_zone(small, sizeof(small), NULL, 0), -ERANGE);
	cr_expect_str_eq(small, "untouched");
	cr_expect_eq(quai_host_zone(NULL, 0, NULL, 0), -ERANGE);

	conf("");
	cr_expect_eq(quai_host_zone(buf, 4, NULL, 0), -ERANGE, "\"none\" needs 5 bytes");
	cr_expect_eq(quai_host_zone(buf, 5, NULL, 0), 0);
	cr_expect_str_eq(buf, "none");
}

Test(host_zone, invalid_label)
{
	const char *path = conf("a = 1\n\nzone = eu west\n");
	char want[PATH_MAX + 256];

	snprintf(want, sizeof(want), "%s:3: invalid value for key 'zone': \"eu west\"", path);
	check_zone_fails(-QUAI_EFORMAT, want);

	path = conf("zone =\n");
	snprintf(want, sizeof(want), "%s:1: invalid value for key 'zone': \"\"", path);
	check_zone_fails(-QUAI_EFORMAT, want);

	path = conf("zone = 0123456789012345678901234567890123456789012345678901234567890123\n");
	snprintf(want, sizeof(want),
		 "%s:1: invalid value for key 'zone': \"01234567890123456789012345678901...\"",
		 path);
	check_zone_fails(-QUAI_EFORMAT, want);
}

Test(host_zone, malformed_files_name_file_and_line)
{
	const char *path;
	char want[PATH_MAX + 256];

	path = conf("# c\nzone = a\nzone b\n");
	snprintf(want, sizeof(want), "%s:3: expected 'key = value'", path);
	check_zone_fails(-QUAI_EFORMAT, want);

	path = conf("zone = a\n\nzone = b\n");
	snprintf(want, sizeof(want), "%s:3: duplicate key 'zone' (first set on line 1)", path);
	check_zone_fails(-QUAI_EFORMAT, want);

	/* A fault on any line fails the file, even one the zone does not use. */
	path = conf("zone = a\nFuture = 1\n");
	snprintf(want, sizeof(want), "%s:2: invalid key 'Future'", path);
	check_zone_fails(-QUAI_EFORMAT, want);

	path = conf_len("quai.conf", "zone = a\0\n", 10);
	snprintf(want, sizeof(want), "%s:1: NUL byte", path);
	check_zone_fails(-QUAI_EFORMAT, want);
}

Test(host_zone, oversized_file)
{
	size_t len = QHC_FILE_MAX + 1;
	char *text = malloc(len);
	const char *path;
	char want[PATH_MAX + 256];

	cr_assert_not_null(text);
	memset(text, '\n', len);
	path = conf_len("big.conf", text, len);
	snprintf(want, sizeof(want), "%s: larger than 1048576 bytes", path);
	check_zone_fails(-QUAI_EFORMAT, want);

	/* Exactly the limit is fine. */
	conf_len("big.conf", text, len - 1);
	check_zone("none");
	free(text);
}

Test(host_zone, unreadable_files)
{
	char want[PATH_MAX + 256];
	const char *path;

	/* A directory opens but cannot be read. */
	cr_assert_eq(setenv("QUAI_CONF", dir, 1), 0);
	snprintf(want, sizeof(want), "%s: %s", dir, strerror(EISDIR));
	check_zone_fails(-EISDIR, want);

	if (geteuid() == 0) {
		remove_dir(); /* a skip does not run .fini */
		cr_skip_test("running as root: permissions are not enforced");
	}
	path = conf("zone = a\n");
	cr_assert_eq(chmod(path, 0), 0);
	snprintf(want, sizeof(want), "%s: %s", path, strerror(EACCES));
	check_zone_fails(-EACCES, want);
}

Test(host_zone, error_message_is_optional_and_truncated)
{
	char buf[16], msg[12];

	conf("zone\n");
	cr_expect_eq(quai_host_zone(buf, sizeof(buf), NULL, 0), -QUAI_EFORMAT);
	cr_expect_eq(quai_host_zone(buf, sizeof(buf), msg, sizeof(msg)), -QUAI_EFORMAT);
	cr_expect_eq(strlen(msg), sizeof(msg) - 1);
	cr_expect_eq(strncmp(msg, dir, sizeof(msg) - 1), 0);
}

/* ------------------------------------------------------------------------
 * qhc_sovereign_check()
 * ------------------------------------------------------------------------ */

/* A tree for each test: sov/ and sov2/ (sovereign), scratch/ (not),
 * sovereign2/ (a name that sov/ is a prefix of), and the configuration.
 * `base` is the directory resolved, so that messages can be compared. */
static char base[PATH_MAX];

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st, (void)ftw;
	if (type == FTW_DP)
		return rmdir(path) < 0 ? -1 : 0;
	return unlink(path) < 0 ? -1 : 0;
}

static void at(char *buf, size_t len, const char *rel)
{
	int n = snprintf(buf, len, "%s/%s", base, rel);

	cr_assert(n > 0 && (size_t)n < len);
}

static void make_tree(void)
{
	static const char *const dirs[] = {"sov", "sov/data", "sov2", "scratch", "sovereign2"};
	char path[PATH_MAX];

	make_dir();
	cr_assert_not_null(realpath(dir, base), "%s: %s", dir, strerror(errno));
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		at(path, sizeof(path), dirs[i]);
		cr_assert_eq(mkdir(path, 0755), 0, "%s: %s", path, strerror(errno));
	}
}

static void remove_tree(void)
{
	if (base[0])
		nftw(base, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	dir[0] = '\0';
}

TestSuite(sovereign, .init = make_tree, .fini = remove_tree);

/* Writes the configuration with `sovereign_paths = ` the given entries,
 * each relative to base unless absolute (NULL: no such key). */
static const char *sov_conf(const char *entries)
{
	char text[4 * PATH_MAX] = "zone = z1\n";
	size_t n = strlen(text);

	if (entries) {
		n += (size_t)snprintf(text + n, sizeof(text) - n, "sovereign_paths = ");
		for (const char *p = entries; *p;) {
			size_t c = strcspn(p, ":");

			if (p != entries)
				text[n++] = ':';
			n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%s%.*s",
					      *p == '/' ? "" : base, *p == '/' ? "" : "/", (int)c,
					      p);
			p += c + (p[c] == ':');
		}
		text[n++] = '\n';
		text[n] = '\0';
	}
	return conf(text);
}

static void expect_sovereign(const char *rel)
{
	char dest[PATH_MAX], err[PATH_MAX + 256] = "untouched";
	int r;

	at(dest, sizeof(dest), rel);
	r = qhc_sovereign_check(dest, err, sizeof(err));
	cr_expect_eq(r, 0, "%s: %d: %s", dest, r, err);
	cr_expect_str_eq(err, "untouched", "err written on success");
}

/* Refused: returns the message. */
static const char *expect_refused(const char *rel)
{
	static char err[PATH_MAX + 256];
	char dest[PATH_MAX];
	int r;

	at(dest, sizeof(dest), rel);
	err[0] = '\0';
	r = qhc_sovereign_check(dest, err, sizeof(err));
	cr_expect_eq(r, -QUAI_EPOLICY, "%s: %d: %s", dest, r, err);
	cr_expect(strstr(err, dest), "the message names the destination: %s", err);
	return err;
}

Test(sovereign, inside_and_equal_are_sovereign)
{
	sov_conf("sov");
	expect_sovereign("sov");
	expect_sovereign("sov/");
	expect_sovereign("sov/data");
	expect_sovereign("sov/data/");
	expect_sovereign("sov/./data");
	/* Not there yet, at any depth. */
	expect_sovereign("sov/new");
	expect_sovereign("sov/new/deeper/still");
	expect_sovereign("sov/data/new/");
}

Test(sovereign, outside_is_refused_naming_the_key_and_file)
{
	const char *path = sov_conf("sov"), *err;
	char want[2 * PATH_MAX + 128], dest[PATH_MAX];

	at(dest, sizeof(dest), "scratch/x");
	err = expect_refused("scratch/x");
	snprintf(want, sizeof(want),
		 "destination %s is not a sovereign path on this host (see sovereign_paths in %s)",
		 dest, path);
	cr_expect_str_eq(err, want);
	expect_refused("scratch");
	expect_refused("");
	cr_expect_eq(qhc_sovereign_check("/", NULL, 0), -QUAI_EPOLICY);
}

Test(sovereign, whole_components_only)
{
	sov_conf("sov");
	expect_refused("sovereign2");
	expect_refused("sovereign2/x");
	expect_refused("sov2/x");
	expect_refused("so");
	expect_refused("sov-new/x");
}

Test(sovereign, symbolic_links_are_resolved)
{
	char link[PATH_MAX], target[PATH_MAX], want[PATH_MAX];
	const char *err;

	sov_conf("sov");
	/* A link inside the sovereign directory that leads out of it. */
	at(link, sizeof(link), "sov/out");
	at(target, sizeof(target), "scratch");
	cr_assert_eq(symlink(target, link), 0);
	err = expect_refused("sov/out/x");
	at(want, sizeof(want), "scratch/x)");
	cr_expect(strstr(err, want), "the message shows where it resolves: %s", err);
	expect_refused("sov/out");
	/* A relative one, too. */
	at(link, sizeof(link), "sov/up");
	cr_assert_eq(symlink("../scratch", link), 0);
	expect_refused("sov/up/x/y");

	/* A link from elsewhere into it. */
	at(link, sizeof(link), "scratch/in");
	at(target, sizeof(target), "sov/data");
	cr_assert_eq(symlink(target, link), 0);
	expect_sovereign("scratch/in");
	expect_sovereign("scratch/in/x");

	/* A link to nothing is not followed, wherever it would lead later. */
	at(link, sizeof(link), "sov/dangling");
	at(target, sizeof(target), "scratch/not-yet");
	cr_assert_eq(symlink(target, link), 0);
	err = expect_refused("sov/dangling/x");
	cr_expect(strstr(err, "symbolic link"), "%s", err);
	expect_refused("sov/dangling");

	/* The sovereign directory itself may be reached through a link. */
	at(link, sizeof(link), "sovlink");
	at(target, sizeof(target), "sov");
	cr_assert_eq(symlink(target, link), 0);
	sov_conf("sovlink");
	expect_sovereign("sov/x");
	expect_sovereign("sovlink/x");
	expect_refused("scratch/x");
}

Test(sovereign, dot_dot_in_what_does_not_exist_is_refused)
{
	const char *err;

	sov_conf("sov");
	err = expect_refused("sov/new/../x");
	cr_expect(strstr(err, "'..'"), "%s", err);
	expect_refused("sov/new/..");
	expect_refused("sov/new/../../scratch/x");
	/* In the existing part, ".." is resolved like any path. */
	expect_sovereign("sov/data/../x");
	expect_refused("sov/../scratch/x");
	expect_refused("sov/..");
}

Test(sovereign, relative_destinations)
{
	char sov[PATH_MAX], err[PATH_MAX + 256] = "";

	sov_conf("sov");
	at(sov, sizeof(sov), "sov");
	cr_assert_eq(chdir(sov), 0);
	cr_expect_eq(qhc_sovereign_check("x", err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(qhc_sovereign_check("data/x", err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(qhc_sovereign_check(".", err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(qhc_sovereign_check("../scratch/x", err, sizeof(err)), -QUAI_EPOLICY);
	/* The message shows the resolved path beside the one given. */
	char want[PATH_MAX + 64];
	snprintf(want, sizeof(want), "destination ../scratch/x (%s/scratch/x) is", base);
	cr_expect(strstr(err, want), "%s", err);
	cr_expect_eq(qhc_sovereign_check("new/../x", err, sizeof(err)), -QUAI_EPOLICY);
}

Test(sovereign, several_paths)
{
	sov_conf("sov:sov2");
	expect_sovereign("sov/x");
	expect_sovereign("sov2/x");
	expect_refused("scratch/x");
	/* An entry that does not exist covers nothing, and spoils nothing. */
	sov_conf("missing:sov2:sov/data");
	expect_sovereign("sov2/x");
	expect_sovereign("sov/data/x");
	expect_refused("sov/x");
	expect_refused("missing/x");
	/* The root covers everything. */
	sov_conf("/");
	expect_sovereign("scratch/x");
}

Test(sovereign, no_key_no_file)
{
	const char *path = sov_conf(NULL), *err;
	char want[2 * PATH_MAX + 128], dest[PATH_MAX];

	at(dest, sizeof(dest), "sov/x");
	err = expect_refused("sov/x");
	snprintf(want, sizeof(want),
		 "destination %s is not a sovereign path: this host declares no sovereign paths "
		 "(sovereign_paths in %s)",
		 dest, path);
	cr_expect_str_eq(err, want);

	at(want, sizeof(want), "no-such.conf");
	cr_assert_eq(setenv("QUAI_CONF", want, 1), 0);
	err = expect_refused("sov/x");
	cr_expect(strstr(err, "declares no sovereign paths") && strstr(err, want), "%s", err);
}

Test(sovereign, relative_or_empty_entries_make_the_file_malformed)
{
	static const char *const bad[] = {"data/sov", "/a:data/sov", "/a::/b", "/a:", ":/a", ""};
	char text[256], want[PATH_MAX + 256], err[PATH_MAX + 256], dest[PATH_MAX];

	at(dest, sizeof(dest), "sov/x");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "zone = z1\nsovereign_paths = %s\n", bad[i]);
		const char *path = conf(text);
		err[0] = '\0';
		cr_expect_eq(qhc_sovereign_check(dest, err, sizeof(err)), -EINVAL, "'%s'", bad[i]);
		snprintf(want, sizeof(want),
			 "%s:2: invalid value for key 'sovereign_paths': \"%s\"", path, bad[i]);
		cr_expect_str_eq(err, want);
	}
	/* Other keys do not care. */
	check_zone("z1");
}

Test(sovereign, malformed_file_is_its_error)
{
	char want[PATH_MAX + 256], err[PATH_MAX + 256] = "", dest[PATH_MAX];
	const char *path = conf("sovereign_paths = /\nsovereign_paths = /\n");

	at(dest, sizeof(dest), "sov/x");
	cr_expect_eq(qhc_sovereign_check(dest, err, sizeof(err)), -QUAI_EFORMAT);
	snprintf(want, sizeof(want), "%s:2: duplicate key 'sovereign_paths' (first set on line 1)",
		 path);
	cr_expect_str_eq(err, want);
	cr_expect_eq(qhc_sovereign_check(NULL, err, sizeof(err)), -EINVAL);
}

Test(sovereign, unresolvable_destinations)
{
	char dest[PATH_MAX + 16], err[PATH_MAX + 256] = "";

	sov_conf("sov");
	/* Past a regular file: what does not exist cannot be made there. */
	at(dest, sizeof(dest), "sov/file");
	FILE *f = fopen(dest, "w");
	cr_assert_not_null(f);
	fclose(f);
	expect_sovereign("sov/file/x");

	/* A loop of links. */
	char a[PATH_MAX], b[PATH_MAX];
	at(a, sizeof(a), "sov/loop-a");
	at(b, sizeof(b), "sov/loop-b");
	cr_assert_eq(symlink(b, a), 0);
	cr_assert_eq(symlink(a, b), 0);
	snprintf(dest, sizeof(dest), "%s/x", a);
	cr_expect_eq(qhc_sovereign_check(dest, err, sizeof(err)), -ELOOP, "%s", err);
	cr_expect(strstr(err, dest), "%s", err);
}
