/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quaid's remote streams (docs/PROTOCOL.md, "Streams"): STREAM_OPEN opens
 * a stream of the staging engine for the client, SLOTS gives it the
 * client's ring, and one pump thread per stream takes batches from the
 * engine, waits for a free slot of the ring, and RMA-writes the batch
 * into it: slot header, ids and offsets from a small pinned block, the
 * records straight from the engine's batch (no copy). CREDIT gives slots
 * back; STREAM_CLOSE ends the stream.
 */
#include "srv.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "manifest.h"
#include "policy.h"

/* A stream's life. Its transitions are sst_move_locked()'s table. */
enum sst_state {
	SST_NEED_RING, /* STREAM_READY sent: waiting for the client's SLOTS */
	SST_STARTING,  /* the ring is accepted, OK on its way: the pump starts */
	SST_RUNNING,   /* the pump writes batches */
	SST_ENDED,     /* the pump has ended (end of epoch, failure, stop) */
	SST_CLOSING,   /* being torn down: nothing more is written */
};

/* One slot of the client's ring, as the server sees it. Its transitions
 * are slot_move_locked()'s table. */
enum slot_state {
	SLOT_FREE,	/* the server may write into it */
	SLOT_WRITING,	/* a batch is on the wire; the client will hold it */
	SLOT_HELD,	/* written; the client holds it until its CREDIT */
	SLOT_RETURNING, /* the client's CREDIT came before the write completed here */
};

enum slot_event {
	SLOT_TAKE,    /* the pump takes it for a batch */
	SLOT_WRITTEN, /* the write completed (or failed) */
	SLOT_UNUSED,  /* taken, but nothing was written into it */
	SLOT_CREDIT,  /* the client gives it back */
};

struct wop {
	struct srv_op op;
	struct sstream *st;
	uint32_t slot;
	struct quai_batch b;
};

struct sstream {
	struct session *se;
	uint64_t id;
	uint32_t tag;
	uint64_t open_req;
	quai_stream *es;
	uint64_t mem; /* accounted to the session */
	struct qstream_geometry g;
	uint64_t slot_bytes;
	uint32_t nslots;
	enum sst_state state;
	uint64_t raddr, rkey;
	uint8_t *slots;	 /* per slot: enum slot_state */
	struct wop *ops; /* per slot */
	uint8_t *meta;	 /* per slot: header, ids, offsets */
	uint64_t meta_stride;
	pthread_t pump; /* from SST_RUNNING on */
	int cancel;	/* atomic: the pump's wait for a batch ends (closing, the
			   session dead, quaid stopping) */
	unsigned inflight;
	uint64_t written;
	struct sstream *next;
};

/* ---- states ------------------------------------------------------------ */

/* Moves st to `to` when its table allows it. Returns the state it was in,
 * or -1 (and st stays) when the move is not one of its transitions: a
 * stream being closed stays closing, whatever its pump does. */
static int sst_move_locked(struct sstream *st, enum sst_state to)
{
	static const unsigned char allowed[SST_CLOSING + 1] = {
	    [SST_NEED_RING] = 1u << SST_STARTING | 1u << SST_CLOSING,
	    [SST_STARTING] = 1u << SST_RUNNING | 1u << SST_CLOSING,
	    [SST_RUNNING] = 1u << SST_ENDED | 1u << SST_CLOSING,
	    [SST_ENDED] = 1u << SST_CLOSING,
	    [SST_CLOSING] = 0,
	};
	enum sst_state from = st->state;
	if (!(allowed[from] & 1u << to))
		return -1;
	st->state = to;
	if (to == SST_CLOSING)
		__atomic_store_n(&st->cancel, 1, __ATOMIC_RELEASE);
	return (int)from;
}

/* Moves slot i on event ev. Returns 0, or -EPROTO when ev cannot happen to
 * the slot as it is (for a CREDIT: the client did not hold it). */
static int slot_move_locked(struct sstream *st, uint32_t i, enum slot_event ev)
{
	static const signed char next[4][4] = {
	    [SLOT_FREE] = {[SLOT_TAKE] = SLOT_WRITING,
			   [SLOT_WRITTEN] = -1,
			   [SLOT_UNUSED] = -1,
			   [SLOT_CREDIT] = -1},
	    [SLOT_WRITING] = {[SLOT_TAKE] = -1,
			      [SLOT_WRITTEN] = SLOT_HELD,
			      [SLOT_UNUSED] = SLOT_FREE,
			      [SLOT_CREDIT] = SLOT_RETURNING},
	    [SLOT_HELD] = {[SLOT_TAKE] = -1,
			   [SLOT_WRITTEN] = -1,
			   [SLOT_UNUSED] = -1,
			   [SLOT_CREDIT] = SLOT_FREE},
	    [SLOT_RETURNING] = {[SLOT_TAKE] = -1,
				[SLOT_WRITTEN] = SLOT_FREE,
				[SLOT_UNUSED] = -1,
				[SLOT_CREDIT] = -1},
	};
	int to = next[st->slots[i]][ev];
	if (to < 0)
		return -EPROTO;
	st->slots[i] = (uint8_t)to;
	return 0;
}

/* ---- the pump ---------------------------------------------------------- */

/* A slot's write is over: its batch goes back to the engine. ev:
 * SLOT_WRITTEN (the write completed, or failed with status), or
 * SLOT_UNUSED (the pump gave up before posting it). */
static void write_over(struct wop *w, enum slot_event ev, int status)
{
	struct sstream *st = w->st;
	struct session *se = st->se;
	struct qsrv *srv = se->srv;

	quai_release(st->es, &w->b);
	pthread_mutex_lock(&srv->mu);
	slot_move_locked(st, w->slot, ev);
	st->inflight--;
	if (status < 0)
		srv_kill_locked(se, "writing a batch to the client failed: %s", strerror(-status));
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
}

static void stream_write_done(struct srv_op *op, int status)
{
	write_over((struct wop *)op, SLOT_WRITTEN, status);
}

static void stream_end(struct sstream *st, int status, const char *msg)
{
	struct qp_msg *m = calloc(1, sizeof(*m));
	if (!m)
		return;
	m->h.type = QP_STREAM_END;
	m->h.req = st->open_req;
	m->u.stream_end.stream = st->id;
	m->u.stream_end.batches = st->written;
	m->u.stream_end.status = status < 0 ? -status : status;
	snprintf(m->u.stream_end.message, sizeof(m->u.stream_end.message), "%s", msg);
	srv_send(st->se, m);
	free(m);
}

/* Takes a slot that the client has given back and whose last write has
 * completed; -1 when the stream is closing or the session died. */
static int take_slot(struct sstream *st)
{
	struct qsrv *srv = st->se->srv;
	pthread_mutex_lock(&srv->mu);
	for (;;) {
		if (st->state == SST_CLOSING || st->se->dead || srv->stopping) {
			pthread_mutex_unlock(&srv->mu);
			return -1;
		}
		for (uint32_t i = 0; i < st->nslots; i++) {
			if (slot_move_locked(st, i, SLOT_TAKE) == 0) {
				st->inflight++;
				pthread_mutex_unlock(&srv->mu);
				return (int)i;
			}
		}
		pthread_cond_wait(&srv->cv, &srv->mu);
	}
}

static void *pump_main(void *arg)
{
	struct sstream *st = arg;
	struct session *se = st->se;
	struct qsrv *srv = se->srv;
	int status = 0;
	char msg[QP_TEXT_MAX + 1] = "";

	for (;;) {
		struct quai_batch b;
		int r = qstream_next(st->es, &b, &st->cancel);
		if (r == -ECANCELED)
			break;
		if (r == -EBUSY) {
			/* Every batch the engine lets us hold is still on the wire. */
			pthread_mutex_lock(&srv->mu);
			if (st->inflight && st->state != SST_CLOSING && !se->dead)
				pthread_cond_wait(&srv->cv, &srv->mu);
			int stop = st->state == SST_CLOSING || se->dead || srv->stopping;
			pthread_mutex_unlock(&srv->mu);
			if (stop)
				break;
			continue;
		}
		if (r <= 0) {
			status = r;
			if (r < 0)
				snprintf(msg, sizeof(msg), "%s", quai_stream_error(st->es));
			break;
		}
		uint8_t state[QP_STATE_MAX];
		int slen = quai_stream_state(st->es, state, sizeof(state));
		int slot = take_slot(st);
		if (slot < 0) {
			quai_release(st->es, &b);
			break;
		}
		struct wop *w = &st->ops[slot];
		w->b = b;
		uint64_t data_off = qp_slot_data_off(b.count);
		if (qp_slot_need(b.count, b.bytes) > st->slot_bytes || data_off > st->meta_stride) {
			status = -EOVERFLOW;
			snprintf(msg, sizeof(msg),
				 "batch %" PRIu64 " (%u records, %" PRIu64
				 " bytes) does not fit the stream's slots of %" PRIu64 " bytes",
				 b.index, b.count, b.bytes, st->slot_bytes);
			write_over(w, SLOT_UNUSED, 0);
			break;
		}
		uint8_t *meta = st->meta + (uint64_t)slot * st->meta_stride;
		struct qp_slot_header h = {.magic = QP_SLOT_MAGIC,
					   .count = b.count,
					   .bytes = b.bytes,
					   .index = b.index,
					   .data_off = data_off,
					   .state_len = slen > 0 ? (uint32_t)slen : 0};
		if (slen > 0)
			memcpy(h.state, state, (size_t)slen);
		r = qp_slot_write(&h, b.ids, b.offsets, meta, st->meta_stride);
		if (r < 0) {
			status = r;
			snprintf(msg, sizeof(msg),
				 "batch %" PRIu64 " (%u records, %" PRIu64
				 " bytes) cannot be laid out in a slot: %s",
				 b.index, b.count, b.bytes, strerror(-r));
			write_over(w, SLOT_UNUSED, 0);
			break;
		}
		struct qf_iov iov[2] = {{meta, data_off, srv->pool_mr},
					{b.data, b.bytes, srv->pool_mr}};
		uint64_t raddr = st->raddr + (uint64_t)slot * st->slot_bytes;
		uint32_t data = qp_cq_data(st->tag, (uint32_t)slot);
		for (;;) {
			r = qf_write(srv->ep, se->peer, iov, b.bytes ? 2 : 1, raddr, st->rkey, data,
				     &w->op);
			if (r != -EAGAIN || __atomic_load_n(&st->cancel, __ATOMIC_ACQUIRE))
				break;
			qf_wait_progress(srv->ep, 100);
		}
		if (r < 0) {
			write_over(w, SLOT_UNUSED, r == -EAGAIN ? 0 : r);
			break;
		}
		pthread_mutex_lock(&srv->mu);
		st->written++;
		se->bytes_out += b.bytes;
		srv->bytes_served += b.bytes;
		srv->batches_served++;
		pthread_mutex_unlock(&srv->mu);
	}
	/* Say how it ended, unless the client is gone or asked to stop. */
	pthread_mutex_lock(&srv->mu);
	int closing = st->state == SST_CLOSING;
	int tell = !se->dead && !closing;
	if (srv->stopping) {
		tell = 1;
		status = -ESHUTDOWN;
		snprintf(msg, sizeof(msg), "quaid is shutting down");
	}
	pthread_mutex_unlock(&srv->mu);
	srv_log(srv, QSVC_LOG_DEBUG,
		"session %" PRIu64 ": stream %" PRIu64 ": pump ends after %" PRIu64
		" batches (status %d%s%s)",
		se->id, st->id, st->written, status, tell ? ", telling the client" : "",
		closing ? ", closing" : "");
	if (tell)
		stream_end(st, status, msg);
	pthread_mutex_lock(&srv->mu);
	sst_move_locked(st, SST_ENDED);
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
	return NULL;
}

/* The one teardown of a stream, whatever it got to: stops its pump (if it
 * has one), waits for its writes, gives its memory back to the session,
 * and frees it. The stream must be unlinked from its session already (or
 * never have been linked: a failed STREAM_OPEN). */
static void stream_free(struct qsrv *srv, struct sstream *st)
{
	pthread_mutex_lock(&srv->mu);
	int was = sst_move_locked(st, SST_CLOSING);
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
	/* A pump exists from SST_RUNNING on: the move to it and the pump's
	 * start are one step under srv->mu (srvs_slots). */
	if (was == SST_RUNNING || was == SST_ENDED)
		pthread_join(st->pump, NULL);
	/* Writes still on the wire read from the batches and the meta block:
	 * they complete (or fail) before either is given back. */
	pthread_mutex_lock(&srv->mu);
	uint64_t t0 = srv_now_ns();
	while (st->inflight && !srv_overdue(srv, t0, 10000000000ull)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&srv->cv, &srv->mu, &ts);
	}
	int stuck = st->inflight != 0;
	srv_mem_give_locked(st->se, st->mem);
	st->se->nstreams--;
	pthread_mutex_unlock(&srv->mu);
	if (stuck) {
		/* The provider never completed them: keep the memory rather than
		 * hand out what a late write may still read. */
		srv_log(srv, QSVC_LOG_WARNING,
			"session %" PRIu64 ": stream %" PRIu64 ": %u writes never completed; "
			"leaving their memory aside",
			st->se->id, st->id, st->inflight);
		return;
	}
	quai_stream_close(st->es);
	if (st->meta)
		qpool_release(srv->ctx->pool, st->meta);
	free(st->slots);
	free(st->ops);
	free(st);
}

static struct sstream *find_stream_locked(struct session *se, uint64_t id)
{
	for (struct sstream *st = se->streams; st; st = st->next)
		if (st->id == id)
			return st;
	return NULL;
}

/* STREAM_OPEN, phase 1: the dataset found, its manifest read, and the
 * stream granted (decided and audited). Returns 1 with path set, or 0
 * when the client has been answered with a refusal. */
static int open_grant(struct session *se, const struct qp_msg *m, char *path, size_t path_len)
{
	const struct qp_stream_open *so = &m->u.stream_open;
	char err[512];
	struct qmf mf;
	int r = srv_dataset_path(se->srv, so->name, path, path_len);
	if (r < 0) {
		srv_error(se, m->h.req, r == -EINVAL ? -EINVAL : -ENOENT,
			  r == -EINVAL ? "'%s' is not a dataset name" : "no dataset '%s' here",
			  so->name);
		return 0;
	}
	r = srv_load_manifest(path, so->name, &mf, NULL, NULL, err, sizeof(err));
	if (r < 0) {
		srv_error(se, m->h.req, r, "%s", err);
		return 0;
	}
	int granted = srv_authorize(se, m->h.req, QPOL_STREAM, "stream", so->name,
				    mf.classification, mf.zone, (int64_t)mf.raw_bytes);
	qmf_release(&mf);
	return granted;
}

/* Phase 2: the stream's share of what the client may hold: one of its
 * max_streams, and pinned memory (its budget, or all that is left of
 * client_memory, as an embedded stream may use its whole pool). Returns
 * the stream, accounted and numbered, with the client's prefetch depth;
 * NULL when the client has been answered with a refusal. */
static struct sstream *open_account(struct session *se, const struct qp_msg *m,
				    uint32_t *ret_prefetch)
{
	struct qsrv *srv = se->srv;
	const struct qp_stream_open *so = &m->u.stream_open;
	struct sstream *st = calloc(1, sizeof(*st));
	if (!st) {
		srv_error(se, m->h.req, -ENOMEM, "out of memory");
		return NULL;
	}
	st->se = se;
	st->tag = so->tag;
	st->open_req = m->h.req;
	if (so->prefetch_batches > QP_SLOTS_MAX / 2) {
		free(st);
		srv_error(se, m->h.req, -EINVAL,
			  "prefetch_batches %" PRIu32
			  " is over %u: a ring has twice as many slots, "
			  "and at most %u",
			  so->prefetch_batches, QP_SLOTS_MAX / 2, QP_SLOTS_MAX);
		return NULL;
	}
	pthread_mutex_lock(&srv->mu);
	uint64_t left = srv->conf.client_memory - se->mem_used;
	uint64_t want = so->memory_budget ? so->memory_budget : left;
	if (se->nstreams >= srv->conf.max_streams) {
		pthread_mutex_unlock(&srv->mu);
		free(st);
		srv_error(se, m->h.req, -EMFILE,
			  "this client has %u streams open, the most quaid allows (max_streams)",
			  srv->conf.max_streams);
		return NULL;
	}
	if (want > left || left == 0) {
		pthread_mutex_unlock(&srv->mu);
		free(st);
		srv_error(se, m->h.req, -ENOBUFS,
			  "the stream asks for %" PRIu64
			  " MiB of quaid's pinned memory; this client has %" PRIu64
			  " MiB left of its %" PRIu64 " MiB (client_memory)",
			  want >> 20, left >> 20, srv->conf.client_memory >> 20);
		return NULL;
	}
	st->mem = want;
	srv_mem_take_locked(se, want);
	se->nstreams++;
	st->id = ++srv->next_id;
	pthread_mutex_unlock(&srv->mu);
	*ret_prefetch = so->prefetch_batches ? so->prefetch_batches : QS_DEFAULT_PREFETCH;
	return st;
}

/* Phase 3: the engine's stream, within the stream's memory. Returns 0 or
 * -errno / -QUAI_E* with err. */
static int open_engine(struct qsrv *srv, struct sstream *st, const struct qp_stream_open *so,
		       const char *path, uint32_t prefetch, char *err, size_t err_len)
{
	struct quai_stream_opts o = {
	    .size = sizeof(o),
	    .rank = so->rank,
	    .world = so->world,
	    .seed = so->seed,
	    .epoch = so->epoch,
	    .partitions = so->partitions,
	    .window = so->window,
	    .batch_records = so->batch_records,
	    .batch_bytes = so->batch_bytes,
	    .memory_budget = st->mem,
	    /* The client holds up to its prefetch_batches, and as many more
	     * are on the wire: the engine here assembles that far ahead, so
	     * that a write's round trip never leaves it idle (below, with
	     * the client's own depth when the budget cannot hold that). */
	    .prefetch_batches = 2 * prefetch,
	    .tail = so->tail,
	    .flags = so->flags,
	    .resume = so->state.len ? so->state.p : NULL,
	    .resume_len = so->state.len,
	};
	int r = quai_stream_open(srv->ctx, path, &o, &st->es, err, err_len);
	if (r == -ENOBUFS) {
		o.prefetch_batches = prefetch;
		r = quai_stream_open(srv->ctx, path, &o, &st->es, err, err_len);
	}
	if (r == 0)
		r = qstream_geometry(st->es, &st->g);
	return r;
}

/* Phase 4: the ring as the server keeps it: twice the batches the client
 * may hold (while it works on those, the others are on the wire or wait
 * for it, so a credit's round trip does not stall the stream), each slot
 * sized for the stream's largest batch; the slots' states and writes, and
 * the pinned block their headers, ids and offsets are written from.
 * Returns 0, -ENOMEM or -ENOBUFS with err. */
static int open_ring(struct qsrv *srv, struct sstream *st, uint32_t prefetch, char *err,
		     size_t err_len)
{
	st->nslots = 2 * prefetch;
	st->meta_stride =
	    (qp_slot_data_off(st->g.max_count) + QPOOL_ALIGN - 1) / QPOOL_ALIGN * QPOOL_ALIGN;
	st->slot_bytes = qp_slot_need(st->g.max_count, st->g.max_bytes);
	if (st->slot_bytes < QP_SLOT_HEADER_SIZE + 64)
		st->slot_bytes = QP_SLOT_HEADER_SIZE + 64;
	st->slots = calloc(st->nslots, 1); /* SLOT_FREE */
	st->ops = calloc(st->nslots, sizeof(*st->ops));
	if (!st->slots || !st->ops) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	if (qpool_alloc(srv->ctx->pool, st->meta_stride * st->nslots, (void **)&st->meta) < 0) {
		st->meta = NULL;
		snprintf(err, err_len, "quaid's pinned pool is full");
		return -ENOBUFS;
	}
	for (uint32_t i = 0; i < st->nslots; i++)
		st->ops[i] = (struct wop){.op.done = stream_write_done, .st = st, .slot = i};
	return 0;
}

/* Phase 5: the stream linked into its session and announced with
 * STREAM_READY; freed instead when that cannot be made. */
static void open_announce(struct session *se, struct sstream *st, const struct qp_msg *m)
{
	struct qsrv *srv = se->srv;
	const struct qp_stream_open *so = &m->u.stream_open;
	struct quai_stream_stats ss = {.size = sizeof(ss)};
	quai_stream_stats(st->es, &ss);
	struct qp_msg *rm = calloc(1, sizeof(*rm));
	uint8_t state[QP_STATE_MAX];
	int slen = quai_stream_state(st->es, state, sizeof(state));
	if (!rm) {
		srv_error(se, m->h.req, -ENOMEM, "out of memory");
		stream_free(srv, st);
		return;
	}
	rm->h.type = QP_STREAM_READY;
	rm->h.req = m->h.req;
	struct qp_stream_ready *rd = &rm->u.stream_ready;
	rd->stream = st->id;
	rd->slot_bytes = st->slot_bytes;
	rd->slots = st->nslots;
	rd->records_total = ss.records_total;
	rd->batches_total = st->g.batches;
	rd->partitions = ss.partitions;
	rd->working_set = ss.working_set_bytes;
	rd->budget = ss.budget_bytes;
	rd->kind = (uint8_t)st->g.kind;
	rd->classification = (uint8_t)st->g.classification;
	snprintf(rd->zone, sizeof(rd->zone), "%s", st->g.zone);
	rd->state = (struct qp_blob){state, slen > 0 ? (size_t)slen : 0};

	pthread_mutex_lock(&srv->mu);
	st->next = se->streams;
	se->streams = st;
	srv->streams_opened++;
	pthread_mutex_unlock(&srv->mu);
	int r = srv_send(se, rm);
	free(rm);
	if (r < 0)
		return; /* the session will be torn down with the stream */
	srv_log(srv, QSVC_LOG_INFO,
		"session %" PRIu64 " (%s pid %" PRIu32 "): stream %" PRIu64 " of %s, rank %" PRIu32
		"/%" PRIu32 ", epoch %" PRIu64 ", %" PRIu64 " batches",
		se->id, se->host, se->pid, st->id, so->name, so->rank, so->world, so->epoch,
		st->g.batches);
}

void srvs_open(struct session *se, const struct qp_msg *m)
{
	char path[PATH_MAX], err[512];
	uint32_t prefetch;
	if (!open_grant(se, m, path, sizeof(path)))
		return;
	struct sstream *st = open_account(se, m, &prefetch);
	if (!st)
		return;
	int r = open_engine(se->srv, st, &m->u.stream_open, path, prefetch, err, sizeof(err));
	if (r == 0)
		r = open_ring(se->srv, st, prefetch, err, sizeof(err));
	if (r < 0) {
		srv_error(se, m->h.req, r, "%s", err);
		stream_free(se->srv, st);
		return;
	}
	open_announce(se, st, m);
}

void srvs_slots(struct session *se, const struct qp_msg *m)
{
	struct qsrv *srv = se->srv;
	const struct qp_slots *sl = &m->u.slots;
	pthread_mutex_lock(&srv->mu);
	struct sstream *st = find_stream_locked(se, sl->id);
	if (!st) {
		pthread_mutex_unlock(&srv->mu);
		int r = srvx_slots(se, m);
		if (r == -ENOENT)
			srv_error(se, m->h.req, -ENOENT, "no stream or transfer %" PRIu64, sl->id);
		return;
	}
	const char *bad = NULL;
	if (st->state != SST_NEED_RING)
		bad = "the stream has its slots already";
	else if (sl->nslots != st->nslots)
		bad = "the ring does not have the number of slots STREAM_READY asked for";
	else if (sl->slot_bytes < st->slot_bytes)
		bad = "the slots are smaller than STREAM_READY asked for";
	if (bad) {
		pthread_mutex_unlock(&srv->mu);
		srv_error(se, m->h.req, -EINVAL, "SLOTS for stream %" PRIu64 ": %s", sl->id, bad);
		return;
	}
	sst_move_locked(st, SST_STARTING);
	st->slot_bytes = sl->slot_bytes;
	st->raddr = sl->addr;
	st->rkey = sl->key;
	pthread_mutex_unlock(&srv->mu);
	if (srv_ok(se, m->h.req) < 0)
		return;
	/* The stream may have been closed (STREAM_CLOSE, the session's end)
	 * while OK was sent: it is found again, and its pump started in the
	 * same step as its move to SST_RUNNING, so that the teardown knows
	 * whether there is a pump to join. */
	pthread_mutex_lock(&srv->mu);
	st = find_stream_locked(se, sl->id);
	if (st && st->state == SST_STARTING) {
		int r = -pthread_create(&st->pump, NULL, pump_main, st);
		if (r == 0)
			sst_move_locked(st, SST_RUNNING);
		else
			srv_kill_locked(se, "cannot start a thread for stream %" PRIu64, st->id);
	}
	pthread_mutex_unlock(&srv->mu);
}

void srvs_close(struct session *se, const struct qp_msg *m)
{
	struct qsrv *srv = se->srv;
	pthread_mutex_lock(&srv->mu);
	struct sstream **pp, *st = NULL;
	for (pp = &se->streams; *pp; pp = &(*pp)->next)
		if ((*pp)->id == m->u.id.id) {
			st = *pp;
			*pp = st->next;
			break;
		}
	pthread_mutex_unlock(&srv->mu);
	if (!st) {
		srv_error(se, m->h.req, -ENOENT, "no stream %" PRIu64, m->u.id.id);
		return;
	}
	stream_free(srv, st);
	srv_ok(se, m->h.req);
}

/* On the progress thread: slots given back. */
void srvs_credit_locked(struct session *se, const struct qp_credit *c)
{
	struct sstream *st = find_stream_locked(se, c->stream);
	if (!st)
		return; /* a stream closed meanwhile */
	for (uint32_t i = 0; i < c->n; i++) {
		uint32_t k = c->slots[i];
		if (k >= st->nslots || slot_move_locked(st, k, SLOT_CREDIT) < 0) {
			srv_kill_locked(se,
					"CREDIT for slot %" PRIu32 " of stream %" PRIu64
					", which the client did not hold",
					k, st->id);
			return;
		}
	}
	pthread_cond_broadcast(&se->srv->cv);
}

void srvs_cancel_all_locked(struct session *se)
{
	for (struct sstream *st = se->streams; st; st = st->next)
		__atomic_store_n(&st->cancel, 1, __ATOMIC_RELEASE);
}

void srvs_close_all(struct session *se)
{
	struct qsrv *srv = se->srv;
	pthread_mutex_lock(&srv->mu);
	struct sstream *streams = se->streams;
	se->streams = NULL;
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
	while (streams) {
		struct sstream *st = streams;
		streams = st->next;
		stream_free(srv, st);
	}
}
