/* SPDX-License-Identifier: Apache-2.0 */
/* quai_rank_from_env(): rank, world and local rank from torchrun's or
 * Slurm's variables. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quai/quai.h"

static const char *const all_vars[] = {"RANK",	       "WORLD_SIZE",   "LOCAL_RANK",
				       "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"};

static void clear_env(void)
{
	for (size_t i = 0; i < sizeof(all_vars) / sizeof(all_vars[0]); i++)
		unsetenv(all_vars[i]);
}

TestSuite(rankenv, .init = clear_env);

Test(rankenv, slurm_variables)
{
	setenv("SLURM_PROCID", "5", 1);
	setenv("SLURM_NTASKS", "8", 1);
	setenv("SLURM_LOCALID", "1", 1);
	uint32_t rank = 99, world = 99, local = 99;
	char err[256] = "";
	cr_assert_eq(quai_rank_from_env(&rank, &world, &local, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rank, 5);
	cr_assert_eq(world, 8);
	cr_assert_eq(local, 1);
}

Test(rankenv, torchrun_variables_win_over_slurm)
{
	setenv("SLURM_PROCID", "5", 1);
	setenv("SLURM_NTASKS", "8", 1);
	setenv("RANK", "2", 1);
	setenv("WORLD_SIZE", "4", 1);
	uint32_t rank = 99, world = 99, local = 99;
	cr_assert_eq(quai_rank_from_env(&rank, &world, &local, NULL, 0), 0);
	cr_assert_eq(rank, 2);
	cr_assert_eq(world, 4);
	cr_assert_eq(local, 0, "LOCAL_RANK unset is 0");
}

Test(rankenv, none_set_is_enoent_and_writes_nothing)
{
	setenv("SLURM_PROCID", "1", 1); /* half a pair counts as unset */
	uint32_t rank = 7, world = 7, local = 7;
	char err[256] = "";
	cr_assert_eq(quai_rank_from_env(&rank, &world, &local, err, sizeof(err)), -ENOENT);
	cr_assert_eq(rank, 7);
	cr_assert_eq(world, 7);
	cr_assert_eq(local, 7);
	cr_assert(strstr(err, "SLURM_NTASKS"), "%s", err);
}

Test(rankenv, malformed_values_name_the_variable)
{
	static const struct {
		const char *rank, *world, *local, *named;
	} cases[] = {
	    {"x", "4", "0", "$SLURM_PROCID='x'"},
	    {"1", "", "0", "$SLURM_NTASKS=''"},
	    {"-1", "4", "0", "$SLURM_PROCID='-1'"},
	    {"1", "4", "0x1", "$SLURM_LOCALID='0x1'"},
	    {"1", "4294967296", "0", "$SLURM_NTASKS=4294967296 is out of range"},
	    {"4", "4", "0", "$SLURM_PROCID=4 is not a rank of $SLURM_NTASKS=4"},
	    {"0", "0", "0", "$SLURM_PROCID=0 is not a rank of $SLURM_NTASKS=0"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		setenv("SLURM_PROCID", cases[i].rank, 1);
		setenv("SLURM_NTASKS", cases[i].world, 1);
		setenv("SLURM_LOCALID", cases[i].local, 1);
		uint32_t rank = 7, world = 7, local = 7;
		char err[256] = "";
		cr_assert_eq(quai_rank_from_env(&rank, &world, &local, err, sizeof(err)), -EINVAL,
			     "case %zu", i);
		cr_assert(strstr(err, cases[i].named), "case %zu: %s", i, err);
		cr_assert_eq(rank, 7);
		cr_assert_eq(world, 7);
		cr_assert_eq(local, 7);
	}
}

Test(rankenv, null_out_params)
{
	setenv("SLURM_PROCID", "0", 1);
	setenv("SLURM_NTASKS", "1", 1);
	cr_assert_eq(quai_rank_from_env(NULL, NULL, NULL, NULL, 0), 0);
}
