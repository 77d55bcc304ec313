/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The wire protocol between quai clients and quaid (docs/PROTOCOL.md):
 * encode and decode as pure functions over caller buffers. No I/O, no
 * allocation, no global state; thread-safe. Private to the library.
 *
 * Every message is a 24-byte header and a payload of `length` bytes, all
 * integers little-endian. Decoding checks the magic, the version, the type,
 * that the length matches the bytes given, and every field of the payload
 * against its bounds; anything else is refused, never guessed at.
 *
 * Strings on the wire are u16 length + bytes (no NUL); decoded, they are
 * copied NUL-terminated into the struct's arrays and must hold no NUL.
 * Blobs (addresses, credentials, resume states, manifest chunks, stat JSON)
 * decode as a pointer into the input buffer and a length: valid while the
 * input buffer is.
 */
#ifndef QUAI_TRANSPORT_PROTO_H
#define QUAI_TRANSPORT_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define QP_MAGIC 0x49415551u /* the bytes "QUAI" read as a little-endian u32 */
#define QP_VERSION 1u
#define QP_HEADER_SIZE 24u
#define QP_MSG_MAX (64u << 10) /* header included */
#define QP_NAME_MAX 255	       /* dataset, file and host names */
#define QP_ZONE_MAX 63
#define QP_TEXT_MAX 1023   /* error messages, version strings */
#define QP_ADDR_MAX 256	   /* raw fabric address */
#define QP_AUTH_MAX 4096   /* credential bytes */
#define QP_STATE_MAX 96	   /* a stream's resume state */
#define QP_LIST_MAX 64	   /* datasets per LIST_REPLY */
#define QP_CREDIT_MAX 1024 /* slots per CREDIT */
#define QP_HAVE_MAX 256	   /* files per PUSH_HAVE */
#define QP_SLOTS_MAX 65536 /* slots in a ring: they fit 16 bits of CQ data */

/* Message types. Requests come from the client; each reply carries the
 * request id of its request. */
enum qp_type {
	QP_HELLO = 1,		/* c->s: open a session */
	QP_WELCOME = 2,		/* s->c: session accepted */
	QP_ERROR = 3,		/* s->c: a request (or the session) failed */
	QP_BYE = 4,		/* c->s: end of session, no reply */
	QP_PING = 5,		/* c->s, keepalive */
	QP_PONG = 6,		/* s->c */
	QP_LIST = 7,		/* c->s: datasets served */
	QP_LIST_REPLY = 8,	/* s->c */
	QP_MANIFEST = 9,	/* c->s: a chunk of a dataset's manifest.json */
	QP_MANIFEST_REPLY = 10, /* s->c */
	QP_STAT = 11,		/* c->s: server statistics */
	QP_STAT_REPLY = 12,	/* s->c: JSON text */
	QP_STREAM_OPEN = 13,	/* c->s: open a stream of one epoch */
	QP_STREAM_READY = 14,	/* s->c: the stream's geometry */
	QP_SLOTS = 15,		/* c->s: the ring of slots the server writes into */
	QP_CREDIT = 16,		/* c->s: slots given back */
	QP_STREAM_END = 17,	/* s->c: no more batches (end of epoch or error) */
	QP_STREAM_CLOSE = 18,	/* c->s: stop writing; reply OK */
	QP_OK = 19,		/* s->c: generic success reply */
	QP_PULL_OPEN = 20,	/* c->s: read a dataset's files */
	QP_XFER_READY = 21,	/* s->c: transfer id (and, for push, nothing more) */
	QP_READ = 22,		/* c->s: write file bytes into my slot */
	QP_PUSH_OPEN = 23,	/* c->s: start writing a dataset */
	QP_PUT = 24,		/* c->s: read file bytes from my buffer; reply OK */
	QP_PUSH_STATUS = 25,	/* c->s: which files do you have already */
	QP_PUSH_HAVE = 26,	/* s->c */
	QP_COMMIT = 27,		/* c->s: verify and publish; reply OK or ERROR */
	QP_XFER_CLOSE = 28,	/* c->s: end a transfer; reply OK */
	QP_TYPE_LAST = 29,
};

struct qp_header {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t length;  /* payload bytes after the header */
	uint32_t session; /* the session's id from WELCOME; 0 before (HELLO) and
			     in the server's messages */
	uint64_t req;	  /* request id, echoed by the reply */
};

struct qp_blob {
	const uint8_t *p; /* into the decoded buffer */
	size_t len;
};

struct qp_hello {
	uint32_t flags;
	struct qp_blob addr; /* the client's fabric address, <= QP_ADDR_MAX */
	char host[QP_NAME_MAX + 1];
	uint32_t pid;
	char auth_kind[32];  /* "" (none) or a method, e.g. "munge" */
	struct qp_blob auth; /* <= QP_AUTH_MAX */
};

struct qp_welcome {
	uint64_t session;
	char server[QP_TEXT_MAX + 1]; /* e.g. "quaid 0.1.0" */
	char zone[QP_ZONE_MAX + 1];
	uint32_t max_streams;
	uint64_t client_memory; /* server pinned bytes this session may hold */
};

struct qp_error {
	int32_t code; /* positive: a Linux errno, or a quai code (4097...) */
	char message[QP_TEXT_MAX + 1];
};

struct qp_ping {
	uint64_t stamp;
};

struct qp_list {
	uint32_t start;
};

struct qp_list_entry {
	char name[QP_NAME_MAX + 1];
	uint8_t kind;
	uint8_t classification;
	char zone[QP_ZONE_MAX + 1];
	uint64_t records;
	uint64_t raw_bytes;
	uint64_t compressed_bytes;
	uint32_t shards;
};

struct qp_list_reply {
	uint32_t total; /* datasets served */
	uint32_t start;
	uint32_t n; /* <= QP_LIST_MAX */
	struct qp_list_entry e[QP_LIST_MAX];
};

struct qp_manifest {
	char name[QP_NAME_MAX + 1];
	uint64_t offset;
};

struct qp_manifest_reply {
	uint64_t total;
	uint64_t offset;
	struct qp_blob data;
};

struct qp_stat_reply {
	struct qp_blob json;
};

struct qp_stream_open {
	uint32_t tag; /* the client's name for the stream: CQ data bits 31..16 */
	char name[QP_NAME_MAX + 1];
	uint32_t rank, world;
	uint64_t seed, epoch;
	uint32_t partitions, window, batch_records;
	uint64_t batch_bytes, memory_budget;
	uint32_t prefetch_batches;
	uint8_t tail;
	uint32_t flags;
	struct qp_blob state; /* <= QP_STATE_MAX; empty: a fresh epoch */
};

struct qp_stream_ready {
	uint64_t stream;
	uint64_t slot_bytes;	/* each slot must hold this many bytes */
	uint32_t slots;		/* slots the client should register */
	uint64_t records_total; /* this rank's records in the epoch */
	uint64_t batches_total;
	uint32_t partitions;
	uint64_t working_set;
	uint64_t budget;
	uint8_t kind, classification;
	char zone[QP_ZONE_MAX + 1];
	struct qp_blob state; /* the position before the first batch */
};

struct qp_slots {
	uint64_t id; /* stream or transfer */
	uint32_t nslots;
	uint64_t slot_bytes;
	uint64_t addr; /* of slot 0, as qf_mr_addr() gives it */
	uint64_t key;
};

struct qp_credit {
	uint64_t stream;
	uint32_t n;
	uint32_t slots[QP_CREDIT_MAX];
};

struct qp_stream_end {
	uint64_t stream;
	uint64_t batches; /* batches written in all */
	int32_t status;	  /* 0: end of epoch; else as qp_error.code */
	char message[QP_TEXT_MAX + 1];
};

struct qp_id {
	uint64_t id; /* STREAM_CLOSE, PUSH_STATUS, COMMIT, XFER_CLOSE */
};

struct qp_pull_open {
	uint32_t tag;
	char name[QP_NAME_MAX + 1];
};

struct qp_xfer_ready {
	uint64_t xfer;
	uint32_t max_chunk;    /* the largest READ/PUT length accepted */
	uint32_t max_inflight; /* READ/PUT requests outstanding at once */
};

struct qp_read {
	uint64_t xfer;
	char file[QP_NAME_MAX + 1];
	uint64_t offset;
	uint32_t len;
	uint32_t slot;
};

struct qp_push_open {
	uint32_t tag;
	char name[QP_NAME_MAX + 1];
	uint64_t manifest_len;
	uint8_t classification;
	char zone[QP_ZONE_MAX + 1];
};

struct qp_put {
	uint64_t xfer;
	char file[QP_NAME_MAX + 1];
	uint64_t offset;
	uint32_t len;
	uint64_t addr; /* where the server reads the bytes from */
	uint64_t key;
};

struct qp_have_entry {
	char file[QP_NAME_MAX + 1];
	uint64_t bytes;
};

struct qp_push_have {
	uint32_t n;
	struct qp_have_entry e[QP_HAVE_MAX];
};

/* A decoded message: the header and the payload of its type. */
struct qp_msg {
	struct qp_header h;
	union {
		struct qp_hello hello;
		struct qp_welcome welcome;
		struct qp_error error;
		struct qp_ping ping; /* PING, PONG */
		struct qp_list list;
		struct qp_list_reply list_reply;
		struct qp_manifest manifest;
		struct qp_manifest_reply manifest_reply;
		struct qp_stat_reply stat_reply;
		struct qp_stream_open stream_open;
		struct qp_stream_ready stream_ready;
		struct qp_slots slots;
		struct qp_credit credit;
		struct qp_stream_end stream_end;
		struct qp_id id; /* STREAM_CLOSE, PUSH_STATUS, COMMIT, XFER_CLOSE */
		struct qp_pull_open pull_open;
		struct qp_xfer_ready xfer_ready;
		struct qp_read read;
		struct qp_push_open push_open;
		struct qp_put put;
		struct qp_push_have push_have;
	} u; /* BYE, STAT and OK have no payload */
};

/* The slot header the server writes at the start of each slot of a stream,
 * followed by ids (u64 x count), offsets (u64 x (count + 1)) and, at
 * data_off, the records back to back. 192 bytes. */
#define QP_SLOT_MAGIC 0x54414251u /* "QBAT" */
struct qp_slot_header {
	uint32_t magic;
	uint32_t count;	   /* records */
	uint64_t bytes;	   /* record bytes */
	uint64_t index;	   /* batch number in the rank's epoch */
	uint64_t data_off; /* from the slot's start, a multiple of 64 */
	uint32_t state_len;
	uint32_t reserved0;
	uint64_t reserved[3];
	uint8_t state[QP_STATE_MAX]; /* the position after this batch */
	uint8_t pad[32];
};
#define QP_SLOT_HEADER_SIZE 192u

/* Remote completion data of a slot write: the stream's tag and the slot. */
static inline uint32_t qp_cq_data(uint32_t tag, uint32_t slot)
{
	return (tag & 0xffffu) << 16 | (slot & 0xffffu);
}

/* The bytes a slot needs for `count` records of `bytes` bytes. */
uint64_t qp_slot_need(uint64_t count, uint64_t bytes);
/* data_off for `count` records. */
uint64_t qp_slot_data_off(uint64_t count);

/* Encodes m (its type in m->h.type, m->h.req set; magic, version, length
 * and flags are filled in) into buf. Returns the bytes written, -EMSGSIZE
 * when buf is too small or the message would exceed QP_MSG_MAX, -EINVAL
 * when a field is out of bounds (a string too long or holding NUL, a
 * count over its maximum, an unknown type). */
int qp_encode(const struct qp_msg *m, void *buf, size_t cap);

/* Decodes one message of exactly `len` bytes. Returns 0; -EBADMSG when it
 * is malformed (bad magic, unknown type, length disagreeing with len or the
 * payload, a field out of bounds, trailing bytes); -EPROTONOSUPPORT when the
 * version is not QP_VERSION (m->h then holds the header, so the peer's
 * version can be named). err, if given, says what and where, e.g.
 * "STREAM_OPEN: name: 300 bytes is over 255". */
int qp_decode(const void *buf, size_t len, struct qp_msg *m, char *err, size_t err_len);

/* "HELLO", "STREAM_OPEN"...; "?" for an unknown type. */
const char *qp_type_name(unsigned type);

/* Reads the client's address from a HELLO of any protocol version: the
 * header and HELLO's first two fields (flags, addr) are the same in every
 * version (docs/PROTOCOL.md, "Versions"), so a server can answer a client
 * whose version it does not speak. ret_addr points into buf. Returns 0, or
 * -EBADMSG when buf is not a HELLO (magic, type) or its addr is not 1 to
 * QP_ADDR_MAX bytes within len. Nothing else of the message is checked. */
int qp_hello_addr(const void *buf, size_t len, struct qp_blob *ret_addr);

/* Decodes the slot layout at the start of a slot of slot_bytes bytes, and
 * checks it: the header (magic, data_off for count, state_len <=
 * QP_STATE_MAX, reserved bytes, padding and the state past state_len
 * zero), count and bytes within the slot, and the offsets (0 first, never
 * decreasing, bytes last). The bytes between the offsets and data_off are
 * not looked at. Returns 0 or -EBADMSG. */
int qp_slot_check(const void *slot, uint64_t slot_bytes, struct qp_slot_header *ret);

/* Writes h as the 192 little-endian bytes at the start of a slot. Reserved
 * fields, padding and the state bytes past state_len are written as zeros
 * whatever h holds. Returns 0, or -EINVAL when h would not pass
 * qp_slot_check() (magic, data_off for count, state_len), the bytes then
 * being unspecified. */
int qp_slot_encode(const struct qp_slot_header *h, void *slot);

/* Writes the whole layout of a batch's slot up to h->data_off (the
 * server's side of qp_slot_check()): the header, ids (h->count u64s),
 * offsets (h->count + 1 u64s, 0 first, never decreasing, h->bytes last)
 * and zeros up to data_off, all little-endian whatever the host. The
 * records themselves go at data_off. Returns 0; -EINVAL when h or the
 * offsets would not pass qp_slot_check(); -EMSGSIZE when data_off is over
 * cap. */
int qp_slot_write(const struct qp_slot_header *h, const uint64_t *ids, const uint64_t *offsets,
		  void *slot, size_t cap);

#endif /* QUAI_TRANSPORT_PROTO_H */
