/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quai_verify(): checks every byte of a dataset.
 *
 * Coverage, by construction: the manifest is covered by its own checksum;
 * each index by its checksum in the manifest; each shard file by its exact
 * size, by its seek table (compared entry by entry with the index), and by
 * its frames: each frame's compressed bytes against the index's XXH3, then
 * decoded and the raw bytes against the index's XXH64. No byte of a shard
 * lies outside a frame or the seek table, so any flipped byte is found.
 *
 * Frames are checked in parallel: the frames of all shards are cut into
 * groups of contiguous frames (a few MiB) that worker threads read with one
 * pread each and decode. Problems are collected and reported in (shard,
 * frame) order from the calling thread.
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include "beneath.h"
#include "dataset.h"
#include "fsutil.h"
#include "dctx.h"
#include "qthread.h"
#include "secmem.h"
#include "seektable.h"

#define VF_GROUP_BYTES (8u << 20)
/* A sensitive dataset's groups: smaller, as they must be locked in memory. */
#define VF_SENSITIVE_GROUP_BYTES (1u << 20)

struct vf_problem {
	int error;
	int64_t shard, frame;
	uint64_t first_record, record_count;
	char file[QMF_SHARD_NAME_LEN + 16];
	char what[256];
};

struct vf_group {
	uint32_t shard;
	uint32_t first, count; /* frames */
	uint64_t c_offset, c_len;
};

struct verifier {
	struct qmf m;
	int dirfd;
	struct qix *ix;
	uint8_t **ixbuf;
	int *fds;
	uint8_t *shard_ok; /* the index loaded and the file opened */
	uint8_t *hash_bad; /* full check: the whole-file XXH3 differs */
	uint32_t max_r, max_c;

	struct vf_group *groups;
	size_t ngroups, groups_cap;

	pthread_mutex_t mu;
	pthread_cond_t cv_done; /* a worker finished */
	unsigned running;	/* workers still checking */
	size_t next_group;
	struct vf_problem *probs;
	size_t nprobs, probs_cap;
	uint64_t frames_done, frames_bad, bytes_done, raw_done;
	int fatal;
};

static void add_problem(struct verifier *v, int error, int64_t shard, int64_t frame, uint64_t first,
			uint64_t count, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));

static void add_problem(struct verifier *v, int error, int64_t shard, int64_t frame, uint64_t first,
			uint64_t count, const char *file, const char *fmt, ...)
{
	pthread_mutex_lock(&v->mu);
	if (v->nprobs == v->probs_cap) {
		size_t ncap = v->probs_cap ? v->probs_cap * 2 : 16;
		struct vf_problem *n = realloc(v->probs, ncap * sizeof(*n));
		if (!n) {
			v->fatal = -ENOMEM;
			pthread_mutex_unlock(&v->mu);
			return;
		}
		v->probs = n;
		v->probs_cap = ncap;
	}
	struct vf_problem *p = &v->probs[v->nprobs++];
	p->error = error;
	p->shard = shard;
	p->frame = frame;
	p->first_record = first;
	p->record_count = count;
	snprintf(p->file, sizeof(p->file), "%s", file);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->what, sizeof(p->what), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&v->mu);
}

/* File-level checks of shard i: its size and its seek table. Frames are
 * checked later whatever these find, so every bad frame is counted. */
static void check_shard_file(struct verifier *v, uint32_t i)
{
	const struct qmf_shard *s = &v->m.shards[i];
	const struct qix *ix = &v->ix[i];
	struct stat st;

	int fd = qfs_open_member(v->dirfd, s->file, O_RDONLY, 0);
	if (fd < 0) {
		add_problem(v, fd, i, -1, s->first_record, s->records, s->file, "cannot open: %s",
			    qfs_member_strerror(fd));
		return;
	}
	v->fds[i] = fd;
	v->shard_ok[i] = 1;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != s->compressed_bytes) {
		add_problem(v, -QUAI_ECORRUPT, i, -1, s->first_record, s->records, s->file,
			    "file is %" PRIu64 " bytes, the manifest says %" PRIu64
			    " (truncated or extended)",
			    (uint64_t)st.st_size, s->compressed_bytes);
	}
	size_t tlen = qst_encoded_size(ix->nframes);
	uint64_t toff = s->compressed_bytes - tlen;
	uint8_t *tab = malloc(tlen);
	struct qst_entry *e = malloc((size_t)ix->nframes * sizeof(*e));
	if (!tab || !e) {
		v->fatal = -ENOMEM;
		goto out;
	}
	ssize_t n = qfs_pread_full(fd, tab, tlen, toff);
	int checksums = 0;
	int64_t got = n == (ssize_t)tlen ? qst_decode(tab, tlen, e, ix->nframes, &checksums) : -1;
	if (got != (int64_t)ix->nframes || !checksums) {
		add_problem(v, -QUAI_ECORRUPT, i, -1, s->first_record, s->records, s->file,
			    "seek table at byte %" PRIu64 " is missing or damaged", toff);
		goto out;
	}
	for (uint32_t f = 0; f < ix->nframes; f++) {
		const struct qix_frame *fr = &ix->frames[f];
		if (e[f].csize != fr->c_size || e[f].rsize != fr->r_size ||
		    e[f].checksum != (uint32_t)fr->xxh64) {
			add_problem(v, -QUAI_ECORRUPT, i, -1, s->first_record, s->records, s->file,
				    "seek table entry %" PRIu32 " disagrees with the index", f);
			goto out;
		}
		e[f].checksum = (uint32_t)fr->xxh64;
	}
	/* Byte for byte as quai writes it: this also covers the bits the
	 * format leaves unused. */
	uint8_t *want = malloc(tlen);
	if (!want) {
		v->fatal = -ENOMEM;
		goto out;
	}
	qst_encode(e, ix->nframes, want, tlen);
	if (memcmp(want, tab, tlen) != 0)
		add_problem(v, -QUAI_ECORRUPT, i, -1, s->first_record, s->records, s->file,
			    "seek table at byte %" PRIu64 " differs from the one quai writes",
			    toff);
	free(want);
out:
	free(tab);
	free(e);
}

/* The shard file whole against the manifest's XXH3, read in large preads
 * on one thread (hashing runs faster than page-cache reads are served, so
 * one thread keeps up). QUAI_VERIFY_FILES counts its progress here; a full
 * check runs it beside the frame workers (hasher_main), which count. */
static void check_file_hash(struct verifier *v, uint32_t i, bool counts)
{
	const struct qmf_shard *s = &v->m.shards[i];
	enum { CHUNK = 8u << 20, SENSITIVE_CHUNK = 1u << 20 };
	/* A stored frame's bytes are its raw bytes: a sensitive shard is
	 * hashed through a smaller, locked buffer. */
	int sens = v->m.classification == QUAI_CLASS_SENSITIVE, e;
	size_t chunk = sens ? SENSITIVE_CHUNK : CHUNK;
	uint8_t *buf = qsm_alloc(chunk, sens, &e);
	XXH3_state_t *h = XXH3_createState();
	if (!buf || !h || XXH3_64bits_reset(h) == XXH_ERROR) {
		pthread_mutex_lock(&v->mu);
		v->fatal = e == -EAGAIN ? -QUAI_EPOLICY : -ENOMEM;
		pthread_mutex_unlock(&v->mu);
		goto out;
	}
	for (uint64_t off = 0; off < s->compressed_bytes;) {
		size_t want =
		    s->compressed_bytes - off < chunk ? (size_t)(s->compressed_bytes - off) : chunk;
		ssize_t n = qfs_pread_full(v->fds[i], buf, want, off);
		if (n != (ssize_t)want && !counts) {
			v->hash_bad[i] = 1; /* the frames' reads say why */
			goto out;
		}
		if (n != (ssize_t)want) {
			add_problem(v, n < 0 ? (int)n : -QUAI_ECORRUPT, i, -1, s->first_record,
				    s->records, s->file, "cannot read at byte %" PRIu64 ": %s", off,
				    n < 0 ? strerror((int)-n) : "short read");
			goto out;
		}
		XXH3_64bits_update(h, buf, want);
		off += want;
		if (!counts)
			continue;
		pthread_mutex_lock(&v->mu);
		v->bytes_done += want;
		pthread_mutex_unlock(&v->mu);
	}
	if (XXH3_64bits_digest(h) != s->xxh3 && counts)
		add_problem(v, -QUAI_ECORRUPT, i, -1, s->first_record, s->records, s->file,
			    "file checksum differs from the manifest's");
	else if (XXH3_64bits_digest(h) != s->xxh3)
		v->hash_bad[i] = 1; /* said after the frames, if they saw nothing */
	if (counts) {
		pthread_mutex_lock(&v->mu);
		v->frames_done += v->ix[i].nframes;
		pthread_mutex_unlock(&v->mu);
	}
out:
	XXH3_freeState(h);
	qsm_free(buf, chunk, sens);
}

/* A full check hashes every shard file whole too (issue 22 #12: only
 * QUAI_VERIFY_FILES did), on a thread of its own beside the workers. */
static void *hasher_main(void *arg)
{
	struct verifier *v = arg;

	for (uint32_t i = 0; i < v->m.nshards; i++) {
		pthread_mutex_lock(&v->mu);
		int stop = v->fatal;
		pthread_mutex_unlock(&v->mu);
		if (stop)
			break;
		if (v->shard_ok[i])
			check_file_hash(v, i, false);
	}
	return NULL;
}

/* ---- the names of a files dataset --------------------------------------- */

struct name_ref {
	const char *p;
	size_t len;
};

static int cmp_names(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	return c ? c : (alen > blen) - (alen < blen);
}

/* A set of names (open addressing on XXH3), for the directory check. */
struct name_set {
	struct name_ref *slot;
	size_t mask;
};

static bool name_set_has(const struct name_set *s, const char *p, size_t len)
{
	for (size_t i = XXH3_64bits(p, len) & s->mask;; i = (i + 1) & s->mask) {
		if (!s->slot[i].p)
			return false;
		if (s->slot[i].len == len && memcmp(s->slot[i].p, p, len) == 0)
			return true;
	}
}

static void name_set_add(struct name_set *s, const char *p, size_t len)
{
	size_t i = XXH3_64bits(p, len) & s->mask;

	while (s->slot[i].p)
		i = (i + 1) & s->mask;
	s->slot[i] = (struct name_ref){p, len};
}

static void name_problem(struct verifier *v, uint32_t sh, uint64_t rec, const char *fmt,
			 const char *a, size_t alen, const char *b, size_t blen)
{
	const struct qmf_shard *s = &v->m.shards[sh];
	int al = alen > 80 ? 80 : (int)alen, bl = blen > 80 ? 80 : (int)blen;

	add_problem(v, -QUAI_EFORMAT, sh, -1, s->first_record + rec, 1, s->index, fmt, al, a, bl,
		    b);
}

/* Issue 22 #14: names unpack can restore. Record names must rise strictly
 * in byte order over the whole dataset (docs/FORMAT.md: so no two are the
 * same), and no name may be a directory of another ("a" and "a/b"): unpack
 * would fail halfway, or write one over the other. Reports the first fault
 * of each kind. */
static void check_names(struct verifier *v)
{
	const char *prev = NULL;
	size_t prev_len = 0, cap = 16;
	struct name_set set = {0};
	bool order_bad = false, dir_bad = false;

	if (v->m.kind != QUAI_RECORDS_FILES)
		return;
	for (uint32_t sh = 0; sh < v->m.nshards; sh++)
		if (!v->ixbuf[sh])
			return; /* a bad index is reported already */
	while (cap < 2 * v->m.records)
		cap *= 2;
	set.slot = calloc(cap, sizeof(*set.slot));
	set.mask = cap - 1;
	if (!set.slot) {
		pthread_mutex_lock(&v->mu);
		v->fatal = -ENOMEM;
		pthread_mutex_unlock(&v->mu);
		return;
	}
	for (uint32_t sh = 0; sh < v->m.nshards; sh++) {
		for (uint64_t r = 0; r < v->ix[sh].records; r++) {
			size_t len;
			const char *n = qix_name(&v->ix[sh], r, &len);

			if (!n)
				continue;
			if (prev && !order_bad && cmp_names(prev, prev_len, n, len) >= 0) {
				order_bad = true;
				name_problem(v, sh, r,
					     cmp_names(prev, prev_len, n, len) == 0
						 ? "record name '%.*s' repeats '%.*s': unpack "
						   "cannot restore both"
						 : "record name '%.*s' comes after '%.*s': names "
						   "must rise in byte order",
					     n, len, prev, prev_len);
			}
			prev = n;
			prev_len = len;
			name_set_add(&set, n, len);
		}
	}
	for (uint32_t sh = 0; sh < v->m.nshards && !dir_bad; sh++) {
		for (uint64_t r = 0; r < v->ix[sh].records && !dir_bad; r++) {
			size_t len;
			const char *n = qix_name(&v->ix[sh], r, &len);

			for (size_t k = 1; n && k < len && !dir_bad; k++) {
				if (n[k] != '/' || !name_set_has(&set, n, k))
					continue;
				dir_bad = true;
				name_problem(v, sh, r,
					     "record name '%.*s' makes a directory of record "
					     "'%.*s': unpack cannot restore both",
					     n, len, n, k);
			}
		}
	}
	free(set.slot);
}

static size_t group_bytes(const struct verifier *v)
{
	return v->m.classification == QUAI_CLASS_SENSITIVE ? VF_SENSITIVE_GROUP_BYTES
							   : VF_GROUP_BYTES;
}

static void make_groups(struct verifier *v, uint32_t i)
{
	const struct qix *ix = &v->ix[i];
	uint32_t f = 0;
	while (f < ix->nframes) {
		struct vf_group g = {.shard = i, .first = f, .c_offset = ix->frames[f].c_offset};
		while (f < ix->nframes &&
		       (g.count == 0 || g.c_len + ix->frames[f].c_size <= group_bytes(v))) {
			g.c_len += ix->frames[f].c_size;
			g.count++;
			f++;
		}
		if (v->ngroups == v->groups_cap) {
			size_t ncap = v->groups_cap ? v->groups_cap * 2 : 64;
			struct vf_group *n = realloc(v->groups, ncap * sizeof(*n));
			if (!n) {
				v->fatal = -ENOMEM;
				return;
			}
			v->groups = n;
			v->groups_cap = ncap;
		}
		v->groups[v->ngroups++] = g;
	}
}

/* Blocks of a stored frame checked in place: 8 MiB of full blocks. */
#define VF_STORED_BLOCKS 64

static void check_group(struct verifier *v, const struct vf_group *g, ZSTD_DCtx *dctx,
			uint8_t *cbuf, uint8_t *rbuf)
{
	const struct qix *ix = &v->ix[g->shard];
	const struct qmf_shard *s = &v->m.shards[g->shard];
	ssize_t n = qfs_pread_full(v->fds[g->shard], cbuf, g->c_len, g->c_offset);
	uint64_t bad = 0, raw = 0;
	for (uint32_t k = 0; k < g->count; k++) {
		const struct qix_frame *f = &ix->frames[g->first + k];
		uint64_t rel = f->c_offset - g->c_offset;
		uint64_t first = ix->first_record + f->first_record;
		if (n < 0) {
			add_problem(v, (int)n, g->shard, g->first + k, first, f->records, s->file,
				    "read failed: %s", strerror((int)-n));
			bad++;
			continue;
		}
		if (rel + f->c_size > (uint64_t)n) {
			add_problem(
			    v, -QUAI_ECORRUPT, g->shard, g->first + k, first, f->records, s->file,
			    "frame at byte %" PRIu64 " lies past the end of the file", f->c_offset);
			bad++;
			continue;
		}
		/* A frame stored raw is checked where it lies, not copied. */
		struct qds_seg segs[VF_STORED_BLOCKS];
		uint32_t nsegs;
		int r = qds_decode_frame_map(dctx, f, cbuf + rel, rbuf, segs, VF_STORED_BLOCKS,
					     QDS_MAP_CHECK_RAW, &nsegs);
		if (r < 0) {
			add_problem(v, r, g->shard, g->first + k, first, f->records, s->file,
				    "frame at byte %" PRIu64
				    " fails its checksum or does not decode",
				    f->c_offset);
			bad++;
			continue;
		}
		raw += f->r_size;
	}
	pthread_mutex_lock(&v->mu);
	v->frames_done += g->count;
	v->frames_bad += bad;
	v->bytes_done += g->c_len;
	v->raw_done += raw;
	pthread_mutex_unlock(&v->mu);
}

static void *worker_main(void *arg)
{
	struct verifier *v = arg;
	size_t clen = v->max_c > group_bytes(v) ? v->max_c : group_bytes(v);
	/* A sensitive dataset's bytes only in locked memory (secmem.h), the
	 * decompression context's included. */
	int sens = v->m.classification == QUAI_CLASS_SENSITIVE, e0, e1 = 0, e2 = 0;
	ZSTD_DCtx *dctx = qdc_new(sens, &e0);
	uint8_t *cbuf = dctx ? qsm_alloc(clen + 1, sens, &e1) : NULL;
	uint8_t *rbuf = cbuf ? qsm_alloc((size_t)v->max_r + 1, sens, &e2) : NULL;
	if (!dctx || !cbuf || !rbuf) {
		int e = e0 ? e0 : e1 ? e1 : e2;
		pthread_mutex_lock(&v->mu);
		v->fatal = e == -EAGAIN ? -QUAI_EPOLICY : -ENOMEM;
		pthread_mutex_unlock(&v->mu);
	}
	for (;;) {
		pthread_mutex_lock(&v->mu);
		size_t gi = v->next_group++;
		int stop = v->fatal || gi >= v->ngroups;
		pthread_mutex_unlock(&v->mu);
		if (stop)
			break;
		check_group(v, &v->groups[gi], dctx, cbuf, rbuf);
	}
	qdc_free(dctx, sens);
	qsm_free(cbuf, clen + 1, sens);
	qsm_free(rbuf, (size_t)v->max_r + 1, sens);
	pthread_mutex_lock(&v->mu);
	v->running--;
	pthread_cond_signal(&v->cv_done);
	pthread_mutex_unlock(&v->mu);
	return NULL;
}

static int cmp_probs(const void *a, const void *b)
{
	const struct vf_problem *x = a, *y = b;
	if (x->shard != y->shard)
		return x->shard < y->shard ? -1 : 1;
	if (x->frame != y->frame)
		return x->frame < y->frame ? -1 : 1;
	return 0;
}

static unsigned thread_count(const struct quai_verify_opts *o)
{
	unsigned n = o ? o->threads : 0;
	if (!n) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		n = c > 0 ? (unsigned)c : 1;
	}
	return n > 256 ? 256 : n;
}

static void run_workers(struct verifier *v, const struct quai_verify_opts *o)
{
	unsigned n = thread_count(o);
	if (n > v->ngroups)
		n = v->ngroups ? (unsigned)v->ngroups : 1;
	pthread_t *th = calloc(n, sizeof(*th));
	unsigned started = 0;
	pthread_mutex_lock(&v->mu);
	for (unsigned i = 0; th && i < n; i++)
		if (qthread_create(&th[i], worker_main, v) == 0)
			started++;
	v->running = started;
	pthread_mutex_unlock(&v->mu);
	if (!started) {
		v->running = 1;
		worker_main(v); /* no thread could start: check on this one */
	} else if (o && o->progress) {
		uint64_t total = v->m.compressed_bytes;
		for (;;) {
			/* Every 100 ms, or as soon as the last worker ends. */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100 * 1000 * 1000;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_mutex_lock(&v->mu);
			if (v->running)
				pthread_cond_timedwait(&v->cv_done, &v->mu, &ts);
			struct quai_verify_progress p = {v->bytes_done, total, v->frames_done,
							 v->frames_bad};
			int done = v->running == 0;
			pthread_mutex_unlock(&v->mu);
			if (o->progress(&p, o->progress_arg) != 0) {
				pthread_mutex_lock(&v->mu);
				v->fatal = -ECANCELED;
				pthread_mutex_unlock(&v->mu);
			}
			if (done)
				break;
		}
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	free(th);
}

int quai_verify(const char *path, const struct quai_verify_opts *opts,
		struct quai_verify_result *ret_result)
{
	struct verifier v = {.dirfd = -1};
	uint8_t *text = NULL;
	size_t len;
	char msg[256] = "";
	int r;

	if (!path)
		return -EINVAL;
	if (opts && (opts->size < sizeof(size_t) || opts->size > sizeof(*opts)))
		return -EINVAL;
	pthread_mutex_init(&v.mu, NULL);
	pthread_cond_init(&v.cv_done, NULL);
	v.dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (v.dirfd < 0) {
		r = -errno;
		goto out;
	}
	r = qfs_read_file(v.dirfd, "manifest.json", QMF_MAX_BYTES, &text, &len);
	if (r == 0) {
		r = qmf_parse((const char *)text, len, &v.m, msg, sizeof(msg));
		free(text);
	} else {
		snprintf(msg, sizeof(msg), "cannot read: %s", quai_strerror(r));
	}
	if (r < 0) {
		if (r == -EFBIG)
			r = -QUAI_EFORMAT;
		add_problem(&v, r, -1, -1, 0, 0, "manifest.json", "%s", msg);
		goto report;
	}
	/* Older callers' structs end before flags. */
	int files_only =
	    opts && opts->size >= offsetof(struct quai_verify_opts, flags) + sizeof(opts->flags) &&
	    (opts->flags & QUAI_VERIFY_FILES);
	uint32_t ns = v.m.nshards;
	v.ix = calloc(ns, sizeof(*v.ix));
	v.ixbuf = calloc(ns, sizeof(*v.ixbuf));
	v.fds = malloc(ns * sizeof(*v.fds));
	v.shard_ok = calloc(ns, 1);
	v.hash_bad = calloc(ns, 1);
	if (!v.ix || !v.ixbuf || !v.fds || !v.shard_ok || !v.hash_bad) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < ns; i++)
		v.fds[i] = -1;
	for (uint32_t i = 0; i < ns && !v.fatal; i++) {
		const struct qmf_shard *s = &v.m.shards[i];
		r = qds_load_index(v.dirfd, &v.m, i, &v.ixbuf[i], &v.ix[i], msg, sizeof(msg));
		if (r < 0) {
			const char *colon = strstr(msg, ": ");
			add_problem(&v, r, i, -1, s->first_record, s->records, s->index, "%s",
				    colon ? colon + 2 : msg);
			continue;
		}
		for (uint32_t f = 0; f < v.ix[i].nframes; f++) {
			if (v.ix[i].frames[f].r_size > v.max_r)
				v.max_r = v.ix[i].frames[f].r_size;
			if (v.ix[i].frames[f].c_size > v.max_c)
				v.max_c = v.ix[i].frames[f].c_size;
		}
		check_shard_file(&v, i);
		if (v.shard_ok[i] && files_only)
			check_file_hash(&v, i, true);
		else if (v.shard_ok[i])
			make_groups(&v, i);
	}
	check_names(&v);
	r = 0;
	if (v.fatal) {
		r = v.fatal;
		goto out;
	}
	pthread_t hasher;
	bool hashing = !files_only && qthread_create(&hasher, hasher_main, &v) == 0;
	run_workers(&v, opts);
	if (hashing)
		pthread_join(hasher, NULL);
	else if (!files_only)
		hasher_main(&v);
	/* A shard whose frames all passed but whose bytes are not the ones
	 * the manifest names (a header bit, padding): a file problem. Where a
	 * frame failed, that frame is the better report. */
	for (uint32_t i = 0; i < ns && !files_only; i++) {
		bool seen = false;

		for (size_t k = 0; k < v.nprobs && !seen; k++)
			seen = v.probs[k].shard == (int64_t)i;
		if (v.hash_bad[i] && !seen)
			add_problem(&v, -QUAI_ECORRUPT, i, -1, v.m.shards[i].first_record,
				    v.m.shards[i].records, v.m.shards[i].file,
				    "file checksum differs from the manifest's");
	}
	if (v.fatal) {
		r = v.fatal;
		goto out;
	}
report:
	if (v.nprobs)
		qsort(v.probs, v.nprobs, sizeof(*v.probs), cmp_probs);
	uint64_t bad_files = 0;
	for (size_t i = 0; i < v.nprobs; i++) {
		const struct vf_problem *p = &v.probs[i];
		if (p->frame < 0)
			bad_files++;
		if (opts && opts->problem) {
			struct quai_verify_problem q = {
			    .error = p->error,
			    .file = p->file,
			    .shard = p->shard,
			    .frame = p->frame,
			    .first_record = p->first_record,
			    .record_count = p->record_count,
			    .what = p->what,
			};
			opts->problem(&q, opts->problem_arg);
		}
	}
	if (ret_result)
		*ret_result = (struct quai_verify_result){
		    .frames = v.frames_done,
		    .bad_frames = v.frames_bad,
		    .bad_files = bad_files,
		    .raw_bytes = v.raw_done,
		    .compressed_bytes = v.bytes_done,
		};
	if (r == 0 && v.nprobs) {
		r = -QUAI_ECORRUPT;
		for (size_t i = 0; i < v.nprobs; i++)
			if (v.probs[i].error == -QUAI_EFORMAT || v.probs[i].error == -QUAI_EVERSION)
				r = v.probs[i].error;
	}
out:
	for (uint32_t i = 0; v.ix && i < v.m.nshards; i++) {
		qix_release(&v.ix[i]);
		free(v.ixbuf[i]);
		if (v.fds && v.fds[i] >= 0)
			close(v.fds[i]);
	}
	free(v.ix);
	free(v.ixbuf);
	free(v.fds);
	free(v.shard_ok);
	free(v.hash_bad);
	free(v.groups);
	free(v.probs);
	qmf_release(&v.m);
	if (v.dirfd >= 0)
		close(v.dirfd);
	pthread_mutex_destroy(&v.mu);
	pthread_cond_destroy(&v.cv_done);
	return r;
}
