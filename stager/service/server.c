/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quaid's service: sessions, the dispatch of requests, listings, manifests,
 * statistics, and remote streams (docs/PROTOCOL.md). Pulls and pushes are
 * in srv_xfer.c.
 *
 * Threads:
 *  - the fabric's progress thread decodes what arrives; it answers nothing
 *    itself but credits (which only free slots) and queues every request
 *    for the service threads, so no client's request ever holds up
 *    another client's data;
 *  - service threads handle requests (opening datasets, reading manifests
 *    and file chunks), each request whole;
 *  - one pump thread per remote stream takes batches from the staging
 *    engine, waits for a free slot of the client's ring, and RMA-writes the
 *    batch into it: slot header, ids and offsets from a small pinned block,
 *    the records straight from the engine's batch (no copy);
 *  - qsrv_run's thread tears down sessions that ended, went silent past
 *    idle_timeout, or failed, and keeps the rate for STAT.
 * One lock (srv->mu) guards sessions, streams and the queue.
 */
#include "srv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <sys/random.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "errmsg.h"
#include "beneath.h"
#include "dataset.h"
#include "fsutil.h"
#include "manifest.h"
#include "policy.h"
#include "quai_config.h"

#define SRV_SERVICE_THREADS 4

struct work {
	struct session *se; /* NULL for HELLO */
	uint64_t peer;
	size_t len;
	struct work *next;
	uint8_t msg[];
};

/* One write of a batch into a client's slot. */
struct wop {
	struct srv_op op;
	struct sstream *st;
	uint32_t slot;
	int busy;
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
	int have_slots;
	uint64_t raddr, rkey;
	uint8_t *slot_busy; /* the client holds it (no credit) */
	struct wop *ops;    /* per slot */
	uint8_t *meta;	    /* per slot: header, ids, offsets */
	uint64_t meta_stride;
	pthread_t pump;
	int pump_started;
	int closing;
	int cancel; /* atomic: the pump's wait for a batch ends (closing, the
		       session dead, quaid stopping) */
	int done;   /* the pump has ended */
	unsigned inflight;
	uint64_t written;
	struct sstream *next;
};

uint64_t srv_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void srv_log(struct qsrv *srv, int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	if (level > srv->conf.log_level || !srv->log)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&srv->log_mu);
	srv->log(level, line, srv->log_arg);
	pthread_mutex_unlock(&srv->log_mu);
}

/* ---- sending ---------------------------------------------------------- */

int srv_send(struct session *se, struct qp_msg *m)
{
	uint8_t *buf = malloc(QP_MSG_MAX);
	if (!buf)
		return -ENOMEM;
	int n = qp_encode(m, buf, QP_MSG_MAX);
	int r = n;
	if (n >= 0)
		r = qf_send_wait(se->srv->ep, se->peer, buf, (size_t)n, 5000);
	free(buf);
	if (r < 0 && n >= 0)
		srv_log(se->srv, QSVC_LOG_DEBUG, "session %" PRIu64 ": cannot send %s: %s", se->id,
			qp_type_name(m->h.type), strerror(-r));
	return r;
}

int srv_ok(struct session *se, uint64_t req)
{
	struct qp_msg m = {.h = {.type = QP_OK, .req = req}};
	return srv_send(se, &m);
}

int srv_error(struct session *se, uint64_t req, int err, const char *fmt, ...)
{
	struct qp_msg *m = calloc(1, sizeof(*m));
	va_list ap;
	if (!m)
		return -ENOMEM;
	m->h.type = QP_ERROR;
	m->h.req = req;
	m->u.error.code = err < 0 ? -err : err;
	if (!m->u.error.code)
		m->u.error.code = EIO;
	va_start(ap, fmt);
	vsnprintf(m->u.error.message, sizeof(m->u.error.message), fmt, ap);
	va_end(ap);
	int r = srv_send(se, m);
	free(m);
	return r;
}

/* ---- sessions ---------------------------------------------------------- */

void srv_kill_locked(struct session *se, const char *fmt, ...)
{
	va_list ap;
	if (se->dead)
		return;
	se->dead = 1;
	va_start(ap, fmt);
	vsnprintf(se->why, sizeof(se->why), fmt, ap);
	va_end(ap);
	for (struct sstream *st = se->streams; st; st = st->next)
		__atomic_store_n(&st->cancel, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&se->srv->cv);
}

int srv_mem_take_locked(struct session *se, uint64_t bytes)
{
	if (se->mem_used + bytes > se->srv->conf.client_memory)
		return -ENOBUFS;
	se->mem_used += bytes;
	return 0;
}

void srv_mem_give_locked(struct session *se, uint64_t bytes)
{
	se->mem_used -= bytes < se->mem_used ? bytes : se->mem_used;
}

/* ---- policy and audit -------------------------------------------------- */

/* Writes one audit line for session se (NULL fields when it has no
 * identity). Returns 0, or -errno when the line could not be made durable;
 * 0 too when there is no audit log. */
static int audit(struct session *se, const char *what, const char *dataset, int cls,
		 const char *zone, int64_t bytes, int granted, const char *rule, const char *why)
{
	struct qsrv *srv = se->srv;
	if (!srv->audit)
		return 0;
	struct qaudit_event ev = {
	    .event = "access",
	    .session = se->id,
	    .user = se->authed ? se->who.user : NULL,
	    .uid = se->authed ? (int64_t)se->who.uid : -1,
	    .gid = se->authed ? (int64_t)se->who.gid : -1,
	    .group = se->authed ? se->who.group : NULL,
	    .host = se->authed ? se->who.addr_text : NULL,
	    .client = se->host,
	    .op = what,
	    .dataset = dataset && dataset[0] ? dataset : NULL,
	    .classification = cls ? quai_class_name(cls) : NULL,
	    .zone = zone,
	    .bytes = bytes,
	    .granted = granted,
	    .rule = rule,
	    .reason = granted ? NULL : why,
	};
	if (se->authed && !se->who.user[0])
		ev.user = NULL; /* a uid without a name here: the uid says it */
	int r = qaudit_log(srv->audit, &ev);
	if (r < 0)
		srv_log(srv, QSVC_LOG_ERROR, "session %" PRIu64 ": cannot write the audit log: %s",
			se->id, strerror(-r));
	return r;
}

/* The policy in force: qsrv_set_policy() may replace it at any time. */
static const struct qpol *srv_policy(const struct qsrv *srv)
{
	return __atomic_load_n(&srv->policy, __ATOMIC_ACQUIRE);
}

void qsrv_set_policy(struct qsrv *srv, const struct qpol *policy)
{
	__atomic_store_n(&srv->policy, policy, __ATOMIC_RELEASE);
}

/* The subject of a session's requests, for the policy. */
static void subject(const struct session *se, struct qpol_subject *s)
{
	memset(s, 0, sizeof(*s));
	if (!se->authed)
		return;
	s->authenticated = 1;
	s->uid = se->who.uid;
	s->gids = se->who.gids;
	s->ngids = se->who.ngids;
	s->user = se->who.user[0] ? se->who.user : NULL;
	s->has_addr = se->who.addr.ss_family == AF_INET || se->who.addr.ss_family == AF_INET6;
	s->addr = se->who.addr;
}

static int decide(struct session *se, int op, const char *dataset, int cls, const char *zone,
		  struct qpol_decision *d)
{
	struct qpol_subject s;
	subject(se, &s);
	struct qpol_request rq = {
	    .op = op, .dataset = dataset ? dataset : "", .classification = cls, .zone = zone};
	const struct qpol *policy = srv_policy(se->srv);
	if (!policy) {
		*d = (struct qpol_decision){.allow = 0};
		snprintf(d->rule, sizeof(d->rule), "default");
		snprintf(d->why, sizeof(d->why), "quaid has no policy: it refuses everything");
		return 0;
	}
	return qpol_decide(policy, &s, &rq, d);
}

int srv_authorize(struct session *se, uint64_t req, int op, const char *what, const char *dataset,
		  int cls, const char *zone, int64_t bytes)
{
	struct qsrv *srv = se->srv;
	struct qpol_decision d;
	decide(se, op, dataset, cls, zone, &d);
	int r = audit(se, what, dataset, cls, zone, bytes, d.allow, d.rule, d.why);
	if (r < 0) {
		srv_error(se, req, -EIO,
			  "quaid cannot write its audit log (%s): nothing is served unaudited",
			  strerror(-r));
		return 0;
	}
	if (!d.allow) {
		srv_log(srv, QSVC_LOG_NOTICE, "session %" PRIu64 ": %s of %s refused (%s): %s",
			se->id, what, dataset && dataset[0] ? dataset : "-", d.rule, d.why);
		srv_error(se, req, -QUAI_EPOLICY, "%s", d.why);
		return 0;
	}
	return 1;
}

static struct session *find_session_locked(struct qsrv *srv, uint64_t peer)
{
	for (struct session *se = srv->sessions; se; se = se->next)
		if (se->peer == peer && !se->dead)
			return se;
	return NULL;
}

/* The session a client's message names in its header (the fabric's idea of
 * the sender is not reliable enough to go by: docs/PROTOCOL.md); messages
 * too broken to name one fall back to the sender's address. */
static struct session *find_token_locked(struct qsrv *srv, uint32_t token)
{
	for (struct session *se = srv->sessions; se; se = se->next)
		if (se->token == token && !se->dead)
			return se;
	return NULL;
}

/* A random token no live session has. Under srv->mu. */
static uint32_t new_token_locked(struct qsrv *srv)
{
	for (;;) {
		uint32_t t = 0;
		if (getrandom(&t, sizeof(t), 0) != sizeof(t))
			t = (uint32_t)(srv_now_ns() * 2654435761u) ^ (uint32_t)srv->next_id;
		if (t && !find_token_locked(srv, t))
			return t;
	}
}

static int valid_name(const char *name)
{
	return name[0] && name[0] != '.' && qmf_check_name(name) == 0;
}

int srv_dataset_path(struct qsrv *srv, const char *name, char *buf, size_t len)
{
	char probe[PATH_MAX];
	if (!valid_name(name))
		return -EINVAL;
	for (unsigned i = 0; i <= srv->conf.nroots; i++) {
		const char *root = i < srv->conf.nroots ? srv->conf.roots[i] : srv->conf.push_root;
		if (!root)
			continue;
		if ((size_t)snprintf(probe, sizeof(probe), "%s/%s/manifest.json", root, name) >=
		    sizeof(probe))
			continue;
		if (qfs_is_dataset(root, name) == 0) {
			if ((size_t)snprintf(buf, len, "%s/%s", root, name) >= len)
				return -ENAMETOOLONG;
			return 0;
		}
	}
	return -ENOENT;
}

/* ---- streams ----------------------------------------------------------- */

static void stream_write_done(struct srv_op *op, int status)
{
	struct wop *w = (struct wop *)op;
	struct sstream *st = w->st;
	struct session *se = st->se;
	struct qsrv *srv = se->srv;

	quai_release(st->es, &w->b);
	pthread_mutex_lock(&srv->mu);
	w->busy = 0;
	st->inflight--;
	if (status < 0)
		srv_kill_locked(se, "writing a batch to the client failed: %s", strerror(-status));
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
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
		if (st->closing || st->se->dead || srv->stopping) {
			pthread_mutex_unlock(&srv->mu);
			return -1;
		}
		for (uint32_t i = 0; i < st->nslots; i++) {
			if (!st->slot_busy[i] && !st->ops[i].busy) {
				st->slot_busy[i] = 1;
				st->ops[i].busy = 1;
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
			if (st->inflight && !st->closing && !se->dead)
				pthread_cond_wait(&srv->cv, &srv->mu);
			int stop = st->closing || se->dead || srv->stopping;
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
			stream_write_done(&w->op, 0);
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
		qp_slot_encode(&h, meta);
		memcpy(meta + QP_SLOT_HEADER_SIZE, b.ids, 8 * (size_t)b.count);
		memcpy(meta + QP_SLOT_HEADER_SIZE + 8 * (size_t)b.count, b.offsets,
		       8 * ((size_t)b.count + 1));
		memset(meta + QP_SLOT_HEADER_SIZE + 8 * (2 * (size_t)b.count + 1), 0,
		       data_off - (QP_SLOT_HEADER_SIZE + 8 * (2 * (uint64_t)b.count + 1)));
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
			stream_write_done(&w->op, r == -EAGAIN ? 0 : r);
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
	int tell = !se->dead && !st->closing;
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
		st->closing ? ", closing" : "");
	if (tell)
		stream_end(st, status, msg);
	pthread_mutex_lock(&srv->mu);
	st->done = 1;
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
	return NULL;
}

/* Stops a stream's pump, waits for its writes, and frees it. The stream
 * must be unlinked from its session already. */
static void stream_free(struct qsrv *srv, struct sstream *st)
{
	pthread_mutex_lock(&srv->mu);
	st->closing = 1;
	__atomic_store_n(&st->cancel, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
	if (st->pump_started)
		pthread_join(st->pump, NULL);
	/* Writes still on the wire read from the batches and the meta block:
	 * they complete (or fail) before either is given back. */
	pthread_mutex_lock(&srv->mu);
	uint64_t t0 = srv_now_ns();
	while (st->inflight && srv_now_ns() - t0 < 10000000000ull) {
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
	free(st->slot_busy);
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

/* Reads and parses the manifest of the dataset in directory `path`; the
 * text too when ret_text is given (free() it). Returns 0 or -errno /
 * -QUAI_EFORMAT with err. */
static int load_manifest(const char *path, const char *name, struct qmf *mf, uint8_t **ret_text,
			 size_t *ret_len, char *err, size_t err_len)
{
	char derr[256];
	int r = qds_read_manifest(AT_FDCWD, path, mf, ret_text, ret_len, derr, sizeof(derr));
	if (r < 0)
		snprintf(err, err_len, "%s/%s", name, derr);
	return r;
}

static void stream_open(struct session *se, const struct qp_msg *m)
{
	struct qsrv *srv = se->srv;
	const struct qp_stream_open *so = &m->u.stream_open;
	char path[PATH_MAX], err[512];
	struct qmf mf;
	int r = srv_dataset_path(srv, so->name, path, sizeof(path));
	if (r < 0) {
		srv_error(se, m->h.req, r == -EINVAL ? -EINVAL : -ENOENT,
			  r == -EINVAL ? "'%s' is not a dataset name" : "no dataset '%s' here",
			  so->name);
		return;
	}
	r = load_manifest(path, so->name, &mf, NULL, NULL, err, sizeof(err));
	if (r < 0) {
		srv_error(se, m->h.req, r, "%s", err);
		return;
	}
	int granted = srv_authorize(se, m->h.req, QPOL_STREAM, "stream", so->name,
				    mf.classification, mf.zone, (int64_t)mf.raw_bytes);
	qmf_release(&mf);
	if (!granted)
		return;
	struct sstream *st = calloc(1, sizeof(*st));
	if (!st) {
		srv_error(se, m->h.req, -ENOMEM, "out of memory");
		return;
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
		return;
	}
	uint32_t client_prefetch =
	    so->prefetch_batches ? so->prefetch_batches : QS_DEFAULT_PREFETCH;

	pthread_mutex_lock(&srv->mu);
	/* Without a budget a stream may use what is left of the client's
	 * allowance, as an embedded one may use its whole pool. */
	uint64_t left = srv->conf.client_memory - se->mem_used;
	uint64_t want = so->memory_budget ? so->memory_budget : left;
	if (se->nstreams >= srv->conf.max_streams) {
		pthread_mutex_unlock(&srv->mu);
		free(st);
		srv_error(se, m->h.req, -EMFILE,
			  "this client has %u streams open, the most quaid allows (max_streams)",
			  srv->conf.max_streams);
		return;
	}
	if (want > left || left == 0) {
		{
			pthread_mutex_unlock(&srv->mu);
			free(st);
			srv_error(se, m->h.req, -ENOBUFS,
				  "the stream asks for %" PRIu64
				  " MiB of quaid's pinned memory; this "
				  "client has %" PRIu64 " MiB left of its %" PRIu64
				  " MiB (client_memory)",
				  want >> 20, left >> 20, srv->conf.client_memory >> 20);
			return;
		}
		want = left;
	}
	st->mem = want;
	srv_mem_take_locked(se, want);
	se->nstreams++;
	st->id = ++srv->next_id;
	pthread_mutex_unlock(&srv->mu);

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
	    .memory_budget = want,
	    /* The client holds up to its prefetch_batches, and as many more
	     * are on the wire: the engine here assembles that far ahead, so
	     * that a write's round trip never leaves it idle (below, with
	     * the client's own depth when the budget cannot hold that). */
	    .prefetch_batches = 2 * client_prefetch,
	    .tail = so->tail,
	    .flags = so->flags,
	    .resume = so->state.len ? so->state.p : NULL,
	    .resume_len = so->state.len,
	};
	r = quai_stream_open(srv->ctx, path, &o, &st->es, err, sizeof(err));
	if (r == -ENOBUFS) {
		o.prefetch_batches = client_prefetch;
		r = quai_stream_open(srv->ctx, path, &o, &st->es, err, sizeof(err));
	}
	if (r == 0)
		r = qstream_geometry(st->es, &st->g);
	uint64_t meta_stride = 0;
	if (r == 0) {
		/* Twice the batches the client may hold: while it works on
		 * those, the others are on the wire or waiting for it, so a
		 * credit's round trip does not stall the stream. */
		st->nslots = 2 * client_prefetch;
		st->meta_stride = meta_stride =
		    (qp_slot_data_off(st->g.max_count) + QPOOL_ALIGN - 1) / QPOOL_ALIGN *
		    QPOOL_ALIGN;
		st->slot_bytes = qp_slot_need(st->g.max_count, st->g.max_bytes);
		if (st->slot_bytes < QP_SLOT_HEADER_SIZE + 64)
			st->slot_bytes = QP_SLOT_HEADER_SIZE + 64;
		st->slot_busy = calloc(st->nslots, 1);
		st->ops = calloc(st->nslots, sizeof(*st->ops));
		if (!st->slot_busy || !st->ops) {
			r = -ENOMEM;
			snprintf(err, sizeof(err), "out of memory");
		} else if (qpool_alloc(srv->ctx->pool, meta_stride * st->nslots,
				       (void **)&st->meta) < 0) {
			st->meta = NULL;
			r = -ENOBUFS;
			snprintf(err, sizeof(err), "quaid's pinned pool is full");
		}
	}
	if (r < 0) {
		srv_error(se, m->h.req, r, "%s", err);
		pthread_mutex_lock(&srv->mu);
		srv_mem_give_locked(se, st->mem);
		se->nstreams--;
		pthread_mutex_unlock(&srv->mu);
		quai_stream_close(st->es);
		if (st->meta)
			qpool_release(srv->ctx->pool, st->meta);
		free(st->slot_busy);
		free(st->ops);
		free(st);
		return;
	}
	for (uint32_t i = 0; i < st->nslots; i++)
		st->ops[i] = (struct wop){.op.done = stream_write_done, .st = st, .slot = i};

	struct quai_stream_stats ss = {.size = sizeof(ss)};
	quai_stream_stats(st->es, &ss);
	struct qp_msg *rm = calloc(1, sizeof(*rm));
	uint8_t state[QP_STATE_MAX];
	int slen = quai_stream_state(st->es, state, sizeof(state));
	if (!rm) {
		srv_error(se, m->h.req, -ENOMEM, "out of memory");
		goto drop;
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
	if (srv_send(se, rm) < 0) {
		free(rm);
		return; /* the session will be torn down with the stream */
	}
	free(rm);
	srv_log(srv, QSVC_LOG_INFO,
		"session %" PRIu64 " (%s pid %" PRIu32 "): stream %" PRIu64 " of %s, rank %" PRIu32
		"/%" PRIu32 ", epoch %" PRIu64 ", %" PRIu64 " batches",
		se->id, se->host, se->pid, st->id, so->name, so->rank, so->world, so->epoch,
		st->g.batches);
	return;
drop:
	pthread_mutex_lock(&srv->mu);
	srv_mem_give_locked(se, st->mem);
	se->nstreams--;
	pthread_mutex_unlock(&srv->mu);
	quai_stream_close(st->es);
	qpool_release(srv->ctx->pool, st->meta);
	free(st->slot_busy);
	free(st->ops);
	free(st);
}

static void stream_slots(struct session *se, const struct qp_msg *m)
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
	if (st->have_slots)
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
	st->have_slots = 1;
	st->slot_bytes = sl->slot_bytes;
	st->raddr = sl->addr;
	st->rkey = sl->key;
	pthread_mutex_unlock(&srv->mu);
	if (srv_ok(se, m->h.req) < 0)
		return;
	int r = -pthread_create(&st->pump, NULL, pump_main, st);
	pthread_mutex_lock(&srv->mu);
	if (r == 0)
		st->pump_started = 1;
	else
		srv_kill_locked(se, "cannot start a thread for stream %" PRIu64, st->id);
	pthread_mutex_unlock(&srv->mu);
}

static void stream_close(struct session *se, const struct qp_msg *m)
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
static void credit_locked(struct session *se, const struct qp_credit *c)
{
	struct sstream *st = find_stream_locked(se, c->stream);
	if (!st)
		return; /* a stream closed meanwhile */
	for (uint32_t i = 0; i < c->n; i++) {
		uint32_t k = c->slots[i];
		if (k >= st->nslots || !st->slot_busy[k]) {
			srv_kill_locked(se,
					"CREDIT for slot %" PRIu32 " of stream %" PRIu64
					", which the client did not hold",
					k, st->id);
			return;
		}
		st->slot_busy[k] = 0;
	}
	pthread_cond_broadcast(&se->srv->cv);
}

/* ---- listings, manifests, statistics ---------------------------------- */

struct entry {
	struct qp_list_entry e;
};

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->e.name, ((const struct entry *)b)->e.name);
}

/* Every dataset under the roots, sorted by name; the first root holding a
 * name wins, as srv_dataset_path() decides. */
static int catalog(struct qsrv *srv, struct entry **ret, uint32_t *ret_n)
{
	struct entry *v = NULL;
	uint32_t n = 0, cap = 0;
	for (unsigned i = 0; i <= srv->conf.nroots; i++) {
		const char *root = i < srv->conf.nroots ? srv->conf.roots[i] : srv->conf.push_root;
		if (!root)
			continue;
		DIR *d = opendir(root);
		if (!d)
			continue;
		struct dirent *de;
		while ((de = readdir(d))) {
			if (!valid_name(de->d_name))
				continue;
			int dup = 0;
			for (uint32_t k = 0; k < n && !dup; k++)
				dup = strcmp(v[k].e.name, de->d_name) == 0;
			if (dup)
				continue;
			struct qmf mf;
			/* The rule of what is a dataset here (dataset.h): links and
			 * files that are not regular keep a directory out. */
			if (qds_read_manifest(dirfd(d), de->d_name, &mf, NULL, NULL, NULL, 0) < 0)
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 32;
				struct entry *nv = realloc(v, cap * sizeof(*v));
				if (!nv) {
					qmf_release(&mf);
					closedir(d);
					free(v);
					return -ENOMEM;
				}
				v = nv;
			}
			struct qp_list_entry *e = &v[n++].e;
			memset(e, 0, sizeof(*e));
			snprintf(e->name, sizeof(e->name), "%s", de->d_name);
			e->kind = (uint8_t)mf.kind;
			e->classification = (uint8_t)mf.classification;
			snprintf(e->zone, sizeof(e->zone), "%s", mf.zone);
			e->records = mf.records;
			e->raw_bytes = mf.raw_bytes;
			e->compressed_bytes = mf.compressed_bytes;
			e->shards = mf.nshards;
			qmf_release(&mf);
		}
		closedir(d);
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_entry);
	*ret = v;
	*ret_n = n;
	return 0;
}

static void list(struct session *se, const struct qp_msg *m)
{
	struct entry *v;
	uint32_t n;
	if (!srv_authorize(se, m->h.req, QPOL_LIST, "list", NULL, 0, NULL, -1))
		return;
	int r = catalog(se->srv, &v, &n);
	if (r < 0) {
		srv_error(se, m->h.req, r, "cannot list the datasets: %s", strerror(-r));
		return;
	}
	/* Only what this client may list: the others are not shown at all. */
	uint32_t kept = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct qpol_decision d;
		if (decide(se, QPOL_LIST, v[i].e.name, v[i].e.classification, v[i].e.zone, &d))
			v[kept++] = v[i];
	}
	n = kept;
	struct qp_msg *rm = calloc(1, sizeof(*rm));
	if (!rm) {
		free(v);
		srv_error(se, m->h.req, -ENOMEM, "out of memory");
		return;
	}
	rm->h.type = QP_LIST_REPLY;
	rm->h.req = m->h.req;
	rm->u.list_reply.total = n;
	rm->u.list_reply.start = m->u.list.start;
	/* As many entries as fit one message. */
	uint8_t *probe = malloc(QP_MSG_MAX);
	for (uint32_t i = m->u.list.start; probe && i < n && rm->u.list_reply.n < QP_LIST_MAX;
	     i++) {
		rm->u.list_reply.e[rm->u.list_reply.n++] = v[i].e;
		if (qp_encode(rm, probe, QP_MSG_MAX) < 0) {
			rm->u.list_reply.n--;
			break;
		}
	}
	free(probe);
	free(v);
	srv_send(se, rm);
	free(rm);
}

static void manifest(struct session *se, const struct qp_msg *m)
{
	char path[PATH_MAX];
	int r = srv_dataset_path(se->srv, m->u.manifest.name, path, sizeof(path));
	if (r < 0) {
		srv_error(se, m->h.req, r == -EINVAL ? -EINVAL : -ENOENT,
			  r == -EINVAL ? "'%s' is not a dataset name" : "no dataset '%s' here",
			  m->u.manifest.name);
		return;
	}
	uint8_t *text = NULL;
	size_t len = 0;
	char err[512];
	struct qmf mf;
	r = load_manifest(path, m->u.manifest.name, &mf, &text, &len, err, sizeof(err));
	if (r < 0) {
		srv_error(se, m->h.req, r, "%s", err);
		return;
	}
	/* A client that may stream or pull a dataset may read its manifest
	 * (quai pull does, first). The first chunk is decided and audited;
	 * later ones, the same reading going on, are decided again silently. */
	static const int ops[] = {QPOL_LIST, QPOL_PULL, QPOL_STREAM};
	struct qpol_decision d;
	int op = QPOL_LIST, granted = 0;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]) && !granted; i++)
		if (decide(se, ops[i], m->u.manifest.name, mf.classification, mf.zone, &d)) {
			op = ops[i];
			granted = 1;
		}
	if (m->u.manifest.offset == 0)
		granted = srv_authorize(se, m->h.req, op, "info", m->u.manifest.name,
					mf.classification, mf.zone, (int64_t)mf.raw_bytes);
	else if (!granted)
		srv_error(se, m->h.req, -QUAI_EPOLICY, "%s", d.why);
	qmf_release(&mf);
	if (!granted) {
		free(text);
		return;
	}
	struct qp_msg *rm = calloc(1, sizeof(*rm));
	if (!rm) {
		free(text);
		srv_error(se, m->h.req, -ENOMEM, "out of memory");
		return;
	}
	uint64_t off = m->u.manifest.offset < len ? m->u.manifest.offset : len;
	size_t chunk = len - off;
	size_t room = QP_MSG_MAX - QP_HEADER_SIZE - 64;
	rm->h.type = QP_MANIFEST_REPLY;
	rm->h.req = m->h.req;
	rm->u.manifest_reply.total = len;
	rm->u.manifest_reply.offset = off;
	rm->u.manifest_reply.data = (struct qp_blob){text + off, chunk < room ? chunk : room};
	srv_send(se, rm);
	free(rm);
	free(text);
}

/* Appends printf output to a growing buffer. */
struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	if (!b->p)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= b->cap - b->len) {
		b->len = b->cap; /* mark truncated: too long to send */
		return;
	}
	b->len += (size_t)n;
}

static void sb_string(struct sbuf *b, const char *s)
{
	sb_printf(b, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			sb_printf(b, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			sb_printf(b, "\\u%04x", c);
		else
			sb_printf(b, "%c", c);
	}
	sb_printf(b, "\"");
}

static void stat_(struct session *se, const struct qp_msg *m)
{
	struct qsrv *srv = se->srv;
	if (!srv_authorize(se, m->h.req, QPOL_LIST, "stat", NULL, 0, NULL, -1))
		return;
	struct sbuf b = {.cap = QP_MSG_MAX - QP_HEADER_SIZE - 64};
	b.p = malloc(b.cap);
	if (!b.p) {
		srv_error(se, m->h.req, -ENOMEM, "out of memory");
		return;
	}
	struct quai_ctx_info ci = {.size = sizeof(ci)};
	quai_ctx_info(srv->ctx, &ci);
	pthread_mutex_lock(&srv->mu);
	uint64_t now = srv_now_ns();
	sb_printf(&b, "{\"server\":\"quaid %s\",\"zone\":", QUAI_VERSION);
	sb_string(&b, srv->conf.zone);
	sb_printf(&b, ",\"address\":");
	sb_string(&b, srv->addr);
	sb_printf(&b, ",\"provider\":");
	sb_string(&b, qf_provider(srv->ep));
	unsigned nst = 0;
	for (struct session *s = srv->sessions; s; s = s->next)
		nst += s->nstreams;
	sb_printf(&b,
		  ",\"uptime_ms\":%" PRIu64 ",\"sessions_total\":%" PRIu64 ",\"streams_open\":%u"
		  ",\"streams_total\":%" PRIu64 ",\"bytes_served\":%" PRIu64
		  ",\"batches_served\":%" PRIu64 ",\"rate_bytes_per_s\":%" PRIu64
		  ",\"pinned_bytes\":%" PRIu64 ",\"pinned_peak\":%" PRIu64 ",\"clients\":[",
		  (now - srv->started_ns) / 1000000, srv->sessions_total, nst, srv->streams_opened,
		  srv->bytes_served, srv->batches_served, srv->rate_bps, ci.pinned_bytes,
		  ci.pinned_peak);
	int first = 1;
	for (struct session *s = srv->sessions; s; s = s->next) {
		if (s->dead)
			continue;
		sb_printf(&b, "%s{\"session\":%" PRIu64 ",\"host\":", first ? "" : ",", s->id);
		sb_string(&b, s->host);
		if (s->authed) {
			sb_printf(&b, ",\"uid\":%" PRIu32 ",\"user\":", s->who.uid);
			sb_string(&b, s->who.user);
			sb_printf(&b, ",\"from\":");
			sb_string(&b, s->who.addr_text);
		}
		sb_printf(&b,
			  ",\"pid\":%" PRIu32 ",\"streams\":%u,\"bytes_out\":%" PRIu64
			  ",\"bytes_in\":%" PRIu64 ",\"memory\":%" PRIu64 ",\"idle_ms\":%" PRIu64
			  "}",
			  s->pid, s->nstreams, s->bytes_out, s->bytes_in, s->mem_used,
			  (now - s->last_rx_ns) / 1000000);
		first = 0;
	}
	pthread_mutex_unlock(&srv->mu);
	sb_printf(&b, "]}");
	if (b.len >= b.cap) {
		/* Too many clients for one message: the totals only. */
		b.len = 0;
		sb_printf(&b, "{\"server\":\"quaid %s\",\"truncated\":true}", QUAI_VERSION);
	}
	struct qp_msg *rm = calloc(1, sizeof(*rm));
	if (rm) {
		rm->h.type = QP_STAT_REPLY;
		rm->h.req = m->h.req;
		rm->u.stat_reply.json = (struct qp_blob){(const uint8_t *)b.p, b.len};
		srv_send(se, rm);
	}
	free(rm);
	free(b.p);
}

/* ---- the handshake ----------------------------------------------------- */

/* Checks the credential of a HELLO, filling se->who. A client without a
 * valid one learns nothing but that (no zone, no server version: those
 * come with WELCOME). Returns 1 when the session may go on: authenticated,
 * or unauthenticated where the policy allows it (public data only). */
static int authenticate(struct qsrv *srv, struct session *se, const struct qp_msg *m)
{
	const struct qp_hello *h = &m->u.hello;
	char why[512] = "", rule[32] = "auth:credential";
	int code = -EACCES;
	if (h->auth_kind[0] && strcmp(h->auth_kind, QAUTH_KIND_MUNGE) != 0) {
		snprintf(why, sizeof(why),
			 "authentication failed: unknown method '%s' (quaid accepts munge)",
			 h->auth_kind);
	} else if (h->auth_kind[0]) {
		uint8_t own[QF_ADDR_MAX];
		size_t olen = sizeof(own);
		char aerr[400];
		int r = qf_name(srv->ep, own, &olen);
		if (r == 0)
			r = qauth_munge_decode(srv->conf.munge_socket, h->auth.p, h->auth.len,
					       h->addr.p, h->addr.len, own, olen, &se->who, aerr,
					       sizeof(aerr));
		else
			snprintf(aerr, sizeof(aerr), "cannot read quaid's own address");
		if (r == 0) {
			se->authed = 1;
		} else if (r == -ECONNREFUSED) {
			/* quaid's fault, not the client's: the log says what. */
			srv_log(srv, QSVC_LOG_ERROR, "HELLO from %s pid %" PRIu32 ": %s", h->host,
				h->pid, aerr);
			snprintf(why, sizeof(why),
				 "authentication failed: quaid cannot check credentials now");
			code = -EAGAIN;
		} else {
			snprintf(why, sizeof(why), "authentication failed: %s", aerr);
		}
	} else if (!srv_policy(srv) || !qpol_unauthenticated(srv_policy(srv))) {
		snprintf(rule, sizeof(rule), "auth:required");
		snprintf(why, sizeof(why),
			 "authentication required: this quaid accepts MUNGE credentials only");
	} else {
		snprintf(rule, sizeof(rule), "auth:public");
	}
	int ok = !why[0];
	if (audit(se, "connect", NULL, 0, NULL, -1, ok, rule, why) < 0 && ok) {
		ok = 0;
		code = -EIO;
		snprintf(why, sizeof(why),
			 "quaid cannot write its audit log: it serves nobody "
			 "unaudited");
	}
	if (ok)
		return 1;
	srv_log(srv, QSVC_LOG_NOTICE, "HELLO from %s pid %" PRIu32 " refused: %s", h->host, h->pid,
		why);
	srv_error(se, m->h.req, code, "%s", why);
	return 0;
}

static void hello(struct qsrv *srv, const struct qp_msg *m)
{
	const struct qp_hello *h = &m->u.hello;
	uint64_t peer;
	int r = qf_peer_insert(srv->ep, h->addr.p, h->addr.len, &peer);
	if (r < 0) {
		srv_log(srv, QSVC_LOG_WARNING,
			"HELLO from %s pid %" PRIu32 ": unusable address: %s", h->host, h->pid,
			strerror(-r));
		return;
	}
	struct session *se = calloc(1, sizeof(*se));
	if (!se)
		return;
	se->srv = srv;
	se->peer = peer;
	snprintf(se->host, sizeof(se->host), "%s", h->host);
	se->pid = h->pid;
	se->last_rx_ns = srv_now_ns();
	pthread_mutex_lock(&srv->mu);
	se->id = ++srv->next_id;
	pthread_mutex_unlock(&srv->mu);
	if (!authenticate(srv, se, m)) {
		pthread_mutex_lock(&srv->mu);
		int known = find_session_locked(srv, peer) != NULL;
		pthread_mutex_unlock(&srv->mu);
		if (!known)
			qf_peer_remove(srv->ep, peer);
		free(se);
		return;
	}
	pthread_mutex_lock(&srv->mu);
	/* A HELLO from an address with a session: the client started over. */
	struct session *old = find_session_locked(srv, peer);
	if (old)
		srv_kill_locked(old, "the client said HELLO again");
	unsigned live = 0;
	for (struct session *s = srv->sessions; s; s = s->next)
		live += !s->dead;
	int full = live >= srv->conf.max_clients || srv->stopping;
	if (!full) {
		se->token = new_token_locked(srv);
		se->next = srv->sessions;
		srv->sessions = se;
		srv->nsessions++;
		srv->sessions_total++;
		se->refs++; /* until the reply is sent */
	}
	pthread_mutex_unlock(&srv->mu);
	if (full) {
		srv_error(se, m->h.req, srv->stopping ? -ESHUTDOWN : -EUSERS,
			  srv->stopping ? "quaid is shutting down"
					: "quaid serves %u clients already (max_clients)",
			  srv->conf.max_clients);
		if (!old)
			qf_peer_remove(srv->ep, peer);
		free(se);
		return;
	}
	struct qp_msg *rm = calloc(1, sizeof(*rm));
	if (rm) {
		rm->h.type = QP_WELCOME;
		rm->h.req = m->h.req;
		rm->u.welcome.session = se->token;
		snprintf(rm->u.welcome.server, sizeof(rm->u.welcome.server), "quaid %s",
			 QUAI_VERSION);
		snprintf(rm->u.welcome.zone, sizeof(rm->u.welcome.zone), "%s", srv->conf.zone);
		rm->u.welcome.max_streams = srv->conf.max_streams;
		rm->u.welcome.client_memory = srv->conf.client_memory;
		srv_send(se, rm);
		free(rm);
	}
	if (se->authed)
		srv_log(srv, QSVC_LOG_INFO,
			"session %" PRIu64 ": %s pid %" PRIu32 " connected, user %s (uid %" PRIu32
			") from %s",
			se->id, se->host, se->pid, se->who.user[0] ? se->who.user : "-",
			se->who.uid, se->who.addr_text);
	else
		srv_log(srv, QSVC_LOG_INFO,
			"session %" PRIu64 ": %s pid %" PRIu32 " connected, unauthenticated",
			se->id, se->host, se->pid);
	srv_log(srv, QSVC_LOG_DEBUG, "session %" PRIu64 ": peer %" PRIu64, se->id, se->peer);
	pthread_mutex_lock(&srv->mu);
	se->refs--;
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
}

/* ---- dispatch ---------------------------------------------------------- */

static void handle(struct qsrv *srv, struct work *w, struct qp_msg *m)
{
	if (qp_decode(w->msg, w->len, m, NULL, 0) < 0)
		return; /* checked on arrival */
	struct session *se = w->se;
	switch (m->h.type) {
	case QP_HELLO:
		hello(srv, m);
		break;
	case QP_LIST:
		list(se, m);
		break;
	case QP_MANIFEST:
		manifest(se, m);
		break;
	case QP_STAT:
		stat_(se, m);
		break;
	case QP_STREAM_OPEN:
		stream_open(se, m);
		break;
	case QP_SLOTS:
		stream_slots(se, m);
		break;
	case QP_STREAM_CLOSE:
		stream_close(se, m);
		break;
	case QP_PULL_OPEN:
		srvx_pull_open(se, m);
		break;
	case QP_READ:
		srvx_read(se, m);
		break;
	case QP_PUSH_OPEN:
		srvx_push_open(se, m);
		break;
	case QP_PUT:
		srvx_put(se, m);
		break;
	case QP_PUSH_STATUS:
		srvx_push_status(se, m);
		break;
	case QP_COMMIT:
		srvx_commit(se, m);
		break;
	case QP_XFER_CLOSE:
		srvx_close(se, m);
		break;
	default:
		srv_error(se, m->h.req, -EPROTO, "%s is not a request", qp_type_name(m->h.type));
		break;
	}
}

static void *service_main(void *arg)
{
	struct qsrv *srv = arg;
	struct qp_msg *m = malloc(sizeof(*m));
	if (!m)
		return NULL;
	pthread_mutex_lock(&srv->mu);
	for (;;) {
		while (!srv->wq_head && !srv->stopping)
			pthread_cond_wait(&srv->wq_cv, &srv->mu);
		if (!srv->wq_head)
			break;
		struct work *w = srv->wq_head;
		srv->wq_head = w->next;
		if (!srv->wq_head)
			srv->wq_tail = NULL;
		int skip = w->se && w->se->dead;
		pthread_mutex_unlock(&srv->mu);
		if (!skip)
			handle(srv, w, m);
		pthread_mutex_lock(&srv->mu);
		if (w->se) {
			w->se->refs--;
			pthread_cond_broadcast(&srv->cv);
		}
		free(w);
	}
	pthread_mutex_unlock(&srv->mu);
	free(m);
	return NULL;
}

static void enqueue_locked(struct qsrv *srv, struct session *se, uint64_t peer, const void *msg,
			   size_t len)
{
	/* Stopping: the service threads end once the queue is empty, and a
	 * message queued after that (a client's BYE or CREDIT answering the
	 * shutdown) would hold its session's reference for ever, and
	 * session_free() with it. Nothing more is served: drop it. */
	if (srv->stopping)
		return;
	struct work *w = malloc(sizeof(*w) + len);
	if (!w)
		return;
	w->se = se;
	w->peer = peer;
	w->len = len;
	w->next = NULL;
	memcpy(w->msg, msg, len);
	if (se)
		se->refs++;
	if (srv->wq_tail)
		srv->wq_tail->next = w;
	else
		srv->wq_head = w;
	srv->wq_tail = w;
	pthread_cond_signal(&srv->wq_cv);
}

/* The progress thread: check, then queue (or, for credits and pings,
 * act at once). */
static void on_msg(void *arg, uint64_t peer, const void *msg, size_t len)
{
	struct qsrv *srv = arg;
	struct qp_msg *m = srv->rx;
	char err[200];
	/* A message too broken for its header to be read must not inherit the
	 * previous one's session id. */
	memset(&m->h, 0, sizeof(m->h));
	int r = qp_decode(msg, len, m, err, sizeof(err));

	pthread_mutex_lock(&srv->mu);
	struct session *se;
	if (r != -EPROTONOSUPPORT && m->h.session && len >= QP_HEADER_SIZE)
		se = find_token_locked(srv, m->h.session);
	else
		se = peer == QF_PEER_UNKNOWN ? NULL : find_session_locked(srv, peer);
	if (r == -EPROTONOSUPPORT) {
		pthread_mutex_unlock(&srv->mu);
		srv_log(
		    srv, QSVC_LOG_WARNING,
		    "a client speaks protocol version %u; this quaid speaks version %u: refused",
		    (unsigned)m->h.version, QP_VERSION);
		/* A first HELLO: its address is where every version keeps it
		 * (docs/PROTOCOL.md, "Versioning"), so the refusal can reach a
		 * client that has no session yet. */
		uint64_t tmp = QF_PEER_UNKNOWN;
		if (!se && m->h.type == QP_HELLO && len >= 32) {
			const uint8_t *p = (const uint8_t *)msg + 28;
			uint32_t alen = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
					(uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
			if (alen >= 1 && alen <= QP_ADDR_MAX && 32 + (size_t)alen <= len &&
			    qf_peer_insert(srv->ep, p + 4, alen, &tmp) == 0)
				peer = tmp;
		}
		if (se || tmp != QF_PEER_UNKNOWN) {
			/* Reply in our version: the header layout is the same in
			 * every version, so the client can read the refusal. */
			struct qp_msg e = {.h = {.type = QP_ERROR, .req = m->h.req}};
			uint8_t buf[QP_HEADER_SIZE + QP_TEXT_MAX + 16];
			e.u.error.code = QUAI_EVERSION;
			snprintf(e.u.error.message, sizeof(e.u.error.message),
				 "this quaid speaks protocol version %u, the client version %u",
				 QP_VERSION, (unsigned)m->h.version);
			int n = qp_encode(&e, buf, sizeof(buf));
			if (n > 0)
				qf_send(srv->ep, peer, buf, (size_t)n);
		}
		/* The address stays in the vector: removing it at once could
		 * drop the refusal before it is sent; a HELLO in our version
		 * from it later finds it there. */
		return;
	}
	if (r < 0) {
		if (se)
			srv_kill_locked(se, "malformed message: %s", err);
		pthread_mutex_unlock(&srv->mu);
		if (!se)
			srv_log(srv, QSVC_LOG_WARNING,
				"malformed message from an unknown client: %s", err);
		return;
	}
	if (m->h.type == QP_HELLO && srv->stopping) {
		/* The service threads are ending: refuse here, without waiting. */
		pthread_mutex_unlock(&srv->mu);
		uint64_t p;
		if (qf_peer_insert(srv->ep, m->u.hello.addr.p, m->u.hello.addr.len, &p) == 0) {
			struct qp_msg e = {.h = {.type = QP_ERROR, .req = m->h.req}};
			uint8_t buf[QP_HEADER_SIZE + QP_TEXT_MAX + 16];
			e.u.error.code = ESHUTDOWN;
			snprintf(e.u.error.message, sizeof(e.u.error.message),
				 "quaid at %s is shutting down", srv->addr);
			int n = qp_encode(&e, buf, sizeof(buf));
			if (n > 0)
				qf_send(srv->ep, p, buf, (size_t)n);
		}
		return;
	}
	if (m->h.type == QP_HELLO) {
		enqueue_locked(srv, NULL, peer, msg, len);
		pthread_mutex_unlock(&srv->mu);
		return;
	}
	if (!se) {
		pthread_mutex_unlock(&srv->mu);
		srv_log(srv, QSVC_LOG_DEBUG, "%s from a client without a session: ignored",
			qp_type_name(m->h.type));
		return;
	}
	se->last_rx_ns = srv_now_ns();
	switch (m->h.type) {
	case QP_PING: {
		pthread_mutex_unlock(&srv->mu);
		struct qp_msg p = {.h = {.type = QP_PONG, .req = m->h.req}};
		uint8_t buf[64];
		p.u.ping.stamp = m->u.ping.stamp;
		int n = qp_encode(&p, buf, sizeof(buf));
		if (n > 0)
			qf_send(srv->ep, peer, buf, (size_t)n); /* -EAGAIN: the next ping */
		return;
	}
	case QP_BYE:
		se->bye = 1;
		srv_kill_locked(se, "the client said goodbye");
		break;
	case QP_CREDIT:
		credit_locked(se, &m->u.credit);
		break;
	case QP_WELCOME:
	case QP_ERROR:
	case QP_PONG:
	case QP_LIST_REPLY:
	case QP_MANIFEST_REPLY:
	case QP_STAT_REPLY:
	case QP_STREAM_READY:
	case QP_STREAM_END:
	case QP_OK:
	case QP_XFER_READY:
	case QP_PUSH_HAVE:
		srv_kill_locked(se, "sent %s, which only a server sends", qp_type_name(m->h.type));
		break;
	default:
		enqueue_locked(srv, se, peer, msg, len);
		break;
	}
	pthread_mutex_unlock(&srv->mu);
}

static void on_done(void *arg, void *op_ctx, int status)
{
	(void)arg;
	struct srv_op *op = op_ctx;
	op->done(op, status);
}

static void on_send_error(void *arg, uint64_t peer, int status)
{
	struct qsrv *srv = arg;
	pthread_mutex_lock(&srv->mu);
	struct session *se = find_session_locked(srv, peer);
	if (se)
		srv_kill_locked(se, "the client is unreachable: %s", strerror(-status));
	pthread_mutex_unlock(&srv->mu);
}

/* ---- teardown ---------------------------------------------------------- */

static void session_free(struct qsrv *srv, struct session *se)
{
	/* No new work reaches it (dead); wait for what is queued or running. */
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
	srvx_close_all(se);
	pthread_mutex_lock(&srv->mu);
	while (se->refs)
		pthread_cond_wait(&srv->cv, &srv->mu);
	pthread_mutex_unlock(&srv->mu);
	/* A client that did not end the session itself hears why (request id
	 * 0: about the session), rather than waiting for its timeout. */
	if (!se->bye && !srv->stopping)
		srv_error(se, 0, -ECONNABORTED, "quaid at %s ended the session: %s", srv->addr,
			  se->why);
	srv_log(srv, QSVC_LOG_INFO,
		"session %" PRIu64 " (%s pid %" PRIu32 ") ended: %s; %" PRIu64 " bytes out", se->id,
		se->host, se->pid, se->why, se->bytes_out);
	/* The address may already serve a new session of the same client. */
	pthread_mutex_lock(&srv->mu);
	int shared = find_session_locked(srv, se->peer) != NULL;
	pthread_mutex_unlock(&srv->mu);
	srv_log(srv, QSVC_LOG_DEBUG, "session %" PRIu64 ": peer %" PRIu64 " %s", se->id, se->peer,
		shared ? "kept (another session uses it)" : "removed");
	if (!shared)
		qf_peer_remove(srv->ep, se->peer);
	free(se);
}

/* Unlinks and frees the sessions that ended or went silent. */
static void reap(struct qsrv *srv, int all)
{
	uint64_t idle = (uint64_t)srv->conf.idle_timeout * 1000000000ull;
	for (;;) {
		struct session *victim = NULL;
		pthread_mutex_lock(&srv->mu);
		/* Read the clock under the lock, each round: a session freed
		 * before may have taken long, and a message stamped since must
		 * not look as if it came from the future (an unsigned
		 * difference that wraps would call a busy client silent). */
		uint64_t now = srv_now_ns();
		for (struct session **pp = &srv->sessions; *pp; pp = &(*pp)->next) {
			struct session *se = *pp;
			if (!se->dead && now > se->last_rx_ns && now - se->last_rx_ns > idle)
				srv_kill_locked(se, "silent for %u s (idle_timeout)",
						srv->conf.idle_timeout);
			if (all)
				srv_kill_locked(se, "quaid is shutting down");
			if (se->dead) {
				*pp = se->next;
				srv->nsessions--;
				victim = se;
				break;
			}
		}
		pthread_mutex_unlock(&srv->mu);
		if (!victim)
			return;
		session_free(srv, victim);
	}
}

/* ---- the server object ------------------------------------------------- */

static int copy_conf(struct qsvc_conf *dst, const struct qsvc_conf *src)
{
	*dst = *src;
	dst->nroots = 0;
	dst->push_root = NULL;
	dst->log_file = NULL;
	dst->audit_log = NULL; /* opened by qsrv_new, not kept */
	dst->policy = NULL;    /* borrowed: srv->policy */
	for (unsigned i = 0; i < src->nroots; i++) {
		dst->roots[i] = strdup(src->roots[i]);
		if (!dst->roots[i])
			return -ENOMEM;
		dst->nroots++;
	}
	if (src->push_root && !(dst->push_root = strdup(src->push_root)))
		return -ENOMEM;
	if (src->log_file && !(dst->log_file = strdup(src->log_file)))
		return -ENOMEM;
	return 0;
}

/* The audit log was deleted or replaced under quaid (audit.h). */
static void audit_notice(void *arg, const char *msg)
{
	srv_log(arg, QSVC_LOG_WARNING, "%s", msg);
}

int qsrv_new(const struct qsvc_conf *conf, qsrv_log_fn log, void *log_arg, struct qsrv **ret,
	     char *err, size_t err_len)
{
	struct qsrv *srv = calloc(1, sizeof(*srv));
	char ferr[256];
	int r;
	if (!srv)
		return -ENOMEM;
	srv->stop_pipe[0] = srv->stop_pipe[1] = -1;
	pthread_mutex_init(&srv->mu, NULL);
	pthread_cond_init(&srv->cv, NULL);
	pthread_cond_init(&srv->wq_cv, NULL);
	pthread_mutex_init(&srv->log_mu, NULL);
	srv->log = log;
	srv->log_arg = log_arg;
	srv->started_ns = srv->rate_ns = srv_now_ns();
	r = copy_conf(&srv->conf, conf);
	if (r < 0)
		goto fail;
	srv->policy = conf->policy;
	if (conf->audit_log) {
		r = qaudit_open(conf->audit_log, &srv->audit, err, err_len);
		if (r < 0)
			goto fail_quiet;
		qaudit_set_notify(srv->audit, audit_notice, srv);
	}
	srv->rx = malloc(sizeof(*srv->rx));
	if (!srv->rx || pipe2(srv->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		r = srv->rx ? -errno : -ENOMEM;
		goto fail;
	}

	struct quai_ctx_opts co = {.size = sizeof(co),
				   .pinned_bytes = conf->pinned,
				   .workers = conf->workers,
				   .gpu = QUAI_GPU_NONE};
	r = quai_ctx_new(&co, &srv->ctx, err, err_len);
	if (r < 0)
		goto fail_quiet;
	srv->ctx->served = 1; /* its streams are decided and audited here */

	srv->h = (struct qf_handlers){
	    .on_msg = on_msg, .on_done = on_done, .on_send_error = on_send_error, .arg = srv};
	struct qf_opts fo = {.provider = conf->provider[0] ? conf->provider : NULL,
			     .node = conf->listen_node,
			     .service = conf->listen_service,
			     .msg_max = QP_MSG_MAX,
			     .rx_depth = 256,
			     .tx_depth = 256,
			     .h = &srv->h,
			     .server = true};
	r = qf_open(&fo, &srv->ep, ferr, sizeof(ferr));
	if (r < 0) {
		qerr_set(err, err_len, "cannot listen on %s:%s: %s", conf->listen_node,
			 conf->listen_service, ferr);
		goto fail_quiet;
	}
	struct quai_ctx_info ci = {.size = sizeof(ci)};
	quai_ctx_info(srv->ctx, &ci);
	r = qf_mr_reg(srv->ep, srv->ctx->pool_info.base, srv->ctx->pool_info.bytes, QF_LOCAL,
		      &srv->pool_mr);
	if (r < 0) {
		qerr_set(err, err_len, "cannot register the pinned pool with %s: %s",
			 qf_provider(srv->ep), strerror(-r));
		goto fail_quiet;
	}
	/* The address clients use: the port the endpoint really got. */
	uint8_t raw[QF_ADDR_MAX];
	size_t alen = sizeof(raw);
	snprintf(srv->addr, sizeof(srv->addr), "%s:%s", conf->listen_node, conf->listen_service);
	if (qf_name(srv->ep, raw, &alen) == 0 && alen >= 16 && raw[0] == 2 && raw[1] == 0) {
		/* struct sockaddr_in: family 2 (AF_INET), port, address. */
		snprintf(srv->addr, sizeof(srv->addr), "%u.%u.%u.%u:%u", raw[4], raw[5], raw[6],
			 raw[7], (unsigned)raw[2] << 8 | raw[3]);
	}
	srv->nsvc = SRV_SERVICE_THREADS;
	srv->svc = calloc(srv->nsvc, sizeof(*srv->svc));
	if (!srv->svc) {
		r = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < srv->nsvc; i++) {
		r = -pthread_create(&srv->svc[i], NULL, service_main, srv);
		if (r < 0) {
			srv->nsvc = i;
			qerr_set(err, err_len, "cannot start a thread: %s", strerror(-r));
			goto fail_quiet;
		}
	}
	*ret = srv;
	return 0;
fail:
	qerr_set(err, err_len, "%s", strerror(-r));
fail_quiet:
	qsrv_free(srv);
	return r;
}

int qsrv_run(struct qsrv *srv)
{
	struct pollfd pfd = {.fd = srv->stop_pipe[0], .events = POLLIN};
	for (;;) {
		int n = poll(&pfd, 1, 500);
		if (n > 0)
			break;
		reap(srv, 0);
		pthread_mutex_lock(&srv->mu);
		uint64_t now = srv_now_ns();
		if (now - srv->rate_ns >= 1000000000ull) {
			srv->rate_bps = (srv->bytes_served - srv->rate_bytes) * 1000000000ull /
					(now - srv->rate_ns);
			srv->rate_bytes = srv->bytes_served;
			srv->rate_ns = now;
		}
		pthread_mutex_unlock(&srv->mu);
	}
	srv_log(srv, QSVC_LOG_NOTICE, "stopping: ending every stream and transfer");
	pthread_mutex_lock(&srv->mu);
	srv->stopping = 1;
	for (struct session *se = srv->sessions; se; se = se->next)
		for (struct sstream *st = se->streams; st; st = st->next)
			__atomic_store_n(&st->cancel, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&srv->cv);
	pthread_cond_broadcast(&srv->wq_cv);
	for (struct session *se = srv->sessions; se; se = se->next)
		se->refs++; /* only this thread frees sessions; the refs keep them */
	pthread_mutex_unlock(&srv->mu);
	/* Every client hears why, on the session itself (request id 0). */
	for (struct session *se = srv->sessions; se; se = se->next) {
		if (!se->dead)
			srv_error(se, 0, -ESHUTDOWN, "quaid at %s is shutting down", srv->addr);
		pthread_mutex_lock(&srv->mu);
		se->refs--;
		pthread_cond_broadcast(&srv->cv);
		pthread_mutex_unlock(&srv->mu);
	}
	/* Pumps see `stopping`, tell their clients, and end; then every
	 * session goes. */
	reap(srv, 1);
	return 0;
}

void qsrv_stop(struct qsrv *srv)
{
	char c = 1;
	if (srv && srv->stop_pipe[1] >= 0) {
		ssize_t n = write(srv->stop_pipe[1], &c, 1);
		(void)n;
	}
}

void qsrv_reload(struct qsrv *srv)
{
	/* Datasets are looked up on every request: nothing is cached to drop.
	 * The audit log is reopened, for rotation. */
	char err[512];
	if (srv->audit && qaudit_reopen(srv->audit, err, sizeof(err)) < 0)
		srv_log(srv, QSVC_LOG_ERROR,
			"cannot reopen the audit log: %s (still writing to "
			"the old one)",
			err);
	srv_log(srv, QSVC_LOG_INFO, "reloaded: %sdatasets are found afresh on every request",
		srv->audit ? "audit log reopened, " : "");
}

const char *qsrv_address(const struct qsrv *srv)
{
	return srv->addr;
}

void qsrv_free(struct qsrv *srv)
{
	if (!srv)
		return;
	pthread_mutex_lock(&srv->mu);
	srv->stopping = 1;
	pthread_cond_broadcast(&srv->cv);
	pthread_cond_broadcast(&srv->wq_cv);
	pthread_mutex_unlock(&srv->mu);
	if (srv->ep)
		reap(srv, 1);
	for (unsigned i = 0; i < srv->nsvc; i++)
		pthread_join(srv->svc[i], NULL);
	free(srv->svc);
	while (srv->wq_head) {
		struct work *w = srv->wq_head;
		srv->wq_head = w->next;
		free(w);
	}
	qf_mr_close(srv->pool_mr);
	qf_close(srv->ep);
	quai_ctx_free(srv->ctx);
	qaudit_close(srv->audit);
	for (unsigned i = 0; i < srv->conf.nroots; i++)
		free(srv->conf.roots[i]);
	free(srv->conf.push_root);
	free(srv->conf.log_file);
	free(srv->rx);
	if (srv->stop_pipe[0] >= 0)
		close(srv->stop_pipe[0]);
	if (srv->stop_pipe[1] >= 0)
		close(srv->stop_pipe[1]);
	pthread_mutex_destroy(&srv->mu);
	pthread_cond_destroy(&srv->cv);
	pthread_cond_destroy(&srv->wq_cv);
	pthread_mutex_destroy(&srv->log_mu);
	free(srv);
}
