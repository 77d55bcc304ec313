/* SPDX-License-Identifier: Apache-2.0 */
/* The epoch planner (stager/engine/plan.h): coverage at any world size, the
 * lockstep remainder, elastic resumption across world sizes, frame use and
 * read amplification, shuffle quality, determinism, the state bytes, and
 * errors. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it; standalone builds may not */
#endif
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plan.h"

/* The golden vectors of Test(plan, golden_order): the first and last 12
 * records of rank 2 of 3, and of rank 1 of 5 resumed from a level. */
#define GOLDEN_FRESH_COUNT 782
#define GOLDEN_FRESH                                                                               \
	{                                                                                          \
		1770, 1795, 1762, 1701, 1689, 1700, 1785, 2080, 1791, 1777, 2082, 2076, 2107,      \
		    1746, 1739, 1749, 1733, 2093, 2100, 2094, 1732, 2098, 226, 1726                \
	}
#define GOLDEN_RESUMED_COUNT 319
#define GOLDEN_RESUMED                                                                             \
	{                                                                                          \
		1988, 2148, 2152, 2151, 249, 1977, 2005, 246, 2018, 2020, 2178, 2161, 2099, 2093,  \
		    2095, 2100, 2096, 2094, 2091, 2092, 226, 2097, 1754, 1752                      \
	}

/* ------------------------------------------------------------------------
 * Datasets
 * ------------------------------------------------------------------------ */

/* A deterministic generator for test data only (not the planner's). */
static uint64_t test_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

struct dataset {
	struct qpl_frame *frames;
	uint64_t nframes;
	uint64_t records;
	uint32_t max_frame;
};

static struct dataset make_dataset(uint64_t nframes, uint32_t (*size)(uint64_t i, uint64_t *s))
{
	struct dataset d = {calloc(nframes, sizeof(struct qpl_frame)), nframes, 0, 0};
	uint64_t s = 0x243f6a8885a308d3;

	cr_assert(d.frames);
	for (uint64_t i = 0; i < nframes; i++) {
		d.frames[i].first_record = d.records;
		d.frames[i].records = size(i, &s);
		d.records += d.frames[i].records;
		if (d.frames[i].records > d.max_frame)
			d.max_frame = d.frames[i].records;
	}
	return d;
}

static uint32_t size_seven(uint64_t i, uint64_t *s)
{
	(void)i;
	(void)s;
	return 7;
}

static uint32_t size_one(uint64_t i, uint64_t *s)
{
	(void)i;
	(void)s;
	return 1;
}

static uint32_t size_uneven(uint64_t i, uint64_t *s)
{
	(void)s;
	return 1 + (uint32_t)(i * 37 % 29) + (i % 7 == 0 ? 200 : 0);
}

static uint32_t size_giant(uint64_t i, uint64_t *s)
{
	(void)s;
	return i == 5 ? 5000 : 1 + (uint32_t)(i % 3);
}

static uint32_t size_varied(uint64_t i, uint64_t *s)
{
	(void)i;
	return 1 + (uint32_t)(test_rand(s) % 300);
}

static uint32_t size_512(uint64_t i, uint64_t *s)
{
	(void)i;
	(void)s;
	return 512;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct qpl_params params(uint32_t unit, uint32_t world, uint32_t rank, int shuffle, int tail)
{
	return (struct qpl_params){.seed = 0x5eed,
				   .epoch = 3,
				   .unit = unit,
				   .world = world,
				   .rank = rank,
				   .shuffle = shuffle,
				   .tail = tail};
}

static qpl_plan *plan_ok(const struct dataset *d, const struct qpl_params *par)
{
	qpl_plan *pl = NULL;
	char err[256] = "";
	int r = qpl_new(d->frames, d->nframes, par, &pl, err, sizeof(err));

	cr_assert_eq(r, 0, "qpl_new: %d %s", r, err);
	cr_assert(pl);
	return pl;
}

/* ------------------------------------------------------------------------
 * One run of a job: every rank of `world` from the resume point `from`,
 * each delivering its first `c` records (all of them for UINT64_MAX);
 * checks lockstep counts and frame use, marks what was delivered, and
 * returns the resume point after it (taken from every rank: all equal).
 * ------------------------------------------------------------------------ */

struct run_stats {
	uint64_t frame_reads; /* frames listed by the ranks' plans */
	uint64_t repeats;
};

static struct qpl_params run_job(const struct dataset *d, const struct qpl_params *from,
				 uint32_t world, uint64_t c, uint8_t *seen, struct run_stats *rs)
{
	struct qpl_params next = {0};
	uint64_t count0 = 0;

	for (uint32_t r = 0; r < world; r++) {
		struct qpl_params par = *from, got;
		qpl_plan *pl;
		char err[256];
		uint64_t n, upto, nuse;

		par.world = world;
		par.rank = r;
		pl = plan_ok(d, &par);
		n = qpl_local_count(pl);
		if (r == 0)
			count0 = n;
		/* Lockstep: the same count on every rank; under KEEP the first
		 * ranks may have one more. */
		if (par.tail == QPL_TAIL_KEEP)
			cr_assert(n == count0 || n + 1 == count0, "rank %u: %llu vs %llu", r,
				  (unsigned long long)n, (unsigned long long)count0);
		else
			cr_assert_eq(n, count0, "rank %u: %llu vs %llu", r, (unsigned long long)n,
				     (unsigned long long)count0);
		nuse = qpl_frame_count(pl);
		if (rs)
			rs->frame_reads += nuse;
		upto = c < n ? c : n;
		for (uint64_t l = 0; l < n; l++) {
			struct qpl_item it;
			bool listed = false;

			qpl_item(pl, l, &it);
			cr_assert_lt(it.record, d->records);
			cr_assert_eq(d->frames[it.frame].first_record + it.index, it.record);
			/* Frame use is exact enough for the prefetcher. */
			for (uint64_t i = 0; i < nuse && !listed; i++) {
				struct qpl_use u;

				qpl_frame_use(pl, i, &u);
				if (u.frame == it.frame) {
					cr_assert(u.first_use <= l && l <= u.last_use,
						  "frame %llu used at %llu outside [%llu, %llu]",
						  (unsigned long long)it.frame,
						  (unsigned long long)l,
						  (unsigned long long)u.first_use,
						  (unsigned long long)u.last_use);
					listed = true;
				}
			}
			cr_assert(listed, "frame %llu of local %llu not listed",
				  (unsigned long long)it.frame, (unsigned long long)l);
			if (l >= upto)
				continue;
			if (it.repeat) {
				if (rs)
					rs->repeats++;
				continue;
			}
			cr_assert_eq(seen[it.record], 0,
				     "record %llu delivered twice (world %u rank %u local %llu)",
				     (unsigned long long)it.record, world, r,
				     (unsigned long long)l);
			seen[it.record] = 1;
		}
		int e = qpl_resume_point(pl, c, &got, err, sizeof(err));

		cr_assert_eq(e, 0, "%s", err);
		if (r == 0)
			next = got;
		else
			cr_assert_eq(memcmp(&got.level, &next.level, sizeof(next.level)) ||
					 got.nlevels != next.nlevels || got.done != next.done,
				     0, "rank %u takes another resume point", r);
		qpl_free(pl);
	}
	return next;
}

static uint64_t missing(const struct dataset *d, const uint8_t *seen)
{
	uint64_t m = 0;

	for (uint64_t i = 0; i < d->records; i++)
		m += !seen[i];
	return m;
}

/* Every world 1..64, every tail: every record once but the remainder. */
static void check_worlds(const struct dataset *d, uint32_t unit, int shuffle)
{
	for (int tail = 0; tail <= QPL_TAIL_PAD; tail++)
		for (uint32_t w = 1; w <= 64; w++) {
			struct qpl_params from = params(unit, 0, 0, shuffle, tail);
			uint8_t *seen = calloc(d->records ? d->records : 1, 1);
			struct run_stats rs = {0};
			uint64_t m;

			run_job(d, &from, w, UINT64_MAX, seen, &rs);
			m = missing(d, seen);
			if (tail == QPL_TAIL_DROP)
				cr_assert_eq(m, d->records % w, "world %u: %llu left out", w,
					     (unsigned long long)m);
			else
				cr_assert_eq(m, 0, "world %u tail %d: %llu left out", w, tail,
					     (unsigned long long)m);
			if (tail == QPL_TAIL_PAD)
				cr_assert_eq(rs.repeats, d->records % w ? w - d->records % w : 0);
			/* Reads: a frame is read by the ranks whose units hold
			 * it; a unit boundary inside a frame adds one read. */
			uint64_t units = d->records / unit + 2 * (uint64_t)w;
			cr_assert_leq(rs.frame_reads, d->nframes + units, "world %u: %llu reads", w,
				      (unsigned long long)rs.frame_reads);
			free(seen);
		}
}

Test(plan, covers_one_frame)
{
	struct dataset d = make_dataset(1, size_seven);

	check_worlds(&d, 3, 1);
	free(d.frames);
}

Test(plan, covers_frames_of_one_record)
{
	struct dataset d = make_dataset(100, size_one);

	check_worlds(&d, 8, 1);
	check_worlds(&d, 8, 0);
	free(d.frames);
}

Test(plan, covers_uneven_frames)
{
	struct dataset d = make_dataset(60, size_uneven);

	check_worlds(&d, 50, 1);
	free(d.frames);
}

Test(plan, covers_one_giant_frame)
{
	struct dataset d = make_dataset(12, size_giant);

	check_worlds(&d, 40, 1);
	free(d.frames);
}

Test(plan, fewer_records_than_ranks_gives_empty_epochs)
{
	struct dataset d = make_dataset(2, size_one);
	struct qpl_params par = params(40, 64, 63, 1, QPL_TAIL_KEEP);
	qpl_plan *pl = plan_ok(&d, &par);

	cr_assert_eq(qpl_local_count(pl), 0);
	cr_assert_eq(qpl_frame_count(pl), 0);
	qpl_free(pl);
	par.rank = 1;
	pl = plan_ok(&d, &par);
	cr_assert_eq(qpl_local_count(pl), 1);
	qpl_free(pl);
	free(d.frames);
}

/* Random shapes: uneven frames, frames of one huge record count, worlds
 * 1..64, the three tails, shuffle on and off, and resumes at random
 * points and world sizes (up to four runs in one epoch). */
Test(plan, random_shapes_and_resumes, .timeout = 120)
{
	uint64_t s = 0x9e3779b97f4a7c15;

	for (int trial = 0; trial < 150; trial++) {
		uint64_t nframes = 1 + test_rand(&s) % 40, total = 0;
		struct dataset d = {calloc(nframes, sizeof(struct qpl_frame)), nframes, 0, 0};

		for (uint64_t f = 0; f < nframes; f++) {
			d.frames[f].first_record = total;
			d.frames[f].records = test_rand(&s) % 6 == 0
						  ? 1 + (uint32_t)(test_rand(&s) % 300)
						  : 1 + (uint32_t)(test_rand(&s) % 12);
			total += d.frames[f].records;
		}
		d.records = total;
		struct qpl_params from = params(1 + (uint32_t)(test_rand(&s) % 60), 0, 0,
						test_rand(&s) % 4 != 0, (int)(test_rand(&s) % 3));
		uint8_t *seen = calloc(total, 1);
		int runs = 1 + (int)(test_rand(&s) % 4);
		uint32_t end_world = 0;

		for (int k = 0; k < runs && !from.done; k++) {
			uint32_t w = 1 + (uint32_t)(test_rand(&s) % 64);
			uint64_t c = k == runs - 1 ? UINT64_MAX : test_rand(&s) % (total / w + 2);

			from = run_job(&d, &from, w, c, seen, NULL);
			end_world = w;
		}
		if (!from.done)
			continue; /* the last run went to the end: done */
		uint64_t m = missing(&d, seen);

		if (from.tail == QPL_TAIL_DROP)
			cr_assert_lt(m, end_world, "trial %d: %llu left out at world %u", trial,
				     (unsigned long long)m, end_world);
		else
			cr_assert_eq(m, 0, "trial %d: %llu left out", trial, (unsigned long long)m);
		free(seen);
		free(d.frames);
	}
}

/* The case: 8 ranks, then 6, then 24, within one epoch. */
Test(plan, resumes_8_then_6_then_24)
{
	struct dataset d = make_dataset(400, size_varied);
	uint8_t *seen = calloc(d.records, 1);
	struct qpl_params from = params(2000, 0, 0, 1, QPL_TAIL_DROP);

	from = run_job(&d, &from, 8, 3000, seen, NULL);
	cr_assert_eq(from.nlevels, 1);
	from = run_job(&d, &from, 6, 1234, seen, NULL);
	from = run_job(&d, &from, 24, UINT64_MAX, seen, NULL);
	cr_assert(from.done);
	cr_assert_lt(missing(&d, seen), 24);
	free(seen);
	free(d.frames);
}

/* A run resumed at the world that took the state goes on with the same
 * units: the state stays one level however often that happens. */
Test(plan, resumes_at_the_same_world_stay_flat)
{
	struct dataset d = make_dataset(300, size_varied);
	uint8_t *seen = calloc(d.records, 1);
	struct qpl_params from = params(1000, 0, 0, 1, QPL_TAIL_KEEP);

	for (int k = 0; k < 40 && !from.done; k++) {
		from = run_job(&d, &from, 12, 37, seen, NULL);
		cr_assert_leq(from.nlevels, 1, "after %d resumes", k);
	}
	from = run_job(&d, &from, 12, UINT64_MAX, seen, NULL);
	cr_assert_eq(missing(&d, seen), 0);
	free(seen);
	free(d.frames);
}

/* The same order whatever the batch size: batches only cut the sequence. */
Test(plan, same_inputs_same_plan)
{
	struct dataset d = make_dataset(200, size_varied);
	struct qpl_params par = params(500, 7, 3, 1, QPL_TAIL_DROP);
	qpl_plan *a = plan_ok(&d, &par), *b = plan_ok(&d, &par);

	cr_assert_eq(qpl_local_count(a), qpl_local_count(b));
	for (uint64_t l = 0; l < qpl_local_count(a); l++) {
		struct qpl_item x, y;

		qpl_item(a, l, &x);
		qpl_item(b, l, &y);
		cr_assert_eq(x.record, y.record);
	}
	qpl_free(a);
	qpl_free(b);
	free(d.frames);
}

static uint64_t first_ids(const struct dataset *d, const struct qpl_params *par)
{
	qpl_plan *pl = plan_ok(d, par);
	uint64_t h = 0;

	for (uint64_t l = 0; l < 64 && l < qpl_local_count(pl); l++) {
		struct qpl_item it;

		qpl_item(pl, l, &it);
		h = h * 1000003 + it.record;
	}
	qpl_free(pl);
	return h;
}

Test(plan, seed_and_epoch_change_the_order)
{
	struct dataset d = make_dataset(200, size_varied);
	struct qpl_params par = params(500, 2, 1, 1, QPL_TAIL_DROP);
	uint64_t a = first_ids(&d, &par);

	par.seed++;
	cr_assert_neq(first_ids(&d, &par), a);
	par.seed--;
	par.epoch++;
	cr_assert_neq(first_ids(&d, &par), a);
	free(d.frames);
}

Test(plan, unshuffled_world_1_is_dataset_order)
{
	struct dataset d = make_dataset(50, size_uneven);
	struct qpl_params par = params(100, 1, 0, 0, QPL_TAIL_DROP);
	qpl_plan *pl = plan_ok(&d, &par);

	cr_assert_eq(qpl_local_count(pl), d.records);
	for (uint64_t l = 0; l < d.records; l++) {
		struct qpl_item it;

		qpl_item(pl, l, &it);
		cr_assert_eq(it.record, l);
	}
	qpl_free(pl);
	free(d.frames);
}

/* The DROP remainder moves with the epoch: different records each one. */
Test(plan, dropped_records_change_with_the_epoch)
{
	struct dataset d = make_dataset(50, size_uneven);
	uint8_t *a = calloc(d.records, 1), *b = calloc(d.records, 1);
	struct qpl_params from = params(100, 0, 0, 1, QPL_TAIL_DROP);

	cr_assert_neq(d.records % 7, 0);
	run_job(&d, &from, 7, UINT64_MAX, a, NULL);
	from.epoch++;
	run_job(&d, &from, 7, UINT64_MAX, b, NULL);
	cr_assert_neq(memcmp(a, b, d.records), 0);
	free(a);
	free(b);
	free(d.frames);
}

/* Shuffle quality (docs/STAGING.md): with the default unit of 40 frames'
 * worth, a batch of 256 records draws from at least 32 distinct frames. */
Test(plan, a_batch_draws_from_many_frames)
{
	struct dataset d = make_dataset(2000, size_512);
	struct qpl_params par = params(40 * 512, 6, 4, 1, QPL_TAIL_DROP);
	qpl_plan *pl = plan_ok(&d, &par);
	uint64_t n = qpl_local_count(pl), batches = 0, distinct = 0, least = UINT64_MAX;
	uint64_t *fr = malloc(256 * sizeof(*fr));

	/* The last step's units are shorter (what is left, split evenly). */
	uint64_t full = d.records / (6 * par.unit) * par.unit;

	for (uint64_t b = 0; (b + 1) * 256 <= n; b++) {
		uint64_t k = 0;

		for (uint64_t l = b * 256; l < (b + 1) * 256; l++) {
			struct qpl_item it;
			bool dup = false;

			qpl_item(pl, l, &it);
			for (uint64_t j = 0; j < k && !dup; j++)
				dup = fr[j] == it.frame;
			if (!dup)
				fr[k++] = it.frame;
		}
		distinct += k;
		if ((b + 1) * 256 <= full)
			least = k < least ? k : least;
		batches++;
	}
	cr_log_info("distinct frames per batch of 256: mean %.2f, least %llu",
		    (double)distinct / (double)batches, (unsigned long long)least);
	cr_assert_geq(distinct, 32 * batches);
	cr_assert_geq(least, 28);
	free(fr);
	qpl_free(pl);
	free(d.frames);
}

/* The order is a specification (docs/STAGING.md): pin it, so a change to
 * the PRNG, the shuffle, the units or the levels cannot pass unnoticed.
 * Regenerate only with a deliberate change of the spec. */
static void golden(const struct qpl_params *par, const struct dataset *d, const uint64_t *want,
		   size_t nwant, uint64_t count)
{
	qpl_plan *pl = plan_ok(d, par);
	uint64_t n = qpl_local_count(pl);

	cr_assert_eq(n, count, "count %llu", (unsigned long long)n);
	for (size_t i = 0; i < nwant; i++) {
		struct qpl_item it;
		uint64_t l = i < nwant / 2 ? i : n - nwant + i; /* first and last halves */

		qpl_item(pl, l, &it);
		cr_expect_eq(it.record, want[i], "l=%llu: %llu", (unsigned long long)l,
			     (unsigned long long)it.record);
	}
	qpl_free(pl);
}

Test(plan, golden_order)
{
	struct dataset d = make_dataset(50, size_uneven);
	struct qpl_params par = params(100, 3, 2, 1, QPL_TAIL_PAD);
	static const uint64_t want[] = GOLDEN_FRESH;

	golden(&par, &d, want, sizeof(want) / sizeof(want[0]), GOLDEN_FRESH_COUNT);
	/* And resumed: at world 3 after 150 records each, then at world 5. */
	par.nlevels = 1;
	par.level[0] = (struct qpl_level){600, 3, 100, 0, 50};
	par.world = 5;
	par.rank = 1;
	static const uint64_t want2[] = GOLDEN_RESUMED;

	golden(&par, &d, want2, sizeof(want2) / sizeof(want2[0]), GOLDEN_RESUMED_COUNT);
	free(d.frames);
}

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */

static void expect_error(const struct dataset *d, const struct qpl_params *par, const char *msg)
{
	qpl_plan *sentinel = (qpl_plan *)&sentinel, *pl = sentinel;
	char err[512] = "";
	int r = qpl_new(d->frames, d->nframes, par, &pl, err, sizeof(err));

	cr_assert_eq(r, -EINVAL, "%d %s", r, err);
	cr_assert_eq(pl, sentinel, "ret_plan written on failure");
	cr_assert_str_eq(err, msg);
	cr_assert_eq(qpl_new(d->frames, d->nframes, par, &pl, NULL, 0), -EINVAL);
}

Test(plan, any_world_up_to_65536_opens)
{
	struct dataset d = make_dataset(10, size_seven);
	struct qpl_params par = params(40, 65536, 65535, 1, QPL_TAIL_KEEP);
	qpl_plan *pl = plan_ok(&d, &par);

	cr_assert_eq(qpl_local_count(pl), 0);
	qpl_free(pl);
	for (uint32_t w = 1; w <= 64; w++) {
		par = params(40, w, w - 1, 1, QPL_TAIL_DROP);
		qpl_free(plan_ok(&d, &par));
	}
	free(d.frames);
}

Test(plan, rejects_bad_parameters)
{
	struct dataset d = make_dataset(10, size_seven);
	struct qpl_params par = params(40, 0, 0, 1, QPL_TAIL_DROP);

	expect_error(&d, &par, "world 0 is out of range (1 to 65536)");
	par = params(40, 65537, 0, 1, QPL_TAIL_DROP);
	expect_error(&d, &par, "world 65537 is out of range (1 to 65536)");
	par = params(40, 4, 4, 1, QPL_TAIL_DROP);
	expect_error(&d, &par, "rank 4 is out of range for world 4 (ranks are 0 to 3)");
	par = params(0, 4, 1, 1, QPL_TAIL_DROP);
	expect_error(&d, &par, "the shuffle unit must be at least 1 record");
	par = params(40, 4, 1, 1, 3);
	expect_error(&d, &par, "tail must be QPL_TAIL_DROP, KEEP or PAD, not 3");
	par = params(40, 4, 1, 1, QPL_TAIL_DROP);
	par.nlevels = 1;
	par.level[0] = (struct qpl_level){60, 2, 10, 0, 3}; /* 80 > 70 records */
	expect_error(&d, &par,
		     "the resume point does not fit this dataset: level 1: it reaches past the "
		     "end of the dataset's records");
	par.level[0] = (struct qpl_level){0, 2, 10, 0, 12};
	expect_error(&d, &par,
		     "the resume point does not fit this dataset: level 1: a depth outside its "
		     "units");
	par.level[0] = (struct qpl_level){0, 2, 50, 0, 3};
	expect_error(&d, &par,
		     "the resume point does not fit this dataset: level 1: units longer than "
		     "the shuffle unit");
	free(d.frames);
}

/* ------------------------------------------------------------------------
 * The state bytes
 * ------------------------------------------------------------------------ */

static struct qpl_params some_state(void)
{
	struct qpl_params p = params(4000, 0, 0, 1, QPL_TAIL_PAD);

	p.nlevels = 2;
	p.level[0] = (struct qpl_level){123456, 24, 4000, 0, 17};
	p.level[1] = (struct qpl_level){3, 6, 77, 5, 78};
	return p;
}

Test(state, round_trips)
{
	struct qpl_params p = some_state(), q;
	uint8_t buf[QPL_STATE_MAX];
	char err[256];
	int n = qpl_state_encode(&p, 0xfeed, buf, sizeof(buf));

	cr_assert_eq(n, QPL_STATE_HEAD + 2 * QPL_STATE_LEVEL);
	cr_assert_eq(qpl_state_decode(buf, (size_t)n, 0xfeed, &q, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(q.seed, p.seed);
	cr_assert_eq(q.epoch, p.epoch);
	cr_assert_eq(q.unit, p.unit);
	cr_assert_eq(q.tail, p.tail);
	cr_assert_eq(q.shuffle, 1);
	cr_assert_eq(q.nlevels, 2);
	cr_assert_eq(memcmp(q.level, p.level, sizeof(p.level)), 0);
	cr_assert_leq(QPL_STATE_MAX, 96, "a state fits quaid's batch header");
	cr_assert_eq(qpl_state_encode(&p, 0xfeed, buf, (size_t)n - 1), -ENOSPC);
}

Test(state, refuses_damage_and_other_datasets)
{
	struct qpl_params p = some_state(), q;
	uint8_t buf[QPL_STATE_MAX], bad[QPL_STATE_MAX];
	char err[256];
	int n = qpl_state_encode(&p, 0xfeed, buf, sizeof(buf));

	cr_assert_eq(qpl_state_decode(buf, (size_t)n, 0xbeef, &q, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "the resume state belongs to another dataset (manifest "
			      "000000000000feed, this one is 000000000000beef)");
	for (int len = 0; len < n; len++)
		cr_assert_lt(qpl_state_decode(buf, (size_t)len, 0xfeed, &q, err, sizeof(err)), 0,
			     "truncated to %d accepted", len);
	/* Every single bit flipped is caught. */
	for (int bit = 0; bit < 8 * n; bit++) {
		memcpy(bad, buf, (size_t)n);
		bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		cr_assert_lt(qpl_state_decode(bad, (size_t)n, 0xfeed, &q, err, sizeof(err)), 0,
			     "bit %d flipped accepted", bit);
	}
}

Test(state, version_1_is_refused_with_what_to_do)
{
	uint8_t v1[64] = {0x51, 0x54, 0x53, 0x31, 1, 0, 0, 0};
	struct qpl_params q;
	char err[512];

	cr_assert_eq(qpl_state_decode(v1, sizeof(v1), 0, &q, err, sizeof(err)), -EPROTO);
	cr_assert(strstr(err, "version 1"), "%s", err);
	cr_assert(strstr(err, "start the epoch over"), "%s", err);
	v1[4] = 9;
	cr_assert_eq(qpl_state_decode(v1, sizeof(v1), 0, &q, err, sizeof(err)), -EPROTO);
	cr_assert_str_eq(err,
			 "resume state version 9 is not supported (this build reads version 2)");
}

/* Lookups need no per-record state: 50M records plan and look up fast
 * (logged, not timed: timings are bench/'s). */
Test(plan, large_dataset_lookups, .timeout = 120)
{
	struct dataset d = make_dataset(100000, size_512);
	struct qpl_params par = params(40 * 512, 24, 7, 1, QPL_TAIL_KEEP);
	uint64_t s = 12345, check = 0, n;
	double t0 = now(), t1, t2;
	qpl_plan *pl = plan_ok(&d, &par);
	struct qpl_item it;

	t1 = now();
	n = qpl_local_count(pl);
	cr_assert_eq(n, d.records / 24 + (d.records % 24 > 7));
	for (int i = 0; i < 1000000; i++) {
		qpl_item(pl, test_rand(&s) % n, &it);
		check += it.record;
	}
	t2 = now();
	cr_log_info("100k frames x 512, world 24: qpl_new %.3f s, 1M lookups %.3f s (%llu)",
		    t1 - t0, t2 - t1, (unsigned long long)check);
	qpl_free(pl);
	free(d.frames);
}

/* Global batches: global batch k (the union of every rank's k-th batch) is
 * the same set at any world size dividing it, also after a resume at
 * another world size; the frame use covers every record. */
static void global_batches(const struct dataset *d, uint32_t g, uint32_t world,
			   const struct qpl_params *from, uint64_t *out, uint64_t *count)
{
	uint64_t slice = g / world;

	*count = 0;
	for (uint32_t r = 0; r < world; r++) {
		struct qpl_params par = *from;
		qpl_plan *pl;

		par.world = world;
		par.rank = r;
		par.global_batch = g;
		pl = plan_ok(d, &par);
		for (uint64_t l = 0; l < qpl_local_count(pl); l++) {
			struct qpl_item it;
			uint64_t full = d->records / g, lq = d->records % g / world;
			uint64_t k = l / slice, at = k * g + r * slice + l % slice;

			if (from->nlevels)
				full = (d->records - 5 * g) / g; /* the resumed case below */
			if (k >= full)				 /* the last, short global batch */
				at = full * g + r * lq + (l - full * slice);
			bool listed = false;

			qpl_item(pl, l, &it);
			out[at] = it.record;
			(*count)++;
			for (uint64_t i = 0; i < qpl_frame_count(pl) && !listed; i++) {
				struct qpl_use u;

				qpl_frame_use(pl, i, &u);
				listed = u.frame == it.frame && u.first_use <= l && l <= u.last_use;
			}
			cr_assert(listed, "world %u rank %u local %llu: frame not in use", world, r,
				  (unsigned long long)l);
		}
		qpl_free(pl);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

Test(plan, global_batches_are_the_same_at_any_world)
{
	struct dataset d = make_dataset(40, size_uneven);
	const uint32_t g = 12, worlds[] = {1, 2, 3, 4, 6, 12};
	struct qpl_params from = params(50, 0, 0, 1, QPL_TAIL_DROP);
	uint64_t *ref = calloc(d.records, sizeof(uint64_t)), *got = calloc(d.records, 8), n1, n;

	global_batches(&d, g, 1, &from, ref, &n1);
	cr_assert_eq(n1, d.records); /* world 1: the last, short global batch too */
	for (size_t i = 1; i < sizeof(worlds) / sizeof(worlds[0]); i++) {
		global_batches(&d, g, worlds[i], &from, got, &n);
		/* DROP leaves the last batch's remainder over the world out. */
		cr_assert_eq(n, n1 - n1 % g % worlds[i], "world %u", worlds[i]);
		for (uint64_t k = 0; k < n1 / g; k++) {
			qsort(got + k * g, g, 8, cmp_u64);
			qsort(ref + k * g, g, 8, cmp_u64);
			cr_assert_eq(memcmp(got + k * g, ref + k * g, g * 8), 0,
				     "world %u: global batch %llu differs", worlds[i],
				     (unsigned long long)k);
		}
	}
	/* Resumed: 4 ranks take 5 batches of 3; 6 ranks go on with batch 5. */
	struct qpl_params par = from, st;
	qpl_plan *pl;
	char err[256];

	par.world = 4;
	par.rank = 2;
	par.global_batch = g;
	pl = plan_ok(&d, &par);
	cr_assert_eq(qpl_resume_point(pl, 5 * 3, &st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(qpl_resume_point(pl, 5 * 3 + 1, &par, err, sizeof(err)), -EINVAL);
	qpl_free(pl);
	global_batches(&d, g, 6, &st, got, &n);
	cr_assert_eq(n, n1 - 5 * g - n1 % g % 6);
	for (uint64_t k = 0; k < n / g; k++) {
		qsort(got + k * g, g, 8, cmp_u64);
		cr_assert_eq(memcmp(got + k * g, ref + (k + 5) * g, g * 8), 0,
			     "resumed: global batch %llu differs", (unsigned long long)(k + 5));
	}
	par = from;
	par.world = 5;
	par.global_batch = g;
	expect_error(&d, &par,
		     "global batches of 12 records do not split evenly over world 5: give a global "
		     "batch that is a multiple of the world size");
	free(ref);
	free(got);
	free(d.frames);
}

/* With global batches and KEEP, a rank whose last batch is one record
 * shorter than rank 0's takes a position at its end: the epoch is done. */
Test(plan, global_batches_end_under_keep)
{
	struct dataset d = make_dataset(40, size_uneven);
	struct qpl_params par = params(50, 5, 4, 1, QPL_TAIL_KEEP), st;
	char err[256];
	qpl_plan *pl;

	par.global_batch = 10;
	cr_assert_neq(d.records % 10 % 5, 0, "the last global batch splits unevenly");
	pl = plan_ok(&d, &par);
	cr_assert_eq(qpl_resume_point(pl, qpl_local_count(pl), &st, err, sizeof(err)), 0, "%s",
		     err);
	cr_assert(st.done);
	qpl_free(pl);
	free(d.frames);
}

/* Four resumes in a row at new world sizes, each before the previous
 * run's leftovers were delivered, need a fourth level: the position cannot
 * be written, and the error says how many records later it can; that many
 * records later it is written, and the epoch still completes exactly. */
Test(plan, a_fourth_nested_level_is_refused_with_when_it_fits)
{
	struct dataset d = make_dataset(300, size_varied);
	uint8_t *seen = calloc(d.records, 1);
	struct qpl_params from = params(2000, 0, 0, 1, QPL_TAIL_DROP);
	uint32_t worlds[] = {8, 6, 5};

	from = run_job(&d, &from, 9, 100, seen, NULL);
	cr_assert_eq(from.nlevels, 1);
	for (int k = 0; k < 2; k++) {
		from = run_job(&d, &from, worlds[k], 50, seen, NULL);
		cr_assert_eq(from.nlevels, (uint32_t)k + 2, "after run %d", k);
	}
	struct qpl_params par = from, st;
	qpl_plan *pl;
	char err[512];
	unsigned long long more;

	par.world = worlds[2];
	par.rank = 0;
	pl = plan_ok(&d, &par);
	cr_assert_eq(qpl_resume_point(pl, 50, &st, err, sizeof(err)), -EOVERFLOW);
	cr_assert(strstr(err, "more than the 3 a state holds"), "%s", err);
	const char *at = strstr(err, "after ");
	cr_assert(at && sscanf(at, "after %llu more records", &more) == 1, "%s", err);
	cr_assert_eq(qpl_resume_point(pl, 50 + more, &st, err, sizeof(err)), 0, "%s", err);
	cr_assert_leq(st.nlevels, 3);
	qpl_free(pl);
	from = run_job(&d, &from, worlds[2], 50 + more, seen, NULL);
	from = run_job(&d, &from, 3, UINT64_MAX, seen, NULL);
	cr_assert(from.done);
	cr_assert_lt(missing(&d, seen), 3);
	free(seen);
	free(d.frames);
}
