/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fabric_bw: the bulk bandwidth of quai's transport (transport/fabric.c,
 * compiled in), moving data the way remote mode does: the client registers
 * a ring of slots and sends its key; the server RMA-writes each batch into
 * a free slot with remote CQ data naming the slot; the client hands every
 * slot back with a credit message once it has seen it.
 *
 *     fabric_bw [-p PROV] [-S SIZE] [-I ITERS] [-W SLOTS] -B PORT          server
 *     fabric_bw [-p PROV] [-S SIZE] [-I ITERS] [-W SLOTS] -P PORT HOST     client
 *
 * Shaped like fabtests (server without an address, client with one). The
 * endpoints' addresses are swapped over a plain TCP socket on PORT (as
 * fabtests' -E), so that providers without IP addresses (shm) work too.
 * The client prints one line:
 *
 *     fabric_bw prov=tcp;ofi_rxm size=1048576 iters=1000 slots=8 bytes=... secs=... MB/s=...
 *
 * MB is 1e6 bytes, as fi_pingpong's MB/sec. Timed from the client's
 * "start" to its seeing the last batch land; set-up and connection are
 * not. The server waits for every slot to come back before it closes.
 * Build: cc -O2 -pthread -Icommon bench/fabric_bw.c -lfabric
 */
#define _GNU_SOURCE
#include "../common/errmsg.c"
#include "../transport/fabric.c"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define MSG_HELLO 1 /* client -> server: ring and iterations */
#define MSG_START 2 /* client -> server: the clock runs */
#define MSG_CREDIT 3
#define MSG_READY 4 /* server -> client: peer inserted, ready */

struct hello {
	uint32_t type, nslots;
	uint64_t size, iters, raddr, rkey;
};

struct credit {
	uint32_t type, slot;
};

/* Shared by the handlers and the main thread. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t peer;
	bool started, ready;
	struct hello hello;
	bool have_hello;
	uint32_t *q; /* slots: free ones (server), landed ones (client) */
	size_t qhead, qtail, qcap;
	uint64_t landed, done;
	int error;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void qpush(uint32_t slot)
{
	g.q[g.qtail++ % g.qcap] = slot;
}

static void die(const char *what, int r)
{
	fprintf(stderr, "fabric_bw: %s: %s\n", what, strerror(r < 0 ? -r : r));
	exit(1);
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- out-of-band address exchange ------------------------------------ */

static int oob_server(const char *port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
	int one = 1, l, c;

	sin.sin_port = htons((uint16_t)atoi(port));
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0)
		die("socket", errno);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&sin, sizeof(sin)) || listen(l, 1))
		die("bind/listen on the oob port", errno);
	c = accept(l, NULL, NULL);
	if (c < 0)
		die("accept", errno);
	close(l);
	return c;
}

static int oob_client(const char *host, const char *port)
{
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
	int fd, r;

	r = getaddrinfo(host, port, &hints, &ai);
	if (r) {
		fprintf(stderr, "fabric_bw: %s: %s\n", host, gai_strerror(r));
		exit(1);
	}
	fd = socket(AF_INET, SOCK_STREAM, 0);
	for (int tries = 0; connect(fd, ai->ai_addr, ai->ai_addrlen); tries++) {
		if (tries > 100)
			die("connect to the oob port", errno);
		usleep(50 * 1000);
	}
	freeaddrinfo(ai);
	return fd;
}

static void xfer_full(int fd, void *buf, size_t len, bool out)
{
	char *p = buf;

	while (len) {
		ssize_t n = out ? write(fd, p, len) : read(fd, p, len);

		if (n <= 0)
			die("oob exchange", n < 0 ? errno : ECONNRESET);
		p += n;
		len -= (size_t)n;
	}
}

/* Swaps endpoint names; returns the peer's, inserted. */
static uint64_t swap_names(struct qf_ep *ep, int fd)
{
	unsigned char mine[QF_ADDR_MAX], theirs[QF_ADDR_MAX];
	size_t len = sizeof(mine);
	uint32_t l, rl;
	uint64_t peer;
	int r;

	r = qf_name(ep, mine, &len);
	if (r)
		die("qf_name", r);
	l = (uint32_t)len;
	xfer_full(fd, &l, sizeof(l), true);
	xfer_full(fd, mine, len, true);
	xfer_full(fd, &rl, sizeof(rl), false);
	if (rl > sizeof(theirs))
		die("peer address", EINVAL);
	xfer_full(fd, theirs, rl, false);
	r = qf_peer_insert(ep, theirs, rl, &peer);
	if (r)
		die("qf_peer_insert", r);
	return peer;
}

/* ---- handlers ----------------------------------------------------------- */

static void srv_msg(void *arg, uint64_t peer, const void *msg, size_t len)
{
	uint32_t type;

	if (len < sizeof(type))
		return;
	memcpy(&type, msg, sizeof(type));
	pthread_mutex_lock(&g.mu);
	if (type == MSG_HELLO && len == sizeof(struct hello)) {
		memcpy(&g.hello, msg, sizeof(g.hello));
		g.have_hello = true;
	} else if (type == MSG_START) {
		g.started = true;
	} else if (type == MSG_CREDIT && len == sizeof(struct credit)) {
		struct credit c;

		memcpy(&c, msg, sizeof(c));
		qpush(c.slot);
	}
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
}

static void srv_done(void *arg, void *op_ctx, int status)
{
	pthread_mutex_lock(&g.mu);
	g.done++;
	if (status && !g.error)
		g.error = status;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
}

static void cli_msg(void *arg, uint64_t peer, const void *msg, size_t len)
{
	uint32_t type;

	if (len < sizeof(type))
		return;
	memcpy(&type, msg, sizeof(type));
	pthread_mutex_lock(&g.mu);
	if (type == MSG_READY)
		g.ready = true;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
}

static void cli_write_in(void *arg, uint64_t peer, uint64_t data)
{
	pthread_mutex_lock(&g.mu);
	qpush((uint32_t)data);
	g.landed++;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
}

static void send_or_die(struct qf_ep *ep, uint64_t peer, const void *m, size_t len)
{
	int r = qf_send_wait(ep, peer, m, len, 10000);

	if (r)
		die("qf_send", r);
}

/* ---- the two sides ------------------------------------------------------ */

static int server(const char *prov, const char *port)
{
	struct qf_handlers h = {.on_msg = srv_msg, .on_done = srv_done};
	struct qf_opts o = {.provider = prov, .h = &h};
	struct qf_ep *ep;
	struct qf_mr *mr;
	char err[256];
	unsigned char *src;
	uint64_t posted = 0;
	double t0 = 0, t1;
	int fd, r;

	r = qf_open(&o, &ep, err, sizeof(err));
	if (r) {
		fprintf(stderr, "fabric_bw: %s\n", err);
		return 1;
	}
	fd = oob_server(port);
	g.peer = swap_names(ep, fd);
	close(fd);

	pthread_mutex_lock(&g.mu);
	while (!g.have_hello)
		pthread_cond_wait(&g.cv, &g.mu);
	pthread_mutex_unlock(&g.mu);
	src = aligned_alloc(4096, (g.hello.size + 4095) / 4096 * 4096);
	if (src == NULL)
		die("malloc", ENOMEM);
	memset(src, 0x5a, g.hello.size);
	r = qf_mr_reg(ep, src, g.hello.size, QF_LOCAL, &mr);
	if (r)
		die("qf_mr_reg", r);
	g.qcap = g.hello.nslots;
	g.q = calloc(g.qcap, sizeof(*g.q));
	for (uint32_t s = 0; s < g.hello.nslots; s++)
		qpush(s);
	send_or_die(ep, g.peer, &(uint32_t){MSG_READY}, sizeof(uint32_t));

	pthread_mutex_lock(&g.mu);
	while (!g.started)
		pthread_cond_wait(&g.cv, &g.mu);
	t0 = now();
	while (posted < g.hello.iters && !g.error) {
		struct qf_iov iov = {.buf = src, .len = g.hello.size, .mr = mr};
		uint32_t slot;

		while (g.qhead == g.qtail)
			pthread_cond_wait(&g.cv, &g.mu);
		slot = g.q[g.qhead % g.qcap];
		pthread_mutex_unlock(&g.mu);
		r = qf_write(ep, g.peer, &iov, 1, g.hello.raddr + (uint64_t)slot * g.hello.size,
			     g.hello.rkey, slot, NULL);
		if (r == -EAGAIN) {
			qf_wait_progress(ep, 10);
			pthread_mutex_lock(&g.mu);
			continue;
		}
		if (r)
			die("qf_write", r);
		posted++;
		pthread_mutex_lock(&g.mu);
		g.qhead++;
	}
	while (g.done < posted)
		pthread_cond_wait(&g.cv, &g.mu);
	t1 = now();
	/* Every slot back before closing: the client's last credits must not
	 * find the endpoint gone. */
	while (g.qtail - g.qhead < g.hello.nslots)
		pthread_cond_wait(&g.cv, &g.mu);
	pthread_mutex_unlock(&g.mu);
	if (g.error)
		die("a write failed", g.error);
	fprintf(stderr, "fabric_bw server: %" PRIu64 " writes of %" PRIu64 " bytes in %.3f s\n",
		posted, g.hello.size, t1 - t0);
	qf_mr_close(mr);
	qf_close(ep);
	free(src);
	free(g.q);
	return 0;
}

static int client(const char *prov, const char *port, const char *host, size_t size, uint64_t iters,
		  uint32_t nslots)
{
	struct qf_handlers h = {.on_msg = cli_msg, .on_write_in = cli_write_in};
	struct qf_opts o = {.provider = prov, .h = &h};
	struct hello hello = {.type = MSG_HELLO, .nslots = nslots, .size = size, .iters = iters};
	struct qf_ep *ep;
	struct qf_mr *mr;
	unsigned char *ring;
	uint64_t credited = 0;
	double t0, t1 = 0, mbs;
	char err[256];
	int fd, r;

	r = qf_open(&o, &ep, err, sizeof(err));
	if (r) {
		fprintf(stderr, "fabric_bw: %s\n", err);
		return 1;
	}
	ring = aligned_alloc(4096, ((size_t)nslots * size + 4095) / 4096 * 4096);
	if (ring == NULL)
		die("malloc", ENOMEM);
	memset(ring, 0, (size_t)nslots * size); /* fault the pages in, as pinning would */
	r = qf_mr_reg(ep, ring, (size_t)nslots * size, QF_REMOTE_WRITE, &mr);
	if (r)
		die("qf_mr_reg", r);
	g.qcap = nslots;
	g.q = calloc(g.qcap, sizeof(*g.q));
	fd = oob_client(host, port);
	g.peer = swap_names(ep, fd);
	close(fd);

	hello.raddr = qf_mr_addr(mr, ring);
	hello.rkey = qf_mr_key(mr);
	send_or_die(ep, g.peer, &hello, sizeof(hello));
	pthread_mutex_lock(&g.mu);
	while (!g.ready)
		pthread_cond_wait(&g.cv, &g.mu);
	pthread_mutex_unlock(&g.mu);

	t0 = now();
	send_or_die(ep, g.peer, &(uint32_t){MSG_START}, sizeof(uint32_t));
	pthread_mutex_lock(&g.mu);
	while (credited < iters) {
		struct credit c = {.type = MSG_CREDIT};

		while (g.qhead == g.qtail)
			pthread_cond_wait(&g.cv, &g.mu);
		c.slot = g.q[g.qhead++ % g.qcap];
		if (g.landed == iters && t1 == 0)
			t1 = now(); /* the last batch is in */
		pthread_mutex_unlock(&g.mu);
		/* The batch has been consumed: the slot goes back. */
		send_or_die(ep, g.peer, &c, sizeof(c));
		credited++;
		pthread_mutex_lock(&g.mu);
	}
	pthread_mutex_unlock(&g.mu);
	mbs = (double)size * (double)iters / (t1 - t0) / 1e6;
	printf("fabric_bw prov=%s size=%zu iters=%" PRIu64 " slots=%u bytes=%" PRIu64
	       " secs=%.6f MB/s=%.2f\n",
	       qf_provider(ep), size, iters, nslots, (uint64_t)size * iters, t1 - t0, mbs);
	fflush(stdout);
	qf_mr_close(mr);
	qf_close(ep);
	free(ring);
	free(g.q);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: fabric_bw [-p PROV] [-S SIZE] [-I ITERS] [-W SLOTS] "
			"(-B PORT | -P PORT HOST)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *prov = NULL, *bport = NULL, *pport = NULL;
	size_t size = 1 << 20;
	uint64_t iters = 1000;
	uint32_t nslots = 8;
	int c;

	while ((c = getopt(argc, argv, "p:S:I:W:B:P:h")) != -1) {
		switch (c) {
		case 'p':
			prov = optarg;
			break;
		case 'S':
			size = strtoull(optarg, NULL, 0);
			break;
		case 'I':
			iters = strtoull(optarg, NULL, 0);
			break;
		case 'W':
			nslots = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'B':
			bport = optarg;
			break;
		case 'P':
			pport = optarg;
			break;
		default:
			usage();
		}
	}
	if (size == 0 || iters == 0 || nslots == 0 || (bport != NULL) == (pport != NULL))
		usage();
	if (bport)
		return server(prov, bport);
	if (optind != argc - 1)
		usage();
	return client(prov, pport, argv[optind], size, iters, nslots);
}
