/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The record index of a shard (shard-NNNNN.idx, docs/FORMAT.md): the frame
 * table (where each frame starts, its sizes, records and XXH64), the end
 * offset of each record inside its frame when records vary in size, and the
 * records' relative names for files datasets. Pure encode/decode: the
 * parser validates every field against the others so that a reader can
 * trust any lookup it answers.
 */
#ifndef QUAI_COMPRESS_SHARDINDEX_H
#define QUAI_COMPRESS_SHARDINDEX_H

#include <stddef.h>
#include <stdint.h>

#define QIX_MAGIC "QUAIIDX" /* 8 bytes with its NUL */
#define QIX_VERSION 1u
#define QIX_HEADER_SIZE 64u
#define QIX_FRAME_SIZE 40u
#define QIX_TRAILER_SIZE 8u

#define QIX_F_RECORD_TABLE 0x1u /* per-record end offsets follow the frames */
#define QIX_F_NAMES 0x2u	/* record names follow */
#define QIX_F_KNOWN (QIX_F_RECORD_TABLE | QIX_F_NAMES)

struct qix_frame {
	uint64_t c_offset; /* in the shard file */
	uint64_t r_offset; /* in the shard's raw stream (derived) */
	uint32_t c_size;
	uint32_t r_size;
	uint32_t first_record; /* relative to the shard */
	uint32_t records;
	uint64_t c_xxh3; /* XXH3-64 of the frame's compressed bytes */
	uint64_t xxh64;	 /* XXH64(raw, 0); its low 32 bits are the seek
			    table's checksum */
};

/* A parsed index. Points into the buffer it was parsed from, which must
 * outlive it; `frames` is its own allocation. */
struct qix {
	uint32_t version;
	uint32_t flags;
	uint64_t records;
	uint32_t nframes;
	uint32_t fixed_size;   /* 0 unless every record has this size */
	uint64_t first_record; /* global id of the shard's first record */
	uint64_t raw_bytes;
	uint64_t shard_bytes; /* size of the .zst file */
	uint64_t names_bytes;
	struct qix_frame *frames;
	const uint8_t *record_ends; /* records x u32, or NULL */
	const uint8_t *name_ends;   /* records x u64, or NULL */
	const uint8_t *names;
};

/* Parses and validates an index of `len` bytes: magic, version, checksum,
 * sizes, frame layout (contiguous from offset 0, ending where the seek
 * table of nframes entries begins), record counts and offsets, and names
 * (safe relative paths: no leading '/', no empty, "." or ".." component, no
 * NUL, at most QUAI_RECORD_NAME_MAX bytes). Returns 0, -QUAI_EFORMAT,
 * -QUAI_ECORRUPT (checksum), -QUAI_EVERSION, or -ENOMEM. */
int qix_parse(const void *buf, size_t len, struct qix *ret_ix);
void qix_release(struct qix *ix);

/* Finds the frame holding shard-relative record `rec` and the record's
 * place in the frame's raw bytes. `rec` must be < ix->records. */
void qix_locate(const struct qix *ix, uint64_t rec, uint32_t *ret_frame, uint32_t *ret_offset,
		uint32_t *ret_length);

/* The name of shard-relative record `rec` (not NUL-terminated), or NULL
 * when the index holds no names. */
const char *qix_name(const struct qix *ix, uint64_t rec, size_t *ret_len);

/* Builds an index while a shard is written. Zero-initialise, add frames and
 * records in order, then finish. */
struct qix_builder {
	uint8_t *frames; /* encoded frame table */
	size_t frames_len, frames_cap;
	uint8_t *ends; /* encoded record ends (u32 each) */
	size_t ends_len, ends_cap;
	uint8_t *name_ends; /* encoded name ends (u64 each) */
	size_t name_ends_len, name_ends_cap;
	char *names;
	size_t names_len, names_cap;
	uint32_t nframes;
	uint64_t records;
	uint64_t raw_bytes;
	uint64_t c_offset;
	int err; /* sticky -ENOMEM */
};

/* Appends the end offset (inside the current frame) of one record, and its
 * name when `name` is not NULL. Call for the records of a frame before
 * qix_builder_frame() for that frame. */
void qix_builder_record(struct qix_builder *b, uint32_t end, const char *name, size_t name_len);
/* Closes a frame of `records` records. */
void qix_builder_frame(struct qix_builder *b, uint32_t c_size, uint32_t r_size, uint32_t records,
		       uint64_t c_xxh3, uint64_t xxh64);
/* Encodes the index into a new buffer (*ret_buf, freed by the caller).
 * flags says which optional tables to write. Returns 0 or -ENOMEM. */
int qix_builder_finish(struct qix_builder *b, uint32_t flags, uint32_t fixed_size,
		       uint64_t first_record, uint64_t shard_bytes, uint8_t **ret_buf,
		       size_t *ret_len);
/* Frees the builder's memory and zeroes it for reuse. */
void qix_builder_reset(struct qix_builder *b);

/* Checks that `name` is a safe relative record name (see qix_parse).
 * Returns 0 or -QUAI_EFORMAT. */
int qix_check_name(const char *name, size_t len);

#endif /* QUAI_COMPRESS_SHARDINDEX_H */
