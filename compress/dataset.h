/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The open dataset, as the rest of the library sees it: the manifest, every
 * shard's parsed index, and frame-level access for the readers, verify and
 * the staging engine.
 */
#ifndef QUAI_COMPRESS_DATASET_H
#define QUAI_COMPRESS_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zstd.h>

#include "manifest.h"
#include "quai/quai.h"
#include "shardindex.h"

struct quai_dataset {
	char *path;
	int dirfd;
	struct qmf m;
	struct qix *ix;	 /* one per shard */
	uint8_t **ixbuf; /* the index files, which ix points into */
	uint32_t max_frame_rsize;
	uint32_t max_frame_csize;
	uint64_t *frame_base; /* global id of each shard's first frame */
};

/* A dataset known by its manifest only (a remote one's, for quai info):
 * info and shard work; locate, record_name and readers return -ENODATA.
 * Returns 0, or what qmf_parse() returns, with err "manifest.json: ...". */
int qds_from_manifest(const char *text, size_t len, quai_dataset **ret_ds, char *err,
		      size_t err_len);

/* Global frames number every frame of the dataset, shard after shard.
 * Finds the shard and the frame inside it of global frame g
 * (< ds->m.frames). */
void qds_frame_at(const struct quai_dataset *ds, uint64_t g, uint32_t *ret_shard,
		  uint32_t *ret_frame);

/* The raw offset and length of record `index` of global frame g. */
void qds_record_in_frame(const struct quai_dataset *ds, uint64_t g, uint32_t index,
			 uint32_t *ret_offset, uint32_t *ret_length);

/* Finds the shard holding global record `rec` (< records). */
uint32_t qds_shard_of(const struct quai_dataset *ds, uint64_t rec);

/* Reads, checks (checksum, format, agreement with the manifest) and parses
 * the index of shard i. On success *ret_buf holds the file (freed by the
 * caller after qix_release()). On failure err names the file and fault. */
int qds_load_index(int dirfd, const struct qmf *m, uint32_t i, uint8_t **ret_buf,
		   struct qix *ret_ix, char *err, size_t err_len);

/* quai_dataset_open(), and for a dataset quaid serves (served), a path
 * whose last component, the dataset directory, is not a symbolic link:
 * -ELOOP (err says so) otherwise. */
int qds_open(const char *path, bool served, quai_dataset **ret_ds, char *err, size_t err_len);

/* The rule of a dataset's files (docs/SECURITY.md): each shard and index
 * the manifest names is a regular file of dirfd itself, not a symbolic
 * link (to another dataset's shards) nor a FIFO or device. A missing file
 * passes (its opener reports it). Returns 0, or -ELOOP / -QFS_ENOTREG /
 * -errno with err naming the file. quai_dataset_open(), quaid's catalog
 * and every quaid request that reads a manifest ask it. */
int qds_check_files(int dirfd, const struct qmf *m, char *err, size_t err_len);

/* Reads the manifest of the dataset directory `path` (relative to atfd, a
 * root or AT_FDCWD) as quaid serves it: the directory not a link
 * (qfs_open_dataset_dir()), the manifest parsed, qds_check_files() passed.
 * On success *ret_mf (qmf_release() it) and, when ret_text is given, the
 * text (free() it). Returns 0 or -errno / -QUAI_EFORMAT with err naming
 * the file and the fault. */
int qds_read_manifest(int atfd, const char *path, struct qmf *ret_mf, uint8_t **ret_text,
		      size_t *ret_len, char *err, size_t err_len);

/* Opens a shard file of the dataset read-only: beneath its directory, no
 * link followed, a regular file (qfs_open_member()). Returns an fd or
 * -errno (-ELOOP, -QFS_ENOTREG: qfs_member_strerror() says which). */
int qds_open_shard(const struct quai_dataset *ds, uint32_t shard, int flags);

/* Decodes one frame whose compressed bytes are in `src` (f->c_size bytes)
 * into dst (at least f->r_size bytes), and checks the decoded size and the
 * frame's XXH64. Returns 0, or -QUAI_ECORRUPT when the bytes do not decode
 * to exactly what the index promises. */
int qds_decode_frame(ZSTD_DCtx *dctx, const struct qix_frame *f, const void *src, void *dst);

/* One piece of a stored frame's raw bytes: raw bytes [raw_off, raw_off +
 * len) of the frame are the frame's bytes [src_off, src_off + len). */
struct qds_seg {
	uint32_t raw_off;
	uint32_t src_off;
	uint32_t len;
};

/* As qds_decode_frame, with one shortcut: when every block of the frame is
 * stored raw (Zstandard's choice for incompressible data), the raw bytes
 * already lie in src, block after block, and are not copied. Then
 * segs[0..*ret_nsegs) say where they are, *ret_nsegs > 0, and dst is not
 * touched. Otherwise (or when the frame has more than `cap` blocks, or cap
 * is 0) the frame is decoded into dst and *ret_nsegs is 0. XXH3 of the
 * compressed bytes is checked first, always. A decoded frame's raw bytes
 * are checked against XXH64 too. A stored frame's raw bytes are part of
 * the compressed bytes XXH3 has just covered: their XXH64 (and the frame's
 * content checksum) is checked only with QDS_MAP_CHECK_RAW, which `quai
 * verify` passes to catch a writer that stored other bytes than it hashed.
 * Returns 0 or -QUAI_ECORRUPT. */
int qds_decode_frame_map(ZSTD_DCtx *dctx, const struct qix_frame *f, const void *src, void *dst,
			 struct qds_seg *segs, uint32_t cap, unsigned flags, uint32_t *ret_nsegs);
#define QDS_MAP_CHECK_RAW 0x1u /* a stored frame's XXH64 as well */

/* When every block of the Zstandard frame at `frame` (c bytes) is raw,
 * fills segs with where its r raw bytes lie and returns how many pieces
 * there are, and sets *ret_checksum_at to where the frame's 4-byte content
 * checksum is (0: it has none; the caller checks it). Returns 0 when the
 * frame has another kind of block, a dictionary, more than cap blocks, a
 * block over its size limit, or is not exactly c bytes holding r raw bytes,
 * or is malformed in any way: such frames are libzstd's to decode or
 * reject. Reads nothing outside frame[0..c). */
uint32_t qds_stored_segments(const void *frame, uint64_t c, uint64_t r, struct qds_seg *segs,
			     uint32_t cap, uint64_t *ret_checksum_at);

/* The number of blocks a stored frame of f->r_size raw bytes has when its
 * blocks are full (Zstandard's largest, 128 KiB), plus one: a good `cap`;
 * 0 when the frame cannot be stored raw (it is no larger than its raw
 * bytes), which qds_decode_frame_map() then decodes without looking. */
uint32_t qds_stored_blocks_hint(const struct qix_frame *f);

/* quai_pack() and quai_unpack() without the host's decision on sensitive
 * data (stager/site/local.c makes it, then calls these; compress/ cannot
 * read the host's configuration). Same contracts. */
int qpk_pack(const char *const *srcs, size_t nsrcs, const char *dest,
	     const struct quai_pack_opts *opts, struct quai_pack_result *ret_result, char *err,
	     size_t err_len);
int qds_unpack(const char *path, const char *dest, char *err, size_t err_len);

#endif
