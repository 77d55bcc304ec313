/* SPDX-License-Identifier: Apache-2.0 */
/* The pinned pool (stager/engine/pool.h): its allocator, what the kernel says
 * about its mapping (/proc/self/smaps), wiping, mlock failure and GPU
 * registration on a machine without a GPU runtime. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it; standalone builds may not */
#endif
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool.h"
#include "testutil.h"
#include "quai_config.h"

#define MiB (1024u * 1024u)
#define PG QPOOL_ALIGN

static struct qpool *make(uint64_t bytes, int huge, int wipe)
{
	struct qpool_opts o = {
	    .bytes = bytes,
	    .huge = huge,
	    /* Unprivileged runs have a small RLIMIT_MEMLOCK (often 8 MiB);
	     * the allocator does not care whether the pool is locked. */
	    .lock = QPOOL_LOCK_TRY,
	    .gpu = QPOOL_GPU_NONE,
	    .wipe = wipe,
	};
	struct qpool *p = NULL;
	char err[512] = "";
	int r = qpool_new(&o, &p, err, sizeof(err));

	cr_assert_eq(r, 0, "qpool_new(%" PRIu64 "): %d %s", bytes, r, err);
	cr_assert_not_null(p);
	return p;
}

static struct qpool_info info_of(struct qpool *p)
{
	struct qpool_info i;

	qpool_info(p, &i);
	return i;
}

static void *alloc_ok(struct qpool *p, size_t size)
{
	void *b = NULL;
	int r = qpool_alloc(p, size, &b);

	cr_assert_eq(r, 0, "qpool_alloc(%zu): %d", size, r);
	cr_assert_not_null(b);
	return b;
}

/* ------------------------------------------------------------------------
 * Allocator
 * ------------------------------------------------------------------------ */

Test(pool, alignment_sizes_and_accounting)
{
	static const size_t sizes[] = {1, PG - 1, PG, PG + 1, 10000, 3 * PG, 1 * MiB + 17};
	struct qpool *p = make(8 * MiB, QPOOL_HUGE_OFF, 0);
	struct qpool_info in = info_of(p);
	void *b[sizeof(sizes) / sizeof(sizes[0])];
	uint64_t want = 0;

	cr_assert_eq(in.bytes, 8 * MiB);
	cr_assert_eq((uintptr_t)in.base % PG, 0);
	cr_assert_eq(in.used, 0);
	cr_assert_eq(in.peak, 0);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		b[i] = alloc_ok(p, sizes[i]);
		cr_expect_eq((uintptr_t)b[i] % PG, 0, "block %zu at %p", i, b[i]);
		cr_expect_geq((char *)b[i], (char *)in.base);
		cr_expect_leq((char *)b[i] + sizes[i], (char *)in.base + in.bytes);
		/* The whole block is writable, up to the rounded size. */
		memset(b[i], 0x5a, (sizes[i] + PG - 1) / PG * PG);
		want += (sizes[i] + PG - 1) / PG * PG;
		cr_expect_eq(info_of(p).used, want, "after %zu", i);
	}
	/* First fit on an empty pool: blocks are packed from the base. */
	cr_expect_eq(b[0], in.base);
	cr_expect_eq((char *)b[1], (char *)in.base + PG);
	cr_expect_eq((char *)b[4], (char *)in.base + 5 * PG, "after 1+1+1+2 pages");
	cr_expect_eq(info_of(p).peak, want);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		qpool_release(p, b[i]);
	in = info_of(p);
	cr_expect_eq(in.used, 0);
	cr_expect_eq(in.peak, want, "peak stays at its highest");
	qpool_free(p);
}

Test(pool, rounding_of_the_pool_size)
{
	struct qpool *p = make(PG + 1, QPOOL_HUGE_OFF, 0);

	cr_expect_eq(info_of(p).bytes, 2 * PG);
	qpool_free(p);
	p = make(3 * MiB, QPOOL_HUGE_AUTO, 0);
	/* AUTO: to the huge page size, whether hugetlb or THP backs it. */
	cr_expect_eq(info_of(p).bytes % (2 * MiB), 0, "%" PRIu64, info_of(p).bytes);
	cr_expect_geq(info_of(p).bytes, 3 * MiB);
	cr_expect_eq((uintptr_t)info_of(p).base % (2 * MiB), 0, "THP needs an aligned start");
	qpool_free(p);
}

Test(pool, e2big_einval_and_exact_fit)
{
	struct qpool *p = make(4 * MiB, QPOOL_HUGE_OFF, 0);
	void *b = (void *)0x1, *c;

	cr_expect_eq(qpool_alloc(p, 4 * MiB + 1, &b), -E2BIG);
	cr_expect_eq(qpool_alloc(p, SIZE_MAX, &b), -E2BIG);
	cr_expect_eq(qpool_alloc(p, 0, &b), -EINVAL);
	cr_expect_eq(b, (void *)0x1, "ret_block untouched on failure");
	c = alloc_ok(p, 4 * MiB);
	cr_expect_eq(c, info_of(p).base);
	qpool_release(p, c);
	qpool_free(p);
}

Test(pool, exhaustion_then_release)
{
	struct qpool *p = make(1 * MiB, QPOOL_HUGE_OFF, 0);
	size_t n = MiB / PG, got = 0;
	void *b[MiB / PG], *x = (void *)0x1;

	for (got = 0; got < n; got++)
		b[got] = alloc_ok(p, PG);
	cr_expect_eq(qpool_alloc(p, 1, &x), -ENOMEM);
	cr_expect_eq(x, (void *)0x1, "ret_block untouched on failure");
	cr_expect_eq(info_of(p).used, MiB);

	/* One page free: one page fits, two do not. */
	qpool_release(p, b[100]);
	cr_expect_eq(qpool_alloc(p, 2 * PG, &x), -ENOMEM);
	x = alloc_ok(p, PG);
	cr_expect_eq(x, b[100], "the only free page");
	b[100] = x;

	/* Free two non-adjacent pages: still no room for two pages. */
	qpool_release(p, b[10]);
	qpool_release(p, b[12]);
	cr_expect_eq(qpool_alloc(p, 2 * PG, &x), -ENOMEM);
	qpool_release(p, b[11]);
	x = alloc_ok(p, 3 * PG);
	cr_expect_eq(x, b[10], "pages 10..12 coalesced");
	qpool_release(p, x);
	for (size_t i = 0; i < n; i++)
		if (i < 10 || i > 12)
			qpool_release(p, b[i]);
	cr_expect_eq(info_of(p).used, 0);
	x = alloc_ok(p, MiB);
	qpool_release(p, x);
	qpool_free(p);
}

/* alloc A B C filling the pool, release them in `order`, then the whole
 * pool must fit in one block again. */
static void coalesce(const int order[3])
{
	struct qpool *p = make(3 * MiB, QPOOL_HUGE_OFF, 0);
	void *abc[3], *x;

	for (int i = 0; i < 3; i++)
		abc[i] = alloc_ok(p, MiB);
	cr_assert_eq(qpool_alloc(p, 1, &x), -ENOMEM);
	for (int i = 0; i < 3; i++) {
		qpool_release(p, abc[order[i]]);
		if (i < 2)
			cr_expect_eq(qpool_alloc(p, 3 * MiB, &x), -ENOMEM);
	}
	x = alloc_ok(p, 3 * MiB);
	cr_expect_eq(x, abc[0]);
	qpool_release(p, x);
	qpool_free(p);
}

Test(pool, coalescing_in_every_order)
{
	static const int orders[6][3] = {{1, 0, 2}, {0, 1, 2}, {0, 2, 1},
					 {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};

	for (int i = 0; i < 6; i++)
		coalesce(orders[i]);
}

Test(pool, first_fit_skips_small_holes)
{
	struct qpool *p = make(1 * MiB, QPOOL_HUGE_OFF, 0);
	char *base = info_of(p).base;
	void *a = alloc_ok(p, PG), *b = alloc_ok(p, 2 * PG), *c = alloc_ok(p, PG);
	void *d;

	qpool_release(p, a); /* a 1-page hole at the base */
	d = alloc_ok(p, 2 * PG);
	cr_expect_eq((char *)d, base + 4 * PG, "past the hole, after c");
	d = (qpool_release(p, d), alloc_ok(p, PG));
	cr_expect_eq((char *)d, base, "the hole, for a block that fits");
	qpool_release(p, b);
	qpool_release(p, c);
	qpool_release(p, d);
	qpool_free(p);
}

/* A small deterministic generator: failures must reproduce. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void fill(void *b, size_t bytes, uint64_t tag)
{
	uint64_t *w = b;

	for (size_t i = 0; i < bytes / 8; i += 512)
		w[i] = tag ^ i;
	w[bytes / 8 - 1] = ~tag;
}

static bool check(const void *b, size_t bytes, uint64_t tag)
{
	const uint64_t *w = b;

	for (size_t i = 0; i < bytes / 8; i += 512)
		if (w[i] != (tag ^ i))
			return false;
	return w[bytes / 8 - 1] == ~tag;
}

/* Random allocations and releases against a model of the pages: every
 * allocation lands where first fit over the model says, -ENOMEM exactly
 * when the model has no room, and no block's pattern is overwritten. */
Test(pool, random_ops_match_a_first_fit_model)
{
	/* Not a multiple of 64: the last bitmap word is partial. */
	enum { PAGES = 1000, LIVE = 100, OPS = 100000 };
	struct qpool *p = make((uint64_t)PAGES * PG, QPOOL_HUGE_OFF, 0);
	char *base = info_of(p).base;
	static unsigned char model[PAGES];
	struct {
		void *b;
		size_t pages;
		uint64_t tag;
	} live[LIVE];
	size_t nlive = 0, model_used = 0, peak = 0;
	unsigned long allocs = 0, nomem = 0, long_runs = 0;
	uint64_t seed = 0x9e3779b97f4a7c15u;

	memset(model, 0, sizeof(model));
	for (int op = 0; op < OPS; op++) {
		bool do_alloc = nlive == 0 || (nlive < LIVE && rnd(&seed) % 100 < 55);

		if (do_alloc) {
			/* Mostly small, sometimes large blocks, some runs
			 * longer than a bitmap word (64 pages). */
			uint64_t kind = rnd(&seed) % 32;
			size_t pages = kind == 0  ? 1 + rnd(&seed) % 200
				       : kind < 5 ? 1 + rnd(&seed) % 64
						  : 1 + rnd(&seed) % 4;
			size_t size = (pages - 1) * PG + 1 + rnd(&seed) % PG;
			size_t expect = PAGES, run = 0;
			void *b = NULL;
			int r;

			for (size_t i = 0; i < PAGES; i++) {
				run = model[i] ? 0 : run + 1;
				if (run == pages) {
					expect = i + 1 - pages;
					break;
				}
			}
			r = qpool_alloc(p, size, &b);
			if (expect == PAGES) {
				cr_assert_eq(r, -ENOMEM, "op %d: %zu pages: %d", op, pages, r);
				nomem++;
				continue;
			}
			cr_assert_eq(r, 0, "op %d: %zu pages fit at %zu: %d", op, pages, expect, r);
			cr_assert_eq((char *)b, base + expect * PG, "op %d: first fit", op);
			allocs++;
			long_runs += pages > 64;
			memset(model + expect, 1, pages);
			model_used += pages;
			peak = model_used > peak ? model_used : peak;
			live[nlive].b = b;
			live[nlive].pages = pages;
			live[nlive].tag = rnd(&seed);
			fill(b, pages * PG, live[nlive].tag);
			nlive++;
		} else {
			size_t k = rnd(&seed) % nlive;
			size_t pg = (size_t)((char *)live[k].b - base) / PG;

			cr_assert(check(live[k].b, live[k].pages * PG, live[k].tag),
				  "op %d: block at page %zu overwritten", op, pg);
			qpool_release(p, live[k].b);
			memset(model + pg, 0, live[k].pages);
			model_used -= live[k].pages;
			live[k] = live[--nlive];
		}
		cr_assert_eq(info_of(p).used, (uint64_t)model_used * PG, "op %d", op);
	}
	cr_expect_eq(info_of(p).peak, (uint64_t)peak * PG);
	cr_log_info("%lu allocations (%lu over 64 pages), %lu -ENOMEM", allocs, long_runs, nomem);
	/* The seed exercises every path; a change to it must too. */
	cr_expect_gt(long_runs, 100);
	cr_expect_gt(nomem, 100);
	while (nlive) {
		nlive--;
		cr_assert(check(live[nlive].b, live[nlive].pages * PG, live[nlive].tag));
		qpool_release(p, live[nlive].b);
	}
	qpool_release(p, alloc_ok(p, (size_t)PAGES * PG));
	qpool_free(p);
}

struct hammer {
	struct qpool *pool;
	unsigned id;
	unsigned long allocs, nomem, corrupt;
};

static void *hammer_thread(void *arg)
{
	struct hammer *h = arg;
	uint64_t seed = 0x1234567u + h->id * 7919u;
	struct {
		void *b;
		size_t bytes;
		uint64_t tag;
	} held[8];
	size_t nheld = 0;

	for (int i = 0; i < 20000; i++) {
		if (nheld < 8 && (nheld == 0 || rnd(&seed) % 2)) {
			size_t bytes = (1 + rnd(&seed) % 16) * PG;
			void *b;
			int r = qpool_alloc(h->pool, bytes - rnd(&seed) % PG, &b);

			if (r == -ENOMEM) {
				h->nomem++;
				continue;
			}
			if (r)
				abort();
			held[nheld].b = b;
			held[nheld].bytes = bytes;
			held[nheld].tag = ((uint64_t)h->id << 48) ^ rnd(&seed);
			fill(b, bytes, held[nheld].tag);
			nheld++;
			h->allocs++;
		} else {
			size_t k = rnd(&seed) % nheld;

			if (!check(held[k].b, held[k].bytes, held[k].tag))
				h->corrupt++;
			qpool_release(h->pool, held[k].b);
			held[k] = held[--nheld];
		}
	}
	while (nheld--) {
		if (!check(held[nheld].b, held[nheld].bytes, held[nheld].tag))
			h->corrupt++;
		qpool_release(h->pool, held[nheld].b);
	}
	return NULL;
}

static void hammer(int wipe)
{
	enum { THREADS = 8 };
	/* Smaller than what even one thread may hold (8 blocks of up to
	 * 64 KiB), so -ENOMEM comes whatever the scheduling. */
	struct qpool *p = make(256 * 1024, QPOOL_HUGE_OFF, wipe);
	struct hammer h[THREADS];
	pthread_t t[THREADS];
	unsigned long allocs = 0, nomem = 0;

	for (unsigned i = 0; i < THREADS; i++) {
		h[i] = (struct hammer){.pool = p, .id = i};
		cr_assert_eq(pthread_create(&t[i], NULL, hammer_thread, &h[i]), 0);
	}
	for (unsigned i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		cr_expect_eq(h[i].corrupt, 0, "thread %u saw its blocks overwritten", i);
		allocs += h[i].allocs;
		nomem += h[i].nomem;
	}
	cr_log_info("wipe=%d: %lu allocations, %lu -ENOMEM", wipe, allocs, nomem);
	cr_expect_gt(allocs, 10000);
	cr_expect_eq(info_of(p).used, 0);
	cr_expect_gt(nomem, 0, "the pool was too small for all at once");
	cr_expect_leq(info_of(p).peak, 256 * 1024);
	qpool_release(p, alloc_ok(p, 256 * 1024)); /* everything coalesced */
	qpool_free(p);
}

Test(pool, threads_hammering)
{
	hammer(0);
}

Test(pool, threads_hammering_with_wipe)
{
	hammer(1);
}

Test(pool, release_null_and_free_null)
{
	struct qpool *p = make(PG, QPOOL_HUGE_OFF, 0);

	qpool_release(p, NULL);
	qpool_free(p);
	qpool_free(NULL);
}

Test(pool, double_release_aborts, .signal = SIGABRT)
{
	struct qpool *p = make(1 * MiB, QPOOL_HUGE_OFF, 0);
	void *b = alloc_ok(p, PG);

	qpool_release(p, b);
	qpool_release(p, b);
}

Test(pool, double_release_with_wipe_aborts, .signal = SIGABRT)
{
	struct qpool *p = make(1 * MiB, QPOOL_HUGE_OFF, 1);
	void *b = alloc_ok(p, 2 * PG);

	qpool_release(p, b);
	qpool_release(p, b);
}

Test(pool, foreign_pointer_aborts, .signal = SIGABRT)
{
	struct qpool *p = make(1 * MiB, QPOOL_HUGE_OFF, 0);
	static char other[64];

	qpool_release(p, other);
}

Test(pool, pointer_inside_a_block_aborts, .signal = SIGABRT)
{
	struct qpool *p = make(1 * MiB, QPOOL_HUGE_OFF, 0);
	char *b = alloc_ok(p, 4 * PG);

	qpool_release(p, b + PG);
}

Test(pool, unaligned_pointer_aborts, .signal = SIGABRT)
{
	struct qpool *p = make(1 * MiB, QPOOL_HUGE_OFF, 0);
	char *b = alloc_ok(p, 4 * PG);

	qpool_release(p, b + 8);
}

Test(pool, never_allocated_page_aborts, .signal = SIGABRT)
{
	struct qpool *p = make(1 * MiB, QPOOL_HUGE_OFF, 0);

	qpool_release(p, (char *)info_of(p).base + 16 * PG);
}

/* ------------------------------------------------------------------------
 * Options and errors
 * ------------------------------------------------------------------------ */

Test(pool, invalid_options)
{
	struct qpool_opts ok = {.bytes = MiB, .lock = QPOOL_LOCK_TRY};
	struct qpool_opts bad[] = {
	    {.bytes = 0, .lock = QPOOL_LOCK_TRY},
	    {.bytes = MiB, .huge = 7, .lock = QPOOL_LOCK_TRY},
	    {.bytes = MiB, .lock = 9},
	    {.bytes = MiB, .lock = QPOOL_LOCK_TRY, .gpu = 4},
	    {.bytes = MiB, .lock = QPOOL_LOCK_TRY, .gpu = -1},
	};
	struct qpool *p = (struct qpool *)0x1;
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		cr_expect_eq(qpool_new(&bad[i], &p, err, sizeof(err)), -EINVAL, "case %zu", i);
		cr_expect_neq(err[0], '\0', "case %zu: a message", i);
	}
	cr_expect_eq(qpool_new(NULL, &p, err, sizeof(err)), -EINVAL);
	cr_expect_eq(qpool_new(&ok, NULL, NULL, 0), -EINVAL);
	cr_expect_eq(p, (struct qpool *)0x1, "ret_pool untouched on failure");
}

Test(pool, mapping_too_large_is_enomem)
{
	struct qpool_opts o = {.bytes = UINT64_MAX - 5, .lock = QPOOL_LOCK_TRY};
	struct qpool *p = (struct qpool *)0x1;
	char err[256] = "";

	cr_expect_eq(qpool_new(&o, &p, err, sizeof(err)), -ENOMEM);
	cr_expect_neq(err[0], '\0');
	o.bytes = UINT64_C(1) << 56; /* 64 PiB: no address space for it */
	o.huge = QPOOL_HUGE_OFF;
	cr_expect_eq(qpool_new(&o, &p, err, sizeof(err)), -ENOMEM, "%s", err);
	cr_expect(strstr(err, "mmap") != NULL, "%s", err);
	cr_expect_eq(p, (struct qpool *)0x1);
}

/* ------------------------------------------------------------------------
 * The mapping, as the kernel reports it
 * ------------------------------------------------------------------------ */

struct vma {
	bool found;
	char start[24];
	uintptr_t lo, hi;
	char flags[512];
	uint64_t rss_kib, anon_huge_kib, locked_kib;
};

/* The VMA of /proc/self/smaps holding `addr`. */
static struct vma smaps_find(const void *addr)
{
	struct vma v = {0};
	char line[512];
	bool in = false;
	FILE *f = fopen("/proc/self/smaps", "re");

	cr_assert_not_null(f, "/proc/self/smaps: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char dash;

		if (sscanf(line, "%lx%c%lx ", &lo, &dash, &hi) == 3 && dash == '-') {
			if (in)
				break;
			in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
			if (in) {
				v.found = true;
				v.lo = lo;
				v.hi = hi;
			}
			continue;
		}
		if (!in)
			continue;
		if (!strncmp(line, "VmFlags:", 8)) {
			snprintf(v.flags, sizeof(v.flags), "%s", line + 8);
			v.flags[strcspn(v.flags, "\n")] = '\0';
		} else if (!strncmp(line, "Rss:", 4)) {
			v.rss_kib = strtoull(line + 4, NULL, 10);
		} else if (!strncmp(line, "AnonHugePages:", 14)) {
			v.anon_huge_kib = strtoull(line + 14, NULL, 10);
		} else if (!strncmp(line, "Locked:", 7)) {
			v.locked_kib = strtoull(line + 7, NULL, 10);
		}
	}
	fclose(f);
	return v;
}

static bool has_flag(const struct vma *v, const char *flag)
{
	char pad[520];

	snprintf(pad, sizeof(pad), " %s ", v->flags);
	for (char *s = pad; (s = strstr(s, flag)); s++)
		if (s[-1] == ' ' && s[strlen(flag)] == ' ')
			return true;
	return false;
}

static void check_mapping(struct qpool *p, int huge)
{
	struct qpool_info in = info_of(p);
	struct vma v = smaps_find(in.base);

	cr_assert(v.found, "pool at %p not in /proc/self/smaps", in.base);
	cr_log_info("huge=%d: hugetlb=%d thp=%d locked=%d dontdump=%d; VmFlags:%s; "
		    "Rss %" PRIu64 " kB, AnonHugePages %" PRIu64 " kB, Locked %" PRIu64 " kB",
		    huge, in.hugetlb, in.thp, in.locked, in.dontdump, v.flags, v.rss_kib,
		    v.anon_huge_kib, v.locked_kib);
	/* The whole pool in one VMA (maybe merged with a neighbour). */
	cr_expect_leq(v.lo, (uintptr_t)in.base);
	cr_expect_geq(v.hi, (uintptr_t)in.base + in.bytes);

	cr_expect_eq(in.dontdump, 1);
	cr_expect(has_flag(&v, "dd"), "excluded from core dumps: VmFlags:%s", v.flags);
	cr_expect(has_flag(&v, "dc"), "not inherited by fork: VmFlags:%s", v.flags);
	cr_expect_eq(has_flag(&v, "lo"), in.locked != 0, "locked=%d, VmFlags:%s", in.locked,
		     v.flags);
	cr_expect_eq(has_flag(&v, "ht"), in.hugetlb != 0, "hugetlb=%d, VmFlags:%s", in.hugetlb,
		     v.flags);
	cr_expect_eq(has_flag(&v, "hg"), in.thp != 0, "thp=%d, VmFlags:%s", in.thp, v.flags);
	cr_expect(!(in.thp && in.hugetlb), "one or the other");
	if (huge == QPOOL_HUGE_OFF)
		cr_expect(!in.thp && !in.hugetlb);
	else
		cr_expect(in.thp || in.hugetlb, "AUTO: hugetlb, else MADV_HUGEPAGE");
	/* Pre-faulted: the first batch pays no page faults. smaps does not
	 * count hugetlb pages in Rss. */
	if (!in.hugetlb)
		cr_expect_geq(v.rss_kib * 1024, in.bytes, "Rss %" PRIu64 " kB", v.rss_kib);
	if (in.locked && !in.hugetlb)
		cr_expect_geq(v.locked_kib * 1024, in.bytes);
}

Test(pool, smaps_auto)
{
	struct qpool *p = make(16 * MiB, QPOOL_HUGE_AUTO, 0);

	check_mapping(p, QPOOL_HUGE_AUTO);
	qpool_free(p);
}

Test(pool, smaps_huge_off)
{
	struct qpool *p = make(16 * MiB, QPOOL_HUGE_OFF, 0);

	check_mapping(p, QPOOL_HUGE_OFF);
	qpool_free(p);
}

/* A pool made with QPOOL_LOCK_REQUIRED, or the test skipped when
 * RLIMIT_MEMLOCK does not allow it here. */
static struct qpool *make_locked(struct qpool_opts o)
{
	struct rlimit rl;
	struct qpool *p = NULL;
	char err[1024] = "";
	int r;

	o.lock = QPOOL_LOCK_REQUIRED;
	cr_assert_eq(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
	r = qpool_new(&o, &p, err, sizeof(err));
	if (r == -EPERM || r == -ENOMEM)
		cr_skip_test("RLIMIT_MEMLOCK %llu is too small for a %" PRIu64 " MiB pool here: %s",
			     (unsigned long long)rl.rlim_cur, o.bytes / MiB, err);
	cr_assert_eq(r, 0, "%d %s", r, err);
	return p;
}

Test(pool, smaps_locked_when_allowed)
{
	struct qpool *p = make_locked((struct qpool_opts){.bytes = 4 * MiB});

	cr_expect_eq(info_of(p).locked, 1);
	check_mapping(p, QPOOL_HUGE_AUTO);
	qpool_free(p);
}

/* A lazy pool is locked, but no page is touched until it is written: then
 * exactly those pages come in, locked. */
Test(pool, lazy_pool_is_locked_as_it_is_touched)
{
	struct qpool *p =
	    make_locked((struct qpool_opts){.bytes = 16 * MiB, .huge = QPOOL_HUGE_OFF, .lazy = 1});
	struct qpool_info in = info_of(p);
	cr_expect_eq(in.locked, 1);
	struct vma v = smaps_find(in.base);
	cr_assert(v.found);
	cr_expect(has_flag(&v, "lo"), "locked: VmFlags:%s", v.flags);
	cr_expect(has_flag(&v, "dd") && has_flag(&v, "dc"), "VmFlags:%s", v.flags);
	cr_expect_lt(v.rss_kib * 1024, 1 * MiB, "untouched, yet Rss %" PRIu64 " kB", v.rss_kib);

	unsigned char *b = alloc_ok(p, 4 * MiB);
	memset(b, 0x5a, 4 * MiB);
	v = smaps_find(in.base);
	cr_expect_geq(v.rss_kib * 1024, 4 * MiB, "Rss %" PRIu64 " kB", v.rss_kib);
	cr_expect_lt(v.rss_kib * 1024, 6 * MiB, "only what was touched: Rss %" PRIu64 " kB",
		     v.rss_kib);
	cr_expect_eq(v.locked_kib, v.rss_kib,
		     "every page touched is locked: Locked %" PRIu64 " kB, Rss %" PRIu64 " kB",
		     v.locked_kib, v.rss_kib);
	qpool_release(p, b);
	qpool_free(p);
}

/* ------------------------------------------------------------------------
 * Wiping
 * ------------------------------------------------------------------------ */

static bool all_zero(const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

Test(pool, release_wipes_the_block)
{
	struct qpool *p = make(1 * MiB, QPOOL_HUGE_OFF, 1);
	unsigned char *base = info_of(p).base;
	unsigned char *a = alloc_ok(p, 3 * PG), *b = alloc_ok(p, 5 * PG + 100);
	size_t off = (size_t)(b - base);

	memset(a, 0xa5, 3 * PG);
	memset(b, 0xc3, 6 * PG);
	qpool_release(p, b);
	/* Read through the base: the pages are still mapped, only free. */
	cr_expect(all_zero(base + off, 6 * PG), "released block wiped");
	cr_expect_eq(a[0], 0xa5, "a live neighbour untouched");
	cr_expect_eq(a[3 * PG - 1], 0xa5);
	qpool_release(p, a);
	cr_expect(all_zero(base, 3 * PG));
	qpool_free(p);
}

/* Not a promise of the API, only that wipe=1 is what zeroes: without it,
 * the bytes are left as they were (release costs nothing). */
Test(pool, release_without_wipe_leaves_bytes)
{
	struct qpool *p = make(1 * MiB, QPOOL_HUGE_OFF, 0);
	unsigned char *b = alloc_ok(p, PG);

	memset(b, 0x77, PG);
	qpool_release(p, b);
	cr_expect_eq(b[0], 0x77);
	qpool_free(p);
}

/* ------------------------------------------------------------------------
 * mlock failure, in a child with a small RLIMIT_MEMLOCK and no
 * CAP_IPC_LOCK, so that this process keeps its limits
 * ------------------------------------------------------------------------ */

struct child_report {
	int skip; /* the child could not shed CAP_IPC_LOCK */
	int req_rc;
	char req_err[1024];
	int try_rc;
	int try_locked;
	uint64_t try_bytes;
	uint64_t try_rss_kib;
	int try_alloc_rc;
};

static void memlock_child(int fd)
{
	struct child_report rep = {0};
	struct rlimit rl = {64 * 1024, 64 * 1024};
	struct qpool_opts o = {.bytes = 16 * MiB, .lock = QPOOL_LOCK_REQUIRED};
	struct qpool *p = NULL;
	char probe[128 * 1024];

	/* Without CAP_IPC_LOCK, or else as nobody (which sheds every
	 * capability); the probe proves mlock is now limited (the system call: ASan's mlock() is a
	 * no-op). */
	if (tu_forbid_mlock() < 0 &&
	    (setrlimit(RLIMIT_MEMLOCK, &rl) || setresgid(65534, 65534, 65534) ||
	     setresuid(65534, 65534, 65534) || !syscall(SYS_mlock, probe, sizeof(probe)))) {
		rep.skip = 1;
		goto out;
	}
	rep.req_rc = qpool_new(&o, &p, rep.req_err, sizeof(rep.req_err));
	if (!rep.req_rc)
		qpool_free(p);
	p = NULL;
	o.lock = QPOOL_LOCK_TRY;
	rep.try_rc = qpool_new(&o, &p, NULL, 0);
	if (!rep.try_rc) {
		struct qpool_info in;
		struct vma v;
		void *b;

		qpool_info(p, &in);
		v = smaps_find(in.base);
		rep.try_locked = in.locked;
		rep.try_bytes = in.bytes;
		rep.try_rss_kib = v.rss_kib;
		rep.try_alloc_rc = qpool_alloc(p, 16 * MiB, &b);
		if (!rep.try_alloc_rc)
			qpool_release(p, b);
		qpool_free(p);
	}
out:
	if (write(fd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
		_exit(2);
	_exit(0);
}

Test(pool, mlock_failure_says_how_to_raise_the_limit)
{
	struct child_report rep;
	int fds[2], status;
	ssize_t n;
	pid_t pid;

	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(fds[0]);
		memlock_child(fds[1]);
	}
	close(fds[1]);
	n = read(fds[0], &rep, sizeof(rep));
	close(fds[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
	cr_assert_eq(n, (ssize_t)sizeof(rep));
	if (rep.skip)
		cr_skip_test("cannot make mlock fail here: CAP_IPC_LOCK could not be dropped");

	cr_log_info("QPOOL_LOCK_REQUIRED: %d: %s", rep.req_rc, rep.req_err);
	cr_expect(rep.req_rc == -EPERM || rep.req_rc == -ENOMEM, "rc %d", rep.req_rc);
	cr_expect(strstr(rep.req_err, "RLIMIT_MEMLOCK"), "%s", rep.req_err);
	cr_expect(strstr(rep.req_err, "ulimit -l"), "%s", rep.req_err);
	cr_expect(strstr(rep.req_err, "limits.conf"), "%s", rep.req_err);
	cr_expect(strstr(rep.req_err, "LimitMEMLOCK="), "%s", rep.req_err);
	cr_expect(strstr(rep.req_err, "16777216 bytes"), "the bytes asked: %s", rep.req_err);
	cr_expect(strstr(rep.req_err, "65536 bytes (soft), 65536 bytes (hard)"), "the limits: %s",
		  rep.req_err);

	cr_expect_eq(rep.try_rc, 0, "QPOOL_LOCK_TRY goes on unlocked");
	cr_expect_eq(rep.try_locked, 0);
	cr_expect_eq(rep.try_alloc_rc, 0);
	cr_expect_geq(rep.try_rss_kib * 1024, rep.try_bytes,
		      "pre-faulted without mlock: Rss %" PRIu64 " kB", rep.try_rss_kib);
}

/* ------------------------------------------------------------------------
 * GPU registration
 * ------------------------------------------------------------------------ */

Test(pool, gpu_auto_never_fails)
{
	struct qpool_opts o = {.bytes = 4 * MiB, .lock = QPOOL_LOCK_TRY, .gpu = QPOOL_GPU_AUTO};
	struct qpool *p = NULL;
	struct qpool_info in;
	char err[256] = "";

	cr_assert_eq(qpool_new(&o, &p, err, sizeof(err)), 0, "%s", err);
	qpool_info(p, &in);
	cr_log_info("gpu=%d: %s", in.gpu, in.gpu_note);
	cr_expect_neq(in.gpu_note[0], '\0', "the note says why, or which device");
	if (!QUAI_HAVE_HIP && !QUAI_HAVE_CUDA) {
		cr_expect_eq(in.gpu, QPOOL_GPU_NONE);
		cr_expect(strstr(in.gpu_note, "-Drocm=enabled"), "%s", in.gpu_note);
		cr_expect(strstr(in.gpu_note, "-Dcuda=enabled"), "%s", in.gpu_note);
	} else {
		cr_expect(in.gpu == QPOOL_GPU_NONE || in.gpu == QPOOL_GPU_HIP ||
			  in.gpu == QPOOL_GPU_CUDA);
		if (in.gpu == QPOOL_GPU_NONE)
			cr_expect(strstr(in.gpu_note, "no "), "%s", in.gpu_note);
		else
			cr_expect(strstr(in.gpu_note, "registered"), "%s", in.gpu_note);
	}
	qpool_release(p, alloc_ok(p, MiB));
	qpool_free(p);
}

Test(pool, gpu_none_reports_not_requested)
{
	struct qpool *p = make(MiB, QPOOL_HUGE_OFF, 0);
	struct qpool_info in = info_of(p);

	cr_expect_eq(in.gpu, QPOOL_GPU_NONE);
	cr_expect_neq(in.gpu_note[0], '\0');
	qpool_free(p);
}

/* By name, a runtime that is missing or finds no device is -ENODEV. */
static void gpu_by_name(int gpu, int built, const char *option)
{
	struct qpool_opts o = {.bytes = MiB, .lock = QPOOL_LOCK_TRY, .gpu = gpu};
	struct qpool *p = (struct qpool *)0x1;
	char err[256] = "";
	int r = qpool_new(&o, &p, err, sizeof(err));

	cr_log_info("gpu %d by name: %d %s", gpu, r, err);
	if (!built) {
		cr_expect_eq(r, -ENODEV);
		cr_expect(strstr(err, option), "%s", err);
	}
	if (r == 0) {
		cr_expect_eq(info_of(p).gpu, gpu);
		qpool_free(p);
	} else {
		cr_expect_eq(r, -ENODEV, "%s", err);
		cr_expect_neq(err[0], '\0');
		cr_expect_eq(p, (struct qpool *)0x1);
	}
}

Test(pool, gpu_hip_by_name)
{
	gpu_by_name(QPOOL_GPU_HIP, QUAI_HAVE_HIP, "-Drocm=enabled");
}

Test(pool, gpu_cuda_by_name)
{
	gpu_by_name(QPOOL_GPU_CUDA, QUAI_HAVE_CUDA, "-Dcuda=enabled");
}
