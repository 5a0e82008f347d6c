// SPDX-License-Identifier: GPL-2.0
/*
 * uselib PATH: uselib(2), which on x86-64 only 32-bit processes have (built
 * -m32 as uselib32); prints "ret errno".
 */
#include <errno.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long ret;

	if (argc != 2)
		return 2;
	ret = syscall(SYS_uselib, argv[1]);
	printf("%ld %d\n", ret, ret < 0 ? errno : 0);
	return 0;
}
