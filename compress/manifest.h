/* SPDX-License-Identifier: Apache-2.0 */
/*
 * manifest.json: the dataset's description and the root of its checksums
 * (docs/FORMAT.md, "The manifest"). Pure encode/parse over memory.
 */
#ifndef QUAI_COMPRESS_MANIFEST_H
#define QUAI_COMPRESS_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "quai/quai.h"

#define QMF_FORMAT_NAME "quai-dataset"
#define QMF_VERSION 1u
#define QMF_CHECKSUM_KEY "\"manifest_xxh3\""
#define QMF_MAX_BYTES (64u << 20)
#define QMF_MAX_SHARDS 1000000u
#define QMF_SHARD_NAME_LEN 24

struct qmf_shard {
	char file[QMF_SHARD_NAME_LEN];	/* shard-NNNNN.zst */
	char index[QMF_SHARD_NAME_LEN]; /* shard-NNNNN.idx */
	uint64_t first_record;
	uint64_t records;
	uint64_t raw_bytes;
	uint64_t compressed_bytes;
	uint64_t index_bytes;
	uint32_t frames;
	uint64_t xxh3;	     /* of the whole shard file */
	uint64_t index_xxh3; /* of the whole index file */
};

struct qmf {
	uint32_t format_version;
	char name[QUAI_NAME_MAX + 1];
	int kind;
	uint32_t fixed_size;
	uint64_t records;
	uint64_t raw_bytes;
	uint64_t compressed_bytes;
	uint64_t frames;
	int classification;
	char zone[QUAI_ZONE_MAX + 1];
	char created[40];
	char creator[64];
	int level;
	uint32_t frame_size;
	uint64_t shard_size;
	uint32_t nshards;
	struct qmf_shard *shards;
	uint64_t checksum; /* set by qmf_parse and qmf_encode */
};

/* Fills the canonical file names of shard i. */
void qmf_shard_names(struct qmf_shard *s, uint32_t i);

/* Checks a dataset name: 1..QUAI_NAME_MAX bytes, no '/', no control
 * characters, not "." or "..". Returns 0 or -EINVAL. */
int qmf_check_name(const char *name);

/* Serialises m (the checksum is computed and written, and stored in
 * m->checksum). *ret_text is NUL-terminated, freed by the caller.
 * Returns 0 or -ENOMEM. */
int qmf_encode(struct qmf *m, char **ret_text, size_t *ret_len);

/* Parses and validates a manifest: JSON syntax, the checksum, every
 * required member and its type, the limits of the format, and the sums
 * (records, bytes, frames) and record ranges of the shards against the
 * totals. On failure writes a message naming the member or the byte offset
 * at fault to err. Returns 0, -QUAI_EFORMAT, -QUAI_ECORRUPT (checksum),
 * -QUAI_EVERSION, -ENOMEM. */
int qmf_parse(const char *text, size_t len, struct qmf *ret_m, char *err, size_t err_len);

void qmf_release(struct qmf *m);

#endif /* QUAI_COMPRESS_MANIFEST_H */
