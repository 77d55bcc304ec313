/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The courier: quaid's replies to HELLOs (WELCOME, and refusals), sent by
 * one thread of their own rather than by the service thread that decided
 * them. A HELLO's address is only a claim until the client answers from
 * it: the first message to a new peer waits for a connection to it, which
 * an address that leads nowhere never completes. A service thread that
 * waited (5 s a reply, as it did) could be held by a handful of bogus
 * HELLOs, and every client with it; the courier instead tries each of its
 * replies in turn without waiting on any, until each goes out or its
 * deadline passes. Its queue is bounded, and dropped when quaid stops.
 */
#include "srv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Replies waiting at once; more are dropped (the client times out). */
#define COURIER_MAX 1024u
/* How long a reply may wait for its connection. */
#define COURIER_WAIT_NS (5ull * 1000000000ull)

struct parcel {
	uint64_t peer;
	uint64_t deadline_ns;
	int drop_peer; /* remove the peer once done, unless a session uses it */
	size_t len;
	struct parcel *next;
	uint8_t msg[];
};

/* Forgets a peer that no session uses. */
static void drop_peer(struct qsrv *srv, uint64_t peer)
{
	pthread_mutex_lock(&srv->mu);
	int known = srv_find_peer_locked(srv, peer) != NULL;
	pthread_mutex_unlock(&srv->mu);
	if (!known)
		qf_peer_remove(srv->ep, peer);
}

/* The parcel is through (sent, refused by the fabric, or out of time). */
static void deliver_done(struct qsrv *srv, struct parcel *p, int r)
{
	if (r < 0)
		srv_log(srv, QSVC_LOG_DEBUG, "a reply to a HELLO was not sent: %s", strerror(-r));
	if (p->drop_peer)
		drop_peer(srv, p->peer);
	free(p);
}

int srv_courier_send(struct qsrv *srv, uint64_t peer, const struct qp_msg *m, int forget)
{
	uint8_t buf[QP_MSG_MAX];
	int n = qp_encode(m, buf, sizeof(buf));
	struct parcel *p = n < 0 ? NULL : malloc(sizeof(*p) + (size_t)n);
	int r = n < 0 ? n : p ? 0 : -ENOMEM;
	if (p) {
		*p = (struct parcel){.peer = peer,
				     .deadline_ns = srv_now_ns() + COURIER_WAIT_NS,
				     .drop_peer = forget,
				     .len = (size_t)n};
		memcpy(p->msg, buf, (size_t)n);
		pthread_mutex_lock(&srv->mu);
		if (srv->stopping || srv->nparcels >= COURIER_MAX) {
			r = srv->stopping ? -ESHUTDOWN : -ENOBUFS;
		} else {
			p->next = srv->parcels;
			srv->parcels = p;
			srv->nparcels++;
			pthread_cond_signal(&srv->courier_cv);
		}
		pthread_mutex_unlock(&srv->mu);
	}
	if (r == -ENOBUFS) {
		uint64_t dropped = __atomic_add_fetch(&srv->parcels_dropped, 1, __ATOMIC_RELAXED);
		/* Once, and then every 1000th: a flood must not flood the log. */
		if (dropped % 1000 == 1)
			srv_log(srv, QSVC_LOG_WARNING,
				"%u replies to HELLOs wait already for their clients: dropping "
				"more (%" PRIu64 " so far)",
				COURIER_MAX, dropped);
	}
	if (r < 0) {
		free(p);
		if (forget)
			drop_peer(srv, peer);
	}
	return r;
}

void *srv_courier_main(void *arg)
{
	struct qsrv *srv = arg;
	pthread_mutex_lock(&srv->mu);
	for (;;) {
		while (!srv->parcels && !srv->stopping)
			pthread_cond_wait(&srv->courier_cv, &srv->mu);
		if (srv->stopping)
			break;
		struct parcel *todo = srv->parcels, *kept = NULL;
		srv->parcels = NULL;
		pthread_mutex_unlock(&srv->mu);
		/* One try each: none waits on another's connection. */
		unsigned done = 0;
		while (todo) {
			struct parcel *p = todo;
			todo = p->next;
			int r = qf_send(srv->ep, p->peer, p->msg, p->len);
			if (r == -EAGAIN && srv_now_ns() < p->deadline_ns) {
				p->next = kept;
				kept = p;
				continue;
			}
			deliver_done(srv, p, r == -EAGAIN ? -ETIMEDOUT : r);
			done++;
		}
		pthread_mutex_lock(&srv->mu);
		srv->nparcels -= done;
		if (kept) {
			/* Back with the new ones; the fabric moves on meanwhile. */
			struct parcel *last = kept;
			while (last->next)
				last = last->next;
			last->next = srv->parcels;
			srv->parcels = kept;
			pthread_mutex_unlock(&srv->mu);
			qf_wait_progress(srv->ep, 2);
			pthread_mutex_lock(&srv->mu);
		}
	}
	pthread_mutex_unlock(&srv->mu);
	return NULL;
}

void srv_courier_drop(struct qsrv *srv)
{
	pthread_mutex_lock(&srv->mu);
	struct parcel *p = srv->parcels;
	srv->parcels = NULL;
	srv->nparcels = 0;
	pthread_mutex_unlock(&srv->mu);
	while (p) {
		struct parcel *next = p->next;
		deliver_done(srv, p, -ESHUTDOWN);
		p = next;
	}
}
