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

/* A size: decimal digits, then (after blanks, when `blanks` is nonzero) an
 * optional binary suffix in any case: B, K/KiB, M/MiB, G/GiB, T/TiB.
 * Returns 0 with *ret set, -EINVAL when s is not such a size, -ERANGE when
 * it does not fit in 64 bits. */
int qstr_parse_size(const char *s, int blanks, uint64_t *ret);

#endif /* QUAI_COMMON_STRUTIL_H */
