/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz harness for manifest.sig's parser (stager/site/label.h): any input
 * is parsed without a fault; one that parses has its fields within their
 * limits, a signed part that ends where the signature line starts, and
 * reads back the same when written again field by field.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "label.h"
#include "quai/quai.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%d: %s\n", __LINE__, #cond);                              \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	char err[256] = "";
	struct qlbl l, l2;
	int r = qlbl_parse(text, size, &l, err, sizeof(err));

	if (r < 0) {
		CHECK(r == -QUAI_EFORMAT || r == -ENOMEM);
		CHECK(r == -ENOMEM || err[0]);
		return 0;
	}
	CHECK(l.signed_len < size && memcmp(text + l.signed_len, "signature ", 10) == 0);
	CHECK(l.classification >= 1 && l.classification <= 3);
	CHECK(strlen(l.name) >= 1 && strlen(l.zone) >= 1);

	/* Written again, the same text. */
	char hex[129];
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	CHECK(f);
	qkey_hex(l.key, sizeof(l.key), hex);
	fprintf(f, "quai-signature 1\nkey %s\ndataset %s\nclassification %s\nzone %s\n", hex,
		l.name, quai_class_name(l.classification), l.zone);
	qkey_hex(l.manifest_hash, sizeof(l.manifest_hash), hex);
	fprintf(f, "manifest-blake2b %s\n", hex);
	for (uint32_t i = 0; i < l.nshards; i++) {
		qkey_hex(l.shards[i][0], 32, hex);
		fprintf(f, "shard %" PRIu32 " %s ", i, hex);
		qkey_hex(l.shards[i][1], 32, hex);
		fprintf(f, "%s\n", hex);
	}
	qkey_hex(l.sig, sizeof(l.sig), hex);
	fprintf(f, "signature %s\n", hex);
	CHECK(fclose(f) == 0);
	CHECK(len == size && memcmp(out, text, size) == 0);
	CHECK(qlbl_parse(out, len, &l2, err, sizeof(err)) == 0 && l2.nshards == l.nshards);
	qlbl_release(&l2);
	free(out);
	qlbl_release(&l);
	return 0;
}
