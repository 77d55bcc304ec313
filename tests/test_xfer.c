/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pulls and pushes at the protocol level (stager/service/srv_xfer.c): a quaid
 * service in this process, a client session over loopback, and requests
 * that a well-behaved client (quai_pull, quai_push) never sends, which
 * quaid must refuse with the right code. The well-behaved paths are tested
 * end to end by tests/cli/test_xfer.py.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "fsutil.h"
#include "server.h"
#include "svcconf.h"
#include "testutil.h"

struct env {
	char dir[512], roots[600], push_root[600], sock[512];
	int munged;
	struct qsvc_conf conf;
	struct qsrv *srv;
	pthread_t run;
	struct qconn *c;
};

static void *run_main(void *arg)
{
	qsrv_run(arg);
	return NULL;
}

static void quiet_log(int level, const char *msg, void *arg)
{
	(void)level, (void)msg, (void)arg;
}

/* A quaid serving one small dataset "ds", with a push_root, and a client
 * connected to it, authenticated by a private munged and allowed all. */
static void env_start(struct env *e)
{
	struct qsvc_conf *conf = &e->conf;
	char err[512], uri[600], text[700];

	tu_mkdtemp(e->dir, sizeof(e->dir));
	e->munged = tu_munged_start(e->dir, e->sock, sizeof(e->sock));
	if (e->munged < 0)
		tu_rmtree(e->dir);
	TU_NEED_MUNGED(e->munged);
	cr_assert(setenv("QUAI_MUNGE_SOCKET", e->sock, 1) == 0);
	snprintf(e->roots, sizeof(e->roots), "%s/roots", e->dir);
	snprintf(e->push_root, sizeof(e->push_root), "%s/pushed", e->dir);
	cr_assert(mkdir(e->roots, 0755) == 0 && mkdir(e->push_root, 0755) == 0);
	char src[700], ds[700];
	snprintf(src, sizeof(src), "%s/lines.txt", e->dir);
	snprintf(ds, sizeof(ds), "%s/ds", e->roots);
	tu_write_lines(src, 300000, 1, 16, 10, 7, 90);
	const char *srcs[] = {src};
	struct quai_pack_opts po = {
	    .size = sizeof(po), .kind = QUAI_RECORDS_LINES, .frame_size = 16 << 10, .zone = "none"};
	tu_pack(srcs, 1, ds, &po);

	qsvc_conf_init(conf);
	snprintf(text, sizeof(text), "zone = none\nmunge_socket = %s\nrule_all = allow all\n",
		 e->sock);
	int r = qsvc_conf_parse(text, strlen(text), conf, err, sizeof(err));
	cr_assert(r == 0, "quaid's configuration: %s", err);
	snprintf(conf->listen_node, sizeof(conf->listen_node), "127.0.0.1");
	snprintf(conf->listen_service, sizeof(conf->listen_service), "0");
	conf->roots[0] = e->roots;
	conf->nroots = 1;
	conf->push_root = e->push_root;
	conf->pinned = 64 << 20;
	conf->client_memory = 32 << 20;
	r = qsrv_new(conf, quiet_log, NULL, &e->srv, err, sizeof(err));
	if (r == -EPERM || r == -ENOMEM) {
		qpol_free(conf->policy);
		tu_munged_stop(e->munged);
		tu_rmtree(e->dir);
		cr_skip_test("quaid's pool cannot be locked here: %s", err);
	}
	cr_assert(r == 0, "qsrv_new: %s", err);
	cr_assert(pthread_create(&e->run, NULL, run_main, e->srv) == 0);

	struct qconn_uri u;
	snprintf(uri, sizeof(uri), "quai://%s/ds", qsrv_address(e->srv));
	cr_assert(qconn_parse_uri(uri, &u, err, sizeof(err)) == 0, "%s", err);
	r = qconn_open(&u, &e->c, err, sizeof(err));
	cr_assert(r == 0, "qconn_open: %s", err);
}

static void env_stop(struct env *e)
{
	qconn_close(e->c);
	qsrv_stop(e->srv);
	pthread_join(e->run, NULL);
	qsrv_free(e->srv);
	/* roots and push_root are e's own: only the policy is to free. */
	qpol_free(e->conf.policy);
	tu_munged_stop(e->munged);
	tu_rmtree(e->dir);
}

/* A request and its reply: 0, or the error code with the message. */
static int call(struct env *e, struct qp_msg *m, struct qp_msg *ret, char *err, size_t err_len)
{
	struct qconn_reply rep = {0};
	int r = qconn_call(e->c, m, &rep, err, err_len);
	if (r == 0 && ret)
		*ret = rep.m;
	qconn_reply_free(&rep);
	return r;
}

static uint64_t open_xfer(struct env *e, int push, const char *name, uint64_t manifest_len)
{
	struct qp_msg m = {0}, rep;
	char err[QP_TEXT_MAX + 1];
	if (push) {
		m.h.type = QP_PUSH_OPEN;
		m.u.push_open.tag = 7;
		snprintf(m.u.push_open.name, sizeof(m.u.push_open.name), "%s", name);
		m.u.push_open.manifest_len = manifest_len;
		m.u.push_open.classification = QUAI_CLASS_INTERNAL;
		snprintf(m.u.push_open.zone, sizeof(m.u.push_open.zone), "none");
	} else {
		m.h.type = QP_PULL_OPEN;
		m.u.pull_open.tag = 7;
		snprintf(m.u.pull_open.name, sizeof(m.u.pull_open.name), "%s", name);
	}
	int r = call(e, &m, &rep, err, sizeof(err));
	cr_assert(r == 0, "%s: %s", qp_type_name(m.h.type), err);
	cr_assert(rep.h.type == QP_XFER_READY);
	cr_assert(rep.u.xfer_ready.max_chunk >= 4096 && rep.u.xfer_ready.max_inflight >= 1);
	return rep.u.xfer_ready.xfer;
}

static int read_req(struct env *e, uint64_t xfer, const char *file, uint64_t off, uint32_t len,
		    uint32_t slot, char *err, size_t err_len)
{
	struct qp_msg m = {.h.type = QP_READ};
	m.u.read = (struct qp_read){.xfer = xfer, .offset = off, .len = len, .slot = slot};
	snprintf(m.u.read.file, sizeof(m.u.read.file), "%s", file);
	return call(e, &m, NULL, err, err_len);
}

static int put_req(struct env *e, uint64_t xfer, const char *file, uint64_t off, uint32_t len,
		   uint64_t addr, uint64_t key, char *err, size_t err_len)
{
	struct qp_msg m = {.h.type = QP_PUT};
	m.u.put =
	    (struct qp_put){.xfer = xfer, .offset = off, .len = len, .addr = addr, .key = key};
	snprintf(m.u.put.file, sizeof(m.u.put.file), "%s", file);
	return call(e, &m, NULL, err, err_len);
}

static int id_req(struct env *e, int type, uint64_t id, struct qp_msg *ret, char *err,
		  size_t err_len)
{
	struct qp_msg m = {.h.type = (uint16_t)type};
	m.u.id.id = id;
	return call(e, &m, ret, err, err_len);
}

struct landing {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int slot;
};

static void on_landed(void *arg, uint32_t slot)
{
	struct landing *l = arg;
	pthread_mutex_lock(&l->mu);
	l->slot = (int)slot;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

static void ignore_reply(void *arg, const struct qp_msg *m)
{
	(void)arg, (void)m;
}

Test(xfer, pull_serves_only_the_manifests_files)
{
	struct env e = {0};
	char err[QP_TEXT_MAX + 1];
	env_start(&e);
	uint64_t x = open_xfer(&e, 0, "ds", 0);

	/* A ring of two slots of 64 KiB. */
	enum { SLOT = 64 << 10 };
	uint8_t *ring = aligned_alloc(4096, 2 * SLOT);
	struct qf_mr *mr;
	cr_assert(qf_mr_reg(qconn_ep(e.c), ring, 2 * SLOT, QF_REMOTE_WRITE, &mr) == 0);
	struct landing l = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, -1};
	struct qconn_sink sink = {.tag = 7, .id = x, .landed = on_landed, .arg = &l};
	qconn_add_sink(e.c, &sink);

	/* READ before SLOTS. */
	cr_expect_eq(read_req(&e, x, "shard-00000.zst", 0, 100, 0, err, sizeof(err)), -EPROTO);
	struct qp_msg m = {.h.type = QP_SLOTS};
	m.u.slots = (struct qp_slots){.id = x,
				      .nslots = 2,
				      .slot_bytes = SLOT,
				      .addr = qf_mr_addr(mr, ring),
				      .key = qf_mr_key(mr)};
	cr_assert(call(&e, &m, NULL, err, sizeof(err)) == 0, "SLOTS: %s", err);
	cr_expect_eq(call(&e, &m, NULL, err, sizeof(err)), -EINVAL, "a second SLOTS");

	/* Names that are not files of the dataset, however close. */
	/* (The protocol itself refuses absolute names and "." or ".."
	 * components: qp_encode() would not even send them.) */
	const char *bad[] = {"ds/manifest.json",  "shard-00001.zst",	 "shard-0.zst",
			     "manifest.json.tmp", "shard-00000.zst.bak", "roots"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = read_req(&e, x, bad[i], 0, 10, 0, err, sizeof(err));
		cr_expect_eq(r, -ENOENT, "READ of %s: %d %s", bad[i], r, err);
	}
	/* Out of the file, the slot, the ring. */
	char path[700];
	snprintf(path, sizeof(path), "%s/ds/shard-00000.idx", e.roots);
	size_t idx_len;
	uint8_t *idx = tu_read(path, &idx_len);
	cr_expect_eq(read_req(&e, x, "shard-00000.idx", idx_len - 10, 11, 0, err, sizeof(err)),
		     -EINVAL);
	cr_expect_eq(read_req(&e, x, "shard-00000.idx", 0, SLOT + 1, 0, err, sizeof(err)), -EINVAL);
	cr_expect_eq(read_req(&e, x, "shard-00000.idx", 0, 10, 2, err, sizeof(err)), -EINVAL);
	cr_expect_eq(read_req(&e, x, "shard-00000.idx", 0, 0, 0, err, sizeof(err)), -EINVAL);
	/* PUT is not for a pull; COMMIT neither. */
	cr_expect_eq(put_req(&e, x, "shard-00000.idx", 0, 10, 0, 0, err, sizeof(err)), -EINVAL);
	cr_expect_eq(id_req(&e, QP_COMMIT, x, NULL, err, sizeof(err)), -EPROTO);

	/* A good READ lands in its slot with the file's bytes. */
	uint32_t len = idx_len - 5 < SLOT ? (uint32_t)(idx_len - 5) : SLOT;
	memset(ring, 0, 2 * SLOT);
	struct qp_msg rd = {.h.type = QP_READ};
	rd.u.read = (struct qp_read){.xfer = x, .offset = 5, .len = len, .slot = 1};
	snprintf(rd.u.read.file, sizeof(rd.u.read.file), "shard-00000.idx");
	int64_t req = qconn_post(e.c, &rd, ignore_reply, NULL);
	cr_assert(req > 0);
	pthread_mutex_lock(&l.mu);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	while (l.slot < 0 && pthread_cond_timedwait(&l.cv, &l.mu, &ts) == 0)
		;
	pthread_mutex_unlock(&l.mu);
	cr_assert_eq(l.slot, 1, "the READ did not land");
	cr_expect(memcmp(ring + SLOT, idx + 5, len) == 0);
	qconn_unpost(e.c, (uint64_t)req);

	cr_expect_eq(id_req(&e, QP_XFER_CLOSE, x, NULL, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(id_req(&e, QP_XFER_CLOSE, x, NULL, err, sizeof(err)), -ENOENT);
	cr_expect_eq(read_req(&e, x, "shard-00000.idx", 0, 10, 0, err, sizeof(err)), -ENOENT);
	qconn_remove_sink(e.c, &sink);
	qf_mr_close(mr);
	free(ring);
	free(idx);
	env_stop(&e);
}

Test(xfer, pull_of_what_is_not_there)
{
	struct env e = {0};
	char err[QP_TEXT_MAX + 1];
	env_start(&e);
	struct qp_msg m = {.h.type = QP_PULL_OPEN};
	snprintf(m.u.pull_open.name, sizeof(m.u.pull_open.name), "nope");
	cr_expect_eq(call(&e, &m, NULL, err, sizeof(err)), -ENOENT);
	cr_expect(strstr(err, "no dataset 'nope'"), "%s", err);
	snprintf(m.u.pull_open.name, sizeof(m.u.pull_open.name), "..");
	cr_expect_eq(call(&e, &m, NULL, err, sizeof(err)), -EINVAL);
	snprintf(m.u.pull_open.name, sizeof(m.u.pull_open.name), ".ds.quai-partial");
	cr_expect_eq(call(&e, &m, NULL, err, sizeof(err)), -EINVAL);
	env_stop(&e);
}

Test(xfer, push_refuses_what_breaks_the_rules)
{
	struct env e = {0};
	char err[QP_TEXT_MAX + 1], path[1024];
	env_start(&e);

	/* The served dataset's own manifest, pushed as "ds2" after renaming
	 * would fail its checksum: push a copy of "ds" packed as "ds2". */
	char src[700], ds2[700];
	snprintf(src, sizeof(src), "%s/lines.txt", e.dir);
	snprintf(ds2, sizeof(ds2), "%s/ds2", e.dir);
	const char *srcs[] = {src};
	struct quai_pack_opts po = {
	    .size = sizeof(po), .kind = QUAI_RECORDS_LINES, .frame_size = 16 << 10, .zone = "none"};
	tu_pack(srcs, 1, ds2, &po);
	snprintf(path, sizeof(path), "%s/manifest.json", ds2);
	size_t mlen;
	uint8_t *mtext = tu_read(path, &mlen);

	/* A name served already; a name that is not one. */
	struct qp_msg m = {.h.type = QP_PUSH_OPEN};
	m.u.push_open =
	    (struct qp_push_open){.manifest_len = mlen, .classification = QUAI_CLASS_INTERNAL};
	snprintf(m.u.push_open.zone, sizeof(m.u.push_open.zone), "none");
	snprintf(m.u.push_open.name, sizeof(m.u.push_open.name), "ds");
	cr_expect_eq(call(&e, &m, NULL, err, sizeof(err)), -QUAI_EEXISTS, "%s", err);
	snprintf(m.u.push_open.name, sizeof(m.u.push_open.name), "a/b");
	cr_expect_eq(call(&e, &m, NULL, err, sizeof(err)), -EINVAL, "%s", err);

	uint64_t x = open_xfer(&e, 1, "ds2", mlen);
	/* A second push of the same name waits for this one. */
	snprintf(m.u.push_open.name, sizeof(m.u.push_open.name), "ds2");
	cr_expect_eq(call(&e, &m, NULL, err, sizeof(err)), -EBUSY, "%s", err);

	uint8_t *buf = aligned_alloc(4096, 1 << 20);
	struct qf_mr *mr;
	cr_assert(qf_mr_reg(qconn_ep(e.c), buf, 1 << 20, QF_REMOTE_READ, &mr) == 0);
	uint64_t addr = qf_mr_addr(mr, buf), key = qf_mr_key(mr);

	/* Data before the whole manifest; PUSH_STATUS too. */
	cr_expect_eq(put_req(&e, x, "shard-00000.zst", 0, 10, addr, key, err, sizeof(err)),
		     -EPROTO);
	cr_expect_eq(id_req(&e, QP_PUSH_STATUS, x, NULL, err, sizeof(err)), -EPROTO);
	/* The manifest: in order, within its length. */
	cr_expect_eq(put_req(&e, x, "manifest.json", 10, 10, addr, key, err, sizeof(err)), -EINVAL);
	cr_expect_eq(
	    put_req(&e, x, "manifest.json", 0, (uint32_t)mlen + 1, addr, key, err, sizeof(err)),
	    -EINVAL);
	memcpy(buf, mtext, mlen);
	cr_assert_eq(
	    put_req(&e, x, "manifest.json", 0, (uint32_t)mlen, addr, key, err, sizeof(err)), 0,
	    "%s", err);
	cr_expect_eq(put_req(&e, x, "manifest.json", 0, 10, addr, key, err, sizeof(err)), -EINVAL,
		     "the manifest is whole");

	/* Files the manifest does not name; bytes past a file's end. */
	cr_expect_eq(put_req(&e, x, "evil.sh", 0, 10, addr, key, err, sizeof(err)), -ENOENT);
	cr_expect_eq(put_req(&e, x, "sub/shard-00000.idx", 0, 10, addr, key, err, sizeof(err)),
		     -ENOENT);
	snprintf(path, sizeof(path), "%s/shard-00000.idx", ds2);
	size_t ilen;
	uint8_t *itext = tu_read(path, &ilen);
	cr_expect_eq(put_req(&e, x, "shard-00000.idx", ilen - 4, 8, addr, key, err, sizeof(err)),
		     -EINVAL);

	/* What the server has: the manifest only. */
	struct qp_msg have;
	cr_assert_eq(id_req(&e, QP_PUSH_STATUS, x, &have, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(have.h.type, QP_PUSH_HAVE);
	cr_expect_eq(have.u.push_have.n, 1);
	cr_expect_str_eq(have.u.push_have.e[0].file, "manifest.json");
	cr_expect_eq(have.u.push_have.e[0].bytes, mlen);

	/* Part of the index, then COMMIT: refused, the partial kept. */
	uint32_t part = ilen > 100 ? 100 : (uint32_t)ilen;
	memcpy(buf, itext, part);
	cr_expect_eq(put_req(&e, x, "shard-00000.idx", 0, part, addr, key, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(id_req(&e, QP_PUSH_STATUS, x, &have, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(have.u.push_have.n, 2);
	cr_expect_eq(have.u.push_have.e[1].bytes, part);
	cr_expect_eq(id_req(&e, QP_COMMIT, x, NULL, err, sizeof(err)), -EPROTO);
	cr_expect(strstr(err, "send the rest first"), "%s", err);
	cr_expect_eq(id_req(&e, QP_XFER_CLOSE, x, NULL, err, sizeof(err)), 0, "%s", err);
	snprintf(path, sizeof(path), "%s/.ds2.quai-partial/shard-00000.idx", e.push_root);
	struct stat st;
	cr_expect(stat(path, &st) == 0 && (size_t)st.st_size == part, "the partial stays");
	snprintf(path, sizeof(path), "%s/ds2", e.push_root);
	cr_expect(!qfs_exists(path), "nothing is published");

	qf_mr_close(mr);
	free(buf);
	free(itext);
	free(mtext);
	env_stop(&e);
}

/* Sends a whole file of `dir` in chunks of at most `chunk` bytes. */
static void put_file(struct env *e, uint64_t x, const char *dir, const char *file, uint8_t *buf,
		     size_t cap, uint64_t addr, uint64_t key)
{
	char path[1024], err[QP_TEXT_MAX + 1];
	size_t len;
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	uint8_t *data = tu_read(path, &len);
	for (size_t off = 0; off < len;) {
		size_t n = len - off < cap ? len - off : cap;
		memcpy(buf, data + off, n);
		int r = put_req(e, x, file, off, (uint32_t)n, addr, key, err, sizeof(err));
		cr_assert_eq(r, 0, "PUT %s: %s", file, err);
		off += n;
	}
	free(data);
}

Test(xfer, push_commit_publishes_then_takes_nothing_more)
{
	struct env e = {0};
	char err[QP_TEXT_MAX + 1], path[1024], src[700], ds3[700];
	env_start(&e);
	snprintf(src, sizeof(src), "%s/lines.txt", e.dir);
	snprintf(ds3, sizeof(ds3), "%s/ds3", e.dir);
	const char *srcs[] = {src};
	struct quai_pack_opts po = {.size = sizeof(po),
				    .kind = QUAI_RECORDS_LINES,
				    .frame_size = 16 << 10,
				    .shard_size = 64 << 10,
				    .zone = "none"};
	tu_pack(srcs, 1, ds3, &po);
	quai_dataset *ds;
	cr_assert(quai_dataset_open(ds3, &ds, NULL, 0) == 0);
	struct quai_dataset_info in = {.size = sizeof(in)};
	quai_dataset_info(ds, &in);
	cr_assert(in.shards > 1);

	snprintf(path, sizeof(path), "%s/manifest.json", ds3);
	size_t mlen;
	uint8_t *mtext = tu_read(path, &mlen);
	free(mtext);
	uint64_t x = open_xfer(&e, 1, "ds3", mlen);
	enum { CAP = 64 << 10 };
	uint8_t *buf = aligned_alloc(4096, CAP);
	struct qf_mr *mr;
	cr_assert(qf_mr_reg(qconn_ep(e.c), buf, CAP, QF_REMOTE_READ, &mr) == 0);
	uint64_t addr = qf_mr_addr(mr, buf), key = qf_mr_key(mr);
	put_file(&e, x, ds3, "manifest.json", buf, CAP, addr, key);
	for (uint32_t i = 0; i < in.shards; i++) {
		struct quai_shard_info si = {.size = sizeof(si)};
		quai_dataset_shard(ds, i, &si);
		put_file(&e, x, ds3, si.index_file, buf, CAP, addr, key);
		put_file(&e, x, ds3, si.file, buf, CAP, addr, key);
	}
	cr_assert_eq(id_req(&e, QP_COMMIT, x, NULL, err, sizeof(err)), 0, "COMMIT: %s", err);
	snprintf(path, sizeof(path), "%s/ds3", e.push_root);
	quai_dataset *pub;
	cr_assert(quai_dataset_open(path, &pub, err, sizeof(err)) == 0, "%s", err);
	quai_dataset_close(pub);

	/* Published: nothing more may change it. */
	memset(buf, 'x', 16);
	cr_expect_eq(put_req(&e, x, "shard-00000.idx", 0, 16, addr, key, err, sizeof(err)), -EPROTO,
		     "%s", err);
	cr_expect_eq(id_req(&e, QP_COMMIT, x, NULL, err, sizeof(err)), -EPROTO);
	cr_expect_eq(id_req(&e, QP_XFER_CLOSE, x, NULL, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(quai_verify(path, NULL, NULL), 0);
	snprintf(path, sizeof(path), "%s/.ds3.quai-partial", e.push_root);
	cr_expect(!qfs_exists(path));

	quai_dataset_close(ds);
	qf_mr_close(mr);
	free(buf);
	env_stop(&e);
}

/* ---- sensitive pulls land on sovereign storage only ----------------------- */

/* A quaid of zone z1 serving the sensitive dataset "sens" of zone z1 to
 * anyone authenticated, with a private munged; this host is in zone z1 and
 * declares <dir>/sov its sovereign storage, <dir>/scratch not. */
struct sov_env {
	char dir[512], sock[512], hostconf[600], sov[600], scratch[600], audit[600];
	char uri[700];
	int munged;
	struct qsvc_conf conf;
	struct qsrv *srv;
	pthread_t run;
};

static void sov_env_start(struct sov_env *e)
{
	char err[512], path[700], text[4096];

	tu_mkdtemp(e->dir, sizeof(e->dir));
	e->munged = tu_munged_start(e->dir, e->sock, sizeof(e->sock));
	if (e->munged < 0)
		tu_rmtree(e->dir);
	TU_NEED_MUNGED(e->munged);
	snprintf(e->sov, sizeof(e->sov), "%s/sov", e->dir);
	snprintf(e->scratch, sizeof(e->scratch), "%s/scratch", e->dir);
	snprintf(e->audit, sizeof(e->audit), "%s/audit.log", e->dir);
	snprintf(path, sizeof(path), "%s/roots", e->dir);
	cr_assert(mkdir(e->sov, 0755) == 0 && mkdir(e->scratch, 0755) == 0 &&
		  mkdir(path, 0755) == 0);

	snprintf(e->hostconf, sizeof(e->hostconf), "%s/host.conf", e->dir);
	/* Its sovereign paths: where pulls land, and the roots its
	 * sensitive dataset is packed into (as on a storage host). */
	snprintf(text, sizeof(text), "zone = z1\nsovereign_paths = %s:%s/roots\n", e->sov, e->dir);
	tu_write(e->hostconf, text, strlen(text));
	cr_assert(setenv("QUAI_CONF", e->hostconf, 1) == 0);
	cr_assert(setenv("QUAI_MUNGE_SOCKET", e->sock, 1) == 0);

	char src[700], ds[700];
	snprintf(src, sizeof(src), "%s/lines.txt", e->dir);
	snprintf(ds, sizeof(ds), "%s/roots/sens", e->dir);
	tu_write_lines(src, 100000, 2, 16, 10, 7, 90);
	const char *srcs[] = {src};
	struct quai_pack_opts po = {.size = sizeof(po),
				    .kind = QUAI_RECORDS_LINES,
				    .frame_size = 16 << 10,
				    .classification = QUAI_CLASS_SENSITIVE,
				    .zone = "z1"};
	tu_pack(srcs, 1, ds, &po);

	qsvc_conf_init(&e->conf);
	snprintf(text, sizeof(text),
		 "listen = 127.0.0.1:0\nzone = z1\nzone_hosts = 127.0.0.0/8\nroots = %s/roots\n"
		 "munge_socket = %s\naudit_log = %s\nrule_all = allow all\n",
		 e->dir, e->sock, e->audit);
	int r = qsvc_conf_parse(text, strlen(text), &e->conf, err, sizeof(err));
	cr_assert(r == 0, "quaid's configuration: %s", err);
	e->conf.pinned = 64 << 20;
	e->conf.client_memory = 32 << 20;
	r = qsrv_new(&e->conf, quiet_log, NULL, &e->srv, err, sizeof(err));
	if (r == -EPERM || r == -ENOMEM) {
		qsvc_conf_free(&e->conf);
		tu_munged_stop(e->munged);
		tu_rmtree(e->dir);
		cr_skip_test("quaid's pool cannot be locked here: %s", err);
	}
	cr_assert(r == 0, "qsrv_new: %s", err);
	cr_assert(pthread_create(&e->run, NULL, run_main, e->srv) == 0);
	snprintf(e->uri, sizeof(e->uri), "quai://%s/sens", qsrv_address(e->srv));
}

static void sov_env_stop(struct sov_env *e)
{
	qsrv_stop(e->srv);
	pthread_join(e->run, NULL);
	qsrv_free(e->srv);
	qsvc_conf_free(&e->conf);
	tu_munged_stop(e->munged);
	tu_rmtree(e->dir);
}

/* The number of entries in a directory. */
static int entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int n = 0;

	cr_assert_not_null(d, "%s: %s", path, strerror(errno));
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
	closedir(d);
	return n;
}

Test(xfer, sensitive_pull_outside_sovereign_paths_writes_nothing, .timeout = 120)
{
	struct sov_env e = {0};
	char dest[700], want[2048], err[4096];
	struct quai_xfer_opts unpack = {.size = sizeof(unpack), .unpack = 1};
	sov_env_start(&e);

	snprintf(dest, sizeof(dest), "%s/got", e.scratch);
	int r = quai_pull(e.uri, dest, NULL, NULL, err, sizeof(err));
	cr_expect_eq(r, -QUAI_EPOLICY, "%d: %s", r, err);
	snprintf(want, sizeof(want),
		 "dataset sens is sensitive (zone z1): destination %s is not a sovereign path on "
		 "this host (see sovereign_paths in %s)",
		 dest, e.hostconf);
	cr_expect_str_eq(err, want);
	cr_expect_eq(entries(e.scratch), 0, "something was written beside %s", dest);

	/* Restoring the records is refused the same way. */
	r = quai_pull(e.uri, dest, &unpack, NULL, err, sizeof(err));
	cr_expect_eq(r, -QUAI_EPOLICY, "%d: %s", r, err);
	cr_expect_eq(entries(e.scratch), 0);

	/* A directory that would be made inside the sovereign one through a
	 * link out of it is outside too. */
	char link[700];
	snprintf(link, sizeof(link), "%s/out", e.sov);
	cr_assert(symlink(e.scratch, link) == 0);
	snprintf(dest, sizeof(dest), "%s/out/got", e.sov);
	r = quai_pull(e.uri, dest, NULL, NULL, err, sizeof(err));
	cr_expect_eq(r, -QUAI_EPOLICY, "%d: %s", r, err);
	cr_expect_eq(entries(e.scratch), 0);

	/* A host that declares no sovereign path gets nothing, and is told. */
	snprintf(want, sizeof(want), "zone = z1\n");
	tu_write(e.hostconf, want, strlen(want));
	snprintf(dest, sizeof(dest), "%s/got", e.sov);
	r = quai_pull(e.uri, dest, NULL, NULL, err, sizeof(err));
	cr_expect_eq(r, -QUAI_EPOLICY, "%d: %s", r, err);
	cr_expect(strstr(err, "declares no sovereign paths"), "%s", err);
	cr_expect_eq(entries(e.sov), 1, "only the link: nothing was written");

	/* A malformed sovereign_paths refuses too, naming the file and line. */
	snprintf(want, sizeof(want), "zone = z1\nsovereign_paths = sov\n");
	tu_write(e.hostconf, want, strlen(want));
	r = quai_pull(e.uri, dest, NULL, NULL, err, sizeof(err));
	cr_expect_eq(r, -QUAI_EPOLICY, "%d: %s", r, err);
	snprintf(want, sizeof(want), "%s:2: invalid value for key 'sovereign_paths'", e.hostconf);
	cr_expect(strstr(err, want), "%s", err);
	cr_expect_eq(entries(e.sov), 1);
	sov_env_stop(&e);
}

Test(xfer, sensitive_pull_into_a_sovereign_path, .timeout = 120)
{
	struct sov_env e = {0};
	char dest[700], src[700], err[4096];
	struct quai_xfer_result res = {0};
	sov_env_start(&e);

	/* Through a link from elsewhere, and relative to the working
	 * directory: what counts is where the bytes land. */
	char link[700];
	snprintf(link, sizeof(link), "%s/to-sov", e.scratch);
	cr_assert(symlink(e.sov, link) == 0);
	cr_assert(chdir(e.scratch) == 0);
	int r = quai_pull(e.uri, "to-sov/got", NULL, &res, err, sizeof(err));
	if (r == -QUAI_EPOLICY && strstr(err, "locked memory"))
		cr_skip_test("%s", err);
	cr_assert_eq(r, 0, "%s", err);
	snprintf(dest, sizeof(dest), "%s/got", e.sov);
	snprintf(src, sizeof(src), "%s/roots/sens", e.dir);
	cr_expect_eq(quai_verify(dest, NULL, NULL), 0);
	size_t a_len, b_len;
	char path[800];
	snprintf(path, sizeof(path), "%s/manifest.json", src);
	uint8_t *a = tu_read(path, &a_len);
	snprintf(path, sizeof(path), "%s/manifest.json", dest);
	uint8_t *b = tu_read(path, &b_len);
	cr_expect(a_len == b_len && memcmp(a, b, a_len) == 0);
	free(a);
	free(b);
	cr_expect_eq(entries(e.sov), 1, "the copy, and no partial left");

	/* quaid wrote its decision down before serving it. */
	size_t len;
	char *log = (char *)tu_read(e.audit, &len);
	cr_expect(strstr(log, "\"op\":\"pull\",\"dataset\":\"sens\"") &&
		      strstr(log, "\"result\":\"granted\""),
		  "%s", log);
	free(log);
	sov_env_stop(&e);
}
