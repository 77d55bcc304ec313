/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host's sovereignty decision, in one place (as qpol_decide() is
 * quaid's): may this process hold a dataset's bytes for an operation, in
 * the memory and at the destinations it names? Every path of a process
 * that touches a dataset without quaid deciding for it asks here: local
 * streams (the engine), remote streams, pull and push (the client), pack,
 * unpack, verify and cat (quai_dataset_allow) - and each answer, granted
 * or refused, is one line of the host's audit log (qaudit_local()).
 */
#ifndef QUAI_STAGER_HOSTDECIDE_H
#define QUAI_STAGER_HOSTDECIDE_H

#include <stdint.h>

#include "quai/quai.h"

/* Where a stream's bytes would live in this process. */
enum qhd_memory {
	QHD_MEM_LOCKED = 0,	   /* locked pinned memory: sensitive data may */
	QHD_MEM_POOL_UNLOCKED = 1, /* the context's pool could not be locked */
	QHD_MEM_DCTX_UNLOCKED = 2, /* the workers' decompression contexts could not */
};

struct qhd_request {
	const char *op;	     /* the audit log's op: "stream", "pull", "push"... */
	const char *dataset; /* its name */
	int classification;  /* QUAI_CLASS_* */
	const char *zone;    /* its residency zone */
	int64_t bytes;	     /* raw bytes, for the audit line; -1 when unknown */
	/* The host-zone rule: what would happen on this host, for the
	 * message ("read", "streamed", "pulled", "written"); NULL where this
	 * host holds no bytes of it (a push of a dataset already here). */
	const char *what;
	enum qhd_memory memory; /* streams; QHD_MEM_LOCKED for the others */
	/* Paths on this host the bytes are written to: each must be under
	 * this host's sovereign paths (NULL-terminated; up to two). */
	const char *dests[3];
	/* A destination whose path cannot be told ("standard output"), or
	 * NULL: refused for sensitive data, as no path can be checked. */
	const char *dest_untold;
	/* A push: the server's name and zone (the bytes leave for it); NULL
	 * otherwise. Sensitive data never leaves its zone. */
	const char *peer, *peer_zone;
	/* quaid's own engine streams: quaid decided and audits them; only the
	 * memory rule applies, and no line is written here. */
	int served;
};

/* Decides q: sensitive data only in locked memory, only on a host of its
 * zone, only to sovereign paths of this host, never pushed out of its
 * zone; any other classification is granted. Writes the audit line
 * (unless q->served). Returns 0 when granted and audited; -QUAI_EPOLICY
 * when refused, with err naming the dataset and the rule's reason; or the
 * audit log's error (-errno, -QUAI_EFORMAT) for a grant that could not be
 * audited, with err saying so: nothing is read unaudited. */
int qhd_decide(const struct qhd_request *q, char *err, size_t err_len);

/* quai_dataset_allow() (quai.h), with dest_untold naming a destination
 * whose path cannot be told (NULL: none), as struct qhd_request's. */
int qhd_dataset_allow(const quai_dataset *ds, const char *op, const char *dest,
		      const char *dest_untold, char *err, size_t err_len);

#endif /* QUAI_STAGER_HOSTDECIDE_H */
