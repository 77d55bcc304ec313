/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The staging engine's shared parts: the context (pinned pool and worker
 * threads) and the jobs streams hand to the workers.
 */
#ifndef QUAI_STAGER_ENGINE_H
#define QUAI_STAGER_ENGINE_H

#include <pthread.h>
#include <stdint.h>
#include <zstd.h>

#include "pool.h"
#include "quai/quai.h"

/* A unit of work for the worker threads. Embedded in the object it works
 * on (a frame, a batch), so submitting allocates nothing. */
struct qjob {
	struct qjob *next;
	/* dctx: the running worker's own zstd decompression context. */
	void (*run)(struct qjob *job, ZSTD_DCtx *dctx);
};

struct quai_ctx {
	struct qpool *pool;
	struct qpool_info pool_info;
	unsigned flags;
	unsigned queue_depth;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct qjob *head, *tail;
	int stop;
	pthread_t *workers;
	unsigned nworkers;
	unsigned streams;    /* open streams (atomic): quai_ctx_free's check, and
				read-ahead leaves room when several share the pool */
	int served;	     /* quaid's: its streams are decided and audited by
				quaid, not as local accesses of the host */
	unsigned dctx_ready; /* workers that have made their context */
	int dctx_unlocked;   /* a locked pool's worker could not lock its
				decompression context: no sensitive stream */
};

/* Queues a job; a worker runs it. Thread-safe. */
void qctx_submit(struct quai_ctx *ctx, struct qjob *job);
/* Queues a job ahead of all others. Thread-safe. */
void qctx_submit_front(struct quai_ctx *ctx, struct qjob *job);
/* Takes a queued job back, for the caller to run itself: 1 when it was
 * still queued (no worker will run it), 0 when a worker has it. */
int qctx_steal(struct quai_ctx *ctx, struct qjob *job);

/* ---- the engine's stream: a local dataset, staged ----------------------
 * The public quai_stream_* calls reach these through the front door
 * (stager/front/stream_front.c), which checks the options and the
 * arguments first: here the stream and the options are never NULL, and
 * the options are checked. */
struct qestream;

/* quai_stream_open() for a local path or file:// URI. */
int qes_open(quai_ctx *ctx, const char *uri, const struct quai_stream_opts *o,
	     struct qestream **ret_stream, char *err, size_t err_len);
/* quai_next(); with cancel (may be NULL), see qstream_next(). */
int qes_next(struct qestream *s, struct quai_batch *batch, const int *cancel);
/* quai_release() of a batch this stream handed out (batch->internal set). */
void qes_release(struct qestream *s, struct quai_batch *batch);
const char *qes_error(struct qestream *s);
int qes_state(struct qestream *s, void *buf, size_t len);
int qes_stats(struct qestream *s, struct quai_stream_stats *stats);
/* Accepts NULL. */
void qes_close(struct qestream *s);

/* A stream's batches, for quaid to size the slots it writes them into. */
/* prefetch_batches when a stream's options leave it 0 (quai.h). */
#define QS_DEFAULT_PREFETCH 4u

struct qstream_geometry {
	uint64_t max_count; /* records in the largest batch */
	uint64_t max_bytes; /* record bytes in the largest batch */
	uint64_t batches;   /* in this rank's epoch (from the stream's start) */
	uint32_t prefetch;  /* batches assembled ahead */
	int classification, kind;
	char zone[QUAI_ZONE_MAX + 1];
};
/* Walks the engine stream's epoch once (no I/O). Returns 0. */
int qes_geometry(struct qestream *s, struct qstream_geometry *g);

/* The same on a public stream handle (defined by the front door, for
 * quaid): -EINVAL for a remote stream. */
int qstream_geometry(quai_stream *s, struct qstream_geometry *g);

/* quai_next() for quaid's pumps (defined by the front door): the same, but a wait for the next
 * batch ends with -ECANCELED once *cancel is nonzero (read atomically, every 20 ms at the most), so
 * that a pump whose client stopped taking batches never blocks a shutdown. */
int qstream_next(quai_stream *s, struct quai_batch *batch, const int *cancel);

#endif
