/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz harness for the audit line (stager/site/audit.h). The input gives the
 * numbers of an event (its first 32 bytes) and its strings (the rest, split
 * at NUL bytes). Checks that the line is one line of valid JSON with the
 * fields in order, that every string reads back as written (each byte that
 * is not well-formed UTF-8 as U+00XX), and that a short buffer holds a
 * NUL-terminated prefix of the line.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

#define NSTR 11

static const char *const str_keys[NSTR] = {
    "event",   "user",		 "group", "host", "client", "op",
    "dataset", "classification", "zone",  "rule", "reason",
};

/* The length of the well-formed UTF-8 sequence at s (Unicode's table of
 * well-formed byte sequences), 0 when there is none. */
static size_t well_formed(const uint8_t *s, size_t len)
{
	uint8_t c = s[0], lo = 0x80, hi = 0xbf;
	size_t n;

	if (c <= 0x7f)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (len < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* What a JSON reader should get back for s: s, with each byte that does
 * not start a well-formed sequence as the UTF-8 of U+00XX. */
static char *expected(const char *s, size_t *ret_len)
{
	const uint8_t *u = (const uint8_t *)s;
	size_t len = strlen(s), o = 0;
	char *out = malloc(2 * len + 1);

	CHECK(out);
	for (size_t i = 0; i < len;) {
		size_t n = well_formed(u + i, len - i);

		if (n) {
			memcpy(out + o, s + i, n);
			o += n;
			i += n;
		} else {
			out[o++] = (char)(0xc0 | u[i] >> 6);
			out[o++] = (char)(0x80 | (u[i] & 0x3f));
			i++;
		}
	}
	out[o] = '\0';
	*ret_len = o;
	return out;
}

static uint64_t take(const uint8_t *data, size_t size, size_t *pos, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++, (*pos)++)
		v = v << 8 | (*pos < size ? data[*pos] : 0);
	return v;
}

static void check_int(const qjs_value *v, int64_t x, bool known)
{
	uint64_t got;

	if (!known) {
		CHECK(qjs_type(v) == QJS_NULL);
		return;
	}
	CHECK(qjs_u64(v, &got) == 0 && got == (uint64_t)x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qaudit_event ev = {0};
	const char **strs[NSTR] = {&ev.event,  &ev.user, &ev.group,   &ev.host,
				   &ev.client, &ev.op,	 &ev.dataset, &ev.classification,
				   &ev.zone,   &ev.rule, &ev.reason};
	size_t pos = 0, rest;
	char *text;
	int64_t now;

	/* The numbers; small values are likelier to mean -1 or 0. */
	now = (int64_t)take(data, size, &pos, 8);
	ev.session = take(data, size, &pos, 8) >> (pos < size ? data[pos] % 64 : 0);
	ev.uid = (int64_t)take(data, size, &pos, 4) - 1;
	ev.gid = (int64_t)take(data, size, &pos, 4) - 1;
	ev.bytes = (int64_t)take(data, size, &pos, 7) - 1;
	ev.granted = (int)take(data, size, &pos, 1) & 1;

	/* The strings: a copy, NUL-terminated, cut at each NUL; missing ones
	 * stay NULL. */
	rest = pos < size ? size - pos : 0;
	text = malloc(rest + 1);
	CHECK(text);
	if (rest)
		memcpy(text, data + pos, rest);
	text[rest] = '\0';
	for (size_t i = 0, at = 0; i < NSTR && at <= rest; i++) {
		*strs[i] = text + at;
		at += strlen(text + at) + 1;
	}

	size_t n = qaudit_format(&ev, now, NULL, 0);
	char *line = malloc(n + 1);
	CHECK(line);
	CHECK(qaudit_format(&ev, now, line, n + 1) == n);
	CHECK(strlen(line) == n && n > 0 && line[n - 1] == '\n');
	CHECK(!memchr(line, '\n', n - 1));

	/* A short buffer: a prefix, NUL-terminated, nothing past it. */
	size_t cut = size ? data[size - 1] % (n + 1) : n / 2;
	char *part = malloc(cut + 2);
	CHECK(part);
	part[cut + 1] = 'X';
	CHECK(qaudit_format(&ev, now, part, cut + 1) == n);
	CHECK(part[cut] == '\0' && memcmp(part, line, cut) == 0 && part[cut + 1] == 'X');
	free(part);

	qjs_doc *doc = NULL;
	struct qjs_error e;
	CHECK(qjs_parse(line, n, &doc, &e) == 0);
	const qjs_value *root = qjs_root(doc);
	CHECK(qjs_type(root) == QJS_OBJECT && qjs_len(root) == 17);
	CHECK(strcmp(qjs_key_at(root, 0), "time") == 0);
	CHECK(strcmp(qjs_key_at(root, 14), "result") == 0);
	CHECK(qjs_str(qjs_get(root, "time"), NULL) &&
	      strlen(qjs_str(qjs_get(root, "time"), NULL)) == 24);
	CHECK(strcmp(qjs_str(qjs_get(root, "result"), NULL), ev.granted ? "granted" : "refused") ==
	      0);
	check_int(qjs_get(root, "session"), (int64_t)ev.session, ev.session != 0);
	check_int(qjs_get(root, "uid"), ev.uid, ev.uid >= 0);
	check_int(qjs_get(root, "gid"), ev.gid, ev.gid >= 0);
	check_int(qjs_get(root, "bytes"), ev.bytes, ev.bytes >= 0);

	for (size_t i = 0; i < NSTR; i++) {
		const qjs_value *v = qjs_get(root, str_keys[i]);
		size_t glen, wlen;

		CHECK(v);
		if (!*strs[i]) {
			CHECK(qjs_type(v) == QJS_NULL);
			continue;
		}
		const char *got = qjs_str(v, &glen);
		char *want = expected(*strs[i], &wlen);
		CHECK(got && glen == wlen && memcmp(got, want, wlen) == 0);
		free(want);
	}
	qjs_free(doc);
	free(line);
	free(text);
	return 0;
}
