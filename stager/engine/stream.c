/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine's stream: one rank's epoch of a local dataset, staged into
 * pinned batches. The public quai_stream_* calls reach it through the front
 * door (stager/front/stream_front.c), which sends quai:// URIs to the
 * client instead; nothing here knows of remote streams.
 *
 * Three roles, overlapping fully:
 *  - the reader thread (one per stream, with its own io_uring ring) reads
 *    the frames this rank needs, in the order the plan first needs them,
 *    as far ahead as the prefetch window and the memory budget allow,
 *    into blocks of the pinned pool (O_DIRECT where the file system takes
 *    it, registered buffers and fixed files where the kernel does);
 *  - the context's workers decode each frame into its own pinned block and
 *    check both of its checksums and its size, then assemble batches in
 *    order, copying each record from its frame into the batch block;
 *  - the caller takes batches with quai_next() and gives them back with
 *    quai_release().
 * A frame is freed once every batch holding its records is assembled, so
 * memory is bounded by the working set checked at open, whatever the
 * dataset's size. A frame that fails a check is never copied out.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <liburing.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "beneath.h"
#include "byteorder.h"
#include "clock.h"
#include "dataset.h"
#include "errmsg.h"
#include "engine.h"
#include "hostdecide.h"
#include "plan.h"
#include "qthread.h"

#define QS_ALIGN 4096u		  /* O_DIRECT offset, length and buffer alignment */
#define QS_REG_CHUNK (1ull << 30) /* io_uring registers buffers of up to 1 GiB */
#define QS_DEFAULT_BATCH 256u
/* Frames' worth of records per shuffle unit: a batch of 256 records then
 * draws from about 40 frames (docs/STAGING.md, "Shuffle quality"). */
#define QS_DEFAULT_WINDOW 40u
/* Reads queued per submission. A buffered read of cached data completes
 * inside the submitting call, copying as it goes: queueing the whole depth
 * at once would copy that many frames before the first of them reached a
 * worker. In small groups, each group's frames go to the workers while the
 * next group is copied; reads that go to the device (O_DIRECT, a cold
 * cache) return at once, and the queue still fills to its depth. */
#define QS_SUBMIT_GROUP 4u
/* The default budget of a stream on a lazy pool (QUAI_CTX_LAZY_POOL): its
 * working set and half as much again to read ahead, at least
 * QS_LAZY_BUDGET_MIN. (bench/torch_peers.py: 1.25-2x gave the best rate
 * here; 4x touched 440 MiB for a 116 MiB working set, and was no faster.) */
#define QS_LAZY_BUDGET_MIN (32ull << 20)

enum { F_IDLE, F_READING, F_DECODING, F_READY, F_BAD, F_FREED };
enum { B_FREE, B_ASSEMBLING, B_READY, B_HELD };

struct qs_frame {
	struct qjob job;
	struct qestream *s;
	uint64_t gframe;
	uint32_t shard;
	const struct qix_frame *fx;
	uint64_t first_use, last_use;
	int state;
	uint8_t *cblock; /* the aligned read; the frame starts at cdelta */
	size_t cblock_len;
	uint32_t cdelta;
	uint8_t *raw;
	size_t raw_len;
	/* A frame stored raw (incompressible data) is not copied out: its
	 * records are read from cblock, through these pieces, and raw is
	 * given back once it is checked. The table of pieces lives in cblock
	 * too, at seg_off, after the bytes read (frame_layout()). */
	struct qds_seg *segs;
	uint32_t nsegs, seg_off;
};

/* One record of a batch being assembled, found once when the batch is
 * sized and copied from there. */
struct qs_rec {
	const uint8_t *src; /* NULL: gathered from a stored frame's pieces */
	uint64_t id;
	uint32_t len;
	uint32_t off; /* where it starts in its frame's raw bytes */
	const struct qs_frame *f;
};

struct qs_batch {
	struct qjob job;
	struct qs_rec *recs; /* the records to copy, in order */
	size_t recs_cap;
	uint32_t nrecs;
	uint64_t skipped; /* records of frames that failed (SKIP_CORRUPT) */
	struct qestream *s;
	int state;
	uint64_t index;
	uint64_t l0, l1; /* local record range */
	uint8_t *block;
	size_t block_len;
	uint64_t bytes;
	uint64_t *offsets, *ids;
	uint32_t count;
};

/* A batch the caller still holds when its slot is needed for a later one:
 * its block leaves the slot (the caller's pointers stay valid) and waits
 * here for quai_release(). */
struct qs_kept {
	struct qs_kept *next;
	uint8_t *block;
	size_t block_len;
};

struct qestream {
	struct quai_ctx *ctx;
	quai_dataset *ds;
	qpl_plan *plan;
	struct qpl_params pp;
	unsigned flags;
	uint32_t batch_records;
	uint64_t batch_bytes;
	uint32_t nslots;
	uint64_t budget, reserve, working_set;
	struct qs_kept *kept; /* batches held past their slot's turn */
	uint64_t kept_bytes;
	uint64_t span;	   /* how far ahead (local records) the reader may read */
	uint64_t min_span; /* what the working set was checked for at open */
	int wipe;	   /* sensitive: wipe every block on release */
	uint32_t max_record;

	int *fds;
	uint8_t *direct; /* per shard: read with O_DIRECT */
	struct io_uring ring;
	int ring_ok;
	int fixed_files;
	int reg_buffers;
	pthread_t reader;
	int reader_started;

	pthread_mutex_t mu;
	pthread_cond_t cv;	  /* the consumer waits here */
	pthread_cond_t cv_reader; /* the reader waits here for memory */
	pthread_cond_t cv_idle;	  /* close waits here for jobs to end */

	struct qs_frame *frames; /* in need order */
	uint64_t nframes;
	uint32_t *frame_of;    /* global frame -> index in frames, or UINT32_MAX */
	uint64_t next_read;    /* next frame to read */
	uint64_t ready_prefix; /* frames [0, ready_prefix) decoded or bad */
	uint64_t oldest_live;  /* frames before it are freed */
	unsigned inflight;
	uint64_t frame_bytes; /* pool bytes held by frames */

	uint64_t l_start, l_end; /* this rank's local range this epoch */
	uint64_t nbatches;	 /* UINT64_MAX until known (batch_bytes) */
	struct qs_batch *slots;
	uint64_t next_assemble, next_deliver;
	uint64_t plan_next_l; /* where the next unplanned batch starts */
	uint64_t planned;     /* batches whose bounds are known */
	uint64_t *bounds;     /* l1 of batch b, ring of nslots * 2 */
	int assembling;
	uint64_t assembled_l;
	unsigned jobs; /* jobs of this stream queued or running */
	int closing;
	int reader_done;

	int err;
	char errmsg[256];
	struct quai_stream_stats st;
};

/* ---- small helpers ---------------------------------------------------- */

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/* Records the stream's first error (under s->mu) and wakes everyone. */
static void fail_locked(struct qestream *s, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail_locked(struct qestream *s, int err, const char *fmt, ...)
{
	if (s->err)
		return;
	s->err = err;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
	va_end(ap);
	pthread_cond_broadcast(&s->cv);
	pthread_cond_broadcast(&s->cv_reader);
}

/* Waits on cv for at most ms milliseconds. Used where the awaited event
 * may come from another stream sharing the pool, which does not signal
 * this one. */
static void wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, long ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += ms * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(cv, mu, &ts);
}

/* Whether this process may stream a local dataset, and its line in the
 * host's audit log (quaid's streams are quaid's to decide and audit).
 * Sensitive data: only into locked memory (no silent fallback: its bytes
 * never sit in memory that may be swapped out), and only on a host of its
 * zone. Returns 0 or -QUAI_EPOLICY / the audit log's error, with err. */
/* The host's decision on reading this dataset into this context's memory
 * (hostdecide.h): the engine supplies the facts, site/ makes the rule. */
static int local_decision(const quai_ctx *ctx, const quai_dataset *ds, char *err, size_t err_len)
{
	const struct qmf *m = &ds->m;
	struct qhd_request q = {
	    .op = "stream",
	    .dataset = m->name,
	    .classification = m->classification,
	    .zone = m->zone,
	    .bytes = (int64_t)(m->raw_bytes > INT64_MAX ? INT64_MAX : m->raw_bytes),
	    .what = "read",
	    .memory = !ctx->pool_info.locked ? QHD_MEM_POOL_UNLOCKED
		      : ctx->dctx_unlocked   ? QHD_MEM_DCTX_UNLOCKED
					     : QHD_MEM_LOCKED,
	    .served = ctx->served,
	};
	return qhd_decide(&q, err, err_len);
}

/* Gives a block back to the pool; a sensitive dataset's bytes are wiped
 * first (the pool wipes everything again when it is destroyed). */
static void give_back(struct qestream *s, void *block, size_t len)
{
	if (s->wipe)
		explicit_bzero(block, len);
	qpool_release(s->ctx->pool, block);
}

/* The raw bytes of the l-th local record: where it is, and how long. */
static void local_record(const struct qestream *s, uint64_t l, struct qpl_item *it, uint32_t *off,
			 uint32_t *len)
{
	qpl_item(s->plan, l, it);
	qds_record_in_frame(s->ds, it->frame, it->index, off, len);
}

/* ---- batch planning --------------------------------------------------- */

/* Bounds of batch b (b < planned): [l0, l1). */
static void batch_bounds(const struct qestream *s, uint64_t b, uint64_t *l0, uint64_t *l1)
{
	if (s->batch_records) {
		*l0 = s->l_start + b * s->batch_records;
		*l1 = *l0 + s->batch_records;
		if (*l1 > s->l_end)
			*l1 = s->l_end;
		return;
	}
	uint32_t ring = s->nslots * 2;
	*l1 = s->bounds[b % ring];
	*l0 = b == 0 ? s->l_start : s->bounds[(b - 1) % ring];
}

/* Plans batch bounds (batch_bytes mode) up to the prefetch window. */
static void plan_ahead(struct qestream *s)
{
	if (s->batch_records)
		return;
	uint32_t ring = s->nslots * 2;
	while (s->planned < s->next_deliver + s->nslots && s->plan_next_l < s->l_end) {
		uint64_t l = s->plan_next_l, bytes = 0;
		while (l < s->l_end && bytes < s->batch_bytes) {
			struct qpl_item it;
			uint32_t off, len;
			local_record(s, l, &it, &off, &len);
			bytes += len;
			l++;
		}
		s->bounds[s->planned % ring] = l;
		s->planned++;
		s->plan_next_l = l;
	}
	if (s->plan_next_l >= s->l_end)
		s->nbatches = s->planned;
}

/* The local index up to which the reader may read: as far past the
 * batch being delivered as the budget allows (the span fixed at open). */
static uint64_t lookahead(const struct qestream *s)
{
	uint64_t l0 = s->assembled_l;
	uint64_t l = l0 + s->span;
	return l < s->l_end && l >= l0 ? l : s->l_end;
}

/* Frames whose first use is below l (they are a prefix of need order). */
static uint64_t frames_needed(const struct qestream *s, uint64_t l)
{
	uint64_t lo = 0, hi = s->nframes;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (s->frames[mid].first_use < l)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void assemble_run(struct qjob *job, ZSTD_DCtx *dctx);

/* The first piece of a stored frame holding raw byte `off`. */
static uint32_t seg_of(const struct qs_frame *f, uint32_t off)
{
	uint32_t lo = 0, hi = f->nsegs;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (f->segs[mid].raw_off <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* Where raw bytes [off, off + len) of a decoded frame lie in one piece, or
 * NULL when they straddle pieces of a stored frame. */
static const uint8_t *frame_bytes_at(const struct qs_frame *f, uint32_t off, uint32_t len)
{
	if (!f->nsegs)
		return f->raw + off;
	const struct qds_seg *g = &f->segs[seg_of(f, off)];
	if (off - g->raw_off + (uint64_t)len > g->len)
		return NULL;
	return f->cblock + f->cdelta + g->src_off + (off - g->raw_off);
}

/* Copies raw bytes [off, off + len) of a stored frame, piece by piece. */
static void gather(const struct qs_frame *f, uint32_t off, uint32_t len, uint8_t *dst)
{
	const uint8_t *base = f->cblock + f->cdelta;
	for (uint32_t i = seg_of(f, off); len; i++) {
		const struct qds_seg *g = &f->segs[i];
		uint32_t in = off - g->raw_off, n = g->len - in < len ? g->len - in : len;
		memcpy(dst, base + g->src_off + in, n);
		dst += n;
		off += n;
		len -= n;
	}
}

/* Starts assembling the next batch if it can be: it is planned, its slot
 * is free, its frames are all decoded, and its memory can be had. Only one
 * batch of a stream is assembled at a time, in order. Under s->mu. */
static void pump(struct qestream *s)
{
	plan_ahead(s);
	if (s->assembling || s->err || s->closing)
		return;
	uint64_t b = s->next_assemble;
	if (b >= s->nbatches || b >= s->planned || b >= s->next_deliver + s->nslots)
		return;
	struct qs_batch *slot = &s->slots[b % s->nslots];
	if (slot->state != B_FREE)
		return;
	uint64_t l0, l1;
	batch_bounds(s, b, &l0, &l1);
	if (s->ready_prefix < frames_needed(s, l1))
		return;

	/* Find every record once: where it is and how long, which also sizes
	 * the block exactly (the records, then the offsets and ids). The
	 * frames stay until this batch is assembled, so the pointers hold. */
	uint64_t n = l1 - l0, bytes = 0;
	if (n > slot->recs_cap) {
		struct qs_rec *r = realloc(slot->recs, n * sizeof(*r));
		if (!r) {
			fail_locked(s, -ENOMEM, "out of memory for a batch of %" PRIu64 " records",
				    n);
			return;
		}
		slot->recs = r;
		slot->recs_cap = n;
	}
	slot->nrecs = 0;
	slot->skipped = 0;
	for (uint64_t l = l0; l < l1; l++) {
		struct qpl_item it;
		uint32_t off, len;
		local_record(s, l, &it, &off, &len);
		const struct qs_frame *f = &s->frames[s->frame_of[it.frame]];
		if (f->state == F_BAD) {
			slot->skipped++;
			continue;
		}
		slot->recs[slot->nrecs++] =
		    (struct qs_rec){frame_bytes_at(f, off, len), it.record, len, off, f};
		bytes += len;
	}
	size_t size =
	    (size_t)(align_up(bytes, 8) + (2 * (uint64_t)slot->nrecs + 1) * sizeof(uint64_t));
	void *block;
	if (qpool_alloc(s->ctx->pool, size, &block) < 0)
		return; /* a release will pump again, and find them again */
	slot->state = B_ASSEMBLING;
	slot->index = b;
	slot->l0 = l0;
	slot->l1 = l1;
	slot->block = block;
	slot->block_len = size;
	slot->offsets = (uint64_t *)(void *)((uint8_t *)block + align_up(bytes, 8));
	slot->ids = slot->offsets + slot->nrecs + 1;
	slot->s = s;
	slot->job.run = assemble_run;
	s->assembling = 1;
	s->jobs++;
	/* Ahead of queued decodes: a consumer is waiting on this. */
	qctx_submit_front(s->ctx, &slot->job);
}

/* Frees the frames no batch still to be assembled needs. Under s->mu. */
static void free_frames(struct qestream *s)
{
	int freed = 0;
	for (uint64_t i = s->oldest_live; i < s->next_read; i++) {
		struct qs_frame *f = &s->frames[i];
		if ((f->state != F_READY && f->state != F_BAD) || f->last_use >= s->assembled_l)
			continue;
		if (f->raw) {
			give_back(s, f->raw, f->raw_len);
			s->frame_bytes -= f->raw_len;
			f->raw = NULL;
		}
		if (f->cblock) { /* a stored frame's */
			give_back(s, f->cblock, f->cblock_len);
			s->frame_bytes -= f->cblock_len;
			f->cblock = NULL;
		}
		f->segs = NULL;
		f->nsegs = 0;
		f->state = F_FREED;
		freed = 1;
	}
	while (s->oldest_live < s->next_read && s->frames[s->oldest_live].state == F_FREED)
		s->oldest_live++;
	if (freed)
		pthread_cond_signal(&s->cv_reader);
}

static void job_done(struct qestream *s)
{
	if (--s->jobs == 0)
		pthread_cond_broadcast(&s->cv_idle);
}

static void assemble_run(struct qjob *job, ZSTD_DCtx *dctx)
{
	struct qs_batch *slot = (struct qs_batch *)job;
	struct qestream *s = slot->s;
	uint64_t bytes = 0;
	(void)dctx;
	for (uint32_t k = 0; k < slot->nrecs; k++) {
		const struct qs_rec *r = &slot->recs[k];
		slot->offsets[k] = bytes;
		slot->ids[k] = r->id;
		if (r->src)
			memcpy(slot->block + bytes, r->src, r->len);
		else
			gather(r->f, r->off, r->len, slot->block + bytes);
		bytes += r->len;
	}
	slot->offsets[slot->nrecs] = bytes;
	slot->count = slot->nrecs;
	slot->bytes = bytes;

	pthread_mutex_lock(&s->mu);
	slot->state = B_READY;
	s->st.skipped_records += slot->skipped;
	s->assembled_l = slot->l1;
	s->next_assemble++;
	s->assembling = 0;
	free_frames(s);
	pump(s);
	pthread_cond_broadcast(&s->cv);
	job_done(s);
	pthread_mutex_unlock(&s->mu);
}

/* ---- decoding --------------------------------------------------------- */

static void decode_run(struct qjob *job, ZSTD_DCtx *dctx)
{
	struct qs_frame *f = (struct qs_frame *)job;
	struct qestream *s = f->s;
	const uint8_t *src = f->cblock + f->cdelta;
	/* A frame larger than its raw bytes is most likely stored raw: then
	 * its records are assembled straight from the read, saving a copy. */
	struct qds_seg *segs = (struct qds_seg *)(void *)(f->cblock + f->seg_off);
	uint32_t nsegs = 0;
	int r = qds_decode_frame_map(dctx, f->fx, src, f->raw, segs, qds_stored_blocks_hint(f->fx),
				     0, &nsegs);
	if (r < 0)
		nsegs = 0;

	pthread_mutex_lock(&s->mu);
	if (nsegs) {
		give_back(s, f->raw, f->raw_len);
		s->frame_bytes -= f->raw_len;
		f->raw = NULL;
		f->segs = segs;
		f->nsegs = nsegs;
		s->st.frames_in_place++;
	} else {
		give_back(s, f->cblock, f->cblock_len);
		s->frame_bytes -= f->cblock_len;
		f->cblock = NULL;
	}
	if (r < 0) {
		const struct qmf_shard *sh = &s->ds->m.shards[f->shard];
		uint64_t first = sh->first_record + f->fx->first_record;
		if (s->flags & QUAI_STREAM_SKIP_CORRUPT) {
			f->state = F_BAD;
		} else {
			f->state = F_BAD;
			fail_locked(s, -QUAI_ECORRUPT,
				    "%s frame %" PRIu32 " (records %" PRIu64 "..%" PRIu64
				    ", at byte %" PRIu64 "): fails its checksum or does not decode",
				    sh->file, (uint32_t)(f->fx - s->ds->ix[f->shard].frames), first,
				    first + f->fx->records - 1, f->fx->c_offset);
		}
	} else {
		f->state = F_READY;
	}
	while (s->ready_prefix < s->next_read && (s->frames[s->ready_prefix].state == F_READY ||
						  s->frames[s->ready_prefix].state == F_BAD))
		s->ready_prefix++;
	pump(s);
	pthread_cond_signal(&s->cv_reader);
	job_done(s);
	pthread_mutex_unlock(&s->mu);
}

/* ---- the reader ------------------------------------------------------- */

/* Index of the registered buffer holding [p, p + len), or -1. */
static int reg_index(const struct qestream *s, const void *p, size_t len)
{
	if (!s->reg_buffers)
		return -1;
	uint64_t off = (uint64_t)((const uint8_t *)p - (const uint8_t *)s->ctx->pool_info.base);
	if (off / QS_REG_CHUNK != (off + len - 1) / QS_REG_CHUNK)
		return -1;
	return (int)(off / QS_REG_CHUNK);
}

/* Where frame f is read from (start, end: aligned for O_DIRECT shards) and
 * the pool blocks it takes: clen for the read, and after it, for a frame
 * that may be stored raw, the table of its pieces; rlen for its raw bytes.
 * The one place both reading and the working-set estimate take it from. */
static void frame_layout(const struct qestream *s, const struct qs_frame *f, uint64_t *start,
			 uint64_t *end, size_t *clen, size_t *rlen)
{
	*start = f->fx->c_offset;
	*end = *start + f->fx->c_size;
	if (s->direct[f->shard]) {
		*start = *start / QS_ALIGN * QS_ALIGN;
		*end = align_up(*end, QS_ALIGN);
	}
	uint64_t segs = (uint64_t)qds_stored_blocks_hint(f->fx) * sizeof(struct qds_seg);
	*clen = (size_t)align_up(align_up(*end - *start, 8) + segs, QPOOL_ALIGN);
	*rlen = (size_t)align_up(f->fx->r_size ? f->fx->r_size : 1, QPOOL_ALIGN);
}

/* Claims memory for frame i and queues its read. Under s->mu; returns 0
 * when queued, 1 when it must wait (memory), <0 on error. */
static int start_read(struct qestream *s, struct qs_frame *f)
{
	uint64_t start, end;
	size_t clen, rlen;
	frame_layout(s, f, &start, &end, &clen, &rlen);
	if (s->frame_bytes + s->kept_bytes + clen + rlen > s->budget - s->reserve &&
	    s->frame_bytes > 0)
		return 1;
	/* Reading beyond what the stream strictly needs is opportunistic: it
	 * leaves a quarter of the pool to the other streams of the context,
	 * so that one stream's read-ahead never starves another's need. */
	if (f->first_use >= s->assembled_l + s->min_span &&
	    __atomic_load_n(&s->ctx->streams, __ATOMIC_RELAXED) > 1) {
		struct qpool_info pi;
		qpool_info(s->ctx->pool, &pi);
		if (pi.used + clen + rlen > pi.bytes - pi.bytes / 4)
			return 1;
	}
	void *c, *r;
	if (qpool_alloc(s->ctx->pool, clen, &c) < 0)
		return 1;
	if (qpool_alloc(s->ctx->pool, rlen, &r) < 0) {
		qpool_release(s->ctx->pool, c);
		return 1;
	}
	f->cblock = c;
	f->cblock_len = clen;
	f->cdelta = (uint32_t)(f->fx->c_offset - start);
	f->seg_off = (uint32_t)align_up(end - start, 8);
	f->raw = r;
	f->raw_len = rlen;
	s->frame_bytes += clen + rlen;
	f->state = F_READING;

	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
	if (!sqe)
		return -EBUSY; /* cannot happen: inflight never exceeds the ring */
	size_t len = (size_t)(end - start);
	int fd = s->fixed_files ? (int)f->shard : s->fds[f->shard];
	int bi = reg_index(s, c, len);
	if (bi >= 0)
		io_uring_prep_read_fixed(sqe, fd, c, (unsigned)len, start, bi);
	else
		io_uring_prep_read(sqe, fd, c, (unsigned)len, start);
	if (s->fixed_files)
		sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data(sqe, f);
	s->inflight++;
	s->st.frames_read++;
	s->st.bytes_read += f->fx->c_size;
	return 0;
}

static void complete_read(struct qestream *s, struct io_uring_cqe *cqe)
{
	struct qs_frame *f = io_uring_cqe_get_data(cqe);
	uint64_t want = f->cdelta + (uint64_t)f->fx->c_size;
	const struct qmf_shard *sh = &s->ds->m.shards[f->shard];
	pthread_mutex_lock(&s->mu);
	s->inflight--;
	if (cqe->res < 0 || (uint64_t)cqe->res < want) {
		f->state = F_BAD;
		give_back(s, f->cblock, f->cblock_len);
		give_back(s, f->raw, f->raw_len);
		s->frame_bytes -= f->cblock_len + f->raw_len;
		f->cblock = f->raw = NULL;
		if (cqe->res < 0)
			fail_locked(s, cqe->res, "%s: read at byte %" PRIu64 " failed: %s",
				    sh->file, f->fx->c_offset, strerror(-cqe->res));
		else
			fail_locked(s, -QUAI_ECORRUPT,
				    "%s: shorter than its index says (frame at byte %" PRIu64
				    " cut off): truncated or replaced",
				    sh->file, f->fx->c_offset);
	} else {
		f->state = F_DECODING;
		f->job.run = decode_run;
		s->jobs++;
		qctx_submit(s->ctx, &f->job);
	}
	pthread_mutex_unlock(&s->mu);
}

static void *reader_main(void *arg)
{
	struct qestream *s = arg;
	unsigned qd = s->ctx->queue_depth;

	pthread_mutex_lock(&s->mu);
	while (!s->closing) {
		int queued = 0, more = 0;
		while (!s->err && s->inflight < qd && s->next_read < s->nframes) {
			struct qs_frame *f = &s->frames[s->next_read];
			if (queued == (int)QS_SUBMIT_GROUP) {
				more = 1;
				break;
			}
			if (f->first_use >= lookahead(s))
				break;
			int r = start_read(s, f);
			if (r > 0)
				break;
			if (r < 0) {
				fail_locked(s, r, "io_uring: no submission entry");
				break;
			}
			s->next_read++;
			queued++;
		}
		unsigned inflight = s->inflight;
		if (inflight == 0) {
			if (s->next_read >= s->nframes || s->err)
				break; /* nothing more to read */
			wait_ms(&s->cv_reader, &s->mu, 20);
			continue;
		}
		pthread_mutex_unlock(&s->mu);
		struct io_uring_cqe *cqe;
		int r;
		if (more) {
			/* More to queue: hand these over, take what has
			 * finished, and come back for the next group. */
			r = io_uring_submit(&s->ring);
		} else {
			r = queued ? io_uring_submit_and_wait(&s->ring, 1) : 0;
			if (r >= 0 || r == -EINTR)
				r = io_uring_wait_cqe(&s->ring, &cqe);
		}
		if (r < 0 && r != -EINTR) {
			pthread_mutex_lock(&s->mu);
			fail_locked(s, r, "io_uring: %s", strerror(-r));
			/* What is in flight still completes: drain it below. */
			continue;
		}
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&s->ring, head, cqe)
		{
			complete_read(s, cqe);
			seen++;
		}
		io_uring_cq_advance(&s->ring, seen);
		pthread_mutex_lock(&s->mu);
	}
	/* Closing or failed: wait for the reads in flight before the ring
	 * and the memory go away. */
	while (s->inflight) {
		pthread_mutex_unlock(&s->mu);
		struct io_uring_cqe *cqe;
		io_uring_submit_and_wait(&s->ring, 1);
		if (io_uring_wait_cqe(&s->ring, &cqe) == 0) {
			complete_read(s, cqe);
			io_uring_cqe_seen(&s->ring, cqe);
		}
		pthread_mutex_lock(&s->mu);
	}
	s->reader_done = 1;
	pthread_cond_broadcast(&s->cv_idle);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* ---- opening ---------------------------------------------------------- */

static int parse_uri(const char *uri, const char **ret_path, char *err, size_t err_len)
{
	if (strncmp(uri, "file://", 7) == 0) {
		if (uri[7] != '/') {
			qerr_set(err, err_len,
				 "%s: a file URI needs an absolute path (file:///...)", uri);
			return -EINVAL;
		}
		*ret_path = uri + 7;
		return 0;
	}
	if (strstr(uri, "://")) {
		qerr_set(err, err_len, "%s: unknown URI scheme (use a path, file:// or quai://)",
			 uri);
		return -EPROTONOSUPPORT;
	}
	*ret_path = uri;
	return 0;
}

/* The share of a file's pages in the page cache, in percent, from the
 * cachestat system call (Linux 6.5); -1 when the kernel lacks it. */
static int cached_percent(int fd, uint64_t size)
{
#ifdef __NR_cachestat
	long nr = __NR_cachestat;
#else
	long nr = 451; /* the same number on every architecture */
#endif
	struct {
		uint64_t off, len;
	} range = {0, 0};
	struct {
		uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
	} cs;
	if (syscall(nr, fd, &range, &cs, 0) < 0)
		return -1;
	uint64_t pages = (size + 4095) / 4096;
	return pages ? (int)(cs.nr_cache * 100 / pages) : 100;
}

/* Opens the shards. Each is read with O_DIRECT (no second copy through the
 * page cache, no cache thrashing on datasets larger than memory) where the
 * file system takes it, unless most of the shard already sits in the page
 * cache: then buffered reads serve it from memory. Detected per shard. */
static int open_shards(struct qestream *s, void *probe, char *err, size_t err_len)
{
	uint32_t n = s->ds->m.nshards;
	/* Every fd -1 before anything can fail: qes_close() closes the ones
	 * that are not (it once closed uninitialised ones when the second
	 * allocation failed). */
	s->fds = malloc(n * sizeof(*s->fds));
	if (!s->fds)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++)
		s->fds[i] = -1;
	s->direct = calloc(n, 1);
	if (!s->direct)
		return -ENOMEM;
	int fs_direct = !(s->ctx->flags & QUAI_CTX_NO_DIRECT);
	for (uint32_t i = 0; i < n; i++) {
		int fd = qds_open_shard(s->ds, i, 0);
		if (fd < 0) {
			qerr_set(err, err_len, "%s: %s", s->ds->m.shards[i].file,
				 qfs_member_strerror(fd));
			return fd;
		}
		s->fds[i] = fd;
		if (!fs_direct || cached_percent(fd, s->ds->m.shards[i].compressed_bytes) >= 50)
			continue;
		int dfd = qds_open_shard(s->ds, i, O_DIRECT);
		if (dfd >= 0 && pread(dfd, probe, QS_ALIGN, 0) < 0) {
			close(dfd);
			dfd = -1;
		}
		if (dfd < 0) {
			fs_direct = 0; /* this file system takes no O_DIRECT */
			continue;
		}
		close(fd);
		s->fds[i] = dfd;
		s->direct[i] = 1;
		s->st.direct_io++;
	}
	return 0;
}

static int setup_ring(struct qestream *s)
{
	struct io_uring_params p = {0};
	if (s->ctx->flags & QUAI_CTX_SQPOLL) {
		p.flags |= IORING_SETUP_SQPOLL;
		p.sq_thread_idle = 50;
	}
	int r = io_uring_queue_init_params(s->ctx->queue_depth, &s->ring, &p);
	if (r < 0)
		return r;
	s->ring_ok = 1;
	if (io_uring_register_files(&s->ring, s->fds, s->ds->m.nshards) == 0)
		s->fixed_files = 1;
	/* The whole pool as registered buffers, in chunks of at most 1 GiB;
	 * not a lazy pool's: registering pins, and so touches, every page. */
	if (s->ctx->flags & QUAI_CTX_LAZY_POOL)
		return 0;
	uint64_t total = s->ctx->pool_info.bytes;
	unsigned n = (unsigned)((total + QS_REG_CHUNK - 1) / QS_REG_CHUNK);
	struct iovec *iov = calloc(n, sizeof(*iov));
	if (iov) {
		for (unsigned i = 0; i < n; i++) {
			uint64_t off = (uint64_t)i * QS_REG_CHUNK;
			iov[i].iov_base = (uint8_t *)s->ctx->pool_info.base + off;
			iov[i].iov_len =
			    (size_t)(total - off < QS_REG_CHUNK ? total - off : QS_REG_CHUNK);
		}
		if (io_uring_register_buffers(&s->ring, iov, n) == 0)
			s->reg_buffers = 1;
		free(iov);
	}
	return 0;
}

static int cmp_use(const void *a, const void *b)
{
	const struct qs_frame *x = a, *y = b;
	if (x->first_use != y->first_use)
		return x->first_use < y->first_use ? -1 : 1;
	return x->gframe < y->gframe ? -1 : x->gframe > y->gframe;
}

struct ws_event {
	uint64_t at;
	int64_t delta;
};

static int cmp_event(const void *a, const void *b)
{
	const struct ws_event *x = a, *y = b;
	if (x->at != y->at)
		return x->at < y->at ? -1 : 1;
	return (x->delta > y->delta) - (x->delta < y->delta); /* frees first */
}

/* The most frame memory live at once when the reader runs `span` records
 * ahead of the batch being assembled: frames whose use overlaps any window
 * of `span` records. Looks at the first `nf` frames in need order only. */
static uint64_t frames_working_set(const struct qestream *s, uint64_t span, uint64_t nf)
{
	struct ws_event *ev = malloc(2 * (nf ? nf : 1) * sizeof(*ev));
	if (!ev)
		return UINT64_MAX;
	for (uint64_t i = 0; i < nf; i++) {
		const struct qs_frame *f = &s->frames[i];
		uint64_t start, end;
		size_t clen, rlen;
		frame_layout(s, f, &start, &end, &clen, &rlen);
		int64_t mem = (int64_t)(clen + rlen);
		uint64_t from = f->first_use > span ? f->first_use - span : 0;
		ev[2 * i] = (struct ws_event){from, mem};
		ev[2 * i + 1] = (struct ws_event){f->last_use + 1, -mem};
	}
	qsort(ev, 2 * nf, sizeof(*ev), cmp_event);
	int64_t cur = 0, max = 0;
	for (uint64_t i = 0; i < 2 * nf; i++) {
		cur += ev[i].delta;
		if (cur > max)
			max = cur;
	}
	free(ev);
	return (uint64_t)max;
}

static uint32_t max_record_size(const quai_dataset *ds)
{
	if (ds->m.kind == QUAI_RECORDS_FIXED)
		return ds->m.fixed_size;
	uint32_t max = 0;
	for (uint32_t s = 0; s < ds->m.nshards; s++) {
		const struct qix *ix = &ds->ix[s];
		for (uint32_t f = 0; f < ix->nframes; f++) {
			uint32_t prev = 0;
			for (uint32_t k = 0; k < ix->frames[f].records; k++) {
				uint32_t end =
				    qle32(ix->record_ends +
					  4 * ((uint64_t)ix->frames[f].first_record + k));
				if (end - prev > max)
					max = end - prev;
				prev = end;
			}
		}
	}
	return max;
}

/* Records per shuffle unit: `window` frames of the dataset's mean size. */
static uint32_t unit_records(const quai_dataset *ds, uint32_t window)
{
	uint64_t frames = ds->m.frames ? ds->m.frames : 1;
	uint64_t mean = (ds->m.records + frames - 1) / frames;
	uint64_t u = (uint64_t)window * (mean ? mean : 1);

	return u > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)u;
}

/* The resume state fixes the order: options that say otherwise are an
 * error, not silently overridden. */
static int decode_state(struct qestream *s, const struct quai_stream_opts *o, char *err,
			size_t err_len)
{
	struct qpl_params st;
	int r = qpl_state_decode(o->resume, o->resume_len, s->ds->m.checksum, &st, err, err_len);

	if (r == -EPROTO)
		return -QUAI_EVERSION;
	if (r < 0)
		return r;
	const char *what = NULL;
	if (o->seed && o->seed != st.seed)
		what = "seed";
	else if (o->epoch && o->epoch != st.epoch)
		what = "epoch";
	else if (o->window && unit_records(s->ds, o->window) != st.unit)
		what = "window";
	else if (o->tail && o->tail != st.tail)
		what = "tail";
	else if ((o->flags & QUAI_STREAM_NO_SHUFFLE) && st.shuffle)
		what = "shuffle";
	if (what) {
		qerr_set(err, err_len,
			 "the resume state fixes the %s (seed %" PRIu64 ", epoch %" PRIu64
			 ", unit %" PRIu32 " records, tail %d, shuffle %s); the options ask for "
			 "another: leave it unset, or give the state's",
			 what, st.seed, st.epoch, st.unit, st.tail, st.shuffle ? "on" : "off");
		return -EINVAL;
	}
	st.world = s->pp.world;
	st.rank = s->pp.rank;
	s->pp = st;
	return 0;
}

/* ---- opening, phase by phase --------------------------------------------
 * qes_open() runs these in order; each returns 0 or -errno with err set,
 * and leaves what it made in the stream for qes_close() to undo. */

/* A stream with its locks, counted on the context; nothing else yet. */
static struct qestream *stream_new(quai_ctx *ctx, const struct quai_stream_opts *o)
{
	struct qestream *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->ctx = ctx;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	pthread_cond_init(&s->cv_reader, NULL);
	pthread_cond_init(&s->cv_idle, NULL);
	s->flags = o->flags;
	__atomic_add_fetch(&ctx->streams, 1, __ATOMIC_RELAXED);
	return s;
}

/* Phase 1: the dataset, and the host's decision on reading it here. */
static int open_dataset(struct qestream *s, const char *path, char *err, size_t err_len)
{
	char derr[256];
	int r = qds_open(path, s->ctx->served, &s->ds, derr, sizeof(derr));
	if (r < 0) {
		qerr_set(err, err_len, "'%s': %s", path, derr);
		return r;
	}
	s->wipe = s->ds->m.classification == QUAI_CLASS_SENSITIVE;
	r = local_decision(s->ctx, s->ds, err, err_len);
	if (r < 0)
		return r;
	if (s->wipe)
		qpool_wipe_on_free(s->ctx->pool);
	return 0;
}

/* Records per batch the options ask for: 0 when batches are cut by bytes. */
static uint32_t batch_records_opt(const struct quai_stream_opts *o)
{
	return o->batch_bytes ? 0 : (o->batch_records ? o->batch_records : QS_DEFAULT_BATCH);
}

/* Phase 2: the epoch's plan, from the options or a resume state (which
 * starts it where the state left off). */
static int make_plan(struct qestream *s, const struct quai_stream_opts *o, char *err,
		     size_t err_len)
{
	const quai_dataset *ds = s->ds;
	int r;

	s->pp.world = o->world ? o->world : 1;
	s->pp.rank = o->rank;
	if (o->resume) {
		r = decode_state(s, o, err, err_len);
		if (r < 0)
			return r;
	} else {
		s->pp.seed = o->seed;
		s->pp.epoch = o->epoch;
		s->pp.unit = unit_records(ds, o->window ? o->window : QS_DEFAULT_WINDOW);
		s->pp.shuffle = !(o->flags & QUAI_STREAM_NO_SHUFFLE);
		s->pp.tail = o->tail;
	}
	if (o->flags & QUAI_STREAM_GLOBAL_BATCHES)
		s->pp.global_batch = batch_records_opt(o);
	struct qpl_frame *pf = malloc(ds->m.frames * sizeof(*pf));
	if (!pf)
		return -ENOMEM;
	for (uint64_t g = 0; g < ds->m.frames; g++) {
		uint32_t sh, fr;
		qds_frame_at(ds, g, &sh, &fr);
		pf[g].first_record = ds->ix[sh].first_record + ds->ix[sh].frames[fr].first_record;
		pf[g].records = ds->ix[sh].frames[fr].records;
	}
	char perr[256];
	r = qpl_new(pf, ds->m.frames, &s->pp, &s->plan, perr, sizeof(perr));
	free(pf);
	if (r < 0) {
		qerr_set(err, err_len, "%s", perr);
		return r;
	}
	return 0;
}

/* Phase 3: this rank's range of the plan, and its batches. */
static void cut_batches(struct qestream *s, const struct quai_stream_opts *o)
{
	uint32_t batch = batch_records_opt(o);

	s->l_end = qpl_local_count(s->plan);
	s->l_start = 0; /* a resumed plan starts where the state left off */
	s->nslots = o->prefetch_batches ? o->prefetch_batches : QS_DEFAULT_PREFETCH;
	s->batch_bytes = o->batch_bytes;
	s->batch_records = s->pp.global_batch ? batch / s->pp.world : batch;
	if (s->batch_records) {
		uint64_t n = s->l_end - s->l_start;
		s->nbatches = (n + s->batch_records - 1) / s->batch_records;
		s->planned = s->nbatches;
	} else {
		s->nbatches = UINT64_MAX;
	}
}

/* Phase 4: the batch slots, and the frames this rank still needs, in the
 * order it first needs them. */
static int list_frames(struct qestream *s)
{
	const quai_dataset *ds = s->ds;

	s->slots = calloc(s->nslots, sizeof(*s->slots));
	s->bounds = calloc(2 * (size_t)s->nslots, sizeof(*s->bounds));
	s->frame_of = malloc(ds->m.frames * sizeof(*s->frame_of));
	uint64_t nuse = qpl_frame_count(s->plan);
	s->frames = calloc(nuse ? nuse : 1, sizeof(*s->frames));
	if (!s->slots || !s->bounds || !s->frame_of || !s->frames)
		return -ENOMEM;
	for (uint64_t g = 0; g < ds->m.frames; g++)
		s->frame_of[g] = UINT32_MAX;
	for (uint64_t i = 0; i < nuse; i++) {
		struct qpl_use u;
		qpl_frame_use(s->plan, i, &u);
		if (u.last_use < s->l_start)
			continue; /* delivered before the resume point */
		struct qs_frame *f = &s->frames[s->nframes];
		uint32_t sh, fr;
		qds_frame_at(ds, u.frame, &sh, &fr);
		f->s = s;
		f->gframe = u.frame;
		f->shard = sh;
		f->fx = &ds->ix[sh].frames[fr];
		f->first_use = u.first_use < s->l_start ? s->l_start : u.first_use;
		f->last_use = u.last_use;
		s->nframes++;
	}
	qsort(s->frames, s->nframes, sizeof(*s->frames), cmp_use);
	for (uint64_t i = 0; i < s->nframes; i++)
		s->frame_of[s->frames[i].gframe] = (uint32_t)i;
	s->assembled_l = s->l_start;
	return 0;
}

/* Phase 5: the shard files (O_DIRECT where it works, probed with a block
 * of the pool), and the memory the stream needs at the least: the batches
 * ahead and the frames live at once, checked against its budget. */
static int open_files_and_budget(struct qestream *s, const struct quai_stream_opts *o, char *err,
				 size_t err_len)
{
	const quai_dataset *ds = s->ds;
	quai_ctx *ctx = s->ctx;
	void *probe = NULL;

	s->max_record = max_record_size(ds);
	uint64_t per_batch = s->batch_records ? (uint64_t)s->batch_records * s->max_record
					      : s->batch_bytes + s->max_record;
	uint64_t nrec = s->batch_records
			    ? s->batch_records
			    : s->batch_bytes / (ds->m.raw_bytes / ds->m.records + 1) + 1;
	per_batch = align_up(per_batch + (2 * nrec + 1) * 8, QPOOL_ALIGN);
	s->reserve = per_batch * s->nslots;
	if (qpool_alloc(ctx->pool, QS_ALIGN, &probe) < 0 || !probe) {
		qerr_set(err, err_len, "the pinned pool is full");
		return -ENOBUFS;
	}
	int r = open_shards(s, probe, err, err_len);
	qpool_release(ctx->pool, probe);
	if (r < 0)
		return r;
	uint64_t span =
	    s->batch_records ? (uint64_t)s->nslots * s->batch_records : nrec * s->nslots;
	s->working_set = s->reserve + frames_working_set(s, span, s->nframes);
	s->span = span;
	s->min_span = span;
	s->budget = o->memory_budget ? o->memory_budget : ctx->pool_info.bytes;
	/* A lazy pool costs only the pages touched: by default a stream there
	 * reads ahead within 1.5 times its working set, not the whole pool. */
	if (!o->memory_budget && (ctx->flags & QUAI_CTX_LAZY_POOL)) {
		uint64_t lazy = s->working_set + s->working_set / 2;
		s->budget = lazy > QS_LAZY_BUDGET_MIN ? lazy : QS_LAZY_BUDGET_MIN;
	}
	if (s->budget > ctx->pool_info.bytes)
		s->budget = ctx->pool_info.bytes;
	if (s->budget < s->working_set) {
		qerr_set(
		    err, err_len,
		    "this stream needs %" PRIu64
		    " MiB of pinned memory (%u batches of up to %" PRIu64
		    " KiB ahead, and the frames they draw on), but its budget is %" PRIu64
		    " MiB: raise the budget or the context's pool, or lower prefetch_batches, the "
		    "batch size or the shuffle window",
		    (s->working_set + (1 << 20) - 1) >> 20, s->nslots, per_batch >> 10,
		    s->budget >> 20);
		return -ENOBUFS;
	}
	return 0;
}

/* Phase 6: read as far ahead as the budget allows: the longest span whose
 * working set fits. Searched (doubling, then bisecting) on the first
 * frames of the epoch, which keeps opening fast on huge datasets, then
 * checked on all of them; the minimum span fits (phase 5). */
static void choose_span(struct qestream *s)
{
	uint64_t span = s->min_span;
	uint64_t total = s->l_end - s->l_start;
	uint64_t nf = s->nframes < 4096 ? s->nframes : 4096;
	uint64_t lo = span, up;
	while (lo < total && s->reserve + frames_working_set(s, lo * 2, nf) <= s->budget)
		lo *= 2;
	up = lo * 2;
	for (int i = 0; i < 12 && up - lo > 1 && lo < total; i++) {
		uint64_t mid = lo + (up - lo) / 2;
		if (s->reserve + frames_working_set(s, mid, nf) <= s->budget)
			lo = mid;
		else
			up = mid;
	}
	while (lo > span && s->reserve + frames_working_set(s, lo, s->nframes) > s->budget)
		lo = lo / 2 > span ? lo / 2 : span;
	s->span = lo;
}

/* Phase 7: the io_uring ring, the statistics known at open, and the
 * reader thread: from here on the stream runs. */
static int start_reader(struct qestream *s, char *err, size_t err_len)
{
	int r = setup_ring(s);
	if (r < 0) {
		qerr_set(err, err_len, "io_uring: %s", strerror(-r));
		return r;
	}
	s->st.partitions = 0;
	s->st.records_total = s->l_end - s->l_start;
	s->st.registered_buffers = s->reg_buffers;
	s->st.budget_bytes = s->budget;
	s->st.working_set_bytes = s->working_set;
	r = -qthread_create(&s->reader, reader_main, s);
	if (r < 0) {
		qerr_set(err, err_len, "cannot start the reader thread: %s", strerror(-r));
		return r;
	}
	s->reader_started = 1;
	return 0;
}

int qes_open(quai_ctx *ctx, const char *uri, const struct quai_stream_opts *o,
	     struct qestream **ret_stream, char *err, size_t err_len)
{
	const char *path;
	int r = parse_uri(uri, &path, err, err_len);
	if (r < 0)
		return r;
	struct qestream *s = stream_new(ctx, o);
	if (!s)
		return -ENOMEM;
	r = open_dataset(s, path, err, err_len);
	if (r == 0)
		r = make_plan(s, o, err, err_len);
	if (r == 0) {
		cut_batches(s, o);
		r = list_frames(s);
	}
	if (r == 0)
		r = open_files_and_budget(s, o, err, err_len);
	if (r == 0) {
		choose_span(s);
		r = start_reader(s, err, err_len);
	}
	if (r < 0) {
		qes_close(s);
		return r;
	}
	*ret_stream = s;
	return 0;
}

/* ---- for quaid --------------------------------------------------------- */

int qes_geometry(struct qestream *s, struct qstream_geometry *g)
{
	memset(g, 0, sizeof(*g));
	/* One pass over this rank's records, cut into batches exactly as
	 * batch_bounds() and plan_ahead() cut them. */
	uint64_t l = s->l_start, nb = 0;
	while (l < s->l_end) {
		uint64_t n = 0, bytes = 0;
		while (l < s->l_end &&
		       (s->batch_records ? n < s->batch_records : bytes < s->batch_bytes)) {
			struct qpl_item it;
			uint32_t off, len;
			local_record(s, l, &it, &off, &len);
			bytes += len;
			n++;
			l++;
		}
		nb++;
		if (n > g->max_count)
			g->max_count = n;
		if (bytes > g->max_bytes)
			g->max_bytes = bytes;
	}
	g->batches = nb;
	g->prefetch = s->nslots;
	g->classification = s->ds->m.classification;
	g->kind = s->ds->m.kind;
	snprintf(g->zone, sizeof(g->zone), "%s", s->ds->m.zone);
	return 0;
}

/* ---- the consumer ----------------------------------------------------- */

int qes_next(struct qestream *s, struct quai_batch *batch, const int *cancel)
{
	pthread_mutex_lock(&s->mu);
	pump(s);
	if (s->err) {
		int e = s->err;
		pthread_mutex_unlock(&s->mu);
		return e;
	}
	if (s->next_deliver >= s->nbatches) {
		pthread_mutex_unlock(&s->mu);
		return 0;
	}
	struct qs_batch *slot = &s->slots[s->next_deliver % s->nslots];
	if (slot->state == B_HELD) {
		/* The caller still holds the batch of this slot's last turn.
		 * Within the budget's slack over the working set, that batch
		 * keeps its block and the slot gets a new one; beyond it,
		 * waiting would never end: say so. */
		struct qs_kept *k = NULL;
		if (s->kept_bytes + slot->block_len <= s->budget - s->working_set)
			k = malloc(sizeof(*k));
		if (!k) {
			pthread_mutex_unlock(&s->mu);
			return -EBUSY;
		}
		*k = (struct qs_kept){s->kept, slot->block, slot->block_len};
		s->kept = k;
		s->kept_bytes += slot->block_len;
		slot->block = NULL;
		slot->state = B_FREE;
		pump(s);
	}
	uint64_t t0 = 0;
	while (!s->err && s->next_deliver < s->nbatches &&
	       !(slot->state == B_READY && slot->index == s->next_deliver)) {
		if (cancel && __atomic_load_n(cancel, __ATOMIC_ACQUIRE)) {
			pthread_mutex_unlock(&s->mu);
			return -ECANCELED;
		}
		if (!t0)
			t0 = qclock_now_ns();
		/* The batch is ready to be assembled but no worker has begun:
		 * rather than wait for one to finish the frame it decodes,
		 * this thread, idle anyway, assembles it. */
		if (slot->state == B_ASSEMBLING && slot->index == s->next_deliver &&
		    qctx_steal(s->ctx, &slot->job)) {
			pthread_mutex_unlock(&s->mu);
			slot->job.run(&slot->job, NULL);
			pthread_mutex_lock(&s->mu);
			continue;
		}
		wait_ms(&s->cv, &s->mu, 20);
		pump(s);
	}
	if (t0)
		s->st.wait_ns += qclock_now_ns() - t0;
	if (s->err || s->next_deliver >= s->nbatches) {
		int e = s->err;
		pthread_mutex_unlock(&s->mu);
		return e;
	}
	slot->state = B_HELD;
	*batch = (struct quai_batch){
	    .data = slot->block,
	    .offsets = slot->offsets,
	    .ids = slot->ids,
	    .count = slot->count,
	    .bytes = slot->bytes,
	    .index = slot->index,
	    .internal = slot,
	};
	s->next_deliver++;
	s->st.batches++;
	s->st.records += slot->count;
	s->st.bytes += slot->bytes;
	pump(s);
	pthread_cond_signal(&s->cv_reader);
	pthread_mutex_unlock(&s->mu);
	return 1;
}

static void release_slot(struct qestream *s, struct qs_batch *slot)
{
	give_back(s, slot->block, slot->block_len);
	slot->block = NULL;
	slot->state = B_FREE;
}

void qes_release(struct qestream *s, struct quai_batch *batch)
{
	struct qs_batch *slot = batch->internal;
	pthread_mutex_lock(&s->mu);
	struct qs_kept **kp = &s->kept;
	while (*kp && (*kp)->block != batch->data)
		kp = &(*kp)->next;
	if (*kp) {
		struct qs_kept *k = *kp;
		*kp = k->next;
		give_back(s, k->block, k->block_len);
		s->kept_bytes -= k->block_len;
		free(k);
	} else if (slot >= s->slots && slot < s->slots + s->nslots && slot->state == B_HELD &&
		   slot->block == batch->data) {
		release_slot(s, slot);
	}
	batch->internal = NULL;
	pump(s);
	pthread_cond_signal(&s->cv_reader);
	pthread_mutex_unlock(&s->mu);
}

const char *qes_error(struct qestream *s)
{
	return s->errmsg;
}

int qes_state(struct qestream *s, void *buf, size_t len)
{
	pthread_mutex_lock(&s->mu);
	/* The position: every rank has taken as many records as this one
	 * (lockstep, as data-parallel training checkpoints). */
	uint64_t next_l = s->l_start;
	if (s->next_deliver > 0) {
		uint64_t l0, l1;
		batch_bounds(s, s->next_deliver - 1, &l0, &l1);
		next_l = l1;
	}
	struct qpl_params st;
	char perr[256];
	int r = qpl_resume_point(s->plan, next_l, &st, perr, sizeof(perr));
	if (r < 0)
		snprintf(s->errmsg, sizeof(s->errmsg), "%s", perr);
	pthread_mutex_unlock(&s->mu);
	if (r < 0)
		return r;
	return qpl_state_encode(&st, s->ds->m.checksum, buf, len);
}

int qes_stats(struct qestream *s, struct quai_stream_stats *stats)
{
	pthread_mutex_lock(&s->mu);
	struct quai_stream_stats st = s->st;
	pthread_mutex_unlock(&s->mu);
	st.size = stats->size;
	size_t n = stats->size < sizeof(st) ? stats->size : sizeof(st);
	memcpy(stats, &st, n);
	return 0;
}

void qes_close(struct qestream *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->closing = 1;
	pthread_cond_broadcast(&s->cv_reader);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	/* The reader first: it drains its reads, which may queue decodes. */
	if (s->reader_started)
		pthread_join(s->reader, NULL);
	/* Then the jobs already queued finish (they hold frames and batches). */
	pthread_mutex_lock(&s->mu);
	while (s->jobs)
		pthread_cond_wait(&s->cv_idle, &s->mu);
	pthread_mutex_unlock(&s->mu);
	/* Everything this stream still holds goes back to the pool, wiped. */
	for (uint64_t i = 0; s->frames && i < s->nframes; i++) {
		struct qs_frame *f = &s->frames[i];
		if (f->cblock)
			give_back(s, f->cblock, f->cblock_len);
		if (f->raw)
			give_back(s, f->raw, f->raw_len);
	}
	for (uint32_t i = 0; s->slots && i < s->nslots; i++) {
		if (s->slots[i].block)
			release_slot(s, &s->slots[i]);
		free(s->slots[i].recs);
	}
	while (s->kept) {
		struct qs_kept *k = s->kept;
		s->kept = k->next;
		give_back(s, k->block, k->block_len);
		free(k);
	}
	if (s->ring_ok)
		io_uring_queue_exit(&s->ring);
	for (uint32_t i = 0; s->fds && s->ds && i < s->ds->m.nshards; i++)
		if (s->fds[i] >= 0)
			close(s->fds[i]);
	free(s->fds);
	free(s->direct);
	free(s->frames);
	free(s->frame_of);
	free(s->slots);
	free(s->bounds);
	qpl_free(s->plan);
	quai_dataset_close(s->ds);
	__atomic_sub_fetch(&s->ctx->streams, 1, __ATOMIC_RELAXED);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	pthread_cond_destroy(&s->cv_reader);
	pthread_cond_destroy(&s->cv_idle);
	free(s);
}
