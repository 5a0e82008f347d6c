/* SPDX-License-Identifier: GPL-2.0 */
/*
 * x86-64: what the event table needs to know about this architecture's
 * system calls.  Another architecture is another file like this one (arm64:
 * "__arm64_sys_" entry points, its compat calls "__arm64_compat_sys_", no
 * x32), chosen by arch.h.
 *
 * A system call's entry points are the native one (which x32 shares for
 * every call without a compat version) and the ia32 one, optional (kernels
 * built without IA32_EMULATION lack it).  The numbers are the ia32 ABI's,
 * fixed forever: compat calls report them (syscall_get_nr()).
 */
#ifndef LXBSM_ARCH_X86_64_H
#define LXBSM_ARCH_X86_64_H

#define LXBSM_ARCH_NAME			"x86_64"

/* Entry points, as kprobes name them. */
#define LXBSM_SYS(call)			"__x64_sys_" #call
#define LXBSM_SYS_COMPAT(call)		"__ia32_sys_" #call
/* Calls with a compat version: ia32, then x32. */
#define LXBSM_SYS_COMPAT_IA32(call)	"__ia32_compat_sys_" #call
#define LXBSM_SYS_COMPAT_X32(call)	"__x64_compat_sys_" #call

/*
 * H(event, entry point, required) for each entry point of @call: the native
 * one @req, the compat one optional.
 */
#define LXBSM_SYSCALL_HOOKS(H, ev, call, req)				\
	H(ev, LXBSM_SYS(call), req)					\
	H(ev, LXBSM_SYS_COMPAT(call), false)

/* ia32 syscall numbers (arch/x86/entry/syscalls/syscall_32.tbl). */
#define LXBSM_NR_COMPAT_OPEN		5
#define LXBSM_NR_COMPAT_CREAT		8
#define LXBSM_NR_COMPAT_SOCKETCALL	102
#define LXBSM_NR_COMPAT_CONNECT		362
#define LXBSM_NR_COMPAT_ACCEPT4		364

#endif /* LXBSM_ARCH_X86_64_H */
