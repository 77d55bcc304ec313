/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quai_pack(): the dataset writer.
 *
 * One thread (the caller's) reads the sources in order and cuts records
 * into frames; `threads` workers compress frames; the caller's thread also
 * writes finished frames in order into shards. Frames travel in a ring of
 * jobs, so memory is bounded by the ring (2 x threads + 2 jobs of about
 * twice the frame size) whatever the input size.
 *
 * Frame cutting is greedy and content-defined, so the output does not
 * depend on the thread count or on how reads happen to return: a record
 * joins the current frame while the frame's raw size plus the record's
 * stays within frame_size; an empty frame takes any record (a record larger
 * than frame_size gets a frame of its own). A shard is closed once its
 * frames reach shard_size compressed bytes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include "fsutil.h"
#include "qthread.h"
#include "dataset.h"
#include "manifest.h"
#include "quai/quai.h"
#include "quai_config.h"
#include "seektable.h"
#include "shardindex.h"

#define PK_CHUNK (256u << 10)
#define PK_MAX_THREADS 256u

enum { JOB_FREE, JOB_FILLING, JOB_READY, JOB_BUSY, JOB_DONE };

struct pk_job {
	uint64_t seq;
	int state;
	int err;
	uint8_t *raw;
	size_t raw_len, raw_cap;
	uint8_t *out;
	size_t out_len, out_cap;
	uint32_t nrec;
	uint32_t *ends; /* record end offsets, when records vary */
	size_t ends_cap;
	char *names; /* files: the records' names, back to back */
	size_t names_len, names_cap;
	uint32_t *name_ends;
	size_t name_ends_cap;
	uint64_t xxh64;
	uint64_t c_xxh3;
};

/* One input record name for files datasets. */
struct pk_file {
	uint32_t src;
	int in_dir; /* rel is relative to the source directory */
	char *rel;
	uint64_t size;
};

struct packer {
	const struct quai_pack_opts *o;
	int kind;
	uint32_t fixed_size;
	int level;
	uint32_t frame_size;
	uint64_t shard_size;
	unsigned nthreads;
	int want_ends, want_names;
	char *err;
	size_t err_len;

	/* sources */
	const char *const *srcs;
	size_t nsrcs;
	struct pk_file *files;
	size_t nfiles;
	uint64_t bytes_total;

	/* the ring */
	pthread_mutex_t mu;
	pthread_cond_t cv_work, cv_done;
	struct pk_job *jobs;
	unsigned njobs;
	uint64_t next_acquire, next_take, next_write;
	int stop;
	pthread_t *threads;
	unsigned started;

	/* the producer's current job */
	struct pk_job *cur;
	size_t rec_start;

	/* the writer */
	char tmpdir[PATH_MAX];
	int tmpfd;
	int shard_fd;
	uint32_t shard_no;
	uint64_t shard_cbytes, shard_records, shard_first;
	XXH3_state_t *hash;
	struct qst_entry *seek;
	size_t seek_n, seek_cap;
	struct qix_builder ixb;
	struct qmf m;
	uint32_t shards_cap;

	/* progress */
	struct quai_pack_progress prog;
	struct timespec last_prog;
};

/* ---- workers ---------------------------------------------------------- */

static int compress_job(ZSTD_CCtx *cctx, struct pk_job *j)
{
	size_t bound = ZSTD_compressBound(j->raw_len);
	if (j->out_cap < bound) {
		free(j->out);
		j->out = malloc(bound);
		j->out_cap = j->out ? bound : 0;
		if (!j->out)
			return -ENOMEM;
	}
	size_t n = ZSTD_compress2(cctx, j->out, j->out_cap, j->raw, j->raw_len);
	if (ZSTD_isError(n))
		return -QUAI_ECOMPRESS;
	j->out_len = n;
	j->xxh64 = XXH64(j->raw, j->raw_len, 0);
	j->c_xxh3 = XXH3_64bits(j->out, n);
	return 0;
}

static void *worker_main(void *arg)
{
	struct packer *pk = arg;
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	int setup = cctx ? 0 : -ENOMEM;
	if (cctx &&
	    (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, pk->level)) ||
	     ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0)) ||
	     ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1))))
		setup = -QUAI_ECOMPRESS;

	pthread_mutex_lock(&pk->mu);
	for (;;) {
		struct pk_job *j = NULL;
		while (!pk->stop) {
			if (pk->next_take < pk->next_acquire) {
				j = &pk->jobs[pk->next_take % pk->njobs];
				if (j->state == JOB_READY)
					break;
			}
			j = NULL;
			pthread_cond_wait(&pk->cv_work, &pk->mu);
		}
		if (!j)
			break;
		pk->next_take++;
		j->state = JOB_BUSY;
		pthread_mutex_unlock(&pk->mu);
		int r = setup ? setup : compress_job(cctx, j);
		pthread_mutex_lock(&pk->mu);
		j->err = r;
		j->state = JOB_DONE;
		pthread_cond_broadcast(&pk->cv_done);
		/* Another job may have become READY while this one ran. */
		pthread_cond_signal(&pk->cv_work);
	}
	pthread_mutex_unlock(&pk->mu);
	ZSTD_freeCCtx(cctx);
	return NULL;
}

/* ---- the writer ------------------------------------------------------- */

static int fail_errno(struct packer *pk, int r, const char *path)
{
	qfs_err(pk->err, pk->err_len, path, "%s", quai_strerror(r));
	return r;
}

static int open_shard(struct packer *pk)
{
	char name[QMF_SHARD_NAME_LEN];
	snprintf(name, sizeof(name), "shard-%05" PRIu32 ".zst", pk->shard_no);
	pk->shard_fd = openat(pk->tmpfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (pk->shard_fd < 0)
		return fail_errno(pk, -errno, pk->tmpdir);
	XXH3_64bits_reset(pk->hash);
	pk->seek_n = 0;
	pk->shard_cbytes = 0;
	pk->shard_records = 0;
	pk->shard_first = pk->m.records;
	qix_builder_reset(&pk->ixb);
	return 0;
}

static int write_shard_bytes(struct packer *pk, const void *buf, size_t len)
{
	int r = qfs_write_all(pk->shard_fd, buf, len);
	if (r < 0)
		return fail_errno(pk, r, pk->tmpdir);
	XXH3_64bits_update(pk->hash, buf, len);
	return 0;
}

static int close_shard(struct packer *pk)
{
	struct qmf_shard s = {0};
	uint8_t *tab = NULL, *ix = NULL;
	size_t ixlen;
	int r;

	size_t tlen = qst_encoded_size((uint32_t)pk->seek_n);
	tab = malloc(tlen);
	if (!tab)
		return -ENOMEM;
	qst_encode(pk->seek, (uint32_t)pk->seek_n, tab, tlen);
	r = write_shard_bytes(pk, tab, tlen);
	free(tab);
	if (r < 0)
		return r;
	if (fsync(pk->shard_fd) < 0)
		return fail_errno(pk, -errno, pk->tmpdir);
	r = close(pk->shard_fd) < 0 ? -errno : 0;
	pk->shard_fd = -1;
	if (r < 0)
		return fail_errno(pk, r, pk->tmpdir);

	qmf_shard_names(&s, pk->shard_no);
	s.first_record = pk->shard_first;
	s.records = pk->shard_records;
	s.frames = (uint32_t)pk->seek_n;
	s.raw_bytes = pk->ixb.raw_bytes;
	s.compressed_bytes = pk->shard_cbytes + tlen;
	s.xxh3 = XXH3_64bits_digest(pk->hash);

	uint32_t flags =
	    (pk->want_ends ? QIX_F_RECORD_TABLE : 0) | (pk->want_names ? QIX_F_NAMES : 0);
	r = qix_builder_finish(&pk->ixb, flags, pk->kind == QUAI_RECORDS_FIXED ? pk->fixed_size : 0,
			       s.first_record, s.compressed_bytes, &ix, &ixlen);
	if (r < 0)
		return r;
	s.index_bytes = ixlen;
	s.index_xxh3 = XXH3_64bits(ix, ixlen);
	r = qfs_write_file(pk->tmpfd, s.index, ix, ixlen);
	free(ix);
	if (r < 0)
		return fail_errno(pk, r, pk->tmpdir);

	if (pk->m.nshards == pk->shards_cap) {
		uint32_t ncap = pk->shards_cap ? pk->shards_cap * 2 : 16;
		struct qmf_shard *n = realloc(pk->m.shards, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		pk->m.shards = n;
		pk->shards_cap = ncap;
	}
	pk->m.shards[pk->m.nshards++] = s;
	pk->m.compressed_bytes += s.compressed_bytes;
	pk->prog.shards = pk->m.nshards;
	pk->shard_no++;
	return 0;
}

static int write_job(struct packer *pk, struct pk_job *j)
{
	int r;
	/* Shards count their records in 32 bits. */
	if (pk->shard_fd >= 0 && pk->shard_records + j->nrec > UINT32_MAX) {
		r = close_shard(pk);
		if (r < 0)
			return r;
	}
	if (pk->shard_fd < 0) {
		if (pk->m.nshards >= QMF_MAX_SHARDS) {
			qfs_err(pk->err, pk->err_len, pk->tmpdir,
				"more than %u shards: raise --shard-size", QMF_MAX_SHARDS);
			return -QUAI_EINPUT;
		}
		r = open_shard(pk);
		if (r < 0)
			return r;
	}
	r = write_shard_bytes(pk, j->out, j->out_len);
	if (r < 0)
		return r;
	if (pk->seek_n == pk->seek_cap) {
		size_t ncap = pk->seek_cap ? pk->seek_cap * 2 : 256;
		struct qst_entry *n = realloc(pk->seek, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		pk->seek = n;
		pk->seek_cap = ncap;
	}
	pk->seek[pk->seek_n++] = (struct qst_entry){
	    .csize = (uint32_t)j->out_len,
	    .rsize = (uint32_t)j->raw_len,
	    .checksum = (uint32_t)j->xxh64,
	};
	for (uint32_t i = 0; pk->want_ends && i < j->nrec; i++) {
		const char *name = NULL;
		size_t nlen = 0;
		if (pk->want_names) {
			uint32_t s = i ? j->name_ends[i - 1] : 0;
			name = j->names + s;
			nlen = j->name_ends[i] - s;
		}
		qix_builder_record(&pk->ixb, j->ends[i], name, nlen);
	}
	qix_builder_frame(&pk->ixb, (uint32_t)j->out_len, (uint32_t)j->raw_len, j->nrec, j->c_xxh3,
			  j->xxh64);
	if (pk->ixb.err)
		return pk->ixb.err;

	pk->shard_cbytes += j->out_len;
	pk->shard_records += j->nrec;
	pk->m.records += j->nrec;
	pk->m.raw_bytes += j->raw_len;
	pk->m.frames++;
	pk->prog.bytes_out += j->out_len;
	pk->prog.records = pk->m.records;
	if (pk->shard_cbytes >= pk->shard_size || pk->seek_n >= QST_MAX_FRAMES)
		return close_shard(pk);
	return 0;
}

/* Writes the oldest job once its compression is done. */
static int write_next(struct packer *pk)
{
	struct pk_job *j = &pk->jobs[pk->next_write % pk->njobs];
	pthread_mutex_lock(&pk->mu);
	while (j->state != JOB_DONE)
		pthread_cond_wait(&pk->cv_done, &pk->mu);
	pthread_mutex_unlock(&pk->mu);
	int r = j->err;
	if (r == -QUAI_ECOMPRESS)
		qfs_err(pk->err, pk->err_len, pk->tmpdir, "zstd failed at level %d", pk->level);
	if (r == 0)
		r = write_job(pk, j);
	pthread_mutex_lock(&pk->mu);
	j->state = JOB_FREE;
	pthread_mutex_unlock(&pk->mu);
	pk->next_write++;
	return r;
}

/* ---- the producer ----------------------------------------------------- */

static int acquire_job(struct packer *pk, struct pk_job **ret)
{
	uint64_t seq = pk->next_acquire;
	/* The slot is reused once the job njobs earlier is written. */
	while (seq >= pk->njobs && pk->next_write <= seq - pk->njobs) {
		int r = write_next(pk);
		if (r < 0)
			return r;
	}
	struct pk_job *j = &pk->jobs[seq % pk->njobs];
	size_t base = (size_t)pk->frame_size + 2 * PK_CHUNK;
	if (j->raw_cap > 2 * base) {
		/* Give back what a huge record took. */
		free(j->raw);
		j->raw = NULL;
		j->raw_cap = 0;
	}
	if (!j->raw) {
		j->raw = malloc(base);
		if (!j->raw)
			return -ENOMEM;
		j->raw_cap = base;
	}
	j->seq = seq;
	j->raw_len = 0;
	j->nrec = 0;
	j->names_len = 0;
	j->err = 0;
	pthread_mutex_lock(&pk->mu);
	j->state = JOB_FILLING;
	pk->next_acquire++;
	pthread_mutex_unlock(&pk->mu);
	*ret = j;
	return 0;
}

static void submit_job(struct packer *pk, struct pk_job *j)
{
	pthread_mutex_lock(&pk->mu);
	j->state = JOB_READY;
	pthread_cond_signal(&pk->cv_work);
	pthread_mutex_unlock(&pk->mu);
}

static int grow(void **buf, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap : 64;
	while (ncap < need)
		ncap *= 2;
	void *n = realloc(*buf, ncap * elem);
	if (!n)
		return -ENOMEM;
	*buf = n;
	*cap = ncap;
	return 0;
}

/* Moves the record being read into a new frame and submits the old one. */
static int split_frame(struct packer *pk)
{
	struct pk_job *old = pk->cur, *j;
	int r = acquire_job(pk, &j);
	if (r < 0)
		return r;
	size_t part = old->raw_len - pk->rec_start;
	r = grow((void **)&j->raw, &j->raw_cap, part + PK_CHUNK, 1);
	if (r < 0)
		return r;
	memcpy(j->raw, old->raw + pk->rec_start, part);
	j->raw_len = part;
	old->raw_len = pk->rec_start;
	submit_job(pk, old);
	pk->cur = j;
	pk->rec_start = 0;
	return 0;
}

/* Room for n more bytes of the current record. */
static int rec_space(struct packer *pk, size_t n, uint8_t **ret)
{
	struct pk_job *j = pk->cur;
	int r = grow((void **)&j->raw, &j->raw_cap, j->raw_len + n, 1);
	if (r < 0)
		return r;
	*ret = j->raw + j->raw_len;
	return 0;
}

static int rec_advance(struct packer *pk, size_t n, const char *what)
{
	struct pk_job *j = pk->cur;
	j->raw_len += n;
	pk->prog.bytes_in += n;
	if (j->raw_len - pk->rec_start > QUAI_RECORD_SIZE_MAX) {
		qfs_err(pk->err, pk->err_len, what, "a record is larger than %u bytes",
			QUAI_RECORD_SIZE_MAX);
		return -QUAI_EINPUT;
	}
	if (j->nrec > 0 && j->raw_len > pk->frame_size)
		return split_frame(pk);
	return 0;
}

static int rec_end(struct packer *pk, const char *name, size_t nlen)
{
	struct pk_job *j = pk->cur;
	int r;
	if (j->nrec > 0 && j->raw_len > pk->frame_size) {
		r = split_frame(pk);
		if (r < 0)
			return r;
		j = pk->cur;
	}
	if (j->nrec == UINT32_MAX - 1) {
		/* Keep counts in 32 bits: close the frame at the next record. */
		r = split_frame(pk);
		if (r < 0)
			return r;
		j = pk->cur;
	}
	if (pk->want_ends) {
		r = grow((void **)&j->ends, &j->ends_cap, j->nrec + 1, sizeof(uint32_t));
		if (r < 0)
			return r;
		j->ends[j->nrec] = (uint32_t)j->raw_len;
	}
	if (pk->want_names) {
		r = grow((void **)&j->names, &j->names_cap, j->names_len + nlen, 1);
		if (r == 0)
			r = grow((void **)&j->name_ends, &j->name_ends_cap, j->nrec + 1,
				 sizeof(uint32_t));
		if (r < 0)
			return r;
		memcpy(j->names + j->names_len, name, nlen);
		j->names_len += nlen;
		j->name_ends[j->nrec] = (uint32_t)j->names_len;
	}
	j->nrec++;
	pk->rec_start = j->raw_len;
	return 0;
}

static int progress(struct packer *pk, int force)
{
	if (!pk->o->progress)
		return 0;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	int64_t ms = (now.tv_sec - pk->last_prog.tv_sec) * 1000 +
		     (now.tv_nsec - pk->last_prog.tv_nsec) / 1000000;
	if (!force && ms < 100)
		return 0;
	pk->last_prog = now;
	if (pk->o->progress(&pk->prog, pk->o->progress_arg) != 0) {
		qfs_err(pk->err, pk->err_len, pk->tmpdir, "cancelled");
		return -ECANCELED;
	}
	return 0;
}

/* Opens a source. A files record's source must still be the regular
 * file the scan found (O_NONBLOCK: one replaced by a FIFO does not block);
 * a lines or fixed source may be a FIFO or a pipe, whose open() blocks
 * until a writer comes: a signal ends it (EINTR, not retried), and the
 * caller's progress callback decides whether that cancels. */
static int open_source(struct packer *pk, const char *src, int *ret_fd)
{
	bool files = pk->kind == QUAI_RECORDS_FILES;
	struct stat st;
	int fd;

	if (strcmp(src, "-") == 0) {
		*ret_fd = STDIN_FILENO;
		return 0;
	}
	for (;;) {
		fd = open(src, O_RDONLY | O_CLOEXEC | (files ? O_NONBLOCK : 0));
		if (fd >= 0 || errno != EINTR)
			break;
		if (progress(pk, 1) < 0)
			return -ECANCELED;
	}
	if (fd < 0)
		return fail_errno(pk, -errno, src);
	if (files && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
		      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)) {
		close(fd);
		qfs_err(pk->err, pk->err_len, src, "is no longer a regular file");
		return -QUAI_EINPUT;
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	*ret_fd = fd;
	return 0;
}

/* qfs_read_full() that lets a signal cancel: on EINTR the progress
 * callback is asked (a pipe that never writes would block forever). */
static ssize_t read_source(struct packer *pk, int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = read(fd, p + done, len - done);

		if (n < 0 && errno == EINTR) {
			if (progress(pk, 1) < 0)
				return -ECANCELED;
			continue;
		}
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static void close_source(int fd)
{
	if (fd >= 0 && fd != STDIN_FILENO)
		close(fd);
}

static int produce_lines(struct packer *pk)
{
	uint8_t *buf = malloc(PK_CHUNK);
	int r = buf ? 0 : -ENOMEM;
	for (size_t s = 0; r == 0 && s < pk->nsrcs; s++) {
		int fd = -1;
		r = open_source(pk, pk->srcs[s], &fd);
		while (r == 0) {
			ssize_t n = read_source(pk, fd, buf, PK_CHUNK);
			if (n < 0) {
				r = fail_errno(pk, (int)n, pk->srcs[s]);
				break;
			}
			if (n == 0)
				break;
			const uint8_t *p = buf, *end = buf + n;
			while (r == 0 && p < end) {
				const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
				size_t len = (size_t)((nl ? nl + 1 : end) - p);
				uint8_t *dst;
				r = rec_space(pk, len, &dst);
				if (r < 0)
					break;
				memcpy(dst, p, len);
				r = rec_advance(pk, len, pk->srcs[s]);
				if (r == 0 && nl)
					r = rec_end(pk, NULL, 0);
				p += len;
			}
			if (r == 0)
				r = progress(pk, 0);
		}
		/* A last line without '\n' is a record too. */
		if (r == 0 && pk->cur->raw_len > pk->rec_start)
			r = rec_end(pk, NULL, 0);
		close_source(fd);
	}
	free(buf);
	return r;
}

static int produce_fixed(struct packer *pk)
{
	uint32_t n = pk->fixed_size;
	uint64_t per = pk->frame_size / n ? pk->frame_size / n : 1;
	size_t want = (size_t)(per * n);
	int r = 0;
	for (size_t s = 0; r == 0 && s < pk->nsrcs; s++) {
		int fd = -1;
		r = open_source(pk, pk->srcs[s], &fd);
		if (r < 0)
			break;
		uint64_t got_total = 0;
		for (;;) {
			struct pk_job *j = pk->cur;
			uint8_t *dst;
			if (j->raw_len == want) {
				struct pk_job *nj;
				r = acquire_job(pk, &nj);
				if (r < 0)
					break;
				submit_job(pk, j);
				pk->cur = j = nj;
			}
			r = rec_space(pk, want - j->raw_len, &dst);
			if (r < 0)
				break;
			ssize_t got = read_source(pk, fd, dst, want - j->raw_len);
			if (got < 0) {
				r = fail_errno(pk, (int)got, pk->srcs[s]);
				break;
			}
			got_total += (uint64_t)got;
			size_t whole = (size_t)got / n * n;
			j->raw_len += whole;
			j->nrec += (uint32_t)(whole / n);
			pk->prog.bytes_in += whole;
			if ((size_t)got < want - (j->raw_len - whole)) {
				/* End of this source. */
				if ((size_t)got != whole) {
					qfs_err(pk->err, pk->err_len, pk->srcs[s],
						"%" PRIu64 " bytes is not a multiple of the record "
						"size %" PRIu32,
						got_total, n);
					r = -QUAI_EINPUT;
				}
				break;
			}
			r = progress(pk, 0);
			if (r < 0)
				break;
		}
		close_source(fd);
	}
	return r;
}

static void file_path(const struct packer *pk, const struct pk_file *f, char *path, size_t len)
{
	const char *src = pk->srcs[f->src];
	if (f->in_dir)
		snprintf(path, len, "%s/%s", src, f->rel);
	else
		snprintf(path, len, "%s", src);
}

/* Asks the kernel to start reading the next files while this one is
 * packed: a folder of small files read one by one from cold storage is
 * otherwise bound by the latency of each read. */
#define PK_FILE_READAHEAD 32

static void readahead_files(struct packer *pk, size_t upto, size_t *next)
{
	char path[PATH_MAX];
	for (; *next < upto && *next < pk->nfiles; (*next)++) {
		file_path(pk, &pk->files[*next], path, sizeof(path));
		/* O_NONBLOCK: a file that became a FIFO never blocks here. */
		int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOATIME | O_NONBLOCK);
		if (fd < 0)
			fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			continue; /* the real open reports it */
		posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
		close(fd);
	}
}

static int produce_files(struct packer *pk)
{
	int r = 0;
	char path[PATH_MAX];
	size_t ahead = 0;
	for (size_t i = 0; r == 0 && i < pk->nfiles; i++) {
		const struct pk_file *f = &pk->files[i];
		readahead_files(pk, i + PK_FILE_READAHEAD, &ahead);
		file_path(pk, f, path, sizeof(path));
		int fd = -1;
		r = open_source(pk, path, &fd);
		while (r == 0) {
			uint8_t *dst;
			r = rec_space(pk, PK_CHUNK, &dst);
			if (r < 0)
				break;
			ssize_t got = read_source(pk, fd, dst, PK_CHUNK);
			if (got < 0) {
				r = fail_errno(pk, (int)got, path);
				break;
			}
			if (got == 0)
				break;
			r = rec_advance(pk, (size_t)got, path);
		}
		close_source(fd);
		if (r == 0)
			r = rec_end(pk, f->rel, strlen(f->rel));
		if (r == 0)
			r = progress(pk, 0);
	}
	return r;
}

/* ---- sources ---------------------------------------------------------- */

static int add_file(struct packer *pk, size_t *cap, uint32_t src, int in_dir, const char *rel,
		    uint64_t size)
{
	int r = grow((void **)&pk->files, cap, pk->nfiles + 1, sizeof(*pk->files));
	if (r < 0)
		return r;
	char *dup = strdup(rel);
	if (!dup)
		return -ENOMEM;
	pk->files[pk->nfiles++] =
	    (struct pk_file){.src = src, .in_dir = in_dir, .rel = dup, .size = size};
	pk->bytes_total += size;
	return 0;
}

/* Walks dir/rel recursively: regular files (and symlinks to them) become
 * records; directories are entered unless they are symlinks; anything
 * else is skipped. */
static int walk(struct packer *pk, size_t *cap, uint32_t src, const char *root, char *rel,
		size_t rlen)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s%s%s", root, rlen ? "/" : "", rel) >= (int)sizeof(path))
		return fail_errno(pk, -ENAMETOOLONG, root);
	DIR *d = opendir(path);
	if (!d)
		return fail_errno(pk, -errno, path);
	int r = 0;
	struct dirent *de;
	errno = 0;
	while (r == 0 && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		size_t nl = strlen(de->d_name);
		if (rlen + 1 + nl > QUAI_RECORD_NAME_MAX) {
			qfs_err(pk->err, pk->err_len, path, "a name inside is longer than %d bytes",
				QUAI_RECORD_NAME_MAX);
			r = -QUAI_EINPUT;
			break;
		}
		size_t nrlen = rlen ? rlen + 1 + nl : nl;
		if (rlen)
			rel[rlen] = '/';
		memcpy(rel + (rlen ? rlen + 1 : 0), de->d_name, nl + 1);
		struct stat lst, st;
		if (fstatat(dirfd(d), de->d_name, &lst, AT_SYMLINK_NOFOLLOW) < 0) {
			r = fail_errno(pk, -errno, rel);
		} else if (S_ISDIR(lst.st_mode)) {
			r = walk(pk, cap, src, root, rel, nrlen);
		} else if (S_ISREG(lst.st_mode)) {
			r = add_file(pk, cap, src, 1, rel, (uint64_t)lst.st_size);
		} else if (S_ISLNK(lst.st_mode) && fstatat(dirfd(d), de->d_name, &st, 0) == 0 &&
			   S_ISREG(st.st_mode)) {
			r = add_file(pk, cap, src, 1, rel, (uint64_t)st.st_size);
		}
		rel[rlen] = '\0';
		errno = 0;
	}
	if (r == 0 && errno)
		r = fail_errno(pk, -errno, path);
	closedir(d);
	return r;
}

static int cmp_files(const void *a, const void *b)
{
	return strcmp(((const struct pk_file *)a)->rel, ((const struct pk_file *)b)->rel);
}

static int scan_sources(struct packer *pk)
{
	size_t cap = 0;
	char rel[QUAI_RECORD_NAME_MAX + 2];
	int stdin_seen = 0;

	for (size_t s = 0; s < pk->nsrcs; s++) {
		const char *src = pk->srcs[s];
		struct stat st;
		if (strcmp(src, "-") == 0) {
			if (pk->kind == QUAI_RECORDS_FILES) {
				qfs_err(pk->err, pk->err_len, src,
					"standard input can be packed as lines or fixed records, "
					"not files");
				return -QUAI_EINPUT;
			}
			if (stdin_seen++) {
				qfs_err(pk->err, pk->err_len, src, "standard input named twice");
				return -QUAI_EINPUT;
			}
			continue;
		}
		if (stat(src, &st) < 0)
			return fail_errno(pk, -errno, src);
		if (access(src, R_OK) < 0)
			return fail_errno(pk, -errno, src);
		if (pk->kind != QUAI_RECORDS_FILES) {
			if (S_ISDIR(st.st_mode)) {
				qfs_err(pk->err, pk->err_len, src,
					"is a directory: %s records come from files (use "
					"--records files for a folder of records)",
					quai_record_kind_name(pk->kind));
				return -QUAI_EINPUT;
			}
			if (S_ISREG(st.st_mode)) {
				pk->bytes_total += (uint64_t)st.st_size;
				if (pk->kind == QUAI_RECORDS_FIXED &&
				    (uint64_t)st.st_size % pk->fixed_size) {
					qfs_err(pk->err, pk->err_len, src,
						"%" PRIu64 " bytes is not a multiple of the record "
						"size %" PRIu32,
						(uint64_t)st.st_size, pk->fixed_size);
					return -QUAI_EINPUT;
				}
			}
			continue;
		}
		int r;
		if (S_ISDIR(st.st_mode)) {
			rel[0] = '\0';
			r = walk(pk, &cap, (uint32_t)s, src, rel, 0);
		} else if (!S_ISREG(st.st_mode)) {
			/* A FIFO would block the pack in open() (issue 22 #11). */
			qfs_err(pk->err, pk->err_len, src,
				"is not a regular file or a directory (a FIFO, device or socket): "
				"files records come from regular files");
			return -QUAI_EINPUT;
		} else {
			const char *base = strrchr(src, '/');
			base = base ? base + 1 : src;
			r = add_file(pk, &cap, (uint32_t)s, 0, base, (uint64_t)st.st_size);
		}
		if (r < 0)
			return r;
	}
	if (pk->kind == QUAI_RECORDS_FILES) {
		if (pk->nfiles == 0) {
			qfs_err(pk->err, pk->err_len, pk->srcs[0], "no regular files to pack");
			return -QUAI_EINPUT;
		}
		qsort(pk->files, pk->nfiles, sizeof(*pk->files), cmp_files);
		for (size_t i = 0; i + 1 < pk->nfiles; i++) {
			if (strcmp(pk->files[i].rel, pk->files[i + 1].rel) == 0) {
				qfs_err(pk->err, pk->err_len, pk->files[i].rel,
					"two sources hold a record of this name");
				return -QUAI_EINPUT;
			}
		}
	}
	pk->prog.bytes_total = stdin_seen ? 0 : pk->bytes_total;
	return 0;
}

/* ---- set-up and the whole --------------------------------------------- */

static int check_opts(struct packer *pk, const struct quai_pack_opts *o, const char *dest)
{
	static const struct quai_pack_opts defaults = {.size = sizeof(defaults)};
	if (!o)
		o = &defaults;
	if (o->size < sizeof(size_t) || o->size > sizeof(*o)) {
		qfs_err(pk->err, pk->err_len, dest, "bad quai_pack_opts size %zu", o->size);
		return -EINVAL;
	}
	pk->o = o;
	pk->kind = o->kind ? o->kind : QUAI_RECORDS_FILES;
	pk->level = o->level ? o->level : 3;
	pk->frame_size = o->frame_size ? o->frame_size : 2u << 20;
	pk->shard_size = o->shard_size ? o->shard_size : 1ull << 30;
	pk->nthreads = o->threads;
	if (!pk->nthreads) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		pk->nthreads = n > 0 ? (unsigned)n : 1;
	}
	if (pk->nthreads > PK_MAX_THREADS)
		pk->nthreads = PK_MAX_THREADS;
	if (!quai_record_kind_name(pk->kind)) {
		qfs_err(pk->err, pk->err_len, dest, "unknown record kind %d", pk->kind);
		return -EINVAL;
	}
	if (pk->kind == QUAI_RECORDS_FIXED) {
		if (o->fixed_size == 0 || o->fixed_size > QUAI_RECORD_SIZE_MAX) {
			qfs_err(pk->err, pk->err_len, dest, "fixed record size must be 1..%u",
				QUAI_RECORD_SIZE_MAX);
			return -EINVAL;
		}
		pk->fixed_size = o->fixed_size;
	}
	if (pk->level < 1 || pk->level > ZSTD_maxCLevel()) {
		qfs_err(pk->err, pk->err_len, dest, "level %d is outside 1..%d", pk->level,
			ZSTD_maxCLevel());
		return -EINVAL;
	}
	if (pk->frame_size < QUAI_FRAME_SIZE_MIN || pk->frame_size > QUAI_FRAME_SIZE_MAX) {
		qfs_err(pk->err, pk->err_len, dest, "frame size %" PRIu32 " is outside %u..%u",
			pk->frame_size, QUAI_FRAME_SIZE_MIN, QUAI_FRAME_SIZE_MAX);
		return -EINVAL;
	}
	if (pk->shard_size < QUAI_SHARD_SIZE_MIN) {
		qfs_err(pk->err, pk->err_len, dest, "shard size %" PRIu64 " is below %u",
			pk->shard_size, QUAI_SHARD_SIZE_MIN);
		return -EINVAL;
	}
	int cls = o->classification ? o->classification : QUAI_CLASS_INTERNAL;
	if (!quai_class_name(cls)) {
		qfs_err(pk->err, pk->err_len, dest, "unknown classification %d", cls);
		return -EINVAL;
	}
	pk->m.classification = cls;
	const char *zone = o->zone ? o->zone : "none";
	if (quai_zone_check(zone) < 0) {
		qfs_err(pk->err, pk->err_len, dest,
			"zone '%s' must be 1..%d characters of A-Z a-z 0-9 . _ -", zone,
			QUAI_ZONE_MAX);
		return -EINVAL;
	}
	snprintf(pk->m.zone, sizeof(pk->m.zone), "%s", zone);

	const char *name = o->name;
	char base[PATH_MAX];
	if (!name) {
		size_t l = strlen(dest);
		while (l > 1 && dest[l - 1] == '/')
			l--;
		size_t b = l;
		while (b > 0 && dest[b - 1] != '/')
			b--;
		snprintf(base, sizeof(base), "%.*s", (int)(l - b), dest + b);
		name = base;
	}
	if (qmf_check_name(name) < 0) {
		qfs_err(pk->err, pk->err_len, name,
			"a dataset name is 1..%d bytes of UTF-8 without '/' or control characters "
			"(choose one with --name)",
			QUAI_NAME_MAX);
		return -EINVAL;
	}
	memcpy(pk->m.name, name, strlen(name) + 1); /* checked: fits */

	if (o->created) {
		if (strlen(o->created) >= sizeof(pk->m.created)) {
			qfs_err(pk->err, pk->err_len, dest, "creation time '%s' is too long",
				o->created);
			return -EINVAL;
		}
		memcpy(pk->m.created, o->created, strlen(o->created) + 1);
	} else {
		time_t t = time(NULL);
		const char *sde = getenv("SOURCE_DATE_EPOCH");
		if (sde && *sde)
			t = (time_t)strtoll(sde, NULL, 10);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(pk->m.created, sizeof(pk->m.created), "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	snprintf(pk->m.creator, sizeof(pk->m.creator), "quai %s", QUAI_VERSION);
	pk->m.format_version = QMF_VERSION;
	pk->m.kind = pk->kind;
	pk->m.fixed_size = pk->fixed_size;
	pk->m.level = pk->level;
	pk->m.frame_size = pk->frame_size;
	pk->m.shard_size = pk->shard_size;
	pk->want_ends = pk->kind != QUAI_RECORDS_FIXED;
	pk->want_names = pk->kind == QUAI_RECORDS_FILES;
	return 0;
}

/* Opens (creating) the partial directory and locks it against a second
 * writer (qfs_partial_open()); what an interrupted pack left in it is
 * removed under that lock. */
static int make_tmpdir(struct packer *pk, const char *dest)
{
	int r = qfs_partial_path(dest, pk->tmpdir, sizeof(pk->tmpdir));
	if (r < 0)
		return fail_errno(pk, r, dest);
	r = qfs_partial_open(pk->tmpdir, 1, 0);
	if (r == -EBUSY) {
		qfs_err(pk->err, pk->err_len, dest, "another quai is writing it");
		return r;
	}
	if (r < 0)
		return fail_errno(pk, r, pk->tmpdir);
	pk->tmpfd = r;
	r = qfs_partial_clear(pk->tmpfd, NULL);
	if (r < 0)
		return fail_errno(pk, r, pk->tmpdir);
	return 0;
}

static int finish(struct packer *pk, const char *dest)
{
	char *text;
	size_t len;
	int r;
	if (pk->m.records == 0) {
		qfs_err(pk->err, pk->err_len, pk->srcs[0], "the input holds no records");
		return -QUAI_EINPUT;
	}
	r = qmf_encode(&pk->m, &text, &len);
	if (r < 0)
		return r;
	/* The manifest last, under a temporary name, then renamed: a reader
	 * of the partial directory never sees a manifest that is not whole. */
	r = qfs_write_file(pk->tmpfd, "manifest.json.tmp", text, len);
	free(text);
	if (r == 0 && renameat(pk->tmpfd, "manifest.json.tmp", pk->tmpfd, "manifest.json") < 0)
		r = -errno;
	if (r == 0 && fsync(pk->tmpfd) < 0)
		r = -errno;
	if (r < 0)
		return fail_errno(pk, r, pk->tmpdir);
	return qfs_publish_new(pk->tmpdir, dest, pk->err, pk->err_len);
}

static int start_threads(struct packer *pk)
{
	pk->njobs = 2 * pk->nthreads + 2;
	pk->jobs = calloc(pk->njobs, sizeof(*pk->jobs));
	pk->threads = calloc(pk->nthreads, sizeof(*pk->threads));
	pk->hash = XXH3_createState();
	if (!pk->jobs || !pk->threads || !pk->hash)
		return -ENOMEM;
	for (unsigned i = 0; i < pk->nthreads; i++) {
		int r = qthread_create(&pk->threads[i], worker_main, pk);
		if (r)
			return -r;
		pk->started++;
	}
	return 0;
}

static void stop_threads(struct packer *pk)
{
	pthread_mutex_lock(&pk->mu);
	pk->stop = 1;
	pthread_cond_broadcast(&pk->cv_work);
	pthread_mutex_unlock(&pk->mu);
	for (unsigned i = 0; i < pk->started; i++)
		pthread_join(pk->threads[i], NULL);
}

static void free_packer(struct packer *pk)
{
	for (unsigned i = 0; pk->jobs && i < pk->njobs; i++) {
		struct pk_job *j = &pk->jobs[i];
		free(j->raw);
		free(j->out);
		free(j->ends);
		free(j->names);
		free(j->name_ends);
	}
	free(pk->jobs);
	free(pk->threads);
	for (size_t i = 0; i < pk->nfiles; i++)
		free(pk->files[i].rel);
	free(pk->files);
	free(pk->seek);
	XXH3_freeState(pk->hash);
	qix_builder_reset(&pk->ixb);
	qmf_release(&pk->m);
	if (pk->shard_fd >= 0)
		close(pk->shard_fd);
	if (pk->tmpfd >= 0)
		close(pk->tmpfd);
	pthread_mutex_destroy(&pk->mu);
	pthread_cond_destroy(&pk->cv_work);
	pthread_cond_destroy(&pk->cv_done);
}

int qpk_pack(const char *const *srcs, size_t nsrcs, const char *dest,
	     const struct quai_pack_opts *opts, struct quai_pack_result *ret_result, char *err,
	     size_t err_len)
{
	struct packer *pk = calloc(1, sizeof(*pk));
	int r, made_tmp = 0;

	if (err && err_len)
		err[0] = '\0';
	if (!pk)
		return -ENOMEM;
	pk->err = err;
	pk->err_len = err_len;
	pk->srcs = srcs;
	pk->nsrcs = nsrcs;
	pk->tmpfd = pk->shard_fd = -1;
	pthread_mutex_init(&pk->mu, NULL);
	pthread_cond_init(&pk->cv_work, NULL);
	pthread_cond_init(&pk->cv_done, NULL);
	clock_gettime(CLOCK_MONOTONIC, &pk->last_prog);

	if (!dest || !srcs || nsrcs == 0) {
		r = -EINVAL;
		qfs_err(err, err_len, dest ? dest : "", "nothing to pack");
		goto out;
	}
	r = check_opts(pk, opts, dest);
	if (r < 0)
		goto out;
	if (qfs_exists(dest)) {
		qfs_err(err, err_len, dest, "%s", quai_strerror(QUAI_EEXISTS));
		r = -QUAI_EEXISTS;
		goto out;
	}
	r = scan_sources(pk);
	if (r < 0)
		goto out;
	r = make_tmpdir(pk, dest);
	if (r < 0)
		goto out;
	made_tmp = 1;
	r = start_threads(pk);
	if (r < 0)
		goto out;
	r = acquire_job(pk, &pk->cur);
	if (r < 0)
		goto out;
	if (pk->kind == QUAI_RECORDS_LINES)
		r = produce_lines(pk);
	else if (pk->kind == QUAI_RECORDS_FIXED)
		r = produce_fixed(pk);
	else
		r = produce_files(pk);
	if (r < 0)
		goto out;
	if (pk->cur->nrec > 0) {
		submit_job(pk, pk->cur);
	} else {
		/* Nothing was added since the last frame: hand the slot back. */
		pthread_mutex_lock(&pk->mu);
		pk->cur->state = JOB_FREE;
		pk->next_acquire--;
		pthread_mutex_unlock(&pk->mu);
	}
	pk->cur = NULL;
	while (pk->next_write < pk->next_acquire) {
		r = write_next(pk);
		if (r < 0)
			goto out;
	}
	if (pk->shard_fd >= 0) {
		r = close_shard(pk);
		if (r < 0)
			goto out;
	}
	r = progress(pk, 1);
	if (r < 0)
		goto out;
	r = finish(pk, dest);
	if (r < 0)
		goto out;
	if (ret_result)
		*ret_result = (struct quai_pack_result){
		    .records = pk->m.records,
		    .raw_bytes = pk->m.raw_bytes,
		    .compressed_bytes = pk->m.compressed_bytes,
		    .shards = pk->m.nshards,
		    .frames = pk->m.frames,
		};
out:
	stop_threads(pk);
	if (r < 0 && err && err_len && !err[0])
		qfs_err(err, err_len, dest, "%s", quai_strerror(r));
	if (r < 0 && made_tmp)
		qfs_remove_partial(pk->tmpdir);
	free_packer(pk);
	free(pk);
	return r;
}
