/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz harness for the JSON reader and writer (compress/json.h).
 *
 * Beyond "does not crash": every accepted document is walked whole, every
 * string is written back with qjs_put_str() and must parse to the same
 * bytes, the whole tree is re-serialized and must parse to the same tree,
 * and the raw input written as one string must always be accepted.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

/* A string the parser returned, written and parsed again, is unchanged:
 * it is valid UTF-8 without NUL, so the writer escapes it losslessly. */
static void check_string_round_trip(const char *s, size_t len)
{
	struct qjs_buf b = {0};
	qjs_doc *doc = NULL;
	const char *out;
	size_t out_len = 0;

	CHECK(strlen(s) == len);
	qjs_put_str(&b, s, len);
	if (b.err) {
		free(b.data);
		return;
	}
	int r = qjs_parse(b.data, b.len, &doc, NULL);
	if (r == -ENOMEM) {
		free(b.data);
		return;
	}
	CHECK(r == 0);
	out = qjs_str(qjs_root(doc), &out_len);
	CHECK(out && out_len == len && memcmp(out, s, len) == 0);
	qjs_free(doc);
	free(b.data);
}

/* Checks every accessor on v and below; recursion is bounded by
 * QJS_MAX_DEPTH. */
static void walk(const qjs_value *v, unsigned depth)
{
	enum qjs_type t = qjs_type(v);
	size_t len = 0, n = qjs_len(v);
	uint64_t u;

	CHECK(depth <= QJS_MAX_DEPTH);
	switch (t) {
	case QJS_NULL:
	case QJS_FALSE:
	case QJS_TRUE:
		CHECK(n == 0 && !qjs_at(v, 0) && !qjs_str(v, NULL));
		CHECK(qjs_u64(v, &u) == -EINVAL);
		break;
	case QJS_NUMBER: {
		int r = qjs_u64(v, &u);

		CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
		CHECK(n == 0 && !qjs_str(v, NULL));
		break;
	}
	case QJS_STRING: {
		const char *s = qjs_str(v, &len);

		CHECK(s && n == 0);
		check_string_round_trip(s, len);
		break;
	}
	case QJS_ARRAY:
		for (size_t i = 0; i < n; i++) {
			CHECK(qjs_at(v, i) && !qjs_key_at(v, i));
			walk(qjs_at(v, i), depth + 1);
		}
		CHECK(!qjs_at(v, n));
		break;
	case QJS_OBJECT:
		for (size_t i = 0; i < n; i++) {
			const char *key = qjs_key_at(v, i);

			CHECK(key && qjs_get(v, key) == qjs_at(v, i));
			check_string_round_trip(key, strlen(key));
			walk(qjs_at(v, i), depth + 1);
		}
		CHECK(!qjs_at(v, n) && !qjs_key_at(v, n));
		break;
	default:
		abort();
	}
}

/* Writes v as JSON. Numbers that are not u64 cannot be read back as text
 * through the API; they are written as 0 and compared by type only. */
static void write_value(struct qjs_buf *b, const qjs_value *v)
{
	size_t len = 0;
	uint64_t u;

	switch (qjs_type(v)) {
	case QJS_NULL:
		qjs_put_cstr(b, "null");
		break;
	case QJS_FALSE:
		qjs_put_cstr(b, "false");
		break;
	case QJS_TRUE:
		qjs_put_cstr(b, "true");
		break;
	case QJS_NUMBER:
		qjs_put_u64(b, qjs_u64(v, &u) == 0 ? u : 0);
		break;
	case QJS_STRING: {
		const char *s = qjs_str(v, &len);
		qjs_put_str(b, s, len);
		break;
	}
	case QJS_ARRAY:
		qjs_put_cstr(b, "[");
		for (size_t i = 0; i < qjs_len(v); i++) {
			if (i)
				qjs_put_cstr(b, ",");
			write_value(b, qjs_at(v, i));
		}
		qjs_put_cstr(b, "]");
		break;
	case QJS_OBJECT:
		qjs_put_cstr(b, "{");
		for (size_t i = 0; i < qjs_len(v); i++) {
			const char *key = qjs_key_at(v, i);

			qjs_put_fmt(b, "%s", i ? "," : "");
			qjs_put_str(b, key, strlen(key));
			qjs_put_cstr(b, ":");
			write_value(b, qjs_at(v, i));
		}
		qjs_put_cstr(b, "}");
		break;
	}
}

static bool same(const qjs_value *a, const qjs_value *b)
{
	size_t la = 0, lb = 0;
	uint64_t ua, ub;

	if (qjs_type(a) != qjs_type(b) || qjs_len(a) != qjs_len(b))
		return false;
	switch (qjs_type(a)) {
	case QJS_NUMBER:
		return qjs_u64(a, &ua) != 0 || (qjs_u64(b, &ub) == 0 && ua == ub);
	case QJS_STRING: {
		const char *sa = qjs_str(a, &la), *sb = qjs_str(b, &lb);
		return la == lb && memcmp(sa, sb, la) == 0;
	}
	case QJS_ARRAY:
	case QJS_OBJECT:
		for (size_t i = 0; i < qjs_len(a); i++) {
			if (qjs_type(a) == QJS_OBJECT && strcmp(qjs_key_at(a, i), qjs_key_at(b, i)))
				return false;
			if (!same(qjs_at(a, i), qjs_at(b, i)))
				return false;
		}
		return true;
	default:
		return true;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qjs_error err;
	struct qjs_buf b = {0};
	qjs_doc *doc = NULL, *again = NULL;
	int r;

	memset(&err, 0xa5, sizeof(err));
	r = qjs_parse((const char *)data, size, &doc, &err);
	if (r == 0) {
		walk(qjs_root(doc), 0);
		write_value(&b, qjs_root(doc));
		if (!b.err) {
			r = qjs_parse(b.data, b.len, &again, NULL);
			CHECK(r == 0 || r == -ENOMEM);
			if (r == 0)
				CHECK(same(qjs_root(doc), qjs_root(again)));
			qjs_free(again);
		}
		free(b.data);
		qjs_free(doc);
	} else {
		CHECK(r == -EINVAL || r == -ENOMEM);
		CHECK(!doc);
		if (r == -EINVAL) {
			CHECK(err.offset <= size && err.line >= 1 && err.column >= 1);
			CHECK(err.column <= err.offset + 1);
			CHECK(memchr(err.message, '\0', sizeof(err.message)) && err.message[0]);
		}
	}

	/* Any bytes, written as a string, make valid JSON; without NUL bytes
	 * (\u0000 is refused) the parser accepts it. */
	b = (struct qjs_buf){0};
	qjs_put_str(&b, (const char *)data, size);
	if (!b.err && !memchr(data, '\0', size)) {
		size_t len = 0;

		r = qjs_parse(b.data, b.len, &doc, NULL);
		CHECK(r == 0 || r == -ENOMEM);
		if (r == 0) {
			CHECK(qjs_str(qjs_root(doc), &len) && len >= size && len <= 2 * size);
			qjs_free(doc);
		}
	}
	free(b.data);
	return 0;
}
