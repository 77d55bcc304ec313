/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A context's pinned memory, as the client's remote streams use it: the
 * narrow interface of the engine for stager/client/, which knows nothing of
 * the context's insides (engine.h, pool.h). Thread-safe, as the pool is.
 */
#ifndef QUAI_STAGER_CTXMEM_H
#define QUAI_STAGER_CTXMEM_H

#include <stddef.h>

#include "quai/quai.h"

/* Every block's alignment (a page: O_DIRECT and fabric registration). */
#define QCTX_MEM_ALIGN 4096u

/* 1 when the context's pool is locked in memory (mlocked, out of core
 * dumps), 0 when it could not be (QUAI_CTX_UNLOCKED_OK). */
int qctx_mem_locked(const quai_ctx *ctx);
/* From now on, every block given back is wiped first (sensitive data has
 * entered the pool). */
void qctx_mem_wipe_on_free(quai_ctx *ctx);
/* A block of at least size bytes, QCTX_MEM_ALIGN-aligned, from the pinned
 * pool: 0, or -ENOBUFS when the pool has not that much free (never
 * blocks). */
int qctx_mem_alloc(quai_ctx *ctx, size_t size, void **ret_block);
/* Gives a block from qctx_mem_alloc() back; NULL is a no-op. */
void qctx_mem_release(quai_ctx *ctx, void *block);
/* Counts a stream open on the context (delta +1) or closed (-1), so that
 * quai_ctx_free() refuses while streams are open and read-ahead leaves
 * room for the others. */
void qctx_streams_add(quai_ctx *ctx, int delta);

#endif /* QUAI_STAGER_CTXMEM_H */
