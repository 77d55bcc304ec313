/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the Criterion suites: scratch directories and files. */
#ifndef QUAI_TESTS_TESTUTIL_H
#define QUAI_TESTS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "quai/quai.h"

/* A new empty directory under $QUAI_TEST_TMPDIR (or /tmp); the returned
 * path is static per call site's buffer: copy it if needed. Aborts the test
 * on failure. */
void tu_mkdtemp(char *buf, size_t len);
/* Writes a whole file (creating parents is the caller's job). */
void tu_write(const char *path, const void *data, size_t len);
/* Reads a whole file; the caller frees. */
uint8_t *tu_read(const char *path, size_t *ret_len); /* NUL-terminated too */
/* Deterministic pseudo-random bytes (xorshift), compressible when
 * `alphabet` is small (e.g. 16), random when 256. */
void tu_fill(void *buf, size_t len, uint64_t seed, unsigned alphabet);
/* Writes `len` bytes of seeded text (tu_fill with `alphabet`) as lines: a
 * '\n' at position i, then at i + 1 + (i * mul) % mod, and so on. */
void tu_write_lines(const char *path, size_t len, uint64_t seed, unsigned alphabet, size_t first,
		    size_t mul, size_t mod);
/* Packs with the given options, asserting success; returns the result. */
struct quai_pack_result tu_pack(const char *const *srcs, size_t n, const char *dest,
				const struct quai_pack_opts *o);
/* Reads record i of a dataset into a malloc'd copy. */
uint8_t *tu_record(quai_reader *r, uint64_t i, size_t *ret_len);
/* Removes a directory tree. */
void tu_rmtree(const char *path);
/* Makes this process unable to lock more than 64 KiB: sets RLIMIT_MEMLOCK
 * and drops CAP_IPC_LOCK (root keeps its other capabilities, so files stay
 * readable). For a forked child. Returns 0 when mlock is now limited. */
int tu_forbid_mlock(void);
/* The same with a limit of `bytes`. */
int tu_limit_mlock(size_t bytes);
/* Starts a private munged in the foreground: its key (new and random, so
 * two daemons never share one), output (dir/munged.out), log, pid and seed
 * files in `dir`; origin 127.0.0.1; its socket in a directory of its own
 * under /tmp (munged wants every directory above its socket passable by
 * all, which a scratch directory in a private clone is not), written to
 * socket_out and removed by tu_munged_stop(). The
 * daemon gets SIGTERM when the calling process dies. Waits up to 10 s for
 * the socket to accept. Returns munged's pid; TU_NO_MUNGED when munged is
 * not installed (skip the test then, saying so); -1 after printing why it
 * failed to start (a failure: it is installed). */
#define TU_NO_MUNGED (-2)
int tu_munged_start(const char *dir, char *socket_out, size_t len);
/* Skips the test when munged is not installed, fails it when it would not
 * start: for the result of tu_munged_start(). */
#define TU_NEED_MUNGED(pid)                                                                        \
	do {                                                                                       \
		if ((pid) == TU_NO_MUNGED)                                                         \
			cr_skip_test("munged is not installed (Debian: apt-get install munge)");   \
		cr_assert((pid) > 0, "munged would not start (see the test's output)");            \
	} while (0)
/* Stops a munged from tu_munged_start (SIGTERM, then waits); pid <= 0 is
 * a no-op. */
void tu_munged_stop(int pid);

#endif
