/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the wire protocol's decoder, HELLO's version-free address, and
 * the slot layout's check, with the same bytes. The encoding is
 * canonical: whatever decodes must encode back to exactly the input, and
 * decode again. A slot that passes its check must be exactly what
 * qp_slot_write() writes for its header, ids and offsets.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Static: a decoded message is up to 70 KiB. */
static struct qp_msg m, again;
static uint8_t out[QP_MSG_MAX];

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* data passed qp_slot_check() with header h: write the same layout again
 * from its parts and compare. */
static void slot_round_trip(const uint8_t *data, const struct qp_slot_header *h)
{
	size_t n = h->count;
	uint64_t *ids = malloc(8 * n + 8), *offs = malloc(8 * n + 8);
	uint8_t *slot = malloc(h->data_off);

	if (!ids || !offs || !slot)
		abort();
	for (size_t i = 0; i < n; i++)
		ids[i] = le64(data + QP_SLOT_HEADER_SIZE + 8 * i);
	for (size_t i = 0; i <= n; i++)
		offs[i] = le64(data + QP_SLOT_HEADER_SIZE + 8 * n + 8 * i);
	if (qp_slot_write(h, ids, offs, slot, h->data_off) != 0)
		abort();
	/* The same bytes up to the end of the offsets; zeros after them
	 * (which the check does not look at). */
	size_t table = QP_SLOT_HEADER_SIZE + 16 * n + 8;
	if (memcmp(slot, data, table) != 0)
		abort();
	for (size_t i = table; i < h->data_off; i++)
		if (slot[i])
			abort();
	if (qp_slot_write(h, ids, offs, slot, h->data_off - 1) != -EMSGSIZE)
		abort();
	free(ids);
	free(offs);
	free(slot);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qp_slot_header h;
	struct qp_blob addr;
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

	/* The address of a HELLO of any version: inside the bytes, within
	 * bounds, and the very one a full decode finds. */
	if (qp_hello_addr(data, size, &addr) == 0) {
		if (addr.len < 1 || addr.len > QP_ADDR_MAX || addr.p < data + QP_HEADER_SIZE ||
		    addr.p + addr.len > data + size)
			abort();
		if (r == 0 && (m.h.type != QP_HELLO || m.u.hello.addr.p != addr.p ||
			       m.u.hello.addr.len != addr.len))
			abort();
	} else if (r == 0 && m.h.type == QP_HELLO) {
		abort(); /* a good HELLO always has one */
	}

	if (qp_slot_check(data, size, &h) == 0) {
		uint8_t slot[QP_SLOT_HEADER_SIZE];

		if (qp_slot_encode(&h, slot) != 0)
			abort();
		if (memcmp(slot, data, QP_SLOT_HEADER_SIZE) != 0)
			abort();
		if (qp_slot_need(h.count, h.bytes) > size)
			abort();
		slot_round_trip(data, &h);
	}
	return 0;
}
