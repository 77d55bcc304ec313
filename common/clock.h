/* SPDX-License-Identifier: Apache-2.0 */
/* The monotonic clock, as every room times things. */
#ifndef QUAI_COMMON_CLOCK_H
#define QUAI_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC, in nanoseconds. */
static inline uint64_t qclock_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif /* QUAI_COMMON_CLOCK_H */
