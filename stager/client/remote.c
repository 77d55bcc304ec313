/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Remote streams, the client side (remote.h, docs/PROTOCOL.md "Stream").
 *
 * The ring: `nslots` slots of `slot_bytes`, carved from the context's
 * pinned pool and registered for remote write. quaid holds a credit for
 * every slot that is free; it writes batch after batch into free slots,
 * each write carrying (tag, slot) as completion data. Here, a landed slot
 * is checked (qp_slot_check: the header, and offsets that stay inside the
 * slot) before it is handed out in batch-index order; quai_release() gives
 * its credit back. No byte is copied between the wire and the slot.
 */
#include "remote.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "conn.h"
#include "ctxmem.h"
#include "errmsg.h"
#include "hostdecide.h"
#include "json.h"
#include "dataset.h"
#include "manifest.h"

enum { SLOT_REMOTE, SLOT_LANDED, SLOT_HELD };

struct qrstream {
	quai_ctx *ctx;
	struct qconn *c;
	struct qconn_sink sink;
	uint64_t id;
	uint8_t *ring;
	uint64_t ring_bytes;
	struct qf_mr *mr;
	uint64_t slot_bytes;
	uint32_t nslots;
	uint8_t *slot_state;
	int wipe; /* sensitive: slots are zeroed when given back */

	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t delivered;
	uint64_t end_batches; /* UINT64_MAX until STREAM_END */
	int end_status;
	int err;
	char errmsg[QP_TEXT_MAX + 64];
	uint8_t state[QP_STATE_MAX];
	uint32_t state_len;
	struct quai_stream_stats st;
};

static void fail_locked(struct qrstream *r, int err, const char *msg)
{
	if (r->err)
		return;
	r->err = err;
	snprintf(r->errmsg, sizeof(r->errmsg), "%s", msg);
	pthread_cond_broadcast(&r->cv);
}

/* ---- what the connection tells us (progress thread, conn lock held) ---- */

static void on_landed(void *arg, uint32_t slot)
{
	struct qrstream *r = arg;
	pthread_mutex_lock(&r->mu);
	if (slot >= r->nslots || r->slot_state[slot] != SLOT_REMOTE)
		fail_locked(r, -EBADMSG, "quaid wrote into a slot it held no credit for");
	else
		r->slot_state[slot] = SLOT_LANDED;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static void on_message(void *arg, const struct qp_msg *m)
{
	struct qrstream *r = arg;
	pthread_mutex_lock(&r->mu);
	r->end_batches = m->u.stream_end.batches;
	r->end_status = -m->u.stream_end.status;
	if (m->u.stream_end.status)
		snprintf(r->errmsg, sizeof(r->errmsg), "%s", m->u.stream_end.message);
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static void on_dead(void *arg, int err, const char *why)
{
	struct qrstream *r = arg;
	pthread_mutex_lock(&r->mu);
	/* Batches already landed stay deliverable; the error comes after. */
	if (!r->err) {
		r->err = err;
		snprintf(r->errmsg, sizeof(r->errmsg), "%s", why);
	}
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* ---- the calls --------------------------------------------------------- */

int qrs_open(quai_ctx *ctx, const char *uri, const struct quai_stream_opts *o,
	     struct qrstream **ret, char *err, size_t err_len)
{
	struct qconn_uri u;
	struct qp_msg *m = NULL;
	struct qconn_reply rep = {0};
	char cerr[QP_TEXT_MAX + 1];
	int r = qconn_parse_uri(uri, &u, err, err_len);
	if (r < 0)
		return r;
	if (!u.name[0]) {
		qerr_set(err, err_len, "%s: no dataset name (quai://HOST[:PORT]/NAME)", uri);
		return -EINVAL;
	}
	if (o->resume_len > QP_STATE_MAX) {
		qerr_set(err, err_len, "the resume state is %zu bytes, more than any stream writes",
			 o->resume_len);
		return -EINVAL;
	}
	struct qrstream *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = ctx;
	s->end_batches = UINT64_MAX;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	qctx_streams_add(ctx, 1);

	r = qconn_open(&u, &s->c, err, err_len);
	if (r < 0)
		goto fail;
	m = calloc(1, sizeof(*m));
	if (!m) {
		r = -ENOMEM;
		goto fail;
	}
	s->sink = (struct qconn_sink){.tag = qconn_tag(s->c),
				      .landed = on_landed,
				      .message = on_message,
				      .dead = on_dead,
				      .arg = s};
	m->h.type = QP_STREAM_OPEN;
	struct qp_stream_open *so = &m->u.stream_open;
	so->tag = s->sink.tag;
	snprintf(so->name, sizeof(so->name), "%s", u.name);
	so->rank = o->rank;
	so->world = o->world ? o->world : 1;
	so->seed = o->seed;
	so->epoch = o->epoch;
	so->partitions = o->partitions;
	so->window = o->window;
	so->batch_records = o->batch_records;
	so->batch_bytes = o->batch_bytes;
	so->memory_budget = o->memory_budget;
	so->prefetch_batches = o->prefetch_batches;
	so->tail = (uint8_t)o->tail;
	so->flags = o->flags;
	so->state = (struct qp_blob){o->resume, o->resume ? o->resume_len : 0};
	r = qconn_call_for(s->c, m, QP_STREAM_READY, &rep, cerr, sizeof(cerr));
	if (r < 0) {
		qerr_set(err, err_len, "%s: %s", uri, cerr);
		goto fail;
	}
	const struct qp_stream_ready *rd = &rep.m.u.stream_ready;
	s->id = rd->stream;
	s->nslots = rd->slots;
	s->slot_bytes = (rd->slot_bytes + QCTX_MEM_ALIGN - 1) / QCTX_MEM_ALIGN * QCTX_MEM_ALIGN;
	s->state_len = (uint32_t)rd->state.len;
	memcpy(s->state, rd->state.p, rd->state.len);
	s->st.records_total = rd->records_total;
	s->st.partitions = rd->partitions;
	s->st.budget_bytes = rd->budget;
	s->st.working_set_bytes = rd->working_set;
	/* Both sides decide: quaid streams sensitive data only to the hosts
	 * of its zone, and this host must say it is one, with locked memory
	 * for the slots (hostdecide.h; audited here either way). */
	struct qhd_request hq = {
	    .op = "stream",
	    .dataset = u.name,
	    .classification = rd->classification,
	    .zone = rd->zone,
	    .bytes = -1,
	    .what = "streamed",
	    .memory = qctx_mem_locked(ctx) ? QHD_MEM_LOCKED : QHD_MEM_POOL_UNLOCKED,
	};
	r = qhd_decide(&hq, err, err_len);
	if (r < 0)
		goto fail;
	if (rd->classification == QUAI_CLASS_SENSITIVE) {
		s->wipe = 1;
		qctx_mem_wipe_on_free(ctx);
	}
	qconn_reply_free(&rep);

	/* The ring, in the pinned pool, registered for the server's writes. */
	s->ring_bytes = s->slot_bytes * s->nslots;
	s->slot_state = calloc(s->nslots, 1);
	if (!s->slot_state) {
		r = -ENOMEM;
		goto fail;
	}
	r = qctx_mem_alloc(ctx, s->ring_bytes, (void **)&s->ring);
	if (r < 0) {
		qerr_set(err, err_len,
			 "%s: the stream needs %u slots of %" PRIu64 " KiB (%" PRIu64
			 " MiB) in this context's pinned pool, which has not that much free",
			 uri, s->nslots, s->slot_bytes >> 10,
			 (s->ring_bytes + (1 << 20) - 1) >> 20);
		s->ring = NULL;
		r = -ENOBUFS;
		goto fail;
	}
	r = qf_mr_reg(qconn_ep(s->c), s->ring, s->ring_bytes, QF_REMOTE_WRITE, &s->mr);
	if (r < 0) {
		qerr_set(err, err_len, "%s: cannot register the slots with the fabric: %s", uri,
			 strerror(-r));
		goto fail;
	}
	s->sink.id = s->id;
	qconn_add_sink(s->c, &s->sink);

	memset(m, 0, sizeof(*m));
	m->h.type = QP_SLOTS;
	m->u.slots = (struct qp_slots){.id = s->id,
				       .nslots = s->nslots,
				       .slot_bytes = s->slot_bytes,
				       .addr = qf_mr_addr(s->mr, s->ring),
				       .key = qf_mr_key(s->mr)};
	r = qconn_call(s->c, m, &rep, cerr, sizeof(cerr));
	qconn_reply_free(&rep);
	if (r < 0) {
		qerr_set(err, err_len, "%s: %s", uri, cerr);
		goto fail;
	}
	free(m);
	*ret = s;
	return 0;
fail:
	qconn_reply_free(&rep);
	free(m);
	qrs_close(s);
	return r;
}

/* The landed slot holding batch `index`, checked; -1 when none has yet. */
static int find_landed(struct qrstream *r, uint64_t index, struct qp_slot_header *h)
{
	for (uint32_t i = 0; i < r->nslots; i++) {
		if (r->slot_state[i] != SLOT_LANDED)
			continue;
		const uint8_t *slot = r->ring + (uint64_t)i * r->slot_bytes;
		if (qp_slot_check(slot, r->slot_bytes, h) < 0) {
			fail_locked(r, -EBADMSG,
				    "quaid wrote a malformed batch (its header or offsets do not "
				    "fit the slot); nothing of it was handed out");
			return -1;
		}
		if (h->index == index)
			return (int)i;
	}
	return -1;
}

int qrs_next(struct qrstream *r, struct quai_batch *batch)
{
	struct qp_slot_header h;
	uint64_t t0 = 0;
	int slot;

	pthread_mutex_lock(&r->mu);
	for (;;) {
		slot = find_landed(r, r->delivered, &h);
		if (slot >= 0 || r->err)
			break;
		if (r->delivered >= r->end_batches)
			break;
		/* The ring has twice the slots the application may hold
		 * (prefetch_batches, as in embedded mode): the rest are in
		 * flight. */
		uint32_t held = 0;
		for (uint32_t i = 0; i < r->nslots; i++)
			held += r->slot_state[i] == SLOT_HELD;
		if (held >= (r->nslots + 1) / 2) {
			pthread_mutex_unlock(&r->mu);
			return -EBUSY;
		}
		if (!t0)
			t0 = qclock_now_ns();
		pthread_cond_wait(&r->cv, &r->mu);
	}
	if (t0)
		r->st.wait_ns += qclock_now_ns() - t0;
	if (slot < 0) {
		int e = r->err ? r->err : r->end_status;
		pthread_mutex_unlock(&r->mu);
		return e;
	}
	uint8_t *base = r->ring + (uint64_t)slot * r->slot_bytes;
	r->slot_state[slot] = SLOT_HELD;
	*batch = (struct quai_batch){
	    .data = base + h.data_off,
	    .ids = (const uint64_t *)(const void *)(base + QP_SLOT_HEADER_SIZE),
	    .offsets = (const uint64_t *)(const void *)(base + QP_SLOT_HEADER_SIZE +
							8 * (uint64_t)h.count),
	    .count = h.count,
	    .bytes = h.bytes,
	    .index = h.index,
	    .internal = base,
	};
	memcpy(r->state, h.state, h.state_len);
	r->state_len = h.state_len;
	r->delivered++;
	r->st.batches++;
	r->st.records += h.count;
	r->st.bytes += h.bytes;
	pthread_mutex_unlock(&r->mu);
	return 1;
}

void qrs_release(struct qrstream *r, struct quai_batch *batch)
{
	uint8_t *p = batch->internal;
	if (p < r->ring || p >= r->ring + r->ring_bytes)
		return;
	uint32_t slot = (uint32_t)((uint64_t)(p - r->ring) / r->slot_bytes);
	batch->internal = NULL;
	pthread_mutex_lock(&r->mu);
	if (r->slot_state[slot] != SLOT_HELD) {
		pthread_mutex_unlock(&r->mu);
		return;
	}
	r->slot_state[slot] = SLOT_REMOTE;
	int err = r->err;
	pthread_mutex_unlock(&r->mu);
	if (r->wipe)
		explicit_bzero(p, r->slot_bytes);
	if (err)
		return; /* the server is gone or stopped: no credit to give */
	struct qp_msg *m = malloc(sizeof(*m));
	if (!m)
		return;
	m->h = (struct qp_header){.type = QP_CREDIT};
	m->u.credit.stream = r->id;
	m->u.credit.n = 1;
	m->u.credit.slots[0] = slot;
	int e = qconn_send(r->c, m);
	free(m);
	if (e < 0) {
		pthread_mutex_lock(&r->mu);
		char msg[200];
		snprintf(msg, sizeof(msg), "cannot give a slot back to quaid: %s", strerror(-e));
		fail_locked(r, e, msg);
		pthread_mutex_unlock(&r->mu);
	}
}

const char *qrs_error(struct qrstream *r)
{
	return r->errmsg;
}

int qrs_state(struct qrstream *r, void *buf, size_t len)
{
	pthread_mutex_lock(&r->mu);
	int n = (int)r->state_len;
	if (len < r->state_len)
		n = -ENOSPC;
	else
		memcpy(buf, r->state, r->state_len);
	pthread_mutex_unlock(&r->mu);
	return n;
}

int qrs_stats(struct qrstream *r, struct quai_stream_stats *stats)
{
	pthread_mutex_lock(&r->mu);
	struct quai_stream_stats st = r->st;
	pthread_mutex_unlock(&r->mu);
	st.size = stats->size;
	size_t n = stats->size < sizeof(st) ? stats->size : sizeof(st);
	memcpy(stats, &st, n);
	return 0;
}

void qrs_close(struct qrstream *r)
{
	if (!r)
		return;
	if (r->c && r->id) {
		/* The server stops writing before it answers; only then do the
		 * slots go back to the pool. Without an answer (a dead server),
		 * deregistering them makes any late write fail, never land. */
		struct qp_msg *m = calloc(1, sizeof(*m));
		struct qconn_reply rep = {0};
		if (m && !qconn_status(r->c, NULL, 0)) {
			m->h.type = QP_STREAM_CLOSE;
			m->u.id.id = r->id;
			qconn_call(r->c, m, &rep, NULL, 0);
			qconn_reply_free(&rep);
		}
		free(m);
	}
	if (r->c)
		qconn_remove_sink(r->c, &r->sink);
	qf_mr_close(r->mr);
	qconn_close(r->c);
	if (r->ring && r->wipe)
		explicit_bzero(r->ring, r->ring_bytes); /* what landed and was never taken */
	qctx_mem_release(r->ctx, r->ring);
	free(r->slot_state);
	qctx_streams_add(r->ctx, -1);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r);
}

/* ---- listings, manifests, statistics ------------------------------------ */

int quai_remote_list(const char *uri, quai_remote_list_fn fn, void *arg, char *err, size_t err_len)
{
	struct qconn_uri u;
	struct qconn *c = NULL;
	struct qconn_reply rep = {0};
	struct qp_msg *m = NULL;
	char cerr[QP_TEXT_MAX + 1];
	if (!fn)
		return -EINVAL;
	int r = qconn_connect(uri, 0, &u, &c, err, err_len);
	if (r < 0)
		return r;
	m = calloc(1, sizeof(*m));
	if (!m) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t start = 0;;) {
		memset(m, 0, sizeof(*m));
		m->h.type = QP_LIST;
		m->u.list.start = start;
		r = qconn_call_for(c, m, QP_LIST_REPLY, &rep, cerr, sizeof(cerr));
		if (r < 0) {
			qerr_set(err, err_len, "%s: %s", qconn_name(c), cerr);
			goto out;
		}
		const struct qp_list_reply *lr = &rep.m.u.list_reply;
		for (uint32_t i = 0; i < lr->n; i++) {
			const struct qp_list_entry *e = &lr->e[i];
			struct quai_remote_dataset d = {
			    .name = e->name,
			    .kind = e->kind,
			    .classification = e->classification,
			    .zone = e->zone,
			    .records = e->records,
			    .raw_bytes = e->raw_bytes,
			    .compressed_bytes = e->compressed_bytes,
			    .shards = e->shards,
			};
			r = fn(&d, arg);
			if (r)
				goto out;
		}
		start += lr->n;
		if (lr->n == 0 || start >= lr->total)
			break;
	}
	r = 0;
out:
	qconn_reply_free(&rep);
	free(m);
	qconn_close(c);
	return r;
}

int quai_remote_manifest(const char *uri, char **ret_text, size_t *ret_len, char *err,
			 size_t err_len)
{
	struct qconn_uri u;
	struct qconn *c = NULL;
	struct qconn_reply rep = {0};
	struct qp_msg *m = NULL;
	char *text = NULL;
	uint64_t total = 0, have = 0;
	char cerr[QP_TEXT_MAX + 1];
	int r = qconn_connect(uri, 1, &u, &c, err, err_len);
	if (r < 0)
		return r;
	m = calloc(1, sizeof(*m));
	if (!m) {
		r = -ENOMEM;
		goto out;
	}
	do {
		memset(m, 0, sizeof(*m));
		m->h.type = QP_MANIFEST;
		snprintf(m->u.manifest.name, sizeof(m->u.manifest.name), "%s", u.name);
		m->u.manifest.offset = have;
		r = qconn_call_for(c, m, QP_MANIFEST_REPLY, &rep, cerr, sizeof(cerr));
		if (r < 0) {
			qerr_set(err, err_len, "%s: %s", uri, cerr);
			goto out;
		}
		const struct qp_manifest_reply *mr = &rep.m.u.manifest_reply;
		if (!text) {
			total = mr->total;
			if (total > QMF_MAX_BYTES) {
				qerr_set(err, err_len,
					 "%s: the manifest is %" PRIu64 " bytes, over "
					 "the format's limit",
					 uri, total);
				r = -QUAI_EFORMAT;
				goto out;
			}
			text = malloc(total + 1);
			if (!text) {
				r = -ENOMEM;
				goto out;
			}
		}
		if (mr->total != total || mr->offset != have || mr->data.len > total - have ||
		    (mr->data.len == 0 && have < total)) {
			qerr_set(err, err_len, "%s: the server sent the manifest inconsistently",
				 uri);
			r = -EPROTO;
			goto out;
		}
		memcpy(text + have, mr->data.p, mr->data.len);
		have += mr->data.len;
	} while (have < total);
	text[total] = '\0';
	struct qmf mf;
	char perr[200];
	r = qmf_parse(text, total, &mf, perr, sizeof(perr));
	if (r < 0) {
		qerr_set(err, err_len, "%s: manifest.json: %s", uri, perr);
		goto out;
	}
	qmf_release(&mf);
	*ret_text = text;
	*ret_len = total;
	text = NULL;
	r = 0;
out:
	free(text);
	qconn_reply_free(&rep);
	free(m);
	qconn_close(c);
	return r;
}

static void human(uint64_t n, char *buf, size_t len)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double v = (double)n;
	unsigned u = 0;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", n);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
}

static uint64_t jget_u64(const qjs_value *o, const char *key)
{
	uint64_t v = 0;
	const qjs_value *x = qjs_get(o, key);
	if (x && qjs_u64(x, &v) < 0)
		v = 0;
	return v;
}

static const char *jget_str(const qjs_value *o, const char *key)
{
	size_t n;
	const qjs_value *x = qjs_get(o, key);
	const char *t = x && qjs_type(x) == QJS_STRING ? qjs_str(x, &n) : NULL;
	return t ? t : "?";
}

/* The server's JSON, for people. */
static int stat_text(const char *json, size_t len, char **ret, size_t *ret_len)
{
	qjs_doc *doc;
	struct qjs_error je;
	char a[32], b[32], c[32];
	if (qjs_parse(json, len, &doc, &je) < 0)
		return -EBADMSG;
	const qjs_value *r = qjs_root(doc);
	char *out = NULL;
	size_t olen = 0;
	FILE *f = open_memstream(&out, &olen);
	if (!f) {
		qjs_free(doc);
		return -ENOMEM;
	}
	fprintf(f, "%s at %s (provider %s, zone %s), up %.0f s\n", jget_str(r, "server"),
		jget_str(r, "address"), jget_str(r, "provider"), jget_str(r, "zone"),
		(double)jget_u64(r, "uptime_ms") / 1e3);
	const qjs_value *cl = qjs_get(r, "clients");
	size_t ncl = cl && qjs_type(cl) == QJS_ARRAY ? qjs_len(cl) : 0;
	fprintf(f, "clients:  %zu now, %" PRIu64 " since start\n", ncl,
		jget_u64(r, "sessions_total"));
	fprintf(f, "streams:  %" PRIu64 " open, %" PRIu64 " since start\n",
		jget_u64(r, "streams_open"), jget_u64(r, "streams_total"));
	human(jget_u64(r, "bytes_served"), a, sizeof(a));
	fprintf(f,
		"served:   %s in %" PRIu64 " batches and chunks; %.1f MB/s over the last second\n",
		a, jget_u64(r, "batches_served"), (double)jget_u64(r, "rate_bytes_per_s") / 1e6);
	human(jget_u64(r, "pinned_peak"), a, sizeof(a));
	human(jget_u64(r, "pinned_bytes"), b, sizeof(b));
	fprintf(f, "pinned:   %s at most in use, of %s\n", a, b);
	if (ncl) {
		fprintf(f, "\n%-8s %-24s %8s %7s %10s %10s %10s %6s\n", "SESSION", "HOST", "PID",
			"STREAMS", "OUT", "IN", "MEMORY", "IDLE");
		for (size_t i = 0; i < ncl; i++) {
			const qjs_value *e = qjs_at(cl, i);
			human(jget_u64(e, "bytes_out"), a, sizeof(a));
			human(jget_u64(e, "bytes_in"), b, sizeof(b));
			human(jget_u64(e, "memory"), c, sizeof(c));
			fprintf(f,
				"%-8" PRIu64 " %-24.24s %8" PRIu64 " %7" PRIu64
				" %10s %10s %10s %5.0fs\n",
				jget_u64(e, "session"), jget_str(e, "host"), jget_u64(e, "pid"),
				jget_u64(e, "streams"), a, b, c,
				(double)jget_u64(e, "idle_ms") / 1e3);
		}
	}
	qjs_free(doc);
	if (fclose(f) != 0) {
		free(out);
		return -ENOMEM;
	}
	*ret = out;
	*ret_len = olen;
	return 0;
}

int quai_remote_stat(const char *uri, int format, char **ret_text, size_t *ret_len, char *err,
		     size_t err_len)
{
	struct qconn_uri u;
	struct qconn *c = NULL;
	struct qconn_reply rep = {0};
	struct qp_msg *m = NULL;
	char cerr[QP_TEXT_MAX + 1];
	int r = qconn_connect(uri, 0, &u, &c, err, err_len);
	if (r < 0)
		return r;
	m = calloc(1, sizeof(*m));
	if (!m) {
		r = -ENOMEM;
		goto out;
	}
	m->h.type = QP_STAT;
	r = qconn_call_for(c, m, QP_STAT_REPLY, &rep, cerr, sizeof(cerr));
	if (r < 0) {
		qerr_set(err, err_len, "%s: %s", qconn_name(c), cerr);
		goto out;
	}
	const struct qp_blob *js = &rep.m.u.stat_reply.json;
	if (format == QUAI_STAT_TEXT) {
		r = stat_text((const char *)js->p, js->len, ret_text, ret_len);
		if (r < 0)
			qerr_set(err, err_len, "%s: unreadable statistics", qconn_name(c));
		goto out;
	}
	char *json = malloc(js->len + 2);
	if (!json) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(json, js->p, js->len);
	json[js->len] = '\n';
	json[js->len + 1] = '\0';
	*ret_text = json;
	*ret_len = js->len + 1;
out:
	qconn_reply_free(&rep);
	free(m);
	qconn_close(c);
	return r;
}

int quai_remote_open(const char *uri, quai_dataset **ret_ds, char *err, size_t err_len)
{
	char *text;
	size_t len;
	int r = quai_remote_manifest(uri, &text, &len, err, err_len);
	if (r < 0)
		return r;
	r = qds_from_manifest(text, len, ret_ds, err, err_len);
	free(text);
	return r;
}
