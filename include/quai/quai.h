/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quai — stage training datasets from parallel storage into pinned memory.
 *
 * This is the only installed header. Conventions, as in liburing and systemd:
 *   - every function returning int returns >= 0 on success (zero or a count)
 *     and a negative error code on failure: -errno, or -QUAI_E* for errors
 *     that are quai's own; quai_strerror() names them all;
 *   - output parameters (ret_*) are written only on success;
 *   - destructors accept NULL;
 *   - option structs begin with their own size, so they can grow: set
 *     `.size = sizeof(struct ...)` and zero what you do not use.
 *
 * Thread-safety: unless a declaration says otherwise, an object may be used
 * by one thread at a time; distinct objects are independent.
 *
 * The process environment: the first quai:// stream or remote call of a
 * process loads libfabric, and sets FI_OFI_RXM_MSG_RX_SIZE=256 (setenv)
 * just before, unless the environment already sets it: libfabric's ofi_rxm
 * over tcp would post 64 MiB of receive buffers otherwise. A program that
 * changes its environment from other threads at that moment should set
 * the variable itself, before.
 */
#ifndef QUAI_QUAI_H
#define QUAI_QUAI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(QUAI_BUILDING_LIBRARY)
#define QUAI_API __attribute__((visibility("default")))
#else
#define QUAI_API
#endif

#define QUAI_VERSION_MAJOR 0
#define QUAI_VERSION_MINOR 1
#define QUAI_VERSION_PATCH 0

/* The version of the library actually linked, as "MAJOR.MINOR.PATCH". */
QUAI_API const char *quai_version(void);

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */

/* quai's own error codes live above the errno range; functions return them
 * negated, like -errno. */
enum quai_error {
	QUAI_EBASE = 4096,
	QUAI_ECORRUPT,	/* stored bytes fail their checksum or do not decode */
	QUAI_EFORMAT,	/* a file is not in the format, or violates a limit of it */
	QUAI_EVERSION,	/* a format or protocol version this build does not know */
	QUAI_EPOLICY,	/* refused by the site's data policy */
	QUAI_EINPUT,	/* the input to pack does not fit the chosen record kind */
	QUAI_EEXISTS,	/* the destination already exists; quai never overwrites */
	QUAI_ECOMPRESS, /* the zstd library failed (e.g. out of memory) */
	QUAI_EEND,	/* not an error: the end of a sequence was reached */
	QUAI_ELAST,
};

/* A static, human-readable message for a code returned by any quai function
 * (negative or positive, errno or quai's own). Never NULL. Thread-safe. */
QUAI_API const char *quai_strerror(int err);

/* ------------------------------------------------------------------------
 * Datasets: the on-disk format (docs/FORMAT.md)
 * ------------------------------------------------------------------------ */

enum quai_record_kind {
	QUAI_RECORDS_FILES = 1, /* one file per record; relative names kept */
	QUAI_RECORDS_LINES = 2, /* one line per record, '\n' included */
	QUAI_RECORDS_FIXED = 3, /* records of a fixed number of bytes */
};

/* Classifications start at 1 so that 0 in an options struct means "the
 * default" (internal). */
enum quai_class {
	QUAI_CLASS_PUBLIC = 1,
	QUAI_CLASS_INTERNAL = 2,
	QUAI_CLASS_SENSITIVE = 3,
};

/* "files", "lines", "fixed"; "public", "internal", "sensitive". NULL when
 * the value is out of range. */
QUAI_API const char *quai_record_kind_name(int kind);
QUAI_API const char *quai_class_name(int cls);
/* Parses a classification name; returns the enum value or -EINVAL. */
QUAI_API int quai_class_parse(const char *name);

/* Residency zone labels: 1..63 bytes of [A-Za-z0-9._-], not "." or "..". */
#define QUAI_ZONE_MAX 63
/* Returns 0 when `zone` is a valid label, -EINVAL otherwise. */
QUAI_API int quai_zone_check(const char *zone);

/* The host's default residency zone: the `zone` key of the host
 * configuration file ($QUAI_CONF, else /etc/quai/quai.conf), or "none" when
 * the file or the key is absent. Writes a NUL-terminated label to buf.
 * Returns 0; -QUAI_EFORMAT when the file exists but is malformed or the zone
 * is not a valid label (err_msg, if given, then names the file, line and
 * fault); -EACCES or another errno when it cannot be read; -ERANGE when
 * len is too small. */
QUAI_API int quai_host_zone(char *buf, size_t len, char *err_msg, size_t err_msg_len);

/* Format limits, enforced by the writer and checked by every reader. */
#define QUAI_FRAME_SIZE_MIN (4u << 10)	 /* 4 KiB */
#define QUAI_FRAME_SIZE_MAX (256u << 20) /* 256 MiB */
#define QUAI_RECORD_SIZE_MAX (1u << 30)	 /* 1 GiB: one record, one frame */
#define QUAI_SHARD_SIZE_MIN (4u << 10)	 /* 4 KiB */
#define QUAI_NAME_MAX 255		 /* dataset name, bytes */
#define QUAI_RECORD_NAME_MAX 4095	 /* relative name of a files record */

/* ------------------------------------------------------------------------
 * Packing
 * ------------------------------------------------------------------------ */

struct quai_pack_progress {
	uint64_t bytes_in;    /* raw bytes consumed so far */
	uint64_t bytes_total; /* raw bytes expected, 0 when unknown (stdin) */
	uint64_t bytes_out;   /* compressed bytes written so far */
	uint64_t records;     /* records packed so far */
	uint32_t shards;      /* shards completed so far */
};

/* Called from the packing thread at most every 100 ms and once at the end.
 * Return 0 to go on; a non-zero value cancels the pack, which then returns
 * -ECANCELED and leaves nothing behind. */
typedef int (*quai_pack_progress_fn)(const struct quai_pack_progress *p, void *arg);

struct quai_pack_opts {
	size_t size;	     /* sizeof(struct quai_pack_opts) */
	int kind;	     /* enum quai_record_kind; 0 means files */
	uint32_t fixed_size; /* record size for QUAI_RECORDS_FIXED */
	int level;	     /* zstd level; 0 means 3 */
	uint32_t frame_size; /* target raw bytes per frame; 0 means 2 MiB */
	uint64_t shard_size; /* target compressed bytes per shard; 0: 1 GiB */
	unsigned threads;    /* compression threads; 0 means online cores */
	int classification;  /* enum quai_class; 0 means internal */
	const char *zone;    /* residency zone; NULL: "none" */
	const char *name;    /* dataset name; NULL: DEST's last component */
	const char *created; /* RFC 3339 UTC creation time; NULL: now, or
				$SOURCE_DATE_EPOCH when set */
	quai_pack_progress_fn progress;
	void *progress_arg;
};

struct quai_pack_result {
	uint64_t records;
	uint64_t raw_bytes;
	uint64_t compressed_bytes; /* shard files only */
	uint32_t shards;
	uint64_t frames;
};

/* Packs the sources into a new dataset directory `dest`.
 *
 * srcs: for files, directories (walked recursively, regular files only) or
 * single files; for lines and fixed, files, or "-" for standard input.
 * The dataset appears at `dest` whole or not at all: everything is written
 * under a temporary name beside it, fsynced and renamed into place. A
 * temporary left by an interrupted pack of the same `dest` is removed first.
 * Output is byte-identical for the same input and options, whatever
 * `threads` is.
 *
 * err, when not NULL, receives on failure a one-line message naming what
 * failed and where (e.g. "'in.bin': 1000 bytes is not a multiple of the
 * record size 512"), NUL-terminated and truncated to err_len; without a
 * known detail it holds quai_strerror() of the code.
 *
 * A sensitive dataset (classification QUAI_CLASS_SENSITIVE) is packed only
 * on a host of its zone, with `dest` under one of the host's sovereign
 * paths (docs/SECURITY.md); the decision, granted or refused, goes to the
 * host's audit log (op "pack").
 *
 * Returns 0, or: -QUAI_EEXISTS (dest exists), -ENOENT/-EACCES/... (a source),
 * -QUAI_EINPUT (empty input, fixed input not a multiple of the record size,
 * a record over QUAI_RECORD_SIZE_MAX, duplicate record names, a name that
 * does not fit), -EINVAL (options), -ENOSPC and other write errors,
 * -ECANCELED (the progress callback cancelled), -QUAI_EPOLICY (sensitive
 * data outside its zone or its sovereign paths; err says which and why).
 */
QUAI_API int quai_pack(const char *const *srcs, size_t nsrcs, const char *dest,
		       const struct quai_pack_opts *opts, struct quai_pack_result *ret_result,
		       char *err, size_t err_len);

/* ------------------------------------------------------------------------
 * Reading a dataset
 * ------------------------------------------------------------------------ */

typedef struct quai_dataset quai_dataset;

struct quai_dataset_info {
	size_t size; /* the caller sets sizeof(struct quai_dataset_info) */
	uint32_t format_version;
	const char *name;    /* valid while the dataset is open */
	int kind;	     /* enum quai_record_kind */
	uint32_t fixed_size; /* for QUAI_RECORDS_FIXED, else 0 */
	int classification;  /* enum quai_class */
	const char *zone;
	uint64_t records;
	uint64_t raw_bytes;
	uint64_t compressed_bytes;
	uint32_t shards;
	uint64_t frames;
	int level; /* creation parameters */
	uint32_t frame_size;
	uint64_t shard_size;
	const char *created;	       /* RFC 3339 UTC, or "" */
	const char *manifest_checksum; /* 16 hex digits */
};

struct quai_shard_info {
	size_t size;	  /* sizeof(struct quai_shard_info) */
	const char *file; /* file name inside the dataset directory */
	const char *index_file;
	uint64_t first_record;
	uint64_t records;
	uint64_t raw_bytes;
	uint64_t compressed_bytes;
	uint64_t index_bytes;
	uint32_t frames;
	uint64_t checksum; /* XXH3-64 of the shard file */
	uint64_t index_checksum;
};

/* Opens the dataset directory `path`: reads and checks the manifest (its
 * checksum, every size and count against the format's limits) and every
 * shard's record index (its checksum, its agreement with the manifest).
 * Shard data is not read until records are. Returns 0, -ENOENT, -EACCES,
 * -QUAI_EFORMAT (not a dataset or inconsistent), -QUAI_ECORRUPT (a checksum
 * fails), -QUAI_EVERSION (a newer format), -ENOMEM. err as in quai_pack()
 * (e.g. "manifest.json: shards[3]: \"records\" is missing").
 * A quai_dataset is immutable once open and may be shared between threads;
 * readers (below) are per thread. */
QUAI_API int quai_dataset_open(const char *path, quai_dataset **ret_ds, char *err, size_t err_len);
QUAI_API void quai_dataset_close(quai_dataset *ds);

/* Fills `info` (info->size must be set). The strings stay valid until
 * quai_dataset_close(). Returns 0 or -EINVAL. */
QUAI_API int quai_dataset_info(const quai_dataset *ds, struct quai_dataset_info *info);

/* Fills `info` for shard `shard` (0-based). Returns 0 or -EINVAL. */
QUAI_API int quai_dataset_shard(const quai_dataset *ds, uint32_t shard,
				struct quai_shard_info *info);

/* Where record `record` lives. */
struct quai_record_loc {
	uint32_t shard;
	uint32_t frame;	       /* frame number inside the shard */
	uint64_t frame_offset; /* byte offset of the frame in the shard file */
	uint32_t frame_csize;  /* compressed size of the frame */
	uint32_t frame_rsize;  /* raw (decompressed) size of the frame */
	uint32_t offset;       /* raw offset of the record inside its frame */
	uint32_t length;       /* raw size of the record */
};

/* Locates a record without reading shard data. Returns 0, or -ERANGE when
 * record >= the record count. Thread-safe. */
QUAI_API int quai_dataset_locate(const quai_dataset *ds, uint64_t record,
				 struct quai_record_loc *ret_loc);

/* The relative name of a record of a files dataset, not NUL-terminated:
 * *ret_name points into the dataset and stays valid until close. Returns 0,
 * -ERANGE, or -ENOENT when the dataset's records have no names. Thread-safe. */
QUAI_API int quai_dataset_record_name(const quai_dataset *ds, uint64_t record,
				      const char **ret_name, size_t *ret_len);

/* A reader decodes frames, one at a time, into a buffer it owns. */
typedef struct quai_reader quai_reader;

/* Returns 0 or -ENOMEM. The dataset must outlive the reader. A sensitive
 * dataset's reader keeps its frames, and its decompression context, in
 * locked memory, out of core dumps, zeroed when freed: -QUAI_EPOLICY when
 * RLIMIT_MEMLOCK does not allow it (about twice the dataset's largest
 * frame, and 96 KiB). */
QUAI_API int quai_reader_new(quai_dataset *ds, quai_reader **ret_reader);

/* The host's decision before a program holds a local dataset's records
 * itself (what quaid's policy is to remote access): for a sensitive
 * dataset, this host must be of the dataset's zone (`zone` in the host
 * configuration, $QUAI_CONF or /etc/quai/quai.conf), and `dest`, where the
 * program will write the records (NULL: nowhere on disk), must lie under
 * one of the host's sovereign_paths. The decision, granted or refused, is
 * one line in the host's audit log (its `audit_log`; event "local",
 * operation `op`, e.g. "read", "cat"), for every classification; a granted
 * access whose line cannot be written is refused (nothing is read
 * unaudited). Readers (quai_reader_new) hand out records without asking:
 * a program asks here first, as `quai cat` and the Python Dataset do;
 * quai_unpack(), quai_pack() and streams ask on their own. Returns 0, or
 * -QUAI_EPOLICY (err names the rule, sovereign:zone or sovereign:paths, and
 * what would satisfy it), or the audit log's error. */
QUAI_API int quai_dataset_allow(const quai_dataset *ds, const char *op, const char *dest, char *err,
				size_t err_len);
QUAI_API void quai_reader_free(quai_reader *r);

/* Reads record `record`: decodes its frame (unless it is the frame decoded
 * last), verifies the frame's checksums, and points *ret_data at the record
 * inside the reader's buffer, valid until the next call on this reader.
 * Returns 0, -ERANGE, -QUAI_ECORRUPT (the frame fails its checksum or does
 * not decode: nothing of it is handed out), or a read error (-EIO...). */
QUAI_API int quai_reader_record(quai_reader *r, uint64_t record, const void **ret_data,
				size_t *ret_len);

/* Like quai_reader_record(), for a run of records: points *ret_data at the
 * raw bytes of records [record, record + *ret_count), back to back
 * (*ret_len bytes), where *ret_count is at least 1, at most `max`, and ends
 * no later than the frame holding `record` (the records of a frame are
 * contiguous). Valid until the next call on this reader. Returns 0,
 * -ERANGE (record out of range, or max 0), or as quai_reader_record(). */
QUAI_API int quai_reader_records(quai_reader *r, uint64_t record, uint64_t max,
				 const void **ret_data, size_t *ret_len, uint64_t *ret_count);

/* ------------------------------------------------------------------------
 * Verifying
 * ------------------------------------------------------------------------ */

/* One bad place found by quai_verify(). */
struct quai_verify_problem {
	int error;	       /* -QUAI_ECORRUPT, -QUAI_EFORMAT, -EIO... */
	const char *file;      /* manifest.json, a shard or an index file */
	int64_t shard;	       /* -1 when not about one shard */
	int64_t frame;	       /* -1 when not about one frame */
	uint64_t first_record; /* the records affected: [first, first+count) */
	uint64_t record_count;
	const char *what; /* a short description of the check that failed */
};

typedef void (*quai_verify_problem_fn)(const struct quai_verify_problem *p, void *arg);

struct quai_verify_progress {
	uint64_t bytes_done; /* compressed bytes checked */
	uint64_t bytes_total;
	uint64_t frames_done;
	uint64_t frames_bad;
};
/* Called from the thread that called quai_verify(), about every 100 ms,
 * never at the same time as the problem callback. Return 0 to go on; a
 * non-zero value stops the check, which then returns -ECANCELED. */
typedef int (*quai_verify_progress_fn)(const struct quai_verify_progress *p, void *arg);

struct quai_verify_opts {
	size_t size;			/* sizeof(struct quai_verify_opts) */
	unsigned threads;		/* 0 means online cores */
	quai_verify_problem_fn problem; /* may be NULL; called in order of
					   (shard, frame), from one thread */
	void *problem_arg;
	quai_verify_progress_fn progress; /* may be NULL */
	void *progress_arg;
	unsigned flags; /* QUAI_VERIFY_* */
};

/* Check a copy: the manifest, every index, each shard's size and seek
 * table, and each shard file whole against the XXH3 the manifest records
 * for it, without decoding frames. A copy that passes holds exactly the
 * bytes of the dataset it was copied from; what a full check adds is that
 * those bytes decode (quai pull checks copies this way; quaid checks pushes
 * in full). */
#define QUAI_VERIFY_FILES 0x1u

struct quai_verify_result {
	uint64_t frames; /* frames checked */
	uint64_t bad_frames;
	uint64_t bad_files; /* shards or indexes with a file-level fault */
	uint64_t raw_bytes; /* bytes decoded */
	uint64_t compressed_bytes;
};

/* Checks a dataset whole: the manifest and its checksum, every index, every
 * shard file's checksum and layout, and every frame (decoded, its checksums
 * compared). Reports each problem through opts->problem.
 * Returns 0 when everything is sound; -QUAI_ECORRUPT or -QUAI_EFORMAT when
 * a problem was found (ret_result, if given, is filled in either case);
 * other negative codes when the check itself could not run: -QUAI_EPOLICY
 * when the dataset is sensitive and its bytes cannot be read into locked
 * memory (RLIMIT_MEMLOCK: a few MiB per thread). It does not ask
 * quai_dataset_allow() (`quai verify` does, op "verify"). */
QUAI_API int quai_verify(const char *path, const struct quai_verify_opts *opts,
			 struct quai_verify_result *ret_result);

/* ------------------------------------------------------------------------
 * Unpacking
 * ------------------------------------------------------------------------ */

/* Restores the dataset's input at `dest`: for files, a directory holding
 * every record under its relative name; for lines and fixed, one file
 * holding the records concatenated (the sources as `cat` would join them).
 * Every frame is verified before its bytes are written. Like pack, the
 * result appears whole or not at all (temporary name, fsync, rename).
 * The host decides first, as quai_dataset_allow() with op "unpack": a
 * sensitive dataset is restored only on a host of its zone, under one of
 * its sovereign paths. Returns 0, -QUAI_EEXISTS, -QUAI_ECORRUPT,
 * -QUAI_EPOLICY, or a write error. err as in quai_pack(). */
QUAI_API int quai_unpack(const char *path, const char *dest, char *err, size_t err_len);

/* ------------------------------------------------------------------------
 * Staging: contexts, streams and batches (docs/STAGING.md)
 * ------------------------------------------------------------------------ */

/* A context owns the pinned pool every batch lives in and the worker
 * threads that decompress frames and assemble batches. Streams opened on it
 * share both. All quai_ctx_* functions are thread-safe. A context and its
 * streams do not survive fork(): the pool is not inherited (MADV_DONTFORK)
 * and neither are the threads, so a child process opens its own. */
typedef struct quai_ctx quai_ctx;

enum quai_gpu {
	QUAI_GPU_AUTO = 0, /* register the pool with the GPU runtime this build
			      has (HIP, CUDA) when a device is found */
	QUAI_GPU_NONE = 1, /* host-pinned only */
	QUAI_GPU_HIP = 2,  /* hipHostRegister, or fail */
	QUAI_GPU_CUDA = 3, /* cudaHostRegister, or fail */
};

#define QUAI_CTX_NO_HUGEPAGES 0x1u /* plain pages for the pool */
#define QUAI_CTX_NO_DIRECT 0x2u	   /* buffered reads even where O_DIRECT works */
#define QUAI_CTX_SQPOLL 0x4u	   /* io_uring kernel submission polling */
#define QUAI_CTX_UNLOCKED_OK 0x8u  /* go on if the pool cannot be mlocked */
/* Lock the pool's pages as they are first touched, and touch none when the
 * context is made (mlock2 MLOCK_ONFAULT). By default every page is
 * faulted in up front, so that no batch pays for it: the kernel zeroes the
 * whole pool, and on a VM the host may have to back each page again. For
 * remote streams, whose batches land in a ring of a few MiB of the pool,
 * that is spent on pages never used: `quai stage` sets this for quai://
 * URIs. The pool is as locked either way (never swapped; RLIMIT_MEMLOCK
 * counts all of it at creation). An embedded stream registers an eager
 * pool with io_uring when it opens; a lazy one is not registered (that would
 * touch every page), and a stream's default memory_budget there is 1.5
 * times its working set (at least 32 MiB) instead of the whole pool, so
 * that the pages touched follow what the streams need. */
#define QUAI_CTX_LAZY_POOL 0x10u

struct quai_ctx_opts {
	size_t size;	       /* sizeof(struct quai_ctx_opts) */
	uint64_t pinned_bytes; /* the pool; 0 means 512 MiB */
	unsigned workers;      /* decompression threads; 0 means online cores */
	unsigned queue_depth;  /* reads in flight per stream; 0 means 32 */
	unsigned flags;	       /* QUAI_CTX_* */
	int gpu;	       /* enum quai_gpu */
};

/* Creates a context. Errors: -EINVAL (options, a flag this library does
 * not know among them), -ENOMEM, and from the pool:
 * -EPERM/-ENOMEM when it cannot be locked in memory (RLIMIT_MEMLOCK too
 * small; err says how much is needed and how to raise it), -ENODEV when a
 * GPU runtime was named and is absent. */
QUAI_API int quai_ctx_new(const struct quai_ctx_opts *opts, quai_ctx **ret_ctx, char *err,
			  size_t err_len);
/* Frees the context; every stream on it must be closed. NULL is a no-op. */
QUAI_API void quai_ctx_free(quai_ctx *ctx);

struct quai_ctx_info {
	size_t size; /* sizeof(struct quai_ctx_info) */
	uint64_t pinned_bytes;
	int hugepages;	      /* 2: hugetlbfs pages, 1: transparent, 0: none */
	int locked;	      /* mlocked */
	int gpu;	      /* QUAI_GPU_HIP/CUDA when registered, else NONE */
	const char *gpu_note; /* why not registered, or the device */
	unsigned workers;
	uint64_t pinned_peak; /* most pool bytes in use at once */
};
QUAI_API int quai_ctx_info(quai_ctx *ctx, struct quai_ctx_info *info);

typedef struct quai_stream quai_stream;

/* The lockstep remainder: when the records left for the last step do not
 * split evenly over the world, the rest (fewer than `world` records) is: */
enum quai_tail {
	QUAI_TAIL_DROP = 0, /* left out (different ones each epoch): every
			       rank delivers the same number of records */
	QUAI_TAIL_KEEP = 1, /* delivered: the first ranks get one record more */
	QUAI_TAIL_PAD = 2,  /* delivered, and the other ranks repeat one of
			       their records, so that every rank delivers the
			       same number (DistributedSampler's padding) */
};

#define QUAI_STREAM_NO_SHUFFLE 0x1u /* dataset order (units still go round the ranks) */
#define QUAI_STREAM_SKIP_CORRUPT                                                                   \
	0x2u /* skip a frame that fails its checks                                                 \
		instead of failing the stream; the                                                 \
		skipped records are counted */
/* Global batches: batch_records is the global batch G (the world must
 * divide it); rank r's k-th batch is the r-th of the world's equal slices
 * of the k-th batch of the world-1 order, so global batch k is the same
 * set of records at any world size (a run at 24 ranks and its restart at 16
 * train on the same sequence). Every rank reads the frames of every batch:
 * meant for quaid (quai:// URIs), which decompresses for all the ranks. A
 * state is taken between batches; resuming it with this flag and the same
 * G continues the sequence at any world size that divides G. Tail DROP or
 * KEEP. */
#define QUAI_STREAM_GLOBAL_BATCHES 0x4u

/* The position of a stream, to resume from: opaque bytes, at most this
 * many (docs/STAGING.md, "Resume state": 40 to 94 bytes, version 2). */
#define QUAI_STATE_MAX 96

struct quai_stream_opts {
	size_t size;	/* sizeof(struct quai_stream_opts) */
	uint32_t rank;	/* this process's rank, < world */
	uint32_t world; /* 1 to 65536, any; 0 means 1 */
	uint64_t seed;
	uint64_t epoch;
	uint32_t partitions;	   /* must be 0: the order has no partitions
				      since state version 2 (any world works) */
	uint32_t window;	   /* the shuffle unit, in frames' worth of
				      records (the dataset's mean frame); 0:
				      40. Records are shuffled within a unit;
				      a rank holds about 2 units of frames */
	uint32_t batch_records;	   /* records per batch; 0 with batch_bytes 0
				      means 256. Each rank's last batch may be
				      short: the batch size never changes which
				      records an epoch delivers */
	uint64_t batch_bytes;	   /* or: fill batches to at least this many
				      bytes (batch_records must be 0) */
	uint64_t memory_budget;	   /* pool bytes this stream may hold; 0: the
				      whole pool (a lazy pool: 1.5 x the
				      working set, at least 32 MiB) */
	uint32_t prefetch_batches; /* batches assembled ahead; 0 means 4 */
	int tail;		   /* enum quai_tail */
	unsigned flags;		   /* QUAI_STREAM_* */
	const void *resume;	   /* a state from quai_stream_state(), or NULL;
				      it fixes seed, epoch, window, shuffle,
				      tail and the position; giving another
				      value of those with it is an error */
	size_t resume_len;
};

/* Opens a stream of one epoch of `uri`: a dataset directory path,
 * file:///path, or quai://HOST[:PORT]/NAME, served by quaid, which stages
 * the same batches (same order, same bytes) next to the storage and writes
 * them into this context's pool (remote errors also: a network error,
 * -ENOENT for a dataset the server does not have). Checks that the budget holds the stream's
 * working set (the frames that are live at once, plus the batches ahead)
 * and fails with -ENOBUFS naming the bytes needed otherwise. Errors also:
 * those of quai_dataset_open(), -EINVAL (rank >= world, world above 65536,
 * partitions not 0, options that contradict the resume state), -EINVAL for
 * a resume state from another dataset or a damaged one, -QUAI_EVERSION for
 * one of another version (version 1 included: err says what to do), -QUAI_EPOLICY for a
 * sensitive dataset on a context whose pool is not locked in memory, or a
 * remote one refused by quaid's policy or outside this host's zone. err as in
 * quai_pack(). Reading starts at once, in the background. */
QUAI_API int quai_stream_open(quai_ctx *ctx, const char *uri, const struct quai_stream_opts *opts,
			      quai_stream **ret_stream, char *err, size_t err_len);

/* This process's place in a job, from the launcher's environment, for
 * quai_stream_opts.rank and .world: torchrun's $RANK, $WORLD_SIZE and
 * $LOCAL_RANK when $RANK and $WORLD_SIZE are set, else Slurm's (srun)
 * $SLURM_PROCID, $SLURM_NTASKS and $SLURM_LOCALID. The local rank (the
 * process's index on its node: the GPU to use) plays no part in which
 * records a rank gets; it is 0 when its variable is unset. Any out-param
 * may be NULL. Returns 0 with all three written; -ENOENT when neither pair
 * is set (nothing written: a single process is rank 0 of 1); -EINVAL when
 * a variable is not a decimal number, or rank >= world, or world is 0 (err
 * names the variable and its value; nothing written). Reads the
 * environment only (getenv): call it before threads change it. */
QUAI_API int quai_rank_from_env(uint32_t *ret_rank, uint32_t *ret_world, uint32_t *ret_local_rank,
				char *err, size_t err_len);

/* A batch: a view into pinned memory, valid until quai_release(). */
struct quai_batch {
	const uint8_t *data;	 /* the records, back to back */
	const uint64_t *offsets; /* count + 1 offsets into data */
	const uint64_t *ids;	 /* count global record ids */
	uint32_t count;
	uint64_t bytes; /* offsets[count] */
	uint64_t index; /* batch number in this rank's epoch */
	void *internal; /* quai's; do not touch */
};

/* Waits for the next batch. Returns 1 and fills *batch; 0 at the end of
 * the epoch (not an error); or a negative error: -QUAI_ECORRUPT when a
 * frame fails its checks (quai_stream_error() names the shard and frame;
 * no byte of it is ever handed out), -EIO and other read errors. After an
 * error the stream only returns that error. Batches may be held while
 * later ones are taken: a batch still held when its slot's next turn comes
 * (prefetch_batches later) keeps its memory, which then counts against the
 * stream's memory budget. When the batches held past their turn would
 * leave less of the budget than the stream's working set, quai_next()
 * waits for none and returns -EBUSY; releasing one lets it go on. */
QUAI_API int quai_next(quai_stream *s, struct quai_batch *batch);

/* Gives a batch's memory back. Batches may be released in any order, from
 * any thread (the stream's other calls still one thread at a time). The
 * call clears batch->internal, so releasing the same struct twice is
 * harmless; releasing a stale copy of a struct whose batch was already
 * released is a programming error. A held batch's memory may be written
 * (e.g. to normalise records in place); it is the caller's until release. */
QUAI_API void quai_release(quai_stream *s, struct quai_batch *batch);

/* A message about the stream's error (naming shard and frame for corrupt
 * data), or "" when there was none. Valid until the stream is closed. */
QUAI_API const char *quai_stream_error(quai_stream *s);

/* Writes the stream's position: what the ranks delivered together so far,
 * assuming (as data-parallel training checkpoints) that every rank has
 * taken as many records as this one, with what fixes the order. The same
 * bytes come from every rank in step. A stream opened with it, at any world
 * size, delivers exactly the records the epoch had left, once
 * (docs/STAGING.md, "Resuming"). Returns the bytes written
 * (<= QUAI_STATE_MAX), -ENOSPC, or -EOVERFLOW when the position cannot be
 * written (a fourth resume at a new world size in a row, each before the
 * previous one's leftovers were delivered; quai_stream_error() says so). */
QUAI_API int quai_stream_state(quai_stream *s, void *buf, size_t len);

struct quai_stream_stats {
	size_t size;	  /* sizeof(struct quai_stream_stats) */
	uint64_t batches; /* delivered */
	uint64_t records;
	uint64_t bytes;		/* raw bytes delivered */
	uint64_t records_total; /* this rank's records in the epoch */
	uint64_t frames_read;
	uint64_t bytes_read;	  /* compressed bytes read from storage */
	uint64_t skipped_records; /* with QUAI_STREAM_SKIP_CORRUPT */
	uint64_t wait_ns;	  /* time quai_next() spent waiting */
	uint32_t direct_io;	  /* shards read with O_DIRECT (the others were
				     mostly in the page cache, or the file
				     system refuses O_DIRECT) */
	int registered_buffers;	  /* 1 when io_uring reads into registered
				     buffers */
	uint32_t partitions;	  /* 0 (there are no partitions since state
				     version 2) */
	uint64_t budget_bytes;
	uint64_t working_set_bytes; /* the least budget this stream needs */
	uint64_t frames_in_place;   /* frames stored raw (incompressible data):
				       checked where they were read, and their
				       records copied from there, with no
				       decompression copy */
};
QUAI_API int quai_stream_stats(quai_stream *s, struct quai_stream_stats *stats);

/* Closes the stream; batches still held are released. NULL is a no-op. */
QUAI_API void quai_stream_close(quai_stream *s);

/* ------------------------------------------------------------------------
 * Remote datasets: quaid (docs/PROTOCOL.md, docs/quaid.md)
 *
 * A remote URI is quai://HOST[:PORT]/NAME (the port defaults to 7470; an
 * IPv6 host goes in brackets). The fabric provider is $FI_PROVIDER, else
 * tcp;ofi_rxm. A server that stops answering for $QUAI_REMOTE_TIMEOUT
 * seconds (default 15) ends the call with -ETIMEDOUT. Streams take remote
 * URIs in quai_stream_open().
 *
 * Every call authenticates with a MUNGE credential from the local munged
 * ($QUAI_MUNGE_SOCKET, else `munge_socket` in the host configuration, else
 * munged's default socket), and quaid decides each request by its site
 * policy (docs/SECURITY.md). A refusal, of the credential or of the
 * request, is -QUAI_EPOLICY, with err saying which rule refused and what
 * would satisfy it.
 * ------------------------------------------------------------------------ */

/* 1 when `uri` is a remote URI, that is when it begins with quai:// (the
 * calls that take it check the rest); 0 otherwise, NULL included.
 * Thread-safe. */
QUAI_API int quai_uri_is_remote(const char *uri);

/* One dataset a server offers. Strings valid during the callback only. */
struct quai_remote_dataset {
	const char *name;
	int kind;	    /* enum quai_record_kind */
	int classification; /* enum quai_class */
	const char *zone;
	uint64_t records;
	uint64_t raw_bytes;
	uint64_t compressed_bytes;
	uint32_t shards;
};
/* Return 0 to go on; non-zero stops the listing, which returns it. */
typedef int (*quai_remote_list_fn)(const struct quai_remote_dataset *d, void *arg);

/* Lists the datasets served at quai://HOST[:PORT]/, in name order.
 * Returns 0, a network error (-ETIMEDOUT, -EHOSTUNREACH, -ECONNRESET),
 * -QUAI_EVERSION, or what fn returned; err as in quai_pack(). */
QUAI_API int quai_remote_list(const char *uri, quai_remote_list_fn fn, void *arg, char *err,
			      size_t err_len);

/* Fetches the manifest.json of quai://HOST[:PORT]/NAME into a new buffer
 * (NUL-terminated; free() it), checked: its checksum and every field, as
 * quai_dataset_open() checks a local one. Returns 0, -ENOENT, -QUAI_ECORRUPT,
 * -QUAI_EFORMAT, or a network error. */
QUAI_API int quai_remote_manifest(const char *uri, char **ret_text, size_t *ret_len, char *err,
				  size_t err_len);

/* Opens what a server says of quai://HOST[:PORT]/NAME: its manifest,
 * checked as quai_remote_manifest() checks it. quai_dataset_info() and
 * quai_dataset_shard() work on it; reading records (locate, record names,
 * readers) returns -ENODATA: stream the dataset or pull it. Close it with
 * quai_dataset_close(). Errors as quai_remote_manifest(). */
QUAI_API int quai_remote_open(const char *uri, quai_dataset **ret_ds, char *err, size_t err_len);

enum quai_stat_format {
	QUAI_STAT_TEXT = 0, /* lines for people */
	QUAI_STAT_JSON = 1, /* one JSON object (docs/quaid.md, "Statistics") */
};

/* Fetches the statistics of the quaid at quai://HOST[:PORT]/: its clients,
 * streams, bytes served and rate, as text or JSON in a new NUL-terminated
 * buffer (free() it). Returns 0 or a network error; err as in quai_pack(). */
QUAI_API int quai_remote_stat(const char *uri, int format, char **ret_text, size_t *ret_len,
			      char *err, size_t err_len);

struct quai_xfer_progress {
	uint64_t bytes_done;	/* moved so far, this run */
	uint64_t bytes_total;	/* to move this run (what was there already excluded) */
	uint64_t bytes_skipped; /* already at the destination from an earlier run */
	uint32_t files_done;
	uint32_t files_total;
};
/* Called about every 100 ms and once at the end; non-zero cancels
 * (-ECANCELED; what was moved stays for a re-run to resume). */
typedef int (*quai_xfer_progress_fn)(const struct quai_xfer_progress *p, void *arg);

struct quai_xfer_opts {
	size_t size; /* sizeof(struct quai_xfer_opts) */
	quai_xfer_progress_fn progress;
	void *progress_arg;
	int unpack; /* quai_pull: restore the records at dest (as quai_unpack) */
};

struct quai_xfer_result {
	uint64_t bytes_moved;	/* over the fabric, this run */
	uint64_t bytes_skipped; /* already there from an interrupted run */
	uint32_t files;
};

/* Copies the dataset at quai://HOST[:PORT]/NAME to the directory `dest`:
 * every file is verified (quai_verify) before the dataset appears at dest,
 * whole or not at all. An interrupted pull leaves its hidden partial
 * directory beside dest; a re-run of the same pull keeps the bytes already
 * there and fetches only the rest. With opts->unpack, the records are
 * restored at dest instead (quai_unpack) and nothing else stays. A
 * sensitive dataset is pulled only by a host of its zone, into one of the
 * host's sovereign_paths (docs/SECURITY.md), else -QUAI_EPOLICY with
 * nothing written. Returns 0, -QUAI_EEXISTS, -ENOENT, -QUAI_ECORRUPT
 * (nothing published), -QUAI_EPOLICY, a network error, -ENOSPC... err as
 * in quai_pack(). */
QUAI_API int quai_pull(const char *uri, const char *dest, const struct quai_xfer_opts *opts,
		       struct quai_xfer_result *ret_result, char *err, size_t err_len);

/* Sends the dataset directory `src` to quai://HOST[:PORT]/NAME. The server
 * writes it under a temporary name, verifies every checksum, fsyncs and
 * renames it: it appears whole or not at all. A re-run after an interruption
 * sends only what the server does not have yet. A sensitive dataset is
 * pushed only to a quaid of its zone (both sides refuse otherwise).
 * Returns 0, -QUAI_EEXISTS,
 * -QUAI_ECORRUPT (refused by the server's verification: nothing published),
 * -QUAI_EPOLICY, a network error... err as in quai_pack(). */
QUAI_API int quai_push(const char *src, const char *uri, const struct quai_xfer_opts *opts,
		       struct quai_xfer_result *ret_result, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif
#endif /* QUAI_QUAI_H */
