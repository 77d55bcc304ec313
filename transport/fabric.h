/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fabric: one libfabric RDM endpoint with its fabric, domain, address
 * vector and completion queue, and a progress thread of its own. Private to
 * the library; uses only libc and libfabric (DESIGN.md: transport/ never
 * includes compress/ or stager/).
 *
 * Messages are small (at most the msg_max given at open) and copied: the
 * caller's buffer is free when qf_send() returns. Bulk data moves by RMA
 * (qf_write, qf_read) between registered memory regions, without copies.
 *
 * Everything that arrives, and every local completion, is handed to the
 * handlers on the endpoint's progress thread, one call at a time. Handlers
 * must not block for long: the progress of every peer waits on them. They
 * may call qf_send(), qf_write(), qf_read() (never qf_close()).
 *
 * Errors are -errno: -FI_* codes of libfabric are converted at this
 * boundary (-FI_EAGAIN becomes -EAGAIN, meaning back-pressure: try again
 * after progress, see qf_wait_progress()). Functions are thread-safe unless
 * said otherwise.
 */
#ifndef QUAI_TRANSPORT_FABRIC_H
#define QUAI_TRANSPORT_FABRIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QF_ADDR_MAX 256		   /* raw endpoint address bytes */
#define QF_PEER_UNKNOWN UINT64_MAX /* a sender not (yet) in the address vector */
#define QF_DEFAULT_PROVIDER "tcp;ofi_rxm"

struct qf_ep;
struct qf_mr;

struct qf_handlers {
	/* A message of `len` bytes from `peer` (QF_PEER_UNKNOWN when the
	 * sender's address is not in this endpoint's address vector yet).
	 * `msg` is valid during the call only. */
	void (*on_msg)(void *arg, uint64_t peer, const void *msg, size_t len);
	/* A peer's qf_write() carrying `data` has landed, whole, in memory this
	 * endpoint registered with QF_REMOTE_WRITE. */
	void (*on_write_in)(void *arg, uint64_t peer, uint64_t data);
	/* A qf_write() or qf_read() of this endpoint finished: status 0, or a
	 * negative errno (-ECONNRESET, -EIO... e.g. the peer went away or the
	 * remote key was revoked). op_ctx is the caller's. */
	void (*on_done)(void *arg, void *op_ctx, int status);
	/* A send to `peer` failed after qf_send() accepted it (the peer is
	 * unreachable). May be NULL. */
	void (*on_send_error)(void *arg, uint64_t peer, int status);
	void *arg;
};

struct qf_opts {
	const char *provider; /* NULL: $FI_PROVIDER when set, else
				 QF_DEFAULT_PROVIDER; "tcp;ofi_rxm",
				 "verbs;ofi_rxm", "cxi", "shm", "sockets"... */
	const char *node;     /* with service: the address to listen on; NULL:
				 any address the provider picks; "0.0.0.0"
				 or "::": every interface (IP providers) */
	const char *service;
	size_t msg_max;	   /* largest message; 0 means 64 KiB */
	unsigned rx_depth; /* receive buffers posted; 0 means 64 */
	unsigned tx_depth; /* messages in flight before -EAGAIN; 0: 64 */
	const struct qf_handlers *h;
	/* A server of many peers (quaid). Only the first qf_open() of a
	 * process reads it, as libfabric loads: a process that is not a
	 * server gets the provider buffers of a client (QF_CLIENT_RX_BUFS). */
	bool server;
};

/* Receive buffers ofi_rxm posts on each message endpoint (its shared
 * receive context, over tcp) in a client process: FI_OFI_RXM_MSG_RX_SIZE,
 * set when libfabric loads unless the environment already sets it.
 * libfabric 1.17's default over tcp is 4096 of 16 KiB: 64 MiB zeroed and
 * faulted in by fi_enable(), for a client that has a few messages and at
 * most its ring's RMA writes in flight. */
#define QF_CLIENT_RX_BUFS "256"

/* Opens an endpoint and starts its progress thread. The provider's mode
 * and memory-registration bits are honoured (FI_CONTEXT/FI_CONTEXT2,
 * FI_RX_CQ_DATA, FI_MR_LOCAL, FI_MR_VIRT_ADDR, FI_MR_PROV_KEY,
 * FI_MR_ALLOCATED, FI_MR_ENDPOINT); providers needing what quai does not
 * do (FI_MR_RAW keys over 8 bytes, cq_data_size < 4) are refused.
 * Errors: -ENODATA when no provider by that name offers RDM endpoints with
 * messages and RMA (err names the provider and what is missing),
 * -EADDRINUSE, -EINVAL, -ENOMEM, other -errno; err says which call failed. */
int qf_open(const struct qf_opts *o, struct qf_ep **ret_ep, char *err, size_t err_len);

/* Stops the progress thread (handlers are not called after it returns),
 * closes every memory region still registered, the endpoint and the rest.
 * NULL is a no-op. Not from a handler. */
void qf_close(struct qf_ep *ep);

/* The provider actually in use ("tcp;ofi_rxm"), and the fabric's name. */
const char *qf_provider(const struct qf_ep *ep);

/* This endpoint's raw address (for a peer's qf_peer_insert()); *len in:
 * buffer size, out: address length. Returns 0 or -ENOSPC. */
int qf_name(struct qf_ep *ep, void *buf, size_t *len);

/* A peer's raw address, as the address vector holds it; *len in: buffer
 * size, out: address length. Returns 0, -ENOENT for an unknown peer, or
 * -ENOSPC. */
int qf_peer_addr(struct qf_ep *ep, uint64_t peer, void *buf, size_t *len);

/* Resolves node:service with this endpoint's provider and inserts it into
 * the address vector. Returns 0 and *ret_peer; -EHOSTUNREACH/-ENODATA
 * when it does not resolve. */
int qf_resolve(struct qf_ep *ep, const char *node, const char *service, uint64_t *ret_peer);

/* Inserts a raw address (from the peer's qf_name()). Inserting an address
 * already present returns the same peer. Returns 0 or -EINVAL. */
int qf_peer_insert(struct qf_ep *ep, const void *addr, size_t len, uint64_t *ret_peer);
/* Removes a peer; its messages then arrive as QF_PEER_UNKNOWN. */
int qf_peer_remove(struct qf_ep *ep, uint64_t peer);

enum {
	QF_LOCAL = 0x1,	       /* a source of qf_write / target of qf_read */
	QF_REMOTE_WRITE = 0x2, /* peers may qf_write() into it */
	QF_REMOTE_READ = 0x4,  /* peers may qf_read() from it */
};

/* Registers [buf, buf + len) for the QF_* accesses. Returns 0, -ENOMEM,
 * -EINVAL, or what the provider says. */
int qf_mr_reg(struct qf_ep *ep, void *buf, size_t len, unsigned access, struct qf_mr **ret_mr);
/* Deregisters: peers' operations on it fail from now on. NULL: no-op. */
void qf_mr_close(struct qf_mr *mr);
/* What a peer needs to reach byte p of the region: the key, and the
 * address (p itself with FI_MR_VIRT_ADDR, else its offset in the region). */
uint64_t qf_mr_key(const struct qf_mr *mr);
uint64_t qf_mr_addr(const struct qf_mr *mr, const void *p);

/* Sends a message (copied). Returns 0; -EAGAIN when tx_depth messages are
 * in flight or the provider pushes back; -EMSGSIZE over msg_max; -errno. */
int qf_send(struct qf_ep *ep, uint64_t peer, const void *msg, size_t len);
/* qf_send(), retrying on -EAGAIN for up to timeout_ms (-1: forever).
 * Returns 0, -ETIMEDOUT, or an error of qf_send(). Not from a handler. */
int qf_send_wait(struct qf_ep *ep, uint64_t peer, const void *msg, size_t len, int timeout_ms);

struct qf_iov {
	const void *buf;
	size_t len;
	struct qf_mr *mr; /* the registration holding buf (QF_LOCAL) */
};

/* RMA-writes the iovs back to back to (raddr, rkey) at peer, with remote
 * completion data `data` (at least 32 bits are carried; the peer's
 * on_write_in gets it once every byte is in its memory). Up to 4 iovs;
 * more than the provider's iov_limit are written in order-preserving
 * pieces, the data on the last. on_done(op_ctx) follows locally. Returns
 * 0, -EAGAIN (back-pressure), -EINVAL, -errno. */
int qf_write(struct qf_ep *ep, uint64_t peer, const struct qf_iov *iov, size_t n, uint64_t raddr,
	     uint64_t rkey, uint64_t data, void *op_ctx);

/* RMA-reads len bytes from (raddr, rkey) at peer into buf (inside mr,
 * registered QF_LOCAL). on_done(op_ctx) when they are there. Returns 0,
 * -EAGAIN, -errno. */
int qf_read(struct qf_ep *ep, uint64_t peer, void *buf, size_t len, struct qf_mr *mr,
	    uint64_t raddr, uint64_t rkey, void *op_ctx);

/* Largest qf_write()/qf_read() length; bytes of remote data carried (4 or 8). */
size_t qf_max_rma(const struct qf_ep *ep);
size_t qf_cq_data_size(const struct qf_ep *ep);

/* Blocks until the progress thread has completed something since the call
 * began, or timeout_ms passes: the wait after -EAGAIN. Returns 0 or
 * -ETIMEDOUT. Not from a handler. */
int qf_wait_progress(struct qf_ep *ep, int timeout_ms);

/* Counters, for quai stat and the bench. */
struct qf_stats {
	uint64_t msgs_in, msgs_out;
	uint64_t bytes_written, bytes_read; /* by this endpoint's RMA */
	uint64_t eagain;		    /* back-pressure events */
	uint64_t errors;
};
void qf_stats(struct qf_ep *ep, struct qf_stats *ret);

#endif /* QUAI_TRANSPORT_FABRIC_H */
