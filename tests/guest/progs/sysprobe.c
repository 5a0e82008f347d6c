// SPDX-License-Identifier: GPL-2.0
/*
 * sysprobe: make one system call the guest tests cannot make from Python,
 * and print its result as "ret errno" (and the child pid where there is one).
 *
 *   sysprobe vfork                 vfork(); the child exits 0
 *   sysprobe clone3                clone3() a process; the child exits 0
 *   sysprobe clone-einval          clone(CLONE_SIGHAND without CLONE_VM)
 *   sysprobe uring-openat PATH     openat through io_uring (liburing)
 *   sysprobe uring-write PATH OFF DATA  write DATA at OFF of PATH (opened
 *                                  O_WRONLY) through io_uring; prints the
 *                                  write's result
 *   sysprobe execve PATH ARG...    execve(PATH, [PATH, ARG...]); on failure
 *                                  prints the errno (built -m32 as sysprobe32
 *                                  this is the ia32 compat path)
 *   sysprobe execve-efault PATH    execve with argv pointing at address 1
 *   sysprobe execve-big PATH N SIZE  execve with N arguments of SIZE bytes each
 *   sysprobe login-closes AUID N   become audit id AUID (as pam_loginuid does),
 *                                  then make N failing close(-1) calls
 *   sysprobe execveat DIR NAME     execveat(open(DIR), NAME, [NAME], env, 0)
 *   sysprobe accept-flood N        N threads (in child processes) blocked in
 *                                  accept() on a listening 127.0.0.1 socket;
 *                                  prints its port; at EOF on stdin kills its
 *                                  process group
 *   sysprobe connect-race DIR      a Unix connect() to DIR/real that blocks
 *                                  (full backlog) while another thread
 *                                  rewrites its sockaddr to DIR/decoy; prints
 *                                  "ret errno peer rewrites" (peer from
 *                                  getpeername)
 *   sysprobe connect-flood DIR N   N threads (in child processes, one socket
 *                                  each) blocked in a Unix connect() to
 *                                  DIR/flood (backlog 0, full), and a child
 *                                  whose one blocked connect is interrupted
 *                                  by a SA_RESTART signal (and restarted);
 *                                  prints "child PID THREADS" per child,
 *                                  "signalled PID", then "ready"; at EOF on
 *                                  stdin closes the listener (every connect
 *                                  fails), prints "done PID THREADS REFUSED"
 *                                  per child and "end"
 *   sysprobe open-race PATH OTHER N  N opens of PATH while a sibling thread
 *                                  dup2()s a descriptor of OTHER onto the
 *                                  number each open returns; prints
 *                                  "opens swapped" (opens whose descriptor
 *                                  named OTHER by the time open returned)
 *   sysprobe uring-net             io_uring bind (where the kernel has it),
 *                                  connect and accept on 127.0.0.1, then an
 *                                  accept into a fixed-file slot (where the
 *                                  kernel has sparse file tables; else
 *                                  "fixed" is that error, cli2port 0);
 *                                  prints "bind connect accept srvport
 *                                  cliport fixed cli2port"
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
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

static void *blocked_accept(void *arg)
{
	accept(*(int *)arg, NULL, NULL);
	return NULL;
}

/* Each blocked accept holds a descriptor: at most this many per process. */
#define FLOOD_PER_PROC	500

static int accept_flood(int n)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	pthread_attr_t attr;
	static int srv;
	int ready[2];
	char buf[16];
	int i;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	srv = socket(AF_INET, SOCK_STREAM, 0);
	if (srv < 0 || bind(srv, (struct sockaddr *)&sa, len) || listen(srv, 16) ||
	    getsockname(srv, (struct sockaddr *)&sa, &len) || pipe(ready))
		return report(-1);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	for (; n > 0; n -= FLOOD_PER_PROC) {
		if (fork() == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			for (i = 0; i < n && i < FLOOD_PER_PROC; i++) {
				pthread_t t;

				if (pthread_create(&t, &attr, blocked_accept, &srv))
					_exit(1);
			}
			if (write(ready[1], "", 1) != 1)
				_exit(1);
			for (;;)
				pause();
		}
		if (read(ready[0], buf, 1) != 1)
			return report(-1);
	}
	printf("%d\n", ntohs(sa.sin_port));
	fflush(stdout);
	while (read(0, buf, sizeof(buf)) > 0)
		;
	kill(0, SIGKILL);
	_exit(0);
}

static struct sockaddr_un race_addr;
static char race_decoy[sizeof(race_addr.sun_path)];
static volatile int race_stop;
static volatile long race_rewrites;
static int race_ret, race_errno;

static void *racing_connect(void *arg)
{
	int fd = *(int *)arg;

	race_ret = connect(fd, (struct sockaddr *)&race_addr, sizeof(race_addr));
	race_errno = race_ret ? errno : 0;
	return NULL;
}

static void *rewriter(void *arg)
{
	(void)arg;
	while (!race_stop) {
		memcpy(race_addr.sun_path, race_decoy, sizeof(race_decoy));
		race_rewrites++;
	}
	return NULL;
}

static int unix_listener(const char *path, int backlog)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, backlog))
		return -1;
	return fd;
}

static int connect_race(const char *dir)
{
	struct sockaddr_un peer;
	socklen_t plen = sizeof(peer);
	pthread_t a, b;
	int srv, decoy, c1, c2;

	race_addr.sun_family = AF_UNIX;
	snprintf(race_addr.sun_path, sizeof(race_addr.sun_path), "%s/real", dir);
	snprintf(race_decoy, sizeof(race_decoy), "%s/decoy", dir);
	srv = unix_listener(race_addr.sun_path, 0);
	decoy = unix_listener(race_decoy, 16);
	c1 = socket(AF_UNIX, SOCK_STREAM, 0);
	c2 = socket(AF_UNIX, SOCK_STREAM, 0);
	if (srv < 0 || decoy < 0 || c1 < 0 || c2 < 0 ||
	    connect(c1, (struct sockaddr *)&race_addr, sizeof(race_addr)))
		return report(-1);
	/* The backlog is full: c2's connect sleeps until srv accepts c1. */
	pthread_create(&a, NULL, racing_connect, &c2);
	usleep(300000);
	pthread_create(&b, NULL, rewriter, NULL);
	usleep(300000);
	if (accept(srv, NULL, NULL) < 0)
		return report(-1);
	pthread_join(a, NULL);
	race_stop = 1;
	pthread_join(b, NULL);
	memset(&peer, 0, sizeof(peer));
	getpeername(c2, (struct sockaddr *)&peer, &plen);
	printf("%d %d %s %ld\n", race_ret, race_errno, peer.sun_path, race_rewrites);
	return 0;
}

static struct sockaddr_un flood_addr;
static volatile pid_t flood_tid;
static volatile sig_atomic_t flood_signals;

static void *blocked_connect(void *arg)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	flood_tid = gettid();
	*(int *)arg = fd < 0 || !connect(fd, (struct sockaddr *)&flood_addr, sizeof(flood_addr)) ?
		      -1 : errno;
	return NULL;
}

static void flood_signal(int sig)
{
	(void)sig;
	flood_signals++;
}

/* Is thread tid asleep in connect()? */
static int in_connect(pid_t tid)
{
	char path[64], buf[256];
	FILE *f;
	int nr = -1, ok;
	char state = 0;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	ok = fscanf(f, "%d", &nr) == 1;
	fclose(f);
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fgets(buf, sizeof(buf), f) && strrchr(buf, ')'))
		state = strrchr(buf, ')')[2];
	fclose(f);
	return ok && nr == SYS_connect && state == 'S';
}

static void flood_child(int n, int ready, int sig)
{
	pthread_t *t = calloc(n, sizeof(*t));
	int *res = calloc(n, sizeof(*res));
	struct sigaction sa = { .sa_handler = flood_signal, .sa_flags = SA_RESTART };
	pthread_attr_t attr;
	int i, refused = 0;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	sigaction(SIGUSR1, &sa, NULL);
	for (i = 0; i < n; i++)
		if (pthread_create(&t[i], &attr, blocked_connect, &res[i]))
			_exit(1);
	if (sig) {
		while (!flood_tid || !in_connect(flood_tid))
			usleep(10000);
		pthread_kill(t[0], SIGUSR1);
		while (!flood_signals || !in_connect(flood_tid))
			usleep(10000);
		printf("signalled %d\n", getpid());
	} else {
		printf("child %d %d\n", getpid(), n);
	}
	fflush(stdout);
	if (write(ready, "", 1) != 1)
		_exit(1);
	for (i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		refused += res[i] == ECONNREFUSED;
	}
	printf("done %d %d %d\n", getpid(), n, refused);
	fflush(stdout);
	_exit(0);
}

static int connect_flood(const char *dir, int n)
{
	int srv, c0, ready[2], k;
	char buf[16];

	flood_addr.sun_family = AF_UNIX;
	snprintf(flood_addr.sun_path, sizeof(flood_addr.sun_path), "%s/flood", dir);
	srv = unix_listener(flood_addr.sun_path, 0);
	c0 = socket(AF_UNIX, SOCK_STREAM, 0);
	/* c0 fills the backlog: every later connect sleeps until srv goes */
	if (srv < 0 || c0 < 0 || connect(c0, (struct sockaddr *)&flood_addr, sizeof(flood_addr)) ||
	    pipe(ready))
		return report(-1);
	for (; n > -FLOOD_PER_PROC; n -= FLOOD_PER_PROC) {
		k = n > 0 ? (n < FLOOD_PER_PROC ? n : FLOOD_PER_PROC) : 1;
		if (fork() == 0) {
			close(srv);
			close(c0);
			flood_child(k, ready[1], n <= 0);
		}
		if (read(ready[0], buf, 1) != 1)
			return report(-1);
	}
	printf("ready\n");
	fflush(stdout);
	while (read(0, buf, sizeof(buf)) > 0)
		;
	close(srv);
	while (wait(NULL) > 0)
		;
	printf("end\n");
	return 0;
}

static volatile int dup_target = -1;
static int dup_other;

static void *dup_loop(void *arg)
{
	(void)arg;
	while (!race_stop) {
		int t = dup_target;

		if (t >= 0)
			dup2(dup_other, t);
	}
	return NULL;
}

static int open_race(const char *path, const char *other, int n)
{
	struct stat want, got;
	long swapped = 0;
	pthread_t t;
	int i, fd;

	dup_other = open(other, O_RDONLY);
	fd = open(path, O_RDONLY);
	if (dup_other < 0 || fd < 0 || fstat(fd, &want))
		return report(-1);
	close(fd);
	dup_target = fd;	/* the number every open below returns first */
	pthread_create(&t, NULL, dup_loop, NULL);
	for (i = 0; i < n; i++) {
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		if (!fstat(fd, &got) && got.st_ino != want.st_ino)
			swapped++;
		close(fd);
	}
	race_stop = 1;
	pthread_join(t, NULL);
	printf("%d %ld\n", n, swapped);
	return 0;
}

#ifdef WITH_URING
/* Not in liburing 2.3's headers: Linux 6.11's numbers. */
#define OP_BIND		56

static int uring_one(struct io_uring *ring)
{
	struct io_uring_cqe *cqe;
	int ret;

	io_uring_submit(ring);
	if (io_uring_wait_cqe(ring, &cqe))
		return -EIO;
	ret = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return ret;
}

static int uring_net(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET }, peer;
	socklen_t len = sizeof(sa), plen = sizeof(peer);
	struct io_uring_sqe *sqe;
	struct io_uring ring;
	int srv, cli, cli2, bret, cret, aret, fret;

	if (io_uring_queue_init(8, &ring, 0) < 0)
		return report(-1);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	srv = socket(AF_INET, SOCK_STREAM, 0);
	cli = socket(AF_INET, SOCK_STREAM, 0);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_rw(OP_BIND, sqe, srv, &sa, 0, sizeof(sa));
	bret = uring_one(&ring);
	if (bret == -EINVAL && bind(srv, (struct sockaddr *)&sa, sizeof(sa)))
		return report(-1);
	if (listen(srv, 4) || getsockname(srv, (struct sockaddr *)&sa, &len))
		return report(-1);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_connect(sqe, cli, (struct sockaddr *)&sa, sizeof(sa));
	cret = uring_one(&ring);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_accept(sqe, srv, NULL, NULL, 0);
	aret = uring_one(&ring);
	getsockname(cli, (struct sockaddr *)&peer, &plen);
	printf("%d %d %d %d %d ", bret, cret, aret, ntohs(sa.sin_port), ntohs(peer.sin_port));
	/*
	 * an accept into a fixed-file slot: no descriptor is installed.  A
	 * kernel without sparse file tables (5.19) has no such accept (5.15)
	 * either: the error is printed in its place.
	 */
	fret = io_uring_register_files_sparse(&ring, 4);
	if (fret < 0) {
		printf("%d 0\n", fret);
		io_uring_queue_exit(&ring);
		return 0;
	}
	cli2 = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(cli2, (struct sockaddr *)&sa, sizeof(sa)))
		return report(-1);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_accept(sqe, srv, NULL, NULL, 0);
	sqe->file_index = 1;	/* slot 0 (liburing 2.3's helper mangles ALLOC) */
	fret = uring_one(&ring);
	getsockname(cli2, (struct sockaddr *)&peer, &plen);
	printf("%d %d\n", fret, ntohs(peer.sin_port));
	io_uring_queue_exit(&ring);
	return 0;
}

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

static int uring_write(const char *path, const char *off, const char *data)
{
	struct io_uring ring;
	struct io_uring_sqe *sqe;
	int fd, ret;

	fd = open(path, O_WRONLY);
	if (fd < 0)
		return report(-1);
	ret = io_uring_queue_init(4, &ring, 0);
	if (ret < 0) {
		errno = -ret;
		return report(-1);
	}
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_write(sqe, fd, data, strlen(data), strtoull(off, NULL, 0));
	ret = uring_one(&ring);
	io_uring_queue_exit(&ring);
	close(fd);
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
	if (!strcmp(argv[1], "accept-flood") && argc >= 3)
		return accept_flood(atoi(argv[2]));
	if (!strcmp(argv[1], "connect-race") && argc >= 3)
		return connect_race(argv[2]);
	if (!strcmp(argv[1], "connect-flood") && argc >= 4)
		return connect_flood(argv[2], atoi(argv[3]));
	if (!strcmp(argv[1], "open-race") && argc >= 5)
		return open_race(argv[2], argv[3], atoi(argv[4]));
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
	if (!strcmp(argv[1], "uring-net"))
		return uring_net();
	if (!strcmp(argv[1], "uring-write") && argc >= 5)
		return uring_write(argv[2], argv[3], argv[4]);
#endif
	fprintf(stderr, "sysprobe: unknown command %s\n", argv[1]);
	return 2;
}
