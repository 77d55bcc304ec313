/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The memcpy limit for bench/run: copy bandwidth of libc memcpy() over a
 * buffer far larger than the caches, on 1..N threads. bench/run compiles it
 * with `cc -O2 -pthread` into bench/cache/ on first use.
 *
 * Usage: memcpy_bw TOTAL_BYTES THREADS PASSES
 * Each thread copies its own TOTAL/THREADS slice PASSES times after one
 * untimed pass (which also faults the pages in). Prints one line:
 * "<bytes copied> <seconds>" for the timed passes, bytes counted once per
 * copy (a copy reads and writes each byte).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct slice {
	char *src, *dst;
	size_t len;
	int passes;
	pthread_barrier_t *start, *warm;
};

static void *copier(void *arg)
{
	struct slice *s = arg;
	memset(s->src, 0x5a, s->len);
	memset(s->dst, 0, s->len);
	memcpy(s->dst, s->src, s->len);
	pthread_barrier_wait(s->warm);
	pthread_barrier_wait(s->start);
	for (int i = 0; i < s->passes; i++) {
		s->src[i] = (char)i; /* keep the compiler from merging passes */
		memcpy(s->dst, s->src, s->len);
	}
	return NULL;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s TOTAL_BYTES THREADS PASSES\n", argv[0]);
		return 2;
	}
	size_t total = strtoull(argv[1], NULL, 0);
	int nthreads = atoi(argv[2]), passes = atoi(argv[3]);
	if (nthreads < 1 || passes < 1 || total < (size_t)nthreads * 4096) {
		fprintf(stderr, "memcpy_bw: bad arguments\n");
		return 2;
	}
	size_t per = total / nthreads / 64 * 64;
	char *src = aligned_alloc(4096, (per * nthreads + 4095) / 4096 * 4096);
	char *dst = aligned_alloc(4096, (per * nthreads + 4095) / 4096 * 4096);
	pthread_t *tids = calloc(nthreads, sizeof(*tids));
	struct slice *sl = calloc(nthreads, sizeof(*sl));
	pthread_barrier_t warm, start;
	if (!src || !dst || !tids || !sl) {
		fprintf(stderr, "memcpy_bw: out of memory\n");
		return 1;
	}
	pthread_barrier_init(&warm, NULL, nthreads + 1);
	pthread_barrier_init(&start, NULL, nthreads + 1);
	for (int t = 0; t < nthreads; t++) {
		sl[t] = (struct slice){src + per * t, dst + per * t, per, passes, &start, &warm};
		pthread_create(&tids[t], NULL, copier, &sl[t]);
	}
	pthread_barrier_wait(&warm);
	double t0 = now();
	pthread_barrier_wait(&start);
	for (int t = 0; t < nthreads; t++)
		pthread_join(tids[t], NULL);
	double t1 = now();
	printf("%zu %.9f\n", per * nthreads * (size_t)passes, t1 - t0);
	return 0;
}
