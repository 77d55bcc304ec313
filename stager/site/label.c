/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Signed labels: manifest.sig written and checked (label.h). BLAKE2b and
 * Ed25519 from libsodium.
 */
#include "label.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "fsutil.h"
#include "hostconf.h"
#include "quai/quai.h"

#define MAGIC "quai-signature 1"

static void say(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!buf || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

const char *qlbl_status_name(int status)
{
	switch (status) {
	case QLBL_SIGNED:
		return "signed";
	case QLBL_UNSIGNED:
		return "unsigned";
	case QLBL_UNTRUSTED:
		return "untrusted";
	default:
		return "bad";
	}
}

void qlbl_release(struct qlbl *l)
{
	if (!l)
		return;
	free(l->shards);
	l->shards = NULL;
}

/* The next line of text at *at (without its '\n', which must be there). */
static const char *next_line(const char *text, size_t len, size_t *at, size_t *ret_n)
{
	const char *s = text + *at, *nl;

	if (*at >= len)
		return NULL;
	nl = memchr(s, '\n', len - *at);
	if (!nl)
		return NULL;
	*ret_n = (size_t)(nl - s);
	*at += *ret_n + 1;
	return s;
}

/* "WORD " then exactly what follows up to the end of the line. */
static const char *field(const char *s, size_t n, const char *word, size_t *ret_n)
{
	size_t w = strlen(word);

	if (n <= w + 1 || memcmp(s, word, w) != 0 || s[w] != ' ')
		return NULL;
	*ret_n = n - w - 1;
	return s + w + 1;
}

static int hex_field(const char *s, size_t n, const char *word, uint8_t *out, size_t bytes)
{
	size_t vn;
	const char *v = field(s, n, word, &vn);

	if (!v || vn != 2 * bytes || qkey_unhex(v, bytes, out) < 0)
		return -QUAI_EFORMAT;
	return 0;
}

/* A short copy of text for a message (no control bytes). */
static int text_field(const char *s, size_t n, const char *word, char *out, size_t cap)
{
	size_t vn;
	const char *v = field(s, n, word, &vn);

	if (!v || vn >= cap)
		return -QUAI_EFORMAT;
	for (size_t i = 0; i < vn; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			return -QUAI_EFORMAT;
	memcpy(out, v, vn);
	out[vn] = '\0';
	return 0;
}

int qlbl_parse(const char *text, size_t len, struct qlbl *ret, char *err, size_t err_len)
{
	struct qlbl l = {0};
	const char *s;
	size_t at = 0, n;
	unsigned line = 0;
	char cls[16];
	uint32_t cap = 0;
	int r = -QUAI_EFORMAT;

#define NEXT()                                                                                     \
	do {                                                                                       \
		line++;                                                                            \
		s = next_line(text, len, &at, &n);                                                 \
		if (!s)                                                                            \
			goto trunc;                                                                \
	} while (0)

	NEXT();
	if (n != strlen(MAGIC) || memcmp(s, MAGIC, n) != 0) {
		say(err, err_len, "line 1: not \"%s\"", MAGIC);
		goto fail;
	}
	NEXT();
	if (hex_field(s, n, "key", l.key, sizeof(l.key)) < 0) {
		say(err, err_len, "line %u: expected key and 64 hex digits", line);
		goto fail;
	}
	NEXT();
	if (text_field(s, n, "dataset", l.name, sizeof(l.name)) < 0 || qmf_check_name(l.name)) {
		say(err, err_len, "line %u: expected dataset and a dataset name", line);
		goto fail;
	}
	NEXT();
	if (text_field(s, n, "classification", cls, sizeof(cls)) < 0 ||
	    (l.classification = quai_class_parse(cls)) <= 0) {
		say(err, err_len, "line %u: expected classification public, internal or sensitive",
		    line);
		goto fail;
	}
	NEXT();
	if (text_field(s, n, "zone", l.zone, sizeof(l.zone)) < 0 || quai_zone_check(l.zone) < 0) {
		say(err, err_len, "line %u: expected zone and a zone label", line);
		goto fail;
	}
	NEXT();
	if (hex_field(s, n, "manifest-blake2b", l.manifest_hash, sizeof(l.manifest_hash)) < 0) {
		say(err, err_len, "line %u: expected manifest-blake2b and 64 hex digits", line);
		goto fail;
	}
	for (;;) {
		size_t before = at;

		NEXT();
		if (n > 10 && memcmp(s, "signature ", 10) == 0) {
			l.signed_len = before;
			if (hex_field(s, n, "signature", l.sig, sizeof(l.sig)) < 0) {
				say(err, err_len, "line %u: expected signature and 128 hex digits",
				    line);
				goto fail;
			}
			break;
		}
		/* shard I HEX HEX, I counting from 0. */
		char want[24];
		int k = snprintf(want, sizeof(want), "shard %" PRIu32 " ", l.nshards);
		if (l.nshards >= QMF_MAX_SHARDS || n != (size_t)k + 64 + 1 + 64 ||
		    memcmp(s, want, (size_t)k) != 0 || s[k + 64] != ' ') {
			say(err, err_len, "line %u: expected shard %" PRIu32 " and two hashes",
			    line, l.nshards);
			goto fail;
		}
		if (l.nshards == cap) {
			uint32_t nc = cap ? cap * 2 : 16;
			void *p = realloc(l.shards, nc * sizeof(*l.shards));

			if (!p) {
				r = -ENOMEM;
				goto fail;
			}
			l.shards = p;
			cap = nc;
		}
		if (qkey_unhex(s + k, 32, l.shards[l.nshards][0]) < 0 ||
		    qkey_unhex(s + k + 65, 32, l.shards[l.nshards][1]) < 0) {
			say(err, err_len, "line %u: expected shard %" PRIu32 " and two hashes",
			    line, l.nshards);
			goto fail;
		}
		l.nshards++;
	}
	if (at != len) {
		say(err, err_len, "line %u: text after the signature", line + 1);
		goto fail;
	}
#undef NEXT
	*ret = l;
	return 0;
trunc:
	say(err, err_len, "line %u: missing (the file ends early, or without a newline)", line);
fail:
	free(l.shards);
	return r;
}

/* BLAKE2b-256 of the whole file name in dirfd; its size must be want. */
static int hash_file(int dirfd, const char *name, uint64_t want, uint8_t out[QLBL_HASH_BYTES],
		     char *err, size_t err_len)
{
	crypto_generichash_state st;
	uint64_t total = 0;
	uint8_t *buf;
	int fd, r = 0;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		r = -errno;
		say(err, err_len, "%s: %s", name, strerror(-r));
		return r;
	}
	buf = malloc(1 << 20);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	crypto_generichash_init(&st, NULL, 0, QLBL_HASH_BYTES);
	for (;;) {
		ssize_t k = read(fd, buf, 1 << 20);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = -errno;
			say(err, err_len, "%s: %s", name, strerror(-r));
			break;
		}
		if (k == 0)
			break;
		crypto_generichash_update(&st, buf, (size_t)k);
		total += (uint64_t)k;
	}
	if (r == 0 && total != want) {
		say(err, err_len, "%s: %" PRIu64 " bytes, the manifest says %" PRIu64, name, total,
		    want);
		r = -QUAI_ECORRUPT;
	}
	crypto_generichash_final(&st, out, QLBL_HASH_BYTES);
	free(buf);
	close(fd);
	return r;
}

static int start(void)
{
	return sodium_init() < 0 ? -EIO : 0;
}

int qlbl_sign(int dirfd, const struct qmf *m, const char *mtext, size_t mlen,
	      const uint8_t sk[QKEY_SK_BYTES], bool replace, char *err, size_t err_len)
{
	char hex[2 * 64 + 1], tmp[64];
	uint8_t h[2][QLBL_HASH_BYTES], sig[64];
	char *text = NULL;
	size_t len = 0;
	FILE *f = NULL;
	int r, fd = -1;

	if ((r = start()) < 0)
		return r;
	f = open_memstream(&text, &len);
	if (!f)
		return -ENOMEM;
	/* The public key is the second half of libsodium's secret key. */
	qkey_hex(sk + 32, QKEY_PK_BYTES, hex);
	fprintf(f, "%s\nkey %s\ndataset %s\nclassification %s\nzone %s\n", MAGIC, hex, m->name,
		quai_class_name(m->classification), m->zone);
	crypto_generichash(h[0], QLBL_HASH_BYTES, (const unsigned char *)mtext, mlen, NULL, 0);
	qkey_hex(h[0], QLBL_HASH_BYTES, hex);
	fprintf(f, "manifest-blake2b %s\n", hex);
	for (uint32_t i = 0; i < m->nshards; i++) {
		const struct qmf_shard *s = &m->shards[i];

		r = hash_file(dirfd, s->file, s->compressed_bytes, h[0], err, err_len);
		if (r == 0)
			r = hash_file(dirfd, s->index, s->index_bytes, h[1], err, err_len);
		if (r < 0)
			goto out;
		qkey_hex(h[0], QLBL_HASH_BYTES, hex);
		fprintf(f, "shard %" PRIu32 " %s ", i, hex);
		qkey_hex(h[1], QLBL_HASH_BYTES, hex);
		fprintf(f, "%s\n", hex);
	}
	if (fflush(f) != 0) {
		r = -ENOMEM;
		goto out;
	}
	crypto_sign_detached(sig, NULL, (const unsigned char *)text, len, sk);
	qkey_hex(sig, sizeof(sig), hex);
	fprintf(f, "signature %s\n", hex);
	if (fclose(f) != 0) {
		f = NULL;
		r = -ENOMEM;
		goto out;
	}
	f = NULL;

	/* Written beside, synced, renamed over: never half a signature. */
	snprintf(tmp, sizeof(tmp), ".%s.quai-partial", QLBL_FILE);
	unlinkat(dirfd, tmp, 0);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		say(err, err_len, "%s: %s", QLBL_FILE, strerror(-r));
		goto out;
	}
	for (size_t at = 0; at < len;) {
		ssize_t k = write(fd, text + at, len - at);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = -errno;
			break;
		}
		at += (size_t)k;
	}
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && renameat2(dirfd, tmp, dirfd, QLBL_FILE, replace ? 0 : RENAME_NOREPLACE) < 0)
		r = errno == EEXIST ? -QUAI_EEXISTS : -errno;
	if (r == 0) {
		fsync(dirfd);
	} else {
		unlinkat(dirfd, tmp, 0);
		if (r == -QUAI_EEXISTS)
			say(err, err_len, "%s exists: the dataset is signed already", QLBL_FILE);
		else
			say(err, err_len, "%s: %s", QLBL_FILE, strerror(-r));
	}
out:
	if (f)
		fclose(f);
	free(text);
	return r;
}

int qlbl_check(int dirfd, const struct qmf *m, const char *mtext, size_t mlen, const uint8_t *keys,
	       size_t nkeys, bool content, char *why, size_t why_len)
{
	char perr[256] = "", id[QKEY_ID_LEN + 1];
	uint8_t h[2][QLBL_HASH_BYTES];
	struct qlbl l;
	struct stat st;
	char *text;
	ssize_t k;
	size_t n = 0;
	int r, fd;
	bool trusted = false;

	if ((r = start()) < 0)
		return r;
	fd = openat(dirfd, QLBL_FILE, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 && errno == ENOENT) {
		say(why, why_len, "no %s: the dataset's label is not signed", QLBL_FILE);
		return QLBL_UNSIGNED;
	}
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = -errno;
		if (fd >= 0)
			close(fd);
		say(why, why_len, "%s: %s", QLBL_FILE, strerror(-r));
		return r;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > QLBL_MAX_BYTES) {
		close(fd);
		say(why, why_len, "%s: not a regular file of at most %u bytes", QLBL_FILE,
		    QLBL_MAX_BYTES);
		return QLBL_BAD;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		close(fd);
		return -ENOMEM;
	}
	while (n < (size_t)st.st_size &&
	       ((k = read(fd, text + n, (size_t)st.st_size - n)) > 0 || (k < 0 && errno == EINTR)))
		if (k > 0)
			n += (size_t)k;
	close(fd);
	r = qlbl_parse(text, n, &l, perr, sizeof(perr));
	if (r == -ENOMEM) {
		free(text);
		return r;
	}
	if (r < 0) {
		free(text);
		say(why, why_len, "%s: %s", QLBL_FILE, perr);
		return QLBL_BAD;
	}
	qkey_id(l.key, id);
	if (crypto_sign_verify_detached(l.sig, (const unsigned char *)text, l.signed_len, l.key) !=
	    0) {
		say(why, why_len, "%s: the signature does not verify: the file was changed",
		    QLBL_FILE);
		r = QLBL_BAD;
		goto out;
	}
	/* The label as signed, against the manifest's. */
	if (strcmp(l.name, m->name) != 0 || l.classification != m->classification ||
	    strcmp(l.zone, m->zone) != 0) {
		say(why, why_len,
		    "relabelled: signed (key %s) as dataset %s, %s, zone %s; the manifest says "
		    "dataset %s, %s, zone %s",
		    id, l.name, quai_class_name(l.classification), l.zone, m->name,
		    quai_class_name(m->classification), m->zone);
		r = QLBL_BAD;
		goto out;
	}
	crypto_generichash(h[0], QLBL_HASH_BYTES, (const unsigned char *)mtext, mlen, NULL, 0);
	if (memcmp(h[0], l.manifest_hash, QLBL_HASH_BYTES) != 0) {
		say(why, why_len,
		    "manifest.json is not the manifest signed (key %s): it was changed", id);
		r = QLBL_BAD;
		goto out;
	}
	if (l.nshards != m->nshards) {
		say(why, why_len, "%s signs %" PRIu32 " shards, the manifest has %" PRIu32,
		    QLBL_FILE, l.nshards, m->nshards);
		r = QLBL_BAD;
		goto out;
	}
	for (uint32_t i = 0; content && i < m->nshards; i++) {
		const struct qmf_shard *s = &m->shards[i];
		char ferr[256];

		r = hash_file(dirfd, s->file, s->compressed_bytes, h[0], ferr, sizeof(ferr));
		if (r == 0)
			r = hash_file(dirfd, s->index, s->index_bytes, h[1], ferr, sizeof(ferr));
		if (r == -ENOMEM)
			goto out;
		if (r == -QUAI_ECORRUPT) {
			say(why, why_len, "the dataset is not the one signed (key %s): %s", id,
			    ferr);
			r = QLBL_BAD;
			goto out;
		}
		if (r < 0) {
			say(why, why_len, "%s", ferr);
			r = QLBL_BAD;
			goto out;
		}
		for (int j = 0; j < 2; j++)
			if (memcmp(h[j], l.shards[i][j], QLBL_HASH_BYTES) != 0) {
				say(why, why_len,
				    "the dataset is not the one signed (key %s): %s is another "
				    "dataset's, or changed",
				    id, j ? s->index : s->file);
				r = QLBL_BAD;
				goto out;
			}
	}
	for (size_t i = 0; i < nkeys && !trusted; i++)
		trusted = memcmp(keys + i * QKEY_PK_BYTES, l.key, QKEY_PK_BYTES) == 0;
	if (!trusted) {
		say(why, why_len, "signed by key %s, which is not one of the site keys given", id);
		r = QLBL_UNTRUSTED;
		goto out;
	}
	say(why, why_len, "signed by key %s", id);
	r = QLBL_SIGNED;
out:
	qlbl_release(&l);
	free(text);
	return r;
}

/* The manifest of the dataset in directory path, parsed, and its bytes; the
 * directory's fd. */
static int load_manifest(const char *path, int *ret_dirfd, struct qmf *ret_m, uint8_t **ret_text,
			 size_t *ret_len, char *err, size_t err_len)
{
	char merr[512] = "";
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r;

	if (dfd < 0) {
		r = -errno;
		say(err, err_len, "'%s': %s", path, strerror(-r));
		return r;
	}
	r = qfs_read_file(dfd, "manifest.json", QMF_MAX_BYTES, ret_text, ret_len);
	if (r < 0) {
		say(err, err_len, "'%s/manifest.json': %s", path, quai_strerror(r));
		close(dfd);
		return r;
	}
	r = qmf_parse((const char *)*ret_text, *ret_len, ret_m, merr, sizeof(merr));
	if (r < 0) {
		say(err, err_len, "'%s/manifest.json': %s", path,
		    merr[0] ? merr : quai_strerror(r));
		free(*ret_text);
		close(dfd);
		return r;
	}
	*ret_dirfd = dfd;
	return 0;
}

int qlbl_sign_dataset(const char *path, const uint8_t sk[QKEY_SK_BYTES], bool replace,
		      int *ret_class, char ret_zone[QUAI_ZONE_MAX + 1], char *err, size_t err_len)
{
	struct qmf m;
	uint8_t *text;
	size_t len;
	char serr[4096] = "";
	int dfd;
	int r = load_manifest(path, &dfd, &m, &text, &len, err, err_len);

	if (r < 0)
		return r;
	r = qlbl_sign(dfd, &m, (const char *)text, len, sk, replace, serr, sizeof(serr));
	if (r < 0) {
		say(err, err_len, "'%s': %s", path, serr);
	} else {
		*ret_class = m.classification;
		snprintf(ret_zone, QUAI_ZONE_MAX + 1, "%s", m.zone);
	}
	qmf_release(&m);
	free(text);
	close(dfd);
	return r;
}

int qlbl_check_dataset(const char *path, const uint8_t *keys, size_t nkeys, bool content, char *why,
		       size_t why_len)
{
	struct qmf m;
	uint8_t *text;
	size_t len;
	int dfd;

	if (load_manifest(path, &dfd, &m, &text, &len, why, why_len) < 0)
		return -QLBL_NO_MANIFEST;
	int st = qlbl_check(dfd, &m, (const char *)text, len, keys, nkeys, content, why, why_len);
	qmf_release(&m);
	free(text);
	close(dfd);
	return st;
}

int qlbl_load_keys(const char *spec, uint8_t **keys, size_t *nkeys, char *err, size_t err_len)
{
	const char *p = spec;

	while (*p) {
		const char *colon = strchr(p, ':');
		size_t n = colon ? (size_t)(colon - p) : strlen(p);
		char path[4096], kerr[4200];
		uint8_t *nk;
		int r;

		if (n == 0 || n >= sizeof(path)) {
			say(err, err_len, "site keys: an empty or too long file name in '%s'",
			    spec);
			return -QUAI_EFORMAT;
		}
		memcpy(path, p, n);
		path[n] = '\0';
		nk = realloc(*keys, (*nkeys + 1) * QKEY_PK_BYTES);
		if (!nk)
			return -ENOMEM;
		*keys = nk;
		r = qkey_load_public(path, nk + *nkeys * QKEY_PK_BYTES, kerr, sizeof(kerr));
		if (r < 0) {
			say(err, err_len, "%s", kerr);
			return r;
		}
		(*nkeys)++;
		p += n;
		if (*p == ':')
			p++;
	}
	return 0;
}

static int site_keys_setting(const char *key, const char *value, unsigned line, void *arg)
{
	char *spec = arg;

	(void)line;
	if (strcmp(key, "site_keys") != 0)
		return 0;
	if (strlen(value) >= 8192)
		return -QUAI_EFORMAT;
	memcpy(spec, value, strlen(value) + 1);
	return 0;
}

int qlbl_host_keys(uint8_t **keys, size_t *nkeys, char *err, size_t err_len)
{
	char spec[8192] = "", lerr[4200] = "", kerr[4400] = "";
	int r = qhc_load(qhc_path(), site_keys_setting, spec, lerr, sizeof(lerr));

	if (r == -ENOENT || (r == 0 && !spec[0]))
		return 0;
	if (r < 0) {
		say(err, err_len, "%s", lerr);
		return r;
	}
	r = qlbl_load_keys(spec, keys, nkeys, kerr, sizeof(kerr));
	if (r < 0)
		say(err, err_len, "site_keys in %s: %s", qhc_path(), kerr);
	return r;
}
