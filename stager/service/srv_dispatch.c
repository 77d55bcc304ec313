/* SPDX-License-Identifier: Apache-2.0 */
/*
 * How a message reaches the code that handles it. The fabric's progress
 * thread decodes what arrives; it answers nothing itself but credits
 * (which only free slots) and pings, and queues every request for the
 * service threads, so that no client's request ever holds up another
 * client's data. The service threads handle requests, each request whole.
 */
#include "srv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Requests are small (READ, PUT and CREDIT are a few hundred bytes): the
 * items that hold them are kept for the next ones rather than allocated
 * per request. A larger message gets an item of its own size. */
#define WORK_SMALL 1024u
#define WORK_SPARE_MAX 256u

struct work {
	struct session *se; /* NULL for HELLO */
	uint64_t peer;
	size_t len;
	size_t cap; /* bytes of msg */
	struct work *next;
	uint8_t msg[];
};

/* ---- dispatch ---------------------------------------------------------- */

/* A work item for a message of len bytes; NULL when out of memory. */
static struct work *take_work_locked(struct qsrv *srv, size_t len)
{
	struct work *w = NULL;
	if (len <= WORK_SMALL && srv->wq_spare) {
		w = srv->wq_spare;
		srv->wq_spare = w->next;
		srv->nspare--;
		return w;
	}
	size_t cap = len <= WORK_SMALL ? WORK_SMALL : len;
	w = malloc(sizeof(*w) + cap);
	if (w)
		w->cap = cap;
	return w;
}

static void put_work_locked(struct qsrv *srv, struct work *w)
{
	if (w->cap != WORK_SMALL || srv->nspare >= WORK_SPARE_MAX) {
		free(w);
		return;
	}
	w->next = srv->wq_spare;
	srv->wq_spare = w;
	srv->nspare++;
}

static void handle(struct qsrv *srv, struct work *w, struct qp_msg *m)
{
	if (qp_decode(w->msg, w->len, m, NULL, 0) < 0)
		return; /* checked on arrival */
	struct session *se = w->se;
	switch (m->h.type) {
	case QP_HELLO:
		srv_hello(srv, m);
		break;
	case QP_LIST:
		srvc_list(se, m);
		break;
	case QP_MANIFEST:
		srvc_manifest(se, m);
		break;
	case QP_STAT:
		srvc_stat(se, m);
		break;
	case QP_STREAM_OPEN:
		srvs_open(se, m);
		break;
	case QP_SLOTS:
		srvs_slots(se, m);
		break;
	case QP_STREAM_CLOSE:
		srvs_close(se, m);
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

void *srv_service_main(void *arg)
{
	struct qsrv *srv = arg;
	struct qp_msg *m = malloc(sizeof(*m));
	if (!m)
		return NULL;
	pthread_mutex_lock(&srv->mu);
	for (;;) {
		while (!srv->wq_head && !srv->stopping)
			pthread_cond_wait(&srv->wq_cv, &srv->mu);
		if (srv->stopping) {
			/* Nothing more is served: what is queued is dropped, its
			 * sessions' references given back, so that the stop does
			 * not wait for a flood's worth of requests. */
			while (srv->wq_head) {
				struct work *w = srv->wq_head;
				srv->wq_head = w->next;
				if (w->se)
					w->se->refs--;
				put_work_locked(srv, w);
			}
			srv->wq_tail = NULL;
			pthread_cond_broadcast(&srv->cv);
			break;
		}
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
		put_work_locked(srv, w);
	}
	pthread_mutex_unlock(&srv->mu);
	free(m);
	return NULL;
}

static void enqueue_locked(struct qsrv *srv, struct session *se, uint64_t peer, const void *msg,
			   size_t len)
{
	/* Stopping: the service threads have dropped the queue and ended,
	 * and a message queued after that (a client's BYE or CREDIT answering
	 * the shutdown) would hold its session's reference for ever, and
	 * session_free() with it. Nothing more is served: drop it. */
	if (srv->stopping)
		return;
	struct work *w = take_work_locked(srv, len);
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
		se = srv_find_token_locked(srv, m->h.session);
	else
		se = peer == QF_PEER_UNKNOWN ? NULL : srv_find_peer_locked(srv, peer);
	if (r == -EPROTONOSUPPORT) {
		pthread_mutex_unlock(&srv->mu);
		srv_log(
		    srv, QSVC_LOG_WARNING,
		    "a client speaks protocol version %u; this quaid speaks version %u: refused",
		    (unsigned)m->h.version, QP_VERSION);
		/* A first HELLO: its address is where every version keeps it
		 * (docs/PROTOCOL.md, "Versions"), so the refusal can reach a
		 * client that has no session yet. */
		uint64_t tmp = QF_PEER_UNKNOWN;
		struct qp_blob addr;
		if (!se && qp_hello_addr(msg, len, &addr) == 0 &&
		    qf_peer_insert(srv->ep, addr.p, addr.len, &tmp) == 0)
			peer = tmp;
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
		srvs_credit_locked(se, &m->u.credit);
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
	struct session *se = srv_find_peer_locked(srv, peer);
	if (se)
		srv_kill_locked(se, "the client is unreachable: %s", strerror(-status));
	pthread_mutex_unlock(&srv->mu);
}

void srv_dispatch_init(struct qsrv *srv)
{
	srv->h = (struct qf_handlers){
	    .on_msg = on_msg, .on_done = on_done, .on_send_error = on_send_error, .arg = srv};
}

void srv_queue_drop(struct qsrv *srv)
{
	while (srv->wq_head) {
		struct work *w = srv->wq_head;
		srv->wq_head = w->next;
		free(w);
	}
	srv->wq_tail = NULL;
	while (srv->wq_spare) {
		struct work *w = srv->wq_spare;
		srv->wq_spare = w->next;
		free(w);
	}
	srv->nspare = 0;
}
