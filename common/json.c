/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Strict JSON reader and small writer; the contract is in json.h.
 *
 * The reader never recurses: open containers live on a fixed stack of
 * QJS_MAX_DEPTH frames, so hostile nesting cannot reach the C stack limit.
 * Finished values wait in a growable "pending" array until their container
 * closes; then they are copied, contiguous, into the arena. Each value is
 * thus copied once and qjs_at() is O(1). When an object closes its members
 * are merge-sorted by key: the sort finds duplicate keys in O(n log n)
 * whatever the keys, and the sorted order is kept after the members so that
 * qjs_get() is a binary search.
 *
 * The arena is a short list of blocks, each about twice the last; the
 * qjs_doc itself lives in the first one, so a small document costs one
 * malloc() besides the parser's scratch arrays.
 */
#include "json.h"
#include "strutil.h"

#include <errno.h>
#include <limits.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct qjs_value {
	const char *key; /* the member's key inside an object, else NULL */
	union {
		const char *str; /* QJS_STRING decoded, QJS_NUMBER as written */
		qjs_value *kids; /* containers; for objects the sorted order follows */
	} u;
	size_t n; /* bytes of str (without the NUL), or number of kids */
	unsigned char type;
};

/* ------------------------------------------------------------------------
 * Arena
 * ------------------------------------------------------------------------ */

#define ARENA_BLOCK_MIN ((size_t)1 << 10)
#define ARENA_BLOCK_MAX ((size_t)64 << 20)

struct arena_block {
	struct arena_block *next;
	size_t cap;
	size_t used;
	max_align_t data[];
};

struct arena {
	struct arena_block *head; /* small allocations are carved from here */
	struct arena_block *last; /* block of the latest allocation, for shrinking */
	size_t next_cap;
};

static void *arena_alloc(struct arena *a, size_t size, size_t align)
{
	struct arena_block *b = a->head;

	if (b) {
		size_t at = (b->used + align - 1) & ~(align - 1);

		if (at <= b->cap && b->cap - at >= size) {
			b->used = at + size;
			a->last = b;
			return (char *)b->data + at;
		}
	}

	/* A large request gets a block of its own, linked behind the head, so
	 * the head's free space stays usable for the small ones that follow. */
	bool big = size > a->next_cap / 4;
	size_t cap = big ? size : a->next_cap;

	if (cap > SIZE_MAX - sizeof(*b))
		return NULL;
	b = malloc(sizeof(*b) + cap);
	if (!b)
		return NULL;
	b->cap = cap;
	b->used = size;
	if (big && a->head) {
		b->next = a->head->next;
		a->head->next = b;
	} else {
		b->next = a->head;
		a->head = b;
		if (a->next_cap < ARENA_BLOCK_MAX)
			a->next_cap *= 2;
	}
	a->last = b;
	return b->data;
}

/* Gives back the tail of the latest allocation `p` (old_size bytes). */
static void arena_shrink(struct arena *a, void *p, size_t old_size, size_t new_size)
{
	struct arena_block *b = a->last;

	if (b && (char *)p + old_size == (char *)b->data + b->used)
		b->used -= old_size - new_size;
}

static void arena_free(struct arena *a)
{
	struct arena_block *b = a->head;

	while (b) {
		struct arena_block *next = b->next;

		free(b);
		b = next;
	}
	a->head = NULL;
	a->last = NULL;
}

struct qjs_doc {
	struct arena arena; /* owns every block, this struct's included */
	qjs_value *root;
};

/* ------------------------------------------------------------------------
 * UTF-8
 * ------------------------------------------------------------------------ */

/* Length of the well-formed UTF-8 sequence (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF) starting at s[i], reading no further
 * than s[end - 1]; 0 when there is none, with *ret_bad the offset of the
 * first byte that cannot belong to it (end when the sequence is cut). */
static size_t utf8_len(const unsigned char *s, size_t i, size_t end, size_t *ret_bad)
{
	unsigned char c = s[i];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0; /* overlong below U+0800 */
		else if (c == 0xed)
			hi = 0x9f; /* U+D800..U+DFFF are surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90; /* overlong below U+10000 */
		else if (c == 0xf4)
			hi = 0x8f; /* above U+10FFFF */
	} else {
		*ret_bad = i;
		return 0;
	}
	for (size_t k = 1; k < n; k++) {
		if (i + k >= end) {
			*ret_bad = end;
			return 0;
		}
		if (s[i + k] < lo || s[i + k] > hi) {
			*ret_bad = i + k;
			return 0;
		}
		lo = 0x80;
		hi = 0xbf;
	}
	return n;
}

static size_t utf8_put(char *out, unsigned long cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* ------------------------------------------------------------------------
 * Reader
 * ------------------------------------------------------------------------ */

struct pending {
	qjs_value v;
	size_t key_off; /* where the member's key starts, to report duplicates */
};

struct frame {
	size_t start;	 /* first pending entry that belongs to this container */
	const char *key; /* the key the container itself is stored under */
	size_t key_off;
	bool object;
};

struct parser {
	const char *text;
	size_t len;
	size_t pos;
	struct qjs_error *err;
	struct arena arena;
	struct pending *pend;
	size_t npend;
	size_t pend_cap;
	size_t *scratch; /* merge sort buffer */
	size_t scratch_cap;
	const char *key; /* key for the next value, when inside an object */
	size_t key_off;
	unsigned depth;
	struct frame frames[QJS_MAX_DEPTH];
};

static void locate(const char *text, size_t off, unsigned *ret_line, unsigned *ret_column)
{
	size_t line = 1, bol = 0;
	const char *p = text, *end = text + off;

	/* Only done once, on failure: cheaper than tracking lines while parsing. */
	while (p < end && (p = memchr(p, '\n', (size_t)(end - p)))) {
		line++;
		p++;
		bol = (size_t)(p - text);
	}
	*ret_line = line > UINT_MAX ? UINT_MAX : (unsigned)line;
	*ret_column = off - bol + 1 > UINT_MAX ? UINT_MAX : (unsigned)(off - bol + 1);
}

static int fail(struct parser *p, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, size_t off, const char *fmt, ...)
{
	va_list ap;

	if (!p->err)
		return -EINVAL;
	p->err->offset = off;
	locate(p->text, off, &p->err->line, &p->err->column);
	va_start(ap, fmt);
	vsnprintf(p->err->message, sizeof(p->err->message), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* The byte at `off` as a message shows it: 'x', 0xNN or end of input. */
static const char *describe(const struct parser *p, size_t off, char buf[16])
{
	if (off >= p->len)
		return "end of input";
	unsigned char c = (unsigned char)p->text[off];
	if (c >= 0x20 && c < 0x7f)
		snprintf(buf, 16, "'%c'", c);
	else
		snprintf(buf, 16, "byte 0x%02x", c);
	return buf;
}

static void skip_ws(struct parser *p)
{
	while (p->pos < p->len) {
		char c = p->text[p->pos];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		p->pos++;
	}
}

static int push(struct parser *p, const qjs_value *v, size_t key_off)
{
	if (p->npend == p->pend_cap) {
		size_t cap = p->pend_cap ? p->pend_cap * 2 : 64;
		struct pending *np;

		if (cap > SIZE_MAX / sizeof(*np))
			return -ENOMEM;
		np = realloc(p->pend, cap * sizeof(*np));
		if (!np)
			return -ENOMEM;
		p->pend = np;
		p->pend_cap = cap;
	}
	p->pend[p->npend].v = *v;
	p->pend[p->npend].key_off = key_off;
	p->npend++;
	return 0;
}

static int hex4(const unsigned char *s, size_t i, size_t end, unsigned long *ret)
{
	unsigned long v = 0;

	if (i > end || end - i < 4)
		return -1;
	for (size_t k = 0; k < 4; k++) {
		unsigned char c = s[i + k];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned long)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned long)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned long)(c - 'A' + 10);
		else
			return -1;
	}
	*ret = v;
	return 0;
}

/* Parses the string whose opening quote is at p->pos into the arena. */
static int parse_string(struct parser *p, const char **ret_str, size_t *ret_len)
{
	const unsigned char *s = (const unsigned char *)p->text;
	size_t start = p->pos, end, i, o = 0;
	char *out;

	/* Find the closing quote first: the decoded string is never longer
	 * than the raw one, which sizes its allocation. */
	for (end = start + 1; end < p->len; end++) {
		if (s[end] == '\\')
			end++;
		else if (s[end] == '"')
			break;
	}
	if (end > p->len)
		end = p->len;

	out = arena_alloc(&p->arena, end - start, 1);
	if (!out)
		return -ENOMEM;

	for (i = start + 1; i < end;) {
		unsigned char c = s[i];

		if (c == '\\') {
			unsigned long cp;

			if (i + 1 >= end)
				break; /* only when the input ends: unterminated */
			switch (s[i + 1]) {
			case '"':
			case '\\':
			case '/':
				out[o++] = (char)s[i + 1];
				i += 2;
				continue;
			case 'b':
				out[o++] = '\b';
				i += 2;
				continue;
			case 'f':
				out[o++] = '\f';
				i += 2;
				continue;
			case 'n':
				out[o++] = '\n';
				i += 2;
				continue;
			case 'r':
				out[o++] = '\r';
				i += 2;
				continue;
			case 't':
				out[o++] = '\t';
				i += 2;
				continue;
			case 'u':
				break;
			default: {
				char b[16];

				return fail(p, i, "invalid escape: backslash then %s",
					    describe(p, i + 1, b));
			}
			}
			if (hex4(s, i + 2, end, &cp) < 0)
				return fail(p, i, "invalid \\u escape");
			if (cp == 0)
				return fail(p, i, "\\u0000 is not allowed");
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return fail(p, i, "lone surrogate \\u%04lX", cp);
			if (cp >= 0xd800 && cp <= 0xdbff) {
				unsigned long lo;

				if (end - i < 12 || s[i + 6] != '\\' || s[i + 7] != 'u' ||
				    hex4(s, i + 8, end, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
					return fail(p, i, "lone surrogate \\u%04lX", cp);
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				i += 6;
			}
			o += utf8_put(out + o, cp);
			i += 6;
		} else if (c < 0x20) {
			return fail(p, i, "unescaped control character 0x%02x in string", c);
		} else if (c < 0x80) {
			out[o++] = (char)c;
			i++;
		} else {
			size_t bad, n = utf8_len(s, i, end, &bad);

			if (!n) {
				if (bad >= p->len)
					break;
				return fail(p, bad, "invalid UTF-8 byte 0x%02x", s[bad]);
			}
			memcpy(out + o, s + i, n);
			o += n;
			i += n;
		}
	}
	if (end >= p->len)
		return fail(p, start, "unterminated string");
	out[o] = '\0';
	arena_shrink(&p->arena, out, end - start, o + 1);
	p->pos = end + 1;
	*ret_str = out;
	*ret_len = o;
	return 0;
}

static bool is_digit(const struct parser *p, size_t i)
{
	return i < p->len && p->text[i] >= '0' && p->text[i] <= '9';
}

static int parse_number(struct parser *p, qjs_value *v)
{
	size_t start = p->pos, i = p->pos;
	char b[16];
	char *out;

	if (p->text[i] == '-')
		i++;
	if (!is_digit(p, i))
		return fail(p, i, "expected a digit, got %s", describe(p, i, b));
	if (p->text[i] == '0') {
		i++;
		if (is_digit(p, i))
			return fail(p, start, "leading zero in number");
	} else {
		while (is_digit(p, i))
			i++;
	}
	if (i < p->len && p->text[i] == '.') {
		i++;
		if (!is_digit(p, i))
			return fail(p, i, "expected a digit after '.', got %s", describe(p, i, b));
		while (is_digit(p, i))
			i++;
	}
	if (i < p->len && (p->text[i] == 'e' || p->text[i] == 'E')) {
		i++;
		if (i < p->len && (p->text[i] == '+' || p->text[i] == '-'))
			i++;
		if (!is_digit(p, i))
			return fail(p, i, "expected a digit in exponent, got %s",
				    describe(p, i, b));
		while (is_digit(p, i))
			i++;
	}

	out = arena_alloc(&p->arena, i - start + 1, 1);
	if (!out)
		return -ENOMEM;
	memcpy(out, p->text + start, i - start);
	out[i - start] = '\0';
	v->type = QJS_NUMBER;
	v->u.str = out;
	v->n = i - start;
	p->pos = i;
	return 0;
}

static int parse_scalar(struct parser *p)
{
	static const struct {
		const char *word;
		size_t len;
		unsigned char type;
	} literals[] = {
	    {"null", 4, QJS_NULL},
	    {"false", 5, QJS_FALSE},
	    {"true", 4, QJS_TRUE},
	};
	qjs_value v = {.key = p->key};
	size_t start = p->pos;
	char c = p->text[p->pos];
	char b[16];
	int r;

	if (c == '"') {
		v.type = QJS_STRING;
		r = parse_string(p, &v.u.str, &v.n);
	} else if (c == '-' || (c >= '0' && c <= '9')) {
		r = parse_number(p, &v);
	} else {
		for (size_t k = 0; k < sizeof(literals) / sizeof(literals[0]); k++) {
			if (c != literals[k].word[0])
				continue;
			if (p->len - start < literals[k].len ||
			    memcmp(p->text + start, literals[k].word, literals[k].len) != 0)
				return fail(p, start, "invalid literal, expected '%s'",
					    literals[k].word);
			v.type = literals[k].type;
			p->pos += literals[k].len;
			goto done;
		}
		return fail(p, start, "expected a value, got %s", describe(p, start, b));
	}
	if (r < 0)
		return r;
done:
	r = push(p, &v, p->key_off);
	p->key = NULL;
	return r;
}

/* Parses `"key" :` at p->pos, after skipping whitespace, into p->key. */
static int parse_key(struct parser *p)
{
	size_t len;
	char b[16];
	int r;

	skip_ws(p);
	if (p->pos >= p->len || p->text[p->pos] != '"')
		return fail(p, p->pos, "expected a string key, got %s", describe(p, p->pos, b));
	p->key_off = p->pos;
	r = parse_string(p, &p->key, &len);
	if (r < 0)
		return r;
	skip_ws(p);
	if (p->pos >= p->len || p->text[p->pos] != ':')
		return fail(p, p->pos, "expected ':' after key, got %s", describe(p, p->pos, b));
	p->pos++;
	return 0;
}

/* Sorts order[0..n) = 0..n-1 by the keys of kids, stably, so that members
 * with equal keys stay in document order. Bottom-up merge sort: O(n log n)
 * comparisons for any input, unlike a quicksort fed hostile keys. */
static void sort_members(const qjs_value *kids, size_t *order, size_t *tmp, size_t n)
{
	size_t *src = order, *dst = tmp;

	for (size_t i = 0; i < n; i++)
		order[i] = i;
	for (size_t width = 1; width < n; width *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * width) {
			size_t mid = lo + width < n ? lo + width : n;
			size_t hi = mid + width < n ? mid + width : n;
			size_t a = lo, b = mid, o = lo;

			while (a < mid && b < hi) {
				if (strcmp(kids[src[b]].key, kids[src[a]].key) < 0)
					dst[o++] = src[b++];
				else
					dst[o++] = src[a++];
			}
			while (a < mid)
				dst[o++] = src[a++];
			while (b < hi)
				dst[o++] = src[b++];
		}
		size_t *t = src;
		src = dst;
		dst = t;
	}
	if (src != order)
		memcpy(order, src, n * sizeof(*order));
}

/* Closes the innermost container: moves its pending values to the arena
 * and pushes the container itself. */
static int close_container(struct parser *p)
{
	struct frame *f = &p->frames[--p->depth];
	size_t n = p->npend - f->start;
	struct pending *src = n ? p->pend + f->start : NULL; /* pend is NULL until first used */
	qjs_value v = {.key = f->key, .n = n, .type = f->object ? QJS_OBJECT : QJS_ARRAY};

	if (n) {
		size_t each = sizeof(qjs_value) + (f->object ? sizeof(size_t) : 0);
		qjs_value *kids;

		if (n > SIZE_MAX / each)
			return -ENOMEM;
		kids = arena_alloc(&p->arena, n * each, alignof(qjs_value));
		if (!kids)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++)
			kids[i] = src[i].v;
		v.u.kids = kids;
	}
	if (f->object && n > 1) {
		size_t *order = (size_t *)(v.u.kids + n);
		size_t dup = SIZE_MAX;

		if (n > p->scratch_cap) {
			size_t *s = realloc(p->scratch, n * sizeof(*s));

			if (!s)
				return -ENOMEM;
			p->scratch = s;
			p->scratch_cap = n;
		}
		sort_members(v.u.kids, order, p->scratch, n);
		/* Equal keys are adjacent and in document order; the earliest
		 * repeat is the smallest index that follows an equal key. */
		for (size_t i = 1; i < n; i++) {
			if (order[i] < dup &&
			    strcmp(v.u.kids[order[i - 1]].key, v.u.kids[order[i]].key) == 0)
				dup = order[i];
		}
		if (dup != SIZE_MAX) {
			char b[40];

			return fail(p, src[dup].key_off, "duplicate key \"%s\"",
				    qstr_printable(b, sizeof(b) - 4, v.u.kids[dup].key, SIZE_MAX));
		}
	} else if (f->object && n == 1) {
		*(size_t *)(v.u.kids + 1) = 0;
	}
	p->npend = f->start;
	return push(p, &v, f->key_off);
}

static int parse_text(struct parser *p)
{
	bool want_value = true;
	char b[16];
	int r;

	for (;;) {
		skip_ws(p);
		if (want_value) {
			char c;

			if (p->pos >= p->len)
				return fail(p, p->pos, "unexpected end of input");
			c = p->text[p->pos];
			if (c != '[' && c != '{') {
				r = parse_scalar(p);
				if (r < 0)
					return r;
				want_value = false;
				continue;
			}
			if (p->depth == QJS_MAX_DEPTH)
				return fail(p, p->pos, "nesting deeper than %d", QJS_MAX_DEPTH);
			struct frame *f = &p->frames[p->depth++];
			f->start = p->npend;
			f->object = c == '{';
			f->key = p->key;
			f->key_off = p->key_off;
			p->key = NULL;
			p->pos++;
			skip_ws(p);
			if (p->pos < p->len && p->text[p->pos] == (f->object ? '}' : ']')) {
				p->pos++;
				r = close_container(p);
				if (r < 0)
					return r;
				want_value = false;
			} else if (f->object) {
				r = parse_key(p);
				if (r < 0)
					return r;
			}
			continue;
		}

		/* A value just ended. */
		if (p->depth == 0) {
			if (p->pos < p->len)
				return fail(p, p->pos, "unexpected %s after the document",
					    describe(p, p->pos, b));
			return 0;
		}
		bool object = p->frames[p->depth - 1].object;
		char close = object ? '}' : ']';
		size_t comma = p->pos;

		if (p->pos < p->len && p->text[p->pos] == close) {
			p->pos++;
			r = close_container(p);
			if (r < 0)
				return r;
			continue;
		}
		if (p->pos >= p->len || p->text[p->pos] != ',')
			return fail(p, p->pos, "expected ',' or '%c', got %s", close,
				    describe(p, p->pos, b));
		p->pos++;
		skip_ws(p);
		if (p->pos < p->len && (p->text[p->pos] == ']' || p->text[p->pos] == '}'))
			return fail(p, comma, "trailing comma");
		if (object) {
			r = parse_key(p);
			if (r < 0)
				return r;
		}
		want_value = true;
	}
}

int qjs_parse(const char *text, size_t len, qjs_doc **ret_doc, struct qjs_error *err)
{
	struct parser p = {.text = text, .len = len, .err = err};
	qjs_doc *doc;
	int r;

	if (!ret_doc || (!text && len))
		return -EINVAL;
	/* Size the first block for a typical document so that most need no
	 * second one; hostile ones grow geometrically. */
	p.arena.next_cap = len < ARENA_BLOCK_MAX / 2 ? len + len / 2 : ARENA_BLOCK_MAX;
	if (p.arena.next_cap < ARENA_BLOCK_MIN)
		p.arena.next_cap = ARENA_BLOCK_MIN;
	doc = arena_alloc(&p.arena, sizeof(*doc), alignof(qjs_doc));
	if (!doc) {
		r = -ENOMEM;
		goto fail;
	}
	r = parse_text(&p);
	if (r < 0)
		goto fail;
	doc->root = arena_alloc(&p.arena, sizeof(qjs_value), alignof(qjs_value));
	if (!doc->root) {
		r = -ENOMEM;
		goto fail;
	}
	*doc->root = p.pend[0].v;
	doc->arena = p.arena;
	free(p.pend);
	free(p.scratch);
	*ret_doc = doc;
	return 0;

fail:
	free(p.pend);
	free(p.scratch);
	arena_free(&p.arena);
	return r;
}

void qjs_free(qjs_doc *doc)
{
	if (!doc)
		return;
	/* The doc lives in one of the blocks: free from a copy. */
	struct arena a = doc->arena;
	arena_free(&a);
}

const qjs_value *qjs_root(const qjs_doc *doc)
{
	return doc ? doc->root : NULL;
}

/* Accessors accept NULL, so that lookups chain: qjs_get(qjs_get(o, "a"), "b"). */
enum qjs_type qjs_type(const qjs_value *v)
{
	return v ? (enum qjs_type)v->type : QJS_NULL;
}

size_t qjs_len(const qjs_value *v)
{
	return v && (v->type == QJS_ARRAY || v->type == QJS_OBJECT) ? v->n : 0;
}

const qjs_value *qjs_at(const qjs_value *v, size_t i)
{
	return i < qjs_len(v) ? &v->u.kids[i] : NULL;
}

const char *qjs_key_at(const qjs_value *v, size_t i)
{
	return v && v->type == QJS_OBJECT && i < v->n ? v->u.kids[i].key : NULL;
}

const qjs_value *qjs_get(const qjs_value *obj, const char *key)
{
	if (!obj || obj->type != QJS_OBJECT || !key || !obj->n)
		return NULL;
	const size_t *order = (const size_t *)(obj->u.kids + obj->n);
	size_t lo = 0, hi = obj->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const qjs_value *m = &obj->u.kids[order[mid]];
		int c = strcmp(key, m->key);

		if (c == 0)
			return m;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

const char *qjs_str(const qjs_value *v, size_t *ret_len)
{
	if (!v || v->type != QJS_STRING)
		return NULL;
	if (ret_len)
		*ret_len = v->n;
	return v->u.str;
}

int qjs_u64(const qjs_value *v, uint64_t *ret)
{
	uint64_t x = 0;

	if (!v || v->type != QJS_NUMBER)
		return -EINVAL;
	/* Every byte a digit first: "1e999" is -EINVAL, not -ERANGE. */
	for (size_t i = 0; i < v->n; i++)
		if (v->u.str[i] < '0' || v->u.str[i] > '9')
			return -EINVAL;
	for (size_t i = 0; i < v->n; i++) {
		unsigned d = (unsigned)(v->u.str[i] - '0');

		if (x > (UINT64_MAX - d) / 10)
			return -ERANGE;
		x = x * 10 + d;
	}
	*ret = x;
	return 0;
}

/* ------------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------------ */

/* Makes room for `extra` bytes and the NUL; false once b->err is set. */
static bool reserve(struct qjs_buf *b, size_t extra)
{
	size_t need, cap;
	char *d;

	if (b->err)
		return false;
	if (extra > SIZE_MAX - 1 - b->len) {
		b->err = -ENOMEM;
		return false;
	}
	need = b->len + extra + 1;
	if (need <= b->cap)
		return true;
	cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	d = realloc(b->data, cap);
	if (!d) {
		b->err = -ENOMEM;
		return false;
	}
	b->data = d;
	b->cap = cap;
	return true;
}

void qjs_put_raw(struct qjs_buf *b, const void *data, size_t len)
{
	if (!reserve(b, len))
		return;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void qjs_put_cstr(struct qjs_buf *b, const char *s)
{
	qjs_put_raw(b, s, strlen(s));
}

void qjs_put_str(struct qjs_buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	/* Escaped output goes through a small buffer, not a 6x reservation. */
	char out[256];
	size_t o = 0;

	out[o++] = '"';
	for (size_t i = 0; i < len;) {
		unsigned char c = u[i];
		size_t n = 1, bad;

		if (o > sizeof(out) - 8) {
			qjs_put_raw(b, out, o);
			o = 0;
		}
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20) {
			const char *short_esc = c == '\n'   ? "n"
						: c == '\t' ? "t"
						: c == '\r' ? "r"
						: c == '\b' ? "b"
						: c == '\f' ? "f"
							    : NULL;

			out[o++] = '\\';
			if (short_esc) {
				out[o++] = *short_esc;
			} else {
				memcpy(out + o, "u00", 3);
				o += 3;
				out[o++] = hex[c >> 4];
				out[o++] = hex[c & 0xf];
			}
		} else if (c < 0x80) {
			out[o++] = (char)c;
		} else if ((n = utf8_len(u, i, len, &bad)) != 0) {
			memcpy(out + o, u + i, n);
			o += n;
		} else {
			n = 1;
			memcpy(out + o, "\\u00", 4);
			o += 4;
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 0xf];
		}
		i += n;
	}
	out[o++] = '"';
	qjs_put_raw(b, out, o);
}

void qjs_put_u64(struct qjs_buf *b, uint64_t v)
{
	char digits[20];
	size_t i = sizeof(digits);

	do {
		digits[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	qjs_put_raw(b, digits + i, sizeof(digits) - i);
}

void qjs_put_fmt(struct qjs_buf *b, const char *fmt, ...)
{
	va_list ap, again;
	size_t room;
	int n;

	if (b->err)
		return;
	room = b->cap > b->len ? b->cap - b->len : 0;
	va_start(ap, fmt);
	va_copy(again, ap);
	n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n >= room && reserve(b, (size_t)n))
		n = vsnprintf(b->data + b->len, (size_t)n + 1, fmt, again);
	va_end(again);
	if (n < 0 && !b->err)
		b->err = errno ? -errno : -EINVAL; /* EOVERFLOW: over INT_MAX bytes */
	if (!b->err && n >= 0)
		b->len += (size_t)n;
	else if (b->data)
		b->data[b->len] = '\0'; /* undo a truncated first attempt */
}
