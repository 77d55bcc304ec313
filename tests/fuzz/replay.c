/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Runs a fuzz harness over files, without libFuzzer: each argument that is
 * a directory has every regular file in it replayed (in name order, not
 * recursing), any other argument is replayed itself. Linked with one
 * harness, it makes the seed corpus a regular test in every build.
 * Exits 1 when an argument cannot be read, so a missing corpus fails.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it; standalone builds may not */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads the whole file into an allocation of exactly its size, so that the
 * sanitizers see any read past the input. */
static int replay_file(const char *path)
{
	struct stat st;
	uint8_t *data;
	size_t len = 0;
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	data = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
	if (!data) {
		r = -ENOMEM;
		goto out;
	}
	while (len < (size_t)st.st_size) {
		ssize_t k = read(fd, data + len, (size_t)st.st_size - len);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			r = k < 0 ? -errno : -EIO;
			free(data);
			goto out;
		}
		len += (size_t)k;
	}
	LLVMFuzzerTestOneInput(data, len);
	free(data);
out:
	if (fd >= 0)
		close(fd);
	if (r < 0)
		fprintf(stderr, "%s: %s\n", path, strerror(-r));
	return r;
}

int main(int argc, char **argv)
{
	unsigned long replayed = 0;
	int status = 0;

	for (int i = 1; i < argc; i++) {
		struct dirent **names;
		struct stat st;
		int n;

		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			status = 1;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (replay_file(argv[i]) < 0)
				status = 1;
			else
				replayed++;
			continue;
		}
		n = scandir(argv[i], &names, NULL, alphasort);
		if (n < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			status = 1;
			continue;
		}
		for (int k = 0; k < n; k++) {
			char *path;

			if (asprintf(&path, "%s/%s", argv[i], names[k]->d_name) < 0) {
				status = 1;
			} else {
				if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
					if (replay_file(path) < 0)
						status = 1;
					else
						replayed++;
				}
				free(path);
			}
			free(names[k]);
		}
		free(names);
	}
	printf("replayed %lu inputs\n", replayed);
	return status;
}
