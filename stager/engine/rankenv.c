/* SPDX-License-Identifier: Apache-2.0 */
/* A process's rank and world from its launcher's environment (torchrun,
 * srun): quai_rank_from_env(). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "quai/quai.h"

/* The value of `name` as a decimal uint32_t: 0, -ENOENT (unset), -EINVAL. */
static int env_u32(const char *name, uint32_t *ret_v, char *err, size_t err_len)
{
	const char *s = getenv(name);
	if (!s)
		return -ENOENT;
	size_t n = strlen(s);
	if (n == 0 || n > 10 || strspn(s, "0123456789") != n) {
		qerr_set(err, err_len, "$%s='%.40s' is not a decimal number", name, s);
		return -EINVAL;
	}
	uint64_t v = strtoull(s, NULL, 10);
	if (v > UINT32_MAX) {
		qerr_set(err, err_len, "$%s=%s is out of range (at most %" PRIu32 ")", name, s,
			 UINT32_MAX);
		return -EINVAL;
	}
	*ret_v = (uint32_t)v;
	return 0;
}

int quai_rank_from_env(uint32_t *ret_rank, uint32_t *ret_world, uint32_t *ret_local_rank, char *err,
		       size_t err_len)
{
	static const char *const names[][3] = {
	    {"RANK", "WORLD_SIZE", "LOCAL_RANK"},
	    {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!getenv(names[i][0]) || !getenv(names[i][1]))
			continue;
		uint32_t rank = 0, world = 0, local = 0;
		int r = env_u32(names[i][0], &rank, err, err_len);
		if (r == 0)
			r = env_u32(names[i][1], &world, err, err_len);
		if (r == 0) {
			r = env_u32(names[i][2], &local, err, err_len);
			if (r == -ENOENT)
				r = 0;
		}
		if (r < 0)
			return r;
		if (world == 0 || rank >= world) {
			qerr_set(err, err_len, "$%s=%" PRIu32 " is not a rank of $%s=%" PRIu32,
				 names[i][0], rank, names[i][1], world);
			return -EINVAL;
		}
		if (ret_rank)
			*ret_rank = rank;
		if (ret_world)
			*ret_world = world;
		if (ret_local_rank)
			*ret_local_rank = local;
		return 0;
	}
	qerr_set(err, err_len, "%s",
		 "neither $RANK and $WORLD_SIZE nor $SLURM_PROCID and $SLURM_NTASKS are set");
	return -ENOENT;
}
