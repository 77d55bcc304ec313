/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ed25519 key files (sitekey.h). Keys come from libsodium; the files are
 * one line of text each.
 */
#include "sitekey.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "quai/quai.h"

#define KEY_FILE_MAX 256

static void errf(char *err, size_t err_len, const char *path, const char *what)
{
	if (err && err_len)
		snprintf(err, err_len, "%s: %s", path, what);
}

static int errno_err(char *err, size_t err_len, const char *path, int e)
{
	char buf[128];

	errf(err, err_len, path, strerror_r(e, buf, sizeof(buf)));
	return -e;
}

void qkey_hex(const uint8_t *b, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 0xf];
	}
	out[2 * n] = '\0';
}

int qkey_unhex(const char *s, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < 2 * n; i++) {
		char c = s[i];
		int v;

		if (c >= '0' && c <= '9')
			v = c - '0';
		else if (c >= 'a' && c <= 'f')
			v = c - 'a' + 10;
		else
			return -QUAI_EFORMAT;
		if (i % 2 == 0)
			out[i / 2] = (uint8_t)(v << 4);
		else
			out[i / 2] |= (uint8_t)v;
	}
	return 0;
}

void qkey_id(const uint8_t pk[QKEY_PK_BYTES], char out[QKEY_ID_LEN + 1])
{
	char hex[2 * QKEY_PK_BYTES + 1];

	qkey_hex(pk, QKEY_PK_BYTES, hex);
	memcpy(out, hex, QKEY_ID_LEN);
	out[QKEY_ID_LEN] = '\0';
}

int qkey_parse(const char *text, size_t len, const char *kind, uint8_t ret[QKEY_SEED_BYTES])
{
	size_t klen = strlen(kind);

	if (len && text[len - 1] == '\n')
		len--;
	if (len != klen + 1 + 2 * QKEY_SEED_BYTES || memcmp(text, kind, klen) != 0 ||
	    text[klen] != ' ')
		return -QUAI_EFORMAT;
	return qkey_unhex(text + klen + 1, QKEY_SEED_BYTES, ret);
}

/* The file's text (at most KEY_FILE_MAX bytes) into buf; st of it. */
static int read_key_file(const char *path, char *buf, size_t *ret_len, struct stat *st, char *err,
			 size_t err_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	ssize_t k;
	size_t n = 0;

	if (fd < 0)
		return errno_err(err, err_len, path, errno);
	if (fstat(fd, st) < 0) {
		int e = errno;

		close(fd);
		return errno_err(err, err_len, path, e);
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		errf(err, err_len, path, "not a regular file");
		return -QUAI_EFORMAT;
	}
	while ((k = read(fd, buf + n, KEY_FILE_MAX + 1 - n)) != 0) {
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int e = errno;

			close(fd);
			return errno_err(err, err_len, path, e);
		}
		n += (size_t)k;
		if (n > KEY_FILE_MAX)
			break;
	}
	close(fd);
	if (n > KEY_FILE_MAX) {
		errf(err, err_len, path, "too long for a key file");
		return -QUAI_EFORMAT;
	}
	*ret_len = n;
	return 0;
}

int qkey_load_public(const char *path, uint8_t ret_pk[QKEY_PK_BYTES], char *err, size_t err_len)
{
	char buf[KEY_FILE_MAX + 1];
	struct stat st;
	size_t n;
	int r = read_key_file(path, buf, &n, &st, err, err_len);

	if (r < 0)
		return r;
	if (qkey_parse(buf, n, "quai-ed25519-public", ret_pk) < 0) {
		errf(err, err_len, path,
		     "not a quai public key (one line: quai-ed25519-public and 64 hex digits)");
		return -QUAI_EFORMAT;
	}
	return 0;
}

int qkey_load_secret(const char *path, uint8_t ret_sk[QKEY_SK_BYTES], uint8_t ret_pk[QKEY_PK_BYTES],
		     char *err, size_t err_len)
{
	char buf[KEY_FILE_MAX + 1];
	uint8_t seed[QKEY_SEED_BYTES];
	struct stat st;
	size_t n;
	int r = read_key_file(path, buf, &n, &st, err, err_len);

	if (r < 0)
		goto out;
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		errf(err, err_len, path,
		     "a secret key others can read or write is refused (chmod 600 it, and make a "
		     "new key if others may have read it)");
		r = -EPERM;
		goto out;
	}
	if (qkey_parse(buf, n, "quai-ed25519-secret", seed) < 0) {
		errf(err, err_len, path,
		     "not a quai secret key (one line: quai-ed25519-secret and 64 hex digits)");
		r = -QUAI_EFORMAT;
		goto out;
	}
	if (sodium_init() < 0) {
		errf(err, err_len, path, "libsodium cannot start");
		r = -EIO;
		goto out;
	}
	crypto_sign_seed_keypair(ret_pk, ret_sk, seed);
	r = 0;
out:
	sodium_memzero(buf, sizeof(buf));
	sodium_memzero(seed, sizeof(seed));
	return r;
}

/* Writes text as path, created exclusively with mode, synced. */
static int write_new(const char *path, const char *text, mode_t mode, char *err, size_t err_len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, mode);
	size_t len = strlen(text), at = 0;

	if (fd < 0) {
		if (errno == EEXIST) {
			errf(err, err_len, path, "exists; quai never overwrites a key");
			return -QUAI_EEXISTS;
		}
		return errno_err(err, err_len, path, errno);
	}
	while (at < len) {
		ssize_t k = write(fd, text + at, len - at);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			goto fail;
		at += (size_t)k;
	}
	if (fchmod(fd, mode) < 0 || fsync(fd) < 0)
		goto fail;
	close(fd);
	return 0;
fail : {
	int e = errno;

	close(fd);
	unlink(path);
	return errno_err(err, err_len, path, e);
}
}

int qkey_generate(const char *prefix, uint8_t ret_pk[QKEY_PK_BYTES], char *err, size_t err_len)
{
	char pub_path[4096], key_path[4096];
	char text[32 + 2 * QKEY_SEED_BYTES];
	char hex[2 * QKEY_SEED_BYTES + 1];
	uint8_t seed[QKEY_SEED_BYTES], pk[QKEY_PK_BYTES], sk[QKEY_SK_BYTES];
	int r;

	if ((size_t)snprintf(pub_path, sizeof(pub_path), "%s.pub", prefix) >= sizeof(pub_path) ||
	    (size_t)snprintf(key_path, sizeof(key_path), "%s.key", prefix) >= sizeof(key_path)) {
		errf(err, err_len, prefix, "name too long");
		return -ENAMETOOLONG;
	}
	if (sodium_init() < 0) {
		errf(err, err_len, prefix, "libsodium cannot start (no randomness?)");
		return -EIO;
	}
	randombytes_buf(seed, sizeof(seed));
	crypto_sign_seed_keypair(pk, sk, seed);
	qkey_hex(seed, sizeof(seed), hex);
	snprintf(text, sizeof(text), "quai-ed25519-secret %s\n", hex);
	r = write_new(key_path, text, 0600, err, err_len);
	if (r < 0)
		goto out;
	qkey_hex(pk, sizeof(pk), hex);
	snprintf(text, sizeof(text), "quai-ed25519-public %s\n", hex);
	r = write_new(pub_path, text, 0644, err, err_len);
	if (r < 0) {
		unlink(key_path);
		goto out;
	}
	memcpy(ret_pk, pk, sizeof(pk));
out:
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(text, sizeof(text));
	sodium_memzero(hex, sizeof(hex));
	return r;
}
