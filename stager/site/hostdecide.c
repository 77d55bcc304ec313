/* SPDX-License-Identifier: Apache-2.0 */
/* The host's sovereignty decision (hostdecide.h). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "errmsg.h"
#include "hostconf.h"
#include "hostdecide.h"
#include "quai/quai.h"

/* The rules, in order; the first that refuses names the refusal. Returns
 * 0 or -QUAI_EPOLICY with msg and *rule set. */
static int rules(const struct qhd_request *q, char *msg, size_t msg_len, const char **rule)
{
	int r;

	if (q->classification != QUAI_CLASS_SENSITIVE)
		return 0;
	*rule = "sovereign:memory";
	if (q->memory == QHD_MEM_POOL_UNLOCKED) {
		qerr_set(msg, msg_len,
			 "dataset %s is sensitive: its batches must live in locked memory, but "
			 "this context's pinned pool could not be locked (raise RLIMIT_MEMLOCK, "
			 "e.g. ulimit -l, and create the context without QUAI_CTX_UNLOCKED_OK)",
			 q->dataset);
		return -QUAI_EPOLICY;
	}
	if (q->memory == QHD_MEM_DCTX_UNLOCKED) {
		qerr_set(msg, msg_len,
			 "dataset %s is sensitive: its frames must be decoded in locked memory, "
			 "but RLIMIT_MEMLOCK left no room for the workers' decompression "
			 "contexts (about 96 KiB each) beside the pinned pool: raise it (e.g. "
			 "ulimit -l) or make the pool that much smaller",
			 q->dataset);
		return -QUAI_EPOLICY;
	}
	if (q->served)
		return 0;
	*rule = "sovereign:zone";
	if (q->what) {
		r = qhc_zone_allows(q->dataset, q->zone, q->what, msg, msg_len);
		if (r < 0)
			return -QUAI_EPOLICY;
	}
	if (q->peer_zone && strcmp(q->peer_zone, q->zone) != 0) {
		qerr_set(msg, msg_len,
			 "dataset %s is sensitive, of zone %s; %s is in zone %s, and sensitive "
			 "data is never pushed outside its zone",
			 q->dataset, q->zone, q->peer ? q->peer : "the server", q->peer_zone);
		return -QUAI_EPOLICY;
	}
	*rule = "sovereign:paths";
	if (q->dest_untold) {
		qerr_set(msg, msg_len,
			 "dataset %s is sensitive: %s is a file whose path cannot be told, so it "
			 "cannot be checked against this host's sovereign paths",
			 q->dataset, q->dest_untold);
		return -QUAI_EPOLICY;
	}
	for (int i = 0; i < 2 && q->dests[i]; i++) {
		char why[PATH_MAX + 256] = "";
		r = qhc_sovereign_check(q->dests[i], why, sizeof(why));
		if (r == -QUAI_EPOLICY) {
			qerr_set(msg, msg_len, "dataset %s is sensitive (zone %s): %s", q->dataset,
				 q->zone, why);
			return r;
		}
		if (r < 0) {
			qerr_set(msg, msg_len,
				 "dataset %s is sensitive (zone %s), and whether %s is sovereign "
				 "storage cannot be told: %s",
				 q->dataset, q->zone, q->dests[i], why[0] ? why : quai_strerror(r));
			return -QUAI_EPOLICY;
		}
	}
	return 0;
}

int qhd_decide(const struct qhd_request *q, char *err, size_t err_len)
{
	char msg[PATH_MAX + 1024] = "", aerr[PATH_MAX + 256];
	const char *rule = "local";

	if (!q || !q->op || !q->dataset || !q->zone)
		return -EINVAL;
	int r = rules(q, msg, sizeof(msg), &rule);
	if (r == 0)
		rule = "local";
	if (q->served) {
		if (r < 0)
			qerr_set(err, err_len, "%s", msg);
		return r;
	}
	int ar = qaudit_local(q->op, q->dataset, q->classification, q->zone, q->bytes, r == 0, rule,
			      r < 0 ? msg : NULL, aerr, sizeof(aerr));
	if (r < 0) {
		qerr_set(err, err_len, "%s", msg);
		return r;
	}
	if (ar < 0) {
		qerr_set(err, err_len, "%s: nothing is read unaudited", aerr);
		return ar;
	}
	return 0;
}
