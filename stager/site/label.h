/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Signed labels (docs/FORMAT.md "The signature"): a site key held by data
 * stewards signs a dataset's name, classification, zone, manifest and
 * shard files, in manifest.sig beside manifest.json. Private to the
 * library.
 *
 * manifest.sig is text, one field a line, in this order:
 *   quai-signature 1
 *   key <64 hex: the Ed25519 public key>
 *   dataset <name>
 *   classification <public|internal|sensitive>
 *   zone <zone>
 *   manifest-blake2b <64 hex: BLAKE2b-256 of manifest.json's bytes>
 *   shard <i> <64 hex: of shard file i> <64 hex: of its index file>   (one per shard)
 *   signature <128 hex: Ed25519 over every byte before this line>
 */
#ifndef QUAI_STAGER_LABEL_H
#define QUAI_STAGER_LABEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifest.h"
#include "sitekey.h"

#define QLBL_FILE "manifest.sig"
#define QLBL_HASH_BYTES 32
#define QLBL_MAX_BYTES (QMF_MAX_SHARDS * 160u + 4096u)

/* What a dataset's signature says, checked against a set of keys. */
enum qlbl_status {
	QLBL_SIGNED = 0,    /* signed by a trusted key, label and manifest as signed */
	QLBL_UNSIGNED = 1,  /* no manifest.sig */
	QLBL_UNTRUSTED = 2, /* a valid signature by a key not among those trusted */
	QLBL_BAD = 3,	    /* a signature that does not hold: malformed, forged,
			       relabelled, another manifest or other shards */
};

/* The parsed manifest.sig. */
struct qlbl {
	uint8_t key[QKEY_PK_BYTES];
	char name[QUAI_NAME_MAX + 1];
	int classification;
	char zone[QUAI_ZONE_MAX + 1];
	uint8_t manifest_hash[QLBL_HASH_BYTES];
	uint32_t nshards;
	uint8_t (*shards)[2][QLBL_HASH_BYTES]; /* shard file, index file */
	size_t signed_len;		       /* bytes before "signature " */
	uint8_t sig[64];
};

/* Parses manifest.sig's text. Pure (fuzzed). Returns 0 and *ret (release
 * with qlbl_release), -QUAI_EFORMAT with err naming the line and fault,
 * -ENOMEM. */
int qlbl_parse(const char *text, size_t len, struct qlbl *ret, char *err, size_t err_len);

void qlbl_release(struct qlbl *l);

/* Signs the dataset in the directory dirfd whose manifest is m (its text
 * mtext): hashes every shard and index file, writes manifest.sig (which
 * must not exist unless replace) atomically. Returns 0, -QUAI_EEXISTS,
 * -QUAI_ECORRUPT (a file's size differs from the manifest's) or -errno,
 * with err. */
int qlbl_sign(int dirfd, const struct qmf *m, const char *mtext, size_t mlen,
	      const uint8_t sk[QKEY_SK_BYTES], bool replace, char *err, size_t err_len);

/* Checks the dataset's label: manifest.sig (if any) against keys (nkeys
 * public keys), its signature, its name, classification and zone against
 * m, and the manifest's bytes. With content, also hashes every shard and
 * index file against the signed hashes (a whole read). Returns the status
 * (>= 0) with why (for every status but QLBL_SIGNED, a sentence naming
 * the fault), or -errno / -ENOMEM when it cannot be told. */
int qlbl_check(int dirfd, const struct qmf *m, const char *mtext, size_t mlen, const uint8_t *keys,
	       size_t nkeys, bool content, char *why, size_t why_len);

/* qlbl_sign() of the dataset in directory path: reads and parses its
 * manifest first. Returns 0 with *ret_class and ret_zone (the label signed),
 * or what qlbl_sign() returns, or -errno / -QUAI_EFORMAT for a manifest that
 * does not open, with err naming the path. */
int qlbl_sign_dataset(const char *path, const uint8_t sk[QKEY_SK_BYTES], bool replace,
		      int *ret_class, char ret_zone[QUAI_ZONE_MAX + 1], char *err, size_t err_len);

/* Returned (negated) by qlbl_check_dataset() when the dataset's manifest
 * does not open or parse: above every errno and quai code. */
#define QLBL_NO_MANIFEST 0x7fff

/* qlbl_check() of the dataset in directory path. Returns its status (>= 0)
 * with why, -QLBL_NO_MANIFEST when the manifest does not open or parse (why
 * says why), or what qlbl_check() returns. */
int qlbl_check_dataset(const char *path, const uint8_t *keys, size_t nkeys, bool content, char *why,
		       size_t why_len);

/* Reads the public key files named in spec ("FILE[:FILE...]", as in
 * site_keys) and appends them to *keys (grown with realloc; *nkeys
 * counts them). Returns 0, or -errno / -QUAI_EFORMAT with err naming the
 * file. */
int qlbl_load_keys(const char *spec, uint8_t **keys, size_t *nkeys, char *err, size_t err_len);

/* The site keys of this host: site_keys in the host configuration
 * (qhc_path()), appended to *keys. None set (or no file): 0 and nothing
 * added. Returns 0, or a negative code with err. */
int qlbl_host_keys(uint8_t **keys, size_t *nkeys, char *err, size_t err_len);

/* "signed", "unsigned", "untrusted", "bad". */
const char *qlbl_status_name(int status);

#endif /* QUAI_STAGER_LABEL_H */
