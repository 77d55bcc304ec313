/* SPDX-License-Identifier: Apache-2.0 */
/* Buffers for a sensitive dataset's bytes outside the pinned pool (a
 * reader's frames, quai verify's): locked in memory so that they are never
 * swapped out, kept out of core dumps and children, and zeroed when freed.
 * docs/SECURITY.md. Other datasets' buffers are plain malloc. */
#ifndef QUAI_COMMON_SECMEM_H
#define QUAI_COMMON_SECMEM_H

#include <stddef.h>

/* len bytes; locked when `sensitive`. Returns the buffer, or NULL with
 * *err: -ENOMEM (no memory), or -EAGAIN when a sensitive buffer could not
 * be locked (RLIMIT_MEMLOCK, mostly). */
void *qsm_alloc(size_t len, int sensitive, int *err);

/* Frees what qsm_alloc() returned, with the same len and sensitive; a
 * sensitive buffer is zeroed first. NULL is a no-op. */
void qsm_free(void *p, size_t len, int sensitive);

#endif /* QUAI_COMMON_SECMEM_H */
