/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quaid's configuration file (docs/quaid.md): the same plain "key = value"
 * syntax as the host configuration (hostconf.h, whose parser it uses),
 * with quaid's keys, their defaults and their checks. Private to the
 * library.
 */
#ifndef QUAI_STAGER_SVCCONF_H
#define QUAI_STAGER_SVCCONF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "policy.h"

#define QSVC_DEFAULT_PATH "/etc/quai/quaid.conf"
#define QSVC_DEFAULT_PORT "7470"
#define QSVC_DEFAULT_PROVIDER "tcp;ofi_rxm"
#define QSVC_ROOTS_MAX 64

enum qsvc_log_level {
	QSVC_LOG_ERROR = 3, /* syslog priorities, as journald reads them */
	QSVC_LOG_WARNING = 4,
	QSVC_LOG_NOTICE = 5,
	QSVC_LOG_INFO = 6,
	QSVC_LOG_DEBUG = 7,
};

struct qsvc_conf {
	char listen_node[256];	 /* "listen = NODE[:PORT]"; default 0.0.0.0 */
	char listen_service[32]; /* default QSVC_DEFAULT_PORT */
	char provider[64];	 /* "" : $FI_PROVIDER, else tcp;ofi_rxm */
	char zone[64];		 /* default: the host's zone (quai_host_zone) */
	unsigned nroots;
	char *roots[QSVC_ROOTS_MAX]; /* "roots = DIR[:DIR...]": dataset roots served */
	char *push_root;	     /* "push_root = DIR": where pushes land (also
					served); NULL: pushes are refused */
	unsigned max_clients;	     /* default 64 */
	unsigned max_streams;	     /* per client; default 8 */
	uint64_t client_memory;	     /* pinned bytes per client; default 256 MiB */
	uint64_t pinned;	     /* the whole pinned pool; default 1 GiB */
	unsigned workers;	     /* decompression threads; 0: online cores */
	unsigned idle_timeout;	     /* seconds without a message before a client
					is dropped; default 60 */
	unsigned handshake_timeout;  /* seconds a connection may stay open with
					nothing received on it; default 10 */
	unsigned host_conn_max;	     /* max_host_connections: connections at
					once from one address; default 256 */
	int log_level;		     /* enum qsvc_log_level; default info */
	char *log_file;		     /* NULL: stderr */
	struct qpol *policy;	     /* the access policy (policy.h): the rule_NAME
					lines in file order, zone_hosts and
					unauthenticated, for the zone above; NULL
					only when memory ran out in init */
	char *audit_log;	     /* "audit_log = FILE"; NULL: no audit log */
	char munge_socket[256];	     /* "munge_socket = PATH": munged's socket;
					"": libmunge's default */
};

/* Fills c with the defaults. The zone is the host's (quai_host_zone(),
 * which reads the host configuration file); when that file is malformed,
 * zone is left empty and qsvc_conf_check() says why. The policy is empty
 * (no rule: every authenticated request refused; unauthenticated = no),
 * allocated here: free c with qsvc_conf_free(). */
void qsvc_conf_init(struct qsvc_conf *c);

/* Parses configuration text (pure but for the user and group names of
 * rule_ lines, resolved now: see policy.h). Unknown keys, empty values,
 * malformed values, out-of-range numbers and pinned < client_memory are
 * errors. rule_NAME lines are added to c's policy in file order (a name
 * already there is refused); the policy's zone is c's final zone. Sizes take K, M, G, T suffixes
 * (binary). Paths are stored normalised (no repeated or trailing '/'). Returns 0; -QUAI_EFORMAT
 * with err "LINE: message" (e.g. "4: client_memory: '12Q' is not a size (e.g. 256M, 1GiB)");
 * -ENOMEM. c must be initialised (qsvc_conf_init); keys the text sets replace c's values; on error
 * c may hold part of the text. */
int qsvc_conf_parse(const char *text, size_t len, struct qsvc_conf *c, char *err, size_t err_len);

/* Reads and parses a file; err then starts with the path
 * ("PATH:4: client_memory: ..."). -ENOENT (err "PATH: No such file or
 * directory": whether absence is normal is the caller's to decide), other
 * -errno, or as qsvc_conf_parse(). */
int qsvc_conf_load(const char *path, struct qsvc_conf *c, char *err, size_t err_len);

/* Sets one key as the line "key = value" in a file would, replacing what
 * was there, with the same checks: the command line's overrides (quaid
 * --listen, --provider, --log-level). Rules (rule_NAME) are the file's
 * only: refused here. Returns 0; -QUAI_EFORMAT with err "key: message"
 * (an unknown key, a bad value); -ENOMEM. On error c is unchanged. */
int qsvc_conf_set(struct qsvc_conf *c, const char *key, const char *value, char *err,
		  size_t err_len);

/* The provider to ask libfabric for: c->provider, else $FI_PROVIDER when
 * set and not empty, else QSVC_DEFAULT_PROVIDER. Valid until c or the
 * environment changes. */
const char *qsvc_conf_provider(const struct qsvc_conf *c);

/* The name of a log level as the file spells it ("info"), or NULL. */
const char *qsvc_log_level_name(int level);

/* Checks what can only be checked on this host, or only on the whole
 * configuration: the zone is valid (an empty one: the host file could not
 * be read), something is served (a root or push_root), roots exist and are
 * readable directories, push_root is a writable directory, log_file and
 * audit_log can be appended to or created, client_memory <= pinned, and
 * the pinned pool fits RLIMIT_MEMLOCK (unless unlimited or with
 * CAP_IPC_LOCK). Writes one line per problem, "key: what is wrong", to
 * `out` (when not NULL). Returns 0 or -QUAI_EFORMAT. */
int qsvc_conf_check(const struct qsvc_conf *c, FILE *out);

/* What is valid but likely not meant: no rule_ lines (every authenticated
 * request will be refused). Writes one line per warning, "warning: ...",
 * to `out` (when not NULL): for quaid to log at start and to show with
 * --check-config, without refusing to start. Returns the number of
 * warnings. */
unsigned qsvc_conf_warn(const struct qsvc_conf *c, FILE *out);

/* Writes the effective configuration, one "key = value" per line, for
 * `quaid --check-config`. A setting at its default is written commented
 * out, "# key = value (default...)", so that the output is itself a
 * configuration file with the same meaning (a default that depends on the
 * host, such as the zone, stays a default). */
void qsvc_conf_print(const struct qsvc_conf *c, FILE *out);

/* Frees what init and parse allocated (roots, push_root, log_file,
 * audit_log, the policy); c can be initialised again. Twice: a no-op. */
void qsvc_conf_free(struct qsvc_conf *c);

#endif /* QUAI_STAGER_SVCCONF_H */
