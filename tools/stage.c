/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quai stage: consumes a dataset's epochs the way a training job does,
 * through the public staging API, and reports throughput, time to first
 * batch and CPU time. With --verify-order it checks every batch against
 * the epoch plan (the order) and against an independent read of each
 * record through quai_reader (the bytes).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli_util.h"
#include "quai/quai.h"
#include "verbs.h"

static const char stage_help[] =
    "Usage: quai stage [OPTION]... DATASET\n"
    "Stream DATASET's epochs into pinned memory as a training job would, and\n"
    "report throughput (MB/s of records delivered), time to first batch and CPU time.\n"
    "DATASET is a path, file:///path, or quai://HOST[:PORT]/NAME (remote mode: the\n"
    "quaid there stages the same batches and writes them into this pool).\n"
    "\n"
    "Order and sharding:\n"
    "      --rank N           this process's rank (default 0)\n"
    "      --world N          number of ranks (default 1)\n"
    "      --seed N           shuffle seed (default 0)\n"
    "      --epoch N          first epoch (default 0)\n"
    "      --epochs N         epochs to stream (default 1)\n"
    "      --partitions N     no longer an option (any world works); must be 0\n"
    "      --window N         shuffle unit, in frames' worth of records (default 40)\n"
    "      --no-shuffle       dataset order\n"
    "      --keep-tail        deliver the remainder (< world records) too\n"
    "      --pad-tail         and repeat a record on the other ranks, so that all\n"
    "                         ranks deliver as many\n"
    "Batches and memory:\n"
    "      --batch N          records per batch (default 256)\n"
    "      --batch-bytes SIZE fill batches to SIZE bytes instead\n"
    "      --prefetch N       batches assembled ahead (default 4)\n"
    "      --pinned SIZE      the pinned pool (default 512MiB)\n"
    "      --budget SIZE      pool bytes the stream may hold (default: all)\n"
    "      --workers N        decompression threads (default: online cores)\n"
    "      --queue-depth N    reads in flight (default 32)\n"
    "      --no-direct        buffered reads even where O_DIRECT works\n"
    "      --sqpoll           io_uring submission polling\n"
    "      --unlocked-ok      go on if the pool cannot be locked in memory\n"
    "      --skip-corrupt     skip frames that fail their checks (counted)\n"
    "Checking and output:\n"
    "      --verify-order     check every batch's records and bytes against the\n"
    "                         epoch plan and an independent read (slower)\n"
    "      --reference DIR    the local copy of a remote DATASET that\n"
    "                         --verify-order reads the records from\n"
    "      --json             one JSON object on standard output\n"
    "  -q, --quiet            no report\n"
    "  -h, --help             show this help\n"
    "\n";

struct stage_opts {
	struct quai_ctx_opts ctx;
	struct quai_stream_opts st;
	uint32_t epochs;
	bool verify, json, quiet;
	const char *reference; /* --verify-order reads records here */
};

static int usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "quai stage: ");
	fprintf(stderr, fmt, arg);
	fputs("\nTry 'quai stage --help'.\n", stderr);
	return CLI_EXIT_USAGE;
}

static int num(const char *opt, const char *arg, uint64_t max, uint64_t *ret)
{
	if (cli_parse_u64(arg, ret) < 0 || *ret > max) {
		fprintf(stderr, "quai stage: invalid value '%s' for %s\n", arg, opt);
		fputs("Try 'quai stage --help'.\n", stderr);
		return CLI_EXIT_USAGE;
	}
	return 0;
}

static int size(const char *opt, const char *arg, uint64_t *ret)
{
	if (cli_parse_size(arg, ret) < 0 || *ret == 0) {
		fprintf(stderr, "quai stage: invalid size '%s' for %s\n", arg, opt);
		fputs("Try 'quai stage --help'.\n", stderr);
		return CLI_EXIT_USAGE;
	}
	return 0;
}

/* Independent readers for --verify-order, one per frame in use: batches
 * interleave records of many frames, and a reader decodes one frame at a
 * time. */
#define VERIFY_READERS 64

struct verifier {
	quai_dataset *ds;
	quai_reader *r[VERIFY_READERS];
	uint32_t shard[VERIFY_READERS], frame[VERIFY_READERS];
	uint64_t used[VERIFY_READERS], tick;
};

static int verifier_read(struct verifier *v, uint64_t id, const void **d, size_t *len)
{
	struct quai_record_loc loc;
	int r = quai_dataset_locate(v->ds, id, &loc);
	if (r < 0)
		return r;
	int k = -1, lru = 0;
	for (int i = 0; i < VERIFY_READERS; i++) {
		if (v->used[i] && v->shard[i] == loc.shard && v->frame[i] == loc.frame) {
			k = i;
			break;
		}
		if (v->used[i] < v->used[lru])
			lru = i;
	}
	if (k < 0) {
		k = lru;
		v->shard[k] = loc.shard;
		v->frame[k] = loc.frame;
	}
	v->used[k] = ++v->tick;
	return quai_reader_record(v->r[k], id, d, len);
}

/* Checks one batch: the ids are the plan's, the bytes are the records'. */
static int check_batch(struct verifier *v, const struct quai_batch *b, uint64_t *expected_ids,
		       uint64_t nexp, uint64_t *pos)
{
	for (uint32_t i = 0; i < b->count; i++) {
		uint64_t id = b->ids[i];
		if (expected_ids) {
			if (*pos >= nexp || expected_ids[*pos] != id) {
				fprintf(stderr,
					"quai stage: order check failed: batch %" PRIu64
					" record %u is %" PRIu64 ", the plan says %" PRIu64 "\n",
					b->index, i, id,
					*pos < nexp ? expected_ids[*pos] : UINT64_MAX);
				return -1;
			}
		}
		(*pos)++;
		const void *d;
		size_t len;
		int r = verifier_read(v, id, &d, &len);
		if (r < 0 || len != b->offsets[i + 1] - b->offsets[i] ||
		    memcmp(d, b->data + b->offsets[i], len) != 0) {
			fprintf(stderr,
				"quai stage: content check failed: record %" PRIu64
				" in batch %" PRIu64 " differs from an independent read (%s)\n",
				id, b->index, r < 0 ? quai_strerror(r) : "bytes differ");
			return -1;
		}
	}
	return 0;
}

static int parse(int argc, char **argv, struct stage_opts *o)
{
	enum {
		O_RANK = 256,
		O_WORLD,
		O_SEED,
		O_EPOCH,
		O_EPOCHS,
		O_PARTS,
		O_WINDOW,
		O_NOSHUF,
		O_KEEP,
		O_PAD,
		O_BATCH,
		O_BBYTES,
		O_PREFETCH,
		O_PINNED,
		O_BUDGET,
		O_WORKERS,
		O_QD,
		O_NODIRECT,
		O_SQPOLL,
		O_UNLOCKED,
		O_SKIP,
		O_VERIFY,
		O_REFERENCE,
		O_JSON,
	};
	static const struct option longopts[] = {
	    {"rank", required_argument, NULL, O_RANK},
	    {"world", required_argument, NULL, O_WORLD},
	    {"seed", required_argument, NULL, O_SEED},
	    {"epoch", required_argument, NULL, O_EPOCH},
	    {"epochs", required_argument, NULL, O_EPOCHS},
	    {"partitions", required_argument, NULL, O_PARTS},
	    {"window", required_argument, NULL, O_WINDOW},
	    {"no-shuffle", no_argument, NULL, O_NOSHUF},
	    {"keep-tail", no_argument, NULL, O_KEEP},
	    {"pad-tail", no_argument, NULL, O_PAD},
	    {"batch", required_argument, NULL, O_BATCH},
	    {"batch-bytes", required_argument, NULL, O_BBYTES},
	    {"prefetch", required_argument, NULL, O_PREFETCH},
	    {"pinned", required_argument, NULL, O_PINNED},
	    {"budget", required_argument, NULL, O_BUDGET},
	    {"workers", required_argument, NULL, O_WORKERS},
	    {"queue-depth", required_argument, NULL, O_QD},
	    {"no-direct", no_argument, NULL, O_NODIRECT},
	    {"sqpoll", no_argument, NULL, O_SQPOLL},
	    {"unlocked-ok", no_argument, NULL, O_UNLOCKED},
	    {"skip-corrupt", no_argument, NULL, O_SKIP},
	    {"verify-order", no_argument, NULL, O_VERIFY},
	    {"reference", required_argument, NULL, O_REFERENCE},
	    {"json", no_argument, NULL, O_JSON},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	uint64_t v;
	int c, r = 0;
	o->ctx.size = sizeof(o->ctx);
	o->st.size = sizeof(o->st);
	o->epochs = 1;
	while (r == 0 && (c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		switch (c) {
		case O_RANK:
			r = num("--rank", optarg, UINT32_MAX, &v);
			o->st.rank = (uint32_t)v;
			break;
		case O_WORLD:
			r = num("--world", optarg, UINT32_MAX, &v);
			o->st.world = (uint32_t)v;
			break;
		case O_SEED:
			r = num("--seed", optarg, UINT64_MAX, &o->st.seed);
			break;
		case O_EPOCH:
			r = num("--epoch", optarg, UINT64_MAX, &o->st.epoch);
			break;
		case O_EPOCHS:
			r = num("--epochs", optarg, 1000000, &v);
			o->epochs = (uint32_t)v;
			break;
		case O_PARTS:
			r = num("--partitions", optarg, UINT32_MAX, &v);
			o->st.partitions = (uint32_t)v;
			break;
		case O_WINDOW:
			r = num("--window", optarg, UINT32_MAX, &v);
			o->st.window = (uint32_t)v;
			break;
		case O_NOSHUF:
			o->st.flags |= QUAI_STREAM_NO_SHUFFLE;
			break;
		case O_KEEP:
			o->st.tail = QUAI_TAIL_KEEP;
			break;
		case O_PAD:
			o->st.tail = QUAI_TAIL_PAD;
			break;
		case O_BATCH:
			r = num("--batch", optarg, UINT32_MAX, &v);
			o->st.batch_records = (uint32_t)v;
			break;
		case O_BBYTES:
			r = size("--batch-bytes", optarg, &o->st.batch_bytes);
			break;
		case O_PREFETCH:
			r = num("--prefetch", optarg, 4096, &v);
			o->st.prefetch_batches = (uint32_t)v;
			break;
		case O_PINNED:
			r = size("--pinned", optarg, &o->ctx.pinned_bytes);
			break;
		case O_BUDGET:
			r = size("--budget", optarg, &o->st.memory_budget);
			break;
		case O_WORKERS:
			r = num("--workers", optarg, 256, &v);
			o->ctx.workers = (unsigned)v;
			break;
		case O_QD:
			r = num("--queue-depth", optarg, 4096, &v);
			o->ctx.queue_depth = (unsigned)v;
			break;
		case O_NODIRECT:
			o->ctx.flags |= QUAI_CTX_NO_DIRECT;
			break;
		case O_SQPOLL:
			o->ctx.flags |= QUAI_CTX_SQPOLL;
			break;
		case O_UNLOCKED:
			o->ctx.flags |= QUAI_CTX_UNLOCKED_OK;
			break;
		case O_SKIP:
			o->st.flags |= QUAI_STREAM_SKIP_CORRUPT;
			break;
		case O_VERIFY:
			o->verify = true;
			break;
		case O_REFERENCE:
			o->reference = optarg;
			break;
		case O_JSON:
			o->json = true;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'h':
			fputs(stage_help, stdout);
			fputs(exit_status_help, stdout);
			return -1;
		default:
			return CLI_EXIT_USAGE + 1000;
		}
	}
	if (r)
		return r;
	if (o->st.batch_records && o->st.batch_bytes)
		return usage("%s", "--batch and --batch-bytes exclude each other");
	if (argc - optind != 1)
		return usage("%s", argc - optind ? "one DATASET operand, please"
						 : "missing DATASET operand");
	return 0;
}

struct totals {
	uint64_t records, bytes, batches, read, skipped, wait_ns, expected;
	uint64_t frames, in_place;
	double first_batch;
	struct quai_stream_stats last;
};

static int run_epoch(quai_ctx *ctx, const char *uri, struct stage_opts *o, struct verifier *rd,
		     struct totals *t, double t0)
{
	char err[512];
	quai_stream *s;
	int r;
	/* For --verify-order: the ids a first stream of the same epoch
	 * delivers with other timing (one batch ahead): the order must not
	 * depend on timing. The bytes are then checked against quai_reader,
	 * a path that shares nothing with the engine but the format code.
	 * The twin is drained and closed first: both share the pool. */
	uint64_t *ids = NULL, nids = 0, pos = 0;
	if (o->verify) {
		struct quai_stream_opts twin = o->st;
		twin.prefetch_batches = 1;
		quai_stream *s2;
		r = quai_stream_open(ctx, uri, &twin, &s2, err, sizeof(err));
		if (r < 0) {
			fprintf(stderr, "quai stage: %s\n", err[0] ? err : quai_strerror(r));
			return r;
		}
		struct quai_stream_stats st = {.size = sizeof(st)};
		quai_stream_stats(s2, &st);
		ids = malloc((st.records_total + 1) * sizeof(*ids));
		struct quai_batch b;
		while (ids && (r = quai_next(s2, &b)) > 0) {
			memcpy(ids + nids, b.ids, b.count * sizeof(*ids));
			nids += b.count;
			quai_release(s2, &b);
		}
		if (r < 0)
			fprintf(stderr, "quai stage: %s\n", quai_stream_error(s2));
		quai_stream_close(s2);
		if (r < 0 || !ids) {
			free(ids);
			return r < 0 ? r : -ENOMEM;
		}
	}
	r = quai_stream_open(ctx, uri, &o->st, &s, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "quai stage: %s\n", err[0] ? err : quai_strerror(r));
		free(ids);
		return r;
	}
	struct quai_batch b;
	while ((r = quai_next(s, &b)) > 0) {
		if (t->batches == 0)
			t->first_batch = cli_now() - t0;
		t->batches++;
		t->records += b.count;
		t->bytes += b.bytes;
		if (o->verify && check_batch(rd, &b, ids, nids, &pos) < 0)
			r = -QUAI_ECORRUPT;
		quai_release(s, &b);
		if (r < 0 || cli_interrupted())
			break;
	}
	if (r == 0 && o->verify && pos != nids) {
		fprintf(stderr,
			"quai stage: order check failed: %" PRIu64 " records, the plan has %" PRIu64
			"\n",
			pos, nids);
		r = -QUAI_ECORRUPT;
	}
	if (r < 0 && r != -QUAI_ECORRUPT)
		fprintf(stderr, "quai stage: %s\n",
			quai_stream_error(s)[0] ? quai_stream_error(s) : quai_strerror(r));
	else if (r == -QUAI_ECORRUPT && quai_stream_error(s)[0])
		fprintf(stderr, "quai stage: %s\n", quai_stream_error(s));
	struct quai_stream_stats st = {.size = sizeof(st)};
	quai_stream_stats(s, &st);
	t->read += st.bytes_read;
	t->skipped += st.skipped_records;
	t->wait_ns += st.wait_ns;
	t->expected += st.records_total;
	t->frames += st.frames_read;
	t->in_place += st.frames_in_place;
	t->last = st;
	free(ids);
	quai_stream_close(s);
	if (cli_interrupted())
		return -EINTR;
	return r;
}

int cmd_stage(int argc, char **argv)
{
	struct stage_opts o = {0};
	int r = parse(argc, argv, &o);
	if (r == -1)
		return cli_finish_stdout("stage");
	if (r == CLI_EXIT_USAGE + 1000) {
		fputs("Try 'quai stage --help'.\n", stderr);
		return CLI_EXIT_USAGE;
	}
	if (r)
		return r;
	const char *uri = argv[optind];
	char err[512];
	quai_ctx *ctx;
	const int remote = quai_uri_is_remote(uri);
	if (remote && (r = cli_check_dataset_uri("stage", uri)) != 0)
		return r;
	cli_catch_signals();
	/* A remote stream's batches land in a small ring of the pool: the
	 * rest need not be touched. */
	if (remote)
		o.ctx.flags |= QUAI_CTX_LAZY_POOL;
	r = quai_ctx_new(&o.ctx, &ctx, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "quai stage: %s\n", err[0] ? err : quai_strerror(r));
		return cli_exit_code(r);
	}
	struct verifier vf = {0}, *rd = NULL;
	const char *ref = o.reference ? o.reference : uri;
	if (o.verify && quai_uri_is_remote(ref)) {
		fprintf(stderr, "quai stage: --verify-order of a remote dataset needs --reference "
				"DIR, a local copy to read its records from\n");
		quai_ctx_free(ctx);
		return CLI_EXIT_USAGE;
	}
	if (o.verify) {
		r = quai_dataset_open(ref, &vf.ds, err, sizeof(err));
		for (int i = 0; r == 0 && i < VERIFY_READERS; i++)
			r = quai_reader_new(vf.ds, &vf.r[i]);
		if (r < 0) {
			fprintf(stderr, "quai stage: '%s': %s\n", ref,
				err[0] ? err : quai_strerror(r));
			for (int i = 0; i < VERIFY_READERS; i++)
				quai_reader_free(vf.r[i]);
			quai_dataset_close(vf.ds);
			quai_ctx_free(ctx);
			return cli_exit_code(r);
		}
		rd = &vf;
	}

	struct totals t = {0};
	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	double t0 = cli_now();
	uint64_t first_epoch = o.st.epoch;
	for (uint32_t e = 0; e < o.epochs && r >= 0; e++) {
		o.st.epoch = first_epoch + e;
		r = run_epoch(ctx, uri, &o, rd, &t, t0);
	}
	double wall = cli_now() - t0;
	getrusage(RUSAGE_SELF, &ru1);
	double user = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
		      (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6;
	double sys = (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
		     (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
	struct quai_ctx_info ci = {.size = sizeof(ci)};
	quai_ctx_info(ctx, &ci);

	if (r >= 0 && !o.quiet) {
		double mbs = cli_rate_mbs(t.bytes, wall);
		double gb = (double)t.bytes / 1e9;
		if (o.json) {
			printf(
			    "{\"records\": %" PRIu64 ", \"expected_records\": %" PRIu64
			    ", \"bytes\": %" PRIu64 ", \"batches\": %" PRIu64
			    ", \"bytes_read\": %" PRIu64 ", \"seconds\": %.6f, \"mb_per_s\": %.3f"
			    ", \"records_per_s\": %.1f, \"first_batch_s\": %.6f, \"user_s\": %.3f"
			    ", \"sys_s\": %.3f, \"wait_s\": %.6f, \"skipped_records\": %" PRIu64
			    ", \"partitions\": %u, \"direct_io_shards\": %u, "
			    "\"registered_buffers\": %d, \"frames_read\": %" PRIu64
			    ", \"frames_in_place\": %" PRIu64 ", \"pinned_bytes\": %" PRIu64
			    ", \"pinned_peak\": %" PRIu64 ", \"working_set\": %" PRIu64
			    ", \"workers\": %u, \"hugepages\": %d"
			    ", \"locked\": %d, \"verified\": %s}\n",
			    t.records, t.expected, t.bytes, t.batches, t.read, wall, mbs,
			    wall > 0 ? (double)t.records / wall : 0.0, t.first_batch, user, sys,
			    (double)t.wait_ns / 1e9, t.skipped, t.last.partitions, t.last.direct_io,
			    t.last.registered_buffers, t.frames, t.in_place, ci.pinned_bytes,
			    ci.pinned_peak, t.last.working_set_bytes, ci.workers, ci.hugepages,
			    ci.locked, o.verify ? "true" : "false");
		} else {
			char b1[32], b2[32], b3[32], b4[32], b5[32];
			cli_format_bytes(t.bytes, b1, sizeof(b1));
			cli_format_bytes(t.read, b2, sizeof(b2));
			cli_format_bytes(ci.pinned_bytes, b3, sizeof(b3));
			cli_format_bytes(ci.pinned_peak, b4, sizeof(b4));
			cli_format_bytes(t.last.working_set_bytes, b5, sizeof(b5));
			printf("stage: %s, rank %u of %u, %u epoch(s)\n", uri, o.st.rank,
			       o.st.world ? o.st.world : 1, o.epochs);
			printf("  records      %" PRIu64 " in %" PRIu64 " batches%s\n", t.records,
			       t.batches, o.verify ? " (order and bytes verified)" : "");
			if (t.skipped)
				printf("  skipped      %" PRIu64 " records of corrupt frames\n",
				       t.skipped);
			printf("  bytes        %s delivered, %s read from storage\n", b1, b2);
			printf("  throughput   %.1f MB/s, %.0f records/s, %.3f s\n", mbs,
			       wall > 0 ? (double)t.records / wall : 0.0, wall);
			printf("  first batch  %.1f ms\n", t.first_batch * 1e3);
			printf("  cpu          user %.2f s, sys %.2f s, %.2f s per GB\n", user, sys,
			       gb > 0 ? (user + sys) / gb : 0.0);
			printf("  waiting      %.3f s in quai_next\n", (double)t.wait_ns / 1e9);
			printf("  pinned       %s pool (%s, %s), peak %s, working set %s\n", b3,
			       ci.hugepages == 2 ? "huge pages"
			       : ci.hugepages	 ? "transparent huge pages"
						 : "small pages",
			       ci.locked ? "locked" : "NOT locked", b4, b5);
			char dio[64];
			if (t.last.direct_io)
				snprintf(dio, sizeof(dio), "O_DIRECT on %u shard(s)",
					 t.last.direct_io);
			else
				snprintf(dio, sizeof(dio), "buffered (page cache)");
			if (remote)
				printf("  io           remote: quaid stages the batches and writes "
				       "them into this pool (RMA)\n");
			else
				printf("  io           %s, %s, %u workers\n", dio,
				       t.last.registered_buffers ? "registered buffers"
								 : "unregistered buffers",
				       ci.workers);
			if (t.in_place)
				printf("  in place     %" PRIu64 " of %" PRIu64
				       " frames stored raw: checked and copied from where "
				       "they were read\n",
				       t.in_place, t.frames);
			printf("  gpu          %s\n", ci.gpu == QUAI_GPU_HIP ? "registered with HIP"
						      : ci.gpu == QUAI_GPU_CUDA
							  ? "registered with CUDA"
							  : ci.gpu_note);
		}
	}
	for (int i = 0; i < VERIFY_READERS; i++)
		quai_reader_free(vf.r[i]);
	quai_dataset_close(vf.ds);
	quai_ctx_free(ctx);
	if (r == -EINTR)
		return CLI_EXIT_INTERRUPTED;
	if (r == -EINVAL || r == -ENOBUFS)
		return CLI_EXIT_USAGE; /* an option the stream refused (world, budget...) */
	if (r < 0)
		return cli_exit_code(r);
	return cli_finish_stdout("stage");
}
