/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzzes the stored-frame walker (qds_stored_segments), with libzstd as
 * the oracle: a frame the walker maps must be one libzstd decodes to
 * exactly the bytes the map points at, unless its content checksum is
 * wrong, and then libzstd must refuse it too. The input is 4 bytes of
 * raw size (little-endian, taken modulo 4 MiB), then the frame. */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <zstd.h>

#include "byteorder.h"
#include "dataset.h"
#include "quai/quai.h"

#define MAX_SEGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	uint64_t r = qle32(data) % (4u << 20);
	const uint8_t *frame = data + 4;
	size_t c = size - 4;
	struct qds_seg segs[MAX_SEGS];
	uint64_t ck = 0;
	uint32_t n = qds_stored_segments(frame, c, r, segs, MAX_SEGS, &ck);
	if (n == 0)
		return 0;
	if (n > MAX_SEGS || (ck && ck + 4 != c))
		abort();
	uint8_t *raw = malloc(r), *out = malloc(r + 1);
	if (!raw || !out)
		abort();
	uint64_t at = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (segs[i].raw_off != at || segs[i].len == 0 ||
		    (uint64_t)segs[i].src_off + segs[i].len > c)
			abort();
		memcpy(raw + at, frame + segs[i].src_off, segs[i].len);
		at += segs[i].len;
	}
	if (at != r)
		abort();
	uint64_t h = XXH64(raw, r, 0);
	int ck_ok = !ck || qle32(frame + ck) == (uint32_t)h;
	size_t got = ZSTD_decompress(out, r + 1, frame, c);
	if (ck_ok ? (ZSTD_isError(got) || got != r || memcmp(out, raw, r) != 0)
		  : !ZSTD_isError(got))
		abort();

	/* The same frame as `quai verify` maps it: mapped, checked,
	 * and refused once its recorded hash is off by one. */
	struct qix_frame f = {
	    .c_size = c, .r_size = r, .c_xxh3 = XXH3_64bits(frame, c), .xxh64 = h};
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	uint32_t m = 0;
	int e = qds_decode_frame_map(dctx, &f, frame, out, segs, MAX_SEGS, QDS_MAP_CHECK_RAW, &m);
	if (ck_ok ? (e != 0 || m != n) : e != -QUAI_ECORRUPT)
		abort();
	/* The engine's way leaves the raw bytes to XXH3: mapped the same. */
	if (qds_decode_frame_map(dctx, &f, frame, out, segs, MAX_SEGS, 0, &m) != 0 || m != n)
		abort();
	f.xxh64++;
	if (qds_decode_frame_map(dctx, &f, frame, out, segs, MAX_SEGS, QDS_MAP_CHECK_RAW, &m) !=
	    -QUAI_ECORRUPT)
		abort();
	ZSTD_freeDCtx(dctx);
	free(raw);
	free(out);
	return 0;
}
