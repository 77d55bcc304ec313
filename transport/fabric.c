/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fabric endpoint (fabric.h): one RDM endpoint, its CQ, AV and
 * registered bounce buffers, and the progress thread that reads the CQ.
 *
 * Every posted operation owns an op record whose first member is the
 * struct fi_context2 the provider may use (FI_CONTEXT/FI_CONTEXT2 modes);
 * a completion's op_context is that record. Records come from pools sized
 * at open: no allocation on the data path.
 *
 * Progress. Data progress is manual on tcp;ofi_rxm, so someone must read
 * the CQ all the time, yet an idle endpoint must not burn a core. The
 * thread reads the CQ while there is work, then sleeps: on the CQ's wait
 * fd (fi_trywait + ppoll) when the provider gives one (tcp;ofi_rxm does),
 * else in short sleeps that back off from 10 us to 1 ms (shm: its CQ has
 * no fd). An eventfd wakes it for qf_close() and when another thread posts
 * while it sleeps. Sleeps on the wait fd are bounded (SLEEP_*) so that a
 * provider whose fd misses an event costs latency, never a hang.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* ppoll; meson defines it, bench/ builds without */
#endif
#include "errmsg.h"
#include "fabric.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* libfabric is loaded when the first endpoint opens, not when the program
 * starts: Debian's libfabric pulls in provider libraries whose constructors
 * take about 0.2 s (libinfinipath calibrates a clock with sleeps), which
 * every quai command and every training job would pay otherwise, remote or
 * not. The six entry points called here go through qf_dl_* (below); the
 * rest of libfabric is reached through the objects they return. */
#define fi_getinfo qf_dl_getinfo
#define fi_freeinfo qf_dl_freeinfo
#define fi_dupinfo qf_dl_dupinfo
#define fi_fabric qf_dl_fabric
#define fi_strerror qf_dl_strerror
#define fi_tostr qf_dl_tostr
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include <dlfcn.h>

/* The oldest libfabric meson accepts; newer ones serve it unchanged. */
#define API_VERSION FI_VERSION(1, 14)

#define IOV_MAX_QF 4	 /* iovs per qf_write(), as the header promises */
#define CQ_BATCH 16	 /* completions read per fi_cq_readfrom() */
#define RMA_OPS_MAX 1024 /* RMA records: outstanding writes/reads (pieces) */

/* Sleeps on the CQ's wait fd: a bound that only matters if the provider's
 * fd misses an event. Shorter while our own operations are in flight. */
#define SLEEP_BUSY_MS 10
#define SLEEP_IDLE_MS 200
/* Without a wait fd: sleeps from 10 us, doubling, up to 1 ms. */
#define BACKOFF_MIN_NS 10000L
#define BACKOFF_MAX_NS 1000000L

/* ---- loading libfabric ------------------------------------------------- */

/* The library and the symbol versions a program linked against libfabric
 * 1.x headers binds to (what the dynamic linker would pick for it). */
#define LIBFABRIC_SONAME "libfabric.so.1"

static struct {
	pthread_once_t once;
	bool ok;
	char err[320];
	int (*getinfo)(uint32_t, const char *, const char *, uint64_t, const struct fi_info *,
		       struct fi_info **);
	void (*freeinfo)(struct fi_info *);
	struct fi_info *(*dupinfo)(const struct fi_info *);
	int (*fabric)(struct fi_fabric_attr *, struct fid_fabric **, void *);
	const char *(*strerror)(int);
	char *(*tostr)(const void *, enum fi_type);
	atomic_int role; /* 0 until the first qf_open(): 1 client, 2 server */
} lib = {.once = PTHREAD_ONCE_INIT};

/* Sets the function pointer at fnp to name@version (the POSIX way: a
 * data pointer's bytes copied into a function pointer of the same size). */
static bool lib_sym(void *h, const char *name, const char *version, void *fnp)
{
	void *p = dlvsym(h, name, version);

	_Static_assert(sizeof(p) == sizeof(lib.getinfo), "function pointers are data-sized");
	if (p == NULL && lib.err[0] == '\0')
		snprintf(lib.err, sizeof(lib.err), "%s has no %s@%s: %s", LIBFABRIC_SONAME, name,
			 version, dlerror());
	memcpy(fnp, &p, sizeof(p));
	return p != NULL;
}

static void lib_load(void)
{
	/* Some providers' libraries take signals over when they load
	 * (libinfinipath: SIGINT, SIGTERM, SIGSEGV... to print a backtrace
	 * and exit): the program's own handlers (quai's interruption, Python's
	 * KeyboardInterrupt) are put back. */
	static struct sigaction saved[NSIG];
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, NULL, &saved[sig]);
	/* Providers read their parameters from the environment once, as
	 * they initialize: a client's rxm buffers are sized here, before. An
	 * environment that names its own size keeps it (overwrite 0). */
	if (atomic_load(&lib.role) != 2)
		(void)setenv("FI_OFI_RXM_MSG_RX_SIZE", QF_CLIENT_RX_BUFS, 0);
	void *h = dlopen(LIBFABRIC_SONAME, RTLD_NOW | RTLD_LOCAL);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &saved[sig], NULL);

	if (h == NULL) {
		snprintf(lib.err, sizeof(lib.err),
			 "cannot load libfabric (%s; Debian: apt-get install libfabric1)",
			 dlerror());
		return;
	}
	lib.ok = lib_sym(h, "fi_getinfo", "FABRIC_1.3", &lib.getinfo) &&
		 lib_sym(h, "fi_freeinfo", "FABRIC_1.3", &lib.freeinfo) &&
		 lib_sym(h, "fi_dupinfo", "FABRIC_1.3", &lib.dupinfo) &&
		 lib_sym(h, "fi_fabric", "FABRIC_1.1", &lib.fabric) &&
		 lib_sym(h, "fi_strerror", "FABRIC_1.0", &lib.strerror) &&
		 lib_sym(h, "fi_tostr", "FABRIC_1.0", &lib.tostr);
	/* Never closed: providers keep threads and handlers of their own. */
}

/* Loads libfabric once; the first caller's `server` decides the provider
 * buffers (lib_load). Returns 0, or -ELIBACC with err saying why. */
static int lib_ready(bool server, char *err, size_t err_len)
{
	int none = 0;
	atomic_compare_exchange_strong(&lib.role, &none, server ? 2 : 1);
	pthread_once(&lib.once, lib_load);
	if (lib.ok)
		return 0;
	if (err && err_len)
		snprintf(err, err_len, "%s", lib.err);
	return -ELIBACC;
}

/* Only reached once lib_ready() said yes: every caller holds an endpoint,
 * or is qf_open() after its check. */
int qf_dl_getinfo(uint32_t version, const char *node, const char *service, uint64_t flags,
		  const struct fi_info *hints, struct fi_info **info)
{
	return lib.getinfo(version, node, service, flags, hints, info);
}

void qf_dl_freeinfo(struct fi_info *info)
{
	if (info)
		lib.freeinfo(info);
}

struct fi_info *qf_dl_dupinfo(const struct fi_info *info)
{
	return lib.dupinfo(info);
}

int qf_dl_fabric(struct fi_fabric_attr *attr, struct fid_fabric **fabric, void *context)
{
	return lib.fabric(attr, fabric, context);
}

const char *qf_dl_strerror(int errnum)
{
	return lib.ok ? lib.strerror(errnum) : "libfabric is not loaded";
}

char *qf_dl_tostr(const void *data, enum fi_type datatype)
{
	return lib.tostr(data, datatype);
}

enum op_kind { OP_RECV, OP_SEND, OP_WRITE, OP_READ };

struct op {
	struct fi_context2 ctx; /* first: completions hand back &ctx */
	struct op *next;	/* free list or deferred queue */
	enum op_kind kind;
	char *buf; /* bounce buffer (send, recv) */
	uint64_t peer;
	/* RMA: a qf_write() split in pieces has one record per piece; the
	 * first (parent) carries the count, the status and op_ctx. */
	struct op *parent;
	atomic_uint pending;
	atomic_int status;
	void *user;
	/* What to post: kept so that a piece can be posted later (deferred)
	 * when the provider pushes back halfway through a split write. */
	struct iovec iov[IOV_MAX_QF];
	void *desc[IOV_MAX_QF];
	size_t niov, len;
	uint64_t raddr, rkey, data, flags;
	int fail; /* deferred only: complete with this error unposted */
};

struct peer_ent {
	fi_addr_t fi;
	bool live; /* false once removed: the AV slot stays, see qf_peer_remove */
	size_t len;
	unsigned char addr[QF_ADDR_MAX];
};

struct qf_mr {
	struct qf_ep *ep;
	struct fid_mr *mr;
	char *buf;
	size_t len;
	struct qf_mr *prev, *next; /* ep->mrs, so qf_close() finds leftovers */
};

struct qf_ep {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_cq *cq;
	struct fid_av *av;
	struct fid_ep *ep;
	struct qf_handlers h;

	uint64_t mr_mode;
	atomic_uint_fast64_t next_key; /* requested keys without FI_MR_PROV_KEY */
	size_t msg_max, iov_limit, max_rma, cq_data_size, addrlen;
	bool can_split;	 /* FI_ORDER_WAW (+ SAW) granted: pieces land in order */
	size_t waw_size; /* ... for writes up to this size */

	/* Bounce buffers: rx_depth receives, tx_depth sends. */
	unsigned rx_depth, tx_depth;
	char *rx_buf, *tx_buf;
	struct qf_mr *rx_mr, *tx_mr; /* with FI_MR_LOCAL only */
	struct op *rx_ops, *tx_ops, *rma_ops;
	size_t rma_nops;

	pthread_mutex_t lock; /* free lists, deferred queue, peers, MR list */
	struct op *tx_free, *rma_free;
	struct op *defer_head, *defer_tail;
	atomic_bool deferred; /* defer_head != NULL, for lock-free looks */
	struct peer_ent *peers;
	size_t npeers, peers_cap;
	bool av_table;	     /* fi_addrs are indices: `live` is indexed by them */
	unsigned char *live; /* FI_AV_TABLE: live[fi] */
	size_t live_cap;
	atomic_uint_fast64_t av_bound; /* FI_AV_TABLE: every id handed out is below */
	struct qf_mr *mrs;

	/* Progress thread. */
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	atomic_bool sleeping;
	atomic_uint inflight; /* our sends and RMA pieces not yet completed */
	int wait_fd;	      /* the CQ's, or -1: poll with backoff */
	int kick_fd;	      /* eventfd */

	pthread_mutex_t prog_lock;
	pthread_cond_t prog_cond;
	atomic_uint_fast64_t prog_gen;
	atomic_uint waiters;

	struct {
		atomic_uint_fast64_t msgs_in, msgs_out, bytes_written, bytes_read, eagain, errors;
	} st;
};

/* -FI_* (or FI_* from a CQ error entry) to -errno. Codes below
 * FI_ERRNO_OFFSET are errno values already. */
static int neg_errno(long r)
{
	long e = r < 0 ? -r : r;

	if (e == 0)
		return -EIO;
	if (e < FI_ERRNO_OFFSET)
		return (int)-e;
	switch (e) {
	case FI_ETOOSMALL:
		return -ENOSPC;
	case FI_EOPBADSTATE:
		return -EBADFD;
	case FI_EBADFLAGS:
	case FI_ENOEQ:
	case FI_EDOMAIN:
	case FI_ENOCQ:
		return -EINVAL;
	case FI_ECRC:
		return -EBADMSG;
	case FI_ETRUNC:
		return -EMSGSIZE;
	case FI_ENOKEY:
		return -ENOKEY;
	case FI_EOVERRUN:
		return -EOVERFLOW;
	case FI_ENORX:
		return -ENOBUFS;
	default:
		return -EIO;
	}
}

static void stat_add(atomic_uint_fast64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* ---- hints and provider selection ---------------------------------- */

static struct fi_info *make_hints(const char *prov, bool ordered)
{
	struct fi_info *h = fi_allocinfo();

	if (h == NULL)
		return NULL;
	h->ep_attr->type = FI_EP_RDM;
	h->caps =
	    FI_MSG | FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE | FI_SOURCE;
	/* Modes we honour: every op owns a fi_context2, and receives stay
	 * posted for writes with data to consume. */
	h->mode = FI_CONTEXT | FI_CONTEXT2 | FI_RX_CQ_DATA;
	h->domain_attr->mr_mode =
	    FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
	h->domain_attr->threading = FI_THREAD_SAFE;
	if (ordered) {
		/* Pieces of a split write must land before the piece that
		 * carries the CQ data (WAW), and a message sent after a write
		 * must not overtake it (SAW), which protocols can lean on. */
		h->tx_attr->msg_order = FI_ORDER_WAW | FI_ORDER_SAW;
		h->rx_attr->msg_order = FI_ORDER_WAW | FI_ORDER_SAW;
	}
	h->fabric_attr->prov_name = strdup(prov);
	if (h->fabric_attr->prov_name == NULL) {
		fi_freeinfo(h);
		return NULL;
	}
	return h;
}

/* After fi_getinfo() found nothing: say what is missing, by asking again
 * with ever more of our requirements. */
static void explain_nodata(const char *prov, char *err, size_t err_len)
{
	static const uint64_t rma =
	    FI_MSG | FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE;
	struct fi_info *h = fi_allocinfo(), *info = NULL;
	char modes[256] = "";
	const char *why = "its RDM endpoints need something quai does not do", *env;

	if (h == NULL || (h->fabric_attr->prov_name = strdup(prov)) == NULL)
		goto out;
	if (fi_getinfo(API_VERSION, NULL, NULL, 0, h, &info) != 0) {
		why = "no such provider here (fi_info -l lists them)";
		goto out;
	}
	fi_freeinfo(info);
	info = NULL;
	h->ep_attr->type = FI_EP_RDM;
	/* Whatever modes and registration rules it likes, for now. */
	h->mode = ~0ULL;
	h->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY |
				  FI_MR_ENDPOINT | FI_MR_RAW | FI_MR_MMU_NOTIFY | FI_MR_RMA_EVENT;
	if (fi_getinfo(API_VERSION, NULL, NULL, 0, h, &info) != 0) {
		why = "it offers no RDM (reliable datagram) endpoints";
		goto out;
	}
	fi_freeinfo(info);
	info = NULL;
	h->caps = rma;
	if (fi_getinfo(API_VERSION, NULL, NULL, 0, h, &info) != 0) {
		why = "its RDM endpoints lack messages or RMA read/write";
		goto out;
	}
	fi_freeinfo(info);
	info = NULL;
	h->caps = rma | FI_SOURCE;
	if (fi_getinfo(API_VERSION, NULL, NULL, 0, h, &info) != 0) {
		why = "its RDM endpoints lack FI_SOURCE (a message's sender)";
		goto out;
	}
	if (info->domain_attr->mr_mode & FI_MR_RAW) {
		why = "it needs FI_MR_RAW memory keys, which quai does not handle";
	} else if (info->mode & ~(uint64_t)(FI_CONTEXT | FI_CONTEXT2 | FI_RX_CQ_DATA)) {
		uint64_t m = info->mode & ~(uint64_t)(FI_CONTEXT | FI_CONTEXT2 | FI_RX_CQ_DATA);

		snprintf(modes, sizeof(modes), "it needs modes quai does not honour (%s)",
			 fi_tostr(&m, FI_TYPE_MODE));
		why = modes;
	} else if (info->domain_attr->mr_mode & (FI_MR_MMU_NOTIFY | FI_MR_RMA_EVENT)) {
		why = "it needs FI_MR_MMU_NOTIFY or FI_MR_RMA_EVENT registration";
	} else {
		why = "it does not offer FI_THREAD_SAFE domains";
	}
out:
	fi_freeinfo(info);
	fi_freeinfo(h);
	/* libfabric itself loads only the providers $FI_PROVIDER names. */
	env = getenv("FI_PROVIDER");
	if (env && *env && strcmp(env, prov) != 0)
		qerr_set(err, err_len, "provider \"%s\": %s (FI_PROVIDER=%s hides the others)",
			 prov, why, env);
	else
		qerr_set(err, err_len, "provider \"%s\": %s", prov, why);
}

/* Whether quai can drive this info; else a reason. */
static const char *unusable(const struct fi_info *i)
{
	if (i->domain_attr->mr_mode & FI_MR_RAW)
		return "needs FI_MR_RAW keys";
	if (i->domain_attr->mr_key_size > sizeof(uint64_t))
		return "has memory keys over 8 bytes";
	if (i->domain_attr->cq_data_size < 4)
		return "carries under 4 bytes of remote CQ data";
	if (i->tx_attr->iov_limit < 1 || i->tx_attr->rma_iov_limit < 1)
		return "has an iov_limit of 0";
	return NULL;
}

/* ---- memory registration -------------------------------------------- */

static uint64_t mr_access(unsigned access)
{
	uint64_t a = 0;

	if (access & QF_LOCAL)
		a |= FI_WRITE | FI_READ; /* source of writes, sink of reads */
	if (access & QF_REMOTE_WRITE)
		a |= FI_REMOTE_WRITE;
	if (access & QF_REMOTE_READ)
		a |= FI_REMOTE_READ;
	return a;
}

/* Registers with whichever mr_mode bits the provider kept. */
static int mr_register(struct qf_ep *ep, void *buf, size_t len, uint64_t access,
		       struct qf_mr **ret_mr)
{
	struct qf_mr *m = calloc(1, sizeof(*m));
	uint64_t key = 0;
	int r;

	if (m == NULL)
		return -ENOMEM;
	if (!(ep->mr_mode & FI_MR_PROV_KEY))
		key = atomic_fetch_add(&ep->next_key, 1);
	r = fi_mr_reg(ep->domain, buf, len, access, 0, key, 0, &m->mr, NULL);
	if (r)
		goto fail;
	if (ep->mr_mode & FI_MR_ENDPOINT) {
		r = fi_mr_bind(m->mr, &ep->ep->fid, 0);
		if (r == 0)
			r = fi_mr_enable(m->mr);
		if (r)
			goto fail_close;
	}
	m->ep = ep;
	m->buf = buf;
	m->len = len;
	*ret_mr = m;
	return 0;
fail_close:
	fi_close(&m->mr->fid);
fail:
	free(m);
	return neg_errno(r);
}

static void mr_unregister(struct qf_mr *m)
{
	if (m == NULL)
		return;
	fi_close(&m->mr->fid);
	free(m);
}

static void *mr_desc(const struct qf_mr *m)
{
	return m ? fi_mr_desc(m->mr) : NULL;
}

int qf_mr_reg(struct qf_ep *ep, void *buf, size_t len, unsigned access, struct qf_mr **ret_mr)
{
	struct qf_mr *m;
	int r;

	if (ep == NULL || buf == NULL || len == 0 || ret_mr == NULL || access == 0 ||
	    (access & ~(unsigned)(QF_LOCAL | QF_REMOTE_WRITE | QF_REMOTE_READ)))
		return -EINVAL;
	r = mr_register(ep, buf, len, mr_access(access), &m);
	if (r)
		return r;
	pthread_mutex_lock(&ep->lock);
	m->next = ep->mrs;
	if (ep->mrs)
		ep->mrs->prev = m;
	ep->mrs = m;
	pthread_mutex_unlock(&ep->lock);
	*ret_mr = m;
	return 0;
}

void qf_mr_close(struct qf_mr *m)
{
	struct qf_ep *ep;

	if (m == NULL)
		return;
	ep = m->ep;
	pthread_mutex_lock(&ep->lock);
	if (m->prev)
		m->prev->next = m->next;
	else
		ep->mrs = m->next;
	if (m->next)
		m->next->prev = m->prev;
	pthread_mutex_unlock(&ep->lock);
	mr_unregister(m);
}

uint64_t qf_mr_key(const struct qf_mr *m)
{
	return fi_mr_key(m->mr);
}

uint64_t qf_mr_addr(const struct qf_mr *m, const void *p)
{
	if (m->ep->mr_mode & FI_MR_VIRT_ADDR)
		return (uint64_t)(uintptr_t)p;
	return (uint64_t)((uintptr_t)p - (uintptr_t)m->buf);
}

static bool mr_holds(const struct qf_mr *m, const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)m->buf;

	return a >= b && len <= m->len && a - b <= m->len - len;
}

/* ---- op pools --------------------------------------------------------- */

static struct op *pop(struct op **head)
{
	struct op *o = *head;

	if (o)
		*head = o->next;
	return o;
}

static void push(struct op **head, struct op *o)
{
	o->next = *head;
	*head = o;
}

static void rma_put(struct qf_ep *ep, struct op *o)
{
	pthread_mutex_lock(&ep->lock);
	push(&ep->rma_free, o);
	pthread_mutex_unlock(&ep->lock);
}

/* Queues pieces for the progress thread (in order), under ep->lock. */
static void defer_locked(struct qf_ep *ep, struct op *o)
{
	o->next = NULL;
	if (ep->defer_tail)
		ep->defer_tail->next = o;
	else
		ep->defer_head = o;
	ep->defer_tail = o;
	atomic_store(&ep->deferred, true);
}

/* ---- names and peers ---------------------------------------------------- */

const char *qf_provider(const struct qf_ep *ep)
{
	return ep->info->fabric_attr->prov_name;
}

int qf_name(struct qf_ep *ep, void *buf, size_t *len)
{
	int r = fi_getname(&ep->ep->fid, buf, len);

	return r ? neg_errno(r) : 0;
}

int qf_peer_addr(struct qf_ep *ep, uint64_t peer, void *buf, size_t *len)
{
	size_t want = *len;
	int r = fi_av_lookup(ep->av, (fi_addr_t)peer, buf, len);

	if (r)
		return r == -FI_ETOOSMALL ? -ENOSPC : -ENOENT;
	return *len > want ? -ENOSPC : 0;
}

/* Whether src is a live peer of ours. Providers differ on senders that are
 * not (or no longer) in the AV: tcp;ofi_rxm keeps reporting a removed
 * peer's old id while its connection lives, and shm reports an id for
 * senders never inserted. Our own table decides. */
static uint64_t peer_of(struct qf_ep *ep, fi_addr_t src)
{
	uint64_t peer = QF_PEER_UNKNOWN;

	if (src == FI_ADDR_NOTAVAIL)
		return peer;
	pthread_mutex_lock(&ep->lock);
	if (ep->av_table) {
		if (src < ep->live_cap && ep->live[src])
			peer = src;
	} else {
		for (size_t k = 0; k < ep->npeers; k++) {
			if (ep->peers[k].fi == src) {
				peer = ep->peers[k].live ? src : QF_PEER_UNKNOWN;
				break;
			}
		}
	}
	pthread_mutex_unlock(&ep->lock);
	return peer;
}

static int set_live_locked(struct qf_ep *ep, fi_addr_t fi, bool live)
{
	if (!ep->av_table)
		return 0;
	if (fi >= ep->live_cap) {
		size_t cap = ep->live_cap ? ep->live_cap : 64;
		unsigned char *l;

		while (cap <= fi)
			cap *= 2;
		l = realloc(ep->live, cap);
		if (l == NULL)
			return -ENOMEM;
		memset(l + ep->live_cap, 0, cap - ep->live_cap);
		ep->live = l;
		ep->live_cap = cap;
	}
	ep->live[fi] = live;
	return 0;
}

/* Inserting a known address must give the same peer, whatever the
 * provider's AV does with duplicates: keep our own table. */
int qf_peer_insert(struct qf_ep *ep, const void *addr, size_t len, uint64_t *ret_peer)
{
	unsigned char a[QF_ADDR_MAX] = {0};
	fi_addr_t fi = FI_ADDR_NOTAVAIL;
	struct peer_ent *e;
	int r = 0;

	if (ep == NULL || addr == NULL || ret_peer == NULL || len == 0 || len > QF_ADDR_MAX)
		return -EINVAL;
	/* fi_av_insert() reads as many bytes as the format's addresses have:
	 * check the length before handing it the caller's bytes. */
	if (ep->info->addr_format == FI_ADDR_STR ? memchr(addr, 0, len) == NULL
						 : len != ep->addrlen)
		return -EINVAL;
	memcpy(a, addr, len);
	pthread_mutex_lock(&ep->lock);
	for (size_t k = 0; k < ep->npeers; k++) {
		e = &ep->peers[k];
		if (e->len == len && memcmp(e->addr, a, len) == 0) {
			r = set_live_locked(ep, e->fi, true);
			if (r == 0) {
				e->live = true;
				*ret_peer = e->fi;
			}
			goto out;
		}
	}
	if (ep->npeers == ep->peers_cap) {
		size_t cap = ep->peers_cap ? ep->peers_cap * 2 : 16;
		struct peer_ent *p = realloc(ep->peers, cap * sizeof(*p));

		if (p == NULL) {
			r = -ENOMEM;
			goto out;
		}
		ep->peers = p;
		ep->peers_cap = cap;
	}
	r = fi_av_insert(ep->av, a, 1, &fi, 0, NULL);
	if (r != 1 || fi == FI_ADDR_NOTAVAIL) {
		r = r < 0 && neg_errno(r) == -ENOMEM ? -ENOMEM : -EINVAL;
		goto out;
	}
	r = set_live_locked(ep, fi, true);
	if (r) {
		fi_av_remove(ep->av, &fi, 1, 0);
		goto out;
	}
	if (fi >= atomic_load(&ep->av_bound))
		atomic_store(&ep->av_bound, fi + 1);
	e = &ep->peers[ep->npeers++];
	e->fi = fi;
	e->live = true;
	e->len = len;
	memcpy(e->addr, a, sizeof(a));
	*ret_peer = fi;
out:
	pthread_mutex_unlock(&ep->lock);
	return r;
}

/* The peer's AV slot is kept (a tombstone), not fi_av_remove()d: the
 * provider would hand its id to the next peer inserted, while the removed
 * peer's connection may live on and keep reporting that id (tcp;ofi_rxm
 * does). Its messages are reported as QF_PEER_UNKNOWN by peer_of(). The
 * cost is an AV entry per distinct address ever inserted. */
int qf_peer_remove(struct qf_ep *ep, uint64_t peer)
{
	int r = -ENOENT;

	pthread_mutex_lock(&ep->lock);
	for (size_t k = 0; k < ep->npeers; k++) {
		if (ep->peers[k].fi != peer || !ep->peers[k].live)
			continue;
		ep->peers[k].live = false;
		set_live_locked(ep, peer, false);
		r = 0;
		break;
	}
	pthread_mutex_unlock(&ep->lock);
	return r;
}

int qf_resolve(struct qf_ep *ep, const char *node, const char *service, uint64_t *ret_peer)
{
	struct fi_info *hints, *res = NULL;
	int r;

	if (ep == NULL || node == NULL || service == NULL || ret_peer == NULL)
		return -EINVAL;
	hints = make_hints(ep->info->fabric_attr->prov_name, ep->can_split);
	if (hints == NULL)
		return -ENOMEM;
	hints->addr_format = ep->info->addr_format;
	r = fi_getinfo(API_VERSION, node, service, 0, hints, &res);
	fi_freeinfo(hints);
	if (r)
		return r == -FI_ENODATA ? -ENODATA : -EHOSTUNREACH;
	if (res->dest_addr == NULL || res->dest_addrlen == 0)
		r = -EHOSTUNREACH;
	else
		r = qf_peer_insert(ep, res->dest_addr, res->dest_addrlen, ret_peer);
	fi_freeinfo(res);
	return r == -EINVAL ? -EHOSTUNREACH : r;
}

/* ---- progress --------------------------------------------------------- */

/* The endpoint whose progress thread this is, if any. */
static _Thread_local const struct qf_ep *progress_ep;

static bool on_progress_thread(const struct qf_ep *ep)
{
	return progress_ep == ep;
}

/* Wakes the progress thread if it sleeps. The poster's post precedes its
 * load of `sleeping`, and the thread stores `sleeping` before its last
 * look at the CQ (both seq_cst), so either the thread sees the work or the
 * poster sees it asleep. */
static void kick(struct qf_ep *ep)
{
	uint64_t one = 1;

	if (atomic_load(&ep->sleeping) && !on_progress_thread(ep))
		(void)!write(ep->kick_fd, &one, sizeof(one));
}

static void progressed(struct qf_ep *ep)
{
	atomic_fetch_add(&ep->prog_gen, 1);
	if (atomic_load(&ep->waiters)) {
		pthread_mutex_lock(&ep->prog_lock);
		pthread_cond_broadcast(&ep->prog_cond);
		pthread_mutex_unlock(&ep->prog_lock);
	}
}

static ssize_t post_piece(struct qf_ep *ep, struct op *o)
{
	struct fi_rma_iov rma = {.addr = o->raddr, .len = o->len, .key = o->rkey};
	struct fi_msg_rma msg = {
	    .msg_iov = o->iov,
	    .desc = o->desc,
	    .iov_count = o->niov,
	    .addr = o->peer,
	    .rma_iov = &rma,
	    .rma_iov_count = 1,
	    .context = &o->ctx,
	    .data = o->data,
	};

	if (o->kind == OP_WRITE)
		return fi_writemsg(ep->ep, &msg, o->flags);
	return fi_readmsg(ep->ep, &msg, o->flags);
}

/* A piece of a write (or a read) is over: on_done once all pieces are. */
static void piece_done(struct qf_ep *ep, struct op *o, int status)
{
	struct op *p = o->parent;
	int zero = 0;

	atomic_fetch_sub(&ep->inflight, 1);
	if (status)
		atomic_compare_exchange_strong(&p->status, &zero, status);
	else
		stat_add(o->kind == OP_WRITE ? &ep->st.bytes_written : &ep->st.bytes_read, o->len);
	if (o != p)
		rma_put(ep, o);
	if (atomic_fetch_sub(&p->pending, 1) != 1)
		return;
	status = atomic_load(&p->status);
	if (status)
		stat_add(&ep->st.errors, 1);
	if (ep->h.on_done)
		ep->h.on_done(ep->h.arg, p->user, status);
	rma_put(ep, p);
}

static void repost_recv(struct qf_ep *ep, struct op *o)
{
	ssize_t r =
	    fi_recv(ep->ep, o->buf, ep->msg_max, mr_desc(ep->rx_mr), FI_ADDR_UNSPEC, &o->ctx);

	if (r == -FI_EAGAIN) {
		/* Retried by the progress loop. */
		pthread_mutex_lock(&ep->lock);
		defer_locked(ep, o);
		pthread_mutex_unlock(&ep->lock);
	} else if (r) {
		stat_add(&ep->st.errors, 1);
	}
}

/* Posts what waits in the deferred queue, in order, until the provider
 * pushes back. Returns whether anything left the queue. */
static bool run_deferred(struct qf_ep *ep)
{
	bool moved = false;

	for (;;) {
		struct op *o;
		ssize_t r = 0;

		pthread_mutex_lock(&ep->lock);
		o = ep->defer_head;
		if (o == NULL) {
			atomic_store(&ep->deferred, false);
			pthread_mutex_unlock(&ep->lock);
			return moved;
		}
		if (o->kind == OP_RECV) {
			r = fi_recv(ep->ep, o->buf, ep->msg_max, mr_desc(ep->rx_mr), FI_ADDR_UNSPEC,
				    &o->ctx);
		} else if (!o->fail && atomic_load(&o->parent->status) == 0) {
			r = post_piece(ep, o);
		} else if (!o->fail) {
			/* An earlier piece failed: never post the rest, least of
			 * all the one whose CQ data says "all there". */
			o->fail = atomic_load(&o->parent->status);
		}
		if (r == -FI_EAGAIN) {
			pthread_mutex_unlock(&ep->lock);
			return moved;
		}
		ep->defer_head = o->next;
		if (ep->defer_head == NULL) {
			ep->defer_tail = NULL;
			atomic_store(&ep->deferred, false);
		}
		pthread_mutex_unlock(&ep->lock);
		moved = true;
		if (o->kind == OP_RECV) {
			if (r)
				stat_add(&ep->st.errors, 1);
			continue;
		}
		if (r && !o->fail)
			o->fail = neg_errno(r);
		if (o->fail)
			piece_done(ep, o, o->fail);
	}
}

static void handle_cqe(struct qf_ep *ep, const struct fi_cq_data_entry *e, fi_addr_t src)
{
	struct op *o = e->op_context;
	uint64_t peer;

	/* A peer's write with data: without FI_RX_CQ_DATA no op of ours; with
	 * it, one of our receives was consumed (and must be posted again). */
	if ((e->flags & FI_REMOTE_CQ_DATA) && !(e->flags & FI_MSG)) {
		peer = peer_of(ep, src);
		if (ep->h.on_write_in)
			ep->h.on_write_in(ep->h.arg, peer, e->data);
		if (o && o->kind == OP_RECV)
			repost_recv(ep, o);
		return;
	}
	if (o == NULL)
		return;
	switch (o->kind) {
	case OP_RECV:
		stat_add(&ep->st.msgs_in, 1);
		peer = peer_of(ep, src);
		if (ep->h.on_msg)
			ep->h.on_msg(ep->h.arg, peer, o->buf, e->len);
		repost_recv(ep, o);
		break;
	case OP_SEND:
		atomic_fetch_sub(&ep->inflight, 1);
		pthread_mutex_lock(&ep->lock);
		push(&ep->tx_free, o);
		pthread_mutex_unlock(&ep->lock);
		break;
	case OP_WRITE:
	case OP_READ:
		piece_done(ep, o, 0);
		break;
	}
}

static void handle_err(struct qf_ep *ep)
{
	struct fi_cq_err_entry e;
	struct op *o;
	int status;

	memset(&e, 0, sizeof(e));
	if (fi_cq_readerr(ep->cq, &e, 0) != 1)
		return;
	o = e.op_context;
	status = neg_errno(e.err ? e.err : FI_EIO);
	/* quai never cancels a send or an RMA operation: the provider did, as
	 * it tore the connection down (tcp;ofi_rxm does when the peer refuses
	 * a write, e.g. into a closed region). */
	if (e.err == FI_ECANCELED && o && o->kind != OP_RECV)
		status = -ECONNRESET;
	if (o == NULL) {
		stat_add(&ep->st.errors, 1);
		return;
	}
	switch (o->kind) {
	case OP_RECV:
		/* Canceled at close: leave it; else (a truncated message...) the
		 * buffer goes back to work. */
		if (e.err != FI_ECANCELED) {
			stat_add(&ep->st.errors, 1);
			repost_recv(ep, o);
		}
		break;
	case OP_SEND:
		atomic_fetch_sub(&ep->inflight, 1);
		stat_add(&ep->st.errors, 1);
		if (ep->h.on_send_error)
			ep->h.on_send_error(ep->h.arg, o->peer, status);
		pthread_mutex_lock(&ep->lock);
		push(&ep->tx_free, o);
		pthread_mutex_unlock(&ep->lock);
		break;
	case OP_WRITE:
	case OP_READ:
		piece_done(ep, o, status);
		break;
	}
}

static long elapsed_ns(const struct timespec *a, const struct timespec *b)
{
	return (b->tv_sec - a->tv_sec) * 1000000000L + (b->tv_nsec - a->tv_nsec);
}

/* The progress thread's idleness since its last completion. */
struct idle {
	long backoff;		    /* current poll sleep, ns */
	unsigned rounds;	    /* idle_wait() calls in this window */
	struct timespec window;	    /* the window's start */
	struct timespec fast_since; /* start of the run of fast windows */
	bool fast;		    /* in such a run */
	bool distrust;		    /* the wait fd wakes us for nothing: poll */
};

/* Whether the wait fd has kept waking us, fast, for 100 ms without a
 * completion. While data streams in, tcp;ofi_rxm's fd wakes the thread
 * about as often as a broken fd would (~1M/s), so the rate alone says
 * nothing; but a stream ends in a completion well within 100 ms, and a
 * broken fd (the "net" provider of 1.17: always ready, nothing to read)
 * never does. Distrusted, the fd gives way to polling with backoff until
 * the next completion. */
static void check_spin(struct idle *st)
{
	struct timespec now;

	if (st->rounds++ == 0) {
		clock_gettime(CLOCK_MONOTONIC, &st->window);
		return;
	}
	if (st->rounds < 256)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (elapsed_ns(&st->window, &now) >= 10000000L) {
		st->fast = false;
	} else if (!st->fast) {
		st->fast = true;
		st->fast_since = st->window;
	} else if (elapsed_ns(&st->fast_since, &now) >= 100000000L) {
		st->distrust = true;
	}
	st->rounds = 0;
}

/* Nothing to read: sleep until the CQ's fd, a kick, or the bound. No spin
 * first: on two cores a spinning progress thread takes the CPU its peer
 * (or the thread posting) needs; measured, it lost latency and did not win
 * bandwidth (see bench/fabric_bw.c). */
static void idle_wait(struct qf_ep *ep, struct idle *st)
{
	struct pollfd pfd[2] = {{.fd = ep->kick_fd, .events = POLLIN},
				{.fd = ep->wait_fd, .events = POLLIN}};
	struct timespec ts = {0};
	uint64_t v;
	int n = 1;

	check_spin(st);
	atomic_store(&ep->sleeping, true);
	if (atomic_load(&ep->stop))
		goto out;
	if (ep->wait_fd >= 0 && !st->distrust) {
		struct fid *cqf = &ep->cq->fid;
		int t = fi_trywait(ep->fabric, &cqf, 1);
		int ms;

		if (t != FI_SUCCESS) {
			/* -FI_EAGAIN: something to read. Anything else: the fd is
			 * no use to us; poll from now on. */
			if (t != -FI_EAGAIN)
				ep->wait_fd = -1;
			goto out;
		}
		ms = atomic_load(&ep->inflight) || atomic_load(&ep->deferred) ? SLEEP_BUSY_MS
									      : SLEEP_IDLE_MS;
		ts.tv_sec = ms / 1000;
		ts.tv_nsec = ms % 1000 * 1000000L;
		n = 2;
	} else {
		/* Nothing but the CQ can tell us about a peer's data: poll it,
		 * sleeping longer the longer nothing happens. */
		st->backoff = st->backoff ? st->backoff * 2 : BACKOFF_MIN_NS;
		if (st->backoff > BACKOFF_MAX_NS)
			st->backoff = BACKOFF_MAX_NS;
		ts.tv_nsec = st->backoff;
	}
	if (ppoll(pfd, (nfds_t)n, &ts, NULL) > 0 && (pfd[0].revents & POLLIN))
		(void)!read(ep->kick_fd, &v, sizeof(v));
out:
	atomic_store(&ep->sleeping, false);
}

static void *progress_main(void *arg)
{
	struct qf_ep *ep = arg;
	struct fi_cq_data_entry ent[CQ_BATCH];
	fi_addr_t src[CQ_BATCH];
	struct idle st = {0};

	progress_ep = ep;
	while (!atomic_load(&ep->stop)) {
		ssize_t n = fi_cq_readfrom(ep->cq, ent, CQ_BATCH, src);
		bool moved;

		if (n > 0) {
			for (ssize_t i = 0; i < n; i++)
				handle_cqe(ep, &ent[i], src[i]);
		} else if (n == -FI_EAVAIL) {
			handle_err(ep);
		} else if (n != -FI_EAGAIN) {
			stat_add(&ep->st.errors, 1);
		}
		moved = atomic_load(&ep->deferred) && run_deferred(ep);
		if (n > 0 || n == -FI_EAVAIL || moved) {
			progressed(ep);
			memset(&st, 0, sizeof(st));
			continue;
		}
		idle_wait(ep, &st);
	}
	return NULL;
}

int qf_wait_progress(struct qf_ep *ep, int timeout_ms)
{
	uint64_t start = atomic_load(&ep->prog_gen);
	struct timespec dl;
	int r = 0;

	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&ep->prog_lock);
	atomic_fetch_add(&ep->waiters, 1);
	while (atomic_load(&ep->prog_gen) == start && r == 0) {
		if (timeout_ms < 0)
			pthread_cond_wait(&ep->prog_cond, &ep->prog_lock);
		else if (pthread_cond_timedwait(&ep->prog_cond, &ep->prog_lock, &dl) == ETIMEDOUT)
			r = atomic_load(&ep->prog_gen) == start ? -ETIMEDOUT : 0;
	}
	atomic_fetch_sub(&ep->waiters, 1);
	pthread_mutex_unlock(&ep->prog_lock);
	return r;
}

/* ---- open / close ------------------------------------------------------- */

static int open_cq(struct qf_ep *ep, size_t size)
{
	struct fi_cq_attr attr = {
	    .size = size,
	    .format = FI_CQ_FORMAT_DATA,
	    .wait_obj = FI_WAIT_FD,
	};
	int r;

	ep->wait_fd = -1;
	r = fi_cq_open(ep->domain, &attr, &ep->cq, NULL);
	if (r == 0) {
		int fd = -1;

		if (fi_control(&ep->cq->fid, FI_GETWAIT, &fd) == 0 && fd >= 0) {
			ep->wait_fd = fd;
			return 0;
		}
		fi_close(&ep->cq->fid);
		ep->cq = NULL;
	}
	/* No fd to sleep on: the progress thread polls with backoff. */
	attr.wait_obj = FI_WAIT_NONE;
	return fi_cq_open(ep->domain, &attr, &ep->cq, NULL);
}

static int alloc_bounce(struct qf_ep *ep)
{
	size_t rx = (size_t)ep->rx_depth * ep->msg_max, tx = (size_t)ep->tx_depth * ep->msg_max;
	long pg = sysconf(_SC_PAGESIZE);
	size_t align = pg > 0 ? (size_t)pg : 4096;

	if (posix_memalign((void **)&ep->rx_buf, align, rx) ||
	    posix_memalign((void **)&ep->tx_buf, align, tx))
		return -ENOMEM;
	ep->rx_ops = calloc(ep->rx_depth, sizeof(struct op));
	ep->tx_ops = calloc(ep->tx_depth, sizeof(struct op));
	ep->rma_ops = calloc(ep->rma_nops, sizeof(struct op));
	if (ep->rx_ops == NULL || ep->tx_ops == NULL || ep->rma_ops == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < ep->rx_depth; i++) {
		ep->rx_ops[i].kind = OP_RECV;
		ep->rx_ops[i].buf = ep->rx_buf + (size_t)i * ep->msg_max;
	}
	for (unsigned i = ep->tx_depth; i-- > 0;) {
		ep->tx_ops[i].kind = OP_SEND;
		ep->tx_ops[i].buf = ep->tx_buf + (size_t)i * ep->msg_max;
		push(&ep->tx_free, &ep->tx_ops[i]);
	}
	for (size_t i = ep->rma_nops; i-- > 0;)
		push(&ep->rma_free, &ep->rma_ops[i]);
	return 0;
}

/* qf_open() in phases, each a step a reader can name: a new endpoint
 * record, the provider's offer, its limits, the libfabric objects, the
 * posted receive buffers and the progress thread. Each phase sets err on
 * failure and returns -errno; qf_close() undoes whatever was done. */

static struct qf_ep *ep_new(const struct qf_opts *o)
{
	static const struct qf_handlers no_handlers;
	pthread_condattr_t ca;
	struct qf_ep *ep = calloc(1, sizeof(*ep));

	if (ep == NULL)
		return NULL;
	ep->h = o->h ? *o->h : no_handlers;
	ep->msg_max = o->msg_max ? o->msg_max : 64 * 1024;
	ep->rx_depth = o->rx_depth ? o->rx_depth : 64;
	ep->tx_depth = o->tx_depth ? o->tx_depth : 64;
	ep->wait_fd = -1;
	ep->kick_fd = -1;
	atomic_init(&ep->next_key, 1);
	pthread_mutex_init(&ep->lock, NULL);
	pthread_mutex_init(&ep->prog_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ep->prog_cond, &ca);
	pthread_condattr_destroy(&ca);
	return ep;
}

/* The family of a numeric wildcard node ("0.0.0.0", "::"), else 0. */
static int wildcard_family(const char *node)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (node == NULL)
		return 0;
	if (inet_pton(AF_INET, node, &a4) == 1)
		return a4.s_addr == htonl(INADDR_ANY) ? AF_INET : 0;
	if (inet_pton(AF_INET6, node, &a6) == 1)
		return IN6_IS_ADDR_UNSPECIFIED(&a6) ? AF_INET6 : 0;
	return 0;
}

/* Points a wildcard listener's source address at the wildcard itself.
 * libfabric 1.17's fi_getinfo("0.0.0.0", PORT, FI_SOURCE) walks the
 * interfaces and returns the `lo` domain with 127.0.0.1 first: taking it
 * bound loopback only. Asked with port 0 it returns the interface-less
 * domain with the wildcard address; the port asked for goes back in here. */
static int bind_wildcard(struct fi_info *i, int family, const char *service, char *err,
			 size_t err_len)
{
	char *end;
	unsigned long port = strtoul(service ? service : "0", &end, 10);
	size_t len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	void *sa;

	if (*end != '\0' || port > 65535) {
		qerr_set(err, err_len, "listen on a wildcard: port '%s' is not a number", service);
		return -EINVAL;
	}
	if ((family == AF_INET && i->addr_format != FI_SOCKADDR_IN &&
	     i->addr_format != FI_SOCKADDR) ||
	    (family == AF_INET6 && i->addr_format != FI_SOCKADDR_IN6 &&
	     i->addr_format != FI_SOCKADDR)) {
		qerr_set(err, err_len,
			 "provider \"%s\" does not take IP socket addresses: name an address "
			 "to listen on, not a wildcard",
			 i->fabric_attr->prov_name);
		return -EINVAL;
	}
	sa = calloc(1, len);
	if (sa == NULL)
		return -ENOMEM;
	if (family == AF_INET) {
		struct sockaddr_in *s = sa;

		s->sin_family = AF_INET;
		s->sin_port = htons((uint16_t)port);
		s->sin_addr.s_addr = htonl(INADDR_ANY);
	} else {
		struct sockaddr_in6 *s = sa;

		s->sin6_family = AF_INET6;
		s->sin6_port = htons((uint16_t)port);
		s->sin6_addr = in6addr_any;
	}
	/* fi_freeinfo() frees src_addr with free(). */
	free(i->src_addr);
	i->src_addr = sa;
	i->src_addrlen = len;
	i->addr_format = family == AF_INET ? FI_SOCKADDR_IN : FI_SOCKADDR_IN6;
	return 0;
}

/* Phase: asks the provider for RDM endpoints (with write ordering, else
 * without: split writes are then refused) and keeps the first offer quai
 * can drive, in ep->info. */
static int pick_info(struct qf_ep *ep, const struct qf_opts *o, const char *prov, char *err,
		     size_t err_len)
{
	struct fi_info *hints = NULL, *info = NULL, *i;
	const char *why = NULL;
	int family = wildcard_family(o->node);
	/* With node/service, FI_SOURCE: they name where this endpoint binds
	 * (service "0": an ephemeral port, which qf_name() then reports). */
	uint64_t flags = o->node || o->service ? FI_SOURCE : 0;
	const char *service = family ? "0" : o->service;
	int r;

	ep->can_split = true;
	for (int ordered = 1; ordered >= 0; ordered--) {
		hints = make_hints(prov, ordered);
		if (hints == NULL)
			return -ENOMEM;
		r = fi_getinfo(API_VERSION, o->node, service, flags, hints, &info);
		fi_freeinfo(hints);
		if (r != -FI_ENODATA)
			break;
		ep->can_split = false;
	}
	if (r == -FI_ENODATA) {
		explain_nodata(prov, err, err_len);
		return -ENODATA;
	}
	if (r) {
		qerr_set(err, err_len, "fi_getinfo(provider \"%s\", %s:%s): %s", prov,
			 o->node ? o->node : "*", o->service ? o->service : "*", fi_strerror(-r));
		return neg_errno(r);
	}
	for (i = info; i; i = i->next)
		if ((why = unusable(i)) == NULL)
			break;
	if (i == NULL) {
		qerr_set(err, err_len, "provider \"%s\" %s, which quai does not handle", prov, why);
		fi_freeinfo(info);
		return -ENODATA;
	}
	ep->info = fi_dupinfo(i);
	fi_freeinfo(info);
	if (ep->info == NULL)
		return -ENOMEM;
	return family ? bind_wildcard(ep->info, family, o->service, err, err_len) : 0;
}

/* Phase: the offer's limits, checked against what the caller asked. */
static int take_limits(struct qf_ep *ep, const char *prov, char *err, size_t err_len)
{
	const struct fi_info *i = ep->info;
	const char *env;

	ep->mr_mode = i->domain_attr->mr_mode;
	ep->iov_limit = i->tx_attr->iov_limit;
	if (ep->iov_limit > IOV_MAX_QF)
		ep->iov_limit = IOV_MAX_QF;
	ep->max_rma = i->ep_attr->max_msg_size;
	ep->cq_data_size = i->domain_attr->cq_data_size > 8 ? 8 : i->domain_attr->cq_data_size;
	ep->waw_size = ep->can_split ? i->ep_attr->max_order_waw_size : 0;
	/* A test hook and a diagnostic: QUAI_FABRIC_IOV_LIMIT lowers the
	 * provider's iov_limit, so that split writes run on any provider. */
	env = getenv("QUAI_FABRIC_IOV_LIMIT");
	if (env && atoi(env) >= 1 && (size_t)atoi(env) < ep->iov_limit)
		ep->iov_limit = (size_t)atoi(env);
	if (ep->msg_max > i->ep_attr->max_msg_size || ep->rx_depth > i->rx_attr->size ||
	    ep->tx_depth > i->tx_attr->size) {
		qerr_set(err, err_len,
			 "provider \"%s\" takes messages up to %zu bytes and queues of %zu (rx) "
			 "and %zu (tx)",
			 prov, i->ep_attr->max_msg_size, i->rx_attr->size, i->tx_attr->size);
		return -EINVAL;
	}
	ep->rma_nops = i->tx_attr->size > ep->tx_depth ? i->tx_attr->size - ep->tx_depth : 16;
	if (ep->rma_nops > RMA_OPS_MAX)
		ep->rma_nops = RMA_OPS_MAX;
	return 0;
}

/* Phase: fabric, domain, completion queue, address vector and the enabled
 * endpoint bound to both; then the address length every peer's has. */
static int open_objects(struct qf_ep *ep, const struct qf_opts *o, const char *prov, char *err,
			size_t err_len)
{
	struct fi_info *i = ep->info;
	struct fi_av_attr av_attr = {0};
	/* Room for every op we can post, and as many peers' writes again. */
	size_t cq_size = 2 * (size_t)ep->rx_depth + ep->tx_depth + ep->rma_nops;
	const char *call;
	int r;

	call = "fi_fabric";
	r = fi_fabric(i->fabric_attr, &ep->fabric, NULL);
	if (r)
		goto fail;
	call = "fi_domain";
	r = fi_domain(ep->fabric, i, &ep->domain, NULL);
	if (r)
		goto fail;
	call = "fi_cq_open";
	r = open_cq(ep, cq_size);
	if (r)
		goto fail;
	av_attr.type =
	    i->domain_attr->av_type == FI_AV_UNSPEC ? FI_AV_TABLE : i->domain_attr->av_type;
	ep->av_table = av_attr.type == FI_AV_TABLE;
	call = "fi_av_open";
	r = fi_av_open(ep->domain, &av_attr, &ep->av, NULL);
	if (r)
		goto fail;
	call = "fi_endpoint";
	r = fi_endpoint(ep->domain, i, &ep->ep, NULL);
	if (r)
		goto fail;
	call = "fi_ep_bind";
	r = fi_ep_bind(ep->ep, &ep->av->fid, 0);
	if (r == 0)
		r = fi_ep_bind(ep->ep, &ep->cq->fid, FI_TRANSMIT | FI_RECV);
	if (r)
		goto fail;
	r = fi_enable(ep->ep);
	if (r) {
		qerr_set(err, err_len, "fi_enable(%s, %s:%s): %s", prov, o->node ? o->node : "*",
			 o->service ? o->service : "*", fi_strerror(-r));
		return neg_errno(r);
	}
	/* The length of our own address is that of every peer's. */
	ep->addrlen = QF_ADDR_MAX;
	call = "fi_getname";
	r = fi_getname(&ep->ep->fid, (char[QF_ADDR_MAX]){0}, &ep->addrlen);
	if (r)
		goto fail;
	return 0;
fail:
	qerr_set(err, err_len, "%s(%s): %s", call, prov, fi_strerror(-r));
	return neg_errno(r);
}

/* Phase: bounce buffers (registered under FI_MR_LOCAL), every receive
 * posted. */
static int post_buffers(struct qf_ep *ep, const char *prov, char *err, size_t err_len)
{
	int r = alloc_bounce(ep);

	if (r) {
		qerr_set(err, err_len, "qf_open: out of memory for %u+%u buffers of %zu bytes",
			 ep->rx_depth, ep->tx_depth, ep->msg_max);
		return r;
	}
	if (ep->mr_mode & FI_MR_LOCAL) {
		r = mr_register(ep, ep->rx_buf, (size_t)ep->rx_depth * ep->msg_max, FI_RECV,
				&ep->rx_mr);
		if (r == 0)
			r = mr_register(ep, ep->tx_buf, (size_t)ep->tx_depth * ep->msg_max, FI_SEND,
					&ep->tx_mr);
		if (r) {
			qerr_set(err, err_len, "fi_mr_reg(%s, bounce buffers): %s", prov,
				 strerror(-r));
			return r;
		}
	}
	for (unsigned k = 0; k < ep->rx_depth; k++) {
		struct op *op = &ep->rx_ops[k];

		r = fi_recv(ep->ep, op->buf, ep->msg_max, mr_desc(ep->rx_mr), FI_ADDR_UNSPEC,
			    &op->ctx);
		if (r) {
			qerr_set(err, err_len, "fi_recv(%s): %s", prov, fi_strerror(-r));
			return neg_errno(r);
		}
	}
	return 0;
}

/* Phase: the kick eventfd and the progress thread. */
static int start_progress(struct qf_ep *ep, char *err, size_t err_len)
{
	int r;

	ep->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ep->kick_fd < 0) {
		r = -errno;
		qerr_set(err, err_len, "eventfd: %s", strerror(-r));
		return r;
	}
	r = pthread_create(&ep->thread, NULL, progress_main, ep);
	if (r) {
		qerr_set(err, err_len, "pthread_create: %s", strerror(r));
		return -r;
	}
	ep->thread_started = true;
	return 0;
}

int qf_open(const struct qf_opts *o, struct qf_ep **ret_ep, char *err, size_t err_len)
{
	const char *prov, *env;
	struct qf_ep *ep;
	int r;

	qerr_set(err, err_len, "%s", "");
	if (o == NULL || ret_ep == NULL) {
		qerr_set(err, err_len, "qf_open: no options");
		return -EINVAL;
	}
	env = getenv("FI_PROVIDER");
	prov = o->provider ? o->provider : env && *env ? env : QF_DEFAULT_PROVIDER;
	r = lib_ready(o->server, err, err_len);
	if (r < 0)
		return r;
	ep = ep_new(o);
	if (ep == NULL)
		return -ENOMEM;
	r = pick_info(ep, o, prov, err, err_len);
	if (r == 0)
		r = take_limits(ep, prov, err, err_len);
	if (r == 0)
		r = open_objects(ep, o, prov, err, err_len);
	if (r == 0)
		r = post_buffers(ep, prov, err, err_len);
	if (r == 0)
		r = start_progress(ep, err, err_len);
	if (r < 0) {
		qf_close(ep);
		return r;
	}
	*ret_ep = ep;
	return 0;
}

/* Waits (bounded) for our sends and writes in flight, so that a message
 * qf_send() accepted just before qf_close() still leaves. */
static void drain_tx(struct qf_ep *ep)
{
	struct timespec t0, now;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (atomic_load(&ep->inflight) || atomic_load(&ep->deferred)) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (elapsed_ns(&t0, &now) > 1000000000L)
			break;
		qf_wait_progress(ep, 10);
	}
}

void qf_close(struct qf_ep *ep)
{
	uint64_t one = 1;

	if (ep == NULL)
		return;
	if (ep->thread_started) {
		drain_tx(ep);
		atomic_store(&ep->stop, true);
		(void)!write(ep->kick_fd, &one, sizeof(one));
		pthread_join(ep->thread, NULL);
		ep->thread_started = false;
	}
	/* Regions first: with FI_MR_ENDPOINT they hold the endpoint. Closing
	 * the endpoint then drops whatever is still posted. */
	while (ep->mrs)
		qf_mr_close(ep->mrs);
	mr_unregister(ep->rx_mr);
	mr_unregister(ep->tx_mr);
	if (ep->ep)
		fi_close(&ep->ep->fid);
	if (ep->av)
		fi_close(&ep->av->fid);
	if (ep->cq)
		fi_close(&ep->cq->fid);
	if (ep->domain)
		fi_close(&ep->domain->fid);
	if (ep->fabric)
		fi_close(&ep->fabric->fid);
	fi_freeinfo(ep->info);
	if (ep->kick_fd >= 0)
		close(ep->kick_fd);
	free(ep->rx_ops);
	free(ep->tx_ops);
	free(ep->rma_ops);
	free(ep->rx_buf);
	free(ep->tx_buf);
	free(ep->peers);
	free(ep->live);
	pthread_cond_destroy(&ep->prog_cond);
	pthread_mutex_destroy(&ep->prog_lock);
	pthread_mutex_destroy(&ep->lock);
	free(ep);
}

/* ---- data path ---------------------------------------------------------- */

/* A peer id the AV never gave out makes providers index past their tables
 * (tcp;ofi_rxm crashes): refuse it where that costs one load. Ids are
 * never taken back (see qf_peer_remove), so the bound stays true. */
static bool bad_peer(struct qf_ep *ep, uint64_t peer)
{
	return peer == QF_PEER_UNKNOWN || (ep->av_table && peer >= atomic_load(&ep->av_bound));
}

int qf_send(struct qf_ep *ep, uint64_t peer, const void *msg, size_t len)
{
	struct op *o;
	ssize_t r;

	if (len > ep->msg_max)
		return -EMSGSIZE;
	if (bad_peer(ep, peer) || (msg == NULL && len))
		return -EINVAL;
	pthread_mutex_lock(&ep->lock);
	o = pop(&ep->tx_free);
	pthread_mutex_unlock(&ep->lock);
	if (o == NULL) {
		stat_add(&ep->st.eagain, 1);
		return -EAGAIN;
	}
	if (len)
		memcpy(o->buf, msg, len);
	o->peer = peer;
	atomic_fetch_add(&ep->inflight, 1);
	r = fi_send(ep->ep, o->buf, len, mr_desc(ep->tx_mr), peer, &o->ctx);
	if (r) {
		atomic_fetch_sub(&ep->inflight, 1);
		pthread_mutex_lock(&ep->lock);
		push(&ep->tx_free, o);
		pthread_mutex_unlock(&ep->lock);
		if (r == -FI_EAGAIN) {
			/* Often a connection being set up: progress drives it. */
			stat_add(&ep->st.eagain, 1);
			kick(ep);
			return -EAGAIN;
		}
		stat_add(&ep->st.errors, 1);
		return neg_errno(r);
	}
	stat_add(&ep->st.msgs_out, 1);
	kick(ep);
	return 0;
}

int qf_send_wait(struct qf_ep *ep, uint64_t peer, const void *msg, size_t len, int timeout_ms)
{
	struct timespec t0, now;
	int step = 1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		int r = qf_send(ep, peer, msg, len), wait;
		long left;

		if (r != -EAGAIN)
			return r;
		clock_gettime(CLOCK_MONOTONIC, &now);
		left = timeout_ms < 0 ? 1000 : timeout_ms - elapsed_ns(&t0, &now) / 1000000L;
		if (left <= 0)
			return -ETIMEDOUT;
		/* A completion frees a buffer; but a connection being set up
		 * completes nothing, so wake up now and then to retry. */
		wait = left < step ? (int)left : step;
		qf_wait_progress(ep, wait);
		if (step < 16)
			step *= 2;
	}
}

int qf_write(struct qf_ep *ep, uint64_t peer, const struct qf_iov *iov, size_t n, uint64_t raddr,
	     uint64_t rkey, uint64_t data, void *op_ctx)
{
	struct op *pc[IOV_MAX_QF] = {0};
	size_t npieces, total = 0, lim = ep->iov_limit, k;
	ssize_t r;

	if (bad_peer(ep, peer) || iov == NULL || n == 0 || n > IOV_MAX_QF)
		return -EINVAL;
	if (ep->cq_data_size < 8 && data >> (ep->cq_data_size * 8))
		return -EINVAL;
	for (k = 0; k < n; k++) {
		if (iov[k].buf == NULL || iov[k].len == 0)
			return -EINVAL;
		if (iov[k].mr ? !mr_holds(iov[k].mr, iov[k].buf, iov[k].len)
			      : (ep->mr_mode & FI_MR_LOCAL) != 0)
			return -EINVAL;
		total += iov[k].len;
	}
	if (total > ep->max_rma)
		return -EINVAL;
	npieces = (n + lim - 1) / lim;
	/* Pieces may only be split off when the provider lands writes in the
	 * order they were posted: the last carries the CQ data that tells
	 * the peer everything is there. */
	if (npieces > 1 && (!ep->can_split || total > ep->waw_size))
		return -EINVAL;

	pthread_mutex_lock(&ep->lock);
	for (k = 0; k < npieces; k++) {
		pc[k] = pop(&ep->rma_free);
		if (pc[k] == NULL) {
			while (k-- > 0)
				push(&ep->rma_free, pc[k]);
			pthread_mutex_unlock(&ep->lock);
			stat_add(&ep->st.eagain, 1);
			return -EAGAIN;
		}
	}
	pthread_mutex_unlock(&ep->lock);

	for (k = 0; k < npieces; k++) {
		struct op *o = pc[k];
		size_t first = k * lim, cnt = n - first < lim ? n - first : lim;

		o->kind = OP_WRITE;
		o->parent = pc[0];
		o->peer = peer;
		o->niov = cnt;
		o->len = 0;
		o->raddr = raddr;
		o->rkey = rkey;
		o->fail = 0;
		for (size_t j = 0; j < cnt; j++) {
			o->iov[j].iov_base = (void *)iov[first + j].buf;
			o->iov[j].iov_len = iov[first + j].len;
			o->desc[j] = mr_desc(iov[first + j].mr);
			o->len += iov[first + j].len;
		}
		raddr += o->len;
		/* Delivery complete: on_done(0) means the bytes are in the
		 * peer's memory, and a revoked key comes back as an error. */
		o->flags = FI_COMPLETION | FI_DELIVERY_COMPLETE;
		o->data = 0;
		if (k == npieces - 1) {
			o->flags |= FI_REMOTE_CQ_DATA;
			o->data = data;
		}
	}
	pc[0]->user = op_ctx;
	atomic_store(&pc[0]->pending, (unsigned)npieces);
	atomic_store(&pc[0]->status, 0);
	atomic_fetch_add(&ep->inflight, (unsigned)npieces);

	r = post_piece(ep, pc[0]);
	if (r) {
		atomic_fetch_sub(&ep->inflight, (unsigned)npieces);
		pthread_mutex_lock(&ep->lock);
		for (k = 0; k < npieces; k++)
			push(&ep->rma_free, pc[k]);
		pthread_mutex_unlock(&ep->lock);
		if (r == -FI_EAGAIN) {
			stat_add(&ep->st.eagain, 1);
			kick(ep);
			return -EAGAIN;
		}
		stat_add(&ep->st.errors, 1);
		return neg_errno(r);
	}
	for (k = 1; k < npieces; k++) {
		/* Once a piece is out, the write is accepted: the rest go now
		 * or, if the provider pushes back (or fails), through the
		 * progress thread, which reports the outcome in on_done. */
		pthread_mutex_lock(&ep->lock);
		r = atomic_load(&ep->deferred) ? -FI_EAGAIN : post_piece(ep, pc[k]);
		if (r) {
			for (size_t j = k; j < npieces; j++) {
				if (r != -FI_EAGAIN && j == k)
					pc[j]->fail = neg_errno(r);
				defer_locked(ep, pc[j]);
			}
		}
		pthread_mutex_unlock(&ep->lock);
		if (r)
			break;
	}
	kick(ep);
	return 0;
}

int qf_read(struct qf_ep *ep, uint64_t peer, void *buf, size_t len, struct qf_mr *mr,
	    uint64_t raddr, uint64_t rkey, void *op_ctx)
{
	struct op *o;
	ssize_t r;

	if (bad_peer(ep, peer) || buf == NULL || len == 0 || len > ep->max_rma)
		return -EINVAL;
	if (mr ? !mr_holds(mr, buf, len) : (ep->mr_mode & FI_MR_LOCAL) != 0)
		return -EINVAL;
	pthread_mutex_lock(&ep->lock);
	o = pop(&ep->rma_free);
	pthread_mutex_unlock(&ep->lock);
	if (o == NULL) {
		stat_add(&ep->st.eagain, 1);
		return -EAGAIN;
	}
	o->kind = OP_READ;
	o->parent = o;
	o->peer = peer;
	o->niov = 1;
	o->iov[0].iov_base = buf;
	o->iov[0].iov_len = len;
	o->desc[0] = mr_desc(mr);
	o->len = len;
	o->raddr = raddr;
	o->rkey = rkey;
	o->data = 0;
	o->flags = FI_COMPLETION;
	o->fail = 0;
	o->user = op_ctx;
	atomic_store(&o->pending, 1);
	atomic_store(&o->status, 0);
	atomic_fetch_add(&ep->inflight, 1);
	r = post_piece(ep, o);
	if (r) {
		atomic_fetch_sub(&ep->inflight, 1);
		rma_put(ep, o);
		if (r == -FI_EAGAIN) {
			stat_add(&ep->st.eagain, 1);
			kick(ep);
			return -EAGAIN;
		}
		stat_add(&ep->st.errors, 1);
		return neg_errno(r);
	}
	kick(ep);
	return 0;
}

size_t qf_max_rma(const struct qf_ep *ep)
{
	return ep->max_rma;
}

size_t qf_cq_data_size(const struct qf_ep *ep)
{
	return ep->cq_data_size;
}

void qf_stats(struct qf_ep *ep, struct qf_stats *ret)
{
	ret->msgs_in = atomic_load_explicit(&ep->st.msgs_in, memory_order_relaxed);
	ret->msgs_out = atomic_load_explicit(&ep->st.msgs_out, memory_order_relaxed);
	ret->bytes_written = atomic_load_explicit(&ep->st.bytes_written, memory_order_relaxed);
	ret->bytes_read = atomic_load_explicit(&ep->st.bytes_read, memory_order_relaxed);
	ret->eagain = atomic_load_explicit(&ep->st.eagain, memory_order_relaxed);
	ret->errors = atomic_load_explicit(&ep->st.errors, memory_order_relaxed);
}
