/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small string helpers every room's messages and settings share: a value
 * shown safely in a message, and a size with a binary suffix.
 */
#ifndef QUAI_COMMON_STRUTIL_H
#define QUAI_COMMON_STRUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Copies at most `max` bytes of s - its first `len` bytes, or up to its
 * NUL, whichever comes first - into buf for a message, every byte that is
 * not printable ASCII as '?' (s may hold anything, and the message reaches
 * a terminal or a log), then "..." when s was cut. buf holds max + 4
 * bytes; it is always NUL-terminated. Returns buf. */
const char *qstr_printable(char *buf, size_t max, const char *s, size_t len);

/* Decimal digits at s (at least one; no sign, no blanks) into *ret;
 * *ret_end is the first byte after them. Returns 0, -EINVAL when s does
 * not start with a digit, -ERANGE when the number does not fit in 64 bits.
 * Nothing is written on failure. */
int qstr_parse_digits(const char *s, const char **ret_end, uint64_t *ret);

/* A size: decimal digits, then (after blanks, when `blanks` is nonzero) an
 * optional binary suffix in any case: B, K/KiB, M/MiB, G/GiB, T/TiB.
 * Returns 0 with *ret set, -EINVAL when s is not such a size, -ERANGE when
 * it does not fit in 64 bits. */
int qstr_parse_size(const char *s, int blanks, uint64_t *ret);

#endif /* QUAI_COMMON_STRUTIL_H */
