/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "byteorder.h"
#include "quai/quai.h"
#include "seektable.h"
#include "shardindex.h"

/* a + b and a * b with overflow reported, for sizes read from disk. */
static int add_ok(uint64_t a, uint64_t b, uint64_t *r)
{
	return !__builtin_add_overflow(a, b, r);
}

static int mul_ok(uint64_t a, uint64_t b, uint64_t *r)
{
	return !__builtin_mul_overflow(a, b, r);
}

int qix_check_name(const char *name, size_t len)
{
	if (len == 0 || len > QUAI_RECORD_NAME_MAX || name[0] == '/')
		return -QUAI_EFORMAT;
	if (memchr(name, '\0', len))
		return -QUAI_EFORMAT;
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && name[i] != '/')
			continue;
		size_t clen = i - start;
		const char *c = name + start;
		if (clen == 0 || (clen == 1 && c[0] == '.') ||
		    (clen == 2 && c[0] == '.' && c[1] == '.'))
			return -QUAI_EFORMAT;
		start = i + 1;
	}
	return 0;
}

static int parse_frames(const uint8_t *p, struct qix *ix)
{
	uint64_t c_off = 0, r_off = 0, rec = 0;
	for (uint32_t i = 0; i < ix->nframes; i++, p += QIX_FRAME_SIZE) {
		struct qix_frame *f = &ix->frames[i];
		f->c_offset = qle64(p);
		f->c_size = qle32(p + 8);
		f->r_size = qle32(p + 12);
		f->first_record = qle32(p + 16);
		f->records = qle32(p + 20);
		f->c_xxh3 = qle64(p + 24);
		f->xxh64 = qle64(p + 32);
		f->r_offset = r_off;
		/* Frames are contiguous from the start of the shard, hold at
		 * least one record each, and follow each other's records. */
		if (f->c_offset != c_off || f->c_size == 0 || f->records == 0 ||
		    f->first_record != rec || f->r_size > QST_MAX_FRAME_RSIZE)
			return -QUAI_EFORMAT;
		if (ix->fixed_size && (uint64_t)f->records * ix->fixed_size != f->r_size)
			return -QUAI_EFORMAT;
		c_off += f->c_size;
		r_off += f->r_size;
		rec += f->records;
	}
	if (rec != ix->records || r_off != ix->raw_bytes)
		return -QUAI_EFORMAT;
	if (c_off + qst_encoded_size(ix->nframes) != ix->shard_bytes)
		return -QUAI_EFORMAT;
	return 0;
}

static int check_record_table(const struct qix *ix)
{
	for (uint32_t i = 0; i < ix->nframes; i++) {
		const struct qix_frame *f = &ix->frames[i];
		uint32_t prev = 0;
		for (uint32_t r = 0; r < f->records; r++) {
			uint32_t end = qle32(ix->record_ends + 4 * ((uint64_t)f->first_record + r));
			if (end < prev || end > f->r_size)
				return -QUAI_EFORMAT;
			if (end - prev > QUAI_RECORD_SIZE_MAX)
				return -QUAI_EFORMAT;
			prev = end;
		}
		if (prev != f->r_size)
			return -QUAI_EFORMAT;
	}
	return 0;
}

static int check_names(const struct qix *ix)
{
	uint64_t prev = 0;
	for (uint64_t r = 0; r < ix->records; r++) {
		uint64_t end = qle64(ix->name_ends + 8 * r);
		if (end < prev || end > ix->names_bytes)
			return -QUAI_EFORMAT;
		if (qix_check_name((const char *)ix->names + prev, end - prev) < 0)
			return -QUAI_EFORMAT;
		prev = end;
	}
	return prev == ix->names_bytes ? 0 : -QUAI_EFORMAT;
}

int qix_parse(const void *buf, size_t len, struct qix *ret_ix)
{
	const uint8_t *p = buf;
	struct qix ix = {0};
	uint64_t need, t;

	if (len < QIX_HEADER_SIZE + QIX_TRAILER_SIZE || memcmp(p, QIX_MAGIC, 8) != 0)
		return -QUAI_EFORMAT;
	/* The checksum first: a flipped bit anywhere is "corrupt", not a
	 * confusing format complaint about whichever field it landed in. */
	if (XXH3_64bits(p, len - QIX_TRAILER_SIZE) != qle64(p + len - QIX_TRAILER_SIZE))
		return -QUAI_ECORRUPT;
	ix.version = qle32(p + 8);
	if (ix.version != QIX_VERSION)
		return -QUAI_EVERSION;
	ix.flags = qle32(p + 12);
	ix.records = qle64(p + 16);
	ix.nframes = qle32(p + 24);
	ix.fixed_size = qle32(p + 28);
	ix.first_record = qle64(p + 32);
	ix.raw_bytes = qle64(p + 40);
	ix.shard_bytes = qle64(p + 48);
	ix.names_bytes = qle64(p + 56);

	if (ix.flags & ~QIX_F_KNOWN)
		return -QUAI_EFORMAT;
	/* Exactly one of a fixed record size and a record table. */
	if (!!ix.fixed_size == !!(ix.flags & QIX_F_RECORD_TABLE))
		return -QUAI_EFORMAT;
	if (ix.fixed_size > QUAI_RECORD_SIZE_MAX || ix.nframes > QST_MAX_FRAMES ||
	    ix.records > UINT32_MAX || ix.nframes == 0 || ix.records < ix.nframes)
		return -QUAI_EFORMAT;
	if (!(ix.flags & QIX_F_NAMES) && ix.names_bytes != 0)
		return -QUAI_EFORMAT;

	need = QIX_HEADER_SIZE + (uint64_t)ix.nframes * QIX_FRAME_SIZE + QIX_TRAILER_SIZE;
	if (ix.flags & QIX_F_RECORD_TABLE)
		need += ix.records * 4;
	if (ix.flags & QIX_F_NAMES) {
		if (!mul_ok(ix.records, 8, &t) || !add_ok(need, t, &need) ||
		    !add_ok(need, ix.names_bytes, &need))
			return -QUAI_EFORMAT;
	}
	if (need != len)
		return -QUAI_EFORMAT;

	const uint8_t *q = p + QIX_HEADER_SIZE + (size_t)ix.nframes * QIX_FRAME_SIZE;
	if (ix.flags & QIX_F_RECORD_TABLE) {
		ix.record_ends = q;
		q += ix.records * 4;
	}
	if (ix.flags & QIX_F_NAMES) {
		ix.name_ends = q;
		ix.names = q + ix.records * 8;
	}

	ix.frames = calloc(ix.nframes, sizeof(*ix.frames));
	if (!ix.frames)
		return -ENOMEM;
	int r = parse_frames(p + QIX_HEADER_SIZE, &ix);
	if (r == 0 && ix.record_ends)
		r = check_record_table(&ix);
	if (r == 0 && ix.name_ends)
		r = check_names(&ix);
	if (r < 0) {
		free(ix.frames);
		return r;
	}
	*ret_ix = ix;
	return 0;
}

void qix_release(struct qix *ix)
{
	if (!ix)
		return;
	free(ix->frames);
	ix->frames = NULL;
}

void qix_locate(const struct qix *ix, uint64_t rec, uint32_t *ret_frame, uint32_t *ret_offset,
		uint32_t *ret_length)
{
	/* The last frame whose first record is <= rec. */
	uint32_t lo = 0, hi = ix->nframes;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (ix->frames[mid].first_record <= rec)
			lo = mid;
		else
			hi = mid;
	}
	const struct qix_frame *f = &ix->frames[lo];
	uint32_t i = (uint32_t)(rec - f->first_record);
	if (ix->fixed_size) {
		*ret_offset = i * ix->fixed_size;
		*ret_length = ix->fixed_size;
	} else {
		uint32_t start = i ? qle32(ix->record_ends + 4 * (rec - 1)) : 0;
		*ret_offset = start;
		*ret_length = qle32(ix->record_ends + 4 * rec) - start;
	}
	*ret_frame = lo;
}

const char *qix_name(const struct qix *ix, uint64_t rec, size_t *ret_len)
{
	if (!ix->name_ends)
		return NULL;
	uint64_t start = rec ? qle64(ix->name_ends + 8 * (rec - 1)) : 0;
	*ret_len = qle64(ix->name_ends + 8 * rec) - start;
	return (const char *)ix->names + start;
}

/* Grows *buf to hold `more` bytes past *len; sets the sticky error. */
static uint8_t *reserve(struct qix_builder *b, uint8_t **buf, size_t *len, size_t *cap, size_t more)
{
	if (b->err)
		return NULL;
	if (*len + more > *cap) {
		size_t ncap = *cap ? *cap * 2 : 4096;
		while (ncap < *len + more)
			ncap *= 2;
		uint8_t *n = realloc(*buf, ncap);
		if (!n) {
			b->err = -ENOMEM;
			return NULL;
		}
		*buf = n;
		*cap = ncap;
	}
	uint8_t *at = *buf + *len;
	*len += more;
	return at;
}

void qix_builder_record(struct qix_builder *b, uint32_t end, const char *name, size_t name_len)
{
	uint8_t *p = reserve(b, &b->ends, &b->ends_len, &b->ends_cap, 4);
	if (p)
		qput32(p, end);
	if (name) {
		uint8_t *n =
		    reserve(b, (uint8_t **)&b->names, &b->names_len, &b->names_cap, name_len);
		if (n)
			memcpy(n, name, name_len);
		p = reserve(b, &b->name_ends, &b->name_ends_len, &b->name_ends_cap, 8);
		if (p)
			qput64(p, b->names_len);
	}
}

void qix_builder_frame(struct qix_builder *b, uint32_t c_size, uint32_t r_size, uint32_t records,
		       uint64_t c_xxh3, uint64_t xxh64)
{
	uint8_t *p = reserve(b, &b->frames, &b->frames_len, &b->frames_cap, QIX_FRAME_SIZE);
	if (!p)
		return;
	qput64(p, b->c_offset);
	qput32(p + 8, c_size);
	qput32(p + 12, r_size);
	qput32(p + 16, (uint32_t)b->records);
	qput32(p + 20, records);
	qput64(p + 24, c_xxh3);
	qput64(p + 32, xxh64);
	b->c_offset += c_size;
	b->raw_bytes += r_size;
	b->records += records;
	b->nframes++;
}

int qix_builder_finish(struct qix_builder *b, uint32_t flags, uint32_t fixed_size,
		       uint64_t first_record, uint64_t shard_bytes, uint8_t **ret_buf,
		       size_t *ret_len)
{
	if (b->err)
		return b->err;
	size_t len = QIX_HEADER_SIZE + b->frames_len + QIX_TRAILER_SIZE;
	if (flags & QIX_F_RECORD_TABLE)
		len += b->ends_len;
	if (flags & QIX_F_NAMES)
		len += b->name_ends_len + b->names_len;
	uint8_t *buf = calloc(1, len);
	if (!buf)
		return -ENOMEM;
	uint8_t *p = buf;
	memcpy(p, QIX_MAGIC, 8);
	qput32(p + 8, QIX_VERSION);
	qput32(p + 12, flags);
	qput64(p + 16, b->records);
	qput32(p + 24, b->nframes);
	qput32(p + 28, fixed_size);
	qput64(p + 32, first_record);
	qput64(p + 40, b->raw_bytes);
	qput64(p + 48, shard_bytes);
	qput64(p + 56, (flags & QIX_F_NAMES) ? b->names_len : 0);
	p += QIX_HEADER_SIZE;
	if (b->frames_len)
		memcpy(p, b->frames, b->frames_len);
	p += b->frames_len;
	if (flags & QIX_F_RECORD_TABLE) {
		if (b->ends_len)
			memcpy(p, b->ends, b->ends_len);
		p += b->ends_len;
	}
	if (flags & QIX_F_NAMES) {
		if (b->name_ends_len)
			memcpy(p, b->name_ends, b->name_ends_len);
		p += b->name_ends_len;
		if (b->names_len)
			memcpy(p, b->names, b->names_len);
		p += b->names_len;
	}
	qput64(p, XXH3_64bits(buf, len - QIX_TRAILER_SIZE));
	*ret_buf = buf;
	*ret_len = len;
	return 0;
}

void qix_builder_reset(struct qix_builder *b)
{
	free(b->frames);
	free(b->ends);
	free(b->name_ends);
	free(b->names);
	memset(b, 0, sizeof(*b));
}
