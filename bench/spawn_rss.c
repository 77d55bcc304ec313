/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Runs a command and reports its CPU time and peak RSS, for bench/run.
 *
 * Why not wait4() from Python directly: Linux keeps a process's peak RSS
 * across execve(), and a child forked (or vforked) from the benchmark's
 * Python process starts with Python's high-water mark, hundreds of MiB once
 * numpy has generated data. Forked from this tiny program instead, the
 * child's figure is its own (plus well under 1 MiB of this program).
 *
 * Usage: spawn_rss RESULT_FILE COMMAND [ARG...]
 * Writes "<wait status> <user s> <sys s> <maxrss KiB>" to RESULT_FILE and
 * exits 0, or exits 127 when it cannot start or wait for the command.
 * The command inherits stdin, stdout and stderr.
 */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s RESULT_FILE COMMAND [ARG...]\n", argv[0]);
		return 127;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("spawn_rss: fork");
		return 127;
	}
	if (pid == 0) {
		execvp(argv[2], argv + 2);
		fprintf(stderr, "spawn_rss: cannot run %s: ", argv[2]);
		perror(NULL);
		_exit(127);
	}
	int status;
	struct rusage ru;
	if (wait4(pid, &status, 0, &ru) < 0) {
		perror("spawn_rss: wait4");
		return 127;
	}
	FILE *f = fopen(argv[1], "w");
	if (!f) {
		perror("spawn_rss: result file");
		return 127;
	}
	fprintf(f, "%d %ld.%06ld %ld.%06ld %ld\n", status, (long)ru.ru_utime.tv_sec,
		(long)ru.ru_utime.tv_usec, (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec,
		ru.ru_maxrss);
	return fclose(f) == 0 ? 0 : 127;
}
