/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The epoch planner: which records each rank delivers in an epoch, and in
 * what order, as a pure function of the dataset's frame table, of
 * (seed, epoch, unit, shuffle, tail, world, rank) and of where the epoch
 * resumes from. No I/O, no allocation per lookup; the same inputs give the
 * same plan on any machine. docs/STAGING.md, "Epoch order", is the
 * specification; in short:
 *
 *  1. The *layout*: frames permuted by a seeded shuffle of (seed, epoch)
 *     (or kept in dataset order), their records laid end to end.
 *  2. The epoch is consumed in *steps*: step s gives each of the W ranks one
 *     *unit*, a run of `unit` consecutive layout records, rank r the r-th;
 *     a unit's records are delivered in a seeded order of their own. The
 *     last step splits what is left evenly; the remainder (< W records) is
 *     dropped, kept (one more for the first ranks) or padded.
 *  3. A *resume state* says what the ranks delivered before: a prefix of the
 *     sequence and, past it, the first d records of each of K units; the
 *     rest (the *holes*, then what follows) is the sequence of the resumed
 *     run, at any world size. A state has at most QPL_LEVELS such levels.
 * Any world size works; every record is delivered once (but the remainder);
 * every rank delivers the same count (+1 under keep); a frame is read by the
 * one or two ranks whose units hold it.
 */
#ifndef QUAI_STAGER_PLAN_H
#define QUAI_STAGER_PLAN_H

#include <stddef.h>
#include <stdint.h>

enum { QPL_TAIL_DROP = 0, QPL_TAIL_KEEP = 1, QPL_TAIL_PAD = 2 };

#define QPL_LEVELS 3	     /* nested resume levels a state can hold */
#define QPL_WORLD_MAX 65536u /* the largest world size */
#define QPL_STATE_HEAD 40u   /* bytes of a state before its levels */
#define QPL_STATE_LEVEL 18u  /* bytes per level */
#define QPL_STATE_MAX (QPL_STATE_HEAD + QPL_LEVELS * QPL_STATE_LEVEL) /* 94 */
#define QPL_STATE_MAGIC 0x31535451u /* "QTS1", shared with version 1 */
#define QPL_STATE_VERSION 2u

/* One frame of the dataset, in global frame order. */
struct qpl_frame {
	uint64_t first_record; /* global id of its first record */
	uint32_t records;
};

/* One level of a resume state, relative to the sequence of the level below
 * (level 0: the layout): positions < n delivered; K units of size u (the
 * first e of them u + 1) from n on, each with its first d records (in its
 * delivery order) delivered. K == 0: a plain prefix. */
struct qpl_level {
	uint64_t n;
	uint32_t k, u, e, d;
};

struct qpl_params {
	uint64_t seed;
	uint64_t epoch;
	uint32_t unit;	/* records per unit, >= 1 */
	uint32_t world; /* 1 .. QPL_WORLD_MAX */
	uint32_t rank;	/* < world */
	int shuffle;	/* 0: dataset order, no record shuffle */
	int tail;	/* QPL_TAIL_* */
	/* Global batches (0: off): the order of world 1, cut into batches of
	 * global_batch records; rank r delivers the r-th of the world's
	 * equal slices of each, so global batch k is the same set of records
	 * at any world size. The world must divide global_batch; tail DROP or
	 * KEEP. Each rank reads the frames of every batch. */
	uint32_t global_batch;
	/* Where the epoch resumes from (all zero: its start). */
	int done; /* the epoch was delivered to its end */
	uint32_t nlevels;
	struct qpl_level level[QPL_LEVELS];
};

typedef struct qpl_plan qpl_plan;

/* Builds the plan of one rank for one epoch. The frame table is copied.
 * Returns 0, -EINVAL with a message in err naming the fault (world 0 or
 * above QPL_WORLD_MAX, rank >= world, unit 0, a resume level that does not
 * fit this dataset, ...), or -ENOMEM. Memory: O(F + K of the levels);
 * never O(records). */
int qpl_new(const struct qpl_frame *frames, uint64_t nframes, const struct qpl_params *p,
	    qpl_plan **ret_plan, char *err, size_t err_len);
void qpl_free(qpl_plan *plan);

/* Records this rank delivers in the epoch (from the resume point). */
uint64_t qpl_local_count(const qpl_plan *plan);
/* Records of the epoch that all ranks together deliver from the resume
 * point (the pad repeats not counted), and those left out (DROP). */
uint64_t qpl_global_count(const qpl_plan *plan);
uint64_t qpl_dropped(const qpl_plan *plan);

struct qpl_item {
	uint64_t record; /* global record id */
	uint64_t frame;	 /* global frame id holding it */
	uint32_t index;	 /* record index inside that frame */
	int repeat;	 /* a PAD repeat of a record delivered this epoch */
};

/* The l-th record (0-based) this rank delivers. l < qpl_local_count().
 * O(log F) plus O(levels^2) bijections. Thread-safe (the plan is
 * read-only). */
void qpl_item(const qpl_plan *plan, uint64_t l, struct qpl_item *ret);

/* The resume point after every rank has delivered its first c records
 * (lockstep, as data-parallel training checkpoints), as the parameters of
 * a plan that delivers exactly the rest (the caller sets world and rank).
 * Returns 0, or -EOVERFLOW when it would need more than QPL_LEVELS levels
 * (err says so) or a position of 2^48 or more. */
int qpl_resume_point(const qpl_plan *plan, uint64_t c, struct qpl_params *ret, char *err,
		     size_t err_len);

/* For prefetching: the frames this rank reads, in the order it first needs
 * them, with the local index range [first_use, last_use] of each. */
struct qpl_use {
	uint64_t frame;
	uint64_t first_use;
	uint64_t last_use;
};
uint64_t qpl_frame_count(const qpl_plan *plan);
void qpl_frame_use(const qpl_plan *plan, uint64_t i, struct qpl_use *ret);

/* State bytes (docs/STAGING.md, "Resume state"). encode: writes
 * QPL_STATE_HEAD + 18 * nlevels bytes of `p` (its seed, epoch, unit,
 * shuffle, tail, done and levels; world and rank are not part of it) for
 * the dataset whose manifest checksum is `manifest`; returns the length or
 * -ENOSPC, -EOVERFLOW (a level beyond what the format holds). decode: fills
 * those fields of *ret; -EINVAL (not a state, damaged: its check fails, a
 * field out of range; another dataset), -QUAI_EVERSION-like -EPROTO for a
 * version this build does not read (err says which and what to do). */
int qpl_state_encode(const struct qpl_params *p, uint64_t manifest, void *buf, size_t len);
int qpl_state_decode(const void *buf, size_t len, uint64_t manifest, struct qpl_params *ret,
		     char *err, size_t err_len);
/* Writes the check of a state of `len` >= QPL_STATE_HEAD bytes (what
 * encode does last): for the fuzz harness, to reach past the check. */
void qpl_state_seal(void *buf, size_t len);

#endif /* QUAI_STAGER_PLAN_H */
