/* SPDX-License-Identifier: Apache-2.0 */
/*
 * common/'s small helpers (strutil.h, clock.h), linked with common/ alone:
 * the size parser the CLI and quaid's configuration share, and how a value
 * is shown in a message.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "clock.h"
#include "strutil.h"

Test(strutil, sizes_with_binary_suffixes)
{
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
	    {"0", 0},
	    {"4096", 4096},
	    {"1b", 1},
	    {"64K", 64 << 10},
	    {"64kib", 64 << 10},
	    {"256M", 256ull << 20},
	    {"1GiB", 1ull << 30},
	    {"2t", 2ull << 40},
	    {"16777215TiB", 16777215ull << 40},
	    {"18446744073709551615", UINT64_MAX},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t v = 1;
		cr_expect_eq(qstr_parse_size(ok[i].s, 0, &v), 0, "%s", ok[i].s);
		cr_expect_eq(v, ok[i].v, "%s", ok[i].s);
	}
	static const char *const bad[] = {"", "M", "-1", "+1", " 1", "1 M", "1MB", "1.5G", "1e3"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = 7;
		cr_expect_eq(qstr_parse_size(bad[i], 0, &v), -EINVAL, "'%s'", bad[i]);
		cr_expect_eq(v, 7, "'%s': written on failure", bad[i]);
	}
	uint64_t v;
	cr_expect_eq(qstr_parse_size("18446744073709551616", 0, &v), -ERANGE);
	cr_expect_eq(qstr_parse_size("16777216T", 0, &v), -ERANGE);
	/* Blanks before the suffix only where asked for (quaid's settings). */
	cr_expect_eq(qstr_parse_size("256 MiB", 1, &v), 0);
	cr_expect_eq(v, 256ull << 20);
	cr_expect_eq(qstr_parse_size("256\tM", 1, &v), 0);
	cr_expect_eq(qstr_parse_size("256 ", 1, &v), 0);
	cr_expect_eq(v, 256);
	cr_expect_eq(qstr_parse_size("256 M", 0, &v), -EINVAL);
}

Test(strutil, digits_stop_at_the_first_other_byte)
{
	const char *end = NULL;
	uint64_t v = 9;
	cr_expect_eq(qstr_parse_digits("8080x", &end, &v), 0);
	cr_expect_eq(v, 8080);
	cr_expect_str_eq(end, "x");
	cr_expect_eq(qstr_parse_digits("007", &end, &v), 0);
	cr_expect_eq(v, 7);
	cr_expect_str_eq(end, "");
	v = 9;
	end = NULL;
	cr_expect_eq(qstr_parse_digits("x1", &end, &v), -EINVAL);
	cr_expect_eq(qstr_parse_digits("", &end, &v), -EINVAL);
	cr_expect_eq(qstr_parse_digits("-1", &end, &v), -EINVAL);
	cr_expect_eq(qstr_parse_digits("99999999999999999999", &end, &v), -ERANGE);
	cr_expect_eq(v, 9, "written on failure");
	cr_expect_null(end, "written on failure");
}

Test(strutil, printable_replaces_and_cuts)
{
	char buf[12];
	cr_expect_str_eq(qstr_printable(buf, 8, "abc", SIZE_MAX), "abc");
	cr_expect_str_eq(qstr_printable(buf, 8, "a\tb\x1b[c\x7f\xc3\xa9", SIZE_MAX), "a?b?[c??...");
	cr_expect_str_eq(qstr_printable(buf, 8, "12345678", SIZE_MAX), "12345678");
	cr_expect_str_eq(qstr_printable(buf, 8, "123456789", SIZE_MAX), "12345678...");
	/* A counted string: no NUL needed, and a NUL inside ends it. */
	cr_expect_str_eq(qstr_printable(buf, 8, "abcdef", 3), "abc");
	cr_expect_str_eq(qstr_printable(buf, 8, "ab\0cd", 5), "ab");
	cr_expect_str_eq(qstr_printable(buf, 0, "x", SIZE_MAX), "...");
	cr_expect_str_eq(qstr_printable(buf, 0, "", SIZE_MAX), "");
}

Test(clock, monotonic_nanoseconds)
{
	uint64_t a = qclock_now_ns(), b = qclock_now_ns();
	cr_expect_gt(a, 0);
	cr_expect_geq(b, a);
}
