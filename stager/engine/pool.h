/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pinned pool: one allocation, made once per context, that every frame
 * and batch of the staging engine lives in. Huge pages when the system has
 * them (MAP_HUGETLB, else transparent huge pages), locked in memory
 * (mlock), excluded from core dumps (MADV_DONTDUMP), not inherited by
 * children (MADV_DONTFORK), optionally registered with the GPU runtime so
 * that GPUs copy from it by DMA, and wiped when blocks are released and when
 * it is destroyed. Blocks are carved out of it by a small allocator.
 */
#ifndef QUAI_STAGER_POOL_H
#define QUAI_STAGER_POOL_H

#include <stddef.h>
#include <stdint.h>

#define QPOOL_ALIGN 4096u /* every block: O_DIRECT and page aligned */

enum {
	QPOOL_HUGE_AUTO = 0, /* MAP_HUGETLB if it can be had, else THP */
	QPOOL_HUGE_OFF = 1,  /* plain pages */
};

enum {
	QPOOL_LOCK_REQUIRED = 0, /* mlock must succeed, else qpool_new fails */
	QPOOL_LOCK_TRY = 1,	 /* lock if allowed; report whether it was */
};

enum {
	QPOOL_GPU_NONE = 0,
	QPOOL_GPU_AUTO = 1, /* register with whichever runtime this build has and
			       finds a device for; silently none otherwise */
	QPOOL_GPU_HIP = 2,  /* hipHostRegister; an error if it fails */
	QPOOL_GPU_CUDA = 3, /* cudaHostRegister; an error if it fails */
};

struct qpool_opts {
	uint64_t bytes; /* rounded up to the page (or huge page) size */
	int huge;	/* QPOOL_HUGE_* */
	int lock;	/* QPOOL_LOCK_* */
	int gpu;	/* QPOOL_GPU_* */
	int wipe;	/* zero blocks on release, and the pool on destroy */
	int lazy;	/* lock the pages as they are first touched, and touch
			   none now (mlock2 MLOCK_ONFAULT) */
};

struct qpool_info {
	void *base;
	uint64_t bytes;
	int hugetlb;	    /* backed by MAP_HUGETLB pages */
	int thp;	    /* MADV_HUGEPAGE was applied */
	int locked;	    /* mlock succeeded */
	int dontdump;	    /* MADV_DONTDUMP succeeded */
	int gpu;	    /* QPOOL_GPU_HIP/CUDA when registered, else NONE */
	char gpu_note[128]; /* why the pool is not GPU-registered, or the device */
	uint64_t used;	    /* bytes in live blocks */
	uint64_t peak;	    /* highest `used` seen */
};

struct qpool;

/* Creates the pool. Errors: -ENOMEM when the mapping fails; -EPERM or
 * -ENOMEM from mlock with QPOOL_LOCK_REQUIRED, with err saying how much
 * was asked, the current RLIMIT_MEMLOCK, and how to raise it (ulimit -l,
 * limits.conf, LimitMEMLOCK= for services); -ENODEV when a GPU runtime was
 * asked for by name and is not in this build or finds no device. */
int qpool_new(const struct qpool_opts *o, struct qpool **ret_pool, char *err, size_t err_len);

/* Wipes the pool (when made with wipe, or once qpool_wipe_on_free() was
 * called), unregisters it from the GPU runtime, unmaps it. NULL is a no-op.
 * Blocks still held are wiped and unmapped too. */
void qpool_free(struct qpool *pool);

/* From now on, qpool_free() wipes everything ever handed out: called when
 * sensitive bytes enter a pool made without wipe. Thread-safe. */
void qpool_wipe_on_free(struct qpool *pool);

/* A block of at least `size` bytes, QPOOL_ALIGN-aligned. Never blocks:
 * returns -ENOMEM when no free range is large enough now (the caller waits
 * for a release), -E2BIG when size exceeds the pool. Thread-safe. */
int qpool_alloc(struct qpool *pool, size_t size, void **ret_block);

/* Returns a block (wiping it first when the pool was made with wipe).
 * Thread-safe. */
void qpool_release(struct qpool *pool, void *block);

void qpool_info(struct qpool *pool, struct qpool_info *ret);

#endif /* QUAI_STAGER_POOL_H */
