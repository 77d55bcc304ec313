/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the wire protocol's decoder, and the slot header's check, with
 * the same bytes. The encoding is canonical: whatever decodes must encode
 * back to exactly the input, and decode again. A slot header that passes
 * its check must be exactly what qp_slot_encode() writes for it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Static: a decoded message is up to 70 KiB. */
static struct qp_msg m, again;
static uint8_t out[QP_MSG_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qp_slot_header h;
	char err[256];
	int r, n;

	r = qp_decode(data, size, &m, err, sizeof(err));
	if (r == 0) {
		n = qp_encode(&m, out, sizeof(out));
		if (n < 0 || (size_t)n != size || memcmp(out, data, size) != 0)
			abort();
		if (qp_decode(out, (size_t)n, &again, err, sizeof(err)) != 0)
			abort();
		if (again.h.type != m.h.type || again.h.req != m.h.req)
			abort();
	} else if (err[0] == '\0') {
		abort(); /* every refusal says why */
	}

	if (qp_slot_check(data, size, &h) == 0) {
		uint8_t slot[QP_SLOT_HEADER_SIZE];

		qp_slot_encode(&h, slot);
		if (memcmp(slot, data, QP_SLOT_HEADER_SIZE) != 0)
			abort();
		if (qp_slot_need(h.count, h.bytes) > size)
			abort();
	}
	return 0;
}
