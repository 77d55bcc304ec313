/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quai audit verify: checks an audit log's hash chain (and signatures)
 * through rotated files; quai keygen: makes an Ed25519 key pair for
 * quaid's audit_key or a site's signing key. Thin over the library's
 * auditchain.h and sitekey.h.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auditchain.h"
#include "cli_util.h"
#include "quai/quai.h"
#include "sitekey.h"
#include "verbs.h"

#define MAX_KEYS 64

enum { OPT_KEY = 256, OPT_REQUIRE_SIGNED };

static const char audit_help[] =
    "Usage: quai audit verify [OPTION]... FILE...\n"
    "Check the hash chain of an audit log (quaid's audit_log, or the host's\n"
    "audit_log of /etc/quai/quai.conf). Give rotated files oldest first and the\n"
    "current one last: the chain runs on from one file into the next. The first\n"
    "line changed, deleted, inserted or cut short is named, and nothing after it\n"
    "is trusted.\n"
    "\n"
    "  --key FILE          a public key (quai keygen) that signed lines must\n"
    "                      verify with; may be repeated\n"
    "  --require-signed    every line must be signed with one of the --key keys\n"
    "  -h, --help          show this help\n"
    "\n"
    "On success the chain's head (last seq and hash) is printed: keep it\n"
    "elsewhere, as lines cut from the end of the newest file leave no trace in\n"
    "the file itself.\n"
    "\n";

static const char keygen_help[] =
    "Usage: quai keygen PREFIX\n"
    "Make an Ed25519 key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub\n"
    "(public). Neither file may exist. A secret key signs quaid's audit lines\n"
    "(audit_key in quaid.conf); the public key checks them (quai audit verify\n"
    "--key).\n"
    "\n"
    "  -h, --help          show this help\n"
    "\n";

static int audit_verify(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"key", required_argument, NULL, OPT_KEY},
	    {"require-signed", no_argument, NULL, OPT_REQUIRE_SIGNED},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	static uint8_t keys[MAX_KEYS * QACH_PK_BYTES];
	struct qach_report rep;
	bool require = false;
	size_t nkeys = 0;
	char err[4200];
	int c, r;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_KEY:
			if (nkeys == MAX_KEYS)
				return cli_usage_error("audit", "at most %d --key", MAX_KEYS);
			r = qkey_load_public(optarg, keys + nkeys * QACH_PK_BYTES, err,
					     sizeof(err));
			if (r < 0) {
				cli_errorf("audit", "%s", err);
				return CLI_EXIT_FAILURE;
			}
			nkeys++;
			break;
		case OPT_REQUIRE_SIGNED:
			require = true;
			break;
		case 'h':
			fputs(audit_help, stdout);
			fputs(exit_status_help, stdout);
			return cli_finish_stdout("audit");
		default:
			fputs("Try 'quai audit --help'.\n", stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind >= argc)
		return cli_usage_error("audit", "missing FILE operand");
	if (require && !nkeys)
		return cli_usage_error("audit", "--require-signed needs at least one --key");

	const char *const *paths = (const char *const *)argv + optind;
	size_t npaths = (size_t)(argc - optind);

	r = qach_verify_files(paths, npaths, keys, nkeys, require, &rep);
	if (r == -QUAI_ECORRUPT) {
		cli_errorf("audit", "%s: %s", paths[rep.bad_file], rep.what);
		printf("FAILED: %" PRIu64 " lines verified before the fault\n", rep.lines);
		cli_finish_stdout("audit");
		return CLI_EXIT_BAD_DATA;
	}
	if (r < 0) {
		cli_errorf("audit", "%s: %s", paths[rep.bad_file], rep.what);
		return CLI_EXIT_FAILURE;
	}
	char hex[2 * QACH_HASH_BYTES + 1];

	qkey_hex(rep.last.hash, QACH_HASH_BYTES, hex);
	if (rep.lines == 0) {
		printf("OK: no lines\n");
	} else {
		printf("OK: %" PRIu64 " lines chained, seq %" PRIu64 " to %" PRIu64, rep.lines,
		       rep.first_seq, rep.last.seq);
		if (nkeys)
			printf(", %" PRIu64 " signed", rep.signed_lines);
		printf("\n");
		if (rep.first_seq > 1)
			printf("note: the chain starts at seq %" PRIu64
			       ": it continues an earlier file, not given here\n",
			       rep.first_seq);
		printf("head: seq %" PRIu64 " hash %s\n", rep.last.seq, hex);
	}
	return cli_finish_stdout("audit");
}

int cmd_audit(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "verify") == 0)
		return audit_verify(argc - 1, argv + 1);
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(audit_help, stdout);
		fputs(exit_status_help, stdout);
		return cli_finish_stdout("audit");
	}
	if (argc < 2)
		return cli_usage_error("audit", "missing subcommand (verify)");
	return cli_usage_error("audit", "unknown subcommand '%s' (verify)", argv[1]);
}

int cmd_keygen(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	uint8_t pk[QKEY_PK_BYTES];
	char err[4200], id[QKEY_ID_LEN + 1];
	int c, r;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(keygen_help, stdout);
			fputs(exit_status_help, stdout);
			return cli_finish_stdout("keygen");
		default:
			fputs("Try 'quai keygen --help'.\n", stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("keygen", "expected one PREFIX operand");
	r = qkey_generate(argv[optind], pk, err, sizeof(err));
	if (r < 0) {
		cli_errorf("keygen", "%s", err);
		return CLI_EXIT_FAILURE;
	}
	qkey_id(pk, id);
	printf("%s.key, %s.pub: key %s\n", argv[optind], argv[optind], id);
	return cli_finish_stdout("keygen");
}
