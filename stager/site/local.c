/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host's decisions on local datasets (quai.h: quai_dataset_allow), and
 * the public quai_pack() and quai_unpack(), which make them before the
 * format code in compress/ writes a byte: compress/ cannot read the host's
 * configuration, so the decision lives here, above it.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "dataset.h"
#include "hostdecide.h"
#include "quai/quai.h"

/* The host's decision (hostdecide.h) on a local dataset: read here, or
 * (dest not NULL) written to dest; one audit line either way. */
static int decide(const char *op, const char *name, int cls, const char *zone, uint64_t bytes,
		  const char *dest, const char *dest_untold, char *err, size_t err_len)
{
	struct qhd_request q = {
	    .op = op,
	    .dataset = name,
	    .classification = cls,
	    .zone = zone,
	    .bytes = (int64_t)(bytes > INT64_MAX ? INT64_MAX : bytes),
	    .what = dest ? "written" : "read",
	    .dests = {dest, NULL},
	    .dest_untold = dest_untold,
	};
	return qhd_decide(&q, err, err_len);
}

int qhd_dataset_allow(const quai_dataset *ds, const char *op, const char *dest,
		      const char *dest_untold, char *err, size_t err_len)
{
	if (!ds || !op || !op[0])
		return -EINVAL;
	struct quai_dataset_info in = {.size = sizeof(in)};
	int r = quai_dataset_info(ds, &in);
	if (r < 0)
		return r;
	return decide(op, in.name, in.classification, in.zone, in.raw_bytes, dest, dest_untold, err,
		      err_len);
}

int quai_dataset_allow(const quai_dataset *ds, const char *op, const char *dest, char *err,
		       size_t err_len)
{
	return qhd_dataset_allow(ds, op, dest, NULL, err, err_len);
}

int quai_unpack(const char *path, const char *dest, char *err, size_t err_len)
{
	quai_dataset *ds;
	/* A dataset that does not open is for qds_unpack() to report. */
	if (path && dest && quai_dataset_open(path, &ds, NULL, 0) == 0) {
		int r = quai_dataset_allow(ds, "unpack", dest, err, err_len);
		quai_dataset_close(ds);
		if (r < 0)
			return r;
	}
	return qds_unpack(path, dest, err, err_len);
}

int quai_pack(const char *const *srcs, size_t nsrcs, const char *dest,
	      const struct quai_pack_opts *opts, struct quai_pack_result *ret_result, char *err,
	      size_t err_len)
{
	/* An older caller's smaller options have no classification: not
	 * sensitive. */
	if (opts && dest &&
	    opts->size >= offsetof(struct quai_pack_opts, zone) + sizeof(opts->zone) &&
	    opts->classification == QUAI_CLASS_SENSITIVE) {
		/* The name qpk_pack() gives it: opts->name, else dest's last
		 * component. */
		char name[QUAI_NAME_MAX + 1];
		if (opts->name) {
			snprintf(name, sizeof(name), "%s", opts->name);
		} else {
			size_t l = strlen(dest), b;
			while (l > 1 && dest[l - 1] == '/')
				l--;
			for (b = l; b > 0 && dest[b - 1] != '/'; b--)
				;
			snprintf(name, sizeof(name), "%.*s", (int)(l - b), dest + b);
		}
		int r = decide("pack", name, opts->classification, opts->zone ? opts->zone : "none",
			       0, dest, NULL, err, err_len);
		if (r < 0)
			return r;
	}
	return qpk_pack(srcs, nsrcs, dest, opts, ret_result, err, err_len);
}
