/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quai sign: a data steward signs a dataset's label (name, classification,
 * zone) and content with a site key; and the signature report of quai
 * verify. Thin over the library's label.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "label.h"
#include "quai/quai.h"
#include "sitekey.h"
#include "verbs.h"

enum { OPT_KEY = 256, OPT_REPLACE };

static const char sign_help[] =
    "Usage: quai sign [OPTION]... DATASET --key SECRET\n"
    "Sign a dataset's label and content with a site key (quai keygen), as a data\n"
    "steward: its name, classification and zone, its manifest and every shard\n"
    "and index file, into DATASET/manifest.sig (docs/FORMAT.md). A quaid given\n"
    "the site's public keys serves only datasets whose signature holds.\n"
    "\n"
    "  --key FILE          the secret key to sign with (required)\n"
    "  --replace           replace an existing signature\n"
    "  -h, --help          show this help\n"
    "\n";

int label_sign(const char *verb, const char *path, const char *key, bool replace, bool quiet)
{
	uint8_t sk[QKEY_SK_BYTES], pk[QKEY_PK_BYTES];
	char err[4400] = "", id[QKEY_ID_LEN + 1], zone[QUAI_ZONE_MAX + 1];
	int r, cls;

	r = qkey_load_secret(key, sk, pk, err, sizeof(err));
	if (r < 0) {
		cli_errorf(verb, "%s", err);
		return CLI_EXIT_FAILURE;
	}
	r = qlbl_sign_dataset(path, sk, replace, &cls, zone, err, sizeof(err));
	explicit_bzero(sk, sizeof(sk));
	if (r < 0) {
		cli_errorf(verb, "%s", err);
		return r == -QUAI_EEXISTS ? CLI_EXIT_FAILURE : cli_exit_code(r);
	}
	if (!quiet) {
		qkey_id(pk, id);
		printf("%s: signed as %s, zone %s, by key %s\n", path, quai_class_name(cls), zone,
		       id);
	}
	return 0;
}

int label_key_usable(const char *verb, const char *key)
{
	uint8_t sk[QKEY_SK_BYTES], pk[QKEY_PK_BYTES];
	char err[4400] = "";
	int r = qkey_load_secret(key, sk, pk, err, sizeof(err));

	explicit_bzero(sk, sizeof(sk));
	if (r < 0) {
		cli_errorf(verb, "%s", err);
		return CLI_EXIT_FAILURE;
	}
	return 0;
}

int cmd_sign(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"key", required_argument, NULL, OPT_KEY},
	    {"replace", no_argument, NULL, OPT_REPLACE},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	const char *key = NULL;
	bool replace = false;
	int c, r;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_KEY:
			key = optarg;
			break;
		case OPT_REPLACE:
			replace = true;
			break;
		case 'h':
			fputs(sign_help, stdout);
			fputs(exit_status_help, stdout);
			return cli_finish_stdout("sign");
		default:
			fputs("Try 'quai sign --help'.\n", stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("sign", "expected one DATASET operand");
	if (!key)
		return cli_usage_error("sign", "--key SECRET is required");
	r = label_sign("sign", argv[optind], key, replace, false);
	if (r)
		return r;
	return cli_finish_stdout("sign");
}

int label_report(const char *path, const char *keys_spec, bool require, char *line, size_t len_)
{
	uint8_t *keys = NULL;
	size_t nkeys = 0;
	char err[4400] = "", why[1024] = "";
	int r, st;

	r = qlbl_host_keys(&keys, &nkeys, err, sizeof(err));
	if (r == 0 && keys_spec)
		r = qlbl_load_keys(keys_spec, &keys, &nkeys, err, sizeof(err));
	if (r < 0) {
		free(keys);
		cli_errorf("verify", "%s", err);
		return CLI_EXIT_FAILURE;
	}
	/* A dataset whose manifest does not open is left to the data check,
	 * which says why. */
	st = qlbl_check_dataset(path, keys, nkeys, true, why, sizeof(why));
	free(keys);
	if (st == -QLBL_NO_MANIFEST)
		return 0;
	if (st < 0) {
		cli_errorf("verify", "'%s': cannot check its signature: %s", path, why);
		return cli_exit_code(st);
	}
	if (st == QLBL_BAD) {
		cli_errorf("verify", "'%s': signature: bad: %s", path, why);
		return CLI_EXIT_BAD_DATA;
	}
	if (st != QLBL_SIGNED && require) {
		cli_errorf("verify", "'%s': signature: %s: %s", path, qlbl_status_name(st), why);
		return CLI_EXIT_BAD_DATA;
	}
	snprintf(line, len_, "%s: signature: %s: %s\n", path, qlbl_status_name(st), why);
	return 0;
}
