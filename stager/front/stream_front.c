/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The front door of streams: every public quai_stream_* call comes here
 * and goes on to the engine (a local path or file:// URI:
 * stager/engine/stream.c) or to the client (quai://HOST[:PORT]/NAME:
 * stager/client/remote.c). Neither knows of the other; the choice is made
 * once, at open, from the URI (quai_uri_is_remote()), and the arguments
 * and options are checked here, for both.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "engine.h"
#include "errmsg.h"
#include "plan.h"
#include "quai/quai.h"
#include "remote.h"

/* Exactly one of the two is set. */
struct quai_stream {
	struct qestream *local;
	struct qrstream *remote;
};

static int check_opts(const struct quai_stream_opts *o, char *err, size_t err_len)
{
	if (o->size < sizeof(size_t) || o->size > sizeof(*o)) {
		qerr_set(err, err_len, "bad quai_stream_opts size %zu", o->size);
		return -EINVAL;
	}
	uint32_t world = o->world ? o->world : 1;
	if (o->rank >= world) {
		qerr_set(err, err_len, "rank %" PRIu32 " is not below the world size %" PRIu32,
			 o->rank, world);
		return -EINVAL;
	}
	if (o->batch_records && o->batch_bytes) {
		qerr_set(err, err_len, "give batch_records or batch_bytes, not both");
		return -EINVAL;
	}
	if (o->tail != QUAI_TAIL_DROP && o->tail != QUAI_TAIL_KEEP && o->tail != QUAI_TAIL_PAD) {
		qerr_set(err, err_len, "unknown tail policy %d", o->tail);
		return -EINVAL;
	}
	if (world > QPL_WORLD_MAX) {
		qerr_set(err, err_len, "world %" PRIu32 " is above the largest, %u", world,
			 QPL_WORLD_MAX);
		return -EINVAL;
	}
	if (o->partitions) {
		qerr_set(err, err_len,
			 "partitions are no longer an option: any world size from 1 to %u works, "
			 "and a state resumes at any other (leave partitions 0)",
			 QPL_WORLD_MAX);
		return -EINVAL;
	}
	if ((o->flags & QUAI_STREAM_GLOBAL_BATCHES) && o->batch_bytes) {
		qerr_set(err, err_len, "global batches are counted in records: give batch_records");
		return -EINVAL;
	}
	if (o->flags &
	    ~(QUAI_STREAM_NO_SHUFFLE | QUAI_STREAM_SKIP_CORRUPT | QUAI_STREAM_GLOBAL_BATCHES)) {
		qerr_set(err, err_len, "unknown stream flags 0x%x", o->flags);
		return -EINVAL;
	}
	return 0;
}

int quai_stream_open(quai_ctx *ctx, const char *uri, const struct quai_stream_opts *opts,
		     quai_stream **ret_stream, char *err, size_t err_len)
{
	static const struct quai_stream_opts defaults = {.size = sizeof(defaults)};
	const struct quai_stream_opts *o = opts ? opts : &defaults;
	int r;

	qerr_set(err, err_len, "%s", "");
	if (!ctx || !uri || !ret_stream)
		return -EINVAL;
	r = check_opts(o, err, err_len);
	if (r < 0)
		return r;
	struct quai_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (quai_uri_is_remote(uri))
		r = qrs_open(ctx, uri, o, &s->remote, err, err_len);
	else
		r = qes_open(ctx, uri, o, &s->local, err, err_len);
	if (r < 0) {
		free(s);
		return r;
	}
	*ret_stream = s;
	return 0;
}

int quai_next(quai_stream *s, struct quai_batch *batch)
{
	return qstream_next(s, batch, NULL);
}

int qstream_next(quai_stream *s, struct quai_batch *batch, const int *cancel)
{
	if (!s || !batch)
		return -EINVAL;
	if (s->remote)
		return qrs_next(s->remote, batch);
	return qes_next(s->local, batch, cancel);
}

int qstream_geometry(quai_stream *s, struct qstream_geometry *g)
{
	if (!s || !g || s->remote)
		return -EINVAL;
	return qes_geometry(s->local, g);
}

void quai_release(quai_stream *s, struct quai_batch *batch)
{
	if (!s || !batch || !batch->internal)
		return;
	if (s->remote)
		qrs_release(s->remote, batch);
	else
		qes_release(s->local, batch);
}

const char *quai_stream_error(quai_stream *s)
{
	if (!s)
		return "";
	return s->remote ? qrs_error(s->remote) : qes_error(s->local);
}

int quai_stream_state(quai_stream *s, void *buf, size_t len)
{
	if (!s || !buf)
		return -EINVAL;
	return s->remote ? qrs_state(s->remote, buf, len) : qes_state(s->local, buf, len);
}

int quai_stream_stats(quai_stream *s, struct quai_stream_stats *stats)
{
	if (!s || !stats || stats->size < sizeof(size_t))
		return -EINVAL;
	return s->remote ? qrs_stats(s->remote, stats) : qes_stats(s->local, stats);
}

void quai_stream_close(quai_stream *s)
{
	if (!s)
		return;
	if (s->remote)
		qrs_close(s->remote);
	else
		qes_close(s->local);
	free(s);
}
