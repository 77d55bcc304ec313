/* SPDX-License-Identifier: Apache-2.0 */
/* quai_ctx: the pinned pool and the worker threads streams share. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctxmem.h"
#include "engine.h"
#include "dctx.h"
#include "qthread.h"

#define CTX_DEFAULT_POOL (512ull << 20)
#define CTX_MAX_WORKERS 256u

void qctx_submit(struct quai_ctx *ctx, struct qjob *job)
{
	job->next = NULL;
	pthread_mutex_lock(&ctx->mu);
	if (ctx->tail)
		ctx->tail->next = job;
	else
		ctx->head = job;
	ctx->tail = job;
	pthread_cond_signal(&ctx->cv);
	pthread_mutex_unlock(&ctx->mu);
}

void qctx_submit_front(struct quai_ctx *ctx, struct qjob *job)
{
	pthread_mutex_lock(&ctx->mu);
	job->next = ctx->head;
	ctx->head = job;
	if (!ctx->tail)
		ctx->tail = job;
	pthread_cond_signal(&ctx->cv);
	pthread_mutex_unlock(&ctx->mu);
}

int qctx_steal(struct quai_ctx *ctx, struct qjob *job)
{
	pthread_mutex_lock(&ctx->mu);
	struct qjob *prev = NULL, *j = ctx->head;
	while (j && j != job) {
		prev = j;
		j = j->next;
	}
	if (j) {
		if (prev)
			prev->next = j->next;
		else
			ctx->head = j->next;
		if (ctx->tail == j)
			ctx->tail = prev;
	}
	pthread_mutex_unlock(&ctx->mu);
	return j != NULL;
}

static void *worker_main(void *arg)
{
	struct quai_ctx *ctx = arg;
	/* Created here and not at context creation, so a worker's memory
	 * comes from the node it runs on. With a locked pool, locked too:
	 * its literals buffer holds bytes of the frame being decoded, and a
	 * sensitive dataset's bytes live only in locked memory. */
	int locked = ctx->pool_info.locked, e;
	ZSTD_DCtx *dctx = qdc_new(locked, &e);
	int unlocked = 0;
	if (!dctx && locked) {
		dctx = ZSTD_createDCtx();
		unlocked = 1;
	}
	if (!dctx)
		abort(); /* a few hundred KiB at start-up: nothing to recover */
	pthread_mutex_lock(&ctx->mu);
	ctx->dctx_ready++;
	if (unlocked)
		ctx->dctx_unlocked = 1;
	pthread_cond_broadcast(&ctx->cv);
	for (;;) {
		while (!ctx->head && !ctx->stop)
			pthread_cond_wait(&ctx->cv, &ctx->mu);
		if (!ctx->head)
			break;
		struct qjob *j = ctx->head;
		ctx->head = j->next;
		if (!ctx->head)
			ctx->tail = NULL;
		pthread_mutex_unlock(&ctx->mu);
		j->run(j, dctx);
		pthread_mutex_lock(&ctx->mu);
	}
	pthread_mutex_unlock(&ctx->mu);
	qdc_free(dctx, locked && !unlocked);
	return NULL;
}

int quai_ctx_new(const struct quai_ctx_opts *opts, quai_ctx **ret_ctx, char *err, size_t err_len)
{
	static const struct quai_ctx_opts defaults = {.size = sizeof(defaults)};
	const struct quai_ctx_opts *o = opts ? opts : &defaults;
	int r;

	if (err && err_len)
		err[0] = '\0';
	if (!ret_ctx || o->size < sizeof(size_t) || o->size > sizeof(*o))
		return -EINVAL;
	const unsigned known = QUAI_CTX_NO_HUGEPAGES | QUAI_CTX_NO_DIRECT | QUAI_CTX_SQPOLL |
			       QUAI_CTX_UNLOCKED_OK | QUAI_CTX_LAZY_POOL;
	if (o->flags & ~known) {
		if (err)
			snprintf(err, err_len, "unknown context flags 0x%x", o->flags & ~known);
		return -EINVAL;
	}
	if (o->gpu < QUAI_GPU_AUTO || o->gpu > QUAI_GPU_CUDA) {
		if (err)
			snprintf(err, err_len, "unknown GPU runtime %d", o->gpu);
		return -EINVAL;
	}
	struct quai_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	pthread_mutex_init(&ctx->mu, NULL);
	pthread_cond_init(&ctx->cv, NULL);
	ctx->flags = o->flags;
	ctx->queue_depth = o->queue_depth ? o->queue_depth : 32;
	if (ctx->queue_depth > 4096)
		ctx->queue_depth = 4096;

	static const int gpu_map[] = {
	    [QUAI_GPU_AUTO] = QPOOL_GPU_AUTO,
	    [QUAI_GPU_NONE] = QPOOL_GPU_NONE,
	    [QUAI_GPU_HIP] = QPOOL_GPU_HIP,
	    [QUAI_GPU_CUDA] = QPOOL_GPU_CUDA,
	};
	struct qpool_opts po = {
	    .bytes = o->pinned_bytes ? o->pinned_bytes : CTX_DEFAULT_POOL,
	    .huge = (o->flags & QUAI_CTX_NO_HUGEPAGES) ? QPOOL_HUGE_OFF : QPOOL_HUGE_AUTO,
	    .lock = (o->flags & QUAI_CTX_UNLOCKED_OK) ? QPOOL_LOCK_TRY : QPOOL_LOCK_REQUIRED,
	    .gpu = gpu_map[o->gpu],
	    .lazy = (o->flags & QUAI_CTX_LAZY_POOL) != 0,
	    /* Streams of sensitive datasets wipe what they release; the
	     * pool wipes everything when it is destroyed. */
	    .wipe = 0,
	};
	r = qpool_new(&po, &ctx->pool, err, err_len);
	if (r < 0)
		goto fail;
	qpool_info(ctx->pool, &ctx->pool_info);

	unsigned n = o->workers;
	if (!n) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		n = c > 0 ? (unsigned)c : 1;
	}
	if (n > CTX_MAX_WORKERS)
		n = CTX_MAX_WORKERS;
	ctx->workers = calloc(n, sizeof(*ctx->workers));
	if (!ctx->workers) {
		r = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < n; i++) {
		r = -qthread_create(&ctx->workers[i], worker_main, ctx);
		if (r < 0) {
			if (err)
				snprintf(err, err_len, "cannot start worker threads: %s",
					 strerror(-r));
			goto fail;
		}
		ctx->nworkers++;
	}
	/* Every worker has its decompression context (and whether it is
	 * locked is known) before any stream asks. */
	pthread_mutex_lock(&ctx->mu);
	while (ctx->dctx_ready < ctx->nworkers)
		pthread_cond_wait(&ctx->cv, &ctx->mu);
	pthread_mutex_unlock(&ctx->mu);
	*ret_ctx = ctx;
	return 0;
fail:
	quai_ctx_free(ctx);
	return r;
}

void quai_ctx_free(quai_ctx *ctx)
{
	if (!ctx)
		return;
	unsigned open = __atomic_load_n(&ctx->streams, __ATOMIC_RELAXED);
	if (open) {
		/* A programming error that would leave workers touching freed
		 * memory: refuse loudly rather than corrupt. */
		fprintf(stderr, "quai: quai_ctx_free() with %u streams still open\n", open);
		abort();
	}
	pthread_mutex_lock(&ctx->mu);
	ctx->stop = 1;
	pthread_cond_broadcast(&ctx->cv);
	pthread_mutex_unlock(&ctx->mu);
	for (unsigned i = 0; i < ctx->nworkers; i++)
		pthread_join(ctx->workers[i], NULL);
	free(ctx->workers);
	qpool_free(ctx->pool);
	pthread_mutex_destroy(&ctx->mu);
	pthread_cond_destroy(&ctx->cv);
	free(ctx);
}

int quai_ctx_info(quai_ctx *ctx, struct quai_ctx_info *info)
{
	if (!ctx || !info || info->size < sizeof(size_t))
		return -EINVAL;
	struct qpool_info pi;
	qpool_info(ctx->pool, &pi);
	ctx->pool_info.peak = pi.peak;
	ctx->pool_info.used = pi.used;
	struct quai_ctx_info i = {
	    .size = info->size,
	    .pinned_bytes = pi.bytes,
	    .hugepages = pi.hugetlb ? 2
			 : pi.thp   ? 1
				    : 0,
	    .locked = pi.locked,
	    .gpu = pi.gpu == QPOOL_GPU_HIP    ? QUAI_GPU_HIP
		   : pi.gpu == QPOOL_GPU_CUDA ? QUAI_GPU_CUDA
					      : QUAI_GPU_NONE,
	    .gpu_note = ctx->pool_info.gpu_note,
	    .workers = ctx->nworkers,
	    .pinned_peak = pi.peak,
	};
	size_t n = info->size < sizeof(i) ? info->size : sizeof(i);
	memcpy(info, &i, n);
	return 0;
}

/* ---- the pinned pool, for the client's remote streams (ctxmem.h) ------- */

_Static_assert(QCTX_MEM_ALIGN == QPOOL_ALIGN, "ctxmem.h and pool.h disagree on alignment");

int qctx_mem_locked(const quai_ctx *ctx)
{
	return ctx->pool_info.locked ? 1 : 0;
}

void qctx_mem_wipe_on_free(quai_ctx *ctx)
{
	qpool_wipe_on_free(ctx->pool);
}

int qctx_mem_alloc(quai_ctx *ctx, size_t size, void **ret_block)
{
	return qpool_alloc(ctx->pool, size, ret_block);
}

void qctx_mem_release(quai_ctx *ctx, void *block)
{
	if (block)
		qpool_release(ctx->pool, block);
}

void qctx_streams_add(quai_ctx *ctx, int delta)
{
	if (delta > 0)
		__atomic_add_fetch(&ctx->streams, (unsigned)delta, __ATOMIC_RELAXED);
	else
		__atomic_sub_fetch(&ctx->streams, (unsigned)-delta, __ATOMIC_RELAXED);
}
