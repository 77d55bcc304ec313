/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quai_unpack(): restores a dataset's input. Every frame is verified by the
 * reader before any of its bytes are written, and the result is built under
 * the hidden partial name and renamed into place once synced.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "fsutil.h"

/* The format keeps no file modes and no empty directories (docs/FORMAT.md):
 * unpack writes files 0644 and directories 0755, less the umask; a
 * sensitive dataset's 0600 and 0700, whatever the source's were (issue 22
 * #16: a 0600 source came back world-readable). */
struct unpack_modes {
	mode_t file, dir;
};

static struct unpack_modes modes_for(const quai_dataset *ds)
{
	if (ds->m.classification == QUAI_CLASS_SENSITIVE)
		return (struct unpack_modes){0600, 0700};
	return (struct unpack_modes){0644, 0755};
}

/* Creates the directories leading to `name` under dirfd. */
static int make_parents(int dirfd, const char *name, size_t len, mode_t mode)
{
	char buf[QUAI_RECORD_NAME_MAX + 1];
	memcpy(buf, name, len);
	buf[len] = '\0';
	for (char *p = strchr(buf, '/'); p; p = strchr(p + 1, '/')) {
		*p = '\0';
		if (mkdirat(dirfd, buf, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

static int unpack_files(quai_dataset *ds, quai_reader *rd, int dirfd, uint64_t records,
			const char *tmp, char *err, size_t err_len)
{
	char name[QUAI_RECORD_NAME_MAX + 1];
	struct unpack_modes mo = modes_for(ds);
	for (uint64_t i = 0; i < records; i++) {
		const char *n;
		size_t nlen;
		const void *data;
		size_t len;
		int r = quai_dataset_record_name(ds, i, &n, &nlen);
		if (r < 0)
			return r;
		memcpy(name, n, nlen);
		name[nlen] = '\0';
		r = quai_reader_record(rd, i, &data, &len);
		if (r < 0) {
			qfs_err(err, err_len, name, "%s", quai_strerror(r));
			return r;
		}
		r = make_parents(dirfd, name, nlen, mo.dir);
		if (r < 0) {
			qfs_err(err, err_len, tmp, "%s", quai_strerror(r));
			return r;
		}
		int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mo.file);
		if (fd < 0) {
			r = -errno;
			qfs_err(err, err_len, name, "%s", quai_strerror(r));
			return r;
		}
		r = qfs_write_all(fd, data, len);
		if (close(fd) < 0 && r == 0)
			r = -errno;
		if (r < 0) {
			qfs_err(err, err_len, tmp, "%s", quai_strerror(r));
			return r;
		}
	}
	/* One sync of the file system covers every file and directory. */
	if (syncfs(dirfd) < 0) {
		int r = -errno;
		qfs_err(err, err_len, tmp, "%s", quai_strerror(r));
		return r;
	}
	return 0;
}

static int unpack_stream(quai_dataset *ds, quai_reader *rd, int fd, const char *tmp, char *err,
			 size_t err_len)
{
	/* The raw stream is the frames' bytes in order: write a frame at a
	 * time, once the reader has decoded and verified it. */
	for (uint64_t i = 0; i < ds->m.records;) {
		const void *data;
		size_t len;
		struct quai_record_loc loc;
		int r = quai_reader_record(rd, i, &data, &len);
		if (r == 0)
			r = quai_dataset_locate(ds, i, &loc);
		if (r < 0) {
			qfs_err(err, err_len, tmp, "record %llu: %s", (unsigned long long)i,
				quai_strerror(r));
			return r;
		}
		const struct qix_frame *f = &ds->ix[loc.shard].frames[loc.frame];
		r = qfs_write_all(fd, (const uint8_t *)data - loc.offset, f->r_size);
		if (r < 0) {
			qfs_err(err, err_len, tmp, "%s", quai_strerror(r));
			return r;
		}
		i = ds->ix[loc.shard].first_record + f->first_record + f->records;
	}
	if (fsync(fd) < 0) {
		int r = -errno;
		qfs_err(err, err_len, tmp, "%s", quai_strerror(r));
		return r;
	}
	return 0;
}

int qds_unpack(const char *path, const char *dest, char *err, size_t err_len)
{
	char tmp[PATH_MAX];
	char oerr[512];
	quai_dataset *ds = NULL;
	quai_reader *rd = NULL;
	struct quai_dataset_info info = {.size = sizeof(info)};
	int r, made = 0, fd = -1;

	if (err && err_len)
		err[0] = '\0';
	if (!path || !dest)
		return -EINVAL;
	r = quai_dataset_open(path, &ds, oerr, sizeof(oerr));
	if (r < 0) {
		qfs_err(err, err_len, path, "%s", oerr[0] ? oerr : quai_strerror(r));
		return r;
	}
	quai_dataset_info(ds, &info);
	if (qfs_exists(dest)) {
		qfs_err(err, err_len, dest, "%s", quai_strerror(QUAI_EEXISTS));
		r = -QUAI_EEXISTS;
		goto out;
	}
	r = qfs_partial_path(dest, tmp, sizeof(tmp));
	if (r < 0) {
		qfs_err(err, err_len, dest, "%s", quai_strerror(r));
		goto out;
	}
	r = quai_reader_new(ds, &rd);
	if (r < 0) {
		qfs_err(err, err_len, tmp, "%s", quai_strerror(r));
		goto out;
	}
	/* The partial (a directory of files, or one file), locked for as
	 * long as this writes it: one that another writer holds is never
	 * touched; one an interrupted unpack left is emptied under the lock. */
	int files = info.kind == QUAI_RECORDS_FILES;
	fd = qfs_partial_open(tmp, files, files ? modes_for(ds).dir : modes_for(ds).file);
	if (fd == -EBUSY) {
		r = fd;
		fd = -1;
		qfs_err(err, err_len, dest, "another quai is writing it");
		goto out;
	}
	if (fd < 0) {
		r = fd;
		fd = -1;
		qfs_err(err, err_len, tmp, "%s", quai_strerror(r));
		goto out;
	}
	made = 1;
	r = qfs_partial_clear(fd, NULL);
	if (r < 0) {
		qfs_err(err, err_len, tmp, "%s", quai_strerror(r));
		goto out;
	}
	if (files)
		r = unpack_files(ds, rd, fd, info.records, tmp, err, err_len);
	else
		r = unpack_stream(ds, rd, fd, tmp, err, err_len);
	if (r < 0)
		goto out;
	r = qfs_publish_new(tmp, dest, err, err_len);
out:
	/* Removed while still locked: no other writer has it meanwhile. */
	if (r < 0 && made)
		qfs_remove_partial(tmp);
	if (fd >= 0)
		close(fd);
	quai_reader_free(rd);
	quai_dataset_close(ds);
	return r;
}
