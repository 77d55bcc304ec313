/* SPDX-License-Identifier: Apache-2.0 */
/* Little-endian loads and stores for the on-disk formats and the wire
 * protocol. */
#ifndef QUAI_COMMON_BYTEORDER_H
#define QUAI_COMMON_BYTEORDER_H

#include <stdint.h>
#include <string.h>

static inline uint16_t qle16(const void *p)
{
	const uint8_t *b = p;
	return (uint16_t)(b[0] | b[1] << 8);
}

static inline uint32_t qle32(const void *p)
{
	const uint8_t *b = p;
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline uint64_t qle64(const void *p)
{
	return (uint64_t)qle32(p) | (uint64_t)qle32((const uint8_t *)p + 4) << 32;
}

static inline void qput16(void *p, uint16_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
}

static inline void qput32(void *p, uint32_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
	b[2] = (uint8_t)(v >> 16);
	b[3] = (uint8_t)(v >> 24);
}

static inline void qput64(void *p, uint64_t v)
{
	qput32(p, (uint32_t)v);
	qput32((uint8_t *)p + 4, (uint32_t)(v >> 32));
}

#endif
