/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The audit log's hash chain (docs/SECURITY.md "Audit log", docs/FORMAT.md
 * "Audit log chain"). Private to the library.
 *
 * Every line of an audit log ends with its place in a chain:
 *
 *   {...the event...,"seq":N,"prev":"<64 hex>"}
 *   {...the event...,"seq":N,"prev":"<64 hex>","sig":"<128 hex>"}
 *
 * seq counts lines from 1 across rotated files; prev is the BLAKE2b-256 of
 * the previous line's bytes (without its '\n'), 64 zeros on the first line
 * of a chain. sig, where the writer holds a host key (quaid's audit_key),
 * is the Ed25519 signature of the line's bytes before ',"sig":'. A line
 * changed, deleted or inserted breaks the chain at the line after it; a
 * signed line cannot be rewritten without the key.
 */
#ifndef QUAI_STAGER_AUDITCHAIN_H
#define QUAI_STAGER_AUDITCHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QACH_HASH_BYTES 32
#define QACH_SIG_BYTES 64
#define QACH_PK_BYTES 32
#define QACH_SK_BYTES 64
/* The longest line the writer reads back to link to (a longer last line
 * makes the next write fail with -EFBIG: nothing is logged unchained). */
#define QACH_LINE_MAX (1u << 20)

/* The end of a chain: the last line's seq and hash. seq 0 (and a zero
 * hash): no line yet. */
struct qach_head {
	uint64_t seq;
	uint8_t hash[QACH_HASH_BYTES];
};

/* The chain fields of one line. */
struct qach_fields {
	uint64_t seq;
	uint8_t prev[QACH_HASH_BYTES];
	bool has_sig;
	uint8_t sig[QACH_SIG_BYTES];
	size_t signed_len; /* bytes of the line the signature covers */
};

/* BLAKE2b-256 of line[0..len) into out. */
void qach_hash(const char *line, size_t len, uint8_t out[QACH_HASH_BYTES]);

/* Reads the chain fields at the end of line[0..len) (no '\n'). Pure; for
 * the fuzz harness too. Returns 0 and *ret, or -QUAI_EFORMAT when the line
 * does not start with '{' or end with well-formed chain fields (seq a
 * decimal from 1 without leading zeros, prev 64 and sig 128 lowercase hex
 * digits). */
int qach_parse(const char *line, size_t len, struct qach_fields *ret);

/* Writes into buf the line `body` (a qaudit_format() line, ending in "}\n")
 * chained after `prev`: seq prev->seq + 1, prev's hash, and a signature
 * with sk when sk is not NULL. snprintf-style: returns the length the line
 * needs (without the NUL); it is whole when that is < len. body_len < 2 or
 * a body that does not end in "}\n" returns 0. */
size_t qach_seal(const char *body, size_t body_len, const struct qach_head *prev, const uint8_t *sk,
		 char *buf, size_t len);

/* Reads the chain's head from the end of the file open at fd (which the
 * caller has locked): seq and hash of its last line. An empty file gives
 * *ret = *carry when carry is not NULL (a file just rotated: the chain
 * goes on from the previous file), else seq 0. A last line without chain
 * fields (a log from before the chain, or a torn write) gives its hash
 * and seq carry->seq or 0: the next line links to it, and verification
 * names it. *ret_needs_nl is set when the file does not end in '\n'.
 * Returns 0, -EFBIG (the last line is longer than QACH_LINE_MAX) or
 * -errno. */
int qach_tail(int fd, const struct qach_head *carry, struct qach_head *ret, bool *ret_needs_nl);

/* ---- verification ------------------------------------------------------ */

/* The outcome of qach_verify_files(). */
struct qach_report {
	uint64_t lines;	       /* lines checked, all files */
	uint64_t signed_lines; /* of which signed with a key given */
	uint64_t first_seq;    /* seq of the first line; > 1: the files continue
				  an earlier file, which was not given */
	struct qach_head last; /* the chain's head after the last line */
	/* The first fault (when the call returns -QUAI_ECORRUPT): the file
	 * index, its 1-based line number, and what is wrong, in words. */
	size_t bad_file;
	uint64_t bad_line;
	char what[512];
};

/* Checks the chain through the files in order (rotated files first, as
 * they were written), each line against the one before. keys: npk public
 * keys (QACH_PK_BYTES each); every signed line must verify with one of
 * them, and with require_sig every line must be signed. Returns 0 when the
 * chain holds; -QUAI_ECORRUPT with ret->bad_* and ret->what naming the
 * first line changed, deleted, inserted or cut; -errno (a file unreadable,
 * with ret->bad_file and what). */
int qach_verify_files(const char *const *paths, size_t npaths, const uint8_t *keys, size_t npk,
		      bool require_sig, struct qach_report *ret);

/* The same over one buffer as one file (for tests and the fuzz harness). */
int qach_verify_buf(const char *data, size_t len, const uint8_t *keys, size_t npk, bool require_sig,
		    struct qach_report *ret);

#endif /* QUAI_STAGER_AUDITCHAIN_H */
