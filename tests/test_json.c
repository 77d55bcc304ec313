/* SPDX-License-Identifier: Apache-2.0 */
/* The strict JSON reader and the writer (compress/json.h). */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"

static qjs_doc *parse_ok_len(const char *text, size_t len)
{
	struct qjs_error err = {0};
	qjs_doc *doc = NULL;
	int r = qjs_parse(text, len, &doc, &err);

	cr_assert_eq(r, 0, "parse of <%.*s> failed: %d at %u:%u: %s", (int)(len > 200 ? 200 : len),
		     text, r, err.line, err.column, err.message);
	cr_assert_not_null(doc);
	cr_assert_not_null(qjs_root(doc));
	return doc;
}

static qjs_doc *parse_ok(const char *text)
{
	return parse_ok_len(text, strlen(text));
}

/* Checks that `text` is rejected at line:column with a message holding
 * `msg`, and that *ret_doc is left alone. */
static void check_bad(const char *text, size_t len, unsigned line, unsigned column, const char *msg)
{
	struct qjs_error err = {0};
	qjs_doc *sentinel = (qjs_doc *)&err, *doc = sentinel;
	int r = qjs_parse(text, len, &doc, &err);

	cr_assert_eq(r, -EINVAL, "<%.*s> parsed (%d)", (int)len, text, r);
	cr_assert_eq(doc, sentinel, "ret_doc written on failure");
	cr_expect_eq(err.line, line, "<%.*s>: line %u, expected %u (%s)", (int)len, text, err.line,
		     line, err.message);
	cr_expect_eq(err.column, column, "<%.*s>: column %u, expected %u (%s)", (int)len, text,
		     err.column, column, err.message);
	cr_expect_not_null(strstr(err.message, msg), "<%.*s>: message \"%s\" lacks \"%s\"",
			   (int)len, text, err.message, msg);
	cr_expect_lt(strlen(err.message), sizeof(err.message));
}

/* For literals, which may hold NUL bytes. */
#define BAD(lit, line, column, msg) check_bad(lit, sizeof(lit) - 1, line, column, msg)

/* The decoded string at the root of `text`. */
static void check_string(const char *text, const char *want, size_t want_len)
{
	qjs_doc *doc = parse_ok(text);
	size_t len = 0;
	const char *s = qjs_str(qjs_root(doc), &len);

	cr_assert_not_null(s, "%s: not a string", text);
	cr_expect_eq(len, want_len, "%s: length %zu, expected %zu", text, len, want_len);
	cr_expect_eq(memcmp(s, want, want_len), 0, "%s: wrong bytes", text);
	cr_expect_eq(s[len], '\0');
	qjs_free(doc);
}

#define STR(text, lit) check_string(text, lit, sizeof(lit) - 1)

/* ------------------------------------------------------------------------
 * Valid documents
 * ------------------------------------------------------------------------ */

Test(json, scalars_at_root)
{
	static const struct {
		const char *text;
		enum qjs_type type;
	} cases[] = {
	    {"null", QJS_NULL},		{"true", QJS_TRUE},    {"false", QJS_FALSE},
	    {" \t\r\n0\n", QJS_NUMBER}, {"\"x\"", QJS_STRING}, {"[]", QJS_ARRAY},
	    {"{}", QJS_OBJECT},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		qjs_doc *doc = parse_ok(cases[i].text);

		cr_expect_eq(qjs_type(qjs_root(doc)), cases[i].type, "%s", cases[i].text);
		cr_expect_eq(qjs_len(qjs_root(doc)), 0);
		cr_expect_null(qjs_at(qjs_root(doc), 0));
		cr_expect_null(qjs_key_at(qjs_root(doc), 0));
		cr_expect_null(qjs_get(qjs_root(doc), "x"));
		qjs_free(doc);
	}
}

Test(json, array_of_every_type)
{
	qjs_doc *doc = parse_ok("[null, true, false, -1.5e3, \"s\", [1], {\"k\": 2}]");
	const qjs_value *a = qjs_root(doc);
	size_t len;

	cr_assert_eq(qjs_type(a), QJS_ARRAY);
	cr_assert_eq(qjs_len(a), 7);
	cr_expect_eq(qjs_type(qjs_at(a, 0)), QJS_NULL);
	cr_expect_eq(qjs_type(qjs_at(a, 1)), QJS_TRUE);
	cr_expect_eq(qjs_type(qjs_at(a, 2)), QJS_FALSE);
	cr_expect_eq(qjs_type(qjs_at(a, 3)), QJS_NUMBER);
	cr_expect_str_eq(qjs_str(qjs_at(a, 4), &len), "s");
	cr_expect_eq(len, 1);
	cr_expect_eq(qjs_len(qjs_at(a, 5)), 1);
	cr_expect_eq(qjs_type(qjs_at(qjs_at(a, 5), 0)), QJS_NUMBER);
	cr_expect_eq(qjs_type(qjs_get(qjs_at(a, 6), "k")), QJS_NUMBER);
	cr_expect_null(qjs_at(a, 7));
	cr_expect_null(qjs_at(a, (size_t)-1));
	cr_expect_null(qjs_key_at(a, 0), "arrays have no keys");
	cr_expect_null(qjs_get(a, "k"));
	cr_expect_null(qjs_str(qjs_at(a, 3), NULL), "a number is not a string");
	qjs_free(doc);
}

Test(json, object_members_in_document_order)
{
	qjs_doc *doc = parse_ok("{\"zeta\": 1, \"alpha\": \"two\", \"mid\": {\"inner\": [true]},"
				" \"\": null, \"alphabet\": false}");
	const qjs_value *o = qjs_root(doc);
	static const char *const keys[] = {"zeta", "alpha", "mid", "", "alphabet"};
	uint64_t u = 0;

	cr_assert_eq(qjs_type(o), QJS_OBJECT);
	cr_assert_eq(qjs_len(o), 5);
	for (size_t i = 0; i < 5; i++) {
		cr_expect_str_eq(qjs_key_at(o, i), keys[i]);
		cr_expect_eq(qjs_get(o, keys[i]), qjs_at(o, i), "get(%s)", keys[i]);
	}
	cr_expect_null(qjs_key_at(o, 5));
	cr_expect_null(qjs_get(o, "alph"));
	cr_expect_null(qjs_get(o, "zz"));
	cr_expect_null(qjs_get(o, "ZETA"));
	cr_expect_null(qjs_get(o, NULL));
	cr_expect_eq(qjs_u64(qjs_get(o, "zeta"), &u), 0);
	cr_expect_eq(u, 1);
	cr_expect_str_eq(qjs_str(qjs_get(o, "alpha"), NULL), "two");
	cr_expect_eq(qjs_type(qjs_at(qjs_get(qjs_get(o, "mid"), "inner"), 0)), QJS_TRUE);
	cr_expect_eq(qjs_type(qjs_get(o, "")), QJS_NULL);
	cr_expect_eq(qjs_type(qjs_get(o, "alphabet")), QJS_FALSE);
	qjs_free(doc);
}

Test(json, empty_containers_and_whitespace)
{
	qjs_doc *doc = parse_ok("\n\t{ \"a\" :\r\n[ ] , \"b\":{\n}\t}\n\n");
	const qjs_value *o = qjs_root(doc);

	cr_expect_eq(qjs_type(qjs_get(o, "a")), QJS_ARRAY);
	cr_expect_eq(qjs_len(qjs_get(o, "a")), 0);
	cr_expect_eq(qjs_type(qjs_get(o, "b")), QJS_OBJECT);
	cr_expect_eq(qjs_len(qjs_get(o, "b")), 0);
	cr_expect_null(qjs_get(qjs_get(o, "b"), "a"));
	qjs_free(doc);
}

Test(json, accessors_accept_null)
{
	uint64_t u = 7;

	cr_expect_null(qjs_root(NULL));
	cr_expect_eq(qjs_len(NULL), 0);
	cr_expect_null(qjs_at(NULL, 0));
	cr_expect_null(qjs_key_at(NULL, 0));
	cr_expect_null(qjs_get(NULL, "a"));
	cr_expect_null(qjs_str(NULL, NULL));
	cr_expect_eq(qjs_u64(NULL, &u), -EINVAL);
	cr_expect_eq(u, 7);
	qjs_free(NULL);
}

Test(json, text_need_not_be_nul_terminated)
{
	const char buf[] = "[1,2]garbage";
	qjs_doc *doc = parse_ok_len(buf, 5);

	cr_expect_eq(qjs_len(qjs_root(doc)), 2);
	qjs_free(doc);
	/* And a string that runs to the very end of the buffer. */
	check_bad("\"abc\"", 4, 1, 1, "unterminated string");
}

Test(json, numbers_kept_as_text)
{
	static const char *const ok[] = {
	    "0",       "-0",	  "7",	  "-7",	  "10",	       "1.5",
	    "-0.0",    "0.25e10", "1E+2", "1e-2", "-1.5E-300", "123456789012345678901234567890",
	    "1e99999",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		qjs_doc *doc = parse_ok(ok[i]);

		cr_expect_eq(qjs_type(qjs_root(doc)), QJS_NUMBER, "%s", ok[i]);
		qjs_free(doc);
	}
}

Test(json, u64_exact)
{
	static const struct {
		const char *text;
		int ret;
		uint64_t value;
	} cases[] = {
	    {"0", 0, 0},
	    {"1", 0, 1},
	    {"4294967296", 0, 4294967296u},
	    {"18446744073709551615", 0, UINT64_MAX},
	    {"18446744073709551610", 0, UINT64_MAX - 5},
	    {"18446744073709551616", -ERANGE, 0},
	    {"18446744073709551620", -ERANGE, 0},
	    {"99999999999999999999", -ERANGE, 0},
	    {"184467440737095516150", -ERANGE, 0},
	    {"-1", -EINVAL, 0},
	    {"-0", -EINVAL, 0},
	    {"1.0", -EINVAL, 0},
	    {"1e3", -EINVAL, 0},
	    {"1E3", -EINVAL, 0},
	    {"99999999999999999999.5", -EINVAL, 0},
	    {"\"5\"", -EINVAL, 0},
	    {"true", -EINVAL, 0},
	    {"[5]", -EINVAL, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		qjs_doc *doc = parse_ok(cases[i].text);
		uint64_t u = 12345;
		int r = qjs_u64(qjs_root(doc), &u);

		cr_expect_eq(r, cases[i].ret, "%s: %d", cases[i].text, r);
		if (cases[i].ret == 0)
			cr_expect_eq(u, cases[i].value, "%s: %llu", cases[i].text,
				     (unsigned long long)u);
		else
			cr_expect_eq(u, 12345, "%s: ret written on failure", cases[i].text);
		qjs_free(doc);
	}
}

Test(json, string_escapes)
{
	STR("\"\"", "");
	STR("\"plain\"", "plain");
	STR("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", "\" \\ / \b \f \n \r \t");
	STR("\"\\u0041\\u0062\"", "Ab");
	STR("\"\\u0001\\u001f\\u007f\"", "\x01\x1f\x7f");
	STR("\"\\u00e9\\u00E9\"", "\xc3\xa9\xc3\xa9");
	STR("\"\\u07ff\\u0800\"", "\xdf\xbf\xe0\xa0\x80");
	STR("\"\\u20ac\"", "\xe2\x82\xac");
	STR("\"\\uffff\"", "\xef\xbf\xbf");
	STR("\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80");
	STR("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80");
	STR("\"\\uD800\\uDC00\"", "\xf0\x90\x80\x80");
	STR("\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf");
	STR("\"a\\uD83D\\uDE00b\\n\"", "a\xf0\x9f\x98\x80"
				       "b\n");
}

Test(json, raw_utf8_and_del)
{
	STR("\"\x7f\"", "\x7f");
	STR("\"\xc2\x80\"", "\xc2\x80");
	STR("\"\xdf\xbf\"", "\xdf\xbf");
	STR("\"\xe0\xa0\x80\"", "\xe0\xa0\x80");
	STR("\"\xed\x9f\xbf\"", "\xed\x9f\xbf"); /* U+D7FF, just below the surrogates */
	STR("\"\xee\x80\x80\"", "\xee\x80\x80"); /* U+E000, just above */
	STR("\"\xef\xbf\xbf\"", "\xef\xbf\xbf");
	STR("\"\xf0\x90\x80\x80\"", "\xf0\x90\x80\x80");
	STR("\"\xf0\x9f\x98\x80\"", "\xf0\x9f\x98\x80");
	STR("\"\xf4\x8f\xbf\xbf\"", "\xf4\x8f\xbf\xbf"); /* U+10FFFF */
	STR("\"h\xc3\xa9llo w\xc3\xb6rld\"", "h\xc3\xa9llo w\xc3\xb6rld");
}

/* ------------------------------------------------------------------------
 * Rejections, each with its place
 * ------------------------------------------------------------------------ */

Test(json, rejects_bad_utf8_at_the_byte)
{
	BAD("\"\xff\"", 1, 2, "invalid UTF-8 byte 0xff");
	BAD("\"\xfe\"", 1, 2, "invalid UTF-8 byte 0xfe");
	BAD("\"\x80\"", 1, 2, "invalid UTF-8 byte 0x80");	  /* lone continuation */
	BAD("\"\xc0\x80\"", 1, 2, "invalid UTF-8 byte 0xc0");	  /* overlong NUL */
	BAD("\"\xc1\xbf\"", 1, 2, "invalid UTF-8 byte 0xc1");	  /* overlong */
	BAD("\"\xe0\x80\x80\"", 1, 3, "0x80");			  /* overlong 3 */
	BAD("\"\xe0\x9f\xbf\"", 1, 3, "0x9f");			  /* overlong 3 */
	BAD("\"\xf0\x80\x80\x80\"", 1, 3, "0x80");		  /* overlong 4 */
	BAD("\"\xf0\x8f\xbf\xbf\"", 1, 3, "0x8f");		  /* overlong 4 */
	BAD("\"\xed\xa0\x80\"", 1, 3, "invalid UTF-8 byte 0xa0"); /* U+D800 */
	BAD("\"\xed\xbf\xbf\"", 1, 3, "0xbf");			  /* U+DFFF */
	BAD("\"\xf4\x90\x80\x80\"", 1, 3, "0x90");		  /* U+110000 */
	BAD("\"\xf5\x80\x80\x80\"", 1, 2, "0xf5");
	BAD("\"ab\xc3\"", 1, 5, "0x22"); /* cut by the quote */
	BAD("\"\xe2\x82\"", 1, 4, "0x22");
	BAD("\"\xe2\x82x\"", 1, 4, "0x78");
	BAD("\"\xc3", 1, 1, "unterminated string"); /* cut by the end */
	BAD("[\"ok\",\n \"\xc3\x28\"]", 2, 4, "invalid UTF-8 byte 0x28");
	BAD("\xef\xbb\xbf[]", 1, 1, "byte 0xef"); /* no BOM */
	BAD("[\xc3\xa9]", 1, 2, "expected a value, got byte 0xc3");
}

Test(json, rejects_control_characters_in_strings)
{
	BAD("\"a\nb\"", 1, 3, "unescaped control character 0x0a");
	BAD("\"a\tb\"", 1, 3, "control character 0x09");
	BAD("\"\x1f\"", 1, 2, "control character 0x1f");
	BAD("\"\x00\"", 1, 2, "control character 0x00");
	BAD("[\"x\",\"y\r\"]", 1, 8, "control character 0x0d");
	BAD("{\"k\x01\":1}", 1, 4, "control character 0x01");
}

Test(json, rejects_bad_escapes)
{
	BAD("\"\\x\"", 1, 2, "invalid escape: backslash then 'x'");
	BAD("\"ab\\'\"", 1, 4, "invalid escape");
	BAD("\"\\U0041\"", 1, 2, "invalid escape");
	BAD("\"\\\x01\"", 1, 2, "backslash then byte 0x01");
	BAD("\"\\u12\"", 1, 2, "invalid \\u escape");
	BAD("\"\\u12g4\"", 1, 2, "invalid \\u escape");
	BAD("\"\\u\"", 1, 2, "invalid \\u escape");
	BAD("\"\\u0000\"", 1, 2, "\\u0000 is not allowed");
	BAD("\"a\\u0000b\"", 1, 3, "\\u0000");
	BAD("\"\\", 1, 1, "unterminated string");
	BAD("\"abc", 1, 1, "unterminated string");
	BAD("[1,\n  \"abc\\\"]", 2, 3, "unterminated string");
}

Test(json, rejects_lone_surrogates)
{
	BAD("\"\\uD800\"", 1, 2, "lone surrogate \\uD800");
	BAD("\"\\ud800\"", 1, 2, "lone surrogate \\uD800");
	BAD("\"\\uDBFF\"", 1, 2, "lone surrogate \\uDBFF");
	BAD("\"\\uDC00\"", 1, 2, "lone surrogate \\uDC00");
	BAD("\"\\uDFFF\"", 1, 2, "lone surrogate \\uDFFF");
	BAD("\"x\\uDE00\\uD83D\"", 1, 3, "lone surrogate \\uDE00"); /* reversed pair */
	BAD("\"\\uD83D\\u0041\"", 1, 2, "lone surrogate \\uD83D");
	BAD("\"\\uD83D\\uD83D\"", 1, 2, "lone surrogate");
	BAD("\"\\uD83Dx\\uDE00\"", 1, 2, "lone surrogate");
	BAD("\"\\uD83D\\n\"", 1, 2, "lone surrogate");
	BAD("\"\\uD83D\\uDE0\"", 1, 2, "lone surrogate");
}

Test(json, rejects_bad_numbers)
{
	BAD("01", 1, 1, "leading zero");
	BAD("-01", 1, 1, "leading zero");
	BAD("00", 1, 1, "leading zero");
	BAD("[1, 007]", 1, 5, "leading zero");
	BAD("-", 1, 2, "expected a digit, got end of input");
	BAD("-a", 1, 2, "expected a digit, got 'a'");
	BAD("- 1", 1, 2, "expected a digit");
	BAD("1.", 1, 3, "expected a digit after '.'");
	BAD("1.e5", 1, 3, "expected a digit after '.'");
	BAD("1e", 1, 3, "expected a digit in exponent");
	BAD("1e+", 1, 4, "expected a digit in exponent");
	BAD("1E-x", 1, 4, "expected a digit in exponent");
	BAD(".5", 1, 1, "expected a value, got '.'");
	BAD("+1", 1, 1, "expected a value, got '+'");
	BAD("0x10", 1, 2, "unexpected 'x' after the document");
	BAD("1.5.3", 1, 4, "after the document");
	BAD("NaN", 1, 1, "expected a value");
	BAD("-Infinity", 1, 2, "expected a digit");
	BAD("Infinity", 1, 1, "expected a value");
}

Test(json, rejects_bad_literals)
{
	BAD("tru", 1, 1, "invalid literal, expected 'true'");
	BAD("trUe", 1, 1, "expected 'true'");
	BAD("nul", 1, 1, "expected 'null'");
	BAD("[fals]", 1, 2, "expected 'false'");
	BAD("True", 1, 1, "expected a value, got 'T'");
	BAD("nulll", 1, 5, "unexpected 'l' after the document");
	BAD("truefalse", 1, 5, "after the document");
}

Test(json, rejects_bad_structure)
{
	BAD("", 1, 1, "unexpected end of input");
	BAD(" \n\t ", 2, 3, "unexpected end of input");
	BAD("[", 1, 2, "unexpected end of input");
	BAD("[1", 1, 3, "expected ',' or ']', got end of input");
	BAD("[1,", 1, 4, "unexpected end of input");
	BAD("{", 1, 2, "expected a string key, got end of input");
	BAD("{\"a\"", 1, 5, "expected ':' after key, got end of input");
	BAD("{\"a\":", 1, 6, "unexpected end of input");
	BAD("{\"a\":1", 1, 7, "expected ',' or '}'");
	BAD("]", 1, 1, "expected a value, got ']'");
	BAD("}", 1, 1, "expected a value, got '}'");
	BAD("[1 2]", 1, 4, "expected ',' or ']', got '2'");
	BAD("[1,,2]", 1, 4, "expected a value, got ','");
	BAD("[,1]", 1, 2, "expected a value, got ','");
	BAD("[1,]", 1, 3, "trailing comma");
	BAD("{\"a\":1,}", 1, 7, "trailing comma");
	BAD("[1,\n]", 1, 3, "trailing comma");
	BAD("[1}", 1, 3, "expected ',' or ']', got '}'");
	BAD("{\"a\":1]", 1, 7, "expected ',' or '}', got ']'");
	BAD("{\"a\" 1}", 1, 6, "expected ':' after key, got '1'");
	BAD("{\"a\"::1}", 1, 6, "expected a value, got ':'");
	BAD("{1:2}", 1, 2, "expected a string key, got '1'");
	BAD("{a:2}", 1, 2, "expected a string key, got 'a'");
	BAD("{'a':2}", 1, 2, "expected a string key, got '''");
	BAD("{\"a\":}", 1, 6, "expected a value, got '}'");
	BAD("{\"a\":1,,}", 1, 8, "expected a string key, got ','");
	BAD("'x'", 1, 1, "expected a value, got '''");
	BAD("[] []", 1, 4, "unexpected '[' after the document");
	BAD("{}x", 1, 3, "unexpected 'x' after the document");
	BAD("1 2", 1, 3, "after the document");
	BAD("[1] /* c */", 1, 5, "unexpected '/' after the document");
	BAD("// c\n1", 1, 1, "expected a value, got '/'");
	BAD("[1]\x00", 1, 4, "unexpected byte 0x00 after the document");
	BAD("\x00", 1, 1, "expected a value, got byte 0x00");
	BAD("[\f1]", 1, 2, "expected a value, got byte 0x0c"); /* not JSON whitespace */
	BAD("[\v1]", 1, 2, "byte 0x0b");
	BAD("\xa0"
	    "1",
	    1, 1, "byte 0xa0");
}

Test(json, reports_line_and_column)
{
	const char text[] = "{\n  \"a\": [1, 2],\n  \"b\": tru\n}";
	struct qjs_error err = {0};
	qjs_doc *doc = NULL;

	cr_assert_eq(qjs_parse(text, sizeof(text) - 1, &doc, &err), -EINVAL);
	cr_expect_eq(err.line, 3);
	cr_expect_eq(err.column, 8);
	cr_expect_eq(err.offset, (size_t)(strstr(text, "tru") - text));
	cr_expect_str_eq(err.message, "invalid literal, expected 'true'");

	/* CR alone does not start a line; the column counts bytes. */
	BAD("[1,\r\n2,\r3 4]", 2, 6, "expected ',' or ']'");
	BAD("[\"\xc3\xa9\xc3\xa9\", x]", 1, 10, "got 'x'");
	BAD("\n\n\n\n\n\n\n\n\n\n[x]", 11, 2, "got 'x'");
}

Test(json, err_may_be_null)
{
	qjs_doc *doc = NULL;

	cr_expect_eq(qjs_parse("[1,", 3, &doc, NULL), -EINVAL);
	cr_expect_null(doc);
	cr_expect_eq(qjs_parse(NULL, 0, &doc, NULL), -EINVAL);
	cr_expect_eq(qjs_parse("1", 1, NULL, NULL), -EINVAL);
}

static char *nested(unsigned depth, char open, char close)
{
	char *s = malloc(2 * depth + 1);

	cr_assert_not_null(s);
	memset(s, open, depth);
	memset(s + depth, close, depth);
	s[2 * depth] = '\0';
	return s;
}

Test(json, nesting_limit_is_exact)
{
	char *ok = nested(QJS_MAX_DEPTH, '[', ']');
	char *deep = nested(QJS_MAX_DEPTH + 1, '[', ']');
	char *very_deep = nested(100000, '[', ']');
	const qjs_value *v;
	qjs_doc *doc;
	unsigned depth = 0;

	doc = parse_ok(ok);
	for (v = qjs_root(doc); qjs_type(v) == QJS_ARRAY; v = qjs_at(v, 0))
		depth++;
	cr_expect_eq(depth, QJS_MAX_DEPTH);
	qjs_free(doc);

	check_bad(deep, strlen(deep), 1, QJS_MAX_DEPTH + 1, "nesting deeper than 32");
	check_bad(very_deep, strlen(very_deep), 1, QJS_MAX_DEPTH + 1, "nesting deeper than 32");
	free(ok);
	free(deep);
	free(very_deep);
}

Test(json, nesting_limit_counts_objects_too)
{
	char ok[512] = "", bad[512] = "";
	size_t o = 0;

	/* 16 objects and 16 arrays, alternating: {"k":[{"k":[ ... ]}]} */
	for (unsigned i = 0; i < QJS_MAX_DEPTH / 2; i++)
		o += (size_t)sprintf(ok + o, "{\"k\":[");
	o += (size_t)sprintf(ok + o, "1");
	for (unsigned i = 0; i < QJS_MAX_DEPTH / 2; i++)
		o += (size_t)sprintf(ok + o, "]}");
	qjs_free(parse_ok(ok));

	o = 0;
	for (unsigned i = 0; i < QJS_MAX_DEPTH / 2; i++)
		o += (size_t)sprintf(bad + o, "{\"k\":[");
	o += (size_t)sprintf(bad + o, "{}");
	for (unsigned i = 0; i < QJS_MAX_DEPTH / 2; i++)
		o += (size_t)sprintf(bad + o, "]}");
	check_bad(bad, o, 1, 6 * (QJS_MAX_DEPTH / 2) + 1, "nesting deeper than 32");
}

Test(json, duplicate_keys)
{
	BAD("{\"a\":1,\"a\":2}", 1, 8, "duplicate key \"a\"");
	BAD("{\"a\":1,\n \"b\":2,\n \"a\":3}", 3, 2, "duplicate key \"a\"");
	/* The earliest repeat in document order is the one reported. */
	BAD("{\"b\":1,\"a\":1,\"a\":2,\"b\":2}", 1, 14, "duplicate key \"a\"");
	BAD("{\"b\":1,\"a\":1,\"b\":2,\"a\":2}", 1, 14, "duplicate key \"b\"");
	/* Equal once decoded. */
	BAD("{\"a\":1,\"\\u0061\":2}", 1, 8, "duplicate key \"a\"");
	BAD("{\"\xc3\xa9\":1,\"\\u00e9\":2}", 1, 9, "duplicate key \"??\"");
	BAD("{\"\":1,\"\":2}", 1, 7, "duplicate key \"\"");
	/* The value of a duplicate can be a container. */
	BAD("{\"a\":[1],\"a\":{\"x\":1}}", 1, 10, "duplicate key \"a\"");
	BAD("[{\"x\":{\"y\":1,\"y\":1}}]", 1, 14, "duplicate key \"y\"");
	/* Long keys are shortened, non-printable bytes hidden. */
	BAD("{\"k\\n0123456789012345678901234567890123456789\":1,"
	    "\"k\\n0123456789012345678901234567890123456789\":2}",
	    1, 50, "duplicate key \"k?0123456789012345678901234567890123...\"");

	/* Same key in different objects, prefixes, case: all fine. */
	qjs_free(parse_ok("{\"a\":{\"a\":1},\"b\":{\"a\":2},\"c\":[{\"a\":1},{\"a\":2}]}"));
	qjs_free(parse_ok("{\"a\":1,\"ab\":2,\"A\":3,\"a \":4,\"\":5}"));
}

Test(json, large_object_parses_fast, .timeout = 20)
{
	const size_t n = 100000;
	struct qjs_buf b = {0};
	struct timespec t0, t1;
	qjs_doc *doc;
	char key[32];

	qjs_put_cstr(&b, "{");
	for (size_t i = 0; i < n; i++) {
		/* Shared prefixes and reverse order: no easy case for the sort. */
		qjs_put_fmt(&b, "%s\"member-%zu\":%zu", i ? "," : "", n - i, i);
	}
	qjs_put_cstr(&b, "}");
	cr_assert_eq(b.err, 0);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	doc = parse_ok_len(b.data, b.len);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_expect_lt(secs, 2.0, "100k members took %.3f s", secs);

	cr_assert_eq(qjs_len(qjs_root(doc)), n);
	for (size_t i = 0; i < n; i++) {
		uint64_t u = 0;

		snprintf(key, sizeof(key), "member-%zu", n - i);
		cr_assert_eq(qjs_get(qjs_root(doc), key), qjs_at(qjs_root(doc), i));
		cr_assert_eq(qjs_u64(qjs_at(qjs_root(doc), i), &u), 0);
		cr_assert_eq(u, i);
	}
	cr_expect_null(qjs_get(qjs_root(doc), "member-0"));
	qjs_free(doc);

	/* The same with one duplicate at the very end. */
	b.len -= 1;
	qjs_put_cstr(&b, ",\"member-7\":0}");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	check_bad(b.data, b.len, 1, (unsigned)(b.len - 12), "duplicate key \"member-7\"");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_expect_lt(secs, 2.0, "100k members with a duplicate took %.3f s", secs);
	free(b.data);
}

Test(json, large_array, .timeout = 20)
{
	const size_t n = 1000000;
	struct qjs_buf b = {0};
	qjs_doc *doc;

	qjs_put_cstr(&b, "[");
	for (size_t i = 0; i < n; i++)
		qjs_put_cstr(&b, i ? ",[\"s\",{}]" : "[\"s\",{}]");
	qjs_put_cstr(&b, "]");
	cr_assert_eq(b.err, 0);
	doc = parse_ok_len(b.data, b.len);
	cr_assert_eq(qjs_len(qjs_root(doc)), n);
	cr_expect_str_eq(qjs_str(qjs_at(qjs_at(qjs_root(doc), n - 1), 0), NULL), "s");
	qjs_free(doc);
	free(b.data);
}

Test(json, long_string)
{
	const size_t n = 5u << 20;
	char *text = malloc(n + 2);
	size_t len = 0;
	qjs_doc *doc;

	cr_assert_not_null(text);
	text[0] = '"';
	memset(text + 1, 'x', n);
	text[n + 1] = '"';
	doc = parse_ok_len(text, n + 2);
	cr_expect_not_null(qjs_str(qjs_root(doc), &len));
	cr_expect_eq(len, n);
	qjs_free(doc);
	free(text);
}

/* ------------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------------ */

static void check_put_str(const char *in, size_t len, const char *want)
{
	struct qjs_buf b = {0};

	qjs_put_str(&b, in, len);
	cr_assert_eq(b.err, 0);
	cr_expect_str_eq(b.data, want);
	cr_expect_eq(b.len, strlen(want));
	free(b.data);
}

#define PUT(lit, want) check_put_str(lit, sizeof(lit) - 1, want)

Test(json, writer_escapes)
{
	PUT("", "\"\"");
	PUT("plain text", "\"plain text\"");
	PUT("\"\\/", "\"\\\"\\\\/\"");
	PUT("\n\t\r\b\f", "\"\\n\\t\\r\\b\\f\"");
	PUT("\x01\x1f\x0b", "\"\\u0001\\u001f\\u000b\"");
	PUT("\x00", "\"\\u0000\"");
	PUT("\x7f", "\"\x7f\"");
	PUT("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
	PUT("\xff", "\"\\u00ff\"");
	PUT("a\x80z", "\"a\\u0080z\"");
	PUT("\xc0\x80", "\"\\u00c0\\u0080\"");
	PUT("\xed\xa0\x80", "\"\\u00ed\\u00a0\\u0080\"");
	PUT("\xf4\x90\x80\x80", "\"\\u00f4\\u0090\\u0080\\u0080\"");
	PUT("\xe2\x82", "\"\\u00e2\\u0082\""); /* cut at the end */
	PUT("\xe2\x82"
	    "a",
	    "\"\\u00e2\\u0082a\"");
	PUT("\xc3\xa9\xc3", "\"\xc3\xa9\\u00c3\"");
}

Test(json, writer_other_appends)
{
	struct qjs_buf b = {0};

	qjs_put_raw(&b, "", 0);
	cr_assert_not_null(b.data, "NUL-terminated even when empty");
	cr_expect_str_eq(b.data, "");
	qjs_put_cstr(&b, "{\"n\":");
	qjs_put_u64(&b, 0);
	qjs_put_raw(&b, ",", 1);
	qjs_put_u64(&b, UINT64_MAX);
	qjs_put_fmt(&b, ",\"%s\":%d", "f", -3);
	qjs_put_cstr(&b, "}");
	cr_assert_eq(b.err, 0);
	cr_expect_str_eq(b.data, "{\"n\":0,18446744073709551615,\"f\":-3}");
	cr_expect_eq(b.len, strlen(b.data));

	/* A format longer than what is left, several times over. */
	char big[1000];
	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (int i = 0; i < 20; i++)
		qjs_put_fmt(&b, "%s%d", big, i);
	cr_assert_eq(b.err, 0);
	cr_expect_eq(b.len, 35 + 20 * 999 + 10 + 10 * 2);
	cr_expect_eq(b.len, strlen(b.data));
	cr_expect_eq(memcmp(b.data + b.len - 3, "y19", 3), 0);
	free(b.data);
}

Test(json, writer_error_is_sticky)
{
	struct qjs_buf b = {0};

	qjs_put_cstr(&b, "abc");
	b.err = -ENOMEM; /* as after a failed realloc */
	qjs_put_cstr(&b, "def");
	qjs_put_u64(&b, 1);
	qjs_put_str(&b, "x", 1);
	qjs_put_fmt(&b, "%d", 1);
	cr_expect_eq(b.err, -ENOMEM);
	cr_expect_eq(b.len, 3);
	cr_expect_str_eq(b.data, "abc");
	free(b.data);
}

/* Writes `in` as a JSON string and parses it back. */
static void round_trip(const char *in, size_t len, const char *want, size_t want_len)
{
	struct qjs_buf b = {0};
	qjs_doc *doc;
	size_t out_len = 0;
	const char *out;

	qjs_put_str(&b, in, len);
	cr_assert_eq(b.err, 0);
	doc = parse_ok_len(b.data, b.len);
	out = qjs_str(qjs_root(doc), &out_len);
	cr_assert_not_null(out);
	cr_expect_eq(out_len, want_len);
	cr_expect_eq(memcmp(out, want, want_len), 0);
	qjs_free(doc);
	free(b.data);
}

Test(json, writer_round_trips_through_the_parser)
{
	char all[255];
	char want[255 * 2];
	size_t w = 0;

	/* Valid UTF-8 without NUL round-trips byte for byte. */
	const char text[] = "a\"b\\c/d\n\t\x01\x1f\x7f \xc3\xa9 \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf";
	round_trip(text, sizeof(text) - 1, text, sizeof(text) - 1);

	/* Every byte but NUL: the ones that are not UTF-8 come back as the
	 * code point of their value. */
	for (unsigned c = 1; c < 256; c++) {
		all[c - 1] = (char)c;
		if (c < 0x80) {
			want[w++] = (char)c;
		} else {
			want[w++] = (char)(0xc0 | (c >> 6));
			want[w++] = (char)(0x80 | (c & 0x3f));
		}
	}
	round_trip(all, sizeof(all), want, w);
}

Test(json, writer_builds_documents_the_parser_reads)
{
	static const char name[] = "d\xc3\xa9j\xc3\xa0 \"vu\"";
	struct qjs_buf b = {0};
	qjs_doc *doc;
	uint64_t u = 0;

	qjs_put_cstr(&b, "{");
	qjs_put_str(&b, "name", 4);
	qjs_put_cstr(&b, ":");
	qjs_put_str(&b, name, strlen(name));
	qjs_put_cstr(&b, ",");
	qjs_put_str(&b, "records", 7);
	qjs_put_fmt(&b, ":%llu}", (unsigned long long)UINT64_MAX);
	cr_assert_eq(b.err, 0);
	doc = parse_ok_len(b.data, b.len);
	cr_expect_str_eq(qjs_str(qjs_get(qjs_root(doc), "name"), NULL), name);
	cr_expect_eq(qjs_u64(qjs_get(qjs_root(doc), "records"), &u), 0);
	cr_expect_eq(u, UINT64_MAX);
	qjs_free(doc);
	free(b.data);
}
