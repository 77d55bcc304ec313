/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "beneath.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

/* The per-component fallback: every directory on the way and the last
 * component opened with O_NOFOLLOW (a link there fails with ELOOP; a link
 * as a directory with ENOTDIR, reported as ELOOP after a look). */
static int open_walk(int dirfd, const char *name, int flags, mode_t mode)
{
	char part[256];
	int cur = dirfd;

	for (;;) {
		const char *slash = strchr(name, '/');
		size_t n = slash ? (size_t)(slash - name) : strlen(name);
		int fd;

		if (n == 0 || n >= sizeof(part) || (n == 1 && name[0] == '.') ||
		    (n == 2 && name[0] == '.' && name[1] == '.')) {
			if (cur != dirfd)
				close(cur);
			return n >= sizeof(part) ? -ENAMETOOLONG : -EXDEV;
		}
		memcpy(part, name, n);
		part[n] = '\0';
		if (slash)
			fd = openat(cur, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		else
			fd = openat(cur, part, flags | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd < 0) {
			int e = errno;
			struct stat st;

			if (e == ENOTDIR && fstatat(cur, part, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISLNK(st.st_mode))
				e = ELOOP;
			if (cur != dirfd)
				close(cur);
			return -e;
		}
		if (cur != dirfd)
			close(cur);
		if (!slash)
			return fd;
		cur = fd;
		name = slash + 1;
	}
}

/* -1 unknown, 0 absent, 1 present: read and written relaxed by every
 * thread that opens a file (any thread may be the first). */
static int have_openat2 = -1;

void qfs_beneath_force_walk(bool on)
{
	__atomic_store_n(&have_openat2, on ? 0 : -1, __ATOMIC_RELAXED);
}

int qfs_open_beneath(int dirfd, const char *name, int flags, mode_t mode)
{
	struct open_how how = {
	    .flags = (unsigned)(flags | O_CLOEXEC),
	    .mode = (flags & O_CREAT) ? mode : 0,
	    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};

	if (name == NULL || name[0] == '\0')
		return -ENOENT;
	if (name[0] == '/')
		return -EXDEV;
	if (__atomic_load_n(&have_openat2, __ATOMIC_RELAXED) != 0) {
		long fd = syscall(SYS_openat2, dirfd, name, &how, sizeof(how));

		if (fd >= 0) {
			__atomic_store_n(&have_openat2, 1, __ATOMIC_RELAXED);
			return (int)fd;
		}
		/* ENOSYS: a kernel before 5.6. EPERM: some container
		 * sandboxes refuse system calls they do not know that way; the
		 * walk keeps the same rule (and reports a real EPERM again). */
		if (errno != ENOSYS && errno != EPERM)
			return -errno;
		if (errno == ENOSYS)
			__atomic_store_n(&have_openat2, 0, __ATOMIC_RELAXED);
	}
	return open_walk(dirfd, name, flags, mode);
}

int qfs_open_member(int dirfd, const char *name, int flags, mode_t mode)
{
	struct stat st;
	int fd = qfs_open_beneath(dirfd, name, flags | O_NONBLOCK, mode);

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		int e = fstat(fd, &st) < 0 ? -errno : -QFS_ENOTREG;

		close(fd);
		return e;
	}
	if (!(flags & O_NONBLOCK)) {
		int fl = fcntl(fd, F_GETFL);

		if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
			int e = -errno;

			close(fd);
			return e;
		}
	}
	return fd;
}

int qfs_open_dataset_dir(int atfd, const char *name)
{
	int fd = openat(atfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;

	if (fd >= 0)
		return fd;
	if (errno == ENOTDIR && fstatat(atfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode))
		return -ELOOP;
	return -errno;
}

const char *qfs_member_strerror(int r)
{
	if (r == -ELOOP)
		return "a symbolic link (a dataset's files and directory may not be links)";
	if (r == -QFS_ENOTREG)
		return "not a regular file";
	if (r == -EXDEV)
		return "outside the dataset's directory";
	return strerror(-r);
}

int qfs_is_dataset(const char *root, const char *name)
{
	int rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC), dfd, fd;

	if (rfd < 0)
		return -errno;
	dfd = qfs_open_dataset_dir(rfd, name);
	close(rfd);
	if (dfd < 0)
		return dfd;
	fd = qfs_open_member(dfd, "manifest.json", O_RDONLY, 0);
	close(dfd);
	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}
