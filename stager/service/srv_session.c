/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quaid's sessions and their handshake: a HELLO checked and answered
 * (WELCOME or a refusal), what a session may do decided by the policy and
 * written to the audit log, replies sent to a session's client, and the
 * end of sessions that are over (reap). docs/PROTOCOL.md, "Sessions".
 */
#include "srv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "policy.h"
#include "quai_config.h"

uint64_t srv_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int srv_overdue(struct qsrv *srv, uint64_t t0, uint64_t limit_ns)
{
	uint64_t now = srv_now_ns();
	uint64_t by = __atomic_load_n(&srv->stop_by_ns, __ATOMIC_ACQUIRE);
	return now - t0 >= limit_ns || (by && now >= by);
}

/* The send timeout: 5 s, or what is left of the stop's deadline. */
static int send_timeout_ms(struct qsrv *srv)
{
	uint64_t by = __atomic_load_n(&srv->stop_by_ns, __ATOMIC_ACQUIRE);
	if (!by)
		return SRV_SEND_TIMEOUT_MS;
	uint64_t now = srv_now_ns();
	uint64_t left_ms = now >= by ? 0 : (by - now) / 1000000;
	return left_ms < SRV_SEND_TIMEOUT_MS ? (int)left_ms : SRV_SEND_TIMEOUT_MS;
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
	/* Encoded on the sending thread's stack, not allocated per message:
	 * every thread that sends (service threads, pumps, push writers,
	 * qsrv_run's) has a default-sized stack, and qf_send_wait() is done
	 * with the bytes when it returns. */
	uint8_t buf[QP_MSG_MAX];
	int n = qp_encode(m, buf, sizeof(buf));
	int r = n;
	if (n >= 0)
		r = qf_send_wait(se->srv->ep, se->peer, buf, (size_t)n, send_timeout_ms(se->srv));
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
	srvs_cancel_all_locked(se);
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

int srv_decide(struct session *se, int op, const char *dataset, int cls, const char *zone,
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
	srv_decide(se, op, dataset, cls, zone, &d);
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

struct session *srv_find_peer_locked(struct qsrv *srv, uint64_t peer)
{
	for (struct session *se = srv->sessions; se; se = se->next)
		if (se->peer == peer && !se->dead)
			return se;
	return NULL;
}

/* The session a client's message names in its header (the fabric's idea of
 * the sender is not reliable enough to go by: docs/PROTOCOL.md); messages
 * too broken to name one fall back to the sender's address. */
struct session *srv_find_token_locked(struct qsrv *srv, uint32_t token)
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
		if (t && !srv_find_token_locked(srv, t))
			return t;
	}
}

/* ---- the handshake ----------------------------------------------------- */

/* Refuses a HELLO: ERROR (code, why) for request req to the address it
 * claims, by the courier, so that no service thread waits on an address
 * nobody has answered from yet; the peer is forgotten afterwards unless
 * `keep_peer` (a session of the same client uses it). */
static void hello_refuse(struct qsrv *srv, uint64_t peer, uint64_t req, int code, int keep_peer,
			 const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void hello_refuse(struct qsrv *srv, uint64_t peer, uint64_t req, int code, int keep_peer,
			 const char *fmt, ...)
{
	struct qp_msg *m = calloc(1, sizeof(*m));
	va_list ap;
	if (!m) {
		if (!keep_peer)
			qf_peer_remove(srv->ep, peer);
		return;
	}
	m->h.type = QP_ERROR;
	m->h.req = req;
	m->u.error.code = code < 0 ? -code : code;
	va_start(ap, fmt);
	vsnprintf(m->u.error.message, sizeof(m->u.error.message), fmt, ap);
	va_end(ap);
	srv_courier_send(srv, peer, m, !keep_peer);
	free(m);
}

/* Whether b may take over the address of a's session (a client that
 * started over): only the same authenticated user. An unauthenticated
 * HELLO proves no one, so it never ends a session. */
static int same_owner(const struct session *a, const struct session *b)
{
	return a->authed && b->authed && a->who.uid == b->who.uid;
}

/* Checks the credential of a HELLO, filling se->who, and that the address
 * it claims is not another owner's: `holder` is a copy of the live session
 * at that address, if any (its authed and who). A client without a valid
 * credential learns nothing but that (no zone, no server version: those
 * come with WELCOME); a HELLO that claims another's address is told
 * nothing at all, since its reply would go to that other client. Returns 1
 * when the session may go on: authenticated, or unauthenticated where the
 * policy allows it (public data only). */
static int authenticate(struct qsrv *srv, struct session *se, const struct qp_msg *m,
			const struct session *holder)
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
	if (!why[0] && holder && !same_owner(holder, se)) {
		snprintf(rule, sizeof(rule), "auth:address");
		snprintf(why, sizeof(why),
			 "the HELLO claims the address of session %" PRIu64
			 ", which %s: a HELLO never touches a session it did not make",
			 holder->id,
			 holder->authed ? "another user holds"
					: "no credential of this one proves");
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
	if (!holder)
		hello_refuse(srv, se->peer, m->h.req, code, 0, "%s", why);
	return 0;
}

void srv_hello(struct qsrv *srv, const struct qp_msg *m)
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
	/* A copy of the session that holds this address, if any: it may be
	 * torn down meanwhile, and only its owner is compared. */
	struct session holder;
	pthread_mutex_lock(&srv->mu);
	se->id = ++srv->next_id;
	struct session *held = srv_find_peer_locked(srv, peer);
	if (held)
		holder = *held;
	pthread_mutex_unlock(&srv->mu);
	if (!authenticate(srv, se, m, held ? &holder : NULL)) {
		free(se); /* answered, and the peer forgotten, by the courier */
		return;
	}
	pthread_mutex_lock(&srv->mu);
	/* A HELLO from an address with a session of the same user: the
	 * client started over. Another's session (one made since the check)
	 * is left alone. */
	struct session *old = srv_find_peer_locked(srv, peer);
	if (old && !same_owner(old, se)) {
		uint64_t other = old->id;
		pthread_mutex_unlock(&srv->mu);
		srv_log(srv, QSVC_LOG_NOTICE,
			"HELLO from %s pid %" PRIu32 " refused: its address is session %" PRIu64
			"'s, made meanwhile",
			h->host, h->pid, other);
		free(se);
		return;
	}
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
		hello_refuse(srv, peer, m->h.req, srv->stopping ? -ESHUTDOWN : -EUSERS, old != NULL,
			     srv->stopping ? "quaid is shutting down"
					   : "quaid serves %u clients already (max_clients)",
			     srv->conf.max_clients);
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
		srv_courier_send(srv, se->peer, rm, 0);
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

/* ---- teardown ---------------------------------------------------------- */

static void session_free(struct qsrv *srv, struct session *se)
{
	/* No new work reaches it (dead); wait for what is queued or running. */
	srvs_close_all(se);
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
	int shared = srv_find_peer_locked(srv, se->peer) != NULL;
	pthread_mutex_unlock(&srv->mu);
	srv_log(srv, QSVC_LOG_DEBUG, "session %" PRIu64 ": peer %" PRIu64 " %s", se->id, se->peer,
		shared ? "kept (another session uses it)" : "removed");
	if (!shared)
		qf_peer_remove(srv->ep, se->peer);
	free(se);
}

/* Unlinks and frees the sessions that ended or went silent. */
void srv_reap(struct qsrv *srv, int all)
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
