/* SPDX-License-Identifier: Apache-2.0 */
/* Buffers for a sensitive dataset's bytes outside the pinned pool (a
 * reader's frames, quai verify's): locked in memory so that they are never
 * swapped out, kept out of core dumps and children, and zeroed when freed.
 * docs/SECURITY.md. Other datasets' buffers are plain malloc. */
#ifndef QUAI_COMMON_SECMEM_H
#define QUAI_COMMON_SECMEM_H

#include <stddef.h>
#include <zstd.h>

/* len bytes; locked when `sensitive`. Returns the buffer, or NULL with
 * *err: -ENOMEM (no memory), or -EAGAIN when a sensitive buffer could not
 * be locked (RLIMIT_MEMLOCK, mostly). */
void *qsm_alloc(size_t len, int sensitive, int *err);

/* Frees what qsm_alloc() returned, with the same len and sensitive; a
 * sensitive buffer is zeroed first. NULL is a no-op. */
void qsm_free(void *p, size_t len, int sensitive);

/* A decompression context whose own memory is locked, kept out of core
 * dumps and zeroed when freed, when `sensitive` (its literals buffer holds
 * up to 128 KiB of the frame being decoded); ZSTD_createDCtx() otherwise.
 * Such a context decodes whole frames (ZSTD_decompressDCtx) and nothing
 * else. NULL with *err as qsm_alloc(). */
ZSTD_DCtx *qsm_dctx_new(int sensitive, int *err);

/* Frees what qsm_dctx_new() returned, with the same `sensitive`. */
void qsm_dctx_free(ZSTD_DCtx *d, int sensitive);

#endif /* QUAI_COMMON_SECMEM_H */
