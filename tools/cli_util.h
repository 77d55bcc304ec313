/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small helpers of the quai CLI: argument parsing, number formatting, the
 * self-overwriting progress line, signal flags, buffered output and a tiny
 * JSON emitter. None of it knows anything about datasets: every behaviour of
 * quai lives in the library (include/quai/quai.h); this is presentation.
 */
#ifndef QUAI_TOOLS_CLI_UTIL_H
#define QUAI_TOOLS_CLI_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit statuses of the quai program (documented in docs/quai.md). */
enum cli_exit {
	CLI_EXIT_OK = 0,
	CLI_EXIT_BAD_DATA = 1,	   /* the data is bad: corrupt or inconsistent */
	CLI_EXIT_USAGE = 2,	   /* bad command line */
	CLI_EXIT_FAILURE = 3,	   /* operating-system or input error */
	CLI_EXIT_REMOTE = 4,	   /* the network or quaid failed: unreachable,
				      silent, shutting down */
	CLI_EXIT_REFUSED = 5,	   /* refused by the data policy (QUAI_EPOLICY),
				      here or by quaid */
	CLI_EXIT_VERSION = 6,	   /* a version this build does not know
				      (QUAI_EVERSION): a dataset from a newer
				      quai, a quaid of another protocol */
	CLI_EXIT_INTERRUPTED = 130 /* SIGINT (128 + the signal number) */
};

/* The exit status for a negative quai error code (see enum cli_exit). */
int cli_exit_code(int err);

/* "quai VERB: message" on stderr. */
void cli_errorf(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same, then "Try 'quai VERB --help'."; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- parsing ---------------------------------------------------------- */

/* A decimal unsigned integer, nothing else (no sign, no spaces). Returns 0,
 * -EINVAL (syntax) or -ERANGE (over 64 bits). */
int cli_parse_u64(const char *s, uint64_t *ret);

/* A decimal integer, optionally signed, that fits an int. Returns 0,
 * -EINVAL or -ERANGE. */
int cli_parse_int(const char *s, int *ret);

/* A byte count: digits and an optional binary suffix, case-insensitive:
 * B, K/KiB, M/MiB, G/GiB, T/TiB (K = 1024). Returns 0, -EINVAL or -ERANGE. */
int cli_parse_size(const char *s, uint64_t *ret);

/* A half-open record range "A:B", "A:", ":B" or ":". A missing end leaves
 * *has_b false (to the end); a missing start is 0. Returns 0 or -EINVAL
 * (syntax, or B < A), -ERANGE (a number over 64 bits). */
int cli_parse_range(const char *s, uint64_t *ret_a, uint64_t *ret_b, bool *ret_has_b);

/* ---- formatting ------------------------------------------------------- */

/* "512 B", "12.3 KiB", "4.0 GiB". Always NUL-terminates. */
void cli_format_bytes(uint64_t n, char *buf, size_t len);

/* "2.71" (raw over compressed bytes), or "-" when compressed is 0. */
void cli_format_ratio(uint64_t raw, uint64_t compressed, char *buf, size_t len);

/* "0.42 s", "12.3 s", "3:07", "1:02:03". Always NUL-terminates. */
void cli_format_duration(double seconds, char *buf, size_t len);

/* Copies `src` for display, every control byte replaced by '?', so a hostile
 * name cannot drive the terminal. Truncates to len - 1 bytes. Returns buf. */
char *cli_printable(const char *src, char *buf, size_t len);

/* Seconds on a monotonic clock. */
double cli_now(void);

/* Decimal megabytes per second, 0 when no time has passed. */
double cli_rate_mbs(uint64_t bytes, double seconds);

/* ---- signals ---------------------------------------------------------- */

/* Catches SIGINT and SIGTERM: the first one only sets a flag that long
 * operations poll (through their progress callbacks) to cancel cleanly; the
 * handler is then reset, so a second one ends the process at once. */
void cli_catch_signals(void);

/* The number of the signal caught, or 0. Async-signal-safe to read. */
int cli_interrupted(void);

/* ---- the progress line ------------------------------------------------ */

/* One self-overwriting line on stderr, drawn only when `enabled` (stderr is
 * a terminal and the user did not ask for quiet). */
struct cli_progress {
	bool enabled;
	bool drawn;   /* a line is on the screen */
	double start; /* cli_now() at init */
	double last;  /* time of the last draw */
};

/* True when stderr is a terminal. */
bool cli_stderr_is_tty(void);

void cli_progress_init(struct cli_progress *p, bool enabled);

/* Redraws the line: "DONE / TOTAL (P%), R MB/s, ETA T, EXTRA" — or just
 * "DONE, R MB/s, EXTRA" when total is 0 (unknown). Redraws are limited to
 * ten a second unless `force`. The line is cut to the terminal's width. */
void cli_progress_update(struct cli_progress *p, uint64_t done, uint64_t total, const char *extra,
			 bool force);

/* Erases the line, if one is drawn (before other output, and at the end). */
void cli_progress_clear(struct cli_progress *p);

/* ---- output ----------------------------------------------------------- */

/* Flushes and checks stdout, as the last thing a verb does before it
 * succeeds. Prints "quai VERB: write error: ..." and returns
 * CLI_EXIT_FAILURE when the output could not be written (a closed pipe
 * counts as success: the reader wanted no more), else CLI_EXIT_OK. */
int cli_finish_stdout(const char *verb);

/* Batched writes to a file descriptor, for cat. With a buffer (cap > 0)
 * the writes run on a thread of their own, from one buffer while the
 * caller fills the other, so that decoding and write(2) overlap (issue 22
 * #15: into a pipe they took turns). cap 0: every write goes straight out
 * from the caller's memory (a sensitive dataset's locked buffer). */
struct cli_out {
	int fd;
	char *buf; /* the one being filled */
	size_t len;
	size_t cap;
	/* The writer thread (cap > 0). */
	char *spare; /* the other buffer, while not being written */
	char *busy;  /* handed to the writer, NULL when it is idle */
	size_t busy_len;
	int err; /* the writer's first error, returned by the next call */
	bool stop, started, detached;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

/* A new writer to fd, in *ret_out. Returns 0, -ENOMEM or -errno (the
 * thread). */
int cli_out_new(int fd, size_t cap, struct cli_out **ret_out);
/* Appends, handing a full buffer to the writer. Returns 0, -EPIPE (the
 * reader has gone), -EINTR (a signal was caught: see cli_interrupted()) or
 * another -errno, from this write or an earlier one. */
int cli_out_write(struct cli_out *o, const void *data, size_t len);
/* Writes out what is buffered and waits for it. Same returns. */
int cli_out_flush(struct cli_out *o);
/* Stops the writer (what is not flushed is dropped) and frees o; NULL:
 * no-op. After a caught signal, a writer still blocked on its reader is
 * left to the process's exit, with o (which it holds). */
void cli_out_free(struct cli_out *o);

/* ---- JSON ------------------------------------------------------------- */

/* A streaming JSON writer with two-space indentation. Keys and strings are
 * escaped; bytes that are not valid UTF-8 are written as \u00XX of the byte
 * value, as the library's manifest writer does, so the output is always
 * valid JSON. Pass key = NULL inside arrays and for the root value. */
#define CLI_JSON_MAX_DEPTH 16

struct cli_json {
	FILE *f;
	int depth;
	bool first[CLI_JSON_MAX_DEPTH]; /* nothing written yet at this level */
};

void cli_json_init(struct cli_json *j, FILE *f);
void cli_json_begin_object(struct cli_json *j, const char *key);
void cli_json_end_object(struct cli_json *j);
void cli_json_begin_array(struct cli_json *j, const char *key);
void cli_json_end_array(struct cli_json *j);
void cli_json_string(struct cli_json *j, const char *key, const char *value);
void cli_json_u64(struct cli_json *j, const char *key, uint64_t value);
void cli_json_i64(struct cli_json *j, const char *key, int64_t value);
void cli_json_null(struct cli_json *j, const char *key);
/* Writes the final newline after the root value. */
void cli_json_finish(struct cli_json *j);

/* The file standard output goes to when it is a regular file (its path,
 * into buf), for commands that must hold records to sovereign paths; NULL
 * when it is a pipe, a terminal or a socket. *err is -1 when it is a file
 * whose path cannot be told (deleted, say), else 0. */
const char *cli_stdout_file(char *buf, size_t len, int *err);

#endif /* QUAI_TOOLS_CLI_UTIL_H */
