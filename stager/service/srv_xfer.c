/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quaid's pulls and pushes (docs/PROTOCOL.md "Transfers"): whole files of
 * a dataset, moved by RMA in chunks, so that a client can copy a dataset
 * out, or send one in, resumably and verified.
 *
 * A pull serves exactly the files its manifest names (manifest.json, every
 * shard and index). Each READ is read from disk into a block of the pinned
 * pool on the service thread that handles it, then RMA-written into the
 * client's slot with (tag, slot) as completion data; the block goes back
 * to the pool when the write completes.
 *
 * A push lands in push_root/.NAME.quai-partial, flocked for as long as the
 * transfer is open. Each PUT is RMA-read from the client into a pool block;
 * its completion hands the block to the transfer's writer thread (never
 * disk I/O on the progress thread), which writes the chunks of each file
 * strictly in order: a chunk that arrives before its predecessor waits for
 * it. So every file in the partial is always a hole-free prefix of the
 * real file, and its size says exactly what a resumed push still has to
 * send, even after a crash of the client or of quaid. COMMIT checks every
 * checksum (quai_verify) before the partial is renamed into place.
 *
 * Locking: srv->mu guards every transfer's state, as it guards streams.
 * A transfer is referenced (refs) by the service threads working on it,
 * and its RMA operations (rma) reference it until they complete; it is
 * freed only when both are gone.
 */
#include "srv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "beneath.h"
#include "dataset.h"
#include "fsutil.h"
#include "manifest.h"
#include "policy.h"

#define SX_MAX_CHUNK (4u << 20)
#define SX_MAX_INFLIGHT 8u
/* Chunks a transfer has: one per block (SX_MAX_INFLIGHT at most), and as
 * many again that are being answered after their block went back. */
#define SX_CHUNKS (2 * SX_MAX_INFLIGHT)
#define SX_POOL_WAIT_NS (10ull * 1000000000ull)
#define SX_DRAIN_WAIT_NS (10ull * 1000000000ull)
#define SX_MANIFEST "manifest.json"
/* The manifest of an unfinished transfer: it names the dataset the files
 * of the partial directory belong to, and becomes manifest.json only when
 * every other file is whole, so the partial never looks like a dataset. */
#define SX_MANIFEST_TMP "manifest.json.tmp"

struct sxfile {
	char name[QMF_SHARD_NAME_LEN];
	uint64_t size;	      /* what the manifest says */
	int fd;		      /* -1 until first used */
	uint64_t next;	      /* push: bytes written, from 0, without a hole */
	struct sxchunk *held; /* push: chunks waiting for `next`, by offset */
};

/* One READ or PUT: a pool block and the RMA operation that moves it. */
struct sxchunk {
	struct srv_op op;
	struct sxfer *x;
	struct sxfile *f; /* NULL: the manifest of a push */
	uint64_t req;
	uint64_t off;
	uint32_t len;
	uint8_t *buf;
	int status;
	struct sxchunk *next;
};

/* A transfer's life. Its transitions are sx_move_locked()'s table. */
enum sx_state {
	SX_NEED_RING,	  /* a pull, before its SLOTS */
	SX_SERVING,	  /* a pull with its ring: READs are served */
	SX_NEED_MANIFEST, /* a push, before the whole manifest.json */
	SX_RECEIVING,	  /* a push with its manifest: PUTs of its files */
	SX_COMMITTING,	  /* a COMMIT runs: no PUT is taken */
	SX_COMMITTED,	  /* published */
	SX_CLOSING,	  /* being torn down: no new request; RMA drains, and
			     the writer still writes what was read */
	SX_DRAINED,	  /* nothing is on the wire: the writer ends once its
			     queue is empty */
};

struct sxfer {
	struct session *se;
	uint64_t id;
	uint32_t tag;
	int push;
	int sensitive;
	char name[QP_NAME_MAX + 1];
	char dir[PATH_MAX];  /* pull: the dataset; push: the partial directory */
	char dest[PATH_MAX]; /* push: where COMMIT publishes it */
	int dfd;	     /* dir; a push holds its flock */
	uint32_t max_chunk, max_inflight;
	uint64_t mem; /* accounted to the session */
	struct sxfile *files;
	uint32_t nfiles;

	enum sx_state state;

	/* pull */
	uint32_t nslots;
	uint64_t slot_bytes, raddr, rkey;

	/* push */
	uint64_t manifest_len;
	uint8_t classification;
	char zone[QP_ZONE_MAX + 1];
	uint8_t *mtext;
	uint64_t mgot;
	uint32_t have_cursor; /* PUSH_STATUS pages */
	struct sxchunk *wq_head, *wq_tail;
	pthread_t writer; /* a push has one from its link into the session on */
	int werr;	  /* a write failed: every later PUT fails with it */
	char werr_msg[QP_TEXT_MAX + 1];

	unsigned refs;		/* service threads using it */
	unsigned rma;		/* RMA operations posted, not completed */
	unsigned nbuf;		/* pool blocks held */
	struct sxchunk *chunks; /* SX_CHUNKS, made with the transfer: no READ
				   or PUT allocates one */
	struct sxchunk *spare;	/* those not in use */
	unsigned queued;	/* push: chunks read, not yet written */
	struct sxfer *next;
};

/* ---- small helpers ----------------------------------------------------- */

/* Moves x to `to` when its table allows it. Returns the state it was in,
 * or -1 (and x stays) when the move is not one of its transitions. Under
 * srv->mu. */
static int sx_move_locked(struct sxfer *x, enum sx_state to)
{
	static const unsigned short allowed[SX_DRAINED + 1] = {
	    [SX_NEED_RING] = 1u << SX_SERVING | 1u << SX_CLOSING,
	    [SX_SERVING] = 1u << SX_CLOSING,
	    [SX_NEED_MANIFEST] = 1u << SX_RECEIVING | 1u << SX_CLOSING,
	    [SX_RECEIVING] = 1u << SX_COMMITTING | 1u << SX_CLOSING,
	    [SX_COMMITTING] = 1u << SX_RECEIVING | 1u << SX_COMMITTED,
	    [SX_COMMITTED] = 1u << SX_CLOSING,
	    [SX_CLOSING] = 1u << SX_DRAINED,
	    [SX_DRAINED] = 0,
	};
	enum sx_state from = x->state;
	if (!(allowed[from] & 1u << to))
		return -1;
	x->state = to;
	pthread_cond_broadcast(&x->se->srv->cv);
	return (int)from;
}

/* Whether a push has its whole manifest (and so its list of files). */
static int has_manifest(enum sx_state st)
{
	return st == SX_RECEIVING || st == SX_COMMITTING || st == SX_COMMITTED;
}

static void timed_wait(struct qsrv *srv, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)ms * 1000000L;
	while (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&srv->cv, &srv->mu, &ts);
}

static struct sxfile *find_file(struct sxfer *x, const char *name)
{
	for (uint32_t i = 0; i < x->nfiles; i++)
		if (strcmp(x->files[i].name, name) == 0)
			return &x->files[i];
	return NULL;
}

/* The transfer `id` of the session, referenced; NULL when there is none
 * (or it is closing). Under srv->mu. */
static struct sxfer *get_locked(struct session *se, uint64_t id)
{
	for (struct sxfer *x = se->xfers; x; x = x->next)
		if (x->id == id && x->state < SX_CLOSING) {
			x->refs++;
			return x;
		}
	return NULL;
}

static struct sxfer *get(struct session *se, uint64_t id)
{
	pthread_mutex_lock(&se->srv->mu);
	struct sxfer *x = get_locked(se, id);
	pthread_mutex_unlock(&se->srv->mu);
	return x;
}

static void put(struct sxfer *x)
{
	struct qsrv *srv = x->se->srv;
	pthread_mutex_lock(&srv->mu);
	x->refs--;
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
}

/* Whether work on x should stop. Under srv->mu. */
static int stopping_locked(struct sxfer *x)
{
	return x->state >= SX_CLOSING || x->se->dead || x->se->srv->stopping;
}

/* The provider refused an RMA for now (-EAGAIN: its queue is full): waits
 * a little for the fabric to make progress, so that the caller tries
 * again; 1 instead, at once, when the transfer is stopping. */
static int busy_wait(struct qsrv *srv, struct sxfer *x)
{
	pthread_mutex_lock(&srv->mu);
	int stop = stopping_locked(x);
	pthread_mutex_unlock(&srv->mu);
	if (!stop)
		qf_wait_progress(srv->ep, 100);
	return stop;
}

/* A chunk of the transfer's own, with a pool block of len bytes: at most
 * max_inflight blocks per transfer, and, when the pool is full, waiting a
 * while for other streams and transfers to give blocks back. Nothing is
 * allocated but the pool block. Returns 0, -ENOBUFS or -ECANCELED. */
static int take_chunk(struct sxfer *x, uint32_t len, struct sxchunk **ret)
{
	struct qsrv *srv = x->se->srv;
	uint64_t t0 = srv_now_ns();
	int r;
	pthread_mutex_lock(&srv->mu);
	for (;;) {
		if (stopping_locked(x)) {
			r = -ECANCELED;
			break;
		}
		/* The client counts a READ done when its bytes land, a moment
		 * before the write completes here: wait for that moment rather
		 * than refuse. */
		if (x->nbuf < x->max_inflight && x->spare) {
			uint8_t *buf;
			r = qpool_alloc(srv->ctx->pool, len, (void **)&buf);
			if (r == 0) {
				struct sxchunk *c = x->spare;
				x->spare = c->next;
				*c = (struct sxchunk){.x = x, .len = len, .buf = buf};
				x->nbuf++;
				*ret = c;
				break;
			}
			if (r != -ENOMEM || srv_now_ns() - t0 > SX_POOL_WAIT_NS) {
				r = -ENOBUFS;
				break;
			}
		}
		timed_wait(srv, 50);
	}
	pthread_mutex_unlock(&srv->mu);
	return r;
}

/* Gives a chunk's block back; a sensitive dataset's bytes are wiped first. */
static void give_block_locked(struct sxfer *x, struct sxchunk *c)
{
	if (!c->buf)
		return;
	if (x->sensitive)
		explicit_bzero(c->buf, c->len);
	qpool_release(x->se->srv->ctx->pool, c->buf);
	c->buf = NULL;
	x->nbuf--;
	pthread_cond_broadcast(&x->se->srv->cv);
}

/* Gives a chunk back, block and all: c is no longer valid. */
static void drop_chunk_locked(struct sxfer *x, struct sxchunk *c)
{
	give_block_locked(x, c);
	c->next = x->spare;
	x->spare = c;
	pthread_cond_broadcast(&x->se->srv->cv);
}

static void drop_chunk(struct sxfer *x, struct sxchunk *c)
{
	pthread_mutex_lock(&x->se->srv->mu);
	drop_chunk_locked(x, c);
	pthread_mutex_unlock(&x->se->srv->mu);
}

/* Reserves the transfer's blocks against the client's share of the pool,
 * fewer of them when the share is short. Returns 0 or -ENOBUFS. */
static int reserve(struct sxfer *x)
{
	struct session *se = x->se;
	struct qsrv *srv = se->srv;
	size_t rma = qf_max_rma(srv->ep);
	x->max_chunk = SX_MAX_CHUNK;
	if (rma && rma < x->max_chunk)
		x->max_chunk = (uint32_t)(rma / QPOOL_ALIGN * QPOOL_ALIGN);
	if (x->max_chunk < QPOOL_ALIGN)
		x->max_chunk = QPOOL_ALIGN;
	pthread_mutex_lock(&srv->mu);
	uint64_t left = srv->conf.client_memory - se->mem_used;
	x->max_inflight = SX_MAX_INFLIGHT;
	while (x->max_inflight > 1 && (uint64_t)x->max_inflight * x->max_chunk > left)
		x->max_inflight--;
	while (x->max_chunk > 64 * 1024 && x->max_chunk > left)
		x->max_chunk /= 2;
	int r = srv_mem_take_locked(se, (uint64_t)x->max_inflight * x->max_chunk);
	if (r == 0)
		x->mem = (uint64_t)x->max_inflight * x->max_chunk;
	pthread_mutex_unlock(&srv->mu);
	return r;
}

static struct sxfer *xfer_new(struct session *se, uint32_t tag, int push, const char *name)
{
	struct sxfer *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->chunks = calloc(SX_CHUNKS, sizeof(*x->chunks));
	if (!x->chunks) {
		free(x);
		return NULL;
	}
	for (unsigned i = 0; i < SX_CHUNKS; i++) {
		x->chunks[i].next = x->spare;
		x->spare = &x->chunks[i];
	}
	x->se = se;
	x->tag = tag;
	x->push = push;
	x->state = push ? SX_NEED_MANIFEST : SX_NEED_RING;
	x->dfd = -1;
	snprintf(x->name, sizeof(x->name), "%s", name);
	return x;
}

static void close_files(struct sxfer *x)
{
	for (uint32_t i = 0; i < x->nfiles; i++)
		if (x->files[i].fd >= 0) {
			close(x->files[i].fd);
			x->files[i].fd = -1;
		}
}

/* Frees what a transfer holds; its operations are over and its writer
 * stopped. Closing the directory drops a push's flock: the partial stays
 * for a resumed push. */
static void xfer_release(struct sxfer *x)
{
	struct qsrv *srv = x->se->srv;
	pthread_mutex_lock(&srv->mu);
	while (x->wq_head) {
		struct sxchunk *c = x->wq_head;
		x->wq_head = c->next;
		drop_chunk_locked(x, c);
	}
	for (uint32_t i = 0; i < x->nfiles; i++)
		while (x->files[i].held) {
			struct sxchunk *c = x->files[i].held;
			x->files[i].held = c->next;
			drop_chunk_locked(x, c);
		}
	srv_mem_give_locked(x->se, x->mem);
	x->mem = 0;
	pthread_mutex_unlock(&srv->mu);
	close_files(x);
	if (x->dfd >= 0)
		close(x->dfd);
	free(x->files);
	free(x->mtext);
	free(x->chunks);
	free(x);
}

/* Stops a transfer that is unlinked from its session: waits for the
 * service threads working on it and for its RMA operations, stops its
 * writer, and frees it. */
static void xfer_free(struct sxfer *x)
{
	struct qsrv *srv = x->se->srv;
	pthread_mutex_lock(&srv->mu);
	/* A COMMIT under way ends first (its service thread holds a
	 * reference anyway), so that what it did is known: published or not. */
	while (x->state == SX_COMMITTING)
		pthread_cond_wait(&srv->cv, &srv->mu);
	int was = sx_move_locked(x, SX_CLOSING);
	pthread_cond_broadcast(&srv->cv);
	while (x->refs)
		pthread_cond_wait(&srv->cv, &srv->mu);
	/* Operations still on the wire read or write its blocks: they
	 * complete (or fail) before any block is given back. */
	uint64_t t0 = srv_now_ns();
	while (x->rma && !srv_overdue(srv, t0, SX_DRAIN_WAIT_NS))
		timed_wait(srv, 100);
	int stuck = x->rma != 0;
	sx_move_locked(x, SX_DRAINED);
	pthread_mutex_unlock(&srv->mu);
	/* Only a push that has its writer comes here (a push whose writer
	 * could not start is released before it is linked). */
	if (x->push)
		pthread_join(x->writer, NULL);
	if (stuck) {
		srv_log(srv, QSVC_LOG_WARNING,
			"session %" PRIu64 ": transfer %" PRIu64 ": %u RMA operations never "
			"completed; leaving their memory aside",
			x->se->id, x->id, x->rma);
		return;
	}
	srv_log(srv, QSVC_LOG_INFO, "session %" PRIu64 ": %s of %s closed%s", x->se->id,
		x->push ? "push" : "pull", x->name,
		x->push && was != SX_COMMITTED ? " (the partial stays for a resumed push)" : "");
	xfer_release(x);
}

/* Links a new transfer into its session, unless the session died
 * meanwhile (then srvx_close_all has run or will not see it). */
static int link_xfer(struct session *se, struct sxfer *x)
{
	struct qsrv *srv = se->srv;
	pthread_mutex_lock(&srv->mu);
	if (se->dead || srv->stopping) {
		pthread_mutex_unlock(&srv->mu);
		return -ECANCELED;
	}
	x->id = ++srv->next_id;
	x->next = se->xfers;
	se->xfers = x;
	pthread_mutex_unlock(&srv->mu);
	return 0;
}

static int send_ready(struct session *se, uint64_t req, struct sxfer *x)
{
	struct qp_msg m = {.h = {.type = QP_XFER_READY, .req = req}};
	m.u.xfer_ready.xfer = x->id;
	m.u.xfer_ready.max_chunk = x->max_chunk;
	m.u.xfer_ready.max_inflight = x->max_inflight;
	return srv_send(se, &m);
}

/* ---- pull -------------------------------------------------------------- */

/* Bytes of a dataset's shard indexes. */
static uint64_t mf_index_bytes(const struct qmf *mf)
{
	uint64_t n = 0;
	for (uint32_t i = 0; i < mf->nshards; i++)
		n += mf->shards[i].index_bytes;
	return n;
}

void srvx_pull_open(struct session *se, const struct qp_msg *m)
{
	struct qsrv *srv = se->srv;
	const struct qp_pull_open *po = &m->u.pull_open;
	char path[PATH_MAX], perr[256];
	uint8_t *text = NULL;
	size_t len = 0;
	struct qmf mf;
	int r = srv_dataset_path(srv, po->name, path, sizeof(path));
	if (r < 0) {
		srv_error(se, m->h.req, r == -EINVAL ? -EINVAL : -ENOENT,
			  r == -EINVAL ? "'%s' is not a dataset name" : "no dataset '%s' here",
			  po->name);
		return;
	}
	struct sxfer *x = xfer_new(se, po->tag, 0, po->name);
	if (!x) {
		srv_error(se, m->h.req, -ENOMEM, "out of memory");
		return;
	}
	snprintf(x->dir, sizeof(x->dir), "%s", path);
	/* The directory stays open: what is served is what was opened, even
	 * if the name is moved meanwhile. */
	x->dfd = qfs_open_dataset_dir(AT_FDCWD, path);
	r = x->dfd < 0 ? x->dfd : qfs_read_file(x->dfd, SX_MANIFEST, QMF_MAX_BYTES, &text, &len);
	if (r < 0) {
		srv_error(se, m->h.req, r, "%s/%s: %s", po->name, SX_MANIFEST, strerror(-r));
		goto fail;
	}
	r = qmf_parse((const char *)text, len, &mf, perr, sizeof(perr));
	if (r < 0) {
		free(text);
		srv_error(se, m->h.req, r, "%s/%s: %s", po->name, SX_MANIFEST, perr);
		goto fail;
	}
	char lerr[1200];
	r = srv_label(srv, x->dfd, &mf, (const char *)text, len, lerr, sizeof(lerr));
	free(text);
	if (r < 0) {
		qmf_release(&mf);
		srv_error(se, m->h.req, r, "%s", lerr);
		goto fail;
	}
	r = qds_check_files(x->dfd, &mf, perr, sizeof(perr));
	if (r < 0) {
		qmf_release(&mf);
		srv_error(se, m->h.req, r, "%s/%s", po->name, perr);
		goto fail;
	}
	if (!srv_authorize(se, m->h.req, QPOL_PULL, "pull", po->name, mf.classification, mf.zone,
			   (int64_t)(len + mf.compressed_bytes + mf_index_bytes(&mf)))) {
		qmf_release(&mf);
		goto fail;
	}
	x->sensitive = mf.classification == QUAI_CLASS_SENSITIVE;
	x->nfiles = 1 + 2 * mf.nshards;
	x->files = calloc(x->nfiles, sizeof(*x->files));
	if (!x->files) {
		qmf_release(&mf);
		srv_error(se, m->h.req, -ENOMEM, "out of memory");
		goto fail;
	}
	snprintf(x->files[0].name, sizeof(x->files[0].name), "%s", SX_MANIFEST);
	x->files[0].size = len;
	x->files[0].fd = -1;
	for (uint32_t i = 0; i < mf.nshards; i++) {
		struct sxfile *fs = &x->files[1 + 2 * i], *fi = fs + 1;
		snprintf(fs->name, sizeof(fs->name), "%s", mf.shards[i].file);
		fs->size = mf.shards[i].compressed_bytes;
		fs->fd = -1;
		snprintf(fi->name, sizeof(fi->name), "%s", mf.shards[i].index);
		fi->size = mf.shards[i].index_bytes;
		fi->fd = -1;
	}
	qmf_release(&mf);
	r = reserve(x);
	if (r < 0) {
		srv_error(se, m->h.req, -ENOBUFS,
			  "a pull needs at least %u KiB of quaid's pinned memory; this client has "
			  "%" PRIu64 " MiB (client_memory) and holds %" PRIu64 " MiB",
			  x->max_chunk >> 10, srv->conf.client_memory >> 20, se->mem_used >> 20);
		goto fail;
	}
	if (link_xfer(se, x) < 0)
		goto fail;
	srv_log(srv, QSVC_LOG_INFO,
		"session %" PRIu64 " (%s pid %" PRIu32 "): pull %" PRIu64 " of %s, %u files",
		se->id, se->host, se->pid, x->id, x->name, x->nfiles);
	send_ready(se, m->h.req, x);
	return;
fail:
	xfer_release(x);
}

int srvx_slots(struct session *se, const struct qp_msg *m)
{
	const struct qp_slots *sl = &m->u.slots;
	struct qsrv *srv = se->srv;
	const char *bad = NULL;
	pthread_mutex_lock(&srv->mu);
	struct sxfer *x = get_locked(se, sl->id);
	if (!x) {
		pthread_mutex_unlock(&srv->mu);
		return -ENOENT;
	}
	if (x->push)
		bad = "a push has no slots: quaid reads from the client's buffers";
	else if (x->state != SX_NEED_RING)
		bad = "the transfer has its slots already";
	else if (sl->nslots == 0 || sl->nslots > QP_SLOTS_MAX)
		bad = "a ring holds 1 to 65536 slots";
	else if (sl->slot_bytes == 0 || sl->slot_bytes > UINT64_MAX / sl->nslots)
		bad = "the slots have no room";
	if (!bad) {
		sx_move_locked(x, SX_SERVING);
		x->nslots = sl->nslots;
		x->slot_bytes = sl->slot_bytes;
		x->raddr = sl->addr;
		x->rkey = sl->key;
	}
	x->refs--;
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
	if (bad)
		srv_error(se, m->h.req, -EINVAL, "SLOTS for transfer %" PRIu64 ": %s", sl->id, bad);
	else
		srv_ok(se, m->h.req);
	return 0;
}

static void read_done(struct srv_op *op, int status)
{
	struct sxchunk *c = (struct sxchunk *)op;
	struct sxfer *x = c->x;
	struct session *se = x->se;
	struct qsrv *srv = se->srv;
	pthread_mutex_lock(&srv->mu);
	x->rma--;
	/* The client waits for the landing, which will never come: only the
	 * end of the session tells it (a failed write means the client's
	 * memory or the connection went away anyway). */
	if (status < 0)
		srv_kill_locked(se, "writing %s of %s to the client failed: %s", c->f->name,
				x->name, strerror(-status));
	drop_chunk_locked(x, c);
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
}

/* Opens (once) a file of the transfer's directory. Under no lock: two
 * threads may race to open it, and one keeps its descriptor. */
static int file_fd(struct sxfer *x, struct sxfile *f, int flags)
{
	struct qsrv *srv = x->se->srv;
	pthread_mutex_lock(&srv->mu);
	int fd = f->fd;
	pthread_mutex_unlock(&srv->mu);
	if (fd >= 0)
		return fd;
	fd = qfs_open_member(x->dfd, f->name, flags, 0644);
	if (fd < 0)
		return fd;
	pthread_mutex_lock(&srv->mu);
	if (f->fd >= 0) {
		close(fd);
		fd = f->fd;
	} else {
		f->fd = fd;
	}
	pthread_mutex_unlock(&srv->mu);
	return fd;
}

void srvx_read(struct session *se, const struct qp_msg *m)
{
	const struct qp_read *rd = &m->u.read;
	struct qsrv *srv = se->srv;
	struct sxfer *x = get(se, rd->xfer);
	struct sxchunk *c;
	int r;
	if (!x) {
		srv_error(se, m->h.req, -ENOENT, "no transfer %" PRIu64, rd->xfer);
		return;
	}
	if (x->push) {
		srv_error(se, m->h.req, -EINVAL, "READ of a push: use PUT");
		goto out;
	}
	struct sxfile *f = find_file(x, rd->file);
	if (!f) {
		srv_error(se, m->h.req, -ENOENT, "'%s' is not a file of dataset %s", rd->file,
			  x->name);
		goto out;
	}
	pthread_mutex_lock(&srv->mu);
	enum sx_state state = x->state;
	pthread_mutex_unlock(&srv->mu);
	if (state == SX_NEED_RING) {
		srv_error(se, m->h.req, -EPROTO, "READ before SLOTS");
		goto out;
	}
	if (rd->len == 0 || rd->len > x->max_chunk || rd->len > x->slot_bytes ||
	    rd->slot >= x->nslots || rd->offset > f->size || rd->len > f->size - rd->offset) {
		srv_error(se, m->h.req, -EINVAL,
			  "READ of %s [%" PRIu64 ", +%" PRIu32 ") into slot %" PRIu32
			  ": outside the file (%" PRIu64 " bytes), the chunk limit (%" PRIu32
			  ") or the ring (%" PRIu32 " slots of %" PRIu64 " bytes)",
			  rd->file, rd->offset, rd->len, rd->slot, f->size, x->max_chunk, x->nslots,
			  x->slot_bytes);
		goto out;
	}
	r = take_chunk(x, rd->len, &c);
	if (r == -ECANCELED)
		goto out;
	if (r < 0) {
		srv_error(se, m->h.req, r, "quaid's pinned pool is full: try again later");
		goto out;
	}
	int fd = file_fd(x, f, O_RDONLY);
	ssize_t n = fd < 0 ? fd : qfs_pread_full(fd, c->buf, rd->len, rd->offset);
	if (n < 0 || (size_t)n < rd->len) {
		drop_chunk(x, c);
		if (n < 0)
			srv_error(se, m->h.req, (int)n, "%s/%s: read error: %s", x->name, f->name,
				  strerror((int)-n));
		else
			srv_error(se, m->h.req, -EIO,
				  "%s/%s: the file ends at %" PRIu64 ", before the %" PRIu64
				  " bytes its manifest says",
				  x->name, f->name, rd->offset + (uint64_t)n, f->size);
		goto out;
	}
	c->op.done = read_done;
	c->f = f;
	c->req = m->h.req;
	c->off = rd->offset;
	struct qf_iov iov = {c->buf, rd->len, srv->pool_mr};
	uint64_t raddr = x->raddr + (uint64_t)rd->slot * x->slot_bytes;
	uint32_t data = qp_cq_data(x->tag, rd->slot);
	pthread_mutex_lock(&srv->mu);
	x->rma++;
	pthread_mutex_unlock(&srv->mu);
	while ((r = qf_write(srv->ep, se->peer, &iov, 1, raddr, x->rkey, data, &c->op)) ==
		   -EAGAIN &&
	       !busy_wait(srv, x))
		;
	if (r < 0) {
		pthread_mutex_lock(&srv->mu);
		x->rma--;
		drop_chunk_locked(x, c);
		pthread_mutex_unlock(&srv->mu);
		if (r != -EAGAIN)
			srv_error(se, m->h.req, r, "%s/%s: cannot write to the client: %s", x->name,
				  f->name, strerror(-r));
		goto out;
	}
	pthread_mutex_lock(&srv->mu);
	se->bytes_out += rd->len;
	srv->bytes_served += rd->len;
	pthread_mutex_unlock(&srv->mu);
out:
	put(x);
}

/* ---- push: the writer -------------------------------------------------- */

/* Replies to a PUT, unless nobody listens any more (a reply to a dead
 * session would only wait out the send timeout). */
static void put_reply(struct sxfer *x, uint64_t req, int err, const char *msg)
{
	struct qsrv *srv = x->se->srv;
	pthread_mutex_lock(&srv->mu);
	int gone = x->se->dead;
	pthread_mutex_unlock(&srv->mu);
	if (gone)
		return;
	if (err < 0)
		srv_error(x->se, req, err, "%s", msg);
	else
		srv_ok(x->se, req);
}

/* Removes every file of the partial directory but `keep`. */
static int clear_partial(struct sxfer *x, const char *keep)
{
	return qfs_partial_clear(x->dfd, keep);
}

/* The whole manifest is in: check it against PUSH_OPEN, decide whether the
 * partial's files belong to it, and set up the files. Writer thread. */
static int manifest_complete(struct sxfer *x, char *msg, size_t msg_len)
{
	char perr[256];
	struct qmf mf;
	int r = qmf_parse((const char *)x->mtext, x->manifest_len, &mf, perr, sizeof(perr));
	if (r < 0) {
		snprintf(msg, msg_len, "%s/%s: %s", x->name, SX_MANIFEST, perr);
		return r;
	}
	const char *bad = NULL;
	if (strcmp(mf.name, x->name) != 0)
		bad = "name";
	else if (mf.classification != x->classification)
		bad = "classification";
	else if (strcmp(mf.zone, x->zone) != 0)
		bad = "zone";
	if (bad) {
		snprintf(msg, msg_len,
			 "%s/%s: its %s (dataset '%s', %s, zone %s) is not what PUSH_OPEN said "
			 "('%s', %s, zone %s)",
			 x->name, SX_MANIFEST, bad, mf.name, quai_class_name(mf.classification),
			 mf.zone, x->name, quai_class_name(x->classification), x->zone);
		qmf_release(&mf);
		return -EINVAL;
	}
	/* What a partial holds belongs to the manifest it has: the same one
	 * means a resumed push; any other, a different dataset. */
	uint8_t *old = NULL;
	size_t old_len = 0;
	int same = 0;
	if (qfs_read_file(x->dfd, SX_MANIFEST_TMP, QMF_MAX_BYTES, &old, &old_len) == 0 ||
	    qfs_read_file(x->dfd, SX_MANIFEST, QMF_MAX_BYTES, &old, &old_len) == 0) {
		same = old_len == x->manifest_len && memcmp(old, x->mtext, old_len) == 0;
		free(old);
	}
	if (!same) {
		r = clear_partial(x, NULL);
		if (r == 0)
			r = qfs_write_file(x->dfd, SX_MANIFEST_TMP, x->mtext, x->manifest_len);
		if (r == 0 && fsync(x->dfd) < 0)
			r = -errno;
		if (r < 0) {
			snprintf(msg, msg_len, "push_root: %s writing %s of %s", strerror(-r),
				 SX_MANIFEST, x->name);
			qmf_release(&mf);
			return r;
		}
	}
	struct sxfile *files = calloc(2 * (size_t)mf.nshards, sizeof(*files));
	if (!files) {
		qmf_release(&mf);
		snprintf(msg, msg_len, "out of memory");
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < 2 * mf.nshards; i++) {
		struct sxfile *f = &files[i];
		const struct qmf_shard *s = &mf.shards[i / 2];
		snprintf(f->name, sizeof(f->name), "%s", i % 2 ? s->index : s->file);
		f->size = i % 2 ? s->index_bytes : s->compressed_bytes;
		f->fd = -1;
		struct stat st;
		if (same && fstatat(x->dfd, f->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			/* A file larger than the manifest says is not the one wanted. */
			if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > f->size)
				unlinkat(x->dfd, f->name, 0);
			else
				f->next = (uint64_t)st.st_size;
		}
	}
	uint32_t nfiles = 2 * mf.nshards;
	qmf_release(&mf);
	struct qsrv *srv = x->se->srv;
	pthread_mutex_lock(&srv->mu);
	x->files = files;
	x->nfiles = nfiles;
	sx_move_locked(x, SX_RECEIVING);
	pthread_mutex_unlock(&srv->mu);
	return 0;
}

/* From now on every PUT of the transfer fails with this. Writer thread. */
static void set_werr(struct sxfer *x, int err, const char *msg)
{
	struct qsrv *srv = x->se->srv;
	snprintf(x->werr_msg, sizeof(x->werr_msg), "%s", msg);
	pthread_mutex_lock(&srv->mu);
	x->werr = err;
	pthread_mutex_unlock(&srv->mu);
}

/* A PUT's chunk is through (written, or failed with r and msg): it goes
 * back to the transfer, and the client hears how it went. Writer thread. */
static void chunk_written(struct sxfer *x, struct sxchunk *c, int r, const char *msg)
{
	struct qsrv *srv = x->se->srv;
	pthread_mutex_lock(&srv->mu);
	uint64_t req = c->req;
	x->queued--;
	if (r == 0)
		x->se->bytes_in += c->len;
	drop_chunk_locked(x, c);
	pthread_mutex_unlock(&srv->mu);
	put_reply(x, req, r, msg);
}

/* Writes what can be written of f: its held chunks from `next` on. */
static void write_held(struct sxfer *x, struct sxfile *f)
{
	struct qsrv *srv = x->se->srv;
	char msg[QP_TEXT_MAX + 1];
	for (;;) {
		struct sxchunk *c = f->held;
		if (!c || c->off > f->next)
			return;
		f->held = c->next;
		int r = x->werr;
		if (r < 0) {
			snprintf(msg, sizeof(msg), "%s", x->werr_msg);
		} else {
			int fd = file_fd(x, f, O_WRONLY | O_CREAT);
			r = fd < 0 ? fd : qfs_pwrite_all(fd, c->buf, c->len, c->off);
			if (r < 0) {
				snprintf(msg, sizeof(msg), "push_root: %s writing %s", strerror(-r),
					 f->name);
				/* The chunks after this one can never follow it. */
				set_werr(x, r, msg);
				srv_log(srv, QSVC_LOG_WARNING,
					"session %" PRIu64 ": push of %s: %s", x->se->id, x->name,
					msg);
			} else if (c->off + c->len > f->next) {
				f->next = c->off + c->len;
			}
		}
		chunk_written(x, c, r, msg);
	}
}

static void write_chunk(struct sxfer *x, struct sxchunk *c)
{
	char msg[QP_TEXT_MAX + 1];
	int r = c->status;
	if (r < 0) {
		snprintf(msg, sizeof(msg),
			 "reading %s [%" PRIu64 ", +%" PRIu32 ") from the client failed: %s",
			 c->f ? c->f->name : SX_MANIFEST, c->off, c->len, strerror(-r));
	} else if (!c->f) {
		/* The manifest collects in memory until it is whole. */
		memcpy(x->mtext + c->off, c->buf, c->len);
		if (c->off + c->len > x->mgot)
			x->mgot = c->off + c->len;
		if (x->mgot == x->manifest_len) {
			r = manifest_complete(x, msg, sizeof(msg));
			if (r < 0)
				set_werr(x, r, msg);
		}
	} else {
		/* In file order: a chunk waits for the bytes before it. */
		struct sxchunk **pp = &c->f->held;
		while (*pp && (*pp)->off <= c->off)
			pp = &(*pp)->next;
		c->next = *pp;
		*pp = c;
		write_held(x, c->f);
		return;
	}
	chunk_written(x, c, r, msg);
}

static void *writer_main(void *arg)
{
	struct sxfer *x = arg;
	struct qsrv *srv = x->se->srv;
	pthread_mutex_lock(&srv->mu);
	for (;;) {
		while (!x->wq_head && x->state != SX_DRAINED)
			pthread_cond_wait(&srv->cv, &srv->mu);
		/* Closing: what was read is still written (a resumed push
		 * needs it less), what waits for a gap is dropped by free. */
		if (!x->wq_head)
			break;
		struct sxchunk *c = x->wq_head;
		x->wq_head = c->next;
		if (!x->wq_head)
			x->wq_tail = NULL;
		c->next = NULL;
		pthread_mutex_unlock(&srv->mu);
		write_chunk(x, c);
		pthread_mutex_lock(&srv->mu);
	}
	pthread_mutex_unlock(&srv->mu);
	return NULL;
}

static void put_done(struct srv_op *op, int status)
{
	struct sxchunk *c = (struct sxchunk *)op;
	struct sxfer *x = c->x;
	struct qsrv *srv = x->se->srv;
	pthread_mutex_lock(&srv->mu);
	c->status = status;
	c->next = NULL;
	if (x->wq_tail)
		x->wq_tail->next = c;
	else
		x->wq_head = c;
	x->wq_tail = c;
	x->rma--;
	/* The client's buffer or the connection is gone: so is the client,
	 * and its lock on the partial goes with the session, now rather
	 * than after idle_timeout. */
	if (status < 0)
		srv_kill_locked(x->se, "reading %s of %s from the client failed: %s",
				c->f ? c->f->name : SX_MANIFEST, x->name, strerror(-status));
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
}

/* ---- push: requests ---------------------------------------------------- */

/* Opens (creating) and locks the partial directory of a push. */
static int open_partial(struct sxfer *x, char *msg, size_t msg_len)
{
	x->dfd = qfs_partial_open(x->dir, 1, 0);
	if (x->dfd == -EBUSY)
		snprintf(msg, msg_len,
			 "a push of '%s' is in progress (another client, or one that went away "
			 "and is not timed out yet): try again later",
			 x->name);
	else if (x->dfd < 0)
		snprintf(msg, msg_len, "push_root: cannot make the partial directory of %s: %s",
			 x->name, strerror(-x->dfd));
	if (x->dfd < 0) {
		int e = x->dfd;
		x->dfd = -1;
		return e;
	}
	return 0;
}

void srvx_push_open(struct session *se, const struct qp_msg *m)
{
	struct qsrv *srv = se->srv;
	const struct qp_push_open *po = &m->u.push_open;
	char path[PATH_MAX], msg[QP_TEXT_MAX + 1];
	int r;
	if (!srv->conf.push_root) {
		srv_error(se, m->h.req, -EPERM, "this quaid accepts no pushes (no push_root)");
		return;
	}
	if (!srv_valid_name(po->name)) {
		srv_error(se, m->h.req, -EINVAL, "'%s' is not a dataset name", po->name);
		return;
	}
	if (po->manifest_len == 0 || po->manifest_len > QMF_MAX_BYTES) {
		srv_error(se, m->h.req, -EINVAL,
			  "a manifest of %" PRIu64 " bytes: a manifest has 1 to %u bytes",
			  po->manifest_len, QMF_MAX_BYTES);
		return;
	}
	if (!quai_class_name(po->classification) || quai_zone_check(po->zone) < 0) {
		srv_error(se, m->h.req, -EINVAL, "PUSH_OPEN: invalid classification or zone");
		return;
	}
	/* The policy, sovereignty first: a sensitive dataset of another zone
	 * is never accepted, whatever the rules say. What COMMIT publishes is
	 * checked to be of this classification and zone. */
	if (!srv_authorize(se, m->h.req, QPOL_PUSH, "push", po->name, po->classification, po->zone,
			   -1))
		return;
	if (srv_dataset_path(srv, po->name, path, sizeof(path)) == 0 ||
	    ((size_t)snprintf(path, sizeof(path), "%s/%s", srv->conf.push_root, po->name) <
		 sizeof(path) &&
	     qfs_exists(path))) {
		srv_error(se, m->h.req, -QUAI_EEXISTS,
			  "a dataset '%s' exists here already (quaid never overwrites)", po->name);
		return;
	}
	struct sxfer *x = xfer_new(se, po->tag, 1, po->name);
	if (!x) {
		srv_error(se, m->h.req, -ENOMEM, "out of memory");
		return;
	}
	x->manifest_len = po->manifest_len;
	x->classification = po->classification;
	x->sensitive = po->classification == QUAI_CLASS_SENSITIVE;
	snprintf(x->zone, sizeof(x->zone), "%s", po->zone);
	r = qfs_partial_path(path, x->dir, sizeof(x->dir));
	if (r == 0 && (size_t)snprintf(x->dest, sizeof(x->dest), "%s", path) >= sizeof(x->dest))
		r = -ENAMETOOLONG;
	if (r < 0) {
		srv_error(se, m->h.req, r, "push_root/%s: %s", po->name, strerror(-r));
		goto fail;
	}
	x->mtext = malloc(x->manifest_len);
	if (!x->mtext) {
		srv_error(se, m->h.req, -ENOMEM, "out of memory");
		goto fail;
	}
	r = open_partial(x, msg, sizeof(msg));
	if (r < 0) {
		srv_error(se, m->h.req, r, "%s", msg);
		goto fail;
	}
	r = reserve(x);
	if (r < 0) {
		srv_error(se, m->h.req, -ENOBUFS,
			  "a push needs at least %u KiB of quaid's pinned memory; this client has "
			  "%" PRIu64 " MiB (client_memory) and holds %" PRIu64 " MiB",
			  x->max_chunk >> 10, srv->conf.client_memory >> 20, se->mem_used >> 20);
		goto fail;
	}
	r = -pthread_create(&x->writer, NULL, writer_main, x);
	if (r < 0) {
		srv_error(se, m->h.req, r, "cannot start a thread: %s", strerror(-r));
		goto fail;
	}
	if (link_xfer(se, x) < 0) {
		xfer_free(x);
		return;
	}
	srv_log(srv, QSVC_LOG_INFO,
		"session %" PRIu64 " (%s pid %" PRIu32 "): push %" PRIu64 " of %s into %s", se->id,
		se->host, se->pid, x->id, x->name, x->dir);
	send_ready(se, m->h.req, x);
	return;
fail:
	xfer_release(x);
}

void srvx_put(struct session *se, const struct qp_msg *m)
{
	const struct qp_put *pt = &m->u.put;
	struct qsrv *srv = se->srv;
	struct sxfer *x = get(se, pt->xfer);
	struct sxfile *f = NULL;
	struct sxchunk *c;
	int r;
	if (!x) {
		srv_error(se, m->h.req, -ENOENT, "no transfer %" PRIu64, pt->xfer);
		return;
	}
	if (!x->push) {
		srv_error(se, m->h.req, -EINVAL, "PUT to a pull: use READ");
		goto out;
	}
	pthread_mutex_lock(&srv->mu);
	int have_manifest = has_manifest(x->state);
	int werr = x->werr;
	uint64_t mgot = x->mgot;
	pthread_mutex_unlock(&srv->mu);
	if (werr < 0) {
		srv_error(se, m->h.req, werr, "%s", x->werr_msg);
		goto out;
	}
	if (pt->len == 0 || pt->len > x->max_chunk) {
		srv_error(se, m->h.req, -EINVAL, "PUT of %" PRIu32 " bytes: 1 to %" PRIu32, pt->len,
			  x->max_chunk);
		goto out;
	}
	if (strcmp(pt->file, SX_MANIFEST) == 0) {
		if (have_manifest || pt->offset > mgot || pt->offset > x->manifest_len ||
		    pt->len > x->manifest_len - pt->offset) {
			srv_error(se, m->h.req, -EINVAL,
				  "PUT of %s [%" PRIu64 ", +%" PRIu32 "): the manifest has %" PRIu64
				  " bytes, sent in order, %" PRIu64 " so far%s",
				  SX_MANIFEST, pt->offset, pt->len, x->manifest_len, mgot,
				  have_manifest ? " (it is whole already)" : "");
			goto out;
		}
	} else if (!have_manifest) {
		srv_error(se, m->h.req, -EPROTO, "PUT of %s before the whole %s", pt->file,
			  SX_MANIFEST);
		goto out;
	} else if (!(f = find_file(x, pt->file))) {
		srv_error(se, m->h.req, -ENOENT, "'%s' is not a file of dataset %s", pt->file,
			  x->name);
		goto out;
	} else if (pt->offset > f->size || pt->len > f->size - pt->offset) {
		srv_error(se, m->h.req, -EINVAL,
			  "PUT of %s [%" PRIu64 ", +%" PRIu32 "): the manifest gives it %" PRIu64
			  " bytes",
			  pt->file, pt->offset, pt->len, f->size);
		goto out;
	}
	r = take_chunk(x, pt->len, &c);
	if (r == -ECANCELED)
		goto out;
	if (r < 0) {
		srv_error(se, m->h.req, r, "quaid's pinned pool is full: try again later");
		goto out;
	}
	c->op.done = put_done;
	c->f = f;
	c->req = m->h.req;
	c->off = pt->offset;
	/* Taken under the lock COMMIT claims the transfer under. */
	pthread_mutex_lock(&srv->mu);
	int closed = x->state == SX_COMMITTING || x->state == SX_COMMITTED;
	werr = x->werr;
	if (!closed && !werr) {
		x->rma++;
		x->queued++;
	}
	pthread_mutex_unlock(&srv->mu);
	if (closed || werr) {
		drop_chunk(x, c);
		if (werr)
			srv_error(se, m->h.req, werr, "%s", x->werr_msg);
		else
			srv_error(se, m->h.req, -EPROTO, "PUT of %s to %s after its COMMIT",
				  pt->file, x->name);
		goto out;
	}
	while ((r = qf_read(srv->ep, se->peer, c->buf, pt->len, srv->pool_mr, pt->addr, pt->key,
			    &c->op)) == -EAGAIN &&
	       !busy_wait(srv, x))
		;
	if (r < 0) {
		pthread_mutex_lock(&srv->mu);
		x->rma--;
		x->queued--;
		drop_chunk_locked(x, c);
		pthread_mutex_unlock(&srv->mu);
		if (r != -EAGAIN)
			srv_error(se, m->h.req, r, "%s: cannot read from the client: %s", pt->file,
				  strerror(-r));
	}
out:
	put(x);
}

void srvx_push_status(struct session *se, const struct qp_msg *m)
{
	struct qsrv *srv = se->srv;
	struct sxfer *x = get(se, m->u.id.id);
	if (!x) {
		srv_error(se, m->h.req, -ENOENT, "no transfer %" PRIu64, m->u.id.id);
		return;
	}
	struct qp_msg *rm = calloc(1, sizeof(*rm));
	if (!rm) {
		srv_error(se, m->h.req, -ENOMEM, "out of memory");
		goto out;
	}
	pthread_mutex_lock(&srv->mu);
	int have_manifest = has_manifest(x->state);
	pthread_mutex_unlock(&srv->mu);
	if (!x->push || !have_manifest) {
		srv_error(se, m->h.req, -EPROTO, "PUSH_STATUS %s",
			  x->push ? "before the whole manifest.json" : "of a pull");
		goto out;
	}
	/* Pages of QP_HAVE_MAX: a shorter page is the last, and the next
	 * PUSH_STATUS starts over. The manifest comes first. */
	rm->h.type = QP_PUSH_HAVE;
	rm->h.req = m->h.req;
	struct qp_push_have *h = &rm->u.push_have;
	uint32_t pos = x->have_cursor; /* 0: the manifest; 1 + i: files[i] */
	for (; pos <= x->nfiles && h->n < QP_HAVE_MAX; pos++) {
		struct qp_have_entry *e = &h->e[h->n];
		if (pos == 0) {
			snprintf(e->file, sizeof(e->file), "%s", SX_MANIFEST);
			e->bytes = x->manifest_len;
			h->n++;
			continue;
		}
		struct sxfile *f = &x->files[pos - 1];
		struct stat st;
		if (fstatat(x->dfd, f->name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		snprintf(e->file, sizeof(e->file), "%s", f->name);
		e->bytes = (uint64_t)st.st_size < f->size ? (uint64_t)st.st_size : f->size;
		h->n++;
	}
	x->have_cursor = h->n == QP_HAVE_MAX && pos <= x->nfiles ? pos : 0;
	srv_send(se, rm);
out:
	free(rm);
	put(x);
}

struct first_problem {
	int have;
	char text[512];
};

static void on_problem(const struct quai_verify_problem *p, void *arg)
{
	struct first_problem *fp = arg;
	if (fp->have++)
		return;
	if (p->frame >= 0)
		snprintf(fp->text, sizeof(fp->text), "%s, frame %" PRId64 ": %s", p->file, p->frame,
			 p->what ? p->what : quai_strerror(p->error));
	else
		snprintf(fp->text, sizeof(fp->text), "%s: %s", p->file ? p->file : "?",
			 p->what ? p->what : quai_strerror(p->error));
}

/* Syncs every file and the directory, makes the manifest manifest.json,
 * and checks the dataset whole. Returns 0, or an error with msg. */
static int commit_check(struct sxfer *x, char *msg, size_t msg_len)
{
	for (uint32_t i = 0; i < x->nfiles; i++) {
		struct sxfile *f = &x->files[i];
		struct stat st;
		uint64_t have = 0;
		if (fstatat(x->dfd, f->name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			have = (uint64_t)st.st_size;
		if (have != f->size) {
			snprintf(msg, msg_len,
				 "COMMIT of %s: %s has %" PRIu64 " of its %" PRIu64
				 " bytes: send the rest first",
				 x->name, f->name, have, f->size);
			return -EPROTO;
		}
		int fd = file_fd(x, f, O_WRONLY);
		if (fd < 0 || fsync(fd) < 0) {
			int e = fd < 0 ? fd : -errno;
			snprintf(msg, msg_len, "push_root: %s syncing %s", strerror(-e), f->name);
			return e;
		}
	}
	close_files(x);
	if (renameat(x->dfd, SX_MANIFEST_TMP, x->dfd, SX_MANIFEST) < 0 && errno != ENOENT) {
		int e = -errno;
		snprintf(msg, msg_len, "push_root: %s renaming %s", strerror(-e), SX_MANIFEST_TMP);
		return e;
	}
	if (fsync(x->dfd) < 0) {
		int e = -errno;
		snprintf(msg, msg_len, "push_root: %s syncing the directory", strerror(-e));
		return e;
	}
	struct first_problem fp = {0};
	struct quai_verify_opts vo = {
	    .size = sizeof(vo), .problem = on_problem, .problem_arg = &fp};
	struct quai_verify_result vr = {0};
	int r = quai_verify(x->dir, &vo, &vr);
	if (r < 0 || fp.have) {
		snprintf(msg, msg_len,
			 "%s fails verification, nothing was published: %s (%" PRIu64
			 " bad frames, %" PRIu64 " bad files)",
			 x->name, fp.have ? fp.text : quai_strerror(r), vr.bad_frames,
			 vr.bad_files);
		return -QUAI_ECORRUPT;
	}
	return 0;
}

void srvx_commit(struct session *se, const struct qp_msg *m)
{
	struct qsrv *srv = se->srv;
	char msg[QP_TEXT_MAX + 1];
	struct sxfer *x = get(se, m->u.id.id);
	int r;
	if (!x) {
		srv_error(se, m->h.req, -ENOENT, "no transfer %" PRIu64, m->u.id.id);
		return;
	}
	/* Claimed under the lock that PUTs are taken under: from here on no
	 * byte can change in what is checked and published. */
	pthread_mutex_lock(&srv->mu);
	enum sx_state state = x->state;
	int busy = x->queued || x->rma || state == SX_COMMITTING;
	int ready = x->push && (state == SX_RECEIVING || state == SX_COMMITTING);
	int werr = x->werr;
	/* Only the COMMIT that made the move moves back. */
	int mine = ready && !busy && werr == 0 && sx_move_locked(x, SX_COMMITTING) >= 0;
	pthread_mutex_unlock(&srv->mu);
	if (!ready) {
		srv_error(se, m->h.req, -EPROTO, "COMMIT %s",
			  !x->push		  ? "of a pull"
			  : state == SX_COMMITTED ? "again: the dataset is published"
						  : "before the whole manifest.json");
		goto out;
	}
	if (werr < 0) {
		srv_error(se, m->h.req, werr, "%s", x->werr_msg);
		goto out;
	}
	if (busy) {
		srv_error(se, m->h.req, -EPROTO, "COMMIT of %s while PUTs are still in progress",
			  x->name);
		goto out;
	}
	r = commit_check(x, msg, sizeof(msg));
	if (r == -QUAI_ECORRUPT) {
		/* Nothing half-good is kept: a re-run starts from nothing. */
		qfs_remove_partial(x->dir);
		set_werr(x, r, msg);
		srv_log(srv, QSVC_LOG_WARNING, "session %" PRIu64 ": push of %s refused: %s",
			se->id, x->name, msg);
		srv_error(se, m->h.req, r, "%s", msg);
		goto out;
	}
	if (r < 0) {
		srv_error(se, m->h.req, r, "%s", msg);
		goto out;
	}
	r = qfs_publish(x->dir, x->dest);
	if (r < 0) {
		if (r == -EEXIST || r == -ENOTEMPTY) {
			qfs_remove_partial(x->dir);
			srv_error(se, m->h.req, -QUAI_EEXISTS,
				  "a dataset '%s' appeared here meanwhile (quaid never overwrites)",
				  x->name);
		} else {
			srv_error(se, m->h.req, r, "push_root: cannot publish %s: %s", x->name,
				  strerror(-r));
		}
		goto out;
	}
	pthread_mutex_lock(&srv->mu);
	sx_move_locked(x, SX_COMMITTED);
	mine = 0;
	uint64_t in = se->bytes_in;
	pthread_mutex_unlock(&srv->mu);
	srv_log(srv, QSVC_LOG_NOTICE,
		"session %" PRIu64 " (%s pid %" PRIu32 "): published %s (verified); %" PRIu64
		" bytes received in this session",
		se->id, se->host, se->pid, x->dest, in);
	srv_ok(se, m->h.req);
out:
	pthread_mutex_lock(&srv->mu);
	if (mine)
		sx_move_locked(x, SX_RECEIVING);
	pthread_mutex_unlock(&srv->mu);
	put(x);
}

void srvx_close(struct session *se, const struct qp_msg *m)
{
	struct qsrv *srv = se->srv;
	pthread_mutex_lock(&srv->mu);
	struct sxfer **pp, *x = NULL;
	for (pp = &se->xfers; *pp; pp = &(*pp)->next)
		if ((*pp)->id == m->u.id.id) {
			x = *pp;
			*pp = x->next;
			break;
		}
	pthread_mutex_unlock(&srv->mu);
	if (!x) {
		srv_error(se, m->h.req, -ENOENT, "no transfer %" PRIu64, m->u.id.id);
		return;
	}
	xfer_free(x);
	srv_ok(se, m->h.req);
}

void srvx_close_all(struct session *se)
{
	struct qsrv *srv = se->srv;
	pthread_mutex_lock(&srv->mu);
	struct sxfer *xs = se->xfers;
	se->xfers = NULL;
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
	while (xs) {
		struct sxfer *x = xs;
		xs = x->next;
		xfer_free(x);
	}
}
