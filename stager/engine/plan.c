/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The epoch planner (plan.h). docs/STAGING.md, section "Epoch order", is the
 * specification this file implements; the two change together, since other
 * implementations (and checkpoints) depend on the order being exactly this.
 *
 * Everything that decides order is unsigned 64-bit integer arithmetic: no
 * floating point, no rand(), no sort whose result depends on how the C
 * library breaks ties (every key sorted here is unique, or ties are broken
 * explicitly). So the plan is the same on every machine.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it; standalone builds may not */
#endif
#include "errmsg.h"
#include "plan.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Randomness: splitmix64 (Steele, Lea, Flood 2014)
 * ------------------------------------------------------------------------ */

#define QPL_GAMMA UINT64_C(0x9e3779b97f4a7c15)
/* Domain tags: the frame shuffle and the window shuffles of one
 * (seed, epoch) must not share keys. */
#define QPL_DOMAIN_FRAMES UINT64_C(1)
#define QPL_DOMAIN_WINDOW UINT64_C(2)

static uint64_t fin64(uint64_t z)
{
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* splitmix64's output for state x. A bijection of 64-bit words, and unlike
 * fin64 alone it does not map 0 to 0. */
static uint64_t mix64(uint64_t x)
{
	return fin64(x + QPL_GAMMA);
}

static uint64_t rng_next(uint64_t *state)
{
	*state += QPL_GAMMA;
	return fin64(*state);
}

/* Uniform in [0, bound), bound >= 1. Draws below 2^64 mod bound are
 * rejected, so what remains is a whole number of copies of [0, bound): no
 * modulo bias, and no floating point. */
static uint64_t rng_below(uint64_t *state, uint64_t bound)
{
	uint64_t threshold = (0 - bound) % bound;

	for (;;) {
		uint64_t x = rng_next(state);

		if (x >= threshold)
			return x % bound;
	}
}

/* A seeded bijection of [0, n): a balanced 4-round Feistel network on the
 * smallest even number of bits b with 2^b >= n, and cycle walking (apply
 * again while the result is >= n). 2^b < 4n, so fewer than 4 rounds of the
 * network are needed on average; it is O(1) memory, which is what lets
 * qpl_item() find one record of a window without storing the window. */
struct qpl_bij {
	uint64_t n;
	unsigned half;
	uint64_t mask;
	uint64_t round_key[4];
};

static void bij_init(struct qpl_bij *b, uint64_t key, uint64_t n)
{
	unsigned bits = n > 1 ? 64 - (unsigned)__builtin_clzll(n - 1) : 0;

	bits += bits & 1;
	b->n = n;
	b->half = bits / 2;
	b->mask = (UINT64_C(1) << b->half) - 1;
	for (unsigned r = 0; r < 4; r++)
		b->round_key[r] = mix64(key + r);
}

static uint64_t bij_apply(const struct qpl_bij *b, uint64_t x)
{
	do {
		uint64_t left = x >> b->half, right = x & b->mask;

		for (unsigned r = 0; r < 4; r++) {
			uint64_t t = left ^ (mix64(b->round_key[r] ^ right) & b->mask);

			left = right;
			right = t;
		}
		x = left << b->half | right;
	} while (x >= b->n);
	return x;
}

/* ------------------------------------------------------------------------
 * Sequences and resume levels
 * ------------------------------------------------------------------------
 *
 * S_0 is the layout. Level i (1-based) is relative to S_(i-1); S_i is its
 * holes, unit by unit in delivery order, then S_(i-1) from n + span on.
 */

struct qpl_lev {
	struct qpl_level l;
	uint64_t span;	/* k*u + e */
	uint64_t holes; /* H */
	uint64_t *key;	/* k unit keys (shuffle on), else NULL */
};

struct qpl_unit {
	uint64_t start; /* in the base sequence */
	uint64_t size;
	uint64_t t0;	/* first delivery index delivered by this plan */
	uint64_t local; /* local index of delivery index t0 */
	uint64_t key;
};

struct qpl_plan {
	struct qpl_params par;
	uint64_t nframes;
	uint64_t *first_record; /* by frame id */
	uint64_t *perm;		/* permuted position -> frame id; NULL: identity */
	uint64_t *cum;		/* cum[k]: records at permuted positions < k; F + 1 */
	uint64_t window_key;	/* (seed, epoch) part of every unit's key */
	uint32_t nlev;
	struct qpl_lev lev[QPL_LEVELS];
	uint32_t base;	 /* the sequence this run steps through: S_base */
	uint64_t p0;	 /* where its steps start in S_base */
	uint64_t steps;	 /* full steps */
	uint64_t fu, fe; /* the last step: units of fu records, fe of them fu + 1 */
	struct qpl_unit lead;
	int has_lead;
	struct qpl_unit *unit; /* this rank's units: steps, then the last */
	uint64_t nunits;
	int pad; /* this rank ends with a PAD repeat */
	struct qpl_unit padu;
	uint64_t local_count, global_count, dropped;
	uint64_t lockstep; /* the most records a rank delivers (rank 0's) */
	/* Global batches: the plan of world 1, and this rank's slices of its
	 * batches: `full` whole global batches of `slice` records each, then
	 * the last, of `lq` records (the first `le` ranks one more). */
	qpl_plan *inner;
	uint64_t slice, full, lq, le;
	uint64_t lead0; /* the lead of rank 0 */
	struct qpl_use *use;
	uint64_t nuse;
};

static uint64_t lev_span(const struct qpl_level *l)
{
	return (uint64_t)l->k * l->u + l->e;
}

/* Holes: unit v holds u + (v < e) records and its first min(d, size) are
 * delivered. */
static uint64_t lev_holes(const struct qpl_level *l)
{
	if (!l->k || l->d > l->u)
		return 0;
	return (uint64_t)l->e * (l->u + 1 - l->d) + (uint64_t)(l->k - l->e) * (l->u - l->d);
}

static uint64_t unit_start(const struct qpl_level *l, uint64_t v)
{
	return l->n + v * l->u + (v < l->e ? v : l->e);
}

static uint64_t unit_key(const qpl_plan *pl, uint64_t s0, uint64_t size)
{
	return mix64(mix64(pl->window_key ^ s0) ^ size);
}

/* Delivery index t of a unit of `size` records with key `key`, as an offset
 * in the unit. */
static uint64_t unit_offset(const qpl_plan *pl, uint64_t key, uint64_t size, uint64_t t)
{
	struct qpl_bij b;

	if (!pl->par.shuffle || size < 2)
		return t;
	bij_init(&b, key, size);
	return bij_apply(&b, t);
}

/* Position p of S_i as a position of S_0. */
static uint64_t map_down(const qpl_plan *pl, uint32_t i, uint64_t p)
{
	for (; i > 0; i--) {
		const struct qpl_lev *lv = &pl->lev[i - 1];
		const struct qpl_level *l = &lv->l;

		if (p >= lv->holes) {
			p = p - lv->holes + l->n + lv->span;
			continue;
		}
		uint64_t a = l->u + 1 - l->d, b = l->u - l->d, v, j;

		if (p < (uint64_t)l->e * a) {
			v = p / a;
			j = p % a;
		} else {
			v = l->e + (p - (uint64_t)l->e * a) / b;
			j = (p - (uint64_t)l->e * a) % b;
		}
		uint64_t size = l->u + (v < l->e), t = l->d + j;

		p = unit_start(l, v) + unit_offset(pl, lv->key ? lv->key[v] : 0, size, t);
	}
	return p;
}

/* The start in S_0 of positions [p, p + n) of S_i when they lie end to end
 * there (past every level's holes), else UINT64_MAX. */
static uint64_t contiguous_down(const qpl_plan *pl, uint32_t i, uint64_t p, uint64_t n)
{
	for (; i > 0; i--) {
		const struct qpl_lev *lv = &pl->lev[i - 1];

		if (p < lv->holes && n)
			return UINT64_MAX;
		p = p - lv->holes + lv->l.n + lv->span;
	}
	return p;
}

/* The length of S_i. */
static uint64_t seq_len(const qpl_plan *pl, uint32_t i)
{
	uint64_t len = pl->cum[pl->nframes];

	for (uint32_t j = 0; j < i; j++)
		len = len - (pl->lev[j].l.n + pl->lev[j].span) + pl->lev[j].holes;
	return len;
}

/* The permuted position k in [lo, hi) with cum[k] <= o < cum[k + 1]. */
static uint64_t find_frame(const uint64_t *cum, uint64_t lo, uint64_t hi, uint64_t o)
{
	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (cum[mid] <= o)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static void unit_fill(const qpl_plan *pl, struct qpl_unit *u, uint64_t start, uint64_t size)
{
	u->start = start;
	u->size = size;
	u->key = pl->par.shuffle && size ? unit_key(pl, map_down(pl, pl->base, start), size) : 0;
}

/* ------------------------------------------------------------------------
 * Frame use
 * ------------------------------------------------------------------------ */

struct use_acc {
	qpl_plan *pl;
	uint64_t *slot; /* by frame id: index in use + 1, 0: none */
	uint64_t *wfirst, *wlast;
	uint64_t wcap;
};

static void use_add(struct use_acc *a, uint64_t frame, uint64_t first, uint64_t last)
{
	qpl_plan *pl = a->pl;
	uint64_t i = a->slot[frame];

	if (!i) {
		pl->use[pl->nuse] = (struct qpl_use){frame, first, last};
		a->slot[frame] = ++pl->nuse;
		return;
	}
	struct qpl_use *u = &pl->use[i - 1];

	u->first_use = first < u->first_use ? first : u->first_use;
	u->last_use = last > u->last_use ? last : u->last_use;
}

static uint64_t frame_id(const qpl_plan *pl, uint64_t k)
{
	return pl->perm ? pl->perm[k] : k;
}

/* The frames of one unit's delivered indices [t0, size). A unit that lies
 * end to end in the layout covers a run of frames, whose first and last
 * use are found by walking the delivery order from each end until every
 * frame is met; a unit of holes is walked whole. */
static int use_unit(struct use_acc *a, const struct qpl_unit *u)
{
	qpl_plan *pl = a->pl;
	uint64_t s0, t0 = u->t0, z = u->size;

	if (t0 >= z)
		return 0;
	s0 = contiguous_down(pl, pl->base, u->start, z);
	if (s0 == UINT64_MAX) {
		for (uint64_t t = t0; t < z; t++) {
			uint64_t p =
			    map_down(pl, pl->base, u->start + unit_offset(pl, u->key, z, t));
			uint64_t k = find_frame(pl->cum, 0, pl->nframes, p), l = u->local + t - t0;

			use_add(a, frame_id(pl, k), l, l);
		}
		return 0;
	}
	uint64_t k0 = find_frame(pl->cum, 0, pl->nframes, s0);
	uint64_t k1 = find_frame(pl->cum, k0, pl->nframes, s0 + z - 1), m = k1 - k0 + 1;

	if (!pl->par.shuffle || m == 1) {
		for (uint64_t k = k0; k <= k1; k++) {
			uint64_t lo = pl->cum[k] > s0 ? pl->cum[k] - s0 : 0;
			uint64_t hi = pl->cum[k + 1] - s0 < z ? pl->cum[k + 1] - s0 : z;

			lo = lo > t0 ? lo : t0;
			if (lo < hi)
				use_add(a, frame_id(pl, k), u->local + lo - t0,
					u->local + hi - 1 - t0);
		}
		return 0;
	}
	if (m > a->wcap) {
		uint64_t *f = realloc(a->wfirst, sizeof(*f) * m), *l;

		if (!f)
			return -ENOMEM;
		a->wfirst = f;
		l = realloc(a->wlast, sizeof(*l) * m);
		if (!l)
			return -ENOMEM;
		a->wlast = l;
		a->wcap = m;
	}
	for (uint64_t f = 0; f < m; f++)
		a->wfirst[f] = a->wlast[f] = UINT64_MAX;
	uint64_t seen = 0, closed = 0;
	struct qpl_bij b;

	bij_init(&b, u->key, z);
	for (uint64_t t = t0; t < z && seen < m; t++) {
		uint64_t f = find_frame(pl->cum, k0, k1 + 1, s0 + bij_apply(&b, t)) - k0;

		if (a->wfirst[f] == UINT64_MAX) {
			a->wfirst[f] = t;
			seen++;
		}
	}
	for (uint64_t t = z; t-- > t0 && closed < seen;) {
		uint64_t f = find_frame(pl->cum, k0, k1 + 1, s0 + bij_apply(&b, t)) - k0;

		if (a->wlast[f] == UINT64_MAX) {
			a->wlast[f] = t;
			closed++;
		}
	}
	for (uint64_t f = 0; f < m; f++)
		if (a->wfirst[f] != UINT64_MAX)
			use_add(a, frame_id(pl, k0 + f), u->local + a->wfirst[f] - t0,
				u->local + a->wlast[f] - t0);
	return 0;
}

static int cmp_use(const void *a, const void *b)
{
	const struct qpl_use *x = a, *y = b;

	if (x->first_use != y->first_use)
		return x->first_use < y->first_use ? -1 : 1;
	return x->frame < y->frame ? -1 : x->frame > y->frame;
}

static int build_use(qpl_plan *pl)
{
	struct use_acc a = {.pl = pl};
	int r = 0;

	pl->use = malloc(sizeof(*pl->use) * (pl->nframes ? pl->nframes : 1));
	a.slot = calloc(pl->nframes ? pl->nframes : 1, sizeof(*a.slot));
	if (!pl->use || !a.slot) {
		free(a.slot);
		return -ENOMEM;
	}
	if (pl->has_lead)
		r = use_unit(&a, &pl->lead);
	for (uint64_t i = 0; i < pl->nunits && r == 0; i++)
		r = use_unit(&a, &pl->unit[i]);
	if (r == 0 && pl->pad) {
		struct qpl_item it;

		qpl_item(pl, pl->local_count - 1, &it);
		use_add(&a, it.frame, pl->local_count - 1, pl->local_count - 1);
	}
	free(a.slot);
	free(a.wfirst);
	free(a.wlast);
	if (r == 0)
		qsort(pl->use, pl->nuse, sizeof(*pl->use), cmp_use);
	return r;
}

/* ------------------------------------------------------------------------
 * Building the plan
 * ------------------------------------------------------------------------ */

static int check_params(const struct qpl_frame *frames, uint64_t nframes,
			const struct qpl_params *par, char *err, size_t err_len)
{
	if (!frames && nframes) {
		qerr_set(err, err_len, "no frame table");
		return -EINVAL;
	}
	if (par->world < 1 || par->world > QPL_WORLD_MAX) {
		qerr_set(err, err_len, "world %u is out of range (1 to %u)", par->world,
			 QPL_WORLD_MAX);
		return -EINVAL;
	}
	if (par->rank >= par->world) {
		qerr_set(err, err_len, "rank %u is out of range for world %u (ranks are 0 to %u)",
			 par->rank, par->world, par->world - 1);
		return -EINVAL;
	}
	if (par->unit < 1) {
		qerr_set(err, err_len, "the shuffle unit must be at least 1 record");
		return -EINVAL;
	}
	if (par->tail != QPL_TAIL_DROP && par->tail != QPL_TAIL_KEEP && par->tail != QPL_TAIL_PAD) {
		qerr_set(err, err_len, "tail must be QPL_TAIL_DROP, KEEP or PAD, not %d",
			 par->tail);
		return -EINVAL;
	}
	if (par->nlevels > QPL_LEVELS || (par->done && par->nlevels)) {
		qerr_set(err, err_len,
			 "the resume point has %u levels (at most %u, none when done)",
			 par->nlevels, QPL_LEVELS);
		return -EINVAL;
	}
	return 0;
}

/* A level must fit the sequence it refers to, and be in normal form: units
 * exactly when some of their records were delivered. */
static int check_level(const struct qpl_level *l, uint32_t i, uint64_t len, uint32_t unit,
		       char *err, size_t err_len)
{
	const char *why = NULL;

	if (!l->k) {
		if (l->u || l->e || l->d)
			why = "a level without units has a unit size or depth";
	} else if (l->k > QPL_WORLD_MAX) {
		why = "more units than the largest world";
	} else if (l->e >= l->k) {
		why = "more longer units than units";
	} else if (l->u > unit || (l->u == unit && l->e)) {
		why = "units longer than the shuffle unit";
	} else if (l->d < 1 || l->d > l->u + (l->e ? 1 : 0)) {
		why = "a depth outside its units";
	}
	if (!why && (l->n > len || lev_span(l) > len - l->n))
		why = "it reaches past the end of the dataset's records";
	if (why) {
		qerr_set(err, err_len, "the resume point does not fit this dataset: level %u: %s",
			 i, why);
		return -EINVAL;
	}
	return 0;
}

static int build_levels(qpl_plan *pl, char *err, size_t err_len)
{
	pl->nlev = pl->par.nlevels;
	for (uint32_t i = 0; i < pl->nlev; i++) {
		struct qpl_lev *lv = &pl->lev[i];
		uint64_t len = seq_len(pl, i);
		int r;

		lv->l = pl->par.level[i];
		r = check_level(&lv->l, i + 1, len, pl->par.unit, err, err_len);
		if (r < 0)
			return r;
		lv->span = lev_span(&lv->l);
		lv->holes = lev_holes(&lv->l);
		if (!pl->par.shuffle || !lv->l.k)
			continue;
		lv->key = malloc(sizeof(*lv->key) * lv->l.k);
		if (!lv->key)
			return -ENOMEM;
		for (uint64_t v = 0; v < lv->l.k; v++)
			lv->key[v] = unit_key(pl, map_down(pl, i, unit_start(&lv->l, v)),
					      lv->l.u + (v < lv->l.e));
	}
	return 0;
}

static int build_units(qpl_plan *pl)
{
	uint64_t w = pl->par.world, r = pl->par.rank, z = pl->par.unit, len, rest, local = 0;
	const struct qpl_level *top = pl->nlev ? &pl->lev[pl->nlev - 1].l : NULL;

	if (pl->par.done)
		return 0;
	/* Resumed at the world size that took the state: rank r goes on with
	 * unit r of the last level, where it stopped. */
	if (top && top->k == w) {
		pl->base = pl->nlev - 1;
		pl->p0 = top->n + lev_span(top);
		pl->has_lead = 1;
		unit_fill(pl, &pl->lead, unit_start(top, r), top->u + (r < top->e));
		pl->lead.t0 = pl->lead.size < top->d ? pl->lead.size : top->d;
		pl->lead.local = 0;
		local = pl->lead.size - pl->lead.t0;
		pl->lead0 = top->u + (top->e ? 1u : 0u);
		pl->lead0 -= pl->lead0 < top->d ? pl->lead0 : top->d;
		pl->global_count = pl->lev[pl->nlev - 1].holes;
	} else {
		pl->base = pl->nlev;
		pl->p0 = 0;
	}
	len = seq_len(pl, pl->base);
	rest = len - pl->p0;
	pl->steps = rest / (w * z);
	rest -= pl->steps * w * z;
	pl->fu = rest / w;
	pl->fe = rest % w;
	pl->nunits = pl->steps + 1;
	pl->unit = calloc(pl->nunits, sizeof(*pl->unit));
	if (!pl->unit)
		return -ENOMEM;
	for (uint64_t s = 0; s < pl->steps; s++) {
		unit_fill(pl, &pl->unit[s], pl->p0 + s * w * z + r * z, z);
		pl->unit[s].local = local;
		local += z;
	}
	uint64_t last = pl->p0 + pl->steps * w * z;
	struct qpl_unit *f = &pl->unit[pl->steps];

	if (pl->par.tail == QPL_TAIL_DROP) {
		unit_fill(pl, f, last + r * pl->fu, pl->fu);
		pl->dropped = pl->fe;
		pl->global_count += pl->steps * w * z + w * pl->fu;
	} else {
		unit_fill(pl, f, last + r * pl->fu + (r < pl->fe ? r : pl->fe),
			  pl->fu + (r < pl->fe));
		pl->global_count += pl->steps * w * z + rest;
	}
	f->local = local;
	local += f->size;
	if (pl->par.tail == QPL_TAIL_PAD && pl->fe && r >= pl->fe) {
		/* The repeat: the first record of its own last unit, so it
		 * reads nothing more; a rank whose last unit is empty repeats
		 * that of rank r mod fe. */
		pl->pad = 1;
		if (pl->fu)
			pl->padu = *f;
		else
			unit_fill(pl, &pl->padu, last + r % pl->fe, 1);
		local++;
	} else if (pl->par.tail == QPL_TAIL_PAD && pl->has_lead && !pl->steps && !rest && top->e &&
		   r >= top->e) {
		/* Resumed inside the last step of a padded epoch: the same
		 * repeat as the run that took the state would have made. */
		pl->pad = 1;
		if (top->u)
			pl->padu = pl->lead;
		else
			unit_fill(pl, &pl->padu, unit_start(top, r % top->e), 1);
		local++;
	}
	pl->local_count = local;
	/* Rank 0 delivers the most: the longer units come first. */
	pl->lockstep =
	    pl->lead0 + pl->steps * z + pl->fu + (pl->par.tail != QPL_TAIL_DROP && pl->fe ? 1 : 0);
	if (pl->lockstep < local)
		pl->lockstep = local;
	return 0;
}

static int build_global(qpl_plan *pl, const struct qpl_frame *frames, uint64_t nframes, char *err,
			size_t err_len);

int qpl_new(const struct qpl_frame *frames, uint64_t nframes, const struct qpl_params *par,
	    qpl_plan **ret_plan, char *err, size_t err_len)
{
	qpl_plan *pl;
	int r;

	if (!par || !ret_plan) {
		qerr_set(err, err_len, "no parameters or no place for the plan");
		return -EINVAL;
	}
	r = check_params(frames, nframes, par, err, err_len);
	if (r < 0)
		return r;
	if (nframes >= SIZE_MAX / (4 * sizeof(uint64_t)))
		return -ENOMEM;

	pl = calloc(1, sizeof(*pl));
	if (!pl)
		return -ENOMEM;
	pl->par = *par;
	pl->par.shuffle = !!par->shuffle;
	if (par->global_batch) {
		r = build_global(pl, frames, nframes, err, err_len);
		if (r < 0)
			goto out;
		*ret_plan = pl;
		return 0;
	}
	pl->nframes = nframes;
	pl->first_record = malloc(sizeof(*pl->first_record) * (nframes ? nframes : 1));
	pl->cum = malloc(sizeof(*pl->cum) * (nframes + 1));
	if (!pl->first_record || !pl->cum)
		goto nomem;

	for (uint64_t f = 0; f < nframes; f++) {
		if (frames[f].records == 0) {
			qerr_set(err, err_len, "frame %llu has no records", (unsigned long long)f);
			r = -EINVAL;
			goto out;
		}
		pl->first_record[f] = frames[f].first_record;
	}

	/* The layout: Fisher-Yates from the last position down. */
	if (pl->par.shuffle && nframes) {
		uint64_t state = mix64(mix64(mix64(QPL_DOMAIN_FRAMES) ^ par->seed) ^ par->epoch);

		pl->perm = malloc(sizeof(*pl->perm) * nframes);
		if (!pl->perm)
			goto nomem;
		for (uint64_t f = 0; f < nframes; f++)
			pl->perm[f] = f;
		for (uint64_t i = nframes - 1; i > 0; i--) {
			uint64_t j = rng_below(&state, i + 1), t = pl->perm[i];

			pl->perm[i] = pl->perm[j];
			pl->perm[j] = t;
		}
	}
	pl->window_key = mix64(mix64(mix64(QPL_DOMAIN_WINDOW) ^ par->seed) ^ par->epoch);
	pl->cum[0] = 0;
	for (uint64_t k = 0; k < nframes; k++) {
		uint32_t n = frames[pl->perm ? pl->perm[k] : k].records;

		if (pl->cum[k] > (UINT64_C(1) << 48) - n) {
			qerr_set(err, err_len, "the dataset has 2^48 records or more");
			r = -EINVAL;
			goto out;
		}
		pl->cum[k + 1] = pl->cum[k] + n;
	}

	r = build_levels(pl, err, err_len);
	if (r < 0)
		goto out;
	r = build_units(pl);
	if (r < 0)
		goto out;
	r = build_use(pl);
	if (r < 0)
		goto out;
	*ret_plan = pl;
	return 0;

nomem:
	r = -ENOMEM;
out:
	qpl_free(pl);
	return r;
}

void qpl_free(qpl_plan *pl)
{
	if (!pl)
		return;
	qpl_free(pl->inner);
	for (uint32_t i = 0; i < QPL_LEVELS; i++)
		free(pl->lev[i].key);
	free(pl->first_record);
	free(pl->perm);
	free(pl->cum);
	free(pl->unit);
	free(pl->use);
	free(pl);
}

uint64_t qpl_local_count(const qpl_plan *pl)
{
	return pl->local_count;
}

uint64_t qpl_global_count(const qpl_plan *pl)
{
	return pl->global_count;
}

uint64_t qpl_dropped(const qpl_plan *pl)
{
	return pl->dropped;
}

/* Global batches: the world-1 index of this rank's local index l. */
static uint64_t global_of(const qpl_plan *pl, uint64_t l)
{
	uint64_t r = pl->par.rank, g = pl->par.global_batch;

	if (l < pl->full * pl->slice)
		return l / pl->slice * g + r * pl->slice + l % pl->slice;
	return pl->full * g + r * pl->lq + (r < pl->le ? r : pl->le) + (l - pl->full * pl->slice);
}

/* This rank's first local index whose world-1 index is >= x (or its
 * count), and its last whose world-1 index is <= x (UINT64_MAX: none). */
static uint64_t local_ge(const qpl_plan *pl, uint64_t x)
{
	uint64_t lo = 0, hi = pl->local_count;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (global_of(pl, mid) >= x)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

static uint64_t local_le(const qpl_plan *pl, uint64_t x)
{
	uint64_t l = local_ge(pl, x + 1);

	return l ? l - 1 : UINT64_MAX;
}

static int build_global(qpl_plan *pl, const struct qpl_frame *frames, uint64_t nframes, char *err,
			size_t err_len)
{
	struct qpl_params in = pl->par;
	uint64_t w = pl->par.world, r = pl->par.rank, g = pl->par.global_batch, n1, rest;
	int ret;

	if (g % w) {
		qerr_set(err, err_len,
			 "global batches of %u records do not split evenly over world %u: give a "
			 "global batch that is a multiple of the world size",
			 pl->par.global_batch, pl->par.world);
		return -EINVAL;
	}
	if (pl->par.tail == QPL_TAIL_PAD) {
		qerr_set(err, err_len, "global batches take tail DROP or KEEP, not PAD");
		return -EINVAL;
	}
	in.global_batch = 0;
	in.world = 1;
	in.rank = 0;
	ret = qpl_new(frames, nframes, &in, &pl->inner, err, err_len);
	if (ret < 0)
		return ret;
	n1 = qpl_local_count(pl->inner);
	pl->slice = g / w;
	pl->full = n1 / g;
	rest = n1 % g;
	pl->lq = rest / w;
	pl->le = pl->par.tail == QPL_TAIL_KEEP ? rest % w : 0;
	pl->local_count = pl->full * pl->slice + pl->lq + (r < pl->le);
	pl->lockstep = pl->full * pl->slice + pl->lq + (pl->le ? 1 : 0);
	pl->global_count = pl->full * g + pl->lq * w + pl->le;
	pl->dropped = qpl_dropped(pl->inner) + (n1 - pl->global_count);
	/* Frames: those of the world-1 plan whose use range holds one of this
	 * rank's records; the range is this rank's first record at or after
	 * it starts to its last at or before it ends (a superset of the
	 * frame's records here, which is what the prefetcher needs). */
	pl->use = malloc(sizeof(*pl->use) * (qpl_frame_count(pl->inner) + 1));
	if (!pl->use)
		return -ENOMEM;
	for (uint64_t i = 0; i < qpl_frame_count(pl->inner); i++) {
		struct qpl_use u;
		uint64_t a, b;

		qpl_frame_use(pl->inner, i, &u);
		a = local_ge(pl, u.first_use);
		b = local_le(pl, u.last_use);
		if (a < pl->local_count && b != UINT64_MAX && a <= b)
			pl->use[pl->nuse++] = (struct qpl_use){u.frame, a, b};
	}
	qsort(pl->use, pl->nuse, sizeof(*pl->use), cmp_use);
	return 0;
}

void qpl_item(const qpl_plan *pl, uint64_t l, struct qpl_item *ret)
{
	const struct qpl_unit *u;
	uint64_t t, z = pl->par.unit;

	assert(l < pl->local_count);
	if (pl->inner) {
		qpl_item(pl->inner, global_of(pl, l), ret);
		return;
	}
	ret->repeat = 0;
	if (pl->has_lead && l < pl->lead.size - pl->lead.t0) {
		u = &pl->lead;
		t = u->t0 + l;
	} else {
		uint64_t m = l - (pl->has_lead ? pl->lead.size - pl->lead.t0 : 0);

		if (m < pl->steps * z) {
			u = &pl->unit[m / z];
			t = m % z;
		} else if (m - pl->steps * z < pl->unit[pl->steps].size) {
			u = &pl->unit[pl->steps];
			t = m - pl->steps * z;
		} else {
			u = &pl->padu;
			t = 0;
			ret->repeat = 1;
		}
	}
	uint64_t p = map_down(pl, pl->base, u->start + unit_offset(pl, u->key, u->size, t));
	uint64_t k = find_frame(pl->cum, 0, pl->nframes, p);

	ret->frame = frame_id(pl, k);
	ret->index = (uint32_t)(p - pl->cum[k]);
	ret->record = pl->first_record[ret->frame] + ret->index;
}

/* Folds the last level into the one below while the last one's delivered
 * prefix covers the holes of the one below, turns a level whose units are
 * wholly delivered into a prefix, and drops an empty prefix. */
static void normalize(struct qpl_level *lv, uint32_t *count)
{
	uint32_t n = *count;

	while (n) {
		struct qpl_level *top = &lv[n - 1];

		if (top->k && (top->d > top->u || (top->d == top->u && !top->e))) {
			*top = (struct qpl_level){.n = top->n + lev_span(top)};
			continue;
		}
		if (!top->k && !top->n) {
			n--;
			continue;
		}
		if (n >= 2 && top->n >= lev_holes(&lv[n - 2])) {
			struct qpl_level *below = &lv[n - 2], m = *top;

			m.n = below->n + lev_span(below) + (top->n - lev_holes(below));
			*below = m;
			n--;
			continue;
		}
		break;
	}
	*count = n;
}

int qpl_resume_point(const qpl_plan *pl, uint64_t c, struct qpl_params *ret, char *err,
		     size_t err_len)
{
	struct qpl_params p = pl->par;
	struct qpl_level lv[QPL_LEVELS + 1];
	uint64_t w = pl->par.world, z = pl->par.unit, lead;
	uint32_t n;

	p.world = p.rank = 0;
	memset(p.level, 0, sizeof(p.level));
	if (pl->inner && c < pl->local_count) {
		/* Global batches: after k whole batches on every rank, the
		 * world-1 order's first k global batches are delivered. */
		if (c % pl->slice || c > pl->full * pl->slice) {
			qerr_set(err, err_len,
				 "with global batches a position is only taken between batches "
				 "(%llu records is inside one)",
				 (unsigned long long)c);
			return -EINVAL;
		}
		int e = qpl_resume_point(pl->inner, c / pl->slice * pl->par.global_batch, ret, err,
					 err_len);

		ret->global_batch = pl->par.global_batch;
		return e;
	}
	if (pl->par.done || c >= pl->lockstep || (pl->inner && c >= pl->local_count)) {
		p.done = 1;
		p.nlevels = 0;
		*ret = p;
		return 0;
	}
	for (uint32_t i = 0; i < pl->nlev; i++)
		lv[i] = pl->lev[i].l;
	lead = pl->lead0;
	if (c < lead) {
		lv[pl->nlev - 1].d += (uint32_t)c;
		n = pl->nlev;
	} else {
		uint64_t m = c - lead;
		struct qpl_level add;

		if (m < pl->steps * z)
			add = (struct qpl_level){pl->p0 + m / z * w * z, (uint32_t)w, (uint32_t)z,
						 0, (uint32_t)(m % z)};
		else
			add = (struct qpl_level){
			    pl->p0 + pl->steps * w * z, (uint32_t)w, (uint32_t)pl->fu,
			    pl->par.tail == QPL_TAIL_DROP ? 0 : (uint32_t)pl->fe,
			    (uint32_t)(m - pl->steps * z)};
		if (!add.d)
			add = (struct qpl_level){.n = add.n};
		n = pl->base;
		lv[n++] = add;
	}
	normalize(lv, &n);
	if (n > QPL_LEVELS) {
		/* The run steps through S_base, whose first H records are the
		 * holes of the level below: once a whole step lies past them,
		 * the new level folds into that one. */
		uint64_t h = pl->base ? pl->lev[pl->base - 1].holes : 0;
		uint64_t fold = lead + (h + w * z - 1) / (w * z) * z,
			 more = fold > c ? fold - c : 1;

		qerr_set(err, err_len,
			 "this position needs a resume state of %u levels, more than the %u a "
			 "state holds: the epoch was resumed at a new world size %u times in a "
			 "row, each time before the previous run's leftover records were all "
			 "delivered; a position taken after %llu more records on each rank "
			 "fits",
			 n, QPL_LEVELS, n - 1, (unsigned long long)more);
		return -EOVERFLOW;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (lv[i].n + lev_span(&lv[i]) >= UINT64_C(1) << 48) {
			qerr_set(err, err_len, "the position is beyond 2^48 records");
			return -EOVERFLOW;
		}
		p.level[i] = lv[i];
	}
	p.nlevels = n;
	p.done = 0;
	*ret = p;
	return 0;
}

uint64_t qpl_frame_count(const qpl_plan *pl)
{
	return pl->nuse;
}

void qpl_frame_use(const qpl_plan *pl, uint64_t i, struct qpl_use *ret)
{
	assert(i < pl->nuse);
	*ret = pl->use[i];
}

/* ------------------------------------------------------------------------
 * State bytes
 * ------------------------------------------------------------------------ */

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* The check: mix over the length, then each 8-byte little-endian word of
 * the state (the last one zero-padded), with the check field read as 0. */
static uint32_t state_check(const uint8_t *p, size_t len)
{
	uint64_t h = mix64(len);

	for (size_t i = 0; i < len; i += 8) {
		uint8_t w[8] = {0};

		memcpy(w, p + i, len - i < 8 ? len - i : 8);
		if (i == 32)
			memset(w + 4, 0, 4); /* bytes 36..39: the check itself */
		h = mix64(h ^ get_le(w, 8));
	}
	return (uint32_t)h;
}

int qpl_state_encode(const struct qpl_params *p, uint64_t manifest, void *buf, size_t len)
{
	uint8_t *b = buf;
	size_t need = QPL_STATE_HEAD + (size_t)QPL_STATE_LEVEL * p->nlevels;

	if (p->nlevels > QPL_LEVELS || (unsigned)p->tail > 2)
		return -EOVERFLOW;
	if (len < need)
		return -ENOSPC;
	memset(b, 0, need);
	put_le(b, QPL_STATE_MAGIC, 4);
	put_le(b + 4, QPL_STATE_VERSION, 2);
	put_le(b + 6,
	       (uint64_t)(!!p->shuffle) | (uint64_t)p->tail << 1 | (uint64_t)(!!p->done) << 3 |
		   (uint64_t)p->nlevels << 4,
	       2);
	put_le(b + 8, manifest, 8);
	put_le(b + 16, p->seed, 8);
	put_le(b + 24, p->epoch, 8);
	put_le(b + 32, p->unit, 4);
	for (uint32_t i = 0; i < p->nlevels; i++) {
		const struct qpl_level *l = &p->level[i];
		uint8_t *q = b + QPL_STATE_HEAD + QPL_STATE_LEVEL * i;

		if (l->n >= UINT64_C(1) << 48 || l->k > QPL_WORLD_MAX || (l->k && l->e >= l->k) ||
		    (!l->k && (l->u || l->e || l->d)) || (l->k && !l->d))
			return -EOVERFLOW;
		put_le(q, l->n, 6);
		put_le(q + 6, l->u, 4);
		put_le(q + 10, l->d, 4);
		put_le(q + 14, l->k ? l->k - 1 : 0, 2);
		put_le(q + 16, l->e, 2);
	}
	put_le(b + 36, state_check(b, need), 4);
	return (int)need;
}

void qpl_state_seal(void *buf, size_t len)
{
	if (len >= QPL_STATE_HEAD)
		put_le((uint8_t *)buf + 36, state_check(buf, len), 4);
}

int qpl_state_decode(const void *buf, size_t len, uint64_t manifest, struct qpl_params *ret,
		     char *err, size_t err_len)
{
	const uint8_t *b = buf;
	struct qpl_params p = {0};
	uint64_t version, flags;

	if (!b || len < 8 || get_le(b, 4) != QPL_STATE_MAGIC) {
		qerr_set(err, err_len, "the resume state is not a quai stream state");
		return -EINVAL;
	}
	version = get_le(b + 4, 4) == 1 ? 1 : get_le(b + 4, 2);
	if (version == 1) {
		qerr_set(err, err_len,
			 "the resume state is version 1 (a position in the partitioned order "
			 "of earlier quai builds), which this build cannot continue: its records "
			 "come in another order. Finish that epoch with the build that took the "
			 "state, or start the epoch over");
		return -EPROTO;
	}
	if (version != QPL_STATE_VERSION) {
		qerr_set(err, err_len,
			 "resume state version %llu is not supported (this build reads version %u)",
			 (unsigned long long)version, QPL_STATE_VERSION);
		return -EPROTO;
	}
	flags = get_le(b + 6, 2);
	p.nlevels = (uint32_t)(flags >> 4 & 3);
	if (len != QPL_STATE_HEAD + (size_t)QPL_STATE_LEVEL * p.nlevels) {
		qerr_set(err, err_len,
			 "the resume state is damaged: %zu bytes, where its header says %u", len,
			 QPL_STATE_HEAD + QPL_STATE_LEVEL * p.nlevels);
		return -EINVAL;
	}
	if (get_le(b + 36, 4) != state_check(b, len)) {
		qerr_set(err, err_len, "the resume state is damaged: its check does not match");
		return -EINVAL;
	}
	if (get_le(b + 8, 8) != manifest) {
		qerr_set(err, err_len,
			 "the resume state belongs to another dataset (manifest %016llx, this one "
			 "is %016llx)",
			 (unsigned long long)get_le(b + 8, 8), (unsigned long long)manifest);
		return -EINVAL;
	}
	p.shuffle = (int)(flags & 1);
	p.tail = (int)(flags >> 1 & 3);
	p.done = (int)(flags >> 3 & 1);
	p.seed = get_le(b + 16, 8);
	p.epoch = get_le(b + 24, 8);
	p.unit = (uint32_t)get_le(b + 32, 4);
	if ((flags >> 6) || p.tail > QPL_TAIL_PAD || !p.unit || (p.done && p.nlevels)) {
		qerr_set(err, err_len, "the resume state is damaged (flags 0x%llx, unit %u)",
			 (unsigned long long)flags, p.unit);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < p.nlevels; i++) {
		const uint8_t *q = b + QPL_STATE_HEAD + QPL_STATE_LEVEL * i;
		struct qpl_level *l = &p.level[i];

		l->n = get_le(q, 6);
		l->u = (uint32_t)get_le(q + 6, 4);
		l->d = (uint32_t)get_le(q + 10, 4);
		l->k = l->d ? (uint32_t)get_le(q + 14, 2) + 1 : 0;
		l->e = (uint32_t)get_le(q + 16, 2);
		if ((!l->d && (get_le(q + 14, 2) || l->u || l->e)) || (l->k && l->e >= l->k)) {
			qerr_set(err, err_len, "the resume state is damaged (level %u)", i + 1);
			return -EINVAL;
		}
	}
	*ret = p;
	return 0;
}
