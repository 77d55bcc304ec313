/* SPDX-License-Identifier: Apache-2.0 */
/*
 * transport/fabric.c against real endpoints: a server listening on
 * 127.0.0.1 (ephemeral port) and a client, both in the test's process,
 * over the default provider (tcp;ofi_rxm) unless said otherwise. A
 * provider feature missing on this machine is a skip with its reason.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>

#include "fabric.h"

#define WAIT_MS 10000

/* A hang is a failure, not a stuck suite. (Per-test .timeout values make
 * Criterion 2.4.1's runner leak under --jobs=2, which LeakSanitizer
 * reports; a suite-wide one does not.) */
TestSuite(fabric, .timeout = 120);

/* Whether the provider reports senders missing from the AV as such
 * (shm in libfabric 1.17 does not: see shm_unknown_sender). */
static bool src_reliable = true;

struct rmsg {
	uint64_t peer;
	size_t len;
	unsigned char *data;
};

struct side {
	struct qf_ep *ep;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct rmsg *msgs;
	size_t nmsgs, cap;
	struct {
		uint64_t peer, data;
		bool in_place; /* expected bytes all there when it fired */
	} win[64];
	size_t nwin;
	struct {
		void *ctx;
		int status;
	} done[64];
	size_t ndone;
	int send_errs;
	/* on_write_in compares target[0..len) with expect */
	const unsigned char *expect, *target;
	size_t expect_len;
};

static void on_msg(void *arg, uint64_t peer, const void *msg, size_t len)
{
	struct side *s = arg;

	pthread_mutex_lock(&s->mu);
	if (s->nmsgs == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 64;
		s->msgs = realloc(s->msgs, s->cap * sizeof(*s->msgs));
		if (s->msgs == NULL)
			abort(); /* no cr_assert off the test's thread */
	}
	s->msgs[s->nmsgs].peer = peer;
	s->msgs[s->nmsgs].len = len;
	s->msgs[s->nmsgs].data = malloc(len ? len : 1);
	if (s->msgs[s->nmsgs].data == NULL)
		abort();
	memcpy(s->msgs[s->nmsgs].data, msg, len);
	s->nmsgs++;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void on_write_in(void *arg, uint64_t peer, uint64_t data)
{
	struct side *s = arg;

	pthread_mutex_lock(&s->mu);
	if (s->nwin < 64) {
		s->win[s->nwin].peer = peer;
		s->win[s->nwin].data = data;
		s->win[s->nwin].in_place =
		    s->expect && memcmp(s->target, s->expect, s->expect_len) == 0;
		s->nwin++;
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void on_done(void *arg, void *op_ctx, int status)
{
	struct side *s = arg;

	pthread_mutex_lock(&s->mu);
	if (s->ndone < 64) {
		s->done[s->ndone].ctx = op_ctx;
		s->done[s->ndone].status = status;
		s->ndone++;
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void on_send_error(void *arg, uint64_t peer, int status)
{
	struct side *s = arg;

	pthread_mutex_lock(&s->mu);
	s->send_errs++;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static struct qf_handlers handlers(struct side *s)
{
	return (struct qf_handlers){.on_msg = on_msg,
				    .on_write_in = on_write_in,
				    .on_done = on_done,
				    .on_send_error = on_send_error,
				    .arg = s};
}

static void side_init(struct side *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
}

static void side_fini(struct side *s)
{
	qf_close(s->ep);
	s->ep = NULL;
	for (size_t i = 0; i < s->nmsgs; i++)
		free(s->msgs[i].data);
	free(s->msgs);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
}

/* Waits until *count (guarded by s->mu) reaches n. */
static bool wait_count(struct side *s, const size_t *count, size_t n, int ms)
{
	struct timespec dl;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += ms / 1000;
	dl.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->mu);
	while (*count < n)
		if (pthread_cond_timedwait(&s->cv, &s->mu, &dl))
			break;
	ok = *count >= n;
	pthread_mutex_unlock(&s->mu);
	return ok;
}

static int open_ep_as(struct side *s, const char *prov, const char *node, const char *service,
		      size_t msg_max, unsigned tx_depth, bool server, char *err, size_t err_len)
{
	struct qf_handlers h = handlers(s);
	struct qf_opts o = {.provider = prov,
			    .node = node,
			    .service = service,
			    .msg_max = msg_max,
			    .tx_depth = tx_depth,
			    .h = &h,
			    .server = server};

	/* qf_open copies the handlers. */
	return qf_open(&o, &s->ep, err, err_len);
}

static int open_ep(struct side *s, const char *prov, const char *node, const char *service,
		   size_t msg_max, unsigned tx_depth, char *err, size_t err_len)
{
	return open_ep_as(s, prov, node, service, msg_max, tx_depth, false, err, err_len);
}

static void open_server(struct side *s, const char *prov, size_t msg_max)
{
	char err[256];
	int r;

	side_init(s);
	/* shm has no ports: its endpoints name themselves. */
	if (prov && strcmp(prov, "shm") == 0)
		r = open_ep(s, prov, NULL, NULL, msg_max, 0, err, sizeof(err));
	else
		r = open_ep(s, prov, "127.0.0.1", "0", msg_max, 0, err, sizeof(err));
	cr_assert_eq(r, 0, "server qf_open: %s (%s)", strerror(-r), err);
}

static void open_client(struct side *s, const char *prov, size_t msg_max, unsigned tx_depth)
{
	char err[256];
	int r;

	side_init(s);
	r = open_ep(s, prov, NULL, NULL, msg_max, tx_depth, err, sizeof(err));
	cr_assert_eq(r, 0, "client qf_open: %s (%s)", strerror(-r), err);
}

static unsigned short port_of(struct qf_ep *ep)
{
	unsigned char a[QF_ADDR_MAX];
	size_t len = sizeof(a);
	struct sockaddr_in sin;

	cr_assert_eq(qf_name(ep, a, &len), 0);
	cr_assert_eq(len, sizeof(sin), "not an IPv4 address (%zu bytes)", len);
	memcpy(&sin, a, sizeof(sin));
	cr_assert_eq(sin.sin_family, AF_INET);
	return ntohs(sin.sin_port);
}

/* The client reaches the server by its address; the server learns the
 * client's from the first message and answers. *c2s / *s2c: the peer ids
 * in the client's and the server's AV. With a decoy, the server has
 * another peer in its AV first, so that the client's hello cannot come out
 * as that peer's id by accident. */
static void connect_pair_decoy(struct side *srv, struct side *cli, struct side *decoy, bool resolve,
			       uint64_t *c2s, uint64_t *s2c)
{
	unsigned char a[QF_ADDR_MAX];
	size_t len = sizeof(a);
	int r;

	if (decoy) {
		uint64_t d;

		cr_assert_eq(qf_name(decoy->ep, a, &len), 0);
		cr_assert_eq(qf_peer_insert(srv->ep, a, len, &d), 0);
		len = sizeof(a);
	}

	if (resolve) {
		char svc[16];

		snprintf(svc, sizeof(svc), "%u", port_of(srv->ep));
		r = qf_resolve(cli->ep, "127.0.0.1", svc, c2s);
		cr_assert_eq(r, 0, "qf_resolve: %s", strerror(-r));
	} else {
		cr_assert_eq(qf_name(srv->ep, a, &len), 0);
		r = qf_peer_insert(cli->ep, a, len, c2s);
		cr_assert_eq(r, 0, "qf_peer_insert: %s", strerror(-r));
	}
	len = sizeof(a);
	cr_assert_eq(qf_name(cli->ep, a, &len), 0);
	r = qf_send_wait(cli->ep, *c2s, a, len, WAIT_MS);
	cr_assert_eq(r, 0, "client hello: %s", strerror(-r));
	cr_assert(wait_count(srv, &srv->nmsgs, 1, WAIT_MS), "server got no hello");
	if (src_reliable)
		cr_assert_eq(srv->msgs[0].peer, QF_PEER_UNKNOWN,
			     "a sender not in the AV has id %lu", (unsigned long)srv->msgs[0].peer);
	cr_assert_eq(srv->msgs[0].len, len);
	r = qf_peer_insert(srv->ep, srv->msgs[0].data, srv->msgs[0].len, s2c);
	cr_assert_eq(r, 0, "server qf_peer_insert: %s", strerror(-r));
	r = qf_send_wait(srv->ep, *s2c, "welcome", 8, WAIT_MS);
	cr_assert_eq(r, 0, "server reply: %s", strerror(-r));
	cr_assert(wait_count(cli, &cli->nmsgs, 1, WAIT_MS), "client got no reply");
	cr_assert_eq(cli->msgs[0].peer, *c2s);
	cr_assert_str_eq((char *)cli->msgs[0].data, "welcome");
}

static void connect_pair(struct side *srv, struct side *cli, bool resolve, uint64_t *c2s,
			 uint64_t *s2c)
{
	connect_pair_decoy(srv, cli, NULL, resolve, c2s, s2c);
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (unsigned char)x;
	}
}

Test(fabric, round_trip_both_ways)
{
	struct side srv, cli;
	uint64_t c2s, s2c;
	int r;

	open_server(&srv, NULL, 0);
	open_client(&cli, NULL, 0, 0);
	cr_assert_str_eq(qf_provider(srv.ep), QF_DEFAULT_PROVIDER);
	connect_pair(&srv, &cli, true, &c2s, &s2c);

	/* Once inserted, the client is that peer on the server. */
	r = qf_send_wait(cli.ep, c2s, "again", 6, WAIT_MS);
	cr_assert_eq(r, 0);
	cr_assert(wait_count(&srv, &srv.nmsgs, 2, WAIT_MS));
	cr_assert_eq(srv.msgs[1].peer, s2c);
	cr_assert_str_eq((char *)srv.msgs[1].data, "again");
	side_fini(&cli);
	side_fini(&srv);
}

Test(fabric, unknown_sender_then_known)
{
	struct side srv, cli, decoy;
	uint64_t c2s, s2c, again;
	unsigned char a[QF_ADDR_MAX];
	size_t len = sizeof(a);

	open_server(&srv, NULL, 0);
	open_client(&cli, NULL, 0, 0);
	open_client(&decoy, NULL, 0, 0);
	/* By raw address this time; connect_pair checks the unknown sender. */
	connect_pair_decoy(&srv, &cli, &decoy, false, &c2s, &s2c);
	cr_assert_neq(s2c, QF_PEER_UNKNOWN);
	/* Inserting the same address again gives the same peer. */
	cr_assert_eq(qf_name(cli.ep, a, &len), 0);
	cr_assert_eq(qf_peer_insert(srv.ep, a, len, &again), 0);
	cr_assert_eq(again, s2c);
	/* A truncated address is refused, not read past. */
	cr_assert_eq(qf_peer_insert(srv.ep, a, 3, &again), -EINVAL);
	cr_assert_eq(qf_send_wait(cli.ep, c2s, "x", 1, WAIT_MS), 0);
	cr_assert(wait_count(&srv, &srv.nmsgs, 2, WAIT_MS));
	cr_assert_eq(srv.msgs[1].peer, s2c);
	/* Removed, it is unknown again. */
	cr_assert_eq(qf_peer_remove(srv.ep, s2c), 0);
	cr_assert_eq(qf_peer_remove(srv.ep, s2c), -ENOENT);
	cr_assert_eq(qf_send_wait(cli.ep, c2s, "y", 1, WAIT_MS), 0);
	cr_assert(wait_count(&srv, &srv.nmsgs, 3, WAIT_MS));
	cr_assert_eq(srv.msgs[2].peer, QF_PEER_UNKNOWN, "a removed peer still has id %lu",
		     (unsigned long)srv.msgs[2].peer);
	/* Inserted again: the same id as before. */
	cr_assert_eq(qf_peer_insert(srv.ep, a, len, &again), 0);
	cr_assert_eq(again, s2c);
	cr_assert_eq(qf_send_wait(cli.ep, c2s, "z", 1, WAIT_MS), 0);
	cr_assert(wait_count(&srv, &srv.nmsgs, 4, WAIT_MS));
	cr_assert_eq(srv.msgs[3].peer, s2c);
	side_fini(&decoy);
	side_fini(&cli);
	side_fini(&srv);
}

Test(fabric, sizes_one_and_max)
{
	const size_t max = 64 * 1024; /* msg_max 0: the default */
	struct side srv, cli;
	uint64_t c2s, s2c;
	unsigned char *big = malloc(max + 1);
	struct qf_stats st;

	open_server(&srv, NULL, 0);
	open_client(&cli, NULL, 0, 0);
	connect_pair(&srv, &cli, true, &c2s, &s2c);
	fill(big, max + 1, 7);
	cr_assert_eq(qf_send_wait(cli.ep, c2s, big, 1, WAIT_MS), 0);
	cr_assert_eq(qf_send_wait(cli.ep, c2s, big, max, WAIT_MS), 0);
	cr_assert_eq(qf_send(cli.ep, c2s, big, max + 1), -EMSGSIZE);
	cr_assert_eq(qf_send_wait(srv.ep, s2c, big, max, WAIT_MS), 0);
	cr_assert(wait_count(&srv, &srv.nmsgs, 3, WAIT_MS));
	cr_assert(wait_count(&cli, &cli.nmsgs, 2, WAIT_MS));
	/* Sizes differ, so order does not matter here. */
	for (size_t i = 1; i < 3; i++) {
		size_t n = srv.msgs[i].len;

		cr_assert(n == 1 || n == max, "message of %zu bytes", n);
		cr_assert_eq(memcmp(srv.msgs[i].data, big, n), 0);
	}
	cr_assert_eq(cli.msgs[1].len, max);
	cr_assert_eq(memcmp(cli.msgs[1].data, big, max), 0);
	qf_stats(cli.ep, &st);
	cr_assert_eq(st.msgs_out, 3);
	cr_assert_eq(st.msgs_in, 2);
	side_fini(&cli);
	side_fini(&srv);
	free(big);
}

Test(fabric, back_pressure_then_all_delivered)
{
	enum { N = 3000, LEN = 1024 };
	struct side srv, cli;
	uint64_t c2s, s2c;
	unsigned char msg[LEN];
	bool *seen = calloc(N, 1);
	bool hit_eagain = false;
	struct qf_stats st;
	size_t i;

	open_server(&srv, NULL, 0);
	open_client(&cli, NULL, 0, 4);
	connect_pair(&srv, &cli, true, &c2s, &s2c);
	memset(msg, 0xab, sizeof(msg));
	for (i = 0; i < N; i++) {
		int r;

		memcpy(msg, &i, sizeof(i));
		r = qf_send(cli.ep, c2s, msg, sizeof(msg));
		if (r == -EAGAIN) {
			hit_eagain = true;
			r = qf_send_wait(cli.ep, c2s, msg, sizeof(msg), WAIT_MS);
		}
		/* Asserted only when false: Criterion reports every assertion
		 * to its runner, thousands of them are slow. */
		if (r)
			cr_assert_fail("send %zu: %s", i, strerror(-r));
	}
	cr_assert(hit_eagain, "%d sends with tx_depth 4 never pushed back", N);
	cr_assert(wait_count(&srv, &srv.nmsgs, N + 1, 60000), "got %zu of %d", srv.nmsgs - 1, N);
	/* Every message exactly once; the order is the provider's business. */
	for (i = 1; i <= N; i++) {
		size_t k;

		memcpy(&k, srv.msgs[i].data, sizeof(k));
		if (srv.msgs[i].len != LEN || k >= N || seen[k] || srv.msgs[i].peer != s2c)
			cr_assert_fail("message %zu: %zu bytes, number %zu%s, peer %lu", i,
				       srv.msgs[i].len, k, k < N && seen[k] ? " twice" : "",
				       (unsigned long)srv.msgs[i].peer);
		seen[k] = true;
	}
	qf_stats(cli.ep, &st);
	cr_assert_gt(st.eagain, 0);
	cr_assert_eq(st.msgs_out, N + 1);
	free(seen);
	side_fini(&cli);
	side_fini(&srv);
}

/* The client exposes `len` bytes; the server writes them from `n` iovs
 * with data; on_write_in must find every byte in place. */
static void write_case(size_t n, size_t len)
{
	struct side srv, cli;
	uint64_t c2s, s2c;
	unsigned char *dst = calloc(1, len), *src = malloc(len), *exp = malloc(len);
	struct qf_mr *dmr, *smr;
	struct qf_iov iov[4];
	struct qf_stats st;
	size_t off = 0;
	int r, ctx;

	open_server(&srv, NULL, 0);
	open_client(&cli, NULL, 0, 0);
	connect_pair(&srv, &cli, true, &c2s, &s2c);
	fill(src, len, (unsigned)(n + len));
	memcpy(exp, src, len);
	cr_assert_eq(qf_mr_reg(cli.ep, dst, len, QF_REMOTE_WRITE, &dmr), 0);
	cr_assert_eq(qf_mr_reg(srv.ep, src, len, QF_LOCAL, &smr), 0);
	pthread_mutex_lock(&cli.mu);
	cli.expect = exp;
	cli.target = dst;
	cli.expect_len = len;
	pthread_mutex_unlock(&cli.mu);
	for (size_t k = 0; k < n; k++) {
		size_t l = k == n - 1 ? len - off : len / n;

		iov[k] = (struct qf_iov){.buf = src + off, .len = l, .mr = smr};
		off += l;
	}
	do {
		r = qf_write(srv.ep, s2c, iov, n, qf_mr_addr(dmr, dst), qf_mr_key(dmr), 0xdeadbeef,
			     &ctx);
		if (r == -EAGAIN)
			qf_wait_progress(srv.ep, 100);
	} while (r == -EAGAIN);
	cr_assert_eq(r, 0, "qf_write: %s", strerror(-r));
	cr_assert(wait_count(&cli, &cli.nwin, 1, WAIT_MS), "no on_write_in");
	cr_assert(wait_count(&srv, &srv.ndone, 1, WAIT_MS), "no on_done");
	cr_assert_eq(cli.win[0].data, 0xdeadbeef);
	cr_assert_eq(cli.win[0].peer, c2s, "the writer is a known peer");
	cr_assert(cli.win[0].in_place, "on_write_in before all %zu bytes landed", len);
	cr_assert_eq(srv.done[0].status, 0, "on_done: %s", strerror(-srv.done[0].status));
	cr_assert_eq(srv.done[0].ctx, &ctx);
	qf_stats(srv.ep, &st);
	cr_assert_eq(st.bytes_written, len);
	side_fini(&cli); /* closes dmr */
	side_fini(&srv);
	free(dst);
	free(src);
	free(exp);
}

Test(fabric, write_one_iov)
{
	write_case(1, 4096);
}

Test(fabric, write_two_iovs)
{
	write_case(2, 10000);
}

Test(fabric, write_four_iovs)
{
	write_case(4, 65536 + 3);
}

/* iov_limit forced to 1: four pieces, the data on the last, in order. */
Test(fabric, write_four_iovs_split)
{
	setenv("QUAI_FABRIC_IOV_LIMIT", "1", 1);
	write_case(4, 3 * 1024 * 1024 + 5);
	unsetenv("QUAI_FABRIC_IOV_LIMIT");
}

Test(fabric, write_4mib)
{
	write_case(1, 4 << 20);
}

Test(fabric, rma_read)
{
	const size_t len = 1 << 20;
	struct side srv, cli;
	uint64_t c2s, s2c;
	unsigned char *exposed = malloc(len), *local = calloc(1, len);
	struct qf_mr *emr, *lmr;
	struct qf_stats st;
	int r, ctx;

	open_server(&srv, NULL, 0);
	open_client(&cli, NULL, 0, 0);
	connect_pair(&srv, &cli, true, &c2s, &s2c);
	fill(exposed, len, 3);
	cr_assert_eq(qf_mr_reg(cli.ep, exposed, len, QF_REMOTE_READ, &emr), 0);
	cr_assert_eq(qf_mr_reg(srv.ep, local, len, QF_LOCAL, &lmr), 0);
	do {
		r = qf_read(srv.ep, s2c, local, len, lmr, qf_mr_addr(emr, exposed), qf_mr_key(emr),
			    &ctx);
		if (r == -EAGAIN)
			qf_wait_progress(srv.ep, 100);
	} while (r == -EAGAIN);
	cr_assert_eq(r, 0, "qf_read: %s", strerror(-r));
	cr_assert(wait_count(&srv, &srv.ndone, 1, WAIT_MS));
	cr_assert_eq(srv.done[0].status, 0, "on_done: %s", strerror(-srv.done[0].status));
	cr_assert_eq(srv.done[0].ctx, &ctx);
	cr_assert_eq(memcmp(local, exposed, len), 0);
	qf_stats(srv.ep, &st);
	cr_assert_eq(st.bytes_read, len);
	qf_mr_close(lmr);
	qf_mr_close(emr);
	side_fini(&cli);
	side_fini(&srv);
	free(exposed);
	free(local);
}

Test(fabric, write_after_target_closed_mr_fails)
{
	const size_t len = 65536;
	struct side srv, cli;
	uint64_t c2s, s2c, key, addr;
	unsigned char *dst = calloc(1, len), *src = malloc(len);
	struct qf_mr *dmr, *smr;
	struct qf_iov iov;
	struct qf_stats st;
	int r, ctx;

	open_server(&srv, NULL, 0);
	open_client(&cli, NULL, 0, 0);
	connect_pair(&srv, &cli, true, &c2s, &s2c);
	fill(src, len, 9);
	cr_assert_eq(qf_mr_reg(cli.ep, dst, len, QF_REMOTE_WRITE, &dmr), 0);
	cr_assert_eq(qf_mr_reg(srv.ep, src, len, QF_LOCAL, &smr), 0);
	key = qf_mr_key(dmr);
	addr = qf_mr_addr(dmr, dst);
	qf_mr_close(dmr);
	iov = (struct qf_iov){.buf = src, .len = len, .mr = smr};
	do {
		r = qf_write(srv.ep, s2c, &iov, 1, addr, key, 42, &ctx);
		if (r == -EAGAIN)
			qf_wait_progress(srv.ep, 100);
	} while (r == -EAGAIN);
	if (r == 0) {
		cr_assert(wait_count(&srv, &srv.ndone, 1, WAIT_MS), "no on_done: a hang");
		cr_assert_lt(srv.done[0].status, 0, "a write into a closed region succeeded");
		cr_assert_eq(srv.done[0].ctx, &ctx);
		qf_stats(srv.ep, &st);
		cr_assert_gt(st.errors, 0);
	} else {
		cr_assert_lt(r, 0);
	}
	/* Nothing landed, and no one was told it did. */
	usleep(100 * 1000);
	cr_assert_eq(cli.nwin, 0);
	cr_assert(dst[0] == 0 && memcmp(dst, dst + 1, len - 1) == 0, "bytes landed");
	/* The pair still talks afterwards (the provider may have had to
	 * reconnect). */
	cr_assert_eq(qf_send_wait(cli.ep, c2s, "still", 6, WAIT_MS), 0);
	cr_assert(wait_count(&srv, &srv.nmsgs, 2, WAIT_MS), "no message after the failed write");
	cr_assert_eq(srv.msgs[1].peer, s2c);
	cr_assert_eq(qf_send_wait(srv.ep, s2c, "here", 5, WAIT_MS), 0);
	cr_assert(wait_count(&cli, &cli.nmsgs, 2, WAIT_MS), "no reply after the failed write");
	side_fini(&cli);
	side_fini(&srv);
	free(dst);
	free(src);
}

Test(fabric, provider_that_does_not_exist)
{
	struct side s;
	char err[256] = "";
	int r;

	side_init(&s);
	r = open_ep(&s, "no-such-provider", NULL, NULL, 0, 0, err, sizeof(err));
	cr_assert_eq(r, -ENODATA, "got %d", r);
	cr_assert_null(s.ep);
	cr_assert_not_null(strstr(err, "no-such-provider"), "err: %s", err);
	side_fini(&s);
}

Test(fabric, shm_by_fi_provider)
{
	enum { LEN = 1 << 20 };
	struct side srv, cli, decoy;
	uint64_t c2s, s2c;
	unsigned char *dst = calloc(1, LEN), *src = malloc(LEN);
	struct qf_mr *dmr, *smr;
	struct qf_iov iov;
	char err[256] = "";
	int r, ctx;

	/* Read by libfabric at its first call in this (forked) process. */
	setenv("FI_PROVIDER", "shm", 1);
	side_init(&srv);
	r = open_ep(&srv, NULL, NULL, NULL, 0, 0, err, sizeof(err));
	if (r == -ENODATA) {
		side_fini(&srv);
		cr_skip_test("shm provider unusable here: %s", err);
	}
	cr_assert_eq(r, 0, "qf_open(FI_PROVIDER=shm): %s (%s)", strerror(-r), err);
	cr_assert_str_eq(qf_provider(srv.ep), "shm");
	open_client(&cli, NULL, 0, 0);
	open_client(&decoy, NULL, 0, 0);
	src_reliable = false; /* checked by shm_unknown_sender */
	connect_pair_decoy(&srv, &cli, &decoy, false, &c2s, &s2c);

	fill(src, LEN, 5);
	cr_assert_eq(qf_mr_reg(cli.ep, dst, LEN, QF_REMOTE_WRITE, &dmr), 0);
	cr_assert_eq(qf_mr_reg(srv.ep, src, LEN, QF_LOCAL, &smr), 0);
	pthread_mutex_lock(&cli.mu);
	cli.expect = src;
	cli.target = dst;
	cli.expect_len = LEN;
	pthread_mutex_unlock(&cli.mu);
	iov = (struct qf_iov){.buf = src, .len = LEN, .mr = smr};
	do {
		r = qf_write(srv.ep, s2c, &iov, 1, qf_mr_addr(dmr, dst), qf_mr_key(dmr), 7, &ctx);
		if (r == -EAGAIN)
			qf_wait_progress(srv.ep, 100);
	} while (r == -EAGAIN);
	cr_assert_eq(r, 0, "qf_write over shm: %s", strerror(-r));
	cr_assert(wait_count(&cli, &cli.nwin, 1, WAIT_MS));
	cr_assert(wait_count(&srv, &srv.ndone, 1, WAIT_MS));
	cr_assert_eq(srv.done[0].status, 0, "on_done: %s", strerror(-srv.done[0].status));
	cr_assert_eq(cli.win[0].data, 7);
	cr_assert(cli.win[0].in_place);
	side_fini(&decoy);
	side_fini(&cli);
	side_fini(&srv);
	free(dst);
	free(src);
}

Test(fabric, same_port_twice_fails)
{
	struct side a, b;
	char err[256] = "", svc[16];
	int r;

	open_server(&a, NULL, 0);
	snprintf(svc, sizeof(svc), "%u", port_of(a.ep));
	side_init(&b);
	r = open_ep(&b, NULL, "127.0.0.1", svc, 0, 0, err, sizeof(err));
	cr_assert_eq(r, -EADDRINUSE, "second listener on port %s: %d (%s)", svc, r, err);
	cr_assert_null(b.ep);
	cr_assert_neq(err[0], '\0');
	side_fini(&b);
	side_fini(&a);
}

Test(fabric, name_buffer_too_small)
{
	struct side s;
	char a[2];
	size_t len = sizeof(a);

	open_server(&s, NULL, 0);
	cr_assert_eq(qf_name(s.ep, a, &len), -ENOSPC);
	cr_assert_gt(len, sizeof(a), "the needed length comes back");
	side_fini(&s);
}

Test(fabric, bad_arguments_refused)
{
	struct side s;
	unsigned char buf[64];
	struct qf_mr *mr;
	struct qf_iov iov[5];
	uint64_t peer;
	int r, ctx;

	open_server(&s, NULL, 0);
	cr_assert_eq(qf_mr_reg(s.ep, buf, sizeof(buf), QF_LOCAL, &mr), 0);
	for (int k = 0; k < 5; k++)
		iov[k] = (struct qf_iov){.buf = buf, .len = 8, .mr = mr};
	/* Peer ids never handed out: refused, not passed to the provider. */
	cr_assert_eq(qf_send(s.ep, 12345, "x", 1), -EINVAL);
	cr_assert_eq(qf_send(s.ep, QF_PEER_UNKNOWN, "x", 1), -EINVAL);
	cr_assert_eq(qf_write(s.ep, 12345, iov, 1, 0, 0, 0, &ctx), -EINVAL);
	cr_assert_eq(qf_read(s.ep, 12345, buf, 8, mr, 0, 0, &ctx), -EINVAL);
	/* Resolve a name, then the iov rules. */
	r = qf_resolve(s.ep, "127.0.0.1", "9", &peer);
	cr_assert_eq(r, 0, "qf_resolve: %s", strerror(-r));
	cr_assert_eq(qf_write(s.ep, peer, iov, 0, 0, 0, 0, &ctx), -EINVAL);
	cr_assert_eq(qf_write(s.ep, peer, iov, 5, 0, 0, 0, &ctx), -EINVAL);
	iov[0].len = sizeof(buf) + 1; /* past its registration */
	cr_assert_eq(qf_write(s.ep, peer, iov, 1, 0, 0, 0, &ctx), -EINVAL);
	cr_assert_eq(qf_read(s.ep, peer, buf, sizeof(buf) + 1, mr, 0, 0, &ctx), -EINVAL);
	if (qf_cq_data_size(s.ep) < 8)
		cr_assert_eq(qf_write(s.ep, peer, iov + 1, 1, 0, 0, UINT64_MAX, &ctx), -EINVAL);
	cr_assert_geq(qf_cq_data_size(s.ep), 4);
	cr_assert_gt(qf_max_rma(s.ep), 4u << 20);
	r = qf_resolve(s.ep, "no-such-host.invalid", "1", &peer);
	cr_assert(r == -ENODATA || r == -EHOSTUNREACH, "qf_resolve of nothing: %d", r);
	cr_assert_eq(qf_mr_reg(s.ep, buf, 0, QF_LOCAL, &mr), -EINVAL);
	cr_assert_eq(qf_mr_reg(s.ep, buf, sizeof(buf), 0, &mr), -EINVAL);
	side_fini(&s); /* closes the region left registered */
}

Test(fabric, null_is_a_noop)
{
	qf_close(NULL);
	qf_mr_close(NULL);
}

/* Resident memory of this process, bytes (VmRSS). */
static long rss_bytes(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

static void open_with(struct side *s, bool server)
{
	char err[256];

	side_init(s);
	int r = open_ep_as(s, NULL, server ? "127.0.0.1" : NULL, server ? "0" : NULL, 0, 0, server,
			   err, sizeof(err));
	cr_assert_eq(r, 0, "qf_open: %s (%s)", strerror(-r), err);
}

/* Each test runs in a process of its own: libfabric loads in it with the
 * first qf_open(), which sizes the provider's buffers. A client's are
 * QF_CLIENT_RX_BUFS; ofi_rxm over tcp would otherwise post 4096 buffers of
 * 16 KiB and fault in 64 MiB before the first message. */
Test(fabric, client_rxm_buffers_sized_as_libfabric_loads)
{
	struct side s;

	unsetenv("FI_OFI_RXM_MSG_RX_SIZE");
	long before = rss_bytes();
	open_with(&s, false);
	long grew = rss_bytes() - before;
	const char *v = getenv("FI_OFI_RXM_MSG_RX_SIZE");
	cr_assert(v && strcmp(v, QF_CLIENT_RX_BUFS) == 0, "FI_OFI_RXM_MSG_RX_SIZE=%s",
		  v ? v : "(unset)");
	/* libfabric and its providers' libraries, plus the endpoint; with
	 * the provider's default the endpoint alone is over 64 MiB. */
	cr_assert_lt(grew, 40L << 20, "a client endpoint made the process grow by %ld MiB",
		     grew >> 20);
	side_fini(&s);
}

Test(fabric, environment_keeps_its_rxm_buffers)
{
	struct side s;

	setenv("FI_OFI_RXM_MSG_RX_SIZE", "64", 1);
	open_with(&s, false);
	cr_assert_str_eq(getenv("FI_OFI_RXM_MSG_RX_SIZE"), "64");
	side_fini(&s);
}

Test(fabric, server_keeps_provider_buffers)
{
	struct side srv, cli;

	unsetenv("FI_OFI_RXM_MSG_RX_SIZE");
	open_with(&srv, true);
	cr_assert_null(getenv("FI_OFI_RXM_MSG_RX_SIZE"), "a server's buffers were resized");
	/* A later client endpoint in the same process changes nothing: the
	 * provider has read its parameters already. */
	open_with(&cli, false);
	cr_assert_null(getenv("FI_OFI_RXM_MSG_RX_SIZE"));
	side_fini(&cli);
	side_fini(&srv);
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

/* The progress thread must sleep when there is nothing to do: on this
 * kind of machine a spinning endpoint costs a whole core. */
Test(fabric, idle_endpoint_sleeps)
{
	struct side srv, cli;
	uint64_t c2s, s2c;
	double c0, c1;

	open_server(&srv, NULL, 0);
	open_client(&cli, NULL, 0, 0);
	connect_pair(&srv, &cli, true, &c2s, &s2c);
	usleep(200 * 1000);
	c0 = cpu_seconds();
	sleep(2);
	c1 = cpu_seconds();
	/* Two endpoints, two threads, 2 s: a spinner would use ~2 s. */
	cr_assert_lt(c1 - c0, 0.1, "idle endpoints used %.3f s of CPU in 2 s", c1 - c0);
	/* And they still wake for work. */
	cr_assert_eq(qf_send_wait(cli.ep, c2s, "late", 5, WAIT_MS), 0);
	cr_assert(wait_count(&srv, &srv.nmsgs, 2, WAIT_MS));
	side_fini(&cli);
	side_fini(&srv);
}

/* shm (libfabric 1.17) reports a message from a sender that is not in the
 * AV with a stale fi_addr (the last one written to that CQ slot, or 0)
 * instead of FI_ADDR_NOTAVAIL: such a sender passes for a known peer. Up
 * to 1.17 that is a known defect of the provider, so a skip; after, a
 * failure until it is fixed. */
Test(fabric, shm_unknown_sender)
{
	struct side srv, known, stranger;
	unsigned char a[QF_ADDR_MAX];
	size_t len = sizeof(a);
	uint64_t k2s, x2s, s2k;
	char err[256] = "";
	int r;

	setenv("FI_PROVIDER", "shm", 1);
	side_init(&srv);
	r = open_ep(&srv, NULL, NULL, NULL, 0, 0, err, sizeof(err));
	if (r == -ENODATA) {
		side_fini(&srv);
		cr_skip_test("shm provider unusable here: %s", err);
	}
	cr_assert_eq(r, 0, "qf_open(FI_PROVIDER=shm): %s (%s)", strerror(-r), err);
	if (fi_version() <= FI_VERSION(1, 17)) {
		side_fini(&srv);
		cr_skip_test("shm of libfabric %u.%u reports senders missing from the AV with a "
			     "stale fi_addr, not FI_ADDR_NOTAVAIL: peer ids are not a sender's "
			     "identity over shm",
			     FI_MAJOR(fi_version()), FI_MINOR(fi_version()));
	}
	open_client(&known, NULL, 0, 0);
	open_client(&stranger, NULL, 0, 0);
	cr_assert_eq(qf_name(srv.ep, a, &len), 0);
	cr_assert_eq(qf_peer_insert(known.ep, a, len, &k2s), 0);
	cr_assert_eq(qf_peer_insert(stranger.ep, a, len, &x2s), 0);
	len = sizeof(a);
	cr_assert_eq(qf_name(known.ep, a, &len), 0);
	cr_assert_eq(qf_peer_insert(srv.ep, a, len, &s2k), 0);
	cr_assert_eq(qf_send_wait(known.ep, k2s, "k", 2, WAIT_MS), 0);
	cr_assert(wait_count(&srv, &srv.nmsgs, 1, WAIT_MS));
	cr_assert_eq(qf_send_wait(stranger.ep, x2s, "x", 2, WAIT_MS), 0);
	cr_assert(wait_count(&srv, &srv.nmsgs, 2, WAIT_MS));
	cr_assert_eq(srv.msgs[0].peer, s2k);
	cr_assert_eq(srv.msgs[1].peer, QF_PEER_UNKNOWN, "a stranger passed for peer %lu",
		     (unsigned long)srv.msgs[1].peer);
	side_fini(&stranger);
	side_fini(&known);
	side_fini(&srv);
}
