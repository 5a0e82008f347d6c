// SPDX-License-Identifier: GPL-2.0
/*
 * lat_sys: LMBench-style latency microbenchmarks (lat_syscall, lat_proc,
 * lat_connect, lat_pipe) in one program.
 *
 *   lat_sys [-s SCALE] [-f FILE] [-p HELLO] [-w DIR] TEST...
 *
 * TEST is one of null, open_close, stat, fork, exec, sh, tcp_connect, pipe,
 * write_4k, write_1m.
 * Each test takes SAMPLES samples of BATCH operations (both scaled by
 * SCALE, default 1.0), after one unmeasured batch; a sample is the batch's
 * time divided by BATCH.  Prints one JSON object: test -> median of the
 * samples in microseconds.
 *
 *   null         getppid(2) through syscall(2), as lat_syscall null
 *   open_close   open(FILE, O_RDONLY) + close, as lat_syscall open
 *   stat         stat(FILE), as lat_syscall stat
 *   fork         fork + _exit in the child + waitpid, as lat_proc fork
 *   exec         fork + execve(HELLO) + waitpid, as lat_proc exec
 *   sh           fork + execve(/bin/sh -c HELLO) + waitpid, as lat_proc shell
 *   tcp_connect  socket + connect to 127.0.0.1 + the server's accept and
 *                close seen as EOF + close, as lat_connect
 *   pipe         one byte there and back between two processes, as lat_pipe
 *   write_4k     pwrite of 4 KiB + fsync, to DIR/lat_sys.write (made anew for
 *                the test), at the next 4 KiB of its first MiB in turn
 *   write_1m     pwrite of 1 MiB + fsync, the same file made anew, at the
 *                next MiB of its first 4 MiB in turn (a write's bytes differ
 *                from the previous write's at the same place)
 *
 *   lat_sys -t SECONDS -j WORKERS [-f FILE] [-p HELLO] storm
 *
 * runs WORKERS processes for SECONDS, each looping over fork + exit, exec
 * of HELLO and 8 open + close of FILE, and prints the loops done: the
 * fastest event rate a process can make, for the loss tests next to
 * stress-ng's.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *file = "/tmp/lat_sys.file";
static const char *hello = "/usr/bin/true";
static int tcp_port;
static const char *write_dir = "/tmp";

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void reap(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "lat_sys: child %d failed (status %d)\n", pid, status);
		exit(1);
	}
}

static void op_null(void)
{
	syscall(SYS_getppid);
}

static void op_open_close(void)
{
	int fd = open(file, O_RDONLY);

	if (fd < 0)
		die(file);
	close(fd);
}

static void op_stat(void)
{
	struct stat st;

	if (stat(file, &st) < 0)
		die(file);
}

static void op_fork(void)
{
	pid_t pid = fork();

	if (pid < 0)
		die("fork");
	if (pid == 0)
		_exit(0);
	reap(pid);
}

static void run_prog(char *const argv[])
{
	pid_t pid = fork();

	if (pid < 0)
		die("fork");
	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	reap(pid);
}

static void op_exec(void)
{
	char *argv[] = { (char *)hello, NULL };

	run_prog(argv);
}

static void op_sh(void)
{
	char *argv[] = { "/bin/sh", "-c", (char *)hello, NULL };

	run_prog(argv);
}

static void op_tcp_connect(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(tcp_port) };
	int s = socket(AF_INET, SOCK_STREAM, 0);
	char c;

	if (s < 0)
		die("socket");
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	/* EOF once the server has accepted and closed its end. */
	if (read(s, &c, 1) != 0)
		die("read");
	close(s);
}

static pid_t tcp_server(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0);
	pid_t pid;

	if (ls < 0)
		die("socket");
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 128) < 0 ||
	    getsockname(ls, (struct sockaddr *)&sa, &len) < 0)
		die("listen");
	tcp_port = ntohs(sa.sin_port);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		for (;;) {
			int c = accept(ls, NULL, NULL);

			if (c >= 0)
				close(c);
			else if (errno != EINTR)
				_exit(1);
		}
	}
	close(ls);
	return pid;
}

static int pipe_to[2], pipe_from[2];
static int storm_fds[256];

static void op_pipe(void)
{
	char c = 'x';

	if (write(pipe_to[1], &c, 1) != 1 || read(pipe_from[0], &c, 1) != 1)
		die("pipe");
}

static pid_t pipe_echo(void)
{
	pid_t pid;

	if (pipe(pipe_to) < 0 || pipe(pipe_from) < 0)
		die("pipe");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		char c;

		close(pipe_to[1]);
		close(pipe_from[0]);
		while (read(pipe_to[0], &c, 1) == 1)
			if (write(pipe_from[1], &c, 1) != 1)
				_exit(1);
		_exit(0);
	}
	close(pipe_to[0]);
	close(pipe_from[1]);
	return pid;
}

#define WRITE_BUF (1 << 20)
static int write_fd = -1;
static char *write_buf;
static unsigned long write_n;

/* Each write's bytes: the buffer, shifted by a byte per write. */
static void write_at(size_t len, off_t span)
{
	off_t off = (off_t)((write_n * len) % (size_t)span);
	size_t shift = write_n % 251;

	write_n++;
	if (pwrite(write_fd, write_buf + shift, len, off) != (ssize_t)len || fsync(write_fd) < 0)
		die("write");
}

static void op_write_4k(void)
{
	write_at(4096, 1 << 20);
}

static void op_write_1m(void)
{
	write_at(1 << 20, 4 << 20);
}

static void write_setup(void)
{
	char path[4096];
	size_t i;

	if (!write_buf) {
		write_buf = malloc(WRITE_BUF + 256);
		if (!write_buf)
			die("malloc");
		for (i = 0; i < WRITE_BUF + 256; i++)
			write_buf[i] = (char)(i * 7 + i / 4096);
	}
	snprintf(path, sizeof(path), "%s/lat_sys.write", write_dir);
	write_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (write_fd < 0)
		die(path);
	write_n = 0;
}

struct test {
	const char *name;
	void (*op)(void);
	int samples, batch;
};

static const struct test tests[] = {
	{ "null", op_null, 15, 2000 },
	{ "open_close", op_open_close, 15, 200 },
	{ "stat", op_stat, 15, 400 },
	{ "fork", op_fork, 63, 12 },	/* fewer: rounds spread 3-4 points (docs/bench.md) */
	{ "exec", op_exec, 21, 1 },
	{ "sh", op_sh, 11, 1 },
	{ "tcp_connect", op_tcp_connect, 15, 40 },
	{ "pipe", op_pipe, 15, 200 },
	{ "write_4k", op_write_4k, 15, 64 },
	{ "write_1m", op_write_1m, 11, 4 },
};

static double measure(const struct test *t, double scale)
{
	int samples = (int)(t->samples * scale + 0.5) | 1; /* odd: a true median */
	int batch = (int)(t->batch * scale + 0.5);
	double *s, med;
	int i, j;

	if (batch < 1)
		batch = 1;
	s = calloc(samples, sizeof(*s));
	if (!s)
		die("calloc");
	for (j = 0; j < batch; j++) /* warm-up */
		t->op();
	for (i = 0; i < samples; i++) {
		double start = now_us();

		for (j = 0; j < batch; j++)
			t->op();
		s[i] = (now_us() - start) / batch;
	}
	qsort(s, samples, sizeof(*s), cmp);
	med = s[samples / 2];
	free(s);
	return med;
}

static int storm(double seconds, int workers)
{
	long total = 0;
	int i;

	for (i = 0; i < workers; i++) {
		int p[2];
		pid_t pid;

		if (pipe(p) < 0)
			die("pipe");
		pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			double end = now_us() + seconds * 1e6;
			long loops = 0;
			int j;

			close(p[0]);
			while (now_us() < end) {
				op_fork();
				op_exec();
				for (j = 0; j < 8; j++)
					op_open_close();
				loops++;
			}
			if (write(p[1], &loops, sizeof(loops)) != sizeof(loops))
				_exit(1);
			_exit(0);
		}
		close(p[1]);
		storm_fds[i] = p[0];
	}
	for (i = 0; i < workers; i++) {
		long loops;

		if (read(storm_fds[i], &loops, sizeof(loops)) != sizeof(loops))
			die("storm worker");
		total += loops;
		close(storm_fds[i]);
	}
	while (wait(NULL) > 0)
		;
	printf("{\"loops\": %ld, \"workers\": %d, \"seconds\": %.1f}\n", total, workers,
	       seconds);
	return 0;
}

static const struct test *find(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
		if (!strcmp(tests[i].name, name))
			return &tests[i];
	return NULL;
}

int main(int argc, char **argv)
{
	double scale = 1.0, seconds = 0;
	int workers = 1;
	const char *sep = "";
	int opt, i, fd;

	while ((opt = getopt(argc, argv, "s:f:p:t:j:w:")) != -1) {
		switch (opt) {
		case 't':
			seconds = atof(optarg);
			break;
		case 'j':
			workers = atoi(optarg);
			break;
		case 's':
			scale = atof(optarg);
			break;
		case 'f':
			file = optarg;
			break;
		case 'p':
			hello = optarg;
			break;
		case 'w':
			write_dir = optarg;
			break;
		default:
			goto usage;
		}
	}
	if (optind >= argc || scale <= 0)
		goto usage;
	if (!strcmp(argv[optind], "storm")) {
		if (seconds <= 0 || workers < 1 || workers > 256)
			goto usage;
		fd = open(file, O_RDONLY | O_CREAT, 0644);
		if (fd < 0)
			die(file);
		close(fd);
		return storm(seconds, workers);
	}
	for (i = optind; i < argc; i++)
		if (!find(argv[i])) {
			fprintf(stderr, "lat_sys: unknown test '%s'\n", argv[i]);
			goto usage;
		}
	fd = open(file, O_RDONLY | O_CREAT, 0644);
	if (fd < 0)
		die(file);
	close(fd);
	signal(SIGPIPE, SIG_IGN);

	printf("{");
	for (i = optind; i < argc; i++) {
		const struct test *t = find(argv[i]);
		pid_t helper = 0;
		double us;

		if (!strcmp(t->name, "tcp_connect"))
			helper = tcp_server();
		else if (!strcmp(t->name, "pipe"))
			helper = pipe_echo();
		else if (!strncmp(t->name, "write_", 6))
			write_setup();
		us = measure(t, scale);
		if (write_fd >= 0) {
			close(write_fd);
			write_fd = -1;
		}
		if (helper > 0) {
			if (!strcmp(t->name, "pipe")) {
				close(pipe_to[1]);
				close(pipe_from[0]);
			} else {
				kill(helper, SIGKILL);
			}
			waitpid(helper, NULL, 0);
		}
		printf("%s\"%s\": %.3f", sep, t->name, us);
		sep = ", ";
		fflush(stdout);
	}
	printf("}\n");
	return 0;
usage:
	fprintf(stderr,
		"usage: lat_sys [-s SCALE] [-f FILE] [-p PROGRAM] [-w DIR] TEST...\n"
		"       lat_sys -t SECONDS -j WORKERS [-f FILE] [-p PROGRAM] storm\n"
		"tests: null open_close stat fork exec sh tcp_connect pipe write_4k write_1m\n");
	return 2;
}
