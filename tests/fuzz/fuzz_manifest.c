/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzzes the manifest parser. Half of the inputs get a valid checksum
 * appended, so the fuzzer reaches the validation past the checksum. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qmf m;
	char err[256];
	if (qmf_parse((const char *)data, size, &m, err, sizeof(err)) == 0)
		qmf_release(&m);

	/* Seal: treat the input as everything before the checksum member. */
	char *sealed = malloc(size + 64);
	if (!sealed)
		return 0;
	memcpy(sealed, data, size);
	int n = snprintf(sealed + size, 64, QMF_CHECKSUM_KEY ": \"%016" PRIx64 "\"\n}\n",
			 XXH3_64bits(data, size));
	if (qmf_parse(sealed, size + (size_t)n, &m, err, sizeof(err)) == 0) {
		char *text;
		size_t len;
		/* What parses must encode and parse back to the same checksum
		 * of the same content. */
		if (qmf_encode(&m, &text, &len) == 0) {
			struct qmf again;
			if (qmf_parse(text, len, &again, NULL, 0) != 0)
				abort();
			if (again.records != m.records || again.nshards != m.nshards)
				abort();
			qmf_release(&again);
			free(text);
		}
		qmf_release(&m);
	}
	free(sealed);
	return 0;
}
