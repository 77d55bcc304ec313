/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>

#include "byteorder.h"
#include "quai/quai.h"
#include "seektable.h"

size_t qst_encoded_size(uint32_t nframes)
{
	return QST_HEADER_SIZE + (size_t)nframes * 12 + QST_FOOTER_SIZE;
}

int64_t qst_encode(const struct qst_entry *entries, uint32_t n, void *dst, size_t cap)
{
	if (n > QST_MAX_FRAMES)
		return -EINVAL;
	size_t need = qst_encoded_size(n);
	if (cap < need)
		return -ENOSPC;
	uint8_t *p = dst;
	qput32(p, QST_SKIPPABLE_MAGIC);
	qput32(p + 4, (uint32_t)(need - QST_HEADER_SIZE));
	p += QST_HEADER_SIZE;
	for (uint32_t i = 0; i < n; i++, p += 12) {
		qput32(p, entries[i].csize);
		qput32(p + 4, entries[i].rsize);
		qput32(p + 8, entries[i].checksum);
	}
	qput32(p, n);
	p[4] = QST_CHECKSUM_FLAG;
	qput32(p + 5, QST_SEEKABLE_MAGIC);
	return (int64_t)need;
}

int qst_parse_footer(const void *footer, uint32_t *ret_nframes, int *ret_checksums,
		     uint64_t *ret_table_size)
{
	const uint8_t *f = footer;
	if (qle32(f + 5) != QST_SEEKABLE_MAGIC)
		return -QUAI_EFORMAT;
	/* Bits 6..2 are reserved and must be zero; bits 1..0 are unused. */
	if (f[4] & 0x7c)
		return -QUAI_EFORMAT;
	uint32_t n = qle32(f);
	if (n > QST_MAX_FRAMES)
		return -QUAI_EFORMAT;
	int checksums = (f[4] & QST_CHECKSUM_FLAG) != 0;
	*ret_nframes = n;
	*ret_checksums = checksums;
	*ret_table_size = QST_HEADER_SIZE + (uint64_t)n * (checksums ? 12 : 8) + QST_FOOTER_SIZE;
	return 0;
}

int64_t qst_decode(const void *buf, size_t len, struct qst_entry *entries, uint32_t max_entries,
		   int *ret_checksums)
{
	const uint8_t *p = buf;
	if (len < QST_HEADER_SIZE + QST_FOOTER_SIZE)
		return -QUAI_EFORMAT;
	uint32_t n;
	int checksums;
	uint64_t table_size;
	int r = qst_parse_footer(p + len - QST_FOOTER_SIZE, &n, &checksums, &table_size);
	if (r < 0)
		return r;
	if (table_size != len || qle32(p) != QST_SKIPPABLE_MAGIC ||
	    qle32(p + 4) != len - QST_HEADER_SIZE)
		return -QUAI_EFORMAT;
	if (n > max_entries)
		return -ENOSPC;
	size_t esize = checksums ? 12 : 8;
	p += QST_HEADER_SIZE;
	for (uint32_t i = 0; i < n; i++, p += esize) {
		entries[i].csize = qle32(p);
		entries[i].rsize = qle32(p + 4);
		entries[i].checksum = checksums ? qle32(p + 8) : 0;
		if (entries[i].rsize > QST_MAX_FRAME_RSIZE)
			return -QUAI_EFORMAT;
	}
	*ret_checksums = checksums;
	return n;
}
