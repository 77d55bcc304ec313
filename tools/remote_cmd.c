/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quai ls and quai stat: what a quaid serves, and how it is doing. Thin
 * over quai_remote_list() and quai_remote_stat().
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "quai/quai.h"
#include "verbs.h"

#define ERR_BUF 1200

enum { OPT_JSON = 256 };

static const char ls_help[] =
    "Usage: quai ls [OPTION]... quai://HOST[:PORT]/\n"
    "List the datasets a quaid serves, in name order: name, record kind,\n"
    "records, raw and compressed sizes, shards, classification and zone.\n"
    "\n"
    "  --json              print one JSON array instead of a table\n"
    "  -h, --help          show this help\n"
    "\n"
    "The port defaults to 7470. The fabric provider is $FI_PROVIDER, else\n"
    "tcp;ofi_rxm. A server silent for $QUAI_REMOTE_TIMEOUT seconds (default 15)\n"
    "ends the command.\n"
    "\n";

static const char stat_help[] =
    "Usage: quai stat [OPTION]... quai://HOST[:PORT]/\n"
    "Show a quaid's state: its clients, their streams, bytes served and the\n"
    "rate over the last second, and its pinned memory.\n"
    "\n"
    "  --json              print the server's JSON object\n"
    "  -h, --help          show this help\n"
    "\n";

static int parse(const char *verb, const char *help, int argc, char **argv, bool *json)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, OPT_JSON},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_JSON:
			*json = true;
			break;
		case 'h':
			fputs(help, stdout);
			fputs(exit_status_help, stdout);
			return -1;
		default:
			fprintf(stderr, "Try 'quai %s --help'.\n", verb);
			return CLI_EXIT_USAGE;
		}
	}
	if (argc - optind != 1 || !quai_uri_is_remote(argv[optind])) {
		fprintf(stderr,
			"quai %s: expected one quai://HOST[:PORT]/ operand\n"
			"Try 'quai %s --help'.\n",
			verb, verb);
		return CLI_EXIT_USAGE;
	}
	return 0;
}

struct ls_state {
	bool json;
	struct cli_json j;
	unsigned n;
};

static int ls_one(const struct quai_remote_dataset *d, void *arg)
{
	struct ls_state *st = arg;
	char name[QUAI_NAME_MAX + 1], zone[QUAI_ZONE_MAX + 1], raw[32], comp[32];
	const char *kind = quai_record_kind_name(d->kind),
		   *cls = quai_class_name(d->classification);
	if (st->json) {
		cli_json_begin_object(&st->j, NULL);
		cli_json_string(&st->j, "name", d->name);
		cli_json_string(&st->j, "kind", kind ? kind : "?");
		cli_json_u64(&st->j, "records", d->records);
		cli_json_u64(&st->j, "raw_bytes", d->raw_bytes);
		cli_json_u64(&st->j, "compressed_bytes", d->compressed_bytes);
		cli_json_u64(&st->j, "shards", d->shards);
		cli_json_string(&st->j, "classification", cls ? cls : "?");
		cli_json_string(&st->j, "zone", d->zone);
		cli_json_end_object(&st->j);
	} else {
		if (st->n == 0)
			printf("%-24s %-5s %12s %10s %10s %6s %-9s %s\n", "NAME", "KIND", "RECORDS",
			       "RAW", "STORED", "SHARDS", "CLASS", "ZONE");
		cli_format_bytes(d->raw_bytes, raw, sizeof(raw));
		cli_format_bytes(d->compressed_bytes, comp, sizeof(comp));
		printf("%-24s %-5s %12" PRIu64 " %10s %10s %6" PRIu32 " %-9s %s\n",
		       cli_printable(d->name, name, sizeof(name)), kind ? kind : "?", d->records,
		       raw, comp, d->shards, cls ? cls : "?",
		       cli_printable(d->zone, zone, sizeof(zone)));
	}
	st->n++;
	return 0;
}

int cmd_ls(int argc, char **argv)
{
	struct ls_state st = {0};
	char err[ERR_BUF] = "", shown[ERR_BUF];
	int r = parse("ls", ls_help, argc, argv, &st.json);
	if (r)
		return r < 0 ? cli_finish_stdout("ls") : r;
	if (st.json) {
		cli_json_init(&st.j, stdout);
		cli_json_begin_array(&st.j, NULL);
	}
	r = quai_remote_list(argv[optind], ls_one, &st, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "quai ls: %s\n",
			cli_printable(err[0] ? err : quai_strerror(r), shown, sizeof(shown)));
		return cli_exit_code(r);
	}
	if (st.json) {
		cli_json_end_array(&st.j);
		cli_json_finish(&st.j);
	} else if (st.n == 0) {
		fprintf(stderr, "quai ls: %s serves no datasets\n", argv[optind]);
	}
	return cli_finish_stdout("ls");
}

int cmd_stat(int argc, char **argv)
{
	bool json = false;
	char err[ERR_BUF] = "", shown[ERR_BUF];
	char *text;
	size_t len;
	int r = parse("stat", stat_help, argc, argv, &json);
	if (r)
		return r < 0 ? cli_finish_stdout("stat") : r;
	r = quai_remote_stat(argv[optind], json ? QUAI_STAT_JSON : QUAI_STAT_TEXT, &text, &len, err,
			     sizeof(err));
	if (r < 0) {
		fprintf(stderr, "quai stat: %s\n",
			cli_printable(err[0] ? err : quai_strerror(r), shown, sizeof(shown)));
		return cli_exit_code(r);
	}
	fwrite(text, 1, len, stdout);
	free(text);
	return cli_finish_stdout("stat");
}
