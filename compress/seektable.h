/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The seek table of the Zstandard seekable format: a skippable frame at the
 * end of a shard listing every frame's compressed and raw size and the low
 * 32 bits of the XXH64 of its raw bytes. Pure encode/decode over caller
 * buffers (docs/FORMAT.md, "Shard files").
 */
#ifndef QUAI_COMPRESS_SEEKTABLE_H
#define QUAI_COMPRESS_SEEKTABLE_H

#include <stddef.h>
#include <stdint.h>

#define QST_SKIPPABLE_MAGIC 0x184D2A5Eu
#define QST_SEEKABLE_MAGIC 0x8F92EAB1u
#define QST_HEADER_SIZE 8	  /* skippable magic + frame size */
#define QST_FOOTER_SIZE 9	  /* frame count + descriptor + magic */
#define QST_MAX_FRAMES 0x8000000u /* the reference implementation's limit */
#define QST_MAX_FRAME_RSIZE 0x40000000u
#define QST_CHECKSUM_FLAG 0x80u

struct qst_entry {
	uint32_t csize;
	uint32_t rsize;
	uint32_t checksum; /* low 32 bits of XXH64(raw, seed 0); 0 if absent */
};

/* Bytes of an encoded seek table with `nframes` entries, checksums
 * included. */
size_t qst_encoded_size(uint32_t nframes);

/* Encodes `n` entries (with checksums) into dst. Returns the bytes written,
 * -EINVAL when n > QST_MAX_FRAMES, -ENOSPC when cap is too small. */
int64_t qst_encode(const struct qst_entry *entries, uint32_t n, void *dst, size_t cap);

/* Reads the 9-byte footer at the end of a shard. On success writes the
 * frame count, whether entries carry checksums, and the total size of the
 * seek table frame (header to footer) to the ret_* parameters. Returns 0 or
 * -QUAI_EFORMAT (bad magic, reserved bits set, too many frames). */
int qst_parse_footer(const void *footer, uint32_t *ret_nframes, int *ret_checksums,
		     uint64_t *ret_table_size);

/* Decodes a whole seek table frame of `len` bytes. Writes at most
 * max_entries entries; the frame count must equal max_entries' caller
 * expectation, so pass the count from qst_parse_footer(). Returns the
 * frame count or -QUAI_EFORMAT (the skippable header, the frame size field,
 * the footer or an entry is inconsistent) or -ENOSPC (max_entries too
 * small). Entries without checksums get checksum 0 and *ret_checksums 0. */
int64_t qst_decode(const void *buf, size_t len, struct qst_entry *entries, uint32_t max_entries,
		   int *ret_checksums);

#endif /* QUAI_COMPRESS_SEEKTABLE_H */
