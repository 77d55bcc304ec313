/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small, strict JSON reader and writer for quai's manifest.
 *
 * Reader: RFC 8259, strict. The whole text is parsed into a read-only tree
 * held in one allocation arena owned by the qjs_doc. Rejected, with the
 * byte offset, line and column of the fault and a short message:
 * invalid UTF-8 (overlongs, surrogates, > U+10FFFF), unescaped control
 * characters in strings, bad escapes, lone surrogate \u escapes, "\u0000"
 * (strings are NUL-terminated C strings), duplicate keys in one object,
 * nesting deeper than QJS_MAX_DEPTH, leading zeros, trailing garbage, and
 * anything that is not JSON. Numbers are kept as their text: accessors
 * convert them exactly (no floating point for integers).
 *
 * Writer: appends to a growable buffer; the first allocation failure is
 * sticky (qjs_buf.err) so a caller checks once at the end.
 */
#ifndef QUAI_COMMON_JSON_H
#define QUAI_COMMON_JSON_H

#include <stddef.h>
#include <stdint.h>

#define QJS_MAX_DEPTH 32

enum qjs_type {
	QJS_NULL,
	QJS_FALSE,
	QJS_TRUE,
	QJS_NUMBER,
	QJS_STRING,
	QJS_ARRAY,
	QJS_OBJECT,
};

typedef struct qjs_doc qjs_doc;
typedef struct qjs_value qjs_value;

struct qjs_error {
	size_t offset;	 /* byte offset of the fault in the text */
	unsigned line;	 /* 1-based */
	unsigned column; /* 1-based, in bytes */
	char message[96];
};

/* Parses `len` bytes of `text` (need not be NUL-terminated).
 * Returns 0 and *ret_doc, -EINVAL with *err filled in when the text is not
 * valid JSON under the rules above (err may be NULL), or -ENOMEM. */
int qjs_parse(const char *text, size_t len, qjs_doc **ret_doc, struct qjs_error *err);
/* Frees the document and every value in it. NULL is a no-op. */
void qjs_free(qjs_doc *doc);

/* The root value; never NULL for a parsed document. */
const qjs_value *qjs_root(const qjs_doc *doc);

enum qjs_type qjs_type(const qjs_value *v);

/* Number of elements (array) or members (object); 0 for other types. */
size_t qjs_len(const qjs_value *v);
/* Element i of an array, or the value of member i of an object, in
 * document order; NULL when out of range or not a container. */
const qjs_value *qjs_at(const qjs_value *v, size_t i);
/* The key of member i of an object (NUL-terminated), NULL otherwise. */
const char *qjs_key_at(const qjs_value *v, size_t i);
/* The value of member `key` of an object; NULL when absent or v is not an
 * object. */
const qjs_value *qjs_get(const qjs_value *obj, const char *key);

/* A string value, decoded, NUL-terminated (and its length in bytes);
 * NULL when v is not a string. Valid as long as the document. */
const char *qjs_str(const qjs_value *v, size_t *ret_len);

/* An integer number value, exactly: 0, -EINVAL when v is not a number or
 * is not written as a plain non-negative integer (no sign, fraction or
 * exponent), -ERANGE when it does not fit in 64 bits. */
int qjs_u64(const qjs_value *v, uint64_t *ret);

/* Writer. Zero-initialise (`struct qjs_buf b = {0};`), append, then check
 * b.err (0 or -ENOMEM); the caller frees b.data with free(). b.data is
 * always NUL-terminated after a successful append. */
struct qjs_buf {
	char *data;
	size_t len;
	size_t cap;
	int err;
};

/* Appends raw bytes / a NUL-terminated C string unchanged. */
void qjs_put_raw(struct qjs_buf *b, const void *data, size_t len);
void qjs_put_cstr(struct qjs_buf *b, const char *s);
/* Appends a JSON string literal (with quotes) for `len` bytes of `s`:
 * '"', '\\' and control characters escaped; bytes that are not valid UTF-8
 * are written as \u00XX of the byte value (so the output is always valid
 * JSON and UTF-8; such strings do not round-trip byte for byte). */
void qjs_put_str(struct qjs_buf *b, const char *s, size_t len);
/* Appends a decimal unsigned integer. */
void qjs_put_u64(struct qjs_buf *b, uint64_t v);
/* printf-style append. */
void qjs_put_fmt(struct qjs_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif /* QUAI_COMMON_JSON_H */
