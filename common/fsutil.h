/* SPDX-License-Identifier: Apache-2.0 */
/*
 * File helpers for crash-safe writing: whole reads and writes that retry
 * on EINTR and short transfers, the hidden "partial" sibling every writer
 * works in, and publishing it with fsync and a no-replace rename.
 */
#ifndef QUAI_COMMON_FSUTIL_H
#define QUAI_COMMON_FSUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define QFS_PARTIAL_SUFFIX ".quai-partial"

/* Writes all of buf. Returns 0 or -errno. */
int qfs_write_all(int fd, const void *buf, size_t len);

/* Writes all of buf at offset off. Returns 0 or -errno. */
int qfs_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);

/* Reads up to len bytes at off, retrying short reads until EOF. Returns
 * the number of bytes read (less than len only at end of file) or -errno. */
ssize_t qfs_pread_full(int fd, void *buf, size_t len, uint64_t off);

/* Reads up to len bytes from fd's current position, like qfs_pread_full. */
ssize_t qfs_read_full(int fd, void *buf, size_t len);

/* Reads the whole regular file `name` (relative to dirfd) into a new
 * buffer (NUL-terminated for convenience). Fails with -EFBIG when it is
 * larger than max. Returns 0 or -errno. */
int qfs_read_file(int dirfd, const char *name, size_t max, uint8_t **ret_buf, size_t *ret_len);

/* Writes `len` bytes as file `name` in dirfd (created exclusively), then
 * fsyncs it. Returns 0 or -errno. */
int qfs_write_file(int dirfd, const char *name, const void *buf, size_t len);

/* The hidden sibling of `dest` used while writing it:
 * "<dir>/.<base>.quai-partial". Returns 0, -ENAMETOOLONG, or -EINVAL when
 * dest has no last component. */
int qfs_partial_path(const char *dest, char *buf, size_t len);

/* Removes `path` and, if it is a directory, what is inside it (one level
 * of regular files: the only thing quai writes there). Missing is fine.
 * Returns 0 or -errno. For a partial of this writer's only: call it while
 * holding the partial's lock (qfs_partial_open()), before closing it. */
int qfs_remove_partial(const char *path);

/* Every writer of a partial holds its lock (flock, exclusive) for as long
 * as it works in it, so that no second writer - another process, another
 * client of quaid - writes, empties or removes it meanwhile.
 *
 * Opens the partial at `path`, creating it, and takes its lock: a
 * directory (dir nonzero: pack, pull, push, unpack of files) or a regular
 * file (unpack of lines or fixed records), opened O_RDWR. Something else
 * there (the other kind, a symbolic link: not this writer's) is removed
 * first, under its own lock when it is another quai's. What the partial
 * holds is kept, for a writer that resumes: qfs_partial_clear() empties
 * it. mode: its permissions (made with them, and set on one found there:
 * a sensitive dataset's are 0700/0600); 0 for 0755/0644 as made, and one
 * found there left as it is. The lock lasts until the returned fd is
 * closed. Returns the fd,
 * -EBUSY when another writer holds the lock, or -errno. */
int qfs_partial_open(const char *path, int dir, mode_t mode);

/* Empties a partial opened by qfs_partial_open(), whose lock the caller
 * holds: a file is truncated; a directory loses every entry (directories
 * within included) but the one named `keep` (NULL: none). Returns 0 or
 * -errno. */
int qfs_partial_clear(int fd, const char *keep);

/* fsyncs the directory holding `path` (its parent). Returns 0 or -errno. */
int qfs_fsync_parent(const char *path);

/* Renames `from` to `to`, failing with -EEXIST when `to` exists (also for
 * directories), then fsyncs the parent. Returns 0 or -errno. */
int qfs_publish(const char *from, const char *to);

/* qfs_publish() for a writer that reports to its caller: -QUAI_EEXISTS
 * when `to` exists (quai never overwrites), with err "'to': destination
 * already exists"; any other failure with err "'to': strerror". Returns 0
 * or that code. */
int qfs_publish_new(const char *from, const char *to, char *err, size_t err_len);

/* 1 when something exists at path (no symlink following), else 0. */
int qfs_exists(const char *path);

/* Sets err (if not NULL) to "'path': message". */
void qfs_err(char *err, size_t err_len, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
