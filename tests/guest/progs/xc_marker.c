// SPDX-License-Identifier: GPL-2.0
/*
 * xc_marker: a self-contained static-pie program (no libc) that proves it
 * ran by creating /tmp/lxbsm-xc-ran.  It runs the same whether exec'd or
 * loaded by the kernel as another program's ELF interpreter (PT_INTERP).
 */
#define SYS_OPEN	2
#define SYS_EXIT	60

static long sys3(long n, long a, long b, long c)
{
	long r;

	__asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return r;
}

void _start(void);

void _start(void)
{
	static const char marker[] = "/tmp/lxbsm-xc-ran";

	sys3(SYS_EXIT, sys3(SYS_OPEN, (long)marker, 01 | 0100, 0666) < 0, 0, 0);
	for (;;)
		;
}
