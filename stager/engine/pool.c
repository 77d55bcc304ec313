/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pinned pool (stager/engine/pool.h): the mapping, its locking and GPU
 * registration, and the block allocator.
 *
 * The allocator keeps its state outside the pool, in three bitmaps of one
 * bit per QPOOL_ALIGN page: `used` (the page belongs to a block, live or
 * being wiped), `head` (a live block starts here) and `tail` (a block ends
 * here). Nothing is ever written into the pinned bytes but the caller's
 * data, so a release is checked against the bitmaps (a double release or a
 * foreign pointer is caught) and a wipe leaves nothing behind. Free ranges
 * coalesce by themselves: a free page is a clear bit, whoever freed its
 * neighbours. At 3 bits per 4 KiB page a 64 GiB pool costs 6 MiB of
 * bitmaps, allocated once; alloc and release allocate nothing.
 *
 * First fit scans `used` a word at a time from `hint`, a page below which
 * nothing is free, so an allocation costs at most one pass over the bitmap
 * (pool pages / 64 words), and usually a few words.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it; standalone builds may not */
#endif
#include "errmsg.h"
#include "pool.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "quai_config.h"

#if QUAI_HAVE_HIP && QUAI_HAVE_CUDA
/* Their headers define the same vector types (char1...) differently. */
#error "ROCm/HIP and CUDA cannot both be enabled in one build"
#endif
#if QUAI_HAVE_HIP
#ifndef __HIP_PLATFORM_AMD__
#define __HIP_PLATFORM_AMD__ /* hip_runtime_api.h insists on a platform */
#endif
#include <hip/hip_runtime_api.h>
#endif
#if QUAI_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#define BITS 64u

struct qpool {
	pthread_mutex_t lock;
	unsigned char *base;
	size_t bytes; /* mapped, and all of it managed */
	size_t npages;
	uint64_t *used;
	uint64_t *head;
	uint64_t *tail;
	size_t hint;
	size_t high;	 /* no block was ever handed out at or above this page */
	uint64_t in_use; /* bytes in blocks not yet returned */
	uint64_t peak;
	bool wipe;
	bool wipe_on_free; /* wipe everything handed out when destroyed */
	bool hugetlb;
	bool thp;
	bool locked;
	bool dontdump;
	int gpu;
	char gpu_note[sizeof(((struct qpool_info *)0)->gpu_note)];
};

/* A programming error in the caller (a double release, a pointer that is
 * not a block): the allocator's state can no longer be trusted, and with
 * sensitive data in the pool carrying on is worse than stopping. */
static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("quai: pinned pool: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

/* ------------------------------------------------------------------------
 * Bitmaps
 * ------------------------------------------------------------------------ */

static bool bit_test(const uint64_t *map, size_t i)
{
	return map[i / BITS] >> (i % BITS) & 1;
}

static void bit_set(uint64_t *map, size_t i)
{
	map[i / BITS] |= UINT64_C(1) << (i % BITS);
}

static void bit_clear(uint64_t *map, size_t i)
{
	map[i / BITS] &= ~(UINT64_C(1) << (i % BITS));
}

/* Sets (on) or clears bits [from, from + n). */
static void bits_assign(uint64_t *map, size_t from, size_t n, bool on)
{
	size_t end = from + n;

	while (from < end) {
		size_t w = from / BITS, lo = from % BITS;
		size_t hi = end - w * BITS < BITS ? end - w * BITS : BITS;
		uint64_t mask = (hi == BITS ? ~UINT64_C(0) : (UINT64_C(1) << hi) - 1) &
				~((UINT64_C(1) << lo) - 1);

		if (on)
			map[w] |= mask;
		else
			map[w] &= ~mask;
		from = w * BITS + hi;
	}
}

/* The first index in [from, limit) whose bit is `want`, else limit. */
static size_t bits_find(const uint64_t *map, size_t from, size_t limit, bool want)
{
	while (from < limit) {
		size_t w = from / BITS;
		uint64_t word = want ? map[w] : ~map[w];

		word &= ~UINT64_C(0) << (from % BITS);
		if (word) {
			size_t i = w * BITS + (size_t)__builtin_ctzll(word);

			return i < limit ? i : limit;
		}
		from = (w + 1) * BITS;
	}
	return limit;
}

/* The first index of a run of n clear bits inside [from, limit), else
 * limit. A word at a time, so that a bitmap fragmented into many small
 * holes costs one step per word, not one per hole: first fit stays linear
 * in the pool's size whatever the fragmentation. */
static size_t find_run(const uint64_t *map, size_t from, size_t limit, size_t n)
{
	size_t run = 0, start = from; /* clear bits ending where the last word ended */

	while (from < limit) {
		size_t w = from / BITS, b = from % BITS;
		uint64_t from_b = ~UINT64_C(0) << b;
		uint64_t clear = ~map[w] & from_b, m;
		size_t lead, len;

		if (limit - w * BITS < BITS)
			clear &= (UINT64_C(1) << (limit - w * BITS)) - 1;
		if (clear == from_b) { /* all clear to the end of the word */
			if (!run)
				start = from;
			run += BITS - b;
			if (run >= n)
				return start;
			from = (w + 1) * BITS;
			continue;
		}
		/* The run the previous words left, continued into this one. */
		lead = (size_t)__builtin_ctzll(~clear >> b);
		if (run + lead >= n)
			return run ? start : from;
		/* A run wholly inside the word: bit i of m stays set while
		 * bits i..i+len-1 of `clear` all are. */
		if (n < BITS) {
			for (m = clear, len = 1; m && len < n; len *= 2)
				m &= m >> (len < n - len ? len : n - len);
			if (m)
				return w * BITS + (size_t)__builtin_ctzll(m);
		}
		/* The clear bits at the top of the word start the next run. */
		run = (size_t)__builtin_clzll(~clear);
		start = (w + 1) * BITS - run;
		from = (w + 1) * BITS;
	}
	return limit;
}

/* ------------------------------------------------------------------------
 * The mapping
 * ------------------------------------------------------------------------ */

/* A "Key:   N kB" line of a /proc file, in bytes; 0 when absent. */
static uint64_t proc_kib(const char *path, const char *key)
{
	char line[256];
	size_t klen = strlen(key);
	uint64_t v = 0;
	FILE *f = fopen(path, "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, key, klen)) {
			v = strtoull(line + klen, NULL, 10) * 1024;
			break;
		}
	}
	fclose(f);
	return v;
}

static int round_up(uint64_t n, uint64_t unit, size_t *ret)
{
	if (n > SIZE_MAX - (unit - 1))
		return -ENOMEM;
	*ret = (size_t)((n + unit - 1) / unit * unit);
	return 0;
}

/* A plain anonymous mapping of `bytes` starting on a multiple of `align`,
 * so that transparent huge pages can back all of it: map more, trim. */
static void *map_aligned(size_t bytes, size_t align)
{
	unsigned char *p;
	size_t lead;

	if (bytes > SIZE_MAX - align)
		return NULL;
	p = mmap(NULL, bytes + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	lead = (align - (uintptr_t)p % align) % align;
	if (lead)
		munmap(p, lead);
	munmap(p + lead + bytes, align - lead);
	return p + lead;
}

static const char *limit_str(rlim_t v, char buf[32])
{
	if (v == RLIM_INFINITY)
		return "unlimited";
	snprintf(buf, 32, "%" PRIu64, (uint64_t)v);
	return buf;
}

/* The system calls themselves: AddressSanitizer replaces mlock() and
 * munlock() with no-ops that return 0, and a pool that says it is locked
 * must be. */
static int sys_mlock(void *addr, size_t len)
{
	return (int)syscall(SYS_mlock, addr, len);
}

static int sys_munlock(void *addr, size_t len)
{
	return (int)syscall(SYS_munlock, addr, len);
}

/* Lazy: locks the range without faulting it in; each page is locked when
 * it is first touched. RLIMIT_MEMLOCK counts the whole range all the same.
 * A kernel without MLOCK_ONFAULT (before 4.4) locks it all now. */
static int sys_mlock_lazy(void *addr, size_t len)
{
#ifdef SYS_mlock2
	if (!syscall(SYS_mlock2, addr, len, MLOCK_ONFAULT))
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
#endif
	return sys_mlock(addr, len);
}

static int lock_pool(struct qpool *p, int mode, int lazy, char *err, size_t err_len)
{
	struct rlimit rl = {0, 0};
	char soft[32], hard[32];
	uint64_t already, need_kib;
	int e;

	if (!(lazy ? sys_mlock_lazy(p->base, p->bytes) : sys_mlock(p->base, p->bytes))) {
		p->locked = true;
		return 0;
	}
	e = errno;
	/* A failure midway may leave part of the range locked. */
	sys_munlock(p->base, p->bytes);
	if (mode == QPOOL_LOCK_TRY)
		return 0;
	getrlimit(RLIMIT_MEMLOCK, &rl);
	already = proc_kib("/proc/self/status", "VmLck:");
	need_kib = (p->bytes + already + 1023) / 1024;
	qerr_set(err, err_len,
		 "cannot lock the pinned pool in memory: mlock of %zu bytes failed (%s); "
		 "RLIMIT_MEMLOCK is %s bytes (soft), %s bytes (hard), and this process already "
		 "has %" PRIu64 " bytes locked. Raise the limit to at least %" PRIu64 " KiB: "
		 "`ulimit -l %" PRIu64 "` in the shell that starts the job (up to the hard limit), "
		 "a memlock line in /etc/security/limits.conf (e.g. `@hpc - memlock unlimited`), "
		 "or LimitMEMLOCK= in the systemd service; or make the pool smaller",
		 p->bytes, strerror(e), limit_str(rl.rlim_cur, soft), limit_str(rl.rlim_max, hard),
		 already, need_kib, need_kib);
	/* The header promises -EPERM or -ENOMEM; EAGAIN means the kernel
	 * could not lock some of it, which is memory too. */
	return e == EPERM ? -EPERM : -ENOMEM;
}

/* Touches every page so that the first batch does not pay the faults
 * (mlock has done it already for a locked pool). */
static void prefault(struct qpool *p)
{
#ifdef MADV_POPULATE_WRITE
	if (!madvise(p->base, p->bytes, MADV_POPULATE_WRITE))
		return;
#endif
	for (size_t off = 0; off < p->bytes; off += QPOOL_ALIGN)
		((volatile unsigned char *)p->base)[off] = 0;
}

/* ------------------------------------------------------------------------
 * GPU registration
 * ------------------------------------------------------------------------ */

/* 0 when registered; -ENODEV when the runtime has no device; another
 * -errno when registration fails. `why` says what happened either way. */
#if QUAI_HAVE_HIP
static int register_hip(struct qpool *p, char *why, size_t why_len)
{
	char name[64] = "";
	hipError_t r;
	int n = 0;

	r = hipGetDeviceCount(&n);
	if (r != hipSuccess || n < 1) {
		qerr_set(why, why_len, "no HIP device found: %s",
			 r != hipSuccess ? hipGetErrorString(r) : "0 devices");
		return -ENODEV;
	}
	r = hipHostRegister(p->base, p->bytes, hipHostRegisterDefault);
	if (r != hipSuccess) {
		qerr_set(why, why_len, "hipHostRegister of %zu bytes failed: %s", p->bytes,
			 hipGetErrorString(r));
		return r == hipErrorOutOfMemory ? -ENOMEM : -EIO;
	}
	if (hipDeviceGetName(name, sizeof(name), 0) != hipSuccess)
		name[0] = '\0';
	qerr_set(why, why_len, "registered with HIP (%d device%s; device 0: %s)", n,
		 n == 1 ? "" : "s", name[0] ? name : "unnamed");
	p->gpu = QPOOL_GPU_HIP;
	return 0;
}
#endif

#if QUAI_HAVE_CUDA
static int register_cuda(struct qpool *p, char *why, size_t why_len)
{
	struct cudaDeviceProp prop;
	cudaError_t r;
	int n = 0;

	r = cudaGetDeviceCount(&n);
	if (r != cudaSuccess || n < 1) {
		qerr_set(why, why_len, "no CUDA device found: %s",
			 r != cudaSuccess ? cudaGetErrorString(r) : "0 devices");
		return -ENODEV;
	}
	r = cudaHostRegister(p->base, p->bytes, cudaHostRegisterDefault);
	if (r != cudaSuccess) {
		qerr_set(why, why_len, "cudaHostRegister of %zu bytes failed: %s", p->bytes,
			 cudaGetErrorString(r));
		return r == cudaErrorMemoryAllocation ? -ENOMEM : -EIO;
	}
	if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess)
		prop.name[0] = '\0';
	prop.name[sizeof(prop.name) - 1] = '\0';
	qerr_set(why, why_len, "registered with CUDA (%d device%s; device 0: %s)", n,
		 n == 1 ? "" : "s", prop.name[0] ? prop.name : "unnamed");
	p->gpu = QPOOL_GPU_CUDA;
	return 0;
}
#endif

static int register_gpu(struct qpool *p, int want, char *err, size_t err_len)
{
	char *note = p->gpu_note;
	size_t note_len = sizeof(p->gpu_note);
	int r = -ENODEV;

	switch (want) {
	case QPOOL_GPU_NONE:
		qerr_set(note, note_len, "GPU registration not requested");
		return 0;
	case QPOOL_GPU_AUTO:
		/* Never an error: a host-pinned pool still works, only slower
		 * for GPU copies, and the note says why. */
#if QUAI_HAVE_HIP
		(void)register_hip(p, note, note_len);
#elif QUAI_HAVE_CUDA
		(void)register_cuda(p, note, note_len);
#else
		qerr_set(note, note_len,
			 "this build has no ROCm/HIP or CUDA support "
			 "(build with -Drocm=enabled or -Dcuda=enabled)");
#endif
		return 0;
	case QPOOL_GPU_HIP:
#if QUAI_HAVE_HIP
		r = register_hip(p, note, note_len);
		if (r)
			qerr_set(err, err_len, "GPU registration: %s", note);
#else
		qerr_set(note, note_len,
			 "this build has no ROCm/HIP support (build with -Drocm=enabled)");
		qerr_set(err, err_len, "GPU registration: %s", note);
#endif
		return r;
	case QPOOL_GPU_CUDA:
#if QUAI_HAVE_CUDA
		r = register_cuda(p, note, note_len);
		if (r)
			qerr_set(err, err_len, "GPU registration: %s", note);
#else
		qerr_set(note, note_len,
			 "this build has no CUDA support (build with -Dcuda=enabled)");
		qerr_set(err, err_len, "GPU registration: %s", note);
#endif
		return r;
	}
	return -EINVAL;
}

static void unregister_gpu(struct qpool *p)
{
#if QUAI_HAVE_HIP
	if (p->gpu == QPOOL_GPU_HIP)
		hipHostUnregister(p->base);
#endif
#if QUAI_HAVE_CUDA
	if (p->gpu == QPOOL_GPU_CUDA)
		cudaHostUnregister(p->base);
#endif
	p->gpu = QPOOL_GPU_NONE;
}

/* ------------------------------------------------------------------------
 * Creation and destruction
 * ------------------------------------------------------------------------ */

static int map_pool(struct qpool *p, const struct qpool_opts *o, char *err, size_t err_len)
{
	uint64_t huge = o->huge == QPOOL_HUGE_AUTO ? proc_kib("/proc/meminfo", "Hugepagesize:") : 0;
	long page = sysconf(_SC_PAGESIZE);
	uint64_t unit = page > (long)QPOOL_ALIGN ? (uint64_t)page : QPOOL_ALIGN;
	void *m;

	if (huge && huge % unit)
		huge = 0;
	if (round_up(o->bytes, huge ? huge : unit, &p->bytes)) {
		qerr_set(err, err_len, "a pinned pool of %" PRIu64 " bytes cannot be mapped",
			 o->bytes);
		return -ENOMEM;
	}
	if (huge) {
		/* Fails at once when too few huge pages are reserved
		 * (vm.nr_hugepages): hugetlb reserves them at mmap time, so a
		 * mapping that succeeds cannot SIGBUS later. */
		m = mmap(NULL, p->bytes, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
		if (m != MAP_FAILED) {
			p->base = m;
			p->hugetlb = true;
		} else {
			p->base = map_aligned(p->bytes, huge);
			if (p->base)
				p->thp = !madvise(p->base, p->bytes, MADV_HUGEPAGE);
		}
	} else {
		m = mmap(NULL, p->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			 0);
		p->base = m == MAP_FAILED ? NULL : m;
	}
	if (!p->base) {
		qerr_set(err, err_len, "mmap of %zu bytes for the pinned pool failed: %s", p->bytes,
			 strerror(errno));
		return -ENOMEM;
	}
	p->dontdump = !madvise(p->base, p->bytes, MADV_DONTDUMP);
	/* Best effort: a child that inherited the pool would hold sensitive
	 * bytes that nobody wipes; but failing here would refuse a pool that
	 * is otherwise sound. */
	(void)madvise(p->base, p->bytes, MADV_DONTFORK);
	return 0;
}

int qpool_new(const struct qpool_opts *o, struct qpool **ret_pool, char *err, size_t err_len)
{
	struct qpool *p;
	size_t words;
	int r;

	if (!o || !ret_pool || !o->bytes) {
		qerr_set(err, err_len, "invalid pinned pool options: %s",
			 !o || !ret_pool ? "NULL argument" : "zero bytes");
		return -EINVAL;
	}
	if ((o->huge != QPOOL_HUGE_AUTO && o->huge != QPOOL_HUGE_OFF) ||
	    (o->lock != QPOOL_LOCK_REQUIRED && o->lock != QPOOL_LOCK_TRY) ||
	    o->gpu < QPOOL_GPU_NONE || o->gpu > QPOOL_GPU_CUDA) {
		qerr_set(err, err_len, "invalid pinned pool options: huge=%d lock=%d gpu=%d",
			 o->huge, o->lock, o->gpu);
		return -EINVAL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		qerr_set(err, err_len, "out of memory");
		return -ENOMEM;
	}
	r = pthread_mutex_init(&p->lock, NULL);
	if (r) {
		free(p);
		qerr_set(err, err_len, "pthread_mutex_init: %s", strerror(r));
		return -r;
	}
	p->wipe = o->wipe != 0;
	p->wipe_on_free = p->wipe;
	p->gpu = QPOOL_GPU_NONE;
	r = map_pool(p, o, err, err_len);
	if (r < 0)
		goto fail;
	p->npages = p->bytes / QPOOL_ALIGN;
	words = (p->npages + BITS - 1) / BITS;
	p->used = calloc(words, sizeof(uint64_t));
	p->head = calloc(words, sizeof(uint64_t));
	p->tail = calloc(words, sizeof(uint64_t));
	if (!p->used || !p->head || !p->tail) {
		qerr_set(err, err_len, "out of memory for the bitmaps of a %zu-byte pool",
			 p->bytes);
		r = -ENOMEM;
		goto fail;
	}
	r = lock_pool(p, o->lock, o->lazy, err, err_len);
	if (r < 0)
		goto fail;
	if (!p->locked && !o->lazy)
		prefault(p);
	r = register_gpu(p, o->gpu, err, err_len);
	if (r < 0)
		goto fail;
	*ret_pool = p;
	return 0;
fail:
	qpool_free(p);
	return r;
}

void qpool_wipe_on_free(struct qpool *pool)
{
	pthread_mutex_lock(&pool->lock);
	pool->wipe_on_free = true;
	pthread_mutex_unlock(&pool->lock);
}

void qpool_free(struct qpool *pool)
{
	if (!pool)
		return;
	if (pool->base) {
		/* Everything the caller may have written, even in blocks it
		 * still holds. Pages above `high` were never handed out: they
		 * hold zeros, and wiping them would only fault in the ones an
		 * unlocked pool never touched. */
		if (pool->wipe_on_free)
			explicit_bzero(pool->base, pool->high * QPOOL_ALIGN);
		unregister_gpu(pool);
		if (pool->locked)
			sys_munlock(pool->base, pool->bytes);
		munmap(pool->base, pool->bytes);
	}
	free(pool->used);
	free(pool->head);
	free(pool->tail);
	pthread_mutex_destroy(&pool->lock);
	free(pool);
}

/* ------------------------------------------------------------------------
 * Blocks
 * ------------------------------------------------------------------------ */

int qpool_alloc(struct qpool *pool, size_t size, void **ret_block)
{
	size_t n, pos;

	if (!pool || !ret_block || !size)
		return -EINVAL;
	if (size > pool->bytes)
		return -E2BIG;
	n = (size + QPOOL_ALIGN - 1) / QPOOL_ALIGN;

	pthread_mutex_lock(&pool->lock);
	/* Every page below hint is used: start the search at the first
	 * free one, and remember it. */
	pool->hint = bits_find(pool->used, pool->hint, pool->npages, false);
	pos = find_run(pool->used, pool->hint, pool->npages, n);
	if (pos == pool->npages) {
		pthread_mutex_unlock(&pool->lock);
		return -ENOMEM;
	}
	bits_assign(pool->used, pos, n, true);
	bit_set(pool->head, pos);
	bit_set(pool->tail, pos + n - 1);
	if (pos == pool->hint)
		pool->hint = pos + n;
	if (pos + n > pool->high)
		pool->high = pos + n;
	pool->in_use += (uint64_t)n * QPOOL_ALIGN;
	if (pool->in_use > pool->peak)
		pool->peak = pool->in_use;
	pthread_mutex_unlock(&pool->lock);

	*ret_block = pool->base + pos * QPOOL_ALIGN;
	return 0;
}

void qpool_release(struct qpool *pool, void *block)
{
	uintptr_t off;
	size_t pg, n;

	if (!block)
		return;
	if (!pool)
		die("qpool_release(NULL, %p)", block);
	off = (uintptr_t)block - (uintptr_t)pool->base;
	if ((uintptr_t)block < (uintptr_t)pool->base || off >= pool->bytes || off % QPOOL_ALIGN)
		die("qpool_release: %p is not a block of the pool at %p (%zu bytes)", block,
		    (void *)pool->base, pool->bytes);
	pg = off / QPOOL_ALIGN;

	pthread_mutex_lock(&pool->lock);
	if (!bit_test(pool->head, pg)) {
		pthread_mutex_unlock(&pool->lock);
		die("qpool_release: %p is not a live block (released twice, or inside a block)",
		    block);
	}
	/* From here the block is no longer live (a second release of it
	 * aborts) but its pages stay used until they are wiped, and its tail
	 * bit keeps every neighbour's length computable. */
	bit_clear(pool->head, pg);
	n = bits_find(pool->tail, pg, pool->npages, true) - pg + 1;
	if (pool->wipe) {
		/* Outside the lock: wiping a large batch takes milliseconds,
		 * and other threads' allocations must not wait for it. */
		pthread_mutex_unlock(&pool->lock);
		explicit_bzero(block, n * QPOOL_ALIGN);
		pthread_mutex_lock(&pool->lock);
	}
	bit_clear(pool->tail, pg + n - 1);
	bits_assign(pool->used, pg, n, false);
	if (pg < pool->hint)
		pool->hint = pg;
	pool->in_use -= (uint64_t)n * QPOOL_ALIGN;
	pthread_mutex_unlock(&pool->lock);
}

void qpool_info(struct qpool *pool, struct qpool_info *ret)
{
	if (!pool || !ret)
		return;
	pthread_mutex_lock(&pool->lock);
	*ret = (struct qpool_info){
	    .base = pool->base,
	    .bytes = pool->bytes,
	    .hugetlb = pool->hugetlb,
	    .thp = pool->thp,
	    .locked = pool->locked,
	    .dontdump = pool->dontdump,
	    .gpu = pool->gpu,
	    .used = pool->in_use,
	    .peak = pool->peak,
	};
	memcpy(ret->gpu_note, pool->gpu_note, sizeof(ret->gpu_note));
	pthread_mutex_unlock(&pool->lock);
}
