/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A hostile quai client for quaid's fault tests (tests/cli/test_remote.py):
 * it says HELLO properly, then misbehaves in one chosen way, and reports
 * what the server did. Real endpoint, real protocol code; only the
 * behaviour is wrong.
 *
 *   raw_client HOST PORT MODE [DATASET]
 *
 * MODE: garbage, truncated, oversized, server-type, bad-credit, bad-slots,
 * version (HELLO in protocol version 2), hoard (open a stream of DATASET,
 * take every batch, never give a slot back, and keep the session alive).
 * Prints one line: "dropped" (the server ended the session: a later
 * request gets no answer), "error CODE MESSAGE" (it answered ERROR),
 * "alive" or, for hoard, "hoarding N" after N batches and then waits.
 *
 * Authentication (a MUNGE credential from $QUAI_MUNGE_SOCKET's munged, as
 * quai makes it, unless the mode spoils it): auth-none (no credential),
 * auth-forged (one byte of it changed), auth-expired (a TTL of 1 s, sent
 * 2.5 s later), auth-replay (a good credential, then, after a BYE, the same one again in
 * a second HELLO), auth-other (bound to another client address),
 * auth-kind (an unknown method). Each prints "welcome" or "error CODE
 * MESSAGE" for the last HELLO. push-open NAME CLASS ZONE: PUSH_OPEN of a
 * dataset of that classification and zone, as a client that does not
 * check; prints the answer. idle HOSTNAME: a well-behaved session that
 * declares HOSTNAME as its host (any bytes: quai stat must show them as
 * they are), prints "welcome ADDR" (its fabric address in hex), then
 * "heard TYPE [CODE MESSAGE]" for every message but PONG it gets, and
 * pings until killed. hijack ADDR [none]: a HELLO that claims the fabric
 * address ADDR (another client's), with a credential of this process's
 * user bound to it (or none); prints "answer TYPE ..." or "no answer".
 * flood ADDR N: N HELLOs without a credential, back to back, claiming
 * ADDR (an address that never answers); prints "sent N".
 * Exit status 0 when the exchange ran, 1 on a local failure.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "fabric.h"
#include "proto.h"
#include "quai/quai.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static uint8_t last[QP_MSG_MAX];
static size_t last_len;
static unsigned landed;
static int watch; /* idle: print what arrives */

static void on_msg(void *arg, uint64_t peer, const void *msg, size_t len)
{
	(void)arg, (void)peer;
	pthread_mutex_lock(&mu);
	if (watch) {
		static struct qp_msg w;
		if (qp_decode(msg, len, &w, NULL, 0) == 0 && w.h.type != QP_PONG) {
			if (w.h.type == QP_ERROR)
				printf("heard ERROR %d %s\n", w.u.error.code, w.u.error.message);
			else
				printf("heard %s\n", qp_type_name(w.h.type));
			fflush(stdout);
		}
	}
	memcpy(last, msg, len);
	last_len = len;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void on_write_in(void *arg, uint64_t peer, uint64_t data)
{
	(void)arg, (void)peer, (void)data;
	pthread_mutex_lock(&mu);
	landed++;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

/* Waits up to ms for a message; decodes it into m. 0, or -ETIMEDOUT. */
static int wait_msg(int ms, struct qp_msg *m)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&mu);
	while (!last_len)
		if (pthread_cond_timedwait(&cv, &mu, &ts) == ETIMEDOUT)
			break;
	int r = last_len ? 0 : -ETIMEDOUT;
	if (!r) {
		qp_decode(last, last_len, m, NULL, 0);
		last_len = 0;
	}
	pthread_mutex_unlock(&mu);
	return r;
}

static struct qf_ep *ep;
static void *ring; /* bad-credit, hoard: the slots the server writes into */
static struct qf_mr *mr;
static uint64_t server;
static uint64_t req = 1;
static uint32_t session;

static int send_msg(struct qp_msg *m)
{
	uint8_t buf[QP_MSG_MAX];
	m->h.req = req++;
	m->h.session = session;
	int n = qp_encode(m, buf, sizeof(buf));
	if (n < 0)
		return n;
	return qf_send_wait(ep, server, buf, (size_t)n, 5000);
}

/* Whether the session still answers: a LIST within 3 s. */
static const char *probe(struct qp_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->h.type = QP_LIST;
	send_msg(m);
	if (wait_msg(3000, m) < 0)
		return "dropped";
	if (m->h.type == QP_ERROR && m->h.req == 0)
		return "dropped"; /* the server said so, and why */
	return m->h.type == QP_ERROR ? "error" : "alive";
}

int main(int argc, char **argv)
{
	static struct qp_msg m;
	struct qf_handlers h = {.on_msg = on_msg, .on_write_in = on_write_in};
	struct qf_opts o = {.msg_max = QP_MSG_MAX, .h = &h};
	char err[256];
	uint8_t buf[QP_MSG_MAX], addr[QF_ADDR_MAX];
	size_t alen = sizeof(addr);

	if (argc < 4) {
		fprintf(stderr, "usage: raw_client HOST PORT MODE [DATASET]\n");
		return 1;
	}
	const char *mode = argv[3];
	if (qf_open(&o, &ep, err, sizeof(err)) < 0 ||
	    qf_resolve(ep, argv[1], argv[2], &server) < 0 || qf_name(ep, addr, &alen) < 0) {
		fprintf(stderr, "raw_client: cannot reach %s:%s: %s\n", argv[1], argv[2], err);
		return 1;
	}
	/* hijack: the address of another client, from hex. */
	uint8_t claimed[QF_ADDR_MAX];
	size_t clen = 0;
	int flood = strcmp(mode, "flood") == 0;
	if (strcmp(mode, "hijack") == 0 || flood) {
		const char *hex = argc > 4 ? argv[4] : "";
		for (; hex[0] && hex[1] && clen < sizeof(claimed); hex += 2) {
			unsigned v;
			if (sscanf(hex, "%2x", &v) != 1)
				break;
			claimed[clen++] = (uint8_t)v;
		}
		if (!clen) {
			fprintf(stderr, "raw_client: hijack needs an address in hex\n");
			return 1;
		}
	}
	m.h.type = QP_HELLO;
	m.u.hello.addr = (struct qp_blob){addr, alen};
	if (clen) {
		memcpy(addr, claimed, clen);
		alen = clen;
		m.u.hello.addr = (struct qp_blob){addr, alen};
	}
	snprintf(m.u.hello.host, sizeof(m.u.hello.host), "%s",
		 strcmp(mode, "idle") == 0 && argc > 4 ? argv[4] : "raw-client");
	m.u.hello.pid = (uint32_t)getpid();

	/* The credential, bound as quai binds it, or spoilt as the mode says. */
	uint8_t saddr[QF_ADDR_MAX], other[QF_ADDR_MAX];
	size_t slen = sizeof(saddr);
	char sock[256], *cred = NULL;
	int auth_mode = strncmp(mode, "auth-", 5) == 0;
	int no_cred = strcmp(mode, "auth-none") == 0 || flood ||
		      (clen && argc > 5 && strcmp(argv[5], "none") == 0);
	if (!no_cred) {
		const uint8_t *bound = addr;
		memcpy(other, addr, alen);
		if (strcmp(mode, "auth-other") == 0) {
			other[alen - 1] ^= 0x5a; /* an address that is not ours */
			other[3] ^= 0x01;	 /* (for sockaddr_in, another port too) */
			bound = other;
		}
		int ttl = strcmp(mode, "auth-expired") == 0 ? 1 : 0;
		if (qauth_client_socket(sock, sizeof(sock), err, sizeof(err)) < 0 ||
		    qf_peer_addr(ep, server, saddr, &slen) < 0 ||
		    qauth_munge_encode_ttl(sock, bound, alen, saddr, slen, ttl, &cred, err,
					   sizeof(err)) < 0) {
			fprintf(stderr, "raw_client: no credential: %s\n", err);
			return 1;
		}
		if (strcmp(mode, "auth-forged") == 0)
			cred[strlen(cred) / 2] = cred[strlen(cred) / 2] == 'A' ? 'B' : 'A';
		if (strcmp(mode, "auth-expired") == 0)
			usleep(2500 * 1000);
		snprintf(m.u.hello.auth_kind, sizeof(m.u.hello.auth_kind), "%s",
			 strcmp(mode, "auth-kind") == 0 ? "kerberos" : "munge");
		m.u.hello.auth = (struct qp_blob){(const uint8_t *)cred, strlen(cred)};
	}
	if (flood) {
		int n = argc > 5 ? atoi(argv[5]) : 16, sent = 0;
		for (int i = 0; i < n; i++) {
			struct qp_msg hello = m;
			sent += send_msg(&hello) == 0;
		}
		printf("sent %d\n", sent);
		qf_close(ep);
		return 0;
	}
	if (clen) {
		send_msg(&m);
		if (wait_msg(2000, &m) < 0)
			puts("no answer");
		else if (m.h.type == QP_ERROR)
			printf("answer ERROR %d %s\n", m.u.error.code, m.u.error.message);
		else
			printf("answer %s\n", qp_type_name(m.h.type));
		free(cred);
		qf_close(ep);
		return 0;
	}
	if (auth_mode) {
		int rounds = strcmp(mode, "auth-replay") == 0 ? 2 : 1;
		for (int i = 0; i < rounds; i++) {
			struct qp_msg hello = m;
			send_msg(&hello);
			if (wait_msg(5000, &hello) < 0) {
				puts("no answer");
				return 0;
			}
			if (i + 1 < rounds) {
				/* The session ends before the replay: a HELLO that
				 * claims a live session's address is answered by
				 * silence, whoever sent it (docs/SECURITY.md). */
				struct qp_msg bye = {.h = {.type = QP_BYE}};
				session = (uint32_t)hello.u.welcome.session;
				send_msg(&bye);
				session = 0;
				usleep(1500 * 1000);
				continue;
			}
			if (hello.h.type == QP_WELCOME)
				puts("welcome");
			else
				printf("error %d %s\n", hello.u.error.code, hello.u.error.message);
		}
		free(cred);
		qf_close(ep);
		return 0;
	}
	if (strcmp(mode, "version") == 0) {
		int n = qp_encode(&m, buf, sizeof(buf));
		buf[4] = 2; /* the version field */
		qf_send_wait(ep, server, buf, (size_t)n, 5000);
		if (wait_msg(5000, &m) < 0) {
			puts("no answer");
			return 0;
		}
		printf("error %d %s\n", m.u.error.code, m.u.error.message);
		return 0;
	}
	send_msg(&m);
	if (wait_msg(5000, &m) < 0 || m.h.type != QP_WELCOME) {
		fprintf(stderr, "raw_client: no WELCOME\n");
		return 1;
	}
	session = (uint32_t)m.u.welcome.session;
	free(cred);

	memset(&m, 0, sizeof(m));
	if (strcmp(mode, "idle") == 0) {
		printf("welcome ");
		for (size_t i = 0; i < alen; i++)
			printf("%02x", addr[i]);
		printf("\n");
		fflush(stdout);
		pthread_mutex_lock(&mu);
		watch = 1;
		pthread_mutex_unlock(&mu);
		for (;;) { /* until killed */
			memset(&m, 0, sizeof(m));
			m.h.type = QP_PING;
			send_msg(&m);
			sleep(1);
		}
	}
	if (strcmp(mode, "garbage") == 0) {
		for (int i = 0; i < 100; i++)
			buf[i] = (uint8_t)(i * 37 + 11);
		qf_send_wait(ep, server, buf, 100, 5000);
	} else if (strcmp(mode, "truncated") == 0 || strcmp(mode, "oversized") == 0) {
		m.h.type = QP_STREAM_OPEN;
		m.h.req = req++;
		m.h.session = session;
		snprintf(m.u.stream_open.name, sizeof(m.u.stream_open.name), "x");
		m.u.stream_open.world = 1;
		int n = qp_encode(&m, buf, sizeof(buf));
		if (strcmp(mode, "truncated") == 0) {
			qf_send_wait(ep, server, buf, (size_t)n - 5, 5000);
		} else {
			/* The header claims more than any message may hold. */
			uint32_t big = QP_MSG_MAX * 4;
			memcpy(buf + 8, &big, 4);
			qf_send_wait(ep, server, buf, (size_t)n, 5000);
		}
	} else if (strcmp(mode, "push-open") == 0) {
		if (argc < 7 || quai_class_parse(argv[5]) < 0) {
			fprintf(stderr, "raw_client: push-open NAME CLASS ZONE\n");
			return 1;
		}
		m.h.type = QP_PUSH_OPEN;
		m.u.push_open.tag = 1;
		snprintf(m.u.push_open.name, sizeof(m.u.push_open.name), "%s", argv[4]);
		m.u.push_open.manifest_len = 1000;
		m.u.push_open.classification = (uint8_t)quai_class_parse(argv[5]);
		snprintf(m.u.push_open.zone, sizeof(m.u.push_open.zone), "%s", argv[6]);
		send_msg(&m);
		if (wait_msg(5000, &m) < 0) {
			puts("no answer");
		} else if (m.h.type == QP_ERROR) {
			printf("error %d %s\n", m.u.error.code, m.u.error.message);
		} else {
			printf("%s\n", qp_type_name(m.h.type));
		}
		qf_close(ep);
		return 0;
	} else if (strcmp(mode, "server-type") == 0) {
		m.h.type = QP_WELCOME;
		snprintf(m.u.welcome.server, sizeof(m.u.welcome.server), "not a server");
		snprintf(m.u.welcome.zone, sizeof(m.u.welcome.zone), "none");
		send_msg(&m);
	} else if (strcmp(mode, "bad-slots") == 0) {
		m.h.type = QP_SLOTS;
		m.u.slots = (struct qp_slots){.id = 999999, .nslots = 1, .slot_bytes = 4096};
		send_msg(&m);
		if (wait_msg(3000, &m) == 0 && m.h.type == QP_ERROR) {
			printf("error %d %s\n", m.u.error.code, m.u.error.message);
			printf("then %s\n", probe(&m));
			return 0;
		}
	} else if (strcmp(mode, "bad-credit") == 0 || strcmp(mode, "hoard") == 0) {
		if (argc < 5) {
			fprintf(stderr, "raw_client: %s needs a DATASET\n", mode);
			return 1;
		}
		m.h.type = QP_STREAM_OPEN;
		m.u.stream_open.tag = 1;
		snprintf(m.u.stream_open.name, sizeof(m.u.stream_open.name), "%s", argv[4]);
		m.u.stream_open.world = 1;
		send_msg(&m);
		if (wait_msg(10000, &m) < 0 || m.h.type != QP_STREAM_READY) {
			fprintf(stderr, "raw_client: no STREAM_READY (%s)\n",
				m.h.type == QP_ERROR ? m.u.error.message : "");
			return 1;
		}
		uint64_t id = m.u.stream_ready.stream, sb = m.u.stream_ready.slot_bytes;
		uint32_t ns = m.u.stream_ready.slots;
		ring = aligned_alloc(4096, (sb * ns + 4095) / 4096 * 4096);
		if (!ring || qf_mr_reg(ep, ring, sb * ns, QF_REMOTE_WRITE, &mr) < 0)
			return 1;
		memset(&m, 0, sizeof(m));
		m.h.type = QP_SLOTS;
		m.u.slots = (struct qp_slots){.id = id,
					      .nslots = ns,
					      .slot_bytes = sb,
					      .addr = qf_mr_addr(mr, ring),
					      .key = qf_mr_key(mr)};
		send_msg(&m);
		wait_msg(5000, &m);
		if (strcmp(mode, "bad-credit") == 0) {
			memset(&m, 0, sizeof(m));
			m.h.type = QP_CREDIT;
			m.u.credit.stream = id;
			m.u.credit.n = 1;
			m.u.credit.slots[0] = ns; /* one past the ring */
			send_msg(&m);
		} else {
			/* Take what lands, give nothing back, keep pinging. */
			for (int i = 0; i < 10; i++) {
				memset(&m, 0, sizeof(m));
				m.h.type = QP_PING;
				send_msg(&m);
				sleep(1);
			}
			pthread_mutex_lock(&mu);
			printf("hoarding %u\n", landed);
			pthread_mutex_unlock(&mu);
			fflush(stdout);
			for (;;) { /* until killed */
				memset(&m, 0, sizeof(m));
				m.h.type = QP_PING;
				send_msg(&m);
				sleep(1);
			}
		}
	} else {
		fprintf(stderr, "raw_client: unknown mode %s\n", mode);
		return 1;
	}
	puts(probe(&m));
	qf_mr_close(mr);
	qf_close(ep);
	free(ring);
	return 0;
}
