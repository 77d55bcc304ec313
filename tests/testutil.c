/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <linux/capability.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testutil.h"

void tu_mkdtemp(char *buf, size_t len)
{
	const char *base = getenv("QUAI_TEST_TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	mkdir(base, 0755);
	snprintf(buf, len, "%s/t-XXXXXX", base);
	cr_assert_not_null(mkdtemp(buf), "mkdtemp %s: %s", buf, strerror(errno));
}

void tu_write(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f, "open %s: %s", path, strerror(errno));
	cr_assert_eq(fwrite(data, 1, len, f), len);
	cr_assert_eq(fclose(f), 0);
}

uint8_t *tu_read(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "open %s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *buf = malloc((size_t)n + 1);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*ret_len = (size_t)n;
	return buf;
}

void tu_fill(void *buf, size_t len, uint64_t seed, unsigned alphabet)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
	uint8_t *p = buf;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)((x >> 24) % alphabet) + (alphabet < 64 ? 'a' : 0);
	}
}

void tu_write_lines(const char *path, size_t len, uint64_t seed, unsigned alphabet, size_t first,
		    size_t mul, size_t mod)
{
	uint8_t *in = malloc(len);
	cr_assert_not_null(in);
	tu_fill(in, len, seed, alphabet);
	for (size_t i = first; i < len; i += 1 + (i * mul) % mod)
		in[i] = '\n';
	tu_write(path, in, len);
	free(in);
}

struct quai_pack_result tu_pack(const char *const *srcs, size_t n, const char *dest,
				const struct quai_pack_opts *o)
{
	struct quai_pack_result res;
	char err[512];
	int r = quai_pack(srcs, n, dest, o, &res, err, sizeof(err));
	cr_assert_eq(r, 0, "pack %s: %s (%s)", dest, quai_strerror(r), err);
	return res;
}

uint8_t *tu_record(quai_reader *r, uint64_t i, size_t *ret_len)
{
	const void *d;
	size_t len;
	int e = quai_reader_record(r, i, &d, &len);
	cr_assert_eq(e, 0, "record %llu: %s", (unsigned long long)i, quai_strerror(e));
	uint8_t *c = malloc(len + 1);
	memcpy(c, d, len);
	*ret_len = len;
	return c;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

void tu_rmtree(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int tu_forbid_mlock(void)
{
	struct rlimit rl = {64 << 10, 64 << 10};
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];
	static char probe[128 << 10];

	if (setrlimit(RLIMIT_MEMLOCK, &rl) || syscall(SYS_capget, &hdr, data))
		return -1;
	for (int k = 0; k < 2; k++) {
		uint32_t bit = k == CAP_IPC_LOCK / 32 ? 1u << (CAP_IPC_LOCK % 32) : 0;
		data[k].effective &= ~bit;
		data[k].permitted &= ~bit;
		data[k].inheritable &= ~bit;
	}
	if (syscall(SYS_capset, &hdr, data))
		return -1;
	/* The system call itself: ASan's mlock() is a no-op. */
	if (syscall(SYS_mlock, probe, sizeof(probe)) == 0) {
		syscall(SYS_munlock, probe, sizeof(probe));
		return -1;
	}
	return 0;
}
