/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quai push and quai pull: whole datasets to and from a quaid. Thin over
 * quai_push() and quai_pull(); push packs raw input first with
 * quai_pack(), the options parsed as quai pack parses them (pack_opts.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_util.h"
#include "conn.h"
#include "pack_opts.h"
#include "quai/quai.h"
#include "verbs.h"

#define ERR_BUF 4096
#define PATH_BUF 4096

static const char push_help[] =
    "Usage: quai push [OPTION]... SRC... quai://HOST[:PORT]/NAME\n"
    "Send a dataset to a quaid as NAME. quaid writes it under a temporary name,\n"
    "checks every checksum, syncs it and renames it into place: it appears whole or\n"
    "not at all, and never replaces a dataset. A SRC that is a dataset directory\n"
    "(one holding a manifest.json) is sent as it is, and its name must be NAME;\n"
    "any other input is packed first, as 'quai pack' packs it, into a temporary\n"
    "directory under $TMPDIR that is removed afterwards (for --class sensitive,\n"
    "$TMPDIR must be one of this host's sovereign_paths). Run again after an\n"
    "interruption, a push sends only what quaid does not have yet.\n"
    "\n"
    "Packing raw input (as quai pack):\n" PACK_OPTS_HELP "Other options:\n"
    "  -q, --quiet         no progress and no summary\n"
    "  -h, --help          show this help\n"
    "\n"
    "The port defaults to 7470; the fabric provider is $FI_PROVIDER, else\n"
    "tcp;ofi_rxm. A server silent for $QUAI_REMOTE_TIMEOUT seconds (default 15)\n"
    "ends the command. On a terminal a progress line is drawn on stderr; at the end\n"
    "a summary line is printed on stdout.\n"
    "\n";

static const char pull_help[] =
    "Usage: quai pull [OPTION]... quai://HOST[:PORT]/NAME DEST\n"
    "Copy the dataset NAME from a quaid to the new directory DEST. Every checksum\n"
    "of the copy is checked before DEST appears, whole or not at all. An\n"
    "interrupted pull leaves a hidden partial copy beside DEST; run again, it\n"
    "keeps those bytes and fetches only the rest. A sensitive dataset is only\n"
    "pulled to a host of its zone, and into one of the host's sovereign_paths\n"
    "($QUAI_CONF, else /etc/quai/quai.conf).\n"
    "\n"
    "  --unpack            restore the records at DEST instead (as quai unpack):\n"
    "                      a directory of files, or one file of lines or records\n"
    "  -q, --quiet         no progress and no summary\n"
    "  -h, --help          show this help\n"
    "\n"
    "The port defaults to 7470; the fabric provider is $FI_PROVIDER, else\n"
    "tcp;ofi_rxm. A server silent for $QUAI_REMOTE_TIMEOUT seconds (default 15)\n"
    "ends the command. On a terminal a progress line is drawn on stderr; at the end\n"
    "a summary line is printed on stdout.\n"
    "\n";

enum { OPT_UNPACK = 256 };

/* ---- messages --------------------------------------------------------- */

/* A failed library call: its message names what and where; without one,
 * `context` says what was being done. */
static void report(const char *verb, int err, const char *msg, const char *context)
{
	char shown[ERR_BUF];

	if (msg[0] && strcmp(msg, quai_strerror(err)) != 0)
		cli_errorf(verb, "%s", cli_printable(msg, shown, sizeof(shown)));
	else
		cli_errorf(verb, "%s: %s", context, quai_strerror(err));
}

/* The URI operand: a quai:// URI naming a dataset. */
static int check_uri(const char *verb, const char *uri, struct qconn_uri *u)
{
	char err[512], shown[PATH_BUF];

	if (!quai_uri_is_remote(uri))
		return cli_usage_error(verb, "'%s' is not a quai://HOST[:PORT]/NAME URI",
				       cli_printable(uri, shown, sizeof(shown)));
	if (qconn_parse_uri(uri, u, err, sizeof(err)) < 0)
		return cli_usage_error(verb, "%s", cli_printable(err, shown, sizeof(shown)));
	if (!u->name[0])
		return cli_usage_error(verb, "'%s' names no dataset (quai://HOST[:PORT]/NAME)",
				       cli_printable(uri, shown, sizeof(shown)));
	return 0;
}

int cli_check_dataset_uri(const char *verb, const char *uri)
{
	struct qconn_uri u;

	return check_uri(verb, uri, &u);
}

/* ---- progress and summary --------------------------------------------- */

struct xfer_ctx {
	struct cli_progress prog;
	const char *what; /* "packing" while push packs */
};

static int xfer_progress(const struct quai_xfer_progress *p, void *arg)
{
	struct xfer_ctx *ctx = arg;
	char extra[128], skipped[32];

	cli_format_bytes(p->bytes_skipped, skipped, sizeof(skipped));
	snprintf(extra, sizeof(extra), "%" PRIu32 "/%" PRIu32 " files%s%s%s", p->files_done,
		 p->files_total, p->bytes_skipped ? ", " : "", p->bytes_skipped ? skipped : "",
		 p->bytes_skipped ? " already there" : "");
	cli_progress_update(&ctx->prog, p->bytes_done, p->bytes_total, extra, false);
	return cli_interrupted() ? 1 : 0;
}

static int pack_progress(const struct quai_pack_progress *p, void *arg)
{
	struct xfer_ctx *ctx = arg;
	char extra[96];

	snprintf(extra, sizeof(extra), "packing: %" PRIu64 " records", p->records);
	cli_progress_update(&ctx->prog, p->bytes_in, p->bytes_total, extra, false);
	return cli_interrupted() ? 1 : 0;
}

/* "X moved, Y already there, N files, T, R MB/s" */
static void summary(char *buf, size_t len, const struct quai_xfer_result *res, double elapsed)
{
	char moved[32], skipped[32], stime[32];

	cli_format_bytes(res->bytes_moved, moved, sizeof(moved));
	cli_format_bytes(res->bytes_skipped, skipped, sizeof(skipped));
	cli_format_duration(elapsed, stime, sizeof(stime));
	snprintf(buf, len, "%s moved, %s skipped (already there), %" PRIu32 " files, %s, %.1f MB/s",
		 moved, skipped, res->files, stime, cli_rate_mbs(res->bytes_moved, elapsed));
}

/* ---- push ------------------------------------------------------------- */

/* A directory holding a manifest.json: a dataset, sent as it is. */
static bool is_dataset_dir(const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	bool yes;

	if (fd < 0)
		return false;
	yes = fstatat(fd, "manifest.json", &st, 0) == 0 && S_ISREG(st.st_mode);
	close(fd);
	return yes;
}

/* Packs the sources into a new temporary directory; *ret_tmp is that
 * directory (to remove), *ret_ds the dataset inside it. Returns 0 or an
 * exit status after printing why. */
static int pack_to_temp(int nsrcs, char **srcs, const char *name, struct pack_cli *pc,
			struct xfer_ctx *ctx, bool quiet, char *tmp, size_t tmp_len, char *ds,
			size_t ds_len)
{
	const char *base = getenv("TMPDIR");
	char err[ERR_BUF], context[PATH_BUF], shown[PATH_BUF];
	struct quai_pack_result pres = {0};
	int r;

	if (!base || !base[0])
		base = "/tmp";
	if ((size_t)snprintf(tmp, tmp_len, "%s/quai-push-XXXXXX", base) >= tmp_len ||
	    !mkdtemp(tmp)) {
		r = errno ? -errno : -ENAMETOOLONG;
		cli_errorf("push", "cannot make a temporary directory under '%s': %s",
			   cli_printable(base, shown, sizeof(shown)), quai_strerror(r));
		tmp[0] = '\0';
		return cli_exit_code(r);
	}
	if ((size_t)snprintf(ds, ds_len, "%s/%s", tmp, name) >= ds_len) {
		cli_errorf("push", "'%s/%s': %s", tmp, name, quai_strerror(-ENAMETOOLONG));
		return CLI_EXIT_FAILURE;
	}
	pc->o.name = name;
	pc->o.progress = pack_progress;
	pc->o.progress_arg = ctx;
	err[0] = '\0';
	r = quai_pack((const char *const *)srcs, (size_t)nsrcs, ds, &pc->o, &pres, err,
		      sizeof(err));
	cli_progress_clear(&ctx->prog);
	if (r < 0 && (r == -ECANCELED || cli_interrupted())) {
		cli_errorf("push", "interrupted while packing; nothing was sent");
		return cli_exit_code(-ECANCELED);
	}
	if (r == -EINVAL) {
		report("push", r, err, "invalid option value");
		fputs("Try 'quai push --help'.\n", stderr);
		return CLI_EXIT_USAGE;
	}
	if (r < 0) {
		snprintf(context, sizeof(context), "cannot pack the input of '%s'", name);
		report("push", r, err, context);
		/* quai_pack() made the host's decision on the temporary copy. */
		if (r == -QUAI_EPOLICY && pc->o.classification == QUAI_CLASS_SENSITIVE)
			fprintf(stderr,
				"quai push: raw input is packed into a temporary copy under "
				"$TMPDIR (%s) first: set TMPDIR to a sovereign path, or pack the "
				"dataset there with 'quai pack' and push that\n",
				cli_printable(base, shown, sizeof(shown)));
		return cli_exit_code(r);
	}
	if (!quiet) {
		char raw[32], comp[32];
		cli_format_bytes(pres.raw_bytes, raw, sizeof(raw));
		cli_format_bytes(pres.compressed_bytes, comp, sizeof(comp));
		fprintf(stderr, "quai push: packed %" PRIu64 " records, %s raw, %s compressed\n",
			pres.records, raw, comp);
	}
	return 0;
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st, (void)ftw;
	if (type == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

/* Removes the temporary directory of a packed push, whatever it holds. */
static void remove_temp(const char *tmp)
{
	if (tmp[0])
		nftw(tmp, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

int cmd_push(int argc, char **argv)
{
	static const struct option longopts[] = {
	    PACK_LONGOPTS,
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct pack_cli pc;
	struct xfer_ctx ctx = {0};
	struct quai_xfer_opts xo = {.size = sizeof(xo)};
	struct quai_xfer_result res = {0};
	struct qconn_uri u;
	char err[ERR_BUF], context[PATH_BUF], line[256], shown[PATH_BUF];
	char tmp[PATH_BUF] = "", ds[PATH_BUF] = "";
	const char *uri, *src;
	bool quiet = false;
	int c, r, nsrcs;

	pack_cli_init(&pc);
	while ((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'q':
			quiet = true;
			break;
		case 'h':
			fputs(push_help, stdout);
			fputs(exit_status_help, stdout);
			return cli_finish_stdout("push");
		default:
			r = pack_cli_option("push", c, optarg, &pc);
			if (r == 1) {
				fputs("Try 'quai push --help'.\n", stderr);
				return CLI_EXIT_USAGE;
			}
			if (r)
				return r;
		}
	}
	nsrcs = argc - optind - 1;
	if (nsrcs < 1)
		return cli_usage_error("push", "missing %s",
				       nsrcs < 0 ? "SRC and URI operands" : "SRC or URI operand");
	uri = argv[argc - 1];
	r = check_uri("push", uri, &u);
	if (r)
		return r;
	bool dataset = nsrcs == 1 && is_dataset_dir(argv[optind]);
	if (dataset && pc.given)
		return cli_usage_error(
		    "push",
		    "'%s' is a dataset, sent as it is: the packing options are for "
		    "raw input",
		    cli_printable(argv[optind], shown, sizeof(shown)));

	cli_progress_init(&ctx.prog, !quiet && cli_stderr_is_tty());
	cli_catch_signals();
	src = argv[optind];
	if (!dataset) {
		r = pack_cli_finish("push", &pc);
		if (r == 0)
			r = pack_to_temp(nsrcs, argv + optind, u.name, &pc, &ctx, quiet, tmp,
					 sizeof(tmp), ds, sizeof(ds));
		if (r) {
			remove_temp(tmp);
			return r;
		}
		src = ds;
	}

	xo.progress = xfer_progress;
	xo.progress_arg = &ctx;
	err[0] = '\0';
	double t1 = cli_now();
	r = quai_push(src, uri, &xo, &res, err, sizeof(err));
	double elapsed = cli_now() - t1;
	cli_progress_clear(&ctx.prog);
	remove_temp(tmp);

	if (r < 0 && (r == -ECANCELED || cli_interrupted())) {
		cli_errorf("push",
			   "interrupted; what was sent stays on quaid, and a re-run sends only "
			   "the rest");
		return cli_exit_code(-ECANCELED);
	}
	if (r < 0) {
		snprintf(context, sizeof(context), "cannot push to %s",
			 cli_printable(uri, shown, sizeof(shown)));
		report("push", r, err, context);
		return cli_exit_code(r);
	}
	if (!quiet) {
		summary(line, sizeof(line), &res, elapsed);
		printf("%s: pushed, verified and published: %s\n",
		       cli_printable(uri, shown, sizeof(shown)), line);
	}
	return cli_finish_stdout("push");
}

/* ---- pull ------------------------------------------------------------- */

int cmd_pull(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"unpack", no_argument, NULL, OPT_UNPACK},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct xfer_ctx ctx = {0};
	struct quai_xfer_opts xo = {.size = sizeof(xo)};
	struct quai_xfer_result res = {0};
	struct qconn_uri u;
	char err[ERR_BUF], context[PATH_BUF], line[256], shown[PATH_BUF], shown2[PATH_BUF];
	const char *uri, *dest;
	bool quiet = false;
	int c, r;

	while ((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_UNPACK:
			xo.unpack = 1;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			fputs(pull_help, stdout);
			fputs(exit_status_help, stdout);
			return cli_finish_stdout("pull");
		default:
			fputs("Try 'quai pull --help'.\n", stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (argc - optind < 2)
		return cli_usage_error("pull", "missing %s",
				       argc - optind == 0 ? "URI and DEST operands"
							  : "DEST operand");
	if (argc - optind > 2)
		return cli_usage_error("pull", "extra operand '%s'",
				       cli_printable(argv[optind + 2], shown, sizeof(shown)));
	uri = argv[optind];
	dest = argv[optind + 1];
	r = check_uri("pull", uri, &u);
	if (r)
		return r;

	cli_progress_init(&ctx.prog, !quiet && cli_stderr_is_tty());
	cli_catch_signals();
	xo.progress = xfer_progress;
	xo.progress_arg = &ctx;
	err[0] = '\0';
	double t0 = cli_now();
	r = quai_pull(uri, dest, &xo, &res, err, sizeof(err));
	double elapsed = cli_now() - t0;
	cli_progress_clear(&ctx.prog);

	if (r < 0 && (r == -ECANCELED || cli_interrupted())) {
		cli_errorf("pull",
			   "interrupted; the partial copy beside '%s' stays, and a re-run "
			   "fetches only the rest",
			   cli_printable(dest, shown, sizeof(shown)));
		return cli_exit_code(-ECANCELED);
	}
	if (r < 0) {
		if (r == -QUAI_EEXISTS)
			snprintf(context, sizeof(context), "'%s'",
				 cli_printable(dest, shown, sizeof(shown)));
		else
			snprintf(context, sizeof(context), "cannot pull %s into '%s'",
				 cli_printable(uri, shown, sizeof(shown)),
				 cli_printable(dest, shown2, sizeof(shown2)));
		report("pull", r, err, context);
		return cli_exit_code(r);
	}
	if (!quiet) {
		summary(line, sizeof(line), &res, elapsed);
		printf("%s: %s from %s, verified: %s\n", cli_printable(dest, shown, sizeof(shown)),
		       xo.unpack ? "pulled and unpacked" : "pulled",
		       cli_printable(uri, shown2, sizeof(shown2)), line);
	}
	return cli_finish_stdout("pull");
}
