/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quaid's check of signed labels (docs/SECURITY.md "Signed labels"): with
 * site_keys set, every dataset quaid lists or serves must carry a
 * signature by one of them that holds for its label and manifest; an
 * unsigned one is refused, or taken as sensitive of quaid's zone
 * (`unsigned = sensitive`). One function, called wherever quaid reads a
 * manifest, so that the rule is one rule.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "beneath.h"
#include "label.h"
#include "quai/quai.h"
#include "srv.h"

int srv_label(const struct qsrv *srv, int dirfd, struct qmf *mf, const char *text, size_t len,
	      char *err, size_t err_len)
{
	const struct qsvc_conf *c = &srv->conf;
	uint8_t *keys = NULL;
	size_t nkeys = 0;
	char why[1024] = "", kerr[4400] = "";
	int r;

	if (!c->site_keys[0])
		return 0;
	/* The key files are read at each check: a key withdrawn from the
	 * configuration's files is withdrawn at once. */
	r = qlbl_load_keys(c->site_keys, &keys, &nkeys, kerr, sizeof(kerr));
	if (r < 0) {
		snprintf(err, err_len, "site_keys: %s", kerr);
		return r == -ENOMEM ? r : -QUAI_EPOLICY;
	}
	r = qlbl_check(dirfd, mf, text, len, keys, nkeys, false, why, sizeof(why));
	free(keys);
	if (r < 0) {
		snprintf(err, err_len, "dataset %s: its signature cannot be checked: %s", mf->name,
			 why);
		return r;
	}
	if (r == QLBL_SIGNED)
		return 0;
	if (r == QLBL_UNSIGNED && c->unsigned_policy == QSVC_UNSIGNED_SENSITIVE) {
		/* Unsigned: whatever its manifest claims, it is sensitive data of
		 * this quaid's zone. */
		mf->classification = QUAI_CLASS_SENSITIVE;
		snprintf(mf->zone, sizeof(mf->zone), "%s", c->zone);
		return 0;
	}
	snprintf(err, err_len, "dataset %s is refused: its signature is %s: %s%s", mf->name,
		 qlbl_status_name(r), why,
		 r == QLBL_UNSIGNED ? " (unsigned = refuse in quaid's configuration)" : "");
	return -QUAI_EPOLICY;
}

int srv_label_at(const struct qsrv *srv, int atfd, const char *path, struct qmf *mf,
		 const uint8_t *text, size_t len, char *err, size_t err_len)
{
	int dfd, r;

	if (!srv->conf.site_keys[0])
		return 0;
	dfd = qfs_open_dataset_dir(atfd, path);
	if (dfd < 0) {
		snprintf(err, err_len, "dataset %s: %s", mf->name, strerror(-dfd));
		return dfd;
	}
	r = srv_label(srv, dfd, mf, (const char *)text, len, err, err_len);
	close(dfd);
	return r;
}
