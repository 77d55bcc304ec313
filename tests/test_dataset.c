/* SPDX-License-Identifier: Apache-2.0 */
/* Pack, open, read and unpack through the public API, for every record kind
 * and the edge cases of frame cutting. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <xxhash.h>

#include "beneath.h"
#include "dataset.h"
#include "testutil.h"

static char dir[512];

static void setup(void)
{
	tu_mkdtemp(dir, sizeof(dir));
}

static void teardown(void)
{
	tu_rmtree(dir);
}

TestSuite(dataset, .init = setup, .fini = teardown);

static char *path(const char *name)
{
	static char buf[8][640];
	static int k;
	char *p = buf[k++ % 8];
	snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
	return p;
}

static quai_dataset *open_ds(const char *p)
{
	quai_dataset *ds;
	char err[256];
	int r = quai_dataset_open(p, &ds, err, sizeof(err));
	cr_assert_eq(r, 0, "open %s: %s", p, err);
	return ds;
}

/* Decodes every frame of a shard file the way `zstd -d` does: frame after
 * frame, skipping the skippable seek table. */
static uint8_t *zstd_d(const char *file, size_t *ret_len)
{
	size_t clen;
	uint8_t *c = tu_read(file, &clen);
	size_t cap = 1 << 20, len = 0;
	uint8_t *out = malloc(cap);
	ZSTD_DStream *ds = ZSTD_createDStream();
	ZSTD_inBuffer in = {c, clen, 0};
	while (in.pos < in.size) {
		if (cap - len < ZSTD_DStreamOutSize()) {
			cap *= 2;
			out = realloc(out, cap);
		}
		ZSTD_outBuffer o = {out + len, cap - len, 0};
		size_t r = ZSTD_decompressStream(ds, &o, &in);
		cr_assert(!ZSTD_isError(r), "%s", ZSTD_getErrorName(r));
		len += o.pos;
	}
	ZSTD_freeDStream(ds);
	free(c);
	*ret_len = len;
	return out;
}

/* The concatenation of all records equals `want`, read through a reader in
 * order and in reverse, and the shards decode to the same bytes. */
static void check_stream(const char *p, const uint8_t *want, size_t want_len, uint64_t records)
{
	quai_dataset *ds = open_ds(p);
	quai_reader *r;
	struct quai_dataset_info info = {.size = sizeof(info)};
	cr_assert_eq(quai_dataset_info(ds, &info), 0);
	cr_assert_eq(info.records, records);
	cr_assert_eq(info.raw_bytes, want_len);
	cr_assert_eq(quai_reader_new(ds, &r), 0);
	size_t off = 0;
	for (uint64_t i = 0; i < records; i++) {
		const void *d;
		size_t l;
		cr_assert_eq(quai_reader_record(r, i, &d, &l), 0);
		cr_assert_leq(off + l, want_len);
		cr_assert(memcmp(d, want + off, l) == 0, "record %llu", (unsigned long long)i);
		off += l;
	}
	cr_assert_eq(off, want_len);
	const void *d;
	size_t l;
	cr_assert_eq(quai_reader_record(r, records, &d, &l), -ERANGE);

	quai_reader_free(r);
	quai_dataset_close(ds);
}

static void check_zstd_d(const char *p, const uint8_t *want, size_t want_len)
{
	quai_dataset *ds = open_ds(p);
	struct quai_dataset_info info = {.size = sizeof(info)};
	quai_dataset_info(ds, &info);
	size_t off = 0;
	for (uint32_t s = 0; s < info.shards; s++) {
		struct quai_shard_info si = {.size = sizeof(si)};
		quai_dataset_shard(ds, s, &si);
		char f[1024];
		snprintf(f, sizeof(f), "%s/%s", p, si.file);
		size_t zl;
		uint8_t *z = zstd_d(f, &zl);
		cr_assert_leq(off + zl, want_len);
		cr_assert(memcmp(z, want + off, zl) == 0, "shard %u", s);
		off += zl;
		free(z);
	}
	cr_assert_eq(off, want_len);
	quai_dataset_close(ds);
}

Test(dataset, lines_round_trip_with_edge_records)
{
	/* Empty lines, a last line without newline, and a line longer than a
	 * frame (4 KiB) that must get a frame of its own. */
	size_t big = 10000;
	size_t len = 0, cap = 64 + big + 64;
	uint8_t *in = malloc(cap);
	len += (size_t)sprintf((char *)in, "first\n\n\nsecond\n");
	memset(in + len, 'x', big);
	len += big;
	in[len++] = '\n';
	len += (size_t)sprintf((char *)in + len, "tail without newline");
	tu_write(path("in.txt"), in, len);

	const char *srcs[] = {path("in.txt")};
	struct quai_pack_opts o = {.size = sizeof(o),
				   .kind = QUAI_RECORDS_LINES,
				   .frame_size = QUAI_FRAME_SIZE_MIN,
				   .threads = 2};
	struct quai_pack_result res = tu_pack(srcs, 1, path("ds"), &o);
	cr_assert_eq(res.records, 6);
	cr_assert_geq(res.frames, 3);
	check_stream(path("ds"), in, len, 6);
	check_zstd_d(path("ds"), in, len);

	quai_dataset *ds = open_ds(path("ds"));
	struct quai_record_loc loc;
	cr_assert_eq(quai_dataset_locate(ds, 4, &loc), 0);
	cr_assert_eq(loc.length, big + 1);
	cr_assert_eq(loc.offset, 0, "the big record starts its own frame");
	cr_assert_eq(loc.frame_rsize, big + 1);
	cr_assert_eq(quai_dataset_locate(ds, 1, &loc), 0);
	cr_assert_eq(loc.length, 1);
	quai_dataset_close(ds);

	cr_assert_eq(quai_unpack(path("ds"), path("out.txt"), NULL, 0), 0);
	size_t ol;
	uint8_t *out = tu_read(path("out.txt"), &ol);
	cr_assert_eq(ol, len);
	cr_assert(memcmp(out, in, len) == 0);
	free(out);
	free(in);
}

Test(dataset, fixed_records_span_shards)
{
	size_t n = 3000, rs = 100;
	uint8_t *in = malloc(n * rs);
	tu_fill(in, n * rs, 7, 256);
	tu_write(path("tok.bin"), in, n * rs);
	const char *srcs[] = {path("tok.bin")};
	struct quai_pack_opts o = {.size = sizeof(o),
				   .kind = QUAI_RECORDS_FIXED,
				   .fixed_size = (uint32_t)rs,
				   .frame_size = 8192,
				   .shard_size = QUAI_SHARD_SIZE_MIN,
				   .level = 1};
	struct quai_pack_result res = tu_pack(srcs, 1, path("ds"), &o);
	cr_assert_eq(res.records, n);
	cr_assert_geq(res.shards, 4);
	cr_assert_eq(res.frames, (n + 80) / 81, "81 records of 100 bytes fit in 8 KiB");
	check_stream(path("ds"), in, n * rs, n);
	check_zstd_d(path("ds"), in, n * rs);
	free(in);
}

Test(dataset, fixed_record_larger_than_a_frame)
{
	size_t rs = 20000, n = 5;
	uint8_t *in = malloc(n * rs);
	tu_fill(in, n * rs, 3, 16);
	tu_write(path("big.bin"), in, n * rs);
	const char *srcs[] = {path("big.bin")};
	struct quai_pack_opts o = {.size = sizeof(o),
				   .kind = QUAI_RECORDS_FIXED,
				   .fixed_size = (uint32_t)rs,
				   .frame_size = QUAI_FRAME_SIZE_MIN};
	struct quai_pack_result res = tu_pack(srcs, 1, path("ds"), &o);
	cr_assert_eq(res.frames, n);
	check_stream(path("ds"), in, n * rs, n);
	free(in);
}

Test(dataset, files_round_trip_names_and_bytes)
{
	mkdir(path("src"), 0755);
	mkdir(path("src/b"), 0755);
	mkdir(path("src/b/c"), 0755);
	uint8_t blob[9000];
	tu_fill(blob, sizeof(blob), 1, 256);
	tu_write(path("src/b/c/deep.bin"), blob, sizeof(blob));
	tu_write(path("src/a.txt"), "alpha", 5);
	tu_write(path("src/empty"), "", 0);
	tu_write(path("src/\xff\xfe-not-utf8"), "raw name", 8);
	cr_assert_eq(symlink("a.txt", path("src/link-to-a")), 0);

	const char *srcs[] = {path("src")};
	struct quai_pack_opts o = {.size = sizeof(o), .frame_size = QUAI_FRAME_SIZE_MIN};
	struct quai_pack_result res = tu_pack(srcs, 1, path("ds"), &o);
	cr_assert_eq(res.records, 5);

	/* Byte-wise order of relative names. */
	const char *order[] = {"a.txt", "b/c/deep.bin", "empty", "link-to-a", "\xff\xfe-not-utf8"};
	quai_dataset *ds = open_ds(path("ds"));
	for (uint64_t i = 0; i < 5; i++) {
		const char *nm;
		size_t nl;
		cr_assert_eq(quai_dataset_record_name(ds, i, &nm, &nl), 0);
		cr_assert_eq(nl, strlen(order[i]));
		cr_assert(memcmp(nm, order[i], nl) == 0, "record %llu", (unsigned long long)i);
	}
	quai_dataset_close(ds);

	cr_assert_eq(quai_unpack(path("ds"), path("out"), NULL, 0), 0);
	size_t l;
	uint8_t *d = tu_read(path("out/b/c/deep.bin"), &l);
	cr_assert_eq(l, sizeof(blob));
	cr_assert(memcmp(d, blob, l) == 0);
	free(d);
	d = tu_read(path("out/\xff\xfe-not-utf8"), &l);
	cr_assert_eq(l, 8);
	free(d);
	d = tu_read(path("out/link-to-a"), &l);
	cr_assert(l == 5 && memcmp(d, "alpha", 5) == 0);
	free(d);
	d = tu_read(path("out/empty"), &l);
	cr_assert_eq(l, 0);
	free(d);
}

Test(dataset, one_record_and_a_million_tiny_ones)
{
	tu_write(path("one.txt"), "x", 1);
	const char *one[] = {path("one.txt")};
	struct quai_pack_opts o = {.size = sizeof(o), .kind = QUAI_RECORDS_LINES};
	struct quai_pack_result res = tu_pack(one, 1, path("ds1"), &o);
	cr_assert_eq(res.records, 1);
	check_stream(path("ds1"), (const uint8_t *)"x", 1, 1);

	size_t n = 1000000;
	uint8_t *in = malloc(2 * n);
	for (size_t i = 0; i < n; i++) {
		in[2 * i] = (uint8_t)('a' + i % 26);
		in[2 * i + 1] = '\n';
	}
	tu_write(path("tiny.txt"), in, 2 * n);
	const char *tiny[] = {path("tiny.txt")};
	o.frame_size = 64 << 10;
	res = tu_pack(tiny, 1, path("ds2"), &o);
	cr_assert_eq(res.records, n);
	check_stream(path("ds2"), in, 2 * n, n);
	free(in);
}

static int same_file(const char *a, const char *b)
{
	size_t la, lb;
	uint8_t *x = tu_read(a, &la), *y = tu_read(b, &lb);
	int same = la == lb && memcmp(x, y, la) == 0;
	free(x);
	free(y);
	return same;
}

Test(dataset, output_does_not_depend_on_threads)
{
	tu_write_lines(path("in.txt"), 3 << 20, 11, 16, 0, 7919, 3000);
	const char *srcs[] = {path("in.txt")};
	struct quai_pack_opts o = {.size = sizeof(o),
				   .kind = QUAI_RECORDS_LINES,
				   .frame_size = 64 << 10,
				   .shard_size = 512 << 10,
				   .name = "same",
				   .created = "2026-01-01T00:00:00Z"};
	o.threads = 1;
	tu_pack(srcs, 1, path("t1"), &o);
	o.threads = 4;
	tu_pack(srcs, 1, path("t4"), &o);
	DIR *d = opendir(path("t1"));
	struct dirent *de;
	int files = 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char a[1024], b[1024];
		snprintf(a, sizeof(a), "%s/t1/%s", dir, de->d_name);
		snprintf(b, sizeof(b), "%s/t4/%s", dir, de->d_name);
		cr_assert(same_file(a, b), "%s differs", de->d_name);
		files++;
	}
	closedir(d);
	cr_assert_geq(files, 5);
}

Test(dataset, bad_input_leaves_nothing)
{
	char err[512];
	struct quai_pack_opts o = {
	    .size = sizeof(o), .kind = QUAI_RECORDS_FIXED, .fixed_size = 512};
	tu_write(path("odd.bin"), "123", 3);
	const char *odd[] = {path("odd.bin")};
	cr_assert_eq(quai_pack(odd, 1, path("ds"), &o, NULL, err, sizeof(err)), -QUAI_EINPUT);
	cr_assert(strstr(err, "not a multiple of the record size 512"), "%s", err);
	cr_assert(strstr(err, "odd.bin"), "%s", err);

	const char *missing[] = {path("nope")};
	o.kind = QUAI_RECORDS_FILES;
	cr_assert_eq(quai_pack(missing, 1, path("ds"), &o, NULL, err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, "nope"), "%s", err);

	mkdir(path("emptydir"), 0755);
	const char *empty[] = {path("emptydir")};
	cr_assert_eq(quai_pack(empty, 1, path("ds"), &o, NULL, err, sizeof(err)), -QUAI_EINPUT);

	tu_write(path("empty.txt"), "", 0);
	const char *el[] = {path("empty.txt")};
	o.kind = QUAI_RECORDS_LINES;
	cr_assert_eq(quai_pack(el, 1, path("ds"), &o, NULL, err, sizeof(err)), -QUAI_EINPUT);
	cr_assert(strstr(err, "no records"), "%s", err);

	mkdir(path("exists"), 0755);
	tu_write(path("ok.txt"), "a\n", 2);
	const char *ok[] = {path("ok.txt")};
	cr_assert_eq(quai_pack(ok, 1, path("exists"), &o, NULL, err, sizeof(err)), -QUAI_EEXISTS);

	o.frame_size = 1;
	cr_assert_eq(quai_pack(ok, 1, path("ds"), &o, NULL, err, sizeof(err)), -EINVAL);

	/* Nothing was left behind by any of these. */
	DIR *d = opendir(dir);
	struct dirent *de;
	while ((de = readdir(d)))
		cr_assert_null(strstr(de->d_name, "quai-partial"), "%s left", de->d_name);
	closedir(d);
	cr_assert_neq(access(path("ds"), F_OK), 0);
}

Test(dataset, interrupted_pack_is_cleaned_up_by_a_rerun)
{
	/* What a crash leaves: a partial directory with a half-written shard. */
	mkdir(path(".ds.quai-partial"), 0755);
	tu_write(path(".ds.quai-partial/shard-00000.zst"), "garbage", 7);
	tu_write(path("in.txt"), "a\nb\n", 4);
	const char *srcs[] = {path("in.txt")};
	struct quai_pack_opts o = {.size = sizeof(o), .kind = QUAI_RECORDS_LINES};
	cr_assert_neq(access(path("ds/manifest.json"), F_OK), 0, "no dataset before");
	tu_pack(srcs, 1, path("ds"), &o);
	cr_assert_neq(access(path(".ds.quai-partial"), F_OK), 0);
	check_stream(path("ds"), (const uint8_t *)"a\nb\n", 4, 2);
}

Test(dataset, disk_full_leaves_nothing)
{
	if (geteuid() != 0)
		cr_skip_test("mounting a small tmpfs needs root");
	mkdir(path("small"), 0755);
	if (mount("tmpfs", path("small"), "tmpfs", 0, "size=256k") < 0)
		cr_skip_test("cannot mount a tmpfs here: %s", strerror(errno));
	size_t len = 2 << 20;
	uint8_t *in = malloc(len);
	tu_fill(in, len, 5, 256);
	tu_write(path("rand.bin"), in, len);
	free(in);
	const char *srcs[] = {path("rand.bin")};
	struct quai_pack_opts o = {
	    .size = sizeof(o), .kind = QUAI_RECORDS_FIXED, .fixed_size = 1024};
	char err[512];
	int r = quai_pack(srcs, 1, path("small/ds"), &o, NULL, err, sizeof(err));
	cr_assert_eq(r, -ENOSPC, "%s", quai_strerror(r));
	cr_assert(strstr(err, "space"), "%s", err);
	DIR *d = opendir(path("small"));
	struct dirent *de;
	int entries = 0;
	while ((de = readdir(d)))
		entries += de->d_name[0] != '.' || strstr(de->d_name, "partial") != NULL;
	closedir(d);
	umount(path("small"));
	cr_assert_eq(entries, 0, "something was left on the full disk");
}

Test(dataset, runs_of_records_match_single_reads)
{
	tu_write_lines(path("in.txt"), 60000, 21, 26, 3, 31, 90);
	const char *srcs[] = {path("in.txt")};
	struct quai_pack_opts o = {.size = sizeof(o),
				   .kind = QUAI_RECORDS_LINES,
				   .frame_size = QUAI_FRAME_SIZE_MIN,
				   .shard_size = 16 << 10};
	struct quai_pack_result res = tu_pack(srcs, 1, path("ds"), &o);
	quai_dataset *ds = open_ds(path("ds"));
	quai_reader *run, *one;
	cr_assert_eq(quai_reader_new(ds, &run), 0);
	cr_assert_eq(quai_reader_new(ds, &one), 0);
	uint64_t seed = 1;
	for (int k = 0; k < 500; k++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t rec = (seed >> 33) % res.records, max = 1 + (seed >> 13) % 40;
		const void *d;
		size_t l;
		uint64_t n;
		cr_assert_eq(quai_reader_records(run, rec, max, &d, &l, &n), 0);
		cr_assert(n >= 1 && n <= max && rec + n <= res.records);
		struct quai_record_loc a, z;
		quai_dataset_locate(ds, rec, &a);
		quai_dataset_locate(ds, rec + n - 1, &z);
		cr_assert(a.shard == z.shard && a.frame == z.frame, "a run stays in one frame");
		size_t off = 0;
		for (uint64_t i = 0; i < n; i++) {
			const void *r1;
			size_t l1;
			cr_assert_eq(quai_reader_record(one, rec + i, &r1, &l1), 0);
			cr_assert(off + l1 <= l && memcmp((const uint8_t *)d + off, r1, l1) == 0);
			off += l1;
		}
		cr_assert_eq(off, l);
	}
	const void *d;
	size_t l;
	uint64_t n;
	cr_assert_eq(quai_reader_records(run, res.records, 1, &d, &l, &n), -ERANGE);
	cr_assert_eq(quai_reader_records(run, 0, 0, &d, &l, &n), -ERANGE);
	quai_reader_free(run);
	quai_reader_free(one);
	quai_dataset_close(ds);
}

/* ---- frames stored raw (qds_decode_frame_map) ------------------------- */

/* A frame of `len` bytes made by libzstd at level 1, with or without its
 * content checksum, and the index entry describing it. */
static uint8_t *zframe(const uint8_t *raw, size_t len, int checksum, struct qix_frame *f)
{
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, checksum);
	size_t cap = ZSTD_compressBound(len);
	uint8_t *c = malloc(cap);
	size_t n = ZSTD_compress2(cc, c, cap, raw, len);
	cr_assert(!ZSTD_isError(n));
	ZSTD_freeCCtx(cc);
	*f = (struct qix_frame){.c_size = (uint32_t)n,
				.r_size = (uint32_t)len,
				.c_xxh3 = XXH3_64bits(c, n),
				.xxh64 = XXH64(raw, len, 0)};
	return c;
}

static void gather_segs(const uint8_t *c, const struct qds_seg *s, uint32_t n, uint8_t *out)
{
	for (uint32_t i = 0; i < n; i++)
		memcpy(out + s[i].raw_off, c + s[i].src_off, s[i].len);
}

Test(dataset, incompressible_frame_is_mapped_not_copied)
{
	size_t len = 600000; /* five blocks, the last one short */
	uint8_t *raw = malloc(len), *dst = malloc(len), *got = malloc(len);
	tu_fill(raw, len, 77, 256);
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	for (int ck = 0; ck < 2; ck++) {
		struct qix_frame f;
		uint8_t *c = zframe(raw, len, ck, &f);
		struct qds_seg segs[16];
		uint32_t n = 99;
		memset(dst, 0xAA, len);
		cr_assert_eq(qds_decode_frame_map(dc, &f, c, dst, segs, 16, QDS_MAP_CHECK_RAW, &n),
			     0);
		cr_assert_eq(n, 5, "%u pieces", n);
		cr_assert_eq(dst[0], 0xAA, "dst untouched");
		memset(got, 0, len);
		gather_segs(c, segs, n, got);
		cr_assert(memcmp(got, raw, len) == 0);
		for (uint32_t i = 1; i < n; i++)
			cr_assert_eq(segs[i].raw_off, segs[i - 1].raw_off + segs[i - 1].len);
		/* The engine's way, without QDS_MAP_CHECK_RAW: the same pieces. */
		struct qds_seg segs2[16];
		cr_assert_eq(qds_decode_frame_map(dc, &f, c, dst, segs2, 16, 0, &n), 0);
		cr_assert_eq(n, 5);
		cr_assert(memcmp(segs, segs2, 5 * sizeof(segs[0])) == 0);

		/* Too few pieces allowed, or none: decoded into dst instead. */
		cr_assert_eq(qds_decode_frame_map(dc, &f, c, dst, segs, 4, QDS_MAP_CHECK_RAW, &n),
			     0);
		cr_assert_eq(n, 0);
		cr_assert(memcmp(dst, raw, len) == 0);
		memset(dst, 0, len);
		cr_assert_eq(qds_decode_frame_map(dc, &f, c, dst, segs, 0, QDS_MAP_CHECK_RAW, &n),
			     0);
		cr_assert_eq(n, 0);
		cr_assert(memcmp(dst, raw, len) == 0);

		/* A raw byte changed, with the compressed hash made to match (a
		 * writer that stored other bytes than it hashed): the raw
		 * bytes' XXH64 refuses it, as `quai verify` asks. The engine
		 * does not ask: XXH3 covers every byte the writer stored. */
		c[f.c_size / 2] ^= 1;
		uint64_t good = f.c_xxh3;
		f.c_xxh3 = XXH3_64bits(c, f.c_size);
		cr_assert_eq(qds_decode_frame_map(dc, &f, c, dst, segs, 16, QDS_MAP_CHECK_RAW, &n),
			     -QUAI_ECORRUPT);
		cr_assert_eq(n, 0);
		cr_assert_eq(qds_decode_frame_map(dc, &f, c, dst, segs, 16, 0, &n), 0);
		/* A byte changed after writing (the index's hash is the
		 * writer's): refused either way, by XXH3, before anything. */
		f.c_xxh3 = good;
		for (unsigned how = 0; how <= QDS_MAP_CHECK_RAW; how++) {
			n = 99;
			cr_assert_eq(qds_decode_frame_map(dc, &f, c, dst, segs, 16, how, &n),
				     -QUAI_ECORRUPT);
			cr_assert_eq(n, 0);
		}
		c[f.c_size / 2] ^= 1;
		free(c);
	}
	ZSTD_freeDCtx(dc);
	free(raw);
	free(dst);
	free(got);
}

Test(dataset, stored_frame_content_checksum_is_checked)
{
	size_t len = 5000;
	uint8_t *raw = malloc(len), *dst = malloc(len);
	tu_fill(raw, len, 5, 256);
	struct qix_frame f;
	uint8_t *c = zframe(raw, len, 1, &f);
	struct qds_seg segs[4];
	uint64_t at = 0;
	cr_assert_eq(qds_stored_segments(c, f.c_size, f.r_size, segs, 4, &at), 1);
	cr_assert_eq(at, f.c_size - 4);
	/* The frame's own checksum wrong, everything the index says right. */
	c[at] ^= 0x10;
	f.c_xxh3 = XXH3_64bits(c, f.c_size);
	uint32_t n;
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	cr_assert_eq(qds_decode_frame_map(dc, &f, c, dst, segs, 4, QDS_MAP_CHECK_RAW, &n),
		     -QUAI_ECORRUPT);
	cr_assert_eq(qds_decode_frame(dc, &f, c, dst), -QUAI_ECORRUPT, "libzstd agrees");
	ZSTD_freeDCtx(dc);
	free(c);
	free(raw);
	free(dst);
}

Test(dataset, only_all_raw_well_formed_frames_are_mapped)
{
	size_t len = 300000;
	uint8_t *raw = malloc(len);
	struct qds_seg segs[16];
	uint64_t at;
	struct qix_frame f;

	/* Compressible: libzstd's to decode. */
	tu_fill(raw, len, 3, 4);
	uint8_t *c = zframe(raw, len, 0, &f);
	cr_assert_eq(qds_stored_segments(c, f.c_size, f.r_size, segs, 16, &at), 0);
	free(c);

	/* Incompressible, then damaged in each way a walker could trip on. */
	tu_fill(raw, len, 4, 256);
	c = zframe(raw, len, 0, &f);
	uint32_t n = qds_stored_segments(c, f.c_size, f.r_size, segs, 16, &at);
	cr_assert_eq(n, 3);
	cr_assert_eq(qds_stored_segments(c, f.c_size, f.r_size - 1, segs, 16, &at), 0,
		     "another raw size");
	cr_assert_eq(qds_stored_segments(c, f.c_size - 1, f.r_size, segs, 16, &at), 0, "cut short");
	cr_assert_eq(qds_stored_segments(c, 5, f.r_size, segs, 16, &at), 0, "header only");
	uint8_t *big = malloc(f.c_size + 1);
	memcpy(big, c, f.c_size);
	big[f.c_size] = 0;
	cr_assert_eq(qds_stored_segments(big, f.c_size + 1, f.r_size, segs, 16, &at), 0,
		     "a byte after the last block");
	free(big);
	/* The first block's header: made an RLE block, then a reserved
	 * type, then larger than a block may be. It follows the frame header,
	 * which is segs[0].src_off - 3 bytes long. */
	uint32_t bh = segs[0].src_off - 3;
	uint8_t save[3] = {c[bh], c[bh + 1], c[bh + 2]};
	c[bh] = (uint8_t)((save[0] & ~6u) | 2u);
	cr_assert_eq(qds_stored_segments(c, f.c_size, f.r_size, segs, 16, &at), 0, "RLE");
	c[bh] = (uint8_t)(save[0] | 6u);
	cr_assert_eq(qds_stored_segments(c, f.c_size, f.r_size, segs, 16, &at), 0, "reserved");
	uint32_t hdr = (uint32_t)save[0] | (uint32_t)save[1] << 8 | (uint32_t)save[2] << 16;
	hdr = (hdr & 7u) | ((128u * 1024 + 1) << 3);
	c[bh] = (uint8_t)hdr;
	c[bh + 1] = (uint8_t)(hdr >> 8);
	c[bh + 2] = (uint8_t)(hdr >> 16);
	cr_assert_eq(qds_stored_segments(c, f.c_size, f.r_size, segs, 16, &at), 0, "oversized");
	memcpy(c + bh, save, 3);
	c[0] ^= 1;
	cr_assert_eq(qds_stored_segments(c, f.c_size, f.r_size, segs, 16, &at), 0, "magic");
	c[0] ^= 1;
	c[4] |= 0x08;
	cr_assert_eq(qds_stored_segments(c, f.c_size, f.r_size, segs, 16, &at), 0, "reserved bit");
	c[4] &= (uint8_t)~0x08;
	cr_assert_eq(qds_stored_segments(c, f.c_size, f.r_size, segs, 16, &at), 3, "restored");
	free(c);
	free(raw);
}

/* ---- issue 22 #5: a dataset's files are regular files of its directory -- */

static void beneath_refusals(bool walk)
{
	int dfd, fd;

	qfs_beneath_force_walk(walk);
	cr_assert_eq(mkdir(path("b"), 0700), 0);
	cr_assert_eq(mkdir(path("b/sub"), 0700), 0);
	tu_write(path("b/real"), "x", 1);
	tu_write(path("b/sub/deep"), "y", 1);
	tu_write(path("outside"), "z", 1);
	cr_assert_eq(symlink(path("outside"), path("b/link")), 0);
	cr_assert_eq(symlink(path("b/sub"), path("b/sublink")), 0);
	cr_assert_eq(mkfifo(path("b/fifo"), 0600), 0);
	dfd = open(path("b"), O_RDONLY | O_DIRECTORY);
	cr_assert_geq(dfd, 0);
	fd = qfs_open_member(dfd, "real", O_RDONLY, 0);
	cr_assert_geq(fd, 0, "%s", strerror(-fd));
	cr_assert_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0, "O_NONBLOCK stays off");
	close(fd);
	fd = qfs_open_beneath(dfd, "sub/deep", O_RDONLY, 0);
	cr_assert_geq(fd, 0, "%s", strerror(-fd));
	close(fd);
	cr_assert_eq(qfs_open_member(dfd, "link", O_RDONLY, 0), -ELOOP);
	cr_assert_eq(qfs_open_beneath(dfd, "sublink/deep", O_RDONLY, 0), -ELOOP);
	cr_assert_eq(qfs_open_beneath(dfd, "../outside", O_RDONLY, 0), -EXDEV);
	cr_assert_eq(qfs_open_beneath(dfd, path("outside"), O_RDONLY, 0), -EXDEV);
	/* A FIFO neither blocks the open nor passes. */
	cr_assert_eq(qfs_open_member(dfd, "fifo", O_RDONLY, 0), -QFS_ENOTREG);
	cr_assert_eq(qfs_open_member(dfd, "sub", O_RDONLY, 0), -QFS_ENOTREG);
	close(dfd);
	qfs_beneath_force_walk(false);
}

Test(dataset, files_open_beneath_without_links)
{
	beneath_refusals(false);
}

Test(dataset, files_open_beneath_without_links_fallback)
{
	beneath_refusals(true);
}

/* A shard linked to another dataset's, under a manifest of its own: the
 * dataset is refused by the opener, whatever the link points at. */
Test(dataset, linked_shard_is_refused)
{
	quai_dataset *ds;
	char err[256] = "";
	char shard[700];

	tu_write_lines(path("in.txt"), 20000, 1, 26, 0, 1, 1);
	const char *srcs[] = {path("in.txt")};
	struct quai_pack_opts o = {.size = sizeof(o), .kind = QUAI_RECORDS_LINES};
	tu_pack(srcs, 1, path("ds"), &o);
	snprintf(shard, sizeof(shard), "%s", path("ds/shard-00000.zst"));
	cr_assert_eq(rename(shard, path("elsewhere.zst")), 0);
	cr_assert_eq(symlink(path("elsewhere.zst"), shard), 0);
	cr_assert_eq(quai_dataset_open(path("ds"), &ds, err, sizeof(err)), -ELOOP);
	cr_assert(strstr(err, "shard-00000.zst: a symbolic link"), "%s", err);
	/* quaid's opener: the dataset directory itself may not be a link. */
	cr_assert_eq(unlink(shard), 0);
	cr_assert_eq(rename(path("elsewhere.zst"), shard), 0);
	cr_assert_eq(symlink(path("ds"), path("dslink")), 0);
	cr_assert_eq(qds_open(path("dslink"), true, &ds, err, sizeof(err)), -ELOOP);
	cr_assert_eq(qds_open(path("dslink"), false, &ds, err, sizeof(err)), 0, "%s", err);
	quai_dataset_close(ds);
}

/* Regression: unpack removed a partial without taking its lock, so a
 * second unpack of the same destination deleted the first one's work
 * from under it. The partial another writer holds is never touched. */
static void pack_lines(const char *ds, uint64_t seed)
{
	tu_write_lines(path("lines.txt"), 64 << 10, seed, 16, 10, 7, 200);
	const char *srcs[] = {path("lines.txt")};
	struct quai_pack_opts o = {
	    .size = sizeof(o), .kind = QUAI_RECORDS_LINES, .frame_size = QUAI_FRAME_SIZE_MIN};
	tu_pack(srcs, 1, ds, &o);
}

Test(dataset, unpack_leaves_another_writers_locked_partial)
{
	char err[512];
	pack_lines(path("ds"), 5);
	/* Another writer's partial of out.txt: a file, locked. */
	const char *partial = path(".out.txt.quai-partial");
	tu_write(partial, "another writer's bytes", 22);
	int fd = open(partial, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(flock(fd, LOCK_EX | LOCK_NB), 0);

	cr_expect_eq(quai_unpack(path("ds"), path("out.txt"), err, sizeof(err)), -EBUSY);
	cr_expect(strstr(err, "another quai is writing it"), "%s", err);
	size_t len;
	uint8_t *left = tu_read(partial, &len);
	cr_expect_eq(len, 22, "the other writer's partial was touched");
	free(left);
	cr_expect_eq(access(path("out.txt"), F_OK), -1);

	/* Once that writer is gone, its leftover is this unpack's to empty. */
	close(fd);
	cr_expect_eq(quai_unpack(path("ds"), path("out.txt"), err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(access(partial, F_OK), -1);
	uint8_t *out = tu_read(path("out.txt"), &len);
	uint8_t *in = tu_read(path("lines.txt"), &(size_t){0});
	cr_expect_eq(len, 64 << 10);
	cr_expect(memcmp(out, in, len) == 0);
	free(out);
	free(in);
}

Test(dataset, unpack_of_files_leaves_another_writers_locked_partial)
{
	char err[512];
	mkdir(path("tree"), 0755);
	tu_write(path("tree/a"), "alpha", 5);
	tu_write(path("tree/b"), "beta", 4);
	const char *srcs[] = {path("tree")};
	struct quai_pack_opts o = {.size = sizeof(o), .kind = QUAI_RECORDS_FILES};
	tu_pack(srcs, 1, path("fds"), &o);
	/* Another writer's partial directory, locked, with a file in it. */
	const char *partial = path(".outdir.quai-partial");
	cr_assert_eq(mkdir(partial, 0755), 0);
	tu_write(path(".outdir.quai-partial/mine"), "x", 1);
	int fd = open(partial, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(flock(fd, LOCK_EX | LOCK_NB), 0);

	cr_expect_eq(quai_unpack(path("fds"), path("outdir"), err, sizeof(err)), -EBUSY);
	cr_expect_eq(access(path(".outdir.quai-partial/mine"), F_OK), 0,
		     "the other writer's file was removed");
	close(fd);
	cr_expect_eq(quai_unpack(path("fds"), path("outdir"), err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(access(partial, F_OK), -1);
	cr_expect_eq(access(path("outdir/a"), F_OK), 0);
	cr_expect_eq(access(path("outdir/mine"), F_OK), -1, "a leftover was published");
}
