/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzzes the record index parser. Inputs are resealed with a valid
 * checksum so the fuzzer explores the consistency checks, and every lookup
 * an accepted index answers is exercised (ASan catches any read outside). */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "byteorder.h"
#include "shardindex.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const struct qix *ix)
{
	for (uint64_t r = 0; r < ix->records; r++) {
		uint32_t f, off, len;
		qix_locate(ix, r, &f, &off, &len);
		if (f >= ix->nframes || (uint64_t)off + len > ix->frames[f].r_size)
			abort();
		size_t nl;
		const char *n = qix_name(ix, r, &nl);
		if (n && qix_check_name(n, nl) != 0)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qix ix;
	if (qix_parse(data, size, &ix) == 0) {
		walk(&ix);
		qix_release(&ix);
	}
	if (size < QIX_HEADER_SIZE + QIX_TRAILER_SIZE || size > (1u << 20))
		return 0;
	uint8_t *copy = malloc(size);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	memcpy(copy, QIX_MAGIC, 8);
	qput64(copy + size - 8, XXH3_64bits(copy, size - 8));
	if (qix_parse(copy, size, &ix) == 0) {
		walk(&ix);
		qix_release(&ix);
	}
	free(copy);
	return 0;
}
