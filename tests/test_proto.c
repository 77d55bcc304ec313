/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The wire protocol (transport/proto.c, docs/PROTOCOL.md): every message
 * type round trips at its bounds, every truncation and every field out of
 * bounds is refused on both sides, and a few messages are checked byte for
 * byte against the specification.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "proto.h"

/* Messages are up to 70 KiB as structs and 64 KiB as bytes: static, not on
 * the stack. Each Criterion test runs in a process of its own. */
static struct qp_msg ma, mb;
static uint8_t ba[QP_MSG_MAX + 64], bb[QP_MSG_MAX + 64], bc[QP_MSG_MAX + 64];
static uint8_t blob_bytes[QP_MSG_MAX];
static char err[512];

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* Blob contents: bytes 0x80-0xff only, so they never look like the 'Q'
 * and 'R' of the string probes below. */
static struct qp_blob blob(size_t len)
{
	for (size_t i = 0; i < sizeof(blob_bytes); i++)
		blob_bytes[i] = (uint8_t)(0x80 | (i * 7 & 0x7f));
	return (struct qp_blob){.p = blob_bytes, .len = len};
}

static void fill(char *s, size_t n, char ch)
{
	memset(s, ch, n);
	s[n] = '\0';
}

enum variant { MIN, TYPICAL, MAX };

/* The length of each of 256 PUSH_HAVE entries that still fit in a
 * message at the maximum count: 28 + 256 x (2 + L + 8) <= 65536. */
#define HAVE_FIT_LEN 245

/* A valid message of every type: MIN has empty strings and zero counts
 * wherever they are allowed, MAX the longest strings and blobs, the
 * largest counts and the extreme numbers; TYPICAL is what a session
 * sends. */
static void sample(struct qp_msg *m, unsigned type, enum variant v)
{
	memset(m, 0, sizeof(*m));
	m->h.type = (uint16_t)type;
	m->h.req = v == MAX ? UINT64_MAX : v == TYPICAL ? 0x0a0b0c0d : 0;
	switch ((enum qp_type)type) {
	case QP_HELLO: {
		struct qp_hello *x = &m->u.hello;
		if (v == MIN) {
			x->addr = blob(1);
		} else if (v == TYPICAL) {
			x->addr = blob(16);
			strcpy(x->host, "node017");
			x->pid = 4242;
			strcpy(x->auth_kind, "munge");
			x->auth = blob(20);
		} else {
			x->addr = blob(QP_ADDR_MAX);
			fill(x->host, QP_NAME_MAX, 'h');
			x->pid = UINT32_MAX;
			fill(x->auth_kind, sizeof(x->auth_kind) - 1, 'k');
			x->auth = blob(QP_AUTH_MAX);
		}
		break;
	}
	case QP_WELCOME: {
		struct qp_welcome *x = &m->u.welcome;
		if (v == MIN) {
			strcpy(x->zone, "z");
		} else if (v == TYPICAL) {
			x->session = 0x1122334455667788;
			strcpy(x->server, "quaid 0.1.0");
			strcpy(x->zone, "eu-west");
			x->max_streams = 8;
			x->client_memory = 256u << 20;
		} else {
			x->session = UINT64_MAX;
			fill(x->server, QP_TEXT_MAX, 's');
			fill(x->zone, QP_ZONE_MAX, 'z');
			x->max_streams = UINT32_MAX;
			x->client_memory = UINT64_MAX;
		}
		break;
	}
	case QP_ERROR:
		m->u.error.code = v == MIN ? 1 : v == TYPICAL ? 4100 : INT32_MAX;
		if (v == TYPICAL)
			strcpy(m->u.error.message, "policy: sensitive data stays in zone eu-west");
		else if (v == MAX)
			fill(m->u.error.message, QP_TEXT_MAX, 'm');
		break;
	case QP_PING:
	case QP_PONG:
		m->u.ping.stamp = v == MIN ? 0 : v == TYPICAL ? 123456789 : UINT64_MAX;
		break;
	case QP_LIST:
		m->u.list.start = v == MIN ? 0 : v == TYPICAL ? 64 : UINT32_MAX;
		break;
	case QP_LIST_REPLY: {
		struct qp_list_reply *x = &m->u.list_reply;
		static const char *const names[] = {"imagenet-1k", "c4-en", "tokens.v2"};
		if (v == TYPICAL) {
			x->total = 70;
			x->start = 64;
			x->n = 3;
			for (unsigned i = 0; i < 3; i++) {
				strcpy(x->e[i].name, names[i]);
				x->e[i].kind = (uint8_t)(1 + i);
				x->e[i].classification = (uint8_t)(3 - i);
				strcpy(x->e[i].zone, "eu-west");
				x->e[i].records = 1000000 + i;
				x->e[i].raw_bytes = 1u << 30;
				x->e[i].compressed_bytes = 300u << 20;
				x->e[i].shards = 12;
			}
		} else if (v == MAX) {
			x->total = UINT32_MAX;
			x->start = UINT32_MAX - QP_LIST_MAX;
			x->n = QP_LIST_MAX;
			for (unsigned i = 0; i < QP_LIST_MAX; i++) {
				fill(x->e[i].name, QP_NAME_MAX, 'n');
				x->e[i].kind = 3;
				x->e[i].classification = 3;
				fill(x->e[i].zone, QP_ZONE_MAX, 'z');
				x->e[i].records = UINT64_MAX;
				x->e[i].raw_bytes = UINT64_MAX;
				x->e[i].compressed_bytes = UINT64_MAX;
				x->e[i].shards = UINT32_MAX;
			}
		}
		break;
	}
	case QP_MANIFEST:
		if (v == MIN)
			strcpy(m->u.manifest.name, "n");
		else if (v == TYPICAL)
			strcpy(m->u.manifest.name, "imagenet-1k");
		else
			fill(m->u.manifest.name, QP_NAME_MAX, 'n');
		m->u.manifest.offset = v == MIN ? 0 : v == TYPICAL ? 65000 : UINT64_MAX;
		break;
	case QP_MANIFEST_REPLY: {
		struct qp_manifest_reply *x = &m->u.manifest_reply;
		/* What fits: 65536 - 24 - 8 - 8 - 4. */
		const size_t chunk = QP_MSG_MAX - QP_HEADER_SIZE - 20;
		if (v == TYPICAL) {
			x->total = 200000;
			x->offset = 65000;
			x->data = blob(100);
		} else if (v == MAX) {
			x->total = UINT64_MAX;
			x->offset = UINT64_MAX - chunk;
			x->data = blob(chunk);
		}
		break;
	}
	case QP_STAT_REPLY:
		if (v == TYPICAL)
			m->u.stat_reply.json = (struct qp_blob){
			    .p = (const uint8_t *)"{\"server\":\"quaid 0.1.0\"}", .len = 24};
		else if (v == MAX)
			m->u.stat_reply.json = blob(QP_MSG_MAX - QP_HEADER_SIZE - 4);
		break;
	case QP_STREAM_OPEN: {
		struct qp_stream_open *x = &m->u.stream_open;
		x->world = 1;
		if (v == MIN) {
			strcpy(x->name, "n");
		} else if (v == TYPICAL) {
			x->tag = 3;
			strcpy(x->name, "imagenet-1k");
			x->rank = 1;
			x->world = 4;
			x->seed = 42;
			x->epoch = 7;
			x->partitions = 32;
			x->window = 2;
			x->batch_records = 256;
			x->memory_budget = 1u << 30;
			x->prefetch_batches = 4;
			x->tail = 1;
			x->flags = 1;
			x->state = blob(40);
		} else {
			x->tag = 0xffff;
			fill(x->name, QP_NAME_MAX, 'n');
			x->rank = UINT32_MAX - 1;
			x->world = UINT32_MAX;
			x->seed = x->epoch = UINT64_MAX;
			x->partitions = x->window = x->batch_records = UINT32_MAX;
			x->batch_bytes = x->memory_budget = UINT64_MAX;
			x->prefetch_batches = UINT32_MAX;
			x->tail = 1;
			x->flags = UINT32_MAX;
			x->state = blob(QP_STATE_MAX);
		}
		break;
	}
	case QP_STREAM_READY: {
		struct qp_stream_ready *x = &m->u.stream_ready;
		if (v == MIN) {
			x->slot_bytes = 1;
			x->slots = 1;
			x->kind = x->classification = 1;
			strcpy(x->zone, "z");
		} else if (v == TYPICAL) {
			x->stream = 9;
			x->slot_bytes = 1u << 20;
			x->slots = 8;
			x->records_total = 1000000;
			x->batches_total = 3907;
			x->partitions = 32;
			x->working_set = 64u << 20;
			x->budget = 1u << 30;
			x->kind = 1;
			x->classification = 2;
			strcpy(x->zone, "eu-west");
			x->state = blob(40);
		} else {
			x->stream = UINT64_MAX;
			x->slot_bytes = UINT64_MAX / QP_SLOTS_MAX;
			x->slots = QP_SLOTS_MAX;
			x->records_total = x->batches_total = UINT64_MAX;
			x->partitions = UINT32_MAX;
			x->working_set = x->budget = UINT64_MAX;
			x->kind = x->classification = 3;
			fill(x->zone, QP_ZONE_MAX, 'z');
			x->state = blob(QP_STATE_MAX);
		}
		break;
	}
	case QP_SLOTS: {
		struct qp_slots *x = &m->u.slots;
		if (v == MIN) {
			x->nslots = 1;
			x->slot_bytes = 1;
		} else if (v == TYPICAL) {
			x->id = 9;
			x->nslots = 8;
			x->slot_bytes = 1u << 20;
			x->addr = 0x7f0000000000;
			x->key = 0xabcdef;
		} else {
			/* The ring ends exactly at 2^64. */
			x->id = UINT64_MAX;
			x->nslots = QP_SLOTS_MAX;
			x->slot_bytes = UINT64_MAX / QP_SLOTS_MAX;
			x->addr = UINT64_MAX - (uint64_t)QP_SLOTS_MAX * x->slot_bytes + 1;
			x->key = UINT64_MAX;
		}
		break;
	}
	case QP_CREDIT: {
		struct qp_credit *x = &m->u.credit;
		if (v == TYPICAL) {
			x->stream = 9;
			x->n = 5;
			for (unsigned i = 0; i < 5; i++)
				x->slots[i] = i;
		} else if (v == MAX) {
			x->stream = UINT64_MAX;
			x->n = QP_CREDIT_MAX;
			for (unsigned i = 0; i < QP_CREDIT_MAX; i++)
				x->slots[i] = QP_SLOTS_MAX - 1 - i;
		}
		break;
	}
	case QP_STREAM_END: {
		struct qp_stream_end *x = &m->u.stream_end;
		if (v == TYPICAL) {
			x->stream = 9;
			x->batches = 3907;
		} else if (v == MAX) {
			x->stream = x->batches = UINT64_MAX;
			x->status = INT32_MAX;
			fill(x->message, QP_TEXT_MAX, 'm');
		}
		break;
	}
	case QP_STREAM_CLOSE:
	case QP_PUSH_STATUS:
	case QP_COMMIT:
	case QP_XFER_CLOSE:
		m->u.id.id = v == MIN ? 0 : v == TYPICAL ? 9 : UINT64_MAX;
		break;
	case QP_PULL_OPEN:
		m->u.pull_open.tag = v == MIN ? 0 : v == TYPICAL ? 4 : 0xffff;
		if (v == MIN)
			strcpy(m->u.pull_open.name, "n");
		else if (v == TYPICAL)
			strcpy(m->u.pull_open.name, "c4-en");
		else
			fill(m->u.pull_open.name, QP_NAME_MAX, 'n');
		break;
	case QP_XFER_READY: {
		struct qp_xfer_ready *x = &m->u.xfer_ready;
		x->xfer = v == MIN ? 0 : v == TYPICAL ? 12 : UINT64_MAX;
		x->max_chunk = v == MIN ? 1 : v == TYPICAL ? 4u << 20 : UINT32_MAX;
		x->max_inflight = v == MIN ? 1 : v == TYPICAL ? 16 : UINT32_MAX;
		break;
	}
	case QP_READ: {
		struct qp_read *x = &m->u.read;
		if (v == MIN) {
			strcpy(x->file, "f");
			x->len = 1;
		} else if (v == TYPICAL) {
			x->xfer = 12;
			strcpy(x->file, "shard-00000.zst");
			x->offset = 8u << 20;
			x->len = 4u << 20;
			x->slot = 2;
		} else {
			x->xfer = UINT64_MAX;
			fill(x->file, QP_NAME_MAX, 'f');
			x->len = UINT32_MAX;
			x->offset = UINT64_MAX - x->len;
			x->slot = QP_SLOTS_MAX - 1;
		}
		break;
	}
	case QP_PUSH_OPEN: {
		struct qp_push_open *x = &m->u.push_open;
		if (v == MIN) {
			strcpy(x->name, "n");
			x->manifest_len = 1;
			x->classification = 1;
			strcpy(x->zone, "z");
		} else if (v == TYPICAL) {
			x->tag = 5;
			strcpy(x->name, "tokens.v2");
			x->manifest_len = 2048;
			x->classification = 3;
			strcpy(x->zone, "eu-west");
		} else {
			x->tag = 0xffff;
			fill(x->name, QP_NAME_MAX, 'n');
			x->manifest_len = UINT64_MAX;
			x->classification = 3;
			fill(x->zone, QP_ZONE_MAX, 'z');
		}
		break;
	}
	case QP_PUT: {
		struct qp_put *x = &m->u.put;
		if (v == MIN) {
			strcpy(x->file, "f");
			x->len = 1;
		} else if (v == TYPICAL) {
			x->xfer = 12;
			strcpy(x->file, "shard-00001.idx");
			x->len = 4096;
			x->addr = 0x7f00000000;
			x->key = 0x1234;
		} else {
			x->xfer = UINT64_MAX;
			fill(x->file, QP_NAME_MAX, 'f');
			x->len = UINT32_MAX;
			x->offset = UINT64_MAX - x->len;
			x->addr = UINT64_MAX - x->len;
			x->key = UINT64_MAX;
		}
		break;
	}
	case QP_PUSH_HAVE: {
		struct qp_push_have *x = &m->u.push_have;
		if (v == TYPICAL) {
			x->n = 3;
			strcpy(x->e[0].file, "manifest.json");
			x->e[0].bytes = 2048;
			strcpy(x->e[1].file, "shard-00000.zst");
			x->e[1].bytes = 1u << 20;
			strcpy(x->e[2].file, "shard-00000.idx");
			x->e[2].bytes = 512;
		} else if (v == MAX) {
			/* The maximum count and one name of the maximum
			 * length: all 256 at 255 bytes would not fit. */
			x->n = QP_HAVE_MAX;
			for (unsigned i = 0; i < QP_HAVE_MAX; i++) {
				fill(x->e[i].file, HAVE_FIT_LEN - 1, 'f');
				x->e[i].bytes = UINT64_MAX - i;
			}
			fill(x->e[0].file, QP_NAME_MAX, 'g');
		}
		break;
	}
	case QP_BYE:
	case QP_STAT:
	case QP_OK:
	case QP_TYPE_LAST:
		break;
	}
}

static void same_blob(struct qp_blob a, struct qp_blob b, const char *what)
{
	cr_assert_eq(a.len, b.len, "%s: %zu bytes, not %zu", what, b.len, a.len);
	if (a.len)
		cr_assert(!memcmp(a.p, b.p, a.len), "%s differs", what);
}

#define SAME(f) cr_assert_eq(a->f, b->f, "%s: " #f, qp_type_name(type))
#define SAME_STR(f) cr_assert_str_eq(a->f, b->f, "%s: " #f, qp_type_name(type))
#define SAME_BLOB(f) same_blob(a->f, b->f, #f)

/* Field by field, so that a field both sides forgot cannot hide. */
static void assert_same(const struct qp_msg *ma_, const struct qp_msg *mb_)
{
	unsigned type = ma_->h.type;

	cr_assert_eq(mb_->h.type, type);
	cr_assert_eq(mb_->h.req, ma_->h.req);
	cr_assert_eq(mb_->h.magic, QP_MAGIC);
	cr_assert_eq(mb_->h.version, QP_VERSION);
	cr_assert_eq(mb_->h.session, ma_->h.session);
	switch ((enum qp_type)type) {
	case QP_HELLO: {
		const struct qp_hello *a = &ma_->u.hello, *b = &mb_->u.hello;
		SAME(flags);
		SAME_BLOB(addr);
		SAME_STR(host);
		SAME(pid);
		SAME_STR(auth_kind);
		SAME_BLOB(auth);
		break;
	}
	case QP_WELCOME: {
		const struct qp_welcome *a = &ma_->u.welcome, *b = &mb_->u.welcome;
		SAME(session);
		SAME_STR(server);
		SAME_STR(zone);
		SAME(max_streams);
		SAME(client_memory);
		break;
	}
	case QP_ERROR: {
		const struct qp_error *a = &ma_->u.error, *b = &mb_->u.error;
		SAME(code);
		SAME_STR(message);
		break;
	}
	case QP_PING:
	case QP_PONG: {
		const struct qp_ping *a = &ma_->u.ping, *b = &mb_->u.ping;
		SAME(stamp);
		break;
	}
	case QP_LIST: {
		const struct qp_list *a = &ma_->u.list, *b = &mb_->u.list;
		SAME(start);
		break;
	}
	case QP_LIST_REPLY: {
		const struct qp_list_reply *a = &ma_->u.list_reply, *b = &mb_->u.list_reply;
		SAME(total);
		SAME(start);
		SAME(n);
		for (uint32_t i = 0; i < a->n; i++) {
			SAME_STR(e[i].name);
			SAME(e[i].kind);
			SAME(e[i].classification);
			SAME_STR(e[i].zone);
			SAME(e[i].records);
			SAME(e[i].raw_bytes);
			SAME(e[i].compressed_bytes);
			SAME(e[i].shards);
		}
		break;
	}
	case QP_MANIFEST: {
		const struct qp_manifest *a = &ma_->u.manifest, *b = &mb_->u.manifest;
		SAME_STR(name);
		SAME(offset);
		break;
	}
	case QP_MANIFEST_REPLY: {
		const struct qp_manifest_reply *a = &ma_->u.manifest_reply,
					       *b = &mb_->u.manifest_reply;
		SAME(total);
		SAME(offset);
		SAME_BLOB(data);
		break;
	}
	case QP_STAT_REPLY: {
		const struct qp_stat_reply *a = &ma_->u.stat_reply, *b = &mb_->u.stat_reply;
		SAME_BLOB(json);
		break;
	}
	case QP_STREAM_OPEN: {
		const struct qp_stream_open *a = &ma_->u.stream_open, *b = &mb_->u.stream_open;
		SAME(tag);
		SAME_STR(name);
		SAME(rank);
		SAME(world);
		SAME(seed);
		SAME(epoch);
		SAME(partitions);
		SAME(window);
		SAME(batch_records);
		SAME(batch_bytes);
		SAME(memory_budget);
		SAME(prefetch_batches);
		SAME(tail);
		SAME(flags);
		SAME_BLOB(state);
		break;
	}
	case QP_STREAM_READY: {
		const struct qp_stream_ready *a = &ma_->u.stream_ready, *b = &mb_->u.stream_ready;
		SAME(stream);
		SAME(slot_bytes);
		SAME(slots);
		SAME(records_total);
		SAME(batches_total);
		SAME(partitions);
		SAME(working_set);
		SAME(budget);
		SAME(kind);
		SAME(classification);
		SAME_STR(zone);
		SAME_BLOB(state);
		break;
	}
	case QP_SLOTS: {
		const struct qp_slots *a = &ma_->u.slots, *b = &mb_->u.slots;
		SAME(id);
		SAME(nslots);
		SAME(slot_bytes);
		SAME(addr);
		SAME(key);
		break;
	}
	case QP_CREDIT: {
		const struct qp_credit *a = &ma_->u.credit, *b = &mb_->u.credit;
		SAME(stream);
		SAME(n);
		for (uint32_t i = 0; i < a->n; i++)
			SAME(slots[i]);
		break;
	}
	case QP_STREAM_END: {
		const struct qp_stream_end *a = &ma_->u.stream_end, *b = &mb_->u.stream_end;
		SAME(stream);
		SAME(batches);
		SAME(status);
		SAME_STR(message);
		break;
	}
	case QP_STREAM_CLOSE:
	case QP_PUSH_STATUS:
	case QP_COMMIT:
	case QP_XFER_CLOSE: {
		const struct qp_id *a = &ma_->u.id, *b = &mb_->u.id;
		SAME(id);
		break;
	}
	case QP_PULL_OPEN: {
		const struct qp_pull_open *a = &ma_->u.pull_open, *b = &mb_->u.pull_open;
		SAME(tag);
		SAME_STR(name);
		break;
	}
	case QP_XFER_READY: {
		const struct qp_xfer_ready *a = &ma_->u.xfer_ready, *b = &mb_->u.xfer_ready;
		SAME(xfer);
		SAME(max_chunk);
		SAME(max_inflight);
		break;
	}
	case QP_READ: {
		const struct qp_read *a = &ma_->u.read, *b = &mb_->u.read;
		SAME(xfer);
		SAME_STR(file);
		SAME(offset);
		SAME(len);
		SAME(slot);
		break;
	}
	case QP_PUSH_OPEN: {
		const struct qp_push_open *a = &ma_->u.push_open, *b = &mb_->u.push_open;
		SAME(tag);
		SAME_STR(name);
		SAME(manifest_len);
		SAME(classification);
		SAME_STR(zone);
		break;
	}
	case QP_PUT: {
		const struct qp_put *a = &ma_->u.put, *b = &mb_->u.put;
		SAME(xfer);
		SAME_STR(file);
		SAME(offset);
		SAME(len);
		SAME(addr);
		SAME(key);
		break;
	}
	case QP_PUSH_HAVE: {
		const struct qp_push_have *a = &ma_->u.push_have, *b = &mb_->u.push_have;
		SAME(n);
		for (uint32_t i = 0; i < a->n; i++) {
			SAME_STR(e[i].file);
			SAME(e[i].bytes);
		}
		break;
	}
	case QP_BYE:
	case QP_STAT:
	case QP_OK:
	case QP_TYPE_LAST:
		break;
	}
}

static int encode(const struct qp_msg *m, uint8_t *buf)
{
	return qp_encode(m, buf, QP_MSG_MAX + 64);
}

static int decode(const uint8_t *buf, size_t len, struct qp_msg *m)
{
	return qp_decode(buf, len, m, err, sizeof(err));
}

static void round_trip(unsigned type, enum variant v)
{
	int n, k;

	sample(&ma, type, v);
	n = encode(&ma, ba);
	cr_assert_geq(n, (int)QP_HEADER_SIZE, "%s: encode: %d", qp_type_name(type), n);
	cr_assert_leq(n, (int)QP_MSG_MAX);
	cr_assert_eq(get32(ba + 8), (uint32_t)n - QP_HEADER_SIZE);
	memset(&mb, 0xa5, sizeof(mb));
	cr_assert_eq(decode(ba, (size_t)n, &mb), 0, "%s: %s", qp_type_name(type), err);
	cr_assert_str_empty(err);
	cr_assert_eq(mb.h.length, (uint32_t)n - QP_HEADER_SIZE);
	assert_same(&ma, &mb);
	/* Canonical: the decoded message encodes to the same bytes. */
	k = encode(&mb, bb);
	cr_assert_eq(k, n);
	cr_assert(!memcmp(ba, bb, (size_t)n), "%s: re-encoding differs", qp_type_name(type));
	/* Exactly the room it needs is enough. */
	cr_assert_eq(qp_encode(&ma, bb, (size_t)n), n);
	cr_assert_eq(qp_encode(&ma, bb, (size_t)n - 1), -EMSGSIZE);
}

Test(proto, round_trip_min)
{
	for (unsigned t = 1; t < QP_TYPE_LAST; t++)
		round_trip(t, MIN);
}

Test(proto, round_trip_typical)
{
	for (unsigned t = 1; t < QP_TYPE_LAST; t++)
		round_trip(t, TYPICAL);
}

Test(proto, round_trip_max)
{
	for (unsigned t = 1; t < QP_TYPE_LAST; t++)
		round_trip(t, MAX);
}

Test(proto, payloadless_types_are_just_a_header)
{
	static const unsigned t[] = {QP_BYE, QP_STAT, QP_OK};

	for (unsigned i = 0; i < 3; i++) {
		sample(&ma, t[i], TYPICAL);
		cr_assert_eq(encode(&ma, ba), (int)QP_HEADER_SIZE);
	}
}

Test(proto, the_largest_blobs_fill_a_message_exactly)
{
	sample(&ma, QP_STAT_REPLY, MAX);
	cr_assert_eq(encode(&ma, ba), (int)QP_MSG_MAX);
	ma.u.stat_reply.json.len++;
	cr_assert_eq(encode(&ma, ba), -EMSGSIZE);
	sample(&ma, QP_MANIFEST_REPLY, MAX);
	cr_assert_eq(encode(&ma, ba), (int)QP_MSG_MAX);
	ma.u.manifest_reply.data.len++;
	ma.u.manifest_reply.offset--;
	cr_assert_eq(encode(&ma, ba), -EMSGSIZE);
	/* Lengths that do not fit any message, nor 32 bits. */
	ma.u.manifest_reply.data.len = SIZE_MAX;
	cr_assert_eq(encode(&ma, ba), -EMSGSIZE);
	ma.u.manifest_reply.data.len = (size_t)UINT32_MAX + 1;
	cr_assert_eq(encode(&ma, ba), -EMSGSIZE);
	/* A message over the limit is refused whatever the buffer. */
	sample(&ma, QP_STAT_REPLY, MAX);
	ma.u.stat_reply.json.len++;
	cr_assert_eq(qp_encode(&ma, ba, sizeof(ba)), -EMSGSIZE);
}

Test(proto, push_have_at_max_count_and_length_does_not_fit)
{
	struct qp_push_have *x = &ma.u.push_have;

	sample(&ma, QP_PUSH_HAVE, MAX);
	for (unsigned i = 0; i < QP_HAVE_MAX; i++)
		fill(x->e[i].file, QP_NAME_MAX, 'f');
	cr_assert_eq(encode(&ma, ba), -EMSGSIZE);
	/* The entries at the limit: 28 + 256 x (10 + HAVE_FIT_LEN) fits,
	 * one more byte per entry would not. */
	for (unsigned i = 0; i < QP_HAVE_MAX; i++)
		fill(x->e[i].file, HAVE_FIT_LEN, 'f');
	cr_assert_eq(encode(&ma, ba), (int)(28 + QP_HAVE_MAX * (10 + HAVE_FIT_LEN)));
}

Test(proto, small_buffers_get_emsgsize)
{
	for (unsigned t = 1; t < QP_TYPE_LAST; t++) {
		sample(&ma, t, TYPICAL);
		int n = encode(&ma, ba);
		cr_assert_gt(n, 0);
		for (int cap = 0; cap < n; cap++)
			cr_assert_eq(qp_encode(&ma, bb, (size_t)cap), -EMSGSIZE, "%s, cap %d",
				     qp_type_name(t), cap);
	}
}

/* Every prefix is refused: as it is (the header's length disagrees), and
 * with the header's length patched to fit (the payload ends early). */
static void truncations(unsigned type, enum variant v, size_t stride)
{
	int n;

	sample(&ma, type, v);
	n = encode(&ma, ba);
	cr_assert_gt(n, 0);
	for (size_t k = 0; k < (size_t)n; k += (k < 512 || k + 512 > (size_t)n) ? 1 : stride) {
		cr_assert_eq(decode(ba, k, &mb), -EBADMSG, "%s: prefix %zu", qp_type_name(type), k);
		cr_assert_str_not_empty(err);
		if (k < QP_HEADER_SIZE)
			continue;
		memcpy(bb, ba, k);
		put32(bb + 8, (uint32_t)(k - QP_HEADER_SIZE));
		cr_assert_eq(decode(bb, k, &mb), -EBADMSG, "%s: patched prefix %zu",
			     qp_type_name(type), k);
		cr_assert(!strncmp(err, qp_type_name(type), strlen(qp_type_name(type))), "%s", err);
	}
}

Test(proto, every_truncation_is_refused)
{
	for (unsigned t = 1; t < QP_TYPE_LAST; t++) {
		truncations(t, MIN, 1);
		truncations(t, TYPICAL, 1);
	}
}

Test(proto, truncations_of_the_largest_messages_are_refused)
{
	/* Every prefix near both ends, every 37th in between. */
	for (unsigned t = 1; t < QP_TYPE_LAST; t++)
		truncations(t, MAX, 37);
}

Test(proto, a_trailing_byte_is_refused)
{
	for (unsigned t = 1; t < QP_TYPE_LAST; t++) {
		sample(&ma, t, TYPICAL);
		int n = encode(&ma, ba);
		ba[n] = 0;
		cr_assert_eq(decode(ba, (size_t)n + 1, &mb), -EBADMSG);
		put32(ba + 8, get32(ba + 8) + 1);
		cr_assert_eq(decode(ba, (size_t)n + 1, &mb), -EBADMSG);
		cr_assert(strstr(err, "1 byte after the last field"), "%s", err);
	}
}

Test(proto, another_version_names_itself)
{
	static const uint16_t versions[] = {0, 2, 0xffff};

	for (unsigned t = 1; t < QP_TYPE_LAST; t++) {
		sample(&ma, t, TYPICAL);
		int n = encode(&ma, ba);
		for (unsigned i = 0; i < 3; i++) {
			put16(ba + 4, versions[i]);
			memset(&mb, 0, sizeof(mb));
			cr_assert_eq(decode(ba, (size_t)n, &mb), -EPROTONOSUPPORT);
			cr_assert_eq(mb.h.version, versions[i]);
			cr_assert_eq(mb.h.type, t);
			cr_assert_eq(mb.h.req, ma.h.req);
			cr_assert_eq(mb.h.magic, QP_MAGIC);
		}
	}
	/* Whatever the rest says: a newer version may define it otherwise. */
	sample(&ma, QP_HELLO, TYPICAL);
	int n = encode(&ma, ba);
	put16(ba + 4, 2);
	put16(ba + 6, 200);
	put32(ba + 12, 1);
	cr_assert_eq(decode(ba, (size_t)n + 9, &mb), -EPROTONOSUPPORT);
	cr_assert_eq(mb.h.version, 2);
	cr_assert_eq(mb.h.type, 200);
	cr_assert_str_eq(err, "message: version: 2, this build speaks 1");
}

Test(proto, header_problems_are_refused)
{
	sample(&ma, QP_PING, TYPICAL);
	int n = encode(&ma, ba);

	memcpy(bb, ba, (size_t)n);
	bb[3] ^= 0x20; /* "QUAi" */
	cr_assert_eq(decode(bb, (size_t)n, &mb), -EBADMSG);
	cr_assert(strstr(err, "magic"), "%s", err);

	/* The session id travels as is, whatever its value. */
	static const uint32_t sessions[] = {1, 0x80000000u, UINT32_MAX};
	for (unsigned i = 0; i < 3; i++) {
		memcpy(bb, ba, (size_t)n);
		put32(bb + 12, sessions[i]);
		cr_assert_eq(decode(bb, (size_t)n, &mb), 0, "%s", err);
		cr_assert_eq(mb.h.session, sessions[i]);
	}

	static const uint16_t types[] = {0, QP_TYPE_LAST, 0xffff};
	for (unsigned i = 0; i < 3; i++) {
		memcpy(bb, ba, (size_t)n);
		put16(bb + 6, types[i]);
		cr_assert_eq(decode(bb, (size_t)n, &mb), -EBADMSG);
		cr_assert(!strncmp(err, "message: type: ", 15), "%s", err);
	}

	/* A length that disagrees with the bytes, either way. */
	memcpy(bb, ba, (size_t)n);
	put32(bb + 8, 7);
	cr_assert_eq(decode(bb, (size_t)n, &mb), -EBADMSG);
	cr_assert(!strncmp(err, "PING: length: ", 14), "%s", err);
	put32(bb + 8, UINT32_MAX);
	cr_assert_eq(decode(bb, (size_t)n, &mb), -EBADMSG);
}

Test(proto, a_list_past_the_end_is_empty)
{
	sample(&ma, QP_LIST_REPLY, MIN);
	ma.u.list_reply.total = 3;
	ma.u.list_reply.start = 70;
	int n = encode(&ma, ba);
	cr_assert_gt(n, 0);
	cr_assert_eq(decode(ba, (size_t)n, &mb), 0, "%s", err);
	ma.u.list_reply.n = 1;
	strcpy(ma.u.list_reply.e[0].name, "d");
	strcpy(ma.u.list_reply.e[0].zone, "z");
	ma.u.list_reply.e[0].kind = ma.u.list_reply.e[0].classification = 1;
	cr_assert_eq(encode(&ma, ba), -EINVAL);
	ma.u.list_reply.start = 2;
	cr_assert_gt(encode(&ma, ba), 0);
}

Test(proto, unknown_types_do_not_encode)
{
	sample(&ma, QP_PING, TYPICAL);
	ma.h.type = 0;
	cr_assert_eq(encode(&ma, ba), -EINVAL);
	ma.h.type = QP_TYPE_LAST;
	cr_assert_eq(encode(&ma, ba), -EINVAL);
	ma.h.type = 0xffff;
	cr_assert_eq(encode(&ma, ba), -EINVAL);
}

Test(proto, a_message_over_the_limit_is_refused)
{
	/* A well-formed STAT_REPLY one byte over QP_MSG_MAX. */
	size_t len = QP_MSG_MAX + 1;

	memset(ba, 'x', len);
	put32(ba, QP_MAGIC);
	put16(ba + 4, QP_VERSION);
	put16(ba + 6, QP_STAT_REPLY);
	put32(ba + 8, (uint32_t)(len - QP_HEADER_SIZE));
	put32(ba + 12, 0);
	put64(ba + 16, 1);
	put32(ba + QP_HEADER_SIZE, (uint32_t)(len - QP_HEADER_SIZE - 4));
	cr_assert_eq(decode(ba, len, &mb), -EBADMSG);
	cr_assert(strstr(err, "limit"), "%s", err);
}

/* Where a field starts on the wire: the first byte of the payload that
 * differs between two encodings that differ in that field only (the
 * header's length may differ too). */
static size_t first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
	size_t i = QP_HEADER_SIZE;

	while (i < n && a[i] == b[i])
		i++;
	cr_assert_lt(i, n, "the encodings do not differ");
	return i;
}

static void set_num(struct qp_msg *m, size_t off, size_t size, uint64_t v)
{
	uint8_t *p = (uint8_t *)m + off;
	uint32_t v32 = (uint32_t)v;

	if (size == 1)
		*p = (uint8_t)v;
	else if (size == 4)
		memcpy(p, &v32, 4);
	else
		memcpy(p, &v, 8);
}

static void put_num(uint8_t *p, size_t size, uint64_t v)
{
	if (size == 1)
		*p = (uint8_t)v;
	else if (size == 4)
		put32(p, (uint32_t)v);
	else
		put64(p, v);
}

struct num_case {
	unsigned type;
	size_t off, size; /* of the field in struct qp_msg */
	uint64_t a, b;	  /* two valid values: a != b in the low byte */
	uint64_t bad;
	const char *err; /* how err begins */
	size_t wire;	 /* where on the wire, when no second valid value
			    exists; else 0 */
};

#define NUM(t, path, a, b, bad, err)                                                               \
	{                                                                                          \
		t, offsetof(struct qp_msg, u.path), sizeof(((struct qp_msg *)0)->u.path), a, b,    \
		    bad, err, 0                                                                    \
	}

static const struct num_case num_cases[] = {
    {QP_HELLO, offsetof(struct qp_msg, u.hello.flags), 4, 0, 0, 1, "HELLO: flags: ", 24},
    {QP_HELLO, offsetof(struct qp_msg, u.hello.flags), 4, 0, 0, 0x80000000u, "HELLO: flags: ", 24},
    NUM(QP_ERROR, error.code, 1, 2, 0, "ERROR: code: "),
    NUM(QP_ERROR, error.code, 1, 2, 0xffffffffu, "ERROR: code: "),
    NUM(QP_ERROR, error.code, 1, 2, 0x80000000u, "ERROR: code: "),
    NUM(QP_LIST_REPLY, list_reply.n, 2, 3, QP_LIST_MAX + 1, "LIST_REPLY: n: "),
    NUM(QP_LIST_REPLY, list_reply.n, 2, 3, UINT32_MAX, "LIST_REPLY: n: "),
    NUM(QP_LIST_REPLY, list_reply.total, 70, 71, 66, "LIST_REPLY: n: "),
    NUM(QP_LIST_REPLY, list_reply.start, 64, 65, 68, "LIST_REPLY: n: "),
    NUM(QP_LIST_REPLY, list_reply.start, 64, 65, UINT32_MAX, "LIST_REPLY: n: "),
    NUM(QP_LIST_REPLY, list_reply.e[1].kind, 1, 2, 0, "LIST_REPLY: e[1].kind: "),
    NUM(QP_LIST_REPLY, list_reply.e[1].kind, 1, 2, 4, "LIST_REPLY: e[1].kind: "),
    NUM(QP_LIST_REPLY, list_reply.e[2].classification, 1, 2, 0,
	"LIST_REPLY: e[2].classification: "),
    NUM(QP_LIST_REPLY, list_reply.e[2].classification, 1, 2, 255,
	"LIST_REPLY: e[2].classification: "),
    NUM(QP_MANIFEST_REPLY, manifest_reply.total, 200000, 200001, 65099, "MANIFEST_REPLY: data: "),
    NUM(QP_MANIFEST_REPLY, manifest_reply.offset, 65000, 65001, 199901, "MANIFEST_REPLY: data: "),
    NUM(QP_MANIFEST_REPLY, manifest_reply.offset, 65000, 65001, UINT64_MAX,
	"MANIFEST_REPLY: data: "),
    NUM(QP_STREAM_OPEN, stream_open.tag, 3, 4, 0x10000, "STREAM_OPEN: tag: "),
    NUM(QP_STREAM_OPEN, stream_open.world, 4, 5, 0, "STREAM_OPEN: world: "),
    NUM(QP_STREAM_OPEN, stream_open.world, 4, 5, 1, "STREAM_OPEN: rank: "),
    NUM(QP_STREAM_OPEN, stream_open.rank, 1, 2, 4, "STREAM_OPEN: rank: "),
    NUM(QP_STREAM_OPEN, stream_open.tail, 0, 2, 3, "STREAM_OPEN: tail: "),
    NUM(QP_STREAM_READY, stream_ready.slot_bytes, 1u << 20, (1u << 20) + 1, 0,
	"STREAM_READY: slot_bytes: "),
    NUM(QP_STREAM_READY, stream_ready.slot_bytes, 1u << 20, (1u << 20) + 1, UINT64_MAX / 4,
	"STREAM_READY: slots: "),
    NUM(QP_STREAM_READY, stream_ready.slots, 8, 9, 0, "STREAM_READY: slots: "),
    NUM(QP_STREAM_READY, stream_ready.slots, 8, 9, QP_SLOTS_MAX + 1, "STREAM_READY: slots: "),
    NUM(QP_STREAM_READY, stream_ready.kind, 1, 2, 0, "STREAM_READY: kind: "),
    NUM(QP_STREAM_READY, stream_ready.kind, 1, 2, 4, "STREAM_READY: kind: "),
    NUM(QP_STREAM_READY, stream_ready.classification, 1, 2, 0, "STREAM_READY: classification: "),
    NUM(QP_STREAM_READY, stream_ready.classification, 1, 2, 4, "STREAM_READY: classification: "),
    NUM(QP_SLOTS, slots.nslots, 8, 9, 0, "SLOTS: nslots: "),
    NUM(QP_SLOTS, slots.nslots, 8, 9, QP_SLOTS_MAX + 1, "SLOTS: nslots: "),
    NUM(QP_SLOTS, slots.slot_bytes, 1u << 20, (1u << 20) + 1, 0, "SLOTS: slot_bytes: "),
    NUM(QP_SLOTS, slots.addr, 0x7f0000000000, 0x7f0000000001, UINT64_MAX - (8u << 20) + 2,
	"SLOTS: addr: "),
    NUM(QP_CREDIT, credit.n, 4, 5, QP_CREDIT_MAX + 1, "CREDIT: n: "),
    NUM(QP_CREDIT, credit.slots[1], 1, 2, QP_SLOTS_MAX, "CREDIT: slots[1].slot: "),
    NUM(QP_STREAM_END, stream_end.status, 0, 1, 0xffffffffu, "STREAM_END: status: "),
    NUM(QP_PULL_OPEN, pull_open.tag, 4, 5, 0x10000, "PULL_OPEN: tag: "),
    NUM(QP_XFER_READY, xfer_ready.max_chunk, 1, 2, 0, "XFER_READY: max_chunk: "),
    NUM(QP_XFER_READY, xfer_ready.max_inflight, 1, 2, 0, "XFER_READY: max_inflight: "),
    NUM(QP_READ, read.len, 1, 2, 0, "READ: len: "),
    NUM(QP_READ, read.offset, 0, 1, UINT64_MAX - (4u << 20) + 1, "READ: len: "),
    NUM(QP_READ, read.slot, 1, 2, QP_SLOTS_MAX, "READ: slot: "),
    NUM(QP_PUSH_OPEN, push_open.tag, 4, 5, 0x10000, "PUSH_OPEN: tag: "),
    NUM(QP_PUSH_OPEN, push_open.manifest_len, 1, 2, 0, "PUSH_OPEN: manifest_len: "),
    NUM(QP_PUSH_OPEN, push_open.classification, 1, 2, 0, "PUSH_OPEN: classification: "),
    NUM(QP_PUSH_OPEN, push_open.classification, 1, 2, 4, "PUSH_OPEN: classification: "),
    NUM(QP_PUT, put.len, 1, 2, 0, "PUT: len: "),
    NUM(QP_PUT, put.offset, 0, 1, UINT64_MAX - 4095, "PUT: len: "),
    NUM(QP_PUT, put.addr, 0, 1, UINT64_MAX - 4095, "PUT: addr: "),
    NUM(QP_PUSH_HAVE, push_have.n, 2, 3, QP_HAVE_MAX + 1, "PUSH_HAVE: n: "),
};

Test(proto, numbers_out_of_bounds_are_refused_both_ways)
{
	for (size_t i = 0; i < sizeof(num_cases) / sizeof(num_cases[0]); i++) {
		const struct num_case *c = &num_cases[i];
		int na, nb;
		size_t at = c->wire;

		sample(&ma, c->type, TYPICAL);
		set_num(&ma, c->off, c->size, c->a);
		na = encode(&ma, ba);
		cr_assert_gt(na, 0, "case %zu (%s): a: %d", i, c->err, na);
		if (!at) {
			set_num(&ma, c->off, c->size, c->b);
			nb = encode(&ma, bb);
			cr_assert_gt(nb, 0, "case %zu (%s): b: %d", i, c->err, nb);
			at = first_diff(ba, bb, (size_t)(na < nb ? na : nb));
		}
		set_num(&ma, c->off, c->size, c->bad);
		cr_assert_eq(encode(&ma, bc), -EINVAL, "case %zu (%s)", i, c->err);
		/* The same value patched into a good encoding. */
		put_num(ba + at, c->size, c->bad);
		cr_assert_eq(decode(ba, (size_t)na, &mb), -EBADMSG, "case %zu (%s)", i, c->err);
		cr_assert(!strncmp(err, c->err, strlen(c->err)),
			  "case %zu: \"%s\" is not \"%s...\"", i, err, c->err);
	}
}

enum rule { ANY, DATASET, ZONE, PATH };

struct str_case {
	unsigned type;
	size_t off, cap;
	enum rule rule;
	const char *err;
};

#define STR(t, path, rule, err)                                                                    \
	{                                                                                          \
		t, offsetof(struct qp_msg, u.path), sizeof(((struct qp_msg *)0)->u.path), rule,    \
		    err                                                                            \
	}

static const struct str_case str_cases[] = {
    STR(QP_HELLO, hello.host, ANY, "HELLO: host: "),
    STR(QP_HELLO, hello.auth_kind, ANY, "HELLO: auth_kind: "),
    STR(QP_WELCOME, welcome.server, ANY, "WELCOME: server: "),
    STR(QP_WELCOME, welcome.zone, ZONE, "WELCOME: zone: "),
    STR(QP_ERROR, error.message, ANY, "ERROR: message: "),
    STR(QP_LIST_REPLY, list_reply.e[1].name, DATASET, "LIST_REPLY: e[1].name: "),
    STR(QP_LIST_REPLY, list_reply.e[2].zone, ZONE, "LIST_REPLY: e[2].zone: "),
    STR(QP_MANIFEST, manifest.name, DATASET, "MANIFEST: name: "),
    STR(QP_STREAM_OPEN, stream_open.name, DATASET, "STREAM_OPEN: name: "),
    STR(QP_STREAM_READY, stream_ready.zone, ZONE, "STREAM_READY: zone: "),
    STR(QP_STREAM_END, stream_end.message, ANY, "STREAM_END: message: "),
    STR(QP_PULL_OPEN, pull_open.name, DATASET, "PULL_OPEN: name: "),
    STR(QP_READ, read.file, PATH, "READ: file: "),
    STR(QP_PUSH_OPEN, push_open.name, DATASET, "PUSH_OPEN: name: "),
    STR(QP_PUSH_OPEN, push_open.zone, ZONE, "PUSH_OPEN: zone: "),
    STR(QP_PUT, put.file, PATH, "PUT: file: "),
    STR(QP_PUSH_HAVE, push_have.e[2].file, PATH, "PUSH_HAVE: e[2].file: "),
};

/* Values each rule refuses. */
static const char *const bad_dataset[] = {".", "..", "/", "a/b", "/abs", "a\x01", "\x1f", "x\x7f"};
static const char *const bad_zone[] = {".",   "..",   "a b", "a/b", "\xc3\xa9",
				       "a:b", "a\tb", "a+b", "a,b"};
static const char *const bad_path[] = {"/x",   "../x", "..", "x/..",   ".",	"./x", "x/.",
				       "a//b", "a/",   "/",  "a/../b", "a/./b", "//"};

/* Encodes the case's message with the string field set to s, which must
 * be valid, and returns where on the wire its bytes begin. */
static size_t locate(const struct str_case *c, size_t len, int *n)
{
	int k;

	sample(&ma, c->type, TYPICAL);
	fill((char *)&ma + c->off, len, 'Q');
	*n = encode(&ma, ba);
	cr_assert_gt(*n, 0, "%s: %d", c->err, *n);
	fill((char *)&ma + c->off, len, 'R');
	k = encode(&ma, bb);
	cr_assert_eq(k, *n);
	return first_diff(ba, bb, (size_t)k);
}

static void refuse_both_ways(const struct str_case *c, const char *bad, size_t len)
{
	int n;
	size_t at = locate(c, len, &n);

	memcpy((char *)&ma + c->off, bad, len);
	((char *)&ma + c->off)[len] = '\0';
	cr_assert_eq(encode(&ma, bc), -EINVAL, "%s: \"%s\" encodes", c->err, bad);
	memcpy(ba + at, bad, len);
	cr_assert_eq(decode(ba, (size_t)n, &mb), -EBADMSG, "%s: \"%s\" decodes", c->err, bad);
	cr_assert(!strncmp(err, c->err, strlen(c->err)), "\"%s\" is not \"%s...\"", err, c->err);
}

Test(proto, strings_out_of_bounds_are_refused_both_ways)
{
	for (size_t i = 0; i < sizeof(str_cases) / sizeof(str_cases[0]); i++) {
		const struct str_case *c = &str_cases[i];
		char *s;
		size_t at;
		int n;

		/* Too long: no NUL within the array; on the wire, a length
		 * one over the maximum. */
		sample(&ma, c->type, TYPICAL);
		s = (char *)&ma + c->off;
		memset(s, 'x', c->cap);
		cr_assert_eq(encode(&ma, ba), -EINVAL, "%s too long", c->err);
		at = locate(c, 3, &n);
		put16(ba + at - 2, (uint16_t)c->cap);
		cr_assert_eq(decode(ba, (size_t)n, &mb), -EBADMSG);
		cr_assert(!strncmp(err, c->err, strlen(c->err)), "%s", err);
		cr_assert(strstr(err, "is over"), "%s", err);

		/* A NUL inside. */
		at = locate(c, 3, &n);
		ba[at + 1] = 0;
		cr_assert_eq(decode(ba, (size_t)n, &mb), -EBADMSG);
		cr_assert(!strncmp(err, c->err, strlen(c->err)), "%s", err);
		cr_assert(strstr(err, "NUL"), "%s", err);

		if (c->rule == ANY) {
			/* Empty is fine. */
			sample(&ma, c->type, TYPICAL);
			((char *)&ma + c->off)[0] = '\0';
			if (c->type == QP_HELLO)
				ma.u.hello.auth.len = 0; /* a credential needs its kind */
			cr_assert_gt(encode(&ma, ba), 0, "%s empty", c->err);
			continue;
		}
		/* Empty, where a value is required: on the wire, a zero
		 * length followed by what was the string's bytes. */
		sample(&ma, c->type, TYPICAL);
		((char *)&ma + c->off)[0] = '\0';
		cr_assert_eq(encode(&ma, bc), -EINVAL, "%s empty", c->err);
		at = locate(c, 3, &n);
		put16(ba + at - 2, 0);
		cr_assert_eq(decode(ba, (size_t)n, &mb), -EBADMSG);
		cr_assert(!strncmp(err, c->err, strlen(c->err)), "%s", err);
		cr_assert(strstr(err, "empty"), "%s", err);

		const char *const *bad = c->rule == DATASET ? bad_dataset
					 : c->rule == ZONE  ? bad_zone
							    : bad_path;
		size_t nbad = c->rule == DATASET ? sizeof(bad_dataset) / sizeof(*bad_dataset)
			      : c->rule == ZONE	 ? sizeof(bad_zone) / sizeof(*bad_zone)
						 : sizeof(bad_path) / sizeof(*bad_path);
		for (size_t k = 0; k < nbad; k++)
			refuse_both_ways(c, bad[k], strlen(bad[k]));
	}
}

Test(proto, file_names)
{
	static const char *const good[] = {"manifest.json", "shard-00000.zst", "a/b/c", "...",
					   "a..b",	    ".hidden",	       "a/.b",	"..a/b.."};
	static const char *const bad[] = {"../x", "/x", "", "a//b", "x/", ".", "..", "a/../b"};

	sample(&ma, QP_READ, TYPICAL);
	for (unsigned i = 0; i < sizeof(good) / sizeof(*good); i++) {
		strcpy(ma.u.read.file, good[i]);
		int n = encode(&ma, ba);
		cr_assert_gt(n, 0, "\"%s\"", good[i]);
		cr_assert_eq(decode(ba, (size_t)n, &mb), 0, "%s", err);
		cr_assert_str_eq(mb.u.read.file, good[i]);
	}
	for (unsigned i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		strcpy(ma.u.read.file, bad[i]);
		cr_assert_eq(encode(&ma, ba), -EINVAL, "\"%s\"", bad[i]);
	}
}

Test(proto, dataset_names_and_zones)
{
	static const char *const names[] = {"My Data-set.v1", "...", "é", "a.b", "-"};
	static const char *const zones[] = {"eu-west_1.a", "none", "...", "Z", "-"};

	sample(&ma, QP_PUSH_OPEN, TYPICAL);
	for (unsigned i = 0; i < 5; i++) {
		strcpy(ma.u.push_open.name, names[i]);
		strcpy(ma.u.push_open.zone, zones[i]);
		int n = encode(&ma, ba);
		cr_assert_gt(n, 0, "\"%s\" \"%s\"", names[i], zones[i]);
		cr_assert_eq(decode(ba, (size_t)n, &mb), 0, "%s", err);
	}
}

Test(proto, the_error_names_type_field_and_problem)
{
	sample(&ma, QP_STREAM_OPEN, TYPICAL);
	struct str_case c = STR(QP_STREAM_OPEN, stream_open.name, DATASET, "");
	int n;
	size_t at = locate(&c, 3, &n);

	put16(ba + at - 2, 300);
	cr_assert_eq(decode(ba, (size_t)n, &mb), -EBADMSG);
	cr_assert_str_eq(err, "STREAM_OPEN: name: 300 bytes is over 255");
	/* A truncated err is still a string. */
	char small[8];
	cr_assert_eq(qp_decode(ba, (size_t)n, &mb, small, sizeof(small)), -EBADMSG);
	cr_assert_str_eq(small, "STREAM_");
	cr_assert_eq(qp_decode(ba, (size_t)n, &mb, NULL, 0), -EBADMSG);
}

struct blob_case {
	unsigned type;
	size_t off;
	size_t min, max;
	const char *err;
};

#define BLOB(t, path, min, max, err)                                                               \
	{                                                                                          \
		t, offsetof(struct qp_msg, u.path), min, max, err                                  \
	}

static const struct blob_case blob_cases[] = {
    BLOB(QP_HELLO, hello.addr, 1, QP_ADDR_MAX, "HELLO: addr: "),
    BLOB(QP_HELLO, hello.auth, 0, QP_AUTH_MAX, "HELLO: auth: "),
    BLOB(QP_STREAM_OPEN, stream_open.state, 0, QP_STATE_MAX, "STREAM_OPEN: state: "),
    BLOB(QP_STREAM_READY, stream_ready.state, 0, QP_STATE_MAX, "STREAM_READY: state: "),
};

Test(proto, blobs_out_of_bounds_are_refused_both_ways)
{
	static uint8_t x[QP_AUTH_MAX + 1], y[QP_AUTH_MAX + 1];

	memset(x, 'x', sizeof(x));
	memset(y, 'y', sizeof(y));
	for (size_t i = 0; i < sizeof(blob_cases) / sizeof(blob_cases[0]); i++) {
		const struct blob_case *c = &blob_cases[i];
		struct qp_blob *b = (struct qp_blob *)((char *)&ma + c->off);
		int n;
		size_t at;

		sample(&ma, c->type, TYPICAL);
		*b = (struct qp_blob){.p = x, .len = c->max + 1};
		cr_assert_eq(encode(&ma, ba), -EINVAL, "%s", c->err);
		*b = (struct qp_blob){.p = NULL, .len = 1};
		cr_assert_eq(encode(&ma, ba), -EINVAL, "%s", c->err);
		if (c->min) {
			*b = (struct qp_blob){.p = x, .len = 0};
			cr_assert_eq(encode(&ma, ba), -EINVAL, "%s", c->err);
		}

		*b = (struct qp_blob){.p = x, .len = 8};
		n = encode(&ma, ba);
		*b = (struct qp_blob){.p = y, .len = 8};
		cr_assert_eq(encode(&ma, bb), n);
		at = first_diff(ba, bb, (size_t)n);
		put32(ba + at - 4, (uint32_t)c->max + 1);
		cr_assert_eq(decode(ba, (size_t)n, &mb), -EBADMSG);
		cr_assert(!strncmp(err, c->err, strlen(c->err)), "%s", err);
		put32(ba + at - 4, UINT32_MAX);
		cr_assert_eq(decode(ba, (size_t)n, &mb), -EBADMSG);
		cr_assert(!strncmp(err, c->err, strlen(c->err)), "%s", err);
		if (c->min) {
			put32(ba + at - 4, 0);
			cr_assert_eq(decode(ba, (size_t)n, &mb), -EBADMSG);
			cr_assert(!strncmp(err, c->err, strlen(c->err)), "%s", err);
		}
	}
}

Test(proto, a_credential_needs_its_kind)
{
	sample(&ma, QP_HELLO, TYPICAL);
	ma.u.hello.auth_kind[0] = '\0';
	cr_assert_eq(encode(&ma, ba), -EINVAL);
	/* On the wire: no kind, then 3 bytes of credential. */
	ma.u.hello.auth.len = 0;
	int n = encode(&ma, ba);
	cr_assert_gt(n, 0);
	put32(ba + n - 4, 3);
	memcpy(ba + n, "abc", 3);
	put32(ba + 8, get32(ba + 8) + 3);
	cr_assert_eq(decode(ba, (size_t)n + 3, &mb), -EBADMSG);
	cr_assert(!strncmp(err, "HELLO: auth: ", 13), "%s", err);
}

/* The specification's examples, byte for byte (docs/PROTOCOL.md). */
Test(proto, golden_ping)
{
	static const uint8_t want[] = {
	    'Q', 'U', 'A', 'I', 1, 0, 5, 0, 8,	  0,	0,    0,    0,	  0,	0,    0,
	    7,	 0,   0,   0,	0, 0, 0, 0, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
	};

	memset(&ma, 0, sizeof(ma));
	ma.h.type = QP_PING;
	ma.h.req = 7;
	ma.u.ping.stamp = 0x0102030405060708;
	cr_assert_eq(encode(&ma, ba), (int)sizeof(want));
	cr_assert_arr_eq(ba, want, sizeof(want));
}

Test(proto, golden_error)
{
	static const uint8_t want[] = {
	    'Q',
	    'U',
	    'A',
	    'I',
	    1,
	    0,
	    3,
	    0,
	    8,
	    0,
	    0,
	    0,
	    0,
	    0,
	    0,
	    0,
	    2,
	    0,
	    0,
	    0,
	    0,
	    0,
	    0,
	    0,
	    /* code 4100 (EPOLICY), message "no" */
	    0x04,
	    0x10,
	    0,
	    0,
	    2,
	    0,
	    'n',
	    'o',
	};

	memset(&ma, 0, sizeof(ma));
	ma.h.type = QP_ERROR;
	ma.h.req = 2;
	ma.u.error.code = 4100;
	strcpy(ma.u.error.message, "no");
	cr_assert_eq(encode(&ma, ba), (int)sizeof(want));
	cr_assert_arr_eq(ba, want, sizeof(want));
}

Test(proto, golden_read)
{
	static const uint8_t want[] = {'Q', 'U', 'A', 'I', 1, 0, 22, 0, 29, 0, 0, 0, 0, 0, 0, 0, 9,
				       0, 0, 0, 0, 0, 0, 0,
				       /* xfer 3 */
				       3, 0, 0, 0, 0, 0, 0, 0,
				       /* file "a/b" */
				       3, 0, 'a', '/', 'b',
				       /* offset 0x100, len 0x20, slot 5 */
				       0, 1, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 5, 0, 0, 0};

	memset(&ma, 0, sizeof(ma));
	ma.h.type = QP_READ;
	ma.h.req = 9;
	ma.u.read.xfer = 3;
	strcpy(ma.u.read.file, "a/b");
	ma.u.read.offset = 0x100;
	ma.u.read.len = 0x20;
	ma.u.read.slot = 5;
	cr_assert_eq(encode(&ma, ba), (int)sizeof(want));
	cr_assert_arr_eq(ba, want, sizeof(want));
}

Test(proto, type_names)
{
	cr_assert_str_eq(qp_type_name(QP_HELLO), "HELLO");
	cr_assert_str_eq(qp_type_name(QP_STREAM_OPEN), "STREAM_OPEN");
	cr_assert_str_eq(qp_type_name(QP_XFER_CLOSE), "XFER_CLOSE");
	cr_assert_str_eq(qp_type_name(0), "?");
	cr_assert_str_eq(qp_type_name(QP_TYPE_LAST), "?");
	cr_assert_str_eq(qp_type_name(UINT32_MAX), "?");
	for (unsigned t = 1; t < QP_TYPE_LAST; t++) {
		cr_assert_str_neq(qp_type_name(t), "?");
		for (unsigned u = 1; u < t; u++)
			cr_assert_str_neq(qp_type_name(t), qp_type_name(u));
	}
}

Test(proto, cq_data)
{
	cr_assert_eq(qp_cq_data(0, 0), 0u);
	cr_assert_eq(qp_cq_data(0x1234, 0xabcd), 0x1234abcdu);
	cr_assert_eq(qp_cq_data(0xffff, QP_SLOTS_MAX - 1), 0xffffffffu);
	cr_assert_eq(qp_cq_data(0x12345, 0x1ffff), 0x2345ffffu);
}

/* ---- the slot header ---- */

static uint8_t slot[8192];

/* A good slot: 3 records of 4, 0 and 6 bytes, a 5-byte state. */
static uint64_t good_slot(struct qp_slot_header *h)
{
	static const uint64_t ids[] = {1000, 1001, 1002};
	static const uint64_t offs[] = {0, 4, 4, 10};

	memset(slot, 0xee, sizeof(slot));
	memset(h, 0, sizeof(*h));
	h->magic = QP_SLOT_MAGIC;
	h->count = 3;
	h->bytes = 10;
	h->index = 77;
	h->data_off = qp_slot_data_off(3);
	h->state_len = 5;
	memcpy(h->state, "STATE", 5);
	cr_assert_eq(qp_slot_write(h, ids, offs, slot, sizeof(slot)), 0);
	memcpy(slot + h->data_off, "abcdefghij", 10);
	return qp_slot_need(3, 10);
}

Test(proto, slot_sizes)
{
	cr_assert_eq(qp_slot_data_off(0), 256u); /* 192 + 8, rounded up */
	cr_assert_eq(qp_slot_data_off(3), 256u); /* 192 + 24 + 32 = 248 */
	cr_assert_eq(qp_slot_data_off(4), 320u); /* 192 + 32 + 40 = 264 */
	cr_assert_eq(qp_slot_data_off(1000), 16256u);
	cr_assert_eq(qp_slot_need(3, 10), 266u);
	cr_assert_eq(qp_slot_data_off(UINT32_MAX), 68719476928u);
	cr_assert_eq(qp_slot_data_off(UINT64_MAX), UINT64_MAX);
	cr_assert_eq(qp_slot_data_off(UINT64_MAX / 16), UINT64_MAX);
	cr_assert_eq(qp_slot_need(1, UINT64_MAX), UINT64_MAX);
	cr_assert_eq(qp_slot_need(1, UINT64_MAX - 256), UINT64_MAX);
	cr_assert_eq(qp_slot_need(1, UINT64_MAX - 257), UINT64_MAX - 1);
	cr_assert_eq(qp_slot_need(UINT64_MAX, 0), UINT64_MAX);
	for (uint64_t c = 0; c < 100; c++) {
		cr_assert_eq(qp_slot_data_off(c) % 64, 0u);
		cr_assert_geq(qp_slot_data_off(c), QP_SLOT_HEADER_SIZE + 16 * c + 8);
		cr_assert_lt(qp_slot_data_off(c), QP_SLOT_HEADER_SIZE + 16 * c + 8 + 64);
	}
}

Test(proto, slot_header_layout)
{
	struct qp_slot_header h;

	good_slot(&h);
	cr_assert_eq(get32(slot), QP_SLOT_MAGIC);
	cr_assert_eq(memcmp(slot, "QBAT", 4), 0);
	cr_assert_eq(get32(slot + 4), 3u);
	cr_assert_eq(get64(slot + 8), 10u);
	cr_assert_eq(get64(slot + 16), 77u);
	cr_assert_eq(get64(slot + 24), 256u);
	cr_assert_eq(get32(slot + 32), 5u);
	cr_assert_eq(memcmp(slot + 64, "STATE", 5), 0);
	for (unsigned i = 36; i < 64; i++)
		cr_assert_eq(slot[i], 0);
	for (unsigned i = 64 + 5; i < QP_SLOT_HEADER_SIZE; i++)
		cr_assert_eq(slot[i], 0);
}

Test(proto, slot_write_layout)
{
	struct qp_slot_header h;

	good_slot(&h);
	for (unsigned i = 0; i < 3; i++)
		cr_assert_eq(get64(slot + QP_SLOT_HEADER_SIZE + 8 * i), 1000 + i);
	cr_assert_eq(get64(slot + QP_SLOT_HEADER_SIZE + 24), 0u);
	cr_assert_eq(get64(slot + QP_SLOT_HEADER_SIZE + 32), 4u);
	cr_assert_eq(get64(slot + QP_SLOT_HEADER_SIZE + 40), 4u);
	cr_assert_eq(get64(slot + QP_SLOT_HEADER_SIZE + 48), 10u);
	for (unsigned i = QP_SLOT_HEADER_SIZE + 56; i < h.data_off; i++)
		cr_assert_eq(slot[i], 0, "padding byte %u", i);
	/* Nothing past data_off is touched: the records go there. */
	memset(slot, 0xee, sizeof(slot));
	static const uint64_t ids[3], offs[] = {0, 4, 4, 10};
	cr_assert_eq(qp_slot_write(&h, ids, offs, slot, h.data_off), 0);
	cr_assert_eq(slot[h.data_off], 0xee);
}

Test(proto, slot_write_refuses_what_the_check_refuses)
{
	static const uint64_t ids[3];
	struct qp_slot_header h, bad;

	good_slot(&h);
	const uint64_t first[] = {1, 4, 4, 10}, down[] = {0, 5, 4, 10}, last[] = {0, 4, 4, 9};
	cr_assert_eq(qp_slot_write(&h, ids, first, slot, sizeof(slot)), -EINVAL);
	cr_assert_eq(qp_slot_write(&h, ids, down, slot, sizeof(slot)), -EINVAL);
	cr_assert_eq(qp_slot_write(&h, ids, last, slot, sizeof(slot)), -EINVAL);
	const uint64_t good[] = {0, 4, 4, 10};
	cr_assert_eq(qp_slot_write(&h, ids, good, slot, h.data_off - 1), -EMSGSIZE);
	cr_assert_eq(qp_slot_write(&h, NULL, good, slot, sizeof(slot)), -EINVAL);
	cr_assert_eq(qp_slot_write(&h, ids, NULL, slot, sizeof(slot)), -EINVAL);
	bad = h;
	bad.magic++;
	cr_assert_eq(qp_slot_write(&bad, ids, good, slot, sizeof(slot)), -EINVAL);
	cr_assert_eq(qp_slot_encode(&bad, slot), -EINVAL);
	bad = h;
	bad.data_off += 64;
	cr_assert_eq(qp_slot_write(&bad, ids, good, slot, sizeof(slot)), -EINVAL);
	cr_assert_eq(qp_slot_encode(&bad, slot), -EINVAL);
	bad = h;
	bad.state_len = QP_STATE_MAX + 1;
	cr_assert_eq(qp_slot_write(&bad, ids, good, slot, sizeof(slot)), -EINVAL);
	cr_assert_eq(qp_slot_encode(&bad, slot), -EINVAL);
	cr_assert_eq(qp_slot_encode(&h, slot), 0);
}

/* ---- HELLO's address, in any version ---- */

static size_t hello_bytes(uint8_t *buf, size_t cap)
{
	static struct qp_msg m;

	memset(&m, 0, sizeof(m));
	m.h.type = QP_HELLO;
	m.u.hello.addr = (struct qp_blob){(const uint8_t *)"ADDRESS", 7};
	snprintf(m.u.hello.host, sizeof(m.u.hello.host), "h");
	int n = qp_encode(&m, buf, cap);
	cr_assert_gt(n, 0);
	return (size_t)n;
}

Test(proto, hello_addr_of_any_version)
{
	uint8_t buf[512];
	struct qp_blob a;
	size_t n = hello_bytes(buf, sizeof(buf));

	cr_assert_eq(qp_hello_addr(buf, n, &a), 0);
	cr_assert_eq(a.len, 7);
	cr_assert_eq(memcmp(a.p, "ADDRESS", 7), 0);
	cr_assert_eq(a.p, buf + 32); /* in place: header, flags, length */
	/* Version 2, with fields this version does not know after the
	 * frozen ones: the address is still where it was. */
	buf[4] = 2;
	memset(buf + n, 0x5a, 40);
	put32(buf + 8, (uint32_t)(n + 40 - QP_HEADER_SIZE));
	cr_assert_eq(qp_hello_addr(buf, n + 40, &a), 0);
	cr_assert_eq(a.len, 7);
	cr_assert_eq(memcmp(a.p, "ADDRESS", 7), 0);
	/* Just the frozen prefix is enough. */
	cr_assert_eq(qp_hello_addr(buf, 32 + 7, &a), 0);
}

Test(proto, hello_addr_refuses_what_is_not_one)
{
	uint8_t buf[512];
	struct qp_blob a = {NULL, 0};
	size_t n = hello_bytes(buf, sizeof(buf));

	cr_assert_eq(qp_hello_addr(buf, 32 + 6, &a), -EBADMSG); /* cut in addr */
	cr_assert_eq(qp_hello_addr(buf, 30, &a), -EBADMSG);	/* cut in its length */
	cr_assert_eq(qp_hello_addr(buf, QP_HEADER_SIZE - 1, &a), -EBADMSG);
	cr_assert_eq(qp_hello_addr(NULL, n, &a), -EBADMSG);
	put32(buf + 28, 0); /* no address */
	cr_assert_eq(qp_hello_addr(buf, n, &a), -EBADMSG);
	put32(buf + 28, QP_ADDR_MAX + 1);
	cr_assert_eq(qp_hello_addr(buf, sizeof(buf), &a), -EBADMSG);
	put32(buf + 28, 7);
	put16(buf + 6, QP_LIST); /* not a HELLO */
	cr_assert_eq(qp_hello_addr(buf, n, &a), -EBADMSG);
	put16(buf + 6, QP_HELLO);
	buf[0] ^= 1; /* not quai */
	cr_assert_eq(qp_hello_addr(buf, n, &a), -EBADMSG);
	cr_assert_null(a.p); /* written on success only */
}

Test(proto, slot_check_good)
{
	struct qp_slot_header h, r;
	uint64_t need = good_slot(&h);

	memset(&r, 0xcc, sizeof(r));
	cr_assert_eq(qp_slot_check(slot, need, &r), 0);
	cr_assert_eq(r.magic, QP_SLOT_MAGIC);
	cr_assert_eq(r.count, 3);
	cr_assert_eq(r.bytes, 10);
	cr_assert_eq(r.index, 77);
	cr_assert_eq(r.data_off, 256);
	cr_assert_eq(r.state_len, 5);
	cr_assert_eq(memcmp(r.state, "STATE", 5), 0);
	cr_assert_eq(qp_slot_check(slot, sizeof(slot), NULL), 0);
	/* The padding before data_off holds nothing: not looked at. */
	memset(slot + QP_SLOT_HEADER_SIZE + 56, 0xee, 8);
	cr_assert_eq(qp_slot_check(slot, need, NULL), 0);
	/* The slot one byte too small. */
	cr_assert_eq(qp_slot_check(slot, need - 1, &r), -EBADMSG);
	cr_assert_eq(qp_slot_check(slot, QP_SLOT_HEADER_SIZE - 1, &r), -EBADMSG);
	cr_assert_eq(qp_slot_check(NULL, need, &r), -EBADMSG);
}

Test(proto, slot_check_empty_batch)
{
	struct qp_slot_header h = {.magic = QP_SLOT_MAGIC, .data_off = qp_slot_data_off(0)};

	memset(slot, 0, sizeof(slot));
	qp_slot_encode(&h, slot);
	cr_assert_eq(qp_slot_check(slot, qp_slot_need(0, 0), NULL), 0);
}

Test(proto, slot_encode_ignores_garbage_in_reserved_fields)
{
	struct qp_slot_header h, r;
	uint64_t need = good_slot(&h);

	h.reserved0 = 1;
	h.reserved[2] = 2;
	h.pad[31] = 3;
	h.state[90] = 4;
	qp_slot_encode(&h, slot);
	cr_assert_eq(qp_slot_check(slot, need, &r), 0);
	cr_assert_eq(r.reserved0, 0);
	cr_assert_eq(r.reserved[2], 0);
	cr_assert_eq(r.pad[31], 0);
	cr_assert_eq(r.state[90], 0);
}

/* Breaks a good slot with f, and expects the check to refuse it. */
static void refuse_slot(const char *what, void (*f)(struct qp_slot_header *h))
{
	struct qp_slot_header h;
	uint64_t need = good_slot(&h);

	f(&h);
	cr_assert_eq(qp_slot_check(slot, need, &h), -EBADMSG, "%s", what);
	cr_assert_eq(qp_slot_check(slot, sizeof(slot), &h), -EBADMSG, "%s", what);
}

/* The encoder refuses to write what the check refuses: these break the
 * good slot's bytes by hand, at the offsets docs/PROTOCOL.md gives. */
static void bad_magic(struct qp_slot_header *h)
{
	put32(slot, h->magic + 1);
}

static void count_up(struct qp_slot_header *h)
{
	put32(slot + 4, h->count + 1); /* data_off no longer matches */
}

static void data_off_up(struct qp_slot_header *h)
{
	put64(slot + 24, h->data_off + 64);
}

static void data_off_down(struct qp_slot_header *h)
{
	put64(slot + 24, QP_SLOT_HEADER_SIZE);
}

static void bytes_up(struct qp_slot_header *h)
{
	put64(slot + 8, h->bytes + 1); /* offsets[count] no longer matches */
}

static void bytes_huge(struct qp_slot_header *h)
{
	put64(slot + 8, UINT64_MAX); /* data_off + bytes overflows */
}

static void state_long(struct qp_slot_header *h)
{
	put32(slot + 32, QP_STATE_MAX + 1);
}

static void state_huge(struct qp_slot_header *h)
{
	put32(slot + 32, UINT32_MAX);
}

static void reserved0_set(struct qp_slot_header *h)
{
	slot[36] = 1;
}

static void reserved_set(struct qp_slot_header *h)
{
	slot[63] = 0x80;
}

static void pad_set(struct qp_slot_header *h)
{
	slot[QP_SLOT_HEADER_SIZE - 1] = 1;
}

static void state_tail_set(struct qp_slot_header *h)
{
	slot[64 + h->state_len] = 1;
}

static void offset0_set(struct qp_slot_header *h)
{
	put64(slot + QP_SLOT_HEADER_SIZE + 24, 1);
}

static void offsets_decrease(struct qp_slot_header *h)
{
	/* 0, 5, 4, 10 */
	put64(slot + QP_SLOT_HEADER_SIZE + 24 + 8, 5);
}

static void offsets_past_bytes(struct qp_slot_header *h)
{
	/* 0, 4, 11, 10 */
	put64(slot + QP_SLOT_HEADER_SIZE + 24 + 16, 11);
}

static void last_offset_short(struct qp_slot_header *h)
{
	put64(slot + QP_SLOT_HEADER_SIZE + 24 + 24, 9);
}

static void count_overflows(struct qp_slot_header *h)
{
	h->count = UINT32_MAX;
	h->data_off = qp_slot_data_off(UINT32_MAX);
	cr_assert_eq(qp_slot_encode(h, slot), 0);
}

static void count_overflows_data_off_kept(struct qp_slot_header *h)
{
	put32(slot + 4, UINT32_MAX);
}

Test(proto, slot_check_refuses_each_broken_field)
{
	refuse_slot("magic", bad_magic);
	refuse_slot("count", count_up);
	refuse_slot("data_off up", data_off_up);
	refuse_slot("data_off down", data_off_down);
	refuse_slot("bytes", bytes_up);
	refuse_slot("bytes huge", bytes_huge);
	refuse_slot("state_len", state_long);
	refuse_slot("state_len huge", state_huge);
	refuse_slot("reserved0", reserved0_set);
	refuse_slot("reserved", reserved_set);
	refuse_slot("pad", pad_set);
	refuse_slot("state tail", state_tail_set);
	refuse_slot("offsets[0]", offset0_set);
	refuse_slot("offsets decrease", offsets_decrease);
	refuse_slot("offsets past bytes", offsets_past_bytes);
	refuse_slot("offsets[count] != bytes", last_offset_short);
	refuse_slot("count overflows", count_overflows);
	refuse_slot("count overflows, data_off kept", count_overflows_data_off_kept);
}
