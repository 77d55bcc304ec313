/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quaid's service: sessions, remote streams, listings, pulls and pushes
 * over the fabric, on the staging engine. Private to the library; the
 * quaid program (tools/quaid.c) is a thin main over it.
 */
#ifndef QUAI_STAGER_SERVER_H
#define QUAI_STAGER_SERVER_H

#include <stddef.h>

#include "svcconf.h"

struct qsrv;

/* How the service reports: level is enum qsvc_log_level, msg one line
 * without newline. Called from any of the service's threads, one call at
 * a time. */
typedef void (*qsrv_log_fn)(int level, const char *msg, void *arg);

/* Creates the service: the pinned pool and workers, and the listening
 * endpoint (so an address in use fails here), and opens the audit log.
 * conf is copied, except its policy, which is borrowed: conf->policy must
 * outlive the service. Returns 0, or -errno / -QUAI_E* with err saying
 * what failed. */
int qsrv_new(const struct qsvc_conf *conf, qsrv_log_fn log, void *log_arg, struct qsrv **ret,
	     char *err, size_t err_len);

/* Serves until qsrv_stop(): then refuses new sessions, ends every stream
 * and transfer cleanly, says goodbye to clients and returns 0. */
int qsrv_run(struct qsrv *s);

/* Asks qsrv_run() to return. Async-signal-safe. */
void qsrv_stop(struct qsrv *s);

/* Re-reads what can change while running (the datasets under the roots)
 * and reopens the audit log (rotation). Thread-safe. */
void qsrv_reload(struct qsrv *s);

/* Puts `policy` in force for every request decided from now on (SIGHUP's
 * reload of the rules). Borrowed, like conf->policy at qsrv_new(): the
 * caller keeps every policy it ever gave alive until qsrv_free(), as a
 * decision already under way may still read the one it replaced. Its zone
 * must be the service's. Thread-safe. */
struct qpol;
void qsrv_set_policy(struct qsrv *s, const struct qpol *policy);

/* The address actually listened on ("127.0.0.1:7470"), after qsrv_new. */
const char *qsrv_address(const struct qsrv *s);

void qsrv_free(struct qsrv *s);

#endif /* QUAI_STAGER_SERVER_H */
