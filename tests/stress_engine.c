/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A plain program (no Criterion, so that it runs under ThreadSanitizer)
 * that drives the staging engine hard from several threads: ranks of one
 * epoch on one context, streams closed with batches still held and reads in
 * flight, and a stream failing on a corrupt frame while others run. Exits
 * non-zero on any wrong record; the sanitizers report races and leaks.
 *
 * Usage: stress_engine SCRATCH_DIR
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quai/quai.h"

#define RECORDS 6000u
#define RSIZE 200u

static quai_ctx *ctx;
static char ds_path[4096], noise_path[4096], bad_path[4096];
static int failures;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *what)
{
	pthread_mutex_lock(&mu);
	failures++;
	fprintf(stderr, "stress_engine: %s\n", what);
	pthread_mutex_unlock(&mu);
}

/* Record i holds bytes derived from i, so a batch checks itself: a
 * pattern zstd compresses, or (noise) bytes it cannot, which it stores raw
 * and the engine reads in place. */
static uint8_t byte_of(uint64_t rec, uint32_t k, int noise)
{
	if (!noise)
		return (uint8_t)(rec * 31 + k * 7 + (rec >> 8));
	uint64_t x = rec * RSIZE + k + 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return (uint8_t)(x ^ (x >> 31));
}

static int make_dataset(const char *dir, const char *name, int noise, char *out, size_t len)
{
	char src[4096];
	snprintf(src, sizeof(src), "%s/%s.bin", dir, name);
	FILE *f = fopen(src, "wb");
	if (!f)
		return -errno;
	for (uint64_t i = 0; i < RECORDS; i++)
		for (uint32_t k = 0; k < RSIZE; k++)
			fputc(byte_of(i, k, noise), f);
	fclose(f);
	snprintf(out, len, "%s/%s", dir, name);
	const char *srcs[] = {src};
	struct quai_pack_opts o = {.size = sizeof(o),
				   .kind = QUAI_RECORDS_FIXED,
				   .fixed_size = RSIZE,
				   /* noise: frames of several blocks, so
				    * that records straddle them */
				   .frame_size = noise ? 140 << 10 : 16384,
				   .shard_size = noise ? 1 << 20 : 64 << 10,
				   .threads = 2};
	char err[256];
	int r = quai_pack(srcs, 1, out, &o, NULL, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "pack: %s\n", err);
	return r;
}

struct rank_arg {
	const char *path;
	int noise;
	uint32_t rank, world;
	uint8_t *seen;
	int hold_and_close; /* close early, batches held */
};

static void *rank_main(void *p)
{
	struct rank_arg *a = p;
	struct quai_stream_opts o = {.size = sizeof(o),
				     .rank = a->rank,
				     .world = a->world,
				     .seed = 99,
				     .batch_records = 24,
				     .memory_budget = 4 << 20,
				     .tail = QUAI_TAIL_KEEP};
	quai_stream *s;
	char err[256];
	if (quai_stream_open(ctx, a->path, &o, &s, err, sizeof(err)) < 0) {
		fail(err);
		return NULL;
	}
	struct quai_batch b, held;
	int have_held = 0, r;
	uint64_t n = 0;
	while ((r = quai_next(s, &b)) > 0) {
		for (uint32_t i = 0; i < b.count; i++) {
			const uint8_t *d = b.data + b.offsets[i];
			for (uint32_t k = 0; k < RSIZE; k++)
				if (d[k] != byte_of(b.ids[i], k, a->noise)) {
					fail("a record's bytes are wrong");
					break;
				}
			if (a->seen)
				__atomic_add_fetch(&a->seen[b.ids[i]], 1, __ATOMIC_RELAXED);
		}
		n++;
		if (a->hold_and_close && n == 3) {
			held = b; /* keep it, and close with it held */
			have_held = 1;
			break;
		}
		quai_release(s, &b);
	}
	if (r < 0)
		fail(quai_stream_error(s));
	(void)have_held;
	(void)held;
	quai_stream_close(s);
	return NULL;
}

static void *corrupt_main(void *p)
{
	(void)p;
	struct quai_stream_opts o = {
	    .size = sizeof(o), .batch_records = 16, .memory_budget = 4 << 20};
	quai_stream *s;
	char err[256];
	if (quai_stream_open(ctx, bad_path, &o, &s, err, sizeof(err)) < 0) {
		fail(err);
		return NULL;
	}
	struct quai_batch b;
	int r;
	while ((r = quai_next(s, &b)) > 0) {
		for (uint32_t i = 0; i < b.count; i++)
			for (uint32_t k = 0; k < RSIZE; k++)
				if (b.data[b.offsets[i] + k] != byte_of(b.ids[i], k, 0)) {
					fail("corrupt bytes were handed out");
					k = RSIZE;
				}
		quai_release(s, &b);
	}
	if (r != -QUAI_ECORRUPT)
		fail("the corrupt dataset did not fail with -QUAI_ECORRUPT");
	quai_stream_close(s);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: stress_engine SCRATCH_DIR\n");
		return 2;
	}
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/stress-XXXXXX", argv[1]);
	mkdir(argv[1], 0755);
	if (!mkdtemp(dir) || make_dataset(dir, "ok", 0, ds_path, sizeof(ds_path)) < 0 ||
	    make_dataset(dir, "noise", 1, noise_path, sizeof(noise_path)) < 0 ||
	    make_dataset(dir, "bad", 0, bad_path, sizeof(bad_path)) < 0)
		return 1;
	/* One flipped byte in the bad dataset's first frame. */
	char shard[4200];
	snprintf(shard, sizeof(shard), "%s/shard-00000.zst", bad_path);
	int fd = open(shard, O_RDWR);
	uint8_t byte;
	if (fd < 0 || pread(fd, &byte, 1, 300) != 1)
		return 1;
	byte ^= 0x08;
	if (pwrite(fd, &byte, 1, 300) != 1)
		return 1;
	close(fd);

	struct quai_ctx_opts co = {.size = sizeof(co),
				   .pinned_bytes = 64 << 20,
				   .workers = 3,
				   .flags = QUAI_CTX_UNLOCKED_OK,
				   .gpu = QUAI_GPU_NONE};
	char err[256];
	if (quai_ctx_new(&co, &ctx, err, sizeof(err)) < 0) {
		fprintf(stderr, "ctx: %s\n", err);
		return 1;
	}
	for (int round = 0; round < 4; round++) {
		/* Odd rounds: the incompressible dataset. */
		int noise = round % 2;
		const char *path = noise ? noise_path : ds_path;
		uint8_t *seen = calloc(RECORDS, 1);
		struct rank_arg ra[4];
		pthread_t th[6];
		for (uint32_t r = 0; r < 4; r++) {
			ra[r] = (struct rank_arg){
			    .path = path, .noise = noise, .rank = r, .world = 4, .seen = seen};
			pthread_create(&th[r], NULL, rank_main, &ra[r]);
		}
		struct rank_arg early = {
		    .path = path, .noise = noise, .rank = 0, .world = 1, .hold_and_close = 1};
		pthread_create(&th[4], NULL, rank_main, &early);
		pthread_create(&th[5], NULL, corrupt_main, NULL);
		for (int i = 0; i < 6; i++)
			pthread_join(th[i], NULL);
		for (uint64_t i = 0; i < RECORDS; i++)
			if (seen[i] != 1) {
				fprintf(stderr, "stress_engine: record %llu seen %u times\n",
					(unsigned long long)i, seen[i]);
				failures++;
				break;
			}
		free(seen);
	}
	quai_ctx_free(ctx);
	printf("stress_engine: %s\n", failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}
