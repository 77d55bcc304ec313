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
 * The tail: which partitions are still active in round i
 * ------------------------------------------------------------------------
 *
 * Tail round i (i >= L) visits, in index order, the partitions whose length
 * is > i. The number of tail rounds can be as large as a partition, so
 * nothing here is per round: a persistent segment tree over the partition
 * indices holds, as version K, the K longest partitions; the partitions
 * active in round i are exactly version #{len > i}. That answers "how many
 * active partitions come before index x" and "which is the k-th active one"
 * in O(log n), with O(n log n) memory.
 */

struct qpl_node {
	uint32_t left, right, count;
};

struct qpl_active {
	uint32_t n;
	uint64_t base;	       /* L: round of the first tail round */
	uint64_t *len;	       /* the n lengths, ascending */
	uint64_t *ext;	       /* ext[k] = sum over len[0..k) of (len - base) */
	uint32_t *root;	       /* root[K]: version holding the K longest */
	struct qpl_node *node; /* node 0 is the empty tree */
};

struct len_idx {
	uint64_t len;
	uint32_t idx;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Longest first; equal lengths by index, so the order is total. */
static int cmp_len_desc(const void *a, const void *b)
{
	const struct len_idx *x = a, *y = b;

	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static void active_free(struct qpl_active *a)
{
	free(a->len);
	free(a->ext);
	free(a->root);
	free(a->node);
	memset(a, 0, sizeof(*a));
}

static int active_build(struct qpl_active *a, const uint64_t *lens, uint32_t n, uint64_t base)
{
	struct len_idx *order = NULL;
	uint64_t levels = 1, total;
	uint32_t used = 1;

	memset(a, 0, sizeof(*a));
	a->n = n;
	a->base = base;
	for (uint64_t s = n; s > 1; s = (s + 1) / 2)
		levels++;
	total = 1 + (uint64_t)n * levels;
	if (total > UINT32_MAX)
		return -ENOMEM;
	a->len = malloc(sizeof(*a->len) * n);
	a->ext = malloc(sizeof(*a->ext) * ((size_t)n + 1));
	a->root = malloc(sizeof(*a->root) * ((size_t)n + 1));
	a->node = malloc(sizeof(*a->node) * total);
	order = malloc(sizeof(*order) * n);
	if (!a->len || !a->ext || !a->root || !a->node || !order) {
		free(order);
		active_free(a);
		return -ENOMEM;
	}

	memcpy(a->len, lens, sizeof(*lens) * n);
	qsort(a->len, n, sizeof(*a->len), cmp_u64);
	a->ext[0] = 0;
	for (uint32_t k = 0; k < n; k++)
		a->ext[k + 1] = a->ext[k] + (a->len[k] - base);

	for (uint32_t k = 0; k < n; k++)
		order[k] = (struct len_idx){lens[k], k};
	qsort(order, n, sizeof(*order), cmp_len_desc);
	a->node[0] = (struct qpl_node){0, 0, 0};
	a->root[0] = 0;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t pos = order[k].idx, lo = 0, hi = n;
		uint32_t cur = used++;

		a->node[cur] = a->node[a->root[k]];
		a->node[cur].count++;
		a->root[k + 1] = cur;
		while (hi - lo > 1) {
			uint32_t mid = lo + (hi - lo) / 2, child = used++;

			if (pos < mid) {
				a->node[child] = a->node[a->node[cur].left];
				a->node[cur].left = child;
				hi = mid;
			} else {
				a->node[child] = a->node[a->node[cur].right];
				a->node[cur].right = child;
				lo = mid;
			}
			a->node[child].count++;
			cur = child;
		}
	}
	free(order);
	return 0;
}

/* #{len <= i} */
static uint32_t active_le(const struct qpl_active *a, uint64_t i)
{
	uint32_t lo = 0, hi = a->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (a->len[mid] <= i)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Tail records before round i (i >= base): sum of min(len, i) - base. */
static uint64_t active_cum(const struct qpl_active *a, uint64_t i)
{
	uint32_t k = active_le(a, i);

	return a->ext[k] + (i - a->base) * (a->n - k);
}

/* Of the partitions active in round i (version `version`), how many have an
 * index < x. */
static uint32_t active_count_below(const struct qpl_active *a, uint32_t version, uint64_t x)
{
	uint32_t node = a->root[version], acc = 0;
	uint64_t lo = 0, hi = a->n;

	while (node && x > lo) {
		uint64_t mid;

		if (x >= hi) {
			acc += a->node[node].count;
			break;
		}
		mid = lo + (hi - lo) / 2;
		if (x <= mid) {
			node = a->node[node].left;
			hi = mid;
		} else {
			acc += a->node[a->node[node].left].count;
			node = a->node[node].right;
			lo = mid;
		}
	}
	return acc;
}

/* The index of the k-th (from 0) partition of version `version`. */
static uint32_t active_select(const struct qpl_active *a, uint32_t version, uint64_t k)
{
	uint32_t node = a->root[version], lo = 0, hi = a->n;

	assert(k < a->node[node].count);
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2, c = a->node[a->node[node].left].count;

		if (k < c) {
			node = a->node[node].left;
			hi = mid;
		} else {
			k -= c;
			node = a->node[node].right;
			lo = mid;
		}
	}
	return lo;
}

/* The tail record t (t < ext[n]) as (round, rank among that round's active
 * partitions). B_k = cum(len[k]) = ext[k] + (len[k] - base) * (n - k) is
 * nondecreasing; the round lies in [len[k-1], len[k]) for the first k with
 * B_k > t, where n - k partitions are active. */
static void active_locate(const struct qpl_active *a, uint64_t t, uint64_t *ret_round,
			  uint64_t *ret_k)
{
	uint32_t lo = 0, hi = a->n - 1, k;
	uint64_t start, before, width;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (a->ext[mid] + (a->len[mid] - a->base) * (a->n - mid) > t)
			hi = mid;
		else
			lo = mid + 1;
	}
	k = lo;
	start = k ? a->len[k - 1] : a->base;
	before = k ? a->ext[k - 1] + (a->len[k - 1] - a->base) * (a->n - k + 1) : 0;
	width = a->n - k;
	*ret_round = start + (t - before) / width;
	*ret_k = (t - before) % width;
}

/* ------------------------------------------------------------------------
 * The plan
 * ------------------------------------------------------------------------ */

struct qpl_plan {
	struct qpl_params par;
	uint64_t nframes;
	uint64_t *first_record; /* by frame id */
	uint64_t *perm;		/* permuted position -> frame id; NULL: identity */
	uint64_t *cum;		/* cum[k]: records at permuted positions < k; F + 1 */
	uint64_t *bound;	/* partition p: permuted positions [bound[p], bound[p+1]) */
	uint64_t window_key;	/* (seed, epoch) part of every window's key */
	uint64_t min_len;	/* L */
	uint32_t per_rank;	/* Q = P / W */
	uint64_t local_count, global_count;
	bool tail;		/* KEEP with some partition longer than L */
	struct qpl_active glob; /* over all P partitions */
	struct qpl_active own;	/* over this rank's Q partitions, j = (p - rank) / W */
	struct qpl_use *use;
	uint64_t nuse;
};

/* "world W does not divide the P canonical partitions; world sizes that
 * work: 1 ... P": a user who picked a bad world size should not have to
 * factor P to find a good one. */
static void fail_world(char *err, size_t err_len, uint32_t world, uint32_t parts)
{
	size_t off;
	uint32_t d;

	if (!err || !err_len)
		return;
	off = (size_t)snprintf(err, err_len,
			       "world %u does not divide the %u canonical partitions; "
			       "world sizes that work:",
			       world, parts);
	/* Small divisors ascending, then their cofactors ascending. */
	for (d = 1; (uint64_t)d * d <= parts && off < err_len; d++)
		if (parts % d == 0)
			off += (size_t)snprintf(err + off, err_len - off, " %u", d);
	for (d--; d >= 1 && off < err_len; d--)
		if (parts % d == 0 && parts / d != d)
			off += (size_t)snprintf(err + off, err_len - off, " %u", parts / d);
}

static uint64_t part_len(const qpl_plan *pl, uint32_t p)
{
	return pl->cum[pl->bound[p + 1]] - pl->cum[pl->bound[p]];
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

/* The window holding permuted position k of partition p, as positions
 * [*ws, *we), and its key. */
static uint64_t window_of(const qpl_plan *pl, uint32_t p, uint64_t k, uint64_t *ws, uint64_t *we)
{
	uint64_t bp = pl->bound[p], be = pl->bound[p + 1], w = (k - bp) / pl->par.window;

	*ws = bp + w * pl->par.window;
	*we = be - *ws > pl->par.window ? *ws + pl->par.window : be;
	return mix64(mix64(pl->window_key ^ p) ^ w);
}

/* Record i (0-based) of partition p's sequence, as (frame id, index). */
static void resolve(const qpl_plan *pl, uint32_t p, uint64_t i, uint64_t *ret_frame,
		    uint32_t *ret_index)
{
	uint64_t o = pl->cum[pl->bound[p]] + i;
	uint64_t k = find_frame(pl->cum, pl->bound[p], pl->bound[p + 1], o);

	if (pl->par.shuffle) {
		uint64_t ws, we, key = window_of(pl, p, k, &ws, &we);
		uint64_t n = pl->cum[we] - pl->cum[ws];

		if (n > 1) {
			struct qpl_bij b;

			bij_init(&b, key, n);
			o = pl->cum[ws] + bij_apply(&b, o - pl->cum[ws]);
			k = find_frame(pl->cum, ws, we, o);
		}
	}
	*ret_frame = pl->perm ? pl->perm[k] : k;
	*ret_index = (uint32_t)(o - pl->cum[k]);
}

/* The local index of record i of this rank's j-th partition. */
static uint64_t local_of(const qpl_plan *pl, uint32_t j, uint64_t i)
{
	uint64_t q = pl->per_rank, l = pl->min_len;

	if (i < l)
		return i * q + j;
	return q * l + active_cum(&pl->own, i) +
	       active_count_below(&pl->own, pl->own.n - active_le(&pl->own, i), j);
}

static int cmp_use(const void *a, const void *b)
{
	const struct qpl_use *x = a, *y = b;

	/* first_use is unique per rank: it is the local index of a record. */
	return x->first_use < y->first_use ? -1 : x->first_use > y->first_use;
}

/* The frames of this rank and their use ranges. A frame's records are
 * spread over its window, so its first and last use are found by walking
 * the window's positions from each end until every frame of the window has
 * been met: a few positions per frame for windows of similar frames, the
 * whole window at worst. The walk is over delivered positions only, which
 * is what makes a frame whose records the DROP tail cuts either end early
 * or disappear. */
static int build_use(qpl_plan *pl)
{
	uint32_t parts = pl->par.partitions, world = pl->par.world;
	uint64_t cap = 0, wcap, *wfirst = NULL, *wlast = NULL;

	for (uint32_t p = pl->par.rank; p < parts; p += world)
		cap += pl->bound[p + 1] - pl->bound[p];
	wcap = pl->par.window < pl->nframes ? pl->par.window : pl->nframes;
	pl->use = malloc(sizeof(*pl->use) * cap);
	wfirst = malloc(sizeof(*wfirst) * wcap);
	wlast = malloc(sizeof(*wlast) * wcap);
	if (!pl->use || !wfirst || !wlast) {
		free(wfirst);
		free(wlast);
		return -ENOMEM;
	}

	for (uint32_t j = 0; j < pl->per_rank; j++) {
		uint32_t p = pl->par.rank + j * world;
		uint64_t bp = pl->bound[p], be = pl->bound[p + 1], base = pl->cum[bp];
		uint64_t deliver = pl->par.tail == QPL_TAIL_KEEP ? part_len(pl, p) : pl->min_len;
		uint64_t ws = bp, we;

		while (ws < be && pl->cum[ws] - base < deliver) {
			uint64_t key = window_of(pl, p, ws, &ws, &we);
			uint64_t start = pl->cum[ws] - base, n = pl->cum[we] - pl->cum[ws];
			uint64_t limit = deliver - start < n ? deliver - start : n, m = we - ws;

			if (!pl->par.shuffle || m == 1) {
				/* Each frame's records are contiguous. */
				for (uint64_t k = ws; k < we; k++) {
					uint64_t a = pl->cum[k] - base, b = pl->cum[k + 1] - base;

					if (a >= deliver)
						break;
					b = b < deliver ? b : deliver;
					pl->use[pl->nuse++] = (struct qpl_use){
					    pl->perm ? pl->perm[k] : k, local_of(pl, j, a),
					    local_of(pl, j, b - 1)};
				}
			} else {
				struct qpl_bij bij;
				uint64_t seen = 0, closed = 0;

				bij_init(&bij, key, n);
				for (uint64_t f = 0; f < m; f++)
					wfirst[f] = wlast[f] = UINT64_MAX;
				for (uint64_t x = 0; x < limit && seen < m; x++) {
					uint64_t o = pl->cum[ws] + bij_apply(&bij, x);
					uint64_t f = find_frame(pl->cum, ws, we, o) - ws;

					if (wfirst[f] == UINT64_MAX) {
						wfirst[f] = x;
						seen++;
					}
				}
				for (uint64_t x = limit; x-- > 0 && closed < seen;) {
					uint64_t o = pl->cum[ws] + bij_apply(&bij, x);
					uint64_t f = find_frame(pl->cum, ws, we, o) - ws;

					if (wlast[f] == UINT64_MAX) {
						wlast[f] = x;
						closed++;
					}
				}
				for (uint64_t f = 0; f < m; f++) {
					if (wfirst[f] == UINT64_MAX)
						continue;
					pl->use[pl->nuse++] = (struct qpl_use){
					    pl->perm[ws + f], local_of(pl, j, start + wfirst[f]),
					    local_of(pl, j, start + wlast[f])};
				}
			}
			ws = we;
		}
	}
	free(wfirst);
	free(wlast);
	qsort(pl->use, pl->nuse, sizeof(*pl->use), cmp_use);
	return 0;
}

static int check_params(const struct qpl_frame *frames, uint64_t nframes,
			const struct qpl_params *par, char *err, size_t err_len)
{
	if (!frames && nframes) {
		qerr_set(err, err_len, "no frame table");
		return -EINVAL;
	}
	if (par->world < 1) {
		qerr_set(err, err_len, "world must be at least 1");
		return -EINVAL;
	}
	if (par->rank >= par->world) {
		qerr_set(err, err_len, "rank %u is out of range for world %u (ranks are 0 to %u)",
			 par->rank, par->world, par->world - 1);
		return -EINVAL;
	}
	if (par->partitions < 1) {
		qerr_set(err, err_len, "partitions must be at least 1");
		return -EINVAL;
	}
	if (par->partitions % par->world) {
		fail_world(err, err_len, par->world, par->partitions);
		return -EINVAL;
	}
	if (par->partitions > nframes) {
		qerr_set(
		    err, err_len,
		    "%u partitions but only %llu frames: each partition needs at least one frame",
		    par->partitions, (unsigned long long)nframes);
		return -EINVAL;
	}
	if (par->window < 1) {
		qerr_set(err, err_len, "window must be at least 1 frame");
		return -EINVAL;
	}
	if (par->tail != QPL_TAIL_DROP && par->tail != QPL_TAIL_KEEP) {
		qerr_set(err, err_len, "tail must be QPL_TAIL_DROP or QPL_TAIL_KEEP, not %d",
			 par->tail);
		return -EINVAL;
	}
	return 0;
}

int qpl_new(const struct qpl_frame *frames, uint64_t nframes, const struct qpl_params *par,
	    qpl_plan **ret_plan, char *err, size_t err_len)
{
	uint32_t parts, world, rank;
	uint64_t total, *lens = NULL;
	qpl_plan *pl;
	int r;

	if (!par || !ret_plan) {
		qerr_set(err, err_len, "no parameters or no place for the plan");
		return -EINVAL;
	}
	r = check_params(frames, nframes, par, err, err_len);
	if (r < 0)
		return r;
	parts = par->partitions;
	world = par->world;
	rank = par->rank;
	if (nframes >= SIZE_MAX / (4 * sizeof(uint64_t)))
		return -ENOMEM;

	pl = calloc(1, sizeof(*pl));
	if (!pl)
		return -ENOMEM;
	pl->par = *par;
	pl->par.shuffle = !!par->shuffle;
	pl->nframes = nframes;
	pl->per_rank = parts / world;
	pl->first_record = malloc(sizeof(*pl->first_record) * nframes);
	pl->cum = malloc(sizeof(*pl->cum) * (nframes + 1));
	pl->bound = malloc(sizeof(*pl->bound) * ((size_t)parts + 1));
	if (!pl->first_record || !pl->cum || !pl->bound)
		goto nomem;

	for (uint64_t f = 0; f < nframes; f++) {
		if (frames[f].records == 0) {
			qerr_set(err, err_len, "frame %llu has no records", (unsigned long long)f);
			r = -EINVAL;
			goto out;
		}
		pl->first_record[f] = frames[f].first_record;
	}

	/* 1. Frame order: Fisher-Yates from the last position down. */
	if (pl->par.shuffle) {
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

		if (pl->cum[k] > UINT64_MAX - n) {
			qerr_set(err, err_len, "the dataset has more than 2^64 records");
			r = -EINVAL;
			goto out;
		}
		pl->cum[k + 1] = pl->cum[k] + n;
	}
	total = pl->cum[nframes];

	/* 2. Partitions. Boundary p (0 < p < P) is the first permuted position
	 * k with cum[k] >= floor(p * N / P), then moved up to at least
	 * bound[p-1] + 1 and down to at most F - (P - p), so that every
	 * partition keeps at least one frame. floor(p*N/P) is computed as
	 * p*(N/P) + p*(N%P)/P, which cannot overflow. */
	{
		uint64_t q = total / parts, rem = total % parts, k = 0;

		pl->bound[0] = 0;
		for (uint32_t p = 1; p < parts; p++) {
			uint64_t target = (uint64_t)p * q + (uint64_t)p * rem / parts, b;

			while (k < nframes && pl->cum[k] < target)
				k++;
			b = k > pl->bound[p - 1] ? k : pl->bound[p - 1] + 1;
			b = b < nframes - (parts - p) ? b : nframes - (parts - p);
			pl->bound[p] = b;
		}
		pl->bound[parts] = nframes;
	}

	/* 4. Phases. */
	pl->min_len = UINT64_MAX;
	for (uint32_t p = 0; p < parts; p++)
		pl->min_len = part_len(pl, p) < pl->min_len ? part_len(pl, p) : pl->min_len;
	pl->global_count = (uint64_t)parts * pl->min_len;
	pl->local_count = (uint64_t)pl->per_rank * pl->min_len;
	pl->tail = par->tail == QPL_TAIL_KEEP && total > pl->global_count;
	if (pl->tail) {
		lens = malloc(sizeof(*lens) * parts);
		if (!lens)
			goto nomem;
		for (uint32_t p = 0; p < parts; p++)
			lens[p] = part_len(pl, p);
		r = active_build(&pl->glob, lens, parts, pl->min_len);
		if (r < 0)
			goto out;
		/* 5. This rank's partitions, packed to the front of the same
		 * array: entry j is read from r + W*j >= j before it is
		 * overwritten, so the copy is safe in place. */
		for (uint32_t j = 0; j < pl->per_rank; j++)
			lens[j] = lens[rank + (uint64_t)j * world];
		r = active_build(&pl->own, lens, pl->per_rank, pl->min_len);
		if (r < 0)
			goto out;
		pl->global_count = total;
		pl->local_count += pl->own.ext[pl->own.n];
	}

	r = build_use(pl);
	if (r < 0)
		goto out;

	free(lens);
	*ret_plan = pl;
	return 0;

nomem:
	r = -ENOMEM;
out:
	free(lens);
	qpl_free(pl);
	return r;
}

void qpl_free(qpl_plan *pl)
{
	if (!pl)
		return;
	active_free(&pl->glob);
	active_free(&pl->own);
	free(pl->first_record);
	free(pl->perm);
	free(pl->cum);
	free(pl->bound);
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

void qpl_item(const qpl_plan *pl, uint64_t l, struct qpl_item *ret)
{
	uint32_t world = pl->par.world, rank = pl->par.rank, j, p;
	uint64_t q = pl->per_rank, i, g;

	assert(l < pl->local_count);
	if (l < q * pl->min_len) {
		i = l / q;
		j = (uint32_t)(l % q);
		g = l * world + rank;
		p = rank + j * world;
	} else {
		uint64_t k;

		active_locate(&pl->own, l - q * pl->min_len, &i, &k);
		j = active_select(&pl->own, pl->own.n - active_le(&pl->own, i), k);
		p = rank + j * world;
		g = (uint64_t)pl->par.partitions * pl->min_len + active_cum(&pl->glob, i) +
		    active_count_below(&pl->glob, pl->glob.n - active_le(&pl->glob, i), p);
	}
	resolve(pl, p, i, &ret->frame, &ret->index);
	ret->record = pl->first_record[ret->frame] + ret->index;
	ret->position = g;
}

uint64_t qpl_local_start(const qpl_plan *pl, uint64_t n)
{
	uint32_t world = pl->par.world, rank = pl->par.rank;
	uint64_t main = (uint64_t)pl->par.partitions * pl->min_len, i, k, q, below;

	if (n <= main)
		/* Main-phase positions are W*l + rank: the first >= n. */
		return n > rank ? (n - rank + world - 1) / world : 0;
	if (n >= pl->global_count)
		return pl->local_count;
	/* Position n is the k-th record of tail round i, in partition q. This
	 * rank resumes at its first record of round i in a partition >= q. */
	active_locate(&pl->glob, n - main, &i, &k);
	q = active_select(&pl->glob, pl->glob.n - active_le(&pl->glob, i), k);
	below = q > rank ? (q - rank + world - 1) / world : 0;
	return (uint64_t)pl->per_rank * pl->min_len + active_cum(&pl->own, i) +
	       active_count_below(&pl->own, pl->own.n - active_le(&pl->own, i), below);
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
