/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <linux/capability.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
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
	buf[n] = 0; /* text files read as strings */
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
	return tu_limit_mlock(64 << 10);
}

int tu_limit_mlock(size_t bytes)
{
	struct rlimit rl = {bytes, bytes};
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];

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
	/* More than the limit must not lock; the system call itself, as
	 * ASan's mlock() is a no-op. */
	size_t plen = bytes + (64 << 10);
	void *probe = mmap(NULL, plen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (probe == MAP_FAILED)
		return -1;
	int locked = syscall(SYS_mlock, probe, plen) == 0;
	if (locked)
		syscall(SYS_munlock, probe, plen);
	munmap(probe, plen);
	return locked ? -1 : 0;
}

static const char *munged_path(void)
{
	static const char *const where[] = {"/usr/sbin/munged", "/usr/local/sbin/munged",
					    "/sbin/munged"};

	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++)
		if (access(where[i], X_OK) == 0)
			return where[i];
	return NULL;
}

static int munged_accepts(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd, ok;

	if (strlen(path) >= sizeof(sun.sun_path))
		return 0;
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	ok = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
	close(fd);
	return ok;
}

static void munged_show_output(const char *out)
{
	char buf[2048];
	FILE *f = fopen(out, "r");
	size_t n;

	if (!f)
		return;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	fprintf(stderr, "munged said:\n%s\n", buf);
}

/* The socket directories of the munged daemons this process started. */
static struct {
	int pid;
	char dir[32];
} socket_dirs[8];

static void remember_socket_dir(int pid, const char *dir)
{
	for (size_t i = 0; i < sizeof(socket_dirs) / sizeof(socket_dirs[0]); i++) {
		if (socket_dirs[i].pid == 0) {
			socket_dirs[i].pid = pid;
			snprintf(socket_dirs[i].dir, sizeof(socket_dirs[i].dir), "%s", dir);
			return;
		}
	}
}

/* Removes the socket munged leaves behind (and its lock file), then the
 * directory. */
static void forget_socket_dir(int pid)
{
	for (size_t i = 0; i < sizeof(socket_dirs) / sizeof(socket_dirs[0]); i++) {
		if (socket_dirs[i].pid != pid)
			continue;
		tu_rmtree(socket_dirs[i].dir);
		socket_dirs[i].pid = 0;
	}
}

int tu_munged_start(const char *dir, char *socket_out, size_t len)
{
	const char *munged = munged_path();
	char key[512], out[512], sock[512], keyarg[600], logarg[600], pidarg[600], seedarg[600];
	uint8_t secret[1024];
	pid_t parent = getpid(), pid;
	struct timespec nap = {0, 10 * 1000 * 1000};
	int fd, status;

	if (!munged) {
		fprintf(stderr, "munged is not installed (Debian: apt-get install munge)\n");
		return TU_NO_MUNGED;
	}
	snprintf(key, sizeof(key), "%s/munge.key", dir);
	snprintf(out, sizeof(out), "%s/munged.out", dir);
	/* munged refuses a socket whose directory, or any directory above it,
	 * others cannot pass through: the test's scratch directory may be
	 * below a private one (a clone in mktemp -d), so the socket gets a
	 * directory of its own under /tmp, removed by tu_munged_stop(). */
	char sdir[] = "/tmp/quai-munged-XXXXXX";
	if (!mkdtemp(sdir) || chmod(sdir, 0755) < 0) {
		fprintf(stderr, "a socket directory under /tmp: %s\n", strerror(errno));
		return -1;
	}
	snprintf(sock, sizeof(sock), "%s/munge.socket", sdir);
	if (strlen(sock) >= len) {
		fprintf(stderr, "munged socket path too long: %s\n", sock);
		rmdir(sdir);
		return -1;
	}
	if (getrandom(secret, sizeof(secret), 0) != (ssize_t)sizeof(secret)) {
		fprintf(stderr, "getrandom: %s\n", strerror(errno));
		return -1;
	}
	unlink(key);
	fd = open(key, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, secret, sizeof(secret)) != (ssize_t)sizeof(secret) || close(fd)) {
		fprintf(stderr, "writing %s: %s\n", key, strerror(errno));
		return -1;
	}
	snprintf(keyarg, sizeof(keyarg), "--key-file=%s", key);
	snprintf(logarg, sizeof(logarg), "--log-file=%s/munged.log", dir);
	snprintf(pidarg, sizeof(pidarg), "--pid-file=%s/munged.pid", dir);
	snprintf(seedarg, sizeof(seedarg), "--seed-file=%s/munged.seed", dir);

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "fork: %s\n", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		char *argv[] = {
		    (char *)munged,	  "-F", "-S", sock, keyarg, logarg, pidarg, seedarg,
		    "--origin=127.0.0.1", NULL};
		int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int in = open("/dev/null", O_RDONLY);

		/* Never outlive the test, whatever becomes of it. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent || o < 0 || in < 0)
			_exit(127);
		dup2(in, 0);
		dup2(o, 1);
		dup2(o, 2);
		close_range(3, ~0u, 0);
		execv(munged, argv);
		dprintf(2, "exec %s: %s\n", munged, strerror(errno));
		_exit(127);
	}
	for (int i = 0; i < 1000; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			fprintf(stderr, "munged exited (status 0x%x) before it was ready\n",
				status);
			munged_show_output(out);
			return -1;
		}
		if (munged_accepts(sock)) {
			snprintf(socket_out, len, "%s", sock);
			remember_socket_dir(pid, sdir);
			return pid;
		}
		nanosleep(&nap, NULL);
	}
	fprintf(stderr, "munged did not accept on %s within 10 s\n", sock);
	munged_show_output(out);
	remember_socket_dir(pid, sdir);
	tu_munged_stop(pid);
	return -1;
}

void tu_munged_stop(int pid)
{
	struct timespec nap = {0, 10 * 1000 * 1000};

	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	int gone = 0;
	for (int i = 0; i < 500 && !gone; i++) {
		gone = waitpid(pid, NULL, WNOHANG) != 0;
		if (!gone)
			nanosleep(&nap, NULL);
	}
	if (!gone) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	forget_socket_dir(pid);
}
