/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "byteorder.h"
#include "quai/quai.h"
#include "seektable.h"
#include "shardindex.h"

/* Two frames of variable records with names: "a" (3 bytes), "d/b" (0
 * bytes) | "c" (10 bytes). */
static void build_named(uint8_t **buf, size_t *len)
{
	struct qix_builder b = {0};
	qix_builder_record(&b, 3, "a", 1);
	qix_builder_record(&b, 3, "d/b", 3);
	qix_builder_frame(&b, 20, 3, 2, 0x1111, 0x2222);
	qix_builder_record(&b, 10, "c", 1);
	qix_builder_frame(&b, 30, 10, 1, 0x3333, 0x4444);
	uint64_t shard_bytes = 50 + qst_encoded_size(2);
	cr_assert_eq(
	    qix_builder_finish(&b, QIX_F_RECORD_TABLE | QIX_F_NAMES, 0, 100, shard_bytes, buf, len),
	    0);
	qix_builder_reset(&b);
}

/* Rewrites the trailing checksum after a deliberate change, so that the
 * parser's consistency checks (not the checksum) must catch it. */
static void reseal(uint8_t *buf, size_t len)
{
	qput64(buf + len - 8, XXH3_64bits(buf, len - 8));
}

Test(shardindex, round_trip_named)
{
	uint8_t *buf;
	size_t len;
	build_named(&buf, &len);
	struct qix ix;
	cr_assert_eq(qix_parse(buf, len, &ix), 0);
	cr_assert_eq(ix.records, 3);
	cr_assert_eq(ix.nframes, 2);
	cr_assert_eq(ix.first_record, 100);
	cr_assert_eq(ix.raw_bytes, 13);
	cr_assert_eq(ix.frames[1].c_offset, 20);
	cr_assert_eq(ix.frames[1].r_offset, 3);
	cr_assert_eq(ix.frames[1].c_xxh3, 0x3333);
	cr_assert_eq(ix.frames[1].xxh64, 0x4444);

	uint32_t f, off, l;
	qix_locate(&ix, 0, &f, &off, &l);
	cr_assert(f == 0 && off == 0 && l == 3);
	qix_locate(&ix, 1, &f, &off, &l);
	cr_assert(f == 0 && off == 3 && l == 0);
	qix_locate(&ix, 2, &f, &off, &l);
	cr_assert(f == 1 && off == 0 && l == 10);
	size_t nl;
	const char *n = qix_name(&ix, 1, &nl);
	cr_assert_eq(nl, 3);
	cr_assert_arr_eq(n, "d/b", 3);
	qix_release(&ix);
	free(buf);
}

Test(shardindex, fixed_records)
{
	struct qix_builder b = {0};
	uint8_t *buf;
	size_t len;
	for (int i = 0; i < 5; i++)
		qix_builder_frame(&b, 7, 4 * 16, 4, 1, 2);
	qix_builder_frame(&b, 7, 16, 1, 1, 2);
	cr_assert_eq(qix_builder_finish(&b, 0, 16, 0, 42 + qst_encoded_size(6), &buf, &len), 0);
	qix_builder_reset(&b);
	struct qix ix;
	cr_assert_eq(qix_parse(buf, len, &ix), 0);
	for (uint64_t r = 0; r < 21; r++) {
		uint32_t f, off, l;
		qix_locate(&ix, r, &f, &off, &l);
		cr_assert_eq(f, r / 4);
		cr_assert_eq(off, (r % 4) * 16);
		cr_assert_eq(l, 16);
	}
	size_t nl;
	cr_assert_null(qix_name(&ix, 0, &nl));
	qix_release(&ix);
	free(buf);
}

Test(shardindex, every_flipped_byte_is_caught)
{
	uint8_t *buf;
	size_t len;
	build_named(&buf, &len);
	struct qix ix;
	for (size_t i = 0; i < len; i++) {
		buf[i] ^= 0x01;
		cr_assert_lt(qix_parse(buf, len, &ix), 0, "byte %zu", i);
		buf[i] ^= 0x01;
	}
	for (size_t l = 0; l < len; l++)
		cr_assert_lt(qix_parse(buf, l, &ix), 0, "length %zu", l);
	free(buf);
}

Test(shardindex, inconsistent_fields_are_format_errors)
{
	uint8_t *good, *buf;
	size_t len;
	struct qix ix;
	build_named(&good, &len);
	buf = malloc(len);

	struct {
		size_t off;
		uint64_t value;
		int width;
		int want;
	} cases[] = {
	    {8, 2, 4, -QUAI_EVERSION},		     /* version */
	    {12, 0x7, 4, -QUAI_EFORMAT},	     /* unknown flag */
	    {16, 4, 8, -QUAI_EFORMAT},		     /* record count */
	    {24, 3, 4, -QUAI_EFORMAT},		     /* frame count */
	    {28, 5, 4, -QUAI_EFORMAT},		     /* fixed size with a record table */
	    {48, 1u << 30, 8, -QUAI_EFORMAT},	     /* shard size vs frames */
	    {64, 1, 8, -QUAI_EFORMAT},		     /* frame 0 not at offset 0 */
	    {64 + 16, 1, 4, -QUAI_EFORMAT},	     /* frame 0 first record */
	    {64 + 20, 0, 4, -QUAI_EFORMAT},	     /* frame 0 with no records */
	    {64 + 12, 0x50000000, 4, -QUAI_EFORMAT}, /* raw size past the limit */
	    {64 + 80, 4, 4, -QUAI_EFORMAT},	     /* record end past its frame */
	    {64 + 80 + 12, 1000, 8, -QUAI_EFORMAT},  /* name end past the names */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(buf, good, len);
		if (cases[i].width == 4)
			qput32(buf + cases[i].off, (uint32_t)cases[i].value);
		else
			qput64(buf + cases[i].off, cases[i].value);
		reseal(buf, len);
		cr_assert_eq(qix_parse(buf, len, &ix), cases[i].want, "case %zu", i);
	}
	free(buf);
	free(good);
}

Test(shardindex, hostile_names_are_refused)
{
	const char *bad[] = {"/etc/passwd", "..", "../x", "a/../b", "a//b",
			     "a/",	    ".",  "./a",  "a/."};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(qix_check_name(bad[i], strlen(bad[i])), -QUAI_EFORMAT, "%s", bad[i]);
	cr_assert_eq(qix_check_name("a\0b", 3), -QUAI_EFORMAT);
	cr_assert_eq(qix_check_name("", 0), -QUAI_EFORMAT);
	const char *good[] = {"a", "a/b/c.jpg", "..a", "a..", ".hidden", "d\xff\xfe"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert_eq(qix_check_name(good[i], strlen(good[i])), 0, "%s", good[i]);

	/* And an index carrying one is refused whole. */
	struct qix_builder b = {0};
	uint8_t *buf;
	size_t len;
	struct qix ix;
	qix_builder_record(&b, 1, "../../etc/cron.d/x", 18);
	qix_builder_frame(&b, 9, 1, 1, 0, 0);
	cr_assert_eq(qix_builder_finish(&b, QIX_F_RECORD_TABLE | QIX_F_NAMES, 0, 0,
					9 + qst_encoded_size(1), &buf, &len),
		     0);
	qix_builder_reset(&b);
	cr_assert_eq(qix_parse(buf, len, &ix), -QUAI_EFORMAT);
	free(buf);
}
