/* SPDX-License-Identifier: Apache-2.0 */
/* Decompression contexts for a sensitive dataset's frames: the context's
 * own memory locked like every other buffer of its bytes (common/secmem.h).
 * Here, beside the format, rather than in common/: it is zstd's. */
#ifndef QUAI_COMPRESS_DCTX_H
#define QUAI_COMPRESS_DCTX_H

#include <zstd.h>

/* A decompression context whose own memory is locked, kept out of core
 * dumps and zeroed when freed, when `sensitive` (its literals buffer holds
 * up to 128 KiB of the frame being decoded); ZSTD_createDCtx() otherwise.
 * Such a context decodes whole frames (ZSTD_decompressDCtx) and nothing
 * else. NULL with *err as qsm_alloc(): -ENOMEM, or -EAGAIN when it could
 * not be locked. */
ZSTD_DCtx *qdc_new(int sensitive, int *err);

/* Frees what qdc_new() returned, with the same `sensitive`. */
void qdc_free(ZSTD_DCtx *d, int sensitive);

#endif /* QUAI_COMPRESS_DCTX_H */
