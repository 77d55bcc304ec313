/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host configuration file (private to the library).
 *
 * Format: one "key = value" setting per line. A line whose first non-blank
 * byte is '#' is a comment; blank lines are ignored; blanks (space, tab,
 * CR) around the key and the value are trimmed; keys are [a-z0-9_]+; the
 * value is the rest of the line, '=' and '#' included, unquoted, possibly
 * empty. Lines hold at most QHC_LINE_MAX bytes before their '\n', the file
 * at most QHC_FILE_MAX bytes. A key given twice, a line with no '=' or an
 * empty key, a bad key, a NUL byte or a long line makes the whole file
 * malformed. Unknown keys are the caller's to ignore.
 */
#ifndef QUAI_STAGER_HOSTCONF_H
#define QUAI_STAGER_HOSTCONF_H

#include <stddef.h>

#define QHC_DEFAULT_PATH "/etc/quai/quai.conf"
#define QHC_LINE_MAX 4096
#define QHC_FILE_MAX (1u << 20)

/* Called once per setting, in file order, and only once the whole text is
 * known to be well-formed. key and value are NUL-terminated and valid
 * during the call only. Returns 0 to go on, or a negative code to stop:
 * -QUAI_EFORMAT to reject the value (an invalid zone...), or -ENOMEM etc. */
typedef int (*qhc_setting_fn)(const char *key, const char *value, unsigned line, void *arg);

/* Parses `len` bytes of configuration text (not NUL-terminated) and calls
 * cb for each setting. Pure: no I/O, no global state; thread-safe.
 * Returns 0; -QUAI_EFORMAT when the text is malformed (cb then not called
 * at all), with *ret_err_line the 1-based line of the first fault (0 when
 * it is about the whole text) and err_msg, if given, a short message
 * without file or line, e.g. "expected 'key = value'"; -ENOMEM; or the
 * negative code cb returned, with *ret_err_line its line and err_msg
 * "invalid value for key 'KEY'". ret_err_line may be NULL. */
int qhc_parse(const char *text, size_t len, qhc_setting_fn cb, void *arg, unsigned *ret_err_line,
	      char *err_msg, size_t err_len);

/* The file to read: $QUAI_CONF when set and not empty (ignored in setuid
 * programs), else QHC_DEFAULT_PATH. Valid until the environment changes. */
const char *qhc_path(void);

/* Reads the file at `path` and parses it as qhc_parse() does. Returns 0;
 * -ENOENT when the file does not exist (err_msg untouched: absence is
 * normal); -QUAI_EFORMAT, with err_msg like "PATH:LINE: message" (or
 * "PATH: message" when the fault is not on a line, e.g. a file over
 * QHC_FILE_MAX); another -errno when it cannot be read, with err_msg
 * "PATH: strerror"; or what cb returned. */
int qhc_load(const char *path, qhc_setting_fn cb, void *arg, char *err_msg, size_t err_len);

/* The "sovereign_paths = DIR[:DIR...]" key: the absolute directories of
 * this host that the site declares sovereign storage, where sensitive data
 * may be written. A relative or empty entry makes the file malformed.
 *
 * Checks that `dest` (which need not exist yet) lies under one of them,
 * comparing whole path components after resolving symbolic links: the
 * deepest existing ancestor of dest goes through realpath(3) and the rest
 * is appended, where ".." is refused and a dangling symbolic link is not
 * followed. A listed directory that does not exist covers nothing.
 * Reads qhc_path() on each call; thread-safe. Returns 0 when dest is
 * covered; -QUAI_EPOLICY when not, with err saying why and which key of
 * which file would allow it; the error of qhc_load() (-QUAI_EFORMAT,
 * -EINVAL for a relative entry, -EACCES...) with its message when the file
 * cannot be used; or -errno with err "'DEST': strerror" when dest cannot
 * be resolved (-EACCES, -ELOOP, -ENAMETOOLONG). */
int qhc_sovereign_check(const char *dest, char *err, size_t err_len);

/* Whether this host may hold the bytes of a sensitive dataset `name` of
 * residency zone `zone`: only when the host configuration's zone is that
 * zone. `what` says what is refused, for the message ("pulled", "streamed",
 * "read"). Returns 0, or -QUAI_EPOLICY with err naming both zones and the
 * file that says this host's, or why this host's zone cannot be told. */
int qhc_zone_allows(const char *name, const char *zone, const char *what, char *err,
		    size_t err_len);

#endif /* QUAI_STAGER_HOSTCONF_H */
