/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Allocation failures on the engine's opening path, injected by this
 * program's own calloc() and malloc(), which the statically linked library
 * calls (so this suite is built without sanitizers, which own those).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

void *__libc_calloc(size_t n, size_t size);
void *__libc_malloc(size_t size);

/* Armed: calloc(armed_n, 1) fails, and malloc(armed_n * sizeof(int))
 * returns zeroed memory (so that descriptors never set read as fd 0). */
static atomic_size_t armed_n;

void *calloc(size_t n, size_t size)
{
	size_t a = atomic_load(&armed_n);
	if (a && n == a && size == 1) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_calloc(n, size);
}

void *malloc(size_t size)
{
	void *p = __libc_malloc(size);
	size_t a = atomic_load(&armed_n);
	if (p && a && size == a * sizeof(int))
		memset(p, 0, size);
	return p;
}

/* Regression: open_shards() set the shard descriptors to -1 only after its
 * second allocation (the O_DIRECT flags) had succeeded; when that one
 * failed, closing the stream closed whatever the first held: fd 0 here. */
Test(oom, failed_open_closes_no_descriptor_it_did_not_open)
{
	char dir[512], in[600], ds[600], err[256];
	tu_mkdtemp(dir, sizeof(dir));
	snprintf(in, sizeof(in), "%s/in.bin", dir);
	snprintf(ds, sizeof(ds), "%s/ds", dir);
	size_t len = 200000;
	uint8_t *buf = __libc_malloc(len);
	tu_fill(buf, len, 3, 256);
	tu_write(in, buf, len);
	free(buf);
	const char *srcs[] = {in};
	struct quai_pack_opts o = {.size = sizeof(o),
				   .kind = QUAI_RECORDS_FIXED,
				   .fixed_size = 1000,
				   .frame_size = QUAI_FRAME_SIZE_MIN,
				   .shard_size = 64 << 10};
	tu_pack(srcs, 1, ds, &o);
	quai_dataset *d;
	cr_assert_eq(quai_dataset_open(ds, &d, err, sizeof(err)), 0, "%s", err);
	struct quai_dataset_info info = {.size = sizeof(info)};
	cr_assert_eq(quai_dataset_info(d, &info), 0);
	quai_dataset_close(d);
	cr_assert_geq(info.shards, 3, "%u shards", info.shards);

	quai_ctx *ctx;
	struct quai_ctx_opts co = {.size = sizeof(co),
				   .pinned_bytes = 16 << 20,
				   .workers = 1,
				   .flags = QUAI_CTX_UNLOCKED_OK,
				   .gpu = QUAI_GPU_NONE};
	cr_assert_eq(quai_ctx_new(&co, &ctx, err, sizeof(err)), 0, "%s", err);
	/* A descriptor 0 to lose: this process's own, checked after. */
	if (fcntl(0, F_GETFD) < 0)
		cr_assert_eq(open("/dev/null", O_RDONLY), 0);

	quai_stream *s = NULL;
	atomic_store(&armed_n, info.shards);
	int r = quai_stream_open(ctx, ds, NULL, &s, err, sizeof(err));
	atomic_store(&armed_n, 0);
	cr_expect_eq(r, -ENOMEM, "%d: %s", r, err);
	cr_expect_null(s);
	cr_expect_geq(fcntl(0, F_GETFD), 0, "the failed open closed fd 0");
	quai_ctx_free(ctx);
	tu_rmtree(dir);
}
