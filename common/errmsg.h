/* SPDX-License-Identifier: Apache-2.0 */
/* The detail messages that accompany error codes across the library. */
#ifndef QUAI_COMMON_ERRMSG_H
#define QUAI_COMMON_ERRMSG_H

#include <stddef.h>

/* printf into the caller's message buffer; nothing when err is NULL or
 * err_len is 0. Always NUL-terminates. */
void qerr_set(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
