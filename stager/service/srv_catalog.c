/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quaid's catalog requests: LIST (quai ls), MANIFEST (quai info, and the
 * first step of a pull) and STAT (quai stat), and where a dataset's
 * directory is found under the roots.
 */
#include "srv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "beneath.h"
#include "dataset.h"
#include "fsutil.h"
#include "json.h"
#include "manifest.h"
#include "policy.h"
#include "quai_config.h"

int srv_valid_name(const char *name)
{
	return name[0] && name[0] != '.' && qmf_check_name(name) == 0;
}

int srv_dataset_path(struct qsrv *srv, const char *name, char *buf, size_t len)
{
	char probe[PATH_MAX];
	if (!srv_valid_name(name))
		return -EINVAL;
	for (unsigned i = 0; i <= srv->conf.nroots; i++) {
		const char *root = i < srv->conf.nroots ? srv->conf.roots[i] : srv->conf.push_root;
		if (!root)
			continue;
		if ((size_t)snprintf(probe, sizeof(probe), "%s/%s/manifest.json", root, name) >=
		    sizeof(probe))
			continue;
		if (qfs_is_dataset(root, name) == 0) {
			if ((size_t)snprintf(buf, len, "%s/%s", root, name) >= len)
				return -ENAMETOOLONG;
			return 0;
		}
	}
	return -ENOENT;
}

/* Reads and parses the manifest of the dataset in directory `path`; the
 * text too when ret_text is given (free() it). Returns 0 or -errno /
 * -QUAI_EFORMAT with err. */
int srv_load_manifest(const char *path, const char *name, struct qmf *mf, uint8_t **ret_text,
		      size_t *ret_len, char *err, size_t err_len)
{
	char derr[256];
	int r = qds_read_manifest(AT_FDCWD, path, mf, ret_text, ret_len, derr, sizeof(derr));
	if (r < 0)
		snprintf(err, err_len, "%s/%s", name, derr);
	return r;
}

/* ---- listings, manifests, statistics ---------------------------------- */

struct entry {
	struct qp_list_entry e;
};

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->e.name, ((const struct entry *)b)->e.name);
}

/* Every dataset under the roots, sorted by name; the first root holding a
 * name wins, as srv_dataset_path() decides. */
static int catalog(struct qsrv *srv, struct entry **ret, uint32_t *ret_n)
{
	struct entry *v = NULL;
	uint32_t n = 0, cap = 0;
	for (unsigned i = 0; i <= srv->conf.nroots; i++) {
		const char *root = i < srv->conf.nroots ? srv->conf.roots[i] : srv->conf.push_root;
		if (!root)
			continue;
		DIR *d = opendir(root);
		if (!d)
			continue;
		struct dirent *de;
		while ((de = readdir(d))) {
			if (!srv_valid_name(de->d_name))
				continue;
			int dup = 0;
			for (uint32_t k = 0; k < n && !dup; k++)
				dup = strcmp(v[k].e.name, de->d_name) == 0;
			if (dup)
				continue;
			struct qmf mf;
			/* The rule of what is a dataset here (dataset.h): links and
			 * files that are not regular keep a directory out. */
			if (qds_read_manifest(dirfd(d), de->d_name, &mf, NULL, NULL, NULL, 0) < 0)
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 32;
				struct entry *nv = realloc(v, cap * sizeof(*v));
				if (!nv) {
					qmf_release(&mf);
					closedir(d);
					free(v);
					return -ENOMEM;
				}
				v = nv;
			}
			struct qp_list_entry *e = &v[n++].e;
			memset(e, 0, sizeof(*e));
			snprintf(e->name, sizeof(e->name), "%s", de->d_name);
			e->kind = (uint8_t)mf.kind;
			e->classification = (uint8_t)mf.classification;
			snprintf(e->zone, sizeof(e->zone), "%s", mf.zone);
			e->records = mf.records;
			e->raw_bytes = mf.raw_bytes;
			e->compressed_bytes = mf.compressed_bytes;
			e->shards = mf.nshards;
			qmf_release(&mf);
		}
		closedir(d);
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_entry);
	*ret = v;
	*ret_n = n;
	return 0;
}

void srvc_list(struct session *se, const struct qp_msg *m)
{
	struct entry *v;
	uint32_t n;
	if (!srv_authorize(se, m->h.req, QPOL_LIST, "list", NULL, 0, NULL, -1))
		return;
	int r = catalog(se->srv, &v, &n);
	if (r < 0) {
		srv_error(se, m->h.req, r, "cannot list the datasets: %s", strerror(-r));
		return;
	}
	/* Only what this client may list: the others are not shown at all. */
	uint32_t kept = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct qpol_decision d;
		if (srv_decide(se, QPOL_LIST, v[i].e.name, v[i].e.classification, v[i].e.zone, &d))
			v[kept++] = v[i];
	}
	n = kept;
	struct qp_msg *rm = calloc(1, sizeof(*rm));
	if (!rm) {
		free(v);
		srv_error(se, m->h.req, -ENOMEM, "out of memory");
		return;
	}
	rm->h.type = QP_LIST_REPLY;
	rm->h.req = m->h.req;
	rm->u.list_reply.total = n;
	rm->u.list_reply.start = m->u.list.start;
	/* As many entries as fit one message. */
	uint8_t *probe = malloc(QP_MSG_MAX);
	for (uint32_t i = m->u.list.start; probe && i < n && rm->u.list_reply.n < QP_LIST_MAX;
	     i++) {
		rm->u.list_reply.e[rm->u.list_reply.n++] = v[i].e;
		if (qp_encode(rm, probe, QP_MSG_MAX) < 0) {
			rm->u.list_reply.n--;
			break;
		}
	}
	free(probe);
	free(v);
	srv_send(se, rm);
	free(rm);
}

void srvc_manifest(struct session *se, const struct qp_msg *m)
{
	char path[PATH_MAX];
	int r = srv_dataset_path(se->srv, m->u.manifest.name, path, sizeof(path));
	if (r < 0) {
		srv_error(se, m->h.req, r == -EINVAL ? -EINVAL : -ENOENT,
			  r == -EINVAL ? "'%s' is not a dataset name" : "no dataset '%s' here",
			  m->u.manifest.name);
		return;
	}
	uint8_t *text = NULL;
	size_t len = 0;
	char err[512];
	struct qmf mf;
	r = srv_load_manifest(path, m->u.manifest.name, &mf, &text, &len, err, sizeof(err));
	if (r < 0) {
		srv_error(se, m->h.req, r, "%s", err);
		return;
	}
	/* A client that may stream or pull a dataset may read its manifest
	 * (quai pull does, first). The first chunk is decided and audited;
	 * later ones, the same reading going on, are decided again silently. */
	static const int ops[] = {QPOL_LIST, QPOL_PULL, QPOL_STREAM};
	struct qpol_decision d;
	int op = QPOL_LIST, granted = 0;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]) && !granted; i++)
		if (srv_decide(se, ops[i], m->u.manifest.name, mf.classification, mf.zone, &d)) {
			op = ops[i];
			granted = 1;
		}
	if (m->u.manifest.offset == 0)
		granted = srv_authorize(se, m->h.req, op, "info", m->u.manifest.name,
					mf.classification, mf.zone, (int64_t)mf.raw_bytes);
	else if (!granted)
		srv_error(se, m->h.req, -QUAI_EPOLICY, "%s", d.why);
	qmf_release(&mf);
	if (!granted) {
		free(text);
		return;
	}
	struct qp_msg *rm = calloc(1, sizeof(*rm));
	if (!rm) {
		free(text);
		srv_error(se, m->h.req, -ENOMEM, "out of memory");
		return;
	}
	uint64_t off = m->u.manifest.offset < len ? m->u.manifest.offset : len;
	size_t chunk = len - off;
	size_t room = QP_MSG_MAX - QP_HEADER_SIZE - 64;
	rm->h.type = QP_MANIFEST_REPLY;
	rm->h.req = m->h.req;
	rm->u.manifest_reply.total = len;
	rm->u.manifest_reply.offset = off;
	rm->u.manifest_reply.data = (struct qp_blob){text + off, chunk < room ? chunk : room};
	srv_send(se, rm);
	free(rm);
	free(text);
}

/* A JSON string of a C string (compress/json.c's writer: UTF-8 passes as
 * it is, control characters and invalid bytes are escaped). */
static void put_string(struct qjs_buf *b, const char *s)
{
	qjs_put_str(b, s, strlen(s));
}

void srvc_stat(struct session *se, const struct qp_msg *m)
{
	struct qsrv *srv = se->srv;
	if (!srv_authorize(se, m->h.req, QPOL_LIST, "stat", NULL, 0, NULL, -1))
		return;
	/* What fits one STAT_REPLY. */
	const size_t room = QP_MSG_MAX - QP_HEADER_SIZE - 64;
	struct qjs_buf b = {0};
	struct quai_ctx_info ci = {.size = sizeof(ci)};
	quai_ctx_info(srv->ctx, &ci);
	pthread_mutex_lock(&srv->mu);
	uint64_t now = srv_now_ns();
	qjs_put_fmt(&b, "{\"server\":\"quaid %s\",\"zone\":", QUAI_VERSION);
	put_string(&b, srv->conf.zone);
	qjs_put_cstr(&b, ",\"address\":");
	put_string(&b, srv->addr);
	qjs_put_cstr(&b, ",\"provider\":");
	put_string(&b, qf_provider(srv->ep));
	unsigned nst = 0;
	for (struct session *s = srv->sessions; s; s = s->next)
		nst += s->nstreams;
	qjs_put_fmt(&b,
		    ",\"uptime_ms\":%" PRIu64 ",\"sessions_total\":%" PRIu64 ",\"streams_open\":%u"
		    ",\"streams_total\":%" PRIu64 ",\"bytes_served\":%" PRIu64
		    ",\"batches_served\":%" PRIu64 ",\"rate_bytes_per_s\":%" PRIu64
		    ",\"pinned_bytes\":%" PRIu64 ",\"pinned_peak\":%" PRIu64 ",\"clients\":[",
		    (now - srv->started_ns) / 1000000, srv->sessions_total, nst,
		    srv->streams_opened, srv->bytes_served, srv->batches_served, srv->rate_bps,
		    ci.pinned_bytes, ci.pinned_peak);
	int first = 1;
	for (struct session *s = srv->sessions; s; s = s->next) {
		if (s->dead)
			continue;
		qjs_put_fmt(&b, "%s{\"session\":%" PRIu64 ",\"host\":", first ? "" : ",", s->id);
		put_string(&b, s->host);
		if (s->authed) {
			qjs_put_fmt(&b, ",\"uid\":%" PRIu32 ",\"user\":", s->who.uid);
			put_string(&b, s->who.user);
			qjs_put_cstr(&b, ",\"from\":");
			put_string(&b, s->who.addr_text);
		}
		qjs_put_fmt(&b,
			    ",\"pid\":%" PRIu32 ",\"streams\":%u,\"bytes_out\":%" PRIu64
			    ",\"bytes_in\":%" PRIu64 ",\"memory\":%" PRIu64 ",\"idle_ms\":%" PRIu64
			    "}",
			    s->pid, s->nstreams, s->bytes_out, s->bytes_in, s->mem_used,
			    (now - s->last_rx_ns) / 1000000);
		first = 0;
	}
	pthread_mutex_unlock(&srv->mu);
	qjs_put_cstr(&b, "]}");
	if (!b.err && b.len > room) {
		/* Too many clients for one message: the totals only. */
		b.len = 0;
		qjs_put_fmt(&b, "{\"server\":\"quaid %s\",\"truncated\":true}", QUAI_VERSION);
	}
	if (b.err) {
		free(b.data);
		srv_error(se, m->h.req, -ENOMEM, "out of memory");
		return;
	}
	struct qp_msg *rm = calloc(1, sizeof(*rm));
	if (rm) {
		rm->h.type = QP_STAT_REPLY;
		rm->h.req = m->h.req;
		rm->u.stat_reply.json = (struct qp_blob){(const uint8_t *)b.data, b.len};
		srv_send(se, rm);
	}
	free(rm);
	free(b.data);
}
