/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "beneath.h"
#include "byteorder.h"
#include "dataset.h"
#include "dctx.h"
#include "errmsg.h"
#include "fsutil.h"
#include "secmem.h"

/* The index must describe exactly the shard the manifest names. */
static int check_index(const struct qmf *m, const struct qmf_shard *s, const struct qix *ix)
{
	if (ix->records != s->records || ix->first_record != s->first_record ||
	    ix->nframes != s->frames || ix->raw_bytes != s->raw_bytes ||
	    ix->shard_bytes != s->compressed_bytes)
		return -QUAI_EFORMAT;
	if (m->kind == QUAI_RECORDS_FIXED ? ix->fixed_size != m->fixed_size
					  : !(ix->flags & QIX_F_RECORD_TABLE))
		return -QUAI_EFORMAT;
	if (!!(ix->flags & QIX_F_NAMES) != (m->kind == QUAI_RECORDS_FILES))
		return -QUAI_EFORMAT;
	return 0;
}

int qds_load_index(int dirfd, const struct qmf *m, uint32_t i, uint8_t **ret_buf,
		   struct qix *ret_ix, char *err, size_t err_len)
{
	const struct qmf_shard *s = &m->shards[i];
	uint8_t *buf;
	size_t len;
	int r = qfs_read_file(dirfd, s->index, s->index_bytes, &buf, &len);
	if (r == -EFBIG || (r == 0 && len != s->index_bytes)) {
		if (r == 0)
			free(buf);
		qerr_set(err, err_len, "%s: size differs from the manifest's %" PRIu64 " bytes",
			 s->index, s->index_bytes);
		return -QUAI_ECORRUPT;
	}
	if (r < 0) {
		qerr_set(err, err_len, "%s: %s", s->index,
			 r == -ELOOP || r == -QFS_ENOTREG ? qfs_member_strerror(r)
							  : quai_strerror(r));
		return r;
	}
	if (XXH3_64bits(buf, len) != s->index_xxh3) {
		free(buf);
		qerr_set(err, err_len, "%s: checksum mismatch", s->index);
		return -QUAI_ECORRUPT;
	}
	r = qix_parse(buf, len, ret_ix);
	if (r < 0) {
		free(buf);
		qerr_set(err, err_len, "%s: %s", s->index, quai_strerror(r));
		return r;
	}
	r = check_index(m, s, ret_ix);
	if (r < 0) {
		qix_release(ret_ix);
		free(buf);
		qerr_set(err, err_len, "%s: disagrees with the manifest", s->index);
		return r;
	}
	*ret_buf = buf;
	return 0;
}

static int load_index(struct quai_dataset *ds, uint32_t i, char *err, size_t err_len)
{
	int r = qds_load_index(ds->dirfd, &ds->m, i, &ds->ixbuf[i], &ds->ix[i], err, err_len);
	if (r < 0)
		return r;
	for (uint32_t f = 0; f < ds->ix[i].nframes; f++) {
		const struct qix_frame *fr = &ds->ix[i].frames[f];
		if (fr->r_size > ds->max_frame_rsize)
			ds->max_frame_rsize = fr->r_size;
		if (fr->c_size > ds->max_frame_csize)
			ds->max_frame_csize = fr->c_size;
	}
	return 0;
}

int quai_dataset_open(const char *path, quai_dataset **ret_ds, char *err, size_t err_len)
{
	return qds_open(path, false, ret_ds, err, err_len);
}

int qds_open(const char *path, bool served, quai_dataset **ret_ds, char *err, size_t err_len)
{
	uint8_t *text = NULL;
	size_t len;
	int r;

	qerr_set(err, err_len, "%s", "");
	if (!path || !ret_ds)
		return -EINVAL;
	struct quai_dataset *ds = calloc(1, sizeof(*ds));
	if (!ds)
		return -ENOMEM;
	ds->path = strdup(path);
	/* Served by quaid: the dataset directory itself may not be a link
	 * (out of the roots); a user's own path may go through links. */
	ds->dirfd = served ? qfs_open_dataset_dir(AT_FDCWD, path)
			   : open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!served && ds->dirfd < 0)
		ds->dirfd = -errno;
	if (!ds->path || ds->dirfd < 0) {
		r = ds->path ? ds->dirfd : -ENOMEM;
		qerr_set(err, err_len, "%s",
			 r == -ELOOP ? qfs_member_strerror(r) : quai_strerror(r));
		if (r == -ENOTDIR) {
			qerr_set(err, err_len, "not a dataset directory");
			r = -QUAI_EFORMAT;
		}
		goto fail;
	}
	r = qfs_read_file(ds->dirfd, "manifest.json", QMF_MAX_BYTES, &text, &len);
	if (r < 0) {
		qerr_set(err, err_len, "manifest.json: %s%s",
			 r == -ELOOP || r == -QFS_ENOTREG ? qfs_member_strerror(r)
							  : quai_strerror(r),
			 r == -ENOENT ? " (not a quai dataset, or an unfinished one)" : "");
		if (r == -EFBIG)
			r = -QUAI_EFORMAT;
		goto fail;
	}
	char perr[200];
	r = qmf_parse((const char *)text, len, &ds->m, perr, sizeof(perr));
	free(text);
	if (r < 0) {
		qerr_set(err, err_len, "manifest.json: %s", perr[0] ? perr : quai_strerror(r));
		goto fail;
	}
	r = qds_check_files(ds->dirfd, &ds->m, err, err_len);
	if (r < 0)
		goto fail;
	ds->ix = calloc(ds->m.nshards, sizeof(*ds->ix));
	ds->ixbuf = calloc(ds->m.nshards, sizeof(*ds->ixbuf));
	if (!ds->ix || !ds->ixbuf) {
		r = -ENOMEM;
		goto fail;
	}
	ds->frame_base = calloc(ds->m.nshards, sizeof(*ds->frame_base));
	if (!ds->frame_base) {
		r = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < ds->m.nshards; i++) {
		r = load_index(ds, i, err, err_len);
		if (r < 0)
			goto fail;
		ds->frame_base[i] = i ? ds->frame_base[i - 1] + ds->ix[i - 1].nframes : 0;
	}
	*ret_ds = ds;
	return 0;
fail:
	quai_dataset_close(ds);
	return r;
}

int qds_from_manifest(const char *text, size_t len, quai_dataset **ret_ds, char *err,
		      size_t err_len)
{
	struct quai_dataset *ds = calloc(1, sizeof(*ds));
	char perr[200];
	if (!ds)
		return -ENOMEM;
	ds->dirfd = -1;
	int r = qmf_parse(text, len, &ds->m, perr, sizeof(perr));
	if (r < 0) {
		qerr_set(err, err_len, "manifest.json: %s", perr[0] ? perr : quai_strerror(r));
		free(ds);
		return r;
	}
	*ret_ds = ds;
	return 0;
}

void quai_dataset_close(quai_dataset *ds)
{
	if (!ds)
		return;
	for (uint32_t i = 0; ds->ix && i < ds->m.nshards; i++)
		qix_release(&ds->ix[i]);
	for (uint32_t i = 0; ds->ixbuf && i < ds->m.nshards; i++)
		free(ds->ixbuf[i]);
	free(ds->ix);
	free(ds->ixbuf);
	free(ds->frame_base);
	qmf_release(&ds->m);
	if (ds->dirfd >= 0)
		close(ds->dirfd);
	free(ds->path);
	free(ds);
}

int quai_dataset_info(const quai_dataset *ds, struct quai_dataset_info *info)
{
	if (!ds || !info || info->size < sizeof(size_t))
		return -EINVAL;
	struct quai_dataset_info i = {
	    .size = info->size,
	    .format_version = ds->m.format_version,
	    .name = ds->m.name,
	    .kind = ds->m.kind,
	    .fixed_size = ds->m.fixed_size,
	    .classification = ds->m.classification,
	    .zone = ds->m.zone,
	    .records = ds->m.records,
	    .raw_bytes = ds->m.raw_bytes,
	    .compressed_bytes = ds->m.compressed_bytes,
	    .shards = ds->m.nshards,
	    .frames = ds->m.frames,
	    .level = ds->m.level,
	    .frame_size = ds->m.frame_size,
	    .shard_size = ds->m.shard_size,
	    .created = ds->m.created,
	};
	static __thread char hex[17];
	snprintf(hex, sizeof(hex), "%016" PRIx64, ds->m.checksum);
	i.manifest_checksum = hex;
	size_t n = info->size < sizeof(i) ? info->size : sizeof(i);
	memcpy(info, &i, n);
	return 0;
}

int quai_dataset_shard(const quai_dataset *ds, uint32_t shard, struct quai_shard_info *info)
{
	if (!ds || !info || info->size < sizeof(size_t) || shard >= ds->m.nshards)
		return -EINVAL;
	const struct qmf_shard *s = &ds->m.shards[shard];
	struct quai_shard_info i = {
	    .size = info->size,
	    .file = s->file,
	    .index_file = s->index,
	    .first_record = s->first_record,
	    .records = s->records,
	    .raw_bytes = s->raw_bytes,
	    .compressed_bytes = s->compressed_bytes,
	    .index_bytes = s->index_bytes,
	    .frames = s->frames,
	    .checksum = s->xxh3,
	    .index_checksum = s->index_xxh3,
	};
	size_t n = info->size < sizeof(i) ? info->size : sizeof(i);
	memcpy(info, &i, n);
	return 0;
}

uint32_t qds_shard_of(const struct quai_dataset *ds, uint64_t rec)
{
	uint32_t lo = 0, hi = ds->m.nshards;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (ds->m.shards[mid].first_record <= rec)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

int quai_dataset_locate(const quai_dataset *ds, uint64_t record, struct quai_record_loc *ret_loc)
{
	if (ds && !ds->ix)
		return -ENODATA; /* a remote dataset's manifest only */
	if (!ds || record >= ds->m.records)
		return -ERANGE;
	uint32_t s = qds_shard_of(ds, record);
	const struct qix *ix = &ds->ix[s];
	uint32_t frame, off, len;
	qix_locate(ix, record - ix->first_record, &frame, &off, &len);
	const struct qix_frame *f = &ix->frames[frame];
	*ret_loc = (struct quai_record_loc){
	    .shard = s,
	    .frame = frame,
	    .frame_offset = f->c_offset,
	    .frame_csize = f->c_size,
	    .frame_rsize = f->r_size,
	    .offset = off,
	    .length = len,
	};
	return 0;
}

int quai_dataset_record_name(const quai_dataset *ds, uint64_t record, const char **ret_name,
			     size_t *ret_len)
{
	if (ds && !ds->ix)
		return -ENODATA; /* a remote dataset's manifest only */
	if (!ds || record >= ds->m.records)
		return -ERANGE;
	uint32_t s = qds_shard_of(ds, record);
	size_t len;
	const char *n = qix_name(&ds->ix[s], record - ds->ix[s].first_record, &len);
	if (!n)
		return -ENOENT;
	*ret_name = n;
	*ret_len = len;
	return 0;
}

void qds_frame_at(const struct quai_dataset *ds, uint64_t g, uint32_t *ret_shard,
		  uint32_t *ret_frame)
{
	uint32_t lo = 0, hi = ds->m.nshards;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (ds->frame_base[mid] <= g)
			lo = mid;
		else
			hi = mid;
	}
	*ret_shard = lo;
	*ret_frame = (uint32_t)(g - ds->frame_base[lo]);
}

void qds_record_in_frame(const struct quai_dataset *ds, uint64_t g, uint32_t index,
			 uint32_t *ret_offset, uint32_t *ret_length)
{
	uint32_t s, f;
	qds_frame_at(ds, g, &s, &f);
	const struct qix *ix = &ds->ix[s];
	if (ix->fixed_size) {
		*ret_offset = index * ix->fixed_size;
		*ret_length = ix->fixed_size;
		return;
	}
	uint64_t rec = (uint64_t)ix->frames[f].first_record + index;
	uint32_t start = index ? qle32(ix->record_ends + 4 * (rec - 1)) : 0;
	*ret_offset = start;
	*ret_length = qle32(ix->record_ends + 4 * rec) - start;
}

int qds_check_files(int dirfd, const struct qmf *m, char *err, size_t err_len)
{
	for (uint32_t i = 0; i < m->nshards; i++) {
		const char *names[2] = {m->shards[i].file, m->shards[i].index};

		for (int k = 0; k < 2; k++) {
			struct stat st;
			int r = 0;

			if (fstatat(dirfd, names[k], &st, AT_SYMLINK_NOFOLLOW) < 0)
				r = errno == ENOENT ? 0 : -errno; /* missing: the opener says */
			else if (S_ISLNK(st.st_mode))
				r = -ELOOP;
			else if (!S_ISREG(st.st_mode))
				r = -QFS_ENOTREG;
			if (r < 0) {
				qerr_set(err, err_len, "%s: %s", names[k], qfs_member_strerror(r));
				return r;
			}
		}
	}
	return 0;
}

int qds_read_manifest(int atfd, const char *path, struct qmf *ret_mf, uint8_t **ret_text,
		      size_t *ret_len, char *err, size_t err_len)
{
	uint8_t *text = NULL;
	size_t len = 0;
	char perr[200] = "";
	int dfd = qfs_open_dataset_dir(atfd, path), r;

	if (dfd < 0) {
		qerr_set(err, err_len, "%s", qfs_member_strerror(dfd));
		return dfd;
	}
	r = qfs_read_file(dfd, "manifest.json", QMF_MAX_BYTES, &text, &len);
	if (r < 0) {
		qerr_set(err, err_len, "manifest.json: %s", qfs_member_strerror(r));
		goto out;
	}
	r = qmf_parse((const char *)text, len, ret_mf, perr, sizeof(perr));
	if (r < 0) {
		qerr_set(err, err_len, "manifest.json: %s", perr[0] ? perr : quai_strerror(r));
		goto out;
	}
	r = qds_check_files(dfd, ret_mf, err, err_len);
	if (r < 0) {
		qmf_release(ret_mf);
		goto out;
	}
	if (ret_text) {
		*ret_text = text;
		*ret_len = len;
		text = NULL;
	}
out:
	free(text);
	close(dfd);
	return r;
}

int qds_open_shard(const struct quai_dataset *ds, uint32_t shard, int flags)
{
	return qfs_open_member(ds->dirfd, ds->m.shards[shard].file, O_RDONLY | flags, 0);
}

/* ---- frames ----------------------------------------------------------- */

static int decode_checked(ZSTD_DCtx *dctx, const struct qix_frame *f, const void *src, void *dst);

#define ZFRAME_MAGIC 0xFD2FB528u
#define ZBLOCK_MAX (128u * 1024) /* Zstandard's Block_Maximum_Size (RFC 8878) */

uint32_t qds_stored_segments(const void *frame, uint64_t c, uint64_t r, struct qds_seg *segs,
			     uint32_t cap, uint64_t *ret_checksum_at)
{
	const uint8_t *src = frame;
	if (c < 6 || c > UINT32_MAX || qle32(src) != ZFRAME_MAGIC)
		return 0;
	/* Frame_Header_Descriptor: FCS size flag (7-6), single segment (5),
	 * unused (4), reserved (3), content checksum (2), dictionary id size
	 * flag (1-0). */
	uint8_t fhd = src[4];
	unsigned fcs_flag = fhd >> 6, single = (fhd >> 5) & 1, did_flag = fhd & 3;
	if (fhd & 0x08)
		return 0;
	static const unsigned did_size[4] = {0, 1, 2, 4};
	static const unsigned fcs_size[4] = {0, 2, 4, 8};
	uint64_t block_max = ZBLOCK_MAX;
	if (!single) {
		/* Window_Descriptor: exponent (7-3), mantissa (2-0); libzstd
		 * refuses window logs over 31. */
		if (10 + (src[5] >> 3) > 31)
			return 0;
		uint64_t base = 1ull << (10 + (src[5] >> 3));
		uint64_t window = base + base / 8 * (src[5] & 7);
		if (window < block_max)
			block_max = window;
	}
	uint64_t pos = 5 + (single ? 0 : 1);
	uint64_t did = 0;
	for (unsigned i = 0; i < did_size[did_flag]; i++) {
		if (pos + i >= c)
			return 0;
		did |= (uint64_t)src[pos + i] << (8 * i);
	}
	if (did)
		return 0;
	pos += did_size[did_flag];
	unsigned fsz = fcs_flag == 0 ? (single ? 1 : 0) : fcs_size[fcs_flag];
	if (pos + fsz > c)
		return 0;
	if (fsz) {
		uint64_t fcs = 0;
		for (unsigned i = 0; i < fsz; i++)
			fcs |= (uint64_t)src[pos + i] << (8 * i);
		if (fsz == 2)
			fcs += 256;
		if (fcs != r)
			return 0;
		if (single && fcs < block_max)
			block_max = fcs; /* the window is the content */
	}
	pos += fsz;
	uint32_t n = 0;
	uint64_t raw = 0;
	for (;;) {
		if (pos + 3 > c)
			return 0;
		uint32_t bh =
		    (uint32_t)src[pos] | (uint32_t)src[pos + 1] << 8 | (uint32_t)src[pos + 2] << 16;
		uint32_t last = bh & 1, type = (bh >> 1) & 3, size = bh >> 3;
		pos += 3;
		if (type != 0 || size > block_max || pos + size > c || n >= cap)
			return 0;
		if (size) {
			segs[n++] = (struct qds_seg){(uint32_t)raw, (uint32_t)pos, size};
			raw += size;
		}
		pos += size;
		if (last)
			break;
	}
	int checksum = (fhd >> 2) & 1;
	if (raw != r || pos + (checksum ? 4 : 0) != c || n == 0)
		return 0;
	*ret_checksum_at = checksum ? pos : 0;
	return n;
}

uint32_t qds_stored_blocks_hint(const struct qix_frame *f)
{
	/* Raw blocks add their headers: a stored frame is larger than its
	 * raw bytes. */
	if (f->c_size <= f->r_size)
		return 0;
	return (uint32_t)(f->r_size / ZBLOCK_MAX) + 2;
}

int qds_decode_frame_map(ZSTD_DCtx *dctx, const struct qix_frame *f, const void *src, void *dst,
			 struct qds_seg *segs, uint32_t cap, unsigned flags, uint32_t *ret_nsegs)
{
	*ret_nsegs = 0;
	if (XXH3_64bits(src, f->c_size) != f->c_xxh3)
		return -QUAI_ECORRUPT;
	uint64_t checksum_at = 0;
	uint32_t n = cap && qds_stored_blocks_hint(f)
			 ? qds_stored_segments(src, f->c_size, f->r_size, segs, cap, &checksum_at)
			 : 0;
	if (n == 0)
		return decode_checked(dctx, f, src, dst);
	if (!(flags & QDS_MAP_CHECK_RAW)) {
		*ret_nsegs = n;
		return 0;
	}
	/* The state is heap-allocated: its layout is libxxhash's own. */
	XXH64_state_t *st = XXH64_createState();
	if (!st)
		return decode_checked(dctx, f, src, dst);
	XXH64_reset(st, 0);
	for (uint32_t i = 0; i < n; i++)
		XXH64_update(st, (const uint8_t *)src + segs[i].src_off, segs[i].len);
	uint64_t h = XXH64_digest(st);
	XXH64_freeState(st);
	/* The frame's own content checksum, when it has one, is what libzstd
	 * would have checked: the low 32 bits of the same XXH64. */
	if (h != f->xxh64 ||
	    (checksum_at && qle32((const uint8_t *)src + checksum_at) != (uint32_t)h))
		return -QUAI_ECORRUPT;
	*ret_nsegs = n;
	return 0;
}

int qds_decode_frame(ZSTD_DCtx *dctx, const struct qix_frame *f, const void *src, void *dst)
{
	/* The compressed bytes are what was written; then the frame must be
	 * exactly one zstd frame of exactly c_size bytes that decodes to
	 * exactly r_size bytes of the recorded hash. */
	if (XXH3_64bits(src, f->c_size) != f->c_xxh3)
		return -QUAI_ECORRUPT;
	return decode_checked(dctx, f, src, dst);
}

/* The rest of qds_decode_frame, once the compressed bytes are known good. */
static int decode_checked(ZSTD_DCtx *dctx, const struct qix_frame *f, const void *src, void *dst)
{
	size_t fsz = ZSTD_findFrameCompressedSize(src, f->c_size);
	if (ZSTD_isError(fsz) || fsz != f->c_size)
		return -QUAI_ECORRUPT;
	size_t n = ZSTD_decompressDCtx(dctx, dst, f->r_size, src, f->c_size);
	if (ZSTD_isError(n) || n != f->r_size)
		return -QUAI_ECORRUPT;
	if (XXH64(dst, n, 0) != f->xxh64)
		return -QUAI_ECORRUPT;
	return 0;
}

/* ---- readers ---------------------------------------------------------- */

struct quai_reader {
	struct quai_dataset *ds;
	ZSTD_DCtx *dctx;
	uint8_t *cbuf, *rbuf;
	int fd;
	uint32_t fd_shard;
	int64_t cur_shard; /* the frame held in rbuf, or -1 */
	int sensitive;	   /* cbuf and rbuf are locked (secmem.h) */
	uint32_t cur_frame;
};

int quai_reader_new(quai_dataset *ds, quai_reader **ret_reader)
{
	if (!ds || !ret_reader)
		return -EINVAL;
	if (!ds->ix)
		return -ENODATA; /* a remote dataset's manifest only */
	struct quai_reader *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->ds = ds;
	r->fd = -1;
	r->cur_shard = -1;
	/* One byte more than needed so that empty frames still allocate. A
	 * sensitive dataset's frames go into locked memory, or nowhere; its
	 * decompression context too. */
	int e0, e1 = 0, e2 = 0;
	r->sensitive = ds->m.classification == QUAI_CLASS_SENSITIVE;
	r->dctx = qdc_new(r->sensitive, &e0);
	r->cbuf = r->dctx ? qsm_alloc((size_t)ds->max_frame_csize + 1, r->sensitive, &e1) : NULL;
	if (r->cbuf)
		r->rbuf = qsm_alloc((size_t)ds->max_frame_rsize + 1, r->sensitive, &e2);
	if (!r->dctx || !r->cbuf || !r->rbuf) {
		int e = e0 ? e0 : e1 ? e1 : e2;
		quai_reader_free(r);
		return e == -EAGAIN ? -QUAI_EPOLICY : -ENOMEM;
	}
	*ret_reader = r;
	return 0;
}

void quai_reader_free(quai_reader *r)
{
	if (!r)
		return;
	qdc_free(r->dctx, r->sensitive);
	qsm_free(r->cbuf, (size_t)r->ds->max_frame_csize + 1, r->sensitive);
	qsm_free(r->rbuf, (size_t)r->ds->max_frame_rsize + 1, r->sensitive);
	if (r->fd >= 0)
		close(r->fd);
	free(r);
}

int quai_reader_record(quai_reader *r, uint64_t record, const void **ret_data, size_t *ret_len)
{
	struct quai_record_loc loc;
	if (!r)
		return -EINVAL;
	int e = quai_dataset_locate(r->ds, record, &loc);
	if (e < 0)
		return e;
	if (r->cur_shard != loc.shard || r->cur_frame != loc.frame) {
		const struct qix_frame *f = &r->ds->ix[loc.shard].frames[loc.frame];
		r->cur_shard = -1;
		if (r->fd < 0 || r->fd_shard != loc.shard) {
			if (r->fd >= 0)
				close(r->fd);
			r->fd = qds_open_shard(r->ds, loc.shard, 0);
			if (r->fd < 0)
				return r->fd;
			r->fd_shard = loc.shard;
		}
		ssize_t n = qfs_pread_full(r->fd, r->cbuf, f->c_size, f->c_offset);
		if (n < 0)
			return (int)n;
		if ((size_t)n != f->c_size)
			return -QUAI_ECORRUPT; /* the shard is shorter than its index says */
		e = qds_decode_frame(r->dctx, f, r->cbuf, r->rbuf);
		if (e < 0)
			return e;
		r->cur_shard = loc.shard;
		r->cur_frame = loc.frame;
	}
	*ret_data = r->rbuf + loc.offset;
	*ret_len = loc.length;
	return 0;
}

int quai_reader_records(quai_reader *r, uint64_t record, uint64_t max, const void **ret_data,
			size_t *ret_len, uint64_t *ret_count)
{
	const void *first;
	size_t len;
	struct quai_record_loc loc, end;
	if (!r || max == 0)
		return -ERANGE;
	int e = quai_reader_record(r, record, &first, &len);
	if (e < 0)
		return e;
	quai_dataset_locate(r->ds, record, &loc);
	const struct qix *ix = &r->ds->ix[loc.shard];
	const struct qix_frame *f = &ix->frames[loc.frame];
	uint64_t frame_end = ix->first_record + f->first_record + f->records;
	uint64_t n = frame_end - record < max ? frame_end - record : max;
	uint64_t stop = f->r_size;
	if (record + n < frame_end) {
		quai_dataset_locate(r->ds, record + n, &end);
		stop = end.offset;
	}
	*ret_data = first;
	*ret_len = (size_t)(stop - loc.offset);
	*ret_count = n;
	return 0;
}
