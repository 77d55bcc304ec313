/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "manifest.h"
#include "seektable.h"

static struct qmf_shard shards[2];

static struct qmf sample(void)
{
	struct qmf m = {
	    .format_version = QMF_VERSION,
	    .name = "tokens-\xc3\xa9t\xc3\xa9",
	    .kind = QUAI_RECORDS_FIXED,
	    .fixed_size = 4096,
	    .records = 300,
	    .raw_bytes = 300 * 4096,
	    .compressed_bytes = 2 * 100000,
	    .frames = 4,
	    .classification = QUAI_CLASS_SENSITIVE,
	    .zone = "fr-1",
	    .created = "2026-11-25T00:00:00Z",
	    .creator = "quai test",
	    .level = 3,
	    .frame_size = 2u << 20,
	    .shard_size = 1u << 30,
	    .nshards = 2,
	    .shards = shards,
	};
	for (uint32_t i = 0; i < 2; i++) {
		qmf_shard_names(&shards[i], i);
		shards[i].first_record = i * 200;
		shards[i].records = i ? 100 : 200;
		shards[i].raw_bytes = shards[i].records * 4096;
		shards[i].compressed_bytes = 100000;
		shards[i].index_bytes = 200;
		shards[i].frames = 2;
		shards[i].xxh3 = 0x0123456789abcdefull + i;
		shards[i].index_xxh3 = 0xfedcba9876543210ull - i;
	}
	return m;
}

static char *encode(struct qmf *m, size_t *len)
{
	char *t;
	cr_assert_eq(qmf_encode(m, &t, len), 0);
	return t;
}

/* Replaces the first `from` with `to` and re-seals the checksum, so the
 * validation (not the checksum) must catch the change. */
static char *edit(const char *text, const char *from, const char *to, size_t *len)
{
	const char *at = strstr(text, from);
	cr_assert_not_null(at, "%s not in manifest", from);
	size_t n = strlen(text) - strlen(from) + strlen(to);
	char *out = malloc(n + 1);
	size_t pre = (size_t)(at - text);
	memcpy(out, text, pre);
	strcpy(out + pre, to);
	strcat(out, at + strlen(from));
	char *key = strstr(out, QMF_CHECKSUM_KEY);
	char hex[17];
	snprintf(hex, sizeof(hex), "%016" PRIx64, XXH3_64bits(out, (size_t)(key - out)));
	memcpy(key + strlen(QMF_CHECKSUM_KEY) + 3, hex, 16);
	*len = n;
	return out;
}

Test(manifest, round_trip)
{
	struct qmf m = sample(), p;
	size_t len;
	char *t = encode(&m, &len);
	char err[200];
	cr_assert_eq(qmf_parse(t, len, &p, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(p.name, m.name);
	cr_assert_eq(p.kind, QUAI_RECORDS_FIXED);
	cr_assert_eq(p.fixed_size, 4096);
	cr_assert_eq(p.records, 300);
	cr_assert_eq(p.classification, QUAI_CLASS_SENSITIVE);
	cr_assert_str_eq(p.zone, "fr-1");
	cr_assert_eq(p.nshards, 2);
	cr_assert_eq(p.shards[1].xxh3, shards[1].xxh3);
	cr_assert_eq(p.shards[1].index_xxh3, shards[1].index_xxh3);
	cr_assert_str_eq(p.shards[1].file, "shard-00001.zst");
	cr_assert_eq(p.checksum, m.checksum);
	qmf_release(&p);
	free(t);
}

Test(manifest, every_flipped_byte_is_caught)
{
	struct qmf m = sample(), p;
	size_t len;
	char *t = encode(&m, &len);
	for (size_t i = 0; i < len; i++) {
		char saved = t[i];
		t[i] ^= 0x01;
		int r = qmf_parse(t, len, &p, NULL, 0);
		cr_assert_lt(r, 0, "byte %zu ('%c') flipped and still accepted", i, saved);
		t[i] = saved;
	}
	for (size_t l = 0; l < len - 3; l++)
		cr_assert_lt(qmf_parse(t, l, &p, NULL, 0), 0, "length %zu", l);
	free(t);
}

Test(manifest, absurd_and_hostile_values)
{
	struct qmf m = sample(), p;
	size_t len, elen;
	char *t = encode(&m, &len);
	char err[200];
	struct {
		const char *from, *to, *want;
		int code;
	} cases[] = {
	    {"\"records\": 300", "\"records\": 301", "\"records\" is 301", -QUAI_EFORMAT},
	    {"\"frames\": 4", "\"frames\": 99999999999", "\"frames\" is", -QUAI_EFORMAT},
	    {"\"file\": \"shard-00001.zst\"", "\"file\": \"../../etc/passwd\"", "\"file\" must be",
	     -QUAI_EFORMAT},
	    {"\"format_version\": 1", "\"format_version\": 2", "not supported", -QUAI_EVERSION},
	    {"\"record_kind\": \"fixed\"", "\"record_kind\": \"blocks\"", "record_kind",
	     -QUAI_EFORMAT},
	    {"\"classification\": \"sensitive\"", "\"classification\": \"secret\"",
	     "classification", -QUAI_EFORMAT},
	    {"\"zone\": \"fr-1\"", "\"zone\": \"fr 1\"", "zone", -QUAI_EFORMAT},
	    {"\"first_record\": 200", "\"first_record\": 199", "first_record", -QUAI_EFORMAT},
	    {"\"raw_bytes\": 1228800", "\"raw_bytes\": 18446744073709551616", "out of range",
	     -QUAI_EFORMAT},
	    {"\"record_size\": 4096", "\"record_size\": 0", "record_size", -QUAI_EFORMAT},
	    {"\"frame_size\": 2097152", "\"frame_size\": 1", "frame_size", -QUAI_EFORMAT},
	    {"\"records\": 100, \"frames\": 2", "\"records\": 100, \"frames\": 200",
	     "a record per frame", -QUAI_EFORMAT},
	    {"\"compressed_bytes\": 100000, \"index_bytes\": 200, \"xxh3\": \"0123456789abcdf0\"",
	     "\"compressed_bytes\": 3, \"index_bytes\": 200, \"xxh3\": \"0123456789abcdf0\"",
	     "too small", -QUAI_EFORMAT},
	    {"\"name\": \"tokens", "\"name\": \"a/tokens", "name", -QUAI_EFORMAT},
	    {"\"level\": 3", "\"level\": -3", "level", -QUAI_EFORMAT},
	    {"\"level\": 3", "\"level\": 3, \"level\": 4", "duplicate", -QUAI_EFORMAT},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *e = edit(t, cases[i].from, cases[i].to, &elen);
		int r = qmf_parse(e, elen, &p, err, sizeof(err));
		cr_assert_eq(r, cases[i].code, "case %zu: got %d (%s)", i, r, err);
		cr_assert(strstr(err, cases[i].want), "case %zu: message '%s' lacks '%s'", i, err,
			  cases[i].want);
		free(e);
	}
	free(t);
}

Test(manifest, not_json_names_the_place)
{
	struct qmf p;
	char err[200];
	const char *t = "{\n  \"format\": \"quai-dataset\",\n  oops\n}";
	cr_assert_eq(qmf_parse(t, strlen(t), &p, err, sizeof(err)), -QUAI_EFORMAT);
	cr_assert(strstr(err, "line 3"), "%s", err);
	cr_assert_eq(qmf_parse("[]", 2, &p, err, sizeof(err)), -QUAI_EFORMAT);
	cr_assert_eq(qmf_parse("", 0, &p, err, sizeof(err)), -QUAI_EFORMAT);
}

Test(manifest, names)
{
	cr_assert_eq(qmf_check_name("ok-name_1.2"), 0);
	cr_assert_eq(qmf_check_name("caf\xc3\xa9"), 0);
	cr_assert_eq(qmf_check_name("bad\xff"), -EINVAL);
	cr_assert_eq(qmf_check_name("a/b"), -EINVAL);
	cr_assert_eq(qmf_check_name(".."), -EINVAL);
	cr_assert_eq(qmf_check_name(""), -EINVAL);
	cr_assert_eq(qmf_check_name("tab\there"), -EINVAL);
}
