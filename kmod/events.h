/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The table of events: every BSM event the kernel emits, described once.
 * Numbers and classes are OpenBSM's (audit_event); the daemon replaces the
 * classes with those of the audit_event file it reads.
 *
 * Two kinds of rows.  LXBSM_HANDLER_EVENTS: X(name, AUE number, default
 * classes), events whose handlers (ev_*.c) write their records themselves,
 * as their hooks (hooks.c) see them.  LXBSM_TABLE_EVENTS: events the table
 * describes whole, hooks, capture and tokens, written by the one path of
 * ev_sys.c; adding an audited system call is a row there (below).
 * LXBSM_EVENTS(X) is both, as X(name, AUE number, default classes).
 *
 * The OPEN_* and OPENAT_* runs must stay in this order: the event of an open
 * is computed as the first of the run plus an offset (see ev_file.c).
 */
#ifndef LXBSM_EVENTS_H
#define LXBSM_EVENTS_H

#define AU_FR	0x00000001	/* file read */
#define AU_FW	0x00000002	/* file write */
#define AU_FA	0x00000004	/* file attribute access */
#define AU_FM	0x00000008	/* file attribute modify */
#define AU_FC	0x00000010	/* file create */
#define AU_FD	0x00000020	/* file delete */
#define AU_CL	0x00000040	/* file close */
#define AU_PC	0x00000080	/* process */
#define AU_NT	0x00000100	/* network */
#define AU_AD	0x00000800	/* administrative */
#define AU_LO	0x00001000	/* login/logout */
#define AU_AA	0x00002000	/* authentication and authorization */
#define AU_EX	0x40000000	/* exec */
#define AU_OT	0x80000000	/* miscellaneous */

#define LXBSM_HANDLER_EVENTS(X)						\
	X(EXECVE,	23,	AU_PC | AU_EX)				\
	X(EXECVEAT,	43262,	AU_PC | AU_EX)				\
	X(FEXECVE,	43144,	AU_PC | AU_EX)				\
	X(OPEN,		3,	AU_FA)					\
	X(OPEN_R,	72,	AU_FR)					\
	X(OPEN_RC,	73,	AU_FC | AU_FR | AU_FA | AU_FM)		\
	X(OPEN_RT,	74,	AU_FD | AU_FR | AU_FA | AU_FM)		\
	X(OPEN_RTC,	75,	AU_FC | AU_FD | AU_FR | AU_FA | AU_FM)	\
	X(OPEN_W,	76,	AU_FW)					\
	X(OPEN_WC,	77,	AU_FC | AU_FW | AU_FA | AU_FM)		\
	X(OPEN_WT,	78,	AU_FD | AU_FW | AU_FA | AU_FM)		\
	X(OPEN_WTC,	79,	AU_FC | AU_FD | AU_FW | AU_FA | AU_FM)	\
	X(OPEN_RW,	80,	AU_FR | AU_FW)				\
	X(OPEN_RWC,	81,	AU_FC | AU_FW | AU_FR | AU_FA | AU_FM)	\
	X(OPEN_RWT,	82,	AU_FD | AU_FR | AU_FW | AU_FA | AU_FM)	\
	X(OPEN_RWTC,	83,	AU_FC | AU_FD | AU_FW | AU_FR | AU_FA | AU_FM) \
	X(OPENAT,	43184,	AU_FA)					\
	X(OPENAT_R,	270,	AU_FR)					\
	X(OPENAT_RC,	271,	AU_FC | AU_FR | AU_FA | AU_FM)		\
	X(OPENAT_RT,	272,	AU_FD | AU_FR | AU_FA | AU_FM)		\
	X(OPENAT_RTC,	273,	AU_FC | AU_FD | AU_FR | AU_FA | AU_FM)	\
	X(OPENAT_W,	274,	AU_FW)					\
	X(OPENAT_WC,	275,	AU_FC | AU_FW | AU_FA | AU_FM)		\
	X(OPENAT_WT,	276,	AU_FD | AU_FW | AU_FA | AU_FM)		\
	X(OPENAT_WTC,	277,	AU_FC | AU_FD | AU_FW | AU_FA | AU_FM)	\
	X(OPENAT_RW,	278,	AU_FR | AU_FW)				\
	X(OPENAT_RWC,	279,	AU_FC | AU_FW | AU_FR | AU_FA | AU_FM)	\
	X(OPENAT_RWT,	280,	AU_FD | AU_FW | AU_FR | AU_FA | AU_FM)	\
	X(OPENAT_RWTC,	281,	AU_FC | AU_FD | AU_FW | AU_FR | AU_FA | AU_FM) \
	X(CREAT,	4,	AU_FC)					\
	X(CLOSE,	112,	AU_CL)					\
	X(FORK,		2,	AU_PC)					\
	X(VFORK,	25,	AU_PC)					\
	X(EXIT,		1,	AU_PC)					\
	X(SETUID,	200,	AU_PC)					\
	X(SETGID,	205,	AU_PC)					\
	X(SETREUID,	40,	AU_PC)					\
	X(SETREGID,	41,	AU_PC)					\
	X(SETRESUID,	43057,	AU_PC)					\
	X(SETRESGID,	43059,	AU_PC)					\
	X(SETFSUID,	43072,	AU_OT)					\
	X(SETFSGID,	43073,	AU_OT)					\
	X(SETGROUPS,	26,	AU_PC)					\
	X(SETAUID,	131,	AU_AD)					\
	X(ACCEPT,	33,	AU_NT)					\
	X(CONNECT,	32,	AU_NT)					\
	X(BIND,		34,	AU_NT)					\
	X(MMAP,		210,	0)					\
	X(LOGIN,	6152,	AU_LO)					\
	X(LOGOUT,	6153,	AU_LO)					\
	X(SU,		6159,	AU_LO)					\
	X(OPENSSH,	32800,	AU_LO)					\
	X(SUDO,		45028,	AU_AA)					\
	X(LOST,		33002,	0)					\
	X(JWRITE,	33003,	AU_FW)					\
	X(JTRUNCATE,	33004,	AU_FW)					\
	X(JCREATE,	33005,	AU_FC)					\
	X(JUNLINK,	33006,	AU_FD)					\
	X(JRENAME,	33007,	AU_FC | AU_FD)				\
	X(JLINK,	33008,	AU_FC)					\
	X(JMETA,	33009,	AU_FM)					\
	X(JLOST,	33010,	AU_FW)

/*
 * The table-driven events.  E(P, name, AUE number, default classes,
 * (recipe)), P passed through.  The recipe lists the record's tokens
 * between header and subject, in order (FreeBSD's kaudit_to_bsm() for the
 * event); i is the index of a system call argument:
 *
 *   T_ARG32(n, text, i)	arg32 n text = argument i
 *   T_FD_VNODE(n, i)	FreeBSD's FD_VNODE1: arg32 n "fd" = argument i, and
 *			the file's path and attr32; arg32 n "non-file: fd" if
 *			the call resolved no file
 *   T_UPATH_VNODE(d, i)	FreeBSD's UPATH1_VNODE1: the path and attr32 of the
 *			file the call resolved; if it resolved none (it failed
 *			first), name argument i as the caller gave it, made
 *			absolute from directory fd argument d (-1: the cwd)
 *
 * "The file the call resolved" is captured inside the call, from the path
 * the kernel itself looked up, by a capture kprobe (K below) calling
 * lxbsm_sys_capture(): never the caller's name read again after the call.
 *
 * LXBSM_TABLE_CALLS(C): C(event, system call, required), each of the
 * call's entry points (arch.h, LXBSM_SYSCALL_HOOKS) a hook.
 * LXBSM_TABLE_CAPTURES(K): K(kernel function, required, handler), the
 * capture kprobes; the handler is int handler(struct kprobe *, struct
 * pt_regs *), in the ev_*.c file of its family.
 */
#define LXBSM_TABLE_EVENTS(E, P)					\
	E(P, CHMOD,	10,	AU_FM,					\
	  (T_ARG32(2, "new file mode", 1), T_UPATH_VNODE(-1, 0)))	\
	E(P, FCHMOD,	39,	AU_FM,					\
	  (T_ARG32(2, "new file mode", 1), T_FD_VNODE(1, 0)))		\
	E(P, FCHMODAT,	43146,	AU_FM,					\
	  (T_ARG32(1, "at fd 1", 0), T_ARG32(3, "new file mode", 2),	\
	   T_UPATH_VNODE(0, 1)))

#define LXBSM_TABLE_CALLS(C)						\
	C(CHMOD,	chmod,		true)				\
	C(FCHMOD,	fchmod,		true)				\
	C(FCHMODAT,	fchmodat,	true)				\
	C(FCHMODAT,	fchmodat2,	false)	/* 6.6 on */

#define LXBSM_TABLE_CAPTURES(K)						\
	K("security_path_chmod", true, lxbsm_chmod_capture)

/* A table row as a handler row. */
#define LXBSM_TABLE_AS_HANDLER(X, name, aue, classes, recipe) X(name, aue, classes)

#define LXBSM_EVENTS(X)							\
	LXBSM_HANDLER_EVENTS(X)						\
	LXBSM_TABLE_EVENTS(LXBSM_TABLE_AS_HANDLER, X)

enum lxbsm_event {
#define LXBSM_EV_ENUM(name, aue, classes) LXBSM_EV_##name,
	LXBSM_EVENTS(LXBSM_EV_ENUM)
#undef LXBSM_EV_ENUM
	LXBSM_EV_NR
};

/* JLOST is the last handler row: the table-driven events follow it. */
#define LXBSM_EV_TABLE_FIRST	(LXBSM_EV_JLOST + 1)

#endif /* LXBSM_EVENTS_H */
