/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A client's session with quaid (docs/PROTOCOL.md): its own fabric
 * endpoint, the HELLO/WELCOME handshake, request/reply calls, a keepalive,
 * and the routing of what arrives unasked (batches landing in a stream's
 * slots, STREAM_END) to the object it is for. Shared by remote streams,
 * listings, pulls and pushes. Private to the library.
 */
#ifndef QUAI_STAGER_CONN_H
#define QUAI_STAGER_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "fabric.h"
#include "proto.h"

#define QCONN_DEFAULT_TIMEOUT_MS 15000

struct qconn;

/* What a stream or a transfer registers to hear about its own traffic.
 * Called on the fabric's progress thread, under the connection's lock:
 * they may take their own lock, but call nothing of the connection. */
struct qconn_sink {
	uint32_t tag; /* from qconn_tag(): bits 31..16 of the CQ data */
	uint64_t id;  /* stream or transfer id, once the server named it */
	void (*landed)(void *arg, uint32_t slot);	    /* a write into slot */
	void (*message)(void *arg, const struct qp_msg *m); /* e.g. STREAM_END */
	void (*dead)(void *arg, int err, const char *why);  /* the session ended */
	void *arg;
	struct qconn_sink *next;
};

/* A parsed quai://HOST[:PORT]/NAME. */
struct qconn_uri {
	char node[256];
	char service[16];
	char name[QP_NAME_MAX + 1]; /* "" for quai://HOST/ */
};

/* Parses uri. Returns 0, or -EINVAL with err saying what is wrong. */
int qconn_parse_uri(const char *uri, struct qconn_uri *ret, char *err, size_t err_len);

/* Connects to the server of `uri`: opens an endpoint ($FI_PROVIDER or
 * tcp;ofi_rxm), says HELLO, waits for WELCOME. Returns 0; -ETIMEDOUT,
 * -EHOSTUNREACH, -QUAI_EVERSION, or the server's refusal, with err naming
 * the server and the reason. */
int qconn_open(const struct qconn_uri *u, struct qconn **ret, char *err, size_t err_len);

/* Says BYE and closes. NULL is a no-op. Sinks must be removed first. */
void qconn_close(struct qconn *c);

struct qf_ep *qconn_ep(struct qconn *c);
uint64_t qconn_peer(struct qconn *c);
const struct qp_welcome *qconn_welcome(struct qconn *c);
/* "host:port", for messages. */
const char *qconn_name(struct qconn *c);
/* How long to wait for the server before giving up: $QUAI_REMOTE_TIMEOUT
 * seconds, else QCONN_DEFAULT_TIMEOUT_MS. */
int qconn_timeout_ms(struct qconn *c);

/* A tag for a new stream or transfer, unique on this connection. */
uint32_t qconn_tag(struct qconn *c);
void qconn_add_sink(struct qconn *c, struct qconn_sink *s);
void qconn_remove_sink(struct qconn *c, struct qconn_sink *s);

/* Sends req (its request id is assigned here) and waits for its reply,
 * decoded into *reply; reply blobs stay valid until the next call with the
 * same `reply`, whose buffer the connection owns (free it with
 * qconn_reply_free). An ERROR reply returns its code negated, with err
 * holding the server's message. Returns 0, -ETIMEDOUT, -ECONNRESET... */
struct qconn_reply {
	struct qp_msg m;
	uint8_t *raw;
	size_t raw_len;
};
int qconn_call(struct qconn *c, struct qp_msg *req, struct qconn_reply *reply, char *err,
	       size_t err_len);
void qconn_reply_free(struct qconn_reply *r);
/* qconn_call() for a request whose answer must be of type `want` (or an
 * ERROR): any other type gives -EPROTO, with err "answered REQ with TYPE". */
int qconn_call_for(struct qconn *c, struct qp_msg *req, unsigned want, struct qconn_reply *reply,
		   char *err, size_t err_len);

/* Parses uri and connects to its server (qconn_parse_uri, qconn_open);
 * with need_name, a URI that names no dataset is refused (-EINVAL, err
 * saying so). Returns 0 with *ret_uri and *ret, or what those return. */
int qconn_connect(const char *uri, int need_name, struct qconn_uri *ret_uri, struct qconn **ret,
		  char *err, size_t err_len);

/* Sends a message that has no reply (CREDIT, BYE), retrying back-pressure
 * for up to the timeout. Returns 0 or -errno. */
int qconn_send(struct qconn *c, struct qp_msg *m);

/* Sends a request without waiting; its reply comes to `cb` on the
 * progress thread (decoded; an ERROR as is). Returns the request id, or a
 * negative errno. For pipelined READ/PUT. */
typedef void (*qconn_reply_fn)(void *arg, const struct qp_msg *m);
int64_t qconn_post(struct qconn *c, struct qp_msg *req, qconn_reply_fn cb, void *arg);
/* Forgets a posted request whose reply is no longer wanted. */
void qconn_unpost(struct qconn *c, uint64_t req);

/* 0 while the session is alive, else why it ended (-ETIMEDOUT...), with
 * a message in err. */
int qconn_status(struct qconn *c, char *err, size_t err_len);

#endif /* QUAI_STAGER_CONN_H */
