// SPDX-License-Identifier: GPL-2.0
/*
 * hxprobe: what tests/guest/test_hardening_xctl.py runs as an unprivileged
 * user to attack exec control.  Each mode prints one line per result.
 *
 *   pidhunt TARGET PROG [ARG...]  fork until a child gets pid TARGET, which
 *                                 then execs PROG: "hit PID STATUS" (STATUS
 *                                 100+errno: the exec failed) or "miss N"
 *   ptrace-exec PROG [ARG...]     trace a child to its PTRACE_EVENT_EXEC stop
 *                                 of PROG, print "stopped PID", wait for a
 *                                 line on stdin, detach: "exit STATUS"
 *   sametick FILE A B N           N times: write A's bytes over FILE, run it,
 *                                 write B's bytes over it, run it; "I SAME S1
 *                                 S2" (SAME: both writes left the same ctime)
 *   mapexec EVERY PROG FILE...    map each FILE PROT_EXEC (and unmap it); every
 *                                 EVERY files run PROG: "mapped N failed M"
 *   mapwait FILE                  map FILE PROT_EXEC, print "mapped", wait for
 *                                 a line on stdin
 *   pidskip N                     fork until a child's pid is at least N
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int run(char *const argv[])
{
	int status;
	pid_t pid = vfork();

	if (pid < 0) {
		perror("vfork");
		exit(2);
	}
	if (pid == 0) {
		execv(argv[0], argv);
		_exit(100 + errno);
	}
	if (waitpid(pid, &status, 0) < 0) {
		perror("waitpid");
		exit(2);
	}
	return status;
}

static int pidhunt(pid_t target, char *const argv[])
{
	FILE *f = fopen("/proc/sys/kernel/pid_max", "r");
	long tries, max = 0;

	/* Twice round the pid space: the number may have gone to someone else. */
	if (!f || fscanf(f, "%ld", &max) != 1)
		max = 1L << 22;
	if (f)
		fclose(f);
	max *= 2;

	for (tries = 0; tries < max; tries++) {
		int status;
		pid_t pid = vfork();

		if (pid < 0) {
			if (errno == EAGAIN)
				continue;
			perror("vfork");
			return 2;
		}
		if (pid == 0) {
			if (getpid() != target)
				_exit(0);
			execv(argv[0], argv);
			_exit(100 + errno);
		}
		if (waitpid(pid, &status, 0) < 0) {
			perror("waitpid");
			return 2;
		}
		if (pid == target) {
			printf("hit %d %d\n", pid, status);
			return 0;
		}
	}
	printf("miss %ld\n", tries);
	return 1;
}

static int ptrace_exec(char *const argv[])
{
	char line[16];
	int status;
	pid_t pid = fork();

	if (pid < 0) {
		perror("fork");
		return 2;
	}
	if (pid == 0) {
		ptrace(PTRACE_TRACEME, 0, NULL, NULL);
		raise(SIGSTOP);
		execv(argv[0], argv);
		_exit(100 + errno);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFSTOPPED(status))
		return 2;
	if (ptrace(PTRACE_SETOPTIONS, pid, NULL, (void *)PTRACE_O_TRACEEXEC) ||
	    ptrace(PTRACE_CONT, pid, NULL, NULL)) {
		perror("ptrace");
		return 2;
	}
	if (waitpid(pid, &status, 0) < 0)
		return 2;
	if (!WIFSTOPPED(status) || status >> 8 != (SIGTRAP | (PTRACE_EVENT_EXEC << 8))) {
		printf("no exec stop %d\n", status);
		return 1;
	}
	printf("stopped %d\n", pid);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 2;
	if (ptrace(PTRACE_DETACH, pid, NULL, NULL)) {
		perror("ptrace detach");
		return 2;
	}
	if (waitpid(pid, &status, 0) < 0)
		return 2;
	printf("exit %d\n", status);
	return 0;
}

static char *slurp(const char *path, size_t *len)
{
	struct stat st;
	char *buf;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st)) {
		perror(path);
		exit(2);
	}
	buf = malloc(st.st_size);
	if (!buf || read(fd, buf, st.st_size) != st.st_size) {
		perror(path);
		exit(2);
	}
	close(fd);
	*len = st.st_size;
	return buf;
}

static struct timespec overwrite(const char *file, const char *buf, size_t len)
{
	struct stat st;
	int fd = open(file, O_WRONLY);

	if (fd < 0 || pwrite(fd, buf, len, 0) != (ssize_t)len || close(fd) || stat(file, &st)) {
		perror(file);
		exit(2);
	}
	return st.st_ctim;
}

static int sametick(char *file, const char *a, const char *b, int n)
{
	size_t alen, blen;
	char *abuf = slurp(a, &alen), *bbuf = slurp(b, &blen);
	char *argv[] = { file, NULL };
	int i;

	for (i = 0; i < n; i++) {
		struct timespec t1, t2;
		int s1, s2;

		t1 = overwrite(file, abuf, alen);
		s1 = run(argv);
		t2 = overwrite(file, bbuf, blen);
		s2 = run(argv);
		printf("%d %d %d %d\n", i, t1.tv_sec == t2.tv_sec && t1.tv_nsec == t2.tv_nsec,
		       s1, s2);
	}
	return 0;
}

static int mapone(const char *path)
{
	int fd = open(path, O_RDONLY);
	void *p;

	if (fd < 0)
		return -1;
	p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return -1;
	munmap(p, 4096);
	return 0;
}

static int mapexec(int every, char *prog, int n, char **files)
{
	char *argv[] = { prog, NULL };
	int i, failed = 0;

	for (i = 0; i < n; i++) {
		if (every > 0 && i % every == 0)
			run(argv);
		failed += mapone(files[i]) != 0;
	}
	printf("mapped %d failed %d\n", n - failed, failed);
	return 0;
}

static int mapwait(const char *path)
{
	char line[16];
	int fd = open(path, O_RDONLY);

	if (fd < 0 || mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0) == MAP_FAILED) {
		printf("failed %d\n", errno);
		return 1;
	}
	printf("mapped\n");
	fflush(stdout);
	return fgets(line, sizeof(line), stdin) ? 0 : 1;
}

static int pidskip(pid_t n)
{
	long i;

	for (i = 0; i < (1L << 23); i++) {
		pid_t pid = vfork();

		if (pid < 0)
			return 2;
		if (pid == 0)
			_exit(0);
		waitpid(pid, NULL, 0);
		if (pid >= n)
			return 0;
	}
	return 1;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 4 && !strcmp(argv[1], "pidhunt"))
		return pidhunt(atoi(argv[2]), argv + 3);
	if (argc >= 3 && !strcmp(argv[1], "ptrace-exec"))
		return ptrace_exec(argv + 2);
	if (argc == 6 && !strcmp(argv[1], "sametick"))
		return sametick(argv[2], argv[3], argv[4], atoi(argv[5]));
	if (argc >= 4 && !strcmp(argv[1], "mapexec"))
		return mapexec(atoi(argv[2]), argv[3], argc - 4, argv + 4);
	if (argc == 3 && !strcmp(argv[1], "pidskip"))
		return pidskip(atoi(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "mapwait"))
		return mapwait(argv[2]);
	fprintf(stderr, "usage: see the comment at the top of hxprobe.c\n");
	return 2;
}
