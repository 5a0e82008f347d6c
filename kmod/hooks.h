/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The hook table (hooks.c) and the handlers it points at (ev_*.c).
 */
#ifndef LXBSM_HOOKS_H
#define LXBSM_HOOKS_H

#include <linux/binfmts.h>
#include <linux/kprobes.h>
#include <linux/net.h>
#include <linux/tracepoint.h>

#include "compat.h"
#include "lxbsm.h"

enum lxbsm_hook_kind {
	LXBSM_KRETPROBE,
	LXBSM_TRACEPOINT,
	LXBSM_KPROBE,			/* entry only: holds nothing while a call sleeps */
};

#define LXBSM_ARM_EVENTS	0x1
#define LXBSM_ARM_XC		0x2
#define LXBSM_ARM_ALSO		0x4
#define LXBSM_ARM_PROTECT	0x8	/* while some tree is protected (protect.c) */

struct lxbsm_hook {
	const char *symbol;		/* kernel function or tracepoint */
	enum lxbsm_hook_kind kind;
	bool required;			/* the module does not load without it */
	int arg;			/* handed to the handler (e.g. which call) */
	kretprobe_handler_t entry;	/* the handlers, as lxbsm_inflight() names them */
	kretprobe_handler_t ret;
	kretprobe_handler_t entry_run;	/* ... as registered: with cost accounting */
	kretprobe_handler_t ret_run;
	size_t (*data_size)(void);	/* per-call data (struct kretprobe) */
	int maxactive;			/* calls in flight at once */
	bool inflight;			/* a kprobe looks its calls up (lxbsm_inflight) */
	void *probe;			/* tracepoint probe */
	kprobe_pre_handler_t pre;	/* kprobe handler */
	/*
	 * Armed only while one of its duties is on (0: always): some mask
	 * selects one of the events ev_first .. ev_last (LXBSM_ARM_EVENTS)
	 * or the event ev_also (LXBSM_ARM_ALSO), exec control has rules
	 * (LXBSM_ARM_XC).
	 */
	u8 arm_by;
	u16 ev_first;
	u16 ev_last;
	u16 ev_also;
	/* run time */
	enum lxbsm_hook_state state;
	atomic64_t hits;
	struct kretprobe krp;		/* a kprobe uses krp.kp only */
	struct tracepoint *tp;
	bool armed;			/* enabled (else attached but disabled) */
	unsigned long missed_seen;	/* misses (hook_missed()) at the last poll */
	atomic64_t recovered;		/* another hook's misses this one recorded */
	atomic64_t dropped;		/* calls given up after entry (compat_inflight.c) */
};

/* The hook a kretprobe handler runs for. */
static inline struct lxbsm_hook *lxbsm_kret_hook(struct kretprobe_instance *ri)
{
	return container_of(lxbsm_ri_kretprobe(ri), struct lxbsm_hook, krp);
}

/* The hook a kprobe handler runs for. */
static inline struct lxbsm_hook *lxbsm_kprobe_hook(struct kprobe *p)
{
	return container_of(p, struct lxbsm_hook, krp.kp);
}

/*
 * The per-call data of current's innermost call in flight through a
 * kretprobe whose entry handler is @entry (and whose entry kept it), or
 * NULL: how a kprobe deeper in that call hands the call what it saw.
 * Only the calls of hooks marked .inflight are certain to be found (all
 * of them are with rethook; compat_inflight.c keeps these alone).
 */
void *lxbsm_inflight(kretprobe_handler_t entry);

/*
 * Cost accounting (hooks.c): a handler run between lxbsm_cost_enter() and
 * lxbsm_cost_leave() is timed, and the records it finishes are counted for
 * its hook.  Only while lxbsm_cost_on is set; preemption disabled.
 */
enum lxbsm_cost_part {
	LXBSM_COST_ENTRY,		/* entry handler, kprobe, tracepoint probe */
	LXBSM_COST_RET,			/* return handler */
};

struct lxbsm_cost_mark {
	struct lxbsm_hook *prev;
	u64 t0;
};

void lxbsm_cost_enter(struct lxbsm_hook *h, struct lxbsm_cost_mark *m);
void lxbsm_cost_leave(struct lxbsm_hook *h, enum lxbsm_cost_part part,
		      const struct lxbsm_cost_mark *m);

static inline void lxbsm_hook_hit(struct lxbsm_hook *h)
{
	atomic64_inc(&h->hits);
}

/*
 * @h took over a call another hook missed (it records it, or judges it not
 * selected): that miss is no lost record.
 */
static inline void lxbsm_hook_recovered(struct lxbsm_hook *h)
{
	atomic64_inc(&h->recovered);
}

/* ev_exec.c; which exec a hook of lxbsm_exec_entry is (its arg) */
enum lxbsm_exec_kind {
	LXBSM_EXEC_EXECVE,
	LXBSM_EXEC_EXECVEAT,
	LXBSM_EXEC_KERNEL,		/* kernel_execve: usermode helpers */
};

int lxbsm_exec_entry(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_exec_ret(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_bprm_check_entry(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_bprm_check_ret(struct kretprobe_instance *ri, struct pt_regs *regs);
size_t lxbsm_exec_data_size(void);
size_t lxbsm_bprm_check_data_size(void);
int lxbsm_exec_open_entry(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_exec_open_ret(struct kretprobe_instance *ri, struct pt_regs *regs);
size_t lxbsm_exec_open_data_size(void);
void lxbsm_exec_exit(void);
/* xctl.c */
int lxbsm_mmap_entry(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_mmap_ret(struct kretprobe_instance *ri, struct pt_regs *regs);
size_t lxbsm_mmap_data_size(void);
/* ev_file.c */
int lxbsm_open_entry(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_open_ret(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_filp_open_entry(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_filp_open_ret(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_close_entry(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_close_ret(struct kretprobe_instance *ri, struct pt_regs *regs);
size_t lxbsm_open_data_size(void);
size_t lxbsm_filp_open_data_size(void);
size_t lxbsm_close_data_size(void);
int lxbsm_fd_install_pre(struct kprobe *p, struct pt_regs *regs);
int lxbsm_sock_graft_pre(struct kprobe *p, struct pt_regs *regs);
bool lxbsm_in_io_uring(void);
/* ev_proc.c */
void lxbsm_fork_probe(void *data, struct task_struct *parent, struct task_struct *child);
void lxbsm_exit_probe(void *data, struct task_struct *p);
int lxbsm_clone_entry(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_clone_ret(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_setid_entry(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_setid_ret(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_setgroups_entry(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_setgroups_ret(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_loginuid_entry(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_loginuid_ret(struct kretprobe_instance *ri, struct pt_regs *regs);
size_t lxbsm_setid_data_size(void);
/* ev_sys.c: the table-driven events (events.h) */
int lxbsm_sys_entry(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_sys_ret(struct kretprobe_instance *ri, struct pt_regs *regs);
size_t lxbsm_sys_data_size(void);
void lxbsm_sys_capture(struct lxbsm_hook *h, const struct path *path);
void lxbsm_sys_exit(void);
/* ... and the table's capture kprobes, in the ev_*.c file of their family */
#define LXBSM_CAPTURE_PROTO(sym, req, handler) int handler(struct kprobe *p, struct pt_regs *regs);
LXBSM_TABLE_CAPTURES(LXBSM_CAPTURE_PROTO)
#undef LXBSM_CAPTURE_PROTO
/* ev_session.c */
void lxbsm_exec_probe(void *data, struct task_struct *p, pid_t old_pid,
		      struct linux_binprm *bprm);
bool lxbsm_chrooted(void);
/* ev_net.c */
int lxbsm_sock_entry(struct kretprobe_instance *ri, struct pt_regs *regs);
int lxbsm_sock_ret(struct kretprobe_instance *ri, struct pt_regs *regs);
size_t lxbsm_sock_data_size(void);
int lxbsm_bind_addr_pre(struct kprobe *p, struct pt_regs *regs);
int lxbsm_connect_pre(struct kprobe *p, struct pt_regs *regs);
void lxbsm_sock_installed(struct lxbsm_hook *h, int fd, struct socket *sock);
int lxbsm_fixed_install_pre(struct kprobe *p, struct pt_regs *regs);
/* protect.c */
int lxbsm_protect_rw_pre(struct kprobe *p, struct pt_regs *regs);
int lxbsm_protect_falloc_pre(struct kprobe *p, struct pt_regs *regs);
int lxbsm_protect_trunc_pre(struct kprobe *p, struct pt_regs *regs);
int lxbsm_protect_ftrunc_pre(struct kprobe *p, struct pt_regs *regs);
int lxbsm_protect_unlink_pre(struct kprobe *p, struct pt_regs *regs);
int lxbsm_protect_rename_pre(struct kprobe *p, struct pt_regs *regs);
int lxbsm_protect_link_pre(struct kprobe *p, struct pt_regs *regs);
int lxbsm_protect_mknod_pre(struct kprobe *p, struct pt_regs *regs);
int lxbsm_protect_chmod_pre(struct kprobe *p, struct pt_regs *regs);
int lxbsm_protect_chown_pre(struct kprobe *p, struct pt_regs *regs);
int lxbsm_protect_mmap_pre(struct kprobe *p, struct pt_regs *regs);
int lxbsm_protect_free_pre(struct kprobe *p, struct pt_regs *regs);

#endif /* LXBSM_HOOKS_H */
