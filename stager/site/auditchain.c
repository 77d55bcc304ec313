/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The audit log's hash chain: sealing a line, finding a file's head, and
 * checking a chain through rotated files (auditchain.h).
 *
 * BLAKE2b and Ed25519 come from libsodium; nothing here is a cipher.
 */
#include "auditchain.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "quai/quai.h"
#include "sitekey.h"

static const char seq_key[] = ",\"seq\":";
static const char prev_key[] = ",\"prev\":\"";
static const char sig_key[] = ",\"sig\":\"";
#define KEYLEN(k) (sizeof(k) - 1)
/* ,"prev":"<64 hex>"  and  ,"sig":"<128 hex>"} */
#define PREV_FIELD (KEYLEN(prev_key) + 2 * QACH_HASH_BYTES + 1)
#define SIG_FIELD (KEYLEN(sig_key) + 2 * QACH_SIG_BYTES + 1)

static void crypto_ready(void)
{
	/* Idempotent and thread-safe; it fails only when no randomness can
	 * be had, which hashing and signing do not need. */
	if (sodium_init() < 0)
		return;
}

void qach_hash(const char *line, size_t len, uint8_t out[QACH_HASH_BYTES])
{
	crypto_ready();
	crypto_generichash(out, QACH_HASH_BYTES, (const unsigned char *)line, len, NULL, 0);
}

int qach_parse(const char *line, size_t len, struct qach_fields *ret)
{
	struct qach_fields f = {0};
	size_t end = len, p;
	uint64_t seq = 0;

	if (!line || !ret || len < 2 || line[0] != '{' || line[len - 1] != '}')
		return -QUAI_EFORMAT;
	end = len - 1; /* the closing brace */
	/* A signature only when the whole field is there: a body may hold
	 * the text ,"sig":" itself (escaped strings still hold it). */
	if (end >= SIG_FIELD && line[end - 1] == '"' &&
	    memcmp(line + end - SIG_FIELD, sig_key, KEYLEN(sig_key)) == 0 &&
	    qkey_unhex(line + end - 1 - 2 * QACH_SIG_BYTES, QACH_SIG_BYTES, f.sig) == 0) {
		f.has_sig = true;
		end -= SIG_FIELD;
		f.signed_len = end;
	}
	if (end < PREV_FIELD || line[end - 1] != '"' ||
	    memcmp(line + end - PREV_FIELD, prev_key, KEYLEN(prev_key)) != 0 ||
	    qkey_unhex(line + end - 1 - 2 * QACH_HASH_BYTES, QACH_HASH_BYTES, f.prev) < 0)
		return -QUAI_EFORMAT;
	end -= PREV_FIELD;
	/* The digits of seq, read backwards to the key before them. */
	p = end;
	while (p > 0 && line[p - 1] >= '0' && line[p - 1] <= '9')
		p--;
	if (p == end || end - p > 20 || (line[p] == '0') || p < KEYLEN(seq_key) + 1 ||
	    memcmp(line + p - KEYLEN(seq_key), seq_key, KEYLEN(seq_key)) != 0)
		return -QUAI_EFORMAT;
	for (size_t i = p; i < end; i++) {
		unsigned d = (unsigned)(line[i] - '0');

		if (seq > (UINT64_MAX - d) / 10)
			return -QUAI_EFORMAT;
		seq = seq * 10 + d;
	}
	f.seq = seq;
	*ret = f;
	return 0;
}

size_t qach_seal(const char *body, size_t body_len, const struct qach_head *prev, const uint8_t *sk,
		 char *buf, size_t len)
{
	char seq[32]; /* ,"seq": and up to 20 digits */
	size_t head, need;
	int k;

	if (!body || !prev || body_len < 2 || memcmp(body + body_len - 2, "}\n", 2) != 0)
		return 0;
	head = body_len - 2;
	k = snprintf(seq, sizeof(seq), "%s%llu", seq_key, (unsigned long long)(prev->seq + 1));
	need = head + (size_t)k + PREV_FIELD + (sk ? SIG_FIELD : 0) + 2;
	if (need >= len)
		return need;

	char *o = buf;
	memcpy(o, body, head);
	o += head;
	memcpy(o, seq, (size_t)k);
	o += k;
	memcpy(o, prev_key, KEYLEN(prev_key));
	o += KEYLEN(prev_key);
	qkey_hex(prev->hash, QACH_HASH_BYTES, o);
	o += 2 * QACH_HASH_BYTES;
	*o++ = '"';
	if (sk) {
		uint8_t sig[QACH_SIG_BYTES];

		crypto_ready();
		crypto_sign_detached(sig, NULL, (const unsigned char *)buf, (size_t)(o - buf), sk);
		memcpy(o, sig_key, KEYLEN(sig_key));
		o += KEYLEN(sig_key);
		qkey_hex(sig, QACH_SIG_BYTES, o); /* its NUL is overwritten next */
		o += 2 * QACH_SIG_BYTES;
		*o++ = '"';
	}
	*o++ = '}';
	*o++ = '\n';
	*o = '\0';
	return need;
}

/* pread of exactly n bytes at off, or -errno / -EIO on a short read. */
static int pread_all(int fd, char *buf, size_t n, off_t off)
{
	while (n) {
		ssize_t k = pread(fd, buf, n, off);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -EIO; /* the file shrank under its lock */
		buf += k;
		n -= (size_t)k;
		off += k;
	}
	return 0;
}

int qach_tail(int fd, const struct qach_head *carry, struct qach_head *ret, bool *ret_needs_nl)
{
	struct qach_head h = {0};
	struct stat st;
	size_t want = 4096;
	char *buf = NULL;
	int r;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size == 0) {
		if (carry)
			h = *carry;
		*ret = h;
		*ret_needs_nl = false;
		return 0;
	}
	for (;;) {
		size_t size = (size_t)st.st_size;
		size_t off = size > want ? size - want : 0, n = size - off, end, start;
		char *nb = realloc(buf, n);

		if (!nb) {
			r = -ENOMEM;
			goto out;
		}
		buf = nb;
		r = pread_all(fd, buf, n, (off_t)off);
		if (r < 0)
			goto out;
		end = buf[n - 1] == '\n' ? n - 1 : n; /* the last line is [start, end) */
		start = end;
		while (start > 0 && buf[start - 1] != '\n')
			start--;
		if (start == 0 && off > 0) {
			if (want > QACH_LINE_MAX) {
				r = -EFBIG;
				goto out;
			}
			want *= 4;
			continue;
		}
		struct qach_fields f;

		qach_hash(buf + start, end - start, h.hash);
		if (qach_parse(buf + start, end - start, &f) == 0)
			h.seq = f.seq;
		else
			h.seq = carry ? carry->seq : 0;
		*ret = h;
		*ret_needs_nl = end == n;
		r = 0;
		break;
	}
out:
	free(buf);
	return r;
}

/* ---- verification ------------------------------------------------------ */

struct vstate {
	const uint8_t *keys;
	size_t npk;
	bool require_sig;
	bool have_prev, have_prev2;
	struct qach_head prev;
	uint8_t prev2[QACH_HASH_BYTES]; /* the hash of the line before prev */
	size_t file;
	uint64_t line; /* 1-based, in the file */
	struct qach_report *rep;
};

static int fault(struct vstate *v, const char *fmt, unsigned long long a, unsigned long long b,
		 unsigned long long c)
{
	v->rep->bad_file = v->file;
	v->rep->bad_line = v->line;
	snprintf(v->rep->what, sizeof(v->rep->what), fmt, a, b, c);
	return -QUAI_ECORRUPT;
}

/* A fault found at this line that lies in the line before it (changed,
 * or inserted): that line is the one named, and not counted as checked. */
static int fault_before(struct vstate *v, const char *fmt, unsigned long long a,
			unsigned long long b, unsigned long long c)
{
	v->line--;
	v->rep->lines--;
	return fault(v, fmt, a, b, c);
}

static bool sig_ok(const struct vstate *v, const char *line, const struct qach_fields *f)
{
	for (size_t i = 0; i < v->npk; i++)
		if (crypto_sign_verify_detached(f->sig, (const unsigned char *)line, f->signed_len,
						v->keys + i * QACH_PK_BYTES) == 0)
			return true;
	return false;
}

static int verify_line(struct vstate *v, const char *line, size_t len, bool has_nl)
{
	static const uint8_t zero[QACH_HASH_BYTES];
	unsigned long long l = v->line;
	struct qach_fields f;
	uint8_t h[QACH_HASH_BYTES];
	bool boundary = v->have_prev && v->line == 1; /* first line of a later file */

	if (!has_nl)
		return fault(v,
			     "line %llu is cut short (no end of line): the file was truncated, "
			     "or a write was torn",
			     l, 0, 0);
	if (qach_parse(line, len, &f) < 0)
		return fault(v,
			     "line %llu has no chain fields (seq, prev): it was inserted, or "
			     "edited at its end, or written before the log was chained",
			     l, 0, 0);
	if (f.has_sig && v->npk) {
		if (!sig_ok(v, line, &f))
			return fault(v,
				     "line %llu (seq %llu): its signature does not verify with the "
				     "keys given: the line was changed, or signed by another key",
				     l, f.seq, 0);
		v->rep->signed_lines++;
	} else if (v->require_sig) {
		return fault(v, "line %llu (seq %llu) is not signed", l, f.seq, 0);
	}
	qach_hash(line, len, h);

	if (!v->have_prev) {
		if (f.seq == 1 && memcmp(f.prev, zero, sizeof(zero)) != 0)
			return fault(v,
				     "line %llu is seq 1 but names a previous line: the start of "
				     "the chain was changed",
				     l, 0, 0);
		v->rep->first_seq = f.seq;
	} else {
		uint64_t want = v->prev.seq + 1;
		bool linked = memcmp(f.prev, v->prev.hash, QACH_HASH_BYTES) == 0;

		if (f.seq > want && boundary)
			return fault(v,
				     "line %llu (seq %llu) does not continue the previous file, "
				     "which ends at seq %llu: its last lines were cut, or lines "
				     "are missing in between",
				     l, f.seq, v->prev.seq);
		if (f.seq > want)
			return fault(v,
				     "line %llu (seq %llu) follows seq %llu: the lines between "
				     "were deleted",
				     l, f.seq, v->prev.seq);
		if (f.seq < want) {
			if (!boundary && v->have_prev2 &&
			    memcmp(f.prev, v->prev2, QACH_HASH_BYTES) == 0)
				return fault_before(v,
						    "line %llu was inserted: line %llu (seq %llu) "
						    "follows the line before it",
						    l - 1, l, f.seq);
			return fault(v,
				     "line %llu (seq %llu) does not follow seq %llu: a line was "
				     "inserted before it, or lines were reordered",
				     l, f.seq, v->prev.seq);
		}
		if (!linked && boundary)
			return fault(v,
				     "line %llu (seq %llu) names a hash the previous file's last "
				     "line does not have: that line was changed",
				     l, f.seq, 0);
		if (!linked)
			return fault_before(
			    v,
			    "line %llu was changed: line %llu (seq %llu) names a hash it "
			    "does not have",
			    l - 1, l, f.seq);
	}
	memcpy(v->prev2, v->prev.hash, QACH_HASH_BYTES);
	v->have_prev2 = v->have_prev;
	v->prev.seq = f.seq;
	memcpy(v->prev.hash, h, QACH_HASH_BYTES);
	v->have_prev = true;
	v->rep->lines++;
	v->rep->last = v->prev;
	return 0;
}

static void vstate_init(struct vstate *v, const uint8_t *keys, size_t npk, bool require_sig,
			struct qach_report *rep)
{
	memset(rep, 0, sizeof(*rep));
	*v = (struct vstate){.keys = keys, .npk = npk, .require_sig = require_sig, .rep = rep};
	crypto_ready();
}

int qach_verify_buf(const char *data, size_t len, const uint8_t *keys, size_t npk, bool require_sig,
		    struct qach_report *ret)
{
	struct vstate v;
	size_t at = 0;

	if ((!data && len) || !ret || (npk && !keys))
		return -EINVAL;
	vstate_init(&v, keys, npk, require_sig, ret);
	while (at < len) {
		const char *nl = memchr(data + at, '\n', len - at);
		size_t n = nl ? (size_t)(nl - (data + at)) : len - at;
		int r;

		v.line++;
		r = verify_line(&v, data + at, n, nl != NULL);
		if (r < 0)
			return r;
		at += n + 1;
	}
	return 0;
}

int qach_verify_files(const char *const *paths, size_t npaths, const uint8_t *keys, size_t npk,
		      bool require_sig, struct qach_report *ret)
{
	struct vstate v;
	char *line = NULL;
	size_t cap = 0;
	int r = 0;

	if (!paths || !ret || (npk && !keys))
		return -EINVAL;
	vstate_init(&v, keys, npk, require_sig, ret);
	for (size_t i = 0; i < npaths && r == 0; i++) {
		FILE *fp = fopen(paths[i], "re");
		ssize_t n;

		v.file = i;
		v.line = 0;
		if (!fp) {
			r = -errno;
			ret->bad_file = i;
			snprintf(ret->what, sizeof(ret->what), "%s", strerror(-r));
			break;
		}
		while ((n = getline(&line, &cap, fp)) > 0) {
			bool nl = line[n - 1] == '\n';

			v.line++;
			r = verify_line(&v, line, (size_t)n - nl, nl);
			if (r < 0)
				break;
		}
		if (r == 0 && ferror(fp)) {
			r = -EIO;
			ret->bad_file = i;
			snprintf(ret->what, sizeof(ret->what), "read error: %s", strerror(EIO));
		}
		fclose(fp);
	}
	free(line);
	return r;
}
