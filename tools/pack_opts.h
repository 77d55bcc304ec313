/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The options that shape a packed dataset (--records, --level, --frame-size,
 * --shard-size, --threads, --class, --zone), parsed one way for every verb
 * that packs: quai push packs raw input on the way with the same options
 * and the same messages as quai pack.
 */
#ifndef QUAI_TOOLS_PACK_OPTS_H
#define QUAI_TOOLS_PACK_OPTS_H

#include <getopt.h>
#include <stdbool.h>

#include "quai/quai.h"

/* getopt_long values, clear of any verb's own (which stay below 0x200). */
enum {
	PACK_OPT_RECORDS = 0x200,
	PACK_OPT_LEVEL,
	PACK_OPT_FRAME_SIZE,
	PACK_OPT_SHARD_SIZE,
	PACK_OPT_THREADS,
	PACK_OPT_CLASS,
	PACK_OPT_ZONE,
};

/* The entries of a struct option table, to splice into a verb's table. */
#define PACK_LONGOPTS                                                                              \
	{"records", required_argument, NULL, PACK_OPT_RECORDS},                                    \
	    {"level", required_argument, NULL, PACK_OPT_LEVEL},                                    \
	    {"frame-size", required_argument, NULL, PACK_OPT_FRAME_SIZE},                          \
	    {"shard-size", required_argument, NULL, PACK_OPT_SHARD_SIZE},                          \
	    {"threads", required_argument, NULL, PACK_OPT_THREADS},                                \
	    {"class", required_argument, NULL, PACK_OPT_CLASS},                                    \
	{                                                                                          \
		"zone", required_argument, NULL, PACK_OPT_ZONE                                     \
	}

/* Their lines of --help. */
#define PACK_OPTS_HELP                                                                             \
	"  --records KIND      files (default): one record per regular file, directories\n"        \
	"                      walked recursively; lines: one record per line of each\n"           \
	"                      SRC ('-' reads standard input); fixed:N: records of N bytes\n"      \
	"  --level N           zstd compression level (default 3)\n"                               \
	"  --frame-size SIZE   raw bytes per zstd frame (default 2MiB)\n"                          \
	"  --shard-size SIZE   compressed bytes per shard file (default 1GiB)\n"                   \
	"  --threads N         compression threads (default: online cores); the output\n"          \
	"                      is byte-identical whatever N is\n"                                  \
	"  --class CLASS       public, internal (default) or sensitive\n"                          \
	"  --zone LABEL        residency zone (default: the host's, from $QUAI_CONF or\n"          \
	"                      /etc/quai/quai.conf, else \"none\")\n"

struct pack_cli {
	struct quai_pack_opts o;
	char zone[QUAI_ZONE_MAX + 1];
	bool given; /* at least one of the options was on the command line */
};

/* quai pack's defaults. */
void pack_cli_init(struct pack_cli *p);

/* Handles getopt_long's value c with its argument. Returns 1 when c is
 * not one of these options, 0 when it was parsed into p, or an exit status
 * (CLI_EXIT_USAGE) after a usage error was printed as "quai VERB: ...". */
int pack_cli_option(const char *verb, int c, const char *arg, struct pack_cli *p);

/* Takes the host's zone when --zone was not given. Returns 0, or an exit
 * status after printing why the host's zone could not be read. */
int pack_cli_finish(const char *verb, struct pack_cli *p);

#endif
