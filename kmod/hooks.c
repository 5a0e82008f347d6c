// SPDX-License-Identifier: GPL-2.0
/*
 * The one table of hooks: every kernel function and tracepoint lxbsm
 * attaches to, registered in order at load and unregistered in reverse at
 * unload.  A required hook that cannot be attached fails the load; an
 * optional one (an ABI this kernel lacks) is reported as missing.
 *
 * Order matters once: security_bprm_check and security_file_open come after
 * the exec hooks, so they are detached first and never see an exec whose
 * return handler is gone.
 * (Kretprobes are detached in one batch, in reverse table order, after the
 * tracepoints and the kprobes, which may look at a kretprobe's calls.)
 *
 * A kretprobe holds one instance of a fixed pool for the whole call: a call
 * that may block for as long as a user likes (accept) is recorded from a
 * kprobe at a point after the wait instead.  Whatever a hook still misses
 * (no instance left, or a probe hit inside another probe) is counted by the
 * kernel in nmissed; a timer turns every new miss into a lost record
 * (LXBSM_LOST_NO_INSTANCE), so the trail shows the gap.  A connect
 * (blocking for as long as a user likes too) is recorded late, by its task,
 * when its kretprobe missed it (ev_net.c): such a miss is recovered, not lost.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cpumask.h>
#include <linux/kernel.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/sched/clock.h>
#include <linux/string.h>
#include <linux/timer.h>
#include <linux/workqueue.h>

#include "arch.h"
#include "compat.h"
#include "hooks.h"
#include "protect.h"
#include "xctl.h"

/*
 * Cost accounting, as BPF's run_cnt/run_time_ns: per hook and per CPU, the
 * runs and nanoseconds (local_clock()) of its entry and return handlers, and
 * the records they finish with the time spent building them and writing
 * them to the ring (part of the handler's time).  Off unless the module
 * parameter cost is 1, switched at run time through sysfs; off, each
 * handler's wrapper below is a patched-out jump and a direct call.  The
 * counters only grow.  Slot ARRAY_SIZE(hooks) counts records finished
 * outside every handler (task work).
 */
struct lxbsm_cost {
	u64 calls[2];			/* enum lxbsm_cost_part */
	u64 ns[2];
	u64 records;
	u64 build_ns;
	u64 ring_ns;
};

DEFINE_STATIC_KEY_FALSE(lxbsm_cost_on);
static struct lxbsm_cost __percpu *costs;
static DEFINE_PER_CPU(struct lxbsm_hook *, cost_hook);	/* the handler running */
static DEFINE_MUTEX(cost_lock);
static bool cost_param;		/* what the parameter asks */
static bool cost_ready;		/* costs allocated, hooks table in use */

static void cost_apply(void)
{
	lockdep_assert_held(&cost_lock);
	if (cost_param && cost_ready)
		static_branch_enable(&lxbsm_cost_on);
	else
		static_branch_disable(&lxbsm_cost_on);
}

static int cost_set(const char *val, const struct kernel_param *kp)
{
	bool on;
	int ret;

	ret = kstrtobool(val, &on);
	if (ret)
		return ret;
	mutex_lock(&cost_lock);
	cost_param = on;
	cost_apply();
	mutex_unlock(&cost_lock);
	return 0;
}

static const struct kernel_param_ops cost_ops = {
	.set = cost_set,
	.get = param_get_bool,
};

module_param_cb(cost, &cost_ops, &cost_param, 0644);
MODULE_PARM_DESC(cost, "count each hook's runs, time and records (lxbsm-audit status --hooks)");

/* Preemption is disabled in every handler: cost_hook stays ours. */
void lxbsm_cost_enter(struct lxbsm_hook *h, struct lxbsm_cost_mark *m)
{
	m->prev = this_cpu_read(cost_hook);
	this_cpu_write(cost_hook, h);
	m->t0 = local_clock();
}
NOKPROBE_SYMBOL(lxbsm_cost_enter);

/*
 * A diagnostic build only (docs/bench.md, "Fifth instruction-counted run"):
 * with -DLXBSM_DIAG_EMPTY_HANDLERS=0 or =1 every kprobe and kretprobe handler
 * returns at once, an entry handler with that value (0: its return is probed
 * too; 1: it is not), so that a benchmark measures what entering the hooks
 * costs with no work in them.  Such a module records nothing from those
 * probes.  -1, the default, is the module itself.
 */
#ifndef LXBSM_DIAG_EMPTY_HANDLERS
#define LXBSM_DIAG_EMPTY_HANDLERS	(-1)
#endif

/* fn as registered: timed while accounting is on, else fn itself. */
#define COSTED(fn, part)						\
static __maybe_unused int fn##_run(struct kretprobe_instance *ri, struct pt_regs *regs)	\
{									\
	struct lxbsm_cost_mark m;					\
	int ret;							\
									\
	if (LXBSM_DIAG_EMPTY_HANDLERS >= 0)				\
		return LXBSM_DIAG_EMPTY_HANDLERS;			\
	if (!static_branch_unlikely(&lxbsm_cost_on))			\
		return fn(ri, regs);					\
	lxbsm_cost_enter(lxbsm_kret_hook(ri), &m);			\
	ret = fn(ri, regs);						\
	lxbsm_cost_leave(lxbsm_kret_hook(ri), part, &m);		\
	return ret;							\
}									\
NOKPROBE_SYMBOL(fn##_run)

#define COSTED_KPROBE(fn)						\
static int fn##_run(struct kprobe *p, struct pt_regs *regs)		\
{									\
	struct lxbsm_cost_mark m;					\
	int ret;							\
									\
	if (LXBSM_DIAG_EMPTY_HANDLERS >= 0)				\
		return 0;						\
	if (!static_branch_unlikely(&lxbsm_cost_on))			\
		return fn(p, regs);					\
	lxbsm_cost_enter(lxbsm_kprobe_hook(p), &m);			\
	ret = fn(p, regs);						\
	lxbsm_cost_leave(lxbsm_kprobe_hook(p), LXBSM_COST_ENTRY, &m);	\
	return ret;							\
}									\
NOKPROBE_SYMBOL(fn##_run)

COSTED(lxbsm_exec_entry, LXBSM_COST_ENTRY);
COSTED(lxbsm_exec_ret, LXBSM_COST_RET);
COSTED(lxbsm_bprm_check_entry, LXBSM_COST_ENTRY);
COSTED(lxbsm_bprm_check_ret, LXBSM_COST_RET);
COSTED(lxbsm_exec_open_entry, LXBSM_COST_ENTRY);
COSTED(lxbsm_exec_open_ret, LXBSM_COST_RET);
COSTED(lxbsm_mmap_entry, LXBSM_COST_ENTRY);
COSTED(lxbsm_mmap_ret, LXBSM_COST_RET);
COSTED(lxbsm_open_entry, LXBSM_COST_ENTRY);
COSTED(lxbsm_open_ret, LXBSM_COST_RET);
COSTED(lxbsm_filp_open_entry, LXBSM_COST_ENTRY);
COSTED(lxbsm_filp_open_ret, LXBSM_COST_RET);
COSTED(lxbsm_close_entry, LXBSM_COST_ENTRY);
COSTED(lxbsm_close_ret, LXBSM_COST_RET);
COSTED(lxbsm_clone_entry, LXBSM_COST_ENTRY);
COSTED(lxbsm_clone_ret, LXBSM_COST_RET);
COSTED(lxbsm_setid_entry, LXBSM_COST_ENTRY);
COSTED(lxbsm_setid_ret, LXBSM_COST_RET);
COSTED(lxbsm_setgroups_entry, LXBSM_COST_ENTRY);
COSTED(lxbsm_setgroups_ret, LXBSM_COST_RET);
COSTED(lxbsm_sock_entry, LXBSM_COST_ENTRY);
COSTED(lxbsm_sock_ret, LXBSM_COST_RET);
COSTED(lxbsm_loginuid_entry, LXBSM_COST_ENTRY);
COSTED(lxbsm_loginuid_ret, LXBSM_COST_RET);
COSTED_KPROBE(lxbsm_fd_install_pre);
COSTED_KPROBE(lxbsm_sock_graft_pre);
COSTED_KPROBE(lxbsm_connect_pre);
COSTED_KPROBE(lxbsm_bind_addr_pre);
COSTED_KPROBE(lxbsm_fixed_install_pre);
COSTED_KPROBE(lxbsm_protect_rw_pre);
COSTED_KPROBE(lxbsm_protect_falloc_pre);
COSTED_KPROBE(lxbsm_protect_trunc_pre);
COSTED_KPROBE(lxbsm_protect_ftrunc_pre);
COSTED_KPROBE(lxbsm_protect_unlink_pre);
COSTED_KPROBE(lxbsm_protect_rename_pre);
COSTED_KPROBE(lxbsm_protect_link_pre);
COSTED_KPROBE(lxbsm_protect_mknod_pre);
COSTED_KPROBE(lxbsm_protect_chmod_pre);
COSTED_KPROBE(lxbsm_protect_chown_pre);
COSTED_KPROBE(lxbsm_protect_mmap_pre);
COSTED_KPROBE(lxbsm_protect_free_pre);
/* the table-driven events' handlers (unused while the table lists no call) */
COSTED(lxbsm_sys_entry, LXBSM_COST_ENTRY);
COSTED(lxbsm_sys_ret, LXBSM_COST_RET);
#define CAPTURE_COSTED(sym, req, handler) COSTED_KPROBE(handler);
LXBSM_TABLE_CAPTURES(CAPTURE_COSTED)
#undef CAPTURE_COSTED

/* The tracepoint probes' wrappers: @data is the hook. */
static void fork_probe_run(void *data, struct task_struct *parent, struct task_struct *child)
{
	struct lxbsm_cost_mark m;

	if (!static_branch_unlikely(&lxbsm_cost_on)) {
		lxbsm_fork_probe(data, parent, child);
		return;
	}
	lxbsm_cost_enter(data, &m);
	lxbsm_fork_probe(data, parent, child);
	lxbsm_cost_leave(data, LXBSM_COST_ENTRY, &m);
}

static void exit_probe_run(void *data, struct task_struct *p)
{
	struct lxbsm_cost_mark m;

	if (!static_branch_unlikely(&lxbsm_cost_on)) {
		lxbsm_exit_probe(data, p);
		return;
	}
	lxbsm_cost_enter(data, &m);
	lxbsm_exit_probe(data, p);
	lxbsm_cost_leave(data, LXBSM_COST_ENTRY, &m);
}

static void exec_probe_run(void *data, struct task_struct *p, pid_t old_pid,
			   struct linux_binprm *bprm)
{
	struct lxbsm_cost_mark m;

	if (!static_branch_unlikely(&lxbsm_cost_on)) {
		lxbsm_exec_probe(data, p, old_pid, bprm);
		return;
	}
	lxbsm_cost_enter(data, &m);
	lxbsm_exec_probe(data, p, old_pid, bprm);
	lxbsm_cost_leave(data, LXBSM_COST_ENTRY, &m);
}

/* kretprobe instances: more than CPUs, as calls sleep (exec, open, accept) */
#define ACTIVE_SLEEPY	1024
#define ACTIVE_QUICK	256

#define KRETX(sym, req, a, e, r, size, active, track, ...)		\
	{ .symbol = sym, .kind = LXBSM_KRETPROBE, .required = req, .arg = a, \
	  .entry = e, .ret = r, .entry_run = e##_run, .ret_run = r##_run,	\
	  .data_size = size, .maxactive = active, .inflight = track, __VA_ARGS__ }
#define KRET(sym, req, a, e, r, size, active, ...)			\
	KRETX(sym, req, a, e, r, size, active, false, __VA_ARGS__)
/* armed only while some mask selects one of the events first .. last */
#define ARM(first, last)						\
	.arm_by = LXBSM_ARM_EVENTS, .ev_first = (first), .ev_last = (last)
/* ... or one more event */
#define ARM_ALSO(first, last, also)					\
	.arm_by = LXBSM_ARM_EVENTS | LXBSM_ARM_ALSO, .ev_first = (first),	\
	.ev_last = (last), .ev_also = (also)
/* ... while exec control has rules */
#define ARM_XC	.arm_by = LXBSM_ARM_XC
/* ... while some tree is protected */
#define ARM_PROTECT	.arm_by = LXBSM_ARM_PROTECT
#define PROTECT(sym, req, handler) KPROBE(sym, req, handler, ARM_PROTECT)
/* ... while either: exec records and exec control */
#define ARM_EXEC							\
	.arm_by = LXBSM_ARM_EVENTS | LXBSM_ARM_XC,			\
	.ev_first = LXBSM_EV_EXECVE, .ev_last = LXBSM_EV_FEXECVE

#define EXEC(sym, req, a)						\
	KRET(sym, req, a, lxbsm_exec_entry, lxbsm_exec_ret, lxbsm_exec_data_size, ACTIVE_SLEEPY, \
	     ARM_EXEC)
#define SETID(sym, a)							\
	KRET(sym, true, a, lxbsm_setid_entry, lxbsm_setid_ret, lxbsm_setid_data_size, ACTIVE_QUICK)
#define SETGROUPS(sym, req)						\
	KRET(sym, req, 0, lxbsm_setgroups_entry, lxbsm_setgroups_ret, lxbsm_setid_data_size, \
	     ACTIVE_QUICK, ARM(LXBSM_EV_SETGROUPS, LXBSM_EV_SETGROUPS))
#define SOCK(sym, req, a, ...)						\
	KRET(sym, req, a, lxbsm_sock_entry, lxbsm_sock_ret, lxbsm_sock_data_size, ACTIVE_SLEEPY, \
	     __VA_ARGS__)
/* a socket call whose calls a kprobe looks up (security_socket_bind, _connect) */
#define SOCK_LOOKED_UP(sym, req, a, ...)				\
	KRETX(sym, req, a, lxbsm_sock_entry, lxbsm_sock_ret, lxbsm_sock_data_size, \
	      ACTIVE_SLEEPY, true, __VA_ARGS__)
#define KPROBE(sym, req, handler, ...)					\
	{ .symbol = sym, .kind = LXBSM_KPROBE, .required = req, .pre = handler##_run, \
	  __VA_ARGS__ }
#define ARM_OPEN	ARM(LXBSM_EV_OPEN, LXBSM_EV_CREAT)
#define ARM_BIND	ARM(LXBSM_EV_BIND, LXBSM_EV_BIND)
#define ARM_CONNECT	ARM(LXBSM_EV_CONNECT, LXBSM_EV_CONNECT)
/* the table-driven events (events.h): each entry point of each call ... */
#define TABLE_HOOK(ev, sym, req)					\
	KRETX(sym, req, LXBSM_EV_##ev, lxbsm_sys_entry, lxbsm_sys_ret,	\
	      lxbsm_sys_data_size, ACTIVE_SLEEPY, true,			\
	      ARM(LXBSM_EV_##ev, LXBSM_EV_##ev)),
#define TABLE_CALL(ev, call, req) LXBSM_SYSCALL_HOOKS(TABLE_HOOK, ev, call, req)
/* ... and their capture kprobes, which look their calls up */
#define TABLE_CAPTURE(sym, req, handler)				\
	KPROBE(sym, req, handler, ARM(LXBSM_EV_TABLE_FIRST, LXBSM_EV_NR - 1)),

static struct lxbsm_hook hooks[] = {
	{ .symbol = "sched_process_fork", .kind = LXBSM_TRACEPOINT, .required = true,
	  .probe = fork_probe_run },
	{ .symbol = "sched_process_exit", .kind = LXBSM_TRACEPOINT, .required = true,
	  .probe = exit_probe_run },
	/* the program an exec started: login programs, su and sudo */
	{ .symbol = "sched_process_exec", .kind = LXBSM_TRACEPOINT, .required = true,
	  .probe = exec_probe_run },
	EXEC(LXBSM_SYS(execve), true, LXBSM_EXEC_EXECVE),
	EXEC(LXBSM_SYS(execveat), true, LXBSM_EXEC_EXECVEAT),
	EXEC(LXBSM_SYS_COMPAT_IA32(execve), false, LXBSM_EXEC_EXECVE),
	EXEC(LXBSM_SYS_COMPAT_IA32(execveat), false, LXBSM_EXEC_EXECVEAT),
	EXEC(LXBSM_SYS_COMPAT_X32(execve), false, LXBSM_EXEC_EXECVE),	/* x32 */
	EXEC(LXBSM_SYS_COMPAT_X32(execveat), false, LXBSM_EXEC_EXECVEAT),
	/* the programs the kernel starts: usermode helpers (modprobe, core pipes) */
	EXEC("kernel_execve", true, LXBSM_EXEC_KERNEL),
	/* exec control decides here, and the exec record learns the file */
	KRET("security_bprm_check", true, 0, lxbsm_bprm_check_entry, lxbsm_bprm_check_ret,
	     lxbsm_bprm_check_data_size, ACTIVE_SLEEPY, ARM_EXEC),
	/* ... and here for the other files opened for execution (an ELF
	 * interpreter, uselib); every other open leaves at once
	 */
	KRET("security_file_open", true, 0, lxbsm_exec_open_entry, lxbsm_exec_open_ret,
	     lxbsm_exec_open_data_size, ACTIVE_QUICK, ARM_XC),
	KRET("security_mmap_file", true, 0, lxbsm_mmap_entry, lxbsm_mmap_ret,
	     lxbsm_mmap_data_size, ACTIVE_SLEEPY, ARM_XC),
	/* fd_install looks up the open in flight */
	KRETX("do_sys_openat2", true, 0, lxbsm_open_entry, lxbsm_open_ret,
	      lxbsm_open_data_size, ACTIVE_SLEEPY, true, ARM_OPEN),
	KRET("do_filp_open", false, 0, lxbsm_filp_open_entry, lxbsm_filp_open_ret,
	     lxbsm_filp_open_data_size, ACTIVE_SLEEPY, ARM_OPEN),
	/* ... its name from 7.x on: each kernel has one of the two */
	KRET("do_file_open", false, 0, lxbsm_filp_open_entry, lxbsm_filp_open_ret,
	     lxbsm_filp_open_data_size, ACTIVE_SLEEPY, ARM_OPEN),
	KRET(LXBSM_SYS(close), true, 0, lxbsm_close_entry, lxbsm_close_ret,
	     lxbsm_close_data_size, ACTIVE_QUICK, ARM(LXBSM_EV_CLOSE, LXBSM_EV_CLOSE)),
	KRET(LXBSM_SYS_COMPAT(close), false, 0, lxbsm_close_entry, lxbsm_close_ret,
	     lxbsm_close_data_size, ACTIVE_QUICK, ARM(LXBSM_EV_CLOSE, LXBSM_EV_CLOSE)),
	KRET("kernel_clone", true, 0, lxbsm_clone_entry, lxbsm_clone_ret,
	     lxbsm_setid_data_size, ACTIVE_SLEEPY, ARM(LXBSM_EV_FORK, LXBSM_EV_VFORK)),
	SETID("__sys_setuid", 0),
	SETID("__sys_setgid", 1),
	SETID("__sys_setreuid", 2),
	SETID("__sys_setregid", 3),
	SETID("__sys_setresuid", 4),
	SETID("__sys_setresgid", 5),
	SETID("__sys_setfsuid", 6),
	SETID("__sys_setfsgid", 7),
	SETGROUPS(LXBSM_SYS(setgroups), true),
	SETGROUPS(LXBSM_SYS_COMPAT(setgroups), false),
	SETGROUPS(LXBSM_SYS_COMPAT(setgroups16), false),
	/*
	 * Sockets (ev_net.c): a successful accept (syscall or io_uring) is
	 * recorded where its file is installed, after the wait, so blocked
	 * accepts hold no instance; __sys_accept4 records the failures.
	 * fd_install also gives an open its own file (ev_file.c).  connect
	 * and bind take the kernel's copy of the address.
	 */
	KPROBE("fd_install", true, lxbsm_fd_install_pre,
	       ARM_ALSO(LXBSM_EV_OPEN, LXBSM_EV_CREAT, LXBSM_EV_ACCEPT)),
	/* a login daemon's accepted peer, on accepts only: always armed */
	KPROBE("security_sock_graft", true, lxbsm_sock_graft_pre),
	SOCK("__sys_accept4", true, 0, ARM(LXBSM_EV_ACCEPT, LXBSM_EV_ACCEPT)),
	SOCK_LOOKED_UP("__sys_connect_file", true, 1, ARM_CONNECT),
	/* ... and a connect it missed (no instance left) from here, before the wait */
	KPROBE("security_socket_connect", true, lxbsm_connect_pre, ARM_CONNECT),
	SOCK_LOOKED_UP("__sys_bind", true, 2, ARM_BIND),
	SOCK_LOOKED_UP("__sys_bind_socket", false, 3, ARM_BIND),	/* io_uring bind, 6.11 on */
	KPROBE("security_socket_bind", true, lxbsm_bind_addr_pre, ARM_BIND),
	KPROBE("io_fixed_fd_install", false, lxbsm_fixed_install_pre,
	       ARM(LXBSM_EV_ACCEPT, LXBSM_EV_ACCEPT)),
	KRET("audit_set_loginuid", false, 0, lxbsm_loginuid_entry, lxbsm_loginuid_ret,
	     lxbsm_setid_data_size, ACTIVE_QUICK),
	LXBSM_TABLE_CALLS(TABLE_CALL)
	LXBSM_TABLE_CAPTURES(TABLE_CAPTURE)
	/*
	 * Protected trees (protect.c): every change to a file below one.
	 * Last: where a function is hooked for another duty too
	 * (security_path_chmod, security_mmap_file), that hook comes first.
	 * rw_verify_area is on the path of every write that names a range
	 * (syscalls, io_uring, copy_file_range, splice, sendfile).
	 */
	PROTECT("rw_verify_area", true, lxbsm_protect_rw_pre),
	PROTECT("vfs_fallocate", true, lxbsm_protect_falloc_pre),
	PROTECT("security_path_truncate", true, lxbsm_protect_trunc_pre),
	PROTECT("security_file_truncate", false, lxbsm_protect_ftrunc_pre),	/* 6.2 on */
	PROTECT("security_path_unlink", true, lxbsm_protect_unlink_pre),
	PROTECT("security_path_rename", true, lxbsm_protect_rename_pre),
	PROTECT("security_path_link", true, lxbsm_protect_link_pre),
	PROTECT("security_path_mknod", true, lxbsm_protect_mknod_pre),
	PROTECT("security_path_chmod", true, lxbsm_protect_chmod_pre),
	PROTECT("security_path_chown", true, lxbsm_protect_chown_pre),
	PROTECT("security_mmap_file", true, lxbsm_protect_mmap_pre),
	PROTECT("security_file_free", true, lxbsm_protect_free_pre),
};

void lxbsm_cost_leave(struct lxbsm_hook *h, enum lxbsm_cost_part part,
		      const struct lxbsm_cost_mark *m)
{
	struct lxbsm_cost __percpu *c = costs + (h - hooks);

	this_cpu_add(c->ns[part], local_clock() - m->t0);
	this_cpu_inc(c->calls[part]);
	this_cpu_write(cost_hook, m->prev);
}
NOKPROBE_SYMBOL(lxbsm_cost_leave);

/*
 * A record finished with accounting on (record.c, preemption disabled since
 * it began): costs stays allocated until every such record is done
 * (lxbsm_hooks_exit()).
 */
void lxbsm_cost_record(u64 t_begin, u64 t_built, u64 t_done)
{
	struct lxbsm_hook *h = this_cpu_read(cost_hook);
	struct lxbsm_cost __percpu *c = costs + (h ? h - hooks : ARRAY_SIZE(hooks));

	this_cpu_inc(c->records);
	this_cpu_add(c->build_ns, t_built - t_begin);
	this_cpu_add(c->ring_ns, t_done - t_built);
}
NOKPROBE_SYMBOL(lxbsm_cost_record);

#ifdef LXBSM_HAVE_KRETPROBE_RETHOOK
/*
 * Only current adds to and takes from its own list of hooked returns, newest
 * first; an NMI's entries are gone again before we resume, so current may
 * walk it.  Our kprobes are detached before the kretprobes (lxbsm_hooks_exit),
 * so krp.rh is valid whenever a kprobe handler calls this.
 *
 * A kretprobe's rethook keeps the kretprobe as its data, and ours are in
 * hooks[], so a node's hook is found by its address, not by trying every
 * hook (that loop was most of a connect's or an open's lookup).  Another
 * rethook's data is not in hooks[]; a node of an earlier load of this
 * module, still in a call that blocked across the reload, has another
 * rethook than the hook's current one.  A rethook lives while its nodes
 * are in use, so its data may be read: it is only compared.
 */
void *lxbsm_inflight(kretprobe_handler_t entry)
{
	const uintptr_t first = (uintptr_t)&hooks[0].krp;
	struct llist_node *n;

	for (n = current->rethooks.first; n; n = n->next) {
		struct rethook_node *node = container_of(n, struct rethook_node, llist);
		uintptr_t off = (uintptr_t)READ_ONCE(node->rethook->data) - first;
		struct lxbsm_hook *h;

		if (off >= sizeof(hooks) || off % sizeof(hooks[0]))
			continue;
		h = &hooks[off / sizeof(hooks[0])];
		if (h->kind == LXBSM_KRETPROBE && h->entry == entry &&
		    READ_ONCE(h->state) == LXBSM_HOOK_ON && h->krp.rh == node->rethook)
			return container_of(node, struct kretprobe_instance, node)->data;
	}
	return NULL;
}
NOKPROBE_SYMBOL(lxbsm_inflight);
#endif /* LXBSM_HAVE_KRETPROBE_RETHOOK; else compat_inflight.c */

/* Calls a hook let through unseen: no instance left, or a probe in a probe. */
static unsigned long hook_missed(const struct lxbsm_hook *h)
{
	if (h->state != LXBSM_HOOK_ON)
		return 0;
	switch (h->kind) {
	case LXBSM_KRETPROBE:
		return (unsigned int)READ_ONCE(h->krp.nmissed) + READ_ONCE(h->krp.kp.nmissed) +
			atomic64_read(&h->dropped);
	case LXBSM_KPROBE:
		return READ_ONCE(h->krp.kp.nmissed);
	case LXBSM_TRACEPOINT:
		break;
	}
	return 0;
}

#define MISSED_POLL	(HZ / 10)

static struct timer_list missed_timer;
static bool missed_timer_on;

static u64 missed_last;		/* every hook's misses at the previous poll */
static u64 missed_lost;		/* misses reported as lost records */

/*
 * Every miss not recovered becomes a lost record (one writer: the timer,
 * then unload).  A miss is counted at the call's entry, its recovery a
 * moment later (a kprobe further into the call): only misses at least one
 * poll old are reported, then, so as not to announce one being recovered;
 * at unload (@final), with the hooks gone, all of them.
 */
static void report_missed(bool final)
{
	u64 missed = 0, recovered = 0, upto;
	int i;

	for (i = 0; i < ARRAY_SIZE(hooks); i++) {
		struct lxbsm_hook *h = &hooks[i];

		h->missed_seen = hook_missed(h);
		missed += h->missed_seen;
		recovered += atomic64_read(&h->recovered);
	}
	upto = final ? missed : missed_last;
	missed_last = missed;
	if (upto > recovered + missed_lost) {
		lxbsm_lost_n(LXBSM_LOST_NO_INSTANCE, upto - recovered - missed_lost);
		missed_lost = upto - recovered;
	}
}

static void missed_tick(struct timer_list *t)
{
	report_missed(false);
	mod_timer(t, jiffies + MISSED_POLL);
}

static void find_tracepoint(struct tracepoint *tp, void *priv)
{
	struct lxbsm_hook *h = priv;

	if (!h->tp && !strcmp(tp->name, h->symbol))
		h->tp = tp;
}

/*
 * A hook is registered armed only if wanted (@armed): each arming or
 * disarming of a probe at a function's entry is an ftrace update that
 * walks every traceable function of the kernel, tens of milliseconds under
 * emulation, so arming at the first lxbsm_hooks_arm() what was registered
 * disarmed is cheaper than the reverse.
 */
static int attach(struct lxbsm_hook *h, bool armed)
{
	u32 flags = armed ? 0 : KPROBE_FLAG_DISABLED;

	h->armed = armed || h->kind == LXBSM_TRACEPOINT;
	switch (h->kind) {
	case LXBSM_KRETPROBE:
		memset(&h->krp, 0, sizeof(h->krp));
		h->krp.kp.symbol_name = h->symbol;
		h->krp.kp.flags = flags;
		h->krp.entry_handler = h->entry_run;
		h->krp.handler = h->ret_run;
		h->krp.data_size = h->data_size();
		h->krp.maxactive = max_t(int, h->maxactive, 2 * num_possible_cpus());
		if (h->inflight)
			lxbsm_inflight_track(h);
		return register_kretprobe(&h->krp);
	case LXBSM_KPROBE:
		memset(&h->krp, 0, sizeof(h->krp));
		h->krp.kp.symbol_name = h->symbol;
		h->krp.kp.flags = flags;
		h->krp.kp.pre_handler = h->pre;
		return register_kprobe(&h->krp.kp);
	case LXBSM_TRACEPOINT:
		h->tp = NULL;
		for_each_kernel_tracepoint(find_tracepoint, h);
		if (!h->tp)
			return -ENOENT;
		return tracepoint_probe_register(h->tp, h->probe, h);
	}
	return -EINVAL;
}

static int cost_init(void)
{
	costs = __alloc_percpu(sizeof(*costs) * (ARRAY_SIZE(hooks) + 1), __alignof__(*costs));
	if (!costs)
		return -ENOMEM;
	mutex_lock(&cost_lock);
	cost_ready = true;
	cost_apply();
	mutex_unlock(&cost_lock);
	return 0;
}

/*
 * With the key off, a record begun after this is not timed; one begun
 * before ran with preemption disabled, so a grace period sees it done.
 */
static void cost_exit(void)
{
	bool was_on;

	mutex_lock(&cost_lock);
	was_on = static_key_enabled(&lxbsm_cost_on);
	cost_ready = false;
	cost_apply();
	mutex_unlock(&cost_lock);
	if (was_on)
		synchronize_rcu();
	mutex_lock(&cost_lock);
	free_percpu(costs);
	costs = NULL;
	mutex_unlock(&cost_lock);
}

/*
 * Arming.  A hook whose duties are to record some events, or exec
 * control, or both (arm_by) is enabled only while one of them is on: some
 * mask selects one of its events, exec control has rules.  Disabled, it is
 * out of the kernel's path and costs its calls nothing.  Applied once the
 * hooks are attached and after every change of the configuration or of the
 * exec rules (process context, arm_lock; enable_kprobe() takes the
 * kernel's kprobe_mutex).  A call that entered while its hook was armed
 * still returns through it.  Hooks with other duties (the process table,
 * sessions, the peers of accepted connections, late connects) stay armed.
 *
 * Arming is at once; disarming waits disarm_delay_ms after the last change
 * that left a hook unwanted, as perf defers the static keys of its events:
 * each switch of a probe at a function's entry is an ftrace update that
 * walks every traceable function (tens of milliseconds under emulation), so
 * a configuration switched back and forth in a second costs nothing, and an
 * armed hook whose events nobody selects only finds them unselected.
 */
static unsigned int disarm_delay_ms = 2000;
module_param(disarm_delay_ms, uint, 0444);
MODULE_PARM_DESC(disarm_delay_ms,
		 "disarm a hook this long after nothing needs it any more (0: at once)");

static DEFINE_MUTEX(arm_lock);
static bool hooks_live;		/* attached, not yet being detached */
/* What hooks_wanted() found: under arm_lock, or at init before hooks_live. */
static bool want[ARRAY_SIZE(hooks)];
static void disarm_late(struct work_struct *work);
static DECLARE_DELAYED_WORK(disarm_work, disarm_late);

static bool hook_wanted(const struct lxbsm_cfg *cfg, bool xc, const struct lxbsm_hook *h)
{
	int ev;

	if (!h->arm_by)
		return true;
	if (h->arm_by & LXBSM_ARM_XC && xc)
		return true;
	if (h->arm_by & LXBSM_ARM_EVENTS)
		for (ev = h->ev_first; ev <= h->ev_last; ev++)
			if (cfg->event_class[ev] & cfg->any)
				return true;
	if (h->arm_by & LXBSM_ARM_ALSO && cfg->event_class[h->ev_also] & cfg->any)
		return true;
	if (h->arm_by & LXBSM_ARM_PROTECT && lxbsm_protect_active())
		return true;
	return false;
}

/* Which hooks the configuration and exec control's rules want armed now. */
static void hooks_wanted(void)
{
	const struct lxbsm_cfg *cfg;
	bool xc = lxbsm_xc_active();
	int i;

	rcu_read_lock();
	cfg = rcu_dereference(lxbsm_cfg);
	for (i = 0; i < ARRAY_SIZE(hooks); i++)
		want[i] = hook_wanted(cfg, xc, &hooks[i]);
	rcu_read_unlock();
}

/* Switch hooks[@i] to want[@i] if it is not there yet. */
static void arm_one(int i)
{
	struct lxbsm_hook *h = &hooks[i];
	int ret;

	if (h->state != LXBSM_HOOK_ON || h->kind == LXBSM_TRACEPOINT || h->armed == want[i])
		return;
	ret = want[i] ? enable_kprobe(&h->krp.kp) : disable_kprobe(&h->krp.kp);
	if (ret)
		pr_warn("cannot %s %s: %d\n", want[i] ? "arm" : "disarm", h->symbol, ret);
	else
		WRITE_ONCE(h->armed, want[i]);
}

/*
 * Arm every hook wanted; disarm the others (@disarm) or have it done later.
 * A hook that finishes another's calls (fd_install records the opens that
 * do_sys_openat2 begins) comes after it in hooks[]: arming runs backwards
 * and disarming forwards, so no call passes the first armed and the second
 * not, which would lose its record.
 */
static void hooks_apply(bool disarm)
{
	bool later = false;
	int i;

	mutex_lock(&arm_lock);
	if (!hooks_live)
		goto out;
	hooks_wanted();
	for (i = ARRAY_SIZE(hooks) - 1; i >= 0; i--)
		if (want[i])
			arm_one(i);
	for (i = 0; i < ARRAY_SIZE(hooks); i++) {
		if (want[i] || !hooks[i].armed)
			continue;
		if (disarm)
			arm_one(i);
		else
			later = true;
	}
	/* Detaching cancels it after hooks_live is false: none is left queued. */
	if (later)
		mod_delayed_work(system_wq, &disarm_work, msecs_to_jiffies(disarm_delay_ms));
out:
	mutex_unlock(&arm_lock);
}

static void disarm_late(struct work_struct *work)
{
	hooks_apply(true);
}

void lxbsm_hooks_arm(void)
{
	hooks_apply(!disarm_delay_ms);
}

/*
 * Detach everything attached, in reverse order, in batches: the kernel
 * waits for running handlers once per batch instead of once per probe.
 * Tracepoints first, then the kprobes, then the kretprobes.
 */
void lxbsm_hooks_exit(void)
{
	static struct kretprobe *krps[ARRAY_SIZE(hooks)];
	static struct kprobe *kps[ARRAY_SIZE(hooks)];
	int i, nkrp = 0, nkp = 0;
	bool tracepoints = false;

	mutex_lock(&arm_lock);
	hooks_live = false;
	mutex_unlock(&arm_lock);
	cancel_delayed_work_sync(&disarm_work);
	if (missed_timer_on) {
		lxbsm_timer_delete_sync(&missed_timer);
		missed_timer_on = false;
	}

	for (i = ARRAY_SIZE(hooks) - 1; i >= 0; i--) {
		struct lxbsm_hook *h = &hooks[i];

		if (h->state != LXBSM_HOOK_ON)
			continue;
		switch (h->kind) {
		case LXBSM_TRACEPOINT:
			tracepoint_probe_unregister(h->tp, h->probe, h);
			tracepoints = true;
			break;
		case LXBSM_KRETPROBE:
			krps[nkrp++] = &h->krp;
			break;
		case LXBSM_KPROBE:
			kps[nkp++] = &h->krp.kp;
			break;
		}
	}
	/* No tracepoint probe may still be running once this returns. */
	if (tracepoints)
		tracepoint_synchronize_unregister();
	if (nkp)
		unregister_kprobes(kps, nkp);
	if (nkrp)
		unregister_kretprobes(krps, nkrp);
	report_missed(true);
	lxbsm_inflight_reset();
	for (i = 0; i < ARRAY_SIZE(hooks); i++) {
		struct lxbsm_hook *h = &hooks[i];

		if (h->state != LXBSM_HOOK_ON)
			continue;
		if (h->missed_seen)
			pr_info("%s: %lu calls missed\n", h->symbol, h->missed_seen);
		h->state = LXBSM_HOOK_OFF;
	}
	/* No return handler runs any more: free what they would have freed. */
	lxbsm_exec_exit();
	lxbsm_sys_exit();
	cost_exit();
}

int lxbsm_hooks_init(void)
{
	int i, ret, on = 0, missing = 0;

	if (LXBSM_DIAG_EMPTY_HANDLERS >= 0)
		pr_notice("diagnostic build: kprobe and kretprobe handlers are empty and record nothing\n");
	missed_last = 0;
	missed_lost = 0;
	ret = cost_init();
	if (ret)
		return ret;
	lxbsm_inflight_reset();
	/* A change from here on is applied by the lxbsm_hooks_arm() below. */
	hooks_wanted();
	for (i = 0; i < ARRAY_SIZE(hooks); i++) {
		struct lxbsm_hook *h = &hooks[i];

		atomic64_set(&h->hits, 0);
		atomic64_set(&h->recovered, 0);
		atomic64_set(&h->dropped, 0);
		h->missed_seen = 0;
		ret = attach(h, want[i]);
		if (!ret) {
			h->state = LXBSM_HOOK_ON;
			on++;
			continue;
		}
		if (h->required) {
			pr_err("cannot attach to %s: %d\n", h->symbol, ret);
			h->state = LXBSM_HOOK_OFF;
			lxbsm_hooks_exit();
			return ret;
		}
		h->state = LXBSM_HOOK_MISSING;
		missing++;
		pr_info("optional hook %s not available here (%d)\n", h->symbol, ret);
	}
	pr_info("%d hooks attached, %d optional ones missing\n", on, missing);
	timer_setup(&missed_timer, missed_tick, TIMER_DEFERRABLE);
	mod_timer(&missed_timer, jiffies + MISSED_POLL);
	missed_timer_on = true;
	mutex_lock(&arm_lock);
	hooks_live = true;
	mutex_unlock(&arm_lock);
	lxbsm_hooks_arm();
	return 0;
}

u32 lxbsm_hooks_count(void)
{
	return ARRAY_SIZE(hooks);
}

int lxbsm_hook_info(struct lxbsm_hook_info *info)
{
	const struct lxbsm_hook *h;

	if (info->index >= ARRAY_SIZE(hooks))
		return -ENOENT;
	h = &hooks[info->index];
	info->state = h->state == LXBSM_HOOK_ON && !READ_ONCE(h->armed) ? LXBSM_HOOK_IDLE : h->state;
	info->missed = hook_missed(h);
	info->hits = atomic64_read(&h->hits);
	strscpy(info->name, h->symbol, sizeof(info->name));
	return 0;
}

int lxbsm_hook_cost(struct lxbsm_hook_cost *cost)
{
	u32 i = cost->index;
	int cpu;

	if (i > ARRAY_SIZE(hooks))
		return -ENOENT;
	memset(cost, 0, sizeof(*cost));
	cost->index = i;
	strscpy(cost->name, i < ARRAY_SIZE(hooks) ? hooks[i].symbol : "(task work)",
		sizeof(cost->name));
	/* The device outlives the hooks at load and unload: so may we. */
	mutex_lock(&cost_lock);
	cost->on = static_key_enabled(&lxbsm_cost_on);
	for_each_possible_cpu(cpu) {
		const struct lxbsm_cost *c;

		if (!costs)
			break;
		c = per_cpu_ptr(costs, cpu) + i;
		cost->entry_calls += READ_ONCE(c->calls[LXBSM_COST_ENTRY]);
		cost->entry_ns += READ_ONCE(c->ns[LXBSM_COST_ENTRY]);
		cost->ret_calls += READ_ONCE(c->calls[LXBSM_COST_RET]);
		cost->ret_ns += READ_ONCE(c->ns[LXBSM_COST_RET]);
		cost->records += READ_ONCE(c->records);
		cost->build_ns += READ_ONCE(c->build_ns);
		cost->ring_ns += READ_ONCE(c->ring_ns);
	}
	mutex_unlock(&cost_lock);
	return 0;
}

void lxbsm_hooks_missed(struct lxbsm_status *st)
{
	int i;

	st->nr_hooks = ARRAY_SIZE(hooks);
	st->missed = 0;
	for (i = 0; i < ARRAY_SIZE(hooks); i++)
		st->missed += hook_missed(&hooks[i]);
}
