/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The connection guard: bounds what connections that never become
 * sessions can hold. libfabric accepts quaid's connections itself and
 * tells quaid nothing of one until a message arrives on it, so a client
 * that connects and says nothing would hold a file descriptor for ever;
 * enough of them and quaid can accept no one. Every half second (from
 * qsrv_run's loop) the guard reads which TCP connections to quaid's
 * listening port its process holds (/proc/self/fd and /proc/net/tcp*),
 * and shuts down (shutdown(2): the provider sees the peer close, and
 * frees the connection itself):
 *  - a connection older than handshake_timeout on which nothing ever
 *    arrived (a client's first bytes, libfabric's connection request, come
 *    at once: such a connection never began its handshake);
 *  - the newest connections of a host beyond max_host_connections.
 * Each time it does, it says so in the log, with the host and the count.
 * Providers that are not TCP-based (verbs, shm) have no such sockets:
 * the guard finds nothing to do.
 */
#include "srv.h"

#include <arpa/inet.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* A connection to the listening port, as the guard saw it. */
struct gconn {
	uint64_t inode;
	int fd;
	char host[INET6_ADDRSTRLEN];
	uint64_t first_seen_ns;
	int seen; /* in this scan */
};

struct srv_guard {
	struct gconn *v;
	size_t n, cap;
	uint64_t warned_ns; /* the last warning about descriptors */
};

void srv_guard_free(struct srv_guard *g)
{
	if (!g)
		return;
	free(g->v);
	free(g);
}

/* Our sockets: inode -> descriptor. */
struct sock {
	uint64_t inode;
	int fd;
};

static int cmp_sock(const void *a, const void *b)
{
	uint64_t x = ((const struct sock *)a)->inode, y = ((const struct sock *)b)->inode;
	return x < y ? -1 : x > y;
}

/* Our sockets, sorted by inode; ret_fds: every descriptor we hold. */
static int own_sockets(struct sock **ret, size_t *ret_n, size_t *ret_fds)
{
	DIR *d = opendir("/proc/self/fd");
	struct sock *v = NULL;
	size_t n = 0, cap = 0, fds = 0;
	struct dirent *de;
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (de->d_name[0] != '.')
			fds++;
		char link[64];
		unsigned long long ino;
		ssize_t k = readlinkat(dirfd(d), de->d_name, link, sizeof(link) - 1);
		if (k <= 0)
			continue;
		link[k] = '\0';
		if (sscanf(link, "socket:[%llu]", &ino) != 1)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			struct sock *nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = (struct sock){.inode = ino, .fd = atoi(de->d_name)};
	}
	closedir(d);
	qsort(v, n, sizeof(*v), cmp_sock);
	*ret = v;
	*ret_n = n;
	*ret_fds = fds;
	return 0;
}

/* An address of /proc/net/tcp{,6} ("0100007F" or 32 hex digits, in the
 * kernel's word order) as text. */
static int proc_addr(const char *hex, int v6, char *out, size_t len)
{
	unsigned char b[16];
	size_t nb = v6 ? 16 : 4;
	if (strlen(hex) != 2 * nb)
		return -1;
	for (size_t w = 0; w < nb / 4; w++) {
		unsigned int word;
		if (sscanf(hex + 8 * w, "%8x", &word) != 1)
			return -1;
		memcpy(b + 4 * w, &word, 4); /* each 32-bit word is in host order */
	}
	/* An IPv4 client of a dual-stack socket: named as IPv4. */
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (v6 && memcmp(b, mapped, 12) == 0)
		return inet_ntop(AF_INET, b + 12, out, (socklen_t)len) ? 0 : -1;
	return inet_ntop(v6 ? AF_INET6 : AF_INET, b, out, (socklen_t)len) ? 0 : -1;
}

static struct gconn *find_conn(struct srv_guard *g, uint64_t inode)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->v[i].inode == inode)
			return &g->v[i];
	return NULL;
}

/* Reads one /proc/net table, adding our established connections to the
 * listening port. */
static void read_table(struct srv_guard *g, const char *path, int v6, unsigned port,
		       const struct sock *socks, size_t nsocks, uint64_t now)
{
	FILE *f = fopen(path, "re");
	char line[512];
	if (!f)
		return;
	if (!fgets(line, sizeof(line), f)) { /* the header */
		fclose(f);
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		char local[64], remote[64];
		unsigned lport, rport, state;
		unsigned long long inode;
		if (sscanf(line,
			   " %*d: %63[0-9A-Fa-f]:%x %63[0-9A-Fa-f]:%x %x %*s %*s %*s %*s %*s %llu",
			   local, &lport, remote, &rport, &state, &inode) != 6)
			continue;
		if (state != 1 /* ESTABLISHED */ || lport != port || !inode)
			continue;
		struct sock key = {.inode = inode};
		const struct sock *s = bsearch(&key, socks, nsocks, sizeof(*socks), cmp_sock);
		if (!s)
			continue; /* another process's */
		struct gconn *c = find_conn(g, inode);
		if (!c) {
			if (g->n == g->cap) {
				size_t cap = g->cap ? 2 * g->cap : 64;
				struct gconn *nv = realloc(g->v, cap * sizeof(*nv));
				if (!nv)
					continue;
				g->v = nv;
				g->cap = cap;
			}
			c = &g->v[g->n++];
			*c = (struct gconn){.inode = inode, .first_seen_ns = now};
			if (proc_addr(remote, v6, c->host, sizeof(c->host)) < 0)
				snprintf(c->host, sizeof(c->host), "?");
		}
		c->fd = s->fd;
		c->seen = 1;
	}
	fclose(f);
}

/* Shuts a connection down, if its descriptor still holds that socket and,
 * with only_silent, nothing ever arrived on it. Returns 0 when it did. */
static int cut(const struct gconn *c, int only_silent)
{
	/* A duplicate holds the socket: it cannot become another meanwhile. */
	int d = fcntl(c->fd, F_DUPFD_CLOEXEC, 0);
	struct stat st;
	int r = -1;
	if (d < 0)
		return -1;
	if (fstat(d, &st) == 0 && S_ISSOCK(st.st_mode) && (uint64_t)st.st_ino == c->inode) {
		struct tcp_info ti;
		socklen_t tlen = sizeof(ti);
		memset(&ti, 0, sizeof(ti));
		int silent = getsockopt(d, IPPROTO_TCP, TCP_INFO, &ti, &tlen) == 0 &&
			     tlen >= offsetof(struct tcp_info, tcpi_bytes_received) +
					 sizeof(ti.tcpi_bytes_received) &&
			     ti.tcpi_bytes_received == 0;
		if (!only_silent || silent)
			r = shutdown(d, SHUT_RDWR);
	}
	close(d);
	return r;
}

static int cmp_young_first(const void *a, const void *b)
{
	uint64_t x = (*(struct gconn *const *)a)->first_seen_ns;
	uint64_t y = (*(struct gconn *const *)b)->first_seen_ns;
	return x > y ? -1 : x < y;
}

void srv_guard_scan(struct qsrv *srv)
{
	struct srv_guard *g = srv->guard;
	uint64_t now = srv_now_ns();
	struct sock *socks = NULL;
	size_t nsocks = 0, nfds = 0;
	struct rlimit rl;
	if (!g || !srv->listen_port || own_sockets(&socks, &nsocks, &nfds) < 0)
		return;
	/* Close to the descriptor limit, nobody new can connect: say so,
	 * every 10 s at most. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    nfds * 10 >= rl.rlim_cur * 9 && now - g->warned_ns >= 10000000000ull) {
		g->warned_ns = now;
		srv_log(srv, QSVC_LOG_WARNING,
			"quaid holds %zu of its %llu file descriptors (RLIMIT_NOFILE): new "
			"connections may fail",
			nfds, (unsigned long long)rl.rlim_cur);
	}
	for (size_t i = 0; i < g->n; i++)
		g->v[i].seen = 0;
	read_table(g, "/proc/self/net/tcp", 0, srv->listen_port, socks, nsocks, now);
	read_table(g, "/proc/self/net/tcp6", 1, srv->listen_port, socks, nsocks, now);
	free(socks);
	/* Forget what is gone. */
	size_t k = 0;
	for (size_t i = 0; i < g->n; i++)
		if (g->v[i].seen)
			g->v[k++] = g->v[i];
	g->n = k;
	if (!g->n)
		return;

	uint64_t limit_ns = (uint64_t)srv->conf.handshake_timeout * 1000000000ull;
	struct gconn **by = malloc(g->n * sizeof(*by));
	if (!by)
		return;
	/* Those that never began a handshake, by host for the log. */
	for (size_t i = 0; i < g->n; i++) {
		struct gconn *c = &g->v[i];
		if (c->fd < 0 || now - c->first_seen_ns < limit_ns)
			continue;
		unsigned cut_n = 0;
		char host[INET6_ADDRSTRLEN];
		snprintf(host, sizeof(host), "%s", c->host);
		for (size_t j = i; j < g->n; j++) {
			struct gconn *o = &g->v[j];
			if (o->fd >= 0 && strcmp(o->host, host) == 0 &&
			    now - o->first_seen_ns >= limit_ns && cut(o, 1) == 0) {
				cut_n++;
				o->fd = -1;
			}
		}
		if (cut_n)
			srv_log(
			    srv, QSVC_LOG_NOTICE,
			    "closed %u connection%s from %s on which nothing arrived within %u s "
			    "(handshake_timeout)",
			    cut_n, cut_n == 1 ? "" : "s", host, srv->conf.handshake_timeout);
	}
	/* Per host: the newest beyond max_host_connections. */
	for (size_t i = 0; i < g->n; i++) {
		struct gconn *c = &g->v[i];
		if (c->fd < 0)
			continue;
		size_t m = 0;
		for (size_t j = i; j < g->n; j++)
			if (g->v[j].fd >= 0 && strcmp(g->v[j].host, c->host) == 0)
				by[m++] = &g->v[j];
		char host[INET6_ADDRSTRLEN];
		snprintf(host, sizeof(host), "%s", c->host);
		if (m <= srv->conf.host_conn_max)
			continue;
		qsort(by, m, sizeof(*by), cmp_young_first);
		unsigned cut_n = 0;
		for (size_t j = 0; j < m - srv->conf.host_conn_max; j++) {
			cut_n += cut(by[j], 0) == 0;
			by[j]->fd = -1;
		}
		srv_log(srv, QSVC_LOG_WARNING,
			"%s has %zu connections open, over max_host_connections (%u): closed the "
			"%u newest",
			host, m, srv->conf.host_conn_max, cut_n);
	}
	free(by);
}

int srv_guard_new(struct qsrv *srv)
{
	srv->guard = calloc(1, sizeof(*srv->guard));
	return srv->guard ? 0 : -ENOMEM;
}
