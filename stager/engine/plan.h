/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The epoch planner: which records each rank delivers in an epoch, and in
 * what order, as a pure function of the dataset's frame table and
 * (seed, epoch, partitions, world, rank, shuffle, window, tail). No I/O, no
 * allocation per lookup; the same inputs give the same plan on any machine.
 *
 * The global order of an epoch (docs/STAGING.md states it as a spec):
 *  1. Frames (global ids 0..F-1, in dataset order) are permuted by a
 *     seeded shuffle of (seed, epoch) when shuffle is on; else kept.
 *  2. The permuted frame list is cut into P contiguous *partitions*,
 *     balanced by record count, each holding at least one frame.
 *  3. A partition's record sequence is its frames in order, cut into
 *     windows of `window` frames; with shuffle on, the records of each
 *     window are permuted by a seeded bijection of (seed, epoch, p, w).
 *  4. With L_p records in partition p and L = min L_p, the main phase is
 *     round-robin: global position g < P*L is record g div P of partition
 *     g mod P. With tail KEEP, rounds i = L.. max L_p - 1 follow, each
 *     visiting in order the partitions with L_p > i. With tail DROP they
 *     are not delivered.
 *  5. Rank r of world W (W must divide P) owns partitions p = r (mod W) and
 *     delivers, in global order, the records of its partitions. In the main
 *     phase its l-th record has global position g = W*l + r.
 * So the order of the epoch never depends on W: only who delivers what.
 */
#ifndef QUAI_STAGER_PLAN_H
#define QUAI_STAGER_PLAN_H

#include <stddef.h>
#include <stdint.h>

enum { QPL_TAIL_DROP = 0, QPL_TAIL_KEEP = 1 };

/* One frame of the dataset, in global frame order. */
struct qpl_frame {
	uint64_t first_record; /* global id of its first record */
	uint32_t records;
};

struct qpl_params {
	uint64_t seed;
	uint64_t epoch;
	uint32_t partitions; /* P >= 1, at most the number of frames */
	uint32_t world;	     /* W >= 1, divides P */
	uint32_t rank;	     /* < W */
	int shuffle;	     /* 0: dataset order */
	uint32_t window;     /* frames per shuffle window, >= 1 */
	int tail;	     /* QPL_TAIL_DROP or QPL_TAIL_KEEP */
};

typedef struct qpl_plan qpl_plan;

/* Builds the plan of one rank for one epoch. The frame table is copied.
 * Returns 0, -EINVAL with a message in err naming the fault (rank >= world,
 * P > frames, window 0, ...; when W does not divide P the message lists the
 * world sizes that work, e.g. "world 5 does not divide the 64 canonical
 * partitions; world sizes that work: 1 2 4 8 16 32 64"), or -ENOMEM.
 * Memory: O(F + P + tail rounds); never O(records). */
int qpl_new(const struct qpl_frame *frames, uint64_t nframes, const struct qpl_params *p,
	    qpl_plan **ret_plan, char *err, size_t err_len);
void qpl_free(qpl_plan *plan);

/* Records this rank delivers in the epoch. */
uint64_t qpl_local_count(const qpl_plan *plan);
/* Records all ranks together deliver in the epoch (P*L, plus the tail with
 * KEEP). */
uint64_t qpl_global_count(const qpl_plan *plan);

struct qpl_item {
	uint64_t record;   /* global record id */
	uint64_t frame;	   /* global frame id holding it */
	uint32_t index;	   /* record index inside that frame */
	uint64_t position; /* global position in the epoch's order */
};

/* The l-th record (0-based) this rank delivers. l < qpl_local_count().
 * O(log F) or better. Thread-safe (the plan is read-only). */
void qpl_item(const qpl_plan *plan, uint64_t l, struct qpl_item *ret);

/* The local index of this rank's first record whose global position is
 * >= n: where a rank resumes when the ranks together have delivered the
 * first n records of the global order. */
uint64_t qpl_local_start(const qpl_plan *plan, uint64_t n);

/* For prefetching: the frames this rank reads, in the order it first needs
 * them, with the local index range [first_use, last_use] of each. A frame
 * belongs to one partition, so to exactly one rank per epoch. */
struct qpl_use {
	uint64_t frame;
	uint64_t first_use;
	uint64_t last_use;
};
/* Number of frames this rank uses, and the i-th in need order. */
uint64_t qpl_frame_count(const qpl_plan *plan);
void qpl_frame_use(const qpl_plan *plan, uint64_t i, struct qpl_use *ret);

#endif /* QUAI_STAGER_PLAN_H */
