/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The wire protocol's encoder and decoder (docs/PROTOCOL.md).
 *
 * One walker per message type serves both directions: encoding reads the
 * struct and writes bytes, decoding reads bytes and fills the struct, and
 * the same checks run on the same fields either way. So whatever encodes
 * decodes, whatever decodes encodes back to the very same bytes, and a
 * check written for one side cannot be forgotten on the other.
 *
 * Every integer is written byte by byte, little-endian, whatever the host's
 * byte order and alignment: a message is never a struct image.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "byteorder.h"
#include "proto.h"

static const char *const type_names[QP_TYPE_LAST] = {
    [QP_HELLO] = "HELLO",
    [QP_WELCOME] = "WELCOME",
    [QP_ERROR] = "ERROR",
    [QP_BYE] = "BYE",
    [QP_PING] = "PING",
    [QP_PONG] = "PONG",
    [QP_LIST] = "LIST",
    [QP_LIST_REPLY] = "LIST_REPLY",
    [QP_MANIFEST] = "MANIFEST",
    [QP_MANIFEST_REPLY] = "MANIFEST_REPLY",
    [QP_STAT] = "STAT",
    [QP_STAT_REPLY] = "STAT_REPLY",
    [QP_STREAM_OPEN] = "STREAM_OPEN",
    [QP_STREAM_READY] = "STREAM_READY",
    [QP_SLOTS] = "SLOTS",
    [QP_CREDIT] = "CREDIT",
    [QP_STREAM_END] = "STREAM_END",
    [QP_STREAM_CLOSE] = "STREAM_CLOSE",
    [QP_OK] = "OK",
    [QP_PULL_OPEN] = "PULL_OPEN",
    [QP_XFER_READY] = "XFER_READY",
    [QP_READ] = "READ",
    [QP_PUSH_OPEN] = "PUSH_OPEN",
    [QP_PUT] = "PUT",
    [QP_PUSH_STATUS] = "PUSH_STATUS",
    [QP_PUSH_HAVE] = "PUSH_HAVE",
    [QP_COMMIT] = "COMMIT",
    [QP_XFER_CLOSE] = "XFER_CLOSE",
};

const char *qp_type_name(unsigned type)
{
	if (type == 0 || type >= QP_TYPE_LAST)
		return "?";
	return type_names[type];
}

/* Where a walker stands in a message, in either direction. */
struct cur {
	const uint8_t *in; /* decoding: the message */
	uint8_t *out;	   /* encoding: the caller's buffer */
	size_t len;	   /* bytes of the message, or of room */
	size_t off;
	bool enc;
	int r;		  /* the first error; after it nothing moves */
	const char *type; /* the message's name, for err */
	const char *elem; /* inside an array: its name and the entry's index */
	uint32_t idx;
	char *err;
	size_t err_len;
};

/* Records the first error, and says where in err: "TYPE: field: why". */
__attribute__((format(printf, 4, 5))) static void fail(struct cur *c, int r, const char *field,
						       const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	if (c->r)
		return;
	c->r = r;
	if (!c->err || !c->err_len)
		return;
	if (c->elem)
		n = snprintf(c->err, c->err_len, "%s: %s[%" PRIu32 "].%s: ", c->type, c->elem,
			     c->idx, field);
	else if (field)
		n = snprintf(c->err, c->err_len, "%s: %s: ", c->type, field);
	else
		n = snprintf(c->err, c->err_len, "%s: ", c->type);
	if (n < 0 || (size_t)n >= c->err_len)
		return;
	va_start(ap, fmt);
	vsnprintf(c->err + n, c->err_len - (size_t)n, fmt, ap);
	va_end(ap);
}

/* A field out of its bounds: the caller's mistake when encoding, the
 * peer's when decoding. */
#define BAD(c, field, ...) fail((c), (c)->enc ? -EINVAL : -EBADMSG, (field), __VA_ARGS__)

/* Checks cond only while nothing has failed: after a short read, the
 * fields it would look at hold nothing meaningful. */
#define NEED(c, cond, field, ...)                                                                  \
	do {                                                                                       \
		if (!(c)->r && !(cond))                                                            \
			BAD((c), (field), __VA_ARGS__);                                            \
	} while (0)

/* Whether n more bytes fit (encoding) or are there (decoding). */
static bool room(struct cur *c, size_t n, const char *field)
{
	if (c->r)
		return false;
	if (n <= c->len - c->off)
		return true;
	if (c->enc)
		fail(c, -EMSGSIZE, field, "no room for %zu more bytes", n);
	else
		fail(c, -EBADMSG, field, "the message ends %zu bytes short", n - (c->len - c->off));
	return false;
}

static void w_u8(struct cur *c, uint8_t *v, const char *field)
{
	if (!room(c, 1, field))
		return;
	if (c->enc)
		c->out[c->off] = *v;
	else
		*v = c->in[c->off];
	c->off += 1;
}

static void w_u16(struct cur *c, uint16_t *v, const char *field)
{
	if (!room(c, 2, field))
		return;
	if (c->enc)
		qput16(c->out + c->off, *v);
	else
		*v = qle16(c->in + c->off);
	c->off += 2;
}

static void w_u32(struct cur *c, uint32_t *v, const char *field)
{
	if (!room(c, 4, field))
		return;
	if (c->enc)
		qput32(c->out + c->off, *v);
	else
		*v = qle32(c->in + c->off);
	c->off += 4;
}

static void w_u64(struct cur *c, uint64_t *v, const char *field)
{
	if (!room(c, 8, field))
		return;
	if (c->enc)
		qput64(c->out + c->off, *v);
	else
		*v = qle64(c->in + c->off);
	c->off += 8;
}

/* Two's complement in a u32, without relying on the implementation's
 * conversion of out-of-range values. */
static void w_i32(struct cur *c, int32_t *v, const char *field)
{
	uint32_t u = 0;

	if (c->enc)
		u = (uint32_t)*v;
	w_u32(c, &u, field);
	if (!c->enc && !c->r)
		*v = u <= INT32_MAX ? (int32_t)u : (int32_t)(u - 0x80000000u) + INT32_MIN;
}

/* What a string field may hold beyond "no NUL, fits its array". */
enum str_rule {
	S_ANY,	   /* any bytes, possibly none */
	S_DATASET, /* a dataset name (FORMAT.md): 1+ bytes, no '/', no control
		      character, not "." or ".." */
	S_ZONE,	   /* a residency zone label: 1+ of A-Z a-z 0-9 . _ -, not "."
		      or ".." */
	S_PATH,	   /* a file of a dataset: relative, no empty, "." or ".."
		      component */
};

static bool is_dots(const char *s, size_t n)
{
	return (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
}

/* Returns why s breaks the rule, or NULL. */
static const char *str_problem(enum str_rule rule, const char *s, size_t n)
{
	size_t i, start;

	if (rule == S_ANY)
		return NULL;
	if (n == 0)
		return "is empty";
	switch (rule) {
	case S_DATASET:
		if (is_dots(s, n))
			return "is \".\" or \"..\"";
		for (i = 0; i < n; i++) {
			unsigned char ch = (unsigned char)s[i];
			if (ch == '/')
				return "holds a '/'";
			if (ch < 0x20 || ch == 0x7f)
				return "holds a control character";
		}
		return NULL;
	case S_ZONE:
		if (is_dots(s, n))
			return "is \".\" or \"..\"";
		for (i = 0; i < n; i++) {
			char ch = s[i];
			if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
				return "holds a character other than A-Z a-z 0-9 . _ -";
		}
		return NULL;
	case S_PATH:
		if (s[0] == '/')
			return "is an absolute path";
		/* Each component, including the last, between slashes. */
		for (start = 0, i = 0; i <= n; i++) {
			if (i < n && s[i] != '/')
				continue;
			if (i == start)
				return "has an empty component";
			if (is_dots(s + start, i - start))
				return "has a \".\" or \"..\" component";
			start = i + 1;
		}
		return NULL;
	case S_ANY:
		break;
	}
	return NULL;
}

/* A string: u16 length, then its bytes. cap is the size of the struct's
 * array, NUL included, so at most cap - 1 bytes travel. */
static void w_str(struct cur *c, char *s, size_t cap, enum str_rule rule, const char *field)
{
	size_t max = cap - 1, n;
	uint16_t n16 = 0;
	const char *why;

	if (c->r)
		return;
	if (c->enc) {
		n = strnlen(s, cap);
		if (n > max) {
			BAD(c, field, "not NUL-terminated within %zu bytes", cap);
			return;
		}
		n16 = (uint16_t)n;
		w_u16(c, &n16, field);
		if (!room(c, n, field))
			return;
		memcpy(c->out + c->off, s, n);
	} else {
		w_u16(c, &n16, field);
		if (c->r)
			return;
		n = n16;
		if (n > max) {
			BAD(c, field, "%zu bytes is over %zu", n, max);
			return;
		}
		if (!room(c, n, field))
			return;
		if (memchr(c->in + c->off, 0, n)) {
			BAD(c, field, "holds a NUL byte");
			return;
		}
		memcpy(s, c->in + c->off, n);
		s[n] = '\0';
	}
	c->off += n;
	why = str_problem(rule, s, n);
	if (why)
		BAD(c, field, "%s", why);
}

/* A blob: u32 length, then its bytes; decoded in place. max 0 means
 * "whatever fits in the message". */
static void w_blob(struct cur *c, struct qp_blob *b, size_t min, size_t max, const char *field)
{
	uint32_t n32 = 0;
	size_t n;

	if (c->r)
		return;
	if (c->enc) {
		n = b->len;
		if (max && n > max) {
			BAD(c, field, "%zu bytes is over %zu", n, max);
			return;
		}
		if (n < min) {
			BAD(c, field, "is empty");
			return;
		}
		if (n && !b->p) {
			BAD(c, field, "%zu bytes at NULL", n);
			return;
		}
		/* Length and bytes checked before anything is written, so
		 * a length too big for the u32 never gets truncated (nor
		 * 4 + n wraps). */
		if (!room(c, 4, field))
			return;
		if (n > c->len - c->off - 4) {
			fail(c, -EMSGSIZE, field, "no room for %zu more bytes", n);
			return;
		}
		n32 = (uint32_t)n;
		w_u32(c, &n32, field);
		if (n) /* an empty blob may have no pointer at all */
			memcpy(c->out + c->off, b->p, n);
	} else {
		w_u32(c, &n32, field);
		if (c->r)
			return;
		n = n32;
		if (max && n > max) {
			BAD(c, field, "%zu bytes is over %zu", n, max);
			return;
		}
		if (n < min) {
			BAD(c, field, "is empty");
			return;
		}
		if (!room(c, n, field))
			return;
		b->p = c->in + c->off;
		b->len = n;
	}
	c->off += n;
}

/* The count of an array, at most max. */
static void w_count(struct cur *c, uint32_t *n, uint32_t max, const char *field)
{
	w_u32(c, n, field);
	NEED(c, *n <= max, field, "%" PRIu32 " is over %" PRIu32, *n, max);
}

/* The tag names a stream or transfer in bits 31..16 of the CQ data. */
static void w_tag(struct cur *c, uint32_t *tag)
{
	w_u32(c, tag, "tag");
	NEED(c, *tag <= 0xffffu, "tag", "%" PRIu32 " does not fit 16 bits", *tag);
}

/* Record kinds and classifications are 1, 2 or 3 (quai.h's enums). */
static void w_enum3(struct cur *c, uint8_t *v, const char *field)
{
	w_u8(c, v, field);
	NEED(c, *v >= 1 && *v <= 3, field, "%u is not 1, 2 or 3", (unsigned)*v);
}

/* HELLO's first two fields, the same in every version (docs/PROTOCOL.md,
 * "Versions"): flags, and the address a refusal goes to. */
static void walk_hello_frozen(struct cur *c, struct qp_hello *x)
{
	w_u32(c, &x->flags, "flags");
	/* Without its address the server cannot answer. */
	w_blob(c, &x->addr, 1, QP_ADDR_MAX, "addr");
}

static void walk_hello(struct cur *c, struct qp_hello *x)
{
	walk_hello_frozen(c, x);
	NEED(c, x->flags == 0, "flags", "0x%" PRIx32 " set, none are defined", x->flags);
	w_str(c, x->host, sizeof(x->host), S_ANY, "host");
	w_u32(c, &x->pid, "pid");
	w_str(c, x->auth_kind, sizeof(x->auth_kind), S_ANY, "auth_kind");
	w_blob(c, &x->auth, 0, QP_AUTH_MAX, "auth");
	NEED(c, x->auth.len == 0 || x->auth_kind[0], "auth",
	     "%zu bytes of credential without an auth_kind", x->auth.len);
}

static void walk_welcome(struct cur *c, struct qp_welcome *x)
{
	w_u64(c, &x->session, "session");
	w_str(c, x->server, sizeof(x->server), S_ANY, "server");
	w_str(c, x->zone, sizeof(x->zone), S_ZONE, "zone");
	w_u32(c, &x->max_streams, "max_streams");
	w_u64(c, &x->client_memory, "client_memory");
}

static void walk_error(struct cur *c, struct qp_error *x)
{
	w_i32(c, &x->code, "code");
	NEED(c, x->code > 0, "code", "%" PRId32 " is not positive", x->code);
	w_str(c, x->message, sizeof(x->message), S_ANY, "message");
}

static void walk_list_reply(struct cur *c, struct qp_list_reply *x)
{
	w_u32(c, &x->total, "total");
	w_u32(c, &x->start, "start");
	w_count(c, &x->n, QP_LIST_MAX, "n");
	/* No entries is the answer to a LIST past the end, whatever start. */
	NEED(c, x->n == 0 || (uint64_t)x->start + x->n <= x->total, "n",
	     "start %" PRIu32 " + n %" PRIu32 " is past total %" PRIu32, x->start, x->n, x->total);
	for (uint32_t i = 0; i < x->n && !c->r; i++) {
		struct qp_list_entry *e = &x->e[i];

		c->elem = "e";
		c->idx = i;
		w_str(c, e->name, sizeof(e->name), S_DATASET, "name");
		w_enum3(c, &e->kind, "kind");
		w_enum3(c, &e->classification, "classification");
		w_str(c, e->zone, sizeof(e->zone), S_ZONE, "zone");
		w_u64(c, &e->records, "records");
		w_u64(c, &e->raw_bytes, "raw_bytes");
		w_u64(c, &e->compressed_bytes, "compressed_bytes");
		w_u32(c, &e->shards, "shards");
	}
	c->elem = NULL;
}

static void walk_manifest(struct cur *c, struct qp_manifest *x)
{
	w_str(c, x->name, sizeof(x->name), S_DATASET, "name");
	w_u64(c, &x->offset, "offset");
}

static void walk_manifest_reply(struct cur *c, struct qp_manifest_reply *x)
{
	w_u64(c, &x->total, "total");
	w_u64(c, &x->offset, "offset");
	w_blob(c, &x->data, 0, 0, "data");
	NEED(c, x->offset <= x->total && x->data.len <= x->total - x->offset, "data",
	     "offset %" PRIu64 " + %zu bytes is past total %" PRIu64, x->offset, x->data.len,
	     x->total);
}

static void walk_stream_open(struct cur *c, struct qp_stream_open *x)
{
	w_tag(c, &x->tag);
	w_str(c, x->name, sizeof(x->name), S_DATASET, "name");
	w_u32(c, &x->rank, "rank");
	w_u32(c, &x->world, "world");
	NEED(c, x->world >= 1, "world", "is 0");
	NEED(c, x->rank < x->world, "rank", "%" PRIu32 " is not below world %" PRIu32, x->rank,
	     x->world);
	w_u64(c, &x->seed, "seed");
	w_u64(c, &x->epoch, "epoch");
	w_u32(c, &x->partitions, "partitions");
	w_u32(c, &x->window, "window");
	w_u32(c, &x->batch_records, "batch_records");
	w_u64(c, &x->batch_bytes, "batch_bytes");
	w_u64(c, &x->memory_budget, "memory_budget");
	w_u32(c, &x->prefetch_batches, "prefetch_batches");
	w_u8(c, &x->tail, "tail");
	NEED(c, x->tail <= 2, "tail", "%u is not 0 (drop), 1 (keep) or 2 (pad)", (unsigned)x->tail);
	w_u32(c, &x->flags, "flags");
	w_blob(c, &x->state, 0, QP_STATE_MAX, "state");
}

/* slots x slot_bytes bytes must be addressable: the server computes each
 * slot's address from them. */
static bool ring_fits(uint64_t slots, uint64_t slot_bytes, uint64_t addr)
{
	uint64_t total;

	if (__builtin_mul_overflow(slots, slot_bytes, &total))
		return false;
	return total == 0 || total - 1 <= UINT64_MAX - addr;
}

static void walk_stream_ready(struct cur *c, struct qp_stream_ready *x)
{
	w_u64(c, &x->stream, "stream");
	w_u64(c, &x->slot_bytes, "slot_bytes");
	NEED(c, x->slot_bytes > 0, "slot_bytes", "is 0");
	w_u32(c, &x->slots, "slots");
	NEED(c, x->slots >= 1 && x->slots <= QP_SLOTS_MAX, "slots",
	     "%" PRIu32 " is not within 1..%u", x->slots, QP_SLOTS_MAX);
	NEED(c, ring_fits(x->slots, x->slot_bytes, 0), "slots",
	     "%" PRIu32 " slots of %" PRIu64 " bytes overflow 64 bits", x->slots, x->slot_bytes);
	w_u64(c, &x->records_total, "records_total");
	w_u64(c, &x->batches_total, "batches_total");
	w_u32(c, &x->partitions, "partitions");
	w_u64(c, &x->working_set, "working_set");
	w_u64(c, &x->budget, "budget");
	w_enum3(c, &x->kind, "kind");
	w_enum3(c, &x->classification, "classification");
	w_str(c, x->zone, sizeof(x->zone), S_ZONE, "zone");
	w_blob(c, &x->state, 0, QP_STATE_MAX, "state");
}

static void walk_slots(struct cur *c, struct qp_slots *x)
{
	w_u64(c, &x->id, "id");
	w_u32(c, &x->nslots, "nslots");
	NEED(c, x->nslots >= 1 && x->nslots <= QP_SLOTS_MAX, "nslots",
	     "%" PRIu32 " is not within 1..%u", x->nslots, QP_SLOTS_MAX);
	w_u64(c, &x->slot_bytes, "slot_bytes");
	NEED(c, x->slot_bytes > 0, "slot_bytes", "is 0");
	w_u64(c, &x->addr, "addr");
	NEED(c, ring_fits(x->nslots, x->slot_bytes, x->addr), "addr",
	     "0x%" PRIx64 " + %" PRIu32 " slots of %" PRIu64 " bytes overflows 64 bits", x->addr,
	     x->nslots, x->slot_bytes);
	w_u64(c, &x->key, "key");
}

static void walk_credit(struct cur *c, struct qp_credit *x)
{
	w_u64(c, &x->stream, "stream");
	w_count(c, &x->n, QP_CREDIT_MAX, "n");
	for (uint32_t i = 0; i < x->n && !c->r; i++) {
		c->elem = "slots";
		c->idx = i;
		w_u32(c, &x->slots[i], "slot");
		NEED(c, x->slots[i] < QP_SLOTS_MAX, "slot", "%" PRIu32 " is not below %u",
		     x->slots[i], QP_SLOTS_MAX);
	}
	c->elem = NULL;
}

static void walk_stream_end(struct cur *c, struct qp_stream_end *x)
{
	w_u64(c, &x->stream, "stream");
	w_u64(c, &x->batches, "batches");
	w_i32(c, &x->status, "status");
	NEED(c, x->status >= 0, "status", "%" PRId32 " is negative", x->status);
	w_str(c, x->message, sizeof(x->message), S_ANY, "message");
}

static void walk_pull_open(struct cur *c, struct qp_pull_open *x)
{
	w_tag(c, &x->tag);
	w_str(c, x->name, sizeof(x->name), S_DATASET, "name");
}

static void walk_xfer_ready(struct cur *c, struct qp_xfer_ready *x)
{
	w_u64(c, &x->xfer, "xfer");
	w_u32(c, &x->max_chunk, "max_chunk");
	NEED(c, x->max_chunk >= 1, "max_chunk", "is 0");
	w_u32(c, &x->max_inflight, "max_inflight");
	NEED(c, x->max_inflight >= 1, "max_inflight", "is 0");
}

static void walk_read(struct cur *c, struct qp_read *x)
{
	w_u64(c, &x->xfer, "xfer");
	w_str(c, x->file, sizeof(x->file), S_PATH, "file");
	w_u64(c, &x->offset, "offset");
	w_u32(c, &x->len, "len");
	NEED(c, x->len >= 1, "len", "is 0");
	NEED(c, x->offset <= UINT64_MAX - x->len, "len",
	     "offset %" PRIu64 " + %" PRIu32 " overflows 64 bits", x->offset, x->len);
	w_u32(c, &x->slot, "slot");
	NEED(c, x->slot < QP_SLOTS_MAX, "slot", "%" PRIu32 " is not below %u", x->slot,
	     QP_SLOTS_MAX);
}

static void walk_push_open(struct cur *c, struct qp_push_open *x)
{
	w_tag(c, &x->tag);
	w_str(c, x->name, sizeof(x->name), S_DATASET, "name");
	w_u64(c, &x->manifest_len, "manifest_len");
	NEED(c, x->manifest_len >= 1, "manifest_len", "is 0");
	w_enum3(c, &x->classification, "classification");
	w_str(c, x->zone, sizeof(x->zone), S_ZONE, "zone");
}

static void walk_put(struct cur *c, struct qp_put *x)
{
	w_u64(c, &x->xfer, "xfer");
	w_str(c, x->file, sizeof(x->file), S_PATH, "file");
	w_u64(c, &x->offset, "offset");
	w_u32(c, &x->len, "len");
	NEED(c, x->len >= 1, "len", "is 0");
	NEED(c, x->offset <= UINT64_MAX - x->len, "len",
	     "offset %" PRIu64 " + %" PRIu32 " overflows 64 bits", x->offset, x->len);
	w_u64(c, &x->addr, "addr");
	NEED(c, x->addr <= UINT64_MAX - x->len, "addr",
	     "0x%" PRIx64 " + %" PRIu32 " overflows 64 bits", x->addr, x->len);
	w_u64(c, &x->key, "key");
}

static void walk_push_have(struct cur *c, struct qp_push_have *x)
{
	w_count(c, &x->n, QP_HAVE_MAX, "n");
	for (uint32_t i = 0; i < x->n && !c->r; i++) {
		struct qp_have_entry *e = &x->e[i];

		c->elem = "e";
		c->idx = i;
		w_str(c, e->file, sizeof(e->file), S_PATH, "file");
		w_u64(c, &e->bytes, "bytes");
	}
	c->elem = NULL;
}

static void walk(struct cur *c, struct qp_msg *m)
{
	switch ((enum qp_type)m->h.type) {
	case QP_HELLO:
		walk_hello(c, &m->u.hello);
		break;
	case QP_WELCOME:
		walk_welcome(c, &m->u.welcome);
		break;
	case QP_ERROR:
		walk_error(c, &m->u.error);
		break;
	case QP_PING:
	case QP_PONG:
		w_u64(c, &m->u.ping.stamp, "stamp");
		break;
	case QP_LIST:
		w_u32(c, &m->u.list.start, "start");
		break;
	case QP_LIST_REPLY:
		walk_list_reply(c, &m->u.list_reply);
		break;
	case QP_MANIFEST:
		walk_manifest(c, &m->u.manifest);
		break;
	case QP_MANIFEST_REPLY:
		walk_manifest_reply(c, &m->u.manifest_reply);
		break;
	case QP_STAT_REPLY:
		w_blob(c, &m->u.stat_reply.json, 0, 0, "json");
		break;
	case QP_STREAM_OPEN:
		walk_stream_open(c, &m->u.stream_open);
		break;
	case QP_STREAM_READY:
		walk_stream_ready(c, &m->u.stream_ready);
		break;
	case QP_SLOTS:
		walk_slots(c, &m->u.slots);
		break;
	case QP_CREDIT:
		walk_credit(c, &m->u.credit);
		break;
	case QP_STREAM_END:
		walk_stream_end(c, &m->u.stream_end);
		break;
	case QP_STREAM_CLOSE:
	case QP_PUSH_STATUS:
	case QP_COMMIT:
	case QP_XFER_CLOSE:
		w_u64(c, &m->u.id.id, "id");
		break;
	case QP_PULL_OPEN:
		walk_pull_open(c, &m->u.pull_open);
		break;
	case QP_XFER_READY:
		walk_xfer_ready(c, &m->u.xfer_ready);
		break;
	case QP_READ:
		walk_read(c, &m->u.read);
		break;
	case QP_PUSH_OPEN:
		walk_push_open(c, &m->u.push_open);
		break;
	case QP_PUT:
		walk_put(c, &m->u.put);
		break;
	case QP_PUSH_HAVE:
		walk_push_have(c, &m->u.push_have);
		break;
	case QP_BYE:
	case QP_STAT:
	case QP_OK:
	case QP_TYPE_LAST:
		break;
	}
}

int qp_encode(const struct qp_msg *m, void *buf, size_t cap)
{
	struct cur c = {
	    .out = buf,
	    .len = cap < QP_MSG_MAX ? cap : QP_MSG_MAX,
	    .off = QP_HEADER_SIZE,
	    .enc = true,
	};

	if (!m || (!buf && cap))
		return -EINVAL;
	if (m->h.type == 0 || m->h.type >= QP_TYPE_LAST)
		return -EINVAL;
	c.type = type_names[m->h.type];
	if (c.len < QP_HEADER_SIZE)
		return -EMSGSIZE;
	/* Encoding, the walkers only read the struct. */
	walk(&c, (struct qp_msg *)m);
	if (c.r)
		return c.r;
	qput32(c.out, QP_MAGIC);
	qput16(c.out + 4, QP_VERSION);
	qput16(c.out + 6, m->h.type);
	qput32(c.out + 8, (uint32_t)(c.off - QP_HEADER_SIZE));
	qput32(c.out + 12, m->h.session);
	qput64(c.out + 16, m->h.req);
	return (int)c.off;
}

int qp_decode(const void *buf, size_t len, struct qp_msg *m, char *err, size_t err_len)
{
	const uint8_t *p = buf;
	struct cur c = {
	    .in = buf,
	    .len = len,
	    .off = QP_HEADER_SIZE,
	    .type = "message",
	    .err = err,
	    .err_len = err_len,
	};
	uint32_t magic;

	if (err && err_len)
		err[0] = '\0';
	if (!m || (!buf && len))
		return -EINVAL;
	if (len < QP_HEADER_SIZE) {
		fail(&c, -EBADMSG, "header", "%zu bytes is shorter than the %u-byte header", len,
		     QP_HEADER_SIZE);
		return c.r;
	}
	magic = qle32(p);
	if (magic != QP_MAGIC) {
		fail(&c, -EBADMSG, "magic", "0x%08" PRIx32 " is not 0x%08x (\"QUAI\")", magic,
		     QP_MAGIC);
		return c.r;
	}
	m->h.magic = magic;
	m->h.version = qle16(p + 4);
	m->h.type = qle16(p + 6);
	m->h.length = qle32(p + 8);
	m->h.session = qle32(p + 12);
	m->h.req = qle64(p + 16);
	c.type = qp_type_name(m->h.type);
	if (!strcmp(c.type, "?"))
		c.type = "message";
	/* First, before anything that another version may define otherwise:
	 * only the header's layout is common to all versions. */
	if (m->h.version != QP_VERSION) {
		fail(&c, -EPROTONOSUPPORT, "version", "%u, this build speaks %u",
		     (unsigned)m->h.version, QP_VERSION);
		return c.r;
	}
	if (m->h.type == 0 || m->h.type >= QP_TYPE_LAST) {
		fail(&c, -EBADMSG, "type", "%u is unknown", (unsigned)m->h.type);
		return c.r;
	}
	if (len > QP_MSG_MAX) {
		fail(&c, -EBADMSG, "length", "%zu bytes is over the %u-byte limit", len,
		     QP_MSG_MAX);
		return c.r;
	}
	if (m->h.length != len - QP_HEADER_SIZE) {
		fail(&c, -EBADMSG, "length", "the header says %" PRIu32 " bytes, %zu follow",
		     m->h.length, len - QP_HEADER_SIZE);
		return c.r;
	}
	walk(&c, m);
	if (!c.r && c.off != len)
		fail(&c, -EBADMSG, NULL, "%zu byte%s after the last field", len - c.off,
		     len - c.off == 1 ? "" : "s");
	return c.r;
}

int qp_hello_addr(const void *buf, size_t len, struct qp_blob *ret_addr)
{
	struct cur c = {.in = buf, .len = len, .off = QP_HEADER_SIZE, .type = "HELLO"};
	struct qp_hello x;

	if (!buf || len < QP_HEADER_SIZE || qle32(buf) != QP_MAGIC ||
	    qle16((const uint8_t *)buf + 6) != QP_HELLO)
		return -EBADMSG;
	/* Whatever the version and the rest: only the frozen prefix is read. */
	walk_hello_frozen(&c, &x);
	if (c.r)
		return c.r;
	*ret_addr = x.addr;
	return 0;
}

/* 192 + 8 count + 8 (count + 1), rounded up to 64 so that the records
 * start cache-line aligned. Saturates at UINT64_MAX, which no slot holds. */
uint64_t qp_slot_data_off(uint64_t count)
{
	if (count > (UINT64_MAX - QP_SLOT_HEADER_SIZE - 8 - 63) / 16)
		return UINT64_MAX;
	return (QP_SLOT_HEADER_SIZE + 16 * count + 8 + 63) & ~(uint64_t)63;
}

uint64_t qp_slot_need(uint64_t count, uint64_t bytes)
{
	uint64_t off = qp_slot_data_off(count);

	if (off == UINT64_MAX || bytes > UINT64_MAX - off)
		return UINT64_MAX;
	return off + bytes;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* n bytes that hold nothing: written as zeros, refused unless zero. */
static void w_zero(struct cur *c, size_t n, const char *field)
{
	if (!room(c, n, field))
		return;
	if (c->enc) {
		memset(c->out + c->off, 0, n);
	} else if (!all_zero(c->in + c->off, n)) {
		BAD(c, field, "holds a byte that is not 0");
		return;
	}
	c->off += n;
}

/* The slot header's state: len bytes (checked <= QP_STATE_MAX by the
 * caller), then zeros to QP_STATE_MAX. */
static void w_state(struct cur *c, uint8_t *state, uint32_t len, const char *field)
{
	if (!room(c, QP_STATE_MAX, field))
		return;
	if (c->enc)
		memcpy(c->out + c->off, state, len);
	else
		memcpy(state, c->in + c->off, len);
	c->off += len;
	w_zero(c, QP_STATE_MAX - len, field);
}

/* The slot header (docs/PROTOCOL.md, "The slot header"): 192 bytes. */
static void walk_slot_header(struct cur *c, struct qp_slot_header *h)
{
	w_u32(c, &h->magic, "magic");
	NEED(c, h->magic == QP_SLOT_MAGIC, "magic", "0x%08" PRIx32 " is not 0x%08x (\"QBAT\")",
	     h->magic, QP_SLOT_MAGIC);
	w_u32(c, &h->count, "count");
	w_u64(c, &h->bytes, "bytes");
	w_u64(c, &h->index, "index");
	w_u64(c, &h->data_off, "data_off");
	/* count is 32 bits, so data_off cannot saturate here. */
	NEED(c, h->data_off == qp_slot_data_off(h->count), "data_off",
	     "%" PRIu64 " is not %" PRIu64 " for %" PRIu32 " records", h->data_off,
	     qp_slot_data_off(h->count), h->count);
	w_u32(c, &h->state_len, "state_len");
	NEED(c, h->state_len <= QP_STATE_MAX, "state_len", "%" PRIu32 " is over %u", h->state_len,
	     QP_STATE_MAX);
	w_zero(c, 4, "reserved0");
	w_zero(c, 24, "reserved");
	w_state(c, h->state, h->state_len, "state");
	w_zero(c, 32, "pad");
}

/* After the header, up to data_off: the record ids (any values), the
 * offsets (0 first, never decreasing, bytes last), then padding. Encoding
 * writes ids[] and offsets[], and zeros for the padding; decoding checks
 * the offsets where they are (a client hands them to the application
 * where they landed), and does not look at the padding, which holds
 * nothing. */
static void walk_slot_records(struct cur *c, const struct qp_slot_header *h, const uint64_t *ids,
			      const uint64_t *offsets)
{
	size_t n = h->count, i;
	uint64_t prev = 0;

	/* One check for both arrays: 16 n + 8 bytes, n < 2^32. */
	if (!room(c, 16 * n + 8, "ids"))
		return;
	if (c->enc)
		for (i = 0; i < n; i++)
			qput64(c->out + c->off + 8 * i, ids[i]);
	c->off += 8 * n;
	for (i = 0; i <= n && !c->r; i++, c->off += 8) {
		uint64_t o = c->enc ? offsets[i] : qle64(c->in + c->off);

		NEED(c, i > 0 || o == 0, "offsets", "[0] is %" PRIu64 ", not 0", o);
		NEED(c, o >= prev, "offsets",
		     "[%zu] = %" PRIu64 " is below the one before, %" PRIu64, i, o, prev);
		if (c->enc)
			qput64(c->out + c->off, o);
		prev = o;
	}
	NEED(c, prev == h->bytes, "offsets", "[%zu] = %" PRIu64 " is not bytes, %" PRIu64, n, prev,
	     h->bytes);
	if (c->enc)
		w_zero(c, h->data_off - c->off, "padding");
}

int qp_slot_encode(const struct qp_slot_header *h, void *slot)
{
	struct cur c = {.out = slot, .len = QP_SLOT_HEADER_SIZE, .enc = true, .type = "slot"};

	if (!h || !slot)
		return -EINVAL;
	/* Encoding, the walker only reads the header. */
	walk_slot_header(&c, (struct qp_slot_header *)h);
	return c.r;
}

int qp_slot_write(const struct qp_slot_header *h, const uint64_t *ids, const uint64_t *offsets,
		  void *slot, size_t cap)
{
	struct cur c = {.out = slot, .len = cap, .enc = true, .type = "slot"};

	if (!h || !slot || (h->count && !ids) || !offsets)
		return -EINVAL;
	walk_slot_header(&c, (struct qp_slot_header *)h);
	if (!c.r && h->data_off > cap)
		return -EMSGSIZE;
	walk_slot_records(&c, h, ids, offsets);
	return c.r;
}

int qp_slot_check(const void *slot, uint64_t slot_bytes, struct qp_slot_header *ret)
{
	struct cur c = {.in = slot, .len = slot_bytes, .type = "slot"};
	struct qp_slot_header h;

	if (!slot || slot_bytes < QP_SLOT_HEADER_SIZE)
		return -EBADMSG;
	memset(&h, 0, sizeof(h));
	walk_slot_header(&c, &h);
	if (c.r)
		return -EBADMSG;
	if (h.data_off > slot_bytes || h.bytes > slot_bytes - h.data_off)
		return -EBADMSG;
	/* The ids and offsets lie before data_off, so inside the slot. */
	c.len = h.data_off;
	walk_slot_records(&c, &h, NULL, NULL);
	if (c.r)
		return -EBADMSG;
	if (ret)
		*ret = h;
	return 0;
}
