/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The audit log (docs/SECURITY.md "Audit log"): one JSON object per line
 * for every access decided, granted or refused. Private to the library.
 *
 * Each line is written with a single write(2) on a descriptor opened with
 * O_APPEND, then made durable with fdatasync(2) before qaudit_log()
 * returns: a decision is on disk before the client hears it, so a crash
 * of the writer loses no decided request. Lines from many threads (and
 * processes) never interleave. qaudit_reopen() reopens the path, for log
 * rotation on SIGHUP.
 *
 * A line holds, in this order ("null" where not known):
 *   {"time":"2026-11-25T12:00:00.123Z","event":"access","session":7,
 *    "user":"alice","uid":1001,"group":"train","gid":2000,
 *    "host":"10.1.0.7","client":"node7","op":"pull","dataset":"era5",
 *    "classification":"sensitive","zone":"fr-1","bytes":123,
 *    "result":"granted"|"refused","rule":"train_read","reason":"..."}
 * Strings are escaped as JSON requires (control bytes as \u00XX; bytes
 * that are not valid UTF-8 as \u00XX of each byte, so a line is always
 * valid JSON and valid UTF-8).
 */
#ifndef QUAI_STAGER_AUDIT_H
#define QUAI_STAGER_AUDIT_H

#include <stddef.h>
#include <stdint.h>

struct qaudit;

/* One decided access. Strings may be NULL (written as null). */
struct qaudit_event {
	const char *event; /* "access" */
	uint64_t session;  /* 0: none (written as null) */
	const char *user;  /* NULL: unauthenticated */
	int64_t uid, gid;  /* -1: unknown (null) */
	const char *group;
	const char *host;	    /* authenticated origin address */
	const char *client;	    /* the host name the client declared */
	const char *op;		    /* "list", "stream", "pull", "push" */
	const char *dataset;	    /* NULL for LIST/STAT */
	const char *classification; /* "public"... */
	const char *zone;
	int64_t bytes; /* -1: not applicable (null) */
	int granted;
	const char *rule;
	const char *reason; /* refused: why; granted: NULL */
};

/* Opens (creating it 0640 if needed) the log at path. Returns 0 and *ret,
 * or -errno with err "PATH: strerror". */
int qaudit_open(const char *path, struct qaudit **ret, char *err, size_t err_len);

/* Appends one line and makes it durable. Thread-safe. Returns 0, or
 * -errno when the line could not be written whole or made durable (the
 * caller then refuses the access: no unaudited access is granted). */
int qaudit_log(struct qaudit *a, const struct qaudit_event *ev);

/* Reopens the path (after rotation). On failure the old descriptor stays
 * in use and -errno is returned with err. Thread-safe. */
int qaudit_reopen(struct qaudit *a, char *err, size_t err_len);

void qaudit_close(struct qaudit *a); /* NULL: no-op */

/* Before each line qaudit_log() checks that the path still names the file
 * it has open (same device and inode). A log deleted or replaced while
 * open is reopened (created anew), and the new file's first line is an
 * event "audit-log", op "reopen", saying so; when the path cannot be
 * reopened, qaudit_log() fails (the access is refused). Either way
 * notify(arg, message) is called, with a's lock held (it may not log to
 * a). notify NULL: none. Thread-safe. */
void qaudit_set_notify(struct qaudit *a, void (*notify)(void *arg, const char *msg), void *arg);

/* The host's own audit log: the `audit_log` key of the host configuration
 * (quai.conf, hostconf.h; an absolute path). What a process decides on its
 * own goes there: embedded streams of local datasets, and the refusals a
 * client makes itself (a sensitive dataset pulled outside its zone or its
 * sovereign paths...); what quaid decides goes to quaid's log. Appends
 * one line with event "local": this process's user and group (getuid,
 * getgid), this host's name as "client", no "host" and no "session".
 * Returns 0 (also when no audit_log is set), or -errno / -QUAI_EFORMAT
 * with err naming the file and the fault: a granted access must then be
 * refused, as nothing is served unaudited. */
int qaudit_local(const char *op, const char *dataset, int classification, const char *zone,
		 int64_t bytes, int granted, const char *rule, const char *why, char *err,
		 size_t err_len);

/* Formats ev as one line (with its '\n', NUL-terminated) into buf; pure,
 * for tests and the fuzz harness. `now_ms` is the time to write (ms since
 * the epoch). Returns the length the line needs (without the NUL); the
 * line is whole only when that is < len. */
size_t qaudit_format(const struct qaudit_event *ev, int64_t now_ms, char *buf, size_t len);

#endif /* QUAI_STAGER_AUDIT_H */
