/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzzes the resume state decoder (stager/engine/plan.h), as
 * quai_stream_open() meets a state from a checkpoint file, and the planner
 * behind it: the check is sealed first so that the fuzzer reaches the
 * fields, a decoded state re-encodes to the same bytes, and a plan built
 * from it (at the world and rank of the first two bytes) answers lookups
 * and gives resume points that decode again. */
#include <stdlib.h>
#include <string.h>

#include "plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct qpl_frame frames[37];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t buf[QPL_STATE_MAX + 8], again[QPL_STATE_MAX + 8];
	struct qpl_params p, q;
	qpl_plan *pl;
	char err[256];
	uint64_t manifest = 0;

	if (size < 2 || size - 2 > sizeof(buf))
		return 0;
	uint32_t world = 1 + data[0] % 64, rank = data[1] % world;
	size -= 2;
	memcpy(buf, data + 2, size);
	for (size_t i = 0; i < 8 && 8 + i < size; i++)
		manifest |= (uint64_t)buf[8 + i] << (8 * i);
	if (size >= QPL_STATE_HEAD && (data[0] & 0x80) == 0)
		qpl_state_seal(buf, size);
	if (qpl_state_decode(buf, size, manifest, &p, err, sizeof(err)) < 0)
		return 0;
	int n = qpl_state_encode(&p, manifest, again, sizeof(again));
	if (n < 0 || (size_t)n != size || memcmp(again, buf, size) != 0)
		abort(); /* a state the decoder takes is canonical */

	uint64_t first = 0;
	for (int f = 0; f < 37; f++) {
		frames[f].first_record = first;
		frames[f].records = 1 + (uint32_t)(f * 29 % 17) + (f % 9 == 0 ? 60 : 0);
		first += frames[f].records;
	}
	p.world = world;
	p.rank = rank;
	if (qpl_new(frames, 37, &p, &pl, err, sizeof(err)) < 0)
		return 0;
	uint64_t count = qpl_local_count(pl);
	for (uint64_t l = 0; l < count; l += 1 + count / 16) {
		struct qpl_item it;
		qpl_item(pl, l, &it);
		if (it.record >= first)
			abort();
	}
	uint64_t cs[] = {0, 1, count / 2, count, count + 1};
	for (size_t i = 0; i < sizeof(cs) / sizeof(cs[0]); i++) {
		if (qpl_resume_point(pl, cs[i], &q, err, sizeof(err)) < 0)
			continue;
		n = qpl_state_encode(&q, manifest, again, sizeof(again));
		if (n < 0 || qpl_state_decode(again, (size_t)n, manifest, &p, err, sizeof(err)) < 0)
			abort();
	}
	qpl_free(pl);
	return 0;
}
