/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Opening a dataset's files without following links: the one rule that
 * keeps a dataset's bytes the bytes of its own directory, so that a
 * symbolic link cannot lend one dataset's classification to another's
 * shards (docs/SECURITY.md, "Datasets are their directories").
 */
#ifndef QUAI_COMMON_BENEATH_H
#define QUAI_COMMON_BENEATH_H

#include <stdbool.h>
#include <sys/types.h>

/* Opens `name` (relative, without "." or ".." components) beneath dirfd,
 * following no symbolic link on the way: openat2() with RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS, or, where the kernel has no openat2 (before Linux
 * 5.6: ENOSYS; or a sandbox answers EPERM), openat() with O_NOFOLLOW one
 * component at a time. O_CLOEXEC
 * is added; mode is used with O_CREAT. Returns an fd, or -ELOOP when a
 * component is a symbolic link, -EXDEV when name is absolute or climbs out
 * ("..", "."), or the open's other -errno. */
int qfs_open_beneath(int dirfd, const char *name, int flags, mode_t mode);

/* Tests: true makes qfs_open_beneath() take the per-component fallback, as
 * on a kernel without openat2; false goes back to asking the kernel. */
void qfs_beneath_force_walk(bool on);

/* Opens a file of a dataset: qfs_open_beneath(), and a regular file. A
 * FIFO or device never blocks the open (O_NONBLOCK while opening, taken
 * off again). Returns an fd or -errno: -ELOOP (a symbolic link), -EFTYPE
 * (QFS_ENOTREG: not a regular file), others from the open. */
int qfs_open_member(int dirfd, const char *name, int flags, mode_t mode);

/* Opens the directory of dataset `name` in the directory atfd (a root or
 * AT_FDCWD) without following a symbolic link at its last component: a
 * dataset directory that is a link (to outside the roots, or anywhere) is
 * not a dataset of that root. Returns an fd or -errno (-ELOOP or -ENOTDIR
 * for a link, -ENOENT...). */
int qfs_open_dataset_dir(int atfd, const char *name);

/* Whether root/name is a dataset quaid may serve: a directory that is not
 * a link (qfs_open_dataset_dir()) holding a regular manifest.json of its
 * own (qfs_open_member()); root itself may be reached through links (the
 * administrator's choice). Returns 0 or -errno. */
int qfs_is_dataset(const char *root, const char *name);

/* Not a regular file: what qfs_open_member() returns for a FIFO, a device,
 * a socket or a directory. */
#define QFS_ENOTREG EMEDIUMTYPE

/* A short reason for qfs_open_member()'s and qfs_open_dataset_dir()'s own
 * refusals ("a symbolic link...", "not a regular file..."), else
 * strerror(-r). */
const char *qfs_member_strerror(int r);

#endif
