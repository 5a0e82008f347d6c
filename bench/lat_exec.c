// SPDX-License-Identifier: GPL-2.0
/*
 * lat_exec: fork + execve + wait latency in the manner of LMBench's
 * lat_proc exec.  Usage: lat_exec N [PROGRAM]; prints the median and the
 * minimum in microseconds over N runs of PROGRAM (default /usr/bin/true).
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

int main(int argc, char **argv)
{
	const char *prog = argc > 2 ? argv[2] : "/usr/bin/true";
	int i, n = argc > 1 ? atoi(argv[1]) : 0;
	double *t;

	if (n <= 0) {
		fprintf(stderr, "usage: lat_exec N [PROGRAM]\n");
		return 2;
	}
	t = calloc(n, sizeof(*t));
	if (!t)
		return 1;
	for (i = 0; i < n; i++) {
		double start = now_us();
		int status;
		pid_t pid = fork();

		if (pid < 0)
			return 1;
		if (pid == 0) {
			char *args[] = { (char *)prog, NULL };

			execv(prog, args);
			_exit(127);
		}
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0) {
			fprintf(stderr, "lat_exec: %s did not run\n", prog);
			return 1;
		}
		t[i] = now_us() - start;
	}
	qsort(t, n, sizeof(*t), cmp);
	printf("%.1f %.1f\n", t[n / 2], t[0]);
	return 0;
}
