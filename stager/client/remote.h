/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The client side of a remote stream (quai://HOST[:PORT]/NAME): quaid
 * runs the staging engine next to the storage and RMA-writes each batch
 * into a ring of slots in this context's pinned pool. The front door
 * (stager/front/stream_front.c) sends the public stream calls here for
 * quai:// URIs, so that a training job switches between embedded and remote
 * mode by URI only; it checks the arguments and options first.
 */
#ifndef QUAI_STAGER_REMOTE_H
#define QUAI_STAGER_REMOTE_H

#include <stddef.h>

#include "quai/quai.h"

struct qrstream;

int qrs_open(quai_ctx *ctx, const char *uri, const struct quai_stream_opts *o,
	     struct qrstream **ret, char *err, size_t err_len);
int qrs_next(struct qrstream *r, struct quai_batch *batch);
void qrs_release(struct qrstream *r, struct quai_batch *batch);
const char *qrs_error(struct qrstream *r);
int qrs_state(struct qrstream *r, void *buf, size_t len);
int qrs_stats(struct qrstream *r, struct quai_stream_stats *st);
void qrs_close(struct qrstream *r);

#endif /* QUAI_STAGER_REMOTE_H */
