/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The audit log's hash chain (stager/site/auditchain.h) and key files
 * (sitekey.h): a log written by qaudit_log() verifies; one edited, with a
 * line deleted, inserted, or cut short fails at the line where it was
 * done; rotation keeps the chain; signed lines resist a rewrite of the
 * whole chain.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "auditchain.h"
#include "quai/quai.h"
#include "sitekey.h"
#include "testutil.h"

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

TestSuite(chain, .init = make_dir, .fini = remove_dir);
TestSuite(keys, .init = make_dir, .fini = remove_dir);

static void in_dir(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

/* Writes n lines to path through qaudit_log(): sessions first..first+n-1,
 * every third one refused. sk: sign them. */
static void write_log(const char *path, uint64_t first, unsigned n, const uint8_t *sk)
{
	char err[700] = "";
	struct qaudit *a = NULL;

	cr_assert_eq(qaudit_open(path, &a, err, sizeof(err)), 0, "%s", err);
	if (sk)
		qaudit_set_key(a, sk);
	for (unsigned i = 0; i < n; i++) {
		uint64_t s = first + i;
		bool ok = s % 3 != 0;
		struct qaudit_event ev = {
		    .event = "access",
		    .session = s,
		    .user = "alice",
		    .uid = 1001,
		    .gid = 2000,
		    .op = "pull",
		    .dataset = "era5",
		    .classification = "sensitive",
		    .zone = "fr-1",
		    .bytes = -1,
		    .granted = ok,
		    .rule = ok ? "train" : "deny_interns",
		    .reason = ok ? NULL : "a rule denies it",
		};
		cr_assert_eq(qaudit_log(a, &ev), 0);
	}
	qaudit_close(a);
}

/* The log's lines, split (each keeps its '\n'). */
struct lines {
	char *text;
	size_t n;
	char *at[256];
	size_t len[256];
};

static void split(const char *path, struct lines *l)
{
	size_t len;

	l->text = (char *)tu_read(path, &len);
	l->n = 0;
	for (size_t at = 0; at < len;) {
		char *nl = memchr(l->text + at, '\n', len - at);

		cr_assert_not_null(nl);
		cr_assert_lt(l->n, 256);
		l->at[l->n] = l->text + at;
		l->len[l->n] = (size_t)(nl - (l->text + at)) + 1;
		l->n++;
		at += l->len[l->n - 1];
	}
}

/* Writes lines back, skipping line `skip` (1-based; 0: none) and putting
 * `extra` before line `before` (1-based; 0: none). */
static void rewrite(const char *path, const struct lines *l, size_t skip, size_t before,
		    const char *extra)
{
	FILE *f = fopen(path, "we");

	cr_assert_not_null(f);
	for (size_t i = 0; i < l->n; i++) {
		if (before == i + 1)
			fputs(extra, f);
		if (skip != i + 1)
			fwrite(l->at[i], 1, l->len[i], f);
	}
	cr_assert_eq(fclose(f), 0);
}

static int verify1(const char *path, struct qach_report *rep)
{
	const char *paths[] = {path};

	return qach_verify_files(paths, 1, NULL, 0, false, rep);
}

Test(chain, an_untouched_log_verifies)
{
	char path[600];
	struct qach_report rep;

	in_dir(path, sizeof(path), "a.log");
	write_log(path, 1, 10, NULL);
	/* Written by a second handle later: the chain goes on. */
	write_log(path, 11, 5, NULL);
	cr_assert_eq(verify1(path, &rep), 0, "%s", rep.what);
	cr_expect_eq(rep.lines, 15);
	cr_expect_eq(rep.first_seq, 1);
	cr_expect_eq(rep.last.seq, 15);
}

Test(chain, a_refusal_turned_into_granted_is_named)
{
	char path[600];
	struct qach_report rep;
	struct lines l;

	in_dir(path, sizeof(path), "a.log");
	write_log(path, 1, 8, NULL);
	split(path, &l);
	/* Line 6 (session 6) is refused; an editor makes it granted. */
	char *p = strstr(l.at[5], "\"refused\"");
	cr_assert(p && p < l.at[5] + l.len[5]);
	memcpy(p, "\"granted\"", 9);
	rewrite(path, &l, 0, 0, NULL);
	cr_assert_eq(verify1(path, &rep), -QUAI_ECORRUPT);
	cr_expect_eq(rep.bad_line, 6, "%s", rep.what);
	cr_expect(strstr(rep.what, "line 6 was changed"), "%s", rep.what);
	cr_expect_eq(rep.lines, 5);
	free(l.text);
}

Test(chain, a_deleted_line_is_named)
{
	char path[600];
	struct qach_report rep;
	struct lines l;

	in_dir(path, sizeof(path), "a.log");
	write_log(path, 1, 8, NULL);
	split(path, &l);
	rewrite(path, &l, 4, 0, NULL);
	cr_assert_eq(verify1(path, &rep), -QUAI_ECORRUPT);
	cr_expect_eq(rep.bad_line, 4, "%s", rep.what);
	cr_expect(strstr(rep.what, "(seq 5) follows seq 3") && strstr(rep.what, "deleted"), "%s",
		  rep.what);
	free(l.text);
}

Test(chain, an_inserted_line_is_named)
{
	char path[600];
	struct qach_report rep;
	struct lines l;

	in_dir(path, sizeof(path), "a.log");
	write_log(path, 1, 8, NULL);
	split(path, &l);

	/* A copy of line 2 put before line 5. */
	char *copy = strndup(l.at[1], l.len[1]);
	rewrite(path, &l, 0, 5, copy);
	cr_assert_eq(verify1(path, &rep), -QUAI_ECORRUPT);
	cr_expect_eq(rep.bad_line, 5, "%s", rep.what);
	free(copy);

	/* A line forged with the right chain fields (seq 5, the hash of line
	 * 4): the line after it gives it away. */
	struct qach_head head = {.seq = 4};
	qach_hash(l.at[3], l.len[3] - 1, head.hash);
	const char body[] = "{\"time\":\"2026-12-07T12:00:00.000Z\",\"event\":\"access\"}\n";
	char forged[512];
	size_t n = qach_seal(body, sizeof(body) - 1, &head, NULL, forged, sizeof(forged));
	cr_assert(n > 0 && n < sizeof(forged));
	rewrite(path, &l, 0, 5, forged);
	cr_assert_eq(verify1(path, &rep), -QUAI_ECORRUPT);
	cr_expect_eq(rep.bad_line, 5, "%s", rep.what);
	cr_expect(strstr(rep.what, "line 5 was inserted"), "%s", rep.what);
	free(l.text);
}

Test(chain, a_line_cut_short_is_named)
{
	char path[600];
	struct qach_report rep;
	struct stat st;

	in_dir(path, sizeof(path), "a.log");
	write_log(path, 1, 6, NULL);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(truncate(path, st.st_size - 20), 0);
	cr_assert_eq(verify1(path, &rep), -QUAI_ECORRUPT);
	cr_expect_eq(rep.bad_line, 6, "%s", rep.what);
	cr_expect(strstr(rep.what, "cut short"), "%s", rep.what);

	/* The next writer ends the torn line and links to it as it is:
	 * verification still names it. */
	write_log(path, 7, 1, NULL);
	cr_assert_eq(verify1(path, &rep), -QUAI_ECORRUPT);
	cr_expect_eq(rep.bad_line, 6, "%s", rep.what);
}

Test(chain, rotation_keeps_the_chain)
{
	char path[600], old[600], err[700] = "";
	struct qach_report rep;
	struct qaudit *a = NULL;
	struct qaudit_event ev = {.event = "access", .uid = -1, .gid = -1, .bytes = -1};

	in_dir(path, sizeof(path), "a.log");
	in_dir(old, sizeof(old), "a.log.1");
	cr_assert_eq(qaudit_open(path, &a, err, sizeof(err)), 0, "%s", err);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(qaudit_log(a, &ev), 0);
	/* Rotated the usual way: renamed, then reopened (SIGHUP). */
	cr_assert_eq(rename(path, old), 0);
	cr_assert_eq(qaudit_reopen(a, err, sizeof(err)), 0, "%s", err);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(qaudit_log(a, &ev), 0);
	qaudit_close(a);

	const char *both[] = {old, path};
	cr_assert_eq(qach_verify_files(both, 2, NULL, 0, false, &rep), 0, "%s", rep.what);
	cr_expect_eq(rep.lines, 7);
	cr_expect_eq(rep.last.seq, 7);
	/* The new file alone: it continues an earlier one. */
	cr_assert_eq(verify1(path, &rep), 0, "%s", rep.what);
	cr_expect_eq(rep.first_seq, 5);
	/* In the wrong order, or with the old file's tail cut. */
	const char *swapped[] = {path, old};
	cr_assert_eq(qach_verify_files(swapped, 2, NULL, 0, false, &rep), -QUAI_ECORRUPT);
	struct lines l;
	split(old, &l);
	l.n--;
	rewrite(old, &l, 0, 0, NULL);
	cr_assert_eq(qach_verify_files(both, 2, NULL, 0, false, &rep), -QUAI_ECORRUPT);
	cr_expect_eq(rep.bad_file, 1);
	cr_expect_eq(rep.bad_line, 1);
	cr_expect(strstr(rep.what, "does not continue the previous file"), "%s", rep.what);
	free(l.text);
}

Test(chain, signed_lines_resist_a_rewritten_chain)
{
	char prefix[600], pubp[620], keyp[620], path[600], err[700] = "";
	uint8_t pk[QKEY_PK_BYTES], pk2[QKEY_PK_BYTES], sk[QKEY_SK_BYTES];
	struct qach_report rep;
	struct lines l;

	in_dir(prefix, sizeof(prefix), "host");
	cr_assert_eq(qkey_generate(prefix, pk, err, sizeof(err)), 0, "%s", err);
	snprintf(pubp, sizeof(pubp), "%s.pub", prefix);
	snprintf(keyp, sizeof(keyp), "%s.key", prefix);
	cr_assert_eq(qkey_load_public(pubp, pk2, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(memcmp(pk, pk2, sizeof(pk)), 0);
	cr_assert_eq(qkey_load_secret(keyp, sk, pk2, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(memcmp(pk, pk2, sizeof(pk)), 0);

	in_dir(path, sizeof(path), "signed.log");
	write_log(path, 1, 6, sk);
	const char *paths[] = {path};
	cr_assert_eq(qach_verify_files(paths, 1, pk, 1, true, &rep), 0, "%s", rep.what);
	cr_expect_eq(rep.signed_lines, 6);

	/* Someone without the key rewrites line 3 and re-chains every line
	 * after it, unsigned: the hashes hold, the signatures do not. */
	split(path, &l);
	char *p = strstr(l.at[2], "\"refused\"");
	cr_assert_not_null(p);
	memcpy(p, "\"granted\"", 9);
	FILE *f = fopen(path, "we");
	struct qach_head head = {0};
	for (size_t i = 0; i < l.n; i++) {
		struct qach_fields fl;
		char line[2048], body[2048];

		cr_assert_eq(qach_parse(l.at[i], l.len[i] - 1, &fl), 0);
		/* The body: the line up to ,"seq", closed again. */
		char *cut = strstr(l.at[i], ",\"seq\":");
		size_t blen = (size_t)(cut - l.at[i]);
		memcpy(body, l.at[i], blen);
		memcpy(body + blen, "}\n", 3);
		size_t n = qach_seal(body, blen + 2, &head, NULL, line, sizeof(line));
		cr_assert(n > 0 && n < sizeof(line));
		fwrite(line, 1, n, f);
		qach_hash(line, n - 1, head.hash);
		head.seq++;
	}
	fclose(f);
	/* Unsigned lines pass a chain check without keys... */
	cr_assert_eq(qach_verify_files(paths, 1, NULL, 0, false, &rep), 0, "%s", rep.what);
	/* ...but not one that requires the host's signature. */
	cr_assert_eq(qach_verify_files(paths, 1, pk, 1, true, &rep), -QUAI_ECORRUPT);
	cr_expect_eq(rep.bad_line, 1, "%s", rep.what);

	/* Signed by the key, checked with another: refused. */
	in_dir(path, sizeof(path), "signed2.log");
	write_log(path, 1, 2, sk);
	uint8_t other[QKEY_PK_BYTES];
	memcpy(other, pk, sizeof(other));
	other[0] ^= 1;
	cr_assert_eq(qach_verify_files(paths, 1, other, 1, false, &rep), -QUAI_ECORRUPT);
	cr_expect(strstr(rep.what, "signature does not verify"), "%s", rep.what);
	free(l.text);
}

Test(chain, parse_takes_only_well_formed_fields)
{
	static const char *const bad[] = {
	    "",
	    "{}",
	    "{\"seq\":1,\"prev\":\"00\"}",
	    /* seq 0, a leading zero, a sign, uppercase hex */
	    "{\"a\":1,\"seq\":0,\"prev\":\"0000000000000000000000000000000000000000000000000000"
	    "000000000000\"}",
	    "{\"a\":1,\"seq\":01,\"prev\":\"000000000000000000000000000000000000000000000000000"
	    "0000000000000\"}",
	    "{\"a\":1,\"seq\":-1,\"prev\":\"000000000000000000000000000000000000000000000000000"
	    "0000000000000\"}",
	    "{\"a\":1,\"seq\":1,\"prev\":\"A000000000000000000000000000000000000000000000000000"
	    "000000000000\"}",
	    /* seq past 2^64 - 1 */
	    "{\"a\":1,\"seq\":18446744073709551616,\"prev\":\"00000000000000000000000000000000000"
	    "00000000000000000000000000000\"}",
	    /* no '{' first */
	    " {\"a\":1,\"seq\":1,\"prev\":\"000000000000000000000000000000000000000000000000000"
	    "0000000000000\"}",
	};
	struct qach_fields f;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(qach_parse(bad[i], strlen(bad[i]), &f), -QUAI_EFORMAT, "%s", bad[i]);
	const char good[] = "{\"a\":1,\"seq\":18446744073709551615,\"prev\":\"0000000000000000000"
			    "000000000000000000000000000000000000000000001\"}";
	cr_assert_eq(qach_parse(good, strlen(good), &f), 0);
	cr_expect_eq(f.seq, UINT64_MAX);
	cr_expect_eq(f.prev[31], 1);
	cr_expect(!f.has_sig);
}

Test(keys, secret_keys_others_can_read_are_refused)
{
	char prefix[600], keyp[620], pubp[620], err[800] = "";
	uint8_t pk[QKEY_PK_BYTES], sk[QKEY_SK_BYTES];
	struct stat st;

	in_dir(prefix, sizeof(prefix), "k");
	cr_assert_eq(qkey_generate(prefix, pk, err, sizeof(err)), 0, "%s", err);
	snprintf(keyp, sizeof(keyp), "%s.key", prefix);
	snprintf(pubp, sizeof(pubp), "%s.pub", prefix);
	cr_assert_eq(stat(keyp, &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0600);
	/* Never overwritten. */
	cr_expect_eq(qkey_generate(prefix, pk, err, sizeof(err)), -QUAI_EEXISTS);
	cr_assert_eq(chmod(keyp, 0640), 0);
	cr_expect_eq(qkey_load_secret(keyp, sk, pk, err, sizeof(err)), -EPERM);
	cr_expect(strstr(err, keyp), "%s", err);
	/* A public key is not a secret one, nor the reverse. */
	cr_assert_eq(chmod(keyp, 0600), 0);
	cr_expect_eq(qkey_load_public(keyp, pk, err, sizeof(err)), -QUAI_EFORMAT);
	cr_expect_eq(qkey_load_secret(pubp, sk, pk, err, sizeof(err)), -EPERM); /* 0644 */
	cr_assert_eq(chmod(pubp, 0600), 0);
	cr_expect_eq(qkey_load_secret(pubp, sk, pk, err, sizeof(err)), -QUAI_EFORMAT);
}

/* Regression: a seq of 20 digits was cut from the sealed line (its buffer
 * held 17), found by the fuzz harness. */
Test(chain, the_largest_seq_is_sealed_whole)
{
	struct qach_head head = {.seq = UINT64_MAX - 1};
	const char body[] = "{\"event\":\"access\"}\n";
	char line[512];
	struct qach_fields f;

	size_t n = qach_seal(body, sizeof(body) - 1, &head, NULL, line, sizeof(line));
	cr_assert(n > 0 && n < sizeof(line));
	cr_assert_eq(strlen(line), n);
	cr_assert_eq(qach_parse(line, n - 1, &f), 0, "%s", line);
	cr_expect_eq(f.seq, UINT64_MAX);
}

/* A log renamed (or deleted) without a reopen: the writer notices, reopens
 * the path, and the line saying so goes on with the chain. */
Test(chain, a_replaced_log_goes_on_with_the_chain)
{
	char path[600], old[600], err[700] = "";
	struct qach_report rep;
	struct qaudit *a = NULL;
	struct qaudit_event ev = {.event = "access", .uid = -1, .gid = -1, .bytes = -1};

	in_dir(path, sizeof(path), "b.log");
	in_dir(old, sizeof(old), "b.log.old");
	cr_assert_eq(qaudit_open(path, &a, err, sizeof(err)), 0, "%s", err);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(qaudit_log(a, &ev), 0);
	cr_assert_eq(rename(path, old), 0);
	cr_assert_eq(qaudit_log(a, &ev), 0);
	qaudit_close(a);

	const char *both[] = {old, path};
	cr_assert_eq(qach_verify_files(both, 2, NULL, 0, false, &rep), 0, "%s", rep.what);
	cr_expect_eq(rep.lines, 5);
	struct lines l;
	split(path, &l);
	cr_assert_eq(l.n, 2);
	cr_expect(strstr(l.at[0], "\"event\":\"audit-log\"") && strstr(l.at[0], "\"seq\":4,"),
		  "%.*s", (int)l.len[0], l.at[0]);
	free(l.text);
}
