/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quaid's service, inside: the server object, sessions, and what its
 * files share: server.c (the server's life), srv_session.c (sessions, the
 * handshake, policy and audit), srv_dispatch.c (messages to service
 * threads), srv_catalog.c (ls, info, stat), srv_stream.c (remote streams)
 * and srv_xfer.c (pulls and pushes). Private to the library.
 */
#ifndef QUAI_STAGER_SRV_H
#define QUAI_STAGER_SRV_H

#include <pthread.h>
#include <stdint.h>

#include "audit.h"
#include "auth.h"
#include "engine.h"
#include "fabric.h"
#include "manifest.h"
#include "policy.h"
#include "proto.h"
#include "server.h"

/* How long a reply may wait for the fabric's room (back-pressure, a
 * connection being made); while stopping, at most what is left of the
 * stop's deadline. */
#define SRV_SEND_TIMEOUT_MS 5000
/* How long stopping may wait for clients, all of them together. */
#define SRV_STOP_WAIT_NS (5ull * 1000000000ull)

/* Every RMA operation the server posts starts with this: on_done calls
 * done(op, status) on the progress thread. */
struct srv_op {
	void (*done)(struct srv_op *op, int status);
};

struct sstream;
struct sxfer;
struct parcel;
struct srv_guard;

struct session {
	struct qsrv *srv;
	uint64_t id;	/* for logs: "session 7" */
	uint32_t token; /* random, nonzero: the id messages name it by */
	uint64_t peer;
	char host[QP_NAME_MAX + 1]; /* as the client declared it */
	uint32_t pid;
	int authed;		   /* who holds: the client's MUNGE credential */
	struct qauth_identity who; /* was checked (else nobody is known) */
	uint64_t last_rx_ns;
	uint64_t mem_used; /* pinned bytes held for this client */
	unsigned nstreams;
	int refs; /* work items and operations that still use it */
	int dead; /* being torn down: no new work */
	int bye;  /* the client ended it (BYE): nothing to tell it */
	char why[256];
	struct sstream *streams;
	struct sxfer *xfers;
	uint64_t bytes_out, bytes_in;
	struct session *next;
};

struct qsrv {
	struct qsvc_conf conf;
	qsrv_log_fn log;
	void *log_arg;
	pthread_mutex_t log_mu;

	quai_ctx *ctx;
	const struct qpol *policy; /* the caller's conf->policy, borrowed */
	struct qaudit *audit;	   /* NULL: no audit_log */
	struct qf_ep *ep;
	struct qf_mr *pool_mr; /* the whole pinned pool: every buffer we post */
	struct qf_handlers h;
	char addr[300];
	struct qp_msg *rx; /* the progress thread's decode buffer */

	pthread_mutex_t mu;
	pthread_cond_t cv;    /* streams and transfers wait here */
	pthread_cond_t wq_cv; /* the service threads wait here for work: kept
				 apart so that the credits and completions of
				 the data path do not wake them all */
	struct session *sessions;
	unsigned nsessions;
	uint64_t next_id;
	struct work *wq_head, *wq_tail;
	struct work *wq_spare; /* small work items kept for the next requests */
	unsigned nspare;
	struct srv_guard *guard; /* connections without sessions (srv_guard.c) */
	unsigned listen_port;	 /* 0: not a TCP-based provider's */
	pthread_t courier;	 /* sends the replies to HELLOs (srv_courier.c) */
	int courier_started;
	pthread_cond_t courier_cv;
	struct parcel *parcels; /* its queue */
	unsigned nparcels;
	uint64_t parcels_dropped; /* atomic: over its bound */
	pthread_t *svc;
	unsigned nsvc;
	int stopping;
	uint64_t stop_by_ns; /* atomic; once stopping: every wait of the stop
				ends by then, whatever the number of clients */
	int stop_pipe[2];

	uint64_t started_ns;
	uint64_t bytes_served, batches_served, streams_opened, sessions_total;
	uint64_t rate_bytes, rate_ns;
	uint64_t rate_bps; /* bytes served per second, over the last second */
};

uint64_t srv_now_ns(void);

/* How long a wait that began at t0 may last: 1 once limit_ns has passed,
 * or, when quaid is stopping, once the stop's one deadline has (so that
 * stopping takes one timeout, not one per session). Any thread. */
int srv_overdue(struct qsrv *srv, uint64_t t0, uint64_t limit_ns);
void srv_log(struct qsrv *srv, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sends m (h.req set by the caller) to the session's client, retrying
 * back-pressure for a while. Not from the progress thread. */
int srv_send(struct session *se, struct qp_msg *m);
/* Sends OK / ERROR for request `req`. err is a negative code. */
int srv_ok(struct session *se, uint64_t req);
int srv_error(struct session *se, uint64_t req, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Ends a session: it is torn down by the service loop. Under srv->mu. */
void srv_kill_locked(struct session *se, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The directory of dataset `name` under the roots (or push_root), with a
 * manifest. Returns 0, -ENOENT, or -EINVAL for a name that is not one. */
int srv_dataset_path(struct qsrv *srv, const char *name, char *buf, size_t len);

/* Decides one access by the policy and writes its audit line; a refusal
 * is answered (ERROR -QUAI_EPOLICY with the reason, or -EIO when the audit
 * line cannot be written: nothing is granted unaudited). op: enum qpol_op;
 * what: the operation's name in the audit log ("list", "info", "stat",
 * "stream", "pull", "push"). dataset "" or NULL: a request about no
 * dataset. bytes: what the access covers, -1 when not known. Returns 1
 * when granted, 0 when refused. Not under srv->mu. */
int srv_authorize(struct session *se, uint64_t req, int op, const char *what, const char *dataset,
		  int classification, const char *zone, int64_t bytes);

/* Accounting of a session's pinned memory. Under srv->mu. Returns 0 or
 * -ENOBUFS. */
int srv_mem_take_locked(struct session *se, uint64_t bytes);
void srv_mem_give_locked(struct session *se, uint64_t bytes);

/* The policy in force: qsrv_set_policy() may replace it at any time. */
static inline const struct qpol *srv_policy(const struct qsrv *srv)
{
	return __atomic_load_n(&srv->policy, __ATOMIC_ACQUIRE);
}

/* Decides one access by the policy, writing no audit line (for what is
 * decided again, or listed silently). Returns 1 when allowed, 0 when not,
 * with d saying why. Not under srv->mu. */
int srv_decide(struct session *se, int op, const char *dataset, int cls, const char *zone,
	       struct qpol_decision *d);

/* The live session of fabric address `peer`, or of header token `token`;
 * NULL when none. Under srv->mu. */
struct session *srv_find_peer_locked(struct qsrv *srv, uint64_t peer);
struct session *srv_find_token_locked(struct qsrv *srv, uint32_t token);

/* Handles a HELLO (queued with no session): checks its credential and
 * answers WELCOME, or a refusal. Service thread. */
void srv_hello(struct qsrv *srv, const struct qp_msg *m);

/* Unlinks and frees the sessions that ended or went silent; all of them
 * when `all`. qsrv_run's thread only. */
void srv_reap(struct qsrv *srv, int all);

/* Dispatch (srv_dispatch.c): fills srv->h with the fabric's handlers;
 * the service threads' main; and, once they have ended, frees what is
 * still queued and the spare work items. */
void srv_dispatch_init(struct qsrv *srv);
void *srv_service_main(void *arg);
void srv_queue_drop(struct qsrv *srv);

/* The courier (srv_courier.c). srv_courier_send queues m for `peer`, a
 * HELLO's claimed address, without waiting: the courier sends it within
 * 5 s or drops it. forget: remove the peer afterwards unless a session
 * uses it (a refused HELLO). Returns 0, or -ENOBUFS (the queue is full),
 * -ESHUTDOWN or an encoding error: nothing is sent then. Not under
 * srv->mu. srv_courier_main is the courier's thread; srv_courier_drop,
 * once it has ended, drops what is left. */
int srv_courier_send(struct qsrv *srv, uint64_t peer, const struct qp_msg *m, int forget);
void *srv_courier_main(void *arg);
void srv_courier_drop(struct qsrv *srv);

/* The connection guard (srv_guard.c): made by qsrv_new (srv->guard);
 * scan, from qsrv_run's thread only, shuts down the connections to the
 * listening port on which nothing arrived within handshake_timeout, and
 * a host's newest beyond max_host_connections, and logs what it did. Returns 0 or -ENOMEM. */
int srv_guard_new(struct qsrv *srv);
void srv_guard_scan(struct qsrv *srv);
void srv_guard_free(struct srv_guard *g);

/* Whether `name` may name a dataset here: a manifest's name rule, and no
 * leading dot (partial directories). Returns 1 or 0. */
int srv_valid_name(const char *name);

/* Reads and parses the manifest of the dataset in directory `path`; the
 * text too when ret_text is given (free() it). Returns 0 or -errno /
 * -QUAI_EFORMAT with err. */
int srv_load_manifest(const char *path, const char *name, struct qmf *mf, uint8_t **ret_text,
		      size_t *ret_len, char *err, size_t err_len);

/* Catalog requests (srv_catalog.c): LIST, MANIFEST, STAT. Service thread. */
void srvc_list(struct session *se, const struct qp_msg *m);
void srvc_manifest(struct session *se, const struct qp_msg *m);
void srvc_stat(struct session *se, const struct qp_msg *m);

/* Remote streams (srv_stream.c). open, slots and close each handle one
 * request in a service thread; credit_locked runs on the progress thread,
 * under srv->mu. cancel_all_locked wakes every pump of a session that is
 * ending (under srv->mu); close_all tears a dying session's streams down. */
void srvs_open(struct session *se, const struct qp_msg *m);
void srvs_slots(struct session *se, const struct qp_msg *m);
void srvs_close(struct session *se, const struct qp_msg *m);
void srvs_credit_locked(struct session *se, const struct qp_credit *c);
void srvs_cancel_all_locked(struct session *se);
void srvs_close_all(struct session *se);

/* Pulls and pushes (srv_xfer.c). Each handles one request in a service
 * thread; xfer_close_all tears a dying session's transfers down. */
void srvx_pull_open(struct session *se, const struct qp_msg *m);
void srvx_push_open(struct session *se, const struct qp_msg *m);
int srvx_slots(struct session *se, const struct qp_msg *m); /* -ENOENT: not a transfer */
void srvx_read(struct session *se, const struct qp_msg *m);
void srvx_put(struct session *se, const struct qp_msg *m);
void srvx_push_status(struct session *se, const struct qp_msg *m);
void srvx_commit(struct session *se, const struct qp_msg *m);
void srvx_close(struct session *se, const struct qp_msg *m);
void srvx_close_all(struct session *se);

#endif /* QUAI_STAGER_SRV_H */
