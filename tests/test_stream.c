/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The staging engine through its public API: every record delivered once
 * and intact, across ranks and resumptions; corrupt and truncated data never
 * handed out; memory within the budget; clean errors.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static char dir[512], ds_path[600], fixed_path[600];
static uint64_t nrec;
static quai_ctx *ctx;

static void make_ctx(uint64_t pinned, unsigned flags)
{
	struct quai_ctx_opts co = {.size = sizeof(co),
				   .pinned_bytes = pinned,
				   .workers = 2,
				   .flags = flags | QUAI_CTX_UNLOCKED_OK,
				   .gpu = QUAI_GPU_NONE};
	char err[256];
	int r = quai_ctx_new(&co, &ctx, err, sizeof(err));
	cr_assert_eq(r, 0, "ctx: %s", err);
}

static void setup(void)
{
	tu_mkdtemp(dir, sizeof(dir));
	char in[600];
	/* Lines of varied length: 40 frames of 4 KiB, 3 shards. */
	snprintf(in, sizeof(in), "%s/in.txt", dir);
	size_t len = 160000;
	uint8_t *buf = malloc(len);
	tu_fill(buf, len, 9, 26);
	for (size_t i = 20, k = 0; i < len; i += 5 + (k++ * 37) % 120)
		buf[i] = '\n';
	buf[len - 1] = '\n';
	tu_write(in, buf, len);
	free(buf);
	snprintf(ds_path, sizeof(ds_path), "%s/ds", dir);
	const char *srcs[] = {in};
	struct quai_pack_opts o = {.size = sizeof(o),
				   .kind = QUAI_RECORDS_LINES,
				   .frame_size = QUAI_FRAME_SIZE_MIN,
				   .shard_size = 32 << 10};
	nrec = tu_pack(srcs, 1, ds_path, &o).records;

	/* Fixed records of 100 bytes: 4000 records. */
	snprintf(in, sizeof(in), "%s/fixed.bin", dir);
	buf = malloc(400000);
	tu_fill(buf, 400000, 4, 256);
	tu_write(in, buf, 400000);
	free(buf);
	snprintf(fixed_path, sizeof(fixed_path), "%s/fixed", dir);
	const char *fsrc[] = {in};
	struct quai_pack_opts fo = {
	    .size = sizeof(fo), .kind = QUAI_RECORDS_FIXED, .fixed_size = 100, .frame_size = 8192};
	tu_pack(fsrc, 1, fixed_path, &fo);
	make_ctx(64 << 20, 0);
}

static void teardown(void)
{
	quai_ctx_free(ctx);
	ctx = NULL;
	tu_rmtree(dir);
}

TestSuite(stream, .init = setup, .fini = teardown, .timeout = 120);

static quai_stream *open_stream(const char *p, const struct quai_stream_opts *o)
{
	quai_stream *s;
	char err[512];
	int r = quai_stream_open(ctx, p, o, &s, err, sizeof(err));
	cr_assert_eq(r, 0, "open: %s (%s)", quai_strerror(r), err);
	return s;
}

/* Drains a stream, checking every record's bytes against quai_reader, and
 * marking ids in seen[] (each at most once). Returns records delivered. */
static uint64_t drain(quai_stream *s, const char *p, uint8_t *seen, uint64_t max_batches,
		      uint64_t *order, uint64_t *norder)
{
	quai_dataset *ds;
	quai_reader *rd;
	cr_assert_eq(quai_dataset_open(p, &ds, NULL, 0), 0);
	cr_assert_eq(quai_reader_new(ds, &rd), 0);
	struct quai_batch b;
	uint64_t n = 0, batches = 0;
	int r;
	while (batches < max_batches && (r = quai_next(s, &b)) > 0) {
		cr_assert_eq(b.offsets[0], 0);
		cr_assert_eq(b.offsets[b.count], b.bytes);
		for (uint32_t i = 0; i < b.count; i++) {
			const void *d;
			size_t len;
			cr_assert_eq(quai_reader_record(rd, b.ids[i], &d, &len), 0);
			cr_assert_eq(len, b.offsets[i + 1] - b.offsets[i]);
			cr_assert(memcmp(d, b.data + b.offsets[i], len) == 0, "record %llu bytes",
				  (unsigned long long)b.ids[i]);
			if (seen) {
				cr_assert_eq(seen[b.ids[i]], 0, "record %llu twice",
					     (unsigned long long)b.ids[i]);
				seen[b.ids[i]] = 1;
			}
			if (order)
				order[(*norder)++] = b.ids[i];
		}
		n += b.count;
		batches++;
		quai_release(s, &b);
	}
	quai_reader_free(rd);
	quai_dataset_close(ds);
	return n;
}

Test(stream, dataset_order_without_shuffle)
{
	struct quai_stream_opts o = {.size = sizeof(o),
				     .flags = QUAI_STREAM_NO_SHUFFLE,
				     .batch_records = 7,
				     .tail = QUAI_TAIL_KEEP};
	quai_stream *s = open_stream(ds_path, &o);
	uint64_t *order = malloc(nrec * sizeof(*order)), n = 0;
	cr_assert_eq(drain(s, ds_path, NULL, UINT64_MAX, order, &n), nrec);
	for (uint64_t i = 0; i < nrec; i++)
		cr_assert_eq(order[i], i);
	struct quai_batch b;
	cr_assert_eq(quai_next(s, &b), 0, "end of epoch is 0");
	cr_assert_eq(quai_next(s, &b), 0);
	quai_stream_close(s);
	free(order);
}

/* QUAI_CTX_LAZY_POOL: the pool's pages come in as the stream first uses
 * them, and the stream delivers the same as on a pool touched up front. */
Test(stream, lazy_pool_context_streams_the_same)
{
	quai_ctx *eager = ctx;
	make_ctx(64 << 20, QUAI_CTX_LAZY_POOL);
	quai_ctx *lazy = ctx;
	struct quai_stream_opts o = {
	    .size = sizeof(o), .seed = 11, .batch_records = 9, .tail = QUAI_TAIL_KEEP};
	uint64_t *got[2], n[2] = {0, 0};
	quai_ctx *on[2] = {eager, lazy};
	for (int k = 0; k < 2; k++) {
		ctx = on[k];
		got[k] = malloc(nrec * sizeof(uint64_t));
		quai_stream *s = open_stream(ds_path, &o);
		cr_assert_eq(drain(s, ds_path, NULL, UINT64_MAX, got[k], &n[k]), nrec);
		quai_stream_close(s);
	}
	cr_assert_eq(n[0], n[1]);
	cr_assert(memcmp(got[0], got[1], nrec * sizeof(uint64_t)) == 0, "same order");
	free(got[0]);
	free(got[1]);
	quai_ctx_free(lazy);
	ctx = eager;
}

/* On a lazy pool a stream's default budget follows its working set (1.5
 * times it, at least 32 MiB, at most the pool), an explicit budget is
 * kept, and the pool is not registered with io_uring (registering would
 * touch every page); an eager pool's default budget is the whole pool. */
Test(stream, lazy_pool_budget_follows_the_working_set)
{
	quai_ctx *eager = ctx;
	struct quai_stream_opts o = {.size = sizeof(o), .batch_records = 9};
	struct quai_stream_stats st = {.size = sizeof(st)};
	quai_stream *s = open_stream(ds_path, &o);
	cr_assert_eq(quai_stream_stats(s, &st), 0);
	struct quai_ctx_info ci = {.size = sizeof(ci)};
	cr_assert_eq(quai_ctx_info(ctx, &ci), 0);
	cr_assert_eq(st.budget_bytes, ci.pinned_bytes, "eager: the whole pool");
	quai_stream_close(s);

	make_ctx(256ull << 20, QUAI_CTX_LAZY_POOL);
	s = open_stream(ds_path, &o);
	cr_assert_eq(quai_stream_stats(s, &st), 0);
	uint64_t want = st.working_set_bytes + st.working_set_bytes / 2;
	if (want < (32ull << 20))
		want = 32ull << 20;
	cr_assert_eq(st.budget_bytes, want, "lazy: %" PRIu64 " for a working set of %" PRIu64,
		     st.budget_bytes, st.working_set_bytes);
	cr_assert_eq(st.registered_buffers, 0, "a lazy pool is not registered");
	quai_stream_close(s);
	o.memory_budget = 100ull << 20;
	s = open_stream(ds_path, &o);
	cr_assert_eq(quai_stream_stats(s, &st), 0);
	cr_assert_eq(st.budget_bytes, 100ull << 20, "an explicit budget is kept");
	quai_stream_close(s);
	quai_ctx_free(ctx);
	make_ctx(16ull << 20, QUAI_CTX_LAZY_POOL);
	o.memory_budget = 0;
	s = open_stream(ds_path, &o);
	cr_assert_eq(quai_stream_stats(s, &st), 0);
	cr_assert_eq(st.budget_bytes, 16ull << 20, "at most the pool");
	quai_stream_close(s);
	quai_ctx_free(ctx);
	ctx = eager;
}

Test(stream, shuffled_epoch_covers_every_record_once)
{
	struct quai_stream_opts o = {
	    .size = sizeof(o), .seed = 42, .batch_records = 64, .tail = QUAI_TAIL_KEEP};
	quai_stream *s = open_stream(ds_path, &o);
	uint8_t *seen = calloc(nrec, 1);
	uint64_t *order = malloc(nrec * sizeof(*order)), n = 0;
	cr_assert_eq(drain(s, ds_path, seen, UINT64_MAX, order, &n), nrec);
	quai_stream_close(s);
	uint64_t inorder = 0;
	for (uint64_t i = 0; i < nrec; i++)
		inorder += order[i] == i;
	cr_assert_lt(inorder, nrec / 10, "shuffled");

	/* Same seed and epoch: the same order; another epoch: another. */
	s = open_stream(ds_path, &o);
	uint64_t *again = malloc(nrec * sizeof(*again)), m = 0;
	drain(s, ds_path, NULL, UINT64_MAX, again, &m);
	quai_stream_close(s);
	cr_assert_eq(m, n);
	cr_assert(memcmp(order, again, n * sizeof(*order)) == 0);
	o.epoch = 1;
	s = open_stream(ds_path, &o);
	m = 0;
	drain(s, ds_path, NULL, UINT64_MAX, again, &m);
	quai_stream_close(s);
	cr_assert(memcmp(order, again, n * sizeof(*order)) != 0);
	free(seen);
	free(order);
	free(again);
}

struct rank_run {
	uint32_t rank, world;
	uint8_t *seen;
	pthread_mutex_t *mu;
	uint64_t got;
	uint64_t batches;
};

static void *run_rank(void *arg)
{
	struct rank_run *rr = arg;
	struct quai_stream_opts o = {.size = sizeof(o),
				     .rank = rr->rank,
				     .world = rr->world,
				     .seed = 7,
				     .batch_records = 16,
				     .memory_budget = 8 << 20,
				     .tail = QUAI_TAIL_KEEP};
	quai_stream *s;
	char err[256];
	if (quai_stream_open(ctx, ds_path, &o, &s, err, sizeof(err)) < 0)
		return (void *)1;
	struct quai_batch b;
	int r;
	while ((r = quai_next(s, &b)) > 0) {
		pthread_mutex_lock(rr->mu);
		for (uint32_t i = 0; i < b.count; i++)
			rr->seen[b.ids[i]]++;
		pthread_mutex_unlock(rr->mu);
		rr->got += b.count;
		rr->batches++;
		quai_release(s, &b);
	}
	quai_stream_close(s);
	return r < 0 ? (void *)2 : NULL;
}

Test(stream, ranks_on_one_context_are_disjoint_and_complete)
{
	for (uint32_t world = 1; world <= 8; world *= 2) {
		uint8_t *seen = calloc(nrec, 1);
		pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
		struct rank_run rr[8];
		pthread_t th[8];
		for (uint32_t r = 0; r < world; r++) {
			rr[r] =
			    (struct rank_run){.rank = r, .world = world, .seen = seen, .mu = &mu};
			pthread_create(&th[r], NULL, run_rank, &rr[r]);
		}
		for (uint32_t r = 0; r < world; r++) {
			void *ret;
			pthread_join(th[r], &ret);
			cr_assert_null(ret, "world %u rank %u failed", world, r);
		}
		for (uint64_t i = 0; i < nrec; i++)
			cr_assert_eq(seen[i], 1, "world %u: record %llu seen %u times", world,
				     (unsigned long long)i, seen[i]);
		free(seen);
	}
}

/* Any world size: every rank gets the same batches (the last one short,
 * alike on every rank), and together all but the remainder (< world
 * records) of the epoch; the batch size does not change that. */
Test(stream, drop_tail_gives_every_rank_the_same_batches)
{
	uint32_t worlds[] = {3, 4, 6, 7};
	for (size_t k = 0; k < sizeof(worlds) / sizeof(worlds[0]); k++) {
		uint32_t w = worlds[k];
		uint64_t batches0 = 0, last0 = 0, total = 0;
		uint8_t *seen = calloc(nrec, 1);
		for (uint32_t r = 0; r < w; r++) {
			struct quai_stream_opts o = {
			    .size = sizeof(o), .rank = r, .world = w, .batch_records = 10};
			quai_stream *s = open_stream(ds_path, &o);
			struct quai_batch b;
			uint64_t batches = 0, last = 0;
			while (quai_next(s, &b) > 0) {
				cr_assert(last == 0 || last == 10, "a short batch before the last");
				for (uint32_t i = 0; i < b.count; i++) {
					cr_assert_eq(seen[b.ids[i]], 0);
					seen[b.ids[i]] = 1;
				}
				last = b.count;
				total += b.count;
				batches++;
				quai_release(s, &b);
			}
			quai_stream_close(s);
			if (r == 0) {
				batches0 = batches;
				last0 = last;
			}
			cr_assert_eq(batches, batches0, "world %u rank %u", w, r);
			cr_assert_eq(last, last0, "world %u rank %u", w, r);
		}
		cr_assert_gt(batches0, 0);
		cr_assert_eq(total, nrec - nrec % w, "world %u: %llu of %llu", w,
			     (unsigned long long)total, (unsigned long long)nrec);
		free(seen);
	}
}

/* Checkpoint after k batches at world w, resume at world w2: together the
 * resumed ranks deliver exactly what the epoch had left, so every record
 * is seen exactly once. */
static void resume_case(uint32_t w, uint32_t w2, uint64_t k)
{
	uint8_t *seen = calloc(4000, 1);
	uint8_t state[QUAI_STATE_MAX];
	int slen = 0;
	for (uint32_t r = 0; r < w; r++) {
		struct quai_stream_opts o = {.size = sizeof(o),
					     .rank = r,
					     .world = w,
					     .seed = 3,
					     .batch_records = 8,
					     .tail = QUAI_TAIL_KEEP};
		quai_stream *s = open_stream(fixed_path, &o);
		drain(s, fixed_path, seen, k, NULL, NULL);
		uint8_t mine[QUAI_STATE_MAX];
		int n = quai_stream_state(s, mine, sizeof(mine));
		cr_assert_gt(n, 0);
		if (r == 0) {
			memcpy(state, mine, (size_t)n);
			slen = n;
		}
		cr_assert(n == slen && memcmp(mine, state, (size_t)n) == 0,
			  "rank %u writes another state", r);
		quai_stream_close(s);
	}
	for (uint32_t r = 0; r < w2; r++) {
		struct quai_stream_opts o = {.size = sizeof(o),
					     .rank = r,
					     .world = w2,
					     .batch_records = 8,
					     .resume = state,
					     .resume_len = (size_t)slen};
		quai_stream *s = open_stream(fixed_path, &o);
		drain(s, fixed_path, seen, UINT64_MAX, NULL, NULL);
		quai_stream_close(s);
	}
	for (uint64_t i = 0; i < 4000; i++)
		cr_assert_eq(seen[i], 1, "w %u -> %u after %llu batches: record %llu seen %u times",
			     w, w2, (unsigned long long)k, (unsigned long long)i, seen[i]);
	free(seen);
}

Test(stream, elastic_resume)
{
	resume_case(1, 1, 5);
	resume_case(4, 2, 3);
	resume_case(2, 8, 7);
	resume_case(8, 4, 1);
	resume_case(4, 4, 0);
	resume_case(2, 3, 40);
	resume_case(8, 6, 9);
	resume_case(5, 24, 11);
	resume_case(7, 1, 70);
}

/* 8 ranks, then 6, then 24 in one epoch: every record exactly once but the
 * remainder of the last world (KEEP: none). */
Test(stream, elastic_resume_twice)
{
	uint8_t *seen = calloc(4000, 1);
	uint8_t state[QUAI_STATE_MAX];
	int slen = 0;
	uint32_t worlds[] = {8, 6, 24};
	uint64_t steps[] = {13, 21, UINT64_MAX};
	for (int k = 0; k < 3; k++) {
		int next = 0;
		uint8_t got[QUAI_STATE_MAX];
		for (uint32_t r = 0; r < worlds[k]; r++) {
			struct quai_stream_opts o = {.size = sizeof(o),
						     .rank = r,
						     .world = worlds[k],
						     .seed = 3,
						     .window = 4,
						     .batch_records = 8,
						     .tail = QUAI_TAIL_KEEP,
						     .resume = k ? state : NULL,
						     .resume_len = k ? (size_t)slen : 0};
			if (k)
				o.seed = 0, o.window = 0, o.tail = 0;
			quai_stream *s = open_stream(fixed_path, &o);
			drain(s, fixed_path, seen, steps[k], NULL, NULL);
			next = quai_stream_state(s, got, sizeof(got));
			cr_assert_gt(next, 0);
			quai_stream_close(s);
		}
		memcpy(state, got, (size_t)next);
		slen = next;
	}
	for (uint64_t i = 0; i < 4000; i++)
		cr_assert_eq(seen[i], 1, "record %llu seen %u times", (unsigned long long)i,
			     seen[i]);
	free(seen);
}

/* Options a context does not know are refused, not ignored: a program
 * built against a newer quai.h learns that this library lacks the flag. */
Test(stream, unknown_context_options_refused)
{
	struct quai_ctx_opts co = {
	    .size = sizeof(co), .pinned_bytes = 1 << 20, .flags = QUAI_CTX_UNLOCKED_OK | 0x80u};
	quai_ctx *c = NULL;
	char err[256];

	cr_assert_eq(quai_ctx_new(&co, &c, err, sizeof(err)), -EINVAL);
	cr_assert_null(c);
	cr_assert(strstr(err, "unknown context flags 0x80"), "%s", err);
	co.flags = QUAI_CTX_UNLOCKED_OK;
	co.gpu = 7;
	cr_assert_eq(quai_ctx_new(&co, &c, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "unknown GPU runtime 7"), "%s", err);
	co.gpu = QUAI_GPU_NONE;
	co.size = sizeof(co) + 8;
	cr_assert_eq(quai_ctx_new(&co, &c, err, sizeof(err)), -EINVAL);
	/* Every known flag at once is accepted. */
	co.size = sizeof(co);
	co.flags =
	    QUAI_CTX_NO_HUGEPAGES | QUAI_CTX_NO_DIRECT | QUAI_CTX_UNLOCKED_OK | QUAI_CTX_LAZY_POOL;
	cr_assert_eq(quai_ctx_new(&co, &c, err, sizeof(err)), 0, "%s", err);
	quai_ctx_free(c);
}

Test(stream, remote_uris_told_apart)
{
	cr_assert_eq(quai_uri_is_remote("quai://host/name"), 1);
	cr_assert_eq(quai_uri_is_remote("quai://[::1]:7470/name"), 1);
	cr_assert_eq(quai_uri_is_remote("quai://"), 1, "the rest is for the calls to check");
	cr_assert_eq(quai_uri_is_remote("quai:/host/name"), 0);
	cr_assert_eq(quai_uri_is_remote("file:///data/ds"), 0);
	cr_assert_eq(quai_uri_is_remote("/data/quai://x"), 0);
	cr_assert_eq(quai_uri_is_remote(""), 0);
	cr_assert_eq(quai_uri_is_remote(NULL), 0);
}

/* Any world size opens with the defaults (no divisibility rule); bad ranks
 * and worlds, and the gone partitions option, are explained. */
Test(stream, any_world_opens_and_bad_ones_are_explained)
{
	struct quai_stream_opts o = {.size = sizeof(o)};
	quai_stream *s;
	char err[512];
	uint32_t worlds[] = {3, 5, 6, 7, 12, 24, 1000, 65536};
	for (size_t k = 0; k < sizeof(worlds) / sizeof(worlds[0]); k++) {
		o.world = worlds[k];
		o.rank = worlds[k] - 1;
		cr_assert_eq(quai_stream_open(ctx, ds_path, &o, &s, err, sizeof(err)), 0,
			     "world %u: %s", worlds[k], err);
		quai_stream_close(s);
	}
	o.world = 65537;
	o.rank = 0;
	cr_assert_eq(quai_stream_open(ctx, ds_path, &o, &s, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "world 65537"), "%s", err);
	o.world = 3;
	o.partitions = 8;
	cr_assert_eq(quai_stream_open(ctx, ds_path, &o, &s, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "partitions are no longer an option"), "%s", err);
	o.partitions = 0;
	o.world = 2;
	o.rank = 2;
	cr_assert_eq(quai_stream_open(ctx, ds_path, &o, &s, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "rank"), "%s", err);
	/* Remote URIs are checked before anything is sent. */
	cr_assert_eq(quai_stream_open(ctx, "quai://host:99999/x", NULL, &s, err, sizeof(err)),
		     -EINVAL);
	cr_assert(strstr(err, "port"), "%s", err);
	cr_assert_eq(quai_stream_open(ctx, "quai://host/", NULL, &s, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "no dataset name"), "%s", err);
	cr_assert_eq(quai_stream_open(ctx, "/nonexistent/ds", NULL, &s, err, sizeof(err)), -ENOENT);
}

Test(stream, budget_too_small_is_explained)
{
	struct quai_stream_opts o = {
	    .size = sizeof(o), .batch_records = 1000, .memory_budget = 64 << 10};
	quai_stream *s;
	char err[512];
	cr_assert_eq(quai_stream_open(ctx, ds_path, &o, &s, err, sizeof(err)), -ENOBUFS);
	cr_assert(strstr(err, "MiB"), "%s", err);
}

Test(stream, memory_stays_within_the_budget)
{
	quai_ctx_free(ctx);
	make_ctx(64 << 20, 0);
	uint64_t budget = 2 << 20;
	struct quai_stream_opts o = {.size = sizeof(o),
				     .batch_records = 32,
				     .memory_budget = budget,
				     .tail = QUAI_TAIL_KEEP};
	quai_stream *s = open_stream(ds_path, &o);
	cr_assert_eq(drain(s, ds_path, NULL, UINT64_MAX, NULL, NULL), nrec);
	quai_stream_close(s);
	struct quai_ctx_info ci = {.size = sizeof(ci)};
	quai_ctx_info(ctx, &ci);
	cr_assert_leq(ci.pinned_peak, budget + (64 << 10), "peak %llu",
		      (unsigned long long)ci.pinned_peak);
}

static void flip(const char *p, const char *file, uint64_t at)
{
	char f[700];
	snprintf(f, sizeof(f), "%s/%s", p, file);
	int fd = open(f, O_RDWR);
	uint8_t b;
	cr_assert_eq(pread(fd, &b, 1, (off_t)at), 1);
	b ^= 0x20;
	cr_assert_eq(pwrite(fd, &b, 1, (off_t)at), 1);
	close(fd);
}

Test(stream, corrupt_frame_is_never_delivered)
{
	/* Damage the middle frame of shard 1. */
	quai_dataset *ds;
	cr_assert_eq(quai_dataset_open(ds_path, &ds, NULL, 0), 0);
	struct quai_shard_info si = {.size = sizeof(si)};
	quai_dataset_shard(ds, 1, &si);
	struct quai_record_loc loc;
	quai_dataset_locate(ds, si.first_record + si.records / 2, &loc);
	quai_dataset_close(ds);
	flip(ds_path, "shard-00001.zst", loc.frame_offset + loc.frame_csize / 2);

	struct quai_stream_opts o = {.size = sizeof(o),
				     .flags = QUAI_STREAM_NO_SHUFFLE,
				     .batch_records = 5,
				     .tail = QUAI_TAIL_KEEP};
	quai_stream *s = open_stream(ds_path, &o);
	quai_dataset *ods;
	quai_reader *rd;
	cr_assert_eq(quai_dataset_open(ds_path, &ods, NULL, 0), 0);
	cr_assert_eq(quai_reader_new(ods, &rd), 0);
	struct quai_batch b;
	int r;
	while ((r = quai_next(s, &b)) > 0) {
		for (uint32_t i = 0; i < b.count; i++) {
			const void *d;
			size_t len;
			cr_assert_eq(quai_reader_record(rd, b.ids[i], &d, &len), 0,
				     "a record of the bad frame was delivered");
			cr_assert(memcmp(d, b.data + b.offsets[i], len) == 0);
		}
		quai_release(s, &b);
	}
	cr_assert_eq(r, -QUAI_ECORRUPT);
	cr_assert(strstr(quai_stream_error(s), "shard-00001.zst frame"), "%s",
		  quai_stream_error(s));
	cr_assert_eq(quai_next(s, &b), -QUAI_ECORRUPT, "the error sticks");
	quai_stream_close(s);

	/* With SKIP_CORRUPT the stream goes on and counts what it skipped. */
	o.flags |= QUAI_STREAM_SKIP_CORRUPT;
	s = open_stream(ds_path, &o);
	uint64_t n = 0;
	while ((r = quai_next(s, &b)) > 0) {
		n += b.count;
		quai_release(s, &b);
	}
	cr_assert_eq(r, 0);
	struct quai_stream_stats st = {.size = sizeof(st)};
	quai_stream_stats(s, &st);
	cr_assert_gt(st.skipped_records, 0);
	cr_assert_eq(n + st.skipped_records, nrec);
	quai_stream_close(s);
	quai_reader_free(rd);
	quai_dataset_close(ods);
}

Test(stream, truncated_shard_fails_cleanly)
{
	char f[700];
	snprintf(f, sizeof(f), "%s/shard-00001.zst", ds_path);
	cr_assert_eq(truncate(f, 1000), 0);
	struct quai_stream_opts o = {.size = sizeof(o), .batch_records = 5};
	quai_stream *s = open_stream(ds_path, &o);
	struct quai_batch b;
	int r;
	while ((r = quai_next(s, &b)) > 0)
		quai_release(s, &b);
	cr_assert_eq(r, -QUAI_ECORRUPT, "%d", r);
	cr_assert(strstr(quai_stream_error(s), "shard-00001.zst"), "%s", quai_stream_error(s));
	quai_stream_close(s);
}

Test(stream, deleted_while_streaming_still_delivers_what_was_opened)
{
	struct quai_stream_opts o = {
	    .size = sizeof(o), .batch_records = 50, .tail = QUAI_TAIL_KEEP};
	quai_stream *s = open_stream(fixed_path, &o);
	tu_rmtree(fixed_path);
	uint8_t *seen = calloc(4000, 1);
	struct quai_batch b;
	uint64_t n = 0;
	while (quai_next(s, &b) > 0) {
		for (uint32_t i = 0; i < b.count; i++)
			seen[b.ids[i]]++;
		n += b.count;
		quai_release(s, &b);
	}
	cr_assert_eq(n, 4000);
	quai_stream_close(s);
	free(seen);
}

Test(stream, held_batches_and_close)
{
	struct quai_stream_opts o = {.size = sizeof(o), .batch_records = 4, .prefetch_batches = 2};
	quai_stream *s = open_stream(ds_path, &o);
	struct quai_batch a, b, c;
	cr_assert_eq(quai_next(s, &a), 1);
	cr_assert_eq(quai_next(s, &b), 1);
	/* a's slot is needed again: a keeps its memory, the slot a new block. */
	cr_assert_eq(quai_next(s, &c), 1, "a batch held past its slot's turn");
	cr_assert_eq(c.index, 2);
	quai_release(s, &a);
	quai_release(s, &a); /* twice: the second finds nothing (ASan) */
	/* Closed with two batches still held: nothing leaks (ASan). */
	quai_stream_close(s);
}

/* Batches held while many later ones are taken keep their bytes: the pool
 * never reuses a held batch's memory. */
Test(stream, held_batches_keep_their_bytes)
{
	struct quai_stream_opts o = {.size = sizeof(o), .batch_records = 16, .prefetch_batches = 2};
	quai_stream *s = open_stream(fixed_path, &o);
	struct quai_batch kept[3], b;
	uint8_t *copy[3];
	for (int k = 0; k < 3; k++) {
		cr_assert_eq(quai_next(s, &kept[k]), 1);
		copy[k] = malloc(kept[k].bytes + 1);
		memcpy(copy[k], kept[k].data, kept[k].bytes);
	}
	int n = 0;
	while (quai_next(s, &b) > 0) {
		quai_release(s, &b);
		n++;
	}
	cr_assert_gt(n, 10);
	for (int k = 0; k < 3; k++) {
		cr_assert_eq(memcmp(copy[k], kept[k].data, kept[k].bytes), 0, "batch %d", k);
		quai_release(s, &kept[k]);
		free(copy[k]);
	}
	quai_stream_close(s);
}

/* Held batches count against the budget: past its slack over the working
 * set, quai_next() says -EBUSY rather than wait for memory only the caller
 * can free; a release lets it go on. */
Test(stream, held_batches_beyond_the_budget_are_refused)
{
	struct quai_stream_opts o = {.size = sizeof(o), .batch_records = 4, .prefetch_batches = 2};
	quai_stream *s = open_stream(ds_path, &o);
	struct quai_stream_stats st = {.size = sizeof(st)};
	cr_assert_eq(quai_stream_stats(s, &st), 0);
	quai_stream_close(s);
	o.memory_budget = st.working_set_bytes; /* no slack */
	s = open_stream(ds_path, &o);
	struct quai_batch a, b, c;
	cr_assert_eq(quai_next(s, &a), 1);
	cr_assert_eq(quai_next(s, &b), 1);
	cr_assert_eq(quai_next(s, &c), -EBUSY, "held beyond the budget");
	quai_release(s, &a);
	cr_assert_eq(quai_next(s, &c), 1);
	cr_assert_eq(c.index, 2);
	quai_release(s, &b);
	quai_release(s, &c);
	quai_stream_close(s);
}

/* Drops a dataset's shards from the page cache, so the engine picks
 * O_DIRECT for them. */
static void evict(const char *p)
{
	for (int i = 0;; i++) {
		char f[700];
		snprintf(f, sizeof(f), "%s/shard-%05d.zst", p, i);
		int fd = open(f, O_RDONLY);
		if (fd < 0)
			break;
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
}

Test(stream, buffered_and_direct_reads_agree)
{
	struct quai_stream_opts o = {
	    .size = sizeof(o), .seed = 5, .batch_records = 32, .tail = QUAI_TAIL_KEEP};
	evict(fixed_path);
	uint64_t *a = malloc(4000 * sizeof(*a)), *b = malloc(4000 * sizeof(*b)), na = 0, nb = 0;
	quai_stream *s = open_stream(fixed_path, &o);
	struct quai_stream_stats st = {.size = sizeof(st)};
	drain(s, fixed_path, NULL, UINT64_MAX, a, &na);
	quai_stream_stats(s, &st);
	uint32_t direct = st.direct_io;
	quai_stream_close(s);
	quai_ctx_free(ctx);
	make_ctx(64 << 20, QUAI_CTX_NO_DIRECT);
	s = open_stream(fixed_path, &o);
	drain(s, fixed_path, NULL, UINT64_MAX, b, &nb);
	quai_stream_stats(s, &st);
	cr_assert_eq(st.direct_io, 0);
	quai_stream_close(s);
	cr_assert_eq(na, 4000);
	cr_assert_eq(nb, na);
	cr_assert(memcmp(a, b, na * sizeof(*a)) == 0);
	if (!direct)
		cr_log_warn("this file system refuses O_DIRECT: only buffered reads were tested");
	free(a);
	free(b);
}

Test(stream, batches_by_bytes)
{
	struct quai_stream_opts o = {
	    .size = sizeof(o), .batch_bytes = 3000, .tail = QUAI_TAIL_KEEP};
	quai_stream *s = open_stream(ds_path, &o);
	struct quai_batch b;
	uint64_t n = 0, batches = 0, last = 0;
	int r;
	while ((r = quai_next(s, &b)) > 0) {
		if (last)
			cr_assert_fail("only the last batch may be short");
		if (b.bytes < 3000)
			last = 1;
		cr_assert(b.count > 0);
		n += b.count;
		batches++;
		quai_release(s, &b);
	}
	cr_assert_eq(r, 0);
	cr_assert_eq(n, nrec);
	quai_stream_close(s);
}

/* A sensitive dataset: its released batches are wiped in the pool. */
static void host_zone(const char *zone);

static void pack_sensitive(char *out, size_t len)
{
	char in[700];
	snprintf(in, sizeof(in), "%s/secret.bin", dir);
	uint8_t *buf = malloc(200000);
	tu_fill(buf, 200000, 77, 256);
	for (size_t i = 0; i < 200000; i++)
		buf[i] |= 1; /* no zero byte: a wiped record is all zeros */
	tu_write(in, buf, 200000);
	free(buf);
	snprintf(out, len, "%s/secret", dir);
	const char *srcs[] = {in};
	struct quai_pack_opts o = {.size = sizeof(o),
				   .kind = QUAI_RECORDS_FIXED,
				   .fixed_size = 100,
				   .frame_size = 8192,
				   .classification = QUAI_CLASS_SENSITIVE,
				   .zone = "fr-1"};
	/* Packed on a host of its zone, into a sovereign path. */
	host_zone("fr-1");
	tu_pack(srcs, 1, out, &o);
}

/* Makes this test process's host configuration say `zone = Z`. */
static void host_zone(const char *zone)
{
	char conf[700], text[1024];
	snprintf(conf, sizeof(conf), "%s/host.conf", dir);
	snprintf(text, sizeof(text), "zone = %s\nsovereign_paths = %s\n", zone, dir);
	tu_write(conf, text, strlen(text));
	cr_assert_eq(setenv("QUAI_CONF", conf, 1), 0);
}

Test(stream, sensitive_data_is_read_only_in_its_zone)
{
	char p[700], err[512];
	pack_sensitive(p, sizeof(p));
	host_zone("de-1");
	quai_stream *s;
	int r = quai_stream_open(ctx, p, NULL, &s, err, sizeof(err));
	cr_assert_eq(r, -QUAI_EPOLICY, "open: %s (%s)", quai_strerror(r), err);
	cr_expect(strstr(err, "zone fr-1") && strstr(err, "zone de-1"), "%s", err);
}

Test(stream, sensitive_batches_are_wiped_on_release)
{
	struct quai_ctx_info ci = {.size = sizeof(ci)};
	quai_ctx_info(ctx, &ci);
	if (!ci.locked)
		cr_skip_test("the pool could not be locked here (RLIMIT_MEMLOCK)");
	char p[700];
	pack_sensitive(p, sizeof(p));
	struct quai_stream_opts o = {
	    .size = sizeof(o), .batch_records = 50, .tail = QUAI_TAIL_KEEP};
	quai_stream *s = open_stream(p, &o);
	/* Released blocks are reused by the next batches at once, so look at
	 * the last batch of the epoch, released when nothing follows it. */
	struct quai_batch b, last = {0};
	int n = 0;
	while (quai_next(s, &b) > 0) {
		if (last.internal)
			quai_release(s, &last);
		last = b;
		n++;
	}
	const uint8_t *data = last.data;
	uint64_t bytes = last.bytes;
	int zeros = 0;
	for (uint64_t i = 0; i < bytes; i++)
		zeros += data[i] == 0;
	cr_assert_eq(zeros, 0, "records hold no zero byte before release");
	quai_release(s, &last);
	/* The pool stays mapped: its bytes are readable, and must be 0. */
	for (uint64_t i = 0; i < bytes; i++)
		cr_assert_eq(data[i], 0, "byte %llu of a released sensitive batch survives",
			     (unsigned long long)i);
	cr_assert_gt(n, 10);
	quai_stream_close(s);
}

/* Runs fn(dataset) in a forked child and checks what it returned: 0 passes;
 * TU_CHILD_SKIP skips with `skip` (the machine cannot set the test up);
 * anything else fails. For tests that change the process's limits. */
#define TU_CHILD_SKIP 3
static void in_child(int (*fn)(const char *), const char *p, const char *skip)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(fn(p));
	int st;
	waitpid(pid, &st, 0);
	cr_assert(WIFEXITED(st));
	if (WEXITSTATUS(st) == TU_CHILD_SKIP)
		cr_skip_test("%s", skip);
	cr_assert_eq(WEXITSTATUS(st), 0, "child status %d", WEXITSTATUS(st));
}

/* A process that may not lock memory (but still reads the dataset,
 * whoever owns the scratch directory). */
static int unlocked_pool_child(const char *p)
{
	if (tu_forbid_mlock() < 0)
		return TU_CHILD_SKIP;
	quai_ctx *c;
	struct quai_ctx_opts co = {.size = sizeof(co),
				   .pinned_bytes = 16 << 20,
				   .workers = 1,
				   .flags = QUAI_CTX_UNLOCKED_OK,
				   .gpu = QUAI_GPU_NONE};
	char err[512];
	if (quai_ctx_new(&co, &c, err, sizeof(err)) < 0)
		return 4;
	struct quai_ctx_info ci = {.size = sizeof(ci)};
	quai_ctx_info(c, &ci);
	if (ci.locked) {
		quai_ctx_free(c);
		return TU_CHILD_SKIP; /* could lock after all: nothing to test */
	}
	quai_stream *s;
	int r = quai_stream_open(c, p, NULL, &s, err, sizeof(err));
	int ok = r == -QUAI_EPOLICY && strstr(err, "sensitive") && strstr(err, "locked");
	if (r == 0)
		quai_stream_close(s);
	quai_ctx_free(c);
	return ok ? 0 : 1;
}

Test(stream, sensitive_data_refuses_an_unlocked_pool)
{
	char p[700];
	pack_sensitive(p, sizeof(p));
	in_child(unlocked_pool_child, p, "cannot make a process that may not lock memory here");
}

Test(stream, bad_resume_states_are_refused)
{
	struct quai_stream_opts o = {.size = sizeof(o), .batch_records = 8};
	quai_stream *s = open_stream(fixed_path, &o);
	uint8_t state[QUAI_STATE_MAX];
	int n = quai_stream_state(s, state, sizeof(state));
	cr_assert_gt(n, 8);
	cr_assert_eq(quai_stream_state(s, state, 10), -ENOSPC);
	quai_stream_close(s);

	char err[512];
	uint8_t bad[QUAI_STATE_MAX];
	struct quai_stream_opts r = {.size = sizeof(r), .resume = bad, .resume_len = (size_t)n};
	/* Not a state at all, or cut short. */
	memset(bad, 0x5a, sizeof(bad));
	cr_assert_eq(quai_stream_open(ctx, fixed_path, &r, &s, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "not a quai stream state"), "%s", err);
	memcpy(bad, state, (size_t)n);
	r.resume_len = (size_t)n - 1;
	cr_assert_eq(quai_stream_open(ctx, fixed_path, &r, &s, err, sizeof(err)), -EINVAL);
	/* A newer version. */
	r.resume_len = (size_t)n;
	bad[4]++;
	cr_assert_eq(quai_stream_open(ctx, fixed_path, &r, &s, err, sizeof(err)), -QUAI_EVERSION);
	cr_assert(strstr(err, "version"), "%s", err);
	/* Another dataset's state. */
	bad[4]--;
	cr_assert_eq(quai_stream_open(ctx, ds_path, &r, &s, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "another dataset"), "%s", err);
	/* A flipped bit anywhere. */
	for (int bit = 0; bit < 8 * n; bit += 7) {
		memcpy(bad, state, (size_t)n);
		bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		cr_assert_lt(quai_stream_open(ctx, fixed_path, &r, &s, err, sizeof(err)), 0,
			     "bit %d", bit);
	}
	/* A version-1 state (the 64 bytes of earlier builds). */
	uint8_t v1[64] = {0x51, 0x54, 0x53, 0x31, 1};
	r.resume = v1;
	r.resume_len = sizeof(v1);
	cr_assert_eq(quai_stream_open(ctx, fixed_path, &r, &s, err, sizeof(err)), -QUAI_EVERSION);
	cr_assert(strstr(err, "version 1"), "%s", err);
	/* Options that contradict the state. */
	r.resume = state;
	r.resume_len = (size_t)n;
	r.seed = 99;
	cr_assert_eq(quai_stream_open(ctx, fixed_path, &r, &s, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "fixes the seed"), "%s", err);
	r.seed = 0;
	r.epoch = 4;
	cr_assert_eq(quai_stream_open(ctx, fixed_path, &r, &s, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "fixes the epoch"), "%s", err);
	r.epoch = 0;
	r.window = 3;
	cr_assert_eq(quai_stream_open(ctx, fixed_path, &r, &s, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "fixes the window"), "%s", err);
	r.window = 0;
	r.tail = QUAI_TAIL_PAD;
	cr_assert_eq(quai_stream_open(ctx, fixed_path, &r, &s, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "fixes the tail"), "%s", err);
	r.tail = 0;
	r.flags = QUAI_STREAM_NO_SHUFFLE;
	cr_assert_eq(quai_stream_open(ctx, fixed_path, &r, &s, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "fixes the shuffle"), "%s", err);
	r.flags = 0;
	r.partitions = 8;
	cr_assert_eq(quai_stream_open(ctx, fixed_path, &r, &s, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "partitions"), "%s", err);
	r.partitions = 0;
	cr_assert_eq(quai_stream_open(ctx, fixed_path, &r, &s, err, sizeof(err)), 0, "%s", err);
	quai_stream_close(s);
}

/* Incompressible records in frames of several blocks: libzstd stores them
 * raw, and the engine assembles batches straight from the frames it read
 * (no decompression copy), records straddling blocks included. */
static void pack_incompressible(char *out, size_t len, uint64_t seed)
{
	char in[600];
	snprintf(in, sizeof(in), "%s/noise-%llu.bin", dir, (unsigned long long)seed);
	size_t n = 3000 * 1000;
	uint8_t *buf = malloc(n);
	tu_fill(buf, n, seed, 256);
	tu_write(in, buf, n);
	free(buf);
	snprintf(out, len, "%s/noise-%llu", dir, (unsigned long long)seed);
	const char *srcs[] = {in};
	struct quai_pack_opts o = {.size = sizeof(o),
				   .kind = QUAI_RECORDS_FIXED,
				   .fixed_size = 1000,
				   .frame_size = 512 << 10,
				   .shard_size = 1 << 20};
	cr_assert_eq(tu_pack(srcs, 1, out, &o).records, 3000);
}

Test(stream, incompressible_frames_are_assembled_in_place)
{
	char p[700];
	pack_incompressible(p, sizeof(p), 31);
	for (int shuffle = 0; shuffle < 2; shuffle++) {
		struct quai_stream_opts o = {.size = sizeof(o),
					     .seed = 5,
					     .window = 3,
					     .flags = shuffle ? 0 : QUAI_STREAM_NO_SHUFFLE,
					     .batch_records = 37,
					     .tail = QUAI_TAIL_KEEP};
		quai_stream *s = open_stream(p, &o);
		uint8_t *seen = calloc(3000, 1);
		cr_assert_eq(drain(s, p, seen, UINT64_MAX, NULL, NULL), 3000);
		struct quai_stream_stats st = {.size = sizeof(st)};
		quai_stream_stats(s, &st);
		cr_assert_gt(st.frames_read, 0);
		cr_assert_eq(st.frames_in_place, st.frames_read, "%llu of %llu frames in place",
			     (unsigned long long)st.frames_in_place,
			     (unsigned long long)st.frames_read);
		quai_stream_close(s);
		free(seen);
	}
	/* A compressible dataset: no frame is stored raw. */
	struct quai_stream_opts o = {.size = sizeof(o), .tail = QUAI_TAIL_KEEP};
	quai_stream *s = open_stream(ds_path, &o);
	drain(s, ds_path, NULL, UINT64_MAX, NULL, NULL);
	struct quai_stream_stats st = {.size = sizeof(st)};
	quai_stream_stats(s, &st);
	cr_assert_eq(st.frames_in_place, 0);
	quai_stream_close(s);
}

Test(stream, corrupt_stored_frame_is_never_delivered)
{
	char p[700];
	pack_incompressible(p, sizeof(p), 32);
	quai_dataset *ds;
	cr_assert_eq(quai_dataset_open(p, &ds, NULL, 0), 0);
	struct quai_record_loc loc;
	quai_dataset_locate(ds, 1500, &loc);
	quai_dataset_close(ds);
	/* Fixed records of 1000 bytes: whole ones in each frame. */
	uint64_t first = 1500 - loc.offset / 1000, count = loc.frame_rsize / 1000;
	char shard[64];
	snprintf(shard, sizeof(shard), "shard-%05u.zst", loc.shard);
	/* Well inside the frame: a raw byte of some record. */
	flip(p, shard, loc.frame_offset + loc.frame_csize / 3);
	struct quai_stream_opts o = {.size = sizeof(o),
				     .flags = QUAI_STREAM_NO_SHUFFLE,
				     .batch_records = 10,
				     .tail = QUAI_TAIL_KEEP};
	quai_stream *s = open_stream(p, &o);
	struct quai_batch b;
	int r;
	uint64_t n = 0;
	while ((r = quai_next(s, &b)) > 0) {
		for (uint32_t i = 0; i < b.count; i++)
			cr_assert(b.ids[i] < first || b.ids[i] >= first + count,
				  "record %llu of the damaged frame was delivered",
				  (unsigned long long)b.ids[i]);
		n += b.count;
		quai_release(s, &b);
	}
	cr_assert_eq(r, -QUAI_ECORRUPT);
	cr_assert(strstr(quai_stream_error(s), shard), "%s", quai_stream_error(s));
	cr_assert_leq(n, first);
	quai_stream_close(s);
}

/* Outside the pool, a sensitive dataset's bytes are read only into locked
 * buffers (common/secmem.h): where memory cannot be locked, readers and
 * quai_verify() refuse; other datasets are unaffected. */
static int locked_readers_child(const char *p)
{
	struct rlimit none = {0, 0};
	if (tu_forbid_mlock() < 0 || setrlimit(RLIMIT_MEMLOCK, &none) < 0)
		return TU_CHILD_SKIP;
	quai_dataset *ds, *plain;
	quai_reader *rd;
	if (quai_dataset_open(p, &ds, NULL, 0) < 0 ||
	    quai_dataset_open(fixed_path, &plain, NULL, 0) < 0)
		return 4;
	int bad = 0;
	bad |= quai_reader_new(ds, &rd) != -QUAI_EPOLICY;
	if (quai_reader_new(plain, &rd) == 0)
		quai_reader_free(rd);
	else
		bad |= 2;
	struct quai_verify_opts vo = {.size = sizeof(vo), .threads = 1};
	bad |= (quai_verify(p, &vo, NULL) != -QUAI_EPOLICY) << 2;
	bad |= (quai_verify(fixed_path, &vo, NULL) != 0) << 3;
	quai_dataset_close(ds);
	quai_dataset_close(plain);
	return bad ? 10 + bad : 0;
}

Test(stream, sensitive_readers_and_verify_need_locked_memory)
{
	char p[700];
	pack_sensitive(p, sizeof(p));
	in_child(locked_readers_child, p, "cannot make a process that may not lock memory here");
	/* Where it can, the same reads work. */
	quai_dataset *ds;
	quai_reader *rd;
	cr_assert_eq(quai_dataset_open(p, &ds, NULL, 0), 0);
	cr_assert_eq(quai_reader_new(ds, &rd), 0);
	const void *d;
	size_t len;
	cr_assert_eq(quai_reader_record(rd, 3, &d, &len), 0);
	cr_assert_eq(len, 100);
	quai_reader_free(rd);
	quai_dataset_close(ds);
}

Test(stream, local_access_to_sensitive_data_asks_the_host)
{
	/* quai_dataset_allow(), and quai_unpack() and quai_pack(), which ask
	 * it themselves: in the zone, under the sovereign paths, or not at
	 * all (host_zone() declares `dir` sovereign). */
	char p[700], out[800], err[1024];
	pack_sensitive(p, sizeof(p)); /* on a host of zone fr-1 */
	quai_dataset *ds;
	cr_assert_eq(quai_dataset_open(p, &ds, NULL, 0), 0);
	cr_assert_eq(quai_dataset_allow(ds, "read", NULL, err, sizeof(err)), 0, "%s", err);
	snprintf(out, sizeof(out), "%s/restored.bin", dir);
	cr_assert_eq(quai_unpack(p, out, err, sizeof(err)), 0, "%s", err);

	char elsewhere[] = "/tmp/quai-not-sovereign-XXXXXX";
	cr_assert_not_null(mkdtemp(elsewhere));
	snprintf(out, sizeof(out), "%s/restored.bin", elsewhere);
	err[0] = '\0';
	cr_assert_eq(quai_unpack(p, out, err, sizeof(err)), -QUAI_EPOLICY);
	cr_assert(strstr(err, "not a sovereign path"), "%s", err);
	cr_assert_eq(quai_dataset_allow(ds, "cat", out, err, sizeof(err)), -QUAI_EPOLICY);
	DIR *d = opendir(elsewhere);
	int entries = 0;
	for (struct dirent *e; (e = readdir(d));)
		entries += e->d_name[0] != '.';
	closedir(d);
	cr_assert_eq(entries, 0, "a refused unpack writes nothing");
	rmdir(elsewhere);

	host_zone("de-1");
	cr_assert_eq(quai_dataset_allow(ds, "read", NULL, err, sizeof(err)), -QUAI_EPOLICY);
	cr_assert(strstr(err, "this host is in zone de-1"), "%s", err);
	const char *srcs[] = {out};
	struct quai_pack_opts o = {.size = sizeof(o),
				   .kind = QUAI_RECORDS_FIXED,
				   .fixed_size = 100,
				   .classification = QUAI_CLASS_SENSITIVE,
				   .zone = "fr-1"};
	snprintf(out, sizeof(out), "%s/repacked", dir);
	struct quai_pack_result res;
	cr_assert_eq(quai_pack(srcs, 1, out, &o, &res, err, sizeof(err)), -QUAI_EPOLICY);
	cr_assert(access(out, F_OK) != 0);
	quai_dataset_close(ds);
}

/* Room in RLIMIT_MEMLOCK for the pool and not for the workers'
 * decompression contexts: the pool is locked, the contexts are not, and a
 * sensitive stream is refused saying so; others still run. */
static int locked_contexts_child(const char *p)
{
	if (tu_limit_mlock((4 << 20) + (32 << 10)) < 0)
		return TU_CHILD_SKIP;
	quai_ctx *c;
	struct quai_ctx_opts co = {.size = sizeof(co),
				   .pinned_bytes = 4 << 20,
				   .workers = 2,
				   .flags = QUAI_CTX_UNLOCKED_OK | QUAI_CTX_NO_HUGEPAGES,
				   .gpu = QUAI_GPU_NONE};
	char err[512];
	if (quai_ctx_new(&co, &c, err, sizeof(err)) < 0)
		return 4;
	struct quai_ctx_info ci = {.size = sizeof(ci)};
	quai_ctx_info(c, &ci);
	if (!ci.locked) {
		quai_ctx_free(c);
		return TU_CHILD_SKIP; /* the pool itself did not fit */
	}
	quai_stream *s;
	int r = quai_stream_open(c, p, NULL, &s, err, sizeof(err));
	int bad = !(r == -QUAI_EPOLICY && strstr(err, "decompression contexts"));
	if (r == 0)
		quai_stream_close(s);
	struct quai_stream_opts o = {.size = sizeof(o), .tail = QUAI_TAIL_KEEP};
	r = quai_stream_open(c, fixed_path, &o, &s, err, sizeof(err));
	if (r == 0) {
		struct quai_batch b;
		while ((r = quai_next(s, &b)) > 0)
			quai_release(s, &b);
		quai_stream_close(s);
	}
	bad |= (r != 0) << 1;
	quai_ctx_free(c);
	return bad ? 10 + bad : 0;
}

Test(stream, sensitive_data_needs_locked_decompression_contexts)
{
	char p[700];
	pack_sensitive(p, sizeof(p));
	in_child(locked_contexts_child, p,
		 "cannot make a process whose memory lock fits the pool only");
}
