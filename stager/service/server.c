/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quaid's service, its life: the server object made (pinned pool,
 * workers, listening endpoint, audit log, service threads), run until
 * stopped, reloaded on SIGHUP, stopped, and freed.
 *
 * The rest of the service, by job: srv_session.c (sessions, the
 * handshake, policy and audit), srv_dispatch.c (messages to service
 * threads), srv_catalog.c (ls, info, stat), srv_stream.c (remote streams
 * and their pumps), srv_xfer.c (pulls and pushes).
 *
 * Threads:
 *  - the fabric's progress thread decodes what arrives and queues
 *    requests (srv_dispatch.c);
 *  - service threads handle requests, each request whole;
 *  - one pump thread per remote stream (srv_stream.c), and one writer
 *    thread per push (srv_xfer.c);
 *  - qsrv_run's thread tears down sessions that ended, went silent past
 *    idle_timeout, or failed, and keeps the rate for STAT.
 * One lock (srv->mu) guards sessions, streams, transfers and the queue.
 */
#include "srv.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errmsg.h"

#define SRV_SERVICE_THREADS 4

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
	pthread_cond_init(&srv->courier_cv, NULL);
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

	srv_dispatch_init(srv);
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
	/* struct sockaddr_in or _in6 (AF_INET 2, AF_INET6 10): a TCP-based
	 * provider, whose connections the guard watches. */
	alen = sizeof(raw);
	if (qf_name(srv->ep, raw, &alen) == 0 && alen >= 4 && (raw[0] == 2 || raw[0] == 10) &&
	    raw[1] == 0)
		srv->listen_port = (unsigned)raw[2] << 8 | raw[3];
	if (srv_guard_new(srv) < 0) {
		r = -ENOMEM;
		goto fail;
	}
	srv->nsvc = SRV_SERVICE_THREADS;
	srv->svc = calloc(srv->nsvc, sizeof(*srv->svc));
	if (!srv->svc) {
		r = -ENOMEM;
		goto fail;
	}
	r = -pthread_create(&srv->courier, NULL, srv_courier_main, srv);
	if (r < 0) {
		qerr_set(err, err_len, "cannot start a thread: %s", strerror(-r));
		goto fail_quiet;
	}
	srv->courier_started = 1;
	for (unsigned i = 0; i < srv->nsvc; i++) {
		r = -pthread_create(&srv->svc[i], NULL, srv_service_main, srv);
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

void qsrv_set_policy(struct qsrv *srv, const struct qpol *policy)
{
	__atomic_store_n(&srv->policy, policy, __ATOMIC_RELEASE);
}

int qsrv_run(struct qsrv *srv)
{
	struct pollfd pfd = {.fd = srv->stop_pipe[0], .events = POLLIN};
	for (;;) {
		int n = poll(&pfd, 1, 500);
		if (n > 0)
			break;
		srv_reap(srv, 0);
		srv_guard_scan(srv);
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
	/* One deadline for every goodbye and every wait that follows: a
	 * client that died without a word costs it once, not once each. */
	__atomic_store_n(&srv->stop_by_ns, srv_now_ns() + SRV_STOP_WAIT_NS, __ATOMIC_RELEASE);
	pthread_mutex_lock(&srv->mu);
	srv->stopping = 1;
	for (struct session *se = srv->sessions; se; se = se->next)
		srvs_cancel_all_locked(se);
	pthread_cond_broadcast(&srv->cv);
	pthread_cond_broadcast(&srv->wq_cv);
	pthread_cond_broadcast(&srv->courier_cv);
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
	srv_reap(srv, 1);
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
	if (!__atomic_load_n(&srv->stop_by_ns, __ATOMIC_ACQUIRE))
		__atomic_store_n(&srv->stop_by_ns, srv_now_ns() + SRV_STOP_WAIT_NS,
				 __ATOMIC_RELEASE);
	pthread_mutex_lock(&srv->mu);
	srv->stopping = 1;
	pthread_cond_broadcast(&srv->cv);
	pthread_cond_broadcast(&srv->wq_cv);
	pthread_cond_broadcast(&srv->courier_cv);
	pthread_mutex_unlock(&srv->mu);
	if (srv->ep)
		srv_reap(srv, 1);
	for (unsigned i = 0; i < srv->nsvc; i++)
		pthread_join(srv->svc[i], NULL);
	free(srv->svc);
	if (srv->courier_started)
		pthread_join(srv->courier, NULL);
	srv_courier_drop(srv);
	srv_queue_drop(srv);
	srv_guard_free(srv->guard);
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
	pthread_cond_destroy(&srv->courier_cv);
	pthread_mutex_destroy(&srv->log_mu);
	free(srv);
}
