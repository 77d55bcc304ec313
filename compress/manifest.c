/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <zstd.h>

#include "json.h"
#include "manifest.h"
#include "seektable.h"

void qmf_shard_names(struct qmf_shard *s, uint32_t i)
{
	snprintf(s->file, sizeof(s->file), "shard-%05" PRIu32 ".zst", i);
	snprintf(s->index, sizeof(s->index), "shard-%05" PRIu32 ".idx", i);
}

/* 1 when s holds well-formed UTF-8 (no overlongs, surrogates or values
 * past U+10FFFF). */
static int utf8_ok(const unsigned char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		unsigned c = s[i], n, min;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return 0;
		}
		for (unsigned k = 1; k <= n; k++) {
			if (i + k >= len || (s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n + 1;
	}
	return 1;
}

int qmf_check_name(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > QUAI_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '/' || c < 0x20 || c == 0x7f)
			return -EINVAL;
	}
	return utf8_ok((const unsigned char *)name, len) ? 0 : -EINVAL;
}

static void put_hex64(struct qjs_buf *b, uint64_t v)
{
	qjs_put_fmt(b, "\"%016" PRIx64 "\"", v);
}

int qmf_encode(struct qmf *m, char **ret_text, size_t *ret_len)
{
	struct qjs_buf b = {0};

	qjs_put_cstr(&b, "{\n  \"format\": \"" QMF_FORMAT_NAME "\",\n");
	qjs_put_fmt(&b, "  \"format_version\": %" PRIu32 ",\n", m->format_version);
	qjs_put_cstr(&b, "  \"name\": ");
	qjs_put_str(&b, m->name, strlen(m->name));
	qjs_put_fmt(&b, ",\n  \"record_kind\": \"%s\",\n", quai_record_kind_name(m->kind));
	if (m->kind == QUAI_RECORDS_FIXED)
		qjs_put_fmt(&b, "  \"record_size\": %" PRIu32 ",\n", m->fixed_size);
	qjs_put_fmt(&b, "  \"records\": %" PRIu64 ",\n", m->records);
	qjs_put_fmt(&b, "  \"raw_bytes\": %" PRIu64 ",\n", m->raw_bytes);
	qjs_put_fmt(&b, "  \"compressed_bytes\": %" PRIu64 ",\n", m->compressed_bytes);
	qjs_put_fmt(&b, "  \"frames\": %" PRIu64 ",\n", m->frames);
	qjs_put_fmt(&b, "  \"classification\": \"%s\",\n", quai_class_name(m->classification));
	qjs_put_cstr(&b, "  \"zone\": ");
	qjs_put_str(&b, m->zone, strlen(m->zone));
	qjs_put_cstr(&b, ",\n  \"created\": ");
	qjs_put_str(&b, m->created, strlen(m->created));
	qjs_put_cstr(&b, ",\n  \"creator\": ");
	qjs_put_str(&b, m->creator, strlen(m->creator));
	qjs_put_fmt(&b,
		    ",\n  \"parameters\": {\"level\": %d, \"frame_size\": %" PRIu32
		    ", \"shard_size\": %" PRIu64 "},\n",
		    m->level, m->frame_size, m->shard_size);
	qjs_put_cstr(&b, "  \"shards\": [\n");
	for (uint32_t i = 0; i < m->nshards; i++) {
		const struct qmf_shard *s = &m->shards[i];
		qjs_put_fmt(&b,
			    "    {\"file\": \"%s\", \"index\": \"%s\", \"first_record\": %" PRIu64
			    ", \"records\": %" PRIu64 ", \"frames\": %" PRIu32
			    ", \"raw_bytes\": %" PRIu64 ", \"compressed_bytes\": %" PRIu64
			    ", \"index_bytes\": %" PRIu64 ", \"xxh3\": ",
			    s->file, s->index, s->first_record, s->records, s->frames, s->raw_bytes,
			    s->compressed_bytes, s->index_bytes);
		put_hex64(&b, s->xxh3);
		qjs_put_cstr(&b, ", \"index_xxh3\": ");
		put_hex64(&b, s->index_xxh3);
		qjs_put_cstr(&b, i + 1 < m->nshards ? "},\n" : "}\n");
	}
	qjs_put_cstr(&b, "  ],\n  ");
	if (b.err) {
		free(b.data);
		return b.err;
	}
	/* The checksum covers every byte before its own key. */
	m->checksum = XXH3_64bits(b.data, b.len);
	qjs_put_cstr(&b, QMF_CHECKSUM_KEY ": ");
	put_hex64(&b, m->checksum);
	qjs_put_cstr(&b, "\n}\n");
	if (b.err) {
		free(b.data);
		return b.err;
	}
	*ret_text = b.data;
	*ret_len = b.len;
	return 0;
}

/* Parsing context: the first error wins and is formatted into err. */
struct pctx {
	char *err;
	size_t err_len;
	int failed;
};

__attribute__((format(printf, 2, 3))) static int fail(struct pctx *c, const char *fmt, ...)
{
	if (!c->failed && c->err && c->err_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->err, c->err_len, fmt, ap);
		va_end(ap);
	}
	c->failed = 1;
	return -QUAI_EFORMAT;
}

static int get_u64(struct pctx *c, const qjs_value *obj, const char *where, const char *key,
		   uint64_t *out)
{
	const qjs_value *v = qjs_get(obj, key);
	if (!v)
		return fail(c, "%smissing member \"%s\"", where, key);
	int r = qjs_u64(v, out);
	if (r == -ERANGE)
		return fail(c, "%s\"%s\" is out of range", where, key);
	if (r < 0)
		return fail(c, "%s\"%s\" must be a non-negative integer", where, key);
	return 0;
}

static int get_u64_max(struct pctx *c, const qjs_value *obj, const char *where, const char *key,
		       uint64_t max, uint64_t *out)
{
	int r = get_u64(c, obj, where, key, out);
	if (r == 0 && *out > max)
		return fail(c, "%s\"%s\" is %" PRIu64 ", above the limit %" PRIu64, where, key,
			    *out, max);
	return r;
}

static int get_str(struct pctx *c, const qjs_value *obj, const char *where, const char *key,
		   const char **out)
{
	const qjs_value *v = qjs_get(obj, key);
	size_t len;
	const char *s = v ? qjs_str(v, &len) : NULL;
	if (!v)
		return fail(c, "%smissing member \"%s\"", where, key);
	if (!s)
		return fail(c, "%s\"%s\" must be a string", where, key);
	*out = s;
	return 0;
}

static int get_hex64(struct pctx *c, const qjs_value *obj, const char *where, const char *key,
		     uint64_t *out)
{
	const char *s;
	int r = get_str(c, obj, where, key, &s);
	if (r < 0)
		return r;
	uint64_t v = 0;
	size_t i;
	for (i = 0; s[i]; i++) {
		int d;
		if (s[i] >= '0' && s[i] <= '9')
			d = s[i] - '0';
		else if (s[i] >= 'a' && s[i] <= 'f')
			d = s[i] - 'a' + 10;
		else
			break;
		v = v << 4 | (uint64_t)d;
	}
	if (i != 16 || s[i])
		return fail(c, "%s\"%s\" must be 16 lowercase hex digits", where, key);
	*out = v;
	return 0;
}

static int parse_shard(struct pctx *c, const qjs_value *v, uint32_t i, struct qmf_shard *s)
{
	char where[48];
	const char *file, *index;
	uint64_t frames;

	snprintf(where, sizeof(where), "shards[%" PRIu32 "]: ", i);
	if (qjs_type(v) != QJS_OBJECT)
		return fail(c, "%smust be an object", where);
	qmf_shard_names(s, i);
	if (get_str(c, v, where, "file", &file) < 0 || get_str(c, v, where, "index", &index) < 0)
		return -QUAI_EFORMAT;
	/* Names are fixed by position: nothing in a manifest can point a
	 * reader outside the dataset directory. */
	if (strcmp(file, s->file) != 0)
		return fail(c, "%s\"file\" must be \"%s\"", where, s->file);
	if (strcmp(index, s->index) != 0)
		return fail(c, "%s\"index\" must be \"%s\"", where, s->index);
	if (get_u64(c, v, where, "first_record", &s->first_record) < 0 ||
	    get_u64_max(c, v, where, "records", UINT32_MAX, &s->records) < 0 ||
	    get_u64_max(c, v, where, "frames", QST_MAX_FRAMES, &frames) < 0 ||
	    get_u64(c, v, where, "raw_bytes", &s->raw_bytes) < 0 ||
	    get_u64(c, v, where, "compressed_bytes", &s->compressed_bytes) < 0 ||
	    get_u64(c, v, where, "index_bytes", &s->index_bytes) < 0 ||
	    get_hex64(c, v, where, "xxh3", &s->xxh3) < 0 ||
	    get_hex64(c, v, where, "index_xxh3", &s->index_xxh3) < 0)
		return -QUAI_EFORMAT;
	s->frames = (uint32_t)frames;
	if (s->records == 0 || s->frames == 0 || s->records < s->frames)
		return fail(c, "%sa shard holds at least one frame and a record per frame", where);
	if (s->compressed_bytes < qst_encoded_size(s->frames) + s->frames)
		return fail(c, "%s\"compressed_bytes\" is too small for %" PRIu32 " frames", where,
			    s->frames);
	if (s->raw_bytes > (uint64_t)s->frames * QST_MAX_FRAME_RSIZE)
		return fail(c, "%s\"raw_bytes\" is too large for %" PRIu32 " frames", where,
			    s->frames);
	return 0;
}

static int parse_tree(struct pctx *c, const qjs_value *root, struct qmf *m)
{
	const char *s;
	uint64_t u;

	if (qjs_type(root) != QJS_OBJECT)
		return fail(c, "the manifest must be a JSON object");
	if (get_str(c, root, "", "format", &s) < 0)
		return -QUAI_EFORMAT;
	if (strcmp(s, QMF_FORMAT_NAME) != 0)
		return fail(c, "\"format\" is \"%s\", not \"" QMF_FORMAT_NAME "\"", s);
	if (get_u64(c, root, "", "format_version", &u) < 0)
		return -QUAI_EFORMAT;
	if (u != QMF_VERSION) {
		fail(c,
		     "format_version %" PRIu64 " is not supported (this build reads %u): "
		     "written by a newer quai, it needs a newer quai to read it",
		     u, QMF_VERSION);
		return -QUAI_EVERSION;
	}
	m->format_version = (uint32_t)u;

	if (get_str(c, root, "", "name", &s) < 0)
		return -QUAI_EFORMAT;
	if (qmf_check_name(s) < 0)
		return fail(c, "\"name\" must be 1..%d bytes without '/' or control characters",
			    QUAI_NAME_MAX);
	strcpy(m->name, s);

	if (get_str(c, root, "", "record_kind", &s) < 0)
		return -QUAI_EFORMAT;
	m->kind = 0;
	for (int k = QUAI_RECORDS_FILES; k <= QUAI_RECORDS_FIXED; k++)
		if (strcmp(s, quai_record_kind_name(k)) == 0)
			m->kind = k;
	if (!m->kind)
		return fail(c, "\"record_kind\" \"%s\" is not files, lines or fixed", s);
	if (m->kind == QUAI_RECORDS_FIXED) {
		if (get_u64_max(c, root, "", "record_size", QUAI_RECORD_SIZE_MAX, &u) < 0)
			return -QUAI_EFORMAT;
		if (u == 0)
			return fail(c, "\"record_size\" must be at least 1");
		m->fixed_size = (uint32_t)u;
	}

	if (get_u64(c, root, "", "records", &m->records) < 0 ||
	    get_u64(c, root, "", "raw_bytes", &m->raw_bytes) < 0 ||
	    get_u64(c, root, "", "compressed_bytes", &m->compressed_bytes) < 0 ||
	    get_u64(c, root, "", "frames", &m->frames) < 0)
		return -QUAI_EFORMAT;

	if (get_str(c, root, "", "classification", &s) < 0)
		return -QUAI_EFORMAT;
	int cls = quai_class_parse(s);
	if (cls < 0)
		return fail(c, "\"classification\" \"%s\" is not public, internal or sensitive", s);
	m->classification = cls;
	if (get_str(c, root, "", "zone", &s) < 0)
		return -QUAI_EFORMAT;
	if (quai_zone_check(s) < 0)
		return fail(c, "\"zone\" must be 1..%d characters of A-Z a-z 0-9 . _ -",
			    QUAI_ZONE_MAX);
	strcpy(m->zone, s);
	if (get_str(c, root, "", "created", &s) < 0)
		return -QUAI_EFORMAT;
	snprintf(m->created, sizeof(m->created), "%s", s);
	if (get_str(c, root, "", "creator", &s) < 0)
		return -QUAI_EFORMAT;
	snprintf(m->creator, sizeof(m->creator), "%s", s);

	const qjs_value *par = qjs_get(root, "parameters");
	if (!par || qjs_type(par) != QJS_OBJECT)
		return fail(c, "missing object \"parameters\"");
	const qjs_value *lv = qjs_get(par, "level");
	/* zstd levels may be negative; the text is checked by hand. */
	if (!lv || qjs_type(lv) != QJS_NUMBER)
		return fail(c, "parameters: missing number \"level\"");
	if (qjs_u64(lv, &u) == 0) {
		if (u > (uint64_t)ZSTD_maxCLevel())
			return fail(c, "parameters: \"level\" %" PRIu64 " is above %d", u,
				    ZSTD_maxCLevel());
		m->level = (int)u;
	} else {
		return fail(c, "parameters: \"level\" must be an integer 0..%d", ZSTD_maxCLevel());
	}
	if (get_u64(c, par, "parameters: ", "frame_size", &u) < 0)
		return -QUAI_EFORMAT;
	if (u < QUAI_FRAME_SIZE_MIN || u > QUAI_FRAME_SIZE_MAX)
		return fail(c, "parameters: \"frame_size\" %" PRIu64 " is outside %u..%u", u,
			    QUAI_FRAME_SIZE_MIN, QUAI_FRAME_SIZE_MAX);
	m->frame_size = (uint32_t)u;
	if (get_u64(c, par, "parameters: ", "shard_size", &m->shard_size) < 0)
		return -QUAI_EFORMAT;
	if (m->shard_size < QUAI_SHARD_SIZE_MIN)
		return fail(c, "parameters: \"shard_size\" is below %u", QUAI_SHARD_SIZE_MIN);

	const qjs_value *sh = qjs_get(root, "shards");
	if (!sh || qjs_type(sh) != QJS_ARRAY)
		return fail(c, "missing array \"shards\"");
	size_t n = qjs_len(sh);
	if (n == 0 || n > QMF_MAX_SHARDS)
		return fail(c, "\"shards\" must hold 1..%u shards, not %zu", QMF_MAX_SHARDS, n);
	m->shards = calloc(n, sizeof(*m->shards));
	if (!m->shards)
		return -ENOMEM;
	m->nshards = (uint32_t)n;

	/* The shards must tile the records and add up to the totals. */
	uint64_t rec = 0, raw = 0, comp = 0, frames = 0;
	for (uint32_t i = 0; i < m->nshards; i++) {
		struct qmf_shard *x = &m->shards[i];
		if (parse_shard(c, qjs_at(sh, i), i, x) < 0)
			return -QUAI_EFORMAT;
		if (x->first_record != rec)
			return fail(c,
				    "shards[%" PRIu32 "]: \"first_record\" is %" PRIu64
				    ", expected %" PRIu64,
				    i, x->first_record, rec);
		if (m->kind == QUAI_RECORDS_FIXED && x->raw_bytes != x->records * m->fixed_size)
			return fail(c,
				    "shards[%" PRIu32 "]: \"raw_bytes\" is not records x "
				    "record_size",
				    i);
		if (__builtin_add_overflow(rec, x->records, &rec) ||
		    __builtin_add_overflow(raw, x->raw_bytes, &raw) ||
		    __builtin_add_overflow(comp, x->compressed_bytes, &comp) ||
		    __builtin_add_overflow(frames, x->frames, &frames))
			return fail(c, "shards[%" PRIu32 "]: totals overflow", i);
	}
	if (rec != m->records)
		return fail(c, "\"records\" is %" PRIu64 " but the shards hold %" PRIu64,
			    m->records, rec);
	if (raw != m->raw_bytes)
		return fail(c, "\"raw_bytes\" is %" PRIu64 " but the shards hold %" PRIu64,
			    m->raw_bytes, raw);
	if (comp != m->compressed_bytes)
		return fail(c, "\"compressed_bytes\" is %" PRIu64 " but the shards hold %" PRIu64,
			    m->compressed_bytes, comp);
	if (frames != m->frames)
		return fail(c, "\"frames\" is %" PRIu64 " but the shards hold %" PRIu64, m->frames,
			    frames);
	return 0;
}

/* Finds the last occurrence of the checksum key. Inside JSON strings a
 * quote is always escaped, so the only unescaped `"manifest_xxh3"` is a
 * key. */
static const char *find_checksum_key(const char *text, size_t len)
{
	size_t klen = strlen(QMF_CHECKSUM_KEY);
	const char *last = NULL;
	for (const char *p = text; (size_t)(p - text) + klen <= len;) {
		const char *q = memmem(p, len - (size_t)(p - text), QMF_CHECKSUM_KEY, klen);
		if (!q)
			break;
		last = q;
		p = q + 1;
	}
	return last;
}

int qmf_parse(const char *text, size_t len, struct qmf *ret_m, char *err, size_t err_len)
{
	struct pctx c = {.err = err, .err_len = err_len};
	struct qjs_error je;
	qjs_doc *doc = NULL;
	struct qmf m = {0};
	uint64_t want;
	int r;

	if (err && err_len)
		err[0] = '\0';
	if (len > QMF_MAX_BYTES)
		return fail(&c, "the manifest is larger than %u bytes", QMF_MAX_BYTES);
	r = qjs_parse(text, len, &doc, &je);
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return fail(&c, "JSON error at line %u column %u (byte %zu): %s", je.line,
			    je.column, je.offset, je.message);
	const qjs_value *root = qjs_root(doc);
	if (qjs_type(root) != QJS_OBJECT) {
		qjs_free(doc);
		return fail(&c, "the manifest must be a JSON object");
	}
	/* Checksum before meaning: a damaged manifest is reported as such. */
	const char *key = find_checksum_key(text, len);
	r = get_hex64(&c, root, "", "manifest_xxh3", &want);
	if (r < 0)
		goto out;
	if (!key) {
		r = fail(&c, "missing member \"manifest_xxh3\"");
		goto out;
	}
	m.checksum = XXH3_64bits(text, (size_t)(key - text));
	if (m.checksum != want) {
		fail(&c, "manifest checksum mismatch: stored %016" PRIx64 ", computed %016" PRIx64,
		     want, m.checksum);
		r = -QUAI_ECORRUPT;
		goto out;
	}
	r = parse_tree(&c, root, &m);
out:
	qjs_free(doc);
	if (r < 0) {
		qmf_release(&m);
		return r;
	}
	*ret_m = m;
	return 0;
}

void qmf_release(struct qmf *m)
{
	if (!m)
		return;
	free(m->shards);
	m->shards = NULL;
	m->nshards = 0;
}
