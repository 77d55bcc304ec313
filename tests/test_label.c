/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Signed labels (stager/site/label.h): a signed dataset checks as signed
 * with its key, untrusted with another; the attack of issue 23 — the
 * manifest relabelled sensitive -> public and its checksum recomputed —
 * is named as a relabelling; a manifest changed in any other member, a
 * shard changed, or manifest.sig edited are bad; the parser refuses
 * malformed files with the line.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "label.h"
#include "manifest.h"
#include "quai/quai.h"
#include "sitekey.h"
#include "testutil.h"

static char dir[512];
static uint8_t pk[QKEY_PK_BYTES], sk[QKEY_SK_BYTES];

static const char *path(const char *name)
{
	static char buf[4][700];
	static int k;

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
	return buf[k];
}

static void setup(void)
{
	char err[800] = "";

	umask(022);
	tu_mkdtemp(dir, sizeof(dir));
	cr_assert_eq(qkey_generate(path("steward"), pk, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(qkey_load_secret(path("steward.key"), sk, pk, err, sizeof(err)), 0, "%s", err);

	/* A sensitive dataset of two shards. */
	tu_write_lines(path("in.txt"), 200000, 5, 26, 3, 31, 90);
	const char *srcs[] = {path("in.txt")};
	struct quai_pack_opts o = {.size = sizeof(o),
				   .kind = QUAI_RECORDS_LINES,
				   .frame_size = QUAI_FRAME_SIZE_MIN,
				   .shard_size = 64 << 10,
				   .classification = QUAI_CLASS_SENSITIVE,
				   .zone = "fr-1",
				   .threads = 1};
	setenv("QUAI_CONF", path("host.conf"), 1);
	char conf[900];
	snprintf(conf, sizeof(conf), "zone = fr-1\nsovereign_paths = %s\n", dir);
	tu_write(path("host.conf"), conf, strlen(conf));
	tu_pack(srcs, 1, path("ds"), &o);
}

static void teardown(void)
{
	tu_rmtree(dir);
}

TestSuite(label, .init = setup, .fini = teardown);

/* The manifest of ds: parsed, its bytes, the directory. */
struct ds {
	int dfd;
	uint8_t *text;
	size_t len;
	struct qmf m;
};

static void open_ds(struct ds *d)
{
	char err[256] = "";

	d->dfd = open(path("ds"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(d->dfd, 0);
	cr_assert_eq(qfs_read_file(d->dfd, "manifest.json", QMF_MAX_BYTES, &d->text, &d->len), 0);
	cr_assert_eq(qmf_parse((const char *)d->text, d->len, &d->m, err, sizeof(err)), 0, "%s",
		     err);
}

static void close_ds(struct ds *d)
{
	qmf_release(&d->m);
	free(d->text);
	close(d->dfd);
}

static int check(const uint8_t *keys, size_t n, bool content, char *why, size_t len)
{
	struct ds d;

	open_ds(&d);
	int r = qlbl_check(d.dfd, &d.m, (const char *)d.text, d.len, keys, n, content, why, len);
	close_ds(&d);
	return r;
}

static void sign(void)
{
	struct ds d;
	char err[512] = "";

	open_ds(&d);
	cr_assert_eq(
	    qlbl_sign(d.dfd, &d.m, (const char *)d.text, d.len, sk, false, err, sizeof(err)), 0,
	    "%s", err);
	close_ds(&d);
}

Test(label, signed_untrusted_unsigned)
{
	char why[1024];
	uint8_t other[QKEY_PK_BYTES];

	cr_expect_eq(check(pk, 1, true, why, sizeof(why)), QLBL_UNSIGNED, "%s", why);
	sign();
	cr_expect_eq(check(pk, 1, true, why, sizeof(why)), QLBL_SIGNED, "%s", why);
	memcpy(other, pk, sizeof(other));
	other[5] ^= 0x20;
	cr_expect_eq(check(other, 1, true, why, sizeof(why)), QLBL_UNTRUSTED, "%s", why);
	cr_expect(strstr(why, "not one of the site keys"), "%s", why);
}

/* The attack: sensitive -> public, manifest_xxh3 recomputed. */
Test(label, relabelled_with_a_fresh_checksum_is_named)
{
	char why[1024];
	struct ds d;
	char *text;
	size_t len;

	sign();
	open_ds(&d);
	d.m.classification = QUAI_CLASS_PUBLIC;
	cr_assert_eq(qmf_encode(&d.m, &text, &len), 0);
	close_ds(&d);
	unlink(path("ds/manifest.json"));
	tu_write(path("ds/manifest.json"), text, len);
	free(text);
	/* The manifest is sound: only the signature tells. */
	open_ds(&d);
	cr_expect_eq(d.m.classification, QUAI_CLASS_PUBLIC);
	close_ds(&d);
	cr_expect_eq(check(pk, 1, false, why, sizeof(why)), QLBL_BAD);
	cr_expect(strstr(why, "relabelled: signed (key ") && strstr(why, "sensitive, zone fr-1") &&
		      strstr(why, "the manifest says dataset ds, public, zone fr-1"),
		  "%s", why);
}

Test(label, another_member_changed_or_a_shard_changed)
{
	char why[1024];
	struct ds d;
	char *text;
	size_t len;

	sign();
	/* The creator changed: the label holds, the manifest's hash not. */
	open_ds(&d);
	snprintf(d.m.creator, sizeof(d.m.creator), "someone else");
	cr_assert_eq(qmf_encode(&d.m, &text, &len), 0);
	close_ds(&d);
	tu_write(path("ds/manifest.json.new"), text, len);
	free(text);
	cr_assert_eq(rename(path("ds/manifest.json"), path("manifest.orig")), 0);
	cr_assert_eq(rename(path("ds/manifest.json.new"), path("ds/manifest.json")), 0);
	cr_expect_eq(check(pk, 1, false, why, sizeof(why)), QLBL_BAD);
	cr_expect(strstr(why, "manifest.json is not the manifest signed"), "%s", why);
	cr_assert_eq(rename(path("manifest.orig"), path("ds/manifest.json")), 0);
	cr_expect_eq(check(pk, 1, true, why, sizeof(why)), QLBL_SIGNED, "%s", why);

	/* One byte of shard 1 flipped, size kept: only the content check
	 * (BLAKE2b of every file) sees it. */
	size_t slen;
	uint8_t *shard = tu_read(path("ds/shard-00001.zst"), &slen);
	shard[slen / 2] ^= 1;
	unlink(path("ds/shard-00001.zst"));
	tu_write(path("ds/shard-00001.zst"), shard, slen);
	free(shard);
	cr_expect_eq(check(pk, 1, false, why, sizeof(why)), QLBL_SIGNED, "%s", why);
	cr_expect_eq(check(pk, 1, true, why, sizeof(why)), QLBL_BAD);
	cr_expect(strstr(why, "shard-00001.zst is another dataset's, or changed"), "%s", why);
}

Test(label, parse_names_the_line)
{
	static const struct {
		const char *text;
		const char *want;
	} bad[] = {
	    {"", "line 1: missing"},
	    {"quai-signature 2\n", "line 1: not"},
	    {"quai-signature 1\nkey 00\n", "line 2: expected key"},
	    {"quai-signature 1\nkey "
	     "0000000000000000000000000000000000000000000000000000000000000000\ndataset a/b\n",
	     "line 3: expected dataset"},
	    {"quai-signature 1\nkey "
	     "0000000000000000000000000000000000000000000000000000000000000000\ndataset "
	     "a\nclassification secret\n",
	     "line 4: expected classification"},
	    {"quai-signature 1\nkey "
	     "0000000000000000000000000000000000000000000000000000000000000000\ndataset "
	     "a\nclassification public\nzone fr 1\n",
	     "line 5: expected zone"},
	    {"quai-signature 1\nkey "
	     "0000000000000000000000000000000000000000000000000000000000000000\ndataset "
	     "a\nclassification public\nzone fr-1\nmanifest-blake2b "
	     "0000000000000000000000000000000000000000000000000000000000000000\nshard 1 x\n",
	     "line 7: expected shard 0"},
	};
	struct qlbl l;
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		cr_expect_eq(qlbl_parse(bad[i].text, strlen(bad[i].text), &l, err, sizeof(err)),
			     -QUAI_EFORMAT, "%zu", i);
		cr_expect(strstr(err, bad[i].want), "%zu: %s", i, err);
	}
}
