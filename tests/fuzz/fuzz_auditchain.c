/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz harness for the audit log's chain (stager/site/auditchain.h) and the
 * key line (sitekey.h). The input is read three ways:
 *   - as a log: qach_verify_buf() must not fault on it, and when it says
 *     the chain holds, every line parses and the last one is its head;
 *   - as a line: qach_parse() on it, and on the line that qach_seal()
 *     makes of it (its first 40 bytes a seq and a hash, the rest a body),
 *     which must read back as sealed, signed and verifying;
 *   - as a key file's text: qkey_parse().
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "auditchain.h"
#include "sitekey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%d: %s\n", __LINE__, #cond);                              \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* A fixed key pair: the harness must be deterministic. */
static void test_key(uint8_t sk[QKEY_SK_BYTES], uint8_t pk[QKEY_PK_BYTES])
{
	static const char seed_line[] = "quai-ed25519-secret "
					"000102030405060708090a0b0c0d0e0f"
					"101112131415161718191a1b1c1d1e1f";
	uint8_t seed[QKEY_SEED_BYTES];

	CHECK(qkey_parse(seed_line, sizeof(seed_line) - 1, "quai-ed25519-secret", seed) == 0);
	CHECK(crypto_sign_seed_keypair(pk, sk, seed) == 0);
}

static void as_log(const uint8_t *data, size_t size)
{
	struct qach_report rep;
	int r = qach_verify_buf((const char *)data, size, NULL, 0, false, &rep);

	if (r != 0) {
		CHECK(r < 0 && rep.what[0] && rep.bad_line >= 1);
		return;
	}
	/* Every line parsed and chained: count them. */
	uint64_t lines = 0;
	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	CHECK(rep.lines == lines);
	CHECK(size == 0 || data[size - 1] == '\n');
}

static void as_line(const uint8_t *data, size_t size)
{
	static const uint8_t zero[QACH_HASH_BYTES];
	struct qach_fields f;
	uint8_t sk[QKEY_SK_BYTES], pk[QKEY_PK_BYTES];
	struct qach_head head = {0};

	if (qach_parse((const char *)data, size, &f) == 0) {
		CHECK(f.seq >= 1);
		CHECK(!f.has_sig || f.signed_len < size);
	}
	if (size < 40)
		return;
	for (int i = 0; i < 8; i++)
		head.seq = head.seq << 8 | data[i];
	if (head.seq == UINT64_MAX)
		head.seq--;
	memcpy(head.hash, data + 8, QACH_HASH_BYTES);

	/* The body: '{', the rest with its newlines replaced, "}\n". */
	size_t n = size - 40;
	char *body = malloc(n + 3);
	CHECK(body);
	body[0] = '{';
	for (size_t i = 0; i < n; i++)
		body[1 + i] = data[40 + i] == '\n' ? ' ' : (char)data[40 + i];
	memcpy(body + 1 + n, "}\n", 2);

	test_key(sk, pk);
	for (int sign = 0; sign < 2; sign++) {
		size_t need = qach_seal(body, n + 3, &head, sign ? sk : NULL, NULL, 0);
		char *line = malloc(need + 1);

		CHECK(line && need > n + 3);
		CHECK(qach_seal(body, n + 3, &head, sign ? sk : NULL, line, need + 1) == need);
		CHECK(line[need - 1] == '\n' && memcmp(line, body, n + 1) == 0);
		CHECK(qach_parse(line, need - 1, &f) == 0);
		CHECK(f.seq == head.seq + 1 && memcmp(f.prev, head.hash, QACH_HASH_BYTES) == 0);
		CHECK(f.has_sig == (sign == 1));
		if (head.seq == 0 && !memcmp(head.hash, zero, QACH_HASH_BYTES)) {
			struct qach_report rep;

			CHECK(qach_verify_buf(line, need, sign ? pk : NULL, sign, sign, &rep) == 0);
		} else if (sign) {
			/* One flipped byte of the signed part: refused. */
			struct qach_report rep;
			size_t at = data[0] % f.signed_len;

			line[at] ^= 0x01;
			if (qach_parse(line, need - 1, &f) == 0 && f.has_sig)
				CHECK(qach_verify_buf(line, need, pk, 1, true, &rep) < 0);
		}
		free(line);
	}
	free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t key[QKEY_SEED_BYTES];

	as_log(data, size);
	as_line(data, size);
	(void)qkey_parse((const char *)data, size, "quai-ed25519-public", key);
	return 0;
}
