/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "byteorder.h"
#include "quai/quai.h"
#include "seektable.h"

static const struct qst_entry three[] = {
    {.csize = 100, .rsize = 4096, .checksum = 0xdeadbeef},
    {.csize = 1, .rsize = 0, .checksum = 0},
    {.csize = 0xffffffffu, .rsize = QST_MAX_FRAME_RSIZE, .checksum = 7},
};

Test(seektable, round_trip)
{
	uint8_t buf[128];
	int64_t n = qst_encode(three, 3, buf, sizeof(buf));
	cr_assert_eq(n, (int64_t)qst_encoded_size(3));
	cr_assert_eq(n, 8 + 3 * 12 + 9);
	struct qst_entry e[3];
	int cs = 0;
	cr_assert_eq(qst_decode(buf, (size_t)n, e, 3, &cs), 3);
	cr_assert_eq(cs, 1);
	cr_assert_arr_eq(e, three, sizeof(three));
}

Test(seektable, layout_is_the_seekable_format)
{
	uint8_t buf[64];
	int64_t n = qst_encode(three, 1, buf, sizeof(buf));
	/* Skippable frame magic, size of what follows, one entry, footer. */
	cr_assert_eq(qle32(buf), 0x184D2A5Eu);
	cr_assert_eq(qle32(buf + 4), (uint32_t)n - 8);
	cr_assert_eq(qle32(buf + 8), 100u);
	cr_assert_eq(qle32(buf + 12), 4096u);
	cr_assert_eq(qle32(buf + 16), 0xdeadbeefu);
	cr_assert_eq(qle32(buf + 20), 1u);
	cr_assert_eq(buf[24], 0x80);
	cr_assert_eq(qle32(buf + 25), 0x8F92EAB1u);
}

Test(seektable, accepts_tables_without_checksums)
{
	/* As other writers of the format may produce. */
	uint8_t buf[8 + 2 * 8 + 9];
	qput32(buf, QST_SKIPPABLE_MAGIC);
	qput32(buf + 4, sizeof(buf) - 8);
	qput32(buf + 8, 10);
	qput32(buf + 12, 20);
	qput32(buf + 16, 30);
	qput32(buf + 20, 40);
	qput32(buf + 24, 2);
	buf[28] = 0x00;
	qput32(buf + 29, QST_SEEKABLE_MAGIC);
	struct qst_entry e[2];
	int cs = 1;
	cr_assert_eq(qst_decode(buf, sizeof(buf), e, 2, &cs), 2);
	cr_assert_eq(cs, 0);
	cr_assert_eq(e[1].csize, 30u);
	cr_assert_eq(e[1].rsize, 40u);
	cr_assert_eq(e[1].checksum, 0u);
}

Test(seektable, rejects_damage)
{
	uint8_t good[128], buf[128];
	int64_t n = qst_encode(three, 2, good, sizeof(good));
	struct qst_entry e[4];
	int cs;

	/* Every single-bit change of the header, the frame count or the magic
	 * makes the table inconsistent. (Entries are data, and bits 1..0 of the
	 * descriptor are unused by the format: verify compares the whole table
	 * with the index to catch those.) */
	size_t must_fail[] = {0,
			      1,
			      2,
			      3,
			      4,
			      5,
			      6,
			      7,
			      (size_t)n - 9,
			      (size_t)n - 4,
			      (size_t)n - 3,
			      (size_t)n - 2,
			      (size_t)n - 1};
	for (size_t i = 0; i < sizeof(must_fail) / sizeof(must_fail[0]); i++) {
		memcpy(buf, good, (size_t)n);
		buf[must_fail[i]] ^= 0x01;
		cr_assert_lt(qst_decode(buf, (size_t)n, e, 4, &cs), 0, "byte %zu", must_fail[i]);
	}
	/* Reserved descriptor bits. */
	memcpy(buf, good, (size_t)n);
	buf[n - 5] |= 0x04;
	cr_assert_eq(qst_decode(buf, (size_t)n, e, 4, &cs), -QUAI_EFORMAT);
	/* Truncated. */
	for (size_t len = 0; len < (size_t)n; len++)
		cr_assert_lt(qst_decode(good, len, e, 4, &cs), 0, "length %zu", len);
	/* A raw size above the format's limit. */
	memcpy(buf, good, (size_t)n);
	qput32(buf + 12, QST_MAX_FRAME_RSIZE + 1);
	cr_assert_eq(qst_decode(buf, (size_t)n, e, 4, &cs), -QUAI_EFORMAT);
	/* Too small an output array. */
	cr_assert_eq(qst_decode(good, (size_t)n, e, 1, &cs), -ENOSPC);
}

Test(seektable, footer_limits)
{
	uint8_t f[9];
	uint32_t n;
	int cs;
	uint64_t size;
	qput32(f, QST_MAX_FRAMES + 1);
	f[4] = 0x80;
	qput32(f + 5, QST_SEEKABLE_MAGIC);
	cr_assert_eq(qst_parse_footer(f, &n, &cs, &size), -QUAI_EFORMAT);
	qput32(f, QST_MAX_FRAMES);
	cr_assert_eq(qst_parse_footer(f, &n, &cs, &size), 0);
	cr_assert_eq(size, 8 + (uint64_t)QST_MAX_FRAMES * 12 + 9);
	cr_assert_eq(qst_encode(three, QST_MAX_FRAMES + 1, f, sizeof(f)), -EINVAL);
	cr_assert_eq(qst_encode(three, 3, f, sizeof(f)), -ENOSPC);
}
