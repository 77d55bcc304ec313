/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quai — the command-line front end of the quai library (docs/quai.md).
 *
 * A thin main: it parses arguments, calls include/quai/quai.h, and turns the
 * results into output, progress and exit statuses. Everything a dataset is
 * or does lives in the library, so a training job can do what this can.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quai/quai.h"
#include "hostdecide.h"
#include "cli_util.h"
#include "pack_opts.h"
#include "verbs.h"

#define PATH_BUF 4096

const char exit_status_help[] =
    "Exit status:\n"
    "  0    success\n"
    "  1    the data is bad (verify found problems, a corrupt frame during cat,\n"
    "       unpack or stage)\n"
    "  2    usage error\n"
    "  3    operating-system or input error (missing source, destination exists,\n"
    "       disk full, permission, input that does not fit the record kind)\n"
    "  4    quaid could not be reached, stopped answering or shut down\n"
    "  5    refused by the data policy (a sensitive dataset outside its zone or\n"
    "       its host's sovereign paths, or a rule of quaid's)\n"
    "  6    a version this build does not know: a dataset written by a newer\n"
    "       quai, or a quaid speaking another protocol version\n"
    "  130  interrupted (SIGINT; nothing is left half-written)\n";

/* ---- messages --------------------------------------------------------- */

/* A path made safe to print (control bytes shown as '?'). */
struct shown {
	char s[PATH_BUF];
};

static const char *show(struct shown *buf, const char *path)
{
	return cli_printable(path, buf->s, sizeof(buf->s));
}

/* Whether `path` is `dir` or lies under it. */
static bool path_within(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	if (strncmp(path, dir, n) != 0)
		return false;
	return path[n] == '\0' || path[n] == '/' || (n > 0 && dir[n - 1] == '/');
}

/* After getopt_long() has printed its own message (argv[0] reads
 * "quai VERB", so the message names the verb). */
static int try_help(const char *verb)
{
	fprintf(stderr, "Try 'quai %s --help'.\n", verb);
	return CLI_EXIT_USAGE;
}

/* Checks the operand count: between min and max (max < 0: no limit). */
static int check_operands(const char *verb, int argc, char **argv, int min, int max,
			  const char *missing)
{
	int n = argc - optind;
	struct shown sh;

	if (n < min)
		return cli_usage_error(verb, "missing %s", missing);
	if (max >= 0 && n > max)
		return cli_usage_error(verb, "extra operand '%s'", show(&sh, argv[optind + max]));
	return 0;
}

/* ---- pack ------------------------------------------------------------- */

static const char pack_help[] =
    "Usage: quai pack [OPTION]... SRC... DEST\n"
    "Pack the sources into a new dataset directory DEST (zstd seekable shards,\n"
    "record indexes and a manifest). DEST appears whole or not at all.\n"
    "\n" PACK_OPTS_HELP "  --name NAME         dataset name (default: DEST's last component)\n"
    "  --sign-key SECRET   sign the dataset with this site key once packed (quai\n"
    "                      sign); a key that cannot sign stops before packing\n"
    "  -q, --quiet         no progress and no summary\n"
    "  -h, --help          show this help\n"
    "\n"
    "SIZE is a byte count with an optional binary suffix: K, M, G, KiB, MiB, GiB.\n"
    "On a terminal a progress line is drawn on stderr; at the end a summary line is\n"
    "printed on stdout.\n"
    "\n";

enum {
	OPT_THREADS = 256,
	OPT_NAME,
	OPT_JSON,
	OPT_SHARDS,
	OPT_RANGE,
	OPT_SITE_KEYS,
	OPT_REQUIRE_SIGNED,
	OPT_SIGN_KEY,
};

static int parse_threads(const char *verb, const char *arg, unsigned *ret)
{
	uint64_t v;

	if (cli_parse_u64(arg, &v) < 0 || v > 4096)
		return cli_usage_error(verb, "invalid --threads '%s': expected 0 (auto) to 4096",
				       arg);
	*ret = (unsigned)v;
	return 0;
}

struct pack_ctx {
	struct cli_progress prog;
};

static int pack_progress(const struct quai_pack_progress *p, void *arg)
{
	struct pack_ctx *ctx = arg;
	char extra[96];

	snprintf(extra, sizeof(extra), "%" PRIu64 " records, %" PRIu32 " shard%s", p->records,
		 p->shards, p->shards == 1 ? "" : "s");
	cli_progress_update(&ctx->prog, p->bytes_in, p->bytes_total, extra, false);
	return cli_interrupted() ? 1 : 0;
}

/* Reports a failed library call: the library's message names what failed
 * and where; when it holds no detail (only quai_strerror() of the code),
 * `context` says what was being done, e.g. "cannot pack into 'ds'". */
static void report(const char *verb, int err, const char *msg, const char *context)
{
	struct shown sh;

	if (msg[0] && strcmp(msg, quai_strerror(err)) != 0)
		cli_errorf(verb, "%s", show(&sh, msg));
	else
		cli_errorf(verb, "%s: %s", context, quai_strerror(err));
}

/* What a reader or quai verify of a sensitive dataset says when its
 * buffers cannot be locked (common/secmem.h). */
#define MEMLOCK_REFUSAL                                                                            \
	"the dataset is sensitive: its bytes are read only into locked memory, and "               \
	"RLIMIT_MEMLOCK does not allow enough of it (raise it, e.g. ulimit -l)"

static int cmd_pack(int argc, char **argv)
{
	static const struct option longopts[] = {
	    PACK_LONGOPTS,
	    {"name", required_argument, NULL, OPT_NAME},
	    {"sign-key", required_argument, NULL, OPT_SIGN_KEY},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	const char *sign_key = NULL;
	struct pack_cli pc;
	struct quai_pack_opts *opts = &pc.o;
	struct quai_pack_result res = {0};
	struct pack_ctx ctx;
	char err[PATH_BUF], context[PATH_BUF];
	char sraw[32], scomp[32], stime[32], ratio[32];
	const char *dest;
	struct shown sh;
	bool quiet = false;
	double t0, elapsed;
	size_t nsrcs;
	int c, r;

	pack_cli_init(&pc);
	while ((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		/* 0: one of pack's options, parsed; 1: not one of them. */
		r = pack_cli_option("pack", c, optarg, &pc);
		if (r == 0)
			continue;
		if (r != 1)
			return r;
		switch (c) {
		case OPT_NAME:
			opts->name = optarg;
			break;
		case OPT_SIGN_KEY:
			sign_key = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			fputs(pack_help, stdout);
			fputs(exit_status_help, stdout);
			return cli_finish_stdout("pack");
		default:
			return try_help("pack");
		}
	}
	r = check_operands("pack", argc, argv, 2, -1,
			   argc - optind == 0 ? "SRC and DEST operands" : "DEST operand");
	if (r)
		return r;

	r = pack_cli_finish("pack", &pc);
	if (r)
		return r;

	nsrcs = (size_t)(argc - optind - 1);
	dest = argv[argc - 1];
	/* A key that cannot sign is found before the packing, not after. */
	if (sign_key && (r = label_key_usable("pack", sign_key)) != 0)
		return r;

	cli_progress_init(&ctx.prog, !quiet && cli_stderr_is_tty());
	opts->progress = pack_progress;
	opts->progress_arg = &ctx;
	cli_catch_signals();

	err[0] = '\0';
	t0 = cli_now();
	r = quai_pack((const char *const *)(argv + optind), nsrcs, dest, opts, &res, err,
		      sizeof(err));
	elapsed = cli_now() - t0;
	cli_progress_clear(&ctx.prog);

	if (r < 0 && (r == -ECANCELED || cli_interrupted())) {
		cli_errorf("pack", "interrupted; nothing was written to '%s'", show(&sh, dest));
		return cli_exit_code(-ECANCELED);
	}
	if (r == -EINVAL) {
		/* The library rejected an option value the CLI let through
		 * (a compression level out of range, a bad name...). */
		report("pack", r, err, "invalid option value");
		return try_help("pack");
	}
	if (r < 0) {
		snprintf(context, sizeof(context), "cannot pack into '%s'", show(&sh, dest));
		report("pack", r, err, context);
		return cli_exit_code(r);
	}

	if (!quiet) {
		cli_format_bytes(res.raw_bytes, sraw, sizeof(sraw));
		cli_format_bytes(res.compressed_bytes, scomp, sizeof(scomp));
		cli_format_duration(elapsed, stime, sizeof(stime));
		cli_format_ratio(res.raw_bytes, res.compressed_bytes, ratio, sizeof(ratio));
		printf("%s: %" PRIu64 " records, %s raw, %s compressed (ratio %s), %" PRIu32
		       " shard%s, %s, %.1f MB/s\n",
		       show(&sh, dest), res.records, sraw, scomp, ratio, res.shards,
		       res.shards == 1 ? "" : "s", stime, cli_rate_mbs(res.raw_bytes, elapsed));
	}
	if (sign_key) {
		fflush(stdout);
		r = label_sign("pack", dest, sign_key, false, quiet);
		if (r) {
			cli_errorf("pack", "'%s' was packed but is not signed", show(&sh, dest));
			return r;
		}
	}
	return cli_finish_stdout("pack");
}

/* ---- verify ----------------------------------------------------------- */

static const char verify_help[] =
    "Usage: quai verify [OPTION]... DATASET\n"
    "Check a dataset whole: the manifest and its checksum, every record index,\n"
    "every shard file's checksum and layout, and every frame (decoded, its\n"
    "checksums compared); for files records, that unpack can restore every name.\n"
    "Each problem is printed on stderr, one per line; the\n"
    "last line names the first bad place and the number of bad frames and files.\n"
    "\n"
    "  --threads N         checking threads (default: online cores)\n"
    "  --site-keys FILE[:FILE...]\n"
    "                      public keys whose signatures (manifest.sig, quai sign)\n"
    "                      are trusted, besides site_keys in the host configuration\n"
    "  --require-signed    a dataset not signed by a site key is bad data\n"
    "  -q, --quiet         no progress and no summary when the dataset is sound\n"
    "  -h, --help          show this help\n"
    "\n"
    "After the data, the signature is checked and reported: signed (by a site key),\n"
    "unsigned, untrusted (by another key), or bad (relabelled, another manifest or\n"
    "other shards than were signed: exit status 1).\n"
    "\n";

struct verify_ctx {
	const char *path;
	struct cli_progress prog;
	pthread_mutex_t lock; /* the two callbacks may come from different threads */
	uint64_t problems;
	/* The first problem, copied: the library's strings live only as long
	 * as the callback. */
	bool have_first;
	char first_file[PATH_BUF];
	int64_t first_shard;
	int64_t first_frame;
	uint64_t first_record;
	uint64_t first_count;
};

/* "DATASET/FILE" for a file named inside the dataset. */
static void dataset_file(char *buf, size_t len, const char *dataset, const char *file)
{
	size_t n = strlen(dataset);

	if (!file || !file[0])
		snprintf(buf, len, "%s", dataset);
	else if (file[0] == '/' || path_within(file, dataset))
		snprintf(buf, len, "%s", file);
	else
		snprintf(buf, len, "%s%s%s", dataset, n && dataset[n - 1] == '/' ? "" : "/", file);
}

/* ", shard S, frame F, records [A, B)" for what is known of a place. */
static void describe_place(char *buf, size_t len, int64_t shard, int64_t frame, uint64_t first,
			   uint64_t count)
{
	size_t n = 0;

	buf[0] = '\0';
	if (shard >= 0)
		n += (size_t)snprintf(buf + n, len - n, ", shard %" PRId64, shard);
	if (frame >= 0 && n < len)
		n += (size_t)snprintf(buf + n, len - n, ", frame %" PRId64, frame);
	if (count && n < len)
		snprintf(buf + n, len - n, ", records [%" PRIu64 ", %" PRIu64 ")", first,
			 first + count);
}

static void verify_problem(const struct quai_verify_problem *p, void *arg)
{
	struct verify_ctx *ctx = arg;
	char file[PATH_BUF], place[128];
	struct shown sh;

	dataset_file(file, sizeof(file), ctx->path, p->file);
	describe_place(place, sizeof(place), p->shard, p->frame, p->first_record, p->record_count);

	pthread_mutex_lock(&ctx->lock);
	cli_progress_clear(&ctx->prog);
	/* Some descriptions end with the error's text already. */
	if (p->what && strstr(p->what, quai_strerror(p->error)))
		fprintf(stderr, "quai verify: %s%s: %s\n", show(&sh, file), place, p->what);
	else
		fprintf(stderr, "quai verify: %s%s: %s: %s\n", show(&sh, file), place,
			p->what ? p->what : "check failed", quai_strerror(p->error));
	if (!ctx->have_first) {
		ctx->have_first = true;
		snprintf(ctx->first_file, sizeof(ctx->first_file), "%s", file);
		ctx->first_shard = p->shard;
		ctx->first_frame = p->frame;
		ctx->first_record = p->first_record;
		ctx->first_count = p->record_count;
	}
	ctx->problems++;
	pthread_mutex_unlock(&ctx->lock);
}

static int verify_progress(const struct quai_verify_progress *p, void *arg)
{
	struct verify_ctx *ctx = arg;
	char extra[96];

	snprintf(extra, sizeof(extra), "%" PRIu64 " frames, %" PRIu64 " bad", p->frames_done,
		 p->frames_bad);
	pthread_mutex_lock(&ctx->lock);
	cli_progress_update(&ctx->prog, p->bytes_done, p->bytes_total, extra, false);
	pthread_mutex_unlock(&ctx->lock);
	return cli_interrupted() ? 1 : 0;
}

static int cmd_verify(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"threads", required_argument, NULL, OPT_THREADS},
	    {"site-keys", required_argument, NULL, OPT_SITE_KEYS},
	    {"require-signed", no_argument, NULL, OPT_REQUIRE_SIGNED},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	const char *site_keys = NULL;
	bool require_signed = false;
	struct quai_verify_opts opts = {.size = sizeof(opts)};
	struct quai_verify_result res = {0};
	struct verify_ctx ctx = {.first_shard = -1, .first_frame = -1};
	char place[128], scomp[32], sraw[32], stime[32];
	struct shown sh;
	bool quiet = false;
	double t0, elapsed;
	int c, r;

	while ((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_THREADS:
			r = parse_threads("verify", optarg, &opts.threads);
			if (r)
				return r;
			break;
		case OPT_SITE_KEYS:
			site_keys = optarg;
			break;
		case OPT_REQUIRE_SIGNED:
			require_signed = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			fputs(verify_help, stdout);
			fputs(exit_status_help, stdout);
			return cli_finish_stdout("verify");
		default:
			return try_help("verify");
		}
	}
	r = check_operands("verify", argc, argv, 1, 1, "DATASET operand");
	if (r)
		return r;

	ctx.path = argv[optind];
	/* A dataset whose manifest opens is decided on like any read; one
	 * that does not is left to quai_verify() to report. */
	quai_dataset *ds;
	if (quai_dataset_open(ctx.path, &ds, NULL, 0) == 0) {
		char err[PATH_BUF] = "";
		r = quai_dataset_allow(ds, "verify", NULL, err, sizeof(err));
		quai_dataset_close(ds);
		if (r < 0) {
			cli_errorf("verify", "%s", err[0] ? err : quai_strerror(r));
			return cli_exit_code(r);
		}
	}
	/* The signature first: a dataset that is not what was signed (other
	 * shards, relabelled) is said so, rather than as damaged frames. */
	char sig_line[PATH_BUF + 1200] = "";
	r = label_report(ctx.path, site_keys, require_signed, sig_line, sizeof(sig_line));
	if (r)
		return r;
	pthread_mutex_init(&ctx.lock, NULL);
	cli_progress_init(&ctx.prog, !quiet && cli_stderr_is_tty());
	opts.problem = verify_problem;
	opts.problem_arg = &ctx;
	opts.progress = verify_progress;
	opts.progress_arg = &ctx;
	cli_catch_signals();

	t0 = cli_now();
	r = quai_verify(ctx.path, &opts, &res);
	elapsed = cli_now() - t0;
	cli_progress_clear(&ctx.prog);
	pthread_mutex_destroy(&ctx.lock);

	if (cli_interrupted() || r == -ECANCELED) {
		cli_errorf("verify", "interrupted");
		return cli_exit_code(-ECANCELED);
	}
	if (r == -QUAI_EVERSION) {
		/* A newer format is not damage: its own status (the problem
		 * line above said which file and version). */
		cli_errorf("verify", "cannot verify '%s': %s", show(&sh, ctx.path),
			   quai_strerror(r));
		return cli_exit_code(r);
	}
	if (ctx.problems || r == -QUAI_ECORRUPT || r == -QUAI_EFORMAT) {
		if (!ctx.have_first) {
			cli_errorf("verify", "'%s': %s", show(&sh, ctx.path), quai_strerror(r));
			return CLI_EXIT_BAD_DATA;
		}
		describe_place(place, sizeof(place), ctx.first_shard, ctx.first_frame,
			       ctx.first_record, ctx.first_count);
		cli_errorf("verify",
			   "'%s' is damaged: first problem in %s%s; %" PRIu64
			   " bad frame%s, %" PRIu64 " bad file%s",
			   show(&sh, ctx.path), ctx.first_file, place, res.bad_frames,
			   res.bad_frames == 1 ? "" : "s", res.bad_files,
			   res.bad_files == 1 ? "" : "s");
		return CLI_EXIT_BAD_DATA;
	}
	if (r < 0) {
		if (r == -QUAI_EPOLICY) {
			cli_errorf("verify", "'%s': %s", show(&sh, ctx.path), MEMLOCK_REFUSAL);
			return cli_exit_code(r);
		}
		cli_errorf("verify", "cannot verify '%s': %s", show(&sh, ctx.path),
			   quai_strerror(r));
		return cli_exit_code(r);
	}

	if (!quiet) {
		cli_format_bytes(res.compressed_bytes, scomp, sizeof(scomp));
		cli_format_bytes(res.raw_bytes, sraw, sizeof(sraw));
		cli_format_duration(elapsed, stime, sizeof(stime));
		printf("%s: OK, %" PRIu64 " frame%s, %s compressed, %s raw, %s, %.1f MB/s\n",
		       show(&sh, ctx.path), res.frames, res.frames == 1 ? "" : "s", scomp, sraw,
		       stime, cli_rate_mbs(res.compressed_bytes, elapsed));
		fputs(sig_line, stdout);
	}
	return cli_finish_stdout("verify");
}

/* ---- info ------------------------------------------------------------- */

static const char info_help[] =
    "Usage: quai info [OPTION]... DATASET\n"
    "       quai info [OPTION]... quai://HOST[:PORT]/NAME\n"
    "Describe a dataset from its manifest: name, record kind, counts, sizes,\n"
    "classification, residency zone and creation parameters. A quai:// URI asks\n"
    "the quaid serving it, which sends the manifest; it is checked here.\n"
    "\n"
    "  --json              print one JSON object instead of text\n"
    "  --shards            add a table of the shards (in JSON: \"shard_list\")\n"
    "  -h, --help          show this help\n"
    "\n";

/* Whether a library message begins with `path` (or a file under it), bare
 * or quoted, so that the message already says where. */
static bool names_path(const char *msg, const char *path)
{
	size_t n = strlen(path);

	if (msg[0] == '\'') {
		msg++;
		if (strncmp(msg, path, n) == 0 && (msg[n] == '\'' || msg[n] == '/'))
			return true;
		msg--;
	}
	return strncmp(msg, path, n) == 0 && (msg[n] == '/' || msg[n] == ':');
}

static int open_dataset(const char *verb, const char *path, quai_dataset **ret_ds)
{
	char err[PATH_BUF];
	struct shown sh, sh2;
	int r;

	err[0] = '\0';
	r = quai_dataset_open(path, ret_ds, err, sizeof(err));
	if (r < 0) {
		if (!err[0] || strcmp(err, quai_strerror(r)) == 0)
			cli_errorf(verb, "cannot open '%s': %s", show(&sh, path), quai_strerror(r));
		else if (names_path(err, path))
			cli_errorf(verb, "%s", show(&sh, err));
		else
			cli_errorf(verb, "cannot open '%s': %s", show(&sh, path), show(&sh2, err));
		return cli_exit_code(r);
	}
	return 0;
}

static void info_json(quai_dataset *ds, const struct quai_dataset_info *in, bool shards)
{
	struct quai_shard_info si;
	struct cli_json j;
	char hex[24];

	cli_json_init(&j, stdout);
	cli_json_begin_object(&j, NULL);
	cli_json_u64(&j, "format_version", in->format_version);
	cli_json_string(&j, "name", in->name);
	cli_json_string(&j, "kind", quai_record_kind_name(in->kind));
	if (in->kind == QUAI_RECORDS_FIXED)
		cli_json_u64(&j, "fixed_size", in->fixed_size);
	else
		cli_json_null(&j, "fixed_size");
	cli_json_u64(&j, "records", in->records);
	cli_json_u64(&j, "raw_bytes", in->raw_bytes);
	cli_json_u64(&j, "compressed_bytes", in->compressed_bytes);
	cli_json_u64(&j, "shards", in->shards);
	cli_json_u64(&j, "frames", in->frames);
	cli_json_string(&j, "classification", quai_class_name(in->classification));
	cli_json_string(&j, "zone", in->zone);
	cli_json_i64(&j, "level", in->level);
	cli_json_u64(&j, "frame_size", in->frame_size);
	cli_json_u64(&j, "shard_size", in->shard_size);
	cli_json_string(&j, "created", in->created);
	cli_json_string(&j, "manifest_checksum", in->manifest_checksum);
	if (shards) {
		cli_json_begin_array(&j, "shard_list");
		for (uint32_t i = 0; i < in->shards; i++) {
			memset(&si, 0, sizeof(si));
			si.size = sizeof(si);
			if (quai_dataset_shard(ds, i, &si) < 0)
				continue;
			cli_json_begin_object(&j, NULL);
			cli_json_u64(&j, "shard", i);
			cli_json_string(&j, "file", si.file);
			cli_json_string(&j, "index_file", si.index_file);
			cli_json_u64(&j, "first_record", si.first_record);
			cli_json_u64(&j, "records", si.records);
			cli_json_u64(&j, "raw_bytes", si.raw_bytes);
			cli_json_u64(&j, "compressed_bytes", si.compressed_bytes);
			cli_json_u64(&j, "index_bytes", si.index_bytes);
			cli_json_u64(&j, "frames", si.frames);
			snprintf(hex, sizeof(hex), "%016" PRIx64, si.checksum);
			cli_json_string(&j, "checksum", hex);
			snprintf(hex, sizeof(hex), "%016" PRIx64, si.index_checksum);
			cli_json_string(&j, "index_checksum", hex);
			cli_json_end_object(&j);
		}
		cli_json_end_array(&j);
	}
	cli_json_end_object(&j);
	cli_json_finish(&j);
}

static void info_text(quai_dataset *ds, const struct quai_dataset_info *in, bool shards)
{
	char a[32], b[32], name[QUAI_NAME_MAX + 1];
	struct quai_shard_info si;

	printf("name:               %s\n", cli_printable(in->name, name, sizeof(name)));
	if (in->kind == QUAI_RECORDS_FIXED)
		printf("kind:               fixed, %" PRIu32 " bytes per record\n", in->fixed_size);
	else
		printf("kind:               %s\n", quai_record_kind_name(in->kind));
	printf("records:            %" PRIu64 "\n", in->records);
	cli_format_bytes(in->raw_bytes, a, sizeof(a));
	printf("raw bytes:          %" PRIu64 " (%s)\n", in->raw_bytes, a);
	cli_format_bytes(in->compressed_bytes, a, sizeof(a));
	cli_format_ratio(in->raw_bytes, in->compressed_bytes, b, sizeof(b));
	printf("compressed bytes:   %" PRIu64 " (%s, ratio %s)\n", in->compressed_bytes, a, b);
	printf("shards:             %" PRIu32 "\n", in->shards);
	printf("frames:             %" PRIu64 "\n", in->frames);
	printf("classification:     %s\n", quai_class_name(in->classification));
	printf("zone:               %s\n", in->zone);
	printf("level:              %d\n", in->level);
	cli_format_bytes(in->frame_size, a, sizeof(a));
	printf("frame size:         %" PRIu32 " (%s)\n", in->frame_size, a);
	cli_format_bytes(in->shard_size, a, sizeof(a));
	printf("shard size:         %" PRIu64 " (%s)\n", in->shard_size, a);
	printf("created:            %s\n", in->created[0] ? in->created : "-");
	printf("manifest checksum:  %s\n", in->manifest_checksum);
	printf("format version:     %" PRIu32 "\n", in->format_version);
	if (!shards)
		return;

	printf("\n%5s  %-16s %12s %12s %10s %10s %7s  %-16s\n", "shard", "file", "first record",
	       "records", "raw", "compressed", "frames", "checksum");
	for (uint32_t i = 0; i < in->shards; i++) {
		memset(&si, 0, sizeof(si));
		si.size = sizeof(si);
		if (quai_dataset_shard(ds, i, &si) < 0)
			continue;
		cli_format_bytes(si.raw_bytes, a, sizeof(a));
		cli_format_bytes(si.compressed_bytes, b, sizeof(b));
		printf("%5" PRIu32 "  %-16s %12" PRIu64 " %12" PRIu64 " %10s %10s %7" PRIu32
		       "  %016" PRIx64 "\n",
		       i, si.file, si.first_record, si.records, a, b, si.frames, si.checksum);
	}
}

static int cmd_info(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, OPT_JSON},
	    {"shards", no_argument, NULL, OPT_SHARDS},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct quai_dataset_info in;
	bool json = false, shards = false;
	quai_dataset *ds;
	struct shown sh;
	int c, r;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_JSON:
			json = true;
			break;
		case OPT_SHARDS:
			shards = true;
			break;
		case 'h':
			fputs(info_help, stdout);
			fputs(exit_status_help, stdout);
			return cli_finish_stdout("info");
		default:
			return try_help("info");
		}
	}
	r = check_operands("info", argc, argv, 1, 1, "DATASET operand");
	if (r)
		return r;

	if (quai_uri_is_remote(argv[optind])) {
		char err[PATH_BUF] = "";
		/* A bad URI is a usage error here as in pull (issue 22 #10). */
		r = cli_check_dataset_uri("info", argv[optind]);
		if (r)
			return r;
		r = quai_remote_open(argv[optind], &ds, err, sizeof(err));
		if (r < 0) {
			cli_errorf("info", "%s", show(&sh, err[0] ? err : quai_strerror(r)));
			return cli_exit_code(r);
		}
	} else {
		r = open_dataset("info", argv[optind], &ds);
		if (r)
			return r;
	}
	memset(&in, 0, sizeof(in));
	in.size = sizeof(in);
	r = quai_dataset_info(ds, &in);
	if (r < 0) {
		cli_errorf("info", "'%s': %s", show(&sh, argv[optind]), quai_strerror(r));
		quai_dataset_close(ds);
		return cli_exit_code(r);
	}
	if (json)
		info_json(ds, &in, shards);
	else
		info_text(ds, &in, shards);
	/* Flush while the strings of `in` are still valid. */
	r = cli_finish_stdout("info");
	quai_dataset_close(ds);
	return r;
}

/* ---- cat -------------------------------------------------------------- */

static const char cat_help[] =
    "Usage: quai cat [OPTION]... DATASET\n"
    "Write the raw bytes of the dataset's records to standard output, one after\n"
    "the other. Only the frames that hold the chosen records are decoded, and\n"
    "each is checked against its checksum before any of it is written.\n"
    "\n"
    "  --range A:B         records A (included) to B (excluded), counted from 0;\n"
    "                      A: runs to the end, :B starts at 0 (default: all)\n"
    "  -h, --help          show this help\n"
    "\n"
    "A range beyond the last record is a usage error. A reader that closes the\n"
    "pipe early (quai cat DATASET | head) ends quai cat quietly, with status 0.\n"
    "\n";

#define CAT_BUFFER (4u << 20)

/* Reports a record that could not be read, naming its shard and frame. */
static int cat_read_error(quai_dataset *ds, const char *path, uint64_t record, int err)
{
	struct quai_record_loc loc;
	struct quai_shard_info si = {.size = sizeof(si)};
	char file[PATH_BUF];
	struct shown sh;

	if (quai_dataset_locate(ds, record, &loc) == 0 &&
	    quai_dataset_shard(ds, loc.shard, &si) == 0) {
		dataset_file(file, sizeof(file), path, si.file);
		cli_errorf("cat",
			   "'%s': shard %" PRIu32 ", frame %" PRIu32 ", record %" PRIu64 ": %s",
			   show(&sh, file), loc.shard, loc.frame, record, quai_strerror(err));
	} else {
		cli_errorf("cat", "'%s': record %" PRIu64 ": %s", show(&sh, path), record,
			   quai_strerror(err));
	}
	return cli_exit_code(err);
}

static int cmd_cat(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"range", required_argument, NULL, OPT_RANGE},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct quai_dataset_info in;
	struct cli_out *out = NULL;
	quai_reader *reader = NULL;
	quai_dataset *ds = NULL;
	const char *path, *range = NULL;
	uint64_t a = 0, b = 0;
	bool has_b = false;
	struct shown sh;
	int c, r, ret;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_RANGE:
			if (cli_parse_range(optarg, &a, &b, &has_b) < 0)
				return cli_usage_error(
				    "cat",
				    "invalid --range '%s': expected A:B with A <= B, "
				    "A: or :B",
				    optarg);
			range = optarg;
			break;
		case 'h':
			fputs(cat_help, stdout);
			fputs(exit_status_help, stdout);
			return cli_finish_stdout("cat");
		default:
			return try_help("cat");
		}
	}
	r = check_operands("cat", argc, argv, 1, 1, "DATASET operand");
	if (r)
		return r;
	path = argv[optind];

	ret = open_dataset("cat", path, &ds);
	if (ret)
		return ret;
	memset(&in, 0, sizeof(in));
	in.size = sizeof(in);
	r = quai_dataset_info(ds, &in);
	if (r < 0) {
		cli_errorf("cat", "'%s': %s", show(&sh, path), quai_strerror(r));
		ret = cli_exit_code(r);
		goto out;
	}
	if (!has_b)
		b = in.records;
	{
		/* Where the bytes go: a file there must be sovereign for
		 * sensitive data; a pipe or a terminal is the user's. */
		char where[PATH_BUF];
		int werr;
		const char *file = cli_stdout_file(where, sizeof(where), &werr);
		char err[PATH_BUF];
		r = qhd_dataset_allow(ds, "cat", file, werr ? "standard output" : NULL, err,
				      sizeof(err));
		if (r < 0) {
			cli_errorf("cat", "%s", err);
			ret = cli_exit_code(r);
			goto out;
		}
	}
	if (a > in.records || b > in.records) {
		cli_errorf("cat", "--range %s is outside '%s', which has %" PRIu64 " records",
			   range ? range : ":", show(&sh, path), in.records);
		ret = CLI_EXIT_USAGE;
		goto out;
	}

	r = quai_reader_new(ds, &reader);
	if (r == -QUAI_EPOLICY) {
		cli_errorf("cat", "%s", MEMLOCK_REFUSAL);
		ret = cli_exit_code(r);
		goto out;
	}
	/* A sensitive dataset's records go straight from the reader's locked
	 * buffer to the output, never through an unlocked one of ours. */
	if (r == 0)
		r = cli_out_new(STDOUT_FILENO,
				in.classification == QUAI_CLASS_SENSITIVE ? 0 : CAT_BUFFER, &out);
	if (r < 0) {
		cli_errorf("cat", "%s", quai_strerror(r));
		ret = cli_exit_code(r);
		goto out;
	}
	/* A closed pipe must surface as EPIPE from write(), not kill us. */
	signal(SIGPIPE, SIG_IGN);
	cli_catch_signals();

	ret = CLI_EXIT_OK;
	for (uint64_t i = a, n = 0; i < b; i += n) {
		const void *data;
		size_t len;

		if (cli_interrupted())
			break;
		/* A frame's records at a time: they lie back to back. */
		r = quai_reader_records(reader, i, b - i, &data, &len, &n);
		if (r < 0) {
			if (cli_interrupted())
				break;
			/* What came before the bad record is good: let it out. */
			if (cli_out_flush(out) == 0)
				ret = cat_read_error(ds, path, i, r);
			else
				ret = cli_exit_code(r);
			goto out;
		}
		r = cli_out_write(out, data, len);
		if (r < 0)
			goto write_failed;
	}
	if (cli_interrupted()) {
		ret = cli_exit_code(-ECANCELED);
		goto out;
	}
	r = cli_out_flush(out);
	if (r < 0)
		goto write_failed;
	goto out;

write_failed:
	if (r == -EPIPE) {
		ret = CLI_EXIT_OK; /* the reader has what it wanted */
	} else if (cli_interrupted()) {
		ret = cli_exit_code(-ECANCELED);
	} else {
		cli_errorf("cat", "write error: %s", quai_strerror(r));
		ret = CLI_EXIT_FAILURE;
	}
out:
	cli_out_free(out);
	quai_reader_free(reader);
	quai_dataset_close(ds);
	return ret;
}

/* ---- unpack ----------------------------------------------------------- */

static const char unpack_help[] =
    "Usage: quai unpack [OPTION]... DATASET DEST\n"
    "Restore the dataset's input at DEST: for a files dataset, a directory\n"
    "holding every record under its relative name; for lines and fixed, one file\n"
    "holding the records concatenated. Every frame is verified before its bytes\n"
    "are written, and DEST appears whole or not at all.\n"
    "\n"
    "NOT RESTORED: file modes, owners, times and empty directories. The format\n"
    "does not keep them: files come back 0644 and directories 0755 (less the\n"
    "umask) whatever they were, so a 0600 source comes back readable by all\n"
    "unless the umask says otherwise. A sensitive dataset's files come back\n"
    "0600 and its directories 0700.\n"
    "\n"
    "  -q, --quiet         no summary\n"
    "  -h, --help          show this help\n"
    "\n";

static int cmd_unpack(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	char err[PATH_BUF], context[PATH_BUF], stime[32];
	const char *path, *dest;
	struct shown sh, sh2;
	bool quiet = false;
	double t0;
	int c, r;

	while ((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'q':
			quiet = true;
			break;
		case 'h':
			fputs(unpack_help, stdout);
			fputs(exit_status_help, stdout);
			return cli_finish_stdout("unpack");
		default:
			return try_help("unpack");
		}
	}
	r = check_operands("unpack", argc, argv, 2, 2,
			   argc - optind == 0 ? "DATASET and DEST operands" : "DEST operand");
	if (r)
		return r;
	path = argv[optind];
	dest = argv[optind + 1];

	err[0] = '\0';
	t0 = cli_now();
	r = quai_unpack(path, dest, err, sizeof(err));
	if (r < 0) {
		if (r == -QUAI_EEXISTS)
			snprintf(context, sizeof(context), "'%s'", show(&sh, dest));
		else
			snprintf(context, sizeof(context), "cannot unpack '%s' into '%s'",
				 show(&sh, path), show(&sh2, dest));
		report("unpack", r, err, context);
		return cli_exit_code(r);
	}
	if (!quiet) {
		cli_format_duration(cli_now() - t0, stime, sizeof(stime));
		printf("%s: unpacked from '%s', %s\n", show(&sh, dest), show(&sh2, path), stime);
	}
	return cli_finish_stdout("unpack");
}

/* ---- main ------------------------------------------------------------- */

struct verb {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct verb verbs[] = {
    {"pack", cmd_pack, "pack files, lines or fixed-size records into a dataset"},
    {"verify", cmd_verify, "check every checksum and frame of a dataset"},
    {"info", cmd_info, "describe a dataset (--json for machines)"},
    {"cat", cmd_cat, "write records' raw bytes to standard output"},
    {"unpack", cmd_unpack, "restore a dataset's input"},
    {"stage", cmd_stage, "stream a dataset into pinned memory as a training job would"},
    {"push", cmd_push, "send a dataset (or raw input, packed on the way) to a quaid"},
    {"pull", cmd_pull, "fetch a dataset from a quaid, verified and resumable"},
    {"ls", cmd_ls, "list the datasets a quaid serves"},
    {"stat", cmd_stat, "show a quaid's clients, streams, bytes served and rates"},
    {"audit", cmd_audit, "check an audit log's hash chain (audit verify FILE...)"},
    {"keygen", cmd_keygen, "make an Ed25519 key pair (audit signing, site keys)"},
    {"sign", cmd_sign, "sign a dataset's label and content with a site key"},
};

static void main_help(FILE *f)
{
	fputs("Usage: quai COMMAND [OPTION]... [ARG]...\n"
	      "       quai COMMAND --help\n"
	      "       quai --version\n"
	      "Stage training datasets from parallel storage into pinned memory.\n"
	      "\n"
	      "Commands:\n",
	      f);
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		fprintf(f, "  %-8s %s\n", verbs[i].name, verbs[i].summary);
	fputs("\n"
	      "Environment:\n"
	      "  QUAI_CONF            the host configuration file (default\n"
	      "                       /etc/quai/quai.conf), whose `zone` key is the\n"
	      "                       default residency zone of pack\n"
	      "  FI_PROVIDER          the fabric provider for quai:// (default tcp;ofi_rxm)\n"
	      "  QUAI_REMOTE_TIMEOUT  seconds a silent quaid is waited for (default 15)\n"
	      "\n",
	      f);
	fputs(exit_status_help, f);
}

int main(int argc, char **argv)
{
	static char help_arg[] = "--help";
	char prog[64];
	const char *name;
	struct shown sh;

	if (argc < 2) {
		fputs("quai: missing command\nTry 'quai --help'.\n", stderr);
		return CLI_EXIT_USAGE;
	}
	name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
		if (strcmp(name, "help") != 0 || argc < 3) {
			main_help(stdout);
			return cli_finish_stdout("help");
		}
		/* "quai help VERB" is "quai VERB --help". */
		name = argv[2];
		argv[2] = help_arg;
		argc = 3;
	} else if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
		printf("quai %s\n", quai_version());
		return cli_finish_stdout("version");
	}

	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strcmp(name, verbs[i].name) != 0)
			continue;
		/* getopt's messages then read "quai pack: unrecognized option". */
		snprintf(prog, sizeof(prog), "quai %s", name);
		argv[1] = prog;
		return verbs[i].run(argc - 1, argv + 1);
	}

	if (name[0] == '-')
		fprintf(stderr, "quai: unrecognized option '%s'\n", show(&sh, name));
	else
		fprintf(stderr, "quai: unknown command '%s'\n", show(&sh, name));
	fputs("Try 'quai --help'.\n", stderr);
	return CLI_EXIT_USAGE;
}
