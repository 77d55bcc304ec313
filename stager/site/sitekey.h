/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ed25519 key files (docs/SECURITY.md "Keys"): a site's signing keys and
 * quaid's host key. Private to the library.
 *
 * A key is one line of text, so that an administrator can read, copy and
 * compare it:
 *   public:  "quai-ed25519-public <64 lowercase hex digits>\n"
 *   secret:  "quai-ed25519-secret <64 lowercase hex digits>\n"
 * The secret file holds the 32-byte seed libsodium derives the key pair
 * from; it must be a regular file no one but its owner can read or write
 * (mode 0600 or 0400), else it is refused. The key's id is the first 16
 * hex digits of its public key.
 */
#ifndef QUAI_STAGER_SITEKEY_H
#define QUAI_STAGER_SITEKEY_H

#include <stddef.h>
#include <stdint.h>

#define QKEY_PK_BYTES 32
#define QKEY_SK_BYTES 64 /* seed + public key, as libsodium signs with it */
#define QKEY_SEED_BYTES 32
#define QKEY_ID_LEN 16 /* hex digits */

/* Makes a new key pair and writes PREFIX.pub (0644) and PREFIX.key (0600),
 * neither of which may exist; both are complete or absent. Returns 0, or
 * -errno / -QUAI_EEXISTS with err naming the file. */
int qkey_generate(const char *prefix, uint8_t ret_pk[QKEY_PK_BYTES], char *err, size_t err_len);

/* Reads a public key file. Returns 0, -errno, or -QUAI_EFORMAT (with err
 * naming the file and the fault). */
int qkey_load_public(const char *path, uint8_t ret_pk[QKEY_PK_BYTES], char *err, size_t err_len);

/* Reads a secret key file and derives the pair. Returns 0, -errno,
 * -EPERM (the file can be read or written by others than its owner) or
 * -QUAI_EFORMAT, with err. The caller wipes ret_sk after use. */
int qkey_load_secret(const char *path, uint8_t ret_sk[QKEY_SK_BYTES], uint8_t ret_pk[QKEY_PK_BYTES],
		     char *err, size_t err_len);

/* Parses the text of a key line ("quai-ed25519-public HEX" without or
 * with '\n'); pure, for the fuzz harness. Returns 0 or -QUAI_EFORMAT. */
int qkey_parse(const char *text, size_t len, const char *kind, uint8_t ret[QKEY_SEED_BYTES]);

/* The key's id: QKEY_ID_LEN hex digits and a NUL. */
void qkey_id(const uint8_t pk[QKEY_PK_BYTES], char out[QKEY_ID_LEN + 1]);

/* Lowercase hex of n bytes into out (2n digits and a NUL). */
void qkey_hex(const uint8_t *b, size_t n, char *out);

/* Exactly 2n lowercase hex digits at s into out. Returns 0 or
 * -QUAI_EFORMAT. */
int qkey_unhex(const char *s, size_t n, uint8_t *out);

#endif /* QUAI_STAGER_SITEKEY_H */
