/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Damage every byte of a small dataset in turn and show that verify finds
 * it, and that a reader never hands out a byte that differs from what was
 * packed: it either returns the original record or an error.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static char dir[512], ds_path[600];
static uint8_t *orig;
static size_t orig_len;
static uint64_t nrec;

static void setup(void)
{
	tu_mkdtemp(dir, sizeof(dir));
	char in[600];
	snprintf(in, sizeof(in), "%s/in.txt", dir);
	snprintf(ds_path, sizeof(ds_path), "%s/ds", dir);
	/* ~24 KiB of lines: frames of 4 KiB, shards of a few frames. */
	orig_len = 24000;
	orig = malloc(orig_len);
	tu_fill(orig, orig_len, 42, 20);
	for (size_t i = 37; i < orig_len; i += 37 + i % 50)
		orig[i] = '\n';
	tu_write(in, orig, orig_len);
	const char *srcs[] = {in};
	struct quai_pack_opts o = {.size = sizeof(o),
				   .kind = QUAI_RECORDS_LINES,
				   .frame_size = QUAI_FRAME_SIZE_MIN,
				   .shard_size = 6 << 10};
	struct quai_pack_result res = tu_pack(srcs, 1, ds_path, &o);
	nrec = res.records;
}

static void teardown(void)
{
	tu_rmtree(dir);
	free(orig);
}

TestSuite(corruption, .init = setup, .fini = teardown);

static int verify_quiet(void)
{
	struct quai_verify_opts o = {.size = sizeof(o), .threads = 2};
	return quai_verify(ds_path, &o, NULL);
}

/* Every record the dataset hands out is the original; returns how many
 * records could not be read. */
static uint64_t read_all_checked(void)
{
	quai_dataset *ds;
	if (quai_dataset_open(ds_path, &ds, NULL, 0) < 0)
		return nrec;
	quai_reader *r;
	cr_assert_eq(quai_reader_new(ds, &r), 0);
	uint64_t failed = 0;
	size_t off = 0;
	for (uint64_t i = 0; i < nrec; i++) {
		struct quai_record_loc loc;
		const void *d;
		size_t l;
		cr_assert_eq(quai_dataset_locate(ds, i, &loc), 0);
		int e = quai_reader_record(r, i, &d, &l);
		if (e < 0) {
			cr_assert(e == -QUAI_ECORRUPT || e == -EIO, "unexpected %s",
				  quai_strerror(e));
			failed++;
		} else {
			cr_assert_leq(off + l, orig_len);
			cr_assert(memcmp(d, orig + off, l) == 0, "record %llu handed out altered",
				  (unsigned long long)i);
		}
		off += loc.length;
	}
	quai_reader_free(r);
	quai_dataset_close(ds);
	return failed;
}

static int verify_copy(void)
{
	struct quai_verify_opts o = {.size = sizeof(o), .threads = 2, .flags = QUAI_VERIFY_FILES};
	return quai_verify(ds_path, &o, NULL);
}

/* The copy check (QUAI_VERIFY_FILES, what quai pull runs) too finds every
 * flipped bit, by whole-file checksums, without decoding. */
Test(corruption, copy_check_finds_every_bit_of_a_shard)
{
	struct quai_verify_opts o = {.size = sizeof(o), .flags = QUAI_VERIFY_FILES};
	struct quai_verify_result res;
	cr_assert_eq(quai_verify(ds_path, &o, &res), 0);
	cr_assert_eq(res.raw_bytes, 0, "nothing decoded");
	char p[700];
	snprintf(p, sizeof(p), "%s/shard-00001.zst", ds_path);
	int fd = open(p, O_RDWR);
	cr_assert_geq(fd, 0, "%s", p);
	off_t len = lseek(fd, 0, SEEK_END);
	for (off_t i = 0; i < len; i++) {
		uint8_t b, f;
		cr_assert_eq(pread(fd, &b, 1, i), 1);
		f = b ^ 0x01;
		cr_assert_eq(pwrite(fd, &f, 1, i), 1);
		cr_assert_eq(verify_copy(), -QUAI_ECORRUPT, "bit flip at byte %lld not detected",
			     (long long)i);
		cr_assert_eq(pwrite(fd, &b, 1, i), 1);
	}
	close(fd);
	cr_assert_eq(verify_copy(), 0);
}

static void flip_each_byte(const char *name)
{
	char p[700];
	snprintf(p, sizeof(p), "%s/%s", ds_path, name);
	int fd = open(p, O_RDWR);
	cr_assert_geq(fd, 0, "%s", p);
	off_t len = lseek(fd, 0, SEEK_END);
	cr_assert_gt(len, 0);
	for (off_t i = 0; i < len; i++) {
		uint8_t b, f;
		cr_assert_eq(pread(fd, &b, 1, i), 1);
		f = b ^ 0x01; /* a single bit: the hardest flip to notice */
		cr_assert_eq(pwrite(fd, &f, 1, i), 1);
		int r = verify_quiet();
		cr_assert_lt(r, 0, "%s: bit flip at byte %lld not detected by verify", name,
			     (long long)i);
		read_all_checked();
		cr_assert_eq(pwrite(fd, &b, 1, i), 1);
	}
	close(fd);
	cr_assert_eq(verify_quiet(), 0, "restored dataset verifies again");
}

Test(corruption, sound_dataset_verifies)
{
	struct quai_verify_result res;
	struct quai_verify_opts o = {.size = sizeof(o)};
	cr_assert_eq(quai_verify(ds_path, &o, &res), 0);
	cr_assert_gt(res.frames, 2);
	cr_assert_eq(res.bad_frames, 0);
	cr_assert_eq(res.raw_bytes, orig_len);
	cr_assert_eq(read_all_checked(), 0);
}

Test(corruption, every_byte_of_shard_0)
{
	flip_each_byte("shard-00000.zst");
}

Test(corruption, every_byte_of_shard_1)
{
	flip_each_byte("shard-00001.zst");
}

Test(corruption, every_byte_of_an_index)
{
	flip_each_byte("shard-00001.idx");
}

Test(corruption, every_byte_of_the_manifest)
{
	flip_each_byte("manifest.json");
}

struct seen {
	int problems;
	int64_t first_shard, first_frame;
	uint64_t first_record, count;
};

static void on_problem(const struct quai_verify_problem *p, void *arg)
{
	struct seen *s = arg;
	if (s->problems++ == 0) {
		s->first_shard = p->shard;
		s->first_frame = p->frame;
		s->first_record = p->first_record;
		s->count = p->record_count;
	}
}

Test(corruption, verify_names_shard_frame_and_records)
{
	quai_dataset *ds;
	cr_assert_eq(quai_dataset_open(ds_path, &ds, NULL, 0), 0);
	struct quai_record_loc loc;
	/* The first record of shard 1's second frame. */
	uint64_t rec = 0;
	for (; rec < nrec; rec++) {
		cr_assert_eq(quai_dataset_locate(ds, rec, &loc), 0);
		if (loc.shard == 1 && loc.frame == 1)
			break;
	}
	cr_assert_lt(rec, nrec);
	quai_dataset_close(ds);

	char p[700];
	snprintf(p, sizeof(p), "%s/shard-00001.zst", ds_path);
	int fd = open(p, O_RDWR);
	uint8_t b;
	cr_assert_eq(pread(fd, &b, 1, (off_t)loc.frame_offset + 10), 1);
	b ^= 0x10;
	cr_assert_eq(pwrite(fd, &b, 1, (off_t)loc.frame_offset + 10), 1);
	close(fd);

	struct seen s = {0};
	struct quai_verify_opts o = {.size = sizeof(o), .problem = on_problem, .problem_arg = &s};
	struct quai_verify_result res;
	cr_assert_eq(quai_verify(ds_path, &o, &res), -QUAI_ECORRUPT);
	cr_assert_eq(s.problems, 1);
	cr_assert_eq(res.bad_frames, 1);
	cr_assert_eq(s.first_shard, 1);
	cr_assert_eq(s.first_frame, 1);
	cr_assert_eq(s.first_record, rec);
	cr_assert_gt(s.count, 0);
	cr_assert_eq(read_all_checked(), s.count, "exactly the bad frame's records fail");
}

Test(corruption, truncation_at_every_frame_boundary)
{
	quai_dataset *ds;
	cr_assert_eq(quai_dataset_open(ds_path, &ds, NULL, 0), 0);
	struct quai_shard_info si = {.size = sizeof(si)};
	cr_assert_eq(quai_dataset_shard(ds, 0, &si), 0);
	/* Frame start offsets of shard 0, and the seek table's. */
	uint64_t cuts[64];
	size_t ncuts = 0;
	for (uint64_t i = 0; i < si.records; i++) {
		struct quai_record_loc loc;
		quai_dataset_locate(ds, i, &loc);
		if (ncuts == 0 || cuts[ncuts - 1] != loc.frame_offset)
			cuts[ncuts++] = loc.frame_offset;
	}
	quai_dataset_close(ds);
	cuts[ncuts] = cuts[ncuts - 1] + 1; /* inside the last frame */
	ncuts++;

	char p[700];
	snprintf(p, sizeof(p), "%s/shard-00000.zst", ds_path);
	size_t len;
	uint8_t *whole = tu_read(p, &len);
	cuts[ncuts++] = len - 1; /* inside the seek table */
	for (size_t i = 0; i < ncuts; i++) {
		cr_assert_eq(truncate(p, (off_t)cuts[i]), 0);
		cr_assert_lt(verify_quiet(), 0, "truncated at %llu", (unsigned long long)cuts[i]);
		read_all_checked();
		tu_write(p, whole, len);
	}
	free(whole);
	cr_assert_eq(verify_quiet(), 0);
}

Test(corruption, missing_files)
{
	char p[700], q[700];
	snprintf(p, sizeof(p), "%s/shard-00001.idx", ds_path);
	snprintf(q, sizeof(q), "%s/moved.idx", dir);
	cr_assert_eq(rename(p, q), 0);
	struct seen s = {0};
	struct quai_verify_opts o = {.size = sizeof(o), .problem = on_problem, .problem_arg = &s};
	cr_assert_lt(quai_verify(ds_path, &o, NULL), 0);
	cr_assert_eq(s.first_shard, 1);
	char err[256];
	quai_dataset *ds;
	cr_assert_eq(quai_dataset_open(ds_path, &ds, err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, "shard-00001.idx"), "%s", err);
	cr_assert_eq(rename(q, p), 0);

	snprintf(p, sizeof(p), "%s/manifest.json", ds_path);
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(quai_dataset_open(ds_path, &ds, err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, "manifest.json"), "%s", err);
}
