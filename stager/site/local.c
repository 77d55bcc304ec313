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

#include "audit.h"
#include "dataset.h"
#include "errmsg.h"
#include "hostconf.h"
#include "quai/quai.h"

/* The decision: sensitive data only on a host of its zone, and (dest not
 * NULL) only under a sovereign path; one audit line either way. */
static int decide(const char *op, const char *name, int cls, const char *zone, uint64_t bytes,
		  const char *dest, char *err, size_t err_len)
{
	char msg[PATH_MAX + 512] = "", aerr[PATH_MAX + 256];
	const char *rule = "local";
	int r = 0;

	if (cls == QUAI_CLASS_SENSITIVE) {
		r = qhc_zone_allows(name, zone, dest ? "written" : "read", msg, sizeof(msg));
		if (r < 0) {
			rule = "sovereign:zone";
		} else if (dest) {
			char why[PATH_MAX + 256];
			r = qhc_sovereign_check(dest, why, sizeof(why));
			if (r < 0) {
				rule = "sovereign:paths";
				snprintf(msg, sizeof(msg), "dataset %s is sensitive (zone %s): %s",
					 name, zone, why);
			}
		}
	}
	int ar = qaudit_local(op, name, cls, zone, (int64_t)(bytes > INT64_MAX ? INT64_MAX : bytes),
			      r == 0, rule, r < 0 ? msg : NULL, aerr, sizeof(aerr));
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

int quai_dataset_allow(const quai_dataset *ds, const char *op, const char *dest, char *err,
		       size_t err_len)
{
	if (!ds || !op || !op[0])
		return -EINVAL;
	struct quai_dataset_info in = {.size = sizeof(in)};
	int r = quai_dataset_info(ds, &in);
	if (r < 0)
		return r;
	return decide(op, in.name, in.classification, in.zone, in.raw_bytes, dest, err, err_len);
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
			       0, dest, err, err_len);
		if (r < 0)
			return r;
	}
	return qpk_pack(srcs, nsrcs, dest, opts, ret_result, err, err_len);
}
