// SPDX-License-Identifier: GPL-2.0
/*
 * sysprobe: make one system call the guest tests cannot make from Python,
 * and print its result as "ret errno" (and the child pid where there is one).
 *
 *   sysprobe vfork                 vfork(); the child exits 0
 *   sysprobe clone3                clone3() a process; the child exits 0
 *   sysprobe clone-einval          clone(CLONE_SIGHAND without CLONE_VM)
 *   sysprobe uring-openat PATH     openat through io_uring (liburing)
 *   sysprobe execve PATH ARG...    execve(PATH, [PATH, ARG...]); on failure
 *                                  prints the errno (built -m32 as sysprobe32
 *                                  this is the ia32 compat path)
 *   sysprobe execve-efault PATH    execve with argv pointing at address 1
 *   sysprobe execve-big PATH N SIZE  execve with N arguments of SIZE bytes each
 *   sysprobe login-closes AUID N   become audit id AUID (as pam_loginuid does),
 *                                  then make N failing close(-1) calls
 *   sysprobe execveat DIR NAME     execveat(open(DIR), NAME, [NAME], env, 0)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef WITH_URING
#include <liburing.h>
#include <linux/sched.h>
#endif

static int report(long ret)
{
	printf("%ld %d\n", ret, ret < 0 ? errno : 0);
	fflush(stdout);
	return 0;
}

static int do_execve(char **argv)
{
	execve(argv[0], argv, (char *[]){ "LXBSM_PROBE=1", NULL });
	return report(-1);
}

#ifdef WITH_URING
static int uring_openat(const char *path)
{
	struct io_uring ring;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	int ret;

	ret = io_uring_queue_init(4, &ring, 0);
	if (ret < 0) {
		errno = -ret;
		return report(-1);
	}
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_openat(sqe, AT_FDCWD, path, O_RDONLY, 0);
	io_uring_submit(&ring);
	io_uring_wait_cqe(&ring, &cqe);
	ret = cqe->res;
	io_uring_cqe_seen(&ring, cqe);
	io_uring_queue_exit(&ring);
	if (ret < 0) {
		errno = -ret;
		return report(-1);
	}
	return report(ret);
}

static int do_clone3(void)
{
	struct clone_args args = { .exit_signal = SIGCHLD };
	long pid = syscall(SYS_clone3, &args, sizeof(args));

	if (pid == 0)
		_exit(0);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return report(pid);
}
#endif

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	if (!strcmp(argv[1], "vfork")) {
		pid_t pid = vfork();

		if (pid == 0)
			_exit(0);
		if (pid > 0)
			waitpid(pid, NULL, 0);
		return report(pid);
	}
	if (!strcmp(argv[1], "clone-einval"))
		return report(syscall(SYS_clone, CLONE_SIGHAND | SIGCHLD, 0, 0, 0, 0));
	if (!strcmp(argv[1], "execve") && argc >= 3)
		return do_execve(argv + 2);
	if (!strcmp(argv[1], "execve-efault") && argc >= 3) {
		/* Through syscall(): the compiler rightly refuses a bad argv. */
		syscall(SYS_execve, argv[2], (char **)1, NULL);
		return report(-1);
	}
	if (!strcmp(argv[1], "execve-big") && argc >= 5) {
		int i, n = atoi(argv[3]), size = atoi(argv[4]);
		char **args = calloc(n + 2, sizeof(*args));
		char *big = malloc(size + 1);

		memset(big, 'x', size);
		big[size] = '\0';
		args[0] = argv[2];
		for (i = 1; i <= n; i++)
			args[i] = big;
		return do_execve(args);
	}
	if (!strcmp(argv[1], "login-closes") && argc >= 4) {
		int i, n = atoi(argv[3]);
		int fd = open("/proc/self/loginuid", O_WRONLY);

		if (fd < 0 || write(fd, argv[2], strlen(argv[2])) < 0)
			return report(-1);
		close(fd);		/* the first event of the new audit id */
		for (i = 0; i < n; i++)
			close(-1);
		_exit(0);
	}
	if (!strcmp(argv[1], "execveat") && argc >= 4) {
		int dfd = open(argv[2], O_RDONLY | O_DIRECTORY);
		char *args[] = { argv[3], NULL };

		syscall(SYS_execveat, dfd, argv[3], args, (char *[]){ NULL }, 0);
		return report(-1);
	}
#ifdef WITH_URING
	if (!strcmp(argv[1], "clone3"))
		return do_clone3();
	if (!strcmp(argv[1], "uring-openat") && argc >= 3)
		return uring_openat(argv[2]);
#endif
	fprintf(stderr, "sysprobe: unknown command %s\n", argv[1]);
	return 2;
}
