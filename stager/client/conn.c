/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The client side of a session with quaid: see conn.h.
 *
 * Everything the server sends arrives on the endpoint's progress thread
 * (on_msg): replies wake the caller waiting for their request id, or go to
 * the callback a pipelined request named; STREAM_END goes to the sink of
 * its stream. A keepalive thread pings the server and declares the session
 * dead when nothing has come back for the timeout, so that no caller waits
 * forever on a server that was killed.
 */
#include "conn.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "auth.h"
#include "errmsg.h"
#include "quai/quai.h"

struct pending {
	uint64_t req;
	int done;
	struct qconn_reply *reply; /* a waiting caller's */
	qconn_reply_fn cb;	   /* or a pipelined request's */
	void *arg;
	struct pending *next;
};

struct qconn {
	struct qconn_uri uri;
	char name[300];
	struct qf_ep *ep;
	uint64_t peer;
	struct qp_welcome welcome;
	int timeout_ms;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t next_req;
	uint32_t next_tag;
	struct pending *pending;
	struct qconn_sink *sinks;
	uint64_t last_rx_ns;
	int dead;
	char dead_msg[256];
	int stop;
	pthread_t keepalive;
	int keepalive_started;
	struct qf_handlers *h; /* the endpoint's: freed after it is closed */
};

static void deadline_in(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

int quai_uri_is_remote(const char *uri)
{
	return uri && strncmp(uri, "quai://", 7) == 0;
}

int qconn_parse_uri(const char *uri, struct qconn_uri *u, char *err, size_t err_len)
{
	memset(u, 0, sizeof(*u));
	if (!quai_uri_is_remote(uri)) {
		qerr_set(err, err_len, "%s: not a quai:// URI", uri);
		return -EINVAL;
	}
	const char *p = uri + 7, *host_end, *slash = strchr(p, '/');
	const char *end = slash ? slash : p + strlen(p);
	const char *port = NULL;
	if (*p == '[') { /* [IPv6]:port */
		const char *rb = memchr(p, ']', (size_t)(end - p));
		if (!rb) {
			qerr_set(err, err_len, "%s: missing ']' after an IPv6 address", uri);
			return -EINVAL;
		}
		if (rb + 1 < end && rb[1] != ':') {
			qerr_set(err, err_len, "%s: expected ':PORT' after ']'", uri);
			return -EINVAL;
		}
		port = rb + 1 < end ? rb + 2 : NULL;
		p++;
		host_end = rb;
	} else {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		host_end = colon ? colon : end;
		port = colon ? colon + 1 : NULL;
	}
	if (host_end == p || (size_t)(host_end - p) >= sizeof(u->node)) {
		qerr_set(err, err_len, "%s: %s host name", uri,
			 host_end == p ? "no" : "too long a");
		return -EINVAL;
	}
	memcpy(u->node, p, (size_t)(host_end - p));
	if (port) {
		size_t n = (size_t)(end - port);
		if (n == 0 || n >= sizeof(u->service) || strspn(port, "0123456789") < n ||
		    atoi(port) < 1 || atoi(port) > 65535) {
			qerr_set(err, err_len, "%s: the port must be a number 1..65535", uri);
			return -EINVAL;
		}
		memcpy(u->service, port, n);
	} else {
		snprintf(u->service, sizeof(u->service), "%s", "7470");
	}
	if (slash) {
		const char *name = slash + 1;
		size_t n = strlen(name);
		while (n && name[n - 1] == '/')
			n--;
		if (n > QP_NAME_MAX || memchr(name, '/', n) || (n == 1 && name[0] == '.') ||
		    (n == 2 && name[0] == '.' && name[1] == '.')) {
			qerr_set(err, err_len,
				 "%s: a dataset name is one path component of at most %d bytes, "
				 "not . or ..",
				 uri, QP_NAME_MAX);
			return -EINVAL;
		}
		memcpy(u->name, name, n);
	}
	return 0;
}

/* ---- what arrives ------------------------------------------------------ */

static void set_dead_locked(struct qconn *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_dead_locked(struct qconn *c, int err, const char *fmt, ...)
{
	if (c->dead)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->dead_msg, sizeof(c->dead_msg), fmt, ap);
	va_end(ap);
	c->dead = err;
	pthread_cond_broadcast(&c->cv);
}

static void notify_dead(struct qconn *c)
{
	/* Sinks are called under the connection's lock, so that none is
	 * removed and freed meanwhile; they take only their own lock. */
	pthread_mutex_lock(&c->mu);
	for (struct qconn_sink *s = c->sinks; s; s = s->next)
		if (s->dead)
			s->dead(s->arg, c->dead, c->dead_msg);
	pthread_mutex_unlock(&c->mu);
}

static void on_msg(void *arg, uint64_t peer, const void *msg, size_t len)
{
	struct qconn *c = arg;
	struct qp_msg *m = malloc(sizeof(*m));
	char derr[160];

	if (!m)
		return;
	if (peer != c->peer) {
		free(m);
		return; /* not from our server */
	}
	int r = qp_decode(msg, len, m, derr, sizeof(derr));
	pthread_mutex_lock(&c->mu);
	c->last_rx_ns = qclock_now_ns();
	if (r == -EPROTONOSUPPORT) {
		set_dead_locked(c, -QUAI_EVERSION,
				"%s speaks protocol version %u; this client speaks version %u",
				c->name, (unsigned)m->h.version, QP_VERSION);
		pthread_mutex_unlock(&c->mu);
		free(m);
		notify_dead(c);
		return;
	}
	if (r < 0) {
		set_dead_locked(c, -EBADMSG, "%s sent a malformed message: %s", c->name, derr);
		pthread_mutex_unlock(&c->mu);
		free(m);
		notify_dead(c);
		return;
	}
	if (m->h.type == QP_ERROR && m->h.req == 0) {
		/* About the session itself: it is over. */
		set_dead_locked(c, -m->u.error.code, "%s", m->u.error.message);
		pthread_mutex_unlock(&c->mu);
		free(m);
		notify_dead(c);
		return;
	}
	if (m->h.type == QP_STREAM_END) {
		struct qconn_sink *s;
		for (s = c->sinks; s; s = s->next)
			if (s->id == m->u.stream_end.stream && s->message)
				break;
		if (s)
			s->message(s->arg, m);
		pthread_mutex_unlock(&c->mu);
		free(m);
		return;
	}
	struct pending **pp, *p = NULL;
	for (pp = &c->pending; *pp; pp = &(*pp)->next)
		if ((*pp)->req == m->h.req) {
			p = *pp;
			break;
		}
	if (!p) {
		pthread_mutex_unlock(&c->mu);
		free(m);
		return; /* a PONG, or a reply nobody waits for any more */
	}
	if (p->cb) {
		*pp = p->next;
		pthread_mutex_unlock(&c->mu);
		p->cb(p->arg, m);
		free(p);
		free(m);
		return;
	}
	/* A waiting caller gets its own copy of the bytes, decoded again in
	 * its thread so that blobs point into memory it owns. */
	uint8_t *raw = malloc(len);
	if (raw) {
		memcpy(raw, msg, len);
		free(p->reply->raw);
		p->reply->raw = raw;
		p->reply->raw_len = len;
	}
	p->done = raw ? 1 : -ENOMEM;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	free(m);
}

static void on_write_in(void *arg, uint64_t peer, uint64_t data)
{
	struct qconn *c = arg;
	uint32_t tag = (uint32_t)(data >> 16) & 0xffffu, slot = (uint32_t)data & 0xffffu;
	if (peer != c->peer && peer != QF_PEER_UNKNOWN)
		return;
	pthread_mutex_lock(&c->mu);
	c->last_rx_ns = qclock_now_ns();
	struct qconn_sink *s;
	for (s = c->sinks; s; s = s->next)
		if (s->tag == tag)
			break;
	if (s && s->landed)
		s->landed(s->arg, slot);
	pthread_mutex_unlock(&c->mu);
}

static void on_send_error(void *arg, uint64_t peer, int status)
{
	struct qconn *c = arg;
	(void)peer;
	pthread_mutex_lock(&c->mu);
	set_dead_locked(c, -ECONNRESET, "%s: the connection failed (%s)", c->name,
			strerror(-status));
	pthread_mutex_unlock(&c->mu);
	notify_dead(c);
}

static void *keepalive_main(void *arg)
{
	struct qconn *c = arg;
	pthread_mutex_lock(&c->mu);
	while (!c->stop && !c->dead) {
		struct timespec ts;
		deadline_in(&ts, 1000);
		pthread_cond_timedwait(&c->cv, &c->mu, &ts);
		if (c->stop || c->dead)
			break;
		uint64_t quiet = qclock_now_ns() - c->last_rx_ns;
		if (quiet > (uint64_t)c->timeout_ms * 1000000ull) {
			set_dead_locked(c, -ETIMEDOUT, "%s stopped answering (nothing for %d s)",
					c->name, c->timeout_ms / 1000);
			pthread_mutex_unlock(&c->mu);
			notify_dead(c);
			pthread_mutex_lock(&c->mu);
			break;
		}
		if (quiet > 1000000000ull) {
			struct qp_msg m = {.h.type = QP_PING,
					   .h.req = c->next_req++,
					   .h.session = (uint32_t)c->welcome.session};
			uint8_t buf[64];
			m.u.ping.stamp = qclock_now_ns();
			int n = qp_encode(&m, buf, sizeof(buf));
			pthread_mutex_unlock(&c->mu);
			if (n > 0)
				qf_send(c->ep, c->peer, buf, (size_t)n); /* -EAGAIN: the next one */
			pthread_mutex_lock(&c->mu);
		}
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* ---- calls ------------------------------------------------------------- */

static int send_encoded(struct qconn *c, struct qp_msg *m)
{
	uint8_t *buf = malloc(QP_MSG_MAX);
	if (!buf)
		return -ENOMEM;
	m->h.session = (uint32_t)c->welcome.session; /* 0 until WELCOME */
	int n = qp_encode(m, buf, QP_MSG_MAX);
	int r = n < 0 ? n : qf_send_wait(c->ep, c->peer, buf, (size_t)n, c->timeout_ms);
	free(buf);
	return r;
}

int qconn_send(struct qconn *c, struct qp_msg *m)
{
	pthread_mutex_lock(&c->mu);
	if (!m->h.req)
		m->h.req = c->next_req++;
	int dead = c->dead;
	pthread_mutex_unlock(&c->mu);
	return dead ? dead : send_encoded(c, m);
}

static int decode_reply(struct qconn *c, struct qconn_reply *reply, char *err, size_t err_len)
{
	char derr[160];
	int r = qp_decode(reply->raw, reply->raw_len, &reply->m, derr, sizeof(derr));
	if (r < 0) {
		qerr_set(err, err_len, "%s: malformed reply: %s", c->name, derr);
		return -EBADMSG;
	}
	if (reply->m.h.type == QP_ERROR) {
		qerr_set(err, err_len, "%s", reply->m.u.error.message);
		return -reply->m.u.error.code;
	}
	return 0;
}

int qconn_call_for(struct qconn *c, struct qp_msg *req, unsigned want, struct qconn_reply *reply,
		   char *err, size_t err_len)
{
	unsigned asked = req->h.type;
	int r = qconn_call(c, req, reply, err, err_len);

	if (r == 0 && reply->m.h.type != want) {
		qerr_set(err, err_len, "answered %s with %s", qp_type_name(asked),
			 qp_type_name(reply->m.h.type));
		r = -EPROTO;
	}
	return r;
}

int qconn_connect(const char *uri, int need_name, struct qconn_uri *ret_uri, struct qconn **ret,
		  char *err, size_t err_len)
{
	int r = qconn_parse_uri(uri, ret_uri, err, err_len);

	if (r < 0)
		return r;
	if (need_name && !ret_uri->name[0]) {
		qerr_set(err, err_len, "%s: no dataset name (quai://HOST[:PORT]/NAME)", uri);
		return -EINVAL;
	}
	return qconn_open(ret_uri, ret, err, err_len);
}

int qconn_call(struct qconn *c, struct qp_msg *req, struct qconn_reply *reply, char *err,
	       size_t err_len)
{
	struct pending p = {.reply = reply};
	pthread_mutex_lock(&c->mu);
	if (c->dead) {
		qerr_set(err, err_len, "%s", c->dead_msg);
		int e = c->dead;
		pthread_mutex_unlock(&c->mu);
		return e;
	}
	p.req = req->h.req = c->next_req++;
	p.next = c->pending;
	c->pending = &p;
	pthread_mutex_unlock(&c->mu);

	int r = send_encoded(c, req);
	pthread_mutex_lock(&c->mu);
	if (r < 0)
		qerr_set(err, err_len, "%s: cannot send %s: %s", c->name, qp_type_name(req->h.type),
			 strerror(-r));
	/* No fixed deadline: a long request (COMMIT verifies a whole dataset)
	 * is fine as long as the server answers pings; the keepalive ends the
	 * wait when it stops. */
	while (r == 0 && !p.done && !c->dead)
		pthread_cond_wait(&c->cv, &c->mu);
	for (struct pending **pp = &c->pending; *pp; pp = &(*pp)->next)
		if (*pp == &p) {
			*pp = p.next;
			break;
		}
	if (r == 0 && !p.done) {
		qerr_set(err, err_len, "%s", c->dead_msg);
		r = c->dead;
	}
	pthread_mutex_unlock(&c->mu);
	if (r < 0)
		return r;
	if (p.done < 0)
		return p.done;
	return decode_reply(c, reply, err, err_len);
}

void qconn_reply_free(struct qconn_reply *r)
{
	if (r) {
		free(r->raw);
		r->raw = NULL;
	}
}

int64_t qconn_post(struct qconn *c, struct qp_msg *req, qconn_reply_fn cb, void *arg)
{
	struct pending *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	pthread_mutex_lock(&c->mu);
	if (c->dead) {
		int e = c->dead;
		pthread_mutex_unlock(&c->mu);
		free(p);
		return e;
	}
	p->req = req->h.req = c->next_req++;
	p->cb = cb;
	p->arg = arg;
	p->next = c->pending;
	c->pending = p;
	pthread_mutex_unlock(&c->mu);
	int r = send_encoded(c, req);
	if (r < 0) {
		qconn_unpost(c, req->h.req);
		return r;
	}
	return (int64_t)req->h.req;
}

void qconn_unpost(struct qconn *c, uint64_t req)
{
	pthread_mutex_lock(&c->mu);
	for (struct pending **pp = &c->pending; *pp; pp = &(*pp)->next)
		if ((*pp)->req == req && (*pp)->cb) {
			struct pending *p = *pp;
			*pp = p->next;
			free(p);
			break;
		}
	pthread_mutex_unlock(&c->mu);
}

int qconn_status(struct qconn *c, char *err, size_t err_len)
{
	pthread_mutex_lock(&c->mu);
	int e = c->dead;
	if (e)
		qerr_set(err, err_len, "%s", c->dead_msg);
	pthread_mutex_unlock(&c->mu);
	return e;
}

/* ---- open and close ---------------------------------------------------- */

int qconn_open(const struct qconn_uri *u, struct qconn **ret, char *err, size_t err_len)
{
	static const struct qf_handlers h0 = {0};
	struct qconn *c = calloc(1, sizeof(*c));
	struct qf_handlers *h = NULL;
	char ferr[256];
	int r;

	if (!c)
		return -ENOMEM;
	c->uri = *u;
	if (strchr(u->node, ':'))
		snprintf(c->name, sizeof(c->name), "quaid at [%s]:%s", u->node, u->service);
	else
		snprintf(c->name, sizeof(c->name), "quaid at %s:%s", u->node, u->service);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->next_req = 1;
	c->next_tag = 1;
	c->timeout_ms = QCONN_DEFAULT_TIMEOUT_MS;
	const char *t = getenv("QUAI_REMOTE_TIMEOUT");
	if (t && atoi(t) > 0)
		c->timeout_ms = atoi(t) * 1000;
	c->last_rx_ns = qclock_now_ns();

	/* The handlers live as long as the endpoint: inside the connection. */
	h = malloc(sizeof(*h));
	if (!h) {
		r = -ENOMEM;
		goto fail;
	}
	*h = h0;
	h->on_msg = on_msg;
	h->on_write_in = on_write_in;
	h->on_send_error = on_send_error;
	h->arg = c;
	c->h = h;
	struct qf_opts fo = {.msg_max = QP_MSG_MAX, .rx_depth = 16, .tx_depth = 32, .h = h};
	r = qf_open(&fo, &c->ep, ferr, sizeof(ferr));
	if (r < 0) {
		qerr_set(err, err_len, "cannot open a fabric endpoint: %s", ferr);
		goto fail;
	}
	r = qf_resolve(c->ep, u->node, u->service, &c->peer);
	if (r < 0) {
		qerr_set(err, err_len, "%s: the address does not resolve with provider %s", c->name,
			 qf_provider(c->ep));
		r = -EHOSTUNREACH;
		goto fail;
	}

	struct qp_msg *m = calloc(1, sizeof(*m));
	uint8_t addr[QF_ADDR_MAX];
	size_t alen = sizeof(addr);
	if (!m) {
		r = -ENOMEM;
		goto fail;
	}
	r = qf_name(c->ep, addr, &alen);
	if (r < 0) {
		free(m);
		qerr_set(err, err_len, "cannot read this endpoint's address: %s", strerror(-r));
		goto fail;
	}
	m->h.type = QP_HELLO;
	m->u.hello.addr = (struct qp_blob){addr, alen};
	if (gethostname(m->u.hello.host, sizeof(m->u.hello.host) - 1) < 0)
		snprintf(m->u.hello.host, sizeof(m->u.hello.host), "%s", "unknown");
	m->u.hello.pid = (uint32_t)getpid();

	/* A MUNGE credential bound to this endpoint and that server. Without
	 * one nothing is sent (issue 22 #10): a broken munged must not turn a
	 * user's session into an anonymous one, nor show quaid who is
	 * knocking. A client asks for an unauthenticated session only on
	 * purpose, with QUAI_AUTH=none (a quaid with `unauthenticated =
	 * public` serves it public datasets; any other refuses it). */
	char *cred = NULL, sock[256], cred_err[512] = "";
	uint8_t saddr[QF_ADDR_MAX];
	size_t slen = sizeof(saddr);
	const char *auth = secure_getenv("QUAI_AUTH");
	bool anonymous = auth && strcmp(auth, "none") == 0;
	if (auth && *auth && !anonymous && strcmp(auth, "munge") != 0) {
		free(m);
		qerr_set(err, err_len, "QUAI_AUTH: '%s': expected munge (the default) or none",
			 auth);
		r = -EINVAL;
		goto fail;
	}
	r = anonymous ? 1 : qauth_client_socket(sock, sizeof(sock), cred_err, sizeof(cred_err));
	if (r == 0) {
		r = qf_peer_addr(c->ep, c->peer, saddr, &slen);
		if (r < 0)
			snprintf(cred_err, sizeof(cred_err), "cannot read the server's address: %s",
				 strerror(-r));
	}
	if (r == 0)
		r = qauth_munge_encode(sock, addr, alen, saddr, slen, &cred, cred_err,
				       sizeof(cred_err));
	if (r == 0 && strlen(cred) <= QP_AUTH_MAX) {
		snprintf(m->u.hello.auth_kind, sizeof(m->u.hello.auth_kind), "%s",
			 QAUTH_KIND_MUNGE);
		m->u.hello.auth = (struct qp_blob){(const uint8_t *)cred, strlen(cred)};
	} else if (r == 0) {
		snprintf(cred_err, sizeof(cred_err), "the credential is over %u bytes",
			 QP_AUTH_MAX);
		r = -EMSGSIZE;
	}
	if (r < 0) {
		free(m);
		free(cred);
		qerr_set(err, err_len,
			 "%s: no MUNGE credential, so nothing was sent: %s (QUAI_AUTH=none "
			 "connects without one, to a quaid that serves unauthenticated clients)",
			 c->name, cred_err);
		r = -EACCES;
		goto fail;
	}

	r = -pthread_create(&c->keepalive, NULL, keepalive_main, c);
	if (r < 0) {
		free(m);
		free(cred);
		qerr_set(err, err_len, "cannot start a thread: %s", strerror(-r));
		goto fail;
	}
	c->keepalive_started = 1;

	struct qconn_reply rep = {0};
	char cerr[QP_TEXT_MAX + 1];
	r = qconn_call_for(c, m, QP_WELCOME, &rep, cerr, sizeof(cerr));
	free(m);
	free(cred);
	if (r < 0) {
		qconn_reply_free(&rep);
		if (r == -ETIMEDOUT)
			qerr_set(err, err_len,
				 "%s did not answer within %d s (is quaid running there, "
				 "with provider %s?)",
				 c->name, c->timeout_ms / 1000, qf_provider(c->ep));
		else if (r == -EACCES && anonymous)
			qerr_set(err, err_len,
				 "%s: %s (QUAI_AUTH=none: this client sent no credential)", c->name,
				 cerr);
		else
			qerr_set(err, err_len, "%s: %s", c->name, cerr);
		/* Not let in: the site's policy refused this client. */
		if (r == -EACCES)
			r = -QUAI_EPOLICY;
		goto fail;
	}
	c->welcome = rep.m.u.welcome;
	qconn_reply_free(&rep);
	*ret = c;
	return 0;
fail:
	qconn_close(c);
	return r;
}

void qconn_close(struct qconn *c)
{
	if (!c)
		return;
	if (c->ep && c->welcome.session) {
		struct qp_msg m = {.h.type = QP_BYE, .h.session = (uint32_t)c->welcome.session};
		uint8_t buf[64];
		int n = qp_encode(&m, buf, sizeof(buf));
		if (n > 0 && !c->dead)
			qf_send_wait(c->ep, c->peer, buf, (size_t)n, 1000);
	}
	pthread_mutex_lock(&c->mu);
	c->stop = 1;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	if (c->keepalive_started)
		pthread_join(c->keepalive, NULL);
	/* The endpoint's handlers table is the connection's: keep it until the
	 * progress thread is gone. */
	qf_close(c->ep);
	free(c->h);
	while (c->pending) {
		struct pending *p = c->pending;
		c->pending = p->next;
		if (p->cb)
			free(p);
	}
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}

struct qf_ep *qconn_ep(struct qconn *c)
{
	return c->ep;
}
uint64_t qconn_peer(struct qconn *c)
{
	return c->peer;
}
const struct qp_welcome *qconn_welcome(struct qconn *c)
{
	return &c->welcome;
}
const char *qconn_name(struct qconn *c)
{
	return c->name;
}
int qconn_timeout_ms(struct qconn *c)
{
	return c->timeout_ms;
}

uint32_t qconn_tag(struct qconn *c)
{
	pthread_mutex_lock(&c->mu);
	uint32_t t = c->next_tag++ & 0xffffu;
	if (!t)
		t = c->next_tag++ & 0xffffu;
	pthread_mutex_unlock(&c->mu);
	return t;
}

void qconn_add_sink(struct qconn *c, struct qconn_sink *s)
{
	pthread_mutex_lock(&c->mu);
	s->next = c->sinks;
	c->sinks = s;
	pthread_mutex_unlock(&c->mu);
}

void qconn_remove_sink(struct qconn *c, struct qconn_sink *s)
{
	pthread_mutex_lock(&c->mu);
	for (struct qconn_sink **pp = &c->sinks; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	pthread_mutex_unlock(&c->mu);
}
